//! Policies applied to the registry: saving, listing and deleting them, running one now or
//! when its cadence is due (each run recorded with what it removed and why), and bulk tag
//! deletion. Every delete re-checks in the index that the tag still points where it did.

use std::collections::HashSet;

use regex::Regex;
use serde::Serialize;

use super::{
    evaluate::{Removal, evaluate},
    rules::{Compiled, Policy, PolicyRules, RulesError, cadence_secs, compile},
};
use crate::{
    error::Error,
    meta::{
        gc::{GcCounts, GcRunRecord},
        policies::StoredPolicy,
    },
    oci::{Digest, RepoName, Tag},
    registry::Registry,
};

/// A saved policy.
#[derive(Debug, Clone, Serialize)]
pub struct SavedPolicy {
    /// Its name, unique.
    pub name: String,
    /// The policy as it was saved.
    #[serde(flatten)]
    pub policy: Policy,
    /// When it runs next (seconds since the epoch); `None` when disabled.
    pub next_run_at: Option<i64>,
    /// When it was first saved.
    pub created_at: i64,
    /// When it was last saved.
    pub updated_at: i64,
}

impl SavedPolicy {
    /// Its repository pattern and its rules, compiled. A stored policy was checked when it
    /// was saved, so one that no longer compiles is an internal error.
    fn compiled(&self) -> crate::error::Result<(Regex, Compiled)> {
        let invalid = |e: &dyn std::fmt::Display| {
            Error::Internal(anyhow::anyhow!(
                "stored policy {} is invalid: {e}",
                self.name
            ))
        };
        let (pattern, rules) = self.policy.check().map_err(|e| invalid(&e))?;
        let pattern = compile("repositories", &pattern).map_err(|e| invalid(&e))?;
        Ok((pattern, rules))
    }
}

/// What applying a policy to the registry did, or would do.
#[derive(Debug, Default, Serialize)]
pub struct PolicyOutcome {
    /// Nothing was deleted: the removals are a preview.
    pub dry_run: bool,
    /// What was (or would be) removed, repository by repository.
    pub removals: Vec<RepositoryRemoval>,
}

/// A removal, and the repository it was made in.
#[derive(Debug, Serialize)]
pub struct RepositoryRemoval {
    /// The repository's name.
    pub repository: String,
    /// What was removed, and why.
    #[serde(flatten)]
    pub removal: Removal,
}

impl Registry {
    /// Saves policy `name` (replacing one of that name), after checking every field.
    pub async fn put_policy(&self, name: &str, policy: Policy) -> Result<SavedPolicy, RulesError> {
        if name.is_empty()
            || name.len() > 128
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(RulesError::Invalid(
                "name: 1 to 128 letters, digits, '-', '_' or '.'".into(),
            ));
        }
        let (pattern, _) = policy.check()?;
        let rules = serde_json::to_string(&policy).map_err(|e| Error::Internal(e.into()))?;
        let stored = StoredPolicy {
            id: 0,
            name: name.to_owned(),
            pattern,
            enabled: policy.enabled,
            cadence: policy.cadence.clone(),
            rules,
            next_run_at: policy
                .enabled
                .then(|| self.clock.now() + cadence_secs(&policy.cadence)),
            created_at: 0,
            updated_at: 0,
        };
        self.meta.put_policy(&stored).await?;
        let saved = self.policies().await?.into_iter().find(|p| p.name == name);
        saved.ok_or_else(|| {
            RulesError::Registry(Error::Internal(anyhow::anyhow!("policy {name} vanished")))
        })
    }

    /// Every saved policy, in name order. A stored policy that does not read back is an
    /// error, never skipped: skipping would stop it running unnoticed.
    pub async fn policies(&self) -> crate::error::Result<Vec<SavedPolicy>> {
        self.meta
            .policies()
            .await?
            .into_iter()
            .map(|p| {
                let policy: Policy = serde_json::from_str(&p.rules).map_err(|e| {
                    Error::Internal(anyhow::anyhow!("stored policy {} is invalid: {e}", p.name))
                })?;
                Ok(SavedPolicy {
                    name: p.name,
                    policy,
                    next_run_at: p.next_run_at,
                    created_at: p.created_at,
                    updated_at: p.updated_at,
                })
            })
            .collect()
    }

    /// The saved policies whose repository pattern takes in at least one of `repositories`.
    pub async fn policies_applying_to(
        &self,
        repositories: &[&str],
    ) -> crate::error::Result<Vec<SavedPolicy>> {
        let mut applying = Vec::new();
        for saved in self.policies().await? {
            let (pattern, _) = saved.compiled()?;
            if repositories.iter().any(|name| pattern.is_match(name)) {
                applying.push(saved);
            }
        }
        Ok(applying)
    }

    /// Deletes policy `name`; `false` if there was none.
    pub async fn delete_policy(&self, name: &str) -> crate::error::Result<bool> {
        self.meta.delete_policy(name).await
    }

    /// Applies saved policy `name` now (or previews it), and records the run with what it
    /// removed and why. `None` if there is no such policy.
    pub async fn run_policy(
        &self,
        name: &str,
        dry_run: bool,
    ) -> crate::error::Result<Option<(PolicyOutcome, GcRunRecord)>> {
        let Some(saved) = self.policies().await?.into_iter().find(|p| p.name == name) else {
            return Ok(None);
        };
        let (pattern, rules) = saved.compiled()?;
        let run = self
            .meta
            .create_gc_run(&format!("policy:{name}"), dry_run, true)
            .await?;
        let mut outcome = PolicyOutcome {
            dry_run,
            removals: Vec::new(),
        };
        let mut counts = GcCounts::default();
        let mut failed = None;
        let actor = format!("policy:{name}");
        let mut after = 0;
        'repos: loop {
            let page = self.meta.repository_ids(after, 500).await?;
            for (_, repository) in &page {
                if !pattern.is_match(repository.as_str()) {
                    continue;
                }
                match self
                    .apply_rules(repository, &rules, dry_run, &actor, &mut counts)
                    .await
                {
                    Ok(removals) => outcome.removals.extend(removals.into_iter().map(|removal| {
                        RepositoryRemoval {
                            repository: repository.to_string(),
                            removal,
                        }
                    })),
                    Err(e) => {
                        counts.errors += 1;
                        failed = Some(e.to_string());
                        break 'repos;
                    }
                }
            }
            match page.last() {
                Some((id, _)) if page.len() == 500 => after = *id,
                _ => break,
            }
        }
        let report = serde_json::json!({
            "dry_run": dry_run,
            "policy": name,
            "items": outcome.removals,
            "errors": failed.iter().collect::<Vec<_>>(),
        });
        self.meta
            .finish_gc_run(run, &counts, failed.is_some(), &report)
            .await?;
        let record = self.meta.gc_run(run).await?.ok_or(Error::NotFound)?;
        Ok(Some((outcome, record)))
    }

    /// Runs the enabled policies whose cadence is due (each once, whichever replica first).
    pub async fn run_due_policies(&self) -> crate::error::Result<()> {
        let now = self.clock.now();
        for p in self.meta.policies().await? {
            if !p.enabled || p.next_run_at.is_some_and(|t| t > now) {
                continue;
            }
            let next = now + cadence_secs(&p.cadence);
            if self.meta.advance_policy(p.id, p.next_run_at, next).await? {
                self.run_policy(&p.name, false).await?;
            }
        }
        Ok(())
    }

    /// Bulk tag deletion with GitLab's filters (`name_regex_delete`, `keep_n`, `older_than`,
    /// `name_regex_keep`) in one repository; protected tags are never deleted here.
    pub async fn delete_tags_matching(
        &self,
        repo: &RepoName,
        rules: &PolicyRules,
        dry_run: bool,
        actor: &str,
    ) -> Result<Vec<Removal>, RulesError> {
        if rules.name_regex.is_none() {
            return Err(RulesError::Invalid(
                "name_regex_delete: required (\".*\" for every tag)".into(),
            ));
        }
        let compiled = match rules.compile() {
            Ok(c) => c,
            Err(RulesError::Pattern(mut p)) if p.field == "name_regex" => {
                p.field = "name_regex_delete".into();
                return Err(RulesError::Pattern(p));
            }
            Err(e) => return Err(e),
        };
        if self.meta.repository_id(repo).await?.is_none() {
            return Err(Error::NameUnknown.into());
        }
        let mut counts = GcCounts::default();
        Ok(self
            .apply_rules(repo, &compiled, dry_run, actor, &mut counts)
            .await?)
    }

    /// Evaluates `rules` on `repo` and, unless `dry_run`, removes what they select as `actor`:
    /// tags one by one if they still point where they did, whole images by digest. Tags
    /// matching the repository's protected patterns are kept.
    async fn apply_rules(
        &self,
        repo: &RepoName,
        rules: &Compiled,
        dry_run: bool,
        actor: &str,
        counts: &mut GcCounts,
    ) -> crate::error::Result<Vec<Removal>> {
        let tags = self.meta.tag_facts(repo).await?;
        let untagged = self.meta.untagged_facts(repo).await?;
        let protected = self.tag_rules(repo).await?.protected_patterns;
        let protected: Vec<Regex> = protected
            .iter()
            .filter_map(|p| compile("protected_patterns", p).ok())
            .collect();
        let is_protected = |t: &str| protected.iter().any(|r| r.is_match(t));
        let protected_digests: HashSet<&str> = tags
            .iter()
            .filter(|t| is_protected(t.name.as_str()))
            .map(|t| t.digest.as_str())
            .collect();
        let mut removals = evaluate(rules, &tags, &untagged, self.clock.now());
        removals.retain(|r| {
            !(r.tag.as_deref().is_some_and(is_protected)
                || (r.image && protected_digests.contains(r.digest.as_str())))
        });
        let mut done = Vec::new();
        let mut images_done: HashSet<String> = HashSet::new();
        for r in removals {
            let removed = if dry_run {
                true
            } else if r.image {
                if images_done.contains(&r.digest) {
                    true
                } else {
                    let digest: Digest = r
                        .digest
                        .parse()
                        .map_err(|_| Error::Internal(anyhow::anyhow!("bad digest")))?;
                    let gone = self
                        .meta
                        .delete_manifest(repo, &digest, Some(actor))
                        .await?;
                    if gone {
                        counts.manifests += 1;
                        images_done.insert(r.digest.clone());
                    }
                    gone
                }
            } else {
                match &r.tag {
                    Some(tag) => {
                        let tag: Tag = tag
                            .parse()
                            .map_err(|_| Error::Internal(anyhow::anyhow!("bad tag")))?;
                        let digest: Digest = r
                            .digest
                            .parse()
                            .map_err(|_| Error::Internal(anyhow::anyhow!("bad digest")))?;
                        self.meta
                            .delete_tag_if_at(repo, &tag, &digest, actor)
                            .await?
                    }
                    None => false,
                }
            };
            if removed {
                done.push(r);
            }
        }
        Ok(done)
    }
}
