//! `/api/v1/repositories/{name}/-/tags`: the tags of a repository sorted by name, push or
//! pull, and retagging (within the repository or from another one the caller may read).
//! Deleting tags in bulk is in `repositories`.

use axum::{
    Json,
    body::Body,
    extract::{FromRequest, Request},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::Deserialize;

use super::{
    ApiError, ApiJson, ApiResult, Caller, Page, Paging, Problem,
    images::{bad_value, grant_needing, param},
    paged,
};
use crate::{
    auth::Role,
    oci::{Digest, RepoName, Tag},
    registry::{Override, TagCursor, TagSort, TagSummary},
    state::AppState,
};

/// The tag listing's query; any other parameter is refused, naming it.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct TagQuery {
    /// `name` (default, byte order), `pushed` (most recent first) or `pulled` (most recent
    /// first, never pulled last).
    sort: Option<String>,
    /// Items per page (default 100, at most 1000).
    limit: Option<u32>,
    /// The `next` of the previous page (valid with the same sort).
    cursor: Option<String>,
}

/// What a retag points where.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RetagBody {
    /// The tag to point (created or moved, under the repository's tag rules).
    tag: String,
    /// The manifest it points at.
    digest: String,
    /// Another repository holding the manifest (the caller must be able to pull from it):
    /// its blobs, and an index's children, are mounted first.
    from: Option<String>,
}

/// Tags of a repository with the manifest each points at and their push and pull times.
#[utoipa::path(
    get,
    path = "/api/v1/repositories/{name}/-/tags",
    tag = "images",
    params(("name" = String, Path, description = "Repository name"), TagQuery),
    responses(
        (status = 200, description = "A page of tags; `next` and `Link` lead on", body = Page<TagSummary>),
        (status = 400, description = "An unknown parameter or sort key, or a bad cursor", body = Problem),
        (status = "4XX", description = "Refused or unknown repository", body = Problem),
    )
)]
pub(super) async fn list(
    app: &AppState,
    caller: &Caller,
    repo: &RepoName,
    query: TagQuery,
) -> ApiResult<Response> {
    caller.require(repo.as_str(), Role::Reporter).await?;
    let paging = Paging {
        limit: query.limit,
        cursor: query.cursor.clone(),
    };
    let limit = paging.limit()?;
    let (sort, sort_name) = match query.sort.as_deref() {
        None | Some("name") => (TagSort::Name, "name"),
        Some("pushed") => (TagSort::Pushed, "pushed"),
        Some("pulled") => (TagSort::Pulled, "pulled"),
        Some(other) => return Err(bad_value("sort", other, "name, pushed or pulled")),
    };
    let after = match query.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => Some(parse_cursor(c)?),
    };
    let items = app
        .registry
        .list_tag_summaries(repo, sort, after.as_ref(), limit + 1)
        .await?;
    let path = format!("/api/v1/repositories/{repo}/-/tags?sort={sort_name}");
    Ok(paged(items, limit, &path, |t| t.cursor.clone()))
}

/// Points a tag at a manifest of this repository, or with `from` of another one (its blobs
/// and an index's children are mounted). Tag immutability and protected tags apply as on a
/// `/v2/` tag push; a digest the source repository does not hold is 404 `MANIFEST_UNKNOWN`.
#[utoipa::path(
    post,
    path = "/api/v1/repositories/{name}/-/tags",
    tag = "images",
    params(("name" = String, Path, description = "Repository name")),
    request_body = RetagBody,
    responses(
        (status = 201, description = "The tag points at the manifest: `{\"name\", \"digest\"}`"),
        (status = 404, description = "The source repository holds no such manifest (`MANIFEST_UNKNOWN`)", body = Problem),
        (status = "4XX", description = "Refused (rights, an immutable or protected tag) or invalid", body = Problem),
    )
)]
pub(super) async fn retag(
    app: &AppState,
    caller: &Caller,
    repo: &RepoName,
    request: Request<Body>,
) -> ApiResult<Response> {
    // Read as JSON first, then as the body: a missing or unknown field is a 400 naming it.
    let ApiJson(body) = ApiJson::<serde_json::Value>::from_request(request, app).await?;
    let body: RetagBody = serde_json::from_value(body)
        .map_err(|e| ApiError::bad_request(format!("invalid body: {e}")))?;
    let tag: Tag = body
        .tag
        .parse()
        .map_err(|e| ApiError::bad_request(format!("tag: {e}")).with_details(field("tag")))?;
    let digest: Digest = body
        .digest
        .parse()
        .map_err(|e| ApiError::bad_request(format!("digest: {e}")).with_details(field("digest")))?;
    let from: Option<RepoName> = body
        .from
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("from: {e}")).with_details(field("from")))?;
    let grant = grant_needing(caller, repo, |g| g.push, "push").await?;
    if let Some(source) = &from {
        caller.require(source.as_str(), Role::Reporter).await?;
    }
    app.registry
        .retag(
            repo,
            &tag,
            &digest,
            from.as_ref(),
            Override::for_maintainer(grant.maintain),
            &caller.identity.name,
        )
        .await?;
    let summary = serde_json::json!({ "name": tag, "digest": digest });
    Ok((StatusCode::CREATED, Json(summary)).into_response())
}

/// `{"field": name}`, the details of a problem with one field of the body.
fn field(name: &str) -> serde_json::Value {
    serde_json::json!({ "field": name })
}

/// `key:name` as written by the listing.
fn parse_cursor(cursor: &str) -> ApiResult<TagCursor> {
    cursor
        .split_once(':')
        .and_then(|(key, name)| {
            Some(TagCursor {
                key: key.parse().ok()?,
                name: name.to_owned(),
            })
        })
        .ok_or_else(|| {
            ApiError::bad_request("cursor: not a cursor of this listing")
                .with_details(param("cursor"))
        })
}
