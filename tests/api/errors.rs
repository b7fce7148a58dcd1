//! Errors (spec.md, "Error Codes"): unknown endpoints, wrong methods, invalid names and
//! digests, path traversal; every error body is JSON with spec codes, and no client mistake
//! produces a 5xx.

use std::path::Path;

use berth::config::{DatabaseConfig, StorageConfig};
use reqwest::{Method, StatusCode};

use crate::common::{OCI_MANIFEST, TestServer, assert_error, error_code, sha256, unknown_digest};

/// A path that is no endpoint is 404 with a spec code in a JSON body.
#[tokio::test]
async fn unknown_endpoint_is_404() {
    let s = TestServer::start().await;
    for path in [
        "/v2/a/nothing",
        "/v2/a/blobs",
        "/v2/a/manifests",
        "/v2/tags/list",
        "/v2/_catalog/extra",
        "/v2/a/b/c/d",
    ] {
        let resp = s.get(path).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
        error_code(resp).await;
    }
}

/// A known endpoint with a method it does not take is 405 with a spec code.
#[tokio::test]
async fn wrong_method_is_405() {
    let s = TestServer::start().await;
    let digest = unknown_digest();
    let requests = [
        (Method::PATCH, "/v2/a/manifests/latest".to_owned()),
        (Method::POST, "/v2/a/manifests/latest".to_owned()),
        (Method::POST, "/v2/a/tags/list".to_owned()),
        (Method::DELETE, "/v2/a/tags/list".to_owned()),
        (Method::PUT, "/v2/".to_owned()),
        (Method::DELETE, "/v2/_catalog".to_owned()),
        (Method::PUT, format!("/v2/a/blobs/{digest}")),
        (Method::PATCH, format!("/v2/a/blobs/{digest}")),
        (Method::PUT, format!("/v2/a/referrers/{digest}")),
        (Method::GET, "/v2/a/blobs/uploads/".to_owned()),
        (Method::DELETE, "/v2/a/blobs/uploads/".to_owned()),
        (
            Method::POST,
            format!("/v2/a/blobs/uploads/{}", uuid::Uuid::new_v4()),
        ),
    ];
    for (method, path) in requests {
        let resp = s.req(method.clone(), &path).send().await.unwrap();
        assert_eq!(
            resp.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        error_code(resp).await;
    }
}

/// Names outside the spec's grammar are 400 NAME_INVALID on every endpoint: uppercase,
/// empty components, separators at the ends, more than 255 characters.
#[tokio::test]
async fn invalid_names() {
    let s = TestServer::start().await;
    let long = "a".repeat(256);
    let long_components = format!("{}/{}", "b".repeat(128), "c".repeat(127));
    assert_eq!(long_components.len(), 256);
    let digest = unknown_digest();
    for name in [
        "Upper",
        "a/B",
        "a//b",
        "_a",
        "a_",
        "a/-b",
        "a___b",
        "a.-b",
        long.as_str(),
        long_components.as_str(),
    ] {
        for (method, path) in [
            (Method::GET, format!("/v2/{name}/tags/list")),
            (Method::GET, format!("/v2/{name}/manifests/latest")),
            (Method::PUT, format!("/v2/{name}/manifests/latest")),
            (Method::HEAD, format!("/v2/{name}/blobs/{digest}")),
            (Method::POST, format!("/v2/{name}/blobs/uploads/")),
            (Method::GET, format!("/v2/{name}/referrers/{digest}")),
        ] {
            let resp = s.req(method.clone(), &path).send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{method} {path}");
            if method != Method::HEAD {
                assert_eq!(error_code(resp).await, "NAME_INVALID", "{method} {path}");
            }
        }
    }
    // 255 characters is still a name: just an unknown one.
    let max = "a".repeat(255);
    assert_error(
        s.get(&format!("/v2/{max}/tags/list")).await,
        404,
        "NAME_UNKNOWN",
    )
    .await;
    let digest = s.push_blob(&max, b"at the limit").await;
    assert_eq!(
        s.head(&format!("/v2/{max}/blobs/{digest}")).await.status(),
        StatusCode::OK
    );
}

/// Digests that are not `algorithm:hex` of a registered algorithm with the exact length of
/// lowercase hex are 400 DIGEST_INVALID, in paths and in query parameters.
#[tokio::test]
async fn invalid_digests() {
    let s = TestServer::start().await;
    let hex = &sha256(b"x")[7..];
    let bad = [
        "sha256:zz".to_owned(),
        format!("sha256:{}", &hex[..63]),
        format!("sha256:{hex}0"),
        format!("sha256:{}", hex.to_uppercase()),
        format!("md5:{}", &hex[..32]),
        format!("sha512:{hex}"),
        "sha256:".to_owned(),
        format!(":{hex}"),
        "notadigest".to_owned(),
    ];
    for digest in &bad {
        let resp = s.get(&format!("/v2/a/blobs/{digest}")).await;
        assert_error(resp, 400, "DIGEST_INVALID").await;
        let resp = s.delete(&format!("/v2/a/blobs/{digest}")).await;
        assert_error(resp, 400, "DIGEST_INVALID").await;
        let resp = s
            .req(
                Method::POST,
                &format!("/v2/a/blobs/uploads/?digest={digest}"),
            )
            .body("x")
            .send()
            .await
            .unwrap();
        assert_error(resp, 400, "DIGEST_INVALID").await;
        if digest.contains(':') {
            let resp = s.get(&format!("/v2/a/manifests/{digest}")).await;
            assert_error(resp, 400, "DIGEST_INVALID").await;
        }
    }
}

/// Files under `root`, recursively.
fn files_under(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            out.push(path.display().to_string());
            if path.is_dir() {
                stack.push(path);
            }
        }
    }
    out
}

/// Traversal attempts (`..` plain or percent-encoded, encoded slashes) are NAME_INVALID (or
/// the session or digest they land in is unknown/invalid), and nothing is ever written
/// outside the data directory.
#[tokio::test]
async fn path_traversal_is_refused() {
    let s = TestServer::start_with(|cfg| {
        // The embedded index and blob tree move with the data directory, as from a file.
        let inner = cfg.data_dir.join("inner");
        if let DatabaseConfig::Sqlite { path } = &mut cfg.database {
            *path = inner.join("berth.db");
        }
        if let StorageConfig::Fs { root } = &mut cfg.storage.backend {
            *root = inner.join("blobs");
        }
        cfg.data_dir = inner;
    })
    .await;
    let root = s.data_dir.parent().unwrap().to_path_buf();
    let body = b"escape attempt";
    let digest = sha256(body);
    let cases = [
        (
            "GET",
            "/v2/a/%2e%2e/b/tags/list".to_owned(),
            400,
            "NAME_INVALID",
        ),
        (
            "GET",
            "/v2/a/../b/tags/list".to_owned(),
            400,
            "NAME_INVALID",
        ),
        (
            "GET",
            "/v2/a/%2E%2E/%2E%2E/tags/list".to_owned(),
            400,
            "NAME_INVALID",
        ),
        (
            "GET",
            "/v2/a%2f..%2f..%2fb/tags/list".to_owned(),
            400,
            "NAME_INVALID",
        ),
        (
            "GET",
            "/v2/%2e%2e/%2e%2e/etc/manifests/latest".to_owned(),
            400,
            "NAME_INVALID",
        ),
        (
            "GET",
            format!("/v2/../../etc/blobs/{digest}"),
            400,
            "NAME_INVALID",
        ),
        (
            "POST",
            format!("/v2/..%2f..%2fescape/blobs/uploads/?digest={digest}"),
            400,
            "NAME_INVALID",
        ),
        (
            "POST",
            "/v2/%2e%2e/escape/blobs/uploads/".to_owned(),
            400,
            "NAME_INVALID",
        ),
        (
            "PUT",
            "/v2/a%2F..%2F..%2Fescape/manifests/v1".to_owned(),
            400,
            "NAME_INVALID",
        ),
        // Decoded slashes split the path: no endpoint ends like that.
        (
            "GET",
            "/v2/a/blobs/sha256:..%2f..%2fberth.db".to_owned(),
            404,
            "",
        ),
        (
            "GET",
            "/v2/a/blobs/sha256:..".to_owned(),
            400,
            "DIGEST_INVALID",
        ),
        (
            "GET",
            "/v2/a/blobs/uploads/%2e%2e".to_owned(),
            404,
            "BLOB_UPLOAD_UNKNOWN",
        ),
        (
            "PATCH",
            "/v2/a/blobs/uploads/..%5c..%5cescape".to_owned(),
            404,
            "BLOB_UPLOAD_UNKNOWN",
        ),
        ("GET", "/v2/a%00b/tags/list".to_owned(), 400, "NAME_INVALID"),
        ("GET", "/v2/a%ffb/tags/list".to_owned(), 400, "NAME_INVALID"),
    ];
    for (method, target, status, code) in &cases {
        let body: &[u8] = if *method == "GET" { b"" } else { body };
        let resp = s.raw(method, target, body).await;
        assert_eq!(resp.status, *status, "{method} {target}");
        let got = resp.error_code();
        if !code.is_empty() {
            assert_eq!(got, *code, "{method} {target}");
        }
    }
    // The server holds its data in `inner` and nothing else appeared beside it (with shared
    // backends `inner` may not exist at all, or hold only the blob directory).
    let names: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "test-backends.json")
        .collect();
    if s.on_embedded_backends() {
        assert_eq!(names, ["inner"]);
    } else {
        assert!(names.iter().all(|n| n == "inner"), "{names:?}");
    }
    for path in files_under(&root) {
        assert!(!path.contains("escape"), "{path}");
    }
    assert_eq!(
        s.head(&format!("/v2/escape/blobs/{digest}")).await.status(),
        StatusCode::NOT_FOUND
    );
}

/// A request: method, target, extra headers, body.
type Mistake<'a> = (&'a str, String, Vec<(&'a str, String)>, Vec<u8>);

/// A battery of client mistakes: each answers 4xx with a JSON body of spec codes, never 5xx.
#[tokio::test]
async fn client_mistakes_are_never_5xx() {
    let s = TestServer::start().await;
    let blob = s.push_blob("mistakes/repo", b"content").await;
    let session = s.start_upload("mistakes/repo").await;
    let session_path = session.trim_start_matches(&s.base).to_owned();
    let config = crate::common::image_config("linux", "amd64", None);
    s.push_blob("mistakes/repo", &config).await;

    let huge = u64::MAX.to_string();
    let cases: Vec<Mistake> = vec![
        ("GET", format!("/v2/mistakes/repo/blobs/{blob}"), vec![("range", format!("bytes={huge}-"))], vec![]),
        ("PATCH", session_path.clone(), vec![("content-range", format!("{huge}-{huge}"))], b"abc".to_vec()),
        ("PATCH", session_path.clone(), vec![("content-range", "10-5".into())], b"abc".to_vec()),
        ("PUT", session_path.clone(), vec![], b"abc".to_vec()),
        ("PUT", format!("{session_path}?digest=sha256:{}", "0".repeat(64)), vec![], vec![]),
        ("GET", "/v2/mistakes/repo/tags/list?n=4294967296".into(), vec![], vec![]),
        ("GET", "/v2/mistakes/repo/tags/list?n=%ff".into(), vec![], vec![]),
        ("GET", "/v2/_catalog?n=-5".into(), vec![], vec![]),
        ("GET", "/v2/mistakes/repo/manifests/-bad".into(), vec![], vec![]),
        ("GET", format!("/v2/mistakes/repo/manifests/{}", "t".repeat(129)), vec![], vec![]),
        ("PUT", "/v2/mistakes/repo/manifests/.bad".into(), vec![("content-type", OCI_MANIFEST.into())], b"{}".to_vec()),
        ("PUT", "/v2/mistakes/repo/manifests/v1".into(), vec![("content-type", OCI_MANIFEST.into())], b"\xff\xfe".to_vec()),
        ("PUT", "/v2/mistakes/repo/manifests/v1".into(), vec![("content-type", "text/plain".into())], b"{\"schemaVersion\":2}".to_vec()),
        (
            "PUT",
            "/v2/mistakes/repo/manifests/v1".into(),
            vec![("content-type", OCI_MANIFEST.into())],
            format!(
                r#"{{"schemaVersion":2,"config":{{"mediaType":"x","digest":"{}","size":{huge}}},"layers":[]}}"#,
                sha256(&config)
            )
            .into_bytes(),
        ),
        (
            "PUT",
            "/v2/mistakes/repo/manifests/v1".into(),
            vec![("content-type", OCI_MANIFEST.into())],
            format!(
                r#"{{"schemaVersion":2,"config":{{"mediaType":"x","digest":"{}","size":-1}},"layers":[]}}"#,
                sha256(&config)
            )
            .into_bytes(),
        ),
        (
            "PUT",
            "/v2/mistakes/repo/manifests/v1".into(),
            vec![("content-type", OCI_MANIFEST.into())],
            br#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:abc","size":1},"layers":[]}"#.to_vec(),
        ),
        ("POST", "/v2/mistakes/repo/blobs/uploads/?mount=&from=".into(), vec![], vec![]),
        ("POST", format!("/v2/mistakes/repo/blobs/uploads/?mount={blob}&from=UPPER"), vec![], vec![]),
        ("POST", format!("/v2/mistakes/repo/blobs/uploads/?digest={}", sha256(b"other")), vec![], b"content".to_vec()),
        ("GET", "/v2/mistakes/repo/referrers/sha256:1".into(), vec![], vec![]),
        ("GET", "/v2/mistakes/repo/tags/list?last=%00".into(), vec![], vec![]),
    ];
    for (method, target, headers, body) in cases {
        let mut req = s.client.request(
            Method::from_bytes(method.as_bytes()).unwrap(),
            s.url(&target),
        );
        for (name, value) in &headers {
            req = req.header(*name, value);
        }
        let resp = req.body(body).send().await.unwrap();
        let status = resp.status();
        assert!(
            status.is_client_error(),
            "{method} {target} {headers:?}: {status}"
        );
        error_code(resp).await;
    }
    // And the server is still serving.
    assert_eq!(s.get("/v2/").await.status(), StatusCode::OK);
}

/// An error answered before the request body was read says `Connection: close`, so that no
/// client reuses a connection the server is about to close; the next request on a fresh one
/// works. Errors to bodiless requests keep the connection.
#[tokio::test]
async fn errors_before_the_body_is_read_close_the_connection() {
    let s = TestServer::start().await;
    let unknown_session = "/v2/a/blobs/uploads/00000000-0000-0000-0000-000000000000";
    let resp = s
        .req(Method::PATCH, unknown_session)
        .header("content-type", "application/octet-stream")
        .body(vec![7u8; 256 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        resp.headers().get("connection").map(|v| v.as_bytes()),
        Some(&b"close"[..])
    );
    assert_eq!(error_code(resp).await, "BLOB_UPLOAD_UNKNOWN");
    let resp = s.get("/v2/a/manifests/missing").await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(resp.headers().get("connection"), None);
}

/// `/token` and `/healthz` refuse a method they do not take as `/api/v1` does: 405, the
/// methods they take in `Allow`, and a JSON problem `METHOD_NOT_ALLOWED`.
#[tokio::test]
async fn token_and_health_refuse_other_methods_with_a_json_problem() {
    let s = TestServer::start().await;
    for (method, path, allowed) in [
        (Method::DELETE, "/token", ["GET", "POST"].as_slice()),
        (Method::PUT, "/token", &["GET", "POST"]),
        (Method::POST, "/healthz", &["GET"]),
        (Method::DELETE, "/healthz", &["GET"]),
    ] {
        let resp = s.req(method.clone(), path).send().await.unwrap();
        assert_eq!(
            resp.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        let allow = crate::common::header(&resp, "allow").unwrap_or_default();
        for m in allowed {
            assert!(allow.contains(m), "{method} {path}: Allow {allow:?}");
        }
        let body = crate::common::json_body(resp).await;
        assert_eq!(
            body["error"]["code"], "METHOD_NOT_ALLOWED",
            "{method} {path}: {body}"
        );
        assert!(body["error"]["message"].is_string(), "{body}");
    }
    // What they take still works.
    assert_eq!(s.get("/healthz").await.text().await.unwrap(), "ok");
}
