//! Manifests: PUT (end-7), GET/HEAD (end-3), DELETE (end-9), and the statistics the index
//! records for pushes and pulls.

use reqwest::{Body, Method, StatusCode};
use serde_json::{Value, json};
use sqlx::{AnyConnection, Connection, Row};

use crate::common::{
    DOCKER_CONFIG, DOCKER_LAYER, DOCKER_LIST, DOCKER_MANIFEST, OCI_CONFIG, OCI_EMPTY, OCI_INDEX,
    OCI_MANIFEST, TestServer, assert_error, descriptor, header, image_config, image_manifest,
    json_body, random_bytes, sha256, strings, unknown_digest,
};

fn to_vec(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

/// GETs and HEADs `reference` and checks the bytes and headers a puller relies on.
async fn assert_manifest(
    s: &TestServer,
    repo: &str,
    reference: &str,
    media_type: &str,
    bytes: &[u8],
) {
    let path = format!("/v2/{repo}/manifests/{reference}");
    let digest = sha256(bytes);
    let resp = s
        .req(Method::GET, &path)
        .header("accept", media_type)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "GET {path}");
    assert_eq!(
        header(&resp, "content-type").as_deref(),
        Some(media_type),
        "GET {path}"
    );
    assert_eq!(
        header(&resp, "content-length"),
        Some(bytes.len().to_string())
    );
    assert_eq!(
        header(&resp, "docker-content-digest").as_deref(),
        Some(digest.as_str())
    );
    assert_eq!(resp.bytes().await.unwrap().as_ref(), bytes, "GET {path}");

    let resp = s.head(&path).await;
    assert_eq!(resp.status(), StatusCode::OK, "HEAD {path}");
    assert_eq!(header(&resp, "content-type").as_deref(), Some(media_type));
    assert_eq!(
        header(&resp, "content-length"),
        Some(bytes.len().to_string())
    );
    assert_eq!(
        header(&resp, "docker-content-digest").as_deref(),
        Some(digest.as_str())
    );
}

/// end-7 by tag and by digest: 201, Location of the manifest by digest, Docker-Content-Digest.
#[tokio::test]
async fn put_by_tag_and_by_digest() {
    let s = TestServer::start().await;
    let config = image_config("linux", "amd64", None);
    s.push_blob("man/put", &config).await;
    s.push_blob("man/put", b"layer").await;
    let manifest = image_manifest(&config, &[b"layer"]);
    let digest = sha256(&manifest);

    let resp = s
        .put_manifest("man/put", "v1", Some(OCI_MANIFEST), &manifest)
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(
        s.location(&resp),
        s.url(&format!("/v2/man/put/manifests/{digest}"))
    );
    assert_eq!(
        header(&resp, "docker-content-digest").as_deref(),
        Some(digest.as_str())
    );
    assert_eq!(header(&resp, "oci-subject"), None);

    let other = image_manifest(&config, &[]);
    let other_digest = sha256(&other);
    let resp = s
        .put_manifest("man/put", &other_digest, Some(OCI_MANIFEST), &other)
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(
        s.location(&resp),
        s.url(&format!("/v2/man/put/manifests/{other_digest}"))
    );
    assert_eq!(
        header(&resp, "docker-content-digest").as_deref(),
        Some(other_digest.as_str())
    );
    // Pushed by digest: untagged.
    let tags = json_body(s.get("/v2/man/put/tags/list").await).await;
    assert_eq!(strings(&tags["tags"]), ["v1"]);
}

/// end-3: GET and HEAD by tag and by digest serve the pushed bytes, type, length and digest.
#[tokio::test]
async fn get_and_head_by_tag_and_digest() {
    let s = TestServer::start().await;
    let (digest, manifest) = s.push_image("man/get", "latest", &[b"l1", b"l2"]).await;
    assert_manifest(&s, "man/get", "latest", OCI_MANIFEST, &manifest).await;
    assert_manifest(&s, "man/get", &digest, OCI_MANIFEST, &manifest).await;
    assert_error(
        s.get("/v2/man/get/manifests/other").await,
        404,
        "MANIFEST_UNKNOWN",
    )
    .await;
    let path = format!("/v2/man/get/manifests/{}", unknown_digest());
    assert_error(s.get(&path).await, 404, "MANIFEST_UNKNOWN").await;
    assert_eq!(s.head(&path).await.status(), StatusCode::NOT_FOUND);
}

/// A manifest for a repository that does not exist is 404 (spec: "An attempt to pull a
/// nonexistent repository MUST return response code 404").
#[tokio::test]
async fn unknown_repository_is_404() {
    let s = TestServer::start().await;
    let resp = s.get("/v2/man/nowhere/manifests/latest").await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let code = crate::common::error_code(resp).await;
    assert!(
        code == "MANIFEST_UNKNOWN" || code == "NAME_UNKNOWN",
        "{code}"
    );
}

/// end-7: a manifest without `mediaType` takes its type from Content-Type; with neither the
/// type is unknown and the manifest is refused.
#[tokio::test]
async fn media_type_from_content_type() {
    let s = TestServer::start().await;
    let config = image_config("linux", "amd64", None);
    s.push_blob("man/ct", &config).await;
    let manifest = to_vec(&json!({
        "schemaVersion": 2,
        "config": descriptor(OCI_CONFIG, &config),
        "layers": [],
    }));
    s.put_manifest_ok("man/ct", "v1", OCI_MANIFEST, &manifest)
        .await;
    assert_manifest(&s, "man/ct", "v1", OCI_MANIFEST, &manifest).await;

    let resp = s.put_manifest("man/ct", "v2", None, &manifest).await;
    assert_error(resp, 400, "MANIFEST_INVALID").await;
}

/// "The registry SHOULD ignore parameters on the Content-Type header", and the served
/// Content-Type carries none ("The registry SHOULD NOT include parameters").
#[tokio::test]
async fn content_type_parameters_are_ignored() {
    let s = TestServer::start().await;
    let config = image_config("linux", "amd64", None);
    s.push_blob("man/params", &config).await;
    let manifest = image_manifest(&config, &[]);
    let resp = s
        .put_manifest(
            "man/params",
            "v1",
            Some("application/vnd.oci.image.manifest.v1+json; charset=utf-8"),
            &manifest,
        )
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_manifest(&s, "man/params", "v1", OCI_MANIFEST, &manifest).await;
}

/// A reference that cannot be a tag (a leading dot or dash, too long, a bad character) names
/// no manifest: GET, HEAD and DELETE answer 404 MANIFEST_UNKNOWN as for any missing manifest
/// (the spec's conformance and peers do); only a PUT, which would create it, is 400
/// MANIFEST_INVALID (the spec's TAG_INVALID is a legacy schema1 code).
#[tokio::test]
async fn a_reference_that_cannot_be_a_tag_is_unknown_except_to_a_put() {
    let s = TestServer::start().await;
    s.push_image("man/badref", "v1", &[b"layer"]).await;
    let long = "t".repeat(129);
    for reference in [".dot", "-dash", "a+b", long.as_str()] {
        let path = format!("/v2/man/badref/manifests/{reference}");
        assert_error(s.get(&path).await, 404, "MANIFEST_UNKNOWN").await;
        assert_eq!(
            s.head(&path).await.status(),
            StatusCode::NOT_FOUND,
            "{reference}"
        );
        assert_error(s.delete(&path).await, 404, "MANIFEST_UNKNOWN").await;
        let config = image_config("linux", "amd64", None);
        let manifest = to_vec(&json!({
            "schemaVersion": 2,
            "config": descriptor(OCI_CONFIG, &config),
            "layers": [],
        }));
        let resp = s
            .put_manifest("man/badref", reference, Some(OCI_MANIFEST), &manifest)
            .await;
        assert_error(resp, 400, "MANIFEST_INVALID").await;
    }
    // The repository's real tag is untouched.
    assert_eq!(
        s.get("/v2/man/badref/manifests/v1").await.status(),
        StatusCode::OK
    );
}

/// A Content-Type that contradicts the body's `mediaType` is MANIFEST_INVALID.
#[tokio::test]
async fn content_type_contradicting_media_type() {
    let s = TestServer::start().await;
    let config = image_config("linux", "amd64", None);
    s.push_blob("man/mismatch", &config).await;
    let manifest = image_manifest(&config, &[]);
    let resp = s
        .put_manifest("man/mismatch", "v1", Some(DOCKER_MANIFEST), &manifest)
        .await;
    assert_error(resp, 400, "MANIFEST_INVALID").await;
    assert_eq!(
        s.head("/v2/man/mismatch/manifests/v1").await.status(),
        StatusCode::NOT_FOUND
    );
}

/// An OCI index over two platform images, served as an index.
#[tokio::test]
async fn oci_index() {
    let s = TestServer::start().await;
    let repo = "man/index";
    let amd = image_config("linux", "amd64", None);
    let arm = image_config("linux", "arm64", Some("v8"));
    let (amd_digest, amd_manifest) = s.push_image_with(repo, "", &amd, &[b"amd layer"]).await;
    let (arm_digest, arm_manifest) = s.push_image_with(repo, "", &arm, &[b"arm layer"]).await;
    let index = to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST, "digest": amd_digest, "size": amd_manifest.len(),
                "platform": { "os": "linux", "architecture": "amd64" },
            },
            {
                "mediaType": OCI_MANIFEST, "digest": arm_digest, "size": arm_manifest.len(),
                "platform": { "os": "linux", "architecture": "arm64", "variant": "v8" },
            },
        ],
    }));
    let digest = s.put_manifest_ok(repo, "multi", OCI_INDEX, &index).await;
    assert_manifest(&s, repo, "multi", OCI_INDEX, &index).await;
    assert_manifest(&s, repo, &digest, OCI_INDEX, &index).await;
    // The children stay reachable by digest.
    assert_manifest(&s, repo, &arm_digest, OCI_MANIFEST, &arm_manifest).await;
}

/// Docker schema 2 manifests and manifest lists, served with their Docker types.
#[tokio::test]
async fn docker_schema2_and_manifest_list() {
    let s = TestServer::start().await;
    let repo = "man/docker";
    let config = to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": { "type": "layers", "diff_ids": [] }, "config": {},
    }));
    s.push_blob(repo, &config).await;
    s.push_blob(repo, b"docker layer").await;
    let manifest = to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": descriptor(DOCKER_CONFIG, &config),
        "layers": [descriptor(DOCKER_LAYER, b"docker layer")],
    }));
    let digest = s
        .put_manifest_ok(repo, "v1", DOCKER_MANIFEST, &manifest)
        .await;
    assert_manifest(&s, repo, "v1", DOCKER_MANIFEST, &manifest).await;

    let list = to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_LIST,
        "manifests": [{
            "mediaType": DOCKER_MANIFEST, "digest": digest, "size": manifest.len(),
            "platform": { "os": "linux", "architecture": "amd64" },
        }],
    }));
    s.put_manifest_ok(repo, "list", DOCKER_LIST, &list).await;
    assert_manifest(&s, repo, "list", DOCKER_LIST, &list).await;
}

/// Foreign (non-distributable) layers live elsewhere: the registry does not require them.
#[tokio::test]
async fn foreign_layers_are_not_required() {
    let s = TestServer::start().await;
    let repo = "man/foreign";
    let config = image_config("windows", "amd64", None);
    s.push_blob(repo, &config).await;
    let manifest = to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": descriptor(DOCKER_CONFIG, &config),
        "layers": [{
            "mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
            "digest": unknown_digest(), "size": 1234,
            "urls": ["https://example.com/layer.tar.gz"],
        }],
    }));
    s.put_manifest_ok(repo, "v1", DOCKER_MANIFEST, &manifest)
        .await;
    assert_manifest(&s, repo, "v1", DOCKER_MANIFEST, &manifest).await;
}

/// "The registry MUST store the manifest in the exact byte representation provided by the
/// client": unknown fields, key order and whitespace come back byte for byte.
#[tokio::test]
async fn unknown_fields_preserved_byte_exact() {
    let s = TestServer::start().await;
    let repo = "man/exact";
    let config = image_config("linux", "amd64", None);
    s.push_blob(repo, &config).await;
    let manifest = format!(
        "{{\n  \"x-vendor\" : {{\"z\": [1, 2.50, null], \"a\": \"\\u00e9\"}},\n\t\"layers\":[],\
         \"schemaVersion\" :2, \"mediaType\":\"{OCI_MANIFEST}\",\n  \"config\": {{\"size\": {}, \
         \"digest\": \"{}\", \"mediaType\": \"{OCI_CONFIG}\", \"x-extra\": true}}   }}\n",
        config.len(),
        sha256(&config)
    );
    let digest = s
        .put_manifest_ok(repo, "odd", OCI_MANIFEST, manifest.as_bytes())
        .await;
    assert_manifest(&s, repo, "odd", OCI_MANIFEST, manifest.as_bytes()).await;
    assert_manifest(&s, repo, &digest, OCI_MANIFEST, manifest.as_bytes()).await;
}

/// An OCI 1.1 artifact: `artifactType`, an empty config with embedded `data`, and a
/// `subject`; the push answers `OCI-Subject` ("Pushing Manifests with Subject"), also when
/// the subject is not (yet) in the repository.
#[tokio::test]
async fn artifact_with_subject() {
    let s = TestServer::start().await;
    let repo = "man/artifact";
    let (subject_digest, subject) = s.push_image(repo, "v1", &[b"base"]).await;
    s.push_blob(repo, b"{}").await;
    s.push_blob(repo, b"sbom content").await;
    let artifact = |subject: Value| {
        to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.example.sbom.v1",
            "config": { "mediaType": OCI_EMPTY, "digest": sha256(b"{}"), "size": 2, "data": "e30=" },
            "layers": [descriptor("application/spdx+json", b"sbom content")],
            "subject": subject,
            "annotations": { "org.opencontainers.image.created": "2024-01-01T00:00:00Z" },
        }))
    };

    let present = artifact(json!({
        "mediaType": OCI_MANIFEST, "digest": subject_digest, "size": subject.len(),
    }));
    let resp = s
        .put_manifest(repo, &sha256(&present), Some(OCI_MANIFEST), &present)
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(
        header(&resp, "oci-subject").as_deref(),
        Some(subject_digest.as_str())
    );
    assert_manifest(&s, repo, &sha256(&present), OCI_MANIFEST, &present).await;

    // "A registry MUST initially accept an otherwise valid manifest with a subject field that
    // references a manifest that does not exist in the repository".
    let missing = unknown_digest();
    let dangling = artifact(json!({ "mediaType": OCI_MANIFEST, "digest": missing, "size": 123 }));
    let resp = s
        .put_manifest(repo, "sbom", Some(OCI_MANIFEST), &dangling)
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(header(&resp, "oci-subject"), Some(missing));
    assert_manifest(&s, repo, "sbom", OCI_MANIFEST, &dangling).await;
}

/// An artifact may reference no blobs but its config ("the list of blobs MAY be empty").
#[tokio::test]
async fn artifact_without_layers() {
    let s = TestServer::start().await;
    let repo = "man/nolayers";
    s.push_blob(repo, b"{}").await;
    let manifest = to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.marker",
        "config": descriptor(OCI_EMPTY, b"{}"),
        "layers": [],
    }));
    s.put_manifest_ok(repo, "marker", OCI_MANIFEST, &manifest)
        .await;
    assert_manifest(&s, repo, "marker", OCI_MANIFEST, &manifest).await;
}

/// A manifest whose config or layer is not in the repository is 400 MANIFEST_BLOB_UNKNOWN,
/// and nothing is stored under the tag.
#[tokio::test]
async fn missing_blob_is_manifest_blob_unknown() {
    let s = TestServer::start().await;
    let repo = "man/missing";
    let config = image_config("linux", "amd64", None);
    let layer = random_bytes(100);
    // Neither pushed, then only the config.
    let manifest = image_manifest(&config, &[&layer]);
    let resp = s
        .put_manifest(repo, "v1", Some(OCI_MANIFEST), &manifest)
        .await;
    assert_error(resp, 400, "MANIFEST_BLOB_UNKNOWN").await;
    s.push_blob(repo, &config).await;
    let resp = s
        .put_manifest(repo, "v1", Some(OCI_MANIFEST), &manifest)
        .await;
    assert_error(resp, 400, "MANIFEST_BLOB_UNKNOWN").await;
    assert_eq!(
        s.head(&format!("/v2/{repo}/manifests/v1")).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.head(&format!("/v2/{repo}/manifests/{}", sha256(&manifest)))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    // Once the layer is there, the same bytes are accepted.
    s.push_blob(repo, &layer).await;
    s.put_manifest_ok(repo, "v1", OCI_MANIFEST, &manifest).await;
}

/// An index whose child manifest is not in the repository is MANIFEST_BLOB_UNKNOWN.
#[tokio::test]
async fn index_with_missing_child() {
    let s = TestServer::start().await;
    let repo = "man/orphan";
    let (present, present_bytes) = s.push_image(repo, "", &[b"here"]).await;
    let index = to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            { "mediaType": OCI_MANIFEST, "digest": present, "size": present_bytes.len() },
            { "mediaType": OCI_MANIFEST, "digest": unknown_digest(), "size": 500 },
        ],
    }));
    let resp = s.put_manifest(repo, "multi", Some(OCI_INDEX), &index).await;
    assert_error(resp, 400, "MANIFEST_BLOB_UNKNOWN").await;
    assert_eq!(
        s.head(&format!("/v2/{repo}/manifests/multi"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
}

/// Bodies that are not a valid manifest are 400 MANIFEST_INVALID.
#[tokio::test]
async fn malformed_manifests_are_manifest_invalid() {
    let s = TestServer::start().await;
    let repo = "man/malformed";
    let config = image_config("linux", "amd64", None);
    s.push_blob(repo, &config).await;
    let good = descriptor(OCI_CONFIG, &config);
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("not JSON", b"{ this is not json".to_vec()),
        ("empty", Vec::new()),
        ("an array", b"[]".to_vec()),
        (
            "schemaVersion 1",
            to_vec(
                &json!({"schemaVersion": 1, "mediaType": OCI_MANIFEST, "config": good, "layers": []}),
            ),
        ),
        (
            "no config",
            to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": []})),
        ),
        (
            "bad descriptor digest",
            to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": "sha256:nothex", "size": 2},
                "layers": []})),
        ),
        (
            "unsupported mediaType",
            to_vec(
                &json!({"schemaVersion": 2, "mediaType": "text/plain", "config": good, "layers": []}),
            ),
        ),
    ];
    for (what, body) in bodies {
        let resp = s.put_manifest(repo, "bad", Some(OCI_MANIFEST), &body).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{what}");
        assert_eq!(
            crate::common::error_code(resp).await,
            "MANIFEST_INVALID",
            "{what}"
        );
    }
    // A descriptor whose size disagrees with the blob it names is invalid too.
    let lying = to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256(&config), "size": config.len() + 1},
        "layers": []}));
    let resp = s
        .put_manifest(repo, "bad", Some(OCI_MANIFEST), &lying)
        .await;
    assert_error(resp, 400, "MANIFEST_INVALID").await;
    assert_error(
        s.get(&format!("/v2/{repo}/manifests/bad")).await,
        404,
        "MANIFEST_UNKNOWN",
    )
    .await;
}

/// A manifest of exactly 4 MiB is accepted ("SHOULD expect to be able to support manifest
/// pushes of at least 4 megabytes"); one byte more is 413, announced by Content-Length or
/// streamed without one.
#[tokio::test]
async fn manifest_size_limit() {
    let s = TestServer::start().await;
    let repo = "man/big";
    let config = image_config("linux", "amd64", None);
    s.push_blob(repo, &config).await;
    let padded = |len: usize| {
        let skeleton = |pad: &str| {
            to_vec(&json!({
                "schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": descriptor(OCI_CONFIG, &config), "layers": [],
                "annotations": { "pad": pad },
            }))
        };
        let fixed = skeleton("").len();
        let body = skeleton(&"x".repeat(len - fixed));
        assert_eq!(body.len(), len);
        body
    };
    const LIMIT: usize = 4 * 1024 * 1024;

    let exact = padded(LIMIT);
    s.put_manifest_ok(repo, "exact", OCI_MANIFEST, &exact).await;
    assert_manifest(&s, repo, "exact", OCI_MANIFEST, &exact).await;

    let over = padded(LIMIT + 1);
    let resp = s
        .put_manifest(repo, "over", Some(OCI_MANIFEST), &over)
        .await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    crate::common::error_code(resp).await;

    let pieces: Vec<Result<Vec<u8>, std::io::Error>> =
        over.chunks(256 * 1024).map(|c| Ok(c.to_vec())).collect();
    let resp = s
        .req(Method::PUT, &format!("/v2/{repo}/manifests/over"))
        .header("content-type", OCI_MANIFEST)
        .body(Body::wrap_stream(futures::stream::iter(pieces)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    crate::common::error_code(resp).await;
    assert_eq!(
        s.head(&format!("/v2/{repo}/manifests/over")).await.status(),
        StatusCode::NOT_FOUND
    );
}

/// end-7 by digest: content that does not hash to the digest in the URL is DIGEST_INVALID.
#[tokio::test]
async fn put_by_wrong_digest() {
    let s = TestServer::start().await;
    let repo = "man/wrongdigest";
    let config = image_config("linux", "amd64", None);
    s.push_blob(repo, &config).await;
    let manifest = image_manifest(&config, &[]);
    let wrong = sha256(b"something else");
    let resp = s
        .put_manifest(repo, &wrong, Some(OCI_MANIFEST), &manifest)
        .await;
    assert_error(resp, 400, "DIGEST_INVALID").await;
    for reference in [wrong, sha256(&manifest)] {
        let path = format!("/v2/{repo}/manifests/{reference}");
        assert_eq!(s.head(&path).await.status(), StatusCode::NOT_FOUND);
    }
}

/// end-7 by a sha512 digest: verified with sha512, and "The Docker-Content-Digest header
/// [...] MUST be equal to the client provided digest".
#[tokio::test]
async fn put_by_sha512_digest() {
    let s = TestServer::start().await;
    let repo = "man/sha512";
    let config = image_config("linux", "amd64", None);
    s.push_blob(repo, &config).await;
    let manifest = image_manifest(&config, &[]);
    let digest = crate::common::sha512(&manifest);
    let resp = s
        .put_manifest(repo, &digest, Some(OCI_MANIFEST), &manifest)
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(header(&resp, "docker-content-digest"), Some(digest.clone()));
    assert_eq!(
        s.location(&resp),
        s.url(&format!("/v2/{repo}/manifests/{digest}"))
    );
    let resp = s.get(&format!("/v2/{repo}/manifests/{digest}")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "docker-content-digest"), Some(digest));
    assert_eq!(header(&resp, "content-type").as_deref(), Some(OCI_MANIFEST));
    assert_eq!(resp.bytes().await.unwrap(), manifest);
}

/// A manifest body cut short (fewer bytes than its Content-Length, then the connection
/// closes) stores nothing, and the server keeps serving.
#[tokio::test]
async fn truncated_manifest_body_creates_nothing() {
    let s = TestServer::start().await;
    let repo = "man/truncated";
    let config = image_config("linux", "amd64", None);
    s.push_blob(repo, &config).await;
    let manifest = image_manifest(&config, &[]);
    let half = manifest.len() / 2;
    let answered = s
        .truncated_request(
            &format!("PUT /v2/{repo}/manifests/v1 HTTP/1.1\r\nContent-Type: {OCI_MANIFEST}"),
            &manifest[..half],
            manifest.len(),
        )
        .await;
    assert!(answered.is_none_or(|st| st >= 400), "answered {answered:?}");
    assert_eq!(
        s.head(&format!("/v2/{repo}/manifests/v1")).await.status(),
        StatusCode::NOT_FOUND
    );
    s.put_manifest_ok(repo, "v1", OCI_MANIFEST, &manifest).await;
    assert_manifest(&s, repo, "v1", OCI_MANIFEST, &manifest).await;
}

/// `limits.manifest_max_bytes` raises the limit: a 5 MiB manifest is then accepted.
#[tokio::test]
async fn manifest_limit_is_configurable() {
    let s = TestServer::start_with(|cfg| cfg.limits.manifest_max_bytes = 8 * 1024 * 1024).await;
    let repo = "man/biglimit";
    let config = image_config("linux", "amd64", None);
    s.push_blob(repo, &config).await;
    let manifest = to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, &config), "layers": [],
        "annotations": { "pad": "y".repeat(5 * 1024 * 1024) },
    }));
    s.put_manifest_ok(repo, "big", OCI_MANIFEST, &manifest)
        .await;
    assert_manifest(&s, repo, "big", OCI_MANIFEST, &manifest).await;
}

/// end-9 by tag: 202, the tag is gone, the manifest stays reachable by digest.
#[tokio::test]
async fn delete_tag_keeps_manifest() {
    let s = TestServer::start().await;
    let repo = "man/untag";
    let (digest, manifest) = s.push_image(repo, "v1", &[b"kept"]).await;
    s.put_manifest_ok(repo, "v2", OCI_MANIFEST, &manifest).await;
    let resp = s.delete(&format!("/v2/{repo}/manifests/v1")).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_error(
        s.get(&format!("/v2/{repo}/manifests/v1")).await,
        404,
        "MANIFEST_UNKNOWN",
    )
    .await;
    assert_manifest(&s, repo, &digest, OCI_MANIFEST, &manifest).await;
    assert_manifest(&s, repo, "v2", OCI_MANIFEST, &manifest).await;
    let tags = json_body(s.get(&format!("/v2/{repo}/tags/list")).await).await;
    assert_eq!(strings(&tags["tags"]), ["v2"]);
}

/// end-9 by digest: 202, the manifest and every tag on it are gone.
#[tokio::test]
async fn delete_manifest_removes_its_tags() {
    let s = TestServer::start().await;
    let repo = "man/delete";
    let (digest, manifest) = s.push_image(repo, "a", &[b"gone"]).await;
    s.put_manifest_ok(repo, "b", OCI_MANIFEST, &manifest).await;
    s.push_image(repo, "other", &[b"stays"]).await;
    let resp = s.delete(&format!("/v2/{repo}/manifests/{digest}")).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    for reference in [digest.as_str(), "a", "b"] {
        let path = format!("/v2/{repo}/manifests/{reference}");
        assert_error(s.get(&path).await, 404, "MANIFEST_UNKNOWN").await;
        assert_eq!(s.head(&path).await.status(), StatusCode::NOT_FOUND);
    }
    let tags = json_body(s.get(&format!("/v2/{repo}/tags/list")).await).await;
    assert_eq!(strings(&tags["tags"]), ["other"]);
}

/// end-9 on something unknown is 404 MANIFEST_UNKNOWN.
#[tokio::test]
async fn delete_unknown_manifest() {
    let s = TestServer::start().await;
    let repo = "man/delunknown";
    s.push_image(repo, "v1", &[b"x"]).await;
    for reference in ["nope".to_owned(), unknown_digest()] {
        let resp = s.delete(&format!("/v2/{repo}/manifests/{reference}")).await;
        assert_error(resp, 404, "MANIFEST_UNKNOWN").await;
        let resp = s
            .delete(&format!("/v2/man/norepo/manifests/{reference}"))
            .await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    }
}

/// A tag pushed again with another manifest serves the new one; the old one stays by digest.
#[tokio::test]
async fn tag_moves_to_new_manifest() {
    let s = TestServer::start().await;
    let repo = "man/move";
    let (old, old_bytes) = s.push_image(repo, "latest", &[b"old layer"]).await;
    let (new, new_bytes) = s.push_image(repo, "latest", &[b"new layer"]).await;
    assert_ne!(old, new);
    assert_manifest(&s, repo, "latest", OCI_MANIFEST, &new_bytes).await;
    assert_manifest(&s, repo, &old, OCI_MANIFEST, &old_bytes).await;
    let tags = json_body(s.get(&format!("/v2/{repo}/tags/list")).await).await;
    assert_eq!(strings(&tags["tags"]), ["latest"]);
}

/// Pushing the same manifest twice is idempotent: same digest, still served once.
#[tokio::test]
async fn repeated_push_is_idempotent() {
    let s = TestServer::start().await;
    let repo = "man/again";
    let (digest, manifest) = s.push_image(repo, "v1", &[b"same"]).await;
    let again = s.put_manifest_ok(repo, "v1", OCI_MANIFEST, &manifest).await;
    assert_eq!(again, digest);
    let again = s
        .put_manifest_ok(repo, &digest, OCI_MANIFEST, &manifest)
        .await;
    assert_eq!(again, digest);
    assert_manifest(&s, repo, "v1", OCI_MANIFEST, &manifest).await;
}

/// A connection to the index of a server whose index is at `database_url`.
async fn open_index(database_url: &str) -> AnyConnection {
    sqlx::any::install_default_drivers();
    AnyConnection::connect(database_url)
        .await
        .expect("open the index")
}

/// The index records, per manifest, the platform of its config and the total size of what
/// it needs (manifest + config + layers; an index adds its children's totals), and push and
/// pull statistics per repository, manifest and tag. Pull counts are flushed at shutdown.
#[tokio::test]
async fn statistics_recorded() {
    let s = TestServer::start().await;
    let clock = s.clock.clone();
    let before = clock.now();
    let repo = "stats/app";
    let arm = image_config("linux", "arm", Some("v7"));
    let (l1, l2) = (random_bytes(1000), random_bytes(2345));
    let (arm_digest, arm_manifest) = s.push_image_with(repo, "v7", &arm, &[&l1, &l2]).await;
    let amd = image_config("linux", "amd64", None);
    let (amd_digest, amd_manifest) = s.push_image_with(repo, "amd64", &amd, &[&l1]).await;
    let index = to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            { "mediaType": OCI_MANIFEST, "digest": arm_digest, "size": arm_manifest.len(),
              "platform": { "os": "linux", "architecture": "arm", "variant": "v7" } },
            { "mediaType": OCI_MANIFEST, "digest": amd_digest, "size": amd_manifest.len(),
              "platform": { "os": "linux", "architecture": "amd64" } },
        ],
    }));
    let index_digest = s.put_manifest_ok(repo, "multi", OCI_INDEX, &index).await;

    // Three pulls by tag, one by digest; a HEAD refreshes times but is not a pull.
    for _ in 0..3 {
        let resp = s.get(&format!("/v2/{repo}/manifests/v7")).await;
        assert_eq!(resp.status(), StatusCode::OK);
    }
    let resp = s.get(&format!("/v2/{repo}/manifests/{index_digest}")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = s.head(&format!("/v2/{repo}/manifests/v7")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let database_url = s.database_url.clone();
    let _dir = s.stop().await;
    let after = clock.now();

    let mut db = open_index(&database_url).await;
    let manifest_row = |digest: String| {
        sqlx::query(
            "SELECT os, architecture, variant, size, total_size, pushed_at, last_pulled_at \
             FROM manifests WHERE digest = $1",
        )
        .bind(digest)
    };

    let row = manifest_row(arm_digest).fetch_one(&mut db).await.unwrap();
    assert_eq!(row.get::<Option<String>, _>("os").as_deref(), Some("linux"));
    assert_eq!(
        row.get::<Option<String>, _>("architecture").as_deref(),
        Some("arm")
    );
    assert_eq!(
        row.get::<Option<String>, _>("variant").as_deref(),
        Some("v7")
    );
    assert_eq!(row.get::<i64, _>("size"), arm_manifest.len() as i64);
    let arm_total = (arm_manifest.len() + arm.len() + l1.len() + l2.len()) as i64;
    assert_eq!(row.get::<i64, _>("total_size"), arm_total);
    let pushed_at = row.get::<i64, _>("pushed_at");
    assert!(
        (before..=after).contains(&pushed_at),
        "pushed_at {pushed_at}"
    );
    let pulled = row.get::<Option<i64>, _>("last_pulled_at");
    assert!(
        pulled.is_some_and(|t| (before..=after).contains(&t)),
        "{pulled:?}"
    );

    let row = manifest_row(amd_digest).fetch_one(&mut db).await.unwrap();
    assert_eq!(
        row.get::<Option<String>, _>("architecture").as_deref(),
        Some("amd64")
    );
    assert_eq!(row.get::<Option<String>, _>("variant"), None);
    let amd_total = (amd_manifest.len() + amd.len() + l1.len()) as i64;
    assert_eq!(row.get::<i64, _>("total_size"), amd_total);
    assert_eq!(row.get::<Option<i64>, _>("last_pulled_at"), None);

    let row = manifest_row(index_digest).fetch_one(&mut db).await.unwrap();
    assert_eq!(row.get::<Option<String>, _>("os"), None);
    assert_eq!(
        row.get::<i64, _>("total_size"),
        index.len() as i64 + arm_total + amd_total
    );
    assert!(row.get::<Option<i64>, _>("last_pulled_at").is_some());

    let tags: Vec<(String, i64, Option<i64>)> = sqlx::query(
        "SELECT t.name, t.pushed_at, t.last_pulled_at FROM tags t \
         JOIN repositories r ON r.id = t.repository_id WHERE r.name = $1 ORDER BY t.name",
    )
    .bind(repo)
    .fetch_all(&mut db)
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect();
    let names: Vec<&str> = tags.iter().map(|t| t.0.as_str()).collect();
    assert_eq!(names, ["amd64", "multi", "v7"]);
    for (name, pushed_at, pulled_at) in &tags {
        assert!((before..=after).contains(pushed_at), "{name} pushed_at");
        assert_eq!(pulled_at.is_some(), name == "v7", "{name} last_pulled_at");
    }

    let row = sqlx::query(
        "SELECT push_count, pull_count, last_push_at, last_pull_at FROM repositories WHERE name = $1",
    )
    .bind(repo)
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!(row.get::<i64, _>("push_count"), 3, "three manifest pushes");
    assert_eq!(
        row.get::<i64, _>("pull_count"),
        4,
        "four GETs, the HEAD not counted"
    );
    assert!(row.get::<Option<i64>, _>("last_push_at").is_some());
    assert!(row.get::<Option<i64>, _>("last_pull_at").is_some());
    db.close().await.unwrap();
}
