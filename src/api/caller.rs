//! [`Caller`]: the identity behind an `/api/v1` request, with one-line permission checks.
//! With auth disabled every caller is the local administrator (loopback, zero setup).

use axum::{
    extract::FromRequestParts,
    http::{header, request::Parts},
};

use super::{ApiError, ApiResult};
use crate::{
    auth::{Action, Auth, Identity, Role, namespace_of, require_admin},
    error::Error,
    http::{AppState, client_address},
    oci::RepoName,
};

/// Who is calling: Basic credentials (password or token) or a bearer token from `/token`.
pub struct Caller {
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
        let identity = match parts.headers.get(header::AUTHORIZATION) {
            None => Identity::anonymous(),
            Some(value) => {
                let value = value
                    .to_str()
                    .ok()
                    .filter(|v| v.len() <= 8 * 1024)
                    .ok_or_else(|| Error::Unauthorized("malformed Authorization header".into()))?;
                let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
                if scheme.eq_ignore_ascii_case("basic") {
                    let (user, password) = crate::http::access::basic_credentials(rest)
                        .ok_or_else(|| Error::Unauthorized("malformed Basic credentials".into()))?;
                    let client = client_address(&parts.extensions);
                    auth.login(&user, &password, &client).await?
                } else if scheme.eq_ignore_ascii_case("bearer") {
                    auth.bearer(rest.trim()).await?.0
                } else {
                    return Err(
                        Error::Unauthorized("use Basic or Bearer credentials".into()).into(),
                    );
                }
            }
        };
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

    pub fn auth(&self) -> &Auth {
        &self.auth
    }
}
