//! Manifests and their referrers (spec end-3, end-7, end-9, end-12); a push or delete by tag
//! moves or removes the tag here, under the repository's tag rules.

use bytes::Bytes;
use futures::TryStreamExt;

use super::{Override, Page, Registry, settings, webhooks::Pulled};
use crate::{
    error::{Error, Result},
    meta::manifests::{NewManifest, PutManifestError, Referrer, Repushed, StoredManifest},
    oci::{Digest, Hasher, Manifest, Reference, RepoName, Tag, manifest::Platform},
};

/// Image configs larger than this are not read for their platform.
pub(super) const CONFIG_READ_MAX: u64 = 1024 * 1024;

/// The result of a manifest push.
pub struct ManifestPut {
    /// The manifest's digest, as stored (`Docker-Content-Digest`).
    pub digest: Digest,
    /// The manifest's `subject`, echoed as `OCI-Subject` (spec: "Pushing Manifests with Subject").
    pub subject: Option<Digest>,
}

/// Where a stored manifest comes from.
pub(super) enum Origin<'a> {
    /// A push, by `actor` where known.
    Push {
        /// Who pushed it.
        actor: Option<&'a str>,
    },
    /// The pull-through cache's upstream.
    Upstream,
}

impl Registry {
    /// The manifest `reference` names in `repo` (GET, or HEAD without `payload`). Counts as a
    /// pull for the statistics (a HEAD as a version check). The GET of a quarantined
    /// manifest, or of an index with a quarantined child, is refused (`DENIED`, naming the
    /// reason) and not counted; internal reads go to the index directly and are not checked.
    /// So is the GET of an image without a verified signature under an `enforce` trust
    /// policy (`signatures.rs`, stored results only).
    ///
    /// A HEAD is answered: it serves no content, and containerd (ctr, the kubelet) resolves a
    /// tag with a HEAD first and shows the registry's message only for a refused GET, which
    /// a refused HEAD would keep it from reaching.
    pub async fn get_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        payload: bool,
        actor: Option<&str>,
    ) -> Result<StoredManifest> {
        let found = match reference {
            Reference::Tag(tag) => self.meta.manifest_by_tag(repo, tag, payload).await?,
            Reference::Digest(digest) => {
                self.meta.manifest_by_digest(repo, digest, payload).await?
            }
        };
        let manifest = found.ok_or(Error::ManifestUnknown)?;
        let tag = match reference {
            Reference::Tag(tag) => Some(tag),
            Reference::Digest(_) => None,
        };
        if payload {
            let pull = Pulled {
                repo,
                manifest: &manifest,
                tag,
                actor,
            };
            if let Err((gate, e)) = self.pull_gates(repo, &manifest, tag).await {
                if let Error::Denied(reason) = &e {
                    self.pull_denied_event(&pull, gate, reason).await;
                }
                return Err(e);
            }
            self.pull_event(&pull).await;
        }
        let tag = tag.map(Tag::as_str);
        self.pulls.record(
            repo.as_str(),
            manifest.repository_id,
            manifest.id,
            tag,
            payload,
        );
        Ok(manifest)
    }

    /// The pull gates, in order: quarantine, the scanning policy, the trust policy; a
    /// refusal names its gate (for the `pull_denied` event).
    async fn pull_gates(
        &self,
        repo: &RepoName,
        manifest: &StoredManifest,
        tag: Option<&Tag>,
    ) -> std::result::Result<(), (&'static str, Error)> {
        if let Some(held_by) = manifest.held_by {
            return Err((
                "quarantine",
                self.quarantine_refusal(&manifest.digest, held_by).await,
            ));
        }
        self.refuse_unscanned(repo, manifest)
            .await
            .map_err(|e| ("scan_policy", e))?;
        self.check_signed(repo, manifest, tag)
            .await
            .map_err(|e| ("trust_policy", e))
    }

    /// Validates and stores a manifest pushed under `reference` (end-7). `who` says whether
    /// the caller may push tags matching the repository's protected patterns; an immutable
    /// tag that points at another manifest is refused whoever asks.
    pub async fn put_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        content_type: Option<&str>,
        payload: Bytes,
        who: Override,
        actor: Option<&str>,
    ) -> Result<ManifestPut> {
        self.store_manifest(
            repo,
            reference,
            content_type,
            payload,
            who,
            Origin::Push { actor },
        )
        .await
    }

    /// [`Registry::put_manifest`], for a push or for a copy the pull-through cache fetched
    /// (`origin`), whose blobs and children may arrive later.
    pub(super) async fn store_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        content_type: Option<&str>,
        payload: Bytes,
        who: Override,
        origin: Origin<'_>,
    ) -> Result<ManifestPut> {
        let (from_upstream, actor) = match origin {
            Origin::Push { actor } => (false, actor),
            Origin::Upstream => (true, None),
        };
        let digest = match reference {
            Reference::Digest(expected) => {
                let mut h = Hasher::new(expected.algorithm());
                h.update(&payload);
                let actual = h.finish();
                if &actual != expected {
                    return Err(Error::DigestInvalid(format!(
                        "manifest hashes to {actual}, not {expected}"
                    )));
                }
                actual
            }
            Reference::Tag(_) => Digest::sha256_of(&payload),
        };
        let manifest = Manifest::parse(&payload, content_type)
            .map_err(|e| Error::ManifestInvalid(e.to_string()))?;
        let tag = match reference {
            Reference::Tag(tag) => Some(tag),
            Reference::Digest(_) => None,
        };
        let immutable = || {
            let tag = tag.map(Tag::as_str).unwrap_or_default();
            Error::Denied(format!(
                "tag {tag} of {repo} is immutable and points at another manifest; \
                 push under a new tag"
            ))
        };
        // The same bytes pushed again (a new tag on an image, a retried push): the manifest
        // and its references were checked when it was first stored; only the tag changes.
        if let Some(known) = self.meta.known_manifest(repo, &digest).await? {
            let tag_may_move = match tag {
                Some(tag) => settings::check_tag_push(repo, tag, who, known.settings)?,
                None => true,
            };
            match self
                .meta
                .repush_manifest(repo, &known.manifest, tag, tag_may_move, actor)
                .await?
            {
                Repushed::Done => {
                    self.pulls.record_push(repo.as_str());
                    if let (Some(tag), false, true) =
                        (tag, from_upstream, known.on_push_replication)
                    {
                        self.replicate_after_push(repo, tag).await;
                    }
                    return Ok(ManifestPut {
                        digest,
                        subject: manifest.subject,
                    });
                }
                Repushed::TagImmutable => return Err(immutable()),
                // Deleted since it was read: stored again in full.
                Repushed::NotThere => {}
            }
        }
        let tag_may_move = match tag {
            Some(tag) => {
                let stored = self.meta.repository_settings(repo).await?;
                settings::check_tag_push(repo, tag, who, stored)?
            }
            None => true,
        };
        // A first push may create the repository. Manifests are never refused for their
        // bytes (a few KiB that make the admitted blobs usable); they count in the usage.
        let limited = self.admit_repository(repo).await?.is_some();
        let payload_bytes = payload.len();
        let platform = self.platform_of(&manifest).await;
        let scan = self.scan_for_push(repo, &digest, &manifest).await;
        let annotations = manifest
            .annotations
            .as_ref()
            .filter(|a| !a.is_empty())
            .map(|a| serde_json::to_string(a).unwrap_or_default());
        let record = NewManifest {
            digest: &digest,
            media_type: manifest.media_type.as_str(),
            artifact_type: manifest.artifact_type.as_deref(),
            subject: manifest.subject.as_ref(),
            config_digest: manifest.config.as_ref().map(|c| &c.digest),
            os: platform.os.as_deref(),
            architecture: platform.architecture.as_deref(),
            variant: platform.variant.as_deref(),
            annotations,
            payload: &payload,
            blobs: manifest
                .required_blobs()
                .map(|t| (&t.digest, t.size))
                .collect(),
            children: manifest.children.iter().map(|t| &t.digest).collect(),
            from_upstream,
            actor,
            scan,
        };
        self.meta
            .put_manifest(repo, record, tag, tag_may_move)
            .await
            .map_err(|e| match e {
                PutManifestError::Missing(d) => Error::ManifestBlobUnknown(d),
                PutManifestError::TagImmutable => immutable(),
                PutManifestError::SizeMismatch {
                    digest,
                    declared,
                    actual,
                } => Error::ManifestInvalid(format!(
                    "descriptor of {digest} declares {declared} bytes, but the blob has {actual}"
                )),
                PutManifestError::Other(e) => e,
            })?;
        if limited {
            self.count_manifest(repo, payload_bytes).await;
        }
        self.pulls.record_push(repo.as_str());
        self.record_vex(repo, &digest, &manifest).await;
        self.verify_after_push(repo, &digest, &payload, tag).await;
        if let (Some(tag), false) = (tag, from_upstream) {
            self.replicate_after_push(repo, tag).await;
        }
        Ok(ManifestPut {
            digest,
            subject: manifest.subject,
        })
    }

    /// Deletes a tag (untag only) or, by digest, a manifest and every tag on it (end-9).
    /// `who` says whether the caller may delete tags matching protected patterns.
    pub async fn delete_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        who: Override,
        actor: Option<&str>,
    ) -> Result<()> {
        self.check_delete(repo, reference, who).await?;
        let (deleted, vex_subject) = match reference {
            Reference::Tag(tag) => (self.meta.delete_tag(repo, tag, actor).await?, None),
            Reference::Digest(digest) => {
                let vex_subject = self.vex_subject_of(repo, digest).await;
                (
                    self.meta.delete_manifest(repo, digest, actor).await?,
                    vex_subject,
                )
            }
        };
        if deleted {
            // A deleted VEX referrer's statements went with it: its subject is judged again.
            if let Some(subject) = vex_subject {
                self.apply_scan_policy_logged(repo, &subject).await;
            }
            Ok(())
        } else {
            Err(Error::ManifestUnknown)
        }
    }

    /// Manifests in `repo` whose subject is `subject` (end-12), optionally of one artifact type.
    pub async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
        last: Option<&str>,
        n: Option<u32>,
    ) -> Result<Page<Referrer>> {
        let last = last.unwrap_or("");
        Page::fetch(self.page_size(n), |n| {
            self.meta.referrers(repo, subject, artifact_type, last, n)
        })
        .await
    }

    /// The platform an image's config declares; unknown when the config is not an image
    /// config or cannot be read (the index check reports a missing config).
    async fn platform_of(&self, manifest: &Manifest) -> Platform {
        let (Some(config), Some(media_type)) = (&manifest.config, &manifest.config_media_type)
        else {
            return Platform::default();
        };
        if config.size > CONFIG_READ_MAX || !Platform::is_image_config(media_type) {
            return Platform::default();
        }
        let bytes = match self.blobs.read(&config.digest, None).await {
            Ok(stream) => stream
                .map_ok(|b| b.to_vec())
                .try_concat()
                .await
                .unwrap_or_default(),
            Err(_) => return Platform::default(),
        };
        Platform::from_config(media_type, &bytes)
    }
}
