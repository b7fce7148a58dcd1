//! `/api/v1/repositories`: what the registry holds, with usage figures.

use axum::{Router, extract::State, response::Response, routing::get};

use super::{ApiQuery, ApiResult, Caller, Page, Paging, Problem, paged};
use crate::{http::AppState, meta::RepositorySummary};

pub fn routes() -> Router<AppState> {
    Router::new().route("/repositories", get(list))
}

/// Repositories in name order, with counts and sizes (administrators: the figures cover
/// every repository, private ones included).
#[utoipa::path(
    get,
    path = "/api/v1/repositories",
    tag = "repositories",
    params(Paging),
    responses(
        (status = 200, description = "A page of repositories; `next` and `Link` lead on", body = Page<RepositorySummary>),
        (status = 400, description = "Bad paging parameters", body = Problem),
    )
)]
pub(super) async fn list(
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
