//! OSV advisories (`/api/v1/advisories` and `berth advisories import`): importing one
//! record, an array and a zip, re-importing (unchanged), a newer `modified` replacing the
//! affected packages, reading records back (one, and pages filtered by ecosystem and
//! package), bad input (malformed JSON, records without id, unknown range types, huge
//! records, a zip with a bad entry, a body that is not a zip, a wrong content type) and who
//! may do what; the offline import of a directory and of a zip through the built binary.

use std::io::Write;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{
    TestServer,
    auth::{ADMIN, ADMIN_PASSWORD, password_of, start_auth},
    backends, json_body,
};

/// An OSV record of `id` affecting `package` of Debian 12 from the start up to `fixed`.
fn record(id: &str, modified: &str, package: &str, fixed: &str) -> Value {
    json!({
        "schema_version": "1.6.0",
        "id": id,
        "aliases": [format!("ALIAS-{id}")],
        "modified": modified,
        "published": "2024-01-02T03:04:05Z",
        "summary": format!("{package} is broken"),
        "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
        "affected": [{
            "package": {"ecosystem": "Debian:12", "name": package, "purl": format!("pkg:deb/debian/{package}")},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}],
            "versions": ["1.0-1"],
            "ecosystem_specific": {"urgency": "high"}
        }]
    })
}

/// POSTs `body` with `content_type` as the administrator.
async fn post(s: &TestServer, content_type: &str, body: Vec<u8>) -> reqwest::Response {
    s.req(Method::POST, "/api/v1/advisories")
        .basic_auth(ADMIN, Some(ADMIN_PASSWORD))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("POST advisories")
}

/// Imports JSON `body` as the administrator; the answer must be 200.
async fn import(s: &TestServer, body: &Value) -> Value {
    let resp = post(s, "application/json", body.to_string().into_bytes()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    json_body(resp).await
}

/// The advisory `id` as the administrator sees it.
async fn advisory(s: &TestServer, id: &str) -> Value {
    s.admin_api(Method::GET, &format!("/advisories/{id}"), None)
        .await
}

/// `(id or entry, reason)` of each refusal in an import's answer.
fn refusals(report: &Value) -> Vec<(String, String)> {
    report["rejected"]
        .as_array()
        .expect("rejected is an array")
        .iter()
        .map(|r| {
            let who = r["id"].as_str().or(r["entry"].as_str()).unwrap_or_default();
            (
                who.to_owned(),
                r["reason"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Asserts `resp` is an `/api/v1` problem with `status` and `code`; returns its message.
async fn assert_problem(resp: reqwest::Response, status: u16, code: &str) -> String {
    let url = resp.url().clone();
    assert_eq!(resp.status().as_u16(), status, "status of {url}");
    let body = json_body(resp).await;
    assert_eq!(body["error"]["code"], code, "code of {url}: {body}");
    body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// A zip of `(name, bytes)` entries.
fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut buffer = std::io::Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut buffer);
        for (name, bytes) in entries {
            zip.start_file(*name, zip::write::SimpleFileOptions::default())
                .expect("zip entry");
            zip.write_all(bytes).expect("zip bytes");
        }
        zip.finish().expect("zip");
    }
    buffer.into_inner()
}

#[tokio::test]
async fn one_record_imports_and_reads_back() {
    let s = start_auth(|_| {}).await;
    let report = import(
        &s,
        &record(
            "CVE-2024-0001",
            "2024-05-01T00:00:00Z",
            "openssl",
            "3.0.13-1~deb12u1",
        ),
    )
    .await;
    assert_eq!(
        report,
        json!({"imported": 1, "unchanged": 0, "rejected": [], "rejected_count": 0,
               "rematched_images": 0, "changed_images": 0})
    );
    let shown = advisory(&s, "CVE-2024-0001").await;
    assert_eq!(shown["id"], "CVE-2024-0001");
    assert_eq!(shown["aliases"], json!(["ALIAS-CVE-2024-0001"]));
    assert_eq!(shown["summary"], "openssl is broken");
    // CVSS 3.1 base score 9.8 wins over the distribution's "high".
    assert_eq!(shown["severity"], "critical");
    assert_eq!(shown["modified"], "2024-05-01T00:00:00.000000000Z");
    assert_eq!(shown["published"], "2024-01-02T03:04:05.000000000Z");
    assert_eq!(
        shown["affected"],
        json!([{
            "ecosystem": "Debian:12",
            "package": "openssl",
            "purl": "pkg:deb/debian/openssl",
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.0.13-1~deb12u1"}]}],
            "versions": ["1.0-1"]
        }])
    );
    let resp = s
        .api_as(
            Some((ADMIN, ADMIN_PASSWORD)),
            Method::GET,
            "/advisories/CVE-0000-0000",
            None,
        )
        .await;
    assert_problem(resp, 404, "NOT_FOUND").await;
}

#[tokio::test]
async fn reimport_is_unchanged_and_a_newer_record_replaces_the_packages() {
    let s = start_auth(|_| {}).await;
    let first = record(
        "CVE-2024-0002",
        "2024-05-01T00:00:00Z",
        "zlib",
        "1:1.2.13.dfsg-1+deb12u1",
    );
    assert_eq!(import(&s, &first).await["imported"], 1);
    let again = import(&s, &first).await;
    assert_eq!(
        (again["imported"].clone(), again["unchanged"].clone()),
        (json!(0), json!(1))
    );

    // An older record of the same id is kept out too.
    let older = record("CVE-2024-0002", "2024-04-01T00:00:00Z", "other", "1");
    assert_eq!(import(&s, &older).await["unchanged"], 1);
    assert_eq!(
        advisory(&s, "CVE-2024-0002").await["affected"][0]["package"],
        "zlib"
    );

    // A newer one (with fractional seconds and an offset) replaces what it affects.
    let mut newer = record(
        "CVE-2024-0002",
        "2024-05-01T02:00:00.5+02:00",
        "zlib",
        "1:1.2.13.dfsg-1+deb12u2",
    );
    newer["affected"]
        .as_array_mut()
        .unwrap()
        .push(json!({"package": {"ecosystem": "Alpine:v3.19", "name": "zlib"},
                     "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.3.1-r0"}]}]}));
    newer["severity"] = json!([]);
    let report = import(&s, &newer).await;
    assert_eq!(
        (report["imported"].clone(), report["unchanged"].clone()),
        (json!(1), json!(0))
    );
    let shown = advisory(&s, "CVE-2024-0002").await;
    assert_eq!(shown["modified"], "2024-05-01T00:00:00.500000000Z");
    // Without a CVSS vector the distribution's urgency decides.
    assert_eq!(shown["severity"], "high");
    let fixes: Vec<_> = shown["affected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["ecosystem"].clone(),
                a["ranges"][0]["events"][1]["fixed"].clone(),
            )
        })
        .collect();
    assert_eq!(
        fixes,
        [
            (json!("Debian:12"), json!("1:1.2.13.dfsg-1+deb12u2")),
            (json!("Alpine:v3.19"), json!("1.3.1-r0"))
        ]
    );
}

#[tokio::test]
async fn an_array_imports_its_good_records_and_names_the_bad_ones() {
    let s = start_auth(|_| {}).await;
    let mut unknown_range = record("CVE-2024-0012", "2024-05-01T00:00:00Z", "b", "2");
    unknown_range["affected"][0]["ranges"][0]["type"] = json!("CALVER");
    let huge = record("CVE-2024-0013", "2024-05-01T00:00:00Z", "c", "3");
    let mut huge = huge;
    huge["details"] = json!("x".repeat(5 << 20));
    let mut bad_event = record("CVE-2024-0014", "2024-05-01T00:00:00Z", "d", "4");
    bad_event["affected"][0]["ranges"][0]["events"] =
        json!([{"introduced": "0"}, {"patched": "4"}]);
    let body = json!([
        record("CVE-2024-0010", "2024-05-01T00:00:00Z", "a", "1"),
        {"modified": "2024-05-01T00:00:00Z", "summary": "no id"},
        unknown_range,
        huge,
        bad_event,
        record("CVE-2024-0011", "2024-05-01T00:00:00Z", "a", "1"),
        "not an object",
    ]);
    let report = import(&s, &body).await;
    assert_eq!(report["imported"], 2);
    assert_eq!(report["rejected_count"], 5);
    let refused = refusals(&report);
    let who: Vec<&str> = refused.iter().map(|(w, _)| w.as_str()).collect();
    assert_eq!(
        who,
        [
            "body[1]",
            "CVE-2024-0012",
            "body[3]",
            "CVE-2024-0014",
            "body[6]"
        ]
    );
    assert!(refused[0].1.contains("missing field `id`"), "{refused:?}");
    assert!(refused[1].1.contains("CALVER"), "{refused:?}");
    assert!(refused[2].1.contains("over the cap"), "{refused:?}");
    assert!(refused[3].1.contains("patched"), "{refused:?}");
    for id in ["CVE-2024-0010", "CVE-2024-0011"] {
        assert_eq!(advisory(&s, id).await["id"], id);
    }
}

#[tokio::test]
async fn a_zip_imports_each_json_entry_and_names_the_bad_ones() {
    let s = start_auth(|_| {}).await;
    let one = record("CVE-2024-0020", "2024-05-01T00:00:00Z", "openssl", "3");
    let many = json!([
        record(
            "CVE-2024-0021",
            "2024-05-01T00:00:00Z",
            "perl",
            "5.36.0-7+deb12u1"
        ),
        record(
            "CVE-2024-0022",
            "2024-05-01T00:00:00Z",
            "expat",
            "2.5.0-1+deb12u1"
        ),
    ]);
    let body = zip_of(&[
        ("debian/CVE-2024-0020.json", one.to_string().as_bytes()),
        ("debian/all.json", many.to_string().as_bytes()),
        ("debian/broken.json", b"{\"id\": \"CVE-2024-0023\","),
        ("README.md", b"not a record"),
    ]);
    let resp = post(&s, "application/zip", body).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let report = json_body(resp).await;
    assert_eq!(report["imported"], 3);
    let refused = refusals(&report);
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].0, "body:debian/broken.json");
    assert!(refused[0].1.contains("not JSON"), "{refused:?}");
    assert_eq!(
        advisory(&s, "CVE-2024-0022").await["affected"][0]["package"],
        "expat"
    );
}

#[tokio::test]
async fn bodies_that_are_not_json_or_zip_are_refused() {
    let s = start_auth(|_| {}).await;
    let resp = post(&s, "application/json", b"{\"id\": \"CVE-1\", ".to_vec()).await;
    assert_problem(resp, 400, "BAD_REQUEST").await;
    let resp = post(&s, "application/json", b"".to_vec()).await;
    assert_problem(resp, 400, "BAD_REQUEST").await;
    let resp = post(&s, "application/zip", b"PK\x03\x04 this is no zip".to_vec()).await;
    assert_problem(resp, 400, "BAD_REQUEST").await;
    let resp = post(&s, "application/zip", b"{}".to_vec()).await;
    assert_problem(resp, 400, "BAD_REQUEST").await;
    for content_type in ["text/plain", "application/x-tar", ""] {
        let resp = post(&s, content_type, b"{}".to_vec()).await;
        assert_problem(resp, 415, "UNSUPPORTED").await;
    }
    // Nothing was stored by any of them.
    let page = s.admin_api(Method::GET, "/advisories", None).await;
    assert_eq!(page["items"], json!([]));
}

#[tokio::test]
async fn only_administrators_import_and_only_signed_in_callers_read() {
    let s = start_auth(|_| {}).await;
    s.create_user("alice").await;
    let alice = password_of("alice");
    let body = record("CVE-2024-0030", "2024-05-01T00:00:00Z", "openssl", "3");
    let resp = s
        .api_as(
            Some(("alice", &alice)),
            Method::POST,
            "/advisories",
            Some(body.clone()),
        )
        .await;
    assert_problem(resp, 403, "DENIED").await;
    let resp = s
        .api_as(None, Method::POST, "/advisories", Some(body.clone()))
        .await;
    assert_problem(resp, 401, "UNAUTHORIZED").await;
    import(&s, &body).await;
    let resp = s
        .api_as(
            Some(("alice", &alice)),
            Method::GET,
            "/advisories/CVE-2024-0030",
            None,
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(json_body(resp).await["severity"], "critical");
    for path in ["/advisories/CVE-2024-0030", "/advisories"] {
        let resp = s.api_as(None, Method::GET, path, None).await;
        assert_problem(resp, 401, "UNAUTHORIZED").await;
    }
}

#[tokio::test]
async fn listing_pages_and_filters_by_ecosystem_and_package() {
    let s = start_auth(|_| {}).await;
    let mut alpine = record("CVE-2024-0043", "2024-05-01T00:00:00Z", "zlib", "1.3.1-r0");
    alpine["affected"][0]["package"]["ecosystem"] = json!("Alpine:v3.19");
    import(
        &s,
        &json!([
            record("CVE-2024-0041", "2024-05-01T00:00:00Z", "openssl", "3"),
            record("CVE-2024-0042", "2024-05-01T00:00:00Z", "zlib", "1"),
            alpine,
            record("CVE-2024-0040", "2024-05-01T00:00:00Z", "openssl", "3"),
        ]),
    )
    .await;
    let ids = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let first = s.admin_api(Method::GET, "/advisories?limit=3", None).await;
    assert_eq!(
        ids(&first),
        ["CVE-2024-0040", "CVE-2024-0041", "CVE-2024-0042"]
    );
    assert_eq!(first["items"][0]["severity"], "critical");
    let next = first["next"].as_str().expect("a next page");
    let second = s
        .admin_api(
            Method::GET,
            &format!("/advisories?limit=3&cursor={next}"),
            None,
        )
        .await;
    assert_eq!(ids(&second), ["CVE-2024-0043"]);
    assert!(second.get("next").is_none());

    let zlib = s
        .admin_api(Method::GET, "/advisories?package=zlib", None)
        .await;
    assert_eq!(ids(&zlib), ["CVE-2024-0042", "CVE-2024-0043"]);
    let debian_zlib = s
        .admin_api(
            Method::GET,
            "/advisories?ecosystem=Debian%3A12&package=zlib",
            None,
        )
        .await;
    assert_eq!(ids(&debian_zlib), ["CVE-2024-0042"]);
    let alpine = s
        .admin_api(Method::GET, "/advisories?ecosystem=Alpine%3Av3.19", None)
        .await;
    assert_eq!(ids(&alpine), ["CVE-2024-0043"]);

    for bad in ["/advisories?limit=0", "/advisories?colour=red"] {
        let resp = s
            .api_as(Some((ADMIN, ADMIN_PASSWORD)), Method::GET, bad, None)
            .await;
        assert_problem(resp, 400, "BAD_REQUEST").await;
    }
}

/// Runs `berth ARGS --data-dir <the server's>` on the server's index; returns (exit code,
/// stdout, stderr).
async fn berth_offline(s: &TestServer, args: &[&str]) -> (i32, String, String) {
    let (database_url, storage_url) = backends(&s.data_dir).await;
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_berth"));
    command.args(args).arg("--data-dir").arg(&s.data_dir);
    for key in [
        "BERTH_CONFIG",
        "BERTH_DATABASE_URL",
        "BERTH_STORAGE_URL",
        "BERTH_DATA_DIR",
        "BERTH_LOG_FORMAT",
    ] {
        command.env_remove(key);
    }
    command.env("BERTH_LOG", "warn");
    if let Some(url) = database_url {
        command.env("BERTH_DATABASE_URL", url);
    }
    if let Some(url) = storage_url {
        command.env("BERTH_STORAGE_URL", url);
    }
    let out = command.output().await.expect("berth runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_cli_imports_a_directory_and_a_zip() {
    let s = start_auth(|_| {}).await;
    // Once the server answers, it has migrated the index.
    assert_eq!(s.get("/v2/").await.status(), StatusCode::UNAUTHORIZED);
    let dir = tempfile::tempdir().expect("temporary directory");
    let nested = dir.path().join("debian").join("12");
    std::fs::create_dir_all(&nested).unwrap();
    let write = |path: std::path::PathBuf, body: &[u8]| std::fs::write(path, body).unwrap();
    write(
        dir.path().join("CVE-2024-0050.json"),
        record("CVE-2024-0050", "2024-05-01T00:00:00Z", "openssl", "3")
            .to_string()
            .as_bytes(),
    );
    write(
        nested.join("more.json"),
        json!([
            record("CVE-2024-0051", "2024-05-01T00:00:00Z", "zlib", "1"),
            {"id": "CVE-2024-0052", "modified": "last tuesday"}
        ])
        .to_string()
        .as_bytes(),
    );
    write(nested.join("garbage.json"), b"<html>");
    write(nested.join("notes.txt"), b"ignored");

    let (code, out, err) =
        berth_offline(&s, &["advisories", "import", dir.path().to_str().unwrap()]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let mut lines = out.lines();
    assert_eq!(
        lines.next(),
        Some("imported 2, unchanged 0, rejected 2; images re-matched 0, changed 0"),
        "{out}"
    );
    let rest: Vec<&str> = lines.collect();
    assert_eq!(rest.len(), 2, "{out}");
    assert!(
        rest[0].starts_with("rejected ")
            && rest[0].contains("garbage.json")
            && rest[0].contains("not JSON"),
        "{out}"
    );
    assert!(
        rest[1].starts_with("rejected CVE-2024-0052 (") && rest[1].contains("RFC 3339"),
        "{out}"
    );

    // The same records again, zipped with one newer record: unchanged but for it.
    let zip = dir.path().join("db.zip");
    std::fs::write(
        &zip,
        zip_of(&[
            (
                "a.json",
                record("CVE-2024-0050", "2024-05-01T00:00:00Z", "openssl", "3")
                    .to_string()
                    .as_bytes(),
            ),
            (
                "b.json",
                record("CVE-2024-0051", "2024-06-01T00:00:00Z", "zlib", "2")
                    .to_string()
                    .as_bytes(),
            ),
        ]),
    )
    .unwrap();
    let (code, out, err) =
        berth_offline(&s, &["advisories", "import", zip.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(
        out.trim(),
        "imported 1, unchanged 1, rejected 0; images re-matched 0, changed 0"
    );
    let zlib = advisory(&s, "CVE-2024-0051").await;
    assert_eq!(zlib["affected"][0]["ranges"][0]["events"][1]["fixed"], "2");

    // A path that does not exist, and a broken zip given directly, fail the command.
    let missing = dir.path().join("missing.json");
    let (code, _, err) =
        berth_offline(&s, &["advisories", "import", missing.to_str().unwrap()]).await;
    assert_ne!(code, 0);
    assert!(err.contains("missing.json"), "{err}");
    let broken = dir.path().join("broken.zip");
    std::fs::write(&broken, b"PK\x03\x04broken").unwrap();
    let (code, _, err) =
        berth_offline(&s, &["advisories", "import", broken.to_str().unwrap()]).await;
    assert_ne!(code, 0);
    assert!(err.contains("not a zip"), "{err}");
}

#[tokio::test]
async fn stored_advisories_match_installed_source_versions() {
    let mut s = start_auth(|_| {}).await;
    let mut expat = record(
        "DSA-0001-1",
        "2024-05-01T00:00:00Z",
        "expat",
        "2.5.0-1+deb12u1",
    );
    expat["aliases"] = json!(["CVE-2024-0100"]);
    expat["severity"] = json!([]);
    expat["affected"][0]["ecosystem_specific"] = json!({"urgency": "medium"});
    // A second entry for the same package with a later fix: the lowest one is named.
    expat["affected"]
        .as_array_mut()
        .unwrap()
        .push(json!({"package": {"ecosystem": "Debian:12", "name": "expat"},
                     "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.5.0-1+deb12u2"}]}]}));
    let mut alpine = record("CVE-2024-0103", "2024-05-01T00:00:00Z", "zlib", "1.3.1-r0");
    alpine["affected"][0]["package"]["ecosystem"] = json!("Alpine:v3.19");
    import(
        &s,
        &json!([
            record(
                "CVE-2024-0101",
                "2024-05-01T00:00:00Z",
                "zlib",
                "1:1.2.13.dfsg-1+deb12u1"
            ),
            record(
                "CVE-2024-0102",
                "2024-05-01T00:00:00Z",
                "openssl",
                "3.0.13-1~deb12u1"
            ),
            expat,
            alpine,
        ]),
    )
    .await;
    // The replica opens once the server answers an authorised /v2/.
    s.sign_in(ADMIN, ADMIN_PASSWORD);
    let registry = s.replica().await;
    let installed = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    };
    let old = registry
        .match_packages(
            "Debian:12",
            &installed(&[
                ("zlib", "1:1.2.13.dfsg-1"),
                ("openssl", "3.0.11-1~deb12u2"),
                ("expat", "2.5.0-1"),
                ("bash", "5.2.15-2+b2"),
            ]),
        )
        .await
        .expect("match");
    let found: Vec<_> = old
        .iter()
        .map(|f| {
            (
                f.id.as_str(),
                f.package.as_str(),
                f.severity.as_str(),
                f.fixed_version.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            (
                "CVE-2024-0101",
                "zlib",
                "critical",
                Some("1:1.2.13.dfsg-1+deb12u1")
            ),
            (
                "CVE-2024-0102",
                "openssl",
                "critical",
                Some("3.0.13-1~deb12u1")
            ),
            ("DSA-0001-1", "expat", "medium", Some("2.5.0-1+deb12u1")),
        ]
    );
    assert_eq!(old[2].aliases, ["CVE-2024-0100"]);
    assert_eq!(old[0].installed_version, "1:1.2.13.dfsg-1");

    // The upgraded versions are affected by none of them; a version without its epoch is
    // older than any with one.
    let upgraded = registry
        .match_packages(
            "Debian:12",
            &installed(&[
                ("zlib", "1:1.2.13.dfsg-1+deb12u1"),
                ("openssl", "3.0.13-1~deb12u1"),
                ("expat", "2.5.0-1+deb12u2"),
            ]),
        )
        .await
        .expect("match");
    assert_eq!(upgraded, []);
    let no_epoch = registry
        .match_packages("Debian:12", &installed(&[("zlib", "9.9-1")]))
        .await
        .expect("match");
    assert_eq!(no_epoch.len(), 1);

    // Other ecosystems, unknown orders and refused versions match nothing of Debian's.
    let alpine = registry
        .match_packages(
            "Alpine:v3.19",
            &installed(&[("zlib", "1.3-r2"), ("openssl", "3.0.0-r0")]),
        )
        .await
        .expect("match");
    assert_eq!(
        alpine.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(),
        ["CVE-2024-0103"]
    );
    for (ecosystem, version) in [("PyPI", "1.0"), ("Debian:12", "1:"), ("Debian:11", "1.0")] {
        let none = registry
            .match_packages(ecosystem, &installed(&[("zlib", version)]))
            .await
            .expect("match");
        assert_eq!(none, [], "{ecosystem} {version}");
    }
    registry.close().await;
}

#[tokio::test]
async fn records_matching_could_not_use_are_refused_by_name() {
    let s = start_auth(|_| {}).await;
    let base = || record("CVE-2024-0060", "2024-05-01T00:00:00Z", "openssl", "3");
    let mut empty_id = base();
    empty_id["id"] = json!("");
    let mut long_id = base();
    long_id["id"] = json!("X".repeat(300));
    let mut control_id = base();
    control_id["id"] = json!("CVE-2024\n0060");
    let mut no_name = base();
    no_name["affected"][0]["package"]["name"] = json!("");
    let mut no_events = base();
    no_events["affected"][0]["ranges"][0]["events"] = json!([]);
    let mut no_introduced = base();
    no_introduced["affected"][0]["ranges"][0]["events"] = json!([{"fixed": "3"}]);
    let mut no_modified = base();
    no_modified.as_object_mut().unwrap().remove("modified");
    let mut numeric_id = base();
    numeric_id["id"] = json!(60);
    let report = import(
        &s,
        &json!([
            empty_id,
            long_id,
            control_id,
            no_name,
            no_events,
            no_introduced,
            no_modified,
            numeric_id
        ]),
    )
    .await;
    assert_eq!(report["imported"], 0);
    let reasons: Vec<String> = refusals(&report).into_iter().map(|(_, why)| why).collect();
    let expected = [
        "the id is empty",
        "longer than 256 bytes",
        "control characters",
        "needs an ecosystem and a name",
        "has no events",
        "has no introduced event",
        "missing field `modified`",
        "invalid type: integer `60`",
    ];
    assert_eq!(reasons.len(), expected.len(), "{reasons:?}");
    for (reason, want) in reasons.iter().zip(expected) {
        assert!(reason.contains(want), "{reason:?} should say {want:?}");
    }
    let page = s.admin_api(Method::GET, "/advisories", None).await;
    assert_eq!(page["items"], json!([]));
}

#[tokio::test]
async fn a_withdrawn_record_affects_nothing_any_more() {
    let mut s = start_auth(|_| {}).await;
    import(
        &s,
        &record(
            "CVE-2024-0070",
            "2024-05-01T00:00:00Z",
            "openssl",
            "3.0.13-1",
        ),
    )
    .await;
    let mut withdrawn = record(
        "CVE-2024-0070",
        "2024-06-01T00:00:00Z",
        "openssl",
        "3.0.13-1",
    );
    withdrawn["withdrawn"] = json!("2024-06-01T00:00:00Z");
    assert_eq!(import(&s, &withdrawn).await["imported"], 1);
    assert_eq!(advisory(&s, "CVE-2024-0070").await["affected"], json!([]));
    s.sign_in(ADMIN, ADMIN_PASSWORD);
    let registry = s.replica().await;
    let found = registry
        .match_packages(
            "Debian:12",
            &[("openssl".to_owned(), "3.0.11-1".to_owned())],
        )
        .await
        .expect("match");
    assert_eq!(found, []);
    registry.close().await;
}

#[tokio::test]
async fn a_body_over_the_cap_is_refused_before_it_is_read() {
    let s = start_auth(|_| {}).await;
    let head = format!(
        "POST /api/v1/advisories HTTP/1.1\r\nAuthorization: {}\r\nContent-Type: application/json",
        crate::common::auth::basic(ADMIN, ADMIN_PASSWORD)
    );
    let status = s.truncated_request(&head, b"[", (256 << 20) + 1).await;
    assert_eq!(status, Some(413));
    let page = s.admin_api(Method::GET, "/advisories", None).await;
    assert_eq!(page["items"], json!([]));
}

/// Alpine's secdb files (one release and repository each, in a zip here) import as
/// `ALPINE-<release>-<repository>-<id>` records. An Alpine 3.19 image is found vulnerable
/// where its installed version is older than the fix its release's file lists, and not
/// where the fix is listed under "0" (never affected), only in another release's file, or
/// already installed. A file without a numbered release is refused by name, and the other
/// files of the zip are imported.
#[tokio::test]
async fn alpine_secdb_files_match_their_own_release() {
    use crate::scans::{GZIP_LAYER, gzip, push_layers, scan_now, tar_of};
    let s = TestServer::start().await;
    let installed = "P:openssl\nV:3.1.4-r0\nA:x86_64\no:openssl\n\n\
                     P:musl\nV:1.2.4-r2\nA:x86_64\no:musl\n\n";
    let layer = gzip(&tar_of(&[
        (
            "etc/os-release",
            b"ID=alpine\nVERSION_ID=3.19.1\n".as_slice(),
        ),
        ("lib/apk/db/installed", installed.as_bytes()),
    ]));
    let (digest, _) = push_layers(&s, "alpine/app", "v1", "amd64", &[(GZIP_LAYER, &layer)]).await;
    assert_eq!(scan_now(&s, "alpine/app", &digest).await["status"], "ok");

    let secdb = |release: &str, repository: &str, packages: Value| {
        json!({"distroversion": release, "reponame": repository, "archs": ["x86_64"],
               "packages": packages})
        .to_string()
    };
    let main_319 = secdb(
        "v3.19",
        "main",
        json!([
            {"pkg": {"name": "openssl", "secfixes": {
                "3.1.4-r1": ["CVE-2023-5678"], "0": ["CVE-2022-0001"]}}},
            {"pkg": {"name": "musl", "secfixes": {"1.2.4-r2": ["CVE-2023-5678"]}}},
        ]),
    );
    let main_318 = secdb(
        "v3.18",
        "main",
        json!([{"pkg": {"name": "openssl", "secfixes": {"3.1.5-r0": ["CVE-2024-0002"]}}}]),
    );
    let community = secdb(
        "v3.19",
        "community",
        json!([{"pkg": {"name": "p7zip", "secfixes": {"17.05-r0": ["CVE-2023-5678"]}}}]),
    );
    let edge = secdb("edge", "main", json!([]));
    let zip = zip_of(&[
        ("v3.19/main.json", main_319.as_bytes()),
        ("v3.18/main.json", main_318.as_bytes()),
        ("v3.19/community.json", community.as_bytes()),
        ("edge/main.json", edge.as_bytes()),
    ]);
    let resp = post(&s, "application/zip", zip).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let report = json_body(resp).await;
    assert_eq!(report["imported"], 4, "{report}");
    let refused = refusals(&report);
    assert_eq!(refused.len(), 1, "{report}");
    assert_eq!(refused[0].0, "body:edge/main.json");
    assert!(refused[0].1.contains("\"edge\""), "{refused:?}");

    let resp = s
        .get(&format!(
            "/api/v1/repositories/alpine/app/-/images/{digest}/vulnerabilities"
        ))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body = json_body(resp).await;
    let items = body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{body}");
    assert_eq!(items[0]["id"], "ALPINE-v3.19-main-CVE-2023-5678");
    assert_eq!(items[0]["aliases"], json!(["CVE-2023-5678"]));
    assert_eq!(items[0]["package"], "openssl");
    assert_eq!(items[0]["installed_version"], "3.1.4-r0");
    assert_eq!(items[0]["fixed_version"], "3.1.4-r1");
}

/// The Debian security tracker's JSON imports as one record per vulnerability; a source
/// package whose entry is not the tracker's shape is refused by name and the others are
/// imported; an import of a newer copy of the feed replaces what the older one stored.
#[tokio::test]
async fn the_debian_tracker_imports_and_a_newer_copy_replaces_it() {
    let s = start_auth(|_| {}).await;
    let tracker = |fixed: &str| {
        json!({
            "openssl": {"CVE-2024-0001": {"description": "A flaw.", "releases": {
                "bookworm": {"status": "resolved", "fixed_version": fixed, "urgency": "high"}}}},
            "broken": {"CVE-2024-0003": {"releases": {"bookworm": {"fixed_version": 7}}}},
        })
    };
    let report = import(&s, &tracker("3.0.13-1~deb12u1")).await;
    assert_eq!(report["imported"], 1, "{report}");
    let refused = refusals(&report);
    assert_eq!(refused.len(), 1, "{report}");
    assert_eq!(refused[0].0, "body:broken");
    let stored = advisory(&s, "DEBIAN-CVE-2024-0001").await;
    assert_eq!(stored["severity"], "high", "{stored}");
    assert_eq!(stored["aliases"], json!(["CVE-2024-0001"]), "{stored}");

    // The next copy says bookworm was never affected: the package is gone from the record.
    let report = import(&s, &tracker("0")).await;
    assert_eq!(report["imported"], 1, "{report}");
    let stored = advisory(&s, "DEBIAN-CVE-2024-0001").await;
    assert_eq!(stored["affected"], json!([]), "{stored}");
}
