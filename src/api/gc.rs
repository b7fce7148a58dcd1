//! `/api/v1/gc`: garbage collection runs (list, request, dry run) and reclaimable estimates.

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, ApiQuery, ApiResult, Caller, OptionalJson, Paging, Problem, paged};
use crate::{registry::QueuedGcOptions, state::AppState};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/gc/runs", get(list).post(create))
        .route("/gc/runs/{id}", get(show))
        .route("/gc/estimate", get(estimate))
}

/// Recorded runs, newest first; the cursor is the id of the last run of the page.
#[utoipa::path(
    get,
    path = "/api/v1/gc/runs",
    tag = "gc",
    params(Paging),
    responses(
        (status = 200, description = "A page of runs, newest first"),
        (status = "4XX", description = "Refused, unknown or invalid", body = Problem),
    )
)]
async fn list(
    State(app): State<AppState>,
    caller: Caller,
    ApiQuery(paging): ApiQuery<Paging>,
) -> ApiResult<Response> {
    caller.require_admin()?;
    let limit = paging.limit()?;
    let before = match paging.cursor() {
        "" => None,
        c => Some(
            c.parse::<i64>()
                .map_err(|_| ApiError::bad_request("cursor: not a cursor this listing gave"))?,
        ),
    };
    // Listings are summaries; a run's own resource has its report.
    let runs = app.registry.gc_runs(before, i64::from(limit) + 1).await?;
    Ok(paged(runs, limit, "/api/v1/gc/runs", |r| r.id.to_string()))
}

/// A collection to run: every field is optional.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub(super) struct NewRun {
    /// Report what would be deleted, delete nothing.
    dry_run: bool,
    /// Run in this request and answer with the finished run (else queue it: 202).
    wait: bool,
    /// Overrides `gc.grace_secs` for this run (waited for or queued): after pushes have
    /// stopped, 0 collects everything unreferenced at once.
    grace_secs: Option<u64>,
    /// Overrides `gc.untagged` for this run (waited for or queued): also delete manifests no
    /// tag, index or subject holds.
    remove_untagged: Option<bool>,
}

/// `?grace_secs=` of the estimate.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct EstimateQuery {
    /// Count only what is older than this many seconds (default: `gc.grace_secs`); 0 shows
    /// what a run with `grace_secs: 0` would free now.
    grace_secs: Option<u64>,
}

/// A grace period given in a request, checked: the collector counts in signed seconds, so a
/// larger value would wrap around and make everything look old.
fn checked_grace(grace_secs: u64) -> ApiResult<u64> {
    if i64::try_from(grace_secs).is_err() {
        return Err(ApiError::bad_request(format!(
            "grace_secs: {grace_secs} is too large (at most {})",
            i64::MAX
        )));
    }
    Ok(grace_secs)
}

#[utoipa::path(
    post,
    path = "/api/v1/gc/runs",
    tag = "gc",
    request_body = NewRun,
    responses(
        (status = 201, description = "Run in the request (wait): the finished run"),
        (status = 202, description = "Queued"),
        (status = "4XX", description = "Refused, unknown or invalid", body = Problem),
    )
)]
async fn create(
    State(app): State<AppState>,
    caller: Caller,
    OptionalJson(request): OptionalJson<NewRun>,
) -> ApiResult<Response> {
    caller.require_admin()?;
    let grace_secs = request.grace_secs.map(checked_grace).transpose()?;
    if request.wait {
        let mut options = app.registry.gc_options(request.dry_run);
        if let Some(grace) = grace_secs {
            options.grace_secs = grace;
        }
        if let Some(untagged) = request.remove_untagged {
            options.untagged = untagged;
        }
        let run = app.registry.run_gc("api", options, &|_, _| {}).await?;
        return Ok((StatusCode::CREATED, Json(run)).into_response());
    }
    // Stored with the run: the worker that runs it, on any replica, applies them.
    let asked = QueuedGcOptions {
        grace_secs: grace_secs.map(|g| i64::try_from(g).unwrap_or(i64::MAX)),
        remove_untagged: request.remove_untagged,
    };
    let run = app.registry.queue_gc("api", request.dry_run, asked).await?;
    Ok((StatusCode::ACCEPTED, Json(run)).into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/gc/runs/{id}",
    tag = "gc",
    params(("id" = i64, Path, description = "Id")),
    responses(
        (status = 200, description = "The run: counts, bytes, errors and its report"),
        (status = "4XX", description = "Refused, unknown or invalid", body = Problem),
    )
)]
async fn show(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    caller.require_admin()?;
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::not_found("no such garbage collection run"))?;
    let run = app
        .registry
        .gc_run(id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such garbage collection run"))?;
    Ok(Json(run).into_response())
}

/// Reclaimable bytes now: per repository (links no manifest needs) and in total.
#[utoipa::path(
    get,
    path = "/api/v1/gc/estimate",
    tag = "gc",
    params(EstimateQuery),
    responses(
        (status = 200, description = "Reclaimable blobs and bytes, per repository and in total"),
        (status = "4XX", description = "Refused, unknown or invalid", body = Problem),
    )
)]
async fn estimate(
    State(app): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<EstimateQuery>,
) -> ApiResult<Response> {
    caller.require_admin()?;
    let grace_secs = match query.grace_secs {
        Some(grace) => checked_grace(grace)?,
        None => app.registry.gc_config().grace_secs,
    };
    let (repositories, blobs, bytes) = app.registry.gc_estimate_with_grace(grace_secs).await?;
    Ok(Json(json!({
        "grace_secs": grace_secs,
        "reclaimable_blobs": blobs,
        "reclaimable_bytes": bytes,
        "repositories": repositories,
    }))
    .into_response())
}
