//! `/api/v1/repositories`: what the registry holds, as each caller may see it, with usage
//! figures; creating a repository ahead of its first push, showing, describing and deleting
//! one; the docker and podman commands for it (`/-/commands`); its tag rules and scanning
//! policy (`/-/settings`);
//! bulk tag deletion (`/-/tags`).
//!
//! Repository names contain slashes, so everything after `/repositories/` is one path; `/-/`
//! separates the name from a sub-resource (`-` cannot start a name component).

use axum::{
    Json, Router,
    body::Body,
    extract::{FromRequest, FromRequestParts, Path, Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{
    ApiError, ApiJson, ApiQuery, ApiResult, Caller, Page, Paging, Problem, bad_parameter, paged,
    policies::invalid,
};
use crate::{
    auth::{Role, Visibility},
    error::Error,
    meta::repositories::{RepositoryOrder, RepositoryQuery, RepositorySummary},
    oci::{RepoName, Tag},
    registry::{Override, ScanPolicy, ScanPolicySettings, TagRules, policies::PolicyRules},
    state::AppState,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/repositories", get(list).post(create))
        .route("/repositories/{*path}", axum::routing::any(one))
}

/// A visibility by its name, or a 400 naming `parameter`.
fn parse_visibility(parameter: &str, name: &str) -> ApiResult<Visibility> {
    Visibility::parse(name).ok_or_else(|| {
        bad_parameter(
            parameter,
            format!("unknown visibility {name:?}: public, internal or private"),
        )
    })
}

/// A JSON body whose every refusal is a 400 naming the field at fault, unknown fields
/// included (axum answers those 422).
struct StrictJson<T>(T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequest<S> for StrictJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> ApiResult<Self> {
        match ApiJson::<T>::from_request(request, state).await {
            Ok(ApiJson(body)) => Ok(StrictJson(body)),
            Err(e) if e.status == StatusCode::UNPROCESSABLE_ENTITY => {
                Err(ApiError::bad_request(e.message))
            }
            Err(e) => Err(e),
        }
    }
}

/// A repository name, or a 400 naming `parameter`.
fn parse_name(parameter: &str, name: &str) -> ApiResult<RepoName> {
    name.parse().map_err(|e| bad_parameter(parameter, e))
}

/// A domain refusal of the description (too long) as a 400 naming the field.
fn description_error(e: Error) -> ApiError {
    match e {
        Error::BadRequest(message) => {
            ApiError::bad_request(message).with_details(json!({ "parameter": "description" }))
        }
        other => other.into(),
    }
}

/// The query of the repository listing; anything else is refused with its name.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Items per page (default 100, at most 1000).
    limit: Option<u32>,
    /// The `next` of the previous page (only valid with the same `sort`).
    cursor: Option<String>,
    /// Only repositories whose name contains this.
    name: Option<String>,
    /// Only repositories with this visibility: `public`, `internal` or `private`.
    visibility: Option<String>,
    /// `name` (the default, A to Z), `pulls` (most pulled first), `pushed` (most recently
    /// pushed first) or `size` (largest first); ties in name order.
    sort: Option<String>,
}

/// The repositories the caller may read (every one for an administrator), with their
/// description, visibility and usage figures, filtered and sorted as asked.
#[utoipa::path(
    get,
    path = "/api/v1/repositories",
    tag = "repositories",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of repositories; `next` and `Link` lead on", body = Page<RepositorySummary>),
        (status = 400, description = "An unknown parameter, sort key or visibility, or bad paging; the message names the parameter", body = Problem),
    )
)]
async fn list(
    State(app): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Response> {
    let paging = Paging {
        limit: q.limit,
        cursor: q.cursor.clone(),
    };
    let limit = paging.limit()?;
    let order = match q.sort.as_deref() {
        None => RepositoryOrder::Name,
        Some(key) => RepositoryOrder::parse(key).ok_or_else(|| {
            bad_parameter(
                "sort",
                format!("unknown sort key {key:?}: name, pulls, pushed or size"),
            )
        })?,
    };
    let visibility = q
        .visibility
        .as_deref()
        .map(|v| parse_visibility("visibility", v))
        .transpose()?;
    let after = match paging.cursor() {
        "" => None,
        cursor => Some(parse_cursor(order, cursor)?),
    };
    let query = RepositoryQuery {
        name_contains: q.name.clone().filter(|n| !n.is_empty()),
        visibility,
        namespace: None,
        order,
        after,
    };
    let viewer = caller.auth().catalog_viewer(&caller.identity);
    let items = app
        .registry
        .repository_summaries(&query, &viewer, limit + 1)
        .await?;
    let mut filters = url::form_urlencoded::Serializer::new(String::new());
    for (key, value) in [
        ("name", &q.name),
        ("visibility", &q.visibility),
        ("sort", &q.sort),
    ] {
        if let Some(value) = value {
            filters.append_pair(key, value);
        }
    }
    let filters = filters.finish();
    let path = if filters.is_empty() {
        "/api/v1/repositories".to_owned()
    } else {
        format!("/api/v1/repositories?{filters}")
    };
    Ok(paged(items, limit, &path, |r| match order {
        RepositoryOrder::Name => r.name.to_string(),
        _ => format!("{}:{}", order.key_of(r), r.name),
    }))
}

/// The (key, name) a page starts after: the name alone in name order, `key:name` otherwise.
fn parse_cursor(order: RepositoryOrder, cursor: &str) -> ApiResult<(i64, String)> {
    let bad = || bad_parameter("cursor", "not one this listing gave (with this sort)");
    match order {
        RepositoryOrder::Name => Ok((0, cursor.to_owned())),
        _ => {
            let (key, name) = cursor.split_once(':').ok_or_else(bad)?;
            Ok((key.parse().map_err(|_| bad())?, name.to_owned()))
        }
    }
}

/// The body of `POST /api/v1/repositories`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewRepository {
    /// The repository's name, e.g. `team/app`.
    name: String,
    /// What it holds (at most 2,000 characters).
    #[serde(default)]
    description: String,
    /// `public`, `internal` or `private`; without it, the namespace's default applies.
    /// Setting it needs the owner role, as changing it does.
    visibility: Option<String>,
}

/// Creates a repository ahead of its first push (whoever may push to it: developers and
/// up); it appears in the catalog once a manifest is pushed.
#[utoipa::path(
    post,
    path = "/api/v1/repositories",
    tag = "repositories",
    request_body = NewRepository,
    responses(
        (status = 201, description = "Created; `Location` names it", body = RepositorySummary),
        (status = 400, description = "A bad name, visibility or description, or an unknown field", body = Problem),
        (status = 401, description = "Sign in first", body = Problem),
        (status = 403, description = "Not allowed to push there (or to set the visibility)", body = Problem),
        (status = 409, description = "The repository exists already", body = Problem),
    )
)]
async fn create(
    State(app): State<AppState>,
    caller: Caller,
    StrictJson(new): StrictJson<NewRepository>,
) -> ApiResult<Response> {
    let repo = parse_name("name", &new.name)?;
    let visibility = new
        .visibility
        .as_deref()
        .map(|v| parse_visibility("visibility", v))
        .transpose()?;
    caller.require(repo.as_str(), Role::Developer).await?;
    if visibility.is_some() {
        caller.require(repo.as_str(), Role::Owner).await?;
    }
    app.registry
        .create_repository(&repo, &new.description)
        .await
        .map_err(description_error)?;
    if let Some(visibility) = visibility {
        caller
            .auth()
            .set_repository_visibility(&caller.identity, &repo, visibility)
            .await?;
    }
    caller
        .auth()
        .audit(
            &caller.identity.name,
            None,
            "repository.create",
            Some(repo.as_str()),
            None,
        )
        .await;
    let shown = summary(&app, &repo).await?;
    let mut response = (StatusCode::CREATED, Json(shown)).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/repositories/{repo}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// `repo` with its figures, its visibility resolved with the registry's default.
async fn summary(app: &AppState, repo: &RepoName) -> ApiResult<RepositorySummary> {
    let default = app.auth.config().default_visibility;
    Ok(app
        .registry
        .repository_summary(repo, default.as_str())
        .await?)
}

/// Refuses a caller who may not read `repo` exactly as a missing repository is refused, so
/// that a private repository stays indistinguishable from none.
pub(super) async fn require_readable(caller: &Caller, repo: &RepoName) -> ApiResult<()> {
    match caller.require(repo.as_str(), Role::Reporter).await {
        Ok(()) => Ok(()),
        Err(e) if e.status == StatusCode::UNAUTHORIZED || e.status == StatusCode::FORBIDDEN => {
            Err(Error::NameUnknown.into())
        }
        Err(e) => Err(e),
    }
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
    let (name, sub) = match path
        .split_once("/-/")
        .or_else(|| super::trust::signatures_path(&path))
    {
        Some((name, sub)) => (name, Some(sub)),
        None => (path.as_str(), None),
    };
    let repo: RepoName = name
        .parse()
        .map_err(|e| ApiError::bad_request(format!("repository name: {e}")))?;
    let method = request.method().clone();
    match (sub, method) {
        (None, Method::GET) => show(&app, &caller, &repo).await,
        (None, Method::DELETE) => delete_repository(&app, &caller, &repo).await,
        (None, Method::PATCH) => {
            let StrictJson(body) = StrictJson::from_request(request, &app).await?;
            update(&app, &caller, &repo, body).await
        }
        (Some("commands"), Method::GET) => {
            let (mut parts, _) = request.into_parts();
            let ApiQuery(query) = ApiQuery::from_request_parts(&mut parts, &app).await?;
            commands(&app, &caller, &repo, &parts.headers, query).await
        }
        (Some("settings"), Method::GET) => get_settings(&app, &caller, &repo).await,
        (Some("settings"), Method::PUT) => {
            let ApiJson(body) = ApiJson::from_request(request, &app).await?;
            put_settings(&app, &caller, &repo, body).await
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
        (Some(sub), method) if super::scans::scan_resource(sub).is_some() => {
            super::scans::route(&app, &caller, &repo, sub, method, request).await
        }
        (Some(sub), _) if super::quarantine::quarantine_resource(sub).is_some() => {
            let digest = super::quarantine::quarantine_resource(sub).unwrap_or_default();
            super::quarantine::route(&app, &caller, &repo, digest, request).await
        }
        (Some(sub), method) if super::trust::signatures_resource(sub).is_some() => {
            let digest = super::trust::signatures_resource(sub).unwrap_or_default();
            super::trust::route(&app, &caller, &repo, digest, method).await
        }
        (Some(sub), method) if sub.starts_with("images/") => {
            super::images::one(&app, &caller, &repo, &sub["images/".len()..], method).await
        }
        (Some("tags"), Method::GET) => {
            let ApiQuery(query) = query_of(request, &app).await?;
            super::tags::list(&app, &caller, &repo, query).await
        }
        (Some("tags"), Method::POST) => super::tags::retag(&app, &caller, &repo, request).await,
        (None | Some("settings") | Some("tags") | Some("commands") | Some("images"), _) => {
            Err(super::method_not_allowed_problem())
        }
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

/// The repository: description, visibility, creation time and usage figures (404 alike
/// for a missing repository and one the caller may not read).
#[utoipa::path(
    get,
    path = "/api/v1/repositories/{name}",
    tag = "repositories",
    params(("name" = String, Path, description = "Repository name (may contain slashes)")),
    responses(
        (status = 200, description = "The repository", body = RepositorySummary),
        (status = 404, description = "No such repository, or not readable by the caller", body = Problem),
    )
)]
async fn show(app: &AppState, caller: &Caller, repo: &RepoName) -> ApiResult<Response> {
    require_readable(caller, repo).await?;
    Ok(Json(summary(app, repo).await?).into_response())
}

/// The body of `PATCH /api/v1/repositories/{name}`: what to change.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RepositoryChanges {
    /// The new description (at most 2,000 characters; maintainers).
    description: Option<String>,
    /// The repository's own visibility: `public`, `internal` or `private` (owners). It may
    /// be set before the repository exists, for its first push.
    visibility: Option<String>,
}

/// Changes the description (maintainers) and the visibility (owners); checked whole before
/// anything changes.
#[utoipa::path(
    patch,
    path = "/api/v1/repositories/{name}",
    tag = "repositories",
    params(("name" = String, Path, description = "Repository name")),
    request_body = RepositoryChanges,
    responses(
        (status = 204, description = "Changed"),
        (status = 400, description = "Nothing to change, an unknown field, a bad visibility or a description too long", body = Problem),
        (status = "4XX", description = "Refused, or (for a description) no such repository", body = Problem),
    )
)]
async fn update(
    app: &AppState,
    caller: &Caller,
    repo: &RepoName,
    changes: RepositoryChanges,
) -> ApiResult<Response> {
    let visibility = changes
        .visibility
        .as_deref()
        .map(|v| parse_visibility("visibility", v))
        .transpose()?;
    if visibility.is_none() && changes.description.is_none() {
        return Err(ApiError::bad_request(
            "nothing to change: give description or visibility",
        ));
    }
    if visibility.is_some() {
        caller.require(repo.as_str(), Role::Owner).await?;
    }
    if let Some(description) = &changes.description {
        caller.require(repo.as_str(), Role::Maintainer).await?;
        app.registry
            .set_repository_description(repo, description)
            .await
            .map_err(description_error)?;
        caller
            .auth()
            .audit(
                &caller.identity.name,
                None,
                "repository.description",
                Some(repo.as_str()),
                None,
            )
            .await;
    }
    if let Some(visibility) = visibility {
        caller
            .auth()
            .set_repository_visibility(&caller.identity, repo, visibility)
            .await?;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `?tag=` of the commands: the tag they push and pull.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct CommandsQuery {
    /// The tag in the push and pull lines (default `latest`).
    tag: Option<String>,
}

/// The command lines of one client.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ClientCommands {
    /// Signs in to the registry, e.g. `docker login registry.example.com`.
    pub login: String,
    /// Pushes the tag, e.g. `docker push registry.example.com/team/app:latest`.
    pub push: String,
    /// Pulls the tag, e.g. `docker pull registry.example.com/team/app:latest`.
    pub pull: String,
}

/// What `/-/commands` answers: docker's lines at the top level, podman's beside them.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RepositoryCommands {
    /// The registry as clients name it: host and port, e.g. `registry.example.com`.
    pub registry: String,
    /// The image reference the lines use, e.g. `registry.example.com/team/app:latest`.
    pub image: String,
    /// `docker login HOST`.
    pub login: String,
    /// `docker push HOST/NAME:TAG`.
    pub push: String,
    /// `docker pull HOST/NAME:TAG`.
    pub pull: String,
    /// The same with podman (over plain HTTP with `--tls-verify=false`).
    pub podman: ClientCommands,
}

/// The `docker login`, `docker push` and `docker pull` lines (and podman's) for this
/// repository, naming the registry by the `external_url` setting or, without it, by the host
/// the request came to.
#[utoipa::path(
    get,
    path = "/api/v1/repositories/{name}/-/commands",
    tag = "repositories",
    params(("name" = String, Path, description = "Repository name"), CommandsQuery),
    responses(
        (status = 200, description = "The command lines", body = RepositoryCommands),
        (status = 400, description = "A bad tag or an unknown parameter, or no host to name", body = Problem),
        (status = 404, description = "No such repository, or not readable by the caller", body = Problem),
    )
)]
async fn commands(
    app: &AppState,
    caller: &Caller,
    repo: &RepoName,
    headers: &HeaderMap,
    query: CommandsQuery,
) -> ApiResult<Response> {
    let tag: Tag = query
        .tag
        .as_deref()
        .unwrap_or("latest")
        .parse()
        .map_err(|e| bad_parameter("tag", e))?;
    require_readable(caller, repo).await?;
    summary(app, repo).await?;
    let (https, registry) = match &app.external_url {
        Some(url) => (url.https, url.host.clone()),
        None => request_host(headers, app.https)
            .ok_or_else(|| ApiError::bad_request("the request names no host; set external_url"))?,
    };
    let image = format!("{registry}/{repo}:{tag}");
    let podman_tls = if https { "" } else { " --tls-verify=false" };
    let body = RepositoryCommands {
        login: format!("docker login {registry}"),
        push: format!("docker push {image}"),
        pull: format!("docker pull {image}"),
        podman: ClientCommands {
            login: format!("podman login{podman_tls} {registry}"),
            push: format!("podman push{podman_tls} {image}"),
            pull: format!("podman pull{podman_tls} {image}"),
        },
        registry,
        image,
    };
    Ok(Json(body).into_response())
}

/// Whether the request came over HTTPS and the host (and port) it was sent to: through a
/// proxy's `X-Forwarded-Proto`/`-Host`, else `Host`. `None` without a usable host.
fn request_host(headers: &HeaderMap, https: bool) -> Option<(bool, String)> {
    let first = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(',').next().unwrap_or(v).trim().to_owned())
    };
    let host = first("x-forwarded-host").or_else(|| first(header::HOST.as_str()))?;
    // Only what a host and port are made of: the value ends up in shell lines.
    let plausible = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b));
    if !plausible {
        return None;
    }
    let https = match first("x-forwarded-proto").as_deref() {
        Some("https") => true,
        Some("http") => false,
        _ => https,
    };
    Some((https, host))
}

/// A repository's settings: its tag rules and its scanning policy (stored and in effect).
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct RepositorySettings {
    #[serde(flatten)]
    rules: TagRules,
    #[serde(flatten)]
    scanning: ScanPolicySettings,
}

/// The fields of [`TagRules`] in a settings body.
const TAG_RULE_FIELDS: [&str; 3] = ["tag_mutability", "mutable_patterns", "protected_patterns"];

/// A settings body: the tag rules and the scanning policy's fields together.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[allow(dead_code)] // Documents the body; it is read field by field.
struct SettingsBody {
    #[serde(flatten)]
    rules: TagRules,
    #[serde(flatten)]
    scanning: ScanPolicyBody,
}

/// The scanning policy's fields of a settings body (`null` = inherit).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[allow(dead_code)] // Documents the body; it is read field by field.
struct ScanPolicyBody {
    /// Whether a pushed image is scanned at once.
    scan_on_push: Option<bool>,
    /// The lowest severity (`critical`, `high`, `medium`, `low`, `unknown`) that quarantines.
    block_severity: Option<String>,
    /// Whether an image without a successful scan is refused at pull.
    block_unscanned: Option<bool>,
    /// Whether only findings with a known fix count for `block_severity`.
    only_fixable: Option<bool>,
}

async fn settings_of(app: &AppState, repo: &RepoName) -> ApiResult<RepositorySettings> {
    Ok(RepositorySettings {
        rules: app.registry.tag_rules(repo).await?,
        scanning: app.registry.repository_scan_policy(repo).await?,
    })
}

/// The repository's settings: tag rules (mutability and protected patterns) and scanning
/// policy (`scan_on_push`, `block_severity`, `block_unscanned`, `only_fixable`; `null` =
/// inherited), with `effective`: each policy value in effect and where it comes from
/// (`repository`, `namespace` or `registry`).
#[utoipa::path(
    get,
    path = "/api/v1/repositories/{name}/-/settings",
    tag = "repositories",
    params(("name" = String, Path, description = "Repository name")),
    responses(
        (status = 200, description = "The settings", body = RepositorySettings),
        (status = "4XX", description = "Refused or unknown", body = Problem),
    )
)]
async fn get_settings(app: &AppState, caller: &Caller, repo: &RepoName) -> ApiResult<Response> {
    caller.require(repo.as_str(), Role::Reporter).await?;
    Ok(Json(settings_of(app, repo).await?).into_response())
}

/// Changes the settings (maintainers). The tag rules are replaced when the body has any of
/// their fields (or no field at all); a bad pattern is refused with its position. Each
/// scanning policy field given is set (`null` = inherit), those left out stay; the
/// repository's scanned images are then judged again by the policy.
#[utoipa::path(
    put,
    path = "/api/v1/repositories/{name}/-/settings",
    tag = "repositories",
    params(("name" = String, Path, description = "Repository name")),
    request_body = SettingsBody,
    responses(
        (status = 200, description = "The saved settings", body = RepositorySettings),
        (status = 400, description = "A bad pattern, an unknown severity, a value of the wrong type or an unknown field, named; nothing is saved", body = Problem),
        (status = "4XX", description = "Refused", body = Problem),
    )
)]
async fn put_settings(
    app: &AppState,
    caller: &Caller,
    repo: &RepoName,
    body: serde_json::Value,
) -> ApiResult<Response> {
    caller.require(repo.as_str(), Role::Maintainer).await?;
    let (patch, rest) = super::namespaces::scan_policy_patch(body, &TAG_RULE_FIELDS)?;
    let rules = if rest.is_empty() && !patch.is_empty() {
        None
    } else {
        let rules: TagRules = serde_json::from_value(serde_json::Value::Object(rest))
            .map_err(|e| ApiError::bad_request(format!("invalid body: {e}")))?;
        Some(rules)
    };
    // Both are checked before either is saved.
    if let Some(rules) = &rules {
        app.registry
            .put_tag_rules(repo, rules)
            .await
            .map_err(invalid)?;
    }
    if !patch.is_empty() {
        let saved = app
            .registry
            .put_repository_scan_policy(repo, &patch)
            .await?;
        let detail = serde_json::to_string::<ScanPolicy>(&saved.stored).unwrap_or_default();
        caller
            .auth()
            .audit(
                &caller.identity.name,
                None,
                "repository.scan_policy",
                Some(repo.as_str()),
                Some(&detail),
            )
            .await;
    }
    Ok(Json(settings_of(app, repo).await?).into_response())
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
        .delete_tags_matching(repo, &rules, f.dry_run, &caller.identity.name)
        .await
        .map_err(invalid)?;
    Ok(Json(json!({ "dry_run": f.dry_run, "removed": removed })).into_response())
}
