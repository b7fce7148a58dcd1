//! Webhooks: subscriptions through `/api/v1/webhooks`, events written with the change that
//! made them, delivered to a receiver in this process (axum on a loopback port: the
//! receiving end, not a stand-in for Berth) in order per repository, retried with backoff
//! on the registry's clock, `dead` after the configured attempts, redelivered on request;
//! each payload format checked against its spec's fields, and the HMAC signature verified
//! with the secret.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode as AxumStatus, Uri},
    response::{IntoResponse, Response},
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::common::{
    OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, TestServer, descriptor, image_config, json_body, sha256,
    strings,
};

/// How long a test waits for the next delivery it expects.
const PATIENCE: Duration = Duration::from_secs(60);

/// What the receiver answers.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Answer {
    /// 204.
    Ok,
    /// This status, with a short body.
    Status(u16),
    /// Never answers.
    Hang,
    /// 200 or 500 with 4 MiB of body.
    Huge(u16),
    /// 204 after this many milliseconds.
    Slow(u64),
}

/// One request the receiver took.
#[derive(Clone, Debug)]
pub(crate) struct Got {
    path: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Got {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Default)]
struct Inbox {
    got: Mutex<Vec<Got>>,
    answers: Mutex<HashMap<String, Answer>>,
    changed: Notify,
}

/// A webhook receiver on a loopback port; each path answers as set ([`Answer::Ok`] unless
/// told otherwise) and every request is kept.
#[derive(Clone)]
pub(crate) struct Receiver {
    base: String,
    inbox: Arc<Inbox>,
}

async fn take(
    State(inbox): State<Arc<Inbox>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let answer = inbox
        .answers
        .lock()
        .unwrap()
        .get(&path)
        .copied()
        .unwrap_or(Answer::Ok);
    inbox.got.lock().unwrap().push(Got {
        path,
        headers,
        body: body.to_vec(),
    });
    inbox.changed.notify_waiters();
    match answer {
        Answer::Ok => AxumStatus::NO_CONTENT.into_response(),
        Answer::Status(code) => (
            AxumStatus::from_u16(code).unwrap(),
            format!("receiver says {code}"),
        )
            .into_response(),
        Answer::Hang => std::future::pending().await,
        Answer::Slow(millis) => {
            tokio::time::sleep(Duration::from_millis(millis)).await;
            AxumStatus::NO_CONTENT.into_response()
        }
        Answer::Huge(code) => (
            AxumStatus::from_u16(code).unwrap(),
            vec![b'x'; 4 * 1024 * 1024],
        )
            .into_response(),
    }
}

impl Receiver {
    pub(crate) async fn start() -> Receiver {
        let inbox = Arc::new(Inbox::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new().fallback(take).with_state(inbox.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { base, inbox }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub(crate) fn answer(&self, path: &str, answer: Answer) {
        self.inbox
            .answers
            .lock()
            .unwrap()
            .insert(path.to_owned(), answer);
    }

    /// Requests taken at `path`, in arrival order.
    pub(crate) fn at(&self, path: &str) -> Vec<Got> {
        let got = self.inbox.got.lock().unwrap();
        got.iter().filter(|g| g.path == path).cloned().collect()
    }

    /// Waits until `path` has taken `n` distinct events (by `Berth-Event-Id`), failing when
    /// nothing arrives for [`PATIENCE`].
    pub(crate) async fn wait_for_distinct(&self, path: &str, n: usize) -> Vec<Got> {
        let mut deadline = tokio::time::Instant::now() + PATIENCE;
        let mut seen = 0;
        loop {
            let changed = self.inbox.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let got = self.at(path);
            let ids: HashSet<&str> = got
                .iter()
                .filter_map(|g| g.header("berth-event-id"))
                .collect();
            if ids.len() >= n {
                return got;
            }
            if got.len() > seen {
                seen = got.len();
                deadline = tokio::time::Instant::now() + PATIENCE;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                panic!("{path} took {} distinct events, not {n}", ids.len());
            }
        }
    }

    /// Waits until `path` has taken at least `n` requests, failing when nothing arrives for
    /// [`PATIENCE`]; returns them.
    pub(crate) async fn wait_for(&self, path: &str, n: usize) -> Vec<Got> {
        let mut deadline = tokio::time::Instant::now() + PATIENCE;
        let mut seen = 0;
        loop {
            let changed = self.inbox.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let got = self.at(path);
            if got.len() >= n {
                return got;
            }
            if got.len() > seen {
                seen = got.len();
                deadline = tokio::time::Instant::now() + PATIENCE;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                panic!("{path} took {} requests, not {n}", got.len());
            }
        }
    }
}

/// A server that may send webhooks to loopback, polling often, with a short timeout.
pub(crate) async fn server() -> TestServer {
    TestServer::start_with(|c| {
        c.webhooks.allow_loopback = true;
        c.webhooks.poll_millis = 20;
        c.webhooks.timeout_secs = 2;
        c.webhooks.max_attempts = 3;
    })
    .await
}

pub(crate) async fn api(
    s: &TestServer,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut req = s.req(method, &format!("/api/v1{path}"));
    if let Some(body) = body {
        req = req.json(&body);
    }
    req.send().await.expect("API request")
}

/// Subscribes `url` (all events unless `events`) and returns the subscription's id.
pub(crate) async fn subscribe(s: &TestServer, body: Value) -> i64 {
    let resp = api(s, Method::POST, "/webhooks", Some(body)).await;
    let status = resp.status();
    let body = json_body(resp).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["id"].as_i64().expect("an id")
}

/// The delivery log of subscription `id`, newest first.
pub(crate) async fn deliveries(s: &TestServer, id: i64) -> Vec<Value> {
    let resp = api(
        s,
        Method::GET,
        &format!("/webhooks/{id}/deliveries?limit=1000"),
        None,
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    json_body(resp).await["items"].as_array().unwrap().clone()
}

/// Waits (bounded) until the log of `id` satisfies `done`; returns it.
pub(crate) async fn log_until(
    s: &TestServer,
    id: i64,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let log = deliveries(s, id).await;
        if done(&log) {
            return log;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the delivery log never got there: {log:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Pushes the shared config and layer of `repo` once.
pub(crate) async fn push_blobs(s: &TestServer, repo: &str) -> (Vec<u8>, Vec<u8>) {
    let config = image_config("linux", "amd64", None);
    let layer = format!("layer of {repo}").into_bytes();
    s.push_blob(repo, &config).await;
    s.push_blob(repo, &layer).await;
    (config, layer)
}

/// A manifest over `config` and `layer`, made unique by `n`.
pub(crate) fn manifest(config: &[u8], layer: &[u8], n: usize) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config),
        "layers": [descriptor(OCI_LAYER, layer)],
        "annotations": { "n": n.to_string() },
    }))
    .unwrap()
}

/// The HMAC-SHA256 signature header for `body`, checked against `secret`.
fn verify_signature(got: &Got, secret: &str) {
    let header = got
        .header("berth-signature")
        .expect("a Berth-Signature header");
    let (t, v1) = header
        .strip_prefix("t=")
        .and_then(|rest| rest.split_once(",v1="))
        .unwrap_or_else(|| panic!("{header} is not t=…,v1=…"));
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(&got.body);
    let expected = hex::decode(v1).expect("hex signature");
    ring::hmac::verify(&key, &signed, &expected).expect("the signature verifies with the secret");
    let wrong = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"another secret");
    assert!(ring::hmac::verify(&wrong, &signed, &expected).is_err());
}

/// A subscription is created (201 with its id), listed and shown without its secret, and
/// deleted; each bad input is refused with a problem naming the field, and nothing stored.
#[tokio::test]
async fn subscriptions_are_checked_and_never_show_the_secret() {
    let s = server().await;
    let r = Receiver::start().await;
    let resp = api(
        &s,
        Method::POST,
        "/webhooks",
        Some(json!({
            "url": r.url("/hook"), "events": ["push", "delete", "push"], "format": "cloudevents",
            "secret": "s3cret", "scope": "acme", "headers": {"X-Team": "platform"},
        })),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let text = resp.text().await.unwrap();
    assert!(!text.contains("s3cret"), "{text}");
    let created: Value = serde_json::from_str(&text).unwrap();
    let id = created["id"].as_i64().unwrap();
    assert_eq!(created["events"], json!(["push", "delete"]));
    assert_eq!(created["signed"], true);
    assert_eq!(created["scope"], "acme");
    assert_eq!(created["headers"], json!({"X-Team": "platform"}));

    let shown = api(&s, Method::GET, &format!("/webhooks/{id}"), None).await;
    assert_eq!(shown.status(), StatusCode::OK);
    let shown = shown.text().await.unwrap();
    assert!(!shown.contains("s3cret"), "{shown}");
    let listed = json_body(api(&s, Method::GET, "/webhooks", None).await).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    assert!(!listed.to_string().contains("s3cret"));

    let good =
        json!({"url": r.url("/hook"), "events": ["push"], "format": "distribution", "scope": "*"});
    let with = |key: &str, value: Value| {
        let mut body = good.clone();
        body[key] = value;
        body
    };
    let bad = [
        (
            with("url", json!("ftp://example.com/hook")),
            "url",
            "scheme",
        ),
        (with("url", json!("not a url")), "url", "url"),
        (
            with("url", json!("http://user:pw@127.0.0.1/")),
            "url",
            "credentials",
        ),
        (
            with("url", json!("http://nowhere.invalid/hook")),
            "url",
            "does not resolve",
        ),
        (
            with("events", json!(["push", "explode"])),
            "events",
            "explode",
        ),
        (with("events", json!([])), "events", "at least one"),
        (with("format", json!("xml")), "format", "xml"),
        (with("scope", json!("Not A Name!")), "scope", "Not A Name!"),
        (with("secret", json!("")), "secret", "secret"),
        (
            with("headers", json!({"Content-Type": "text/plain"})),
            "headers",
            "Content-Type",
        ),
        (
            with("headers", json!({"bad header": "x"})),
            "headers",
            "bad header",
        ),
        (
            with("headers", json!({"X-Ok": "line\nbreak"})),
            "headers",
            "X-Ok",
        ),
        (
            with("batch", json!(0)),
            "batch",
            "0 is not between 1 and 1000",
        ),
        (
            with("batch", json!(1001)),
            "batch",
            "1001 is not between 1 and 1000",
        ),
        (
            json!({"url": r.url("/hook"), "events": ["push"], "format": "harbor", "scope": "*",
                   "batch": 10}),
            "batch",
            "harbor sends one event per request",
        ),
        (
            json!({"url": r.url("/hook"), "events": ["push"], "format": "cloudevents-binary",
                   "scope": "*", "batch": 2}),
            "batch",
            "cloudevents-binary sends one event per request",
        ),
    ];
    for (body, field, says) in bad {
        let resp = api(&s, Method::POST, "/webhooks", Some(body.clone())).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{body}");
        let problem = json_body(resp).await;
        assert_eq!(problem["error"]["code"], "BAD_REQUEST", "{problem}");
        assert_eq!(problem["error"]["details"]["parameter"], field, "{problem}");
        let message = problem["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{body}: {message}");
    }
    for body in [
        json!({"url": r.url("/hook"), "events": ["push"], "format": "distribution"}),
        with("colour", json!("blue")),
        with("batch", json!(-1)),
        with("batch", json!("ten")),
    ] {
        let resp = api(&s, Method::POST, "/webhooks", Some(body)).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        let problem = json_body(resp).await;
        assert!(
            problem["error"]["message"]
                .as_str()
                .unwrap()
                .contains("invalid body")
        );
    }
    let listed = json_body(api(&s, Method::GET, "/webhooks", None).await).await;
    assert_eq!(
        listed["items"].as_array().unwrap().len(),
        1,
        "nothing more stored"
    );

    for (path, status) in [
        ("/webhooks/abc", StatusCode::BAD_REQUEST),
        ("/webhooks/999999", StatusCode::NOT_FOUND),
        ("/webhooks/999999/deliveries", StatusCode::NOT_FOUND),
    ] {
        let resp = api(&s, Method::GET, path, None).await;
        assert_eq!(resp.status(), status, "{path}");
    }
    let resp = api(
        &s,
        Method::GET,
        &format!("/webhooks/{id}/deliveries?state=lost"),
        None,
    )
    .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let resp = api(
        &s,
        Method::POST,
        &format!("/webhooks/{id}/deliveries/42/redeliver"),
        None,
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);

    let resp = api(&s, Method::DELETE, &format!("/webhooks/{id}"), None).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let resp = api(&s, Method::GET, &format!("/webhooks/{id}"), None).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

/// By default a webhook may not target the registry's own machine: loopback, unspecified
/// and link-local (cloud metadata) addresses are refused, by address or by a name that
/// resolves to one; `allow_hosts` narrows the hosts further.
#[tokio::test]
async fn local_targets_are_refused_unless_allowed() {
    let s = TestServer::start_with(|c| {
        c.webhooks.allow_hosts = vec![
            "127.0.0.1".into(),
            "localhost".into(),
            "169.254.169.254".into(),
        ]
    })
    .await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost:9/hook",
        "http://169.254.169.254/latest/meta-data",
    ] {
        let body = json!({"url": url, "events": ["push"], "format": "distribution", "scope": "*"});
        let resp = api(&s, Method::POST, "/webhooks", Some(body)).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{url}");
        let problem = json_body(resp).await;
        let message = problem["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("webhooks.allow_loopback"),
            "{url}: {message}"
        );
    }
    let body = json!({"url": "https://hooks.example.com/", "events": ["push"], "format": "distribution", "scope": "*"});
    let problem = json_body(api(&s, Method::POST, "/webhooks", Some(body)).await).await;
    let message = problem["error"]["message"].as_str().unwrap();
    assert!(message.contains("allow_hosts"), "{message}");
    let listed = json_body(api(&s, Method::GET, "/webhooks", None).await).await;
    assert_eq!(listed["items"], json!([]));
}

/// The address check holds at each delivery, not only when the subscription is made: the
/// connection a delivery opens goes to the addresses the check passed. Subscriptions to
/// `localhost` and to 127.0.0.1, made while loopback was allowed, end dead with the local
/// address named once the server runs with loopback refused, and the receiver gets nothing.
#[tokio::test]
async fn a_target_that_is_now_local_is_refused_at_delivery() {
    let s = server().await;
    let r = Receiver::start().await;
    let by_name_url = r.url("/by-name").replace("127.0.0.1", "localhost");
    let mut ids = Vec::new();
    for url in [by_name_url, r.url("/by-address")] {
        let body = json!({"url": url, "events": ["push"], "format": "distribution", "scope": "*"});
        ids.push(subscribe(&s, body).await);
    }
    let dir = s.stop().await;
    let s = TestServer::start_in(dir, |c| {
        c.webhooks.poll_millis = 20;
        c.webhooks.timeout_secs = 2;
        c.webhooks.max_attempts = 1;
    })
    .await;
    assert!(!s.config.webhooks.allow_loopback);
    s.push_image("acme/app", "v1", &[b"layer"]).await;
    for (id, host) in ids.into_iter().zip(["localhost", "127.0.0.1"]) {
        let log = log_until(&s, id, |log| log.iter().any(|d| d["state"] == "dead")).await;
        let error = log[0]["last_error"].as_str().unwrap();
        assert!(
            error.contains(&format!("{host} resolves to "))
                && error.contains("a local address (webhooks.allow_loopback is off)"),
            "{error}"
        );
    }
    assert!(r.at("/by-name").is_empty());
    assert!(r.at("/by-address").is_empty());
}

/// One push, tag move and delete, in every format: each parses as what it claims
/// (Distribution's envelope, Harbor's payload, CloudEvents structured and binary with their
/// required attributes), carries the stable event id, the custom headers and a signature
/// that verifies with the secret; a subscription's scope and event filter hold.
#[tokio::test]
async fn every_format_says_what_its_spec_requires() {
    let s = server().await;
    let r = Receiver::start().await;
    for (path, format) in [
        ("/distribution", "distribution"),
        ("/harbor", "harbor"),
        ("/ce", "cloudevents"),
        ("/ceb", "cloudevents-binary"),
    ] {
        subscribe(
            &s,
            json!({"url": r.url(path), "events": ["push", "tag_moved", "delete"], "format": format,
                   "secret": "k3y", "scope": "acme", "headers": {"X-Team": "platform"}}),
        )
        .await;
    }
    // Other scopes and kinds see nothing of this.
    subscribe(&s, json!({"url": r.url("/other"), "events": ["push"], "format": "distribution", "scope": "other"})).await;
    subscribe(&s, json!({"url": r.url("/deletes"), "events": ["delete"], "format": "distribution", "scope": "acme/app"})).await;

    let repo = "acme/app";
    let (config, layer) = push_blobs(&s, repo).await;
    let first = manifest(&config, &layer, 1);
    let second = manifest(&config, &layer, 2);
    s.put_manifest_ok(repo, "v1", OCI_MANIFEST, &first).await;
    s.put_manifest_ok(repo, "v1", OCI_MANIFEST, &second).await;
    let resp = s
        .delete(&format!("/v2/{repo}/manifests/{}", sha256(&first)))
        .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    // A push outside the scopes of the four.
    let (c2, l2) = push_blobs(&s, "acmeish/app").await;
    s.put_manifest_ok("acmeish/app", "v1", OCI_MANIFEST, &manifest(&c2, &l2, 3))
        .await;

    // push v1, push v1 (second), tag_moved v1, delete first: four events in order.
    let distribution = r.wait_for("/distribution", 4).await;
    let actions: Vec<(String, Option<String>)> = distribution
        .iter()
        .map(|g| {
            let e = &g.json()["events"][0];
            (
                e["action"].as_str().unwrap().to_owned(),
                e["target"]["tag"].as_str().map(str::to_owned),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("push".to_owned(), Some("v1".to_owned())),
            ("push".to_owned(), Some("v1".to_owned())),
            ("push".to_owned(), Some("v1".to_owned())),
            ("delete".to_owned(), None),
        ]
    );
    let envelope = distribution[0].json();
    let event = &envelope["events"][0];
    assert_eq!(
        distribution[0].header("content-type"),
        Some("application/vnd.docker.distribution.events.v1+json")
    );
    for key in [
        "id",
        "timestamp",
        "action",
        "target",
        "request",
        "actor",
        "source",
    ] {
        assert!(event.get(key).is_some(), "{key} in {event}");
    }
    let target = &event["target"];
    assert_eq!(target["mediaType"], OCI_MANIFEST);
    assert_eq!(target["digest"], sha256(&first));
    assert_eq!(target["size"], first.len());
    assert_eq!(target["length"], first.len());
    assert_eq!(target["repository"], repo);
    let url = target["url"].as_str().unwrap();
    assert!(url.starts_with("http://"), "{url}");
    assert!(
        url.ends_with(&format!("/v2/{repo}/manifests/{}", sha256(&first))),
        "{url}"
    );
    assert!(
        time::OffsetDateTime::parse(
            event["timestamp"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339
        )
        .is_ok()
    );
    assert_eq!(
        distribution[0].header("berth-event-id"),
        event["id"].as_str()
    );
    assert_eq!(distribution[0].header("x-team"), Some("platform"));
    let deleted = &distribution[3].json()["events"][0];
    assert_eq!(deleted["target"]["digest"], sha256(&first));

    let harbor = r.wait_for("/harbor", 4).await;
    let payload = harbor[0].json();
    assert_eq!(payload["type"], "PUSH_ARTIFACT");
    assert!(payload["occur_at"].is_i64());
    assert!(payload.get("operator").is_some());
    assert_eq!(payload["event_data"]["repository"]["repo_full_name"], repo);
    assert_eq!(payload["event_data"]["repository"]["namespace"], "acme");
    assert_eq!(payload["event_data"]["repository"]["name"], "app");
    assert_eq!(
        payload["event_data"]["resources"][0]["digest"],
        sha256(&first)
    );
    assert_eq!(payload["event_data"]["resources"][0]["tag"], "v1");
    assert_eq!(harbor[3].json()["type"], "DELETE_ARTIFACT");

    let structured = r.wait_for("/ce", 4).await;
    assert_eq!(
        structured[0].header("content-type"),
        Some("application/cloudevents+json")
    );
    let types: Vec<String> = structured
        .iter()
        .map(|g| g.json()["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        types,
        [
            "io.berth.artifact.pushed",
            "io.berth.artifact.pushed",
            "io.berth.tag.moved",
            "io.berth.artifact.deleted"
        ]
    );
    for got in &structured {
        let ce = got.json();
        assert_eq!(ce["specversion"], "1.0");
        for attribute in ["id", "source", "type"] {
            assert!(
                ce[attribute].as_str().is_some_and(|v| !v.is_empty()),
                "{attribute} in {ce}"
            );
        }
        assert_eq!(got.header("berth-event-id"), ce["id"].as_str());
    }
    let moved = structured[2].json();
    assert_eq!(moved["data"]["digest"], sha256(&second));
    assert_eq!(moved["data"]["previousDigest"], sha256(&first));
    assert_eq!(moved["subject"], "v1");

    let binary = r.wait_for("/ceb", 4).await;
    for got in &binary {
        assert_eq!(got.header("ce-specversion"), Some("1.0"));
        for attribute in ["ce-id", "ce-source", "ce-type"] {
            assert!(
                got.header(attribute).is_some_and(|v| !v.is_empty()),
                "{attribute}"
            );
        }
        assert_eq!(got.json()["repository"], repo);
    }
    assert_eq!(binary[2].header("ce-type"), Some("io.berth.tag.moved"));
    // One event, one id, whatever the format it went out in.
    for i in 0..4 {
        let id = structured[i].json()["id"].as_str().unwrap().to_owned();
        assert_eq!(binary[i].header("ce-id"), Some(id.as_str()));
        assert_eq!(distribution[i].json()["events"][0]["id"], id);
    }

    for got in distribution
        .iter()
        .chain(&harbor)
        .chain(&structured)
        .chain(&binary)
    {
        verify_signature(got, "k3y");
    }
    let deletes = r.wait_for("/deletes", 1).await;
    assert_eq!(deletes[0].json()["events"][0]["action"], "delete");
    assert!(r.at("/other").is_empty());
    assert_eq!(r.at("/deletes").len(), 1);
    assert_eq!(
        r.at("/distribution").len(),
        4,
        "acmeish/app is not under acme"
    );
}

/// A receiver that fails: the delivery is retried after the backoff (the clock moved, not
/// waited for), later events of the repository wait behind it, and all arrive in order once
/// it answers; after `max_attempts` failures a delivery is `dead`, and a redelivery sends
/// the same event (same id) again.
#[tokio::test]
async fn failures_back_off_then_deliver_in_order_or_end_dead() {
    let s = server().await;
    let r = Receiver::start().await;
    r.answer("/hook", Answer::Status(500));
    let id = subscribe(
        &s,
        json!({"url": r.url("/hook"), "events": ["push"], "format": "cloudevents", "scope": "*"}),
    )
    .await;
    let repo = "retry/app";
    let (config, layer) = push_blobs(&s, repo).await;
    let digests: Vec<String> = {
        let mut d = Vec::new();
        for n in 0..3 {
            let m = manifest(&config, &layer, n);
            s.put_manifest_ok(repo, &format!("t{n}"), OCI_MANIFEST, &m)
                .await;
            d.push(sha256(&m));
        }
        d
    };
    r.wait_for("/hook", 1).await;
    let log = log_until(&s, id, |log| {
        log.iter()
            .any(|d| d["attempts"] == 1 && d["last_status"] == 500)
    })
    .await;
    let head = log
        .iter()
        .find(|d| d["digest"] == digests[0].as_str())
        .unwrap();
    assert_eq!(head["state"], "pending");
    assert_eq!(
        head["last_error"].as_str().unwrap(),
        "HTTP 500 Internal Server Error: receiver says 500"
    );
    assert!(head["next_attempt_at"].is_string());
    // The two behind it were not tried: the repository's order holds.
    for behind in &log {
        if behind["digest"] != digests[0].as_str() {
            assert_eq!(behind["attempts"], 0, "{behind}");
        }
    }
    assert_eq!(
        r.at("/hook").len(),
        1,
        "no second attempt before the backoff"
    );

    // The retry claims the whole queue at once; the head fails again, and the two behind
    // it are handed back unsent, their attempt not counted.
    let first_retry_at = head["next_attempt_at"].clone();
    s.clock.advance(10);
    // Claimed rows count their attempt at once: the second failure shows as a later retry.
    let log = log_until(&s, id, |log| {
        log.iter().any(|d| {
            d["digest"] == digests[0].as_str()
                && d["attempts"] == 2
                && d["next_attempt_at"] != first_retry_at
        })
    })
    .await;
    for behind in &log {
        if behind["digest"] != digests[0].as_str() {
            assert_eq!(behind["attempts"], 0, "{behind}");
            assert_eq!(behind["state"], "pending", "{behind}");
        }
    }
    assert_eq!(r.at("/hook").len(), 2, "nothing sent behind a failure");

    r.answer("/hook", Answer::Ok);
    s.clock.advance(20);
    let got = r.wait_for("/hook", 5).await;
    let order: Vec<String> = got[2..]
        .iter()
        .map(|g| g.json()["data"]["digest"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(order, digests, "delivered in push order after the retry");
    assert_eq!(
        got[0].json()["id"],
        got[2].json()["id"],
        "a retry keeps the event id"
    );
    let log = log_until(&s, id, |log| log.iter().all(|d| d["state"] == "delivered")).await;
    assert_eq!(log.len(), 3);

    // Now down for good: three attempts (backoff 10 s, then 20 s), then dead.
    r.answer("/hook", Answer::Status(503));
    let m = manifest(&config, &layer, 99);
    s.put_manifest_ok(repo, "doomed", OCI_MANIFEST, &m).await;
    // Each failure is recorded (with its next attempt's time) before the clock moves.
    let failed =
        |n: i64| move |log: &[Value]| log[0]["attempts"] == n && log[0]["last_status"] == 503;
    log_until(&s, id, failed(1)).await;
    s.clock.advance(10);
    log_until(&s, id, failed(2)).await;
    s.clock.advance(20);
    let log = log_until(&s, id, |log| log[0]["state"] == "dead").await;
    assert_eq!(r.at("/hook").len(), 8);
    let dead = &log[0];
    assert_eq!(dead["attempts"], 3);
    assert_eq!(dead["last_status"], 503);
    assert!(dead["finished_at"].is_string());
    let dead_list = json_body(
        api(
            &s,
            Method::GET,
            &format!("/webhooks/{id}/deliveries?state=dead"),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(dead_list["items"].as_array().unwrap().len(), 1);

    r.answer("/hook", Answer::Ok);
    let resp = api(
        &s,
        Method::POST,
        &format!("/webhooks/{id}/deliveries/{}/redeliver", dead["id"]),
        None,
    )
    .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let again = json_body(resp).await["delivery"].as_i64().unwrap();
    let got = r.wait_for("/hook", 9).await;
    assert_eq!(
        got[8].json()["id"],
        dead["event_id"],
        "the same event id again"
    );
    assert_eq!(got[8].json()["data"]["digest"], sha256(&m));
    let log = log_until(&s, id, |log| log[0]["state"] == "delivered").await;
    assert_eq!(log[0]["id"], again);

    // Four delivered, four retried (the unsent are not attempts), one dead; nothing waits.
    let metrics = s.get("/metrics").await.text().await.unwrap();
    for line in [
        "berth_webhook_deliveries_total{outcome=\"delivered\"} 4",
        "berth_webhook_deliveries_total{outcome=\"retry\"} 4",
        "berth_webhook_deliveries_total{outcome=\"dead\"} 1",
        "berth_webhook_queue_depth 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
}

/// The events of a batching subscription, as its requests list them (a Distribution
/// envelope's `events`, or CloudEvents' batched array), each with its id.
fn listed_events(got: &Got) -> Vec<Value> {
    let body = got.json();
    match body.get("events") {
        Some(events) => events.as_array().unwrap().clone(),
        None => body.as_array().expect("a batch").clone(),
    }
}

/// A subscription with `batch` takes several events per request, in order across its
/// repositories: while its receiver fails, what is pushed waits behind the failed request
/// (the first attempt carries only what was due then), and after the backoff one request
/// carries everything, oldest first, as a Distribution envelope listing them and as
/// CloudEvents' batched mode; `Berth-Event-Id` lists the ids in the body's order, and every
/// delivery of the request records the same outcome. A batch never exceeds `batch`.
#[tokio::test]
async fn batches_carry_several_events_in_order() {
    let s = server().await;
    let r = Receiver::start().await;
    r.answer("/envelope", Answer::Status(503));
    r.answer("/cloud", Answer::Status(503));
    let envelope = subscribe(
        &s,
        json!({"url": r.url("/envelope"), "events": ["push"], "format": "distribution",
               "scope": "*", "batch": 50, "secret": "s3cret"}),
    )
    .await;
    let cloud = subscribe(
        &s,
        json!({"url": r.url("/cloud"), "events": ["push"], "format": "cloudevents",
               "scope": "*", "batch": 4}),
    )
    .await;
    let mut pushed = Vec::new();
    for repo in ["batch/one", "batch/two"] {
        let (config, layer) = push_blobs(&s, repo).await;
        for n in 0..5 {
            let m = manifest(&config, &layer, n);
            s.put_manifest_ok(repo, &format!("t{n}"), OCI_MANIFEST, &m)
                .await;
            pushed.push(sha256(&m));
        }
    }
    // Each receiver refused its first request; nothing else was tried before the backoff.
    for (id, path) in [(envelope, "/envelope"), (cloud, "/cloud")] {
        r.wait_for(path, 1).await;
        log_until(&s, id, |log| log.iter().any(|d| d["last_status"] == 503)).await;
    }
    let first_envelope = r.at("/envelope").len();
    assert_eq!(first_envelope, 1);
    let tried = listed_events(&r.at("/envelope")[0]).len();
    let log = deliveries(&s, envelope).await;
    assert_eq!(log.len(), 10);
    assert_eq!(
        log.iter().filter(|d| d["attempts"] == 1).count(),
        tried,
        "the deliveries of the refused request, and none behind them: {log:#?}"
    );

    r.answer("/envelope", Answer::Ok);
    r.answer("/cloud", Answer::Ok);
    s.clock.advance(10);
    let log = log_until(&s, envelope, |log| {
        log.iter().all(|d| d["state"] == "delivered")
    })
    .await;
    assert!(log.iter().all(|d| d["last_status"] == 204), "{log:#?}");
    let got = r.at("/envelope");
    assert_eq!(got.len(), 2, "the retry carried everything in one request");
    let events = listed_events(&got[1]);
    let digests: Vec<&str> = events
        .iter()
        .map(|e| e["target"]["digest"].as_str().unwrap())
        .collect();
    assert_eq!(digests, pushed, "in push order across both repositories");
    let ids: Vec<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(
        got[1].header("berth-event-id"),
        Some(ids.join(", ").as_str())
    );
    assert_eq!(
        got[1].header("content-type"),
        Some("application/vnd.docker.distribution.events.v1+json")
    );
    verify_signature(&got[1], "s3cret");

    log_until(&s, cloud, |log| {
        log.iter().all(|d| d["state"] == "delivered")
    })
    .await;
    let got = r.at("/cloud");
    let mut sent: Vec<String> = Vec::new();
    for g in &got[1..] {
        assert_eq!(
            g.header("content-type"),
            Some("application/cloudevents-batch+json")
        );
        let events = listed_events(g);
        assert!((1..=4).contains(&events.len()), "{}", events.len());
        for e in events {
            assert_eq!(e["specversion"], "1.0");
            sent.push(e["data"]["digest"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(
        sent, pushed,
        "every event once, in order, four at most a request"
    );
}

/// A receiver that hangs holds one delivery until the timeout and delays nobody else; one
/// that answers with a huge body is read only up to `response_max_bytes`.
#[tokio::test]
async fn hanging_and_huge_receivers_are_bounded() {
    let s = TestServer::start_with(|c| {
        c.webhooks.allow_loopback = true;
        c.webhooks.poll_millis = 20;
        c.webhooks.timeout_secs = 5;
        c.webhooks.response_max_bytes = 1024;
    })
    .await;
    let r = Receiver::start().await;
    r.answer("/hang", Answer::Hang);
    r.answer("/huge-ok", Answer::Huge(200));
    r.answer("/huge-error", Answer::Huge(500));
    let hang = subscribe(
        &s,
        json!({"url": r.url("/hang"), "events": ["push"], "format": "distribution", "scope": "*"}),
    )
    .await;
    let ok = subscribe(&s, json!({"url": r.url("/huge-ok"), "events": ["push"], "format": "distribution", "scope": "*"})).await;
    let error = subscribe(&s, json!({"url": r.url("/huge-error"), "events": ["push"], "format": "distribution", "scope": "*"})).await;
    let fine = subscribe(
        &s,
        json!({"url": r.url("/fine"), "events": ["push"], "format": "distribution", "scope": "*"}),
    )
    .await;
    let (config, layer) = push_blobs(&s, "slow/app").await;
    let started = std::time::Instant::now();
    for n in 0..3 {
        s.put_manifest_ok(
            "slow/app",
            &format!("t{n}"),
            OCI_MANIFEST,
            &manifest(&config, &layer, n),
        )
        .await;
    }
    r.wait_for("/fine", 3).await;
    r.wait_for("/hang", 1).await;
    // All three reached the other receiver while the hung attempt was still in flight.
    let hang_now = deliveries(&s, hang).await;
    assert!(
        hang_now
            .iter()
            .all(|d| d["state"] == "pending" && d["last_error"].is_null()),
        "the others did not wait for the hung receiver: {hang_now:#?}"
    );
    let fine_log = log_until(&s, fine, |log| {
        log.iter().all(|d| d["state"] == "delivered")
    })
    .await;
    assert_eq!(fine_log.len(), 3);
    let ok_log = log_until(&s, ok, |log| log.iter().all(|d| d["state"] == "delivered")).await;
    assert!(ok_log.iter().all(|d| d["last_status"] == 200));
    let error_log = log_until(&s, error, |log| log.iter().any(|d| d["last_status"] == 500)).await;
    let message = error_log.iter().find(|d| d["last_status"] == 500).unwrap()["last_error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.len() < 1024,
        "the huge answer was cut: {} bytes",
        message.len()
    );
    let hang_log = log_until(&s, hang, |log| {
        log.iter()
            .any(|d| d["attempts"] == 1 && d["last_error"].is_string())
    })
    .await;
    let timed_out = hang_log
        .iter()
        .find(|d| d["last_error"].is_string())
        .unwrap();
    assert_eq!(timed_out["state"], "pending");
    assert!(
        timed_out["last_error"].as_str().unwrap().contains("5 s")
            || timed_out["last_error"]
                .as_str()
                .unwrap()
                .contains("timed out"),
        "{timed_out}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
}

/// Many pushes over several repositories at once: every event is delivered, none missing,
/// each repository's in push order; to a batching subscription too, in fewer requests than
/// events (one is in flight at a time, and what is pushed meanwhile goes in the next).
/// (`WEBHOOK_PUSHES` overrides the count; 10,000 was run by hand, see the README.)
#[tokio::test]
async fn many_pushes_deliver_every_event_in_order() {
    let total: usize = std::env::var("WEBHOOK_PUSHES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    let s = server().await;
    let r = Receiver::start().await;
    let id = subscribe(
        &s,
        json!({"url": r.url("/all"), "events": ["push"], "format": "distribution", "scope": "*"}),
    )
    .await;
    let batched = subscribe(
        &s,
        json!({"url": r.url("/batched"), "events": ["push"], "format": "distribution",
               "scope": "*", "batch": 100}),
    )
    .await;
    let repos = 8;
    let mut pushers = Vec::new();
    let s = Arc::new(s);
    for k in 0..repos {
        let s = s.clone();
        pushers.push(tokio::spawn(async move {
            let repo = format!("many/r{k}");
            let (config, layer) = push_blobs(&s, &repo).await;
            let mut pushed = Vec::new();
            for n in (k..total).step_by(repos) {
                let m = manifest(&config, &layer, n);
                s.put_manifest_ok(&repo, &format!("n{n}"), OCI_MANIFEST, &m)
                    .await;
                pushed.push(sha256(&m));
            }
            (repo, pushed)
        }));
    }
    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in pushers {
        let (repo, pushed) = p.await.unwrap();
        expected.insert(repo, pushed);
    }
    let got = r.wait_for("/all", total).await;
    let mut seen_ids = HashSet::new();
    let mut order: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for g in &got {
        let e = &g.json()["events"][0];
        if seen_ids.insert(e["id"].as_str().unwrap().to_owned()) {
            order
                .entry(e["target"]["repository"].as_str().unwrap().to_owned())
                .or_default()
                .push(e["target"]["digest"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(seen_ids.len(), total, "every event, once");
    assert_eq!(
        order, expected,
        "every digest, in push order per repository"
    );
    let log = log_until(&s, id, |log| {
        log.len() >= 1000.min(total) && log.iter().all(|d| d["state"] == "delivered")
    })
    .await;
    assert!(!log.is_empty());

    log_until(&s, batched, |log| {
        log.len() >= 1000.min(total) && log.iter().all(|d| d["state"] == "delivered")
    })
    .await;
    let requests = r.at("/batched");
    let mut seen_ids = HashSet::new();
    let mut order: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for g in &requests {
        let events = listed_events(g);
        assert!((1..=100).contains(&events.len()), "{}", events.len());
        for e in events {
            assert!(
                seen_ids.insert(e["id"].as_str().unwrap().to_owned()),
                "sent once: {e}"
            );
            order
                .entry(e["target"]["repository"].as_str().unwrap().to_owned())
                .or_default()
                .push(e["target"]["digest"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(seen_ids.len(), total, "every event, once, in batches");
    assert_eq!(order, expected, "in push order per repository, in batches");
    assert!(
        requests.len() < total,
        "{} requests for {total} events",
        requests.len()
    );
}

/// The OpenAPI document describes the webhook routes and their bodies.
#[tokio::test]
async fn openapi_documents_the_webhooks() {
    let s = TestServer::start().await;
    let doc = json_body(s.get("/api/v1/openapi.json").await).await;
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/api/v1/webhooks", "post"),
        ("/api/v1/webhooks", "get"),
        ("/api/v1/webhooks/{id}", "get"),
        ("/api/v1/webhooks/{id}", "delete"),
        ("/api/v1/webhooks/{id}/deliveries", "get"),
        (
            "/api/v1/webhooks/{id}/deliveries/{delivery}/redeliver",
            "post",
        ),
    ] {
        assert!(paths[path].get(method).is_some(), "{method} {path}");
    }
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let input = &schemas["WebhookInput"];
    for field in ["url", "events", "format", "scope"] {
        assert!(
            strings(&input["required"]).contains(&field.to_owned()),
            "{field} is required"
        );
    }
    assert!(
        !schemas["WebhookView"]["properties"]
            .as_object()
            .unwrap()
            .contains_key("secret")
    );
    assert!(
        schemas["DeliveryView"]["properties"]
            .get("last_error")
            .is_some()
    );
}

use crate::support;

/// `berth serve` killed (SIGKILL) in the middle of deliveries loses no event: after the
/// restart every acknowledged push is delivered, each repository's in push order (a delivery
/// in flight at the kill may arrive twice: at least once, with its event id to tell).
#[tokio::test(flavor = "multi_thread")]
async fn a_kill_in_the_middle_of_deliveries_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("berth.toml");
    std::fs::write(
        &config,
        "[durability]\nfsync = false\n\n[webhooks]\nallow_loopback = true\npoll_millis = 20\n\
         timeout_secs = 1\nconcurrency = 2\n",
    )
    .unwrap();
    let r = Receiver::start().await;
    r.answer("/slow", Answer::Slow(10));
    let berth = support::start_server(&data, &config);
    let client = reqwest::Client::new();
    let resp = client
        .post(format!("{}/api/v1/webhooks", berth.base))
        .json(&json!({"url": r.url("/slow"), "events": ["push"], "format": "distribution", "scope": "*"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let total = 300;
    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for k in 0..3 {
        let repo = format!("crash/r{k}");
        let config_blob = image_config("linux", "amd64", None);
        let layer = format!("layer of {repo}").into_bytes();
        for blob in [&config_blob, &layer] {
            let resp = client
                .post(format!(
                    "{}/v2/{repo}/blobs/uploads/?digest={}",
                    berth.base,
                    sha256(blob)
                ))
                .body(blob.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::CREATED);
        }
        for n in (k..total).step_by(3) {
            let m = manifest(&config_blob, &layer, n);
            let resp = client
                .put(format!("{}/v2/{repo}/manifests/n{n}", berth.base))
                .header("content-type", OCI_MANIFEST)
                .body(m.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::CREATED);
            expected.entry(repo.clone()).or_default().push(sha256(&m));
        }
    }
    // Some delivered, most not yet: the kill lands in the middle.
    let before = r.wait_for("/slow", 20).await.len();
    tokio::task::block_in_place(|| berth.kill9());
    assert!(
        before < total,
        "the deliveries were not still going on at the kill"
    );

    let berth = support::start_server(&data, &config);
    let got = r.wait_for_distinct("/slow", total).await;
    let mut order: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut seen = HashSet::new();
    for g in &got {
        let e = &g.json()["events"][0];
        if seen.insert(e["id"].as_str().unwrap().to_owned()) {
            order
                .entry(e["target"]["repository"].as_str().unwrap().to_owned())
                .or_default()
                .push(e["target"]["digest"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(
        order, expected,
        "every event after the restart, in push order"
    );
    tokio::task::block_in_place(|| berth.terminate());
}

/// With access control on: a maintainer of a namespace subscribes to it and manages that
/// subscription; a developer may not, nor may anyone but an administrator subscribe to the
/// whole registry or list every subscription; without credentials, 401.
#[tokio::test]
async fn maintainers_manage_their_namespace_and_administrators_the_rest() {
    use crate::common::auth::{ADMIN, ADMIN_PASSWORD, password_of, start_auth};
    let s = start_auth(|c| c.webhooks.allow_loopback = true).await;
    s.create_user("mia").await;
    s.create_user("dev").await;
    s.set_role("acme", "mia", "maintainer").await;
    s.set_role("acme", "dev", "developer").await;
    let (mia_pw, dev_pw) = (password_of("mia"), password_of("dev"));
    let mia = Some(("mia", mia_pw.as_str()));
    let dev = Some(("dev", dev_pw.as_str()));
    let admin = Some((ADMIN, ADMIN_PASSWORD));
    let r = Receiver::start().await;
    let body = |scope: &str| json!({"url": r.url("/hook"), "events": ["push"], "format": "harbor", "scope": scope});

    let resp = s
        .api_as(None, Method::POST, "/webhooks", Some(body("acme")))
        .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    for (who, scope) in [(dev, "acme"), (mia, "*"), (mia, "other")] {
        let resp = s
            .api_as(who, Method::POST, "/webhooks", Some(body(scope)))
            .await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{scope}");
        assert_eq!(json_body(resp).await["error"]["code"], "DENIED");
    }
    let resp = s
        .api_as(mia, Method::POST, "/webhooks", Some(body("acme/app")))
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let id = json_body(resp).await["id"].as_i64().unwrap();
    let resp = s
        .api_as(admin, Method::POST, "/webhooks", Some(body("*")))
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let global = json_body(resp).await["id"].as_i64().unwrap();

    let path = format!("/webhooks/{id}/deliveries");
    assert_eq!(
        s.api_as(mia, Method::GET, &path, None).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        s.api_as(dev, Method::GET, &path, None).await.status(),
        StatusCode::FORBIDDEN
    );
    let other = format!("/webhooks/{global}");
    assert_eq!(
        s.api_as(mia, Method::GET, &other, None).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        s.api_as(mia, Method::GET, "/webhooks", None).await.status(),
        StatusCode::FORBIDDEN
    );
    let listed = json_body(s.api_as(admin, Method::GET, "/webhooks", None).await).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 2);
    assert_eq!(listed["items"][0]["created_by"], "mia");
    assert_eq!(
        s.api_as(dev, Method::DELETE, &format!("/webhooks/{id}"), None)
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        s.api_as(mia, Method::DELETE, &format!("/webhooks/{id}"), None)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
}
