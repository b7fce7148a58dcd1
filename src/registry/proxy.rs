//! The pull-through cache: repositories under a `[[proxy]]` rule's prefix are filled from
//! the rule's upstreams when a pull misses, then served like pushed ones (access control,
//! statistics, quotas, collection and scanning apply to them unchanged).
//!
//! - Rules come from the configuration file and from the API. Those of the API are kept in
//!   the index and read by every replica at start, after each change it makes, and every
//!   few seconds ([`Registry::refresh_proxy_rules`]); a configured prefix is changed only in
//!   the file.
//! - A manifest by digest, once cached, is served without asking the upstream. A tag is
//!   served from the cache for `tag_ttl` after it was fetched or revalidated; then one HEAD
//!   upstream revalidates it (never a download, unless the tag moved). When the upstream
//!   fails (429, 5xx, timeout, refused connection or credentials) the cached tag is served,
//!   logged and counted (stale-if-error); content not cached gets a 502/503 naming the
//!   upstream and its answer. A 404 is remembered for `not_found_ttl`.
//! - Manifests are stored byte for byte through the push path ([`Registry::store_manifest`]),
//!   so an index keeps its digest; the blobs and children it references are fetched when
//!   asked for, not before.
//! - A blob miss streams the upstream's bytes to the client while writing them to the store;
//!   the digest is verified before the blob is committed, and the client's last bytes are
//!   held back until then, so a corrupt or truncated upstream body is never committed and
//!   never completes a download. Concurrent misses of one blob fetch it once: the first
//!   streams it, the others wait for it and read it from the store.
//! - On a local directory a blob is written into an upload session of its own, recorded a
//!   segment at a time ([`Registry::write_fetched`]): a download cut off (the upstream
//!   broke, or Berth was killed) is continued by the next miss with a `Range` request from
//!   the last recorded byte, the client getting the part already kept from the store first.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, RwLock},
};

use bytes::Bytes;
use futures::{StreamExt, stream::BoxStream};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use super::{Override, Registry, manifests::Origin, uploads::Resumable};
use crate::{
    config::ProxyRule,
    error::{Error, Result},
    meta::manifests::StoredManifest,
    oci::{Digest, Manifest, Reference, RepoName, Tag},
    proxy::{UpstreamError, UpstreamManifest, Upstreams},
};

/// Where a rule in force comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RuleSource {
    /// The configuration file's `[[proxy]]`.
    Config,
    /// `PUT /api/v1/proxy/rules/{prefix}`.
    Api,
}

/// A pull-through cache rule in force.
#[derive(Debug)]
pub struct ActiveRule {
    /// The rule.
    pub rule: ProxyRule,
    /// Where it comes from.
    pub source: RuleSource,
    /// For a rule of the API: when it was last written (unix seconds) and by whom.
    pub updated: Option<(i64, String)>,
    /// For a rule of the API: its JSON as stored (a replica re-reads only what changed).
    stored: Option<String>,
}

impl ActiveRule {
    fn configured(rule: &ProxyRule) -> Arc<ActiveRule> {
        Arc::new(ActiveRule {
            rule: rule.clone(),
            source: RuleSource::Config,
            updated: None,
            stored: None,
        })
    }
}

/// The rules in force, configured ones first.
pub type ActiveRules = Arc<Vec<Arc<ActiveRule>>>;

/// What the pull-through cache keeps between requests, beside the index.
pub(super) struct ProxyCache {
    /// The rules of the configuration file.
    configured: Vec<ProxyRule>,
    /// Every rule in force: the configured ones, then those of the API.
    rules: RwLock<ActiveRules>,
    /// Held by a refresh from its read of the index to its swap, so that a refresh that read
    /// older rows never replaces a newer one's rules.
    refreshing: tokio::sync::Mutex<()>,
    upstreams: Option<Upstreams>,
    /// Upstream 404s by `repository@reference`, until when (clock seconds).
    not_found: Mutex<HashMap<String, i64>>,
    /// Blob downloads in flight by digest: followers wait for the outcome (`Some(Ok)` once
    /// the blob is committed, `Some(Err(message))` if it was not; closed if its leader went
    /// away).
    in_flight: Mutex<HashMap<Digest, watch::Receiver<Outcome>>>,
}

/// How a blob download ended, once it has: committed, or why not.
type Outcome = Option<Result<(), String>>;

impl ProxyCache {
    pub(super) fn new(rules: &[ProxyRule], clock: crate::clock::Clock) -> ProxyCache {
        let upstreams = match Upstreams::new(rules, clock) {
            Ok(u) => Some(u),
            Err(e) => {
                tracing::error!(error = %e, "the pull-through cache's HTTP client failed to start");
                None
            }
        };
        let active = rules.iter().map(ActiveRule::configured).collect();
        ProxyCache {
            configured: rules.to_vec(),
            rules: RwLock::new(Arc::new(active)),
            refreshing: tokio::sync::Mutex::new(()),
            upstreams,
            not_found: Mutex::default(),
            in_flight: Mutex::default(),
        }
    }

    /// Leads the download of `digest` when none is in flight, else follows the one that is.
    fn lead_or_follow(
        self: &Arc<ProxyCache>,
        digest: &Digest,
    ) -> Result<Flight, watch::Receiver<Outcome>> {
        let mut in_flight = lock(&self.in_flight);
        if let Some(outcome) = in_flight.get(digest) {
            return Err(outcome.clone());
        }
        let (done, outcome) = watch::channel(None);
        in_flight.insert(digest.clone(), outcome);
        Ok(Flight {
            cache: self.clone(),
            digest: digest.clone(),
            done,
        })
    }
}

/// How many times a follower takes over a download whose leader went away, before it fails.
const MAX_TAKEOVERS: u32 = 3;

/// The leader's hold on a blob download: followers wait on it. However the leader ends, the
/// entry is removed, so a later miss starts afresh. A finished or failed download publishes its
/// outcome; a leader whose request was dropped mid-way closes the channel instead, and a
/// follower then takes the download over rather than failing with it.
struct Flight {
    cache: std::sync::Arc<ProxyCache>,
    digest: Digest,
    done: watch::Sender<Outcome>,
}

impl Flight {
    fn finish(self, outcome: Result<(), String>) {
        self.done.send_replace(Some(outcome));
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        // Removed before the sender drops, so a follower woken by the close finds no leader.
        lock(&self.cache.in_flight).remove(&self.digest);
    }
}

/// A blob being fetched from an upstream for this request.
pub struct BlobFill {
    /// The size the upstream declared, if it did.
    pub size: Option<u64>,
    /// The bytes; ends with an error (the response is aborted) if the blob was not valid.
    pub body: BoxStream<'static, std::io::Result<Bytes>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How a failed upstream reaches the client of content not cached.
fn upstream_error(e: UpstreamError, not_found: Error) -> Error {
    use axum::http::StatusCode;
    match e {
        UpstreamError::NotFound => not_found,
        UpstreamError::Unavailable(message) => Error::Upstream {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message,
        },
        UpstreamError::BadAnswer(message) | UpstreamError::ServerError(message) => {
            Error::Upstream {
                status: StatusCode::BAD_GATEWAY,
                message,
            }
        }
    }
}

impl Registry {
    /// The pull-through cache rules in force: the configured ones, then those of the API.
    pub fn proxy_rules(&self) -> ActiveRules {
        self.proxy
            .rules
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reads the rules of the API from the index and puts them in force beside the
    /// configured ones. A stored rule this replica cannot resolve (a credential's variable
    /// or file missing here) or that clashes with a configured one is left out, logged.
    pub async fn refresh_proxy_rules(&self) -> Result<()> {
        let _one_at_a_time = self.proxy.refreshing.lock().await;
        let stored = self.meta.stored_proxy_rules().await?;
        let mut active: Vec<Arc<ActiveRule>> = self
            .proxy
            .configured
            .iter()
            .map(ActiveRule::configured)
            .collect();
        let current = self.proxy_rules();
        for row in stored {
            // An unchanged rule keeps its resolved form (its secrets are not read again).
            let kept = current.iter().find(|a| {
                a.rule.prefix == row.prefix && a.stored.as_deref() == Some(row.rule.as_str())
            });
            let resolved = match kept {
                Some(kept) => Ok(kept.rule.clone()),
                None => ProxyRule::from_json(&row.rule).map(|(rule, _)| rule),
            }
            .and_then(|rule| {
                let all: Vec<&ProxyRule> = active.iter().map(|a| &a.rule).chain([&rule]).collect();
                ProxyRule::check_together(&all)?;
                Ok(rule)
            });
            match resolved {
                Ok(rule) => active.push(Arc::new(ActiveRule {
                    rule,
                    source: RuleSource::Api,
                    updated: Some((row.updated_at, row.updated_by)),
                    stored: Some(row.rule),
                })),
                Err(e) => {
                    tracing::warn!(prefix = %row.prefix, error = %format!("{e:#}"), "a pull-through cache rule of the API is not in force on this replica");
                }
            }
        }
        *self.proxy.rules.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(active);
        Ok(())
    }

    /// Creates or replaces the rule of `prefix` from `json` (the keys of `[[proxy]]`; a
    /// `prefix` in it must be this one), as `by`; true when created. `Conflict` for a
    /// configured prefix, `BadRequest` naming the key for a rule that does not check or
    /// clashes with another (a prefix inside another's, a host routed twice).
    pub async fn put_proxy_rule(
        &self,
        prefix: &str,
        json: serde_json::Value,
        by: &str,
    ) -> Result<(bool, Arc<ActiveRule>)> {
        let prefix = self.managed_prefix(prefix)?;
        let mut json = match json {
            serde_json::Value::Object(map) => map,
            _ => return Err(Error::BadRequest("the rule must be a JSON object".into())),
        };
        match json.get("prefix") {
            None => {}
            Some(serde_json::Value::String(given)) if given.trim_end_matches('/') == prefix => {}
            Some(given) => {
                return Err(Error::BadRequest(format!(
                    "prefix: {given} differs from the path's {prefix:?}"
                )));
            }
        }
        json.insert("prefix".into(), prefix.clone().into());
        let text = serde_json::Value::Object(json).to_string();
        let (rule, file) =
            ProxyRule::from_json(&text).map_err(|e| Error::BadRequest(format!("{e:#}")))?;
        let others = self.proxy_rules();
        let all: Vec<&ProxyRule> = others
            .iter()
            .filter(|a| a.rule.prefix != prefix)
            .map(|a| &a.rule)
            .chain([&rule])
            .collect();
        ProxyRule::check_together(&all).map_err(|e| Error::BadRequest(format!("{e:#}")))?;
        let stored = serde_json::to_string(&file).map_err(anyhow::Error::from)?;
        let created = self.meta.put_proxy_rule(&prefix, &stored, by).await?;
        self.refresh_proxy_rules().await?;
        let active = self
            .proxy_rules()
            .iter()
            .find(|a| a.rule.prefix == prefix)
            .cloned()
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("rule {prefix} not in force")))?;
        tracing::info!(%prefix, by, created, "pull-through cache rule saved");
        Ok((created, active))
    }

    /// Deletes the rule of `prefix` (its cached repositories stay, as local ones).
    /// `Conflict` for a configured prefix, `NotFound` when the API has no such rule.
    pub async fn delete_proxy_rule(&self, prefix: &str) -> Result<()> {
        let prefix = self.managed_prefix(prefix)?;
        if !self.meta.delete_proxy_rule(&prefix).await? {
            return Err(Error::NotFound);
        }
        self.refresh_proxy_rules().await?;
        tracing::info!(%prefix, "pull-through cache rule deleted");
        Ok(())
    }

    /// `prefix` without a trailing slash, when the API may manage it (not configured).
    fn managed_prefix(&self, prefix: &str) -> Result<String> {
        let prefix = prefix.trim_end_matches('/');
        if self.proxy.configured.iter().any(|r| r.prefix == prefix) {
            return Err(Error::Conflict(format!(
                "the rule of {prefix:?} is set in the configuration file; change it there"
            )));
        }
        Ok(prefix.to_owned())
    }

    /// The rule mirroring `repo` and the upstream's name for it (the name without the
    /// prefix), if any: `repo` lies under the rule's prefix and its include and exclude
    /// globs take that name.
    fn proxy_rule(&self, repo: &RepoName) -> Option<(Arc<ActiveRule>, String)> {
        self.proxy_rules().iter().find_map(|active| {
            repo.as_str()
                .strip_prefix(active.rule.prefix.as_str())
                .and_then(|rest| rest.strip_prefix('/'))
                .filter(|rest| !rest.is_empty() && active.rule.repositories.takes(rest))
                .map(|rest| (active.clone(), rest.to_owned()))
        })
    }

    /// Whether `repo` is mirrored by a pull-through cache rule.
    pub fn is_proxied(&self, repo: &RepoName) -> bool {
        self.proxy_rule(repo).is_some()
    }

    /// The repository that mirrors `name` of registry `host` (containerd's `?ns=`): the
    /// name under the prefix of the rule listing that host, if one does.
    pub fn mirror_name(&self, host: &str, name: &RepoName) -> Option<RepoName> {
        let host = host.to_ascii_lowercase();
        let rules = self.proxy_rules();
        let active = rules.iter().find(|a| a.rule.hosts.contains(&host))?;
        format!("{}/{name}", active.rule.prefix).parse().ok()
    }

    /// Evicts cached repositories: those of a rule with `evict_after` not pulled for that
    /// long, then, while a rule's repositories hold more than its `max_bytes`, the least
    /// recently pulled. Pinned repositories stay. Their blobs are left to the collector.
    /// Returns the repositories evicted.
    pub async fn evict_cached(&self) -> Result<Vec<RepoName>> {
        let rules = self.proxy_rules();
        let evicting =
            |a: &Arc<ActiveRule>| a.rule.evict_after_secs.is_some() || a.rule.max_bytes.is_some();
        if !rules.iter().any(evicting) {
            return Ok(Vec::new());
        }
        // Pulls counted in memory are written first: they are what eviction weighs.
        self.flush_pull_stats().await?;
        let now = self.clock.now();
        let mut evicted = Vec::new();
        for active in rules.iter() {
            let rule = &active.rule;
            if rule.evict_after_secs.is_none() && rule.max_bytes.is_none() {
                continue;
            }
            let candidates = self.meta.cached_repositories(&rule.prefix).await?;
            let mut total: i64 = candidates.iter().map(|c| c.bytes).sum();
            let cap = rule.max_bytes.map(|m| i64::try_from(m).unwrap_or(i64::MAX));
            for repo in candidates {
                if rule.pinned.iter().any(|p| p == repo.name.as_str()) {
                    continue;
                }
                let idle = rule
                    .evict_after_secs
                    .is_some_and(|after| now - repo.last_used >= after);
                let over = cap.is_some_and(|cap| total > cap);
                if !idle && !over {
                    continue;
                }
                match self.delete_repository(&repo.name, Override::Allowed).await {
                    Ok(()) | Err(Error::NameUnknown) => {
                        tracing::info!(repository = %repo.name, bytes = repo.bytes, idle, "evicted from the pull-through cache");
                        total -= repo.bytes;
                        evicted.push(repo.name);
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(evicted)
    }

    /// [`Registry::get_manifest`], filling the cache first when `repo` is proxied and the
    /// manifest is not cached, or its tag was last checked upstream longer ago than the
    /// rule's `tag_ttl`. A hit costs a digest nothing more than any pull, a tag one lookup.
    pub async fn pull_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        payload: bool,
        actor: Option<&str>,
    ) -> Result<StoredManifest> {
        let Some((active, upstream_name)) = self.proxy_rule(repo) else {
            return self.get_manifest(repo, reference, payload, actor).await;
        };
        let rule = &active.rule;
        let fresh = match reference {
            Reference::Digest(_) => true,
            Reference::Tag(tag) => self
                .meta
                .proxy_tag_checked(repo, tag)
                .await?
                .is_some_and(|checked| self.clock.now() - checked < rule.tag_ttl_secs),
        };
        if fresh {
            match self.get_manifest(repo, reference, payload, actor).await {
                // not cached (or deleted here; or the repository is not made yet): fetched
                Err(Error::ManifestUnknown | Error::NameUnknown) => {}
                served => return served,
            }
        }
        self.fill_manifest(rule, &upstream_name, repo, reference)
            .await?;
        self.get_manifest(repo, reference, payload, actor).await
    }

    async fn fill_manifest(
        &self,
        rule: &ProxyRule,
        upstream_name: &str,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<()> {
        let tag = match reference {
            Reference::Digest(digest) => {
                if self
                    .meta
                    .manifest_by_digest(repo, digest, false)
                    .await?
                    .is_some()
                {
                    return Ok(());
                }
                let fetched = self
                    .fetch_manifest(rule, upstream_name, repo, digest.as_str())
                    .await?;
                return self.cache_manifest(repo, None, fetched).await;
            }
            Reference::Tag(tag) => tag,
        };
        let Some(cached) = self.meta.manifest_by_tag(repo, tag, false).await? else {
            let fetched = self
                .fetch_manifest(rule, upstream_name, repo, tag.as_str())
                .await?;
            return self.cache_manifest(repo, Some(tag), fetched).await;
        };
        let checked = self.meta.proxy_tag_checked(repo, tag).await?.unwrap_or(0);
        if self.clock.now() - checked < rule.tag_ttl_secs {
            return Ok(());
        }
        match self
            .revalidate(rule, upstream_name, repo, tag, &cached.digest)
            .await
        {
            Ok(()) => Ok(()),
            Err(Error::Upstream { message, .. }) => {
                self.serve_stale(repo, tag, &message);
                Ok(())
            }
            Err(Error::ManifestUnknown) => {
                self.serve_stale(repo, tag, "the upstream no longer has the tag");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn serve_stale(&self, repo: &RepoName, tag: &Tag, why: &str) {
        tracing::warn!(repository = %repo, %tag, reason = why, "serving the cached tag: its upstream failed");
        self.metrics.proxy_stale_served();
    }

    /// Asks the upstream (HEAD) where `tag` points now; follows it if it moved.
    async fn revalidate(
        &self,
        rule: &ProxyRule,
        upstream_name: &str,
        repo: &RepoName,
        tag: &Tag,
        cached: &Digest,
    ) -> Result<()> {
        let upstreams = self.upstreams()?;
        let now_at = upstreams
            .manifest_digest(rule, upstream_name, tag.as_str())
            .await
            .map_err(|e| upstream_error(e, Error::ManifestUnknown))?;
        match now_at {
            Some(digest) if &digest == cached => {}
            Some(digest) => match self.meta.manifest_by_digest(repo, &digest, false).await? {
                Some(known) => {
                    self.meta
                        .repush_manifest(repo, &known, Some(tag), true, None)
                        .await?;
                }
                None => {
                    let fetched = self
                        .fetch_manifest(rule, upstream_name, repo, digest.as_str())
                        .await?;
                    return self.cache_manifest(repo, Some(tag), fetched).await;
                }
            },
            // No digest in the answer: only a download says where the tag is.
            None => {
                let fetched = self
                    .fetch_manifest(rule, upstream_name, repo, tag.as_str())
                    .await?;
                return self.cache_manifest(repo, Some(tag), fetched).await;
            }
        }
        self.meta.proxy_tag_checked_now(repo, tag).await
    }

    fn upstreams(&self) -> Result<&Upstreams> {
        self.proxy
            .upstreams
            .as_ref()
            .ok_or_else(|| Error::Upstream {
                status: axum::http::StatusCode::SERVICE_UNAVAILABLE,
                message: "the pull-through cache's HTTP client is not available".into(),
            })
    }

    /// Downloads manifest `reference` of `repo`'s upstream, unless it answered 404 lately.
    async fn fetch_manifest(
        &self,
        rule: &ProxyRule,
        upstream_name: &str,
        repo: &RepoName,
        reference: &str,
    ) -> Result<UpstreamManifest> {
        let key = format!("{repo}@{reference}");
        let now = self.clock.now();
        if lock(&self.proxy.not_found)
            .get(&key)
            .is_some_and(|until| *until > now)
        {
            return Err(Error::ManifestUnknown);
        }
        let fetched = self
            .upstreams()?
            .manifest(
                rule,
                upstream_name,
                reference,
                self.limits.manifest_max_bytes,
            )
            .await;
        self.metrics.proxy_fetched("manifest");
        match fetched {
            Ok(m) => Ok(m),
            Err(UpstreamError::NotFound) => {
                let mut not_found = lock(&self.proxy.not_found);
                not_found.retain(|_, until| *until > now);
                not_found.insert(key, now + rule.not_found_ttl_secs);
                Err(Error::ManifestUnknown)
            }
            Err(e) => Err(upstream_error(e, Error::ManifestUnknown)),
        }
    }

    /// Stores an upstream's manifest as it came (under `tag` if given) and notes the tag
    /// fresh. An image's config blob is fetched first, so its platform is known.
    async fn cache_manifest(
        &self,
        repo: &RepoName,
        tag: Option<&Tag>,
        fetched: UpstreamManifest,
    ) -> Result<()> {
        let content_type = fetched.media_type.as_deref();
        let parsed =
            Manifest::parse(&fetched.payload, content_type).map_err(|e| Error::Upstream {
                status: axum::http::StatusCode::BAD_GATEWAY,
                message: format!(
                    "upstream {} sent a manifest Berth cannot store for {repo}: {e}",
                    fetched.from
                ),
            })?;
        if let Some(config) = &parsed.config
            && self
                .meta
                .linked_blob_size(repo, &config.digest)
                .await?
                .is_none()
            && config.size <= super::manifests::CONFIG_READ_MAX
            && let Some(fill) = self.proxy_blob(repo, &config.digest).await?
        {
            // Drained here: the blob is committed when its stream ends without error.
            let mut body = fill.body;
            while let Some(chunk) = body.next().await {
                chunk.map_err(|e| Error::Upstream {
                    status: axum::http::StatusCode::BAD_GATEWAY,
                    message: e.to_string(),
                })?;
            }
        }
        let reference = match tag {
            Some(tag) => Reference::Tag(tag.clone()),
            None => Reference::Digest(fetched.digest.clone()),
        };
        let from = fetched.from.clone();
        let stored = self
            .store_manifest(
                repo,
                &reference,
                content_type,
                fetched.payload,
                Override::Allowed,
                Origin::Upstream,
            )
            .await
            .map_err(|e| match e {
                Error::ManifestInvalid(why) | Error::DigestInvalid(why) => Error::Upstream {
                    status: axum::http::StatusCode::BAD_GATEWAY,
                    message: format!(
                        "upstream {from} sent a manifest Berth refuses for {repo}: {why}"
                    ),
                },
                e => e,
            })?;
        if stored.digest != fetched.digest {
            return Err(Error::Internal(anyhow::anyhow!(
                "stored {} for upstream manifest {}",
                stored.digest,
                fetched.digest
            )));
        }
        if let Some(tag) = tag {
            self.meta.proxy_tag_checked_now(repo, tag).await?;
        }
        Ok(())
    }

    /// For a blob GET of a proxied `repo` that the repository lacks: the blob streaming from
    /// the upstream (`Some`), or `None` when the normal read answers (not proxied, already
    /// cached, or fetched meanwhile by a concurrent request this one waited for).
    pub async fn proxy_blob(&self, repo: &RepoName, digest: &Digest) -> Result<Option<BlobFill>> {
        let Some((active, upstream_name)) = self.proxy_rule(repo) else {
            return Ok(None);
        };
        let (rule, upstream_name) = (&active.rule, upstream_name.as_str());
        if self.meta.linked_blob_size(repo, digest).await?.is_some() {
            return Ok(None);
        }
        let mut takeovers = 0;
        let flight = loop {
            let mut outcome = match self.proxy.lead_or_follow(digest) {
                Ok(flight) => break flight,
                Err(outcome) => outcome,
            };
            let waited = outcome.wait_for(Option::is_some).await.map(|o| o.clone());
            match waited {
                Ok(Some(Ok(()))) => return Ok(None),
                Ok(Some(Err(message))) => {
                    return Err(Error::Upstream {
                        status: axum::http::StatusCode::BAD_GATEWAY,
                        message,
                    });
                }
                // The leader's client went away mid-way: this request leads the next try.
                _ if takeovers < MAX_TAKEOVERS => takeovers += 1,
                _ => {
                    return Err(Error::Upstream {
                        status: axum::http::StatusCode::BAD_GATEWAY,
                        message: format!("the download of {digest} from the upstream stopped"),
                    });
                }
            }
        };
        // A download that ended between the first look and the registration.
        match self.meta.linked_blob_size(repo, digest).await {
            Ok(Some(_)) => {
                flight.finish(Ok(()));
                return Ok(None);
            }
            Ok(None) => {}
            Err(e) => {
                flight.finish(Err(e.to_string()));
                return Err(e);
            }
        }
        let opened = self
            .open_upstream_blob(rule, upstream_name, repo, digest)
            .await;
        let (blob, resumable) = match opened {
            Ok(opened) => opened,
            Err(e) => {
                flight.finish(Err(e.to_string()));
                return Err(e);
            }
        };
        self.metrics.proxy_fetched("blob");
        let (client_tx, client_rx) = mpsc::channel::<std::io::Result<Bytes>>(4);
        // The bytes an earlier download left go to the client first, from the store.
        let kept = match &resumable {
            Some(r) if r.offset() > 0 => self
                .blobs
                .read_spool(r.id(), r.offset())
                .map(|chunk| chunk.map_err(std::io::Error::other))
                .boxed(),
            _ => futures::stream::empty().boxed(),
        };
        let registry = self.clone();
        let (repo, digest) = (repo.clone(), digest.clone());
        let upstream_body = blob.body;
        tokio::spawn(async move {
            let outcome = registry
                .tee_into_store(&repo, &digest, upstream_body, client_tx, resumable)
                .await;
            if let Err(e) = &outcome {
                tracing::warn!(repository = %repo, %digest, error = %e, "upstream blob not cached");
            }
            flight.finish(outcome);
        });
        Ok(Some(BlobFill {
            size: blob.size,
            body: kept.chain(ReceiverStream::new(client_rx)).boxed(),
        }))
    }

    /// Opens `digest` upstream for a miss in `repo`, with the session to write it into: from
    /// where an earlier download cut off when its session could be claimed and the upstream
    /// serves ranges, else whole, into a new session once the upstream has answered (or,
    /// when that session is held elsewhere, without one). A session left at an offset the
    /// upstream cannot resume from stays for the collection of stale uploads.
    async fn open_upstream_blob(
        &self,
        rule: &ProxyRule,
        upstream_name: &str,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<(crate::proxy::UpstreamBlob, Option<Resumable>)> {
        let upstreams = self.upstreams()?;
        let left = self.claim_resumable(repo, digest.as_str(), false).await?;
        if let Some(offset) = left.as_ref().map(Resumable::offset).filter(|o| *o > 0) {
            match upstreams.blob(rule, upstream_name, digest, offset).await {
                Ok(blob) => {
                    tracing::info!(repository = %repo, %digest, offset, "resuming an upstream blob");
                    return Ok((blob, left));
                }
                Err(UpstreamError::BadAnswer(why)) => {
                    tracing::warn!(repository = %repo, %digest, error = %why, "the upstream cannot resume: fetching the blob whole");
                }
                Err(e) => return Err(upstream_error(e, Error::BlobUnknown)),
            }
        }
        let blob = upstreams
            .blob(rule, upstream_name, digest, 0)
            .await
            .map_err(|e| upstream_error(e, Error::BlobUnknown))?;
        let resumable = match left {
            Some(left) if left.offset() == 0 => Some(left),
            Some(_) => None,
            None => self.claim_resumable(repo, digest.as_str(), true).await?,
        };
        Ok((blob, resumable))
    }

    /// Writes the upstream's `body` to the store as `digest` of `repo` while passing it to
    /// `client`, one chunk behind: the last chunk goes only once the blob is verified and
    /// committed, else the client gets an error instead (its response is aborted). A client
    /// that goes away does not stop the write.
    async fn tee_into_store(
        &self,
        repo: &RepoName,
        digest: &Digest,
        mut body: BoxStream<'static, std::result::Result<Bytes, String>>,
        client: mpsc::Sender<std::io::Result<Bytes>>,
        resumable: Option<Resumable>,
    ) -> std::result::Result<(), String> {
        let (store_tx, store_rx) = mpsc::channel::<std::result::Result<Bytes, String>>(4);
        let pump = async {
            let mut held: Option<Bytes> = None;
            while let Some(item) = body.next().await {
                match item {
                    Ok(chunk) => {
                        if let Some(previous) = held.replace(chunk.clone()) {
                            let _ = client.send(Ok(previous)).await;
                        }
                        if store_tx.send(Ok(chunk)).await.is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        let _ = store_tx.send(Err(e)).await;
                        break;
                    }
                }
            }
            drop(store_tx);
            held
        };
        let (held, stored) = tokio::join!(
            pump,
            self.write_fetched(repo, resumable, digest, ReceiverStream::new(store_rx))
        );
        match stored {
            Ok(_) => {
                if let Some(last) = held {
                    let _ = client.send(Ok(last)).await;
                }
                Ok(())
            }
            Err(e) => {
                let message = format!("the upstream's blob {digest} was not valid: {e}");
                let _ = client
                    .send(Err(std::io::Error::other(message.clone())))
                    .await;
                Err(message)
            }
        }
    }
}
