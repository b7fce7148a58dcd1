//! `/api/v1/namespaces` (visibility, members, deploy tokens) and the audit log.

use axum::{
    Json, Router,
    extract::Path,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post, put},
};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, ApiJson, ApiQuery, ApiResult, Caller, Paging, Problem, paged};
use crate::{
    auth::{Role, TokenRequest, Visibility},
    state::AppState,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/namespaces", post(create))
        .route("/namespaces/{ns}/visibility", put(visibility))
        .route("/namespaces/{ns}/members", get(members))
        .route(
            "/namespaces/{ns}/members/{user}",
            put(set_member).delete(remove_member),
        )
        .route(
            "/namespaces/{ns}/deploy-tokens",
            get(deploy_tokens).post(create_deploy_token),
        )
        .route("/audit", get(audit))
}

fn parse_visibility(s: &str) -> ApiResult<Visibility> {
    Visibility::parse(s).ok_or_else(|| {
        ApiError::bad_request(format!(
            "unknown visibility {s:?}: public, internal or private"
        ))
    })
}

/// A namespace to create.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewNamespace {
    /// The first component of the repository names it holds (`myorg`).
    name: String,
    /// `public`, `internal` or `private` (default: private).
    visibility: Option<String>,
    /// A user made its owner.
    owner: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/v1/namespaces",
    tag = "namespaces",
    request_body = NewNamespace,
    responses(
        (status = 201, description = "Created"),
        (status = "4XX", description = "Refused, unknown or invalid", body = Problem),
    )
)]
async fn create(caller: Caller, ApiJson(ns): ApiJson<NewNamespace>) -> ApiResult<Response> {
    let visibility = ns.visibility.as_deref().map(parse_visibility).transpose()?;
    caller
        .auth()
        .create_namespace(&caller.identity, &ns.name, visibility, ns.owner.as_deref())
        .await?;
    Ok((StatusCode::CREATED, Json(json!({ "name": ns.name }))).into_response())
}

/// A namespace's new visibility.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct VisibilityBody {
    /// `public`, `internal` or `private`.
    visibility: String,
}

#[utoipa::path(
    put,
    path = "/api/v1/namespaces/{ns}/visibility",
    tag = "namespaces",
    params(("ns" = String, Path, description = "Namespace (first component of repository names)")),
    request_body = VisibilityBody,
    responses(
        (status = 204, description = "Changed"),
        (status = "4XX", description = "Refused, unknown or invalid", body = Problem),
    )
)]
async fn visibility(
    caller: Caller,
    Path(ns): Path<String>,
    ApiJson(body): ApiJson<VisibilityBody>,
) -> ApiResult<StatusCode> {
    let visibility = parse_visibility(&body.visibility)?;
    caller
        .auth()
        .set_namespace_visibility(&caller.identity, &ns, visibility)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/api/v1/namespaces/{ns}/members",
    tag = "namespaces",
    params(("ns" = String, Path, description = "Namespace (first component of repository names)")),
    responses(
        (status = 200, description = "Members and their roles"),
        (status = "4XX", description = "Refused, unknown or invalid", body = Problem),
    )
)]
async fn members(caller: Caller, Path(ns): Path<String>) -> ApiResult<Response> {
    let rows = caller.auth().list_members(&caller.identity, &ns).await?;
    let items: Vec<_> = rows
        .into_iter()
        .map(|m| {
            let role = Role::from_level(m.role)
                .map(|r| format!("{r:?}").to_lowercase())
                .unwrap_or_default();
            json!({ "user": m.user, "role": role })
        })
        .collect();
    Ok(Json(json!({ "items": items })).into_response())
}

/// A member's role in a namespace.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RoleBody {
    /// `guest`, `reporter`, `developer`, `maintainer` or `owner`.
    role: String,
}

#[utoipa::path(
    put,
    path = "/api/v1/namespaces/{ns}/members/{user}",
    tag = "namespaces",
    params(("ns" = String, Path, description = "Namespace (first component of repository names)"), ("user" = String, Path, description = "User name")),
    request_body = RoleBody,
    responses(
        (status = 204, description = "Set"),
        (status = "4XX", description = "Refused, unknown or invalid", body = Problem),
    )
)]
async fn set_member(
    caller: Caller,
    Path((ns, user)): Path<(String, String)>,
    ApiJson(body): ApiJson<RoleBody>,
) -> ApiResult<StatusCode> {
    let role = Role::parse(&body.role).ok_or_else(|| {
        ApiError::bad_request(format!(
            "unknown role {:?}: guest, reporter, developer, maintainer or owner",
            body.role
        ))
    })?;
    caller
        .auth()
        .set_member(&caller.identity, &ns, &user, role)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    delete,
    path = "/api/v1/namespaces/{ns}/members/{user}",
    tag = "namespaces",
    params(("ns" = String, Path, description = "Namespace (first component of repository names)"), ("user" = String, Path, description = "User name")),
    responses(
        (status = 204, description = "Removed"),
        (status = "4XX", description = "Refused, unknown or invalid", body = Problem),
    )
)]
async fn remove_member(
    caller: Caller,
    Path((ns, user)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    caller
        .auth()
        .remove_member(&caller.identity, &ns, &user)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/api/v1/namespaces/{ns}/deploy-tokens",
    tag = "tokens",
    params(("ns" = String, Path, description = "Namespace (first component of repository names)")),
    responses(
        (status = 200, description = "Deploy tokens (never their secrets)"),
        (status = "4XX", description = "Refused, unknown or invalid", body = Problem),
    )
)]
async fn deploy_tokens(caller: Caller, Path(ns): Path<String>) -> ApiResult<Response> {
    let rows = caller
        .auth()
        .list_deploy_tokens(&caller.identity, &ns)
        .await?;
    Ok(Json(json!({ "items": rows })).into_response())
}

#[utoipa::path(
    post,
    path = "/api/v1/namespaces/{ns}/deploy-tokens",
    tag = "tokens",
    params(("ns" = String, Path, description = "Namespace (first component of repository names)")),
    request_body = TokenRequest,
    responses(
        (status = 201, description = "Created: its login name and secret, shown once"),
        (status = "4XX", description = "Refused, unknown or invalid", body = Problem),
    )
)]
async fn create_deploy_token(
    caller: Caller,
    Path(ns): Path<String>,
    ApiJson(request): ApiJson<TokenRequest>,
) -> ApiResult<Response> {
    let created = caller
        .auth()
        .create_deploy_token(&caller.identity, &ns, &request)
        .await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// The audit log, newest first (administrators).
#[utoipa::path(
    get,
    path = "/api/v1/audit",
    tag = "audit",
    params(Paging),
    responses(
        (status = 200, description = "A page of the audit log, newest first"),
        (status = "4XX", description = "Refused, unknown or invalid", body = Problem),
    )
)]
async fn audit(caller: Caller, ApiQuery(paging): ApiQuery<Paging>) -> ApiResult<Response> {
    let limit = paging.limit()?;
    let before = match paging.cursor() {
        "" => 0,
        c => c
            .parse::<i64>()
            .map_err(|_| ApiError::bad_request("cursor: not one this listing gave"))?,
    };
    let rows = caller
        .auth()
        .audit_entries(&caller.identity, before, limit + 1)
        .await?;
    Ok(paged(rows, limit, "/api/v1/audit", |r| r.id.to_string()))
}
