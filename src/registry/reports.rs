//! Reports of other scanners imported for an image, so teams who already run Trivy or Grype
//! see their findings beside Berth's: the report is read ([`crate::scan::reports`]), checked
//! to be about this image (or one of the index's images, which it then names), each
//! finding's layer mapped from the report's `DiffID` to the layer blob through the image's
//! config, and the whole stored as one import of that scanner. Nothing is stored for a report
//! that fails a check. Imported findings are shown, filtered and suppressed (allowlist, VEX)
//! like Berth's own, under `?scanner=`; the scanning policy judges Berth's own findings.

use futures::TryStreamExt;
use serde::{Deserialize, Serialize};

use super::{PackagePlatform, Registry, SeveritySummary, scans::Target};
use crate::{
    error::{Error, Result},
    meta::{
        manifests::StoredManifest,
        reports::{NewReport, NewReportFinding, ReportRow},
    },
    oci::{Digest, RepoName},
    scan::{
        osv::Severity,
        reports::{LayerRef, Report, ReportFinding, Scanner},
    },
};

/// The largest image config read to map `DiffID`s to layers.
const CONFIG_READ_MAX: usize = 8 * 1024 * 1024;

/// One imported report.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ImportedReport {
    /// Its id (the listing's cursor).
    pub id: i64,
    /// `trivy` or `grype`.
    pub scanner: String,
    /// The scanner's version, when the report says.
    pub scanner_version: Option<String>,
    /// The image manifest the report is about: the image, or the child of the index it was
    /// imported for.
    pub image: String,
    /// That child's platform; `null` for an image.
    pub platform: Option<PackagePlatform>,
    /// When it was imported (unix seconds).
    pub imported_at: i64,
    /// Who imported it.
    pub imported_by: String,
    /// How many findings it holds.
    pub findings: u64,
    /// Its findings by severity, as the scanner judged them (before any suppression).
    pub summary: SeveritySummary,
}

impl From<ReportRow> for ImportedReport {
    fn from(r: ReportRow) -> ImportedReport {
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        let summary = SeveritySummary {
            critical: count(r.critical),
            high: count(r.high),
            medium: count(r.medium),
            low: count(r.low),
            unknown: count(r.unknown),
        };
        ImportedReport {
            id: r.id,
            platform: (r.os.is_some() || r.architecture.is_some()).then_some(PackagePlatform {
                os: r.os,
                architecture: r.architecture,
                variant: r.variant,
            }),
            findings: summary.critical
                + summary.high
                + summary.medium
                + summary.low
                + summary.unknown,
            summary,
            scanner: r.scanner,
            scanner_version: r.scanner_version,
            image: r.child_digest,
            imported_at: r.imported_at,
            imported_by: r.imported_by,
        }
    }
}

/// The few fields of an image config read here.
#[derive(Deserialize, Default)]
struct ConfigRootfs {
    #[serde(default)]
    rootfs: RootfsDiffs,
}

#[derive(Deserialize, Default)]
struct RootfsDiffs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

impl Registry {
    /// Imports `body`, a Trivy or Grype JSON report, for image `digest` of `repo`, as
    /// `imported_by`. `BadRequest` says why a report is refused (not one of those, of another
    /// image, naming a layer the image does not have…); nothing is stored then.
    pub async fn import_report(
        &self,
        repo: &RepoName,
        digest: &Digest,
        body: &[u8],
        imported_by: &str,
    ) -> Result<ImportedReport> {
        let manifest = self.image_row(repo, digest).await?;
        let report = crate::scan::reports::parse(body).map_err(Error::BadRequest)?;
        let targets = match self.scan_targets(repo, digest).await {
            Ok(targets) => targets,
            Err(Error::ManifestInvalid(why)) => {
                return Err(Error::BadRequest(format!(
                    "{repo}@{digest} takes no vulnerability report: {why}"
                )));
            }
            Err(e) => return Err(e),
        };
        let target = report_target(&report, digest, &targets)?;
        let diff_ids = if report.findings.iter().any(|f| f.layer.diff_id.is_some()) {
            self.diff_ids(target).await?
        } else {
            Vec::new()
        };
        let mut counts = [0i64; 5];
        let mut findings = Vec::with_capacity(report.findings.len());
        for (i, found) in report.findings.iter().enumerate() {
            let layer = layer_of(&found.layer, target, &diff_ids).map_err(|why| {
                Error::BadRequest(format!(
                    "finding {i} ({} in {}): {why}",
                    found.id, found.package
                ))
            })?;
            counts[severity_slot(found.severity)] += 1;
            findings.push(stored_finding(found, layer));
        }
        let platform = target.platform.as_ref().map(|p| {
            (
                p.os.as_deref(),
                p.architecture.as_deref(),
                p.variant.as_deref(),
            )
        });
        let new = NewReport {
            manifest_id: manifest.id,
            repository_id: manifest.repository_id,
            child_digest: &target.digest,
            platform,
            scanner: report.scanner.as_str(),
            scanner_version: report.scanner_version.as_deref(),
            imported_by,
            counts,
        };
        let id = self.meta.record_report(&new, &findings).await?;
        tracing::info!(%repo, %digest, report = id, scanner = report.scanner.as_str(), findings = findings.len(), "scan report imported");
        let mut rows = self
            .meta
            .imported_reports(manifest.repository_id, manifest.id, digest, id + 1, 1)
            .await?;
        rows.pop()
            .map(ImportedReport::from)
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("imported report {id} not found")))
    }

    /// The reports imported for image `digest` of `repo` (or for an index, naming it),
    /// newest first, with an id below `before` (0: from the newest); at most `limit`.
    pub async fn imported_reports(
        &self,
        repo: &RepoName,
        digest: &Digest,
        before: i64,
        limit: u32,
    ) -> Result<Vec<ImportedReport>> {
        let manifest = self.image_row(repo, digest).await?;
        Ok(self
            .meta
            .imported_reports(
                manifest.repository_id,
                manifest.id,
                digest,
                before,
                i64::from(limit),
            )
            .await?
            .into_iter()
            .map(ImportedReport::from)
            .collect())
    }

    /// The newest report of each scanner for each image manifest `digest` covers.
    pub async fn newest_reports(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Vec<ImportedReport>> {
        let manifest = self.image_row(repo, digest).await?;
        Ok(self
            .meta
            .newest_reports(manifest.repository_id, manifest.id, digest)
            .await?
            .into_iter()
            .map(ImportedReport::from)
            .collect())
    }

    /// The findings of the newest `scanner` report for each image manifest `digest` covers;
    /// `None` when no report of that scanner was imported for it.
    pub(super) async fn imported_findings(
        &self,
        repo: &RepoName,
        digest: &Digest,
        scanner: Scanner,
    ) -> Result<Option<Vec<crate::meta::findings::FindingRow>>> {
        let manifest = self.image_row(repo, digest).await?;
        let rows = self
            .meta
            .imported_findings(
                manifest.repository_id,
                manifest.id,
                digest,
                scanner.as_str(),
            )
            .await?;
        if !rows.is_empty() {
            return Ok(Some(rows));
        }
        // A report without findings is still a report: an empty list, not "never scanned".
        let imported = self
            .meta
            .newest_reports(manifest.repository_id, manifest.id, digest)
            .await?
            .iter()
            .any(|r| r.scanner == scanner.as_str());
        Ok(imported.then(Vec::new))
    }

    /// The index row of manifest `digest` of `repo`.
    async fn image_row(&self, repo: &RepoName, digest: &Digest) -> Result<StoredManifest> {
        self.meta
            .manifest_by_digest(repo, digest, false)
            .await?
            .ok_or(Error::ManifestUnknown)
    }

    /// The `DiffID`s image `target`'s config lists, in layer order.
    async fn diff_ids(&self, target: &Target) -> Result<Vec<Digest>> {
        let Some(config) = &target.config else {
            return Ok(Vec::new());
        };
        let mut stream = self.blobs.read(config, None).await?;
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.try_next().await? {
            bytes.extend_from_slice(&chunk);
            if bytes.len() > CONFIG_READ_MAX {
                return Err(Error::BadRequest(format!(
                    "the image's config {config} is larger than {CONFIG_READ_MAX} bytes: \
                     its DiffIDs are not read"
                )));
            }
        }
        let parsed: ConfigRootfs = serde_json::from_slice(&bytes).unwrap_or_default();
        Ok(parsed
            .rootfs
            .diff_ids
            .iter()
            .filter_map(|d| d.parse().ok())
            .collect())
    }
}

/// Which image of `targets` (those `digest` stands for) `report` is about: the one whose
/// manifest or config digest it names. A report naming only the index, with one image under
/// it, is about that image.
fn report_target<'a>(
    report: &Report,
    digest: &Digest,
    targets: &'a [Target],
) -> Result<&'a Target> {
    let by_config = targets.iter().find(|t| {
        report.config_digest.is_some() && t.config.as_ref() == report.config_digest.as_ref()
    });
    let by_manifest = targets
        .iter()
        .find(|t| report.manifest_digests.contains(&t.digest));
    if let Some(target) = by_manifest.or(by_config) {
        return Ok(target);
    }
    if report.manifest_digests.contains(digest) && targets.len() == 1 {
        return Ok(&targets[0]);
    }
    let named = report
        .manifest_digests
        .iter()
        .map(ToString::to_string)
        .chain(report.config_digest.iter().map(|c| format!("config {c}")))
        .collect::<Vec<_>>()
        .join(", ");
    let images = if targets.len() == 1 {
        format!("image {digest}")
    } else {
        format!("any of the {} images of index {digest}", targets.len())
    };
    Err(Error::BadRequest(format!(
        "the {} report is about {named}, not {images}",
        report.scanner.as_str()
    )))
}

/// The layer blob a finding names: its digest when it is one of the image's layers, else
/// the layer whose `DiffID` it gives; empty when the report names no layer.
fn layer_of(
    layer: &LayerRef,
    target: &Target,
    diff_ids: &[Digest],
) -> std::result::Result<String, String> {
    if let Some(digest) = &layer.digest
        && target.layers.contains(digest)
    {
        return Ok(digest.to_string());
    }
    if let Some(diff_id) = &layer.diff_id {
        let position = diff_ids.iter().position(|d| d == diff_id);
        return match position.and_then(|i| target.layers.get(i)) {
            Some(blob) => Ok(blob.to_string()),
            None => Err(format!(
                "layer DiffID {diff_id} is not one of image {}'s layers",
                target.digest
            )),
        };
    }
    match &layer.digest {
        Some(digest) => Err(format!(
            "layer {digest} is not one of image {}'s layers",
            target.digest
        )),
        None => Ok(String::new()),
    }
}

/// The position of `severity` in a report's counts (critical first).
fn severity_slot(severity: Severity) -> usize {
    match severity {
        Severity::Critical => 0,
        Severity::High => 1,
        Severity::Medium => 2,
        Severity::Low => 3,
        Severity::Unknown => 4,
    }
}

fn stored_finding(found: &ReportFinding, layer: String) -> NewReportFinding {
    NewReportFinding {
        advisory_id: found.id.clone(),
        aliases: serde_json::to_string(&found.aliases).unwrap_or_else(|_| "[]".to_owned()),
        severity: found.severity.as_str(),
        package: found.package.clone(),
        installed_version: found.installed_version.clone(),
        fixed_version: found.fixed_version.clone(),
        layer,
    }
}
