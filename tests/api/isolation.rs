//! Repository isolation (invariant 3 of `registry`): a blob or manifest is served from a
//! repository only through that repository's own link to it, pushed there or mounted.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::{
    OCI_INDEX, OCI_MANIFEST, TestServer, assert_error, header, image_config, json_body, strings,
};

/// A blob pushed to A is 404 BLOB_UNKNOWN through B (GET, HEAD, ranged GET, DELETE), even
/// though B exists and the bytes are in the store.
#[tokio::test]
async fn blob_of_a_is_unknown_in_b() {
    let s = TestServer::start().await;
    let digest = s.push_blob("iso/a", b"private to a").await;
    s.push_blob("iso/b", b"b's own blob").await;
    let in_b = format!("/v2/iso/b/blobs/{digest}");
    assert_error(s.get(&in_b).await, 404, "BLOB_UNKNOWN").await;
    assert_eq!(s.head(&in_b).await.status(), StatusCode::NOT_FOUND);
    let resp = s
        .req(Method::GET, &in_b)
        .header("range", "bytes=0-3")
        .send()
        .await
        .unwrap();
    assert_error(resp, 404, "BLOB_UNKNOWN").await;
    assert_error(s.delete(&in_b).await, 404, "BLOB_UNKNOWN").await;
    // Still there in A.
    let resp = s.get(&format!("/v2/iso/a/blobs/{digest}")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), b"private to a");
}

/// A manifest in B naming A's blobs is MANIFEST_BLOB_UNKNOWN until they are mounted from A;
/// then the same bytes are accepted and the blobs are served from B.
#[tokio::test]
async fn manifest_in_b_needs_mounted_blobs() {
    let s = TestServer::start().await;
    let config = image_config("linux", "amd64", None);
    let (_, manifest) = s
        .push_image_with("iso/src", "v1", &config, &[b"layer of a"])
        .await;

    let resp = s
        .put_manifest("iso/dst", "v1", Some(OCI_MANIFEST), &manifest)
        .await;
    assert_error(resp, 400, "MANIFEST_BLOB_UNKNOWN").await;

    for blob in [config.as_slice(), b"layer of a"] {
        let digest = crate::common::sha256(blob);
        let resp = s
            .req(
                Method::POST,
                &format!("/v2/iso/dst/blobs/uploads/?mount={digest}&from=iso/src"),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        assert_eq!(
            header(&resp, "docker-content-digest").as_deref(),
            Some(digest.as_str())
        );
    }
    s.put_manifest_ok("iso/dst", "v1", OCI_MANIFEST, &manifest)
        .await;
    let resp = s.get("/v2/iso/dst/manifests/v1").await;
    assert_eq!(resp.bytes().await.unwrap(), manifest);
    let layer = crate::common::sha256(b"layer of a");
    let resp = s.get(&format!("/v2/iso/dst/blobs/{layer}")).await;
    assert_eq!(resp.bytes().await.unwrap().as_ref(), b"layer of a");
}

/// Manifests and tags of A are not visible through B, and an index in B cannot name A's
/// manifests as children.
#[tokio::test]
async fn manifests_and_tags_are_per_repository() {
    let s = TestServer::start().await;
    let (digest, manifest) = s.push_image("iso/one", "v1", &[b"one"]).await;
    s.push_image("iso/two", "other", &[b"two"]).await;
    for reference in ["v1", digest.as_str()] {
        let path = format!("/v2/iso/two/manifests/{reference}");
        assert_error(s.get(&path).await, 404, "MANIFEST_UNKNOWN").await;
        assert_eq!(s.head(&path).await.status(), StatusCode::NOT_FOUND);
        assert_error(s.delete(&path).await, 404, "MANIFEST_UNKNOWN").await;
    }
    let tags = json_body(s.get("/v2/iso/two/tags/list").await).await;
    assert_eq!(strings(&tags["tags"]), ["other"]);

    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{ "mediaType": OCI_MANIFEST, "digest": digest, "size": manifest.len() }],
    }))
    .unwrap();
    let resp = s
        .put_manifest("iso/two", "multi", Some(OCI_INDEX), &index)
        .await;
    assert_error(resp, 400, "MANIFEST_BLOB_UNKNOWN").await;
    // In A the same index is fine.
    s.put_manifest_ok("iso/one", "multi", OCI_INDEX, &index)
        .await;
    // A is untouched by B's deletes.
    let resp = s.get("/v2/iso/one/manifests/v1").await;
    assert_eq!(resp.status(), StatusCode::OK);
}

/// Referrers are listed per repository too.
#[tokio::test]
async fn referrers_are_per_repository() {
    let s = TestServer::start().await;
    let (digest, manifest) = s.push_image("iso/subject", "v1", &[b"s"]).await;
    let config = b"{}";
    s.push_blob("iso/subject", config).await;
    let referrer = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example",
        "config": crate::common::descriptor("application/vnd.oci.empty.v1+json", config),
        "layers": [],
        "subject": { "mediaType": OCI_MANIFEST, "digest": digest, "size": manifest.len() },
    }))
    .unwrap();
    s.put_manifest_ok("iso/subject", "ref", OCI_MANIFEST, &referrer)
        .await;
    let here = json_body(s.get(&format!("/v2/iso/subject/referrers/{digest}")).await).await;
    assert_eq!(here["manifests"].as_array().unwrap().len(), 1);
    let there = json_body(s.get(&format!("/v2/iso/other/referrers/{digest}")).await).await;
    assert_eq!(there["manifests"], json!([]));
}
