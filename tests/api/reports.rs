//! Reports of other scanners imported for an image (`POST …/images/{digest}/reports`): a
//! Trivy report and a Grype report, written here in each tool's JSON output shape for a
//! Debian image pushed here, shown beside Berth's own scan under `…/vulnerabilities?scanner=`
//! with their layers mapped from `DiffID`s through the image's config, kept as a history,
//! suppressed by allowlist entries like Berth's findings; a report for one image of an index;
//! the CLI; and every refused report, after which nothing is stored.

use std::io::{Read, Write};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{
    OCI_CONFIG, OCI_MANIFEST, TestServer, descriptor, json_body, sha256, unknown_digest,
};
use crate::scan_policy::{OPENSSL, ZLIB, debian_layer, import_advisories};

const GZIP_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// An image pushed here: its manifest digest, config digest, layer blobs and their DiffIDs.
struct Pushed {
    digest: String,
    config: String,
    layers: Vec<String>,
    diff_ids: Vec<String>,
}

/// A gzip tar layer holding one file.
fn app_layer(content: &[u8]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_mode(0o755);
    header.set_size(content.len() as u64);
    builder
        .append_data(&mut header, "usr/local/bin/app", content)
        .expect("tar entry");
    let tar = builder.into_inner().expect("tar");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(&tar).expect("gzip");
    enc.finish().expect("gzip")
}

/// The digest of a gzip layer's uncompressed content: its DiffID.
fn diff_id(gzip: &[u8]) -> String {
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(gzip)
        .read_to_end(&mut tar)
        .expect("gunzip");
    sha256(&tar)
}

/// Pushes a Debian image of openssl and zlib plus an application layer, for `arch`, whose
/// config lists the layers' DiffIDs as a builder's would; tagged `tag` when given.
async fn push_image(s: &TestServer, repo: &str, tag: &str, arch: &str) -> Pushed {
    let layers = [debian_layer(&[OPENSSL, ZLIB]), app_layer(arch.as_bytes())];
    let diff_ids: Vec<String> = layers.iter().map(|l| diff_id(l)).collect();
    let config = serde_json::to_vec(&json!({
        "architecture": arch,
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "config": {"Cmd": ["/usr/local/bin/app"]},
    }))
    .unwrap();
    s.push_blob(repo, &config).await;
    for layer in &layers {
        s.push_blob(repo, layer).await;
    }
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, &config),
        "layers": layers.iter().map(|l| descriptor(GZIP_LAYER, l)).collect::<Vec<_>>(),
    }))
    .unwrap();
    Pushed {
        digest: s.put_manifest_ok(repo, tag, OCI_MANIFEST, &manifest).await,
        config: sha256(&config),
        layers: layers.iter().map(|l| sha256(l)).collect(),
        diff_ids,
    }
}

/// A Trivy JSON report (`trivy image -f json`, schema 2) about `repo@digest` with config
/// `config`, listing `vulnerabilities` under the OS packages' result.
fn trivy(repo: &str, digest: &str, config: &str, vulnerabilities: Value) -> Value {
    json!({
        "SchemaVersion": 2,
        "CreatedAt": "2026-12-03T10:00:00Z",
        "Trivy": {"Version": "0.58.1"},
        "ArtifactName": format!("registry.example/{repo}:1"),
        "ArtifactType": "container_image",
        "Metadata": {
            "OS": {"Family": "debian", "Name": "12.8"},
            "ImageID": config,
            "RepoDigests": [format!("registry.example/{repo}@{digest}")],
        },
        "Results": [
            {"Target": format!("registry.example/{repo}:1 (debian 12.8)"), "Class": "os-pkgs",
             "Type": "debian", "Vulnerabilities": vulnerabilities},
            {"Target": "usr/local/bin/app", "Class": "lang-pkgs", "Type": "gobinary"},
        ],
    })
}

/// A Grype JSON report (`grype -o json`) about image `digest` with config `config`.
fn grype(digest: &str, config: &str, matches: Value) -> Value {
    json!({
        "matches": matches,
        "source": {"type": "image", "target": {
            "userInput": "registry.example/team/app:1", "imageID": config,
            "manifestDigest": digest, "mediaType": OCI_MANIFEST, "repoDigests": [],
        }},
        "distro": {"name": "debian", "version": "12"},
        "descriptor": {"name": "grype", "version": "0.86.1"},
    })
}

/// The four findings a Trivy scan of [`push_image`]'s image reports (the last without a
/// layer), the first with a second report's `first` flag.
fn trivy_findings(image: &Pushed, with_zlib: bool) -> Value {
    let mut found = vec![json!({
        "VulnerabilityID": "CVE-2024-0001", "VendorIDs": ["DSA-0001-1"], "PkgName": "openssl",
        "PkgID": "libssl3@3.0.11-1~deb12u1", "InstalledVersion": "3.0.11-1~deb12u1",
        "FixedVersion": "3.0.13-1~deb12u1", "Status": "fixed", "Severity": "HIGH",
        "Layer": {"Digest": image.layers[0], "DiffID": image.diff_ids[0]},
    })];
    if with_zlib {
        found.push(json!({
            "VulnerabilityID": "CVE-2024-0002", "PkgName": "zlib1g",
            "InstalledVersion": "1:1.2.13.dfsg-1", "FixedVersion": "1:1.2.13.dfsg-1+deb12u1",
            "Severity": "CRITICAL", "Layer": {"DiffID": image.diff_ids[0]},
        }));
    }
    found.push(json!({
        "VulnerabilityID": "CVE-2011-3374", "PkgName": "apt", "InstalledVersion": "2.6.1",
        "FixedVersion": "", "Status": "affected", "Severity": "LOW",
        "Layer": {"DiffID": image.diff_ids[1]},
    }));
    found.push(json!({
        "VulnerabilityID": "CVE-2025-9999", "PkgName": "app", "InstalledVersion": "1.0",
        "Severity": "UNKNOWN",
    }));
    Value::Array(found)
}

fn image_path(repo: &str, digest: &str, rest: &str) -> String {
    format!("/api/v1/repositories/{repo}/-/images/{digest}/{rest}")
}

/// `POST …/reports` with `body`: the status and the answer.
async fn import(s: &TestServer, repo: &str, digest: &str, body: &[u8]) -> (StatusCode, Value) {
    let resp = s
        .req(Method::POST, &image_path(repo, digest, "reports"))
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .expect("POST reports");
    let status = resp.status();
    (status, json_body(resp).await)
}

async fn get(s: &TestServer, path: &str) -> (StatusCode, Value) {
    let resp = s.get(path).await;
    let status = resp.status();
    (status, json_body(resp).await)
}

async fn ok(s: &TestServer, path: &str) -> Value {
    let (status, body) = get(s, path).await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    body
}

fn ids(items: &Value) -> Vec<String> {
    items
        .as_array()
        .expect("an array")
        .iter()
        .map(|i| i["id"].as_str().expect("an id").to_owned())
        .collect()
}

/// A Trivy and a Grype report of an image Berth scanned too: each is its own view beside
/// Berth's, with the report's severities, aliases, fixes and layers (mapped from DiffIDs to
/// the image's layer blobs), filtered like Berth's findings and suppressed by an allowlist
/// entry; a later report replaces the view and keeps when each finding was first seen; every
/// import stays in the history, newest first.
#[tokio::test]
async fn trivy_and_grype_reports_are_views_beside_berths_own_scan() {
    let s = TestServer::start().await;
    import_advisories(&s).await;
    let image = push_image(&s, "team/app", "1", "amd64").await;
    let (status, scan) = {
        let resp = s
            .req(
                Method::POST,
                &image_path("team/app", &image.digest, "scan?wait=true"),
            )
            .send()
            .await
            .unwrap();
        (resp.status(), json_body(resp).await)
    };
    assert_eq!(status, StatusCode::OK, "{scan}");
    assert_eq!(scan["status"], "ok", "{scan}");

    let before = s.clock.now();
    let report = trivy(
        "team/app",
        &image.digest,
        &image.config,
        trivy_findings(&image, true),
    );
    let (status, imported) =
        import(&s, "team/app", &image.digest, report.to_string().as_bytes()).await;
    assert_eq!(status, StatusCode::CREATED, "{imported}");
    assert_eq!(imported["scanner"], "trivy");
    assert_eq!(imported["scanner_version"], "0.58.1");
    assert_eq!(imported["image"], image.digest);
    assert_eq!(imported["platform"], Value::Null);
    // The server's clock runs: the import is stamped within the request, not at a set second.
    let first_import = imported["imported_at"].as_i64().expect("imported_at");
    assert!(
        (before..=s.clock.now()).contains(&first_import),
        "{imported}"
    );
    assert_eq!(imported["findings"], 4);
    assert_eq!(
        imported["summary"],
        json!({"critical": 1, "high": 1, "medium": 0, "low": 1, "unknown": 1})
    );

    // Berth's own view is unchanged and names the imported report.
    let berth = ok(
        &s,
        &image_path("team/app", &image.digest, "vulnerabilities"),
    )
    .await;
    assert_eq!(berth["scanner"], "berth");
    assert_eq!(ids(&berth["items"]), ["DEBIAN-CVE-2024-0002", "DSA-0001-1"]);
    assert_eq!(berth["reports"].as_array().map(Vec::len), Some(1));
    assert_eq!(berth["reports"][0]["scanner"], "trivy");
    assert_eq!(berth["reports"][0]["summary"]["unknown"], 1);

    let path = image_path("team/app", &image.digest, "vulnerabilities?scanner=trivy");
    let view = ok(&s, &path).await;
    assert_eq!(view["scanner"], "trivy");
    assert_eq!(
        ids(&view["items"]),
        [
            "CVE-2024-0002",
            "CVE-2024-0001",
            "CVE-2011-3374",
            "CVE-2025-9999"
        ],
        "most severe first"
    );
    let items = view["items"].as_array().unwrap();
    let layers: Vec<&str> = items.iter().map(|i| i["layer"].as_str().unwrap()).collect();
    assert_eq!(
        layers,
        [
            image.layers[0].as_str(),
            image.layers[0].as_str(),
            image.layers[1].as_str(),
            ""
        ],
        "DiffIDs mapped to the layer blobs; no layer given, none shown"
    );
    assert_eq!(items[1]["aliases"], json!(["DSA-0001-1"]));
    assert_eq!(items[1]["package"], "openssl");
    assert_eq!(items[1]["installed_version"], "3.0.11-1~deb12u1");
    assert_eq!(items[1]["fixed_version"], "3.0.13-1~deb12u1");
    assert_eq!(
        items[2]["fixed_version"],
        Value::Null,
        "an empty fix is none"
    );
    assert_eq!(items[0]["severity"], "critical");
    assert_eq!(items[3]["severity"], "unknown");
    assert_eq!(items[0]["platform"], Value::Null);
    assert_eq!(items[0]["first_seen"], first_import);
    assert_eq!(
        view["summary"],
        json!({"critical": 1, "high": 1, "medium": 0, "low": 1, "unknown": 1})
    );
    let high = ok(&s, &format!("{path}&severity=high")).await;
    assert_eq!(ids(&high["items"]), ["CVE-2024-0002", "CVE-2024-0001"]);
    let fixable = ok(&s, &format!("{path}&fixable=true")).await;
    assert_eq!(ids(&fixable["items"]), ["CVE-2024-0002", "CVE-2024-0001"]);
    let paged = s.get(&format!("{path}&limit=3")).await;
    let link = crate::common::header(&paged, "link").expect("a next link");
    assert!(link.contains("scanner=trivy"), "{link}");

    // An allowlist entry suppresses an imported finding as it does Berth's.
    let resp = s
        .req(Method::POST, "/api/v1/allowlist")
        .json(
            &json!({"vulnerability": "CVE-2011-3374", "scope": "repository",
                      "repository": "team/app", "reason": "apt is not run in the container"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let view = ok(&s, &path).await;
    assert_eq!(
        ids(&view["items"]),
        ["CVE-2024-0002", "CVE-2024-0001", "CVE-2025-9999"]
    );
    assert_eq!(view["suppressed"][0]["id"], "CVE-2011-3374");
    assert_eq!(view["summary"]["low"], 0);

    // Grype's view of the same image: the binary package, Grype's words and fix list.
    s.clock.advance(60);
    let report = grype(
        &image.digest,
        &image.config,
        json!([{
            "vulnerability": {"id": "CVE-2024-0001", "severity": "High", "namespace": "debian:distro:debian:12",
                              "fix": {"versions": ["3.0.13-1~deb12u1"], "state": "fixed"}},
            "relatedVulnerabilities": [{"id": "CVE-2024-0001"}],
            "matchDetails": [],
            "artifact": {"name": "libssl3", "version": "3.0.11-1~deb12u1", "type": "deb",
                         "purl": "pkg:deb/debian/libssl3@3.0.11-1~deb12u1?distro=debian-12",
                         "locations": [{"path": "/var/lib/dpkg/status", "layerID": image.diff_ids[0]}],
                         "upstreams": [{"name": "openssl"}]},
        }]),
    );
    let (status, imported) =
        import(&s, "team/app", &image.digest, report.to_string().as_bytes()).await;
    assert_eq!(status, StatusCode::CREATED, "{imported}");
    assert_eq!(imported["scanner"], "grype");
    assert_eq!(imported["scanner_version"], "0.86.1");
    let view = ok(
        &s,
        &image_path("team/app", &image.digest, "vulnerabilities?scanner=grype"),
    )
    .await;
    assert_eq!(ids(&view["items"]), ["CVE-2024-0001"]);
    assert_eq!(view["items"][0]["package"], "libssl3");
    assert_eq!(
        view["items"][0]["aliases"],
        json!([]),
        "its own id is no alias"
    );
    assert_eq!(view["items"][0]["layer"], image.layers[0]);
    assert_eq!(view["summary"]["high"], 1);

    // A newer Trivy report replaces the view; what stayed keeps its first sighting.
    s.clock.advance(60);
    let before = s.clock.now();
    let report = trivy(
        "team/app",
        &image.digest,
        &image.config,
        trivy_findings(&image, false),
    );
    let (status, imported) =
        import(&s, "team/app", &image.digest, report.to_string().as_bytes()).await;
    assert_eq!(status, StatusCode::CREATED);
    let second_import = imported["imported_at"].as_i64().expect("imported_at");
    assert!(
        (before..=s.clock.now()).contains(&second_import),
        "{imported}"
    );
    assert!(
        second_import >= first_import + 120,
        "two minutes moved between the imports"
    );
    let view = ok(&s, &path).await;
    assert_eq!(ids(&view["items"]), ["CVE-2024-0001", "CVE-2025-9999"]);
    assert_eq!(view["items"][0]["first_seen"], first_import);
    assert_eq!(view["items"][0]["last_seen"], second_import);
    let history = ok(&s, &image_path("team/app", &image.digest, "reports")).await;
    let scanners: Vec<&str> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["scanner"].as_str().unwrap())
        .collect();
    assert_eq!(scanners, ["trivy", "grype", "trivy"], "newest first");
    assert_eq!(history["items"][0]["findings"], 3);
    assert_eq!(history["items"][2]["findings"], 4);
    let page = ok(
        &s,
        &image_path("team/app", &image.digest, "reports?limit=1"),
    )
    .await;
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1));
    let rest = ok(
        &s,
        &image_path(
            "team/app",
            &image.digest,
            &format!("reports?limit=5&cursor={}", page["next"].as_str().unwrap()),
        ),
    )
    .await;
    assert_eq!(rest["items"].as_array().map(Vec::len), Some(2));

    // The policy judges Berth's own findings: the reports leave the image's status alone.
    let berth = ok(
        &s,
        &image_path("team/app", &image.digest, "vulnerabilities"),
    )
    .await;
    assert_eq!(ids(&berth["items"]), ["DEBIAN-CVE-2024-0002", "DSA-0001-1"]);
    assert_eq!(berth["reports"].as_array().map(Vec::len), Some(2));

    // The image's page shows each scanner's newest report.
    let page = s
        .get(&format!("/ui/r/team/app/-/images/{}", image.digest))
        .await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("Reports of other scanners"), "{html}");
    assert!(html.contains("trivy 0.58.1") && html.contains("grype 0.86.1"));

    // And the CLI imports one, printing what it holds.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("trivy.json");
    std::fs::write(
        &file,
        trivy(
            "team/app",
            &image.digest,
            &image.config,
            trivy_findings(&image, true),
        )
        .to_string(),
    )
    .unwrap();
    let out = crate::cli::berth(
        &s,
        &[
            "image",
            "import-report",
            "team/app",
            &image.digest,
            file.to_str().unwrap(),
        ],
    )
    .await
    .ok();
    assert!(
        out.contains("imported trivy 0.58.1 report")
            && out.contains("4 findings (critical 1, high 1, medium 0, low 1, unknown 1)"),
        "{out}"
    );
    let not_json = dir.path().join("table.txt");
    std::fs::write(&not_json, "Total: 4 (UNKNOWN: 1, LOW: 1)").unwrap();
    let err = crate::cli::berth(
        &s,
        &[
            "image",
            "import-report",
            "team/app",
            &image.digest,
            not_json.to_str().unwrap(),
        ],
    )
    .await
    .failed();
    assert!(err.contains("is not a JSON report"), "{err}");
}

/// A report of one image of a multi-arch index, imported for the index (as Trivy names the
/// index it resolved a tag to): the import names that image and its platform, and the view
/// is the same from the index and from the image.
#[tokio::test]
async fn a_report_for_an_index_is_about_one_of_its_images() {
    let s = TestServer::start().await;
    let amd64 = push_image(&s, "team/multi", "amd64", "amd64").await;
    let arm64 = push_image(&s, "team/multi", "arm64", "arm64").await;
    let size_of = |digest: String| {
        let s = &s;
        async move {
            let resp = s.head(&format!("/v2/team/multi/manifests/{digest}")).await;
            crate::common::header(&resp, "content-length")
                .and_then(|n| n.parse::<u64>().ok())
                .expect("a manifest's size")
        }
    };
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": amd64.digest,
             "size": size_of(amd64.digest.clone()).await,
             "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": OCI_MANIFEST, "digest": arm64.digest,
             "size": size_of(arm64.digest.clone()).await,
             "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
        ],
    }))
    .unwrap();
    let index_digest = s
        .put_manifest_ok("team/multi", "1", OCI_INDEX, &index)
        .await;

    let report = trivy(
        "team/multi",
        &index_digest,
        &arm64.config,
        trivy_findings(&arm64, false),
    );
    let (status, imported) = import(
        &s,
        "team/multi",
        &index_digest,
        report.to_string().as_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{imported}");
    assert_eq!(imported["image"], arm64.digest);
    assert_eq!(
        imported["platform"],
        json!({"os": "linux", "architecture": "arm64", "variant": "v8"})
    );
    let from_index = ok(
        &s,
        &image_path("team/multi", &index_digest, "vulnerabilities?scanner=trivy"),
    )
    .await;
    assert_eq!(
        ids(&from_index["items"]),
        ["CVE-2024-0001", "CVE-2011-3374", "CVE-2025-9999"]
    );
    assert_eq!(from_index["items"][0]["platform"]["architecture"], "arm64");
    assert_eq!(from_index["items"][1]["layer"], arm64.layers[1]);
    let from_image = ok(
        &s,
        &image_path("team/multi", &arm64.digest, "vulnerabilities?scanner=trivy"),
    )
    .await;
    assert_eq!(from_image["items"], from_index["items"]);
    let (status, body) = get(
        &s,
        &image_path("team/multi", &amd64.digest, "vulnerabilities?scanner=trivy"),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    // A report of neither image names what it is about and what the index holds.
    let report = trivy(
        "team/multi",
        &index_digest,
        &sha256(b"another config"),
        trivy_findings(&arm64, false),
    );
    let (status, body) = import(
        &s,
        "team/multi",
        &index_digest,
        report.to_string().as_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("not any of the 2 images of index"),
        "{message}"
    );
}

/// Every refused report gets a 4xx saying why, and leaves nothing stored.
#[tokio::test]
async fn refused_reports_say_why_and_store_nothing() {
    let s = TestServer::start().await;
    let image = push_image(&s, "team/app", "1", "amd64").await;
    let other = push_image(&s, "team/other", "1", "arm64").await;
    let valid = |findings: Value| {
        trivy("team/app", &image.digest, &image.config, findings)
            .to_string()
            .into_bytes()
    };
    let mut cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("not JSON", b"Total: 4 (UNKNOWN: 1)".to_vec(), "not JSON"),
        (
            "an SBOM",
            br#"{"bomFormat": "CycloneDX"}"#.to_vec(),
            "neither a Trivy report",
        ),
        (
            "Trivy's old schema",
            json!({"SchemaVersion": 1, "Results": []})
                .to_string()
                .into_bytes(),
            "schema version 1",
        ),
        (
            "a filesystem scan",
            json!({"SchemaVersion": 2, "ArtifactType": "filesystem", "Results": []})
                .to_string()
                .into_bytes(),
            "not of a container image",
        ),
        (
            "another image",
            trivy("team/other", &other.digest, &other.config, json!([]))
                .to_string()
                .into_bytes(),
            "not image",
        ),
        (
            "a layer of another image",
            valid(
                json!([{"VulnerabilityID": "CVE-1", "PkgName": "p", "InstalledVersion": "1",
                          "Layer": {"DiffID": other.diff_ids[1]}}]),
            ),
            "is not one of image",
        ),
        (
            "a finding without its id",
            valid(json!([{"PkgName": "openssl", "InstalledVersion": "1"}])),
            "Results[0].Vulnerabilities[0]: no VulnerabilityID",
        ),
        (
            "a malformed DiffID",
            valid(
                json!([{"VulnerabilityID": "CVE-1", "PkgName": "p", "InstalledVersion": "1",
                          "Layer": {"DiffID": "sha256:beef"}}]),
            ),
            "is not a digest",
        ),
        (
            "a Grype directory scan",
            json!({"matches": [], "source": {"type": "directory", "target": "/src"}})
                .to_string()
                .into_bytes(),
            "not of a container image",
        ),
    ];
    // A report whose findings are not a list.
    cases.push((
        "Results not a list",
        json!({"SchemaVersion": 2, "Results": {"Target": "x"}})
            .to_string()
            .into_bytes(),
        "a malformed Trivy report",
    ));
    for (what, body, why) in cases {
        let (status, answer) = import(&s, "team/app", &image.digest, &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(why),
            "{what}: {message:?} should say {why:?}"
        );
    }

    // Not an image: a signature-like artifact takes no report.
    let config = b"{}".to_vec();
    s.push_blob("team/app", &config).await;
    let artifact = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.note",
        "config": descriptor("application/vnd.oci.empty.v1+json", &config),
        "layers": [descriptor("application/vnd.oci.empty.v1+json", &config)],
    }))
    .unwrap();
    let artifact = s
        .put_manifest_ok("team/app", "note", OCI_MANIFEST, &artifact)
        .await;
    let (status, answer) = import(&s, "team/app", &artifact, &valid(json!([]))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("takes no vulnerability report"),
        "{answer}"
    );

    let (status, answer) = import(&s, "team/app", &unknown_digest(), &valid(json!([]))).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    assert_eq!(answer["error"]["code"], "MANIFEST_UNKNOWN");
    let (status, answer) = import(&s, "team/app", "sha256:12", &valid(json!([]))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");

    let status = s
        .truncated_request(
            &format!(
                "POST {} HTTP/1.1\r\nContent-Type: application/json",
                image_path("team/app", &image.digest, "reports")
            ),
            b"{",
            (64 << 20) + 1,
        )
        .await;
    assert_eq!(status, Some(413));

    let (status, answer) = get(
        &s,
        &image_path("team/app", &image.digest, "vulnerabilities?scanner=snyk"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("berth, trivy or grype"),
        "{answer}"
    );
    let (status, answer) = get(
        &s,
        &image_path("team/app", &image.digest, "vulnerabilities?scanner=grype"),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("no grype report was imported"),
        "{answer}"
    );

    let history = ok(&s, &image_path("team/app", &image.digest, "reports")).await;
    assert_eq!(history["items"], json!([]), "nothing stored");
    let berth = get(
        &s,
        &image_path("team/app", &image.digest, "vulnerabilities"),
    )
    .await;
    assert_eq!(berth.0, StatusCode::NOT_FOUND, "never scanned: {}", berth.1);

    // A report that is accepted after all the refusals is the only one.
    let (status, _) = import(&s, "team/app", &image.digest, &valid(json!([]))).await;
    assert_eq!(status, StatusCode::CREATED);
    let history = ok(&s, &image_path("team/app", &image.digest, "reports")).await;
    assert_eq!(history["items"].as_array().map(Vec::len), Some(1));
    let view = ok(
        &s,
        &image_path("team/app", &image.digest, "vulnerabilities?scanner=trivy"),
    )
    .await;
    assert_eq!(view["items"], json!([]), "a clean report is an empty view");
}

/// Importing needs the push right on the repository; reading the view, pull.
#[tokio::test]
async fn importing_needs_the_push_right() {
    use crate::common::auth::{ADMIN, ADMIN_PASSWORD, password_of, start_auth};
    let mut s = start_auth(|_| {}).await;
    s.admin_api(
        Method::POST,
        "/namespaces",
        Some(json!({"name": "team", "visibility": "private"})),
    )
    .await;
    for (user, role) in [("reader", "reporter"), ("dev", "developer")] {
        s.create_user(user).await;
        s.set_role("team", user, role).await;
    }
    s.sign_in(ADMIN, ADMIN_PASSWORD);
    let image = push_image(&s, "team/app", "1", "amd64").await;
    s.sign_out();
    let body = trivy("team/app", &image.digest, &image.config, json!([])).to_string();
    let path = format!(
        "/api/v1/repositories/team/app/-/images/{}/reports",
        image.digest
    );
    let reader = s
        .api_as(
            Some(("reader", &password_of("reader"))),
            Method::POST,
            &path["/api/v1".len()..],
            Some(serde_json::from_str(&body).unwrap()),
        )
        .await;
    assert_eq!(reader.status(), StatusCode::FORBIDDEN);
    let anonymous = s
        .api_as(
            None,
            Method::POST,
            &path["/api/v1".len()..],
            Some(serde_json::from_str(&body).unwrap()),
        )
        .await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let dev = s
        .api_as(
            Some(("dev", &password_of("dev"))),
            Method::POST,
            &path["/api/v1".len()..],
            Some(serde_json::from_str(&body).unwrap()),
        )
        .await;
    assert_eq!(dev.status(), StatusCode::CREATED);
    let imported = json_body(dev).await;
    assert_eq!(imported["imported_by"], "dev");
    let listed = s
        .api_as(
            Some(("reader", &password_of("reader"))),
            Method::GET,
            &format!("/repositories/team/app/-/images/{}/reports", image.digest),
            None,
        )
        .await;
    assert_eq!(listed.status(), StatusCode::OK);
    assert_eq!(json_body(listed).await["items"][0]["imported_by"], "dev");
}
