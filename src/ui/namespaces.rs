//! The namespaces listing and a namespace's page. Both read through the viewer's catalog
//! filter, as the repository listing does: a namespace appears when the viewer may read one
//! of its repositories (or the namespace itself); its members show only to those the API
//! shows them to (its maintainers and owners), its quota to those who may read it, the
//! cleanup policies that reach it to administrators (who alone read policies).

use askama::Template;
use axum::extract::{Path, Query, State};
use serde::Deserialize;

use super::{
    UiError, Viewer, format,
    maintenance::PolicyLine,
    pages::{Layout, PageResult, SortLink, fail, query_string, render},
};
use crate::{
    auth::{Action, Role},
    error::Error,
    meta::repositories::{NamespaceMatch, NamespaceOrder, RepositoryOrder, RepositoryQuery},
    oci::RepoName,
    registry::QuotaStatus,
    state::AppState,
};

/// Namespaces per page.
const NAMESPACE_ROWS: u32 = 100;
/// Repositories shown on a namespace's page at most.
const REPOSITORY_ROWS: u32 = 100;

#[derive(Deserialize, Default)]
pub(super) struct NamespacesQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    sort: String,
    /// 1-based; a string so that a bad one gets the page's own message.
    #[serde(default)]
    page: String,
}

/// Page `text` of a listing (1 when empty) as the rows to skip, or why it is not a page.
fn rows_to_skip(text: &str) -> Result<(u32, u32), UiError> {
    let page = if text.is_empty() {
        1
    } else {
        text.parse::<u32>()
            .ok()
            .filter(|p| *p >= 1)
            .ok_or_else(|| {
                UiError::bad_request(format!("Page {text:?} is not a page number (1, 2, …)."))
            })?
    };
    let skip = (page - 1)
        .checked_mul(NAMESPACE_ROWS)
        .ok_or_else(|| UiError::bad_request(format!("Page {page} is past the last page.")))?;
    Ok((page, skip))
}

struct NamespaceRow {
    name: String,
    repositories: i64,
    tags: i64,
    images: i64,
    size: String,
    pulls: i64,
    pushed: String,
    pushed_title: String,
}

#[derive(Template)]
#[template(path = "namespaces.html")]
struct NamespacesPage {
    layout: Layout,
    q: String,
    sorts: Vec<SortLink>,
    rows: Vec<NamespaceRow>,
    /// Links to the pages before and after this one (empty: none).
    previous: String,
    next: String,
}

pub(super) async fn namespaces(
    State(app): State<AppState>,
    viewer: Viewer,
    Query(q): Query<NamespacesQuery>,
) -> PageResult {
    let page = async {
        let order = match q.sort.as_str() {
            "" => NamespaceOrder::Name,
            key => NamespaceOrder::parse(key).ok_or_else(|| {
                UiError::bad_request(format!(
                    "Unknown sort {key:?}: use name, size, repositories or pulls."
                ))
            })?,
        };
        let (page, skip) = rows_to_skip(&q.page)?;
        let mut rows = app
            .registry
            .namespace_summaries(
                NamespaceMatch::Containing(q.q.trim()),
                order,
                &viewer.catalog(),
                skip,
                NAMESPACE_ROWS + 1,
            )
            .await?;
        let more = rows.len() > NAMESPACE_ROWS as usize;
        rows.truncate(NAMESPACE_ROWS as usize);
        let page_link = |n: u32| {
            let n = n.to_string();
            format!(
                "/ui/namespaces?{}",
                query_string(&[("q", &q.q), ("sort", &q.sort), ("page", &n)])
            )
        };
        let previous = if page > 1 {
            page_link(page - 1)
        } else {
            String::new()
        };
        let next = if more {
            page_link(page + 1)
        } else {
            String::new()
        };
        let sorts = NamespaceOrder::ALL
            .iter()
            .map(|(key, _)| SortLink {
                label: match *key {
                    "name" => "Name",
                    "size" => "Largest",
                    "repositories" => "Most repositories",
                    _ => "Most pulled",
                },
                href: format!(
                    "/ui/namespaces?{}",
                    query_string(&[("q", &q.q), ("sort", key)])
                ),
                current: q.sort == *key || (q.sort.is_empty() && *key == "name"),
            })
            .collect();
        let now = viewer.now;
        Ok::<_, UiError>(NamespacesPage {
            layout: viewer.layout("Namespaces", "namespaces"),
            q: q.q.clone(),
            sorts,
            rows: rows
                .into_iter()
                .map(|n| NamespaceRow {
                    name: n.name,
                    repositories: n.repositories,
                    tags: n.tags,
                    images: n.manifests,
                    size: format::size(n.bytes),
                    pulls: n.pulls,
                    pushed: n
                        .last_push_at
                        .map_or_else(|| "never".to_owned(), |t| format::ago(t, now)),
                    pushed_title: n.last_push_at.map(format::date).unwrap_or_default(),
                })
                .collect(),
            previous,
            next,
        })
    };
    let page = page.await.map_err(fail(&viewer))?;
    Ok(render(&viewer, &page))
}

struct RepositoryLine {
    name: String,
    description: String,
    visibility: String,
    tags: i64,
    size: String,
    pulls: i64,
}

#[derive(Template)]
#[template(path = "namespace.html")]
struct NamespacePage {
    layout: Layout,
    name: String,
    figures: Vec<(&'static str, String)>,
    repositories: Vec<RepositoryLine>,
    more_repositories: bool,
    /// `None` when the viewer may not see them (not a maintainer).
    members: Option<Vec<(String, String)>>,
    /// The scanning policy in effect: (setting, value, where it comes from).
    scan_policy: Vec<(&'static str, String, String)>,
    /// Its quota and usage, to those who may read the namespace.
    quota: Option<QuotaLines>,
    /// The cleanup policies reaching its repositories, to administrators.
    policies: Option<Vec<PolicyLine>>,
}

/// A namespace's limits beside its usage, for people.
struct QuotaLines {
    /// (what, used, the limit or "no limit").
    lines: Vec<(&'static str, String, String)>,
    warn_percent: i64,
    warning: bool,
    exceeded: bool,
}

impl QuotaLines {
    fn of(q: &QuotaStatus) -> QuotaLines {
        let of_limit = |used: i64, limit: Option<i64>, show: &dyn Fn(i64) -> String| match limit {
            Some(l) if l > 0 => {
                let percent = i128::from(used) * 100 / i128::from(l);
                (show(used), format!("{} ({percent} % used)", show(l)))
            }
            _ => (show(used), "no limit".to_owned()),
        };
        let (bytes_used, bytes_limit) = of_limit(q.used_bytes, q.storage_bytes, &format::size);
        let (repos_used, repos_limit) =
            of_limit(q.used_repositories, q.repositories, &|n| n.to_string());
        QuotaLines {
            lines: vec![
                ("Storage", bytes_used, bytes_limit),
                ("Repositories", repos_used, repos_limit),
            ],
            warn_percent: q.warn_percent,
            warning: q.warning,
            exceeded: q.exceeded,
        }
    }
}

pub(super) async fn namespace(
    State(app): State<AppState>,
    viewer: Viewer,
    Path(name): Path<String>,
) -> PageResult {
    let page = async {
        let unknown =
            || UiError::not_found(format!("There is no namespace {name:?} that you may see."));
        if name.contains('/') || name.parse::<RepoName>().is_err() {
            return Err(unknown());
        }
        let catalog = viewer.catalog();
        let query = RepositoryQuery {
            name_contains: None,
            visibility: None,
            namespace: Some(name.clone()),
            order: RepositoryOrder::Name,
            after: None,
        };
        let mut repositories = app
            .registry
            .repository_summaries(&query, &catalog, REPOSITORY_ROWS + 1)
            .await?;
        let readable = viewer
            .auth()
            .may_on_namespace(&viewer.identity, &name, Action::Pull)
            .await?;
        if repositories.is_empty() && !readable {
            return Err(unknown());
        }
        let more_repositories = repositories.len() > REPOSITORY_ROWS as usize;
        repositories.truncate(REPOSITORY_ROWS as usize);
        // The figures of what the viewer may read, summed by the same query as the listing.
        let totals = app
            .registry
            .namespace_summaries(
                NamespaceMatch::Named(&name),
                NamespaceOrder::Name,
                &catalog,
                0,
                1,
            )
            .await?
            .pop();
        let members = match viewer.auth().list_members(&viewer.identity, &name).await {
            Ok(rows) => Some(
                rows.into_iter()
                    .map(|m| {
                        let role = Role::from_level(m.role).map_or_else(
                            || m.role.to_string(),
                            |r| format!("{r:?}").to_lowercase(),
                        );
                        (m.user, role)
                    })
                    .collect(),
            ),
            Err(Error::Denied(_) | Error::Unauthorized(_)) => None,
            Err(e) => return Err(e.into()),
        };
        let scan_policy = if readable {
            let p = app.registry.namespace_scan_policy(&name).await?.effective;
            let flag = |on: bool| if on { "yes" } else { "no" }.to_owned();
            vec![
                (
                    "Scan on push",
                    flag(p.scan_on_push.value),
                    p.scan_on_push.from,
                ),
                (
                    "Quarantine at",
                    p.block_severity
                        .value
                        .map_or_else(|| "nothing blocked".to_owned(), |s| s.to_string()),
                    p.block_severity.from,
                ),
                (
                    "Refuse unscanned",
                    flag(p.block_unscanned.value),
                    p.block_unscanned.from,
                ),
                (
                    "Only fixable findings",
                    flag(p.only_fixable.value),
                    p.only_fixable.from,
                ),
            ]
        } else {
            Vec::new()
        };
        let quota = if readable {
            Some(QuotaLines::of(&app.registry.namespace_quota(&name).await?))
        } else {
            None
        };
        let policies = if viewer.identity.admin {
            let names: Vec<&str> = repositories.iter().map(|r| r.name.as_str()).collect();
            let applying = app.registry.policies_applying_to(&names).await?;
            Some(applying.into_iter().map(PolicyLine::of).collect())
        } else {
            None
        };
        let figures = match &totals {
            Some(t) => vec![
                ("Repositories", t.repositories.to_string()),
                ("Tags", t.tags.to_string()),
                ("Images", t.manifests.to_string()),
                ("Storage", format::size(t.bytes)),
                ("Pulls", t.pulls.to_string()),
            ],
            None => vec![("Repositories", "0".to_owned())],
        };
        Ok::<_, UiError>(NamespacePage {
            layout: viewer.layout(&name, "namespaces"),
            figures,
            repositories: repositories
                .into_iter()
                .map(|r| RepositoryLine {
                    name: r.name.to_string(),
                    description: r.description,
                    visibility: r.visibility,
                    tags: r.tag_count,
                    size: format::size(r.blob_bytes),
                    pulls: r.pull_count,
                })
                .collect(),
            more_repositories,
            members,
            scan_policy,
            quota,
            policies,
            name,
        })
    };
    let page: Result<NamespacePage, UiError> = page.await;
    let page = page.map_err(fail(&viewer))?;
    Ok(render(&viewer, &page))
}
