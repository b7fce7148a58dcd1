//! One handler per page of the UI, each with its template's view: the figures are turned
//! into text for people here (sizes, dates), the templates only lay them out and escape
//! them. Every page reads through the viewer's own access: listings through the catalog
//! viewer `/api/v1` uses, single repositories through the same pull grant; a repository the
//! viewer may not read is answered exactly as one that does not exist.

use std::net::SocketAddr;

use askama::Template;
use axum::{
    Form,
    extract::{ConnectInfo, Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
};
use serde::Deserialize;

use super::{UiError, Viewer, format, html, session::SESSION_COOKIE};
use crate::{
    auth::{TokenRequest, sessions::SESSION_SECS},
    error::Error,
    meta::repositories::{RepositoryOrder, RepositoryQuery},
    oci::{Digest, RepoName},
    registry::{Interval, SeveritySummary, TagCursor, TagSort},
    state::AppState,
};

/// Rows per page of the listings.
const PAGE_ROWS: u32 = 50;
/// Days the overview's trend covers.
const TREND_DAYS: i64 = 30;

/// A page's result: the page, or an error page in the layout.
pub(super) type PageResult = Result<Response, Response>;

/// What the layout shows around every page.
pub struct Layout {
    /// The page's own title (the document's is "{title} · Berth").
    pub title: String,
    /// The navigation entry to mark: `overview`, `repositories`, `tokens` or "".
    pub nav: &'static str,
    /// The signed-in user's name, "" for anonymous.
    pub user: String,
    /// Signed in with a session (a sign-out button).
    pub signed_in: bool,
    /// Sign-in exists (auth enabled).
    pub auth_enabled: bool,
    /// An administrator (the maintenance page).
    pub admin: bool,
    /// The CSRF token of the forms.
    pub csrf: String,
}

impl Viewer {
    /// The layout of a page titled `title` for this viewer.
    pub(super) fn layout(&self, title: &str, nav: &'static str) -> Layout {
        Layout {
            title: title.to_owned(),
            nav,
            user: self.display_name().to_owned(),
            signed_in: self.signed_in(),
            auth_enabled: self.auth_enabled,
            admin: self.identity.admin,
            csrf: self.csrf.clone(),
        }
    }
}

/// The rendered page, with the pre-session CSRF cookie when this viewer has none yet.
pub(super) fn render(viewer: &Viewer, template: &impl Template) -> Response {
    let mut response = html(template);
    if let Some(token) = &viewer.new_csrf_cookie {
        let cookie = viewer.cookie(super::session::CSRF_COOKIE, token, None);
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Turns an error into its page for `viewer`.
pub(super) fn fail(viewer: &Viewer) -> impl Fn(UiError) -> Response + '_ {
    move |e| e.page(viewer)
}

// ------------------------------------------------------------------------ error

#[derive(Template)]
#[template(path = "error.html")]
pub(super) struct ErrorPage {
    pub layout: Layout,
    pub message: String,
}

// ------------------------------------------------------------------------ sign-in

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    layout: Layout,
    username: String,
    error: String,
}

pub(super) async fn login_form(viewer: Viewer) -> Response {
    if viewer.signed_in() || !viewer.auth_enabled {
        return Redirect::to("/ui/").into_response();
    }
    render(
        &viewer,
        &LoginPage {
            layout: viewer.layout("Sign in", ""),
            username: String::new(),
            error: String::new(),
        },
    )
}

#[derive(Deserialize)]
pub(super) struct LoginForm {
    csrf: String,
    username: String,
    password: String,
}

pub(super) async fn login(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    viewer: Viewer,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> PageResult {
    viewer
        .check_form(&headers, &form.csrf)
        .map_err(fail(&viewer))?;
    if !viewer.auth_enabled {
        return Ok(Redirect::to("/ui/").into_response());
    }
    match app
        .auth
        .open_session(&form.username, &form.password, &peer.ip().to_string())
        .await
    {
        Ok(opened) => {
            let mut response = Redirect::to("/ui/").into_response();
            let cookie = viewer.cookie(SESSION_COOKIE, &opened.secret, Some(SESSION_SECS));
            response.headers_mut().append(header::SET_COOKIE, cookie);
            Ok(response)
        }
        Err(e @ (Error::Unauthorized(_) | Error::TooManyRequests { .. })) => {
            let status = e.status();
            let mut response = render(
                &viewer,
                &LoginPage {
                    layout: viewer.layout("Sign in", ""),
                    username: form.username,
                    error: e.to_string(),
                },
            );
            *response.status_mut() = status;
            Ok(response)
        }
        Err(e) => Err(UiError::from(e).page(&viewer)),
    }
}

#[derive(Deserialize)]
pub(super) struct CsrfForm {
    csrf: String,
}

pub(super) async fn logout(
    viewer: Viewer,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> PageResult {
    viewer
        .check_form(&headers, &form.csrf)
        .map_err(fail(&viewer))?;
    if let Some(secret) = &viewer.session {
        viewer
            .auth()
            .close_session(secret)
            .await
            .map_err(|e| UiError::from(e).page(&viewer))?;
    }
    let mut response = Redirect::to("/ui/").into_response();
    let cleared = viewer.cookie(SESSION_COOKIE, "", Some(0));
    response.headers_mut().append(header::SET_COOKIE, cleared);
    Ok(response)
}

// ------------------------------------------------------------------------ overview

/// Counts by severity, most severe first, for a row of badges.
pub struct Severities(Vec<(&'static str, u64)>);

impl Severities {
    pub(super) fn of(s: &SeveritySummary) -> Severities {
        Severities(vec![
            ("critical", s.critical),
            ("high", s.high),
            ("medium", s.medium),
            ("low", s.low),
            ("unknown", s.unknown),
        ])
    }

    /// (severity, count) pairs, most severe first.
    pub fn items(&self) -> &[(&'static str, u64)] {
        &self.0
    }

    /// Findings (or images) over every severity.
    pub fn total(&self) -> u64 {
        self.0.iter().map(|(_, n)| n).sum()
    }
}

struct PopularRow {
    name: String,
    pulls: i64,
}

struct VulnerableRow {
    repository: String,
    digest: String,
    short: String,
    tags: String,
    severities: Severities,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    layout: Layout,
    figures: Vec<(&'static str, String)>,
    chart: String,
    storage_chart: String,
    popular: Vec<PopularRow>,
    images_by_severity: Severities,
    findings_by_severity: Severities,
    vulnerable: Vec<VulnerableRow>,
    /// Recent collection and policy runs (administrators only, as in the API).
    runs: Vec<(i64, String, &'static str, String, String)>,
}

pub(super) async fn overview(State(app): State<AppState>, viewer: Viewer) -> PageResult {
    let page = async {
        let catalog = viewer.catalog();
        let totals = app.registry.usage_totals(&catalog, "").await?;
        let today = app.registry.today();
        let from = today - TREND_DAYS + 1;
        let trend = app
            .registry
            .usage_trend(&catalog, "", None, Interval::Day, from, today)
            .await?;
        let popular = app
            .registry
            .popular_repositories(&catalog, "", TREND_DAYS, 10)
            .await?;
        let (vulnerability_totals, vulnerable) = app
            .registry
            .vulnerability_overview(&catalog, "", None, 10)
            .await?;
        let runs = if viewer.identity.admin {
            app.registry
                .gc_runs(None, 5)
                .await?
                .into_iter()
                .map(|r| {
                    (
                        r.id,
                        r.trigger,
                        if r.dry_run { "dry run" } else { "run" },
                        r.state,
                        r.finished_at
                            .map_or_else(|| "not yet".to_owned(), |t| format::ago(t, viewer.now)),
                    )
                })
                .collect()
        } else {
            Vec::new()
        };
        let pulls: Vec<i64> = trend.iter().map(|b| b.pulls).collect();
        let pushes: Vec<i64> = trend.iter().map(|b| b.pushes).collect();
        let mut storage = Vec::with_capacity(trend.len());
        let mut last = 0;
        for bucket in &trend {
            last = bucket.storage_bytes.unwrap_or(last);
            storage.push(last);
        }
        let labels = (format::day(from), format::day(today));
        Ok::<_, UiError>(OverviewPage {
            layout: viewer.layout("Overview", "overview"),
            figures: vec![
                ("Storage", format::size(totals.bytes)),
                ("Repositories", totals.repositories.to_string()),
                ("Tags", totals.tags.to_string()),
                ("Images", totals.manifests.to_string()),
                ("Pulls, 30 days", totals.pulls_30d.to_string()),
                ("Pushes, 30 days", totals.pushes_30d.to_string()),
            ],
            chart: format::bar_chart(
                "Pulls and pushes per day, last 30 days",
                (&labels.0, &labels.1),
                |n| n.to_string(),
                &[
                    format::Series {
                        name: "pulls",
                        class: "pulls",
                        values: &pulls,
                    },
                    format::Series {
                        name: "pushes",
                        class: "pushes",
                        values: &pushes,
                    },
                ],
            ),
            // Storage is recorded once a day; nothing to draw before the first record.
            storage_chart: if storage.iter().any(|&b| b > 0) {
                format::bar_chart(
                    "Storage per day, last 30 days",
                    (&labels.0, &labels.1),
                    format::size,
                    &[format::Series {
                        name: "storage",
                        class: "storage",
                        values: &storage,
                    }],
                )
            } else {
                String::new()
            },
            popular: popular
                .into_iter()
                .map(|p| PopularRow {
                    name: p.repository.to_string(),
                    pulls: p.pulls,
                })
                .collect(),
            images_by_severity: Severities::of(&vulnerability_totals.images),
            findings_by_severity: Severities::of(&vulnerability_totals.findings),
            vulnerable: vulnerable
                .into_iter()
                .take(10)
                .map(|v| VulnerableRow {
                    repository: v.repository.to_string(),
                    short: short_digest(v.digest.as_str()),
                    digest: v.digest.to_string(),
                    tags: join(v.tags.iter().map(|t| t.as_str())),
                    severities: Severities::of(&v.summary),
                })
                .collect(),
            runs,
        })
    };
    let page = page.await.map_err(fail(&viewer))?;
    Ok(render(&viewer, &page))
}

fn short_digest(digest: &str) -> String {
    let hex = digest.split_once(':').map_or(digest, |(_, h)| h);
    hex.chars().take(12).collect()
}

fn join<'a>(items: impl Iterator<Item = &'a str>) -> String {
    items.collect::<Vec<_>>().join(", ")
}

// ------------------------------------------------------------------------ repositories

#[derive(Deserialize, Default)]
pub(super) struct RepositoriesQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    sort: String,
    #[serde(default)]
    after: String,
}

struct RepositoryRow {
    name: String,
    description: String,
    visibility: String,
    tags: i64,
    size: String,
    pulls: i64,
    pushed: String,
    pushed_title: String,
}

/// A link to sort a table by a key, marked when it is the current one.
pub(super) struct SortLink {
    pub(super) label: &'static str,
    pub(super) href: String,
    pub(super) current: bool,
}

#[derive(Template)]
#[template(path = "repositories.html")]
struct RepositoriesPage {
    layout: Layout,
    q: String,
    sorts: Vec<SortLink>,
    rows: Vec<RepositoryRow>,
    next: String,
}

pub(super) fn query_string(pairs: &[(&str, &str)]) -> String {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (key, value) in pairs {
        if !value.is_empty() {
            out.append_pair(key, value);
        }
    }
    out.finish()
}

pub(super) async fn repositories(
    State(app): State<AppState>,
    viewer: Viewer,
    Query(q): Query<RepositoriesQuery>,
) -> PageResult {
    let page = async {
        let order = match q.sort.as_str() {
            "" => RepositoryOrder::Name,
            key => RepositoryOrder::parse(key).ok_or_else(|| {
                UiError::bad_request(format!(
                    "Unknown sort {key:?}: use name, pulls, pushed or size."
                ))
            })?,
        };
        let after = match (q.after.as_str(), order) {
            ("", _) => None,
            (name, RepositoryOrder::Name) => Some((0, name.to_owned())),
            (cursor, _) => {
                let bad = || UiError::bad_request("This page link is not one the UI made.");
                let (key, name) = cursor.split_once(':').ok_or_else(bad)?;
                Some((key.parse().map_err(|_| bad())?, name.to_owned()))
            }
        };
        let query = RepositoryQuery {
            name_contains: Some(q.q.trim().to_owned()).filter(|n| !n.is_empty()),
            visibility: None,
            namespace: None,
            order,
            after,
        };
        let mut items = app
            .registry
            .repository_summaries(&query, &viewer.catalog(), PAGE_ROWS + 1)
            .await?;
        let more = items.len() > PAGE_ROWS as usize;
        items.truncate(PAGE_ROWS as usize);
        let next = match (more, items.last()) {
            (true, Some(last)) => {
                let cursor = match order {
                    RepositoryOrder::Name => last.name.to_string(),
                    _ => format!("{}:{}", order.key_of(last), last.name),
                };
                format!(
                    "/ui/repositories?{}",
                    query_string(&[("q", &q.q), ("sort", &q.sort), ("after", &cursor)])
                )
            }
            _ => String::new(),
        };
        let now = viewer.now;
        let sorts = [
            ("Name", "name"),
            ("Most pulled", "pulls"),
            ("Recently pushed", "pushed"),
            ("Largest", "size"),
        ]
        .into_iter()
        .map(|(label, key)| SortLink {
            label,
            href: format!(
                "/ui/repositories?{}",
                query_string(&[("q", &q.q), ("sort", key)])
            ),
            current: q.sort == key || (q.sort.is_empty() && key == "name"),
        })
        .collect();
        Ok::<_, UiError>(RepositoriesPage {
            layout: viewer.layout("Repositories", "repositories"),
            q: q.q.clone(),
            sorts,
            rows: items
                .into_iter()
                .map(|r| RepositoryRow {
                    name: r.name.to_string(),
                    description: r.description,
                    visibility: r.visibility,
                    tags: r.tag_count,
                    size: format::size(r.blob_bytes),
                    pulls: r.pull_count,
                    pushed: r
                        .last_push_at
                        .map_or_else(|| "never".to_owned(), |t| format::ago(t, now)),
                    pushed_title: r.last_push_at.map(format::date).unwrap_or_default(),
                })
                .collect(),
            next,
        })
    };
    let page = page.await.map_err(fail(&viewer))?;
    Ok(render(&viewer, &page))
}

// ------------------------------------------------------------------------ one repository

#[derive(Deserialize, Default)]
pub(super) struct TagsQuery {
    #[serde(default)]
    sort: String,
    #[serde(default)]
    after: String,
    /// The SBOM document's format, on an image's `…/sbom`.
    #[serde(default)]
    pub(super) format: String,
}

struct TagLine {
    name: String,
    digest: String,
    short: String,
    pushed: String,
    pushed_title: String,
    pulled: String,
    size: String,
}

struct Command {
    label: &'static str,
    text: String,
}

#[derive(Template)]
#[template(path = "repository.html")]
struct RepositoryPage {
    layout: Layout,
    name: String,
    /// Its namespace (the first component of its name).
    namespace: String,
    description: String,
    visibility: String,
    figures: Vec<(&'static str, String)>,
    commands: Vec<Command>,
    sorts: Vec<SortLink>,
    tags: Vec<TagLine>,
    next: String,
}

/// `name` as a repository the viewer may read; any other is "no such repository".
pub(super) async fn readable(viewer: &Viewer, name: &str) -> Result<RepoName, UiError> {
    let unknown =
        || UiError::not_found(format!("There is no repository {name:?} that you may see."));
    let repo: RepoName = name.parse().map_err(|_| unknown())?;
    if viewer.may_read(&repo).await? {
        Ok(repo)
    } else {
        Err(unknown())
    }
}

/// The host clients reach the registry by, for the commands to copy.
fn registry_host(app: &AppState, headers: &HeaderMap) -> (bool, String) {
    if let Some(url) = &app.external_url {
        return (url.https, url.host.clone());
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b))
        })
        .unwrap_or("localhost:5000");
    (app.https, host.to_owned())
}

pub(super) async fn repository(
    app: &AppState,
    viewer: &Viewer,
    repo: &RepoName,
    headers: &HeaderMap,
    q: TagsQuery,
) -> Result<Response, UiError> {
    let default = app.auth.config().default_visibility;
    let summary = app
        .registry
        .repository_summary(repo, default.as_str())
        .await?;
    let sort = match q.sort.as_str() {
        "" | "pushed" => TagSort::Pushed,
        "name" => TagSort::Name,
        "pulled" => TagSort::Pulled,
        "size" => TagSort::Size,
        other => {
            return Err(UiError::bad_request(format!(
                "Unknown sort {other:?}: use name, pushed, pulled or size."
            )));
        }
    };
    let after = match q.after.as_str() {
        "" => None,
        cursor => {
            let bad = || UiError::bad_request("This page link is not one the UI made.");
            let (key, name) = cursor.split_once(':').ok_or_else(bad)?;
            Some(TagCursor {
                key: key.parse().map_err(|_| bad())?,
                name: name.to_owned(),
            })
        }
    };
    let mut tags = app
        .registry
        .list_tag_summaries(repo, sort, after.as_ref(), PAGE_ROWS + 1)
        .await?;
    let more = tags.len() > PAGE_ROWS as usize;
    tags.truncate(PAGE_ROWS as usize);
    let base = format!("/ui/r/{repo}");
    let next = match (more, tags.last()) {
        (true, Some(last)) => format!(
            "{base}?{}",
            query_string(&[("sort", &q.sort), ("after", &last.cursor)])
        ),
        _ => String::new(),
    };
    let now = viewer.now;
    let (https, host) = registry_host(app, headers);
    // `latest` when the page shows it, else the page's first tag.
    let first_tag = tags
        .iter()
        .find(|t| t.name.as_str() == "latest")
        .or(tags.first())
        .map_or("latest".to_owned(), |t| t.name.to_string());
    let image = format!("{host}/{repo}:{first_tag}");
    let tls = if https { "" } else { " --tls-verify=false" };
    let commands = vec![
        Command {
            label: "docker",
            text: format!("docker pull {image}"),
        },
        Command {
            label: "podman",
            text: format!("podman pull{tls} {image}"),
        },
    ];
    let sorts = [
        ("Name", "name"),
        ("Pushed", "pushed"),
        ("Pulled", "pulled"),
        ("Size", "size"),
    ]
    .into_iter()
    .map(|(label, key)| SortLink {
        label,
        href: format!("{base}?sort={key}"),
        current: q.sort == key || (q.sort.is_empty() && key == "pushed"),
    })
    .collect();
    let page = RepositoryPage {
        layout: viewer.layout(repo.as_str(), "repositories"),
        name: repo.to_string(),
        namespace: repo
            .as_str()
            .split_once('/')
            .map_or(repo.as_str(), |(ns, _)| ns)
            .to_owned(),
        description: summary.description,
        visibility: summary.visibility,
        figures: vec![
            ("Tags", summary.tag_count.to_string()),
            ("Images", summary.manifest_count.to_string()),
            ("Size", format::size(summary.blob_bytes)),
            ("Pulls", summary.pull_count.to_string()),
            (
                "Last push",
                summary
                    .last_push_at
                    .map_or_else(|| "never".to_owned(), |t| format::ago(t, now)),
            ),
        ],
        commands,
        sorts,
        tags: tags
            .into_iter()
            .map(|t| TagLine {
                name: t.name.to_string(),
                short: short_digest(t.digest.as_str()),
                digest: t.digest.to_string(),
                pushed: format::ago(t.pushed_at, now),
                pushed_title: format::date(t.pushed_at),
                pulled: t
                    .last_pulled_at
                    .map_or_else(|| "never".to_owned(), |p| format::ago(p, now)),
                size: format::size(t.size_bytes),
            })
            .collect(),
        next,
    };
    Ok(render(viewer, &page))
}

/// Parses a digest of a page address, or "no such image".
pub(super) fn page_digest(text: &str) -> Result<Digest, UiError> {
    text.parse()
        .map_err(|_| UiError::not_found("There is no such image."))
}

// ------------------------------------------------------------------------ tokens

struct TokenLine {
    id: i64,
    name: String,
    scopes: String,
    created: String,
    expires: String,
    last_used: String,
    state: &'static str,
}

#[derive(Template)]
#[template(path = "tokens.html")]
struct TokensPage {
    layout: Layout,
    tokens: Vec<TokenLine>,
    secret: String,
    error: String,
}

async fn tokens_page(
    viewer: &Viewer,
    secret: String,
    error: String,
    status: StatusCode,
) -> Result<Response, UiError> {
    let Some((_, user)) = &viewer.identity.user else {
        return Err(if viewer.auth_enabled {
            UiError::new(
                StatusCode::UNAUTHORIZED,
                "Sign in to see and manage your tokens.",
            )
        } else {
            UiError::bad_request("Authentication is off: there are no tokens to manage.")
        });
    };
    let now = viewer.now;
    let rows = viewer
        .auth()
        .list_personal_tokens(&viewer.identity, user)
        .await?;
    let page = TokensPage {
        layout: viewer.layout("Your tokens", "tokens"),
        tokens: rows
            .into_iter()
            .map(|t| TokenLine {
                id: t.id,
                name: t.name,
                scopes: t.scopes.replace(',', ", "),
                created: format::date(t.created_at),
                expires: t
                    .expires_at
                    .map_or_else(|| "never".to_owned(), format::date),
                last_used: t
                    .last_used_at
                    .map_or_else(|| "never".to_owned(), |u| format::ago(u, now)),
                state: if t.revoked_at.is_some() {
                    "revoked"
                } else if t.expires_at.is_some_and(|e| e <= now) {
                    "expired"
                } else {
                    "active"
                },
            })
            .collect(),
        secret,
        error,
    };
    let mut response = render(viewer, &page);
    *response.status_mut() = status;
    Ok(response)
}

pub(super) async fn tokens(viewer: Viewer) -> PageResult {
    tokens_page(&viewer, String::new(), String::new(), StatusCode::OK)
        .await
        .map_err(fail(&viewer))
}

#[derive(Deserialize)]
pub(super) struct NewTokenForm {
    csrf: String,
    name: String,
    #[serde(default)]
    read_registry: Option<String>,
    #[serde(default)]
    write_registry: Option<String>,
    #[serde(default)]
    delete_registry: Option<String>,
    /// Days until it expires; empty for never.
    #[serde(default)]
    expires_days: String,
}

pub(super) async fn create_token(
    viewer: Viewer,
    headers: HeaderMap,
    Form(form): Form<NewTokenForm>,
) -> PageResult {
    viewer
        .check_form(&headers, &form.csrf)
        .map_err(fail(&viewer))?;
    let refuse = |message: String| async {
        tokens_page(&viewer, String::new(), message, StatusCode::BAD_REQUEST)
            .await
            .map_err(fail(&viewer))
    };
    let Some((_, user)) = viewer.identity.user.clone() else {
        return tokens_page(&viewer, String::new(), String::new(), StatusCode::OK)
            .await
            .map_err(fail(&viewer));
    };
    let scopes: Vec<String> = [
        ("read_registry", &form.read_registry),
        ("write_registry", &form.write_registry),
        ("delete_registry", &form.delete_registry),
    ]
    .into_iter()
    .filter(|(_, on)| on.is_some())
    .map(|(scope, _)| scope.to_owned())
    .collect();
    let expires_at = match form.expires_days.trim() {
        "" => None,
        days => match days.parse::<i64>() {
            Ok(days) if (1..=3650).contains(&days) => Some(viewer.now + days * 86_400),
            _ => {
                return refuse(
                    "Expiry: a whole number of days from 1 to 3650, or empty for never.".to_owned(),
                )
                .await;
            }
        },
    };
    let request = TokenRequest {
        name: form.name.trim().to_owned(),
        scopes,
        expires_at,
    };
    match viewer
        .auth()
        .create_personal_token(&viewer.identity, &user, &request)
        .await
    {
        Ok(created) => tokens_page(&viewer, created.secret, String::new(), StatusCode::CREATED)
            .await
            .map_err(fail(&viewer)),
        Err(Error::BadRequest(message)) => refuse(message).await,
        Err(e) => Err(UiError::from(e).page(&viewer)),
    }
}

#[derive(Deserialize)]
pub(super) struct RevokeForm {
    csrf: String,
    id: i64,
}

pub(super) async fn revoke_token(
    viewer: Viewer,
    headers: HeaderMap,
    Form(form): Form<RevokeForm>,
) -> PageResult {
    viewer
        .check_form(&headers, &form.csrf)
        .map_err(fail(&viewer))?;
    let Some((_, user)) = &viewer.identity.user else {
        return Err(UiError::new(StatusCode::UNAUTHORIZED, "Sign in first.").page(&viewer));
    };
    // Only one's own tokens, even for an administrator: the page lists only those.
    let own = viewer
        .auth()
        .list_personal_tokens(&viewer.identity, user)
        .await
        .map_err(|e| UiError::from(e).page(&viewer))?
        .iter()
        .any(|t| t.id == form.id);
    if !own {
        return Err(UiError::not_found("You have no such token.").page(&viewer));
    }
    viewer
        .auth()
        .revoke_token(&viewer.identity, form.id)
        .await
        .map_err(|e| UiError::from(e).page(&viewer))?;
    Ok(Redirect::to("/ui/tokens").into_response())
}
