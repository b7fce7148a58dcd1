//! What access to one repository depends on: its own visibility (when set), its
//! namespace's default, and the caller's membership. Only plain rows here; what they mean
//! is decided in `auth`.

use super::Meta;
use crate::error::Result;

/// What decides access to one repository for one user.
#[derive(Debug, Clone, Default, sqlx::FromRow)]
pub struct AccessFacts {
    /// The repository's own visibility, if set.
    pub repository_visibility: Option<String>,
    /// Its namespace's default visibility, if the namespace exists.
    pub namespace_visibility: Option<String>,
    /// The user's role in the namespace, if a member.
    pub role: Option<i64>,
}

impl Meta {
    /// Sets the visibility of repository `name` (overriding its namespace's default).
    pub async fn set_repository_visibility(&self, name: &str, visibility: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO repository_visibility (name, visibility) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET visibility = excluded.visibility",
        )
        .bind(name)
        .bind(visibility)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Everything access to `repo` (in `namespace`) depends on, for `user_id` (-1: nobody),
    /// in one round trip.
    pub async fn access_facts(
        &self,
        repo: &str,
        namespace: &str,
        user_id: i64,
    ) -> Result<AccessFacts> {
        Ok(sqlx::query_as(
            "SELECT (SELECT visibility FROM repository_visibility WHERE name = $1) \
             AS repository_visibility, \
             (SELECT default_visibility FROM namespaces WHERE name = $2) AS namespace_visibility, \
             (SELECT role FROM members WHERE namespace = $2 AND user_id = $3) AS role",
        )
        .bind(repo)
        .bind(namespace)
        .bind(user_id)
        .fetch_one(&self.reader)
        .await?)
    }
}
