//! # Berth
//!
//! A container registry: the OCI Distribution API v1.1 over content-addressed blobs in an
//! `object_store` and a metadata index in SQL.
//!
//! # Layout (data flows downwards; a module only calls those below it)
//! - [`http`]: axum routes and thin handlers, one per spec endpoint; [`api`]: `/api/v1`.
//! - [`registry`]: the domain rules (uploads, manifests, tags, isolation).
//! - [`meta`]: the metadata index (sqlx); [`blobs`]: the blob store (object_store).
//! - [`oci`]: pure types (digests, names, manifests); [`error`]: the spec's error codes.
//! - [`workers`]: background tasks owned by [`serve`].

pub mod api;
pub mod auth;
pub mod blobs;
pub mod config;
pub mod error;
pub mod http;
pub mod meta;
pub mod oci;
pub mod registry;
pub mod workers;

use std::future::Future;

pub use config::Config;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Serves the registry on `listener` until `shutdown` completes, then stops the workers and
/// flushes what they hold. The caller binds, so tests can use port 0 without races.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let registry = registry::Registry::open(&config).await?;
    let auth = auth::Auth::open(registry.meta().clone(), &config.auth).await?;
    if !auth.enabled() {
        tracing::warn!("auth is disabled: anyone who can reach this address may push and delete");
    }
    let stop = CancellationToken::new();
    let workers = workers::spawn(registry.clone(), stop.clone());
    let app = http::router(registry.clone(), auth)
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
    tracing::info!(address = %listener.local_addr()?, "berth is serving");

    // Small responses must not wait for a delayed ACK (Nagle) on keep-alive connections.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
    });
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    stop.cancel();
    workers.join_all().await;
    registry.close().await;
    Ok(served?)
}
