//! The web UI under `/ui/`: server-rendered pages (askama templates, checked at compile
//! time) over the same domain as `/api/v1` ([`crate::registry`] and [`crate::auth`] through
//! [`crate::state::AppState`]; neither `/v2/` nor `/api/v1` handlers are imported here).
//!
//! - [`session`]: who is looking (a session cookie from the sign-in form, or nobody), and
//!   the CSRF checks every form goes through.
//! - [`pages`]: one handler per page; each reads what the viewer may read, exactly as the
//!   API decides it (grants per repository, the catalog viewer for listings).
//! - [`namespaces`]: the namespaces listing and a namespace's page (repositories, members,
//!   scanning policy).
//! - [`maintenance`]: for administrators, the GC estimate, recent runs and policy previews.
//! - [`format`]: sizes, dates and the SVG charts, made on the server.
//!
//! Read-only pages need no JavaScript; the one script (copying a command) is an extra. The
//! CSS and the script are embedded in the binary and served under `/ui/assets/`.

mod format;
mod image;
mod maintenance;
mod namespaces;
mod pages;
mod session;

use askama::Template;
use axum::{
    Router,
    extract::{Path, Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};

use crate::{error::Error, state::AppState};

pub use session::Viewer;

/// Every `/ui` route. [`crate::serve`] merges them with the other surfaces.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(pages::overview))
        .route("/ui/login", get(pages::login_form).post(pages::login))
        .route("/ui/logout", post(pages::logout))
        .route("/ui/repositories", get(pages::repositories))
        .route("/ui/namespaces", get(namespaces::namespaces))
        .route("/ui/ns/{name}", get(namespaces::namespace))
        .route("/ui/r/{*path}", get(repository_or_image))
        .route("/ui/tokens", get(pages::tokens).post(pages::create_token))
        .route("/ui/tokens/revoke", post(pages::revoke_token))
        .route("/ui/maintenance", get(maintenance::maintenance))
        .route("/ui/maintenance/preview", post(maintenance::preview))
        .route("/ui/assets/style.css", get(style))
        .route("/ui/assets/ui.js", get(script))
        .route("/ui/{*rest}", get(no_such_page))
        .layer(axum::middleware::from_fn(server_timing))
}

/// Adds `Server-Timing: app;dur=…` (milliseconds from the request to its response head;
/// pages are rendered whole before that) for people and benchmarks to read.
async fn server_timing(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let started = std::time::Instant::now();
    let mut response = next.run(request).await;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    if let Ok(value) = HeaderValue::from_str(&format!("app;dur={ms:.2}")) {
        response.headers_mut().insert("server-timing", value);
    }
    response
}

/// `/ui/r/{name}` is a repository; `/ui/r/{name}/-/images/{digest}` one of its images.
async fn repository_or_image(
    State(app): State<AppState>,
    viewer: Viewer,
    Path(path): Path<String>,
    headers: HeaderMap,
    Query(tags): Query<pages::TagsQuery>,
) -> pages::PageResult {
    let (name, rest) = match path.split_once("/-/") {
        Some((name, rest)) => (name, Some(rest)),
        None => (path.as_str(), None),
    };
    let repo = pages::readable(&viewer, name)
        .await
        .map_err(pages::fail(&viewer))?;
    match rest {
        None => pages::repository(&app, &viewer, &repo, &headers, tags)
            .await
            .map_err(pages::fail(&viewer)),
        Some(rest) => {
            let Some(image) = rest.strip_prefix("images/") else {
                return Err(UiError::not_found("There is no such page.").page(&viewer));
            };
            let result = match image.split_once('/') {
                None => image::image(&app, &viewer, &repo, image).await,
                Some((digest, "sbom")) => image::sbom(&app, &repo, digest, &tags.format).await,
                Some((digest, "artifact")) => image::artifact(&app, &repo, digest).await,
                Some(_) => Err(UiError::not_found("There is no such page.")),
            };
            result.map_err(pages::fail(&viewer))
        }
    }
}

async fn no_such_page(viewer: Viewer) -> Response {
    UiError::not_found("There is no such page.").page(&viewer)
}

/// The style sheet, embedded in the binary.
const STYLE: &str = include_str!("../../templates/assets/style.css");
/// The one script: copy buttons beside commands (pages work without it).
const SCRIPT: &str = include_str!("../../templates/assets/ui.js");

async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        body,
    )
        .into_response()
}

/// A page that could not be shown: its status and a sentence for people, rendered in the
/// layout (so a refusal still has the navigation and a title).
#[derive(Debug)]
pub struct UiError {
    status: StatusCode,
    message: String,
}

impl UiError {
    fn new(status: StatusCode, message: impl Into<String>) -> UiError {
        UiError {
            status,
            message: message.into(),
        }
    }

    fn not_found(message: impl Into<String>) -> UiError {
        UiError::new(StatusCode::NOT_FOUND, message)
    }

    fn bad_request(message: impl Into<String>) -> UiError {
        UiError::new(StatusCode::BAD_REQUEST, message)
    }

    fn forbidden(message: impl Into<String>) -> UiError {
        UiError::new(StatusCode::FORBIDDEN, message)
    }

    /// The error page, in the layout as `viewer` sees it.
    fn page(self, viewer: &Viewer) -> Response {
        let title = self.status.canonical_reason().unwrap_or("Error").to_owned();
        let page = pages::ErrorPage {
            layout: viewer.layout(&title, ""),
            message: self.message,
        };
        let mut response = pages::render(viewer, &page);
        *response.status_mut() = self.status;
        response
    }
}

/// Without a viewer (the session could not be read): the page in an anonymous layout.
impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let status = self.status;
        let page = pages::ErrorPage {
            layout: pages::Layout {
                title: status.canonical_reason().unwrap_or("Error").to_owned(),
                nav: "",
                user: String::new(),
                signed_in: false,
                auth_enabled: true,
                admin: false,
                csrf: String::new(),
            },
            message: self.message,
        };
        let mut response = html(&page);
        *response.status_mut() = status;
        response
    }
}

/// Domain errors keep their status; failures of the server are logged, not shown.
impl From<Error> for UiError {
    fn from(e: Error) -> UiError {
        let status = e.status();
        if status.is_server_error() {
            tracing::error!(error = %e, "a UI page failed");
            return UiError::new(status, "Something went wrong on the server.");
        }
        UiError::new(status, e.to_string())
    }
}

/// A rendered template as an HTML response (a template error is a server failure).
fn html(template: &impl Template) -> Response {
    match template.render() {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            )],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a UI template failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
