//! Blobs: their rows, their links into repositories (pushes and mounts), and the fences
//! between blob writers and the collector. A writer counts itself in on a digest before it
//! writes the object; the collector claims a digest (a `deleting` fence) before it deletes
//! the row, and deletes the object under that claim. Either waits while the other is at work.

use std::collections::HashSet;

use super::{Meta, digest_texts, placeholders, repositories::ensure_repository};
use crate::{
    error::Result,
    oci::{Digest, RepoName},
};

impl Meta {
    /// Size of `digest` if it is linked into `repo`.
    pub async fn linked_blob_size(&self, repo: &RepoName, digest: &Digest) -> Result<Option<u64>> {
        let size: Option<i64> = sqlx::query_scalar(
            "SELECT b.size FROM repository_blobs rb \
             JOIN repositories r ON r.id = rb.repository_id \
             JOIN blobs b ON b.digest = rb.digest \
             WHERE r.name = $1 AND rb.digest = $2",
        )
        .bind(repo.as_str())
        .bind(digest.to_string())
        .fetch_optional(&self.reader)
        .await?;
        Ok(size.map(|s| s as u64))
    }

    /// Repositories (at most `limit`) that link `digest`, for mounts without `from`.
    pub async fn repositories_linking(&self, digest: &Digest, limit: i64) -> Result<Vec<RepoName>> {
        Ok(sqlx::query_scalar(
            "SELECT r.name FROM repository_blobs rb JOIN repositories r ON r.id = rb.repository_id \
             WHERE rb.digest = $1 ORDER BY r.name LIMIT $2",
        )
        .bind(digest.to_string())
        .bind(limit)
        .fetch_all(&self.reader)
        .await?)
    }

    /// Records a verified blob of `size` bytes, links it into `repo` and releases the
    /// writer's fence on it.
    pub async fn link_blob(&self, repo: &RepoName, digest: &Digest, size: u64) -> Result<()> {
        let now = self.now();
        let mut tx = self.write_tx().await?;
        let repository_id = ensure_repository(&mut tx, repo, now).await?;
        insert_blob(&mut *tx, digest, size, now).await?;
        insert_link(&mut *tx, repository_id, digest, now).await?;
        release_write_fence(&mut tx, digest).await?;
        self.queue_review(&mut tx, repository_id, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Links a blob the index already records into `repo` (a mount). Returns false, linking
    /// nothing, when the blob's row is gone (collected meanwhile): its bytes may be gone too,
    /// so the client must upload them again.
    pub async fn mount_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        let now = self.now();
        let mut tx = self.write_tx().await?;
        let repository_id = ensure_repository(&mut tx, repo, now).await?;
        let linked = sqlx::query(
            "INSERT INTO repository_blobs (repository_id, digest, linked_at) \
             SELECT $1, digest, $3 FROM blobs WHERE digest = $2 \
             ON CONFLICT (repository_id, digest) DO UPDATE SET linked_at = excluded.linked_at",
        )
        .bind(repository_id)
        .bind(digest.to_string())
        .bind(now)
        .execute(&mut *tx)
        .await;
        match linked {
            Ok(done) if done.rows_affected() > 0 => {
                self.queue_review(&mut tx, repository_id, now).await?;
                tx.commit().await?;
                Ok(true)
            }
            Ok(_) => Ok(false),
            // PostgreSQL: the row was deleted by a collector between our read and the key check.
            Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes the link of `digest` from `repo`; the bytes stay for other repositories.
    pub async fn unlink_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        let done = sqlx::query(
            "DELETE FROM repository_blobs WHERE digest = $2 \
             AND repository_id = (SELECT id FROM repositories WHERE name = $1)",
        )
        .bind(repo.as_str())
        .bind(digest.to_string())
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    // ---------------------------------------------------------------- writers' fences

    /// Counts a writer in on `digest` before its object is written. Returns false while the
    /// collector holds a claim on it (the caller waits and tries again).
    pub async fn begin_blob_write(&self, digest: &Digest) -> Result<bool> {
        let writers: Option<i64> = sqlx::query_scalar(
            "INSERT INTO blob_fences (digest, writers, deleting, updated_at) VALUES ($1, 1, 0, $2) \
             ON CONFLICT (digest) DO UPDATE SET writers = blob_fences.writers + 1, \
             updated_at = excluded.updated_at WHERE blob_fences.deleting = 0 RETURNING writers",
        )
        .bind(digest.to_string())
        .bind(self.now())
        .fetch_optional(&self.writer)
        .await?;
        Ok(writers.is_some())
    }

    /// Counts a writer out of `digest` without recording a blob (its write failed).
    pub async fn end_blob_write(&self, digest: &Digest) -> Result<()> {
        let mut tx = self.write_tx().await?;
        release_write_fence(&mut tx, digest).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Forgets writers counted in before `cutoff` and never out (their process died).
    pub async fn reset_stale_writers(&self, cutoff: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM blob_fences WHERE deleting = 0 AND updated_at <= $1")
            .bind(cutoff)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected())
    }

    /// The digests of the blobs from `first` to `last` (both included), in order, `limit`
    /// at most: one range read of the key's index, which the orphan check compares a sorted
    /// chunk of the store's listing with (instead of looking each object up).
    pub async fn blob_digests_between(
        &self,
        first: &Digest,
        last: &Digest,
        limit: i64,
    ) -> Result<Vec<Digest>> {
        Ok(sqlx::query_scalar(
            "SELECT digest FROM blobs WHERE digest >= $1 AND digest <= $2 ORDER BY digest LIMIT $3",
        )
        .bind(first.as_str())
        .bind(last.as_str())
        .bind(limit)
        .fetch_all(&self.reader)
        .await?)
    }

    /// Which of `digests` have a row, or a fence (a writer or the collector at work).
    pub async fn known_or_fenced_blobs(&self, digests: &[Digest]) -> Result<HashSet<Digest>> {
        self.present(
            |list| {
                format!(
                    "SELECT digest FROM blobs WHERE digest IN ({list}) \
                     UNION SELECT digest FROM blob_fences WHERE digest IN ({list})"
                )
            },
            &digest_texts(digests),
        )
        .await
    }

    // ---------------------------------------------------------------- the collector's claims

    /// Claims `digests` for deletion and deletes their rows, in one transaction: a digest is
    /// claimed only when no writer is at work on it, and its row deleted only when it is still
    /// unlinked and older than `cutoff` (with the scanner's inventory of it). Returns the
    /// deleted `(digest, size)`, whose objects the caller deletes before
    /// [`Meta::release_blob_claims`]; the other claims are released here.
    pub async fn claim_and_delete_blobs(
        &self,
        digests: &[Digest],
        cutoff: i64,
    ) -> Result<Vec<(Digest, i64)>> {
        if digests.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.write_tx().await?;
        // An existing fence is taken over only when no writer is in.
        let claimed = claim_fences(
            &mut tx,
            digests,
            "DO UPDATE SET deleting = 1, updated_at = excluded.updated_at \
             WHERE blob_fences.writers = 0",
            self.now(),
        )
        .await?;
        if claimed.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "DELETE FROM blobs WHERE created_at <= $1 AND digest IN ({}) \
             AND NOT EXISTS (SELECT 1 FROM repository_blobs rb WHERE rb.digest = blobs.digest) \
             RETURNING digest, size",
            placeholders(2, claimed.len())
        );
        let mut delete = sqlx::query_as(&sql).persistent(false).bind(cutoff);
        for d in &claimed {
            delete = delete.bind(d.to_string());
        }
        let deleted: Vec<(Digest, i64)> = delete.fetch_all(&mut *tx).await?;
        if !deleted.is_empty() {
            // A layer's inventory goes with its blob: pushed again, it is read again.
            let sql = format!(
                "DELETE FROM scan_layers WHERE digest IN ({})",
                placeholders(1, deleted.len())
            );
            let mut forget = sqlx::query(&sql).persistent(false);
            for (d, _) in &deleted {
                forget = forget.bind(d.to_string());
            }
            forget.execute(&mut *tx).await?;
        }
        let kept: Vec<&Digest> = {
            let gone: HashSet<&Digest> = deleted.iter().map(|(d, _)| d).collect();
            claimed.iter().filter(|d| !gone.contains(d)).collect()
        };
        release_claims(&mut tx, kept).await?;
        tx.commit().await?;
        Ok(deleted)
    }

    /// Claims those of `digests` that have no row and no writer at work, for the deletion of
    /// their objects (orphans); returns the digests claimed.
    pub async fn claim_orphans(&self, digests: &[Digest]) -> Result<Vec<Digest>> {
        if digests.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.write_tx().await?;
        // An orphan has no fence: any fence means someone is at work on the digest.
        let claimed = claim_fences(&mut tx, digests, "DO NOTHING", self.now()).await?;
        if claimed.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT digest FROM blobs WHERE digest IN ({})",
            placeholders(1, claimed.len())
        );
        let mut select = sqlx::query_scalar(&sql).persistent(false);
        for d in &claimed {
            select = select.bind(d.to_string());
        }
        let recorded: HashSet<Digest> = select.fetch_all(&mut *tx).await?.into_iter().collect();
        let (kept, orphans): (Vec<Digest>, Vec<Digest>) =
            claimed.into_iter().partition(|d| recorded.contains(d));
        release_claims(&mut tx, &kept).await?;
        tx.commit().await?;
        Ok(orphans)
    }

    /// Ends the collector's claims on `digests` (their objects are deleted).
    pub async fn release_blob_claims(&self, digests: &[Digest]) -> Result<()> {
        for chunk in digests.chunks(500) {
            let sql = format!(
                "DELETE FROM blob_fences WHERE deleting = 1 AND digest IN ({})",
                placeholders(1, chunk.len())
            );
            let mut release = sqlx::query(&sql).persistent(false);
            for d in chunk {
                release = release.bind(d.to_string());
            }
            release.execute(&self.writer).await?;
        }
        Ok(())
    }

    /// Claims older than `cutoff`: their collector stopped between the row and the object.
    pub async fn stale_blob_claims(&self, cutoff: i64) -> Result<Vec<Digest>> {
        Ok(sqlx::query_scalar(
            "SELECT digest FROM blob_fences WHERE deleting = 1 AND updated_at <= $1 LIMIT 10000",
        )
        .bind(cutoff)
        .fetch_all(&self.writer)
        .await?)
    }
}

/// Inserts a deleting fence for each of `digests` (`on_conflict` says what happens to an
/// existing one); returns the digests claimed.
async fn claim_fences(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    digests: &[Digest],
    on_conflict: &str,
    now: i64,
) -> Result<Vec<Digest>> {
    let values: Vec<String> = (0..digests.len())
        .map(|i| format!("(${}, 0, 1, $1)", i + 2))
        .collect();
    let sql = format!(
        "INSERT INTO blob_fences (digest, writers, deleting, updated_at) VALUES {} \
         ON CONFLICT (digest) {on_conflict} RETURNING digest",
        values.join(", ")
    );
    let mut claim = sqlx::query_scalar(&sql).persistent(false).bind(now);
    for d in digests {
        claim = claim.bind(d.to_string());
    }
    Ok(claim.fetch_all(&mut **tx).await?)
}

/// Releases the collector's claims on `digests` inside `tx` (rows it did not delete after all).
async fn release_claims<'d>(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    digests: impl IntoIterator<Item = &'d Digest>,
) -> Result<()> {
    let digests = digest_texts(digests);
    if digests.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "DELETE FROM blob_fences WHERE deleting = 1 AND digest IN ({})",
        placeholders(1, digests.len())
    );
    let mut release = sqlx::query(&sql).persistent(false);
    for d in &digests {
        release = release.bind(d.as_str());
    }
    release.execute(&mut **tx).await?;
    Ok(())
}

/// Counts a writer out of `digest` (inside the transaction that records the blob).
pub(super) async fn release_write_fence(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    digest: &Digest,
) -> Result<()> {
    let digest = digest.to_string();
    sqlx::query("UPDATE blob_fences SET writers = writers - 1 WHERE digest = $1 AND writers > 0")
        .bind(&digest)
        .execute(&mut **tx)
        .await?;
    sqlx::query("DELETE FROM blob_fences WHERE digest = $1 AND writers = 0 AND deleting = 0")
        .bind(&digest)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Records blob `digest` of `size` bytes, written `now`.
pub(super) async fn insert_blob<'e>(
    db: impl sqlx::Executor<'e, Database = sqlx::Any>,
    digest: &Digest,
    size: u64,
    now: i64,
) -> Result<()> {
    sqlx::query(
        // A write refreshes `created_at`: the grace period counts from the last write.
        "INSERT INTO blobs (digest, size, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (digest) DO UPDATE SET created_at = excluded.created_at",
    )
    .bind(digest.to_string())
    .bind(size as i64)
    .bind(now)
    .execute(db)
    .await?;
    Ok(())
}

/// Links `digest` into repository `repository_id`, `now`.
pub(super) async fn insert_link<'e>(
    db: impl sqlx::Executor<'e, Database = sqlx::Any>,
    repository_id: i64,
    digest: &Digest,
    now: i64,
) -> Result<()> {
    sqlx::query(
        // A new push of the blob refreshes the link's grace period.
        "INSERT INTO repository_blobs (repository_id, digest, linked_at) VALUES ($1, $2, $3) \
         ON CONFLICT (repository_id, digest) DO UPDATE SET linked_at = excluded.linked_at",
    )
    .bind(repository_id)
    .bind(digest.to_string())
    .bind(now)
    .execute(db)
    .await?;
    Ok(())
}
