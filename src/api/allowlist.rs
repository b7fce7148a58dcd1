//! `/api/v1/allowlist`: vulnerabilities accepted for the whole registry (administrators), a
//! namespace, a repository or one image (maintainers of the namespace), each with a reason,
//! its author and an optional expiry. An entry leaves the finding out of the image's
//! vulnerabilities and of its scanning policy's judgement until it expires. Adding and
//! deleting are audit-logged.

use std::collections::HashMap;

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    response::Response,
    routing::{delete, get},
};
use serde::Deserialize;
use serde_json::Value;

use super::{
    ApiError, ApiJson, ApiQuery, ApiResult, Caller, Page, Paging, Problem, bad_parameter, paged,
};
use crate::{
    auth::{Action, Role},
    error::Error,
    oci::{Digest, RepoName},
    registry::{AllowScope, AllowlistEntry, AllowlistFilter, NewEntry, check_reason},
    scan::osv::parse_time,
    state::AppState,
};

/// The longest vulnerability id accepted, in bytes.
const VULNERABILITY_MAX_BYTES: usize = 256;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/allowlist", get(list).post(create))
        .route("/allowlist/{id}", delete(remove))
}

/// A new allowlist entry.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewEntryBody {
    /// The advisory id or an alias of it (`CVE-2024-1234`).
    vulnerability: String,
    /// `registry`, `namespace`, `repository` or `digest`.
    scope: String,
    /// The namespace (`namespace` scope).
    namespace: Option<String>,
    /// The repository (`repository` and `digest` scopes).
    repository: Option<String>,
    /// The image's digest (`digest` scope).
    digest: Option<String>,
    /// When the entry stops applying: unix seconds or an RFC 3339 time, in the future;
    /// left out or `null` = never.
    #[schema(value_type = Option<Object>)]
    expires_at: Option<Value>,
    /// Why the vulnerability is accepted (1 to 1024 bytes, one line).
    reason: String,
}

/// The filters of the allowlist.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only entries of this scope: `registry`, `namespace`, `repository` or `digest`.
    scope: Option<String>,
    /// Only entries of this namespace (`namespace` scope).
    namespace: Option<String>,
    /// Only entries of this repository (`repository` scope; with `scope=digest`, its images).
    repository: Option<String>,
    /// Only entries for this vulnerability id.
    vulnerability: Option<String>,
    /// Items per page (default 100, at most 1000).
    limit: Option<u32>,
    /// The `next` of the previous page.
    cursor: Option<String>,
}

/// The body's scope, checked, or a 400 naming the field at fault.
fn scope_of(body: &NewEntryBody) -> ApiResult<AllowScope> {
    let missing =
        |field: &str| bad_parameter(field, format!("required with scope {:?}", body.scope));
    let unexpected = |field: &str, given: bool| {
        if given {
            Err(bad_parameter(
                field,
                format!("not used with scope {:?}", body.scope),
            ))
        } else {
            Ok(())
        }
    };
    let repository = |name: &Option<String>| -> ApiResult<RepoName> {
        let name = name.as_deref().ok_or_else(|| missing("repository"))?;
        name.parse().map_err(|e| bad_parameter("repository", e))
    };
    Ok(match body.scope.as_str() {
        "registry" => {
            unexpected("namespace", body.namespace.is_some())?;
            unexpected("repository", body.repository.is_some())?;
            unexpected("digest", body.digest.is_some())?;
            AllowScope::Registry
        }
        "namespace" => {
            unexpected("repository", body.repository.is_some())?;
            unexpected("digest", body.digest.is_some())?;
            let ns = body
                .namespace
                .as_deref()
                .ok_or_else(|| missing("namespace"))?;
            match ns.parse::<RepoName>() {
                Ok(_) if !ns.contains('/') => AllowScope::Namespace(ns.to_owned()),
                _ => {
                    return Err(bad_parameter(
                        "namespace",
                        format!(
                            "{ns:?} is not a namespace (the first component of repository names)"
                        ),
                    ));
                }
            }
        }
        "repository" => {
            unexpected("namespace", body.namespace.is_some())?;
            unexpected("digest", body.digest.is_some())?;
            AllowScope::Repository(repository(&body.repository)?)
        }
        "digest" => {
            unexpected("namespace", body.namespace.is_some())?;
            let repo = repository(&body.repository)?;
            let digest = body.digest.as_deref().ok_or_else(|| missing("digest"))?;
            let digest: Digest = digest.parse().map_err(|e| bad_parameter("digest", e))?;
            AllowScope::Digest(repo, digest)
        }
        other => {
            return Err(bad_parameter(
                "scope",
                format!("unknown scope {other:?}: registry, namespace, repository or digest"),
            ));
        }
    })
}

/// `expires_at` as unix seconds: an integer or an RFC 3339 time, after `now`.
fn expiry_of(value: Option<&Value>, now: i64) -> ApiResult<Option<i64>> {
    let at = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_i64().ok_or_else(|| {
            bad_parameter(
                "expires_at",
                "expected whole unix seconds or an RFC 3339 time",
            )
        })?,
        Some(Value::String(s)) => parse_time(s)
            .map(|t| t.unix_timestamp())
            .ok_or_else(|| bad_parameter("expires_at", format!("{s:?} is not an RFC 3339 time")))?,
        Some(other) => {
            return Err(bad_parameter(
                "expires_at",
                format!("expected unix seconds or an RFC 3339 time, not {other}"),
            ));
        }
    };
    if at <= now {
        return Err(bad_parameter(
            "expires_at",
            format!("{at} is not in the future (now is {now})"),
        ));
    }
    Ok(Some(at))
}

/// The vulnerability id, trimmed, or a 400.
fn vulnerability_of(id: &str) -> ApiResult<&str> {
    let id = id.trim();
    if id.is_empty() {
        return Err(bad_parameter("vulnerability", "must not be empty"));
    }
    if id.len() > VULNERABILITY_MAX_BYTES || id.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(bad_parameter(
            "vulnerability",
            format!("an advisory id or alias: at most {VULNERABILITY_MAX_BYTES} bytes, no blanks"),
        ));
    }
    Ok(id)
}

/// Refuses a caller who may not manage entries of `scope`: administrators for the registry,
/// maintainers of the namespace for the others.
async fn require_manager(caller: &Caller, scope: &AllowScope) -> ApiResult<()> {
    match scope.namespace() {
        None => caller.require_admin(),
        Some(ns) => caller.require(ns, Role::Maintainer).await,
    }
}

/// Accepts a vulnerability for a scope. The images the entry covers are judged again by
/// their scanning policy at once (a policy quarantine it caused is lifted).
#[utoipa::path(
    post,
    path = "/api/v1/allowlist",
    tag = "vulnerabilities",
    request_body = NewEntryBody,
    responses(
        (status = 201, description = "Added", body = AllowlistEntry),
        (status = 400, description = "A missing or unknown field, an unknown scope, a scope without its namespace, repository or digest, an expiry not in the future, a bad reason; `details.parameter` names it", body = Problem),
        (status = 401, description = "Sign in first", body = Problem),
        (status = 403, description = "Registry scope: administrators only; the others: maintainers of the namespace", body = Problem),
    )
)]
async fn create(
    State(app): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<(StatusCode, Json<AllowlistEntry>)> {
    let Some(fields) = body.as_object() else {
        return Err(ApiError::bad_request(
            "invalid body: expected a JSON object",
        ));
    };
    // serde names neither the field of a value of the wrong type nor (alone) an unknown
    // one: both are checked here first.
    for (field, value) in fields {
        let optional = ["namespace", "repository", "digest"].contains(&field.as_str());
        let required = ["vulnerability", "scope", "reason"].contains(&field.as_str());
        if !optional && !required && field != "expires_at" {
            return Err(bad_parameter(field, "unknown field"));
        }
        if (optional || required) && !value.is_string() && !(optional && value.is_null()) {
            return Err(bad_parameter(
                field,
                format!("expected a string, not {value}"),
            ));
        }
    }
    let body: NewEntryBody = serde_json::from_value(body).map_err(|e| {
        // What is left: a missing field, which serde names.
        let message = e.to_string();
        let field = ["vulnerability", "scope", "reason"]
            .into_iter()
            .find(|f| message.contains(&format!("`{f}`")));
        match field {
            Some(field) => bad_parameter(field, &message),
            None => ApiError::bad_request(format!("invalid body: {message}")),
        }
    })?;
    let scope = scope_of(&body)?;
    require_manager(&caller, &scope).await?;
    let vulnerability = vulnerability_of(&body.vulnerability)?;
    let reason = check_reason(&body.reason)
        .map_err(|why| bad_parameter("reason", why.trim_start_matches("reason: ")))?;
    let expires_at = expiry_of(body.expires_at.as_ref(), app.registry.clock().now())?;
    let entry = app
        .registry
        .add_allowlist_entry(NewEntry {
            vulnerability,
            scope,
            expires_at,
            reason,
            author: &caller.identity.name,
        })
        .await?;
    audit(&caller, "allowlist.add", &entry).await;
    Ok((StatusCode::CREATED, Json(entry)))
}

/// The allowlist entries the caller may read (those of the registry, and of the namespaces
/// the caller may pull from), oldest first, a page at a time; an expired entry is shown with
/// `expired: true`.
#[utoipa::path(
    get,
    path = "/api/v1/allowlist",
    tag = "vulnerabilities",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of entries; `next` and `Link` lead on", body = Page<AllowlistEntry>),
        (status = 400, description = "An unknown parameter or scope", body = Problem),
        (status = 401, description = "Sign in first", body = Problem),
    )
)]
async fn list(
    State(app): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Response> {
    if caller.identity.is_anonymous() && !caller.identity.admin {
        return Err(Error::Unauthorized("sign in first".into()).into());
    }
    if let Some(scope) = &q.scope
        && !["registry", "namespace", "repository", "digest"].contains(&scope.as_str())
    {
        return Err(bad_parameter(
            "scope",
            format!("unknown scope {scope:?}: registry, namespace, repository or digest"),
        ));
    }
    let limit = Paging {
        limit: q.limit,
        cursor: None,
    }
    .limit()?;
    let mut after = match q.cursor.as_deref() {
        None => 0,
        Some(cursor) => cursor
            .parse::<i64>()
            .map_err(|_| bad_parameter("cursor", "not a cursor of this listing"))?,
    };
    let filter = AllowlistFilter {
        scope_kind: q.scope.clone(),
        namespace: q.namespace.clone(),
        repository: q.repository.clone(),
        vulnerability: q.vulnerability.clone(),
    };
    // Entries of namespaces the caller may not read are skipped: batches are read until the
    // page (and one more entry, which says a next page exists) is full.
    let mut readable: HashMap<String, bool> = HashMap::new();
    let mut items = Vec::new();
    'batches: loop {
        let batch = app.registry.allowlist(&filter, after, limit + 1).await?;
        let last = batch.len() < (limit + 1) as usize;
        for entry in batch {
            after = entry.id;
            let ns = match (&entry.namespace, &entry.repository) {
                (Some(ns), _) => Some(ns.clone()),
                (None, Some(repo)) => Some(crate::auth::namespace_of(repo).to_owned()),
                (None, None) => None,
            };
            if let Some(ns) = ns {
                let may = match readable.get(&ns) {
                    Some(may) => *may,
                    None => {
                        let may = caller
                            .auth()
                            .may_on_namespace(&caller.identity, &ns, Action::Pull)
                            .await?;
                        readable.insert(ns, may);
                        may
                    }
                };
                if !may {
                    continue;
                }
            }
            items.push(entry);
            if items.len() > limit as usize {
                break 'batches;
            }
        }
        if last {
            break;
        }
    }
    let mut path = String::from("/api/v1/allowlist");
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(
            [
                ("scope", &q.scope),
                ("namespace", &q.namespace),
                ("repository", &q.repository),
                ("vulnerability", &q.vulnerability),
            ]
            .into_iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (k, v))),
        )
        .finish();
    if !query.is_empty() {
        path = format!("{path}?{query}");
    }
    Ok(paged(items, limit, &path, |e| e.id.to_string()))
}

/// Deletes an allowlist entry (who may add it may delete it); the images it covered are
/// judged again at once.
#[utoipa::path(
    delete,
    path = "/api/v1/allowlist/{id}",
    tag = "vulnerabilities",
    params(("id" = i64, Path, description = "The entry's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Not an entry id", body = Problem),
        (status = 404, description = "No such entry", body = Problem),
        (status = "4XX", description = "Refused", body = Problem),
    )
)]
async fn remove(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id: i64 = id
        .parse()
        .map_err(|_| bad_parameter("id", format!("{id:?} is not an entry id")))?;
    let unknown = || ApiError::not_found(format!("no allowlist entry {id}"));
    let Some((_, scope)) = app.registry.allowlist_entry(id).await? else {
        return Err(unknown());
    };
    require_manager(&caller, &scope).await?;
    let Some(entry) = app.registry.delete_allowlist_entry(id).await? else {
        return Err(unknown());
    };
    audit(&caller, "allowlist.delete", &entry).await;
    Ok(StatusCode::NO_CONTENT)
}

async fn audit(caller: &Caller, action: &str, entry: &AllowlistEntry) {
    let target = format!("allowlist/{}", entry.id);
    let detail = serde_json::to_string(entry).unwrap_or_default();
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
