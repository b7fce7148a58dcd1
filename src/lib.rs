//! # Berth
//!
//! A container registry: the OCI Distribution API v1.1 over content-addressed blobs in an
//! `object_store` and a metadata index in SQL.
//!
//! # Layout (data flows downwards; a module only calls those below it)
//! - [`http`]: axum routes and thin handlers, one per spec endpoint (`/v2/`, `/token`);
//!   [`api`]: the management API (`/api/v1`). Neither imports the other: [`serve`] merges
//!   their routes; [`ui`]: the web UI (`/ui/`), server-rendered pages over the same domain.
//! - [`state`]: what both share per request (the services, the peer address), below both.
//! - [`registry`]: the domain rules (uploads, manifests, tags, isolation, collection);
//!   [`auth`]: access control (identities, tokens, roles, visibility), beside it.
//! - [`meta`]: the metadata index (sqlx, every SQL statement); [`blobs`]: the blob store
//!   (object_store).
//! - [`oci`]: pure types (digests, names, manifests); [`scan`]: pure readers of layers,
//!   package databases, versions and advisories; [`error`]: the spec's error codes;
//!   [`clock`]: the wall clock; [`config`]: the settings, parsed once.
//! - [`proxy`]: the pull-through cache's client of upstream registries (reqwest), below
//!   the registry as the blob store is.
//! - [`workers`]: background tasks owned by [`serve`], over the registry; [`connections`]:
//!   how [`serve`] takes client connections (limits, timeouts, TLS).
//! - [`metrics`]: the Prometheus metrics each registry keeps (the blob store times its calls
//!   into them), below the registry; [`http::metrics`] holds the layer that counts and logs
//!   every request and `GET /metrics`.

pub mod api;
pub mod auth;
pub mod blobs;
pub mod clock;
pub mod config;
pub mod connections;
pub mod error;
pub mod http;
pub mod meta;
pub mod metrics;
pub mod oci;
pub mod proxy;
pub mod registry;
pub mod scan;
pub mod state;
pub mod trust;
pub mod ui;
pub mod webhooks;
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
    // The pull-through cache rules of the API are in force from the first request.
    registry.refresh_proxy_rules().await?;
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
        .merge(ui::routes())
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
    let served = connections::serve(listener, app, &config, shutdown).await;
    stop.cancel();
    workers.join_all().await;
    registry.close().await;
    served
}
