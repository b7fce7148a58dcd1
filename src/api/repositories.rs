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
    meta::repositories::RepositorySummary,
    oci::RepoName,
    registry::{Override, TagRules, policies::PolicyRules},
    state::AppState,
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
        r.name.to_string()
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

/// Routes `/repositories/{name}[/-/{sub-resource}]` to its operation.
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
        (None, Method::DELETE) => delete_repository(&app, &caller, &repo).await,
        (None, Method::PATCH) => {
            let ApiJson(body) = ApiJson::from_request(request, &app).await?;
            set_visibility(&caller, &repo, &body).await
        }
        (Some("settings"), Method::GET) => get_settings(&app, &caller, &repo).await,
        (Some("settings"), Method::PUT) => {
            let ApiJson(rules) = ApiJson::from_request(request, &app).await?;
            put_settings(&app, &caller, &repo, rules).await
        }
        (Some("tags"), Method::DELETE) => {
            let (mut parts, _) = request.into_parts();
            let ApiQuery(filters) = ApiQuery::from_request_parts(&mut parts, &app).await?;
            delete_tags(&app, &caller, &repo, filters).await
        }
        (Some("images"), Method::GET) => {
            let ApiQuery(query) = query_of(request, &app).await?;
            super::images::list(&app, &caller, &repo, query).await
        }
        (Some(sub), method) if sub.starts_with("images/") => {
            super::images::one(&app, &caller, &repo, &sub["images/".len()..], method).await
        }
        (Some("tags"), Method::GET) => {
            let ApiQuery(query) = query_of(request, &app).await?;
            super::tags::list(&app, &caller, &repo, query).await
        }
        (Some("tags"), Method::POST) => super::tags::retag(&app, &caller, &repo, request).await,
        (None | Some("settings") | Some("tags") | Some("images"), _) => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            "method not allowed on this resource",
        )),
        (Some(other), _) => Err(ApiError::not_found(format!(
            "no resource {other:?} under a repository"
        ))),
    }
}

/// The query of a sub-resource's request, refused as a JSON problem naming what is wrong.
async fn query_of<T: serde::de::DeserializeOwned>(
    request: Request<Body>,
    app: &AppState,
) -> ApiResult<ApiQuery<T>> {
    let (mut parts, _) = request.into_parts();
    ApiQuery::from_request_parts(&mut parts, app).await
}

/// Deletes the repository with its manifests, tags, links and sessions (maintainers: its
/// protected tags go too); the blobs only it referenced are collected.
#[utoipa::path(
    delete,
    path = "/api/v1/repositories/{name}",
    tag = "repositories",
    params(("name" = String, Path, description = "Repository name (may contain slashes)")),
    responses(
        (status = 204, description = "Deleted"),
        (status = "4XX", description = "Refused or unknown", body = Problem),
    )
)]
async fn delete_repository(
    app: &AppState,
    caller: &Caller,
    repo: &RepoName,
) -> ApiResult<Response> {
    caller.require(repo.as_str(), Role::Maintainer).await?;
    app.registry
        .delete_repository(repo, Override::Allowed)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Sets the repository's own visibility (`{"visibility": "public|internal|private"}`).
#[utoipa::path(
    patch,
    path = "/api/v1/repositories/{name}",
    tag = "repositories",
    params(("name" = String, Path, description = "Repository name")),
    request_body(content = Object, description = r#"{"visibility": "public"}"#),
    responses(
        (status = 204, description = "Changed"),
        (status = "4XX", description = "Refused or invalid", body = Problem),
    )
)]
async fn set_visibility(
    caller: &Caller,
    repo: &RepoName,
    body: &super::namespaces::VisibilityBody,
) -> ApiResult<Response> {
    super::namespaces::set_repository_visibility(caller, repo, body).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The repository's tag rules: mutability and protected patterns.
#[utoipa::path(
    get,
    path = "/api/v1/repositories/{name}/-/settings",
    tag = "repositories",
    params(("name" = String, Path, description = "Repository name")),
    responses(
        (status = 200, description = "The tag rules"),
        (status = "4XX", description = "Refused or unknown", body = Problem),
    )
)]
async fn get_settings(app: &AppState, caller: &Caller, repo: &RepoName) -> ApiResult<Response> {
    caller.require(repo.as_str(), Role::Reporter).await?;
    Ok(Json(app.registry.tag_rules(repo).await?).into_response())
}

/// Replaces the tag rules (maintainers); a bad pattern is refused with its position.
#[utoipa::path(
    put,
    path = "/api/v1/repositories/{name}/-/settings",
    tag = "repositories",
    params(("name" = String, Path, description = "Repository name")),
    request_body(content = Object, description = r#"{"tag_mutability": "immutable_with_exclusion", "mutable_patterns": ["latest"], "protected_patterns": ["v.*"]}"#),
    responses(
        (status = 200, description = "The saved rules"),
        (status = "4XX", description = "Refused or invalid", body = Problem),
    )
)]
async fn put_settings(
    app: &AppState,
    caller: &Caller,
    repo: &RepoName,
    rules: TagRules,
) -> ApiResult<Response> {
    caller.require(repo.as_str(), Role::Maintainer).await?;
    app.registry
        .put_tag_rules(repo, &rules)
        .await
        .map_err(invalid)?;
    Ok(Json(rules).into_response())
}

/// Deletes tags in bulk with GitLab's filters (maintainers); `dry_run` only lists them.
#[utoipa::path(
    delete,
    path = "/api/v1/repositories/{name}/-/tags",
    tag = "repositories",
    params(
        ("name" = String, Path, description = "Repository name"),
        ("name_regex_delete" = Option<String>, Query, description = "Tags to delete (whole-tag regex)"),
        ("name_regex_keep" = Option<String>, Query, description = "Tags never deleted; wins over everything"),
        ("keep_n" = Option<usize>, Query, description = "Most recent tags kept"),
        ("older_than" = Option<String>, Query, description = "Only tags pushed longer ago, e.g. 7d"),
        ("dry_run" = Option<bool>, Query, description = "List what would be deleted"),
    ),
    responses(
        (status = 200, description = "What was (or would be) removed, and why"),
        (status = "4XX", description = "Refused or invalid", body = Problem),
    )
)]
async fn delete_tags(
    app: &AppState,
    caller: &Caller,
    repo: &RepoName,
    f: TagFilters,
) -> ApiResult<Response> {
    caller.require(repo.as_str(), Role::Maintainer).await?;
    let rules = PolicyRules {
        name_regex: f.name_regex_delete,
        name_regex_keep: f.name_regex_keep,
        keep_n: f.keep_n,
        older_than: f.older_than,
        ..PolicyRules::default()
    };
    let removed = app
        .registry
        .delete_tags_matching(repo, &rules, f.dry_run)
        .await
        .map_err(invalid)?;
    Ok(Json(json!({ "dry_run": f.dry_run, "removed": removed })).into_response())
}
