//! The metadata index: the single source of truth for what exists (repositories, blob links,
//! manifests, tags, upload sessions). All SQL lives here, written to run unchanged on SQLite
//! and PostgreSQL through sqlx's `Any` driver (`$n` binds, `ON CONFLICT`, `RETURNING`, times
//! as unix seconds).

use std::{path::Path, time::Duration};

use anyhow::Context;
use sqlx::{
    AnyPool, Executor, Row,
    any::{AnyPoolOptions, AnyRow},
};

use crate::{
    config::{DatabaseConfig, Limits},
    error::{Error, Result},
    oci::{Digest, RepoName, Tag},
};

mod auth;
mod lifecycle;
mod stats;
pub use auth::{AccessFacts, AuditRow, CatalogViewer, MemberRow, NewToken, TokenRow, UserRow};
pub use lifecycle::*;
pub use stats::PullStats;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Handle on the index: on SQLite a single writer (SQLite allows one) and a pool of readers;
/// on PostgreSQL one pool serving as both.
#[derive(Clone)]
pub struct Meta {
    writer: AnyPool,
    reader: AnyPool,
    /// PostgreSQL (row locks, `SKIP LOCKED`) rather than SQLite (one writer at a time).
    postgres: bool,
    /// Seconds after an event that may leave garbage before its repository is reviewed;
    /// `None` when continuous collection is off.
    review_delay: Option<i64>,
}

/// A manifest as served to clients.
#[derive(Debug)]
pub struct StoredManifest {
    pub id: i64,
    pub repository_id: i64,
    pub digest: String,
    pub media_type: String,
    pub size: i64,
    /// Empty when only the headers were asked for.
    pub payload: Vec<u8>,
}

/// A repository with its usage figures, as the management API lists it.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct RepositorySummary {
    pub name: String,
    pub created_at: i64,
    pub push_count: i64,
    pub pull_count: i64,
    pub last_push_at: Option<i64>,
    pub last_pull_at: Option<i64>,
    pub manifest_count: i64,
    pub tag_count: i64,
    /// Bytes of the blobs linked into the repository (shared blobs count in each).
    pub blob_bytes: i64,
}

/// What the index records for a new manifest.
pub struct NewManifest<'a> {
    pub digest: &'a Digest,
    pub media_type: &'a str,
    pub artifact_type: Option<&'a str>,
    pub subject: Option<&'a Digest>,
    pub config_digest: Option<&'a Digest>,
    pub os: Option<&'a str>,
    pub architecture: Option<&'a str>,
    pub variant: Option<&'a str>,
    pub annotations: Option<String>,
    pub payload: &'a [u8],
    /// Blobs the manifest needs, with the size its descriptor declares.
    pub blobs: Vec<(&'a Digest, u64)>,
    /// Child manifests of an index.
    pub children: Vec<&'a Digest>,
}

/// What a push of a manifest the repository may already hold did.
#[derive(Debug, PartialEq, Eq)]
pub enum Repushed {
    /// Counted, and the tag (if any) points at it.
    Done,
    /// The repository does not hold the manifest: it must be stored in full.
    NotThere,
    /// The tag points at another manifest and may not move.
    TagImmutable,
}

/// Why the index refused a manifest.
pub enum PutManifestError {
    Missing(Digest),
    /// The tag points at another manifest and may not move.
    TagImmutable,
    SizeMismatch {
        digest: Digest,
        declared: u64,
        actual: u64,
    },
    Other(Error),
}

impl From<sqlx::Error> for PutManifestError {
    fn from(e: sqlx::Error) -> Self {
        PutManifestError::Other(e.into())
    }
}

impl From<Error> for PutManifestError {
    fn from(e: Error) -> Self {
        PutManifestError::Other(e)
    }
}

/// One entry of a referrers listing.
#[derive(Debug)]
pub struct Referrer {
    pub digest: String,
    pub media_type: String,
    pub size: i64,
    pub artifact_type: Option<String>,
    pub annotations: Option<String>,
}

/// A staged part of an upload session.
#[derive(Debug, Clone)]
pub struct UploadPart {
    pub start: i64,
    pub size: i64,
    pub key: String,
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Meta {
    /// Opens (creating if needed) and migrates the database `config` names, with pools sized
    /// by `limits` (`database_readers` for SQLite, `database_connections` for PostgreSQL).
    pub async fn connect(
        config: &DatabaseConfig,
        limits: &Limits,
        durable: bool,
    ) -> anyhow::Result<Meta> {
        sqlx::any::install_default_drivers();
        let readers = limits.database_readers;
        let path = match config {
            DatabaseConfig::Sqlite { path } => path,
            DatabaseConfig::Postgres { url } => {
                let acquire_timeout = Duration::from_secs(limits.database_acquire_timeout_secs);
                return Meta::connect_postgres(url, limits.database_connections, acquire_timeout)
                    .await;
            }
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let url = sqlite_url(path);
        // WAL lets readers run beside the writer; with synchronous=FULL a commit survives
        // power loss, with NORMAL it survives a crash of the process. Reads go through a
        // memory map of the file (shared page cache, up to 256 MiB): in WAL mode a connection
        // drops its own page cache whenever another has written, and re-reading pages with a
        // system call each made the mark of a collection about twice as slow.
        let synchronous = if durable { "FULL" } else { "NORMAL" };
        let pragmas = format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous}; \
             PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000; \
             PRAGMA mmap_size = 268435456;"
        );
        let writer_pragmas = pragmas.clone();
        let writer = AnyPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _| {
                let pragmas = writer_pragmas.clone();
                Box::pin(async move {
                    conn.execute(pragmas.as_str()).await?;
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .with_context(|| format!("opening the metadata index at {}", path.display()))?;
        SQLITE_MIGRATIONS
            .run(&writer)
            .await
            .context("migrating the metadata index")?;
        let reader = AnyPoolOptions::new()
            .max_connections(readers)
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _| {
                let pragmas = format!("{pragmas} PRAGMA query_only = ON;");
                Box::pin(async move {
                    conn.execute(pragmas.as_str()).await?;
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        Ok(Meta {
            writer,
            reader,
            postgres: false,
            review_delay: None,
        })
    }

    /// PostgreSQL: every replica connects to the same server; the migrator holds an advisory
    /// lock, so replicas starting together migrate once.
    async fn connect_postgres(
        url: &str,
        connections: u32,
        acquire_timeout: Duration,
    ) -> anyhow::Result<Meta> {
        let pool = AnyPoolOptions::new()
            .max_connections(connections)
            .acquire_timeout(acquire_timeout)
            .connect(url)
            .await
            .with_context(|| format!("connecting to the metadata index at {}", redacted(url)))?;
        POSTGRES_MIGRATIONS
            .run(&pool)
            .await
            .context("migrating the metadata index")?;
        Ok(Meta {
            writer: pool.clone(),
            reader: pool,
            postgres: true,
            review_delay: None,
        })
    }

    /// Brings the schema up to date without serving (`berth migrate`).
    pub async fn migrate(config: &DatabaseConfig) -> anyhow::Result<()> {
        let limits = Limits {
            database_readers: 1,
            database_connections: 2,
            ..Limits::default()
        };
        Meta::connect(config, &limits, true).await?.close().await;
        Ok(())
    }

    /// A write transaction. On SQLite it takes the write lock at once (`BEGIN IMMEDIATE`):
    /// a transaction that reads first and writes later would otherwise fail with "database
    /// is locked" when another process (`berth gc`, a second server) committed meanwhile,
    /// instead of waiting its turn.
    async fn write_tx(&self) -> sqlx::Result<sqlx::Transaction<'static, sqlx::Any>> {
        if self.postgres {
            self.writer.begin().await
        } else {
            self.writer.begin_with("BEGIN IMMEDIATE").await
        }
    }

    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }

    // ---------------------------------------------------------------- repositories

    pub async fn repository_id(&self, repo: &RepoName) -> Result<Option<i64>> {
        let row = sqlx::query("SELECT id FROM repositories WHERE name = $1")
            .bind(repo.as_str())
            .fetch_optional(&self.reader)
            .await?;
        Ok(row.map(|r| r.get::<i64, _>(0)))
    }

    /// Repository names with at least one manifest, after `last`, at most `n`.
    pub async fn catalog(&self, last: &str, n: u32) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT name FROM repositories r WHERE name > $1 \
             AND EXISTS (SELECT 1 FROM manifests m WHERE m.repository_id = r.id) \
             ORDER BY name LIMIT $2",
        )
        .bind(last)
        .bind(i64::from(n))
        .fetch_all(&self.reader)
        .await?;
        Ok(rows.iter().map(|r| r.get::<String, _>(0)).collect())
    }

    /// Repositories after `last` in name order, `n` at most, with their usage figures.
    /// Counts come from correlated subqueries on indexed columns, so a page costs `n` probes.
    pub async fn repository_summaries(&self, last: &str, n: u32) -> Result<Vec<RepositorySummary>> {
        let rows = sqlx::query(
            "SELECT r.name, r.created_at, r.push_count, r.pull_count, r.last_push_at, \
             r.last_pull_at, \
             (SELECT COUNT(*) FROM manifests m WHERE m.repository_id = r.id), \
             (SELECT COUNT(*) FROM tags t WHERE t.repository_id = r.id), \
             (SELECT CAST(COALESCE(SUM(b.size), 0) AS BIGINT) FROM repository_blobs rb \
              JOIN blobs b ON b.digest = rb.digest WHERE rb.repository_id = r.id) \
             FROM repositories r WHERE r.name > $1 ORDER BY r.name LIMIT $2",
        )
        .bind(last)
        .bind(i64::from(n))
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .iter()
            .map(|r| RepositorySummary {
                name: r.get(0),
                created_at: r.get(1),
                push_count: r.get(2),
                pull_count: r.get(3),
                last_push_at: r.get(4),
                last_pull_at: r.get(5),
                manifest_count: r.get(6),
                tag_count: r.get(7),
                blob_bytes: r.get(8),
            })
            .collect())
    }

    // ---------------------------------------------------------------- blobs

    /// Size of `digest` if it is linked into `repo`.
    pub async fn linked_blob_size(&self, repo: &RepoName, digest: &Digest) -> Result<Option<u64>> {
        let row = sqlx::query(
            "SELECT b.size FROM repository_blobs rb \
             JOIN repositories r ON r.id = rb.repository_id \
             JOIN blobs b ON b.digest = rb.digest \
             WHERE r.name = $1 AND rb.digest = $2",
        )
        .bind(repo.as_str())
        .bind(digest.to_string())
        .fetch_optional(&self.reader)
        .await?;
        Ok(row.map(|r| r.get::<i64, _>(0) as u64))
    }

    /// Repositories (at most `limit`) that link `digest`, for mounts without `from`.
    pub async fn repositories_linking(&self, digest: &Digest, limit: i64) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT r.name FROM repository_blobs rb JOIN repositories r ON r.id = rb.repository_id \
             WHERE rb.digest = $1 ORDER BY r.name LIMIT $2",
        )
        .bind(digest.to_string())
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows.iter().map(|r| r.get::<String, _>(0)).collect())
    }

    /// Records a verified blob of `size` bytes, links it into `repo` and releases the
    /// writer's fence on it.
    pub async fn link_blob(&self, repo: &RepoName, digest: &Digest, size: u64) -> Result<()> {
        let now = now();
        let mut tx = self.write_tx().await?;
        let repository_id = ensure_repository(&mut tx, repo).await?;
        insert_blob(&mut *tx, digest, size, now).await?;
        insert_link(&mut *tx, repository_id, digest, now).await?;
        lifecycle::release_write_fence(&mut tx, digest).await?;
        self.queue_review(&mut tx, repository_id, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Links a blob the index already records into `repo` (a mount). Returns false, linking
    /// nothing, when the blob's row is gone (collected meanwhile): its bytes may be gone too,
    /// so the client must upload them again.
    pub async fn mount_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        let now = now();
        let mut tx = self.write_tx().await?;
        let repository_id = ensure_repository(&mut tx, repo).await?;
        let linked = sqlx::query(
            "INSERT INTO repository_blobs (repository_id, digest, linked_at) \
             SELECT $1, digest, $3 FROM blobs WHERE digest = $2 \
             ON CONFLICT (repository_id, digest) DO UPDATE SET linked_at = excluded.linked_at",
        )
        .bind(repository_id)
        .bind(digest.to_string())
        .bind(now)
        .execute(&mut *tx)
        .await;
        match linked {
            Ok(done) if done.rows_affected() > 0 => {
                self.queue_review(&mut tx, repository_id, now).await?;
                tx.commit().await?;
                Ok(true)
            }
            Ok(_) => Ok(false),
            // PostgreSQL: the row was deleted by a collector between our read and the key check.
            Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes the link of `digest` from `repo`; the bytes stay for other repositories.
    pub async fn unlink_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        let done = sqlx::query(
            "DELETE FROM repository_blobs WHERE digest = $2 \
             AND repository_id = (SELECT id FROM repositories WHERE name = $1)",
        )
        .bind(repo.as_str())
        .bind(digest.to_string())
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    // ---------------------------------------------------------------- uploads

    pub async fn create_upload(&self, repo: &RepoName, id: &str) -> Result<()> {
        // One statement when the repository exists (the common case); a new repository first.
        let insert = "INSERT INTO uploads (id, repository_id, size, started_at, updated_at) \
                      SELECT $1, id, 0, $3, $3 FROM repositories WHERE name = $2";
        let now = now();
        let done = sqlx::query(insert)
            .bind(id)
            .bind(repo.as_str())
            .bind(now)
            .execute(&self.writer)
            .await?;
        if done.rows_affected() == 0 {
            let mut tx = self.write_tx().await?;
            ensure_repository(&mut tx, repo).await?;
            sqlx::query(insert)
                .bind(id)
                .bind(repo.as_str())
                .bind(now)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        Ok(())
    }

    /// Bytes received so far by upload `id` of `repo`, or `None` if there is no such session.
    pub async fn upload_size(&self, repo: &RepoName, id: &str) -> Result<Option<u64>> {
        let row = sqlx::query(
            "SELECT u.size FROM uploads u JOIN repositories r ON r.id = u.repository_id \
             WHERE u.id = $1 AND r.name = $2",
        )
        .bind(id)
        .bind(repo.as_str())
        .fetch_optional(&self.reader)
        .await?;
        Ok(row.map(|r| r.get::<i64, _>(0) as u64))
    }

    /// Bytes received so far by upload `id`, whatever its repository.
    pub async fn upload_size_any(&self, id: &str) -> Result<Option<u64>> {
        let row = sqlx::query("SELECT size FROM uploads WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.writer)
            .await?;
        Ok(row.map(|r| r.get::<i64, _>(0) as u64))
    }

    /// Records a part written at `start`, if the session still ends at `start`; returns
    /// whether it did (another request may have appended first).
    pub async fn append_upload_part(
        &self,
        id: &str,
        start: u64,
        size: u64,
        key: &str,
    ) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        let updated = sqlx::query(
            "UPDATE uploads SET size = size + $3, updated_at = $4 WHERE id = $1 AND size = $2",
        )
        .bind(id)
        .bind(start as i64)
        .bind(size as i64)
        .bind(now())
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO upload_parts (upload_id, start, size, object_key) VALUES ($1, $2, $3, $4)",
        )
        .bind(id)
        .bind(start as i64)
        .bind(size as i64)
        .bind(key)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn upload_parts(&self, id: &str) -> Result<Vec<UploadPart>> {
        let rows = sqlx::query(
            "SELECT start, size, object_key FROM upload_parts WHERE upload_id = $1 ORDER BY start",
        )
        .bind(id)
        .fetch_all(&self.writer)
        .await?;
        Ok(rows
            .iter()
            .map(|r| UploadPart {
                start: r.get(0),
                size: r.get(1),
                key: r.get(2),
            })
            .collect())
    }

    /// Ends upload `id`; returns whether it existed. Its part objects are the caller's to delete.
    pub async fn delete_upload(&self, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM uploads WHERE id = $1")
            .bind(id)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Completes upload `id`: the blob is recorded, the session ends, the blob is linked into
    /// `repo`, the writer's fence on `digest` is released and the repository is queued for
    /// review. One transaction: if it fails, nothing is recorded and the client pushes again.
    /// Returns false if the session was already gone.
    pub async fn finish_upload(
        &self,
        repo: &RepoName,
        id: &str,
        digest: &Digest,
        size: u64,
    ) -> Result<bool> {
        let now = now();
        let mut tx = self.write_tx().await?;
        let ended = sqlx::query(
            "DELETE FROM uploads WHERE id = $1 \
             AND repository_id = (SELECT id FROM repositories WHERE name = $2) RETURNING repository_id",
        )
        .bind(id)
        .bind(repo.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(ended) = ended else {
            return Ok(false);
        };
        let repository_id: i64 = ended.get(0);
        insert_blob(&mut *tx, digest, size, now).await?;
        insert_link(&mut *tx, repository_id, digest, now).await?;
        lifecycle::release_write_fence(&mut tx, digest).await?;
        self.queue_review(&mut tx, repository_id, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    // ---------------------------------------------------------------- manifests and tags

    /// The manifest `reference` names in `repo`; with `payload` false only its headers.
    pub async fn manifest_by_tag(
        &self,
        repo: &RepoName,
        tag: &Tag,
        payload: bool,
    ) -> Result<Option<StoredManifest>> {
        let sql = format!(
            "SELECT m.id, m.repository_id, m.digest, m.media_type, m.size, {} FROM tags t \
             JOIN repositories r ON r.id = t.repository_id JOIN manifests m ON m.id = t.manifest_id \
             WHERE r.name = $1 AND t.name = $2",
            if payload { "m.payload" } else { "NULL" }
        );
        let row = sqlx::query(&sql)
            .bind(repo.as_str())
            .bind(tag.as_str())
            .fetch_optional(&self.reader)
            .await?;
        Ok(row.map(stored_manifest))
    }

    pub async fn manifest_by_digest(
        &self,
        repo: &RepoName,
        digest: &Digest,
        payload: bool,
    ) -> Result<Option<StoredManifest>> {
        let sql = format!(
            "SELECT m.id, m.repository_id, m.digest, m.media_type, m.size, {} FROM manifests m \
             JOIN repositories r ON r.id = m.repository_id WHERE r.name = $1 AND m.digest = $2",
            if payload { "m.payload" } else { "NULL" }
        );
        let row = sqlx::query(&sql)
            .bind(repo.as_str())
            .bind(digest.to_string())
            .fetch_optional(&self.reader)
            .await?;
        Ok(row.map(stored_manifest))
    }

    /// Stores a manifest (and tags it), after checking in the same transaction that every blob
    /// and child it references is in `repo`.
    ///
    /// Counting the push first takes the repository's row lock on PostgreSQL, which the
    /// collector also takes before it removes links or manifests of the repository: the two
    /// never interleave (on SQLite the single writer serialises them anyway). A `tag` that
    /// points elsewhere is moved only when `tag_may_move`, else the push is refused.
    pub async fn put_manifest(
        &self,
        repo: &RepoName,
        manifest: NewManifest<'_>,
        tag: Option<&Tag>,
        tag_may_move: bool,
    ) -> Result<(), PutManifestError> {
        let mut tx = self.write_tx().await?;
        let repository_id = ensure_repository(&mut tx, repo).await?;
        let now = now();
        sqlx::query(
            "UPDATE repositories SET push_count = push_count + 1, last_push_at = $2 WHERE id = $1",
        )
        .bind(repository_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let mut total_size = manifest.payload.len() as i64;
        let blob_sizes = sizes_in_repository(
            &mut tx,
            "SELECT rb.digest, b.size FROM repository_blobs rb JOIN blobs b ON b.digest = rb.digest \
             WHERE rb.repository_id = $1 AND rb.digest IN",
            repository_id,
            manifest.blobs.iter().map(|(d, _)| *d),
        )
        .await?;
        for (digest, declared) in &manifest.blobs {
            let actual = *blob_sizes
                .get(&digest.to_string())
                .ok_or_else(|| PutManifestError::Missing((*digest).clone()))?;
            if actual as u64 != *declared {
                return Err(PutManifestError::SizeMismatch {
                    digest: (*digest).clone(),
                    declared: *declared,
                    actual: actual as u64,
                });
            }
            total_size += actual;
        }
        let child_sizes = sizes_in_repository(
            &mut tx,
            "SELECT digest, total_size FROM manifests WHERE repository_id = $1 AND digest IN",
            repository_id,
            manifest.children.iter().copied(),
        )
        .await?;
        for digest in &manifest.children {
            total_size += *child_sizes
                .get(&digest.to_string())
                .ok_or_else(|| PutManifestError::Missing((*digest).clone()))?;
        }
        let id: i64 = sqlx::query(
            "INSERT INTO manifests (repository_id, digest, media_type, artifact_type, subject, \
               config_digest, os, architecture, variant, annotations, size, total_size, payload, pushed_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
             ON CONFLICT (repository_id, digest) DO UPDATE SET pushed_at = excluded.pushed_at \
             RETURNING id",
        )
        .bind(repository_id)
        .bind(manifest.digest.to_string())
        .bind(manifest.media_type)
        .bind(manifest.artifact_type)
        .bind(manifest.subject.map(|d| d.to_string()))
        .bind(manifest.config_digest.map(|d| d.to_string()))
        .bind(manifest.os)
        .bind(manifest.architecture)
        .bind(manifest.variant)
        .bind(manifest.annotations)
        .bind(manifest.payload.len() as i64)
        .bind(total_size)
        .bind(manifest.payload.to_vec())
        .bind(now)
        .fetch_one(&mut *tx)
        .await?
        .get(0);
        let references: Vec<(String, &str)> = manifest
            .blobs
            .iter()
            .map(|(d, _)| (d.to_string(), "blob"))
            .chain(
                manifest
                    .children
                    .iter()
                    .map(|d| (d.to_string(), "manifest")),
            )
            .collect();
        if !references.is_empty() {
            let values: Vec<String> = (0..references.len())
                .map(|i| format!("($1, ${}, ${})", 2 * i + 2, 2 * i + 3))
                .collect();
            let sql = format!(
                "INSERT INTO manifest_references (manifest_id, digest, kind) VALUES {} \
                 ON CONFLICT (manifest_id, digest) DO NOTHING",
                values.join(", ")
            );
            let mut insert = sqlx::query(&sql).bind(id);
            for (digest, kind) in &references {
                insert = insert.bind(digest.as_str()).bind(*kind);
            }
            insert.execute(&mut *tx).await?;
        }
        if let Some(tag) = tag {
            let written = sqlx::query(
                "INSERT INTO tags (repository_id, name, manifest_id, pushed_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $4) ON CONFLICT (repository_id, name) \
                 DO UPDATE SET manifest_id = excluded.manifest_id, updated_at = excluded.updated_at \
                 WHERE $5 = 1 OR tags.manifest_id = excluded.manifest_id",
            )
            .bind(repository_id)
            .bind(tag.as_str())
            .bind(id)
            .bind(now)
            .bind(i64::from(tag_may_move))
            .execute(&mut *tx)
            .await?;
            if written.rows_affected() == 0 {
                return Err(PutManifestError::TagImmutable);
            }
            self.queue_review(&mut tx, repository_id, now).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records a push of a manifest `repo` already holds: points `tag` (if any) at it and
    /// counts the push. Returns false, changing nothing, when the manifest is not there.
    /// A `tag` that points elsewhere is moved only when `tag_may_move`.
    pub async fn repush_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
        tag: Option<&Tag>,
        tag_may_move: bool,
    ) -> Result<Repushed> {
        let now = now();
        let Some(manifest) = self.manifest_by_digest(repo, digest, false).await? else {
            return Ok(Repushed::NotThere);
        };
        if let Some(tag) = tag {
            let mut tx = self.write_tx().await?;
            let written = sqlx::query(
                "INSERT INTO tags (repository_id, name, manifest_id, pushed_at, updated_at) \
                 SELECT m.repository_id, $2, m.id, $3, $3 FROM manifests m WHERE m.id = $1 \
                 ON CONFLICT (repository_id, name) \
                 DO UPDATE SET manifest_id = excluded.manifest_id, updated_at = excluded.updated_at \
                 WHERE $4 = 1 OR tags.manifest_id = excluded.manifest_id",
            )
            .bind(manifest.id)
            .bind(tag.as_str())
            .bind(now)
            .bind(i64::from(tag_may_move))
            .execute(&mut *tx)
            .await?;
            if written.rows_affected() == 0 {
                let still_there = self
                    .manifest_by_digest(repo, digest, false)
                    .await?
                    .is_some();
                return Ok(if still_there {
                    Repushed::TagImmutable
                } else {
                    Repushed::NotThere
                });
            }
            self.queue_review(&mut tx, manifest.repository_id, now)
                .await?;
            tx.commit().await?;
        }
        sqlx::query(
            "UPDATE repositories SET push_count = push_count + 1, last_push_at = $2 WHERE id = $1",
        )
        .bind(manifest.repository_id)
        .bind(now)
        .execute(&self.writer)
        .await?;
        Ok(Repushed::Done)
    }

    /// Deletes a manifest and, through the schema, its tags, and queues the repository for
    /// review. Returns whether it existed.
    pub async fn delete_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        self.delete_in_repository(
            repo,
            "DELETE FROM manifests WHERE repository_id = $1 AND digest = $2",
            &digest.to_string(),
        )
        .await
    }

    /// Removes one tag; the manifest stays. Returns whether the tag existed.
    pub async fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<bool> {
        self.delete_in_repository(
            repo,
            "DELETE FROM tags WHERE repository_id = $1 AND name = $2",
            tag.as_str(),
        )
        .await
    }

    /// Runs `delete` (binds: repository id, `key`) under the repository's row lock, and
    /// queues the repository for review when it deleted something.
    async fn delete_in_repository(&self, repo: &RepoName, delete: &str, key: &str) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        let Some(repository_id) = lock_repository(&mut tx, repo).await? else {
            return Ok(false);
        };
        let done = sqlx::query(delete)
            .bind(repository_id)
            .bind(key)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        self.queue_review(&mut tx, repository_id, now()).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Tags of `repository_id` after `last`, at most `n`, in the spec's lexical order
    /// (case-insensitive; tags equal but for case by their bytes).
    pub async fn list_tags(&self, repository_id: i64, last: &str, n: u32) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT name FROM tags WHERE repository_id = $1 \
             AND (lower(name) > lower($2) OR (lower(name) = lower($2) AND name > $2)) \
             ORDER BY lower(name), name LIMIT $3",
        )
        .bind(repository_id)
        .bind(last)
        .bind(i64::from(n))
        .fetch_all(&self.reader)
        .await?;
        Ok(rows.iter().map(|r| r.get::<String, _>(0)).collect())
    }

    /// Manifests of `repo` whose subject is `subject`, after digest `last`, at most `n`.
    pub async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
        last: &str,
        n: u32,
    ) -> Result<Vec<Referrer>> {
        let rows = sqlx::query(
            "SELECT m.digest, m.media_type, m.size, m.artifact_type, m.annotations FROM manifests m \
             JOIN repositories r ON r.id = m.repository_id \
             WHERE r.name = $1 AND m.subject = $2 AND (CAST($3 AS TEXT) IS NULL OR m.artifact_type = $3) \
               AND m.digest > $4 \
             ORDER BY m.digest LIMIT $5",
        )
        .bind(repo.as_str())
        .bind(subject.to_string())
        .bind(artifact_type)
        .bind(last)
        .bind(i64::from(n))
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .iter()
            .map(|r| Referrer {
                digest: r.get(0),
                media_type: r.get(1),
                size: r.get(2),
                artifact_type: r.get(3),
                annotations: r.get(4),
            })
            .collect())
    }
}

/// `digest → size` for those of `digests` that `query` (ending in `IN`) finds in a repository.
async fn sizes_in_repository<'d>(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    query: &str,
    repository_id: i64,
    digests: impl Iterator<Item = &'d Digest>,
) -> Result<std::collections::HashMap<String, i64>> {
    let digests: Vec<String> = digests.map(Digest::to_string).collect();
    if digests.is_empty() {
        return Ok(Default::default());
    }
    let placeholders: Vec<String> = (0..digests.len()).map(|i| format!("${}", i + 2)).collect();
    let sql = format!("{query} ({})", placeholders.join(", "));
    let mut select = sqlx::query(&sql).bind(repository_id);
    for d in &digests {
        select = select.bind(d.as_str());
    }
    let rows = select.fetch_all(&mut **tx).await?;
    Ok(rows
        .iter()
        .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1)))
        .collect())
}

/// `url` without its password, for messages.
fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "(unparsable URL)".into(),
    }
}

fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}?mode=rwc", path.display())
}

fn stored_manifest(r: AnyRow) -> StoredManifest {
    StoredManifest {
        id: r.get(0),
        repository_id: r.get(1),
        digest: r.get(2),
        media_type: r.get(3),
        size: r.get(4),
        payload: r
            .try_get::<Option<Vec<u8>>, _>(5)
            .ok()
            .flatten()
            .unwrap_or_default(),
    }
}

/// The id of `repo`, with its row locked until the transaction ends (PostgreSQL; SQLite has
/// one writer). Pushes of manifests take the same lock.
async fn lock_repository(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    repo: &RepoName,
) -> Result<Option<i64>> {
    let row = sqlx::query("UPDATE repositories SET id = id WHERE name = $1 RETURNING id")
        .bind(repo.as_str())
        .fetch_optional(&mut **tx)
        .await?;
    Ok(row.map(|r| r.get(0)))
}

async fn ensure_repository(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    repo: &RepoName,
) -> Result<i64> {
    let found = sqlx::query("SELECT id FROM repositories WHERE name = $1")
        .bind(repo.as_str())
        .fetch_optional(&mut **tx)
        .await?;
    if let Some(row) = found {
        return Ok(row.get(0));
    }
    // A racing creator (another replica) may win; the upsert then returns its row.
    let row = sqlx::query(
        "INSERT INTO repositories (name, created_at) VALUES ($1, $2) \
         ON CONFLICT (name) DO UPDATE SET name = excluded.name RETURNING id",
    )
    .bind(repo.as_str())
    .bind(now())
    .fetch_one(&mut **tx)
    .await?;
    Ok(row.get(0))
}

async fn insert_blob<'e>(
    db: impl sqlx::Executor<'e, Database = sqlx::Any>,
    digest: &Digest,
    size: u64,
    now: i64,
) -> Result<()> {
    sqlx::query(
        // A write refreshes `created_at`: the grace period counts from the last write.
        "INSERT INTO blobs (digest, size, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (digest) DO UPDATE SET created_at = excluded.created_at",
    )
    .bind(digest.to_string())
    .bind(size as i64)
    .bind(now)
    .execute(db)
    .await?;
    Ok(())
}

async fn insert_link<'e>(
    db: impl sqlx::Executor<'e, Database = sqlx::Any>,
    repository_id: i64,
    digest: &Digest,
    now: i64,
) -> Result<()> {
    sqlx::query(
        // A new push of the blob refreshes the link's grace period.
        "INSERT INTO repository_blobs (repository_id, digest, linked_at) VALUES ($1, $2, $3) \
         ON CONFLICT (repository_id, digest) DO UPDATE SET linked_at = excluded.linked_at",
    )
    .bind(repository_id)
    .bind(digest.to_string())
    .bind(now)
    .execute(db)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A manifest without blobs or children; `subject` and `artifact_type` for referrers.
    fn manifest<'a>(
        payload: &'a [u8],
        digest: &'a Digest,
        subject: Option<&'a Digest>,
        artifact_type: Option<&'a str>,
    ) -> NewManifest<'a> {
        NewManifest {
            digest,
            media_type: "application/vnd.oci.image.manifest.v1+json",
            artifact_type,
            subject,
            config_digest: None,
            os: None,
            architecture: None,
            variant: None,
            annotations: None,
            payload,
            blobs: Vec::new(),
            children: Vec::new(),
        }
    }

    /// What the orderings and filters of the index return for one fixed content, page by page.
    async fn listings(meta: &Meta) -> Vec<Vec<String>> {
        let repos = ["a-b", "a.b", "a/b", "a_b", "ab", "a0", "z"];
        for (i, name) in repos.iter().enumerate() {
            let repo: RepoName = name.parse().unwrap();
            let payload = format!("{{\"n\":{i}}}").into_bytes();
            let digest = Digest::sha256_of(&payload);
            let tag: Tag = "v1".parse().unwrap();
            assert!(
                meta.put_manifest(
                    &repo,
                    manifest(&payload, &digest, None, None),
                    Some(&tag),
                    true
                )
                .await
                .is_ok()
            );
        }
        let repo: RepoName = "a0".parse().unwrap();
        let subject = Digest::sha256_of(b"{\"n\":5}");
        let tags = ["B", "a", "b", "A-1", "a_1", "a.1", "Ab", "aB", "a1"];
        for (i, tag) in tags.iter().enumerate() {
            let payload = format!("{{\"tag\":{i}}}").into_bytes();
            let digest = Digest::sha256_of(&payload);
            let kind = if i % 2 == 0 { "x/even" } else { "x/odd" };
            let m = manifest(&payload, &digest, Some(&subject), Some(kind));
            assert!(
                meta.put_manifest(&repo, m, Some(&tag.parse().unwrap()), true)
                    .await
                    .is_ok()
            );
        }
        let id = meta.repository_id(&repo).await.unwrap().unwrap();
        let mut out = vec![
            meta.catalog("", 100).await.unwrap(),
            meta.catalog("a.b", 3).await.unwrap(),
            meta.list_tags(id, "", 100).await.unwrap(),
            meta.list_tags(id, "a", 3).await.unwrap(),
            meta.list_tags(id, "A-1", 2).await.unwrap(),
        ];
        for kind in [None, Some("x/even"), Some("x/nothing")] {
            let found = meta
                .referrers(&repo, &subject, kind, "", 100)
                .await
                .unwrap();
            out.push(found.into_iter().map(|r| r.digest).collect());
        }
        out
    }

    /// The listings on SQLite are in byte order (catalog) and the spec's lexical order (tags),
    /// and PostgreSQL returns exactly the same, even in a database whose default collation
    /// (ICU en-US) orders punctuation differently: `COLLATE "C"` in the schema decides.
    /// PostgreSQL runs when `BERTH_TEST_DATABASE_URL` names a server.
    #[tokio::test]
    async fn orderings_are_the_same_on_every_database() {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = DatabaseConfig::Sqlite {
            path: dir.path().join("berth.db"),
        };
        let meta = Meta::connect(&sqlite, &Limits::default(), false)
            .await
            .unwrap();
        let expected = listings(&meta).await;
        meta.close().await;
        let catalog = ["a-b", "a.b", "a/b", "a0", "a_b", "ab", "z"];
        assert_eq!(expected[0], catalog);
        assert_eq!(expected[1], ["a/b", "a0", "a_b"]);
        let tags = ["a", "A-1", "a.1", "a1", "a_1", "Ab", "aB", "B", "b", "v1"];
        assert_eq!(expected[2], tags);
        assert_eq!(expected[3], ["A-1", "a.1", "a1"]);
        assert_eq!(expected[4], ["a.1", "a1"]);
        assert_eq!(expected[5].len(), 9);
        assert!(expected[5].windows(2).all(|w| w[0] < w[1]));
        assert_eq!(expected[6].len(), 5);
        assert!(expected[7].is_empty());

        let Ok(server) = std::env::var("BERTH_TEST_DATABASE_URL") else {
            eprintln!("BERTH_TEST_DATABASE_URL not set: PostgreSQL part skipped");
            return;
        };
        use sqlx::Connection;
        let name = format!("berth_test_icu_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&server).await.unwrap();
        sqlx::query(&format!(
            "CREATE DATABASE \"{name}\" TEMPLATE template0 \
             LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
        ))
        .execute(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();
        let mut url = url::Url::parse(&server).unwrap();
        url.set_path(&format!("/{name}"));
        let pg = DatabaseConfig::Postgres { url: url.into() };
        let meta = Meta::connect(&pg, &Limits::default(), false).await.unwrap();
        assert_eq!(listings(&meta).await, expected);
        meta.close().await;
    }
}
