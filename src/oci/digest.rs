//! Content digests (`algorithm:hex`) and streaming verification.
//!
//! Only the algorithms the image spec registers are accepted (sha256, sha512), always as
//! lowercase hex of the exact length, so a `Digest` can be used as a storage key as is.

use std::{fmt, str::FromStr};

use sha2::Digest as _;

/// A registered digest algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// SHA-256, 64 hex characters.
    Sha256,
    /// SHA-512, 128 hex characters.
    Sha512,
}

impl Algorithm {
    /// The algorithm's name in a digest (`sha256`).
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

/// A validated content digest, e.g. `sha256:e3b0c442…`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    /// The whole digest, `algorithm:hex`.
    text: String,
}

/// Why a string is not a digest we accept.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestError {
    /// Not `algorithm:hex`.
    #[error("digest must have the form algorithm:hex")]
    Malformed,
    /// An algorithm other than sha256 and sha512.
    #[error("unsupported digest algorithm {0:?} (sha256 and sha512 are supported)")]
    UnsupportedAlgorithm(String),
    /// Hex of the wrong length, or not lowercase hexadecimal.
    #[error("digest hex must be {0} lowercase hexadecimal characters")]
    BadHex(usize),
}

impl Digest {
    /// The algorithm that made the digest.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The digest's lowercase hex, without the algorithm.
    pub fn hex(&self) -> &str {
        &self.text[self.algorithm.as_str().len() + 1..]
    }

    /// The digest as text, `algorithm:hex`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The sha256 digest of `bytes`.
    pub fn sha256_of(bytes: &[u8]) -> Digest {
        let mut hasher = Hasher::new(Algorithm::Sha256);
        hasher.update(bytes);
        hasher.finish()
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (algorithm, hex) = s.split_once(':').ok_or(DigestError::Malformed)?;
        let algorithm = match algorithm {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            other if !other.is_empty() && !hex.is_empty() => {
                return Err(DigestError::UnsupportedAlgorithm(
                    other.chars().take(32).collect(),
                ));
            }
            _ => return Err(DigestError::Malformed),
        };
        let valid = hex.len() == algorithm.hex_len()
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !valid {
            return Err(DigestError::BadHex(algorithm.hex_len()));
        }
        Ok(Digest {
            algorithm,
            text: s.to_owned(),
        })
    }
}

impl TryFrom<String> for Digest {
    type Error = DigestError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Incremental hashing of content whose digest is checked at the end.
#[derive(Clone)]
pub enum Hasher {
    /// Hashing with SHA-256.
    Sha256(sha2::Sha256),
    /// Hashing with SHA-512.
    Sha512(sha2::Sha512),
}

impl Hasher {
    /// A hasher for `algorithm` that has seen nothing yet.
    pub fn new(algorithm: Algorithm) -> Hasher {
        match algorithm {
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }

    /// Hashes `bytes`, after everything before.
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }

    /// The digest of everything hashed.
    pub fn finish(self) -> Digest {
        let (algorithm, hex) = match self {
            Hasher::Sha256(h) => (Algorithm::Sha256, hex::encode(h.finalize())),
            Hasher::Sha512(h) => (Algorithm::Sha512, hex::encode(h.finalize())),
        };
        Digest {
            algorithm,
            text: format!("{}:{hex}", algorithm.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn hashes_match_known_values() {
        assert_eq!(Digest::sha256_of(b"").to_string(), EMPTY);
        let mut h = Hasher::new(Algorithm::Sha512);
        h.update(b"abc");
        assert!(
            h.finish()
                .to_string()
                .starts_with("sha512:ddaf35a193617aba")
        );
    }

    #[test]
    fn rejects_bad_digests() {
        assert_eq!("sha256".parse::<Digest>(), Err(DigestError::Malformed));
        assert_eq!("sha256:abc".parse::<Digest>(), Err(DigestError::BadHex(64)));
        let upper = EMPTY.to_uppercase().replace("SHA256", "sha256");
        assert_eq!(upper.parse::<Digest>(), Err(DigestError::BadHex(64)));
        assert!(matches!(
            "md5:d41d8cd98f00b204e9800998ecf8427e".parse::<Digest>(),
            Err(DigestError::UnsupportedAlgorithm(_))
        ));
    }

    proptest! {
        #[test]
        fn round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..64), long in any::<bool>()) {
            let mut h = Hasher::new(if long { Algorithm::Sha512 } else { Algorithm::Sha256 });
            h.update(&bytes);
            let d = h.finish();
            prop_assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
        }

        #[test]
        fn agrees_with_spec_grammar(s in "[a-z0-9]{1,8}(:[a-zA-Z0-9=_-]{0,130})?") {
            // The spec's grammar (image-spec descriptor.md) plus our registered-algorithm rule.
            let grammar = regex::Regex::new(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$").unwrap();
            if let Ok(d) = s.parse::<Digest>() {
                prop_assert!(grammar.is_match(&s));
                prop_assert_eq!(d.to_string(), s);
            }
        }

        #[test]
        fn never_panics(s in "\\PC{0,200}") {
            let _ = s.parse::<Digest>();
        }
    }
}
