//! Namespaces (the first path component of repository names) with their default
//! visibility, and their members with a role each.

use super::Meta;
use crate::error::Result;

/// One member of a namespace.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct MemberRow {
    /// The member's user name.
    #[sqlx(rename = "name")]
    pub user: String,
    /// The member's role, as its number.
    pub role: i64,
}

impl Meta {
    /// Creates a namespace; false when it exists.
    pub async fn create_namespace(&self, name: &str, visibility: &str) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO namespaces (name, default_visibility, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(visibility)
        .bind(self.now())
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The default visibility of namespace `name`, if it exists.
    pub async fn namespace_visibility(&self, name: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT default_visibility FROM namespaces WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.reader)
                .await?,
        )
    }

    /// Sets the default visibility of namespace `name`; false when it does not exist.
    pub async fn set_namespace_visibility(&self, name: &str, visibility: &str) -> Result<bool> {
        let done = sqlx::query("UPDATE namespaces SET default_visibility = $2 WHERE name = $1")
            .bind(name)
            .bind(visibility)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Makes user `user_id` a member of `namespace` with `role` (or changes their role).
    pub async fn set_member(&self, namespace: &str, user_id: i64, role: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO members (namespace, user_id, role) VALUES ($1, $2, $3) \
             ON CONFLICT (namespace, user_id) DO UPDATE SET role = excluded.role",
        )
        .bind(namespace)
        .bind(user_id)
        .bind(role)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Removes user `user_id` from `namespace`; false when they were no member.
    pub async fn remove_member(&self, namespace: &str, user_id: i64) -> Result<bool> {
        let done = sqlx::query("DELETE FROM members WHERE namespace = $1 AND user_id = $2")
            .bind(namespace)
            .bind(user_id)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The members of `namespace`, by user name.
    pub async fn list_members(&self, namespace: &str) -> Result<Vec<MemberRow>> {
        Ok(sqlx::query_as(
            "SELECT u.name, m.role FROM members m JOIN users u ON u.id = m.user_id \
             WHERE m.namespace = $1 ORDER BY u.name",
        )
        .bind(namespace)
        .fetch_all(&self.reader)
        .await?)
    }
}
