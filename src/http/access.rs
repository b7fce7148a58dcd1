//! The access check of every `/v2/` request, made once before dispatch: who is asking
//! (Basic credentials, a bearer token, or nobody), what the route needs, and the [`Grant`]
//! handlers receive. Refusals follow the token spec: 401 with a `WWW-Authenticate` challenge
//! naming the scope to ask for (a 403 with the same challenge for a token re-sent after that
//! 401), 403 DENIED for a known identity without the right, and for a
//! read the caller may not see, exactly the answer a missing repository gets. An anonymous
//! read (no credentials, or an anonymous token) of a repository it may not see or that does
//! not exist gets Docker Hub's answer, the challenge, so `docker pull` says to log in.

use axum::{
    http::{HeaderValue, Method, header, request::Parts},
    response::{IntoResponse, Response},
};

use super::{Query, Route};
use crate::{
    auth::{Action, Auth, Claims, Credentials, CredentialsError, Grant, Identity},
    error::Error,
    oci::RepoName,
};

/// Who is asking and what they may do on the route's repository.
#[derive(Debug, Clone)]
pub struct Access {
    /// The verified identity (anonymous without credentials).
    pub identity: Identity,
    /// What the caller may do on the repository of the route (everything without auth).
    pub grant: Grant,
    /// A cross-repository mount asked for in the query may be tried ([`may_mount`]); when
    /// not, an upload start ignores `mount` and `from` and opens a plain session.
    pub may_mount: bool,
}

impl Access {
    /// Everything allowed to the local administrator: the access of every request when
    /// auth is off.
    pub fn open() -> Access {
        Access {
            identity: Identity::local_admin(),
            grant: Grant::ALL,
            may_mount: true,
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
/// `realm` makes the absolute URL of a path on this registry (for the challenge's realm);
/// `proxied` says whether a repository is a pull-through cache's, which a pull may create.
pub(super) async fn check(
    auth: &Auth,
    parts: &Parts,
    route: &Route,
    query: &Query,
    client: &str,
    realm: impl Fn(&str) -> String + Sync,
    proxied: impl Fn(&RepoName) -> bool,
) -> Result<Access, Response> {
    let challenge = Challenge {
        auth,
        realm: &realm,
    };
    let needed = needs(&parts.method, route);
    let requester = match identify(auth, parts, client).await {
        Ok(found) => found,
        Err(e @ Error::TooManyRequests { .. }) => return Err(e.into_response()),
        Err(e) => return Err(challenge.respond(needed.as_ref().map(scope_of), None, e)),
    };
    let Some((repo, action)) = needed else {
        // The base route and the catalog act on no repository: the base route needs
        // credentials (clients probe it to learn how to sign in), the catalog filters itself.
        if matches!(route, Route::Base) && !requester.credentialed() {
            return Err(challenge.respond(
                None,
                None,
                Error::Unauthorized("sign in to use this registry".into()),
            ));
        }
        return Ok(requester.into_access(Grant::default(), false));
    };
    let live = auth
        .grant(&requester.identity, &repo)
        .await
        .map_err(IntoResponse::into_response)?;
    let grant = requester.token_limits(live, &repo);
    // Referrers answer an empty list to those who may not read (the handler checks).
    if !grant.allows(action) && !matches!(route, Route::Referrers { .. }) {
        return Err(refusal(
            &challenge, route, &requester, &repo, action, live, grant,
        ));
    }
    // A missing repository answers an anonymous read as a private one does (it may be one
    // the caller cannot see yet); signed-in callers get the handlers' 404s. A pull-through
    // cache's repository the caller may read is made by the pull.
    if action == Action::Pull
        && requester.identity.is_anonymous()
        && !proxied(&repo)
        && matches!(
            route,
            Route::Manifest { .. } | Route::Blob { .. } | Route::Tags { .. }
        )
        && !auth
            .repository_exists(&repo)
            .await
            .map_err(IntoResponse::into_response)?
    {
        return Err(sign_in_to_read(&challenge, &requester, &repo));
    }
    let may_mount = matches!(route, Route::Uploads { .. })
        && may_mount(auth, &requester, query.get("mount"), query.get("from")).await;
    Ok(requester.into_access(grant, may_mount))
}

/// The verified credentials of a request.
struct Requester {
    identity: Identity,
    /// The claims of a bearer token; `None` for Basic credentials or none.
    claims: Option<Claims>,
}

impl Requester {
    /// Credentials were presented (an anonymous bearer token counts).
    fn credentialed(&self) -> bool {
        !self.identity.is_anonymous() || self.claims.is_some()
    }

    /// The access of this requester, with `grant` on the route's repository.
    fn into_access(self, grant: Grant, may_mount: bool) -> Access {
        Access {
            identity: self.identity,
            grant,
            may_mount,
        }
    }

    /// `live` (what the identity may do on `repo`) cut down to what a bearer token grants.
    fn token_limits(&self, live: Grant, repo: &RepoName) -> Grant {
        match &self.claims {
            Some(c) => live.limit_to(&c.actions_on(repo.as_str())),
            None => live,
        }
    }
}

/// The answer to a request whose grant does not allow `action` on `repo`: a challenge to
/// sign in or to ask for a wider token, 403 DENIED for a known identity without the right,
/// and for a read the caller may not see, exactly the answer a missing repository gets.
fn refusal(
    challenge: &Challenge<'_>,
    route: &Route,
    requester: &Requester,
    repo: &RepoName,
    action: Action,
    live: Grant,
    grant: Grant,
) -> Response {
    let scope = scope_of(&(repo.clone(), action));
    let scope_actions = scope.rsplit(':').next().unwrap_or("").to_owned();
    if action == Action::Pull && requester.identity.is_anonymous() {
        return sign_in_to_read(challenge, requester, repo);
    }
    if !requester.credentialed() {
        return challenge.respond(
            Some(scope),
            None,
            Error::Unauthorized(format!("sign in to {} {repo}", verb(action))),
        );
    }
    if let Some(claims) = &requester.claims
        && live.allows(action)
    {
        // The identity may, the token was asked for less: the client asks again, after a
        // 401 or (re-sent the same token) after a 403.
        let why = format!("the token does not grant {scope_actions} on {repo}");
        let refusal = if challenge.auth.refused_again(&claims.jti, &scope) {
            Error::Denied(format!("{why}; ask the token endpoint for {scope}"))
        } else {
            Error::Unauthorized(why)
        };
        return challenge.respond(Some(scope), Some("insufficient_scope"), refusal);
    }
    match (action, route) {
        (Action::Pull, Route::Manifest { .. }) => Error::ManifestUnknown,
        (Action::Pull, Route::Blob { .. }) => Error::BlobUnknown,
        (Action::Pull, _) => Error::NameUnknown,
        _ if live.pull || grant.pull => Error::Denied(denial(&requester.identity, action, repo)),
        // Not even visible: say no more than to a missing repository's pusher.
        _ => Error::Denied(format!("{} {repo} is not allowed", verb(action))),
    }
    .into_response()
}

/// Docker Hub's answer to an anonymous read of a repository that is private or missing (the
/// same for both): 401 with the challenge naming the pull scope; with an anonymous token
/// already, `insufficient_scope`. Clients then say to log in, not "manifest unknown".
fn sign_in_to_read(challenge: &Challenge<'_>, requester: &Requester, repo: &RepoName) -> Response {
    let error = requester.claims.is_some().then_some("insufficient_scope");
    challenge.respond(
        Some(scope_of(&(repo.clone(), Action::Pull))),
        error,
        Error::Unauthorized(format!("sign in to {} {repo}", verb(Action::Pull))),
    )
}

/// The token spec's challenge (with a 401, or a 403 for a token re-sent after a 401): a
/// `WWW-Authenticate` header naming where to get a token and, when known, the scope to ask
/// for.
struct Challenge<'a> {
    auth: &'a Auth,
    /// Makes the absolute URL of a path on this registry.
    realm: &'a (dyn Fn(&str) -> String + Sync),
}

impl Challenge<'_> {
    fn respond(&self, scope: Option<String>, error: Option<&str>, e: Error) -> Response {
        let config = self.auth.config();
        let realm = config
            .realm
            .clone()
            .unwrap_or_else(|| (self.realm)("/token"));
        let mut value = format!("Bearer realm=\"{realm}\",service=\"{}\"", config.service);
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
    }
}

/// The scope a client asks the token endpoint for to do `action` on `repo`.
fn scope_of((repo, action): &(RepoName, Action)) -> String {
    let actions = match action {
        Action::Pull => "pull",
        Action::Delete => "delete",
        _ => "pull,push",
    };
    format!("repository:{repo}:{actions}")
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

/// Whether an upload start's cross-repository mount (`?mount=<digest>&from=<repo>`) may be
/// tried. A mount reads from another repository, so only from one the requester may pull
/// from (with a bearer token, one its claims let it pull from); without `from` the registry
/// would search every repository for the digest, so that is never tried. A refused mount is
/// not an error: the spec lets a registry answer a mount it will not do with a plain upload
/// session, and the client then pushes the blob.
async fn may_mount(
    auth: &Auth,
    requester: &Requester,
    mount: Option<&str>,
    from: Option<&str>,
) -> bool {
    let (Some(_), Some(from)) = (mount, from) else {
        return false;
    };
    let Ok(from) = from.parse::<RepoName>() else {
        return false;
    };
    match auth.grant(&requester.identity, &from).await {
        Ok(live) => requester.token_limits(live, &from).pull,
        Err(_) => false,
    }
}

/// The identity of the request's credentials (anonymous without any), with the token's
/// claims for a bearer token.
async fn identify(auth: &Auth, parts: &Parts, client: &str) -> Result<Requester, Error> {
    let presented = Credentials::parse(parts.headers.get(header::AUTHORIZATION));
    let (identity, claims) = match presented {
        Ok(Credentials::None) => (Identity::anonymous(), None),
        Ok(Credentials::Bearer(token)) => {
            let (identity, claims) = auth.bearer(&token).await?;
            (identity, Some(claims))
        }
        // Token-only mode refuses Basic before looking inside it.
        Ok(Credentials::Basic { .. }) | Err(CredentialsError::MalformedBasic)
            if !auth.config().basic_on_v2 =>
        {
            return Err(Error::Unauthorized(
                "this registry takes bearer tokens: get one from the token endpoint".into(),
            ));
        }
        Ok(Credentials::Basic { user, password }) => {
            (auth.login(&user, &password, client).await?, None)
        }
        Err(e) => return Err(Error::Unauthorized(unreadable(e).into())),
    };
    Ok(Requester { identity, claims })
}

/// How `/v2/` words an unreadable `Authorization` header.
fn unreadable(e: CredentialsError) -> &'static str {
    match e {
        CredentialsError::TooLarge => "credentials too large",
        CredentialsError::Malformed => "malformed Authorization header",
        CredentialsError::MalformedBasic => "malformed Basic credentials",
        CredentialsError::UnsupportedScheme => {
            "unsupported Authorization scheme: use Basic or Bearer"
        }
    }
}
