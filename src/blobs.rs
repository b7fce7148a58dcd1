//! The blob store: content-addressed objects behind `object_store`, plus the staged parts of
//! uploads in progress. Key layout, all in this file:
//!
//! - `blobs/<algorithm>/<first two hex>/<hex>`: verified content, written once per digest;
//! - `uploads/<session>/<start offset>-<nonce>`: bytes of an upload session, one object per
//!   request that carried data (cloud stores);
//! - `uploads/<session>/spool`: on a local directory, the bytes of a session in one file that
//!   each chunk extends in place, under a file lock, so that completing the session is a rename
//!   and a chunked push writes each byte once.
//!
//! An object here is never visible to clients by itself: the metadata index decides what
//! exists. Writes happen before the index row (bytes first, rows second).

use std::{fmt::Display, ops::Range, path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context;
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt, stream::BoxStream};
use object_store::{
    GetOptions, GetRange, GetResult, GetResultPayload, ObjectStore, ObjectStoreExt, PutPayload,
    RetryConfig, WriteMultipart, aws::AmazonS3Builder, azure::MicrosoftAzureBuilder,
    gcp::GoogleCloudStorageBuilder, local::LocalFileSystem, path::Path, prefix::PrefixStore,
    signer::Signer,
};
use tokio::task::JoinHandle;

use crate::{
    config::{Config, StorageConfig},
    error::{Error, Result},
    metrics::{StorageMetrics, StorageTimer},
    oci::{Digest, Hasher},
};

/// Bodies up to this size are buffered and written in one request; larger ones stream.
const SMALL_BODY: usize = 1024 * 1024;

/// Parts of a streamed write that may be in flight at once, beside the one being filled.
const WRITES_IN_FLIGHT: usize = 2;
/// Deletes in flight at once on a local directory. Each runs on a blocking thread, and a
/// delete takes microseconds: more would not finish sooner on a few cores, but each added
/// thread stays in the pool while traffic keeps it busy (a soak at 64 clients with 64 in
/// flight grew the pool from 56 to 123 threads in one collection).
const LOCAL_DELETES_IN_FLIGHT: usize = 4;

/// Part size of streamed writes to a local directory.
const FILE_PART: usize = 1024 * 1024;

/// Part size of streamed writes to a cloud store: S3 refuses parts under 5 MiB (but the last).
/// With `WRITES_IN_FLIGHT` parts in flight, an upload holds at most about 24 MiB.
pub const CLOUD_PART: usize = 8 * 1024 * 1024;

/// An object as listed by the store.
#[derive(Debug, Clone)]
pub struct StoredObject {
    /// Its key in the store (under the configured prefix).
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it was last written, in Unix seconds (the store's clock).
    pub modified: i64,
}

/// A blob object as [`Blobs::list_blobs_in_order`] finds it.
#[derive(Debug)]
pub struct ListedBlob {
    /// The digest its key names.
    pub digest: Digest,
    /// Its size and last modification (unix seconds), when the listing gives them.
    pub stat: Option<(u64, i64)>,
}

/// The blobs under `root` (`<algorithm>/<shard>/<hex>` below it), one sorted shard directory
/// at a time, given to `take` until it returns false. Names that are not blob keys (a write's
/// temporary file) are skipped.
fn walk_shards(
    root: &std::path::Path,
    mut take: impl FnMut(Vec<ListedBlob>) -> bool,
) -> std::io::Result<()> {
    for algorithm in sorted_names(root)? {
        for shard in sorted_names(&root.join(&algorithm))? {
            let blobs = sorted_names(&root.join(&algorithm).join(&shard))?
                .into_iter()
                .filter_map(|hex| {
                    let key = format!("blobs/{algorithm}/{shard}/{hex}");
                    Blobs::digest_of_key(&key).map(|digest| ListedBlob { digest, stat: None })
                })
                .collect();
            if !take(blobs) {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// The names in directory `dir`, sorted; none when it does not exist or is a file.
fn sorted_names(dir: &std::path::Path) -> std::io::Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(Vec::new());
        }
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for entry in entries {
        if let Ok(name) = entry?.file_name().into_string() {
            names.push(name);
        }
    }
    names.sort_unstable();
    Ok(names)
}

/// Content-addressed blobs and upload parts over any `object_store` backend.
#[derive(Clone)]
pub struct Blobs {
    store: Arc<dyn ObjectStore>,
    /// Size of each part of a streamed write; bounds memory per upload (about twice this).
    part_size: usize,
    /// Signs GET URLs when blob reads are redirected to the store (cloud stores only).
    redirect: Option<Redirect>,
    /// The largest object the store renames (copies) server-side in one request.
    rename_max: u64,
    /// The store's kind, as `registry_storage_action_seconds` labels it.
    driver: &'static str,
    /// Times each store call, once the registry has attached its metrics.
    timer: Option<StorageMetrics>,
    /// The directory behind the store when it is a local one: uploads go through spool files.
    local: Option<Local>,
    /// Whether many objects are deleted in one request (S3's DeleteObjects).
    batch_deletes: bool,
}

/// A local store's directory and whether writes are made durable before they are answered.
#[derive(Clone)]
struct Local {
    root: PathBuf,
    fsync: bool,
}

/// S3 copies, and so renames, objects of at most 5 GiB in one request.
const S3_COPY_MAX: u64 = 5 * 1024 * 1024 * 1024;

#[derive(Clone)]
struct Redirect {
    signer: Arc<dyn Signer>,
    expiry: Duration,
}

impl Blobs {
    /// Opens the store `config.storage` names, creating a local root if needed. A cloud store
    /// retries a failing request (with backoff) for up to `limits.storage_retry_timeout_secs`;
    /// its credentials, region and endpoint come from the environment, then from the options
    /// the configuration checked (`storage.options`).
    pub fn open(config: &Config) -> anyhow::Result<Blobs> {
        let retry = RetryConfig {
            retry_timeout: Duration::from_secs(config.limits.storage_retry_timeout_secs),
            ..RetryConfig::default()
        };
        // Each store is kept twice, as an object store and as a signer of GET URLs.
        let (store, signer, rename_max): (Arc<dyn ObjectStore>, Arc<dyn Signer>, u64) =
            match &config.storage.backend {
                StorageConfig::Fs { root } => {
                    std::fs::create_dir_all(root).with_context(|| {
                        format!("cannot create blob directory {}", root.display())
                    })?;
                    let store =
                        LocalFileSystem::new_with_prefix(root)?.with_fsync(config.durability.fsync);
                    let mut blobs = Blobs::new(Arc::new(store), FILE_PART);
                    blobs.local = Some(Local {
                        root: std::fs::canonicalize(root)?,
                        fsync: config.durability.fsync,
                    });
                    return Ok(blobs);
                }
                StorageConfig::S3 {
                    bucket,
                    prefix,
                    options,
                } => {
                    let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
                    for (key, value) in options {
                        builder = builder.with_config(*key, value);
                    }
                    let store = builder
                        .with_retry(retry)
                        .build()
                        .with_context(|| format!("configuring S3 bucket {bucket:?}"))?;
                    let store = Arc::new(PrefixStore::new(store, prefix.as_str()));
                    (store.clone(), store, S3_COPY_MAX)
                }
                StorageConfig::Azure {
                    container,
                    prefix,
                    options,
                } => {
                    let mut builder =
                        MicrosoftAzureBuilder::from_env().with_container_name(container);
                    for (key, value) in options {
                        builder = builder.with_config(*key, value);
                    }
                    let store = builder
                        .with_retry(retry)
                        .build()
                        .with_context(|| format!("configuring Azure container {container:?}"))?;
                    let store = Arc::new(PrefixStore::new(store, prefix.as_str()));
                    (store.clone(), store, u64::MAX)
                }
                StorageConfig::Gcs {
                    bucket,
                    prefix,
                    options,
                } => {
                    let mut builder =
                        GoogleCloudStorageBuilder::from_env().with_bucket_name(bucket);
                    for (key, value) in options {
                        builder = builder.with_config(*key, value);
                    }
                    let store = builder
                        .with_retry(retry)
                        .build()
                        .with_context(|| format!("configuring GCS bucket {bucket:?}"))?;
                    let store = Arc::new(PrefixStore::new(store, prefix.as_str()));
                    (store.clone(), store, u64::MAX)
                }
            };
        let mut blobs = Blobs::new(store, CLOUD_PART);
        blobs.rename_max = rename_max;
        blobs.batch_deletes = matches!(config.storage.backend, StorageConfig::S3 { .. });
        // Distribution's driver names, so that its dashboards' queries match.
        blobs.driver = match &config.storage.backend {
            StorageConfig::S3 { .. } => "s3aws",
            StorageConfig::Azure { .. } => "azure",
            StorageConfig::Gcs { .. } => "gcs",
            StorageConfig::Fs { .. } => "filesystem",
        };
        if config.storage.redirect {
            blobs.redirect = Some(Redirect {
                signer,
                expiry: Duration::from_secs(config.storage.redirect_expiry_secs),
            });
        }
        Ok(blobs)
    }

    /// Blobs over `store`, writing streamed bodies in parts of `part_size` bytes; no
    /// redirects, and renames of any size.
    pub fn new(store: Arc<dyn ObjectStore>, part_size: usize) -> Blobs {
        Blobs {
            store,
            part_size,
            redirect: None,
            rename_max: u64::MAX,
            driver: "filesystem",
            timer: None,
            local: None,
            batch_deletes: false,
        }
    }

    /// These blobs, timing every store call into `timer`.
    pub fn with_metrics(mut self, timer: StorageMetrics) -> Blobs {
        self.timer = Some(timer);
        self
    }

    /// Starts timing one store call of `action` (Distribution's action names).
    fn time(&self, action: &'static str) -> Option<StorageTimer> {
        self.timer.as_ref().map(|t| t.time(self.driver, action))
    }

    /// The key of the blob for `digest`: `blobs/<algorithm>/<first two hex>/<hex>`.
    pub fn blob_key(digest: &Digest) -> Path {
        let hex = digest.hex();
        Path::from(format!(
            "blobs/{}/{}/{hex}",
            digest.algorithm().as_str(),
            &hex[..2]
        ))
    }

    /// A fresh key for a part of `session` starting at byte `start`. The nonce keeps two
    /// racing requests for the same offset from writing the same object.
    pub fn part_key(session: &str, start: u64) -> String {
        format!(
            "uploads/{session}/{start:020}-{}",
            uuid::Uuid::new_v4().simple()
        )
    }

    /// The key of the spool file of upload `session` on a local store.
    pub fn spool_key(session: &str) -> String {
        format!("uploads/{session}/spool")
    }

    /// Whether uploads accumulate in spool files (the store is a local directory).
    pub fn spools(&self) -> bool {
        self.local.is_some()
    }

    /// Opens the spool file of `session` (creating it empty) and waits for its lock, which
    /// other processes on the same files respect too; `None` when the store is not local.
    /// The lock is held until the [`Spool`] is dropped.
    pub async fn lock_spool(&self, session: &str) -> Result<Option<Spool>> {
        self.open_spool(session, true).await
    }

    /// [`Blobs::lock_spool`] without the wait: `None` also when another holder has the lock.
    pub async fn try_lock_spool(&self, session: &str) -> Result<Option<Spool>> {
        self.open_spool(session, false).await
    }

    async fn open_spool(&self, session: &str, wait: bool) -> Result<Option<Spool>> {
        // The lock is tried, never waited for on a blocking thread: the holder's own writes
        // need those threads, and a pool full of waiters would never let them run.
        let mut pause = Duration::from_millis(1);
        loop {
            match self.try_open_spool(session).await? {
                Lock::Taken(spool) => return Ok(Some(spool)),
                Lock::NotLocal => return Ok(None),
                Lock::Held if !wait => return Ok(None),
                Lock::Held => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(SPOOL_LOCK_MAX_PAUSE);
                }
            }
        }
    }

    async fn try_open_spool(&self, session: &str) -> Result<Lock> {
        let Some(local) = self.local.clone() else {
            return Ok(Lock::NotLocal);
        };
        let key = Blobs::spool_key(session);
        let path = local.root.join(&key);
        let spool = tokio::task::spawn_blocking(move || -> std::io::Result<Lock> {
            use std::os::unix::fs::MetadataExt;
            let dir = path.parent().expect("a spool has a directory");
            loop {
                // Again on every try: the collector may have removed an emptied directory.
                std::fs::create_dir_all(dir)?;
                let file = match std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&path)
                {
                    Ok(file) => file,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive)
                {
                    Ok(()) => {}
                    Err(rustix::io::Errno::WOULDBLOCK) => return Ok(Lock::Held),
                    Err(e) => return Err(e.into()),
                }
                // Whoever held the lock may have published (renamed) or deleted the file: the
                // lock is good only if the name still leads to the file locked.
                let same = std::fs::metadata(&path)
                    .map(|m| m.ino() == file.metadata().map(|f| f.ino()).unwrap_or(0))
                    .unwrap_or(false);
                if same {
                    return Ok(Lock::Taken(Spool {
                        file: Arc::new(file),
                        path,
                        key,
                        fsync: local.fsync,
                        root: local.root,
                    }));
                }
            }
        })
        .await
        .map_err(|e| Error::Internal(anyhow::anyhow!("spool lock task failed: {e}")))?
        .map_err(|e| io_error("locking an upload spool", e))?;
        Ok(spool)
    }

    /// Streams the first `len` bytes of the spool file of `session` (a local store's).
    pub fn read_spool(&self, session: &str, len: u64) -> BoxStream<'static, Result<Bytes, Error>> {
        let (store, key) = (self.store.clone(), Path::from(Blobs::spool_key(session)));
        let options = GetOptions {
            range: Some(GetRange::Bounded(0..len)),
            ..Default::default()
        };
        futures::stream::once(async move { store.get_opts(&key, options).await })
            .map_ok(stream_of)
            .try_flatten()
            .map_err(Error::from)
            .boxed()
    }

    /// Streams `body` to the blob for `digest`, hashing as it goes; the object is published
    /// only if the content hashes to `digest` (otherwise nothing is left behind).
    pub async fn write_verified<S, E>(&self, digest: &Digest, body: S) -> Result<u64>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: Display,
    {
        let _timer = self.time("Writer");
        if self.local.is_some() {
            // A spool of its own, written and hashed on two threads, then renamed into place.
            let session = format!("put-{}", uuid::Uuid::new_v4().simple());
            let spool = self.lock_spool(&session).await?.expect("a local store");
            let mut hasher = Some(Hasher::new(digest.algorithm()));
            let written = spool.write_at(0, body, &mut hasher).await;
            let published = match (written, hasher) {
                (Ok(size), Some(hasher)) => {
                    let actual = hasher.finish();
                    if &actual != digest {
                        Err(Error::DigestInvalid(format!(
                            "content hashes to {actual}, not {digest}"
                        )))
                    } else {
                        spool.publish(size, digest, true).await.map(|()| size)
                    }
                }
                (Ok(_), None) => unreachable!("a spool write keeps the hasher it is given"),
                (Err(e), _) => Err(e),
            };
            if published.is_err() {
                self.delete_parts(&[Blobs::spool_key(&session)]).await.ok();
            }
            return published;
        }
        let key = Blobs::blob_key(digest);
        let mut hasher = Some(Hasher::new(digest.algorithm()));
        let (staged, size) = self.stage(&key, body, &mut hasher).await?;
        let actual = hasher.expect("hasher kept").finish();
        if &actual != digest {
            staged.abort().await;
            return Err(Error::DigestInvalid(format!(
                "content hashes to {actual}, not {digest}"
            )));
        }
        if let Err(e) = staged.commit(self.store.as_ref(), &key).await {
            // Writers of the same digest may race on its key (Azure drops a blob's uncommitted
            // blocks when another writer commits its list). An object at the key was verified
            // by its writer before it was committed, so it holds exactly this content.
            if self.exists(digest).await.unwrap_or(false) {
                return Ok(size);
            }
            return Err(e);
        }
        Ok(size)
    }

    /// Streams `body` to the part object `key`, feeding `hasher` if one is given.
    pub async fn write_part<S, E>(
        &self,
        key: &str,
        body: S,
        hasher: &mut Option<Hasher>,
    ) -> Result<u64>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: Display,
    {
        let _timer = self.time("Writer");
        let key = Path::from(key);
        let (staged, size) = self.stage(&key, body, hasher).await?;
        if size > 0 {
            staged.commit(self.store.as_ref(), &key).await?;
        } else {
            staged.abort().await;
        }
        Ok(size)
    }

    /// Hashes the concatenation of `parts` (used when no running hash survived).
    pub async fn hash_parts(&self, parts: &[String], hasher: &mut Hasher) -> Result<()> {
        let mut stream = self.read_parts(parts.to_vec());
        while let Some(chunk) = stream.try_next().await? {
            hasher.update(&chunk);
        }
        Ok(())
    }

    /// Moves a single, already verified part of `size` bytes into place as the blob for
    /// `digest`: renamed by the store, or streamed when too large for its copy request.
    pub async fn promote_part(&self, part: &str, size: u64, digest: &Digest) -> Result<()> {
        let _timer = self.time("Move");
        if size > self.rename_max {
            self.assemble_parts(vec![part.to_owned()], digest, true)
                .await?;
            return self.delete_parts(&[part.to_owned()]).await;
        }
        self.store
            .rename(&Path::from(part), &Blobs::blob_key(digest))
            .await?;
        Ok(())
    }

    /// Copies the concatenation of `parts` into the blob for `digest`, verifying as it goes
    /// unless the caller has `verified` the content already.
    pub async fn assemble_parts(
        &self,
        parts: Vec<String>,
        digest: &Digest,
        verified: bool,
    ) -> Result<u64> {
        let stream = self.read_parts(parts);
        if !verified {
            return self.write_verified(digest, stream).await;
        }
        let key = Blobs::blob_key(digest);
        let (staged, size) = self.stage(&key, stream, &mut None).await?;
        staged.commit(self.store.as_ref(), &key).await?;
        Ok(size)
    }

    /// Whether blob reads are redirected to presigned URLs of the store.
    pub fn redirects(&self) -> bool {
        self.redirect.is_some()
    }

    /// A presigned GET URL for `digest` when reads are redirected to the store.
    pub async fn presigned_get(&self, digest: &Digest) -> Result<Option<String>> {
        let _timer = self.time("RedirectURL");
        let Some(redirect) = &self.redirect else {
            return Ok(None);
        };
        let url = redirect
            .signer
            .signed_url(
                object_store::signer::Method::GET,
                &Blobs::blob_key(digest),
                redirect.expiry,
            )
            .await?;
        Ok(Some(url.into()))
    }

    /// Streams the blob for `digest`, or the byte `range` of it.
    pub async fn read(
        &self,
        digest: &Digest,
        range: Option<Range<u64>>,
    ) -> Result<BoxStream<'static, Result<Bytes, object_store::Error>>> {
        let _timer = self.time("Reader");
        let options = GetOptions {
            range: range.map(GetRange::Bounded),
            ..Default::default()
        };
        let result = self
            .store
            .get_opts(&Blobs::blob_key(digest), options)
            .await?;
        Ok(stream_of(result))
    }

    /// Whether the blob for `digest` is in the store.
    pub async fn exists(&self, digest: &Digest) -> Result<bool> {
        Ok(self.stat(digest).await?.is_some())
    }

    /// Deletes part objects; a part already gone is not an error. On a local directory the
    /// session's directory goes too once empty.
    pub async fn delete_parts(&self, parts: &[String]) -> Result<()> {
        let _timer = self.time("Delete");
        for part in parts {
            match self.store.delete(&Path::from(part.as_str())).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            if let Some(local) = &self.local {
                remove_empty_parent(&local.root.join(part));
            }
        }
        Ok(())
    }

    /// Deletes the objects of `digests`: on S3 in requests of up to 1,000 keys, elsewhere
    /// `in_flight` single deletes at a time (a local directory and GCS have no batch; on
    /// Azure, where every delete is a batch of one, larger batches failed on Azurite), at
    /// most [`LOCAL_DELETES_IN_FLIGHT`] on a local directory; one already gone counts as
    /// deleted. Each digest comes back with its outcome.
    pub async fn delete_blobs(
        &self,
        digests: Vec<Digest>,
        in_flight: usize,
    ) -> Vec<(Digest, Result<()>)> {
        if !self.batch_deletes {
            let in_flight = if self.local.is_some() {
                in_flight.min(LOCAL_DELETES_IN_FLIGHT)
            } else {
                in_flight
            };
            return futures::stream::iter(digests)
                .map(|digest| async move {
                    let outcome = self.delete_blob(&digest).await;
                    (digest, outcome)
                })
                .buffer_unordered(in_flight)
                .collect()
                .await;
        }
        let _timer = self.time("Delete");
        let keys: Vec<Path> = digests.iter().map(Blobs::blob_key).collect();
        let wanted: std::collections::HashSet<String> =
            keys.iter().map(|k| k.to_string()).collect();
        let mut deleted = std::collections::HashSet::new();
        let mut failures = Vec::new();
        let mut outcomes = self
            .store
            .delete_stream(futures::stream::iter(keys.into_iter().map(Ok)).boxed());
        while let Some(outcome) = outcomes.next().await {
            match outcome {
                Ok(key) => {
                    deleted.insert(key.to_string());
                }
                Err(object_store::Error::NotFound { path, .. }) if wanted.contains(&path) => {
                    deleted.insert(path);
                }
                Err(e) => failures.push(e.to_string()),
            }
        }
        // A failure names its key only in its message, if at all: every object the store did
        // not confirm keeps the failures (its claim stays and the next run deletes it).
        digests
            .into_iter()
            .map(|digest| {
                let outcome = if deleted.contains(Blobs::blob_key(&digest).as_ref()) {
                    Ok(())
                } else {
                    Err(Error::Unavailable {
                        what: "blob store",
                        source: anyhow::anyhow!(
                            "the store did not confirm the deletion: {}",
                            failures.join("; ")
                        ),
                    })
                };
                (digest, outcome)
            })
            .collect()
    }

    /// Deletes the object of `digest`; one already gone is not an error. A delete that fails
    /// is sent once more: on Azure even one delete is a blob batch, and on Azurite one now and
    /// then came back failed while collectors ran in a tight loop; the transport's own
    /// retries do not look inside a batch's answer.
    pub async fn delete_blob(&self, digest: &Digest) -> Result<()> {
        let _timer = self.time("Delete");
        let key = Blobs::blob_key(digest);
        let first = match self.store.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => return Ok(()),
            Err(e) => e,
        };
        match self.store.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(again) => {
                tracing::warn!(%digest, first = %first, "a blob's delete failed twice");
                Err(again.into())
            }
        }
    }

    /// Every object under `prefix` (`blobs/` or `uploads/`), as the store lists them: key,
    /// size, and last modification in unix seconds. Streams: memory does not grow with the
    /// number of objects.
    pub fn list(&self, prefix: &str) -> BoxStream<'static, Result<StoredObject>> {
        let prefix = Path::from(prefix);
        self.store
            .list(Some(&prefix))
            .map_ok(|meta| StoredObject {
                key: meta.location.to_string(),
                size: meta.size,
                modified: meta.last_modified.timestamp(),
            })
            .map_err(Error::from)
            .boxed()
    }

    /// Every blob object, in digest order (which is their keys' order), with its size and
    /// last modification when the listing gives them. Cloud stores list keys in order, with
    /// both. On a local directory each shard directory's names are read and sorted, and no
    /// file is examined (`stat`): [`Blobs::stat`] the few the caller needs. Streams: memory
    /// holds one shard directory's names at most.
    pub fn list_blobs_in_order(&self) -> BoxStream<'static, Result<ListedBlob>> {
        let Some(local) = &self.local else {
            return self
                .list("blobs/")
                .try_filter_map(|o| async move {
                    Ok(Blobs::digest_of_key(&o.key).map(|digest| ListedBlob {
                        digest,
                        stat: Some((o.size, o.modified)),
                    }))
                })
                .boxed();
        };
        let root = local.root.join("blobs");
        let (sender, receiver) = tokio::sync::mpsc::channel(2);
        tokio::task::spawn_blocking(move || {
            let walked = walk_shards(&root, |shard| sender.blocking_send(Ok(shard)).is_ok());
            if let Err(e) = walked {
                let _ = sender.blocking_send(Err(Error::from(object_store::Error::Generic {
                    store: "LocalFileSystem",
                    source: format!("listing {}: {e}", root.display()).into(),
                })));
            }
        });
        tokio_stream::wrappers::ReceiverStream::new(receiver)
            .map_ok(|shard: Vec<ListedBlob>| futures::stream::iter(shard.into_iter().map(Ok)))
            .try_flatten()
            .boxed()
    }

    /// The size and last modification (unix seconds) of the blob object of `digest`; `None`
    /// when there is none.
    pub async fn stat(&self, digest: &Digest) -> Result<Option<(u64, i64)>> {
        let _timer = self.time("Stat");
        match self.store.head(&Blobs::blob_key(digest)).await {
            Ok(meta) => Ok(Some((meta.size, meta.last_modified.timestamp()))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The digest whose blob lives at `key`, if `key` is a blob key.
    pub fn digest_of_key(key: &str) -> Option<Digest> {
        let mut parts = key.strip_prefix("blobs/")?.split('/');
        let (algorithm, shard, hex) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || !hex.starts_with(shard) {
            return None;
        }
        let digest: Digest = format!("{algorithm}:{hex}").parse().ok()?;
        (Blobs::blob_key(&digest).as_ref() == key).then_some(digest)
    }

    /// The upload session a part key belongs to, if `key` is a part key.
    pub fn session_of_key(key: &str) -> Option<&str> {
        let mut parts = key.strip_prefix("uploads/")?.split('/');
        let session = parts.next()?;
        parts.next()?;
        Some(session)
    }

    fn read_parts(&self, parts: Vec<String>) -> BoxStream<'static, Result<Bytes, Error>> {
        let store = self.store.clone();
        futures::stream::iter(parts)
            .then(move |part| {
                let store = store.clone();
                async move { store.get(&Path::from(part)).await }
            })
            .map_ok(stream_of)
            .try_flatten()
            .map_err(Error::from)
            .boxed()
    }

    /// Reads `body` to its end, hashing it, into either a buffer (small bodies) or a multipart
    /// upload to `key` that is neither committed nor aborted yet.
    async fn stage<S, E>(
        &self,
        key: &Path,
        mut body: S,
        hasher: &mut Option<Hasher>,
    ) -> Result<(Staged, u64)>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: Display,
    {
        let mut size = 0u64;
        let mut buffered: Vec<Bytes> = Vec::new();
        let mut writer: Option<WriteMultipart> = None;
        loop {
            let chunk = match body.next().await {
                None => break,
                Some(Ok(chunk)) => chunk,
                Some(Err(e)) => {
                    let staged = Staged::new(buffered, writer);
                    staged.abort().await;
                    return Err(Error::BlobUploadInvalid(format!(
                        "request body could not be read to its end: {e}"
                    )));
                }
            };
            if let Some(h) = hasher.as_mut() {
                h.update(&chunk);
            }
            size += chunk.len() as u64;
            match writer.as_mut() {
                Some(w) => {
                    w.wait_for_capacity(WRITES_IN_FLIGHT).await?;
                    w.put(chunk);
                }
                None => {
                    buffered.push(chunk);
                    if size > SMALL_BODY as u64 {
                        let upload = self.store.put_multipart(key).await?;
                        let mut w = WriteMultipart::new_with_chunk_size(upload, self.part_size);
                        for b in buffered.drain(..) {
                            w.put(b);
                        }
                        writer = Some(w);
                    }
                }
            }
        }
        Ok((Staged::new(buffered, writer), size))
    }
}

/// Size of each read from a local file: large enough that a blocking read per chunk costs
/// little, and reused from the allocator's arenas (see [`crate::config::IO_BUFFER`]). Four
/// of them per blocking read woke fewer threads but freed the top of an arena at once, which
/// glibc gives back to the system, and pulled no faster.
const FILE_READ_CHUNK: usize = crate::config::IO_BUFFER;

/// Reads of a local file in flight for one get, the one awaited included.
const READS_AHEAD: usize = 2;

/// The bytes of a get. Local files are read in large chunks, each on a blocking thread, the
/// next ones read while the last is sent (object_store's own file stream reads 8 KiB per
/// blocking call). A thread is taken only for a read: a client that reads slowly or stalls
/// holds none.
fn stream_of(result: GetResult) -> BoxStream<'static, Result<Bytes, object_store::Error>> {
    let GetResultPayload::File(file, path) = result.payload else {
        return result.into_stream();
    };
    let (file, path) = (Arc::new(file), Arc::new(path));
    let range = result.range;
    let read = move |at: u64| {
        let (file, path) = (file.clone(), path.clone());
        let len = (range.end - at).min(FILE_READ_CHUNK as u64) as usize;
        tokio::task::spawn_blocking(move || {
            let failed = |e: std::io::Error| format!("reading {}: {e}", path.display());
            // Read into the spare capacity: zeroing a buffer only to overwrite it was 3 % of
            // a pull's CPU.
            let mut buffer = Vec::with_capacity(len);
            while buffer.len() < len {
                let offset = at + buffer.len() as u64;
                let spare = rustix::buffer::spare_capacity(&mut buffer);
                match rustix::io::pread(&*file, spare, offset) {
                    Ok(0) => return Err(failed(std::io::ErrorKind::UnexpectedEof.into())),
                    Ok(_) | Err(rustix::io::Errno::INTR) => {}
                    Err(e) => return Err(failed(e.into())),
                }
            }
            Ok(Bytes::from(buffer))
        })
    };
    let reads = std::collections::VecDeque::new();
    futures::stream::unfold((reads, range.start), move |(mut reads, mut next)| {
        let read = read.clone();
        async move {
            while reads.len() < READS_AHEAD && next < range.end {
                reads.push_back(read(next));
                next = (next + FILE_READ_CHUNK as u64).min(range.end);
            }
            let chunk = reads
                .pop_front()?
                .await
                .unwrap_or_else(|e| Err(format!("read task failed: {e}")))
                .map_err(|e| object_store::Error::Generic {
                    store: "LocalFileSystem",
                    source: e.into(),
                });
            if chunk.is_err() {
                // The stream ends with the error.
                reads.clear();
                next = range.end;
            }
            Some((chunk, (reads, next)))
        }
    })
    .boxed()
}

/// Chunks queued between the request and each of the writing and hashing threads. A chunk
/// is one read of the request (up to [`crate::config::IO_BUFFER`]), so this bounds an
/// upload's buffers at about half a MiB: 8 pushed no faster.
const PIPELINE_DEPTH: usize = 4;

/// Size of each read when a spool is hashed again (no running hash survived).
const REHASH_CHUNK: usize = 1024 * 1024;

/// An upload's spool file on a local store, locked for as long as this lives.
pub struct Spool {
    file: Arc<std::fs::File>,
    path: PathBuf,
    key: String,
    fsync: bool,
    root: PathBuf,
}

/// The longest pause between two tries of a spool's lock that another request holds.
const SPOOL_LOCK_MAX_PAUSE: Duration = Duration::from_millis(50);

/// One try of a spool's lock.
enum Lock {
    Taken(Spool),
    /// Another request (or process) holds it.
    Held,
    /// The store is not a local directory: there are no spools.
    NotLocal,
}

/// Removes the directory of `path` if it is empty (an upload session's, once its spool was
/// published or deleted); one that is not empty, or already gone, stays as it is.
fn remove_empty_parent(path: &std::path::Path) {
    if let Some(dir) = path.parent() {
        std::fs::remove_dir(dir).ok();
    }
}

/// An error of the local directory, as the store's own errors map: a full disk is a 507.
fn io_error(doing: &str, e: std::io::Error) -> Error {
    if matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    ) {
        return Error::OutOfSpace {
            what: "blob store",
            source: anyhow::Error::new(e).context(doing.to_owned()),
        };
    }
    Error::Internal(anyhow::Error::new(e).context(doing.to_owned()))
}

async fn blocking<T: Send + 'static>(
    doing: &'static str,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(anyhow::anyhow!("{doing}: task failed: {e}")))?
        .map_err(|e| io_error(doing, e))
}

/// One consumer of an upload's chunks (the spool's writer, or the hasher) with its state. It
/// works on a blocking thread while chunks are queued for it and gives the thread back when
/// the queue is empty; the next chunk starts it again.
struct Lane<S> {
    queue: tokio::sync::mpsc::Sender<Bytes>,
    /// The queue's receiving end and the state, while no thread works on them.
    resting: Option<Resting<S>>,
    job: Option<JoinHandle<std::io::Result<Resting<S>>>>,
    work: fn(&mut S, &Bytes) -> std::io::Result<()>,
}

/// A lane's queue and state, handed to each thread that works on them and back.
type Resting<S> = (tokio::sync::mpsc::Receiver<Bytes>, S);

impl<S: Send + 'static> Lane<S> {
    fn new(state: S, work: fn(&mut S, &Bytes) -> std::io::Result<()>) -> Lane<S> {
        let (queue, chunks) = tokio::sync::mpsc::channel(PIPELINE_DEPTH);
        Lane {
            queue,
            resting: Some((chunks, state)),
            job: None,
            work,
        }
    }

    /// Whether another chunk may be queued now.
    fn has_room(&self) -> bool {
        self.queue.capacity() > 0
    }

    /// Queues `chunk`; only after [`Lane::has_room`] said so (this is the only sender). A
    /// thread that failed has dropped the queue: the chunk goes with it, and
    /// [`Lane::rested`] reports the failure.
    fn push(&self, chunk: Bytes) {
        use tokio::sync::mpsc::error::TrySendError;
        match self.queue.try_send(chunk) {
            Ok(()) | Err(TrySendError::Closed(_)) => {}
            Err(TrySendError::Full(_)) => unreachable!("a chunk is queued only when there is room"),
        }
    }

    /// Starts a thread on the queued chunks, unless one works or none is queued.
    fn wake(&mut self) {
        if self.resting.as_ref().is_none_or(|(q, _)| q.is_empty()) {
            return;
        }
        let (mut chunks, mut state) = self.resting.take().expect("checked");
        let work = self.work;
        self.job = Some(tokio::task::spawn_blocking(move || {
            while let Ok(chunk) = chunks.try_recv() {
                work(&mut state, &chunk)?;
            }
            Ok((chunks, state))
        }));
    }

    /// Whether a thread works on this lane.
    fn working(&self) -> bool {
        self.job.is_some()
    }

    /// Whether chunks are queued or being worked on.
    fn busy(&self) -> bool {
        self.working() || self.resting.as_ref().is_some_and(|(q, _)| !q.is_empty())
    }

    /// Waits for the working thread to empty the queue and rest (the queue may have
    /// received more meanwhile: [`Lane::wake`] starts it again).
    async fn rested(&mut self) -> std::io::Result<()> {
        let job = self.job.as_mut().expect("a job runs");
        let outcome = job.await.unwrap_or_else(|e| Err(std::io::Error::other(e)));
        self.job = None;
        self.resting = Some(outcome?);
        Ok(())
    }

    /// The state, once the lane rests.
    fn into_state(self) -> S {
        self.resting.expect("the lane rests").1
    }
}

/// Where the next chunk of a spool goes.
struct SpoolWriter {
    file: Arc<std::fs::File>,
    at: u64,
    /// Whether the file still has to be cut back to `at` before the first chunk.
    truncate: bool,
}

impl SpoolWriter {
    fn write(&mut self, chunk: &Bytes) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        if std::mem::take(&mut self.truncate) {
            self.file.set_len(self.at)?;
        }
        self.file.write_all_at(chunk, self.at)?;
        self.at += chunk.len() as u64;
        Ok(())
    }
}

impl Spool {
    /// The spool's key in the store, as upload parts record it.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The bytes the file holds (acknowledged ones, and maybe the rest of a write cut off).
    pub async fn len(&self) -> Result<u64> {
        let file = self.file.clone();
        blocking("reading an upload spool's size", move || {
            Ok(file.metadata()?.len())
        })
        .await
    }

    /// Cuts the file back to `len` bytes.
    pub async fn truncate(&self, len: u64) -> Result<()> {
        let file = self.file.clone();
        blocking("truncating an upload spool", move || file.set_len(len)).await
    }

    /// Writes `body` at byte `start`, dropping whatever the file held from there on, and feeds
    /// `hasher` if one is given. The request is read on this task while one blocking thread
    /// writes and another hashes, each a few chunks behind; the `Bytes` are shared, never
    /// copied. Each thread is held only while chunks wait for it: a client that sends slowly
    /// or stalls holds none. When the body breaks off the file is cut back to `start` and
    /// `hasher` is dropped (it saw part of a chunk that is not kept).
    pub async fn write_at<S, E>(
        &self,
        start: u64,
        mut body: S,
        hasher: &mut Option<Hasher>,
    ) -> Result<u64>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: Display,
    {
        let mut writer = Lane::new(
            SpoolWriter {
                file: self.file.clone(),
                at: start,
                truncate: true,
            },
            SpoolWriter::write,
        );
        let mut hashing = hasher.take().map(|h| {
            Lane::new(h, |h: &mut Hasher, chunk: &Bytes| {
                h.update(chunk);
                Ok(())
            })
        });
        let mut size = 0u64;
        let mut reading = true;
        let mut broken = None;
        let mut failed = None;
        loop {
            writer.wake();
            if let Some(h) = &mut hashing {
                h.wake();
            }
            let room = writer.has_room() && hashing.as_ref().is_none_or(Lane::has_room);
            if !reading && !writer.busy() && !hashing.as_ref().is_some_and(Lane::busy) {
                break;
            }
            tokio::select! {
                chunk = body.next(), if reading && room => match chunk {
                    Some(Ok(chunk)) => {
                        size += chunk.len() as u64;
                        if let Some(h) = &hashing {
                            h.push(chunk.clone());
                        }
                        writer.push(chunk);
                    }
                    Some(Err(e)) => {
                        broken = Some(e.to_string());
                        reading = false;
                    }
                    None => reading = false,
                },
                done = writer.rested(), if writer.working() => if let Err(e) = done {
                    // Nothing more is read: the request ends with this error.
                    failed = Some(io_error("writing an upload spool", e));
                    reading = false;
                },
                done = async { hashing.as_mut().expect("guarded").rested().await },
                    if hashing.as_ref().is_some_and(Lane::working) => if let Err(e) = done {
                    failed = Some(Error::Internal(anyhow::anyhow!("hashing failed: {e}")));
                    reading = false;
                },
            }
        }
        let outcome = match (failed, &broken) {
            (Some(e), _) => Err(e),
            (None, Some(_)) => Ok(()),
            (None, None) => {
                let state = writer.into_state();
                let fsync = self.fsync;
                blocking("writing an upload spool", move || {
                    if state.truncate {
                        // No byte came: the file still has to end at `start`.
                        state.file.set_len(start)?;
                    }
                    if fsync {
                        state.file.sync_data()?;
                    }
                    Ok(())
                })
                .await
            }
        };
        if let Err(e) = outcome {
            self.truncate(start).await.ok();
            return Err(e);
        }
        if let Some(e) = broken {
            self.truncate(start).await.ok();
            return Err(Error::BlobUploadInvalid(format!(
                "request body could not be read to its end: {e}"
            )));
        }
        *hasher = hashing.map(Lane::into_state);
        Ok(size)
    }

    /// Publishes the first `len` bytes as the blob for `digest` by renaming the file (bytes
    /// beyond `len`, left by a write that was cut off, are dropped first). Unless the caller
    /// `verified` them with a running hash, the bytes are hashed again from the file.
    pub async fn publish(self, len: u64, digest: &Digest, verified: bool) -> Result<()> {
        let target = self.root.join(Blobs::blob_key(digest).as_ref());
        let expected = digest.clone();
        let Spool {
            file, path, fsync, ..
        } = self;
        let actual = blocking("publishing an upload spool", move || {
            use std::os::unix::fs::FileExt;
            file.set_len(len)?;
            if !verified {
                let mut hasher = Hasher::new(expected.algorithm());
                let mut buffer = vec![0; REHASH_CHUNK];
                let mut at = 0;
                while at < len {
                    let n = (len - at).min(REHASH_CHUNK as u64) as usize;
                    file.read_exact_at(&mut buffer[..n], at)?;
                    hasher.update(&buffer[..n]);
                    at += n as u64;
                }
                let actual = hasher.finish();
                if actual != expected {
                    return Ok(Some(actual));
                }
            }
            if fsync {
                file.sync_data()?;
            }
            let dir = target.parent().expect("a blob key has a directory");
            std::fs::create_dir_all(dir)?;
            std::fs::rename(&path, &target)?;
            if fsync {
                std::fs::File::open(dir)?.sync_all()?;
            }
            remove_empty_parent(&path);
            // The lock goes with the file, now the blob's: later lockers see the name changed.
            drop(file);
            Ok(None)
        })
        .await?;
        match actual {
            Some(actual) => Err(Error::DigestInvalid(format!(
                "uploaded content hashes to {actual}, not {digest}"
            ))),
            None => Ok(()),
        }
    }
}

/// Bytes read from a request and not yet published.
enum Staged {
    Buffered(Vec<Bytes>),
    Streaming(WriteMultipart),
}

impl Staged {
    fn new(buffered: Vec<Bytes>, writer: Option<WriteMultipart>) -> Staged {
        match writer {
            Some(w) => Staged::Streaming(w),
            None => Staged::Buffered(buffered),
        }
    }

    async fn commit(self, store: &dyn ObjectStore, key: &Path) -> Result<()> {
        match self {
            Staged::Buffered(chunks) => {
                store.put(key, PutPayload::from_iter(chunks)).await?;
            }
            Staged::Streaming(w) => {
                w.finish().await?;
            }
        }
        Ok(())
    }

    async fn abort(self) {
        if let Staged::Streaming(w) = self
            && let Err(e) = w.abort().await
        {
            tracing::warn!(error = %e, "could not abort a staged upload");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use std::collections::BTreeMap;

    fn chunks(data: &[u8], size: usize) -> impl Stream<Item = Result<Bytes, String>> + Unpin {
        let v: Vec<_> = data
            .chunks(size)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        futures::stream::iter(v)
    }

    async fn read_all(blobs: &Blobs, d: &Digest, range: Option<Range<u64>>) -> Vec<u8> {
        let s = blobs.read(d, range).await.unwrap();
        s.map_ok(|b| b.to_vec()).try_concat().await.unwrap()
    }

    /// The suite every backend must pass.
    async fn suite(blobs: Blobs) {
        let big: Vec<u8> = (0..3 * SMALL_BODY + 17)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        for data in [&b""[..], b"hello", &big] {
            let d = Digest::sha256_of(data);
            assert_eq!(
                blobs.write_verified(&d, chunks(data, 65536)).await.unwrap(),
                data.len() as u64
            );
            assert!(blobs.exists(&d).await.unwrap());
            assert_eq!(read_all(&blobs, &d, None).await, data);
        }
        let d = Digest::sha256_of(&big);
        assert_eq!(read_all(&blobs, &d, Some(5..10)).await, &big[5..10]);

        // A wrong digest leaves nothing behind, for small and streamed bodies alike.
        for data in [&b"small"[..], &big] {
            let wrong = Digest::sha256_of(b"something else");
            let e = blobs
                .write_verified(&wrong, chunks(data, 4096))
                .await
                .unwrap_err();
            assert_eq!(e.code(), "DIGEST_INVALID");
            assert!(!blobs.exists(&wrong).await.unwrap());
        }

        // Parts assemble into one verified blob, or are promoted when there is one.
        let keys = [Blobs::part_key("s1", 0), Blobs::part_key("s1", 100)];
        let (a, b) = big.split_at(100);
        blobs
            .write_part(&keys[0], chunks(a, 33), &mut None)
            .await
            .unwrap();
        blobs
            .write_part(&keys[1], chunks(b, 65536), &mut None)
            .await
            .unwrap();
        let mut h = Hasher::new(d.algorithm());
        blobs.hash_parts(&keys, &mut h).await.unwrap();
        assert_eq!(h.finish(), d);
        let sha = Digest::sha256_of(b"x");
        let e = blobs
            .assemble_parts(keys.to_vec(), &sha, false)
            .await
            .unwrap_err();
        assert_eq!(e.code(), "DIGEST_INVALID");
        assert_eq!(
            blobs.assemble_parts(keys.to_vec(), &d, true).await.unwrap(),
            big.len() as u64
        );
        assert_eq!(read_all(&blobs, &d, None).await, big);
        blobs.delete_parts(&keys).await.unwrap();
        blobs.delete_parts(&keys).await.unwrap();

        let one = Blobs::part_key("s2", 0);
        blobs
            .write_part(&one, chunks(b"solo", 2), &mut None)
            .await
            .unwrap();
        let solo = Digest::sha256_of(b"solo");
        blobs.promote_part(&one, 4, &solo).await.unwrap();
        assert_eq!(read_all(&blobs, &solo, None).await, b"solo");

        // A part too large for the store's copy request is streamed into place instead.
        let capped = Blobs {
            rename_max: 3,
            ..blobs.clone()
        };
        let one = Blobs::part_key("s3", 0);
        capped
            .write_part(&one, chunks(b"streamed", 3), &mut None)
            .await
            .unwrap();
        let streamed = Digest::sha256_of(b"streamed");
        capped.promote_part(&one, 8, &streamed).await.unwrap();
        assert_eq!(read_all(&blobs, &streamed, None).await, b"streamed");
        let left = blobs.store.head(&Path::from(one.as_str())).await;
        assert!(
            matches!(left, Err(object_store::Error::NotFound { .. })),
            "{left:?}"
        );

        // Deleting several at once: present ones and one already gone all count as deleted.
        let gone = Digest::sha256_of(b"never written");
        let outcomes = blobs
            .delete_blobs(vec![solo.clone(), streamed.clone(), gone.clone()], 2)
            .await;
        assert_eq!(outcomes.len(), 3);
        for (digest, outcome) in outcomes {
            assert!(outcome.is_ok(), "{digest}: {outcome:?}");
            assert!(!blobs.exists(&digest).await.unwrap(), "{digest}");
        }

        // A body that breaks off is an upload error, not a blob.
        let broken = futures::stream::iter(vec![
            Ok(Bytes::from_static(b"ab")),
            Err("reset".to_string()),
        ]);
        let e = blobs.write_verified(&solo, broken).await.unwrap_err();
        assert_eq!(e.code(), "BLOB_UPLOAD_INVALID");

        // The listing the orphan check merges with the index: every blob, in digest order,
        // with the size `stat` gives.
        let mut sizes: BTreeMap<Digest, u64> = BTreeMap::new();
        for data in [&b""[..], b"hello", &big] {
            sizes.insert(Digest::sha256_of(data), data.len() as u64);
        }
        for n in 0..40u32 {
            let data = format!("listed {n}").into_bytes();
            let digest = Digest::sha256_of(&data);
            blobs
                .write_verified(&digest, chunks(&data, 4))
                .await
                .unwrap();
            sizes.insert(digest, data.len() as u64);
        }
        let listed: Vec<ListedBlob> = blobs.list_blobs_in_order().try_collect().await.unwrap();
        let digests: Vec<&Digest> = listed.iter().map(|b| &b.digest).collect();
        assert_eq!(digests, sizes.keys().collect::<Vec<_>>(), "in digest order");
        for blob in &listed {
            let (size, _) = blobs.stat(&blob.digest).await.unwrap().expect("stat");
            assert_eq!(size, sizes[&blob.digest], "{}", blob.digest);
            if let Some((listed_size, _)) = blob.stat {
                assert_eq!(listed_size, size);
            }
        }
        assert_eq!(blobs.stat(&gone).await.unwrap(), None);
    }

    #[tokio::test]
    async fn in_memory_backend() {
        suite(Blobs::new(Arc::new(InMemory::new()), 5 * 1024 * 1024)).await;
    }

    /// Runs the suite on the store `BERTH_TEST_STORAGE_URL` names (e.g. `s3://bucket`, with
    /// the backend's own environment), under a fresh prefix.
    #[tokio::test]
    #[ignore = "needs a cloud blob store: BERTH_TEST_STORAGE_URL (scripts/test.sh starts it)"]
    async fn configured_cloud_backend() {
        let url = std::env::var("BERTH_TEST_STORAGE_URL")
            .expect("BERTH_TEST_STORAGE_URL names the cloud store this test runs on");
        let prefix = format!("blobs-suite-{}", uuid::Uuid::new_v4().simple());
        let url = format!("{}/{prefix}", url.trim_end_matches('/'));
        let mut config = Config::default();
        config.storage.backend = StorageConfig::from_url(&url).unwrap();
        let on_files = matches!(config.storage.backend, StorageConfig::Fs { .. });
        assert!(!on_files, "{url}");
        suite(Blobs::open(&config).unwrap()).await;
    }

    /// A spool write that fails while the body still has chunks to give ends the request
    /// with the write's error. The body's next chunk is handed over just as the writer's
    /// thread fails and drops its queue, so each round races the two; many rounds make sure
    /// the side that queues into the dropped queue is taken.
    #[tokio::test]
    async fn a_failed_spool_write_ends_the_upload_with_its_error() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(&Config::with_data_dir(dir.path())).unwrap();
        for round in 0..40 {
            let mut spool = blobs
                .lock_spool(&format!("s{round}"))
                .await
                .unwrap()
                .unwrap();
            // Read-only: every write fails.
            spool.file = Arc::new(std::fs::File::open(&spool.path).unwrap());
            let file = spool.file.clone();
            let body = futures::stream::unfold(0, move |sent| {
                let file = file.clone();
                async move {
                    if sent == 1 {
                        // Besides the spool's and this body's two, the writer's thread
                        // holds a handle until it fails.
                        for _ in 0..1_000_000 {
                            if Arc::strong_count(&file) <= 3 {
                                break;
                            }
                            tokio::task::yield_now().await;
                        }
                    }
                    (sent < 3).then(|| (Ok::<_, String>(Bytes::from_static(b"chunk")), sent + 1))
                }
            });
            let e = spool.write_at(0, Box::pin(body), &mut None).await;
            let Err(Error::Internal(e)) = e else {
                panic!("round {round}: {e:?}")
            };
            assert!(
                format!("{e:#}").contains("writing an upload spool"),
                "round {round}: {e:#}"
            );
            assert_eq!(std::fs::metadata(&spool.path).unwrap().len(), 0);
        }
    }

    #[tokio::test]
    async fn filesystem_backend() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::with_data_dir(dir.path());
        config.durability.fsync = true;
        suite(Blobs::open(&config).unwrap()).await;

        // The local listing reads names only: a write's temporary file, a stray file where
        // a shard directory goes and a foreign name are not blobs, and are skipped.
        let blobs = Blobs::open(&config).unwrap();
        let before: Vec<Digest> = blobs
            .list_blobs_in_order()
            .map_ok(|b| b.digest)
            .try_collect()
            .await
            .unwrap();
        let hello = Digest::sha256_of(b"hello");
        let root = blobs.local.as_ref().unwrap().root.clone();
        let key = root.join(Blobs::blob_key(&hello).as_ref());
        let shard = key.parent().unwrap();
        std::fs::write(shard.join(format!("{}#7", hello.hex())), b"partial").unwrap();
        std::fs::write(shard.join("README"), b"not a blob").unwrap();
        std::fs::write(shard.parent().unwrap().join("stray"), b"not a shard").unwrap();
        let after: Vec<ListedBlob> = blobs.list_blobs_in_order().try_collect().await.unwrap();
        assert!(after.iter().all(|b| b.stat.is_none()), "names only");
        assert_eq!(
            after.into_iter().map(|b| b.digest).collect::<Vec<_>>(),
            before
        );
    }
}
