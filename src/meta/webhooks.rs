//! Webhooks: subscriptions, and the outbox their deliveries are sent from.
//!
//! The outbox is written by the transaction that makes the change ([`push_events`],
//! [`deleted_events`], and `insert_event` for a scan's record, findings, signatures and a
//! run's record): one `INSERT … SELECT` over the subscriptions whose scope covers the
//! repository and whose events include the kind, so without a subscription nothing is
//! written, and a change that rolls back takes its events with it. Events without a
//! transaction of their own (a pull, a refused pull or push, a replication) are written on
//! their own ([`Meta::record_event`], [`Meta::record_pull`]); a manifest GET learns from its
//! own read whether any subscription wants it (`pull_sample_column`). Deliveries are sent
//! from queues: a (subscription, repository) of a subscription that sends one event at a
//! time, or a subscription that batches (`batch_max` above 1). A queue's rows are claimed
//! in order, only those before its first row that waits for its next attempt or is claimed
//! (its barrier), so a receiver sees a queue's events in order; a claimed row not sent is
//! handed back uncounted ([`Attempt::Released`]). Finished ones are deleted after the retention
//! ([`Meta::prune_deliveries`]).

use super::{IntBool, Meta};
use crate::{
    error::Result,
    oci::{Digest, RepoName, Tag},
    webhooks::EventKind,
};

/// Columns of an outbox row, in the order the `INSERT … SELECT`s give them.
const OUTBOX_COLUMNS: &str = "INSERT INTO webhook_deliveries (subscription_id, event_id, kind, \
     repository, digest, tag, media_type, size, previous_digest, occurred_at, next_attempt_at, \
     actor, detail)";

/// Deliveries whose outcome one statement records at most (its binds stay well under
/// SQLite's limit).
const FINISH_CHUNK: usize = 500;

/// The ids the due-rows query `sql` finds, binding `$1` now, `$2` the queues and `$3` the
/// rows of a one-at-a-time queue at most.
async fn due_ids<'e, E>(on: E, sql: &str, now: i64, queues: i64, chain_max: i64) -> Result<Vec<i64>>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    Ok(sqlx::query_scalar(sql)
        .bind(now)
        .bind(queues)
        .bind(chain_max)
        .fetch_all(on)
        .await?)
}

/// Claims a delivery: `$1` the owner, `$2` the lease's end; the attempt is counted.
const CLAIM: &str = "UPDATE webhook_deliveries SET lease_owner = $1, lease_until = $2, \
     attempts = attempts + 1";

/// The subscriptions that want an event: `$2` is the kind's LIKE pattern (`%,push,%`), `$3`
/// the repository, which the subscription's scope must cover (`*`, itself, or a prefix of
/// whole components).
const WANTED: &str = "s.events LIKE $2 AND (s.scope = '*' OR s.scope = $3 \
     OR substr($3, 1, length(s.scope) + 1) = s.scope || '/')";

/// A subscription as stored (the secret stays in the index: [`Meta::claim_deliveries`]
/// hands it to the sender only).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SubscriptionRow {
    /// Its id.
    pub id: i64,
    /// Where deliveries go.
    pub url: String,
    /// `*` or a repository-name prefix.
    pub scope: String,
    /// The kinds between commas: `,push,delete,`.
    pub events: String,
    /// The payload format's name.
    pub format: String,
    /// Whether a secret signs the deliveries.
    #[sqlx(try_from = "IntBool")]
    pub signed: bool,
    /// Extra headers, a JSON object of strings.
    pub headers: String,
    /// Who created it.
    pub created_by: String,
    /// When.
    pub created_at: i64,
    /// The share of pulls sent (0 < rate <= 1).
    pub pull_sample_rate: f64,
    /// Events sent in one request at most.
    pub batch_max: i64,
}

/// What a new subscription stores.
pub struct NewSubscription<'a> {
    /// Where deliveries go (checked by the caller).
    pub url: &'a str,
    /// `*` or a repository-name prefix.
    pub scope: &'a str,
    /// The kinds it wants.
    pub events: &'a [EventKind],
    /// The format's name.
    pub format: &'a str,
    /// The signing secret.
    pub secret: Option<&'a str>,
    /// Extra headers, as a JSON object.
    pub headers: &'a str,
    /// Who creates it.
    pub created_by: &'a str,
    /// The share of pulls sent (checked by the caller: 0 < rate <= 1).
    pub pull_sample_rate: f64,
    /// Events sent in one request at most (checked by the caller: at least 1).
    pub batch_max: i64,
}

/// One delivery of the log.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeliveryRow {
    /// Its id.
    pub id: i64,
    /// The subscription.
    pub subscription_id: i64,
    /// The event's stable id.
    pub event_id: String,
    /// The event's kind.
    pub kind: String,
    /// The repository.
    pub repository: String,
    /// The manifest concerned.
    pub digest: Option<String>,
    /// The tag concerned.
    pub tag: Option<String>,
    /// The manifest's media type.
    pub media_type: Option<String>,
    /// The manifest's size.
    pub size: Option<i64>,
    /// A moved tag's previous manifest.
    pub previous_digest: Option<String>,
    /// When the event happened.
    pub occurred_at: i64,
    /// `pending`, `delivered` or `dead`.
    pub state: String,
    /// Attempts so far.
    pub attempts: i64,
    /// When the next attempt is due (pending).
    pub next_attempt_at: i64,
    /// The receiver's last HTTP status.
    pub last_status: Option<i64>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When it was delivered or given up.
    pub finished_at: Option<i64>,
    /// Who did it, where known.
    pub actor: Option<String>,
    /// What else the kind tells (a JSON object).
    pub detail: Option<String>,
}

/// A delivery claimed for sending, with what the sender needs of its subscription.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClaimedDelivery {
    /// The delivery.
    #[sqlx(flatten)]
    pub delivery: DeliveryRow,
    /// The subscription's URL.
    pub url: String,
    /// Its format's name.
    pub format: String,
    /// Its signing secret.
    pub secret: Option<String>,
    /// Its extra headers (JSON object).
    pub headers: String,
    /// Events it takes in one request at most.
    pub batch_max: i64,
}

/// The columns of a [`DeliveryRow`] of `d`.
const DELIVERY_COLUMNS: &str = "d.id, d.subscription_id, d.event_id, d.kind, d.repository, \
     d.digest, d.tag, d.media_type, d.size, d.previous_digest, d.occurred_at, d.state, \
     d.attempts, d.next_attempt_at, d.last_status, d.last_error, d.finished_at, d.actor, d.detail";

/// The columns of a [`SubscriptionRow`] of `s`.
const SUBSCRIPTION_COLUMNS: &str = "s.id, s.url, s.scope, s.events, s.format, \
     CAST(CASE WHEN s.secret IS NULL THEN 0 ELSE 1 END AS BIGINT) AS signed, s.headers, s.created_by, \
     s.created_at, s.pull_sample_rate, s.batch_max";

/// The LIKE pattern that finds `kind` in a subscription's `events`.
fn wants(kind: EventKind) -> String {
    format!("%,{},%", kind.as_str())
}

/// A fresh event id.
fn event_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A manifest pushed, as its events tell it.
pub(super) struct Pushed<'a> {
    /// Its repository.
    pub repo: &'a RepoName,
    /// Its digest.
    pub digest: &'a Digest,
    /// Its media type.
    pub media_type: &'a str,
    /// Its size in bytes.
    pub size: i64,
    /// Who pushed it.
    pub actor: Option<&'a str>,
}

/// A pushed manifest owned, for the tag moves that wait for a group commit.
pub(super) struct PushedManifest {
    /// Its repository.
    pub repo: RepoName,
    /// Its digest.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// Its size in bytes.
    pub size: i64,
    /// Who pushed it.
    pub actor: Option<String>,
}

impl PushedManifest {
    /// As [`push_events`] takes it.
    pub(super) fn as_pushed(&self) -> Pushed<'_> {
        Pushed {
            repo: &self.repo,
            digest: &self.digest,
            media_type: &self.media_type,
            size: self.size,
            actor: self.actor.as_deref(),
        }
    }
}

/// Whether any webhook subscription exists: without one, no event is written, and a batch
/// of tag moves skips asking for each move.
pub(super) async fn any_subscription(tx: &mut sqlx::Transaction<'_, sqlx::Any>) -> Result<bool> {
    Ok(sqlx::query("SELECT 1 FROM webhook_subscriptions LIMIT 1")
        .fetch_optional(&mut **tx)
        .await?
        .is_some())
}

/// Records a push of `pushed` (tagged `tag`) of repository `repository_id` for the
/// subscriptions that want it, and, when `tag` points at another manifest now, that it moves;
/// run before the tag is moved. One statement either way: it runs in every push.
pub(super) async fn push_events(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    repository_id: i64,
    pushed: &Pushed<'_>,
    tag: Option<&Tag>,
    now: i64,
) -> Result<()> {
    // The actor is `$9` alone, `$12` beside the move.
    let push = |actor: &str| {
        format!(
            "SELECT s.id, $1, 'push', $3, $5, $6, $7, CAST($8 AS BIGINT), NULL, $4, $4, {actor}, \
               NULL \
             FROM webhook_subscriptions s WHERE {WANTED}"
        )
    };
    let Some(tag) = tag else {
        sqlx::query(&format!("{OUTBOX_COLUMNS} {} ORDER BY s.id", push("$9")))
            .bind(event_id())
            .bind(wants(EventKind::Push))
            .bind(pushed.repo.as_str())
            .bind(now)
            .bind(pushed.digest.to_string())
            .bind(None::<&str>)
            .bind(pushed.media_type)
            .bind(pushed.size)
            .bind(pushed.actor)
            .execute(&mut **tx)
            .await?;
        return Ok(());
    };
    // Rows are inserted in the order given: the push, then the move, subscription by
    // subscription (columns 3 and 1 of the union: kind, subscription).
    let sql = format!(
        "{OUTBOX_COLUMNS} {} UNION ALL \
         SELECT s.id, $9, 'tag_moved', $3, $5, t.name, $7, CAST($8 AS BIGINT), old.digest, $4, $4, \
           $12, NULL \
         FROM webhook_subscriptions s CROSS JOIN tags t JOIN manifests old ON old.id = t.manifest_id \
         WHERE t.repository_id = $10 AND t.name = $6 AND old.digest <> $5 AND s.events LIKE $11 \
           AND (s.scope = '*' OR s.scope = $3 OR substr($3, 1, length(s.scope) + 1) = s.scope || '/') \
         ORDER BY 3, 1",
        push("$12")
    );
    sqlx::query(&sql)
        .bind(event_id())
        .bind(wants(EventKind::Push))
        .bind(pushed.repo.as_str())
        .bind(now)
        .bind(pushed.digest.to_string())
        .bind(tag.as_str())
        .bind(pushed.media_type)
        .bind(pushed.size)
        .bind(event_id())
        .bind(repository_id)
        .bind(wants(EventKind::TagMoved))
        .bind(pushed.actor)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Records the deletion of manifest `digest` of repository `repository_id`; run before it.
async fn manifest_deleted_events(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    repository_id: i64,
    repo: &RepoName,
    digest: &str,
    now: i64,
    actor: Option<&str>,
) -> Result<()> {
    let sql = format!(
        "{OUTBOX_COLUMNS} SELECT s.id, $1, 'delete', $3, m.digest, NULL, m.media_type, m.size, \
           NULL, $4, $4, $7, NULL \
         FROM webhook_subscriptions s CROSS JOIN manifests m \
         WHERE m.repository_id = $5 AND m.digest = $6 AND {WANTED} ORDER BY s.id"
    );
    sqlx::query(&sql)
        .bind(event_id())
        .bind(wants(EventKind::Delete))
        .bind(repo.as_str())
        .bind(now)
        .bind(repository_id)
        .bind(digest)
        .bind(actor)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Records the deletion of tag `tag` of repository `repository_id`; run before it.
async fn tag_deleted_events(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    repository_id: i64,
    repo: &RepoName,
    tag: &str,
    now: i64,
    actor: Option<&str>,
) -> Result<()> {
    let sql = format!(
        "{OUTBOX_COLUMNS} SELECT s.id, $1, 'delete', $3, m.digest, t.name, m.media_type, m.size, \
           NULL, $4, $4, $7, NULL \
         FROM webhook_subscriptions s CROSS JOIN tags t JOIN manifests m ON m.id = t.manifest_id \
         WHERE t.repository_id = $5 AND t.name = $6 AND {WANTED} ORDER BY s.id"
    );
    sqlx::query(&sql)
        .bind(event_id())
        .bind(wants(EventKind::Delete))
        .bind(repo.as_str())
        .bind(now)
        .bind(repository_id)
        .bind(tag)
        .bind(actor)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// What a delete in a repository removes, for its events.
pub(super) enum Deleted {
    /// A manifest, by digest.
    Manifest,
    /// A tag, by name.
    Tag,
}

/// Records the deletion of `key` (a digest or a tag, as `deleted` says) of repository
/// `repository_id`; run before it.
pub(super) async fn deleted_events(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    deleted: Deleted,
    repository_id: i64,
    repo: &RepoName,
    key: &str,
    now: i64,
    actor: Option<&str>,
) -> Result<()> {
    match deleted {
        Deleted::Manifest => {
            manifest_deleted_events(tx, repository_id, repo, key, now, actor).await
        }
        Deleted::Tag => tag_deleted_events(tx, repository_id, repo, key, now, actor).await,
    }
}

/// An event of a kind other than a push, tag move or delete, as the outbox records it.
#[derive(Debug, Clone, Copy)]
pub struct NewEvent<'a> {
    /// What happened.
    pub kind: EventKind,
    /// The repository (empty for a registry-wide event: only `*` subscriptions get it).
    pub repository: &'a str,
    /// The manifest concerned.
    pub digest: Option<&'a str>,
    /// The tag concerned.
    pub tag: Option<&'a str>,
    /// The manifest's media type.
    pub media_type: Option<&'a str>,
    /// The manifest's size.
    pub size: Option<i64>,
    /// Who did it.
    pub actor: Option<&'a str>,
    /// What else it tells (a JSON object).
    pub detail: Option<&'a serde_json::Value>,
}

impl<'a> NewEvent<'a> {
    /// An event of `kind` in `repository` with nothing else known yet.
    pub fn new(kind: EventKind, repository: &'a str) -> NewEvent<'a> {
        NewEvent {
            kind,
            repository,
            digest: None,
            tag: None,
            media_type: None,
            size: None,
            actor: None,
            detail: None,
        }
    }
}

/// Records `event` for the subscriptions that want it (for a pull, only those whose
/// `pull_sample_rate` is above `draw`, a number in [0, 1) drawn once per pull; -1 for any
/// other kind): one `INSERT … SELECT` on `executor`, the transaction of the change where
/// there is one.
pub(super) async fn insert_event<'e, E>(
    executor: E,
    event: &NewEvent<'_>,
    draw: f64,
    now: i64,
) -> Result<u64>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let sql = format!(
        "{OUTBOX_COLUMNS} SELECT s.id, $1, $9, $3, $5, $6, $7, CAST($8 AS BIGINT), NULL, $4, $4, \
           $10, $11 \
         FROM webhook_subscriptions s WHERE {WANTED} AND s.pull_sample_rate > $12 ORDER BY s.id"
    );
    let done = sqlx::query(&sql)
        .bind(event_id())
        .bind(wants(event.kind))
        .bind(event.repository)
        .bind(now)
        .bind(event.digest)
        .bind(event.tag)
        .bind(event.media_type)
        .bind(event.size)
        .bind(event.kind.as_str())
        .bind(event.actor)
        .bind(event.detail.map(|d| d.to_string()))
        .bind(draw)
        .execute(executor)
        .await?;
    Ok(done.rows_affected())
}

/// The column a pull's read adds (repository name `$1`): the highest `pull_sample_rate` of
/// the subscriptions that want its pulls, NULL when none does, so a pull nobody subscribed
/// to costs no statement more.
pub(super) fn pull_sample_column() -> String {
    format!(
        "(SELECT MAX(s.pull_sample_rate) FROM webhook_subscriptions s \
          WHERE s.events LIKE '{}' AND (s.scope = '*' OR s.scope = $1 \
            OR substr($1, 1, length(s.scope) + 1) = s.scope || '/'))",
        wants(EventKind::Pull)
    )
}

/// How an attempt ended.
pub enum Attempt<'a> {
    /// It was not made: the claim ends and the attempt is not counted (a row behind a
    /// failure in its queue).
    Released,
    /// The receiver answered 2xx.
    Delivered {
        /// Its status.
        status: i64,
    },
    /// It did not: retried at `retry_at`, or `dead` without one.
    Failed {
        /// Its status, if it answered.
        status: Option<i64>,
        /// Why.
        error: &'a str,
        /// When to try again; `None` gives up.
        retry_at: Option<i64>,
    },
}

impl Meta {
    /// Stores a subscription; returns it.
    pub async fn insert_webhook(&self, new: &NewSubscription<'_>) -> Result<SubscriptionRow> {
        let events: String = new
            .events
            .iter()
            .fold(",".to_owned(), |acc, k| format!("{acc}{},", k.as_str()));
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO webhook_subscriptions (url, scope, events, format, secret, headers, \
               created_by, created_at, pull_sample_rate, batch_max) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
        )
        .bind(new.url)
        .bind(new.scope)
        .bind(events)
        .bind(new.format)
        .bind(new.secret)
        .bind(new.headers)
        .bind(new.created_by)
        .bind(self.now())
        .bind(new.pull_sample_rate)
        .bind(new.batch_max)
        .fetch_one(&self.writer)
        .await?;
        self.webhook_on(&self.writer, id)
            .await?
            .ok_or_else(|| crate::error::Error::Internal(anyhow::anyhow!("webhook {id} vanished")))
    }

    /// Subscription `id`.
    pub async fn webhook(&self, id: i64) -> Result<Option<SubscriptionRow>> {
        self.webhook_on(&self.reader, id).await
    }

    async fn webhook_on(&self, pool: &sqlx::AnyPool, id: i64) -> Result<Option<SubscriptionRow>> {
        let sql =
            format!("SELECT {SUBSCRIPTION_COLUMNS} FROM webhook_subscriptions s WHERE s.id = $1");
        Ok(sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?)
    }

    /// Subscriptions after id `after`, at most `n`, by id.
    pub async fn webhooks(&self, after: i64, n: u32) -> Result<Vec<SubscriptionRow>> {
        let sql = format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM webhook_subscriptions s WHERE s.id > $1 \
             ORDER BY s.id LIMIT $2"
        );
        Ok(sqlx::query_as(&sql)
            .bind(after)
            .bind(i64::from(n))
            .fetch_all(&self.reader)
            .await?)
    }

    /// Deletes subscription `id` and its deliveries; returns whether it existed.
    pub async fn delete_webhook(&self, id: i64) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM webhook_deliveries WHERE subscription_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("DELETE FROM webhook_subscriptions WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// Deliveries of subscription `id` older than delivery `before` (0: from the newest),
    /// newest first, at most `n`; only those in `state` when given.
    pub async fn webhook_deliveries(
        &self,
        id: i64,
        before: i64,
        state: Option<&str>,
        n: u32,
    ) -> Result<Vec<DeliveryRow>> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d WHERE d.subscription_id = $1 \
             AND ($2 = 0 OR d.id < $2) AND (CAST($3 AS TEXT) IS NULL OR d.state = $3) \
             ORDER BY d.id DESC LIMIT $4"
        );
        Ok(sqlx::query_as(&sql)
            .bind(id)
            .bind(before)
            .bind(state)
            .bind(i64::from(n))
            .fetch_all(&self.reader)
            .await?)
    }

    /// Queues delivery `delivery` of subscription `id` again as a new delivery of the same
    /// event (same event id), due now, at the end of its queue; returns the new delivery's
    /// id, `None` when there is no such delivery.
    pub async fn redeliver(&self, id: i64, delivery: i64) -> Result<Option<i64>> {
        let now = self.now();
        let sql = format!(
            "{OUTBOX_COLUMNS} SELECT subscription_id, event_id, kind, repository, digest, tag, \
               media_type, size, previous_digest, occurred_at, $3, actor, detail \
             FROM webhook_deliveries WHERE id = $1 AND subscription_id = $2 RETURNING id"
        );
        Ok(sqlx::query_scalar(&sql)
            .bind(delivery)
            .bind(id)
            .bind(now)
            .fetch_optional(&self.writer)
            .await?)
    }

    /// Claims due deliveries for `owner` for `lease_secs`, and counts the attempt: the due
    /// rows of up to `queues` queues, oldest queue first, each its rows in order up to the
    /// first that waits for its next attempt or is claimed (its barrier): up to `chain_max`
    /// of a (subscription, repository) queue of a subscription that sends one event at a
    /// time, up to `batch_max` of a batching subscription's queue. A claim whose owner died
    /// is due again when its lease ends. On PostgreSQL the subscriptions found are locked
    /// (skipping those another replica holds) until their rows are claimed, so two replicas
    /// never send parts of one queue at once. On SQLite the due rows are found by a reader
    /// first, so a round with nothing due never waits for the one writer (which pushes
    /// need), and the claim re-checks each row's lease: a row found due is still due, since
    /// rows are only ever added behind.
    pub async fn claim_deliveries(
        &self,
        owner: &str,
        lease_secs: i64,
        queues: i64,
        chain_max: i64,
    ) -> Result<Vec<ClaimedDelivery>> {
        let now = self.now();
        let lease = (owner, now + lease_secs, now);
        // The subscriptions' rows are locked for the claim, not for their foreign keys (a
        // push inserting deliveries does not wait).
        let lock = if self.postgres {
            " FOR NO KEY UPDATE OF s SKIP LOCKED"
        } else {
            ""
        };
        // `pending` is read once, through the pending rows' partial index (a join: SQLite
        // then never reads the finished rows the log keeps). A batching subscription's queue
        // is the subscription (`queue` empty), another's one per repository.
        let due = format!(
            "WITH pending AS (SELECT d.id, d.subscription_id, d.next_attempt_at, d.lease_until, \
                   CASE WHEN s.batch_max > 1 THEN '' ELSE d.repository END AS queue, \
                   CASE WHEN s.batch_max > 1 THEN s.batch_max ELSE CAST($3 AS BIGINT) END AS take \
                 FROM webhook_deliveries d JOIN webhook_subscriptions s ON s.id = d.subscription_id \
                 WHERE d.state = 'pending'{lock}), \
               barriers AS (SELECT subscription_id, queue, MIN(id) AS barrier FROM pending \
                 WHERE next_attempt_at > $1 OR lease_until >= $1 GROUP BY subscription_id, queue), \
               ready AS (SELECT p.id, p.subscription_id, p.queue, p.take, \
                 ROW_NUMBER() OVER (PARTITION BY p.subscription_id, p.queue ORDER BY p.id) AS n \
                 FROM pending p LEFT JOIN barriers b \
                   ON b.subscription_id = p.subscription_id AND b.queue = p.queue \
                 WHERE b.barrier IS NULL OR p.id < b.barrier), \
               heads AS (SELECT subscription_id, queue FROM ready WHERE n = 1 ORDER BY id LIMIT $2) \
             SELECT r.id FROM ready r \
               JOIN heads h ON h.subscription_id = r.subscription_id AND h.queue = r.queue \
             WHERE r.n <= r.take ORDER BY r.id"
        );
        let ids = if self.postgres {
            let mut tx = self.writer.begin().await?;
            let found = due_ids(&mut *tx, &due, now, queues, chain_max).await?;
            let ids = self.claim_found(&mut *tx, lease, &found).await?;
            tx.commit().await?;
            ids
        } else {
            let found = due_ids(&self.reader, &due, now, queues, chain_max).await?;
            self.claim_found(&self.writer, lease, &found).await?
        };
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS}, s.url, s.format, s.secret, s.headers, s.batch_max \
             FROM webhook_deliveries d JOIN webhook_subscriptions s ON s.id = d.subscription_id \
             WHERE d.id IN ({}) ORDER BY d.id",
            super::placeholders(1, ids.len())
        );
        let mut select = sqlx::query_as(&sql).persistent(false);
        for id in &ids {
            select = select.bind(id);
        }
        Ok(select.fetch_all(&self.writer).await?)
    }

    /// Claims the rows `found` due that are still pending and unclaimed.
    async fn claim_found<'e, E>(
        &self,
        on: E,
        (owner, until, now): (&str, i64, i64),
        found: &[i64],
    ) -> Result<Vec<i64>>
    where
        E: sqlx::Executor<'e, Database = sqlx::Any>,
    {
        if found.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "{CLAIM} WHERE id IN ({}) AND state = 'pending' \
             AND (lease_until IS NULL OR lease_until < $3) RETURNING id",
            super::placeholders(4, found.len())
        );
        let mut update = sqlx::query_scalar(&sql)
            .persistent(false)
            .bind(owner)
            .bind(until)
            .bind(now);
        for id in found {
            update = update.bind(id);
        }
        Ok(update.fetch_all(on).await?)
    }

    /// Records how the attempts at deliveries claimed by `owner` ended, in one transaction
    /// (the sender records a round's outcomes together, taking the writer once), with one
    /// statement per distinct outcome: a round's deliveries mostly end alike (delivered with
    /// the same status, or the deliveries of one batch with its one failure).
    pub async fn finish_deliveries(
        &self,
        owner: &str,
        attempts: &[(i64, Attempt<'_>)],
    ) -> Result<()> {
        let now = self.now();
        // (state, status, error, next attempt) -> the deliveries that ended so.
        type Outcome<'a> = (&'static str, Option<i64>, Option<&'a str>, Option<i64>);
        let mut outcomes: Vec<(Outcome<'_>, Vec<i64>)> = Vec::new();
        let mut released = Vec::new();
        for (id, attempt) in attempts {
            let outcome = match *attempt {
                Attempt::Released => {
                    released.push(*id);
                    continue;
                }
                Attempt::Delivered { status } => ("delivered", Some(status), None, None),
                Attempt::Failed {
                    status,
                    error,
                    retry_at: Some(at),
                } => ("pending", status, Some(error), Some(at)),
                Attempt::Failed {
                    status,
                    error,
                    retry_at: None,
                } => ("dead", status, Some(error), None),
            };
            match outcomes.iter_mut().find(|(o, _)| *o == outcome) {
                Some((_, ids)) => ids.push(*id),
                None => outcomes.push((outcome, vec![*id])),
            }
        }
        let mut tx = self.write_tx().await?;
        for ((state, status, error, next), ids) in &outcomes {
            for ids in ids.chunks(FINISH_CHUNK) {
                let sql = format!(
                    "UPDATE webhook_deliveries SET state = $2, last_status = $3, \
                       last_error = $4, next_attempt_at = COALESCE(CAST($5 AS BIGINT), next_attempt_at), \
                       lease_owner = NULL, lease_until = NULL, \
                       finished_at = CASE WHEN $2 = 'pending' THEN NULL ELSE CAST($6 AS BIGINT) END \
                     WHERE lease_owner = $1 AND id IN ({})",
                    super::placeholders(7, ids.len())
                );
                let mut update = sqlx::query(&sql)
                    .persistent(false)
                    .bind(owner)
                    .bind(*state)
                    .bind(*status)
                    .bind(*error)
                    .bind(*next)
                    .bind(now);
                for id in ids {
                    update = update.bind(id);
                }
                update.execute(&mut *tx).await?;
            }
        }
        for ids in released.chunks(FINISH_CHUNK) {
            let sql = format!(
                "UPDATE webhook_deliveries SET lease_owner = NULL, lease_until = NULL, \
                   attempts = attempts - 1 \
                 WHERE lease_owner = $1 AND state = 'pending' AND id IN ({})",
                super::placeholders(2, ids.len())
            );
            let mut update = sqlx::query(&sql).persistent(false).bind(owner);
            for id in ids {
                update = update.bind(id);
            }
            update.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records `event` (not a pull) for the subscriptions that want it, on its own.
    pub async fn record_event(&self, event: &NewEvent<'_>) -> Result<()> {
        insert_event(&self.writer, event, -1.0, self.now()).await?;
        Ok(())
    }

    /// Records a pull for the subscriptions that want pulls and whose sample rate is above
    /// `draw` (in [0, 1)); returns how many deliveries it queued.
    pub async fn record_pull(&self, event: &NewEvent<'_>, draw: f64) -> Result<u64> {
        insert_event(&self.writer, event, draw, self.now()).await
    }

    /// Deletes up to `limit` delivered or dead deliveries finished before `before`;
    /// returns how many.
    pub async fn prune_deliveries(&self, before: i64, limit: i64) -> Result<u64> {
        let done = sqlx::query(
            "DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM webhook_deliveries \
               WHERE state <> 'pending' AND finished_at < $1 ORDER BY finished_at LIMIT $2)",
        )
        .bind(before)
        .bind(limit)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected())
    }

    /// Deliveries not yet delivered nor dead (`berth_webhook_queue_depth`).
    pub async fn pending_deliveries(&self) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM webhook_deliveries WHERE state = 'pending'")
                .fetch_one(&self.reader)
                .await?,
        )
    }
}
