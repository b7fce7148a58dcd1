//! Trust policies: which signatures an image of a scope (a namespace or repository prefix)
//! needs, and what a pull without one meets. Each holds cosign public keys, and notation's
//! trust-policy statement (its `trustedIdentities` and `signatureVerification.level`) with
//! the trust store certificates it is checked against. Parsed whole or refused whole.

use serde_json::Value;
use x509_cert::Certificate;

use super::{KeyError, PublicKey, x509};
use crate::oci::RepoName;

/// The most keys, or trust store certificates, one policy holds.
pub const ENTRIES_MAX: usize = 32;
/// The longest PEM text accepted for one key or certificate.
pub const PEM_MAX_BYTES: usize = 16 * 1024;

/// What a pull of an image without a verified signature meets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Refused (`DENIED`, with the reason).
    Enforce,
    /// Served, logged and counted.
    Audit,
    /// Served; signatures are still verified and shown.
    Off,
}

impl Mode {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Audit => "audit",
            Mode::Off => "off",
        }
    }

    /// The mode a name names.
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "enforce" => Some(Mode::Enforce),
            "audit" => Some(Mode::Audit),
            "off" => Some(Mode::Off),
            _ => None,
        }
    }
}

/// A signer notation's statement trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// `*`: any signer whose chain leads to the trust store.
    Any,
    /// `x509.subject: C=US, O=…`: a leaf certificate whose subject holds all these.
    Subject(Vec<(String, String)>),
}

/// The parts of notation's trust-policy statement this registry applies.
#[derive(Debug, Clone)]
pub struct NotationStatement {
    /// `trustedIdentities`.
    pub trusted_identities: Vec<Identity>,
    /// The statement as given, stored and shown back.
    pub raw: Value,
}

/// A trust policy, every part parsed.
#[derive(Debug, Clone)]
pub struct TrustPolicy {
    /// Its name.
    pub name: String,
    /// `*` or a repository-name prefix (`acme` covers `acme` and `acme/...`).
    pub scope: String,
    /// What unsigned pulls meet.
    pub mode: Mode,
    /// cosign public keys.
    pub cosign_keys: Vec<PublicKey>,
    /// notation's statement, if notation signatures are trusted.
    pub notation: Option<NotationStatement>,
    /// The certificates notation chains must lead to.
    pub trust_store: Vec<Certificate>,
}

/// Why a policy is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A bad name.
    #[error(
        "name: {0:?} is not 1 to 64 lowercase letters, digits, '.', '_' or '-' starting with \
         a letter or digit"
    )]
    Name(String),
    /// A bad scope.
    #[error("scope: {0:?} is neither \"*\" nor a repository name prefix (like acme or acme/app)")]
    Scope(String),
    /// A bad mode.
    #[error("mode: {0:?} is not one of enforce, audit, off")]
    Mode(String),
    /// A cosign key that does not parse.
    #[error("cosign_keys[{0}]: {1}")]
    Key(usize, KeyError),
    /// A trust store entry that does not parse.
    #[error("trust_store[{0}]: not a PEM certificate: {1}")]
    Certificate(usize, String),
    /// A bad notation statement.
    #[error("notation: {0}")]
    Notation(String),
    /// Too many entries, or one too large.
    #[error("{0}")]
    TooLarge(String),
}

/// Whether `name` is a good policy name.
fn good_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && name.as_bytes()[0].is_ascii_alphanumeric()
}

impl TrustPolicy {
    /// The policy of these parts, or why not.
    pub fn parse(
        name: &str,
        scope: &str,
        mode: &str,
        cosign_keys: &[String],
        notation: Option<&Value>,
        trust_store: &[String],
    ) -> Result<TrustPolicy, PolicyError> {
        if !good_name(name) {
            return Err(PolicyError::Name(name.into()));
        }
        if scope != "*" && scope.parse::<RepoName>().is_err() {
            return Err(PolicyError::Scope(scope.into()));
        }
        let mode = Mode::parse(mode).ok_or_else(|| PolicyError::Mode(mode.into()))?;
        for (what, list) in [("cosign_keys", cosign_keys), ("trust_store", trust_store)] {
            if list.len() > ENTRIES_MAX {
                return Err(PolicyError::TooLarge(format!(
                    "{what}: {} entries, more than {ENTRIES_MAX}",
                    list.len()
                )));
            }
            if let Some(i) = list.iter().position(|p| p.len() > PEM_MAX_BYTES) {
                return Err(PolicyError::TooLarge(format!(
                    "{what}[{i}]: longer than {PEM_MAX_BYTES} bytes"
                )));
            }
        }
        let cosign_keys = cosign_keys
            .iter()
            .enumerate()
            .map(|(i, pem)| PublicKey::from_pem(pem).map_err(|e| PolicyError::Key(i, e)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut store = Vec::new();
        for (i, pem) in trust_store.iter().enumerate() {
            store.extend(x509::from_pem(pem).map_err(|e| PolicyError::Certificate(i, e))?);
        }
        let notation = notation
            .filter(|v| !v.is_null())
            .map(parse_statement)
            .transpose()?;
        if notation.is_some() && store.is_empty() {
            return Err(PolicyError::Notation(
                "a notation statement needs trust_store certificates".into(),
            ));
        }
        Ok(TrustPolicy {
            name: name.into(),
            scope: scope.into(),
            mode,
            cosign_keys,
            notation,
            trust_store: store,
        })
    }

    /// Whether this policy's scope covers repository `repo`.
    pub fn covers(&self, repo: &str) -> bool {
        covers(&self.scope, repo)
    }
}

/// Whether `scope` covers repository `repo`: `*`, the repository itself, or a prefix of
/// whole path components.
pub fn covers(scope: &str, repo: &str) -> bool {
    scope == "*"
        || repo == scope
        || repo
            .strip_prefix(scope)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// notation's statement: `trustedIdentities` (required) and `signatureVerification.level`.
fn parse_statement(value: &Value) -> Result<NotationStatement, PolicyError> {
    let bad = |m: &str| PolicyError::Notation(m.into());
    let object = value
        .as_object()
        .ok_or_else(|| bad("a trust-policy statement is a JSON object"))?;
    if let Some(level) = object.get("signatureVerification") {
        let level = level
            .get("level")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("signatureVerification.level is missing"))?;
        if level != "strict" {
            return Err(PolicyError::Notation(format!(
                "signatureVerification.level {level:?}: only \"strict\" is supported (the \
                 policy's mode says what an unverified pull meets)"
            )));
        }
    }
    let identities = object
        .get("trustedIdentities")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| bad("trustedIdentities: a non-empty array of strings is required"))?;
    let trusted_identities = identities
        .iter()
        .map(|v| {
            let s = v
                .as_str()
                .ok_or_else(|| bad("trustedIdentities: entries are strings"))?;
            parse_identity(s)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(NotationStatement {
        trusted_identities,
        raw: value.clone(),
    })
}

/// `*` or `x509.subject: K=V, K=V`.
fn parse_identity(s: &str) -> Result<Identity, PolicyError> {
    if s.trim() == "*" {
        return Ok(Identity::Any);
    }
    let Some(dn) = s.trim().strip_prefix("x509.subject:") else {
        return Err(PolicyError::Notation(format!(
            "trustedIdentities: {s:?} is neither \"*\" nor \"x509.subject: …\""
        )));
    };
    let pairs = dn
        .split(',')
        .map(|part| {
            let (k, v) = part.split_once('=').ok_or_else(|| {
                PolicyError::Notation(format!("trustedIdentities: {part:?} is not KEY=value"))
            })?;
            Ok((k.trim().to_ascii_uppercase(), v.trim().to_owned()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if pairs.iter().any(|(k, v)| k.is_empty() || v.is_empty()) {
        return Err(PolicyError::Notation(format!(
            "trustedIdentities: {s:?} has an empty attribute"
        )));
    }
    Ok(Identity::Subject(pairs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scope_covers_whole_components() {
        assert!(covers("acme", "acme"));
        assert!(covers("acme", "acme/app"));
        assert!(!covers("acme", "acmeco/app"));
        assert!(covers("*", "anything/at/all"));
    }

    #[test]
    fn identities_parse() {
        assert_eq!(parse_identity("*"), Ok(Identity::Any));
        assert_eq!(
            parse_identity("x509.subject: C=US, O=Acme, CN=builder"),
            Ok(Identity::Subject(vec![
                ("C".into(), "US".into()),
                ("O".into(), "Acme".into()),
                ("CN".into(), "builder".into())
            ]))
        );
        assert!(parse_identity("email: a@b").is_err());
    }
}
