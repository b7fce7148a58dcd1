//! SBOMs both ways. Out: `GET /api/v1/repositories/{name}/-/images/{digest}/sbom`, a
//! scanned image's inventory as CycloneDX 1.5 and SPDX 2.3 JSON, each checked by the format's
//! own Python library (cyclonedx-python-lib's strict schema validation, spdx-tools' full
//! validation; installed by `scripts/install-test-deps.sh`) and compared with the inventory
//! the API lists. In: an SBOM pushed as a referrer of an image without package databases adds
//! what it lists to that image's inventory, so its vulnerabilities are matched.

use std::collections::BTreeSet;

use reqwest::{StatusCode, header};
use serde_json::Value;

use crate::{
    common::{TestServer, json_body, unknown_digest},
    scans::{
        GZIP_LAYER, ZSTD_LAYER, assert_problem, debian_layers, image_path, push_layers, scan_now,
    },
    signatures::{push_referrer, python},
};

/// `[name, version, purl]` of every package the inventory listing shows.
async fn listed(s: &TestServer, repo: &str, digest: &str) -> BTreeSet<Vec<String>> {
    let body = json_body(
        s.get(&image_path(repo, digest, "packages?limit=1000"))
            .await,
    )
    .await;
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            ["name", "version", "purl"]
                .iter()
                .map(|k| p[*k].as_str().unwrap().to_owned())
                .collect()
        })
        .collect()
}

/// The document of `format` and the headers it came with.
async fn download(
    s: &TestServer,
    repo: &str,
    digest: &str,
    query: &str,
) -> (String, String, String) {
    let resp = s
        .get(&image_path(repo, digest, &format!("sbom{query}")))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let header_of = |name: header::HeaderName| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let content_type = header_of(header::CONTENT_TYPE);
    let disposition = header_of(header::CONTENT_DISPOSITION);
    (content_type, disposition, resp.text().await.unwrap())
}

/// Both formats validate with their own libraries and list exactly the inventory's packages
/// (name, version, purl); the file names and media types say what they are.
#[tokio::test]
async fn both_formats_validate_and_list_the_inventory() {
    let s = TestServer::start().await;
    let repo = "team/app";
    let (base, upgrade, removal) = debian_layers();
    let (digest, _) = push_layers(
        &s,
        repo,
        "v1",
        "amd64",
        &[
            (GZIP_LAYER, &base),
            (ZSTD_LAYER, &upgrade),
            (GZIP_LAYER, &removal),
        ],
    )
    .await;
    // Before a scan there is nothing to describe: 404 saying how to get one.
    let resp = s.get(&image_path(repo, &digest, "sbom")).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let body = json_body(resp).await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("has not been scanned successfully yet"),
        "{body}"
    );
    scan_now(&s, repo, &digest).await;
    let expected = listed(&s, repo, &digest).await;
    assert_eq!(expected.len(), 3, "{expected:?}");

    let hex12 = &digest["sha256:".len().."sha256:".len() + 12];
    let (cdx_type, cdx_file, cdx) = download(&s, repo, &digest, "").await;
    assert_eq!(cdx_type, "application/vnd.cyclonedx+json; version=1.5");
    assert_eq!(
        cdx_file,
        format!("attachment; filename=\"team_app-{hex12}.cdx.json\"")
    );
    let (spdx_type, spdx_file, spdx) = download(&s, repo, &digest, "?format=spdx").await;
    assert_eq!(spdx_type, "application/spdx+json");
    assert_eq!(
        spdx_file,
        format!("attachment; filename=\"team_app-{hex12}.spdx.json\"")
    );
    let cdx_json: Value = serde_json::from_str(&cdx).unwrap();
    assert_eq!(
        cdx_json["metadata"]["component"]["version"],
        digest.as_str()
    );

    let dir = tempfile::tempdir().unwrap();
    let (cdx_path, spdx_path) = (
        dir.path().join("bom.cdx.json"),
        dir.path().join("bom.spdx.json"),
    );
    std::fs::write(&cdx_path, &cdx).unwrap();
    std::fs::write(&spdx_path, &spdx).unwrap();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sbom_check.py");
    let out = std::process::Command::new(python())
        .arg(&script)
        .arg(&cdx_path)
        .arg(&spdx_path)
        .output()
        .expect("python runs (scripts/install-test-deps.sh makes target/test-venv)");
    assert!(
        out.status.success(),
        "the documents do not validate (or cyclonedx-python-lib / spdx-tools are missing: \
         scripts/install-test-deps.sh installs them): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    for format in ["cyclonedx", "spdx"] {
        let found: BTreeSet<Vec<String>> = seen[format]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| serde_json::from_value(p.clone()).unwrap())
            .collect();
        assert_eq!(found, expected, "{format}");
    }
}

/// An unknown format or parameter, a malformed or unknown digest: clear errors.
#[tokio::test]
async fn bad_requests_are_named() {
    let s = TestServer::start().await;
    let (base, _, _) = debian_layers();
    let (digest, _) = push_layers(&s, "team/app", "v1", "amd64", &[(GZIP_LAYER, &base)]).await;
    scan_now(&s, "team/app", &digest).await;
    let resp = s
        .get(&image_path("team/app", &digest, "sbom?format=xml"))
        .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body = json_body(resp).await;
    assert_eq!(
        body["error"]["message"], "format: \"xml\" is not one of cyclonedx, spdx",
        "{body}"
    );
    let resp = s
        .get(&image_path("team/app", &digest, "sbom?fmt=spdx"))
        .await;
    assert_problem(resp, 400, "BAD_REQUEST").await;
    let resp = s
        .get(&image_path("team/app", &unknown_digest(), "sbom"))
        .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = s.get(&image_path("team/app", "sha256:abc", "sbom")).await;
    assert_problem(resp, 400, "BAD_REQUEST").await;
    let resp = s
        .req(
            reqwest::Method::POST,
            &image_path("team/app", &digest, "sbom"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
}

/// An image with no package database (one file) has an empty inventory; with the SBOM of
/// another image pushed as its referrer (CycloneDX, or SPDX in an in-toto statement), its
/// inventory lists what the SBOM does, the SBOM's digest as where each came from; a
/// referrer that is not an SBOM document adds nothing and fails nothing.
#[tokio::test]
async fn an_sbom_referrer_fills_the_inventory_of_an_image_without_databases() {
    let s = TestServer::start().await;
    let (base, upgrade, removal) = debian_layers();
    let (debian, _) = push_layers(
        &s,
        "team/debian",
        "v1",
        "amd64",
        &[
            (GZIP_LAYER, &base),
            (ZSTD_LAYER, &upgrade),
            (GZIP_LAYER, &removal),
        ],
    )
    .await;
    scan_now(&s, "team/debian", &debian).await;
    let rows = |body: &Value| -> BTreeSet<String> {
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                format!(
                    "{} {}={} {}={} {}",
                    p["ecosystem"].as_str().unwrap(),
                    p["name"].as_str().unwrap(),
                    p["version"].as_str().unwrap(),
                    p["source_name"].as_str().unwrap(),
                    p["source_version"].as_str().unwrap(),
                    p["purl"].as_str().unwrap(),
                )
            })
            .collect()
    };
    let expected =
        rows(&json_body(s.get(&image_path("team/debian", &debian, "packages")).await).await);
    assert_eq!(expected.len(), 3, "{expected:?}");

    let distroless =
        crate::scans::gzip(&crate::scans::tar_of(&[("app/server", b"a static binary")]));
    for (repo, format) in [("team/cdx", "cyclonedx"), ("team/spdx", "spdx")] {
        let (image, _) = push_layers(&s, repo, "v1", "amd64", &[(GZIP_LAYER, &distroless)]).await;
        let record = scan_now(&s, repo, &image).await;
        assert_eq!(record["packages"], 0, "{record}");
        let (_, _, document) =
            download(&s, "team/debian", &debian, &format!("?format={format}")).await;
        let (artifact_type, blob) = if format == "cyclonedx" {
            ("application/vnd.cyclonedx+json", document.into_bytes())
        } else {
            let statement = serde_json::json!({
                "_type": "https://in-toto.io/Statement/v0.1",
                "predicateType": "https://spdx.dev/Document",
                "subject": [{"name": repo, "digest": {"sha256": &image["sha256:".len()..]}}],
                "predicate": serde_json::from_str::<Value>(&document).unwrap(),
            });
            ("application/spdx+json", statement.to_string().into_bytes())
        };
        // A referrer of another kind first: read past, nothing added.
        push_referrer(
            &s,
            repo,
            &image,
            "application/vnd.example.notes",
            "text/plain",
            b"hi",
        )
        .await;
        let sbom = push_referrer(&s, repo, &image, artifact_type, artifact_type, &blob).await;
        let record = scan_now(&s, repo, &image).await;
        assert_eq!(record["status"], "ok", "{record}");
        let listed = json_body(s.get(&image_path(repo, &image, "packages")).await).await;
        assert_eq!(rows(&listed), expected, "{format}");
        assert!(
            listed["items"]
                .as_array()
                .unwrap()
                .iter()
                .all(|p| p["layer"] == sbom.as_str()),
            "{listed}"
        );
    }

    // A broken SBOM is logged and left out: the scan stands on the layers.
    let (image, _) = push_layers(
        &s,
        "team/broken",
        "v1",
        "amd64",
        &[(GZIP_LAYER, &distroless)],
    )
    .await;
    push_referrer(
        &s,
        "team/broken",
        &image,
        "application/vnd.cyclonedx+json",
        "application/vnd.cyclonedx+json",
        b"{\"not\": \"a bom\"}",
    )
    .await;
    let record = scan_now(&s, "team/broken", &image).await;
    assert_eq!(
        (record["status"].as_str(), record["packages"].as_i64()),
        (Some("ok"), Some(0))
    );
}

/// With scan on push, an SBOM pushed as a referrer queues its subject's scan, which reads it.
#[tokio::test]
async fn pushing_an_sbom_rescans_its_subject() {
    let s = TestServer::start_with(|c| {
        c.scan.on_push = true;
        c.gc.poll_millis = 3_600_000;
        c.gc.schedule_secs = 0;
    })
    .await;
    let replica = s.replica().await;
    let (base, _, _) = debian_layers();
    let (debian, _) = push_layers(&s, "team/debian", "v1", "amd64", &[(GZIP_LAYER, &base)]).await;
    let distroless =
        crate::scans::gzip(&crate::scans::tar_of(&[("app/server", b"a static binary")]));
    let (image, _) = push_layers(&s, "team/app", "v1", "amd64", &[(GZIP_LAYER, &distroless)]).await;
    // Queued scans start once the pushes pause (`scan.quiet_secs`).
    s.clock.advance(2);
    replica.run_due_jobs("r1").await.unwrap();
    let packages = |repo: &'static str, digest: String| {
        let s = &s;
        async move {
            let body = json_body(s.get(&image_path(repo, &digest, "packages")).await).await;
            body["items"].as_array().unwrap().len()
        }
    };
    assert_eq!(packages("team/app", image.clone()).await, 0);
    let listed = packages("team/debian", debian.clone()).await;
    assert_eq!(listed, 4);

    let (_, _, document) = download(&s, "team/debian", &debian, "").await;
    let cdx = "application/vnd.cyclonedx+json";
    push_referrer(&s, "team/app", &image, cdx, cdx, document.as_bytes()).await;
    s.clock.advance(2);
    replica.run_due_jobs("r1").await.unwrap();
    let history = json_body(s.get(&image_path("team/app", &image, "scans")).await).await;
    assert_eq!(history["items"].as_array().unwrap().len(), 2, "{history}");
    assert_eq!(packages("team/app", image.clone()).await, listed);
}
