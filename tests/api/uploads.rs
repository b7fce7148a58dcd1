//! Blob uploads: POST (end-4a, end-4b), PATCH (end-5), PUT (end-6), status (end-13),
//! cancel, and cross-repository mounts (end-11).

use bytes::Bytes;
use reqwest::{Body, Method, Response, StatusCode};

use crate::common::{
    TestServer, assert_error, header, random_bytes, sha256, sha512, unknown_digest, with_digest,
};

async fn patch(s: &TestServer, location: &str, range: Option<&str>, body: &[u8]) -> Response {
    let mut req = s
        .client
        .patch(location)
        .header("content-type", "application/octet-stream")
        .body(body.to_vec());
    if let Some(r) = range {
        req = req.header("content-range", r);
    }
    req.send().await.expect("PATCH")
}

async fn put(s: &TestServer, location: &str, digest: &str, body: &[u8]) -> Response {
    s.client
        .put(with_digest(location, digest))
        .header("content-type", "application/octet-stream")
        .body(body.to_vec())
        .send()
        .await
        .expect("PUT")
}

async fn status(s: &TestServer, location: &str) -> Response {
    s.client.get(location).send().await.expect("GET status")
}

/// The session id at the end of an upload `location`.
fn session_id(location: &str) -> &str {
    let path = location.split('?').next().unwrap_or(location);
    path.rsplit('/').next().unwrap_or_default()
}

async fn assert_blob(s: &TestServer, repo: &str, digest: &str, data: &[u8]) {
    let resp = s.get(&format!("/v2/{repo}/blobs/{digest}")).await;
    assert_eq!(resp.status(), StatusCode::OK, "GET {repo}@{digest}");
    assert_eq!(
        header(&resp, "docker-content-digest").as_deref(),
        Some(digest)
    );
    assert_eq!(resp.bytes().await.unwrap().as_ref(), data);
}

async fn assert_no_blob(s: &TestServer, repo: &str, digest: &str) {
    let resp = s.head(&format!("/v2/{repo}/blobs/{digest}")).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND, "HEAD {repo}@{digest}");
}

/// A completed upload answers 201 with the blob's Location and Docker-Content-Digest.
fn assert_created(s: &TestServer, resp: &Response, repo: &str, digest: &str) {
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(
        s.location(resp),
        s.url(&format!("/v2/{repo}/blobs/{digest}"))
    );
    assert_eq!(
        header(resp, "docker-content-digest").as_deref(),
        Some(digest)
    );
}

/// end-4a: 202 with a Location holding a UUID, Docker-Upload-UUID naming it, and Range.
#[tokio::test]
async fn post_opens_a_session() {
    let s = TestServer::start().await;
    let resp = s
        .req(Method::POST, "/v2/up/start/blobs/uploads/")
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let location = s.location(&resp);
    let id = session_id(&location).to_owned();
    assert!(
        location.starts_with(&s.url("/v2/up/start/blobs/uploads/")),
        "{location}"
    );
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id} is not a UUID");
    assert_eq!(header(&resp, "docker-upload-uuid"), Some(id.clone()));
    assert_eq!(header(&resp, "range").as_deref(), Some("0-0"));
    // end-13 on the fresh session.
    let resp = status(&s, &location).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(s.location(&resp), location);
    assert_eq!(header(&resp, "docker-upload-uuid"), Some(id));
    // Every session is new.
    let other = s.start_upload("up/start").await;
    assert_ne!(other, location);
}

/// end-4b: a single POST with ?digest= and the body stores the blob (201).
#[tokio::test]
async fn monolithic_post() {
    let s = TestServer::start().await;
    let data = b"monolithic blob";
    let digest = sha256(data);
    let resp = s
        .req(
            Method::POST,
            &format!("/v2/up/mono/blobs/uploads/?digest={digest}"),
        )
        .header("content-type", "application/octet-stream")
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_created(&s, &resp, "up/mono", &digest);
    assert_blob(&s, "up/mono", &digest, data).await;
}

/// end-4a then end-6: POST, then PUT ?digest= with the whole body.
#[tokio::test]
async fn post_then_put() {
    let s = TestServer::start().await;
    let data = random_bytes(5000);
    let digest = sha256(&data);
    let location = s.start_upload("up/postput").await;
    let resp = put(&s, &location, &digest, &data).await;
    assert_created(&s, &resp, "up/postput", &digest);
    assert_blob(&s, "up/postput", &digest, &data).await;
    // The session is over.
    assert_error(status(&s, &location).await, 404, "BLOB_UPLOAD_UNKNOWN").await;
}

/// end-5 and end-13: three chunks with Content-Range, each 202 with the Range so far; every
/// request goes to the ORIGINAL Location, which stays valid until the PUT.
#[tokio::test]
async fn chunked_upload_with_content_range() {
    let s = TestServer::start().await;
    let data = random_bytes(30);
    let digest = sha256(&data);
    let location = s.start_upload("up/chunked").await;
    for (start, end) in [(0usize, 9usize), (10, 19), (20, 29)] {
        let resp = patch(
            &s,
            &location,
            Some(&format!("{start}-{end}")),
            &data[start..=end],
        )
        .await;
        assert_eq!(resp.status(), StatusCode::ACCEPTED, "chunk {start}-{end}");
        assert_eq!(header(&resp, "range"), Some(format!("0-{end}")));
        assert_eq!(
            header(&resp, "docker-upload-uuid").as_deref(),
            Some(session_id(&location))
        );
        assert!(header(&resp, "location").is_some());

        let resp = status(&s, &location).await;
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
        assert_eq!(header(&resp, "range"), Some(format!("0-{end}")));
        assert_eq!(s.location(&resp), location);
    }
    let resp = put(&s, &location, &digest, b"").await;
    assert_created(&s, &resp, "up/chunked", &digest);
    assert_blob(&s, "up/chunked", &digest, &data).await;
}

/// The Location returned by each PATCH works too (spec: "Each consecutive chunk upload SHOULD
/// use the <location> provided in the response to the previous chunk upload"), and the last
/// chunk may ride on the closing PUT.
#[tokio::test]
async fn chunked_upload_following_locations_with_final_chunk_in_put() {
    let s = TestServer::start().await;
    let data = random_bytes(3000);
    let digest = sha256(&data);
    let mut location = s.start_upload("up/follow").await;
    for (start, end) in [(0usize, 999usize), (1000, 1999)] {
        let resp = patch(
            &s,
            &location,
            Some(&format!("{start}-{end}")),
            &data[start..=end],
        )
        .await;
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        location = s.location(&resp);
    }
    let resp = put(&s, &location, &digest, &data[2000..]).await;
    assert_created(&s, &resp, "up/follow", &digest);
    assert_blob(&s, "up/follow", &digest, &data).await;
}

/// end-5: a chunk that does not start at the current end (out of order, repeated, or
/// overlapping) is 416 BLOB_UPLOAD_INVALID; the session keeps its bytes and completes.
#[tokio::test]
async fn out_of_order_chunk_is_416_and_session_survives() {
    let s = TestServer::start().await;
    let data = random_bytes(30);
    let digest = sha256(&data);
    let location = s.start_upload("up/order").await;
    for (start, end) in [(0usize, 9usize), (10, 19)] {
        let resp = patch(
            &s,
            &location,
            Some(&format!("{start}-{end}")),
            &data[start..=end],
        )
        .await;
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
    }
    // Skipping ahead, repeating the first chunk, overlapping the last one.
    for (start, end) in [(25usize, 29usize), (0, 9), (15, 24)] {
        let resp = patch(
            &s,
            &location,
            Some(&format!("{start}-{end}")),
            &data[start..=end],
        )
        .await;
        assert_eq!(
            resp.status(),
            StatusCode::RANGE_NOT_SATISFIABLE,
            "chunk {start}-{end}"
        );
        assert_eq!(header(&resp, "range").as_deref(), Some("0-19"));
        assert_eq!(
            crate::common::error_code(resp).await,
            "BLOB_UPLOAD_INVALID",
            "chunk {start}-{end}"
        );
        let resp = status(&s, &location).await;
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
        assert_eq!(header(&resp, "range").as_deref(), Some("0-19"));
    }
    let resp = patch(&s, &location, Some("20-29"), &data[20..]).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&resp, "range").as_deref(), Some("0-29"));
    let resp = put(&s, &location, &digest, b"").await;
    assert_created(&s, &resp, "up/order", &digest);
    assert_blob(&s, "up/order", &digest, &data).await;
}

/// end-6 with a last chunk: a `Content-Range` that does not start where the session ends (or
/// declares another length than the body has) is refused like an out-of-order PATCH, with
/// 416 and the session's `Range`; the session keeps its bytes and completes afterwards.
#[tokio::test]
async fn closing_chunk_out_of_order_is_416_and_session_survives() {
    let s = TestServer::start().await;
    let data = random_bytes(30);
    let digest = sha256(&data);
    let location = s.start_upload("up/closing").await;
    let resp = patch(&s, &location, Some("0-9"), &data[..10]).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    for (start, end) in [(15usize, 29usize), (0, 29), (5, 29)] {
        let resp = s
            .client
            .put(with_digest(&location, &digest))
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("{start}-{end}"))
            .body(data[start..=end].to_vec())
            .send()
            .await
            .expect("PUT");
        assert_eq!(
            resp.status(),
            StatusCode::RANGE_NOT_SATISFIABLE,
            "closing chunk {start}-{end}"
        );
        assert_eq!(header(&resp, "range").as_deref(), Some("0-9"));
        let resp = status(&s, &location).await;
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
        assert_eq!(header(&resp, "range").as_deref(), Some("0-9"));
    }
    // A right start with a wrong length is the client's size mistake; nothing is kept.
    let resp = s
        .client
        .put(with_digest(&location, &digest))
        .header("content-range", "10-39")
        .body(data[10..].to_vec())
        .send()
        .await
        .expect("PUT");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        header(&status(&s, &location).await, "range").as_deref(),
        Some("0-9")
    );
    let resp = s
        .client
        .put(with_digest(&location, &digest))
        .header("content-range", "10-29")
        .body(data[10..].to_vec())
        .send()
        .await
        .expect("PUT");
    assert_created(&s, &resp, "up/closing", &digest);
    assert_blob(&s, "up/closing", &digest, &data).await;
}

/// Two chunks racing for the same offset: exactly one is taken, the other is 416, and the
/// session holds the winner's bytes once.
#[tokio::test]
async fn racing_chunks_one_wins() {
    let s = TestServer::start().await;
    let data = random_bytes(10);
    let digest = sha256(&data);
    let location = s.start_upload("up/race").await;
    let (a, b) = tokio::join!(
        patch(&s, &location, Some("0-9"), &data),
        patch(&s, &location, Some("0-9"), &data)
    );
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort();
    assert_eq!(statuses, [202, 416]);
    let resp = status(&s, &location).await;
    assert_eq!(header(&resp, "range").as_deref(), Some("0-9"));
    let resp = put(&s, &location, &digest, b"").await;
    assert_created(&s, &resp, "up/race", &digest);
    assert_blob(&s, "up/race", &digest, &data).await;
}

/// A Content-Range that disagrees with the body length is refused with SIZE_INVALID; the
/// status endpoint then tells the client the real offset.
#[tokio::test]
async fn content_range_length_mismatch() {
    let s = TestServer::start().await;
    let location = s.start_upload("up/mismatch").await;
    let resp = patch(&s, &location, Some("0-9"), b"12345").await;
    assert_error(resp, 400, "SIZE_INVALID").await;
    // The chunk was dropped: the session is where it was, and goes on from there.
    let resp = status(&s, &location).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&resp, "range").as_deref(), Some("0-0"));
    let resp = patch(&s, &location, Some("0-4"), b"12345").await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&resp, "range").as_deref(), Some("0-4"));
}

/// A Content-Range declaring more bytes than a u64 length can hold (`0-18446744073709551615`)
/// is a client mistake like any other length mismatch: a 4xx answer, never a dropped
/// connection.
#[tokio::test]
async fn content_range_overflowing_length() {
    let s = TestServer::start().await;
    let location = s.start_upload("up/overflow").await;
    let range = format!("0-{}", u64::MAX);
    let resp = patch(&s, &location, Some(&range), b"abc").await;
    assert_error(resp, 400, "SIZE_INVALID").await;
    // The mismatched chunk was not kept: the session still holds nothing.
    let resp = status(&s, &location).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&resp, "range").as_deref(), Some("0-0"));
    assert_eq!(s.get("/v2/").await.status(), StatusCode::OK);
}

/// A malformed Content-Range is 400 BLOB_UPLOAD_INVALID and changes nothing.
#[tokio::test]
async fn malformed_content_range() {
    let s = TestServer::start().await;
    let location = s.start_upload("up/badrange").await;
    for range in ["garbage", "5-", "-5", "a-b"] {
        let resp = patch(&s, &location, Some(range), b"xxxxx").await;
        assert_error(resp, 400, "BLOB_UPLOAD_INVALID").await;
    }
    let resp = patch(&s, &location, Some("0-4"), b"hello").await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&resp, "range").as_deref(), Some("0-4"));
}

/// end-5 without Content-Range, streamed with chunked transfer encoding (as docker does):
/// each PATCH appends, and the PUT completes.
#[tokio::test]
async fn streamed_patch_without_content_range() {
    let s = TestServer::start().await;
    let data = random_bytes(2 * 1024 * 1024 + 333);
    let digest = sha256(&data);
    let location = s.start_upload("up/stream").await;
    let (first, second) = data.split_at(1024 * 1024 + 100);
    let mut offset = 0;
    for part in [first, second] {
        let pieces: Vec<Result<Bytes, std::io::Error>> = part
            .chunks(64 * 1024 + 7)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let resp = s
            .client
            .patch(&location)
            .header("content-type", "application/octet-stream")
            .body(Body::wrap_stream(futures::stream::iter(pieces)))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        offset += part.len();
        assert_eq!(header(&resp, "range"), Some(format!("0-{}", offset - 1)));
    }
    let resp = put(&s, &location, &digest, b"").await;
    assert_created(&s, &resp, "up/stream", &digest);
    assert_blob(&s, "up/stream", &digest, &data).await;
}

/// A PUT whose digest does not match the content is 400 DIGEST_INVALID and the blob (under
/// either digest) stays unknown: for a monolithic POST, a POST+PUT, a one-chunk session and
/// a several-chunk session.
#[tokio::test]
async fn wrong_digest_creates_nothing() {
    let s = TestServer::start().await;
    let repo = "up/wrong";
    let data = random_bytes(4000);
    let real = sha256(&data);
    let wrong = sha256(b"not the content");

    // end-4b
    let resp = s
        .req(
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/?digest={wrong}"),
        )
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_error(resp, 400, "DIGEST_INVALID").await;
    assert_no_blob(&s, repo, &wrong).await;
    assert_no_blob(&s, repo, &real).await;

    // end-4a + end-6 with the body on the PUT
    let location = s.start_upload(repo).await;
    assert_error(
        put(&s, &location, &wrong, &data).await,
        400,
        "DIGEST_INVALID",
    )
    .await;
    assert_no_blob(&s, repo, &wrong).await;
    assert_no_blob(&s, repo, &real).await;

    // one PATCH, then PUT
    let location = s.start_upload(repo).await;
    let resp = patch(&s, &location, Some("0-3999"), &data).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_error(put(&s, &location, &wrong, b"").await, 400, "DIGEST_INVALID").await;
    assert_no_blob(&s, repo, &wrong).await;
    assert_no_blob(&s, repo, &real).await;

    // several PATCHes, then PUT with a last chunk
    let location = s.start_upload(repo).await;
    for (start, end) in [(0usize, 999usize), (1000, 2999)] {
        let resp = patch(
            &s,
            &location,
            Some(&format!("{start}-{end}")),
            &data[start..=end],
        )
        .await;
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
    }
    let resp = put(&s, &location, &wrong, &data[3000..]).await;
    assert_error(resp, 400, "DIGEST_INVALID").await;
    assert_no_blob(&s, repo, &wrong).await;
    assert_no_blob(&s, repo, &real).await;

    // The right digest still goes through afterwards.
    s.push_blob(repo, &data).await;
    assert_blob(&s, repo, &real, &data).await;
}

/// end-6 needs the digest: a PUT without ?digest= or with a malformed one is 400
/// DIGEST_INVALID.
#[tokio::test]
async fn put_without_valid_digest() {
    let s = TestServer::start().await;
    let location = s.start_upload("up/nodigest").await;
    let resp = s.client.put(&location).body("abc").send().await.unwrap();
    assert_error(resp, 400, "DIGEST_INVALID").await;
    for bad in [
        "sha256:abc",
        "md5:d41d8cd98f00b204e9800998ecf8427e",
        "nonsense",
    ] {
        assert_error(put(&s, &location, bad, b"abc").await, 400, "DIGEST_INVALID").await;
    }
}

/// sha512 uploads through chunked sessions, one part and several (no running sha256 helps).
#[tokio::test]
async fn sha512_chunked_upload() {
    let s = TestServer::start().await;
    let data = random_bytes(3000);
    let digest = sha512(&data);
    let location = s.start_upload("up/sha512").await;
    let resp = patch(&s, &location, Some("0-2999"), &data).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_created(
        &s,
        &put(&s, &location, &digest, b"").await,
        "up/sha512",
        &digest,
    );
    assert_blob(&s, "up/sha512", &digest, &data).await;

    let data = random_bytes(3000);
    let digest = sha512(&data);
    let location = s.start_upload("up/sha512").await;
    let resp = patch(&s, &location, Some("0-1499"), &data[..1500]).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let resp = put(&s, &location, &digest, &data[1500..]).await;
    assert_created(&s, &resp, "up/sha512", &digest);
    assert_blob(&s, "up/sha512", &digest, &data).await;
}

/// Cancelling a session: DELETE is 204, then the session is 404 BLOB_UPLOAD_UNKNOWN for
/// status, PATCH, PUT and another DELETE.
#[tokio::test]
async fn cancel_session() {
    let s = TestServer::start().await;
    let location = s.start_upload("up/cancel").await;
    assert_eq!(
        patch(&s, &location, Some("0-4"), b"hello").await.status(),
        StatusCode::ACCEPTED
    );
    let resp = s.client.delete(&location).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_error(status(&s, &location).await, 404, "BLOB_UPLOAD_UNKNOWN").await;
    assert_error(
        patch(&s, &location, Some("5-9"), b"world").await,
        404,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
    assert_error(
        put(&s, &location, &sha256(b"hello"), b"").await,
        404,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
    let resp = s.client.delete(&location).send().await.unwrap();
    assert_error(resp, 404, "BLOB_UPLOAD_UNKNOWN").await;
    assert_no_blob(&s, "up/cancel", &sha256(b"hello")).await;
}

/// Unknown and malformed session ids are 404 BLOB_UPLOAD_UNKNOWN on every upload method, and
/// a session is not reachable through another repository.
#[tokio::test]
async fn unknown_sessions() {
    let s = TestServer::start().await;
    let theirs = s.start_upload("up/theirs").await;
    let stranger = theirs.replace("/up/theirs/", "/up/stranger/");
    let unknown = s.url(&format!(
        "/v2/up/theirs/blobs/uploads/{}",
        uuid::Uuid::new_v4()
    ));
    let malformed = s.url("/v2/up/theirs/blobs/uploads/not-a-session");
    for location in [&unknown, &malformed, &stranger] {
        assert_error(status(&s, location).await, 404, "BLOB_UPLOAD_UNKNOWN").await;
        assert_error(
            patch(&s, location, Some("0-2"), b"abc").await,
            404,
            "BLOB_UPLOAD_UNKNOWN",
        )
        .await;
        assert_error(
            put(&s, location, &sha256(b"abc"), b"abc").await,
            404,
            "BLOB_UPLOAD_UNKNOWN",
        )
        .await;
        let resp = s.client.delete(location.as_str()).send().await.unwrap();
        assert_error(resp, 404, "BLOB_UPLOAD_UNKNOWN").await;
    }
    // The real session is untouched by all that.
    let resp = status(&s, &theirs).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&resp, "range").as_deref(), Some("0-0"));
}

/// A zero-length blob through every path: single POST, POST+PUT, and a session whose PATCH
/// carried nothing.
#[tokio::test]
async fn zero_length_blob() {
    let s = TestServer::start().await;
    let empty = sha256(b"");
    let resp = s
        .req(
            Method::POST,
            &format!("/v2/up/empty1/blobs/uploads/?digest={empty}"),
        )
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    assert_created(&s, &resp, "up/empty1", &empty);
    assert_blob(&s, "up/empty1", &empty, b"").await;

    let location = s.start_upload("up/empty2").await;
    assert_created(
        &s,
        &put(&s, &location, &empty, b"").await,
        "up/empty2",
        &empty,
    );
    assert_blob(&s, "up/empty2", &empty, b"").await;

    let location = s.start_upload("up/empty3").await;
    let resp = patch(&s, &location, None, b"").await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_created(
        &s,
        &put(&s, &location, &empty, b"").await,
        "up/empty3",
        &empty,
    );
    let resp = s.head(&format!("/v2/up/empty3/blobs/{empty}")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "content-length").as_deref(), Some("0"));
}

/// end-11: mounting a blob from a repository that holds it is 201 with the new Location and
/// Docker-Content-Digest, and the blob is then served from the target.
#[tokio::test]
async fn mount_with_from() {
    let s = TestServer::start().await;
    let digest = s.push_blob("mount/src", b"mountable").await;
    let resp = s
        .req(
            Method::POST,
            &format!("/v2/mount/dst/blobs/uploads/?mount={digest}&from=mount/src"),
        )
        .send()
        .await
        .unwrap();
    assert_created(&s, &resp, "mount/dst", &digest);
    assert_blob(&s, "mount/dst", &digest, b"mountable").await;
}

/// end-11 without `from` ("The registry MAY treat the from parameter as optional"): a blob
/// the registry holds elsewhere is mounted (201).
#[tokio::test]
async fn mount_without_from() {
    let s = TestServer::start().await;
    let digest = s.push_blob("mount/anywhere", b"found anyway").await;
    let resp = s
        .req(
            Method::POST,
            &format!("/v2/mount/nofrom/blobs/uploads/?mount={digest}"),
        )
        .send()
        .await
        .unwrap();
    assert_created(&s, &resp, "mount/nofrom", &digest);
    assert_blob(&s, "mount/nofrom", &digest, b"found anyway").await;
}

/// end-11 for a blob that cannot be mounted (unknown, or not in `from`) opens an ordinary
/// session (202 + Location), never 404, and that session completes the upload.
#[tokio::test]
async fn mount_of_unknown_blob_opens_a_session() {
    let s = TestServer::start().await;
    s.push_blob("mount/other", b"elsewhere").await;
    let data = b"uploaded after a failed mount";
    let digest = sha256(data);
    for from in ["&from=mount/other", "&from=mount/never", ""] {
        let resp = s
            .req(
                Method::POST,
                &format!("/v2/mount/target/blobs/uploads/?mount={digest}{from}"),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::ACCEPTED, "from {from:?}");
        let location = s.location(&resp);
        assert!(
            location.starts_with(&s.url("/v2/mount/target/blobs/uploads/")),
            "{location}"
        );
        assert_eq!(
            header(&resp, "docker-upload-uuid").as_deref(),
            Some(session_id(&location))
        );
        assert_no_blob(&s, "mount/target", &digest).await;
        if from.is_empty() {
            let resp = put(&s, &location, &digest, data).await;
            assert_created(&s, &resp, "mount/target", &digest);
        }
    }
    assert_blob(&s, "mount/target", &digest, data).await;
    // A blob that exists elsewhere but not in the named `from` is not mounted either.
    let elsewhere = sha256(b"elsewhere");
    let resp = s
        .req(
            Method::POST,
            &format!("/v2/mount/target/blobs/uploads/?mount={elsewhere}&from=mount/target"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_no_blob(&s, "mount/target", &elsewhere).await;
}

/// A request body that ends before its Content-Length creates nothing (bytes first, rows
/// second), and the server keeps serving.
#[tokio::test]
async fn truncated_body_creates_nothing() {
    let s = TestServer::start().await;
    let data = random_bytes(100);
    let digest = sha256(&data);

    // end-4b
    let answered = s
        .truncated_request(
            &format!("POST /v2/up/truncated/blobs/uploads/?digest={digest} HTTP/1.1"),
            &data[..50],
            100,
        )
        .await;
    assert!(answered.is_none_or(|st| st >= 400), "answered {answered:?}");
    assert_no_blob(&s, "up/truncated", &digest).await;

    // end-5: the session does not advance.
    let location = s.start_upload("up/truncated").await;
    let path = location.trim_start_matches(&s.base).to_owned();
    let answered = s
        .truncated_request(&format!("PATCH {path} HTTP/1.1"), &data[..50], 100)
        .await;
    assert!(answered.is_none_or(|st| st >= 400), "answered {answered:?}");
    let resp = patch(&s, &location, Some("0-99"), &data).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&resp, "range").as_deref(), Some("0-99"));

    // end-6 with the body on the PUT.
    let other = s.start_upload("up/truncated").await;
    let path = with_digest(other.trim_start_matches(&s.base), &digest);
    let answered = s
        .truncated_request(&format!("PUT {path} HTTP/1.1"), &data[..50], 100)
        .await;
    assert!(answered.is_none_or(|st| st >= 400), "answered {answered:?}");
    assert_no_blob(&s, "up/truncated", &digest).await;

    // The server still serves: finish the good session.
    let resp = put(&s, &location, &digest, b"").await;
    assert_created(&s, &resp, "up/truncated", &digest);
    assert_blob(&s, "up/truncated", &digest, &data).await;
    assert_eq!(s.get("/v2/").await.status(), StatusCode::OK);
}

/// Parallel pushes of the same blob (as clients do for shared layers) all succeed and leave
/// one intact blob.
#[tokio::test]
async fn concurrent_pushes_of_the_same_blob() {
    let s = TestServer::start().await;
    let data = random_bytes(200_000);
    let digest = sha256(&data);
    let pushes = (0..4).map(|i| {
        let (s, data, digest) = (&s, data.clone(), digest.clone());
        async move {
            let repo = format!("up/parallel{}", i % 2);
            let resp = s
                .req(
                    Method::POST,
                    &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
                )
                .body(data)
                .send()
                .await
                .unwrap();
            resp.status()
        }
    });
    let statuses = futures::future::join_all(pushes).await;
    assert!(
        statuses.iter().all(|st| *st == StatusCode::CREATED),
        "{statuses:?}"
    );
    assert_blob(&s, "up/parallel0", &digest, &data).await;
    assert_blob(&s, "up/parallel1", &digest, &data).await;
}

/// Malformed mount parameters are client errors with their own codes.
#[tokio::test]
async fn mount_with_bad_parameters() {
    let s = TestServer::start().await;
    let resp = s
        .req(
            Method::POST,
            "/v2/mount/bad/blobs/uploads/?mount=sha256:nothex&from=mount/src",
        )
        .send()
        .await
        .unwrap();
    assert_error(resp, 400, "DIGEST_INVALID").await;
    let resp = s
        .req(
            Method::POST,
            &format!(
                "/v2/mount/bad/blobs/uploads/?mount={}&from=Not/Valid",
                unknown_digest()
            ),
        )
        .send()
        .await
        .unwrap();
    assert_error(resp, 400, "NAME_INVALID").await;
}

/// A chunked session outlives a restart (which loses the running hash) and a chunk cut off
/// in the middle: it completes with exactly the acknowledged bytes, verified again from the
/// store, and a wrong digest is still refused.
#[tokio::test]
async fn chunked_session_survives_a_restart_and_a_cut_off_chunk() {
    let s = TestServer::start().await;
    let data = random_bytes(300);
    let digest = sha256(&data);
    let location = s.start_upload("up/resumed").await;
    let resp = patch(&s, &location, Some("0-99"), &data[..100]).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let other = s.start_upload("up/resumed").await;
    let resp = patch(&s, &other, Some("0-99"), &data[..100]).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);

    let (path, other_path) = (
        location.trim_start_matches(&s.base).to_owned(),
        other.trim_start_matches(&s.base).to_owned(),
    );
    let dir = s.stop().await;
    let s = TestServer::start_in(dir, |_| {}).await;
    let (location, other) = (s.url(&path), s.url(&other_path));
    let answered = s
        .truncated_request(&format!("PATCH {path} HTTP/1.1"), &data[100..150], 100)
        .await;
    assert!(answered.is_none_or(|st| st >= 400), "answered {answered:?}");
    let resp = status(&s, &location).await;
    assert_eq!(header(&resp, "range").as_deref(), Some("0-99"));
    let resp = patch(&s, &location, Some("100-199"), &data[100..200]).await;
    assert_eq!(header(&resp, "range").as_deref(), Some("0-199"));
    let resp = put(&s, &location, &digest, &data[200..]).await;
    assert_created(&s, &resp, "up/resumed", &digest);
    assert_blob(&s, "up/resumed", &digest, &data).await;

    // The other session holds the first 100 bytes only: they do not hash to the whole blob.
    let resp = put(&s, &other, &sha256(&data[..99]), b"").await;
    assert_error(resp, 400, "DIGEST_INVALID").await;
    assert_no_blob(&s, "up/resumed", &sha256(&data[..99])).await;
    assert_blob(&s, "up/resumed", &digest, &data).await;
}
