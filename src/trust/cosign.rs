//! cosign signatures with a public key: simple-signing payloads (the tag scheme) and
//! sigstore bundles (message signatures over the image digest, or DSSE envelopes of an
//! in-toto statement naming it). No transparency log or Fulcio certificates: keyless
//! signing is not verified here.

use base64::{Engine, engine::general_purpose::STANDARD};
use serde::Deserialize;
use serde_json::Value;

use super::{
    Rejection, TrustPolicy, Verified,
    keys::{Hash, PublicKey, Scheme, SigError},
};
use crate::oci::Digest;

/// Verifies a tag-scheme signature: `signature` (base64, from the layer's annotation) over
/// `payload` (the layer's bytes) by one of the policy's keys, and the payload naming
/// `subject` as the signed image.
pub fn verify_simple_signing(
    subject: &Digest,
    payload: &[u8],
    signature: &str,
    policy: &TrustPolicy,
) -> Result<Verified, Rejection> {
    let sig = STANDARD.decode(signature.trim()).map_err(|e| {
        Rejection::Malformed(format!("the signature annotation is not base64: {e}"))
    })?;
    let key = verify_with_keys(policy, |key| key.verify_cosign(payload, &sig))?;
    let value: Value =
        serde_json::from_slice(payload).map_err(|e| Rejection::MalformedPayload(e.to_string()))?;
    let signed = value
        .pointer("/critical/image/docker-manifest-digest")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            Rejection::MalformedPayload("no critical.image.docker-manifest-digest".into())
        })?;
    check_names(signed, subject, false)?;
    Ok(Verified {
        identity: format!("key {}", key.fingerprint()),
        expires_at: None,
    })
}

/// `signed` (what a payload names) against the image `subject`: a tag or name is refused
/// apart from another digest; `referrer` says the mismatch is with a referrer's subject.
fn check_names(signed: &str, subject: &Digest, referrer: bool) -> Result<(), Rejection> {
    let Ok(digest) = signed.parse::<Digest>() else {
        return Err(Rejection::SignsTag(signed.to_owned()));
    };
    if &digest == subject {
        return Ok(());
    }
    let (signed, subject) = (digest.to_string(), subject.to_string());
    Err(if referrer {
        Rejection::SubjectMismatch { signed, subject }
    } else {
        Rejection::OtherDigest { signed, subject }
    })
}

/// The first key of the policy `check` accepts; else why none does (a malformed signature
/// when no key could even read it).
fn verify_with_keys(
    policy: &TrustPolicy,
    check: impl Fn(&PublicKey) -> Result<(), SigError>,
) -> Result<&PublicKey, Rejection> {
    if policy.cosign_keys.is_empty() {
        return Err(Rejection::NoCosignKeys(policy.name.clone()));
    }
    let mut malformed = None;
    for key in &policy.cosign_keys {
        match check(key) {
            Ok(()) => return Ok(key),
            Err(SigError::Malformed) => malformed = malformed.or(Some(key.kind())),
            Err(_) => malformed = Some(""),
        }
    }
    match malformed {
        Some(kind) if !kind.is_empty() => Err(Rejection::MalformedSignature(
            if policy.cosign_keys.len() == 1 {
                format!("the {kind} key")
            } else {
                format!("every one of the {} cosign keys", policy.cosign_keys.len())
            },
        )),
        _ => Err(Rejection::NoKeyVerifies {
            policy: policy.name.clone(),
            keys: policy.cosign_keys.len(),
        }),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Bundle {
    media_type: Option<String>,
    message_signature: Option<MessageSignature>,
    dsse_envelope: Option<Envelope>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageSignature {
    message_digest: MessageDigest,
    signature: String,
}

#[derive(Deserialize)]
struct MessageDigest {
    algorithm: String,
    digest: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    payload: String,
    payload_type: String,
    signatures: Vec<EnvelopeSignature>,
}

#[derive(Deserialize)]
struct EnvelopeSignature {
    sig: String,
}

/// The DSSE pre-authentication encoding a DSSE signature covers.
fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// Verifies a sigstore bundle attached to `subject` (a referrer's blob) with the policy's
/// keys: a message signature over the subject's digest, or a DSSE envelope whose in-toto
/// statement names the subject.
pub fn verify_bundle(
    subject: &Digest,
    blob: &[u8],
    policy: &TrustPolicy,
) -> Result<Verified, Rejection> {
    let bundle: Bundle =
        serde_json::from_slice(blob).map_err(|e| Rejection::Malformed(format!("bundle: {e}")))?;
    if let Some(media_type) = &bundle.media_type
        && !media_type.starts_with("application/vnd.dev.sigstore.bundle")
    {
        return Err(Rejection::Malformed(format!(
            "bundle media type {media_type:?}"
        )));
    }
    let decode = |what: &str, s: &str| {
        STANDARD
            .decode(s)
            .map_err(|e| Rejection::Malformed(format!("{what} is not base64: {e}")))
    };
    match (bundle.message_signature, bundle.dsse_envelope) {
        (Some(message), None) => {
            if message.message_digest.algorithm != "SHA2_256" {
                return Err(Rejection::UnsupportedAlgorithm(
                    message.message_digest.algorithm,
                ));
            }
            let digest = decode("messageDigest.digest", &message.message_digest.digest)?;
            let sig = decode("messageSignature.signature", &message.signature)?;
            let key = verify_with_keys(policy, |key| match key {
                PublicKey::Ed25519(_) => Err(SigError::SchemeMismatch),
                PublicKey::Rsa(_) => key
                    .verify_digest(Scheme::RsaPkcs1(Hash::Sha256), &digest, &sig)
                    .or_else(|_| key.verify_digest(Scheme::RsaPss(Hash::Sha256), &digest, &sig)),
                _ => {
                    let der = Scheme::Ecdsa {
                        hash: Hash::Sha256,
                        fixed: false,
                    };
                    key.verify_digest(der, &digest, &sig)
                }
            })?;
            check_names(&format!("sha256:{}", hex::encode(&digest)), subject, true)?;
            Ok(Verified {
                identity: format!("key {}", key.fingerprint()),
                expires_at: None,
            })
        }
        (None, Some(envelope)) => {
            let payload = decode("dsseEnvelope.payload", &envelope.payload)?;
            let [signature] = envelope.signatures.as_slice() else {
                return Err(Rejection::Malformed(format!(
                    "a DSSE envelope with {} signatures (one expected)",
                    envelope.signatures.len()
                )));
            };
            let sig = decode("dsseEnvelope.signatures[0].sig", &signature.sig)?;
            let signed = pae(&envelope.payload_type, &payload);
            let key = verify_with_keys(policy, |key| key.verify_cosign(&signed, &sig))?;
            let statement: Value = serde_json::from_slice(&payload)
                .map_err(|e| Rejection::MalformedPayload(e.to_string()))?;
            let names: Vec<String> = statement
                .get("subject")
                .and_then(Value::as_array)
                .map(|subjects| {
                    subjects
                        .iter()
                        .filter_map(|s| s.pointer("/digest/sha256").and_then(Value::as_str))
                        .map(|hex| format!("sha256:{hex}"))
                        .collect()
                })
                .unwrap_or_default();
            if names.is_empty() {
                return Err(Rejection::MalformedPayload(
                    "the in-toto statement names no sha256 subject".into(),
                ));
            }
            if !names.iter().any(|n| n == subject.as_str()) {
                return Err(Rejection::SubjectMismatch {
                    signed: names.join(", "),
                    subject: subject.to_string(),
                });
            }
            Ok(Verified {
                identity: format!("key {}", key.fingerprint()),
                expires_at: None,
            })
        }
        _ => Err(Rejection::Malformed(
            "a bundle holds exactly one of messageSignature and dsseEnvelope".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dsse_encoding_counts_bytes() {
        assert_eq!(
            pae("application/vnd.in-toto+json", b"{}"),
            b"DSSEv1 28 application/vnd.in-toto+json 2 {}".to_vec()
        );
    }

    #[test]
    fn a_tag_is_not_a_digest() {
        let subject: Digest = format!("sha256:{}", "a".repeat(64)).parse().unwrap();
        assert!(matches!(
            check_names("example.com/app:v1", &subject, false),
            Err(Rejection::SignsTag(_))
        ));
        assert!(matches!(
            check_names(&format!("sha256:{}", "b".repeat(64)), &subject, false),
            Err(Rejection::OtherDigest { .. })
        ));
        assert!(check_names(subject.as_str(), &subject, false).is_ok());
    }
}
