//! The copy of a rule's images from its source to its destination (see the parent module):
//! both ends ([`Side`]), one run ([`Run`]) with its tasks, tags, manifests, referrers and
//! blobs, and the retries of remote steps.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt, stream::BoxStream};

use crate::{
    error::Error,
    meta::replication::{ReplicationCounters, TaskRow},
    oci::{Digest, Manifest, MediaType, Reference, RepoName, Tag, manifest::Platform},
    proxy::{Mount, Remote, UpstreamError},
    registry::{Override, Registry, manifests::Origin, uploads::Resumable},
};

use super::rules::{CHUNK_DEFAULT, ReplicationRule, remote_of};

/// Attempts of one remote step before the task fails.
const ATTEMPTS: u32 = 5;
/// The first pause between attempts; doubled each time.
const BACKOFF_FIRST: Duration = Duration::from_millis(200);

impl ReplicationRule {
    /// Why the rule leaves out image `read` of `repo` (not an index): its config names a
    /// platform `filter.platforms` does not list. `None` when it is taken (no filter, or no
    /// platform named: an artifact).
    async fn platform_refused(
        &self,
        source: &Side<'_>,
        repo: &str,
        read: &Read,
    ) -> Step<Option<String>> {
        if self.platforms.is_empty() {
            return Ok(None);
        }
        let Ok(parsed) = Manifest::parse(&read.payload, Some(&read.media_type)) else {
            return Ok(None);
        };
        let (Some(config), Some(media_type)) = (&parsed.config, &parsed.config_media_type) else {
            return Ok(None);
        };
        if !Platform::is_image_config(media_type) || config.size > CONFIG_MAX {
            return Ok(None);
        }
        let mut bytes = Vec::new();
        let mut stream = retry(|| source.blob(repo, &config.digest, 0)).await?;
        while let Some(chunk) = stream.next().await {
            bytes.extend_from_slice(&chunk.map_err(UpstreamError::Unavailable)?);
            if bytes.len() as u64 > CONFIG_MAX {
                return Ok(None);
            }
        }
        let platform = Platform::from_config(media_type, &bytes);
        let (Some(os), Some(arch)) = (&platform.os, &platform.architecture) else {
            return Ok(None);
        };
        if self.takes_platform(os, arch, platform.variant.as_deref()) {
            return Ok(None);
        }
        let variant = platform
            .variant
            .map(|v| format!("/{v}"))
            .unwrap_or_default();
        Ok(Some(format!(
            "the image's platform {os}/{arch}{variant} is not in filter.platforms"
        )))
    }

    /// What the rule copies of manifest `read` (a source tag's) from `repo`: the manifest
    /// [narrowed](Self::narrowed) to `filter.platforms`, or why it is skipped.
    pub(super) async fn as_copied(
        &self,
        source: &Side<'_>,
        repo: &str,
        read: Read,
    ) -> Step<std::result::Result<Read, String>> {
        let Some(read) = self.narrowed(read)? else {
            return Ok(Err("the index lists none of filter.platforms".into()));
        };
        Ok(match self.platform_refused(source, repo, &read).await? {
            Some(why) => Err(why),
            None => Ok(read),
        })
    }

    /// The manifest `read` as the rule copies it: an index narrowed to `filter.platforms`
    /// (unchanged when it lists only those, `None` when it lists none of them); any other
    /// manifest as it is.
    fn narrowed(&self, read: Read) -> Step<Option<Read>> {
        let is_index = MediaType::parse(&read.media_type).is_some_and(MediaType::is_index);
        if self.platforms.is_empty() || !is_index {
            return Ok(Some(read));
        }
        let bad = |why: String| UpstreamError::BadAnswer(format!("index {}: {why}", read.digest));
        let mut index: serde_json::Value =
            serde_json::from_slice(&read.payload).map_err(|e| bad(e.to_string()))?;
        let Some(entries) = index
            .get_mut("manifests")
            .and_then(serde_json::Value::as_array_mut)
        else {
            return Err(bad("no manifests array".into()));
        };
        let listed = entries.len();
        entries.retain(|entry| {
            let field = |name: &str| entry["platform"][name].as_str();
            let (Some(os), Some(arch)) = (field("os"), field("architecture")) else {
                return false;
            };
            self.takes_platform(os, arch, field("variant"))
        });
        match entries.len() {
            0 => Ok(None),
            kept if kept == listed => Ok(Some(read)),
            _ => {
                let payload =
                    Bytes::from(serde_json::to_vec(&index).map_err(|e| bad(e.to_string()))?);
                Ok(Some(Read {
                    digest: Digest::sha256_of(&payload),
                    media_type: read.media_type,
                    payload,
                }))
            }
        }
    }
}

pub(super) fn sides<'a>(
    rule: &ReplicationRule,
    registry: &'a Registry,
    remote: &'a Remote,
) -> (Side<'a>, Side<'a>) {
    if rule.push {
        (Side::Local(registry), Side::Remote(remote))
    } else {
        (Side::Remote(remote), Side::Local(registry))
    }
}

/// One end of a copy: this registry (through the index and store directly) or the remote.
#[derive(Clone, Copy)]
pub(super) enum Side<'a> {
    Local(&'a Registry),
    Remote(&'a Remote),
}

/// A manifest read from the source.
pub(super) struct Read {
    pub(super) digest: Digest,
    media_type: String,
    payload: Bytes,
}

pub(super) type Step<T> = std::result::Result<T, UpstreamError>;

/// A failure of this registry's own, told as a remote's would be (not transient).
fn local(e: Error) -> UpstreamError {
    UpstreamError::BadAnswer(format!("this registry: {e}"))
}

/// The referrers tag fallback (OCI distribution 1.1): `sha256-<hex>` of a subject.
fn fallback_tag(digest: &Digest) -> String {
    digest.as_str().replace(':', "-")
}

fn is_fallback_tag(tag: &str) -> bool {
    tag.strip_prefix("sha256-")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl<'a> Side<'a> {
    fn name(&self) -> String {
        match self {
            Side::Local(_) => "local".into(),
            Side::Remote(r) => r.url().to_owned(),
        }
    }

    pub(super) async fn repositories(&self, rule: &ReplicationRule) -> Step<Vec<String>> {
        let names = match self {
            Side::Local(reg) => {
                let mut all = Vec::new();
                let mut last = String::new();
                loop {
                    let page = reg.meta.catalog(&last, 1000).await.map_err(local)?;
                    let Some(end) = page.last() else { break };
                    last = end.to_string();
                    all.extend(page.iter().map(ToString::to_string));
                }
                all
            }
            Side::Remote(r) => {
                let glob = rule.input.filter.repositories.as_deref().unwrap_or("**");
                // A literal name needs no catalog (Docker Hub has none).
                if !glob.contains(['*', '?', '[', '{']) {
                    vec![glob.to_owned()]
                } else {
                    r.catalog().await?
                }
            }
        };
        Ok(names
            .into_iter()
            .filter(|n| rule.repositories.is_match(n))
            .collect())
    }

    /// Tags of `repo` the rule takes, without referrer fallback tags.
    pub(super) async fn tags(&self, repo: &str, rule: &ReplicationRule) -> Step<Vec<String>> {
        let tags = match self {
            Side::Local(reg) => {
                let Ok(name) = repo.parse::<RepoName>() else {
                    return Ok(Vec::new());
                };
                let Some(id) = reg.meta.repository_id(&name).await.map_err(local)? else {
                    return Ok(Vec::new());
                };
                let mut all = Vec::new();
                let mut last = String::new();
                loop {
                    let page = reg.meta.list_tags(id, &last, 1000).await.map_err(local)?;
                    let Some(end) = page.last() else { break };
                    last = end.to_string();
                    all.extend(page.iter().map(ToString::to_string));
                }
                all
            }
            Side::Remote(r) => r.tags(repo).await?,
        };
        Ok(tags
            .into_iter()
            .filter(|t| !is_fallback_tag(t) && rule.takes_tag(t))
            .collect())
    }

    pub(super) async fn tag_digest(&self, repo: &str, tag: &str) -> Step<Option<Digest>> {
        match self {
            Side::Local(reg) => {
                let (Ok(name), Ok(tag)) = (repo.parse::<RepoName>(), tag.parse::<Tag>()) else {
                    return Ok(None);
                };
                Ok(reg
                    .meta
                    .manifest_by_tag(&name, &tag, false)
                    .await
                    .map_err(local)?
                    .map(|m| m.digest))
            }
            Side::Remote(r) => r.manifest_digest(repo, tag, MANIFEST_MAX).await,
        }
    }

    async fn has_manifest(&self, repo: &str, digest: &Digest) -> Step<bool> {
        match self {
            Side::Local(reg) => {
                let Ok(name) = repo.parse::<RepoName>() else {
                    return Ok(false);
                };
                Ok(reg
                    .meta
                    .manifest_by_digest(&name, digest, false)
                    .await
                    .map_err(local)?
                    .is_some())
            }
            Side::Remote(r) => Ok(r
                .manifest_digest(repo, digest.as_str(), MANIFEST_MAX)
                .await?
                .is_some()),
        }
    }

    pub(super) async fn manifest(&self, repo: &str, reference: &str) -> Step<Option<Read>> {
        match self {
            Side::Local(reg) => {
                let Ok(name) = repo.parse::<RepoName>() else {
                    return Ok(None);
                };
                let found = match reference.parse::<Digest>() {
                    Ok(d) => reg.meta.manifest_by_digest(&name, &d, true).await,
                    Err(_) => match reference.parse::<Tag>() {
                        Ok(t) => reg.meta.manifest_by_tag(&name, &t, true).await,
                        Err(_) => return Ok(None),
                    },
                }
                .map_err(local)?;
                Ok(found.map(|m| Read {
                    digest: m.digest,
                    media_type: m.media_type,
                    payload: Bytes::from(m.payload),
                }))
            }
            Side::Remote(r) => match r.manifest(repo, reference, MANIFEST_MAX).await {
                Ok(m) => {
                    let parsed =
                        Manifest::parse(&m.payload, m.media_type.as_deref()).map_err(|e| {
                            UpstreamError::BadAnswer(format!(
                                "remote {} sent a manifest that does not parse: {e}",
                                r.url()
                            ))
                        })?;
                    Ok(Some(Read {
                        digest: m.digest,
                        media_type: parsed.media_type.as_str().to_owned(),
                        payload: m.payload,
                    }))
                }
                Err(UpstreamError::NotFound) => Ok(None),
                Err(e) => Err(e),
            },
        }
    }

    /// Digests of the manifests referring to `digest` in `repo`: the referrers API, else
    /// its tag fallback, plus cosign's tags (by tag name, for the copy to keep them).
    async fn referrers(&self, repo: &str, digest: &Digest) -> Step<Vec<Digest>> {
        match self {
            Side::Local(reg) => {
                let Ok(name) = repo.parse::<RepoName>() else {
                    return Ok(Vec::new());
                };
                let found = reg
                    .meta
                    .referrers(&name, digest, None, "", 1000)
                    .await
                    .map_err(local)?;
                Ok(found.into_iter().map(|r| r.digest).collect())
            }
            Side::Remote(r) => {
                let descriptors = match r.referrers(repo, digest).await? {
                    Some(d) => d,
                    None => match r.manifest(repo, &fallback_tag(digest), MANIFEST_MAX).await {
                        Ok(index) => serde_json::from_slice::<serde_json::Value>(&index.payload)
                            .ok()
                            .and_then(|v| v["manifests"].as_array().cloned())
                            .unwrap_or_default(),
                        Err(UpstreamError::NotFound) => Vec::new(),
                        Err(e) => return Err(e),
                    },
                };
                Ok(descriptors
                    .iter()
                    .filter_map(|d| d["digest"].as_str()?.parse().ok())
                    .collect())
            }
        }
    }

    async fn blob_size(&self, repo: &str, digest: &Digest) -> Step<Option<u64>> {
        match self {
            Side::Local(reg) => {
                let Ok(name) = repo.parse::<RepoName>() else {
                    return Ok(None);
                };
                reg.meta
                    .linked_blob_size(&name, digest)
                    .await
                    .map_err(local)
            }
            Side::Remote(r) => r.blob_size(repo, digest).await,
        }
    }

    /// Blob `digest` of `repo` from byte `offset` on.
    async fn blob(
        &self,
        repo: &str,
        digest: &Digest,
        offset: u64,
    ) -> Step<BoxStream<'static, std::result::Result<Bytes, String>>> {
        match self {
            Side::Local(reg) => {
                let name: RepoName = repo
                    .parse()
                    .map_err(|e| local(Error::NameInvalid(format!("{e}"))))?;
                let size = reg
                    .meta
                    .linked_blob_size(&name, digest)
                    .await
                    .map_err(local)?
                    .ok_or_else(|| local(Error::BlobUnknown))?;
                if size == offset {
                    return Ok(futures::stream::empty().boxed());
                }
                let stream = reg
                    .blobs
                    .read(digest, Some(offset..size))
                    .await
                    .map_err(local)?;
                Ok(stream.map_err(|e| e.to_string()).boxed())
            }
            Side::Remote(r) => Ok(r.blob(repo, digest, offset).await?.body),
        }
    }

    async fn put_manifest(&self, repo: &str, reference: &str, read: &Read) -> Step<bool> {
        match self {
            Side::Local(reg) => {
                let name: RepoName = repo
                    .parse()
                    .map_err(|e| local(Error::NameInvalid(format!("{e}"))))?;
                let reference = match reference.parse::<Digest>() {
                    Ok(d) => Reference::Digest(d),
                    Err(_) => Reference::Tag(
                        reference
                            .parse::<Tag>()
                            .map_err(|e| local(Error::TagInvalid(format!("{e}"))))?,
                    ),
                };
                let put = reg
                    .store_manifest(
                        &name,
                        &reference,
                        Some(&read.media_type),
                        read.payload.clone(),
                        Override::Allowed,
                        // A copy is a push, by the replication, as push events and rules see it.
                        Origin::Push {
                            actor: Some("replication"),
                        },
                    )
                    .await
                    .map_err(local)?;
                if put.digest != read.digest {
                    return Err(local(Error::DigestInvalid(format!(
                        "stored as {}, read as {}",
                        put.digest, read.digest
                    ))));
                }
                Ok(true)
            }
            Side::Remote(r) => {
                let pushed = r
                    .put_manifest(repo, reference, &read.media_type, read.payload.clone())
                    .await?;
                if let Some(d) = pushed.digest
                    && d.starts_with("sha256:")
                    && d != read.digest.as_str()
                {
                    return Err(UpstreamError::BadAnswer(format!(
                        "remote {} stored {} as {d}",
                        r.url(),
                        read.digest
                    )));
                }
                Ok(pushed.subject_indexed)
            }
        }
    }

    async fn delete_tag(&self, repo: &str, tag: &str) -> Step<()> {
        match self {
            Side::Local(reg) => {
                let (Ok(name), Ok(tag)) = (repo.parse::<RepoName>(), tag.parse::<Tag>()) else {
                    return Ok(());
                };
                reg.delete_manifest(
                    &name,
                    &Reference::Tag(tag),
                    Override::Allowed,
                    Some("replication"),
                )
                .await
                .map_err(local)
            }
            Side::Remote(r) => r.delete_manifest(repo, tag).await,
        }
    }
}

/// The largest manifest read from a remote.
const MANIFEST_MAX: usize = 4 * 1024 * 1024;
/// The largest image config read to learn an image's platform.
const CONFIG_MAX: u64 = 1024 * 1024;

/// Paces blob bytes to the rule's bandwidth limit.
struct Throttle {
    per_sec: u64,
    start: Instant,
    sent: u64,
}

impl Throttle {
    async fn pace(&mut self, n: usize) {
        self.sent += n as u64;
        let due = Duration::from_secs_f64(self.sent as f64 / self.per_sec as f64);
        let elapsed = self.start.elapsed();
        if due > elapsed {
            tokio::time::sleep(due - elapsed).await;
        }
    }
}

/// One execution in progress.
pub(super) struct Run<'a> {
    registry: &'a Registry,
    execution: i64,
    /// What it did so far.
    pub(super) counters: ReplicationCounters,
    /// Its log, a line an entry.
    pub(super) log: Vec<String>,
    /// Blobs known on the destination in this run, with a repository that holds each (a
    /// mount source).
    placed: HashMap<Digest, String>,
    /// Manifests (destination repository, digest) copied or found in this run.
    done: HashSet<(String, Digest)>,
    throttle: Option<Throttle>,
    /// Bytes per upload chunk.
    chunk: usize,
}

/// What became of one tag.
enum Outcome {
    Copied(Digest),
    Skipped(Digest, String),
}

impl<'a> Run<'a> {
    /// Execution `execution`'s run, its log so far `log` (a start that takes a crashed
    /// one over goes on with it).
    pub(super) fn new(registry: &'a Registry, execution: i64, log: &str) -> Run<'a> {
        Run {
            registry,
            execution,
            counters: ReplicationCounters::default(),
            log: log.lines().map(str::to_owned).collect(),
            placed: HashMap::new(),
            done: HashSet::new(),
            throttle: None,
            chunk: CHUNK_DEFAULT as usize,
        }
    }

    pub(super) fn note(&mut self, line: String) {
        let at = self.registry.clock.now();
        tracing::debug!(execution = self.execution, "{line}");
        self.log.push(format!("{at} {line}"));
    }

    pub(super) async fn rule(&mut self, rule: &ReplicationRule) -> std::result::Result<(), String> {
        let remote = remote_of(rule, self.registry)?;
        self.chunk = rule.chunk_bytes;
        self.throttle = rule.input.bandwidth_limit.map(|per_sec| Throttle {
            per_sec,
            start: Instant::now(),
            sent: 0,
        });
        let (source, destination) = sides(rule, self.registry, &remote);
        self.note(format!(
            "rule {}: {} {} -> {}",
            rule.name,
            rule.input.direction,
            source.name(),
            destination.name()
        ));
        retry(|| remote.ping()).await.map_err(|e| e.to_string())?;
        let repositories = retry(|| source.repositories(rule))
            .await
            .map_err(|e| e.to_string())?;
        // Which source repository each destination is copied from (a rename may map two
        // sources to one destination: the second is refused, never merged into the first).
        let mut taken: HashMap<RepoName, String> = HashMap::new();
        for repo in repositories {
            let to = match rule.destination(&repo) {
                Ok(to) => to,
                Err(e) => {
                    self.task(&repo, "", None, "failed", 0, e).await?;
                    continue;
                }
            };
            match taken.get(&to) {
                Some(first) => {
                    let why =
                        format!("{to} is already the copy of {first}: the rename maps both there");
                    self.task(&repo, to.as_str(), None, "failed", 0, why)
                        .await?;
                    continue;
                }
                None => {
                    taken.insert(to.clone(), repo.clone());
                }
            }
            let tags = retry(|| source.tags(&repo, rule))
                .await
                .map_err(|e| e.to_string())?;
            for tag in &tags {
                let before = self.counters.bytes_moved;
                let outcome = self
                    .copy_tag(rule, source, destination, &repo, to.as_str(), tag)
                    .await;
                let moved = self.counters.bytes_moved - before;
                let (from, dest) = (format!("{repo}:{tag}"), format!("{to}:{tag}"));
                match outcome {
                    Ok(Outcome::Copied(d)) => {
                        self.task(&from, &dest, Some(&d), "copied", moved, String::new())
                            .await?
                    }
                    Ok(Outcome::Skipped(d, why)) => {
                        self.task(&from, &dest, Some(&d), "skipped", moved, why)
                            .await?
                    }
                    Err(e) => {
                        self.counters.failed += 1;
                        self.task(&from, &dest, None, "failed", moved, e.to_string())
                            .await?
                    }
                }
            }
            if rule.input.replicate_deletes {
                let there = retry(|| destination.tags(to.as_str(), rule))
                    .await
                    .map_err(|e| e.to_string())?;
                for tag in there.iter().filter(|t| !tags.contains(t)) {
                    let dest = format!("{to}:{tag}");
                    match retry(|| destination.delete_tag(to.as_str(), tag)).await {
                        Ok(()) => {
                            self.task(
                                &format!("{repo}:{tag}"),
                                &dest,
                                None,
                                "copied",
                                0,
                                "deleted: gone from the source".into(),
                            )
                            .await?
                        }
                        Err(e) => {
                            self.counters.failed += 1;
                            self.task(
                                &format!("{repo}:{tag}"),
                                &dest,
                                None,
                                "failed",
                                0,
                                format!("delete: {e}"),
                            )
                            .await?
                        }
                    }
                }
            }
        }
        Ok(())
    }

    async fn task(
        &mut self,
        source: &str,
        destination: &str,
        digest: Option<&Digest>,
        state: &str,
        bytes: i64,
        message: String,
    ) -> std::result::Result<(), String> {
        self.note(format!(
            "{state} {source} -> {destination}{}{}",
            digest.map(|d| format!(" ({d})")).unwrap_or_default(),
            if message.is_empty() {
                String::new()
            } else {
                format!(": {message}")
            }
        ));
        let row = TaskRow {
            source: source.to_owned(),
            destination: destination.to_owned(),
            digest: digest.map(ToString::to_string),
            state: state.to_owned(),
            bytes,
            message,
        };
        self.registry
            .meta
            .record_replication_task(self.execution, &row, &self.counters, &self.log.join("\n"))
            .await
            .map_err(|e| format!("could not record the task: {e}"))
    }

    async fn copy_tag(
        &mut self,
        rule: &ReplicationRule,
        source: Side<'_>,
        destination: Side<'_>,
        repo: &str,
        to: &str,
        tag: &str,
    ) -> Step<Outcome> {
        let read = retry(|| source.manifest(repo, tag))
            .await?
            .ok_or(UpstreamError::NotFound)?;
        let source_digest = read.digest.clone();
        let read = match rule.as_copied(&source, repo, read).await? {
            Ok(read) => read,
            Err(why) => return Ok(Outcome::Skipped(source_digest, why)),
        };
        let there = retry(|| destination.tag_digest(to, tag)).await?;
        let outcome = match there {
            Some(d) if d == read.digest => {
                self.counters.manifests_skipped += 1;
                self.done.insert((to.to_owned(), read.digest.clone()));
                Outcome::Skipped(read.digest.clone(), "the destination has it".into())
            }
            Some(d) if !rule.input.override_tags => {
                return Ok(Outcome::Skipped(
                    read.digest,
                    format!("the destination's tag points at {d} (override_tags is off)"),
                ));
            }
            _ => {
                self.copy_manifest(source, destination, repo, to, tag, read.clone_ref())
                    .await?;
                Outcome::Copied(read.digest.clone())
            }
        };
        self.copy_referrers(source, destination, repo, to, &read)
            .await?;
        if read.digest != source_digest {
            self.note_referrers_left(source, repo, to, &source_digest)
                .await?;
        }
        Ok(outcome)
    }

    /// Notes the referrers of a source index that the copy narrowed: they name the
    /// source's digest and vouch for that index, not for the narrowed one, so they are not
    /// copied (the kept images' own referrers are).
    async fn note_referrers_left(
        &mut self,
        source: Side<'_>,
        repo: &str,
        to: &str,
        index: &Digest,
    ) -> Step<()> {
        let mut left = retry(|| source.referrers(repo, index)).await?.len();
        for suffix in ["sig", "att", "sbom"] {
            let tag = format!("{}.{suffix}", fallback_tag(index));
            if retry(|| source.tag_digest(repo, &tag)).await?.is_some() {
                left += 1;
            }
        }
        if left > 0 {
            self.note(format!(
                "{left} referrer(s) of {repo}@{index} not copied to {to}: they name the \
                 source index, which the platforms filter narrowed to a new digest"
            ));
        }
        Ok(())
    }

    /// Copies the manifest `read` (children and blobs first), stored under `reference`.
    async fn copy_manifest(
        &mut self,
        source: Side<'_>,
        destination: Side<'_>,
        repo: &str,
        to: &str,
        reference: &str,
        read: Read,
    ) -> Step<bool> {
        let parsed = Manifest::parse(&read.payload, Some(&read.media_type)).map_err(|e| {
            UpstreamError::BadAnswer(format!(
                "{} is not a manifest Berth reads: {e}",
                read.digest
            ))
        })?;
        for child in &parsed.children {
            if self.done.contains(&(to.to_owned(), child.digest.clone())) {
                continue;
            }
            if !retry(|| destination.has_manifest(to, &child.digest)).await? {
                let child_read = retry(|| source.manifest(repo, child.digest.as_str()))
                    .await?
                    .ok_or_else(|| {
                        UpstreamError::BadAnswer(format!(
                            "the source lacks {} of index {}",
                            child.digest, read.digest
                        ))
                    })?;
                if child_read.digest != child.digest {
                    return Err(UpstreamError::BadAnswer(format!(
                        "the source sent {} for {}",
                        child_read.digest, child.digest
                    )));
                }
                Box::pin(self.copy_manifest(
                    source,
                    destination,
                    repo,
                    to,
                    child.digest.as_str(),
                    child_read,
                ))
                .await?;
            } else {
                self.counters.manifests_skipped += 1;
            }
            self.done.insert((to.to_owned(), child.digest.clone()));
        }
        for blob in parsed.required_blobs() {
            self.copy_blob(source, destination, repo, to, &blob.digest)
                .await?;
        }
        let indexed = retry(|| destination.put_manifest(to, reference, &read)).await?;
        self.counters.manifests_copied += 1;
        self.done.insert((to.to_owned(), read.digest.clone()));
        if let (Some(subject), false) = (&parsed.subject, indexed) {
            self.add_to_fallback(destination, to, subject, &read, &parsed)
                .await?;
        }
        Ok(indexed)
    }

    /// Lists `read` (a referrer of `subject`) in the destination's `sha256-<hex>` index,
    /// for a destination without the referrers API.
    async fn add_to_fallback(
        &mut self,
        destination: Side<'_>,
        to: &str,
        subject: &Digest,
        read: &Read,
        parsed: &Manifest,
    ) -> Step<()> {
        let Side::Remote(remote) = destination else {
            return Ok(());
        };
        let tag = fallback_tag(subject);
        let mut index = match remote.manifest(to, &tag, MANIFEST_MAX).await {
            Ok(m) => serde_json::from_slice::<serde_json::Value>(&m.payload).unwrap_or_default(),
            Err(UpstreamError::NotFound) => serde_json::Value::Null,
            Err(e) => return Err(e),
        };
        if !index["manifests"].is_array() {
            index = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": [],
            });
        }
        let manifests = index["manifests"].as_array_mut().expect("an array");
        if manifests
            .iter()
            .any(|d| d["digest"].as_str() == Some(read.digest.as_str()))
        {
            return Ok(());
        }
        let mut descriptor = serde_json::json!({
            "mediaType": read.media_type,
            "digest": read.digest.as_str(),
            "size": read.payload.len(),
        });
        let artifact_type = parsed
            .artifact_type
            .clone()
            .or_else(|| parsed.config_media_type.clone());
        if let Some(t) = artifact_type {
            descriptor["artifactType"] = t.into();
        }
        if let Some(a) = &parsed.annotations {
            descriptor["annotations"] = serde_json::to_value(a).unwrap_or_default();
        }
        manifests.push(descriptor);
        let payload = Bytes::from(serde_json::to_vec(&index).unwrap_or_default());
        let media = "application/vnd.oci.image.index.v1+json";
        retry(|| remote.put_manifest(to, &tag, media, payload.clone())).await?;
        self.note(format!(
            "listed {} in {to}:{tag} (referrers tag fallback)",
            read.digest
        ));
        Ok(())
    }

    /// Copies the referrers of `read` (and of its children) and cosign's tags of it.
    async fn copy_referrers(
        &mut self,
        source: Side<'_>,
        destination: Side<'_>,
        repo: &str,
        to: &str,
        read: &Read,
    ) -> Step<()> {
        let mut subjects = vec![read.digest.clone()];
        if let Ok(parsed) = Manifest::parse(&read.payload, Some(&read.media_type)) {
            subjects.extend(parsed.children.iter().map(|c| c.digest.clone()));
        }
        for subject in subjects {
            for referrer in retry(|| source.referrers(repo, &subject)).await? {
                if self.done.contains(&(to.to_owned(), referrer.clone())) {
                    continue;
                }
                if retry(|| destination.has_manifest(to, &referrer)).await? {
                    self.done.insert((to.to_owned(), referrer));
                    continue;
                }
                let Some(r) = retry(|| source.manifest(repo, referrer.as_str())).await? else {
                    continue;
                };
                if r.digest != referrer {
                    return Err(UpstreamError::BadAnswer(format!(
                        "the source sent {} for referrer {referrer}",
                        r.digest
                    )));
                }
                Box::pin(self.copy_manifest(source, destination, repo, to, referrer.as_str(), r))
                    .await?;
                self.note(format!("copied referrer {referrer} of {subject} to {to}"));
            }
            // cosign's tag scheme: the signature, attestations and SBOM of a digest.
            for suffix in ["sig", "att", "sbom"] {
                let tag = format!("{}.{suffix}", fallback_tag(&subject));
                let Some(at) = retry(|| source.tag_digest(repo, &tag)).await? else {
                    continue;
                };
                if retry(|| destination.tag_digest(to, &tag)).await? == Some(at.clone()) {
                    continue;
                }
                let Some(r) = retry(|| source.manifest(repo, &tag)).await? else {
                    continue;
                };
                Box::pin(self.copy_manifest(source, destination, repo, to, &tag, r)).await?;
                self.note(format!("copied {repo}:{tag} of {subject} to {to}"));
            }
        }
        Ok(())
    }

    /// Makes blob `digest` present in destination repository `to`: found there, mounted
    /// from another repository that has it, or uploaded.
    async fn copy_blob(
        &mut self,
        source: Side<'_>,
        destination: Side<'_>,
        repo: &str,
        to: &str,
        digest: &Digest,
    ) -> Step<()> {
        if retry(|| destination.blob_size(to, digest)).await?.is_some() {
            self.counters.blobs_skipped += 1;
            self.placed.insert(digest.clone(), to.to_owned());
            return Ok(());
        }
        let mut session = None;
        match destination {
            Side::Local(reg) => {
                let name: RepoName = to
                    .parse()
                    .map_err(|e| local(Error::NameInvalid(format!("{e}"))))?;
                if !reg
                    .meta
                    .repositories_linking(digest, 1)
                    .await
                    .map_err(local)?
                    .is_empty()
                    && let Ok(crate::registry::Mounted::Blob { .. }) =
                        reg.mount_blob(&name, digest, None).await
                {
                    self.counters.blobs_mounted += 1;
                    return Ok(());
                }
            }
            Side::Remote(remote) => {
                if let Some(from) = self.placed.get(digest).filter(|f| f.as_str() != to) {
                    let from = from.clone();
                    match retry(|| remote.mount(to, digest, &from)).await? {
                        Mount::Mounted => {
                            self.counters.blobs_mounted += 1;
                            self.placed.insert(digest.clone(), to.to_owned());
                            return Ok(());
                        }
                        Mount::Session(location) => session = Some(location),
                    }
                }
            }
        }
        match destination {
            Side::Local(reg) => self.download(reg, source, repo, to, digest).await?,
            Side::Remote(remote) => {
                self.upload(remote, source, repo, to, digest, session)
                    .await?
            }
        }
        self.counters.blobs_copied += 1;
        self.placed.insert(digest.clone(), to.to_owned());
        Ok(())
    }

    /// Pulls blob `digest` into this registry (verified before it is committed). On a local
    /// directory the blob goes into a resumable session: a retry, or the next start after a
    /// crash, asks the source only for the bytes not yet recorded.
    async fn download(
        &mut self,
        reg: &Registry,
        source: Side<'_>,
        repo: &str,
        to: &str,
        digest: &Digest,
    ) -> Step<()> {
        let name: RepoName = to
            .parse()
            .map_err(|e| local(Error::NameInvalid(format!("{e}"))))?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut resumable = reg
                .claim_resumable(&name, digest.as_str(), true)
                .await
                .map_err(local)?;
            let offset = resumable.as_ref().map_or(0, Resumable::offset);
            let opened = match source.blob(repo, digest, offset).await {
                Err(UpstreamError::BadAnswer(why)) if offset > 0 => {
                    self.note(format!(
                        "blob {digest} from {}: cannot resume at byte {offset} ({why}): fetching it whole",
                        source.name()
                    ));
                    resumable = None;
                    source.blob(repo, digest, 0).await
                }
                opened => opened,
            };
            let body = match opened {
                Ok(b) => b,
                Err(e) if e.is_transient() && attempt < ATTEMPTS => {
                    backoff(attempt).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if offset > 0 && resumable.is_some() {
                self.note(format!(
                    "blob {digest} from {}: resuming at byte {offset}",
                    source.name()
                ));
            }
            let counted = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
            let seen = counted.clone();
            let limit = self.throttle.as_ref().map(|t| t.per_sec);
            let started = Instant::now();
            let body = body.then(move |chunk| {
                let seen = seen.clone();
                async move {
                    if let Ok(c) = &chunk {
                        let total = seen
                            .fetch_add(c.len() as u64, std::sync::atomic::Ordering::Relaxed)
                            + c.len() as u64;
                        if let Some(per_sec) = limit {
                            let due = Duration::from_secs_f64(total as f64 / per_sec as f64);
                            if due > started.elapsed() {
                                tokio::time::sleep(due - started.elapsed()).await;
                            }
                        }
                    }
                    chunk
                }
            });
            match reg
                .write_fetched(&name, resumable, digest, Box::pin(body))
                .await
            {
                Ok(_) => {
                    self.counters.bytes_moved +=
                        counted.load(std::sync::atomic::Ordering::Relaxed) as i64;
                    return Ok(());
                }
                Err(e) => {
                    let message = format!("blob {digest} from {}: {e}", source.name());
                    if attempt >= ATTEMPTS {
                        return Err(UpstreamError::BadAnswer(message));
                    }
                    self.note(format!("retrying {message}"));
                    backoff(attempt).await;
                }
            }
        }
    }

    /// Pushes blob `digest` to the remote in chunks; after a failure, resumes from the
    /// offset the remote acknowledged (a new session when it lost the old one).
    async fn upload(
        &mut self,
        remote: &Remote,
        source: Side<'_>,
        repo: &str,
        to: &str,
        digest: &Digest,
        session: Option<String>,
    ) -> Step<()> {
        let chunk_size = self.chunk;
        let (mut location, mut offset) = match session {
            Some(location) => {
                self.keep_upload(to, digest, Some(&location)).await?;
                (location, 0)
            }
            None => self.upload_session(remote, to, digest).await?,
        };
        let mut attempt = 0;
        loop {
            let sent = self
                .send_from(
                    remote,
                    source,
                    repo,
                    to,
                    digest,
                    &mut location,
                    &mut offset,
                    chunk_size,
                )
                .await;
            let failure = match sent {
                Ok(()) => match remote.finish_upload(to, &location, digest).await {
                    Ok(()) => return self.keep_upload(to, digest, None).await,
                    Err(e) => e,
                },
                Err(e) => e,
            };
            attempt += 1;
            if !failure.is_transient() || attempt >= ATTEMPTS {
                return Err(failure);
            }
            self.note(format!(
                "blob {digest} to {to}: {failure}; resuming (attempt {})",
                attempt + 1
            ));
            backoff(attempt).await;
            offset = match remote.upload_offset(to, &location).await {
                Ok(acknowledged) => acknowledged,
                Err(_) => {
                    location = retry(|| remote.start_upload(to)).await?;
                    self.keep_upload(to, digest, Some(&location)).await?;
                    0
                }
            };
        }
    }

    /// An upload session for blob `digest` of remote repository `to`: the one an
    /// interrupted start of this execution left, at the offset the remote acknowledges,
    /// else a new one.
    async fn upload_session(
        &mut self,
        remote: &Remote,
        to: &str,
        digest: &Digest,
    ) -> Step<(String, u64)> {
        let kept = self
            .registry
            .meta
            .replication_upload(self.execution, to, digest.as_str())
            .await
            .map_err(local)?;
        if let Some(location) = kept {
            match remote.upload_offset(to, &location).await {
                Ok(offset) => {
                    self.note(format!(
                        "blob {digest} to {to}: resuming the upload an earlier start left, at byte {offset}"
                    ));
                    return Ok((location, offset));
                }
                Err(e) => self.note(format!(
                    "blob {digest} to {to}: the upload an earlier start left is gone ({e}); starting again"
                )),
            }
        }
        let location = retry(|| remote.start_upload(to)).await?;
        self.keep_upload(to, digest, Some(&location)).await?;
        Ok((location, 0))
    }

    /// Records the upload session in flight for blob `digest` of `to` (`None`: complete).
    async fn keep_upload(&self, to: &str, digest: &Digest, location: Option<&str>) -> Step<()> {
        self.registry
            .meta
            .keep_replication_upload(self.execution, to, digest.as_str(), location)
            .await
            .map_err(local)
    }

    #[allow(clippy::too_many_arguments)]
    async fn send_from(
        &mut self,
        remote: &Remote,
        source: Side<'_>,
        repo: &str,
        to: &str,
        digest: &Digest,
        location: &mut String,
        offset: &mut u64,
        chunk_size: usize,
    ) -> Step<()> {
        let mut body = source.blob(repo, digest, *offset).await?;
        let mut buffer = BytesMut::new();
        loop {
            let next = body.next().await;
            let end = next.is_none();
            if let Some(chunk) = next {
                let chunk = chunk.map_err(UpstreamError::Unavailable)?;
                buffer.extend_from_slice(&chunk);
            }
            while buffer.len() >= chunk_size || (end && !buffer.is_empty()) {
                let take = buffer.len().min(chunk_size);
                let part = buffer.split_to(take).freeze();
                let n = part.len();
                let next = remote.upload_chunk(to, location, *offset, part).await?;
                *offset += n as u64;
                if next != *location {
                    // Some registries move the session with each chunk (Distribution's
                    // `_state`); a resume needs the newest.
                    *location = next;
                    self.keep_upload(to, digest, Some(location.as_str()))
                        .await?;
                }
                self.counters.bytes_moved += n as i64;
                if let Some(t) = &mut self.throttle {
                    t.pace(n).await;
                }
            }
            if end {
                return Ok(());
            }
        }
    }
}

impl Read {
    fn clone_ref(&self) -> Read {
        Read {
            digest: self.digest.clone(),
            media_type: self.media_type.clone(),
            payload: self.payload.clone(),
        }
    }
}

async fn backoff(attempt: u32) {
    tokio::time::sleep(BACKOFF_FIRST * 2u32.pow(attempt.saturating_sub(1).min(6))).await;
}

/// Runs `step` until it succeeds, fails for good, or has failed [`ATTEMPTS`] times with
/// transient errors, pausing with exponential backoff between.
async fn retry<T, F, Fut>(step: F) -> Step<T>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Step<T>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match step().await {
            Err(e) if e.is_transient() && attempt < ATTEMPTS => backoff(attempt).await,
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fallback_tag_is_a_digest_not_a_cosign_tag() {
        let digest: Digest = format!("sha256:{}", "a".repeat(64)).parse().unwrap();
        assert_eq!(fallback_tag(&digest), format!("sha256-{}", "a".repeat(64)));
        assert!(is_fallback_tag(&fallback_tag(&digest)));
        assert!(!is_fallback_tag(&format!("sha256-{}.sig", "a".repeat(64))));
    }
}
