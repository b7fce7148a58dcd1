//! Scanning policy as stored: the policy rows of namespaces and repositories, the
//! vulnerability allowlist, the statements of OpenVEX referrers, and the `policy` quarantines
//! the policy sets and lifts (never a `manual` one). Read by `registry::scan_policy`.

use super::{Meta, in_namespace};
use crate::{
    error::Result,
    oci::{Digest, RepoName},
};

/// The scanning policy of one namespace or repository; `None` = inherited.
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct PolicyRow {
    /// `namespace` or `repository`.
    pub kind: String,
    /// The namespace's or repository's name.
    pub scope: String,
    /// Whether a pushed image is scanned (0/1).
    pub scan_on_push: Option<i64>,
    /// The lowest severity that quarantines an image.
    pub block_severity: Option<String>,
    /// Whether an image without a successful scan is refused at pull (0/1).
    pub block_unscanned: Option<i64>,
    /// Whether only findings with a known fix count for `block_severity` (0/1).
    pub only_fixable: Option<i64>,
}

/// A column for the manifest read of repository `$1` in namespace `$3`: whether images
/// without a successful scan are refused (1/0): the repository's setting, else its
/// namespace's, else not (the registry's default refuses nothing). Read with the manifest, so
/// a pull where no policy asks for a scan costs no query of its own.
pub(super) const BLOCK_UNSCANNED_COLUMN: &str = "COALESCE(\
     (SELECT block_unscanned FROM scan_policies WHERE kind = 'repository' AND scope = $1), \
     (SELECT block_unscanned FROM scan_policies WHERE kind = 'namespace' AND scope = $3), 0)";

/// Which images a policy change may affect.
#[derive(Debug, Clone, Copy)]
pub enum ImageScope<'a> {
    /// Every image.
    Registry,
    /// The images of the repositories of a namespace.
    Namespace(&'a str),
    /// The images of one repository.
    Repository(&'a str),
}

/// One allowlist entry.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AllowlistRow {
    /// The entry's id.
    pub id: i64,
    /// `registry`, `namespace`, `repository` or `digest`.
    pub scope_kind: String,
    /// The namespace, the repository, or `repository@digest`; empty for the registry.
    pub scope_value: String,
    /// The advisory id or alias accepted.
    pub vulnerability: String,
    /// When it stops applying (unix seconds); `None` = never.
    pub expires_at: Option<i64>,
    /// Why it is accepted.
    pub reason: String,
    /// Who added it.
    pub author: String,
    /// When it was added.
    pub created_at: i64,
}

/// An allowlist entry to add.
pub struct NewAllowlistEntry<'a> {
    /// `registry`, `namespace`, `repository` or `digest`.
    pub scope_kind: &'a str,
    /// The namespace, the repository, or `repository@digest`; empty for the registry.
    pub scope_value: &'a str,
    /// The advisory id or alias.
    pub vulnerability: &'a str,
    /// When it stops applying; `None` = never.
    pub expires_at: Option<i64>,
    /// Why.
    pub reason: &'a str,
    /// Who.
    pub author: &'a str,
}

/// The filters of the allowlist listing; `None` = any.
#[derive(Debug, Clone, Default)]
pub struct AllowlistFilter {
    /// Only entries of this scope kind.
    pub scope_kind: Option<String>,
    /// Only entries of this namespace (`namespace` scope).
    pub namespace: Option<String>,
    /// Only entries of this repository (`repository` scope, and `digest` scope for its
    /// images).
    pub repository: Option<String>,
    /// Only entries for this vulnerability.
    pub vulnerability: Option<String>,
}

/// One statement of an OpenVEX document about a subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewVexStatement {
    /// The vulnerability's name (`CVE-…`, an advisory id).
    pub vulnerability: String,
    /// `not_affected`, `affected`, `fixed` or `under_investigation`.
    pub status: String,
    /// The document's justification, if any.
    pub justification: Option<String>,
}

/// A stored VEX statement that suppresses a finding, with the referrer that carries it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct VexRow {
    /// The referrer's digest.
    pub referrer: Digest,
    /// The vulnerability named.
    pub vulnerability: String,
    /// `not_affected` or `fixed`.
    pub status: String,
    /// Why, if the document says.
    pub justification: Option<String>,
}

const POLICY_COLUMNS: &str =
    "kind, scope, scan_on_push, block_severity, block_unscanned, only_fixable";
const ALLOWLIST_COLUMNS: &str = "id, scope_kind, scope_value, vulnerability, expires_at, reason, \
     author, created_at";

impl Meta {
    /// The policy rows of repository `repo` and of namespace `namespace` (either may be
    /// missing).
    pub async fn scan_policy_rows(&self, repo: &str, namespace: &str) -> Result<Vec<PolicyRow>> {
        let sql = format!(
            "SELECT {POLICY_COLUMNS} FROM scan_policies \
             WHERE (kind = 'repository' AND scope = $1) OR (kind = 'namespace' AND scope = $2)"
        );
        Ok(sqlx::query_as(&sql)
            .bind(repo)
            .bind(namespace)
            .fetch_all(&self.reader)
            .await?)
    }

    /// Stores the policy `row` (replacing the scope's row); a row with every setting
    /// inherited is removed.
    pub async fn put_scan_policy(&self, row: &PolicyRow) -> Result<()> {
        let empty = row.scan_on_push.is_none()
            && row.block_severity.is_none()
            && row.block_unscanned.is_none()
            && row.only_fixable.is_none();
        if empty {
            sqlx::query("DELETE FROM scan_policies WHERE kind = $1 AND scope = $2")
                .bind(&row.kind)
                .bind(&row.scope)
                .execute(&self.writer)
                .await?;
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO scan_policies (kind, scope, scan_on_push, block_severity, \
               block_unscanned, only_fixable, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (kind, scope) DO UPDATE SET scan_on_push = excluded.scan_on_push, \
               block_severity = excluded.block_severity, \
               block_unscanned = excluded.block_unscanned, \
               only_fixable = excluded.only_fixable, updated_at = excluded.updated_at",
        )
        .bind(&row.kind)
        .bind(&row.scope)
        .bind(row.scan_on_push)
        .bind(row.block_severity.as_deref())
        .bind(row.block_unscanned)
        .bind(row.only_fixable)
        .bind(self.now())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// The images in `scope` that have a successful scan and are still stored, as
    /// (repository, digest).
    pub async fn scanned_images(&self, scope: ImageScope<'_>) -> Result<Vec<(RepoName, Digest)>> {
        let (filter, value) = match scope {
            ImageScope::Registry => ("", None),
            ImageScope::Namespace(ns) => {
                (concat!(" AND ", in_namespace!("r.name", "$1")), Some(ns))
            }
            ImageScope::Repository(name) => (" AND r.name = $1", Some(name)),
        };
        let sql = format!(
            "SELECT DISTINCT r.name, m.digest FROM scans s \
               JOIN repositories r ON r.id = s.repository_id \
               JOIN manifests m ON m.repository_id = s.repository_id \
                 AND m.digest = s.manifest_digest \
             WHERE s.status = 'ok'{filter} ORDER BY r.name, m.digest"
        );
        let mut query = sqlx::query_as(&sql);
        if let Some(value) = value {
            query = query.bind(value);
        }
        Ok(query.fetch_all(&self.reader).await?)
    }

    /// Whether manifest `digest` of repository `repository_id` has a successful scan, itself
    /// or as a child of an index of the repository that has one.
    pub async fn has_successful_scan(&self, repository_id: i64, digest: &Digest) -> Result<bool> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM scans s WHERE s.repository_id = $1 AND s.status = 'ok' \
               AND (s.manifest_digest = $2 OR s.manifest_digest IN \
                 (SELECT m.digest FROM manifest_references mr \
                    JOIN manifests m ON m.id = mr.manifest_id \
                  WHERE m.repository_id = $1 AND mr.digest = $2 AND mr.kind = 'manifest')) \
             LIMIT 1",
        )
        .bind(repository_id)
        .bind(digest.to_string())
        .fetch_optional(&self.reader)
        .await?;
        Ok(found.is_some())
    }

    /// Adds an allowlist entry; the stored row.
    pub async fn add_allowlist_entry(&self, e: &NewAllowlistEntry<'_>) -> Result<AllowlistRow> {
        let sql = format!(
            "INSERT INTO vulnerability_allowlist (scope_kind, scope_value, vulnerability, \
               expires_at, reason, author, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             RETURNING {ALLOWLIST_COLUMNS}"
        );
        Ok(sqlx::query_as(&sql)
            .bind(e.scope_kind)
            .bind(e.scope_value)
            .bind(e.vulnerability)
            .bind(e.expires_at)
            .bind(e.reason)
            .bind(e.author)
            .bind(self.now())
            .fetch_one(&self.writer)
            .await?)
    }

    /// The allowlist entries passing `filter` with an id above `after`, by id, at most `n`.
    pub async fn allowlist(
        &self,
        filter: &AllowlistFilter,
        after: i64,
        n: i64,
    ) -> Result<Vec<AllowlistRow>> {
        let sql = format!(
            "SELECT {ALLOWLIST_COLUMNS} FROM vulnerability_allowlist \
             WHERE id > $1 AND ($2 IS NULL OR scope_kind = $2) \
               AND ($3 IS NULL OR vulnerability = $3) \
               AND ($4 IS NULL OR (scope_kind = 'namespace' AND scope_value = $4)) \
               AND ($5 IS NULL OR (scope_kind = 'repository' AND scope_value = $5) \
                 OR (scope_kind = 'digest' AND substr(scope_value, 1, length($5) + 1) = $5 || '@')) \
             ORDER BY id LIMIT $6"
        );
        Ok(sqlx::query_as(&sql)
            .bind(after)
            .bind(filter.scope_kind.as_deref())
            .bind(filter.vulnerability.as_deref())
            .bind(filter.namespace.as_deref())
            .bind(filter.repository.as_deref())
            .bind(n)
            .fetch_all(&self.reader)
            .await?)
    }

    /// The allowlist entry `id`, if any.
    pub async fn allowlist_entry(&self, id: i64) -> Result<Option<AllowlistRow>> {
        let sql = format!("SELECT {ALLOWLIST_COLUMNS} FROM vulnerability_allowlist WHERE id = $1");
        Ok(sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(&self.reader)
            .await?)
    }

    /// Deletes allowlist entry `id`; the deleted row, or `None` when there was none.
    pub async fn delete_allowlist_entry(&self, id: i64) -> Result<Option<AllowlistRow>> {
        let sql = format!(
            "DELETE FROM vulnerability_allowlist WHERE id = $1 RETURNING {ALLOWLIST_COLUMNS}"
        );
        Ok(sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(&self.writer)
            .await?)
    }

    /// The entries applying now to image `digest` of `repo` (in namespace `namespace`):
    /// those of the registry, the namespace, the repository and the digest, not expired.
    pub async fn allowlist_for(
        &self,
        repo: &RepoName,
        namespace: &str,
        digest: &Digest,
    ) -> Result<Vec<AllowlistRow>> {
        let sql = format!(
            "SELECT {ALLOWLIST_COLUMNS} FROM vulnerability_allowlist \
             WHERE (scope_kind = 'registry' OR (scope_kind = 'namespace' AND scope_value = $1) \
                 OR (scope_kind = 'repository' AND scope_value = $2) \
                 OR (scope_kind = 'digest' AND scope_value = $3)) \
               AND (expires_at IS NULL OR expires_at > $4) ORDER BY id"
        );
        Ok(sqlx::query_as(&sql)
            .bind(namespace)
            .bind(repo.as_str())
            .bind(format!("{repo}@{digest}"))
            .bind(self.now())
            .fetch_all(&self.reader)
            .await?)
    }

    /// Entries that expired and whose images were not re-judged since.
    pub async fn expired_allowlist_entries(&self) -> Result<Vec<AllowlistRow>> {
        let sql = format!(
            "SELECT {ALLOWLIST_COLUMNS} FROM vulnerability_allowlist \
             WHERE expiry_handled = 0 AND expires_at IS NOT NULL AND expires_at <= $1 ORDER BY id"
        );
        Ok(sqlx::query_as(&sql)
            .bind(self.now())
            .fetch_all(&self.reader)
            .await?)
    }

    /// Marks the expiry of entry `id` handled.
    pub async fn mark_allowlist_expiry_handled(&self, id: i64) -> Result<()> {
        sqlx::query("UPDATE vulnerability_allowlist SET expiry_handled = 1 WHERE id = $1")
            .bind(id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// Stores the statements of the OpenVEX document carried by manifest `digest` of `repo`
    /// about `subject` (replacing any stored for it).
    pub async fn put_vex_statements(
        &self,
        repo: &RepoName,
        digest: &Digest,
        subject: &Digest,
        statements: &[NewVexStatement],
    ) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let ids: Option<(i64, i64)> = sqlx::query_as(
            "SELECT m.id, m.repository_id FROM manifests m \
               JOIN repositories r ON r.id = m.repository_id \
             WHERE r.name = $1 AND m.digest = $2",
        )
        .bind(repo.as_str())
        .bind(digest.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let Some((manifest_id, repository_id)) = ids else {
            return Ok(());
        };
        sqlx::query("DELETE FROM vex_statements WHERE manifest_id = $1")
            .bind(manifest_id)
            .execute(&mut *tx)
            .await?;
        for (seq, s) in statements.iter().enumerate() {
            sqlx::query(
                "INSERT INTO vex_statements (manifest_id, seq, repository_id, subject_digest, \
                   vulnerability, status, justification) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(manifest_id)
            .bind(seq as i64)
            .bind(repository_id)
            .bind(subject.to_string())
            .bind(&s.vulnerability)
            .bind(&s.status)
            .bind(s.justification.as_deref())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The VEX statements of `repo` about `subject` that suppress a finding (`not_affected`
    /// or `fixed`).
    pub async fn vex_suppressions(&self, repo: &RepoName, subject: &Digest) -> Result<Vec<VexRow>> {
        Ok(sqlx::query_as(
            "SELECT m.digest AS referrer, v.vulnerability, v.status, v.justification \
             FROM vex_statements v JOIN manifests m ON m.id = v.manifest_id \
               JOIN repositories r ON r.id = v.repository_id \
             WHERE r.name = $1 AND v.subject_digest = $2 \
               AND v.status IN ('not_affected', 'fixed') ORDER BY m.digest, v.seq",
        )
        .bind(repo.as_str())
        .bind(subject.to_string())
        .fetch_all(&self.reader)
        .await?)
    }

    /// The subject of the VEX statements carried by manifest `digest` of `repo`, if it
    /// carries any.
    pub async fn vex_subject_of(&self, repo: &RepoName, digest: &Digest) -> Result<Option<Digest>> {
        Ok(sqlx::query_scalar(
            "SELECT v.subject_digest FROM vex_statements v \
               JOIN manifests m ON m.id = v.manifest_id \
               JOIN repositories r ON r.id = m.repository_id \
             WHERE r.name = $1 AND m.digest = $2 LIMIT 1",
        )
        .bind(repo.as_str())
        .bind(digest.to_string())
        .fetch_optional(&self.reader)
        .await?)
    }

    /// Quarantines manifest `digest` of `repo` by policy for `reason`, unless it is
    /// quarantined by hand (a manual quarantine wins and is left as it is). `Some(true)` when
    /// newly quarantined, `Some(false)` when its policy reason was replaced, `None` when the
    /// manifest is gone or held by hand.
    pub async fn policy_quarantine(
        &self,
        repo: &RepoName,
        digest: &Digest,
        reason: &str,
    ) -> Result<Option<bool>> {
        let mut tx = self.write_tx().await?;
        let existing: Option<String> = sqlx::query_scalar(
            "SELECT q.source FROM quarantines q JOIN repositories r ON r.id = q.repository_id \
             WHERE r.name = $1 AND q.digest = $2",
        )
        .bind(repo.as_str())
        .bind(digest.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let outcome = match existing.as_deref() {
            Some("policy") => {
                sqlx::query(
                    "UPDATE quarantines SET reason = $3 WHERE source = 'policy' AND digest = $2 \
                       AND repository_id = (SELECT r.id FROM repositories r WHERE r.name = $1)",
                )
                .bind(repo.as_str())
                .bind(digest.to_string())
                .bind(reason)
                .execute(&mut *tx)
                .await?;
                Some(false)
            }
            Some(_) => None,
            None => {
                let done = sqlx::query(
                    "INSERT INTO quarantines (manifest_id, repository_id, digest, reason, source, \
                       quarantined_by, quarantined_at) \
                     SELECT m.id, m.repository_id, m.digest, $3, 'policy', 'policy', $4 \
                     FROM manifests m JOIN repositories r ON r.id = m.repository_id \
                     WHERE r.name = $1 AND m.digest = $2",
                )
                .bind(repo.as_str())
                .bind(digest.to_string())
                .bind(reason)
                .bind(self.now())
                .execute(&mut *tx)
                .await?;
                (done.rows_affected() > 0).then_some(true)
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }

    /// Lifts the `policy` quarantine of manifest `digest` of `repo` (a manual one stays);
    /// whether there was one.
    pub async fn release_policy_quarantine(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<bool> {
        let done = sqlx::query(
            "DELETE FROM quarantines WHERE source = 'policy' AND digest = $2 \
               AND repository_id = (SELECT r.id FROM repositories r WHERE r.name = $1)",
        )
        .bind(repo.as_str())
        .bind(digest.to_string())
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() > 0)
    }
}

/// A stored 0/1 setting as a boolean.
pub fn flag(value: Option<i64>) -> Option<bool> {
    value.map(|v| v != 0)
}

/// A boolean setting as stored.
pub fn stored_flag(value: Option<bool>) -> Option<i64> {
    value.map(i64::from)
}
