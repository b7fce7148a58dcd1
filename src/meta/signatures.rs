//! Trust policies and signature verification results. A policy row keeps its parts as
//! given (PEM texts as JSON arrays, notation's statement as JSON); the registry parses them.
//! A result row is one signature of a signature manifest (tag-scheme layer, bundle or
//! notation envelope) with the outcome of its last verification; the pull gate reads only
//! these rows.

use super::{
    Meta,
    webhooks::{NewEvent, insert_event},
};
use crate::{
    error::Result,
    oci::{Digest, RepoName},
    webhooks::EventKind,
};

/// A trust policy as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TrustPolicyRow {
    /// Its name.
    pub name: String,
    /// `*` or a repository-name prefix.
    pub scope: String,
    /// `enforce`, `audit` or `off`.
    pub mode: String,
    /// JSON array of PEM public keys.
    pub cosign_keys: String,
    /// notation's statement (JSON), if any.
    pub notation: Option<String>,
    /// JSON array of PEM certificates.
    pub trust_store: String,
    /// Who last wrote it.
    pub updated_by: String,
    /// When (unix seconds).
    pub updated_at: i64,
}

/// A verification result to store.
#[derive(Debug, Clone)]
pub struct NewSignature {
    /// The signature's index within its manifest (a cosign layer; 0 otherwise).
    pub layer: i64,
    /// The signed image.
    pub subject: Digest,
    /// `cosign-tag`, `cosign-bundle` or `notation-jws`.
    pub format: &'static str,
    /// `cosign` or `notation`.
    pub tool: &'static str,
    /// The key or certificate subject that signed, when verified.
    pub identity: Option<String>,
    /// Whether it verified.
    pub verified: bool,
    /// Why not.
    pub reason: Option<String>,
    /// The policy it was verified under.
    pub policy: Option<String>,
    /// When its certificate chain expires (unix seconds), if it has one.
    pub expires_at: Option<i64>,
}

/// A verification result as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SignatureRow {
    /// The signature manifest's digest.
    pub signature_digest: String,
    /// The signature's index within it.
    pub layer: i64,
    /// The signed image's digest.
    pub subject_digest: String,
    /// How it is carried.
    pub format: String,
    /// `cosign` or `notation`.
    pub tool: String,
    /// Who signed, when verified.
    pub identity: Option<String>,
    /// 1 when it verified.
    pub verified: i64,
    /// Why not.
    pub reason: Option<String>,
    /// The policy it was verified under.
    pub policy: Option<String>,
    /// When it was verified (unix seconds).
    pub verified_at: i64,
    /// When its certificate chain expires (unix seconds), if it has one.
    pub expires_at: Option<i64>,
}

/// A signature manifest to verify again.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredSignature {
    /// Its repository's name.
    pub repository: String,
    /// Its manifest row.
    pub manifest_id: i64,
    /// Its repository row.
    pub repository_id: i64,
    /// Its digest.
    pub digest: String,
    /// The image it signs.
    pub subject_digest: String,
}

/// What the pull gate needs to know of a manifest.
#[derive(Debug, Clone, Default)]
pub struct Gate {
    /// It is a signature manifest or a referrer: never held back.
    pub exempt: bool,
    /// A signature verified under the policy names it.
    pub verified: bool,
    /// Why its latest signature did not verify, when none did.
    pub reason: Option<String>,
}

/// Why a verified signature stopped counting at `expires_at`.
pub fn expired_reason(expires_at: i64) -> String {
    format!("its signing certificate chain expired at {expires_at} (unix seconds)")
}

const POLICY_COLUMNS: &str =
    "name, scope, mode, cosign_keys, notation, trust_store, updated_by, updated_at";

/// The condition "`scope` covers repository name `$1`", in both dialects.
const COVERS: &str =
    "(scope = '*' OR scope = $1 OR substr($1, 1, length(scope) + 1) = scope || '/')";

/// The most specific policy first, as [`Meta::trust_policy_for`] picks it.
const MOST_SPECIFIC: &str =
    "ORDER BY CASE WHEN scope = '*' THEN 0 ELSE length(scope) END DESC, name LIMIT 1";

/// A column for the manifest read of repository `$1`: the name of the trust policy covering
/// it when that policy checks pulls (mode other than `off`), else NULL. Read with the
/// manifest, so a pull where no policy checks signatures costs no query of its own.
pub(super) fn checking_policy_column() -> String {
    format!(
        "(SELECT CASE WHEN mode = 'off' THEN NULL ELSE name END FROM trust_policies \
          WHERE {COVERS} {MOST_SPECIFIC})"
    )
}

impl Meta {
    /// Creates or replaces trust policy `row.name`; true when it is new.
    pub async fn put_trust_policy(&self, row: &TrustPolicyRow) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        let existed: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM trust_policies WHERE name = $1")
                .bind(&row.name)
                .fetch_optional(&mut *tx)
                .await?;
        sqlx::query(
            "INSERT INTO trust_policies (name, scope, mode, cosign_keys, notation, trust_store, \
               updated_by, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (name) DO UPDATE SET scope = excluded.scope, mode = excluded.mode, \
               cosign_keys = excluded.cosign_keys, notation = excluded.notation, \
               trust_store = excluded.trust_store, updated_by = excluded.updated_by, \
               updated_at = excluded.updated_at",
        )
        .bind(&row.name)
        .bind(&row.scope)
        .bind(&row.mode)
        .bind(&row.cosign_keys)
        .bind(row.notation.as_deref())
        .bind(&row.trust_store)
        .bind(&row.updated_by)
        .bind(row.updated_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(existed.is_none())
    }

    /// Trust policy `name`.
    pub async fn trust_policy(&self, name: &str) -> Result<Option<TrustPolicyRow>> {
        let sql = format!("SELECT {POLICY_COLUMNS} FROM trust_policies WHERE name = $1");
        Ok(sqlx::query_as(&sql)
            .bind(name)
            .fetch_optional(&self.reader)
            .await?)
    }

    /// Every trust policy, by name.
    pub async fn trust_policies(&self) -> Result<Vec<TrustPolicyRow>> {
        let sql = format!("SELECT {POLICY_COLUMNS} FROM trust_policies ORDER BY name");
        Ok(sqlx::query_as(&sql).fetch_all(&self.reader).await?)
    }

    /// Deletes trust policy `name`; the deleted row.
    pub async fn delete_trust_policy(&self, name: &str) -> Result<Option<TrustPolicyRow>> {
        let sql = format!("DELETE FROM trust_policies WHERE name = $1 RETURNING {POLICY_COLUMNS}");
        Ok(sqlx::query_as(&sql)
            .bind(name)
            .fetch_optional(&self.writer)
            .await?)
    }

    /// The policy that decides for repository `repo`: of those whose scope covers it, the
    /// one with the longest scope (`*` last), by name among equals.
    pub async fn trust_policy_for(&self, repo: &str) -> Result<Option<TrustPolicyRow>> {
        let sql =
            format!("SELECT {POLICY_COLUMNS} FROM trust_policies WHERE {COVERS} {MOST_SPECIFIC}");
        Ok(sqlx::query_as(&sql)
            .bind(repo)
            .fetch_optional(&self.reader)
            .await?)
    }

    /// Replaces the results of signature manifest `manifest_id` (`signature`) of
    /// repository `repository_id` (`repo`) with `rows`, verified now, each with its
    /// `signature_verified` or `signature_failed` event (about the signed image).
    pub async fn replace_signatures(
        &self,
        manifest_id: i64,
        repository_id: i64,
        repo: &RepoName,
        signature: &Digest,
        rows: &[NewSignature],
    ) -> Result<()> {
        let now = self.now();
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM signatures WHERE manifest_id = $1")
            .bind(manifest_id)
            .execute(&mut *tx)
            .await?;
        for row in rows {
            sqlx::query(
                "INSERT INTO signatures (manifest_id, layer, repository_id, subject_digest, \
                   format, tool, identity, verified, reason, policy, verified_at, expires_at) \
                 SELECT m.id, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12 FROM manifests m \
                 WHERE m.id = $1",
            )
            .bind(manifest_id)
            .bind(row.layer)
            .bind(repository_id)
            .bind(row.subject.to_string())
            .bind(row.format)
            .bind(row.tool)
            .bind(row.identity.as_deref())
            .bind(i64::from(row.verified))
            .bind(row.reason.as_deref())
            .bind(row.policy.as_deref())
            .bind(self.now())
            .bind(row.expires_at)
            .execute(&mut *tx)
            .await?;
            let kind = if row.verified {
                EventKind::SignatureVerified
            } else {
                EventKind::SignatureFailed
            };
            let detail = serde_json::json!({
                "signature": signature.to_string(), "layer": row.layer, "tool": row.tool,
                "format": row.format, "identity": row.identity, "reason": row.reason,
                "policy": row.policy,
            });
            let subject = row.subject.to_string();
            let event = NewEvent {
                digest: Some(&subject),
                detail: Some(&detail),
                ..NewEvent::new(kind, repo.as_str())
            };
            insert_event(&mut *tx, &event, -1.0, now).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The signatures of image `subject` of `repo`, newest first.
    pub async fn signatures_of(
        &self,
        repo: &RepoName,
        subject: &Digest,
    ) -> Result<Vec<SignatureRow>> {
        Ok(sqlx::query_as(
            "SELECT m.digest AS signature_digest, s.layer, s.subject_digest, s.format, s.tool, \
               s.identity, s.verified, s.reason, s.policy, s.verified_at, s.expires_at \
             FROM signatures s JOIN manifests m ON m.id = s.manifest_id \
             JOIN repositories r ON r.id = s.repository_id \
             WHERE r.name = $1 AND s.subject_digest = $2 \
             ORDER BY m.pushed_at DESC, m.digest, s.layer",
        )
        .bind(repo.as_str())
        .bind(subject.to_string())
        .fetch_all(&self.reader)
        .await?)
    }

    /// The signatures of images `subjects` of repository `repository_id`, newest first (for
    /// the listings' signed status: one query per page).
    pub async fn signatures_of_images(
        &self,
        repository_id: i64,
        subjects: &[&Digest],
    ) -> Result<Vec<SignatureRow>> {
        if subjects.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT m.digest AS signature_digest, s.layer, s.subject_digest, s.format, s.tool, \
               s.identity, s.verified, s.reason, s.policy, s.verified_at, s.expires_at \
             FROM signatures s JOIN manifests m ON m.id = s.manifest_id \
             WHERE s.repository_id = $1 AND s.subject_digest IN ({}) \
             ORDER BY m.pushed_at DESC, m.digest, s.layer",
            super::placeholders(2, subjects.len())
        );
        let mut select = sqlx::query_as(&sql).persistent(false).bind(repository_id);
        for subject in super::digest_texts(subjects.iter().copied()) {
            select = select.bind(subject);
        }
        Ok(select.fetch_all(&self.reader).await?)
    }

    /// The signature manifests of the repositories `scope` covers (`*`: all).
    pub async fn signatures_under(&self, scope: &str) -> Result<Vec<StoredSignature>> {
        let covers = "($1 = '*' OR r.name = $1 OR substr(r.name, 1, length($1) + 1) = $1 || '/')";
        let sql = format!(
            "SELECT DISTINCT r.name AS repository, s.manifest_id, s.repository_id, \
               m.digest, s.subject_digest \
             FROM signatures s JOIN manifests m ON m.id = s.manifest_id \
             JOIN repositories r ON r.id = s.repository_id WHERE {covers} \
             ORDER BY s.manifest_id"
        );
        Ok(sqlx::query_as(&sql)
            .bind(scope)
            .fetch_all(&self.reader)
            .await?)
    }

    /// What the pull gate needs of manifest row `manifest_id` (digest `digest`) of
    /// repository `repository_id` under policy `policy`. A platform manifest counts as
    /// signed when an index of the repository listing it is (cosign signs the index).
    pub async fn signature_gate(
        &self,
        repository_id: i64,
        manifest_id: i64,
        digest: &Digest,
        policy: &str,
    ) -> Result<Gate> {
        let exempt: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM manifests m WHERE m.id = $1 AND (m.subject IS NOT NULL \
               OR EXISTS (SELECT 1 FROM signatures s WHERE s.manifest_id = m.id))",
        )
        .bind(manifest_id)
        .fetch_optional(&self.reader)
        .await?;
        if exempt.is_some() {
            return Ok(Gate {
                exempt: true,
                ..Gate::default()
            });
        }
        let now = self.now();
        let best: Option<(i64, Option<String>, Option<i64>)> = sqlx::query_as(
            "SELECT s.verified, s.reason, s.expires_at FROM signatures s \
             JOIN manifests m ON m.id = s.manifest_id \
             WHERE s.repository_id = $1 AND s.policy = $3 AND (s.subject_digest = $2 \
               OR s.subject_digest IN (SELECT p.digest FROM manifest_references mr \
                 JOIN manifests p ON p.id = mr.manifest_id \
                 WHERE mr.digest = $2 AND mr.kind = 'manifest' AND p.repository_id = $1)) \
             ORDER BY CASE WHEN s.verified = 1 AND (s.expires_at IS NULL OR s.expires_at > $4) \
               THEN 1 ELSE 0 END DESC, s.verified DESC, m.pushed_at DESC, s.verified_at DESC \
             LIMIT 1",
        )
        .bind(repository_id)
        .bind(digest.to_string())
        .bind(policy)
        .bind(now)
        .fetch_optional(&self.reader)
        .await?;
        Ok(match best {
            Some((verified, _, Some(expires_at))) if verified != 0 && expires_at <= now => Gate {
                exempt: false,
                verified: false,
                reason: Some(expired_reason(expires_at)),
            },
            Some((verified, reason, _)) => Gate {
                exempt: false,
                verified: verified != 0,
                reason,
            },
            None => Gate::default(),
        })
    }
}
