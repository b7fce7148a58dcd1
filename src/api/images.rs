//! `/api/v1/repositories/{name}/-/images`: the manifests of a repository with platforms,
//! sizes, tags, pull figures and status (filtered, sorted, paged by cursor); one image in
//! detail; deleting one (as a `/v2/` manifest delete by digest).

use axum::{
    Json,
    http::{Method, StatusCode},
    response::{IntoResponse, Response},
};
use serde::Deserialize;

use super::{ApiError, ApiResult, Caller, Page, Paging, Problem, paged};
use crate::{
    auth::{Grant, Role},
    error::Error,
    oci::{Digest, Reference, RepoName, Tag},
    registry::{
        ImageCursor, ImageDetail, ImageFilter, ImageSort, ImageStatus, ImageSummary, Override,
    },
    state::AppState,
};

/// The image listing's query; any other parameter is refused, naming it.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ImageQuery {
    /// Only the image this tag points at (with `architecture`/`os`: the matching children
    /// of the index it points at).
    tag: Option<String>,
    /// Only images of this architecture (`arm64`); children of indexes are listed too,
    /// each naming its `index`.
    architecture: Option<String>,
    /// Only images of this operating system (`linux`); children of indexes are listed too.
    os: Option<String>,
    /// `active`, `untagged` or `quarantined` (held back from pulls; such an image is
    /// neither `active` nor `untagged`).
    status: Option<String>,
    /// `pushed` (default: newest first), `size` (largest first) or `pulls` (most first).
    sort: Option<String>,
    /// Items per page (default 100, at most 1000).
    limit: Option<u32>,
    /// The `next` of the previous page (valid with the same filters and sort).
    cursor: Option<String>,
}

impl ImageQuery {
    /// The query with `?os=` and the like (as forms send them) taken as not given.
    fn without_empty_values(self) -> ImageQuery {
        let given = |v: Option<String>| v.filter(|v| !v.is_empty());
        ImageQuery {
            tag: given(self.tag),
            architecture: given(self.architecture),
            os: given(self.os),
            status: given(self.status),
            sort: given(self.sort),
            limit: self.limit,
            cursor: given(self.cursor),
        }
    }
}

/// Images of a repository, one per manifest. Without `architecture` or `os`, the children of
/// an index are not listed on their own (the index lists their platforms) unless tagged
/// themselves, and referrers (signatures, SBOMs) are shown only in an image's detail.
#[utoipa::path(
    get,
    path = "/api/v1/repositories/{name}/-/images",
    tag = "images",
    params(("name" = String, Path, description = "Repository name"), ImageQuery),
    responses(
        (status = 200, description = "A page of images; `next` and `Link` lead on", body = Page<ImageSummary>),
        (status = 400, description = "An unknown parameter, sort key or status, or a bad cursor", body = Problem),
        (status = "4XX", description = "Refused or unknown repository", body = Problem),
    )
)]
pub(super) async fn list(
    app: &AppState,
    caller: &Caller,
    repo: &RepoName,
    query: ImageQuery,
) -> ApiResult<Response> {
    caller.require(repo.as_str(), Role::Reporter).await?;
    let query = query.without_empty_values();
    let paging = Paging {
        limit: query.limit,
        cursor: query.cursor.clone(),
    };
    let limit = paging.limit()?;
    let sort = match query.sort.as_deref() {
        None | Some("pushed") => ImageSort::Pushed,
        Some("size") => ImageSort::Size,
        Some("pulls") => ImageSort::Pulls,
        Some(other) => {
            return Err(bad_value("sort", other, "pushed, size or pulls"));
        }
    };
    let status = match query.status.as_deref() {
        None => None,
        Some("active") => Some(ImageStatus::Active),
        Some("untagged") => Some(ImageStatus::Untagged),
        Some("quarantined") => Some(ImageStatus::Quarantined),
        Some(other) => {
            return Err(bad_value(
                "status",
                other,
                "active, untagged or quarantined",
            ));
        }
    };
    let tag = query
        .tag
        .as_deref()
        .map(|t| t.parse::<Tag>())
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("tag: {e}")).with_details(param("tag")))?;
    let after = match query.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => Some(parse_cursor(c)?),
    };
    let filter = ImageFilter {
        tag,
        os: query.os.clone(),
        architecture: query.architecture.clone(),
        status,
        digest: None,
    };
    let items = app
        .registry
        .list_images(repo, &filter, sort, after, limit + 1)
        .await?;
    let path = listing_path(repo, &query);
    Ok(paged(items, limit, &path, |i| i.cursor.clone()))
}

/// One image: layers, config summary, children of an index with their platforms, referrers
/// and tags.
#[utoipa::path(
    get,
    path = "/api/v1/repositories/{name}/-/images/{digest}",
    tag = "images",
    params(
        ("name" = String, Path, description = "Repository name"),
        ("digest" = String, Path, description = "The manifest's digest"),
    ),
    responses(
        (status = 200, description = "The image", body = ImageDetail),
        (status = 404, description = "No such manifest in the repository (`MANIFEST_UNKNOWN`)", body = Problem),
        (status = "4XX", description = "Refused or a malformed digest", body = Problem),
    )
)]
pub(super) async fn show(
    app: &AppState,
    caller: &Caller,
    repo: &RepoName,
    digest: &Digest,
) -> ApiResult<Response> {
    caller.require(repo.as_str(), Role::Reporter).await?;
    Ok(Json(app.registry.image_detail(repo, digest).await?).into_response())
}

/// Deletes an image as a `/v2/` manifest delete by digest does: its tags go with it and the
/// repository is queued for the collector's review. Needs the delete right (protected tags
/// on it: maintainers only).
#[utoipa::path(
    delete,
    path = "/api/v1/repositories/{name}/-/images/{digest}",
    tag = "images",
    params(
        ("name" = String, Path, description = "Repository name"),
        ("digest" = String, Path, description = "The manifest's digest"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such manifest in the repository (`MANIFEST_UNKNOWN`)", body = Problem),
        (status = "4XX", description = "Refused or a malformed digest", body = Problem),
    )
)]
pub(super) async fn delete(
    app: &AppState,
    caller: &Caller,
    repo: &RepoName,
    digest: &Digest,
) -> ApiResult<Response> {
    let grant = grant_needing(caller, repo, |g| g.delete, "delete").await?;
    app.registry
        .delete_manifest(
            repo,
            &Reference::Digest(digest.clone()),
            Override::for_maintainer(grant.maintain),
            Some(&caller.identity.name),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Routes `images/{digest}` of a repository.
pub(super) async fn one(
    app: &AppState,
    caller: &Caller,
    repo: &RepoName,
    digest: &str,
    method: Method,
) -> ApiResult<Response> {
    let digest: Digest = digest
        .parse()
        .map_err(|e| ApiError::bad_request(format!("digest: {e}")).with_details(param("digest")))?;
    match method {
        Method::GET => show(app, caller, repo, &digest).await,
        Method::DELETE => delete(app, caller, repo, &digest).await,
        _ => Err(super::method_not_allowed_problem()),
    }
}

/// The caller's rights on `repo`, when `needed` holds for them; else 401 (anonymous) or 403
/// naming `what`.
pub(super) async fn grant_needing(
    caller: &Caller,
    repo: &RepoName,
    needed: fn(&Grant) -> bool,
    what: &str,
) -> ApiResult<Grant> {
    let grant = caller.auth().grant(&caller.identity, repo).await?;
    if needed(&grant) {
        Ok(grant)
    } else if caller.identity.is_anonymous() {
        Err(Error::Unauthorized("sign in first".into()).into())
    } else {
        Err(Error::Denied(format!("this needs the {what} right on {repo}")).into())
    }
}

/// A 400 for a value of `name` outside `expected`.
pub(super) fn bad_value(name: &str, value: &str, expected: &str) -> ApiError {
    ApiError::bad_request(format!(
        "{name}: unknown value {value:?}; expected {expected}"
    ))
    .with_details(param(name))
}

/// `{"parameter": name}`, the details of a problem with one query parameter.
pub(super) fn param(name: &str) -> serde_json::Value {
    serde_json::json!({ "parameter": name })
}

/// `key:id` as written by the listing.
fn parse_cursor(cursor: &str) -> ApiResult<ImageCursor> {
    cursor
        .split_once(':')
        .and_then(|(key, id)| {
            Some(ImageCursor {
                key: key.parse().ok()?,
                id: id.parse().ok()?,
            })
        })
        .ok_or_else(|| {
            ApiError::bad_request("cursor: not a cursor of this listing")
                .with_details(param("cursor"))
        })
}

/// The listing's path with its filters and sort, for the `Link` header.
fn listing_path(repo: &RepoName, query: &ImageQuery) -> String {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    for (key, value) in [
        ("tag", &query.tag),
        ("architecture", &query.architecture),
        ("os", &query.os),
        ("status", &query.status),
        ("sort", &query.sort),
    ] {
        if let Some(v) = value {
            form.append_pair(key, v);
        }
    }
    let filters = form.finish();
    let base = format!("/api/v1/repositories/{repo}/-/images");
    if filters.is_empty() {
        base
    } else {
        format!("{base}?{filters}")
    }
}
