//! Advisories in the OSV format (<https://ossf.github.io/osv-schema/>): the records and
//! their severity. Reading them from a body, a file, a directory or a zip is
//! [`super::advisory_sources`]'s.
//!
//! The types tolerate fields they do not know (the schema grows) but are strict where
//! matching depends on them: an unknown range type, an event that is not one of
//! `introduced`/`fixed`/`last_affected`/`limit`, a range without events or a record without
//! `id` or `modified` is refused.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The longest advisory id accepted.
pub const MAX_ID_LEN: usize = 256;

/// One OSV record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The advisory's id, e.g. `CVE-2024-1234`, `DSA-5678-1`, `GHSA-xxxx-xxxx-xxxx`.
    pub id: String,
    /// Other ids of the same vulnerability.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// When the record last changed (RFC 3339).
    pub modified: String,
    /// When it was first published (RFC 3339).
    #[serde(default)]
    pub published: Option<String>,
    /// When it was withdrawn, if it was.
    #[serde(default)]
    pub withdrawn: Option<String>,
    /// A one-line summary.
    #[serde(default)]
    pub summary: Option<String>,
    /// The full description.
    #[serde(default)]
    pub details: Option<String>,
    /// Severity scores (CVSS vectors, or a distribution's word).
    #[serde(default)]
    pub severity: Vec<SeverityScore>,
    /// The packages and versions it affects.
    #[serde(default)]
    pub affected: Vec<Affected>,
    /// The database's own fields (a distribution's `urgency`, …).
    #[serde(default)]
    pub database_specific: Option<Value>,
}

/// One entry of `severity`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeverityScore {
    /// `CVSS_V2`, `CVSS_V3`, `CVSS_V4`, `Ubuntu`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// The vector, or the distribution's word.
    pub score: String,
}

/// One affected package with its versions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Affected {
    /// The package (absent in records that only name git commits).
    #[serde(default)]
    pub package: Option<Package>,
    /// Severity for this package only.
    #[serde(default)]
    pub severity: Vec<SeverityScore>,
    /// Version ranges.
    #[serde(default)]
    pub ranges: Vec<Range>,
    /// Versions listed one by one.
    #[serde(default)]
    pub versions: Vec<String>,
    /// The ecosystem's own fields.
    #[serde(default)]
    pub ecosystem_specific: Option<Value>,
    /// The database's own fields.
    #[serde(default)]
    pub database_specific: Option<Value>,
}

/// The package an [`Affected`] names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Package {
    /// The OSV ecosystem, e.g. `Debian:12`, `Alpine:v3.19`, `crates.io`.
    pub ecosystem: String,
    /// The name in that ecosystem (for Debian, the source package).
    pub name: String,
    /// The package URL, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purl: Option<String>,
}

/// A range of affected versions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Range {
    /// How its versions compare.
    #[serde(rename = "type")]
    pub kind: RangeKind,
    /// The repository of a `GIT` range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    /// Where affected versions start and stop.
    pub events: Vec<Event>,
}

/// The order a [`Range`]'s versions follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RangeKind {
    /// Semantic versioning 2.0.
    Semver,
    /// The ecosystem's own order.
    Ecosystem,
    /// Git commits (not matched against installed packages).
    Git,
}

/// One event of a [`Range`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// Affected from this version on (`"0"`: from the start).
    Introduced(String),
    /// Not affected from this version on.
    Fixed(String),
    /// Affected up to and including this version.
    LastAffected(String),
    /// Not affected from this version on (an upper bound without a fix).
    Limit(String),
}

impl Event {
    /// The version the event names.
    pub fn version(&self) -> &str {
        match self {
            Event::Introduced(v) | Event::Fixed(v) | Event::LastAffected(v) | Event::Limit(v) => v,
        }
    }
}

/// The severity levels findings are sorted into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Nothing usable was given.
    Unknown,
    /// Score above 0 and under 4.0, or a distribution's "low"/"unimportant".
    Low,
    /// Score 4.0 to 6.9.
    Medium,
    /// Score 7.0 to 8.9.
    High,
    /// Score 9.0 and above.
    Critical,
}

impl Severity {
    /// The level of a CVSS base score.
    pub fn of_score(score: f64) -> Severity {
        if score >= 9.0 {
            Severity::Critical
        } else if score >= 7.0 {
            Severity::High
        } else if score >= 4.0 {
            Severity::Medium
        } else if score > 0.0 {
            Severity::Low
        } else {
            Severity::Unknown
        }
    }

    /// The level a distribution's urgency word names (`critical`, `high`, `medium`/
    /// `moderate`, `low`/`negligible`/`unimportant`); `None` for any other word.
    pub fn of_word(word: &str) -> Option<Severity> {
        // Debian writes e.g. "low**" for an urgency it is unsure of.
        let word = word.trim().trim_end_matches('*').to_ascii_lowercase();
        Some(match word.as_str() {
            "critical" | "important" => Severity::Critical,
            "high" => Severity::High,
            "medium" | "moderate" => Severity::Medium,
            "low" | "negligible" | "unimportant" => Severity::Low,
            _ => return None,
        })
    }

    /// The lowercase name (`critical` … `unknown`).
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
            Severity::Unknown => "unknown",
        }
    }

    /// The level named by [`Severity::as_str`].
    pub fn parse(name: &str) -> Option<Severity> {
        [
            Severity::Critical,
            Severity::High,
            Severity::Medium,
            Severity::Low,
            Severity::Unknown,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The base score of a CVSS v2, v3.x or v4.0 vector; `None` when it does not parse.
pub fn cvss_base_score(vector: &str) -> Option<f64> {
    let parsed: cvss::Cvss = vector.trim().parse().ok()?;
    Some(match parsed {
        cvss::Cvss::CvssV30(v) | cvss::Cvss::CvssV31(v) => v.base_score().value(),
        other => other.score(),
    })
}

/// The score of a severity entry: a CVSS vector's base score or a plain number.
fn score_of(entry: &SeverityScore) -> Option<f64> {
    cvss_base_score(&entry.score).or_else(|| {
        entry
            .score
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|s| (0.0..=10.0).contains(s))
    })
}

/// A `severity` or `urgency` word in a `*_specific` object.
fn word_in(specific: Option<&Value>) -> Option<Severity> {
    let specific = specific?;
    ["severity", "urgency"]
        .iter()
        .filter_map(|key| specific.get(key)?.as_str())
        .find_map(Severity::of_word)
}

impl Record {
    /// The record's severity: the highest CVSS score it or its affected entries give (v3 and
    /// v4 before v2), else a distribution's word (a non-CVSS `severity` entry, or `severity`/
    /// `urgency` in `database_specific`/`ecosystem_specific`), else unknown.
    pub fn severity(&self) -> Severity {
        let entries = || {
            self.severity
                .iter()
                .chain(self.affected.iter().flat_map(|a| &a.severity))
        };
        let best_score = |kinds: &[&str]| {
            entries()
                .filter(|e| kinds.contains(&e.kind.as_str()))
                .filter_map(score_of)
                .fold(None, |best: Option<f64>, s| {
                    Some(best.map_or(s, |b| b.max(s)))
                })
        };
        if let Some(score) =
            best_score(&["CVSS_V3", "CVSS_V4"]).or_else(|| best_score(&["CVSS_V2"]))
        {
            return Severity::of_score(score);
        }
        let words = entries()
            .filter_map(|e| Severity::of_word(&e.score))
            .chain(word_in(self.database_specific.as_ref()))
            .chain(self.affected.iter().flat_map(|a| {
                word_in(a.database_specific.as_ref())
                    .into_iter()
                    .chain(word_in(a.ecosystem_specific.as_ref()))
            }));
        words.max().unwrap_or(Severity::Unknown)
    }

    /// When the record last changed, as parsed from `modified`.
    pub fn modified_at(&self) -> Option<time::OffsetDateTime> {
        parse_time(&self.modified)
    }

    /// Checks what matching depends on beyond the types: the id, `modified`, packages and
    /// ranges. The reason when it fails.
    pub fn check(&self) -> Result<(), String> {
        if self.id.trim().is_empty() {
            return Err("the id is empty".into());
        }
        if self.id.len() > MAX_ID_LEN || self.id.chars().any(char::is_control) {
            return Err(format!(
                "the id is longer than {MAX_ID_LEN} bytes or holds control characters"
            ));
        }
        if self.modified_at().is_none() {
            return Err(format!(
                "modified {:?} is not an RFC 3339 time",
                self.modified
            ));
        }
        for (i, affected) in self.affected.iter().enumerate() {
            if let Some(package) = &affected.package
                && (package.ecosystem.trim().is_empty() || package.name.trim().is_empty())
            {
                return Err(format!(
                    "affected[{i}]: the package needs an ecosystem and a name"
                ));
            }
            for (j, range) in affected.ranges.iter().enumerate() {
                if range.events.is_empty() {
                    return Err(format!("affected[{i}].ranges[{j}] has no events"));
                }
                if range.kind != RangeKind::Git
                    && !range
                        .events
                        .iter()
                        .any(|e| matches!(e, Event::Introduced(_)))
                {
                    return Err(format!("affected[{i}].ranges[{j}] has no introduced event"));
                }
            }
        }
        Ok(())
    }
}

/// An RFC 3339 time.
pub fn parse_time(text: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()
}

/// A record, or an entry that could not be read as one.
#[derive(Debug)]
pub enum Item {
    /// A record that parsed and passed [`Record::check`].
    Record(Box<Record>),
    /// What was refused and why.
    Rejected(Rejected),
}

/// A refused record or entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejected {
    /// The record's id, when it has a readable one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Where it was: a file, a zip entry, `[3]` for the fourth record of an array.
    pub entry: String,
    /// Why it was refused.
    pub reason: String,
}
