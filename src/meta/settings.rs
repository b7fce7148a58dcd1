//! Repository settings as stored: the tag rules of one repository (read by
//! `registry::settings`).

use super::Meta;
use crate::{error::Result, oci::RepoName};

/// Tag rules of one repository as stored (patterns are JSON arrays of regexes).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredSettings {
    /// `mutable` or `immutable`.
    pub tag_mutability: String,
    /// Tags that stay mutable in an immutable repository.
    pub mutable_patterns: String,
    /// Tags only privileged callers may move or delete.
    pub protected_patterns: String,
}

impl Meta {
    /// The settings of `repo`, if any were stored.
    pub async fn repository_settings(&self, repo: &RepoName) -> Result<Option<StoredSettings>> {
        Ok(sqlx::query_as(
            "SELECT tag_mutability, mutable_patterns, protected_patterns FROM repository_settings \
             WHERE repository = $1",
        )
        .bind(repo.as_str())
        .fetch_optional(&self.reader)
        .await?)
    }

    /// Stores the settings of `repo`, replacing any.
    pub async fn put_repository_settings(
        &self,
        repo: &RepoName,
        settings: &StoredSettings,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO repository_settings (repository, tag_mutability, mutable_patterns, \
             protected_patterns, updated_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (repository) DO UPDATE SET tag_mutability = excluded.tag_mutability, \
             mutable_patterns = excluded.mutable_patterns, \
             protected_patterns = excluded.protected_patterns, updated_at = excluded.updated_at",
        )
        .bind(repo.as_str())
        .bind(&settings.tag_mutability)
        .bind(&settings.mutable_patterns)
        .bind(&settings.protected_patterns)
        .bind(self.now())
        .execute(&self.writer)
        .await?;
        Ok(())
    }
}
