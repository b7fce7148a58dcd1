//! end-1 (`/v2/`) and what every `/v2/` response carries.

use reqwest::{Method, StatusCode};

use crate::common::{TestServer, error_code, header, unknown_digest};

/// end-1: a registry implementing the spec answers `GET /v2/` with 200.
#[tokio::test]
async fn base_answers_200_with_api_version() {
    let s = TestServer::start().await;
    for path in ["/v2/", "/v2"] {
        let resp = s.get(path).await;
        assert_eq!(resp.status(), StatusCode::OK, "GET {path}");
        assert_eq!(
            header(&resp, "docker-distribution-api-version").as_deref(),
            Some("registry/2.0")
        );
    }
    let resp = s.head("/v2/").await;
    assert_eq!(resp.status(), StatusCode::OK);
    // Outside /v2/, a health check for load balancers.
    assert_eq!(s.get("/healthz").await.status(), StatusCode::OK);
}

/// Docker-Distribution-API-Version is on every /v2/ response, successes and errors alike
/// (spec.md, "Legacy Docker support HTTP headers").
#[tokio::test]
async fn api_version_header_on_every_response() {
    let s = TestServer::start().await;
    let (digest, _) = s.push_image("base/app", "v1", &[b"layer"]).await;
    let blob = crate::common::sha256(b"layer");
    let requests = [
        (Method::GET, "/v2/_catalog".to_owned()),
        (Method::GET, "/v2/base/app/tags/list".to_owned()),
        (Method::GET, "/v2/base/app/manifests/v1".to_owned()),
        (Method::HEAD, format!("/v2/base/app/manifests/{digest}")),
        (Method::GET, format!("/v2/base/app/blobs/{blob}")),
        (Method::HEAD, format!("/v2/base/app/blobs/{blob}")),
        (Method::GET, format!("/v2/base/app/referrers/{digest}")),
        (Method::POST, "/v2/base/app/blobs/uploads/".to_owned()),
        // Errors.
        (Method::GET, "/v2/base/app/manifests/missing".to_owned()),
        (Method::HEAD, "/v2/base/app/manifests/missing".to_owned()),
        (
            Method::GET,
            format!("/v2/base/app/blobs/{}", unknown_digest()),
        ),
        (Method::GET, "/v2/nothing/tags/list".to_owned()),
        (Method::GET, "/v2/Upper/tags/list".to_owned()),
        (Method::GET, "/v2/base/app/unknown-endpoint".to_owned()),
        (Method::PATCH, "/v2/base/app/manifests/v1".to_owned()),
    ];
    for (method, path) in requests {
        let resp = s.req(method.clone(), &path).send().await.unwrap();
        assert_eq!(
            header(&resp, "docker-distribution-api-version").as_deref(),
            Some("registry/2.0"),
            "{method} {path} ({})",
            resp.status()
        );
        assert!(
            !resp.status().is_server_error(),
            "{method} {path}: {}",
            resp.status()
        );
        if resp.status().is_client_error() && method != Method::HEAD {
            error_code(resp).await;
        }
    }
}

/// What a stopped server pushed (with `durability.fsync = true`) is served again after a
/// restart on the same directory.
#[tokio::test]
async fn content_survives_a_restart() {
    let s = TestServer::start_with(|cfg| cfg.durability.fsync = true).await;
    let (digest, manifest) = s.push_image("keep/me", "v1", &[b"persistent layer"]).await;
    let dir = s.stop().await;

    let s = TestServer::start_in(dir, |cfg| cfg.durability.fsync = true).await;
    let resp = s.get("/v2/keep/me/manifests/v1").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        header(&resp, "docker-content-digest").as_deref(),
        Some(digest.as_str())
    );
    assert_eq!(resp.bytes().await.unwrap(), manifest);
    let layer = crate::common::sha256(b"persistent layer");
    let resp = s.get(&format!("/v2/keep/me/blobs/{layer}")).await;
    assert_eq!(resp.bytes().await.unwrap().as_ref(), b"persistent layer");
}

/// Behind a proxy, Locations point where the client came from (`X-Forwarded-Proto` and
/// `-Host`), so that clients can follow them.
#[tokio::test]
async fn locations_follow_forwarded_headers() {
    let s = TestServer::start().await;
    let resp = s
        .req(Method::POST, "/v2/base/proxied/blobs/uploads/")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "registry.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let location = header(&resp, "location").unwrap();
    assert!(
        location.starts_with("https://registry.example.com/v2/base/proxied/blobs/uploads/"),
        "{location}"
    );
}

/// Repository names may contain the words the endpoints use (`blobs`, `uploads`, `tags`,
/// `manifests`); every endpoint still finds them.
#[tokio::test]
async fn names_containing_endpoint_words() {
    let s = TestServer::start().await;
    for repo in [
        "x/blobs/uploads",
        "tags/list",
        "m/manifests",
        "a/blobs",
        "r/referrers",
    ] {
        let location = s.start_upload(repo).await;
        assert!(
            location.starts_with(&s.url(&format!("/v2/{repo}/blobs/uploads/"))),
            "{location}"
        );
        let resp = s
            .client
            .put(crate::common::with_digest(
                &location,
                &crate::common::sha256(b"w"),
            ))
            .body("w")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED, "{repo}");
        let (digest, manifest) = s.push_image(repo, "v1", &[repo.as_bytes()]).await;
        let resp = s.get(&format!("/v2/{repo}/manifests/{digest}")).await;
        assert_eq!(resp.bytes().await.unwrap(), manifest, "{repo}");
        let tags = crate::common::json_body(s.get(&format!("/v2/{repo}/tags/list")).await).await;
        assert_eq!(tags["name"], repo);
        assert_eq!(crate::common::strings(&tags["tags"]), ["v1"]);
        let blob = crate::common::sha256(b"w");
        assert_eq!(
            s.head(&format!("/v2/{repo}/blobs/{blob}")).await.status(),
            StatusCode::OK,
            "{repo}"
        );
    }
}
