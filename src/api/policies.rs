//! `/api/v1/policies`: cleanup policies (GitLab fields, ECR lifecycle rules, pull-activity
//! keep rules), their dry-run previews and runs.

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post, put},
};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, ApiJson, ApiResult, OptionalJson};
use crate::{
    http::AppState,
    registry::policies::{InvalidRules, Policy},
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/policies", get(list))
        .route("/policies/{name}", put(save).get(show).delete(remove))
        .route("/policies/{name}/runs", post(run))
}

/// A policy refused at save: the field, and for a regex the position of the error.
pub fn invalid(e: InvalidRules) -> ApiError {
    match e {
        InvalidRules::Pattern(p) => {
            ApiError::new(StatusCode::BAD_REQUEST, "INVALID_PATTERN", p.to_string()).with_details(
                json!({ "field": p.field, "position": p.position, "error": p.message }),
            )
        }
        InvalidRules::Other(message) => {
            ApiError::new(StatusCode::BAD_REQUEST, "INVALID_POLICY", message)
        }
    }
}

async fn list(State(app): State<AppState>) -> ApiResult<Response> {
    let items = app.registry.policies().await?;
    Ok(Json(json!({ "items": items })).into_response())
}

async fn show(State(app): State<AppState>, Path(name): Path<String>) -> ApiResult<Response> {
    let policy = app
        .registry
        .policies()
        .await?
        .into_iter()
        .find(|p| p.name == name)
        .ok_or_else(|| ApiError::not_found(format!("no policy named {name}")))?;
    Ok(Json(policy).into_response())
}

async fn save(
    State(app): State<AppState>,
    Path(name): Path<String>,
    ApiJson(policy): ApiJson<Policy>,
) -> ApiResult<Response> {
    let saved = app
        .registry
        .put_policy(&name, policy)
        .await?
        .map_err(invalid)?;
    Ok(Json(saved).into_response())
}

async fn remove(State(app): State<AppState>, Path(name): Path<String>) -> ApiResult<Response> {
    if app.registry.delete_policy(&name).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_found(format!("no policy named {name}")))
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RunRequest {
    dry_run: bool,
}

/// Applies the policy now (or previews it with `dry_run`): what it removed and why.
async fn run(
    State(app): State<AppState>,
    Path(name): Path<String>,
    OptionalJson(request): OptionalJson<RunRequest>,
) -> ApiResult<Response> {
    let dry_run = request.dry_run;
    let (outcome, run) = app
        .registry
        .run_policy(&name, dry_run)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no policy named {name}")))?;
    Ok((
        if dry_run {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        },
        Json(json!({ "run": run.id, "dry_run": dry_run, "removed": outcome.removals })),
    )
        .into_response())
}
