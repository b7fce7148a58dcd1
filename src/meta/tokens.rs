//! Access tokens (personal and deploy, stored as hashes of their secrets) and the key that
//! signs bearer tokens.

use super::Meta;
use crate::error::Result;

/// A personal (`user_id` set) or deploy (`namespace` set) token, without its secret.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct TokenRow {
    /// The token's id.
    pub id: i64,
    /// `personal` or `deploy`.
    pub kind: String,
    /// The name its owner gave it.
    pub name: String,
    /// The user it acts for (personal tokens).
    #[serde(skip)]
    pub user_id: Option<i64>,
    /// The namespace it acts in (deploy tokens).
    pub namespace: Option<String>,
    /// The name it signs in with.
    pub username: String,
    /// What it may do, as stored.
    pub scopes: String,
    /// When it expires, if it does.
    pub expires_at: Option<i64>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<i64>,
    /// When it was last used, if ever.
    pub last_used_at: Option<i64>,
    /// When it was created.
    pub created_at: i64,
}

/// What a new token is stored as.
pub struct NewToken<'a> {
    /// `personal` or `deploy`.
    pub kind: &'a str,
    /// The name its owner gives it.
    pub name: &'a str,
    /// The user it acts for (personal tokens).
    pub user_id: Option<i64>,
    /// The namespace it acts in (deploy tokens).
    pub namespace: Option<&'a str>,
    /// The name it signs in with.
    pub username: &'a str,
    /// The hash of its secret.
    pub secret_hash: &'a str,
    /// What it may do.
    pub scopes: &'a str,
    /// When it expires, if it does.
    pub expires_at: Option<i64>,
}

const TOKEN_COLUMNS: &str = "id, kind, name, user_id, namespace, username, scopes, expires_at, \
                             revoked_at, last_used_at, created_at";

impl Meta {
    /// Stores a new token; returns its id.
    pub async fn insert_token(&self, t: NewToken<'_>) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "INSERT INTO access_tokens (kind, name, user_id, namespace, username, secret_hash, \
             scopes, expires_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             RETURNING id",
        )
        .bind(t.kind)
        .bind(t.name)
        .bind(t.user_id)
        .bind(t.namespace)
        .bind(t.username)
        .bind(t.secret_hash)
        .bind(t.scopes)
        .bind(t.expires_at)
        .bind(self.now())
        .fetch_one(&self.writer)
        .await?)
    }

    /// The token whose secret hashes to `secret_hash`.
    pub async fn token_by_hash(&self, secret_hash: &str) -> Result<Option<TokenRow>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {TOKEN_COLUMNS} FROM access_tokens WHERE secret_hash = $1"
        ))
        .bind(secret_hash)
        .fetch_optional(&self.reader)
        .await?)
    }

    /// The token with id `id`.
    pub async fn token_by_id(&self, id: i64) -> Result<Option<TokenRow>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {TOKEN_COLUMNS} FROM access_tokens WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.reader)
        .await?)
    }

    /// Tokens of a user (`user_id`) or of a namespace, newest first.
    pub async fn list_tokens(
        &self,
        user_id: Option<i64>,
        namespace: Option<&str>,
    ) -> Result<Vec<TokenRow>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {TOKEN_COLUMNS} FROM access_tokens \
             WHERE ($1 IS NULL OR user_id = $1) AND ($2 IS NULL OR namespace = $2) \
             ORDER BY id DESC"
        ))
        .bind(user_id)
        .bind(namespace)
        .fetch_all(&self.reader)
        .await?)
    }

    /// Records that token `id` was used now.
    pub async fn touch_token(&self, id: i64) -> Result<()> {
        sqlx::query("UPDATE access_tokens SET last_used_at = $2 WHERE id = $1")
            .bind(id)
            .bind(self.now())
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// Revokes a token; false when it does not exist or was revoked already.
    pub async fn revoke_token(&self, id: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE access_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
        )
        .bind(id)
        .bind(self.now())
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The stored signing key, creating it from `generate` when there is none. Replicas
    /// racing here all end up with the row that won.
    pub async fn signing_key(&self, generate: impl FnOnce() -> String) -> Result<String> {
        let select = "SELECT pkcs8 FROM signing_keys WHERE id = 1";
        if let Some(key) = sqlx::query_scalar(select)
            .fetch_optional(&self.writer)
            .await?
        {
            return Ok(key);
        }
        sqlx::query(
            "INSERT INTO signing_keys (id, pkcs8, created_at) VALUES (1, $1, $2) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(generate())
        .bind(self.now())
        .execute(&self.writer)
        .await?;
        Ok(sqlx::query_scalar(select).fetch_one(&self.writer).await?)
    }
}
