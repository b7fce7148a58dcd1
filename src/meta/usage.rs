//! Usage figures read back: the registry's totals, time series and the most pulled
//! repositories and tags, from the daily counters that [`super::stats`] flushes. Every
//! query takes a [`CatalogViewer`] and counts only the repositories it may read (all of
//! them for an administrator).

use super::{Meta, in_namespace, repositories::CatalogViewer};
use crate::{
    error::Result,
    oci::{RepoName, Tag},
};

/// `WITH readable AS (...)`: the ids of the repositories the viewer may read, in one
/// namespace or everywhere. `$1` admin, `$2` the registry's default visibility, `$3` the
/// visibility open to the viewer besides `public`, `$4` its user id, `$5` its own namespace,
/// `$6` the namespace counted ("" for all); later parameters are the query's.
const READABLE: &str = concat!(
    "WITH readable AS (SELECT r.id, r.name FROM repositories r WHERE ($6 = '' OR ",
    in_namespace!("r.name", "$6"),
    ") AND ($1 = 1 \
     OR COALESCE((SELECT v.visibility FROM repository_visibility v WHERE v.name = r.name), \
        (SELECT ns.default_visibility FROM namespaces ns WHERE ",
    in_namespace!("r.name", "ns.name"),
    "), $2) IN ('public', $3) \
     OR EXISTS (SELECT 1 FROM members mb WHERE mb.user_id = $4 AND mb.role >= 20 AND ",
    in_namespace!("r.name", "mb.namespace"),
    ") OR ",
    in_namespace!("r.name", "$5"),
    ")) "
);

/// Binds the viewer's and the namespace's six parameters of [`READABLE`].
macro_rules! bind_viewer {
    ($query:expr, $viewer:expr, $namespace:expr) => {
        $query
            .bind(i64::from($viewer.admin))
            .bind($viewer.default_visibility)
            .bind(if $viewer.signed_in {
                "internal"
            } else {
                "public"
            })
            .bind($viewer.user_id)
            .bind($viewer.own_namespace)
            .bind($namespace)
    };
}

/// What the registry holds and how much it was used, over the repositories a viewer may
/// read (in one namespace, or everywhere). Blobs and bytes are physical (each blob once,
/// however many repositories link it).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Totals {
    /// Repositories.
    pub repositories: i64,
    /// Manifests (images, indexes and artifacts).
    pub manifests: i64,
    /// Tags.
    pub tags: i64,
    /// Blobs (for an administrator every stored blob, linked or awaiting collection).
    pub blobs: i64,
    /// Bytes of those blobs.
    pub bytes: i64,
    /// Bytes that deleting the repositories counted would free: blobs they link and no
    /// other repository does.
    pub exclusive_bytes: i64,
    /// Pulls today (UTC).
    pub pulls_today: i64,
    /// Pulls over the last 7 days, today included.
    pub pulls_7d: i64,
    /// Pulls over the last 30 days, today included.
    pub pulls_30d: i64,
    /// Pushes today (UTC).
    pub pushes_today: i64,
    /// Pushes over the last 7 days, today included.
    pub pushes_7d: i64,
    /// Pushes over the last 30 days, today included.
    pub pushes_30d: i64,
}

/// One day of a usage time series (days without a row are zero).
#[derive(Debug, Clone, Default, sqlx::FromRow)]
pub struct DayFigures {
    /// The UTC day, counted from the unix epoch.
    pub day: i64,
    /// Manifest GETs.
    pub pulls: i64,
    /// Manifest HEADs.
    pub heads: i64,
    /// Manifest PUTs.
    pub pushes: i64,
    /// Blob bytes served.
    pub bytes_out: i64,
}

/// Storage recorded on one day (see [`Meta::record_storage`]).
#[derive(Debug, Clone, Copy, sqlx::FromRow)]
pub struct StorageDay {
    /// The UTC day, counted from the unix epoch.
    pub day: i64,
    /// Bytes stored that day.
    pub bytes: i64,
}

/// A repository and its pulls over a window.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PopularRepository {
    /// The repository.
    pub repository: RepoName,
    /// Its pulls in the window.
    pub pulls: i64,
}

/// A tag and its pulls over a window.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PopularTag {
    /// The repository of the tag.
    pub repository: RepoName,
    /// The tag.
    pub tag: Tag,
    /// Pulls by that tag in the window.
    pub pulls: i64,
}

/// An identity and what it pulled and pushed over a window.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PopularSubject {
    /// Its stable subject: `user:<id>`, `token:<id>` or `anonymous`.
    pub subject: String,
    /// The name it was shown by (a user name, `alice (token ci)`, ...).
    pub name: String,
    /// Manifest GETs in the window.
    pub pulls: i64,
    /// Manifest PUTs in the window.
    pub pushes: i64,
}

impl Meta {
    /// The totals `viewer` may see in `namespace` ("" for every one), with pulls and pushes
    /// counted up to `today` (a UTC day).
    pub async fn usage_totals(
        &self,
        viewer: &CatalogViewer<'_>,
        namespace: &str,
        today: i64,
    ) -> Result<Totals> {
        let sql = format!(
            "{READABLE}SELECT \
             (SELECT COUNT(*) FROM readable) AS repositories, \
             (SELECT COUNT(*) FROM manifests m \
              WHERE m.repository_id IN (SELECT id FROM readable)) AS manifests, \
             (SELECT COUNT(*) FROM tags t \
              WHERE t.repository_id IN (SELECT id FROM readable)) AS tags, \
             (SELECT COUNT(*) FROM blobs b WHERE ($1 = 1 AND $6 = '') OR EXISTS (SELECT 1 FROM \
              repository_blobs rb WHERE rb.digest = b.digest \
              AND rb.repository_id IN (SELECT id FROM readable))) AS blobs, \
             (SELECT CAST(COALESCE(SUM(b.size), 0) AS BIGINT) FROM blobs b \
              WHERE ($1 = 1 AND $6 = '') OR EXISTS (SELECT 1 FROM repository_blobs rb \
              WHERE rb.digest = b.digest AND rb.repository_id IN (SELECT id FROM readable))) \
              AS bytes, \
             {exclusive} AS exclusive_bytes, \
             {today}, {week}, {month}, {ptoday}, {pweek}, {pmonth}",
            exclusive = if viewer.admin && namespace.is_empty() {
                // Every repository is counted: no other one links anything, so this is every
                // linked blob. (Probing each blob's links against the readable set instead
                // takes minutes at millions of blobs.)
                "(SELECT CAST(COALESCE(SUM(b.size), 0) AS BIGINT) FROM blobs b WHERE EXISTS \
                 (SELECT 1 FROM repository_blobs rb WHERE rb.digest = b.digest))"
            } else {
                "(SELECT CAST(COALESCE(SUM(b.size), 0) AS BIGINT) FROM blobs b WHERE EXISTS \
                 (SELECT 1 FROM repository_blobs rb WHERE rb.digest = b.digest \
                  AND rb.repository_id IN (SELECT id FROM readable)) \
                 AND NOT EXISTS (SELECT 1 FROM repository_blobs o WHERE o.digest = b.digest \
                  AND o.repository_id NOT IN (SELECT id FROM readable)))"
            },
            today = window_sum("pulls", "$7", "pulls_today"),
            week = window_sum("pulls", "$8", "pulls_7d"),
            month = window_sum("pulls", "$9", "pulls_30d"),
            ptoday = window_sum("pushes", "$7", "pushes_today"),
            pweek = window_sum("pushes", "$8", "pushes_7d"),
            pmonth = window_sum("pushes", "$9", "pushes_30d"),
        );
        Ok(bind_viewer!(sqlx::query_as(&sql), viewer, namespace)
            .bind(today)
            .bind(today - 6)
            .bind(today - 29)
            .fetch_one(&self.reader)
            .await?)
    }

    /// Usage per day from `from` to `to` (UTC days, both included) over the repositories
    /// `viewer` may read in `namespace` ("" for every one), or over `repository` alone; only
    /// days with a row, in day order.
    pub async fn usage_by_day(
        &self,
        viewer: &CatalogViewer<'_>,
        namespace: &str,
        repository: Option<&RepoName>,
        from: i64,
        to: i64,
    ) -> Result<Vec<DayFigures>> {
        let only = if repository.is_some() {
            "AND u.repository_id = (SELECT id FROM readable WHERE name = $9) "
        } else {
            "AND u.repository_id IN (SELECT id FROM readable) "
        };
        let sql = format!(
            "{READABLE}SELECT u.day, CAST(SUM(u.pulls) AS BIGINT) AS pulls, \
             CAST(SUM(u.heads) AS BIGINT) AS heads, CAST(SUM(u.pushes) AS BIGINT) AS pushes, \
             CAST(SUM(u.bytes_out) AS BIGINT) AS bytes_out \
             FROM repository_usage u WHERE u.day >= $7 AND u.day <= $8 {only}\
             GROUP BY u.day ORDER BY u.day"
        );
        let query = bind_viewer!(sqlx::query_as(&sql), viewer, namespace)
            .bind(from)
            .bind(to);
        let query = match repository {
            Some(repo) => query.bind(repo.as_str()),
            None => query,
        };
        Ok(query.fetch_all(&self.reader).await?)
    }

    /// The `n` most pulled repositories `viewer` may read in `namespace` ("" for every one)
    /// since `since` (a UTC day), most pulled first, ties by name.
    pub async fn popular_repositories(
        &self,
        viewer: &CatalogViewer<'_>,
        namespace: &str,
        since: i64,
        n: u32,
    ) -> Result<Vec<PopularRepository>> {
        let sql = format!(
            "{READABLE}SELECT r.name AS repository, CAST(SUM(u.pulls) AS BIGINT) AS pulls \
             FROM repository_usage u JOIN readable r ON r.id = u.repository_id \
             WHERE u.day >= $7 GROUP BY r.name HAVING SUM(u.pulls) > 0 \
             ORDER BY SUM(u.pulls) DESC, r.name LIMIT $8"
        );
        Ok(bind_viewer!(sqlx::query_as(&sql), viewer, namespace)
            .bind(since)
            .bind(i64::from(n))
            .fetch_all(&self.reader)
            .await?)
    }

    /// The `n` most pulled tags of the repositories `viewer` may read in `namespace` (""
    /// for every one) since `since` (a UTC day), most pulled first, ties by repository and
    /// tag.
    pub async fn popular_tags(
        &self,
        viewer: &CatalogViewer<'_>,
        namespace: &str,
        since: i64,
        n: u32,
    ) -> Result<Vec<PopularTag>> {
        let sql = format!(
            "{READABLE}SELECT r.name AS repository, t.tag, CAST(SUM(t.pulls) AS BIGINT) AS pulls \
             FROM tag_usage t JOIN readable r ON r.id = t.repository_id \
             WHERE t.day >= $7 GROUP BY r.name, t.tag HAVING SUM(t.pulls) > 0 \
             ORDER BY SUM(t.pulls) DESC, r.name, t.tag LIMIT $8"
        );
        Ok(bind_viewer!(sqlx::query_as(&sql), viewer, namespace)
            .bind(since)
            .bind(i64::from(n))
            .fetch_all(&self.reader)
            .await?)
    }
}

impl Meta {
    /// The `n` identities that pulled most from the repositories `viewer` may read in
    /// `namespace` ("" for every one) since `since` (a UTC day), ties by pushes and subject.
    pub async fn popular_subjects(
        &self,
        viewer: &CatalogViewer<'_>,
        namespace: &str,
        since: i64,
        n: u32,
    ) -> Result<Vec<PopularSubject>> {
        let sql = format!(
            "{READABLE}SELECT s.subject, MAX(s.name) AS name, \
             CAST(SUM(s.pulls) AS BIGINT) AS pulls, CAST(SUM(s.pushes) AS BIGINT) AS pushes \
             FROM subject_usage s JOIN readable r ON r.id = s.repository_id \
             WHERE s.day >= $7 GROUP BY s.subject \
             ORDER BY SUM(s.pulls) DESC, SUM(s.pushes) DESC, s.subject LIMIT $8"
        );
        Ok(bind_viewer!(sqlx::query_as(&sql), viewer, namespace)
            .bind(since)
            .bind(i64::from(n))
            .fetch_all(&self.reader)
            .await?)
    }
}

impl Meta {
    /// The storage recorded from the last record on or before `from` up to `to` (UTC days),
    /// in day order: of `repository` alone (its deduplicated bytes); of the whole registry
    /// (physical bytes) for an administrator counting every namespace; otherwise the sum of
    /// the deduplicated bytes of the repositories `viewer` may read in `namespace` ("" for
    /// every one), a blob shared by two of them counting twice.
    pub async fn storage_by_day(
        &self,
        viewer: &CatalogViewer<'_>,
        namespace: &str,
        repository: Option<&RepoName>,
        from: i64,
        to: i64,
    ) -> Result<Vec<StorageDay>> {
        if repository.is_none() && viewer.admin && namespace.is_empty() {
            return Ok(sqlx::query_as(
                "SELECT day, bytes FROM registry_storage WHERE day <= $2 AND day >= \
                 COALESCE((SELECT MAX(day) FROM registry_storage WHERE day <= $1), $1) \
                 ORDER BY day",
            )
            .bind(from)
            .bind(to)
            .fetch_all(&self.reader)
            .await?);
        }
        let only = if repository.is_some() {
            "s.repository_id = (SELECT id FROM readable WHERE name = $9)"
        } else {
            "s.repository_id IN (SELECT id FROM readable)"
        };
        // Both tables are written in one transaction: the registry's days are every day.
        let sql = format!(
            "{READABLE}SELECT s.day, CAST(SUM(s.bytes) AS BIGINT) AS bytes \
             FROM repository_storage s WHERE {only} AND s.day <= $8 AND s.day >= \
             COALESCE((SELECT MAX(day) FROM registry_storage WHERE day <= $7), $7) \
             GROUP BY s.day ORDER BY s.day"
        );
        let query = bind_viewer!(sqlx::query_as(&sql), viewer, namespace)
            .bind(from)
            .bind(to);
        let query = match repository {
            Some(repo) => query.bind(repo.as_str()),
            None => query,
        };
        Ok(query.fetch_all(&self.reader).await?)
    }
}

/// A column summing `counter` of the readable repositories from day `since` on.
fn window_sum(counter: &str, since: &str, alias: &str) -> String {
    format!(
        "(SELECT CAST(COALESCE(SUM(u.{counter}), 0) AS BIGINT) FROM repository_usage u \
         WHERE u.day >= {since} AND u.repository_id IN (SELECT id FROM readable)) AS {alias}"
    )
}
