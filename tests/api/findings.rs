//! Stored findings: kept across rescans and re-imports with when they were first and last
//! seen, re-matched after an import from the stored inventories (no blob read), their
//! changes, a child of a scanned index, and the registry-wide views (`/api/v1/vulnerabilities`
//! and `/api/v1/vulnerabilities/{id}`) with the callers' access, and the image listing's
//! summary. Images are made here from hand-written dpkg databases (see `scans`).

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{
    OCI_INDEX, OCI_MANIFEST, TestServer,
    auth::{ADMIN, ADMIN_PASSWORD, password_of, start_auth},
    json_body,
};
use crate::scans::{
    DEBIAN_12, GZIP_LAYER, ZSTD_LAYER, advisory, assert_problem, debian_layers, gzip, image_path,
    layers_read_total, push_layers, scan_now, stanza, tar_of,
};

/// `POST /api/v1/advisories` with `records`: 200 with nothing refused; the report.
async fn import(s: &TestServer, records: Value) -> Value {
    let resp = s
        .req(Method::POST, "/api/v1/advisories")
        .header("content-type", "application/json")
        .body(records.to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let report = json_body(resp).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["rejected"], json!([]), "{report}");
    report
}

/// `GET` `path`, which must answer 200; its body.
async fn get_ok(s: &TestServer, path: &str) -> Value {
    let resp = s.get(path).await;
    let status = resp.status();
    let body = json_body(resp).await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    body
}

/// `(id, package, installed_version)` of each item.
fn keys(items: &Value) -> Vec<(String, String, String)> {
    items
        .as_array()
        .expect("items")
        .iter()
        .map(|v| {
            let f = |k: &str| v[k].as_str().unwrap_or("-").to_owned();
            (f("id"), f("package"), f("installed_version"))
        })
        .collect()
}

fn key(id: &str, package: &str, installed: &str) -> (String, String, String) {
    (id.to_owned(), package.to_owned(), installed.to_owned())
}

/// `(change, advisory, package)` of each change, newest first.
fn change_list(body: &Value) -> Vec<(String, String, String)> {
    body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|c| {
            let f = |k: &str| c[k].as_str().unwrap().to_owned();
            (f("change"), f("advisory"), f("package"))
        })
        .collect()
}

fn change(kind: &str, advisory: &str, package: &str) -> (String, String, String) {
    (kind.to_owned(), advisory.to_owned(), package.to_owned())
}

/// The openssl advisory of the scans module (fixed in 3.0.13-1~deb12u1, high), as modified
/// at `modified` with its fix at `fixed`.
fn openssl_advisory(modified: &str, fixed: &str) -> Value {
    let mut record = advisory(
        "DSA-0001-1",
        "CVE-2024-0001",
        "openssl",
        fixed,
        json!([]),
        "high",
    );
    record["modified"] = json!(modified);
    record
}

/// The critical zlib advisory (by its CVSS vector).
fn zlib_advisory() -> Value {
    advisory(
        "DEBIAN-CVE-2024-0002",
        "CVE-2024-0002",
        "zlib",
        "1:1.2.13.dfsg-1+deb12u1",
        json!([{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}]),
        "low",
    )
}

/// A Debian 12 layer holding only `libssl3` at `version`.
fn openssl_only_layer(version: &str) -> Vec<u8> {
    let status = stanza(
        "libssl3",
        version,
        Some(&format!("openssl ({version})")),
        "amd64",
    );
    gzip(&tar_of(&[
        ("etc/os-release", DEBIAN_12),
        ("var/lib/dpkg/status", status.as_bytes()),
    ]))
}

/// A finding keeps its `first_seen` across a rescan and a re-import while `last_seen`
/// follows the clock; its `new` change is recorded once.
#[tokio::test]
async fn first_seen_is_kept_and_last_seen_moves_across_a_rescan_and_a_reimport() {
    let s = TestServer::start().await;
    let (base, _, _) = debian_layers();
    let (digest, _) = push_layers(&s, "debian/app", "v1", "amd64", &[(GZIP_LAYER, &base)]).await;
    import(
        &s,
        json!([openssl_advisory("2024-05-01T00:00:00Z", "3.0.13-1~deb12u1")]),
    )
    .await;
    let before = s.clock.now();
    scan_now(&s, "debian/app", &digest).await;
    let path = image_path("debian/app", &digest, "vulnerabilities");
    let body = get_ok(&s, &path).await;
    assert_eq!(
        keys(&body["items"]),
        [key("DSA-0001-1", "openssl", "3.0.11-1~deb12u1")]
    );
    let first_seen = body["items"][0]["first_seen"].as_i64().expect("first_seen");
    assert!((before..=s.clock.now()).contains(&first_seen), "{body}");
    assert_eq!(body["items"][0]["last_seen"], first_seen);
    assert_eq!(body["items"][0]["aliases"], json!(["CVE-2024-0001"]));
    // The clock moved by `moved` seconds (and the few the test took).
    let seen_after = |body: &Value, moved: i64| {
        assert_eq!(body["items"][0]["first_seen"], first_seen, "{body}");
        let last = body["items"][0]["last_seen"].as_i64().expect("last_seen");
        assert!((moved..moved + 30).contains(&(last - first_seen)), "{body}");
    };

    s.clock.advance(100);
    scan_now(&s, "debian/app", &digest).await;
    seen_after(&get_ok(&s, &path).await, 100);

    s.clock.advance(100);
    let report = import(
        &s,
        json!([openssl_advisory("2024-06-01T00:00:00Z", "3.0.13-1~deb12u1")]),
    )
    .await;
    assert_eq!(report["rematched_images"], 1, "{report}");
    assert_eq!(report["changed_images"], 0, "{report}");
    seen_after(&get_ok(&s, &path).await, 200);

    let changes = get_ok(&s, &format!("{path}/changes")).await;
    assert_eq!(
        change_list(&changes),
        [change("new", "DSA-0001-1", "openssl")]
    );
    assert_eq!(changes["items"][0]["at"], first_seen);
    assert_eq!(changes["items"][0]["manifest"], digest.as_str());
}

/// An advisory imported after the scan makes the image vulnerable from its stored inventory
/// (no blob read, no new scan); an update lowering the fix to the installed version resolves
/// it, and both changes are listed newest first. An image without the package is not
/// re-matched.
#[tokio::test]
async fn imports_rematch_stored_inventories_and_record_new_and_resolved_findings() {
    let s = TestServer::start().await;
    let (base, _, _) = debian_layers();
    let (digest, _) = push_layers(&s, "debian/app", "v1", "amd64", &[(GZIP_LAYER, &base)]).await;
    let tzdata = gzip(&tar_of(&[
        ("etc/os-release", DEBIAN_12),
        (
            "var/lib/dpkg/status",
            stanza("tzdata", "2024a-0+deb12u1", None, "all").as_bytes(),
        ),
    ]));
    let (other, _) = push_layers(&s, "debian/tz", "v1", "amd64", &[(GZIP_LAYER, &tzdata)]).await;
    scan_now(&s, "debian/app", &digest).await;
    scan_now(&s, "debian/tz", &other).await;
    let path = image_path("debian/app", &digest, "vulnerabilities");
    let body = get_ok(&s, &path).await;
    assert_eq!(body["items"], json!([]));
    let read_before = layers_read_total(&s).await;

    let before = s.clock.now();
    let report = import(
        &s,
        json!([openssl_advisory("2024-05-01T00:00:00Z", "3.0.13-1~deb12u1")]),
    )
    .await;
    assert_eq!(
        (&report["rematched_images"], &report["changed_images"]),
        (&json!(1), &json!(1)),
        "only the image holding openssl is re-matched: {report}"
    );
    let body = get_ok(&s, &path).await;
    assert_eq!(
        keys(&body["items"]),
        [key("DSA-0001-1", "openssl", "3.0.11-1~deb12u1")]
    );
    let first_seen = body["items"][0]["first_seen"].as_i64().expect("first_seen");
    assert!((before..=s.clock.now()).contains(&first_seen), "{body}");
    assert_eq!(body["summary"]["high"], 1);
    assert_eq!(layers_read_total(&s).await, read_before, "no blob was read");
    let scans = get_ok(&s, &image_path("debian/app", &digest, "scans")).await;
    assert_eq!(scans["items"].as_array().unwrap().len(), 1, "no new scan");

    s.clock.advance(60);
    let report = import(
        &s,
        json!([openssl_advisory("2024-06-01T00:00:00Z", "3.0.11-1~deb12u1")]),
    )
    .await;
    assert_eq!(report["changed_images"], 1, "{report}");
    let body = get_ok(&s, &path).await;
    assert_eq!(body["items"], json!([]), "fixed in the installed version");
    assert_eq!(body["summary"]["high"], 0);
    let changes = get_ok(&s, &format!("{path}/changes")).await;
    assert_eq!(
        change_list(&changes),
        [
            change("resolved", "DSA-0001-1", "openssl"),
            change("new", "DSA-0001-1", "openssl"),
        ]
    );
    assert_eq!(changes["items"][1]["at"], first_seen);
    let resolved_at = changes["items"][0]["at"].as_i64().expect("at");
    assert!((60..90).contains(&(resolved_at - first_seen)), "{changes}");
    // Paged one by one, the same list.
    let first = get_ok(&s, &format!("{path}/changes?limit=1")).await;
    assert_eq!(change_list(&first), change_list(&changes)[..1]);
    let next = first["next"].as_str().expect("next");
    let second = get_ok(&s, &format!("{path}/changes?limit=1&cursor={next}")).await;
    assert_eq!(change_list(&second), change_list(&changes)[1..]);
    assert!(second.get("next").is_none(), "{second}");
    assert_eq!(layers_read_total(&s).await, read_before);
}

/// An index scanned whole: each child pulled by digest has the findings found in it, with
/// its platform, and its changes; the index has both children's.
#[tokio::test]
async fn a_child_pulled_by_digest_has_the_findings_its_index_scan_found() {
    let s = TestServer::start().await;
    let repo = "multi/app";
    import(
        &s,
        json!([openssl_advisory("2024-05-01T00:00:00Z", "3.0.13-1~deb12u1")]),
    )
    .await;
    let mut children = Vec::new();
    let mut digests = Vec::new();
    for (arch, version) in [("amd64", "3.0.11-1~deb12u1"), ("arm64", "3.0.13-1~deb12u1")] {
        let layer = openssl_only_layer(version);
        let (digest, manifest) = push_layers(&s, repo, "", arch, &[(GZIP_LAYER, &layer)]).await;
        children.push(json!({
            "mediaType": OCI_MANIFEST, "digest": digest, "size": manifest.len(),
            "platform": { "os": "linux", "architecture": arch },
        }));
        digests.push(digest);
    }
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children,
    }))
    .unwrap();
    let index_digest = s.put_manifest_ok(repo, "latest", OCI_INDEX, &index).await;
    let resp = s
        .get(&image_path(repo, &digests[0], "vulnerabilities"))
        .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND, "nothing scanned yet");
    scan_now(&s, repo, &index_digest).await;

    let body = get_ok(&s, &image_path(repo, &index_digest, "vulnerabilities")).await;
    assert_eq!(
        keys(&body["items"]),
        [key("DSA-0001-1", "openssl", "3.0.11-1~deb12u1")]
    );
    let amd64 = get_ok(&s, &image_path(repo, &digests[0], "vulnerabilities")).await;
    assert_eq!(amd64["items"], body["items"]);
    assert_eq!(
        amd64["items"][0]["platform"],
        json!({ "os": "linux", "architecture": "amd64", "variant": null })
    );
    assert_eq!(amd64["summary"]["high"], 1);
    let arm64 = get_ok(&s, &image_path(repo, &digests[1], "vulnerabilities")).await;
    assert_eq!(arm64["items"], json!([]), "the arm64 child has the fix");
    let changes = get_ok(
        &s,
        &image_path(repo, &digests[0], "vulnerabilities/changes"),
    )
    .await;
    assert_eq!(
        change_list(&changes),
        [change("new", "DSA-0001-1", "openssl")]
    );
    assert_eq!(changes["items"][0]["manifest"], digests[0].as_str());
}

/// Three images of two repositories: the registry-wide summary counts images and findings
/// per severity, the most dangerous come first (critical, then high), page by page; an
/// advisory is found by its id and by its CVE alias, with the images it affects and the tags
/// where it is fixed; the image listing carries each image's summary, null when unscanned.
#[tokio::test]
async fn registry_views_summarise_order_and_find_images_by_cve() {
    let s = TestServer::start().await;
    let (base, upgrade, _) = debian_layers();
    let (old, _) = push_layers(&s, "debian/app", "old", "amd64", &[(GZIP_LAYER, &base)]).await;
    let (new, _) = push_layers(
        &s,
        "debian/app",
        "new",
        "amd64",
        &[(GZIP_LAYER, &base), (ZSTD_LAYER, &upgrade)],
    )
    .await;
    let ssl = openssl_only_layer("3.0.11-1~deb12u1");
    let (ssl_only, _) = push_layers(&s, "other/ssl", "v1", "amd64", &[(GZIP_LAYER, &ssl)]).await;
    let (unscanned, _) =
        push_layers(&s, "debian/app", "later", "arm64", &[(GZIP_LAYER, &ssl)]).await;
    import(
        &s,
        json!([
            openssl_advisory("2024-05-01T00:00:00Z", "3.0.13-1~deb12u1"),
            zlib_advisory()
        ]),
    )
    .await;
    scan_now(&s, "debian/app", &old).await;
    scan_now(&s, "debian/app", &new).await;
    scan_now(&s, "other/ssl", &ssl_only).await;

    let body = get_ok(&s, "/api/v1/vulnerabilities").await;
    assert_eq!(
        body["summary"],
        json!({
            "images": {"critical": 2, "high": 2, "medium": 0, "low": 0, "unknown": 0},
            "findings": {"critical": 2, "high": 2, "medium": 0, "low": 0, "unknown": 0},
        })
    );
    let order: Vec<(&str, &str)> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["repository"].as_str().unwrap(),
                i["digest"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        order,
        [
            ("debian/app", old.as_str()),
            ("debian/app", new.as_str()),
            ("other/ssl", ssl_only.as_str())
        ]
    );
    assert_eq!(body["items"][0]["tags"], json!(["old"]));
    assert_eq!(
        body["items"][0]["summary"],
        json!({"critical": 1, "high": 1, "medium": 0, "low": 0, "unknown": 0})
    );
    // The same order one image per page.
    let mut paged = Vec::new();
    let mut path = "/api/v1/vulnerabilities?limit=1".to_owned();
    loop {
        let page = get_ok(&s, &path).await;
        assert_eq!(page["summary"], body["summary"]);
        paged.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next"].as_str() {
            Some(next) => path = format!("/api/v1/vulnerabilities?limit=1&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(json!(paged), body["items"]);
    let ns = get_ok(&s, "/api/v1/vulnerabilities?namespace=other").await;
    assert_eq!(ns["summary"]["images"]["high"], 1);
    assert_eq!(ns["items"].as_array().unwrap().len(), 1);

    let by_cve = get_ok(&s, "/api/v1/vulnerabilities/CVE-2024-0001").await;
    assert_eq!(by_cve["id"], "CVE-2024-0001");
    let ids: Vec<&str> = by_cve["advisories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["DSA-0001-1"]);
    let affected: Vec<(&str, &str, &str, &str, &str)> = by_cve["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["repository"].as_str().unwrap(),
                i["digest"].as_str().unwrap(),
                i["package"].as_str().unwrap(),
                i["installed_version"].as_str().unwrap(),
                i["fixed_version"].as_str().unwrap(),
            )
        })
        .collect();
    let mut expected = vec![
        (
            "debian/app",
            old.as_str(),
            "openssl",
            "3.0.11-1~deb12u1",
            "3.0.13-1~deb12u1",
        ),
        (
            "other/ssl",
            ssl_only.as_str(),
            "openssl",
            "3.0.11-1~deb12u1",
            "3.0.13-1~deb12u1",
        ),
    ];
    expected.sort();
    let mut sorted = affected.clone();
    sorted.sort();
    assert_eq!(sorted, expected);
    assert_eq!(
        by_cve["fixed_in"],
        json!([{"repository": "debian/app", "tags": ["new"]}]),
        "the tag `later` was never scanned"
    );
    let by_id = get_ok(&s, "/api/v1/vulnerabilities/DSA-0001-1").await;
    assert_eq!(by_id["images"], by_cve["images"]);
    assert_eq!(by_id["fixed_in"], by_cve["fixed_in"]);

    let listing = get_ok(&s, "/api/v1/repositories/debian/app/-/images").await;
    let summaries: Vec<(String, Value)> = listing["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["digest"].as_str().unwrap().to_owned(),
                i["vulnerabilities"].clone(),
            )
        })
        .collect();
    let summary_of = |digest: &str| {
        summaries
            .iter()
            .find(|(d, _)| d == digest)
            .unwrap_or_else(|| panic!("{digest} listed"))
            .1
            .clone()
    };
    assert_eq!(
        summary_of(&old),
        json!({"critical": 1, "high": 1, "medium": 0, "low": 0, "unknown": 0})
    );
    assert_eq!(
        summary_of(&new),
        json!({"critical": 1, "high": 0, "medium": 0, "low": 0, "unknown": 0})
    );
    assert_eq!(summary_of(&unscanned), Value::Null);

    // Filters of one image: at or above a severity, and fixable only.
    let critical = get_ok(
        &s,
        &image_path("debian/app", &old, "vulnerabilities?severity=critical"),
    )
    .await;
    assert_eq!(
        keys(&critical["items"]),
        [key("DEBIAN-CVE-2024-0002", "zlib", "1:1.2.13.dfsg-1")]
    );
    assert_eq!(
        critical["summary"]["high"], 1,
        "the summary counts them all"
    );
    let high = get_ok(
        &s,
        &image_path(
            "debian/app",
            &old,
            "vulnerabilities?severity=high&fixable=true&limit=1",
        ),
    )
    .await;
    assert_eq!(high["items"].as_array().unwrap().len(), 1);
    let next = high["next"].as_str().expect("a second page");
    let rest = get_ok(
        &s,
        &image_path(
            "debian/app",
            &old,
            &format!("vulnerabilities?severity=high&fixable=true&limit=1&cursor={next}"),
        ),
    )
    .await;
    assert_eq!(
        keys(&rest["items"]),
        [key("DSA-0001-1", "openssl", "3.0.11-1~deb12u1")]
    );
    assert!(rest.get("next").is_none());
}

/// With access control, the registry-wide views count and show only the repositories the
/// caller may pull: a reporter of one namespace sees its image, not the other's; an
/// anonymous caller sees nothing private.
#[tokio::test]
async fn callers_see_only_the_repositories_they_may_pull() {
    let mut s = start_auth(|_| {}).await;
    for ns in ["team", "secret"] {
        s.admin_api(Method::POST, "/namespaces", Some(json!({ "name": ns })))
            .await;
    }
    s.create_user("rita").await;
    s.set_role("team", "rita", "reporter").await;
    s.sign_in(ADMIN, ADMIN_PASSWORD);
    let layer = openssl_only_layer("3.0.11-1~deb12u1");
    let (mine, _) = push_layers(&s, "team/app", "v1", "amd64", &[(GZIP_LAYER, &layer)]).await;
    let (theirs, _) = push_layers(&s, "secret/app", "v1", "amd64", &[(GZIP_LAYER, &layer)]).await;
    import(
        &s,
        json!([openssl_advisory("2024-05-01T00:00:00Z", "3.0.13-1~deb12u1")]),
    )
    .await;
    scan_now(&s, "team/app", &mine).await;
    scan_now(&s, "secret/app", &theirs).await;

    let admin = get_ok(&s, "/api/v1/vulnerabilities").await;
    assert_eq!(admin["summary"]["images"]["high"], 2);
    let rita_password = password_of("rita");
    let rita = Some(("rita", rita_password.as_str()));
    let resp = s.api_as(rita, Method::GET, "/vulnerabilities", None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body = json_body(resp).await;
    assert_eq!(body["summary"]["images"]["high"], 1, "{body}");
    assert_eq!(body["items"][0]["repository"], "team/app");
    assert_eq!(body["items"].as_array().unwrap().len(), 1);
    let resp = s
        .api_as(rita, Method::GET, "/vulnerabilities/CVE-2024-0001", None)
        .await;
    let body = json_body(resp).await;
    let repos: Vec<&str> = body["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["repository"].as_str().unwrap())
        .collect();
    assert_eq!(repos, ["team/app"]);
    let resp = s.api_as(None, Method::GET, "/vulnerabilities", None).await;
    let body = json_body(resp).await;
    assert_eq!(body["items"], json!([]), "{body}");
    assert_eq!(body["summary"]["findings"]["high"], 0);
    let resp = s
        .api_as(
            rita,
            Method::GET,
            &format!("/repositories/secret/app/-/images/{theirs}/vulnerabilities"),
            None,
        )
        .await;
    assert!(resp.status().is_client_error());
    assert_ne!(resp.status(), StatusCode::OK);
}

/// Bad inputs are refused with what is wrong, and change nothing.
#[tokio::test]
async fn bad_inputs_are_refused_naming_what_is_wrong() {
    let s = TestServer::start().await;
    let (base, _, _) = debian_layers();
    let (digest, _) = push_layers(&s, "debian/app", "v1", "amd64", &[(GZIP_LAYER, &base)]).await;
    import(
        &s,
        json!([openssl_advisory("2024-05-01T00:00:00Z", "3.0.13-1~deb12u1")]),
    )
    .await;
    scan_now(&s, "debian/app", &digest).await;
    let resp = s.get("/api/v1/vulnerabilities/CVE-1999-0000").await;
    assert_problem(resp, 404, "NOT_FOUND").await;
    for (path, parameter) in [
        (
            image_path("debian/app", &digest, "vulnerabilities?severity=urgent"),
            "severity",
        ),
        (
            image_path("debian/app", &digest, "vulnerabilities?cursor=abc"),
            "cursor",
        ),
        (
            image_path("debian/app", &digest, "vulnerabilities/changes?cursor=-1"),
            "cursor",
        ),
        ("/api/v1/vulnerabilities?cursor=1.2.3".to_owned(), "cursor"),
        (
            "/api/v1/vulnerabilities/DSA-0001-1?cursor=x".to_owned(),
            "cursor",
        ),
        (
            "/api/v1/vulnerabilities?namespace=Bad..Name".to_owned(),
            "namespace",
        ),
    ] {
        let resp = s.get(&path).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{path}");
        let body = json_body(resp).await;
        assert_eq!(body["error"]["code"], "BAD_REQUEST", "{path}: {body}");
        assert_eq!(
            body["error"]["details"]["parameter"], parameter,
            "{path}: {body}"
        );
    }
    let resp = s
        .get(&image_path(
            "debian/app",
            &digest,
            "vulnerabilities?fixable=maybe",
        ))
        .await;
    assert_problem(resp, 400, "BAD_REQUEST").await;
    let resp = s
        .get(&image_path(
            "debian/app",
            &digest,
            "vulnerabilities?colour=red",
        ))
        .await;
    assert_problem(resp, 400, "BAD_REQUEST").await;
    // Nothing changed: the finding and its one change are there.
    let body = get_ok(&s, &image_path("debian/app", &digest, "vulnerabilities")).await;
    assert_eq!(body["items"].as_array().unwrap().len(), 1);
    let changes = get_ok(
        &s,
        &image_path("debian/app", &digest, "vulnerabilities/changes"),
    )
    .await;
    assert_eq!(changes["items"].as_array().unwrap().len(), 1);
}

/// The scanning figures a scrape shows: images with critical and high findings, findings
/// by severity per repository, scans queued, scan durations and the advisories' age.
#[tokio::test]
async fn scanning_figures_are_metrics() {
    use crate::metrics::{samples, scrape, sum};
    let s = TestServer::start().await;
    let before = samples(&scrape(&s).await);
    assert_eq!(
        sum(
            &before,
            "berth_vulnerable_images",
            &[r#"severity="critical""#]
        ),
        0.0
    );
    assert!(
        !before
            .keys()
            .any(|k| k.starts_with("berth_advisories_age_seconds")),
        "no import yet, no age"
    );

    let (base, _, _) = debian_layers();
    let (app, _) = push_layers(&s, "debian/app", "v1", "amd64", &[(GZIP_LAYER, &base)]).await;
    let (ssl, _) = push_layers(
        &s,
        "debian/ssl",
        "v1",
        "amd64",
        &[(GZIP_LAYER, &openssl_only_layer("3.0.11-1~deb12u1"))],
    )
    .await;
    import(
        &s,
        json!([
            openssl_advisory("2024-05-01T00:00:00Z", "3.0.13-1~deb12u1"),
            zlib_advisory()
        ]),
    )
    .await;
    scan_now(&s, "debian/app", &app).await;
    scan_now(&s, "debian/ssl", &ssl).await;
    s.clock.advance(90);
    let queued = s
        .req(Method::POST, &image_path("debian/ssl", &ssl, "scan"))
        .send()
        .await
        .unwrap();
    assert_eq!(queued.status(), StatusCode::ACCEPTED);

    let after = samples(&scrape(&s).await);
    // debian/app has openssl (high) and zlib (critical); debian/ssl only openssl.
    assert_eq!(
        sum(
            &after,
            "berth_vulnerable_images",
            &[r#"severity="critical""#]
        ),
        1.0
    );
    assert_eq!(
        sum(&after, "berth_vulnerable_images", &[r#"severity="high""#]),
        2.0
    );
    let findings = |repo: &str, severity: &str| {
        sum(
            &after,
            "berth_vulnerability_findings",
            &[
                &format!(r#"repository="{repo}""#),
                &format!(r#"severity="{severity}""#),
            ],
        )
    };
    assert_eq!(findings("debian/app", "critical"), 1.0);
    assert_eq!(findings("debian/app", "high"), 1.0);
    assert_eq!(findings("debian/ssl", "critical"), 0.0);
    assert_eq!(findings("debian/ssl", "high"), 1.0);
    assert_eq!(sum(&after, "berth_scans_queued", &[]), 1.0);
    assert_eq!(
        sum(
            &after,
            "berth_scan_duration_seconds_count",
            &[r#"outcome="ok""#]
        ),
        2.0
    );
    let age = sum(&after, "berth_advisories_age_seconds", &[]);
    assert!(
        (90.0..120.0).contains(&age),
        "advisories imported {age} s ago"
    );
}
