//! The client of the commands that run against a server (`repo`, `image`, `tag`, `stats`,
//! `policy`): where the server is, the credentials to present, and `/api/v1` calls whose
//! JSON problems become errors reading `<message> (<code>)`.
//!
//! A personal or deploy token is presented as `/api/v1` takes it: Basic, with the login name
//! it belongs to (`--user`/`BERTH_USER`, or `BERTH_TOKEN=NAME:TOKEN`). Any other token (a
//! registry access token from `/token`) is sent as `Bearer`.

use std::path::PathBuf;

use anyhow::{Context, anyhow, bail};
use base64::Engine as _;
use reqwest::{Method, StatusCode, header};
use serde::Deserialize;
use serde_json::value::RawValue;

/// The prefix of the secrets of personal and deploy tokens.
const TOKEN_PREFIX: &str = "berth_";
/// The largest page `/api/v1` serves.
const PAGE_MAX: usize = 1000;

/// Where the server is, who is asking, and how to print: the flags of every remote command.
#[derive(clap::Args)]
#[command(next_help_heading = "Server and output")]
pub(super) struct RemoteArgs {
    /// The server's URL.
    #[arg(
        long,
        value_name = "URL",
        env = "BERTH_REGISTRY",
        default_value = "http://127.0.0.1:5000",
        global = true
    )]
    registry: String,
    /// A file whose first line is the token (instead of the BERTH_TOKEN variable).
    #[arg(long, value_name = "FILE", global = true)]
    token_file: Option<PathBuf>,
    /// The login name of a personal or deploy token (or give BERTH_TOKEN as NAME:TOKEN).
    #[arg(long, value_name = "NAME", env = "BERTH_USER", global = true)]
    user: Option<String>,
    /// Accept any TLS certificate of the server (for tests: anyone in between can read the
    /// token).
    #[arg(long, global = true)]
    insecure: bool,
    /// A PEM certificate to trust beside the system's, e.g. a private CA.
    #[arg(long, value_name = "FILE", global = true)]
    ca_cert: Option<PathBuf>,
    /// Print the server's JSON, unchanged, instead of a table.
    #[arg(long, global = true)]
    pub(super) json: bool,
    /// Rows asked for per request of a listing (smaller pages answer sooner).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 100,
        hide = true,
        global = true
    )]
    page_size: usize,
}

/// A connection to one server's `/api/v1`, with the caller's credentials.
pub(super) struct Remote {
    /// The server's URL without a trailing slash.
    base: String,
    http: reqwest::Client,
    authorization: Option<header::HeaderValue>,
    /// Rows asked for per page of a listing.
    page_size: usize,
}

/// A listing gathered from its pages: the items as the server wrote them, and the cursor
/// where it would go on when the rows asked for ended before the listing did.
#[derive(Deserialize)]
pub(super) struct Listing {
    /// The entries, each exactly as served.
    pub(super) items: Vec<Box<RawValue>>,
    /// The cursor of the rest, if any.
    #[serde(default)]
    pub(super) next: Option<String>,
}

impl Listing {
    /// The listing as one page of the API: `{"items": [...], "next"?: "..."}`.
    pub(super) fn to_json(&self) -> String {
        let items: Vec<&str> = self.items.iter().map(|i| i.get()).collect();
        let mut out = format!("{{\"items\":[{}]", items.join(","));
        if let Some(next) = &self.next {
            out.push_str(",\"next\":");
            out.push_str(&serde_json::Value::from(next.as_str()).to_string());
        }
        out.push('}');
        out
    }

    /// Each item read as `T` (the fields a table shows).
    pub(super) fn parse<T: serde::de::DeserializeOwned>(&self) -> anyhow::Result<Vec<T>> {
        self.items
            .iter()
            .map(|i| serde_json::from_str(i.get()).context("reading the server's answer"))
            .collect()
    }
}

/// The JSON problem of `/api/v1`.
#[derive(Deserialize)]
struct Problem {
    error: ProblemDetail,
}

#[derive(Deserialize)]
struct ProblemDetail {
    code: String,
    message: String,
}

impl RemoteArgs {
    /// The token from `--token-file` or `BERTH_TOKEN`, if either is given.
    fn token(&self) -> anyhow::Result<Option<String>> {
        if let Some(path) = &self.token_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("--token-file: cannot read {}", path.display()))?;
            let token = text.lines().next().unwrap_or("").trim().to_owned();
            if token.is_empty() {
                bail!("--token-file: {} holds no token", path.display());
            }
            return Ok(Some(token));
        }
        Ok(std::env::var("BERTH_TOKEN")
            .ok()
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty()))
    }

    /// The `Authorization` header the token makes, if there is a token.
    fn authorization(&self) -> anyhow::Result<Option<String>> {
        let Some(token) = self.token()? else {
            return Ok(None);
        };
        let basic = |user: &str, secret: &str| {
            let pair = format!("{user}:{secret}");
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            )
        };
        if let Some((user, secret)) = token.split_once(':') {
            return Ok(Some(basic(user, secret)));
        }
        match &self.user {
            Some(user) if !user.is_empty() => Ok(Some(basic(user, &token))),
            _ if token.starts_with(TOKEN_PREFIX) => bail!(
                "a personal or deploy token is presented with its login name: give --user \
                 (or BERTH_USER), or set BERTH_TOKEN to NAME:TOKEN"
            ),
            _ => Ok(Some(format!("Bearer {token}"))),
        }
    }
}

impl Remote {
    /// A client for the server `args` name, with their credentials.
    pub(super) fn new(args: &RemoteArgs) -> anyhow::Result<Remote> {
        let url = url::Url::parse(&args.registry)
            .map_err(|e| anyhow!("--registry {:?} is not a URL: {e}", args.registry))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            bail!(
                "--registry {:?}: give the server as http://HOST[:PORT] or https://HOST[:PORT]",
                args.registry
            );
        }
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .danger_accept_invalid_certs(args.insecure);
        if let Some(path) = &args.ca_cert {
            let pem = std::fs::read(path)
                .with_context(|| format!("--ca-cert: cannot read {}", path.display()))?;
            let not_pem = || format!("--ca-cert: {} holds no PEM certificate", path.display());
            let certificates = reqwest::Certificate::from_pem_bundle(&pem).with_context(not_pem)?;
            if certificates.is_empty() {
                bail!(not_pem());
            }
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let authorization = args
            .authorization()?
            .map(|value| {
                let mut value = header::HeaderValue::from_str(&value)
                    .map_err(|_| anyhow!("the token holds characters a header cannot"))?;
                value.set_sensitive(true);
                Ok::<_, anyhow::Error>(value)
            })
            .transpose()?;
        Ok(Remote {
            base: url.as_str().trim_end_matches('/').to_owned(),
            http: builder.build().context("setting up the HTTP client")?,
            authorization,
            page_size: args.page_size.clamp(1, PAGE_MAX),
        })
    }

    /// Sends a request to `/api/v1{path}` and returns the status and body of a success; a
    /// refusal is an error carrying the server's message and code.
    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<(StatusCode, String)> {
        let url = format!("{}/api/v1{path}", self.base);
        let mut request = self.http.request(method, &url).query(query);
        if let Some(authorization) = &self.authorization {
            request = request.header(header::AUTHORIZATION, authorization.clone());
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| self.unreachable(&e))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| anyhow!("reading the answer of {url}: {}", root_cause(&e)))?;
        if status.is_success() {
            return Ok((status, text));
        }
        Err(self.refusal(status, &text))
    }

    /// Why a request got no answer, naming the server.
    fn unreachable(&self, e: &reqwest::Error) -> anyhow::Error {
        let cause = root_cause(e);
        if cause.contains("certificate") {
            anyhow!(
                "cannot connect to {}: {cause} (trust its CA with --ca-cert FILE)",
                self.base
            )
        } else if e.is_connect() {
            anyhow!(
                "cannot connect to {} ({cause}); is Berth serving there? (--registry, \
                 BERTH_REGISTRY)",
                self.base
            )
        } else {
            anyhow!("no answer from {}: {cause}", self.base)
        }
    }

    /// A refusal as an error: the JSON problem's `<message> (<code>)`, else the status.
    fn refusal(&self, status: StatusCode, body: &str) -> anyhow::Error {
        let Ok(problem) = serde_json::from_str::<Problem>(body) else {
            let first_line = body.lines().next().unwrap_or("").trim();
            return anyhow!("{} answered {status}: {first_line}", self.base);
        };
        let ProblemDetail { code, message } = problem.error;
        if status == StatusCode::UNAUTHORIZED && self.authorization.is_none() {
            anyhow!("{message} ({code}): no token was given; set BERTH_TOKEN or --token-file")
        } else {
            anyhow!("{message} ({code})")
        }
    }

    /// `GET /api/v1{path}`: the body as served.
    pub(super) async fn get_text(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> anyhow::Result<String> {
        Ok(self.send(Method::GET, path, query, None).await?.1)
    }

    /// A request with a JSON body (or none): the body of the answer as served.
    pub(super) async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<String> {
        Ok(self.send(method, path, query, body).await?.1)
    }

    /// Up to `limit` items of a listing, following its `next` cursors page after page.
    pub(super) async fn list(
        &self,
        path: &str,
        query: &[(&str, String)],
        limit: usize,
    ) -> anyhow::Result<Listing> {
        if limit == 0 {
            bail!("--limit: at least 1 row");
        }
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let wanted = limit.saturating_sub(items.len()).clamp(1, self.page_size);
            let mut page_query = query.to_vec();
            page_query.push(("limit", wanted.to_string()));
            if let Some(cursor) = &cursor {
                page_query.push(("cursor", cursor.clone()));
            }
            let text = self.get_text(path, &page_query).await?;
            let page: Listing =
                serde_json::from_str(&text).context("reading a page of the listing")?;
            items.extend(page.items);
            cursor = page.next;
            if cursor.is_none() || items.len() >= limit {
                break;
            }
        }
        Ok(Listing {
            items,
            next: cursor,
        })
    }
}

/// The innermost cause of an error: "connection refused", not "error sending request".
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

/// Prints text the server answered, ending with one line break.
pub(super) fn print_raw(text: &str) {
    println!("{}", text.trim_end());
}

/// `name` as a path segment (repository names keep their slashes; nothing else in a name,
/// tag or digest needs escaping, but a policy name is anyone's text).
pub(super) fn segment(name: &str) -> String {
    percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_prints_as_one_page() {
        let listing: Listing =
            serde_json::from_str(r#"{"items":[{"b":1,"a":2}, {"c":[]}],"next":"x/y"}"#).unwrap();
        assert_eq!(
            listing.to_json(),
            r#"{"items":[{"b":1,"a":2},{"c":[]}],"next":"x/y"}"#
        );
    }

    #[test]
    fn policy_names_are_escaped_in_paths() {
        assert_eq!(segment("keep 5/ci"), "keep%205%2Fci");
    }
}
