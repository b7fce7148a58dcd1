//! Signatures: trust policies, the verification of pushed signature manifests, and the pull
//! gate. A pushed cosign tag-scheme manifest (`sha256-<hex>.sig`), sigstore bundle referrer
//! or notation referrer is verified at once, offline ([`crate::trust`]), under the policy
//! that covers its repository, and the result stored per signature; when a policy changes,
//! the signatures under its scopes are verified again. The manifest GET then only reads
//! stored results: under `enforce` an image without a verified signature is refused with
//! `DENIED` and the reason, under `audit` it is served, logged and counted. Signature
//! manifests and referrers are never held back (clients must be able to read them).

use std::collections::HashMap;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Registry;
use crate::{
    error::{Error, Result},
    meta::{
        manifests::StoredManifest,
        signatures::{NewSignature, SignatureRow, TrustPolicyRow, expired_reason},
    },
    oci::{Digest, RepoName, Tag},
    trust::{self, Mode, Rejection, SignatureManifest, TrustPolicy, cosign_tag_subject},
};

/// The largest signature blob read (a simple-signing payload, a bundle, a JWS envelope with
/// its chain are a few KiB).
pub const SIGNATURE_BLOB_MAX: u64 = 256 * 1024;
/// The most signatures of one manifest verified (cosign appends one layer per signing).
const LAYERS_MAX: usize = 64;

/// An image's signing as the image and tag listings show it: its best signature (a verified
/// one first, else the newest) and how many it has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SignedStatus {
    /// Whether a signature verified under the policy covering the repository (and has not
    /// expired).
    pub verified: bool,
    /// `cosign` or `notation`.
    pub tool: String,
    /// Who signed: `key sha256:…` or a certificate subject (when verified).
    pub identity: Option<String>,
    /// Why it did not verify (when none did).
    pub reason: Option<String>,
    /// The image's signatures, verified or not.
    pub signatures: usize,
}

impl SignedStatus {
    pub(super) fn of_view(view: SignatureView) -> SignedStatus {
        SignedStatus {
            verified: view.verified,
            tool: view.tool,
            identity: view.identity,
            reason: view.reason,
            signatures: 1,
        }
    }
}

impl SignatureView {
    /// A stored result as shown at `now`: a verified signature whose certificate chain has
    /// expired is shown unverified, with the expiry as its reason.
    pub(super) fn of_row(s: SignatureRow, now: i64) -> SignatureView {
        let expired = s.expires_at.filter(|e| s.verified != 0 && *e <= now);
        SignatureView {
            tool: s.tool,
            format: s.format,
            verified: s.verified != 0 && expired.is_none(),
            identity: s.identity,
            reason: expired.map(expired_reason).or(s.reason),
            expires_at: s.expires_at,
            policy: s.policy,
            signature: s.signature_digest,
            index: s.layer,
            verified_at: s.verified_at,
        }
    }
}

/// A trust policy as written through the API.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrustPolicyInput {
    /// `*` or a repository-name prefix (`acme` covers `acme` and `acme/...`).
    pub scope: String,
    /// `enforce`, `audit` or `off`.
    pub mode: String,
    /// cosign public keys (PEM `PUBLIC KEY`: ECDSA P-256/P-384, RSA, Ed25519).
    #[serde(default)]
    pub cosign_keys: Vec<String>,
    /// notation's trust-policy statement (`trustedIdentities`, `signatureVerification`).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub notation: Option<Value>,
    /// PEM certificates notation chains must lead to.
    #[serde(default)]
    pub trust_store: Vec<String>,
}

/// A trust policy as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TrustPolicyView {
    /// Its name.
    pub name: String,
    /// `*` or a repository-name prefix.
    pub scope: String,
    /// `enforce`, `audit` or `off`.
    pub mode: String,
    /// cosign public keys (PEM).
    pub cosign_keys: Vec<String>,
    /// `sha256:` fingerprints of the keys' SubjectPublicKeyInfo, as signatures name them.
    pub cosign_key_fingerprints: Vec<String>,
    /// notation's statement.
    #[schema(value_type = Option<Object>)]
    pub notation: Option<Value>,
    /// PEM certificates.
    pub trust_store: Vec<String>,
    /// Who last wrote it.
    pub updated_by: String,
    /// When (unix seconds).
    pub updated_at: i64,
}

/// One signature of an image and what its verification found.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SignatureView {
    /// `cosign` or `notation`.
    pub tool: String,
    /// `cosign-tag`, `cosign-bundle` or `notation-jws`.
    pub format: String,
    /// Whether it verified under the policy covering the repository.
    pub verified: bool,
    /// Who signed: `key sha256:…` or a certificate subject (when verified).
    pub identity: Option<String>,
    /// Why it did not verify.
    pub reason: Option<String>,
    /// The policy it was verified under.
    pub policy: Option<String>,
    /// The digest of the manifest carrying it.
    pub signature: String,
    /// Its index within that manifest.
    pub index: i64,
    /// When it was verified (unix seconds).
    pub verified_at: i64,
    /// When its signing certificate chain expires (unix seconds); from then on it is shown
    /// unverified and no longer lets the image through.
    pub expires_at: Option<i64>,
}

fn pem_list(json: &str) -> Vec<String> {
    serde_json::from_str(json).unwrap_or_default()
}

/// The policy of a stored row (stored rows were checked when written).
fn parse_row(row: &TrustPolicyRow) -> std::result::Result<TrustPolicy, trust::PolicyError> {
    let notation: Option<Value> = row
        .notation
        .as_deref()
        .and_then(|n| serde_json::from_str(n).ok());
    TrustPolicy::parse(
        &row.name,
        &row.scope,
        &row.mode,
        &pem_list(&row.cosign_keys),
        notation.as_ref(),
        &pem_list(&row.trust_store),
    )
}

fn view(row: TrustPolicyRow) -> TrustPolicyView {
    let fingerprints = parse_row(&row)
        .map(|p| p.cosign_keys.iter().map(|k| k.fingerprint()).collect())
        .unwrap_or_default();
    TrustPolicyView {
        cosign_keys: pem_list(&row.cosign_keys),
        cosign_key_fingerprints: fingerprints,
        notation: row
            .notation
            .as_deref()
            .and_then(|n| serde_json::from_str(n).ok()),
        trust_store: pem_list(&row.trust_store),
        name: row.name,
        scope: row.scope,
        mode: row.mode,
        updated_by: row.updated_by,
        updated_at: row.updated_at,
    }
}

/// Whether `tag` is one of cosign's attached-artifact tags (`sha256-<hex>.sig`, `.att`,
/// `.sbom`): read by cosign itself, never held back unless it holds a runnable image.
fn is_cosign_accessory(tag: &Tag) -> bool {
    tag.as_str()
        .strip_prefix("sha256-")
        .and_then(|rest| rest.split_once('.'))
        .is_some_and(|(hex, _)| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl Registry {
    /// Creates or replaces trust policy `name` on behalf of `by` (true when created), then
    /// verifies again the signatures under its old and new scopes. Refused whole, nothing
    /// stored, when any part does not parse.
    pub async fn put_trust_policy(
        &self,
        name: &str,
        input: &TrustPolicyInput,
        by: &str,
    ) -> Result<(bool, TrustPolicyView)> {
        let policy = TrustPolicy::parse(
            name,
            &input.scope,
            &input.mode,
            &input.cosign_keys,
            input.notation.as_ref(),
            &input.trust_store,
        )
        .map_err(|e| Error::BadRequest(e.to_string()))?;
        let old = self.meta.trust_policy(name).await?;
        let row = TrustPolicyRow {
            name: policy.name.clone(),
            scope: policy.scope.clone(),
            mode: policy.mode.as_str().into(),
            cosign_keys: serde_json::to_string(&input.cosign_keys).unwrap_or_default(),
            notation: input
                .notation
                .as_ref()
                .filter(|n| !n.is_null())
                .map(Value::to_string),
            trust_store: serde_json::to_string(&input.trust_store).unwrap_or_default(),
            updated_by: by.into(),
            updated_at: self.clock.now(),
        };
        let created = self.meta.put_trust_policy(&row).await?;
        if let Some(old) = old
            && old.scope != row.scope
        {
            self.reverify(&old.scope).await?;
        }
        self.reverify(&row.scope).await?;
        Ok((created, view(row)))
    }

    /// Trust policy `name`.
    pub async fn trust_policy(&self, name: &str) -> Result<Option<TrustPolicyView>> {
        Ok(self.meta.trust_policy(name).await?.map(view))
    }

    /// Every trust policy, by name.
    pub async fn trust_policies(&self) -> Result<Vec<TrustPolicyView>> {
        Ok(self
            .meta
            .trust_policies()
            .await?
            .into_iter()
            .map(view)
            .collect())
    }

    /// Deletes trust policy `name` (the deleted policy), and verifies again the signatures
    /// it covered under what covers them now.
    pub async fn delete_trust_policy(&self, name: &str) -> Result<Option<TrustPolicyView>> {
        let Some(row) = self.meta.delete_trust_policy(name).await? else {
            return Ok(None);
        };
        self.reverify(&row.scope).await?;
        Ok(Some(view(row)))
    }

    /// The signatures of image `digest` of `repo`, newest first. `MANIFEST_UNKNOWN` when
    /// the repository has no such manifest.
    pub async fn image_signatures(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Vec<SignatureView>> {
        self.meta
            .manifest_by_digest(repo, digest, false)
            .await?
            .ok_or(Error::ManifestUnknown)?;
        let now = self.clock.now();
        Ok(self
            .meta
            .signatures_of(repo, digest)
            .await?
            .into_iter()
            .map(|s| SignatureView::of_row(s, now))
            .collect())
    }

    /// The signed status of each of images `digests` of repository `repository_id` that has
    /// a signature, by digest (one query for a listing's page).
    pub(super) async fn signed_statuses(
        &self,
        repository_id: i64,
        digests: &[&Digest],
    ) -> Result<HashMap<String, SignedStatus>> {
        let now = self.clock.now();
        let mut statuses: HashMap<String, SignedStatus> = HashMap::new();
        for row in self
            .meta
            .signatures_of_images(repository_id, digests)
            .await?
        {
            let subject = row.subject_digest.clone();
            let view = SignatureView::of_row(row, now);
            match statuses.get_mut(&subject) {
                // Rows come newest first: a later one replaces only an unverified best.
                Some(best) => {
                    best.signatures += 1;
                    if view.verified && !best.verified {
                        *best = SignedStatus {
                            signatures: best.signatures,
                            ..SignedStatus::of_view(view)
                        };
                    }
                }
                None => {
                    statuses.insert(subject, SignedStatus::of_view(view));
                }
            }
        }
        Ok(statuses)
    }

    /// After manifest `digest` of `repo` was stored (under `tag`, if any): when it carries
    /// signatures, verifies them and stores the results. Failures are logged: a push is
    /// never refused for its signatures (an unverified one is shown, and does not count).
    pub(super) async fn verify_after_push(
        &self,
        repo: &RepoName,
        digest: &Digest,
        payload: &[u8],
        tag: Option<&Tag>,
    ) {
        let tag_subject = tag.and_then(|t| cosign_tag_subject(t.as_str()));
        let Some(signature) = SignatureManifest::recognise(payload, tag_subject) else {
            return;
        };
        let stored = match self.meta.manifest_by_digest(repo, digest, false).await {
            Ok(Some(stored)) => stored,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(%repo, %digest, error = %e, "could not read a signature manifest");
                return;
            }
        };
        if let Err(e) = self.verify_and_store(repo, &stored, &signature).await {
            tracing::warn!(%repo, %digest, error = %e, "could not verify a signature manifest");
        }
    }

    /// Verifies every signature of `signature` (manifest row `stored` of `repo`) under the
    /// policy covering `repo`, and replaces its stored results.
    async fn verify_and_store(
        &self,
        repo: &RepoName,
        stored: &StoredManifest,
        signature: &SignatureManifest,
    ) -> Result<()> {
        let row = self.meta.trust_policy_for(repo.as_str()).await?;
        let policy = row.as_ref().map(parse_row).transpose().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "a stored trust policy does not parse");
            None
        });
        let now = self.clock.now();
        let format = signature.format;
        let mut results = Vec::new();
        let layers: Vec<_> = if signature.layers.is_empty() {
            vec![None]
        } else {
            signature.layers.iter().take(LAYERS_MAX).map(Some).collect()
        };
        for (index, layer) in layers.into_iter().enumerate() {
            let outcome = match (&policy, layer) {
                (None, _) => Err(Rejection::NoPolicy),
                (Some(_), None) => Err(Rejection::Malformed(
                    "the manifest holds no signature layer".into(),
                )),
                (Some(policy), Some(layer)) => match self.read_signature_blob(layer).await {
                    Ok(blob) => trust::verify_layer(signature, layer, &blob, policy, now),
                    Err(e) => Err(e),
                },
            };
            results.push(NewSignature {
                layer: i64::try_from(index).unwrap_or(i64::MAX),
                subject: signature.subject.clone(),
                format: format.as_str(),
                tool: format.tool().as_str(),
                identity: outcome.as_ref().ok().map(|v| v.identity.clone()),
                verified: outcome.is_ok(),
                reason: outcome.as_ref().err().map(ToString::to_string),
                policy: policy.as_ref().map(|p| p.name.clone()),
                expires_at: outcome.as_ref().ok().and_then(|v| v.expires_at),
            });
        }
        self.meta
            .replace_signatures(
                stored.id,
                stored.repository_id,
                repo,
                &stored.digest,
                &results,
            )
            .await
    }

    /// The bytes of a signature layer, refused when larger than [`SIGNATURE_BLOB_MAX`].
    async fn read_signature_blob(
        &self,
        layer: &trust::Layer,
    ) -> std::result::Result<Vec<u8>, Rejection> {
        let unreadable = |why: String| Rejection::Unreadable(layer.digest.clone(), why);
        if layer.size > SIGNATURE_BLOB_MAX {
            return Err(unreadable(format!(
                "{} bytes, more than the limit of {SIGNATURE_BLOB_MAX}",
                layer.size
            )));
        }
        let digest: Digest = layer
            .digest
            .parse()
            .map_err(|e| unreadable(format!("{e}")))?;
        let mut stream = self
            .blobs
            .read(&digest, None)
            .await
            .map_err(|e| unreadable(e.to_string()))?;
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| unreadable(e.to_string()))?;
            out.extend_from_slice(&chunk);
            if out.len() as u64 > SIGNATURE_BLOB_MAX {
                return Err(unreadable(format!(
                    "more than the limit of {SIGNATURE_BLOB_MAX} bytes"
                )));
            }
        }
        Ok(out)
    }

    /// Verifies again every stored signature of the repositories `scope` covers.
    async fn reverify(&self, scope: &str) -> Result<()> {
        for stored in self.meta.signatures_under(scope).await? {
            let (Ok(repo), Ok(digest)) = (
                stored.repository.parse::<RepoName>(),
                stored.digest.parse::<Digest>(),
            ) else {
                continue;
            };
            let Some(manifest) = self.meta.manifest_by_digest(&repo, &digest, true).await? else {
                continue;
            };
            let subject = stored.subject_digest.parse::<Digest>().ok();
            let Some(signature) = SignatureManifest::recognise(&manifest.payload, subject) else {
                continue;
            };
            self.verify_and_store(&repo, &manifest, &signature).await?;
        }
        Ok(())
    }

    /// The signature gate of a manifest GET of `manifest` of `repo` (by `tag`, if any):
    /// `DENIED` with the reason under an `enforce` policy when no signature of the
    /// manifest verified; under `audit` served, logged and counted.
    pub(super) async fn check_signed(
        &self,
        repo: &RepoName,
        manifest: &StoredManifest,
        tag: Option<&Tag>,
    ) -> Result<()> {
        // Read with the manifest: no query here unless a policy checks this repository.
        if manifest.trust_policy.is_none()
            || tag.is_some_and(is_cosign_accessory) && !trust::is_runnable(&manifest.payload)
        {
            return Ok(());
        }
        let Some(policy) = self.meta.trust_policy_for(repo.as_str()).await? else {
            return Ok(());
        };
        let mode = Mode::parse(&policy.mode).unwrap_or(Mode::Off);
        if mode == Mode::Off {
            return Ok(());
        }
        let gate = self
            .meta
            .signature_gate(
                manifest.repository_id,
                manifest.id,
                &manifest.digest,
                &policy.name,
            )
            .await?;
        if gate.exempt || gate.verified {
            return Ok(());
        }
        let why = match gate.reason {
            Some(reason) => format!("its signature did not verify: {reason}"),
            None => "it has no signature".to_owned(),
        };
        let message = format!(
            "image {} of {repo} is not signed by a key or identity trust policy {} trusts: {why}",
            manifest.digest, policy.name
        );
        self.metrics.unsigned_pull(mode.as_str());
        match mode {
            Mode::Enforce => Err(Error::Denied(message)),
            _ => {
                tracing::warn!(%repo, digest = %manifest.digest, policy = %policy.name, "audit: {message}");
                Ok(())
            }
        }
    }
}
