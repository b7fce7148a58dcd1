//! The webhook sender: claims due deliveries from the outbox queue by queue (a subscription
//! that sends one event at a time has a queue per repository, a batching subscription one),
//! sends each queue's requests one after another in a task of its own, each POST with a
//! time limit and a bounded read of the answer, and records the outcome of every delivery
//! it carried through the registry (backoff and the dead state are decided there). A queue
//! stops at its first request not taken and hands the rest back, so a receiver sees a
//! queue's events in order. At most `webhooks.concurrency` queues are in flight, so a
//! receiver that hangs holds one slot until its timeout and never the others; outcomes are
//! recorded, and more claimed, in rounds at least `ROUND_GAP` apart, when half the slots
//! are free or the poll period passed.

use std::{sync::Arc, time::Duration};

use reqwest::{
    Client,
    dns::{Addrs, Name, Resolve, Resolving},
    header,
};
use tokio::{task::JoinSet, time::Instant};
use tokio_util::sync::CancellationToken;

use crate::{
    error::with_causes,
    registry::{Chain, Outgoing, Registry, Sent, resolve_receiver},
    webhooks::{self as hooks, EVENT_ID_HEADER, SIGNATURE_HEADER},
};

/// Bytes of a refusing receiver's answer kept as the delivery's error.
const ERROR_TEXT_MAX: usize = 512;

/// The shortest time between two rounds, each a few statements on the index: a queue's
/// events claimed in one round are sent one after another within it, so the gap bounds how
/// soon an event pushed meanwhile goes out, not how fast a queue moves.
const ROUND_GAP: Duration = Duration::from_millis(25);

/// Sends deliveries as `owner` until `stop` is cancelled; deliveries in flight then are
/// abandoned (their claims end and another round or replica sends them again).
pub(super) async fn run(registry: Registry, owner: String, stop: CancellationToken) {
    let config = registry.webhooks_config().clone();
    let timeout = Duration::from_secs(config.timeout_secs.max(1));
    let resolver = CheckedResolver {
        allow_loopback: config.allow_loopback,
    };
    // Direct connections only: through a proxy the resolver would check the proxy's address.
    let client = match Client::builder()
        .dns_resolver(Arc::new(resolver))
        .no_proxy()
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
    let lease = Duration::from_secs(registry.webhook_lease_secs());
    let slots = config.concurrency.max(1);
    // A round (record the finished attempts, claim more) takes the index's writer twice, and
    // a round per finished request would add as many writes as the pushes that make the
    // events. So a round waits until half the slots are free, and rounds are at least
    // ROUND_GAP apart: the outcomes of requests that finish meanwhile are recorded together.
    let refill_at = slots / 2;
    let mut in_flight = JoinSet::new();
    // Outcomes not yet recorded.
    let mut done = Vec::new();
    let mut next_round = Instant::now();
    // Woken by the timer: a round is due whatever the slots.
    let mut woken = true;
    loop {
        while let Some(finished) = in_flight.try_join_next() {
            done.extend(finished.into_iter().flatten());
        }
        let mut claimed = 0;
        let now = Instant::now();
        if woken || (in_flight.len() <= refill_at && now >= next_round) {
            next_round = now + ROUND_GAP;
            record(&registry, &owner, &mut done).await;
            let free = slots.saturating_sub(in_flight.len());
            if free > 0 {
                let claimed_at = Instant::now();
                match registry.claim_webhook_deliveries(&owner, free as i64).await {
                    Ok(chains) => {
                        claimed = chains.len();
                        for chain in chains {
                            let (registry, client) = (registry.clone(), client.clone());
                            in_flight.spawn(async move {
                                let claim_ends = claimed_at + lease;
                                send_chain(&registry, &client, chain, timeout, claim_ends).await
                            });
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "webhooks: could not claim deliveries"),
                }
            }
        }
        woken = false;
        // The next round comes soon when it has work (outcomes to record, or a claim that
        // took all it was allowed, so more may be due), else after the period.
        let wake = if !done.is_empty() || (claimed > 0 && in_flight.len() < slots) {
            next_round
        } else {
            Instant::now() + period
        };
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep_until(wake) => woken = true,
            Some(finished) = in_flight.join_next(), if !in_flight.is_empty() => {
                done.extend(finished.into_iter().flatten());
            }
        }
    }
    while let Some(finished) = in_flight.try_join_next() {
        done.extend(finished.into_iter().flatten());
    }
    record(&registry, &owner, &mut done).await;
    in_flight.shutdown().await;
}

/// Records the outcomes in `done` (emptying it).
async fn record(registry: &Registry, owner: &str, done: &mut Vec<(i64, i64, Sent)>) {
    if done.is_empty() {
        return;
    }
    if let Err(e) = registry.finish_webhook_deliveries(owner, done).await {
        // Their claims end and they are sent again: at least once.
        tracing::warn!(error = %e, "webhooks: could not record attempts");
    }
    done.clear();
}

/// Sends `chain`'s requests in order until one is not taken or the claim, which ends at
/// `claim_ends`, could end before an answer: the outcome of every delivery it holds, those
/// not sent [`Sent::Released`].
async fn send_chain(
    registry: &Registry,
    client: &Client,
    chain: Chain,
    timeout: Duration,
    claim_ends: Instant,
) -> Vec<(i64, i64, Sent)> {
    let mut outcomes = Vec::new();
    let mut stopped = false;
    for request in chain {
        if stopped || Instant::now() + timeout >= claim_ends {
            stopped = true;
            let released = request.deliveries.into_iter();
            outcomes.extend(released.map(|d| (d.id, d.attempt, Sent::Released)));
            continue;
        }
        let sent = attempt(registry, client, request, timeout).await;
        stopped = !matches!(sent.first(), Some((_, _, Sent::Delivered(_))));
        outcomes.extend(sent);
    }
    outcomes
}

/// One attempt at `request`: the id, attempt number and outcome of each delivery it carried
/// (one outcome for them all: the receiver took the request or did not).
async fn attempt(
    registry: &Registry,
    client: &Client,
    request: Outgoing,
    timeout: Duration,
) -> Vec<(i64, i64, Sent)> {
    let sent = match tokio::time::timeout(timeout, send(registry, client, &request)).await {
        Ok(sent) => sent,
        Err(_) => Sent::Failed(format!("no answer within {} s", timeout.as_secs())),
    };
    let first = request.deliveries.first().map(|d| d.id);
    let carried = request.deliveries.len();
    match &sent {
        Sent::Delivered(_) | Sent::Released => {}
        Sent::Refused(status, _) => {
            tracing::info!(
                delivery = first,
                carried,
                status,
                "webhook refused by its receiver"
            )
        }
        Sent::Failed(error) => {
            tracing::info!(delivery = first, carried, error, "webhook not delivered")
        }
    }
    request
        .deliveries
        .into_iter()
        .map(|d| (d.id, d.attempt, sent.clone()))
        .collect()
}

/// POSTs `request` and reads at most `webhooks.response_max_bytes` of the answer.
async fn send(registry: &Registry, client: &Client, request: &Outgoing) -> Sent {
    let url = match url::Url::parse(&request.url) {
        Ok(url) => url,
        Err(e) => return Sent::Failed(format!("url: {e}")),
    };
    // A name is checked by the client's resolver as it connects; an address is not resolved.
    let literal = match url.host() {
        Some(url::Host::Ipv4(v4)) => Some(std::net::IpAddr::V4(v4)),
        Some(url::Host::Ipv6(v6)) => Some(std::net::IpAddr::V6(v6)),
        _ => None,
    };
    if let Some(address) = literal {
        let allow_loopback = registry.webhooks_config().allow_loopback;
        if let Err(e) = hooks::check_address(&address.to_string(), address, allow_loopback) {
            return Sent::Failed(e.to_string());
        }
    }
    let source = registry.webhook_source();
    let events: Vec<&hooks::Event> = request.deliveries.iter().map(|d| &d.event).collect();
    let rendered = match events.as_slice() {
        [event] if !request.batched => hooks::render(request.format, event, source),
        _ => match hooks::render_batch(request.format, &events, source) {
            Some(rendered) => rendered,
            None => return Sent::Failed(format!("{} does not batch", request.format.as_str())),
        },
    };
    // Every event's id, in the order the body lists them.
    let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    let mut post = client
        .post(url)
        .header(header::CONTENT_TYPE, rendered.content_type)
        .header(EVENT_ID_HEADER, ids.join(", "));
    for (name, value) in rendered.headers.iter().chain(&request.headers) {
        post = post.header(name, value);
    }
    if let Some(secret) = &request.secret {
        let signature = hooks::signature(secret, registry.clock().now(), &rendered.body);
        post = post.header(SIGNATURE_HEADER, signature);
    }
    let mut response = match post.body(rendered.body).send().await {
        Ok(response) => response,
        Err(e) => return Sent::Failed(with_causes(&e)),
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
            Err(e) => return Sent::Refused(status.as_u16(), with_causes(&e)),
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

/// Resolves a receiver's host name for each connection the client opens and refuses a local
/// address unless `webhooks.allow_loopback` is on: the check and the connection use the same
/// answer, so a name pointed at a local address after its subscription was made is refused.
struct CheckedResolver {
    allow_loopback: bool,
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_loopback = self.allow_loopback;
        Box::pin(async move {
            // The port is the URL's; the client puts it in.
            let found = resolve_receiver(name.as_str(), 0, allow_loopback).await?;
            Ok(Box::new(found.into_iter()) as Addrs)
        })
    }
}
