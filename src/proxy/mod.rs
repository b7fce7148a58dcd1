//! The pull-through cache's client of upstream registries: manifests and blobs read over
//! the OCI Distribution API with reqwest, signed in with Basic credentials or the Docker
//! token flow (a 401's `Bearer realm=…` challenge, a token asked for the repository's pull
//! scope, kept until it expires), bounded by the rule's timeouts and the manifest size
//! limit. A 429's `Retry-After` is honoured: the upstream is not asked again before it.
//!
//! Only transport and the upstream's answers live here; what is cached and when is the
//! registry's ([`crate::registry`], `proxy.rs`), which calls this as it calls the blob store.

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
    /// The upstream answered, wrongly (5xx, refused credentials, content that is not what
    /// was asked): a 502 to the client.
    BadAnswer(String),
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamError::NotFound => f.write_str("not found upstream"),
            UpstreamError::Unavailable(m) | UpstreamError::BadAnswer(m) => f.write_str(m),
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
    /// One client per rule (its timeouts), by prefix.
    clients: HashMap<String, reqwest::Client>,
    /// Bearer tokens by (upstream URL, repository), with when they stop being used.
    tokens: Mutex<HashMap<(String, String), (String, i64)>>,
    /// Upstreams that asked (429 with `Retry-After`) not to be called before a time, with
    /// what they answered.
    backoff: Mutex<HashMap<String, (i64, String)>>,
    /// The registry's clock (token lifetimes and back-offs are read on it).
    clock: Clock,
}

/// The longest `Retry-After` honoured, so that a lying upstream cannot switch a rule off.
const RETRY_AFTER_MAX_SECS: u64 = 600;

impl Upstreams {
    /// Clients for `rules`; fails only if TLS cannot be set up.
    pub fn new(rules: &[ProxyRule], clock: Clock) -> anyhow::Result<Upstreams> {
        let mut clients = HashMap::new();
        for rule in rules {
            let timeout = Duration::from_secs(rule.timeout_secs);
            let client = reqwest::Client::builder()
                .connect_timeout(timeout)
                .read_timeout(timeout)
                .redirect(reqwest::redirect::Policy::limited(5))
                .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
                .build()?;
            clients.insert(rule.prefix.clone(), client);
        }
        Ok(Upstreams {
            clients,
            tokens: Mutex::default(),
            backoff: Mutex::default(),
            clock,
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
            let path = format!("/v2/{repo}/manifests/{reference}");
            let response = self.send(rule, up, repo, Method::GET, &path).await?;
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
            let response = self.send(rule, up, repo, Method::HEAD, &path).await?;
            Ok(header_str(&response, "docker-content-digest").and_then(|d| d.parse().ok()))
        })
        .await
    }

    /// Opens blob `digest` of `repo` on the first upstream of `rule` that has it.
    pub async fn blob(
        &self,
        rule: &ProxyRule,
        repo: &str,
        digest: &Digest,
    ) -> Result<UpstreamBlob, UpstreamError> {
        self.first_of(rule, |up| async move {
            let path = format!("/v2/{repo}/blobs/{digest}");
            let response = self.send(rule, up, repo, Method::GET, &path).await?;
            let size = response.content_length();
            let url = up.url.clone();
            let body = response
                .bytes_stream()
                .map_err(move |e| format!("upstream {url}: the blob's body broke off: {e}"))
                .boxed();
            Ok(UpstreamBlob { size, body })
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

    /// Sends one request, signing in when challenged; a 2xx answer or the error it means.
    async fn send(
        &self,
        rule: &ProxyRule,
        up: &Upstream,
        repo: &str,
        method: Method,
        path: &str,
    ) -> Result<Response, UpstreamError> {
        if let Some((until, answer)) = self.backing_off(&up.url) {
            return Err(UpstreamError::Unavailable(format!(
                "{answer}; not asked again for {} s",
                until - self.clock.now()
            )));
        }
        let client = self
            .clients
            .get(&rule.prefix)
            .ok_or_else(|| UpstreamError::BadAnswer(format!("no client for {}", rule.prefix)))?;
        let url = format!("{}{path}", up.url);
        let request = || {
            client
                .request(method.clone(), &url)
                .header(header::ACCEPT, ACCEPT)
        };
        let key = (up.url.clone(), repo.to_owned());
        let token = self.token(&key);
        let first = match &token {
            Some(token) => request().bearer_auth(token),
            None => request(),
        };
        let mut response = self.call(up, first).await?;
        if response.status() == StatusCode::UNAUTHORIZED {
            let challenge = header_str(&response, header::WWW_AUTHENTICATE).unwrap_or_default();
            let again = if challenge.to_ascii_lowercase().starts_with("bearer") {
                let token = self.sign_in(client, up, repo, &challenge).await?;
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
                if let Some(wait) = wait {
                    let until = self.clock.now() + wait as i64;
                    lock(&self.backoff).insert(up.url.clone(), (until, answer.clone()));
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
            UpstreamError::Unavailable(format!("upstream {} {what}: {e}", up.url))
        })
    }

    /// Asks the realm of a Bearer `challenge` for a token to pull `repo` (with the
    /// upstream's credentials when configured) and keeps it.
    async fn sign_in(
        &self,
        client: &reqwest::Client,
        up: &Upstream,
        repo: &str,
        challenge: &str,
    ) -> Result<(String, i64), UpstreamError> {
        let params = challenge_params(challenge);
        let realm = params.get("realm").ok_or_else(|| {
            UpstreamError::BadAnswer(format!(
                "upstream {}: a Bearer challenge without realm",
                up.url
            ))
        })?;
        let mut query = vec![("scope", format!("repository:{repo}:pull"))];
        if let Some(service) = params.get("service") {
            query.push(("service", service.clone()));
        }
        let mut request = client.get(realm).query(&query);
        if let Some((user, password)) = &up.credentials {
            request = request.basic_auth(user, Some(password));
        }
        let response = self.call(up, request).await?;
        if !response.status().is_success() {
            return Err(UpstreamError::BadAnswer(format!(
                "upstream {}: its token endpoint answered {}",
                up.url,
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
        lock(&self.tokens).insert((up.url.clone(), repo.to_owned()), kept.clone());
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
        let mut backoff = lock(&self.backoff);
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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
