//! The command line: arguments, how they and the `BERTH_*` environment become a
//! configuration, and which module runs each command: [`server`] (serve, migrate,
//! check-config), [`access`] (users, tokens, namespaces, visibility), [`gc`],
//! [`advisories`], offline on the configured database; and against a running server's
//! `/api/v1` ([`remote`]): [`repo`], [`image`], [`tag`], [`stats`], [`policy`], [`trust`],
//! [`replication`], [`webhook`], printing through [`output`].

mod access;
mod advisories;
mod gc;
mod image;
mod output;
mod policy;
mod proxy;
mod remote;
mod replication;
mod repo;
mod server;
mod stats;
mod tag;
mod trust;
mod webhook;

use std::path::PathBuf;

use anyhow::Context;
use berth::config::{Config, ConfigFile, LogFormat, Overrides};
use clap::{Parser, Subcommand};

use access::{NamespaceCommand, TokenCommand, UserCommand};

#[derive(Parser)]
#[command(
    name = "berth",
    version,
    about = "A container registry (OCI Distribution v1.1)"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the registry (defaults: 127.0.0.1:5000, data under ./berth-data).
    Serve(ServerArgs),
    /// Bring the metadata index to the current schema and exit.
    Migrate(IndexArgs),
    /// Validate the configuration and print it.
    CheckConfig(ServerArgs),
    /// Users (offline, on the configured database).
    User {
        #[command(flatten)]
        index: IndexArgs,
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Personal access and deploy tokens.
    Token {
        #[command(flatten)]
        index: IndexArgs,
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Namespaces: visibility and members.
    Namespace {
        #[command(flatten)]
        index: IndexArgs,
        #[command(subcommand)]
        command: NamespaceCommand,
    },
    /// Set a repository's visibility (public, internal, private).
    Visibility {
        #[command(flatten)]
        index: IndexArgs,
        /// The repository, e.g. team/app.
        repository: String,
        /// public, internal or private.
        visibility: String,
    },
    /// Collect garbage now (works beside running servers, on the same index and store).
    Gc(gc::GcArgs),
    /// Vulnerability advisories (offline, on the configured database): import OSV records.
    Advisories {
        #[command(flatten)]
        index: IndexArgs,
        #[command(subcommand)]
        command: advisories::AdvisoriesCommand,
    },
    /// Repositories of a running server: list, show, create, delete.
    Repo {
        #[command(flatten)]
        remote: remote::RemoteArgs,
        #[command(subcommand)]
        command: repo::RepoCommand,
    },
    /// Images of a repository on a running server: list, show.
    Image {
        #[command(flatten)]
        remote: remote::RemoteArgs,
        #[command(subcommand)]
        command: image::ImageCommand,
    },
    /// Tags of a repository on a running server: list, add, remove.
    Tag {
        #[command(flatten)]
        remote: remote::RemoteArgs,
        #[command(subcommand)]
        command: tag::TagCommand,
    },
    /// Usage statistics of a running server: totals, the most pulled, pulls per day.
    Stats(stats::StatsArgs),
    /// Cleanup policies of a running server: list, show, apply (or preview).
    Policy {
        #[command(flatten)]
        remote: remote::RemoteArgs,
        #[command(subcommand)]
        command: policy::PolicyCommand,
    },
    /// Trust policies of a running server: which keys a scope trusts, enforce/audit/off.
    Trust {
        #[command(flatten)]
        remote: remote::RemoteArgs,
        #[command(subcommand)]
        command: trust::TrustCommand,
    },
    /// Replication rules of a running server: copies to or from another registry, runs,
    /// executions.
    Replication {
        #[command(flatten)]
        remote: remote::RemoteArgs,
        // boxed: `put` has many flags, and the other commands should not carry its size
        #[command(subcommand)]
        command: Box<replication::ReplicationCommand>,
    },
    /// Pull-through cache rules of a running server: list, and those of the API put, removed.
    Proxy {
        #[command(flatten)]
        remote: remote::RemoteArgs,
        #[command(subcommand)]
        command: proxy::ProxyCommand,
    },
    /// Webhooks of a running server: subscriptions, their delivery log, redelivery.
    Webhook {
        #[command(flatten)]
        remote: remote::RemoteArgs,
        #[command(subcommand)]
        command: webhook::WebhookCommand,
    },
}

// The flags of the commands that open the configured index and store (the doc comments
// below are their help).
#[derive(clap::Args)]
struct IndexArgs {
    /// TOML configuration file.
    #[arg(long, value_name = "FILE", env = "BERTH_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Directory for the embedded defaults [env: BERTH_DATA_DIR].
    #[arg(long, value_name = "DIR", global = true)]
    data_dir: Option<PathBuf>,
}

// `serve` and `check-config` also take where and how to listen.
#[derive(clap::Args)]
struct ServerArgs {
    #[command(flatten)]
    index: IndexArgs,
    /// Address to listen on [env: BERTH_LISTEN].
    #[arg(long, value_name = "ADDR", global = true)]
    listen: Option<String>,
    /// Serve without auth on a non-loopback address (anyone there may push and delete).
    #[arg(long, global = true)]
    allow_open_network: bool,
    /// PEM certificate chain to serve HTTPS with [env: BERTH_TLS_CERT].
    #[arg(long, value_name = "FILE", global = true)]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert [env: BERTH_TLS_KEY].
    #[arg(long, value_name = "FILE", global = true)]
    tls_key: Option<PathBuf>,
}

impl IndexArgs {
    /// The configuration to work on: the file with the environment and these flags over it.
    fn load(&self) -> anyhow::Result<Config> {
        named(config_file(self, None)?)
    }
}

impl ServerArgs {
    /// The configuration file with the environment and these flags applied over it, not yet
    /// resolved.
    fn file(&self) -> anyhow::Result<ConfigFile> {
        config_file(&self.index, Some(self))
    }

    /// The configuration to serve with: [`ServerArgs::file`] resolved.
    fn load(&self) -> anyhow::Result<Config> {
        named(self.file()?)
    }
}

/// The configuration file with the environment and the flags applied over it, not yet
/// resolved. Flags win over the environment, which wins over the file; the commands that do
/// not serve take the listening settings from the environment and the file only.
fn config_file(index: &IndexArgs, server: Option<&ServerArgs>) -> anyhow::Result<ConfigFile> {
    let env = |key: &str| {
        std::env::var(key)
            .ok()
            .filter(|v| !v.is_empty())
            .map(|v| (key.to_owned(), v))
    };
    let overrides = Overrides {
        listen: server
            .and_then(|s| s.listen.clone())
            .map(|v| ("--listen".to_owned(), v))
            .or_else(|| env("BERTH_LISTEN")),
        data_dir: index
            .data_dir
            .clone()
            .or_else(|| env("BERTH_DATA_DIR").map(|(_, v)| v.into())),
        database_url: env("BERTH_DATABASE_URL"),
        storage_url: env("BERTH_STORAGE_URL"),
        auth_enabled: env("BERTH_AUTH_ENABLED"),
        allow_open_network: server.is_some_and(|s| s.allow_open_network),
        admin_password: env("BERTH_ADMIN_PASSWORD").map(|(_, v)| v),
        tls_cert: server
            .and_then(|s| s.tls_cert.clone())
            .or_else(|| env("BERTH_TLS_CERT").map(|(_, v)| v.into())),
        tls_key: server
            .and_then(|s| s.tls_key.clone())
            .or_else(|| env("BERTH_TLS_KEY").map(|(_, v)| v.into())),
        log_format: env("BERTH_LOG_FORMAT"),
    };
    ConfigFile::load(index.config.as_deref(), overrides)
}

/// `file` resolved, the node named after the host.
fn named(file: ConfigFile) -> anyhow::Result<Config> {
    let mut config = file.resolve()?;
    config.node_name = std::env::var("HOSTNAME").unwrap_or_else(|_| "berth".into());
    Ok(config)
}

impl Cli {
    /// The log's layout, needed before the command runs: `BERTH_LOG_FORMAT`, else (for
    /// `serve`) `log.format` of its configuration. A bad value falls back to text here and
    /// stops the command when its configuration is loaded.
    pub(crate) fn log_format(&self) -> LogFormat {
        match &self.command {
            Command::Serve(args) => args.file().map(|f| f.log.format).unwrap_or_default(),
            _ => std::env::var("BERTH_LOG_FORMAT")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or_default(),
        }
    }
}

/// Runs the command `cli` names to its end.
pub(crate) fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Serve(args) = &cli.command {
        let config = args.load()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .max_blocking_threads(config.limits.blocking_threads)
            .build()
            .context("starting the async runtime")?;
        return runtime.block_on(server::serve(config));
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    match cli.command {
        Command::Serve(_) => unreachable!("served above"),
        Command::Migrate(args) => {
            let config = args.load()?;
            runtime.block_on(server::migrate(&config))
        }
        Command::CheckConfig(args) => server::check_config(&args),
        Command::User { index, command } => runtime.block_on(access::user(&index, command)),
        Command::Token { index, command } => runtime.block_on(access::token(&index, command)),
        Command::Namespace { index, command } => {
            runtime.block_on(access::namespace(&index, command))
        }
        Command::Visibility {
            index,
            repository,
            visibility,
        } => runtime.block_on(access::repository_visibility(
            &index,
            &repository,
            &visibility,
        )),
        Command::Gc(args) => {
            let config = args.index.load()?;
            runtime.block_on(gc::run(config, &args))
        }
        Command::Advisories { index, command } => {
            runtime.block_on(advisories::run(&index, command))
        }
        Command::Repo { remote, command } => runtime.block_on(repo::run(&remote, command)),
        Command::Image { remote, command } => runtime.block_on(image::run(&remote, command)),
        Command::Tag { remote, command } => runtime.block_on(tag::run(&remote, command)),
        Command::Stats(args) => runtime.block_on(stats::run(args)),
        Command::Policy { remote, command } => runtime.block_on(policy::run(&remote, command)),
        Command::Trust { remote, command } => runtime.block_on(trust::run(&remote, command)),
        Command::Proxy { remote, command } => runtime.block_on(proxy::run(&remote, command)),
        Command::Replication { remote, command } => {
            runtime.block_on(replication::run(&remote, *command))
        }
        Command::Webhook { remote, command } => runtime.block_on(webhook::run(&remote, command)),
    }
}
