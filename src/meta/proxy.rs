//! The pull-through cache's freshness: when each cached tag was last fetched or revalidated
//! from its upstream (`proxy_tags`).

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

impl Meta {
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
