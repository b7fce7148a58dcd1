//! Repositories: their rows and usage figures, the catalog (whole, or as a viewer may see
//! it), and deleting a repository with everything in it.

use super::{
    Meta, in_namespace,
    jobs::{Job, insert_job},
};
use crate::{
    error::Result,
    oci::{RepoName, Visibility},
};

/// A repository with its description, visibility and usage figures, as the management API
/// shows it (alone and in the listing).
#[derive(Debug, serde::Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct RepositorySummary {
    /// The repository's name.
    #[schema(value_type = String)]
    pub name: RepoName,
    /// What the repository holds, in its owners' words ("" when none was given).
    pub description: String,
    /// Who may pull: `public`, `internal` or `private` (its own setting, else its
    /// namespace's, else the registry's default).
    pub visibility: String,
    /// When the repository was created, ahead of its first push or by it (unix seconds).
    pub created_at: i64,
    /// Manifest pushes counted so far.
    pub push_count: i64,
    /// Manifest pulls (GETs) counted so far.
    pub pull_count: i64,
    /// The last manifest push, if any.
    pub last_push_at: Option<i64>,
    /// The last manifest pull, if any.
    pub last_pull_at: Option<i64>,
    /// Manifests the repository holds.
    pub manifest_count: i64,
    /// Tags the repository holds.
    pub tag_count: i64,
    /// Bytes of the blobs linked into the repository (shared blobs count in each).
    pub blob_bytes: i64,
    /// Deduplicated size: the bytes of the blobs the repository's manifests need (configs
    /// and layers, through nested indexes), each blob once.
    pub deduplicated_bytes: i64,
    /// Bytes that deleting the repository would free: its blobs that no other repository
    /// links.
    pub exclusive_bytes: i64,
}

/// The order of the repository listing. Every order ends with the name, so that a page ends
/// at a (key, name) pair that the next page starts after.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RepositoryOrder {
    /// By name, ascending.
    #[default]
    Name,
    /// Most pulled first.
    Pulls,
    /// Most recently pushed first (never pushed last).
    Pushed,
    /// Largest first (`blob_bytes`).
    Size,
}

impl RepositoryOrder {
    /// Every order by its `sort=` name.
    pub const ALL: [(&'static str, RepositoryOrder); 4] = [
        ("name", RepositoryOrder::Name),
        ("pulls", RepositoryOrder::Pulls),
        ("pushed", RepositoryOrder::Pushed),
        ("size", RepositoryOrder::Size),
    ];

    /// The order named `name` (`name`, `pulls`, `pushed`, `size`).
    pub fn parse(name: &str) -> Option<RepositoryOrder> {
        named(&Self::ALL, name)
    }

    /// The value `summary` is sorted by before its name (0 for [`RepositoryOrder::Name`]).
    pub fn key_of(self, summary: &RepositorySummary) -> i64 {
        match self {
            RepositoryOrder::Name => 0,
            RepositoryOrder::Pulls => summary.pull_count,
            RepositoryOrder::Pushed => summary.last_push_at.unwrap_or(NEVER_PUSHED),
            RepositoryOrder::Size => summary.blob_bytes,
        }
    }

    /// The SQL of the key (over the listing's columns), or `None` for the name alone.
    fn key_sql(self) -> Option<&'static str> {
        match self {
            RepositoryOrder::Name => None,
            RepositoryOrder::Pulls => Some("s.pull_count"),
            // -1: NEVER_PUSHED.
            RepositoryOrder::Pushed => Some("COALESCE(s.last_push_at, -1)"),
            RepositoryOrder::Size => Some("s.blob_bytes"),
        }
    }
}

/// The key a never-pushed repository sorts by in [`RepositoryOrder::Pushed`] (after every
/// real time).
const NEVER_PUSHED: i64 = -1;

/// What the repository listing shows and where a page starts.
#[derive(Debug, Clone, Default)]
pub struct RepositoryQuery {
    /// Only names containing this (lowercase; repository names are).
    pub name_contains: Option<String>,
    /// Only repositories with this visibility.
    pub visibility: Option<Visibility>,
    /// Only repositories of this namespace.
    pub namespace: Option<String>,
    /// The order.
    pub order: RepositoryOrder,
    /// The page starts after this (key, name) of `order` (the key is ignored for
    /// [`RepositoryOrder::Name`]); `None` for the first page.
    pub after: Option<(i64, String)>,
}

/// A namespace as a viewer sees it: the figures of its repositories that the viewer may
/// read, summed.
#[derive(Debug, sqlx::FromRow)]
pub struct NamespaceSummary {
    /// The namespace (the first component of its repositories' names).
    pub name: String,
    /// Repositories the viewer may read.
    pub repositories: i64,
    /// Their tags.
    pub tags: i64,
    /// Their manifests.
    pub manifests: i64,
    /// Bytes of the blobs linked into them (as each repository counts them).
    pub bytes: i64,
    /// Their pulls so far.
    pub pulls: i64,
    /// Their last push, if any.
    pub last_push_at: Option<i64>,
}

/// The value `name` stands for in a table of `sort=` names.
fn named<T: Copy>(all: &[(&str, T)], name: &str) -> Option<T> {
    all.iter()
        .find(|(n, _)| *n == name)
        .map(|(_, value)| *value)
}

/// Which namespaces a namespace listing keeps.
#[derive(Debug, Clone, Copy)]
pub enum NamespaceMatch<'a> {
    /// Those whose name contains this text.
    Containing(&'a str),
    /// The one of this name.
    Named(&'a str),
}

/// The order of the namespace listing (each ends with the name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NamespaceOrder {
    /// By name.
    #[default]
    Name,
    /// Largest first.
    Size,
    /// Most repositories first.
    Repositories,
    /// Most pulled first.
    Pulls,
}

impl NamespaceOrder {
    /// Every order by its `sort=` name.
    pub const ALL: [(&'static str, NamespaceOrder); 4] = [
        ("name", NamespaceOrder::Name),
        ("size", NamespaceOrder::Size),
        ("repositories", NamespaceOrder::Repositories),
        ("pulls", NamespaceOrder::Pulls),
    ];

    /// The order named `name`.
    pub fn parse(name: &str) -> Option<NamespaceOrder> {
        named(&Self::ALL, name)
    }

    fn order_sql(self) -> &'static str {
        match self {
            NamespaceOrder::Name => "name",
            NamespaceOrder::Size => "bytes DESC, name",
            NamespaceOrder::Repositories => "repositories DESC, name",
            NamespaceOrder::Pulls => "pulls DESC, name",
        }
    }
}

/// Who may see what in the catalog: the filter [`Meta::visible_catalog`] applies.
pub struct CatalogViewer<'a> {
    /// Sees every repository.
    pub admin: bool,
    /// Signed in: INTERNAL repositories are visible.
    pub signed_in: bool,
    /// The user whose memberships (reporter and up) open PRIVATE namespaces; -1 for none.
    pub user_id: i64,
    /// A namespace seen whole (the user's own, or a deploy token's); "" for none.
    pub own_namespace: &'a str,
    /// Visibility of repositories in namespaces that have no row.
    pub default_visibility: &'a str,
}

/// The columns of a [`RepositorySummary`] over `repositories r`; `$1` is the registry's
/// default visibility. Manifest and tag counts are kept on the row by triggers; sizes come
/// from correlated subqueries on indexed columns, so a row costs a few probes.
const SUMMARY_SELECT: &str = concat!(
    "SELECT r.name, r.description, r.created_at, r.push_count, r.pull_count, \
     r.last_push_at, r.last_pull_at, \
     COALESCE((SELECT v.visibility FROM repository_visibility v WHERE v.name = r.name), \
     (SELECT ns.default_visibility FROM namespaces ns WHERE ",
    in_namespace!("r.name", "ns.name"),
    "), $1) AS visibility, \
     r.manifest_count, r.tag_count, \
     (SELECT CAST(COALESCE(SUM(b.size), 0) AS BIGINT) FROM repository_blobs rb \
      JOIN blobs b ON b.digest = rb.digest WHERE rb.repository_id = r.id) AS blob_bytes, \
     (SELECT CAST(COALESCE(SUM(b.size), 0) AS BIGINT) FROM blobs b WHERE b.digest IN \
      (SELECT mr.digest FROM manifests m JOIN manifest_references mr ON mr.manifest_id = m.id \
       WHERE m.repository_id = r.id AND mr.kind = 'blob')) AS deduplicated_bytes, \
     (SELECT CAST(COALESCE(SUM(b.size), 0) AS BIGINT) FROM repository_blobs rb \
      JOIN blobs b ON b.digest = rb.digest WHERE rb.repository_id = r.id \
      AND NOT EXISTS (SELECT 1 FROM repository_blobs o \
       WHERE o.digest = rb.digest AND o.repository_id <> r.id)) AS exclusive_bytes"
);

/// Whether the viewer of [`CatalogViewer`] may read the summary row `s`: `$2` admin, `$3`
/// the visibility open to it besides `public`, `$4` its user id, `$5` its own namespace.
const VISIBLE_TO_VIEWER: &str = concat!(
    "($2 = 1 OR s.visibility IN ('public', $3) \
      OR EXISTS (SELECT 1 FROM members mb WHERE mb.user_id = $4 AND mb.role >= 20 AND ",
    in_namespace!("s.name", "mb.namespace"),
    ") OR ",
    in_namespace!("s.name", "$5"),
    ")"
);

/// `text` as a `LIKE` pattern matching itself (escape character `!`), lowercased as
/// repository names are.
fn like_escaped(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len());
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '!') {
            pattern.push('!');
        }
        pattern.push(c);
    }
    pattern
}

impl Meta {
    /// The id of `repo`, if it exists.
    pub async fn repository_id(&self, repo: &RepoName) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT id FROM repositories WHERE name = $1")
                .bind(repo.as_str())
                .fetch_optional(&self.reader)
                .await?,
        )
    }

    /// Repository names with at least one manifest, after `last`, at most `n`.
    pub async fn catalog(&self, last: &str, n: u32) -> Result<Vec<RepoName>> {
        Ok(sqlx::query_scalar(
            "SELECT name FROM repositories r WHERE name > $1 \
             AND EXISTS (SELECT 1 FROM manifests m WHERE m.repository_id = r.id) \
             ORDER BY name LIMIT $2",
        )
        .bind(last)
        .bind(i64::from(n))
        .fetch_all(&self.reader)
        .await?)
    }

    /// The catalog (repositories with a manifest, after `last`, `n` at most) as `viewer` may
    /// see it: filtered in the database, so that pages stay full and bounded.
    pub async fn visible_catalog(
        &self,
        last: &str,
        n: u32,
        viewer: &CatalogViewer<'_>,
    ) -> Result<Vec<RepoName>> {
        let sql = concat!(
            "SELECT r.name FROM repositories r WHERE r.name > $1 \
             AND EXISTS (SELECT 1 FROM manifests m WHERE m.repository_id = r.id) \
             AND ($2 = 1 \
              OR COALESCE((SELECT v.visibility FROM repository_visibility v WHERE v.name = r.name), \
                 (SELECT ns.default_visibility FROM namespaces ns WHERE ",
            in_namespace!("r.name", "ns.name"),
            "), $3) IN ('public', $4) \
              OR EXISTS (SELECT 1 FROM members mb WHERE mb.user_id = $5 AND mb.role >= 20 AND ",
            in_namespace!("r.name", "mb.namespace"),
            ") OR ",
            in_namespace!("r.name", "$6"),
            ") ORDER BY r.name LIMIT $7"
        );
        Ok(sqlx::query_scalar(sql)
            .bind(last)
            .bind(i64::from(viewer.admin))
            .bind(viewer.default_visibility)
            .bind(if viewer.signed_in {
                "internal"
            } else {
                "public"
            })
            .bind(viewer.user_id)
            .bind(viewer.own_namespace)
            .bind(i64::from(n))
            .fetch_all(&self.reader)
            .await?)
    }

    /// A page of the repositories `viewer` may read (all for an administrator), filtered and
    /// ordered by `query`, `n` at most, with their figures. The filters, the visibility
    /// check and the keyset all run in the database, so pages stay full and bounded.
    pub async fn repository_summaries(
        &self,
        query: &RepositoryQuery,
        viewer: &CatalogViewer<'_>,
        n: u32,
    ) -> Result<Vec<RepositorySummary>> {
        // $1-$5: the viewer; $6 the name the page starts after; $7, $8, $10 the filters; $9
        // the page size; $11, $12 (ordered by a key only) whether a page came before and its
        // key.
        let (keyset, order_by) = match query.order.key_sql() {
            None => ("s.name > $6".to_owned(), "s.name".to_owned()),
            Some(key) => (
                format!("($11 = 0 OR {key} < $12 OR ({key} = $12 AND s.name > $6))"),
                format!("{key} DESC, s.name"),
            ),
        };
        let sql = format!(
            "SELECT * FROM ({SUMMARY_SELECT} FROM repositories r) s WHERE {VISIBLE_TO_VIEWER} \
             AND s.name LIKE '%' || $7 || '%' ESCAPE '!' \
             AND ($8 = '' OR s.visibility = $8) AND ($10 = '' OR {ns}) AND {keyset} \
             ORDER BY {order_by} LIMIT $9",
            ns = in_namespace!("s.name", "$10"),
        );
        let (after_key, after_name) = query
            .after
            .as_ref()
            .map_or((0, ""), |(key, name)| (*key, name.as_str()));
        let pattern = query
            .name_contains
            .as_deref()
            .map(like_escaped)
            .unwrap_or_default();
        let mut statement = sqlx::query_as(&sql)
            .bind(viewer.default_visibility)
            .bind(i64::from(viewer.admin))
            .bind(if viewer.signed_in {
                "internal"
            } else {
                "public"
            })
            .bind(viewer.user_id)
            .bind(viewer.own_namespace)
            .bind(after_name)
            .bind(pattern)
            .bind(query.visibility.map_or("", Visibility::as_str))
            .bind(i64::from(n))
            .bind(query.namespace.as_deref().unwrap_or(""));
        if query.order.key_sql().is_some() {
            statement = statement
                .bind(i64::from(query.after.is_some()))
                .bind(after_key);
        }
        Ok(statement.fetch_all(&self.reader).await?)
    }

    /// The namespaces holding repositories that `viewer` may read, with those repositories'
    /// figures summed, those `matching`, in `order`, `n` at most after skipping `skip`: one
    /// query over the same visibility filter as [`Meta::repository_summaries`]. (An offset,
    /// not a key to resume after: the sums are made for every namespace whichever page.)
    pub async fn namespace_summaries(
        &self,
        matching: NamespaceMatch<'_>,
        order: NamespaceOrder,
        viewer: &CatalogViewer<'_>,
        skip: u32,
        n: u32,
    ) -> Result<Vec<NamespaceSummary>> {
        // The first component of a name (the whole name when it has no slash).
        let slash = if self.postgres {
            "strpos(s.name || '/', '/')"
        } else {
            "instr(s.name || '/', '/')"
        };
        let sql = format!(
            "SELECT name, CAST(COUNT(*) AS BIGINT) AS repositories, \
             CAST(COALESCE(SUM(tag_count), 0) AS BIGINT) AS tags, \
             CAST(COALESCE(SUM(manifest_count), 0) AS BIGINT) AS manifests, \
             CAST(COALESCE(SUM(blob_bytes), 0) AS BIGINT) AS bytes, \
             CAST(COALESCE(SUM(pull_count), 0) AS BIGINT) AS pulls, \
             MAX(last_push_at) AS last_push_at \
             FROM (SELECT substr(s.name, 1, {slash} - 1) AS name, s.tag_count, \
              s.manifest_count, s.blob_bytes, s.pull_count, s.last_push_at \
              FROM ({SUMMARY_SELECT} FROM repositories r) s WHERE {VISIBLE_TO_VIEWER}) n \
             WHERE name LIKE $6 ESCAPE '!' \
             GROUP BY name ORDER BY {} LIMIT $7 OFFSET $8",
            order.order_sql()
        );
        Ok(sqlx::query_as(&sql)
            .bind(viewer.default_visibility)
            .bind(i64::from(viewer.admin))
            .bind(if viewer.signed_in {
                "internal"
            } else {
                "public"
            })
            .bind(viewer.user_id)
            .bind(viewer.own_namespace)
            .bind(match matching {
                NamespaceMatch::Containing(text) => format!("%{}%", like_escaped(text)),
                NamespaceMatch::Named(name) => like_escaped(name),
            })
            .bind(i64::from(n))
            .bind(i64::from(skip))
            .fetch_all(&self.reader)
            .await?)
    }

    /// `repo` with its figures, its visibility falling back to `default_visibility`.
    pub async fn repository_summary(
        &self,
        repo: &RepoName,
        default_visibility: &str,
    ) -> Result<Option<RepositorySummary>> {
        let sql = format!("{SUMMARY_SELECT} FROM repositories r WHERE r.name = $2");
        Ok(sqlx::query_as(&sql)
            .bind(default_visibility)
            .bind(repo.as_str())
            .fetch_optional(&self.reader)
            .await?)
    }

    /// Creates `repo` (created `now`) with `description`, ahead of its first push; `false`
    /// when it exists already.
    pub async fn create_repository(&self, repo: &RepoName, description: &str) -> Result<bool> {
        let created: Option<i64> = sqlx::query_scalar(
            "INSERT INTO repositories (name, created_at, description) VALUES ($1, $2, $3)              ON CONFLICT (name) DO NOTHING RETURNING id",
        )
        .bind(repo.as_str())
        .bind(self.now())
        .bind(description)
        .fetch_optional(&self.writer)
        .await?;
        Ok(created.is_some())
    }

    /// Sets the description of `repo`; `false` when there is no such repository.
    pub async fn set_repository_description(
        &self,
        repo: &RepoName,
        description: &str,
    ) -> Result<bool> {
        let changed = sqlx::query("UPDATE repositories SET description = $2 WHERE name = $1")
            .bind(repo.as_str())
            .bind(description)
            .execute(&self.writer)
            .await?;
        Ok(changed.rows_affected() > 0)
    }

    /// Ids and names of repositories after id `after`, `n` at most.
    pub async fn repository_ids(&self, after: i64, n: i64) -> Result<Vec<(i64, RepoName)>> {
        Ok(
            sqlx::query_as("SELECT id, name FROM repositories WHERE id > $1 ORDER BY id LIMIT $2")
                .bind(after)
                .bind(n)
                .fetch_all(&self.reader)
                .await?,
        )
    }

    /// Deletes `repo` with its manifests, tags, links and upload sessions; returns the part
    /// keys of its sessions (the caller deletes the objects), or `None` if there was no such
    /// repository. Blobs only it linked are left unlinked, and a review of blobs is queued.
    pub async fn delete_repository(&self, repo: &RepoName) -> Result<Option<Vec<String>>> {
        let mut tx = self.write_tx().await?;
        let Some(repository_id) = lock_repository(&mut tx, repo).await? else {
            return Ok(None);
        };
        let parts: Vec<String> = sqlx::query_scalar(
            "SELECT p.object_key FROM upload_parts p JOIN uploads u ON u.id = p.upload_id \
             WHERE u.repository_id = $1",
        )
        .bind(repository_id)
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM repositories WHERE id = $1")
            .bind(repository_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM repository_settings WHERE repository = $1")
            .bind(repo.as_str())
            .execute(&mut *tx)
            .await?;
        if let Some(delay) = self.review_delay {
            let now = self.now();
            insert_job(&mut *tx, &Job::ReviewBlobs, now + delay, now).await?;
        }
        tx.commit().await?;
        Ok(Some(parts))
    }
}

/// The id of `repo`, with its row locked until the transaction ends (PostgreSQL; SQLite has
/// one writer). Pushes of manifests take the same lock.
pub(super) async fn lock_repository(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    repo: &RepoName,
) -> Result<Option<i64>> {
    Ok(
        sqlx::query_scalar("UPDATE repositories SET id = id WHERE name = $1 RETURNING id")
            .bind(repo.as_str())
            .fetch_optional(&mut **tx)
            .await?,
    )
}

/// Takes the row lock of repository `id` until the transaction ends (PostgreSQL).
pub(super) async fn lock_repository_id(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: i64,
) -> Result<()> {
    sqlx::query("UPDATE repositories SET id = id WHERE id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The id of `repo`, creating its row (created `now`) if there is none.
pub(super) async fn ensure_repository(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    repo: &RepoName,
    now: i64,
) -> Result<i64> {
    let found = sqlx::query_scalar("SELECT id FROM repositories WHERE name = $1")
        .bind(repo.as_str())
        .fetch_optional(&mut **tx)
        .await?;
    if let Some(id) = found {
        return Ok(id);
    }
    // A racing creator (another replica) may win; the upsert then returns its row.
    Ok(sqlx::query_scalar(
        "INSERT INTO repositories (name, created_at) VALUES ($1, $2) \
         ON CONFLICT (name) DO UPDATE SET name = excluded.name RETURNING id",
    )
    .bind(repo.as_str())
    .bind(now)
    .fetch_one(&mut **tx)
    .await?)
}
