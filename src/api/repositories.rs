//! `/api/v1/repositories`: what the registry holds, with usage figures; deleting a
//! repository; its tag rules (`/-/settings`); bulk tag deletion (`/-/tags`).
//!
//! Repository names contain slashes, so everything after `/repositories/` is one path; `/-/`
//! separates the name from a sub-resource (`-` cannot start a name component).

use axum::{
    Json, Router,
    body::Body,
    extract::{FromRequest, FromRequestParts, Path, Request, State},
    http::{Method, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
};
use serde::Deserialize;
use serde_json::json;

use super::{
    ApiError, ApiJson, ApiQuery, ApiResult, Caller, Page, Paging, Problem, paged, policies::invalid,
};
use crate::{
    auth::Role,
    http::AppState,
    meta::RepositorySummary,
    oci::RepoName,
    registry::{Override, TagRules, policies::PolicyRules},
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/repositories", get(list))
        .route("/repositories/{*path}", axum::routing::any(one))
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

/// GitLab's bulk tag deletion filters.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TagFilters {
    name_regex_delete: Option<String>,
    name_regex_keep: Option<String>,
    keep_n: Option<usize>,
    older_than: Option<String>,
    #[serde(default)]
    dry_run: bool,
}

async fn one(
    State(app): State<AppState>,
    caller: Caller,
    Path(path): Path<String>,
    request: Request<Body>,
) -> ApiResult<Response> {
    let (name, sub) = match path.split_once("/-/") {
        Some((name, sub)) => (name, Some(sub)),
        None => (path.as_str(), None),
    };
    let repo: RepoName = name
        .parse()
        .map_err(|e| ApiError::bad_request(format!("repository name: {e}")))?;
    let method = request.method().clone();
    match (sub, method) {
        (None, Method::DELETE) => {
            // Deleting the repository takes its protected tags too: maintainers only.
            caller.require(repo.as_str(), Role::Maintainer).await?;
            app.registry
                .delete_repository(&repo, Override::Allowed)
                .await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        (None, Method::PATCH) => {
            let ApiJson(body) =
                ApiJson::<super::namespaces::VisibilityBody>::from_request(request, &app).await?;
            super::namespaces::set_repository_visibility(&caller, &repo, &body).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        (Some("settings"), Method::GET) => {
            caller.require(repo.as_str(), Role::Reporter).await?;
            Ok(Json(app.registry.tag_rules(&repo).await?).into_response())
        }
        (Some("settings"), Method::PUT) => {
            caller.require(repo.as_str(), Role::Maintainer).await?;
            let ApiJson(rules) = ApiJson::<TagRules>::from_request(request, &app).await?;
            app.registry
                .put_tag_rules(&repo, &rules)
                .await?
                .map_err(|p| invalid(p.into()))?;
            Ok(Json(rules).into_response())
        }
        (Some("tags"), Method::DELETE) => {
            caller.require(repo.as_str(), Role::Maintainer).await?;
            let (mut parts, _) = request.into_parts();
            let ApiQuery(f) = ApiQuery::<TagFilters>::from_request_parts(&mut parts, &app).await?;
            let rules = PolicyRules {
                name_regex: f.name_regex_delete,
                name_regex_keep: f.name_regex_keep,
                keep_n: f.keep_n,
                older_than: f.older_than,
                ..PolicyRules::default()
            };
            let removed = app
                .registry
                .delete_tags_matching(&repo, &rules, f.dry_run)
                .await?
                .map_err(invalid)?;
            Ok(Json(json!({ "dry_run": f.dry_run, "removed": removed })).into_response())
        }
        (None | Some("settings") | Some("tags"), _) => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            "method not allowed on this resource",
        )),
        (Some(other), _) => Err(ApiError::not_found(format!(
            "no resource {other:?} under a repository"
        ))),
    }
}
