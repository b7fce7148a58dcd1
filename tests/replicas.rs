//! Several `berth serve` processes (the built binary) over one PostgreSQL index and one object
//! store, as a load balancer would spread clients over them: whatever one replica accepted,
//! every replica serves, and sessions and tags move between them without any sticky routing.
//!
//! The fault tests take backends away in the middle of pushes in two ways: a switchable TCP
//! forwarder between a replica and the shared backends (connections severed, as by a network
//! fault), and a PostgreSQL cluster or Azurite of the test's own, really stopped and started
//! again (`BERTH_TEST_OUTAGES=1`).
//!
//! Needs `BERTH_TEST_DATABASE_URL` (a PostgreSQL server whose user may create databases) and
//! `BERTH_TEST_STORAGE_URL` (`s3://bucket` or `az://container`, with the backend's own
//! environment), so every test is `#[ignore]`d and fails when run without them:
//! `scripts/test.sh` starts the backends, sets the variables and runs these with
//! `--include-ignored`.

mod support;

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use reqwest::{Client, Method, StatusCode};
use serde_json::json;
use sqlx::{Connection, PgConnection, Row};
use support::{random_bytes, serving_address, sha256};

const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
const MIB: usize = 1024 * 1024;
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// The shared backends of one test: a fresh database and a fresh prefix in the store.
struct Shared {
    database_url: String,
    storage_url: String,
    dir: tempfile::TempDir,
}

impl Shared {
    /// A fresh database and store prefix on the backends the environment names.
    async fn new() -> Shared {
        let server = std::env::var("BERTH_TEST_DATABASE_URL").expect(
            "BERTH_TEST_DATABASE_URL names a PostgreSQL server (scripts/test.sh starts it)",
        );
        let store = std::env::var("BERTH_TEST_STORAGE_URL")
            .expect("BERTH_TEST_STORAGE_URL names an object store (scripts/test.sh starts it)");
        let id = uuid::Uuid::new_v4().simple().to_string();
        let name = format!("berth_test_{id}");
        let mut conn = PgConnection::connect(&server).await.expect("connect");
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut conn)
            .await
            .expect("create database");
        conn.close().await.ok();
        let mut url = url::Url::parse(&server).expect("database URL");
        url.set_path(&format!("/{name}"));
        Shared {
            database_url: url.to_string(),
            storage_url: format!("{}/replicas-{id}", store.trim_end_matches('/')),
            dir: tempfile::tempdir().expect("temporary directory"),
        }
    }

    /// Starts `n` replicas together (they migrate the fresh database concurrently).
    fn replicas(&self, n: usize) -> Vec<Replica> {
        let children: Vec<_> = (0..n).map(|i| self.spawn(i)).collect();
        children.into_iter().map(Replica::wait_ready).collect()
    }

    fn spawn(&self, i: usize) -> (Child, mpsc::Receiver<String>) {
        self.spawn_with(i, &self.database_url, &[], &[])
    }

    /// Starts replica `i` on `database_url` with extra arguments and environment.
    fn spawn_with(
        &self,
        i: usize,
        database_url: &str,
        args: &[(&str, String)],
        env: &[(&str, String)],
    ) -> (Child, mpsc::Receiver<String>) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
        cmd.arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(self.dir.path().join(format!("replica-{i}")))
            .env_remove("BERTH_LISTEN")
            .env_remove("BERTH_DATA_DIR")
            .env("BERTH_DATABASE_URL", database_url)
            .env("BERTH_STORAGE_URL", &self.storage_url)
            .env("BERTH_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (flag, value) in args {
            cmd.arg(flag).arg(value);
        }
        for (key, value) in env {
            cmd.env(key, value);
        }
        let mut child = cmd.spawn().expect("spawning berth");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        // Reads stderr to its end (the process's exit) so that the pipe never fills up; the
        // lines before the address are kept for the failure message.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let msg = match serving_address(&line) {
                    Some(addr) => format!("addr {addr}"),
                    None => format!("log {line}"),
                };
                if tx.send(msg).is_err() {
                    break;
                }
            }
            tx.send("eof".to_owned()).ok();
        });
        (child, rx)
    }

    async fn index(&self) -> PgConnection {
        PgConnection::connect(&self.database_url)
            .await
            .expect("connect to the test database")
    }
}

/// A running `berth serve`; killed and reaped when dropped.
struct Replica {
    child: Child,
    base: String,
    client: Client,
    /// Its stderr, line by line, then "eof" when it has exited.
    log: mpsc::Receiver<String>,
}

impl Replica {
    fn wait_ready((child, rx): (Child, mpsc::Receiver<String>)) -> Replica {
        let mut log = Vec::new();
        let deadline = std::time::Instant::now() + STARTUP_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(msg) if msg.starts_with("addr ") => {
                    return Replica {
                        child,
                        base: format!("http://{}", &msg[5..]),
                        client: Client::new(),
                        log: rx,
                    };
                }
                Ok(line) => log.push(line),
                Err(e) => panic!(
                    "berth did not report its address ({e}):\n{}",
                    log.join("\n")
                ),
            }
        }
    }

    /// Stops the replica as an orchestrator would (SIGTERM) and waits, bounded, until it has
    /// exited cleanly (after its graceful shutdown, which flushes pull statistics).
    fn terminate(&mut self) {
        // Idle keep-alive connections would hold up the graceful shutdown.
        self.client = Client::new();
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "SIGTERM to {pid}");
        let deadline = std::time::Instant::now() + STARTUP_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) if line == "eof" => break,
                Ok(_) => {}
                Err(e) => panic!("berth {pid} did not exit after SIGTERM: {e}"),
            }
        }
        let status = self.child.wait().expect("reaping berth");
        assert!(status.success(), "berth {pid} exited with {status}");
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        }
    }

    async fn send(&self, method: Method, path: &str, body: Vec<u8>) -> reqwest::Response {
        self.client
            .request(method, self.url(path))
            .body(body)
            .send()
            .await
            .expect("request")
    }

    /// Monolithic blob push; returns the digest.
    async fn push_blob(&self, repo: &str, bytes: &[u8]) -> String {
        let digest = sha256(bytes);
        let resp = self
            .send(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
                bytes.to_vec(),
            )
            .await;
        let status = resp.status();
        // the body names what was unavailable when a 503 comes back
        let body = resp.text().await.unwrap_or_default();
        assert_eq!(status, StatusCode::CREATED, "push blob to {repo}: {body}");
        digest
    }

    /// Pushes an image (a config and `layers`) tagged `tag`; returns the manifest digest and
    /// bytes.
    async fn push_image(&self, repo: &str, tag: &str, layers: &[&[u8]]) -> (String, Vec<u8>) {
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64", "os": "linux", "rootfs": { "type": "layers", "diff_ids": [] },
            "config": { "Labels": { "tag": tag } }
        }))
        .unwrap();
        self.push_blob(repo, &config).await;
        let mut descriptors = Vec::new();
        for layer in layers {
            let digest = self.push_blob(repo, layer).await;
            descriptors.push(json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": digest, "size": layer.len()
            }));
        }
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": { "mediaType": "application/vnd.oci.image.config.v1+json",
                        "digest": sha256(&config), "size": config.len() },
            "layers": descriptors,
        }))
        .unwrap();
        let resp = self
            .client
            .put(self.url(&format!("/v2/{repo}/manifests/{tag}")))
            .header("content-type", OCI_MANIFEST)
            .body(manifest.clone())
            .send()
            .await
            .expect("PUT manifest");
        assert_eq!(resp.status(), StatusCode::CREATED, "PUT {repo}:{tag}");
        (sha256(&manifest), manifest)
    }

    /// Opens an upload session in `repo`; returns its location.
    async fn start_upload(&self, repo: &str) -> String {
        let resp = self
            .send(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/"),
                Vec::new(),
            )
            .await;
        assert_eq!(resp.status(), StatusCode::ACCEPTED, "POST upload to {repo}");
        resp.headers()["location"].to_str().unwrap().to_owned()
    }

    /// PATCHes `len` bytes of `body` at `start` into the session at `location`.
    fn patch_chunk(
        &self,
        location: &str,
        body: reqwest::Body,
        start: usize,
        len: usize,
    ) -> impl Future<Output = reqwest::Result<reqwest::Response>> + use<> {
        self.client
            .patch(self.url(location))
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("{start}-{}", start + len - 1))
            .header("content-length", len.to_string())
            .body(body)
            .send()
    }

    /// The `Range` an upload session reports (its status, end-13).
    async fn upload_range(&self, location: &str) -> String {
        let resp = self.send(Method::GET, location, Vec::new()).await;
        assert_eq!(resp.status(), StatusCode::NO_CONTENT, "upload status");
        resp.headers()["range"].to_str().unwrap().to_owned()
    }

    /// Closes the session at `location` as the blob `digest`, insisting on 201.
    async fn finish_upload(&self, location: &str, digest: &str) {
        let sep = if location.contains('?') { '&' } else { '?' };
        let resp = self
            .send(
                Method::PUT,
                &format!("{location}{sep}digest={digest}"),
                Vec::new(),
            )
            .await;
        assert_eq!(resp.status(), StatusCode::CREATED, "PUT upload {digest}");
    }

    /// GETs `path` and insists on 200; returns the body.
    async fn get_ok(&self, path: &str) -> Vec<u8> {
        let resp = self.send(Method::GET, path, Vec::new()).await;
        assert_eq!(resp.status(), StatusCode::OK, "GET {path} on {}", self.base);
        resp.bytes().await.expect("body").to_vec()
    }

    /// The digest `repo:tag` resolves to, if any.
    async fn tag_digest(&self, repo: &str, tag: &str) -> Option<String> {
        let resp = self
            .client
            .head(self.url(&format!("/v2/{repo}/manifests/{tag}")))
            .header("accept", OCI_MANIFEST)
            .send()
            .await
            .expect("HEAD manifest");
        match resp.status() {
            StatusCode::OK => Some(
                resp.headers()["docker-content-digest"]
                    .to_str()
                    .unwrap()
                    .to_owned(),
            ),
            StatusCode::NOT_FOUND => None,
            other => panic!("HEAD {repo}:{tag}: {other}"),
        }
    }

    /// Checks that `repo:tag` is `manifest` and every blob it names has the pushed bytes.
    async fn assert_image(&self, repo: &str, tag: &str, manifest: &[u8], blobs: &[&[u8]]) {
        assert_eq!(
            self.get_ok(&format!("/v2/{repo}/manifests/{tag}")).await,
            manifest,
            "{repo}:{tag} on {}",
            self.base
        );
        for blob in blobs {
            let got = self
                .get_ok(&format!("/v2/{repo}/blobs/{}", sha256(blob)))
                .await;
            assert!(
                got == *blob,
                "blob of {repo}:{tag} differs on {}",
                self.base
            );
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL and an object store: BERTH_TEST_DATABASE_URL, BERTH_TEST_STORAGE_URL (scripts/test.sh starts them)"]
async fn pushed_through_one_pulled_through_another() {
    let shared = Shared::new().await;
    let r = shared.replicas(2);
    // One layer large enough to be written in several parts of a multipart upload.
    let (small, large) = (random_bytes(1, 3000), random_bytes(2, 9 * MIB + 123));
    let (digest, manifest) = r[0].push_image("team/app", "v1", &[&small, &large]).await;
    assert_eq!(
        r[1].tag_digest("team/app", "v1").await,
        Some(digest.clone())
    );
    r[1].assert_image("team/app", "v1", &manifest, &[&small, &large])
        .await;
    r[1].assert_image("team/app", &digest, &manifest, &[]).await;
    let tags: serde_json::Value =
        serde_json::from_slice(&r[1].get_ok("/v2/team/app/tags/list").await).unwrap();
    assert_eq!(tags["tags"], json!(["v1"]));
    let catalog: serde_json::Value =
        serde_json::from_slice(&r[1].get_ok("/v2/_catalog").await).unwrap();
    assert_eq!(catalog["repositories"], json!(["team/app"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL and an object store: BERTH_TEST_DATABASE_URL, BERTH_TEST_STORAGE_URL (scripts/test.sh starts them)"]
async fn chunked_upload_moves_between_replicas() {
    let shared = Shared::new().await;
    let r = shared.replicas(2);
    let repo = "chunks/app";
    let first = random_bytes(3, 2 * MIB + 5);
    let second = random_bytes(4, 7 * MIB + 11);
    let third = random_bytes(5, 1000);
    let whole: Vec<u8> = [&first[..], &second, &third].concat();
    let digest = sha256(&whole);

    let mut location = r[0].start_upload(repo).await;
    // Chunks go alternately to A, B, A; the session lives in the shared index.
    let mut offset = 0;
    for (i, chunk) in [&first, &second, &third].into_iter().enumerate() {
        let resp = r[i % 2]
            .patch_chunk(&location, chunk.clone().into(), offset, chunk.len())
            .await
            .expect("PATCH");
        assert_eq!(resp.status(), StatusCode::ACCEPTED, "chunk {i}");
        offset += chunk.len();
        assert_eq!(
            resp.headers()["range"].to_str().unwrap(),
            format!("0-{}", offset - 1)
        );
        location = resp.headers()["location"].to_str().unwrap().to_owned();
    }
    // The status is the same on both, and B completes the upload.
    for replica in &r {
        assert_eq!(
            replica.upload_range(&location).await,
            format!("0-{}", whole.len() - 1)
        );
    }
    r[1].finish_upload(&location, &digest).await;
    for replica in &r {
        let got = replica.get_ok(&format!("/v2/{repo}/blobs/{digest}")).await;
        assert!(got == whole, "assembled blob differs on {}", replica.base);
        // The session is over everywhere.
        let resp = replica.send(Method::GET, &location, Vec::new()).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL and an object store: BERTH_TEST_DATABASE_URL, BERTH_TEST_STORAGE_URL (scripts/test.sh starts them)"]
async fn same_blob_pushed_to_two_replicas_at_once_is_one_blob() {
    let shared = Shared::new().await;
    let r = shared.replicas(2);
    for (round, size) in [(0u64, 100_000), (1, 3 * MIB + 7)] {
        let blob = random_bytes(10 + round, size);
        let digest = sha256(&blob);
        let (a, b) = tokio::join!(
            r[0].push_blob("same/one", &blob),
            r[1].push_blob("same/two", &blob),
        );
        let (c, d) = tokio::join!(
            r[0].push_blob("same/one", &blob),
            r[1].push_blob("same/one", &blob),
        );
        assert!([a, b, c, d].iter().all(|x| *x == digest));
        for replica in &r {
            for repo in ["same/one", "same/two"] {
                let got = replica.get_ok(&format!("/v2/{repo}/blobs/{digest}")).await;
                assert!(got == blob, "{repo} on {}", replica.base);
            }
        }
        let mut db = shared.index().await;
        let row = sqlx::query(
            "SELECT (SELECT count(*) FROM blobs WHERE digest = $1), \
                    (SELECT size FROM blobs WHERE digest = $1), \
                    (SELECT count(*) FROM repository_blobs WHERE digest = $1)",
        )
        .bind(&digest)
        .fetch_one(&mut db)
        .await
        .unwrap();
        assert_eq!(row.get::<i64, _>(0), 1, "one blob row");
        assert_eq!(row.get::<i64, _>(1), size as i64, "its size");
        assert_eq!(row.get::<i64, _>(2), 2, "one link per repository");
        db.close().await.ok();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL and an object store: BERTH_TEST_DATABASE_URL, BERTH_TEST_STORAGE_URL (scripts/test.sh starts them)"]
async fn tag_moved_on_one_replica_is_seen_by_the_other() {
    let shared = Shared::new().await;
    let r = shared.replicas(2);
    let repo = "moving/app";
    let (d1, m1) = r[0].push_image(repo, "latest", &[b"first"]).await;
    assert_eq!(r[1].tag_digest(repo, "latest").await, Some(d1.clone()));
    assert_eq!(
        r[1].get_ok(&format!("/v2/{repo}/manifests/latest")).await,
        m1
    );
    let (d2, m2) = r[0].push_image(repo, "latest", &[b"second"]).await;
    assert_ne!(d1, d2);
    assert_eq!(r[1].tag_digest(repo, "latest").await, Some(d2.clone()));
    assert_eq!(
        r[1].get_ok(&format!("/v2/{repo}/manifests/latest")).await,
        m2
    );
    // And back the other way: B deletes the tag, A no longer resolves it.
    let resp = r[1]
        .send(
            Method::DELETE,
            &format!("/v2/{repo}/manifests/latest"),
            Vec::new(),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(r[0].tag_digest(repo, "latest").await, None);
    assert_eq!(r[0].tag_digest(repo, &d1).await, Some(d1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL and an object store: BERTH_TEST_DATABASE_URL, BERTH_TEST_STORAGE_URL (scripts/test.sh starts them)"]
async fn concurrent_pushes_through_every_replica_are_pullable_everywhere() {
    let shared = Shared::new().await;
    let r = shared.replicas(3);
    let base = random_bytes(100, 600_000);
    // Four images per replica, all at once; every image shares a base layer and has its own.
    let mut pushes = Vec::new();
    for (i, replica) in r.iter().enumerate() {
        for j in 0..4u64 {
            let base = &base;
            pushes.push(async move {
                let own = random_bytes(1000 + 10 * i as u64 + j, 50_000 + 70_000 * j as usize);
                let repo = format!("fleet/app{}", j % 2);
                let tag = format!("r{i}-{j}");
                let (_, manifest) = replica.push_image(&repo, &tag, &[base, &own]).await;
                (repo, tag, manifest, own)
            });
        }
    }
    let images = futures::future::join_all(pushes).await;
    for replica in &r {
        for (repo, tag, manifest, own) in &images {
            replica
                .assert_image(repo, tag, manifest, &[&base, own])
                .await;
        }
        let tags: serde_json::Value =
            serde_json::from_slice(&replica.get_ok("/v2/fleet/app0/tags/list").await).unwrap();
        assert_eq!(tags["tags"].as_array().unwrap().len(), 6, "{tags}");
    }
}

// ---------------------------------------------------------------------------------------------
// Backends going away

/// A loopback TCP forwarder in front of a real backend: switched off, it severs the open
/// connections and closes new ones at once, as a backend that went away would.
struct Outage {
    addr: std::net::SocketAddr,
    on: tokio::sync::watch::Sender<bool>,
}

impl Outage {
    async fn new(target: String) -> Outage {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the forwarder");
        let addr = listener.local_addr().unwrap();
        let (on, rx) = tokio::sync::watch::channel(true);
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !*rx.borrow() {
                    continue; // dropped: closed at once
                }
                let mut rx = rx.clone();
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = rx.wait_for(|on| !*on) => {}
                    }
                });
            }
        });
        Outage { addr, on }
    }

    fn set(&self, on: bool) {
        self.on.send_replace(on);
    }
}

/// The variable naming the object store's endpoint, and its value, for the test's store.
fn store_endpoint(shared: &Shared) -> Option<(&'static str, String)> {
    let var = if shared.storage_url.starts_with("s3:") {
        "AWS_ENDPOINT"
    } else if shared.storage_url.starts_with("az:") {
        "AZURITE_BLOB_STORAGE_URL"
    } else {
        eprintln!(
            "no endpoint to interpose for {}: skipped",
            shared.storage_url
        );
        return None;
    };
    Some((
        var,
        std::env::var(var).expect("the store's endpoint variable"),
    ))
}

/// `host:port` of `url`.
fn host_port(url: &str) -> String {
    let u = url::Url::parse(url).expect("URL");
    format!(
        "{}:{}",
        u.host_str().expect("host"),
        u.port_or_known_default().expect("port")
    )
}

/// Insists that `resp` is the 503 `UNAVAILABLE` that names the backend `what`.
async fn assert_unavailable(resp: reqwest::Response, what: &str) {
    let (status, code, message) = error_of(resp).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{message}");
    assert_eq!(code, "UNAVAILABLE");
    assert!(message.contains(what), "{message}");
}

/// The JSON error code and message of an error response.
async fn error_of(resp: reqwest::Response) -> (StatusCode, String, String) {
    let status = resp.status();
    let body: serde_json::Value =
        serde_json::from_slice(&resp.bytes().await.expect("body")).expect("JSON error body");
    (
        status,
        body["errors"][0]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        body["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

/// The object store, then the index, go away in the middle of pushes: pushes fail with a 503
/// that names the backend, nothing half-written becomes visible, and once the backend is back
/// the same pushes succeed through the same (never restarted) server.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL and an object store: BERTH_TEST_DATABASE_URL, BERTH_TEST_STORAGE_URL (scripts/test.sh starts them)"]
async fn backends_going_away_fail_cleanly_and_recover() {
    let shared = Shared::new().await;
    let endpoint_var = if shared.storage_url.starts_with("s3:") {
        "AWS_ENDPOINT"
    } else if shared.storage_url.starts_with("az:") {
        "AZURITE_BLOB_STORAGE_URL"
    } else {
        eprintln!(
            "no endpoint to interpose for {}: skipped",
            shared.storage_url
        );
        return;
    };
    let endpoint = std::env::var(endpoint_var).expect("the store's endpoint variable");
    let store = Outage::new(host_port(&endpoint)).await;
    let index = Outage::new(host_port(&shared.database_url)).await;
    let mut database_url = url::Url::parse(&shared.database_url).unwrap();
    database_url.set_port(Some(index.addr.port())).unwrap();
    // Short retry budgets, so that an outage is reported in seconds rather than minutes.
    let config = shared.dir.path().join("faults.toml");
    std::fs::write(
        &config,
        "[limits]\nstorage_retry_timeout_secs = 3\ndatabase_acquire_timeout_secs = 3\n",
    )
    .unwrap();
    let replica = Replica::wait_ready(shared.spawn_with(
        0,
        database_url.as_str(),
        &[("--config", config.display().to_string())],
        &[(endpoint_var, format!("http://{}", store.addr))],
    ));
    let repo = "faults/app";
    let (before, before_manifest) = replica.push_image(repo, "before", &[b"kept"]).await;

    // The store goes away: a push is a 503 naming the blob store, and leaves nothing.
    store.set(false);
    let layer = random_bytes(7, 2 * MIB + 3);
    let digest = sha256(&layer);
    let resp = replica
        .send(
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
            layer.clone(),
        )
        .await;
    assert_unavailable(resp, "blob store").await;
    let head = replica
        .send(
            Method::HEAD,
            &format!("/v2/{repo}/blobs/{digest}"),
            Vec::new(),
        )
        .await;
    assert_eq!(head.status(), StatusCode::NOT_FOUND, "nothing half-written");
    // What is in the index is still listed and resolvable; its bytes are what is missing.
    assert_eq!(
        replica.tag_digest(repo, "before").await,
        Some(before.clone())
    );
    let resp = replica
        .send(
            Method::GET,
            &format!("/v2/{repo}/blobs/{}", sha256(b"kept")),
            Vec::new(),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);

    // Back: the same push succeeds, and everything pulls.
    store.set(true);
    let (after, after_manifest) = replica.push_image(repo, "after", &[&layer]).await;
    replica
        .assert_image(repo, "after", &after_manifest, &[&layer])
        .await;
    replica
        .assert_image(repo, "before", &before_manifest, &[b"kept"])
        .await;

    // The index goes away: a push is a 503 naming the index; reads too.
    index.set(false);
    let layer2 = random_bytes(8, 300_000);
    let digest2 = sha256(&layer2);
    let resp = replica
        .send(
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/?digest={digest2}"),
            layer2.clone(),
        )
        .await;
    assert_unavailable(resp, "metadata index").await;
    let resp = replica
        .send(
            Method::GET,
            &format!("/v2/{repo}/manifests/after"),
            Vec::new(),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);

    // Back: the blob is not there (its bytes were written, its row was not), the same push
    // succeeds, and the tags are as they were.
    index.set(true);
    let head = replica
        .send(
            Method::HEAD,
            &format!("/v2/{repo}/blobs/{digest2}"),
            Vec::new(),
        )
        .await;
    assert_eq!(head.status(), StatusCode::NOT_FOUND, "nothing half-written");
    let (_, manifest2) = replica.push_image(repo, "after2", &[&layer2]).await;
    replica
        .assert_image(repo, "after2", &manifest2, &[&layer2])
        .await;
    assert_eq!(replica.tag_digest(repo, "after").await, Some(after));
    assert_eq!(replica.tag_digest(repo, "before").await, Some(before));
}

/// The store goes away while a chunk is streaming in: the PATCH fails with 503, the session
/// keeps only what it had, and once the store is back the same chunk completes the upload.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL and an object store: BERTH_TEST_DATABASE_URL, BERTH_TEST_STORAGE_URL (scripts/test.sh starts them)"]
async fn store_going_away_mid_chunk_leaves_the_session_usable() {
    let shared = Shared::new().await;
    let Some((endpoint_var, endpoint)) = store_endpoint(&shared) else {
        return;
    };
    let store = Outage::new(host_port(&endpoint)).await;
    let config = shared.dir.path().join("faults.toml");
    std::fs::write(&config, "[limits]\nstorage_retry_timeout_secs = 3\n").unwrap();
    let replica = Replica::wait_ready(shared.spawn_with(
        0,
        &shared.database_url,
        &[("--config", config.display().to_string())],
        &[(endpoint_var, format!("http://{}", store.addr))],
    ));
    let repo = "faults/chunks";
    let first = random_bytes(20, 100_000);
    let second = random_bytes(21, 12 * MIB + 1);
    let whole = [&first[..], &second].concat();
    let digest = sha256(&whole);
    let location = replica.start_upload(repo).await;
    let patch = |body: reqwest::Body, start: usize, len: usize| {
        replica.patch_chunk(&location, body, start, len)
    };
    let resp = patch(first.clone().into(), 0, first.len()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);

    // The second chunk streams: its first 9 MiB go through, then the store goes away.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let body = reqwest::Body::wrap_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let sending = tokio::spawn(patch(body, first.len(), second.len()));
    for piece in second[..9 * MIB].chunks(MIB) {
        tx.send(Ok(piece.to_vec())).await.unwrap();
    }
    store.set(false);
    for piece in second[9 * MIB..].chunks(MIB) {
        if tx.send(Ok(piece.to_vec())).await.is_err() {
            break; // the server stopped reading
        }
    }
    drop(tx);
    match sending.await.unwrap() {
        Ok(resp) => {
            let (status, code, message) = error_of(resp).await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{message}");
            assert_eq!(code, "UNAVAILABLE");
        }
        // The server may answer and close before the client has finished sending; what
        // matters is what the session holds afterwards.
        Err(e) => eprintln!("PATCH ended without a response: {e}"),
    }
    store.set(true);
    assert_eq!(
        replica.upload_range(&location).await,
        format!("0-{}", first.len() - 1),
        "only the first chunk is in the session"
    );
    let resp = replica
        .send(
            Method::HEAD,
            &format!("/v2/{repo}/blobs/{digest}"),
            Vec::new(),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND, "nothing half-written");

    // The same chunk again, then the upload completes with the right bytes.
    let resp = patch(second.clone().into(), first.len(), second.len())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    replica.finish_upload(&location, &digest).await;
    let got = replica.get_ok(&format!("/v2/{repo}/blobs/{digest}")).await;
    assert!(got == whole, "the completed blob has the pushed bytes");
}

/// Pull counts are kept per replica and added to the shared index: pulls through every
/// replica are all counted once the replicas have stopped (they flush at shutdown).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL and an object store: BERTH_TEST_DATABASE_URL, BERTH_TEST_STORAGE_URL (scripts/test.sh starts them)"]
async fn pull_counts_from_every_replica_add_up() {
    let shared = Shared::new().await;
    let mut r = shared.replicas(2);
    let repo = "counted/app";
    r[0].push_image(repo, "v1", &[b"counted"]).await;
    for (replica, pulls) in r.iter().zip([3, 4]) {
        for _ in 0..pulls {
            replica.get_ok(&format!("/v2/{repo}/manifests/v1")).await;
        }
    }
    for replica in &mut r {
        replica.terminate();
    }
    let mut db = shared.index().await;
    let row = sqlx::query("SELECT pull_count, push_count FROM repositories WHERE name = $1")
        .bind(repo)
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(row.get::<i64, _>(0), 7, "3 pulls through A and 4 through B");
    assert_eq!(row.get::<i64, _>(1), 1);
    db.close().await.ok();
}

/// A backend of one test's own (`scripts/services/<name>.sh` on a free port), so that the
/// test can really stop it and start it again without disturbing other tests. Stopped and
/// its files removed when dropped.
struct OwnService {
    name: &'static str,
    port_var: &'static str,
    port: u16,
    /// The `export K=V` lines the script printed.
    exports: Vec<(String, String)>,
}

impl OwnService {
    fn start(name: &'static str, port_var: &'static str) -> OwnService {
        let port = free_port_below_ephemeral_range();
        let mut service = OwnService {
            name,
            port_var,
            port,
            exports: Vec::new(),
        };
        let out = service
            .command("start")
            .output()
            .expect("running the script");
        assert!(out.status.success(), "{name} did not start");
        service.exports = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.strip_prefix("export")?.trim().split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        service
    }

    fn command(&self, verb: &str) -> Command {
        let mut cmd = Command::new("bash");
        cmd.arg(format!(
            "{}/scripts/services/{}.sh",
            env!("CARGO_MANIFEST_DIR"),
            self.name
        ))
        .arg(verb)
        .env(self.port_var, self.port.to_string())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
        cmd
    }

    /// Runs the script's `verb` (`pause`, `resume`, `stop`), insisting that it succeeds.
    fn run(&self, verb: &str) {
        let status = self
            .command(verb)
            .stdout(Stdio::null())
            .status()
            .expect("running the script");
        assert!(status.success(), "{}.sh {verb}", self.name);
    }

    fn export(&self, key: &str) -> String {
        self.exports
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{}.sh exports no {key}", self.name))
    }
}

/// A free loopback port below the kernel's ephemeral range (`ip_local_port_range`). An
/// `OwnService` is stopped and started again on its port, and while it is down a port from that
/// range can be taken as the local end of any outgoing connection on the machine (seen in CI:
/// PostgreSQL could not bind again).
fn free_port_below_ephemeral_range() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    const LOWEST: u16 = 20000;
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768)
        .max(LOWEST + 1000);
    let span = u32::from(ephemeral_low - LOWEST);
    // Each test process starts from its own spot; each call takes the next port on.
    let start = std::process::id().wrapping_mul(7919) % span;
    (0..span)
        .map(|_| {
            let n = u32::from(NEXT.fetch_add(1, Ordering::Relaxed));
            LOWEST + ((start + n) % span) as u16
        })
        .find(|&port| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok())
        .expect("a free port below the ephemeral range")
}

impl Drop for OwnService {
    fn drop(&mut self) {
        self.run("stop");
        let files = if self.name == "postgres" {
            "pg"
        } else {
            "azure"
        };
        let dir = format!(
            "{}/target/services/{files}-{}",
            env!("CARGO_MANIFEST_DIR"),
            self.port
        );
        std::fs::remove_dir_all(dir).ok();
    }
}

/// Which backend a real outage takes away.
#[derive(Clone, Copy, PartialEq)]
enum Stopped {
    Postgres,
    Azurite,
}

/// PostgreSQL itself is stopped (not cut off by a forwarder) in the middle of a chunked push.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs backends of its own to stop: BERTH_TEST_OUTAGES=1 with BERTH_TEST_DATABASE_URL, BERTH_TEST_STORAGE_URL (scripts/test.sh sets them)"]
async fn postgres_stopped_mid_push_then_started_again() {
    real_outage_mid_push(Stopped::Postgres).await;
}

/// The object store (Azurite, which keeps its data on disk) is stopped in the middle of a
/// chunked push.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs backends of its own to stop: BERTH_TEST_OUTAGES=1 with BERTH_TEST_DATABASE_URL, BERTH_TEST_STORAGE_URL (scripts/test.sh sets them)"]
async fn object_store_stopped_mid_push_then_started_again() {
    real_outage_mid_push(Stopped::Azurite).await;
}

/// The backend `stopped`, of the test's own, is stopped between two chunks of a push:
/// requests fail with a 503 naming it, nothing half-written becomes visible, and once it is
/// started again the same, never restarted, Berth finishes the same push. Needs the
/// services' programs, which `BERTH_TEST_OUTAGES=1` vouches for (`scripts/test.sh` sets it).
async fn real_outage_mid_push(stopped: Stopped) {
    assert_eq!(
        std::env::var("BERTH_TEST_OUTAGES").as_deref(),
        Ok("1"),
        "BERTH_TEST_OUTAGES=1 says the services' programs are installed (scripts/test.sh sets it)"
    );
    let shared = Shared::new().await;
    let config = shared.dir.path().join("outage.toml");
    std::fs::write(
        &config,
        "[limits]\ndatabase_acquire_timeout_secs = 3\nstorage_retry_timeout_secs = 3\n",
    )
    .unwrap();
    let args = [("--config", config.display().to_string())];
    let (service, replica, what) = match stopped {
        Stopped::Postgres => {
            let pg = OwnService::start("postgres", "BERTH_PG_PORT");
            let server_url = pg.export("BERTH_TEST_DATABASE_URL");
            let mut conn = PgConnection::connect(&server_url).await.expect("connect");
            sqlx::query("CREATE DATABASE outage")
                .execute(&mut conn)
                .await
                .unwrap();
            conn.close().await.ok();
            let database_url = format!("{}/outage", server_url.rsplit_once('/').unwrap().0);
            let replica = Replica::wait_ready(shared.spawn_with(0, &database_url, &args, &[]));
            (pg, replica, "metadata index")
        }
        Stopped::Azurite => {
            let azurite = OwnService::start("azurite", "BERTH_AZURE_PORT");
            let mut env: Vec<(&str, String)> = [
                "AZURE_STORAGE_USE_EMULATOR",
                "AZURITE_BLOB_STORAGE_URL",
                "AZURE_STORAGE_ACCOUNT_NAME",
                "AZURE_STORAGE_ACCOUNT_KEY",
            ]
            .into_iter()
            .map(|k| (k, azurite.export(k)))
            .collect();
            let store = format!("{}/outage", azurite.export("BERTH_TEST_AZURE_URL"));
            env.push(("BERTH_STORAGE_URL", store));
            let replica =
                Replica::wait_ready(shared.spawn_with(0, &shared.database_url, &args, &env));
            (azurite, replica, "blob store")
        }
    };
    let repo = "outage/app";
    let (before, before_manifest) = replica.push_image(repo, "before", &[b"kept"]).await;

    let first = random_bytes(30, MIB + 1);
    let second = random_bytes(31, 2 * MIB + 7);
    let whole = [&first[..], &second].concat();
    let digest = sha256(&whole);
    let location = replica.start_upload(repo).await;
    let patch = |body: &[u8], start: usize| {
        replica.patch_chunk(&location, body.to_vec().into(), start, body.len())
    };
    assert_eq!(
        patch(&first, 0).await.unwrap().status(),
        StatusCode::ACCEPTED
    );

    service.run("pause");
    assert_unavailable(patch(&second, first.len()).await.unwrap(), what).await;
    // A pull needs the stopped backend too (the index for the manifest, the store for bytes).
    let pull = match stopped {
        Stopped::Postgres => format!("/v2/{repo}/manifests/before"),
        Stopped::Azurite => format!("/v2/{repo}/blobs/{}", sha256(b"kept")),
    };
    let (status, code, message) =
        error_of(replica.send(Method::GET, &pull, Vec::new()).await).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{message}");
    assert_eq!(code, "UNAVAILABLE");

    service.run("resume");
    // The session holds exactly the first chunk; the blob does not exist yet.
    assert_eq!(
        replica.upload_range(&location).await,
        format!("0-{}", first.len() - 1)
    );
    let resp = replica
        .send(
            Method::HEAD,
            &format!("/v2/{repo}/blobs/{digest}"),
            Vec::new(),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND, "nothing half-written");

    // The same chunk again completes the push, and both images pull byte-identical.
    let resp = patch(&second, first.len()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    replica.finish_upload(&location, &digest).await;
    let (_, after_manifest) = replica.push_image(repo, "after", &[&whole]).await;
    replica
        .assert_image(repo, "after", &after_manifest, &[&whole])
        .await;
    replica
        .assert_image(repo, "before", &before_manifest, &[b"kept"])
        .await;
    assert_eq!(replica.tag_digest(repo, "before").await, Some(before));
}
