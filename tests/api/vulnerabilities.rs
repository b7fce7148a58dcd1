//! Vulnerability matching proved on real content: two Debian bookworm root filesystems made by
//! mmdebstrap (the release, and the same upgraded from bookworm-updates and -security) and
//! OSV advisories derived from the upgraded packages' `changelog.Debian.gz`, all made by
//! `tests/fixtures/debian_security.py`. The older image must be reported vulnerable to exactly
//! the CVEs those updates fix, the upgraded one to none; a re-imported advisory re-matches the
//! stored inventories without a new scan.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{
    OCI_CONFIG, OCI_MANIFEST, TestServer, descriptor, image_config, json_body, sha256,
};

const PLAIN_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

/// A finding as the proof compares it: (CVE, source package, installed source version, fixed
/// version).
type Finding = (String, String, String, String);

/// What `tests/fixtures/debian_security.py` made.
struct Fixtures {
    old_tar: Vec<u8>,
    new_tar: Vec<u8>,
    /// The OSV records (a JSON array).
    advisories: Value,
    /// The findings the old image must have, exactly.
    expected_old: BTreeSet<Finding>,
}

/// The fixtures directory: `BERTH_TEST_DEBIAN_SECURITY`, else `target/debian-security`.
fn fixtures_dir() -> PathBuf {
    std::env::var_os("BERTH_TEST_DEBIAN_SECURITY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/debian-security"))
}

fn load_fixtures() -> Fixtures {
    let dir = fixtures_dir();
    let read = |name: &str| {
        std::fs::read(dir.join(name)).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; make the fixtures with `python3 tests/fixtures/debian_security.py {}` \
                 (needs mmdebstrap: scripts/install-test-deps.sh) or set \
                 BERTH_TEST_DEBIAN_SECURITY to where they are",
                dir.join(name).display(),
                dir.display()
            )
        })
    };
    let advisories: Value = serde_json::from_slice(&read("osv.json")).expect("osv.json is JSON");
    let expected: Value =
        serde_json::from_slice(&read("expected.json")).expect("expected.json is JSON");
    let expected_old: BTreeSet<Finding> = expected["old"]
        .as_array()
        .expect("expected.json has old")
        .iter()
        .map(|row| {
            let field = |i: usize| {
                row[i]
                    .as_str()
                    .expect("expected rows are strings")
                    .to_owned()
            };
            (field(0), field(1), field(2), field(3))
        })
        .collect();
    assert_eq!(
        expected["new"],
        json!([]),
        "the upgraded image is expected clean"
    );
    assert!(!expected_old.is_empty(), "expected.json lists no finding");
    Fixtures {
        old_tar: read("old.tar"),
        new_tar: read("new.tar"),
        advisories,
        expected_old,
    }
}

/// Pushes `rootfs` as the one (uncompressed) layer of a linux/amd64 image tagged `tag`;
/// returns the image's digest and the layer's.
async fn push_rootfs(s: &TestServer, repo: &str, tag: &str, rootfs: &[u8]) -> (String, String) {
    let config = image_config("linux", "amd64", None);
    s.push_blob(repo, &config).await;
    let layer = s.push_blob(repo, rootfs).await;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, &config),
        "layers": [descriptor(PLAIN_LAYER, rootfs)],
    }))
    .unwrap();
    let digest = s.put_manifest_ok(repo, tag, OCI_MANIFEST, &manifest).await;
    assert_eq!(digest, sha256(&manifest));
    (digest, layer)
}

/// `POST /api/v1/advisories` with `records`; the answer must be 200 with nothing rejected.
async fn import(s: &TestServer, records: &Value) -> Value {
    let resp = s
        .req(Method::POST, "/api/v1/advisories")
        .header("content-type", "application/json")
        .body(records.to_string())
        .send()
        .await
        .expect("POST advisories");
    let status = resp.status();
    let body = json_body(resp).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["rejected"], json!([]), "{body}");
    body
}

fn image_path(repo: &str, digest: &str, rest: &str) -> String {
    format!("/api/v1/repositories/{repo}/-/images/{digest}/{rest}")
}

/// `POST …/scan?wait=true`: the scan must succeed; returns its record.
async fn scan_now(s: &TestServer, repo: &str, digest: &str) -> Value {
    let resp = s
        .req(Method::POST, &image_path(repo, digest, "scan?wait=true"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let record = json_body(resp).await;
    assert_eq!(record["status"], "ok", "{record}");
    record
}

/// How many scans `…/scans` records for the image.
async fn scans_recorded(s: &TestServer, repo: &str, digest: &str) -> usize {
    let resp = s.get(&image_path(repo, digest, "scans")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    json_body(resp).await["items"].as_array().unwrap().len()
}

/// The image's inventory holds every `(source, version)` of `sources` (its dpkg source
/// packages and source versions, the names and versions advisories are matched on).
async fn assert_inventory_has(
    s: &TestServer,
    repo: &str,
    digest: &str,
    sources: &BTreeSet<(String, String)>,
) {
    let resp = s
        .get(&image_path(repo, digest, "packages?limit=1000"))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body = json_body(resp).await;
    assert!(body.get("next").is_none(), "more than 1000 packages");
    let inventory: BTreeSet<(String, String)> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["ecosystem"] == "Debian:12")
        .map(|p| {
            (
                p["source_name"].as_str().unwrap().to_owned(),
                p["source_version"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let missing: Vec<_> = sources.difference(&inventory).collect();
    assert!(missing.is_empty(), "{repo}: no package of {missing:?}");
}

/// `GET …/vulnerabilities`: every item (following `next` when the answer is paged) and the
/// summary.
async fn vulnerabilities(s: &TestServer, repo: &str, digest: &str) -> (Vec<Value>, Value) {
    let mut items = Vec::new();
    let mut path = image_path(repo, digest, "vulnerabilities");
    loop {
        let resp = s.get(&path).await;
        let status = resp.status();
        let body = json_body(resp).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        items.extend(body["items"].as_array().expect("items").iter().cloned());
        match body.get("next").and_then(Value::as_str) {
            Some(next) => {
                path = image_path(repo, digest, &format!("vulnerabilities?cursor={next}"));
            }
            None => return (items, body["summary"].clone()),
        }
    }
}

/// The CVE an item is about: its one `CVE-…` alias (the derived records carry one each).
fn cve_of(item: &Value) -> String {
    let cves: Vec<&str> = item["aliases"]
        .as_array()
        .expect("aliases")
        .iter()
        .filter_map(Value::as_str)
        .filter(|a| a.starts_with("CVE-"))
        .collect();
    assert_eq!(cves.len(), 1, "one CVE alias: {item}");
    cves[0].to_owned()
}

fn findings(items: &[Value]) -> BTreeSet<Finding> {
    let text = |item: &Value, key: &str| {
        item[key]
            .as_str()
            .unwrap_or_else(|| panic!("{key} of {item}"))
            .to_owned()
    };
    let set: BTreeSet<Finding> = items
        .iter()
        .map(|item| {
            (
                cve_of(item),
                text(item, "package"),
                text(item, "installed_version"),
                text(item, "fixed_version"),
            )
        })
        .collect();
    assert_eq!(set.len(), items.len(), "a finding is reported twice");
    set
}

/// The severity each derived record gives (its Debian urgency), by id.
fn severities(advisories: &Value) -> BTreeMap<String, String> {
    advisories
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let urgency = r["affected"][0]["ecosystem_specific"]["urgency"]
                .as_str()
                .unwrap()
                .to_owned();
            (r["id"].as_str().unwrap().to_owned(), urgency)
        })
        .collect()
}

/// The summary counts each severity of `items`, and nothing else.
fn assert_summary_counts(items: &[Value], summary: &Value) {
    let levels = ["critical", "high", "medium", "low", "unknown"];
    let mut counted: BTreeMap<&str, u64> = levels.iter().map(|l| (*l, 0)).collect();
    for item in items {
        let level = item["severity"].as_str().expect("severity");
        *counted
            .get_mut(level)
            .unwrap_or_else(|| panic!("severity {level}")) += 1;
    }
    for level in levels {
        assert_eq!(
            summary[level].as_u64(),
            Some(counted[level]),
            "{level}: {summary}"
        );
    }
    let total: u64 = counted.values().sum();
    assert_eq!(total, items.len() as u64);
}

/// Every item comes from the image's one layer, on its one platform, with the severity its
/// advisory gives.
fn assert_items_point_at(items: &[Value], layer: &str, severity: &BTreeMap<String, String>) {
    for item in items {
        assert_eq!(item["layer"], layer, "{item}");
        // A single-platform image: no platform, or its config's (as a string or an object).
        let platform = &item["platform"];
        assert!(
            platform.is_null()
                || platform == "linux/amd64"
                || (platform["os"] == "linux" && platform["architecture"] == "amd64"),
            "{item}"
        );
        let id = item["id"].as_str().expect("id");
        assert_eq!(
            item["severity"].as_str(),
            severity.get(id).map(String::as_str),
            "{item}"
        );
    }
}

/// The proof of the issue: the release image is vulnerable to exactly the CVEs its security
/// updates fix (openssl, zlib with its epoch, expat and perl among them), the upgraded image
/// to none; the summary adds up and every finding names the one layer.
#[tokio::test]
#[ignore = "needs the Debian security fixtures: python3 tests/fixtures/debian_security.py target/debian-security"]
async fn the_release_image_has_exactly_the_cves_its_security_updates_fix() {
    let fixtures = load_fixtures();
    for source in ["openssl", "zlib", "expat", "perl"] {
        assert!(
            fixtures.expected_old.iter().any(|f| f.1 == source),
            "the fixtures derive no CVE of {source}"
        );
    }
    let s = TestServer::start().await;
    let (old, old_layer) = push_rootfs(&s, "debian/old", "bookworm", &fixtures.old_tar).await;
    let (new, _) = push_rootfs(&s, "debian/new", "bookworm-security", &fixtures.new_tar).await;
    let report = import(&s, &fixtures.advisories).await;
    assert_eq!(
        report["imported"].as_u64(),
        Some(fixtures.advisories.as_array().unwrap().len() as u64),
        "{report}"
    );
    // Matched at scan time: the advisories are known before the images are scanned.
    scan_now(&s, "debian/old", &old).await;
    scan_now(&s, "debian/new", &new).await;
    let old_sources = fixtures
        .expected_old
        .iter()
        .map(|f| (f.1.clone(), f.2.clone()))
        .collect();
    let new_sources = fixtures
        .expected_old
        .iter()
        .map(|f| (f.1.clone(), f.3.clone()))
        .collect();
    assert_inventory_has(&s, "debian/old", &old, &old_sources).await;
    assert_inventory_has(&s, "debian/new", &new, &new_sources).await;
    let severity = severities(&fixtures.advisories);

    let (items, summary) = vulnerabilities(&s, "debian/old", &old).await;
    let found = findings(&items);
    let missing: Vec<_> = fixtures.expected_old.difference(&found).collect();
    let extra: Vec<_> = found.difference(&fixtures.expected_old).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "old image: missing {missing:?}, unexpected {extra:?}"
    );
    assert_summary_counts(&items, &summary);
    assert_items_point_at(&items, &old_layer, &severity);
    // zlib's versions carry an epoch, and it is what is reported.
    assert!(
        found
            .iter()
            .any(|f| f.1 == "zlib" && f.2.starts_with("1:") && f.3.starts_with("1:")),
        "{found:?}"
    );

    let (items, summary) = vulnerabilities(&s, "debian/new", &new).await;
    assert_eq!(items, Vec::<Value>::new(), "the upgraded image");
    // Every level is there, at zero.
    assert_summary_counts(&items, &summary);
}

/// Advisories imported after the scan match the stored inventory; one re-imported with a
/// later `modified` and its fix lowered to the version the old image has: the old image is no
/// longer vulnerable to it, the rest stands, and no scan ran again (the stored inventory is
/// re-matched).
#[tokio::test]
#[ignore = "needs the Debian security fixtures: python3 tests/fixtures/debian_security.py target/debian-security"]
async fn advisories_imported_after_the_scan_and_a_lowered_fix_rematch_without_a_rescan() {
    let fixtures = load_fixtures();
    let s = TestServer::start().await;
    let (old, old_layer) = push_rootfs(&s, "debian/old", "bookworm", &fixtures.old_tar).await;
    // Matched at import time: the image is scanned before any advisory is known.
    scan_now(&s, "debian/old", &old).await;
    let old_sources = fixtures
        .expected_old
        .iter()
        .map(|f| (f.1.clone(), f.2.clone()))
        .collect();
    assert_inventory_has(&s, "debian/old", &old, &old_sources).await;
    let (items, summary) = vulnerabilities(&s, "debian/old", &old).await;
    assert_eq!(items, Vec::<Value>::new(), "no advisory imported yet");
    assert_summary_counts(&items, &summary);
    let report = import(&s, &fixtures.advisories).await;
    assert_eq!(
        report["imported"].as_u64(),
        Some(fixtures.advisories.as_array().unwrap().len() as u64),
        "{report}"
    );
    let (items, summary) = vulnerabilities(&s, "debian/old", &old).await;
    assert_eq!(findings(&items), fixtures.expected_old);
    assert_summary_counts(&items, &summary);
    assert_items_point_at(&items, &old_layer, &severities(&fixtures.advisories));

    // perl's first CVE (perl-base is in every minbase image), now said fixed in the version
    // the old image has.
    let lowered = fixtures
        .expected_old
        .iter()
        .find(|f| f.1 == "perl")
        .expect("a perl finding")
        .clone();
    let (cve, source, old_version, _) = &lowered;
    let mut record = fixtures
        .advisories
        .as_array()
        .unwrap()
        .iter()
        .find(|r| {
            r["aliases"][0] == cve.as_str()
                && r["affected"][0]["package"]["name"] == source.as_str()
        })
        .expect("the finding's record")
        .clone();
    record["modified"] = json!("2026-06-01T00:00:00Z");
    record["affected"][0]["ranges"][0]["events"][1] = json!({ "fixed": old_version });
    let report = import(&s, &json!([record])).await;
    assert_eq!(report["imported"], 1, "{report}");

    let (items, summary) = vulnerabilities(&s, "debian/old", &old).await;
    let mut expected = fixtures.expected_old.clone();
    expected.remove(&lowered);
    assert_eq!(findings(&items), expected);
    assert_summary_counts(&items, &summary);
    assert_items_point_at(&items, &old_layer, &severities(&fixtures.advisories));
    assert_eq!(
        scans_recorded(&s, "debian/old", &old).await,
        1,
        "re-matching needs no new scan"
    );
}

/// The same fixes written as the Debian security tracker's JSON (keyed by source package,
/// each CVE with a status per release) find the same CVEs, as `DEBIAN-<CVE>` records with the
/// highest urgency of their packages. Releases other than bookworm match nothing here, a
/// package the tracker calls never affected (fixed in "0") has no finding, and an `open` one
/// is found in both images without a fixed version.
#[tokio::test]
#[ignore = "needs the Debian security fixtures: python3 tests/fixtures/debian_security.py target/debian-security"]
async fn the_debian_tracker_form_finds_the_same_cves() {
    let fixtures = load_fixtures();
    let s = TestServer::start().await;
    let (old, old_layer) = push_rootfs(&s, "debian/old", "bookworm", &fixtures.old_tar).await;
    let (new, _) = push_rootfs(&s, "debian/new", "bookworm-security", &fixtures.new_tar).await;
    scan_now(&s, "debian/old", &old).await;
    scan_now(&s, "debian/new", &new).await;

    let order = ["unknown", "low", "medium", "high", "critical"];
    let rank = |level: &str| order.iter().position(|l| *l == level).unwrap();
    let mut tracker = serde_json::Map::new();
    let mut severity: BTreeMap<String, String> = BTreeMap::new();
    for record in fixtures.advisories.as_array().unwrap() {
        let cve = record["aliases"][0].as_str().unwrap();
        let affected = &record["affected"][0];
        let source = affected["package"]["name"].as_str().unwrap();
        let fixed = &affected["ranges"][0]["events"][1]["fixed"];
        let urgency = affected["ecosystem_specific"]["urgency"].as_str().unwrap();
        tracker.entry(source).or_insert(json!({}))[cve] = json!({
            "description": format!("{cve} in {source}\nMore words."),
            "scope": "remote",
            "releases": {
                "bookworm": {"status": "resolved", "fixed_version": fixed, "urgency": urgency,
                             "repositories": {"bookworm": "0"}},
                "bullseye": {"status": "open", "urgency": urgency},
                "sid": {"status": "resolved", "fixed_version": fixed, "urgency": urgency},
            },
        });
        let level = severity
            .entry(format!("DEBIAN-{cve}"))
            .or_insert_with(|| urgency.into());
        if rank(urgency) > rank(level) {
            *level = urgency.to_owned();
        }
    }
    // Made-up CVEs: never affected in bookworm, and open with no fix.
    tracker.insert(
        "base-files".into(),
        json!({"CVE-2099-0001": {"releases": {"bookworm":
            {"status": "resolved", "fixed_version": "0", "urgency": "high"}}}}),
    );
    tracker.insert(
        "coreutils".into(),
        json!({"CVE-2099-0002": {"releases": {"bookworm":
            {"status": "open", "urgency": "unimportant"}}}}),
    );
    severity.insert("DEBIAN-CVE-2099-0002".into(), "low".into());
    let cves: BTreeSet<&String> = fixtures.expected_old.iter().map(|f| &f.0).collect();
    let report = import(&s, &Value::Object(tracker)).await;
    assert_eq!(
        report["imported"].as_u64(),
        Some(cves.len() as u64 + 2),
        "one record per CVE: {report}"
    );

    let open_finding = |items: &mut Vec<Value>| {
        let at = items
            .iter()
            .position(|i| i["id"] == "DEBIAN-CVE-2099-0002")
            .expect("the open CVE is found");
        let item = items.remove(at);
        assert_eq!(item["package"], "coreutils", "{item}");
        assert_eq!(item["fixed_version"], Value::Null, "{item}");
        assert_eq!(item["severity"], "low", "{item}");
    };
    let (mut items, summary) = vulnerabilities(&s, "debian/old", &old).await;
    assert_summary_counts(&items, &summary);
    assert_items_point_at(&items, &old_layer, &severity);
    open_finding(&mut items);
    assert_eq!(findings(&items), fixtures.expected_old);
    assert!(
        items
            .iter()
            .all(|i| i["id"] == format!("DEBIAN-{}", cve_of(i))),
        "{items:?}"
    );

    let (mut items, summary) = vulnerabilities(&s, "debian/new", &new).await;
    assert_summary_counts(&items, &summary);
    open_finding(&mut items);
    assert_eq!(items, Vec::<Value>::new(), "the upgraded image");
}
