//! X.509 certificate chains as notation uses them: every certificate valid at the time of
//! the check, the signing (leaf) certificate for code signing, each issuer a CA that signed
//! the certificate before it, and the chain ending at (or issued by) a trust store
//! certificate.

use der::{
    Decode, Encode,
    asn1::{Ia5StringRef, PrintableStringRef, Utf8StringRef},
};
use spki::ObjectIdentifier;
use x509_cert::{
    Certificate,
    ext::pkix::{BasicConstraints, ExtendedKeyUsage},
};

use super::{
    Rejection,
    keys::{Hash, PublicKey, Scheme},
};

/// The most certificates a chain may hold (a bound on the work of a hostile envelope).
pub const CHAIN_MAX: usize = 8;

const EXTENDED_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37");
const BASIC_CONSTRAINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.19");
const CODE_SIGNING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.3");

/// A certificate of DER bytes.
pub fn from_der(der: &[u8]) -> Result<Certificate, Rejection> {
    Certificate::from_der(der).map_err(|e| Rejection::BadCertificate(e.to_string()))
}

/// The certificates of a PEM text (one or more `CERTIFICATE` blocks).
pub fn from_pem(pem: &str) -> Result<Vec<Certificate>, String> {
    let certs = Certificate::load_pem_chain(pem.trim().as_bytes()).map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no CERTIFICATE block".into());
    }
    Ok(certs)
}

/// The subject's attributes in the certificate's order, with their short names.
pub fn subject_attributes(cert: &Certificate) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for rdn in cert.tbs_certificate.subject.0.iter() {
        for atv in rdn.0.iter() {
            let name = match atv.oid.to_string().as_str() {
                "2.5.4.3" => "CN".to_owned(),
                "2.5.4.6" => "C".to_owned(),
                "2.5.4.7" => "L".to_owned(),
                "2.5.4.8" => "ST".to_owned(),
                "2.5.4.10" => "O".to_owned(),
                "2.5.4.11" => "OU".to_owned(),
                other => other.to_owned(),
            };
            let value = atv
                .value
                .decode_as::<Utf8StringRef<'_>>()
                .map(|s| s.as_str().to_owned())
                .or_else(|_| {
                    atv.value
                        .decode_as::<PrintableStringRef<'_>>()
                        .map(|s| s.as_str().to_owned())
                })
                .or_else(|_| {
                    atv.value
                        .decode_as::<Ia5StringRef<'_>>()
                        .map(|s| s.as_str().to_owned())
                })
                .unwrap_or_default();
            out.push((name, value));
        }
    }
    out
}

/// The subject as reasons and results show it (`C=US, O=Acme, CN=builder`).
pub fn subject(cert: &Certificate) -> String {
    subject_attributes(cert)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The certificate's public key.
pub fn public_key(cert: &Certificate) -> Result<PublicKey, Rejection> {
    let der = cert
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| Rejection::BadCertificate(e.to_string()))?;
    PublicKey::from_spki_der(&der).map_err(|e| Rejection::UnsupportedKey(e.to_string()))
}

fn extension<'a, T: Decode<'a>>(cert: &'a Certificate, oid: ObjectIdentifier) -> Option<T> {
    cert.tbs_certificate
        .extensions
        .as_ref()?
        .iter()
        .find(|e| e.extn_id == oid)
        .and_then(|e| T::from_der(e.extn_value.as_bytes()).ok())
}

fn is_ca(cert: &Certificate) -> bool {
    extension::<BasicConstraints>(cert, BASIC_CONSTRAINTS).is_some_and(|b| b.ca)
}

fn for_code_signing(cert: &Certificate) -> bool {
    extension::<ExtendedKeyUsage>(cert, EXTENDED_KEY_USAGE)
        .is_some_and(|e| e.0.contains(&CODE_SIGNING))
}

/// When `cert` expires (unix seconds).
pub fn not_after(cert: &Certificate) -> i64 {
    let t = cert
        .tbs_certificate
        .validity
        .not_after
        .to_unix_duration()
        .as_secs();
    i64::try_from(t).unwrap_or(i64::MAX)
}

/// Refused unless `cert` is valid at `now`.
fn check_validity(cert: &Certificate, now: i64) -> Result<(), Rejection> {
    let validity = &cert.tbs_certificate.validity;
    let secs = |t: &x509_cert::time::Time| {
        i64::try_from(t.to_unix_duration().as_secs()).unwrap_or(i64::MAX)
    };
    let (not_before, not_after) = (secs(&validity.not_before), secs(&validity.not_after));
    if now < not_before {
        return Err(Rejection::CertificateNotYetValid {
            subject: subject(cert),
            not_before,
        });
    }
    if now > not_after {
        return Err(Rejection::CertificateExpired {
            subject: subject(cert),
            not_after,
        });
    }
    Ok(())
}

/// Whether `issuer`'s key made `cert`'s signature.
fn signed_by(cert: &Certificate, issuer: &Certificate) -> Result<bool, Rejection> {
    let scheme = match cert.signature_algorithm.oid.to_string().as_str() {
        "1.2.840.10045.4.3.2" => Scheme::Ecdsa {
            hash: Hash::Sha256,
            fixed: false,
        },
        "1.2.840.10045.4.3.3" => Scheme::Ecdsa {
            hash: Hash::Sha384,
            fixed: false,
        },
        "1.2.840.10045.4.3.4" => Scheme::Ecdsa {
            hash: Hash::Sha512,
            fixed: false,
        },
        "1.2.840.113549.1.1.11" => Scheme::RsaPkcs1(Hash::Sha256),
        "1.2.840.113549.1.1.12" => Scheme::RsaPkcs1(Hash::Sha384),
        "1.2.840.113549.1.1.13" => Scheme::RsaPkcs1(Hash::Sha512),
        "1.3.101.112" => Scheme::Ed25519,
        other => {
            return Err(Rejection::BadCertificate(format!(
                "certificate {} is signed with unsupported algorithm {other}",
                subject(cert)
            )));
        }
    };
    let tbs = cert
        .tbs_certificate
        .to_der()
        .map_err(|e| Rejection::BadCertificate(e.to_string()))?;
    let Some(sig) = cert.signature.as_bytes() else {
        return Ok(false);
    };
    let key = public_key(issuer)?;
    Ok(key.verify(scheme, &tbs, sig).is_ok())
}

/// Validates `chain` (leaf first) against the trust store `store` at unix time `now`.
pub fn validate_chain(
    chain: &[Certificate],
    store: &[Certificate],
    now: i64,
) -> Result<(), Rejection> {
    if chain.is_empty() || chain.len() > CHAIN_MAX {
        return Err(Rejection::ChainLength(chain.len()));
    }
    for cert in chain {
        check_validity(cert, now)?;
    }
    let leaf = &chain[0];
    if !for_code_signing(leaf) {
        return Err(Rejection::NotCodeSigning(subject(leaf)));
    }
    for pair in chain.windows(2) {
        let (cert, issuer) = (&pair[0], &pair[1]);
        if !is_ca(issuer) {
            return Err(Rejection::NotCa(subject(issuer)));
        }
        if !signed_by(cert, issuer)? {
            return Err(Rejection::BrokenChain(subject(cert)));
        }
    }
    let last = &chain[chain.len() - 1];
    let last_der = last
        .to_der()
        .map_err(|e| Rejection::BadCertificate(e.to_string()))?;
    for anchor in store {
        if anchor.to_der().is_ok_and(|d| d == last_der) {
            return Ok(());
        }
        if is_ca(anchor)
            && check_validity(anchor, now).is_ok()
            && anchor.tbs_certificate.subject == last.tbs_certificate.issuer
            && signed_by(last, anchor).unwrap_or(false)
        {
            return Ok(());
        }
    }
    Err(Rejection::UntrustedCa(subject(leaf)))
}
