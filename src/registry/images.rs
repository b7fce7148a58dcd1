//! Images as the management API shows them: listings with platforms, sizes, tags, pull
//! figures and status; one image in detail (layers, config summary, children, referrers);
//! the tags of a repository sorted by name, push or pull; retagging, within a repository
//! or from another one (what the manifest needs is mounted first).
//!
//! A retag is a manifest push under the new tag ([`Registry::put_manifest`]), so tag
//! immutability and protected patterns apply exactly as on a `/v2/` tag PUT.

use std::collections::{BTreeMap, HashMap};

use futures::TryStreamExt;
use serde::{Deserialize, Serialize};

use super::{
    ImageQuarantine, Override, QuarantineRecord, Registry, SeveritySummary, findings::summary_of,
    signatures::SignedStatus,
};
use crate::{
    error::{Error, Result},
    meta::{
        images::{ImageCursor, ImageFilter, ImageRow, ImageSort, ImageStatus},
        tags::{TagCursor, TagRow, TagSort},
    },
    oci::{Digest, Manifest, Reference, RepoName, Tag},
};

/// Config blobs larger than this are not read for the detail view.
const CONFIG_SUMMARY_MAX: u64 = 1024 * 1024;
/// Referrers shown in the detail view of an image.
const DETAIL_REFERRERS_MAX: u32 = 100;
/// Levels of a referrer tree shown (an image, its SBOM, the SBOM's signature, ...).
const REFERRER_TREE_DEPTH: usize = 4;
/// Levels of indexes listing indexes looked through for the platforms of an index's images.
const NESTING_MAX: usize = 8;

/// An image's platform, as its config declares it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PlatformSummary {
    /// Operating system (`linux`).
    pub os: Option<String>,
    /// CPU architecture (`arm64`).
    pub architecture: Option<String>,
    /// Architecture variant (`v8`).
    pub variant: Option<String>,
}

/// The platform of an image, or the platforms of an index's children.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Platforms {
    /// An image: its own platform.
    Image(PlatformSummary),
    /// An index: its children's platforms.
    Index(Vec<PlatformSummary>),
}

/// One manifest of a repository, as the image listing shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ImageSummary {
    /// The manifest's digest.
    #[schema(value_type = String)]
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// Tags pointing at it, in name order.
    #[schema(value_type = Vec<String>)]
    pub tags: Vec<Tag>,
    /// `{os, architecture, variant}` for an image; a list of them for an index.
    pub platform: Platforms,
    /// Bytes of the config and layers; for an index, of its children's (each blob once).
    pub size_bytes: i64,
    /// When it was last pushed (unix seconds).
    pub pushed_at: i64,
    /// When it was last pulled, if ever (unix seconds; as of the last statistics flush).
    pub last_pulled_at: Option<i64>,
    /// Pulls (manifest GETs by tag or digest; HEADs are not pulls) as of the last flush.
    pub pull_count: i64,
    /// `quarantined` (held back from pulls, tagged or not), else `active` (tagged, or a
    /// child of a tagged index) or `untagged`.
    pub status: ImageStatus,
    /// The index of the repository that lists this image, when it is a child of one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub index: Option<Digest>,
    /// Its findings by severity, as stored for its newest successful scan; `null` when it
    /// was never scanned successfully.
    pub vulnerabilities: Option<SeveritySummary>,
    /// Its best signature and how many it has; `null` when it has none. (A platform of a
    /// signed index shows its own signatures; the index's let it through a pull.)
    pub signature: Option<SignedStatus>,
    /// Where the listing continues after this image (the page's `next`).
    #[serde(skip)]
    pub cursor: String,
}

/// A blob an image manifest references.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LayerSummary {
    /// The blob's digest.
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// Its size in bytes.
    pub size: u64,
}

/// What an image's config says about it.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct ConfigSummary {
    /// The config blob's digest.
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// Its size in bytes.
    pub size: u64,
    /// When the image was built (RFC 3339, as the config says).
    pub created: Option<String>,
    /// Operating system.
    pub os: Option<String>,
    /// CPU architecture.
    pub architecture: Option<String>,
    /// Architecture variant.
    pub variant: Option<String>,
    /// The default entrypoint.
    pub entrypoint: Option<Vec<String>>,
    /// The default command.
    pub cmd: Option<Vec<String>>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Entries in the build history.
    pub history_count: usize,
    /// The build history, oldest first (each entry that is not `empty_layer` made the next
    /// layer of the manifest).
    pub history: Vec<HistoryEntry>,
    /// False when the config was not read (not an image config, larger than 1 MiB, or
    /// unreadable): only digest, media type and size are then known.
    pub read: bool,
}

/// One step of an image's build history, as its config records it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HistoryEntry {
    /// When the step ran (RFC 3339, as the config says).
    #[serde(default)]
    pub created: Option<String>,
    /// The command that made it.
    #[serde(default)]
    pub created_by: Option<String>,
    /// A comment.
    #[serde(default)]
    pub comment: Option<String>,
    /// True when the step made no layer.
    #[serde(default)]
    pub empty_layer: bool,
}

/// A child manifest of an index.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ChildSummary {
    /// The child's digest.
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// Its manifest's size in bytes.
    pub size: u64,
    /// The platform the index declares for it.
    pub platform: PlatformSummary,
}

/// A manifest that refers to an image (a signature, an SBOM, an attestation).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReferrerSummary {
    /// The referrer's digest.
    #[schema(value_type = String)]
    pub digest: Digest,
    /// Its artifact type.
    pub artifact_type: Option<String>,
    /// Its media type.
    pub media_type: String,
}

/// One image in detail.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ImageDetail {
    /// What the listing shows.
    #[serde(flatten)]
    pub summary: ImageSummary,
    /// Layers of an image manifest, in order (empty for an index).
    pub layers: Vec<LayerSummary>,
    /// The config of an image manifest (absent for an index).
    pub config: Option<ConfigSummary>,
    /// Children of an index with their platforms (empty for an image).
    pub children: Vec<ChildSummary>,
    /// Manifests of the repository whose subject is this one (the first 100).
    pub referrers: Vec<ReferrerSummary>,
    /// Why the image is held back from pulls; null when it is not quarantined.
    pub quarantine: Option<ImageQuarantine>,
    /// The manifest's own annotations.
    pub annotations: BTreeMap<String, String>,
}

/// A manifest in the tree of what refers to an image: its referrers, theirs (a signature
/// of an SBOM), and so on.
#[derive(Debug, Clone)]
pub struct ReferrerNode {
    /// Levels below the image (1: refers to the image itself).
    pub depth: usize,
    /// The referrer's digest.
    pub digest: Digest,
    /// Its artifact type, else its media type.
    pub kind: String,
    /// When it carries signatures: the best of them (verified first).
    pub signature: Option<SignedStatus>,
    /// Whether it carries an SBOM.
    pub sbom: bool,
}

/// A tag with its manifest and times.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TagSummary {
    /// The tag.
    #[schema(value_type = String)]
    pub name: Tag,
    /// The manifest it points at.
    #[schema(value_type = String)]
    pub digest: Digest,
    /// When a push last pointed it at its manifest (unix seconds).
    pub pushed_at: i64,
    /// When it was last pulled by name, if ever (as of the last statistics flush).
    pub last_pulled_at: Option<i64>,
    /// The best signature of the image it points at and how many it has; `null` when none.
    pub signature: Option<SignedStatus>,
    /// Bytes of its image's blobs (an index's over its children), each once.
    pub size_bytes: i64,
    /// Where the listing continues after this tag (the page's `next`).
    #[serde(skip)]
    pub cursor: String,
}

/// A descriptor in a manifest's payload, as far as the detail view needs it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    #[serde(default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    size: u64,
    platform: Option<PlatformSummary>,
}

/// The descriptors of a manifest's payload.
#[derive(Deserialize)]
struct Payload {
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// The part of an image config the detail view shows.
#[derive(Deserialize, Default)]
struct ImageConfig {
    created: Option<String>,
    os: Option<String>,
    architecture: Option<String>,
    variant: Option<String>,
    config: Option<RunConfig>,
    #[serde(default)]
    history: Vec<HistoryEntry>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct RunConfig {
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    labels: Option<BTreeMap<String, String>>,
}

impl Registry {
    /// Images of `repo` that `filter` selects, in `sort` order after `after`, `n` at most
    /// (ask for one more than the page holds). Without a platform filter, children of an
    /// index are listed only inside it (unless tagged themselves), and referrers not at all.
    pub async fn list_images(
        &self,
        repo: &RepoName,
        filter: &ImageFilter,
        sort: ImageSort,
        after: Option<ImageCursor>,
        n: u32,
    ) -> Result<Vec<ImageSummary>> {
        let repository_id = self.existing_repository(repo).await?;
        let rows = self
            .meta
            .images(repository_id, filter, sort, after, n)
            .await?;
        self.summaries(repository_id, rows, sort).await
    }

    /// Manifest `digest` of `repo` in detail: layers, config summary (read from the config
    /// blob, 1 MiB at most), children with their platforms, referrers and tags.
    pub async fn image_detail(&self, repo: &RepoName, digest: &Digest) -> Result<ImageDetail> {
        let repository_id = self
            .meta
            .repository_id(repo)
            .await?
            .ok_or(Error::ManifestUnknown)?;
        let filter = ImageFilter {
            digest: Some(digest.clone()),
            ..ImageFilter::default()
        };
        let rows = self
            .meta
            .images(repository_id, &filter, ImageSort::Pushed, None, 1)
            .await?;
        let summary = self
            .summaries(repository_id, rows, ImageSort::Pushed)
            .await?
            .pop()
            .ok_or(Error::ManifestUnknown)?;
        let stored = self
            .meta
            .manifest_by_digest(repo, digest, true)
            .await?
            .ok_or(Error::ManifestUnknown)?;
        let payload: Payload = serde_json::from_slice(&stored.payload)
            .map_err(|e| Error::Internal(anyhow::anyhow!("stored manifest {digest}: {e}")))?;
        let config = match payload.config {
            Some(c) => Some(self.config_summary(c).await),
            None => None,
        };
        let layers = payload
            .layers
            .into_iter()
            .map(|l| LayerSummary {
                digest: l.digest,
                media_type: l.media_type,
                size: l.size,
            })
            .collect();
        let children = payload
            .manifests
            .into_iter()
            .map(|c| ChildSummary {
                digest: c.digest,
                media_type: c.media_type,
                size: c.size,
                platform: c.platform.unwrap_or_default(),
            })
            .collect();
        let referrers = self
            .meta
            .referrers(repo, digest, None, "", DETAIL_REFERRERS_MAX)
            .await?
            .into_iter()
            .map(|r| ReferrerSummary {
                digest: r.digest,
                artifact_type: r.artifact_type,
                media_type: r.media_type,
            })
            .collect();
        let quarantine = self
            .meta
            .quarantine_of(repo, digest)
            .await?
            .map(|row| QuarantineRecord::from(row).quarantine);
        Ok(ImageDetail {
            summary,
            layers,
            config,
            children,
            referrers,
            quarantine,
            annotations: payload.annotations,
        })
    }

    /// What refers to image `digest` of `repo`, as a tree in depth-first order: up to
    /// `REFERRER_TREE_DEPTH` levels and `DETAIL_REFERRERS_MAX` manifests per level, each
    /// with its signature's verification. One query per level, and one for the signatures.
    pub async fn referrer_tree(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Vec<ReferrerNode>> {
        let repository_id = self.existing_repository(repo).await?;
        let mut levels: Vec<Vec<crate::meta::manifests::SubjectReferrer>> = Vec::new();
        let mut subjects = vec![digest.clone()];
        let mut seen: std::collections::HashSet<Digest> = subjects.iter().cloned().collect();
        while levels.len() < REFERRER_TREE_DEPTH && !subjects.is_empty() {
            let refs: Vec<&Digest> = subjects.iter().collect();
            let mut level = self
                .meta
                .referrers_of_subjects(repository_id, &refs, DETAIL_REFERRERS_MAX)
                .await?;
            // A cycle cannot be pushed (a digest names its subject), but stay finite anyway.
            level.retain(|r| seen.insert(r.digest.clone()));
            subjects = level.iter().map(|r| r.digest.clone()).collect();
            levels.push(level);
        }
        let mut all: Vec<&Digest> = vec![digest];
        all.extend(levels.iter().flatten().map(|r| &r.digest));
        let in_tree: std::collections::HashSet<String> =
            all.iter().map(|d| d.to_string()).collect();
        // The signature each signature manifest carries, by the manifest's digest; and the
        // signature manifests that are not referrers (cosign's `sha256-….sig` tags), by the
        // manifest they sign, to be shown under it.
        let mut carried: HashMap<String, SignedStatus> = HashMap::new();
        let mut tagged: HashMap<String, Vec<(Digest, String)>> = HashMap::new();
        let now = self.clock.now();
        for row in self.meta.signatures_of_images(repository_id, &all).await? {
            let signature = row.signature_digest.clone();
            if !in_tree.contains(&signature)
                && let Ok(d) = signature.parse::<Digest>()
            {
                let under = tagged.entry(row.subject_digest.clone()).or_default();
                if !under.iter().any(|(s, _)| *s == d) {
                    under.push((d, format!("{} signature ({})", row.tool, row.format)));
                }
            }
            let view = super::signatures::SignatureView::of_row(row, now);
            match carried.get_mut(&signature) {
                Some(best) => {
                    best.signatures += 1;
                    if view.verified && !best.verified {
                        best.verified = true;
                        best.identity = view.identity;
                        best.reason = None;
                    }
                }
                None => {
                    carried.insert(signature, SignedStatus::of_view(view));
                }
            }
        }
        // Depth first: the children of a node follow it, its tag signatures last.
        enum Item<'a> {
            Referrer(&'a crate::meta::manifests::SubjectReferrer),
            Tagged(&'a (Digest, String)),
        }
        let children = |subject: &str, depth: usize| -> Vec<(usize, Item<'_>)> {
            let mut items: Vec<(usize, Item<'_>)> = levels
                .get(depth - 1)
                .into_iter()
                .flatten()
                .filter(|r| r.subject == subject)
                .map(|r| (depth, Item::Referrer(r)))
                .collect();
            items.extend(
                tagged
                    .get(subject)
                    .into_iter()
                    .flatten()
                    .map(|t| (depth, Item::Tagged(t))),
            );
            items.reverse();
            items
        };
        let mut out = Vec::new();
        let mut stack = children(&digest.to_string(), 1);
        while let Some((depth, item)) = stack.pop() {
            let (digest, kind) = match item {
                Item::Referrer(r) => (
                    r.digest.clone(),
                    r.artifact_type
                        .clone()
                        .unwrap_or_else(|| r.media_type.clone()),
                ),
                Item::Tagged((d, kind)) => (d.clone(), kind.clone()),
            };
            let text = digest.to_string();
            if matches!(item, Item::Referrer(_)) && depth < REFERRER_TREE_DEPTH {
                stack.extend(children(&text, depth + 1));
            }
            out.push(ReferrerNode {
                depth,
                sbom: crate::scan::sbom::is_sbom_media_type(&kind),
                signature: carried.get(&text).cloned(),
                digest,
                kind,
            });
        }
        Ok(out)
    }

    /// Tags of `repo` in `sort` order after `after`, `n` at most (ask for one more than
    /// the page holds).
    pub async fn list_tag_summaries(
        &self,
        repo: &RepoName,
        sort: TagSort,
        after: Option<&TagCursor>,
        n: u32,
    ) -> Result<Vec<TagSummary>> {
        let repository_id = self.existing_repository(repo).await?;
        let rows = self.meta.tag_listing(repository_id, sort, after, n).await?;
        let digests: Vec<&Digest> = rows.iter().map(|r| &r.digest).collect();
        let signed = self.signed_statuses(repository_id, &digests).await?;
        Ok(rows
            .into_iter()
            .map(|r: TagRow| TagSummary {
                cursor: format!("{}:{}", r.sort_key(sort), r.name),
                signature: signed.get(&r.digest.to_string()).cloned(),
                name: r.name,
                digest: r.digest,
                pushed_at: r.updated_at,
                last_pulled_at: r.last_pulled_at,
                size_bytes: r.size_bytes,
            })
            .collect())
    }

    /// Points `tag` of `repo` at manifest `digest`, which is in `repo` or, with `from`, in
    /// that repository: then the blobs (and for an index the child manifests) it needs are
    /// mounted into `repo` first. Pushed like a `/v2/` tag PUT by `actor`, under the same tag
    /// rules. A digest the source repository does not hold is `MANIFEST_UNKNOWN`.
    pub async fn retag(
        &self,
        repo: &RepoName,
        tag: &Tag,
        digest: &Digest,
        from: Option<&RepoName>,
        who: Override,
        actor: &str,
    ) -> Result<()> {
        let source = from.unwrap_or(repo);
        let stored = self
            .meta
            .manifest_by_digest(source, digest, true)
            .await?
            .ok_or(Error::ManifestUnknown)?;
        if source != repo {
            self.copy_references(source, repo, &stored.media_type, &stored.payload, actor)
                .await?;
        }
        self.put_manifest(
            repo,
            &Reference::Tag(tag.clone()),
            Some(&stored.media_type),
            stored.payload.into(),
            who,
            Some(actor),
        )
        .await?;
        Ok(())
    }

    /// Makes what manifest `payload` references present in `to`: its blobs mounted from
    /// `from`, and an index's children copied (by digest) with theirs, pushed by `actor`.
    async fn copy_references(
        &self,
        from: &RepoName,
        to: &RepoName,
        media_type: &str,
        payload: &[u8],
        actor: &str,
    ) -> Result<()> {
        let manifest = Manifest::parse(payload, Some(media_type))
            .map_err(|e| Error::Internal(anyhow::anyhow!("stored manifest: {e}")))?;
        // Mounted blobs count against the namespace's quota as pushed ones do.
        let quota = self.admit_repository(to).await?;
        for blob in manifest.required_blobs() {
            if self
                .meta
                .linked_blob_size(to, &blob.digest)
                .await?
                .is_some()
            {
                continue;
            }
            if let Some(size) = self.meta.linked_blob_size(from, &blob.digest).await? {
                if let Some(quota) = &quota {
                    self.admit_blob(to, quota, &blob.digest, size).await?;
                }
                // A blob collected meanwhile is reported by the push below.
                self.meta.mount_blob(to, &blob.digest).await?;
            }
        }
        for child in &manifest.children {
            if self
                .meta
                .manifest_by_digest(to, &child.digest, false)
                .await?
                .is_some()
            {
                continue;
            }
            let stored = self
                .meta
                .manifest_by_digest(from, &child.digest, true)
                .await?
                .ok_or_else(|| Error::ManifestBlobUnknown(child.digest.clone()))?;
            Box::pin(self.copy_references(from, to, &stored.media_type, &stored.payload, actor))
                .await?;
            self.put_manifest(
                to,
                &Reference::Digest(child.digest.clone()),
                Some(&stored.media_type),
                stored.payload.into(),
                Override::Denied,
                Some(actor),
            )
            .await?;
        }
        Ok(())
    }

    /// The id of `repo`, or `NAME_UNKNOWN`.
    pub(super) async fn existing_repository(&self, repo: &RepoName) -> Result<i64> {
        self.meta
            .repository_id(repo)
            .await?
            .ok_or(Error::NameUnknown)
    }

    /// The listing's entries for `rows`, with their tags and (for indexes) child platforms.
    async fn summaries(
        &self,
        repository_id: i64,
        rows: Vec<ImageRow>,
        sort: ImageSort,
    ) -> Result<Vec<ImageSummary>> {
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let mut tags: HashMap<i64, Vec<Tag>> = HashMap::new();
        for t in self.meta.tags_of_manifests(&ids).await? {
            tags.entry(t.manifest_id).or_default().push(t.name);
        }
        let index_ids: Vec<i64> = rows
            .iter()
            .filter(|r| is_index(&r.media_type))
            .map(|r| r.id)
            .collect();
        let mut children = self.leaf_platforms(repository_id, &index_ids).await?;
        let mut vulnerabilities = self.meta.severity_counts(&ids).await?;
        let digests: Vec<&Digest> = rows.iter().map(|r| &r.digest).collect();
        let mut signed = self.signed_statuses(repository_id, &digests).await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let platform = if is_index(&r.media_type) {
                    Platforms::Index(children.remove(&r.id).unwrap_or_default())
                } else {
                    Platforms::Image(PlatformSummary {
                        os: r.os.clone(),
                        architecture: r.architecture.clone(),
                        variant: r.variant.clone(),
                    })
                };
                let status = if r.quarantined == 1 {
                    ImageStatus::Quarantined
                } else if r.in_use == 1 {
                    ImageStatus::Active
                } else {
                    ImageStatus::Untagged
                };
                ImageSummary {
                    cursor: format!("{}:{}", r.sort_key(sort), r.id),
                    signature: signed.remove(&r.digest.to_string()),
                    tags: tags.remove(&r.id).unwrap_or_default(),
                    platform,
                    status,
                    digest: r.digest,
                    media_type: r.media_type,
                    size_bytes: r.size_bytes,
                    pushed_at: r.pushed_at,
                    last_pulled_at: r.last_pulled_at,
                    pull_count: r.pull_count,
                    index: r.index_digest,
                    vulnerabilities: summary_of(vulnerabilities.remove(&r.id)),
                }
            })
            .collect())
    }

    /// The platforms of the images under each of `index_ids` (indexes of repository
    /// `repository_id`): an index listed by an index is looked through to its images, down to
    /// [`NESTING_MAX`] levels; each image once, in platform order.
    async fn leaf_platforms(
        &self,
        repository_id: i64,
        index_ids: &[i64],
    ) -> Result<HashMap<i64, Vec<PlatformSummary>>> {
        let mut leaves: HashMap<i64, Vec<(Digest, PlatformSummary)>> = HashMap::new();
        // The indexes to look into next, each with the listed indexes it lies under.
        let mut under: HashMap<i64, Vec<i64>> =
            index_ids.iter().map(|&id| (id, vec![id])).collect();
        for _ in 0..NESTING_MAX {
            if under.is_empty() {
                break;
            }
            let ids: Vec<i64> = under.keys().copied().collect();
            let mut next: HashMap<i64, Vec<i64>> = HashMap::new();
            for c in self.meta.child_platforms(repository_id, &ids).await? {
                let roots = under.get(&c.index_id).cloned().unwrap_or_default();
                if is_index(&c.media_type) {
                    next.entry(c.id).or_default().extend(roots);
                    continue;
                }
                let platform = PlatformSummary {
                    os: c.os,
                    architecture: c.architecture,
                    variant: c.variant,
                };
                for root in roots {
                    leaves
                        .entry(root)
                        .or_default()
                        .push((c.digest.clone(), platform.clone()));
                }
            }
            under = next;
        }
        Ok(leaves
            .into_iter()
            .map(|(root, mut found)| {
                found.sort_by(|(da, a), (db, b)| {
                    (&a.os, &a.architecture, &a.variant, da).cmp(&(
                        &b.os,
                        &b.architecture,
                        &b.variant,
                        db,
                    ))
                });
                found.dedup_by(|a, b| a.0 == b.0);
                (root, found.into_iter().map(|(_, p)| p).collect())
            })
            .collect())
    }

    /// The summary of the config `descriptor` names, read from the blob store when it is
    /// an image config of at most [`CONFIG_SUMMARY_MAX`] bytes.
    async fn config_summary(&self, descriptor: Descriptor) -> ConfigSummary {
        let mut summary = ConfigSummary {
            digest: descriptor.digest.clone(),
            media_type: descriptor.media_type.clone(),
            size: descriptor.size,
            ..ConfigSummary::default()
        };
        let readable = descriptor.size <= CONFIG_SUMMARY_MAX
            && crate::oci::manifest::Platform::is_image_config(&descriptor.media_type);
        let Ok(digest) = descriptor.digest.parse::<Digest>() else {
            return summary;
        };
        if !readable {
            return summary;
        }
        let bytes = match self.blobs.read(&digest, None).await {
            Ok(stream) => match stream.map_ok(|b| b.to_vec()).try_concat().await {
                Ok(bytes) => bytes,
                Err(_) => return summary,
            },
            Err(_) => return summary,
        };
        let Ok(config) = serde_json::from_slice::<ImageConfig>(&bytes) else {
            return summary;
        };
        let run = config.config.unwrap_or_default();
        summary.created = config.created;
        summary.os = config.os;
        summary.architecture = config.architecture;
        summary.variant = config.variant;
        summary.entrypoint = run.entrypoint;
        summary.cmd = run.cmd;
        summary.labels = run.labels.unwrap_or_default();
        summary.history_count = config.history.len();
        summary.history = config.history;
        summary.read = true;
        summary
    }
}

/// Whether `media_type` is an index (OCI image index or Docker manifest list).
fn is_index(media_type: &str) -> bool {
    crate::oci::manifest::MediaType::parse(media_type).is_some_and(|m| m.is_index())
}
