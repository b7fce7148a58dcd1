//! Scanning images: the inventory of what is installed, read from the layer blobs once per
//! indexer version. An image's layers are looked up in the index first; only layers never
//! read at [`INDEXER_VERSION`] are streamed from the blob store (in a blocking task, through
//! [`crate::scan::layers::index_layer`]) and their index stored, so a base layer shared by
//! many images is decompressed once (`berth_scan_layers_read_total`). The layers are then
//! merged per image and the inventory recorded with the scan.
//!
//! An index is scanned child by child (each with its platform); attestation manifests
//! (platform `unknown/unknown`) are not, but the SBOMs in BuildKit's attestation of a child
//! are read with the SBOM referrers of that child. A layer that cannot be read (truncated, corrupt, a
//! decompression bomb) fails the scan with an error naming it, and changes nothing else.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

use futures::TryStreamExt;
use serde::{Deserialize, Serialize};

use super::Registry;
use crate::{
    error::{Error, Result},
    meta::{
        jobs::Job,
        scans::{NewScan, PackageFilter, PackageRow, ScanRow, StoredLayer},
    },
    metrics::ScanFigures,
    oci::{Digest, Manifest, MediaType, RepoName, manifest::Platform},
    scan::{
        layers::{INDEXER_VERSION, LayerLimits, index_layer, merge},
        sbom,
    },
};

/// The most repositories `berth_vulnerability_findings` has series for.
const FINDINGS_REPOSITORIES_MAX: i64 = 20;

/// One scan of an image, as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ScanRecord {
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
    /// Why it failed (naming the layer when one could not be read); `null` when it did not.
    pub error: Option<String>,
    /// Packages found.
    pub packages: i64,
    /// How long it took, in milliseconds.
    pub duration_ms: i64,
    /// Layer blobs decompressed for this scan (layers read before are not read again).
    pub layers_read: i64,
}

impl From<ScanRow> for ScanRecord {
    fn from(r: ScanRow) -> ScanRecord {
        ScanRecord {
            id: r.id,
            started_at: r.started_at,
            finished_at: r.finished_at,
            indexer_version: r.indexer_version,
            status: r.status,
            error: r.error,
            packages: r.packages,
            duration_ms: r.duration_ms,
            layers_read: r.layers_read,
        }
    }
}

/// The platform of an index's child.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PackagePlatform {
    /// Operating system (`linux`).
    pub os: Option<String>,
    /// CPU architecture (`arm64`).
    pub architecture: Option<String>,
    /// Architecture variant (`v8`).
    pub variant: Option<String>,
}

/// One installed package of an image.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ImagePackage {
    /// The OSV ecosystem (`Debian:12`, `Alpine:v3.19`).
    pub ecosystem: String,
    /// The binary package's name.
    pub name: String,
    /// The binary package's version.
    pub version: String,
    /// The source package (the name Debian's advisories use).
    pub source_name: String,
    /// The source package's version.
    pub source_version: String,
    /// The package URL.
    pub purl: String,
    /// The digest of the layer that introduced this version.
    pub layer: String,
    /// The platform of the index's child it was found in; `null` for an image.
    pub platform: Option<PackagePlatform>,
    /// The listing's cursor after this item.
    #[serde(skip)]
    pub seq: i64,
}

impl PackagePlatform {
    /// The platform of the child a package was found in; `None` for an image's own.
    pub(super) fn of(r: &PackageRow) -> Option<PackagePlatform> {
        (r.os.is_some() || r.architecture.is_some()).then(|| PackagePlatform {
            os: r.os.clone(),
            architecture: r.architecture.clone(),
            variant: r.variant.clone(),
        })
    }
}

impl From<PackageRow> for ImagePackage {
    fn from(r: PackageRow) -> ImagePackage {
        let platform = PackagePlatform::of(&r);
        ImagePackage {
            ecosystem: r.ecosystem,
            name: r.name,
            version: r.version,
            source_name: r.source_name,
            source_version: r.source_version,
            purl: r.purl,
            layer: r.layer,
            platform,
            seq: r.seq,
        }
    }
}

/// The few fields of an index read to choose its children.
#[derive(Deserialize)]
struct IndexChildren {
    #[serde(default)]
    manifests: Vec<IndexChild>,
}

#[derive(Deserialize)]
struct IndexChild {
    digest: String,
    #[serde(default)]
    platform: Option<Platform>,
    #[serde(default)]
    annotations: HashMap<String, String>,
}

impl IndexChild {
    /// BuildKit's attestation manifests: platform `unknown/unknown`, or so annotated.
    fn is_attestation(&self) -> bool {
        let unknown = self.platform.as_ref().is_some_and(|p| {
            p.os.as_deref() == Some("unknown") && p.architecture.as_deref() == Some("unknown")
        });
        unknown
            || self
                .annotations
                .get("vnd.docker.reference.type")
                .is_some_and(|t| t == "attestation-manifest")
    }
}

/// The layers of a manifest holding SBOMs, with their annotations.
#[derive(Deserialize)]
struct SbomLayers {
    #[serde(default)]
    layers: Vec<SbomLayer>,
}

#[derive(Deserialize)]
struct SbomLayer {
    digest: String,
    size: u64,
    #[serde(default)]
    annotations: HashMap<String, String>,
}

/// An image manifest to scan: itself, or a child of the index scanned.
pub(super) struct Target {
    pub(super) digest: Digest,
    pub(super) platform: Option<Platform>,
    /// Its config blob.
    pub(super) config: Option<Digest>,
    pub(super) layers: Vec<Digest>,
    /// The index's attestation manifests about this image (BuildKit's
    /// `vnd.docker.reference.digest`), whose SBOM layers are read like SBOM referrers.
    attestations: Vec<Digest>,
}

/// The most SBOM referrers of one image read by a scan.
const SBOMS_READ_MAX: u32 = 16;

/// The largest SBOM layer read (syft's SBOM of a large image is a few MiB).
const SBOM_READ_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// A blob read failed in the store (not in the layer's bytes): the scan is retried later,
/// nothing is stored about the layer.
struct StoreFailed(Error);

impl Registry {
    /// Scans image `digest` of `repo` now and records the scan (also when it fails on a
    /// layer, with the error naming it).
    pub async fn scan_image(&self, repo: &RepoName, digest: &Digest) -> Result<ScanRecord> {
        let repository_id = self
            .meta
            .repository_id(repo)
            .await?
            .ok_or(Error::NameUnknown)?;
        self.scan_image_in(repo, repository_id, digest, Urgency::Asked)
            .await
    }

    /// Queues a scan of image `digest` of `repo` (once: a queued scan absorbs later requests).
    pub async fn queue_scan(&self, repo: &RepoName, digest: &Digest) -> Result<()> {
        let repository_id = self
            .meta
            .repository_id(repo)
            .await?
            .ok_or(Error::NameUnknown)?;
        if self
            .meta
            .manifest_by_digest(repo, digest, false)
            .await?
            .is_none()
        {
            return Err(Error::ManifestUnknown);
        }
        self.queue_job(&Job::ScanImage {
            repository_id,
            digest: digest.to_string(),
        })
        .await
    }

    /// Before a manifest push is stored: the image whose scan goes with it, when the scanning
    /// policy in effect for `repo` has `scan_on_push` (by default `scan.on_push`) and the
    /// manifest is an image or an index (not an artifact such as a signature); for an SBOM
    /// referrer, its subject. The index queues it in the push's transaction.
    pub(super) async fn scan_for_push<'m>(
        &self,
        repo: &RepoName,
        digest: &'m Digest,
        manifest: &'m Manifest,
    ) -> Option<&'m Digest> {
        // An SBOM referrer adds to its subject's inventory: the subject is scanned again.
        let sbom_subject = manifest.subject.as_ref().filter(|_| {
            manifest
                .artifact_type
                .as_deref()
                .is_some_and(sbom::is_sbom_media_type)
        });
        let target = match sbom_subject {
            Some(subject) => subject,
            None if super::scan_policy::scannable(manifest) => digest,
            None => return None,
        };
        match self.scans_on_push(repo).await {
            Ok(true) => Some(target),
            Ok(false) => None,
            Err(e) => {
                tracing::warn!(%repo, %digest, error = %e, "could not read the scanning policy");
                None
            }
        }
    }

    /// Reads the scanning gauges (`berth_vulnerable_images`, `berth_vulnerability_findings`,
    /// `berth_scans_queued`, `berth_advisories_age_seconds`) for a scrape.
    pub async fn refresh_scan_metrics(&self) -> Result<()> {
        let (critical_images, high_images) = self.meta.vulnerable_image_counts().await?;
        let now = self.clock.now();
        let figures = ScanFigures {
            critical_images,
            high_images,
            by_repository: self
                .meta
                .findings_by_repository(FINDINGS_REPOSITORIES_MAX)
                .await?,
            scans_queued: self.meta.queued_scans().await?,
            advisories_age_secs: self
                .meta
                .advisories_imported_at()
                .await?
                .map(|at| (now - at).max(0)),
        };
        self.metrics.set_scan_figures(&figures);
        Ok(())
    }

    /// Runs a queued scan.
    pub(super) async fn run_scan_job(&self, repository_id: i64, digest: &str) -> Result<()> {
        let digest: Digest = digest
            .parse()
            .map_err(|e| Error::Internal(anyhow::anyhow!("scan job digest {digest:?}: {e}")))?;
        // A repository or image deleted since: nothing to scan.
        let Some(repo) = self.meta.scan_repository_name(repository_id).await? else {
            return Ok(());
        };
        match self
            .scan_image_in(&repo, repository_id, &digest, Urgency::Background)
            .await
        {
            Ok(_) | Err(Error::ManifestUnknown) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The scans of image `digest`, newest first: those older than scan `before` (0: from the
    /// newest), at most `limit`.
    pub async fn image_scans(
        &self,
        repo: &RepoName,
        digest: &Digest,
        before: i64,
        limit: u32,
    ) -> Result<Vec<ScanRecord>> {
        let repository_id = self.image_repository(repo, digest).await?;
        let rows = self
            .meta
            .scans(repository_id, digest, before, i64::from(limit))
            .await?;
        Ok(rows.into_iter().map(ScanRecord::from).collect())
    }

    /// A page of image `digest`'s inventory as its newest successful scan found it: the
    /// packages after position `after` (-1 from the start) passing `filter`, at most `limit`.
    /// `None` when the image has no successful scan.
    pub async fn image_packages(
        &self,
        repo: &RepoName,
        digest: &Digest,
        filter: &PackageFilter,
        after: i64,
        limit: u32,
    ) -> Result<Option<Vec<ImagePackage>>> {
        let repository_id = self.image_repository(repo, digest).await?;
        let Some(scan_id) = self
            .meta
            .latest_inventory_scan(repository_id, digest)
            .await?
        else {
            return Ok(None);
        };
        let rows = self
            .meta
            .scan_packages(scan_id, filter, after, i64::from(limit))
            .await?;
        Ok(Some(rows.into_iter().map(ImagePackage::from).collect()))
    }

    /// Image `digest` of `repo` as a bill of materials in `format`, made now from the
    /// inventory of its newest successful scan (no blob is read); `None` when it was never
    /// scanned successfully.
    pub async fn image_sbom(
        &self,
        repo: &RepoName,
        digest: &Digest,
        format: sbom::Format,
    ) -> Result<Option<serde_json::Value>> {
        let repository_id = self.image_repository(repo, digest).await?;
        let Some(rows) = self.meta.image_packages(repository_id, digest).await? else {
            return Ok(None);
        };
        let components: Vec<sbom::Component<'_>> = rows
            .iter()
            .map(|r| sbom::Component {
                name: &r.name,
                version: &r.version,
                purl: &r.purl,
                ecosystem: &r.ecosystem,
                source: format!("{}@{}", r.source_name, r.source_version),
                layer: &r.layer,
                platform: PackagePlatform::of(r).map(|p| {
                    [p.os, p.architecture, p.variant]
                        .into_iter()
                        .flatten()
                        .collect::<Vec<_>>()
                        .join("/")
                }),
            })
            .collect();
        let digest = digest.to_string();
        let subject = sbom::Subject {
            repository: repo.as_str(),
            digest: &digest,
        };
        Ok(Some(sbom::document(
            format,
            &subject,
            &components,
            self.clock().now(),
            env!("CARGO_PKG_VERSION"),
            &uuid::Uuid::new_v4().to_string(),
        )))
    }

    /// The id of `repo` when it holds manifest `digest`.
    pub(super) async fn image_repository(&self, repo: &RepoName, digest: &Digest) -> Result<i64> {
        let manifest = self
            .meta
            .manifest_by_digest(repo, digest, false)
            .await?
            .ok_or(Error::ManifestUnknown)?;
        Ok(manifest.repository_id)
    }

    async fn scan_image_in(
        &self,
        repo: &RepoName,
        repository_id: i64,
        digest: &Digest,
        urgency: Urgency,
    ) -> Result<ScanRecord> {
        let started = Instant::now();
        let started_at = self.clock().now();
        let mut layers_read = 0;
        let outcome = match self.scan_targets(repo, digest).await {
            Ok(targets) => match self
                .inventory_of(&targets, &mut layers_read, urgency)
                .await?
            {
                Ok(mut rows) => {
                    self.add_sbom_packages(repo, &targets, &mut rows).await?;
                    Ok(rows)
                }
                Err(why) => Err(why),
            },
            Err(Error::ManifestUnknown) => return Err(Error::ManifestUnknown),
            Err(Error::ManifestInvalid(why)) => Err(why),
            Err(e) => return Err(e),
        };
        let (error, packages) = match outcome {
            Ok(packages) => (None, packages),
            Err(error) => (Some(error), Vec::new()),
        };
        let scan = NewScan {
            repository_id,
            repository: repo,
            digest,
            started_at,
            finished_at: self.clock().now(),
            indexer_version: INDEXER_VERSION,
            error: error.as_deref(),
            layers_read,
            duration_ms: started.elapsed().as_millis().min(i64::MAX as u128) as i64,
        };
        let id = self.meta.record_scan(&scan, &packages).await?;
        // A failure here leaves the scan recorded; the findings are matched on the next read.
        if error.is_none()
            && let Err(e) = self.refresh_findings(repository_id, digest).await
        {
            tracing::warn!(%repo, %digest, error = %e, "could not store the scan's findings");
        }
        tracing::info!(%repo, %digest, scan = id, packages = packages.len(), layers_read, error = ?error, "image scanned");
        self.apply_scan_policy_logged(repo, digest).await;
        self.metrics
            .scan_finished(error.is_none(), started.elapsed().as_secs_f64());
        Ok(ScanRecord {
            id,
            started_at: scan.started_at,
            finished_at: scan.finished_at,
            indexer_version: INDEXER_VERSION,
            status: if error.is_some() { "error" } else { "ok" }.to_owned(),
            packages: packages.len() as i64,
            error: error.clone(),
            duration_ms: scan.duration_ms,
            layers_read,
        })
    }

    /// The image manifests `digest` stands for: itself, or the children of an index
    /// (attestations left out). `ManifestInvalid` when it is no image.
    pub(super) async fn scan_targets(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Vec<Target>> {
        let stored = self
            .meta
            .manifest_by_digest(repo, digest, true)
            .await?
            .ok_or(Error::ManifestUnknown)?;
        let manifest = Manifest::parse(&stored.payload, Some(&stored.media_type))
            .map_err(|e| Error::ManifestInvalid(e.to_string()))?;
        if !manifest.media_type.is_index() {
            return Ok(vec![image_target(digest.clone(), None, &manifest)?]);
        }
        let index: IndexChildren = serde_json::from_slice(&stored.payload)
            .map_err(|e| Error::ManifestInvalid(format!("index: {e}")))?;
        let mut attestations: HashMap<&str, Vec<Digest>> = HashMap::new();
        for child in index.manifests.iter().filter(|c| c.is_attestation()) {
            if let (Some(about), Ok(digest)) = (
                child.annotations.get("vnd.docker.reference.digest"),
                child.digest.parse::<Digest>(),
            ) {
                attestations.entry(about.as_str()).or_default().push(digest);
            }
        }
        let mut targets = Vec::new();
        for child in index.manifests.iter().filter(|c| !c.is_attestation()) {
            let child_digest: Digest = child
                .digest
                .parse()
                .map_err(|e| Error::ManifestInvalid(format!("child {}: {e}", child.digest)))?;
            let stored = self
                .meta
                .manifest_by_digest(repo, &child_digest, true)
                .await?
                .ok_or_else(|| {
                    Error::ManifestInvalid(format!("child {child_digest} is not in {repo}"))
                })?;
            let manifest = Manifest::parse(&stored.payload, Some(&stored.media_type))
                .map_err(|e| Error::ManifestInvalid(format!("child {child_digest}: {e}")))?;
            if manifest.media_type.is_index() {
                // Nested indexes are rare; their images are scanned on their own.
                continue;
            }
            let platform = child.platform.as_ref().map(|p| Platform {
                os: p.os.clone(),
                architecture: p.architecture.clone(),
                variant: p.variant.clone(),
            });
            let mut target = image_target(child_digest, platform, &manifest)?;
            target.attestations = attestations
                .remove(child.digest.as_str())
                .unwrap_or_default();
            targets.push(target);
        }
        Ok(targets)
    }

    /// The merged inventory of `targets` (reading unknown layers); `Err` with a message when a
    /// layer cannot be read.
    async fn inventory_of(
        &self,
        targets: &[Target],
        layers_read: &mut i64,
        urgency: Urgency,
    ) -> Result<std::result::Result<Vec<PackageRow>, String>> {
        let mut known: HashMap<Digest, StoredLayer> = HashMap::new();
        for layer in targets.iter().flat_map(|t| &t.layers) {
            if known.contains_key(layer) {
                continue;
            }
            let stored = match self.meta.scanned_layer(layer, INDEXER_VERSION).await? {
                Some(stored) => stored,
                None => {
                    *layers_read += 1;
                    let stored = match self.read_layer(layer, urgency).await {
                        Ok(stored) => stored,
                        Err(StoreFailed(e)) => return Err(e),
                    };
                    self.meta
                        .put_scanned_layer(layer, INDEXER_VERSION, &stored)
                        .await?;
                    stored
                }
            };
            known.insert(layer.clone(), stored);
        }
        let mut rows = Vec::new();
        for target in targets {
            let mut indexes = Vec::new();
            for layer in &target.layers {
                match known.get(layer) {
                    Some(StoredLayer::Indexed(index)) => indexes.push((layer.to_string(), index)),
                    Some(StoredLayer::Failed(why)) => {
                        return Ok(Err(format!("layer {layer}: {why}")));
                    }
                    None => {}
                }
            }
            let inventory = merge(indexes.iter().map(|(d, i)| (d.as_str(), *i)));
            let platform = target.platform.as_ref();
            for p in inventory.packages {
                rows.push(PackageRow {
                    seq: 0,
                    child_digest: target.digest.clone(),
                    os: platform.and_then(|p| p.os.clone()),
                    architecture: platform.and_then(|p| p.architecture.clone()),
                    variant: platform.and_then(|p| p.variant.clone()),
                    ecosystem: p.ecosystem,
                    name: p.package.name,
                    version: p.package.version,
                    source_name: p.package.source_name,
                    source_version: p.package.source_version,
                    purl: p.purl,
                    layer: p.layer,
                });
            }
        }
        Ok(Ok(rows))
    }

    /// Adds to `rows` the packages that SBOMs pushed as referrers of each of `targets`, or in
    /// its BuildKit attestation, list (CycloneDX or SPDX, bare or in an in-toto statement)
    /// and the layers did not show: their `layer` is the SBOM manifest's digest. An SBOM that cannot be read is logged
    /// and left out; the scan stands on the layers.
    async fn add_sbom_packages(
        &self,
        repo: &RepoName,
        targets: &[Target],
        rows: &mut Vec<PackageRow>,
    ) -> Result<()> {
        // What the layers showed, so that an SBOM adds only what they did not.
        let mut known: std::collections::HashSet<(Digest, String, String, String)> = rows
            .iter()
            .map(|r| {
                let digest = r.child_digest.clone();
                (
                    digest,
                    r.ecosystem.clone(),
                    r.name.clone(),
                    r.version.clone(),
                )
            })
            .collect();
        for target in targets {
            let referrers = self
                .meta
                .referrers(repo, &target.digest, None, "", SBOMS_READ_MAX)
                .await?;
            let sboms = referrers
                .iter()
                .filter(|r| {
                    r.artifact_type
                        .as_deref()
                        .is_some_and(sbom::is_sbom_media_type)
                })
                .map(|r| &r.digest)
                .chain(&target.attestations);
            for sbom_digest in sboms {
                let listed = match self.read_sbom(repo, sbom_digest).await {
                    Ok(listed) => listed,
                    Err(why) => {
                        tracing::warn!(%repo, sbom = %sbom_digest, %why, "SBOM not read");
                        continue;
                    }
                };
                let platform = target.platform.as_ref();
                for p in listed {
                    let key = (
                        target.digest.clone(),
                        p.ecosystem.clone(),
                        p.name.clone(),
                        p.version.clone(),
                    );
                    if !known.insert(key) {
                        continue;
                    }
                    rows.push(PackageRow {
                        seq: 0,
                        child_digest: target.digest.clone(),
                        os: platform.and_then(|p| p.os.clone()),
                        architecture: platform.and_then(|p| p.architecture.clone()),
                        variant: platform.and_then(|p| p.variant.clone()),
                        ecosystem: p.ecosystem,
                        name: p.name,
                        version: p.version,
                        source_name: p.source_name,
                        source_version: p.source_version,
                        purl: p.purl,
                        layer: sbom_digest.to_string(),
                    });
                }
            }
        }
        Ok(())
    }

    /// The packages SBOM manifest `digest` of `repo` lists, from its layers of at most
    /// [`SBOM_READ_MAX_BYTES`]; a layer annotated with an in-toto predicate type that is no
    /// SBOM (BuildKit's provenance beside its SBOM) is skipped.
    async fn read_sbom(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> std::result::Result<Vec<sbom::Listed>, String> {
        let stored = self
            .meta
            .manifest_by_digest(repo, digest, true)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("gone")?;
        let manifest: SbomLayers =
            serde_json::from_slice(&stored.payload).map_err(|e| e.to_string())?;
        let mut listed = Vec::new();
        for layer in manifest.layers.iter().filter(|l| {
            l.annotations
                .get("in-toto.io/predicate-type")
                .is_none_or(|p| sbom::is_sbom_predicate(p))
        }) {
            let digest: Digest = layer.digest.parse().map_err(|e| format!("layer: {e}"))?;
            if layer.size > SBOM_READ_MAX_BYTES {
                return Err(format!(
                    "layer {} has {} bytes, more than {SBOM_READ_MAX_BYTES}",
                    layer.digest, layer.size
                ));
            }
            let bytes = self
                .read_small_blob(&digest)
                .await
                .map_err(|e| e.to_string())?;
            listed.extend(sbom::read(&bytes).map_err(|e| format!("layer {digest}: {e}"))?);
        }
        Ok(listed)
    }

    /// Streams layer `digest` from the store through the indexer (one pass, on a thread of
    /// its own; for a background scan, one the kernel runs only when the CPU would otherwise
    /// be idle, so that scans on push never take CPU time from pushes and pulls). A broken
    /// archive is a [`StoredLayer::Failed`]; a failing store is not the layer's fault and is
    /// returned as [`StoreFailed`].
    async fn read_layer(
        &self,
        digest: &Digest,
        urgency: Urgency,
    ) -> std::result::Result<StoredLayer, StoreFailed> {
        self.metrics.scan_layer_read();
        let stream = self.blobs.read(digest, None).await.map_err(StoreFailed)?;
        let store_failed = Arc::new(AtomicBool::new(false));
        let flag = store_failed.clone();
        let stream = stream.map_err(move |e| {
            flag.store(true, Ordering::Relaxed);
            std::io::Error::other(e)
        });
        let reader = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(stream));
        let (sender, indexed) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("berth-scan".into())
            .spawn(move || {
                if urgency == Urgency::Background {
                    idle_priority();
                }
                sender
                    .send(index_layer(reader, LayerLimits::default()))
                    .ok();
            })
            .map_err(|e| StoreFailed(Error::Internal(anyhow::anyhow!("layer indexer: {e}"))))?;
        let indexed = indexed.await.map_err(|_| {
            StoreFailed(Error::Internal(anyhow::anyhow!(
                "layer indexer: the thread stopped"
            )))
        })?;
        match indexed {
            Ok(index) => Ok(StoredLayer::Indexed(index)),
            Err(e) if store_failed.load(Ordering::Relaxed) => {
                Err(StoreFailed(Error::Unavailable {
                    what: "blob store",
                    source: anyhow::anyhow!("reading layer {digest}: {e}"),
                }))
            }
            Err(e) => Ok(StoredLayer::Failed(e.to_string())),
        }
    }
}

/// Who waits for a scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Urgency {
    /// A caller, in its request (`?wait=true`).
    Asked,
    /// Nobody: a queued scan (on push, on demand without waiting).
    Background,
}

/// Puts the calling thread in Linux's `SCHED_IDLE` class (any thread may enter it): it runs
/// only on CPU time no other thread wants. Where that fails the scan runs as before.
fn idle_priority() {
    use thread_priority::{
        NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy,
        set_thread_priority_and_policy, thread_native_id,
    };
    if let Err(e) = set_thread_priority_and_policy(
        thread_native_id(),
        ThreadPriority::Min,
        ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle),
    ) {
        tracing::debug!(error = ?e, "the layer indexer runs at normal priority");
    }
}

/// The layers of image manifest `manifest` (those held elsewhere, foreign layers, left out);
/// `ManifestInvalid` when it is no image (a signature, an SBOM, another artifact).
fn image_target(digest: Digest, platform: Option<Platform>, manifest: &Manifest) -> Result<Target> {
    let is_image = matches!(
        manifest.media_type,
        MediaType::OciManifest | MediaType::DockerManifest
    ) && manifest
        .config_media_type
        .as_deref()
        .is_some_and(Platform::is_image_config);
    if !is_image {
        return Err(Error::ManifestInvalid(format!(
            "{digest} is not a container image (an artifact or an unknown config type)"
        )));
    }
    Ok(Target {
        digest,
        platform,
        config: manifest.config.as_ref().map(|c| c.digest.clone()),
        attestations: Vec::new(),
        layers: manifest
            .layers
            .iter()
            .filter(|l| !l.external)
            .map(|l| l.digest.clone())
            .collect(),
    })
}
