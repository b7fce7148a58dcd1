//! `/api/v1/advisories`: importing OSV advisories (administrators) and reading them back
//! (anyone signed in). An import takes one record, a JSON array of them, or a zip of such
//! files; the answer counts what was stored and names what was refused.

use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, FromRequest, Path, Request, State},
    http::{StatusCode, header},
    response::Response,
    routing::get,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ApiError, ApiQuery, ApiResult, Caller, Page, Paging, Problem, paged};
use crate::{
    error::Error,
    registry::{Advisory, ImportReport},
    state::AppState,
};

/// The largest import body (256 MiB): a zip of a whole ecosystem's records fits.
pub const MAX_IMPORT_BYTES: usize = 256 << 20;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/advisories",
            get(list)
                .post(import)
                .layer(DefaultBodyLimit::max(MAX_IMPORT_BYTES)),
        )
        .route("/advisories/{id}", get(show))
}

/// A stored advisory as listed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AdvisorySummary {
    /// The record's id (e.g. `CVE-2024-1234`, `DSA-5678-1`).
    pub id: String,
    /// Other ids of the same vulnerability.
    pub aliases: Vec<String>,
    /// The one-line summary.
    pub summary: Option<String>,
    /// critical, high, medium, low or unknown.
    pub severity: String,
    /// When it was published (RFC 3339, UTC).
    pub published: Option<String>,
    /// When it last changed (RFC 3339, UTC).
    pub modified: String,
}

/// One package an advisory affects.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AffectedSummary {
    /// The OSV ecosystem, e.g. `Debian:12`.
    pub ecosystem: String,
    /// The package name (for Debian, the source package).
    pub package: String,
    /// The package URL, when the record gives one.
    pub purl: Option<String>,
    /// OSV ranges: `{"type", "events": [{"introduced"|"fixed"|"last_affected"|"limit"}]}`.
    #[schema(value_type = Vec<Object>)]
    pub ranges: Value,
    /// Affected versions listed one by one.
    pub versions: Vec<String>,
}

/// An advisory with the packages it affects.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AdvisoryDetail {
    /// The advisory.
    #[serde(flatten)]
    pub advisory: AdvisorySummary,
    /// The packages it affects.
    pub affected: Vec<AffectedSummary>,
}

impl From<crate::meta::advisories::AdvisoryRow> for AdvisorySummary {
    fn from(row: crate::meta::advisories::AdvisoryRow) -> Self {
        AdvisorySummary {
            id: row.id,
            aliases: row.aliases,
            summary: row.summary,
            severity: row.severity,
            published: row.published,
            modified: row.modified,
        }
    }
}

impl From<Advisory> for AdvisoryDetail {
    fn from(advisory: Advisory) -> Self {
        AdvisoryDetail {
            advisory: advisory.record.into(),
            affected: advisory
                .packages
                .into_iter()
                .map(|p| AffectedSummary {
                    ecosystem: p.ecosystem,
                    package: p.package,
                    purl: p.purl,
                    ranges: serde_json::to_value(&p.ranges).unwrap_or_default(),
                    versions: p.versions,
                })
                .collect(),
        }
    }
}

/// An OSV record as `POST /api/v1/advisories` takes it (for the OpenAPI document; the body
/// is read by [`crate::scan::osv`], which keeps unknown fields out of the way). The body may
/// also be a JSON array of records, or a zip of `*.json` files holding either.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Only its schema is used.
struct OsvRecordBody {
    /// The advisory's id, e.g. `CVE-2024-1234`, `DSA-5678-1`.
    id: String,
    /// Other ids of the same vulnerability.
    aliases: Option<Vec<String>>,
    /// When the record last changed (RFC 3339); a stored record is replaced only by a later
    /// one.
    modified: String,
    /// When it was published (RFC 3339).
    published: Option<String>,
    /// When it was withdrawn: it then affects nothing.
    withdrawn: Option<String>,
    /// A one-line summary.
    summary: Option<String>,
    /// The description.
    details: Option<String>,
    /// `[{"type": "CVSS_V3"|"CVSS_V4"|"CVSS_V2"|…, "score": vector or word}]`.
    #[schema(value_type = Option<Vec<Object>>)]
    severity: Option<Value>,
    /// `[{"package": {"ecosystem", "name", "purl"}, "ranges": [{"type":
    /// "ECOSYSTEM"|"SEMVER"|"GIT", "events": [{"introduced"|"fixed"|"last_affected"|"limit":
    /// version}]}], "versions", "ecosystem_specific", "database_specific"}]`.
    #[schema(value_type = Option<Vec<Object>>)]
    affected: Option<Value>,
    /// The database's own fields (e.g. a distribution's `urgency`).
    #[schema(value_type = Option<Object>)]
    database_specific: Option<Value>,
}

/// `?ecosystem=&package=&limit=&cursor=` of the listing.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct AdvisoryQuery {
    /// Only advisories affecting a package of this OSV ecosystem (e.g. `Debian:12`).
    ecosystem: Option<String>,
    /// Only advisories affecting a package of this name.
    package: Option<String>,
    /// Items per page (default 100, at most 1000).
    limit: Option<u32>,
    /// The `next` of the previous page.
    cursor: Option<String>,
}

/// Refuses anonymous callers.
fn require_signed_in(caller: &Caller) -> ApiResult<()> {
    if caller.identity.is_anonymous() {
        return Err(Error::Unauthorized("sign in first".into()).into());
    }
    Ok(())
}

/// Imports OSV records (administrators): one record or a JSON array of them
/// (`application/json`), or a zip of `*.json` files holding either (`application/zip`).
/// A record replaces the stored one of its id only when its `modified` is later; malformed
/// records are refused one by one and the others imported.
#[utoipa::path(
    post,
    path = "/api/v1/advisories",
    tag = "advisories",
    request_body(content = OsvRecordBody, description = "One OSV record, a JSON array of them (`application/json`), or a zip of such files (`application/zip`)", content_type = "application/json"),
    responses(
        (status = 200, description = "Imported: counts, and each refused record with the reason", body = ImportReport),
        (status = 400, description = "The body is not JSON, or not a zip", body = Problem),
        (status = 401, description = "Sign in first", body = Problem),
        (status = 403, description = "Administrators only", body = Problem),
        (status = 413, description = "The body is over 256 MiB", body = Problem),
        (status = 415, description = "Neither application/json nor application/zip", body = Problem),
    )
)]
async fn import(
    State(app): State<AppState>,
    caller: Caller,
    request: Request,
) -> ApiResult<Json<ImportReport>> {
    caller.require_admin()?;
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let zip = match content_type.as_str() {
        "application/json" => false,
        "application/zip" | "application/x-zip-compressed" => true,
        other => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED",
                format!(
                    "content type {other:?}: send application/json (a record or an array) \
                     or application/zip"
                ),
            ));
        }
    };
    let too_large = || -> ApiError {
        Error::TooLarge {
            message: format!(
                "the body is over {MAX_IMPORT_BYTES} bytes: import a larger database with \
                 `berth advisories import`"
            ),
        }
        .into()
    };
    // A declared length over the cap is refused before anything is read.
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_IMPORT_BYTES as u64) {
        return Err(too_large());
    }
    let body = Bytes::from_request(request, &app).await.map_err(|e| {
        let status = e.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            too_large()
        } else {
            ApiError::new(status, "BAD_REQUEST", e.body_text())
        }
    })?;
    let report = app
        .registry
        .import_advisories(body, zip)
        .await
        .map_err(|e| match e {
            Error::BadRequest(why) => ApiError::bad_request(why),
            other => other.into(),
        })?;
    let detail = serde_json::json!({
        "imported": report.imported,
        "unchanged": report.unchanged,
        "rejected": report.rejected_count,
    })
    .to_string();
    caller
        .auth()
        .audit(
            &caller.identity.name,
            None,
            "advisories.import",
            None,
            Some(&detail),
        )
        .await;
    Ok(Json(report))
}

/// An advisory with the packages it affects (anyone signed in).
#[utoipa::path(
    get,
    path = "/api/v1/advisories/{id}",
    tag = "advisories",
    params(("id" = String, Path, description = "The advisory's id, e.g. CVE-2024-1234")),
    responses(
        (status = 200, description = "The advisory", body = AdvisoryDetail),
        (status = 401, description = "Sign in first", body = Problem),
        (status = 404, description = "No advisory of that id", body = Problem),
    )
)]
async fn show(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<AdvisoryDetail>> {
    require_signed_in(&caller)?;
    match app.registry.advisory(&id).await? {
        Some(advisory) => Ok(Json(advisory.into())),
        None => Err(ApiError::not_found(format!("no advisory {id:?}"))),
    }
}

/// Advisories in id order (anyone signed in), optionally only those affecting a package
/// of an ecosystem.
#[utoipa::path(
    get,
    path = "/api/v1/advisories",
    tag = "advisories",
    params(AdvisoryQuery),
    responses(
        (status = 200, description = "A page of advisories; `next` and `Link` lead on", body = Page<AdvisorySummary>),
        (status = 400, description = "An unknown parameter or a bad limit", body = Problem),
        (status = 401, description = "Sign in first", body = Problem),
    )
)]
async fn list(
    State(app): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<AdvisoryQuery>,
) -> ApiResult<Response> {
    require_signed_in(&caller)?;
    let given = |v: &Option<String>| v.as_deref().filter(|v| !v.is_empty()).map(str::to_owned);
    let (ecosystem, package) = (given(&query.ecosystem), given(&query.package));
    let paging = Paging {
        limit: query.limit,
        cursor: query.cursor.clone(),
    };
    let limit = paging.limit()?;
    let rows = app
        .registry
        .advisories(
            ecosystem.as_deref(),
            package.as_deref(),
            paging.cursor(),
            limit + 1,
        )
        .await?;
    let mut path = String::from("/api/v1/advisories");
    let filters: Vec<String> = [("ecosystem", &ecosystem), ("package", &package)]
        .into_iter()
        .filter_map(|(key, value)| {
            let value: String =
                url::form_urlencoded::byte_serialize(value.as_ref()?.as_bytes()).collect();
            Some(format!("{key}={value}"))
        })
        .collect();
    if !filters.is_empty() {
        path.push('?');
        path.push_str(&filters.join("&"));
    }
    let items: Vec<AdvisorySummary> = rows.into_iter().map(AdvisorySummary::from).collect();
    Ok(paged(items, limit, &path, |a| a.id.clone()))
}
