//! HTTP: the `/v2/` API, the token endpoint and the health check, axum only. Knows headers
//! and status codes; knows nothing of SQL or object keys. Every `/v2/` request goes through
//! `dispatch`, which parses the `Route` and checks access once, and a thin handler per
//! spec noun that extracts, calls the registry once and shapes the response.
//!
//! Layering: handlers call [`crate::registry`] and [`crate::auth`] through the shared
//! [`crate::state::AppState`]; nothing here knows the management API, nor it this.

mod access;
mod blobs;
mod listing;
mod manifests;
pub mod metrics;
mod route;
mod token;
mod uploads;

use axum::{
    Router,
    body::Body,
    extract::{Request, State},
    http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::{
    auth::Auth,
    error::{Error, Result},
    oci::RepoName,
    registry::Registry,
    state::{AccessUser, AppState, client_address},
};
use access::Access;
use route::Route;

/// The registry's own routes: the `/v2/` API, the token endpoint and the health check.
/// [`crate::serve`] merges them with the management API's and attaches the state.
pub fn routes() -> Router<AppState> {
    let v2 = Router::new()
        .route("/v2", axum::routing::any(dispatch))
        .route("/v2/", axum::routing::any(dispatch))
        .route("/v2/{*path}", axum::routing::any(dispatch))
        .layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_static("docker-distribution-api-version"),
            HeaderValue::from_static("registry/2.0"),
        ));
    let plain = Router::new()
        .route("/token", get(token::get).post(token::post))
        .route("/healthz", get(|| async { "ok" }))
        // axum's own 405 has an empty body; its `Allow` header is kept.
        .method_not_allowed_fallback(method_not_allowed);
    Router::new().merge(v2).merge(plain)
}

/// A method `/token` or `/healthz` does not serve: the JSON problem `/api/v1` answers with,
/// so a client reads every refusal outside `/v2/` the same way.
async fn method_not_allowed() -> Response {
    let body = serde_json::json!({
        "error": {
            "code": "METHOD_NOT_ALLOWED",
            "message": "method not allowed on this resource",
            "details": null,
        }
    });
    (StatusCode::METHOD_NOT_ALLOWED, axum::Json(body)).into_response()
}

/// Routes one `/v2/` request to its handler.
async fn dispatch(State(app): State<AppState>, request: Request) -> Response {
    let registry = &app.registry;
    let (parts, body) = request.into_parts();
    let raw_path = parts.uri.path();
    let path =
        percent_encoding::percent_decode_str(raw_path.strip_prefix("/v2").unwrap_or(raw_path))
            .decode_utf8_lossy()
            .into_owned();
    let query = Query::parse(parts.uri.query());
    let route = match Route::parse(&path) {
        Ok(route) => route,
        // Only a PUT names a tag to make; to a read or a delete, a reference that cannot be
        // a tag is a manifest that is not there (as the spec's conformance and peers answer).
        Err(Error::TagInvalid(_)) if parts.method != Method::PUT => {
            return Error::ManifestUnknown.into_response();
        }
        Err(e) => return e.into_response(),
    };
    let route = match query.get("ns") {
        Some(host) => mirrored(registry, host, route),
        None => route,
    };
    let auth = &app.auth;
    let client = client_address(&parts.extensions);
    let has_body = parts.headers.contains_key(header::TRANSFER_ENCODING)
        || parts
            .headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    let access = if auth.enabled() {
        let realm = |path: &str| {
            Ctx {
                registry,
                auth,
                https: app.https,
                headers: &parts.headers,
                query: &Query::default(),
                access: &Access::open(),
            }
            .location(path)
        };
        let proxied = |repo: &RepoName| registry.is_proxied(repo);
        match access::check(auth, &parts, &route, &query, &client, realm, proxied).await {
            Ok(access) => {
                if !access.identity.is_anonymous() {
                    AccessUser::note(&parts.extensions, &access.identity.name);
                }
                access
            }
            Err(refusal) => return close_if_body_unread(has_body, refusal),
        }
    } else {
        Access::open()
    };
    let ctx = Ctx {
        registry,
        auth,
        https: app.https,
        headers: &parts.headers,
        query: &query,
        access: &access,
    };
    let audited = audited_event(&parts.method, &route).filter(|_| auth.enabled());
    let response = match handle(ctx, &parts.method, route, body).await {
        Ok(response) => response,
        Err(e) => close_if_body_unread(has_body, e.into_response()),
    };
    if let Some((action, target)) = audited.filter(|_| response.status().is_success()) {
        auth.audit(
            &access.identity.name,
            Some(&client),
            action,
            Some(&target),
            None,
        )
        .await;
    }
    response
}

/// containerd's mirror mode: a read with `?ns=<host>` names the repository of that registry,
/// which the pull-through cache rule listing the host serves under its prefix.
fn mirrored(registry: &Registry, host: &str, route: Route) -> Route {
    let rename = |name: RepoName| registry.mirror_name(host, &name).unwrap_or(name);
    match route {
        Route::Manifest { name, reference } => Route::Manifest {
            name: rename(name),
            reference,
        },
        Route::Blob { name, digest } => Route::Blob {
            name: rename(name),
            digest,
        },
        Route::Tags { name } => Route::Tags { name: rename(name) },
        Route::Referrers { name, digest } => Route::Referrers {
            name: rename(name),
            digest,
        },
        other => other,
    }
}

/// An error may be answered before the request body was read; the connection then cannot
/// carry another request, and a client that reused it would see it closed under its next one.
fn close_if_body_unread(has_body: bool, mut response: Response) -> Response {
    if has_body {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Pushes of manifests and deletes are audited (blob uploads are too many to be worth it;
/// the manifest push that follows names them).
fn audited_event(method: &Method, route: &Route) -> Option<(&'static str, String)> {
    match (method, route) {
        (&Method::PUT, Route::Manifest { name, reference }) => {
            Some(("push", format!("{name}:{reference}")))
        }
        (&Method::DELETE, Route::Manifest { name, reference }) => {
            Some(("delete", format!("{name}:{reference}")))
        }
        (&Method::DELETE, Route::Blob { name, digest }) => {
            Some(("delete", format!("{name}@{digest}")))
        }
        _ => None,
    }
}

async fn handle(ctx: Ctx<'_>, method: &Method, route: Route, body: Body) -> Result<Response> {
    let head = *method == Method::HEAD;
    match (method.clone(), route) {
        (Method::GET | Method::HEAD, Route::Base) => Ok(StatusCode::OK.into_response()),
        (Method::GET | Method::HEAD, Route::Catalog) => listing::catalog(ctx).await,
        (Method::GET | Method::HEAD, Route::Tags { name }) => listing::tags(ctx, name).await,
        (Method::GET | Method::HEAD, Route::Referrers { name, digest }) => {
            listing::referrers(ctx, name, digest).await
        }
        (Method::GET | Method::HEAD, Route::Manifest { name, reference }) => {
            manifests::get(ctx, name, reference, head).await
        }
        (Method::PUT, Route::Manifest { name, reference }) => {
            manifests::put(ctx, name, reference, body).await
        }
        (Method::DELETE, Route::Manifest { name, reference }) => {
            manifests::delete(ctx, name, reference).await
        }
        (Method::GET | Method::HEAD, Route::Blob { name, digest }) => {
            blobs::get(ctx, name, digest, head).await
        }
        (Method::DELETE, Route::Blob { name, digest }) => blobs::delete(ctx, name, digest).await,
        (Method::POST, Route::Uploads { name }) => uploads::start(ctx, name, body).await,
        (Method::GET, Route::Upload { name, session }) => uploads::status(ctx, name, session).await,
        (Method::PATCH, Route::Upload { name, session }) => {
            uploads::append(ctx, name, session, body).await
        }
        (Method::PUT, Route::Upload { name, session }) => {
            uploads::finish(ctx, name, session, body).await
        }
        (Method::DELETE, Route::Upload { name, session }) => {
            uploads::cancel(ctx, name, session).await
        }
        _ => Err(Error::MethodNotAllowed),
    }
}

/// What every handler gets.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    registry: &'a Registry,
    auth: &'a Auth,
    https: bool,
    headers: &'a HeaderMap,
    query: &'a Query,
    /// Who is asking and what they may do on the route's repository.
    access: &'a Access,
}

impl Ctx<'_> {
    fn header(&self, name: impl header::AsHeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// An absolute URL for `path` on this registry, as the client reached it (through a proxy
    /// that sets `X-Forwarded-Proto`/`-Host`, or directly). Relative when no host is known.
    fn location(&self, path: &str) -> String {
        let host = self
            .header("x-forwarded-host")
            .or_else(|| self.header(header::HOST))
            .map(|h| h.split(',').next().unwrap_or(h).trim());
        let scheme = self
            .header("x-forwarded-proto")
            .map(|p| p.split(',').next().unwrap_or(p).trim())
            .filter(|p| *p == "http" || *p == "https")
            .unwrap_or(if self.https { "https" } else { "http" });
        match host {
            Some(host) if !host.is_empty() && host.bytes().all(|b| b.is_ascii_graphic()) => {
                format!("{scheme}://{host}{path}")
            }
            _ => path.to_owned(),
        }
    }
}

/// Query parameters, decoded once.
#[derive(Debug, Default)]
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(raw: Option<&str>) -> Query {
        Query(
            url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
                .into_owned()
                .collect(),
        )
    }

    fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The page size `n`, which must be a non-negative integer when present.
    fn page_size(&self) -> Result<Option<u32>> {
        match self.get("n") {
            None | Some("") => Ok(None),
            Some(n) => n.parse::<u32>().map(Some).map_err(|_| {
                Error::BadRequest(format!(
                    "query parameter n must be a non-negative integer, not {n:?}"
                ))
            }),
        }
    }
}

/// Builds a response with `status`, `headers` and an empty body.
fn empty(status: StatusCode, headers: &[(HeaderName, String)]) -> Response {
    let mut response = (status, Body::empty()).into_response();
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(value) {
            response.headers_mut().insert(name.clone(), v);
        }
    }
    response
}

fn docker_content_digest() -> HeaderName {
    HeaderName::from_static("docker-content-digest")
}
