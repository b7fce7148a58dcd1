//! The image page: what an image is made of (the platforms of an index, layers with sizes,
//! its config), what refers to it (signatures with their verification, other artifacts),
//! what its newest scan found (counts by severity, each finding with its fixed version) and
//! whether it is held back from pulls, and why.

use askama::Template;
use axum::response::Response;

use super::{
    UiError, Viewer, format,
    pages::{Layout, Severities, page_digest, render},
};
use crate::{error::Error, oci::RepoName, state::AppState};

struct Platform {
    label: String,
    digest: String,
    size: String,
}

struct Layer {
    digest: String,
    media_type: String,
    size: String,
}

struct Referrer {
    digest: String,
    kind: String,
}

struct Signature {
    tool: String,
    verified: bool,
    identity: String,
    reason: String,
    when: String,
}

struct Finding {
    id: String,
    severity: String,
    package: String,
    installed: String,
    fixed: String,
}

#[derive(Template)]
#[template(path = "image.html")]
struct ImagePage {
    layout: Layout,
    repo: String,
    digest: String,
    media_type: String,
    tags: Vec<String>,
    figures: Vec<(&'static str, String)>,
    quarantine: Option<(String, String, String)>,
    platforms: Vec<Platform>,
    layers: Vec<Layer>,
    config: Vec<(&'static str, String)>,
    labels: Vec<(String, String)>,
    signatures: Vec<Signature>,
    referrers: Vec<Referrer>,
    scanned: bool,
    severities: Severities,
    findings: Vec<Finding>,
}

pub(super) async fn image(
    app: &AppState,
    viewer: &Viewer,
    repo: &RepoName,
    digest: &str,
) -> Result<Response, UiError> {
    let digest = page_digest(digest)?;
    let detail = app
        .registry
        .image_detail(repo, &digest)
        .await
        .map_err(|e| match e {
            Error::ManifestUnknown => {
                UiError::not_found("There is no such image in this repository.")
            }
            other => other.into(),
        })?;
    let signatures = app.registry.image_signatures(repo, &digest).await?;
    let vulnerabilities = app.registry.image_vulnerabilities(repo, &digest).await?;
    let now = viewer.now;
    let summary = &detail.summary;
    let short: String = digest.as_str().chars().take(19).collect();
    let mut figures = vec![
        ("Size", format::size(summary.size_bytes)),
        ("Pushed", format::ago(summary.pushed_at, now)),
        ("Pulls", summary.pull_count.to_string()),
        (
            "Last pull",
            summary
                .last_pulled_at
                .map_or_else(|| "never".to_owned(), |t| format::ago(t, now)),
        ),
    ];
    if let Some(index) = &summary.index {
        figures.push(("Part of index", index.to_string()));
    }
    let mut config = Vec::new();
    let mut labels = Vec::new();
    if let Some(c) = &detail.config {
        let platform = [&c.os, &c.architecture, &c.variant]
            .into_iter()
            .flatten()
            .cloned()
            .collect::<Vec<_>>()
            .join("/");
        if !platform.is_empty() {
            config.push(("Platform", platform));
        }
        if let Some(created) = &c.created {
            config.push(("Built", created.clone()));
        }
        if let Some(entrypoint) = &c.entrypoint {
            config.push(("Entrypoint", entrypoint.join(" ")));
        }
        if let Some(cmd) = &c.cmd {
            config.push(("Command", cmd.join(" ")));
        }
        config.push(("History entries", c.history_count.to_string()));
        config.push((
            "Config",
            format!("{} ({})", c.digest, format::size(c.size as i64)),
        ));
        labels = c
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
    }
    let (scanned, severities, findings) = match vulnerabilities {
        Some(v) => (
            true,
            Severities::of(&v.summary),
            v.items
                .into_iter()
                .map(|f| Finding {
                    id: f.id,
                    severity: f.severity.as_str().to_owned(),
                    package: f.package,
                    installed: f.installed_version,
                    fixed: f.fixed_version.unwrap_or_default(),
                })
                .collect(),
        ),
        None => (false, Severities::of(&Default::default()), Vec::new()),
    };
    let page = ImagePage {
        layout: viewer.layout(&format!("{repo}@{short}"), "repositories"),
        repo: repo.to_string(),
        digest: digest.to_string(),
        media_type: summary.media_type.clone(),
        tags: summary.tags.iter().map(|t| t.to_string()).collect(),
        figures,
        quarantine: detail
            .quarantine
            .as_ref()
            .map(|q| (q.reason.clone(), q.by.clone(), format::date(q.at))),
        platforms: detail
            .children
            .iter()
            .map(|c| Platform {
                label: [
                    &c.platform.os,
                    &c.platform.architecture,
                    &c.platform.variant,
                ]
                .into_iter()
                .flatten()
                .cloned()
                .collect::<Vec<_>>()
                .join("/"),
                digest: c.digest.clone(),
                size: format::size(c.size as i64),
            })
            .collect(),
        layers: detail
            .layers
            .iter()
            .map(|l| Layer {
                digest: l.digest.clone(),
                media_type: l.media_type.clone(),
                size: format::size(l.size as i64),
            })
            .collect(),
        config,
        labels,
        signatures: signatures
            .into_iter()
            .map(|s| Signature {
                tool: s.tool,
                verified: s.verified,
                identity: s.identity.unwrap_or_default(),
                reason: s.reason.unwrap_or_default(),
                when: format::date(s.verified_at),
            })
            .collect(),
        referrers: detail
            .referrers
            .iter()
            .map(|r| Referrer {
                digest: r.digest.to_string(),
                kind: r
                    .artifact_type
                    .clone()
                    .unwrap_or_else(|| r.media_type.clone()),
            })
            .collect(),
        scanned,
        severities,
        findings,
    };
    Ok(render(viewer, &page))
}
