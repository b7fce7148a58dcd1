//! The token endpoint (`/token`) of the Docker token flow: GET with Basic credentials or
//! anonymously (auth-token.md), POST with the OAuth2 password and refresh-token grants
//! (auth-oauth.md). Tokens are short-lived JWTs carrying the granted actions.

use axum::{
    Json,
    extract::{Request, State},
    http::{HeaderMap, header},
    response::{IntoResponse, Response},
};

use super::Query;
use crate::{
    auth::{Credentials, CredentialsError, Identity, Scope},
    error::{Error, Result},
    state::{AppState, client_address},
};

/// Largest form accepted by POST.
const FORM_MAX: usize = 64 * 1024;

pub(super) async fn get(State(app): State<AppState>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let query = Query::parse(parts.uri.query());
    let client = client_address(&parts.extensions);
    let result = async {
        enabled(&app)?;
        check_service(&app, query.get("service"))?;
        let identity = match parts.headers.get(header::AUTHORIZATION) {
            None => Identity::anonymous(),
            Some(_) => basic_login(&app, &parts.headers, &client).await?,
        };
        let scopes = parse_scopes(query.get_all("scope").flat_map(|s| s.split(' ')))?;
        let offline = query.get("offline_token") == Some("true");
        let mut issued = app.auth.issue(&identity, &scopes, offline).await?;
        issued.scope = None;
        Ok::<_, Error>(Json(issued).into_response())
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

pub(super) async fn post(State(app): State<AppState>, request: Request) -> Response {
    let client = client_address(request.extensions());
    let result = async {
        enabled(&app)?;
        let body = axum::body::to_bytes(request.into_body(), FORM_MAX)
            .await
            .map_err(|_| Error::BadRequest(format!("the form exceeds {FORM_MAX} bytes")))?;
        let form = Query(url::form_urlencoded::parse(&body).into_owned().collect());
        check_service(&app, form.get("service"))?;
        let identity = match form.get("grant_type") {
            Some("password") => {
                let user = form.get("username").unwrap_or("");
                let password = form.get("password").unwrap_or("");
                app.auth.login(user, password, &client).await?
            }
            Some("refresh_token") => {
                app.auth
                    .refresh(form.get("refresh_token").unwrap_or(""))
                    .await?
            }
            other => {
                return Err(Error::BadRequest(format!(
                    "unsupported grant_type {other:?}: use password or refresh_token"
                )));
            }
        };
        let scopes = parse_scopes(form.get("scope").unwrap_or("").split(' '))?;
        let offline = form.get("access_type") == Some("offline");
        let mut issued = app.auth.issue(&identity, &scopes, offline).await?;
        if form.get("grant_type") == Some("refresh_token") {
            // The client keeps its refresh token; a new one would only add to revoke.
            issued.refresh_token = None;
        }
        Ok::<_, Error>(Json(issued).into_response())
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

fn enabled(app: &AppState) -> Result<()> {
    if app.auth.enabled() {
        Ok(())
    } else {
        Err(Error::NotFound)
    }
}

/// A token is for this registry's service only.
fn check_service(app: &AppState, service: Option<&str>) -> Result<()> {
    match service {
        Some(s) if s != app.auth.config().service => Err(Error::BadRequest(format!(
            "unknown service {s:?}: this registry is {:?}",
            app.auth.config().service
        ))),
        _ => Ok(()),
    }
}

/// The token endpoint takes Basic credentials only (a bearer token cannot mint another).
async fn basic_login(app: &AppState, headers: &HeaderMap, client: &str) -> Result<Identity> {
    match Credentials::parse(headers.get(header::AUTHORIZATION)) {
        Ok(Credentials::Basic { user, password }) => app.auth.login(&user, &password, client).await,
        Err(CredentialsError::MalformedBasic) => {
            Err(Error::Unauthorized("malformed Basic credentials".into()))
        }
        _ => Err(Error::Unauthorized(
            "the token endpoint takes Basic credentials".into(),
        )),
    }
}

fn parse_scopes<'a>(raw: impl Iterator<Item = &'a str>) -> Result<Vec<Scope>> {
    let mut scopes = Vec::new();
    for s in raw.filter(|s| !s.is_empty()) {
        if scopes.len() >= 64 {
            return Err(Error::BadRequest("at most 64 scopes per token".into()));
        }
        scopes.push(Scope::parse(s).map_err(Error::BadRequest)?);
    }
    Ok(scopes)
}
