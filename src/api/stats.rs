//! `/api/v1/stats`: usage figures. The registry's totals, the most pulled repositories, tags
//! or (for administrators) identities over a window, and a daily time series of pulls,
//! HEADs, pushes and bytes served; in one namespace or everywhere; each as JSON, or as CSV
//! with `format=csv` or `Accept: text/csv`.
//!
//! Every figure counts only the repositories the caller may read: an administrator sees the
//! registry, anyone else the repositories open to them (an anonymous caller the public ones).
//! Days are UTC days.

use axum::{
    Json, Router,
    extract::State,
    http::{HeaderMap, HeaderValue, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde::{Deserialize, Serialize};

use super::{ApiQuery, ApiResult, Caller, Problem, bad_parameter, repositories::require_readable};
use crate::{
    oci::RepoName,
    registry::{Interval, TREND_DAYS_MAX, TrendBucket},
    state::AppState,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/stats", get(totals))
        .route("/stats/popular", get(popular))
        .route("/stats/trends", get(trends))
}

/// Whether the answer is CSV: `format=csv`, or no `format` and an `Accept` naming
/// `text/csv`. Any other `format` than `json` or `csv` is refused.
fn wants_csv(format: Option<&str>, headers: &HeaderMap) -> ApiResult<bool> {
    match format {
        Some("csv") => Ok(true),
        Some("json") => Ok(false),
        Some(other) => Err(bad_parameter(
            "format",
            format!("unknown format {other:?}: json or csv"),
        )),
        None => Ok(headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/csv"))),
    }
}

/// `text` as one CSV field (RFC 4180): quoted when it holds a comma, quote or line break.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// A CSV body of lines already written.
fn csv(lines: String) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/csv; charset=utf-8"),
        )],
        lines,
    )
        .into_response()
}

/// A `namespace` parameter ("" without one), or a 400 naming it.
fn parse_namespace(namespace: Option<&str>) -> ApiResult<String> {
    match namespace {
        None | Some("") => Ok(String::new()),
        Some(name) => name
            .parse::<RepoName>()
            .map(|n| n.to_string())
            .map_err(|e| bad_parameter("namespace", e)),
    }
}

/// The query of `GET /api/v1/stats`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct TotalsQuery {
    /// Only the repositories of this namespace (e.g. `team`, or `team/sub`).
    namespace: Option<String>,
    /// `json` (default) or `csv`.
    format: Option<String>,
}

/// Counts over the last day, 7 days and 30 days (today included).
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Windows {
    /// Today (UTC).
    today: i64,
    /// The last 7 days.
    last_7_days: i64,
    /// The last 30 days.
    last_30_days: i64,
}

/// The registry's totals, over what the caller may read.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct StatsTotals {
    /// The namespace counted, when one was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<String>,
    /// Repositories.
    repositories: i64,
    /// Manifests (images, indexes, artifacts).
    manifests: i64,
    /// Tags.
    tags: i64,
    /// Blobs, each once however many repositories link it (for an administrator every
    /// stored blob, including those awaiting collection).
    blobs: i64,
    /// Bytes of those blobs (the deduplicated size).
    bytes: i64,
    /// Bytes that deleting the repositories counted would free: blobs they link and no other
    /// repository does (for the whole registry, every stored blob).
    exclusive_bytes: i64,
    /// Manifest GETs.
    pulls: Windows,
    /// Manifest PUTs.
    pushes: Windows,
}

/// Totals: repositories, manifests, tags, blobs, bytes and exclusive bytes; pulls and pushes
/// today, over 7 and over 30 days; in one namespace or everywhere. An administrator sees the
/// registry; anyone else the repositories they may read.
#[utoipa::path(
    get,
    path = "/api/v1/stats",
    tag = "stats",
    params(TotalsQuery),
    responses(
        (status = 200, description = "The totals (JSON, or `metric,value` CSV)", body = StatsTotals),
        (status = 400, description = "An unknown parameter or format; the message names it", body = Problem),
    )
)]
async fn totals(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<TotalsQuery>,
) -> ApiResult<Response> {
    let as_csv = wants_csv(q.format.as_deref(), &headers)?;
    let namespace = parse_namespace(q.namespace.as_deref())?;
    let viewer = caller.auth().catalog_viewer(&caller.identity);
    let t = app.registry.usage_totals(&viewer, &namespace).await?;
    let shown = StatsTotals {
        namespace: (!namespace.is_empty()).then_some(namespace),
        repositories: t.repositories,
        manifests: t.manifests,
        tags: t.tags,
        blobs: t.blobs,
        bytes: t.bytes,
        exclusive_bytes: t.exclusive_bytes,
        pulls: Windows {
            today: t.pulls_today,
            last_7_days: t.pulls_7d,
            last_30_days: t.pulls_30d,
        },
        pushes: Windows {
            today: t.pushes_today,
            last_7_days: t.pushes_7d,
            last_30_days: t.pushes_30d,
        },
    };
    if !as_csv {
        return Ok(Json(shown).into_response());
    }
    let mut lines = String::from("metric,value\n");
    for (metric, value) in [
        ("repositories", shown.repositories),
        ("manifests", shown.manifests),
        ("tags", shown.tags),
        ("blobs", shown.blobs),
        ("bytes", shown.bytes),
        ("exclusive_bytes", shown.exclusive_bytes),
        ("pulls_today", shown.pulls.today),
        ("pulls_7d", shown.pulls.last_7_days),
        ("pulls_30d", shown.pulls.last_30_days),
        ("pushes_today", shown.pushes.today),
        ("pushes_7d", shown.pushes.last_7_days),
        ("pushes_30d", shown.pushes.last_30_days),
    ] {
        lines.push_str(&format!("{metric},{value}\n"));
    }
    Ok(csv(lines))
}

/// The query of `GET /api/v1/stats/popular`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct PopularQuery {
    /// The window: `<days>d`, 1 to 365 days, today included (default `7d`).
    window: Option<String>,
    /// How many (1 to 100, default 10).
    limit: Option<String>,
    /// `repository` (default), `tag`, or `user` (who pulled most; administrators only).
    by: Option<String>,
    /// Only the repositories of this namespace.
    namespace: Option<String>,
    /// `json` (default) or `csv`.
    format: Option<String>,
}

/// The longest window of the popular listing, in days.
const WINDOW_DAYS_MAX: i64 = 365;
/// The most entries of the popular listing.
const POPULAR_MAX: u32 = 100;

/// A window `<days>d` (1 to [`WINDOW_DAYS_MAX`]), or a 400 naming `window`.
fn parse_window(window: &str) -> ApiResult<i64> {
    window
        .strip_suffix('d')
        .and_then(|days| days.parse::<i64>().ok())
        .filter(|days| (1..=WINDOW_DAYS_MAX).contains(days))
        .ok_or_else(|| {
            bad_parameter(
                "window",
                format!("{window:?} is not a number of days from 1d to {WINDOW_DAYS_MAX}d"),
            )
        })
}

/// One entry of the popular listing.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
struct PopularEntry {
    /// The repository (with `by=repository` and `by=tag`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    repository: Option<RepoName>,
    /// The tag (with `by=tag` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    tag: Option<String>,
    /// The identity's stable subject, `user:<id>`, `token:<id>` or `anonymous` (with
    /// `by=user` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<String>,
    /// The name it was shown by (with `by=user` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    /// Manifest GETs in the window (by that tag, or by that identity).
    pulls: i64,
    /// Manifest PUTs in the window (with `by=user` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pushes: Option<i64>,
}

/// The popular listing.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Popular {
    /// The window, as asked (`7d`).
    window: String,
    /// `repository` or `tag`.
    by: String,
    /// Most pulled first; ties by name.
    items: Vec<PopularEntry>,
}

/// The most pulled repositories (or tags) over a window, among those the caller may read;
/// for administrators, who pulled and pushed most (`by=user`).
#[utoipa::path(
    get,
    path = "/api/v1/stats/popular",
    tag = "stats",
    params(PopularQuery),
    responses(
        (status = 200, description = "Most pulled first (JSON, or CSV)", body = Popular),
        (status = 400, description = "An unknown parameter, `by` or format, a bad window or limit; the message names the parameter", body = Problem),
        (status = 403, description = "`by=user` by a caller who is not an administrator", body = Problem),
    )
)]
async fn popular(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<PopularQuery>,
) -> ApiResult<Response> {
    let as_csv = wants_csv(q.format.as_deref(), &headers)?;
    let window = q.window.as_deref().unwrap_or("7d");
    let days = parse_window(window)?;
    let limit = match q.limit.as_deref() {
        None => 10,
        Some(limit) => limit
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=POPULAR_MAX).contains(n))
            .ok_or_else(|| {
                bad_parameter(
                    "limit",
                    format!("{limit:?} is not a number from 1 to {POPULAR_MAX}"),
                )
            })?,
    };
    let by = q.by.as_deref().unwrap_or("repository");
    let namespace = parse_namespace(q.namespace.as_deref())?;
    let viewer = caller.auth().catalog_viewer(&caller.identity);
    let items: Vec<PopularEntry> = match by {
        "repository" => app
            .registry
            .popular_repositories(&viewer, &namespace, days, limit)
            .await?
            .into_iter()
            .map(|p| PopularEntry {
                repository: Some(p.repository),
                pulls: p.pulls,
                ..PopularEntry::default()
            })
            .collect(),
        "tag" => app
            .registry
            .popular_tags(&viewer, &namespace, days, limit)
            .await?
            .into_iter()
            .map(|p| PopularEntry {
                repository: Some(p.repository),
                tag: Some(p.tag.to_string()),
                pulls: p.pulls,
                ..PopularEntry::default()
            })
            .collect(),
        "user" => {
            // Who pulls what is the administrators' to see.
            caller.require_admin()?;
            app.registry
                .popular_subjects(&viewer, &namespace, days, limit)
                .await?
                .into_iter()
                .map(|p| PopularEntry {
                    subject: Some(p.subject),
                    user: Some(p.name),
                    pulls: p.pulls,
                    pushes: Some(p.pushes),
                    ..PopularEntry::default()
                })
                .collect()
        }
        other => {
            return Err(bad_parameter(
                "by",
                format!("unknown grouping {other:?}: repository, tag or user"),
            ));
        }
    };
    if !as_csv {
        return Ok(Json(Popular {
            window: window.to_owned(),
            by: by.to_owned(),
            items,
        })
        .into_response());
    }
    let mut lines = String::from(match by {
        "tag" => "repository,tag,pulls\n",
        "user" => "subject,user,pulls,pushes\n",
        _ => "repository,pulls\n",
    });
    for item in &items {
        let text = |t: &Option<String>| csv_field(t.as_deref().unwrap_or(""));
        let repository = item.repository.as_ref().map(RepoName::to_string);
        let line = match by {
            "tag" => format!("{},{},{}", text(&repository), text(&item.tag), item.pulls),
            "user" => format!(
                "{},{},{},{}",
                text(&item.subject),
                text(&item.user),
                item.pulls,
                item.pushes.unwrap_or(0)
            ),
            _ => format!("{},{}", text(&repository), item.pulls),
        };
        lines.push_str(&line);
        lines.push('\n');
    }
    Ok(csv(lines))
}

/// The query of `GET /api/v1/stats/trends`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct TrendsQuery {
    /// The first day, `YYYY-MM-DD` (UTC; default 29 days before `to`).
    from: Option<String>,
    /// The last day, `YYYY-MM-DD` (UTC; default today). At most 3,660 days after `from`.
    to: Option<String>,
    /// `day` (default), `week` (ISO weeks, from Monday) or `month` (calendar months): `from`
    /// is moved back to the first day of its week or month and `to` forward to the last.
    interval: Option<String>,
    /// Only this repository (the caller must be able to read it); default every repository
    /// the caller may read.
    repository: Option<String>,
    /// Only the repositories of this namespace (not with `repository`).
    namespace: Option<String>,
    /// `json` (default) or `csv`.
    format: Option<String>,
}

/// One day, week or month of the time series.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct TrendPoint {
    /// The first UTC day of the day, week or month, `YYYY-MM-DD`.
    date: String,
    /// Manifest GETs.
    pulls: i64,
    /// Manifest HEADs (version checks).
    heads: i64,
    /// Manifest PUTs.
    pushes: i64,
    /// Blob bytes served.
    bytes_out: i64,
    /// Bytes stored, as recorded at the start of the last day of the interval (or the last
    /// record before): the registry's physical bytes for an administrator counting every
    /// namespace, a repository's deduplicated bytes, or the sum of those of the repositories
    /// counted. `null` before the first record.
    storage_bytes: Option<i64>,
}

/// The time series.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Trend {
    /// `day`, `week` or `month`.
    interval: String,
    /// The first day (the first of its week or month).
    from: String,
    /// The last day (the last of its week or month).
    to: String,
    /// The repository, when one was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    repository: Option<String>,
    /// One point per interval from `from` to `to`, zero when unused.
    points: Vec<TrendPoint>,
}

/// An `interval` parameter, or a 400 naming it.
fn parse_interval(interval: Option<&str>) -> ApiResult<(Interval, &'static str)> {
    match interval {
        None | Some("day") => Ok((Interval::Day, "day")),
        Some("week") => Ok((Interval::Week, "week")),
        Some("month") => Ok((Interval::Month, "month")),
        Some(other) => Err(bad_parameter(
            "interval",
            format!("unknown interval {other:?}: day, week or month"),
        )),
    }
}

/// Days between the unix epoch and the Julian day 0.
const UNIX_EPOCH_JULIAN_DAY: i64 = 2_440_588;

/// A `YYYY-MM-DD` date as a UTC day since the unix epoch, or a 400 naming `parameter`.
fn parse_date(parameter: &str, text: &str) -> ApiResult<i64> {
    let bad = || bad_parameter(parameter, format!("{text:?} is not a date YYYY-MM-DD"));
    let mut parts = text.splitn(3, '-');
    let (Some(y), Some(m), Some(d)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return Err(bad());
    }
    let year: i32 = y.parse().map_err(|_| bad())?;
    let month: u8 = m.parse().map_err(|_| bad())?;
    let day: u8 = d.parse().map_err(|_| bad())?;
    let month = time::Month::try_from(month).map_err(|_| bad())?;
    let date = time::Date::from_calendar_date(year, month, day).map_err(|_| bad())?;
    Ok(i64::from(date.to_julian_day()) - UNIX_EPOCH_JULIAN_DAY)
}

/// A UTC day since the unix epoch as `YYYY-MM-DD`.
fn format_date(day: i64) -> String {
    i32::try_from(day + UNIX_EPOCH_JULIAN_DAY)
        .ok()
        .and_then(|julian| time::Date::from_julian_day(julian).ok())
        .map(|d| format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day()))
        .unwrap_or_default()
}

/// Pulls, HEADs, pushes and bytes served per day, ISO week or month, and the storage
/// recorded, over one repository or every repository the caller may read.
#[utoipa::path(
    get,
    path = "/api/v1/stats/trends",
    tag = "stats",
    params(TrendsQuery),
    responses(
        (status = 200, description = "One point per interval (JSON, or CSV)", body = Trend),
        (status = 400, description = "An unknown parameter, interval or format, a bad date or range; the message names the parameter", body = Problem),
        (status = 404, description = "The repository does not exist or the caller may not read it", body = Problem),
    )
)]
async fn trends(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<TrendsQuery>,
) -> ApiResult<Response> {
    let as_csv = wants_csv(q.format.as_deref(), &headers)?;
    let (interval, interval_name) = parse_interval(q.interval.as_deref())?;
    let to = match q.to.as_deref() {
        Some(to) => parse_date("to", to)?,
        None => app.registry.today(),
    };
    let from = match q.from.as_deref() {
        Some(from) => parse_date("from", from)?,
        None => to - 29,
    };
    if from > to {
        return Err(bad_parameter("from", "is after to"));
    }
    let (from, to) = (interval.start(from), interval.start(to));
    let last = interval.next(to) - 1;
    if last - from + 1 > TREND_DAYS_MAX {
        return Err(bad_parameter(
            "to",
            format!("the range is longer than {TREND_DAYS_MAX} days"),
        ));
    }
    let repository = match q.repository.as_deref() {
        Some(name) => {
            let repo: RepoName = name.parse().map_err(|e| bad_parameter("repository", e))?;
            require_readable(&caller, &repo).await?;
            Some(repo)
        }
        None => None,
    };
    let namespace = parse_namespace(q.namespace.as_deref())?;
    if repository.is_some() && !namespace.is_empty() {
        return Err(bad_parameter(
            "namespace",
            "give a repository or a namespace, not both",
        ));
    }
    let viewer = caller.auth().catalog_viewer(&caller.identity);
    let series = app
        .registry
        .usage_trend(&viewer, &namespace, repository.as_ref(), interval, from, to)
        .await?;
    let point = |b: &TrendBucket| TrendPoint {
        date: format_date(b.start),
        pulls: b.pulls,
        heads: b.heads,
        pushes: b.pushes,
        bytes_out: b.bytes_out,
        storage_bytes: b.storage_bytes,
    };
    if as_csv {
        let mut lines = String::from("date,pulls,heads,pushes,bytes_out,storage_bytes\n");
        for p in series.iter().map(point) {
            // No storage recorded yet: an empty field.
            let storage = p.storage_bytes.map(|b| b.to_string()).unwrap_or_default();
            lines.push_str(&format!(
                "{},{},{},{},{},{storage}\n",
                p.date, p.pulls, p.heads, p.pushes, p.bytes_out
            ));
        }
        return Ok(csv(lines));
    }
    Ok(Json(Trend {
        interval: interval_name.to_owned(),
        from: format_date(from),
        to: format_date(last),
        repository: repository.map(|r| r.to_string()),
        points: series.iter().map(point).collect(),
    })
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        assert_eq!(csv_field("team/app"), "team/app");
        assert_eq!(csv_field("alice (token a,b)"), "\"alice (token a,b)\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }

    #[test]
    fn dates_round_trip_through_days() {
        assert_eq!(parse_date("from", "1970-01-01").unwrap(), 0);
        assert_eq!(parse_date("from", "2024-02-29").unwrap(), 19_782);
        assert_eq!(format_date(19_782), "2024-02-29");
        for bad in [
            "2023-02-29",
            "2024-13-01",
            "24-01-01",
            "2024-1-1",
            "yesterday",
            "",
        ] {
            assert!(parse_date("from", bad).is_err(), "{bad}");
        }
    }
}
