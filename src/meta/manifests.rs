//! Manifests: reading them by tag or digest, storing a push (its blobs and children checked,
//! its webhook events and its scan queued, in the same transaction), counting repeated
//! pushes, deleting, and referrers.

use std::collections::HashMap;

use super::{
    Meta,
    jobs::{Job, insert_job},
    repositories::{ensure_repository, lock_repository},
    scan_policy::BLOCK_UNSCANNED_COLUMN,
    settings::StoredSettings,
    signatures::checking_policy_column,
    webhooks::{self, Deleted},
};
use crate::{
    error::{Error, Result},
    oci::{
        Digest, RepoName, Tag,
        manifest::{DOCKER_MANIFEST_LIST, OCI_INDEX},
    },
};

/// A manifest as served to clients.
#[derive(Debug)]
pub struct StoredManifest {
    /// The manifest's row id.
    pub id: i64,
    /// The id of its repository.
    pub repository_id: i64,
    /// The manifest's digest.
    pub digest: Digest,
    /// Its media type, as pushed.
    pub media_type: String,
    /// Bytes of the payload.
    pub size: i64,
    /// Empty when only the headers were asked for.
    pub payload: Vec<u8>,
    /// The row id of a quarantined manifest that holds this one back from pulls: its own,
    /// else (for an index) one of its quarantined children. Internal reads ignore it.
    pub held_by: Option<i64>,
    /// The pull gates in force when it was read with its payload (false and `None` for a
    /// headers-only read): whether an image without a successful scan is refused...
    pub block_unscanned: bool,
    /// ...and the trust policy that checks its signatures at pull, if any.
    pub trust_policy: Option<String>,
    /// The highest `pull_sample_rate` of the webhook subscriptions that want this pull
    /// (`None` when none does, and for a headers-only read).
    pub pull_sample: Option<f64>,
}

/// A manifest row as read; the payload is NULL when only the headers were asked for.
#[derive(sqlx::FromRow)]
struct ManifestRow {
    id: i64,
    repository_id: i64,
    digest: Digest,
    media_type: String,
    size: i64,
    payload: Option<Vec<u8>>,
    held_by: Option<i64>,
    block_unscanned: i64,
    trust_policy: Option<String>,
    pull_sample: Option<f64>,
}

impl From<ManifestRow> for StoredManifest {
    fn from(r: ManifestRow) -> StoredManifest {
        StoredManifest {
            id: r.id,
            repository_id: r.repository_id,
            digest: r.digest,
            media_type: r.media_type,
            size: r.size,
            payload: r.payload.unwrap_or_default(),
            held_by: r.held_by,
            block_unscanned: r.block_unscanned != 0,
            trust_policy: r.trust_policy,
            pull_sample: r.pull_sample,
        }
    }
}

/// A manifest the repository already holds, with the rest of what a push of it again
/// needs: read in one statement, as a re-push (a new tag on an image, a retried push) is
/// otherwise only this read and the tag's move.
pub struct KnownManifest {
    /// The manifest, without its payload.
    pub manifest: StoredManifest,
    /// The repository's tag rules, if any were stored.
    pub settings: Option<StoredSettings>,
    /// Whether any replication rule runs on push (none usually does).
    pub on_push_replication: bool,
}

#[derive(sqlx::FromRow)]
struct KnownManifestRow {
    #[sqlx(flatten)]
    manifest: ManifestRow,
    tag_mutability: Option<String>,
    mutable_patterns: Option<String>,
    protected_patterns: Option<String>,
    on_push_replication: i64,
}

/// What the index records for a new manifest.
pub struct NewManifest<'a> {
    /// The manifest's digest.
    pub digest: &'a Digest,
    /// Its media type.
    pub media_type: &'a str,
    /// Its artifact type, if it declares one.
    pub artifact_type: Option<&'a str>,
    /// The manifest it refers to, if any.
    pub subject: Option<&'a Digest>,
    /// Its config blob, if any.
    pub config_digest: Option<&'a Digest>,
    /// Platform operating system, from the image config.
    pub os: Option<&'a str>,
    /// Platform architecture, from the image config.
    pub architecture: Option<&'a str>,
    /// Platform variant, from the image config.
    pub variant: Option<&'a str>,
    /// Its annotations, as JSON.
    pub annotations: Option<String>,
    /// The manifest's bytes.
    pub payload: &'a [u8],
    /// Blobs the manifest needs, with the size its descriptor declares.
    pub blobs: Vec<(&'a Digest, u64)>,
    /// Child manifests of an index.
    pub children: Vec<&'a Digest>,
    /// A copy from an upstream (pull-through cache): the blobs and children it references
    /// may be fetched later, when asked for, so missing ones are not refused.
    pub from_upstream: bool,
    /// Who pushed it (for its webhook events).
    pub actor: Option<&'a str>,
    /// The image whose scan to queue with it (itself, or an SBOM referrer's subject): in
    /// the push's transaction, so that a push is never stored without its scan.
    pub scan: Option<&'a Digest>,
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
    /// A blob or child manifest it references is not in the repository.
    Missing(Digest),
    /// The tag points at another manifest and may not move.
    TagImmutable,
    /// A blob's descriptor declares another size than the blob has.
    SizeMismatch {
        /// The blob.
        digest: Digest,
        /// The size the descriptor declares.
        declared: u64,
        /// The size the blob has.
        actual: u64,
    },
    /// The index failed.
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
#[derive(Debug, sqlx::FromRow)]
pub struct Referrer {
    /// The referring manifest's digest.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// Bytes of its payload.
    pub size: i64,
    /// Its artifact type, if it declares one.
    pub artifact_type: Option<String>,
    /// Its annotations, as JSON.
    pub annotations: Option<String>,
}

/// The columns of a [`ManifestRow`] of `m` (of repository `$1` in namespace `$3`), with or
/// without the payload. `held_by` costs a probe of the quarantines by the manifest's key and,
/// for an index only, one by (repository, digest) per child; a read with the payload (a pull)
/// also probes the scanning and trust policies by their keys, and the webhook subscriptions
/// that want pulls. The pull path's checks need no second query unless a policy applies or a
/// subscription wants the pull.
fn manifest_columns(payload: bool) -> String {
    let (payload, block_unscanned, trust_policy, pull_sample) = if payload {
        (
            "m.payload",
            BLOCK_UNSCANNED_COLUMN.to_owned(),
            checking_policy_column(),
            webhooks::pull_sample_column(),
        )
    } else {
        ("NULL", "0".to_owned(), "NULL".to_owned(), "NULL".to_owned())
    };
    format!(
        "m.id, m.repository_id, m.digest, m.media_type, m.size, {payload} AS payload, \
         COALESCE((SELECT q.manifest_id FROM quarantines q WHERE q.manifest_id = m.id), \
           CASE WHEN m.media_type IN ('{OCI_INDEX}', '{DOCKER_MANIFEST_LIST}') THEN \
             (SELECT MIN(q.manifest_id) FROM manifest_references mr \
                JOIN quarantines q ON q.repository_id = m.repository_id AND q.digest = mr.digest \
              WHERE mr.manifest_id = m.id AND mr.kind = 'manifest') END) AS held_by, \
         {block_unscanned} AS block_unscanned, {trust_policy} AS trust_policy, \
         {pull_sample} AS pull_sample"
    )
}

impl Meta {
    /// The manifest `tag` points at in `repo`; with `payload` false only its headers.
    pub async fn manifest_by_tag(
        &self,
        repo: &RepoName,
        tag: &Tag,
        payload: bool,
    ) -> Result<Option<StoredManifest>> {
        let sql = format!(
            "SELECT {} FROM tags t \
             JOIN repositories r ON r.id = t.repository_id JOIN manifests m ON m.id = t.manifest_id \
             WHERE r.name = $1 AND t.name = $2",
            manifest_columns(payload)
        );
        let mut query = sqlx::query_as(&sql).bind(repo.as_str()).bind(tag.as_str());
        if payload {
            query = query.bind(repo.namespace());
        }
        let row: Option<ManifestRow> = query.fetch_optional(&self.reader).await?;
        Ok(row.map(StoredManifest::from))
    }

    /// Manifest `digest` of `repo`; with `payload` false only its headers.
    pub async fn manifest_by_digest(
        &self,
        repo: &RepoName,
        digest: &Digest,
        payload: bool,
    ) -> Result<Option<StoredManifest>> {
        let sql = format!(
            "SELECT {} FROM manifests m \
             JOIN repositories r ON r.id = m.repository_id WHERE r.name = $1 AND m.digest = $2",
            manifest_columns(payload)
        );
        let mut query = sqlx::query_as(&sql)
            .bind(repo.as_str())
            .bind(digest.to_string());
        if payload {
            query = query.bind(repo.namespace());
        }
        let row: Option<ManifestRow> = query.fetch_optional(&self.reader).await?;
        Ok(row.map(StoredManifest::from))
    }

    /// [`KnownManifest`]: the manifest `digest` of `repo` if the repository holds it.
    pub async fn known_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<KnownManifest>> {
        let sql = format!(
            "SELECT {}, s.tag_mutability, s.mutable_patterns, s.protected_patterns, \
             CAST(CASE WHEN EXISTS (SELECT 1 FROM replication_rules \
               WHERE trigger_kind = 'on_push') THEN 1 ELSE 0 END AS BIGINT) AS on_push_replication \
             FROM manifests m JOIN repositories r ON r.id = m.repository_id \
             LEFT JOIN repository_settings s ON s.repository = r.name \
             WHERE r.name = $1 AND m.digest = $2",
            manifest_columns(false)
        );
        let row: Option<KnownManifestRow> = sqlx::query_as(&sql)
            .bind(repo.as_str())
            .bind(digest.to_string())
            .fetch_optional(&self.reader)
            .await?;
        Ok(row.map(|r| {
            let settings = match (r.tag_mutability, r.mutable_patterns, r.protected_patterns) {
                (Some(tag_mutability), Some(mutable_patterns), Some(protected_patterns)) => {
                    Some(StoredSettings {
                        tag_mutability,
                        mutable_patterns,
                        protected_patterns,
                    })
                }
                _ => None,
            };
            KnownManifest {
                manifest: r.manifest.into(),
                settings,
                on_push_replication: r.on_push_replication != 0,
            }
        }))
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
        let now = self.now();
        let mut tx = self.write_tx().await?;
        let repository_id = ensure_repository(&mut tx, repo, now).await?;
        count_push(&mut *tx, repository_id, now).await?;
        let total_size = manifest.payload.len() as i64
            + blobs_size(
                &mut tx,
                repository_id,
                &manifest.blobs,
                manifest.from_upstream,
            )
            .await?
            + children_size(
                &mut tx,
                repository_id,
                &manifest.children,
                manifest.from_upstream,
            )
            .await?;
        let id = insert_manifest(&mut tx, repository_id, &manifest, total_size, now).await?;
        insert_references(&mut tx, id, &manifest).await?;
        let pushed = webhooks::Pushed {
            repo,
            digest: manifest.digest,
            media_type: manifest.media_type,
            size: manifest.payload.len() as i64,
            actor: manifest.actor,
        };
        webhooks::push_events(&mut tx, repository_id, &pushed, tag, now).await?;
        if let Some(digest) = manifest.scan {
            let scan = Job::ScanImage {
                repository_id,
                digest: digest.to_string(),
            };
            insert_job(&mut *tx, &scan, now, now).await?;
        }
        if let Some(tag) = tag {
            if !point_tag(&mut tx, id, tag, now, tag_may_move).await? {
                return Err(PutManifestError::TagImmutable);
            }
            self.queue_review(&mut tx, repository_id, now).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records a push of `manifest`, which `repo` held when it was read: points `tag` (if
    /// any) at it and counts the push. Says so, changing nothing, when the manifest is gone
    /// since. A `tag` that points elsewhere is moved only when `tag_may_move`.
    pub async fn repush_manifest(
        &self,
        repo: &RepoName,
        manifest: &StoredManifest,
        tag: Option<&Tag>,
        tag_may_move: bool,
        actor: Option<&str>,
    ) -> Result<Repushed> {
        let now = self.now();
        let digest = &manifest.digest;
        if let Some(tag) = tag {
            // The push is counted with the tag's move, and its events written, in a group
            // commit.
            let pushed = webhooks::PushedManifest {
                repo: repo.clone(),
                digest: digest.clone(),
                media_type: manifest.media_type.clone(),
                size: manifest.size,
                actor: actor.map(str::to_owned),
            };
            if !self
                .move_tag(
                    manifest.repository_id,
                    manifest.id,
                    tag,
                    tag_may_move,
                    pushed,
                )
                .await?
            {
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
            return Ok(Repushed::Done);
        }
        count_push(&self.writer, manifest.repository_id, now).await?;
        Ok(Repushed::Done)
    }

    /// Deletes a manifest and, through the schema, its tags, and queues the repository for
    /// review. Returns whether it existed.
    pub async fn delete_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
        actor: Option<&str>,
    ) -> Result<bool> {
        self.delete_in_repository(
            repo,
            "DELETE FROM manifests WHERE repository_id = $1 AND digest = $2",
            &digest.to_string(),
            Deleted::Manifest,
            actor,
        )
        .await
    }

    /// Runs `delete` (binds: repository id, `key`) under the repository's row lock, records
    /// its webhook events (what `deleted` says it removes), and queues the repository for
    /// review when it deleted something.
    pub(super) async fn delete_in_repository(
        &self,
        repo: &RepoName,
        delete: &str,
        key: &str,
        deleted: Deleted,
        actor: Option<&str>,
    ) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        let Some(repository_id) = lock_repository(&mut tx, repo).await? else {
            return Ok(false);
        };
        let now = self.now();
        webhooks::deleted_events(&mut tx, deleted, repository_id, repo, key, now, actor).await?;
        let done = sqlx::query(delete)
            .bind(repository_id)
            .bind(key)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        self.queue_review(&mut tx, repository_id, self.now())
            .await?;
        tx.commit().await?;
        Ok(true)
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
        Ok(sqlx::query_as(
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
        .await?)
    }

    /// The manifests of repository `repository_id` whose subject is one of `subjects`, in
    /// (subject, digest) order, `n` at most: one level of a referrer tree in one query.
    pub async fn referrers_of_subjects(
        &self,
        repository_id: i64,
        subjects: &[&Digest],
        n: u32,
    ) -> Result<Vec<SubjectReferrer>> {
        if subjects.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT m.subject, m.digest, m.media_type, m.artifact_type FROM manifests m \
             WHERE m.repository_id = $1 AND m.subject IN ({}) \
             ORDER BY m.subject, m.digest LIMIT $2",
            super::placeholders(3, subjects.len())
        );
        let mut select = sqlx::query_as(&sql)
            .persistent(false)
            .bind(repository_id)
            .bind(i64::from(n));
        for subject in super::digest_texts(subjects.iter().copied()) {
            select = select.bind(subject);
        }
        Ok(select.fetch_all(&self.reader).await?)
    }
}

/// A referrer with the subject it refers to (a level of a referrer tree).
#[derive(Debug, sqlx::FromRow)]
pub struct SubjectReferrer {
    /// The manifest it refers to.
    pub subject: String,
    /// The referring manifest's digest.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// Its artifact type, if it declares one.
    pub artifact_type: Option<String>,
}

/// Counts a push of repository `repository_id` at `now` (on PostgreSQL this takes the
/// repository's row lock until the transaction ends).
async fn count_push<'e>(
    db: impl sqlx::Executor<'e, Database = sqlx::Any>,
    repository_id: i64,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE repositories SET push_count = push_count + 1, last_push_at = $2 WHERE id = $1",
    )
    .bind(repository_id)
    .bind(now)
    .execute(db)
    .await?;
    Ok(())
}

/// The total size of `blobs` as linked into the repository, after checking that each is
/// linked and has the size its descriptor declares.
async fn blobs_size(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    repository_id: i64,
    blobs: &[(&Digest, u64)],
    missing_ok: bool,
) -> Result<i64, PutManifestError> {
    let sizes = sizes_in_repository(
        tx,
        "SELECT rb.digest, b.size FROM repository_blobs rb JOIN blobs b ON b.digest = rb.digest \
         WHERE rb.repository_id = $1 AND rb.digest IN",
        repository_id,
        blobs.iter().map(|(d, _)| *d),
    )
    .await?;
    let mut total = 0;
    for (digest, declared) in blobs {
        let actual = match sizes.get(*digest) {
            Some(size) => *size,
            None if missing_ok => continue,
            None => return Err(PutManifestError::Missing((*digest).clone())),
        };
        if actual as u64 != *declared {
            return Err(PutManifestError::SizeMismatch {
                digest: (*digest).clone(),
                declared: *declared,
                actual: actual as u64,
            });
        }
        total += actual;
    }
    Ok(total)
}

/// The total size of the child manifests of an index, after checking that each is in the
/// repository.
async fn children_size(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    repository_id: i64,
    children: &[&Digest],
    missing_ok: bool,
) -> Result<i64, PutManifestError> {
    let sizes = sizes_in_repository(
        tx,
        "SELECT digest, total_size FROM manifests WHERE repository_id = $1 AND digest IN",
        repository_id,
        children.iter().copied(),
    )
    .await?;
    let mut total = 0;
    for digest in children {
        total += match sizes.get(*digest) {
            Some(size) => *size,
            None if missing_ok => continue,
            None => return Err(PutManifestError::Missing((*digest).clone())),
        };
    }
    Ok(total)
}

/// `digest → size` for those of `digests` that `query` (ending in `IN`) finds in a repository.
async fn sizes_in_repository<'d>(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    query: &str,
    repository_id: i64,
    digests: impl Iterator<Item = &'d Digest>,
) -> Result<HashMap<Digest, i64>> {
    let digests = super::digest_texts(digests);
    if digests.is_empty() {
        return Ok(HashMap::new());
    }
    // Cached: a list bounded by one manifest's references, on the push path.
    let sql = format!("{query} ({})", super::placeholders(2, digests.len()));
    let mut select = sqlx::query_as::<_, (Digest, i64)>(&sql).bind(repository_id);
    for d in &digests {
        select = select.bind(d.as_str());
    }
    Ok(select.fetch_all(&mut **tx).await?.into_iter().collect())
}

/// Inserts the manifest's row (a repeated push refreshes its push time); returns its id.
async fn insert_manifest(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    repository_id: i64,
    manifest: &NewManifest<'_>,
    total_size: i64,
    now: i64,
) -> Result<i64> {
    Ok(sqlx::query_scalar(
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
    .bind(manifest.annotations.as_deref())
    .bind(manifest.payload.len() as i64)
    .bind(total_size)
    .bind(manifest.payload.to_vec())
    .bind(now)
    .fetch_one(&mut **tx)
    .await?)
}

/// Records what manifest `id` references: its blobs and child manifests.
async fn insert_references(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: i64,
    manifest: &NewManifest<'_>,
) -> Result<()> {
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
    if references.is_empty() {
        return Ok(());
    }
    let values: Vec<String> = (0..references.len())
        .map(|i| format!("($1, ${}, ${})", 2 * i + 2, 2 * i + 3))
        .collect();
    let sql = format!(
        "INSERT INTO manifest_references (manifest_id, digest, kind) VALUES {} \
         ON CONFLICT (manifest_id, digest) DO NOTHING",
        values.join(", ")
    );
    // Cached, as in `sizes_in_repository`.
    let mut insert = sqlx::query(&sql).bind(id);
    for (digest, kind) in &references {
        insert = insert.bind(digest.as_str()).bind(*kind);
    }
    insert.execute(&mut **tx).await?;
    Ok(())
}

/// Points `tag` of the manifest's repository at manifest `manifest_id`. A tag that points
/// at another manifest moves only when `may_move`; returns false when it did not.
pub(super) async fn point_tag(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    manifest_id: i64,
    tag: &Tag,
    now: i64,
    may_move: bool,
) -> Result<bool> {
    let written = sqlx::query(
        "INSERT INTO tags (repository_id, name, manifest_id, pushed_at, updated_at) \
         SELECT m.repository_id, $2, m.id, $3, $3 FROM manifests m WHERE m.id = $1 \
         ON CONFLICT (repository_id, name) \
         DO UPDATE SET manifest_id = excluded.manifest_id, updated_at = excluded.updated_at \
         WHERE $4 = 1 OR tags.manifest_id = excluded.manifest_id",
    )
    .bind(manifest_id)
    .bind(tag.as_str())
    .bind(now)
    .bind(i64::from(may_move))
    .execute(&mut **tx)
    .await?;
    Ok(written.rows_affected() > 0)
}
