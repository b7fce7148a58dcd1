//! Background tasks, owned by [`crate::serve`] and stopped by its cancellation token.

use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::registry::Registry;

/// How often pull statistics gathered in memory are written to the index.
const PULL_STATS_PERIOD: Duration = Duration::from_secs(5);

/// Starts every worker; they end when `stop` is cancelled.
pub fn spawn(registry: Registry, stop: CancellationToken) -> JoinSet<()> {
    let mut set = JoinSet::new();
    set.spawn(every(PULL_STATS_PERIOD, stop, move || {
        let registry = registry.clone();
        async move {
            if let Err(e) = registry.flush_pull_stats().await {
                tracing::warn!(error = %e, "could not write pull statistics");
            }
        }
    }));
    set
}

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
