//! `/api/v1/replication`: replication rules (PUT/GET/DELETE by name, the list), runs
//! (`POST …/rules/{name}/run`, answered 202 with the execution's id), executions with
//! their tasks and logs, and a rule's drift (administrators). Credentials are only named
//! in a rule (an environment variable or a file), never stored or shown.

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, ApiJson, ApiQuery, ApiResult, Caller, Problem, paged};
use crate::{
    registry::{DriftEntry, ExecutionView, ReplicationRuleInput, ReplicationRuleView},
    state::AppState,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/replication/rules", get(list))
        .route(
            "/replication/rules/{name}",
            get(show).put(save).delete(remove),
        )
        .route("/replication/rules/{name}/run", post(run))
        .route("/replication/rules/{name}/drift", get(drift))
        .route("/replication/executions", get(executions))
        .route("/replication/executions/{id}", get(execution))
}

/// Every replication rule, by name.
#[utoipa::path(
    get,
    path = "/api/v1/replication/rules",
    tag = "replication",
    responses(
        (status = 200, description = "`{\"items\": [rule]}`, by name"),
        (status = "4XX", description = "Refused", body = Problem),
    )
)]
async fn list(State(app): State<AppState>, caller: Caller) -> ApiResult<Response> {
    caller.require_admin()?;
    let items = app.registry.replication_rules().await?;
    Ok(Json(json!({ "items": items })).into_response())
}

/// One replication rule.
#[utoipa::path(
    get,
    path = "/api/v1/replication/rules/{name}",
    tag = "replication",
    params(("name" = String, Path, description = "Rule name")),
    responses(
        (status = 200, description = "The rule", body = ReplicationRuleView),
        (status = "4XX", description = "Refused or unknown", body = Problem),
    )
)]
async fn show(
    State(app): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    caller.require_admin()?;
    match app.registry.replication_rule(&name).await? {
        Some(rule) => Ok(Json(rule).into_response()),
        None => Err(no_rule(&name)),
    }
}

/// Creates or replaces a replication rule. Every field is checked first (direction, remote
/// URL, glob, tag regex, trigger and cron schedule): one at fault is a 400 naming it, and
/// nothing changes.
#[utoipa::path(
    put,
    path = "/api/v1/replication/rules/{name}",
    tag = "replication",
    params(("name" = String, Path, description = "Rule name")),
    request_body = ReplicationRuleInput,
    responses(
        (status = 201, description = "Created", body = ReplicationRuleView),
        (status = 200, description = "Replaced", body = ReplicationRuleView),
        (status = 400, description = "A field at fault, named", body = Problem),
        (status = "4XX", description = "Refused", body = Problem),
    )
)]
async fn save(
    State(app): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> ApiResult<Response> {
    caller.require_admin()?;
    let input: ReplicationRuleInput = serde_json::from_value(body)
        .map_err(|e| ApiError::bad_request(format!("invalid body: {e}")))?;
    let (created, rule) = app
        .registry
        .put_replication_rule(&name, input, &caller.identity.name)
        .await?;
    audit(&caller, "replication_rule.save", &name).await;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(rule)).into_response())
}

/// Deletes a replication rule (its executions stay as history).
#[utoipa::path(
    delete,
    path = "/api/v1/replication/rules/{name}",
    tag = "replication",
    params(("name" = String, Path, description = "Rule name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = "4XX", description = "Refused or unknown", body = Problem),
    )
)]
async fn remove(
    State(app): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    caller.require_admin()?;
    if !app.registry.delete_replication_rule(&name).await? {
        return Err(no_rule(&name));
    }
    audit(&caller, "replication_rule.delete", &name).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Queues a run of the rule as a job (any replica runs it); 202 with the execution's id.
#[utoipa::path(
    post,
    path = "/api/v1/replication/rules/{name}/run",
    tag = "replication",
    params(("name" = String, Path, description = "Rule name")),
    responses(
        (status = 202, description = "`{\"id\": execution id, \"state\": \"queued\"}`"),
        (status = "4XX", description = "Refused or unknown", body = Problem),
    )
)]
async fn run(
    State(app): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    caller.require_admin()?;
    let id = match app.registry.run_replication_rule(&name, "manual").await {
        Err(crate::error::Error::NotFound) => return Err(no_rule(&name)),
        other => other?,
    };
    let location = format!("/api/v1/replication/executions/{id}");
    Ok((
        StatusCode::ACCEPTED,
        [(axum::http::header::LOCATION, location)],
        Json(json!({ "id": id, "state": "queued" })),
    )
        .into_response())
}

/// What differs between the rule's source and destination: source tags missing on the
/// destination or at another digest there, and destination tags the source lacks.
#[utoipa::path(
    get,
    path = "/api/v1/replication/rules/{name}/drift",
    tag = "replication",
    params(("name" = String, Path, description = "Rule name")),
    responses(
        (status = 200, description = "`{\"items\": [entry]}`; empty when in step", body = [DriftEntry]),
        (status = 502, description = "The remote failed, named", body = Problem),
        (status = "4XX", description = "Refused or unknown", body = Problem),
    )
)]
async fn drift(
    State(app): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    caller.require_admin()?;
    let items = match app.registry.replication_drift(&name).await {
        Err(crate::error::Error::NotFound) => return Err(no_rule(&name)),
        other => other?,
    };
    Ok(Json(json!({ "items": items })).into_response())
}

/// `?rule=&limit=&cursor=` of the executions listing.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ExecutionQuery {
    /// Only the executions of this rule.
    rule: Option<String>,
    /// Items per page (default 100, at most 1000).
    limit: Option<u32>,
    /// The `next` of the previous page.
    cursor: Option<String>,
}

/// Executions, newest first (of one rule with `?rule=`); the cursor is the id of the last
/// one of the page.
#[utoipa::path(
    get,
    path = "/api/v1/replication/executions",
    tag = "replication",
    params(ExecutionQuery),
    responses(
        (status = 200, description = "A page of executions, newest first"),
        (status = "4XX", description = "Refused or invalid", body = Problem),
    )
)]
async fn executions(
    State(app): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ExecutionQuery>,
) -> ApiResult<Response> {
    caller.require_admin()?;
    let paging = super::Paging {
        limit: query.limit,
        cursor: query.cursor.clone(),
    };
    let limit = paging.limit()?;
    let before = match paging.cursor() {
        "" => i64::MAX,
        c => c
            .parse::<i64>()
            .map_err(|_| ApiError::bad_request("cursor: not a cursor this listing gave"))?,
    };
    let rows: Vec<ExecutionView> = app
        .registry
        .replication_executions(query.rule.as_deref(), before, limit + 1)
        .await?;
    let path = match &query.rule {
        Some(rule) => format!(
            "/api/v1/replication/executions?rule={}",
            percent_encoding::utf8_percent_encode(rule, percent_encoding::NON_ALPHANUMERIC)
        ),
        None => "/api/v1/replication/executions".into(),
    };
    Ok(paged(rows, limit, &path, |e| e.id.to_string()))
}

/// One execution: its state, counters (bytes moved, blobs copied, mounted and skipped,
/// manifests copied and skipped, failures), tasks and log.
#[utoipa::path(
    get,
    path = "/api/v1/replication/executions/{id}",
    tag = "replication",
    params(("id" = i64, Path, description = "Execution id")),
    responses(
        (status = 200, description = "The execution", body = ExecutionView),
        (status = "4XX", description = "Refused or unknown", body = Problem),
    )
)]
async fn execution(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    caller.require_admin()?;
    let id: i64 = id
        .parse()
        .map_err(|_| super::bad_parameter("id", "not an execution id"))?;
    match app.registry.replication_execution(id).await? {
        Some(e) => Ok(Json(e).into_response()),
        None => Err(ApiError::not_found(format!(
            "no replication execution {id}"
        ))),
    }
}

fn no_rule(name: &str) -> ApiError {
    ApiError::not_found(format!("no replication rule named {name}"))
}

async fn audit(caller: &Caller, action: &str, name: &str) {
    caller
        .auth()
        .audit(&caller.identity.name, None, action, Some(name), None)
        .await;
}
