//! `/api/v1/repositories/{name}/-/images/{digest}/quarantine`: holding an image back from
//! pulls with a reason (POST), reading why (GET), and releasing it (DELETE). Quarantining and
//! releasing need the right to delete the image (maintainers and administrators); both are
//! audit-logged with the actor, the image and the reason.

use axum::{
    Json,
    extract::{FromRequest, Request},
    http::{Method, StatusCode},
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, ApiJson, ApiResult, Caller, Problem, images};
use crate::{
    auth::Role,
    oci::{Digest, RepoName},
    registry::{QuarantineOutcome, QuarantineRecord, check_reason},
    state::AppState,
};

/// A quarantine request.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct QuarantineBody {
    /// Why the image is held back (1 to 1024 bytes, no line breaks or other control
    /// characters); pulling clients are shown it.
    reason: String,
}

/// `images/{digest}/quarantine`: the digest, when `sub` is that resource.
pub(super) fn quarantine_resource(sub: &str) -> Option<&str> {
    sub.strip_prefix("images/")?.strip_suffix("/quarantine")
}

/// Quarantines an image: from now on its manifest GET on `/v2/` (by tag or digest) answers
/// 403 `DENIED` with `image <digest> is quarantined: <reason>`, and so does the GET of an
/// index of the repository that lists it (a multi-arch tag with a quarantined platform is
/// not pullable). HEADs and blobs are still answered (they serve no image to run). Quarantining an image again replaces its reason.
#[utoipa::path(
    post,
    path = "/api/v1/repositories/{name}/-/images/{digest}/quarantine",
    tag = "images",
    params(
        ("name" = String, Path, description = "Repository name"),
        ("digest" = String, Path, description = "The manifest's digest"),
    ),
    request_body = QuarantineBody,
    responses(
        (status = 201, description = "Quarantined", body = QuarantineRecord),
        (status = 200, description = "Quarantined already; the reason was replaced", body = QuarantineRecord),
        (status = 400, description = "A missing, empty, too long or multi-line reason, or a malformed digest", body = Problem),
        (status = 401, description = "Sign in first", body = Problem),
        (status = 403, description = "This needs the delete right on the repository", body = Problem),
        (status = 404, description = "No such manifest in the repository (`MANIFEST_UNKNOWN`)", body = Problem),
    )
)]
pub(super) async fn quarantine(
    app: &AppState,
    caller: &Caller,
    repo: &RepoName,
    digest: &Digest,
    request: Request,
) -> ApiResult<Response> {
    images::grant_needing(caller, repo, |g| g.delete, "delete").await?;
    // Read as JSON first, then as the body: a missing or unknown field is a 400 naming it.
    let ApiJson(body) = ApiJson::<serde_json::Value>::from_request(request, app).await?;
    // serde would take `["why"]` for `{"reason": "why"}`.
    if !body.is_object() {
        return Err(ApiError::bad_request(
            "invalid body: expected an object {\"reason\": \"...\"}",
        ));
    }
    let body: QuarantineBody = serde_json::from_value(body)
        .map_err(|e| ApiError::bad_request(format!("invalid body: {e}")))?;
    let reason = check_reason(&body.reason)
        .map_err(|why| ApiError::bad_request(why).with_details(json!({ "field": "reason" })))?;
    let outcome = app
        .registry
        .quarantine_image(repo, digest, reason, &caller.identity.name)
        .await?;
    let (status, record) = match outcome {
        QuarantineOutcome::Created(record) => (StatusCode::CREATED, record),
        QuarantineOutcome::Updated(record) => (StatusCode::OK, record),
    };
    audit(caller, "image.quarantine", repo, &record).await;
    Ok((status, Json(record)).into_response())
}

/// Why an image is quarantined, by whom, since when.
#[utoipa::path(
    get,
    path = "/api/v1/repositories/{name}/-/images/{digest}/quarantine",
    tag = "images",
    params(
        ("name" = String, Path, description = "Repository name"),
        ("digest" = String, Path, description = "The manifest's digest"),
    ),
    responses(
        (status = 200, description = "The image is quarantined", body = QuarantineRecord),
        (status = 404, description = "Not quarantined (`NOT_FOUND`), or no such manifest (`MANIFEST_UNKNOWN`)", body = Problem),
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
    match app.registry.image_quarantine(repo, digest).await? {
        Some(record) => Ok(Json(record).into_response()),
        None => Err(not_quarantined(repo, digest)),
    }
}

/// Releases a quarantined image: pulls work again. The audit log keeps the quarantine.
#[utoipa::path(
    delete,
    path = "/api/v1/repositories/{name}/-/images/{digest}/quarantine",
    tag = "images",
    params(
        ("name" = String, Path, description = "Repository name"),
        ("digest" = String, Path, description = "The manifest's digest"),
    ),
    responses(
        (status = 204, description = "Released"),
        (status = 404, description = "Not quarantined (`NOT_FOUND`), or no such manifest (`MANIFEST_UNKNOWN`)", body = Problem),
        (status = "4XX", description = "Refused (the delete right is needed) or a malformed digest", body = Problem),
    )
)]
pub(super) async fn release(
    app: &AppState,
    caller: &Caller,
    repo: &RepoName,
    digest: &Digest,
) -> ApiResult<Response> {
    images::grant_needing(caller, repo, |g| g.delete, "delete").await?;
    match app.registry.release_image(repo, digest).await? {
        Some(record) => {
            audit(caller, "image.release", repo, &record).await;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        None => Err(not_quarantined(repo, digest)),
    }
}

/// Routes `images/{digest}/quarantine` ([`quarantine_resource`]).
pub(super) async fn route(
    app: &AppState,
    caller: &Caller,
    repo: &RepoName,
    digest: &str,
    request: Request,
) -> ApiResult<Response> {
    let digest: Digest = digest.parse().map_err(|e| {
        ApiError::bad_request(format!("digest: {e}")).with_details(images::param("digest"))
    })?;
    match request.method().clone() {
        Method::POST => quarantine(app, caller, repo, &digest, request).await,
        Method::GET => show(app, caller, repo, &digest).await,
        Method::DELETE => release(app, caller, repo, &digest).await,
        _ => Err(super::method_not_allowed_problem()),
    }
}

/// The 404 of an image that is there but not quarantined.
fn not_quarantined(repo: &RepoName, digest: &Digest) -> ApiError {
    ApiError::not_found(format!("{repo}@{digest} is not quarantined"))
}

/// Records `action` on the quarantine `record` of an image of `repo`.
async fn audit(caller: &Caller, action: &str, repo: &RepoName, record: &QuarantineRecord) {
    let target = format!("{repo}@{}", record.digest);
    let detail = json!({
        "repository": repo.as_str(),
        "digest": record.digest,
        "reason": record.quarantine.reason,
    })
    .to_string();
    caller
        .auth()
        .audit(
            &caller.identity.name,
            None,
            action,
            Some(&target),
            Some(&detail),
        )
        .await;
}
