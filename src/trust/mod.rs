//! Signatures, verified offline: cosign's (the `sha256-<hex>.sig` tag scheme with
//! simple-signing payloads, and sigstore bundles pushed as OCI 1.1 referrers) and notation's
//! (JWS envelopes with an `x5c` certificate chain), against a [`TrustPolicy`]'s cosign keys,
//! trust store and trusted identities. Pure: no IO, no clock (the caller passes the time
//! certificates are checked at), so the registry can re-verify stored signatures whenever a
//! policy changes and a pull only reads the stored result.
//!
//! Every refusal is a [`Rejection`] with its own reason, shown to users as it is.

pub mod cosign;
pub mod keys;
pub mod notation;
pub mod policy;
mod x509;

use serde::Deserialize;
use std::collections::HashMap;

pub use keys::{KeyError, PublicKey};
pub use policy::{Mode, NotationStatement, PolicyError, TrustPolicy};

use crate::oci::Digest;

/// Cosign's simple-signing payload (a layer of a tag-scheme signature manifest).
pub const COSIGN_SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The layer annotation holding cosign's base64 signature over the payload.
pub const COSIGN_SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// A sigstore bundle (artifact type and layer media type of cosign's referrer).
pub const SIGSTORE_BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// Notation's signature artifact type.
pub const NOTATION_SIGNATURE: &str = "application/vnd.cncf.notary.signature";
/// Notation's JWS envelope (the layer media type).
pub const JOSE_JSON: &str = "application/jose+json";

/// Which tool a signature comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// cosign (tag scheme or bundle).
    Cosign,
    /// notation.
    Notation,
}

impl Tool {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Tool::Cosign => "cosign",
            Tool::Notation => "notation",
        }
    }
}

/// How a signature manifest carries its signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// cosign's `sha256-<hex>.sig` tag with simple-signing layers.
    CosignTag,
    /// A sigstore bundle referrer.
    CosignBundle,
    /// A notation JWS referrer.
    NotationJws,
}

impl Format {
    /// The name stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::CosignTag => "cosign-tag",
            Format::CosignBundle => "cosign-bundle",
            Format::NotationJws => "notation-jws",
        }
    }

    /// The tool that makes it.
    pub fn tool(self) -> Tool {
        match self {
            Format::CosignTag | Format::CosignBundle => Tool::Cosign,
            Format::NotationJws => Tool::Notation,
        }
    }
}

/// A signature that verified: who signed (a key's fingerprint, a certificate's subject).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The key (`key sha256:…`) or certificate subject that signed.
    pub identity: String,
    /// When the first certificate of its chain expires (unix seconds): from then on the
    /// signature no longer counts. `None` for a key, which does not expire.
    pub expires_at: Option<i64>,
}

/// Why a signature is not trusted. Each variant's message is the reason users see.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// No trust policy covers the repository.
    #[error("no trust policy covers this repository")]
    NoPolicy,
    /// The covering policy has no cosign keys.
    #[error("trust policy {0} lists no cosign keys")]
    NoCosignKeys(String),
    /// The covering policy has no notation statement or trust store.
    #[error("trust policy {0} has no notation statement and trust store")]
    NoNotationTrust(String),
    /// The signature's blob could not be read or is larger than the limit.
    #[error("the signature blob {0} could not be read: {1}")]
    Unreadable(String, String),
    /// The signature manifest or layer is not of the expected shape.
    #[error("malformed signature: {0}")]
    Malformed(String),
    /// The signed payload does not parse.
    #[error("malformed signed payload: {0}")]
    MalformedPayload(String),
    /// The signature's bytes are not a signature of the key's type (truncated, bad DER).
    #[error("the signature is malformed for {0} (truncated or badly encoded)")]
    MalformedSignature(String),
    /// The payload signs something other than a digest.
    #[error("the payload signs {0:?}, a tag or name rather than a digest (a tag can move)")]
    SignsTag(String),
    /// The payload names another image than the one it is attached to.
    #[error("the payload signs {signed}, not the image {subject} it is attached to")]
    OtherDigest {
        /// What the payload signs.
        signed: String,
        /// The image the signature manifest is attached to.
        subject: String,
    },
    /// A referrer whose subject is another image than the one its signature names.
    #[error(
        "the referrer's subject is {subject}, but its signature is for another image, {signed}"
    )]
    SubjectMismatch {
        /// What the signature signs.
        signed: String,
        /// The referrer's subject.
        subject: String,
    },
    /// None of the policy's cosign keys verifies the signature.
    #[error("none of the {keys} cosign key(s) of trust policy {policy} verifies the signature")]
    NoKeyVerifies {
        /// The policy.
        policy: String,
        /// How many keys were tried.
        keys: usize,
    },
    /// The signature does not verify with the signing certificate's key (the payload or
    /// protected header was altered, or another key signed).
    #[error(
        "the signature does not verify with the signing certificate's key ({0}): the payload or header was altered"
    )]
    CertificateKeyMismatch(String),
    /// The JWS `alg` is not one this key type makes.
    #[error("alg {alg} does not match the signing key ({key})")]
    AlgorithmKeyMismatch {
        /// The header's alg.
        alg: String,
        /// The key's kind.
        key: String,
    },
    /// An algorithm that is not supported.
    #[error(
        "unsupported signature algorithm {0} (supported: ES256, ES384, PS256, PS384, PS512, EdDSA)"
    )]
    UnsupportedAlgorithm(String),
    /// A key type that is not supported.
    #[error("unsupported key: {0}")]
    UnsupportedKey(String),
    /// The JWS content type is not notation's payload.
    #[error("content type {0:?} is not application/vnd.cncf.notary.payload.v1+json")]
    ContentType(String),
    /// A critical header that is not understood.
    #[error("unknown critical header {0:?}")]
    UnknownCritical(String),
    /// A certificate whose validity ended.
    #[error("certificate {subject} expired at {not_after} (unix seconds)")]
    CertificateExpired {
        /// The certificate's subject.
        subject: String,
        /// When it ended.
        not_after: i64,
    },
    /// A certificate whose validity has not begun.
    #[error("certificate {subject} is not valid before {not_before} (unix seconds)")]
    CertificateNotYetValid {
        /// The certificate's subject.
        subject: String,
        /// When it begins.
        not_before: i64,
    },
    /// The signing certificate is not for code signing.
    #[error("the signing certificate {0} lacks the code-signing extended key usage")]
    NotCodeSigning(String),
    /// An issuing certificate that is not a CA.
    #[error("certificate {0} issues another but is not a CA (basic constraints)")]
    NotCa(String),
    /// A certificate not signed by the next of the chain.
    #[error("certificate {0} is not signed by the next certificate of the chain")]
    BrokenChain(String),
    /// The chain does not end at a trust store certificate.
    #[error("the chain of {0} does not lead to a certificate of the trust store (untrusted CA)")]
    UntrustedCa(String),
    /// A chain that is empty or longer than the limit.
    #[error("the certificate chain has {0} certificates (between 1 and {max})", max = x509::CHAIN_MAX)]
    ChainLength(usize),
    /// A certificate that does not parse.
    #[error("a certificate does not parse: {0}")]
    BadCertificate(String),
    /// The signer is not a trusted identity.
    #[error("signer {0} is not in the trusted identities of the notation statement")]
    IdentityNotTrusted(String),
}

/// A layer of a signature manifest.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Layer {
    /// Its media type.
    pub media_type: String,
    /// Its digest.
    pub digest: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its annotations.
    #[serde(default)]
    pub annotations: HashMap<String, String>,
}

/// A manifest recognised as carrying signatures: its format, the image it signs, and the
/// layers to read.
#[derive(Debug, Clone)]
pub struct SignatureManifest {
    /// How it carries them.
    pub format: Format,
    /// The image it is attached to: the tag's digest or the referrer's subject.
    pub subject: Digest,
    /// The layers holding signatures.
    pub layers: Vec<Layer>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    #[serde(default)]
    artifact_type: Option<String>,
    #[serde(default)]
    config: Option<RawDescriptor>,
    #[serde(default)]
    layers: Vec<Layer>,
    #[serde(default)]
    subject: Option<RawDescriptor>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    media_type: Option<String>,
    digest: String,
}

/// Whether manifest `payload` is something a runtime can run: an index, or a manifest with
/// image (filesystem) layers. Signatures, attestations and SBOMs are not; a tag that looks
/// like cosign's does not exempt a runnable image from the pull gate.
pub fn is_runnable(payload: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Shape {
        #[serde(default)]
        manifests: Option<serde_json::Value>,
        #[serde(default)]
        layers: Vec<Layer>,
    }
    // Unreadable: treated as runnable, so the gate decides.
    serde_json::from_slice::<Shape>(payload).map_or(true, |shape| {
        shape.manifests.is_some()
            || shape.layers.iter().any(|l| {
                l.media_type.contains(".image.layer.") || l.media_type.contains(".image.rootfs.")
            })
    })
}

/// The image digest a cosign signature tag names (`sha256-<hex>.sig` → `sha256:<hex>`).
pub fn cosign_tag_subject(tag: &str) -> Option<Digest> {
    let hex = tag.strip_prefix("sha256-")?.strip_suffix(".sig")?;
    format!("sha256:{hex}").parse().ok()
}

impl SignatureManifest {
    /// The signature manifest `payload` is, pushed under `tag` (or by digest), or `None`
    /// when it carries no signatures this module knows. `tag_subject` overrides the tag for
    /// a re-verification (the subject recorded when it was pushed).
    pub fn recognise(payload: &[u8], tag_subject: Option<Digest>) -> Option<SignatureManifest> {
        let raw: RawManifest = serde_json::from_slice(payload).ok()?;
        let artifact_type = raw
            .artifact_type
            .clone()
            .or_else(|| raw.config.as_ref().and_then(|c| c.media_type.clone()));
        let subject = raw
            .subject
            .as_ref()
            .and_then(|s| s.digest.parse::<Digest>().ok());
        if let Some(subject) = subject {
            let format = match artifact_type.as_deref() {
                Some(SIGSTORE_BUNDLE) => Format::CosignBundle,
                Some(NOTATION_SIGNATURE) => Format::NotationJws,
                _ => return None,
            };
            let wanted = match format {
                Format::CosignBundle => SIGSTORE_BUNDLE,
                _ => JOSE_JSON,
            };
            let layers = raw
                .layers
                .into_iter()
                .filter(|l| l.media_type == wanted)
                .collect();
            return Some(SignatureManifest {
                format,
                subject,
                layers,
            });
        }
        let subject = tag_subject?;
        let layers: Vec<Layer> = raw
            .layers
            .into_iter()
            .filter(|l| l.media_type == COSIGN_SIMPLE_SIGNING)
            .collect();
        if layers.is_empty() {
            return None;
        }
        Some(SignatureManifest {
            format: Format::CosignTag,
            subject,
            layers,
        })
    }
}

/// Verifies one layer of `manifest` (its blob `blob`) under `policy` at unix time `now`.
pub fn verify_layer(
    manifest: &SignatureManifest,
    layer: &Layer,
    blob: &[u8],
    policy: &TrustPolicy,
    now: i64,
) -> Result<Verified, Rejection> {
    match manifest.format {
        Format::CosignTag => {
            let signature = layer
                .annotations
                .get(COSIGN_SIGNATURE_ANNOTATION)
                .ok_or_else(|| {
                    Rejection::Malformed(format!(
                        "layer {} has no {COSIGN_SIGNATURE_ANNOTATION} annotation",
                        layer.digest
                    ))
                })?;
            cosign::verify_simple_signing(&manifest.subject, blob, signature, policy)
        }
        Format::CosignBundle => cosign::verify_bundle(&manifest.subject, blob, policy),
        Format::NotationJws => notation::verify_jws(&manifest.subject, blob, policy, now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn a_cosign_tag_names_its_image() {
        let subject = cosign_tag_subject(&format!("sha256-{HEX}.sig")).unwrap();
        assert_eq!(subject.to_string(), format!("sha256:{HEX}"));
        assert!(cosign_tag_subject(&format!("sha256-{HEX}.att")).is_none());
        assert!(cosign_tag_subject("sha256-abc.sig").is_none());
        assert!(cosign_tag_subject("latest").is_none());
    }

    #[test]
    fn images_are_runnable_and_signatures_are_not() {
        let manifest = |media_type: &str| {
            serde_json::json!({ "layers": [{ "mediaType": media_type, "digest": format!("sha256:{HEX}"), "size": 1 }] })
                .to_string()
        };
        assert!(is_runnable(
            manifest("application/vnd.oci.image.layer.v1.tar+gzip").as_bytes()
        ));
        assert!(is_runnable(
            manifest("application/vnd.docker.image.rootfs.diff.tar.gzip").as_bytes()
        ));
        assert!(is_runnable(br#"{"manifests": []}"#));
        assert!(!is_runnable(manifest(COSIGN_SIMPLE_SIGNING).as_bytes()));
        assert!(!is_runnable(
            manifest("application/vnd.dsse.envelope.v1+json").as_bytes()
        ));
    }

    #[test]
    fn signature_manifests_are_recognised_by_their_shape() {
        let subject: Digest = format!("sha256:{HEX}").parse().unwrap();
        let layer = |media_type: &str| serde_json::json!({ "mediaType": media_type, "digest": format!("sha256:{HEX}"), "size": 10 });
        let tagged =
            serde_json::json!({ "layers": [layer(COSIGN_SIMPLE_SIGNING), layer("other")] });
        let found =
            SignatureManifest::recognise(tagged.to_string().as_bytes(), Some(subject.clone()))
                .unwrap();
        assert_eq!((found.format, found.layers.len()), (Format::CosignTag, 1));
        // Without the tag, simple-signing layers sign nothing known.
        assert!(SignatureManifest::recognise(tagged.to_string().as_bytes(), None).is_none());
        let referrer = |artifact_type: &str, media_type: &str| {
            serde_json::json!({
                "artifactType": artifact_type,
                "layers": [layer(media_type)],
                "subject": { "mediaType": "x", "digest": format!("sha256:{HEX}"), "size": 1 },
            })
            .to_string()
        };
        let notation =
            SignatureManifest::recognise(referrer(NOTATION_SIGNATURE, JOSE_JSON).as_bytes(), None)
                .unwrap();
        assert_eq!(
            (notation.format, notation.subject),
            (Format::NotationJws, subject)
        );
        let bundle = SignatureManifest::recognise(
            referrer(SIGSTORE_BUNDLE, SIGSTORE_BUNDLE).as_bytes(),
            None,
        )
        .unwrap();
        assert_eq!(bundle.format, Format::CosignBundle);
        // An SBOM referrer carries no signature.
        assert!(
            SignatureManifest::recognise(
                referrer("application/spdx+json", "application/spdx+json").as_bytes(),
                None
            )
            .is_none()
        );
    }

    #[test]
    fn keys_that_are_not_pem_public_keys_are_refused() {
        assert!(matches!(
            PublicKey::from_pem("not a key"),
            Err(KeyError::NotPem(_))
        ));
        let private = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(matches!(
            PublicKey::from_pem(private),
            Err(KeyError::NotPem(_))
        ));
        let garbage = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
        assert!(matches!(
            PublicKey::from_pem(garbage),
            Err(KeyError::Malformed(_))
        ));
    }
}
