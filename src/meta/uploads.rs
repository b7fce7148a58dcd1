//! Upload sessions: their rows and staged parts, from creation through appends to the blob
//! they end as, and the sessions the collector ends when they are abandoned.

use std::collections::HashSet;

use super::{
    Meta,
    blobs::{insert_blob, insert_link, release_write_fence},
    repositories::ensure_repository,
};
use crate::{
    error::Result,
    oci::{Digest, RepoName},
};

/// A staged part of an upload session.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UploadPart {
    /// Offset of the part's first byte in the upload.
    pub start: i64,
    /// Bytes in the part.
    pub size: i64,
    /// The part's object in the blob store.
    #[sqlx(rename = "object_key")]
    pub key: String,
}

/// An upload session idle for longer than allowed.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StaleUpload {
    /// The session's id.
    pub id: String,
    /// The repository it uploads into.
    pub repository: RepoName,
    /// Bytes received so far.
    pub size: i64,
}

impl Meta {
    /// Starts upload session `id` in `repo` (creating the repository if needed).
    pub async fn create_upload(&self, repo: &RepoName, id: &str) -> Result<()> {
        // One statement when the repository exists (the common case); a new repository first.
        let insert = "INSERT INTO uploads (id, repository_id, size, started_at, updated_at) \
                      SELECT $1, id, 0, $3, $3 FROM repositories WHERE name = $2";
        let now = self.now();
        let done = sqlx::query(insert)
            .bind(id)
            .bind(repo.as_str())
            .bind(now)
            .execute(&self.writer)
            .await?;
        if done.rows_affected() == 0 {
            let mut tx = self.write_tx().await?;
            ensure_repository(&mut tx, repo, now).await?;
            sqlx::query(insert)
                .bind(id)
                .bind(repo.as_str())
                .bind(now)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        Ok(())
    }

    /// Bytes received so far by upload `id` of `repo`, or `None` if there is no such session.
    pub async fn upload_size(&self, repo: &RepoName, id: &str) -> Result<Option<u64>> {
        let size: Option<i64> = sqlx::query_scalar(
            "SELECT u.size FROM uploads u JOIN repositories r ON r.id = u.repository_id \
             WHERE u.id = $1 AND r.name = $2",
        )
        .bind(id)
        .bind(repo.as_str())
        .fetch_optional(&self.reader)
        .await?;
        Ok(size.map(|s| s as u64))
    }

    /// Bytes received so far by upload `id`, whatever its repository.
    pub async fn upload_size_any(&self, id: &str) -> Result<Option<u64>> {
        let size: Option<i64> = sqlx::query_scalar("SELECT size FROM uploads WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.writer)
            .await?;
        Ok(size.map(|s| s as u64))
    }

    /// Records a part written at `start`, if the session still ends at `start`; returns
    /// whether it did (another request may have appended first).
    pub async fn append_upload_part(
        &self,
        id: &str,
        start: u64,
        size: u64,
        key: &str,
    ) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        let updated = sqlx::query(
            "UPDATE uploads SET size = size + $3, updated_at = $4 WHERE id = $1 AND size = $2",
        )
        .bind(id)
        .bind(start as i64)
        .bind(size as i64)
        .bind(self.now())
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO upload_parts (upload_id, start, size, object_key) VALUES ($1, $2, $3, $4)",
        )
        .bind(id)
        .bind(start as i64)
        .bind(size as i64)
        .bind(key)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The staged parts of upload `id`, in order.
    pub async fn upload_parts(&self, id: &str) -> Result<Vec<UploadPart>> {
        Ok(sqlx::query_as(
            "SELECT start, size, object_key FROM upload_parts WHERE upload_id = $1 ORDER BY start",
        )
        .bind(id)
        .fetch_all(&self.writer)
        .await?)
    }

    /// Ends upload `id`; returns whether it existed. Its part objects are the caller's to delete.
    pub async fn delete_upload(&self, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM uploads WHERE id = $1")
            .bind(id)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Completes upload `id`: the blob is recorded, the session ends, the blob is linked into
    /// `repo`, the writer's fence on `digest` is released and the repository is queued for
    /// review. One transaction: if it fails, nothing is recorded and the client pushes again.
    /// Returns false if the session was already gone.
    pub async fn finish_upload(
        &self,
        repo: &RepoName,
        id: &str,
        digest: &Digest,
        size: u64,
    ) -> Result<bool> {
        let now = self.now();
        let mut tx = self.write_tx().await?;
        let ended: Option<i64> = sqlx::query_scalar(
            "DELETE FROM uploads WHERE id = $1 \
             AND repository_id = (SELECT id FROM repositories WHERE name = $2) RETURNING repository_id",
        )
        .bind(id)
        .bind(repo.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(repository_id) = ended else {
            return Ok(false);
        };
        insert_blob(&mut *tx, digest, size, now).await?;
        insert_link(&mut *tx, repository_id, digest, now).await?;
        release_write_fence(&mut tx, digest).await?;
        self.queue_review(&mut tx, repository_id, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    // ---------------------------------------------------------------- abandoned sessions

    /// Sessions not written to since `cutoff`, after id `after`, `n` at most.
    pub async fn stale_uploads(
        &self,
        cutoff: i64,
        after: &str,
        n: i64,
    ) -> Result<Vec<StaleUpload>> {
        Ok(sqlx::query_as(
            "SELECT u.id, r.name AS repository, u.size FROM uploads u \
             JOIN repositories r ON r.id = u.repository_id \
             WHERE u.updated_at <= $1 AND u.id > $2 ORDER BY u.id LIMIT $3",
        )
        .bind(cutoff)
        .bind(after)
        .bind(n)
        .fetch_all(&self.reader)
        .await?)
    }

    /// Ends session `id` if it is still idle since before `cutoff`; returns its part keys
    /// (the caller deletes the objects), or `None` when it was written to meanwhile or is gone.
    pub async fn delete_stale_upload(&self, id: &str, cutoff: i64) -> Result<Option<Vec<String>>> {
        let mut tx = self.write_tx().await?;
        let parts: Vec<String> =
            sqlx::query_scalar("SELECT object_key FROM upload_parts WHERE upload_id = $1")
                .bind(id)
                .fetch_all(&mut *tx)
                .await?;
        let done = sqlx::query("DELETE FROM uploads WHERE id = $1 AND updated_at <= $2")
            .bind(id)
            .bind(cutoff)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        tx.commit().await?;
        Ok(Some(parts))
    }

    /// Which of `ids` are live upload sessions.
    pub async fn live_uploads(&self, ids: &[String]) -> Result<HashSet<String>> {
        self.present(
            |list| format!("SELECT id FROM uploads WHERE id IN ({list})"),
            ids,
        )
        .await
    }
}
