//! Vulnerabilities from the stored findings: one image's (`…/images/{digest}/vulnerabilities`,
//! filtered and paged) and what changed in them (`…/vulnerabilities/changes`), and across the
//! registry (`/api/v1/vulnerabilities`: the summary by severity and the most dangerous
//! images; `/api/v1/vulnerabilities/{id}`: one advisory or CVE, the images it affects and
//! the tags where it is fixed). The registry-wide views count only the repositories the
//! caller may pull.

use axum::{
    Json, Router,
    extract::{Path, State},
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde::{Deserialize, Serialize};

use super::{
    ApiError, ApiQuery, ApiResult, Caller, Page, Paging, Problem, StrictPaging,
    advisories::AdvisorySummary, bad_parameter, paged,
};
use crate::{
    auth::Role,
    oci::{Digest, RepoName},
    registry::{
        AffectedImage, FindingChange, FixedTags, ImportedReport, SeverityCounts, SeveritySummary,
        SuppressedVulnerability, Vulnerability, VulnerabilityFilter, VulnerabilityTotals,
        VulnerableImage,
    },
    scan::{osv::Severity, reports::Scanner},
    state::AppState,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/vulnerabilities", get(overview))
        .route("/vulnerabilities/{id}", get(advisory))
}

/// `?severity=&fixable=&limit=&cursor=` of an image's vulnerabilities.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ImageQuery {
    /// Only findings of this severity or above: `critical`, `high`, `medium`, `low` or
    /// `unknown` (every one).
    severity: Option<String>,
    /// `true`: only findings with a known fixed version.
    fixable: Option<bool>,
    /// Whose findings: `berth` (the default: Berth's own scan), or `trivy` or `grype` (the
    /// newest report of that scanner imported for the image).
    scanner: Option<String>,
    /// Items per page (default 100, at most 1000).
    limit: Option<u32>,
    /// The `next` of the previous page (valid with the same filters).
    cursor: Option<String>,
}

/// What `GET …/images/{digest}/vulnerabilities` answers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct ImageVulnerabilityPage {
    /// The findings passing the filters, most severe first, then by advisory and package.
    items: Vec<Vulnerability>,
    /// Every finding of the image by severity (whatever the filters), suppressed ones left
    /// out.
    summary: SeveritySummary,
    /// Findings an allowlist entry or a VEX statement suppresses, with why (not paged).
    suppressed: Vec<SuppressedVulnerability>,
    /// Whose findings these are: `berth`, `trivy` or `grype`.
    scanner: String,
    /// The newest report of each other scanner imported for the image (for an index, per
    /// child), with its counts: `?scanner=` shows its findings.
    reports: Vec<ImportedReport>,
    /// The cursor of the next page; absent on the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

/// A severity filter by its name, or a 400 naming `severity`.
fn parse_severity(name: &str) -> ApiResult<Severity> {
    match name {
        "critical" => Ok(Severity::Critical),
        "high" => Ok(Severity::High),
        "medium" => Ok(Severity::Medium),
        "low" => Ok(Severity::Low),
        "unknown" => Ok(Severity::Unknown),
        _ => Err(bad_parameter(
            "severity",
            format!("unknown severity {name:?}: critical, high, medium, low or unknown"),
        )),
    }
}

/// A cursor that is a non-negative number, or a 400 naming `cursor`.
fn parse_number_cursor(cursor: Option<&str>, min: i64) -> ApiResult<Option<i64>> {
    match cursor {
        None | Some("") => Ok(None),
        Some(c) => c
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= min)
            .map(Some)
            .ok_or_else(|| bad_parameter("cursor", "not a cursor of this listing")),
    }
}

/// `rows` as a JSON page with its `next` in a `Link` header too.
fn with_link(body: impl Serialize, path: &str, limit: u32, next: Option<&str>) -> Response {
    let mut response = Json(body).into_response();
    if let Some(cursor) = next {
        let sep = if path.contains('?') { '&' } else { '?' };
        let cursor: String = url::form_urlencoded::byte_serialize(cursor.as_bytes()).collect();
        let link = format!("<{path}{sep}limit={limit}&cursor={cursor}>; rel=\"next\"");
        if let Ok(v) = HeaderValue::from_str(&link) {
            response.headers_mut().insert(header::LINK, v);
        }
    }
    response
}

/// The vulnerabilities of an image: the findings stored for its newest successful scan,
/// matched again after every advisory import that concerns it (no blob read), each with the
/// advisory's id, aliases and severity, the package (for Debian, the source package), the
/// installed and fixed versions, the layer, for an index the child's platform, and when it
/// was first and last seen; and their count by severity. A child of a scanned index has
/// the findings its index's scan found in it.
#[utoipa::path(
    get,
    path = "/api/v1/repositories/{name}/-/images/{digest}/vulnerabilities",
    tag = "scanning",
    params(
        ("name" = String, Path, description = "Repository name"),
        ("digest" = String, Path, description = "The manifest's digest"),
        ImageQuery,
    ),
    responses(
        (status = 200, description = "A page of findings, most severe first, and the summary of all", body = ImageVulnerabilityPage),
        (status = 404, description = "No such manifest, or the image was never scanned successfully", body = Problem),
        (status = "4XX", description = "Refused, a malformed digest, an unknown parameter, a bad severity or cursor", body = Problem),
    )
)]
pub(super) async fn image(
    app: &AppState,
    caller: &Caller,
    repo: &RepoName,
    digest: &Digest,
    query: ImageQuery,
) -> ApiResult<Response> {
    caller.require(repo.as_str(), Role::Reporter).await?;
    let limit = Paging {
        limit: query.limit,
        cursor: None,
    }
    .limit()?;
    let skip = parse_number_cursor(query.cursor.as_deref(), 1)?.unwrap_or(0);
    let filter = VulnerabilityFilter {
        min_severity: query
            .severity
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(parse_severity)
            .transpose()?,
        fixable: query.fixable.unwrap_or(false),
    };
    let scanner = match query.scanner.as_deref() {
        None | Some("") | Some("berth") => None,
        Some(name) => Some(Scanner::parse(name).ok_or_else(|| {
            bad_parameter(
                "scanner",
                format!("unknown scanner {name:?}: berth, trivy or grype"),
            )
        })?),
    };
    let reports = app.registry.newest_reports(repo, digest).await?;
    let found = app
        .registry
        .image_vulnerabilities(repo, digest, scanner)
        .await?
        .ok_or_else(|| match scanner {
            None => not_scanned(repo, digest, &reports),
            Some(scanner) => ApiError::not_found(format!(
                "no {} report was imported for {repo}@{digest}; \
                 POST /api/v1/repositories/{repo}/-/images/{digest}/reports",
                scanner.as_str()
            )),
        })?;
    let skip = usize::try_from(skip).unwrap_or(usize::MAX);
    let mut items: Vec<Vulnerability> = found
        .items
        .into_iter()
        .filter(|v| filter.admits(v))
        .skip(skip)
        .take(limit as usize + 1)
        .collect();
    let next = (items.len() > limit as usize).then(|| (skip + limit as usize).to_string());
    items.truncate(limit as usize);
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    if let Some(s) = filter.min_severity {
        form.append_pair("severity", s.as_str());
    }
    if filter.fixable {
        form.append_pair("fixable", "true");
    }
    if let Some(scanner) = scanner {
        form.append_pair("scanner", scanner.as_str());
    }
    let filters = form.finish();
    let mut path = format!("/api/v1/repositories/{repo}/-/images/{digest}/vulnerabilities");
    if !filters.is_empty() {
        path = format!("{path}?{filters}");
    }
    let page = ImageVulnerabilityPage {
        items,
        summary: found.summary,
        suppressed: found.suppressed,
        scanner: scanner.map_or("berth", Scanner::as_str).to_owned(),
        reports,
        next: next.clone(),
    };
    Ok(with_link(page, &path, limit, next.as_deref()))
}

fn not_scanned(repo: &RepoName, digest: &Digest, reports: &[ImportedReport]) -> ApiError {
    let mut imported: Vec<&str> = reports.iter().map(|r| r.scanner.as_str()).collect();
    imported.dedup();
    let also = match imported.as_slice() {
        [] => String::new(),
        names => format!(
            " (reports imported: {})",
            names
                .iter()
                .map(|n| format!("?scanner={n}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    ApiError::not_found(format!(
        "{repo}@{digest} has not been scanned successfully yet; \
         POST /api/v1/repositories/{repo}/-/images/{digest}/scan{also}"
    ))
}

/// What changed in an image's findings, newest first: each finding that appeared (`new`:
/// a scan found the package, or an import named it) or went (`resolved`: a rescan without
/// it, an advisory no longer affecting it), with when.
#[utoipa::path(
    get,
    path = "/api/v1/repositories/{name}/-/images/{digest}/vulnerabilities/changes",
    tag = "scanning",
    params(
        ("name" = String, Path, description = "Repository name"),
        ("digest" = String, Path, description = "The manifest's digest"),
        StrictPaging,
    ),
    responses(
        (status = 200, description = "A page of changes, newest first; `next` leads on", body = Page<FindingChange>),
        (status = 404, description = "No such manifest, or the image was never scanned successfully", body = Problem),
        (status = "4XX", description = "Refused, a malformed digest, an unknown parameter or a bad cursor", body = Problem),
    )
)]
pub(super) async fn changes(
    app: &AppState,
    caller: &Caller,
    repo: &RepoName,
    digest: &Digest,
    query: StrictPaging,
) -> ApiResult<Response> {
    caller.require(repo.as_str(), Role::Reporter).await?;
    let limit = Paging {
        limit: query.limit,
        cursor: None,
    }
    .limit()?;
    let before = parse_number_cursor(query.cursor.as_deref(), 1)?.unwrap_or(0);
    let items = app
        .registry
        .finding_changes(repo, digest, before, limit + 1)
        .await?
        .ok_or_else(|| not_scanned(repo, digest, &[]))?;
    let path = format!("/api/v1/repositories/{repo}/-/images/{digest}/vulnerabilities/changes");
    Ok(paged(items, limit, &path, |c| c.id.to_string()))
}

/// `?namespace=&limit=&cursor=` of the registry-wide view.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct OverviewQuery {
    /// Only the repositories of this namespace (e.g. `team`, or `team/sub`).
    namespace: Option<String>,
    /// Images per page (default 100, at most 1000).
    limit: Option<u32>,
    /// The `next` of the previous page.
    cursor: Option<String>,
}

/// What `GET /api/v1/vulnerabilities` answers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Overview {
    /// Images affected and findings, per severity, over the repositories counted.
    summary: VulnerabilityTotals,
    /// Images with findings, most dangerous first (by critical findings, then high, medium,
    /// low, unknown).
    items: Vec<VulnerableImage>,
    /// The cursor of the next page; absent on the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

/// `c.h.m.l.u.id` as the overview writes it.
fn parse_danger_cursor(cursor: &str) -> ApiResult<(SeverityCounts, i64)> {
    let parts: Vec<i64> = cursor
        .split('.')
        .map(|p| p.parse::<i64>().ok().filter(|n| *n >= 0))
        .collect::<Option<Vec<_>>>()
        .filter(|p| p.len() == 6)
        .ok_or_else(|| bad_parameter("cursor", "not a cursor of this listing"))?;
    Ok((
        SeverityCounts {
            critical: parts[0],
            high: parts[1],
            medium: parts[2],
            low: parts[3],
            unknown: parts[4],
        },
        parts[5],
    ))
}

/// The registry's vulnerabilities: how many images have findings of each severity and how
/// many findings there are, and the most dangerous images (repository, digest, tags and
/// summary; by critical findings, then high, …), paged. Counts only the repositories the
/// caller may pull.
#[utoipa::path(
    get,
    path = "/api/v1/vulnerabilities",
    tag = "scanning",
    params(OverviewQuery),
    responses(
        (status = 200, description = "The summary and a page of the most dangerous images", body = Overview),
        (status = 400, description = "An unknown parameter, a bad namespace, limit or cursor", body = Problem),
    )
)]
async fn overview(
    State(app): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<OverviewQuery>,
) -> ApiResult<Response> {
    let limit = Paging {
        limit: q.limit,
        cursor: None,
    }
    .limit()?;
    let after = match q.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => Some(parse_danger_cursor(c)?),
    };
    let namespace = match q.namespace.as_deref() {
        None | Some("") => String::new(),
        Some(name) => name
            .parse::<RepoName>()
            .map(|n| n.to_string())
            .map_err(|e| bad_parameter("namespace", e))?,
    };
    let viewer = caller.auth().catalog_viewer(&caller.identity);
    let (summary, mut items) = app
        .registry
        .vulnerability_overview(&viewer, &namespace, after, limit + 1)
        .await?;
    let next = (items.len() > limit as usize)
        .then(|| items.get(limit as usize - 1).map(|i| i.cursor.clone()))
        .flatten();
    items.truncate(limit as usize);
    let mut path = String::from("/api/v1/vulnerabilities");
    if !namespace.is_empty() {
        let ns: String = url::form_urlencoded::byte_serialize(namespace.as_bytes()).collect();
        path = format!("{path}?namespace={ns}");
    }
    let body = Overview {
        summary,
        items,
        next: next.clone(),
    };
    Ok(with_link(body, &path, limit, next.as_deref()))
}

/// What `GET /api/v1/vulnerabilities/{id}` answers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct AdvisoryView {
    /// The id asked for.
    id: String,
    /// The advisories it names: the advisory of that id, or those listing it as an alias.
    advisories: Vec<AdvisorySummary>,
    /// A page of the findings of those advisories in the images the caller may pull, by
    /// image (every finding of an image on the same page).
    images: Vec<AffectedImage>,
    /// Per repository with an affected image, its tags whose image was scanned and has no
    /// such finding: where it is fixed.
    fixed_in: Vec<FixedTags>,
    /// The cursor of the next page of images; absent on the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

/// One advisory across the registry, by its id or a CVE id it names as an alias: the
/// advisories, the images affected (repository, digest, tags, package, installed and fixed
/// version), paged by image, and per repository the tags where it is fixed. Only the
/// repositories the caller may pull are shown.
#[utoipa::path(
    get,
    path = "/api/v1/vulnerabilities/{id}",
    tag = "scanning",
    params(
        ("id" = String, Path, description = "An advisory id, or a CVE id an advisory names"),
        StrictPaging,
    ),
    responses(
        (status = 200, description = "The advisories, a page of affected images, the fixed tags", body = AdvisoryView),
        (status = 400, description = "An unknown parameter, a bad limit or cursor", body = Problem),
        (status = 404, description = "No stored advisory is or names this id", body = Problem),
    )
)]
async fn advisory(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<StrictPaging>,
) -> ApiResult<Response> {
    let limit = Paging {
        limit: q.limit,
        cursor: None,
    }
    .limit()?;
    let after = parse_number_cursor(q.cursor.as_deref(), 1)?.unwrap_or(0);
    let viewer = caller.auth().catalog_viewer(&caller.identity);
    let impact = app
        .registry
        .advisory_impact(&viewer, &id, after, limit + 1)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no advisory is or names {id:?}")))?;
    let mut images = impact.images;
    // `limit + 1` images were read: the rows of the extra one only say a page follows.
    let mut seen = 0;
    let mut last = None;
    let mut next = None;
    images.retain(|image| {
        if last != Some(image.manifest_id) {
            seen += 1;
            if seen > limit {
                next = last;
            }
            last = Some(image.manifest_id);
        }
        seen <= limit
    });
    let next = next.map(|id: i64| id.to_string());
    let id_path: String = url::form_urlencoded::byte_serialize(id.as_bytes()).collect();
    let path = format!("/api/v1/vulnerabilities/{id_path}");
    let body = AdvisoryView {
        id,
        advisories: impact
            .advisories
            .into_iter()
            .map(AdvisorySummary::from)
            .collect(),
        images,
        fixed_in: impact.fixed_in,
        next: next.clone(),
    };
    Ok(with_link(body, &path, limit, next.as_deref()))
}
