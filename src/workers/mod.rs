//! Background tasks, owned by [`crate::serve`] and stopped by its cancellation token: the
//! pull statistics flush, the reading of the pull-through cache's rules and its eviction, the pruning of finished webhook deliveries, and the ticking of the
//! registry's job queue ([`jobs`]) that drives garbage collection (reviews, scheduled and
//! requested runs) and cleanup policies on every replica. Workers only keep time: what each tick does is the registry's; the webhook
//! sender ([`webhooks`]) also makes the HTTP requests, which the registry never does.

mod jobs;
mod webhooks;

use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::registry::Registry;
pub use jobs::worker_id;

/// Starts every worker, leasing jobs under `node_name` and writing pull statistics every
/// `flush_period` (`metrics.stats_flush_millis`); they end when `stop` is cancelled.
pub fn spawn(
    registry: Registry,
    node_name: &str,
    flush_period: Duration,
    stop: CancellationToken,
) -> JoinSet<()> {
    let mut set = JoinSet::new();
    let flusher = registry.clone();
    set.spawn(every(flush_period, stop.clone(), move || {
        let registry = flusher.clone();
        async move {
            if let Err(e) = registry.flush_pull_stats().await {
                tracing::warn!(error = %e, "could not write pull statistics");
            }
        }
    }));
    // Rules of the API come and go: every replica reads them every few seconds, and the
    // evictor runs whatever the rules at start (a pass without eviction rules reads nothing).
    let refresher = registry.clone();
    set.spawn(every(PROXY_RULES_REFRESH, stop.clone(), move || {
        let registry = refresher.clone();
        async move {
            if let Err(e) = registry.refresh_proxy_rules().await {
                tracing::warn!(error = %e, "could not read the pull-through cache rules");
            }
        }
    }));
    let evictor = registry.clone();
    set.spawn(every(PROXY_EVICTION_PERIOD, stop.clone(), move || {
        let registry = evictor.clone();
        async move {
            if let Err(e) = registry.evict_cached().await {
                tracing::warn!(error = %e, "could not evict from the pull-through cache");
            }
        }
    }));
    set.spawn(webhooks::run(
        registry.clone(),
        worker_id(node_name),
        stop.clone(),
    ));
    if registry.webhooks_config().retention_secs().is_some() {
        let pruner = registry.clone();
        let period = Duration::from_secs(registry.webhooks_config().prune_secs.max(1));
        set.spawn(every(period, stop.clone(), move || {
            let registry = pruner.clone();
            async move {
                match registry.prune_webhook_deliveries().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(deliveries = n, "webhooks: pruned finished deliveries"),
                    Err(e) => tracing::warn!(error = %e, "webhooks: could not prune deliveries"),
                }
            }
        }));
    }
    if registry.gc_config().continuous {
        let period = Duration::from_millis(registry.gc_config().poll_millis.max(10));
        let owner = worker_id(node_name);
        set.spawn(every(period, stop, move || {
            let registry = registry.clone();
            let owner = owner.clone();
            async move { jobs::tick(&registry, &owner).await }
        }));
    }
    set
}

/// How often each replica reads the pull-through cache rules managed through the API.
const PROXY_RULES_REFRESH: Duration = Duration::from_secs(5);

/// How often the pull-through cache's eviction rules are applied.
const PROXY_EVICTION_PERIOD: Duration = Duration::from_secs(60);

/// Runs `task` every `period` until `stop` is cancelled.
async fn every<F, Fut>(period: Duration, stop: CancellationToken, mut task: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticks.tick() => task().await,
        }
    }
}
