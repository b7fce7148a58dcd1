//! Who is looking at a page, and the checks every form goes through.
//!
//! A signed-in viewer has a session cookie (`berth_session`: HttpOnly, SameSite=Lax, Secure
//! when Berth serves TLS, scoped to `/ui`); every form carries the session's CSRF token. A
//! viewer without a session gets a random `berth_csrf` cookie that the sign-in form must
//! repeat (a double submit), so a sign-in cannot be forged either. On top of the tokens, a
//! POST whose browser says it comes from another site (`Sec-Fetch-Site`, or an `Origin` that
//! is not this host) is refused before anything else.

use axum::{
    extract::FromRequestParts,
    http::{HeaderMap, HeaderValue, header, request::Parts},
};

use super::UiError;
use crate::{
    auth::{Auth, Identity, sessions::random_secret},
    meta::repositories::CatalogViewer,
    oci::RepoName,
    state::{AccessUser, AppState},
};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "berth_session";
/// The pre-session CSRF cookie's name.
pub const CSRF_COOKIE: &str = "berth_csrf";

/// The viewer of a page: an identity (anonymous without a session; the local administrator
/// when auth is off) and the CSRF token its forms carry.
pub struct Viewer {
    /// Who is looking.
    pub identity: Identity,
    /// The token forms carry: the session's, or the pre-session cookie's.
    pub csrf: String,
    /// The session cookie's value, when signed in.
    pub session: Option<String>,
    /// Now, by the registry's clock (unix seconds).
    pub now: i64,
    /// A `berth_csrf` cookie to set with the response (first visit without a session).
    pub(super) new_csrf_cookie: Option<String>,
    /// Served over TLS: cookies are `Secure`.
    pub(super) https: bool,
    /// Whether sign-in exists at all (auth enabled).
    pub(super) auth_enabled: bool,
    pub(super) auth: Auth,
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Viewer, UiError> {
        let auth = app.auth.clone();
        let presented_csrf = cookie(&parts.headers, CSRF_COOKIE);
        let mut viewer = Viewer {
            identity: Identity::anonymous(),
            new_csrf_cookie: None,
            csrf: String::new(),
            session: None,
            now: app.registry.clock().now(),
            https: app.https,
            auth_enabled: auth.enabled(),
            auth: auth.clone(),
        };
        if !auth.enabled() {
            viewer.identity = Identity::local_admin();
        } else if let Some(secret) = cookie(&parts.headers, SESSION_COOKIE)
            && let Some(session) = auth.session(&secret).await?
        {
            AccessUser::note(&parts.extensions, &session.identity.name);
            viewer.identity = session.identity;
            viewer.csrf = session.csrf;
            viewer.session = Some(secret);
            return Ok(viewer);
        }
        match presented_csrf {
            Some(token) if token.len() >= 32 => viewer.csrf = token,
            _ => {
                let token = random_secret();
                viewer.csrf = token.clone();
                viewer.new_csrf_cookie = Some(token);
            }
        }
        Ok(viewer)
    }
}

impl Viewer {
    /// Signed in with a session (not anonymous, not auth-off).
    pub fn signed_in(&self) -> bool {
        self.session.is_some()
    }

    /// The name shown in the header: the user's, or nothing for anonymous.
    pub fn display_name(&self) -> &str {
        match &self.identity.user {
            Some((_, name)) => name,
            None if !self.auth_enabled => "local administrator",
            None => "",
        }
    }

    /// The listing filter for what this viewer may read, as `/api/v1` builds it.
    pub fn catalog(&self) -> CatalogViewer<'_> {
        self.auth.catalog_viewer(&self.identity)
    }

    /// Whether this viewer may pull from `repo` (the API's reporter check).
    pub async fn may_read(&self, repo: &RepoName) -> Result<bool, UiError> {
        Ok(self.auth.grant(&self.identity, repo).await?.pull)
    }

    /// The access-control service.
    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    /// Refuses a form whose CSRF token is not this viewer's, or that a browser says comes
    /// from another site. Nothing has been read or changed when this refuses.
    pub fn check_form(&self, headers: &HeaderMap, token: &str) -> Result<(), UiError> {
        if cross_site(headers) {
            return Err(UiError::forbidden(
                "This form was sent from another site and was refused.",
            ));
        }
        if self.csrf.is_empty() || !constant_time_eq(token.as_bytes(), self.csrf.as_bytes()) {
            return Err(UiError::forbidden(
                "This form has expired or was not made by this site. Reload the page and try again.",
            ));
        }
        Ok(())
    }

    /// A `Set-Cookie` value with this server's cookie attributes.
    pub fn cookie(&self, name: &str, value: &str, max_age: Option<i64>) -> HeaderValue {
        let secure = if self.https { "; Secure" } else { "" };
        let age = max_age
            .map(|s| format!("; Max-Age={s}"))
            .unwrap_or_default();
        HeaderValue::from_str(&format!(
            "{name}={value}; Path=/ui; HttpOnly; SameSite=Lax{secure}{age}"
        ))
        .expect("cookie values are URL-safe base64")
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

/// True when the browser says the request comes from another site: `Sec-Fetch-Site` other
/// than same-origin (or none, for a typed address), or an `Origin` naming another host.
fn cross_site(headers: &HeaderMap) -> bool {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text("sec-fetch-site") {
        return !matches!(site, "same-origin" | "none");
    }
    match (text("origin"), text(header::HOST.as_str())) {
        (Some(origin), Some(host)) => {
            let origin_host = origin
                .strip_prefix("https://")
                .or_else(|| origin.strip_prefix("http://"))
                .unwrap_or("");
            origin_host != host
        }
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// Compares secrets without leaking where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
