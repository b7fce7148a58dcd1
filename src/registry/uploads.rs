//! Upload sessions (spec end-4a/4b, end-5, end-6, end-11, end-13).
//!
//! A session lives in the index (offset, staged parts), never only in this process's memory,
//! so any replica can continue it and its `Location` stays valid until it completes. On a
//! local directory every chunk extends the session's one spool file, so completion is a rename
//! and each byte is written once; on a cloud store each request that carries data becomes one
//! staged object, and completion verifies the digest and publishes the blob (a rename for one
//! part, a verified copy for several).
//!
//! In a namespace with a storage quota the blob is admitted between the two: every upload is
//! staged (a monolithic one too), so that a blob the quota refuses is never published.
//!
//! A blob this registry fetches itself (a pull-through miss, a replication pull) goes, on a
//! local directory, into a resumable session: its id derived from the repository and the
//! digest, its spool locked while it is written, its size recorded every few MiB, so that
//! the next attempt, in this process or after a crash, goes on from there.

use std::fmt::Display;

use bytes::Bytes;
use futures::Stream;

use super::{Registry, quotas::StorageQuota};
use crate::{
    blobs::{Blobs, Spool},
    error::{Error, Result},
    oci::{Digest, Hasher, RepoName, digest::Algorithm},
};

/// Outcome of a mount request (end-11).
pub enum Mounted {
    /// The blob is now linked into the target repository.
    Blob {
        /// The blob's size.
        size: u64,
    },
    /// It could not be mounted; a normal upload session was opened instead.
    Session {
        /// The new session's id.
        id: String,
    },
}

fn valid_session_id(id: &str) -> bool {
    uuid::Uuid::parse_str(id).is_ok()
}

/// The bytes a resumable write records in the index at a time: what a write cut off loses.
const RESUMABLE_SEGMENT: u64 = 8 * 1024 * 1024;

/// A session this process writes a known blob into, claimed with its spool's lock (held until
/// this is dropped, so no other process appends meanwhile), and the bytes the index records
/// for it: where the write goes on.
pub struct Resumable {
    id: String,
    spool: Spool,
    offset: u64,
}

impl Resumable {
    /// The session's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The bytes an earlier, cut-off write left: the new one starts there.
    pub fn offset(&self) -> u64 {
        self.offset
    }
}

/// The session id of the resumable write `name` into `repo`: the same in every process and
/// after a restart, so that the next attempt finds what the last one left.
fn resumable_id(repo: &RepoName, name: &str) -> String {
    use sha2::Digest as _;
    let hash = sha2::Sha256::digest(format!("resumable\n{repo}\n{name}"));
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&hash[..16]);
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

impl Registry {
    /// How long an upload's request body may send nothing (`limits.body_idle_timeout_secs`).
    pub fn body_idle_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.limits.body_idle_timeout_secs)
    }

    /// The bytes per second an upload's request body must average over each idle-timeout
    /// window (`limits.min_body_rate_bytes_per_sec`; 0: none).
    pub fn min_body_rate(&self) -> u64 {
        self.limits.min_body_rate_bytes_per_sec
    }

    /// Opens an upload session in `repo` and returns its id.
    pub async fn start_upload(&self, repo: &RepoName) -> Result<String> {
        self.admit_repository(repo).await?;
        let id = uuid::Uuid::new_v4().to_string();
        self.meta.create_upload(repo, &id).await?;
        Ok(id)
    }

    /// Bytes received so far by session `id` (end-13).
    pub async fn upload_status(&self, repo: &RepoName, id: &str) -> Result<u64> {
        if !valid_session_id(id) {
            return Err(Error::BlobUploadUnknown);
        }
        self.meta
            .upload_size(repo, id)
            .await?
            .ok_or(Error::BlobUploadUnknown)
    }

    /// Appends a chunk (end-5). `range` is the `Content-Range` the client sent, if any; a
    /// chunk that does not start where the session ends is refused with 416.
    pub async fn append_upload<S, E>(
        &self,
        repo: &RepoName,
        id: &str,
        range: Option<(u64, u64)>,
        body: S,
    ) -> Result<u64>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: Display,
    {
        let size = self.upload_status(repo, id).await?;
        let declared = chunk_length(range, size)?;
        let written = self.stage_chunk(id, size, declared, body).await?;
        Ok(size + written)
    }

    /// Completes session `id` as blob `digest` (end-6), with an optional last chunk whose
    /// `Content-Range`, when sent, must start where the session ends (else 416, the session
    /// left as it was); returns the blob's size.
    pub async fn finish_upload<S, E>(
        &self,
        repo: &RepoName,
        id: &str,
        digest: &Digest,
        range: Option<(u64, u64)>,
        body: S,
    ) -> Result<u64>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: Display,
    {
        let quota = self.storage_quota(repo).await?;
        self.finish_within(repo, id, digest, range, quota.as_ref(), body)
            .await
    }

    /// [`Registry::finish_upload`] under the namespace's storage `quota`, if it has one.
    async fn finish_within<S, E>(
        &self,
        repo: &RepoName,
        id: &str,
        digest: &Digest,
        range: Option<(u64, u64)>,
        quota: Option<&StorageQuota>,
        body: S,
    ) -> Result<u64>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: Display,
    {
        let received = self.upload_status(repo, id).await?;
        let closing = Closing {
            received,
            declared: chunk_length(range, received)?,
        };
        self.begin_blob_write(digest).await?;
        let finished = self
            .finish_fenced(repo, id, digest, closing, quota, body)
            .await;
        if !matches!(finished, Ok(Some(_))) {
            // The fence is released with the row on success only.
            self.meta.end_blob_write(digest).await.ok();
        }
        finished?.ok_or(Error::BlobUploadUnknown)
    }

    /// [`Registry::finish_upload`] once the writer is counted in on `digest`; returns the
    /// blob's size, or `None` if the session was gone when the blob was to be recorded.
    async fn finish_fenced<S, E>(
        &self,
        repo: &RepoName,
        id: &str,
        digest: &Digest,
        closing: Closing,
        quota: Option<&StorageQuota>,
        body: S,
    ) -> Result<Option<u64>>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: Display,
    {
        let Closing {
            received: size,
            declared,
        } = closing;
        if size == 0 && quota.is_none() {
            // Monolithic: stream straight to the blob's key, verifying on the way (the digest
            // checks the length too). A failed attempt leaves the empty session open.
            let size = self.blobs.write_verified(digest, body).await?;
            let committed = self.commit_upload(repo, id, digest, size, &[]).await?;
            return Ok(committed.then_some(size));
        }
        let total = size + self.stage_chunk(id, size, declared, body).await?;
        if let Some(quota) = quota
            && let Err(e) = self.admit_blob(repo, quota, digest, total).await
        {
            if matches!(e, Error::Denied(_)) {
                // Refused before publication: the session and its staged bytes go.
                self.cancel_upload(repo, id).await.ok();
            }
            return Err(e);
        }
        let mut parts: Vec<String> = self
            .meta
            .upload_parts(id)
            .await?
            .into_iter()
            .map(|p| p.key)
            .collect();
        // The chunks of a spooled session all name the same file.
        parts.dedup();
        let published = self.publish_parts(id, total, &parts, digest).await;
        if let Err(e) = published {
            if matches!(e, Error::DigestInvalid(_)) {
                // The staged bytes can never complete this session: drop them.
                self.cancel_upload(repo, id).await.ok();
            }
            return Err(e);
        }
        let committed = self.commit_upload(repo, id, digest, total, &parts).await?;
        Ok(committed.then_some(total))
    }

    /// Claims the resumable write `name` of a blob into `repo`: its session with its spool
    /// locked, the one an earlier attempt left or, if `open`, a new one. `None` when there is
    /// none, when the store keeps no spool files (a cloud store) or when another process
    /// holds the session right now; the caller then writes the blob whole.
    pub(super) async fn claim_resumable(
        &self,
        repo: &RepoName,
        name: &str,
        open: bool,
    ) -> Result<Option<Resumable>> {
        if !self.blobs.spools() {
            return Ok(None);
        }
        let id = resumable_id(repo, name);
        if self.meta.upload_size(repo, &id).await?.is_none() {
            if !open {
                return Ok(None);
            }
            self.admit_repository(repo).await?;
            if self.meta.create_upload(repo, &id).await.is_err() {
                // Opened by another process a moment ago: that one writes it.
                return Ok(None);
            }
        }
        let Some(spool) = self.blobs.try_lock_spool(&id).await? else {
            return Ok(None);
        };
        // Read under the lock: what the last holder recorded before it let go.
        let Some(offset) = self.meta.upload_size(repo, &id).await? else {
            return Ok(None);
        };
        Ok(Some(Resumable { id, spool, offset }))
    }

    /// Writes blob `digest` fetched from another registry into `repo`: `body` from the
    /// claimed session's offset on into that session, else the whole blob as a push would
    /// ([`Registry::put_blob`]); returns the blob's size.
    pub(super) async fn write_fetched<S>(
        &self,
        repo: &RepoName,
        resumable: Option<Resumable>,
        digest: &Digest,
        body: S,
    ) -> Result<u64>
    where
        S: Stream<Item = Result<Bytes, String>> + Unpin,
    {
        match resumable {
            Some(resumable) => self.write_resumable(repo, resumable, digest, body).await,
            None => self.put_blob(repo, digest, body).await,
        }
    }

    /// Writes `body`, the bytes of blob `digest` from the claimed session's offset on, into
    /// the session, recording a segment at a time, then completes it as the blob (verified,
    /// published, linked into `repo`); returns the blob's size. A body that breaks off leaves
    /// the session holding every segment that was recorded whole, for the next claim.
    async fn write_resumable<S>(
        &self,
        repo: &RepoName,
        resumable: Resumable,
        digest: &Digest,
        mut body: S,
    ) -> Result<u64>
    where
        S: Stream<Item = Result<Bytes, String>> + Unpin,
    {
        use futures::StreamExt;
        let Resumable {
            id,
            spool,
            mut offset,
        } = resumable;
        // A running hash only from the first byte; a resumed write is hashed again at the end.
        let mut hasher = (offset == 0).then(|| Hasher::new(digest.algorithm()));
        let mut ended = false;
        while !ended {
            let mut room = RESUMABLE_SEGMENT;
            let segment = futures::stream::poll_fn(|cx| {
                if room == 0 || ended {
                    return std::task::Poll::Ready(None);
                }
                let next = body.poll_next_unpin(cx);
                match &next {
                    std::task::Poll::Ready(Some(Ok(chunk))) => {
                        room = room.saturating_sub(chunk.len() as u64);
                    }
                    std::task::Poll::Ready(None) => ended = true,
                    _ => {}
                }
                next
            });
            let written = spool.write_at(offset, segment, &mut hasher).await?;
            if written > 0
                && !self
                    .meta
                    .append_upload_part(&id, offset, written, spool.key())
                    .await?
            {
                let size = self.meta.upload_size_any(&id).await?;
                return Err(Error::ChunkOutOfOrder {
                    size: size.ok_or(Error::BlobUploadUnknown)?,
                });
            }
            offset += written;
        }
        if let Some(h) = hasher {
            self.running_hashes.put(&id, offset, h);
        }
        // Completion takes the lock itself.
        drop(spool);
        self.finish_upload(
            repo,
            &id,
            digest,
            None,
            futures::stream::empty::<Result<Bytes, String>>(),
        )
        .await
    }

    /// Cancels session `id` and drops its staged bytes.
    pub async fn cancel_upload(&self, repo: &RepoName, id: &str) -> Result<()> {
        self.upload_status(repo, id).await?;
        let mut parts: Vec<String> = self
            .meta
            .upload_parts(id)
            .await?
            .into_iter()
            .map(|p| p.key)
            .collect();
        if self.blobs.spools() {
            // The spool exists from the first request, even one that kept no bytes.
            parts.push(Blobs::spool_key(id));
        }
        parts.dedup();
        self.running_hashes.forget(id);
        if !self.meta.delete_upload(id).await? {
            return Err(Error::BlobUploadUnknown);
        }
        self.blobs.delete_parts(&parts).await
    }

    /// Single-request upload (end-4b): the whole blob in the POST body.
    pub async fn put_blob<S, E>(&self, repo: &RepoName, digest: &Digest, body: S) -> Result<u64>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: Display,
    {
        if let Some(quota) = self.admit_repository(repo).await? {
            // Through a session of its own, so that the bytes are staged and admitted before
            // they are published; the session ends with the request either way.
            let id = uuid::Uuid::new_v4().to_string();
            self.meta.create_upload(repo, &id).await?;
            let finished = self
                .finish_within(repo, &id, digest, None, Some(&quota), body)
                .await;
            if finished.is_err() {
                self.cancel_upload(repo, &id).await.ok();
            }
            return finished;
        }
        self.begin_blob_write(digest).await?;
        let written = match self.blobs.write_verified(digest, body).await {
            Ok(size) => self.meta.link_blob(repo, digest, size).await.map(|()| size),
            Err(e) => Err(e),
        };
        if written.is_err() {
            self.meta.end_blob_write(digest).await.ok();
        }
        written
    }

    /// Counts this writer in on `digest` before its object is written, so that the collector
    /// does not delete the object meanwhile. While the collector holds the digest (it is
    /// deleting the object right now, which takes one store request) this waits, a bounded
    /// time, then answers 503.
    async fn begin_blob_write(&self, digest: &Digest) -> Result<()> {
        const ATTEMPTS: u32 = 100;
        for _ in 0..ATTEMPTS {
            if self.meta.begin_blob_write(digest).await? {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Err(Error::Unavailable {
            what: "blob",
            source: anyhow::anyhow!("{digest} is being deleted by the garbage collector"),
        })
    }

    /// Cross-repository mount (end-11): links `digest` into `repo` when it is in `from` (or,
    /// without `from`, in any repository), else opens a normal session.
    pub async fn mount_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        from: Option<&RepoName>,
    ) -> Result<Mounted> {
        let source = match from {
            Some(from) => Some(from.clone()),
            None => self
                .meta
                .repositories_linking(digest, 1)
                .await?
                .into_iter()
                .next(),
        };
        if let Some(source) = source
            && let Some(size) = self.meta.linked_blob_size(&source, digest).await?
        {
            // A mount adds the blob to the namespace as a push would.
            if let Some(quota) = self.admit_repository(repo).await? {
                self.admit_blob(repo, &quota, digest, size).await?;
            }
            if self.meta.mount_blob(repo, digest).await? {
                return Ok(Mounted::Blob { size });
            }
        }
        Ok(Mounted::Session {
            id: self.start_upload(repo).await?,
        })
    }

    /// Writes one chunk of session `id` at `offset` as a staged part; returns its length. A
    /// chunk whose length is not the `declared` one is dropped and the session is unchanged.
    async fn stage_chunk<S, E>(
        &self,
        id: &str,
        offset: u64,
        declared: Option<u64>,
        body: S,
    ) -> Result<u64>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: Display,
    {
        if let Some(spool) = self.blobs.lock_spool(id).await?
            && spool.len().await? >= offset
        {
            return self.spool_chunk(spool, id, offset, declared, body).await;
        }
        // A cloud store, or a session that began with part objects: one object per chunk.
        let key = Blobs::part_key(id, offset);
        let mut hasher = match offset {
            0 => Some(Hasher::new(Algorithm::Sha256)),
            _ => self.running_hashes.take(id, offset),
        };
        let written = self.blobs.write_part(&key, body, &mut hasher).await?;
        if let Some(declared) = declared.filter(|d| *d != written) {
            self.blobs.delete_parts(&[key]).await?;
            return Err(Error::SizeInvalid(format!(
                "Content-Range declared {declared} bytes but the body had {written}; the chunk was not kept"
            )));
        }
        if written == 0 {
            if let Some(h) = hasher {
                self.running_hashes.put(id, offset, h);
            }
            return Ok(0);
        }
        if !self
            .meta
            .append_upload_part(id, offset, written, &key)
            .await?
        {
            self.blobs.delete_parts(&[key]).await?;
            let size = self
                .meta
                .upload_size_any(id)
                .await?
                .ok_or(Error::BlobUploadUnknown)?;
            return Err(Error::ChunkOutOfOrder { size });
        }
        if let Some(h) = hasher {
            self.running_hashes.put(id, offset + written, h);
        }
        Ok(written)
    }

    /// [`Registry::stage_chunk`] on a local store: the chunk extends the session's spool file in
    /// place, under its lock, which is held from the check of the session's size to the row
    /// that records the chunk. The file may hold more than the session (a write cut off): the
    /// chunk overwrites that.
    async fn spool_chunk<S, E>(
        &self,
        spool: Spool,
        id: &str,
        offset: u64,
        declared: Option<u64>,
        body: S,
    ) -> Result<u64>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: Display,
    {
        let size = self
            .meta
            .upload_size_any(id)
            .await?
            .ok_or(Error::BlobUploadUnknown)?;
        if size != offset {
            return Err(Error::ChunkOutOfOrder { size });
        }
        let mut hasher = match offset {
            0 => Some(Hasher::new(Algorithm::Sha256)),
            _ => self.running_hashes.take(id, offset),
        };
        let written = spool.write_at(offset, body, &mut hasher).await?;
        if let Some(declared) = declared.filter(|d| *d != written) {
            spool.truncate(offset).await?;
            return Err(Error::SizeInvalid(format!(
                "Content-Range declared {declared} bytes but the body had {written}; the chunk was not kept"
            )));
        }
        if written > 0
            && !self
                .meta
                .append_upload_part(id, offset, written, spool.key())
                .await?
        {
            // Another process appended although the lock was held: only ever on files that
            // do not honour locks. The file now mixes both; the digest check will tell.
            let size = self
                .meta
                .upload_size_any(id)
                .await?
                .ok_or(Error::BlobUploadUnknown)?;
            return Err(Error::ChunkOutOfOrder { size });
        }
        if let Some(h) = hasher {
            self.running_hashes.put(id, offset + written, h);
        }
        Ok(written)
    }

    /// Verifies the staged parts of a session against `digest` and publishes them as its
    /// blob: a single part is moved into place, several are concatenated. The running hash
    /// spares reading the bytes back when it covers the whole session.
    async fn publish_parts(
        &self,
        id: &str,
        total: u64,
        parts: &[String],
        digest: &Digest,
    ) -> Result<()> {
        let running = self
            .running_hashes
            .take(id, total)
            .filter(|_| digest.algorithm() == Algorithm::Sha256)
            .map(Hasher::finish);
        let verified = match running {
            Some(actual) if &actual != digest => {
                return Err(Error::DigestInvalid(format!(
                    "uploaded content hashes to {actual}, not {digest}"
                )));
            }
            Some(_) => true,
            None => false,
        };
        if let [single] = parts
            && *single == Blobs::spool_key(id)
            && let Some(spool) = self.blobs.lock_spool(id).await?
        {
            // The session's bytes are one local file: publishing it is a rename.
            return spool.publish(total, digest, verified).await;
        }
        match parts {
            [single] => {
                if !verified {
                    let mut h = Hasher::new(digest.algorithm());
                    self.blobs.hash_parts(parts, &mut h).await?;
                    let actual = h.finish();
                    if &actual != digest {
                        return Err(Error::DigestInvalid(format!(
                            "uploaded content hashes to {actual}, not {digest}"
                        )));
                    }
                }
                self.blobs.promote_part(single, total, digest).await
            }
            _ => self
                .blobs
                .assemble_parts(parts.to_vec(), digest, verified)
                .await
                .map(drop),
        }
    }

    /// Records the published blob and ends the session; then drops leftover parts. Returns
    /// false if the session was gone.
    async fn commit_upload(
        &self,
        repo: &RepoName,
        id: &str,
        digest: &Digest,
        size: u64,
        parts: &[String],
    ) -> Result<bool> {
        self.running_hashes.forget(id);
        if !self.meta.finish_upload(repo, id, digest, size).await? {
            return Ok(false);
        }
        if parts.len() > 1 {
            self.blobs.delete_parts(parts).await?;
        }
        Ok(true)
    }
}

/// Where a session stands when its closing request arrives.
#[derive(Clone, Copy)]
struct Closing {
    /// The bytes the session holds.
    received: u64,
    /// The length the closing chunk's `Content-Range` declares, if it sent one.
    declared: Option<u64>,
}

/// The length a chunk's `Content-Range` declares, checked against the `size` the session
/// holds: a chunk must start where the session ends ([`Error::ChunkOutOfOrder`] otherwise).
fn chunk_length(range: Option<(u64, u64)>, size: u64) -> Result<Option<u64>> {
    match range {
        None => Ok(None),
        Some((start, end)) if start == size && end >= start => {
            Ok(Some((end - start).saturating_add(1)))
        }
        Some(_) => Err(Error::ChunkOutOfOrder { size }),
    }
}
