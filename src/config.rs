//! Configuration: defaults, then a TOML file, then `BERTH_*` environment variables, then
//! command-line flags. The layers meet in a [`ConfigFile`] (the keys as written), which is
//! checked and resolved once into a [`Config`] of typed values; a bad value names its key.
//! Nothing here opens a store or a database: that is for `meta` and `blobs`, given a `Config`.

use std::{
    collections::BTreeMap,
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};
use object_store::{aws::AmazonS3ConfigKey, azure::AzureConfigKey, gcp::GoogleConfigKey};
use serde::{Deserialize, Deserializer};

use crate::{clock::Clock, oci::Visibility};

/// The configuration the registry runs with: every value checked and typed. Built by
/// [`Config::load`] (or [`ConfigFile::resolve`]); tests start from [`Config::with_data_dir`].
#[derive(Clone, Debug)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Where the embedded defaults keep their files (SQLite index, blob tree).
    pub data_dir: PathBuf,
    /// The metadata index (`database_url`; default `sqlite://<data_dir>/berth.db`).
    pub database: DatabaseConfig,
    /// The blob store and how Berth uses it.
    pub storage: Storage,
    /// Sizes, pools and timeouts.
    pub limits: Limits,
    /// What is flushed to disk before a push is acknowledged.
    pub durability: Durability,
    /// Access control.
    pub auth: AuthConfig,
    /// PEM certificate chain to serve HTTPS with (rustls); set together with `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// How clients reach the registry (`external_url`); without it, the host each request
    /// came to.
    pub external_url: Option<ExternalUrl>,
    /// Garbage collection and cleanup policies.
    pub gc: GcConfig,
    /// Who may scrape `/metrics`.
    pub metrics: MetricsConfig,
    /// Whether usage statistics are counted.
    pub stats: StatsConfig,
    /// Image scanning.
    pub scan: ScanConfig,
    /// Webhook delivery.
    pub webhooks: WebhooksConfig,
    /// How the `berth` command writes its log.
    pub log: LogConfig,
    /// Pull-through cache rules (`[[proxy]]`), checked: prefixes do not overlap.
    pub proxy: Vec<ProxyRule>,
    /// The wall clock every time-based rule reads; tests move it (not configurable).
    pub clock: Clock,
    /// This process's name in job leases (the `berth` command sets it from `HOSTNAME`; not
    /// a configuration key).
    pub node_name: String,
}

/// The configuration as written: the TOML file's keys with their defaults, after the
/// environment and flags are applied and before anything is resolved. `berth check-config`
/// prints it. See `config/berth.example.toml` for every key with its default.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConfigFile {
    /// `listen`.
    pub listen: SocketAddr,
    /// `data_dir`.
    pub data_dir: PathBuf,
    /// `database_url`: resolved into [`Config::database`].
    pub database_url: Option<String>,
    /// `storage_url`: resolved, with `storage.options`, into [`Storage::backend`].
    pub storage_url: Option<String>,
    /// `[storage]`.
    pub storage: StorageSettings,
    /// `[limits]`.
    pub limits: Limits,
    /// `[durability]`.
    pub durability: Durability,
    /// `[auth]`.
    pub auth: AuthConfig,
    /// `tls_cert`.
    pub tls_cert: Option<PathBuf>,
    /// `tls_key`.
    pub tls_key: Option<PathBuf>,
    /// `external_url`: resolved into [`Config::external_url`].
    pub external_url: Option<String>,
    /// `[gc]`.
    pub gc: GcConfig,
    /// `[metrics]`.
    pub metrics: MetricsConfig,
    /// `[stats]`.
    pub stats: StatsConfig,
    /// `[scan]`.
    pub scan: ScanConfig,
    /// `[webhooks]`.
    pub webhooks: WebhooksConfig,
    /// `[log]`.
    pub log: LogConfig,
    /// `[[proxy]]`: resolved into [`Config::proxy`].
    pub proxy: Vec<ProxyRuleFile>,
}

/// `[metrics]`: access to `GET /metrics` (README, "Metrics and logs"), and how often the
/// usage counted in memory is written to the index.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// A bearer token that may scrape `/metrics` when auth is on, besides administrators and
    /// loopback peers (`Authorization: Bearer <token>`).
    pub token: Option<String>,
    /// How often pull statistics counted in memory are written to the index, in
    /// milliseconds: a crash loses at most this much of them.
    pub stats_flush_millis: u64,
    /// How long a namespace's usage counted for the quota gauges serves scrapes before it is
    /// counted again, in seconds (a count reads every blob the namespace links).
    pub quota_count_secs: u64,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            token: None,
            stats_flush_millis: 5000,
            quota_count_secs: 60,
        }
    }
}

/// Never shows the scrape token itself.
impl fmt::Debug for MetricsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsConfig")
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("stats_flush_millis", &self.stats_flush_millis)
            .field("quota_count_secs", &self.quota_count_secs)
            .finish()
    }
}

/// `[stats]`: usage statistics (pulls, pushes, bytes served; per repository, tag, day and
/// identity).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatsConfig {
    /// Count usage (default true). Off, nothing is counted (who pulled what is not kept) and
    /// the figures in `/api/v1/stats` stop growing; `/metrics` still counts requests.
    pub enabled: bool,
    /// The most pulled over a window are found by summing the window's daily rows when it
    /// holds at most this many (default 10,000); a larger window is searched by pulls ever,
    /// most first, which reads a few hundred rows where summing would read millions.
    pub popular_summed_rows: u32,
}

impl Default for StatsConfig {
    fn default() -> Self {
        StatsConfig {
            enabled: true,
            popular_summed_rows: 10_000,
        }
    }
}

/// `[scan]`: image scanning (the inventory of installed packages).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScanConfig {
    /// Queue a scan of every image manifest and index pushed (default false); scans on
    /// demand (`POST .../scan`) work either way.
    pub on_push: bool,
    /// A queued scan starts once no other scan has been queued for this many seconds
    /// (default 2; 0 starts it at once): during a burst of pushes the scans wait for its
    /// end instead of taking the disk and the index's writer from the pushes.
    pub quiet_secs: u64,
    /// ... but never later than this many seconds after it was queued (default 300), so
    /// pushes that never pause do not hold the scans back for ever.
    pub max_delay_secs: u64,
}

impl Default for ScanConfig {
    fn default() -> Self {
        ScanConfig {
            on_push: false,
            quiet_secs: 2,
            max_delay_secs: 300,
        }
    }
}

/// `[webhooks]`: where webhooks may be sent and how their deliveries are retried.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Hosts a subscription may send to (exact names or IP addresses); empty, any host
    /// that is not refused below.
    pub allow_hosts: Vec<String>,
    /// Whether a subscription may send to a loopback, unspecified or link-local address
    /// (default false: a webhook must not reach services beside the registry).
    pub allow_loopback: bool,
    /// Attempts before a delivery is `dead` (default 8).
    pub max_attempts: u32,
    /// Wait before the second attempt, in seconds, doubled for each later one (default 10).
    pub backoff_secs: u64,
    /// The longest wait between attempts, in seconds (default 3600).
    pub backoff_max_secs: u64,
    /// How long one attempt may take, connection and answer, in seconds (default 10).
    pub timeout_secs: u64,
    /// Bytes of a receiver's answer read at most (kept as the error of a failed attempt).
    pub response_max_bytes: usize,
    /// How often the worker looks for due deliveries, in milliseconds (default 1000).
    pub poll_millis: u64,
    /// Requests in flight at once per replica (default 16).
    pub concurrency: usize,
    /// How long delivered and dead deliveries are kept before a worker deletes them
    /// (`"90s"`, `"10m"`, `"2h"`, `"7d"`; default `"7d"`; `"off"` keeps them).
    pub retention: String,
    /// How often the pruning runs, in seconds (default 3600).
    pub prune_secs: u64,
}

impl WebhooksConfig {
    /// `retention` in seconds; `None` when off (checked when the configuration is read).
    pub fn retention_secs(&self) -> Option<i64> {
        if self.retention.trim() == "off" {
            return None;
        }
        parse_duration(&self.retention).ok()
    }
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            allow_hosts: Vec::new(),
            allow_loopback: false,
            max_attempts: 8,
            backoff_secs: 10,
            backoff_max_secs: 3600,
            timeout_secs: 10,
            response_max_bytes: 64 * 1024,
            poll_millis: 1000,
            concurrency: 16,
            retention: "7d".into(),
            prune_secs: 3600,
        }
    }
}

/// `[log]`: the log's layout.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` (one human line per event) or `json` (one JSON object per line, for
    /// collectors); `BERTH_LOG_FORMAT` overrides it.
    pub format: LogFormat,
}

/// The log's layout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<LogFormat> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => bail!("{s:?} is not a log format (text or json)"),
        }
    }
}

/// Access control: users, tokens, roles and visibility (README, "Roles and visibility").
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Require identities on `/v2/` and `/api/v1`. Off by default, for zero setup on loopback.
    pub enabled: bool,
    /// Serve without auth on a non-loopback address: refused unless this says so.
    pub allow_open_network: bool,
    /// The `service` of the token flow: the audience of every token.
    pub service: String,
    /// The token issuer (`iss`).
    pub issuer: String,
    /// Accept Basic credentials straight on `/v2/` (simple clients). With false, `/v2/` takes
    /// bearer tokens only and a Basic request gets the challenge, as Distribution's token mode.
    pub basic_on_v2: bool,
    /// The token endpoint URL announced in challenges; default `<scheme>://<host>/token` as
    /// the client reached the registry.
    pub realm: Option<String>,
    /// Lifetime of access tokens, in seconds.
    pub token_ttl_secs: u64,
    /// Lifetime of refresh tokens (`offline_token`), in seconds.
    pub refresh_ttl_secs: u64,
    /// File holding the Ed25519 signing key (base64 PKCS#8), created when absent. Without
    /// it the key lives in the metadata index, shared by every replica using it.
    pub signing_key_path: Option<PathBuf>,
    /// Visibility of repositories in namespaces without a setting of their own.
    #[serde(deserialize_with = "visibility")]
    pub default_visibility: Visibility,
    /// Failed logins per client address, and per user name, within `failure_window_secs`
    /// before further attempts get 429.
    pub max_failures: u32,
    /// The window `max_failures` counts in, in seconds.
    pub failure_window_secs: u64,
    /// How long a decision (identity, repository → grant) is reused, in seconds. Changes
    /// made on this replica apply at once; on other replicas within this delay.
    pub cache_secs: u64,
    /// Name of the administrator created at start when `admin_password` is set.
    pub admin_user: String,
    /// Password of that administrator (`BERTH_ADMIN_PASSWORD`); used only if the user is absent.
    #[serde(skip)]
    pub admin_password: Option<String>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            enabled: false,
            allow_open_network: false,
            service: "berth".into(),
            issuer: "berth".into(),
            basic_on_v2: true,
            realm: None,
            token_ttl_secs: 300,
            refresh_ttl_secs: 30 * 24 * 3600,
            signing_key_path: None,
            default_visibility: Visibility::Private,
            max_failures: 10,
            failure_window_secs: 300,
            cache_secs: 5,
            admin_user: "admin".into(),
            admin_password: None,
        }
    }
}

/// `auth.default_visibility`: one of the lowercase names, as the file has always taken them.
fn visibility<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Visibility, D::Error> {
    let name = String::deserialize(deserializer)?;
    Visibility::parse(&name)
        .filter(|v| v.as_str() == name)
        .ok_or_else(|| {
            serde::de::Error::custom(
                "auth.default_visibility: expected public, internal or private",
            )
        })
}

/// `[storage]` as written: how Berth uses a cloud blob store.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSettings {
    /// Answer blob GETs with a 307 redirect to a presigned URL of the store, so layer bytes
    /// flow from the store to clients without passing through the replicas. The URL is
    /// signed only after the repository's access to the blob is checked.
    pub redirect: bool,
    /// How long a presigned URL stays valid.
    pub redirect_expiry_secs: u64,
    /// object_store configuration keys (`aws_endpoint`, `aws_region`,
    /// `azure_storage_account_name`, `google_service_account`, ...), applied over what the
    /// environment sets.
    pub options: BTreeMap<String, String>,
}

impl Default for StorageSettings {
    fn default() -> Self {
        StorageSettings {
            redirect: false,
            redirect_expiry_secs: 600,
            options: Default::default(),
        }
    }
}

/// The blob store, resolved: where it is (with its checked options) and how it is used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Storage {
    /// The store `storage_url` names.
    pub backend: StorageConfig,
    /// Redirect blob GETs to presigned URLs of the store (a cloud `backend` only).
    pub redirect: bool,
    /// How long a presigned URL stays valid, in seconds (at least 1).
    pub redirect_expiry_secs: u64,
}

/// Garbage collection and cleanup policies (README, "Storage lifecycle").
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GcConfig {
    /// Review repositories after the events that can leave garbage (blob upload, manifest
    /// delete, tag delete, tag moved), and run queued jobs, on this replica.
    pub continuous: bool,
    /// Seconds after such an event before its repository is reviewed.
    pub review_delay_secs: u64,
    /// Content written (blobs, links, manifests, store objects) less than this long ago is
    /// never collected: a push in flight has this long to reference what it uploaded.
    pub grace_secs: u64,
    /// Collect manifests without tags (never the child of an index or a referrer of a subject
    /// the repository holds, never within the grace period).
    pub untagged: bool,
    /// Upload sessions idle for this long are abandoned and their staged bytes deleted.
    pub upload_timeout_secs: u64,
    /// Seconds between full collections (mark and sweep, orphans); 0: only on demand.
    pub schedule_secs: u64,
    /// How often the workers look for due jobs.
    pub poll_millis: u64,
    /// How long a job (or a claim of a blob by the collector, or a writer's fence) is held
    /// before another replica may assume its holder died.
    pub lease_secs: u64,
}

impl Default for GcConfig {
    fn default() -> Self {
        GcConfig {
            continuous: true,
            review_delay_secs: 3600,
            grace_secs: 3600,
            untagged: false,
            upload_timeout_secs: 24 * 3600,
            schedule_secs: 24 * 3600,
            poll_millis: 1000,
            lease_secs: 600,
        }
    }
}

/// What is made durable before a write is acknowledged (README, "Durability").
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Durability {
    /// Flush blobs and index commits to disk before acknowledging a push, so that a 201
    /// survives power loss and not only a crash of the process. Off by default: it costs
    /// about two thirds of small-push throughput (README, "Durability").
    pub fsync: bool,
}

/// The fewest blocking threads `limits.blocking_threads` may set: a few pieces of work hold a
/// thread for long (a collection's listing of the store, an advisory import's reader), and
/// the rest must still find one.
pub const MIN_BLOCKING_THREADS: usize = 4;

/// The size from which glibc maps an allocation on its own, and unmaps it when freed, instead
/// of serving it from an arena; the `berth` command fixes it at start.
pub const MMAP_THRESHOLD: usize = 128 * 1024;

/// The size of the buffers that blob bytes pass through: each read of a request's body (hyper)
/// and of a local blob file. Under [`MMAP_THRESHOLD`], so that a freed buffer is reused from an
/// arena: buffers above it were each mapped, faulted in a page at a time and unmapped, a fifth
/// of the server's CPU in a large push.
pub const IO_BUFFER: usize = 120 * 1024;

/// Sizes, connection pools and timeouts.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest manifest accepted (spec: registries should accept at least 4 MiB).
    pub manifest_max_bytes: usize,
    /// Page size when a listing is asked for without `n`, and the largest `n` honoured.
    pub page_max_entries: u32,
    /// Reader connections to the metadata index (SQLite).
    pub database_readers: u32,
    /// Connections to a PostgreSQL index, per replica (readers and writers alike).
    pub database_connections: u32,
    /// How long a request waits for an index connection before it fails with 503.
    pub database_acquire_timeout_secs: u64,
    /// How long a blob store request is retried (5xx, throttling, lost connections) before
    /// it fails with 503. object_store's default.
    pub storage_retry_timeout_secs: u64,
    /// Client connections served at once; one more is closed as soon as it is accepted
    /// (keep it under the process's open-file limit, `ulimit -n`).
    pub max_connections: usize,
    /// Seconds a client has to send a request's headers (and an idle keep-alive connection
    /// to start its next request) before the connection is closed.
    pub header_read_timeout_secs: u64,
    /// Seconds an upload's request body may send nothing before the upload fails (400) and
    /// the connection is closed, so that a stalled push does not hold its connection forever.
    pub body_idle_timeout_secs: u64,
    /// Bytes per second an upload's request body must average over each
    /// `body_idle_timeout_secs` window, so that one trickling a byte now and then (never
    /// silent long enough for the idle timeout) is ended too; 0: no minimum.
    pub min_body_rate_bytes_per_sec: u64,
    /// Threads for file I/O and other blocking work at most (tokio's blocking pool). Each is
    /// taken for one piece of work, never to wait for a client, so the pool does not grow
    /// with slow clients; work beyond the limit waits its turn.
    pub blocking_threads: usize,
}

impl Default for ConfigFile {
    fn default() -> Self {
        ConfigFile {
            listen: SocketAddr::from(([127, 0, 0, 1], 5000)),
            data_dir: PathBuf::from("berth-data"),
            database_url: None,
            storage_url: None,
            storage: StorageSettings::default(),
            limits: Limits::default(),
            durability: Durability::default(),
            auth: AuthConfig::default(),
            tls_cert: None,
            tls_key: None,
            external_url: None,
            gc: GcConfig::default(),
            metrics: MetricsConfig::default(),
            stats: StatsConfig::default(),
            scan: ScanConfig::default(),
            webhooks: WebhooksConfig::default(),
            log: LogConfig::default(),
            proxy: Vec::new(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            manifest_max_bytes: 4 * 1024 * 1024,
            page_max_entries: 10_000,
            database_readers: 4,
            database_connections: 16,
            database_acquire_timeout_secs: 30,
            storage_retry_timeout_secs: 180,
            max_connections: 768,
            header_read_timeout_secs: 20,
            body_idle_timeout_secs: 60,
            min_body_rate_bytes_per_sec: 1024,
            blocking_threads: 32,
        }
    }
}

/// Overrides from the environment or the command line; each value comes with the name of
/// the variable or flag it came from, for error messages.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `listen` (`--listen`, `BERTH_LISTEN`).
    pub listen: Option<(String, String)>,
    /// `data_dir` (`--data-dir`, `BERTH_DATA_DIR`).
    pub data_dir: Option<PathBuf>,
    /// `database_url` (`BERTH_DATABASE_URL`).
    pub database_url: Option<(String, String)>,
    /// `storage_url` (`BERTH_STORAGE_URL`).
    pub storage_url: Option<(String, String)>,
    /// `auth.enabled` (`BERTH_AUTH_ENABLED`): true/1/yes or false/0/no.
    pub auth_enabled: Option<(String, String)>,
    /// `--allow-open-network`: sets `auth.allow_open_network` when true.
    pub allow_open_network: bool,
    /// `BERTH_ADMIN_PASSWORD`.
    pub admin_password: Option<String>,
    /// `tls_cert` (`--tls-cert`, `BERTH_TLS_CERT`).
    pub tls_cert: Option<PathBuf>,
    /// `tls_key` (`--tls-key`, `BERTH_TLS_KEY`).
    pub tls_key: Option<PathBuf>,
    /// `log.format` (`BERTH_LOG_FORMAT`): text or json.
    pub log_format: Option<(String, String)>,
}

/// Where the blobs live, with the store's checked `storage.options`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageConfig {
    /// `file:///path` (or the default `<data_dir>/blobs`): a local directory.
    Fs {
        /// The directory holding the key tree.
        root: PathBuf,
    },
    /// `s3://bucket/prefix`; credentials, region and endpoint from the `AWS_*` environment,
    /// then `options`.
    S3 {
        /// The bucket.
        bucket: String,
        /// Key prefix inside it (may be empty).
        prefix: String,
        /// `storage.options`, as S3 keys.
        options: Vec<(AmazonS3ConfigKey, String)>,
    },
    /// `az://container/prefix`; account and key from the `AZURE_*` environment, then `options`.
    Azure {
        /// The container.
        container: String,
        /// Key prefix inside it (may be empty).
        prefix: String,
        /// `storage.options`, as Azure keys.
        options: Vec<(AzureConfigKey, String)>,
    },
    /// `gs://bucket/prefix`; credentials from the `GOOGLE_*` environment, then `options`.
    Gcs {
        /// The bucket.
        bucket: String,
        /// Key prefix inside it (may be empty).
        prefix: String,
        /// `storage.options`, as Google Cloud Storage keys.
        options: Vec<(GoogleConfigKey, String)>,
    },
}

/// Which database holds the metadata index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatabaseConfig {
    /// A SQLite file of this replica's own.
    Sqlite {
        /// The database file.
        path: PathBuf,
    },
    /// A PostgreSQL server shared by every replica.
    Postgres {
        /// The connection URL, as configured.
        url: String,
    },
}

impl Config {
    /// A default configuration keeping everything under `data_dir`.
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Config {
        ConfigFile {
            data_dir: data_dir.into(),
            ..ConfigFile::default()
        }
        .resolve()
        .expect("the default configuration is valid")
    }

    /// Reads `file` (if any), applies `overrides`, checks every value and resolves it.
    pub fn load(file: Option<&Path>, overrides: Overrides) -> anyhow::Result<Config> {
        ConfigFile::load(file, overrides)?.resolve()
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::with_data_dir(ConfigFile::default().data_dir)
    }
}

impl ConfigFile {
    /// Reads `file` (if any) and applies `overrides`. An override is checked as it is
    /// applied, so that a bad one is named by its variable or flag; the rest is checked by
    /// [`ConfigFile::resolve`].
    pub fn load(file: Option<&Path>, overrides: Overrides) -> anyhow::Result<ConfigFile> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config file {}", path.display()))?;
                toml::from_str(&text)
                    .with_context(|| format!("invalid config file {}", path.display()))?
            }
            None => ConfigFile::default(),
        };
        if let Some((key, value)) = overrides.listen {
            config.listen = value.parse().with_context(|| {
                format!("{key}: {value:?} is not an address like 127.0.0.1:5000")
            })?;
        }
        if let Some(dir) = overrides.data_dir {
            config.data_dir = dir;
        }
        if let Some((key, value)) = overrides.database_url {
            DatabaseConfig::from_url(&value).with_context(|| format!("{key}: {value:?}"))?;
            config.database_url = Some(value);
        }
        if let Some((key, value)) = overrides.storage_url {
            StorageConfig::from_url(&value).with_context(|| format!("{key}: {value:?}"))?;
            config.storage_url = Some(value);
        }
        if let Some((key, value)) = overrides.auth_enabled {
            config.auth.enabled = match value.as_str() {
                "true" | "1" | "yes" => true,
                "false" | "0" | "no" => false,
                _ => bail!("{key}: {value:?} is not true or false"),
            };
        }
        config.auth.allow_open_network |= overrides.allow_open_network;
        if let Some((key, value)) = overrides.log_format {
            config.log.format = value.parse().with_context(|| key.clone())?;
        }
        if overrides.admin_password.is_some() {
            config.auth.admin_password = overrides.admin_password;
        }
        if overrides.tls_cert.is_some() {
            config.tls_cert = overrides.tls_cert;
        }
        if overrides.tls_key.is_some() {
            config.tls_key = overrides.tls_key;
        }
        Ok(config)
    }

    /// Checks every value and resolves the URLs (with their `data_dir` defaults) and the
    /// store options into typed values; an error names the key at fault.
    pub fn resolve(self) -> anyhow::Result<Config> {
        let database = match &self.database_url {
            Some(url) => DatabaseConfig::from_url(url).context("database_url")?,
            None => DatabaseConfig::Sqlite {
                path: self.data_dir.join("berth.db"),
            },
        };
        let location = match &self.storage_url {
            Some(url) => StorageConfig::from_url(url).context("storage_url")?,
            None => StorageConfig::Fs {
                root: self.data_dir.join("blobs"),
            },
        };
        let on_files = matches!(location, StorageConfig::Fs { .. });
        if on_files && self.storage.redirect {
            bail!("storage.redirect: needs a cloud storage_url (s3://, az:// or gs://)");
        }
        if on_files && !self.storage.options.is_empty() {
            bail!("storage.options: only apply to a cloud storage_url (s3://, az:// or gs://)");
        }
        let backend = location.with_options(&self.storage.options)?;
        if self.storage.redirect_expiry_secs == 0 {
            bail!("storage.redirect_expiry_secs: must be at least 1");
        }
        if self.limits.manifest_max_bytes < 4 * 1024 * 1024 {
            bail!("limits.manifest_max_bytes: must be at least 4194304 (the spec's 4 MiB)");
        }
        if self.limits.page_max_entries == 0 {
            bail!("limits.page_max_entries: must be at least 1");
        }
        if self.limits.database_readers == 0 {
            bail!("limits.database_readers: must be at least 1");
        }
        if self.limits.database_connections < 2 {
            bail!("limits.database_connections: must be at least 2");
        }
        if self.limits.database_acquire_timeout_secs == 0 {
            bail!("limits.database_acquire_timeout_secs: must be at least 1");
        }
        if self.limits.storage_retry_timeout_secs == 0 {
            bail!("limits.storage_retry_timeout_secs: must be at least 1");
        }
        if self.limits.max_connections == 0 {
            bail!("limits.max_connections: must be at least 1");
        }
        if self.limits.header_read_timeout_secs == 0 {
            bail!("limits.header_read_timeout_secs: must be at least 1");
        }
        if self.limits.body_idle_timeout_secs == 0 {
            bail!("limits.body_idle_timeout_secs: must be at least 1");
        }
        if self.limits.blocking_threads < MIN_BLOCKING_THREADS {
            bail!("limits.blocking_threads: must be at least {MIN_BLOCKING_THREADS}");
        }
        if !self.auth.enabled && !self.listen.ip().is_loopback() && !self.auth.allow_open_network {
            bail!(
                "listen: {} is not a loopback address and auth is disabled; set auth.enabled = true \
                 (BERTH_AUTH_ENABLED=true), or auth.allow_open_network = true \
                 (--allow-open-network) to serve anyone on the network without credentials",
                self.listen
            );
        }
        if self.webhooks.retention.trim() != "off" {
            parse_duration(&self.webhooks.retention).context("webhooks.retention")?;
        }
        if self.webhooks.prune_secs == 0 {
            bail!("webhooks.prune_secs: must be at least 1");
        }
        if self.auth.token_ttl_secs == 0 || self.auth.refresh_ttl_secs == 0 {
            bail!("auth.token_ttl_secs and auth.refresh_ttl_secs: must be at least 1");
        }
        if self.auth.max_failures == 0 || self.auth.failure_window_secs == 0 {
            bail!("auth.max_failures and auth.failure_window_secs: must be at least 1");
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            bail!("tls_cert and tls_key: give both or neither");
        }
        let external_url = self
            .external_url
            .as_deref()
            .map(str::parse::<ExternalUrl>)
            .transpose()
            .context("external_url")?;
        let proxy = ProxyRule::resolve_all(&self.proxy)?;
        Ok(Config {
            listen: self.listen,
            data_dir: self.data_dir,
            database,
            storage: Storage {
                backend,
                redirect: self.storage.redirect,
                redirect_expiry_secs: self.storage.redirect_expiry_secs,
            },
            limits: self.limits,
            durability: self.durability,
            auth: self.auth,
            tls_cert: self.tls_cert,
            tls_key: self.tls_key,
            external_url,
            gc: self.gc,
            metrics: self.metrics,
            stats: self.stats,
            scan: self.scan,
            webhooks: self.webhooks,
            log: self.log,
            proxy,
            clock: Clock::default(),
            node_name: "berth".into(),
        })
    }
}

/// How clients reach the registry, checked and reduced to what docker names a registry by:
/// the scheme and the host with its port (a path, query or credentials would make wrong
/// commands).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalUrl {
    /// Reached over HTTPS.
    pub https: bool,
    /// The host and optional port, lowercase, as `docker login` takes it.
    pub host: String,
}

impl std::str::FromStr for ExternalUrl {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<ExternalUrl> {
        let url = url::Url::parse(text).with_context(|| format!("{text:?} is not a URL"))?;
        if !matches!(url.scheme(), "http" | "https") {
            bail!("{text:?}: the scheme must be http or https");
        }
        let Some(host) = url.host_str() else {
            bail!("{text:?}: names no host");
        };
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            bail!("{text:?}: only scheme, host and port (docker names a registry by its host)");
        }
        if !url.username().is_empty() || url.password().is_some() {
            bail!("{text:?}: must not hold credentials");
        }
        Ok(ExternalUrl {
            https: url.scheme() == "https",
            host: match url.port() {
                Some(port) => format!("{host}:{port}"),
                None => host.to_owned(),
            },
        })
    }
}

impl fmt::Display for ExternalUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}", self.host)
    }
}

/// `berth check-config` prints this, in the layout (and under the name) it has always
/// shown: the keys as written, and the clock the resolved configuration starts with.
impl fmt::Debug for ConfigFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("database_url", &self.database_url)
            .field("storage_url", &self.storage_url)
            .field("storage", &self.storage)
            .field("limits", &self.limits)
            .field("durability", &self.durability)
            .field("auth", &self.auth)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("external_url", &self.external_url)
            .field("gc", &self.gc)
            .field("metrics", &self.metrics)
            .field("stats", &self.stats)
            .field("scan", &self.scan)
            .field("webhooks", &self.webhooks)
            .field("log", &self.log)
            .field("proxy", &self.proxy)
            .field("clock", &Clock::default())
            .finish()
    }
}

/// Shows `default_visibility` by the name the file takes (`"private"`), as written.
impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("enabled", &self.enabled)
            .field("allow_open_network", &self.allow_open_network)
            .field("service", &self.service)
            .field("issuer", &self.issuer)
            .field("basic_on_v2", &self.basic_on_v2)
            .field("realm", &self.realm)
            .field("token_ttl_secs", &self.token_ttl_secs)
            .field("refresh_ttl_secs", &self.refresh_ttl_secs)
            .field("signing_key_path", &self.signing_key_path)
            .field("default_visibility", &self.default_visibility.as_str())
            .field("max_failures", &self.max_failures)
            .field("failure_window_secs", &self.failure_window_secs)
            .field("cache_secs", &self.cache_secs)
            .field("admin_user", &self.admin_user)
            .field("admin_password", &self.admin_password)
            .finish()
    }
}

impl DatabaseConfig {
    /// The index a `sqlite://PATH` or `postgres://…` URL names.
    pub fn from_url(url: &str) -> anyhow::Result<DatabaseConfig> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            let path = path.split('?').next().unwrap_or_default();
            if path.is_empty() {
                bail!("a sqlite URL needs a file path, like sqlite:///var/lib/berth/berth.db");
            }
            return Ok(DatabaseConfig::Sqlite { path: path.into() });
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            url::Url::parse(url).context("not a URL")?;
            return Ok(DatabaseConfig::Postgres { url: url.into() });
        }
        bail!("unsupported database URL: expected sqlite://PATH or postgres://USER@HOST/DB")
    }
}

impl StorageConfig {
    /// The store a `file://`, `s3://`, `az://` or `gs://` URL names, without options.
    pub fn from_url(url: &str) -> anyhow::Result<StorageConfig> {
        let parsed = url::Url::parse(url).context("not a URL")?;
        match parsed.scheme() {
            "file" => {
                let root = parsed.to_file_path().map_err(|()| {
                    anyhow::anyhow!(
                        "a file URL needs an absolute path, like file:///var/lib/berth/blobs"
                    )
                })?;
                Ok(StorageConfig::Fs { root })
            }
            scheme @ ("s3" | "gs" | "az") => {
                let bucket = parsed
                    .host_str()
                    .filter(|b| !b.is_empty())
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "a {scheme} URL needs a bucket, like {scheme}://bucket/prefix"
                        )
                    })?
                    .to_owned();
                let prefix = parsed.path().trim_matches('/').to_owned();
                Ok(match scheme {
                    "s3" => StorageConfig::S3 {
                        bucket,
                        prefix,
                        options: Vec::new(),
                    },
                    "az" => StorageConfig::Azure {
                        container: bucket,
                        prefix,
                        options: Vec::new(),
                    },
                    _ => StorageConfig::Gcs {
                        bucket,
                        prefix,
                        options: Vec::new(),
                    },
                })
            }
            other => bail!(
                "unsupported storage scheme {other:?}: expected file:///PATH, s3://BUCKET/PREFIX, \
                 az://CONTAINER/PREFIX or gs://BUCKET/PREFIX"
            ),
        }
    }

    /// This store with `storage.options` parsed as its own keys; an unknown key is refused.
    fn with_options(mut self, given: &BTreeMap<String, String>) -> anyhow::Result<StorageConfig> {
        fn parsed<K: std::str::FromStr<Err = object_store::Error>>(
            given: &BTreeMap<String, String>,
        ) -> anyhow::Result<Vec<(K, String)>> {
            given
                .iter()
                .map(|(key, value)| {
                    let key = key.parse().with_context(|| {
                        format!("storage.options: unknown key {key:?} for this store")
                    })?;
                    Ok((key, value.clone()))
                })
                .collect()
        }
        match &mut self {
            StorageConfig::Fs { .. } => {}
            StorageConfig::S3 { options, .. } => *options = parsed(given)?,
            StorageConfig::Azure { options, .. } => *options = parsed(given)?,
            StorageConfig::Gcs { options, .. } => *options = parsed(given)?,
        }
        Ok(self)
    }
}

/// `[[proxy]]` as written: a pull-through cache rule. Repositories under `prefix` are
/// copies of the upstream's repository of the same name without the prefix. Rules managed
/// through the API take the same keys as JSON, and are stored so.
#[derive(Clone, Debug, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProxyRuleFile {
    /// The repository prefix (`hub` serves `hub/library/alpine` from `library/alpine`);
    /// through the API, the path's (a body may leave it out).
    #[schema(required = false)]
    pub prefix: String,
    /// The upstream registries, tried in this order (the next one when one fails).
    pub upstreams: Vec<UpstreamFile>,
    /// Registry hosts this rule mirrors for containerd (`?ns=<host>` on `/v2/` requests).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// How long a cached tag is served before it is revalidated upstream (`"30s"`, `"10m"`,
    /// `"1h"`, `"1d"`).
    #[serde(default = "default_tag_ttl")]
    pub tag_ttl: String,
    /// How long an upstream 404 is remembered (same form as `tag_ttl`).
    #[serde(default = "default_not_found_ttl")]
    pub not_found_ttl: String,
    /// The time one upstream request may take to connect and between two reads of its
    /// answer, in seconds.
    #[serde(default = "default_upstream_timeout")]
    pub timeout_secs: u64,
    /// Cached repositories not pulled for this long are evicted (same form as `tag_ttl`).
    pub evict_after: Option<String>,
    /// Above this many bytes in the rule's cached repositories, the least recently pulled
    /// are evicted until under it.
    pub max_bytes: Option<u64>,
    /// Cached repositories never evicted (full names, under the prefix).
    #[serde(default)]
    pub pinned: Vec<String>,
    /// Globs over the upstream's repository names (`library/*`; `*` within a path segment,
    /// `**` across): only those matching one are mirrored. Every one when left out.
    #[serde(default)]
    pub include: Vec<String>,
    /// Globs of upstream repositories never mirrored, even when included.
    #[serde(default)]
    pub exclude: Vec<String>,
}

fn default_tag_ttl() -> String {
    "10m".into()
}

fn default_not_found_ttl() -> String {
    "30s".into()
}

fn default_upstream_timeout() -> u64 {
    30
}

/// One upstream of a `[[proxy]]` rule as written; secrets are named, never written here.
#[derive(Clone, Debug, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamFile {
    /// The registry's base URL (`https://registry-1.docker.io`).
    pub url: String,
    /// The user name, if the upstream wants one (or `username_env`).
    pub username: Option<String>,
    /// The environment variable holding the user name.
    pub username_env: Option<String>,
    /// The environment variable holding the password or token.
    pub password_env: Option<String>,
    /// A file holding the password or token (instead of `password_env`).
    #[schema(value_type = Option<String>)]
    pub password_file: Option<PathBuf>,
}

/// A checked `[[proxy]]` rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyRule {
    /// The repository prefix, without a trailing slash.
    pub prefix: String,
    /// The upstreams in priority order.
    pub upstreams: Vec<Upstream>,
    /// The registry hosts (`?ns=`) routed to this rule, lowercase.
    pub hosts: Vec<String>,
    /// Seconds a cached tag is served before a revalidation.
    pub tag_ttl_secs: i64,
    /// Seconds an upstream 404 is remembered.
    pub not_found_ttl_secs: i64,
    /// Connect and read timeout of each upstream request, in seconds.
    pub timeout_secs: u64,
    /// Seconds without a pull after which a cached repository is evicted.
    pub evict_after_secs: Option<i64>,
    /// The size cap of the rule's cached repositories, in bytes.
    pub max_bytes: Option<u64>,
    /// Cached repositories never evicted.
    pub pinned: Vec<String>,
    /// Which upstream repositories the rule mirrors.
    pub repositories: RepositoryGlobs,
}

/// Which upstream repositories a proxy rule mirrors: those matching one of `include` (every
/// one when it is empty) and none of `exclude`. A repository under the prefix that the rule
/// does not mirror is an ordinary local one.
#[derive(Clone, Debug)]
pub struct RepositoryGlobs {
    /// The globs as written.
    pub include: Vec<String>,
    /// The globs as written.
    pub exclude: Vec<String>,
    included: globset::GlobSet,
    excluded: globset::GlobSet,
}

impl PartialEq for RepositoryGlobs {
    fn eq(&self, other: &Self) -> bool {
        self.include == other.include && self.exclude == other.exclude
    }
}

impl Eq for RepositoryGlobs {}

impl RepositoryGlobs {
    fn new(include: &[String], exclude: &[String]) -> anyhow::Result<RepositoryGlobs> {
        let set = |field: &str, globs: &[String]| {
            let mut set = globset::GlobSetBuilder::new();
            for glob in globs {
                set.add(
                    globset::GlobBuilder::new(glob)
                        .literal_separator(true)
                        .build()
                        .with_context(|| format!("{field}: {glob:?} is not a glob"))?,
                );
            }
            set.build()
                .with_context(|| format!("{field}: the globs do not build"))
        };
        Ok(RepositoryGlobs {
            included: set("include", include)?,
            excluded: set("exclude", exclude)?,
            include: include.to_vec(),
            exclude: exclude.to_vec(),
        })
    }

    /// Whether upstream repository `name` is mirrored.
    pub fn takes(&self, name: &str) -> bool {
        (self.include.is_empty() || self.included.is_match(name)) && !self.excluded.is_match(name)
    }
}

/// A checked upstream registry with its credentials (read from the environment or a file
/// at start).
#[derive(Clone, PartialEq, Eq)]
pub struct Upstream {
    /// The base URL, without a trailing slash.
    pub url: String,
    /// Basic credentials (also what the token endpoint is asked with), if any.
    pub credentials: Option<(String, String)>,
    /// A static token sent as `Authorization: Bearer` on every request instead (no token
    /// flow), if any.
    pub bearer: Option<String>,
}

/// Never shows the password.
impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upstream")
            .field("url", &self.url)
            .field("user", &self.credentials.as_ref().map(|c| &c.0))
            .field("bearer", &self.bearer.is_some())
            .finish()
    }
}

impl ProxyRule {
    /// Checks every rule and that no prefix lies inside another one (a repository would
    /// have two upstreams), nor a host is claimed twice.
    fn resolve_all(rules: &[ProxyRuleFile]) -> anyhow::Result<Vec<ProxyRule>> {
        let resolved = rules
            .iter()
            .enumerate()
            .map(|(i, r)| ProxyRule::resolve(r).with_context(|| format!("proxy[{i}]")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        ProxyRule::check_together(&resolved.iter().collect::<Vec<_>>())?;
        Ok(resolved)
    }

    /// A rule written as JSON (the keys of `[[proxy]]`, as the API takes and stores them),
    /// checked like one of the configuration file, with its credentials read from the
    /// environment or files named.
    pub fn from_json(json: &str) -> anyhow::Result<(ProxyRule, ProxyRuleFile)> {
        let file: ProxyRuleFile = serde_json::from_str(json)?;
        Ok((ProxyRule::resolve(&file)?, file))
    }

    /// Checks that `rules` can be in force together: no prefix lies inside another one (a
    /// repository would have two upstreams), no host is claimed twice.
    pub fn check_together(resolved: &[&ProxyRule]) -> anyhow::Result<()> {
        for (i, a) in resolved.iter().enumerate() {
            for b in &resolved[i + 1..] {
                let nested = |outer: &str, inner: &str| {
                    inner == outer || inner.starts_with(&format!("{outer}/"))
                };
                if nested(&a.prefix, &b.prefix) || nested(&b.prefix, &a.prefix) {
                    bail!(
                        "proxy: prefixes {:?} and {:?} overlap; a repository must have one rule",
                        a.prefix,
                        b.prefix
                    );
                }
                if let Some(host) = a.hosts.iter().find(|h| b.hosts.contains(h)) {
                    bail!(
                        "proxy: host {host:?} is routed by both {:?} and {:?}",
                        a.prefix,
                        b.prefix
                    );
                }
            }
        }
        Ok(())
    }

    fn resolve(rule: &ProxyRuleFile) -> anyhow::Result<ProxyRule> {
        let prefix = rule.prefix.trim_end_matches('/');
        if prefix.parse::<crate::oci::RepoName>().is_err() {
            bail!("prefix: {:?} is not a repository name prefix", rule.prefix);
        }
        if rule.upstreams.is_empty() {
            bail!("upstreams: give at least one");
        }
        let upstreams = rule
            .upstreams
            .iter()
            .enumerate()
            .map(|(i, u)| Upstream::resolve(u).with_context(|| format!("upstreams[{i}]")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let tag_ttl_secs = parse_duration(&rule.tag_ttl).context("tag_ttl")?;
        let not_found_ttl_secs = parse_duration(&rule.not_found_ttl).context("not_found_ttl")?;
        if rule.timeout_secs == 0 {
            bail!("timeout_secs: must be at least 1");
        }
        let hosts = rule
            .hosts
            .iter()
            .map(|h| {
                let h = h.trim().to_ascii_lowercase();
                if h.is_empty()
                    || !h
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b".-:".contains(&b))
                {
                    bail!("hosts: {h:?} is not a host name");
                }
                Ok(h)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let evict_after_secs = rule
            .evict_after
            .as_deref()
            .map(parse_duration)
            .transpose()
            .context("evict_after")?;
        if rule.max_bytes == Some(0) {
            bail!("max_bytes: must be at least 1");
        }
        for name in &rule.pinned {
            let under = name
                .strip_prefix(prefix)
                .and_then(|rest| rest.strip_prefix('/'))
                .is_some_and(|rest| !rest.is_empty());
            if !under || name.parse::<crate::oci::RepoName>().is_err() {
                bail!("pinned: {name:?} is not a repository name under {prefix:?}");
            }
        }
        Ok(ProxyRule {
            prefix: prefix.to_owned(),
            upstreams,
            hosts,
            tag_ttl_secs,
            not_found_ttl_secs,
            timeout_secs: rule.timeout_secs,
            evict_after_secs,
            max_bytes: rule.max_bytes,
            pinned: rule.pinned.clone(),
            repositories: RepositoryGlobs::new(&rule.include, &rule.exclude)?,
        })
    }
}

impl Upstream {
    fn resolve(file: &UpstreamFile) -> anyhow::Result<Upstream> {
        let url = url::Url::parse(&file.url)
            .with_context(|| format!("url: {:?} is not a URL", file.url))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            bail!(
                "url: {:?} must be an http:// or https:// URL with a host",
                file.url
            );
        }
        if url.query().is_some() || !url.username().is_empty() || url.password().is_some() {
            bail!(
                "url: {:?} takes no query or credentials (use username_env and password_env)",
                file.url
            );
        }
        let env = |key: &str, name: &Option<String>| -> anyhow::Result<Option<String>> {
            name.as_ref()
                .map(|var| std::env::var(var).with_context(|| format!("{key}: ${var} is not set")))
                .transpose()
        };
        let username = match (&file.username, &file.username_env) {
            (Some(_), Some(_)) => bail!("username and username_env: give one"),
            (Some(user), None) => Some(user.clone()),
            (None, name) => env("username_env", name)?,
        };
        let password = match (&file.password_env, &file.password_file) {
            (Some(_), Some(_)) => bail!("password_env and password_file: give one"),
            (_, Some(path)) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("password_file: reading {}", path.display()))?
                    .trim_end_matches(['\r', '\n'])
                    .to_owned(),
            ),
            (env_name, None) => env("password_env", env_name)?,
        };
        let credentials = match (username, password) {
            (Some(user), Some(password)) => Some((user, password)),
            (None, None) => None,
            _ => bail!("a user name and a password: give both or neither"),
        };
        Ok(Upstream {
            url: file.url.trim_end_matches('/').to_owned(),
            credentials,
            bearer: None,
        })
    }
}

/// Seconds in `"90s"`, `"10m"`, `"2h"` or `"1d"` (a bare number is seconds); at least 1.
fn parse_duration(text: &str) -> anyhow::Result<i64> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => bail!("{text:?}: use a number with s, m, h or d, like \"10m\""),
    };
    let n: i64 = number.parse().ok().filter(|n| *n > 0).with_context(|| {
        format!("{text:?}: use a positive number with s, m, h or d, like \"10m\"")
    })?;
    n.checked_mul(scale)
        .with_context(|| format!("{text:?} is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The configuration a TOML text resolves to.
    fn resolved(text: &str) -> anyhow::Result<Config> {
        toml::from_str::<ConfigFile>(text)?.resolve()
    }

    #[test]
    fn proxy_durations_take_a_unit() {
        assert_eq!(parse_duration("90s").unwrap(), 90);
        assert_eq!(parse_duration("10m").unwrap(), 600);
        assert_eq!(parse_duration("2h").unwrap(), 7200);
        assert_eq!(parse_duration("1d").unwrap(), 86400);
        assert_eq!(parse_duration("45").unwrap(), 45);
        for bad in [
            "",
            "m",
            "0s",
            "-1m",
            "10 minutes",
            "1w",
            "99999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn example_config_parses_and_matches_defaults() {
        let text = include_str!("../config/berth.example.toml");
        let parsed: ConfigFile = toml::from_str(text).unwrap();
        let default = ConfigFile::default();
        assert_eq!(parsed.listen, default.listen);
        assert_eq!(parsed.data_dir, default.data_dir);
        assert_eq!(
            parsed.limits.manifest_max_bytes,
            default.limits.manifest_max_bytes
        );
        assert_eq!(
            parsed.limits.page_max_entries,
            default.limits.page_max_entries
        );
        assert_eq!(parsed.scan.quiet_secs, default.scan.quiet_secs);
        assert_eq!(parsed.scan.max_delay_secs, default.scan.max_delay_secs);
        parsed.resolve().unwrap();
    }

    #[test]
    fn scan_pacing_takes_whole_seconds_and_names_a_bad_one() {
        let parsed = resolved(
            "[scan]
quiet_secs = 0
max_delay_secs = 60",
        )
        .unwrap();
        assert_eq!(
            (parsed.scan.quiet_secs, parsed.scan.max_delay_secs),
            (0, 60)
        );
        for bad in [
            "quiet_secs = -1",
            "max_delay_secs = \"5m\"",
            "quiet_sec = 2",
        ] {
            let error = format!("{:#}", resolved(&format!("[scan]\n{bad}")).unwrap_err());
            let key = bad.split(' ').next().unwrap();
            assert!(error.contains(key), "{bad}: {error}");
        }
    }

    #[test]
    fn log_format_and_metrics_token() {
        let parsed = resolved("[log]\nformat = \"json\"\n[metrics]\ntoken = \"t0k\"").unwrap();
        assert_eq!(parsed.log.format, LogFormat::Json);
        assert_eq!(parsed.metrics.token.as_deref(), Some("t0k"));
        assert!(!format!("{:?}", parsed.metrics).contains("t0k"));
        let e = format!("{:#}", resolved("[log]\nformat = \"xml\"").unwrap_err());
        assert!(e.contains("format"), "{e}");
        let bad = Overrides {
            log_format: Some(("BERTH_LOG_FORMAT".into(), "yaml".into())),
            ..Overrides::default()
        };
        let e = format!("{:#}", Config::load(None, bad).unwrap_err());
        assert!(e.contains("BERTH_LOG_FORMAT") && e.contains("yaml"), "{e}");
    }

    #[test]
    fn ha_example_config_selects_shared_backends() {
        let text = include_str!("../config/berth.ha.example.toml");
        let parsed = resolved(text).unwrap();
        assert!(matches!(parsed.database, DatabaseConfig::Postgres { .. }));
        assert_eq!(
            parsed.storage.backend,
            StorageConfig::S3 {
                bucket: "registry-blobs".into(),
                prefix: "berth".into(),
                options: vec![(AmazonS3ConfigKey::Region, "eu-west-1".into())],
            }
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        let bad = |o: Overrides| format!("{:#}", Config::load(None, o).unwrap_err());
        let e = bad(Overrides {
            listen: Some(("BERTH_LISTEN".into(), "nowhere".into())),
            ..Default::default()
        });
        assert!(e.contains("BERTH_LISTEN"), "{e}");
        let e = bad(Overrides {
            storage_url: Some(("BERTH_STORAGE_URL".into(), "ftp://x".into())),
            ..Default::default()
        });
        assert!(e.contains("BERTH_STORAGE_URL") && e.contains("ftp"), "{e}");
        let e = bad(Overrides {
            database_url: Some(("BERTH_DATABASE_URL".into(), "mysql://x".into())),
            ..Default::default()
        });
        assert!(e.contains("BERTH_DATABASE_URL"), "{e}");
        let e = format!(
            "{:#}",
            toml::from_str::<ConfigFile>("listn = 1").unwrap_err()
        );
        assert!(e.contains("listn"), "{e}");
        let e = format!(
            "{:#}",
            resolved("[limits]\nblocking_threads = 2").unwrap_err()
        );
        assert_eq!(e, "limits.blocking_threads: must be at least 4");
    }

    /// A visibility that is not one of the three names is refused, naming the key.
    #[test]
    fn default_visibility_is_typed() {
        let parsed = resolved("[auth]\ndefault_visibility = \"internal\"").unwrap();
        assert_eq!(parsed.auth.default_visibility, Visibility::Internal);
        assert_eq!(
            Config::default().auth.default_visibility,
            Visibility::Private
        );
        for bad in ["secret", "Public"] {
            let text = format!("[auth]\ndefault_visibility = {bad:?}");
            let e = format!("{:#}", resolved(&text).unwrap_err());
            assert!(
                e.contains("auth.default_visibility: expected public, internal or private"),
                "{e}"
            );
        }
    }

    /// Store settings that cannot work are refused at start, naming the key.
    #[test]
    fn storage_settings_are_checked() {
        let refused = |text: &str| format!("{:#}", resolved(text).unwrap_err());
        let e = refused("[storage]\nredirect = true");
        assert!(e.contains("storage.redirect") && e.contains("cloud"), "{e}");
        let e = refused("[storage.options]\naws_region = \"x\"");
        assert!(e.contains("storage.options"), "{e}");
        let e = refused("storage_url = \"s3://b\"\n[storage.options]\naws_regio = \"x\"");
        assert!(
            e.contains("storage.options") && e.contains("aws_regio"),
            "{e}"
        );
        let e = refused("storage_url = \"s3://b\"\n[storage]\nredirect_expiry_secs = 0");
        assert!(e.contains("storage.redirect_expiry_secs"), "{e}");
        let ok = resolved(
            "storage_url = \"az://c\"\n[storage]\nredirect = true\n\
             [storage.options]\nazure_storage_account_name = \"acct\"",
        )
        .unwrap();
        assert!(ok.storage.redirect);
    }

    /// Zero setup stays safe: without auth Berth listens on loopback only, unless told.
    #[test]
    fn open_network_without_auth_is_refused_unless_allowed() {
        let listen = || Some(("BERTH_LISTEN".to_owned(), "0.0.0.0:5000".to_owned()));
        let e = format!(
            "{:#}",
            Config::load(
                None,
                Overrides {
                    listen: listen(),
                    ..Default::default()
                }
            )
            .unwrap_err()
        );
        assert!(
            e.contains("auth.enabled") && e.contains("allow-open-network"),
            "{e}"
        );
        for overrides in [
            Overrides {
                listen: listen(),
                auth_enabled: Some(("BERTH_AUTH_ENABLED".into(), "true".into())),
                ..Default::default()
            },
            Overrides {
                listen: listen(),
                allow_open_network: true,
                ..Default::default()
            },
        ] {
            Config::load(None, overrides).unwrap();
        }
        assert!(!Config::default().auth.enabled);
        let e = Config::load(
            None,
            Overrides {
                auth_enabled: Some(("BERTH_AUTH_ENABLED".into(), "maybe".into())),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("BERTH_AUTH_ENABLED"));
    }

    #[test]
    fn urls_select_backends() {
        let c = Config::with_data_dir("/d");
        assert_eq!(
            c.storage.backend,
            StorageConfig::Fs {
                root: "/d/blobs".into()
            }
        );
        assert_eq!(
            c.database,
            DatabaseConfig::Sqlite {
                path: "/d/berth.db".into()
            }
        );
        assert_eq!(
            DatabaseConfig::from_url("sqlite:///x/y.db?mode=rwc").unwrap(),
            DatabaseConfig::Sqlite {
                path: "/x/y.db".into()
            }
        );
        assert_eq!(
            DatabaseConfig::from_url("postgres://u:p@127.0.0.1:5432/berth").unwrap(),
            DatabaseConfig::Postgres {
                url: "postgres://u:p@127.0.0.1:5432/berth".into()
            }
        );
        assert_eq!(
            StorageConfig::from_url("s3://bucket/a/b/").unwrap(),
            StorageConfig::S3 {
                bucket: "bucket".into(),
                prefix: "a/b".into(),
                options: vec![],
            }
        );
        assert_eq!(
            StorageConfig::from_url("az://box").unwrap(),
            StorageConfig::Azure {
                container: "box".into(),
                prefix: String::new(),
                options: vec![],
            }
        );
        assert_eq!(
            StorageConfig::from_url("gs://b/p").unwrap(),
            StorageConfig::Gcs {
                bucket: "b".into(),
                prefix: "p".into(),
                options: vec![],
            }
        );
        assert!(StorageConfig::from_url("s3:///nobucket").is_err());
        assert_eq!(
            StorageConfig::from_url("file:///srv/blobs").unwrap(),
            StorageConfig::Fs {
                root: "/srv/blobs".into()
            }
        );
    }

    #[test]
    fn external_url_is_a_scheme_a_host_and_a_port() {
        let url = |text: &str| {
            resolved(&format!("external_url = {text:?}"))
                .map(|c| c.external_url.map(|u| u.to_string()))
        };
        assert_eq!(
            url("https://Registry.Example.com/").unwrap().as_deref(),
            Some("https://registry.example.com")
        );
        assert_eq!(
            url("http://10.0.0.5:5000").unwrap().as_deref(),
            Some("http://10.0.0.5:5000")
        );
        assert_eq!(resolved("").unwrap().external_url, None);
        for bad in [
            "registry.example.com",
            "ftp://registry.example.com",
            "https://registry.example.com/v2",
            "https://user:pw@registry.example.com",
            "https://registry.example.com/?x=1",
        ] {
            let e = format!("{:#}", url(bad).unwrap_err());
            assert!(e.contains("external_url"), "{bad}: {e}");
        }
    }
}
