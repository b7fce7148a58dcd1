//! The image page: what an image is made of (the platforms of an index, layers with sizes,
//! its config), what refers to it (signatures with their verification, other artifacts),
//! what its newest scan found (counts by severity, each finding with its fixed version) and
//! whether it is held back from pulls, and why.
//!
//! The page costs a fixed number of queries whatever the image holds: the referrer tree is
//! read a level at a time, signatures of every node at once, and the tags where each finding
//! is fixed in one query for all of them.

use askama::Template;
use axum::{
    body::Body,
    http::{HeaderValue, header},
    response::Response,
};

use super::{
    UiError, Viewer, format,
    pages::{Layout, Severities, page_digest, render},
};
use crate::{
    error::Error,
    oci::{Digest, RepoName},
    scan::sbom::{self, Format},
    state::AppState,
};

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
    depth: usize,
    digest: String,
    kind: String,
    /// `Some(verified)` when it carries a signature.
    signed: Option<bool>,
    identity: String,
    reason: String,
    sbom: bool,
}

struct HistoryLine {
    created: String,
    created_by: String,
    comment: String,
    /// The layer the step made: (digest, size), or none for an empty step.
    layer: Option<(String, String)>,
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
    fixed_in: Vec<String>,
    /// Tags beyond those shown where it is fixed.
    fixed_more: i64,
}

/// A report of another scanner imported for the image: its newest per scanner and image.
struct ImportedLine {
    /// `trivy 0.58.1`.
    scanner: String,
    /// The platform of the child it is about, or the digest of the image.
    image: String,
    when: String,
    by: String,
    severities: Severities,
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
    annotations: Vec<(String, String)>,
    history: Vec<HistoryLine>,
    signatures: Vec<Signature>,
    referrers: Vec<Referrer>,
    scanned: bool,
    severities: Severities,
    findings: Vec<Finding>,
    imported: Vec<ImportedLine>,
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
    let vulnerabilities = app
        .registry
        .image_vulnerabilities(repo, &digest, None)
        .await?;
    let imported = app
        .registry
        .newest_reports(repo, &digest)
        .await?
        .into_iter()
        .map(|r| ImportedLine {
            scanner: match &r.scanner_version {
                Some(v) => format!("{} {v}", r.scanner),
                None => r.scanner.clone(),
            },
            image: r.platform.as_ref().map_or_else(
                || r.image.clone(),
                |p| {
                    [&p.os, &p.architecture, &p.variant]
                        .into_iter()
                        .flatten()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join("/")
                },
            ),
            when: format::ago(r.imported_at, viewer.now),
            by: r.imported_by,
            severities: Severities::of(&r.summary),
        })
        .collect();
    let tree = app.registry.referrer_tree(repo, &digest).await?;
    let fixed_in = match &vulnerabilities {
        Some(v) => {
            let mut ids: Vec<&str> = v.items.iter().map(|f| f.id.as_str()).collect();
            ids.sort_unstable();
            ids.dedup();
            app.registry.fixed_in_repository(repo, &ids).await?
        }
        None => Default::default(),
    };
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
    let mut history = Vec::new();
    if let Some(c) = &detail.config {
        // Each step that made a layer made the next one of the manifest, in order.
        let mut layers = detail.layers.iter();
        history = c
            .history
            .iter()
            .map(|h| HistoryLine {
                created: h.created.clone().unwrap_or_default(),
                created_by: h.created_by.clone().unwrap_or_default(),
                comment: h.comment.clone().unwrap_or_default(),
                layer: if h.empty_layer {
                    None
                } else {
                    layers
                        .next()
                        .map(|l| (l.digest.clone(), format::size(l.size as i64)))
                },
            })
            .collect();
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
                .map(|f| {
                    let fixed = fixed_in.get(&f.id);
                    Finding {
                        fixed_in: fixed
                            .map(|t| t.tags.iter().map(|t| t.to_string()).collect())
                            .unwrap_or_default(),
                        fixed_more: fixed.map_or(0, |t| t.count - t.tags.len() as i64),
                        id: f.id,
                        severity: f.severity.as_str().to_owned(),
                        package: f.package,
                        installed: f.installed_version,
                        fixed: f.fixed_version.unwrap_or_default(),
                    }
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
        referrers: tree
            .into_iter()
            .map(|r| Referrer {
                depth: r.depth.min(4),
                digest: r.digest.to_string(),
                kind: r.kind,
                signed: r.signature.as_ref().map(|s| s.verified),
                identity: r
                    .signature
                    .as_ref()
                    .and_then(|s| s.identity.clone())
                    .unwrap_or_default(),
                reason: r.signature.and_then(|s| s.reason).unwrap_or_default(),
                sbom: r.sbom,
            })
            .collect(),
        annotations: detail
            .annotations
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        history,
        scanned,
        severities,
        findings,
        imported,
    };
    Ok(render(viewer, &page))
}

/// `…/-/images/{digest}/sbom?format=cyclonedx|spdx`: the image's inventory from its newest
/// scan as a document to download (what `/api/v1/…/sbom` answers, for a session).
pub(super) async fn sbom(
    app: &AppState,
    repo: &RepoName,
    digest: &str,
    format: &str,
) -> Result<Response, UiError> {
    let digest = page_digest(digest)?;
    let format = match format {
        "" => Format::CycloneDx,
        name => Format::parse(name).ok_or_else(|| {
            UiError::bad_request(format!("Unknown format {name:?}: use cyclonedx or spdx."))
        })?,
    };
    let document = app
        .registry
        .image_sbom(repo, &digest, format)
        .await
        .map_err(not_here)?
        .ok_or_else(|| UiError::not_found("This image has not been scanned yet."))?;
    let body = serde_json::to_vec_pretty(&document)
        .map_err(|e| UiError::from(Error::Internal(anyhow::anyhow!("an SBOM document: {e}"))))?;
    let hex = digest.as_str().split_once(':').map_or("", |(_, h)| h);
    let file = format!(
        "{}-{}.{}",
        repo.as_str().replace('/', "_"),
        &hex[..hex.len().min(12)],
        format.suffix()
    );
    Ok(download(format.media_type(), &file, Body::from(body)))
}

/// `…/-/images/{digest}/artifact`: the document an SBOM referrer carries (its first layer),
/// as pushed. Only SBOMs: other artifacts have no reason to be opened from a browser.
pub(super) async fn artifact(
    app: &AppState,
    repo: &RepoName,
    digest: &str,
) -> Result<Response, UiError> {
    let digest = page_digest(digest)?;
    let detail = app
        .registry
        .image_detail(repo, &digest)
        .await
        .map_err(not_here)?;
    let artifact_type = detail.config.as_ref().map(|c| c.media_type.as_str());
    let layer = detail
        .layers
        .first()
        .filter(|l| {
            sbom::is_sbom_media_type(&l.media_type)
                || artifact_type.is_some_and(sbom::is_sbom_media_type)
        })
        .ok_or_else(|| UiError::not_found("This manifest carries no SBOM."))?;
    let layer_digest: Digest = layer
        .digest
        .parse()
        .map_err(|_| UiError::not_found("This manifest carries no SBOM."))?;
    let read = app.registry.open_blob(repo, &layer_digest, None).await?;
    let body = read.body.map(Body::from_stream).unwrap_or_else(Body::empty);
    let hex = digest.as_str().split_once(':').map_or("", |(_, h)| h);
    let file = format!("sbom-{}.json", &hex[..hex.len().min(12)]);
    // Served as JSON whatever the layer claims: never as a page of this origin.
    Ok(download("application/json", &file, body))
}

fn not_here(e: Error) -> UiError {
    match e {
        Error::ManifestUnknown => UiError::not_found("There is no such image in this repository."),
        other => other.into(),
    }
}

fn download(content_type: &str, file: &str, body: Body) -> Response {
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(content_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{file}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
