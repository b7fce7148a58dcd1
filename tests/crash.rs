//! Invariant 2 of DESIGN.md: nothing acknowledged is lost after `kill -9`, and an upload that
//! was in flight leaves no visible partial blob.
//!
//! Each test starts the real `berth` binary on a temporary data directory, pushes images from
//! several concurrent pushers (blobs by POST + PUT, by chunked PATCH sessions and by a single
//! POST with `?digest=`, then an OCI manifest PUT by tag), and holds a few uploads open with
//! half-sent bodies. After a bounded number of acknowledged images it sends SIGKILL while pushes
//! are still in flight, restarts on the same directory and checks:
//!
//! - every acknowledged (201) manifest GETs byte-identical by tag and by digest, and every blob
//!   acknowledged with 201 GETs whole with the right sha256;
//! - every blob or manifest whose push was not acknowledged is either absent (404) or complete
//!   and correct; a blob whose body was cut off by the kill is absent;
//! - an upload session acknowledged with 202 survives with exactly the acknowledged offset (the
//!   half-sent PATCH is not counted) and can be completed after the restart;
//! - the restarted server takes new pushes.
//!
//! This repeats for a few kill/restart cycles on the same directory, with `[durability]
//! fsync = true` and with `fsync = false` (each passed in a config file with `--config`): a
//! crash of the process, unlike one of the machine, must lose nothing in either mode.
//!
//! Pull statistics are the exception by design: counted in memory and written every
//! `metrics.stats_flush_millis`, a kill loses at most the pulls since the last write, and a
//! graceful stop (SIGTERM) none.

mod support;

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use futures::channel::mpsc as stream_channel;
use reqwest::{Client, StatusCode, header};
use support::{random_bytes, sha256, start_server};

/// Kill/restart cycles per durability mode, on the same data directory.
const CYCLES: usize = 3;
/// Concurrent pushers per cycle.
const PUSHERS: usize = 4;
/// Acknowledged images (across pushers) after which the server is killed.
const KILL_AFTER_ACKS: usize = 10;
/// Upper bound on images one pusher attempts in a cycle.
const MAX_IMAGES_PER_PUSHER: usize = 100;
/// Longest wait for `KILL_AFTER_ACKS` acknowledgements.
const ACK_TIMEOUT: Duration = Duration::from_secs(240);
/// Per-request timeout for ordinary requests (not the deliberately stalled ones).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for the pushers to notice the kill.
const PUSHER_JOIN_TIMEOUT: Duration = Duration::from_secs(60);

const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";
const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

// ---------------------------------------------------------------------------------------------
// Content

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    /// POST, then PUT `?digest=` with the whole body (streamed when large).
    PostPut,
    /// POST, PATCH chunks with Content-Range, PUT `?digest=` (empty or with a last chunk).
    Chunked,
    /// POST `?digest=` with the whole body (end-4b).
    SinglePost,
}

#[derive(Clone, Debug)]
struct Blob {
    repo: String,
    data: Bytes,
    digest: String,
    method: Method,
}

impl Blob {
    fn new(repo: &str, data: Vec<u8>, method: Method) -> Blob {
        Blob {
            repo: repo.to_owned(),
            digest: sha256(&data),
            data: data.into(),
            method,
        }
    }
}

#[derive(Clone, Debug)]
struct Image {
    repo: String,
    tag: String,
    config: Blob,
    layers: Vec<Blob>,
    manifest: Bytes,
    manifest_digest: String,
}

impl Image {
    /// Image `index` of pusher `pusher` in cycle `cycle` (all content unique in the run).
    fn generate(cycle: usize, pusher: usize, index: usize) -> Image {
        let repo = format!("crash/p{pusher}");
        let tag = format!("c{cycle}-i{index}");
        let seed = ((cycle as u64) << 40) | ((pusher as u64) << 24) | index as u64;
        let config = Blob::new(
            &repo,
            format!(
                r#"{{"architecture":"amd64","os":"linux","config":{{"Labels":{{"crash":"{tag}"}}}},"rootfs":{{"type":"layers","diff_ids":[]}}}}"#
            )
            .into_bytes(),
            Method::PostPut,
        );
        // Every third image has layers past 1 MiB, so the server streams them to staged files
        // instead of buffering; the others are small.
        let large = index % 3 == 0;
        let size = |salt: u64, small_max: usize, large_min: usize| {
            let r = (seed.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) ^ salt.wrapping_mul(7919);
            if large {
                large_min + (r as usize % (2 * MIB))
            } else {
                1 + (r as usize % small_max)
            }
        };
        let mut layers = vec![
            Blob::new(
                &repo,
                random_bytes(seed * 4 + 1, size(1, 64 * KIB, MIB + 1)),
                Method::PostPut,
            ),
            Blob::new(
                &repo,
                random_bytes(seed * 4 + 2, size(2, 256 * KIB, MIB + 1)),
                Method::Chunked,
            ),
        ];
        if index % 2 == 1 {
            layers.push(Blob::new(
                &repo,
                random_bytes(seed * 4 + 3, size(3, 32 * KIB, 1)),
                Method::SinglePost,
            ));
        }
        let descriptor = |media_type: &str, b: &Blob| serde_json::json!({"mediaType": media_type, "digest": b.digest, "size": b.data.len()});
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": descriptor(CONFIG_TYPE, &config),
            "layers": layers.iter().map(|l| descriptor(LAYER_TYPE, l)).collect::<Vec<_>>(),
            "annotations": {"crash.test": tag},
        }))
        .unwrap();
        Image {
            manifest_digest: sha256(&manifest),
            manifest: manifest.into(),
            repo,
            tag,
            config,
            layers,
        }
    }

    fn blobs(&self) -> impl Iterator<Item = &Blob> {
        std::iter::once(&self.config).chain(&self.layers)
    }
}

// ---------------------------------------------------------------------------------------------
// Client side of a push

#[derive(Clone)]
struct Registry {
    client: Client,
    base: String,
}

type Res<T> = Result<T, String>;

impl Registry {
    fn new(base: &str) -> Registry {
        Registry {
            client: Client::builder().pool_max_idle_per_host(8).build().unwrap(),
            base: base.to_owned(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The session URL from a `Location` header (absolute or relative).
    fn location(&self, response: &reqwest::Response) -> Res<String> {
        let loc = response
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or("no Location header")?;
        Ok(if loc.starts_with("http") {
            loc.to_owned()
        } else {
            self.url(loc)
        })
    }

    async fn start_session(&self, repo: &str) -> Res<String> {
        let r = self
            .client
            .post(self.url(&format!("/v2/{repo}/blobs/uploads/")))
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
            .map_err(|e| format!("POST: {e}"))?;
        expect(&r, StatusCode::ACCEPTED, "POST upload")?;
        self.location(&r)
    }

    async fn patch(
        &self,
        session: &str,
        start: usize,
        chunk: Bytes,
        timeout: Option<Duration>,
    ) -> Res<String> {
        let end = start + chunk.len() - 1;
        let mut req = self
            .client
            .patch(session)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(header::CONTENT_RANGE, format!("{start}-{end}"))
            .body(chunk);
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        let r = req.send().await.map_err(|e| format!("PATCH: {e}"))?;
        expect(&r, StatusCode::ACCEPTED, "PATCH")?;
        let range = r
            .headers()
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if range != format!("0-{end}") {
            return Err(format!(
                "{PROTOCOL}PATCH answered Range {range:?}, expected 0-{end}"
            ));
        }
        self.location(&r)
    }

    /// Pushes one blob the way its `method` says; Ok only on 201 with the right digest.
    async fn push_blob(&self, blob: &Blob, seq: usize) -> Res<()> {
        let digest_q = |url: &str| {
            let sep = if url.contains('?') { '&' } else { '?' };
            format!("{url}{sep}digest={}", blob.digest)
        };
        let response = match blob.method {
            Method::PostPut => {
                let session = self.start_session(&blob.repo).await?;
                let req = self.client.put(digest_q(&session)).timeout(REQUEST_TIMEOUT);
                let req = if blob.data.len() > MIB {
                    // Chunked transfer encoding, no Content-Length: a streamed body.
                    let pieces: Vec<Result<Bytes, std::io::Error>> = (0..blob.data.len())
                        .step_by(64 * KIB)
                        .map(|i| Ok(blob.data.slice(i..(i + 64 * KIB).min(blob.data.len()))))
                        .collect();
                    req.body(reqwest::Body::wrap_stream(futures::stream::iter(pieces)))
                } else {
                    req.header(header::CONTENT_TYPE, "application/octet-stream")
                        .body(blob.data.clone())
                };
                req.send().await.map_err(|e| format!("PUT blob: {e}"))?
            }
            Method::SinglePost => self
                .client
                .post(digest_q(
                    &self.url(&format!("/v2/{}/blobs/uploads/", blob.repo)),
                ))
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .body(blob.data.clone())
                .timeout(REQUEST_TIMEOUT)
                .send()
                .await
                .map_err(|e| format!("POST blob: {e}"))?,
            Method::Chunked => {
                let mut session = self.start_session(&blob.repo).await?;
                let n = blob.data.len();
                // Two or three unequal chunks; on odd sequence numbers the last rides on the PUT.
                let cuts = [0, n / 3, n * 3 / 4, n];
                let last_in_put = seq % 2 == 1 && n >= 4;
                let patches = if last_in_put { 2 } else { 3 };
                for w in cuts.windows(2).take(patches) {
                    if w[1] > w[0] {
                        session = self
                            .patch(
                                &session,
                                w[0],
                                blob.data.slice(w[0]..w[1]),
                                Some(REQUEST_TIMEOUT),
                            )
                            .await?;
                    }
                }
                let tail = if last_in_put {
                    blob.data.slice(cuts[2]..)
                } else {
                    Bytes::new()
                };
                self.client
                    .put(digest_q(&session))
                    .header(header::CONTENT_TYPE, "application/octet-stream")
                    .body(tail)
                    .timeout(REQUEST_TIMEOUT)
                    .send()
                    .await
                    .map_err(|e| format!("PUT chunked: {e}"))?
            }
        };
        expect(&response, StatusCode::CREATED, "blob upload")?;
        let got = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok());
        if got != Some(blob.digest.as_str()) {
            return Err(format!(
                "{PROTOCOL}201 with Docker-Content-Digest {got:?}, not {}",
                blob.digest
            ));
        }
        Ok(())
    }

    async fn put_manifest(&self, image: &Image) -> Res<()> {
        let r = self
            .client
            .put(self.url(&format!("/v2/{}/manifests/{}", image.repo, image.tag)))
            .header(header::CONTENT_TYPE, MANIFEST_TYPE)
            .body(image.manifest.clone())
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
            .map_err(|e| format!("PUT manifest: {e}"))?;
        expect(&r, StatusCode::CREATED, "manifest PUT")?;
        let got = r
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok());
        if got != Some(image.manifest_digest.as_str()) {
            return Err(format!("{PROTOCOL}manifest 201 with digest {got:?}"));
        }
        Ok(())
    }

    /// GETs `path`: None for 404, the body for 200, an error otherwise.
    async fn get(&self, path: &str) -> Res<Option<(Bytes, header::HeaderMap)>> {
        let r = self
            .client
            .get(self.url(path))
            .header(
                header::ACCEPT,
                format!("{MANIFEST_TYPE}, application/vnd.oci.image.index.v1+json"),
            )
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
            .map_err(|e| format!("GET {path}: {e}"))?;
        match r.status() {
            StatusCode::NOT_FOUND => Ok(None),
            StatusCode::OK => {
                let headers = r.headers().clone();
                let body = r.bytes().await.map_err(|e| format!("GET {path}: {e}"))?;
                Ok(Some((body, headers)))
            }
            s => Err(format!(
                "GET {path}: {s}: {}",
                r.text().await.unwrap_or_default()
            )),
        }
    }
}

/// Marks an error the server answered (as opposed to a broken connection): before the kill
/// there must be none.
const PROTOCOL: &str = "PROTOCOL ERROR: ";

fn expect(r: &reqwest::Response, want: StatusCode, what: &str) -> Res<()> {
    if r.status() == want {
        Ok(())
    } else {
        Err(format!(
            "{PROTOCOL}{what}: {} (expected {want})",
            r.status()
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// What the pushers saw

#[derive(Default)]
struct Ledger {
    /// Blobs that got 201, by digest.
    acked_blobs: BTreeMap<String, Blob>,
    /// Blobs whose push was started but not acknowledged.
    unacked_blobs: BTreeMap<String, Blob>,
    /// Images whose manifest PUT got 201.
    acked_images: Vec<Image>,
    /// Images whose manifest PUT was not acknowledged (maybe never sent).
    unacked_images: Vec<Image>,
}

/// One pusher: pushes images until a request fails (the kill) or its bound is reached.
async fn pusher(
    registry: Registry,
    cycle: usize,
    id: usize,
    ledger: Arc<Mutex<Ledger>>,
    acks: Arc<tokio::sync::watch::Sender<usize>>,
    in_flight: Arc<AtomicUsize>,
) -> Option<String> {
    for index in 0..MAX_IMAGES_PER_PUSHER {
        let image = Image::generate(cycle, id, index);
        in_flight.fetch_add(1, Ordering::SeqCst);
        let mut failed = None;
        for (seq, blob) in image.blobs().enumerate() {
            match registry.push_blob(blob, index + seq).await {
                Ok(()) => {
                    let mut l = ledger.lock().unwrap();
                    l.acked_blobs.insert(blob.digest.clone(), blob.clone());
                }
                Err(e) => {
                    ledger
                        .lock()
                        .unwrap()
                        .unacked_blobs
                        .insert(blob.digest.clone(), blob.clone());
                    failed = Some(e);
                    break;
                }
            }
        }
        if failed.is_none() {
            match registry.put_manifest(&image).await {
                Ok(()) => {
                    ledger.lock().unwrap().acked_images.push(image.clone());
                    acks.send_modify(|n| *n += 1);
                }
                Err(e) => failed = Some(e),
            }
        }
        in_flight.fetch_sub(1, Ordering::SeqCst);
        if let Some(e) = failed {
            ledger.lock().unwrap().unacked_images.push(image);
            // After the kill every request fails on the connection; an answer that is not
            // the expected one is a server bug, whenever it came.
            return e.starts_with(PROTOCOL).then(|| format!("pusher {id}: {e}"));
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Uploads deliberately left half-sent at the kill

/// A request whose body is held open: some bytes sent, the rest never.
struct Stall {
    /// Keeps the body open until the kill; dropped afterwards.
    _sender: stream_channel::UnboundedSender<Result<Bytes, std::io::Error>>,
    task: tokio::task::JoinHandle<Result<reqwest::Response, reqwest::Error>>,
}

fn stalled_request(req: reqwest::RequestBuilder, first: Bytes) -> Stall {
    let (tx, rx) = stream_channel::unbounded();
    tx.unbounded_send(Ok(first)).unwrap();
    let task = tokio::spawn(req.body(reqwest::Body::wrap_stream(rx)).send());
    Stall { _sender: tx, task }
}

/// Sessions left open at a kill, to check after the restart.
struct OpenSession {
    /// Session URL path (without the server's address, which changes on restart).
    path: String,
    blob: Blob,
    /// Bytes the server acknowledged (202) before the kill.
    acked: usize,
}

struct Stalls {
    requests: Vec<Stall>,
    sessions: Vec<OpenSession>,
    /// Blobs whose only upload was cut off: they must not exist after the restart.
    cut_off: Vec<Blob>,
}

/// Opens three uploads and leaves each with a half-sent body: a monolithic PUT to a session,
/// a PATCH after one acknowledged chunk, and a single-request POST `?digest=`.
async fn open_stalls(registry: &Registry, cycle: usize) -> Stalls {
    let repo = "crash/stalled";
    let mk = |n: u64, len: usize| {
        Blob::new(
            repo,
            random_bytes((1 << 60) | ((cycle as u64) << 8) | n, len),
            Method::PostPut,
        )
    };
    let (mono, chunked, single) = (mk(1, 3 * MIB), mk(2, 4 * MIB), mk(3, 3 * MIB));
    let path_of = |url: &str| url[registry.base.len()..].to_owned();
    let mut requests = Vec::new();
    let mut sessions = Vec::new();

    // 1. POST, then PUT ?digest= whose body stops after 1.5 MiB (past the buffered size).
    let session = registry.start_session(repo).await.unwrap();
    let stall = stalled_request(
        registry
            .client
            .put(format!("{session}?digest={}", mono.digest)),
        mono.data.slice(..3 * MIB / 2),
    );
    requests.push(stall);
    sessions.push(OpenSession {
        path: path_of(&session),
        blob: mono.clone(),
        acked: 0,
    });

    // 2. POST, PATCH 1.25 MiB (acknowledged), then a PATCH that stops after 1 MiB of its 2.
    let session = registry.start_session(repo).await.unwrap();
    let first = 5 * MIB / 4;
    let session = registry
        .patch(
            &session,
            0,
            chunked.data.slice(..first),
            Some(REQUEST_TIMEOUT),
        )
        .await
        .unwrap();
    let stall = stalled_request(
        registry
            .client
            .patch(&session)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(
                header::CONTENT_RANGE,
                format!("{first}-{}", first + 2 * MIB - 1),
            ),
        chunked.data.slice(first..first + MIB),
    );
    requests.push(stall);
    sessions.push(OpenSession {
        path: path_of(&session),
        blob: chunked.clone(),
        acked: first,
    });

    // 3. POST ?digest= with a body that stops halfway.
    let stall = stalled_request(
        registry.client.post(registry.url(&format!(
            "/v2/{repo}/blobs/uploads/?digest={}",
            single.digest
        ))),
        single.data.slice(..single.data.len() / 2),
    );
    requests.push(stall);

    Stalls {
        requests,
        sessions,
        cut_off: vec![mono, chunked, single],
    }
}

// ---------------------------------------------------------------------------------------------
// Checks after the restart

async fn check_blob(registry: &Registry, blob: &Blob) -> Res<bool> {
    let path = format!("/v2/{}/blobs/{}", blob.repo, blob.digest);
    match registry.get(&path).await? {
        None => Ok(false),
        Some((body, _)) => {
            if body.len() != blob.data.len() || sha256(&body) != blob.digest {
                Err(format!(
                    "{path}: {} bytes hashing to {}, expected {} bytes",
                    body.len(),
                    sha256(&body),
                    blob.data.len()
                ))
            } else {
                Ok(true)
            }
        }
    }
}

/// The manifest of `image` by tag and by digest: Ok(false) when both are 404, Ok(true) when
/// both are byte-identical, an error for anything else.
async fn check_manifest(registry: &Registry, image: &Image) -> Res<bool> {
    let mut found = Vec::new();
    for reference in [&image.tag, &image.manifest_digest] {
        let path = format!("/v2/{}/manifests/{reference}", image.repo);
        match registry.get(&path).await? {
            None => found.push(false),
            Some((body, headers)) => {
                if body != image.manifest {
                    return Err(format!("{path}: manifest bytes differ from those pushed"));
                }
                let digest = headers
                    .get("docker-content-digest")
                    .and_then(|v| v.to_str().ok());
                if digest != Some(image.manifest_digest.as_str()) {
                    return Err(format!("{path}: Docker-Content-Digest {digest:?}"));
                }
                found.push(true);
            }
        }
    }
    if found[0] && !found[1] {
        return Err(format!(
            "{}:{} resolves but its digest {} does not",
            image.repo, image.tag, image.manifest_digest
        ));
    }
    Ok(found[0])
}

async fn all_tags(registry: &Registry, repo: &str) -> Res<Vec<String>> {
    let (body, _) = registry
        .get(&format!("/v2/{repo}/tags/list?n=10000"))
        .await?
        .ok_or_else(|| format!("{repo}: tags/list is 404"))?;
    let v: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| format!("tags/list: {e}"))?;
    Ok(v["tags"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default())
}

/// Everything the invariant says about the state after a restart; returns the failures.
async fn verify(registry: &Registry, ledger: &Ledger, sessions: &[OpenSession]) -> Vec<String> {
    let mut failures = Vec::new();
    for image in &ledger.acked_images {
        match check_manifest(registry, image).await {
            Ok(true) => {}
            Ok(false) => failures.push(format!(
                "LOST acknowledged manifest {}:{} ({})",
                image.repo, image.tag, image.manifest_digest
            )),
            Err(e) => failures.push(e),
        }
        for blob in image.blobs() {
            match check_blob(registry, blob).await {
                Ok(true) => {}
                Ok(false) => failures.push(format!(
                    "LOST layer {} of acknowledged image {}:{}",
                    blob.digest, image.repo, image.tag
                )),
                Err(e) => failures.push(e),
            }
        }
    }
    for blob in ledger.acked_blobs.values() {
        match check_blob(registry, blob).await {
            Ok(true) => {}
            Ok(false) => failures.push(format!(
                "LOST acknowledged blob {} in {} ({:?}, {} bytes)",
                blob.digest,
                blob.repo,
                blob.method,
                blob.data.len()
            )),
            Err(e) => failures.push(e),
        }
    }
    for blob in ledger.unacked_blobs.values() {
        if let Err(e) = check_blob(registry, blob).await {
            failures.push(format!("unacknowledged blob visible but wrong: {e}"));
        }
    }
    for image in &ledger.unacked_images {
        if let Err(e) = check_manifest(registry, image).await {
            failures.push(format!("unacknowledged manifest: {e}"));
        }
    }
    let mut repos: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for image in &ledger.acked_images {
        repos.entry(&image.repo).or_default().push(&image.tag);
    }
    for (repo, tags) in repos {
        match all_tags(registry, repo).await {
            Ok(listed) => {
                for tag in tags {
                    if !listed.iter().any(|t| t == tag) {
                        failures.push(format!("{repo}: tag {tag} missing from tags/list"));
                    }
                }
            }
            Err(e) => failures.push(e),
        }
    }
    failures.extend(complete_sessions(registry, sessions).await);
    failures
}

/// Each session opened before the kill still exists at exactly its acknowledged offset, the
/// cut-off bytes are not counted, and it can be completed now.
async fn complete_sessions(registry: &Registry, sessions: &[OpenSession]) -> Vec<String> {
    let mut failures = Vec::new();
    for s in sessions {
        let r = match registry
            .client
            .get(registry.url(&s.path))
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("upload status {}: {e}", s.path));
                continue;
            }
        };
        let range = r
            .headers()
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let want = format!("0-{}", s.acked.saturating_sub(1));
        if r.status() != StatusCode::NO_CONTENT || range.as_deref() != Some(want.as_str()) {
            failures.push(format!(
                "LOST upload session {} ({} bytes acknowledged): status {} Range {range:?}, \
                 expected 204 Range {want}",
                s.path,
                s.acked,
                r.status()
            ));
            continue;
        }
        let mut session = registry.url(&s.path);
        if s.acked < s.blob.data.len() {
            match registry
                .patch(
                    &session,
                    s.acked,
                    s.blob.data.slice(s.acked..),
                    Some(REQUEST_TIMEOUT),
                )
                .await
            {
                Ok(next) => session = next,
                Err(e) => {
                    failures.push(format!("resuming {} after restart: {e}", s.path));
                    continue;
                }
            }
        }
        let done = registry
            .client
            .put(format!("{session}?digest={}", s.blob.digest))
            .body(Bytes::new())
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await;
        match done {
            Ok(r) if r.status() == StatusCode::CREATED => match check_blob(registry, &s.blob).await
            {
                Ok(true) => {}
                Ok(false) => failures.push(format!("{}: 201 but then 404", s.blob.digest)),
                Err(e) => failures.push(e),
            },
            Ok(r) => failures.push(format!(
                "completing {} after restart: {}: {}",
                s.path,
                r.status(),
                r.text().await.unwrap_or_default()
            )),
            Err(e) => failures.push(format!("completing {} after restart: {e}", s.path)),
        }
    }
    failures
}

/// The blobs whose only upload was cut off are absent (checked first: completing the
/// interrupted sessions publishes some of them), then everything [`verify`] checks.
async fn verify_restart(
    registry: &Registry,
    ledger: &Ledger,
    sessions: &[OpenSession],
    cut_off: &[Blob],
) -> Vec<String> {
    let mut failures = Vec::new();
    for blob in cut_off {
        match check_blob(registry, blob).await {
            Ok(false) => {}
            Ok(true) => failures.push(format!(
                "blob {} is visible although its only upload was cut off by the kill",
                blob.digest
            )),
            Err(e) => failures.push(format!("cut-off upload: {e}")),
        }
    }
    failures.extend(verify(registry, ledger, sessions).await);
    failures
}

// ---------------------------------------------------------------------------------------------
// The scenario

async fn crash_loses_nothing(fsync: bool) {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    // Explicit in both modes, whatever the default is.
    let config = dir.path().join("berth.toml");
    std::fs::write(&config, format!("[durability]\nfsync = {fsync}\n")).unwrap();
    let mode = if fsync { "fsync=true" } else { "fsync=false" };
    let mut ledger = Ledger::default();
    let mut pending_sessions: Vec<OpenSession> = Vec::new();
    let mut cut_off: Vec<Blob> = Vec::new();

    for cycle in 0..CYCLES {
        let server = start_server(&data_dir, &config);
        let registry = Registry::new(&server.base);

        // After a restart: everything from the previous cycles is there, nothing cut off is.
        if cycle > 0 {
            let failures = verify_restart(&registry, &ledger, &pending_sessions, &cut_off).await;
            assert!(
                failures.is_empty(),
                "[{mode}] after kill #{cycle}: {} failure(s):\n{}\nserver stderr:\n{}",
                failures.len(),
                failures.join("\n"),
                server.log()
            );
            eprintln!(
                "[{mode}] after kill #{cycle}: {} acknowledged images and {} blobs intact, \
                 {} unacknowledged images consistent, {} interrupted sessions resumed",
                ledger.acked_images.len(),
                ledger.acked_blobs.len(),
                ledger.unacked_images.len(),
                pending_sessions.len()
            );
            // The sessions were completed by the check: their blobs now count as acknowledged.
            for s in pending_sessions.drain(..) {
                ledger.acked_blobs.insert(s.blob.digest.clone(), s.blob);
            }
            cut_off.clear();
        }

        let stalls = open_stalls(&registry, cycle).await;
        let shared = Arc::new(Mutex::new(std::mem::take(&mut ledger)));
        let (acks_tx, mut acks_rx) = tokio::sync::watch::channel(0usize);
        let acks_tx = Arc::new(acks_tx);
        let in_flight = Arc::new(AtomicUsize::new(0));
        let pushers: Vec<_> = (0..PUSHERS)
            .map(|id| {
                tokio::spawn(pusher(
                    registry.clone(),
                    cycle,
                    id,
                    shared.clone(),
                    acks_tx.clone(),
                    in_flight.clone(),
                ))
            })
            .collect();

        // (The watch guard must not outlive this statement: pushers write to it.)
        let reached =
            tokio::time::timeout(ACK_TIMEOUT, acks_rx.wait_for(|n| *n >= KILL_AFTER_ACKS))
                .await
                .is_ok_and(|r| r.is_ok());
        let in_flight_at_kill = in_flight.load(Ordering::SeqCst);
        let log = server.log();
        server.kill9();
        assert!(
            reached,
            "[{mode}] cycle {cycle}: fewer than {KILL_AFTER_ACKS} images acknowledged in \
             {ACK_TIMEOUT:?}; server stderr:\n{log}"
        );

        let mut protocol_errors = Vec::new();
        for p in pushers {
            protocol_errors.extend(
                tokio::time::timeout(PUSHER_JOIN_TIMEOUT, p)
                    .await
                    .expect("a pusher did not notice the kill")
                    .expect("pusher panicked"),
            );
        }
        assert!(
            protocol_errors.is_empty(),
            "[{mode}] cycle {cycle}: the server refused pushes:\n{}\nserver stderr:\n{log}",
            protocol_errors.join("\n")
        );
        for stall in stalls.requests {
            let outcome = tokio::time::timeout(PUSHER_JOIN_TIMEOUT, stall.task)
                .await
                .expect("a stalled upload did not end with the kill")
                .expect("stalled request task panicked");
            if let Ok(r) = outcome {
                panic!(
                    "[{mode}] a half-sent upload was answered {} before the kill",
                    r.status()
                );
            }
        }
        ledger = Arc::try_unwrap(shared)
            .ok()
            .expect("pushers hold no ledger")
            .into_inner()
            .unwrap();
        // A blob pushed and acknowledged is no longer "unacknowledged" even if its image was not.
        let acked: Vec<String> = ledger.acked_blobs.keys().cloned().collect();
        for d in acked {
            ledger.unacked_blobs.remove(&d);
        }
        eprintln!(
            "[{mode}] kill #{}: {} images acknowledged so far, {in_flight_at_kill} image pushes \
             and 3 half-sent uploads in flight",
            cycle + 1,
            ledger.acked_images.len()
        );
        pending_sessions = stalls.sessions;
        cut_off = stalls.cut_off;
    }

    // Final restart: check the last kill, then that the server still takes pushes.
    let server = start_server(&data_dir, &config);
    let registry = Registry::new(&server.base);
    let mut failures = verify_restart(&registry, &ledger, &pending_sessions, &cut_off).await;
    let fresh = Image::generate(CYCLES, PUSHERS, 0);
    for (seq, blob) in fresh.blobs().enumerate() {
        if let Err(e) = registry.push_blob(blob, seq).await {
            failures.push(format!("push after restart: {e}"));
        }
    }
    if let Err(e) = registry.put_manifest(&fresh).await {
        failures.push(format!("manifest push after restart: {e}"));
    }
    if !matches!(check_manifest(&registry, &fresh).await, Ok(true)) {
        failures.push("image pushed after the restart does not read back".into());
    }
    assert!(
        failures.is_empty(),
        "[{mode}] after the last kill: {} failure(s):\n{}\nserver stderr:\n{}",
        failures.len(),
        failures.join("\n"),
        server.log()
    );
    eprintln!(
        "[{mode}] done: {CYCLES} kills, {} acknowledged images and {} blobs intact",
        ledger.acked_images.len(),
        ledger.acked_blobs.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill9_loses_nothing_with_fsync() {
    crash_loses_nothing(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill9_loses_nothing_without_fsync() {
    crash_loses_nothing(false).await;
}

/// The pull count of `repo` as `/api/v1/repositories/{repo}` shows it.
async fn pull_count(registry: &Registry, repo: &str) -> i64 {
    let shown: serde_json::Value = registry
        .client
        .get(registry.url(&format!("/api/v1/repositories/{repo}")))
        .timeout(REQUEST_TIMEOUT)
        .send()
        .await
        .expect("GET repository")
        .json()
        .await
        .expect("repository JSON");
    shown["pull_count"].as_i64().expect("pull_count")
}

/// Pulls (manifest GETs by tag) `image` `times` times, insisting on 200.
async fn pull(registry: &Registry, image: &Image, times: usize) {
    for _ in 0..times {
        let path = format!("/v2/{}/manifests/{}", image.repo, image.tag);
        let got = registry.get(&path).await.expect("pull");
        assert!(got.is_some(), "{path} is missing");
    }
}

/// Pulls counted in memory after the last write are what a kill -9 may lose, and no more:
/// N pulls, one write observed through the API, M more, SIGKILL; after the restart between
/// N and N+M are counted. M more, a graceful stop (SIGTERM): all of them are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_loses_at_most_the_pulls_of_one_flush_interval() {
    const N: usize = 20;
    const M: usize = 30;
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let config = dir.path().join("berth.toml");
    std::fs::write(&config, "[metrics]\nstats_flush_millis = 300\n").unwrap();
    let image = Image::generate(CYCLES + 1, 0, 1);

    let server = start_server(&data_dir, &config);
    let registry = Registry::new(&server.base);
    for (seq, blob) in image.blobs().enumerate() {
        registry.push_blob(blob, seq).await.expect("blob push");
    }
    registry.put_manifest(&image).await.expect("manifest push");
    pull(&registry, &image, N).await;
    // A write is seen when the API shows the N pulls (bounded: 30 s of polling).
    let mut polls = tokio::time::interval(Duration::from_millis(20));
    let mut seen = 0;
    for _ in 0..1500 {
        polls.tick().await;
        seen = pull_count(&registry, &image.repo).await;
        if seen == N as i64 {
            break;
        }
    }
    assert_eq!(seen, N as i64, "no flush seen; stderr:\n{}", server.log());
    pull(&registry, &image, M).await;
    server.kill9();

    let server = start_server(&data_dir, &config);
    let registry = Registry::new(&server.base);
    let after_kill = pull_count(&registry, &image.repo).await;
    assert!(
        (N as i64..=(N + M) as i64).contains(&after_kill),
        "{after_kill} pulls counted after the kill; {N} were written before it, {M} came after"
    );
    eprintln!(
        "kill -9: {} of the {M} pulls since the last write lost",
        (N + M) as i64 - after_kill
    );
    pull(&registry, &image, M).await;
    tokio::task::block_in_place(|| server.terminate());

    let server = start_server(&data_dir, &config);
    let registry = Registry::new(&server.base);
    assert_eq!(
        pull_count(&registry, &image.repo).await,
        after_kill + M as i64,
        "a graceful stop writes every pull; stderr:\n{}",
        server.log()
    );
}
