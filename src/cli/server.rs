//! `berth serve`, `berth migrate` and `berth check-config`.

use anyhow::Context;
use berth::config::Config;

use super::ServerArgs;

/// Serves the registry on `config.listen` until SIGINT or SIGTERM.
pub(super) async fn serve(config: Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listen: cannot bind {}", config.listen))?;
    berth::serve(config, listener, shutdown_signal()).await
}

/// Brings the metadata index to the current schema.
pub(super) async fn migrate(config: &Config) -> anyhow::Result<()> {
    berth::meta::Meta::migrate(&config.database).await
}

/// Checks the configuration and prints it as given (the admin password masked).
pub(super) fn check_config(args: &ServerArgs) -> anyhow::Result<()> {
    let mut shown = args.file()?;
    shown.clone().resolve()?;
    shown.auth.admin_password = shown.auth.admin_password.map(|_| "***".into());
    println!("{shown:#?}");
    Ok(())
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
