//! Configuration: defaults, then a TOML file, then `BERTH_*` environment variables, then
//! command-line flags. Everything is validated once at start; a bad value names its key.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};
use serde::Deserialize;

/// The whole configuration. See `config/berth.example.toml` for every key with its default.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Where the embedded defaults keep their files (SQLite index, blob tree).
    pub data_dir: PathBuf,
    /// Metadata index; default `sqlite://<data_dir>/berth.db`.
    pub database_url: Option<String>,
    /// Blob store; default `file://<data_dir>/blobs`.
    pub storage_url: Option<String>,
    pub storage: StorageSettings,
    pub limits: Limits,
    pub durability: Durability,
    pub auth: AuthConfig,
    /// PEM certificate chain to serve HTTPS with (rustls); needs `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    pub gc: GcConfig,
    /// The wall clock every time-based rule reads; tests move it (not configurable).
    #[serde(skip)]
    pub clock: crate::clock::Clock,
}

/// Access control: users, tokens, roles and visibility (README, "Roles and visibility").
#[derive(Clone, Debug, Deserialize)]
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
    pub default_visibility: String,
    /// Failed logins per client address, and per user name, within `failure_window_secs`
    /// before further attempts get 429.
    pub max_failures: u32,
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
            default_visibility: "private".into(),
            max_failures: 10,
            failure_window_secs: 300,
            cache_secs: 5,
            admin_user: "admin".into(),
            admin_password: None,
        }
    }
}

/// How Berth uses a cloud blob store.
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
    pub options: std::collections::BTreeMap<String, String>,
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

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Durability {
    /// Flush blobs and index commits to disk before acknowledging a push, so that a 201
    /// survives power loss and not only a crash of the process. Off by default: it costs
    /// about two thirds of small-push throughput (README, "Durability").
    pub fsync: bool,
}

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
}

impl Default for Config {
    fn default() -> Self {
        Config {
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
            gc: GcConfig::default(),
            clock: crate::clock::Clock::default(),
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
        }
    }
}

/// Overrides from the environment or the command line, each named for error messages.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub listen: Option<(String, String)>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<(String, String)>,
    pub storage_url: Option<(String, String)>,
    pub auth_enabled: Option<(String, String)>,
    pub allow_open_network: bool,
    pub admin_password: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

/// Where the blobs live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageConfig {
    Fs {
        root: PathBuf,
    },
    /// `s3://bucket/prefix`; credentials, region and endpoint from the `AWS_*` environment.
    S3 {
        bucket: String,
        prefix: String,
    },
    /// `az://container/prefix`; account and key from the `AZURE_*` environment.
    Azure {
        container: String,
        prefix: String,
    },
    /// `gs://bucket/prefix`; credentials from the `GOOGLE_*` environment.
    Gcs {
        bucket: String,
        prefix: String,
    },
}

/// Which database holds the metadata index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatabaseConfig {
    Sqlite {
        path: PathBuf,
    },
    /// A PostgreSQL server shared by every replica.
    Postgres {
        url: String,
    },
}

impl Config {
    /// A default configuration keeping everything under `data_dir`.
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            data_dir: data_dir.into(),
            ..Config::default()
        }
    }

    /// Reads `file` (if any), applies `overrides`, and validates.
    pub fn load(file: Option<&Path>, overrides: Overrides) -> anyhow::Result<Config> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config file {}", path.display()))?;
                toml::from_str(&text)
                    .with_context(|| format!("invalid config file {}", path.display()))?
            }
            None => Config::default(),
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
            config
                .database(Some(&value))
                .with_context(|| format!("{key}: {value:?}"))?;
            config.database_url = Some(value);
        }
        if let Some((key, value)) = overrides.storage_url {
            config
                .storage(Some(&value))
                .with_context(|| format!("{key}: {value:?}"))?;
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
        if overrides.admin_password.is_some() {
            config.auth.admin_password = overrides.admin_password;
        }
        if overrides.tls_cert.is_some() {
            config.tls_cert = overrides.tls_cert;
        }
        if overrides.tls_key.is_some() {
            config.tls_key = overrides.tls_key;
        }
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        self.database(self.database_url.as_deref())
            .context("database_url")?;
        self.storage(self.storage_url.as_deref())
            .context("storage_url")?;
        let on_files = matches!(self.storage_config()?, StorageConfig::Fs { .. });
        if on_files && self.storage.redirect {
            bail!("storage.redirect: needs a cloud storage_url (s3://, az:// or gs://)");
        }
        if on_files && !self.storage.options.is_empty() {
            bail!("storage.options: only apply to a cloud storage_url (s3://, az:// or gs://)");
        }
        crate::blobs::check_options(&self.storage_config()?, &self.storage.options)?;
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
        if !self.auth.enabled && !self.listen.ip().is_loopback() && !self.auth.allow_open_network {
            bail!(
                "listen: {} is not a loopback address and auth is disabled; set auth.enabled = true \
                 (BERTH_AUTH_ENABLED=true), or auth.allow_open_network = true \
                 (--allow-open-network) to serve anyone on the network without credentials",
                self.listen
            );
        }
        if !["public", "internal", "private"].contains(&self.auth.default_visibility.as_str()) {
            bail!("auth.default_visibility: expected public, internal or private");
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
        Ok(())
    }

    pub fn database_config(&self) -> anyhow::Result<DatabaseConfig> {
        self.database(self.database_url.as_deref())
    }

    pub fn storage_config(&self) -> anyhow::Result<StorageConfig> {
        self.storage(self.storage_url.as_deref())
    }

    fn database(&self, url: Option<&str>) -> anyhow::Result<DatabaseConfig> {
        let Some(url) = url else {
            return Ok(DatabaseConfig::Sqlite {
                path: self.data_dir.join("berth.db"),
            });
        };
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

    fn storage(&self, url: Option<&str>) -> anyhow::Result<StorageConfig> {
        let Some(url) = url else {
            return Ok(StorageConfig::Fs {
                root: self.data_dir.join("blobs"),
            });
        };
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
                    "s3" => StorageConfig::S3 { bucket, prefix },
                    "az" => StorageConfig::Azure {
                        container: bucket,
                        prefix,
                    },
                    _ => StorageConfig::Gcs { bucket, prefix },
                })
            }
            other => bail!(
                "unsupported storage scheme {other:?}: expected file:///PATH, s3://BUCKET/PREFIX, \
                 az://CONTAINER/PREFIX or gs://BUCKET/PREFIX"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses_and_matches_defaults() {
        let text = include_str!("../config/berth.example.toml");
        let parsed: Config = toml::from_str(text).unwrap();
        let default = Config::default();
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
        parsed.validate().unwrap();
    }

    #[test]
    fn ha_example_config_selects_shared_backends() {
        let text = include_str!("../config/berth.ha.example.toml");
        let parsed: Config = toml::from_str(text).unwrap();
        parsed.validate().unwrap();
        assert!(matches!(
            parsed.database_config().unwrap(),
            DatabaseConfig::Postgres { .. }
        ));
        assert_eq!(
            parsed.storage_config().unwrap(),
            StorageConfig::S3 {
                bucket: "registry-blobs".into(),
                prefix: "berth".into()
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
        let e = format!("{:#}", toml::from_str::<Config>("listn = 1").unwrap_err());
        assert!(e.contains("listn"), "{e}");
    }

    /// Store settings that cannot work are refused at start, naming the key.
    #[test]
    fn storage_settings_are_checked() {
        let refused = |text: &str| {
            format!(
                "{:#}",
                toml::from_str::<Config>(text)
                    .unwrap()
                    .validate()
                    .unwrap_err()
            )
        };
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
        let ok: Config = toml::from_str(
            "storage_url = \"az://c\"\n[storage]\nredirect = true\n\
             [storage.options]\nazure_storage_account_name = \"acct\"",
        )
        .unwrap();
        ok.validate().unwrap();
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
            c.storage_config().unwrap(),
            StorageConfig::Fs {
                root: "/d/blobs".into()
            }
        );
        assert_eq!(
            c.database(Some("sqlite:///x/y.db?mode=rwc")).unwrap(),
            DatabaseConfig::Sqlite {
                path: "/x/y.db".into()
            }
        );
        assert_eq!(
            c.database(Some("postgres://u:p@127.0.0.1:5432/berth"))
                .unwrap(),
            DatabaseConfig::Postgres {
                url: "postgres://u:p@127.0.0.1:5432/berth".into()
            }
        );
        assert_eq!(
            c.storage(Some("s3://bucket/a/b/")).unwrap(),
            StorageConfig::S3 {
                bucket: "bucket".into(),
                prefix: "a/b".into()
            }
        );
        assert_eq!(
            c.storage(Some("az://box")).unwrap(),
            StorageConfig::Azure {
                container: "box".into(),
                prefix: String::new()
            }
        );
        assert_eq!(
            c.storage(Some("gs://b/p")).unwrap(),
            StorageConfig::Gcs {
                bucket: "b".into(),
                prefix: "p".into()
            }
        );
        assert!(c.storage(Some("s3:///nobucket")).is_err());
        assert_eq!(
            c.storage(Some("file:///srv/blobs")).unwrap(),
            StorageConfig::Fs {
                root: "/srv/blobs".into()
            }
        );
    }
}
