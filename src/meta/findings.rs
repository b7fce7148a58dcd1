//! Stored findings: what each scanned image's newest inventory matched, with when each
//! finding was first and last seen, what changed, and a summary by severity per image. They
//! are written after a scan and after an advisory import (which re-matches the stored
//! inventories), and read by the image's vulnerabilities, the images one advisory affects,
//! the registry-wide summary and the image listing.

use std::collections::{HashMap, HashSet};

use super::{
    Meta, placeholders,
    repositories::CatalogViewer,
    usage::{READABLE, bind_viewer},
    webhooks::{NewEvent, insert_event},
};
use crate::{
    error::Result,
    oci::{Digest, RepoName, Tag},
    webhooks::EventKind,
};

/// New findings an image's `vulnerability_found` event lists at most (its `count` says
/// how many there were).
const EVENT_FINDINGS_MAX: usize = 100;

/// Rows inserted per statement (each binds 8 or 12 values): SQLite resolves `$n` binds in
/// time quadratic in their number per statement, so 50 rows insert faster than 500.
const ROWS_PER_INSERT: usize = 50;
/// Values bound in one `IN` list.
const IDS_PER_QUERY: usize = 500;

/// A finding to store for an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFinding {
    /// The image manifest it is in (the image itself, or a child of the index).
    pub child_digest: String,
    /// The advisory.
    pub advisory_id: String,
    /// The package the advisory names (for Debian, the source package).
    pub package: String,
    /// The installed version (for Debian, the source version).
    pub installed_version: String,
    /// The lowest version above it that fixes it, when known.
    pub fixed_version: Option<String>,
    /// critical, high, medium, low or unknown.
    pub severity: String,
    /// The layer that brought the installed version in.
    pub layer: String,
    /// The child's platform (for an index).
    pub os: Option<String>,
    /// The child's architecture (for an index).
    pub architecture: Option<String>,
    /// The child's architecture variant (for an index).
    pub variant: Option<String>,
}

impl NewFinding {
    fn key(&self) -> FindingKey {
        (
            self.child_digest.clone(),
            self.advisory_id.clone(),
            self.package.clone(),
            self.installed_version.clone(),
        )
    }
}

/// What identifies a finding within its image.
type FindingKey = (String, String, String, String);

/// An image's findings as just matched, to store in place of the previous ones.
#[derive(Debug, Clone)]
pub struct MatchedImage {
    /// The manifest.
    pub manifest_id: i64,
    /// Its repository.
    pub repository_id: i64,
    /// Its digest.
    pub digest: String,
    /// The scan whose inventory was matched.
    pub scan_id: i64,
    /// The image manifests that inventory covers (itself, or the index's children).
    pub children: Vec<String>,
    /// Every finding.
    pub findings: Vec<NewFinding>,
}

/// An image with a successful scan: the newest one's inventory is what is matched.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct InventoryImage {
    /// The manifest.
    pub manifest_id: i64,
    /// Its repository.
    pub repository_id: i64,
    /// Its digest.
    pub digest: String,
    /// Its newest successful scan.
    pub scan_id: i64,
}

/// What [`Meta::store_findings`] changed.
#[derive(Debug, Default)]
pub struct StoredFindings {
    /// How many images gained or lost a finding.
    pub changed: u64,
    /// The manifests whose findings changed in any way (also a severity or a fix).
    pub touched: Vec<i64>,
}

/// One package of a stored inventory, with what matching and a finding need.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct InventoryRow {
    /// The scan it was found by.
    pub scan_id: i64,
    /// The image manifest it is in.
    pub child_digest: String,
    /// The child's operating system, for an index.
    pub os: Option<String>,
    /// The child's architecture, for an index.
    pub architecture: Option<String>,
    /// The child's architecture variant, for an index.
    pub variant: Option<String>,
    /// The OSV ecosystem.
    pub ecosystem: String,
    /// The source package.
    pub source_name: String,
    /// The source version.
    pub source_version: String,
    /// The layer that introduced it.
    pub layer: String,
}

/// A stored finding, with its advisory's aliases.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FindingRow {
    /// The image manifest it is in.
    pub child_digest: String,
    /// The advisory.
    pub advisory_id: String,
    /// The advisory's other ids, as JSON.
    pub aliases: String,
    /// The package.
    pub package: String,
    /// The installed version.
    pub installed_version: String,
    /// The fixing version.
    pub fixed_version: Option<String>,
    /// critical, high, medium, low or unknown.
    pub severity: String,
    /// The layer.
    pub layer: String,
    /// The child's operating system.
    pub os: Option<String>,
    /// The child's architecture.
    pub architecture: Option<String>,
    /// The child's variant.
    pub variant: Option<String>,
    /// When it was first matched (unix seconds).
    pub first_seen: i64,
    /// When it was last confirmed (unix seconds).
    pub last_seen: i64,
}

/// A change of an image's findings.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ChangeRow {
    /// Its id (the listing's cursor).
    pub id: i64,
    /// The image manifest the finding is in.
    pub child_digest: String,
    /// The advisory.
    pub advisory_id: String,
    /// The package.
    pub package: String,
    /// The installed version.
    pub installed_version: String,
    /// `new` or `resolved`.
    pub kind: String,
    /// When (unix seconds).
    pub changed_at: i64,
}

/// Counts by severity, as stored per image or summed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct SeverityCounts {
    /// Critical.
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

/// The registry-wide totals: images affected and findings, per severity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct VulnerabilityTotals {
    /// Images with a critical finding.
    pub images_critical: i64,
    /// With a high one.
    pub images_high: i64,
    /// With a medium one.
    pub images_medium: i64,
    /// With a low one.
    pub images_low: i64,
    /// With one of unknown severity.
    pub images_unknown: i64,
    /// Critical findings.
    pub critical: i64,
    /// High findings.
    pub high: i64,
    /// Medium findings.
    pub medium: i64,
    /// Low findings.
    pub low: i64,
    /// Findings of unknown severity.
    pub unknown: i64,
}

/// An image in the most-dangerous listing.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DangerRow {
    /// The manifest.
    pub manifest_id: i64,
    /// Its repository.
    pub repository: RepoName,
    /// Its digest.
    pub digest: Digest,
    /// Its findings by severity.
    #[sqlx(flatten)]
    pub counts: SeverityCounts,
}

/// A finding of one advisory in an image, for the advisory's view.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AffectedRow {
    /// The manifest.
    pub manifest_id: i64,
    /// Its repository.
    pub repository: RepoName,
    /// Its digest.
    pub digest: Digest,
    /// The image manifest the finding is in.
    pub child_digest: String,
    /// The advisory.
    pub advisory_id: String,
    /// The package.
    pub package: String,
    /// The installed version.
    pub installed_version: String,
    /// The fixing version.
    pub fixed_version: Option<String>,
}

/// A tag of a repository, for the advisory's view (a tag whose image is fixed).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RepositoryTag {
    /// The repository.
    pub repository: RepoName,
    /// The tag.
    pub tag: Tag,
}

/// A tag where an advisory is fixed, and how many tags of the repository it is fixed in.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FixedTag {
    /// The advisory.
    pub advisory_id: String,
    /// The tag.
    pub tag: Tag,
    /// Tags of the repository where it is fixed (this one among them).
    pub fixed_count: i64,
}

const FINDING_COLUMNS: &str = "f.child_digest, f.advisory_id, \
    COALESCE(a.aliases, '[]') AS aliases, f.package, f.installed_version, f.fixed_version, \
    f.severity, f.layer, f.os, f.architecture, f.variant, f.first_seen, f.last_seen";

/// The condition that finding `f` of image digest `digest` in repository named `repo` (SQL
/// expressions) counts: no allowlist entry in force at parameter `$now` whose scope covers the
/// image, and no `not_affected`/`fixed` VEX statement of the image, names it (its advisory id
/// or an alias, in any case). The same judgement as `registry::exemptions`, made in the query
/// so that summaries over many images stay one query.
fn counted(f: &str, repo: &str, digest: &str, now: usize) -> String {
    let names = |col: &str| {
        format!(
            "(LOWER({col}) = LOWER({f}.advisory_id) OR EXISTS (SELECT 1 FROM advisory_aliases aa \
             WHERE aa.advisory_id = {f}.advisory_id AND LOWER(aa.alias) = LOWER({col})))"
        )
    };
    format!(
        "NOT EXISTS (SELECT 1 FROM vulnerability_allowlist w \
          WHERE (w.expires_at IS NULL OR w.expires_at > ${now}) \
          AND (w.scope_kind = 'registry' \
           OR (w.scope_kind = 'namespace' AND ({repo} = w.scope_value \
            OR substr({repo}, 1, length(w.scope_value) + 1) = w.scope_value || '/')) \
           OR (w.scope_kind = 'repository' AND w.scope_value = {repo}) \
           OR (w.scope_kind = 'digest' AND w.scope_value = {repo} || '@' || {digest})) \
          AND {}) \
         AND NOT EXISTS (SELECT 1 FROM vex_statements x \
          WHERE x.repository_id = {f}.repository_id AND x.subject_digest = {digest} \
          AND x.status IN ('not_affected', 'fixed') AND {})",
        names("w.vulnerability"),
        names("x.vulnerability")
    )
}

/// `vulnerability_summaries` with its counts taken again from the findings that count
/// ([`counted`] at parameter `$now`): a table expression with the same columns.
fn counted_summaries(now: usize) -> String {
    let sum = |severity: &str| {
        format!(
            "CAST(COALESCE(SUM(CASE WHEN f.severity = '{severity}' THEN 1 ELSE 0 END), 0) \
             AS BIGINT) AS {severity}"
        )
    };
    format!(
        "(SELECT s.manifest_id, s.repository_id, s.digest, s.scan_id, {}, {}, {}, {}, {} \
          FROM vulnerability_summaries s JOIN repositories sr ON sr.id = s.repository_id \
          LEFT JOIN findings f ON f.manifest_id = s.manifest_id AND {} \
          GROUP BY s.manifest_id, s.repository_id, s.digest, s.scan_id)",
        sum("critical"),
        sum("high"),
        sum("medium"),
        sum("low"),
        sum("unknown"),
        counted("f", "sr.name", "s.digest", now)
    )
}

/// A stored finding's key and what a re-match may change in it.
#[derive(sqlx::FromRow)]
struct StoredFinding {
    manifest_id: i64,
    child_digest: String,
    advisory_id: String,
    package: String,
    installed_version: String,
    fixed_version: Option<String>,
    severity: String,
    layer: String,
}

impl Meta {
    /// Every manifest with a successful scan, with its newest one.
    pub async fn inventory_images(&self) -> Result<Vec<InventoryImage>> {
        Ok(sqlx::query_as(
            "SELECT m.id AS manifest_id, m.repository_id, m.digest, MAX(s.id) AS scan_id \
             FROM scans s JOIN manifests m \
             ON m.repository_id = s.repository_id AND m.digest = s.manifest_digest \
             WHERE s.status = 'ok' GROUP BY m.id, m.repository_id, m.digest",
        )
        .fetch_all(&self.reader)
        .await?)
    }

    /// Image `digest` of `repository_id` with its newest successful scan, if it has one.
    pub async fn inventory_image(
        &self,
        repository_id: i64,
        digest: &Digest,
    ) -> Result<Option<InventoryImage>> {
        Ok(sqlx::query_as(
            "SELECT m.id AS manifest_id, m.repository_id, m.digest, MAX(s.id) AS scan_id \
             FROM manifests m JOIN scans s \
             ON s.repository_id = m.repository_id AND s.manifest_digest = m.digest \
             WHERE m.repository_id = $1 AND m.digest = $2 AND s.status = 'ok' \
             GROUP BY m.id, m.repository_id, m.digest",
        )
        .bind(repository_id)
        .bind(digest.to_string())
        .fetch_optional(&self.reader)
        .await?)
    }

    /// The scans among `scan_ids` whose inventory holds a source package named one of
    /// `names` in `ecosystem`.
    pub async fn scans_with_sources(
        &self,
        ecosystem: &str,
        names: &[String],
    ) -> Result<HashSet<i64>> {
        let mut found = HashSet::new();
        for chunk in names.chunks(IDS_PER_QUERY) {
            let sql = format!(
                "SELECT DISTINCT scan_id FROM scan_packages \
                 WHERE ecosystem = $1 AND source_name IN ({})",
                placeholders(2, chunk.len())
            );
            let mut query = sqlx::query_scalar::<_, i64>(&sql)
                .persistent(false)
                .bind(ecosystem);
            for name in chunk {
                query = query.bind(name.as_str());
            }
            found.extend(query.fetch_all(&self.reader).await?);
        }
        Ok(found)
    }

    /// The manifests with a stored finding of one of `advisory_ids`.
    pub async fn manifests_with_findings(&self, advisory_ids: &[String]) -> Result<HashSet<i64>> {
        let mut found = HashSet::new();
        for chunk in advisory_ids.chunks(IDS_PER_QUERY) {
            let sql = format!(
                "SELECT DISTINCT manifest_id FROM findings WHERE advisory_id IN ({})",
                placeholders(1, chunk.len())
            );
            let mut query = sqlx::query_scalar::<_, i64>(&sql).persistent(false);
            for id in chunk {
                query = query.bind(id.as_str());
            }
            found.extend(query.fetch_all(&self.reader).await?);
        }
        Ok(found)
    }

    /// The inventories of `scan_ids`, each in its order.
    pub async fn inventory_rows(&self, scan_ids: &[i64]) -> Result<Vec<InventoryRow>> {
        let mut rows = Vec::new();
        for chunk in scan_ids.chunks(IDS_PER_QUERY) {
            let sql = format!(
                "SELECT scan_id, child_digest, os, architecture, variant, ecosystem, \
                 source_name, source_version, layer FROM scan_packages \
                 WHERE scan_id IN ({}) ORDER BY scan_id, seq",
                placeholders(1, chunk.len())
            );
            let mut query = sqlx::query_as(&sql).persistent(false);
            for id in chunk {
                query = query.bind(*id);
            }
            rows.extend(query.fetch_all(&self.reader).await?);
        }
        Ok(rows)
    }

    /// Stores the findings of `images` in one transaction in place of their previous ones:
    /// a new finding is inserted with `first_seen` = `last_seen` = now and a `new` change; a
    /// kept one gets `last_seen` = now (and the advisory's current severity and fix); a gone
    /// one is deleted with a `resolved` change.
    pub async fn store_findings(&self, images: &[MatchedImage]) -> Result<StoredFindings> {
        if images.is_empty() {
            return Ok(StoredFindings::default());
        }
        let now = self.now();
        let ids: Vec<i64> = images.iter().map(|i| i.manifest_id).collect();
        let mut tx = self.write_tx().await?;
        let mut stored: HashMap<i64, HashMap<FindingKey, StoredFinding>> = HashMap::new();
        for chunk in ids.chunks(IDS_PER_QUERY) {
            let sql = format!(
                "SELECT manifest_id, child_digest, advisory_id, package, installed_version, \
                 fixed_version, severity, layer FROM findings WHERE manifest_id IN ({})",
                placeholders(1, chunk.len())
            );
            let mut query = sqlx::query_as::<_, StoredFinding>(&sql).persistent(false);
            for id in chunk {
                query = query.bind(*id);
            }
            for row in query.fetch_all(&mut *tx).await? {
                let key = (
                    row.child_digest.clone(),
                    row.advisory_id.clone(),
                    row.package.clone(),
                    row.installed_version.clone(),
                );
                stored.entry(row.manifest_id).or_default().insert(key, row);
            }
        }
        // The scan each image was last matched from: a summary is rewritten only when the
        // scan or the findings changed.
        let mut matched_from: HashMap<i64, i64> = HashMap::new();
        for chunk in ids.chunks(IDS_PER_QUERY) {
            let sql = format!(
                "SELECT manifest_id, scan_id FROM vulnerability_summaries \
                 WHERE manifest_id IN ({})",
                placeholders(1, chunk.len())
            );
            let mut query = sqlx::query_as::<_, (i64, i64)>(&sql).persistent(false);
            for id in chunk {
                query = query.bind(*id);
            }
            matched_from.extend(query.fetch_all(&mut *tx).await?);
        }
        let mut inserts: Vec<(&MatchedImage, &NewFinding)> = Vec::new();
        let mut updates: Vec<(&MatchedImage, &NewFinding)> = Vec::new();
        // (image, child, advisory, package, installed, kind)
        let mut changes: Vec<(&MatchedImage, FindingKey, &str)> = Vec::new();
        let mut changed_images = 0;
        // Images whose findings changed in any way (their summary is counted again).
        let mut touched: HashSet<i64> = HashSet::new();
        for image in images {
            let mut before = stored.remove(&image.manifest_id).unwrap_or_default();
            let changes_before = changes.len();
            let updates_before = updates.len();
            for finding in &image.findings {
                match before.remove(&finding.key()) {
                    None => {
                        inserts.push((image, finding));
                        changes.push((image, finding.key(), "new"));
                    }
                    Some(old) => {
                        if old.fixed_version != finding.fixed_version
                            || old.severity != finding.severity
                            || old.layer != finding.layer
                        {
                            updates.push((image, finding));
                        }
                    }
                }
            }
            for (key, _) in before {
                changes.push((image, key, "resolved"));
            }
            if changes.len() > changes_before {
                changed_images += 1;
            }
            if changes.len() > changes_before || updates.len() > updates_before {
                touched.insert(image.manifest_id);
            }
        }
        for chunk in ids.chunks(IDS_PER_QUERY) {
            let sql = format!(
                "UPDATE findings SET last_seen = $1 WHERE manifest_id IN ({})",
                placeholders(2, chunk.len())
            );
            let mut query = sqlx::query(&sql).persistent(false).bind(now);
            for id in chunk {
                query = query.bind(*id);
            }
            query.execute(&mut *tx).await?;
        }
        for (image, f) in &updates {
            sqlx::query(
                "UPDATE findings SET fixed_version = $1, severity = $2, layer = $3 \
                 WHERE manifest_id = $4 AND child_digest = $5 AND advisory_id = $6 \
                 AND package = $7 AND installed_version = $8",
            )
            .bind(f.fixed_version.as_deref())
            .bind(&f.severity)
            .bind(&f.layer)
            .bind(image.manifest_id)
            .bind(&f.child_digest)
            .bind(&f.advisory_id)
            .bind(&f.package)
            .bind(&f.installed_version)
            .execute(&mut *tx)
            .await?;
        }
        for (image, (child, advisory, package, installed), kind) in &changes {
            if *kind != "resolved" {
                continue;
            }
            sqlx::query(
                "DELETE FROM findings WHERE manifest_id = $1 AND child_digest = $2 \
                 AND advisory_id = $3 AND package = $4 AND installed_version = $5",
            )
            .bind(image.manifest_id)
            .bind(child)
            .bind(advisory)
            .bind(package)
            .bind(installed)
            .execute(&mut *tx)
            .await?;
        }
        for chunk in inserts.chunks(ROWS_PER_INSERT) {
            let rows: Vec<String> = (0..chunk.len())
                .map(|i| {
                    let b = i * 12;
                    format!(
                        "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, $1, $1)",
                        b + 2,
                        b + 3,
                        b + 4,
                        b + 5,
                        b + 6,
                        b + 7,
                        b + 8,
                        b + 9,
                        b + 10,
                        b + 11,
                        b + 12,
                        b + 13
                    )
                })
                .collect();
            let sql = format!(
                "INSERT INTO findings (manifest_id, repository_id, child_digest, advisory_id, \
                 package, installed_version, fixed_version, severity, layer, os, architecture, \
                 variant, first_seen, last_seen) VALUES {} ON CONFLICT DO NOTHING",
                rows.join(", ")
            );
            let mut query = sqlx::query(&sql).persistent(false).bind(now);
            for (image, f) in chunk {
                query = query
                    .bind(image.manifest_id)
                    .bind(image.repository_id)
                    .bind(f.child_digest.as_str())
                    .bind(f.advisory_id.as_str())
                    .bind(f.package.as_str())
                    .bind(f.installed_version.as_str())
                    .bind(f.fixed_version.as_deref())
                    .bind(f.severity.as_str())
                    .bind(f.layer.as_str())
                    .bind(f.os.as_deref())
                    .bind(f.architecture.as_deref())
                    .bind(f.variant.as_deref());
            }
            query.execute(&mut *tx).await?;
        }
        for chunk in changes.chunks(ROWS_PER_INSERT) {
            let rows: Vec<String> = (0..chunk.len())
                .map(|i| {
                    let b = i * 7;
                    format!(
                        "(${}, ${}, ${}, ${}, ${}, ${}, ${}, $1)",
                        b + 2,
                        b + 3,
                        b + 4,
                        b + 5,
                        b + 6,
                        b + 7,
                        b + 8
                    )
                })
                .collect();
            let sql = format!(
                "INSERT INTO finding_changes (manifest_id, repository_id, child_digest, \
                 advisory_id, package, installed_version, kind, changed_at) VALUES {}",
                rows.join(", ")
            );
            let mut query = sqlx::query(&sql).persistent(false).bind(now);
            for (image, (child, advisory, package, installed), kind) in chunk {
                query = query
                    .bind(image.manifest_id)
                    .bind(image.repository_id)
                    .bind(child.as_str())
                    .bind(advisory.as_str())
                    .bind(package.as_str())
                    .bind(installed.as_str())
                    .bind(*kind);
            }
            query.execute(&mut *tx).await?;
        }
        for image in images {
            let same_scan = matched_from.get(&image.manifest_id) == Some(&image.scan_id);
            if same_scan && !touched.contains(&image.manifest_id) {
                continue;
            }
            let mut counts = SeverityCounts::default();
            for f in &image.findings {
                match f.severity.as_str() {
                    "critical" => counts.critical += 1,
                    "high" => counts.high += 1,
                    "medium" => counts.medium += 1,
                    "low" => counts.low += 1,
                    _ => counts.unknown += 1,
                }
            }
            sqlx::query(
                "INSERT INTO vulnerability_summaries (manifest_id, repository_id, digest, \
                 scan_id, critical, high, medium, low, unknown, matched_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (manifest_id) DO UPDATE SET scan_id = excluded.scan_id, \
                 critical = excluded.critical, high = excluded.high, \
                 medium = excluded.medium, low = excluded.low, unknown = excluded.unknown, \
                 matched_at = excluded.matched_at",
            )
            .bind(image.manifest_id)
            .bind(image.repository_id)
            .bind(&image.digest)
            .bind(image.scan_id)
            .bind(counts.critical)
            .bind(counts.high)
            .bind(counts.medium)
            .bind(counts.low)
            .bind(counts.unknown)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if same_scan {
                // The same inventory: the children it covers are those stored.
                continue;
            }
            sqlx::query("DELETE FROM finding_children WHERE manifest_id = $1")
                .bind(image.manifest_id)
                .execute(&mut *tx)
                .await?;
            for child in &image.children {
                sqlx::query(
                    "INSERT INTO finding_children (manifest_id, repository_id, child_digest) \
                     VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                )
                .bind(image.manifest_id)
                .bind(image.repository_id)
                .bind(child)
                .execute(&mut *tx)
                .await?;
            }
        }
        // One `vulnerability_found` per image that gained findings, in this transaction.
        let mut gained: Vec<(&MatchedImage, Vec<&NewFinding>)> = Vec::new();
        for (image, finding) in &inserts {
            match gained.last_mut() {
                Some((last, list)) if last.manifest_id == image.manifest_id => list.push(finding),
                _ => gained.push((image, vec![finding])),
            }
        }
        for (image, found) in gained {
            let repository: Option<String> =
                sqlx::query_scalar("SELECT name FROM repositories WHERE id = $1")
                    .bind(image.repository_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            let Some(repository) = repository else {
                continue;
            };
            let listed: Vec<serde_json::Value> = found
                .iter()
                .take(EVENT_FINDINGS_MAX)
                .map(|f| {
                    serde_json::json!({
                        "advisory": f.advisory_id, "package": f.package,
                        "installed_version": f.installed_version,
                        "fixed_version": f.fixed_version, "severity": f.severity,
                        "image": f.child_digest,
                    })
                })
                .collect();
            let detail = serde_json::json!({ "count": found.len(), "findings": listed });
            let event = NewEvent {
                digest: Some(&image.digest),
                detail: Some(&detail),
                ..NewEvent::new(EventKind::VulnerabilityFound, &repository)
            };
            insert_event(&mut *tx, &event, -1.0, now).await?;
        }
        tx.commit().await?;
        Ok(StoredFindings {
            changed: changed_images,
            touched: touched.into_iter().collect(),
        })
    }

    /// How many matched images have a critical finding, and how many a high one.
    pub async fn vulnerable_image_counts(&self) -> Result<(i64, i64)> {
        let sql = format!(
            "SELECT CAST(COALESCE(SUM(CASE WHEN critical > 0 THEN 1 ELSE 0 END), 0) AS BIGINT), \
             CAST(COALESCE(SUM(CASE WHEN high > 0 THEN 1 ELSE 0 END), 0) AS BIGINT) FROM {} s",
            counted_summaries(1)
        );
        Ok(sqlx::query_as(&sql)
            .bind(self.now())
            .fetch_one(&self.reader)
            .await?)
    }

    /// The `limit` repositories with the most critical, then high, findings (then by name),
    /// with their findings by severity (critical, high, medium, low, unknown).
    pub async fn findings_by_repository(&self, limit: i64) -> Result<Vec<(String, [i64; 5])>> {
        let sql = format!(
            "SELECT r.name, CAST(SUM(s.critical) AS BIGINT) AS critical, \
             CAST(SUM(s.high) AS BIGINT) AS high, CAST(SUM(s.medium) AS BIGINT), \
             CAST(SUM(s.low) AS BIGINT), CAST(SUM(s.unknown) AS BIGINT) \
             FROM {} s JOIN repositories r ON r.id = s.repository_id \
             GROUP BY r.name ORDER BY critical DESC, high DESC, r.name LIMIT $1",
            counted_summaries(2)
        );
        let rows: Vec<(String, i64, i64, i64, i64, i64)> = sqlx::query_as(&sql)
            .bind(limit)
            .bind(self.now())
            .fetch_all(&self.reader)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(name, c, h, m, l, u)| (name, [c, h, m, l, u]))
            .collect())
    }

    /// The scan image `manifest_id`'s stored findings come from, if it was matched.
    pub async fn matched_scan(&self, manifest_id: i64) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar(
                "SELECT scan_id FROM vulnerability_summaries WHERE manifest_id = $1",
            )
            .bind(manifest_id)
            .fetch_optional(&self.reader)
            .await?,
        )
    }

    /// Whether the inventory of a matched index of `repository_id` covers child `digest`.
    pub async fn child_matched(&self, repository_id: i64, digest: &Digest) -> Result<bool> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT manifest_id FROM finding_children \
             WHERE repository_id = $1 AND child_digest = $2 LIMIT 1",
        )
        .bind(repository_id)
        .bind(digest.to_string())
        .fetch_optional(&self.reader)
        .await?;
        Ok(found.is_some())
    }

    /// The stored findings of image `manifest_id`.
    pub async fn image_findings(&self, manifest_id: i64) -> Result<Vec<FindingRow>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {FINDING_COLUMNS} FROM findings f \
             LEFT JOIN advisories a ON a.id = f.advisory_id WHERE f.manifest_id = $1"
        ))
        .bind(manifest_id)
        .fetch_all(&self.reader)
        .await?)
    }

    /// The stored findings in image manifest `digest` of `repository_id` as the indexes
    /// listing it found them (a child scanned through its index).
    pub async fn child_findings(
        &self,
        repository_id: i64,
        digest: &Digest,
    ) -> Result<Vec<FindingRow>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {FINDING_COLUMNS} FROM findings f \
             LEFT JOIN advisories a ON a.id = f.advisory_id \
             WHERE f.repository_id = $1 AND f.child_digest = $2"
        ))
        .bind(repository_id)
        .bind(digest.to_string())
        .fetch_all(&self.reader)
        .await?)
    }

    /// The changes of image `manifest_id`'s findings (or, with `child`, of those found in
    /// image manifest `child` of `repository_id` through its indexes), newest first, with an
    /// id below `before` (0: from the newest), `limit` at most.
    pub async fn finding_changes(
        &self,
        manifest_id: i64,
        child: Option<(i64, &Digest)>,
        before: i64,
        limit: i64,
    ) -> Result<Vec<ChangeRow>> {
        const COLUMNS: &str =
            "id, child_digest, advisory_id, package, installed_version, kind, changed_at";
        Ok(match child {
            None => {
                sqlx::query_as(&format!(
                    "SELECT {COLUMNS} FROM finding_changes WHERE manifest_id = $1 \
                     AND ($2 = 0 OR id < $2) ORDER BY id DESC LIMIT $3"
                ))
                .bind(manifest_id)
                .bind(before)
                .bind(limit)
                .fetch_all(&self.reader)
                .await?
            }
            Some((repository_id, digest)) => {
                sqlx::query_as(&format!(
                    "SELECT {COLUMNS} FROM finding_changes WHERE repository_id = $1 \
                     AND child_digest = $2 AND ($3 = 0 OR id < $3) ORDER BY id DESC LIMIT $4"
                ))
                .bind(repository_id)
                .bind(digest.to_string())
                .bind(before)
                .bind(limit)
                .fetch_all(&self.reader)
                .await?
            }
        })
    }

    /// The findings summary of each of `manifest_ids` that was matched.
    pub async fn severity_counts(
        &self,
        manifest_ids: &[i64],
    ) -> Result<HashMap<i64, SeverityCounts>> {
        #[derive(sqlx::FromRow)]
        struct Row {
            manifest_id: i64,
            #[sqlx(flatten)]
            counts: SeverityCounts,
        }
        let mut found = HashMap::new();
        for chunk in manifest_ids.chunks(IDS_PER_QUERY) {
            let sql = format!(
                "SELECT manifest_id, critical, high, medium, low, unknown \
                 FROM {} v WHERE manifest_id IN ({})",
                counted_summaries(1),
                placeholders(2, chunk.len())
            );
            let mut query = sqlx::query_as::<_, Row>(&sql)
                .persistent(false)
                .bind(self.now());
            for id in chunk {
                query = query.bind(*id);
            }
            for row in query.fetch_all(&self.reader).await? {
                found.insert(row.manifest_id, row.counts);
            }
        }
        Ok(found)
    }

    /// Images affected and findings per severity, over the repositories `viewer` may read in
    /// `namespace` ("" for all).
    pub async fn vulnerability_totals(
        &self,
        viewer: &CatalogViewer<'_>,
        namespace: &str,
    ) -> Result<VulnerabilityTotals> {
        let sql = format!(
            "{READABLE}SELECT \
             CAST(COALESCE(SUM(CASE WHEN v.critical > 0 THEN 1 ELSE 0 END), 0) AS BIGINT) \
              AS images_critical, \
             CAST(COALESCE(SUM(CASE WHEN v.high > 0 THEN 1 ELSE 0 END), 0) AS BIGINT) \
              AS images_high, \
             CAST(COALESCE(SUM(CASE WHEN v.medium > 0 THEN 1 ELSE 0 END), 0) AS BIGINT) \
              AS images_medium, \
             CAST(COALESCE(SUM(CASE WHEN v.low > 0 THEN 1 ELSE 0 END), 0) AS BIGINT) \
              AS images_low, \
             CAST(COALESCE(SUM(CASE WHEN v.unknown > 0 THEN 1 ELSE 0 END), 0) AS BIGINT) \
              AS images_unknown, \
             CAST(COALESCE(SUM(v.critical), 0) AS BIGINT) AS critical, \
             CAST(COALESCE(SUM(v.high), 0) AS BIGINT) AS high, \
             CAST(COALESCE(SUM(v.medium), 0) AS BIGINT) AS medium, \
             CAST(COALESCE(SUM(v.low), 0) AS BIGINT) AS low, \
             CAST(COALESCE(SUM(v.unknown), 0) AS BIGINT) AS unknown \
             FROM {} v WHERE v.repository_id IN (SELECT id FROM readable)",
            counted_summaries(7)
        );
        Ok(bind_viewer!(sqlx::query_as(&sql), viewer, namespace)
            .bind(self.now())
            .fetch_one(&self.reader)
            .await?)
    }

    /// The images with findings `viewer` may read in `namespace`, most dangerous first (by
    /// critical findings, then high, medium, low, unknown), after `after` (the counts and
    /// manifest id of the previous page's last), `n` at most.
    pub async fn most_vulnerable(
        &self,
        viewer: &CatalogViewer<'_>,
        namespace: &str,
        after: Option<(SeverityCounts, i64)>,
        n: u32,
    ) -> Result<Vec<DangerRow>> {
        let sql = format!(
            "{READABLE}SELECT v.manifest_id, r.name AS repository, v.digest, v.critical, \
             v.high, v.medium, v.low, v.unknown \
             FROM {} v JOIN readable r ON r.id = v.repository_id \
             WHERE (v.critical > 0 OR v.high > 0 OR v.medium > 0 OR v.low > 0 OR v.unknown > 0) \
             AND ($7 = 0 OR (v.critical, v.high, v.medium, v.low, v.unknown, v.manifest_id) \
               < ($8, $9, $10, $11, $12, $13)) \
             ORDER BY v.critical DESC, v.high DESC, v.medium DESC, v.low DESC, \
             v.unknown DESC, v.manifest_id DESC LIMIT $14",
            counted_summaries(15)
        );
        let (c, id) = after.unwrap_or_default();
        Ok(bind_viewer!(sqlx::query_as(&sql), viewer, namespace)
            .bind(i64::from(after.is_some()))
            .bind(c.critical)
            .bind(c.high)
            .bind(c.medium)
            .bind(c.low)
            .bind(c.unknown)
            .bind(id)
            .bind(i64::from(n))
            .bind(self.now())
            .fetch_all(&self.reader)
            .await?)
    }

    /// The advisories `id` names: the advisory of that id and those listing it as an alias.
    pub async fn advisories_named(&self, id: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM advisories WHERE id = $1 \
             UNION SELECT advisory_id FROM advisory_aliases WHERE alias = $1 ORDER BY 1",
        )
        .bind(id)
        .fetch_all(&self.reader)
        .await?)
    }

    /// The findings of `advisory_ids` in the images `viewer` may read: those of the first `n`
    /// images (by manifest id) after manifest `after` (0 for the first page).
    pub async fn affected_images(
        &self,
        viewer: &CatalogViewer<'_>,
        advisory_ids: &[String],
        after: i64,
        n: u32,
    ) -> Result<Vec<AffectedRow>> {
        if advisory_ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids = placeholders(10, advisory_ids.len());
        let sql = format!(
            "{READABLE}SELECT f.manifest_id, r.name AS repository, m.digest, f.child_digest, \
             f.advisory_id, f.package, f.installed_version, f.fixed_version \
             FROM findings f JOIN manifests m ON m.id = f.manifest_id \
             JOIN readable r ON r.id = f.repository_id \
             WHERE f.advisory_id IN ({ids}) AND {} AND f.manifest_id IN \
              (SELECT DISTINCT g.manifest_id FROM findings g \
               JOIN manifests gm ON gm.id = g.manifest_id \
               JOIN readable gr ON gr.id = g.repository_id \
               WHERE g.advisory_id IN ({ids}) AND g.manifest_id > $7 AND {} \
               ORDER BY g.manifest_id LIMIT $8) \
             ORDER BY f.manifest_id, f.advisory_id, f.package, f.child_digest",
            counted("f", "r.name", "m.digest", 9),
            counted("g", "gr.name", "gm.digest", 9),
        );
        let mut query = bind_viewer!(sqlx::query_as(&sql).persistent(false), viewer, "")
            .bind(after)
            .bind(i64::from(n))
            .bind(self.now());
        for id in advisory_ids {
            query = query.bind(id.as_str());
        }
        Ok(query.fetch_all(&self.reader).await?)
    }

    /// The tags `viewer` may read, in repositories where one of `advisory_ids` affects an
    /// image, whose image was matched and has no finding of them: where it is fixed.
    pub async fn fixed_tags(
        &self,
        viewer: &CatalogViewer<'_>,
        advisory_ids: &[String],
    ) -> Result<Vec<RepositoryTag>> {
        if advisory_ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids = placeholders(7, advisory_ids.len());
        let sql = format!(
            "{READABLE}SELECT r.name AS repository, t.name AS tag FROM tags t \
             JOIN readable r ON r.id = t.repository_id \
             JOIN vulnerability_summaries v ON v.manifest_id = t.manifest_id \
             WHERE t.repository_id IN \
              (SELECT DISTINCT g.repository_id FROM findings g WHERE g.advisory_id IN ({ids})) \
             AND NOT EXISTS (SELECT 1 FROM findings f WHERE f.manifest_id = t.manifest_id \
              AND f.advisory_id IN ({ids})) \
             ORDER BY r.name, t.name"
        );
        let mut query = bind_viewer!(sqlx::query_as(&sql).persistent(false), viewer, "");
        for id in advisory_ids {
            query = query.bind(id.as_str());
        }
        Ok(query.fetch_all(&self.reader).await?)
    }

    /// For each of `advisory_ids`, the first `per_advisory` tags (in name order) of
    /// repository `repository_id` whose image was matched and has no finding of it: where
    /// it is fixed, with how many such tags there are. One query per 500 advisories.
    pub async fn fixed_tags_in_repository(
        &self,
        repository_id: i64,
        advisory_ids: &[&str],
        per_advisory: u32,
    ) -> Result<Vec<FixedTag>> {
        let mut out = Vec::new();
        for chunk in advisory_ids.chunks(IDS_PER_QUERY) {
            let sql = format!(
                "SELECT advisory_id, tag, fixed_count FROM \
                  (SELECT a.id AS advisory_id, t.name AS tag, \
                    ROW_NUMBER() OVER (PARTITION BY a.id ORDER BY t.name) AS n, \
                    COUNT(*) OVER (PARTITION BY a.id) AS fixed_count \
                   FROM tags t JOIN vulnerability_summaries v ON v.manifest_id = t.manifest_id \
                   JOIN advisories a ON a.id IN ({}) \
                   WHERE t.repository_id = $1 AND NOT EXISTS (SELECT 1 FROM findings f \
                    WHERE f.manifest_id = t.manifest_id AND f.advisory_id = a.id)) ranked \
                 WHERE n <= $2 ORDER BY advisory_id, tag",
                placeholders(3, chunk.len())
            );
            let mut query = sqlx::query_as(&sql)
                .persistent(false)
                .bind(repository_id)
                .bind(i64::from(per_advisory));
            for id in chunk {
                query = query.bind(*id);
            }
            out.extend(query.fetch_all(&self.reader).await?);
        }
        Ok(out)
    }

    /// The tags of `manifest_ids`, by manifest, in name order.
    pub async fn tags_by_manifest(&self, manifest_ids: &[i64]) -> Result<HashMap<i64, Vec<Tag>>> {
        let mut tags: HashMap<i64, Vec<Tag>> = HashMap::new();
        for chunk in manifest_ids.chunks(IDS_PER_QUERY) {
            for t in self.tags_of_manifests(chunk).await? {
                tags.entry(t.manifest_id).or_default().push(t.name);
            }
        }
        Ok(tags)
    }
}
