//! The webhook sender: claims due deliveries from the outbox (each the oldest pending of its
//! subscription and repository, so a receiver sees a repository's events in order), POSTs
//! each in its own task with a time limit and a bounded read of the answer, and records the
//! outcome through the registry (backoff and the dead state are decided there). At most
//! `webhooks.concurrency` deliveries are in flight, so a receiver that hangs holds one slot
//! until its timeout and never the others.

use std::time::Duration;

use reqwest::{Client, header};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::{
    registry::{Outgoing, Registry, Sent},
    webhooks::{self as hooks, EVENT_ID_HEADER, SIGNATURE_HEADER},
};

/// Bytes of a refusing receiver's answer kept as the delivery's error.
const ERROR_TEXT_MAX: usize = 512;

/// Sends deliveries as `owner` until `stop` is cancelled; deliveries in flight then are
/// abandoned (their claims end and another round or replica sends them again).
pub(super) async fn run(registry: Registry, owner: String, stop: CancellationToken) {
    let config = registry.webhooks_config().clone();
    let timeout = Duration::from_secs(config.timeout_secs.max(1));
    let client = match Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("berth-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "webhooks: cannot build the HTTP client; none are sent");
            return;
        }
    };
    let period = Duration::from_millis(config.poll_millis.max(10));
    let slots = config.concurrency.max(1);
    let mut in_flight = JoinSet::new();
    loop {
        let free = slots.saturating_sub(in_flight.len());
        let mut claimed = 0;
        if free > 0 {
            match registry.claim_webhook_deliveries(&owner, free as i64).await {
                Ok(batch) => {
                    claimed = batch.len();
                    for delivery in batch {
                        let (registry, client, owner) =
                            (registry.clone(), client.clone(), owner.clone());
                        in_flight.spawn(async move {
                            deliver(&registry, &client, &owner, delivery, timeout).await
                        });
                    }
                }
                Err(e) => tracing::warn!(error = %e, "webhooks: could not claim deliveries"),
            }
        }
        if claimed > 0 && in_flight.len() < slots {
            continue;
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(period) => {}
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
        }
    }
    in_flight.shutdown().await;
}

/// One attempt at `delivery`, recorded.
async fn deliver(
    registry: &Registry,
    client: &Client,
    owner: &str,
    delivery: Outgoing,
    timeout: Duration,
) {
    let sent = match tokio::time::timeout(timeout, send(registry, client, &delivery)).await {
        Ok(sent) => sent,
        Err(_) => Sent::Failed(format!("no answer within {} s", timeout.as_secs())),
    };
    match &sent {
        Sent::Delivered(_) => {}
        Sent::Refused(status, _) => {
            tracing::info!(
                delivery = delivery.id,
                status,
                "webhook refused by its receiver"
            )
        }
        Sent::Failed(error) => {
            tracing::info!(delivery = delivery.id, error, "webhook not delivered")
        }
    }
    if let Err(e) = registry
        .finish_webhook_delivery(delivery.id, owner, delivery.attempt, &sent)
        .await
    {
        tracing::warn!(delivery = delivery.id, error = %e, "webhooks: could not record an attempt");
    }
}

/// POSTs `delivery` and reads at most `webhooks.response_max_bytes` of the answer.
async fn send(registry: &Registry, client: &Client, delivery: &Outgoing) -> Sent {
    let url = match url::Url::parse(&delivery.url) {
        Ok(url) => url,
        Err(e) => return Sent::Failed(format!("url: {e}")),
    };
    // The host may resolve elsewhere than when the subscription was made.
    if let Err(e) = registry.check_target(&url).await {
        return Sent::Failed(e.to_string());
    }
    let rendered = hooks::render(delivery.format, &delivery.event, registry.webhook_source());
    let mut request = client
        .post(url)
        .header(header::CONTENT_TYPE, rendered.content_type)
        .header(EVENT_ID_HEADER, &delivery.event.id);
    for (name, value) in rendered.headers.iter().chain(&delivery.headers) {
        request = request.header(name, value);
    }
    if let Some(secret) = &delivery.secret {
        let signature = hooks::signature(secret, registry.clock().now(), &rendered.body);
        request = request.header(SIGNATURE_HEADER, signature);
    }
    let mut response = match request.body(rendered.body).send().await {
        Ok(response) => response,
        Err(e) => return Sent::Failed(describe(&e)),
    };
    let status = response.status();
    let limit = registry.webhooks_config().response_max_bytes;
    let mut read = Vec::new();
    while read.len() < limit {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                read.extend_from_slice(&chunk[..chunk.len().min(limit - read.len())])
            }
            Ok(None) => break,
            Err(e) if status.is_success() => {
                // The receiver took the event; only its answer was cut.
                tracing::debug!(error = %e, "webhooks: the answer was cut");
                break;
            }
            Err(e) => return Sent::Refused(status.as_u16(), describe(&e)),
        }
    }
    if status.is_success() {
        Sent::Delivered(status.as_u16())
    } else {
        read.truncate(ERROR_TEXT_MAX);
        let text = String::from_utf8_lossy(&read);
        Sent::Refused(status.as_u16(), format!("HTTP {status}: {}", text.trim()))
    }
}

/// A reqwest error with its causes (its own message alone says only "error sending request").
fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
