//! The audit log: who did what to which target, newest first.

use super::Meta;
use crate::error::Result;

/// One audit entry.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct AuditRow {
    /// The entry's id (its order).
    pub id: i64,
    /// When it happened.
    pub at: i64,
    /// Who did it.
    pub actor: String,
    /// The client address, if known.
    pub client: Option<String>,
    /// What was done.
    pub action: String,
    /// What it was done to.
    pub target: Option<String>,
    /// More about it.
    pub detail: Option<String>,
}

impl Meta {
    /// Records that `actor` (from `client`) did `action` to `target`, now.
    pub async fn audit(
        &self,
        actor: &str,
        client: Option<&str>,
        action: &str,
        target: Option<&str>,
        detail: Option<&str>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit_log (at, actor, client, action, target, detail) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(self.now())
        .bind(actor)
        .bind(client)
        .bind(action)
        .bind(target)
        .bind(detail)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Audit entries newest first, with an id below `before` (0: from the newest).
    pub async fn audit_entries(&self, before: i64, n: u32) -> Result<Vec<AuditRow>> {
        Ok(sqlx::query_as(
            "SELECT id, at, actor, client, action, target, detail FROM audit_log \
             WHERE ($1 = 0 OR id < $1) ORDER BY id DESC LIMIT $2",
        )
        .bind(before)
        .bind(i64::from(n))
        .fetch_all(&self.reader)
        .await?)
    }
}
