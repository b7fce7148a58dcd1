//! Cleanup policies as stored: what they match, their rules (JSON, read by
//! `registry::policies`), and when each runs next.

use super::{IntBool, Meta};
use crate::error::Result;

/// A cleanup policy as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredPolicy {
    /// The policy's id.
    pub id: i64,
    /// Its unique name.
    pub name: String,
    /// The repositories it applies to (a glob).
    pub pattern: String,
    /// Whether it runs.
    #[sqlx(try_from = "IntBool")]
    pub enabled: bool,
    /// How often it runs.
    pub cadence: String,
    /// Its rules, as JSON.
    pub rules: String,
    /// When it runs next, if scheduled.
    pub next_run_at: Option<i64>,
    /// When it was created.
    pub created_at: i64,
    /// When it last changed.
    pub updated_at: i64,
}

impl Meta {
    /// Creates or replaces the policy named `p.name`; returns its id.
    pub async fn put_policy(&self, p: &StoredPolicy) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "INSERT INTO cleanup_policies (name, pattern, enabled, cadence, rules, next_run_at, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
             ON CONFLICT (name) DO UPDATE SET pattern = excluded.pattern, enabled = excluded.enabled, \
             cadence = excluded.cadence, rules = excluded.rules, next_run_at = excluded.next_run_at, \
             updated_at = excluded.updated_at RETURNING id",
        )
        .bind(&p.name)
        .bind(&p.pattern)
        .bind(i64::from(p.enabled))
        .bind(&p.cadence)
        .bind(&p.rules)
        .bind(p.next_run_at)
        .bind(self.now())
        .fetch_one(&self.writer)
        .await?)
    }

    /// Every policy, by name.
    pub async fn policies(&self) -> Result<Vec<StoredPolicy>> {
        Ok(sqlx::query_as(
            "SELECT id, name, pattern, enabled, cadence, rules, next_run_at, created_at, updated_at \
             FROM cleanup_policies ORDER BY name",
        )
        .fetch_all(&self.reader)
        .await?)
    }

    /// Deletes policy `name`; returns whether it existed.
    pub async fn delete_policy(&self, name: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM cleanup_policies WHERE name = $1")
            .bind(name)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Moves policy `id`'s next run from `was` to `next`; false if another replica did first.
    pub async fn advance_policy(&self, id: i64, was: Option<i64>, next: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE cleanup_policies SET next_run_at = $3 WHERE id = $1 \
             AND COALESCE(next_run_at, -1) = COALESCE($2, -1)",
        )
        .bind(id)
        .bind(was)
        .bind(next)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() > 0)
    }
}
