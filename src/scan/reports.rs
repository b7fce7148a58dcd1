//! Vulnerability reports of other scanners, read into one shape: Trivy's JSON (`trivy image
//! -f json`, schema version 2) and Grype's (`grype -o json`). A report names the image it is
//! about (by manifest digest, config digest or both) and, per finding, the advisory, the
//! package and its versions, and the layer (by blob digest, or by the uncompressed `DiffID`
//! that the registry maps to the blob through the image's config). Only the fields used are
//! read; everything else in the reports is ignored.

use serde::Deserialize;

use super::osv::Severity;
use crate::oci::Digest;

/// The most findings one report may hold (a large image has a few thousand).
pub const MAX_FINDINGS: usize = 200_000;

/// Which scanner wrote a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scanner {
    /// Aqua Security's Trivy.
    Trivy,
    /// Anchore's Grype.
    Grype,
}

impl Scanner {
    /// Its name in the API and the index.
    pub fn as_str(self) -> &'static str {
        match self {
            Scanner::Trivy => "trivy",
            Scanner::Grype => "grype",
        }
    }

    /// The scanner a name names (`trivy`, `grype`).
    pub fn parse(name: &str) -> Option<Scanner> {
        match name {
            "trivy" => Some(Scanner::Trivy),
            "grype" => Some(Scanner::Grype),
            _ => None,
        }
    }
}

/// A report, as far as the registry reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Who wrote it.
    pub scanner: Scanner,
    /// The scanner's version, when the report says.
    pub scanner_version: Option<String>,
    /// Manifest digests the report gives for its image (Trivy's `RepoDigests`, Grype's
    /// `manifestDigest` and `repoDigests`): of the image, or of the index it was chosen from.
    pub manifest_digests: Vec<Digest>,
    /// The digest of the image's config (both scanners' image id).
    pub config_digest: Option<Digest>,
    /// What it found, in the report's order.
    pub findings: Vec<ReportFinding>,
}

/// The layer a finding names.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LayerRef {
    /// The layer blob's digest (Trivy's `Layer.Digest`).
    pub digest: Option<Digest>,
    /// The digest of its uncompressed content (Trivy's `Layer.DiffID`, Grype's `layerID`).
    pub diff_id: Option<Digest>,
}

/// One finding of a report.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportFinding {
    /// The advisory (a CVE, GHSA, DSA… id).
    pub id: String,
    /// Its other ids the report gives.
    pub aliases: Vec<String>,
    /// Its severity, as the scanner judged it.
    pub severity: Severity,
    /// The package.
    pub package: String,
    /// The version installed.
    pub installed_version: String,
    /// The version(s) that fix it; `None` when the scanner knows no fix.
    pub fixed_version: Option<String>,
    /// Where the package came from.
    pub layer: LayerRef,
}

/// Reads a Trivy or Grype JSON report; `Err` says why it is neither, or what in it is wrong.
pub fn parse(bytes: &[u8]) -> Result<Report, String> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("the report is not JSON: {e}"))?;
    let object = value
        .as_object()
        .ok_or("the report is not a JSON object (Trivy's or Grype's JSON output)")?;
    let report = if object.contains_key("SchemaVersion") || object.contains_key("Results") {
        trivy(value)?
    } else if object.contains_key("matches") {
        grype(value)?
    } else {
        return Err(
            "neither a Trivy report (`trivy image -f json`: SchemaVersion, Results) \
                    nor a Grype report (`grype -o json`: matches)"
                .to_owned(),
        );
    };
    if report.manifest_digests.is_empty() && report.config_digest.is_none() {
        return Err(format!(
            "the {} report names no image (no manifest or config digest): \
             import the report of a container image scan",
            report.scanner.as_str()
        ));
    }
    if report.findings.len() > MAX_FINDINGS {
        return Err(format!(
            "the report holds {} findings, more than the {MAX_FINDINGS} accepted",
            report.findings.len()
        ));
    }
    Ok(report)
}

/// A digest field: absent or empty is `None`, anything else must be a digest.
fn digest_field(value: Option<&str>, what: &str) -> Result<Option<Digest>, String> {
    match value {
        None | Some("") => Ok(None),
        Some(text) => text
            .parse()
            .map(Some)
            .map_err(|e| format!("{what}: {text:?} is not a digest ({e})")),
    }
}

/// The digest of `name@digest`, as both scanners list repository digests.
fn repo_digest(entry: &str, what: &str) -> Result<Digest, String> {
    let digest = entry.rsplit_once('@').map_or(entry, |(_, d)| d);
    digest
        .parse()
        .map_err(|e| format!("{what}: {entry:?} does not end in a digest ({e})"))
}

/// A finding's required text field, or the error naming where it is missing.
fn required(value: Option<String>, field: &str, at: &str) -> Result<String, String> {
    value
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| format!("{at}: no {field}"))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TrivyReport {
    schema_version: Option<i64>,
    artifact_type: Option<String>,
    #[serde(default)]
    metadata: TrivyMetadata,
    #[serde(default)]
    results: Vec<TrivyResult>,
    #[serde(default)]
    trivy: TrivyTool,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct TrivyTool {
    version: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct TrivyMetadata {
    #[serde(rename = "ImageID")]
    image_id: Option<String>,
    #[serde(default)]
    repo_digests: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TrivyResult {
    #[serde(default)]
    vulnerabilities: Option<Vec<TrivyVulnerability>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TrivyVulnerability {
    #[serde(rename = "VulnerabilityID")]
    vulnerability_id: Option<String>,
    pkg_name: Option<String>,
    installed_version: Option<String>,
    fixed_version: Option<String>,
    severity: Option<String>,
    #[serde(rename = "VendorIDs", default)]
    vendor_ids: Vec<String>,
    #[serde(default)]
    layer: TrivyLayer,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct TrivyLayer {
    digest: Option<String>,
    #[serde(rename = "DiffID")]
    diff_id: Option<String>,
}

fn trivy(value: serde_json::Value) -> Result<Report, String> {
    let report: TrivyReport =
        serde_json::from_value(value).map_err(|e| format!("a malformed Trivy report: {e}"))?;
    match report.schema_version {
        Some(2) => {}
        Some(other) => {
            return Err(format!(
                "Trivy report schema version {other} is not read (version 2, Trivy 0.20 and later)"
            ));
        }
        None => return Err("a Trivy report without SchemaVersion (version 2 is read)".to_owned()),
    }
    if let Some(kind) = report.artifact_type.as_deref()
        && kind != "container_image"
    {
        return Err(format!(
            "the Trivy report is of a {kind}, not of a container image (`trivy image`)"
        ));
    }
    let mut findings = Vec::new();
    for (r, result) in report.results.into_iter().enumerate() {
        for (v, found) in result
            .vulnerabilities
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            let at = format!("Results[{r}].Vulnerabilities[{v}]");
            let id = required(found.vulnerability_id, "VulnerabilityID", &at)?;
            let aliases = found.vendor_ids.into_iter().filter(|a| *a != id).collect();
            findings.push(ReportFinding {
                aliases,
                severity: severity_word(found.severity.as_deref()),
                package: required(found.pkg_name, "PkgName", &at)?,
                installed_version: required(found.installed_version, "InstalledVersion", &at)?,
                fixed_version: found.fixed_version.filter(|f| !f.is_empty()),
                layer: LayerRef {
                    digest: digest_field(found.layer.digest.as_deref(), &format!("{at}.Layer"))?,
                    diff_id: digest_field(
                        found.layer.diff_id.as_deref(),
                        &format!("{at}.Layer.DiffID"),
                    )?,
                },
                id,
            });
            if findings.len() > MAX_FINDINGS {
                return Err(format!("more than {MAX_FINDINGS} findings"));
            }
        }
    }
    let manifest_digests = report
        .metadata
        .repo_digests
        .iter()
        .map(|d| repo_digest(d, "Metadata.RepoDigests"))
        .collect::<Result<_, _>>()?;
    Ok(Report {
        scanner: Scanner::Trivy,
        scanner_version: report.trivy.version.filter(|v| !v.is_empty()),
        manifest_digests,
        config_digest: digest_field(report.metadata.image_id.as_deref(), "Metadata.ImageID")?,
        findings,
    })
}

#[derive(Deserialize)]
struct GrypeReport {
    #[serde(default)]
    matches: Vec<GrypeMatch>,
    source: Option<GrypeSource>,
    #[serde(default)]
    descriptor: GrypeDescriptor,
}

#[derive(Deserialize, Default)]
struct GrypeDescriptor {
    name: Option<String>,
    version: Option<String>,
}

#[derive(Deserialize)]
struct GrypeSource {
    #[serde(rename = "type")]
    kind: Option<String>,
    target: Option<serde_json::Value>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct GrypeImage {
    #[serde(rename = "imageID")]
    image_id: Option<String>,
    manifest_digest: Option<String>,
    #[serde(default)]
    repo_digests: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GrypeMatch {
    vulnerability: GrypeVulnerability,
    #[serde(default)]
    related_vulnerabilities: Vec<GrypeRelated>,
    artifact: GrypeArtifact,
}

#[derive(Deserialize)]
struct GrypeVulnerability {
    id: Option<String>,
    severity: Option<String>,
    #[serde(default)]
    fix: GrypeFix,
}

#[derive(Deserialize, Default)]
struct GrypeFix {
    #[serde(default)]
    versions: Vec<String>,
}

#[derive(Deserialize)]
struct GrypeRelated {
    id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GrypeArtifact {
    name: Option<String>,
    version: Option<String>,
    #[serde(default)]
    locations: Vec<GrypeLocation>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GrypeLocation {
    #[serde(rename = "layerID")]
    layer_id: Option<String>,
}

fn grype(value: serde_json::Value) -> Result<Report, String> {
    let report: GrypeReport =
        serde_json::from_value(value).map_err(|e| format!("a malformed Grype report: {e}"))?;
    if let Some(name) = report.descriptor.name.as_deref()
        && name != "grype"
    {
        return Err(format!("a report by {name:?}, not Grype (descriptor.name)"));
    }
    let source = report
        .source
        .ok_or("the Grype report has no source: import the report of an image scan")?;
    if let Some(kind) = source.kind.as_deref()
        && kind != "image"
    {
        return Err(format!(
            "the Grype report is of a {kind}, not of a container image (source.type)"
        ));
    }
    // An image source's target is an object; a directory's is a path string.
    let image: GrypeImage = match source.target {
        Some(target @ serde_json::Value::Object(_)) => serde_json::from_value(target)
            .map_err(|e| format!("a malformed Grype source.target: {e}"))?,
        _ => GrypeImage::default(),
    };
    let mut findings = Vec::with_capacity(report.matches.len().min(MAX_FINDINGS + 1));
    for (m, found) in report.matches.into_iter().enumerate() {
        let at = format!("matches[{m}]");
        let id = required(found.vulnerability.id, "vulnerability.id", &at)?;
        let aliases = found
            .related_vulnerabilities
            .into_iter()
            .filter_map(|r| r.id)
            .filter(|a| *a != id)
            .collect();
        let diff_id = found
            .artifact
            .locations
            .iter()
            .find_map(|l| l.layer_id.as_deref().filter(|l| !l.is_empty()));
        let fixes = found.vulnerability.fix.versions.join(", ");
        findings.push(ReportFinding {
            aliases,
            severity: severity_word(found.vulnerability.severity.as_deref()),
            package: required(found.artifact.name, "artifact.name", &at)?,
            installed_version: required(found.artifact.version, "artifact.version", &at)?,
            fixed_version: (!fixes.is_empty()).then_some(fixes),
            layer: LayerRef {
                digest: None,
                diff_id: digest_field(diff_id, &format!("{at}.artifact.locations.layerID"))?,
            },
            id,
        });
    }
    let mut manifest_digests: Vec<Digest> = image
        .repo_digests
        .iter()
        .map(|d| repo_digest(d, "source.target.repoDigests"))
        .collect::<Result<_, _>>()?;
    if let Some(digest) = digest_field(
        image.manifest_digest.as_deref(),
        "source.target.manifestDigest",
    )? {
        manifest_digests.push(digest);
    }
    Ok(Report {
        scanner: Scanner::Grype,
        scanner_version: report.descriptor.version.filter(|v| !v.is_empty()),
        manifest_digests,
        config_digest: digest_field(image.image_id.as_deref(), "source.target.imageID")?,
        findings,
    })
}

/// A scanner's severity word (Trivy's `CRITICAL`…`UNKNOWN`, Grype's `Critical`…`Negligible`).
fn severity_word(word: Option<&str>) -> Severity {
    word.and_then(Severity::of_word)
        .unwrap_or(Severity::Unknown)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const IMAGE: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const CONFIG: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
    const LAYER: &str = "sha256:3333333333333333333333333333333333333333333333333333333333333333";
    const DIFF: &str = "sha256:4444444444444444444444444444444444444444444444444444444444444444";

    fn trivy_report(vulnerabilities: serde_json::Value) -> Vec<u8> {
        json!({
            "SchemaVersion": 2,
            "Trivy": {"Version": "0.58.1"},
            "ArtifactName": "registry.example/team/app:1",
            "ArtifactType": "container_image",
            "Metadata": {"ImageID": CONFIG, "RepoDigests": [format!("registry.example/team/app@{IMAGE}")]},
            "Results": [
                {"Target": "app (debian 12.4)", "Class": "os-pkgs", "Type": "debian",
                 "Vulnerabilities": vulnerabilities},
                {"Target": "usr/bin/tool", "Class": "lang-pkgs", "Type": "gobinary"}
            ]
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn a_trivy_report_is_read() {
        let report = parse(&trivy_report(json!([
            {"VulnerabilityID": "CVE-2024-0727", "VendorIDs": ["DSA-5678-1"], "PkgName": "openssl",
             "InstalledVersion": "3.0.11-1~deb12u2", "FixedVersion": "3.0.13-1~deb12u1",
             "Severity": "MEDIUM", "Layer": {"Digest": LAYER, "DiffID": DIFF}},
            {"VulnerabilityID": "CVE-2023-45853", "PkgName": "zlib1g",
             "InstalledVersion": "1:1.2.13.dfsg-1", "FixedVersion": "", "Severity": "CRITICAL",
             "Layer": {"DiffID": DIFF}},
            {"VulnerabilityID": "CVE-2011-3374", "PkgName": "apt",
             "InstalledVersion": "2.6.1", "Severity": "NEGLIGIBLE?"}
        ])))
        .unwrap();
        assert_eq!(report.scanner, Scanner::Trivy);
        assert_eq!(report.scanner_version.as_deref(), Some("0.58.1"));
        assert_eq!(
            report.manifest_digests,
            vec![IMAGE.parse::<Digest>().unwrap()]
        );
        assert_eq!(report.config_digest, Some(CONFIG.parse().unwrap()));
        let ids: Vec<_> = report.findings.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(ids, ["CVE-2024-0727", "CVE-2023-45853", "CVE-2011-3374"]);
        let [openssl, zlib, apt] = &report.findings[..] else {
            panic!("three findings")
        };
        assert_eq!(openssl.aliases, ["DSA-5678-1"]);
        assert_eq!(openssl.severity, Severity::Medium);
        assert_eq!(openssl.layer.digest, Some(LAYER.parse().unwrap()));
        assert_eq!(zlib.severity, Severity::Critical);
        assert_eq!(zlib.installed_version, "1:1.2.13.dfsg-1");
        assert_eq!(zlib.fixed_version, None, "an empty FixedVersion is no fix");
        assert_eq!(zlib.layer.digest, None);
        assert_eq!(zlib.layer.diff_id, Some(DIFF.parse().unwrap()));
        assert_eq!(apt.severity, Severity::Unknown, "a word no scale knows");
        assert_eq!(apt.layer, LayerRef::default());
    }

    #[test]
    fn a_grype_report_is_read() {
        let report = parse(
            json!({
                "matches": [{
                    "vulnerability": {"id": "DLA-3685-1", "severity": "Negligible",
                                      "fix": {"versions": ["2.36-9+deb12u4", "2.37-1"], "state": "fixed"}},
                    "relatedVulnerabilities": [{"id": "CVE-2023-4911"}, {"id": "DLA-3685-1"}],
                    "artifact": {"name": "libc6", "version": "2.36-9+deb12u3", "type": "deb",
                                 "locations": [{"path": "/var/lib/dpkg/status", "layerID": DIFF}]}
                }, {
                    "vulnerability": {"id": "GHSA-xxxx-yyyy-zzzz", "severity": "High", "fix": {"versions": [], "state": "not-fixed"}},
                    "artifact": {"name": "requests", "version": "2.31.0", "locations": []}
                }],
                "source": {"type": "image", "target": {"userInput": "team/app:1", "imageID": CONFIG,
                           "manifestDigest": IMAGE, "repoDigests": []}},
                "descriptor": {"name": "grype", "version": "0.86.1"}
            })
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(report.scanner, Scanner::Grype);
        assert_eq!(report.scanner_version.as_deref(), Some("0.86.1"));
        assert_eq!(
            report.manifest_digests,
            vec![IMAGE.parse::<Digest>().unwrap()]
        );
        let [libc, requests] = &report.findings[..] else {
            panic!("two findings")
        };
        assert_eq!(libc.aliases, ["CVE-2023-4911"], "the id itself is no alias");
        assert_eq!(libc.severity, Severity::Low, "negligible counts as low");
        assert_eq!(
            libc.fixed_version.as_deref(),
            Some("2.36-9+deb12u4, 2.37-1")
        );
        assert_eq!(libc.layer.diff_id, Some(DIFF.parse().unwrap()));
        assert_eq!(requests.severity, Severity::High);
        assert_eq!(requests.fixed_version, None);
        assert_eq!(requests.layer, LayerRef::default());
    }

    #[test]
    fn bad_reports_say_why() {
        let cases: Vec<(Vec<u8>, &str)> =
            vec![
            (b"{not json".to_vec(), "not JSON"),
            (b"[1, 2]".to_vec(), "not a JSON object"),
            (br#"{"bomFormat": "CycloneDX"}"#.to_vec(), "neither a Trivy report"),
            (
                json!({"SchemaVersion": 1, "Results": []}).to_string().into_bytes(),
                "schema version 1",
            ),
            (
                json!({"Results": []}).to_string().into_bytes(),
                "without SchemaVersion",
            ),
            (
                json!({"SchemaVersion": 2, "ArtifactType": "filesystem", "Results": []})
                    .to_string()
                    .into_bytes(),
                "of a filesystem",
            ),
            (
                json!({"SchemaVersion": 2, "ArtifactType": "container_image", "Results": []})
                    .to_string()
                    .into_bytes(),
                "names no image",
            ),
            (
                trivy_report(json!([{"PkgName": "openssl", "InstalledVersion": "1"}])),
                "Results[0].Vulnerabilities[0]: no VulnerabilityID",
            ),
            (
                trivy_report(json!([{"VulnerabilityID": "CVE-1", "PkgName": "openssl",
                                     "InstalledVersion": "1", "Layer": {"DiffID": "sha256:12"}}])),
                "Layer.DiffID: \"sha256:12\" is not a digest",
            ),
            (
                json!({"matches": [], "source": {"type": "directory", "target": "/src"}})
                    .to_string()
                    .into_bytes(),
                "of a directory",
            ),
            (
                json!({"matches": [{"vulnerability": {"id": "CVE-1"}, "artifact": {"name": "x"}}],
                       "source": {"type": "image", "target": {"imageID": CONFIG}}})
                .to_string()
                .into_bytes(),
                "matches[0]: no artifact.version",
            ),
            (
                json!({"matches": [], "descriptor": {"name": "syft"}}).to_string().into_bytes(),
                "not Grype",
            ),
        ];
        for (body, why) in cases {
            let err = parse(&body).expect_err(why);
            assert!(err.contains(why), "{err:?} should say {why:?}");
        }
    }
}
