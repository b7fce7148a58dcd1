//! The vulnerabilities of an image: the findings stored for its newest successful scan's
//! inventory (matched at the end of the scan, and again after every advisory import that
//! concerns it, without reading a blob). For an index, each child's findings, naming its
//! platform; a child pulled by digest has those its index's scan found in it. The same view
//! of a report another scanner wrote, imported for the image ([`super::reports`]).

use std::collections::HashMap;

use serde::Serialize;

use super::{
    PackagePlatform, Registry, SuppressedVulnerability,
    findings::{platform_of, severity_of},
};
use crate::{
    error::Result,
    meta::findings::FindingRow,
    oci::{Digest, RepoName, Tag},
    scan::{osv::Severity, reports::Scanner},
};

/// An advisory affecting a package of an image.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Vulnerability {
    /// The advisory's id.
    pub id: String,
    /// Its other ids (the CVE ids of a distribution's advisory).
    pub aliases: Vec<String>,
    /// `critical`, `high`, `medium`, `low` or `unknown`.
    #[schema(value_type = String)]
    pub severity: Severity,
    /// The package the advisory names (for Debian, the source package).
    pub package: String,
    /// The version installed (for Debian, the source version).
    pub installed_version: String,
    /// The lowest version above it that fixes it; `null` when no fix is known.
    pub fixed_version: Option<String>,
    /// The digest of the layer that brought the installed version in (empty when an imported
    /// report names none).
    pub layer: String,
    /// For an index, the platform of the child it was found in; `null` for an image.
    pub platform: Option<PackagePlatform>,
    /// When it was first found (unix seconds): kept across rescans and re-imports.
    pub first_seen: i64,
    /// When it was last confirmed, by a scan or a re-match after an import (unix seconds).
    pub last_seen: i64,
}

impl From<FindingRow> for Vulnerability {
    fn from(r: FindingRow) -> Vulnerability {
        Vulnerability {
            platform: platform_of(&r),
            severity: severity_of(&r),
            aliases: serde_json::from_str(&r.aliases).unwrap_or_default(),
            id: r.advisory_id,
            package: r.package,
            installed_version: r.installed_version,
            fixed_version: r.fixed_version,
            layer: r.layer,
            first_seen: r.first_seen,
            last_seen: r.last_seen,
        }
    }
}

/// How many findings there are of each severity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SeveritySummary {
    /// Critical findings.
    pub critical: u64,
    /// High.
    pub high: u64,
    /// Medium.
    pub medium: u64,
    /// Low.
    pub low: u64,
    /// Without a usable severity.
    pub unknown: u64,
}

impl SeveritySummary {
    pub(super) fn count(&mut self, severity: Severity) {
        let level = match severity {
            Severity::Critical => &mut self.critical,
            Severity::High => &mut self.high,
            Severity::Medium => &mut self.medium,
            Severity::Low => &mut self.low,
            Severity::Unknown => &mut self.unknown,
        };
        *level += 1;
    }
}

/// What `GET …/images/{digest}/vulnerabilities` answers.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ImageVulnerabilities {
    /// The findings, most severe first, then by advisory and package.
    pub items: Vec<Vulnerability>,
    /// Their count by severity.
    pub summary: SeveritySummary,
    /// Findings that do not count (an allowlist entry or a VEX statement), with why; left
    /// out of `items` and `summary`.
    pub suppressed: Vec<SuppressedVulnerability>,
}

/// Which findings of an image a listing shows (the summary counts them all).
#[derive(Debug, Clone, Copy, Default)]
pub struct VulnerabilityFilter {
    /// Only findings of this severity or above.
    pub min_severity: Option<Severity>,
    /// Only findings with a known fix.
    pub fixable: bool,
}

impl VulnerabilityFilter {
    /// Whether `item` passes.
    pub fn admits(&self, item: &Vulnerability) -> bool {
        self.min_severity.is_none_or(|min| item.severity >= min)
            && (!self.fixable || item.fixed_version.is_some())
    }
}

/// Tags shown per advisory where it is fixed.
const FIXED_TAGS_SHOWN: u32 = 5;

/// The tags of a repository where an advisory is fixed: the first few, and how many.
#[derive(Debug, Clone, Default)]
pub struct FixedIn {
    /// The first tags, in name order.
    pub tags: Vec<Tag>,
    /// How many tags there are.
    pub count: i64,
}

impl Registry {
    /// For each of `advisory_ids`, the tags of `repo` whose image was scanned and has no
    /// finding of it (where it is fixed): the first five and their number. One query
    /// whatever the number of advisories or tags (per 500 advisories).
    pub async fn fixed_in_repository(
        &self,
        repo: &RepoName,
        advisory_ids: &[&str],
    ) -> Result<HashMap<String, FixedIn>> {
        let repository_id = self.existing_repository(repo).await?;
        let mut out: HashMap<String, FixedIn> = HashMap::new();
        for row in self
            .meta
            .fixed_tags_in_repository(repository_id, advisory_ids, FIXED_TAGS_SHOWN)
            .await?
        {
            let entry = out.entry(row.advisory_id).or_default();
            entry.count = row.fixed_count;
            entry.tags.push(row.tag);
        }
        Ok(out)
    }

    /// The findings of image `digest` in `repo` as stored for its newest successful scan
    /// (matched against the advisories stored since), or with `scanner`, as the newest
    /// report of that scanner imported for it says; `None` when there is neither (nor, for an
    /// index's child, an index scanned with it). Allowlist entries and VEX statements
    /// suppress findings of either.
    pub async fn image_vulnerabilities(
        &self,
        repo: &RepoName,
        digest: &Digest,
        scanner: Option<Scanner>,
    ) -> Result<Option<ImageVulnerabilities>> {
        let rows = match scanner {
            None => {
                let repository_id = self.image_repository(repo, digest).await?;
                self.stored_findings(repository_id, digest).await?
            }
            Some(scanner) => self.imported_findings(repo, digest, scanner).await?,
        };
        let Some(rows) = rows else {
            return Ok(None);
        };
        let mut items: Vec<Vulnerability> = rows.into_iter().map(Vulnerability::from).collect();
        items.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then_with(|| a.id.cmp(&b.id))
                .then_with(|| a.package.cmp(&b.package))
                .then_with(|| a.installed_version.cmp(&b.installed_version))
                .then_with(|| a.layer.cmp(&b.layer))
        });
        let (items, suppressed) = self.suppressions(repo, digest).await?.split(items);
        let mut summary = SeveritySummary::default();
        for item in &items {
            summary.count(item.severity);
        }
        Ok(Some(ImageVulnerabilities {
            items,
            summary,
            suppressed,
        }))
    }
}
