//! The job queue's consumer. Every replica leases due jobs from the index (a lease that
//! expires is taken over, so a replica that dies loses nothing), runs them, and records the
//! outcome; a failed job is retried with exponential backoff, then kept as failed history.

use crate::{
    error::{Error, Result},
    meta::{JOB_GC_RUN, JOB_GC_SCHEDULE, JOB_REVIEW_BLOBS, JOB_REVIEW_REPOSITORY, Job, now},
    registry::Registry,
};

/// Jobs leased per round.
const LEASE_BATCH: i64 = 16;
/// Attempts before a job is kept as failed.
const MAX_ATTEMPTS: i64 = 5;

/// A name for this process in leases: host, process id, and a random suffix.
pub fn worker_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "berth".into());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}:{}:{}", std::process::id(), &suffix[..8])
}

/// One round of the worker: keeps the collection schedule queued, runs due policies, and
/// drains due jobs.
pub(super) async fn tick(registry: &Registry, owner: &str) {
    if let Err(e) = schedule(registry).await {
        tracing::warn!(error = %e, "could not queue the scheduled garbage collection");
    }
    if let Err(e) = registry.run_due_policies().await {
        tracing::warn!(error = %e, "cleanup policies failed");
    }
    if let Err(e) = run_due_jobs(registry, owner).await {
        tracing::warn!(error = %e, "could not lease jobs");
    }
}

/// Leases and runs due jobs until none is due; returns how many ran.
pub async fn run_due_jobs(registry: &Registry, owner: &str) -> Result<usize> {
    let lease = registry.gc_config().lease_secs as i64;
    let mut ran = 0;
    loop {
        let jobs = registry
            .meta()
            .lease_jobs(owner, lease, LEASE_BATCH)
            .await?;
        if jobs.is_empty() {
            return Ok(ran);
        }
        for job in jobs {
            ran += 1;
            let outcome = run(registry, &job).await;
            let (error, retry_at) = match &outcome {
                Ok(()) => (None, None),
                Err(e) => {
                    tracing::warn!(job = job.id, kind = %job.kind, error = %e, "job failed");
                    let retry = (job.attempts < MAX_ATTEMPTS)
                        .then(|| now() + 10 * (1 << job.attempts.clamp(0, 10)));
                    (Some(e.to_string()), retry)
                }
            };
            registry
                .meta()
                .finish_job(job.id, owner, error.as_deref(), retry_at)
                .await?;
        }
    }
}

async fn run(registry: &Registry, job: &Job) -> Result<()> {
    let id = || {
        job.payload
            .parse::<i64>()
            .map_err(|_| Error::Internal(anyhow::anyhow!("job {} has no id", job.id)))
    };
    match job.kind.as_str() {
        JOB_REVIEW_REPOSITORY => {
            let counts = registry.review_repository(id()?).await?;
            tracing::debug!(?counts, "repository reviewed");
            Ok(())
        }
        JOB_REVIEW_BLOBS => registry.review_blobs().await.map(drop),
        JOB_GC_RUN => registry.run_queued_gc(id()?).await,
        JOB_GC_SCHEDULE => {
            let options = registry.gc_options(false);
            let run = registry.run_gc("schedule", options, &|_, _| {}).await?;
            tracing::info!(run = run.id, counts = ?run.counts, "scheduled garbage collection");
            Ok(())
        }
        other => Err(Error::Internal(anyhow::anyhow!("unknown job kind {other}"))),
    }
}

/// Keeps one scheduled collection queued, `schedule_secs` ahead.
async fn schedule(registry: &Registry) -> Result<()> {
    let every = registry.gc_config().schedule_secs as i64;
    if every == 0 {
        return Ok(());
    }
    registry
        .meta()
        .enqueue_job(JOB_GC_SCHEDULE, "", Some(JOB_GC_SCHEDULE), now() + every)
        .await?;
    Ok(())
}
