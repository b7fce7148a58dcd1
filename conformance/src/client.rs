//! A thin blocking HTTP client for the `/v2/` API plus the few push operations that every
//! workflow needs for its setup.
//!
//! Every response goes through [`Client::send`], which reads the whole body and remembers
//! each JSON error body it saw, so the `errors` group can check them all at the end
//! (spec "Error Codes").

use std::cell::RefCell;
use std::time::Duration;

use reqwest::Method;
use reqwest::Url;
use reqwest::blocking::{Body, RequestBuilder};
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};

use crate::fixtures::{self, Image};
use crate::resp::Resp;

/// What the `errors` group looks back on at the end of the run.
#[derive(Default)]
pub struct Observed {
    /// 4xx/5xx responses whose body was JSON.
    pub error_bodies_seen: usize,
    /// Those of them that break the spec's error format: "METHOD path -> status: problem".
    pub bad_error_bodies: Vec<String>,
    /// Responses with a 5xx status.
    pub server_errors: Vec<String>,
    /// Responses whose body could not be read in full.
    pub broken_bodies: Vec<String>,
}

pub struct Client {
    base: Url,
    http: reqwest::blocking::Client,
    observed: RefCell<Observed>,
}

impl Client {
    pub fn new(registry: &str, timeout: Duration) -> Result<Client, String> {
        let base =
            Url::parse(registry).map_err(|e| format!("invalid --registry {registry:?}: {e}"))?;
        // Built without a TLS stack (reqwest with default features off): plain http only.
        if base.scheme() != "http" {
            return Err(format!(
                "--registry must be an http:// URL, got {registry:?}"
            ));
        }
        let http = reqwest::blocking::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            // The registry under test is local: never route it through an environment proxy.
            .no_proxy()
            .user_agent(concat!("berth-conformance/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build HTTP client: {e}"))?;
        Ok(Client {
            base,
            http,
            observed: RefCell::new(Observed::default()),
        })
    }

    /// Absolute URL for an API path such as `/v2/foo/tags/list`.
    pub fn url(&self, path: &str) -> String {
        match self.base.join(path) {
            Ok(u) => u.to_string(),
            Err(_) => format!("{}{}", self.base.as_str().trim_end_matches('/'), path),
        }
    }

    /// Resolves a `Location` (or `Link`) target, which MAY be absolute or relative
    /// (spec "POST then PUT": "the location MAY be absolute ... or it MAY be relative").
    pub fn resolve(&self, location: &str) -> Result<String, String> {
        self.base
            .join(location)
            .map(|u| u.to_string())
            .map_err(|e| format!("unusable Location {location:?}: {e}"))
    }

    pub fn request(&self, method: Method, url: &str) -> RequestBuilder {
        self.http.request(method, url)
    }

    pub fn get(&self, url: &str) -> RequestBuilder {
        self.request(Method::GET, url)
    }

    pub fn head(&self, url: &str) -> RequestBuilder {
        self.request(Method::HEAD, url)
    }

    pub fn delete(&self, url: &str) -> RequestBuilder {
        self.request(Method::DELETE, url)
    }

    /// A request with a body of known length and `Content-Type: application/octet-stream`.
    pub fn with_bytes(&self, method: Method, url: &str, body: Vec<u8>) -> RequestBuilder {
        self.request(method, url)
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, body.len())
            .body(body)
    }

    /// A request with an explicitly empty body (`Content-Length: 0`).
    pub fn empty(&self, method: Method, url: &str) -> RequestBuilder {
        self.request(method, url)
            .header(CONTENT_LENGTH, 0)
            .body(Body::from(Vec::new()))
    }

    /// Sends a request and reads the whole response.
    pub fn send(&self, req: RequestBuilder) -> Result<Resp, String> {
        let req = req
            .build()
            .map_err(|e| format!("cannot build request: {e}"))?;
        let method = req.method().clone();
        let url = req.url().to_string();
        let resp = self.http.execute(req).map_err(|e| {
            format!(
                "{method} {}: {}",
                crate::resp::short_path(&url),
                error_chain(&e.without_url())
            )
        })?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let (body, body_error) = match resp.bytes() {
            Ok(b) => (b.to_vec(), None),
            Err(e) => (Vec::new(), Some(error_chain(&e.without_url()))),
        };
        let resp = Resp {
            method,
            url,
            status,
            headers,
            body,
            body_error,
        };
        self.observe(&resp);
        Ok(resp)
    }

    /// Records error bodies, server errors and unreadable bodies for the `errors` group.
    fn observe(&self, resp: &Resp) {
        let what = format!(
            "{} {} -> {}",
            resp.method,
            crate::resp::short_path(&resp.url),
            resp.status
        );
        let mut seen = self.observed.borrow_mut();
        if resp.status >= 500 {
            seen.server_errors.push(what.clone());
        }
        if let Some(e) = &resp.body_error {
            seen.broken_bodies.push(format!("{what}: {e}"));
        }
        if resp.status >= 400 {
            if let Some(result) = crate::resp::validate_body(&resp.body) {
                seen.error_bodies_seen += 1;
                if let Err(problem) = result {
                    seen.bad_error_bodies.push(format!("{what}: {problem}"));
                }
            }
        }
    }

    pub fn observed(&self) -> std::cell::Ref<'_, Observed> {
        self.observed.borrow()
    }

    // ---- push operations used by setups (and by checks that only need them to succeed) ----

    /// end-4a: opens an upload session and returns its absolute location.
    pub fn start_upload(&self, repo: &str) -> Result<String, String> {
        let url = self.url(&format!("/v2/{repo}/blobs/uploads/"));
        let resp = self.send(self.empty(Method::POST, &url))?;
        crate::check::status(&resp, &[202])?;
        let loc = crate::check::header(&resp, "Location")?;
        self.resolve(loc)
    }

    /// end-4a + end-6: POST then PUT with the whole body; returns the digest.
    pub fn push_blob(&self, repo: &str, bytes: &[u8]) -> Result<String, String> {
        let digest = fixtures::sha256(bytes);
        let loc = self.start_upload(repo)?;
        let url = with_query(&loc, "digest", &digest);
        let resp = self.send(self.with_bytes(Method::PUT, &url, bytes.to_vec()))?;
        crate::check::status(&resp, &[201]).map_err(|e| format!("blob upload to {repo}: {e}"))?;
        Ok(digest)
    }

    /// end-7: PUT a manifest with the given Content-Type; expects 201.
    pub fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<Resp, String> {
        let resp = self.put_manifest(repo, reference, media_type, bytes.to_vec())?;
        crate::check::status(&resp, &[201])
            .map_err(|e| format!("manifest PUT {repo}:{reference}: {e}"))?;
        Ok(resp)
    }

    /// end-7 without any expectation on the outcome.
    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: Vec<u8>,
    ) -> Result<Resp, String> {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        self.send(
            self.request(Method::PUT, &url)
                .header(CONTENT_TYPE, media_type)
                .header(CONTENT_LENGTH, bytes.len())
                .body(bytes),
        )
    }

    /// Pushes an image's blobs and its manifest under `reference`.
    pub fn push_image(&self, repo: &str, image: &Image, reference: &str) -> Result<(), String> {
        self.push_blob(repo, &image.config)?;
        self.push_blob(repo, &image.layer)?;
        self.push_manifest(repo, reference, fixtures::OCI_MANIFEST, &image.manifest)?;
        Ok(())
    }

    /// end-3 GET with the manifest Accept list.
    pub fn get_manifest(&self, repo: &str, reference: &str) -> Result<Resp, String> {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        self.send(self.get(&url).header("Accept", fixtures::MANIFEST_ACCEPT))
    }

    /// end-3 HEAD with the manifest Accept list.
    pub fn head_manifest(&self, repo: &str, reference: &str) -> Result<Resp, String> {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        self.send(self.head(&url).header("Accept", fixtures::MANIFEST_ACCEPT))
    }

    /// end-2 HEAD.
    pub fn head_blob(&self, repo: &str, digest: &str) -> Result<Resp, String> {
        self.send(self.head(&self.url(&format!("/v2/{repo}/blobs/{digest}"))))
    }

    /// end-2 GET.
    pub fn get_blob(&self, repo: &str, digest: &str) -> Result<Resp, String> {
        self.send(self.get(&self.url(&format!("/v2/{repo}/blobs/{digest}"))))
    }
}

/// Adds `key=value` to a URL that may already carry a query (upload locations often do, e.g.
/// `?_state=...`). Values used here (digests, repository names, integers, tags) contain only
/// characters that are safe in a query, so they are appended verbatim as clients do.
pub fn with_query(url: &str, key: &str, value: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{key}={value}")
}

/// Percent-encodes a query value (for media types, whose `+` would otherwise read as a space).
pub fn encode_query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The error with its causes, on one line ("error sending request: connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}
