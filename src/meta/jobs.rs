//! The job queue: background work every replica may lease (reviews after events, queued and
//! scheduled collections). [`Job`] is the one place a job's kind and payload are written
//! and read back; the kind strings and payloads are those rows already in the table carry.

use super::Meta;
use crate::error::Result;

/// Kind strings as stored in `jobs.kind`.
const REVIEW_REPOSITORY: &str = "review_repository";
const REVIEW_BLOBS: &str = "review_blobs";
const GC_RUN: &str = "gc_run";
const GC_SCHEDULE: &str = "gc_schedule";
const SCAN_IMAGE: &str = "scan_image";
const REPLICATE: &str = "replicate";

/// A unit of background work, with what it works on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    /// Collect what events in one repository may have left (continuous collection).
    ReviewRepository {
        /// The repository's id.
        repository_id: i64,
    },
    /// Collect every unlinked blob (after a repository was deleted).
    ReviewBlobs,
    /// Run a collection recorded as queued.
    RunGc {
        /// The id of the recorded run.
        run_id: i64,
    },
    /// The periodic full collection.
    ScheduledGc,
    /// Index the layers of one image (or of an index's children) and record the scan.
    ScanImage {
        /// The repository's id.
        repository_id: i64,
        /// The image's manifest digest.
        digest: String,
    },
    /// Run (or resume) a recorded replication execution.
    Replicate {
        /// The execution's id.
        execution_id: i64,
    },
}

impl Job {
    /// The stored `kind` and `payload`.
    fn to_row(&self) -> (&'static str, String) {
        match self {
            Job::ReviewRepository { repository_id } => {
                (REVIEW_REPOSITORY, repository_id.to_string())
            }
            Job::ReviewBlobs => (REVIEW_BLOBS, String::new()),
            Job::RunGc { run_id } => (GC_RUN, run_id.to_string()),
            Job::ScheduledGc => (GC_SCHEDULE, String::new()),
            Job::ScanImage {
                repository_id,
                digest,
            } => (SCAN_IMAGE, format!("{repository_id} {digest}")),
            Job::Replicate { execution_id } => (REPLICATE, execution_id.to_string()),
        }
    }

    /// The job a stored `kind` and `payload` describe.
    fn from_row(kind: &str, payload: &str) -> std::result::Result<Job, String> {
        let id = || {
            payload
                .parse::<i64>()
                .map_err(|_| format!("{kind} job without an id (payload {payload:?})"))
        };
        match kind {
            REVIEW_REPOSITORY => Ok(Job::ReviewRepository {
                repository_id: id()?,
            }),
            REVIEW_BLOBS => Ok(Job::ReviewBlobs),
            GC_RUN => Ok(Job::RunGc { run_id: id()? }),
            GC_SCHEDULE => Ok(Job::ScheduledGc),
            REPLICATE => Ok(Job::Replicate {
                execution_id: id()?,
            }),
            SCAN_IMAGE => payload
                .split_once(' ')
                .and_then(|(id, digest)| {
                    Some(Job::ScanImage {
                        repository_id: id.parse().ok()?,
                        digest: digest.to_owned(),
                    })
                })
                .ok_or_else(|| format!("{kind} job without an image (payload {payload:?})")),
            other => Err(format!("unknown job kind {other}")),
        }
    }

    /// The key that keeps one such job queued at a time (a queued one absorbs later
    /// requests); `None` for jobs that are each their own.
    fn dedupe(&self) -> Option<String> {
        match self {
            Job::ReviewRepository { repository_id } => {
                Some(format!("{REVIEW_REPOSITORY}:{repository_id}"))
            }
            Job::ReviewBlobs => Some(REVIEW_BLOBS.into()),
            Job::RunGc { .. } => None,
            Job::ScheduledGc => Some(GC_SCHEDULE.into()),
            Job::ScanImage {
                repository_id,
                digest,
            } => Some(format!("{SCAN_IMAGE}:{repository_id}:{digest}")),
            Job::Replicate { .. } => None,
        }
    }
}

/// When queued scans are due (`[scan] quiet_secs`, `max_delay_secs`), as instants.
#[derive(Debug, Clone, Copy)]
pub struct ScanPace {
    /// A scan queued after this holds the others back.
    pub quiet_since: i64,
    /// A scan queued at this or before is due whatever was queued since.
    pub overdue_at: i64,
}

/// A job leased from the queue.
#[derive(Debug, Clone)]
pub struct LeasedJob {
    /// The row's id, to record the outcome under.
    pub id: i64,
    /// Attempts so far, including this one.
    pub attempts: i64,
    /// The work; an error describing the row when it names no job this version knows (the
    /// job then fails like any other, and is retried and kept as failed history).
    pub job: std::result::Result<Job, String>,
}

/// A leased row as stored.
#[derive(sqlx::FromRow)]
struct LeasedRow {
    id: i64,
    kind: String,
    payload: String,
    attempts: i64,
}

impl Meta {
    /// Queues a review of `repository_id` after the review delay (once: a queued review
    /// absorbs later events); nothing when continuous collection is off.
    pub(super) async fn queue_review(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        repository_id: i64,
        now: i64,
    ) -> Result<()> {
        let Some(delay) = self.review_delay else {
            return Ok(());
        };
        let job = Job::ReviewRepository { repository_id };
        insert_job(&mut **tx, &job, now + delay, now).await?;
        Ok(())
    }

    /// Queues `job` due at `run_after`, unless one with its dedupe key is queued. Returns
    /// whether a job was queued.
    pub async fn enqueue_job(&self, job: &Job, run_after: i64) -> Result<bool> {
        insert_job(&self.writer, job, run_after, self.now()).await
    }

    /// Leases up to `limit` due jobs to `owner` for `lease_secs`. A job whose lease expired
    /// (its owner died) is due again. A scan is due only once no scan has been queued after
    /// `scans.quiet_since`, or when it was queued at `scans.overdue_at` or before. On
    /// PostgreSQL replicas skip each other's rows (`FOR UPDATE SKIP LOCKED`); SQLite's single
    /// writer makes the statement atomic.
    pub async fn lease_jobs(
        &self,
        owner: &str,
        lease_secs: i64,
        limit: i64,
        scans: ScanPace,
    ) -> Result<Vec<LeasedJob>> {
        let now = self.now();
        let sql = format!(
            "UPDATE jobs SET lease_owner = $1, lease_until = $2, attempts = attempts + 1, \
             dedupe = NULL WHERE id IN (SELECT id FROM jobs WHERE state = 'queued' \
             AND run_after <= $3 AND (lease_until IS NULL OR lease_until < $3) \
             AND (kind <> $5 OR created_at <= $6 OR NOT EXISTS (SELECT 1 FROM jobs newer \
               WHERE newer.kind = $5 AND newer.created_at > $7)) \
             ORDER BY run_after, id LIMIT $4{}) RETURNING id, kind, payload, attempts",
            if self.postgres {
                " FOR UPDATE SKIP LOCKED"
            } else {
                ""
            }
        );
        let rows: Vec<LeasedRow> = sqlx::query_as(&sql)
            .bind(owner)
            .bind(now + lease_secs)
            .bind(now)
            .bind(limit)
            .bind(SCAN_IMAGE)
            .bind(scans.overdue_at)
            .bind(scans.quiet_since)
            .fetch_all(&self.writer)
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| LeasedJob {
                id: r.id,
                attempts: r.attempts,
                job: Job::from_row(&r.kind, &r.payload),
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
        .bind(self.now())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Jobs in the `queued` state (due or not, leased or not).
    pub async fn queued_jobs(&self) -> Result<i64> {
        let (queued,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM jobs WHERE state = 'queued'")
            .fetch_one(&self.reader)
            .await?;
        Ok(queued)
    }

    /// Image scans waiting in the queue (`berth_scans_queued`).
    pub async fn queued_scans(&self) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE state = 'queued' AND kind = $1")
                .bind(SCAN_IMAGE)
                .fetch_one(&self.reader)
                .await?,
        )
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
}

/// Queues `job` due at `run_after`, unless one with its dedupe key is queued. Returns
/// whether a job was queued.
pub(super) async fn insert_job<'e>(
    db: impl sqlx::Executor<'e, Database = sqlx::Any>,
    job: &Job,
    run_after: i64,
    now: i64,
) -> Result<bool> {
    let (kind, payload) = job.to_row();
    let done = sqlx::query(
        "INSERT INTO jobs (kind, payload, dedupe, run_after, created_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (dedupe) DO NOTHING",
    )
    .bind(kind)
    .bind(payload)
    .bind(job.dedupe())
    .bind(run_after)
    .bind(now)
    .execute(db)
    .await?;
    Ok(done.rows_affected() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_read_back_as_written_and_as_stored_before() {
        let jobs = [
            Job::ReviewRepository { repository_id: 7 },
            Job::ReviewBlobs,
            Job::RunGc { run_id: 42 },
            Job::ScheduledGc,
            Job::ScanImage {
                repository_id: 3,
                digest: format!("sha256:{}", "a".repeat(64)),
            },
            Job::Replicate { execution_id: 9 },
        ];
        for job in jobs {
            let (kind, payload) = job.to_row();
            assert_eq!(Job::from_row(kind, &payload), Ok(job));
        }
        // The rows earlier versions wrote.
        assert_eq!(
            Job::from_row("review_repository", "7"),
            Ok(Job::ReviewRepository { repository_id: 7 })
        );
        assert_eq!(Job::from_row("gc_run", "3"), Ok(Job::RunGc { run_id: 3 }));
        assert_eq!(Job::from_row("gc_schedule", ""), Ok(Job::ScheduledGc));
        assert_eq!(Job::from_row("review_blobs", ""), Ok(Job::ReviewBlobs));
        assert_eq!(
            Job::ReviewRepository { repository_id: 7 }
                .dedupe()
                .as_deref(),
            Some("review_repository:7")
        );
        assert_eq!(Job::ScheduledGc.dedupe().as_deref(), Some("gc_schedule"));
        assert_eq!(Job::RunGc { run_id: 1 }.dedupe(), None);
        assert!(Job::from_row("gc_run", "").is_err());
        assert!(Job::from_row("vacuum", "").is_err());
        assert!(Job::from_row("scan_image", "3").is_err());
    }
}
