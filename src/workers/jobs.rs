//! The job queue's ticker: each round keeps the collection schedule queued, runs due cleanup
//! policies and drains due jobs, all through the registry (which owns the queue).

use crate::{error::Result, registry::Registry};

/// A name for this process in leases: host, process id, and a random suffix.
pub fn worker_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "berth".into());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}:{}:{}", std::process::id(), &suffix[..8])
}

/// One round of the worker: keeps the collection schedule queued, runs due policies, and
/// drains due jobs.
pub(super) async fn tick(registry: &Registry, owner: &str) {
    if let Err(e) = registry.schedule_gc().await {
        tracing::warn!(error = %e, "could not queue the scheduled garbage collection");
    }
    if let Err(e) = registry.run_due_policies().await {
        tracing::warn!(error = %e, "cleanup policies failed");
    }
    if let Err(e) = run_due_jobs(registry, owner).await {
        tracing::warn!(error = %e, "could not lease jobs");
    }
}

/// Leases and runs due jobs as `owner` until none is due; returns how many ran.
pub async fn run_due_jobs(registry: &Registry, owner: &str) -> Result<usize> {
    registry.run_due_jobs(owner).await
}
