//! Scanning policy: what a namespace or repository asks of its images (`scan_on_push`,
//! `block_severity`, `block_unscanned`, `only_fixable`), each setting inherited when unset
//! (repository over namespace over the registry's default), and the vulnerability allowlist.
//!
//! [`Registry::apply_scan_policy`] is the one judgement: an image whose findings (after the
//! allowlist and VEX suppressions) reach `block_severity` gets a `policy` quarantine, one that
//! does not loses it; a `manual` quarantine is never touched. It runs after every scan, after
//! a policy or allowlist change (for the images in its scope that have a scan), after a VEX
//! referrer is pushed or deleted, and for allowlist entries that expired, from the job
//! queue's tick. `block_unscanned` is checked live at pull ([`Registry::refuse_unscanned`]).

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::{Registry, exemptions::parse_openvex};
use crate::{
    auth::namespace_of,
    error::{Error, Result},
    meta::{
        manifests::StoredManifest,
        scan_policy::{
            AllowlistFilter, AllowlistRow, ImageScope, NewAllowlistEntry, PolicyRow, flag,
            stored_flag,
        },
    },
    oci::{Digest, Manifest, RepoName, manifest::Platform},
    scan::osv::Severity,
};

/// The largest OpenVEX document read, in bytes.
pub const VEX_READ_MAX: u64 = 1024 * 1024;

/// The four settings, as one namespace or repository stores them; `null` = inherited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ScanPolicy {
    /// Whether a pushed image is scanned at once.
    pub scan_on_push: Option<bool>,
    /// The lowest severity (`critical`, `high`, `medium`, `low`, `unknown`) of a finding that
    /// quarantines an image.
    #[schema(value_type = Option<String>)]
    pub block_severity: Option<Severity>,
    /// Whether an image without a successful scan is refused at pull.
    pub block_unscanned: Option<bool>,
    /// Whether only findings with a known fix count for `block_severity`.
    pub only_fixable: Option<bool>,
}

/// A change to a [`ScanPolicy`]: a field left out stays as it is, `null` makes it inherited.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanPolicyPatch {
    scan_on_push: Option<Option<bool>>,
    block_severity: Option<Option<Severity>>,
    block_unscanned: Option<Option<bool>>,
    only_fixable: Option<Option<bool>>,
}

/// The names of the policy's fields in a settings body.
pub const SCAN_POLICY_FIELDS: [&str; 4] = [
    "scan_on_push",
    "block_severity",
    "block_unscanned",
    "only_fixable",
];

/// A field of a settings body that is wrong: its name and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field's name.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

impl ScanPolicyPatch {
    /// Takes the policy's fields out of a settings body (leaving the others), checking each.
    pub fn take_from(body: &mut Map<String, Value>) -> Result<ScanPolicyPatch, FieldError> {
        let flag = |body: &mut Map<String, Value>, field: &'static str| match body.remove(field) {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(None)),
            Some(Value::Bool(b)) => Ok(Some(Some(b))),
            Some(other) => Err(FieldError {
                field,
                message: format!("{field}: expected true, false or null, not {other}"),
            }),
        };
        let block_severity = match body.remove("block_severity") {
            None => None,
            Some(Value::Null) => Some(None),
            Some(Value::String(name)) => {
                Some(Some(Severity::parse(&name).ok_or_else(|| FieldError {
                    field: "block_severity",
                    message: format!(
                        "block_severity: unknown severity {name:?}: critical, high, medium, \
                         low, unknown or null"
                    ),
                })?))
            }
            Some(other) => {
                return Err(FieldError {
                    field: "block_severity",
                    message: format!(
                        "block_severity: expected a severity name or null, not {other}"
                    ),
                });
            }
        };
        Ok(ScanPolicyPatch {
            scan_on_push: flag(body, "scan_on_push")?,
            block_severity,
            block_unscanned: flag(body, "block_unscanned")?,
            only_fixable: flag(body, "only_fixable")?,
        })
    }

    /// Whether the patch changes nothing.
    pub fn is_empty(&self) -> bool {
        *self == ScanPolicyPatch::default()
    }

    fn apply_to(&self, policy: &mut ScanPolicy) {
        if let Some(v) = self.scan_on_push {
            policy.scan_on_push = v;
        }
        if let Some(v) = self.block_severity {
            policy.block_severity = v;
        }
        if let Some(v) = self.block_unscanned {
            policy.block_unscanned = v;
        }
        if let Some(v) = self.only_fixable {
            policy.only_fixable = v;
        }
    }
}

/// A boolean setting in effect and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct EffectiveFlag {
    /// The value in effect.
    pub value: bool,
    /// `repository`, `namespace` or `registry` (the default).
    pub from: String,
}

/// `block_severity` in effect and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct EffectiveSeverity {
    /// The severity in effect; `null` = nothing is blocked.
    #[schema(value_type = Option<String>)]
    pub value: Option<Severity>,
    /// `repository`, `namespace` or `registry` (the default).
    pub from: String,
}

/// The policy in effect for a namespace's or repository's images.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct EffectiveScanPolicy {
    /// Whether pushed images are scanned.
    pub scan_on_push: EffectiveFlag,
    /// The lowest severity that quarantines.
    pub block_severity: EffectiveSeverity,
    /// Whether unscanned images are refused at pull.
    pub block_unscanned: EffectiveFlag,
    /// Whether only fixable findings count.
    pub only_fixable: EffectiveFlag,
}

/// A namespace's or repository's policy as stored, and in effect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ScanPolicySettings {
    /// The settings stored for this scope (`null` = inherited).
    #[serde(flatten)]
    pub stored: ScanPolicy,
    /// What applies, and where each value comes from.
    pub effective: EffectiveScanPolicy,
}

impl ScanPolicy {
    fn of_row(row: &PolicyRow) -> Result<ScanPolicy> {
        let block_severity = match &row.block_severity {
            None => None,
            Some(name) => Some(Severity::parse(name).ok_or_else(|| {
                Error::Internal(anyhow::anyhow!(
                    "stored block_severity {name:?} of {} {}",
                    row.kind,
                    row.scope
                ))
            })?),
        };
        Ok(ScanPolicy {
            scan_on_push: flag(row.scan_on_push),
            block_severity,
            block_unscanned: flag(row.block_unscanned),
            only_fixable: flag(row.only_fixable),
        })
    }

    fn row(&self, kind: &str, scope: &str) -> PolicyRow {
        PolicyRow {
            kind: kind.into(),
            scope: scope.into(),
            scan_on_push: stored_flag(self.scan_on_push),
            block_severity: self.block_severity.map(|s| s.as_str().to_owned()),
            block_unscanned: stored_flag(self.block_unscanned),
            only_fixable: stored_flag(self.only_fixable),
        }
    }
}

/// The scope of an allowlist entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowScope {
    /// Every image.
    Registry,
    /// The images of a namespace.
    Namespace(String),
    /// The images of a repository.
    Repository(RepoName),
    /// One image of a repository.
    Digest(RepoName, Digest),
}

impl AllowScope {
    /// The namespace whose maintainers manage entries of this scope; `None` for the registry
    /// (administrators).
    pub fn namespace(&self) -> Option<&str> {
        match self {
            AllowScope::Registry => None,
            AllowScope::Namespace(ns) => Some(ns),
            AllowScope::Repository(repo) | AllowScope::Digest(repo, _) => {
                Some(namespace_of(repo.as_str()))
            }
        }
    }

    fn stored(&self) -> (&'static str, String) {
        match self {
            AllowScope::Registry => ("registry", String::new()),
            AllowScope::Namespace(ns) => ("namespace", ns.clone()),
            AllowScope::Repository(repo) => ("repository", repo.to_string()),
            AllowScope::Digest(repo, digest) => ("digest", format!("{repo}@{digest}")),
        }
    }

    fn of_stored(kind: &str, value: &str) -> Result<AllowScope> {
        let bad = || Error::Internal(anyhow::anyhow!("stored allowlist scope {kind} {value:?}"));
        Ok(match kind {
            "registry" => AllowScope::Registry,
            "namespace" => AllowScope::Namespace(value.to_owned()),
            "repository" => AllowScope::Repository(value.parse().map_err(|_| bad())?),
            "digest" => {
                let (repo, digest) = value.split_once('@').ok_or_else(bad)?;
                AllowScope::Digest(
                    repo.parse().map_err(|_| bad())?,
                    digest.parse().map_err(|_| bad())?,
                )
            }
            _ => return Err(bad()),
        })
    }
}

/// An allowlist entry, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AllowlistEntry {
    /// The entry's id.
    pub id: i64,
    /// The advisory id or alias (a CVE id) accepted.
    pub vulnerability: String,
    /// `registry`, `namespace`, `repository` or `digest`.
    pub scope: String,
    /// The namespace (`namespace` scope).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The repository (`repository` and `digest` scopes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// The image's digest (`digest` scope).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// When it stops applying (unix seconds); `null` = never.
    pub expires_at: Option<i64>,
    /// Whether it has expired (and no longer applies).
    pub expired: bool,
    /// Why the vulnerability is accepted.
    pub reason: String,
    /// Who added the entry.
    pub author: String,
    /// When (unix seconds).
    pub created_at: i64,
}

/// A new allowlist entry, checked by the handler.
pub struct NewEntry<'a> {
    /// The advisory id or alias.
    pub vulnerability: &'a str,
    /// Where it applies.
    pub scope: AllowScope,
    /// Until when; `None` = never.
    pub expires_at: Option<i64>,
    /// Why.
    pub reason: &'a str,
    /// Who.
    pub author: &'a str,
}

impl Registry {
    /// The policy stored for namespace `ns` and the one in effect for its images.
    pub async fn namespace_scan_policy(&self, ns: &str) -> Result<ScanPolicySettings> {
        let rows = self.meta.scan_policy_rows("", ns).await?;
        let stored = self.stored_policy(&rows, "namespace")?;
        let effective = self.effective_of(None, Some(&stored));
        Ok(ScanPolicySettings { stored, effective })
    }

    /// The policy stored for repository `repo` and the one in effect for its images.
    pub async fn repository_scan_policy(&self, repo: &RepoName) -> Result<ScanPolicySettings> {
        let (stored, namespace) = self.policies_of(repo).await?;
        let effective = self.effective_of(Some(&stored), Some(&namespace));
        Ok(ScanPolicySettings { stored, effective })
    }

    /// Changes namespace `ns`'s policy by `patch`, then judges its scanned images again.
    pub async fn put_namespace_scan_policy(
        &self,
        ns: &str,
        patch: &ScanPolicyPatch,
    ) -> Result<ScanPolicySettings> {
        let rows = self.meta.scan_policy_rows("", ns).await?;
        let mut stored = self.stored_policy(&rows, "namespace")?;
        patch.apply_to(&mut stored);
        self.meta
            .put_scan_policy(&stored.row("namespace", ns))
            .await?;
        self.judge_again(ImageScope::Namespace(ns)).await;
        self.namespace_scan_policy(ns).await
    }

    /// Changes repository `repo`'s policy by `patch`, then judges its scanned images again.
    pub async fn put_repository_scan_policy(
        &self,
        repo: &RepoName,
        patch: &ScanPolicyPatch,
    ) -> Result<ScanPolicySettings> {
        let (mut stored, _) = self.policies_of(repo).await?;
        patch.apply_to(&mut stored);
        self.meta
            .put_scan_policy(&stored.row("repository", repo.as_str()))
            .await?;
        self.judge_again(ImageScope::Repository(repo.as_str()))
            .await;
        self.repository_scan_policy(repo).await
    }

    /// The policy in effect for the images of `repo`.
    pub async fn effective_scan_policy(&self, repo: &RepoName) -> Result<EffectiveScanPolicy> {
        let (stored, namespace) = self.policies_of(repo).await?;
        Ok(self.effective_of(Some(&stored), Some(&namespace)))
    }

    /// Judges image `digest` of `repo` by the policy in effect: quarantined (source
    /// `policy`) when its findings, after suppressions, reach `block_severity` (only fixable
    /// ones with `only_fixable`), released from a policy quarantine otherwise. A manual
    /// quarantine is left alone. Audit-logged when it changes something.
    pub async fn apply_scan_policy(&self, repo: &RepoName, digest: &Digest) -> Result<()> {
        let policy = self.effective_scan_policy(repo).await?;
        let reason = match policy.block_severity.value {
            None => None,
            Some(threshold) => match self.image_vulnerabilities(repo, digest, None).await {
                Ok(Some(found)) => {
                    let fixable_only = policy.only_fixable.value;
                    let blocking: Vec<_> = found
                        .items
                        .iter()
                        .filter(|v| v.severity >= threshold)
                        .filter(|v| !fixable_only || v.fixed_version.is_some())
                        .collect();
                    (!blocking.is_empty()).then(|| {
                        let mut ids: Vec<&str> = blocking.iter().map(|v| v.id.as_str()).collect();
                        ids.dedup();
                        let shown = ids.iter().take(5).copied().collect::<Vec<_>>().join(", ");
                        let more = if ids.len() > 5 { ", …" } else { "" };
                        format!(
                            "{} {}vulnerabilit{} at or above {threshold} ({shown}{more}); \
                             block_severity {threshold} of the {} scanning policy{}",
                            blocking.len(),
                            if fixable_only { "fixable " } else { "" },
                            if blocking.len() == 1 { "y" } else { "ies" },
                            policy.block_severity.from,
                            policy_scope(repo, &policy.block_severity.from),
                        )
                    })
                }
                Ok(None) | Err(Error::ManifestUnknown) => None,
                Err(e) => return Err(e),
            },
        };
        let target = format!("{repo}@{digest}");
        match reason {
            Some(reason) => {
                if let Some(created) = self.meta.policy_quarantine(repo, digest, &reason).await?
                    && created
                {
                    tracing::info!(%repo, %digest, %reason, "image quarantined by scanning policy");
                    self.audit_policy("image.quarantine", &target, repo, digest, Some(&reason))
                        .await;
                }
            }
            None => {
                if self.meta.release_policy_quarantine(repo, digest).await? {
                    tracing::info!(%repo, %digest, "image released by scanning policy");
                    self.audit_policy("image.release", &target, repo, digest, None)
                        .await;
                }
            }
        }
        Ok(())
    }

    /// [`Registry::apply_scan_policy`], a failure logged (the caller's own work is done).
    pub(super) async fn apply_scan_policy_logged(&self, repo: &RepoName, digest: &Digest) {
        if let Err(e) = self.apply_scan_policy(repo, digest).await {
            tracing::warn!(%repo, %digest, error = %e, "could not apply the scanning policy");
        }
    }

    /// For a manifest GET: refuses an image without a successful scan when the policy in
    /// effect has `block_unscanned` (a child of a scanned index counts as scanned; artifacts
    /// such as signatures and SBOMs, which are not scanned, are not refused).
    pub(super) async fn refuse_unscanned(
        &self,
        repo: &RepoName,
        manifest: &StoredManifest,
    ) -> Result<()> {
        // Read with the manifest: no query here unless a policy asks for a scan.
        if !manifest.block_unscanned {
            return Ok(());
        }
        let policy = self.effective_scan_policy(repo).await?;
        if !policy.block_unscanned.value {
            return Ok(());
        }
        let Ok(parsed) = Manifest::parse(&manifest.payload, Some(&manifest.media_type)) else {
            return Ok(());
        };
        // A cosign signature in the tag scheme has an image config but no filesystem layer.
        if !scannable(&parsed) || !crate::trust::is_runnable(&manifest.payload) {
            return Ok(());
        }
        if self
            .meta
            .has_successful_scan(manifest.repository_id, &manifest.digest)
            .await?
        {
            return Ok(());
        }
        Err(Error::Denied(format!(
            "image {} has no successful vulnerability scan yet; block_unscanned of the {} \
             scanning policy{} refuses unscanned images",
            manifest.digest,
            policy.block_unscanned.from,
            policy_scope(repo, &policy.block_unscanned.from),
        )))
    }

    /// Whether a pushed image of `repo` is scanned at once.
    pub(super) async fn scans_on_push(&self, repo: &RepoName) -> Result<bool> {
        Ok(self.effective_scan_policy(repo).await?.scan_on_push.value)
    }

    /// Adds an allowlist entry, then judges the images it covers again.
    pub async fn add_allowlist_entry(&self, entry: NewEntry<'_>) -> Result<AllowlistEntry> {
        let (kind, value) = entry.scope.stored();
        let row = self
            .meta
            .add_allowlist_entry(&NewAllowlistEntry {
                scope_kind: kind,
                scope_value: &value,
                vulnerability: entry.vulnerability,
                expires_at: entry.expires_at,
                reason: entry.reason,
                author: entry.author,
            })
            .await?;
        self.judge_scope(&entry.scope).await;
        self.allowlist_entry_of(row)
    }

    /// The allowlist entries passing `filter` with an id above `after`, oldest first, at
    /// most `n`.
    pub async fn allowlist(
        &self,
        filter: &AllowlistFilter,
        after: i64,
        n: u32,
    ) -> Result<Vec<AllowlistEntry>> {
        self.meta
            .allowlist(filter, after, i64::from(n))
            .await?
            .into_iter()
            .map(|row| self.allowlist_entry_of(row))
            .collect()
    }

    /// Allowlist entry `id`, with its scope, if there is one.
    pub async fn allowlist_entry(&self, id: i64) -> Result<Option<(AllowlistEntry, AllowScope)>> {
        let Some(row) = self.meta.allowlist_entry(id).await? else {
            return Ok(None);
        };
        let scope = AllowScope::of_stored(&row.scope_kind, &row.scope_value)?;
        Ok(Some((self.allowlist_entry_of(row)?, scope)))
    }

    /// Deletes allowlist entry `id`, then judges the images it covered again; the deleted
    /// entry, or `None` when there was none.
    pub async fn delete_allowlist_entry(&self, id: i64) -> Result<Option<AllowlistEntry>> {
        let Some(row) = self.meta.delete_allowlist_entry(id).await? else {
            return Ok(None);
        };
        let scope = AllowScope::of_stored(&row.scope_kind, &row.scope_value)?;
        self.judge_scope(&scope).await;
        self.allowlist_entry_of(row).map(Some)
    }

    /// Judges again the images of allowlist entries that expired since the last sweep (run
    /// from the job queue's tick); how many entries were handled.
    pub async fn sweep_expired_allowlist(&self) -> Result<usize> {
        let expired = self.meta.expired_allowlist_entries().await?;
        for row in &expired {
            let scope = AllowScope::of_stored(&row.scope_kind, &row.scope_value)?;
            self.judge_scope(&scope).await;
            self.meta.mark_allowlist_expiry_handled(row.id).await?;
            tracing::info!(entry = row.id, vulnerability = %row.vulnerability, "allowlist entry expired");
        }
        Ok(expired.len())
    }

    /// After a manifest push: stores the statements of an OpenVEX document pushed as a
    /// referrer, and judges its subject again. A document that cannot be read is kept as the
    /// artifact it is, with no statements, and a warning.
    pub(super) async fn record_vex(&self, repo: &RepoName, digest: &Digest, manifest: &Manifest) {
        let Some(subject) = &manifest.subject else {
            return;
        };
        if manifest.artifact_type.as_deref() != Some(super::exemptions::OPENVEX_MEDIA_TYPE) {
            return;
        }
        let statements = match self.read_vex(manifest).await {
            Ok(statements) => statements,
            Err(why) => {
                tracing::warn!(%repo, %digest, %why, "OpenVEX referrer yields no statements");
                return;
            }
        };
        if let Err(e) = self
            .meta
            .put_vex_statements(repo, digest, subject, &statements)
            .await
        {
            tracing::warn!(%repo, %digest, error = %e, "could not store VEX statements");
            return;
        }
        self.apply_scan_policy_logged(repo, subject).await;
    }

    /// The statements of the one layer of an OpenVEX referrer.
    async fn read_vex(
        &self,
        manifest: &Manifest,
    ) -> std::result::Result<Vec<crate::meta::scan_policy::NewVexStatement>, String> {
        let [layer] = manifest.layers.as_slice() else {
            return Err(format!("{} layers, not one", manifest.layers.len()));
        };
        if layer.size > VEX_READ_MAX {
            return Err(format!(
                "the document has {} bytes, more than {VEX_READ_MAX}",
                layer.size
            ));
        }
        let bytes = self
            .read_small_blob(&layer.digest)
            .await
            .map_err(|e| e.to_string())?;
        parse_openvex(&bytes).map_err(|e| e.to_string())
    }

    /// The subject of the VEX statements of manifest `digest` (before it is deleted), so
    /// that it can be judged again after.
    pub(super) async fn vex_subject_of(&self, repo: &RepoName, digest: &Digest) -> Option<Digest> {
        match self.meta.vex_subject_of(repo, digest).await {
            Ok(subject) => subject,
            Err(e) => {
                tracing::warn!(%repo, %digest, error = %e, "could not read a VEX referrer's subject");
                None
            }
        }
    }

    pub(super) async fn read_small_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        use futures::TryStreamExt;
        let stream = self.blobs.read(digest, None).await?;
        let bytes: Vec<u8> = stream.map_ok(|b| b.to_vec()).try_concat().await?;
        Ok(bytes)
    }

    fn allowlist_entry_of(&self, row: AllowlistRow) -> Result<AllowlistEntry> {
        let scope = AllowScope::of_stored(&row.scope_kind, &row.scope_value)?;
        let (namespace, repository, digest) = match &scope {
            AllowScope::Registry => (None, None, None),
            AllowScope::Namespace(ns) => (Some(ns.clone()), None, None),
            AllowScope::Repository(repo) => (None, Some(repo.to_string()), None),
            AllowScope::Digest(repo, digest) => {
                (None, Some(repo.to_string()), Some(digest.to_string()))
            }
        };
        let now = self.clock.now();
        Ok(AllowlistEntry {
            id: row.id,
            vulnerability: row.vulnerability,
            scope: row.scope_kind,
            namespace,
            repository,
            digest,
            expires_at: row.expires_at,
            expired: row.expires_at.is_some_and(|at| at <= now),
            reason: row.reason,
            author: row.author,
            created_at: row.created_at,
        })
    }

    /// Judges again the scanned images an allowlist entry of `scope` covers.
    async fn judge_scope(&self, scope: &AllowScope) {
        match scope {
            AllowScope::Registry => self.judge_again(ImageScope::Registry).await,
            AllowScope::Namespace(ns) => self.judge_again(ImageScope::Namespace(ns)).await,
            AllowScope::Repository(repo) => {
                self.judge_again(ImageScope::Repository(repo.as_str()))
                    .await
            }
            AllowScope::Digest(repo, digest) => self.apply_scan_policy_logged(repo, digest).await,
        }
    }

    /// Judges again every scanned image in `scope`; failures are logged.
    async fn judge_again(&self, scope: ImageScope<'_>) {
        let images = match self.meta.scanned_images(scope).await {
            Ok(images) => images,
            Err(e) => {
                tracing::warn!(?scope, error = %e, "could not list the images to judge again");
                return;
            }
        };
        for (repo, digest) in images {
            self.apply_scan_policy_logged(&repo, &digest).await;
        }
    }

    /// The stored policy of `repo` and of its namespace.
    async fn policies_of(&self, repo: &RepoName) -> Result<(ScanPolicy, ScanPolicy)> {
        let rows = self
            .meta
            .scan_policy_rows(repo.as_str(), namespace_of(repo.as_str()))
            .await?;
        Ok((
            self.stored_policy(&rows, "repository")?,
            self.stored_policy(&rows, "namespace")?,
        ))
    }

    fn stored_policy(&self, rows: &[PolicyRow], kind: &str) -> Result<ScanPolicy> {
        match rows.iter().find(|r| r.kind == kind) {
            Some(row) => ScanPolicy::of_row(row),
            None => Ok(ScanPolicy::default()),
        }
    }

    /// Each setting from the first scope that sets it: the repository, the namespace, else
    /// the registry's default (`scan.on_push` from the configuration; nothing blocked).
    fn effective_of(
        &self,
        repository: Option<&ScanPolicy>,
        namespace: Option<&ScanPolicy>,
    ) -> EffectiveScanPolicy {
        let scopes = [("repository", repository), ("namespace", namespace)];
        let pick = |get: &dyn Fn(&ScanPolicy) -> Option<bool>, default: bool| {
            scopes
                .iter()
                .find_map(|(from, p)| p.and_then(get).map(|v| (v, *from)))
                .map_or(
                    EffectiveFlag {
                        value: default,
                        from: "registry".into(),
                    },
                    |(value, from)| EffectiveFlag {
                        value,
                        from: from.into(),
                    },
                )
        };
        let block_severity = scopes
            .iter()
            .find_map(|(from, p)| p.and_then(|p| p.block_severity).map(|v| (v, *from)))
            .map_or(
                EffectiveSeverity {
                    value: None,
                    from: "registry".into(),
                },
                |(value, from)| EffectiveSeverity {
                    value: Some(value),
                    from: from.into(),
                },
            );
        EffectiveScanPolicy {
            scan_on_push: pick(&|p| p.scan_on_push, self.scan.on_push),
            block_severity,
            block_unscanned: pick(&|p| p.block_unscanned, false),
            only_fixable: pick(&|p| p.only_fixable, false),
        }
    }

    async fn audit_policy(
        &self,
        action: &str,
        target: &str,
        repo: &RepoName,
        digest: &Digest,
        reason: Option<&str>,
    ) {
        let detail = json!({
            "repository": repo.as_str(),
            "digest": digest.to_string(),
            "reason": reason,
            "source": "policy",
        })
        .to_string();
        if let Err(e) = self
            .meta
            .audit("policy", None, action, Some(target), Some(&detail))
            .await
        {
            tracing::warn!(error = %e, action, "could not write the audit log");
        }
    }
}

/// ` of namespace x` / ` of repository x/y`, naming the scope a setting comes from.
fn policy_scope(repo: &RepoName, from: &str) -> String {
    match from {
        "repository" => format!(" of repository {repo}"),
        "namespace" => format!(" of namespace {}", namespace_of(repo.as_str())),
        _ => String::new(),
    }
}

/// Whether a manifest is something the scanner reads: an index, or an image manifest with an
/// image config, that is no referrer (a signature, an SBOM, a VEX document).
pub(super) fn scannable(manifest: &Manifest) -> bool {
    let image = manifest.media_type.is_index()
        || manifest
            .config_media_type
            .as_deref()
            .is_some_and(Platform::is_image_config);
    image && manifest.subject.is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patch(body: Value) -> Result<ScanPolicyPatch, FieldError> {
        let Value::Object(mut map) = body else {
            panic!("an object")
        };
        ScanPolicyPatch::take_from(&mut map)
    }

    #[test]
    fn fields_left_out_stay_and_null_inherits() {
        let p = patch(json!({"block_severity": "high", "only_fixable": null})).unwrap();
        let mut policy = ScanPolicy {
            scan_on_push: Some(true),
            only_fixable: Some(true),
            ..ScanPolicy::default()
        };
        p.apply_to(&mut policy);
        assert_eq!(
            policy,
            ScanPolicy {
                scan_on_push: Some(true),
                block_severity: Some(Severity::High),
                block_unscanned: None,
                only_fixable: None,
            }
        );
    }

    #[test]
    fn bad_values_name_their_field() {
        let e = patch(json!({"block_severity": "severe"})).unwrap_err();
        assert_eq!(e.field, "block_severity");
        assert!(e.message.contains("\"severe\""), "{}", e.message);
        let e = patch(json!({"block_unscanned": "yes"})).unwrap_err();
        assert_eq!(e.field, "block_unscanned");
        let e = patch(json!({"block_severity": 3})).unwrap_err();
        assert_eq!(e.field, "block_severity");
    }
}
