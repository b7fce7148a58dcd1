//! Reports of other scanners imported for an image (Trivy's, Grype's): each import with its
//! counts by severity, and its findings in the report's order. Every import is kept; an
//! image's view of one scanner reads the newest report per image manifest it covers.

use super::{Meta, findings::FindingRow};
use crate::{error::Result, oci::Digest};

/// An imported report to record.
#[derive(Debug, Clone)]
pub struct NewReport<'a> {
    /// The image (or index) it was imported for.
    pub manifest_id: i64,
    /// Its repository.
    pub repository_id: i64,
    /// The image manifest the report is about: the image, or a child of the index.
    pub child_digest: &'a Digest,
    /// That child's platform `(os, architecture, variant)`; `None` for an image.
    pub platform: Option<(Option<&'a str>, Option<&'a str>, Option<&'a str>)>,
    /// `trivy` or `grype`.
    pub scanner: &'a str,
    /// The scanner's version, when the report says.
    pub scanner_version: Option<&'a str>,
    /// Who imported it.
    pub imported_by: &'a str,
    /// Its findings by severity: critical, high, medium, low, unknown.
    pub counts: [i64; 5],
}

/// One finding of an imported report, as stored.
#[derive(Debug, Clone)]
pub struct NewReportFinding {
    /// The advisory.
    pub advisory_id: String,
    /// Its other ids, as a JSON array.
    pub aliases: String,
    /// critical, high, medium, low or unknown.
    pub severity: &'static str,
    /// The package.
    pub package: String,
    /// The installed version.
    pub installed_version: String,
    /// The fixing version(s).
    pub fixed_version: Option<String>,
    /// The layer blob's digest; empty when the report names none.
    pub layer: String,
}

/// An imported report, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ReportRow {
    /// Its id (the listing's cursor).
    pub id: i64,
    /// The image manifest it is about.
    pub child_digest: String,
    /// That child's operating system, for a child of an index.
    pub os: Option<String>,
    /// Its architecture.
    pub architecture: Option<String>,
    /// Its variant.
    pub variant: Option<String>,
    /// `trivy` or `grype`.
    pub scanner: String,
    /// The scanner's version.
    pub scanner_version: Option<String>,
    /// When it was imported (unix seconds).
    pub imported_at: i64,
    /// Who imported it.
    pub imported_by: String,
    /// Critical findings.
    pub critical: i64,
    /// High.
    pub high: i64,
    /// Medium.
    pub medium: i64,
    /// Low.
    pub low: i64,
    /// Unknown.
    pub unknown: i64,
}

const REPORT_COLUMNS: &str = "id, child_digest, os, architecture, variant, scanner, \
    scanner_version, imported_at, imported_by, critical, high, medium, low, unknown";

/// The reports an image's view reads: imported for it, or for an index naming it as the
/// child (`$1` repository, `$2` manifest id, `$3` its digest).
const REPORTS_OF_IMAGE: &str = "repository_id = $1 AND (manifest_id = $2 OR child_digest = $3)";

impl Meta {
    /// Records an imported report with its findings, in one transaction; returns its id.
    pub async fn record_report(
        &self,
        report: &NewReport<'_>,
        findings: &[NewReportFinding],
    ) -> Result<i64> {
        let mut tx = self.writer.begin().await?;
        let (os, architecture, variant) = report.platform.unwrap_or_default();
        let [critical, high, medium, low, unknown] = report.counts;
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO imported_reports (manifest_id, repository_id, child_digest, os, \
             architecture, variant, scanner, scanner_version, imported_at, imported_by, \
             critical, high, medium, low, unknown) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
             RETURNING id",
        )
        .bind(report.manifest_id)
        .bind(report.repository_id)
        .bind(report.child_digest.to_string())
        .bind(os)
        .bind(architecture)
        .bind(variant)
        .bind(report.scanner)
        .bind(report.scanner_version)
        .bind(self.now())
        .bind(report.imported_by)
        .bind(critical)
        .bind(high)
        .bind(medium)
        .bind(low)
        .bind(unknown)
        .fetch_one(&mut *tx)
        .await?;
        for (seq, f) in findings.iter().enumerate() {
            sqlx::query(
                "INSERT INTO imported_findings (report_id, seq, advisory_id, aliases, severity, \
                 package, installed_version, fixed_version, layer) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(id)
            .bind(seq as i64)
            .bind(&f.advisory_id)
            .bind(&f.aliases)
            .bind(f.severity)
            .bind(&f.package)
            .bind(&f.installed_version)
            .bind(f.fixed_version.as_deref())
            .bind(&f.layer)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(id)
    }

    /// The reports imported for image `digest` (row `manifest_id`) of `repository_id` or
    /// for an index naming it, newest first, with an id below `before` (0: from the newest);
    /// at most `limit`.
    pub async fn imported_reports(
        &self,
        repository_id: i64,
        manifest_id: i64,
        digest: &Digest,
        before: i64,
        limit: i64,
    ) -> Result<Vec<ReportRow>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {REPORT_COLUMNS} FROM imported_reports WHERE {REPORTS_OF_IMAGE} \
             AND ($4 = 0 OR id < $4) ORDER BY id DESC LIMIT $5"
        ))
        .bind(repository_id)
        .bind(manifest_id)
        .bind(digest.to_string())
        .bind(before)
        .bind(limit)
        .fetch_all(&self.reader)
        .await?)
    }

    /// The newest report of each scanner for each image manifest image `digest` covers,
    /// by scanner and child.
    pub async fn newest_reports(
        &self,
        repository_id: i64,
        manifest_id: i64,
        digest: &Digest,
    ) -> Result<Vec<ReportRow>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {REPORT_COLUMNS} FROM imported_reports WHERE id IN \
             (SELECT MAX(id) FROM imported_reports WHERE {REPORTS_OF_IMAGE} \
              GROUP BY scanner, child_digest) \
             ORDER BY scanner, child_digest"
        ))
        .bind(repository_id)
        .bind(manifest_id)
        .bind(digest.to_string())
        .fetch_all(&self.reader)
        .await?)
    }

    /// The findings of the newest `scanner` report for each image manifest image `digest`
    /// covers, each first seen at the earliest import (of that scanner, for that child)
    /// naming the same advisory, package and version, and last seen at this one's.
    pub async fn imported_findings(
        &self,
        repository_id: i64,
        manifest_id: i64,
        digest: &Digest,
        scanner: &str,
    ) -> Result<Vec<FindingRow>> {
        Ok(sqlx::query_as(&format!(
            "SELECT r.child_digest, f.advisory_id, f.aliases, f.package, f.installed_version, \
             f.fixed_version, f.severity, f.layer, r.os, r.architecture, r.variant, \
             (SELECT MIN(e.imported_at) FROM imported_reports e \
              JOIN imported_findings g ON g.report_id = e.id \
              WHERE e.repository_id = r.repository_id AND e.scanner = r.scanner \
              AND e.child_digest = r.child_digest AND g.advisory_id = f.advisory_id \
              AND g.package = f.package AND g.installed_version = f.installed_version) \
             AS first_seen, \
             r.imported_at AS last_seen \
             FROM imported_reports r JOIN imported_findings f ON f.report_id = r.id \
             WHERE r.id IN (SELECT MAX(id) FROM imported_reports WHERE {REPORTS_OF_IMAGE} \
                            AND scanner = $4 GROUP BY child_digest) \
             ORDER BY r.id, f.seq"
        ))
        .bind(repository_id)
        .bind(manifest_id)
        .bind(digest.to_string())
        .bind(scanner)
        .fetch_all(&self.reader)
        .await?)
    }
}
