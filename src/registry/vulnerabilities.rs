//! The vulnerabilities of an image: its inventory (as its newest successful scan found it)
//! matched against the stored advisories when asked, so an advisory imported since the scan
//! counts at once without reading a blob. For an index, each child's findings, naming its
//! platform.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{PackagePlatform, Registry, SuppressedVulnerability};
use crate::{
    error::Result,
    meta::scans::PackageRow,
    oci::{Digest, RepoName},
    scan::osv::Severity,
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
    /// The digest of the layer that brought the installed version in.
    pub layer: String,
    /// For an index, the platform of the child it was found in; `null` for an image.
    pub platform: Option<PackagePlatform>,
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
    fn count(&mut self, severity: Severity) {
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

impl Registry {
    /// The findings of image `digest` in `repo` against the advisories stored now; `None`
    /// when the image has no successful scan.
    pub async fn image_vulnerabilities(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<ImageVulnerabilities>> {
        let repository_id = self.image_repository(repo, digest).await?;
        let Some(packages) = self.meta.image_packages(repository_id, digest).await? else {
            return Ok(None);
        };
        // Advisories are matched per child (its platform) and ecosystem, on the source package
        // and version; the binary packages built from one source share its findings, which
        // name the layer of the first of them in the inventory.
        let mut groups: BTreeMap<(Digest, String), Vec<&PackageRow>> = BTreeMap::new();
        for p in &packages {
            groups
                .entry((p.child_digest.clone(), p.ecosystem.clone()))
                .or_default()
                .push(p);
        }
        let mut items = Vec::new();
        for ((_, ecosystem), rows) in groups {
            let mut installed: Vec<(String, String)> = rows
                .iter()
                .map(|p| (p.source_name.clone(), p.source_version.clone()))
                .collect();
            installed.sort();
            installed.dedup();
            for finding in self.match_packages(&ecosystem, &installed).await? {
                let from = rows.iter().find(|p| {
                    p.source_name == finding.package
                        && p.source_version == finding.installed_version
                });
                let Some(from) = from else { continue };
                items.push(Vulnerability {
                    id: finding.id,
                    aliases: finding.aliases,
                    severity: finding.severity,
                    package: finding.package,
                    installed_version: finding.installed_version,
                    fixed_version: finding.fixed_version,
                    layer: from.layer.clone(),
                    platform: PackagePlatform::of(from),
                });
            }
        }
        items.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then_with(|| a.id.cmp(&b.id))
                .then_with(|| a.package.cmp(&b.package))
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
