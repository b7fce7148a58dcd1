//! Access control: identities (users, personal and deploy tokens), the Docker token flow's
//! signed JWTs, roles in namespaces and repository visibility. [`policy::decide`] is the one
//! function that says whether an identity may do an action on a repository; everything here
//! gathers its facts (with short-lived caches, so the hot path is a few map lookups) or
//! manages the rows they come from. [`Credentials`] reads the `Authorization` header for
//! every surface. It sits beside the registry, over the metadata index; token times, cache
//! ages and rate-limit windows read the registry's [`Clock`].
//!
//! Secrets are never stored nor logged: passwords as argon2id hashes, tokens as the sha256 of
//! their 256-bit random text (fast to look up, and no dictionary to attack).

mod credentials;
mod limiter;
mod manage;
pub mod policy;
pub mod sessions;
pub mod token;

use std::{
    collections::HashMap,
    hash::Hash,
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context;
use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier, password_hash::SaltString};
use base64::Engine as _;
use sha2::{Digest as _, Sha256};

pub use credentials::{AUTHORIZATION_MAX, Credentials, CredentialsError};
pub use manage::{NewTokenSecret, TokenRequest};
pub use policy::{Action, Grant, Identity, Role, Scopes, Target, Visibility, decide};
pub use token::{Claims, Keys, ResourceActions, Scope};

use crate::{
    clock::Clock,
    config::AuthConfig,
    error::{Error, Result},
    meta::{Meta, repositories::CatalogViewer},
    oci::RepoName,
};

/// Prefix of every token secret, so that a password and a token are told apart at a glance
/// (and secret scanners can find leaked ones).
const TOKEN_PREFIX: &str = "berth_";

/// Entries each cache holds before it is emptied (a bound on memory, not a tuning knob).
const CACHE_MAX: usize = 65_536;

/// Seconds a token's refusal for a scope is remembered (see [`Auth::refused_again`]): long
/// enough for a client's immediate retry, short enough to hold little.
const REFUSAL_MEMORY_SECS: i64 = 60;

/// The access-control service, cheap to clone.
#[derive(Clone)]
pub struct Auth(Arc<Inner>);

struct Inner {
    /// The metadata index, where users, tokens, roles and the audit log live.
    index: Meta,
    config: AuthConfig,
    keys: Keys,
    /// The registry's clock: token times, cache ages and rate-limit windows read it.
    clock: Clock,
    /// Seconds a cached decision lives.
    cache_ttl: i64,
    /// Verified access tokens (text → claims): a signature is checked once per token.
    verified: Cache<String, Claims>,
    /// Subjects → live identities (`None`: deleted or revoked).
    subjects: Cache<String, Option<Identity>>,
    /// sha256 of `user \0 password` → identity: Basic credentials on every request must not
    /// cost an argon2 hash each.
    logins: Cache<[u8; 32], Identity>,
    /// Logins being checked, so that concurrent requests with the same credentials wait for
    /// one argon2 check instead of each running their own when the cache entry expires.
    checking: Mutex<HashMap<[u8; 32], Arc<tokio::sync::Mutex<()>>>>,
    /// (subject, repository) → grant.
    grants: Cache<(String, String), Grant>,
    /// Repositories seen to exist. Only found ones are kept: a repository pushed since is
    /// seen at once, and one deleted since answers with its 404 for a few seconds more.
    existing: Cache<String, ()>,
    /// (token id, scope) → refused once for lacking that scope.
    refused: Cache<(String, String), ()>,
    limiter: limiter::Limiter,
}

/// A map of values that expire, emptied whole when full or when rows change. Entries are
/// stamped with the registry's clock (Unix seconds), so moving the clock ages them.
struct Cache<K, V> {
    clock: Clock,
    entries: Mutex<HashMap<K, (i64, V)>>,
}

impl<K: Eq + Hash, V: Clone> Cache<K, V> {
    fn new(clock: &Clock) -> Self {
        Cache {
            clock: clock.clone(),
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The value of `key` if it was put less than `ttl_secs` seconds ago.
    fn get(&self, key: &K, ttl_secs: i64) -> Option<V> {
        let now = self.clock.now();
        let map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        map.get(key)
            .filter(|(at, _)| now.saturating_sub(*at) < ttl_secs)
            .map(|(_, v)| v.clone())
    }

    fn put(&self, key: K, value: V) {
        let now = self.clock.now();
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= CACHE_MAX {
            map.clear();
        }
        map.insert(key, (now, value));
    }

    fn clear(&self) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

/// What the token endpoint answers (auth-token.md, "Token Response Fields").
#[derive(Debug, serde::Serialize)]
pub struct IssuedToken {
    /// The access token (the Docker token flow's name for it).
    pub token: String,
    /// The same access token (the OAuth2 name for it).
    pub access_token: String,
    /// Seconds the access token is valid.
    pub expires_in: i64,
    /// When the token was issued, RFC 3339 UTC.
    pub issued_at: String,
    /// A refresh token, when one was asked for (`offline`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// The granted scopes, space separated (OAuth2 responses).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

impl Auth {
    /// Opens the service over the metadata index `index`: loads (or creates) the signing
    /// key and creates the first administrator when `config.admin_password` is set and that
    /// user is absent. Token times, cache ages and rate-limit windows read `clock`.
    pub async fn open(index: Meta, config: &AuthConfig, clock: Clock) -> anyhow::Result<Auth> {
        let key = match &config.signing_key_path {
            Some(path) => key_from_file(path)?,
            None => index
                .signing_key(Keys::generate)
                .await
                .context("reading the token signing key from the metadata index")?,
        };
        let keys = Keys::load(&key, &config.issuer, &config.service)?;
        let auth = Auth(Arc::new(Inner {
            index,
            config: config.clone(),
            keys,
            cache_ttl: i64::try_from(config.cache_secs).unwrap_or(i64::MAX),
            verified: Cache::new(&clock),
            subjects: Cache::new(&clock),
            logins: Cache::new(&clock),
            checking: Mutex::new(HashMap::new()),
            grants: Cache::new(&clock),
            existing: Cache::new(&clock),
            refused: Cache::new(&clock),
            limiter: limiter::Limiter::new(
                config.max_failures,
                Duration::from_secs(config.failure_window_secs),
                clock.clone(),
            ),
            clock,
        }));
        if let Some(password) = &config.admin_password
            && auth
                .index()
                .user_by_name(&config.admin_user)
                .await?
                .is_none()
        {
            auth.create_user(&Identity::local_admin(), &config.admin_user, password, true)
                .await
                .context("creating the first administrator")?;
            tracing::info!(user = %config.admin_user, "created the first administrator");
        }
        Ok(auth)
    }

    /// Notes that the access token `jti` was refused for lacking `scope`, and says whether it
    /// had been refused for it moments before. The token spec answers such a token with 401
    /// and `insufficient_scope`, on which docker, containerd and python-dxf ask for a wider
    /// token; some clients (oras-py) re-send the same token on a 401 and ask again only after
    /// a 403, RFC 6750's answer. The second refusal is therefore a 403: each client gets the
    /// answer it acts on.
    pub fn refused_again(&self, jti: &str, scope: &str) -> bool {
        let key = (jti.to_owned(), scope.to_owned());
        let again = self.0.refused.get(&key, REFUSAL_MEMORY_SECS).is_some();
        self.0.refused.put(key, ());
        again
    }

    /// Access control is on (`auth.enabled`); off, everyone is the local administrator.
    pub fn enabled(&self) -> bool {
        self.0.config.enabled
    }

    /// The `[auth]` settings the service was opened with.
    pub fn config(&self) -> &AuthConfig {
        &self.0.config
    }

    /// The metadata index the identities and roles live in.
    fn index(&self) -> &Meta {
        &self.0.index
    }

    /// Now, by the registry's clock (Unix seconds).
    fn now(&self) -> i64 {
        self.0.clock.now()
    }

    /// Forgets every cached decision: called after any change to users, tokens or roles.
    fn invalidate(&self) {
        self.0.subjects.clear();
        self.0.logins.clear();
        self.0.grants.clear();
    }

    // ---------------------------------------------------------------- authentication

    /// Checks a user name and a password (or token secret) from `client`. Failures count
    /// towards the rate limit of both, and land in the audit log.
    pub async fn login(&self, username: &str, password: &str, client: &str) -> Result<Identity> {
        let keys = [format!("addr:{client}"), format!("user:{username}")];
        self.0.limiter.check(&keys)?;
        let fingerprint: [u8; 32] = Sha256::new()
            .chain_update(username.as_bytes())
            .chain_update([0])
            .chain_update(password.as_bytes())
            .finalize()
            .into();
        if let Some(identity) = self.0.logins.get(&fingerprint, self.0.cache_ttl) {
            return Ok(identity);
        }
        let gate = self
            .0
            .checking
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(fingerprint)
            .or_default()
            .clone();
        let _turn = gate.lock().await;
        if let Some(identity) = self.0.logins.get(&fingerprint, self.0.cache_ttl) {
            return Ok(identity);
        }
        let checked = self.check_credentials(username, password).await;
        self.0
            .checking
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&fingerprint);
        match checked? {
            Some(identity) => {
                self.0.limiter.forget(&keys[1]);
                self.0.logins.put(fingerprint, identity.clone());
                Ok(identity)
            }
            None => {
                self.0.limiter.fail(&keys);
                self.audit(username, Some(client), "login.failed", None, None)
                    .await;
                Err(Error::Unauthorized("invalid username or password".into()))
            }
        }
    }

    async fn check_credentials(&self, username: &str, password: &str) -> Result<Option<Identity>> {
        if password.starts_with(TOKEN_PREFIX) {
            let Some(row) = self.index().token_by_hash(&secret_hash(password)).await? else {
                return Ok(None);
            };
            if row.username != username {
                return Ok(None);
            }
            let identity = self.token_identity(row.id).await?;
            if identity.is_some() {
                self.index().touch_token(row.id).await?;
            }
            return Ok(identity);
        }
        let Some(user) = self.index().user_by_name(username).await? else {
            // Spend the same time as a real check, so that names cannot be probed by timing.
            let _ = verify_password(password, DUMMY_HASH).await;
            return Ok(None);
        };
        if !verify_password(password, &user.password_hash).await? {
            return Ok(None);
        }
        Ok(Some(user_identity(user.id, &user.name, user.is_admin)))
    }

    /// The live identity of token `id`: `None` when revoked, expired or its owner is gone.
    async fn token_identity(&self, id: i64) -> Result<Option<Identity>> {
        let Some(row) = self.index().token_by_id(id).await? else {
            return Ok(None);
        };
        if row.revoked_at.is_some() || row.expires_at.is_some_and(|at| at <= self.now()) {
            return Ok(None);
        }
        let scopes = Scopes::parse(&row.scopes).map_err(|e| anyhow::anyhow!(e))?;
        let mut identity = match row.user_id {
            Some(user_id) => match self.index().user_by_id(user_id).await? {
                Some(u) => user_identity(u.id, &u.name, u.is_admin),
                None => return Ok(None),
            },
            None => Identity {
                subject: String::new(),
                name: row.username.clone(),
                user: None,
                admin: false,
                scopes: None,
                namespace: row.namespace.clone(),
            },
        };
        identity.subject = format!("token:{}", row.id);
        identity.name = format!("{} (token {})", row.username, row.name);
        identity.scopes = Some(scopes);
        Ok(Some(identity))
    }

    /// The identity a token's `sub` names, if it still exists.
    async fn subject_identity(&self, subject: &str) -> Result<Option<Identity>> {
        if let Some(found) = self.0.subjects.get(&subject.to_owned(), self.0.cache_ttl) {
            return Ok(found);
        }
        let found = match subject.split_once(':') {
            _ if subject == "anonymous" => Some(Identity::anonymous()),
            Some(("user", id)) => match id.parse::<i64>() {
                Ok(id) => self
                    .index()
                    .user_by_id(id)
                    .await?
                    .map(|u| user_identity(u.id, &u.name, u.is_admin)),
                Err(_) => None,
            },
            Some(("token", id)) => match id.parse::<i64>() {
                Ok(id) => self.token_identity(id).await?,
                Err(_) => None,
            },
            _ => None,
        };
        self.0.subjects.put(subject.to_owned(), found.clone());
        Ok(found)
    }

    /// Verifies a registry access token and returns who it is for with its claims.
    pub async fn bearer(&self, token: &str) -> Result<(Identity, Claims)> {
        let claims = match self.0.verified.get(&token.to_owned(), i64::MAX) {
            Some(c) if c.exp > self.now() => c,
            _ => {
                let claims = self.0.keys.verify_at(token, self.now()).map_err(|e| {
                    tracing::debug!(error = %e, "refused a bearer token");
                    Error::Unauthorized("invalid or expired token".into())
                })?;
                if claims.typ.is_some() {
                    return Err(Error::Unauthorized(
                        "a refresh token is not an access token".into(),
                    ));
                }
                self.0.verified.put(token.to_owned(), claims.clone());
                claims
            }
        };
        let identity = self
            .subject_identity(&claims.sub)
            .await?
            .ok_or_else(|| Error::Unauthorized("the token's identity no longer exists".into()))?;
        Ok((identity, claims))
    }

    // ---------------------------------------------------------------- authorization

    /// What `who` may do on `repo`, from the live roles and visibility.
    pub async fn grant(&self, who: &Identity, repo: &RepoName) -> Result<Grant> {
        let key = (who.subject.clone(), repo.as_str().to_owned());
        if let Some(g) = self.0.grants.get(&key, self.0.cache_ttl) {
            return Ok(g);
        }
        let namespace = namespace_of(repo.as_str());
        let facts = self
            .index()
            .access_facts(
                repo.as_str(),
                namespace,
                who.user.as_ref().map_or(-1, |u| u.0),
            )
            .await?;
        let visibility = facts
            .repository_visibility
            .or(facts.namespace_visibility)
            .and_then(|v| Visibility::parse(&v))
            .unwrap_or_else(|| self.default_visibility());
        let target = Target {
            namespace,
            visibility,
            role: facts.role.and_then(Role::from_level),
        };
        let grant = Grant::of(who, &target);
        self.0.grants.put(key, grant);
        Ok(grant)
    }

    /// Whether repository `repo` exists: an anonymous read of a missing one is answered
    /// like one of a private repository (Docker Hub's answer), so the two look the same.
    /// Repeated anonymous pulls find the answer in memory, as their grants.
    pub async fn repository_exists(&self, repo: &RepoName) -> Result<bool> {
        let key = repo.as_str().to_owned();
        if self.0.existing.get(&key, self.0.cache_ttl).is_some() {
            return Ok(true);
        }
        let exists = self.index().repository_id(repo).await?.is_some();
        if exists {
            self.0.existing.put(key, ());
        }
        Ok(exists)
    }

    /// Whether `who` may do `action` on namespace `namespace` (as on its repositories with
    /// the namespace's own visibility): for management checks.
    pub async fn may_on_namespace(
        &self,
        who: &Identity,
        namespace: &str,
        action: Action,
    ) -> Result<bool> {
        let facts = self
            .index()
            .access_facts("", namespace, who.user.as_ref().map_or(-1, |u| u.0))
            .await?;
        let target = Target {
            namespace,
            visibility: facts
                .namespace_visibility
                .and_then(|v| Visibility::parse(&v))
                .unwrap_or_else(|| self.default_visibility()),
            role: facts.role.and_then(Role::from_level),
        };
        Ok(decide(who, &target, action))
    }

    fn default_visibility(&self) -> Visibility {
        self.0.config.default_visibility
    }

    /// What `who` may see of the catalog (auth on): the registry lists the repositories the
    /// viewer opens. A token without `read_registry` sees only PUBLIC repositories.
    pub fn catalog_viewer<'a>(&'a self, who: &'a Identity) -> CatalogViewer<'a> {
        let readable = who.scopes.is_none_or(|s| s.read);
        let own = match (&who.namespace, &who.user) {
            (Some(ns), _) => ns.as_str(),
            (None, Some((_, name))) if readable => name.as_str(),
            _ => "",
        };
        CatalogViewer {
            admin: who.admin && readable,
            signed_in: who.user.is_some() && readable,
            user_id: match &who.user {
                Some((id, _)) if readable => *id,
                _ => -1,
            },
            own_namespace: own,
            default_visibility: self.0.config.default_visibility.as_str(),
        }
    }

    // ---------------------------------------------------------------- token endpoint

    /// Issues an access token for `who` with the asked `scopes` cut down to what it may do
    /// (auth-token.md: a token server grants a subset rather than failing), and with
    /// `offline` a refresh token (never for anonymous).
    pub async fn issue(
        &self,
        who: &Identity,
        scopes: &[Scope],
        offline: bool,
    ) -> Result<IssuedToken> {
        let mut access = Vec::new();
        for scope in scopes {
            match scope {
                Scope::Repository { name, actions } => {
                    let granted = self.grant(who, name).await?.intersect(actions);
                    access.push(ResourceActions {
                        kind: "repository".into(),
                        name: name.as_str().to_owned(),
                        actions: granted,
                    });
                }
                Scope::Catalog => access.push(ResourceActions {
                    kind: "registry".into(),
                    name: "catalog".into(),
                    actions: vec!["*".into()],
                }),
            }
        }
        let scope_text = access
            .iter()
            .filter(|a| !a.actions.is_empty())
            .map(|a| format!("{}:{}:{}", a.kind, a.name, a.actions.join(",")))
            .collect::<Vec<_>>()
            .join(" ");
        let at = self.now();
        let ttl = self.0.config.token_ttl_secs as i64;
        let token = self.0.keys.sign(&who.subject, access, at, ttl, None)?;
        let refresh_token = if offline && !who.is_anonymous() {
            let ttl = self.0.config.refresh_ttl_secs as i64;
            Some(
                self.0
                    .keys
                    .sign(&who.subject, vec![], at, ttl, Some("refresh"))?,
            )
        } else {
            None
        };
        Ok(IssuedToken {
            access_token: token.clone(),
            token,
            expires_in: ttl,
            issued_at: rfc3339(at),
            refresh_token,
            scope: Some(scope_text),
        })
    }

    /// The identity a refresh token stands for, if still alive.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Identity> {
        let claims = self
            .0
            .keys
            .verify_at(refresh_token, self.now())
            .map_err(|_| Error::Unauthorized("invalid or expired refresh token".into()))?;
        if claims.typ.as_deref() != Some("refresh") {
            return Err(Error::Unauthorized("not a refresh token".into()));
        }
        self.subject_identity(&claims.sub)
            .await?
            .ok_or_else(|| Error::Unauthorized("the token's identity no longer exists".into()))
    }

    // ---------------------------------------------------------------- audit

    /// Records an event; a failure to record is logged, never fatal to the request.
    pub async fn audit(
        &self,
        actor: &str,
        client: Option<&str>,
        action: &str,
        target: Option<&str>,
        detail: Option<&str>,
    ) {
        if let Err(e) = self
            .index()
            .audit(actor, client, action, target, detail)
            .await
        {
            tracing::warn!(error = %e, action, "could not write the audit log");
        }
    }

    /// The audit log, newest first, before id `before` (0: from the newest), `n` at most:
    /// administrators only.
    pub async fn audit_entries(
        &self,
        who: &Identity,
        before: i64,
        n: u32,
    ) -> Result<Vec<crate::meta::audit::AuditRow>> {
        require_admin(who)?;
        self.index().audit_entries(before, n).await
    }
}

impl Identity {
    /// The `berth` command on the server itself: it holds the database, so it is admin.
    pub fn local_admin() -> Identity {
        Identity {
            subject: "local".into(),
            name: "local administrator".into(),
            user: None,
            admin: true,
            scopes: None,
            namespace: None,
        }
    }
}

/// Refuses anyone but an administrator (a password login or the local CLI).
pub fn require_admin(who: &Identity) -> Result<()> {
    if who.admin && who.scopes.is_none() {
        Ok(())
    } else if who.is_anonymous() {
        Err(Error::Unauthorized("sign in as an administrator".into()))
    } else {
        Err(Error::Denied("administrators only".into()))
    }
}

fn user_identity(id: i64, name: &str, admin: bool) -> Identity {
    Identity {
        subject: format!("user:{id}"),
        name: name.to_owned(),
        user: Some((id, name.to_owned())),
        admin,
        scopes: None,
        namespace: None,
    }
}

/// The namespace of a repository: its first path component.
pub fn namespace_of(repo: &str) -> &str {
    repo.split('/').next().unwrap_or(repo)
}

/// The stored form of a token secret.
fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A new random token secret (256 bits).
fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .expect("the system random source works");
    format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// An argon2id hash of a password nobody has, for constant-time refusals.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$4MEC8D+nFDDWzXVgtLLBh4bWmh8Tn8d6Y1bDu3z7JRM";

/// Hashes a password with argon2id (OWASP parameters: the crate's defaults), off the runtime.
pub async fn hash_password(password: &str) -> Result<String> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut salt = [0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt)
            .map_err(|_| anyhow::anyhow!("no random source"))?;
        let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok::<_, anyhow::Error>(
            Argon2::default()
                .hash_password(password.as_bytes(), &salt)
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .to_string(),
        )
    })
    .await
    .map_err(|e| Error::Internal(e.into()))?
    .map_err(Error::Internal)
}

async fn verify_password(password: &str, hash: &str) -> Result<bool> {
    let (password, hash) = (password.to_owned(), hash.to_owned());
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash)
            .map(|h| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .map_err(|e| Error::Internal(e.into()))
}

/// Reads the signing key file, creating it (mode 0600) with a new key when absent.
fn key_from_file(path: &Path) -> anyhow::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            let key = Keys::generate();
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options
                .open(path)
                .with_context(|| format!("auth.signing_key_path: creating {}", path.display()))?;
            std::io::Write::write_all(&mut file, key.as_bytes())?;
            Ok(key)
        }
        Err(e) => {
            Err(e).with_context(|| format!("auth.signing_key_path: reading {}", path.display()))
        }
    }
}

/// Unix seconds as RFC 3339 UTC (`issued_at`).
fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}
