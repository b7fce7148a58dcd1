//! The index side of the storage lifecycle: the job queue, garbage-collection candidates and
//! their re-validated deletes, the fences between blob writers and the collector, GC run
//! records, cleanup policies and repository settings.
//!
//! Every delete re-checks, in its own statement or transaction, the condition that made its
//! row a candidate: candidates are listed without locks (and may be stale by the time they are
//! deleted); only the re-validated delete decides.

use std::{collections::HashSet, sync::LazyLock};

use futures::{StreamExt, stream::BoxStream};
use sqlx::Row;

use super::{Meta, lock_repository, now};
use crate::{
    error::Result,
    oci::{Digest, RepoName},
};

/// A job leased from the queue.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: i64,
    pub kind: String,
    pub payload: String,
    /// Including this one.
    pub attempts: i64,
}

/// Job kinds.
pub const JOB_REVIEW_REPOSITORY: &str = "review_repository";
pub const JOB_REVIEW_BLOBS: &str = "review_blobs";
pub const JOB_GC_RUN: &str = "gc_run";
pub const JOB_GC_SCHEDULE: &str = "gc_schedule";

/// What a garbage collection removed (or, in a dry run, would remove).
#[derive(Debug, Default, Clone, Copy, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct GcCounts {
    pub manifests: i64,
    pub links: i64,
    pub blobs: i64,
    pub uploads: i64,
    pub orphans: i64,
    pub bytes: i64,
    pub errors: i64,
}

impl GcCounts {
    pub fn add(&mut self, other: &GcCounts) {
        self.manifests += other.manifests;
        self.links += other.links;
        self.blobs += other.blobs;
        self.uploads += other.uploads;
        self.orphans += other.orphans;
        self.bytes += other.bytes;
        self.errors += other.errors;
    }
}

/// One recorded garbage collection.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GcRunRecord {
    pub id: i64,
    pub trigger: String,
    pub dry_run: bool,
    pub state: String,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    #[serde(flatten)]
    pub counts: GcCounts,
    /// What was (or would be) deleted and why, as recorded by the run.
    pub report: Option<serde_json::Value>,
}

/// An upload session idle for longer than allowed.
#[derive(Debug, Clone)]
pub struct StaleUpload {
    pub id: String,
    pub repository: String,
    pub size: i64,
}

/// A manifest the collector may remove: untagged, no child of an index of its repository,
/// no referrer of a subject its repository holds.
#[derive(Debug, Clone)]
pub struct ManifestCandidate {
    pub id: i64,
    pub repository_id: i64,
    pub repository: String,
    pub digest: String,
    pub size: i64,
    pub subject: Option<String>,
}

/// A repository link no manifest of its repository needs.
#[derive(Debug, Clone)]
pub struct LinkCandidate {
    pub repository_id: i64,
    pub repository: String,
    pub digest: String,
    pub size: i64,
}

/// One row of the mark: a blob, and one of its links (none if it has none).
#[derive(Debug, Clone)]
pub struct BlobMark {
    pub digest: String,
    pub size: i64,
    /// Written before the cutoff.
    pub old: bool,
    pub link: Option<LinkMark>,
}

/// A link as the mark judges it.
#[derive(Debug, Clone)]
pub struct LinkMark {
    pub repository: String,
    /// Made before the cutoff and needed by no manifest of its repository.
    pub unneeded: bool,
}

/// Bytes a repository holds in links no manifest needs.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RepositoryEstimate {
    pub repository: String,
    pub unreferenced_links: i64,
    pub unreferenced_bytes: i64,
}

/// A cleanup policy as stored.
#[derive(Debug, Clone)]
pub struct StoredPolicy {
    pub id: i64,
    pub name: String,
    pub pattern: String,
    pub enabled: bool,
    pub cadence: String,
    pub rules: String,
    pub next_run_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Tag rules of one repository as stored (patterns are JSON arrays of regexes).
#[derive(Debug, Clone)]
pub struct StoredSettings {
    pub tag_mutability: String,
    pub mutable_patterns: String,
    pub protected_patterns: String,
}

/// A tag with what cleanup policies decide on.
#[derive(Debug, Clone)]
pub struct TagFacts {
    pub name: String,
    pub digest: String,
    pub pushed_at: i64,
    pub updated_at: i64,
    /// When the manifest the tag points at was first pushed (ECR's image push time).
    pub manifest_pushed_at: i64,
    /// The manifest's id: its order of arrival, which breaks ties between equal times.
    pub manifest_id: i64,
    pub last_pulled_at: Option<i64>,
}

/// A manifest without tags, for ECR's `untagged` rules.
#[derive(Debug, Clone)]
pub struct UntaggedFacts {
    pub digest: String,
    pub manifest_id: i64,
    pub pushed_at: i64,
    pub last_pulled_at: Option<i64>,
}

/// `$start, $start+1, ...`: `n` placeholders for an `IN` list.
/// Inserts a deleting fence for each of `digests` (`on_conflict` says what happens to an
/// existing one); returns the digests claimed.
async fn claim_fences(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    digests: &[String],
    on_conflict: &str,
) -> Result<Vec<String>> {
    let values: Vec<String> = (0..digests.len())
        .map(|i| format!("(${}, 0, 1, $1)", i + 2))
        .collect();
    let sql = format!(
        "INSERT INTO blob_fences (digest, writers, deleting, updated_at) VALUES {} \
         ON CONFLICT (digest) {on_conflict} RETURNING digest",
        values.join(", ")
    );
    let mut claim = sqlx::query(&sql).bind(now());
    for d in digests {
        claim = claim.bind(d.as_str());
    }
    Ok(claim
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

fn placeholders(start: usize, n: usize) -> String {
    (start..start + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The conditions under which manifest `m` is collectible as untagged (binds: `$1` cutoff).
const UNTAGGED_COLLECTIBLE: &str = "m.pushed_at <= $1 \
    AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.manifest_id = m.id) \
    AND NOT EXISTS (SELECT 1 FROM manifest_references mr JOIN manifests p ON p.id = mr.manifest_id \
        WHERE mr.digest = m.digest AND mr.kind = 'manifest' AND p.repository_id = m.repository_id) \
    AND (m.subject IS NULL OR NOT EXISTS (SELECT 1 FROM manifests s \
        WHERE s.repository_id = m.repository_id AND s.digest = m.subject))";

/// The condition under which link `rb` is needed by a manifest of its repository.
const LINK_NEEDED: &str = "EXISTS (SELECT 1 FROM manifest_references mr \
    JOIN manifests m ON m.id = mr.manifest_id \
    WHERE mr.digest = repository_blobs.digest AND m.repository_id = repository_blobs.repository_id)";

/// See [`Meta::mark_blobs`].
static MARK_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT b.digest, b.size, CAST(CASE WHEN b.created_at <= $1 THEN 1 ELSE 0 END AS BIGINT), \
         r.name, CAST(CASE WHEN repository_blobs.linked_at <= $1 AND NOT {LINK_NEEDED} \
             THEN 1 ELSE 0 END AS BIGINT) \
         FROM blobs b LEFT JOIN repository_blobs ON repository_blobs.digest = b.digest \
         LEFT JOIN repositories r ON r.id = repository_blobs.repository_id \
         ORDER BY b.digest"
    )
});

impl Meta {
    /// Sets how long after an event its repository is reviewed (`None`: not at all).
    pub fn set_review_delay(&mut self, delay_secs: Option<u64>) {
        self.review_delay = delay_secs.map(|d| d as i64);
    }

    /// Queues a review of `repository_id` (once: a queued review absorbs later events).
    pub(super) async fn queue_review(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        repository_id: i64,
        now: i64,
    ) -> Result<()> {
        let Some(delay) = self.review_delay else {
            return Ok(());
        };
        sqlx::query(
            "INSERT INTO jobs (kind, payload, dedupe, run_after, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (dedupe) DO NOTHING",
        )
        .bind(JOB_REVIEW_REPOSITORY)
        .bind(repository_id.to_string())
        .bind(format!("{JOB_REVIEW_REPOSITORY}:{repository_id}"))
        .bind(now + delay)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    // ---------------------------------------------------------------- jobs

    /// Queues a job due at `run_after`; with `dedupe`, only if no queued job has that key.
    /// Returns whether a job was queued.
    pub async fn enqueue_job(
        &self,
        kind: &str,
        payload: &str,
        dedupe: Option<&str>,
        run_after: i64,
    ) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO jobs (kind, payload, dedupe, run_after, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (dedupe) DO NOTHING",
        )
        .bind(kind)
        .bind(payload)
        .bind(dedupe)
        .bind(run_after)
        .bind(now())
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Leases up to `limit` due jobs to `owner` for `lease_secs`. A job whose lease expired
    /// (its owner died) is due again. On PostgreSQL replicas skip each other's rows
    /// (`FOR UPDATE SKIP LOCKED`); SQLite's single writer makes the statement atomic.
    pub async fn lease_jobs(&self, owner: &str, lease_secs: i64, limit: i64) -> Result<Vec<Job>> {
        let now = now();
        let sql = format!(
            "UPDATE jobs SET lease_owner = $1, lease_until = $2, attempts = attempts + 1, \
             dedupe = NULL WHERE id IN (SELECT id FROM jobs WHERE state = 'queued' \
             AND run_after <= $3 AND (lease_until IS NULL OR lease_until < $3) \
             ORDER BY run_after, id LIMIT $4{}) RETURNING id, kind, payload, attempts",
            if self.postgres {
                " FOR UPDATE SKIP LOCKED"
            } else {
                ""
            }
        );
        let rows = sqlx::query(&sql)
            .bind(owner)
            .bind(now + lease_secs)
            .bind(now)
            .bind(limit)
            .fetch_all(&self.writer)
            .await?;
        Ok(rows
            .iter()
            .map(|r| Job {
                id: r.get(0),
                kind: r.get(1),
                payload: r.get(2),
                attempts: r.get(3),
            })
            .collect())
    }

    /// Records the end of job `id` leased by `owner`: done, queued again at `retry_at`, or
    /// failed for good.
    pub async fn finish_job(
        &self,
        id: i64,
        owner: &str,
        error: Option<&str>,
        retry_at: Option<i64>,
    ) -> Result<()> {
        let now = now();
        let (state, run_after) = match (error, retry_at) {
            (None, _) => ("done", None),
            (Some(_), Some(at)) => ("queued", Some(at)),
            (Some(_), None) => ("failed", None),
        };
        sqlx::query(
            "UPDATE jobs SET state = $3, last_error = $4, run_after = COALESCE($5, run_after), \
             lease_owner = NULL, lease_until = NULL, \
             finished_at = CASE WHEN $3 = 'queued' THEN NULL ELSE $6 END \
             WHERE id = $1 AND lease_owner = $2",
        )
        .bind(id)
        .bind(owner)
        .bind(state)
        .bind(error)
        .bind(run_after)
        .bind(now)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Forgets finished jobs older than `before`.
    pub async fn prune_jobs(&self, before: i64) -> Result<u64> {
        let done =
            sqlx::query("DELETE FROM jobs WHERE state IN ('done', 'failed') AND finished_at < $1")
                .bind(before)
                .execute(&self.writer)
                .await?;
        Ok(done.rows_affected())
    }

    // ---------------------------------------------------------------- gc runs

    pub async fn create_gc_run(&self, trigger: &str, dry_run: bool, running: bool) -> Result<i64> {
        let row = sqlx::query(
            "INSERT INTO gc_runs (trigger, dry_run, state, started_at) VALUES ($1, $2, $3, $4) \
             RETURNING id",
        )
        .bind(trigger)
        .bind(i64::from(dry_run))
        .bind(if running { "running" } else { "queued" })
        .bind(running.then(now))
        .fetch_one(&self.writer)
        .await?;
        Ok(row.get(0))
    }

    /// Marks a queued run as running; false if it is not queued (another replica took it).
    pub async fn start_gc_run(&self, id: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE gc_runs SET state = 'running', started_at = $2 WHERE id = $1 AND state = 'queued'",
        )
        .bind(id)
        .bind(now())
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Records the end of run `id` with its counts and report.
    pub async fn finish_gc_run(
        &self,
        id: i64,
        counts: &GcCounts,
        failed: bool,
        report: &serde_json::Value,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE gc_runs SET state = $2, finished_at = $3, manifests_deleted = $4, \
             links_deleted = $5, blobs_deleted = $6, uploads_deleted = $7, orphans_deleted = $8, \
             bytes_deleted = $9, errors = $10, report = $11 WHERE id = $1",
        )
        .bind(id)
        .bind(if failed { "failed" } else { "done" })
        .bind(now())
        .bind(counts.manifests)
        .bind(counts.links)
        .bind(counts.blobs)
        .bind(counts.uploads)
        .bind(counts.orphans)
        .bind(counts.bytes)
        .bind(counts.errors)
        .bind(report.to_string())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Runs (but `except`) still marked running that started by `before`: their process died. They are
    /// recorded as failed (interrupted); what they left is collected by the next run.
    pub async fn fail_interrupted_gc_runs(&self, before: i64, except: i64) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE gc_runs SET state = 'failed', finished_at = $2, \
             report = '{\"error\":\"interrupted: the process running it stopped\"}' \
             WHERE state = 'running' AND started_at <= $1 AND id <> $3",
        )
        .bind(before)
        .bind(now())
        .bind(except)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected())
    }

    /// Runs newest first, with ids below `before` (all when `None`), `n` at most.
    pub async fn gc_runs(&self, before: Option<i64>, n: i64) -> Result<Vec<GcRunRecord>> {
        let rows = sqlx::query(
            "SELECT id, trigger, dry_run, state, started_at, finished_at, manifests_deleted, \
             links_deleted, blobs_deleted, uploads_deleted, orphans_deleted, bytes_deleted, errors, \
             report FROM gc_runs WHERE id < $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(before.unwrap_or(i64::MAX))
        .bind(n)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows.iter().map(gc_run_record).collect())
    }

    pub async fn gc_run(&self, id: i64) -> Result<Option<GcRunRecord>> {
        Ok(self
            .gc_runs(Some(id.saturating_add(1)), 1)
            .await?
            .into_iter()
            .find(|r| r.id == id))
    }

    // ---------------------------------------------------------------- upload sessions

    /// Sessions not written to since `cutoff`, after id `after`, `n` at most.
    pub async fn stale_uploads(
        &self,
        cutoff: i64,
        after: &str,
        n: i64,
    ) -> Result<Vec<StaleUpload>> {
        let rows = sqlx::query(
            "SELECT u.id, r.name, u.size FROM uploads u JOIN repositories r ON r.id = u.repository_id \
             WHERE u.updated_at <= $1 AND u.id > $2 ORDER BY u.id LIMIT $3",
        )
        .bind(cutoff)
        .bind(after)
        .bind(n)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .iter()
            .map(|r| StaleUpload {
                id: r.get(0),
                repository: r.get(1),
                size: r.get(2),
            })
            .collect())
    }

    /// Ends session `id` if it is still idle since before `cutoff`; returns its part keys
    /// (the caller deletes the objects), or `None` when it was written to meanwhile or is gone.
    pub async fn delete_stale_upload(&self, id: &str, cutoff: i64) -> Result<Option<Vec<String>>> {
        let mut tx = self.write_tx().await?;
        let parts = sqlx::query("SELECT object_key FROM upload_parts WHERE upload_id = $1")
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
        Ok(Some(parts.iter().map(|r| r.get(0)).collect()))
    }

    /// Which of `ids` are live upload sessions.
    pub async fn live_uploads(&self, ids: &[String]) -> Result<HashSet<String>> {
        self.present(
            |list| format!("SELECT id FROM uploads WHERE id IN ({list})"),
            ids,
        )
        .await
    }

    // ---------------------------------------------------------------- manifests

    /// Untagged manifests pushed before `cutoff` that nothing keeps (see
    /// [`ManifestCandidate`]), after id `after`, `n` at most.
    pub async fn untagged_manifests(
        &self,
        cutoff: i64,
        repository_id: Option<i64>,
        after: i64,
        n: i64,
    ) -> Result<Vec<ManifestCandidate>> {
        let sql = format!(
            "SELECT m.id, m.repository_id, r.name, m.digest, m.size, m.subject FROM manifests m \
             JOIN repositories r ON r.id = m.repository_id \
             WHERE {UNTAGGED_COLLECTIBLE} AND m.id > $2 AND ($4 < 0 OR m.repository_id = $4) \
             ORDER BY m.id LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(cutoff)
            .bind(after)
            .bind(n)
            .bind(repository_id.unwrap_or(-1))
            .fetch_all(&self.reader)
            .await?;
        Ok(rows
            .iter()
            .map(|r| ManifestCandidate {
                id: r.get(0),
                repository_id: r.get(1),
                repository: r.get(2),
                digest: r.get(3),
                size: r.get(4),
                subject: r.get(5),
            })
            .collect())
    }

    /// Deletes manifest `candidate` if it is still collectible, under its repository's lock.
    pub async fn delete_untagged_manifest(
        &self,
        candidate: &ManifestCandidate,
        cutoff: i64,
    ) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        lock_repository_id(&mut tx, candidate.repository_id).await?;
        let sql = format!(
            "DELETE FROM manifests WHERE id IN (SELECT m.id FROM manifests m \
             WHERE m.id = $2 AND {UNTAGGED_COLLECTIBLE})"
        );
        let done = sqlx::query(&sql)
            .bind(cutoff)
            .bind(candidate.id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        self.queue_review(&mut tx, candidate.repository_id, now())
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    // ---------------------------------------------------------------- links

    /// Links made before `cutoff` that no manifest of their repository needs, after
    /// `(repository id, digest)`, `n` at most; only `repository_id`'s when given. The row
    /// comparison lets both databases seek in the primary key: each page costs its own rows.
    pub async fn unneeded_links(
        &self,
        cutoff: i64,
        repository_id: Option<i64>,
        after: (i64, &str),
        n: i64,
    ) -> Result<Vec<LinkCandidate>> {
        let sql = format!(
            "SELECT repository_blobs.repository_id, r.name, repository_blobs.digest, b.size \
             FROM repository_blobs JOIN repositories r ON r.id = repository_blobs.repository_id \
             JOIN blobs b ON b.digest = repository_blobs.digest \
             WHERE repository_blobs.linked_at <= $1 AND ($2 < 0 OR repository_blobs.repository_id = $2) \
             AND (repository_blobs.repository_id, repository_blobs.digest) > ($3, $4) \
             AND NOT {LINK_NEEDED} \
             ORDER BY repository_blobs.repository_id, repository_blobs.digest LIMIT $5"
        );
        let rows = sqlx::query(&sql)
            .bind(cutoff)
            .bind(repository_id.unwrap_or(-1))
            .bind(after.0)
            .bind(after.1)
            .bind(n)
            .fetch_all(&self.reader)
            .await?;
        Ok(rows
            .iter()
            .map(|r| LinkCandidate {
                repository_id: r.get(0),
                repository: r.get(1),
                digest: r.get(2),
                size: r.get(3),
            })
            .collect())
    }

    /// Deletes those links of `repository_id` to `digests` that are still unneeded and older
    /// than `cutoff`, under the repository's lock; returns the digests unlinked.
    pub async fn delete_unneeded_links(
        &self,
        repository_id: i64,
        digests: &[String],
        cutoff: i64,
    ) -> Result<Vec<String>> {
        if digests.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.write_tx().await?;
        lock_repository_id(&mut tx, repository_id).await?;
        let sql = format!(
            "DELETE FROM repository_blobs WHERE repository_id = $1 AND linked_at <= $2 \
             AND digest IN ({}) AND NOT {LINK_NEEDED} RETURNING digest",
            placeholders(3, digests.len())
        );
        let mut delete = sqlx::query(&sql).bind(repository_id).bind(cutoff);
        for d in digests {
            delete = delete.bind(d.as_str());
        }
        let rows = delete.fetch_all(&mut *tx).await?;
        tx.commit().await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Bytes per repository in links made before `cutoff` that no manifest needs.
    /// Brings PostgreSQL's planner statistics of the tables a collection reads up to date.
    /// Right after a burst of pushes autovacuum may not have analysed them yet, and with the
    /// statistics of near-empty tables the planner scans instead of probing indexes (seconds
    /// instead of milliseconds). SQLite's planner works from the indexes alone.
    pub async fn refresh_gc_statistics(&self) -> Result<()> {
        if self.postgres {
            sqlx::query("ANALYZE blobs, repository_blobs, manifests, manifest_references, tags")
                .execute(&self.writer)
                .await?;
        }
        Ok(())
    }

    // ---------------------------------------------------------------- blobs

    /// Blobs written before `cutoff` that no repository links, after `after`, `n` at most.
    pub async fn unlinked_blobs(
        &self,
        cutoff: i64,
        after: &str,
        n: i64,
    ) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT digest, size FROM blobs b WHERE created_at <= $1 AND digest > $2 \
             AND NOT EXISTS (SELECT 1 FROM repository_blobs rb WHERE rb.digest = b.digest) \
             ORDER BY digest LIMIT $3",
        )
        .bind(cutoff)
        .bind(after)
        .bind(n)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// The mark in one streamed query: every blob with each of its links, in digest order
    /// (a blob's rows are consecutive), judged as a collection with `cutoff` would judge
    /// them. One pass over the index instead of a query per page: the dry run and the
    /// estimate read every link once, and memory does not grow with the number of blobs.
    pub fn mark_blobs(&self, cutoff: i64) -> BoxStream<'_, Result<BlobMark>> {
        sqlx::query(&MARK_SQL)
            .bind(cutoff)
            .fetch(&self.reader)
            .map(|row| {
                let row = row?;
                let repository: Option<String> = row.get(3);
                Ok(BlobMark {
                    digest: row.get(0),
                    size: row.get(1),
                    old: row.get::<i64, _>(2) == 1,
                    link: repository.map(|repository| LinkMark {
                        repository,
                        unneeded: row.get::<i64, _>(4) == 1,
                    }),
                })
            })
            .boxed()
    }

    /// Claims `digests` for deletion and deletes their rows, in one transaction: a digest is
    /// claimed only when no writer is at work on it, and its row deleted only when it is still
    /// unlinked and older than `cutoff`. Returns the deleted `(digest, size)`, whose objects
    /// the caller deletes before [`Meta::release_blob_claims`]; the other claims are released
    /// here.
    pub async fn claim_and_delete_blobs(
        &self,
        digests: &[String],
        cutoff: i64,
    ) -> Result<Vec<(String, i64)>> {
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
        let mut delete = sqlx::query(&sql).bind(cutoff);
        for d in &claimed {
            delete = delete.bind(d.as_str());
        }
        let deleted: Vec<(String, i64)> = delete
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let kept: Vec<&String> = {
            let gone: HashSet<&str> = deleted.iter().map(|(d, _)| d.as_str()).collect();
            claimed
                .iter()
                .filter(|d| !gone.contains(d.as_str()))
                .collect()
        };
        if !kept.is_empty() {
            let sql = format!(
                "DELETE FROM blob_fences WHERE deleting = 1 AND digest IN ({})",
                placeholders(1, kept.len())
            );
            let mut release = sqlx::query(&sql);
            for d in kept {
                release = release.bind(d.as_str());
            }
            release.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(deleted)
    }

    /// Claims those of `digests` that have no row and no writer at work, for the deletion of
    /// their objects (orphans); returns the digests claimed.
    pub async fn claim_orphans(&self, digests: &[String]) -> Result<Vec<String>> {
        if digests.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.write_tx().await?;
        // An orphan has no fence: any fence means someone is at work on the digest.
        let claimed = claim_fences(&mut tx, digests, "DO NOTHING").await?;
        if claimed.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT digest FROM blobs WHERE digest IN ({})",
            placeholders(1, claimed.len())
        );
        let mut select = sqlx::query(&sql);
        for d in &claimed {
            select = select.bind(d.as_str());
        }
        let recorded: HashSet<String> = select
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let (kept, orphans): (Vec<String>, Vec<String>) =
            claimed.into_iter().partition(|d| recorded.contains(d));
        if !kept.is_empty() {
            let sql = format!(
                "DELETE FROM blob_fences WHERE deleting = 1 AND digest IN ({})",
                placeholders(1, kept.len())
            );
            let mut release = sqlx::query(&sql);
            for d in &kept {
                release = release.bind(d.as_str());
            }
            release.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(orphans)
    }

    /// Ends the collector's claims on `digests` (their objects are deleted).
    pub async fn release_blob_claims(&self, digests: &[String]) -> Result<()> {
        for chunk in digests.chunks(500) {
            let sql = format!(
                "DELETE FROM blob_fences WHERE deleting = 1 AND digest IN ({})",
                placeholders(1, chunk.len())
            );
            let mut release = sqlx::query(&sql);
            for d in chunk {
                release = release.bind(d.as_str());
            }
            release.execute(&self.writer).await?;
        }
        Ok(())
    }

    /// Claims older than `cutoff`: their collector stopped between the row and the object.
    pub async fn stale_blob_claims(&self, cutoff: i64) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT digest FROM blob_fences WHERE deleting = 1 AND updated_at <= $1 LIMIT 10000",
        )
        .bind(cutoff)
        .fetch_all(&self.writer)
        .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Forgets writers counted in before `cutoff` and never out (their process died).
    pub async fn reset_stale_writers(&self, cutoff: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM blob_fences WHERE deleting = 0 AND updated_at <= $1")
            .bind(cutoff)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected())
    }

    /// Counts a writer in on `digest` before its object is written. Returns false while the
    /// collector holds a claim on it (the caller waits and tries again).
    pub async fn begin_blob_write(&self, digest: &Digest) -> Result<bool> {
        let row = sqlx::query(
            "INSERT INTO blob_fences (digest, writers, deleting, updated_at) VALUES ($1, 1, 0, $2) \
             ON CONFLICT (digest) DO UPDATE SET writers = blob_fences.writers + 1, \
             updated_at = excluded.updated_at WHERE blob_fences.deleting = 0 RETURNING writers",
        )
        .bind(digest.to_string())
        .bind(now())
        .fetch_optional(&self.writer)
        .await?;
        Ok(row.is_some())
    }

    /// Counts a writer out of `digest` without recording a blob (its write failed).
    pub async fn end_blob_write(&self, digest: &Digest) -> Result<()> {
        let mut tx = self.write_tx().await?;
        release_write_fence(&mut tx, digest).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Which of `digests` have a row, or a fence (a writer or the collector at work).
    pub async fn known_or_fenced_blobs(&self, digests: &[String]) -> Result<HashSet<String>> {
        self.present(
            |list| {
                format!(
                    "SELECT digest FROM blobs WHERE digest IN ({list}) \
                     UNION SELECT digest FROM blob_fences WHERE digest IN ({list})"
                )
            },
            digests,
        )
        .await
    }

    /// Which of `keys` the query `sql(list)` finds, given the placeholder list of a chunk of
    /// them; it selects one text column.
    async fn present(
        &self,
        sql: impl Fn(&str) -> String,
        keys: &[String],
    ) -> Result<HashSet<String>> {
        let mut found = HashSet::new();
        for chunk in keys.chunks(1000) {
            let sql = sql(&placeholders(1, chunk.len()));
            let mut select = sqlx::query(&sql);
            for k in chunk {
                select = select.bind(k.as_str());
            }
            for r in select.fetch_all(&self.writer).await? {
                found.insert(r.get(0));
            }
        }
        Ok(found)
    }

    // ---------------------------------------------------------------- repositories

    /// Deletes `repo` with its manifests, tags, links and upload sessions; returns the part
    /// keys of its sessions (the caller deletes the objects), or `None` if there was no such
    /// repository. Blobs only it linked are left unlinked, and a review of blobs is queued.
    pub async fn delete_repository(&self, repo: &RepoName) -> Result<Option<Vec<String>>> {
        let mut tx = self.write_tx().await?;
        let Some(repository_id) = lock_repository(&mut tx, repo).await? else {
            return Ok(None);
        };
        let parts = sqlx::query(
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
            let now = now();
            sqlx::query(
                "INSERT INTO jobs (kind, payload, dedupe, run_after, created_at) \
                 VALUES ($1, '', $1, $2, $3) ON CONFLICT (dedupe) DO NOTHING",
            )
            .bind(JOB_REVIEW_BLOBS)
            .bind(now + delay)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Some(parts.iter().map(|r| r.get(0)).collect()))
    }

    /// Ids and names of repositories after id `after`, `n` at most.
    pub async fn repository_ids(&self, after: i64, n: i64) -> Result<Vec<(i64, String)>> {
        let rows =
            sqlx::query("SELECT id, name FROM repositories WHERE id > $1 ORDER BY id LIMIT $2")
                .bind(after)
                .bind(n)
                .fetch_all(&self.reader)
                .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    // ---------------------------------------------------------------- settings and tags

    pub async fn repository_settings(&self, repo: &RepoName) -> Result<Option<StoredSettings>> {
        let row = sqlx::query(
            "SELECT tag_mutability, mutable_patterns, protected_patterns FROM repository_settings \
             WHERE repository = $1",
        )
        .bind(repo.as_str())
        .fetch_optional(&self.reader)
        .await?;
        Ok(row.map(|r| StoredSettings {
            tag_mutability: r.get(0),
            mutable_patterns: r.get(1),
            protected_patterns: r.get(2),
        }))
    }

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
        .bind(now())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Every tag of `repo` with its manifest and times.
    pub async fn tag_facts(&self, repo: &RepoName) -> Result<Vec<TagFacts>> {
        let rows = sqlx::query(
            "SELECT t.name, m.digest, t.pushed_at, t.updated_at, m.pushed_at, t.last_pulled_at, m.id \
             FROM tags t \
             JOIN manifests m ON m.id = t.manifest_id JOIN repositories r ON r.id = t.repository_id \
             WHERE r.name = $1 ORDER BY t.name",
        )
        .bind(repo.as_str())
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .iter()
            .map(|r| TagFacts {
                name: r.get(0),
                digest: r.get(1),
                pushed_at: r.get(2),
                updated_at: r.get(3),
                manifest_pushed_at: r.get(4),
                last_pulled_at: r.get(5),
                manifest_id: r.get(6),
            })
            .collect())
    }

    /// Manifests of `repo` without tags that are no child of an index of the repository.
    pub async fn untagged_facts(&self, repo: &RepoName) -> Result<Vec<UntaggedFacts>> {
        let rows = sqlx::query(
            "SELECT m.digest, m.pushed_at, m.last_pulled_at, m.id FROM manifests m \
             JOIN repositories r ON r.id = m.repository_id WHERE r.name = $1 \
             AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.manifest_id = m.id) \
             AND NOT EXISTS (SELECT 1 FROM manifest_references mr JOIN manifests p ON p.id = mr.manifest_id \
                 WHERE mr.digest = m.digest AND mr.kind = 'manifest' AND p.repository_id = m.repository_id) \
             AND m.subject IS NULL ORDER BY m.digest",
        )
        .bind(repo.as_str())
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .iter()
            .map(|r| UntaggedFacts {
                digest: r.get(0),
                pushed_at: r.get(1),
                last_pulled_at: r.get(2),
                manifest_id: r.get(3),
            })
            .collect())
    }

    /// Deletes tag `tag` of `repo` if it still points at `digest` (a policy decided on that).
    pub async fn delete_tag_if_at(&self, repo: &RepoName, tag: &str, digest: &str) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        let Some(repository_id) = lock_repository(&mut tx, repo).await? else {
            return Ok(false);
        };
        let done = sqlx::query(
            "DELETE FROM tags WHERE repository_id = $1 AND name = $2 \
             AND manifest_id = (SELECT id FROM manifests WHERE repository_id = $1 AND digest = $3)",
        )
        .bind(repository_id)
        .bind(tag)
        .bind(digest)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        self.queue_review(&mut tx, repository_id, now()).await?;
        tx.commit().await?;
        Ok(true)
    }

    // ---------------------------------------------------------------- cleanup policies

    pub async fn put_policy(&self, p: &StoredPolicy) -> Result<i64> {
        let now = now();
        let row = sqlx::query(
            "INSERT INTO cleanup_policies (name, pattern, enabled, cadence, rules, next_run_at, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
             ON CONFLICT (name) DO UPDATE SET pattern = excluded.pattern, enabled = excluded.enabled, \
             cadence = excluded.cadence, rules = excluded.rules, next_run_at = excluded.next_run_at, \
             updated_at = excluded.updated_at RETURNING id",
        )
        .bind(&p.name)
        .bind(&p.pattern)
        .bind(i64::from(p.enabled))
        .bind(&p.cadence)
        .bind(&p.rules)
        .bind(p.next_run_at)
        .bind(now)
        .fetch_one(&self.writer)
        .await?;
        Ok(row.get(0))
    }

    pub async fn policies(&self) -> Result<Vec<StoredPolicy>> {
        let rows = sqlx::query(
            "SELECT id, name, pattern, enabled, cadence, rules, next_run_at, created_at, updated_at \
             FROM cleanup_policies ORDER BY name",
        )
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .iter()
            .map(|r| StoredPolicy {
                id: r.get(0),
                name: r.get(1),
                pattern: r.get(2),
                enabled: r.get::<i64, _>(3) != 0,
                cadence: r.get(4),
                rules: r.get(5),
                next_run_at: r.get(6),
                created_at: r.get(7),
                updated_at: r.get(8),
            })
            .collect())
    }

    pub async fn delete_policy(&self, name: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM cleanup_policies WHERE name = $1")
            .bind(name)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Moves policy `id`'s next run from `was` to `next`; false if another replica did first.
    pub async fn advance_policy(&self, id: i64, was: Option<i64>, next: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE cleanup_policies SET next_run_at = $3 WHERE id = $1 \
             AND COALESCE(next_run_at, -1) = COALESCE($2, -1)",
        )
        .bind(id)
        .bind(was)
        .bind(next)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() > 0)
    }
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

/// Takes the row lock of repository `id` until the transaction ends (PostgreSQL).
async fn lock_repository_id(tx: &mut sqlx::Transaction<'_, sqlx::Any>, id: i64) -> Result<()> {
    sqlx::query("UPDATE repositories SET id = id WHERE id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

fn gc_run_record(r: &sqlx::any::AnyRow) -> GcRunRecord {
    GcRunRecord {
        id: r.get(0),
        trigger: r.get(1),
        dry_run: r.get::<i64, _>(2) != 0,
        state: r.get(3),
        started_at: r.get(4),
        finished_at: r.get(5),
        counts: GcCounts {
            manifests: r.get(6),
            links: r.get(7),
            blobs: r.get(8),
            uploads: r.get(9),
            orphans: r.get(10),
            bytes: r.get(11),
            errors: r.get(12),
        },
        report: r
            .get::<Option<String>, _>(13)
            .and_then(|s| serde_json::from_str(&s).ok()),
    }
}
