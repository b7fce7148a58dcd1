//! `/api/v1/namespaces` (visibility, members, deploy tokens, scanning policy) and the audit
//! log.

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post, put},
};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, ApiJson, ApiQuery, ApiResult, Caller, Paging, Problem, paged};
use crate::{
    auth::{Action, Role, TokenRequest, Visibility},
    error::Error,
    oci::RepoName,
    registry::{ScanPolicy, ScanPolicyPatch, ScanPolicySettings},
    state::AppState,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/namespaces", post(create))
        .route("/namespaces/{ns}/visibility", put(visibility))
        .route("/namespaces/{ns}/members", get(members))
        .route(
            "/namespaces/{ns}/members/{user}",
            put(set_member).delete(remove_member),
        )
        .route(
            "/namespaces/{ns}/deploy-tokens",
            get(deploy_tokens).post(create_deploy_token),
        )
        .route(
            "/namespaces/{ns}/settings",
            get(get_settings).put(put_settings),
        )
        .route("/audit", get(audit))
}

/// `ns` when it is a namespace name (one repository name component), or a 400.
fn parse_namespace(ns: &str) -> ApiResult<&str> {
    match ns.parse::<RepoName>() {
        Ok(_) if !ns.contains('/') => Ok(ns),
        _ => Err(super::bad_parameter(
            "namespace",
            format!("{ns:?} is not a namespace (the first component of repository names)"),
        )),
    }
}

/// The scanning policy fields of a settings body (`null` = inherit; a field left out stays
/// as it is), or a 400 naming the field at fault. Any other field is refused.
pub(super) fn scan_policy_patch(
    body: serde_json::Value,
    allowed: &[&str],
) -> ApiResult<(ScanPolicyPatch, serde_json::Map<String, serde_json::Value>)> {
    let serde_json::Value::Object(mut body) = body else {
        return Err(ApiError::bad_request(
            "invalid body: expected a JSON object",
        ));
    };
    let patch = ScanPolicyPatch::take_from(&mut body).map_err(|e| {
        super::bad_parameter(
            e.field,
            e.message.trim_start_matches(&format!("{}: ", e.field)),
        )
    })?;
    if let Some(unknown) = body.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(super::bad_parameter(unknown, "unknown field"));
    }
    Ok((patch, body))
}

/// The namespace's scanning policy: the settings stored for it (`null` = the registry's
/// default) and the policy in effect for its repositories that set nothing themselves.
#[utoipa::path(
    get,
    path = "/api/v1/namespaces/{ns}/settings",
    tag = "namespaces",
    params(("ns" = String, Path, description = "Namespace (first component of repository names)")),
    responses(
        (status = 200, description = "The scanning policy, stored and in effect", body = ScanPolicySettings),
        (status = 400, description = "Not a namespace name", body = Problem),
        (status = "4XX", description = "Refused", body = Problem),
    )
)]
async fn get_settings(
    State(app): State<AppState>,
    caller: Caller,
    Path(ns): Path<String>,
) -> ApiResult<Json<ScanPolicySettings>> {
    let ns = parse_namespace(&ns)?;
    if !caller
        .auth()
        .may_on_namespace(&caller.identity, ns, Action::Pull)
        .await?
    {
        return Err(if caller.identity.is_anonymous() {
            Error::Unauthorized("sign in first".into())
        } else {
            Error::Denied(format!("this needs read access to namespace {ns}"))
        }
        .into());
    }
    Ok(Json(app.registry.namespace_scan_policy(ns).await?))
}

/// Changes the namespace's scanning policy (maintainers of the namespace): each of
/// `scan_on_push`, `block_severity`, `block_unscanned` and `only_fixable` given is set
/// (`null` = inherit the registry's default), those left out stay. The namespace's scanned
/// images are judged again at once (quarantined or released by the policy).
#[utoipa::path(
    put,
    path = "/api/v1/namespaces/{ns}/settings",
    tag = "namespaces",
    params(("ns" = String, Path, description = "Namespace (first component of repository names)")),
    request_body = ScanPolicy,
    responses(
        (status = 200, description = "Saved: the policy, stored and in effect", body = ScanPolicySettings),
        (status = 400, description = "An unknown severity, a value of the wrong type or an unknown field; `details.parameter` names it", body = Problem),
        (status = "4XX", description = "Refused", body = Problem),
    )
)]
async fn put_settings(
    State(app): State<AppState>,
    caller: Caller,
    Path(ns): Path<String>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> ApiResult<Json<ScanPolicySettings>> {
    let ns = parse_namespace(&ns)?;
    caller.require(ns, Role::Maintainer).await?;
    let (patch, _) = scan_policy_patch(body, &[])?;
    let saved = app.registry.put_namespace_scan_policy(ns, &patch).await?;
    let detail = serde_json::to_string(&saved.stored).unwrap_or_default();
    caller
        .auth()
        .audit(
            &caller.identity.name,
            None,
            "namespace.scan_policy",
            Some(ns),
            Some(&detail),
        )
        .await;
    Ok(Json(saved))
}

fn parse_visibility(s: &str) -> ApiResult<Visibility> {
    Visibility::parse(s).ok_or_else(|| {
        ApiError::bad_request(format!(
            "unknown visibility {s:?}: public, internal or private"
        ))
    })
}

/// A namespace to create.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewNamespace {
    /// The first component of the repository names it holds (`myorg`).
    name: String,
    /// `public`, `internal` or `private` (default: private).
    visibility: Option<String>,
    /// A user made its owner.
    owner: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/v1/namespaces",
    tag = "namespaces",
    request_body = NewNamespace,
    responses(
        (status = 201, description = "Created"),
        (status = "4XX", description = "Refused, unknown or invalid", body = Problem),
    )
)]
async fn create(caller: Caller, ApiJson(ns): ApiJson<NewNamespace>) -> ApiResult<Response> {
    let visibility = ns.visibility.as_deref().map(parse_visibility).transpose()?;
    caller
        .auth()
        .create_namespace(&caller.identity, &ns.name, visibility, ns.owner.as_deref())
        .await?;
    Ok((StatusCode::CREATED, Json(json!({ "name": ns.name }))).into_response())
}

/// A namespace's new visibility.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct VisibilityBody {
    /// `public`, `internal` or `private`.
    visibility: String,
}

#[utoipa::path(
    put,
    path = "/api/v1/namespaces/{ns}/visibility",
    tag = "namespaces",
    params(("ns" = String, Path, description = "Namespace (first component of repository names)")),
    request_body = VisibilityBody,
    responses(
        (status = 204, description = "Changed"),
        (status = "4XX", description = "Refused, unknown or invalid", body = Problem),
    )
)]
async fn visibility(
    caller: Caller,
    Path(ns): Path<String>,
    ApiJson(body): ApiJson<VisibilityBody>,
) -> ApiResult<StatusCode> {
    let visibility = parse_visibility(&body.visibility)?;
    caller
        .auth()
        .set_namespace_visibility(&caller.identity, &ns, visibility)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/api/v1/namespaces/{ns}/members",
    tag = "namespaces",
    params(("ns" = String, Path, description = "Namespace (first component of repository names)")),
    responses(
        (status = 200, description = "Members and their roles"),
        (status = "4XX", description = "Refused, unknown or invalid", body = Problem),
    )
)]
async fn members(caller: Caller, Path(ns): Path<String>) -> ApiResult<Response> {
    let rows = caller.auth().list_members(&caller.identity, &ns).await?;
    let items: Vec<_> = rows
        .into_iter()
        .map(|m| {
            let role = Role::from_level(m.role)
                .map(|r| format!("{r:?}").to_lowercase())
                .unwrap_or_default();
            json!({ "user": m.user, "role": role })
        })
        .collect();
    Ok(Json(json!({ "items": items })).into_response())
}

/// A member's role in a namespace.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RoleBody {
    /// `guest`, `reporter`, `developer`, `maintainer` or `owner`.
    role: String,
}

#[utoipa::path(
    put,
    path = "/api/v1/namespaces/{ns}/members/{user}",
    tag = "namespaces",
    params(("ns" = String, Path, description = "Namespace (first component of repository names)"), ("user" = String, Path, description = "User name")),
    request_body = RoleBody,
    responses(
        (status = 204, description = "Set"),
        (status = "4XX", description = "Refused, unknown or invalid", body = Problem),
    )
)]
async fn set_member(
    caller: Caller,
    Path((ns, user)): Path<(String, String)>,
    ApiJson(body): ApiJson<RoleBody>,
) -> ApiResult<StatusCode> {
    let role = Role::parse(&body.role).ok_or_else(|| {
        ApiError::bad_request(format!(
            "unknown role {:?}: guest, reporter, developer, maintainer or owner",
            body.role
        ))
    })?;
    caller
        .auth()
        .set_member(&caller.identity, &ns, &user, role)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    delete,
    path = "/api/v1/namespaces/{ns}/members/{user}",
    tag = "namespaces",
    params(("ns" = String, Path, description = "Namespace (first component of repository names)"), ("user" = String, Path, description = "User name")),
    responses(
        (status = 204, description = "Removed"),
        (status = "4XX", description = "Refused, unknown or invalid", body = Problem),
    )
)]
async fn remove_member(
    caller: Caller,
    Path((ns, user)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    caller
        .auth()
        .remove_member(&caller.identity, &ns, &user)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/api/v1/namespaces/{ns}/deploy-tokens",
    tag = "tokens",
    params(("ns" = String, Path, description = "Namespace (first component of repository names)")),
    responses(
        (status = 200, description = "Deploy tokens (never their secrets)"),
        (status = "4XX", description = "Refused, unknown or invalid", body = Problem),
    )
)]
async fn deploy_tokens(caller: Caller, Path(ns): Path<String>) -> ApiResult<Response> {
    let rows = caller
        .auth()
        .list_deploy_tokens(&caller.identity, &ns)
        .await?;
    Ok(Json(json!({ "items": rows })).into_response())
}

#[utoipa::path(
    post,
    path = "/api/v1/namespaces/{ns}/deploy-tokens",
    tag = "tokens",
    params(("ns" = String, Path, description = "Namespace (first component of repository names)")),
    request_body = TokenRequest,
    responses(
        (status = 201, description = "Created: its login name and secret, shown once"),
        (status = "4XX", description = "Refused, unknown or invalid", body = Problem),
    )
)]
async fn create_deploy_token(
    caller: Caller,
    Path(ns): Path<String>,
    ApiJson(request): ApiJson<TokenRequest>,
) -> ApiResult<Response> {
    let created = caller
        .auth()
        .create_deploy_token(&caller.identity, &ns, &request)
        .await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// The audit log, newest first (administrators).
#[utoipa::path(
    get,
    path = "/api/v1/audit",
    tag = "audit",
    params(Paging),
    responses(
        (status = 200, description = "A page of the audit log, newest first"),
        (status = "4XX", description = "Refused, unknown or invalid", body = Problem),
    )
)]
async fn audit(caller: Caller, ApiQuery(paging): ApiQuery<Paging>) -> ApiResult<Response> {
    let limit = paging.limit()?;
    let before = match paging.cursor() {
        "" => 0,
        c => c
            .parse::<i64>()
            .map_err(|_| ApiError::bad_request("cursor: not one this listing gave"))?,
    };
    let rows = caller
        .auth()
        .audit_entries(&caller.identity, before, limit + 1)
        .await?;
    Ok(paged(rows, limit, "/api/v1/audit", |r| r.id.to_string()))
}
