//! The metadata index: the single source of truth for what exists (repositories, blob links,
//! manifests, tags, upload sessions, and the records of collection, policies and access
//! control). All SQL lives here and nowhere else, written to run unchanged on SQLite and
//! PostgreSQL through sqlx's `Any` driver (`$n` binds, `ON CONFLICT`, `RETURNING`, times as
//! unix seconds, booleans as integers, sums cast to BIGINT).
//!
//! Layering: `registry` and `auth` call this; this calls nothing of theirs. Every read is a
//! typed row (`FromRow`), and digests, repository names and tags are parsed once here into
//! the `oci` newtypes: a stored value that does not parse is an error, never a fallback.
//!
//! One [`Meta`] handle, its methods grouped by noun, one module per noun.

use std::{collections::HashSet, hash::Hash, path::Path, sync::Arc, time::Duration};

use anyhow::Context;
use sqlx::{
    Any, AnyPool, Connection, Executor,
    any::{AnyPoolOptions, AnyTypeInfo, AnyValueRef},
    error::BoxDynError,
};

use crate::{
    clock::Clock,
    config::{Config, DatabaseConfig, Limits, StatsConfig},
    error::Result,
    oci::{Digest, RepoName, Tag},
};

pub mod access;
pub mod advisories;
pub mod audit;
pub mod blobs;
pub mod findings;
pub mod gc;
pub mod images;
pub mod jobs;
pub mod manifests;
pub mod namespaces;
pub mod policies;
pub mod proxy;
pub mod quarantine;
pub mod quotas;
pub mod replication;
pub mod reports;
pub mod repositories;
pub mod scan_policy;
pub mod scans;
pub mod sessions;
pub mod settings;
pub mod signatures;
pub mod stats;
pub mod tags;
pub mod tokens;
pub mod uploads;
pub mod usage;
pub mod users;
pub mod webhooks;

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
    /// A window of at most this many daily rows is summed to find the most pulled
    /// (`stats.popular_summed_rows`); a larger one is searched by pulls ever.
    popular_summed_rows: i64,
    /// The time every statement that records or compares "now" is given.
    clock: Clock,
    /// Tag moves of repeated manifest pushes, committed in groups.
    tag_moves: Arc<tags::TagMoves>,
}

impl Meta {
    /// Opens (creating if needed) and migrates the index `config` names, with everything else
    /// it needs from `config`: pool sizes (`limits`), durability (`durability.fsync`), the
    /// review delay of continuous collection, how the most pulled are searched, and the clock.
    pub async fn open(config: &Config) -> anyhow::Result<Meta> {
        let mut meta = Meta::connect(
            &config.database,
            &config.limits,
            config.durability.fsync,
            config.clock.clone(),
        )
        .await?;
        meta.review_delay = config
            .gc
            .continuous
            .then_some(config.gc.review_delay_secs as i64);
        meta.popular_summed_rows = config.stats.popular_summed_rows.into();
        Ok(meta)
    }

    /// Opens (creating if needed) and migrates the database `config` names, with pools sized
    /// by `limits` (`database_readers` for SQLite, `database_connections` for PostgreSQL).
    async fn connect(
        config: &DatabaseConfig,
        limits: &Limits,
        durable: bool,
        clock: Clock,
    ) -> anyhow::Result<Meta> {
        sqlx::any::install_default_drivers();
        let readers = limits.database_readers;
        let path = match config {
            DatabaseConfig::Sqlite { path } => path,
            DatabaseConfig::Postgres { url } => {
                let acquire_timeout = Duration::from_secs(limits.database_acquire_timeout_secs);
                return Meta::connect_postgres(
                    url,
                    limits.database_connections,
                    acquire_timeout,
                    clock,
                )
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
            popular_summed_rows: StatsConfig::default().popular_summed_rows.into(),
            clock,
            tag_moves: Arc::default(),
        })
    }

    /// PostgreSQL: every replica connects to the same server; the migrator holds an advisory
    /// lock, so replicas starting together migrate once.
    async fn connect_postgres(
        url: &str,
        connections: u32,
        acquire_timeout: Duration,
        clock: Clock,
    ) -> anyhow::Result<Meta> {
        let pool = AnyPoolOptions::new()
            .max_connections(connections)
            .acquire_timeout(acquire_timeout)
            // The index's statements are short, but the planner's cost of a listing with
            // correlated subqueries over a million manifests passes JIT's threshold: compiling
            // it took 460 of 475 ms in a 27 ms query.
            .after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("SET jit = off").await?;
                    Ok(())
                })
            })
            // A connection's socket buffers grow to the largest message it has carried (a
            // collection's report is megabytes) and never shrink on their own: the pool's
            // connections each kept theirs, which was the slow growth of a long soak.
            .after_release(|conn, _| {
                Box::pin(async move {
                    conn.shrink_buffers();
                    Ok(true)
                })
            })
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
            popular_summed_rows: StatsConfig::default().popular_summed_rows.into(),
            clock,
            tag_moves: Arc::default(),
        })
    }

    /// Brings the schema up to date without serving (`berth migrate`).
    pub async fn migrate(config: &DatabaseConfig) -> anyhow::Result<()> {
        let limits = Limits {
            database_readers: 1,
            database_connections: 2,
            ..Limits::default()
        };
        Meta::connect(config, &limits, true, Clock::default())
            .await?
            .close()
            .await;
        Ok(())
    }

    /// A write transaction. On SQLite it takes the write lock at once (`BEGIN IMMEDIATE`):
    /// a transaction that reads first and writes later would otherwise fail with "database
    /// is locked" when another process (`berth gc`, a second server) committed meanwhile,
    /// instead of waiting its turn.
    async fn write_tx(&self) -> sqlx::Result<sqlx::Transaction<'static, sqlx::Any>> {
        if self.postgres {
            return self.writer.begin().await;
        }
        match self.writer.begin_with("BEGIN IMMEDIATE").await {
            // A COMMIT that failed with SQLITE_FULL (disk full) is rolled back by SQLite
            // itself, so the driver's own rollback fails and it believes the connection is
            // still in that transaction: every later BEGIN would fail. Such a connection is
            // closed and a fresh one opened, so writes resume once space is freed.
            Err(sqlx::Error::InvalidSavePointStatement) => {
                tracing::warn!(
                    "the index's writer was left inside a failed transaction; reopening it"
                );
                self.writer.acquire().await?.close().await?;
                self.writer.begin_with("BEGIN IMMEDIATE").await
            }
            begun => begun,
        }
    }

    /// "Now" for the statements of this handle, by the clock it was opened with.
    fn now(&self) -> i64 {
        self.clock.now()
    }

    /// Closes both pools, waiting for connections in use to be returned.
    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }

    /// Which of `keys` the query `sql(list)` finds, given the placeholder list of a chunk of
    /// them; it selects one text column, decoded as `T`.
    async fn present<T>(&self, sql: impl Fn(&str) -> String, keys: &[String]) -> Result<HashSet<T>>
    where
        T: for<'r> sqlx::Decode<'r, Any> + sqlx::Type<Any> + Eq + Hash + Send + Unpin,
    {
        let mut found = HashSet::new();
        for chunk in keys.chunks(1000) {
            let sql = sql(&placeholders(1, chunk.len()));
            let mut select = sqlx::query_scalar::<_, T>(&sql).persistent(false);
            for k in chunk {
                select = select.bind(k.as_str());
            }
            found.extend(select.fetch_all(&self.writer).await?);
        }
        Ok(found)
    }
}

/// `$start, $start+1, ...`: `n` placeholders for an `IN` list.
///
/// A statement whose text grows with a long list (these, or a multi-row `VALUES`, in chunks
/// of hundreds) runs with `.persistent(false)`: SQLite compiles each length into a program of
/// its own, up to hundreds of KiB for a long list, and sqlx would keep 100 of them per
/// connection; in a long soak such programs were most of the heap in use, and the heap grew
/// until the caches filled. Lists bounded by one manifest's references stay cached: short, and
/// on the push path.
fn placeholders(start: usize, n: usize) -> String {
    (start..start + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The text forms of `digests`, for binds.
fn digest_texts<'d>(digests: impl IntoIterator<Item = &'d Digest>) -> Vec<String> {
    digests.into_iter().map(Digest::to_string).collect()
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

/// A boolean column: the schema stores booleans as integers (0 or 1) on both databases.
/// Row fields decode through it with `#[sqlx(try_from = "IntBool")]`.
struct IntBool(bool);

impl From<IntBool> for bool {
    fn from(b: IntBool) -> bool {
        b.0
    }
}

impl sqlx::Type<Any> for IntBool {
    fn type_info() -> AnyTypeInfo {
        <i64 as sqlx::Type<Any>>::type_info()
    }

    fn compatible(ty: &AnyTypeInfo) -> bool {
        <i64 as sqlx::Type<Any>>::compatible(ty)
    }
}

impl<'r> sqlx::Decode<'r, Any> for IntBool {
    fn decode(value: AnyValueRef<'r>) -> std::result::Result<Self, BoxDynError> {
        match <i64 as sqlx::Decode<Any>>::decode(value)? {
            0 => Ok(IntBool(false)),
            1 => Ok(IntBool(true)),
            other => Err(format!("{other} is not a stored boolean (0 or 1)").into()),
        }
    }
}

/// Text columns that hold an `oci` value decode straight into it: parsed once, here. A value
/// that does not parse fails the read (sqlx names the column; the message names the value).
macro_rules! decoded_as_text {
    ($($ty:ty => $what:literal),* $(,)?) => {$(
        impl sqlx::Type<Any> for $ty {
            fn type_info() -> AnyTypeInfo {
                <String as sqlx::Type<Any>>::type_info()
            }

            fn compatible(ty: &AnyTypeInfo) -> bool {
                <String as sqlx::Type<Any>>::compatible(ty)
            }
        }

        impl<'r> sqlx::Decode<'r, Any> for $ty {
            fn decode(value: AnyValueRef<'r>) -> std::result::Result<Self, BoxDynError> {
                let text = <String as sqlx::Decode<Any>>::decode(value)?;
                <$ty>::try_from(text.clone())
                    .map_err(|e| format!(concat!("stored ", $what, " {:?}: {}"), text, e).into())
            }
        }
    )*};
}

decoded_as_text!(Digest => "digest", RepoName => "repository name", Tag => "tag");

/// SQL true when repository name `repo` lies in namespace `ns` (portable: no split_part).
macro_rules! in_namespace {
    ($repo:literal, $ns:literal) => {
        concat!(
            "(",
            $repo,
            " = ",
            $ns,
            " OR substr(",
            $repo,
            ", 1, length(",
            $ns,
            ") + 1) = ",
            $ns,
            " || '/')"
        )
    };
}
use in_namespace;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::manifests::NewManifest;

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
            from_upstream: false,
            actor: None,
            scan: None,
        }
    }

    /// What the orderings and filters of the index return for one fixed content, page by page.
    async fn listings(meta: &Meta) -> Vec<Vec<String>> {
        let texts = |items: Vec<RepoName>| items.iter().map(RepoName::to_string).collect();
        let tag_texts = |items: Vec<Tag>| items.iter().map(Tag::to_string).collect();
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
            texts(meta.catalog("", 100).await.unwrap()),
            texts(meta.catalog("a.b", 3).await.unwrap()),
            tag_texts(meta.list_tags(id, "", 100).await.unwrap()),
            tag_texts(meta.list_tags(id, "a", 3).await.unwrap()),
            tag_texts(meta.list_tags(id, "A-1", 2).await.unwrap()),
        ];
        for kind in [None, Some("x/even"), Some("x/nothing")] {
            let found = meta
                .referrers(&repo, &subject, kind, "", 100)
                .await
                .unwrap();
            out.push(found.into_iter().map(|r| r.digest.to_string()).collect());
        }
        out
    }

    /// A fresh SQLite index in `dir`.
    async fn sqlite_index(dir: &std::path::Path) -> Meta {
        let sqlite = DatabaseConfig::Sqlite {
            path: dir.join("berth.db"),
        };
        Meta::connect(&sqlite, &Limits::default(), false, Clock::default())
            .await
            .unwrap()
    }

    /// The listings of the index on SQLite, in byte order (catalog) and the spec's lexical
    /// order (tags).
    async fn sqlite_listings() -> Vec<Vec<String>> {
        let dir = tempfile::tempdir().unwrap();
        let meta = sqlite_index(dir.path()).await;
        let listings = listings(&meta).await;
        meta.close().await;
        listings
    }

    /// A stored digest that does not parse fails the read, naming the column and the value,
    /// instead of being skipped or passed on as text.
    #[tokio::test]
    async fn a_stored_value_that_does_not_parse_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let meta = sqlite_index(dir.path()).await;
        sqlx::query("INSERT INTO blobs (digest, size, created_at) VALUES ('sha256:nothex', 1, 0)")
            .execute(&meta.writer)
            .await
            .unwrap();
        let error = meta.unlinked_blobs(i64::MAX, "", 10).await.unwrap_err();
        let message = format!("{:#}", anyhow::Error::from(error));
        assert!(message.contains("decoding column"), "{message}");
        assert!(message.contains("sha256:nothex"), "{message}");
        meta.close().await;
    }

    /// The collector's walk over the blobs table, a window of `n` rows at a time: across the
    /// windows it finds exactly the blobs that are unlinked and older than the cutoff, and the
    /// last window (the one shorter than `n`) ends the walk.
    #[tokio::test]
    async fn unlinked_blobs_are_found_window_by_window() {
        let dir = tempfile::tempdir().unwrap();
        let meta = sqlite_index(dir.path()).await;
        sqlx::query("INSERT INTO repositories (id, name, created_at) VALUES (1, 'r', 0)")
            .execute(&meta.writer)
            .await
            .unwrap();
        let digest = |i: u8| format!("sha256:{}", format!("{i:02x}").repeat(32));
        let mut expected = Vec::new();
        for i in 0..7u8 {
            // Every third blob is linked; blob 5 is newer than the cutoff.
            let created_at = if i == 5 { 20 } else { 10 };
            sqlx::query("INSERT INTO blobs (digest, size, created_at) VALUES ($1, 1, $2)")
                .bind(digest(i))
                .bind(created_at)
                .execute(&meta.writer)
                .await
                .unwrap();
            if i % 3 == 0 {
                sqlx::query(
                    "INSERT INTO repository_blobs (repository_id, digest, linked_at) \
                     VALUES (1, $1, 0)",
                )
                .bind(digest(i))
                .execute(&meta.writer)
                .await
                .unwrap();
            } else if i != 5 {
                expected.push(digest(i));
            }
        }
        let (mut found, mut after, mut windows) = (Vec::new(), String::new(), 0);
        loop {
            let (unlinked, last) = meta.unlinked_blobs(15, &after, 3).await.unwrap();
            windows += 1;
            found.extend(unlinked.iter().map(|d| d.to_string()));
            match last {
                Some(d) => after = d.to_string(),
                None => break,
            }
        }
        assert_eq!(found, expected);
        assert_eq!(windows, 3, "7 rows in windows of 3");
        meta.close().await;
    }

    #[tokio::test]
    async fn finished_gc_runs_are_pruned_to_the_newest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let meta = sqlite_index(dir.path()).await;
        let report = serde_json::json!({"items": ["a deleted blob"]});
        let mut finished = Vec::new();
        for i in 0..5 {
            let id = meta.create_gc_run("api", i == 2, true).await.unwrap();
            let failed = i == 1;
            let counts = crate::meta::gc::GcCounts::default();
            meta.finish_gc_run(id, &counts, failed, &report)
                .await
                .unwrap();
            finished.push(id);
        }
        let running = meta.create_gc_run("cli", false, true).await.unwrap();
        let ids = |runs: Vec<crate::meta::gc::GcRunRecord>| runs.iter().map(|r| r.id).collect();

        assert_eq!(meta.prune_gc_runs(3).await.unwrap(), 2);
        let kept: Vec<i64> = ids(meta.gc_runs(None, 100).await.unwrap());
        let newest = [running, finished[4], finished[3], finished[2]];
        assert_eq!(kept, newest, "the running run and the newest 3 finished");
        let report_kept = meta.gc_run(finished[2]).await.unwrap().unwrap().report;
        assert!(report_kept.is_some(), "a kept run keeps its report");
        assert!(meta.gc_run(finished[1]).await.unwrap().is_none());

        assert_eq!(
            meta.prune_gc_runs(3).await.unwrap(),
            0,
            "nothing more to prune"
        );
        assert_eq!(meta.prune_gc_runs(10).await.unwrap(), 0, "fewer than kept");
        let after: Vec<i64> = ids(meta.gc_runs(None, 100).await.unwrap());
        assert_eq!(after, newest);
        meta.close().await;
    }

    /// The listings on SQLite are in byte order (catalog) and the spec's lexical order (tags).
    #[tokio::test]
    async fn orderings_on_sqlite() {
        let expected = sqlite_listings().await;
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
    }

    /// PostgreSQL returns exactly what SQLite does, even in a database whose default
    /// collation (ICU en-US) orders punctuation differently: `COLLATE "C"` in the schema
    /// decides.
    #[tokio::test]
    #[ignore = "needs PostgreSQL: BERTH_TEST_DATABASE_URL (scripts/test.sh starts one)"]
    async fn orderings_on_postgres_are_those_on_sqlite() {
        let expected = sqlite_listings().await;
        let server = std::env::var("BERTH_TEST_DATABASE_URL")
            .expect("BERTH_TEST_DATABASE_URL names a PostgreSQL server");
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
        let meta = Meta::connect(&pg, &Limits::default(), false, Clock::default())
            .await
            .unwrap();
        assert_eq!(listings(&meta).await, expected);
        meta.close().await;
    }
}
