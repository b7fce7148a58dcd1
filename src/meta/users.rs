//! Users: accounts with their password hashes and admin flag. What a user may do is decided
//! in `auth`.

use super::{IntBool, Meta};
use crate::error::Result;

/// A user as stored (the password as its argon2id PHC string).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    /// The user's id.
    pub id: i64,
    /// The user's unique name.
    pub name: String,
    /// The password, as an argon2id PHC string.
    pub password_hash: String,
    /// Whether the user administers the registry.
    #[sqlx(try_from = "IntBool")]
    pub is_admin: bool,
    /// When the user was created.
    pub created_at: i64,
}

const USER_COLUMNS: &str = "id, name, password_hash, is_admin, created_at";

impl Meta {
    /// Creates a user; `None` when the name is taken.
    pub async fn create_user(&self, name: &str, hash: &str, admin: bool) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "INSERT INTO users (name, password_hash, is_admin, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO NOTHING RETURNING id",
        )
        .bind(name)
        .bind(hash)
        .bind(i64::from(admin))
        .bind(self.now())
        .fetch_optional(&self.writer)
        .await?)
    }

    /// The user named `name`.
    pub async fn user_by_name(&self, name: &str) -> Result<Option<UserRow>> {
        Ok(
            sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE name = $1"))
                .bind(name)
                .fetch_optional(&self.reader)
                .await?,
        )
    }

    /// The user with id `id`.
    pub async fn user_by_id(&self, id: i64) -> Result<Option<UserRow>> {
        Ok(
            sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
                .bind(id)
                .fetch_optional(&self.reader)
                .await?,
        )
    }

    /// Users after `last` in name order, `n` at most.
    pub async fn list_users(&self, last: &str, n: u32) -> Result<Vec<UserRow>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE name > $1 ORDER BY name LIMIT $2"
        ))
        .bind(last)
        .bind(i64::from(n))
        .fetch_all(&self.reader)
        .await?)
    }

    /// Deletes a user with their tokens and memberships.
    pub async fn delete_user(&self, name: &str) -> Result<bool> {
        // The cascades need foreign keys on in SQLite; delete explicitly to hold on both.
        let mut tx = self.writer.begin().await?;
        let sub = "(SELECT id FROM users WHERE name = $1)";
        for table in ["access_tokens", "members"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE user_id = {sub}"))
                .bind(name)
                .execute(&mut *tx)
                .await?;
        }
        let done = sqlx::query("DELETE FROM users WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// Replaces the password hash of user `name`; false when there is no such user.
    pub async fn set_password(&self, name: &str, hash: &str) -> Result<bool> {
        let done = sqlx::query("UPDATE users SET password_hash = $2 WHERE name = $1")
            .bind(name)
            .bind(hash)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Grants or withdraws admin; false when there is no such user.
    pub async fn set_admin(&self, name: &str, admin: bool) -> Result<bool> {
        let done = sqlx::query("UPDATE users SET is_admin = $2 WHERE name = $1")
            .bind(name)
            .bind(i64::from(admin))
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
