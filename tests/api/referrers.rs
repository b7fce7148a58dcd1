//! Listing referrers: end-12a, end-12b (`artifactType` filter), with pagination.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{
    OCI_EMPTY, OCI_INDEX, OCI_MANIFEST, TestServer, assert_error, descriptor, header, json_body,
    next_link, random_bytes, sha256, unknown_digest,
};

const SBOM: &str = "application/vnd.example.sbom.v1";
const SIG_CONFIG: &str = "application/vnd.example.sig.config.v1+json";

/// Pushes an image manifest with `subject` to `repo` by digest; `artifact_type` `None` means
/// the field is absent and `config_type` then stands in for it. Returns (digest, bytes).
async fn push_referrer(
    s: &TestServer,
    repo: &str,
    subject: &Value,
    artifact_type: Option<&str>,
    config_type: &str,
    annotations: Value,
) -> (String, Vec<u8>) {
    let config: &[u8] = if config_type == OCI_EMPTY {
        b"{}"
    } else {
        b"sig config"
    };
    s.push_blob(repo, config).await;
    let layer = random_bytes(64);
    s.push_blob(repo, &layer).await;
    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(config_type, config),
        "layers": [descriptor("application/octet-stream", &layer)],
        "subject": subject,
        "annotations": annotations,
    });
    if let Some(t) = artifact_type {
        manifest["artifactType"] = json!(t);
    }
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let digest = sha256(&bytes);
    let resp = s
        .put_manifest(repo, &digest, Some(OCI_MANIFEST), &bytes)
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    (digest, bytes)
}

/// An image in `repo` and its descriptor, to be a subject.
async fn subject(s: &TestServer, repo: &str) -> (String, Value) {
    let (digest, bytes) = s.push_image(repo, "v1", &[&random_bytes(32)]).await;
    let desc = json!({ "mediaType": OCI_MANIFEST, "digest": digest, "size": bytes.len() });
    (digest, desc)
}

/// The referrers index at `path`, checking the response's form.
async fn referrers(s: &TestServer, path: &str) -> (Option<String>, Option<String>, Vec<Value>) {
    let resp = s.get(path).await;
    assert_eq!(resp.status(), StatusCode::OK, "GET {path}");
    assert_eq!(header(&resp, "content-type").as_deref(), Some(OCI_INDEX));
    let link = header(&resp, "link");
    let filters = header(&resp, "oci-filters-applied");
    let body = json_body(resp).await;
    assert_eq!(body["schemaVersion"], 2);
    assert_eq!(body["mediaType"], OCI_INDEX);
    let manifests = body["manifests"].as_array().expect("manifests").clone();
    (link, filters, manifests)
}

/// `value` encoded for a query string (media types may hold `+`, which would read as a space).
fn query_value(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

fn digests(manifests: &[Value]) -> Vec<String> {
    manifests
        .iter()
        .map(|m| m["digest"].as_str().unwrap().to_owned())
        .collect()
}

/// end-12a: no referrers is an empty index with 200 (never 404), for a known or unknown
/// subject and even an unknown repository.
#[tokio::test]
async fn empty_index_for_unknown_subject() {
    let s = TestServer::start().await;
    let (digest, _) = subject(&s, "ref/empty").await;
    for path in [
        format!("/v2/ref/empty/referrers/{digest}"),
        format!("/v2/ref/empty/referrers/{}", unknown_digest()),
        format!("/v2/ref/nowhere/referrers/{}", unknown_digest()),
    ] {
        let (link, filters, manifests) = referrers(&s, &path).await;
        assert!(manifests.is_empty(), "{path}");
        assert_eq!(link, None);
        assert_eq!(filters, None);
    }
}

/// end-12a lists each manifest whose subject is the digest, with mediaType, size, digest,
/// `artifactType` (the config's media type when the manifest has none; omitted for an index
/// without one) and the manifest's annotations; nothing from other subjects or repositories.
#[tokio::test]
async fn lists_referrers_with_artifact_type_and_annotations() {
    let s = TestServer::start().await;
    let repo = "ref/list";
    let (subject_digest, subject_desc) = subject(&s, repo).await;

    let sbom_annotations = json!({ "org.example.sbom.format": "json", "created": "2024-01-01" });
    let (sbom, sbom_bytes) = push_referrer(
        &s,
        repo,
        &subject_desc,
        Some(SBOM),
        OCI_EMPTY,
        sbom_annotations.clone(),
    )
    .await;
    let (sig, sig_bytes) = push_referrer(
        &s,
        repo,
        &subject_desc,
        None,
        SIG_CONFIG,
        json!({ "org.example.signature.fingerprint": "abcd" }),
    )
    .await;
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [],
        "subject": subject_desc,
        "annotations": { "kind": "bundle" },
    }))
    .unwrap();
    let index_digest = s.put_manifest_ok(repo, "bundle", OCI_INDEX, &index).await;

    // Noise: another subject in the same repository, the same subject in another repository.
    let (_, other_desc) = subject(&s, repo).await;
    push_referrer(&s, repo, &other_desc, Some(SBOM), OCI_EMPTY, json!({})).await;
    push_referrer(
        &s,
        "ref/elsewhere",
        &subject_desc,
        Some(SBOM),
        OCI_EMPTY,
        json!({}),
    )
    .await;

    let (link, filters, manifests) =
        referrers(&s, &format!("/v2/{repo}/referrers/{subject_digest}")).await;
    assert_eq!(link, None);
    assert_eq!(filters, None);
    let mut expected = vec![
        json!({
            "mediaType": OCI_MANIFEST, "digest": sbom, "size": sbom_bytes.len(),
            "artifactType": SBOM, "annotations": sbom_annotations,
        }),
        json!({
            "mediaType": OCI_MANIFEST, "digest": sig, "size": sig_bytes.len(),
            "artifactType": SIG_CONFIG,
            "annotations": { "org.example.signature.fingerprint": "abcd" },
        }),
        json!({
            "mediaType": OCI_INDEX, "digest": index_digest, "size": index.len(),
            "annotations": { "kind": "bundle" },
        }),
    ];
    let mut got = manifests.clone();
    let key = |v: &Value| v["digest"].as_str().unwrap().to_owned();
    expected.sort_by_key(key);
    got.sort_by_key(key);
    assert_eq!(got, expected);
}

/// end-12b: `?artifactType=` keeps only that type and says so with
/// `OCI-Filters-Applied: artifactType`, also when nothing matches.
#[tokio::test]
async fn artifact_type_filter() {
    let s = TestServer::start().await;
    let repo = "ref/filter";
    let (subject_digest, subject_desc) = subject(&s, repo).await;
    let (sbom, _) = push_referrer(&s, repo, &subject_desc, Some(SBOM), OCI_EMPTY, json!({})).await;
    push_referrer(&s, repo, &subject_desc, None, SIG_CONFIG, json!({})).await;

    let base = format!("/v2/{repo}/referrers/{subject_digest}");
    let sbom_query = query_value(SBOM);
    let (_, filters, manifests) = referrers(&s, &format!("{base}?artifactType={sbom_query}")).await;
    assert_eq!(filters.as_deref(), Some("artifactType"));
    assert_eq!(digests(&manifests), [sbom]);
    assert_eq!(manifests[0]["artifactType"], SBOM);

    // The config media type counts as the artifact type of a manifest without one.
    let sig = query_value(SIG_CONFIG);
    let (_, filters, manifests) = referrers(&s, &format!("{base}?artifactType={sig}")).await;
    assert_eq!(filters.as_deref(), Some("artifactType"));
    assert_eq!(manifests.len(), 1);
    assert_eq!(manifests[0]["artifactType"], SIG_CONFIG);

    let (_, filters, manifests) =
        referrers(&s, &format!("{base}?artifactType=application/vnd.none")).await;
    assert_eq!(filters.as_deref(), Some("artifactType"));
    assert!(manifests.is_empty());

    let (_, filters, manifests) = referrers(&s, &base).await;
    assert_eq!(filters, None);
    assert_eq!(manifests.len(), 2);
}

/// Walks Link headers from `path`; returns each page's referrer digests.
async fn pages(s: &TestServer, path: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut next = Some(path.to_owned());
    while let Some(path) = next.take() {
        assert!(out.len() < 100, "pagination does not end");
        let (link, _, manifests) = referrers(s, &path).await;
        next = link.map(|l| next_link(&l));
        out.push(digests(&manifests));
    }
    out
}

/// "A Link header MUST be included in the response when the descriptor list cannot be
/// returned in a single manifest": with `n`, pages link on; following them returns every
/// referrer once, and a filter is kept across pages.
#[tokio::test]
async fn pagination_with_n() {
    let s = TestServer::start().await;
    let repo = "ref/pages";
    let (subject_digest, subject_desc) = subject(&s, repo).await;
    let mut sboms = Vec::new();
    let mut all = Vec::new();
    for i in 0..5 {
        let (t, c) = if i % 2 == 0 {
            (Some(SBOM), OCI_EMPTY)
        } else {
            (None, SIG_CONFIG)
        };
        let (digest, _) =
            push_referrer(&s, repo, &subject_desc, t, c, json!({ "i": i.to_string() })).await;
        if t.is_some() {
            sboms.push(digest.clone());
        }
        all.push(digest);
    }
    all.sort();
    sboms.sort();
    let base = format!("/v2/{repo}/referrers/{subject_digest}");

    let (link, _, manifests) = referrers(&s, &format!("{base}?n=2")).await;
    assert_eq!(manifests.len(), 2);
    let link = link.expect("a Link while more remain");
    assert!(next_link(&link).starts_with(&base), "{link}");

    let got = pages(&s, &format!("{base}?n=2")).await;
    assert_eq!(got.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
    let mut flat = got.concat();
    flat.sort();
    assert_eq!(flat, all);

    let got = pages(&s, &format!("{base}?n=1&artifactType={SBOM}")).await;
    assert_eq!(got.len(), 3);
    let mut flat = got.concat();
    flat.sort();
    assert_eq!(flat, sboms);

    let (link, _, manifests) = referrers(&s, &format!("{base}?n=0")).await;
    assert!(manifests.is_empty());
    assert_eq!(link, None);
}

/// A deleted referrer leaves the list.
#[tokio::test]
async fn deleted_referrer_disappears() {
    let s = TestServer::start().await;
    let repo = "ref/deleted";
    let (subject_digest, subject_desc) = subject(&s, repo).await;
    let (a, _) = push_referrer(&s, repo, &subject_desc, Some(SBOM), OCI_EMPTY, json!({})).await;
    let (b, _) = push_referrer(&s, repo, &subject_desc, None, SIG_CONFIG, json!({})).await;
    let resp = s.delete(&format!("/v2/{repo}/manifests/{a}")).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let (_, _, manifests) = referrers(&s, &format!("/v2/{repo}/referrers/{subject_digest}")).await;
    assert_eq!(digests(&manifests), [b]);
}

/// "If the request is invalid, such as a <digest> with an invalid syntax, a 400 Bad Request
/// MUST be returned."
#[tokio::test]
async fn invalid_digest_is_400() {
    let s = TestServer::start().await;
    for digest in ["sha256:abc", "latest", "sha256:ZZZ"] {
        let resp = s.get(&format!("/v2/ref/bad/referrers/{digest}")).await;
        assert_error(resp, 400, "DIGEST_INVALID").await;
    }
}
