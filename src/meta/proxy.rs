//! The pull-through cache's freshness: when each cached tag was last fetched or revalidated
//! from its upstream (`proxy_tags`); and the rules managed through the API (`proxy_rules`),
//! as the JSON they were given in.

use super::Meta;
use crate::{
    error::{Error, Result},
    oci::{RepoName, Tag},
};

/// A repository of a pull-through cache rule, as eviction weighs it.
#[derive(Debug, Clone)]
pub struct CachedRepository {
    /// Its name.
    pub name: RepoName,
    /// Its last pull as written to the index (its creation when never pulled).
    pub last_used: i64,
    /// The bytes of the blobs it links.
    pub bytes: i64,
}

/// A rule managed through the API, as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredProxyRule {
    /// Its prefix.
    pub prefix: String,
    /// The rule as JSON (the keys of `[[proxy]]`).
    pub rule: String,
    /// When it was last written (unix seconds).
    pub updated_at: i64,
    /// Who wrote it.
    pub updated_by: String,
}

impl Meta {
    /// The rules managed through the API, by prefix.
    pub async fn stored_proxy_rules(&self) -> Result<Vec<StoredProxyRule>> {
        Ok(sqlx::query_as(
            "SELECT prefix, rule, updated_at, updated_by FROM proxy_rules ORDER BY prefix",
        )
        .fetch_all(&self.reader)
        .await?)
    }

    /// Creates or replaces the rule of `prefix`; true when it was created.
    pub async fn put_proxy_rule(&self, prefix: &str, rule: &str, by: &str) -> Result<bool> {
        let mut tx = self.writer.begin().await?;
        let existed: Option<(String,)> =
            sqlx::query_as("SELECT prefix FROM proxy_rules WHERE prefix = $1")
                .bind(prefix)
                .fetch_optional(&mut *tx)
                .await?;
        sqlx::query(
            "INSERT INTO proxy_rules (prefix, rule, updated_at, updated_by) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (prefix) DO UPDATE \
             SET rule = excluded.rule, updated_at = excluded.updated_at, \
             updated_by = excluded.updated_by",
        )
        .bind(prefix)
        .bind(rule)
        .bind(self.now())
        .bind(by)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(existed.is_none())
    }

    /// Deletes the rule of `prefix`; false when there was none.
    pub async fn delete_proxy_rule(&self, prefix: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM proxy_rules WHERE prefix = $1")
            .bind(prefix)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// When `tag` of `repo` was last fetched or revalidated upstream, if ever.
    pub async fn proxy_tag_checked(&self, repo: &RepoName, tag: &Tag) -> Result<Option<i64>> {
        let row: Option<(i64,)> = sqlx::query_as(
            "SELECT p.checked_at FROM proxy_tags p \
             JOIN repositories r ON r.id = p.repository_id \
             WHERE r.name = $1 AND p.tag = $2",
        )
        .bind(repo.as_str())
        .bind(tag.as_str())
        .fetch_optional(&self.reader)
        .await?;
        Ok(row.map(|(at,)| at))
    }

    /// Notes that `tag` of `repo` (which exists) was fetched or revalidated upstream now.
    pub async fn proxy_tag_checked_now(&self, repo: &RepoName, tag: &Tag) -> Result<()> {
        sqlx::query(
            "INSERT INTO proxy_tags (repository_id, tag, checked_at) \
             SELECT id, $2, $3 FROM repositories WHERE name = $1 \
             ON CONFLICT (repository_id, tag) DO UPDATE SET checked_at = excluded.checked_at",
        )
        .bind(repo.as_str())
        .bind(tag.as_str())
        .bind(self.now())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// The repositories whose names start with `prefix/`, least recently pulled first.
    pub async fn cached_repositories(&self, prefix: &str) -> Result<Vec<CachedRepository>> {
        let under = format!("{prefix}/");
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT r.name, COALESCE(r.last_pull_at, r.created_at), \
             CAST(COALESCE(SUM(b.size), 0) AS BIGINT) \
             FROM repositories r \
             LEFT JOIN repository_blobs rb ON rb.repository_id = r.id \
             LEFT JOIN blobs b ON b.digest = rb.digest \
             WHERE substr(r.name, 1, length($1)) = $1 \
             GROUP BY r.id, r.name, r.last_pull_at, r.created_at \
             ORDER BY 2, r.name",
        )
        .bind(&under)
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter()
            .map(|(name, last_used, bytes)| {
                Ok(CachedRepository {
                    name: name
                        .parse()
                        .map_err(|e| Error::Internal(anyhow::anyhow!("stored name {name}: {e}")))?,
                    last_used,
                    bytes,
                })
            })
            .collect()
    }
}
