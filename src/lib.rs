//! # Berth
//!
//! A container registry: the OCI Distribution API v1.1 over content-addressed blobs in an
//! `object_store` and a metadata index in SQL.
//!
//! # Layout (data flows downwards; a module only calls those below it)
//! - [`http`]: axum routes and thin handlers, one per spec endpoint (`/v2/`, `/token`);
//!   [`api`]: the management API (`/api/v1`). Neither imports the other: [`serve`] merges
//!   their routes.
//! - [`state`]: what both share per request (the services, the peer address), below both.
//! - [`registry`]: the domain rules (uploads, manifests, tags, isolation, collection);
//!   [`auth`]: access control (identities, tokens, roles, visibility), beside it.
//! - [`meta`]: the metadata index (sqlx, every SQL statement); [`blobs`]: the blob store
//!   (object_store).
//! - [`oci`]: pure types (digests, names, manifests); [`error`]: the spec's error codes;
//!   [`clock`]: the wall clock; [`config`]: the settings, parsed once.
//! - [`workers`]: background tasks owned by [`serve`], over the registry.
//! - [`metrics`]: the Prometheus metrics each registry keeps (the blob store times its calls
//!   into them), below the registry; [`http::metrics`] holds the layer that counts and logs
//!   every request and `GET /metrics`.

pub mod api;
pub mod auth;
pub mod blobs;
pub mod clock;
pub mod config;
pub mod error;
pub mod http;
pub mod meta;
pub mod metrics;
pub mod oci;
pub mod registry;
pub mod state;
pub mod workers;

use std::future::Future;

use axum::Router;
pub use config::Config;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::trace::TraceLayer;

/// Serves the registry on `listener` until `shutdown` completes, then stops the workers and
/// flushes what they hold. The caller binds, so tests can use port 0 without races.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // One index for both services: on SQLite it holds the one writer.
    let index = meta::Meta::open(&config).await?;
    let registry = registry::Registry::new(index.clone(), blobs::Blobs::open(&config)?, &config);
    let auth = auth::Auth::open(index, &config.auth, config.clock.clone()).await?;
    if !auth.enabled() {
        tracing::warn!("auth is disabled: anyone who can reach this address may push and delete");
    }
    let stop = CancellationToken::new();
    let flush_period = std::time::Duration::from_millis(config.metrics.stats_flush_millis.max(10));
    let workers = workers::spawn(
        registry.clone(),
        &config.node_name,
        flush_period,
        stop.clone(),
    );
    let metrics_routes = http::metrics::routes(
        registry.clone(),
        auth.clone(),
        config.metrics.token.as_deref(),
    );
    let state = state::AppState {
        registry: registry.clone(),
        auth,
        https: config.tls_cert.is_some(),
        external_url: config.external_url.clone(),
    };
    let app = Router::new()
        .merge(http::routes())
        .merge(api::routes())
        .merge(metrics_routes)
        // One layer counts, times and logs each request (inside the trace's span).
        .layer(axum::middleware::from_fn_with_state(
            registry.metrics().clone(),
            http::metrics::observe,
        ))
        .layer(TraceLayer::new_for_http().on_response(error::log_faults))
        .with_state(state)
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
    tracing::info!(address = %listener.local_addr()?, "berth is serving");

    let served = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => serve_tls(listener, app, cert, key, shutdown).await,
        _ => {
            // Small responses must not wait for a delayed ACK (Nagle) on keep-alive connections.
            let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!(error = %e, "could not set TCP_NODELAY");
                }
            });
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
                .map_err(anyhow::Error::from)
        }
    };
    stop.cancel();
    workers.join_all().await;
    registry.close().await;
    served
}

/// HTTPS with rustls: the certificate chain and key are PEM files, read once at start.
async fn serve_tls(
    listener: TcpListener,
    app: axum::extract::connect_info::IntoMakeServiceWithConnectInfo<
        axum::Router,
        std::net::SocketAddr,
    >,
    cert: &std::path::Path,
    key: &std::path::Path,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    use anyhow::Context;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("tls_cert: reading PEM certificates from {}", cert.display()))?;
    let private = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("tls_key: reading a PEM private key from {}", key.display()))?;
    // The provider is named, not left to rustls' feature detection: several are linked in.
    let mut server = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(chain, private)
    .context("tls_cert/tls_key: the key does not match the certificate")?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let tls = axum_server::tls_rustls::RustlsConfig::from_config(std::sync::Arc::new(server));
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        stopper.graceful_shutdown(Some(std::time::Duration::from_secs(10)));
    });
    let listener = listener.into_std()?;
    axum_server::from_tcp_rustls(listener, tls)
        .handle(handle)
        .serve(app)
        .await?;
    Ok(())
}
