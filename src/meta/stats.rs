//! Pull statistics. A pull must not cost a database write, so pulls are counted in memory
//! and written in one transaction per flush (a worker flushes every few seconds and at
//! shutdown). A crash loses at most one interval of counts, never content; counts that could
//! not be written (index unavailable) are kept for the next flush. Each replica flushes its
//! own counts as increments, so replicas add up, and a last-pull time never moves back.
//!
//! Besides the running totals, usage is counted per repository and UTC day (Docker Hub's
//! semantics: a pull is a manifest GET, by tag or by digest; a HEAD is a version check,
//! counted apart; pushes are manifest PUTs; blob bytes served) and pulls per tag and day,
//! each flushed as one upsert per key into `repository_usage` and `tag_usage`, with their
//! rollups: the registry's day (`registry_usage`) and each tag's pulls ever (`tag_pulls`). The first
//! flush of each UTC day also records the day's storage (`registry_storage`,
//! `repository_storage`), for the storage history of the trends.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Mutex,
        atomic::{AtomicI64, Ordering},
    },
};

use super::{Meta, placeholders};
use crate::{clock::Clock, error::Result};

/// Pulls seen since the last flush.
pub struct PullStats {
    pending: Mutex<Pending>,
    /// Times the pulls it records.
    clock: Clock,
    /// False when `stats.enabled` is off: nothing is recorded, nothing is flushed.
    enabled: bool,
    /// The last UTC day whose storage this process saw recorded (at its first flush).
    storage_day: AtomicI64,
}

#[derive(Default)]
struct Pending {
    /// repository id → (pulls, last pull time)
    repositories: HashMap<i64, (i64, i64)>,
    /// manifest id → (pulls, last pull time)
    manifests: HashMap<i64, (i64, i64)>,
    /// (repository id, tag) → last pull time
    tags: HashMap<(i64, String), i64>,
    /// (repository name, day) → what happened that day
    usage: HashMap<(String, i64), DayUsage>,
    /// (repository name, tag, day) → pulls by that tag
    tag_pulls: HashMap<(String, String, i64), i64>,
    /// (subject, repository name, day) → what that identity did there that day
    subjects: HashMap<(String, String, i64), SubjectUsage>,
}

/// What one identity did in one repository on one day, and the name it was last shown by.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct SubjectUsage {
    name: String,
    pulls: i64,
    pushes: i64,
}

/// What one repository saw on one day, as counted in memory.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct DayUsage {
    pulls: i64,
    heads: i64,
    pushes: i64,
    bytes_out: i64,
}

impl DayUsage {
    fn add(&mut self, other: DayUsage) {
        self.pulls += other.pulls;
        self.heads += other.heads;
        self.pushes += other.pushes;
        self.bytes_out += other.bytes_out;
    }
}

/// Seconds in a day: usage days are UTC days since the unix epoch.
pub const DAY_SECS: i64 = 86_400;

/// The UTC day (since the unix epoch) of the unix time `secs`.
pub fn day_of(secs: i64) -> i64 {
    secs.div_euclid(DAY_SECS)
}

impl PullStats {
    /// Nothing recorded yet; pulls are timed by `clock`. When `enabled` is false every
    /// record is dropped (the figures stop growing; nothing else changes).
    pub fn new(clock: Clock, enabled: bool) -> PullStats {
        PullStats {
            pending: Mutex::default(),
            clock,
            enabled,
            storage_day: AtomicI64::new(i64::MIN),
        }
    }

    /// Records a manifest fetch from `repository` (whose id is `repository_id`); `counts` is
    /// true for a GET, a pull (a HEAD only refreshes times and counts as a version check).
    pub fn record(
        &self,
        repository: &str,
        repository_id: i64,
        manifest_id: i64,
        tag: Option<&str>,
        counts: bool,
    ) {
        if !self.enabled {
            return;
        }
        let now = self.clock.now();
        let day = day_of(now);
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let usage = p.usage.entry((repository.to_owned(), day)).or_default();
        if counts {
            usage.pulls += 1;
        } else {
            usage.heads += 1;
        }
        if let (Some(tag), true) = (tag, counts) {
            *p.tag_pulls
                .entry((repository.to_owned(), tag.to_owned(), day))
                .or_default() += 1;
        }
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

    /// Records a manifest push (PUT) to `repository`.
    pub fn record_push(&self, repository: &str) {
        self.add_usage(repository, |u| u.pushes += 1);
    }

    /// Records `bytes` of blob content served from `repository`.
    pub fn record_bytes_out(&self, repository: &str, bytes: u64) {
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
        self.add_usage(repository, |u| u.bytes_out += bytes);
    }

    /// Records a manifest pull (`push` false) or push in `repository` by the identity whose
    /// stable subject is `subject` (`user:<id>`, `token:<id>`, `anonymous`), shown as `name`.
    pub fn record_subject(&self, repository: &str, subject: &str, name: &str, push: bool) {
        if !self.enabled {
            return;
        }
        let day = day_of(self.clock.now());
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let key = (subject.to_owned(), repository.to_owned(), day);
        let usage = p.subjects.entry(key).or_default();
        if usage.name != name {
            usage.name = name.to_owned();
        }
        if push {
            usage.pushes += 1;
        } else {
            usage.pulls += 1;
        }
    }

    fn add_usage(&self, repository: &str, change: impl FnOnce(&mut DayUsage)) {
        if !self.enabled {
            return;
        }
        let day = day_of(self.clock.now());
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        change(p.usage.entry((repository.to_owned(), day)).or_default());
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
        for (key, usage) in old.usage {
            p.usage.entry(key).or_default().add(usage);
        }
        for (key, pulls) in old.tag_pulls {
            *p.tag_pulls.entry(key).or_default() += pulls;
        }
        for (key, old) in old.subjects {
            let usage = p.subjects.entry(key).or_insert_with(|| SubjectUsage {
                name: old.name,
                ..SubjectUsage::default()
            });
            usage.pulls += old.pulls;
            usage.pushes += old.pushes;
        }
    }
}

impl Meta {
    /// Writes the pulls recorded in `stats` since the last flush; at the first flush of a
    /// UTC day, also the day's storage (see [`Meta::record_storage`]).
    pub async fn flush_pull_stats(&self, stats: &PullStats) -> Result<()> {
        let p = stats.take();
        if !(p.repositories.is_empty() && p.usage.is_empty() && p.subjects.is_empty())
            && let Err(e) = self.write_pull_stats(&p).await
        {
            stats.restore(p);
            return Err(e);
        }
        let today = day_of(stats.clock.now());
        if stats.storage_day.load(Ordering::Relaxed) != today {
            // One read a day per process when another replica (or a run before a restart)
            // recorded it already.
            if !self.storage_recorded(today).await? {
                self.record_storage(today).await?;
            }
            stats.storage_day.store(today, Ordering::Relaxed);
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
        // A repository deleted since the count has no row to add to: its counts go with it.
        for ((repository, day), u) in sorted(&p.usage) {
            sqlx::query(
                "INSERT INTO repository_usage \
                 (repository_id, day, pulls, heads, pushes, bytes_out) \
                 SELECT id, $2, $3, $4, $5, $6 FROM repositories WHERE name = $1 \
                 ON CONFLICT (repository_id, day) DO UPDATE SET \
                 pulls = repository_usage.pulls + excluded.pulls, \
                 heads = repository_usage.heads + excluded.heads, \
                 pushes = repository_usage.pushes + excluded.pushes, \
                 bytes_out = repository_usage.bytes_out + excluded.bytes_out",
            )
            .bind(repository)
            .bind(day)
            .bind(u.pulls)
            .bind(u.heads)
            .bind(u.pushes)
            .bind(u.bytes_out)
            .execute(&mut *tx)
            .await?;
        }
        for (day, u) in registry_days(&p.usage) {
            sqlx::query(
                "INSERT INTO registry_usage (day, pulls, heads, pushes, bytes_out) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (day) DO UPDATE SET \
                 pulls = registry_usage.pulls + excluded.pulls, \
                 heads = registry_usage.heads + excluded.heads, \
                 pushes = registry_usage.pushes + excluded.pushes, \
                 bytes_out = registry_usage.bytes_out + excluded.bytes_out",
            )
            .bind(day)
            .bind(u.pulls)
            .bind(u.heads)
            .bind(u.pushes)
            .bind(u.bytes_out)
            .execute(&mut *tx)
            .await?;
        }
        for ((repository, tag), pulls) in tags_ever(&p.tag_pulls) {
            sqlx::query(
                "INSERT INTO tag_pulls (repository_id, tag, pulls) \
                 SELECT id, $2, $3 FROM repositories WHERE name = $1 \
                 ON CONFLICT (repository_id, tag) DO UPDATE SET \
                 pulls = tag_pulls.pulls + excluded.pulls",
            )
            .bind(repository)
            .bind(tag)
            .bind(pulls)
            .execute(&mut *tx)
            .await?;
        }
        for ((repository, tag, day), pulls) in sorted(&p.tag_pulls) {
            sqlx::query(
                "INSERT INTO tag_usage (repository_id, tag, day, pulls) \
                 SELECT id, $2, $3, $4 FROM repositories WHERE name = $1 \
                 ON CONFLICT (repository_id, tag, day) DO UPDATE SET \
                 pulls = tag_usage.pulls + excluded.pulls",
            )
            .bind(repository)
            .bind(tag)
            .bind(day)
            .bind(pulls)
            .execute(&mut *tx)
            .await?;
        }
        for ((subject, repository, day), u) in sorted(&p.subjects) {
            sqlx::query(
                "INSERT INTO subject_usage (subject, repository_id, day, name, pulls, pushes) \
                 SELECT $1, id, $3, $4, $5, $6 FROM repositories WHERE name = $2 \
                 ON CONFLICT (subject, repository_id, day) DO UPDATE SET \
                 name = excluded.name, pulls = subject_usage.pulls + excluded.pulls, \
                 pushes = subject_usage.pushes + excluded.pushes",
            )
            .bind(subject)
            .bind(repository)
            .bind(day)
            .bind(&u.name)
            .bind(u.pulls)
            .bind(u.pushes)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

impl Meta {
    /// Whether the storage of `day` (a UTC day) was recorded already.
    pub async fn storage_recorded(&self, day: i64) -> Result<bool> {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT day FROM registry_storage WHERE day = $1")
                .bind(day)
                .fetch_optional(&self.reader)
                .await?;
        Ok(found.is_some())
    }

    /// Records the storage of `day` (a UTC day) unless a replica did first: the registry's
    /// physical bytes (every stored blob once) and each repository's deduplicated bytes (each
    /// blob its manifests need once). The figures are read before the write transaction:
    /// at a million manifests they take seconds, and SQLite has one writer.
    pub async fn record_storage(&self, day: i64) -> Result<()> {
        let registry_bytes: i64 =
            sqlx::query_scalar("SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM blobs")
                .fetch_one(&self.reader)
                .await?;
        // Each blob's size is read by its key (see `images::SIZE_OF_M`).
        let repositories: Vec<RepositoryBytes> = sqlx::query_as(
            "SELECT r.id, (SELECT CAST(COALESCE(SUM( \
               (SELECT b.size FROM blobs b WHERE b.digest = needed.digest)), 0) AS BIGINT) \
             FROM (SELECT DISTINCT mr.digest FROM manifests m \
               JOIN manifest_references mr ON mr.manifest_id = m.id \
               WHERE m.repository_id = r.id AND mr.kind = 'blob') needed) AS bytes \
             FROM repositories r",
        )
        .fetch_all(&self.reader)
        .await?;
        let mut tx = self.write_tx().await?;
        let claimed = sqlx::query(
            "INSERT INTO registry_storage (day, bytes) VALUES ($1, $2) \
             ON CONFLICT (day) DO NOTHING",
        )
        .bind(day)
        .bind(registry_bytes)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if claimed == 1 {
            // A repository deleted meanwhile has no row to refer to: it is left out.
            for chunk in repositories.chunks(STORAGE_ROWS_PER_INSERT) {
                let rows: Vec<String> = (0..chunk.len())
                    .map(|i| format!("({})", placeholders(2 + 2 * i, 2)))
                    .collect();
                let sql = format!(
                    "INSERT INTO repository_storage (repository_id, day, bytes) \
                     SELECT v.column1, $1, v.column2 FROM (VALUES {}) AS v \
                     WHERE EXISTS (SELECT 1 FROM repositories r WHERE r.id = v.column1) \
                     ON CONFLICT (repository_id, day) DO NOTHING",
                    rows.join(", ")
                );
                let mut insert = sqlx::query(&sql).persistent(false).bind(day);
                for r in chunk {
                    insert = insert.bind(r.id).bind(r.bytes);
                }
                insert.execute(&mut *tx).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Repositories recorded per statement (two parameters each).
const STORAGE_ROWS_PER_INSERT: usize = 500;

/// A repository's deduplicated bytes, as read for the day's storage record.
#[derive(sqlx::FromRow)]
struct RepositoryBytes {
    id: i64,
    bytes: i64,
}

/// The registry's usage per day: the sum over its repositories, in day order.
fn registry_days(usage: &HashMap<(String, i64), DayUsage>) -> BTreeMap<i64, DayUsage> {
    let mut days = BTreeMap::<i64, DayUsage>::new();
    for ((_, day), u) in usage {
        days.entry(*day).or_default().add(*u);
    }
    days
}

/// Pulls per (repository, tag) over every day counted, in key order.
fn tags_ever(pulls: &HashMap<(String, String, i64), i64>) -> BTreeMap<(&str, &str), i64> {
    let mut tags = BTreeMap::new();
    for ((repository, tag, _), n) in pulls {
        *tags.entry((repository.as_str(), tag.as_str())).or_default() += n;
    }
    tags
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
        let stats = PullStats::new(Clock::default(), true);
        stats.record("app", 1, 7, Some("v1"), true);
        stats.record("app", 1, 7, None, true);
        stats.record("app", 1, 7, Some("v1"), false);
        let taken = stats.take();
        assert_eq!(taken.manifests[&7].0, 2);
        assert_eq!(taken.repositories[&1].0, 2);
        stats.record("app", 1, 7, None, true);
        stats.restore(taken);
        assert_eq!(stats.take().manifests[&7].0, 3);
    }

    /// A day's usage counts GETs and HEADs apart, pulls by tag, pushes and bytes out; counts
    /// put back after a failed flush add to those recorded meanwhile.
    #[test]
    fn daily_usage_counts_each_kind_and_survives_a_failed_flush() {
        let clock = Clock::default();
        let stats = PullStats::new(clock.clone(), true);
        let day = day_of(clock.now());
        stats.record("app", 1, 7, Some("v1"), true);
        stats.record("app", 1, 7, None, true);
        stats.record("app", 1, 7, Some("v1"), false);
        stats.record_push("app");
        stats.record_bytes_out("app", 10);
        let taken = stats.take();
        let expected = DayUsage {
            pulls: 2,
            heads: 1,
            pushes: 1,
            bytes_out: 10,
        };
        assert_eq!(taken.usage[&("app".to_owned(), day)], expected);
        assert_eq!(taken.tag_pulls[&("app".into(), "v1".into(), day)], 1);
        stats.record_bytes_out("app", 5);
        stats.record_subject("app", "user:1", "alice", false);
        stats.restore(taken);
        let again = stats.take();
        assert_eq!(again.usage[&("app".to_owned(), day)].bytes_out, 15);
        assert_eq!(again.usage[&("app".to_owned(), day)].pulls, 2);
        let alice = &again.subjects[&("user:1".into(), "app".into(), day)];
        assert_eq!(
            (alice.name.as_str(), alice.pulls, alice.pushes),
            ("alice", 1, 0)
        );
    }
}
