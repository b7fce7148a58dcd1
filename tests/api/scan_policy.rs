//! Scanning policy (`/api/v1/namespaces/{ns}/settings`, the repository's `/-/settings`), the
//! vulnerability allowlist (`/api/v1/allowlist`) and OpenVEX referrers: images made here with
//! a hand-written dpkg database, advisories imported for their packages, scanned, and their
//! pulls refused or allowed as the policy in effect says.

use std::io::Write;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{
    OCI_CONFIG, OCI_INDEX, OCI_MANIFEST, TestServer,
    auth::{ADMIN, password_of, start_auth},
    descriptor, image_config, json_body, sha256,
};

const DEBIAN_12: &[u8] =
    b"PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n";
const GZIP_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const OPENVEX: &str = "application/vnd.openvex+json";
const EMPTY: &str = "application/vnd.oci.empty.v1+json";

/// An installed package of the test images: (binary, version, source).
pub(crate) type Package = (&'static str, &'static str, &'static str);

/// openssl 3.0.11: DSA-0001-1 (CVE-2024-0001), high, fixed in 3.0.13.
pub(crate) const OPENSSL: Package = ("libssl3", "3.0.11-1~deb12u1", "openssl");
/// zlib: DEBIAN-CVE-2024-0002, critical, fixed in +deb12u1.
pub(crate) const ZLIB: Package = ("zlib1g", "1:1.2.13.dfsg-1", "zlib");
/// glibc: DEBIAN-CVE-2024-0003, medium, no fix known.
const GLIBC: Package = ("libc6", "2.36-9+deb12u3", "glibc");

/// A gzip tar layer with Debian 12's os-release and a dpkg database of `packages`.
pub(crate) fn debian_layer(packages: &[Package]) -> Vec<u8> {
    let status: String = packages
        .iter()
        .map(|(name, version, source)| {
            format!(
                "Package: {name}\nStatus: install ok installed\nArchitecture: amd64\n\
                 Source: {source}\nVersion: {version}\nDescription: a package\n\n"
            )
        })
        .collect();
    let mut builder = tar::Builder::new(Vec::new());
    for (path, data) in [
        ("etc/os-release", DEBIAN_12),
        ("var/lib/dpkg/status", status.as_bytes()),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o644);
        header.set_size(data.len() as u64);
        builder
            .append_data(&mut header, path, data)
            .expect("tar entry");
    }
    let tar = builder.into_inner().expect("tar");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(&tar).expect("gzip");
    enc.finish().expect("gzip")
}

/// Pushes an image of `packages` to `repo:tag` (`arch` tells images of the same packages
/// apart); returns its digest.
async fn push_debian(
    s: &TestServer,
    repo: &str,
    tag: &str,
    arch: &str,
    packages: &[Package],
) -> String {
    let config = image_config("linux", arch, None);
    let layer = debian_layer(packages);
    s.push_blob(repo, &config).await;
    s.push_blob(repo, &layer).await;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, &config),
        "layers": [descriptor(GZIP_LAYER, &layer)],
    }))
    .unwrap();
    s.put_manifest_ok(repo, tag, OCI_MANIFEST, &manifest).await
}

/// An OSV record for Debian source `package`, fixed at `fixed` (none: no fix known).
fn advisory(id: &str, alias: &str, package: &str, fixed: Option<&str>, urgency: &str) -> Value {
    let mut events = vec![json!({"introduced": "0"})];
    if let Some(fixed) = fixed {
        events.push(json!({ "fixed": fixed }));
    }
    json!({
        "id": id,
        "aliases": [alias],
        "modified": "2024-05-01T00:00:00Z",
        "affected": [{
            "package": {"ecosystem": "Debian:12", "name": package},
            "ranges": [{"type": "ECOSYSTEM", "events": events}],
            "ecosystem_specific": {"urgency": urgency}
        }]
    })
}

/// Imports the three advisories of the test packages.
pub(crate) async fn import_advisories(s: &TestServer) {
    let records = json!([
        advisory(
            "DSA-0001-1",
            "CVE-2024-0001",
            "openssl",
            Some("3.0.13-1~deb12u1"),
            "high"
        ),
        advisory(
            "DEBIAN-CVE-2024-0002",
            "CVE-2024-0002",
            "zlib",
            Some("1:1.2.13.dfsg-1+deb12u1"),
            "critical"
        ),
        advisory(
            "DEBIAN-CVE-2024-0003",
            "CVE-2024-0003",
            "glibc",
            None,
            "medium"
        ),
    ]);
    let resp = s
        .req(Method::POST, "/api/v1/advisories")
        .header("content-type", "application/json")
        .body(records.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(json_body(resp).await["rejected"], json!([]));
}

/// The `/api/v1` path (without that prefix) of an image's sub-resource.
fn image_path(repo: &str, digest: &str, rest: &str) -> String {
    format!("/repositories/{repo}/-/images/{digest}/{rest}")
}

async fn scan_now(s: &TestServer, repo: &str, digest: &str) {
    let resp = s
        .req(
            Method::POST,
            &format!("/api/v1{}", image_path(repo, digest, "scan?wait=true")),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(json_body(resp).await["status"], "ok");
}

/// A JSON call to `/api/v1{path}`: the status and the body (`null` when empty).
async fn call(
    s: &TestServer,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = s.req(method, &format!("/api/v1{path}"));
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A call that must answer 200; its body.
async fn ok(s: &TestServer, method: Method, path: &str, body: Option<Value>) -> Value {
    let (status, body) = call(s, method, path, body).await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    body
}

/// The pull of `repo@digest`: `None` when it is served, else the 403 `DENIED` message.
async fn pull_refusal(s: &TestServer, repo: &str, digest: &str) -> Option<String> {
    let resp = s.get(&format!("/v2/{repo}/manifests/{digest}")).await;
    if resp.status() == StatusCode::OK {
        return None;
    }
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let body = json_body(resp).await;
    assert_eq!(body["errors"][0]["code"], "DENIED", "{body}");
    Some(body["errors"][0]["message"].as_str().unwrap().to_owned())
}

/// The ids of an image's findings that count, and of those suppressed.
async fn finding_ids(s: &TestServer, repo: &str, digest: &str) -> (Vec<String>, Vec<String>) {
    let body = ok(
        s,
        Method::GET,
        &image_path(repo, digest, "vulnerabilities"),
        None,
    )
    .await;
    let ids = |field: &str| {
        body[field]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    (ids("items"), ids("suppressed"))
}

/// The quarantine of an image: (source, reason), or `None`.
async fn quarantine_of(s: &TestServer, repo: &str, digest: &str) -> Option<(String, String)> {
    let (status, body) = call(
        s,
        Method::GET,
        &image_path(repo, digest, "quarantine"),
        None,
    )
    .await;
    match status {
        StatusCode::OK => Some((
            body["source"].as_str().unwrap().to_owned(),
            body["reason"].as_str().unwrap().to_owned(),
        )),
        StatusCode::NOT_FOUND => None,
        other => panic!("quarantine of {repo}@{digest}: {other} {body}"),
    }
}

/// Puts namespace `ns`'s settings.
async fn namespace_policy(s: &TestServer, ns: &str, body: Value) -> Value {
    ok(
        s,
        Method::PUT,
        &format!("/namespaces/{ns}/settings"),
        Some(body),
    )
    .await
}

async fn repository_policy(s: &TestServer, repo: &str, body: Value) -> Value {
    ok(
        s,
        Method::PUT,
        &format!("/repositories/{repo}/-/settings"),
        Some(body),
    )
    .await
}

/// An image with openssl (high, fixable) and glibc (medium, unfixed) is quarantined by a
/// `block_severity` at or below high, not above; the reason (count, threshold, policy) is
/// in the 403 of a plain GET; lifting the threshold releases it. Both are audit-logged.
#[tokio::test]
async fn block_severity_quarantines_at_or_above_only() {
    let s = TestServer::start().await;
    import_advisories(&s).await;
    let digest = push_debian(&s, "acme/app", "v1", "amd64", &[OPENSSL, GLIBC]).await;
    scan_now(&s, "acme/app", &digest).await;
    assert_eq!(pull_refusal(&s, "acme/app", &digest).await, None);

    namespace_policy(&s, "acme", json!({"block_severity": "critical"})).await;
    assert_eq!(
        pull_refusal(&s, "acme/app", &digest).await,
        None,
        "nothing critical"
    );

    let settings = namespace_policy(&s, "acme", json!({"block_severity": "high"})).await;
    assert_eq!(settings["block_severity"], "high");
    assert_eq!(
        settings["effective"]["block_severity"],
        json!({"value": "high", "from": "namespace"})
    );
    let message = pull_refusal(&s, "acme/app", &digest)
        .await
        .expect("refused at high");
    assert!(
        message.contains(&format!(
            "image {digest} is quarantined: 1 vulnerability at or above high (DSA-0001-1)"
        )) && message
            .contains("block_severity high of the namespace scanning policy of namespace acme"),
        "{message}"
    );
    // By tag too.
    let by_tag = s.get("/v2/acme/app/manifests/v1").await;
    assert_eq!(by_tag.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        quarantine_of(&s, "acme/app", &digest).await.unwrap().0,
        "policy"
    );

    namespace_policy(&s, "acme", json!({"block_severity": "medium"})).await;
    let message = pull_refusal(&s, "acme/app", &digest).await.unwrap();
    assert!(
        message.contains("2 vulnerabilities at or above medium (DSA-0001-1, DEBIAN-CVE-2024-0003)"),
        "{message}"
    );

    namespace_policy(&s, "acme", json!({"block_severity": null})).await;
    assert_eq!(pull_refusal(&s, "acme/app", &digest).await, None);
    assert_eq!(quarantine_of(&s, "acme/app", &digest).await, None);

    let audit = ok(&s, Method::GET, "/audit?limit=1000", None).await;
    let actions: Vec<(String, String)> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actor"] == "policy")
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["target"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let target = format!("acme/app@{digest}");
    assert_eq!(
        actions,
        [
            ("image.release".to_owned(), target.clone()),
            ("image.quarantine".to_owned(), target),
        ],
        "newest first: quarantined once (the reason then replaced), released once"
    );
}

/// With `only_fixable`, findings without a known fix do not count.
#[tokio::test]
async fn only_fixable_counts_findings_with_a_fix() {
    let s = TestServer::start().await;
    import_advisories(&s).await;
    let unfixed = push_debian(&s, "acme/base", "v1", "amd64", &[GLIBC]).await;
    let mixed = push_debian(&s, "acme/app", "v1", "amd64", &[OPENSSL, GLIBC]).await;
    for (repo, digest) in [("acme/base", &unfixed), ("acme/app", &mixed)] {
        scan_now(&s, repo, digest).await;
    }
    namespace_policy(
        &s,
        "acme",
        json!({"block_severity": "medium", "only_fixable": true}),
    )
    .await;
    assert_eq!(pull_refusal(&s, "acme/base", &unfixed).await, None);
    let message = pull_refusal(&s, "acme/app", &mixed).await.unwrap();
    assert!(
        message.contains("1 fixable vulnerability at or above medium (DSA-0001-1)"),
        "{message}"
    );

    namespace_policy(&s, "acme", json!({"only_fixable": false})).await;
    let message = pull_refusal(&s, "acme/base", &unfixed).await.unwrap();
    assert!(
        message.contains("1 vulnerability at or above medium (DEBIAN-CVE-2024-0003)"),
        "{message}"
    );
}

/// `block_unscanned`: an image is refused at pull until it has a successful scan; HEAD and
/// artifacts (a referrer) are not refused; the policy off lets it through.
#[tokio::test]
async fn block_unscanned_refuses_pulls_until_scanned() {
    let s = TestServer::start().await;
    let digest = push_debian(&s, "acme/app", "v1", "amd64", &[GLIBC]).await;
    repository_policy(&s, "acme/app", json!({"block_unscanned": true})).await;
    let message = pull_refusal(&s, "acme/app", &digest).await.unwrap();
    assert!(
        message.contains(&format!(
            "image {digest} has no successful vulnerability scan yet"
        )) && message
            .contains("block_unscanned of the repository scanning policy of repository acme/app"),
        "{message}"
    );
    assert_eq!(
        s.head(&format!("/v2/acme/app/manifests/{digest}"))
            .await
            .status(),
        StatusCode::OK
    );
    // A referrer (here a VEX document) is an artifact, not an image: not refused.
    let referrer = push_vex(&s, "acme/app", &digest, &json!({"statements": []})).await;
    assert_eq!(pull_refusal(&s, "acme/app", &referrer).await, None);
    // Nor is a cosign signature in the tag scheme (an image config, but no filesystem layer):
    // cosign must be able to read it back.
    let payload = s.push_blob("acme/app", b"{\"critical\":{}}").await;
    let signature = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": s.push_blob("acme/app", b"{}").await, "size": 2},
        "layers": [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
                    "digest": payload, "size": 15}],
    }))
    .unwrap();
    let tag = format!("{}.sig", digest.replace(':', "-"));
    let signature = s
        .put_manifest_ok("acme/app", &tag, OCI_MANIFEST, &signature)
        .await;
    assert_eq!(pull_refusal(&s, "acme/app", &signature).await, None);

    scan_now(&s, "acme/app", &digest).await;
    assert_eq!(pull_refusal(&s, "acme/app", &digest).await, None);

    let other = push_debian(&s, "acme/app", "v2", "arm64", &[GLIBC]).await;
    assert!(pull_refusal(&s, "acme/app", &other).await.is_some());
    repository_policy(&s, "acme/app", json!({"block_unscanned": false})).await;
    assert_eq!(pull_refusal(&s, "acme/app", &other).await, None);

    // The namespace's setting applies where the repository inherits; the repository's wins.
    repository_policy(&s, "acme/app", json!({"block_unscanned": null})).await;
    namespace_policy(&s, "acme", json!({"block_unscanned": true})).await;
    let message = pull_refusal(&s, "acme/app", &other).await.unwrap();
    assert!(
        message.contains("block_unscanned of the namespace scanning policy"),
        "{message}"
    );
    repository_policy(&s, "acme/app", json!({"block_unscanned": false})).await;
    assert_eq!(pull_refusal(&s, "acme/app", &other).await, None);
}

/// With `block_unscanned`, the children of a scanned index count as scanned (they are
/// scanned as part of it); before the index's scan, the index and its children are refused.
#[tokio::test]
async fn children_of_a_scanned_index_count_as_scanned() {
    let s = TestServer::start().await;
    let amd64 = push_debian(&s, "acme/multi", "amd64", "amd64", &[GLIBC]).await;
    let arm64 = push_debian(&s, "acme/multi", "arm64", "arm64", &[GLIBC]).await;
    let mut children = Vec::new();
    for (digest, arch) in [(&amd64, "amd64"), (&arm64, "arm64")] {
        children.push(json!({
            "mediaType": OCI_MANIFEST,
            "digest": digest,
            "size": manifest_size(&s, "acme/multi", digest).await,
            "platform": {"os": "linux", "architecture": arch},
        }));
    }
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": children,
    }))
    .unwrap();
    let index = s
        .put_manifest_ok("acme/multi", "v1", OCI_INDEX, &index)
        .await;
    repository_policy(&s, "acme/multi", json!({"block_unscanned": true})).await;
    for digest in [&index, &amd64, &arm64] {
        assert!(
            pull_refusal(&s, "acme/multi", digest).await.is_some(),
            "{digest}"
        );
    }
    scan_now(&s, "acme/multi", &index).await;
    for digest in [&index, &amd64, &arm64] {
        assert_eq!(
            pull_refusal(&s, "acme/multi", digest).await,
            None,
            "{digest}"
        );
    }
}

/// A repository's setting wins over its namespace's; `null` inherits again. The GET shows
/// the stored values and the effective ones with where they come from; a PUT of tag rules
/// only (an existing client) leaves the policy as it is.
#[tokio::test]
async fn repository_policy_overrides_namespace() {
    let s = TestServer::start().await;
    import_advisories(&s).await;
    let strict = push_debian(&s, "acme/strict", "v1", "amd64", &[OPENSSL]).await;
    let lax = push_debian(&s, "acme/lax", "v1", "amd64", &[OPENSSL]).await;
    for (repo, digest) in [("acme/strict", &strict), ("acme/lax", &lax)] {
        scan_now(&s, repo, digest).await;
    }
    repository_policy(&s, "acme/lax", json!({"block_severity": "critical"})).await;
    namespace_policy(&s, "acme", json!({"block_severity": "high"})).await;
    assert!(pull_refusal(&s, "acme/strict", &strict).await.is_some());
    assert_eq!(pull_refusal(&s, "acme/lax", &lax).await, None);

    let settings = ok(&s, Method::GET, "/repositories/acme/lax/-/settings", None).await;
    assert_eq!(settings["block_severity"], "critical");
    assert_eq!(settings["block_unscanned"], Value::Null);
    assert_eq!(settings["tag_mutability"], "mutable");
    assert_eq!(
        settings["effective"],
        json!({
            "scan_on_push": {"value": false, "from": "registry"},
            "block_severity": {"value": "critical", "from": "repository"},
            "block_unscanned": {"value": false, "from": "registry"},
            "only_fixable": {"value": false, "from": "registry"},
        })
    );

    // Tag rules alone: the policy stays.
    let saved = repository_policy(&s, "acme/lax", json!({"tag_mutability": "immutable"})).await;
    assert_eq!(saved["tag_mutability"], "immutable");
    assert_eq!(saved["block_severity"], "critical");
    assert_eq!(pull_refusal(&s, "acme/lax", &lax).await, None);

    // The policy alone: the tag rules stay.
    let saved = repository_policy(&s, "acme/lax", json!({"block_severity": null})).await;
    assert_eq!(saved["tag_mutability"], "immutable");
    assert_eq!(
        saved["effective"]["block_severity"],
        json!({"value": "high", "from": "namespace"})
    );
    let message = pull_refusal(&s, "acme/lax", &lax).await.unwrap();
    assert!(message.contains("of namespace acme"), "{message}");
}

/// `scan_on_push` set on a namespace scans its pushed images (and only its), and the scan's
/// judgement follows at once.
#[tokio::test]
async fn scan_on_push_per_namespace() {
    let s = TestServer::start_with(|c| {
        c.scan.on_push = false;
        c.gc.poll_millis = 3_600_000;
        c.gc.schedule_secs = 0;
    })
    .await;
    import_advisories(&s).await;
    namespace_policy(
        &s,
        "auto",
        json!({"scan_on_push": true, "block_severity": "critical"}),
    )
    .await;
    let scanned = push_debian(&s, "auto/app", "v1", "amd64", &[ZLIB]).await;
    let manual = push_debian(&s, "other/app", "v1", "amd64", &[ZLIB]).await;
    let replica = s.replica().await;
    // Queued scans start once the pushes pause (`scan.quiet_secs`).
    s.clock.advance(2);
    replica.run_due_jobs("r1").await.unwrap();
    let scans = |repo: &'static str, digest: String| {
        let s = &s;
        async move {
            ok(s, Method::GET, &image_path(repo, &digest, "scans"), None).await["items"]
                .as_array()
                .unwrap()
                .len()
        }
    };
    assert_eq!(scans("auto/app", scanned.clone()).await, 1);
    assert_eq!(scans("other/app", manual.clone()).await, 0);
    let message = pull_refusal(&s, "auto/app", &scanned).await.unwrap();
    assert!(message.contains("DEBIAN-CVE-2024-0002"), "{message}");
    assert_eq!(
        ok(&s, Method::GET, "/namespaces/auto/settings", None).await["effective"]["scan_on_push"],
        json!({"value": true, "from": "namespace"})
    );
}

/// An allowlist entry (by CVE alias) suppresses the finding: left out of `items` and the
/// summary, listed in `suppressed` with the entry; the policy quarantine is lifted. Once it
/// expires (clock moved, the job queue's tick run) the image is refused again, and the
/// listing shows the entry expired.
#[tokio::test]
async fn an_allowlist_entry_suppresses_until_it_expires() {
    let s = TestServer::start_with(|c| {
        c.gc.poll_millis = 3_600_000;
        c.gc.schedule_secs = 0;
    })
    .await;
    import_advisories(&s).await;
    let digest = push_debian(&s, "acme/app", "v1", "amd64", &[OPENSSL]).await;
    scan_now(&s, "acme/app", &digest).await;
    namespace_policy(&s, "acme", json!({"block_severity": "high"})).await;
    assert!(pull_refusal(&s, "acme/app", &digest).await.is_some());

    let expires_at = s.clock.now() + 3600;
    let (status, entry) = call(
        &s,
        Method::POST,
        "/allowlist",
        Some(json!({
            "vulnerability": "CVE-2024-0001",
            "scope": "repository",
            "repository": "acme/app",
            "expires_at": expires_at,
            "reason": "not reachable: TLS is terminated by the proxy",
        })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{entry}");
    assert_eq!(entry["scope"], "repository");
    assert_eq!(entry["repository"], "acme/app");
    assert_eq!(entry["expired"], false);
    assert_eq!(entry["author"], "local administrator");
    assert_eq!(pull_refusal(&s, "acme/app", &digest).await, None);
    let body = ok(
        &s,
        Method::GET,
        &image_path("acme/app", &digest, "vulnerabilities"),
        None,
    )
    .await;
    assert_eq!(body["items"], json!([]));
    assert_eq!(body["summary"]["high"], 0);
    assert_eq!(body["suppressed"][0]["id"], "DSA-0001-1");
    assert_eq!(
        body["suppressed"][0]["suppressed_by"],
        json!({
            "source": "allowlist",
            "entry": entry["id"],
            "reason": "not reachable: TLS is terminated by the proxy",
            "expires_at": expires_at,
            "status": null, "justification": null, "referrer": null,
        })
    );

    s.clock.advance(3601);
    let replica = s.replica().await;
    replica.run_due_jobs("r1").await.unwrap();
    let message = pull_refusal(&s, "acme/app", &digest).await.unwrap();
    assert!(message.contains("DSA-0001-1"), "{message}");
    assert_eq!(finding_ids(&s, "acme/app", &digest).await.0, ["DSA-0001-1"]);
    let listed = ok(&s, Method::GET, "/allowlist?repository=acme/app", None).await;
    assert_eq!(listed["items"][0]["id"], entry["id"]);
    assert_eq!(listed["items"][0]["expired"], true);
}

/// Each scope covers what it names: one image (digest), a repository, a namespace, the
/// registry; deleting the entry brings the finding back.
#[tokio::test]
async fn allowlist_scopes_cover_what_they_name() {
    let s = TestServer::start().await;
    import_advisories(&s).await;
    let a1 = push_debian(&s, "acme/app", "v1", "amd64", &[ZLIB]).await;
    let a2 = push_debian(&s, "acme/app", "v2", "arm64", &[ZLIB]).await;
    let b = push_debian(&s, "acme/tools", "v1", "amd64", &[ZLIB]).await;
    let c = push_debian(&s, "other/app", "v1", "amd64", &[ZLIB]).await;
    let images = [
        ("acme/app", &a1),
        ("acme/app", &a2),
        ("acme/tools", &b),
        ("other/app", &c),
    ];
    for (repo, digest) in images {
        scan_now(&s, repo, digest).await;
    }
    let suppressed = || async {
        let mut out = Vec::new();
        for (repo, digest) in images {
            out.push(!finding_ids(&s, repo, digest).await.1.is_empty());
        }
        out
    };
    let scopes = [
        (
            json!({"scope": "digest", "repository": "acme/app", "digest": a1}),
            [true, false, false, false],
        ),
        (
            json!({"scope": "repository", "repository": "acme/app"}),
            [true, true, false, false],
        ),
        (
            json!({"scope": "namespace", "namespace": "acme"}),
            [true, true, true, false],
        ),
        (json!({"scope": "registry"}), [true, true, true, true]),
    ];
    for (mut body, expected) in scopes {
        body["vulnerability"] = json!("DEBIAN-CVE-2024-0002");
        body["reason"] = json!("accepted for the test");
        let (status, entry) = call(&s, Method::POST, "/allowlist", Some(body.clone())).await;
        assert_eq!(status, StatusCode::CREATED, "{entry}");
        assert_eq!(suppressed().await, expected, "{body}");
        let (status, _) = call(
            &s,
            Method::DELETE,
            &format!("/allowlist/{}", entry["id"]),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert_eq!(suppressed().await, [false; 4], "deleted: {body}");
    }
}

/// The size of manifest `digest` of `repo`, as a HEAD answers it.
async fn manifest_size(s: &TestServer, repo: &str, digest: &str) -> u64 {
    s.head(&format!("/v2/{repo}/manifests/{digest}"))
        .await
        .headers()
        .get("content-length")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// Pushes an OpenVEX document as a referrer of `subject`; returns the referrer's digest.
async fn push_vex(s: &TestServer, repo: &str, subject: &str, document: &Value) -> String {
    push_vex_bytes(s, repo, subject, &serde_json::to_vec(document).unwrap()).await
}

async fn push_vex_bytes(s: &TestServer, repo: &str, subject: &str, document: &[u8]) -> String {
    s.push_blob(repo, b"{}").await;
    s.push_blob(repo, document).await;
    let subject_size = manifest_size(s, repo, subject).await;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": OPENVEX,
        "config": descriptor(EMPTY, b"{}"),
        "layers": [descriptor(OPENVEX, document)],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": subject_size},
    }))
    .unwrap();
    let digest = sha256(&manifest);
    s.put_manifest_ok(repo, &digest, OCI_MANIFEST, &manifest)
        .await
}

fn vex_document(vulnerability: &str, status: &str) -> Value {
    json!({
        "@context": "https://openvex.dev/ns/v0.2.0",
        "@id": "https://example.com/vex/1",
        "author": "Example Security",
        "timestamp": "2024-05-02T00:00:00Z",
        "version": 1,
        "statements": [{
            "vulnerability": {"name": vulnerability},
            "products": [{"@id": "pkg:oci/app"}],
            "status": status,
            "justification": "vulnerable_code_not_in_execute_path",
        }]
    })
}

/// A VEX referrer saying `not_affected` suppresses the finding for its subject only (the
/// other image with the same package keeps it), and releases the subject's policy
/// quarantine; deleting the referrer brings the finding (and the quarantine) back. An
/// `affected` statement suppresses nothing.
#[tokio::test]
async fn a_vex_referrer_suppresses_for_its_subject_only() {
    let s = TestServer::start().await;
    import_advisories(&s).await;
    let subject = push_debian(&s, "acme/app", "v1", "amd64", &[OPENSSL]).await;
    let other = push_debian(&s, "acme/app", "v2", "arm64", &[OPENSSL]).await;
    for digest in [&subject, &other] {
        scan_now(&s, "acme/app", digest).await;
    }
    namespace_policy(&s, "acme", json!({"block_severity": "high"})).await;
    assert!(pull_refusal(&s, "acme/app", &subject).await.is_some());

    push_vex(
        &s,
        "acme/app",
        &subject,
        &vex_document("CVE-2024-0001", "affected"),
    )
    .await;
    assert_eq!(
        finding_ids(&s, "acme/app", &subject).await.1,
        Vec::<String>::new()
    );

    let referrer = push_vex(
        &s,
        "acme/app",
        &subject,
        &vex_document("CVE-2024-0001", "not_affected"),
    )
    .await;
    let body = ok(
        &s,
        Method::GET,
        &image_path("acme/app", &subject, "vulnerabilities"),
        None,
    )
    .await;
    assert_eq!(body["items"], json!([]));
    assert_eq!(body["suppressed"][0]["id"], "DSA-0001-1");
    assert_eq!(
        body["suppressed"][0]["suppressed_by"],
        json!({
            "source": "vex", "entry": null, "reason": null, "expires_at": null,
            "status": "not_affected",
            "justification": "vulnerable_code_not_in_execute_path",
            "referrer": referrer,
        })
    );
    assert_eq!(pull_refusal(&s, "acme/app", &subject).await, None);
    assert_eq!(finding_ids(&s, "acme/app", &other).await.0, ["DSA-0001-1"]);
    assert!(pull_refusal(&s, "acme/app", &other).await.is_some());

    let resp = s
        .delete(&format!("/v2/acme/app/manifests/{referrer}"))
        .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(
        finding_ids(&s, "acme/app", &subject).await.0,
        ["DSA-0001-1"]
    );
    assert!(pull_refusal(&s, "acme/app", &subject).await.is_some());
}

/// What an image counts as seen from outside it: its summary in the repository's image
/// listing, the registry-wide summary and most dangerous images, the images listed by each of
/// `cves`, and /metrics' images with critical or high findings and findings of the
/// repository, critical and high.
async fn counted_outside(s: &TestServer, repo: &str, digest: &str, cves: &[&str]) -> Value {
    use crate::metrics::{samples, scrape, sum};
    let listing = ok(
        s,
        Method::GET,
        &format!("/repositories/{repo}/-/images"),
        None,
    )
    .await;
    let listed = listing["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["digest"] == digest)
        .expect("the image is listed")["vulnerabilities"]
        .clone();
    let registry = ok(s, Method::GET, "/vulnerabilities", None).await;
    let mut by_cve = serde_json::Map::new();
    for cve in cves {
        let body = ok(s, Method::GET, &format!("/vulnerabilities/{cve}"), None).await;
        by_cve.insert(
            (*cve).into(),
            json!(body["images"].as_array().unwrap().len()),
        );
    }
    let metrics = samples(&scrape(s).await);
    let repository = format!(r#"repository="{repo}""#);
    json!({
        "listing": listed,
        "registry": registry["summary"]["findings"],
        "dangerous": registry["items"].as_array().unwrap().len(),
        "by_cve": by_cve,
        "metrics": {
            "critical_images": sum(&metrics, "berth_vulnerable_images", &[r#"severity="critical""#]),
            "high_images": sum(&metrics, "berth_vulnerable_images", &[r#"severity="high""#]),
            "critical": sum(&metrics, "berth_vulnerability_findings", &[&repository, r#"severity="critical""#]),
            "high": sum(&metrics, "berth_vulnerability_findings", &[&repository, r#"severity="high""#]),
        },
    })
}

/// The listing's summary, the registry-wide views and /metrics leave out what the image's
/// own view suppresses: an allowlisted CVE (repository scope) and a VEX `not_affected` one.
/// Once the allowlist entry expires (clock moved) its CVE counts again everywhere; the VEX
/// one stays out.
#[tokio::test]
async fn suppressed_findings_are_left_out_of_every_count() {
    let s = TestServer::start().await;
    import_advisories(&s).await;
    let digest = push_debian(&s, "acme/app", "v1", "amd64", &[OPENSSL, ZLIB]).await;
    scan_now(&s, "acme/app", &digest).await;
    let cves = ["CVE-2024-0001", "CVE-2024-0002"];
    let counts = |critical: i64, high: i64| {
        let c = f64::from(i32::try_from(critical).unwrap());
        let h = f64::from(i32::try_from(high).unwrap());
        json!({
            "listing": {"critical": critical, "high": high, "medium": 0, "low": 0, "unknown": 0},
            "registry": {"critical": critical, "high": high, "medium": 0, "low": 0, "unknown": 0},
            "dangerous": i64::from(critical + high > 0),
            "by_cve": {"CVE-2024-0001": high, "CVE-2024-0002": critical},
            "metrics": {"critical_images": c, "high_images": h, "critical": c, "high": h},
        })
    };
    assert_eq!(
        counted_outside(&s, "acme/app", &digest, &cves).await,
        counts(1, 1)
    );

    let (status, entry) = call(
        &s,
        Method::POST,
        "/allowlist",
        Some(json!({
            "vulnerability": "CVE-2024-0001",
            "scope": "repository",
            "repository": "acme/app",
            "expires_at": s.clock.now() + 3600,
            "reason": "not reachable",
        })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{entry}");
    assert_eq!(
        counted_outside(&s, "acme/app", &digest, &cves).await,
        counts(1, 0)
    );
    push_vex(
        &s,
        "acme/app",
        &digest,
        &vex_document("CVE-2024-0002", "not_affected"),
    )
    .await;
    assert_eq!(
        counted_outside(&s, "acme/app", &digest, &cves).await,
        counts(0, 0)
    );
    assert_eq!(
        finding_ids(&s, "acme/app", &digest).await,
        (
            vec![],
            vec!["DEBIAN-CVE-2024-0002".to_owned(), "DSA-0001-1".to_owned()]
        )
    );

    s.clock.advance(3601);
    assert_eq!(
        counted_outside(&s, "acme/app", &digest, &cves).await,
        counts(0, 1)
    );
}

/// A manual quarantine is never replaced nor lifted by the policy.
#[tokio::test]
async fn a_manual_quarantine_is_left_alone_by_the_policy() {
    let s = TestServer::start().await;
    import_advisories(&s).await;
    let digest = push_debian(&s, "acme/app", "v1", "amd64", &[OPENSSL]).await;
    scan_now(&s, "acme/app", &digest).await;
    let (status, _) = call(
        &s,
        Method::POST,
        &image_path("acme/app", &digest, "quarantine"),
        Some(json!({"reason": "held by hand"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    namespace_policy(&s, "acme", json!({"block_severity": "high"})).await;
    let manual = Some(("manual".to_owned(), "held by hand".to_owned()));
    assert_eq!(quarantine_of(&s, "acme/app", &digest).await, manual);
    namespace_policy(&s, "acme", json!({"block_severity": null})).await;
    assert_eq!(quarantine_of(&s, "acme/app", &digest).await, manual);
    scan_now(&s, "acme/app", &digest).await;
    assert_eq!(quarantine_of(&s, "acme/app", &digest).await, manual);
}

/// Asserts a 400 naming `parameter`.
async fn assert_bad(s: &TestServer, method: Method, path: &str, body: Value, parameter: &str) {
    let (status, problem) = call(s, method, path, Some(body.clone())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {body}: {problem}");
    assert_eq!(problem["error"]["code"], "BAD_REQUEST", "{problem}");
    assert_eq!(
        problem["error"]["details"]["parameter"], parameter,
        "{body}: {problem}"
    );
}

/// Every bad input is refused naming what is wrong, and stores nothing.
#[tokio::test]
async fn bad_input_is_refused_and_nothing_is_stored() {
    let s = TestServer::start().await;
    import_advisories(&s).await;
    let digest = push_debian(&s, "acme/app", "v1", "amd64", &[OPENSSL]).await;
    scan_now(&s, "acme/app", &digest).await;
    let ns = "/namespaces/acme/settings";
    let repo = "/repositories/acme/app/-/settings";
    for path in [ns, repo] {
        assert_bad(
            &s,
            Method::PUT,
            path,
            json!({"block_severity": "severe"}),
            "block_severity",
        )
        .await;
        assert_bad(
            &s,
            Method::PUT,
            path,
            json!({"block_severity": 7}),
            "block_severity",
        )
        .await;
        assert_bad(
            &s,
            Method::PUT,
            path,
            json!({"scan_on_push": "yes"}),
            "scan_on_push",
        )
        .await;
        assert_bad(
            &s,
            Method::PUT,
            path,
            json!({"only_fixable": 1}),
            "only_fixable",
        )
        .await;
        assert_bad(
            &s,
            Method::PUT,
            path,
            json!({"block_severity": "high", "block_unscanned": "no"}),
            "block_unscanned",
        )
        .await;
    }
    assert_bad(
        &s,
        Method::PUT,
        ns,
        json!({"tag_mutability": "immutable"}),
        "tag_mutability",
    )
    .await;
    let (status, _) = call(
        &s,
        Method::PUT,
        "/namespaces/a%2Fb/settings",
        Some(json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let stored = ok(&s, Method::GET, ns, None).await;
    assert_eq!(stored["block_severity"], Value::Null);
    assert_eq!(stored["effective"]["block_unscanned"]["value"], false);
    let stored = ok(&s, Method::GET, repo, None).await;
    assert_eq!(stored["block_severity"], Value::Null);
    assert_eq!(quarantine_of(&s, "acme/app", &digest).await, None);

    let entry = |extra: Value| {
        let mut body = json!({"vulnerability": "CVE-2024-0001", "reason": "accepted"});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let now = s.clock.now();
    for (body, parameter) in [
        (entry(json!({"scope": "galaxy"})), "scope"),
        (entry(json!({"scope": "namespace"})), "namespace"),
        (
            entry(json!({"scope": "namespace", "namespace": "acme/app"})),
            "namespace",
        ),
        (entry(json!({"scope": "repository"})), "repository"),
        (
            entry(json!({"scope": "repository", "repository": "Acme"})),
            "repository",
        ),
        (
            entry(json!({"scope": "digest", "repository": "acme/app"})),
            "digest",
        ),
        (
            entry(json!({"scope": "digest", "repository": "acme/app", "digest": "sha256:12"})),
            "digest",
        ),
        (
            entry(json!({"scope": "registry", "namespace": "acme"})),
            "namespace",
        ),
        (
            entry(json!({"scope": "registry", "expires_at": now - 1})),
            "expires_at",
        ),
        (
            entry(json!({"scope": "registry", "expires_at": "2001-01-01T00:00:00Z"})),
            "expires_at",
        ),
        (
            entry(json!({"scope": "registry", "expires_at": "tomorrow"})),
            "expires_at",
        ),
        (
            entry(json!({"scope": "registry", "vulnerability": " "})),
            "vulnerability",
        ),
        (entry(json!({"scope": "registry", "reason": ""})), "reason"),
        (
            entry(json!({"scope": "registry", "reason": "two\nlines"})),
            "reason",
        ),
        (
            json!({"scope": "registry", "reason": "no vulnerability"}),
            "vulnerability",
        ),
        (entry(json!({"scope": "registry", "reason": 5})), "reason"),
        (entry(json!({"scope": ["registry"]})), "scope"),
        (
            entry(json!({"scope": "registry", "colour": "red"})),
            "colour",
        ),
        (
            entry(json!({"scope": "registry", "expires_at": true})),
            "expires_at",
        ),
    ] {
        assert_bad(&s, Method::POST, "/allowlist", body, parameter).await;
    }
    let (status, problem) = call(&s, Method::DELETE, "/allowlist/4242", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");
    assert_eq!(problem["error"]["message"], "no allowlist entry 4242");
    let (status, _) = call(&s, Method::DELETE, "/allowlist/x", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    for query in ["cursor=x", "limit=0", "scope=galaxy", "colour=red"] {
        let (status, problem) = call(&s, Method::GET, &format!("/allowlist?{query}"), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {problem}");
    }
    assert_eq!(
        ok(&s, Method::GET, "/allowlist", None).await["items"],
        json!([])
    );

    // A malformed VEX document is stored as the artifact it is, and suppresses nothing.
    let referrer = push_vex_bytes(&s, "acme/app", &digest, b"{\"statements\": not json").await;
    let referrers = json_body(s.get(&format!("/v2/acme/app/referrers/{digest}")).await).await;
    assert_eq!(referrers["manifests"][0]["digest"], referrer);
    assert_eq!(referrers["manifests"][0]["artifactType"], OPENVEX);
    assert_eq!(
        finding_ids(&s, "acme/app", &digest).await,
        (vec!["DSA-0001-1".to_owned()], vec![])
    );
}

/// Registry-wide entries are for administrators; namespace maintainers manage their own
/// namespace's entries (and not another's); the namespace's policy is set by its
/// maintainers, read by its readers.
#[tokio::test]
async fn who_may_set_policy_and_allowlist_entries() {
    let s = start_auth(|_| {}).await;
    for user in ["maint", "dev"] {
        s.create_user(user).await;
    }
    for ns in ["team", "other"] {
        s.admin_api(
            Method::POST,
            "/namespaces",
            Some(json!({ "name": ns, "visibility": "private" })),
        )
        .await;
    }
    s.set_role("team", "maint", "maintainer").await;
    s.set_role("team", "dev", "developer").await;
    let maint = ("maint", password_of("maint"));
    let dev = ("dev", password_of("dev"));
    let as_maint = Some((maint.0, maint.1.as_str()));
    let as_dev = Some((dev.0, dev.1.as_str()));
    let entry = |scope: Value| {
        let mut body = json!({"vulnerability": "CVE-2024-0001", "reason": "accepted"});
        for (k, v) in scope.as_object().unwrap() {
            body[k] = v.clone();
        }
        Some(body)
    };

    let refused = s
        .api_as(
            as_maint,
            Method::POST,
            "/allowlist",
            entry(json!({"scope": "registry"})),
        )
        .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(json_body(refused).await["error"]["code"], "DENIED");
    let refused = s
        .api_as(
            as_dev,
            Method::POST,
            "/allowlist",
            entry(json!({"scope": "namespace", "namespace": "team"})),
        )
        .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let refused = s
        .api_as(
            as_maint,
            Method::POST,
            "/allowlist",
            entry(json!({"scope": "namespace", "namespace": "other"})),
        )
        .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let anonymous = s
        .api_as(
            None,
            Method::POST,
            "/allowlist",
            entry(json!({"scope": "registry"})),
        )
        .await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    let created = s
        .api_as(
            as_maint,
            Method::POST,
            "/allowlist",
            entry(json!({"scope": "repository", "repository": "team/app"})),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let created = json_body(created).await;
    assert_eq!(created["author"], "maint");
    let global = s
        .admin_api(
            Method::POST,
            "/allowlist",
            entry(json!({"scope": "registry"})),
        )
        .await;
    let other = s
        .admin_api(
            Method::POST,
            "/allowlist",
            entry(json!({"scope": "namespace", "namespace": "other"})),
        )
        .await;

    // The developer sees the registry's entry and the team's, not the other namespace's.
    let listed = json_body(s.api_as(as_dev, Method::GET, "/allowlist", None).await).await;
    let ids: Vec<&Value> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["id"])
        .collect();
    assert_eq!(ids, [&created["id"], &global["id"]]);
    let all = s.admin_api(Method::GET, "/allowlist", None).await;
    assert_eq!(all["items"].as_array().unwrap().len(), 3);
    // A page at a time, the unreadable entry skipped.
    let first = json_body(
        s.api_as(as_dev, Method::GET, "/allowlist?limit=1", None)
            .await,
    )
    .await;
    assert_eq!(first["items"][0]["id"], created["id"]);
    let next = first["next"].as_str().expect("a next page");
    let second = json_body(
        s.api_as(
            as_dev,
            Method::GET,
            &format!("/allowlist?limit=1&cursor={next}"),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(second["items"][0]["id"], global["id"]);
    assert_eq!(second.get("next"), None, "{second}");
    let scoped = s
        .admin_api(
            Method::GET,
            "/allowlist?repository=team/app&scope=repository",
            None,
        )
        .await;
    assert_eq!(scoped["items"].as_array().unwrap().len(), 1);

    let path = format!("/allowlist/{}", global["id"]);
    assert_eq!(
        s.api_as(as_maint, Method::DELETE, &path, None)
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
    let path = format!("/allowlist/{}", other["id"]);
    assert_eq!(
        s.api_as(as_maint, Method::DELETE, &path, None)
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
    let path = format!("/allowlist/{}", created["id"]);
    assert_eq!(
        s.api_as(as_dev, Method::DELETE, &path, None).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        s.api_as(as_maint, Method::DELETE, &path, None)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );

    let settings = "/namespaces/team/settings";
    let body = Some(json!({"block_severity": "high"}));
    assert_eq!(
        s.api_as(as_dev, Method::PUT, settings, body.clone())
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        s.api_as(as_maint, Method::PUT, settings, body)
            .await
            .status(),
        StatusCode::OK
    );
    let read = s.api_as(as_dev, Method::GET, settings, None).await;
    assert_eq!(read.status(), StatusCode::OK);
    assert_eq!(json_body(read).await["block_severity"], "high");
    assert_eq!(
        s.api_as(as_dev, Method::GET, "/namespaces/other/settings", None)
            .await
            .status(),
        StatusCode::FORBIDDEN
    );

    let audit = s.admin_api(Method::GET, "/audit?limit=1000", None).await;
    let actions: Vec<(&str, &str)> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| {
            let action = e["action"].as_str()?;
            (action.starts_with("allowlist.") || action.ends_with(".scan_policy"))
                .then(|| (action, e["actor"].as_str().unwrap()))
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("namespace.scan_policy", "maint"),
            ("allowlist.delete", "maint"),
            ("allowlist.add", ADMIN),
            ("allowlist.add", ADMIN),
            ("allowlist.add", "maint"),
        ]
    );
}
