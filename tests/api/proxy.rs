//! The pull-through cache: a Berth whose `[[proxy]]` rule points at an upstream Berth through
//! a small gate of the test's own, which counts every request the cache makes upstream and
//! can answer 429 or 500, slowly, with a wrong blob or a short one, or stop altogether.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    body::Body,
    extract::{Request, State},
    http::{HeaderValue, StatusCode as AxumStatus},
    response::Response,
};
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::common::*;

/// What the gate does with the requests it gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Forwards to the upstream Berth.
    Pass,
    /// Answers this status (429 comes with `Retry-After: 30`).
    Status(u16),
    /// Blob GETs answer other bytes of the same length.
    WrongBlob,
    /// Blob GETs declare the full length and send half.
    ShortBlob,
    /// Waits this many milliseconds, then forwards.
    Slow(u64),
    /// Blob GETs send their body in 256 KiB pieces, this many milliseconds apart.
    Trickle(u64),
    /// `Range` headers are not passed on: ranged blob GETs get the whole blob (200).
    IgnoreRange,
    /// Manifest GETs answer 5 MiB without a declared length.
    EndlessManifest,
    /// Manifest GETs answer another byte than the upstream's (same digest header).
    AlteredManifest,
    /// Manifest GETs declare an index's media type for an image manifest.
    WrongMediaType,
    /// Every request is redirected to itself.
    RedirectLoop,
}

struct GateState {
    upstream: String,
    mode: Mutex<Mode>,
    /// `METHOD path` of every request received.
    seen: Mutex<Vec<String>>,
    /// The `Range` header of every request that sent one.
    ranges: Mutex<Vec<String>>,
    /// The body bytes of blob GETs answered.
    blob_bytes: Mutex<u64>,
    client: reqwest::Client,
}

/// The counting, fault-injecting gate in front of the upstream Berth.
struct Gate {
    base: String,
    state: Arc<GateState>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Gate {
    async fn start(upstream: &TestServer) -> Gate {
        let state = Arc::new(GateState {
            upstream: upstream.base.clone(),
            mode: Mutex::new(Mode::Pass),
            seen: Mutex::default(),
            ranges: Mutex::default(),
            blob_bytes: Mutex::default(),
            client: reqwest::Client::new(),
        });
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { stopped.cancelled().await })
                .await
                .expect("gate serves");
        });
        Gate {
            base,
            state,
            stop,
            task,
        }
    }

    fn set(&self, mode: Mode) {
        *self.state.mode.lock().unwrap() = mode;
    }

    /// The requests seen since the last call, and forgets them.
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.state.seen.lock().unwrap())
    }

    /// Stops listening: the cache's next connection is refused.
    async fn stop(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

async fn forward(State(gate): State<Arc<GateState>>, request: Request) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    gate.seen.lock().unwrap().push(format!("{method} {path}"));
    if let Some(range) = request.headers().get("range") {
        let range = range.to_str().unwrap().to_owned();
        gate.ranges.lock().unwrap().push(range);
    }
    let mode = *gate.mode.lock().unwrap();
    let is_blob = path.contains("/blobs/");
    match mode {
        Mode::Status(code) => {
            let mut response = Response::new(Body::from(r#"{"errors":[]}"#));
            *response.status_mut() = AxumStatus::from_u16(code).unwrap();
            if code == 429 {
                response
                    .headers_mut()
                    .insert("retry-after", HeaderValue::from_static("30"));
            }
            return response;
        }
        Mode::Slow(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
        Mode::RedirectLoop => {
            let mut response = Response::new(Body::empty());
            *response.status_mut() = AxumStatus::TEMPORARY_REDIRECT;
            response
                .headers_mut()
                .insert("location", HeaderValue::from_str(&path).unwrap());
            return response;
        }
        Mode::EndlessManifest if path.contains("/manifests/") => {
            let chunks = futures::stream::iter(0..80)
                .map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; 64 * 1024])));
            let mut response = Response::new(Body::from_stream(chunks));
            response
                .headers_mut()
                .insert("content-type", HeaderValue::from_static(OCI_MANIFEST));
            return response;
        }
        _ => {}
    }
    let mut upstream = gate.client.request(
        method.clone(),
        format!("{}{}", gate.upstream, request.uri()),
    );
    for name in ["accept", "authorization", "range"] {
        if name == "range" && mode == Mode::IgnoreRange {
            continue;
        }
        if let Some(v) = request.headers().get(name) {
            upstream = upstream.header(name, v.clone());
        }
    }
    let answer = upstream.send().await.expect("upstream answers");
    let status = answer.status();
    let headers = answer.headers().clone();
    let mut bytes = answer.bytes().await.expect("upstream body").to_vec();
    let declared = bytes.len();
    let blob_get = is_blob && method == Method::GET && status == StatusCode::OK;
    let blob_part = is_blob && method == Method::GET && status == StatusCode::PARTIAL_CONTENT;
    if blob_get && mode == Mode::WrongBlob {
        bytes = random_bytes(bytes.len());
    }
    if blob_get && mode == Mode::ShortBlob {
        bytes.truncate(bytes.len() / 2);
    }
    let manifest_get = path.contains("/manifests/") && method == Method::GET;
    if manifest_get && mode == Mode::AlteredManifest {
        bytes.push(b' ');
    }
    // A stream: hyper then sends the declared length, however many bytes follow; the pause
    // lets the head and the first bytes go out before a short body ends.
    if blob_get || blob_part {
        *gate.blob_bytes.lock().unwrap() += bytes.len() as u64;
    }
    let (pieces, pause) = match mode {
        Mode::Trickle(ms) if blob_get || blob_part => {
            (bytes.chunks(256 * 1024).map(<[u8]>::to_vec).collect(), ms)
        }
        _ => (vec![bytes], 50),
    };
    let body = Body::from_stream(futures::stream::iter(pieces).then(move |chunk| async move {
        tokio::time::sleep(Duration::from_millis(pause)).await;
        Ok::<_, std::io::Error>(bytes::Bytes::from(chunk))
    }));
    let mut response = Response::new(body);
    *response.status_mut() = AxumStatus::from_u16(status.as_u16()).unwrap();
    for name in [
        "content-type",
        "docker-content-digest",
        "www-authenticate",
        "content-length",
        "content-range",
    ] {
        if let Some(v) = headers.get(name) {
            response
                .headers_mut()
                .insert(name, HeaderValue::from_bytes(v.as_bytes()).unwrap());
        }
    }
    if blob_get {
        response
            .headers_mut()
            .insert("content-length", HeaderValue::from(declared));
    }
    if manifest_get {
        response.headers_mut().remove("content-length");
        if mode == Mode::WrongMediaType {
            response
                .headers_mut()
                .insert("content-type", HeaderValue::from_static(OCI_INDEX));
        }
    }
    response
}

/// The `[[proxy]]` rule of these tests, through the configuration file's parser.
fn proxy_rules(gate: &str, ttl: &str) -> Vec<berth::config::ProxyRule> {
    proxy_rules_with(gate, ttl, "")
}

/// The rule of [`proxy_rules`] with `extra` lines of TOML.
fn proxy_rules_with(gate: &str, ttl: &str, extra: &str) -> Vec<berth::config::ProxyRule> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("berth.toml");
    std::fs::write(
        &path,
        format!(
            "[[proxy]]\nprefix = \"hub\"\nupstreams = [{{ url = \"{gate}\" }}]\n\
             hosts = [\"docker.io\"]\ntag_ttl = \"{ttl}\"\ntimeout_secs = 2\n{extra}"
        ),
    )
    .unwrap();
    berth::Config::load(Some(&path), Default::default())
        .expect("rule accepted")
        .proxy
}

/// An upstream Berth, the gate in front of it, and a caching Berth using the gate.
async fn setup(ttl: &str) -> (TestServer, Gate, TestServer) {
    let upstream = TestServer::start().await;
    let gate = Gate::start(&upstream).await;
    let rules = proxy_rules(&gate.base, ttl);
    let cache = TestServer::start_with(|cfg| cfg.proxy = rules).await;
    (upstream, gate, cache)
}

async fn body_of(resp: reqwest::Response) -> Vec<u8> {
    resp.bytes().await.expect("body").to_vec()
}

#[tokio::test]
async fn first_pull_fetches_and_digest_pulls_never_ask_upstream() {
    let (upstream, gate, cache) = setup("10m").await;
    let layer = random_bytes(70_000);
    let config = image_config("linux", "amd64", None);
    let (digest, manifest) = upstream
        .push_image_with("library/app", "v1", &config, &[&layer])
        .await;

    let resp = cache.get("/v2/hub/library/app/manifests/v1").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "docker-content-digest").unwrap(), digest);
    assert_eq!(body_of(resp).await, manifest, "stored byte for byte");
    let resp = cache
        .get(&format!("/v2/hub/library/app/blobs/{}", sha256(&layer)))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(body_of(resp).await, layer);
    let first = gate.take();
    assert_eq!(
        first
            .iter()
            .filter(|r| r.starts_with("GET") && r.contains("/manifests/"))
            .count(),
        1,
        "{first:?}"
    );

    // Everything again, by digest: served from the cache, the upstream is not asked.
    let resp = cache
        .get(&format!("/v2/hub/library/app/manifests/{digest}"))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(body_of(resp).await, manifest);
    for blob in [&config, &layer] {
        let resp = cache
            .get(&format!("/v2/hub/library/app/blobs/{}", sha256(blob)))
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(&body_of(resp).await, blob);
    }
    assert_eq!(gate.take(), Vec::<String>::new());

    // The cached repository is an ordinary one: listed, with its tag.
    let tags = json_body(cache.get("/v2/hub/library/app/tags/list").await).await;
    assert_eq!(tags["tags"], json!(["v1"]));
}

#[tokio::test]
async fn a_tag_is_revalidated_with_one_head_after_its_ttl_and_not_before() {
    let (upstream, gate, cache) = setup("10m").await;
    let (old, _) = upstream.push_image("library/app", "v1", &[b"one"]).await;
    let resp = cache.get("/v2/hub/library/app/manifests/v1").await;
    assert_eq!(header(&resp, "docker-content-digest").unwrap(), old);
    gate.take();

    // The tag moves upstream; within the TTL the cache serves what it has, asking nothing.
    let (new, new_bytes) = upstream.push_image("library/app", "v1", &[b"two"]).await;
    for _ in 0..3 {
        let resp = cache.get("/v2/hub/library/app/manifests/v1").await;
        assert_eq!(header(&resp, "docker-content-digest").unwrap(), old);
        let resp = cache.head("/v2/hub/library/app/manifests/v1").await;
        assert_eq!(header(&resp, "docker-content-digest").unwrap(), old);
    }
    assert_eq!(gate.take(), Vec::<String>::new(), "0 upstream requests");

    // After the TTL: one HEAD sees the move, then the new manifest is fetched by digest.
    cache.clock.advance(601);
    let resp = cache.get("/v2/hub/library/app/manifests/v1").await;
    assert_eq!(header(&resp, "docker-content-digest").unwrap(), new);
    assert_eq!(body_of(resp).await, new_bytes);
    assert_eq!(
        gate.take(),
        vec![
            "HEAD /v2/library/app/manifests/v1".to_owned(),
            format!("GET /v2/library/app/manifests/{new}"),
        ]
    );

    // A tag that did not move costs one HEAD and no download.
    cache.clock.advance(601);
    let resp = cache.get("/v2/hub/library/app/manifests/v1").await;
    assert_eq!(header(&resp, "docker-content-digest").unwrap(), new);
    assert_eq!(
        gate.take(),
        vec!["HEAD /v2/library/app/manifests/v1".to_owned()]
    );
}

#[tokio::test]
async fn cached_tags_are_served_when_the_upstream_fails_and_uncached_content_names_it() {
    let (upstream, gate, cache) = setup("1m").await;
    let (digest, manifest) = upstream.push_image("library/app", "v1", &[b"layer"]).await;
    upstream.push_image("library/other", "v1", &[b"x"]).await;
    assert_eq!(
        cache.get("/v2/hub/library/app/manifests/v1").await.status(),
        StatusCode::OK
    );
    let stale_count = || async {
        let text = cache.get("/metrics").await.text().await.unwrap();
        text.lines()
            .find(|l| l.starts_with("berth_proxy_stale_served_total "))
            .map(|l| l.rsplit(' ').next().unwrap().to_owned())
            .unwrap()
    };
    assert_eq!(stale_count().await, "0");
    gate.take();

    for (mode, status, says) in [
        (Mode::Status(429), 503, "answered 429 Too Many Requests"),
        (Mode::Status(500), 502, "answered 500 Internal Server Error"),
        (Mode::Slow(4000), 503, "timed out"),
    ] {
        gate.set(mode);
        cache.clock.advance(61);
        let resp = cache.get("/v2/hub/library/app/manifests/v1").await;
        assert_eq!(resp.status(), StatusCode::OK, "{mode:?}");
        assert_eq!(header(&resp, "docker-content-digest").unwrap(), digest);
        assert_eq!(body_of(resp).await, manifest);

        let resp = cache.get("/v2/hub/library/other/manifests/v1").await;
        assert_eq!(resp.status().as_u16(), status, "{mode:?}");
        let body = json_body(resp).await;
        let message = body["errors"][0]["message"].as_str().unwrap().to_owned();
        assert!(message.contains(&gate.base), "{message}");
        assert!(message.contains(says), "{mode:?}: {message}");
        assert_eq!(body["errors"][0]["code"], "UNAVAILABLE");
        let seen = gate.take();
        if mode == Mode::Status(429) {
            // Its Retry-After (30 s; the clock moves on only between modes) is honoured:
            // the second request did not reach it.
            assert_eq!(seen, vec!["HEAD /v2/library/app/manifests/v1".to_owned()]);
        }
    }
    assert_eq!(stale_count().await, "3");

    // The upstream gone: the cached tag and digest still pull, the rest says why not.
    let base = gate.base.clone();
    gate.stop().await;
    cache.clock.advance(61);
    let resp = cache.get("/v2/hub/library/app/manifests/v1").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = cache
        .get(&format!("/v2/hub/library/app/manifests/{digest}"))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = cache.get("/v2/hub/library/other/manifests/v1").await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let message = json_body(resp).await["errors"][0]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    // the cause a user can act on, not only reqwest's "error sending request"
    assert!(
        message.contains(&base)
            && message.contains("could not be reached")
            && message.contains("Connection refused"),
        "{message}"
    );
}

#[tokio::test]
async fn an_index_is_kept_byte_for_byte_when_a_child_was_pulled_first() {
    let (upstream, gate, cache) = setup("10m").await;
    let amd = image_config("linux", "amd64", None);
    let arm = image_config("linux", "arm64", Some("v8"));
    let (amd_digest, amd_bytes) = upstream
        .push_image_with("library/multi", "", &amd, &[b"amd layer"])
        .await;
    let (arm_digest, arm_bytes) = upstream
        .push_image_with("library/multi", "", &arm, &[b"arm layer"])
        .await;
    let index = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            { "mediaType": OCI_MANIFEST, "digest": amd_digest, "size": amd_bytes.len(),
              "platform": { "os": "linux", "architecture": "amd64" } },
            { "mediaType": OCI_MANIFEST, "digest": arm_digest, "size": arm_bytes.len(),
              "platform": { "os": "linux", "architecture": "arm64", "variant": "v8" } },
        ],
    }))
    .unwrap();
    let index_digest = upstream
        .put_manifest_ok("library/multi", "v1", OCI_INDEX, &index)
        .await;

    // As containerd does: the one platform's manifest, then the index by digest.
    let resp = cache
        .get(&format!("/v2/hub/library/multi/manifests/{amd_digest}"))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = cache
        .get(&format!("/v2/hub/library/multi/manifests/{index_digest}"))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        header(&resp, "docker-content-digest").unwrap(),
        index_digest
    );
    assert_eq!(header(&resp, "content-type").unwrap(), OCI_INDEX);
    assert_eq!(body_of(resp).await, index, "not trimmed, not re-serialised");
    // The other child, asked later, comes too.
    let resp = cache
        .get(&format!("/v2/hub/library/multi/manifests/{arm_digest}"))
        .await;
    assert_eq!(body_of(resp).await, arm_bytes);
    gate.take();
    let resp = cache
        .get(&format!("/v2/hub/library/multi/manifests/{index_digest}"))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(gate.take(), Vec::<String>::new());
}

#[tokio::test]
async fn concurrent_misses_of_one_blob_fetch_it_upstream_once() {
    let (upstream, gate, cache) = setup("10m").await;
    let layer = random_bytes(3 * 1024 * 1024);
    let digest = upstream.push_blob("library/big", &layer).await;
    gate.set(Mode::Slow(300));
    let pulls = (0..30).map(|_| {
        let url = cache.url(&format!("/v2/hub/library/big/blobs/{digest}"));
        let client = cache.client.clone();
        async move {
            let resp = client.get(url).send().await.expect("GET");
            assert_eq!(resp.status(), StatusCode::OK);
            sha256(&resp.bytes().await.expect("whole blob"))
        }
    });
    let got = futures::future::join_all(pulls).await;
    assert!(got.iter().all(|d| *d == digest), "every pull whole");
    let seen = gate.take();
    assert_eq!(
        seen,
        vec![format!("GET /v2/library/big/blobs/{digest}")],
        "fetched upstream once"
    );
    let resp = cache
        .head(&format!("/v2/hub/library/big/blobs/{digest}"))
        .await;
    assert_eq!(
        header(&resp, "content-length").unwrap(),
        layer.len().to_string()
    );
}

#[tokio::test]
async fn a_wrong_or_short_upstream_blob_is_never_committed_nor_served_whole() {
    let (upstream, gate, cache) = setup("10m").await;
    for mode in [Mode::WrongBlob, Mode::ShortBlob] {
        let layer = random_bytes(200_000);
        let digest = upstream.push_blob("library/bad", &layer).await;
        gate.set(mode);
        let path = format!("/v2/hub/library/bad/blobs/{digest}");
        let resp = cache.get(&path).await;
        // The download starts as the upstream's does, and breaks off before its end.
        assert_eq!(resp.status(), StatusCode::OK, "{mode:?}");
        assert_eq!(header(&resp, "content-length").unwrap(), "200000");
        let body = resp.bytes().await;
        assert!(body.is_err(), "{mode:?}: a download completed as valid");
        // Nothing was committed: with the upstream refusing, the cache has nothing to serve.
        gate.set(Mode::Status(500));
        let resp = cache.get(&path).await;
        assert_eq!(resp.status(), StatusCode::BAD_GATEWAY, "{mode:?}");
        let resp = cache.head(&path).await;
        assert_eq!(resp.status(), StatusCode::BAD_GATEWAY, "{mode:?}");
        // Once the upstream sends the right bytes, they are served and kept.
        gate.set(Mode::Pass);
        let resp = cache.get(&path).await;
        assert_eq!(body_of(resp).await, layer, "{mode:?}");
        gate.set(Mode::Status(500));
        let resp = cache.get(&path).await;
        assert_eq!(body_of(resp).await, layer, "{mode:?}: now cached");
        gate.set(Mode::Pass);
    }
}

/// What a blob download that broke off needs from the upstream the next time: the `Range`
/// the gate saw and the bytes it sent. Checks the whole blob came back to the client.
async fn resumed_pull(cache_base: &str, path: &str, gate: &Gate, layer: &[u8]) -> (u64, u64) {
    gate.state.ranges.lock().unwrap().clear();
    *gate.state.blob_bytes.lock().unwrap() = 0;
    let resp = reqwest::get(format!("{cache_base}{path}")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        header(&resp, "content-length").unwrap(),
        layer.len().to_string()
    );
    assert!(
        body_of(resp).await == layer,
        "the whole blob, byte for byte"
    );
    let ranges = gate.state.ranges.lock().unwrap().clone();
    assert_eq!(ranges.len(), 1, "one ranged request upstream: {ranges:?}");
    let from = ranges[0]
        .strip_prefix("bytes=")
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|r| r.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("an open range: {ranges:?}"));
    (from, *gate.state.blob_bytes.lock().unwrap())
}

/// A cache whose download of a 20 MiB blob the upstream broke off after 10 MiB, with the
/// upstream, the gate, the blob and its path; `None` on a cloud store (no resuming there).
async fn cut_off_download() -> Option<(TestServer, Gate, TestServer, Vec<u8>, String)> {
    let (upstream, gate, cache) = setup("10m").await;
    if !cache.on_embedded_backends() {
        eprintln!("skipped: downloads resume on the local filesystem store only");
        return None;
    }
    let layer = random_bytes(20 * 1024 * 1024);
    let digest = upstream.push_blob("library/large", &layer).await;
    let path = format!("/v2/hub/library/large/blobs/{digest}");
    // The upstream declares 20 MiB and breaks off after 10.
    gate.set(Mode::ShortBlob);
    let resp = cache.get(&path).await;
    assert!(resp.bytes().await.is_err(), "a cut-off download completed");
    Some((upstream, gate, cache, layer, path))
}

#[tokio::test]
async fn a_download_cut_off_upstream_goes_on_from_the_last_recorded_byte() {
    const SEGMENT: u64 = 8 * 1024 * 1024;
    let Some((_upstream, gate, cache, layer, path)) = cut_off_download().await else {
        return;
    };
    gate.set(Mode::Pass);
    let (from, sent) = resumed_pull(&cache.base, &path, &gate, &layer).await;
    // At least the first 8 MiB segment was recorded; nothing past the 10 MiB received.
    assert!(
        (SEGMENT..=10 * 1024 * 1024).contains(&from),
        "resumed at {from}"
    );
    assert_eq!(sent, layer.len() as u64 - from, "only the rest fetched");
    gate.set(Mode::Status(500));
    let resp = cache.get(&path).await;
    assert!(body_of(resp).await == layer, "cached whole");
}

/// An upstream that answers a ranged GET with the whole blob (200) cannot continue a download
/// cut off: the blob is fetched whole instead, and served and kept whole.
#[tokio::test]
async fn an_upstream_that_ignores_the_range_gets_the_blob_fetched_whole() {
    let Some((_upstream, gate, cache, layer, path)) = cut_off_download().await else {
        return;
    };
    let digest = sha256(&layer);
    gate.set(Mode::IgnoreRange);
    gate.take();
    let resp = cache.get(&path).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        body_of(resp).await == layer,
        "the whole blob, byte for byte"
    );
    let blob_gets = format!("GET /v2/library/large/blobs/{digest}");
    assert_eq!(
        gate.take(),
        [blob_gets.clone(), blob_gets],
        "the ranged request, then the whole blob"
    );
    gate.set(Mode::Status(500));
    let resp = cache.get(&path).await;
    assert!(body_of(resp).await == layer, "cached whole");
}

/// `berth serve` killed (SIGKILL) while it fills a blob from a slow upstream: after the
/// restart the next pull asks the upstream only for the bytes not recorded before the kill.
#[tokio::test(flavor = "multi_thread")]
async fn a_fill_cut_off_by_a_crash_goes_on_after_the_restart() {
    use crate::support;
    const SEGMENT: u64 = 8 * 1024 * 1024;
    let upstream = TestServer::start().await;
    let gate = Gate::start(&upstream).await;
    let layer = random_bytes(24 * 1024 * 1024);
    let digest = upstream.push_blob("library/large", &layer).await;
    let dir = tempfile::tempdir().unwrap();
    let (data, config) = (dir.path().join("data"), dir.path().join("berth.toml"));
    std::fs::write(
        &config,
        format!(
            "[durability]\nfsync = false\n\n[[proxy]]\nprefix = \"hub\"\n\
             upstreams = [{{ url = \"{}\" }}]\n",
            gate.base
        ),
    )
    .unwrap();
    let cache = support::start_server(&data, &config);
    // 256 KiB every 10 ms: the 24 MiB take about a second.
    gate.set(Mode::Trickle(10));
    let path = format!("/v2/hub/library/large/blobs/{digest}");
    let url = format!("{}{path}", cache.base);
    let first = tokio::spawn(async move { reqwest::get(url).await?.bytes().await });
    // Killed once the spool holds more than a segment and a read: one segment is recorded.
    let spool_len = || {
        walk(&data)
            .into_iter()
            .filter(|p| p.ends_with("spool"))
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .max()
            .unwrap_or(0)
    };
    let mut polls = 0;
    while spool_len() < SEGMENT + 1024 * 1024 {
        polls += 1;
        assert!(polls < 1000, "the fill did not get going");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::task::block_in_place(|| cache.kill9());
    let kept = spool_len();
    assert!(
        kept < layer.len() as u64,
        "the fill had finished before the kill"
    );
    assert!(
        first.await.unwrap().is_err(),
        "the first download completed"
    );

    let cache = support::start_server(&data, &config);
    gate.set(Mode::Pass);
    let (from, sent) = resumed_pull(&cache.base, &path, &gate, &layer).await;
    assert!(
        (SEGMENT..=kept).contains(&from),
        "resumed at {from}, {kept} kept"
    );
    assert_eq!(sent, layer.len() as u64 - from, "only the rest fetched");
    assert!(
        walk(&data).iter().all(|p| !p.ends_with("spool")),
        "the session's spool is gone once the blob is published"
    );
    tokio::task::block_in_place(|| cache.terminate());
}

/// Two replicas miss one blob at once: the one holding the blob's session writes it there;
/// the other finds the session held and fetches the blob whole beside it. Both clients get
/// every byte, and neither download asks for a range.
#[tokio::test(flavor = "multi_thread")]
async fn a_fill_held_by_another_replica_is_fetched_whole_beside_it() {
    let (upstream, gate, cache) = setup("10m").await;
    if !cache.on_embedded_backends() {
        eprintln!("skipped: sessions of downloads are held on the local filesystem store only");
        return;
    }
    let layer = random_bytes(12 * 1024 * 1024);
    let digest = upstream.push_blob("library/large", &layer).await;
    let replica = cache.replica().await;
    // 256 KiB every 10 ms: the server's download takes about half a second.
    gate.set(Mode::Trickle(10));
    let url = cache.url(&format!("/v2/hub/library/large/blobs/{digest}"));
    let first = tokio::spawn(async move { reqwest::get(url).await?.bytes().await });
    let mut polls = 0;
    while !walk(&cache.data_dir)
        .iter()
        .any(|p| p.ends_with("spool") && std::fs::metadata(p).is_ok_and(|m| m.len() > 0))
    {
        polls += 1;
        assert!(polls < 1000, "the server's download did not start");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let repo: berth::oci::RepoName = "hub/library/large".parse().unwrap();
    let fill = replica
        .proxy_blob(&repo, &digest.parse().unwrap())
        .await
        .expect("the replica's miss is served")
        .expect("a download of the replica's own");
    let beside: Vec<u8> = fill
        .body
        .map(|chunk| chunk.expect("the replica's download whole").to_vec())
        .concat()
        .await;
    assert!(beside == layer, "the replica's client got the blob");
    let first = first.await.unwrap().expect("the server's download whole");
    assert!(first == layer, "the server's client got the blob");
    let blob_gets = gate.take().iter().filter(|r| r.contains("/blobs/")).count();
    assert_eq!(blob_gets, 2, "each replica fetched it once");
    assert!(gate.state.ranges.lock().unwrap().is_empty());
    replica.close().await;
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

#[tokio::test]
async fn upstream_404s_are_remembered_for_a_while() {
    let (_upstream, gate, cache) = setup("10m").await;
    let resp = cache.get("/v2/hub/library/nothing/manifests/v1").await;
    assert_error(resp, 404, "MANIFEST_UNKNOWN").await;
    assert_eq!(gate.take().len(), 1);
    let resp = cache.get("/v2/hub/library/nothing/manifests/v1").await;
    assert_error(resp, 404, "MANIFEST_UNKNOWN").await;
    assert_eq!(gate.take(), Vec::<String>::new());
    cache.clock.advance(31);
    let resp = cache.get("/v2/hub/library/nothing/manifests/v1").await;
    assert_error(resp, 404, "MANIFEST_UNKNOWN").await;
    assert_eq!(gate.take().len(), 1, "asked again after not_found_ttl");
    // Outside any prefix nothing is proxied.
    let resp = cache.get("/v2/library/nothing/manifests/v1").await;
    assert_error(resp, 404, "MANIFEST_UNKNOWN").await;
    assert_eq!(gate.take(), Vec::<String>::new());
}

#[tokio::test]
async fn containerd_ns_routes_to_the_rule_of_that_host() {
    let (upstream, _gate, cache) = setup("10m").await;
    let (digest, manifest) = upstream
        .push_image("library/alpine", "3", &[b"alpine"])
        .await;
    let resp = cache
        .get("/v2/library/alpine/manifests/3?ns=docker.io")
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "docker-content-digest").unwrap(), digest);
    assert_eq!(body_of(resp).await, manifest);
    let resp = cache
        .get(&format!(
            "/v2/library/alpine/blobs/{}?ns=docker.io",
            sha256(b"alpine")
        ))
        .await;
    assert_eq!(body_of(resp).await, b"alpine");
    // Cached under the rule's prefix; a host no rule lists is this registry's own names.
    let resp = cache.get("/v2/hub/library/alpine/manifests/3").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = cache.get("/v2/library/alpine/manifests/3?ns=quay.io").await;
    assert_error(resp, 404, "MANIFEST_UNKNOWN").await;
}

#[tokio::test]
async fn only_included_and_not_excluded_upstream_repositories_are_mirrored() {
    let upstream = TestServer::start().await;
    let gate = Gate::start(&upstream).await;
    let rules = proxy_rules_with(
        &gate.base,
        "10m",
        "include = [\"library/*\", \"team/**\"]\nexclude = [\"library/secret*\"]\n",
    );
    let cache = TestServer::start_with(|cfg| cfg.proxy = rules).await;
    for repo in [
        "library/alpine",
        "library/secret-base",
        "team/a/b",
        "other/app",
    ] {
        upstream.push_image(repo, "v1", &[repo.as_bytes()]).await;
    }
    // Included and not excluded: fetched through the cache.
    for repo in ["library/alpine", "team/a/b"] {
        let resp = cache.get(&format!("/v2/hub/{repo}/manifests/v1")).await;
        assert_eq!(resp.status(), StatusCode::OK, "{repo}");
    }
    let seen = gate.take();
    for repo in ["library/alpine", "team/a/b"] {
        let asked = format!("GET /v2/{repo}/manifests/v1");
        assert!(seen.contains(&asked), "{seen:?}");
    }
    // Excluded, or not included: an ordinary local repository, the upstream never asked.
    for repo in ["library/secret-base", "other/app"] {
        let resp = cache.get(&format!("/v2/hub/{repo}/manifests/v1")).await;
        assert_error(resp, 404, "MANIFEST_UNKNOWN").await;
        let resp = cache
            .get(&format!("/v2/hub/{repo}/blobs/{}", sha256(repo.as_bytes())))
            .await;
        assert_error(resp, 404, "BLOB_UNKNOWN").await;
    }
    assert_eq!(gate.take(), Vec::<String>::new());
    // such a repository takes pushes as any other (a cached one's tags follow the upstream)
    let (digest, _) = cache.push_image("hub/other/app", "mine", &[b"ours"]).await;
    let resp = cache.get("/v2/hub/other/app/manifests/mine").await;
    assert_eq!(header(&resp, "docker-content-digest").unwrap(), digest);
    let rules = json_body(cache.get("/api/v1/proxy/rules").await).await;
    assert_eq!(rules[0]["include"], json!(["library/*", "team/**"]));
    assert_eq!(rules[0]["exclude"], json!(["library/secret*"]));
}

#[tokio::test]
async fn rules_are_listed_through_the_api() {
    let (_upstream, gate, cache) = setup("10m").await;
    let rules = json_body(cache.get("/api/v1/proxy/rules").await).await;
    assert_eq!(
        rules,
        json!([{
            "prefix": "hub",
            "upstreams": [{ "url": gate.base, "authenticated": false }],
            "hosts": ["docker.io"],
            "tag_ttl_secs": 600,
            "not_found_ttl_secs": 30,
            "timeout_secs": 2,
            "evict_after_secs": null,
            "max_bytes": null,
            "pinned": [],
            "include": [],
            "exclude": [],
            "source": "config",
            "updated_at": null,
            "updated_by": null,
        }])
    );
}

/// A rule created through the API mirrors at once, beside the configured one; another
/// replica reads it from the index; replaced, it changes there on the next read; deleted, its
/// prefix is local again. The configured rule cannot be changed here, and each rule at fault
/// (clashing with another, a key wrong) is refused by name with nothing changed.
#[tokio::test]
async fn rules_managed_through_the_api_are_in_force_on_every_replica() {
    let (upstream, gate, cache) = setup("10m").await;
    let (digest, manifest) = upstream
        .push_image("library/app", "v1", &[b"app layer"])
        .await;
    let put = |prefix: &str, body: serde_json::Value| {
        cache
            .req(Method::PUT, &format!("/api/v1/proxy/rules/{prefix}"))
            .json(&body)
            .send()
    };
    let rule = json!({
        "upstreams": [{"url": gate.base}],
        "hosts": ["quay.io"],
        "tag_ttl": "1m",
        "timeout_secs": 2,
        "include": ["library/**"],
    });
    let resp = put("mirror", rule.clone()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let created = json_body(resp).await;
    assert_eq!(created["prefix"], "mirror");
    assert_eq!(created["source"], "api");
    assert_eq!(created["tag_ttl_secs"], 60);
    assert_eq!(created["hosts"], json!(["quay.io"]));
    assert_eq!(created["include"], json!(["library/**"]));
    assert!(created["updated_at"].is_i64() && created["updated_by"].is_string());

    let resp = cache.get("/v2/mirror/library/app/manifests/v1").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "docker-content-digest").unwrap(), digest);
    assert_eq!(body_of(resp).await, manifest);
    assert!(
        gate.take()
            .iter()
            .any(|r| r.starts_with("GET") && r.contains("/library/app/manifests/v1")),
        "fetched from the upstream"
    );
    let resp = cache.get("/v2/library/app/manifests/v1?ns=quay.io").await;
    assert_eq!(resp.status(), StatusCode::OK, "its host routes to it");
    let listed = json_body(cache.get("/api/v1/proxy/rules").await).await;
    let sources: Vec<(&str, &str)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["prefix"].as_str().unwrap(), r["source"].as_str().unwrap()))
        .collect();
    assert_eq!(sources, [("hub", "config"), ("mirror", "api")]);
    let one = json_body(cache.get("/api/v1/proxy/rules/mirror").await).await;
    assert_eq!(one, created);

    // Another replica of the same index reads the rule at start, and a change on its next read.
    let replica = cache.replica().await;
    let prefixes = |rules: &berth::registry::ActiveRules| {
        rules
            .iter()
            .map(|r| (r.rule.prefix.clone(), r.rule.tag_ttl_secs))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        prefixes(&replica.proxy_rules()),
        [("hub".to_owned(), 600), ("mirror".to_owned(), 60)]
    );
    let mut longer = rule.clone();
    longer["tag_ttl"] = json!("2m");
    longer["prefix"] = json!("mirror");
    let resp = put("mirror", longer).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "replaced");
    replica.refresh_proxy_rules().await.unwrap();
    assert_eq!(
        prefixes(&replica.proxy_rules()),
        [("hub".to_owned(), 600), ("mirror".to_owned(), 120)]
    );

    // Refused, each naming why; the rules stay as they were.
    let mut hub_host = rule.clone();
    hub_host["hosts"] = json!(["docker.io"]);
    let mut no_upstream = rule.clone();
    no_upstream["upstreams"] = json!([]);
    let mut bad_ttl = rule.clone();
    bad_ttl["tag_ttl"] = json!("10 parsecs");
    let mut bad_glob = rule.clone();
    bad_glob["include"] = json!(["library/[a"]);
    let mut unset_secret = rule.clone();
    unset_secret["upstreams"] =
        json!([{"url": gate.base, "username": "u", "password_env": "BERTH_TEST_UNSET_SECRET"}]);
    let mut other_prefix = rule.clone();
    other_prefix["prefix"] = json!("elsewhere");
    let mut unknown_key = rule.clone();
    unknown_key["upstream"] = json!(gate.base);
    let mut bad_url = rule.clone();
    bad_url["upstreams"] = json!([{"url": "ftp://example.test"}]);
    let cases = [
        ("hub", rule.clone(), 409, "set in the configuration file"),
        ("hub/inner", rule.clone(), 400, "overlap"),
        ("mirror/inner", rule.clone(), 400, "overlap"),
        ("other", hub_host, 400, "routed by both"),
        ("other", no_upstream, 400, "upstreams"),
        ("other", bad_ttl, 400, "tag_ttl"),
        ("other", bad_glob, 400, "include"),
        (
            "other",
            unset_secret,
            400,
            "BERTH_TEST_UNSET_SECRET is not set",
        ),
        ("other", other_prefix, 400, "differs from the path"),
        ("other", unknown_key, 400, "unknown field `upstream`"),
        ("other", bad_url, 400, "http:// or https://"),
        ("other", json!(["not", "an", "object"]), 400, "JSON object"),
        ("Bad Prefix", rule.clone(), 400, "prefix"),
    ];
    for (prefix, body, status, why) in cases {
        let resp = put(prefix, body).await.unwrap();
        assert_eq!(resp.status().as_u16(), status, "{prefix}");
        let body = json_body(resp).await;
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(why),
            "{prefix}: {message:?} should say {why:?}"
        );
    }
    let after = json_body(cache.get("/api/v1/proxy/rules").await).await;
    assert_eq!(after.as_array().map(Vec::len), Some(2), "{after}");

    // Deleted: the prefix is local again, the upstream is not asked.
    let resp = cache.delete("/api/v1/proxy/rules/mirror").await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    gate.take();
    let resp = cache.get("/v2/mirror/library/other/manifests/v1").await;
    assert_error(resp, 404, "MANIFEST_UNKNOWN").await;
    assert_eq!(gate.take(), Vec::<String>::new());
    let resp = cache.get("/v2/mirror/library/app/manifests/v1").await;
    assert_eq!(
        resp.status(),
        StatusCode::OK,
        "what was cached stays, as a local repository"
    );
    for (resp, status) in [
        (cache.delete("/api/v1/proxy/rules/mirror").await, 404),
        (cache.get("/api/v1/proxy/rules/mirror").await, 404),
        (cache.delete("/api/v1/proxy/rules/hub").await, 409),
    ] {
        assert_eq!(resp.status().as_u16(), status);
    }
    replica.refresh_proxy_rules().await.unwrap();
    assert_eq!(prefixes(&replica.proxy_rules()), [("hub".to_owned(), 600)]);
    replica.close().await;
}

#[tokio::test]
async fn bad_rules_are_refused_at_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("berth.toml");
    let cases = [
        (
            "[[proxy]]\nprefix = \"hub\"\nupstreams = [{ url = \"http://127.0.0.1:1\" }]\n\
             [[proxy]]\nprefix = \"hub/library\"\nupstreams = [{ url = \"http://127.0.0.1:2\" }]\n",
            "prefixes \"hub\" and \"hub/library\" overlap",
        ),
        (
            "[[proxy]]\nprefix = \"hub\"\nupstreams = [{ url = \"registry-1.docker.io\" }]\n",
            "proxy[0]: upstreams[0]: url: \"registry-1.docker.io\" is not a URL",
        ),
        (
            "[[proxy]]\nprefix = \"hub\"\nupstreams = [{ url = \"ftp://mirror\" }]\n",
            "must be an http:// or https:// URL",
        ),
        (
            "[[proxy]]\nprefix = \"hub\"\nupstreams = [{ url = \"http://127.0.0.1:1\" }]\n\
             tag_ttl = \"ten minutes\"\n",
            "proxy[0]: tag_ttl: \"ten minutes\": use a number with s, m, h or d",
        ),
        (
            "[[proxy]]\nprefix = \"hub\"\nupstreams = [{ url = \"http://127.0.0.1:1\" }]\n\
             tag_ttl = \"0m\"\n",
            "tag_ttl: \"0m\": use a positive number",
        ),
        (
            "[[proxy]]\nprefix = \"Hub\"\nupstreams = [{ url = \"http://127.0.0.1:1\" }]\n",
            "prefix: \"Hub\" is not a repository name prefix",
        ),
        (
            "[[proxy]]\nprefix = \"hub\"\nupstreams = []\n",
            "upstreams: give at least one",
        ),
        (
            "[[proxy]]\nprefix = \"hub\"\nupstreams = [{ url = \"http://127.0.0.1:1\", \
             password_env = \"BERTH_TEST_PROXY_UNSET_VARIABLE\" }]\n",
            "$BERTH_TEST_PROXY_UNSET_VARIABLE is not set",
        ),
        (
            "[[proxy]]\nprefix = \"a\"\nupstreams = [{ url = \"http://127.0.0.1:1\" }]\n\
             hosts = [\"docker.io\"]\n\
             [[proxy]]\nprefix = \"b\"\nupstreams = [{ url = \"http://127.0.0.1:1\" }]\n\
             hosts = [\"Docker.io\"]\n",
            "host \"docker.io\" is routed by both \"a\" and \"b\"",
        ),
        (
            "[[proxy]]\nprefix = \"hub\"\nupstreams = [{ url = \"http://127.0.0.1:1\" }]\n\
             tagttl = \"1m\"\n",
            "unknown field `tagttl`",
        ),
        (
            "[[proxy]]\nprefix = \"hub\"\nupstreams = [{ url = \"http://127.0.0.1:1\" }]\n\
             pinned = [\"library/alpine\"]\n",
            "pinned: \"library/alpine\" is not a repository name under \"hub\"",
        ),
        (
            "[[proxy]]\nprefix = \"hub\"\nupstreams = [{ url = \"http://127.0.0.1:1\" }]\n\
             max_bytes = 0\n",
            "max_bytes: must be at least 1",
        ),
        (
            "[[proxy]]\nprefix = \"hub\"\nupstreams = [{ url = \"http://127.0.0.1:1\" }]\n\
             evict_after = \"soon\"\n",
            "evict_after: \"soon\"",
        ),
        (
            "[[proxy]]\nprefix = \"hub\"\nupstreams = [{ url = \"http://127.0.0.1:1\" }]\n\
             include = [\"library/[abc\"]\n",
            "proxy[0]: include: \"library/[abc\" is not a glob",
        ),
        (
            "[[proxy]]\nprefix = \"hub\"\nupstreams = [{ url = \"http://127.0.0.1:1\" }]\n\
             exclude = \"library/*\"\n",
            "exclude",
        ),
    ];
    for (text, says) in cases {
        std::fs::write(&path, text).unwrap();
        let full = match berth::Config::load(Some(&path), Default::default()) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => format!("{e:#}"),
        };
        assert!(full.contains(says), "{text}\n→ {full}");
    }
}

#[tokio::test]
async fn a_private_upstream_is_read_with_the_docker_token_flow() {
    use crate::common::auth::{ADMIN, ADMIN_PASSWORD, start_auth};
    let mut upstream = start_auth(|_| {}).await;
    upstream.sign_in(ADMIN, ADMIN_PASSWORD);
    let (digest, manifest) = upstream
        .push_image("library/private", "v1", &[b"secret layer"])
        .await;
    upstream.sign_out();
    let resp = upstream.get("/v2/library/private/manifests/v1").await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "private upstream");
    let gate = Gate::start(&upstream).await;
    let dir = tempfile::tempdir().unwrap();
    let rules = |password: &str| {
        let secret = dir.path().join(format!("{password}.txt"));
        std::fs::write(&secret, format!("{password}\n")).unwrap();
        let path = dir.path().join("berth.toml");
        std::fs::write(
            &path,
            format!(
                "[[proxy]]\nprefix = \"hub\"\nupstreams = [{{ url = \"{}\", username = \"{ADMIN}\", \
                 password_file = \"{}\" }}]\n",
                gate.base,
                secret.display()
            ),
        )
        .unwrap();
        berth::Config::load(Some(&path), Default::default())
            .expect("rule accepted")
            .proxy
    };
    let good = rules(ADMIN_PASSWORD);
    let cache = TestServer::start_with(|cfg| cfg.proxy = good).await;
    let resp = cache.get("/v2/hub/library/private/manifests/v1").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "docker-content-digest").unwrap(), digest);
    assert_eq!(body_of(resp).await, manifest);
    let resp = cache
        .get(&format!(
            "/v2/hub/library/private/blobs/{}",
            sha256(b"secret layer")
        ))
        .await;
    assert_eq!(body_of(resp).await, b"secret layer");
    // Signed in once: the token is reused for the blob, no second challenge.
    let seen = gate.take();
    assert_eq!(
        seen.len(),
        4,
        "manifest (401, then with a token), config, layer: {seen:?}"
    );

    // Wrong credentials: a clear 502 naming the upstream, nothing cached.
    let bad = rules("not-the-password");
    let refused = TestServer::start_with(|cfg| cfg.proxy = bad).await;
    let resp = refused.get("/v2/hub/library/private/manifests/v1").await;
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    let message = json_body(resp).await["errors"][0]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains(&gate.base) && message.contains("token endpoint answered 401"),
        "{message}"
    );
    let tags = refused.get("/v2/hub/library/private/tags/list").await;
    assert_error(tags, 404, "NAME_UNKNOWN").await;
}

#[tokio::test]
async fn pulls_through_the_cache_need_pull_rights_on_the_prefix_and_no_more() {
    use crate::common::auth::{ADMIN, ADMIN_PASSWORD, password_of, start_auth};
    let upstream = TestServer::start().await;
    let (digest, _) = upstream
        .push_image("library/app", "v1", &[b"public layer"])
        .await;
    let gate = Gate::start(&upstream).await;
    let rules = proxy_rules(&gate.base, "10m");
    let mut cache = start_auth(|cfg| cfg.proxy = rules).await;
    cache
        .admin_api(
            Method::POST,
            "/namespaces",
            Some(json!({ "name": "hub", "visibility": "private" })),
        )
        .await;
    cache.create_user("reader").await;
    cache.create_user("stranger").await;
    cache.set_role("hub", "reader", "reporter").await;

    // Who may not read the prefix gets what a missing repository answers; nothing is fetched.
    cache.sign_out();
    let resp = cache.get("/v2/hub/library/app/manifests/v1").await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    cache.sign_in("stranger", &password_of("stranger"));
    let resp = cache.get("/v2/hub/library/app/manifests/v1").await;
    assert_error(resp, 404, "MANIFEST_UNKNOWN").await;
    assert_eq!(gate.take(), Vec::<String>::new());

    // A reader fills the cache (the registry creates the repository, not the reader's
    // rights), and still may not push there.
    cache.sign_in("reader", &password_of("reader"));
    let resp = cache.get("/v2/hub/library/app/manifests/v1").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "docker-content-digest").unwrap(), digest);
    let resp = cache
        .req(Method::POST, "/v2/hub/library/app/blobs/uploads/")
        .send()
        .await
        .unwrap();
    assert_error(resp, 403, "DENIED").await;

    // The cached repository is listed like a pushed one, private as its namespace.
    cache.sign_in(ADMIN, ADMIN_PASSWORD);
    let repo = cache
        .admin_api(Method::GET, "/repositories/hub/library/app", None)
        .await;
    assert_eq!(repo["name"], "hub/library/app");
    assert_eq!(repo["visibility"], "private");

    // A public prefix serves anonymous pulls, the first one included.
    cache
        .admin_api(
            Method::PUT,
            "/namespaces/hub/visibility",
            Some(json!({ "visibility": "public" })),
        )
        .await;
    upstream
        .push_image("library/other", "v1", &[b"other layer"])
        .await;
    cache.sign_out();
    let resp = cache.get("/v2/hub/library/other/manifests/v1").await;
    assert_eq!(resp.status(), StatusCode::OK);
}

/// Debian's CNCF Distribution 2.8.2 on a free loopback port, with its data in `dir`;
/// stopped (killed by its id) when dropped. Also the replication tests' remote.
pub(crate) struct Distribution {
    pub(crate) base: String,
    child: std::process::Child,
}

impl Distribution {
    pub(crate) async fn start(dir: &std::path::Path) -> Distribution {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let config = dir.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: 127.0.0.1:{port}\n",
                dir.join("data").display()
            ),
        )
        .unwrap();
        let child = std::process::Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .env("REGISTRY_HTTP_SECRET", "berth-proxy-test")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("docker-registry (Debian's package) runs");
        // Owned at once: dropped (killed) on every path below.
        let started = Distribution {
            base: format!("http://127.0.0.1:{port}"),
            child,
        };
        // Its listener comes up on its own time: asked for at most 20 s.
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if let Ok(r) = client.get(format!("{}/v2/", started.base)).send().await
                && r.status() == StatusCode::OK
            {
                return started;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("docker-registry did not answer on {}", started.base);
    }
}

impl Drop for Distribution {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
#[ignore = "needs Debian's docker-registry and skopeo (scripts/install-test-deps.sh installs both)"]
async fn distribution_as_upstream_with_an_image_pushed_by_skopeo() {
    // A two-platform image made on a Berth, copied to Distribution by skopeo as it is.
    let source = TestServer::start().await;
    let amd = image_config("linux", "amd64", None);
    let arm = image_config("linux", "arm64", Some("v8"));
    let (amd_digest, amd_bytes) = source
        .push_image_with("library/multi", "", &amd, &[&random_bytes(50_000)])
        .await;
    let (arm_digest, arm_bytes) = source
        .push_image_with("library/multi", "", &arm, &[&random_bytes(50_000)])
        .await;
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            { "mediaType": OCI_MANIFEST, "digest": amd_digest, "size": amd_bytes.len(),
              "platform": { "os": "linux", "architecture": "amd64" } },
            { "mediaType": OCI_MANIFEST, "digest": arm_digest, "size": arm_bytes.len(),
              "platform": { "os": "linux", "architecture": "arm64", "variant": "v8" } },
        ],
    }))
    .unwrap();
    let index_digest = source
        .put_manifest_ok("library/multi", "v1", OCI_INDEX, &index)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let distribution = Distribution::start(dir.path()).await;
    let host = |base: &str| base.trim_start_matches("http://").to_owned();
    let copied = tokio::process::Command::new("skopeo")
        .args([
            "copy",
            "--all",
            "--preserve-digests",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
        ])
        .arg(format!("docker://{}/library/multi:v1", host(&source.base)))
        .arg(format!(
            "docker://{}/library/multi:v1",
            host(&distribution.base)
        ))
        .output()
        .await
        .expect("skopeo runs");
    assert!(
        copied.status.success(),
        "{}",
        String::from_utf8_lossy(&copied.stderr)
    );

    let rules = proxy_rules(&distribution.base, "1m");
    let cache = TestServer::start_with(|cfg| cfg.proxy = rules).await;
    // One platform first, as containerd does, then the index by digest.
    let resp = cache
        .get(&format!("/v2/hub/library/multi/manifests/{arm_digest}"))
        .await;
    assert_eq!(body_of(resp).await, arm_bytes);
    let resp = cache
        .get(&format!("/v2/hub/library/multi/manifests/{index_digest}"))
        .await;
    assert_eq!(
        header(&resp, "docker-content-digest").unwrap(),
        index_digest
    );
    assert_eq!(body_of(resp).await, index);
    // By tag, its layers and config byte-identical, then revalidated with Distribution's HEAD.
    let resp = cache.get("/v2/hub/library/multi/manifests/v1").await;
    assert_eq!(
        header(&resp, "docker-content-digest").unwrap(),
        index_digest
    );
    let arm_manifest: serde_json::Value = serde_json::from_slice(&arm_bytes).unwrap();
    let mut blobs = vec![
        arm_manifest["config"]["digest"]
            .as_str()
            .unwrap()
            .to_owned(),
    ];
    blobs.extend(
        arm_manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_owned()),
    );
    for digest in blobs {
        let resp = cache
            .get(&format!("/v2/hub/library/multi/blobs/{digest}"))
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(sha256(&body_of(resp).await), digest);
    }
    cache.clock.advance(61);
    let resp = cache.head("/v2/hub/library/multi/manifests/v1").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        header(&resp, "docker-content-digest").unwrap(),
        index_digest
    );
    let stale = cache.get("/metrics").await.text().await.unwrap();
    assert!(
        stale
            .lines()
            .any(|l| l == "berth_proxy_stale_served_total 0"),
        "revalidated, not served stale"
    );

    // skopeo pulls every platform through the cache; then, Distribution stopped and the
    // TTL past, it pulls the same again from the cache alone.
    let skopeo_copy = |to: std::path::PathBuf| {
        let from = format!("docker://{}/hub/library/multi:v1", host(&cache.base));
        async move {
            let out = tokio::process::Command::new("skopeo")
                .args([
                    "copy",
                    "--all",
                    "--preserve-digests",
                    "--src-tls-verify=false",
                ])
                .arg(from)
                .arg(format!("oci:{}:v1", to.display()))
                .output()
                .await
                .expect("skopeo runs");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let layout: serde_json::Value =
                serde_json::from_slice(&std::fs::read(to.join("index.json")).unwrap()).unwrap();
            layout["manifests"][0]["digest"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    assert_eq!(skopeo_copy(dir.path().join("through")).await, index_digest);
    drop(distribution);
    cache.clock.advance(61);
    assert_eq!(skopeo_copy(dir.path().join("cached")).await, index_digest);
    let stale = cache.get("/metrics").await.text().await.unwrap();
    assert!(
        !stale
            .lines()
            .any(|l| l == "berth_proxy_stale_served_total 0"),
        "served stale once Distribution stopped"
    );
}

#[tokio::test]
async fn upstream_answers_that_lie_are_refused_and_nothing_is_cached() {
    let (upstream, gate, cache) = setup("10m").await;
    let (digest, manifest) = upstream.push_image("library/app", "v1", &[b"layer"]).await;
    for (mode, status, says) in [
        (
            Mode::EndlessManifest,
            502,
            "sent an answer over 4194304 bytes",
        ),
        (Mode::AlteredManifest, 502, "declared digest"),
        (
            Mode::WrongMediaType,
            502,
            "sent a manifest Berth cannot store",
        ),
        (Mode::RedirectLoop, 503, "redirected too often"),
    ] {
        gate.set(mode);
        for reference in ["v1", digest.as_str()] {
            let resp = cache
                .get(&format!("/v2/hub/library/app/manifests/{reference}"))
                .await;
            assert_eq!(resp.status().as_u16(), status, "{mode:?} {reference}");
            let message = json_body(resp).await["errors"][0]["message"]
                .as_str()
                .unwrap()
                .to_owned();
            let says = if mode == Mode::AlteredManifest && reference != "v1" {
                "sent a manifest hashing to"
            } else {
                says
            };
            assert!(
                message.contains(says) && message.contains(&gate.base),
                "{mode:?} {reference}: {message}"
            );
        }
        let tags = cache.get("/v2/hub/library/app/tags/list").await;
        assert_error(tags, 404, "NAME_UNKNOWN").await;
    }
    // Honest again: the same pull works and stores the upstream's bytes.
    gate.set(Mode::Pass);
    let resp = cache.get("/v2/hub/library/app/manifests/v1").await;
    assert_eq!(body_of(resp).await, manifest);
}

#[tokio::test]
async fn idle_repositories_and_those_over_the_cap_are_evicted_but_pinned_ones_stay() {
    let upstream = TestServer::start().await;
    let gate = Gate::start(&upstream).await;
    let rules = proxy_rules_with(
        &gate.base,
        "10m",
        "evict_after = \"1d\"\nmax_bytes = 200000\npinned = [\"hub/library/keep\"]\n",
    );
    let cache = TestServer::start_with(|cfg| cfg.proxy = rules).await;
    let mut layers = std::collections::HashMap::new();
    for (name, size) in [
        ("keep", 50_000),
        ("old", 10_000),
        ("new", 100_000),
        ("big", 100_000),
    ] {
        let layer = random_bytes(size);
        upstream
            .push_image(&format!("library/{name}"), "v1", &[&layer])
            .await;
        layers.insert(name, layer);
    }
    let pull = |name: &'static str| {
        let cache = &cache;
        let layer = layers[name].clone();
        async move {
            let resp = cache
                .get(&format!("/v2/hub/library/{name}/manifests/v1"))
                .await;
            assert_eq!(resp.status(), StatusCode::OK, "{name}");
            let resp = cache
                .get(&format!("/v2/hub/library/{name}/blobs/{}", sha256(&layer)))
                .await;
            assert_eq!(body_of(resp).await, layer, "{name}");
        }
    };
    let evict = || async {
        let answer = cache
            .req(Method::POST, "/api/v1/proxy/evict")
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
        json_body(answer).await["evicted"].clone()
    };
    let catalog =
        || async { json_body(cache.get("/v2/_catalog").await).await["repositories"].clone() };
    pull("keep").await;
    pull("old").await;
    assert_eq!(evict().await, json!([]), "nothing idle, under the cap");

    // Two days on: the idle one goes, the pinned one (as idle) stays.
    cache.clock.advance(2 * 86400);
    pull("new").await;
    assert_eq!(evict().await, json!(["hub/library/old"]));
    assert_eq!(
        catalog().await,
        json!(["hub/library/keep", "hub/library/new"])
    );

    // Over 200000 bytes: the least recently pulled unpinned repository goes, no more.
    cache.clock.advance(60);
    pull("big").await;
    assert_eq!(evict().await, json!(["hub/library/new"]));
    assert_eq!(
        catalog().await,
        json!(["hub/library/big", "hub/library/keep"])
    );

    // An evicted repository is fetched again on its next pull.
    gate.take();
    pull("old").await;
    assert!(!gate.take().is_empty(), "fetched again");
}

/// A client that gives up on a request after `ms` milliseconds.
fn client_giving_up_after(ms: u64) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_millis(ms))
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_client_that_gives_up_on_a_miss_blocks_no_one() {
    let (upstream, gate, cache) = setup("10m").await;
    let upstream = &upstream;
    let blob = move |n| async move {
        let layer = random_bytes(n);
        let digest = upstream.push_blob("library/app", &layer).await;
        (layer, format!("/v2/hub/library/app/blobs/{digest}"))
    };

    // Alone: the next request fetches the blob afresh.
    let (layer, path) = blob(10_000).await;
    gate.set(Mode::Slow(1500));
    assert!(
        client_giving_up_after(300)
            .get(cache.url(&path))
            .send()
            .await
            .is_err()
    );
    gate.set(Mode::Pass);
    let resp = cache.get(&path).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(body_of(resp).await, layer);

    // Waited on: a request that started once the first one's download had reached the
    // upstream waits on that download, whose client then gives up; it takes the download over.
    let (layer, path) = blob(10_001).await;
    gate.take();
    gate.set(Mode::Slow(1500));
    let impatient = client_giving_up_after(600);
    let url = cache.url(&path);
    let first = tokio::spawn(async move { impatient.get(url).send().await });
    let mut reached = false;
    for _ in 0..400 {
        if gate.take().iter().any(|r| r.contains("/blobs/")) {
            reached = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(reached, "the first request reached the upstream");
    let second = cache.get(&path).await;
    assert!(first.await.unwrap().is_err(), "the first client gave up");
    assert_eq!(second.status(), StatusCode::OK);
    assert_eq!(body_of(second).await, layer);
}
