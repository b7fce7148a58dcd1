//! The `berth` command: the only place that reads the process environment and exits.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context;
use berth::{
    auth::{Auth, Identity, Role, TokenRequest, Visibility},
    config::{Config, Overrides},
};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "berth",
    version,
    about = "A container registry (OCI Distribution v1.1)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the registry (defaults: 127.0.0.1:5000, data under ./berth-data).
    Serve(ServerArgs),
    /// Bring the metadata index to the current schema and exit.
    Migrate(ServerArgs),
    /// Validate the configuration and print it.
    CheckConfig(ServerArgs),
    /// Users (offline, on the configured database).
    User {
        #[command(flatten)]
        server: ServerArgs,
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Personal access and deploy tokens.
    Token {
        #[command(flatten)]
        server: ServerArgs,
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Namespaces: visibility and members.
    Namespace {
        #[command(flatten)]
        server: ServerArgs,
        #[command(subcommand)]
        command: NamespaceCommand,
    },
    /// Set a repository's visibility (public, internal, private).
    Visibility {
        #[command(flatten)]
        server: ServerArgs,
        repository: String,
        visibility: String,
    },
    /// Collect garbage now (works beside running servers, on the same index and store).
    Gc(GcArgs),
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user; the password is read from the first line of standard input.
    Create {
        name: String,
        #[arg(long)]
        admin: bool,
    },
    /// Set a user's password, read from the first line of standard input.
    Passwd {
        name: String,
    },
    Delete {
        name: String,
    },
    List,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a personal access token for USER; prints the secret once.
    Create {
        user: String,
        #[arg(long)]
        name: String,
        /// read_registry, write_registry, delete_registry (comma separated).
        #[arg(long, default_value = "read_registry")]
        scopes: String,
        /// Days until it expires (none: never).
        #[arg(long)]
        expires_days: Option<u32>,
    },
    /// Create a deploy token for NAMESPACE; prints the login name and secret once.
    Deploy {
        namespace: String,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "read_registry")]
        scopes: String,
        #[arg(long)]
        expires_days: Option<u32>,
    },
    /// List the tokens of a user, or of a namespace with --namespace.
    List {
        user: Option<String>,
        #[arg(long)]
        namespace: Option<String>,
    },
    Revoke {
        id: i64,
    },
}

#[derive(Subcommand)]
enum NamespaceCommand {
    /// Create a namespace, optionally with its first owner.
    Create {
        name: String,
        #[arg(long)]
        visibility: Option<String>,
        #[arg(long)]
        owner: Option<String>,
    },
    /// Set the default visibility of the namespace's repositories.
    Visibility { name: String, visibility: String },
    /// Add a member or change their role (guest, reporter, developer, maintainer, owner).
    Member {
        name: String,
        user: String,
        role: String,
    },
    /// Remove a member.
    RemoveMember { name: String, user: String },
    /// List the members.
    Members { name: String },
}

#[derive(clap::Args)]
struct GcArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Report what would be deleted, and why, without deleting.
    #[arg(long)]
    dry_run: bool,
    /// Print every item (what, where, bytes, why), not only the counts.
    #[arg(long)]
    verbose: bool,
    /// Grace period for this run instead of the configured `gc.grace_secs`.
    #[arg(long, value_name = "SECONDS")]
    grace_secs: Option<u64>,
    #[command(subcommand)]
    action: Option<GcAction>,
}

#[derive(Subcommand)]
enum GcAction {
    /// List recorded runs, newest first.
    History {
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
    /// Reclaimable bytes per repository and in total.
    Estimate,
}

#[derive(clap::Args)]
struct ServerArgs {
    /// TOML configuration file [env: BERTH_CONFIG].
    #[arg(long, value_name = "FILE", env = "BERTH_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Address to listen on [env: BERTH_LISTEN].
    #[arg(long, value_name = "ADDR", global = true)]
    listen: Option<String>,
    /// Directory for the embedded defaults [env: BERTH_DATA_DIR].
    #[arg(long, value_name = "DIR", global = true)]
    data_dir: Option<PathBuf>,
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

impl ServerArgs {
    /// Flags win over the environment, which wins over the file.
    fn load(&self) -> anyhow::Result<Config> {
        let env = |key: &str| {
            std::env::var(key)
                .ok()
                .filter(|v| !v.is_empty())
                .map(|v| (key.to_owned(), v))
        };
        let overrides = Overrides {
            listen: self
                .listen
                .clone()
                .map(|v| ("--listen".to_owned(), v))
                .or_else(|| env("BERTH_LISTEN")),
            data_dir: self
                .data_dir
                .clone()
                .or_else(|| env("BERTH_DATA_DIR").map(|(_, v)| v.into())),
            database_url: env("BERTH_DATABASE_URL"),
            storage_url: env("BERTH_STORAGE_URL"),
            auth_enabled: env("BERTH_AUTH_ENABLED"),
            allow_open_network: self.allow_open_network,
            admin_password: env("BERTH_ADMIN_PASSWORD").map(|(_, v)| v),
            tls_cert: self
                .tls_cert
                .clone()
                .or_else(|| env("BERTH_TLS_CERT").map(|(_, v)| v.into())),
            tls_key: self
                .tls_key
                .clone()
                .or_else(|| env("BERTH_TLS_KEY").map(|(_, v)| v.into())),
        };
        Config::load(self.config.as_deref(), overrides)
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
                // PostgreSQL's notices ("relation ... already exists, skipping" at each
                // migration check) are not worth a line at every start.
                .unwrap_or_else(|_| {
                    tracing_subscriber::EnvFilter::new("info,sqlx::postgres::notice=warn")
                }),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    match cli.command {
        Command::Serve(args) => {
            let config = args.load()?;
            runtime.block_on(async {
                let listener = tokio::net::TcpListener::bind(config.listen)
                    .await
                    .with_context(|| format!("listen: cannot bind {}", config.listen))?;
                berth::serve(config, listener, shutdown_signal()).await
            })
        }
        Command::Migrate(args) => {
            let config = args.load()?;
            runtime.block_on(berth::meta::Meta::migrate(&config.database_config()?))
        }
        Command::CheckConfig(args) => {
            let config = args.load()?;
            let mut shown = config.clone();
            shown.auth.admin_password = shown.auth.admin_password.map(|_| "***".into());
            println!("{shown:#?}");
            Ok(())
        }
        Command::User { server, command } => runtime.block_on(async {
            let auth = open_auth(&server).await?;
            let me = Identity::local_admin();
            match command {
                UserCommand::Create { name, admin } => {
                    auth.create_user(&me, &name, &read_password()?, admin)
                        .await?;
                    println!("created user {name}{}", if admin { " (admin)" } else { "" });
                }
                UserCommand::Passwd { name } => {
                    auth.set_password(&me, &name, &read_password()?).await?;
                    println!("password of {name} changed");
                }
                UserCommand::Delete { name } => {
                    auth.delete_user(&me, &name).await?;
                    println!("deleted user {name} with their tokens");
                }
                UserCommand::List => {
                    for u in auth.list_users(&me, "", u32::MAX).await? {
                        println!("{}\t{}", u.name, if u.admin { "admin" } else { "" });
                    }
                }
            }
            Ok(())
        }),
        Command::Token { server, command } => runtime.block_on(async {
            let auth = open_auth(&server).await?;
            let me = Identity::local_admin();
            let request = |name: String, scopes: &str, days: Option<u32>| TokenRequest {
                name,
                scopes: scopes.split(',').map(|s| s.trim().to_owned()).collect(),
                expires_at: days.map(|d| berth::meta::now() + i64::from(d) * 86_400),
            };
            match command {
                TokenCommand::Create {
                    user,
                    name,
                    scopes,
                    expires_days,
                } => {
                    let t = auth
                        .create_personal_token(&me, &user, &request(name, &scopes, expires_days))
                        .await?;
                    print_secret(&t);
                }
                TokenCommand::Deploy {
                    namespace,
                    name,
                    scopes,
                    expires_days,
                } => {
                    let t = auth
                        .create_deploy_token(&me, &namespace, &request(name, &scopes, expires_days))
                        .await?;
                    print_secret(&t);
                }
                TokenCommand::List { user, namespace } => {
                    let rows = match (user, namespace) {
                        (Some(user), None) => auth.list_personal_tokens(&me, &user).await?,
                        (None, Some(ns)) => auth.list_deploy_tokens(&me, &ns).await?,
                        _ => anyhow::bail!("name a user, or a namespace with --namespace"),
                    };
                    for t in rows {
                        let state = if t.revoked_at.is_some() {
                            "revoked"
                        } else {
                            "active"
                        };
                        println!(
                            "{}\t{}\t{}\t{}\t{state}",
                            t.id, t.username, t.name, t.scopes
                        );
                    }
                }
                TokenCommand::Revoke { id } => {
                    auth.revoke_token(&me, id).await?;
                    println!("revoked token {id}");
                }
            }
            Ok(())
        }),
        Command::Namespace { server, command } => runtime.block_on(async {
            let auth = open_auth(&server).await?;
            let me = Identity::local_admin();
            match command {
                NamespaceCommand::Create {
                    name,
                    visibility,
                    owner,
                } => {
                    let visibility = visibility.as_deref().map(parse_visibility).transpose()?;
                    auth.create_namespace(&me, &name, visibility, owner.as_deref())
                        .await?;
                    println!("created namespace {name}");
                }
                NamespaceCommand::Visibility { name, visibility } => {
                    auth.set_namespace_visibility(&me, &name, parse_visibility(&visibility)?)
                        .await?;
                    println!("namespace {name} is now {visibility} by default");
                }
                NamespaceCommand::Member { name, user, role } => {
                    let role = Role::parse(&role).ok_or_else(|| {
                        anyhow::anyhow!(
                            "unknown role {role:?}: guest, reporter, developer, maintainer or owner"
                        )
                    })?;
                    auth.set_member(&me, &name, &user, role).await?;
                    println!("{user} is {role:?} in {name}");
                }
                NamespaceCommand::RemoveMember { name, user } => {
                    auth.remove_member(&me, &name, &user).await?;
                    println!("{user} removed from {name}");
                }
                NamespaceCommand::Members { name } => {
                    for m in auth.list_members(&me, &name).await? {
                        let role = Role::from_level(m.role).map(|r| format!("{r:?}"));
                        println!("{}\t{}", m.user, role.unwrap_or_default().to_lowercase());
                    }
                }
            }
            Ok(())
        }),
        Command::Visibility {
            server,
            repository,
            visibility,
        } => runtime.block_on(async {
            let auth = open_auth(&server).await?;
            let repo: berth::oci::RepoName = repository
                .parse()
                .map_err(|e| anyhow::anyhow!("{repository:?}: {e}"))?;
            auth.set_repository_visibility(
                &Identity::local_admin(),
                &repo,
                parse_visibility(&visibility)?,
            )
            .await?;
            println!("{repository} is now {visibility}");
            Ok(())
        }),
        Command::Gc(args) => {
            let config = args.server.load()?;
            runtime.block_on(gc(config, args))
        }
    }
}

async fn gc(config: Config, args: GcArgs) -> anyhow::Result<()> {
    let registry = berth::registry::Registry::open(&config).await?;
    let outcome = gc_command(&registry, &args).await;
    registry.close().await;
    outcome
}

async fn gc_command(registry: &berth::registry::Registry, args: &GcArgs) -> anyhow::Result<()> {
    match args.action {
        Some(GcAction::History { limit }) => {
            println!(
                "{:>6}  {:<16} {:<7} {:<8} {:>10} {:>10} {:>9} {:>7} {:>7} {:>8} {:>12} {:>6}",
                "run",
                "trigger",
                "dry-run",
                "state",
                "started",
                "seconds",
                "manifests",
                "links",
                "blobs",
                "uploads+o",
                "bytes",
                "errors"
            );
            for run in registry.gc_runs(None, limit).await? {
                let seconds = match (run.started_at, run.finished_at) {
                    (Some(s), Some(f)) => (f - s).to_string(),
                    _ => "-".into(),
                };
                let c = run.counts;
                println!(
                    "{:>6}  {:<16} {:<7} {:<8} {:>10} {:>10} {:>9} {:>7} {:>7} {:>8} {:>12} {:>6}",
                    run.id,
                    run.trigger,
                    run.dry_run,
                    run.state,
                    run.started_at.unwrap_or_default(),
                    seconds,
                    c.manifests,
                    c.links,
                    c.blobs,
                    c.uploads + c.orphans,
                    c.bytes,
                    c.errors
                );
            }
            Ok(())
        }
        Some(GcAction::Estimate) => {
            let (repositories, blobs, bytes) = registry.gc_estimate().await?;
            println!("{:<50} {:>8} {:>14}", "repository", "links", "bytes");
            for r in repositories {
                println!(
                    "{:<50} {:>8} {:>14}",
                    r.repository, r.unreferenced_links, r.unreferenced_bytes
                );
            }
            println!("reclaimable now: {blobs} blobs, {bytes} bytes");
            Ok(())
        }
        None => {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_style(
                indicatif::ProgressStyle::with_template("{spinner} {elapsed} {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(std::time::Duration::from_millis(200));
            let progress = |phase: &str, n: u64| bar.set_message(format!("{phase}: {n} checked"));
            let mut options = registry.gc_options(args.dry_run);
            if let Some(grace) = args.grace_secs {
                options.grace_secs = grace;
            }
            let run = registry.run_gc("cli", options, &progress).await?;
            bar.finish_and_clear();
            if args.verbose
                && let Some(items) = run
                    .report
                    .as_ref()
                    .and_then(|r| r.get("items"))
                    .and_then(|i| i.as_array())
            {
                for item in items {
                    println!("{item}");
                }
            }
            let c = run.counts;
            println!(
                "run {} {}: {} manifests, {} links, {} blobs, {} upload sessions, {} orphan objects, \
                 {} bytes{}; {} errors",
                run.id,
                if run.dry_run {
                    "(dry run) would delete"
                } else {
                    "deleted"
                },
                c.manifests,
                c.links,
                c.blobs,
                c.uploads,
                c.orphans,
                c.bytes,
                if run.dry_run {
                    " reclaimable"
                } else {
                    " reclaimed"
                },
                c.errors
            );
            if let Some(phases) = run.report.as_ref().and_then(|r| r.get("phase_secs")) {
                println!("phases (wall seconds): {phases}");
            }
            if run.state == "failed" {
                anyhow::bail!("the run failed: {}", run.report.unwrap_or_default());
            }
            Ok(())
        }
    }
}

/// The access-control service over the configured database, for the offline commands.
async fn open_auth(server: &ServerArgs) -> anyhow::Result<Auth> {
    let mut config = server.load()?;
    // Offline commands commit durably (SQLite synchronous=FULL) whatever the server runs with.
    config.durability.fsync = true;
    let meta = berth::meta::Meta::open(&config).await?;
    Auth::open(meta, &config.auth, config.clock.clone()).await
}

fn parse_visibility(s: &str) -> anyhow::Result<Visibility> {
    Visibility::parse(s)
        .ok_or_else(|| anyhow::anyhow!("unknown visibility {s:?}: public, internal or private"))
}

/// The first line of standard input (so that passwords stay out of the process list).
fn read_password() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

fn print_secret(t: &berth::auth::NewTokenSecret) {
    println!("id:       {}", t.id);
    println!("username: {}", t.username);
    println!("scopes:   {}", t.scopes.join(","));
    println!("token:    {}", t.secret);
    eprintln!("The token is shown only now: store it (it is kept only as a hash).");
}

async fn shutdown_signal() {
    let ctrl_c = async {
        tokio::signal::ctrl_c().await.ok();
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down");
}
