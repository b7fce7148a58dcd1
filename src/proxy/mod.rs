//! Berth's one client of other registries, over the OCI Distribution API with reqwest,
//! signed in with Basic credentials or the Docker token flow (a 401's `Bearer realm=…`
//! challenge, a token asked for the repository's scope, kept until it expires), bounded by
//! timeouts and the manifest size limit.
//!
//! - [`Upstreams`]: the pull-through cache's upstreams (reads only). A 429's `Retry-After`
//!   is honoured: the upstream is not asked again before it.
//! - [`Remote`]: one replication rule's remote registry, read and written: tags, catalog,
//!   referrers, blob HEAD, cross-repository mount, chunked uploads that can resume from the
//!   offset the remote acknowledged, manifest pushes.
//!
//! Only transport and the remote's answers live here; what is cached, copied and when is
//! the registry's ([`crate::registry`], `proxy.rs` and `replication/`), which calls this as
//! it calls the blob store.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt, stream::BoxStream};
use reqwest::{Method, RequestBuilder, Response, StatusCode, header};

use crate::{
    clock::Clock,
    config::{ProxyRule, Upstream},
    oci::{Digest, Hasher},
};

/// Why an upstream did not give what was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamError {
    /// Every upstream answered 404: the content is not there.
    NotFound,
    /// The upstream could not answer now (refused, timed out, rate-limited): a 503 to the
    /// client, with the message naming the upstream and what happened.
    Unavailable(String),
    /// The upstream answered, wrongly (refused credentials, content that is not what was
    /// asked): a 502 to the client.
    BadAnswer(String),
    /// The upstream failed with a 5xx: a 502 to the client; worth another try later.
    ServerError(String),
}

impl UpstreamError {
    /// Whether asking again later may succeed (refused connections, timeouts, 429, 5xx).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            UpstreamError::Unavailable(_) | UpstreamError::ServerError(_)
        )
    }
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamError::NotFound => f.write_str("not found upstream"),
            UpstreamError::Unavailable(m)
            | UpstreamError::BadAnswer(m)
            | UpstreamError::ServerError(m) => f.write_str(m),
        }
    }
}

/// A manifest as an upstream served it, its bytes untouched.
#[derive(Debug, Clone)]
pub struct UpstreamManifest {
    /// The digest of `payload` (checked against `Docker-Content-Digest` when sent).
    pub digest: Digest,
    /// The `Content-Type` the upstream sent.
    pub media_type: Option<String>,
    /// The bytes.
    pub payload: Bytes,
    /// The base URL of the upstream that served it.
    pub from: String,
}

/// A blob being read from an upstream.
pub struct UpstreamBlob {
    /// The length the upstream declared, if it did.
    pub size: Option<u64>,
    /// The bytes as they arrive; an error ends the stream.
    pub body: BoxStream<'static, Result<Bytes, String>>,
}

/// The manifest media types asked for (every kind Berth stores).
const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";

/// Clients of the upstreams of every rule, with their tokens and back-offs.
pub struct Upstreams {
    /// One client per timeout a rule sets, made when first needed (rules come and go
    /// through the API).
    clients: Mutex<HashMap<u64, reqwest::Client>>,
    link: Link,
}

/// What signing in to registries keeps between requests.
struct Link {
    /// Bearer tokens by (registry URL, scope), with when they stop being used.
    tokens: Mutex<HashMap<(String, String), (String, i64)>>,
    /// Registries that asked (429 with `Retry-After`) not to be called before a time, with
    /// what they answered; `None` where the caller does its own retrying.
    backoff: Option<Mutex<HashMap<String, (i64, String)>>>,
    /// The registry's clock (token lifetimes and back-offs are read on it).
    clock: Clock,
}

/// One request to a registry: where, what, and the scope its token must carry.
struct Call<'a> {
    method: Method,
    /// The path under the registry's URL, or a whole URL (an upload's `Location`).
    path: &'a str,
    /// The token scope, like `repository:library/alpine:pull`.
    scope: String,
    body: Option<Bytes>,
    headers: Vec<(header::HeaderName, String)>,
}

impl<'a> Call<'a> {
    fn new(method: Method, path: &'a str, scope: String) -> Call<'a> {
        Call {
            method,
            path,
            scope,
            body: None,
            headers: Vec::new(),
        }
    }

    fn pull(method: Method, path: &'a str, repo: &str) -> Call<'a> {
        Call::new(method, path, format!("repository:{repo}:pull"))
    }

    /// The GET of the blob at `path` in `repo` from byte `offset` on (a `Range` unless 0).
    fn blob(path: &'a str, repo: &str, offset: u64) -> Call<'a> {
        let call = Call::pull(Method::GET, path, repo);
        match offset {
            0 => call,
            _ => call.header(header::RANGE, format!("bytes={offset}-")),
        }
    }

    fn header(mut self, name: header::HeaderName, value: impl Into<String>) -> Call<'a> {
        self.headers.push((name, value.into()));
        self
    }

    fn body(mut self, body: Bytes) -> Call<'a> {
        self.body = Some(body);
        self
    }
}

fn http_client(timeout_secs: u64) -> reqwest::Result<reqwest::Client> {
    let timeout = Duration::from_secs(timeout_secs);
    reqwest::Client::builder()
        .connect_timeout(timeout)
        .read_timeout(timeout)
        .redirect(reqwest::redirect::Policy::limited(5))
        .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// The longest `Retry-After` honoured, so that a lying upstream cannot switch a rule off.
const RETRY_AFTER_MAX_SECS: u64 = 600;

impl Upstreams {
    /// Clients for `rules` (others are made when a rule needs one); fails only if TLS
    /// cannot be set up.
    pub fn new(rules: &[ProxyRule], clock: Clock) -> anyhow::Result<Upstreams> {
        let mut clients = HashMap::new();
        for rule in rules {
            clients.insert(rule.timeout_secs, http_client(rule.timeout_secs)?);
        }
        Ok(Upstreams {
            clients: Mutex::new(clients),
            link: Link {
                tokens: Mutex::default(),
                backoff: Some(Mutex::default()),
                clock,
            },
        })
    }

    /// The manifest `reference` (a tag or digest) of `repo`, from the first upstream of
    /// `rule` that has it; at most `max_bytes`, and hashing to `reference` when it is a digest.
    pub async fn manifest(
        &self,
        rule: &ProxyRule,
        repo: &str,
        reference: &str,
        max_bytes: usize,
    ) -> Result<UpstreamManifest, UpstreamError> {
        self.first_of(rule, |up| async move {
            let client = self.client(rule)?;
            self.link
                .manifest(&client, up, repo, reference, max_bytes)
                .await
        })
        .await
    }

    /// The digest the upstream's tag points at, asked with a HEAD (nothing downloaded).
    /// `None` when the upstream answers without `Docker-Content-Digest`.
    pub async fn manifest_digest(
        &self,
        rule: &ProxyRule,
        repo: &str,
        tag: &str,
    ) -> Result<Option<Digest>, UpstreamError> {
        self.first_of(rule, |up| async move {
            let path = format!("/v2/{repo}/manifests/{tag}");
            let response = self
                .link
                .send(
                    &self.client(rule)?,
                    up,
                    Call::pull(Method::HEAD, &path, repo),
                )
                .await?;
            Ok(header_str(&response, "docker-content-digest").and_then(|d| d.parse().ok()))
        })
        .await
    }

    /// Opens blob `digest` of `repo` from byte `offset` on, on the first upstream of `rule`
    /// that has it; `size` is the whole blob's. An upstream that ignores the range is a
    /// [`UpstreamError::BadAnswer`].
    pub async fn blob(
        &self,
        rule: &ProxyRule,
        repo: &str,
        digest: &Digest,
        offset: u64,
    ) -> Result<UpstreamBlob, UpstreamError> {
        self.first_of(rule, |up| async move {
            let path = format!("/v2/{repo}/blobs/{digest}");
            let call = Call::blob(&path, repo, offset);
            let response = self.link.send(&self.client(rule)?, up, call).await?;
            ranged_blob(up, response, digest, offset)
        })
        .await
    }

    /// Runs `attempt` on each upstream of `rule` in order until one succeeds; `NotFound`
    /// only when every one answered 404, else the last failure.
    async fn first_of<'a, T, F, Fut>(
        &self,
        rule: &'a ProxyRule,
        attempt: F,
    ) -> Result<T, UpstreamError>
    where
        F: Fn(&'a Upstream) -> Fut,
        Fut: Future<Output = Result<T, UpstreamError>>,
    {
        let mut failure = UpstreamError::NotFound;
        for up in &rule.upstreams {
            match attempt(up).await {
                Ok(found) => return Ok(found),
                Err(UpstreamError::NotFound) => {}
                Err(e) => {
                    tracing::warn!(upstream = %up.url, error = %e, "upstream failed");
                    failure = e;
                }
            }
        }
        Err(failure)
    }

    /// The client with `rule`'s timeouts (a clone shares its connections).
    fn client(&self, rule: &ProxyRule) -> Result<reqwest::Client, UpstreamError> {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = clients.get(&rule.timeout_secs) {
            return Ok(client.clone());
        }
        let client = http_client(rule.timeout_secs).map_err(|e| {
            UpstreamError::Unavailable(format!("no HTTP client for {}: {e}", rule.prefix))
        })?;
        clients.insert(rule.timeout_secs, client.clone());
        Ok(client)
    }
}

impl Link {
    /// Manifest `reference` of `repo` on `up`: at most `max_bytes`, hashing to `reference`
    /// when it is a digest, and to the digest the registry declared when it declared one.
    async fn manifest(
        &self,
        client: &reqwest::Client,
        up: &Upstream,
        repo: &str,
        reference: &str,
        max_bytes: usize,
    ) -> Result<UpstreamManifest, UpstreamError> {
        let path = format!("/v2/{repo}/manifests/{reference}");
        let response = self
            .send(client, up, Call::pull(Method::GET, &path, repo))
            .await?;
        let media_type = header_str(&response, header::CONTENT_TYPE);
        let declared = header_str(&response, "docker-content-digest");
        if response
            .content_length()
            .is_some_and(|l| l > max_bytes as u64)
        {
            return Err(bad(up, format!("sent a manifest over {max_bytes} bytes")));
        }
        let payload = read_bounded(response, max_bytes)
            .await
            .map_err(|e| bad(up, e))?;
        let digest = match reference.parse::<Digest>() {
            Ok(expected) => {
                let mut h = Hasher::new(expected.algorithm());
                h.update(&payload);
                let actual = h.finish();
                if actual != expected {
                    return Err(bad(
                        up,
                        format!("sent a manifest hashing to {actual} for {expected}"),
                    ));
                }
                actual
            }
            Err(_) => Digest::sha256_of(&payload),
        };
        if let Some(declared) = declared
            && declared.starts_with("sha256:")
            && declared != digest.as_str()
        {
            return Err(bad(
                up,
                format!("declared digest {declared} for a manifest hashing to {digest}"),
            ));
        }
        Ok(UpstreamManifest {
            digest,
            media_type,
            payload,
            from: up.url.clone(),
        })
    }

    /// Sends one request, signing in when challenged; a 2xx answer or the error it means.
    async fn send(
        &self,
        client: &reqwest::Client,
        up: &Upstream,
        call: Call<'_>,
    ) -> Result<Response, UpstreamError> {
        if let Some((until, answer)) = self.backing_off(&up.url) {
            return Err(UpstreamError::Unavailable(format!(
                "{answer}; not asked again for {} s",
                until - self.clock.now()
            )));
        }
        let url = if call.path.starts_with("http://") || call.path.starts_with("https://") {
            call.path.to_owned()
        } else {
            format!("{}{}", up.url, call.path)
        };
        let request = || {
            let mut r = client
                .request(call.method.clone(), &url)
                .header(header::ACCEPT, ACCEPT);
            for (name, value) in &call.headers {
                r = r.header(name, value);
            }
            if let Some(body) = &call.body {
                r = r.body(body.clone());
            }
            r
        };
        let key = (up.url.clone(), call.scope.clone());
        let token = up.bearer.clone().or_else(|| self.token(&key));
        let first = match &token {
            Some(token) => request().bearer_auth(token),
            None => request(),
        };
        let mut response = self.call(up, first).await?;
        if response.status() == StatusCode::UNAUTHORIZED && up.bearer.is_some() {
            return Err(UpstreamError::BadAnswer(format!(
                "upstream {} refused the bearer token: {}",
                up.url,
                response.status()
            )));
        }
        if response.status() == StatusCode::UNAUTHORIZED {
            let challenge = header_str(&response, header::WWW_AUTHENTICATE).unwrap_or_default();
            let again = if challenge.to_ascii_lowercase().starts_with("bearer") {
                let token = self.sign_in(client, up, &call.scope, &challenge).await?;
                request().bearer_auth(&token.0)
            } else if let Some((user, password)) = &up.credentials {
                request().basic_auth(user, Some(password))
            } else {
                return Err(UpstreamError::BadAnswer(format!(
                    "upstream {} asks for credentials, and none are configured",
                    up.url
                )));
            };
            response = self.call(up, again).await?;
        }
        match response.status() {
            s if s.is_success() => Ok(response),
            StatusCode::NOT_FOUND => Err(UpstreamError::NotFound),
            StatusCode::TOO_MANY_REQUESTS => {
                let wait = header_str(&response, header::RETRY_AFTER)
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(|w| w.min(RETRY_AFTER_MAX_SECS));
                let answer = format!(
                    "upstream {} answered 429 Too Many Requests{}",
                    up.url,
                    wait.map(|w| format!(" (retry after {w} s)"))
                        .unwrap_or_default()
                );
                if let (Some(wait), Some(backoff)) = (wait, &self.backoff) {
                    let until = self.clock.now() + wait as i64;
                    lock(backoff).insert(up.url.clone(), (until, answer.clone()));
                }
                Err(UpstreamError::Unavailable(answer))
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                lock(&self.tokens).remove(&key);
                Err(UpstreamError::BadAnswer(format!(
                    "upstream {} refused the credentials: {}",
                    up.url,
                    response.status()
                )))
            }
            s if s.is_server_error() => Err(UpstreamError::ServerError(format!(
                "upstream {} answered {s}",
                up.url
            ))),
            s => Err(UpstreamError::BadAnswer(format!(
                "upstream {} answered {s}",
                up.url
            ))),
        }
    }

    async fn call(
        &self,
        up: &Upstream,
        request: RequestBuilder,
    ) -> Result<Response, UpstreamError> {
        request.send().await.map_err(|e| {
            let what = if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                "could not be reached"
            } else if e.is_redirect() {
                "redirected too often"
            } else {
                "failed"
            };
            // reqwest's own message stops at "error sending request"; its causes say why
            UpstreamError::Unavailable(format!(
                "upstream {} {what}: {}",
                up.url,
                crate::error::with_causes(&e)
            ))
        })
    }

    /// Asks the realm of a Bearer `challenge` for a token of `scope` (with the upstream's
    /// credentials when configured) and keeps it.
    async fn sign_in(
        &self,
        client: &reqwest::Client,
        up: &Upstream,
        scope: &str,
        challenge: &str,
    ) -> Result<(String, i64), UpstreamError> {
        let params = challenge_params(challenge);
        let realm = params.get("realm").ok_or_else(|| {
            UpstreamError::BadAnswer(format!(
                "upstream {}: a Bearer challenge without realm",
                up.url
            ))
        })?;
        let mut query: Vec<(&str, String)> =
            scope.split(' ').map(|s| ("scope", s.to_owned())).collect();
        if let Some(service) = params.get("service") {
            query.push(("service", service.clone()));
        }
        let mut request = client.get(realm).query(&query);
        if let Some((user, password)) = &up.credentials {
            request = request.basic_auth(user, Some(password));
        }
        let response = self.call(up, request).await?;
        if !response.status().is_success() {
            let refused = matches!(
                response.status(),
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
            );
            return Err(UpstreamError::BadAnswer(format!(
                "upstream {}{}: its token endpoint answered {}",
                up.url,
                if refused {
                    " refused the credentials"
                } else {
                    ""
                },
                response.status()
            )));
        }
        #[derive(serde::Deserialize)]
        struct TokenAnswer {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let body = read_bounded(response, 64 * 1024)
            .await
            .map_err(|e| bad(up, e))?;
        let answer: TokenAnswer = serde_json::from_slice(&body)
            .map_err(|e| bad(up, format!("its token endpoint sent no token: {e}")))?;
        let token = answer
            .token
            .or(answer.access_token)
            .ok_or_else(|| bad(up, "its token endpoint sent no token".into()))?;
        // Used until shortly before it expires (60 s is the token spec's default).
        let life = answer.expires_in.unwrap_or(60).saturating_sub(10).max(1);
        let kept = (token, self.clock.now() + life as i64);
        lock(&self.tokens).insert((up.url.clone(), scope.to_owned()), kept.clone());
        Ok(kept)
    }

    fn token(&self, key: &(String, String)) -> Option<String> {
        let mut tokens = lock(&self.tokens);
        match tokens.get(key) {
            Some((token, until)) if *until > self.clock.now() => Some(token.clone()),
            Some(_) => {
                tokens.remove(key);
                None
            }
            None => None,
        }
    }

    fn backing_off(&self, url: &str) -> Option<(i64, String)> {
        let mut backoff = lock(self.backoff.as_ref()?);
        match backoff.get(url) {
            Some((until, answer)) if *until > self.clock.now() => Some((*until, answer.clone())),
            Some(_) => {
                backoff.remove(url);
                None
            }
            None => None,
        }
    }
}

/// A replication rule's remote registry, read and written.
pub struct Remote {
    client: reqwest::Client,
    up: Upstream,
    link: Link,
}

/// What a cross-repository mount request did.
pub enum Mount {
    /// The blob is now in the repository.
    Mounted,
    /// The remote did not mount it and opened an upload session instead (its `Location`).
    Session(String),
}

/// Manifests pushed with a `subject` tell whether the remote indexed it (`OCI-Subject`).
pub struct Pushed {
    /// The digest the remote says it stored.
    pub digest: Option<String>,
    /// The remote answered `OCI-Subject`: it serves the referrers API itself.
    pub subject_indexed: bool,
}

impl Remote {
    /// A client of the registry at `url` (no trailing slash) with optional Basic
    /// credentials (also what a token endpoint is asked with).
    pub fn new(
        url: &str,
        credentials: Option<(String, String)>,
        timeout_secs: u64,
        clock: Clock,
    ) -> anyhow::Result<Remote> {
        Ok(Remote {
            client: http_client(timeout_secs)?,
            up: Upstream {
                url: url.trim_end_matches('/').to_owned(),
                credentials,
                bearer: None,
            },
            link: Link {
                tokens: Mutex::default(),
                backoff: None,
                clock,
            },
        })
    }

    /// The same client, sending `token` as `Authorization: Bearer` on every request (a
    /// registry's static access token) instead of Basic credentials or the token flow.
    pub fn with_bearer(mut self, token: String) -> Remote {
        self.up.bearer = Some(token);
        self
    }

    /// The registry's base URL.
    pub fn url(&self) -> &str {
        &self.up.url
    }

    async fn send(&self, call: Call<'_>) -> Result<Response, UpstreamError> {
        self.link.send(&self.client, &self.up, call).await
    }

    fn push_scope(repo: &str) -> String {
        format!("repository:{repo}:pull,push")
    }

    /// Asks `/v2/` (signing in as a token endpoint asks): reachable, and the credentials
    /// are taken.
    pub async fn ping(&self) -> Result<(), UpstreamError> {
        self.send(Call::new(Method::GET, "/v2/", "registry:catalog:*".into()))
            .await
            .map(drop)
    }

    /// Manifest `reference` of `repo` (see [`Upstreams::manifest`] for what is checked).
    pub async fn manifest(
        &self,
        repo: &str,
        reference: &str,
        max_bytes: usize,
    ) -> Result<UpstreamManifest, UpstreamError> {
        self.link
            .manifest(&self.client, &self.up, repo, reference, max_bytes)
            .await
    }

    /// Where `reference` of `repo` points (a HEAD; `None` when the remote does not have
    /// it). A remote that answers without `Docker-Content-Digest` is asked with a GET.
    pub async fn manifest_digest(
        &self,
        repo: &str,
        reference: &str,
        max_bytes: usize,
    ) -> Result<Option<Digest>, UpstreamError> {
        let path = format!("/v2/{repo}/manifests/{reference}");
        match self.send(Call::pull(Method::HEAD, &path, repo)).await {
            Ok(response) => {
                if let Some(d) =
                    header_str(&response, "docker-content-digest").and_then(|d| d.parse().ok())
                {
                    return Ok(Some(d));
                }
                Ok(Some(
                    self.manifest(repo, reference, max_bytes).await?.digest,
                ))
            }
            Err(UpstreamError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Opens blob `digest` of `repo` from byte `offset` on; `size` is the whole blob's. A
    /// remote that ignores the range is a [`UpstreamError::BadAnswer`].
    pub async fn blob(
        &self,
        repo: &str,
        digest: &Digest,
        offset: u64,
    ) -> Result<UpstreamBlob, UpstreamError> {
        let path = format!("/v2/{repo}/blobs/{digest}");
        let response = self.send(Call::blob(&path, repo, offset)).await?;
        ranged_blob(&self.up, response, digest, offset)
    }

    /// The size of blob `digest` in `repo` (a HEAD), `None` when it is not there.
    pub async fn blob_size(
        &self,
        repo: &str,
        digest: &Digest,
    ) -> Result<Option<u64>, UpstreamError> {
        let path = format!("/v2/{repo}/blobs/{digest}");
        match self.send(Call::pull(Method::HEAD, &path, repo)).await {
            Ok(response) => Ok(Some(
                header_str(&response, header::CONTENT_LENGTH)
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(0),
            )),
            Err(UpstreamError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Asks for blob `digest` of repository `from` to be mounted into `repo`.
    pub async fn mount(
        &self,
        repo: &str,
        digest: &Digest,
        from: &str,
    ) -> Result<Mount, UpstreamError> {
        let path = format!("/v2/{repo}/blobs/uploads/?mount={digest}&from={from}");
        let scope = format!("{} repository:{from}:pull", Remote::push_scope(repo));
        let response = self.send(Call::new(Method::POST, &path, scope)).await?;
        if response.status() == StatusCode::CREATED {
            return Ok(Mount::Mounted);
        }
        Ok(Mount::Session(self.location(&response)?))
    }

    /// Opens an upload session in `repo`; its `Location`.
    pub async fn start_upload(&self, repo: &str) -> Result<String, UpstreamError> {
        let path = format!("/v2/{repo}/blobs/uploads/");
        let response = self
            .send(Call::new(Method::POST, &path, Remote::push_scope(repo)))
            .await?;
        self.location(&response)
    }

    /// Sends `chunk` at `offset` of session `location`; the session's next `Location`.
    pub async fn upload_chunk(
        &self,
        repo: &str,
        location: &str,
        offset: u64,
        chunk: Bytes,
    ) -> Result<String, UpstreamError> {
        let end = offset + chunk.len() as u64 - 1;
        let call = Call::new(Method::PATCH, location, Remote::push_scope(repo))
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(header::CONTENT_RANGE, format!("{offset}-{end}"))
            .body(chunk);
        let response = self.send(call).await?;
        self.location(&response)
    }

    /// The bytes session `location` holds, as the remote acknowledges them (its `Range`).
    pub async fn upload_offset(&self, repo: &str, location: &str) -> Result<u64, UpstreamError> {
        let response = self
            .send(Call::new(Method::GET, location, Remote::push_scope(repo)))
            .await?;
        let range = header_str(&response, header::RANGE).unwrap_or_default();
        Ok(range
            .rsplit_once('-')
            .and_then(|(_, end)| end.parse::<u64>().ok())
            .map_or(0, |end| end + 1))
    }

    /// Ends session `location` as blob `digest`.
    pub async fn finish_upload(
        &self,
        repo: &str,
        location: &str,
        digest: &Digest,
    ) -> Result<(), UpstreamError> {
        let separator = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{separator}digest={digest}");
        self.send(Call::new(Method::PUT, &url, Remote::push_scope(repo)))
            .await
            .map(drop)
    }

    /// Pushes a manifest byte for byte under `reference` (a tag or its digest).
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        payload: Bytes,
    ) -> Result<Pushed, UpstreamError> {
        let path = format!("/v2/{repo}/manifests/{reference}");
        let call = Call::new(Method::PUT, &path, Remote::push_scope(repo))
            .header(header::CONTENT_TYPE, media_type)
            .body(payload);
        let response = self.send(call).await?;
        Ok(Pushed {
            digest: header_str(&response, "docker-content-digest"),
            subject_indexed: response.headers().contains_key("oci-subject"),
        })
    }

    /// Deletes manifest or tag `reference` of `repo`.
    pub async fn delete_manifest(&self, repo: &str, reference: &str) -> Result<(), UpstreamError> {
        let path = format!("/v2/{repo}/manifests/{reference}");
        self.send(Call::new(Method::DELETE, &path, Remote::push_scope(repo)))
            .await
            .map(drop)
    }

    /// Every tag of `repo` (following the `Link` pages); none when it does not exist.
    pub async fn tags(&self, repo: &str) -> Result<Vec<String>, UpstreamError> {
        #[derive(serde::Deserialize)]
        struct Tags {
            tags: Option<Vec<String>>,
        }
        let mut all = Vec::new();
        let mut path = format!("/v2/{repo}/tags/list?n=1000");
        for _ in 0..PAGES_MAX {
            let response = match self.send(Call::pull(Method::GET, &path, repo)).await {
                Ok(r) => r,
                Err(UpstreamError::NotFound) => return Ok(all),
                Err(e) => return Err(e),
            };
            let next = next_link(&response);
            let body = read_bounded(response, LISTING_MAX)
                .await
                .map_err(|e| bad(&self.up, e))?;
            let page: Tags = serde_json::from_slice(&body).map_err(|e| {
                bad(
                    &self.up,
                    format!("sent a tag list that does not parse: {e}"),
                )
            })?;
            all.extend(page.tags.unwrap_or_default());
            match next {
                Some(next) => path = next,
                None => break,
            }
        }
        Ok(all)
    }

    /// Every repository of the remote's catalog.
    pub async fn catalog(&self) -> Result<Vec<String>, UpstreamError> {
        #[derive(serde::Deserialize)]
        struct Catalog {
            repositories: Option<Vec<String>>,
        }
        let mut all = Vec::new();
        let mut path = "/v2/_catalog?n=1000".to_owned();
        for _ in 0..PAGES_MAX {
            let response = self
                .send(Call::new(Method::GET, &path, "registry:catalog:*".into()))
                .await?;
            let next = next_link(&response);
            let body = read_bounded(response, LISTING_MAX)
                .await
                .map_err(|e| bad(&self.up, e))?;
            let page: Catalog = serde_json::from_slice(&body)
                .map_err(|e| bad(&self.up, format!("sent a catalog that does not parse: {e}")))?;
            all.extend(page.repositories.unwrap_or_default());
            match next {
                Some(next) => path = next,
                None => break,
            }
        }
        Ok(all)
    }

    /// The descriptors of the manifests referring to `digest` in `repo` through the
    /// referrers API; `None` when the remote does not serve it (404).
    pub async fn referrers(
        &self,
        repo: &str,
        digest: &Digest,
    ) -> Result<Option<Vec<serde_json::Value>>, UpstreamError> {
        let path = format!("/v2/{repo}/referrers/{digest}");
        let response = match self.send(Call::pull(Method::GET, &path, repo)).await {
            Ok(r) => r,
            Err(UpstreamError::NotFound) => return Ok(None),
            Err(e) => return Err(e),
        };
        let is_index = header_str(&response, header::CONTENT_TYPE)
            .is_some_and(|t| t.starts_with("application/vnd.oci.image.index.v1+json"));
        let body = read_bounded(response, LISTING_MAX)
            .await
            .map_err(|e| bad(&self.up, e))?;
        if !is_index {
            return Ok(None);
        }
        let index: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| bad(&self.up, format!("sent referrers that do not parse: {e}")))?;
        Ok(Some(
            index["manifests"].as_array().cloned().unwrap_or_default(),
        ))
    }

    /// The `Location` of an answer, absolute.
    fn location(&self, response: &Response) -> Result<String, UpstreamError> {
        let location = header_str(response, header::LOCATION)
            .ok_or_else(|| bad(&self.up, "answered without a Location".into()))?;
        Ok(if location.starts_with('/') {
            format!("{}{location}", self.up.url)
        } else {
            location
        })
    }
}

/// Pages of a tag list or catalog followed at most.
const PAGES_MAX: usize = 1000;
/// The largest page of a listing read.
const LISTING_MAX: usize = 16 * 1024 * 1024;

/// The target of a `Link: <…>; rel="next"` header.
fn next_link(response: &Response) -> Option<String> {
    let link = header_str(response, header::LINK)?;
    let (target, params) = link.split_once(';')?;
    params.contains("rel=\"next\"").then(|| {
        target
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .to_owned()
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Blob `digest` as `response` from `up` carries it from byte `offset` on (a call of
/// [`Call::blob`]); an answer that ignored the range is a [`UpstreamError::BadAnswer`].
fn ranged_blob(
    up: &Upstream,
    response: Response,
    digest: &Digest,
    offset: u64,
) -> Result<UpstreamBlob, UpstreamError> {
    if offset > 0 && response.status() != StatusCode::PARTIAL_CONTENT {
        return Err(bad(up, format!("ignored the range of {digest}")));
    }
    let size = response.content_length().map(|rest| offset + rest);
    let url = up.url.clone();
    let body = response
        .bytes_stream()
        .map_err(move |e| format!("{url}: the blob's body broke off: {e}"))
        .boxed();
    Ok(UpstreamBlob { size, body })
}

fn bad(up: &Upstream, what: String) -> UpstreamError {
    UpstreamError::BadAnswer(format!("upstream {} {what}", up.url))
}

fn header_str(response: &Response, name: impl header::AsHeaderName) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The body of `response`, refused past `max` bytes (an endless body cannot fill memory).
async fn read_bounded(response: Response, max: usize) -> Result<Bytes, String> {
    let mut body = BytesMut::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| format!("broke off its answer: {e}"))?;
        if body.len() + chunk.len() > max {
            return Err(format!("sent an answer over {max} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The `key="value"` parameters of a `WWW-Authenticate` challenge.
fn challenge_params(challenge: &str) -> HashMap<String, String> {
    let rest = challenge
        .split_once(' ')
        .map(|(_, rest)| rest)
        .unwrap_or("");
    let mut params = HashMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let value: String = if chars.peek() == Some(&'"') {
            chars.next();
            chars.by_ref().take_while(|c| *c != '"').collect()
        } else {
            chars.by_ref().take_while(|c| *c != ',').collect()
        };
        params.insert(key.trim().to_ascii_lowercase(), value);
    }
    params
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_docker_hub_challenge() {
        let p = challenge_params(
            "Bearer realm=\"https://auth.docker.io/token\",service=\"registry.docker.io\",scope=\"repository:library/alpine:pull\"",
        );
        assert_eq!(p["realm"], "https://auth.docker.io/token");
        assert_eq!(p["service"], "registry.docker.io");
        assert_eq!(p["scope"], "repository:library/alpine:pull");
    }
}
