//! Advisories: importing OSV records (from a request body or, offline, from a file,
//! directory or zip) into the index, and reading them back.
//!
//! Records are read on a blocking thread ([`crate::scan::osv`] works on bytes and files) and
//! handed over a bounded channel to be stored in batches, so an import of a whole
//! ecosystem's dump holds one batch in memory, not the dump.

use std::{
    cmp::Ordering,
    collections::{BTreeMap, BTreeSet, HashMap},
    path::PathBuf,
};

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::mpsc;

use super::Registry;
use crate::{
    error::{Error, Result},
    meta::advisories::{AdvisoryPackage, AdvisoryRow, NewAdvisory},
    scan::{
        advisory_sources::{self, SourceError},
        matching,
        osv::{self, Item, Record, Rejected, Severity},
        versions::{self, Kind},
    },
};

pub use crate::meta::advisories::AffectedEntry;

/// Records stored per transaction, at most.
const BATCH: usize = 500;
/// Bytes (roughly) of the records of one transaction, at most.
const BATCH_BYTES: usize = 16 << 20;
/// Records read ahead of the one being stored (each under the 4 MiB cap of a record).
const READ_AHEAD: usize = 16;
/// Refused records listed one by one in a report; the others are only counted.
pub const REJECTED_LISTED: usize = 1000;

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ImportReport {
    /// Records stored (new, or newer than the stored record of their id).
    pub imported: u64,
    /// Records not newer than the stored one, left as they were.
    pub unchanged: u64,
    /// Refused records or entries, with the reason (the first 1000).
    #[schema(value_type = Vec<Object>)]
    pub rejected: Vec<Rejected>,
    /// How many were refused in all.
    pub rejected_count: u64,
    /// Scanned images whose stored inventory was matched again (those holding a package a
    /// stored record names, or with a finding of one); no blob is read.
    pub rematched_images: u64,
    /// Of those, images whose findings changed (new or resolved).
    pub changed_images: u64,
}

/// What the records stored by an import concern: their ids and the packages they name.
#[derive(Default)]
struct Touched {
    ids: Vec<String>,
    names: BTreeSet<(String, String)>,
}

/// How a body or a path is read.
enum Source {
    Json(Bytes),
    Zip(Bytes),
    Path(PathBuf),
}

/// An advisory as shown: the stored record with the packages it affects.
#[derive(Debug, Clone, PartialEq)]
pub struct Advisory {
    /// The stored record.
    pub record: AdvisoryRow,
    /// The packages it affects, in the record's order.
    pub packages: Vec<AdvisoryPackage>,
}

/// An installed package an advisory affects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Finding {
    /// The advisory's id.
    pub id: String,
    /// Its other ids (CVE ids, for a distribution's own advisories).
    pub aliases: Vec<String>,
    /// Its severity.
    #[schema(value_type = String)]
    pub severity: Severity,
    /// The package name the advisory names (for Debian, the source package).
    pub package: String,
    /// The installed version matched (for Debian, the source version).
    pub installed_version: String,
    /// The lowest version above it that fixes it, when one is known.
    pub fixed_version: Option<String>,
}

/// `time` in the stored form: UTC with nanoseconds, so text order is time order.
fn normalised(time: time::OffsetDateTime) -> String {
    let t = time.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.nanosecond()
    )
}

/// Roughly the bytes `advisory` holds, to bound a batch by memory as well as by count.
fn weight(advisory: &NewAdvisory) -> usize {
    let events: usize = advisory
        .packages
        .iter()
        .flat_map(|p| &p.ranges)
        .flat_map(|r| &r.events)
        .map(|e| e.version().len() + 32)
        .sum();
    let listed: usize = advisory
        .packages
        .iter()
        .flat_map(|p| &p.versions)
        .chain(&advisory.aliases)
        .map(|v| v.len() + 24)
        .sum();
    let names: usize = advisory
        .packages
        .iter()
        .map(|p| p.ecosystem.len() + p.package.len() + 128)
        .sum();
    256 + advisory.summary.as_ref().map_or(0, String::len) + events + listed + names
}

/// The row to store for a record that passed [`Record::check`]. A withdrawn record is kept
/// without packages, so it no longer matches anything.
fn prepare(record: Record) -> NewAdvisory {
    let severity = record.severity().as_str().to_owned();
    let modified = record
        .modified_at()
        .map(normalised)
        .unwrap_or_else(|| record.modified.clone());
    let published = record
        .published
        .as_deref()
        .and_then(osv::parse_time)
        .map(normalised);
    let packages = if record.withdrawn.is_some() {
        Vec::new()
    } else {
        record
            .affected
            .iter()
            .filter_map(|affected| {
                let package = affected.package.as_ref()?;
                Some(AdvisoryPackage {
                    advisory_id: record.id.clone(),
                    ecosystem: package.ecosystem.clone(),
                    package: package.name.clone(),
                    purl: package.purl.clone(),
                    ranges: affected.ranges.clone(),
                    versions: affected.versions.clone(),
                })
            })
            .collect()
    };
    NewAdvisory {
        id: record.id,
        aliases: record.aliases,
        summary: record.summary,
        severity,
        published,
        modified,
        packages,
    }
}

impl Registry {
    /// Imports a request body: one OSV record or a JSON array of them, or (`zip`) a zip of
    /// such files. A body that is neither JSON nor a zip is a bad request.
    pub async fn import_advisories(&self, body: Bytes, zip: bool) -> Result<ImportReport> {
        self.import(if zip {
            Source::Zip(body)
        } else {
            Source::Json(body)
        })
        .await
    }

    /// Imports a file (JSON or zip) or every `*.json`/`*.zip` under a directory.
    pub async fn import_advisories_from(&self, path: PathBuf) -> Result<ImportReport> {
        self.import(Source::Path(path)).await
    }

    async fn import(&self, source: Source) -> Result<ImportReport> {
        let (sender, mut receiver) = mpsc::channel::<Item>(READ_AHEAD);
        // Records of feeds that date nothing are as new as this import.
        let undated = normalised(self.clock.now_utc());
        let reader = tokio::task::spawn_blocking(move || {
            let mut each = |item| {
                // The receiver only goes away when storing failed; that error is reported.
                let _ = sender.blocking_send(item);
            };
            match source {
                Source::Json(bytes) => {
                    advisory_sources::read_json(&bytes, "body", &undated, &mut each)
                }
                Source::Zip(bytes) => advisory_sources::read_zip(
                    std::io::Cursor::new(bytes),
                    "body",
                    &undated,
                    &mut each,
                ),
                Source::Path(path) => advisory_sources::read_path(&path, &undated, &mut each),
            }
        });
        let mut report = ImportReport::default();
        let mut batch = Vec::with_capacity(BATCH);
        let mut batch_bytes = 0;
        let mut stored = Ok(());
        let mut touched = Touched::default();
        while let Some(item) = receiver.recv().await {
            match item {
                Item::Record(record) => {
                    let advisory = prepare(*record);
                    batch_bytes += weight(&advisory);
                    batch.push(advisory);
                }
                Item::Rejected(rejected) => {
                    report.rejected_count += 1;
                    if report.rejected.len() < REJECTED_LISTED {
                        report.rejected.push(rejected);
                    }
                }
            }
            if batch.len() >= BATCH || batch_bytes >= BATCH_BYTES {
                batch_bytes = 0;
                stored = self.store(&mut batch, &mut report, &mut touched).await;
                if stored.is_err() {
                    break;
                }
            }
        }
        drop(receiver);
        let read = reader
            .await
            .map_err(|e| Error::Internal(anyhow::anyhow!("reading advisories: {e}")))?;
        stored?;
        self.store(&mut batch, &mut report, &mut touched).await?;
        // What was stored stays stored when the source fails later: re-matched either way.
        let started = std::time::Instant::now();
        let rematched = self.rematch(&touched.ids, &touched.names).await?;
        tracing::info!(
            images = rematched.images,
            changed = rematched.changed,
            ms = started.elapsed().as_millis() as u64,
            "stored inventories re-matched after an advisory import"
        );
        report.rematched_images = rematched.images;
        report.changed_images = rematched.changed;
        match read {
            Ok(()) => Ok(report),
            Err(e @ (SourceError::NotJson(..) | SourceError::BadZip(..))) => {
                Err(Error::BadRequest(e.to_string()))
            }
            Err(e @ SourceError::Io(..)) => Err(Error::Internal(anyhow::anyhow!(e))),
        }
    }

    async fn store(
        &self,
        batch: &mut Vec<NewAdvisory>,
        report: &mut ImportReport,
        touched: &mut Touched,
    ) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let done = self.meta.upsert_advisories(batch).await?;
        report.imported += done.imported;
        report.unchanged += done.unchanged;
        let stored: BTreeSet<&str> = done.stored.iter().map(String::as_str).collect();
        for advisory in batch.iter().filter(|a| stored.contains(a.id.as_str())) {
            for p in &advisory.packages {
                touched
                    .names
                    .insert((p.ecosystem.clone(), p.package.clone()));
            }
        }
        touched.ids.extend(done.stored);
        batch.clear();
        Ok(())
    }

    /// The advisory `id` with the packages it affects.
    pub async fn advisory(&self, id: &str) -> Result<Option<Advisory>> {
        let Some(record) = self.meta.advisory(id).await? else {
            return Ok(None);
        };
        let packages = self.meta.advisory_packages(id).await?;
        Ok(Some(Advisory { record, packages }))
    }

    /// Advisories after id `after`, `n` at most (one more than a page, to know whether
    /// another follows), filtered by the ecosystem and package they affect.
    pub async fn advisories(
        &self,
        ecosystem: Option<&str>,
        package: Option<&str>,
        after: &str,
        n: u32,
    ) -> Result<Vec<AdvisoryRow>> {
        self.meta
            .list_advisories(ecosystem, package, after, n)
            .await
    }

    /// Every stored entry affecting one of `package_names` in `ecosystem`, for matching an
    /// inventory (for Debian, its source package names).
    pub async fn advisories_for(
        &self,
        ecosystem: &str,
        package_names: &[String],
    ) -> Result<Vec<AffectedEntry>> {
        self.meta.advisories_for(ecosystem, package_names).await
    }

    /// The stored advisories affecting `installed` packages of `ecosystem`, given as
    /// `(name, version)` (for Debian, the source package and source version), by advisory id
    /// then package. None for an ecosystem whose version order is not implemented; a version
    /// the order refuses matches nothing. An advisory with several entries for one package
    /// is one finding, with the lowest fix.
    pub async fn match_packages(
        &self,
        ecosystem: &str,
        installed: &[(String, String)],
    ) -> Result<Vec<Finding>> {
        let Some(kind) = Kind::of_ecosystem(ecosystem) else {
            return Ok(Vec::new());
        };
        let mut names: Vec<String> = installed.iter().map(|(name, _)| name.clone()).collect();
        names.sort();
        names.dedup();
        let mut by_package: HashMap<String, Vec<AffectedEntry>> = HashMap::new();
        for entry in self.meta.advisories_for(ecosystem, &names).await? {
            by_package
                .entry(entry.package.clone())
                .or_default()
                .push(entry);
        }
        let mut findings: BTreeMap<(String, String, String), Finding> = BTreeMap::new();
        for (name, version) in installed {
            for entry in by_package.get(name).into_iter().flatten() {
                let Some(fix) = matching::affected(kind, version, &entry.ranges, &entry.versions)
                else {
                    continue;
                };
                let key = (entry.advisory_id.clone(), name.clone(), version.clone());
                let lower = |found: &Finding| match (&fix.fixed, &found.fixed_version) {
                    (Some(new), Some(old)) => {
                        versions::compare(kind, new, old) == Some(Ordering::Less)
                    }
                    (Some(_), None) => true,
                    _ => false,
                };
                if findings.get(&key).is_some_and(|found| !lower(found)) {
                    continue;
                }
                findings.insert(
                    key,
                    Finding {
                        id: entry.advisory_id.clone(),
                        aliases: entry.aliases.clone(),
                        severity: Severity::parse(&entry.severity).unwrap_or(Severity::Unknown),
                        package: name.clone(),
                        installed_version: version.clone(),
                        fixed_version: fix.fixed,
                    },
                );
            }
        }
        Ok(findings.into_values().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modified_times_normalise_to_one_sortable_form() {
        let at = |t: &str| normalised(osv::parse_time(t).unwrap());
        assert_eq!(at("2024-05-01T00:00:00Z"), "2024-05-01T00:00:00.000000000Z");
        assert_eq!(
            at("2024-05-01T02:00:00.5+02:00"),
            "2024-05-01T00:00:00.500000000Z"
        );
        assert!(at("2024-05-01T00:00:00.1Z") > at("2024-05-01T00:00:00Z"));
    }
}
