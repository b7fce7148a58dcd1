//! Usage figures read back: the registry's totals, time series and the most pulled
//! repositories and tags, from the daily counters that [`super::stats`] flushes. Every
//! query takes a [`CatalogViewer`] and counts only the repositories it may read (all of
//! them for an administrator). Registry-wide figures read rollups instead of every row:
//! counts kept by triggers (manifests and tags per repository, blobs and bytes), the
//! registry's usage per day, and pulls ever, which bound the search for the most pulled.

use super::{Meta, in_namespace, repositories::CatalogViewer};
use crate::{
    error::Result,
    oci::{RepoName, Tag},
};

/// `WITH readable AS (...)`: the ids of the repositories the viewer may read, in one
/// namespace or everywhere. `$1` admin, `$2` the registry's default visibility, `$3` the
/// visibility open to the viewer besides `public`, `$4` its user id, `$5` its own namespace,
/// `$6` the namespace counted ("" for all); later parameters are the query's.
pub(super) const READABLE: &str = concat!(
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
pub(super) use bind_viewer;

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
    /// other repository does; for the whole registry, every stored blob (the next
    /// collection after deleting them all frees those already unlinked too).
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
        if viewer.admin && namespace.is_empty() {
            return self.registry_totals(today).await;
        }
        let sql = format!(
            "{READABLE}SELECT \
             (SELECT COUNT(*) FROM readable) AS repositories, \
             (SELECT CAST(COALESCE(SUM(r.manifest_count), 0) AS BIGINT) FROM repositories r \
              WHERE r.id IN (SELECT id FROM readable)) AS manifests, \
             (SELECT CAST(COALESCE(SUM(r.tag_count), 0) AS BIGINT) FROM repositories r \
              WHERE r.id IN (SELECT id FROM readable)) AS tags, \
             (SELECT COUNT(*) FROM blobs b WHERE EXISTS (SELECT 1 FROM \
              repository_blobs rb WHERE rb.digest = b.digest \
              AND rb.repository_id IN (SELECT id FROM readable))) AS blobs, \
             (SELECT CAST(COALESCE(SUM(b.size), 0) AS BIGINT) FROM blobs b \
              WHERE EXISTS (SELECT 1 FROM repository_blobs rb \
              WHERE rb.digest = b.digest AND rb.repository_id IN (SELECT id FROM readable))) \
              AS bytes, \
             (SELECT CAST(COALESCE(SUM(b.size), 0) AS BIGINT) FROM blobs b WHERE EXISTS \
              (SELECT 1 FROM repository_blobs rb WHERE rb.digest = b.digest \
               AND rb.repository_id IN (SELECT id FROM readable)) \
              AND NOT EXISTS (SELECT 1 FROM repository_blobs o WHERE o.digest = b.digest \
               AND o.repository_id NOT IN (SELECT id FROM readable))) AS exclusive_bytes, \
             {today}, {week}, {month}, {ptoday}, {pweek}, {pmonth}",
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

    /// The totals of the whole registry, from the counters the triggers and the flush keep:
    /// a few hundred rows at most, whatever the size of the registry.
    async fn registry_totals(&self, today: i64) -> Result<Totals> {
        let window = |counter: &str, since: &str, alias: &str| {
            format!(
                "(SELECT CAST(COALESCE(SUM({counter}), 0) AS BIGINT) FROM registry_usage \
                 WHERE day >= {since}) AS {alias}"
            )
        };
        let sql = format!(
            "SELECT (SELECT COUNT(*) FROM repositories) AS repositories, \
             (SELECT CAST(COALESCE(SUM(manifest_count), 0) AS BIGINT) FROM repositories) \
              AS manifests, \
             (SELECT CAST(COALESCE(SUM(tag_count), 0) AS BIGINT) FROM repositories) AS tags, \
             (SELECT CAST(COALESCE(SUM(blobs), 0) AS BIGINT) FROM blob_totals) AS blobs, \
             (SELECT CAST(COALESCE(SUM(bytes), 0) AS BIGINT) FROM blob_totals) AS bytes, \
             (SELECT CAST(COALESCE(SUM(bytes), 0) AS BIGINT) FROM blob_totals) \
              AS exclusive_bytes, {}, {}, {}, {}, {}, {}",
            window("pulls", "$1", "pulls_today"),
            window("pulls", "$2", "pulls_7d"),
            window("pulls", "$3", "pulls_30d"),
            window("pushes", "$1", "pushes_today"),
            window("pushes", "$2", "pushes_7d"),
            window("pushes", "$3", "pushes_30d"),
        );
        Ok(sqlx::query_as(&sql)
            .bind(today)
            .bind(today - 6)
            .bind(today - 29)
            .fetch_one(&self.reader)
            .await?)
    }

    /// Usage per day from `from` to `to` (UTC days, both included) over the repositories
    /// `viewer` may read in `namespace` ("" for every one), or over `repository` alone; only
    /// days with a row, in day order. An administrator counting every namespace reads the
    /// registry's own days, which keep the usage of repositories deleted since.
    pub async fn usage_by_day(
        &self,
        viewer: &CatalogViewer<'_>,
        namespace: &str,
        repository: Option<&RepoName>,
        from: i64,
        to: i64,
    ) -> Result<Vec<DayFigures>> {
        if repository.is_none() && viewer.admin && namespace.is_empty() {
            return Ok(sqlx::query_as(
                "SELECT day, pulls, heads, pushes, bytes_out FROM registry_usage \
                 WHERE day >= $1 AND day <= $2 ORDER BY day",
            )
            .bind(from)
            .bind(to)
            .fetch_all(&self.reader)
            .await?);
        }
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
        if n == 0 {
            Ok(Vec::new())
        } else if self.window_rows("repository_usage", since).await? > self.popular_summed_rows {
            self.popular_repositories_by_bound(viewer, namespace, since, n)
                .await
        } else {
            self.popular_repositories_summed(viewer, namespace, since, n)
                .await
        }
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
        if n == 0 {
            Ok(Vec::new())
        } else if self.window_rows("tag_usage", since).await? > self.popular_summed_rows {
            self.popular_tags_by_bound(viewer, namespace, since, n)
                .await
        } else {
            self.popular_tags_summed(viewer, namespace, since, n).await
        }
    }

    /// How many daily rows of `table` (`repository_usage` or `tag_usage`) a window from
    /// `since` holds, counted on its index by day, up to one more than summing allows.
    async fn window_rows(&self, table: &str, since: i64) -> Result<i64> {
        let sql =
            format!("SELECT COUNT(*) FROM (SELECT 1 FROM {table} WHERE day >= $1 LIMIT $2) w");
        Ok(sqlx::query_scalar(&sql)
            .bind(since)
            .bind(self.popular_summed_rows + 1)
            .fetch_one(&self.reader)
            .await?)
    }

    /// [`Meta::popular_repositories`] by summing every day of the window.
    async fn popular_repositories_summed(
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

    /// [`Meta::popular_tags`] by summing every day of the window.
    async fn popular_tags_summed(
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

/// How many candidates the first round of a bounded search reads (doubling each round).
/// Its queries test readability with `+id IN (...)`: the unary plus keeps SQLite from
/// looking rows up by repository (then sorting them all) instead of walking the index of
/// pulls ever, most first, and stopping at the batch's size.
const FIRST_CANDIDATES: i64 = 64;

/// The `n` best of `found` (any order), most pulled first, ties by `key`, and whether a
/// bounded search may stop: `n` are held and the `n`-th has more pulls in the window than the
/// next candidate, whose pulls ever are at most `next_bound`, can have (strictly: a tie could
/// still win by name).
fn best<T>(
    found: &mut Vec<T>,
    n: u32,
    next_bound: i64,
    pulls: impl Fn(&T) -> i64,
    key: impl Fn(&T) -> (&str, &str),
) -> bool {
    found.sort_by(|a, b| pulls(b).cmp(&pulls(a)).then_with(|| key(a).cmp(&key(b))));
    found.truncate(n as usize);
    found.len() == n as usize && found.last().is_some_and(|nth| pulls(nth) > next_bound)
}

/// A candidate of a bounded search: its pulls ever (the bound), and in the window.
#[derive(sqlx::FromRow)]
struct RepositoryCandidate {
    id: i64,
    repository: RepoName,
    ever: i64,
    pulls: i64,
}

/// See [`RepositoryCandidate`].
#[derive(sqlx::FromRow)]
struct TagCandidate {
    repository_id: i64,
    repository: RepoName,
    tag: Tag,
    ever: i64,
    pulls: i64,
}

impl Meta {
    /// [`Meta::popular_repositories`] for windows of many rows, without summing them all: a
    /// repository's pulls in a window are at most its pulls ever, so candidates are read by
    /// pulls ever, most first, and the search stops once the `n`-th best count in the window
    /// is above the next candidate's pulls ever.
    async fn popular_repositories_by_bound(
        &self,
        viewer: &CatalogViewer<'_>,
        namespace: &str,
        since: i64,
        n: u32,
    ) -> Result<Vec<PopularRepository>> {
        let sql = format!(
            "{READABLE}, candidates AS (SELECT x.id, x.name, x.pull_count FROM repositories x \
             WHERE +x.id IN (SELECT id FROM readable) AND x.pull_count > 0 \
             AND (x.pull_count < $7 OR (x.pull_count = $7 AND x.id < $8)) \
             ORDER BY x.pull_count DESC, x.id DESC LIMIT $9) \
             SELECT c.id, c.name AS repository, c.pull_count AS ever, \
             (SELECT CAST(COALESCE(SUM(u.pulls), 0) AS BIGINT) FROM repository_usage u \
              WHERE u.repository_id = c.id AND u.day >= $10) AS pulls \
             FROM candidates c ORDER BY c.pull_count DESC, c.id DESC"
        );
        let (mut after, mut limit) = ((i64::MAX, i64::MAX), FIRST_CANDIDATES.max(i64::from(n)));
        let mut found: Vec<PopularRepository> = Vec::new();
        loop {
            let batch: Vec<RepositoryCandidate> =
                bind_viewer!(sqlx::query_as(&sql), viewer, namespace)
                    .bind(after.0)
                    .bind(after.1)
                    .bind(limit)
                    .bind(since)
                    .fetch_all(&self.reader)
                    .await?;
            let exhausted = (batch.len() as i64) < limit;
            let Some(last) = batch.last() else { break };
            after = (last.ever, last.id);
            found.extend(
                batch
                    .into_iter()
                    .filter(|c| c.pulls > 0)
                    .map(|c| PopularRepository {
                        repository: c.repository,
                        pulls: c.pulls,
                    }),
            );
            let settled = best(
                &mut found,
                n,
                after.0,
                |r| r.pulls,
                |r| (r.repository.as_str(), ""),
            );
            if exhausted || settled {
                break;
            }
            limit = (limit * 2).min(4096);
        }
        Ok(found)
    }

    /// [`Meta::popular_tags`] for windows of many rows, by the bound of
    /// [`Meta::popular_repositories_by_bound`] (a tag's pulls ever, kept in `tag_pulls`).
    async fn popular_tags_by_bound(
        &self,
        viewer: &CatalogViewer<'_>,
        namespace: &str,
        since: i64,
        n: u32,
    ) -> Result<Vec<PopularTag>> {
        let sql = format!(
            "{READABLE}, candidates AS (SELECT p.repository_id, p.tag, p.pulls FROM tag_pulls p \
             WHERE +p.repository_id IN (SELECT id FROM readable) AND p.pulls > 0 \
             AND (p.pulls < $7 OR (p.pulls = $7 AND (p.repository_id < $8 \
              OR (p.repository_id = $8 AND p.tag < $9)))) \
             ORDER BY p.pulls DESC, p.repository_id DESC, p.tag DESC LIMIT $10) \
             SELECT c.repository_id, r.name AS repository, c.tag, c.pulls AS ever, \
             (SELECT CAST(COALESCE(SUM(u.pulls), 0) AS BIGINT) FROM tag_usage u \
              WHERE u.repository_id = c.repository_id AND u.tag = c.tag AND u.day >= $11) \
              AS pulls \
             FROM candidates c JOIN repositories r ON r.id = c.repository_id \
             ORDER BY c.pulls DESC, c.repository_id DESC, c.tag DESC"
        );
        let mut after = (i64::MAX, i64::MAX, String::new());
        let mut limit = FIRST_CANDIDATES.max(i64::from(n));
        let mut found: Vec<PopularTag> = Vec::new();
        loop {
            let batch: Vec<TagCandidate> = bind_viewer!(sqlx::query_as(&sql), viewer, namespace)
                .bind(after.0)
                .bind(after.1)
                .bind(&after.2)
                .bind(limit)
                .bind(since)
                .fetch_all(&self.reader)
                .await?;
            let exhausted = (batch.len() as i64) < limit;
            let Some(last) = batch.last() else { break };
            after = (last.ever, last.repository_id, last.tag.as_str().to_owned());
            found.extend(
                batch
                    .into_iter()
                    .filter(|c| c.pulls > 0)
                    .map(|c| PopularTag {
                        repository: c.repository,
                        tag: c.tag,
                        pulls: c.pulls,
                    }),
            );
            let settled = best(
                &mut found,
                n,
                after.0,
                |t| t.pulls,
                |t| (t.repository.as_str(), t.tag.as_str()),
            );
            if exhausted || settled {
                break;
            }
            limit = (limit * 2).min(4096);
        }
        Ok(found)
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
