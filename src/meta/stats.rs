//! Pull statistics. A pull must not cost a database write, so pulls are counted in memory
//! and written in one transaction per flush (a worker flushes every few seconds and at
//! shutdown). A crash loses at most one interval of counts, never content.

use std::{collections::HashMap, sync::Mutex};

use super::Meta;
use crate::error::Result;

/// Pulls seen since the last flush.
#[derive(Default)]
pub struct PullStats {
    pending: Mutex<Pending>,
}

#[derive(Default)]
struct Pending {
    /// repository id → (pulls, last pull time)
    repositories: HashMap<i64, (i64, i64)>,
    /// manifest id → last pull time
    manifests: HashMap<i64, i64>,
    /// (repository id, tag) → last pull time
    tags: HashMap<(i64, String), i64>,
}

impl PullStats {
    /// Records a manifest fetch; `counts` is true for a GET (a HEAD only refreshes times).
    pub fn record(&self, repository_id: i64, manifest_id: i64, tag: Option<&str>, counts: bool) {
        let now = super::now();
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let repo = p.repositories.entry(repository_id).or_insert((0, now));
        repo.0 += i64::from(counts);
        repo.1 = now;
        p.manifests.insert(manifest_id, now);
        if let Some(tag) = tag {
            p.tags.insert((repository_id, tag.to_owned()), now);
        }
    }

    fn take(&self) -> Pending {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Meta {
    /// Writes the pulls recorded in `stats` since the last flush.
    pub async fn flush_pull_stats(&self, stats: &PullStats) -> Result<()> {
        let p = stats.take();
        if p.repositories.is_empty() {
            return Ok(());
        }
        let mut tx = self.writer.begin().await?;
        for (id, (count, at)) in &p.repositories {
            sqlx::query(
                "UPDATE repositories SET pull_count = pull_count + $2, last_pull_at = $3 WHERE id = $1",
            )
            .bind(id)
            .bind(count)
            .bind(at)
            .execute(&mut *tx)
            .await?;
        }
        for (id, at) in &p.manifests {
            sqlx::query("UPDATE manifests SET last_pulled_at = $2 WHERE id = $1")
                .bind(id)
                .bind(at)
                .execute(&mut *tx)
                .await?;
        }
        for ((repository_id, name), at) in &p.tags {
            sqlx::query(
                "UPDATE tags SET last_pulled_at = $3 WHERE repository_id = $1 AND name = $2",
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
