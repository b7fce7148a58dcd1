//! `/api/v1/proxy/rules`: the pull-through cache rules this registry runs with (admin). They
//! come from the configuration file's `[[proxy]]` sections; credentials are never shown,
//! only whether an upstream has some.

use axum::{Json, Router, extract::State, routing::get};
use serde::Serialize;

use super::{ApiResult, Caller, Problem};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/proxy/rules", get(list))
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
        })
        .collect();
    Ok(Json(rules))
}
