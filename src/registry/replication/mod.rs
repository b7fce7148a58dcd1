//! Replication: rules that copy images between this registry and a remote one, pushed
//! (this registry is the source) or pulled (the remote is). A rule names the remote and
//! its credentials (from the environment or a file, read when a run starts), which
//! repositories (a glob) and tags (a regex) it takes, the destination namespace, its
//! trigger (manual, on push, cron), whether it overrides tags the destination has at
//! another digest, whether it replicates deletes, and a bandwidth limit.
//!
//! Each run is an execution recorded in the index and run as a job of the queue
//! ([`super::jobs`]), so any replica runs it and one that dies mid-run is taken over when
//! its lease expires; the new start re-does the run, and what the destination already has
//! (HEAD) is not sent again.
//!
//! The copy of one tag: the source manifest is read (its digest checked); when the
//! destination's tag already has that digest it is skipped; an index's children are copied
//! first, by digest; each blob is asked for on the destination (HEAD), mounted from another
//! destination repository that has it, else uploaded in chunks, and a failed chunk is
//! retried with backoff from the offset the destination acknowledged. The upload session
//! in flight is kept in the index, so a start that takes a crashed run over sends only
//! what the destination does not acknowledge. The manifest goes
//! last, byte for byte. Referrers of what was copied (the OCI referrers API, its tag
//! fallback `sha256-<hex>`, and cosign's `sha256-<hex>.sig`/`.att`/`.sbom` tags) follow
//! their subject; a destination without the referrers API gets the fallback tag index.
//!
//! The remote is reached through [`crate::proxy::Remote`], the one client of other
//! registries; this module decides what is copied. Its rooms: `rules` (what a rule says,
//! checked, and its remote), `copy` (a run: both ends, tags, manifests, referrers, blobs),
//! `drift` (what differs, read without copying); here the API of rules and executions and
//! the start of a run.

mod copy;
mod drift;
mod rules;

use serde::Serialize;

use crate::{
    error::{Error, Result},
    meta::replication::{ExecutionRow, ReplicationCounters, TaskRow},
    oci::{RepoName, Tag},
    registry::Registry,
};
use copy::Run;
pub use drift::DriftEntry;
pub use rules::{FilterInput, RemoteInput, ReplicationRuleInput, ReplicationRuleView};
use rules::{checked, view};

/// An execution as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ExecutionView {
    /// Its id.
    pub id: i64,
    /// The rule it ran.
    pub rule: String,
    /// `manual`, `on_push` or `cron`.
    pub trigger: String,
    /// `queued`, `running`, `succeeded` or `failed`.
    pub state: String,
    /// When it was asked for, started (last) and ended (unix seconds).
    pub created_at: i64,
    /// When it (last) started.
    pub started_at: Option<i64>,
    /// When it ended.
    pub finished_at: Option<i64>,
    /// Starts (more than one when a replica took over an interrupted run).
    pub attempts: i64,
    /// What failed the whole run.
    pub error: Option<String>,
    /// What it did.
    #[serde(flatten)]
    pub counters: ReplicationCounters,
    /// Its tasks (on the single execution only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tasks: Option<Vec<TaskRow>>,
    /// Its log lines (on the single execution only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<Vec<String>>,
}

impl ExecutionView {
    fn of(row: ExecutionRow, tasks: Option<Vec<TaskRow>>) -> ExecutionView {
        let log = tasks
            .is_some()
            .then(|| row.log.lines().map(str::to_owned).collect());
        ExecutionView {
            id: row.id,
            rule: row.rule,
            trigger: row.trigger_kind,
            state: row.state,
            created_at: row.created_at,
            started_at: row.started_at,
            finished_at: row.finished_at,
            attempts: row.attempts,
            error: row.error,
            counters: row.counters,
            tasks,
            log,
        }
    }
}

impl Registry {
    /// Creates or replaces rule `name` after checking it; whether it was created, and the rule.
    pub async fn put_replication_rule(
        &self,
        name: &str,
        input: ReplicationRuleInput,
        who: &str,
    ) -> Result<(bool, ReplicationRuleView)> {
        let rule = input.check(name)?;
        let definition =
            serde_json::to_string(&rule.input).map_err(|e| Error::Internal(anyhow::anyhow!(e)))?;
        let next = rule.next_after(self.clock.now());
        let created = self
            .meta
            .put_replication_rule(name, &definition, &rule.input.trigger, next, who)
            .await?;
        let row = self
            .meta
            .replication_rule(name)
            .await?
            .ok_or(Error::NotFound)?;
        Ok((created, view(row)?))
    }

    /// Rule `name`.
    pub async fn replication_rule(&self, name: &str) -> Result<Option<ReplicationRuleView>> {
        self.meta
            .replication_rule(name)
            .await?
            .map(view)
            .transpose()
    }

    /// Every rule, by name.
    pub async fn replication_rules(&self) -> Result<Vec<ReplicationRuleView>> {
        self.meta
            .replication_rules()
            .await?
            .into_iter()
            .map(view)
            .collect()
    }

    /// Deletes rule `name`; whether it existed.
    pub async fn delete_replication_rule(&self, name: &str) -> Result<bool> {
        self.meta.delete_replication_rule(name).await
    }

    /// Queues a run of rule `name` (`trigger` says why); the execution's id.
    pub async fn run_replication_rule(&self, name: &str, trigger: &str) -> Result<i64> {
        if self.meta.replication_rule(name).await?.is_none() {
            return Err(Error::NotFound);
        }
        self.meta.queue_replication(name, trigger).await
    }

    /// Executions (of `rule`), newest first, below id `before`.
    pub async fn replication_executions(
        &self,
        rule: Option<&str>,
        before: i64,
        n: u32,
    ) -> Result<Vec<ExecutionView>> {
        Ok(self
            .meta
            .replication_executions(rule, before, n)
            .await?
            .into_iter()
            .map(|r| ExecutionView::of(r, None))
            .collect())
    }

    /// Execution `id` with its tasks and log.
    pub async fn replication_execution(&self, id: i64) -> Result<Option<ExecutionView>> {
        let Some(row) = self.meta.replication_execution(id).await? else {
            return Ok(None);
        };
        let tasks = self.meta.replication_tasks(id).await?;
        Ok(Some(ExecutionView::of(row, Some(tasks))))
    }

    /// Queues the runs of cron rules that are due (each once, whichever replica gets
    /// there first); the executions queued.
    pub async fn schedule_replications(&self) -> Result<Vec<i64>> {
        let now = self.clock.now();
        let mut queued = Vec::new();
        for row in self.meta.due_cron_replication_rules(now).await? {
            let (Some(due), Ok(rule)) = (row.next_run_at, checked(&row)) else {
                continue;
            };
            let Some(next) = rule.next_after(now) else {
                continue;
            };
            if let Some(id) = self
                .meta
                .queue_cron_replication(&row.name, due, next)
                .await?
            {
                queued.push(id);
            }
        }
        Ok(queued)
    }

    /// After a push of `tag` to `repo`: queues the on-push rules that take it. A failure is
    /// logged, never the push's.
    pub(super) async fn replicate_after_push(&self, repo: &RepoName, tag: &Tag) {
        let rules = match self.meta.on_push_replication_rules().await {
            Ok(rules) => rules,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the on-push replication rules");
                return;
            }
        };
        for row in rules {
            let Ok(rule) = checked(&row) else { continue };
            if rule.repositories.is_match(repo.as_str()) && rule.tags.is_match(tag.as_str()) {
                if let Err(e) = self.meta.queue_replication(&row.name, "on_push").await {
                    tracing::warn!(rule = row.name, error = %e, "could not queue a replication");
                }
            }
        }
    }

    /// Runs execution `id` (a job of the queue). The outcome is recorded on the execution;
    /// only a failure to record it fails the job.
    pub(super) async fn run_replication(&self, id: i64) -> Result<()> {
        let Some(execution) = self.meta.start_replication(id).await? else {
            return Ok(());
        };
        let mut run = Run::new(self, id, &execution.log);
        if execution.attempts > 1 {
            run.note(format!(
                "resumed (start {}): what the destination has is not sent again",
                execution.attempts
            ));
        }
        let outcome = match self.meta.replication_rule(&execution.rule).await? {
            None => Err(format!("rule {} no longer exists", execution.rule)),
            Some(row) => match checked(&row) {
                Err(e) => Err(format!("rule {}: {e}", row.name)),
                Ok(rule) => run.rule(&rule).await,
            },
        };
        let (state, error) = match &outcome {
            Ok(()) if run.counters.failed == 0 => ("succeeded", None),
            Ok(()) => (
                "failed",
                Some(format!("{} task(s) failed", run.counters.failed)),
            ),
            Err(e) => ("failed", Some(e.clone())),
        };
        if let Some(e) = &error {
            run.note(format!("failed: {e}"));
        } else {
            run.note("finished".into());
        }
        self.meta
            .finish_replication(
                id,
                state,
                error.as_deref(),
                &run.counters,
                &run.log.join("\n"),
            )
            .await?;
        let detail = serde_json::json!({
            "rule": execution.rule,
            "execution": id,
            "trigger": execution.trigger_kind,
            "state": state,
            "error": error,
            "counters": run.counters,
        });
        tracing::info!(
            rule = execution.rule,
            execution = id,
            state,
            "replication done"
        );
        self.replication_completed(None, None, &detail).await;
        Ok(())
    }
}
