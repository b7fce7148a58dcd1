//! The job queue's runner. Every replica leases due jobs from the index (a lease that
//! expires is taken over, so a replica that dies loses nothing), runs them, and records the
//! outcome; a failed job is retried with exponential backoff, then kept as failed history.
//! Queued scans yield to pushes: one is due once no scan has been queued for
//! `scan.quiet_secs`, or `scan.max_delay_secs` after its own queueing. The workers only tick
//! this; what a job does is decided here.

use super::Registry;
use crate::{
    error::{Error, Result},
    meta::jobs::{Job, LeasedJob, ScanPace},
};

/// Jobs leased per round.
const LEASE_BATCH: i64 = 16;
/// Attempts before a job is kept as failed.
const MAX_ATTEMPTS: i64 = 5;

impl Registry {
    /// Leases and runs due jobs as `owner` until none is due; returns how many ran.
    /// Each round first judges again the images of allowlist entries that expired.
    pub async fn run_due_jobs(&self, owner: &str) -> Result<usize> {
        if let Err(e) = self.sweep_expired_allowlist().await {
            tracing::warn!(error = %e, "could not sweep expired allowlist entries");
        }
        let lease = self.gc.lease_secs as i64;
        let mut ran = 0;
        loop {
            let jobs = self
                .meta
                .lease_jobs(owner, lease, LEASE_BATCH, self.scan_pace())
                .await?;
            if jobs.is_empty() {
                return Ok(ran);
            }
            for leased in jobs {
                ran += 1;
                let (error, retry_at) = match self.run_job(&leased).await {
                    Ok(()) => (None, None),
                    Err(e) => {
                        tracing::warn!(job = leased.id, what = ?leased.job, error = %e, "job failed");
                        let retry = (leased.attempts < MAX_ATTEMPTS)
                            .then(|| self.clock().now() + 10 * (1 << leased.attempts.clamp(0, 10)));
                        (Some(e.to_string()), retry)
                    }
                };
                self.meta
                    .finish_job(leased.id, owner, error.as_deref(), retry_at)
                    .await?;
            }
        }
    }

    /// When queued scans are due: once no scan has been queued for `scan.quiet_secs`
    /// (a burst of pushes is over), or `scan.max_delay_secs` after their own queueing.
    fn scan_pace(&self) -> ScanPace {
        let now = self.clock().now();
        let secs = |s: u64| i64::try_from(s).unwrap_or(i64::MAX);
        ScanPace {
            quiet_since: now.saturating_sub(secs(self.scan.quiet_secs)),
            overdue_at: now.saturating_sub(secs(self.scan.max_delay_secs)),
        }
    }

    /// Keeps one scheduled collection queued, `schedule_secs` ahead (none when 0).
    pub async fn schedule_gc(&self) -> Result<()> {
        let every = self.gc.schedule_secs as i64;
        if every == 0 {
            return Ok(());
        }
        self.meta
            .enqueue_job(&Job::ScheduledGc, self.clock().now() + every)
            .await?;
        Ok(())
    }

    /// Jobs waiting in the queue, leased or not (`berth_jobs_queued`).
    pub async fn queued_jobs(&self) -> Result<i64> {
        self.meta.queued_jobs().await
    }

    /// Queues `job`, due now.
    pub(super) async fn queue_job(&self, job: &Job) -> Result<()> {
        self.meta.enqueue_job(job, self.clock().now()).await?;
        Ok(())
    }

    async fn run_job(&self, leased: &LeasedJob) -> Result<()> {
        let job = leased
            .job
            .as_ref()
            .map_err(|e| Error::Internal(anyhow::anyhow!("job {}: {e}", leased.id)))?;
        match job {
            Job::ReviewRepository { repository_id } => {
                let counts = self.review_repository(*repository_id).await?;
                self.metrics.gc_freed(counts.blobs, counts.bytes);
                tracing::debug!(?counts, "repository reviewed");
                Ok(())
            }
            Job::ReviewBlobs => {
                let counts = self.review_blobs().await?;
                self.metrics.gc_freed(counts.blobs, counts.bytes);
                Ok(())
            }
            Job::RunGc { run_id } => self.run_queued_gc(*run_id).await,
            Job::ScanImage {
                repository_id,
                digest,
            } => self.run_scan_job(*repository_id, digest).await,
            Job::Replicate { execution_id } => self.run_replication(*execution_id).await,
            Job::ScheduledGc => {
                let options = self.gc_options(false);
                let run = self.run_gc("schedule", options, &|_, _| {}).await?;
                tracing::info!(run = run.id, counts = ?run.counts, "scheduled garbage collection");
                Ok(())
            }
        }
    }
}
