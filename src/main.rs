//! The `berth` command: the only place that reads the process environment and exits.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context;
use berth::config::{Config, Overrides};
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
    /// Collect garbage now (works beside running servers, on the same index and store).
    Gc(GcArgs),
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
    /// TOML configuration file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on [env: BERTH_LISTEN].
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Directory for the embedded defaults [env: BERTH_DATA_DIR].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
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
            println!("{config:#?}");
            Ok(())
        }
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
            if run.state == "failed" {
                anyhow::bail!("the run failed: {}", run.report.unwrap_or_default());
            }
            Ok(())
        }
    }
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
