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
}

#[derive(clap::Args)]
struct ServerArgs {
    /// TOML configuration file [env: BERTH_CONFIG].
    #[arg(long, value_name = "FILE", env = "BERTH_CONFIG")]
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
