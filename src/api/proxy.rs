//! `/api/v1/proxy/rules`: the pull-through cache rules this registry runs with
//! (administrators): those of the configuration file's `[[proxy]]` sections, read only here,
//! and those created, replaced and deleted here (`PUT`/`DELETE …/rules/{prefix}`, the keys
//! of `[[proxy]]` as JSON), in force on every replica within seconds. Credentials are only
//! named (an environment variable or a file on the server), never stored or shown.

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Serialize;

use super::{ApiError, ApiJson, ApiResult, Caller, Problem};
use crate::{
    registry::{ActiveRule, RuleSource},
    state::AppState,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/proxy/rules", get(list))
        .route("/proxy/rules/{*prefix}", get(show).put(save).delete(remove))
        .route("/proxy/evict", post(evict))
}

/// One pull-through cache rule.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct RuleView {
    /// Repositories under `<prefix>/` are copies of the upstream's repository of the rest
    /// of the name.
    prefix: String,
    /// The upstreams, tried in this order.
    upstreams: Vec<UpstreamView>,
    /// Registry hosts routed to this rule by containerd's `?ns=`.
    hosts: Vec<String>,
    /// Seconds a cached tag is served before it is revalidated upstream.
    tag_ttl_secs: i64,
    /// Seconds an upstream 404 is remembered.
    not_found_ttl_secs: i64,
    /// Connect and read timeout of each upstream request, in seconds.
    timeout_secs: u64,
    /// Seconds without a pull after which a cached repository is evicted, if set.
    evict_after_secs: Option<i64>,
    /// The size cap of the rule's cached repositories in bytes, if set.
    max_bytes: Option<u64>,
    /// Cached repositories never evicted.
    pinned: Vec<String>,
    /// Globs of the upstream repositories mirrored (every one when empty).
    include: Vec<String>,
    /// Globs of the upstream repositories never mirrored.
    exclude: Vec<String>,
    /// `config` (the configuration file's; changed only there) or `api`.
    #[schema(value_type = String)]
    source: RuleSource,
    /// For a rule of the API: when it was last written (unix seconds)...
    updated_at: Option<i64>,
    /// ...and by whom.
    updated_by: Option<String>,
}

impl RuleView {
    fn of(active: &ActiveRule) -> RuleView {
        let r = &active.rule;
        RuleView {
            prefix: r.prefix.clone(),
            upstreams: r
                .upstreams
                .iter()
                .map(|u| UpstreamView {
                    url: u.url.clone(),
                    authenticated: u.credentials.is_some() || u.bearer.is_some(),
                })
                .collect(),
            hosts: r.hosts.clone(),
            tag_ttl_secs: r.tag_ttl_secs,
            not_found_ttl_secs: r.not_found_ttl_secs,
            timeout_secs: r.timeout_secs,
            evict_after_secs: r.evict_after_secs,
            max_bytes: r.max_bytes,
            pinned: r.pinned.clone(),
            include: r.repositories.include.clone(),
            exclude: r.repositories.exclude.clone(),
            source: active.source,
            updated_at: active.updated.as_ref().map(|u| u.0),
            updated_by: active.updated.as_ref().map(|u| u.1.clone()),
        }
    }
}

/// What an eviction run removed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct Evicted {
    /// The cached repositories deleted (their blobs go with the next collection).
    evicted: Vec<String>,
}

/// One upstream of a rule.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct UpstreamView {
    /// The registry's base URL.
    url: String,
    /// Whether credentials are configured for it (they are never shown).
    authenticated: bool,
}

/// The pull-through cache rules, in the order of the configuration.
#[utoipa::path(
    get,
    path = "/api/v1/proxy/rules",
    tag = "proxy",
    responses(
        (status = 200, description = "The rules", body = [RuleView]),
        (status = "4XX", description = "Refused", body = Problem),
    )
)]
async fn list(State(app): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<RuleView>>> {
    caller.require_admin()?;
    let rules = app.registry.proxy_rules();
    Ok(Json(rules.iter().map(|r| RuleView::of(r)).collect()))
}

/// One rule in force, by its prefix.
#[utoipa::path(
    get,
    path = "/api/v1/proxy/rules/{prefix}",
    tag = "proxy",
    params(("prefix" = String, Path, description = "The rule's repository prefix")),
    responses(
        (status = 200, description = "The rule", body = RuleView),
        (status = "4XX", description = "Refused or unknown", body = Problem),
    )
)]
async fn show(
    State(app): State<AppState>,
    caller: Caller,
    Path(prefix): Path<String>,
) -> ApiResult<Json<RuleView>> {
    caller.require_admin()?;
    let prefix = prefix.trim_end_matches('/');
    let rules = app.registry.proxy_rules();
    let rule = rules
        .iter()
        .find(|r| r.rule.prefix == prefix)
        .ok_or_else(|| no_rule(prefix))?;
    Ok(Json(RuleView::of(rule)))
}

/// Creates or replaces the rule of a prefix: the keys of a `[[proxy]]` section as JSON
/// (`upstreams` with `url` and named credentials, `hosts`, `tag_ttl`, `not_found_ttl`,
/// `timeout_secs`, `evict_after`, `max_bytes`, `pinned`, `include`, `exclude`), checked as
/// the configuration file's are; a `prefix` in the body must be the path's. In force on
/// this replica at once, on the others within seconds. A prefix inside another rule's, a
/// host another rule routes, or a key at fault is a 400 naming it; a configured prefix a
/// 409. Nothing changes then.
#[utoipa::path(
    put,
    path = "/api/v1/proxy/rules/{prefix}",
    tag = "proxy",
    params(("prefix" = String, Path, description = "The rule's repository prefix")),
    request_body(content = crate::config::ProxyRuleFile, description = "The keys of `[[proxy]]`"),
    responses(
        (status = 201, description = "Created", body = RuleView),
        (status = 200, description = "Replaced", body = RuleView),
        (status = 400, description = "A key at fault, or a clash with another rule, named", body = Problem),
        (status = 409, description = "The prefix is the configuration file's", body = Problem),
        (status = "4XX", description = "Refused", body = Problem),
    )
)]
async fn save(
    State(app): State<AppState>,
    caller: Caller,
    Path(prefix): Path<String>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> ApiResult<Response> {
    caller.require_admin()?;
    let (created, rule) = app
        .registry
        .put_proxy_rule(&prefix, body, &caller.identity.name)
        .await?;
    audit(&caller, "proxy_rule.save", &rule.rule.prefix).await;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(RuleView::of(&rule))).into_response())
}

/// Deletes a rule of the API. Its cached repositories stay, as local repositories (cleanup
/// policies and collection apply to them as to any).
#[utoipa::path(
    delete,
    path = "/api/v1/proxy/rules/{prefix}",
    tag = "proxy",
    params(("prefix" = String, Path, description = "The rule's repository prefix")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 409, description = "The prefix is the configuration file's", body = Problem),
        (status = "4XX", description = "Refused or unknown", body = Problem),
    )
)]
async fn remove(
    State(app): State<AppState>,
    caller: Caller,
    Path(prefix): Path<String>,
) -> ApiResult<Response> {
    caller.require_admin()?;
    match app.registry.delete_proxy_rule(&prefix).await {
        Ok(()) => {}
        Err(crate::error::Error::NotFound) => return Err(no_rule(&prefix)),
        Err(e) => return Err(e.into()),
    }
    audit(&caller, "proxy_rule.delete", prefix.trim_end_matches('/')).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn no_rule(prefix: &str) -> ApiError {
    ApiError::not_found(format!(
        "no pull-through cache rule has the prefix {prefix:?}"
    ))
}

async fn audit(caller: &Caller, action: &str, prefix: &str) {
    caller
        .auth()
        .audit(&caller.identity.name, None, action, Some(prefix), None)
        .await;
}

/// Evicts now what the rules' `evict_after` and `max_bytes` say (the server also does it
/// every minute): idle repositories, then the least recently pulled over the cap; pinned
/// repositories stay.
#[utoipa::path(
    post,
    path = "/api/v1/proxy/evict",
    tag = "proxy",
    responses(
        (status = 200, description = "The repositories evicted", body = Evicted),
        (status = "4XX", description = "Refused", body = Problem),
    )
)]
async fn evict(State(app): State<AppState>, caller: Caller) -> ApiResult<Json<Evicted>> {
    caller.require_admin()?;
    let evicted = app.registry.evict_cached().await?;
    Ok(Json(Evicted {
        evicted: evicted.iter().map(ToString::to_string).collect(),
    }))
}
