//! `/api/v1/namespaces/{ns}/quota`: a namespace's storage and repository limits with its
//! usage. Administrators set and remove quotas; whoever may pull from the namespace reads it.

use axum::{
    Json, Router,
    extract::{FromRequest, Path, Request, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, ApiJson, ApiResult, Caller, Problem, bad_parameter};
use crate::{
    auth::Action,
    error::Error,
    oci::RepoName,
    registry::{QuotaLimits, QuotaStatus, WARN_PERCENT_DEFAULT},
    state::AppState,
};

pub fn routes() -> Router<AppState> {
    Router::new().route("/namespaces/{ns}/quota", get(show).put(set).delete(remove))
}

/// The limits of `PUT /api/v1/namespaces/{ns}/quota`; a limit left out or `null` is none.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct QuotaBody {
    /// The most deduplicated bytes the namespace may hold (at least 1).
    storage_bytes: Option<i64>,
    /// The most repositories it may hold (at least 1).
    repositories: Option<i64>,
    /// Where the warning starts, in percent of each limit: 1 to 100 (default 80).
    warn_percent: Option<i64>,
}

/// The body's fields, for naming the one at fault.
const FIELDS: [&str; 3] = ["storage_bytes", "repositories", "warn_percent"];

/// A quota body whose every refusal is a 400 naming the field at fault when there is one
/// (unknown fields included, which axum answers 422).
struct QuotaJson(QuotaBody);

impl<S: Send + Sync> FromRequest<S> for QuotaJson {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> ApiResult<Self> {
        let e = match ApiJson::<QuotaBody>::from_request(request, state).await {
            Ok(ApiJson(body)) => return Ok(QuotaJson(body)),
            Err(e) if e.status == StatusCode::UNPROCESSABLE_ENTITY => e,
            Err(e) => return Err(e),
        };
        // axum writes `…target type: storage_bytes: invalid type…` or `unknown field `x``.
        let field = FIELDS
            .iter()
            .find(|f| e.message.contains(&format!(": {f}: ")))
            .map(|f| (*f).to_owned())
            .or_else(|| {
                let (_, rest) = e.message.split_once("unknown field `")?;
                rest.split_once('`').map(|(name, _)| name.to_owned())
            });
        Err(match field {
            Some(field) => bad_parameter(&field, e.message),
            None => ApiError::bad_request(e.message),
        })
    }
}

/// `ns` when it is a namespace name (one repository name component), or a 400.
fn parse_namespace(ns: &str) -> ApiResult<&str> {
    match ns.parse::<RepoName>() {
        Ok(_) if !ns.contains('/') => Ok(ns),
        _ => Err(bad_parameter(
            "namespace",
            format!("{ns:?} is not a namespace (the first component of repository names)"),
        )),
    }
}

/// Refuses a caller who may not pull from namespace `ns`.
async fn require_reader(caller: &Caller, ns: &str) -> ApiResult<()> {
    if caller
        .auth()
        .may_on_namespace(&caller.identity, ns, Action::Pull)
        .await?
    {
        Ok(())
    } else if caller.identity.is_anonymous() {
        Err(Error::Unauthorized("sign in first".into()).into())
    } else {
        Err(Error::Denied(format!("this needs read access to namespace {ns}")).into())
    }
}

/// The namespace's limits and usage: `warning` once usage reaches `warn_percent` of a limit,
/// `exceeded` once it is over one. A namespace without a quota shows `null` limits.
#[utoipa::path(
    get,
    path = "/api/v1/namespaces/{ns}/quota",
    tag = "namespaces",
    params(("ns" = String, Path, description = "Namespace (first component of repository names)")),
    responses(
        (status = 200, description = "The quota and the usage", body = QuotaStatus),
        (status = 400, description = "Not a namespace name", body = Problem),
        (status = 401, description = "Sign in first", body = Problem),
        (status = 403, description = "No read access to the namespace", body = Problem),
    )
)]
async fn show(
    State(app): State<AppState>,
    caller: Caller,
    Path(ns): Path<String>,
) -> ApiResult<Json<QuotaStatus>> {
    let ns = parse_namespace(&ns)?;
    require_reader(&caller, ns).await?;
    Ok(Json(app.registry.namespace_quota(ns).await?))
}

/// Sets (replaces) the namespace's quota (administrators). A limit under the current usage
/// is accepted: pushes of new blobs are refused until enough is deleted and collected.
#[utoipa::path(
    put,
    path = "/api/v1/namespaces/{ns}/quota",
    tag = "namespaces",
    params(("ns" = String, Path, description = "Namespace (first component of repository names)")),
    request_body = QuotaBody,
    responses(
        (status = 200, description = "Set: the quota and the usage", body = QuotaStatus),
        (status = 400, description = "A limit that is not a positive integer, `warn_percent` outside 1 to 100, or an unknown field; `details.parameter` names it", body = Problem),
        (status = 401, description = "Sign in first", body = Problem),
        (status = 403, description = "Administrators only", body = Problem),
    )
)]
async fn set(
    State(app): State<AppState>,
    caller: Caller,
    Path(ns): Path<String>,
    QuotaJson(body): QuotaJson,
) -> ApiResult<Json<QuotaStatus>> {
    caller.require_admin()?;
    let ns = parse_namespace(&ns)?;
    let limits = QuotaLimits {
        storage_bytes: body.storage_bytes,
        repositories: body.repositories,
        warn_percent: body.warn_percent.unwrap_or(WARN_PERCENT_DEFAULT),
    };
    limits.check().map_err(|(field, why)| {
        ApiError::bad_request(why).with_details(json!({ "parameter": field }))
    })?;
    let status = app.registry.set_namespace_quota(ns, limits).await?;
    let detail = json!({
        "storage_bytes": limits.storage_bytes,
        "repositories": limits.repositories,
        "warn_percent": limits.warn_percent,
    })
    .to_string();
    caller
        .auth()
        .audit(
            &caller.identity.name,
            None,
            "namespace.quota.set",
            Some(ns),
            Some(&detail),
        )
        .await;
    Ok(Json(status))
}

/// Removes the namespace's quota (administrators): its pushes are no longer limited.
#[utoipa::path(
    delete,
    path = "/api/v1/namespaces/{ns}/quota",
    tag = "namespaces",
    params(("ns" = String, Path, description = "Namespace (first component of repository names)")),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "Not a namespace name", body = Problem),
        (status = 401, description = "Sign in first", body = Problem),
        (status = 403, description = "Administrators only", body = Problem),
        (status = 404, description = "The namespace has no quota", body = Problem),
    )
)]
async fn remove(
    State(app): State<AppState>,
    caller: Caller,
    Path(ns): Path<String>,
) -> ApiResult<Response> {
    caller.require_admin()?;
    let ns = parse_namespace(&ns)?;
    if !app.registry.remove_namespace_quota(ns).await? {
        return Err(ApiError::not_found(format!("namespace {ns} has no quota")));
    }
    caller
        .auth()
        .audit(
            &caller.identity.name,
            None,
            "namespace.quota.remove",
            Some(ns),
            None,
        )
        .await;
    Ok(StatusCode::NO_CONTENT.into_response())
}
