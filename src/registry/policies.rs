//! Cleanup policies: which tags (and untagged images) to remove, decided by a pure function
//! over the tags of a repository ([`evaluate`]), then applied with re-validated deletes.
//!
//! Three rule sets, in one policy:
//! - GitLab's fields: `name_regex` selects tags to delete, `name_regex_keep` protects tags
//!   and wins over everything, `keep_n` keeps the N most recent of the selected tags,
//!   `older_than` only deletes tags pushed longer ago than that;
//! - AWS ECR lifecycle rules (`ecr`), with ECR's semantics: rules by ascending
//!   `rulePriority`; an image matched by a rule's tag filter is decided by that rule only (a
//!   lower-priority rule never expires it); `expire` removes the image (manifest and tags);
//! - pull activity: keep what was pulled within a period, keep the N most recently pulled.
//!
//! Keep rules (`name_regex_keep`, pull activity) win over every deletion rule. Patterns are
//! regular expressions matched against the whole tag; ECR's `tagPatternList` uses its own
//! `*` wildcards.

use std::collections::{BTreeMap, HashSet};

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::Registry;
use crate::{
    meta::{
        gc::{GcCounts, GcRunRecord},
        now,
        policies::StoredPolicy,
        tags::{TagFacts, UntaggedFacts},
    },
    oci::{Digest, RepoName, Tag},
};

/// A regex that could not be compiled: which field, where in the pattern, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InvalidPattern {
    pub field: String,
    /// Character offset of the error in the pattern.
    pub position: usize,
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

/// A duration as GitLab writes it: `7d`, `90d`, `1month`, `3month`, `12h`, `1w`.
pub fn parse_duration(field: &str, s: &str) -> Result<i64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: i64 = n
        .parse()
        .map_err(|_| format!("{field}: {s:?} is not a duration like 7d, 90d or 1month"))?;
    let unit_secs = match unit {
        "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "d" | "day" | "days" => 86_400,
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

/// The rules of a policy, as the API takes them.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyRules {
    pub keep_n: Option<usize>,
    pub older_than: Option<String>,
    pub name_regex: Option<String>,
    pub name_regex_keep: Option<String>,
    /// Keep tags pulled within this period (`30d`).
    pub keep_pulled_within: Option<String>,
    /// Keep the N tags most recently pulled.
    pub keep_most_recently_pulled: Option<usize>,
    /// An AWS ECR lifecycle policy document (`{"rules": [...]}`).
    pub ecr: Option<EcrPolicy>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct EcrPolicy {
    pub rules: Vec<EcrRule>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EcrRule {
    pub rule_priority: u32,
    #[serde(default)]
    pub description: Option<String>,
    pub selection: EcrSelection,
    pub action: EcrAction,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EcrSelection {
    pub tag_status: TagStatus,
    #[serde(default)]
    pub tag_prefix_list: Vec<String>,
    #[serde(default)]
    pub tag_pattern_list: Vec<String>,
    pub count_type: CountType,
    #[serde(default)]
    pub count_unit: Option<String>,
    pub count_number: u64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TagStatus {
    Tagged,
    Untagged,
    Any,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum CountType {
    #[serde(rename = "imageCountMoreThan")]
    ImageCountMoreThan,
    #[serde(rename = "sinceImagePushed")]
    SinceImagePushed,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EcrAction {
    #[serde(rename = "type")]
    pub kind: String,
}

/// Rules checked and compiled: what [`evaluate`] runs.
#[derive(Debug, Clone)]
pub struct Compiled {
    keep_n: Option<usize>,
    older_than: Option<i64>,
    name_regex: Option<Regex>,
    name_regex_keep: Option<Regex>,
    keep_pulled_within: Option<i64>,
    keep_most_recently_pulled: Option<usize>,
    ecr: Vec<CompiledEcrRule>,
}

#[derive(Debug, Clone)]
struct CompiledEcrRule {
    priority: u32,
    status: TagStatus,
    prefixes: Vec<String>,
    patterns: Vec<Regex>,
    count_type: CountType,
    count: u64,
}

/// Why policy rules were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvalidRules {
    Pattern(InvalidPattern),
    Other(String),
}

impl std::fmt::Display for InvalidRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InvalidRules::Pattern(p) => p.fmt(f),
            InvalidRules::Other(s) => f.write_str(s),
        }
    }
}

impl From<InvalidPattern> for InvalidRules {
    fn from(p: InvalidPattern) -> Self {
        InvalidRules::Pattern(p)
    }
}

impl PolicyRules {
    /// Checks and compiles the rules; errors name the field (and a regex's position).
    pub fn compile(&self) -> Result<Compiled, InvalidRules> {
        let regex =
            |field: &str, p: &Option<String>| p.as_deref().map(|p| compile(field, p)).transpose();
        let duration = |field: &str, d: &Option<String>| {
            d.as_deref()
                .map(|d| parse_duration(field, d))
                .transpose()
                .map_err(InvalidRules::Other)
        };
        let mut ecr = Vec::new();
        let mut priorities = HashSet::new();
        for (i, rule) in self.ecr.iter().flat_map(|p| &p.rules).enumerate() {
            let field = format!("ecr.rules[{i}]");
            if !priorities.insert(rule.rule_priority) {
                return Err(InvalidRules::Other(format!(
                    "{field}.rulePriority: {} is used by another rule; priorities must be unique",
                    rule.rule_priority
                )));
            }
            if rule.action.kind != "expire" {
                return Err(InvalidRules::Other(format!(
                    "{field}.action.type: only \"expire\" is supported"
                )));
            }
            let s = &rule.selection;
            if s.tag_status == TagStatus::Tagged
                && s.tag_prefix_list.is_empty()
                && s.tag_pattern_list.is_empty()
            {
                return Err(InvalidRules::Other(format!(
                    "{field}.selection: tagStatus \"tagged\" needs tagPrefixList or tagPatternList"
                )));
            }
            if s.tag_status != TagStatus::Tagged
                && !(s.tag_prefix_list.is_empty() && s.tag_pattern_list.is_empty())
            {
                return Err(InvalidRules::Other(format!(
                    "{field}.selection: tag lists are only allowed with tagStatus \"tagged\""
                )));
            }
            let count = match s.count_type {
                CountType::ImageCountMoreThan => {
                    if s.count_unit.is_some() {
                        return Err(InvalidRules::Other(format!(
                            "{field}.selection.countUnit: not allowed with imageCountMoreThan"
                        )));
                    }
                    s.count_number
                }
                CountType::SinceImagePushed => match s.count_unit.as_deref() {
                    Some("days") => s.count_number.saturating_mul(86_400),
                    _ => {
                        return Err(InvalidRules::Other(format!(
                            "{field}.selection.countUnit: sinceImagePushed needs \"days\""
                        )));
                    }
                },
            };
            if s.count_number == 0 {
                return Err(InvalidRules::Other(format!(
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

/// What a policy removes, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Removal {
    /// The tag removed; `None` for an untagged image (its manifest is removed).
    pub tag: Option<String>,
    pub digest: String,
    /// The whole image (manifest and every tag), as ECR's `expire`; else the tag only.
    pub image: bool,
    pub reason: String,
}

/// Decides what `rules` remove from a repository holding `tags` and the untagged images
/// `untagged` (never an index's child or a referrer), at time `now`. Pure: the same input
/// gives the same output, in tag-name order.
pub fn evaluate(
    rules: &Compiled,
    tags: &[TagFacts],
    untagged: &[UntaggedFacts],
    now: i64,
) -> Vec<Removal> {
    let kept = kept_tags(rules, tags, now);
    let mut removals: Vec<Removal> = Vec::new();
    let mut removed_tags: HashSet<&str> = HashSet::new();

    // GitLab: candidates are the tags name_regex selects, most recent first; keep_n of them
    // stay, then older_than spares the young ones.
    if let Some(name_regex) = &rules.name_regex {
        // As GitLab: keep-regex matches leave the candidates before keep_n counts.
        let mut candidates: Vec<&TagFacts> = tags
            .iter()
            .filter(|t| name_regex.is_match(t.name.as_str()) && !kept.contains(t.name.as_str()))
            .collect();
        candidates.sort_by_key(|t| std::cmp::Reverse((t.updated_at, t.manifest_id)));
        for (rank, t) in candidates.into_iter().enumerate() {
            if rules.keep_n.is_some_and(|n| rank < n) {
                continue;
            }
            if rules.older_than.is_some_and(|age| t.updated_at > now - age) {
                continue;
            }
            removed_tags.insert(t.name.as_str());
            removals.push(Removal {
                tag: Some(t.name.to_string()),
                digest: t.digest.to_string(),
                image: false,
                reason: gitlab_reason(rules),
            });
        }
    }

    // ECR: images (manifests with their tags), each decided by the first rule that selects it.
    let mut images: BTreeMap<&str, Image> = BTreeMap::new();
    for t in tags {
        let image = images.entry(t.digest.as_str()).or_insert_with(|| Image {
            tags: Vec::new(),
            pushed_at: t.manifest_pushed_at,
            order: t.manifest_id,
        });
        image.tags.push(t.name.as_str());
    }
    for u in untagged {
        images.entry(u.digest.as_str()).or_insert(Image {
            tags: Vec::new(),
            pushed_at: u.pushed_at,
            order: u.manifest_id,
        });
    }
    let mut decided: HashSet<&str> = HashSet::new();
    for rule in &rules.ecr {
        let mut selected: Vec<(&str, &Image)> = images
            .iter()
            .filter(|(d, _)| !decided.contains(*d))
            .filter(|(_, i)| rule.selects(i))
            .map(|(d, i)| (*d, i))
            .collect();
        decided.extend(selected.iter().map(|(d, _)| *d));
        selected.sort_by_key(|(_, i)| std::cmp::Reverse((i.pushed_at, i.order)));
        for (rank, (digest, image)) in selected.into_iter().enumerate() {
            let expire = match rule.count_type {
                CountType::ImageCountMoreThan => rank as u64 >= rule.count,
                CountType::SinceImagePushed => image.pushed_at < now - rule.count as i64,
            };
            // An image with a tag a keep rule protects stays whole.
            if !expire || image.tags.iter().any(|t| kept.contains(t)) {
                continue;
            }
            let reason = format!("ECR rule {} ({})", rule.priority, rule.describe());
            if image.tags.is_empty() {
                removals.push(Removal {
                    tag: None,
                    digest: digest.to_owned(),
                    image: true,
                    reason: reason.clone(),
                });
            }
            for tag in &image.tags {
                removals.retain(|r| r.tag.as_deref() != Some(*tag));
                removals.push(Removal {
                    tag: Some((*tag).to_owned()),
                    digest: digest.to_owned(),
                    image: true,
                    reason: reason.clone(),
                });
            }
        }
    }
    removals.sort_by(|a, b| a.tag.cmp(&b.tag).then(a.digest.cmp(&b.digest)));
    removals
}

/// Tags no rule may delete: `name_regex_keep`, pulled within the period, most recently pulled.
fn kept_tags<'t>(rules: &Compiled, tags: &'t [TagFacts], now: i64) -> HashSet<&'t str> {
    let mut kept: HashSet<&str> = HashSet::new();
    if let Some(keep) = &rules.name_regex_keep {
        kept.extend(
            tags.iter()
                .filter(|t| keep.is_match(t.name.as_str()))
                .map(|t| t.name.as_str()),
        );
    }
    if let Some(within) = rules.keep_pulled_within {
        kept.extend(
            tags.iter()
                .filter(|t| t.last_pulled_at.is_some_and(|p| p >= now - within))
                .map(|t| t.name.as_str()),
        );
    }
    if let Some(n) = rules.keep_most_recently_pulled {
        let mut pulled: Vec<&TagFacts> =
            tags.iter().filter(|t| t.last_pulled_at.is_some()).collect();
        pulled.sort_by(|a, b| {
            b.last_pulled_at
                .cmp(&a.last_pulled_at)
                .then(a.name.cmp(&b.name))
        });
        kept.extend(pulled.into_iter().take(n).map(|t| t.name.as_str()));
    }
    kept
}

fn gitlab_reason(rules: &Compiled) -> String {
    let mut why = vec![format!(
        "matches name_regex {:?}",
        rules
            .name_regex
            .as_ref()
            .map(|r| strip_anchors(r.as_str()))
            .unwrap_or_default()
    )];
    if let Some(n) = rules.keep_n {
        why.push(format!("not among the {n} most recent"));
    }
    if let Some(age) = rules.older_than {
        why.push(format!("pushed more than {} days ago", age / 86_400));
    }
    why.join(", ")
}

fn strip_anchors(s: &str) -> String {
    s.strip_prefix("^(?:")
        .and_then(|s| s.strip_suffix(")$"))
        .unwrap_or(s)
        .to_owned()
}

struct Image<'t> {
    tags: Vec<&'t str>,
    pushed_at: i64,
    /// Order of arrival (manifest id): breaks ties between equal push times.
    order: i64,
}

impl CompiledEcrRule {
    fn selects(&self, image: &Image<'_>) -> bool {
        match self.status {
            TagStatus::Any => true,
            TagStatus::Untagged => image.tags.is_empty(),
            // ECR: with several prefixes (or patterns), an image needs a tag for each.
            TagStatus::Tagged => {
                !image.tags.is_empty()
                    && self
                        .prefixes
                        .iter()
                        .all(|p| image.tags.iter().any(|t| t.starts_with(p.as_str())))
                    && self
                        .patterns
                        .iter()
                        .all(|p| image.tags.iter().any(|t| p.is_match(t)))
            }
        }
    }

    fn describe(&self) -> String {
        match self.count_type {
            CountType::ImageCountMoreThan => format!("more than {} images", self.count),
            CountType::SinceImagePushed => format!("pushed over {} days ago", self.count / 86_400),
        }
    }
}

// ---------------------------------------------------------------- applying policies

/// A policy as the API takes it: which repositories, when, and the rules.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Policy {
    /// One repository, by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// Or every repository whose whole name matches this regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repositories: Option<String>,
    #[serde(default)]
    pub enabled: bool,
    /// How often it runs: 1d, 7d, 14d, 1month or 3month.
    #[serde(default = "default_cadence")]
    pub cadence: String,
    #[serde(flatten)]
    pub rules: PolicyRules,
}

fn default_cadence() -> String {
    "1d".into()
}

/// A saved policy.
#[derive(Debug, Clone, Serialize)]
pub struct SavedPolicy {
    pub name: String,
    #[serde(flatten)]
    pub policy: Policy,
    pub next_run_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Policy {
    /// The repository pattern, compiled.
    fn pattern(&self) -> Result<String, InvalidRules> {
        match (&self.repository, &self.repositories) {
            (Some(name), None) => Ok(regex::escape(name)),
            (None, Some(pattern)) => {
                compile("repositories", pattern)?;
                Ok(pattern.clone())
            }
            _ => Err(InvalidRules::Other(
                "give either repository (one name) or repositories (a pattern)".into(),
            )),
        }
    }

    fn check(&self) -> Result<(String, Compiled), InvalidRules> {
        if !CADENCES.contains(&self.cadence.as_str()) {
            return Err(InvalidRules::Other(format!(
                "cadence: {:?} is not one of {}",
                self.cadence,
                CADENCES.join(", ")
            )));
        }
        let compiled = self.rules.compile()?;
        if self.rules.name_regex.is_none() && self.rules.ecr.is_none() {
            return Err(InvalidRules::Other(
                "the policy deletes nothing: give name_regex or ecr rules".into(),
            ));
        }
        Ok((self.pattern()?, compiled))
    }
}

/// What applying a policy to the registry did, or would do.
#[derive(Debug, Default, Serialize)]
pub struct PolicyOutcome {
    pub dry_run: bool,
    pub removals: Vec<RepositoryRemoval>,
}

#[derive(Debug, Serialize)]
pub struct RepositoryRemoval {
    pub repository: String,
    #[serde(flatten)]
    pub removal: Removal,
}

impl Registry {
    /// Saves policy `name` (replacing one of that name), after checking every field.
    pub async fn put_policy(
        &self,
        name: &str,
        policy: Policy,
    ) -> crate::error::Result<Result<SavedPolicy, InvalidRules>> {
        if name.is_empty()
            || name.len() > 128
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Ok(Err(InvalidRules::Other(
                "name: 1 to 128 letters, digits, '-', '_' or '.'".into(),
            )));
        }
        let pattern = match policy.check() {
            Ok((pattern, _)) => pattern,
            Err(e) => return Ok(Err(e)),
        };
        let rules = serde_json::to_string(&policy).map_err(anyhow::Error::from)?;
        let stored = StoredPolicy {
            id: 0,
            name: name.to_owned(),
            pattern,
            enabled: policy.enabled,
            cadence: policy.cadence.clone(),
            rules,
            next_run_at: policy
                .enabled
                .then(|| now() + cadence_secs(&policy.cadence)),
            created_at: 0,
            updated_at: 0,
        };
        self.meta.put_policy(&stored).await?;
        let saved = self.policies().await?.into_iter().find(|p| p.name == name);
        saved
            .map(Ok)
            .ok_or_else(|| crate::error::Error::Internal(anyhow::anyhow!("policy {name} vanished")))
    }

    pub async fn policies(&self) -> crate::error::Result<Vec<SavedPolicy>> {
        Ok(self
            .meta
            .policies()
            .await?
            .into_iter()
            .filter_map(|p| {
                let policy: Policy = serde_json::from_str(&p.rules).ok()?;
                Some(SavedPolicy {
                    name: p.name,
                    policy,
                    next_run_at: p.next_run_at,
                    created_at: p.created_at,
                    updated_at: p.updated_at,
                })
            })
            .collect())
    }

    pub async fn delete_policy(&self, name: &str) -> crate::error::Result<bool> {
        self.meta.delete_policy(name).await
    }

    /// Applies saved policy `name` now (or previews it), and records the run with what it
    /// removed and why. `None` if there is no such policy.
    pub async fn run_policy(
        &self,
        name: &str,
        dry_run: bool,
    ) -> crate::error::Result<Option<(PolicyOutcome, GcRunRecord)>> {
        let Some(saved) = self.policies().await?.into_iter().find(|p| p.name == name) else {
            return Ok(None);
        };
        let (pattern, rules) = saved.policy.check().map_err(|e| {
            crate::error::Error::Internal(anyhow::anyhow!("stored policy {name} is invalid: {e}"))
        })?;
        let pattern = compile("repositories", &pattern).map_err(|e| {
            crate::error::Error::Internal(anyhow::anyhow!("stored policy {name} is invalid: {e}"))
        })?;
        let run = self
            .meta
            .create_gc_run(&format!("policy:{name}"), dry_run, true)
            .await?;
        let mut outcome = PolicyOutcome {
            dry_run,
            removals: Vec::new(),
        };
        let mut counts = GcCounts::default();
        let mut failed = None;
        let mut after = 0;
        'repos: loop {
            let page = self.meta.repository_ids(after, 500).await?;
            for (_, repository) in &page {
                if !pattern.is_match(repository.as_str()) {
                    continue;
                }
                match self
                    .apply_rules(repository, &rules, dry_run, &mut counts)
                    .await
                {
                    Ok(removals) => outcome.removals.extend(removals.into_iter().map(|removal| {
                        RepositoryRemoval {
                            repository: repository.to_string(),
                            removal,
                        }
                    })),
                    Err(e) => {
                        counts.errors += 1;
                        failed = Some(e.to_string());
                        break 'repos;
                    }
                }
            }
            match page.last() {
                Some((id, _)) if page.len() == 500 => after = *id,
                _ => break,
            }
        }
        let report = serde_json::json!({
            "dry_run": dry_run,
            "policy": name,
            "items": outcome.removals,
            "errors": failed.iter().collect::<Vec<_>>(),
        });
        self.meta
            .finish_gc_run(run, &counts, failed.is_some(), &report)
            .await?;
        let record = self
            .meta
            .gc_run(run)
            .await?
            .ok_or(crate::error::Error::NotFound)?;
        Ok(Some((outcome, record)))
    }

    /// Runs the enabled policies whose cadence is due (each once, whichever replica first).
    pub async fn run_due_policies(&self) -> crate::error::Result<()> {
        let now = now();
        for p in self.meta.policies().await? {
            if !p.enabled || p.next_run_at.is_some_and(|t| t > now) {
                continue;
            }
            let next = now + cadence_secs(&p.cadence);
            if self.meta.advance_policy(p.id, p.next_run_at, next).await? {
                self.run_policy(&p.name, false).await?;
            }
        }
        Ok(())
    }

    /// Bulk tag deletion with GitLab's filters (`name_regex_delete`, `keep_n`, `older_than`,
    /// `name_regex_keep`) in one repository; protected tags are never deleted here.
    pub async fn delete_tags_matching(
        &self,
        repo: &RepoName,
        rules: &PolicyRules,
        dry_run: bool,
    ) -> crate::error::Result<Result<Vec<Removal>, InvalidRules>> {
        if rules.name_regex.is_none() {
            return Ok(Err(InvalidRules::Other(
                "name_regex_delete: required (\".*\" for every tag)".into(),
            )));
        }
        let compiled = match rules.compile() {
            Ok(c) => c,
            Err(InvalidRules::Pattern(mut p)) if p.field == "name_regex" => {
                p.field = "name_regex_delete".into();
                return Ok(Err(InvalidRules::Pattern(p)));
            }
            Err(e) => return Ok(Err(e)),
        };
        if self.meta.repository_id(repo).await?.is_none() {
            return Err(crate::error::Error::NameUnknown);
        }
        let mut counts = GcCounts::default();
        Ok(Ok(self
            .apply_rules(repo, &compiled, dry_run, &mut counts)
            .await?))
    }

    /// Evaluates `rules` on `repo` and, unless `dry_run`, removes what they select: tags one
    /// by one if they still point where they did, whole images by digest. Tags matching the
    /// repository's protected patterns are kept.
    async fn apply_rules(
        &self,
        repo: &RepoName,
        rules: &Compiled,
        dry_run: bool,
        counts: &mut GcCounts,
    ) -> crate::error::Result<Vec<Removal>> {
        let tags = self.meta.tag_facts(repo).await?;
        let untagged = self.meta.untagged_facts(repo).await?;
        let protected = self.tag_rules(repo).await?.protected_patterns;
        let protected: Vec<Regex> = protected
            .iter()
            .filter_map(|p| compile("protected_patterns", p).ok())
            .collect();
        let is_protected = |t: &str| protected.iter().any(|r| r.is_match(t));
        let protected_digests: HashSet<&str> = tags
            .iter()
            .filter(|t| is_protected(t.name.as_str()))
            .map(|t| t.digest.as_str())
            .collect();
        let mut removals = evaluate(rules, &tags, &untagged, now());
        removals.retain(|r| {
            !(r.tag.as_deref().is_some_and(is_protected)
                || (r.image && protected_digests.contains(r.digest.as_str())))
        });
        let mut done = Vec::new();
        let mut images_done: HashSet<String> = HashSet::new();
        for r in removals {
            let removed = if dry_run {
                true
            } else if r.image {
                if images_done.contains(&r.digest) {
                    true
                } else {
                    let digest: Digest = r.digest.parse().map_err(|_| {
                        crate::error::Error::Internal(anyhow::anyhow!("bad digest"))
                    })?;
                    let gone = self.meta.delete_manifest(repo, &digest).await?;
                    if gone {
                        counts.manifests += 1;
                        images_done.insert(r.digest.clone());
                    }
                    gone
                }
            } else {
                match &r.tag {
                    Some(tag) => {
                        let tag: Tag = tag.parse().map_err(|_| {
                            crate::error::Error::Internal(anyhow::anyhow!("bad tag"))
                        })?;
                        let digest: Digest = r.digest.parse().map_err(|_| {
                            crate::error::Error::Internal(anyhow::anyhow!("bad digest"))
                        })?;
                        self.meta.delete_tag_if_at(repo, &tag, &digest).await?
                    }
                    None => false,
                }
            };
            if removed {
                done.push(r);
            }
        }
        Ok(done)
    }
}

/// Seconds between runs of a cadence.
fn cadence_secs(cadence: &str) -> i64 {
    parse_duration("cadence", cadence).unwrap_or(86_400)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;
    const NOW: i64 = 1_000 * DAY;

    /// A tag pushed `age` days ago on its own image `digest`, pulled `pulled` days ago.
    fn tag(name: &str, digest: &str, age: i64, pulled: Option<i64>) -> TagFacts {
        TagFacts {
            name: name.parse().unwrap(),
            digest: digest_of(digest),
            pushed_at: NOW - age * DAY,
            updated_at: NOW - age * DAY,
            manifest_pushed_at: NOW - age * DAY,
            manifest_id: 1_000 - age,
            last_pulled_at: pulled.map(|p| NOW - p * DAY),
        }
    }

    fn removed(rules: PolicyRules, tags: &[TagFacts], untagged: &[UntaggedFacts]) -> Vec<String> {
        let compiled = rules.compile().unwrap();
        evaluate(&compiled, tags, untagged, NOW)
            .into_iter()
            .map(|r| r.tag.unwrap_or_else(|| label_of(&r.digest)))
            .collect()
    }

    fn gitlab(
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

    /// Ten tags v0..v9, v9 the newest (pushed 1 day ago), v0 the oldest (10 days ago), and
    /// `main`, `release-1`, pushed 30 and 20 days ago.
    fn repo() -> Vec<TagFacts> {
        let mut tags: Vec<TagFacts> = (0..10)
            .map(|i| tag(&format!("v{i}"), &format!("d{i}"), 10 - i, None))
            .collect();
        tags.push(tag("main", "dm", 30, None));
        tags.push(tag("release-1", "dr", 20, None));
        tags
    }

    #[test]
    fn gitlab_fields_interact_as_documented() {
        let t = repo();
        let cases: Vec<(PolicyRules, Vec<&str>)> = vec![
            // name_regex alone: every match goes.
            (
                gitlab(None, None, "v[0-9]", None),
                vec!["v0", "v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8", "v9"],
            ),
            // keep_n keeps the most recent of the matches.
            (gitlab(Some(7), None, "v.*", None), vec!["v0", "v1", "v2"]),
            // older_than spares the young: v0..v4 are 6..10 days old.
            (
                gitlab(None, Some("6d"), "v.*", None),
                vec!["v0", "v1", "v2", "v3", "v4"],
            ),
            // Both: keep 3 newest, then only those older than 8 days.
            (
                gitlab(Some(3), Some("8d"), "v.*", None),
                vec!["v0", "v1", "v2"],
            ),
            // The case from the issue: .* with keep_n=1 keeps the newest, and keep-regex
            // matches are never deleted even though they are old and selected.
            (
                gitlab(Some(1), None, ".*", Some("main|release-.*")),
                vec!["v0", "v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8"],
            ),
            // keep-regex wins even over a name_regex naming the tag itself.
            (gitlab(None, None, "main", Some("main")), vec![]),
            // Whole-tag matching: "v1" does not select "v10"-like or "xv1" tags.
            (gitlab(None, None, "v1", None), vec!["v1"]),
            // keep_n larger than the candidates: nothing goes.
            (gitlab(Some(50), None, ".*", None), vec![]),
        ];
        for (rules, want) in cases {
            let got = removed(rules.clone(), &t, &[]);
            assert_eq!(got, want, "{rules:?}");
        }
    }

    #[test]
    fn pull_activity_keeps_tags() {
        let mut t = repo();
        t[0].last_pulled_at = Some(NOW - 2 * DAY); // v0 pulled 2 days ago
        t[1].last_pulled_at = Some(NOW - 40 * DAY); // v1 pulled 40 days ago
        t[2].last_pulled_at = Some(NOW - 50 * DAY); // v2 pulled 50 days ago
        let within = PolicyRules {
            keep_pulled_within: Some("30d".into()),
            ..gitlab(None, None, "v[0-3]", None)
        };
        assert_eq!(removed(within, &t, &[]), ["v1", "v2", "v3"]);
        let most_recent = PolicyRules {
            keep_most_recently_pulled: Some(2),
            ..gitlab(None, None, "v[0-3]", None)
        };
        assert_eq!(removed(most_recent, &t, &[]), ["v2", "v3"]);
    }

    fn ecr(json: &str) -> PolicyRules {
        PolicyRules {
            ecr: Some(serde_json::from_str(json).unwrap()),
            ..PolicyRules::default()
        }
    }

    /// A digest standing for `label` (its bytes in hex, padded with zeros): digests made
    /// so keep the order of their labels.
    fn digest_of(label: &str) -> Digest {
        format!("sha256:{:0<64}", hex::encode(label))
            .parse()
            .unwrap()
    }

    /// The label [`digest_of`] made `digest` from.
    fn label_of(digest: &str) -> String {
        let mut hex = digest.strip_prefix("sha256:").unwrap();
        while let Some(shorter) = hex.strip_suffix("00") {
            hex = shorter;
        }
        String::from_utf8(hex::decode(hex).unwrap()).unwrap()
    }

    fn untagged(digest: &str, age: i64) -> UntaggedFacts {
        UntaggedFacts {
            digest: digest_of(digest),
            manifest_id: 1_000 - age,
            pushed_at: NOW - age * DAY,
            last_pulled_at: None,
        }
    }

    #[test]
    fn ecr_rules_apply_by_priority() {
        let t = repo();
        let u = [untagged("u1", 3), untagged("u2", 40)];
        // Untagged older than 14 days expire; tagged v* beyond the 2 newest expire.
        let rules = ecr(r#"{"rules": [
            {"rulePriority": 1, "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed",
             "countUnit": "days", "countNumber": 14}, "action": {"type": "expire"}},
            {"rulePriority": 2, "selection": {"tagStatus": "tagged", "tagPrefixList": ["v"],
             "countType": "imageCountMoreThan", "countNumber": 8}, "action": {"type": "expire"}}
        ]}"#);
        assert_eq!(removed(rules, &t, &u), ["u2", "v0", "v1"]);

        // Priority decides: rule 1 selects every release-* and keeps up to 5 of them, so
        // rule 2 ("any", keep 1) may not expire release-1 although it would.
        let rules = ecr(r#"{"rules": [
            {"rulePriority": 2, "selection": {"tagStatus": "any", "countType": "imageCountMoreThan",
             "countNumber": 1}, "action": {"type": "expire"}},
            {"rulePriority": 1, "selection": {"tagStatus": "tagged", "tagPatternList": ["release-*"],
             "countType": "imageCountMoreThan", "countNumber": 5}, "action": {"type": "expire"}}
        ]}"#);
        let got = removed(rules, &t, &u);
        assert!(!got.contains(&"release-1".to_string()), "{got:?}");
        // Of the other 12 images (v0..v9, main, u1, u2) the newest (v9) stays.
        assert_eq!(got.len(), 12, "{got:?}");
        assert!(!got.contains(&"v9".to_string()));

        // Several prefixes: an image needs a tag for each.
        let mut both = repo();
        both.push(tag("prod-1", "d9", 1, None)); // v9's image also tagged prod-1
        let rules = ecr(r#"{"rules": [
            {"rulePriority": 1, "selection": {"tagStatus": "tagged", "tagPrefixList": ["v", "prod"],
             "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 0}, "action": {"type": "expire"}}
        ]}"#);
        assert!(rules.compile().is_err(), "countNumber 0 is refused");
        let rules = ecr(r#"{"rules": [
            {"rulePriority": 1, "selection": {"tagStatus": "tagged", "tagPrefixList": ["v", "prod"],
             "countType": "imageCountMoreThan", "countNumber": 1}, "action": {"type": "expire"}}
        ]}"#);
        // Only d9 carries both prefixes; one image is allowed, so nothing expires.
        assert_eq!(removed(rules, &both, &[]), Vec::<String>::new());
    }

    #[test]
    fn keep_rules_spare_whole_ecr_images() {
        let t = repo();
        let rules = PolicyRules {
            name_regex_keep: Some("v0".into()),
            ..ecr(
                r#"{"rules": [{"rulePriority": 1, "selection": {"tagStatus": "any",
              "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 9}, "action": {"type": "expire"}}]}"#,
            )
        };
        // Older than 9 days: v0 (10 days, kept), main (30), release-1 (20).
        assert_eq!(removed(rules, &t, &[]), ["main", "release-1"]);
    }

    #[test]
    fn invalid_rules_name_the_field_and_position() {
        let e = gitlab(None, None, "v(1", None).compile().unwrap_err();
        assert_eq!(
            e,
            InvalidRules::Pattern(InvalidPattern {
                field: "name_regex".into(),
                position: 1,
                message: "unclosed group".into()
            })
        );
        let e = gitlab(None, None, ".*", Some("ok|[z-a]"))
            .compile()
            .unwrap_err();
        assert!(
            matches!(&e, InvalidRules::Pattern(p) if p.field == "name_regex_keep" && p.position == 4),
            "{e:?}"
        );
        let e = gitlab(None, Some("7 parsecs"), ".*", None)
            .compile()
            .unwrap_err();
        assert!(e.to_string().starts_with("older_than:"), "{e}");
        assert_eq!(parse_duration("x", "1month"), Ok(30 * DAY));
        assert_eq!(parse_duration("x", "90d"), Ok(90 * DAY));
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
