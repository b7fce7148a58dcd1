//! `/api/v1/trust/policies`: trust policies (administrators), and
//! `/api/v1/repositories/{name}/-/images/{digest}/signatures` (also without `-/`): an
//! image's signatures, who signed and whether they verified (pull right on the repository).

use axum::{
    Json, Router,
    extract::{Path, State},
    http::{Method, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
};
use serde_json::json;

use super::{ApiError, ApiJson, ApiResult, Caller, Problem, images};
use crate::{
    auth::Role,
    oci::{Digest, RepoName},
    registry::{SignatureView, TrustPolicyInput, TrustPolicyView},
    state::AppState,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/trust/policies", get(list))
        .route("/trust/policies/{name}", get(show).put(save).delete(remove))
}

/// `images/{digest}/signatures`: the digest, when `sub` is that resource.
pub(super) fn signatures_resource(sub: &str) -> Option<&str> {
    sub.strip_prefix("images/")?.strip_suffix("/signatures")
}

/// The spelling without `-/`, `{name}/images/{digest}/signatures`: the repository
/// name and the sub-resource (a digest holds a `:`, which no repository name does).
pub(super) fn signatures_path(path: &str) -> Option<(&str, &str)> {
    let at = path.rfind("/images/")?;
    let (name, sub) = (&path[..at], &path[at + 1..]);
    signatures_resource(sub)
        .filter(|digest| digest.contains(':') && !digest.contains('/'))
        .map(|_| (name, sub))
}

/// Every trust policy (administrators).
#[utoipa::path(
    get,
    path = "/api/v1/trust/policies",
    tag = "trust",
    responses(
        (status = 200, description = "`{\"items\": [policy]}`, by name"),
        (status = "4XX", description = "Refused", body = Problem),
    )
)]
async fn list(State(app): State<AppState>, caller: Caller) -> ApiResult<Response> {
    caller.require_admin()?;
    let items = app.registry.trust_policies().await?;
    Ok(Json(json!({ "items": items })).into_response())
}

/// One trust policy (administrators).
#[utoipa::path(
    get,
    path = "/api/v1/trust/policies/{name}",
    tag = "trust",
    params(("name" = String, Path, description = "Policy name")),
    responses(
        (status = 200, description = "The policy", body = TrustPolicyView),
        (status = "4XX", description = "Refused or unknown", body = Problem),
    )
)]
async fn show(
    State(app): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    caller.require_admin()?;
    match app.registry.trust_policy(&name).await? {
        Some(policy) => Ok(Json(policy).into_response()),
        None => Err(no_policy(&name)),
    }
}

/// Creates or replaces a trust policy (administrators). Every key, certificate and the
/// notation statement are parsed first: one that does not parse refuses the whole policy
/// (400) and nothing changes. The signatures under its scope are verified again at once:
/// a key removed stops trusting its signatures before the answer.
#[utoipa::path(
    put,
    path = "/api/v1/trust/policies/{name}",
    tag = "trust",
    params(("name" = String, Path, description = "Policy name")),
    request_body = TrustPolicyInput,
    responses(
        (status = 201, description = "Created", body = TrustPolicyView),
        (status = 200, description = "Replaced", body = TrustPolicyView),
        (status = 400, description = "A bad scope, mode, key, certificate or statement", body = Problem),
        (status = "4XX", description = "Refused", body = Problem),
    )
)]
async fn save(
    State(app): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> ApiResult<Response> {
    caller.require_admin()?;
    // Read as JSON first, then as the policy: a missing or unknown field is a 400 naming it.
    let input: TrustPolicyInput = serde_json::from_value(body)
        .map_err(|e| ApiError::bad_request(format!("invalid body: {e}")))?;
    let (created, policy) = app
        .registry
        .put_trust_policy(&name, &input, &caller.identity.name)
        .await?;
    audit(&caller, "trust_policy.save", &policy).await;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(policy)).into_response())
}

/// Deletes a trust policy (administrators); what it covered falls to the next covering
/// policy, or none.
#[utoipa::path(
    delete,
    path = "/api/v1/trust/policies/{name}",
    tag = "trust",
    params(("name" = String, Path, description = "Policy name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = "4XX", description = "Refused or unknown", body = Problem),
    )
)]
async fn remove(
    State(app): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    caller.require_admin()?;
    match app.registry.delete_trust_policy(&name).await? {
        Some(policy) => {
            audit(&caller, "trust_policy.delete", &policy).await;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        None => Err(no_policy(&name)),
    }
}

/// The signatures of an image: per signature its tool, whether it verified under the
/// trust policy covering the repository, who signed, and why not. Also answered at
/// `/api/v1/repositories/{name}/images/{digest}/signatures`.
#[utoipa::path(
    get,
    path = "/api/v1/repositories/{name}/-/images/{digest}/signatures",
    tag = "images",
    params(
        ("name" = String, Path, description = "Repository name"),
        ("digest" = String, Path, description = "The image's digest"),
    ),
    responses(
        (status = 200, description = "`{\"items\": [signature]}`, newest first", body = [SignatureView]),
        (status = 404, description = "No such manifest in the repository (`MANIFEST_UNKNOWN`)", body = Problem),
        (status = "4XX", description = "Refused or a malformed digest", body = Problem),
    )
)]
pub(super) async fn signatures(
    app: &AppState,
    caller: &Caller,
    repo: &RepoName,
    digest: &Digest,
) -> ApiResult<Response> {
    caller.require(repo.as_str(), Role::Reporter).await?;
    let items = app.registry.image_signatures(repo, digest).await?;
    Ok(Json(json!({ "items": items })).into_response())
}

/// Routes `images/{digest}/signatures` ([`signatures_resource`]).
pub(super) async fn route(
    app: &AppState,
    caller: &Caller,
    repo: &RepoName,
    digest: &str,
    method: Method,
) -> ApiResult<Response> {
    let digest: Digest = digest.parse().map_err(|e| {
        ApiError::bad_request(format!("digest: {e}")).with_details(images::param("digest"))
    })?;
    match method {
        Method::GET => signatures(app, caller, repo, &digest).await,
        _ => Err(super::method_not_allowed_problem()),
    }
}

fn no_policy(name: &str) -> ApiError {
    ApiError::not_found(format!("no trust policy named {name}"))
}

/// Records `action` on trust policy `policy`.
async fn audit(caller: &Caller, action: &str, policy: &TrustPolicyView) {
    let detail = json!({
        "scope": policy.scope,
        "mode": policy.mode,
        "cosign_keys": policy.cosign_key_fingerprints,
        "trust_store": policy.trust_store.len(),
    })
    .to_string();
    caller
        .auth()
        .audit(
            &caller.identity.name,
            None,
            action,
            Some(&policy.name),
            Some(&detail),
        )
        .await;
}
