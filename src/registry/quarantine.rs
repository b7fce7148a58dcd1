//! Quarantine: an image (a manifest of a repository) held back from pulls with a reason,
//! until someone releases it. The manifest GET of `/v2/` ([`Registry::get_manifest`]) refuses
//! a quarantined manifest, and an index that lists a quarantined child (a multi-arch tag with
//! one quarantined platform is not pullable), with `DENIED` naming the reason; HEADs and blobs
//! are answered (layers are shared; the manifest's bytes are the gate), and the registry's own
//! reads (the scanner, the collector) do not go through the check.

use serde::Serialize;

use super::Registry;
use crate::{
    error::{Error, Result},
    meta::quarantine::{QuarantineRow, QuarantineSource, Quarantined},
    oci::{Digest, RepoName},
};

/// The longest reason, in bytes.
pub const REASON_MAX_BYTES: usize = 1024;

/// Why an image is held back, as the image detail shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ImageQuarantine {
    /// Why it is held back.
    pub reason: String,
    /// Who set the current reason.
    pub by: String,
    /// Since when it is held back (unix seconds).
    pub at: i64,
    /// `manual` (through the API) or `policy` (a scanning policy).
    pub source: String,
}

/// A quarantined image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct QuarantineRecord {
    /// The manifest's digest.
    #[schema(value_type = String)]
    pub digest: Digest,
    /// Why, by whom, since when and from where.
    #[serde(flatten)]
    pub quarantine: ImageQuarantine,
}

impl From<QuarantineRow> for QuarantineRecord {
    fn from(row: QuarantineRow) -> QuarantineRecord {
        QuarantineRecord {
            digest: row.digest,
            quarantine: ImageQuarantine {
                reason: row.reason,
                by: row.quarantined_by,
                at: row.quarantined_at,
                source: row.source,
            },
        }
    }
}

/// What a quarantine request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuarantineOutcome {
    /// The image was not quarantined and now is.
    Created(QuarantineRecord),
    /// The image was quarantined already; its reason was replaced.
    Updated(QuarantineRecord),
}

/// `reason` as stored (surrounding blanks trimmed), or why it is refused: empty, longer
/// than [`REASON_MAX_BYTES`], or holding a control character (a line break included: the
/// reason ends up in one line of a client's error output).
pub fn check_reason(reason: &str) -> Result<&str, String> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err("reason: must not be empty".into());
    }
    if reason.len() > REASON_MAX_BYTES {
        return Err(format!(
            "reason: {} bytes is longer than the limit of {REASON_MAX_BYTES}",
            reason.len()
        ));
    }
    if reason.chars().any(char::is_control) {
        return Err("reason: must not contain control characters (line breaks, tabs)".into());
    }
    Ok(reason)
}

impl Registry {
    /// Quarantines image `digest` of `repo` for `reason` on behalf of `by`, or replaces the
    /// reason of its quarantine. `MANIFEST_UNKNOWN` when the repository has no such manifest.
    pub async fn quarantine_image(
        &self,
        repo: &RepoName,
        digest: &Digest,
        reason: &str,
        by: &str,
    ) -> Result<QuarantineOutcome> {
        let reason = check_reason(reason).map_err(Error::BadRequest)?;
        match self
            .meta
            .quarantine(repo, digest, reason, QuarantineSource::Manual, by)
            .await?
        {
            Quarantined::UnknownManifest => Err(Error::ManifestUnknown),
            Quarantined::Created(row) => Ok(QuarantineOutcome::Created(row.into())),
            Quarantined::Updated(row) => Ok(QuarantineOutcome::Updated(row.into())),
        }
    }

    /// The quarantine of image `digest` of `repo`, or `None` when it is not quarantined.
    /// `MANIFEST_UNKNOWN` when the repository has no such manifest.
    pub async fn image_quarantine(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<QuarantineRecord>> {
        if let Some(row) = self.meta.quarantine_of(repo, digest).await? {
            return Ok(Some(row.into()));
        }
        self.require_manifest(repo, digest).await?;
        Ok(None)
    }

    /// Releases image `digest` of `repo`: the released quarantine, or `None` when it was not
    /// quarantined. `MANIFEST_UNKNOWN` when the repository has no such manifest.
    pub async fn release_image(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<QuarantineRecord>> {
        if let Some(row) = self.meta.release(repo, digest).await? {
            return Ok(Some(row.into()));
        }
        self.require_manifest(repo, digest).await?;
        Ok(None)
    }

    /// The refusal of a pull of manifest `digest`, held back by the quarantine of manifest
    /// row `held_by` (its own, or a child's for an index).
    pub(super) async fn quarantine_refusal(&self, digest: &Digest, held_by: i64) -> Error {
        let row = match self.meta.quarantine_by_manifest(held_by).await {
            Ok(Some(row)) => row,
            // Released between the two reads: still refused, this once, without a reason.
            Ok(None) => return Error::Denied(format!("image {digest} is quarantined")),
            Err(e) => return e,
        };
        if &row.digest == digest {
            Error::Denied(format!("image {digest} is quarantined: {}", row.reason))
        } else {
            Error::Denied(format!(
                "image {} is quarantined: {} (a platform of index {digest}, which is not \
                 pullable while it is)",
                row.digest, row.reason
            ))
        }
    }

    /// `MANIFEST_UNKNOWN` unless `repo` holds manifest `digest`.
    async fn require_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<()> {
        self.meta
            .manifest_by_digest(repo, digest, false)
            .await?
            .map(|_| ())
            .ok_or(Error::ManifestUnknown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_is_trimmed() {
        assert_eq!(
            check_reason("  CVE-2024-1234 in openssl "),
            Ok("CVE-2024-1234 in openssl")
        );
    }

    #[test]
    fn an_empty_reason_is_refused() {
        assert!(check_reason("").is_err());
        assert!(check_reason(" \u{3000} ").is_err());
    }

    #[test]
    fn a_reason_of_1_kib_is_accepted_and_one_byte_more_refused() {
        let longest = "é".repeat(REASON_MAX_BYTES / 2);
        assert_eq!(check_reason(&longest), Ok(longest.as_str()));
        let longer = format!("{longest}x");
        assert!(check_reason(&longer).unwrap_err().contains("1025 bytes"));
    }

    #[test]
    fn control_characters_are_refused() {
        for reason in [
            "two\nlines",
            "tab\there",
            "bell\u{7}",
            "del\u{7f}",
            "c1\u{85}line",
        ] {
            assert!(check_reason(reason).is_err(), "{reason:?}");
        }
    }
}
