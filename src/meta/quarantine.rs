//! Quarantines: manifests of a repository held back from pulls, one row per (repository,
//! manifest) with the reason, who set it, since when and from where (`manual` or `policy`).
//! A release deletes the row; the row goes with its manifest and its repository (the schema
//! cascades), so a deleted or collected manifest leaves nothing behind.

use super::Meta;
use crate::{
    error::Result,
    oci::{Digest, RepoName},
};

/// Where a quarantine comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuarantineSource {
    /// Set through the API by a person.
    Manual,
    /// Set by a repository's or namespace's scanning policy.
    Policy,
}

impl QuarantineSource {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            QuarantineSource::Manual => "manual",
            QuarantineSource::Policy => "policy",
        }
    }
}

/// One quarantine, as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct QuarantineRow {
    /// The quarantined manifest's digest.
    pub digest: Digest,
    /// Why it is held back.
    pub reason: String,
    /// `manual` or `policy`.
    pub source: String,
    /// Who set the current reason.
    pub quarantined_by: String,
    /// Since when the manifest is held back (unix seconds).
    pub quarantined_at: i64,
}

/// What [`Meta::quarantine`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Quarantined {
    /// The repository holds no such manifest; nothing changed.
    UnknownManifest,
    /// The manifest was not quarantined and now is.
    Created(QuarantineRow),
    /// The manifest was quarantined already: its reason, source and author were replaced
    /// (the time it has been held back since is kept).
    Updated(QuarantineRow),
}

/// The columns of a [`QuarantineRow`] of `q`.
const COLUMNS: &str = "q.digest, q.reason, q.source, q.quarantined_by, q.quarantined_at";
/// The same, as `RETURNING` names them.
const RETURNED: &str = "digest, reason, source, quarantined_by, quarantined_at";

impl Meta {
    /// Quarantines manifest `digest` of `repo` for `reason`, set by `by`, or replaces the
    /// reason of its quarantine.
    pub async fn quarantine(
        &self,
        repo: &RepoName,
        digest: &Digest,
        reason: &str,
        source: QuarantineSource,
        by: &str,
    ) -> Result<Quarantined> {
        let mut tx = self.write_tx().await?;
        let existed = quarantine_in(&mut *tx, repo, digest).await?.is_some();
        let sql = format!(
            "INSERT INTO quarantines (manifest_id, repository_id, digest, reason, source, \
               quarantined_by, quarantined_at) \
             SELECT m.id, m.repository_id, m.digest, $3, $4, $5, $6 FROM manifests m \
               JOIN repositories r ON r.id = m.repository_id \
             WHERE r.name = $1 AND m.digest = $2 \
             ON CONFLICT (manifest_id) DO UPDATE SET reason = excluded.reason, \
               source = excluded.source, quarantined_by = excluded.quarantined_by \
             RETURNING {RETURNED}"
        );
        let row: Option<QuarantineRow> = sqlx::query_as(&sql)
            .bind(repo.as_str())
            .bind(digest.to_string())
            .bind(reason)
            .bind(source.as_str())
            .bind(by)
            .bind(self.now())
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(match row {
            None => Quarantined::UnknownManifest,
            Some(row) if existed => Quarantined::Updated(row),
            Some(row) => Quarantined::Created(row),
        })
    }

    /// The quarantine of manifest `digest` of `repo`, if it is quarantined.
    pub async fn quarantine_of(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<QuarantineRow>> {
        quarantine_in(&self.reader, repo, digest).await
    }

    /// The quarantine of the manifest with row id `manifest_id`, if any (the manifest read
    /// names the row when it finds one).
    pub async fn quarantine_by_manifest(&self, manifest_id: i64) -> Result<Option<QuarantineRow>> {
        let sql = format!("SELECT {COLUMNS} FROM quarantines q WHERE q.manifest_id = $1");
        Ok(sqlx::query_as(&sql)
            .bind(manifest_id)
            .fetch_optional(&self.reader)
            .await?)
    }

    /// Releases manifest `digest` of `repo`; the released quarantine, or `None` when it was
    /// not quarantined.
    pub async fn release(&self, repo: &RepoName, digest: &Digest) -> Result<Option<QuarantineRow>> {
        let sql = format!(
            "DELETE FROM quarantines WHERE repository_id = \
               (SELECT r.id FROM repositories r WHERE r.name = $1) AND digest = $2 \
             RETURNING {RETURNED}"
        );
        Ok(sqlx::query_as(&sql)
            .bind(repo.as_str())
            .bind(digest.to_string())
            .fetch_optional(&self.writer)
            .await?)
    }
}

/// The quarantine of manifest `digest` of `repo`, read through `db`.
async fn quarantine_in<'e>(
    db: impl sqlx::Executor<'e, Database = sqlx::Any>,
    repo: &RepoName,
    digest: &Digest,
) -> Result<Option<QuarantineRow>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM quarantines q JOIN repositories r ON r.id = q.repository_id \
         WHERE r.name = $1 AND q.digest = $2"
    );
    Ok(sqlx::query_as(&sql)
        .bind(repo.as_str())
        .bind(digest.to_string())
        .fetch_optional(db)
        .await?)
}
