//! Web UI sessions: a sign-in with a password opens one; the cookie carries a random secret
//! of which only the sha256 is stored. A session ends at its expiry, on sign-out, when its
//! user is deleted and when the user's password changes (the row keeps a stamp of the
//! password hash it was opened under). Tokens cannot open one: the UI manages tokens.

use base64::Engine as _;

use super::{Auth, Identity, secret_hash, user_identity};
use crate::{
    error::{Error, Result},
    meta::sessions::NewSession,
};

/// Seconds a session lasts from sign-in.
pub const SESSION_SECS: i64 = 12 * 60 * 60;

/// A session just opened: the cookie's secret and the token its forms carry.
pub struct OpenedSession {
    /// The cookie's value (never stored).
    pub secret: String,
    /// The CSRF token bound to the session.
    pub csrf: String,
}

/// A live session.
pub struct Session {
    /// The signed-in user (a password identity: everything the user may do).
    pub identity: Identity,
    /// The CSRF token bound to the session.
    pub csrf: String,
}

/// 256 random bits, URL-safe base64.
pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .expect("the system random source works");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl Auth {
    /// Checks `username` and `password` from `client` (rate-limited and audited as any
    /// sign-in) and opens a session for that user.
    pub async fn open_session(
        &self,
        username: &str,
        password: &str,
        client: &str,
    ) -> Result<OpenedSession> {
        let identity = self.login(username, password, client).await?;
        let (Some((user_id, _)), None) = (&identity.user, identity.scopes) else {
            return Err(Error::Unauthorized(
                "sign in with a user's password, not a token".into(),
            ));
        };
        let user = self
            .index()
            .user_by_id(*user_id)
            .await?
            .ok_or_else(|| Error::Unauthorized("invalid username or password".into()))?;
        let opened = OpenedSession {
            secret: random_secret(),
            csrf: random_secret(),
        };
        self.index()
            .insert_session(&NewSession {
                id_hash: &secret_hash(&opened.secret),
                user_id: user.id,
                csrf: &opened.csrf,
                password_stamp: &secret_hash(&user.password_hash),
                expires_at: self.now() + SESSION_SECS,
            })
            .await?;
        self.audit(&user.name, Some(client), "ui.sign_in", None, None)
            .await;
        Ok(opened)
    }

    /// The live session of cookie value `secret`: `None` when unknown, expired, signed out,
    /// or its user is gone or has changed password since.
    pub async fn session(&self, secret: &str) -> Result<Option<Session>> {
        let Some(row) = self.index().session_by_hash(&secret_hash(secret)).await? else {
            return Ok(None);
        };
        if row.expires_at <= self.now() {
            return Ok(None);
        }
        let Some(user) = self.index().user_by_id(row.user_id).await? else {
            return Ok(None);
        };
        if secret_hash(&user.password_hash) != row.password_stamp {
            return Ok(None);
        }
        Ok(Some(Session {
            identity: user_identity(user.id, &user.name, user.is_admin),
            csrf: row.csrf,
        }))
    }

    /// Ends the session of cookie value `secret` (nothing when there is none).
    pub async fn close_session(&self, secret: &str) -> Result<()> {
        self.index().delete_session(&secret_hash(secret)).await
    }
}
