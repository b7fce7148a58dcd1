//! Repository names, tags and manifest references, validated against the distribution spec
//! grammar (spec.md, "Pulling manifests": `<name>` and `<reference>`).

use std::{fmt, str::FromStr, sync::LazyLock};

use regex::Regex;

use super::Digest;

/// Longest repository name accepted; several clients break past 255 characters.
pub const MAX_NAME_LEN: usize = 255;

static NAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$")
        .expect("valid regex")
});
static TAG: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$").expect("valid regex"));

/// A repository name such as `library/alpine`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName(String);

/// A tag such as `latest`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

/// What a manifest request names: a tag or a digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reference {
    /// By tag.
    Tag(Tag),
    /// By digest.
    Digest(Digest),
}

/// Why a string is not a repository name or tag.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    /// A name longer than [`MAX_NAME_LEN`].
    #[error("repository name is longer than {MAX_NAME_LEN} characters")]
    TooLong,
    /// A name outside the spec's grammar.
    #[error(
        "invalid repository name: path components are lowercase letters and digits separated by '.', '_', '__' or '-'"
    )]
    Invalid,
    /// A tag outside the spec's grammar.
    #[error("invalid tag: up to 128 characters of [a-zA-Z0-9_.-], not starting with '.' or '-'")]
    InvalidTag,
}

impl FromStr for RepoName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong);
        }
        if !NAME.is_match(s) {
            return Err(NameError::Invalid);
        }
        Ok(RepoName(s.to_owned()))
    }
}

impl FromStr for Tag {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if TAG.is_match(s) {
            Ok(Tag(s.to_owned()))
        } else {
            Err(NameError::InvalidTag)
        }
    }
}

impl TryFrom<String> for RepoName {
    type Error = NameError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl TryFrom<String> for Tag {
    type Error = NameError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl serde::Serialize for RepoName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl serde::Serialize for Tag {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl RepoName {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Its namespace: the first path component (the whole name when it has one component).
    pub fn namespace(&self) -> &str {
        self.0.split('/').next().unwrap_or(&self.0)
    }
}

impl Tag {
    /// The tag as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => t.fmt(f),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn examples() {
        assert!("library/alpine".parse::<RepoName>().is_ok());
        assert!("a.b__c--d/e_f".parse::<RepoName>().is_ok());
        for bad in ["", "A", "a//b", "a/../b", "..", "a/", "/a", "a___b", "a.-b"] {
            assert_eq!(bad.parse::<RepoName>(), Err(NameError::Invalid), "{bad}");
        }
        assert_eq!("a".repeat(256).parse::<RepoName>(), Err(NameError::TooLong));
        assert!("v1.0_RC-1".parse::<Tag>().is_ok());
        assert!(".hidden".parse::<Tag>().is_err());
        assert!("x".repeat(129).parse::<Tag>().is_err());
    }

    proptest! {
        #[test]
        fn names_round_trip(s in "[a-z0-9]{1,5}([._-][a-z0-9]{1,5}){0,2}(/[a-z0-9]{1,5}(__[a-z0-9]{1,3})?){0,3}") {
            let n: RepoName = s.parse().unwrap();
            prop_assert_eq!(n.to_string(), s);
        }

        #[test]
        fn names_agree_with_spec_regex(s in "[a-zA-Z0-9._/-]{0,40}") {
            let spec = Regex::new(r"^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$").unwrap();
            prop_assert_eq!(s.parse::<RepoName>().is_ok(), spec.is_match(&s));
        }

        #[test]
        fn tags_agree_with_spec_regex(s in "[a-zA-Z0-9._/:-]{0,140}") {
            let spec = Regex::new(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$").unwrap();
            prop_assert_eq!(s.parse::<Tag>().is_ok(), spec.is_match(&s));
            if let Ok(t) = s.parse::<Tag>() { prop_assert_eq!(t.to_string(), s); }
        }

        #[test]
        fn never_panics(s in "\\PC{0,300}") {
            let _ = s.parse::<RepoName>();
            let _ = s.parse::<Tag>();
        }
    }
}
