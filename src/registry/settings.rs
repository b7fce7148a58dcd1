//! Tag rules of a repository: mutability (mutable, immutable, or immutable except tags
//! matching patterns, as ECR's `IMMUTABLE_WITH_EXCLUSION`) and protected patterns that only
//! callers allowed to override (maintainers) may push or delete.
//!
//! Patterns are regular expressions matched against the whole tag.

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::{
    Registry,
    policies::{InvalidPattern, RulesError},
};
use crate::{
    error::{Error, Result},
    meta::settings::StoredSettings,
    oci::{Digest, Reference, RepoName, Tag},
};

/// Whether the caller may override protected tag patterns: maintainers (and owners and
/// administrators) may; access control decides, and the HTTP layer passes its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Override {
    /// The caller may push and delete protected tags.
    Allowed,
    /// Protected tags are refused to the caller.
    Denied,
}

impl Override {
    /// `Allowed` for a caller who maintains the repository.
    pub fn for_maintainer(maintains: bool) -> Override {
        if maintains {
            Override::Allowed
        } else {
            Override::Denied
        }
    }
}

/// Whether the tags of a repository may move to another manifest once pushed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mutability {
    /// Every tag may move.
    #[default]
    Mutable,
    /// No tag may move.
    Immutable,
    /// Immutable, except tags matching `mutable_patterns`.
    ImmutableWithExclusion,
}

impl Mutability {
    fn as_str(self) -> &'static str {
        match self {
            Mutability::Mutable => "mutable",
            Mutability::Immutable => "immutable",
            Mutability::ImmutableWithExclusion => "immutable_with_exclusion",
        }
    }

    /// The mutability [`Mutability::as_str`] wrote; `None` for anything else.
    fn parse(s: &str) -> Option<Mutability> {
        match s {
            "mutable" => Some(Mutability::Mutable),
            "immutable" => Some(Mutability::Immutable),
            "immutable_with_exclusion" => Some(Mutability::ImmutableWithExclusion),
            _ => None,
        }
    }
}

/// The tag rules of one repository, as the API reads and writes them.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TagRules {
    /// Whether tags may move.
    pub tag_mutability: Mutability,
    /// With `immutable_with_exclusion`: tags matching any of these stay mutable.
    pub mutable_patterns: Vec<String>,
    /// Tags matching any of these are pushed, moved and deleted only with an override.
    pub protected_patterns: Vec<String>,
}

/// [`TagRules`] with their patterns compiled.
struct Compiled {
    mutability: Mutability,
    mutable: Vec<Regex>,
    protected: Vec<Regex>,
}

impl TagRules {
    /// Compiles every pattern; the first invalid one is reported with its position.
    fn compile(&self) -> Result<Compiled, InvalidPattern> {
        let all = |field: &str, patterns: &[String]| -> Result<Vec<Regex>, InvalidPattern> {
            patterns
                .iter()
                .enumerate()
                .map(|(i, p)| super::policies::compile(&format!("{field}[{i}]"), p))
                .collect()
        };
        Ok(Compiled {
            mutability: self.tag_mutability,
            mutable: all("mutable_patterns", &self.mutable_patterns)?,
            protected: all("protected_patterns", &self.protected_patterns)?,
        })
    }
}

impl Compiled {
    fn may_move(&self, tag: &str) -> bool {
        match self.mutability {
            Mutability::Mutable => true,
            Mutability::Immutable => false,
            Mutability::ImmutableWithExclusion => self.mutable.iter().any(|r| r.is_match(tag)),
        }
    }

    fn protected(&self, tag: &str) -> bool {
        self.protected.iter().any(|r| r.is_match(tag))
    }
}

/// The tag rules of `repo` as `stored` (the defaults when none were).
fn rules_of(repo: &RepoName, stored: Option<StoredSettings>) -> Result<TagRules> {
    let Some(stored) = stored else {
        return Ok(TagRules::default());
    };
    let list = |field: &str, s: &str| {
        serde_json::from_str::<Vec<String>>(s).map_err(|e| corrupt(repo, format!("{field}: {e}")))
    };
    Ok(TagRules {
        tag_mutability: Mutability::parse(&stored.tag_mutability)
            .ok_or_else(|| corrupt(repo, format!("tag_mutability: {:?}", stored.tag_mutability)))?,
        mutable_patterns: list("mutable_patterns", &stored.mutable_patterns)?,
        protected_patterns: list("protected_patterns", &stored.protected_patterns)?,
    })
}

/// [`TagRules::compile`] for rules read back from the index, where an invalid pattern is
/// corruption.
fn compiled(repo: &RepoName, rules: &TagRules) -> Result<Compiled> {
    rules.compile().map_err(|e| corrupt(repo, e))
}

/// Stored tag rules that do not read back. They are written by `put_tag_rules` only, so
/// this is corruption, and guessing (say, "mutable" and no protected tags) would lift the
/// rules silently.
fn corrupt(repo: &RepoName, what: impl std::fmt::Display) -> Error {
    Error::Internal(anyhow::anyhow!(
        "stored tag rules of {repo} are invalid: {what}"
    ))
}

/// For a push under `tag` to `repo`, whose tag rules are `stored`: refuses a protected tag
/// without an override, and says whether the tag may move to another manifest.
pub(super) fn check_tag_push(
    repo: &RepoName,
    tag: &Tag,
    who: Override,
    stored: Option<StoredSettings>,
) -> Result<bool> {
    let rules = compiled(repo, &rules_of(repo, stored)?)?;
    if rules.protected(tag.as_str()) && who != Override::Allowed {
        return Err(Error::Denied(format!(
            "tag {tag} of {repo} is protected: only maintainers may push it"
        )));
    }
    Ok(rules.may_move(tag.as_str()))
}

impl Registry {
    /// The tag rules of `repo` (the defaults when none were set).
    pub async fn tag_rules(&self, repo: &RepoName) -> Result<TagRules> {
        rules_of(repo, self.meta.repository_settings(repo).await?)
    }

    /// Replaces the tag rules of `repo`, after checking every pattern.
    pub async fn put_tag_rules(&self, repo: &RepoName, rules: &TagRules) -> Result<(), RulesError> {
        rules.compile()?;
        let json = |v: &[String]| serde_json::to_string(v).unwrap_or_else(|_| "[]".into());
        let stored = StoredSettings {
            tag_mutability: rules.tag_mutability.as_str().into(),
            mutable_patterns: json(&rules.mutable_patterns),
            protected_patterns: json(&rules.protected_patterns),
        };
        self.meta.put_repository_settings(repo, &stored).await?;
        Ok(())
    }

    /// For a delete of `reference`: refuses, without an override, to remove a protected tag
    /// (or, by digest, a manifest carrying one).
    pub(super) async fn check_delete(
        &self,
        repo: &RepoName,
        reference: &Reference,
        who: Override,
    ) -> Result<()> {
        if who == Override::Allowed {
            return Ok(());
        }
        let rules = compiled(repo, &self.tag_rules(repo).await?)?;
        if rules.protected.is_empty() {
            return Ok(());
        }
        let protected = match reference {
            Reference::Tag(tag) => rules.protected(tag.as_str()).then(|| tag.to_string()),
            Reference::Digest(digest) => self.protected_tag_on(repo, digest, &rules).await?,
        };
        match protected {
            Some(tag) => Err(Error::Denied(format!(
                "tag {tag} of {repo} is protected: only maintainers may delete it"
            ))),
            None => Ok(()),
        }
    }

    async fn protected_tag_on(
        &self,
        repo: &RepoName,
        digest: &Digest,
        rules: &Compiled,
    ) -> Result<Option<String>> {
        Ok(self
            .meta
            .tag_facts(repo)
            .await?
            .into_iter()
            .find(|t| t.digest == *digest && rules.protected(t.name.as_str()))
            .map(|t| t.name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(m: Mutability, mutable: &[&str], protected: &[&str]) -> Compiled {
        TagRules {
            tag_mutability: m,
            mutable_patterns: mutable.iter().map(|s| s.to_string()).collect(),
            protected_patterns: protected.iter().map(|s| s.to_string()).collect(),
        }
        .compile()
        .unwrap()
    }

    #[test]
    fn mutability_and_protection_match_whole_tags() {
        let r = rules(Mutability::Mutable, &[], &[]);
        assert!(r.may_move("v1") && !r.protected("v1"));
        let r = rules(Mutability::Immutable, &["latest"], &[]);
        assert!(
            !r.may_move("latest"),
            "exclusions only apply with exclusion mode"
        );
        let r = rules(
            Mutability::ImmutableWithExclusion,
            &["latest", "dev-.*"],
            &["v[0-9]+"],
        );
        assert!(r.may_move("latest") && r.may_move("dev-123"));
        assert!(!r.may_move("v1") && !r.may_move("latest2") && !r.may_move("xdev-1"));
        assert!(r.protected("v12") && !r.protected("v1.2") && !r.protected("av1"));
    }

    #[test]
    fn invalid_patterns_name_field_and_position() {
        let e = TagRules {
            protected_patterns: vec!["ok".into(), "v(1".into()],
            ..TagRules::default()
        }
        .compile()
        .err()
        .unwrap();
        assert_eq!(e.field, "protected_patterns[1]");
        assert_eq!(e.position, 1);
    }
}
