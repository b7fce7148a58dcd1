//! The management API (`/api/v1`): JSON problems, cursor pagination, and the figures it
//! reports about what was pushed.

use reqwest::StatusCode;

use crate::common::{TestServer, header, json_body};

/// Each repository once, in name order, across cursor pages that follow the `Link` header;
/// counts and sizes match what was pushed.
#[tokio::test]
async fn repositories_page_by_cursor_with_usage() {
    let s = TestServer::start().await;
    let names = ["team/b", "team/a", "solo", "team/c"];
    for name in names {
        let config = format!("config of {name}");
        s.push_image_with(
            name,
            "v1",
            config.as_bytes(),
            &[name.as_bytes(), b"shared layer"],
        )
        .await;
    }
    s.push_image_with("team/a", "v2", b"config v2", &[b"second image".as_slice()])
        .await;

    let mut seen = Vec::new();
    let mut path = "/api/v1/repositories?limit=3".to_owned();
    for _ in 0..10 {
        let resp = s.get(&path).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let link = header(&resp, "link");
        let body = json_body(resp).await;
        for item in body["items"].as_array().expect("items") {
            seen.push(item.clone());
        }
        match link {
            Some(link) => {
                assert!(body["next"].as_str().is_some(), "{body}");
                path = link
                    .trim_start_matches('<')
                    .split('>')
                    .next()
                    .expect("link target")
                    .to_owned();
            }
            None => {
                assert!(body.get("next").is_none());
                break;
            }
        }
    }
    let listed: Vec<&str> = seen.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(listed, ["solo", "team/a", "team/b", "team/c"]);

    let team_a = &seen[1];
    assert_eq!(team_a["manifest_count"], 2);
    assert_eq!(team_a["tag_count"], 2);
    assert_eq!(team_a["push_count"], 2);
    let blobs = [
        "config of team/a",
        "team/a",
        "shared layer",
        "config v2",
        "second image",
    ];
    let bytes: usize = blobs.iter().map(|b| b.len()).sum();
    assert_eq!(team_a["blob_bytes"], bytes as i64);
    assert_eq!(seen[0]["tag_count"], 1);
    assert_eq!(seen[0]["pull_count"], 0);
}

/// A bad `limit` is a JSON problem naming the parameter, not a plain-text 400.
#[tokio::test]
async fn bad_paging_is_a_json_problem() {
    let s = TestServer::start().await;
    for bad in ["limit=0", "limit=-1", "limit=ten"] {
        let resp = s.get(&format!("/api/v1/repositories?{bad}")).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{bad}");
        let body = json_body(resp).await;
        assert_eq!(body["error"]["code"], "BAD_REQUEST", "{bad}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains("limit"),
            "{bad}: {body}"
        );
    }
    let resp = s.get("/api/v1/no-such-resource").await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let body = json_body(resp).await;
    assert_eq!(body["error"]["code"], "NOT_FOUND");
}

/// The OpenAPI document describes the API, and every path it names is served (a path in the
/// document that the router lacks would answer the JSON fallback `no such endpoint`).
#[tokio::test]
async fn openapi_document_matches_the_routes() {
    let s = TestServer::start().await;
    let resp = s.get("/api/v1/openapi.json").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let doc = json_body(resp).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.contains_key("/api/v1/repositories"), "{paths:?}");
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    for path in [
        "/api/v1/gc/runs",
        "/api/v1/policies/{name}",
        "/api/v1/namespaces/{ns}/members/{user}",
        "/api/v1/users/{name}/tokens",
        "/api/v1/repositories/{name}/-/settings",
    ] {
        assert!(paths.contains_key(path), "{path} is not documented");
    }
    for schema in ["RepositorySummary", "Problem"] {
        assert!(schemas.contains_key(schema), "{schema} missing");
    }
    for (path, operations) in paths {
        for method in operations.as_object().unwrap().keys() {
            // Path parameters get a value that parses; the answer only has to show a route.
            let concrete = path
                .replace("{id}", "1")
                .replace("repositories/{name}", "repositories/doc/check")
                .replace(['{', '}'], "");
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let resp = s.req(method.clone(), &concrete).send().await.unwrap();
            let status = resp.status();
            let body = resp.text().await.unwrap();
            assert!(
                !body.contains("no such endpoint in /api/v1")
                    && status != StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path} is documented but not served: {status} {body}"
            );
        }
    }
}
