//! The pull-through cache's freshness: when each cached tag was last fetched or revalidated
//! from its upstream (`proxy_tags`).

use super::Meta;
use crate::{
    error::Result,
    oci::{RepoName, Tag},
};

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
}
