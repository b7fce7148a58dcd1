//! Images: the manifests of a repository as the management API lists them, with their size
//! (config and layers; an index's descendants with shared layers counted once), tags, pull
//! figures and status, filtered and sorted in SQL and paged by a keyset cursor.

use super::Meta;
use crate::{
    error::Result,
    oci::{Digest, Tag},
};

/// The order of an image listing; every order is descending, ties broken by arrival.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageSort {
    /// Newest push first.
    Pushed,
    /// Largest first.
    Size,
    /// Most pulled first.
    Pulls,
}

/// Whether an image is in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImageStatus {
    /// Tagged, or a child of a tagged index.
    Active,
    /// Neither tagged nor a child of a tagged index.
    Untagged,
    /// Held back from pulls (quarantined), whether tagged or not.
    Quarantined,
}

impl ImageStatus {
    /// The name the API and the query use.
    pub fn as_str(self) -> &'static str {
        match self {
            ImageStatus::Active => "active",
            ImageStatus::Untagged => "untagged",
            ImageStatus::Quarantined => "quarantined",
        }
    }
}

/// Which manifests of a repository an image listing holds.
#[derive(Debug, Clone, Default)]
pub struct ImageFilter {
    /// Only the manifest this tag points at (and, with a platform filter, its children).
    pub tag: Option<Tag>,
    /// Only images of this operating system (children of indexes included).
    pub os: Option<String>,
    /// Only images of this architecture (children of indexes included).
    pub architecture: Option<String>,
    /// Only images in this state.
    pub status: Option<ImageStatus>,
    /// Only this manifest (children and referrers included).
    pub digest: Option<Digest>,
}

/// Where a page of an image listing starts: after the image with this sort value and id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageCursor {
    /// The sort column's value of the last image of the previous page.
    pub key: i64,
    /// That image's id.
    pub id: i64,
}

/// One manifest of an image listing.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ImageRow {
    /// The manifest's row id (its order of arrival).
    pub id: i64,
    /// Its digest.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// Operating system from the image config; none for an index.
    pub os: Option<String>,
    /// Architecture from the image config; none for an index.
    pub architecture: Option<String>,
    /// Architecture variant from the image config.
    pub variant: Option<String>,
    /// When it was last pushed.
    pub pushed_at: i64,
    /// When it was last pulled, if ever.
    pub last_pulled_at: Option<i64>,
    /// Pulls (GETs) as of the last statistics flush.
    pub pull_count: i64,
    /// Bytes of its config and layers; for an index of its children's, each blob once.
    pub size_bytes: i64,
    /// An index of the repository that lists it, if any (the smallest digest).
    pub index_digest: Option<Digest>,
    /// 1 when a tag points at it or at an index that lists it.
    pub in_use: i64,
    /// 1 when it is quarantined.
    pub quarantined: i64,
}

impl ImageRow {
    /// The value the listing's order `sort` reads, for the next page's cursor.
    pub fn sort_key(&self, sort: ImageSort) -> i64 {
        match sort {
            ImageSort::Pushed => self.pushed_at,
            ImageSort::Size => self.size_bytes,
            ImageSort::Pulls => self.pull_count,
        }
    }
}

/// A tag of one of the listed manifests.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ManifestTag {
    /// The manifest the tag points at.
    pub manifest_id: i64,
    /// The tag.
    pub name: Tag,
}

/// The platform of a child of one of the listed indexes.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ChildPlatform {
    /// The index.
    pub index_id: i64,
    /// The child manifest's row id.
    pub id: i64,
    /// Its media type (an index may list indexes).
    pub media_type: String,
    /// The child manifest.
    pub digest: Digest,
    /// Its operating system.
    pub os: Option<String>,
    /// Its architecture.
    pub architecture: Option<String>,
    /// Its architecture variant.
    pub variant: Option<String>,
}

/// Ids of the indexes of the repository that list manifest `m`. Driven from the reference's
/// digest index, with the parent's repository read by its key (a join lets SQLite scan the
/// repository's manifests instead, for every row).
const PARENTS_OF_M: &str = "SELECT pr.manifest_id FROM manifest_references pr \
     WHERE pr.digest = m.digest AND pr.kind = 'manifest' \
     AND (SELECT p.repository_id FROM manifests p WHERE p.id = pr.manifest_id) = m.repository_id";

/// Ends an `EXISTS` subquery of the listing so that it is probed for each listed row:
/// without it PostgreSQL turns the `EXISTS` into a hashed subplan, which reads the whole
/// table (every tag, every index reference of the registry) before the first row (350 ms a
/// page at a million tags). SQLite probes either way.
const PROBE: &str = " LIMIT 1 OFFSET 0";

/// Bytes of the blobs manifest `m` and its descendants reference (an index's children, the
/// children of an index among them, and so on down to the images), each blob once. `UNION`
/// (not `UNION ALL`) visits a manifest listed twice once. Each blob's size is read by its
/// key: as `IN (...)` PostgreSQL cannot tell how few digests the tree yields and scans
/// every blob instead.
pub(super) const SIZE_OF_M: &str = "(WITH RECURSIVE tree (id) AS ( \
       SELECT m.id UNION SELECT c.id FROM tree \
         JOIN manifest_references r2 ON r2.manifest_id = tree.id AND r2.kind = 'manifest' \
         JOIN manifests c ON c.digest = r2.digest AND c.repository_id = m.repository_id), \
     needed (digest) AS (SELECT DISTINCT r1.digest FROM tree \
       JOIN manifest_references r1 ON r1.manifest_id = tree.id AND r1.kind = 'blob') \
     SELECT CAST(COALESCE(SUM((SELECT b.size FROM blobs b WHERE b.digest = needed.digest)), 0) \
       AS BIGINT) FROM needed)";

impl Meta {
    /// Images of repository `repository_id` that `filter` selects, in `sort` order after
    /// `after`, `n` at most. Without a platform filter, children of an index are left out
    /// unless tagged themselves, and so are referrers (signatures, SBOMs: they have a subject).
    pub async fn images(
        &self,
        repository_id: i64,
        filter: &ImageFilter,
        sort: ImageSort,
        after: Option<ImageCursor>,
        n: u32,
    ) -> Result<Vec<ImageRow>> {
        // Each expression is correlated on `m` and reaches its rows through an index (no
        // OR across columns), so a page costs about its own rows under the push order.
        let in_use = format!(
            "(EXISTS (SELECT 1 FROM tags t WHERE t.manifest_id = m.id{PROBE}) \
              OR EXISTS (SELECT 1 FROM tags t WHERE t.manifest_id IN ({PARENTS_OF_M}){PROBE}))"
        );
        // Held back from pulls: quarantined itself, or an index with a quarantined child
        // (only an index has `manifest` references).
        let quarantined = "(EXISTS (SELECT 1 FROM quarantines q WHERE q.manifest_id = m.id) \
             OR EXISTS (SELECT 1 FROM manifest_references mr JOIN quarantines q \
               ON q.repository_id = m.repository_id AND q.digest = mr.digest \
               WHERE mr.manifest_id = m.id AND mr.kind = 'manifest'))";
        let key = match sort {
            ImageSort::Pushed => "m.pushed_at",
            ImageSort::Size => SIZE_OF_M,
            ImageSort::Pulls => "m.pull_count",
        };
        let sql = format!(
            "SELECT m.id, m.digest, m.media_type, m.os, m.architecture, m.variant, m.pushed_at, \
               m.last_pulled_at, m.pull_count, {SIZE_OF_M} AS size_bytes, \
               (SELECT MIN(p.digest) FROM manifests p WHERE p.id IN ({PARENTS_OF_M})) AS index_digest, \
               CAST(CASE WHEN {in_use} THEN 1 ELSE 0 END AS BIGINT) AS in_use, \
               CAST(CASE WHEN {quarantined} THEN 1 ELSE 0 END AS BIGINT) AS quarantined \
             FROM manifests m \
             WHERE m.repository_id = $1 \
               AND (CAST($11 AS TEXT) IS NOT NULL OR $6 = 1 OR ( \
                 m.subject IS NULL AND (NOT EXISTS ({PARENTS_OF_M}{PROBE}) \
                   OR EXISTS (SELECT 1 FROM tags t WHERE t.manifest_id = m.id{PROBE})))) \
               AND (CAST($11 AS TEXT) IS NULL OR m.digest = $11) \
               AND (CAST($2 AS TEXT) IS NULL OR EXISTS (SELECT 1 FROM tags t \
                 WHERE t.repository_id = m.repository_id AND t.name = $2 \
                 AND (t.manifest_id = m.id OR t.manifest_id IN ({PARENTS_OF_M})){PROBE})) \
               AND (CAST($3 AS TEXT) IS NULL OR m.os = $3) \
               AND (CAST($4 AS TEXT) IS NULL OR m.architecture = $4) \
               AND (CAST($5 AS TEXT) IS NULL OR ($5 = 'quarantined' AND {quarantined}) \
                 OR ($5 = 'active' AND NOT {quarantined} AND {in_use}) \
                 OR ($5 = 'untagged' AND NOT {quarantined} AND NOT {in_use})) \
               AND ($9 = 0 OR {key} < $7 OR ({key} = $7 AND m.id < $8)) \
             ORDER BY {key} DESC, m.id DESC LIMIT $10"
        );
        let platform_filter = filter.os.is_some() || filter.architecture.is_some();
        let cursor = after.unwrap_or(ImageCursor { key: 0, id: 0 });
        Ok(sqlx::query_as(&sql)
            .bind(repository_id)
            .bind(filter.tag.as_ref().map(Tag::as_str))
            .bind(filter.os.as_deref())
            .bind(filter.architecture.as_deref())
            .bind(filter.status.map(ImageStatus::as_str))
            .bind(i64::from(platform_filter))
            .bind(cursor.key)
            .bind(cursor.id)
            .bind(i64::from(after.is_some()))
            .bind(i64::from(n))
            .bind(filter.digest.as_ref().map(Digest::to_string))
            .fetch_all(&self.reader)
            .await?)
    }

    /// The tags pointing at any of `manifest_ids`, in name order.
    pub async fn tags_of_manifests(&self, manifest_ids: &[i64]) -> Result<Vec<ManifestTag>> {
        if manifest_ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT manifest_id, name FROM tags WHERE manifest_id IN ({}) ORDER BY name",
            super::placeholders(1, manifest_ids.len())
        );
        let mut select = sqlx::query_as(&sql).persistent(false);
        for id in manifest_ids {
            select = select.bind(*id);
        }
        Ok(select.fetch_all(&self.reader).await?)
    }

    /// The children of any of the indexes `index_ids` (all of repository `repository_id`)
    /// with their platforms.
    pub async fn child_platforms(
        &self,
        repository_id: i64,
        index_ids: &[i64],
    ) -> Result<Vec<ChildPlatform>> {
        if index_ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT r.manifest_id AS index_id, c.id, c.media_type, c.digest, c.os, \
             c.architecture, c.variant \
             FROM manifest_references r JOIN manifests c ON c.digest = r.digest \
             WHERE r.kind = 'manifest' AND c.repository_id = $1 AND r.manifest_id IN ({}) \
             ORDER BY c.os, c.architecture, c.variant, c.digest",
            super::placeholders(2, index_ids.len())
        );
        let mut select = sqlx::query_as(&sql).persistent(false).bind(repository_id);
        for id in index_ids {
            select = select.bind(*id);
        }
        Ok(select.fetch_all(&self.reader).await?)
    }
}
