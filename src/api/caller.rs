//! [`Caller`]: the identity behind an `/api/v1` request, with one-line permission checks.
//! With auth disabled every caller is the local administrator (loopback, zero setup).

use axum::{
    extract::FromRequestParts,
    http::{header, request::Parts},
};

use super::{ApiError, ApiResult};
use crate::{
    auth::{
        Action, Auth, Credentials, CredentialsError, Identity, Role, namespace_of, require_admin,
    },
    error::Error,
    oci::RepoName,
    state::{AccessUser, AppState, client_address},
};

/// Who is calling: Basic credentials (password or token) or a bearer token from `/token`.
pub struct Caller {
    /// The verified identity (anonymous without credentials, local admin without auth).
    pub identity: Identity,
    auth: Auth,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> ApiResult<Caller> {
        let auth = app.auth.clone();
        if !auth.enabled() {
            return Ok(Caller {
                identity: Identity::local_admin(),
                auth,
            });
        }
        let presented = Credentials::parse(parts.headers.get(header::AUTHORIZATION))
            .map_err(|e| Error::Unauthorized(refusal(e).into()))?;
        let identity = match presented {
            Credentials::None => Identity::anonymous(),
            Credentials::Basic { user, password } => {
                let client = client_address(&parts.extensions);
                auth.login(&user, &password, &client).await?
            }
            Credentials::Bearer(token) => auth.bearer(&token).await?.0,
        };
        if !identity.is_anonymous() {
            AccessUser::note(&parts.extensions, &identity.name);
        }
        Ok(Caller { identity, auth })
    }
}

impl Caller {
    /// Administrators only.
    pub fn require_admin(&self) -> ApiResult<()> {
        Ok(require_admin(&self.identity)?)
    }

    /// At least `role` on `target`: a repository name or a namespace. Reporter means "may
    /// pull" (so PUBLIC and INTERNAL repositories pass for those they are open to).
    pub async fn require(&self, target: &str, role: Role) -> ApiResult<()> {
        let allowed = match role {
            Role::Guest | Role::Reporter => match target.parse::<RepoName>() {
                Ok(repo) => self.auth.grant(&self.identity, &repo).await?.pull,
                Err(_) => false,
            },
            Role::Developer => match target.parse::<RepoName>() {
                Ok(repo) => self.auth.grant(&self.identity, &repo).await?.push,
                Err(_) => false,
            },
            Role::Maintainer | Role::Owner => {
                let action = if role == Role::Owner {
                    Action::Own
                } else {
                    Action::Maintain
                };
                self.auth
                    .may_on_namespace(&self.identity, namespace_of(target), action)
                    .await?
            }
        };
        if allowed {
            Ok(())
        } else if self.identity.is_anonymous() {
            Err(Error::Unauthorized("sign in first".into()).into())
        } else {
            Err(Error::Denied(format!("this needs the {role:?} role on {target}")).into())
        }
    }

    /// The access-control service, for the management calls it answers itself.
    pub fn auth(&self) -> &Auth {
        &self.auth
    }
}

/// How `/api/v1` words an unreadable `Authorization` header.
fn refusal(e: CredentialsError) -> &'static str {
    match e {
        CredentialsError::TooLarge | CredentialsError::Malformed => {
            "malformed Authorization header"
        }
        CredentialsError::MalformedBasic => "malformed Basic credentials",
        CredentialsError::UnsupportedScheme => "use Basic or Bearer credentials",
    }
}
