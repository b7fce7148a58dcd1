//! `/api/v1/repositories`: what the registry holds, with usage figures.

use axum::{Router, extract::State, response::Response, routing::get};

use super::{ApiQuery, ApiResult, Caller, Paging, paged};
use crate::http::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/repositories", get(list))
}

/// Repositories in name order, with counts and sizes (administrators: the figures cover
/// every repository, private ones included).
async fn list(
    State(app): State<AppState>,
    caller: Caller,
    ApiQuery(paging): ApiQuery<Paging>,
) -> ApiResult<Response> {
    caller.require_admin()?;
    let limit = paging.limit()?;
    let items = app
        .registry
        .repository_summaries(paging.cursor(), limit + 1)
        .await?;
    Ok(paged(items, limit, "/api/v1/repositories", |r| {
        r.name.clone()
    }))
}
