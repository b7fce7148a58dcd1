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

use super::{ApiError, ApiJson, ApiResult, Caller, OptionalJson, Problem};
use crate::{
    auth::Role,
    registry::policies::{Policy, RulesError, SavedPolicy},
    state::AppState,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/policies", get(list))
        .route("/policies/{name}", put(save).get(show).delete(remove))
        .route("/policies/{name}/runs", post(run))
}

/// A policy refused at save: the field, and for a regex the position of the error (a
/// registry failure keeps its own status).
pub fn invalid(e: RulesError) -> ApiError {
    match e {
        RulesError::Pattern(p) => {
            ApiError::new(StatusCode::BAD_REQUEST, "INVALID_PATTERN", p.to_string()).with_details(
                json!({ "field": p.field, "position": p.position, "error": p.message }),
            )
        }
        RulesError::Invalid(message) => {
            ApiError::new(StatusCode::BAD_REQUEST, "INVALID_POLICY", message)
        }
        RulesError::Registry(e) => e.into(),
    }
}

/// Who may see and change `policy`: maintainers of its one repository; a pattern may span
/// namespaces, so it takes an administrator.
async fn require_manager(caller: &Caller, policy: &Policy) -> ApiResult<()> {
    match (&policy.repository, &policy.repositories) {
        (Some(repository), None) => caller.require(repository, Role::Maintainer).await,
        _ => caller.require_admin(),
    }
}

/// The policy saved as `name`, if the caller may manage it.
async fn managed(app: &AppState, caller: &Caller, name: &str) -> ApiResult<SavedPolicy> {
    let policy = app
        .registry
        .policies()
        .await?
        .into_iter()
        .find(|p| p.name == name)
        .ok_or_else(|| ApiError::not_found(format!("no policy named {name}")))?;
    require_manager(caller, &policy.policy).await?;
    Ok(policy)
}

/// Every policy (administrators).
#[utoipa::path(
    get,
    path = "/api/v1/policies",
    tag = "policies",
    responses(
        (status = 200, description = "Every cleanup policy"),
        (status = "4XX", description = "Refused, unknown or invalid", body = Problem),
    )
)]
async fn list(State(app): State<AppState>, caller: Caller) -> ApiResult<Response> {
    caller.require_admin()?;
    let items = app.registry.policies().await?;
    Ok(Json(json!({ "items": items })).into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/policies/{name}",
    tag = "policies",
    params(("name" = String, Path, description = "Name")),
    responses(
        (status = 200, description = "The policy"),
        (status = "4XX", description = "Refused, unknown or invalid", body = Problem),
    )
)]
async fn show(
    State(app): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let policy = managed(&app, &caller, &name).await?;
    Ok(Json(policy).into_response())
}

#[utoipa::path(
    put,
    path = "/api/v1/policies/{name}",
    tag = "policies",
    params(("name" = String, Path, description = "Name")),
    request_body = Policy,
    responses(
        (status = 200, description = "The saved policy"),
        (status = "4XX", description = "Refused, unknown or invalid", body = Problem),
    )
)]
async fn save(
    State(app): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(policy): ApiJson<Policy>,
) -> ApiResult<Response> {
    // Replacing a policy takes the right to manage the old one and the new one.
    if app
        .registry
        .policies()
        .await?
        .iter()
        .any(|p| p.name == name)
    {
        managed(&app, &caller, &name).await?;
    }
    require_manager(&caller, &policy).await?;
    let saved = app
        .registry
        .put_policy(&name, policy)
        .await
        .map_err(invalid)?;
    Ok(Json(saved).into_response())
}

#[utoipa::path(
    delete,
    path = "/api/v1/policies/{name}",
    tag = "policies",
    params(("name" = String, Path, description = "Name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = "4XX", description = "Refused, unknown or invalid", body = Problem),
    )
)]
async fn remove(
    State(app): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    managed(&app, &caller, &name).await?;
    if app.registry.delete_policy(&name).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_found(format!("no policy named {name}")))
    }
}

/// How to apply a policy now (the body may be left out).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
struct RunRequest {
    /// Report what would be removed, remove nothing.
    dry_run: bool,
}

/// Applies the policy now (or previews it with `dry_run`): what it removed and why.
#[utoipa::path(
    post,
    path = "/api/v1/policies/{name}/runs",
    tag = "policies",
    params(("name" = String, Path, description = "Name")),
    request_body = RunRequest,
    responses(
        (status = 200, description = "Dry run: what it would remove, and why"),
        (status = 201, description = "Run: what it removed, and why"),
        (status = "4XX", description = "Refused, unknown or invalid", body = Problem),
    )
)]
async fn run(
    State(app): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    OptionalJson(request): OptionalJson<RunRequest>,
) -> ApiResult<Response> {
    managed(&app, &caller, &name).await?;
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
