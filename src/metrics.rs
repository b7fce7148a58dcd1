//! Prometheus metrics, under the names CNCF Distribution uses (`registry_http_*`,
//! `registry_storage_action_seconds`) so that its dashboards keep working, plus Berth's own
//! (`berth_*`). Each [`crate::registry::Registry`] owns one [`Metrics`] (two servers in one
//! process, as in the tests, count apart); [`crate::serve`] serves it on `GET /metrics`.
//!
//! The HTTP side (the layer every request passes, which counts, times and writes the access
//! log, and the scrape endpoint) is [`crate::http::metrics`]; this module knows no HTTP
//! beyond method and status, so the registry and the blob store can count into it.
//!
//! Labels are small fixed sets: `handler` names the endpoint ([`Handler`]), never the raw
//! path, and the number of series stays bounded: the quota gauges carry a `namespace`, only
//! for the namespaces an administrator gave a quota, and `berth_vulnerability_findings` a
//! `repository`, only for the 20 repositories with the most critical and high findings.

use std::{
    sync::{
        Arc, OnceLock,
        atomic::{AtomicI64, Ordering},
    },
    time::Instant,
};

use axum::http::{Method, StatusCode};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry as Collected, TextEncoder,
};

/// The endpoint a request was for, as the `handler` label names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Handler {
    /// `/v2/`, the version check.
    Base,
    /// `/v2/<name>/blobs/<digest>`.
    Blob,
    /// `/v2/<name>/blobs/uploads/...`.
    BlobUpload,
    /// `/v2/<name>/manifests/<reference>`.
    Manifest,
    /// `/v2/<name>/tags/list`.
    Tags,
    /// `/v2/_catalog`.
    Catalog,
    /// `/v2/<name>/referrers/<digest>`.
    Referrers,
    /// `/api/v1/...`, the management API.
    Api,
    /// `/token`.
    Token,
    /// `/metrics`.
    Metrics,
    /// `/healthz`.
    Health,
    /// Anything else (404s for unknown paths).
    Other,
}

impl Handler {
    /// Every handler, in label order.
    pub const ALL: [Handler; 12] = [
        Handler::Base,
        Handler::Blob,
        Handler::BlobUpload,
        Handler::Manifest,
        Handler::Tags,
        Handler::Catalog,
        Handler::Referrers,
        Handler::Api,
        Handler::Token,
        Handler::Metrics,
        Handler::Health,
        Handler::Other,
    ];

    /// The endpoint of a request for `path`, judged from its shape alone (no parsing of
    /// names or digests: the request has not been validated yet).
    pub fn of_path(path: &str) -> Handler {
        if let Some(rest) = path.strip_prefix("/v2") {
            let rest = rest.trim_start_matches('/');
            if rest.is_empty() {
                return Handler::Base;
            }
            if rest == "_catalog" {
                return Handler::Catalog;
            }
            // Matched from the right, as the router does: names may contain slashes.
            let mut segments = rest.rsplit('/');
            let last = segments.next().unwrap_or("");
            let before = segments.next().unwrap_or("");
            let third = segments.next().unwrap_or("");
            return match (third, before, last) {
                (_, "tags", "list") => Handler::Tags,
                (_, "blobs", "uploads") | ("blobs", "uploads", _) => Handler::BlobUpload,
                (_, "blobs", _) => Handler::Blob,
                (_, "manifests", _) => Handler::Manifest,
                (_, "referrers", _) => Handler::Referrers,
                _ => Handler::Other,
            };
        }
        if path == "/api/v1" || path.starts_with("/api/v1/") {
            return Handler::Api;
        }
        match path {
            "/token" => Handler::Token,
            "/metrics" => Handler::Metrics,
            "/healthz" => Handler::Health,
            _ => Handler::Other,
        }
    }

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Handler::Base => "base",
            Handler::Blob => "blob",
            Handler::BlobUpload => "blob_upload",
            Handler::Manifest => "manifest",
            Handler::Tags => "tags",
            Handler::Catalog => "catalog",
            Handler::Referrers => "referrers",
            Handler::Api => "api",
            Handler::Token => "token",
            Handler::Metrics => "metrics",
            Handler::Health => "health",
            Handler::Other => "other",
        }
    }
}

/// Request durations' buckets: Distribution's, from 5 ms to a minute (blob transfers).
const HTTP_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Storage calls' buckets: from half a millisecond (a local stat) to a minute (a large put).
const STORAGE_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
];

/// The registry's metrics; cheap to clone (shared handles inside).
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

struct Inner {
    collected: Collected,
    requests: IntCounterVec,
    durations: HistogramVec,
    /// Series of `durations` by handler and method, and of `in_flight` by handler, looked up
    /// once: the label hashing is not paid again on every request.
    durations_by: Vec<OnceLock<prometheus::Histogram>>,
    in_flight_by: Vec<IntGauge>,
    storage: StorageMetrics,
    pulls: IntCounter,
    pushes: IntCounter,
    heads: IntCounter,
    gc_runs: IntCounterVec,
    gc_bytes_freed: IntCounter,
    gc_blobs_deleted: IntCounter,
    scan_layers_read: IntCounter,
    unsigned_pulls: IntCounterVec,
    proxy_stale: IntCounter,
    proxy_fetches: IntCounterVec,
    webhook_deliveries: IntCounterVec,
    webhook_queue_depth: IntGauge,
    scans: ScanGauges,
    scan_durations: HistogramVec,
    jobs_queued: IntGauge,
    stats_flush_lag: prometheus::Gauge,
    quotas: QuotaGauges,
    /// When pull statistics were last written to the index (Unix seconds; 0: not yet).
    last_flush: AtomicI64,
    /// When these metrics were created (the lag's origin before the first flush).
    started: Instant,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Fresh metrics, every series at zero.
    pub fn new() -> Metrics {
        let collected = Collected::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "requests_total",
                "Requests answered, by status code, endpoint and method.",
            )
            .namespace("registry")
            .subsystem("http"),
            &["code", "handler", "method"],
        )
        .expect("valid metric");
        let durations = HistogramVec::new(
            HistogramOpts::new(
                "request_duration_seconds",
                "Time to answer a request (to the response's head), by endpoint and method.",
            )
            .namespace("registry")
            .subsystem("http")
            .buckets(HTTP_BUCKETS.to_vec()),
            &["handler", "method"],
        )
        .expect("valid metric");
        let in_flight = IntGaugeVec::new(
            Opts::new(
                "in_flight_requests",
                "Requests being answered, by endpoint.",
            )
            .namespace("registry")
            .subsystem("http"),
            &["handler"],
        )
        .expect("valid metric");
        let storage = HistogramVec::new(
            HistogramOpts::new(
                "action_seconds",
                "Time of each blob store call, by storage driver and action.",
            )
            .namespace("registry")
            .subsystem("storage")
            .buckets(STORAGE_BUCKETS.to_vec()),
            &["driver", "action"],
        )
        .expect("valid metric");
        let counter = |name: &str, help: &str| {
            IntCounter::with_opts(Opts::new(name, help).namespace("berth")).expect("valid metric")
        };
        let pulls = counter(
            "pulls_total",
            "Pulls: manifest GETs answered with success (by tag or by digest).",
        );
        let pushes = counter("pushes_total", "Pushes: manifest PUTs answered with 201.");
        let heads = counter(
            "manifest_heads_total",
            "Manifest HEADs answered with success (version checks, not pulls).",
        );
        let gc_runs = IntCounterVec::new(
            Opts::new(
                "gc_runs_total",
                "Garbage collection runs finished, by outcome (succeeded, failed).",
            )
            .namespace("berth"),
            &["outcome"],
        )
        .expect("valid metric");
        let gc_bytes_freed = counter(
            "gc_bytes_freed_total",
            "Bytes of blobs and orphaned objects deleted by garbage collection.",
        );
        let gc_blobs_deleted = counter(
            "gc_blobs_deleted_total",
            "Blobs deleted by garbage collection.",
        );
        let scan_layers_read = counter(
            "scan_layers_read_total",
            "Layer blobs decompressed by the scanner (a layer is read once per indexer version).",
        );
        let unsigned_pulls = IntCounterVec::new(
            Opts::new(
                "unsigned_pulls_total",
                "Manifest GETs of an image without a verified signature under a trust policy, \
                 by the policy's mode (audit: served, enforce: refused).",
            )
            .namespace("berth"),
            &["mode"],
        )
        .expect("valid metric");
        let proxy_stale = counter(
            "proxy_stale_served_total",
            "Cached tags of the pull-through cache served although their upstream failed \
             (stale-if-error).",
        );
        let proxy_fetches = IntCounterVec::new(
            Opts::new(
                "proxy_upstream_fetches_total",
                "Downloads from upstreams by the pull-through cache, by kind (manifest, blob).",
            )
            .namespace("berth"),
            &["kind"],
        )
        .expect("valid metric");
        let webhook_deliveries = IntCounterVec::new(
            Opts::new(
                "webhook_deliveries_total",
                "Webhook delivery attempts by outcome (delivered, retry: failed and due again, \
                 dead: failed for the last time).",
            )
            .namespace("berth"),
            &["outcome"],
        )
        .expect("valid metric");
        let webhook_queue_depth = IntGauge::with_opts(
            Opts::new(
                "webhook_queue_depth",
                "Webhook deliveries waiting to be sent (pending), read at scrape time.",
            )
            .namespace("berth"),
        )
        .expect("valid metric");
        let scan_durations = HistogramVec::new(
            HistogramOpts::new(
                "scan_duration_seconds",
                "Time to scan an image (read its new layers, store its inventory and findings), \
                 by outcome (ok, error).",
            )
            .namespace("berth")
            .buckets(vec![
                0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 1800.0,
            ]),
            &["outcome"],
        )
        .expect("valid metric");
        let scans = ScanGauges {
            vulnerable_images: IntGaugeVec::new(
                Opts::new(
                    "vulnerable_images",
                    "Images whose stored findings include one of this severity (critical, \
                     high), read at scrape time.",
                )
                .namespace("berth"),
                &["severity"],
            )
            .expect("valid metric"),
            findings: IntGaugeVec::new(
                Opts::new(
                    "vulnerability_findings",
                    "Stored findings by severity of the repositories with the most critical \
                     and high ones (at most 20 repositories), read at scrape time.",
                )
                .namespace("berth"),
                &["repository", "severity"],
            )
            .expect("valid metric"),
            queued: IntGauge::with_opts(
                Opts::new("scans_queued", "Image scans waiting in the job queue.")
                    .namespace("berth"),
            )
            .expect("valid metric"),
            advisories_age: IntGaugeVec::new(
                Opts::new(
                    "advisories_age_seconds",
                    "Seconds since advisories were last imported (absent before the first import).",
                )
                .namespace("berth"),
                &[],
            )
            .expect("valid metric"),
        };
        let jobs_queued = IntGauge::with_opts(
            Opts::new(
                "jobs_queued",
                "Jobs waiting in the queue (reviews, collections), read at scrape time.",
            )
            .namespace("berth"),
        )
        .expect("valid metric");
        let stats_flush_lag = prometheus::Gauge::with_opts(
            Opts::new(
                "stats_flush_lag_seconds",
                "Seconds since pull statistics were last written to the index by this replica.",
            )
            .namespace("berth"),
        )
        .expect("valid metric");
        let quota_gauge = |name: &str, help: &str| {
            IntGaugeVec::new(Opts::new(name, help).namespace("berth"), &["namespace"])
                .expect("valid metric")
        };
        let quotas = QuotaGauges {
            used_bytes: quota_gauge(
                "quota_used_bytes",
                "Deduplicated bytes a namespace with a quota holds, read at scrape time.",
            ),
            limit_bytes: quota_gauge(
                "quota_limit_bytes",
                "The storage limit of a namespace's quota (namespaces with one).",
            ),
            warning: quota_gauge(
                "quota_warning",
                "1 when a namespace's usage has reached its quota's warning threshold.",
            ),
        };
        for metric in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(durations.clone()),
            Box::new(in_flight.clone()),
            Box::new(storage.clone()),
            Box::new(pulls.clone()),
            Box::new(pushes.clone()),
            Box::new(heads.clone()),
            Box::new(gc_runs.clone()),
            Box::new(gc_bytes_freed.clone()),
            Box::new(gc_blobs_deleted.clone()),
            Box::new(scan_layers_read.clone()),
            Box::new(unsigned_pulls.clone()),
            Box::new(proxy_stale.clone()),
            Box::new(proxy_fetches.clone()),
            Box::new(webhook_deliveries.clone()),
            Box::new(webhook_queue_depth.clone()),
            Box::new(scan_durations.clone()),
            Box::new(scans.vulnerable_images.clone()),
            Box::new(scans.findings.clone()),
            Box::new(scans.queued.clone()),
            Box::new(scans.advisories_age.clone()),
            Box::new(jobs_queued.clone()),
            Box::new(stats_flush_lag.clone()),
            Box::new(quotas.used_bytes.clone()),
            Box::new(quotas.limit_bytes.clone()),
            Box::new(quotas.warning.clone()),
        ] {
            collected.register(metric).expect("unique metric names");
        }
        // Series that dashboards and alerts expect exist from the start, at zero.
        for outcome in ["succeeded", "failed"] {
            gc_runs.with_label_values(&[outcome]);
        }
        for kind in ["manifest", "blob"] {
            proxy_fetches.with_label_values(&[kind]);
        }
        for outcome in ["delivered", "retry", "dead"] {
            webhook_deliveries.with_label_values(&[outcome]);
        }
        for severity in ["critical", "high"] {
            scans.vulnerable_images.with_label_values(&[severity]);
        }
        let in_flight_by = Handler::ALL
            .iter()
            .map(|handler| in_flight.with_label_values(&[handler.as_str()]))
            .collect();
        Metrics(Arc::new(Inner {
            collected,
            requests,
            durations,
            durations_by: (0..Handler::ALL.len() * METHODS.len())
                .map(|_| OnceLock::new())
                .collect(),
            in_flight_by,
            storage: StorageMetrics(storage),
            pulls,
            pushes,
            heads,
            gc_runs,
            gc_bytes_freed,
            gc_blobs_deleted,
            scan_layers_read,
            unsigned_pulls,
            proxy_stale,
            proxy_fetches,
            webhook_deliveries,
            webhook_queue_depth,
            scans,
            scan_durations,
            jobs_queued,
            stats_flush_lag,
            quotas,
            last_flush: AtomicI64::new(0),
            started: Instant::now(),
        }))
    }

    /// The storage timer the blob store records its calls with.
    pub fn storage(&self) -> StorageMetrics {
        self.0.storage.clone()
    }

    /// Counts a request to `handler` as started; the returned guard counts it as finished
    /// when dropped (also when the client goes away mid-request).
    pub fn start(&self, handler: Handler) -> InFlight {
        let gauge = self.0.in_flight_by[handler as usize].clone();
        gauge.inc();
        InFlight(gauge)
    }

    /// Records an answered request: its count, its duration, and a pull, a push or a
    /// version check when it was one.
    pub fn answered(&self, handler: Handler, method: &Method, status: StatusCode, secs: f64) {
        let method_index = method_index(method);
        let method = METHODS[method_index];
        let inner = &self.0;
        inner
            .requests
            .with_label_values(&[status.as_str(), handler.as_str(), method])
            .inc();
        inner.durations_by[handler as usize * METHODS.len() + method_index]
            .get_or_init(|| {
                inner
                    .durations
                    .with_label_values(&[handler.as_str(), method])
            })
            .observe(secs);
        if handler == Handler::Manifest && status.is_success() {
            match method {
                "GET" => inner.pulls.inc(),
                "HEAD" => inner.heads.inc(),
                "PUT" => inner.pushes.inc(),
                _ => {}
            }
        }
    }

    /// Records a finished garbage collection run: its outcome and what it deleted.
    pub fn gc_finished(&self, failed: bool, dry_run: bool, blobs: i64, bytes: i64) {
        let outcome = if failed { "failed" } else { "succeeded" };
        self.0.gc_runs.with_label_values(&[outcome]).inc();
        if !dry_run {
            self.gc_freed(blobs, bytes);
        }
    }

    /// Records blobs and bytes deleted by collection (a run or a repository's review).
    pub fn gc_freed(&self, blobs: i64, bytes: i64) {
        self.0.gc_blobs_deleted.inc_by(blobs.max(0) as u64);
        self.0.gc_bytes_freed.inc_by(bytes.max(0) as u64);
    }

    /// Counts a layer blob read (decompressed) by the scanner.
    pub fn scan_layer_read(&self) {
        self.0.scan_layers_read.inc();
    }

    /// Counts a manifest GET of an image without a verified signature under a trust policy
    /// of mode `mode` (`audit` or `enforce`).
    pub fn unsigned_pull(&self, mode: &'static str) {
        self.0.unsigned_pulls.with_label_values(&[mode]).inc();
    }

    /// Counts a cached tag served because its upstream failed.
    pub fn proxy_stale_served(&self) {
        self.0.proxy_stale.inc();
    }

    /// Counts a download from an upstream of the pull-through cache (`manifest` or `blob`).
    pub fn proxy_fetched(&self, kind: &'static str) {
        self.0.proxy_fetches.with_label_values(&[kind]).inc();
    }

    /// Counts a webhook delivery attempt that ended `outcome` (`delivered`, `retry`, `dead`).
    pub fn webhook_delivery(&self, outcome: &'static str) {
        self.0
            .webhook_deliveries
            .with_label_values(&[outcome])
            .inc();
    }

    /// Sets the number of webhook deliveries waiting (read at scrape time).
    pub fn set_webhook_queue_depth(&self, pending: i64) {
        self.0.webhook_queue_depth.set(pending);
    }

    /// Records a finished scan: `ok` or not, and how long it took.
    pub fn scan_finished(&self, ok: bool, secs: f64) {
        let outcome = if ok { "ok" } else { "error" };
        self.0
            .scan_durations
            .with_label_values(&[outcome])
            .observe(secs);
    }

    /// Replaces the scanning gauges with `figures`.
    pub fn set_scan_figures(&self, figures: &ScanFigures) {
        let gauges = &self.0.scans;
        gauges
            .vulnerable_images
            .with_label_values(&["critical"])
            .set(figures.critical_images);
        gauges
            .vulnerable_images
            .with_label_values(&["high"])
            .set(figures.high_images);
        gauges.findings.reset();
        for (repository, counts) in &figures.by_repository {
            for (severity, count) in SEVERITIES.iter().zip(counts) {
                gauges
                    .findings
                    .with_label_values(&[repository.as_str(), severity])
                    .set(*count);
            }
        }
        gauges.queued.set(figures.scans_queued);
        gauges.advisories_age.reset();
        if let Some(age) = figures.advisories_age_secs {
            gauges
                .advisories_age
                .with_label_values::<&str>(&[])
                .set(age);
        }
    }

    /// Records that pull statistics were written to the index at `now` (Unix seconds).
    pub fn stats_flushed(&self, now: i64) {
        self.0.last_flush.store(now, Ordering::Relaxed);
    }

    /// Replaces the quota gauges with `quotas`: namespaces whose quota was removed disappear.
    pub fn set_quotas(&self, quotas: &[QuotaGauge]) {
        let gauges = &self.0.quotas;
        gauges.used_bytes.reset();
        gauges.limit_bytes.reset();
        gauges.warning.reset();
        for quota in quotas {
            let label = [quota.namespace.as_str()];
            gauges
                .used_bytes
                .with_label_values(&label)
                .set(quota.used_bytes);
            if let Some(limit) = quota.limit_bytes {
                gauges.limit_bytes.with_label_values(&label).set(limit);
            }
            gauges
                .warning
                .with_label_values(&label)
                .set(i64::from(quota.warning));
        }
    }

    /// The metrics in the Prometheus text format, after setting the gauges read at scrape
    /// time: the job queue's depth (`None` when it could not be read) and the flush lag at
    /// `now` (Unix seconds).
    pub fn render(&self, jobs_queued: Option<i64>, now: i64) -> String {
        let inner = &self.0;
        if let Some(queued) = jobs_queued {
            inner.jobs_queued.set(queued);
        }
        let last = inner.last_flush.load(Ordering::Relaxed);
        let lag = if last == 0 {
            inner.started.elapsed().as_secs_f64()
        } else {
            (now - last).max(0) as f64
        };
        inner.stats_flush_lag.set(lag);
        let mut text = Vec::new();
        TextEncoder::new()
            .encode(&inner.collected.gather(), &mut text)
            .expect("the text encoder writes to memory");
        String::from_utf8(text).expect("the text format is UTF-8")
    }
}

/// The severities of `berth_vulnerability_findings`, in the order of
/// [`ScanFigures::by_repository`]'s counts.
pub const SEVERITIES: [&str; 5] = ["critical", "high", "medium", "low", "unknown"];

/// The scanning figures read at scrape time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanFigures {
    /// Images with a critical finding.
    pub critical_images: i64,
    /// Images with a high finding.
    pub high_images: i64,
    /// The repositories with the most critical, then high, findings, and their findings by
    /// severity (in [`SEVERITIES`] order).
    pub by_repository: Vec<(String, [i64; 5])>,
    /// Scans waiting in the job queue.
    pub scans_queued: i64,
    /// Seconds since the last advisory import; `None` before the first.
    pub advisories_age_secs: Option<i64>,
}

/// `berth_vulnerable_images`, `berth_vulnerability_findings`, `berth_scans_queued` and
/// `berth_advisories_age_seconds`.
struct ScanGauges {
    vulnerable_images: IntGaugeVec,
    findings: IntGaugeVec,
    queued: IntGauge,
    advisories_age: IntGaugeVec,
}

/// One namespace's quota figures, for the `berth_quota_*` gauges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaGauge {
    /// The namespace.
    pub namespace: String,
    /// Deduplicated bytes it holds.
    pub used_bytes: i64,
    /// Its storage limit, if it has one.
    pub limit_bytes: Option<i64>,
    /// Its usage has reached the warning threshold.
    pub warning: bool,
}

/// `berth_quota_used_bytes`, `berth_quota_limit_bytes` and `berth_quota_warning`, by namespace.
struct QuotaGauges {
    used_bytes: IntGaugeVec,
    limit_bytes: IntGaugeVec,
    warning: IntGaugeVec,
}

/// A request being answered; decrements the in-flight gauge when dropped.
pub struct InFlight(IntGauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The blob store's timer: `registry_storage_action_seconds{driver, action}`.
#[derive(Clone)]
pub struct StorageMetrics(HistogramVec);

impl StorageMetrics {
    /// A timer for one call of `action` (Distribution's words: `Reader`, `Writer`, `Stat`,
    /// `Move`, `Delete`, `RedirectURL`) on `driver`; it records when dropped.
    pub fn time(&self, driver: &'static str, action: &'static str) -> StorageTimer {
        StorageTimer {
            histogram: self.0.with_label_values(&[driver, action]),
            start: Instant::now(),
        }
    }
}

/// One blob store call being timed.
pub struct StorageTimer {
    histogram: prometheus::Histogram,
    start: Instant,
}

impl Drop for StorageTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

/// The method labels: the spec's methods as they are, anything else as `OTHER` (methods are
/// client-chosen, and a label must not grow without bound).
const METHODS: [&str; 8] = [
    "GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS", "OTHER",
];

/// The index of `method`'s label in [`METHODS`].
fn method_index(method: &Method) -> usize {
    match *method {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::PUT => 2,
        Method::POST => 3,
        Method::PATCH => 4,
        Method::DELETE => 5,
        Method::OPTIONS => 6,
        _ => 7,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handlers_are_judged_from_the_path_shape() {
        let cases = [
            ("/v2/", Handler::Base),
            ("/v2", Handler::Base),
            ("/v2/_catalog", Handler::Catalog),
            ("/v2/a/b/tags/list", Handler::Tags),
            ("/v2/a/blobs/sha256:00", Handler::Blob),
            ("/v2/a/blobs/uploads/", Handler::BlobUpload),
            ("/v2/a/blobs/uploads", Handler::BlobUpload),
            ("/v2/a/blobs/uploads/abc", Handler::BlobUpload),
            ("/v2/blobs/manifests/latest", Handler::Manifest),
            ("/v2/a/referrers/sha256:00", Handler::Referrers),
            ("/v2/nothing", Handler::Other),
            ("/api/v1/repositories", Handler::Api),
            ("/token", Handler::Token),
            ("/metrics", Handler::Metrics),
            ("/favicon.ico", Handler::Other),
        ];
        for (path, handler) in cases {
            assert_eq!(Handler::of_path(path), handler, "{path}");
        }
    }

    #[test]
    fn every_handler_has_its_slot() {
        for (i, handler) in Handler::ALL.iter().enumerate() {
            assert_eq!(*handler as usize, i, "{handler:?}");
        }
    }

    #[test]
    fn manifest_gets_count_as_pulls_and_heads_apart() {
        let metrics = Metrics::new();
        let ok = StatusCode::OK;
        metrics.answered(Handler::Manifest, &Method::GET, ok, 0.01);
        metrics.answered(Handler::Manifest, &Method::HEAD, ok, 0.01);
        metrics.answered(Handler::Manifest, &Method::GET, StatusCode::NOT_FOUND, 0.01);
        metrics.answered(Handler::Manifest, &Method::PUT, StatusCode::CREATED, 0.01);
        let text = metrics.render(Some(3), 0);
        assert!(text.contains("berth_pulls_total 1\n"), "{text}");
        assert!(text.contains("berth_pushes_total 1\n"), "{text}");
        assert!(text.contains("berth_manifest_heads_total 1\n"), "{text}");
        assert!(text.contains("berth_jobs_queued 3\n"), "{text}");
    }
}
