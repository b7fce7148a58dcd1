//! Pull statistics. A pull must not cost a database write, so pulls are counted in memory
//! and written in one transaction per flush (a worker flushes every few seconds and at
//! shutdown). A crash loses at most one interval of counts, never content; counts that could
//! not be written (index unavailable) are kept for the next flush. Each replica flushes its
//! own counts as increments, so replicas add up, and a last-pull time never moves back.

use std::{collections::HashMap, sync::Mutex};

use super::Meta;
use crate::{clock::Clock, error::Result};

/// Pulls seen since the last flush.
pub struct PullStats {
    pending: Mutex<Pending>,
    /// Times the pulls it records.
    clock: Clock,
}

#[derive(Default)]
struct Pending {
    /// repository id → (pulls, last pull time)
    repositories: HashMap<i64, (i64, i64)>,
    /// manifest id → (pulls, last pull time)
    manifests: HashMap<i64, (i64, i64)>,
    /// (repository id, tag) → last pull time
    tags: HashMap<(i64, String), i64>,
}

impl PullStats {
    /// Nothing recorded yet; pulls are timed by `clock`.
    pub fn new(clock: Clock) -> PullStats {
        PullStats {
            pending: Mutex::default(),
            clock,
        }
    }

    /// Records a manifest fetch; `counts` is true for a GET (a HEAD only refreshes times).
    pub fn record(&self, repository_id: i64, manifest_id: i64, tag: Option<&str>, counts: bool) {
        let now = self.clock.now();
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let repo = p.repositories.entry(repository_id).or_insert((0, now));
        repo.0 += i64::from(counts);
        repo.1 = now;
        let manifest = p.manifests.entry(manifest_id).or_insert((0, now));
        manifest.0 += i64::from(counts);
        manifest.1 = now;
        if let Some(tag) = tag {
            p.tags.insert((repository_id, tag.to_owned()), now);
        }
    }

    fn take(&self) -> Pending {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Puts back counts that could not be written (the index was unavailable), so that the
    /// next flush writes them with whatever came in meanwhile.
    fn restore(&self, old: Pending) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        for (id, (count, at)) in old.repositories {
            let repo = p.repositories.entry(id).or_insert((0, at));
            repo.0 += count;
            repo.1 = repo.1.max(at);
        }
        for (id, (count, at)) in old.manifests {
            let manifest = p.manifests.entry(id).or_insert((0, at));
            manifest.0 += count;
            manifest.1 = manifest.1.max(at);
        }
        for (key, at) in old.tags {
            let t = p.tags.entry(key).or_insert(at);
            *t = (*t).max(at);
        }
    }
}

impl Meta {
    /// Writes the pulls recorded in `stats` since the last flush.
    pub async fn flush_pull_stats(&self, stats: &PullStats) -> Result<()> {
        let p = stats.take();
        if p.repositories.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.write_pull_stats(&p).await {
            stats.restore(p);
            return Err(e);
        }
        Ok(())
    }

    /// One transaction; rows are updated in key order, so that replicas flushing at the same
    /// time wait for each other instead of deadlocking.
    async fn write_pull_stats(&self, p: &Pending) -> Result<()> {
        let mut tx = self.write_tx().await?;
        for (id, (count, at)) in sorted(&p.repositories) {
            sqlx::query(
                "UPDATE repositories SET pull_count = pull_count + $2, \
                 last_pull_at = CASE WHEN last_pull_at > $3 THEN last_pull_at ELSE $3 END \
                 WHERE id = $1",
            )
            .bind(id)
            .bind(count)
            .bind(at)
            .execute(&mut *tx)
            .await?;
        }
        for (id, (count, at)) in sorted(&p.manifests) {
            sqlx::query(
                "UPDATE manifests SET pull_count = pull_count + $3, last_pulled_at = \
                 CASE WHEN last_pulled_at > $2 THEN last_pulled_at ELSE $2 END WHERE id = $1",
            )
            .bind(id)
            .bind(at)
            .bind(count)
            .execute(&mut *tx)
            .await?;
        }
        for ((repository_id, name), at) in sorted(&p.tags) {
            sqlx::query(
                "UPDATE tags SET last_pulled_at = \
                 CASE WHEN last_pulled_at > $3 THEN last_pulled_at ELSE $3 END \
                 WHERE repository_id = $1 AND name = $2",
            )
            .bind(repository_id)
            .bind(name)
            .bind(at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

fn sorted<K: Ord, V>(map: &HashMap<K, V>) -> Vec<(&K, &V)> {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GETs count per manifest, HEADs only refresh the time; counts put back after a failed
    /// flush add to those recorded meanwhile.
    #[test]
    fn manifest_pulls_count_gets_and_survive_a_failed_flush() {
        let stats = PullStats::new(Clock::default());
        stats.record(1, 7, Some("v1"), true);
        stats.record(1, 7, None, true);
        stats.record(1, 7, Some("v1"), false);
        let taken = stats.take();
        assert_eq!(taken.manifests[&7].0, 2);
        assert_eq!(taken.repositories[&1].0, 2);
        stats.record(1, 7, None, true);
        stats.restore(taken);
        assert_eq!(stats.take().manifests[&7].0, 3);
    }
}
