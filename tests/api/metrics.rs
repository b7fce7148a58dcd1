//! `GET /metrics`: the counts a user checks after real traffic (Distribution's names), GC and
//! queue figures, who may scrape, and `promtool`'s verdict on the text and the shipped rules.

use std::collections::BTreeMap;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{
    TestServer,
    auth::{ADMIN, ADMIN_PASSWORD, basic, password_of, start_auth},
    header, json_body, sha256,
};

/// The samples of a scrape, keyed by `name{labels}` exactly as the text format writes them.
pub(crate) fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (key, value) = line.rsplit_once(' ').expect("a sample line");
            (key.to_owned(), value.parse().expect("a number"))
        })
        .collect()
}

/// The sum of every sample of `name` whose labels include each of `labels` (`k="v"`).
pub(crate) fn sum(samples: &BTreeMap<String, f64>, name: &str, labels: &[&str]) -> f64 {
    samples
        .iter()
        .filter(|(key, _)| {
            let (metric, rest) = key.split_once('{').unwrap_or((key.as_str(), ""));
            metric == name && labels.iter().all(|l| rest.contains(l))
        })
        .map(|(_, value)| value)
        .sum()
}

pub(crate) async fn scrape(s: &TestServer) -> String {
    let resp = s.get("/metrics").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        header(&resp, "content-type").as_deref(),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    resp.text().await.expect("metrics text")
}

/// Pushes one image, pulls it three times (twice by tag, once by digest), checks it twice
/// with HEAD, asks for a tag that does not exist and reads one layer.
async fn traffic(s: &TestServer) {
    let (digest, _) = s.push_image("metrics/app", "v1", &[b"metrics layer"]).await;
    for reference in ["v1", "v1", digest.as_str()] {
        let resp = s
            .get(&format!("/v2/metrics/app/manifests/{reference}"))
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
    }
    for _ in 0..2 {
        let resp = s.head("/v2/metrics/app/manifests/v1").await;
        assert_eq!(resp.status(), StatusCode::OK);
    }
    let missing = s.get("/v2/metrics/app/manifests/nope").await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let layer = s
        .get(&format!(
            "/v2/metrics/app/blobs/{}",
            sha256(b"metrics layer")
        ))
        .await;
    assert_eq!(layer.bytes().await.unwrap().as_ref(), b"metrics layer");
}

/// Requests are counted by status, endpoint and method as Distribution names them: manifest
/// GETs answered 200 are the pulls made, HEADs are apart, the 404 is its own series; pulls
/// and pushes have their own counters; no series names the repository.
#[tokio::test]
async fn counts_match_the_traffic_made() {
    let s = TestServer::start().await;
    traffic(&s).await;
    let text = scrape(&s).await;
    let m = samples(&text);
    let requests = |code: &str, handler: &str, method: &str| {
        let key = format!(
            "registry_http_requests_total{{code=\"{code}\",handler=\"{handler}\",method=\"{method}\"}}"
        );
        m.get(&key).copied().unwrap_or(0.0)
    };
    assert_eq!(requests("200", "manifest", "GET"), 3.0, "{text}");
    assert_eq!(requests("200", "manifest", "HEAD"), 2.0);
    assert_eq!(requests("404", "manifest", "GET"), 1.0);
    assert_eq!(requests("201", "manifest", "PUT"), 1.0);
    // The config and the layer, each in one POST.
    assert_eq!(requests("201", "blob_upload", "POST"), 2.0);
    assert_eq!(requests("200", "blob", "GET"), 1.0);
    assert_eq!(m["berth_pulls_total"], 3.0);
    assert_eq!(m["berth_pushes_total"], 1.0);
    assert_eq!(m["berth_manifest_heads_total"], 2.0);
    // Every manifest GET is timed, the 404 included.
    assert_eq!(
        m["registry_http_request_duration_seconds_count{handler=\"manifest\",method=\"GET\"}"],
        4.0
    );
    // The scrape being answered is the one request in flight.
    assert_eq!(
        m["registry_http_in_flight_requests{handler=\"metrics\"}"],
        1.0
    );
    assert_eq!(
        m["registry_http_in_flight_requests{handler=\"manifest\"}"],
        0.0
    );
    // Blob store calls are timed by Distribution's action names: both blobs written, the
    // layer read.
    assert!(
        sum(
            &m,
            "registry_storage_action_seconds_count",
            &["action=\"Writer\""]
        ) >= 2.0
    );
    assert!(
        sum(
            &m,
            "registry_storage_action_seconds_count",
            &["action=\"Reader\""]
        ) >= 1.0
    );
    assert!(
        !text.contains("metrics/app"),
        "a label names the repository"
    );
    // Each query counts apart from the earlier scrape, which now shows as answered.
    let again = samples(&scrape(&s).await);
    assert_eq!(
        again["registry_http_requests_total{code=\"200\",handler=\"metrics\",method=\"GET\"}"],
        1.0
    );
}

/// With `stats.enabled` off nothing of the traffic reaches the usage figures (not even
/// after the graceful stop that flushes), while `/metrics` still counts every request.
#[tokio::test]
async fn with_stats_off_usage_is_not_counted_but_metrics_are() {
    let s = TestServer::start_with(|c| c.stats.enabled = false).await;
    traffic(&s).await;
    let m = samples(&scrape(&s).await);
    assert_eq!(m["berth_pulls_total"], 3.0);
    let config = s.config.clone();
    let dir = s.stop().await;
    let s = TestServer::start_in(dir, move |c| *c = config).await;
    let resp = s.get("/api/v1/repositories/metrics/app").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let shown = json_body(resp).await;
    assert_eq!(shown["pull_count"], 0, "{shown}");
    let totals = json_body(s.get("/api/v1/stats").await).await;
    assert_eq!(totals["pulls"]["last_30_days"], 0, "{totals}");
    assert_eq!(totals["pushes"]["last_30_days"], 0, "{totals}");
}

/// A garbage collection run is counted with the bytes it freed, as the run reports them; the
/// review a delete queues shows in the queue depth until it runs.
#[tokio::test]
async fn gc_runs_bytes_freed_and_queue_depth() {
    let s = TestServer::start_with(|c| {
        c.gc.grace_secs = 0;
        c.gc.review_delay_secs = 3600;
        c.gc.upload_timeout_secs = 0;
        c.gc.poll_millis = 3_600_000;
        c.gc.schedule_secs = 0;
    })
    .await;
    let m = samples(&scrape(&s).await);
    assert_eq!(m["berth_gc_runs_total{outcome=\"succeeded\"}"], 0.0);
    assert_eq!(m["berth_jobs_queued"], 0.0);

    let (digest, _) = s
        .push_image_with("gc/app", "v1", b"gc config", &[b"gc layer"])
        .await;
    let deleted = s.delete(&format!("/v2/gc/app/manifests/{digest}")).await;
    assert_eq!(deleted.status(), StatusCode::ACCEPTED);
    let m = samples(&scrape(&s).await);
    assert_eq!(m["berth_jobs_queued"], 1.0, "the review of gc/app");

    let resp = s
        .req(Method::POST, "/api/v1/gc/runs")
        .json(&json!({ "wait": true }))
        .send()
        .await
        .expect("POST gc run");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let run: Value = json_body(resp).await;
    let freed = (b"gc config".len() + b"gc layer".len()) as i64;
    assert_eq!(run["bytes"], freed, "{run}");

    let m = samples(&scrape(&s).await);
    assert_eq!(m["berth_gc_runs_total{outcome=\"succeeded\"}"], 1.0);
    assert_eq!(m["berth_gc_runs_total{outcome=\"failed\"}"], 0.0);
    assert_eq!(m["berth_gc_bytes_freed_total"], freed as f64);
    assert_eq!(m["berth_gc_blobs_deleted_total"], 2.0);
}

/// Pull statistics are written every few seconds: a fresh server reports a lag of seconds.
#[tokio::test]
async fn stats_flush_lag_is_reported() {
    let s = TestServer::start().await;
    let m = samples(&scrape(&s).await);
    let lag = m["berth_stats_flush_lag_seconds"];
    assert!((0.0..60.0).contains(&lag), "lag {lag}");
}

/// With auth on, `/metrics` is for administrators and for the configured metrics token:
/// anonymous and wrong credentials get 401 with a challenge, other users 403.
#[tokio::test]
async fn scraping_with_auth_needs_an_admin_or_the_metrics_token() {
    let s = start_auth(|c| c.metrics.token = Some("scrape-secret".into())).await;
    s.create_user("watcher").await;
    let get = |authorization: Option<String>| {
        let mut req = reqwest::Client::new().get(s.url("/metrics"));
        if let Some(value) = authorization {
            req = req.header("authorization", value);
        }
        async move { req.send().await.expect("GET /metrics") }
    };

    let anonymous = get(None).await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert!(header(&anonymous, "www-authenticate").is_some());
    let wrong = get(Some("Bearer not-the-secret".into())).await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let user = get(Some(basic("watcher", &password_of("watcher")))).await;
    assert_eq!(user.status(), StatusCode::FORBIDDEN);

    let admin = get(Some(basic(ADMIN, ADMIN_PASSWORD))).await;
    assert_eq!(admin.status(), StatusCode::OK);
    assert!(
        admin
            .text()
            .await
            .unwrap()
            .contains("registry_http_requests_total")
    );
    let token = get(Some("Bearer scrape-secret".into())).await;
    assert_eq!(token.status(), StatusCode::OK);
    let text = token.text().await.unwrap();
    // The refused scrapes were counted like any request.
    assert!(
        text.contains(
            "registry_http_requests_total{code=\"401\",handler=\"metrics\",method=\"GET\"} 2"
        ),
        "{text}"
    );
}

/// Every `access` log line of this test process, as JSON objects (the layout of
/// `log.format = "json"`). The subscriber is global: lines of other tests' servers are here
/// too, so a test picks its own by path.
fn access_log() -> &'static std::sync::Mutex<Vec<u8>> {
    use std::sync::{Mutex, OnceLock};
    static LOG: OnceLock<&'static Mutex<Vec<u8>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let log: &'static Mutex<Vec<u8>> = Box::leak(Box::new(Mutex::new(Vec::new())));
        struct Line(&'static Mutex<Vec<u8>>);
        impl std::io::Write for Line {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_env_filter(tracing_subscriber::EnvFilter::new("access=info"))
            .with_writer(move || Line(log))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("no other global subscriber");
        log
    })
}

/// The access log lines whose path starts with `prefix`, in order.
fn access_lines(prefix: &str) -> Vec<Value> {
    let log = access_log().lock().unwrap();
    String::from_utf8_lossy(&log)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .map(|line| line["fields"].clone())
        .filter(|fields| {
            fields["path"]
                .as_str()
                .is_some_and(|p| p.starts_with(prefix))
        })
        .collect()
}

/// One access line per request: method, path without the query (which may carry state),
/// status, bytes, duration, and the verified user; anonymous requests name none.
#[tokio::test]
async fn access_log_has_a_json_line_per_request() {
    access_log();
    let mut s = start_auth(|_| {}).await;
    s.sign_in(ADMIN, ADMIN_PASSWORD);
    let (_, manifest) = s.push_image("logs/app", "v1", &[b"logged layer"]).await;
    let pulled = s.get("/v2/logs/app/manifests/v1").await;
    assert_eq!(pulled.status(), StatusCode::OK);
    let listed = s.get("/v2/logs/app/tags/list?n=1&last=secret-state").await;
    assert_eq!(listed.status(), StatusCode::OK);
    s.sign_out();
    let anonymous = s.get("/v2/logs/app/manifests/v1").await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    let lines = access_lines("/v2/logs/app/");
    let pulls: Vec<&Value> = lines
        .iter()
        .filter(|l| l["path"] == "/v2/logs/app/manifests/v1" && l["method"] == "GET")
        .collect();
    assert_eq!(pulls.len(), 2, "{lines:?}");
    assert_eq!(pulls[0]["status"], 200);
    assert_eq!(pulls[0]["bytes"], manifest.len() as u64);
    assert_eq!(pulls[0]["user"], ADMIN);
    assert!(pulls[0]["duration_ms"].as_f64().is_some_and(|ms| ms >= 0.0));
    assert_eq!(pulls[1]["status"], 401);
    assert!(pulls[1].get("user").is_none(), "{}", pulls[1]);
    let pushes = lines.iter().filter(|l| l["method"] == "PUT").count();
    assert_eq!(pushes, 1);
    let listing = lines
        .iter()
        .find(|l| l["path"] == "/v2/logs/app/tags/list")
        .expect("the listing's line");
    assert_eq!(listing["status"], 200);
    assert!(!format!("{lines:?}").contains("secret-state"));
}

/// Runs `promtool` with `args` and `stdin`; fails loudly when it is not installed.
fn promtool(args: &[&str], stdin: Option<&str>) -> std::process::Output {
    use std::io::Write as _;
    let mut child = std::process::Command::new("promtool")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect(
            "promtool is not installed: run scripts/install-test-deps.sh (Debian's prometheus)",
        );
    let mut input = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).expect("write to promtool");
    }
    drop(input);
    child.wait_with_output().expect("promtool output")
}

/// `promtool check metrics` passes on a scrape after real traffic (names, help, types,
/// histogram buckets), and `promtool check rules` on the shipped alert rules.
#[tokio::test]
#[ignore = "needs promtool (scripts/install-test-deps.sh installs Debian's prometheus)"]
async fn promtool_accepts_the_metrics_and_the_alert_rules() {
    let s = TestServer::start().await;
    traffic(&s).await;
    let text = scrape(&s).await;
    let checked = promtool(&["check", "metrics"], Some(&text));
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/config/prometheus-alerts.yml");
    let checked = promtool(&["check", "rules", rules], None);
    assert!(
        checked.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    // The alerts fire on what they should, once per registry (tests/fixtures has the series).
    let cases = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/prometheus-alerts.test.yml"
    );
    let checked = promtool(&["test", "rules", cases], None);
    assert!(
        checked.status.success(),
        "promtool test rules: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
}
