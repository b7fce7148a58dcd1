//! The wire formats of cleanup rules (GitLab's fields, an AWS ECR lifecycle document, the
//! pull-activity keep rules, a policy's repositories and cadence), how they are checked, and
//! what they compile to. Errors name the field, and for a regular expression the position.

use std::collections::HashSet;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// A regex that could not be compiled: which field, where in the pattern, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InvalidPattern {
    /// The field holding the pattern (`name_regex`, `protected_patterns[1]`, ...).
    pub field: String,
    /// Character offset of the error in the pattern.
    pub position: usize,
    /// What is wrong there.
    pub message: String,
}

impl std::fmt::Display for InvalidPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: invalid regular expression at position {}: {}",
            self.field, self.position, self.message
        )
    }
}

/// Compiles `pattern` to match whole strings, reporting the position of a syntax error.
pub fn compile(field: &str, pattern: &str) -> Result<Regex, InvalidPattern> {
    let invalid = |position: usize, message: String| InvalidPattern {
        field: field.to_owned(),
        position,
        message,
    };
    if let Err(e) = regex_syntax::ast::parse::Parser::new().parse(pattern) {
        let offset = e.span().start.offset;
        let position = pattern[..offset.min(pattern.len())].chars().count();
        return Err(invalid(position, e.kind().to_string()));
    }
    if let Err(e) = regex_syntax::parse(pattern) {
        return Err(invalid(0, e.to_string()));
    }
    Regex::new(&format!("^(?:{pattern})$")).map_err(|e| invalid(0, e.to_string()))
}

/// A duration as GitLab writes it: `7d`, `90d`, `1month`, `3month`, `12h`, `1w`; a bare
/// number is days (`90`), as the seed's `older_than` counts.
pub fn parse_duration(field: &str, s: &str) -> Result<i64, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err(format!(
            "{field}: {s:?} is not a duration like 7d, 90d or 1month"
        ));
    }
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: i64 = n
        .parse()
        .map_err(|_| format!("{field}: {s:?} is not a duration like 7d, 90d or 1month"))?;
    let unit_secs = match unit {
        "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "" | "d" | "day" | "days" => 86_400,
        "w" | "week" | "weeks" => 7 * 86_400,
        "month" | "months" => 30 * 86_400,
        "y" | "year" | "years" => 365 * 86_400,
        _ => {
            return Err(format!(
                "{field}: {s:?} is not a duration like 7d, 90d or 1month"
            ));
        }
    };
    Ok(n.saturating_mul(unit_secs))
}

/// GitLab's cadences.
pub const CADENCES: [&str; 5] = ["1d", "7d", "14d", "1month", "3month"];

/// The cadence words the seed's policies use, and the GitLab cadence each stands for.
pub const CADENCE_WORDS: [(&str, &str); 3] =
    [("daily", "1d"), ("weekly", "7d"), ("monthly", "1month")];

/// The GitLab form of a cadence: a word (`daily`, `weekly`, `monthly`) stands for its
/// duration, so both spellings are checked and scheduled alike; others are kept as given.
fn gitlab_cadence(cadence: &str) -> &str {
    CADENCE_WORDS
        .iter()
        .find(|(word, _)| *word == cadence)
        .map_or(cadence, |(_, gitlab)| gitlab)
}

/// `older_than` as the seed writes it: a number of days (`90`) or a duration string
/// (`"90d"`, `"1month"`); a number is kept as `"<n>d"`, so it reads back the same.
fn days_or_duration<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum DaysOrDuration {
        Days(u64),
        Duration(String),
        // Anything else (-5, 1.5, true) is kept as text for `compile` to refuse, so the
        // answer is the same 400 naming the field as for a bad string.
        Other(serde_json::Value),
    }
    Ok(match Option::<DaysOrDuration>::deserialize(deserializer)? {
        None => None,
        Some(DaysOrDuration::Days(days)) => Some(format!("{days}d")),
        Some(DaysOrDuration::Duration(s)) => Some(s),
        Some(DaysOrDuration::Other(v)) => Some(v.to_string()),
    })
}

/// The rules of a policy, as the API takes them.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyRules {
    /// Keep the N most recent of the tags `name_regex` selects.
    pub keep_n: Option<usize>,
    /// Only delete tags pushed longer ago than this: `7d`, `1month`, or a number of days
    /// (`90`, kept as `90d`).
    #[serde(deserialize_with = "days_or_duration")]
    #[schema(value_type = Option<String>, example = "90d")]
    pub older_than: Option<String>,
    /// Tags to delete (whole-tag regular expression).
    pub name_regex: Option<String>,
    /// Tags never deleted; wins over every deletion rule.
    pub name_regex_keep: Option<String>,
    /// Keep tags pulled within this period (`30d`).
    pub keep_pulled_within: Option<String>,
    /// Keep the N tags most recently pulled.
    pub keep_most_recently_pulled: Option<usize>,
    /// An AWS ECR lifecycle policy document (`{"rules": [...]}`).
    pub ecr: Option<EcrPolicy>,
}

/// An AWS ECR lifecycle policy document.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct EcrPolicy {
    /// The rules, in any order (`rulePriority` orders them).
    pub rules: Vec<EcrRule>,
}

/// One ECR lifecycle rule.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EcrRule {
    /// Unique; lower priorities decide first.
    pub rule_priority: u32,
    /// Free text, kept as given.
    #[serde(default)]
    pub description: Option<String>,
    /// Which images the rule decides, and when they expire.
    pub selection: EcrSelection,
    /// What happens to them (only `expire`).
    pub action: EcrAction,
}

/// The images an ECR rule selects, and its expiry condition.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EcrSelection {
    /// Tagged, untagged, or any image.
    pub tag_status: TagStatus,
    /// With `tagged`: the image needs a tag starting with each of these.
    #[serde(default)]
    pub tag_prefix_list: Vec<String>,
    /// With `tagged`: the image needs a tag matching each of these `*` wildcards.
    #[serde(default)]
    pub tag_pattern_list: Vec<String>,
    /// Expire beyond a count, or past an age.
    pub count_type: CountType,
    /// `days` with `sinceImagePushed`; absent with `imageCountMoreThan`.
    #[serde(default)]
    pub count_unit: Option<String>,
    /// The count or the age (at least 1).
    pub count_number: u64,
}

/// ECR's `tagStatus`: which images a rule may select.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TagStatus {
    /// Images with a tag matching the rule's prefixes or patterns.
    Tagged,
    /// Images without a tag.
    Untagged,
    /// Every image.
    Any,
}

/// ECR's `countType`: when a selected image expires.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub enum CountType {
    /// Beyond the `countNumber` most recently pushed.
    #[serde(rename = "imageCountMoreThan")]
    ImageCountMoreThan,
    /// Pushed more than `countNumber` days ago.
    #[serde(rename = "sinceImagePushed")]
    SinceImagePushed,
}

/// ECR's `action`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct EcrAction {
    /// Only `expire` (the image, its manifest and every tag, is removed).
    #[serde(rename = "type")]
    pub kind: String,
}

/// Rules checked and compiled: what [`evaluate`](super::evaluate()) runs.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub(super) keep_n: Option<usize>,
    pub(super) older_than: Option<i64>,
    pub(super) name_regex: Option<Regex>,
    pub(super) name_regex_keep: Option<Regex>,
    pub(super) keep_pulled_within: Option<i64>,
    pub(super) keep_most_recently_pulled: Option<usize>,
    pub(super) ecr: Vec<CompiledEcrRule>,
}

/// One ECR rule, checked: its tag patterns compiled, its count in images or seconds.
#[derive(Debug, Clone)]
pub(super) struct CompiledEcrRule {
    pub(super) priority: u32,
    pub(super) status: TagStatus,
    pub(super) prefixes: Vec<String>,
    pub(super) patterns: Vec<Regex>,
    pub(super) count_type: CountType,
    pub(super) count: u64,
}

/// Why rules (a policy, a repository's tag rules, bulk deletion filters) were refused, or
/// why the registry could not apply them: one error for every step, so a caller matches once.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// A regular expression that does not compile: the field, the position and why.
    #[error("{0}")]
    Pattern(InvalidPattern),
    /// Any other field that is wrong, in a sentence that names it.
    #[error("{0}")]
    Invalid(String),
    /// The registry failed, or the repository is unknown.
    #[error(transparent)]
    Registry(#[from] Error),
}

impl From<InvalidPattern> for RulesError {
    fn from(p: InvalidPattern) -> Self {
        RulesError::Pattern(p)
    }
}

impl PolicyRules {
    /// Checks and compiles the rules; errors name the field (and a regex's position).
    pub fn compile(&self) -> Result<Compiled, RulesError> {
        let regex =
            |field: &str, p: &Option<String>| p.as_deref().map(|p| compile(field, p)).transpose();
        let duration = |field: &str, d: &Option<String>| {
            d.as_deref()
                .map(|d| parse_duration(field, d))
                .transpose()
                .map_err(RulesError::Invalid)
        };
        let mut ecr = Vec::new();
        let mut priorities = HashSet::new();
        for (i, rule) in self.ecr.iter().flat_map(|p| &p.rules).enumerate() {
            let field = format!("ecr.rules[{i}]");
            if !priorities.insert(rule.rule_priority) {
                return Err(RulesError::Invalid(format!(
                    "{field}.rulePriority: {} is used by another rule; priorities must be unique",
                    rule.rule_priority
                )));
            }
            if rule.action.kind != "expire" {
                return Err(RulesError::Invalid(format!(
                    "{field}.action.type: only \"expire\" is supported"
                )));
            }
            let s = &rule.selection;
            if s.tag_status == TagStatus::Tagged
                && s.tag_prefix_list.is_empty()
                && s.tag_pattern_list.is_empty()
            {
                return Err(RulesError::Invalid(format!(
                    "{field}.selection: tagStatus \"tagged\" needs tagPrefixList or tagPatternList"
                )));
            }
            if s.tag_status != TagStatus::Tagged
                && !(s.tag_prefix_list.is_empty() && s.tag_pattern_list.is_empty())
            {
                return Err(RulesError::Invalid(format!(
                    "{field}.selection: tag lists are only allowed with tagStatus \"tagged\""
                )));
            }
            let count = match s.count_type {
                CountType::ImageCountMoreThan => {
                    if s.count_unit.is_some() {
                        return Err(RulesError::Invalid(format!(
                            "{field}.selection.countUnit: not allowed with imageCountMoreThan"
                        )));
                    }
                    s.count_number
                }
                CountType::SinceImagePushed => match s.count_unit.as_deref() {
                    Some("days") => s.count_number.saturating_mul(86_400),
                    _ => {
                        return Err(RulesError::Invalid(format!(
                            "{field}.selection.countUnit: sinceImagePushed needs \"days\""
                        )));
                    }
                },
            };
            if s.count_number == 0 {
                return Err(RulesError::Invalid(format!(
                    "{field}.selection.countNumber: must be at least 1"
                )));
            }
            let patterns = s
                .tag_pattern_list
                .iter()
                .enumerate()
                .map(|(j, p)| {
                    let re = p
                        .split('*')
                        .map(regex::escape)
                        .collect::<Vec<_>>()
                        .join(".*");
                    compile(&format!("{field}.selection.tagPatternList[{j}]"), &re)
                })
                .collect::<Result<_, _>>()?;
            ecr.push(CompiledEcrRule {
                priority: rule.rule_priority,
                status: s.tag_status,
                prefixes: s.tag_prefix_list.clone(),
                patterns,
                count_type: s.count_type,
                count,
            });
        }
        ecr.sort_by_key(|r| r.priority);
        Ok(Compiled {
            keep_n: self.keep_n,
            older_than: duration("older_than", &self.older_than)?,
            name_regex: regex("name_regex", &self.name_regex)?,
            name_regex_keep: regex("name_regex_keep", &self.name_regex_keep)?,
            keep_pulled_within: duration("keep_pulled_within", &self.keep_pulled_within)?,
            keep_most_recently_pulled: self.keep_most_recently_pulled,
            ecr,
        })
    }
}

/// A policy as the API takes it: which repositories, when, and the rules.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Policy {
    /// One repository, by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// Or every repository whose whole name matches this regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repositories: Option<String>,
    /// Runs on its cadence; a disabled policy runs only when asked.
    #[serde(default)]
    pub enabled: bool,
    /// How often it runs: 1d, 7d, 14d, 1month or 3month; `daily`, `weekly` and `monthly`
    /// are taken for 1d, 7d and 1month.
    #[serde(default = "default_cadence")]
    pub cadence: String,
    /// What it removes.
    #[serde(flatten)]
    pub rules: PolicyRules,
}

fn default_cadence() -> String {
    "1d".into()
}

impl Policy {
    /// The repository pattern (a regular expression), checked.
    pub(super) fn pattern(&self) -> Result<String, RulesError> {
        match (&self.repository, &self.repositories) {
            (Some(name), None) => Ok(regex::escape(name)),
            (None, Some(pattern)) => {
                compile("repositories", pattern)?;
                Ok(pattern.clone())
            }
            _ => Err(RulesError::Invalid(
                "give either repository (one name) or repositories (a pattern)".into(),
            )),
        }
    }

    /// Checks every field: the repository pattern and the compiled rules.
    pub(super) fn check(&self) -> Result<(String, Compiled), RulesError> {
        if !CADENCES.contains(&gitlab_cadence(&self.cadence)) {
            let words: Vec<&str> = CADENCE_WORDS.iter().map(|(word, _)| *word).collect();
            return Err(RulesError::Invalid(format!(
                "cadence: {:?} is not one of {}, {}",
                self.cadence,
                CADENCES.join(", "),
                words.join(", ")
            )));
        }
        let compiled = self.rules.compile()?;
        if self.rules.name_regex.is_none() && self.rules.ecr.is_none() {
            return Err(RulesError::Invalid(
                "the policy deletes nothing: give name_regex or ecr rules".into(),
            ));
        }
        Ok((self.pattern()?, compiled))
    }
}

/// Seconds between runs of a cadence.
pub(super) fn cadence_secs(cadence: &str) -> i64 {
    parse_duration("cadence", gitlab_cadence(cadence)).unwrap_or(86_400)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    /// GitLab-style rules from the fields the tables vary.
    pub(in crate::registry::policies) fn gitlab(
        keep_n: Option<usize>,
        older_than: Option<&str>,
        regex: &str,
        keep: Option<&str>,
    ) -> PolicyRules {
        PolicyRules {
            keep_n,
            older_than: older_than.map(Into::into),
            name_regex: Some(regex.into()),
            name_regex_keep: keep.map(Into::into),
            ..PolicyRules::default()
        }
    }

    fn ecr(json: &str) -> PolicyRules {
        PolicyRules {
            ecr: Some(serde_json::from_str(json).unwrap()),
            ..PolicyRules::default()
        }
    }

    #[test]
    fn invalid_rules_name_the_field_and_position() {
        let e = gitlab(None, None, "v(1", None).compile().unwrap_err();
        assert!(
            matches!(&e, RulesError::Pattern(p) if *p == InvalidPattern {
                field: "name_regex".into(),
                position: 1,
                message: "unclosed group".into()
            }),
            "{e:?}"
        );
        let e = gitlab(None, None, ".*", Some("ok|[z-a]"))
            .compile()
            .unwrap_err();
        assert!(
            matches!(&e, RulesError::Pattern(p) if p.field == "name_regex_keep" && p.position == 4),
            "{e:?}"
        );
        let e = gitlab(None, Some("7 parsecs"), ".*", None)
            .compile()
            .unwrap_err();
        assert!(e.to_string().starts_with("older_than:"), "{e}");
        assert_eq!(parse_duration("x", "1month"), Ok(30 * DAY));
        assert_eq!(parse_duration("x", "90d"), Ok(90 * DAY));
        assert_eq!(
            parse_duration("x", "90"),
            Ok(90 * DAY),
            "a bare number is days"
        );
        assert!(parse_duration("x", "").is_err());
        assert_eq!(cadence_secs("monthly"), 30 * DAY);
        assert_eq!(cadence_secs("weekly"), 7 * DAY);
        assert_eq!(cadence_secs("daily"), DAY);
        let dup = ecr(r#"{"rules": [
            {"rulePriority": 1, "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1}, "action": {"type": "expire"}},
            {"rulePriority": 1, "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 2}, "action": {"type": "expire"}}
        ]}"#);
        assert!(
            dup.compile()
                .unwrap_err()
                .to_string()
                .contains("rulePriority")
        );
    }
}
