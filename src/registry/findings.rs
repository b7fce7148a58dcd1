//! Stored findings: an image's newest successful inventory matched against the advisories
//! and kept, with when each finding was first and last seen and what changed. Written at the
//! end of every successful scan and, for the images an import may concern, after every
//! advisory import (from the stored inventories: no blob is read). Also the registry-wide
//! views: the summary by severity with the most dangerous images, and one advisory (or CVE)
//! with the images it affects and the tags where it is fixed.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::Serialize;

use super::{PackagePlatform, Registry, SeveritySummary};
use crate::{
    error::Result,
    meta::{
        advisories::AdvisoryRow,
        findings::{
            ChangeRow, FindingRow, InventoryImage, InventoryRow, MatchedImage, NewFinding,
            SeverityCounts, StoredFindings,
        },
        repositories::CatalogViewer,
    },
    oci::{Digest, RepoName, Tag},
    scan::osv::Severity,
};

/// Images matched and stored per transaction during a re-match.
const REMATCH_BATCH: usize = 250;

/// Advisory findings already computed for one installed `(ecosystem, name, version)`, so a
/// package shared by many images is matched once in a re-match.
type MatchCache = HashMap<(String, String, String), Vec<super::Finding>>;

/// What a re-match after an import did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rematched {
    /// Images whose inventory was matched again.
    pub images: u64,
    /// Of those, images whose findings changed.
    pub changed: u64,
}

/// A change of an image's findings.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FindingChange {
    /// The advisory.
    pub advisory: String,
    /// The package it names (for Debian, the source package).
    pub package: String,
    /// The installed version.
    pub installed_version: String,
    /// The image manifest the finding is in: the image itself, or a child of the index.
    pub manifest: String,
    /// `new` (the finding appeared) or `resolved` (it went).
    pub change: String,
    /// When (unix seconds).
    pub at: i64,
    /// The listing's cursor after this item.
    #[serde(skip)]
    pub id: i64,
}

impl From<ChangeRow> for FindingChange {
    fn from(r: ChangeRow) -> FindingChange {
        FindingChange {
            advisory: r.advisory_id,
            package: r.package,
            installed_version: r.installed_version,
            manifest: r.child_digest,
            change: r.kind,
            at: r.changed_at,
            id: r.id,
        }
    }
}

/// Images affected and findings, per severity.
#[derive(Debug, Clone, Copy, Default, Serialize, utoipa::ToSchema)]
pub struct VulnerabilityTotals {
    /// Images with at least one finding of each severity.
    pub images: SeveritySummary,
    /// Findings of each severity.
    pub findings: SeveritySummary,
}

/// An image with findings, in the most-dangerous listing.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct VulnerableImage {
    /// Its repository.
    #[schema(value_type = String)]
    pub repository: RepoName,
    /// Its digest.
    #[schema(value_type = String)]
    pub digest: Digest,
    /// The tags pointing at it, in name order.
    #[schema(value_type = Vec<String>)]
    pub tags: Vec<Tag>,
    /// Its findings by severity.
    pub summary: SeveritySummary,
    /// Where the listing continues after this image.
    #[serde(skip)]
    pub cursor: String,
}

/// An image an advisory affects.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AffectedImage {
    /// Its repository.
    #[schema(value_type = String)]
    pub repository: RepoName,
    /// Its digest.
    #[schema(value_type = String)]
    pub digest: Digest,
    /// The tags pointing at it, in name order.
    #[schema(value_type = Vec<String>)]
    pub tags: Vec<Tag>,
    /// The advisory found (one of those the id asked for names).
    pub advisory: String,
    /// The package it names.
    pub package: String,
    /// The installed version.
    pub installed_version: String,
    /// The lowest version above it that fixes it; `null` when none is known.
    pub fixed_version: Option<String>,
    /// The image manifest it is in: the image itself, or a child of the index.
    pub manifest: String,
    /// The manifest id the page continues after.
    #[serde(skip)]
    pub manifest_id: i64,
}

/// The tags of one repository whose image was scanned and has no finding of the advisory.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FixedTags {
    /// The repository.
    #[schema(value_type = String)]
    pub repository: RepoName,
    /// Its tags where the advisory is fixed, in name order.
    #[schema(value_type = Vec<String>)]
    pub tags: Vec<Tag>,
}

/// One advisory (or every advisory a CVE id names) across the registry.
#[derive(Debug, Clone)]
pub struct AdvisoryImpact {
    /// The advisories the id names.
    pub advisories: Vec<AdvisoryRow>,
    /// A page of the images they affect, `n + 1` at most (the extra one says a page follows).
    pub images: Vec<AffectedImage>,
    /// Per repository with an affected image, the tags where they are fixed.
    pub fixed_in: Vec<FixedTags>,
}

impl SeveritySummary {
    fn of_counts(c: SeverityCounts) -> SeveritySummary {
        let n = |v: i64| u64::try_from(v).unwrap_or(0);
        SeveritySummary {
            critical: n(c.critical),
            high: n(c.high),
            medium: n(c.medium),
            low: n(c.low),
            unknown: n(c.unknown),
        }
    }
}

/// The findings summary of an image as stored, for listings; `None` when it was never
/// matched.
pub(super) fn summary_of(counts: Option<SeverityCounts>) -> Option<SeveritySummary> {
    counts.map(SeveritySummary::of_counts)
}

impl Registry {
    /// Matches the newest successful inventory of image `digest` of `repository_id` against
    /// the advisories stored now and stores its findings in place of the previous ones.
    pub(super) async fn refresh_findings(&self, repository_id: i64, digest: &Digest) -> Result<()> {
        if let Some(image) = self.meta.inventory_image(repository_id, digest).await? {
            self.match_and_store(&[image], &mut MatchCache::new())
                .await?;
        }
        Ok(())
    }

    /// After an import that stored `advisory_ids`, naming the packages `names` (ecosystem,
    /// package): re-matches the stored inventories of the images that hold one of those
    /// packages or have a finding of one of those advisories. No blob is read; each
    /// installed package is matched once however many images hold it.
    pub(super) async fn rematch(
        &self,
        advisory_ids: &[String],
        names: &BTreeSet<(String, String)>,
    ) -> Result<Rematched> {
        if advisory_ids.is_empty() {
            return Ok(Rematched::default());
        }
        let mut by_ecosystem: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (ecosystem, name) in names {
            by_ecosystem
                .entry(ecosystem.as_str())
                .or_default()
                .push(name.clone());
        }
        let mut scans = HashSet::new();
        for (ecosystem, names) in by_ecosystem {
            scans.extend(self.meta.scans_with_sources(ecosystem, &names).await?);
        }
        let with_findings = self.meta.manifests_with_findings(advisory_ids).await?;
        let images: Vec<InventoryImage> = self
            .meta
            .inventory_images()
            .await?
            .into_iter()
            .filter(|i| scans.contains(&i.scan_id) || with_findings.contains(&i.manifest_id))
            .collect();
        let mut cache = MatchCache::new();
        let mut done = Rematched::default();
        for batch in images.chunks(REMATCH_BATCH) {
            let stored = self.match_and_store(batch, &mut cache).await?;
            done.changed += stored.changed;
            done.images += batch.len() as u64;
            // Findings that changed may put an image over (or back under) its scanning
            // policy's threshold.
            for image in batch
                .iter()
                .filter(|i| stored.touched.contains(&i.manifest_id))
            {
                let (Some(repo), Ok(digest)) = (
                    self.meta.scan_repository_name(image.repository_id).await?,
                    image.digest.parse::<Digest>(),
                ) else {
                    continue;
                };
                self.apply_scan_policy_logged(&repo, &digest).await;
            }
        }
        Ok(done)
    }

    /// Matches the inventories of `images` (each installed package once, through `cache`)
    /// and stores their findings; returns how many images' findings changed.
    async fn match_and_store(
        &self,
        images: &[InventoryImage],
        cache: &mut MatchCache,
    ) -> Result<StoredFindings> {
        let scan_ids: Vec<i64> = images.iter().map(|i| i.scan_id).collect();
        let rows = self.meta.inventory_rows(&scan_ids).await?;
        let mut wanted: BTreeMap<&str, BTreeSet<(String, String)>> = BTreeMap::new();
        for r in &rows {
            let key = (
                r.ecosystem.clone(),
                r.source_name.clone(),
                r.source_version.clone(),
            );
            if !cache.contains_key(&key) {
                wanted
                    .entry(r.ecosystem.as_str())
                    .or_default()
                    .insert((r.source_name.clone(), r.source_version.clone()));
            }
        }
        for (ecosystem, installed) in wanted {
            let installed: Vec<(String, String)> = installed.into_iter().collect();
            for (name, version) in &installed {
                cache.insert(
                    (ecosystem.to_owned(), name.clone(), version.clone()),
                    Vec::new(),
                );
            }
            for finding in self.match_packages(ecosystem, &installed).await? {
                let key = (
                    ecosystem.to_owned(),
                    finding.package.clone(),
                    finding.installed_version.clone(),
                );
                cache.entry(key).or_default().push(finding);
            }
        }
        let mut by_scan: HashMap<i64, Vec<&InventoryRow>> = HashMap::new();
        for r in &rows {
            by_scan.entry(r.scan_id).or_default().push(r);
        }
        let matched: Vec<MatchedImage> = images
            .iter()
            .map(|image| {
                let rows = by_scan.remove(&image.scan_id).unwrap_or_default();
                findings_of(image, &rows, cache)
            })
            .collect();
        self.meta.store_findings(&matched).await
    }

    /// The stored findings of image `digest` of `repository_id`: its own (matched now if its
    /// newest successful scan was not matched yet), or, for a child never scanned on its
    /// own, those its indexes' scans found in it. `None` when neither was scanned.
    pub(super) async fn stored_findings(
        &self,
        repository_id: i64,
        digest: &Digest,
    ) -> Result<Option<Vec<FindingRow>>> {
        if let Some(image) = self.meta.inventory_image(repository_id, digest).await? {
            if self.meta.matched_scan(image.manifest_id).await? != Some(image.scan_id) {
                self.match_and_store(std::slice::from_ref(&image), &mut MatchCache::new())
                    .await?;
            }
            return Ok(Some(self.meta.image_findings(image.manifest_id).await?));
        }
        if !self.meta.child_matched(repository_id, digest).await? {
            return Ok(None);
        }
        // The same child under several indexes: each finding once, seen over all of them.
        let mut merged: BTreeMap<(String, String, String), FindingRow> = BTreeMap::new();
        for row in self.meta.child_findings(repository_id, digest).await? {
            let key = (
                row.advisory_id.clone(),
                row.package.clone(),
                row.installed_version.clone(),
            );
            match merged.get_mut(&key) {
                Some(kept) => {
                    kept.first_seen = kept.first_seen.min(row.first_seen);
                    kept.last_seen = kept.last_seen.max(row.last_seen);
                }
                None => {
                    merged.insert(key, row);
                }
            }
        }
        Ok(Some(merged.into_values().collect()))
    }

    /// The changes of image `digest`'s findings in `repo`, newest first: those with an id
    /// below `before` (0: from the newest), `limit` at most. `None` when it was never scanned
    /// (on its own or through an index).
    pub async fn finding_changes(
        &self,
        repo: &RepoName,
        digest: &Digest,
        before: i64,
        limit: u32,
    ) -> Result<Option<Vec<FindingChange>>> {
        let repository_id = self.image_repository(repo, digest).await?;
        let limit = i64::from(limit);
        let rows = match self.meta.inventory_image(repository_id, digest).await? {
            Some(image) => {
                self.meta
                    .finding_changes(image.manifest_id, None, before, limit)
                    .await?
            }
            None if self.meta.child_matched(repository_id, digest).await? => {
                self.meta
                    .finding_changes(0, Some((repository_id, digest)), before, limit)
                    .await?
            }
            None => return Ok(None),
        };
        Ok(Some(rows.into_iter().map(FindingChange::from).collect()))
    }

    /// The registry-wide totals over the repositories `viewer` may read in `namespace` (""
    /// for all), and a page of its images with findings, most dangerous first: after
    /// `after` (a previous page's cursor), `n + 1` at most.
    pub async fn vulnerability_overview(
        &self,
        viewer: &CatalogViewer<'_>,
        namespace: &str,
        after: Option<(SeverityCounts, i64)>,
        n: u32,
    ) -> Result<(VulnerabilityTotals, Vec<VulnerableImage>)> {
        let t = self.meta.vulnerability_totals(viewer, namespace).await?;
        let totals = VulnerabilityTotals {
            images: SeveritySummary::of_counts(SeverityCounts {
                critical: t.images_critical,
                high: t.images_high,
                medium: t.images_medium,
                low: t.images_low,
                unknown: t.images_unknown,
            }),
            findings: SeveritySummary::of_counts(SeverityCounts {
                critical: t.critical,
                high: t.high,
                medium: t.medium,
                low: t.low,
                unknown: t.unknown,
            }),
        };
        let rows = self
            .meta
            .most_vulnerable(viewer, namespace, after, n)
            .await?;
        let ids: Vec<i64> = rows.iter().map(|r| r.manifest_id).collect();
        let mut tags = self.meta.tags_by_manifest(&ids).await?;
        let images = rows
            .into_iter()
            .map(|r| {
                let c = r.counts;
                VulnerableImage {
                    cursor: format!(
                        "{}.{}.{}.{}.{}.{}",
                        c.critical, c.high, c.medium, c.low, c.unknown, r.manifest_id
                    ),
                    repository: r.repository,
                    digest: r.digest,
                    tags: tags.remove(&r.manifest_id).unwrap_or_default(),
                    summary: SeveritySummary::of_counts(c),
                }
            })
            .collect();
        Ok((totals, images))
    }

    /// Advisory `id` (or every advisory naming `id` as an alias, for a CVE id) across the
    /// repositories `viewer` may read: the images affected (those of the `n + 1` first
    /// images after manifest `after`) and, per repository, the tags where it is fixed.
    /// `None` when no stored advisory is or names `id`.
    pub async fn advisory_impact(
        &self,
        viewer: &CatalogViewer<'_>,
        id: &str,
        after: i64,
        n: u32,
    ) -> Result<Option<AdvisoryImpact>> {
        let ids = self.meta.advisories_named(id).await?;
        if ids.is_empty() {
            return Ok(None);
        }
        let mut advisories = Vec::new();
        for id in &ids {
            advisories.extend(self.meta.advisory(id).await?);
        }
        let rows = self.meta.affected_images(viewer, &ids, after, n).await?;
        let manifest_ids: Vec<i64> = rows.iter().map(|r| r.manifest_id).collect();
        let tags = self.meta.tags_by_manifest(&manifest_ids).await?;
        let images = rows
            .into_iter()
            .map(|r| AffectedImage {
                tags: tags.get(&r.manifest_id).cloned().unwrap_or_default(),
                repository: r.repository,
                digest: r.digest,
                advisory: r.advisory_id,
                package: r.package,
                installed_version: r.installed_version,
                fixed_version: r.fixed_version,
                manifest: r.child_digest,
                manifest_id: r.manifest_id,
            })
            .collect();
        let mut fixed_in: Vec<FixedTags> = Vec::new();
        for row in self.meta.fixed_tags(viewer, &ids).await? {
            match fixed_in.last_mut() {
                Some(last) if last.repository == row.repository => last.tags.push(row.tag),
                _ => fixed_in.push(FixedTags {
                    repository: row.repository,
                    tags: vec![row.tag],
                }),
            }
        }
        Ok(Some(AdvisoryImpact {
            advisories,
            images,
            fixed_in,
        }))
    }
}

/// The findings of `image` from its inventory `rows` (in inventory order) and the matches in
/// `cache`. Per child, each installed source package and version counts once, naming the
/// layer and platform of its first binary package, as the inventory lists them.
fn findings_of(image: &InventoryImage, rows: &[&InventoryRow], cache: &MatchCache) -> MatchedImage {
    let mut children: Vec<String> = Vec::new();
    let mut seen: HashSet<(&str, &str, &str, &str)> = HashSet::new();
    let mut keys: HashSet<(String, String, String, String)> = HashSet::new();
    let mut findings = Vec::new();
    for r in rows {
        if children.last() != Some(&r.child_digest) && !children.contains(&r.child_digest) {
            children.push(r.child_digest.clone());
        }
        let installed = (
            r.child_digest.as_str(),
            r.ecosystem.as_str(),
            r.source_name.as_str(),
            r.source_version.as_str(),
        );
        if !seen.insert(installed) {
            continue;
        }
        let key = (
            r.ecosystem.clone(),
            r.source_name.clone(),
            r.source_version.clone(),
        );
        for f in cache.get(&key).into_iter().flatten() {
            let unique = (
                r.child_digest.clone(),
                f.id.clone(),
                f.package.clone(),
                f.installed_version.clone(),
            );
            if !keys.insert(unique) {
                continue;
            }
            findings.push(NewFinding {
                child_digest: r.child_digest.clone(),
                advisory_id: f.id.clone(),
                package: f.package.clone(),
                installed_version: f.installed_version.clone(),
                fixed_version: f.fixed_version.clone(),
                severity: f.severity.as_str().to_owned(),
                layer: r.layer.clone(),
                os: r.os.clone(),
                architecture: r.architecture.clone(),
                variant: r.variant.clone(),
            });
        }
    }
    if children.is_empty() {
        children.push(image.digest.clone());
    }
    MatchedImage {
        manifest_id: image.manifest_id,
        repository_id: image.repository_id,
        digest: image.digest.clone(),
        scan_id: image.scan_id,
        children,
        findings,
    }
}

/// The platform a stored finding names; `None` for an image's own.
pub(super) fn platform_of(r: &FindingRow) -> Option<PackagePlatform> {
    (r.os.is_some() || r.architecture.is_some()).then(|| PackagePlatform {
        os: r.os.clone(),
        architecture: r.architecture.clone(),
        variant: r.variant.clone(),
    })
}

/// The severity a stored finding names.
pub(super) fn severity_of(r: &FindingRow) -> Severity {
    Severity::parse(&r.severity).unwrap_or(Severity::Unknown)
}
