//! The registry domain: the OCI rules for blobs, uploads, manifests and tags. Handlers call
//! this and nothing below it.
//!
//! Invariants, each pinned by tests:
//! - **Bytes first, rows second.** A blob's object is written and verified against its digest
//!   before its index row exists; a client can see only what the index lists, so nothing
//!   unverified or half-written is ever served.
//! - **Rows first, bytes second on delete.** Deleting removes index rows; objects that nothing
//!   references any more are left for garbage collection ([`gc`]), which deletes a row only
//!   after re-checking that nothing needs it, and its object only under a claim that keeps
//!   writers of the same digest out.
//! - **Repository isolation.** A blob is served from a repository only through that
//!   repository's link to it (pushed there, or mounted from a repository it came from).
//! - **Bounded memory.** Bodies stream to the store; listings are paged by the database.

mod blobs;
mod gc;
mod manifests;
pub mod policies;
mod settings;
mod uploads;

use std::{collections::HashMap, sync::Arc, sync::Mutex};

pub use blobs::{BlobRead, RangeRequest};
pub use gc::{GcOptions, GcReport, Progress};
pub use manifests::{ManifestPut, Page};
pub use settings::{Override, TagRules};
pub use uploads::Mounted;

use crate::{
    blobs::Blobs,
    config::{Config, GcConfig, Limits},
    meta::{Meta, PullStats, RepositorySummary},
    oci::Hasher,
};

/// The domain service, cheap to clone (shared handles inside).
#[derive(Clone)]
pub struct Registry {
    meta: Meta,
    blobs: Blobs,
    limits: Limits,
    gc: GcConfig,
    running_hashes: Arc<RunningHashes>,
    pulls: Arc<PullStats>,
}

impl Registry {
    /// Opens the index and the blob store `config` names.
    pub async fn open(config: &Config) -> anyhow::Result<Registry> {
        let mut meta =
            Meta::connect(&config.database, &config.limits, config.durability.fsync).await?;
        meta.set_review_delay(config.gc.continuous.then_some(config.gc.review_delay_secs));
        let blobs = Blobs::open(config)?;
        Ok(Registry {
            meta,
            blobs,
            limits: config.limits.clone(),
            gc: config.gc.clone(),
            running_hashes: Arc::default(),
            pulls: Arc::default(),
        })
    }

    /// Repositories after `last` in name order, `n` at most, with their usage figures.
    pub async fn repository_summaries(
        &self,
        last: &str,
        n: u32,
    ) -> crate::error::Result<Vec<RepositorySummary>> {
        self.meta.repository_summaries(last, n).await
    }

    /// The index handle, for services beside the registry on the same index (access control,
    /// the workers' job queue).
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn gc_config(&self) -> &GcConfig {
        &self.gc
    }

    /// Writes the pull counts gathered in memory to the index.
    pub async fn flush_pull_stats(&self) -> crate::error::Result<()> {
        self.meta.flush_pull_stats(&self.pulls).await
    }

    pub async fn close(&self) {
        if let Err(e) = self.flush_pull_stats().await {
            tracing::warn!(error = %e, "could not write pull statistics at shutdown");
        }
        self.meta.close().await;
    }
}

/// The sha256 state of chunked uploads in progress, so the final PUT need not read the bytes
/// back. Only an optimisation: when an entry is missing (another replica took the chunk, the
/// process restarted, or the cache was full) the parts are hashed from the store instead.
#[derive(Default)]
struct RunningHashes(Mutex<HashMap<String, (u64, Hasher)>>);

/// Sessions tracked at once; beyond this, new sessions are verified by reading back.
const RUNNING_HASHES_MAX: usize = 4096;

impl RunningHashes {
    /// The state of `session` if it has hashed exactly `offset` bytes.
    fn take(&self, session: &str, offset: u64) -> Option<Hasher> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match map.remove(session) {
            Some((at, h)) if at == offset => Some(h),
            _ => None,
        }
    }

    fn put(&self, session: &str, offset: u64, hasher: Hasher) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() < RUNNING_HASHES_MAX || map.contains_key(session) {
            map.insert(session.to_owned(), (offset, hasher));
        }
    }

    fn forget(&self, session: &str) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(session);
    }
}
