//! Blob reads (end-2, with `Range` per RFC 9110) and deletes (end-10).

use reqwest::{Method, StatusCode};

use crate::common::{
    TestServer, assert_error, error_code, header, random_bytes, sha256, sha512, unknown_digest,
};

const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz";

/// end-2: GET returns the bytes with their length and digest; HEAD the same headers.
#[tokio::test]
async fn get_and_head_blob() {
    let s = TestServer::start().await;
    let digest = s.push_blob("blobs/get", ALPHABET).await;
    let path = format!("/v2/blobs/get/blobs/{digest}");

    let resp = s.get(&path).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "content-length").as_deref(), Some("26"));
    assert_eq!(
        header(&resp, "docker-content-digest").as_deref(),
        Some(digest.as_str())
    );
    assert_eq!(resp.bytes().await.unwrap().as_ref(), ALPHABET);

    let resp = s.head(&path).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "content-length").as_deref(), Some("26"));
    assert_eq!(
        header(&resp, "docker-content-digest").as_deref(),
        Some(digest.as_str())
    );
    assert!(resp.bytes().await.unwrap().is_empty());
}

/// end-2: an unknown blob is 404 BLOB_UNKNOWN (HEAD: 404 without a body).
#[tokio::test]
async fn unknown_blob_is_404() {
    let s = TestServer::start().await;
    s.push_blob("blobs/unknown", b"something").await;
    let path = format!("/v2/blobs/unknown/blobs/{}", unknown_digest());
    assert_error(s.get(&path).await, 404, "BLOB_UNKNOWN").await;
    assert_eq!(s.head(&path).await.status(), StatusCode::NOT_FOUND);
    // A repository that does not exist at all answers the same.
    let path = format!("/v2/blobs/nowhere/blobs/{}", sha256(b"something"));
    assert_error(s.get(&path).await, 404, "BLOB_UNKNOWN").await;
}

async fn get_range(s: &TestServer, path: &str, range: &str) -> reqwest::Response {
    s.req(Method::GET, path)
        .header("range", range)
        .send()
        .await
        .unwrap()
}

/// end-2 with `Range` (spec: "A registry SHOULD support the Range request header"): 206 with
/// Content-Range and exactly the bytes asked for.
#[tokio::test]
async fn range_requests_return_206() {
    let s = TestServer::start().await;
    let digest = s.push_blob("blobs/range", ALPHABET).await;
    let path = format!("/v2/blobs/range/blobs/{digest}");
    let cases: [(&str, &str, &[u8]); 5] = [
        ("bytes=0-9", "bytes 0-9/26", b"abcdefghij"),
        ("bytes=5-", "bytes 5-25/26", b"fghijklmnopqrstuvwxyz"),
        ("bytes=-3", "bytes 23-25/26", b"xyz"),
        ("bytes=25-25", "bytes 25-25/26", b"z"),
        // A last position past the end is clamped to the end (RFC 9110 §14.1.2).
        ("bytes=20-100", "bytes 20-25/26", b"uvwxyz"),
    ];
    for (range, content_range, expected) in cases {
        let resp = get_range(&s, &path, range).await;
        assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            header(&resp, "content-range").as_deref(),
            Some(content_range),
            "{range}"
        );
        assert_eq!(
            header(&resp, "content-length"),
            Some(expected.len().to_string()),
            "{range}"
        );
        assert_eq!(
            header(&resp, "docker-content-digest").as_deref(),
            Some(digest.as_str())
        );
        assert_eq!(resp.bytes().await.unwrap().as_ref(), expected, "{range}");
    }
}

/// A range that lies outside the blob is 416 with `Content-Range: bytes */size`.
#[tokio::test]
async fn unsatisfiable_range_is_416() {
    let s = TestServer::start().await;
    let digest = s.push_blob("blobs/range416", ALPHABET).await;
    let path = format!("/v2/blobs/range416/blobs/{digest}");
    for range in ["bytes=26-", "bytes=30-40", "bytes=-0"] {
        let resp = get_range(&s, &path, range).await;
        assert_eq!(resp.status(), StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
        assert_eq!(
            header(&resp, "content-range").as_deref(),
            Some("bytes */26"),
            "{range}"
        );
        error_code(resp).await;
    }
    // Every range of an empty blob is unsatisfiable.
    let empty = s.push_blob("blobs/range416", b"").await;
    let resp = get_range(&s, &format!("/v2/blobs/range416/blobs/{empty}"), "bytes=0-").await;
    assert_eq!(resp.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(header(&resp, "content-range").as_deref(), Some("bytes */0"));
}

/// A Range header that is not one well-formed byte range (another unit, several ranges, the
/// last byte before the first, numbers that overflow) is ignored as RFC 9110 allows: 200
/// with the whole blob, never a 400 or a 5xx.
#[tokio::test]
async fn an_unparsable_or_inverted_range_is_ignored() {
    let s = TestServer::start().await;
    let digest = s.push_blob("blobs/badrange", ALPHABET).await;
    let path = format!("/v2/blobs/badrange/blobs/{digest}");
    let huge = format!("{}0", u64::MAX);
    for range in [
        "bytes=abc".to_owned(),
        "items=0-1".to_owned(),
        "bytes=-".to_owned(),
        "bytes=".to_owned(),
        "bytes=9-0".to_owned(),
        "bytes=500-0".to_owned(),
        "0-9".to_owned(),
        "bytes=0-1,3-4".to_owned(),
        format!("bytes=0-{huge}"),
    ] {
        let resp = get_range(&s, &path, &range).await;
        assert_eq!(resp.status(), StatusCode::OK, "{range}");
        assert_eq!(header(&resp, "content-range"), None, "{range}");
        assert_eq!(resp.bytes().await.unwrap().as_ref(), ALPHABET, "{range}");
    }
}

/// end-10: DELETE is 202; afterwards the blob is 404 BLOB_UNKNOWN, and a second DELETE too.
#[tokio::test]
async fn delete_blob() {
    let s = TestServer::start().await;
    let digest = s.push_blob("blobs/delete", b"doomed").await;
    let path = format!("/v2/blobs/delete/blobs/{digest}");
    let resp = s.delete(&path).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_error(s.get(&path).await, 404, "BLOB_UNKNOWN").await;
    assert_eq!(s.head(&path).await.status(), StatusCode::NOT_FOUND);
    assert_error(s.delete(&path).await, 404, "BLOB_UNKNOWN").await;
    // Pushing it again brings it back.
    s.push_blob("blobs/delete", b"doomed").await;
    let resp = s.get(&path).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), b"doomed");
}

/// Deleting a blob from one repository leaves it in another that holds it too.
#[tokio::test]
async fn delete_is_per_repository() {
    let s = TestServer::start().await;
    let digest = s.push_blob("blobs/one", b"shared bytes").await;
    s.push_blob("blobs/two", b"shared bytes").await;
    let resp = s.delete(&format!("/v2/blobs/one/blobs/{digest}")).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let resp = s.get(&format!("/v2/blobs/two/blobs/{digest}")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), b"shared bytes");
}

/// sha512 is a registered algorithm (image-spec descriptor.md): push and pull by it.
#[tokio::test]
async fn sha512_blob() {
    let s = TestServer::start().await;
    let data = random_bytes(1000);
    let digest = sha512(&data);
    let resp = s
        .req(
            Method::POST,
            &format!("/v2/blobs/sha512/blobs/uploads/?digest={digest}"),
        )
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(
        header(&resp, "docker-content-digest").as_deref(),
        Some(digest.as_str())
    );
    let path = format!("/v2/blobs/sha512/blobs/{digest}");
    let resp = s.get(&path).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        header(&resp, "docker-content-digest").as_deref(),
        Some(digest.as_str())
    );
    assert_eq!(resp.bytes().await.unwrap(), data);
    let resp = get_range(&s, &path, "bytes=10-19").await;
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &data[10..20]);
    // The sha256 of the same bytes is a different blob, which was never pushed.
    assert_eq!(
        s.head(&format!("/v2/blobs/sha512/blobs/{}", sha256(&data)))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
}

/// A blob larger than the server's in-memory threshold streams in and out intact, and ranges
/// inside it are exact.
#[tokio::test]
async fn large_blob_round_trip() {
    let s = TestServer::start().await;
    let data = random_bytes(3 * 1024 * 1024 + 17);
    let digest = s.push_blob("blobs/large", &data).await;
    let path = format!("/v2/blobs/large/blobs/{digest}");
    let resp = s.get(&path).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        header(&resp, "content-length"),
        Some(data.len().to_string())
    );
    let body = resp.bytes().await.unwrap();
    assert_eq!(sha256(&body), digest);
    let start = 1024 * 1024 - 5;
    let resp = get_range(&s, &path, &format!("bytes={start}-{}", start + 99)).await;
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        header(&resp, "content-range"),
        Some(format!("bytes {start}-{}/{}", start + 99, data.len()))
    );
    assert_eq!(
        resp.bytes().await.unwrap().as_ref(),
        &data[start..start + 100]
    );
}

/// A zero-length blob is a blob: 200 with Content-Length 0 and an empty body.
#[tokio::test]
async fn zero_length_blob_reads_back() {
    let s = TestServer::start().await;
    let digest = s.push_blob("blobs/empty", b"").await;
    assert_eq!(
        digest,
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    let path = format!("/v2/blobs/empty/blobs/{digest}");
    let resp = s.get(&path).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "content-length").as_deref(), Some("0"));
    assert!(resp.bytes().await.unwrap().is_empty());
    let resp = s.head(&path).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "content-length").as_deref(), Some("0"));
}

/// With `storage.redirect`, a blob GET answers 307 to a presigned URL of the object store,
/// which serves the same bytes (and ranges) without the registry; HEAD stays local, and a
/// repository without the blob gets no URL. Needs a cloud store (`BERTH_TEST_STORAGE_URL`).
#[tokio::test]
#[ignore = "needs a cloud blob store: BERTH_TEST_STORAGE_URL (scripts/test.sh starts it)"]
async fn redirects_blob_gets_to_presigned_urls() {
    std::env::var("BERTH_TEST_STORAGE_URL")
        .expect("BERTH_TEST_STORAGE_URL names the cloud store this test runs on");
    let s = TestServer::start_with(|c| c.storage.redirect = true).await;
    let bytes = random_bytes(100_000);
    let digest = s.push_blob("redirect/repo", &bytes).await;
    let path = format!("/v2/redirect/repo/blobs/{digest}");
    let direct = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    let resp = direct.get(s.url(&path)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(
        header(&resp, "docker-content-digest").as_deref(),
        Some(digest.as_str())
    );
    let location = header(&resp, "location").expect("Location");
    assert!(!location.starts_with(&s.url("/")), "{location}");
    let from_store = direct.get(&location).send().await.unwrap();
    assert_eq!(from_store.status(), StatusCode::OK);
    assert_eq!(from_store.bytes().await.unwrap().as_ref(), bytes.as_slice());

    // A client following the redirect with a Range gets that range from the store.
    let ranged = s
        .req(Method::GET, &path)
        .header("range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(ranged.bytes().await.unwrap().as_ref(), &bytes[10..20]);

    let head = s.head(&path).await;
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(header(&head, "content-length").as_deref(), Some("100000"));

    let elsewhere = direct
        .get(s.url(&format!("/v2/redirect/other/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(elsewhere).await, "BLOB_UNKNOWN");
}
