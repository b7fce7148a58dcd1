//! `/api/v1/proxy/rules`: the pull-through cache rules this registry runs with (admin). They
//! come from the configuration file's `[[proxy]]` sections; credentials are never shown,
//! only whether an upstream has some.

use axum::{
    Json, Router,
    extract::State,
    routing::{get, post},
};
use serde::Serialize;

use super::{ApiResult, Caller, Problem};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/proxy/rules", get(list))
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
    let rules = app
        .registry
        .proxy_rules()
        .iter()
        .map(|r| RuleView {
            prefix: r.prefix.clone(),
            upstreams: r
                .upstreams
                .iter()
                .map(|u| UpstreamView {
                    url: u.url.clone(),
                    authenticated: u.credentials.is_some(),
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
        })
        .collect();
    Ok(Json(rules))
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
