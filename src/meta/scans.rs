//! Scans: what each layer blob says about installed software, kept per (layer digest,
//! indexer version) so a layer is read once; the record of every image scan; and the merged
//! inventory each successful scan found, which matching reads without touching a blob.

use super::{
    Meta,
    webhooks::{NewEvent, insert_event},
};
use crate::{
    error::Result,
    oci::{Digest, RepoName},
    scan::layers::LayerIndex,
    webhooks::EventKind,
};

/// What is stored about one layer at one indexer version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredLayer {
    /// The layer was read: its index.
    Indexed(LayerIndex),
    /// The layer could not be read (a corrupt or truncated archive): why.
    Failed(String),
}

#[derive(sqlx::FromRow)]
struct LayerRow {
    inventory: Option<String>,
    error: Option<String>,
}

/// A scan to record.
#[derive(Debug, Clone)]
pub struct NewScan<'a> {
    /// The repository of the image.
    pub repository_id: i64,
    /// Its name (for the `scan_completed` event).
    pub repository: &'a RepoName,
    /// The image's manifest digest.
    pub digest: &'a Digest,
    /// When the scan started (Unix seconds).
    pub started_at: i64,
    /// When it finished (Unix seconds).
    pub finished_at: i64,
    /// The indexer version that read its layers.
    pub indexer_version: i64,
    /// Why it failed; `None` for a successful scan.
    pub error: Option<&'a str>,
    /// Layer blobs decompressed for it (the others were known).
    pub layers_read: i64,
    /// How long it took.
    pub duration_ms: i64,
}

/// One scan of an image, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ScanRow {
    /// The scan's id.
    pub id: i64,
    /// When it started (Unix seconds).
    pub started_at: i64,
    /// When it finished (Unix seconds).
    pub finished_at: i64,
    /// The indexer version that read the layers.
    pub indexer_version: i64,
    /// `ok` or `error`.
    pub status: String,
    /// Why it failed.
    pub error: Option<String>,
    /// Packages found.
    pub packages: i64,
    /// Layer blobs decompressed for it.
    pub layers_read: i64,
    /// How long it took.
    pub duration_ms: i64,
}

/// One package of an image's inventory, as stored with its scan.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PackageRow {
    /// Its position in the scan's inventory (the listing's cursor).
    pub seq: i64,
    /// The image manifest the package was found in (the child of an index, or the image).
    pub child_digest: Digest,
    /// That manifest's operating system, for children of an index.
    pub os: Option<String>,
    /// That manifest's architecture, for children of an index.
    pub architecture: Option<String>,
    /// That manifest's architecture variant, for children of an index.
    pub variant: Option<String>,
    /// The OSV ecosystem (`Debian:12`).
    pub ecosystem: String,
    /// The binary package.
    pub name: String,
    /// The binary package's version.
    pub version: String,
    /// The source package (the name advisories use for dpkg).
    pub source_name: String,
    /// The source package's version.
    pub source_version: String,
    /// The package URL.
    pub purl: String,
    /// The digest of the layer that introduced it.
    pub layer: String,
}

/// Which packages of an inventory a listing holds.
#[derive(Debug, Clone, Default)]
pub struct PackageFilter {
    /// Only this ecosystem (`Debian:12`).
    pub ecosystem: Option<String>,
    /// Only packages of this binary or source name.
    pub name: Option<String>,
}

const PACKAGE_COLUMNS: &str = "seq, child_digest, os, architecture, variant, ecosystem, name, \
    version, source_name, source_version, purl, layer";

impl Meta {
    /// What is known about layer `digest` at `indexer_version`, if it was read.
    pub async fn scanned_layer(
        &self,
        digest: &Digest,
        indexer_version: i64,
    ) -> Result<Option<StoredLayer>> {
        let row: Option<LayerRow> = sqlx::query_as(
            "SELECT inventory, error FROM scan_layers WHERE digest = $1 AND indexer_version = $2",
        )
        .bind(digest.to_string())
        .bind(indexer_version)
        .fetch_optional(&self.reader)
        .await?;
        Ok(row.map(|row| match (row.inventory, row.error) {
            (Some(json), _) => serde_json::from_str(&json)
                .map(StoredLayer::Indexed)
                .unwrap_or_else(|e| StoredLayer::Failed(format!("stored index unreadable: {e}"))),
            (None, error) => StoredLayer::Failed(error.unwrap_or_default()),
        }))
    }

    /// Stores what layer `digest` says at `indexer_version` (once: a concurrent scan that read
    /// it too leaves the first row).
    pub async fn put_scanned_layer(
        &self,
        digest: &Digest,
        indexer_version: i64,
        layer: &StoredLayer,
    ) -> Result<()> {
        let (inventory, error) = match layer {
            StoredLayer::Indexed(index) => (
                Some(serde_json::to_string(index).map_err(anyhow::Error::from)?),
                None,
            ),
            StoredLayer::Failed(error) => (None, Some(error.as_str())),
        };
        sqlx::query(
            "INSERT INTO scan_layers (digest, indexer_version, inventory, error, indexed_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (digest, indexer_version) DO NOTHING",
        )
        .bind(digest.to_string())
        .bind(indexer_version)
        .bind(inventory)
        .bind(error)
        .bind(self.now())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Records a finished scan and, for a successful one, the inventory it found (`packages`
    /// without their `seq`, which is their position), with its `scan_completed` event.
    /// Returns the scan's id.
    pub async fn record_scan(&self, scan: &NewScan<'_>, packages: &[PackageRow]) -> Result<i64> {
        let mut tx = self.writer.begin().await?;
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO scans (repository_id, manifest_digest, started_at, finished_at, \
             indexer_version, status, error, packages, layers_read, duration_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
        )
        .bind(scan.repository_id)
        .bind(scan.digest.to_string())
        .bind(scan.started_at)
        .bind(scan.finished_at)
        .bind(scan.indexer_version)
        .bind(if scan.error.is_some() { "error" } else { "ok" })
        .bind(scan.error)
        .bind(packages.len() as i64)
        .bind(scan.layers_read)
        .bind(scan.duration_ms)
        .fetch_one(&mut *tx)
        .await?;
        for (seq, p) in packages.iter().enumerate() {
            sqlx::query(
                "INSERT INTO scan_packages (scan_id, seq, child_digest, os, architecture, \
                 variant, ecosystem, name, version, source_name, source_version, purl, layer) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            )
            .bind(id)
            .bind(seq as i64)
            .bind(p.child_digest.to_string())
            .bind(p.os.as_deref())
            .bind(p.architecture.as_deref())
            .bind(p.variant.as_deref())
            .bind(&p.ecosystem)
            .bind(&p.name)
            .bind(&p.version)
            .bind(&p.source_name)
            .bind(&p.source_version)
            .bind(&p.purl)
            .bind(&p.layer)
            .execute(&mut *tx)
            .await?;
        }
        let digest = scan.digest.to_string();
        let detail = serde_json::json!({
            "scan_id": id,
            "status": if scan.error.is_some() { "error" } else { "ok" },
            "error": scan.error,
            "packages": packages.len(),
            "layers_read": scan.layers_read,
            "duration_ms": scan.duration_ms,
        });
        let event = NewEvent {
            digest: Some(&digest),
            detail: Some(&detail),
            ..NewEvent::new(EventKind::ScanCompleted, scan.repository.as_str())
        };
        insert_event(&mut *tx, &event, -1.0, scan.finished_at).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// The scans of image `digest` in repository `repository_id`, newest first, those with
    /// an id below `before` (0: from the newest); at most `limit`.
    pub async fn scans(
        &self,
        repository_id: i64,
        digest: &Digest,
        before: i64,
        limit: i64,
    ) -> Result<Vec<ScanRow>> {
        Ok(sqlx::query_as(
            "SELECT id, started_at, finished_at, indexer_version, status, error, packages, \
             layers_read, duration_ms FROM scans \
             WHERE repository_id = $1 AND manifest_digest = $2 AND ($3 = 0 OR id < $3) \
             ORDER BY id DESC LIMIT $4",
        )
        .bind(repository_id)
        .bind(digest.to_string())
        .bind(before)
        .bind(limit)
        .fetch_all(&self.reader)
        .await?)
    }

    /// The id of the newest successful scan of image `digest`, if any.
    pub async fn latest_inventory_scan(
        &self,
        repository_id: i64,
        digest: &Digest,
    ) -> Result<Option<i64>> {
        let (id,): (Option<i64>,) = sqlx::query_as(
            "SELECT MAX(id) FROM scans WHERE repository_id = $1 AND manifest_digest = $2 \
             AND status = 'ok'",
        )
        .bind(repository_id)
        .bind(digest.to_string())
        .fetch_one(&self.reader)
        .await?;
        Ok(id)
    }

    /// A page of the inventory scan `scan_id` found: the packages after position `after`
    /// (-1: from the start) that pass `filter`, at most `limit`.
    pub async fn scan_packages(
        &self,
        scan_id: i64,
        filter: &PackageFilter,
        after: i64,
        limit: i64,
    ) -> Result<Vec<PackageRow>> {
        let sql = format!(
            "SELECT {PACKAGE_COLUMNS} FROM scan_packages WHERE scan_id = $1 AND seq > $2 \
             AND (CAST($3 AS TEXT) IS NULL OR ecosystem = $3) \
             AND (CAST($4 AS TEXT) IS NULL OR name = $4 OR source_name = $4) \
             ORDER BY seq LIMIT $5"
        );
        Ok(sqlx::query_as(&sql)
            .bind(scan_id)
            .bind(after)
            .bind(filter.ecosystem.as_deref())
            .bind(filter.name.as_deref())
            .bind(limit)
            .fetch_all(&self.reader)
            .await?)
    }

    /// The name of repository `repository_id` (a queued scan names its repository by id),
    /// if it still exists.
    pub async fn scan_repository_name(&self, repository_id: i64) -> Result<Option<RepoName>> {
        let row: Option<(RepoName,)> =
            sqlx::query_as("SELECT name FROM repositories WHERE id = $1")
                .bind(repository_id)
                .fetch_optional(&self.reader)
                .await?;
        Ok(row.map(|(name,)| name))
    }

    /// The merged inventory of image `digest` (every package its newest successful scan
    /// found; for an index, its scanned children's), or `None` when it has none. Matching
    /// joins advisories with `(ecosystem, source_name, source_version)` of these rows.
    pub async fn image_packages(
        &self,
        repository_id: i64,
        digest: &Digest,
    ) -> Result<Option<Vec<PackageRow>>> {
        let Some(scan_id) = self.latest_inventory_scan(repository_id, digest).await? else {
            return Ok(None);
        };
        let sql =
            format!("SELECT {PACKAGE_COLUMNS} FROM scan_packages WHERE scan_id = $1 ORDER BY seq");
        Ok(Some(
            sqlx::query_as(&sql)
                .bind(scan_id)
                .fetch_all(&self.reader)
                .await?,
        ))
    }
}
