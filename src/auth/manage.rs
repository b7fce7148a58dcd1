//! Managing identities and access: users, tokens, namespaces, members and visibility. The
//! same functions serve `/api/v1` and the `berth` CLI, and each checks its caller first.

use serde::{Deserialize, Serialize};

use super::{
    Action, Auth, Identity, Role, Scopes, Visibility, hash_password, namespace_of, new_secret,
    require_admin, secret_hash,
};
use crate::{
    error::{Error, Result},
    meta::{
        namespaces::MemberRow,
        tokens::{NewToken, TokenRow},
        users::UserRow,
    },
    oci::RepoName,
};

/// What a caller asks for when creating a token.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// A label, e.g. the pipeline using it.
    pub name: String,
    /// `read_registry`, `write_registry`, `delete_registry`.
    pub scopes: Vec<String>,
    /// Unix seconds; none for a token that does not expire.
    #[serde(default)]
    pub expires_at: Option<i64>,
}

/// A created token: the only time its secret is shown.
#[derive(Debug, Clone, Serialize)]
pub struct NewTokenSecret {
    /// The token's id (to list or revoke it).
    pub id: i64,
    /// The user name to log in with.
    pub username: String,
    /// The password to log in with; stored only as a hash, so shown this once.
    pub secret: String,
    /// The scopes' names (`read_registry`, ...).
    pub scopes: Vec<&'static str>,
    /// Unix seconds; none for a token that does not expire.
    pub expires_at: Option<i64>,
}

/// A user as listed.
#[derive(Debug, Clone, Serialize)]
pub struct UserView {
    /// The user name.
    pub name: String,
    /// An administrator.
    pub admin: bool,
    /// Unix seconds.
    pub created_at: i64,
}

impl From<UserRow> for UserView {
    fn from(u: UserRow) -> Self {
        UserView {
            name: u.name,
            admin: u.is_admin,
            created_at: u.created_at,
        }
    }
}

/// User and namespace names: one repository-name component without separators' ambiguity.
fn check_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.split(['.', '_', '-']).all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        });
    if ok {
        Ok(())
    } else {
        Err(Error::BadRequest(format!(
            "{what} {name:?}: use lowercase letters and digits, separated by single '.', '_' or '-' (at most 64)"
        )))
    }
}

fn check_password(password: &str) -> Result<()> {
    if password.len() < 8 || password.len() > 1024 {
        return Err(Error::BadRequest(
            "a password needs 8 to 1024 characters".into(),
        ));
    }
    if password.starts_with(super::TOKEN_PREFIX) {
        return Err(Error::BadRequest(format!(
            "a password must not start with {:?} (reserved for tokens)",
            super::TOKEN_PREFIX
        )));
    }
    Ok(())
}

fn signed_in_user(who: &Identity) -> Result<(i64, String)> {
    match (&who.user, who.scopes) {
        (Some(user), None) => Ok(user.clone()),
        (Some(_), Some(_)) => Err(Error::Denied(
            "tokens cannot manage credentials; sign in with the password".into(),
        )),
        _ => Err(Error::Unauthorized("sign in as a user".into())),
    }
}

impl Auth {
    async fn require_on(&self, who: &Identity, namespace: &str, action: Action) -> Result<()> {
        if self.may_on_namespace(who, namespace, action).await? {
            Ok(())
        } else if who.is_anonymous() {
            Err(Error::Unauthorized("sign in first".into()))
        } else {
            Err(Error::Denied(format!(
                "this needs the {} role in namespace {namespace}",
                if action == Action::Own {
                    "owner"
                } else {
                    "maintainer"
                }
            )))
        }
    }

    async fn changed(&self, who: &Identity, action: &str, target: &str) {
        self.invalidate();
        self.audit(&who.name, None, action, Some(target), None)
            .await;
    }

    // ---------------------------------------------------------------- users

    /// Creates user `name` with `password` (administrators only); CONFLICT if it exists.
    pub async fn create_user(
        &self,
        who: &Identity,
        name: &str,
        password: &str,
        admin: bool,
    ) -> Result<()> {
        require_admin(who)?;
        check_name("user name", name)?;
        check_password(password)?;
        let hash = hash_password(password).await?;
        if self
            .index()
            .create_user(name, &hash, admin)
            .await?
            .is_none()
        {
            return Err(Error::Conflict(format!("user {name} exists")));
        }
        self.changed(who, "user.create", name).await;
        Ok(())
    }

    /// Deletes user `name` (administrators only); their tokens stop working.
    pub async fn delete_user(&self, who: &Identity, name: &str) -> Result<()> {
        require_admin(who)?;
        if !self.index().delete_user(name).await? {
            return Err(Error::BadRequest(format!("no user {name}")));
        }
        self.changed(who, "user.delete", name).await;
        Ok(())
    }

    /// Sets a password: one's own, or anyone's for an administrator.
    pub async fn set_password(&self, who: &Identity, name: &str, password: &str) -> Result<()> {
        if require_admin(who).is_err() && signed_in_user(who)?.1 != name {
            return Err(Error::Denied("only your own password".into()));
        }
        check_password(password)?;
        let hash = hash_password(password).await?;
        if !self.index().set_password(name, &hash).await? {
            return Err(Error::BadRequest(format!("no user {name}")));
        }
        self.changed(who, "user.password", name).await;
        Ok(())
    }

    /// Makes user `name` an administrator or not (administrators only).
    pub async fn set_admin(&self, who: &Identity, name: &str, admin: bool) -> Result<()> {
        require_admin(who)?;
        if !self.index().set_admin(name, admin).await? {
            return Err(Error::BadRequest(format!("no user {name}")));
        }
        self.changed(who, "user.admin", name).await;
        Ok(())
    }

    /// Users after `last` in name order, `n` at most (administrators only).
    pub async fn list_users(&self, who: &Identity, last: &str, n: u32) -> Result<Vec<UserView>> {
        require_admin(who)?;
        Ok(self
            .index()
            .list_users(last, n)
            .await?
            .into_iter()
            .map(UserView::from)
            .collect())
    }

    // ---------------------------------------------------------------- tokens

    /// A personal access token for `user` (oneself, or anyone for an administrator).
    pub async fn create_personal_token(
        &self,
        who: &Identity,
        user: &str,
        request: &TokenRequest,
    ) -> Result<NewTokenSecret> {
        if require_admin(who).is_err() && signed_in_user(who)?.1 != user {
            return Err(Error::Denied("only tokens of your own".into()));
        }
        let owner = self
            .index()
            .user_by_name(user)
            .await?
            .ok_or_else(|| Error::BadRequest(format!("no user {user}")))?;
        self.insert_token(who, "personal", Some(owner.id), None, user, request)
            .await
    }

    /// A deploy token for `namespace` (maintainers), logging in as `<namespace>+<name>`.
    pub async fn create_deploy_token(
        &self,
        who: &Identity,
        namespace: &str,
        request: &TokenRequest,
    ) -> Result<NewTokenSecret> {
        check_name("namespace", namespace)?;
        check_name("token name", &request.name)?;
        self.require_on(who, namespace, Action::Maintain).await?;
        let username = format!("{namespace}+{}", request.name);
        self.insert_token(who, "deploy", None, Some(namespace), &username, request)
            .await
    }

    async fn insert_token(
        &self,
        who: &Identity,
        kind: &str,
        user_id: Option<i64>,
        namespace: Option<&str>,
        username: &str,
        request: &TokenRequest,
    ) -> Result<NewTokenSecret> {
        if request.name.is_empty() || request.name.len() > 100 {
            return Err(Error::BadRequest(
                "a token needs a name of 1 to 100 characters".into(),
            ));
        }
        let scopes = Scopes::parse(&request.scopes.join(",")).map_err(Error::BadRequest)?;
        if request.expires_at.is_some_and(|at| at <= self.now()) {
            return Err(Error::BadRequest("expires_at is in the past".into()));
        }
        let secret = new_secret();
        let names = scopes.names();
        let id = self
            .index()
            .insert_token(NewToken {
                kind,
                name: &request.name,
                user_id,
                namespace,
                username,
                secret_hash: &secret_hash(&secret),
                scopes: &names.join(","),
                expires_at: request.expires_at,
            })
            .await
            .map_err(|e| match e {
                Error::Internal(_) if kind == "deploy" => {
                    Error::Conflict(format!("deploy token {username} exists"))
                }
                e => e,
            })?;
        self.changed(
            who,
            &format!("token.create.{kind}"),
            &format!("{username} (token {id})"),
        )
        .await;
        Ok(NewTokenSecret {
            id,
            username: username.to_owned(),
            secret,
            scopes: names,
            expires_at: request.expires_at,
        })
    }

    /// Tokens of `user` (oneself, or anyone for an administrator).
    pub async fn list_personal_tokens(&self, who: &Identity, user: &str) -> Result<Vec<TokenRow>> {
        if require_admin(who).is_err() && signed_in_user(who)?.1 != user {
            return Err(Error::Denied("only tokens of your own".into()));
        }
        let Some(owner) = self.index().user_by_name(user).await? else {
            return Err(Error::BadRequest(format!("no user {user}")));
        };
        self.index().list_tokens(Some(owner.id), None).await
    }

    /// The deploy tokens of `namespace` (its maintainers and owners).
    pub async fn list_deploy_tokens(
        &self,
        who: &Identity,
        namespace: &str,
    ) -> Result<Vec<TokenRow>> {
        self.require_on(who, namespace, Action::Maintain).await?;
        self.index().list_tokens(None, Some(namespace)).await
    }

    /// Revokes token `id`: its owner, a maintainer of a deploy token's namespace, or an
    /// administrator. A token unknown to the caller answers as missing.
    pub async fn revoke_token(&self, who: &Identity, id: i64) -> Result<()> {
        let missing = || Error::BadRequest(format!("no token {id}"));
        let row = self.index().token_by_id(id).await?.ok_or_else(missing)?;
        let allowed = require_admin(who).is_ok()
            || match (&row.namespace, row.user_id) {
                (Some(ns), _) => self.may_on_namespace(who, ns, Action::Maintain).await?,
                (None, Some(owner)) => signed_in_user(who).is_ok_and(|u| u.0 == owner),
                _ => false,
            };
        if !allowed {
            return Err(missing());
        }
        if !self.index().revoke_token(id).await? {
            return Err(Error::Conflict(format!("token {id} is revoked already")));
        }
        self.changed(
            who,
            "token.revoke",
            &format!("{} (token {id})", row.username),
        )
        .await;
        Ok(())
    }

    // ---------------------------------------------------------------- namespaces

    /// Creates a namespace (administrators), optionally with a first owner.
    pub async fn create_namespace(
        &self,
        who: &Identity,
        name: &str,
        visibility: Option<Visibility>,
        owner: Option<&str>,
    ) -> Result<()> {
        require_admin(who)?;
        check_name("namespace", name)?;
        let visibility = visibility.unwrap_or_else(|| self.default_visibility());
        if !self
            .index()
            .create_namespace(name, visibility.as_str())
            .await?
        {
            return Err(Error::Conflict(format!("namespace {name} exists")));
        }
        if let Some(owner) = owner {
            self.set_member(who, name, owner, Role::Owner).await?;
        }
        self.changed(who, "namespace.create", name).await;
        Ok(())
    }

    /// The namespace row, created on first management of a namespace its caller owns (a
    /// user's own namespace exists without one).
    async fn ensure_namespace(&self, name: &str) -> Result<()> {
        self.index()
            .create_namespace(name, self.default_visibility().as_str())
            .await?;
        Ok(())
    }

    /// Sets the visibility of `namespace`'s repositories without their own (its owners).
    pub async fn set_namespace_visibility(
        &self,
        who: &Identity,
        namespace: &str,
        visibility: Visibility,
    ) -> Result<()> {
        check_name("namespace", namespace)?;
        self.require_on(who, namespace, Action::Own).await?;
        self.ensure_namespace(namespace).await?;
        self.index()
            .set_namespace_visibility(namespace, visibility.as_str())
            .await?;
        self.changed(
            who,
            &format!("namespace.visibility.{}", visibility.as_str()),
            namespace,
        )
        .await;
        Ok(())
    }

    /// Gives `user` `role` in `namespace` (its owners).
    pub async fn set_member(
        &self,
        who: &Identity,
        namespace: &str,
        user: &str,
        role: Role,
    ) -> Result<()> {
        check_name("namespace", namespace)?;
        self.require_on(who, namespace, Action::Own).await?;
        let target = self
            .index()
            .user_by_name(user)
            .await?
            .ok_or_else(|| Error::BadRequest(format!("no user {user}")))?;
        self.ensure_namespace(namespace).await?;
        self.index()
            .set_member(namespace, target.id, role as i64)
            .await?;
        self.changed(who, "member.set", &format!("{namespace}:{user}:{role:?}"))
            .await;
        Ok(())
    }

    /// Takes `user` out of `namespace` (its owners).
    pub async fn remove_member(&self, who: &Identity, namespace: &str, user: &str) -> Result<()> {
        self.require_on(who, namespace, Action::Own).await?;
        let target = self
            .index()
            .user_by_name(user)
            .await?
            .ok_or_else(|| Error::BadRequest(format!("no user {user}")))?;
        if !self.index().remove_member(namespace, target.id).await? {
            return Err(Error::BadRequest(format!(
                "{user} is not a member of {namespace}"
            )));
        }
        self.changed(who, "member.remove", &format!("{namespace}:{user}"))
            .await;
        Ok(())
    }

    /// The members of `namespace` with their roles (its maintainers and owners).
    pub async fn list_members(&self, who: &Identity, namespace: &str) -> Result<Vec<MemberRow>> {
        self.require_on(who, namespace, Action::Maintain).await?;
        self.index().list_members(namespace).await
    }

    /// Sets one repository's visibility (owners of its namespace), before or after its
    /// first push.
    pub async fn set_repository_visibility(
        &self,
        who: &Identity,
        repo: &RepoName,
        visibility: Visibility,
    ) -> Result<()> {
        self.require_on(who, namespace_of(repo.as_str()), Action::Own)
            .await?;
        self.index()
            .set_repository_visibility(repo.as_str(), visibility.as_str())
            .await?;
        self.changed(
            who,
            &format!("repository.visibility.{}", visibility.as_str()),
            repo.as_str(),
        )
        .await;
        Ok(())
    }
}
