//! notation signatures: a JWS (JSON serialisation) whose protected header names the
//! algorithm and notation's payload type, whose unprotected header carries the signing
//! certificate chain (`x5c`), and whose payload names the signed artifact's digest.

use base64::{
    Engine,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use serde::Deserialize;
use serde_json::Value;

use super::{
    Rejection, TrustPolicy, Verified,
    keys::{Hash, PublicKey, Scheme, SigError},
    policy::Identity,
    x509,
};
use crate::oci::Digest;

/// The content type of notation's signed payload.
pub const PAYLOAD_TYPE: &str = "application/vnd.cncf.notary.payload.v1+json";

/// The critical headers notation defines (any other marked critical is refused).
const KNOWN_CRITICAL: [&str; 3] = [
    "io.cncf.notary.signingScheme",
    "io.cncf.notary.expiry",
    "io.cncf.notary.authenticSigningTime",
];

#[derive(Deserialize)]
struct Jws {
    payload: String,
    protected: String,
    #[serde(default)]
    header: Header,
    signature: String,
}

#[derive(Deserialize, Default)]
struct Header {
    #[serde(default)]
    x5c: Vec<String>,
}

#[derive(Deserialize)]
struct Protected {
    alg: String,
    cty: Option<String>,
    #[serde(default)]
    crit: Vec<String>,
}

/// The scheme a JWS `alg` names, and whether `key` may make it (the curve matches).
fn scheme_of(alg: &str) -> Option<Scheme> {
    Some(match alg {
        "ES256" => Scheme::Ecdsa {
            hash: Hash::Sha256,
            fixed: true,
        },
        "ES384" => Scheme::Ecdsa {
            hash: Hash::Sha384,
            fixed: true,
        },
        "PS256" => Scheme::RsaPss(Hash::Sha256),
        "PS384" => Scheme::RsaPss(Hash::Sha384),
        "PS512" => Scheme::RsaPss(Hash::Sha512),
        "EdDSA" => Scheme::Ed25519,
        _ => return None,
    })
}

fn alg_fits(alg: &str, key: &PublicKey) -> bool {
    matches!(
        (alg, key),
        ("ES256", PublicKey::P256(_))
            | ("ES384", PublicKey::P384(_))
            | ("PS256" | "PS384" | "PS512", PublicKey::Rsa(_))
            | ("EdDSA", PublicKey::Ed25519(_))
    )
}

/// Verifies a notation JWS envelope attached to `subject` under `policy`'s notation
/// statement and trust store, with certificates checked at unix time `now`.
pub fn verify_jws(
    subject: &Digest,
    blob: &[u8],
    policy: &TrustPolicy,
    now: i64,
) -> Result<Verified, Rejection> {
    let Some(statement) = policy
        .notation
        .as_ref()
        .filter(|_| !policy.trust_store.is_empty())
    else {
        return Err(Rejection::NoNotationTrust(policy.name.clone()));
    };
    let jws: Jws =
        serde_json::from_slice(blob).map_err(|e| Rejection::Malformed(format!("JWS: {e}")))?;
    let b64url = |what: &str, s: &str| {
        URL_SAFE_NO_PAD
            .decode(s.trim_end_matches('='))
            .map_err(|e| Rejection::Malformed(format!("{what} is not base64url: {e}")))
    };
    let protected: Protected = serde_json::from_slice(&b64url("protected", &jws.protected)?)
        .map_err(|e| Rejection::Malformed(format!("protected header: {e}")))?;
    let scheme = scheme_of(&protected.alg)
        .ok_or_else(|| Rejection::UnsupportedAlgorithm(protected.alg.clone()))?;
    let cty = protected.cty.unwrap_or_default();
    if cty != PAYLOAD_TYPE {
        return Err(Rejection::ContentType(cty));
    }
    if let Some(unknown) = protected
        .crit
        .iter()
        .find(|c| !KNOWN_CRITICAL.contains(&c.as_str()))
    {
        return Err(Rejection::UnknownCritical(unknown.clone()));
    }
    if jws.header.x5c.is_empty() || jws.header.x5c.len() > x509::CHAIN_MAX {
        return Err(Rejection::ChainLength(jws.header.x5c.len()));
    }
    let chain = jws
        .header
        .x5c
        .iter()
        .map(|c| {
            STANDARD
                .decode(c)
                .map_err(|e| Rejection::BadCertificate(format!("x5c entry is not base64: {e}")))
                .and_then(|der| x509::from_der(&der))
        })
        .collect::<Result<Vec<_>, _>>()?;
    x509::validate_chain(&chain, &policy.trust_store, now)?;
    let leaf = &chain[0];
    let key = x509::public_key(leaf)?;
    if !alg_fits(&protected.alg, &key) {
        return Err(Rejection::AlgorithmKeyMismatch {
            alg: protected.alg,
            key: key.kind().into(),
        });
    }
    let signing_input = format!("{}.{}", jws.protected, jws.payload);
    let sig = b64url("signature", &jws.signature)?;
    match key.verify(scheme, signing_input.as_bytes(), &sig) {
        Ok(()) => {}
        Err(SigError::Malformed) => {
            return Err(Rejection::MalformedSignature(format!(
                "the {} key",
                key.kind()
            )));
        }
        Err(_) => return Err(Rejection::CertificateKeyMismatch(x509::subject(leaf))),
    }
    let payload: Value = serde_json::from_slice(&b64url("payload", &jws.payload)?)
        .map_err(|e| Rejection::MalformedPayload(e.to_string()))?;
    let signed = payload
        .pointer("/targetArtifact/digest")
        .and_then(Value::as_str)
        .ok_or_else(|| Rejection::MalformedPayload("no targetArtifact.digest".into()))?;
    match signed.parse::<Digest>() {
        Ok(d) if &d == subject => {}
        Ok(d) => {
            return Err(Rejection::SubjectMismatch {
                signed: d.to_string(),
                subject: subject.to_string(),
            });
        }
        Err(_) => return Err(Rejection::SignsTag(signed.to_owned())),
    }
    let attributes = x509::subject_attributes(leaf);
    let trusted = statement
        .trusted_identities
        .iter()
        .any(|identity| match identity {
            Identity::Any => true,
            Identity::Subject(wanted) => wanted.iter().all(|w| attributes.contains(w)),
        });
    if !trusted {
        return Err(Rejection::IdentityNotTrusted(x509::subject(leaf)));
    }
    Ok(Verified {
        identity: x509::subject(leaf),
        expires_at: chain.iter().map(x509::not_after).min(),
    })
}
