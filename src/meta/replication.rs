//! Replication rules, their executions and each execution's tasks. A rule's definition is
//! kept as the JSON the registry checked (and parses again when it reads it); its trigger
//! and next cron time are columns, so that a push and the cron tick find their rules by
//! index. Creating an execution queues its job in the same transaction: an execution
//! recorded as queued always has a job to run it. A push's upload session to the remote is
//! kept while it is in flight, so a start that takes an execution over resumes it.

use serde::Serialize;

use super::{Meta, jobs::Job};
use crate::error::Result;

/// A stored rule.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RuleRow {
    /// The rule's name.
    pub name: String,
    /// The checked definition, as JSON.
    pub definition: String,
    /// When a cron rule is next queued (clock seconds).
    pub next_run_at: Option<i64>,
    /// Who saved it last.
    pub created_by: String,
    /// When it was first saved.
    pub created_at: i64,
    /// When it was last saved.
    pub updated_at: i64,
}

/// What an execution has done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct ReplicationCounters {
    /// Blob bytes sent to the destination (mounted and present blobs move none).
    pub bytes_moved: i64,
    /// Blobs uploaded.
    pub blobs_copied: i64,
    /// Blobs the destination already had.
    pub blobs_skipped: i64,
    /// Blobs linked on the destination by a cross-repository mount.
    pub blobs_mounted: i64,
    /// Manifests written to the destination.
    pub manifests_copied: i64,
    /// Manifests the destination already had (its tag at the same digest).
    pub manifests_skipped: i64,
    /// Tasks that failed.
    pub failed: i64,
}

/// A stored execution.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ExecutionRow {
    /// Its id.
    pub id: i64,
    /// The rule it runs.
    pub rule: String,
    /// What started it: `manual`, `on_push` or `cron`.
    pub trigger_kind: String,
    /// `queued`, `running`, `succeeded` or `failed`.
    pub state: String,
    /// When it was asked for.
    pub created_at: i64,
    /// When it (last) started.
    pub started_at: Option<i64>,
    /// When it ended.
    pub finished_at: Option<i64>,
    /// Starts so far (more than one after a crash resumed it).
    pub attempts: i64,
    /// What failed the whole run, if something did.
    pub error: Option<String>,
    /// Its log, a line per event.
    pub log: String,
    /// Its counters.
    #[sqlx(flatten)]
    pub counters: ReplicationCounters,
}

/// One task of an execution: a source reference and what became of it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct TaskRow {
    /// `registry/repository:tag` (or `@digest`) read.
    pub source: String,
    /// Where it went.
    pub destination: String,
    /// The manifest's digest, when known.
    pub digest: Option<String>,
    /// `copied`, `skipped` or `failed`.
    pub state: String,
    /// Blob bytes it moved.
    pub bytes: i64,
    /// Why it was skipped or failed, or what it copied.
    pub message: String,
}

const EXECUTION_COLUMNS: &str = "id, rule, trigger_kind, state, created_at, started_at, \
     finished_at, attempts, error, log, bytes_moved, blobs_copied, blobs_skipped, \
     blobs_mounted, manifests_copied, manifests_skipped, failed";

const RULE_COLUMNS: &str = "name, definition, next_run_at, created_by, created_at, updated_at";

impl Meta {
    /// Creates or replaces rule `name`; returns whether it was created.
    pub async fn put_replication_rule(
        &self,
        name: &str,
        definition: &str,
        trigger_kind: &str,
        next_run_at: Option<i64>,
        who: &str,
    ) -> Result<bool> {
        let now = self.now();
        let mut tx = self.writer.begin().await?;
        let existed: Option<String> =
            sqlx::query_scalar("SELECT name FROM replication_rules WHERE name = $1")
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
        sqlx::query(
            "INSERT INTO replication_rules \
             (name, definition, trigger_kind, next_run_at, created_by, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (name) DO UPDATE SET \
             definition = excluded.definition, trigger_kind = excluded.trigger_kind, \
             next_run_at = excluded.next_run_at, created_by = excluded.created_by, \
             updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(definition)
        .bind(trigger_kind)
        .bind(next_run_at)
        .bind(who)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(existed.is_none())
    }

    /// Rule `name`, if there is one.
    pub async fn replication_rule(&self, name: &str) -> Result<Option<RuleRow>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {RULE_COLUMNS} FROM replication_rules WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(&self.reader)
        .await?)
    }

    /// Every rule, by name.
    pub async fn replication_rules(&self) -> Result<Vec<RuleRow>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {RULE_COLUMNS} FROM replication_rules ORDER BY name"
        ))
        .fetch_all(&self.reader)
        .await?)
    }

    /// The rules a push starts.
    pub async fn on_push_replication_rules(&self) -> Result<Vec<RuleRow>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {RULE_COLUMNS} FROM replication_rules WHERE trigger_kind = 'on_push' \
             ORDER BY name"
        ))
        .fetch_all(&self.reader)
        .await?)
    }

    /// The cron rules due at `now`.
    pub async fn due_cron_replication_rules(&self, now: i64) -> Result<Vec<RuleRow>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {RULE_COLUMNS} FROM replication_rules WHERE trigger_kind = 'cron' \
             AND next_run_at <= $1 ORDER BY name"
        ))
        .bind(now)
        .fetch_all(&self.reader)
        .await?)
    }

    /// Moves cron rule `name` from `due` to `next` and queues an execution, in one
    /// transaction; `None` when another replica moved it first.
    pub async fn queue_cron_replication(
        &self,
        name: &str,
        due: i64,
        next: i64,
    ) -> Result<Option<i64>> {
        let mut tx = self.writer.begin().await?;
        let moved = sqlx::query(
            "UPDATE replication_rules SET next_run_at = $3 WHERE name = $1 AND next_run_at = $2",
        )
        .bind(name)
        .bind(due)
        .bind(next)
        .execute(&mut *tx)
        .await?;
        if moved.rows_affected() == 0 {
            return Ok(None);
        }
        let id = self.insert_execution(&mut tx, name, "cron").await?;
        tx.commit().await?;
        Ok(Some(id))
    }

    /// Deletes rule `name` (its executions stay as history); whether it existed.
    pub async fn delete_replication_rule(&self, name: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM replication_rules WHERE name = $1")
            .bind(name)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Records a queued execution of `rule` and queues the job that runs it; its id.
    pub async fn queue_replication(&self, rule: &str, trigger: &str) -> Result<i64> {
        let mut tx = self.writer.begin().await?;
        let id = self.insert_execution(&mut tx, rule, trigger).await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn insert_execution(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        rule: &str,
        trigger: &str,
    ) -> Result<i64> {
        let now = self.now();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO replication_executions (rule, trigger_kind, created_at) \
             VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(rule)
        .bind(trigger)
        .bind(now)
        .fetch_one(&mut **tx)
        .await?;
        super::jobs::insert_job(&mut **tx, &Job::Replicate { execution_id: id }, now, now).await?;
        Ok(id)
    }

    /// Marks execution `id` running and starts it afresh (counters zeroed, tasks of an
    /// earlier, interrupted start forgotten; its log kept); the execution as started.
    pub async fn start_replication(&self, id: i64) -> Result<Option<ExecutionRow>> {
        let mut tx = self.writer.begin().await?;
        sqlx::query("DELETE FROM replication_tasks WHERE execution_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let row: Option<ExecutionRow> = sqlx::query_as(&format!(
            "UPDATE replication_executions SET state = 'running', started_at = $2, \
             attempts = attempts + 1, bytes_moved = 0, blobs_copied = 0, blobs_skipped = 0, \
             blobs_mounted = 0, manifests_copied = 0, manifests_skipped = 0, failed = 0, \
             error = NULL, finished_at = NULL WHERE id = $1 RETURNING {EXECUTION_COLUMNS}"
        ))
        .bind(id)
        .bind(self.now())
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(row)
    }

    /// Records a task of execution `id` and the execution's counters and log so far.
    pub async fn record_replication_task(
        &self,
        id: i64,
        task: &TaskRow,
        counters: &ReplicationCounters,
        log: &str,
    ) -> Result<()> {
        let mut tx = self.writer.begin().await?;
        sqlx::query(
            "INSERT INTO replication_tasks \
             (execution_id, source, destination, digest, state, bytes, message, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(id)
        .bind(&task.source)
        .bind(&task.destination)
        .bind(&task.digest)
        .bind(&task.state)
        .bind(task.bytes)
        .bind(&task.message)
        .bind(self.now())
        .execute(&mut *tx)
        .await?;
        update_counters(&mut tx, id, counters, log, None).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The upload session execution `id` holds for blob `digest` of remote repository
    /// `destination`, if a start of it left one in flight.
    pub async fn replication_upload(
        &self,
        id: i64,
        destination: &str,
        digest: &str,
    ) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT location FROM replication_uploads \
             WHERE execution_id = $1 AND destination = $2 AND digest = $3",
        )
        .bind(id)
        .bind(destination)
        .bind(digest)
        .fetch_optional(&self.reader)
        .await?)
    }

    /// Keeps `location` as execution `id`'s upload session for blob `digest` of remote
    /// repository `destination`; `None` forgets it (the blob is complete).
    pub async fn keep_replication_upload(
        &self,
        id: i64,
        destination: &str,
        digest: &str,
        location: Option<&str>,
    ) -> Result<()> {
        let query = match location {
            Some(_) => {
                "INSERT INTO replication_uploads (execution_id, destination, digest, location) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (execution_id, destination, digest) \
                 DO UPDATE SET location = excluded.location"
            }
            None => {
                "DELETE FROM replication_uploads \
                 WHERE execution_id = $1 AND destination = $2 AND digest = $3"
            }
        };
        let mut query = sqlx::query(query).bind(id).bind(destination).bind(digest);
        if let Some(location) = location {
            query = query.bind(location);
        }
        query.execute(&self.writer).await?;
        Ok(())
    }

    /// Ends execution `id`: `succeeded` or `failed` (with `error` when the run as a whole
    /// failed), with its final counters and log.
    pub async fn finish_replication(
        &self,
        id: i64,
        state: &str,
        error: Option<&str>,
        counters: &ReplicationCounters,
        log: &str,
    ) -> Result<()> {
        let mut tx = self.writer.begin().await?;
        sqlx::query("DELETE FROM replication_uploads WHERE execution_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        update_counters(&mut tx, id, counters, log, Some((state, error, self.now()))).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Execution `id`.
    pub async fn replication_execution(&self, id: i64) -> Result<Option<ExecutionRow>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {EXECUTION_COLUMNS} FROM replication_executions WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.reader)
        .await?)
    }

    /// Executions (of `rule`, if given), newest first, with an id below `before`; `n` at most.
    pub async fn replication_executions(
        &self,
        rule: Option<&str>,
        before: i64,
        n: u32,
    ) -> Result<Vec<ExecutionRow>> {
        let filter = if rule.is_some() { "rule = $3 AND" } else { "" };
        let query = format!(
            "SELECT {EXECUTION_COLUMNS} FROM replication_executions \
             WHERE {filter} id < $1 ORDER BY id DESC LIMIT $2"
        );
        let mut query = sqlx::query_as(&query).bind(before).bind(i64::from(n));
        if let Some(rule) = rule {
            query = query.bind(rule);
        }
        Ok(query.fetch_all(&self.reader).await?)
    }

    /// The tasks of execution `id`, in the order they ended.
    pub async fn replication_tasks(&self, id: i64) -> Result<Vec<TaskRow>> {
        Ok(sqlx::query_as(
            "SELECT source, destination, digest, state, bytes, message FROM replication_tasks \
             WHERE execution_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(&self.reader)
        .await?)
    }
}

async fn update_counters(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: i64,
    c: &ReplicationCounters,
    log: &str,
    end: Option<(&str, Option<&str>, i64)>,
) -> Result<()> {
    let (state, error, finished_at) = match end {
        Some((state, error, at)) => (Some(state), error, Some(at)),
        None => (None, None, None),
    };
    sqlx::query(
        "UPDATE replication_executions SET bytes_moved = $2, blobs_copied = $3, \
         blobs_skipped = $4, blobs_mounted = $5, manifests_copied = $6, manifests_skipped = $7, \
         failed = $8, log = $9, state = COALESCE($10, state), error = COALESCE($11, error), \
         finished_at = COALESCE($12, finished_at) WHERE id = $1",
    )
    .bind(id)
    .bind(c.bytes_moved)
    .bind(c.blobs_copied)
    .bind(c.blobs_skipped)
    .bind(c.blobs_mounted)
    .bind(c.manifests_copied)
    .bind(c.manifests_skipped)
    .bind(c.failed)
    .bind(log)
    .bind(state)
    .bind(error)
    .bind(finished_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
