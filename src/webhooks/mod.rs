//! Webhooks, the pure part: what an event says ([`Event`], its [`EventKind`] and how each
//! format names it), the payload formats a subscription may ask for ([`Format`]: CNCF
//! Distribution's notification envelope, Harbor's default payload, CloudEvents 1.0
//! structured, batched and binary), the HMAC signature header, and
//! the rules a target URL and the addresses it resolves to must follow. No IO here: the
//! registry stores subscriptions and the outbox, the worker sends.

use std::net::IpAddr;

use ring::hmac;
use serde_json::{Value, json};

/// The header carrying the signature: `t=<unix seconds>,v1=<hex HMAC-SHA256>` over
/// `"<t>." + body`, keyed with the subscription's secret.
pub const SIGNATURE_HEADER: &str = "Berth-Signature";
/// The header naming the event (the same on every attempt and redelivery).
pub const EVENT_ID_HEADER: &str = "Berth-Event-Id";
/// CNCF Distribution's envelope media type.
pub const DISTRIBUTION_MEDIA_TYPE: &str = "application/vnd.docker.distribution.events.v1+json";
/// CloudEvents' structured mode media type.
pub const CLOUDEVENTS_MEDIA_TYPE: &str = "application/cloudevents+json";
/// CloudEvents' batched mode media type (a JSON array of structured events).
pub const CLOUDEVENTS_BATCH_MEDIA_TYPE: &str = "application/cloudevents-batch+json";

/// What happened, as subscriptions filter it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A manifest was pushed (with or without a tag).
    Push,
    /// A manifest or a tag was deleted.
    Delete,
    /// A tag that pointed at one manifest now points at another.
    TagMoved,
    /// A manifest was served (GET), sampled by each subscription's `pull_sample_rate`.
    Pull,
    /// A manifest GET was refused by a pull gate (quarantine, scanning or trust policy).
    PullDenied,
    /// A scan of an image finished (successfully or not).
    ScanCompleted,
    /// An image has findings it did not have before (after a scan or an advisory import).
    VulnerabilityFound,
    /// A signature was recorded and verified against a trust policy.
    SignatureVerified,
    /// A signature was recorded and did not verify.
    SignatureFailed,
    /// A garbage collection run finished.
    GcCompleted,
    /// A cleanup policy run finished.
    CleanupCompleted,
    /// A push was refused by a namespace's storage quota.
    QuotaExceeded,
    /// A replication of a repository finished.
    ReplicationCompleted,
}

impl EventKind {
    /// Every kind, by the name subscriptions use.
    pub const ALL: [EventKind; 13] = [
        EventKind::Push,
        EventKind::Delete,
        EventKind::TagMoved,
        EventKind::Pull,
        EventKind::PullDenied,
        EventKind::ScanCompleted,
        EventKind::VulnerabilityFound,
        EventKind::SignatureVerified,
        EventKind::SignatureFailed,
        EventKind::GcCompleted,
        EventKind::CleanupCompleted,
        EventKind::QuotaExceeded,
        EventKind::ReplicationCompleted,
    ];

    /// The name subscriptions and the outbox use.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Push => "push",
            EventKind::Delete => "delete",
            EventKind::TagMoved => "tag_moved",
            EventKind::Pull => "pull",
            EventKind::PullDenied => "pull_denied",
            EventKind::ScanCompleted => "scan_completed",
            EventKind::VulnerabilityFound => "vulnerability_found",
            EventKind::SignatureVerified => "signature_verified",
            EventKind::SignatureFailed => "signature_failed",
            EventKind::GcCompleted => "gc_completed",
            EventKind::CleanupCompleted => "cleanup_completed",
            EventKind::QuotaExceeded => "quota_exceeded",
            EventKind::ReplicationCompleted => "replication_completed",
        }
    }

    /// The kind named `name`.
    pub fn parse(name: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// Distribution's `action`: its own three (`push`, `pull`, `delete`; a moved tag is a
    /// push of that tag), else Berth's name of the kind, which consumers that switch on the
    /// three ignore.
    pub fn distribution_action(self) -> &'static str {
        match self {
            EventKind::Push | EventKind::TagMoved => "push",
            EventKind::Delete => "delete",
            EventKind::Pull => "pull",
            other => other.as_str(),
        }
    }

    /// Harbor's event `type`: Harbor's own where it has one (`PUSH_ARTIFACT`,
    /// `PULL_ARTIFACT`, `DELETE_ARTIFACT`, `SCANNING_COMPLETED`, `QUOTA_EXCEED`,
    /// `REPLICATION`, `TAG_RETENTION`), else Berth's name in upper case.
    pub fn harbor_type(self) -> &'static str {
        match self {
            EventKind::Push | EventKind::TagMoved => "PUSH_ARTIFACT",
            EventKind::Delete => "DELETE_ARTIFACT",
            EventKind::Pull => "PULL_ARTIFACT",
            EventKind::PullDenied => "PULL_DENIED",
            EventKind::ScanCompleted => "SCANNING_COMPLETED",
            EventKind::VulnerabilityFound => "VULNERABILITY_FOUND",
            EventKind::SignatureVerified => "SIGNATURE_VERIFIED",
            EventKind::SignatureFailed => "SIGNATURE_FAILED",
            EventKind::GcCompleted => "GC_COMPLETED",
            EventKind::CleanupCompleted => "TAG_RETENTION",
            EventKind::QuotaExceeded => "QUOTA_EXCEED",
            EventKind::ReplicationCompleted => "REPLICATION",
        }
    }

    /// The CloudEvents `type` (`io.berth.<noun>.<verb>`).
    pub fn cloudevents_type(self) -> &'static str {
        match self {
            EventKind::Push => "io.berth.artifact.pushed",
            EventKind::Delete => "io.berth.artifact.deleted",
            EventKind::TagMoved => "io.berth.tag.moved",
            EventKind::Pull => "io.berth.artifact.pulled",
            EventKind::PullDenied => "io.berth.pull.denied",
            EventKind::ScanCompleted => "io.berth.scan.completed",
            EventKind::VulnerabilityFound => "io.berth.vulnerability.found",
            EventKind::SignatureVerified => "io.berth.signature.verified",
            EventKind::SignatureFailed => "io.berth.signature.failed",
            EventKind::GcCompleted => "io.berth.gc.completed",
            EventKind::CleanupCompleted => "io.berth.cleanup.completed",
            EventKind::QuotaExceeded => "io.berth.quota.exceeded",
            EventKind::ReplicationCompleted => "io.berth.replication.completed",
        }
    }
}

/// The payload dialect of a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// CNCF Distribution's notification envelope (existing consumers work unchanged).
    Distribution,
    /// Harbor's default webhook payload.
    Harbor,
    /// CloudEvents 1.0, structured mode (`application/cloudevents+json`).
    CloudEvents,
    /// CloudEvents 1.0, binary mode (attributes in `ce-*` headers, the data as the body).
    CloudEventsBinary,
}

impl Format {
    /// Every format, by name.
    pub const ALL: [Format; 4] = [
        Format::Distribution,
        Format::Harbor,
        Format::CloudEvents,
        Format::CloudEventsBinary,
    ];

    /// The name subscriptions use.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Distribution => "distribution",
            Format::Harbor => "harbor",
            Format::CloudEvents => "cloudevents",
            Format::CloudEventsBinary => "cloudevents-binary",
        }
    }

    /// The format named `name`.
    pub fn parse(name: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.as_str() == name)
    }

    /// Whether one request can carry several events ([`render_batch`]): Distribution's
    /// envelope is a list, and CloudEvents has a batched mode; Harbor's payload and
    /// CloudEvents' binary mode are one event each.
    pub fn batches(self) -> bool {
        matches!(self, Format::Distribution | Format::CloudEvents)
    }
}

/// One event, as the outbox keeps it; every payload is rendered from these facts, so each
/// attempt sends the same content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The stable id (a UUID), shared by every subscription the event went to.
    pub id: String,
    /// What happened.
    pub kind: EventKind,
    /// The repository it happened in.
    pub repository: String,
    /// The manifest concerned.
    pub digest: Option<String>,
    /// The tag concerned.
    pub tag: Option<String>,
    /// The manifest's media type.
    pub media_type: Option<String>,
    /// The manifest's size in bytes.
    pub size: Option<i64>,
    /// For a moved tag, the manifest it pointed at before.
    pub previous_digest: Option<String>,
    /// When, in unix seconds of the registry's clock.
    pub occurred_at: i64,
    /// Who did it (a user or token name), where known.
    pub actor: Option<String>,
    /// What else the kind tells (a JSON object): a refusal's `reason`, a run's counts, a
    /// scan's findings, a signature's tool and identity.
    pub detail: Option<Value>,
}

/// Who sends: the registry's base URL (`external_url`, else its listen address) and the
/// name of the process, for the payloads' `source` fields.
#[derive(Debug, Clone)]
pub struct Source {
    /// Like `https://registry.example.com`, without a trailing slash.
    pub base_url: String,
    /// The node that sent it.
    pub instance: String,
}

/// A rendered request: its content type, extra headers and body.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Headers the format adds (CloudEvents binary mode's `ce-*`).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// RFC 3339 of unix seconds `at` (UTC).
pub fn rfc3339(at: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(at)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into())
}

/// `event` in `format`, as sent by `source`.
pub fn render(format: Format, event: &Event, source: &Source) -> Rendered {
    match format {
        Format::Distribution => Rendered {
            content_type: DISTRIBUTION_MEDIA_TYPE,
            headers: Vec::new(),
            body: json!({ "events": [distribution_event(event, source)] })
                .to_string()
                .into_bytes(),
        },
        Format::Harbor => Rendered {
            content_type: "application/json",
            headers: Vec::new(),
            body: harbor_payload(event, source).to_string().into_bytes(),
        },
        Format::CloudEvents => Rendered {
            content_type: CLOUDEVENTS_MEDIA_TYPE,
            headers: Vec::new(),
            body: structured_cloudevent(event, source)
                .to_string()
                .into_bytes(),
        },
        Format::CloudEventsBinary => {
            let attributes = cloudevent_attributes(event, source);
            let headers = attributes
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(k, v)| Some((format!("ce-{k}"), v.as_str()?.to_owned())))
                .collect();
            Rendered {
                content_type: "application/json",
                headers,
                body: event_data(event, source).to_string().into_bytes(),
            }
        }
    }
}

/// `events`, in order, in one request of `format`, for a subscription that batches: a
/// Distribution envelope listing them all, or CloudEvents' batched mode (an array of
/// structured events, `application/cloudevents-batch+json`). `None` for a format that
/// cannot carry more than one ([`Format::batches`]).
pub fn render_batch(format: Format, events: &[&Event], source: &Source) -> Option<Rendered> {
    let (content_type, body) = match format {
        Format::Distribution => (
            DISTRIBUTION_MEDIA_TYPE,
            json!({ "events": events.iter().map(|e| distribution_event(e, source)).collect::<Vec<_>>() }),
        ),
        Format::CloudEvents => (
            CLOUDEVENTS_BATCH_MEDIA_TYPE,
            Value::Array(
                events
                    .iter()
                    .map(|e| structured_cloudevent(e, source))
                    .collect(),
            ),
        ),
        Format::Harbor | Format::CloudEventsBinary => return None,
    };
    Some(Rendered {
        content_type,
        headers: Vec::new(),
        body: body.to_string().into_bytes(),
    })
}

/// `event` as a CloudEvent in structured mode: its attributes with the data beside them.
fn structured_cloudevent(event: &Event, source: &Source) -> Value {
    let mut envelope = cloudevent_attributes(event, source);
    envelope["datacontenttype"] = json!("application/json");
    envelope["data"] = event_data(event, source);
    envelope
}

/// The manifest URL of `event` (by digest), the repository's tag list without one, or the
/// registry's base for a registry-wide event (no repository).
fn target_url(event: &Event, source: &Source) -> String {
    match &event.digest {
        _ if event.repository.is_empty() => format!("{}/v2/", source.base_url),
        Some(d) => format!("{}/v2/{}/manifests/{d}", source.base_url, event.repository),
        None => format!("{}/v2/{}/tags/list", source.base_url, event.repository),
    }
}

/// One event of Distribution's envelope (docs: "Notifications", "Events"): `action` as
/// [`EventKind::distribution_action`] says, `actor.name` who did it, and Berth's `detail`
/// (a refusal's reason, a run's counts) beside the documented fields, which consumers that
/// do not know it skip.
fn distribution_event(event: &Event, source: &Source) -> Value {
    let mut target = json!({
        "repository": event.repository,
        "url": target_url(event, source),
    });
    if let Some(media_type) = &event.media_type {
        target["mediaType"] = json!(media_type);
    }
    if let Some(digest) = &event.digest {
        target["digest"] = json!(digest);
    }
    if let Some(size) = event.size {
        target["size"] = json!(size);
        target["length"] = json!(size);
    }
    if let Some(tag) = &event.tag {
        target["tag"] = json!(tag);
    }
    let actor = match &event.actor {
        Some(name) => json!({ "name": name }),
        None => json!({}),
    };
    let mut out = json!({
        "id": event.id,
        "timestamp": rfc3339(event.occurred_at),
        "action": event.kind.distribution_action(),
        "target": target,
        "request": { "id": event.id },
        "actor": actor,
        "source": { "addr": source.base_url, "instanceID": source.instance },
    });
    if let Some(detail) = &event.detail {
        out["detail"] = detail.clone();
    }
    out
}

/// Harbor's default payload (`type`, `occur_at`, `operator`, `event_data` with `resources`
/// and `repository`); Berth's `detail` goes in `event_data.custom_attributes`, as Harbor's
/// quota events carry theirs.
fn harbor_payload(event: &Event, source: &Source) -> Value {
    let (namespace, name) = event
        .repository
        .rsplit_once('/')
        .unwrap_or(("", event.repository.as_str()));
    let host = source
        .base_url
        .split_once("://")
        .map_or(source.base_url.as_str(), |(_, h)| h);
    let reference = event.tag.as_deref().or(event.digest.as_deref());
    let resource_url = match reference {
        Some(r) if event.tag.is_some() => format!("{host}/{}:{r}", event.repository),
        Some(r) => format!("{host}/{}@{r}", event.repository),
        None => format!("{host}/{}", event.repository),
    };
    let mut resource = json!({ "resource_url": resource_url });
    if let Some(digest) = &event.digest {
        resource["digest"] = json!(digest);
    }
    if let Some(tag) = &event.tag {
        resource["tag"] = json!(tag);
    }
    let mut data = json!({
        "resources": [resource],
        "repository": {
            "name": name,
            "namespace": namespace,
            "repo_full_name": event.repository,
            "repo_type": "",
        },
    });
    if let Some(detail) = &event.detail {
        data["custom_attributes"] = detail.clone();
    }
    json!({
        "type": event.kind.harbor_type(),
        "occur_at": event.occurred_at,
        "operator": event.actor.as_deref().unwrap_or_default(),
        "event_data": data,
    })
}

/// The CloudEvents context attributes (spec v1.0: `specversion`, `id`, `source`, `type`
/// required; `subject`, `time` optional).
fn cloudevent_attributes(event: &Event, source: &Source) -> Value {
    let mut attributes = json!({
        "specversion": "1.0",
        "id": event.id,
        "source": format!("{}/v2/{}", source.base_url, event.repository),
        "type": event.kind.cloudevents_type(),
        "time": rfc3339(event.occurred_at),
    });
    if let Some(subject) = event.tag.as_ref().or(event.digest.as_ref()) {
        attributes["subject"] = json!(subject);
    }
    attributes
}

/// The event's facts as CloudEvents `data`.
fn event_data(event: &Event, source: &Source) -> Value {
    json!({
        "repository": event.repository,
        "digest": event.digest,
        "tag": event.tag,
        "mediaType": event.media_type,
        "size": event.size,
        "previousDigest": event.previous_digest,
        "url": target_url(event, source),
        "actor": event.actor,
        "detail": event.detail,
    })
}

/// The value of [`SIGNATURE_HEADER`] for `body` sent at unix second `at`.
pub fn signature(secret: &str, at: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let mut context = hmac::Context::with_key(&key);
    context.update(format!("{at}.").as_bytes());
    context.update(body);
    format!("t={at},v1={}", hex::encode(context.sign().as_ref()))
}

/// Why a target URL or address is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    /// Not an absolute URL.
    #[error("url: {0}")]
    Unparsable(String),
    /// Neither http nor https.
    #[error("url: scheme {0:?} is not http or https")]
    Scheme(String),
    /// No host.
    #[error("url: no host")]
    NoHost,
    /// Credentials in the URL would be shown back to whoever reads the subscription.
    #[error("url: credentials in the URL are refused (sign with the secret instead)")]
    Credentials,
    /// A host outside `webhooks.allow_hosts`.
    #[error("url: host {0} is not in webhooks.allow_hosts")]
    HostNotAllowed(String),
    /// A loopback, unspecified or link-local address while `webhooks.allow_loopback` is off.
    #[error("url: {host} resolves to {address}, a local address (webhooks.allow_loopback is off)")]
    Local {
        /// The host as written.
        host: String,
        /// The address it names.
        address: IpAddr,
    },
    /// The host name does not resolve.
    #[error("url: host {0} does not resolve")]
    Unresolvable(String),
}

/// `url` checked against the scheme, credential and host rules; the host is returned for
/// the address check.
pub fn check_url(url: &str, allow_hosts: &[String]) -> Result<url::Url, TargetError> {
    let parsed = url::Url::parse(url).map_err(|e| TargetError::Unparsable(e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(TargetError::Scheme(parsed.scheme().into()));
    }
    let host = parsed.host_str().ok_or(TargetError::NoHost)?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(TargetError::Credentials);
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if !allow_hosts.is_empty() && !allow_hosts.iter().any(|h| h.eq_ignore_ascii_case(bare)) {
        return Err(TargetError::HostNotAllowed(bare.into()));
    }
    Ok(parsed)
}

/// Whether `address` is local: loopback, unspecified, or link-local (where cloud metadata
/// services answer).
pub fn is_local(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_unspecified() || v4.is_link_local(),
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|v4| is_local(IpAddr::V4(v4)))
        }
    }
}

/// Refuses `address` (which `host` resolved to) when it is local and that is not allowed.
pub fn check_address(host: &str, address: IpAddr, allow_loopback: bool) -> Result<(), TargetError> {
    if !allow_loopback && is_local(address) {
        return Err(TargetError::Local {
            host: host.into(),
            address,
        });
    }
    Ok(())
}

/// The wait before attempt `attempts + 1` after `attempts` failed ones: `base` doubled per
/// failure after the first, at most `max`.
pub fn backoff(attempts: u32, base: u64, max: u64) -> u64 {
    let doublings = attempts.saturating_sub(1).min(30);
    base.saturating_mul(1u64 << doublings).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Event {
        Event {
            id: "0b8f7f38-2f56-4c4d-9d2c-6a3f1d9e2a11".into(),
            kind: EventKind::Push,
            repository: "acme/app".into(),
            digest: Some(format!("sha256:{}", "a".repeat(64))),
            tag: Some("v1".into()),
            media_type: Some("application/vnd.oci.image.manifest.v1+json".into()),
            size: Some(512),
            previous_digest: None,
            occurred_at: 1_700_000_000,
            actor: Some("alice".into()),
            detail: None,
        }
    }

    fn source() -> Source {
        Source {
            base_url: "https://registry.example.com".into(),
            instance: "node-1".into(),
        }
    }

    #[test]
    fn names_read_back() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
        }
        for f in Format::ALL {
            assert_eq!(Format::parse(f.as_str()), Some(f));
        }
        assert_eq!(EventKind::parse("pulled"), None);
        assert_eq!(Format::parse("xml"), None);
    }

    #[test]
    fn the_signature_is_hmac_sha256_over_timestamp_and_body() {
        // RFC 4231 test case 2 ("Jefe"), with the timestamp prefix as part of the message.
        let sig = signature("Jefe", 0, b"what do ya want for nothing?");
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"Jefe");
        let expected = hmac::sign(&key, b"0.what do ya want for nothing?");
        assert_eq!(sig, format!("t=0,v1={}", hex::encode(expected.as_ref())));
    }

    #[test]
    fn distribution_envelope_has_the_documented_fields() {
        let body: Value =
            serde_json::from_slice(&render(Format::Distribution, &event(), &source()).body)
                .unwrap();
        let e = &body["events"][0];
        assert_eq!(e["action"], "push");
        assert_eq!(e["timestamp"], "2023-11-14T22:13:20Z");
        assert_eq!(e["target"]["size"], 512);
        assert_eq!(e["target"]["length"], 512);
        assert_eq!(e["target"]["tag"], "v1");
        assert_eq!(
            e["target"]["url"],
            format!(
                "https://registry.example.com/v2/acme/app/manifests/sha256:{}",
                "a".repeat(64)
            )
        );
    }

    #[test]
    fn every_kind_renders_in_every_format_with_its_actor_and_detail() {
        for kind in EventKind::ALL {
            let mut e = event();
            e.kind = kind;
            e.detail = Some(json!({"reason": "because"}));
            let d: Value =
                serde_json::from_slice(&render(Format::Distribution, &e, &source()).body).unwrap();
            let d = &d["events"][0];
            assert_eq!(d["action"], kind.distribution_action());
            assert_eq!(d["actor"]["name"], "alice");
            assert_eq!(d["detail"]["reason"], "because");
            let h: Value =
                serde_json::from_slice(&render(Format::Harbor, &e, &source()).body).unwrap();
            assert_eq!(h["type"], kind.harbor_type());
            assert_eq!(h["operator"], "alice");
            assert_eq!(h["event_data"]["custom_attributes"]["reason"], "because");
            let c: Value =
                serde_json::from_slice(&render(Format::CloudEvents, &e, &source()).body).unwrap();
            assert_eq!(c["type"], kind.cloudevents_type());
            assert_eq!(c["data"]["actor"], "alice");
            assert_eq!(c["data"]["detail"]["reason"], "because");
        }
        let actions: Vec<&str> = [EventKind::Push, EventKind::Pull, EventKind::Delete]
            .into_iter()
            .map(EventKind::distribution_action)
            .collect();
        assert_eq!(actions, ["push", "pull", "delete"]);
        assert_eq!(EventKind::QuotaExceeded.harbor_type(), "QUOTA_EXCEED");
        assert_eq!(EventKind::ScanCompleted.harbor_type(), "SCANNING_COMPLETED");
        let mut wide = event();
        wide.repository = String::new();
        wide.kind = EventKind::GcCompleted;
        assert_eq!(
            target_url(&wide, &source()),
            "https://registry.example.com/v2/"
        );
    }

    #[test]
    fn a_batch_lists_its_events_in_order_where_the_format_can() {
        let mut second = event();
        second.id = "second".into();
        second.tag = Some("v2".into());
        let first = event();
        let events = [&first, &second];
        let d = render_batch(Format::Distribution, &events, &source()).unwrap();
        assert_eq!(d.content_type, DISTRIBUTION_MEDIA_TYPE);
        let d: Value = serde_json::from_slice(&d.body).unwrap();
        let tags: Vec<&Value> = d["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| &e["target"]["tag"])
            .collect();
        assert_eq!(tags, [&json!("v1"), &json!("v2")]);
        let c = render_batch(Format::CloudEvents, &events, &source()).unwrap();
        assert_eq!(c.content_type, "application/cloudevents-batch+json");
        let c: Value = serde_json::from_slice(&c.body).unwrap();
        assert_eq!(c[1]["id"], "second");
        assert_eq!(c[1]["specversion"], "1.0");
        assert_eq!(c[1]["data"]["tag"], "v2");
        assert!(render_batch(Format::Harbor, &events, &source()).is_none());
        assert!(render_batch(Format::CloudEventsBinary, &events, &source()).is_none());
        assert!(
            Format::ALL
                .iter()
                .all(|f| f.batches() == render_batch(*f, &events, &source()).is_some())
        );
    }

    #[test]
    fn cloudevents_binary_puts_attributes_in_headers() {
        let r = render(Format::CloudEventsBinary, &event(), &source());
        let names: Vec<&str> = r.headers.iter().map(|(k, _)| k.as_str()).collect();
        for required in ["ce-specversion", "ce-id", "ce-source", "ce-type"] {
            assert!(names.contains(&required), "{names:?}");
        }
        let data: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(data["repository"], "acme/app");
    }

    #[test]
    fn targets() {
        assert!(check_url("ftp://x.example/", &[]).is_err());
        assert_eq!(
            check_url("http://u:p@x.example/", &[]),
            Err(TargetError::Credentials)
        );
        assert!(check_url("not a url", &[]).is_err());
        let allow = vec!["hooks.example.com".to_owned()];
        assert!(check_url("https://hooks.example.com/in", &allow).is_ok());
        assert!(check_url("https://evil.example.com/in", &allow).is_err());
        for local in [
            "127.0.0.1",
            "::1",
            "0.0.0.0",
            "169.254.169.254",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            let ip: IpAddr = local.parse().unwrap();
            assert!(check_address("h", ip, false).is_err(), "{local}");
            assert!(check_address("h", ip, true).is_ok(), "{local}");
        }
        assert!(check_address("h", "93.184.216.34".parse().unwrap(), false).is_ok());
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        assert_eq!(backoff(1, 10, 3600), 10);
        assert_eq!(backoff(2, 10, 3600), 20);
        assert_eq!(backoff(4, 10, 3600), 80);
        assert_eq!(backoff(40, 10, 3600), 3600);
    }
}
