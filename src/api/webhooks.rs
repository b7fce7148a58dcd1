//! `/api/v1/webhooks`: subscriptions to the registry's events (administrators, or
//! maintainers of the subscription's scope), their delivery log, and redelivery.

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Deserialize;
use serde_json::json;

use super::{
    ApiError, ApiJson, ApiQuery, ApiResult, Caller, Paging, Problem, bad_parameter, paged,
};
use crate::{
    auth::Role,
    registry::{DeliveryView, WebhookInput, WebhookView},
    state::AppState,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/webhooks", get(list).post(create))
        .route("/webhooks/{id}", get(show).delete(remove))
        .route("/webhooks/{id}/deliveries", get(deliveries))
        .route(
            "/webhooks/{id}/deliveries/{delivery}/redeliver",
            post(redeliver),
        )
}

/// Administrators for the whole registry (`*`), maintainers of the namespace otherwise.
async fn require_scope(caller: &Caller, scope: &str) -> ApiResult<()> {
    if scope == "*" {
        caller.require_admin()
    } else {
        caller.require(scope, Role::Maintainer).await
    }
}

/// A path id: a positive integer.
fn id_of(parameter: &str, text: &str) -> ApiResult<i64> {
    text.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| bad_parameter(parameter, format!("{text:?} is not an id")))
}

/// Subscription `id`, if the caller may manage it.
async fn managed(app: &AppState, caller: &Caller, id: &str) -> ApiResult<WebhookView> {
    let id = id_of("id", id)?;
    let webhook = app
        .registry
        .webhook(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no webhook {id}")))?;
    require_scope(caller, &webhook.scope).await?;
    Ok(webhook)
}

/// Subscribes a URL to events. The URL, events, format, scope, secret and headers are
/// checked first (the URL's host must resolve to addresses `[webhooks]` allows); one that
/// fails is a 400 naming the field, and nothing is stored. The secret is never shown back.
#[utoipa::path(
    post,
    path = "/api/v1/webhooks",
    tag = "webhooks",
    request_body = WebhookInput,
    responses(
        (status = 201, description = "Created", body = WebhookView),
        (status = 400, description = "A bad URL, event, format, scope, secret or header", body = Problem),
        (status = "4XX", description = "Refused", body = Problem),
    )
)]
async fn create(
    State(app): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> ApiResult<Response> {
    let input: WebhookInput = serde_json::from_value(body)
        .map_err(|e| ApiError::bad_request(format!("invalid body: {e}")))?;
    require_scope(&caller, &input.scope).await?;
    let checked = app
        .registry
        .check_webhook(input)
        .await
        .map_err(|e| bad_parameter(e.field, e.message))?;
    let webhook = app
        .registry
        .create_webhook(checked, &caller.identity.name)
        .await?;
    audit(&caller, "webhook.create", &webhook).await;
    Ok((StatusCode::CREATED, Json(webhook)).into_response())
}

/// Every subscription, by id (administrators).
#[utoipa::path(
    get,
    path = "/api/v1/webhooks",
    tag = "webhooks",
    params(Paging),
    responses(
        (status = 200, description = "`{\"items\": [webhook], \"next\"}`", body = [WebhookView]),
        (status = "4XX", description = "Refused", body = Problem),
    )
)]
async fn list(
    State(app): State<AppState>,
    caller: Caller,
    ApiQuery(paging): ApiQuery<Paging>,
) -> ApiResult<Response> {
    caller.require_admin()?;
    let limit = paging.limit()?;
    let after = match paging.cursor() {
        "" => 0,
        c => id_of("cursor", c)?,
    };
    let items = app.registry.webhooks(after, limit).await?;
    Ok(paged(items, limit, "/api/v1/webhooks", |w| {
        w.id.to_string()
    }))
}

/// One subscription.
#[utoipa::path(
    get,
    path = "/api/v1/webhooks/{id}",
    tag = "webhooks",
    params(("id" = i64, Path, description = "Subscription id")),
    responses(
        (status = 200, description = "The subscription", body = WebhookView),
        (status = "4XX", description = "Refused or unknown", body = Problem),
    )
)]
async fn show(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(Json(managed(&app, &caller, &id).await?).into_response())
}

/// Deletes a subscription with its delivery log; deliveries still pending are not sent.
#[utoipa::path(
    delete,
    path = "/api/v1/webhooks/{id}",
    tag = "webhooks",
    params(("id" = i64, Path, description = "Subscription id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = "4XX", description = "Refused or unknown", body = Problem),
    )
)]
async fn remove(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let webhook = managed(&app, &caller, &id).await?;
    app.registry.delete_webhook(webhook.id).await?;
    audit(&caller, "webhook.delete", &webhook).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `?limit=&cursor=&state=` of the delivery log.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct DeliveriesQuery {
    /// Items per page (default 100, at most 1000).
    limit: Option<u32>,
    /// The `next` of the previous page.
    cursor: Option<String>,
    /// Only deliveries in this state: `pending`, `delivered` or `dead`.
    state: Option<String>,
}

/// The delivery log of a subscription, newest first: per delivery its event, state,
/// attempts, the receiver's last status and the last error.
#[utoipa::path(
    get,
    path = "/api/v1/webhooks/{id}/deliveries",
    tag = "webhooks",
    params(("id" = i64, Path, description = "Subscription id"), DeliveriesQuery),
    responses(
        (status = 200, description = "`{\"items\": [delivery], \"next\"}`", body = [DeliveryView]),
        (status = "4XX", description = "Refused, unknown or a bad parameter", body = Problem),
    )
)]
async fn deliveries(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<DeliveriesQuery>,
) -> ApiResult<Response> {
    let webhook = managed(&app, &caller, &id).await?;
    let paging = Paging {
        limit: query.limit,
        cursor: query.cursor,
    };
    let limit = paging.limit()?;
    let before = match paging.cursor() {
        "" => 0,
        c => id_of("cursor", c)?,
    };
    let state = query.state.as_deref();
    if let Some(s) = state
        && !["pending", "delivered", "dead"].contains(&s)
    {
        return Err(bad_parameter(
            "state",
            format!("{s:?} is not pending, delivered or dead"),
        ));
    }
    let items: Vec<DeliveryView> = app
        .registry
        .webhook_deliveries(webhook.id, before, state, limit)
        .await?;
    let path = match state {
        Some(s) => format!("/api/v1/webhooks/{}/deliveries?state={s}", webhook.id),
        None => format!("/api/v1/webhooks/{}/deliveries", webhook.id),
    };
    Ok(paged(items, limit, &path, |d| d.id.to_string()))
}

/// Sends a delivery's event again (same event id), as a new delivery at the end of its
/// repository's queue: for a dead delivery once the receiver is fixed, or to replay one.
#[utoipa::path(
    post,
    path = "/api/v1/webhooks/{id}/deliveries/{delivery}/redeliver",
    tag = "webhooks",
    params(
        ("id" = i64, Path, description = "Subscription id"),
        ("delivery" = i64, Path, description = "Delivery id"),
    ),
    responses(
        (status = 202, description = "`{\"delivery\": <the new delivery's id>}` queued"),
        (status = "4XX", description = "Refused or unknown", body = Problem),
    )
)]
async fn redeliver(
    State(app): State<AppState>,
    caller: Caller,
    Path((id, delivery)): Path<(String, String)>,
) -> ApiResult<Response> {
    let webhook = managed(&app, &caller, &id).await?;
    let delivery = id_of("delivery", &delivery)?;
    let queued = app
        .registry
        .redeliver(webhook.id, delivery)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!("no delivery {delivery} of webhook {}", webhook.id))
        })?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "delivery": queued }))).into_response())
}

/// Records `action` on subscription `webhook`.
async fn audit(caller: &Caller, action: &str, webhook: &WebhookView) {
    let detail = json!({
        "url": webhook.url,
        "scope": webhook.scope,
        "events": webhook.events,
        "format": webhook.format,
    })
    .to_string();
    caller
        .auth()
        .audit(
            &caller.identity.name,
            None,
            action,
            Some(&webhook.id.to_string()),
            Some(&detail),
        )
        .await;
}
