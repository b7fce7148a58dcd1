//! `/api/v1/users` and `/api/v1/tokens`: users and their personal access tokens.

use axum::{
    Json, Router,
    extract::Path,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{delete, get, put},
};
use serde::Deserialize;
use serde_json::json;

use super::{ApiJson, ApiQuery, ApiResult, Caller, Paging, Problem, paged};
use crate::{auth::TokenRequest, state::AppState};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/whoami", get(whoami))
        .route("/users", get(list).post(create))
        .route("/users/{name}", delete(remove))
        .route("/users/{name}/password", put(password))
        .route("/users/{name}/tokens", get(tokens).post(create_token))
        .route("/tokens/{id}", delete(revoke))
}

#[utoipa::path(
    get,
    path = "/api/v1/whoami",
    tag = "users",
    responses(
        (status = 200, description = "The caller: name, admin, scopes"),
        (status = "4XX", description = "Refused, unknown or invalid", body = Problem),
    )
)]
async fn whoami(caller: Caller) -> Json<serde_json::Value> {
    let id = &caller.identity;
    Json(json!({
        "name": id.name,
        "admin": id.admin,
        "anonymous": id.is_anonymous(),
        "scopes": id.scopes.map(|s| s.names()),
        "namespace": id.namespace,
    }))
}

#[utoipa::path(
    get,
    path = "/api/v1/users",
    tag = "users",
    params(Paging),
    responses(
        (status = 200, description = "A page of users"),
        (status = "4XX", description = "Refused, unknown or invalid", body = Problem),
    )
)]
async fn list(caller: Caller, ApiQuery(paging): ApiQuery<Paging>) -> ApiResult<Response> {
    let limit = paging.limit()?;
    let users = caller
        .auth()
        .list_users(&caller.identity, paging.cursor(), limit + 1)
        .await?;
    Ok(paged(users, limit, "/api/v1/users", |u| u.name.clone()))
}

/// A user to create.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewUser {
    /// The name to log in with.
    name: String,
    /// The password to log in with.
    password: String,
    /// Whether the user administers the registry (default: false).
    #[serde(default)]
    admin: bool,
}

#[utoipa::path(
    post,
    path = "/api/v1/users",
    tag = "users",
    request_body = NewUser,
    responses(
        (status = 201, description = "Created"),
        (status = "4XX", description = "Refused, unknown or invalid", body = Problem),
    )
)]
async fn create(caller: Caller, ApiJson(user): ApiJson<NewUser>) -> ApiResult<Response> {
    caller
        .auth()
        .create_user(&caller.identity, &user.name, &user.password, user.admin)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "name": user.name, "admin": user.admin })),
    )
        .into_response())
}

#[utoipa::path(
    delete,
    path = "/api/v1/users/{name}",
    tag = "users",
    params(("name" = String, Path, description = "Name")),
    responses(
        (status = 204, description = "Deleted, with their tokens"),
        (status = "4XX", description = "Refused, unknown or invalid", body = Problem),
    )
)]
async fn remove(caller: Caller, Path(name): Path<String>) -> ApiResult<StatusCode> {
    caller.auth().delete_user(&caller.identity, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A user's new password.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewPassword {
    /// The new password.
    password: String,
}

#[utoipa::path(
    put,
    path = "/api/v1/users/{name}/password",
    tag = "users",
    params(("name" = String, Path, description = "Name")),
    request_body = NewPassword,
    responses(
        (status = 204, description = "Changed"),
        (status = "4XX", description = "Refused, unknown or invalid", body = Problem),
    )
)]
async fn password(
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<NewPassword>,
) -> ApiResult<StatusCode> {
    caller
        .auth()
        .set_password(&caller.identity, &name, &body.password)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/api/v1/users/{name}/tokens",
    tag = "tokens",
    params(("name" = String, Path, description = "Name")),
    responses(
        (status = 200, description = "Personal access tokens (never their secrets)"),
        (status = "4XX", description = "Refused, unknown or invalid", body = Problem),
    )
)]
async fn tokens(caller: Caller, Path(name): Path<String>) -> ApiResult<Response> {
    let rows = caller
        .auth()
        .list_personal_tokens(&caller.identity, &name)
        .await?;
    Ok(Json(json!({ "items": rows })).into_response())
}

#[utoipa::path(
    post,
    path = "/api/v1/users/{name}/tokens",
    tag = "tokens",
    params(("name" = String, Path, description = "Name")),
    request_body = TokenRequest,
    responses(
        (status = 201, description = "Created: the secret, shown once"),
        (status = "4XX", description = "Refused, unknown or invalid", body = Problem),
    )
)]
async fn create_token(
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(request): ApiJson<TokenRequest>,
) -> ApiResult<Response> {
    let created = caller
        .auth()
        .create_personal_token(&caller.identity, &name, &request)
        .await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

#[utoipa::path(
    delete,
    path = "/api/v1/tokens/{id}",
    tag = "tokens",
    params(("id" = i64, Path, description = "Id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = "4XX", description = "Refused, unknown or invalid", body = Problem),
    )
)]
async fn revoke(caller: Caller, Path(id): Path<i64>) -> ApiResult<StatusCode> {
    caller.auth().revoke_token(&caller.identity, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
