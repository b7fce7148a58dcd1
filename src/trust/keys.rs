//! Public keys and the signature checks made with them: ECDSA P-256 and P-384, RSA (PKCS#1
//! v1.5 and PSS) and Ed25519, read from SubjectPublicKeyInfo (PEM `PUBLIC KEY` or the DER in
//! a certificate).

use der::Decode;
use ecdsa::signature::hazmat::PrehashVerifier;
use sha2::{Digest as _, Sha256, Sha384, Sha512};
use spki::{ObjectIdentifier, SubjectPublicKeyInfoRef};

const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// The smallest RSA modulus accepted: smaller keys are forgeable.
const RSA_MIN_BITS: usize = 2048;

/// A public key of one of the supported types.
#[derive(Clone)]
pub enum PublicKey {
    /// ECDSA over NIST P-256.
    P256(p256::ecdsa::VerifyingKey),
    /// ECDSA over NIST P-384.
    P384(p384::ecdsa::VerifyingKey),
    /// RSA, 2048 bits or more.
    Rsa(Box<rsa::RsaPublicKey>),
    /// Ed25519.
    Ed25519(ed25519_dalek::VerifyingKey),
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kind())
    }
}

/// A hash function a signature scheme names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl Hash {
    /// `bytes` hashed.
    pub fn digest(self, bytes: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha256 => Sha256::digest(bytes).to_vec(),
            Hash::Sha384 => Sha384::digest(bytes).to_vec(),
            Hash::Sha512 => Sha512::digest(bytes).to_vec(),
        }
    }
}

/// How a signature is checked: the scheme with its hash, and how ECDSA signatures are
/// encoded (ASN.1 DER in cosign and X.509, `r || s` in JWS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// ECDSA with a hash; `fixed` for the `r || s` encoding.
    Ecdsa {
        /// The hash of the message.
        hash: Hash,
        /// `r || s` rather than DER.
        fixed: bool,
    },
    /// RSASSA-PKCS1-v1_5 with a hash.
    RsaPkcs1(Hash),
    /// RSASSA-PSS with a hash (MGF1 with the same hash, salt as long as the hash).
    RsaPss(Hash),
    /// Ed25519 (pure: over the message itself).
    Ed25519,
}

/// Why a key is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not PEM, or not a `PUBLIC KEY` block.
    #[error("not a PEM public key (-----BEGIN PUBLIC KEY-----): {0}")]
    NotPem(String),
    /// The DER does not decode as a key of its declared type.
    #[error("the key does not decode: {0}")]
    Malformed(String),
    /// A key type or curve that is not supported.
    #[error(
        "unsupported key type {0} (supported: ECDSA P-256 and P-384, RSA of 2048 bits or \
         more, Ed25519)"
    )]
    Unsupported(String),
    /// An RSA key too short to be safe.
    #[error("RSA key of {0} bits is shorter than the minimum of {RSA_MIN_BITS}")]
    RsaTooShort(usize),
}

/// Why a signature does not check out with a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigError {
    /// The signature's bytes are not a signature of the key's type (a wrong length, bad
    /// DER: typically a truncated signature).
    Malformed,
    /// A well-formed signature that does not verify.
    Invalid,
    /// The scheme is not one this key can make (`alg` not matching the key).
    SchemeMismatch,
}

impl PublicKey {
    /// The key of a PEM `PUBLIC KEY` block (SubjectPublicKeyInfo).
    pub fn from_pem(pem: &str) -> Result<PublicKey, KeyError> {
        let (label, der) = pem_rfc7468::decode_vec(pem.trim().as_bytes())
            .map_err(|e| KeyError::NotPem(e.to_string()))?;
        if label != "PUBLIC KEY" {
            return Err(KeyError::NotPem(format!("a {label} block")));
        }
        PublicKey::from_spki_der(&der)
    }

    /// The key of a DER SubjectPublicKeyInfo.
    pub fn from_spki_der(der: &[u8]) -> Result<PublicKey, KeyError> {
        let spki = SubjectPublicKeyInfoRef::from_der(der)
            .map_err(|e| KeyError::Malformed(e.to_string()))?;
        let malformed = |e: &dyn std::fmt::Display| KeyError::Malformed(e.to_string());
        let bits = spki.subject_public_key.raw_bytes();
        match spki.algorithm.oid {
            EC_PUBLIC_KEY => {
                let curve: ObjectIdentifier = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .ok_or_else(|| KeyError::Malformed("EC key without a curve".into()))?
                    .decode_as()
                    .map_err(|e| malformed(&e))?;
                match curve {
                    SECP256R1 => p256::ecdsa::VerifyingKey::from_sec1_bytes(bits)
                        .map(PublicKey::P256)
                        .map_err(|e| malformed(&e)),
                    SECP384R1 => p384::ecdsa::VerifyingKey::from_sec1_bytes(bits)
                        .map(PublicKey::P384)
                        .map_err(|e| malformed(&e)),
                    other => Err(KeyError::Unsupported(format!("EC curve {other}"))),
                }
            }
            RSA_ENCRYPTION => {
                use rsa::pkcs1::DecodeRsaPublicKey;
                use rsa::traits::PublicKeyParts;
                let key = rsa::RsaPublicKey::from_pkcs1_der(bits).map_err(|e| malformed(&e))?;
                let size = key.size() * 8;
                if size < RSA_MIN_BITS {
                    return Err(KeyError::RsaTooShort(size));
                }
                Ok(PublicKey::Rsa(Box::new(key)))
            }
            ED25519 => {
                let bytes: [u8; 32] = bits
                    .try_into()
                    .map_err(|_| KeyError::Malformed("an Ed25519 key is 32 bytes".into()))?;
                ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                    .map(PublicKey::Ed25519)
                    .map_err(|e| malformed(&e))
            }
            other => Err(KeyError::Unsupported(other.to_string())),
        }
    }

    /// What kind of key this is, as reasons name it.
    pub fn kind(&self) -> &'static str {
        match self {
            PublicKey::P256(_) => "ECDSA P-256",
            PublicKey::P384(_) => "ECDSA P-384",
            PublicKey::Rsa(_) => "RSA",
            PublicKey::Ed25519(_) => "Ed25519",
        }
    }

    /// `sha256:` of the key's DER SubjectPublicKeyInfo: how results name a key.
    pub fn fingerprint(&self) -> String {
        use spki::EncodePublicKey;
        let der = match self {
            PublicKey::P256(k) => k.to_public_key_der().map(|d| d.into_vec()),
            PublicKey::P384(k) => k.to_public_key_der().map(|d| d.into_vec()),
            PublicKey::Rsa(k) => k.to_public_key_der().map(|d| d.into_vec()),
            PublicKey::Ed25519(k) => k.to_public_key_der().map(|d| d.into_vec()),
        }
        .unwrap_or_default();
        format!("sha256:{}", hex::encode(Sha256::digest(der)))
    }

    /// The scheme cosign uses with this key: ECDSA with the curve's hash (DER), RSA
    /// PKCS#1 v1.5 with SHA-256 (PSS accepted too, see [`PublicKey::verify_cosign`]),
    /// Ed25519.
    fn cosign_scheme(&self) -> Scheme {
        match self {
            PublicKey::P256(_) => Scheme::Ecdsa {
                hash: Hash::Sha256,
                fixed: false,
            },
            PublicKey::P384(_) => Scheme::Ecdsa {
                hash: Hash::Sha384,
                fixed: false,
            },
            PublicKey::Rsa(_) => Scheme::RsaPkcs1(Hash::Sha256),
            PublicKey::Ed25519(_) => Scheme::Ed25519,
        }
    }

    /// Checks a cosign signature over `message`. An RSA signature may be PKCS#1 v1.5 or PSS
    /// (both with SHA-256), an ECDSA one DER or `r || s`.
    pub fn verify_cosign(&self, message: &[u8], sig: &[u8]) -> Result<(), SigError> {
        let scheme = self.cosign_scheme();
        match (self, scheme) {
            (PublicKey::Rsa(_), _) => self
                .verify(Scheme::RsaPkcs1(Hash::Sha256), message, sig)
                .or_else(|_| self.verify(Scheme::RsaPss(Hash::Sha256), message, sig)),
            (_, Scheme::Ecdsa { hash, .. }) => {
                match self.verify(Scheme::Ecdsa { hash, fixed: false }, message, sig) {
                    Err(SigError::Malformed) => {
                        self.verify(Scheme::Ecdsa { hash, fixed: true }, message, sig)
                    }
                    other => other,
                }
            }
            _ => self.verify(scheme, message, sig),
        }
    }

    /// Checks `sig` over `message` under `scheme`.
    pub fn verify(&self, scheme: Scheme, message: &[u8], sig: &[u8]) -> Result<(), SigError> {
        match scheme {
            Scheme::Ed25519 => match self {
                PublicKey::Ed25519(key) => {
                    let sig = ed25519_dalek::Signature::from_slice(sig)
                        .map_err(|_| SigError::Malformed)?;
                    key.verify_strict(message, &sig)
                        .map_err(|_| SigError::Invalid)
                }
                _ => Err(SigError::SchemeMismatch),
            },
            Scheme::Ecdsa { hash, fixed } => {
                self.verify_prehash(scheme, &hash.digest(message), sig, fixed)
            }
            Scheme::RsaPkcs1(hash) | Scheme::RsaPss(hash) => {
                self.verify_prehash(scheme, &hash.digest(message), sig, false)
            }
        }
    }

    /// Checks `sig` over an already hashed message (`prehash`, the output of the scheme's
    /// hash). Not for Ed25519, which signs the message itself.
    pub fn verify_digest(
        &self,
        scheme: Scheme,
        prehash: &[u8],
        sig: &[u8],
    ) -> Result<(), SigError> {
        let fixed = matches!(scheme, Scheme::Ecdsa { fixed: true, .. });
        self.verify_prehash(scheme, prehash, sig, fixed)
    }

    fn verify_prehash(
        &self,
        scheme: Scheme,
        prehash: &[u8],
        sig: &[u8],
        fixed: bool,
    ) -> Result<(), SigError> {
        match (self, scheme) {
            (PublicKey::P256(key), Scheme::Ecdsa { .. }) => {
                let sig = if fixed {
                    p256::ecdsa::Signature::from_slice(sig)
                } else {
                    p256::ecdsa::Signature::from_der(sig)
                }
                .map_err(|_| SigError::Malformed)?;
                key.verify_prehash(prehash, &sig)
                    .map_err(|_| SigError::Invalid)
            }
            (PublicKey::P384(key), Scheme::Ecdsa { .. }) => {
                let sig = if fixed {
                    p384::ecdsa::Signature::from_slice(sig)
                } else {
                    p384::ecdsa::Signature::from_der(sig)
                }
                .map_err(|_| SigError::Malformed)?;
                key.verify_prehash(prehash, &sig)
                    .map_err(|_| SigError::Invalid)
            }
            (PublicKey::Rsa(key), Scheme::RsaPkcs1(hash) | Scheme::RsaPss(hash)) => {
                use rsa::traits::PublicKeyParts;
                if sig.len() != key.size() {
                    return Err(SigError::Malformed);
                }
                let pss = matches!(scheme, Scheme::RsaPss(_));
                let result = match (hash, pss) {
                    (Hash::Sha256, false) => {
                        key.verify(rsa::Pkcs1v15Sign::new::<Sha256>(), prehash, sig)
                    }
                    (Hash::Sha384, false) => {
                        key.verify(rsa::Pkcs1v15Sign::new::<Sha384>(), prehash, sig)
                    }
                    (Hash::Sha512, false) => {
                        key.verify(rsa::Pkcs1v15Sign::new::<Sha512>(), prehash, sig)
                    }
                    (Hash::Sha256, true) => key.verify(rsa::Pss::new::<Sha256>(), prehash, sig),
                    (Hash::Sha384, true) => key.verify(rsa::Pss::new::<Sha384>(), prehash, sig),
                    (Hash::Sha512, true) => key.verify(rsa::Pss::new::<Sha512>(), prehash, sig),
                };
                result.map_err(|_| SigError::Invalid)
            }
            _ => Err(SigError::SchemeMismatch),
        }
    }
}
