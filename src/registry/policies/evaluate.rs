//! The pure engine: which tags and images a compiled rule set removes from a repository,
//! given the facts the index holds about its tags and untagged images and the time. No I/O,
//! so every interaction of the rules is pinned by table tests.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;

use super::rules::{Compiled, CompiledEcrRule, CountType, TagStatus};
use crate::meta::tags::{TagFacts, UntaggedFacts};

/// What a policy removes, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Removal {
    /// The tag removed; `None` for an untagged image (its manifest is removed).
    pub tag: Option<String>,
    /// The manifest the tag pointed at (or the untagged manifest).
    pub digest: String,
    /// The whole image (manifest and every tag), as ECR's `expire`; else the tag only.
    pub image: bool,
    /// Which rule removes it, in words.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::policies::PolicyRules;
    use crate::registry::policies::rules::tests::gitlab;

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
    fn digest_of(label: &str) -> crate::oci::Digest {
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
}
