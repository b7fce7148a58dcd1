//! Web UI sessions: the sha256 of each cookie's secret, its user, its CSRF token, a stamp of
//! the user's password at sign-in and its expiry. Whether a session still holds is decided
//! in `auth`.

use super::Meta;
use crate::error::Result;

/// A session as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRow {
    /// The signed-in user.
    pub user_id: i64,
    /// The token every form of the session carries.
    pub csrf: String,
    /// The sha256 of the user's password hash at sign-in.
    pub password_stamp: String,
    /// When the session ends (unix seconds).
    pub expires_at: i64,
}

/// A session to store.
pub struct NewSession<'a> {
    /// The sha256 of the cookie's secret.
    pub id_hash: &'a str,
    /// The signed-in user.
    pub user_id: i64,
    /// The session's CSRF token.
    pub csrf: &'a str,
    /// The sha256 of the user's password hash now.
    pub password_stamp: &'a str,
    /// When it ends (unix seconds).
    pub expires_at: i64,
}

impl Meta {
    /// Stores a new session, first forgetting those that have ended.
    pub async fn insert_session(&self, session: &NewSession<'_>) -> Result<()> {
        let now = self.now();
        sqlx::query("DELETE FROM ui_sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.writer)
            .await?;
        sqlx::query(
            "INSERT INTO ui_sessions (id_hash, user_id, csrf, password_stamp, created_at, \
             expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(session.id_hash)
        .bind(session.user_id)
        .bind(session.csrf)
        .bind(session.password_stamp)
        .bind(now)
        .bind(session.expires_at)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// The session whose secret hashes to `id_hash`, ended or not.
    pub async fn session_by_hash(&self, id_hash: &str) -> Result<Option<SessionRow>> {
        Ok(sqlx::query_as(
            "SELECT user_id, csrf, password_stamp, expires_at FROM ui_sessions \
             WHERE id_hash = $1",
        )
        .bind(id_hash)
        .fetch_optional(&self.reader)
        .await?)
    }

    /// Forgets the session whose secret hashes to `id_hash` (signing out).
    pub async fn delete_session(&self, id_hash: &str) -> Result<()> {
        sqlx::query("DELETE FROM ui_sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(&self.writer)
            .await?;
        Ok(())
    }
}
