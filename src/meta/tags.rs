//! Tags: listing and deleting them, and the facts about tags and untagged manifests that
//! cleanup policies decide on.

use super::{Meta, repositories::lock_repository};
use crate::{
    error::Result,
    oci::{Digest, RepoName, Tag},
};

/// A tag with what cleanup policies decide on.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TagFacts {
    /// The tag.
    pub name: Tag,
    /// The manifest it points at.
    pub digest: Digest,
    /// When the tag was first pushed.
    pub pushed_at: i64,
    /// When the tag last moved.
    pub updated_at: i64,
    /// When the manifest the tag points at was first pushed (ECR's image push time).
    pub manifest_pushed_at: i64,
    /// The manifest's id: its order of arrival, which breaks ties between equal times.
    pub manifest_id: i64,
    /// When the tag was last pulled, if ever.
    pub last_pulled_at: Option<i64>,
}

/// A manifest without tags, for ECR's `untagged` rules.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UntaggedFacts {
    /// The manifest.
    pub digest: Digest,
    /// Its id: its order of arrival.
    pub manifest_id: i64,
    /// When it was first pushed.
    pub pushed_at: i64,
    /// When it was last pulled, if ever.
    pub last_pulled_at: Option<i64>,
}

impl Meta {
    /// Tags of `repository_id` after `last`, at most `n`, in the spec's lexical order
    /// (case-insensitive; tags equal but for case by their bytes).
    pub async fn list_tags(&self, repository_id: i64, last: &str, n: u32) -> Result<Vec<Tag>> {
        Ok(sqlx::query_scalar(
            "SELECT name FROM tags WHERE repository_id = $1 \
             AND (lower(name) > lower($2) OR (lower(name) = lower($2) AND name > $2)) \
             ORDER BY lower(name), name LIMIT $3",
        )
        .bind(repository_id)
        .bind(last)
        .bind(i64::from(n))
        .fetch_all(&self.reader)
        .await?)
    }

    /// Removes one tag; the manifest stays. Returns whether the tag existed.
    pub async fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<bool> {
        self.delete_in_repository(
            repo,
            "DELETE FROM tags WHERE repository_id = $1 AND name = $2",
            tag.as_str(),
        )
        .await
    }

    /// Deletes tag `tag` of `repo` if it still points at `digest` (a policy decided on that).
    pub async fn delete_tag_if_at(
        &self,
        repo: &RepoName,
        tag: &Tag,
        digest: &Digest,
    ) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        let Some(repository_id) = lock_repository(&mut tx, repo).await? else {
            return Ok(false);
        };
        let done = sqlx::query(
            "DELETE FROM tags WHERE repository_id = $1 AND name = $2 \
             AND manifest_id = (SELECT id FROM manifests WHERE repository_id = $1 AND digest = $3)",
        )
        .bind(repository_id)
        .bind(tag.as_str())
        .bind(digest.to_string())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        self.queue_review(&mut tx, repository_id, self.now())
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Every tag of `repo` with its manifest and times.
    pub async fn tag_facts(&self, repo: &RepoName) -> Result<Vec<TagFacts>> {
        Ok(sqlx::query_as(
            "SELECT t.name, m.digest, t.pushed_at, t.updated_at, m.pushed_at AS manifest_pushed_at, \
             t.last_pulled_at, m.id AS manifest_id \
             FROM tags t \
             JOIN manifests m ON m.id = t.manifest_id JOIN repositories r ON r.id = t.repository_id \
             WHERE r.name = $1 ORDER BY t.name",
        )
        .bind(repo.as_str())
        .fetch_all(&self.reader)
        .await?)
    }

    /// Manifests of `repo` without tags that are no child of an index of the repository.
    pub async fn untagged_facts(&self, repo: &RepoName) -> Result<Vec<UntaggedFacts>> {
        Ok(sqlx::query_as(
            "SELECT m.digest, m.pushed_at, m.last_pulled_at, m.id AS manifest_id FROM manifests m \
             JOIN repositories r ON r.id = m.repository_id WHERE r.name = $1 \
             AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.manifest_id = m.id) \
             AND NOT EXISTS (SELECT 1 FROM manifest_references mr JOIN manifests p ON p.id = mr.manifest_id \
                 WHERE mr.digest = m.digest AND mr.kind = 'manifest' AND p.repository_id = m.repository_id) \
             AND m.subject IS NULL ORDER BY m.digest",
        )
        .bind(repo.as_str())
        .fetch_all(&self.reader)
        .await?)
    }
}

/// The order of the management API's tag listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagSort {
    /// By name, in byte order.
    Name,
    /// Most recently pushed first, then by name.
    Pushed,
    /// Most recently pulled first (never pulled last), then by name.
    Pulled,
    /// Largest image first (its blobs, each once; an index's over its children), then by
    /// name.
    Size,
}

impl TagSort {
    /// The expression of `t` the order reads, descending (a constant for `Name`).
    fn key(self) -> &'static str {
        match self {
            // An expression, not a literal: a bare number in ORDER BY names a column.
            TagSort::Name => "CAST(0 AS BIGINT)",
            TagSort::Pushed => "t.updated_at",
            TagSort::Pulled => "COALESCE(t.last_pulled_at, -1)",
            TagSort::Size => super::images::SIZE_OF_M,
        }
    }
}

/// Where a page of the tag listing starts: after the tag with this sort value and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagCursor {
    /// The sort value of the last tag of the previous page (0 when sorted by name).
    pub key: i64,
    /// That tag's name.
    pub name: String,
}

/// A tag of the management API's listing.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TagRow {
    /// The tag.
    pub name: Tag,
    /// The manifest it points at.
    pub digest: Digest,
    /// When a push last pointed it at its manifest.
    pub updated_at: i64,
    /// When it was last pulled by name, if ever.
    pub last_pulled_at: Option<i64>,
    /// Bytes of the blobs of its manifest (an index's over its children), each once.
    pub size_bytes: i64,
}

impl TagRow {
    /// The value the listing's order `sort` reads, for the next page's cursor.
    pub fn sort_key(&self, sort: TagSort) -> i64 {
        match sort {
            TagSort::Name => 0,
            TagSort::Pushed => self.updated_at,
            TagSort::Pulled => self.last_pulled_at.unwrap_or(-1),
            TagSort::Size => self.size_bytes,
        }
    }
}

impl Meta {
    /// Tags of `repository_id` in `sort` order after `after`, at most `n`.
    pub async fn tag_listing(
        &self,
        repository_id: i64,
        sort: TagSort,
        after: Option<&TagCursor>,
        n: u32,
    ) -> Result<Vec<TagRow>> {
        let key = sort.key();
        let size = super::images::SIZE_OF_M;
        let sql = format!(
            "SELECT t.name, m.digest, t.updated_at, t.last_pulled_at, {size} AS size_bytes \
             FROM tags t \
             JOIN manifests m ON m.id = t.manifest_id WHERE t.repository_id = $1 \
             AND ($5 = 0 OR {key} < $2 OR ({key} = $2 AND t.name > $3)) \
             ORDER BY {key} DESC, t.name LIMIT $4"
        );
        let (cursor_key, cursor_name) = after.map_or((0, ""), |c| (c.key, c.name.as_str()));
        Ok(sqlx::query_as(&sql)
            .bind(repository_id)
            .bind(cursor_key)
            .bind(cursor_name)
            .bind(i64::from(n))
            .bind(i64::from(after.is_some()))
            .fetch_all(&self.reader)
            .await?)
    }
}
