//! The management API under `/api/v1`: JSON in and out over the same domain layer as `/v2/`
//! ([`crate::registry`] and [`crate::auth`], reached through [`crate::state::AppState`]; the
//! `/v2/` handlers are not imported here, nor this there).
//!
//! Conventions shared by every resource (one module per area):
//! - errors are `{"error": {"code", "message", "details"}}` with the right status ([`ApiError`]);
//! - listings page by cursor: `?limit=&cursor=` in, `next` in the body and a `Link` header out
//!   ([`Paging`], [`paged`]).

mod advisories;
mod allowlist;
mod caller;
mod gc;
mod images;
mod namespaces;
mod policies;
mod proxy;
mod quarantine;
mod quotas;
mod replication;
mod repositories;
mod scans;
mod stats;
mod tags;
mod trust;
mod users;
mod vulnerabilities;
mod webhooks;

pub use caller::Caller;

use axum::{
    Json, Router,
    extract::{FromRequest, FromRequestParts, Request},
    http::{HeaderValue, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::{Value, json};

use crate::{
    error::{Error, Fault},
    registry,
    state::AppState,
};

/// Every `/api/v1` route, under that prefix. [`crate::serve`] merges them with the `/v2/`
/// routes and attaches the state.
pub fn routes() -> Router<AppState> {
    let v1 = Router::new()
        .route("/openapi.json", axum::routing::get(openapi))
        .merge(repositories::routes())
        .merge(users::routes())
        .merge(namespaces::routes())
        .merge(quotas::routes())
        .merge(gc::routes())
        .merge(policies::routes())
        .merge(stats::routes())
        .merge(advisories::routes())
        .merge(allowlist::routes())
        .merge(trust::routes())
        .merge(vulnerabilities::routes())
        .merge(proxy::routes())
        .merge(webhooks::routes())
        .merge(replication::routes())
        // Last but the fallback: it covers every method router merged above (axum's own
        // 405 has an empty body; its `Allow` header is kept).
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(|| async { ApiError::not_found("no such endpoint in /api/v1") });
    Router::new().nest("/api/v1", v1)
}

/// The OpenAPI document of `/api/v1`, generated from the handlers' annotations.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Berth management API",
        description = "Repositories, usage and administration."
    ),
    paths(
        repositories::list,
        repositories::create,
        repositories::show,
        repositories::delete_repository,
        repositories::update,
        repositories::commands,
        repositories::get_settings,
        repositories::put_settings,
        repositories::delete_tags,
        images::list,
        images::show,
        images::delete,
        quarantine::quarantine,
        quarantine::show,
        quarantine::release,
        scans::scan,
        scans::scans,
        scans::packages,
        scans::sbom,
        scans::import_report,
        scans::reports,
        vulnerabilities::image,
        vulnerabilities::changes,
        vulnerabilities::overview,
        vulnerabilities::advisory,
        tags::list,
        tags::retag,
        gc::list,
        gc::create,
        gc::show,
        gc::estimate,
        policies::list,
        policies::show,
        policies::save,
        policies::remove,
        policies::run,
        stats::totals,
        stats::popular,
        stats::trends,
        namespaces::create,
        namespaces::visibility,
        namespaces::members,
        namespaces::set_member,
        namespaces::remove_member,
        namespaces::deploy_tokens,
        namespaces::create_deploy_token,
        namespaces::get_settings,
        namespaces::put_settings,
        namespaces::audit,
        quotas::show,
        quotas::set,
        quotas::remove,
        users::whoami,
        users::list,
        users::create,
        users::remove,
        users::password,
        users::tokens,
        users::create_token,
        users::revoke,
        advisories::import,
        advisories::show,
        advisories::list,
        allowlist::create,
        allowlist::list,
        allowlist::remove,
        trust::list,
        trust::show,
        trust::save,
        trust::remove,
        trust::signatures,
        proxy::list,
        proxy::show,
        proxy::save,
        proxy::remove,
        proxy::evict,
        webhooks::create,
        webhooks::list,
        webhooks::show,
        webhooks::remove,
        webhooks::deliveries,
        webhooks::redeliver,
        replication::list,
        replication::show,
        replication::save,
        replication::remove,
        replication::run,
        replication::drift,
        replication::executions,
        replication::execution,
    ),
    components(schemas(Problem))
)]
pub struct ApiDoc;

/// A method the path does not serve: the same JSON problem as every other refusal.
pub(crate) fn method_not_allowed_problem() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        "method not allowed on this resource",
    )
}

async fn method_not_allowed() -> ApiError {
    method_not_allowed_problem()
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(<ApiDoc as utoipa::OpenApi>::openapi())
}

/// A handler's result: an [`ApiError`] answers as a JSON problem.
pub type ApiResult<T> = Result<T, ApiError>;

/// The body of every error of `/api/v1` (for the OpenAPI document; [`ApiError`] writes it).
#[derive(Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// What went wrong.
    pub error: ProblemDetail,
}

/// The `error` of a [`Problem`].
#[derive(Serialize, utoipa::ToSchema)]
pub struct ProblemDetail {
    /// Stable and machine-readable, e.g. `BAD_REQUEST`, `NOT_FOUND`, `DENIED`.
    pub code: String,
    /// A sentence for people.
    pub message: String,
    /// Structured details (e.g. which field was invalid); `null` without any.
    pub details: Value,
}

/// A 400 naming the query parameter or body field at fault (in `details.parameter`).
pub(super) fn bad_parameter(parameter: &str, message: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("{parameter}: {message}"))
        .with_details(serde_json::json!({ "parameter": parameter }))
}

/// A JSON problem: a stable machine-readable `code`, a sentence for people, optional details.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// Stable and machine-readable, e.g. `BAD_REQUEST`.
    pub code: &'static str,
    /// A sentence for people.
    pub message: String,
    /// Structured details; `null` without any.
    pub details: Value,
    /// Seconds for a `Retry-After` header (rate limiting).
    pub retry_after: Option<u64>,
    /// The server-side failure behind it, logged once the response leaves.
    fault: Option<Box<Fault>>,
}

impl ApiError {
    /// A problem with `status`, `code` and `message`, without details.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            details: Value::Null,
            retry_after: None,
            fault: None,
        }
    }

    /// 400 BAD_REQUEST.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", message)
    }

    /// 404 NOT_FOUND.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", message)
    }

    /// The same problem with structured `details`.
    pub fn with_details(mut self, details: Value) -> ApiError {
        self.details = details;
        self
    }
}

/// Domain errors keep their status and spec code, so `/v2/` and `/api/v1` agree.
impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        let fault = Fault::of_api(&e).map(Box::new);
        let retry_after = match e {
            Error::TooManyRequests { retry_after } => Some(retry_after),
            _ => None,
        };
        let mut api = ApiError::new(e.status(), e.code(), e.to_string());
        api.retry_after = retry_after;
        api.fault = fault;
        api
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "error": { "code": self.code, "message": self.message, "details": self.details }
        });
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"berth\""),
            );
        }
        if let Some(fault) = self.fault {
            (*fault).attach(&mut response);
        }
        response
    }
}

/// Query parameters whose rejection is a JSON problem naming what was wrong.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> ApiResult<Self> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e| ApiError::bad_request(e.body_text()))
    }
}

/// A JSON body whose rejection (wrong content type, syntax, missing field) is a JSON problem.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> ApiResult<Self> {
        Json::<T>::from_request(request, state)
            .await
            .map(|j| ApiJson(j.0))
            .map_err(|e| ApiError::new(e.status(), "BAD_REQUEST", e.body_text()))
    }
}

/// A JSON body that may be left out: an empty body is `T::default()`.
pub struct OptionalJson<T>(pub T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> ApiResult<Self> {
        let bytes = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|e| ApiError::new(e.status(), "BAD_REQUEST", e.body_text()))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(T::default()));
        }
        // axum's reading names the field that is wrong (`grace_secs: invalid value ...`).
        Json::<T>::from_bytes(&bytes)
            .map(|j| OptionalJson(j.0))
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {}", e.body_text())))
    }
}

/// `?limit=&cursor=` of a listing. The cursor is opaque to clients: each listing decides what
/// it holds (usually the last key returned).
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Paging {
    /// Items per page (default 100, at most 1000).
    pub limit: Option<u32>,
    /// The `next` of the previous page.
    pub cursor: Option<String>,
}

/// `?limit=&cursor=` of a listing that refuses any other parameter, naming it.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StrictPaging {
    /// Items per page (default 100, at most 1000).
    pub limit: Option<u32>,
    /// The `next` of the previous page.
    pub cursor: Option<String>,
}

/// Entries a page holds when the client gives no `limit`.
pub const PAGE_DEFAULT: u32 = 100;
/// The most entries a page holds, whatever `limit` asks.
pub const PAGE_MAX: u32 = 1000;

impl Paging {
    /// The page size: `limit` up to [`PAGE_MAX`], [`PAGE_DEFAULT`] without one; 0 is refused.
    pub fn limit(&self) -> ApiResult<u32> {
        match self.limit {
            None => Ok(PAGE_DEFAULT),
            Some(0) => Err(ApiError::bad_request("limit must be at least 1")),
            Some(n) => Ok(registry::page_size(Some(n), PAGE_MAX)),
        }
    }

    /// Where the page starts: after this key ("" for the first page).
    pub fn cursor(&self) -> &str {
        self.cursor.as_deref().unwrap_or("")
    }
}

/// One page of a listing.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    /// The entries, in the listing's order.
    pub items: Vec<T>,
    /// The cursor of the next page; absent on the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// Answers a page of `items` fetched with one row more than `limit`: the extra row only says
/// that a next page exists, whose cursor `cursor_of` takes from the last item kept. `path` is
/// the listing's own path (with any filters) for the `Link` header.
pub fn paged<T: Serialize>(
    rows: Vec<T>,
    limit: u32,
    path: &str,
    cursor_of: impl Fn(&T) -> String,
) -> Response {
    let registry::Page { items, more } = registry::Page::from_rows(rows, limit);
    let next = more.then(|| items.last().map(&cursor_of)).flatten();
    let link = next.as_ref().map(|cursor| {
        let sep = if path.contains('?') { '&' } else { '?' };
        let cursor: String = url::form_urlencoded::byte_serialize(cursor.as_bytes()).collect();
        format!("<{path}{sep}limit={limit}&cursor={cursor}>; rel=\"next\"")
    });
    let mut response = Json(Page { items, next }).into_response();
    if let Some(v) = link.and_then(|l| HeaderValue::from_str(&l).ok()) {
        response.headers_mut().insert(header::LINK, v);
    }
    response
}
