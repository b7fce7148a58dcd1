//! The distributions' own advisory feeds, read as OSV records so that they are stored and
//! matched like any other: the Debian security tracker's JSON (every source package's
//! vulnerabilities with a status per release) and Alpine's secdb (one release and repository
//! per file: fixed versions with the vulnerabilities each fixes).
//!
//! Neither feed dates its entries. Their records take the import's time as `modified`, so a
//! newer import of a feed replaces what an older one stored, and every vulnerability the feed
//! names becomes a record, even one that affects no release Berth knows: a package the
//! tracker now calls not affected loses its finding at the next import.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json, value::RawValue};

use super::osv::{Affected, Event, Item, Package, Range, RangeKind, Record, Rejected};

/// The feeds read besides OSV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    /// `https://security-tracker.debian.org/tracker/data/json`.
    DebianTracker,
    /// `https://secdb.alpinelinux.org/<release>/<repository>.json`.
    AlpineSecdb,
}

/// Which feed a JSON object's top-level entries make, if any: Alpine's names its
/// `distroversion` and `packages`; the tracker's is keyed by source package, each an object of
/// vulnerabilities with their `releases`. An object with an `id` is an OSV record.
pub fn sniff(top: &BTreeMap<String, &RawValue>) -> Option<Feed> {
    if top.contains_key("id") {
        return None;
    }
    if top.contains_key("distroversion") && top.contains_key("packages") {
        return Some(Feed::AlpineSecdb);
    }
    let (_, first) = top.iter().next()?;
    let entries: BTreeMap<String, Value> = serde_json::from_str(first.get()).ok()?;
    let (_, entry) = entries.iter().next()?;
    entry
        .get("releases")
        .is_some_and(Value::is_object)
        .then_some(Feed::DebianTracker)
}

/// Debian's release code names with their version, as OSV's `Debian:<version>` names them.
/// `sid` (and any release not here) has no OSV ecosystem: its entries are not matched.
const DEBIAN_RELEASES: &[(&str, &str)] = &[
    ("jessie", "8"),
    ("stretch", "9"),
    ("buster", "10"),
    ("bullseye", "11"),
    ("bookworm", "12"),
    ("trixie", "13"),
    ("forky", "14"),
    ("duke", "15"),
];

/// One vulnerability of one source package in the tracker.
#[derive(Deserialize)]
struct TrackerEntry {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    releases: BTreeMap<String, TrackerRelease>,
}

/// Its state in one release.
#[derive(Deserialize)]
struct TrackerRelease {
    /// `resolved`, `open` or `undetermined`.
    status: String,
    /// For `resolved`: the first fixed version, `0` when the release was never affected.
    #[serde(default)]
    fixed_version: Option<String>,
    /// `low`, `medium`, `high`, `unimportant`, `not yet assigned`, …
    #[serde(default)]
    urgency: Option<String>,
}

/// A record being put together from entries found under several packages.
#[derive(Default)]
struct Gathered {
    description: Option<String>,
    affected: Vec<Affected>,
}

/// The affected entry of a package from "0" up to `fixed` (or every version, without one).
fn affected(
    ecosystem: String,
    name: &str,
    fixed: Option<&str>,
    specific: Option<Value>,
) -> Affected {
    let mut events = vec![Event::Introduced("0".to_owned())];
    events.extend(fixed.map(|v| Event::Fixed(v.to_owned())));
    Affected {
        package: Some(Package {
            ecosystem,
            name: name.to_owned(),
            purl: None,
        }),
        severity: Vec::new(),
        ranges: vec![Range {
            kind: RangeKind::Ecosystem,
            repo: None,
            events,
        }],
        versions: Vec::new(),
        ecosystem_specific: specific,
        database_specific: None,
    }
}

/// The record of `vulnerability` as the feed `prefix` words it: `DEBIAN-CVE-2024-1234` with
/// the CVE as its alias.
fn record(prefix: &str, vulnerability: &str, gathered: Gathered, modified: &str) -> Record {
    let summary = gathered.description.as_deref().map(|d| {
        let line = d.lines().next().unwrap_or_default();
        line.chars().take(200).collect::<String>()
    });
    Record {
        id: format!("{prefix}-{vulnerability}"),
        aliases: vec![vulnerability.to_owned()],
        modified: modified.to_owned(),
        published: None,
        withdrawn: None,
        summary,
        details: gathered.description,
        severity: Vec::new(),
        affected: gathered.affected,
        database_specific: None,
    }
}

/// Hands on a record after the checks every OSV record passes.
fn hand_on(record: Record, entry: &str, each: &mut dyn FnMut(Item)) {
    match record.check() {
        Ok(()) => each(Item::Record(Box::new(record))),
        Err(reason) => each(Item::Rejected(Rejected {
            id: None,
            entry: format!("{entry}:{}", record.id),
            reason,
        })),
    }
}

/// Reads the tracker's JSON (already split into its packages) as one record per
/// vulnerability, `DEBIAN-<id>`, affecting each source package in each release OSV names:
/// `resolved` from "0" to its fixed version (not at all when that is "0"), `open` every
/// version; `undetermined` is left out. The urgency goes with each package, where the
/// severity is read from.
pub fn read_debian_tracker(
    packages: &BTreeMap<String, &RawValue>,
    name: &str,
    modified: &str,
    each: &mut dyn FnMut(Item),
) {
    let mut gathered: BTreeMap<String, Gathered> = BTreeMap::new();
    for (package, raw) in packages {
        let entries: BTreeMap<String, TrackerEntry> = match serde_json::from_str(raw.get()) {
            Ok(entries) => entries,
            Err(e) => {
                each(Item::Rejected(Rejected {
                    id: None,
                    entry: format!("{name}:{package}"),
                    reason: format!("not a tracker entry of a source package: {e}"),
                }));
                continue;
            }
        };
        for (vulnerability, entry) in entries {
            let record = gathered.entry(vulnerability).or_default();
            if record.description.is_none() {
                record.description = entry.description;
            }
            for (release, state) in entry.releases {
                let Some((_, version)) = DEBIAN_RELEASES.iter().find(|(r, _)| *r == release) else {
                    continue;
                };
                let fixed = match (state.status.as_str(), state.fixed_version.as_deref()) {
                    ("resolved", Some(fixed)) if fixed != "0" => Some(fixed),
                    ("open", _) => None,
                    _ => continue,
                };
                let urgency = state.urgency.map(|u| json!({ "urgency": u }));
                record.affected.push(affected(
                    format!("Debian:{version}"),
                    package,
                    fixed,
                    urgency,
                ));
            }
        }
    }
    for (vulnerability, record_parts) in gathered {
        hand_on(
            record("DEBIAN", &vulnerability, record_parts, modified),
            name,
            each,
        );
    }
}

/// One Alpine secdb file.
#[derive(Deserialize)]
struct Secdb {
    distroversion: String,
    #[serde(default)]
    reponame: Option<String>,
    packages: Vec<SecdbPackage>,
}

#[derive(Deserialize)]
struct SecdbPackage {
    pkg: SecdbPkg,
}

#[derive(Deserialize)]
struct SecdbPkg {
    name: String,
    /// Fixed version → the vulnerabilities it fixes ("0": the release never had them).
    #[serde(default)]
    secfixes: BTreeMap<String, Option<Vec<String>>>,
}

/// Whether `token` reads as a vulnerability id (`CVE-2024-1234`, `GHSA-…`, `XSA-123`): an
/// upper-case prefix, a dash, then letters, digits and dashes.
fn vulnerability_id(token: &str) -> bool {
    let Some((prefix, rest)) = token.split_once('-') else {
        return false;
    };
    !prefix.is_empty()
        && prefix.chars().all(|c| c.is_ascii_uppercase())
        && !rest.is_empty()
        && rest.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// Reads an Alpine secdb file as one record per vulnerability,
/// `ALPINE-<release>-<repository>-<id>` (a file covers one release and repository, and
/// records of one id from two files must not replace each other), affecting each package
/// from "0" to the version that fixed it. Fixes listed under "0" (never affected) are left
/// out; words in a fix's list that are not ids are skipped.
pub fn read_alpine_secdb(bytes: &[u8], name: &str, modified: &str, each: &mut dyn FnMut(Item)) {
    let reject = |reason: String| {
        Item::Rejected(Rejected {
            id: None,
            entry: name.to_owned(),
            reason,
        })
    };
    let secdb: Secdb = match serde_json::from_slice(bytes) {
        Ok(secdb) => secdb,
        Err(e) => return each(reject(format!("not an Alpine secdb: {e}"))),
    };
    let release = secdb.distroversion.trim();
    let numbered = release.strip_prefix('v').is_some_and(|v| {
        let mut parts = v.split('.');
        let number = |p: Option<&str>| {
            p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        };
        number(parts.next()) && number(parts.next()) && parts.next().is_none()
    });
    if !numbered {
        return each(reject(format!(
            "distroversion {release:?} is not a release such as v3.19"
        )));
    }
    let repository = secdb.reponame.unwrap_or_else(|| "main".to_owned());
    let mut gathered: BTreeMap<String, Gathered> = BTreeMap::new();
    for package in secdb.packages {
        for (fixed, ids) in package.pkg.secfixes {
            let ids = ids.unwrap_or_default();
            let ids = ids
                .iter()
                .flat_map(|words| words.split_whitespace())
                .filter(|token| vulnerability_id(token));
            for id in ids {
                let record = gathered.entry(id.to_owned()).or_default();
                if fixed.trim() != "0" {
                    record.affected.push(affected(
                        format!("Alpine:{release}"),
                        &package.pkg.name,
                        Some(fixed.trim()),
                        None,
                    ));
                }
            }
        }
    }
    let prefix = format!("ALPINE-{release}-{repository}");
    for (id, parts) in gathered {
        hand_on(record(&prefix, &id, parts, modified), name, each);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::osv::Severity;

    const MODIFIED: &str = "2026-12-01T00:00:00Z";

    fn top(text: &str) -> BTreeMap<String, &RawValue> {
        serde_json::from_str(text).unwrap()
    }

    fn read_tracker(text: &str) -> (Vec<Record>, Vec<Rejected>) {
        let (mut records, mut rejected) = (Vec::new(), Vec::new());
        read_debian_tracker(
            &top(text),
            "tracker.json",
            MODIFIED,
            &mut |item| match item {
                Item::Record(r) => records.push(*r),
                Item::Rejected(r) => rejected.push(r),
            },
        );
        (records, rejected)
    }

    fn ranges(affected: &Affected) -> (String, String, Vec<Event>) {
        let package = affected.package.as_ref().unwrap();
        (
            package.ecosystem.clone(),
            package.name.clone(),
            affected.ranges[0].events.clone(),
        )
    }

    const TRACKER: &str = r#"{
        "openssl": {
            "CVE-2024-0001": {
                "description": "A flaw in X.\nMore text.",
                "scope": "remote",
                "releases": {
                    "bookworm": {"status": "resolved", "fixed_version": "3.0.13-1~deb12u1",
                                 "urgency": "medium", "repositories": {"bookworm": "3.0.11-1~deb12u2"}},
                    "bullseye": {"status": "open", "urgency": "low**"},
                    "sid": {"status": "resolved", "fixed_version": "3.1.5-1", "urgency": "medium"}
                }
            },
            "TEMP-0000000-ABCDEF": {
                "releases": {"bookworm": {"status": "undetermined", "urgency": "not yet assigned"}}
            }
        },
        "zlib": {
            "CVE-2024-0001": {
                "releases": {"bookworm": {"status": "resolved", "fixed_version": "0", "urgency": "high"},
                             "buster": {"status": "resolved", "fixed_version": "1:1.2.11.dfsg-1+deb10u2", "urgency": "high"}}
            }
        },
        "broken": {"CVE-2024-0002": {"releases": {"bookworm": {"fixed_version": 7}}}}
    }"#;

    #[test]
    fn the_tracker_is_sniffed_and_read_one_record_per_vulnerability() {
        assert_eq!(sniff(&top(TRACKER)), Some(Feed::DebianTracker));
        let (records, rejected) = read_tracker(TRACKER);
        let ids: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["DEBIAN-CVE-2024-0001", "DEBIAN-TEMP-0000000-ABCDEF"]);
        assert_eq!(rejected.len(), 1, "{rejected:?}");
        assert_eq!(rejected[0].entry, "tracker.json:broken");

        let cve = &records[0];
        assert_eq!(cve.aliases, ["CVE-2024-0001"]);
        assert_eq!(cve.summary.as_deref(), Some("A flaw in X."));
        assert_eq!(cve.modified, MODIFIED);
        let affected: Vec<_> = cve.affected.iter().map(ranges).collect();
        // sid has no OSV ecosystem; zlib in bookworm was never affected.
        assert_eq!(
            affected,
            [
                (
                    "Debian:12".to_owned(),
                    "openssl".to_owned(),
                    vec![
                        Event::Introduced("0".into()),
                        Event::Fixed("3.0.13-1~deb12u1".into())
                    ]
                ),
                (
                    "Debian:11".to_owned(),
                    "openssl".to_owned(),
                    vec![Event::Introduced("0".into())]
                ),
                (
                    "Debian:10".to_owned(),
                    "zlib".to_owned(),
                    vec![
                        Event::Introduced("0".into()),
                        Event::Fixed("1:1.2.11.dfsg-1+deb10u2".into())
                    ]
                ),
            ]
        );
        // The highest urgency of its packages.
        assert_eq!(cve.severity(), Severity::High);
        // Undetermined everywhere: a record that affects nothing (so a stored one is emptied).
        assert!(records[1].affected.is_empty());
    }

    #[test]
    fn osv_records_and_other_objects_are_not_feeds() {
        assert_eq!(sniff(&top(r#"{"id": "CVE-1", "modified": "x"}"#)), None);
        assert_eq!(sniff(&top(r#"{"a": {"b": {"c": 1}}}"#)), None);
        assert_eq!(sniff(&top(r#"{"a": 1}"#)), None);
        assert_eq!(sniff(&top("{}")), None);
    }

    fn read_secdb(text: &str) -> (Vec<Record>, Vec<Rejected>) {
        let (mut records, mut rejected) = (Vec::new(), Vec::new());
        read_alpine_secdb(
            text.as_bytes(),
            "main.json",
            MODIFIED,
            &mut |item| match item {
                Item::Record(r) => records.push(*r),
                Item::Rejected(r) => rejected.push(r),
            },
        );
        (records, rejected)
    }

    #[test]
    fn a_secdb_file_reads_one_record_per_vulnerability_of_its_release() {
        let text = r#"{
            "apkurl": "{{urlprefix}}/{{distroversion}}/{{reponame}}/{{arch}}/{{pkg.name}}-{{pkg.ver}}.apk",
            "archs": ["x86_64"], "reponame": "main", "urlprefix": "https://dl-cdn.alpinelinux.org/alpine",
            "distroversion": "v3.19",
            "packages": [
                {"pkg": {"name": "openssl", "secfixes": {
                    "3.1.4-r1": ["CVE-2023-5678"],
                    "3.1.2-r0": ["CVE-2023-3817 XSA-1 (see notes)"],
                    "0": ["CVE-2022-9999"]
                }}},
                {"pkg": {"name": "musl", "secfixes": {"1.2.4-r2": ["CVE-2023-5678"], "1.0-r0": null}}}
            ]
        }"#;
        let top = top(text);
        assert_eq!(sniff(&top), Some(Feed::AlpineSecdb));
        let (records, rejected) = read_secdb(text);
        assert!(rejected.is_empty(), "{rejected:?}");
        let ids: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "ALPINE-v3.19-main-CVE-2022-9999",
                "ALPINE-v3.19-main-CVE-2023-3817",
                "ALPINE-v3.19-main-CVE-2023-5678",
                "ALPINE-v3.19-main-XSA-1",
            ]
        );
        assert!(
            records[0].affected.is_empty(),
            "fixed in \"0\": never affected"
        );
        let both: Vec<_> = records[2].affected.iter().map(ranges).collect();
        assert_eq!(
            both,
            [
                (
                    "Alpine:v3.19".to_owned(),
                    "openssl".to_owned(),
                    vec![
                        Event::Introduced("0".into()),
                        Event::Fixed("3.1.4-r1".into())
                    ]
                ),
                (
                    "Alpine:v3.19".to_owned(),
                    "musl".to_owned(),
                    vec![
                        Event::Introduced("0".into()),
                        Event::Fixed("1.2.4-r2".into())
                    ]
                ),
            ]
        );
        assert_eq!(records[2].aliases, ["CVE-2023-5678"]);
    }

    #[test]
    fn a_secdb_without_a_numbered_release_or_packages_is_refused_whole() {
        let (records, rejected) = read_secdb(r#"{"distroversion": "edge", "packages": []}"#);
        assert!(records.is_empty());
        assert!(rejected[0].reason.contains("\"edge\""), "{rejected:?}");
        let (records, rejected) =
            read_secdb(r#"{"distroversion": "v3.19", "packages": [{"pkg": {"secfixes": {}}}]}"#);
        assert!(records.is_empty());
        assert!(
            rejected[0].reason.contains("not an Alpine secdb"),
            "{rejected:?}"
        );
    }
}
