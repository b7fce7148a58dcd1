//! Repositories: their rows and usage figures, the catalog (whole, or as a viewer may see
//! it), and deleting a repository with everything in it.

use super::{
    Meta, in_namespace,
    jobs::{Job, insert_job},
};
use crate::{error::Result, oci::RepoName};

/// A repository with its usage figures, as the management API lists it.
#[derive(Debug, serde::Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct RepositorySummary {
    /// The repository's name.
    #[schema(value_type = String)]
    pub name: RepoName,
    /// When the repository was first pushed to (unix seconds).
    pub created_at: i64,
    /// Manifest pushes counted so far.
    pub push_count: i64,
    /// Manifest pulls (GETs) counted so far.
    pub pull_count: i64,
    /// The last manifest push, if any.
    pub last_push_at: Option<i64>,
    /// The last manifest pull, if any.
    pub last_pull_at: Option<i64>,
    /// Manifests the repository holds.
    pub manifest_count: i64,
    /// Tags the repository holds.
    pub tag_count: i64,
    /// Bytes of the blobs linked into the repository (shared blobs count in each).
    pub blob_bytes: i64,
}

/// Who may see what in the catalog: the filter [`Meta::visible_catalog`] applies.
pub struct CatalogViewer<'a> {
    /// Sees every repository.
    pub admin: bool,
    /// Signed in: INTERNAL repositories are visible.
    pub signed_in: bool,
    /// The user whose memberships (reporter and up) open PRIVATE namespaces; -1 for none.
    pub user_id: i64,
    /// A namespace seen whole (the user's own, or a deploy token's); "" for none.
    pub own_namespace: &'a str,
    /// Visibility of repositories in namespaces that have no row.
    pub default_visibility: &'a str,
}

impl Meta {
    /// The id of `repo`, if it exists.
    pub async fn repository_id(&self, repo: &RepoName) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT id FROM repositories WHERE name = $1")
                .bind(repo.as_str())
                .fetch_optional(&self.reader)
                .await?,
        )
    }

    /// Repository names with at least one manifest, after `last`, at most `n`.
    pub async fn catalog(&self, last: &str, n: u32) -> Result<Vec<RepoName>> {
        Ok(sqlx::query_scalar(
            "SELECT name FROM repositories r WHERE name > $1 \
             AND EXISTS (SELECT 1 FROM manifests m WHERE m.repository_id = r.id) \
             ORDER BY name LIMIT $2",
        )
        .bind(last)
        .bind(i64::from(n))
        .fetch_all(&self.reader)
        .await?)
    }

    /// The catalog (repositories with a manifest, after `last`, `n` at most) as `viewer` may
    /// see it: filtered in the database, so that pages stay full and bounded.
    pub async fn visible_catalog(
        &self,
        last: &str,
        n: u32,
        viewer: &CatalogViewer<'_>,
    ) -> Result<Vec<RepoName>> {
        let sql = concat!(
            "SELECT r.name FROM repositories r WHERE r.name > $1 \
             AND EXISTS (SELECT 1 FROM manifests m WHERE m.repository_id = r.id) \
             AND ($2 = 1 \
              OR COALESCE((SELECT v.visibility FROM repository_visibility v WHERE v.name = r.name), \
                 (SELECT ns.default_visibility FROM namespaces ns WHERE ",
            in_namespace!("r.name", "ns.name"),
            "), $3) IN ('public', $4) \
              OR EXISTS (SELECT 1 FROM members mb WHERE mb.user_id = $5 AND mb.role >= 20 AND ",
            in_namespace!("r.name", "mb.namespace"),
            ") OR ",
            in_namespace!("r.name", "$6"),
            ") ORDER BY r.name LIMIT $7"
        );
        Ok(sqlx::query_scalar(sql)
            .bind(last)
            .bind(i64::from(viewer.admin))
            .bind(viewer.default_visibility)
            .bind(if viewer.signed_in {
                "internal"
            } else {
                "public"
            })
            .bind(viewer.user_id)
            .bind(viewer.own_namespace)
            .bind(i64::from(n))
            .fetch_all(&self.reader)
            .await?)
    }

    /// Repositories after `last` in name order, `n` at most, with their usage figures.
    /// Counts come from correlated subqueries on indexed columns, so a page costs `n` probes.
    pub async fn repository_summaries(&self, last: &str, n: u32) -> Result<Vec<RepositorySummary>> {
        Ok(sqlx::query_as(
            "SELECT r.name, r.created_at, r.push_count, r.pull_count, r.last_push_at, \
             r.last_pull_at, \
             (SELECT COUNT(*) FROM manifests m WHERE m.repository_id = r.id) AS manifest_count, \
             (SELECT COUNT(*) FROM tags t WHERE t.repository_id = r.id) AS tag_count, \
             (SELECT CAST(COALESCE(SUM(b.size), 0) AS BIGINT) FROM repository_blobs rb \
              JOIN blobs b ON b.digest = rb.digest WHERE rb.repository_id = r.id) AS blob_bytes \
             FROM repositories r WHERE r.name > $1 ORDER BY r.name LIMIT $2",
        )
        .bind(last)
        .bind(i64::from(n))
        .fetch_all(&self.reader)
        .await?)
    }

    /// Ids and names of repositories after id `after`, `n` at most.
    pub async fn repository_ids(&self, after: i64, n: i64) -> Result<Vec<(i64, RepoName)>> {
        Ok(
            sqlx::query_as("SELECT id, name FROM repositories WHERE id > $1 ORDER BY id LIMIT $2")
                .bind(after)
                .bind(n)
                .fetch_all(&self.reader)
                .await?,
        )
    }

    /// Deletes `repo` with its manifests, tags, links and upload sessions; returns the part
    /// keys of its sessions (the caller deletes the objects), or `None` if there was no such
    /// repository. Blobs only it linked are left unlinked, and a review of blobs is queued.
    pub async fn delete_repository(&self, repo: &RepoName) -> Result<Option<Vec<String>>> {
        let mut tx = self.write_tx().await?;
        let Some(repository_id) = lock_repository(&mut tx, repo).await? else {
            return Ok(None);
        };
        let parts: Vec<String> = sqlx::query_scalar(
            "SELECT p.object_key FROM upload_parts p JOIN uploads u ON u.id = p.upload_id \
             WHERE u.repository_id = $1",
        )
        .bind(repository_id)
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM repositories WHERE id = $1")
            .bind(repository_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM repository_settings WHERE repository = $1")
            .bind(repo.as_str())
            .execute(&mut *tx)
            .await?;
        if let Some(delay) = self.review_delay {
            let now = self.now();
            insert_job(&mut *tx, &Job::ReviewBlobs, now + delay, now).await?;
        }
        tx.commit().await?;
        Ok(Some(parts))
    }
}

/// The id of `repo`, with its row locked until the transaction ends (PostgreSQL; SQLite has
/// one writer). Pushes of manifests take the same lock.
pub(super) async fn lock_repository(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    repo: &RepoName,
) -> Result<Option<i64>> {
    Ok(
        sqlx::query_scalar("UPDATE repositories SET id = id WHERE name = $1 RETURNING id")
            .bind(repo.as_str())
            .fetch_optional(&mut **tx)
            .await?,
    )
}

/// Takes the row lock of repository `id` until the transaction ends (PostgreSQL).
pub(super) async fn lock_repository_id(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: i64,
) -> Result<()> {
    sqlx::query("UPDATE repositories SET id = id WHERE id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The id of `repo`, creating its row (created `now`) if there is none.
pub(super) async fn ensure_repository(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    repo: &RepoName,
    now: i64,
) -> Result<i64> {
    let found = sqlx::query_scalar("SELECT id FROM repositories WHERE name = $1")
        .bind(repo.as_str())
        .fetch_optional(&mut **tx)
        .await?;
    if let Some(id) = found {
        return Ok(id);
    }
    // A racing creator (another replica) may win; the upsert then returns its row.
    Ok(sqlx::query_scalar(
        "INSERT INTO repositories (name, created_at) VALUES ($1, $2) \
         ON CONFLICT (name) DO UPDATE SET name = excluded.name RETURNING id",
    )
    .bind(repo.as_str())
    .bind(now)
    .fetch_one(&mut **tx)
    .await?)
}
