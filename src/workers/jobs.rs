//! The job queue's ticker: each round keeps the collection schedule queued, runs due cleanup
//! policies and drains due jobs, all through the registry (which owns the queue).

use crate::registry::Registry;

/// A name for this process in leases: the node's name, process id, and a random suffix.
pub fn worker_id(node_name: &str) -> String {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{node_name}:{}:{}", std::process::id(), &suffix[..8])
}

/// One round of the worker: keeps the collection schedule queued, runs due policies, and
/// drains due jobs.
pub(super) async fn tick(registry: &Registry, owner: &str) {
    if let Err(e) = registry.schedule_gc().await {
        tracing::warn!(error = %e, "could not queue the scheduled garbage collection");
    }
    if let Err(e) = registry.schedule_replications().await {
        tracing::warn!(error = %e, "could not queue the scheduled replications");
    }
    if let Err(e) = registry.run_due_policies().await {
        tracing::warn!(error = %e, "cleanup policies failed");
    }
    if let Err(e) = registry.run_due_jobs(owner).await {
        tracing::warn!(error = %e, "could not lease jobs");
    }
}
