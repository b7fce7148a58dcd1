//! Webhooks: subscriptions (checked here: the URL against `[webhooks]`, the events, the
//! format, the scope, the headers), their delivery log and redelivery, and what the delivery
//! worker asks of the outbox (claim due deliveries, record each attempt with backoff and the
//! dead state), and the pruning of finished deliveries. The events themselves are written by
//! the index in the transaction of each change (`meta/webhooks.rs`); the ones without a
//! change (a sampled pull, a refused pull, a quota refusal, a replication) are recorded from
//! here; the payloads are rendered by [`crate::webhooks`].

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::{FieldError, Registry};
use crate::{
    error::{Error, Result},
    meta::{
        manifests::StoredManifest,
        webhooks::{
            Attempt, ClaimedDelivery, DeliveryRow, NewEvent, NewSubscription, SubscriptionRow,
        },
    },
    oci::{RepoName, Tag},
    webhooks::{self as hooks, Event, EventKind, Format, Source, TargetError},
};

/// Extra headers a subscription may set at most.
pub const WEBHOOK_HEADERS_MAX: usize = 20;
/// The most events a subscription may take in one request.
pub const WEBHOOK_BATCH_MAX: u32 = 1000;
/// The longest secret, URL and header value taken, in bytes.
const TEXT_MAX: usize = 2048;
/// How long resolving a subscription's host may take when it is created.
const RESOLVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A subscription as asked for (`POST /api/v1/webhooks`).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookInput {
    /// Where deliveries are POSTed: http or https, a host `[webhooks]` allows.
    pub url: String,
    /// Kinds wanted: `push`, `delete`, `tag_moved`, `pull`, `pull_denied`,
    /// `scan_completed`, `vulnerability_found`, `signature_verified`, `signature_failed`,
    /// `gc_completed`, `cleanup_completed`, `quota_exceeded`, `replication_completed`.
    pub events: Vec<String>,
    /// `distribution`, `harbor`, `cloudevents` (structured) or `cloudevents-binary`.
    pub format: String,
    /// Signs each delivery (`Berth-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>." + body>`);
    /// never shown back.
    #[serde(default)]
    pub secret: Option<String>,
    /// `*` (the whole registry, administrators only), a namespace or a repository.
    pub scope: String,
    /// Extra headers sent with each delivery.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The share of pulls sent, above 0 and at most 1 (default 1: every pull); each pull is
    /// drawn at random, so a receiver estimates the total as the events it got / the rate.
    #[serde(default)]
    pub pull_sample_rate: Option<f64>,
    /// Events sent in one request at most (default 1: each alone), for `distribution` (one
    /// envelope listing them) and `cloudevents` (batched mode,
    /// `application/cloudevents-batch+json`, even for one event). Above 1, the
    /// subscription's events are sent in order across all its repositories, one request at
    /// a time.
    #[serde(default)]
    pub batch: Option<u32>,
}

/// A subscription as shown (without its secret).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WebhookView {
    /// Its id.
    pub id: i64,
    /// Where deliveries go.
    pub url: String,
    /// `*`, a namespace or a repository.
    pub scope: String,
    /// Kinds wanted.
    pub events: Vec<String>,
    /// The payload format.
    pub format: String,
    /// Extra headers.
    pub headers: BTreeMap<String, String>,
    /// Whether deliveries are signed (the secret itself is never shown).
    pub signed: bool,
    /// The share of pulls sent.
    pub pull_sample_rate: f64,
    /// Events sent in one request at most.
    pub batch: i64,
    /// Who created it.
    pub created_by: String,
    /// When (RFC 3339).
    pub created_at: String,
}

/// One delivery of the log.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    /// Its id (redeliver with it).
    pub id: i64,
    /// The event's stable id (also in the `Berth-Event-Id` header and the payload).
    pub event_id: String,
    /// The event's kind (`push`, `pull_denied`, ...).
    pub event: String,
    /// The repository.
    pub repository: String,
    /// The manifest concerned.
    pub digest: Option<String>,
    /// The tag concerned.
    pub tag: Option<String>,
    /// `pending`, `delivered` or `dead`.
    pub state: String,
    /// Attempts so far.
    pub attempts: i64,
    /// The receiver's last HTTP status, if it answered.
    pub last_status: Option<i64>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When the event happened (RFC 3339).
    pub occurred_at: String,
    /// When the next attempt is due, while pending (RFC 3339).
    pub next_attempt_at: Option<String>,
    /// When it was delivered or given up (RFC 3339).
    pub finished_at: Option<String>,
    /// Who did it, where known.
    pub actor: Option<String>,
    /// What else the kind tells (a refusal's reason, a run's counts, ...).
    #[schema(value_type = Option<Object>)]
    pub detail: Option<serde_json::Value>,
}

/// A manifest GET, as its `pull` and `pull_denied` events tell it.
pub(crate) struct Pulled<'a> {
    /// The repository.
    pub repo: &'a RepoName,
    /// The manifest read.
    pub manifest: &'a StoredManifest,
    /// The tag it was asked by.
    pub tag: Option<&'a Tag>,
    /// Who asked.
    pub actor: Option<&'a str>,
}

/// Finished deliveries deleted per statement when pruning.
const PRUNE_BATCH: i64 = 1000;

/// A number in [0, 1), uniformly drawn: 53 of the 62 random bits in the low half of a v4
/// UUID (its top two are the variant).
fn unit_draw() -> f64 {
    let (_, low) = uuid::Uuid::new_v4().as_u64_pair();
    ((low << 2) >> 11) as f64 / (1u64 << 53) as f64
}

/// A checked subscription, ready to store.
pub struct CheckedWebhook {
    input: WebhookInput,
    events: Vec<EventKind>,
    format: Format,
}

impl CheckedWebhook {
    /// Its scope (to decide who may create it).
    pub fn scope(&self) -> &str {
        &self.input.scope
    }
}

/// Due deliveries of a (subscription, repository) that sends one event at a time claimed
/// in one round at most: a queue's events then move at one per request's round trip, not
/// one per round.
pub const CHAIN_MAX: i64 = 50;

/// The requests of one queue, in its order: each is sent only after the one before was
/// taken.
pub type Chain = Vec<Outgoing>;

/// A request to send now: one delivery, or several of a subscription that batches.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Where to.
    pub url: String,
    /// In which format.
    pub format: Format,
    /// Whether the subscription batches (its requests list their events even when there
    /// is one: [`hooks::render_batch`]).
    pub batched: bool,
    /// The signing secret.
    pub secret: Option<String>,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// What it carries, oldest first (never empty).
    pub deliveries: Vec<Carried>,
}

/// One delivery in a request.
#[derive(Debug, Clone)]
pub struct Carried {
    /// The delivery's id.
    pub id: i64,
    /// This attempt's number (1 for the first).
    pub attempt: i64,
    /// What to say.
    pub event: Event,
}

/// How an attempt ended, as the sender saw it.
#[derive(Debug, Clone)]
pub enum Sent {
    /// A 2xx answer.
    Delivered(u16),
    /// Another answer, with the start of its body.
    Refused(u16, String),
    /// No answer: why.
    Failed(String),
    /// Not sent: a request before it in its queue was not taken, or the claim would end
    /// before an answer could come (the attempt is not counted).
    Released,
}

fn field(field: &'static str, message: impl std::fmt::Display) -> FieldError {
    FieldError {
        field,
        message: message.to_string(),
    }
}

/// Header names a subscription may not set: the ones the delivery itself sets.
fn reserved_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name.starts_with("ce-")
        || [
            "content-type",
            "content-length",
            "host",
            "connection",
            "transfer-encoding",
            "user-agent",
            "berth-signature",
            "berth-event-id",
        ]
        .contains(&name.as_str())
}

fn view(row: SubscriptionRow) -> WebhookView {
    WebhookView {
        id: row.id,
        url: row.url,
        scope: row.scope,
        events: row
            .events
            .split(',')
            .filter(|e| !e.is_empty())
            .map(str::to_owned)
            .collect(),
        format: row.format,
        headers: serde_json::from_str(&row.headers).unwrap_or_default(),
        signed: row.signed,
        pull_sample_rate: row.pull_sample_rate,
        batch: row.batch_max,
        created_by: row.created_by,
        created_at: hooks::rfc3339(row.created_at),
    }
}

fn delivery_view(row: DeliveryRow) -> DeliveryView {
    let pending = row.state == "pending";
    DeliveryView {
        id: row.id,
        event_id: row.event_id,
        event: row.kind,
        repository: row.repository,
        digest: row.digest,
        tag: row.tag,
        state: row.state,
        attempts: row.attempts,
        last_status: row.last_status,
        last_error: row.last_error,
        occurred_at: hooks::rfc3339(row.occurred_at),
        next_attempt_at: pending.then(|| hooks::rfc3339(row.next_attempt_at)),
        finished_at: row.finished_at.map(hooks::rfc3339),
        actor: row.actor,
        detail: row.detail.and_then(|d| serde_json::from_str(&d).ok()),
    }
}

/// The event a stored delivery describes.
fn event_of(row: &DeliveryRow) -> Result<Event> {
    let kind = EventKind::parse(&row.kind).ok_or_else(|| {
        Error::Internal(anyhow::anyhow!(
            "delivery {} names unknown event {}",
            row.id,
            row.kind
        ))
    })?;
    Ok(Event {
        id: row.event_id.clone(),
        kind,
        repository: row.repository.clone(),
        digest: row.digest.clone(),
        tag: row.tag.clone(),
        media_type: row.media_type.clone(),
        size: row.size,
        previous_digest: row.previous_digest.clone(),
        occurred_at: row.occurred_at,
        actor: row.actor.clone(),
        detail: row
            .detail
            .as_deref()
            .and_then(|d| serde_json::from_str(d).ok()),
    })
}

impl Registry {
    /// Checks a subscription: the URL (scheme, no credentials, `allow_hosts`, and every
    /// address its host resolves to against `allow_loopback`), the events, the format, the
    /// scope, the secret and the headers. The first fault is returned, naming its field.
    pub async fn check_webhook(
        &self,
        input: WebhookInput,
    ) -> std::result::Result<CheckedWebhook, FieldError> {
        if input.url.len() > TEXT_MAX {
            return Err(field("url", format!("longer than {TEXT_MAX} bytes")));
        }
        let url = hooks::check_url(&input.url, &self.webhooks.allow_hosts)
            .map_err(|e| field("url", strip_field(&e)))?;
        self.check_target(&url)
            .await
            .map_err(|e| field("url", strip_field(&e)))?;
        if input.events.is_empty() {
            return Err(field("events", "name at least one event"));
        }
        let mut events = Vec::new();
        for name in &input.events {
            let kind = EventKind::parse(name).ok_or_else(|| {
                let known: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
                field(
                    "events",
                    format!("unknown event {name:?} (known: {})", known.join(", ")),
                )
            })?;
            if !events.contains(&kind) {
                events.push(kind);
            }
        }
        let format = Format::parse(&input.format).ok_or_else(|| {
            let known: Vec<&str> = Format::ALL.iter().map(|f| f.as_str()).collect();
            field(
                "format",
                format!(
                    "unknown format {:?} (known: {})",
                    input.format,
                    known.join(", ")
                ),
            )
        })?;
        if input.scope != "*" && input.scope.parse::<RepoName>().is_err() {
            return Err(field(
                "scope",
                format!(
                    "{:?} is neither \"*\" nor a namespace or repository name",
                    input.scope
                ),
            ));
        }
        if let Some(secret) = &input.secret
            && (secret.is_empty() || secret.len() > TEXT_MAX)
        {
            return Err(field("secret", format!("must hold 1 to {TEXT_MAX} bytes")));
        }
        if let Some(rate) = input.pull_sample_rate
            && !(rate > 0.0 && rate <= 1.0)
        {
            return Err(field(
                "pull_sample_rate",
                format!("{rate} is not above 0 and at most 1"),
            ));
        }
        if let Some(batch) = input.batch {
            if !(1..=WEBHOOK_BATCH_MAX).contains(&batch) {
                return Err(field(
                    "batch",
                    format!("{batch} is not between 1 and {WEBHOOK_BATCH_MAX}"),
                ));
            }
            if batch > 1 && !format.batches() {
                return Err(field(
                    "batch",
                    format!(
                        "{} sends one event per request; batches are for distribution and cloudevents",
                        format.as_str()
                    ),
                ));
            }
        }
        if input.headers.len() > WEBHOOK_HEADERS_MAX {
            return Err(field(
                "headers",
                format!("at most {WEBHOOK_HEADERS_MAX} headers"),
            ));
        }
        for (name, value) in &input.headers {
            if axum::http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(field("headers", format!("{name:?} is not a header name")));
            }
            if reserved_header(name) {
                return Err(field(
                    "headers",
                    format!("{name} is set by the delivery itself"),
                ));
            }
            if value.len() > TEXT_MAX || axum::http::HeaderValue::from_str(value).is_err() {
                return Err(field(
                    "headers",
                    format!("the value of {name} is not a header value"),
                ));
            }
        }
        Ok(CheckedWebhook {
            input,
            events,
            format,
        })
    }

    /// Refuses a target whose host does not resolve, or resolves to a local address while
    /// `webhooks.allow_loopback` is off. Deliveries check again inside each connection
    /// ([`resolve_receiver`]), as a name may be pointed elsewhere later.
    pub async fn check_target(&self, url: &url::Url) -> std::result::Result<(), TargetError> {
        let host = url.host_str().unwrap_or_default();
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let port = url.port_or_known_default().unwrap_or(80);
        let lookup = resolve_receiver(bare, port, self.webhooks.allow_loopback);
        match tokio::time::timeout(RESOLVE_TIMEOUT, lookup).await {
            Ok(found) => found.map(drop),
            Err(_) => Err(TargetError::Unresolvable(bare.into())),
        }
    }

    /// Stores a checked subscription made by `by`.
    pub async fn create_webhook(&self, checked: CheckedWebhook, by: &str) -> Result<WebhookView> {
        let headers = serde_json::to_string(&checked.input.headers).unwrap_or_else(|_| "{}".into());
        let row = self
            .meta
            .insert_webhook(&NewSubscription {
                url: &checked.input.url,
                scope: &checked.input.scope,
                events: &checked.events,
                format: checked.format.as_str(),
                secret: checked.input.secret.as_deref(),
                headers: &headers,
                created_by: by,
                pull_sample_rate: checked.input.pull_sample_rate.unwrap_or(1.0),
                batch_max: i64::from(checked.input.batch.unwrap_or(1)),
            })
            .await?;
        Ok(view(row))
    }

    /// Subscription `id`.
    pub async fn webhook(&self, id: i64) -> Result<Option<WebhookView>> {
        Ok(self.meta.webhook(id).await?.map(view))
    }

    /// Subscriptions after id `after`, `n` (plus one, for paging) by id.
    pub async fn webhooks(&self, after: i64, n: u32) -> Result<Vec<WebhookView>> {
        Ok(self
            .meta
            .webhooks(after, n.saturating_add(1))
            .await?
            .into_iter()
            .map(view)
            .collect())
    }

    /// Deletes subscription `id` with its deliveries (pending ones are not sent).
    pub async fn delete_webhook(&self, id: i64) -> Result<bool> {
        self.meta.delete_webhook(id).await
    }

    /// Deliveries of subscription `id` older than `before` (0: from the newest), newest
    /// first, `n` plus one for paging, only those in `state` when given.
    pub async fn webhook_deliveries(
        &self,
        id: i64,
        before: i64,
        state: Option<&str>,
        n: u32,
    ) -> Result<Vec<DeliveryView>> {
        Ok(self
            .meta
            .webhook_deliveries(id, before, state, n.saturating_add(1))
            .await?
            .into_iter()
            .map(delivery_view)
            .collect())
    }

    /// Sends delivery `delivery` of subscription `id` again: a new delivery of the same
    /// event (same event id) at the end of its queue. `None` when there is no such delivery.
    pub async fn redeliver(&self, id: i64, delivery: i64) -> Result<Option<i64>> {
        self.meta.redeliver(id, delivery).await
    }

    /// How this registry names itself in payloads: `external_url`, else its listen address.
    pub fn webhook_source(&self) -> &Source {
        &self.webhook_source
    }

    /// The `[webhooks]` settings.
    pub fn webhooks_config(&self) -> &crate::config::WebhooksConfig {
        &self.webhooks
    }

    /// How long a claim of deliveries lasts, in seconds: it outlasts an attempt (bounded by
    /// `timeout_secs`) started up to `timeout_secs + 1` after the claim, and the recording
    /// of its outcome. A claim whose owner died is taken over when it ends, so a crash
    /// delays its deliveries by about that much.
    pub fn webhook_lease_secs(&self) -> u64 {
        2 * self.webhooks.timeout_secs.max(1) + 1
    }

    /// Claims the due deliveries of up to `queues` queues for `owner` (the worker), each
    /// queue's as a [`Chain`]: of a (subscription, repository) of a subscription that sends
    /// one event at a time, its oldest due ones up to [`CHAIN_MAX`], one request each; of a
    /// subscription that batches, its oldest due ones up to its `batch`, in one request.
    pub async fn claim_webhook_deliveries(&self, owner: &str, queues: i64) -> Result<Vec<Chain>> {
        let lease = self.webhook_lease_secs() as i64;
        let claimed = self
            .meta
            .claim_deliveries(owner, lease, queues, CHAIN_MAX)
            .await?;
        let mut chains: Vec<Chain> = Vec::with_capacity(claimed.len());
        // The chain of each (subscription, repository) or batching subscription in `chains`.
        let mut queue_at: HashMap<(i64, Option<String>), usize> = HashMap::new();
        for ClaimedDelivery {
            delivery,
            url,
            format,
            secret,
            headers,
            batch_max,
        } in claimed
        {
            let event = event_of(&delivery);
            let format = Format::parse(&format);
            let (Ok(event), Some(format)) = (event, format) else {
                // A row this version cannot send is given up at once, not retried forever
                // (and not sent before the rows behind it: they are ordered after it).
                let attempt = Attempt::Failed {
                    status: None,
                    error: "the stored event or format is not one this version knows",
                    retry_at: None,
                };
                self.meta
                    .finish_deliveries(owner, &[(delivery.id, attempt)])
                    .await?;
                continue;
            };
            let batched = batch_max > 1 && format.batches();
            let queue = (
                delivery.subscription_id,
                (!batched).then(|| delivery.repository.clone()),
            );
            let carried = Carried {
                id: delivery.id,
                attempt: delivery.attempts,
                event,
            };
            let at = *queue_at.entry(queue).or_insert_with(|| {
                chains.push(Vec::new());
                chains.len() - 1
            });
            let chain = &mut chains[at];
            if batched && let Some(request) = chain.first_mut() {
                request.deliveries.push(carried);
                continue;
            }
            let headers: BTreeMap<String, String> =
                serde_json::from_str(&headers).unwrap_or_default();
            chain.push(Outgoing {
                url,
                format,
                batched,
                secret,
                headers: headers.into_iter().collect(),
                deliveries: vec![carried],
            });
        }
        Ok(chains)
    }

    /// Records how attempts ended, each `(delivery id, attempt number, outcome)`: delivered,
    /// due again after the backoff, `dead` after `webhooks.max_attempts`, or handed back
    /// unsent. One write for them all.
    pub async fn finish_webhook_deliveries(
        &self,
        owner: &str,
        done: &[(i64, i64, Sent)],
    ) -> Result<()> {
        let now = self.clock.now();
        let mut attempts = Vec::with_capacity(done.len());
        for (id, attempt, sent) in done {
            let (status, error) = match sent {
                Sent::Released => {
                    attempts.push((*id, Attempt::Released));
                    continue;
                }
                Sent::Delivered(status) => {
                    self.metrics.webhook_delivery("delivered");
                    let status = i64::from(*status);
                    attempts.push((*id, Attempt::Delivered { status }));
                    continue;
                }
                Sent::Refused(status, body) => (Some(i64::from(*status)), body.as_str()),
                Sent::Failed(error) => (None, error.as_str()),
            };
            let dead = *attempt >= i64::from(self.webhooks.max_attempts);
            self.metrics
                .webhook_delivery(if dead { "dead" } else { "retry" });
            let retry_at = (!dead).then(|| {
                let wait = hooks::backoff(
                    (*attempt).clamp(0, i64::from(u32::MAX)) as u32,
                    self.webhooks.backoff_secs,
                    self.webhooks.backoff_max_secs,
                );
                now + wait as i64
            });
            attempts.push((
                *id,
                Attempt::Failed {
                    status,
                    error,
                    retry_at,
                },
            ));
        }
        self.meta.finish_deliveries(owner, &attempts).await
    }

    /// Records `event` for the subscriptions that want it. The change it tells of is done:
    /// a failure is logged, never the caller's.
    pub(crate) async fn webhook_event(&self, event: &NewEvent<'_>) {
        if let Err(e) = self.meta.record_event(event).await {
            tracing::warn!(error = %e, event = event.kind.as_str(), repository = event.repository,
                "could not record a webhook event");
        }
    }

    /// Records that a replication finished, of `repo` or (`None`) of a whole rule, which only
    /// `*` subscriptions get; `detail` tells what it copied: counts, the remote, an error.
    pub async fn replication_completed(
        &self,
        repo: Option<&RepoName>,
        actor: Option<&str>,
        detail: &serde_json::Value,
    ) {
        let repository = repo.map(RepoName::as_str).unwrap_or_default();
        let mut event = NewEvent::new(EventKind::ReplicationCompleted, repository);
        event.actor = actor;
        event.detail = Some(detail);
        self.webhook_event(&event).await;
    }

    /// Records a served pull for the subscriptions that want it: one number in [0, 1) is
    /// drawn, and the subscriptions whose `pull_sample_rate` is above it get the event, so
    /// each sees its share of pulls. Without such a subscription (the read said so) nothing
    /// is written, and a pull the draw leaves out costs no statement either.
    pub(super) async fn pull_event(&self, pulled: &Pulled<'_>) {
        let Some(highest) = pulled.manifest.pull_sample else {
            return;
        };
        let draw = unit_draw();
        if draw >= highest {
            return;
        }
        let digest = pulled.manifest.digest.to_string();
        let event = NewEvent {
            digest: Some(&digest),
            tag: pulled.tag.map(Tag::as_str),
            media_type: Some(&pulled.manifest.media_type),
            size: Some(pulled.manifest.size),
            actor: pulled.actor,
            ..NewEvent::new(EventKind::Pull, pulled.repo.as_str())
        };
        if let Err(e) = self.meta.record_pull(&event, draw).await {
            tracing::warn!(error = %e, repository = %pulled.repo, "could not record a pull event");
        }
    }

    /// Records a pull refused by `gate` (`quarantine`, `scan_policy`, `trust_policy`) for
    /// `reason`.
    pub(super) async fn pull_denied_event(&self, pulled: &Pulled<'_>, gate: &str, reason: &str) {
        let digest = pulled.manifest.digest.to_string();
        let detail = serde_json::json!({ "gate": gate, "reason": reason });
        let event = NewEvent {
            digest: Some(&digest),
            tag: pulled.tag.map(Tag::as_str),
            media_type: Some(&pulled.manifest.media_type),
            size: Some(pulled.manifest.size),
            actor: pulled.actor,
            detail: Some(&detail),
            ..NewEvent::new(EventKind::PullDenied, pulled.repo.as_str())
        };
        self.webhook_event(&event).await;
    }

    /// Deletes delivered and dead deliveries finished longer than `webhooks.retention` ago,
    /// in batches; returns how many.
    pub async fn prune_webhook_deliveries(&self) -> Result<u64> {
        let Some(retention) = self.webhooks.retention_secs() else {
            return Ok(0);
        };
        let before = self.clock.now() - retention;
        let mut total = 0;
        loop {
            let pruned = self.meta.prune_deliveries(before, PRUNE_BATCH).await?;
            total += pruned;
            if pruned < PRUNE_BATCH as u64 {
                return Ok(total);
            }
        }
    }

    /// Deliveries waiting to be sent (`berth_webhook_queue_depth`).
    pub async fn webhook_queue_depth(&self) -> Result<i64> {
        self.meta.pending_deliveries().await
    }
}

/// A target error's message without its leading `url: ` (the field is named apart).
fn strip_field(e: &TargetError) -> String {
    let text = e.to_string();
    text.strip_prefix("url: ")
        .map(str::to_owned)
        .unwrap_or(text)
}

/// The addresses `host` (a name or an address) resolves to on `port`, refused when there are
/// none or one is local while `allow_loopback` is off: the webhook sender's resolver, so the
/// check holds for the connection it opens.
pub async fn resolve_receiver(
    host: &str,
    port: u16,
    allow_loopback: bool,
) -> std::result::Result<Vec<std::net::SocketAddr>, TargetError> {
    let addresses: Vec<_> = match tokio::net::lookup_host((host, port)).await {
        Ok(found) => found.collect(),
        Err(_) => return Err(TargetError::Unresolvable(host.into())),
    };
    if addresses.is_empty() {
        return Err(TargetError::Unresolvable(host.into()));
    }
    for address in &addresses {
        hooks::check_address(host, address.ip(), allow_loopback)?;
    }
    Ok(addresses)
}
