//! The administrators' maintenance page: what a collection would reclaim now (a dry run of
//! the mark, per repository), the recent collection and policy runs, and the cleanup
//! policies, each of which can be previewed (a dry run: recorded, nothing removed).

use askama::Template;
use axum::{
    Form,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::Response,
};
use serde::Deserialize;

use super::{
    UiError, Viewer, format,
    pages::{Layout, render},
};
use crate::{registry::policies::SavedPolicy, state::AppState};

/// Recent runs shown.
const RUNS_SHOWN: i64 = 10;

struct Estimate {
    repository: String,
    links: i64,
    bytes: String,
}

struct Run {
    id: i64,
    trigger: String,
    kind: &'static str,
    state: String,
    finished: String,
}

/// A cleanup policy as its rows show it (here and on a namespace's page).
pub(super) struct PolicyLine {
    pub(super) name: String,
    pub(super) repositories: String,
    pub(super) schedule: String,
}

impl PolicyLine {
    pub(super) fn of(p: SavedPolicy) -> PolicyLine {
        PolicyLine {
            repositories: p
                .policy
                .repository
                .clone()
                .or_else(|| p.policy.repositories.clone())
                .unwrap_or_default(),
            schedule: match p.next_run_at {
                Some(t) => format!("every {}, next {}", p.policy.cadence, format::date(t)),
                None => "disabled (runs when asked)".to_owned(),
            },
            name: p.name,
        }
    }
}

struct RemovalLine {
    repository: String,
    what: String,
    reason: String,
}

#[derive(Template)]
#[template(path = "maintenance.html")]
struct MaintenancePage {
    layout: Layout,
    reclaimable_blobs: i64,
    reclaimable_bytes: String,
    estimates: Vec<Estimate>,
    runs: Vec<Run>,
    policies: Vec<PolicyLine>,
    preview: Option<(String, Vec<RemovalLine>)>,
}

/// Administrators only: others are told so (anonymous visitors to sign in).
fn require_admin(viewer: &Viewer) -> Result<(), UiError> {
    if viewer.identity.admin {
        Ok(())
    } else if viewer.identity.is_anonymous() {
        Err(UiError::new(
            StatusCode::UNAUTHORIZED,
            "Sign in as an administrator.",
        ))
    } else {
        Err(UiError::forbidden("This page is for administrators."))
    }
}

async fn page(
    app: &AppState,
    viewer: &Viewer,
    preview: Option<(String, Vec<RemovalLine>)>,
) -> Result<Response, UiError> {
    require_admin(viewer)?;
    let (estimates, blobs, bytes) = app.registry.gc_estimate().await?;
    let runs = app.registry.gc_runs(None, RUNS_SHOWN).await?;
    let policies = app.registry.policies().await?;
    let page = MaintenancePage {
        layout: viewer.layout("Maintenance", "maintenance"),
        reclaimable_blobs: blobs,
        reclaimable_bytes: format::size(bytes),
        estimates: estimates
            .into_iter()
            .map(|e| Estimate {
                repository: e.repository,
                links: e.unreferenced_links,
                bytes: format::size(e.unreferenced_bytes),
            })
            .collect(),
        runs: runs
            .into_iter()
            .map(|r| Run {
                id: r.id,
                trigger: r.trigger,
                kind: if r.dry_run { "dry run" } else { "run" },
                state: r.state,
                finished: r
                    .finished_at
                    .map_or_else(|| "not yet".to_owned(), |t| format::ago(t, viewer.now)),
            })
            .collect(),
        policies: policies.into_iter().map(PolicyLine::of).collect(),
        preview,
    };
    Ok(render(viewer, &page))
}

pub(super) async fn maintenance(State(app): State<AppState>, viewer: Viewer) -> Response {
    match page(&app, &viewer, None).await {
        Ok(response) => response,
        Err(e) => e.page(&viewer),
    }
}

#[derive(Deserialize)]
pub(super) struct PreviewForm {
    csrf: String,
    name: String,
}

/// Previews policy `name`: what a run would remove now, and why.
pub(super) async fn preview(
    State(app): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Form(form): Form<PreviewForm>,
) -> Response {
    let shown = async {
        viewer.check_form(&headers, &form.csrf)?;
        require_admin(&viewer)?;
        let Some((outcome, _)) = app.registry.run_policy(&form.name, true).await? else {
            return Err(UiError::not_found("There is no such policy."));
        };
        let removals = outcome
            .removals
            .into_iter()
            .map(|r| RemovalLine {
                repository: r.repository,
                what: r.removal.tag.map_or_else(
                    || format!("untagged image {}", r.removal.digest),
                    |tag| format!("tag {tag}"),
                ),
                reason: r.removal.reason,
            })
            .collect();
        page(&app, &viewer, Some((form.name.clone(), removals))).await
    };
    match shown.await {
        Ok(response) => response,
        Err(e) => e.page(&viewer),
    }
}
