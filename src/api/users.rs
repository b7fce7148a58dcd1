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

use super::{ApiJson, ApiQuery, ApiResult, Caller, Paging, paged};
use crate::{auth::TokenRequest, http::AppState};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/whoami", get(whoami))
        .route("/users", get(list).post(create))
        .route("/users/{name}", delete(remove))
        .route("/users/{name}/password", put(password))
        .route("/users/{name}/tokens", get(tokens).post(create_token))
        .route("/tokens/{id}", delete(revoke))
}

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

async fn list(caller: Caller, ApiQuery(paging): ApiQuery<Paging>) -> ApiResult<Response> {
    let limit = paging.limit()?;
    let users = caller
        .auth()
        .list_users(&caller.identity, paging.cursor(), limit + 1)
        .await?;
    Ok(paged(users, limit, "/api/v1/users", |u| u.name.clone()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    name: String,
    password: String,
    #[serde(default)]
    admin: bool,
}

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

async fn remove(caller: Caller, Path(name): Path<String>) -> ApiResult<StatusCode> {
    caller.auth().delete_user(&caller.identity, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPassword {
    password: String,
}

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

async fn tokens(caller: Caller, Path(name): Path<String>) -> ApiResult<Response> {
    let rows = caller
        .auth()
        .list_personal_tokens(&caller.identity, &name)
        .await?;
    Ok(Json(json!({ "items": rows })).into_response())
}

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

async fn revoke(caller: Caller, Path(id): Path<i64>) -> ApiResult<StatusCode> {
    caller.auth().revoke_token(&caller.identity, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
