//! Online garbage collection: never stop-the-world, safe with several replicas at work.
//!
//! Rows first, bytes second. Each phase lists candidates without locks, then deletes each
//! with a statement that re-checks why it is garbage (the index is the only judge), and only
//! then deletes objects:
//! 1. upload sessions idle past `upload_timeout`, then their staged parts;
//! 2. untagged manifests past the grace period (option), never an index's child or a
//!    referrer of a subject the repository holds;
//! 3. repository links no manifest of the repository needs, past the grace period;
//! 4. blobs no repository links, past the grace period: the collector claims each digest
//!    (a fence in the index) before it deletes the row, and deletes the object under that
//!    claim. A writer counts itself in on the digest before it writes the object and waits
//!    while a claim is held, so an object being re-uploaded is never swept, and a blob whose
//!    row is gone is never linked again without its bytes being written again (mounts need
//!    the row);
//! 5. objects the index does not know (orphans) past the grace period, under the same claim.
//!
//! A collector that dies leaves claims behind; the next run finishes their deletions once the
//! lease has expired. A deletion the store refuses releases its claim all the same: the
//! object, its row gone, is an orphan that phase 5 of a later run deletes, and meanwhile the
//! digest can be pushed again. Reviews (continuous collection) run phases 2–4 for one
//! repository.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    time::Instant,
};

use futures::{StreamExt, TryStreamExt};

use super::Registry;
use crate::{
    blobs::{Blobs, ListedBlob},
    error::{Error, Result},
    meta::{
        gc::{GcCounts, GcRunRecord, QueuedGcOptions, RepositoryEstimate},
        jobs::Job,
    },
    oci::{Digest, RepoName},
};

/// Candidates (or, for blobs, rows of the table) read per query; memory does not depend on
/// the size of the registry.
const BATCH: i64 = 2000;
/// Object deletions in flight at once.
const DELETES_IN_FLIGHT: usize = 64;
/// Items a report lists; beyond, it counts them only.
const REPORT_ITEMS_MAX: usize = 10_000;
/// Error messages a report keeps; beyond, it counts them only.
const ERRORS_MAX: usize = 100;
/// Passes over untagged manifests in one run (an index removed frees its children).
const MANIFEST_PASSES: usize = 8;
/// Finished jobs are kept this long as history.
const JOB_HISTORY_SECS: i64 = 7 * 24 * 3600;
/// Finished collections kept on record (`/api/v1/gc/runs`); each run deletes the older ones,
/// whose reports would otherwise grow the index by megabytes a run.
const GC_RUNS_KEPT: i64 = 100;

/// How one collection runs.
#[derive(Debug, Clone, Copy)]
pub struct GcOptions {
    /// Report what would be removed, and remove nothing.
    pub dry_run: bool,
    /// Rows and objects younger than this are never candidates.
    pub grace_secs: u64,
    /// Collect untagged manifests too.
    pub untagged: bool,
    /// Upload sessions idle this long are abandoned.
    pub upload_timeout_secs: u64,
    /// Claims (and runs) older than this belong to a collector that died.
    pub lease_secs: u64,
}

/// What a collection removed, or would remove, and why.
#[derive(Debug, Default, serde::Serialize)]
pub struct GcReport {
    /// Nothing was deleted: the report is a preview.
    pub dry_run: bool,
    /// What was removed, by kind, and the bytes reclaimed.
    pub counts: GcCounts,
    /// What was removed, item by item, with the reason (the first 10,000).
    pub items: Vec<GcItem>,
    /// More items were removed than `items` lists.
    pub truncated: bool,
    /// What failed (the first 100); a failed deletion is retried by the next run.
    pub errors: Vec<String>,
    /// Wall seconds each phase took.
    pub phase_secs: BTreeMap<&'static str, f64>,
}

/// One thing a collection removed (or would remove), and why. Typed rather than a JSON
/// map: a report of 10,000 items held as maps took about 6 MiB a copy, and a run held three
/// (built, converted for its row, read back).
#[derive(Debug, serde::Serialize)]
pub struct GcItem {
    /// `manifest`, `link`, `blob`, `upload` or `orphan`.
    pub kind: &'static str,
    /// The repository, for what belongs to one.
    pub repository: Option<String>,
    /// The digest, upload session or object key.
    pub name: String,
    /// Its size.
    pub bytes: i64,
    /// Why it goes.
    pub reason: &'static str,
}

impl GcReport {
    fn item(
        &mut self,
        kind: &'static str,
        repository: Option<&str>,
        name: &str,
        bytes: i64,
        reason: &'static str,
    ) {
        if self.items.len() >= REPORT_ITEMS_MAX {
            self.truncated = true;
            return;
        }
        self.items.push(GcItem {
            kind,
            repository: repository.map(str::to_owned),
            name: name.to_owned(),
            bytes,
            reason,
        });
    }

    /// Records the time since `lap` as `phase`'s, and starts the next lap.
    fn lap(&mut self, phase: &'static str, lap: &mut Instant) {
        let secs = lap.elapsed().as_secs_f64();
        self.phase_secs
            .insert(phase, (secs * 1000.0).round() / 1000.0);
        *lap = Instant::now();
    }

    /// Records what the dry run's mark found.
    fn marked(&mut self, found: Marked<'_>) {
        match found {
            Marked::Link {
                repository,
                digest,
                size,
            } => {
                self.counts.links += 1;
                let why = "no manifest of the repository references it";
                self.item(
                    "link",
                    Some(repository.as_str()),
                    &digest.to_string(),
                    size,
                    why,
                );
            }
            Marked::Blob { digest, size } => {
                self.counts.blobs += 1;
                self.counts.bytes += size;
                let why = "no manifest in any repository references it";
                self.item("blob", None, &digest.to_string(), size, why);
            }
        }
    }

    /// Adds the counts, items and errors of `other`.
    fn absorb(&mut self, other: GcReport) {
        self.counts.add(&other.counts);
        self.truncated |= other.truncated;
        let room = REPORT_ITEMS_MAX.saturating_sub(self.items.len());
        self.truncated |= other.items.len() > room;
        self.items.extend(other.items.into_iter().take(room));
        let room = ERRORS_MAX.saturating_sub(self.errors.len());
        self.errors.extend(other.errors.into_iter().take(room));
    }

    fn error(&mut self, e: impl std::fmt::Display) {
        self.counts.errors += 1;
        if self.errors.len() < ERRORS_MAX {
            self.errors.push(e.to_string());
        }
    }
}

/// Progress of a long collection: the phase, and how many candidates it has handled.
pub type Progress<'a> = &'a (dyn Fn(&str, u64) + Send + Sync);

/// What a sweep deleted: blobs no repository links, or objects the index does not know.
#[derive(Clone, Copy)]
enum Swept {
    Unlinked,
    Orphans,
}

/// What the mark finds: a link no manifest of its repository needs, or a blob a collection
/// would remove (written before the cutoff, every link of it unneeded).
enum Marked<'a> {
    Link {
        repository: &'a RepoName,
        digest: &'a Digest,
        size: i64,
    },
    Blob {
        digest: &'a Digest,
        size: i64,
    },
}

impl Registry {
    /// The collection options of the configuration, dry or not.
    pub fn gc_options(&self, dry_run: bool) -> GcOptions {
        GcOptions {
            dry_run,
            grace_secs: self.gc.grace_secs,
            untagged: self.gc.untagged,
            upload_timeout_secs: self.gc.upload_timeout_secs,
            lease_secs: self.gc.lease_secs,
        }
    }

    /// Runs a collection now and records it (trigger: `api`, `cli`, `schedule`).
    pub async fn run_gc(
        &self,
        trigger: &str,
        options: GcOptions,
        progress: Progress<'_>,
    ) -> Result<GcRunRecord> {
        let id = self
            .meta
            .create_gc_run(trigger, options.dry_run, true)
            .await?;
        self.finish_run(id, options, progress).await
    }

    /// Records a collection to be run by a worker (any replica) with `options` (the
    /// configuration's where they are `None`) and queues it.
    pub async fn queue_gc(
        &self,
        trigger: &str,
        dry_run: bool,
        options: QueuedGcOptions,
    ) -> Result<GcRunRecord> {
        let id = self.meta.queue_gc_run(trigger, dry_run, options).await?;
        self.queue_job(&Job::RunGc { run_id: id }).await?;
        self.gc_run(id).await?.ok_or(Error::NotFound)
    }

    /// Runs queued collection `id` (a worker leased its job).
    pub async fn run_queued_gc(&self, id: i64) -> Result<()> {
        let Some(run) = self.meta.gc_run(id).await? else {
            return Ok(());
        };
        if !self.meta.start_gc_run(id).await? {
            return Ok(());
        }
        let asked = self.meta.queued_gc_options(id).await?;
        let mut options = self.gc_options(run.dry_run);
        if let Some(grace) = asked.grace_secs {
            options.grace_secs = u64::try_from(grace).unwrap_or(0);
        }
        if let Some(untagged) = asked.remove_untagged {
            options.untagged = untagged;
        }
        self.finish_run(id, options, &|_, _| {}).await.map(drop)
    }

    async fn finish_run(
        &self,
        id: i64,
        options: GcOptions,
        progress: Progress<'_>,
    ) -> Result<GcRunRecord> {
        let lease_start = self.clock.now() - options.lease_secs as i64;
        self.meta.fail_interrupted_gc_runs(lease_start, id).await?;
        let outcome = self.collect_garbage(options, progress).await;
        let (report, failed) = match outcome {
            Ok(report) => (report, false),
            Err(e) => {
                let mut report = GcReport {
                    dry_run: options.dry_run,
                    ..GcReport::default()
                };
                report.error(&e);
                (report, true)
            }
        };
        self.metrics.gc_finished(
            failed,
            report.dry_run,
            report.counts.blobs,
            report.counts.bytes,
        );
        self.meta
            .finish_gc_run(id, &report.counts, failed, &report)
            .await?;
        self.meta.prune_gc_runs(GC_RUNS_KEPT).await?;
        // Freed before the stored text is read back for the answer.
        drop(report);
        self.gc_run(id).await?.ok_or(Error::NotFound)
    }

    /// Recorded run `id`, if there is one.
    pub async fn gc_run(&self, id: i64) -> Result<Option<GcRunRecord>> {
        self.meta.gc_run(id).await
    }

    /// Recorded runs, newest first, with ids below `before`.
    pub async fn gc_runs(&self, before: Option<i64>, n: i64) -> Result<Vec<GcRunRecord>> {
        self.meta.gc_runs(before, n).await
    }

    /// Bytes per repository in links no manifest needs (past the configured grace period),
    /// and the blobs and bytes a collection would reclaim now.
    pub async fn gc_estimate(&self) -> Result<(Vec<RepositoryEstimate>, i64, i64)> {
        self.gc_estimate_with_grace(self.gc.grace_secs).await
    }

    /// [`Registry::gc_estimate`] as a collection with `grace_secs` would see it (0: what a
    /// run with no grace period frees right after a delete).
    pub async fn gc_estimate_with_grace(
        &self,
        grace_secs: u64,
    ) -> Result<(Vec<RepositoryEstimate>, i64, i64)> {
        let cutoff = self.clock.now() - grace_secs as i64;
        self.meta.refresh_gc_statistics().await?;
        let mut repositories: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        let (mut blobs, mut bytes) = (0, 0);
        self.mark(cutoff, &|_, _| {}, |found| match found {
            Marked::Link {
                repository, size, ..
            } => {
                let sums = repositories.entry(repository.to_string()).or_default();
                sums.0 += 1;
                sums.1 += size;
            }
            Marked::Blob { size, .. } => {
                blobs += 1;
                bytes += size;
            }
        })
        .await?;
        let repositories = repositories
            .into_iter()
            .map(|(repository, (links, bytes))| RepositoryEstimate {
                repository,
                unreferenced_links: links,
                unreferenced_bytes: bytes,
            })
            .collect();
        Ok((repositories, blobs, bytes))
    }

    /// A full collection (or its dry run): every phase over the whole registry.
    pub async fn collect_garbage(
        &self,
        options: GcOptions,
        progress: Progress<'_>,
    ) -> Result<GcReport> {
        let mut report = GcReport {
            dry_run: options.dry_run,
            ..GcReport::default()
        };
        let now = self.clock.now();
        let cutoff = now - options.grace_secs as i64;
        let mut lap = Instant::now();
        self.meta.refresh_gc_statistics().await?;
        if !options.dry_run {
            self.finish_stale_claims(now - options.lease_secs as i64, &mut report)
                .await?;
        }
        self.collect_uploads(
            now - options.upload_timeout_secs as i64,
            &options,
            &mut report,
            progress,
        )
        .await?;
        report.lap("uploads", &mut lap);
        if options.untagged {
            self.collect_manifests(cutoff, None, &options, &mut report, progress)
                .await?;
            report.lap("manifests", &mut lap);
        }
        if options.dry_run {
            // Nothing is deleted, so the mark (the index) and the orphan listing (the store)
            // run side by side.
            let mut orphans = GcReport::default();
            let mark = self.mark(cutoff, progress, |found| report.marked(found));
            let listing = self.collect_orphans(cutoff, &options, &mut orphans, progress);
            futures::try_join!(mark, listing)?;
            report.absorb(orphans);
            report.lap("mark and orphans", &mut lap);
        } else {
            self.collect_links(cutoff, None, false, &mut report, progress)
                .await?;
            report.lap("links", &mut lap);
            self.collect_blobs(cutoff, &mut report, progress).await?;
            report.lap("blobs", &mut lap);
            self.collect_orphans(cutoff, &options, &mut report, progress)
                .await?;
            report.lap("orphans", &mut lap);
            self.meta.prune_jobs(now - JOB_HISTORY_SECS).await?;
        }
        Ok(report)
    }

    /// A review after events in one repository: its untagged manifests (option), its links
    /// no manifest needs, and the blobs that this leaves unlinked.
    pub async fn review_repository(&self, repository_id: i64) -> Result<GcCounts> {
        let options = self.gc_options(false);
        let cutoff = self.clock.now() - options.grace_secs as i64;
        let mut report = GcReport::default();
        let quiet: Progress<'_> = &|_, _| {};
        // Claims of a collector that died would keep writers of their digests waiting.
        self.finish_stale_claims(self.clock.now() - options.lease_secs as i64, &mut report)
            .await?;
        if options.untagged {
            self.collect_manifests(cutoff, Some(repository_id), &options, &mut report, quiet)
                .await?;
        }
        let unlinked = self
            .collect_links(cutoff, Some(repository_id), true, &mut report, quiet)
            .await?;
        for chunk in unlinked.chunks(BATCH as usize) {
            self.delete_blobs(chunk, cutoff, &mut report).await?;
        }
        Ok(report.counts)
    }

    /// A review of every unlinked blob (after a repository was deleted).
    pub async fn review_blobs(&self) -> Result<GcCounts> {
        let cutoff = self.clock.now() - self.gc.grace_secs as i64;
        let mut report = GcReport::default();
        self.collect_blobs(cutoff, &mut report, &|_, _| {}).await?;
        Ok(report.counts)
    }

    /// Claims left by a collector that stopped between a row and its object: the row is
    /// gone, so the object goes too.
    async fn finish_stale_claims(&self, cutoff: i64, report: &mut GcReport) -> Result<()> {
        let stale = self.meta.stale_blob_claims(cutoff).await?;
        for digest in &stale {
            // Released whatever the outcome: an object left is an orphan for a later run.
            if let Err(e) = self.blobs.delete_blob(digest).await {
                report.error(format!("deleting {digest}: {e}"));
            }
        }
        self.meta.release_blob_claims(&stale).await?;
        self.meta.reset_stale_writers(cutoff).await?;
        Ok(())
    }

    async fn collect_uploads(
        &self,
        cutoff: i64,
        options: &GcOptions,
        report: &mut GcReport,
        progress: Progress<'_>,
    ) -> Result<()> {
        let mut after = String::new();
        let mut seen = 0;
        loop {
            let page = self.meta.stale_uploads(cutoff, &after, BATCH).await?;
            for upload in &page {
                seen += 1;
                let why = "upload session abandoned (idle past upload_timeout_secs)";
                let parts = if options.dry_run {
                    Vec::new()
                } else {
                    let Some(parts) = self.meta.delete_stale_upload(&upload.id, cutoff).await?
                    else {
                        continue;
                    };
                    self.running_hashes.forget(&upload.id);
                    parts
                };
                report.counts.uploads += 1;
                report.counts.bytes += upload.size;
                report.item(
                    "upload",
                    Some(upload.repository.as_str()),
                    &upload.id,
                    upload.size,
                    why,
                );
                if let Err(e) = self.blobs.delete_parts(&parts).await {
                    report.error(format!("deleting parts of upload {}: {e}", upload.id));
                }
            }
            progress("uploads", seen);
            match page.last() {
                Some(u) if page.len() as i64 == BATCH => after = u.id.clone(),
                _ => return Ok(()),
            }
        }
    }

    async fn collect_manifests(
        &self,
        cutoff: i64,
        repository_id: Option<i64>,
        options: &GcOptions,
        report: &mut GcReport,
        progress: Progress<'_>,
    ) -> Result<()> {
        let passes = if options.dry_run { 1 } else { MANIFEST_PASSES };
        let mut seen = 0;
        for _ in 0..passes {
            let mut deleted = 0;
            let mut after = 0;
            loop {
                let page = self
                    .meta
                    .untagged_manifests(cutoff, repository_id, after, BATCH)
                    .await?;
                for m in &page {
                    seen += 1;
                    let why = match &m.subject {
                        Some(_) => "untagged referrer whose subject is gone",
                        None => "untagged manifest, no child of an index",
                    };
                    if options.dry_run || self.meta.delete_untagged_manifest(m, cutoff).await? {
                        deleted += 1;
                        report.counts.manifests += 1;
                        let (repository, digest) = (m.repository.as_str(), m.digest.to_string());
                        report.item("manifest", Some(repository), &digest, m.size, why);
                    }
                }
                progress("manifests", seen);
                match page.last() {
                    Some(m) if page.len() as i64 == BATCH => after = m.id,
                    _ => break,
                }
            }
            if deleted == 0 {
                break;
            }
        }
        Ok(())
    }

    /// Deletes the links no manifest needs; returns the digests unlinked if `keep` (a full
    /// run sweeps every unlinked blob next, and keeps nothing: memory stays flat).
    async fn collect_links(
        &self,
        cutoff: i64,
        repository_id: Option<i64>,
        keep: bool,
        report: &mut GcReport,
        progress: Progress<'_>,
    ) -> Result<Vec<Digest>> {
        let mut unlinked = Vec::new();
        let mut after = (0i64, String::new());
        let mut seen = 0;
        loop {
            let page = self
                .meta
                .unneeded_links(cutoff, repository_id, (after.0, &after.1), BATCH)
                .await?;
            let mut by_repository: BTreeMap<i64, Vec<&_>> = BTreeMap::new();
            for link in &page {
                by_repository
                    .entry(link.repository_id)
                    .or_default()
                    .push(link);
            }
            for (repository_id, links) in by_repository {
                let digests: Vec<Digest> = links.iter().map(|l| l.digest.clone()).collect();
                let deleted = self
                    .meta
                    .delete_unneeded_links(repository_id, &digests, cutoff)
                    .await?;
                for link in links.iter().filter(|l| deleted.contains(&l.digest)) {
                    report.counts.links += 1;
                    let why = "no manifest of the repository references it";
                    let (repository, digest) = (link.repository.as_str(), link.digest.to_string());
                    report.item("link", Some(repository), &digest, link.size, why);
                }
                if keep {
                    unlinked.extend(deleted);
                }
            }
            seen += page.len() as u64;
            progress("links", seen);
            match page.last() {
                Some(l) if page.len() as i64 == BATCH => {
                    after = (l.repository_id, l.digest.to_string());
                }
                _ => return Ok(unlinked),
            }
        }
    }

    /// Sweeps every unlinked blob, a window of the blobs table at a time: the rows of the
    /// next window's unlinked blobs are claimed and deleted while the objects of the last
    /// one's are being deleted.
    async fn collect_blobs(
        &self,
        cutoff: i64,
        report: &mut GcReport,
        progress: Progress<'_>,
    ) -> Result<()> {
        let mut after = String::new();
        let mut seen = 0;
        let mut sweeping = None;
        loop {
            let claim_next = async {
                let (digests, last) = self.meta.unlinked_blobs(cutoff, &after, BATCH).await?;
                let claimed = self.meta.claim_and_delete_blobs(&digests, cutoff).await?;
                Ok::<_, Error>((digests, claimed, last))
            };
            let last_sweep = async {
                match sweeping.take() {
                    Some(sweep) => Some(sweep.await),
                    None => None,
                }
            };
            let (next, swept) = futures::join!(claim_next, last_sweep);
            if let Some(swept) = swept {
                self.settle_sweep(swept, Swept::Unlinked, report).await?;
            }
            let (digests, claimed, last) = next?;
            seen += digests.len() as u64;
            progress("blobs", seen);
            sweeping = Some(self.delete_objects(claimed));
            match last {
                Some(d) => after = d.to_string(),
                None => break,
            }
        }
        if let Some(sweep) = sweeping {
            self.settle_sweep(sweep.await, Swept::Unlinked, report)
                .await?;
        }
        Ok(())
    }

    /// Rows first (claimed and re-validated), then objects, then the claims.
    async fn delete_blobs(
        &self,
        digests: &[Digest],
        cutoff: i64,
        report: &mut GcReport,
    ) -> Result<()> {
        let claimed = self.meta.claim_and_delete_blobs(digests, cutoff).await?;
        let swept = self.delete_objects(claimed).await;
        self.settle_sweep(swept, Swept::Unlinked, report).await
    }

    /// Deletes the objects of claimed blobs whose rows are gone.
    async fn delete_objects(&self, claimed: Vec<(Digest, i64)>) -> Vec<(Digest, i64, Result<()>)> {
        let sizes: HashMap<Digest, i64> = claimed.iter().cloned().collect();
        let digests = claimed.into_iter().map(|(digest, _)| digest).collect();
        self.blobs
            .delete_blobs(digests, DELETES_IN_FLIGHT)
            .await
            .into_iter()
            .map(|(digest, outcome)| {
                let size = sizes.get(&digest).copied().unwrap_or(0);
                (digest, size, outcome)
            })
            .collect()
    }

    /// Reports the objects deleted and releases every claim of the sweep.
    async fn settle_sweep(
        &self,
        swept: Vec<(Digest, i64, Result<()>)>,
        kind: Swept,
        report: &mut GcReport,
    ) -> Result<()> {
        let (item, why) = match kind {
            Swept::Unlinked => ("blob", "no repository links it"),
            Swept::Orphans => ("orphan", "object the index does not know"),
        };
        let mut released = Vec::new();
        for (digest, size, outcome) in swept {
            match outcome {
                Ok(()) => {
                    match kind {
                        Swept::Unlinked => report.counts.blobs += 1,
                        Swept::Orphans => report.counts.orphans += 1,
                    }
                    report.counts.bytes += size;
                    report.item(item, None, &digest.to_string(), size, why);
                }
                // The claim goes too, or pushes of the digest would wait on it until the
                // next run: the object left is an orphan, which a later run deletes.
                Err(e) => report.error(format!(
                    "deleting {item} {digest}: {}",
                    crate::error::with_causes(&e)
                )),
            }
            released.push(digest);
        }
        self.meta.release_blob_claims(&released).await
    }

    /// The mark, as the dry run and the estimate see it: calls `found` for every link and
    /// blob a collection with `cutoff` would remove now.
    async fn mark(
        &self,
        cutoff: i64,
        progress: Progress<'_>,
        mut found: impl FnMut(Marked<'_>),
    ) -> Result<()> {
        let mut rows = self.meta.mark_blobs(cutoff);
        // The blob whose rows are being read, and whether it is reclaimable so far.
        let mut blob: Option<(Digest, i64, bool)> = None;
        let mut seen = 0;
        while let Some(row) = rows.try_next().await? {
            if blob
                .as_ref()
                .is_none_or(|(digest, ..)| *digest != row.digest)
                && let Some((digest, size, true)) =
                    blob.replace((row.digest.clone(), row.size, row.old))
            {
                found(Marked::Blob {
                    digest: &digest,
                    size,
                });
            }
            match &row.link {
                Some(link) if link.unneeded => found(Marked::Link {
                    repository: &link.repository,
                    digest: &row.digest,
                    size: row.size,
                }),
                Some(_) => {
                    if let Some(b) = blob.as_mut() {
                        b.2 = false;
                    }
                }
                None => {}
            }
            seen += 1;
            if seen % 1000 == 0 {
                progress("mark", seen);
            }
        }
        if let Some((digest, size, true)) = blob {
            found(Marked::Blob {
                digest: &digest,
                size,
            });
        }
        progress("mark", seen);
        Ok(())
    }

    /// Of a chunk of the store's blob listing (in digest order), the objects the index has
    /// no row and no fence for, written before `cutoff`, with their sizes. The chunk is
    /// compared with one range read of the index; only what that does not find is looked up
    /// (rows and fences), and only those are examined for their size and age when the
    /// listing did not give them (a local directory's).
    async fn unknown_objects(
        &self,
        chunk: Vec<ListedBlob>,
        cutoff: i64,
    ) -> Result<Vec<(Digest, u64)>> {
        let (Some(first), Some(last)) = (
            chunk.iter().map(|b| &b.digest).min(),
            chunk.iter().map(|b| &b.digest).max(),
        ) else {
            return Ok(Vec::new());
        };
        // A healthy index holds about as many rows in the range as the chunk has objects;
        // many more (objects lost from the store) and the range is cut, which only sends
        // more of the chunk to the exact lookup below.
        let limit = 4 * chunk.len() as i64;
        let indexed: HashSet<Digest> = self
            .meta
            .blob_digests_between(first, last, limit)
            .await?
            .into_iter()
            .collect();
        let unmatched: Vec<ListedBlob> = chunk
            .into_iter()
            .filter(|b| !indexed.contains(&b.digest))
            .collect();
        if unmatched.is_empty() {
            return Ok(Vec::new());
        }
        let digests: Vec<Digest> = unmatched.iter().map(|b| b.digest.clone()).collect();
        let known = self.meta.known_or_fenced_blobs(&digests).await?;
        let mut old = Vec::new();
        for blob in unmatched {
            if known.contains(&blob.digest) {
                continue;
            }
            let stat = match blob.stat {
                Some(stat) => Some(stat),
                None => self.blobs.stat(&blob.digest).await?,
            };
            if let Some((size, modified)) = stat
                && modified <= cutoff
            {
                old.push((blob.digest, size));
            }
        }
        Ok(old)
    }

    /// Objects in the store the index does not know, older than the grace period.
    async fn collect_orphans(
        &self,
        cutoff: i64,
        options: &GcOptions,
        report: &mut GcReport,
        progress: Progress<'_>,
    ) -> Result<()> {
        let mut seen = 0;
        let mut listing = prefetched(self.blobs.list_blobs_in_order());
        while let Some(chunk) = listing.recv().await {
            let chunk = chunk?;
            seen += chunk.len() as u64;
            let orphans = self.unknown_objects(chunk, cutoff).await?;
            if options.dry_run {
                for (d, size) in &orphans {
                    report.counts.orphans += 1;
                    report.counts.bytes += *size as i64;
                    report.item(
                        "orphan",
                        None,
                        &d.to_string(),
                        *size as i64,
                        "object the index does not know",
                    );
                }
            } else {
                let candidates: Vec<Digest> = orphans.iter().map(|(d, _)| d.clone()).collect();
                let sizes: HashMap<&Digest, i64> =
                    orphans.iter().map(|(d, s)| (d, *s as i64)).collect();
                let claimed = self.meta.claim_orphans(&candidates).await?;
                let claimed = claimed
                    .into_iter()
                    .map(|d| {
                        let size = sizes.get(&d).copied().unwrap_or(0);
                        (d, size)
                    })
                    .collect();
                let swept = self.delete_objects(claimed).await;
                self.settle_sweep(swept, Swept::Orphans, report).await?;
            }
            progress("orphans", seen);
        }
        let mut parts = self.blobs.list("uploads/").try_chunks(BATCH as usize);
        while let Some(chunk) = parts.next().await {
            let chunk = chunk.map_err(|e| e.1)?;
            let old: Vec<_> = chunk.into_iter().filter(|o| o.modified <= cutoff).collect();
            let sessions: Vec<String> = old
                .iter()
                .filter_map(|o| Blobs::session_of_key(&o.key).map(str::to_owned))
                .collect();
            let live = self.meta.live_uploads(&sessions).await?;
            let dead: Vec<_> = old
                .iter()
                .filter(|o| Blobs::session_of_key(&o.key).is_some_and(|s| !live.contains(s)))
                .collect();
            for o in dead {
                report.counts.orphans += 1;
                report.counts.bytes += o.size as i64;
                report.item(
                    "orphan",
                    None,
                    &o.key,
                    o.size as i64,
                    "staged part of no live upload session",
                );
                if !options.dry_run
                    && let Err(e) = self.blobs.delete_parts(std::slice::from_ref(&o.key)).await
                {
                    report.error(format!("deleting {}: {e}", o.key));
                }
            }
        }
        Ok(())
    }
}

/// Reads `listing` ahead in chunks on a task of its own, so that the store is listed while
/// the index is asked about the chunk before (the task ends when the receiver is dropped).
fn prefetched<T: Send + 'static>(
    listing: futures::stream::BoxStream<'static, Result<T>>,
) -> tokio::sync::mpsc::Receiver<Result<Vec<T>>> {
    let (sender, receiver) = tokio::sync::mpsc::channel(2);
    tokio::spawn(async move {
        let mut chunks = listing.try_chunks(BATCH as usize);
        while let Some(chunk) = chunks.next().await {
            if sender.send(chunk.map_err(|e| e.1)).await.is_err() {
                return;
            }
        }
    });
    receiver
}
