//! Why a finding of an image does not count: an allowlist entry that applies to the image (its
//! registry, namespace, repository or digest, not expired), or a statement of an OpenVEX
//! document pushed as a referrer of the image saying it is `not_affected` or `fixed`.
//! [`Suppressions`] is read once per image and asked of each finding; suppressed findings are
//! left out of the image's findings, its summary and its policy judgement, and listed apart
//! with the reason.

use serde::Serialize;
use serde_json::Value;

use super::{Registry, Vulnerability};
use crate::{
    error::Result,
    meta::scan_policy::{AllowlistRow, NewVexStatement, VexRow},
    oci::{Digest, RepoName},
};

/// The media type (as `artifactType`, or the config's) of an OpenVEX document.
pub const OPENVEX_MEDIA_TYPE: &str = "application/vnd.openvex+json";

/// Why a finding is suppressed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Suppression {
    /// `allowlist` or `vex`.
    pub source: String,
    /// The allowlist entry's id (`allowlist`).
    pub entry: Option<i64>,
    /// The allowlist entry's reason (`allowlist`).
    pub reason: Option<String>,
    /// When the allowlist entry stops applying (unix seconds); `null` = never or `vex`.
    pub expires_at: Option<i64>,
    /// The VEX statement's status, `not_affected` or `fixed` (`vex`).
    pub status: Option<String>,
    /// The VEX statement's justification, if it gives one (`vex`).
    pub justification: Option<String>,
    /// The digest of the referrer carrying the VEX document (`vex`).
    pub referrer: Option<String>,
}

/// A finding left out, with why.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SuppressedVulnerability {
    /// The finding.
    #[serde(flatten)]
    pub finding: Vulnerability,
    /// Why it does not count.
    pub suppressed_by: Suppression,
}

/// What suppresses findings of one image.
#[derive(Debug, Clone, Default)]
pub struct Suppressions {
    allowlist: Vec<AllowlistRow>,
    vex: Vec<VexRow>,
}

/// Whether `name` names finding `v` (its id or one of its aliases).
fn names(name: &str, v: &Vulnerability) -> bool {
    name.eq_ignore_ascii_case(&v.id) || v.aliases.iter().any(|a| name.eq_ignore_ascii_case(a))
}

impl Suppressions {
    /// Why `v` does not count, if it does not: an allowlist entry first, then a VEX statement.
    pub fn applies(&self, v: &Vulnerability) -> Option<Suppression> {
        if let Some(entry) = self.allowlist.iter().find(|e| names(&e.vulnerability, v)) {
            return Some(Suppression {
                source: "allowlist".into(),
                entry: Some(entry.id),
                reason: Some(entry.reason.clone()),
                expires_at: entry.expires_at,
                status: None,
                justification: None,
                referrer: None,
            });
        }
        let statement = self.vex.iter().find(|s| names(&s.vulnerability, v))?;
        Some(Suppression {
            source: "vex".into(),
            entry: None,
            reason: None,
            expires_at: None,
            status: Some(statement.status.clone()),
            justification: statement.justification.clone(),
            referrer: Some(statement.referrer.to_string()),
        })
    }

    /// `items` split into those that count and those suppressed.
    pub fn split(
        &self,
        items: Vec<Vulnerability>,
    ) -> (Vec<Vulnerability>, Vec<SuppressedVulnerability>) {
        let mut kept = Vec::with_capacity(items.len());
        let mut suppressed = Vec::new();
        for finding in items {
            match self.applies(&finding) {
                Some(why) => suppressed.push(SuppressedVulnerability {
                    finding,
                    suppressed_by: why,
                }),
                None => kept.push(finding),
            }
        }
        (kept, suppressed)
    }
}

impl Registry {
    /// What suppresses findings of image `digest` of `repo` now.
    pub(super) async fn suppressions(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Suppressions> {
        let namespace = crate::auth::namespace_of(repo.as_str());
        Ok(Suppressions {
            allowlist: self.meta.allowlist_for(repo, namespace, digest).await?,
            vex: self.meta.vex_suppressions(repo, digest).await?,
        })
    }
}

/// Why an OpenVEX document yields no statements.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("not an OpenVEX document: {0}")]
pub struct VexError(String);

/// The statements of OpenVEX document `bytes`. A statement's vulnerability is its `name`
/// (or `@id`), or the string itself in the older form; statements without a vulnerability
/// or status are skipped. `products` are not read: a document pushed as a referrer speaks of
/// its subject.
pub fn parse_openvex(bytes: &[u8]) -> Result<Vec<NewVexStatement>, VexError> {
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| VexError(e.to_string()))?;
    let statements = doc
        .get("statements")
        .and_then(Value::as_array)
        .ok_or_else(|| VexError("no `statements` array".into()))?;
    Ok(statements
        .iter()
        .filter_map(|s| {
            let vulnerability = match s.get("vulnerability")? {
                Value::String(name) => Some(name.trim()).filter(|n| !n.is_empty()),
                v @ Value::Object(_) => text(v.get("name")).or_else(|| text(v.get("@id"))),
                _ => None,
            }?;
            let status = text(s.get("status"))?;
            Some(NewVexStatement {
                vulnerability: vulnerability.to_owned(),
                status: status.to_owned(),
                justification: text(s.get("justification")).map(str::to_owned),
            })
        })
        .collect())
}

/// A non-blank string value, trimmed.
fn text(v: Option<&Value>) -> Option<&str> {
    v.and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_vulnerability_forms_and_justifications_are_read() {
        let doc = br#"{"@context": "https://openvex.dev/ns/v0.2.0", "statements": [
            {"vulnerability": {"name": "CVE-2024-0001"}, "status": "not_affected",
             "justification": "vulnerable_code_not_in_execute_path"},
            {"vulnerability": "CVE-2024-0002", "status": "fixed"},
            {"vulnerability": {"@id": "DSA-1-1"}, "status": "affected"},
            {"status": "fixed"},
            {"vulnerability": {"name": "CVE-2024-0003"}}
        ]}"#;
        let got = parse_openvex(doc).unwrap();
        let rows: Vec<_> = got
            .iter()
            .map(|s| {
                (
                    s.vulnerability.as_str(),
                    s.status.as_str(),
                    s.justification.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                (
                    "CVE-2024-0001",
                    "not_affected",
                    Some("vulnerable_code_not_in_execute_path")
                ),
                ("CVE-2024-0002", "fixed", None),
                ("DSA-1-1", "affected", None),
            ]
        );
    }

    #[test]
    fn malformed_documents_are_refused() {
        assert!(parse_openvex(b"not json").is_err());
        assert!(parse_openvex(b"{\"statements\": 3}").is_err());
        assert!(parse_openvex(b"[]").is_err());
    }
}
