//! The index side of garbage collection: the records of runs, the candidates of each phase
//! and their re-validated deletes, the unlinked blobs the sweep claims (see [`super::blobs`]
//! for the claims), and the streamed mark of the dry run and the estimate.
//!
//! Every delete re-checks, in its own statement or transaction, the condition that made its
//! row a candidate: candidates are listed without locks (and may be stale by the time they are
//! deleted); only the re-validated delete decides.

use std::sync::LazyLock;

use anyhow::Context;
use futures::{StreamExt, stream::BoxStream};

use super::{
    IntBool, Meta, digest_texts, placeholders,
    repositories::lock_repository_id,
    webhooks::{Deleted, NewEvent, deleted_events, insert_event},
};
use crate::{
    error::{Error, Result},
    oci::{Digest, RepoName},
    webhooks::EventKind,
};

/// Who the collector's deletions are recorded as (the actor of their webhook events).
pub const GC_ACTOR: &str = "gc";

/// What a garbage collection removed (or, in a dry run, would remove).
#[derive(
    Debug, Default, Clone, Copy, serde::Serialize, serde::Deserialize, PartialEq, Eq, sqlx::FromRow,
)]
pub struct GcCounts {
    /// Untagged manifests.
    #[sqlx(rename = "manifests_deleted")]
    pub manifests: i64,
    /// Repository links no manifest needed.
    #[sqlx(rename = "links_deleted")]
    pub links: i64,
    /// Blobs no repository linked.
    #[sqlx(rename = "blobs_deleted")]
    pub blobs: i64,
    /// Abandoned upload sessions.
    #[sqlx(rename = "uploads_deleted")]
    pub uploads: i64,
    /// Objects the index did not know.
    #[sqlx(rename = "orphans_deleted")]
    pub orphans: i64,
    /// Bytes of the blobs and orphans.
    #[sqlx(rename = "bytes_deleted")]
    pub bytes: i64,
    /// Deletions that failed.
    pub errors: i64,
}

impl GcCounts {
    /// Adds `other`'s counts to these.
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
    /// The run's id.
    pub id: i64,
    /// What started it: `api`, `cli`, `schedule`, `policy`.
    pub trigger: String,
    /// Whether it only reported.
    pub dry_run: bool,
    /// `queued`, `running`, `done` or `failed`.
    pub state: String,
    /// When it started running, if it did.
    pub started_at: Option<i64>,
    /// When it ended, if it did.
    pub finished_at: Option<i64>,
    /// What it removed.
    #[serde(flatten)]
    pub counts: GcCounts,
    /// What was (or would be) deleted and why, as recorded by the run: its JSON text, passed
    /// through as stored (a report lists up to 10,000 items). Only a run read on its own
    /// carries it; listings of runs leave it out.
    pub report: Option<Box<serde_json::value::RawValue>>,
}

/// What a queued run overrides of the configuration when a worker runs it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct QueuedGcOptions {
    /// Rows and objects younger than this many seconds are kept (`gc.grace_secs`).
    pub grace_secs: Option<i64>,
    /// Collect untagged manifests too (`gc.untagged`).
    pub remove_untagged: Option<bool>,
}

/// [`QueuedGcOptions`] as stored (booleans are integers).
#[derive(sqlx::FromRow)]
struct QueuedGcOptionsRow {
    grace_secs: Option<i64>,
    remove_untagged: Option<i64>,
}

/// The columns of a run but its report.
const GC_RUN_SUMMARY: &str = "id, trigger, dry_run, state, started_at, finished_at, \
     manifests_deleted, links_deleted, blobs_deleted, uploads_deleted, orphans_deleted, \
     bytes_deleted, errors";

/// A run's row as stored (its report as JSON text).
#[derive(sqlx::FromRow)]
struct GcRunRow {
    id: i64,
    trigger: String,
    #[sqlx(try_from = "IntBool")]
    dry_run: bool,
    state: String,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    #[sqlx(flatten)]
    counts: GcCounts,
    report: Option<String>,
}

impl TryFrom<GcRunRow> for GcRunRecord {
    type Error = Error;

    fn try_from(r: GcRunRow) -> Result<GcRunRecord> {
        let report = match r.report {
            Some(text) => Some(
                serde_json::value::RawValue::from_string(text)
                    .with_context(|| format!("gc_runs.report of run {} is not JSON", r.id))?,
            ),
            None => None,
        };
        Ok(GcRunRecord {
            id: r.id,
            trigger: r.trigger,
            dry_run: r.dry_run,
            state: r.state,
            started_at: r.started_at,
            finished_at: r.finished_at,
            counts: r.counts,
            report,
        })
    }
}

/// A manifest the collector may remove: untagged, no child of an index of its repository,
/// no referrer of a subject its repository holds.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ManifestCandidate {
    /// The manifest's id.
    pub id: i64,
    /// Its repository's id.
    pub repository_id: i64,
    /// Its repository's name.
    pub repository: RepoName,
    /// The manifest's digest.
    pub digest: Digest,
    /// Bytes of its payload.
    pub size: i64,
    /// The manifest it refers to, if any (gone from the repository).
    pub subject: Option<Digest>,
}

/// A repository link no manifest of its repository needs.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LinkCandidate {
    /// The repository's id.
    pub repository_id: i64,
    /// The repository's name.
    pub repository: RepoName,
    /// The linked blob.
    pub digest: Digest,
    /// Bytes of the blob.
    pub size: i64,
}

/// One row of the mark: a blob, and one of its links (none if it has none).
#[derive(Debug, Clone)]
pub struct BlobMark {
    /// The blob.
    pub digest: Digest,
    /// Its bytes.
    pub size: i64,
    /// Written before the cutoff.
    pub old: bool,
    /// One of its links.
    pub link: Option<LinkMark>,
}

/// A link as the mark judges it.
#[derive(Debug, Clone)]
pub struct LinkMark {
    /// The repository that links the blob.
    pub repository: RepoName,
    /// Made before the cutoff and needed by no manifest of its repository.
    pub unneeded: bool,
}

/// A row of [`MARK_SQL`].
#[derive(sqlx::FromRow)]
struct MarkRow {
    digest: Digest,
    size: i64,
    #[sqlx(try_from = "IntBool")]
    old: bool,
    repository: Option<RepoName>,
    #[sqlx(try_from = "IntBool")]
    unneeded: bool,
}

impl From<MarkRow> for BlobMark {
    fn from(r: MarkRow) -> BlobMark {
        BlobMark {
            digest: r.digest,
            size: r.size,
            old: r.old,
            link: r.repository.map(|repository| LinkMark {
                repository,
                unneeded: r.unneeded,
            }),
        }
    }
}

/// Bytes a repository holds in links no manifest needs.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RepositoryEstimate {
    /// The repository's name.
    pub repository: String,
    /// Links no manifest of it needs.
    pub unreferenced_links: i64,
    /// Bytes of the blobs of those links.
    pub unreferenced_bytes: i64,
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
        "SELECT b.digest, b.size, \
         CAST(CASE WHEN b.created_at <= $1 THEN 1 ELSE 0 END AS BIGINT) AS old, \
         r.name AS repository, CAST(CASE WHEN repository_blobs.linked_at <= $1 AND NOT {LINK_NEEDED} \
             THEN 1 ELSE 0 END AS BIGINT) AS unneeded \
         FROM blobs b LEFT JOIN repository_blobs ON repository_blobs.digest = b.digest \
         LEFT JOIN repositories r ON r.id = repository_blobs.repository_id \
         ORDER BY b.digest"
    )
});

impl Meta {
    // ---------------------------------------------------------------- runs

    /// Records a new run (started now when `running`, else queued); returns its id.
    pub async fn create_gc_run(&self, trigger: &str, dry_run: bool, running: bool) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "INSERT INTO gc_runs (trigger, dry_run, state, started_at) VALUES ($1, $2, $3, $4) \
             RETURNING id",
        )
        .bind(trigger)
        .bind(i64::from(dry_run))
        .bind(if running { "running" } else { "queued" })
        .bind(running.then(|| self.now()))
        .fetch_one(&self.writer)
        .await?)
    }

    /// Records a run for a worker to start, with the options it was asked for (`None`: the
    /// configuration's when it runs).
    pub async fn queue_gc_run(
        &self,
        trigger: &str,
        dry_run: bool,
        options: QueuedGcOptions,
    ) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "INSERT INTO gc_runs (trigger, dry_run, state, grace_secs, remove_untagged) \
             VALUES ($1, $2, 'queued', $3, $4) RETURNING id",
        )
        .bind(trigger)
        .bind(i64::from(dry_run))
        .bind(options.grace_secs)
        .bind(options.remove_untagged.map(i64::from))
        .fetch_one(&self.writer)
        .await?)
    }

    /// The options queued run `id` was asked for (nothing for an unknown run).
    pub async fn queued_gc_options(&self, id: i64) -> Result<QueuedGcOptions> {
        let row: Option<QueuedGcOptionsRow> =
            sqlx::query_as("SELECT grace_secs, remove_untagged FROM gc_runs WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.reader)
                .await?;
        Ok(
            row.map_or_else(QueuedGcOptions::default, |r| QueuedGcOptions {
                grace_secs: r.grace_secs,
                remove_untagged: r.remove_untagged.map(|v| v != 0),
            }),
        )
    }

    /// Marks a queued run as running; false if it is not queued (another replica took it).
    pub async fn start_gc_run(&self, id: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE gc_runs SET state = 'running', started_at = $2 WHERE id = $1 AND state = 'queued'",
        )
        .bind(id)
        .bind(self.now())
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Records the end of run `id` with its counts and report and, unless it was a dry run,
    /// its `gc_completed` event (`cleanup_completed` for a policy's run: trigger
    /// `policy:<name>`), registry-wide.
    pub async fn finish_gc_run(
        &self,
        id: i64,
        counts: &GcCounts,
        failed: bool,
        report: &impl serde::Serialize,
    ) -> Result<()> {
        let report = serde_json::to_string(report).context("writing a collection's report")?;
        let now = self.now();
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "UPDATE gc_runs SET state = $2, finished_at = $3, manifests_deleted = $4, \
             links_deleted = $5, blobs_deleted = $6, uploads_deleted = $7, orphans_deleted = $8, \
             bytes_deleted = $9, errors = $10, report = $11 WHERE id = $1",
        )
        .bind(id)
        .bind(if failed { "failed" } else { "done" })
        .bind(self.now())
        .bind(counts.manifests)
        .bind(counts.links)
        .bind(counts.blobs)
        .bind(counts.uploads)
        .bind(counts.orphans)
        .bind(counts.bytes)
        .bind(counts.errors)
        .bind(report)
        .execute(&mut *tx)
        .await?;
        let run: Option<(String, i64)> =
            sqlx::query_as("SELECT trigger, dry_run FROM gc_runs WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        if let Some((trigger, 0)) = run {
            let policy = trigger.strip_prefix("policy:");
            let kind = match policy {
                Some(_) => EventKind::CleanupCompleted,
                None => EventKind::GcCompleted,
            };
            let detail = serde_json::json!({
                "run": id, "trigger": trigger, "policy": policy,
                "state": if failed { "failed" } else { "done" },
                "manifests_deleted": counts.manifests, "links_deleted": counts.links,
                "blobs_deleted": counts.blobs, "uploads_deleted": counts.uploads,
                "orphans_deleted": counts.orphans, "bytes_deleted": counts.bytes,
                "errors": counts.errors,
            });
            let event = NewEvent {
                detail: Some(&detail),
                ..NewEvent::new(kind, "")
            };
            insert_event(&mut *tx, &event, -1.0, now).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Deletes finished runs but the newest `kept`, reports and all (a report lists up to
    /// 10,000 items, megabytes a run); queued and running ones stay. Returns how many went.
    pub async fn prune_gc_runs(&self, kept: i64) -> Result<u64> {
        let done = sqlx::query(
            "DELETE FROM gc_runs WHERE state IN ('done', 'failed') AND id < \
             (SELECT id FROM gc_runs WHERE state IN ('done', 'failed') \
              ORDER BY id DESC LIMIT 1 OFFSET $1)",
        )
        .bind(kept - 1)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected())
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
        .bind(self.now())
        .bind(except)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected())
    }

    /// Runs newest first, with ids below `before` (all when `None`), `n` at most: summaries,
    /// without their reports.
    pub async fn gc_runs(&self, before: Option<i64>, n: i64) -> Result<Vec<GcRunRecord>> {
        let rows: Vec<GcRunRow> = sqlx::query_as(&format!(
            "SELECT {GC_RUN_SUMMARY}, CAST(NULL AS TEXT) AS report FROM gc_runs \
             WHERE id < $1 ORDER BY id DESC LIMIT $2"
        ))
        .bind(before.unwrap_or(i64::MAX))
        .bind(n)
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter().map(GcRunRecord::try_from).collect()
    }

    /// Run `id` with its report, if recorded.
    pub async fn gc_run(&self, id: i64) -> Result<Option<GcRunRecord>> {
        let row: Option<GcRunRow> = sqlx::query_as(&format!(
            "SELECT {GC_RUN_SUMMARY}, report FROM gc_runs WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.reader)
        .await?;
        row.map(GcRunRecord::try_from).transpose()
    }

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
            "SELECT m.id, m.repository_id, r.name AS repository, m.digest, m.size, m.subject \
             FROM manifests m JOIN repositories r ON r.id = m.repository_id \
             WHERE {UNTAGGED_COLLECTIBLE} AND m.id > $2 AND ($4 < 0 OR m.repository_id = $4) \
             ORDER BY m.id LIMIT $3"
        );
        Ok(sqlx::query_as(&sql)
            .bind(cutoff)
            .bind(after)
            .bind(n)
            .bind(repository_id.unwrap_or(-1))
            .fetch_all(&self.reader)
            .await?)
    }

    /// Deletes manifest `candidate` if it is still collectible, under its repository's lock.
    pub async fn delete_untagged_manifest(
        &self,
        candidate: &ManifestCandidate,
        cutoff: i64,
    ) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        lock_repository_id(&mut tx, candidate.repository_id).await?;
        // Recorded first (from the row), rolled back with the rest if nothing was deleted.
        deleted_events(
            &mut tx,
            Deleted::Manifest,
            candidate.repository_id,
            &candidate.repository,
            &candidate.digest.to_string(),
            self.now(),
            Some(GC_ACTOR),
        )
        .await?;
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
        self.queue_review(&mut tx, candidate.repository_id, self.now())
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
            "SELECT repository_blobs.repository_id, r.name AS repository, repository_blobs.digest, \
             b.size \
             FROM repository_blobs JOIN repositories r ON r.id = repository_blobs.repository_id \
             JOIN blobs b ON b.digest = repository_blobs.digest \
             WHERE repository_blobs.linked_at <= $1 AND ($2 < 0 OR repository_blobs.repository_id = $2) \
             AND (repository_blobs.repository_id, repository_blobs.digest) > ($3, $4) \
             AND NOT {LINK_NEEDED} \
             ORDER BY repository_blobs.repository_id, repository_blobs.digest LIMIT $5"
        );
        Ok(sqlx::query_as(&sql)
            .bind(cutoff)
            .bind(repository_id.unwrap_or(-1))
            .bind(after.0)
            .bind(after.1)
            .bind(n)
            .fetch_all(&self.reader)
            .await?)
    }

    /// Deletes those links of `repository_id` to `digests` that are still unneeded and older
    /// than `cutoff`, under the repository's lock; returns the digests unlinked.
    pub async fn delete_unneeded_links(
        &self,
        repository_id: i64,
        digests: &[Digest],
        cutoff: i64,
    ) -> Result<Vec<Digest>> {
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
        let mut delete = sqlx::query_scalar(&sql)
            .persistent(false)
            .bind(repository_id)
            .bind(cutoff);
        for d in digest_texts(digests) {
            delete = delete.bind(d);
        }
        let unlinked = delete.fetch_all(&mut *tx).await?;
        tx.commit().await?;
        Ok(unlinked)
    }

    // ---------------------------------------------------------------- blobs

    /// The next `n` blobs after `after` in digest order (a window of the table): those of them
    /// written before `cutoff` that no repository links, and the window's last digest (`None`
    /// once the window reached the end). Each read walks the digest index from `after` and
    /// looks up each blob's links by digest, so a run reads the table once; asked for `n`
    /// matches instead, PostgreSQL hashed every link and sorted every match for each page (200
    /// ms a page at 500,000 blobs).
    pub async fn unlinked_blobs(
        &self,
        cutoff: i64,
        after: &str,
        n: i64,
    ) -> Result<(Vec<Digest>, Option<Digest>)> {
        let window: Vec<(Digest, i64)> = sqlx::query_as(
            "SELECT w.digest, CAST(CASE WHEN w.created_at <= $1 AND NOT EXISTS \
             (SELECT 1 FROM repository_blobs rb WHERE rb.digest = w.digest) THEN 1 ELSE 0 END \
             AS BIGINT) AS unlinked \
             FROM (SELECT digest, created_at FROM blobs WHERE digest > $2 \
             ORDER BY digest LIMIT $3) w ORDER BY w.digest",
        )
        .bind(cutoff)
        .bind(after)
        .bind(n)
        .fetch_all(&self.reader)
        .await?;
        let last = match window.last() {
            Some((d, _)) if window.len() as i64 == n => Some(d.clone()),
            _ => None,
        };
        let unlinked = window
            .into_iter()
            .filter(|(_, unlinked)| *unlinked == 1)
            .map(|(d, _)| d)
            .collect();
        Ok((unlinked, last))
    }

    /// The mark in one streamed query: every blob with each of its links, in digest order
    /// (a blob's rows are consecutive), judged as a collection with `cutoff` would judge
    /// them. One pass over the index instead of a query per page: the dry run and the
    /// estimate read every link once, and memory does not grow with the number of blobs.
    pub fn mark_blobs(&self, cutoff: i64) -> BoxStream<'_, Result<BlobMark>> {
        sqlx::query_as::<_, MarkRow>(&MARK_SQL)
            .bind(cutoff)
            .fetch(&self.reader)
            .map(|row| Ok(BlobMark::from(row?)))
            .boxed()
    }
}
