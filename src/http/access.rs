//! The access check of every `/v2/` request, made once before dispatch: who is asking
//! (Basic credentials, a bearer token, or nobody), what the route needs, and the [`Grant`]
//! handlers receive. Refusals follow the token spec: 401 with a `WWW-Authenticate` challenge
//! naming the scope to ask for, 403 DENIED for a known identity without the right, and for a
//! read the caller may not see, exactly the answer a missing repository gets.

use axum::{
    http::{HeaderValue, Method, header, request::Parts},
    response::{IntoResponse, Response},
};
use base64::Engine as _;

use super::{Ctx, Query, Route};
use crate::{
    auth::{Action, Auth, Claims, Grant, Identity},
    error::Error,
    oci::RepoName,
};

/// Largest `Authorization` header looked at; a JWT of many scopes stays far below.
const AUTHORIZATION_MAX: usize = 8 * 1024;

/// Who is asking and what they may do on the route's repository.
#[derive(Debug, Clone)]
pub struct Access {
    pub identity: Identity,
    /// What the caller may do on the repository of the route (everything without auth).
    pub grant: Grant,
    /// Credentials were presented (and verified).
    pub credentialed: bool,
}

impl Access {
    pub fn open() -> Access {
        Access {
            identity: Identity::local_admin(),
            grant: Grant::ALL,
            credentialed: false,
        }
    }
}

/// The repository a route acts on and the action it needs.
fn needs(method: &Method, route: &Route) -> Option<(RepoName, Action)> {
    let read = |name: &RepoName| Some((name.clone(), Action::Pull));
    match (method, route) {
        (_, Route::Base | Route::Catalog) => None,
        (&Method::GET | &Method::HEAD, Route::Tags { name }) => read(name),
        (&Method::GET | &Method::HEAD, Route::Referrers { name, .. }) => read(name),
        (&Method::GET | &Method::HEAD, Route::Manifest { name, .. } | Route::Blob { name, .. }) => {
            read(name)
        }
        (&Method::DELETE, Route::Manifest { name, .. } | Route::Blob { name, .. }) => {
            Some((name.clone(), Action::Delete))
        }
        (
            _,
            Route::Manifest { name, .. }
            | Route::Uploads { name }
            | Route::Upload { name, .. }
            | Route::Tags { name }
            | Route::Referrers { name, .. }
            | Route::Blob { name, .. },
        ) => Some((name.clone(), Action::Push)),
    }
}

/// Authenticates and authorizes one request. `Err` is the response to send instead.
pub(super) async fn check(
    auth: &Auth,
    parts: &Parts,
    route: &Route,
    query: &mut Query,
    client: &str,
    ctx_for_realm: impl Fn(&str) -> String,
) -> Result<Access, Response> {
    let challenge = |scope: Option<String>, error: Option<&str>, e: Error| {
        let realm = auth
            .config()
            .realm
            .clone()
            .unwrap_or_else(|| ctx_for_realm("/token"));
        let mut value = format!(
            "Bearer realm=\"{realm}\",service=\"{}\"",
            auth.config().service
        );
        if let Some(scope) = scope {
            value.push_str(&format!(",scope=\"{scope}\""));
        }
        if let Some(error) = error {
            value.push_str(&format!(",error=\"{error}\""));
        }
        let mut response = e.into_response();
        if let Ok(v) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        response
    };
    let needed = needs(&parts.method, route);
    let scope_of = |(repo, action): &(RepoName, Action)| {
        let actions = match action {
            Action::Pull => "pull",
            Action::Delete => "delete",
            _ => "pull,push",
        };
        format!("repository:{repo}:{actions}")
    };
    let (identity, claims) = match identify(auth, parts, client).await {
        Ok(found) => found,
        Err(e @ Error::TooManyRequests { .. }) => return Err(e.into_response()),
        Err(e) => return Err(challenge(needed.as_ref().map(scope_of), None, e)),
    };
    let credentialed = !identity.is_anonymous() || claims.is_some();
    let Some((repo, action)) = needed else {
        if matches!(route, Route::Base) && !credentialed {
            return Err(challenge(
                None,
                None,
                Error::Unauthorized("sign in to use this registry".into()),
            ));
        }
        return Ok(Access {
            identity,
            grant: Grant::default(),
            credentialed,
        });
    };
    let live = auth
        .grant(&identity, &repo)
        .await
        .map_err(IntoResponse::into_response)?;
    let grant = match &claims {
        Some(c) => live.limit_to(&c.actions_on(repo.as_str())),
        None => live,
    };
    if action == Action::Push
        && let Some(from) = query.get("from").map(str::to_owned)
    {
        // A mount reads from another repository: only one the caller may pull from.
        let readable = match from.parse::<RepoName>() {
            Ok(from) => mount_source_allowed(auth, &identity, claims.as_ref(), &from).await,
            Err(_) => false,
        };
        if !readable {
            query.remove("mount");
            query.remove("from");
        }
    } else if action == Action::Push && query.get("mount").is_some() {
        // Without `from` the registry would search every repository for the digest.
        query.remove("mount");
    }
    if grant.allows(action) || matches!(route, Route::Referrers { .. }) {
        return Ok(Access {
            identity,
            grant,
            credentialed,
        });
    }
    let scope_text = scope_of(&(repo.clone(), action));
    let scope_actions = scope_text.rsplit(':').next().unwrap_or("").to_owned();
    let scope = Some(scope_text);
    if !credentialed {
        return Err(challenge(
            scope,
            None,
            Error::Unauthorized(format!("sign in to {} {repo}", verb(action))),
        ));
    }
    if claims.is_some() && live.allows(action) {
        // The identity may, the token was asked for less: the client asks again.
        return Err(challenge(
            scope,
            Some("insufficient_scope"),
            Error::Unauthorized(format!(
                "the token does not grant {scope_actions} on {repo}"
            )),
        ));
    }
    Err(match (action, route) {
        (Action::Pull, Route::Manifest { .. }) => Error::ManifestUnknown,
        (Action::Pull, Route::Blob { .. }) => Error::BlobUnknown,
        (Action::Pull, _) => Error::NameUnknown,
        _ if live.pull || grant.pull => Error::Denied(denial(&identity, action, &repo)),
        // Not even visible: say no more than to a missing repository's pusher.
        _ => Error::Denied(format!("{} {repo} is not allowed", verb(action))),
    }
    .into_response())
}

fn verb(action: Action) -> &'static str {
    match action {
        Action::Pull => "pull from",
        Action::Push => "push to",
        Action::Delete => "delete from",
        Action::Maintain | Action::Own => "manage",
    }
}

fn denial(who: &Identity, action: Action, repo: &RepoName) -> String {
    match (who.scopes, action) {
        (Some(s), Action::Push) if !s.write => {
            format!("push to {repo}: this token is read-only (it lacks write_registry)")
        }
        (Some(s), Action::Delete) if !s.delete => {
            format!("delete from {repo}: this token lacks delete_registry")
        }
        _ => format!("{} {repo} needs a higher role", verb(action)),
    }
}

async fn mount_source_allowed(
    auth: &Auth,
    who: &Identity,
    claims: Option<&Claims>,
    from: &RepoName,
) -> bool {
    let Ok(grant) = auth.grant(who, from).await else {
        return false;
    };
    match claims {
        Some(c) => grant.limit_to(&c.actions_on(from.as_str())).pull,
        None => grant.pull,
    }
}

/// The identity of the request's credentials (anonymous without any), with the token's
/// claims for a bearer token.
async fn identify(
    auth: &Auth,
    parts: &Parts,
    client: &str,
) -> Result<(Identity, Option<Claims>), Error> {
    let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
        return Ok((Identity::anonymous(), None));
    };
    if value.len() > AUTHORIZATION_MAX {
        return Err(Error::Unauthorized("credentials too large".into()));
    }
    let value = value
        .to_str()
        .map_err(|_| Error::Unauthorized("malformed Authorization header".into()))?;
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("bearer") {
        let (identity, claims) = auth.bearer(rest.trim()).await?;
        return Ok((identity, Some(claims)));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        if !auth.config().basic_on_v2 {
            return Err(Error::Unauthorized(
                "this registry takes bearer tokens: get one from the token endpoint".into(),
            ));
        }
        let (user, password) = basic_credentials(rest)
            .ok_or_else(|| Error::Unauthorized("malformed Basic credentials".into()))?;
        return Ok((auth.login(&user, &password, client).await?, None));
    }
    Err(Error::Unauthorized(
        "unsupported Authorization scheme: use Basic or Bearer".into(),
    ))
}

/// `user:password` of a Basic `Authorization` value.
pub(crate) fn basic_credentials(encoded: &str) -> Option<(String, String)> {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// The `/v2/` catalog as the caller may see it (auth on).
pub(super) async fn catalog_page(
    ctx: &Ctx<'_>,
    last: &str,
    n: u32,
) -> crate::error::Result<crate::registry::Page<String>> {
    let mut items = ctx
        .auth
        .visible_catalog(&ctx.access.identity, last, n.saturating_add(1))
        .await?;
    let more = items.len() > n as usize;
    items.truncate(n as usize);
    Ok(crate::registry::Page { items, more })
}
