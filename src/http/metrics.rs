//! The HTTP side of the metrics: the layer that counts, times and logs every request (one
//! layer for the three, since each layer costs every request), and `GET /metrics`.
//! [`crate::serve`] wraps both route sets (`/v2/` and `/api/v1`) in the layer.

use std::time::Instant;

use axum::{
    Router,
    body::{Body, HttpBody as _},
    extract::{Request, State},
    http::{HeaderValue, StatusCode, header, request::Parts},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::get,
};
use sha2::{Digest as _, Sha256};

use crate::{
    auth::{Auth, Credentials},
    metrics::{Handler, Metrics},
    registry::Registry,
    state::{AccessUser, client_address},
};

/// The layer of every request: the in-flight gauge, the request count and duration, and one
/// access log line (target `access`, level info): method, path (never the query, which may
/// carry state tokens), status, bytes of the body when known, duration, and the verified
/// user. The duration is the time to the response's head: a streamed body is not waited for.
pub async fn observe(State(metrics): State<Metrics>, mut request: Request, next: Next) -> Response {
    let handler = Handler::of_path(request.uri().path());
    let method = request.method().clone();
    let uri = request.uri().clone();
    let user = AccessUser::default();
    request.extensions_mut().insert(user.clone());
    let in_flight = metrics.start(handler);
    let started = Instant::now();
    let response = next.run(request).await;
    let elapsed = started.elapsed();
    drop(in_flight);
    let status = response.status();
    metrics.answered(handler, &method, status, elapsed.as_secs_f64());
    let bytes = response.body().size_hint().exact();
    tracing::info!(
        target: "access",
        method = %method,
        path = uri.path(),
        status = status.as_u16(),
        bytes,
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        user = user.get(),
        "request"
    );
    response
}

/// Who may scrape `/metrics` and what it reads at scrape time.
#[derive(Clone)]
struct Scrape {
    registry: Registry,
    auth: Auth,
    /// SHA-256 of `metrics.token`: compared without revealing it through timing.
    token: Option<[u8; 32]>,
}

/// `GET /metrics`, for any router state: open when auth is off; with auth on, to
/// administrators (Basic or bearer credentials) and to the bearer `metrics.token`.
pub fn routes<S: Clone + Send + Sync + 'static>(
    registry: Registry,
    auth: Auth,
    token: Option<&str>,
) -> Router<S> {
    let scrape = Scrape {
        registry,
        auth,
        token: token.map(|t| Sha256::digest(t.as_bytes()).into()),
    };
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(scrape)
}

async fn metrics(State(scrape): State<Scrape>, request: Request) -> Response {
    // Only the head is read; the body holds nothing for a GET.
    let (parts, _) = request.into_parts();
    if let Err(refusal) = scrape.allowed(&parts).await {
        return refusal;
    }
    let registry = &scrape.registry;
    // A gauge that cannot be read keeps its last value; the rest of the scrape still serves.
    let queued = match registry.queued_jobs().await {
        Ok(queued) => Some(queued),
        Err(e) => {
            tracing::warn!(error = %e, "metrics: could not count queued jobs");
            None
        }
    };
    if let Err(e) = registry.refresh_quota_metrics().await {
        tracing::warn!(error = %e, "metrics: could not read the namespace quotas");
    }
    if let Err(e) = registry.refresh_scan_metrics().await {
        tracing::warn!(error = %e, "metrics: could not read the scanning figures");
    }
    match registry.webhook_queue_depth().await {
        Ok(pending) => registry.metrics().set_webhook_queue_depth(pending),
        Err(e) => tracing::warn!(error = %e, "metrics: could not count webhook deliveries"),
    }
    let text = registry.metrics().render(queued, registry.clock().now());
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        Body::from(text),
    )
        .into_response()
}

impl Scrape {
    /// Whether the request may read the metrics; the refusal otherwise (401 asks for
    /// credentials, 403 refuses those given).
    async fn allowed(&self, request: &Parts) -> Result<(), Response> {
        if !self.auth.enabled() {
            return Ok(());
        }
        let refused = |status: StatusCode, why: &'static str| {
            let mut response = (status, why).into_response();
            if status == StatusCode::UNAUTHORIZED {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"berth metrics\""),
                );
            }
            response
        };
        let unauthorized = || {
            refused(
                StatusCode::UNAUTHORIZED,
                "metrics: an administrator's credentials or the metrics token are required\n",
            )
        };
        let presented = Credentials::parse(request.headers.get(header::AUTHORIZATION))
            .map_err(|_| unauthorized())?;
        let identity = match presented {
            Credentials::None => return Err(unauthorized()),
            Credentials::Bearer(token) => {
                if let Some(expected) = &self.token {
                    let given: [u8; 32] = Sha256::digest(token.as_bytes()).into();
                    if &given == expected {
                        return Ok(());
                    }
                }
                self.auth
                    .bearer(&token)
                    .await
                    .map_err(|_| unauthorized())?
                    .0
            }
            Credentials::Basic { user, password } => {
                let client = client_address(&request.extensions);
                self.auth
                    .login(&user, &password, &client)
                    .await
                    .map_err(|_| unauthorized())?
            }
        };
        AccessUser::note(&request.extensions, &identity.name);
        if identity.admin {
            Ok(())
        } else {
            Err(refused(
                StatusCode::FORBIDDEN,
                "metrics: only administrators and the metrics token may read the metrics\n",
            ))
        }
    }
}
