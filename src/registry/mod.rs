//! The registry domain: the OCI rules for blobs, uploads, manifests and tags, images,
//! repositories, usage statistics, garbage collection and cleanup policies. Handlers (`http`,
//! `api`) and the workers call this; this calls only the index ([`crate::meta`], every SQL
//! statement) and the blob store ([`crate::blobs`], every object), counts into
//! [`crate::metrics`], and never reaches back up to a handler.
//!
//! One room per noun, each with its own `impl Registry`: blobs, uploads, manifests (with their
//! referrers), tags, images (the management API's view of manifests and tags), repositories
//! (the catalog, summaries, deletion), settings (tag rules), stats (usage figures), quotas
//! (namespace limits, checked where pushes add bytes or repositories), scans (what images
//! contain, each layer read once), advisories (imported, matched), vulnerabilities (an image's
//! inventory matched against the advisories), quarantine (images held back from pulls),
//! scan_policy (what namespaces and repositories ask of their images; the allowlist) with
//! exemptions (why a finding does not count: the allowlist, OpenVEX referrers),
//! [`gc`], [`policies`] and the job queue that drives them; listings are cut into pages by
//! [`Page`].
//!
//! Invariants, each pinned by tests:
//! - **Bytes first, rows second.** A blob's object is written and verified against its digest
//!   before its index row exists; a client can see only what the index lists, so nothing
//!   unverified or half-written is ever served.
//! - **Rows first, bytes second on delete.** Deleting removes index rows; objects that nothing
//!   references any more are left for garbage collection ([`gc`]), which deletes a row only
//!   after re-checking that nothing needs it, and its object only under a claim that keeps
//!   writers of the same digest out.
//! - **Repository isolation.** A blob is served from a repository only through that
//!   repository's link to it (pushed there, or mounted from a repository it came from).
//! - **Bounded memory.** Bodies stream to the store; listings are paged by the database.
//!
//! Time-based rules (grace periods, leases, policy cadences) read [`Registry::clock`], the
//! configuration's clock, so tests move time forward instead of waiting for it.

mod advisories;
mod blobs;
mod exemptions;
mod findings;
mod gc;
mod images;
mod jobs;
mod manifests;
mod paging;
pub mod policies;
mod proxy;
mod quarantine;
mod quotas;
mod replication;
mod reports;
mod repositories;
mod scan_policy;
mod scans;
mod settings;
mod signatures;
mod stats;
mod tags;
mod uploads;
mod vulnerabilities;
mod webhooks;

use std::{collections::HashMap, sync::Arc, sync::Mutex};

pub use advisories::{Advisory, AffectedEntry, Finding, ImportReport, REJECTED_LISTED};
pub use blobs::{BlobRead, RangeRequest};
pub use gc::{GcOptions, GcReport, Progress};
pub use images::{
    ChildSummary, ConfigSummary, HistoryEntry, ImageDetail, ImageSummary, LayerSummary,
    PlatformSummary, Platforms, ReferrerNode, ReferrerSummary, TagSummary,
};
// The listing parameters are the index's own: re-exported so handlers need not reach it.
pub use crate::meta::{
    findings::SeverityCounts,
    gc::QueuedGcOptions,
    images::{ImageCursor, ImageFilter, ImageSort, ImageStatus},
    tags::{TagCursor, TagSort},
};
pub use exemptions::{OPENVEX_MEDIA_TYPE, SuppressedVulnerability, Suppression};
pub use manifests::ManifestPut;
pub use paging::{Page, page_size};
pub use proxy::{ActiveRule, ActiveRules, BlobFill, RuleSource};
pub use quarantine::{
    ImageQuarantine, QuarantineOutcome, QuarantineRecord, REASON_MAX_BYTES, check_reason,
};
pub use quotas::{QuotaLimits, QuotaStatus, WARN_PERCENT_DEFAULT};
pub use replication::{
    DriftEntry, ExecutionView, FilterInput, RemoteInput, ReplicationRuleInput, ReplicationRuleView,
};
pub use reports::ImportedReport;
pub use scan_policy::{
    AllowScope, AllowlistEntry, EffectiveFlag, EffectiveScanPolicy, EffectiveSeverity, FieldError,
    NewEntry, SCAN_POLICY_FIELDS, ScanPolicy, ScanPolicyPatch, ScanPolicySettings,
};
pub use scans::{ImagePackage, PackagePlatform, ScanRecord};
// The allowlist's filter is the index's own: re-exported so handlers need not reach it.
pub use crate::meta::scan_policy::AllowlistFilter;
// The inventory's filter is the index's own: re-exported so handlers need not reach it.
pub use crate::meta::scans::PackageFilter;
pub use settings::{Mutability, Override, TagRules};
pub use signatures::{
    SIGNATURE_BLOB_MAX, SignatureView, SignedStatus, TrustPolicyInput, TrustPolicyView,
};
pub use stats::{Interval, TREND_DAYS_MAX, TrendBucket};
// The usage figures are the index's own rows: re-exported so handlers need not reach it.
pub use crate::meta::usage::{DayFigures, PopularRepository, PopularSubject, PopularTag, Totals};
pub use findings::{
    AdvisoryImpact, AffectedImage, FindingChange, FixedTags, VulnerabilityTotals, VulnerableImage,
};
pub use uploads::Mounted;
pub use vulnerabilities::{
    FixedIn, ImageVulnerabilities, SeveritySummary, Vulnerability, VulnerabilityFilter,
};
pub use webhooks::{
    Carried, Chain, CheckedWebhook, DeliveryView, Outgoing, Sent, WEBHOOK_BATCH_MAX,
    WEBHOOK_HEADERS_MAX, WebhookInput, WebhookView, resolve_receiver,
};

use crate::{
    blobs::Blobs,
    clock::Clock,
    config::{Config, GcConfig, Limits, ScanConfig, WebhooksConfig},
    meta::{Meta, stats::PullStats},
    metrics::Metrics,
    oci::Hasher,
};

/// The domain service, cheap to clone (shared handles inside).
#[derive(Clone)]
pub struct Registry {
    meta: Meta,
    blobs: Blobs,
    limits: Limits,
    gc: GcConfig,
    scan: ScanConfig,
    clock: Clock,
    running_hashes: Arc<RunningHashes>,
    pulls: Arc<PullStats>,
    metrics: Metrics,
    /// Namespace usage counted for the quota gauges, reused by scrapes for a while.
    quota_counts: Arc<quotas::QuotaCounts>,
    /// How long such a count serves (`metrics.quota_count_secs`).
    quota_count_secs: i64,
    /// The pull-through cache's rules, upstream clients and downloads in flight.
    proxy: Arc<proxy::ProxyCache>,
    /// Where webhooks may go and how they are retried (`[webhooks]`).
    webhooks: WebhooksConfig,
    /// How payloads name this registry.
    webhook_source: crate::webhooks::Source,
}

impl Registry {
    /// The registry over an index and a blob store already open, with the limits, collection
    /// settings and clock of `config`. Its handle on the index queues repository reviews when
    /// collection is continuous.
    pub fn new(meta: Meta, blobs: Blobs, config: &Config) -> Registry {
        let metrics = Metrics::new();
        Registry {
            meta,
            blobs: blobs.with_metrics(metrics.storage()),
            metrics,
            limits: config.limits.clone(),
            gc: config.gc.clone(),
            scan: config.scan.clone(),
            clock: config.clock.clone(),
            running_hashes: Arc::default(),
            pulls: Arc::new(PullStats::new(config.clock.clone(), config.stats.enabled)),
            quota_counts: Arc::default(),
            quota_count_secs: i64::try_from(config.metrics.quota_count_secs).unwrap_or(i64::MAX),
            proxy: Arc::new(proxy::ProxyCache::new(&config.proxy, config.clock.clone())),
            webhooks: config.webhooks.clone(),
            webhook_source: crate::webhooks::Source {
                base_url: match &config.external_url {
                    Some(u) => format!("{}://{}", if u.https { "https" } else { "http" }, u.host),
                    None => format!("http://{}", config.listen),
                },
                instance: config.node_name.clone(),
            },
        }
    }

    /// Opens the index and the blob store `config` names, and the registry over them.
    pub async fn open(config: &Config) -> anyhow::Result<Registry> {
        let meta = Meta::open(config).await?;
        let blobs = Blobs::open(config)?;
        let registry = Registry::new(meta, blobs, config);
        // The pull-through cache rules of the API are in force from the first request.
        registry.refresh_proxy_rules().await?;
        Ok(registry)
    }

    /// The size limits this registry enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The garbage collection settings.
    pub fn gc_config(&self) -> &GcConfig {
        &self.gc
    }

    /// The wall clock every time-based rule of the registry reads.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The entries a listing page holds: the client's `n` up to `limits.page_max_entries`,
    /// that many without one.
    pub fn page_size(&self, n: Option<u32>) -> u32 {
        page_size(n, self.limits.page_max_entries)
    }

    /// This registry's metrics (`GET /metrics`).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Writes the pull counts gathered in memory to the index.
    pub async fn flush_pull_stats(&self) -> crate::error::Result<()> {
        self.meta.flush_pull_stats(&self.pulls).await?;
        self.metrics.stats_flushed(self.clock.now());
        Ok(())
    }

    /// Writes what is held in memory and closes the index (at shutdown).
    pub async fn close(&self) {
        if let Err(e) = self.flush_pull_stats().await {
            tracing::warn!(error = %e, "could not write pull statistics at shutdown");
        }
        self.meta.close().await;
    }
}

/// The sha256 state of chunked uploads in progress, so the final PUT need not read the bytes
/// back. Only an optimisation: when an entry is missing (another replica took the chunk, the
/// process restarted, or the cache was full) the parts are hashed from the store instead.
#[derive(Default)]
struct RunningHashes(Mutex<HashMap<String, (u64, Hasher)>>);

/// Sessions tracked at once; beyond this, new sessions are verified by reading back.
const RUNNING_HASHES_MAX: usize = 4096;

impl RunningHashes {
    /// The state of `session` if it has hashed exactly `offset` bytes.
    fn take(&self, session: &str, offset: u64) -> Option<Hasher> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match map.remove(session) {
            Some((at, h)) if at == offset => Some(h),
            _ => None,
        }
    }

    fn put(&self, session: &str, offset: u64, hasher: Hasher) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() < RUNNING_HASHES_MAX || map.contains_key(session) {
            map.insert(session.to_owned(), (offset, hasher));
        }
    }

    fn forget(&self, session: &str) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(session);
    }
}
