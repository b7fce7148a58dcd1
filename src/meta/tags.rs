//! Tags: moving them (with a group commit), listing and deleting them, and the facts about
//! tags and untagged manifests that cleanup policies decide on.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use tokio::sync::oneshot;

use super::{
    Meta,
    manifests::point_tag,
    repositories::{lock_repository, lock_repository_id},
    webhooks,
};
use crate::{
    error::{Error, Result},
    oci::{Digest, RepoName, Tag},
};

/// Tag moves waiting for the next group commit, and the turn to run one. While one batch
/// commits, the moves that arrive queue up and go together in the next: a burst of tag PUTs
/// costs one write transaction per batch instead of one per tag.
#[derive(Default)]
pub(super) struct TagMoves {
    queue: Mutex<Vec<TagMove>>,
    turn: Arc<tokio::sync::Mutex<()>>,
}

/// One tag PUT of a manifest the repository holds, and where its outcome goes.
struct TagMove {
    repository_id: i64,
    manifest_id: i64,
    tag: Tag,
    may_move: bool,
    pushed: webhooks::PushedManifest,
    answer: oneshot::Sender<Result<bool>>,
}

/// A tag with what cleanup policies decide on.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TagFacts {
    /// The tag.
    pub name: Tag,
    /// The manifest it points at.
    pub digest: Digest,
    /// When the tag was first pushed.
    pub pushed_at: i64,
    /// When the tag last moved.
    pub updated_at: i64,
    /// When the manifest the tag points at was first pushed (ECR's image push time).
    pub manifest_pushed_at: i64,
    /// The manifest's id: its order of arrival, which breaks ties between equal times.
    pub manifest_id: i64,
    /// When the tag was last pulled, if ever.
    pub last_pulled_at: Option<i64>,
}

/// A manifest without tags, for ECR's `untagged` rules.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UntaggedFacts {
    /// The manifest.
    pub digest: Digest,
    /// Its id: its order of arrival.
    pub manifest_id: i64,
    /// When it was first pushed.
    pub pushed_at: i64,
    /// When it was last pulled, if ever.
    pub last_pulled_at: Option<i64>,
}

/// Whether the tag of move `m` points at another manifest now.
async fn points_elsewhere(tx: &mut sqlx::Transaction<'_, sqlx::Any>, m: &TagMove) -> Result<bool> {
    let current: Option<i64> =
        sqlx::query_scalar("SELECT manifest_id FROM tags WHERE repository_id = $1 AND name = $2")
            .bind(m.repository_id)
            .bind(m.tag.as_str())
            .fetch_optional(&mut **tx)
            .await?;
    Ok(current.is_some_and(|id| id != m.manifest_id))
}

impl Meta {
    /// Points `tag` at manifest `manifest_id` of `repository_id`, counts the push and queues
    /// the repository's review, in one transaction shared with the other moves that arrived
    /// meanwhile (see [`TagMoves`]). Returns false, changing nothing, when the tag points at
    /// another manifest and may not move (or the manifest is gone).
    pub(super) async fn move_tag(
        &self,
        repository_id: i64,
        manifest_id: i64,
        tag: &Tag,
        may_move: bool,
        pushed: webhooks::PushedManifest,
    ) -> Result<bool> {
        let (answer, mut outcome) = oneshot::channel();
        self.tag_moves
            .queue
            .lock()
            .expect("tag move queue")
            .push(TagMove {
                repository_id,
                manifest_id,
                tag: tag.clone(),
                may_move,
                pushed,
                answer,
            });
        loop {
            let turn = tokio::select! {
                biased;
                outcome = &mut outcome => {
                    return outcome.unwrap_or_else(|_| {
                        Err(Error::Internal(anyhow::anyhow!("a tag move's batch ended unanswered")))
                    });
                }
                turn = self.tag_moves.turn.clone().lock_owned() => turn,
            };
            let batch = std::mem::take(&mut *self.tag_moves.queue.lock().expect("tag move queue"));
            if batch.is_empty() {
                // The previous turn took this move too: its outcome is ready.
                continue;
            }
            // On a task of its own, so that a caller going away does not cancel the others.
            let meta = self.clone();
            let commit = tokio::spawn(async move {
                meta.commit_tag_moves(batch).await;
                drop(turn);
            });
            commit.await.ok();
        }
    }

    /// Applies `batch` in one transaction and answers each move; when that fails, each move
    /// again alone, so that one move's failure is its own.
    async fn commit_tag_moves(&self, mut batch: Vec<TagMove>) {
        // One order for every batch, so that concurrent batches (other replicas on
        // PostgreSQL) take their row locks in the same order.
        batch.sort_by(|a, b| {
            (a.repository_id, a.tag.as_str()).cmp(&(b.repository_id, b.tag.as_str()))
        });
        if batch.len() > 1 {
            match self.apply_tag_moves(&batch).await {
                Ok(moved) => {
                    for (m, moved) in batch.into_iter().zip(moved) {
                        m.answer.send(Ok(moved)).ok();
                    }
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, moves = batch.len(), "a batch of tag moves failed; applying them one by one")
                }
            }
        }
        for m in batch {
            let moved = self
                .apply_tag_moves(std::slice::from_ref(&m))
                .await
                .map(|moved| moved[0]);
            m.answer.send(moved).ok();
        }
    }

    /// The statements of `batch` in one transaction: each tag, then per repository one push
    /// count and one review. Returns whether each tag moved.
    async fn apply_tag_moves(&self, batch: &[TagMove]) -> Result<Vec<bool>> {
        let now = self.now();
        let mut tx = self.write_tx().await?;
        if self.postgres {
            // The repositories' row locks first, in id order, as every other writer of a
            // repository takes them (a push counts itself first; deletes lock the row):
            // taking the tags first and the repository last deadlocked against deletes
            // (a soak on PostgreSQL lost 37 of 400,000 operations to it).
            let mut ids: Vec<i64> = batch.iter().map(|m| m.repository_id).collect();
            ids.dedup();
            for id in ids {
                lock_repository_id(&mut tx, id).await?;
            }
        }
        let mut moved = Vec::with_capacity(batch.len());
        let mut pushes: BTreeMap<i64, i64> = BTreeMap::new();
        let subscribed = webhooks::any_subscription(&mut tx).await?;
        for m in batch {
            // A move the tag rules refuse changes nothing and tells no subscriber.
            if !m.may_move && points_elsewhere(&mut tx, m).await? {
                moved.push(false);
                continue;
            }
            // Before the move, so that a move of the tag is seen (the outbox, written in
            // this transaction, goes with it).
            if subscribed {
                let pushed = m.pushed.as_pushed();
                webhooks::push_events(&mut tx, m.repository_id, &pushed, Some(&m.tag), now).await?;
            }
            let done = point_tag(&mut tx, m.manifest_id, &m.tag, now, m.may_move).await?;
            if done {
                *pushes.entry(m.repository_id).or_default() += 1;
            }
            moved.push(done);
        }
        for (repository_id, n) in pushes {
            sqlx::query(
                "UPDATE repositories SET push_count = push_count + $3, last_push_at = $2 \
                 WHERE id = $1",
            )
            .bind(repository_id)
            .bind(now)
            .bind(n)
            .execute(&mut *tx)
            .await?;
            self.queue_review(&mut tx, repository_id, now).await?;
        }
        tx.commit().await?;
        Ok(moved)
    }

    /// Tags of `repository_id` after `last`, at most `n`, in the spec's lexical order
    /// (case-insensitive; tags equal but for case by their bytes).
    pub async fn list_tags(&self, repository_id: i64, last: &str, n: u32) -> Result<Vec<Tag>> {
        Ok(sqlx::query_scalar(
            "SELECT name FROM tags WHERE repository_id = $1 \
             AND (lower(name) > lower($2) OR (lower(name) = lower($2) AND name > $2)) \
             ORDER BY lower(name), name LIMIT $3",
        )
        .bind(repository_id)
        .bind(last)
        .bind(i64::from(n))
        .fetch_all(&self.reader)
        .await?)
    }

    /// Removes one tag; the manifest stays. Returns whether the tag existed.
    pub async fn delete_tag(
        &self,
        repo: &RepoName,
        tag: &Tag,
        actor: Option<&str>,
    ) -> Result<bool> {
        self.delete_in_repository(
            repo,
            "DELETE FROM tags WHERE repository_id = $1 AND name = $2",
            tag.as_str(),
            super::webhooks::Deleted::Tag,
            actor,
        )
        .await
    }

    /// Deletes tag `tag` of `repo` if it still points at `digest` (a policy `actor` decided
    /// on that).
    pub async fn delete_tag_if_at(
        &self,
        repo: &RepoName,
        tag: &Tag,
        digest: &Digest,
        actor: &str,
    ) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        let Some(repository_id) = lock_repository(&mut tx, repo).await? else {
            return Ok(false);
        };
        let now = self.now();
        super::webhooks::deleted_events(
            &mut tx,
            super::webhooks::Deleted::Tag,
            repository_id,
            repo,
            tag.as_str(),
            now,
            Some(actor),
        )
        .await?;
        let done = sqlx::query(
            "DELETE FROM tags WHERE repository_id = $1 AND name = $2 \
             AND manifest_id = (SELECT id FROM manifests WHERE repository_id = $1 AND digest = $3)",
        )
        .bind(repository_id)
        .bind(tag.as_str())
        .bind(digest.to_string())
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

    /// Every tag of `repo` with its manifest and times.
    pub async fn tag_facts(&self, repo: &RepoName) -> Result<Vec<TagFacts>> {
        Ok(sqlx::query_as(
            "SELECT t.name, m.digest, t.pushed_at, t.updated_at, m.pushed_at AS manifest_pushed_at, \
             t.last_pulled_at, m.id AS manifest_id \
             FROM tags t \
             JOIN manifests m ON m.id = t.manifest_id JOIN repositories r ON r.id = t.repository_id \
             WHERE r.name = $1 ORDER BY t.name",
        )
        .bind(repo.as_str())
        .fetch_all(&self.reader)
        .await?)
    }

    /// Manifests of `repo` without tags that are no child of an index of the repository.
    pub async fn untagged_facts(&self, repo: &RepoName) -> Result<Vec<UntaggedFacts>> {
        Ok(sqlx::query_as(
            "SELECT m.digest, m.pushed_at, m.last_pulled_at, m.id AS manifest_id FROM manifests m \
             JOIN repositories r ON r.id = m.repository_id WHERE r.name = $1 \
             AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.manifest_id = m.id) \
             AND NOT EXISTS (SELECT 1 FROM manifest_references mr JOIN manifests p ON p.id = mr.manifest_id \
                 WHERE mr.digest = m.digest AND mr.kind = 'manifest' AND p.repository_id = m.repository_id) \
             AND m.subject IS NULL ORDER BY m.digest",
        )
        .bind(repo.as_str())
        .fetch_all(&self.reader)
        .await?)
    }
}

/// The order of the management API's tag listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagSort {
    /// By name, in byte order.
    Name,
    /// Most recently pushed first, then by name.
    Pushed,
    /// Most recently pulled first (never pulled last), then by name.
    Pulled,
    /// Largest image first (its blobs, each once; an index's over its children), then by
    /// name.
    Size,
}

impl TagSort {
    /// The expression of `t` the order reads, descending (a constant for `Name`).
    fn key(self) -> &'static str {
        match self {
            // An expression, not a literal: a bare number in ORDER BY names a column.
            TagSort::Name => "CAST(0 AS BIGINT)",
            TagSort::Pushed => "t.updated_at",
            TagSort::Pulled => "COALESCE(t.last_pulled_at, -1)",
            TagSort::Size => super::images::SIZE_OF_M,
        }
    }
}

/// Where a page of the tag listing starts: after the tag with this sort value and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagCursor {
    /// The sort value of the last tag of the previous page (0 when sorted by name).
    pub key: i64,
    /// That tag's name.
    pub name: String,
}

/// A tag of the management API's listing.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TagRow {
    /// The tag.
    pub name: Tag,
    /// The manifest it points at.
    pub digest: Digest,
    /// When a push last pointed it at its manifest.
    pub updated_at: i64,
    /// When it was last pulled by name, if ever.
    pub last_pulled_at: Option<i64>,
    /// Bytes of the blobs of its manifest (an index's over its children), each once.
    pub size_bytes: i64,
}

impl TagRow {
    /// The value the listing's order `sort` reads, for the next page's cursor.
    pub fn sort_key(&self, sort: TagSort) -> i64 {
        match sort {
            TagSort::Name => 0,
            TagSort::Pushed => self.updated_at,
            TagSort::Pulled => self.last_pulled_at.unwrap_or(-1),
            TagSort::Size => self.size_bytes,
        }
    }
}

impl Meta {
    /// Tags of `repository_id` in `sort` order after `after`, at most `n`.
    pub async fn tag_listing(
        &self,
        repository_id: i64,
        sort: TagSort,
        after: Option<&TagCursor>,
        n: u32,
    ) -> Result<Vec<TagRow>> {
        let key = sort.key();
        let size = super::images::SIZE_OF_M;
        let sql = format!(
            "SELECT t.name, m.digest, t.updated_at, t.last_pulled_at, {size} AS size_bytes \
             FROM tags t \
             JOIN manifests m ON m.id = t.manifest_id WHERE t.repository_id = $1 \
             AND ($5 = 0 OR {key} < $2 OR ({key} = $2 AND t.name > $3)) \
             ORDER BY {key} DESC, t.name LIMIT $4"
        );
        let (cursor_key, cursor_name) = after.map_or((0, ""), |c| (c.key, c.name.as_str()));
        Ok(sqlx::query_as(&sql)
            .bind(repository_id)
            .bind(cursor_key)
            .bind(cursor_name)
            .bind(i64::from(n))
            .bind(i64::from(after.is_some()))
            .fetch_all(&self.reader)
            .await?)
    }
}
