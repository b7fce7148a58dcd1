//! Namespace quotas (Harbor's project quotas): a limit on the deduplicated bytes a namespace
//! holds and on its number of repositories, with a warning threshold.
//!
//! Usage is counted from the index (one statement, see [`crate::meta::quotas`]) when it is
//! shown, and when a blob does not fit under the quota's counted usage: the usage as last
//! counted plus what was admitted since. Deletes and collections lower the usage, not that
//! count, so it only ever errs high, and a refusal is always decided on a fresh count: what
//! they free is usable at once, with no counter to keep in step with every delete.
//!
//! Enforcement runs where bytes or repositories would be added: a blob is admitted at the
//! closing PUT of its upload (after its bytes are staged, before they are published as the
//! blob) and at a mount; a repository when it would be created. A blob that fits under the
//! count reserves its bytes in one conditional update, so racing pushes cannot both take the
//! last room; a fresh count (near the limit) sees only what is linked, so pushes racing then
//! may together go over the limit by what they carry at that moment. No single push does.
//! The repository check reads, then the push creates: racing first pushes may exceed it alike.

use std::{collections::HashMap, sync::Mutex};

use serde::Serialize;

use super::Registry;
use crate::{
    error::{Error, Result},
    meta::{
        quotas::{NamespaceUsage, QuotaRow},
        webhooks::NewEvent,
    },
    metrics::QuotaGauge,
    oci::{Digest, RepoName},
    webhooks::EventKind,
};

/// Usage counted for the quota gauges per namespace, with when (Unix seconds): a count reads
/// every blob the namespace links, so scrapes reuse it for `metrics.quota_count_secs`.
#[derive(Default)]
pub(super) struct QuotaCounts(Mutex<HashMap<String, (NamespaceUsage, i64)>>);

impl QuotaCounts {
    fn counted_since(&self, namespace: &str, since: i64) -> Option<NamespaceUsage> {
        let counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        counts
            .get(namespace)
            .filter(|(_, at)| *at > since)
            .map(|(usage, _)| *usage)
    }

    fn put(&self, namespace: &str, usage: NamespaceUsage, at: i64) {
        let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        counts.insert(namespace.to_owned(), (usage, at));
    }

    /// Forgets the namespaces that no longer have a quota.
    fn keep_only(&self, quotas: &[QuotaRow]) {
        let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        counts.retain(|namespace, _| quotas.iter().any(|q| &q.namespace == namespace));
    }
}

/// The warning threshold of a quota set without one, in percent of each limit.
pub const WARN_PERCENT_DEFAULT: i64 = 80;

/// Limits to set on a namespace; `None` is no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaLimits {
    /// The most deduplicated bytes the namespace may hold (at least 1).
    pub storage_bytes: Option<i64>,
    /// The most repositories it may hold (at least 1).
    pub repositories: Option<i64>,
    /// Where the warning starts, in percent of each limit (1 to 100).
    pub warn_percent: i64,
}

impl QuotaLimits {
    /// The field at fault and why, when a limit is out of range.
    pub fn check(&self) -> std::result::Result<(), (&'static str, String)> {
        for (field, limit) in [
            ("storage_bytes", self.storage_bytes),
            ("repositories", self.repositories),
        ] {
            if let Some(n) = limit.filter(|n| *n < 1) {
                return Err((
                    field,
                    format!("{field}: {n} is not a limit; give at least 1, or null for none"),
                ));
            }
        }
        if !(1..=100).contains(&self.warn_percent) {
            return Err((
                "warn_percent",
                format!("warn_percent: {} is outside 1 to 100", self.warn_percent),
            ));
        }
        Ok(())
    }
}

/// A namespace's quota and what it uses against it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct QuotaStatus {
    /// The namespace (first component of repository names).
    pub namespace: String,
    /// The most deduplicated bytes it may hold; `null`: no limit.
    pub storage_bytes: Option<i64>,
    /// The most repositories it may hold; `null`: no limit.
    pub repositories: Option<i64>,
    /// Where the warning starts, in percent of each limit.
    pub warn_percent: i64,
    /// Deduplicated bytes held: every blob linked into one of its repositories (configs,
    /// layers, blobs pushed but not yet referenced) and every manifest, each digest once.
    pub used_bytes: i64,
    /// Repositories held.
    pub used_repositories: i64,
    /// Usage has reached `warn_percent` of a limit.
    pub warning: bool,
    /// Usage is over a limit (after a limit was lowered, or by manifests, which are never
    /// refused for their bytes): every push of new blobs is refused until it is freed.
    pub exceeded: bool,
}

impl QuotaStatus {
    fn of(namespace: &str, quota: Option<&QuotaRow>, usage: NamespaceUsage) -> QuotaStatus {
        let storage_bytes = quota.and_then(|q| q.storage_bytes);
        let repositories = quota.and_then(|q| q.repositories);
        let warn_percent = quota.map_or(WARN_PERCENT_DEFAULT, |q| q.warn_percent);
        let pairs = [
            (usage.used_bytes, storage_bytes),
            (usage.used_repositories, repositories),
        ];
        // i128: a percentage of a limit near i64::MAX does not overflow.
        let reached = |used: i64, limit: i64| {
            i128::from(used) * 100 >= i128::from(limit) * i128::from(warn_percent)
        };
        QuotaStatus {
            namespace: namespace.to_owned(),
            storage_bytes,
            repositories,
            warn_percent,
            used_bytes: usage.used_bytes,
            used_repositories: usage.used_repositories,
            warning: pairs
                .iter()
                .any(|(used, limit)| limit.is_some_and(|l| reached(*used, l))),
            exceeded: pairs
                .iter()
                .any(|(used, limit)| limit.is_some_and(|l| *used > l)),
        }
    }
}

/// The storage limit a push into a namespace must respect.
pub(super) struct StorageQuota {
    namespace: String,
    limit: i64,
}

impl Registry {
    /// The quota of `namespace` with its usage; a namespace without one shows no limits.
    pub async fn namespace_quota(&self, namespace: &str) -> Result<QuotaStatus> {
        let quota = self.meta.quota(namespace).await?;
        let usage = self.meta.namespace_usage(namespace).await?;
        Ok(QuotaStatus::of(namespace, quota.as_ref(), usage))
    }

    /// Sets (or replaces) the quota of `namespace`; returns it with its usage. A limit below
    /// the usage is accepted: pushes of new blobs are refused until enough is freed.
    pub async fn set_namespace_quota(
        &self,
        namespace: &str,
        limits: QuotaLimits,
    ) -> Result<QuotaStatus> {
        limits.check().map_err(|(_, why)| Error::BadRequest(why))?;
        self.meta
            .put_quota(&QuotaRow {
                namespace: namespace.to_owned(),
                storage_bytes: limits.storage_bytes,
                repositories: limits.repositories,
                warn_percent: limits.warn_percent,
            })
            .await?;
        let status = self.namespace_quota(namespace).await?;
        self.meta
            .set_counted_bytes(namespace, status.used_bytes)
            .await?;
        Ok(status)
    }

    /// Removes the quota of `namespace`; false when it had none.
    pub async fn remove_namespace_quota(&self, namespace: &str) -> Result<bool> {
        self.meta.delete_quota(namespace).await
    }

    /// Sets the quota gauges of the metrics from the index: one series per namespace that
    /// has a quota (the quotas read at scrape time; each namespace's usage as counted within
    /// the last `metrics.quota_count_secs`, counted again when older).
    pub async fn refresh_quota_metrics(&self) -> Result<()> {
        let now = self.clock.now();
        let quotas = self.meta.quotas().await?;
        self.quota_counts.keep_only(&quotas);
        let mut gauges = Vec::new();
        for quota in quotas {
            let usage = match self
                .quota_counts
                .counted_since(&quota.namespace, now - self.quota_count_secs)
            {
                Some(usage) => usage,
                None => {
                    let usage = self.meta.namespace_usage(&quota.namespace).await?;
                    self.quota_counts.put(&quota.namespace, usage, now);
                    usage
                }
            };
            let status = QuotaStatus::of(&quota.namespace, Some(&quota), usage);
            gauges.push(QuotaGauge {
                namespace: quota.namespace,
                used_bytes: status.used_bytes,
                limit_bytes: status.storage_bytes,
                warning: status.warning,
            });
        }
        self.metrics.set_quotas(&gauges);
        Ok(())
    }

    /// The storage limit of the namespace of `repo`, if it has one.
    pub(super) async fn storage_quota(&self, repo: &RepoName) -> Result<Option<StorageQuota>> {
        let namespace = namespace_of(repo.as_str());
        Ok(self
            .meta
            .quota(namespace)
            .await?
            .and_then(|q| q.storage_bytes)
            .map(|limit| StorageQuota {
                namespace: namespace.to_owned(),
                limit,
            }))
    }

    /// Refuses blob `digest` of `size` bytes with `Denied` when it is new to the namespace
    /// and would take its usage over the limit. A blob the namespace holds already is free.
    pub(super) async fn admit_blob(
        &self,
        repo: &RepoName,
        quota: &StorageQuota,
        digest: &Digest,
        size: u64,
    ) -> Result<()> {
        if self
            .meta
            .namespace_links_blob(&quota.namespace, digest)
            .await?
        {
            return Ok(());
        }
        let size = i64::try_from(size).unwrap_or(i64::MAX);
        if self
            .meta
            .reserve_quota_bytes(&quota.namespace, size)
            .await?
        {
            return Ok(());
        }
        // The count says no, but deletes and collections may have freed room since it was
        // taken: count again (a concurrent reservation may be lost to it: an underestimate by
        // what is in flight, which the next count corrects).
        let used = self
            .meta
            .namespace_usage(&quota.namespace)
            .await?
            .used_bytes;
        let fits = used.saturating_add(size) <= quota.limit;
        let counted = if fits { used + size } else { used };
        self.meta
            .set_counted_bytes(&quota.namespace, counted)
            .await?;
        if fits {
            return Ok(());
        }
        let reason = format!(
            "namespace {:?} storage quota exceeded: limit {}, used {}, this blob {}",
            quota.namespace,
            human_bytes(quota.limit),
            human_bytes(used),
            human_bytes(size)
        );
        let detail = serde_json::json!({
            "reason": reason, "namespace": quota.namespace, "quota": "storage_bytes",
            "limit": quota.limit, "used": used, "size": size,
        });
        let digest = digest.to_string();
        self.webhook_event(&NewEvent {
            digest: Some(&digest),
            detail: Some(&detail),
            ..NewEvent::new(EventKind::QuotaExceeded, repo.as_str())
        })
        .await;
        Err(Error::Denied(reason))
    }

    /// Counts a manifest of `bytes` stored in `repo` into its namespace's counted usage
    /// (manifests are not refused for their bytes, but blobs after them must see them).
    pub(super) async fn count_manifest(&self, repo: &RepoName, bytes: usize) {
        let namespace = namespace_of(repo.as_str());
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
        if let Err(e) = self.meta.add_counted_bytes(namespace, bytes).await {
            // Only the estimate is behind; the next count of the usage corrects it.
            tracing::warn!(error = %e, namespace, "could not count a manifest into its quota");
        }
    }

    /// Refuses to create `repo` with `Denied` when its namespace holds as many repositories
    /// as its quota allows; an existing repository passes. Returns the namespace's storage
    /// limit, if it has one, for the blobs the push brings.
    pub(super) async fn admit_repository(&self, repo: &RepoName) -> Result<Option<StorageQuota>> {
        let namespace = namespace_of(repo.as_str());
        let Some(quota) = self.meta.quota(namespace).await? else {
            return Ok(None);
        };
        let limited = quota.storage_bytes.map(|limit| StorageQuota {
            namespace: namespace.to_owned(),
            limit,
        });
        let Some(limit) = quota.repositories else {
            return Ok(limited);
        };
        if self.meta.repository_id(repo).await?.is_some() {
            return Ok(limited);
        }
        let used = self.meta.namespace_repositories(namespace).await?;
        if used < limit {
            return Ok(limited);
        }
        let reason = format!(
            "namespace {namespace:?} repository quota exceeded: limit {limit}, used {used}; \
             {repo} cannot be created"
        );
        let detail = serde_json::json!({
            "reason": reason, "namespace": namespace, "quota": "repositories",
            "limit": limit, "used": used,
        });
        self.webhook_event(&NewEvent {
            detail: Some(&detail),
            ..NewEvent::new(EventKind::QuotaExceeded, repo.as_str())
        })
        .await;
        Err(Error::Denied(reason))
    }
}

/// The namespace of `repo`: its first component, as access control counts it
/// (`auth::namespace_of`).
fn namespace_of(repo: &str) -> &str {
    repo.split('/').next().unwrap_or(repo)
}

/// `bytes` for people: exact below 1 KiB, else in binary units with one decimal.
fn human_bytes(bytes: i64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(used_bytes: i64, storage_bytes: Option<i64>, warn_percent: i64) -> QuotaStatus {
        let quota = QuotaRow {
            namespace: "team".into(),
            storage_bytes,
            repositories: None,
            warn_percent,
        };
        let usage = NamespaceUsage {
            used_bytes,
            used_repositories: 1,
        };
        QuotaStatus::of("team", Some(&quota), usage)
    }

    #[test]
    fn warning_starts_at_the_threshold_and_exceeded_above_the_limit() {
        assert!(!status(79, Some(100), 80).warning);
        assert!(status(80, Some(100), 80).warning);
        assert!(!status(100, Some(100), 80).exceeded);
        assert!(status(101, Some(100), 80).exceeded);
        assert!(!status(i64::MAX, None, 80).warning);
        assert!(status(i64::MAX, Some(i64::MAX), 100).warning);
    }

    #[test]
    fn limits_out_of_range_name_their_field() {
        let ok = QuotaLimits {
            storage_bytes: Some(1),
            repositories: None,
            warn_percent: 100,
        };
        assert_eq!(ok.check(), Ok(()));
        for (bad, field) in [
            (
                QuotaLimits {
                    storage_bytes: Some(0),
                    ..ok
                },
                "storage_bytes",
            ),
            (
                QuotaLimits {
                    repositories: Some(-3),
                    ..ok
                },
                "repositories",
            ),
            (
                QuotaLimits {
                    warn_percent: 0,
                    ..ok
                },
                "warn_percent",
            ),
            (
                QuotaLimits {
                    warn_percent: 101,
                    ..ok
                },
                "warn_percent",
            ),
        ] {
            assert_eq!(bad.check().unwrap_err().0, field);
        }
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(100 * 1024 * 1024), "100.0 MiB");
        assert_eq!(human_bytes(i64::MAX), "8.0 EiB");
    }
}
