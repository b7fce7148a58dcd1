//! The harness: a real Berth server on a loopback port with its own data directory, and
//! domain helpers (push a blob, push an image, read an error code) over `reqwest`.
//!
//! The listener is bound before the server is spawned, so early connections just queue: no
//! port probing and no sleeping. Dropping a [`TestServer`] cancels it; [`TestServer::stop`]
//! also waits until it has flushed what it holds (pull statistics) and closed its index.

pub mod auth;

use std::path::PathBuf;

use berth::config::{DatabaseConfig, StorageConfig};
use reqwest::{Client, Method, RequestBuilder, Response, StatusCode, header::HeaderMap};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256, Sha512};
use tempfile::TempDir;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};
use tokio_util::sync::CancellationToken;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// The spec's error codes (spec.md, "Error Codes", code-1 to code-14).
pub const SPEC_CODES: [&str; 14] = [
    "BLOB_UNKNOWN",
    "BLOB_UPLOAD_INVALID",
    "BLOB_UPLOAD_UNKNOWN",
    "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN",
    "MANIFEST_INVALID",
    "MANIFEST_UNKNOWN",
    "NAME_INVALID",
    "NAME_UNKNOWN",
    "SIZE_INVALID",
    "UNAUTHORIZED",
    "DENIED",
    "UNSUPPORTED",
    "TOOMANYREQUESTS",
];

/// The shared backends a server in `dir` uses: by default none (SQLite and a blob directory
/// under `dir`). With `BERTH_TEST_DATABASE_URL` (a PostgreSQL server URL whose user may
/// create databases) each test server gets a fresh database `berth_test_<uuid>`; with
/// `BERTH_TEST_STORAGE_URL` (`s3://bucket`, `az://container`) a fresh prefix in it. The choice
/// is written to `dir`, so that a restart on the same directory finds the same data.
pub async fn backends(dir: &std::path::Path) -> (Option<String>, Option<String>) {
    let memo = dir.join("test-backends.json");
    if let Ok(text) = std::fs::read_to_string(&memo) {
        return serde_json::from_str(&text).expect("backends memo");
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    let database_url = match std::env::var("BERTH_TEST_DATABASE_URL") {
        Ok(server) => Some(fresh_postgres_database(&server, &format!("berth_test_{id}")).await),
        Err(_) => None,
    };
    let storage_url = std::env::var("BERTH_TEST_STORAGE_URL")
        .ok()
        .map(|base| format!("{}/test-{id}", base.trim_end_matches('/')));
    let chosen = (database_url, storage_url);
    std::fs::write(&memo, serde_json::to_vec(&chosen).unwrap()).expect("write backends memo");
    chosen
}

/// Creates database `name` on the PostgreSQL server of `server_url`; returns its URL.
pub async fn fresh_postgres_database(server_url: &str, name: &str) -> String {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(server_url)
        .await
        .expect("connect to BERTH_TEST_DATABASE_URL");
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut conn)
        .await
        .expect("create a test database");
    conn.close().await.expect("close");
    let mut url = url::Url::parse(server_url).expect("BERTH_TEST_DATABASE_URL is a URL");
    url.set_path(&format!("/{name}"));
    url.to_string()
}

/// A running server and a client for it.
pub struct TestServer {
    /// `http://127.0.0.1:<port>`, no trailing slash.
    pub base: String,
    pub client: Client,
    /// Where the server keeps its index (`berth.db`) and blobs, when they are local.
    pub data_dir: PathBuf,
    /// The index it uses (`sqlite://…` or `postgres://…`), for tests that read it directly.
    pub database_url: String,
    /// The configuration it runs with.
    pub config: berth::Config,
    /// The server's clock: [`berth::clock::Clock::advance`] moves the time every rule of the
    /// server (and of replicas opened from `config`) reads, instead of a test waiting for it.
    pub clock: berth::clock::Clock,
    dir: Option<TempDir>,
    token: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    /// A server with the default configuration (without fsync, for speed).
    pub async fn start() -> TestServer {
        TestServer::start_with(|_| {}).await
    }

    /// A server whose configuration `configure` adjusts first.
    pub async fn start_with(configure: impl FnOnce(&mut berth::Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("temporary directory");
        TestServer::start_in(dir, configure).await
    }

    /// A server over an existing directory (a restart after [`TestServer::stop`]). The
    /// directory remembers the shared backends of its first server (see [`backends`]).
    pub async fn start_in(dir: TempDir, configure: impl FnOnce(&mut berth::Config)) -> TestServer {
        let mut cfg = berth::Config::with_data_dir(dir.path());
        cfg.durability.fsync = false;
        let (database_url, storage_url) = backends(dir.path()).await;
        if let Some(url) = database_url {
            cfg.database = DatabaseConfig::from_url(&url).expect("database URL");
        }
        if let Some(url) = storage_url {
            cfg.storage.backend = StorageConfig::from_url(&url).expect("storage URL");
        }
        cfg.limits.database_connections = 4;
        configure(&mut cfg);
        let data_dir = cfg.data_dir.clone();
        let database_url = match &cfg.database {
            DatabaseConfig::Sqlite { path } => format!("sqlite://{}", path.display()),
            DatabaseConfig::Postgres { url } => url.clone(),
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local address");
        let token = CancellationToken::new();
        let stop = token.clone();
        let config = cfg.clone();
        let task = tokio::spawn(berth::serve(cfg, listener, async move {
            stop.cancelled().await
        }));
        TestServer {
            base: format!("http://{addr}"),
            client: Client::new(),
            data_dir,
            database_url,
            clock: config.clock.clone(),
            config,
            dir: Some(dir),
            token,
            task: Some(task),
        }
    }

    /// The domain over the same index and store, as another replica (or `berth gc`) sees it:
    /// for tests that drive workers or pass what HTTP cannot yet (a caller's role).
    pub async fn replica(&self) -> berth::registry::Registry {
        // Once the server answers, it has migrated the index: two migrators never race.
        assert_eq!(self.get("/v2/").await.status(), StatusCode::OK);
        berth::registry::Registry::open(&self.config)
            .await
            .expect("a second replica opens")
    }

    /// Whether the server runs on the embedded defaults (SQLite and a local directory).
    pub fn on_embedded_backends(&self) -> bool {
        self.database_url.starts_with("sqlite:") && std::env::var("BERTH_TEST_STORAGE_URL").is_err()
    }

    /// Shuts the server down and waits until it has flushed and closed everything; returns
    /// the directory so that it can be inspected or served again.
    pub async fn stop(mut self) -> TempDir {
        // Idle keep-alive connections would otherwise hold up the graceful shutdown.
        self.client = Client::new();
        self.token.cancel();
        let task = self.task.take().expect("server task");
        task.await
            .expect("server task panicked")
            .expect("server failed");
        self.dir.take().expect("data directory")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request to `path` (starting with `/v2/`).
    pub fn req(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path))
    }

    pub async fn get(&self, path: &str) -> Response {
        self.req(Method::GET, path).send().await.expect("GET")
    }

    pub async fn head(&self, path: &str) -> Response {
        self.req(Method::HEAD, path).send().await.expect("HEAD")
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.req(Method::DELETE, path).send().await.expect("DELETE")
    }

    /// `location` as an absolute URL (the spec allows relative ones).
    pub fn absolute(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_owned()
        } else {
            self.url(location)
        }
    }

    /// The absolute `Location` of `resp`.
    pub fn location(&self, resp: &Response) -> String {
        self.absolute(&header(resp, "location").expect("Location header"))
    }

    /// Pushes `bytes` as a blob of `repo` in one POST (end-4b) and returns its digest.
    pub async fn push_blob(&self, repo: &str, bytes: &[u8]) -> String {
        let digest = sha256(bytes);
        let resp = self
            .req(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
            )
            .header("content-type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .await
            .expect("POST blob");
        assert_eq!(resp.status(), StatusCode::CREATED, "push_blob to {repo}");
        digest
    }

    /// Opens an upload session in `repo` (end-4a) and returns its absolute `Location`.
    pub async fn start_upload(&self, repo: &str) -> String {
        let resp = self
            .req(Method::POST, &format!("/v2/{repo}/blobs/uploads/"))
            .header("content-length", "0")
            .send()
            .await
            .expect("POST upload");
        assert_eq!(
            resp.status(),
            StatusCode::ACCEPTED,
            "start_upload in {repo}"
        );
        self.location(&resp)
    }

    /// PUTs `body` as a manifest of `repo` under `reference` with `content_type`.
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Response {
        let mut req = self
            .req(Method::PUT, &format!("/v2/{repo}/manifests/{reference}"))
            .body(body.to_vec());
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        req.send().await.expect("PUT manifest")
    }

    /// Like [`TestServer::put_manifest`] but insists on 201; returns the manifest's digest.
    pub async fn put_manifest_ok(
        &self,
        repo: &str,
        reference: &str,
        content_type: &str,
        body: &[u8],
    ) -> String {
        let resp = self
            .put_manifest(repo, reference, Some(content_type), body)
            .await;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        assert_eq!(
            status,
            StatusCode::CREATED,
            "PUT {repo}:{reference}: {text}"
        );
        sha256(body)
    }

    /// Pushes an OCI image (a linux/amd64 config and `layers`) to `repo`, tagged `tag`.
    /// Returns the manifest's digest and bytes.
    pub async fn push_image(&self, repo: &str, tag: &str, layers: &[&[u8]]) -> (String, Vec<u8>) {
        let config = image_config("linux", "amd64", None);
        self.push_image_with(repo, tag, &config, layers).await
    }

    /// Pushes an OCI image with the given config blob; `reference` is a tag or the digest.
    pub async fn push_image_with(
        &self,
        repo: &str,
        reference: &str,
        config: &[u8],
        layers: &[&[u8]],
    ) -> (String, Vec<u8>) {
        self.push_blob(repo, config).await;
        for layer in layers {
            self.push_blob(repo, layer).await;
        }
        let manifest = image_manifest(config, layers);
        let digest = sha256(&manifest);
        let reference = if reference.is_empty() {
            digest.as_str()
        } else {
            reference
        };
        self.put_manifest_ok(repo, reference, OCI_MANIFEST, &manifest)
            .await;
        (digest, manifest)
    }

    /// Every page of a listing at `path`, following `Link: <…>; rel="next"` until a page has
    /// none; `field` is the JSON array each page holds.
    pub async fn pages(&self, path: &str, field: &str) -> Vec<Vec<String>> {
        let mut pages = Vec::new();
        let mut next = Some(path.to_owned());
        while let Some(path) = next.take() {
            assert!(pages.len() < 1000, "pagination does not end");
            let resp = self.get(&path).await;
            assert_eq!(resp.status(), StatusCode::OK, "GET {path}");
            next = header(&resp, "link").map(|l| next_link(&l));
            let body = json_body(resp).await;
            pages.push(strings(&body[field]));
        }
        pages
    }

    /// Sends a request head declaring `declared` body bytes, then only the shorter `body`, and
    /// closes the connection; returns the status the server managed to answer, if any.
    pub async fn truncated_request(&self, head: &str, body: &[u8], declared: usize) -> Option<u16> {
        let addr = self.base.trim_start_matches("http://");
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let head = format!("{head}\r\nHost: {addr}\r\nContent-Length: {declared}\r\n\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(body).await.unwrap();
        stream.shutdown().await.unwrap();
        let mut answer = Vec::new();
        // The server answers or closes once it has given up on the body; bounded for safety.
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            stream.read_to_end(&mut answer),
        )
        .await;
        assert!(read.is_ok(), "the server neither answered nor closed");
        let text = String::from_utf8_lossy(&answer);
        text.split(' ').nth(1).and_then(|s| s.parse().ok())
    }

    /// Sends a raw HTTP/1.1 request (for paths an URL library would normalise, like `%2e%2e`)
    /// and reads the whole response.
    pub async fn raw(&self, method: &str, target: &str, body: &[u8]) -> RawResponse {
        let addr = self.base.trim_start_matches("http://");
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let head = format!(
            "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        // One write, so that the server has the whole request before it answers and closes.
        let mut request = head.into_bytes();
        request.extend_from_slice(body);
        stream.write_all(&request).await.expect("write");
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await.expect("read");
        RawResponse::parse(&out)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

/// A response read off a raw socket.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    fn parse(bytes: &[u8]) -> RawResponse {
        let split = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a complete response head");
        let head = String::from_utf8_lossy(&bytes[..split]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .expect("status line");
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let rest = &bytes[split + 4..];
        let chunked = headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
        let body = if chunked {
            dechunk(rest)
        } else {
            rest.to_vec()
        };
        RawResponse {
            status,
            headers,
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `errors[0].code`, after checking the body is a spec error document.
    pub fn error_code(&self) -> String {
        assert_eq!(
            self.header("docker-distribution-api-version"),
            Some("registry/2.0")
        );
        check_error_document(self.status, &self.body)
    }
}

fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&rest[..eol]);
        let size = usize::from_str_radix(size_text.trim(), 16).expect("chunk size");
        if size == 0 {
            break;
        }
        out.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
        rest = &rest[eol + 2 + size + 2..];
    }
    out
}

/// The body of `resp` as JSON.
pub async fn json_body(resp: Response) -> Value {
    let bytes = resp.bytes().await.expect("body");
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))
}

/// The value of header `name`, if present and text.
pub fn header(resp: &Response, name: &str) -> Option<String> {
    header_of(resp.headers(), name)
}

pub fn header_of(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .map(|v| v.to_str().expect("text header").to_owned())
}

/// `errors[0].code` of an error response, after checking what every error must have: the
/// API version header, a JSON body of the spec's shape, every code one of the spec's 14 (or
/// `UNKNOWN` for a 500, which only a server fault may produce).
pub async fn error_code(resp: Response) -> String {
    assert_eq!(
        header(&resp, "docker-distribution-api-version").as_deref(),
        Some("registry/2.0"),
        "every /v2/ response names the API version"
    );
    let status = resp.status().as_u16();
    let ct = header(&resp, "content-type").unwrap_or_default();
    assert!(
        ct.starts_with("application/json"),
        "error Content-Type {ct:?}"
    );
    let body = resp.bytes().await.expect("error body");
    check_error_document(status, &body)
}

fn check_error_document(status: u16, body: &[u8]) -> String {
    let doc: Value = serde_json::from_slice(body).unwrap_or_else(|e| {
        panic!(
            "error body is not JSON ({e}): {}",
            String::from_utf8_lossy(body)
        )
    });
    let errors = doc["errors"].as_array().expect("errors array");
    assert!(!errors.is_empty(), "errors is empty: {doc}");
    for e in errors {
        let code = e["code"].as_str().expect("code is a string");
        let spec = SPEC_CODES.contains(&code) || (status == 500 && code == "UNKNOWN");
        assert!(spec, "{code} is not a spec code ({doc})");
    }
    errors[0]["code"].as_str().unwrap_or_default().to_owned()
}

/// Asserts `resp` is an error with `status` and spec code `code`.
pub async fn assert_error(resp: Response, status: u16, code: &str) {
    let url = resp.url().clone();
    assert_eq!(resp.status().as_u16(), status, "status of {url}");
    assert_eq!(error_code(resp).await, code, "code of {url}");
}

/// The target of a `Link: <target>; rel="next"` header, checking its form.
pub fn next_link(link: &str) -> String {
    let target = link
        .strip_prefix('<')
        .and_then(|l| l.strip_suffix(">; rel=\"next\""))
        .unwrap_or_else(|| panic!("Link {link:?} is not <…>; rel=\"next\""));
    target.to_owned()
}

/// A JSON array of strings.
pub fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("{v} is not an array"))
        .iter()
        .map(|s| s.as_str().expect("a string").to_owned())
        .collect()
}

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

pub fn sha512(bytes: &[u8]) -> String {
    format!("sha512:{}", hex::encode(Sha512::digest(bytes)))
}

/// A digest no test ever pushes content for.
pub fn unknown_digest() -> String {
    sha256(uuid::Uuid::new_v4().as_bytes())
}

/// `n` bytes that differ from call to call.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let seed = uuid::Uuid::new_v4();
    let mut out = Vec::with_capacity(n + 32);
    let mut counter = 0u64;
    while out.len() < n {
        let mut h = Sha256::new();
        h.update(seed.as_bytes());
        h.update(counter.to_be_bytes());
        out.extend_from_slice(&h.finalize());
        counter += 1;
    }
    out.truncate(n);
    out
}

/// `{ mediaType, digest, size }` for `bytes`.
pub fn descriptor(media_type: &str, bytes: &[u8]) -> Value {
    json!({ "mediaType": media_type, "digest": sha256(bytes), "size": bytes.len() })
}

/// An OCI image config for a platform.
pub fn image_config(os: &str, architecture: &str, variant: Option<&str>) -> Vec<u8> {
    let mut config = json!({
        "architecture": architecture,
        "os": os,
        "rootfs": { "type": "layers", "diff_ids": [] },
        "config": {},
    });
    if let Some(v) = variant {
        config["variant"] = json!(v);
    }
    serde_json::to_vec(&config).expect("config JSON")
}

/// An OCI image manifest (with `mediaType`) for a config blob and layer blobs.
pub fn image_manifest(config: &[u8], layers: &[&[u8]]) -> Vec<u8> {
    let layers: Vec<Value> = layers.iter().map(|l| descriptor(OCI_LAYER, l)).collect();
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config),
        "layers": layers,
    }))
    .expect("manifest JSON")
}

/// `location` with `?digest=` (or `&digest=`) appended.
pub fn with_digest(location: &str, digest: &str) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}digest={digest}")
}
