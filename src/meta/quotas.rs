//! Namespace quotas: their rows, and what a namespace uses against them (deduplicated bytes
//! and repositories).
//!
//! Counting the usage reads every link of the namespace, so each quota also keeps
//! `counted_bytes`: the usage as last counted plus what was admitted since, an upper bound
//! that lets most pushes be admitted by one conditional update.
//!
//! A namespace's repositories are found by a range over `repositories.name` (its unique
//! index; names compare as bytes on both dialects): `ns` itself and every name in
//! `[ns/, ns0)`, `0` being the byte after `/`.

use super::Meta;
use crate::{error::Result, oci::Digest};

/// The repositories of namespace `$1`: `$2` is `$1 || '/'`, `$3` is `$1 || '0'`.
const IN_NAMESPACE: &str = "(name = $1 OR (name >= $2 AND name < $3))";

/// One namespace's quota as stored; `None` is no limit.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct QuotaRow {
    /// The namespace (first component of repository names).
    pub namespace: String,
    /// The most deduplicated bytes the namespace may hold.
    pub storage_bytes: Option<i64>,
    /// The most repositories the namespace may hold.
    pub repositories: Option<i64>,
    /// The share of a limit (in percent) from which the quota warns.
    pub warn_percent: i64,
}

/// What a namespace holds, as its quota counts it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct NamespaceUsage {
    /// Bytes of the distinct blobs linked into its repositories plus those of its distinct
    /// manifests.
    pub used_bytes: i64,
    /// Repositories it holds (created ahead of a push, or by one).
    pub used_repositories: i64,
}

/// The bounds `$2` and `$3` of [`IN_NAMESPACE`] for `namespace`.
fn range_of(namespace: &str) -> (String, String) {
    (format!("{namespace}/"), format!("{namespace}0"))
}

impl Meta {
    /// The quota of `namespace`, if one is set.
    pub async fn quota(&self, namespace: &str) -> Result<Option<QuotaRow>> {
        Ok(sqlx::query_as(
            "SELECT namespace, storage_bytes, repositories, warn_percent FROM namespace_quotas \
             WHERE namespace = $1",
        )
        .bind(namespace)
        .fetch_optional(&self.reader)
        .await?)
    }

    /// Every quota set, by namespace (one row per namespace an administrator limited).
    pub async fn quotas(&self) -> Result<Vec<QuotaRow>> {
        Ok(sqlx::query_as(
            "SELECT namespace, storage_bytes, repositories, warn_percent FROM namespace_quotas \
             ORDER BY namespace",
        )
        .fetch_all(&self.reader)
        .await?)
    }

    /// Sets the quota of `quota.namespace`, replacing any.
    pub async fn put_quota(&self, quota: &QuotaRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO namespace_quotas \
             (namespace, storage_bytes, repositories, warn_percent, updated_at) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (namespace) DO UPDATE SET storage_bytes = excluded.storage_bytes, \
             repositories = excluded.repositories, warn_percent = excluded.warn_percent, \
             updated_at = excluded.updated_at",
        )
        .bind(&quota.namespace)
        .bind(quota.storage_bytes)
        .bind(quota.repositories)
        .bind(quota.warn_percent)
        .bind(self.now())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Removes the quota of `namespace`; false when it had none.
    pub async fn delete_quota(&self, namespace: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM namespace_quotas WHERE namespace = $1")
            .bind(namespace)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Adds `bytes` to the counted usage of `namespace` if the sum stays within its storage
    /// limit; returns whether it did (false also without a quota or a storage limit).
    pub async fn reserve_quota_bytes(&self, namespace: &str, bytes: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE namespace_quotas SET counted_bytes = counted_bytes + $2 \
             WHERE namespace = $1 AND counted_bytes + $2 <= storage_bytes",
        )
        .bind(namespace)
        .bind(bytes)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Adds `bytes` to the counted usage of `namespace` (if it has a quota), whatever the limit.
    pub async fn add_counted_bytes(&self, namespace: &str, bytes: i64) -> Result<()> {
        sqlx::query(
            "UPDATE namespace_quotas SET counted_bytes = counted_bytes + $2 WHERE namespace = $1",
        )
        .bind(namespace)
        .bind(bytes)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Sets the counted usage of `namespace` (if it has a quota) to `bytes`, just counted.
    pub async fn set_counted_bytes(&self, namespace: &str, bytes: i64) -> Result<()> {
        sqlx::query("UPDATE namespace_quotas SET counted_bytes = $2 WHERE namespace = $1")
            .bind(namespace)
            .bind(bytes)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// What `namespace` holds: its deduplicated bytes (each blob linked into any of its
    /// repositories once, each manifest digest once) and its repositories. One statement;
    /// its cost grows with the namespace's links (probes of the blob key, no scan of others).
    pub async fn namespace_usage(&self, namespace: &str) -> Result<NamespaceUsage> {
        let (low, high) = range_of(namespace);
        let sql = format!(
            "WITH ns AS (SELECT id FROM repositories WHERE {IN_NAMESPACE}) \
             SELECT \
             (SELECT CAST(COALESCE(SUM(b.size), 0) AS BIGINT) FROM blobs b WHERE b.digest IN \
              (SELECT rb.digest FROM repository_blobs rb \
               WHERE rb.repository_id IN (SELECT id FROM ns))) \
             + (SELECT CAST(COALESCE(SUM(d.size), 0) AS BIGINT) FROM \
              (SELECT m.digest, MAX(m.size) AS size FROM manifests m \
               WHERE m.repository_id IN (SELECT id FROM ns) GROUP BY m.digest) d) \
             AS used_bytes, \
             (SELECT COUNT(*) FROM ns) AS used_repositories"
        );
        Ok(sqlx::query_as(&sql)
            .bind(namespace)
            .bind(low)
            .bind(high)
            .fetch_one(&self.reader)
            .await?)
    }

    /// The repositories `namespace` holds.
    pub async fn namespace_repositories(&self, namespace: &str) -> Result<i64> {
        let (low, high) = range_of(namespace);
        let sql = format!("SELECT COUNT(*) FROM repositories WHERE {IN_NAMESPACE}");
        Ok(sqlx::query_scalar(&sql)
            .bind(namespace)
            .bind(low)
            .bind(high)
            .fetch_one(&self.reader)
            .await?)
    }

    /// Whether blob `digest` is linked into a repository of `namespace` already (so that
    /// linking it again costs the namespace nothing).
    pub async fn namespace_links_blob(&self, namespace: &str, digest: &Digest) -> Result<bool> {
        let (low, high) = range_of(namespace);
        let sql = format!(
            "SELECT rb.repository_id FROM repository_blobs rb WHERE rb.digest = $4 AND rb.repository_id IN \
             (SELECT id FROM repositories WHERE {IN_NAMESPACE}) LIMIT 1"
        );
        let found: Option<i64> = sqlx::query_scalar(&sql)
            .bind(namespace)
            .bind(low)
            .bind(high)
            .bind(digest.to_string())
            .fetch_optional(&self.reader)
            .await?;
        Ok(found.is_some())
    }
}
