//! `/api/v1/repositories/{name}/-/images/{digest}/{scan,scans,packages,sbom,reports,vulnerabilities}`:
//! scanning an image (queued, or at once with `?wait=true`), its scan history, the inventory
//! of installed packages its newest successful scan found and that inventory as a CycloneDX
//! or SPDX document, and the reports of other scanners (Trivy, Grype) imported for it; its
//! findings are routed from here to [`super::vulnerabilities`].

use axum::{
    Json,
    extract::{FromRequest, FromRequestParts},
    http::{Method, StatusCode},
    response::{IntoResponse, Response},
};
use serde::Deserialize;

use super::{ApiError, ApiResult, Caller, Page, Problem, StrictPaging, images, paged};
use crate::{
    auth::Role,
    oci::{Digest, RepoName},
    registry::{ImagePackage, ImportedReport, PackageFilter, ScanRecord},
    scan::sbom::Format,
    state::AppState,
};

/// The scanning sub-resources of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ScanResource {
    /// `…/scan`.
    Scan,
    /// `…/scans`.
    Scans,
    /// `…/packages`.
    Packages,
    /// `…/sbom`.
    Sbom,
    /// `…/vulnerabilities`.
    Vulnerabilities,
    /// `…/vulnerabilities/changes`.
    VulnerabilityChanges,
    /// `…/reports`.
    Reports,
}

/// `images/{digest}/scan` and the like: the digest and the resource, when `sub` is one.
pub(super) fn scan_resource(sub: &str) -> Option<(&str, ScanResource)> {
    let rest = sub.strip_prefix("images/")?;
    let (digest, resource) = rest.split_once('/')?;
    let resource = match resource {
        "scan" => ScanResource::Scan,
        "scans" => ScanResource::Scans,
        "packages" => ScanResource::Packages,
        "sbom" => ScanResource::Sbom,
        "vulnerabilities" => ScanResource::Vulnerabilities,
        "vulnerabilities/changes" => ScanResource::VulnerabilityChanges,
        "reports" => ScanResource::Reports,
        _ => return None,
    };
    Some((digest, resource))
}

/// `?wait=` of a scan request.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ScanQuery {
    /// `true`: scan now and answer with the scan's record (200) instead of queueing (202).
    #[serde(default)]
    wait: bool,
}

/// The optional body of a scan request (`{"wait": true}` is the same as `?wait=true`).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ScanBody {
    /// Scan now and answer with the scan's record (200) instead of queueing (202).
    #[serde(default)]
    wait: bool,
}

/// The inventory listing's query; any other parameter is refused, naming it.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct PackagesQuery {
    /// Only packages of this OSV ecosystem (`Debian:12`, `Alpine:v3.19`).
    ecosystem: Option<String>,
    /// Only packages whose binary or source package has this name.
    name: Option<String>,
    /// Items per page (default 100, at most 1000).
    limit: Option<u32>,
    /// The `next` of the previous page (valid with the same filters).
    cursor: Option<String>,
}

/// The bill of materials' query; any other parameter is refused, naming it.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct SbomQuery {
    /// `cyclonedx` (CycloneDX 1.5 JSON, the default) or `spdx` (SPDX 2.3 JSON).
    format: Option<String>,
}

/// `{"status": "queued"}`, the answer to a queued scan.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct Queued {
    /// Always `queued`.
    status: String,
}

/// Scans an image: its layers not read before are read once, merged into the image's
/// inventory, and the scan recorded. For an index, every child but attestation manifests.
/// Queued (202) unless `?wait=true`. Needs the push right on the repository.
#[utoipa::path(
    post,
    path = "/api/v1/repositories/{name}/-/images/{digest}/scan",
    tag = "scanning",
    params(
        ("name" = String, Path, description = "Repository name"),
        ("digest" = String, Path, description = "The manifest's digest"),
        ScanQuery,
    ),
    request_body(content = ScanBody, description = "Optional; `{\"wait\": true}` as `?wait=true`"),
    responses(
        (status = 200, description = "Scanned (`?wait=true`); the record says whether a layer could not be read", body = ScanRecord),
        (status = 202, description = "Queued", body = Queued),
        (status = 404, description = "No such manifest in the repository (`MANIFEST_UNKNOWN`)", body = Problem),
        (status = "4XX", description = "Refused, a malformed digest or an unknown parameter", body = Problem),
    )
)]
pub(super) async fn scan(
    app: &AppState,
    caller: &Caller,
    repo: &RepoName,
    digest: &Digest,
    query: ScanQuery,
    body: ScanBody,
) -> ApiResult<Response> {
    images::grant_needing(caller, repo, |g| g.push, "push").await?;
    if query.wait || body.wait {
        let record = app.registry.scan_image(repo, digest).await?;
        return Ok(Json(record).into_response());
    }
    app.registry.queue_scan(repo, digest).await?;
    let queued = Queued {
        status: "queued".to_owned(),
    };
    Ok((StatusCode::ACCEPTED, Json(queued)).into_response())
}

/// The scans of an image, newest first: when, by which indexer version, what they found and
/// how long they took.
#[utoipa::path(
    get,
    path = "/api/v1/repositories/{name}/-/images/{digest}/scans",
    tag = "scanning",
    params(
        ("name" = String, Path, description = "Repository name"),
        ("digest" = String, Path, description = "The manifest's digest"),
        StrictPaging,
    ),
    responses(
        (status = 200, description = "A page of scans; `next` leads on", body = Page<ScanRecord>),
        (status = 404, description = "No such manifest in the repository (`MANIFEST_UNKNOWN`)", body = Problem),
        (status = "4XX", description = "Refused, a malformed digest or a bad parameter", body = Problem),
    )
)]
pub(super) async fn scans(
    app: &AppState,
    caller: &Caller,
    repo: &RepoName,
    digest: &Digest,
    query: StrictPaging,
) -> ApiResult<Response> {
    caller.require(repo.as_str(), Role::Reporter).await?;
    let limit = super::Paging {
        limit: query.limit,
        cursor: None,
    }
    .limit()?;
    let before = before_id(query.cursor.as_deref())?;
    let items = app
        .registry
        .image_scans(repo, digest, before, limit + 1)
        .await?;
    let path = format!("/api/v1/repositories/{repo}/-/images/{digest}/scans");
    Ok(paged(items, limit, &path, |s| s.id.to_string()))
}

/// The packages installed in an image, as its newest successful scan found them: each with
/// its OSV ecosystem, binary and source package and versions, purl, the layer that
/// introduced it and, for an index, the platform of the child it was found in.
#[utoipa::path(
    get,
    path = "/api/v1/repositories/{name}/-/images/{digest}/packages",
    tag = "scanning",
    params(
        ("name" = String, Path, description = "Repository name"),
        ("digest" = String, Path, description = "The manifest's digest"),
        PackagesQuery,
    ),
    responses(
        (status = 200, description = "A page of packages; `next` leads on", body = Page<ImagePackage>),
        (status = 404, description = "No such manifest, or the image was never scanned successfully", body = Problem),
        (status = "4XX", description = "Refused, a malformed digest, an unknown parameter or a bad cursor", body = Problem),
    )
)]
pub(super) async fn packages(
    app: &AppState,
    caller: &Caller,
    repo: &RepoName,
    digest: &Digest,
    query: PackagesQuery,
) -> ApiResult<Response> {
    caller.require(repo.as_str(), Role::Reporter).await?;
    let limit = super::Paging {
        limit: query.limit,
        cursor: None,
    }
    .limit()?;
    let after = match query.cursor.as_deref() {
        None | Some("") => -1,
        Some(c) => c
            .parse::<i64>()
            .ok()
            .filter(|seq| *seq >= 0)
            .ok_or_else(|| {
                ApiError::bad_request("cursor: not a cursor of this listing")
                    .with_details(images::param("cursor"))
            })?,
    };
    let given = |v: Option<String>| v.filter(|v| !v.is_empty());
    let filter = PackageFilter {
        ecosystem: given(query.ecosystem),
        name: given(query.name),
    };
    let items = app
        .registry
        .image_packages(repo, digest, &filter, after, limit + 1)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "{repo}@{digest} has not been scanned successfully yet; \
                 POST /api/v1/repositories/{repo}/-/images/{digest}/scan"
            ))
        })?;
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    for (key, value) in [("ecosystem", &filter.ecosystem), ("name", &filter.name)] {
        if let Some(v) = value {
            form.append_pair(key, v);
        }
    }
    let filters = form.finish();
    let mut path = format!("/api/v1/repositories/{repo}/-/images/{digest}/packages");
    if !filters.is_empty() {
        path = format!("{path}?{filters}");
    }
    Ok(paged(items, limit, &path, |p| p.seq.to_string()))
}

/// The image's inventory, as its newest successful scan found it, as a software bill of
/// materials to download: CycloneDX 1.5 JSON (default) or SPDX 2.3 JSON. Each package with
/// its package URL, source package, the layer that introduced it and, for an index, the
/// platform of the child it was found in. Needs the pull right.
#[utoipa::path(
    get,
    path = "/api/v1/repositories/{name}/-/images/{digest}/sbom",
    tag = "scanning",
    params(
        ("name" = String, Path, description = "Repository name"),
        ("digest" = String, Path, description = "The manifest's digest"),
        SbomQuery,
    ),
    responses(
        (status = 200, description = "The document (`application/vnd.cyclonedx+json; version=1.5` or `application/spdx+json`), as an attachment", body = Object),
        (status = 404, description = "No such manifest, or the image was never scanned successfully", body = Problem),
        (status = "4XX", description = "Refused, a malformed digest, an unknown format or parameter", body = Problem),
    )
)]
pub(super) async fn sbom(
    app: &AppState,
    caller: &Caller,
    repo: &RepoName,
    digest: &Digest,
    query: SbomQuery,
) -> ApiResult<Response> {
    caller.require(repo.as_str(), Role::Reporter).await?;
    let format = match query.format.as_deref() {
        None | Some("") => Format::CycloneDx,
        Some(name) => Format::parse(name).ok_or_else(|| {
            ApiError::bad_request(format!("format: {name:?} is not one of cyclonedx, spdx"))
                .with_details(images::param("format"))
        })?,
    };
    let document = app
        .registry
        .image_sbom(repo, digest, format)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "{repo}@{digest} has not been scanned successfully yet; \
                 POST /api/v1/repositories/{repo}/-/images/{digest}/scan"
            ))
        })?;
    let hex = digest.to_string();
    let hex = hex.split_once(':').map_or(hex.as_str(), |(_, h)| h);
    let file = format!(
        "{}-{}.{}",
        repo.as_str().replace('/', "_"),
        &hex[..hex.len().min(12)],
        format.suffix()
    );
    Ok((
        [
            (
                axum::http::header::CONTENT_TYPE,
                format.media_type().to_owned(),
            ),
            (
                axum::http::header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file}\""),
            ),
        ],
        document.to_string(),
    )
        .into_response())
}

/// The id cursor of a listing newest first (scans, reports): 0 for the first page.
fn before_id(cursor: Option<&str>) -> ApiResult<i64> {
    match cursor {
        None | Some("") => Ok(0),
        Some(c) => c.parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(|| {
            ApiError::bad_request("cursor: not a cursor of this listing")
                .with_details(images::param("cursor"))
        }),
    }
}

/// A report as `POST …/reports` takes it (for the OpenAPI document; the body is read by
/// [`crate::scan::reports`]): Trivy's fields or Grype's, the others of each ignored.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Only its schema is used.
#[schema(rename_all = "camelCase")]
struct ReportBody {
    /// Trivy: `2`.
    #[schema(rename = "SchemaVersion")]
    schema_version: Option<i64>,
    /// Trivy: `container_image`.
    #[schema(rename = "ArtifactType")]
    artifact_type: Option<String>,
    /// Trivy: `{"ImageID", "RepoDigests"}`, the image's config and manifest digests.
    #[schema(rename = "Metadata", value_type = Option<Object>)]
    metadata: Option<serde_json::Value>,
    /// Trivy: `[{"Vulnerabilities": [{"VulnerabilityID", "VendorIDs", "PkgName",
    /// "InstalledVersion", "FixedVersion", "Severity", "Layer": {"Digest", "DiffID"}}]}]`.
    #[schema(rename = "Results", value_type = Option<Vec<Object>>)]
    results: Option<serde_json::Value>,
    /// Trivy: `{"Version"}`.
    #[schema(rename = "Trivy", value_type = Option<Object>)]
    trivy: Option<serde_json::Value>,
    /// Grype: `[{"vulnerability": {"id", "severity", "fix": {"versions"}},
    /// "relatedVulnerabilities": [{"id"}], "artifact": {"name", "version", "locations":
    /// [{"layerID"}]}}]`.
    #[schema(value_type = Option<Vec<Object>>)]
    matches: Option<serde_json::Value>,
    /// Grype: `{"type": "image", "target": {"imageID", "manifestDigest", "repoDigests"}}`.
    #[schema(value_type = Option<Object>)]
    source: Option<serde_json::Value>,
    /// Grype: `{"name": "grype", "version"}`.
    #[schema(value_type = Option<Object>)]
    descriptor: Option<serde_json::Value>,
}

/// The largest report imported (64 MiB: Trivy's JSON of a large image, descriptions
/// included, is a few MiB).
pub const MAX_REPORT_BYTES: usize = 64 << 20;

/// Imports a vulnerability report another scanner wrote for the image: Trivy's JSON (`trivy
/// image -f json`, schema version 2) or Grype's (`grype -o json`). The report must name this
/// image (its manifest or config digest), or for an index one of its images, which the
/// import then names with its platform; each finding's layer is mapped from the report's
/// DiffID to the layer blob. The findings are then shown under `…/vulnerabilities?scanner=`;
/// the scanning policy judges Berth's own scan. Needs the push right.
#[utoipa::path(
    post,
    path = "/api/v1/repositories/{name}/-/images/{digest}/reports",
    tag = "scanning",
    params(
        ("name" = String, Path, description = "Repository name"),
        ("digest" = String, Path, description = "The manifest's digest"),
    ),
    request_body(content = ReportBody, description = "A Trivy or Grype JSON report", content_type = "application/json"),
    responses(
        (status = 201, description = "Imported", body = ImportedReport),
        (status = 400, description = "Not a Trivy or Grype report, of another image, naming a layer the image has not, or malformed", body = Problem),
        (status = 404, description = "No such manifest in the repository (`MANIFEST_UNKNOWN`)", body = Problem),
        (status = 413, description = "Over 64 MiB", body = Problem),
        (status = "4XX", description = "Refused, or a malformed digest", body = Problem),
    )
)]
pub(super) async fn import_report(
    app: &AppState,
    caller: &Caller,
    repo: &RepoName,
    digest: &Digest,
    request: axum::extract::Request,
) -> ApiResult<Response> {
    images::grant_needing(caller, repo, |g| g.push, "push").await?;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "SIZE_INVALID",
            format!("the report is over {MAX_REPORT_BYTES} bytes"),
        )
    };
    // A declared length over the cap is refused before anything is read.
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_REPORT_BYTES as u64) {
        return Err(too_large());
    }
    let body = axum::body::to_bytes(request.into_body(), MAX_REPORT_BYTES)
        .await
        .map_err(|e| {
            let e = e.into_inner();
            if e.is::<http_body_util::LengthLimitError>() {
                too_large()
            } else {
                ApiError::bad_request(format!("reading the report: {e}"))
            }
        })?;
    let report = app
        .registry
        .import_report(repo, digest, &body, &caller.identity.name)
        .await?;
    Ok((StatusCode::CREATED, Json(report)).into_response())
}

/// The reports imported for an image (or for an index naming it), newest first: scanner,
/// version, the image it is about, who imported it when, and its counts by severity.
#[utoipa::path(
    get,
    path = "/api/v1/repositories/{name}/-/images/{digest}/reports",
    tag = "scanning",
    params(
        ("name" = String, Path, description = "Repository name"),
        ("digest" = String, Path, description = "The manifest's digest"),
        StrictPaging,
    ),
    responses(
        (status = 200, description = "A page of imported reports; `next` leads on", body = Page<ImportedReport>),
        (status = 404, description = "No such manifest in the repository (`MANIFEST_UNKNOWN`)", body = Problem),
        (status = "4XX", description = "Refused, a malformed digest or a bad parameter", body = Problem),
    )
)]
pub(super) async fn reports(
    app: &AppState,
    caller: &Caller,
    repo: &RepoName,
    digest: &Digest,
    query: StrictPaging,
) -> ApiResult<Response> {
    caller.require(repo.as_str(), Role::Reporter).await?;
    let limit = super::Paging {
        limit: query.limit,
        cursor: None,
    }
    .limit()?;
    let before = before_id(query.cursor.as_deref())?;
    let items = app
        .registry
        .imported_reports(repo, digest, before, limit + 1)
        .await?;
    let path = format!("/api/v1/repositories/{repo}/-/images/{digest}/reports");
    Ok(paged(items, limit, &path, |r| r.id.to_string()))
}

/// Routes `sub`, one of the scanning sub-resources of `images/{digest}` ([`scan_resource`]).
pub(super) async fn route(
    app: &AppState,
    caller: &Caller,
    repo: &RepoName,
    sub: &str,
    method: Method,
    request: axum::extract::Request,
) -> ApiResult<Response> {
    let Some((digest, resource)) = scan_resource(sub) else {
        return Err(ApiError::not_found(format!(
            "no resource {sub:?} under a repository"
        )));
    };
    let digest: Digest = digest.parse().map_err(|e| {
        ApiError::bad_request(format!("digest: {e}")).with_details(images::param("digest"))
    })?;
    let (mut parts, body) = request.into_parts();
    match (resource, method) {
        (ScanResource::Scan, Method::POST) => {
            let super::ApiQuery(query) =
                super::ApiQuery::from_request_parts(&mut parts, app).await?;
            let request = axum::extract::Request::from_parts(parts, body);
            let super::OptionalJson(body) = super::OptionalJson::from_request(request, app).await?;
            scan(app, caller, repo, &digest, query, body).await
        }
        (ScanResource::Scans, Method::GET) => {
            let super::ApiQuery(query) =
                super::ApiQuery::from_request_parts(&mut parts, app).await?;
            scans(app, caller, repo, &digest, query).await
        }
        (ScanResource::Packages, Method::GET) => {
            let super::ApiQuery(query) =
                super::ApiQuery::from_request_parts(&mut parts, app).await?;
            packages(app, caller, repo, &digest, query).await
        }
        (ScanResource::Sbom, Method::GET) => {
            let super::ApiQuery(query) =
                super::ApiQuery::from_request_parts(&mut parts, app).await?;
            sbom(app, caller, repo, &digest, query).await
        }
        (ScanResource::Vulnerabilities, Method::GET) => {
            let super::ApiQuery(query) =
                super::ApiQuery::from_request_parts(&mut parts, app).await?;
            super::vulnerabilities::image(app, caller, repo, &digest, query).await
        }
        (ScanResource::Reports, Method::POST) => {
            let request = axum::extract::Request::from_parts(parts, body);
            import_report(app, caller, repo, &digest, request).await
        }
        (ScanResource::Reports, Method::GET) => {
            let super::ApiQuery(query) =
                super::ApiQuery::from_request_parts(&mut parts, app).await?;
            reports(app, caller, repo, &digest, query).await
        }
        (ScanResource::VulnerabilityChanges, Method::GET) => {
            let super::ApiQuery(query) =
                super::ApiQuery::from_request_parts(&mut parts, app).await?;
            super::vulnerabilities::changes(app, caller, repo, &digest, query).await
        }
        _ => Err(super::method_not_allowed_problem()),
    }
}
