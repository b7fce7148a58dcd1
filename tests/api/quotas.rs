//! Namespace quotas (`/api/v1/namespaces/{ns}/quota`): setting and reading them, pushes that
//! would cross a storage or repository limit refused with DENIED before anything is kept,
//! what is free (blobs the namespace holds already), what frees quota (deletes and
//! collections), the warning threshold, the metrics, bad input and who may do what.

use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

use crate::common::{
    OCI_MANIFEST, TestServer, assert_error,
    auth::start_auth,
    auth::{ADMIN, ADMIN_PASSWORD, password_of},
    image_config, image_manifest, json_body, random_bytes, sha256, with_digest,
};

/// A server whose own worker never ticks during a test (collections are run through the API).
async fn server() -> TestServer {
    TestServer::start_with(|c| c.gc.poll_millis = 3_600_000).await
}

/// PUTs the quota of `ns` and returns the answer (which must be 200).
async fn set_quota(s: &TestServer, ns: &str, body: Value) -> Value {
    let resp = s
        .req(Method::PUT, &format!("/api/v1/namespaces/{ns}/quota"))
        .json(&body)
        .send()
        .await
        .expect("PUT quota");
    assert_eq!(resp.status(), StatusCode::OK, "PUT quota of {ns}");
    json_body(resp).await
}

async fn quota(s: &TestServer, ns: &str) -> Value {
    let resp = s.get(&format!("/api/v1/namespaces/{ns}/quota")).await;
    assert_eq!(resp.status(), StatusCode::OK, "GET quota of {ns}");
    json_body(resp).await
}

/// Pushes `bytes` in one POST (end-4b).
async fn post_blob(s: &TestServer, repo: &str, bytes: &[u8]) -> Response {
    s.req(
        Method::POST,
        &format!("/v2/{repo}/blobs/uploads/?digest={}", sha256(bytes)),
    )
    .header("content-type", "application/octet-stream")
    .body(bytes.to_vec())
    .send()
    .await
    .expect("POST blob")
}

/// Pushes `bytes` with a session and a monolithic PUT (end-4a, end-6); returns the session's
/// location and the PUT's answer.
async fn put_blob(s: &TestServer, repo: &str, bytes: &[u8]) -> (String, Response) {
    let location = s.start_upload(repo).await;
    let resp = s
        .client
        .put(with_digest(&location, &sha256(bytes)))
        .header("content-type", "application/octet-stream")
        .body(bytes.to_vec())
        .send()
        .await
        .expect("PUT blob");
    (location, resp)
}

/// Pushes `bytes` in two PATCHes and a closing PUT without body (end-5, end-6).
async fn chunked_blob(s: &TestServer, repo: &str, bytes: &[u8]) -> (String, Response) {
    let location = s.start_upload(repo).await;
    let half = bytes.len() / 2;
    for (start, chunk) in [(0, &bytes[..half]), (half, &bytes[half..])] {
        let resp = s
            .client
            .patch(&location)
            .header("content-type", "application/octet-stream")
            .header(
                "content-range",
                format!("{start}-{}", start + chunk.len() - 1),
            )
            .body(chunk.to_vec())
            .send()
            .await
            .expect("PATCH");
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
    }
    let resp = s
        .client
        .put(with_digest(&location, &sha256(bytes)))
        .send()
        .await
        .expect("PUT");
    (location, resp)
}

/// Mounts `digest` into `repo` from `from` (end-11).
async fn mount(s: &TestServer, repo: &str, digest: &str, from: &str) -> Response {
    s.req(
        Method::POST,
        &format!("/v2/{repo}/blobs/uploads/?mount={digest}&from={from}"),
    )
    .send()
    .await
    .expect("mount")
}

/// Asserts a `/v2/` refusal 403 DENIED and returns its message.
async fn denied(resp: Response) -> String {
    assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{}", resp.url());
    let body = json_body(resp).await;
    assert_eq!(body["errors"][0]["code"], "DENIED", "{body}");
    body["errors"][0]["message"]
        .as_str()
        .expect("a message")
        .to_owned()
}

async fn blob_status(s: &TestServer, repo: &str, bytes: &[u8]) -> StatusCode {
    s.head(&format!("/v2/{repo}/blobs/{}", sha256(bytes)))
        .await
        .status()
}

/// Whether anything is left under the local blob store's `prefix` (`blobs`, `uploads`).
fn stored_objects(s: &TestServer, prefix: &str) -> usize {
    fn count(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir).map_or(0, |entries| {
            entries
                .flatten()
                .map(|e| {
                    if e.path().is_dir() {
                        count(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
        })
    }
    count(&s.data_dir.join("blobs").join(prefix))
}

/// Whether the object of `bytes` is in the local blob store.
fn object_exists(s: &TestServer, bytes: &[u8]) -> bool {
    let hex = sha256(bytes).trim_start_matches("sha256:").to_owned();
    s.data_dir
        .join("blobs/blobs/sha256")
        .join(&hex[..2])
        .join(&hex)
        .exists()
}

/// A quota set and read back, with the usage of a namespace that holds nothing yet; a
/// namespace without a quota shows no limits; removing it answers 204, then 404.
#[tokio::test]
async fn quota_is_set_read_and_removed() {
    let s = server().await;
    let empty = quota(&s, "team").await;
    assert_eq!(
        empty,
        json!({
            "namespace": "team", "storage_bytes": null, "repositories": null,
            "warn_percent": 80, "used_bytes": 0, "used_repositories": 0,
            "warning": false, "exceeded": false,
        })
    );
    let set = set_quota(
        &s,
        "team",
        json!({ "storage_bytes": 104857600, "repositories": 10, "warn_percent": 90 }),
    )
    .await;
    assert_eq!(set["storage_bytes"], 104857600);
    assert_eq!(set["repositories"], 10);
    assert_eq!(set["warn_percent"], 90);
    assert_eq!(quota(&s, "team").await, set);
    // A PUT replaces: what it leaves out is no limit, the threshold its default.
    let replaced = set_quota(&s, "team", json!({ "repositories": 3 })).await;
    assert_eq!(
        (
            &replaced["storage_bytes"],
            &replaced["repositories"],
            &replaced["warn_percent"]
        ),
        (&json!(null), &json!(3), &json!(80))
    );

    assert_eq!(
        s.delete("/api/v1/namespaces/team/quota").await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(quota(&s, "team").await["repositories"], json!(null));
    let again = s.delete("/api/v1/namespaces/team/quota").await;
    assert_eq!(again.status(), StatusCode::NOT_FOUND);
    assert_eq!(json_body(again).await["error"]["code"], "NOT_FOUND");
}

/// Blobs under the limit are kept; the one that would cross it is refused 403 DENIED with the
/// limit and the usage, whichever way it is pushed (one POST, a monolithic PUT, chunks): the
/// session is gone, the blob is not served, nothing is left in the store and the usage is
/// unchanged. Blobs the namespace holds already cost nothing (a re-push, a mount from a
/// sibling); a mount from another namespace costs its size.
#[tokio::test]
async fn the_blob_that_would_cross_the_limit_is_refused_and_not_kept() {
    let s = server().await;
    set_quota(&s, "team", json!({ "storage_bytes": 1000 })).await;
    let first = random_bytes(400);
    let second = random_bytes(400);
    let crossing = random_bytes(300);
    assert_eq!(
        post_blob(&s, "team/app", &first).await.status(),
        StatusCode::CREATED
    );
    let (_, resp) = chunked_blob(&s, "team/app", &second).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(quota(&s, "team").await["used_bytes"], 800);

    let (location, resp) = put_blob(&s, "team/app", &crossing).await;
    let message = denied(resp).await;
    assert_eq!(
        message,
        "requested access to the resource is denied: namespace \"team\" storage quota \
         exceeded: limit 1000 B, used 800 B, this blob 300 B"
    );
    // The session was discarded with its bytes.
    let status = s.client.get(&location).send().await.expect("GET session");
    assert_error(status, 404, "BLOB_UPLOAD_UNKNOWN").await;
    let message = denied(post_blob(&s, "team/app", &crossing).await).await;
    assert!(message.contains("limit 1000 B, used 800 B"), "{message}");
    let (_, resp) = chunked_blob(&s, "team/other", &crossing).await;
    denied(resp).await;

    assert_eq!(
        blob_status(&s, "team/app", &crossing).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        blob_status(&s, "team/other", &crossing).await,
        StatusCode::NOT_FOUND
    );
    let shown = quota(&s, "team").await;
    assert_eq!(shown["used_bytes"], 800);
    assert_eq!(shown["exceeded"], false);
    if s.on_embedded_backends() {
        assert!(!object_exists(&s, &crossing));
        assert_eq!(stored_objects(&s, "uploads"), 0, "no staged part is left");
    }

    // Already in the namespace: free, even at the limit.
    set_quota(&s, "team", json!({ "storage_bytes": 800 })).await;
    assert_eq!(
        post_blob(&s, "team/app", &first).await.status(),
        StatusCode::CREATED
    );
    let (_, resp) = put_blob(&s, "team/app", &second).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let from_sibling = mount(&s, "team/copy", &sha256(&first), "team/app").await;
    assert_eq!(from_sibling.status(), StatusCode::CREATED);
    assert_eq!(blob_status(&s, "team/copy", &first).await, StatusCode::OK);
    assert_eq!(quota(&s, "team").await["used_bytes"], 800);

    // From another namespace it is new here: refused, and not linked.
    let elsewhere = random_bytes(10);
    assert_eq!(
        post_blob(&s, "other/app", &elsewhere).await.status(),
        StatusCode::CREATED
    );
    let message = denied(mount(&s, "team/app", &sha256(&elsewhere), "other/app").await).await;
    assert!(message.contains("this blob 10 B"), "{message}");
    assert_eq!(
        blob_status(&s, "team/app", &elsewhere).await,
        StatusCode::NOT_FOUND
    );
    // Another namespace has no quota: nothing there is refused.
    assert_eq!(
        post_blob(&s, "other/app", &crossing).await.status(),
        StatusCode::CREATED
    );
    // Held elsewhere is not held here: still refused, and the other namespace's copy is
    // untouched by the refusal.
    denied(post_blob(&s, "team/app", &crossing).await).await;
    let served = s
        .get(&format!("/v2/other/app/blobs/{}", sha256(&crossing)))
        .await;
    assert_eq!(served.status(), StatusCode::OK);
    assert_eq!(served.bytes().await.unwrap().as_ref(), crossing.as_slice());
}

/// `warning` turns on when the usage reaches `warn_percent` of the limit; `exceeded` once the
/// usage is over a limit (here: the limit lowered under it), when every new blob is refused.
#[tokio::test]
async fn warning_starts_at_the_threshold_and_exceeded_over_the_limit() {
    let s = server().await;
    set_quota(
        &s,
        "team",
        json!({ "storage_bytes": 1000, "warn_percent": 50 }),
    )
    .await;
    post_blob(&s, "team/app", &random_bytes(499)).await;
    let below = quota(&s, "team").await;
    assert_eq!(
        (&below["warning"], &below["exceeded"]),
        (&json!(false), &json!(false))
    );
    // A fixed byte, so the refused blob below cannot be one the namespace already holds.
    post_blob(&s, "team/app", b"a").await;
    let at = quota(&s, "team").await;
    assert_eq!(at["used_bytes"], 500);
    assert_eq!(
        (&at["warning"], &at["exceeded"]),
        (&json!(true), &json!(false))
    );

    let lowered = set_quota(
        &s,
        "team",
        json!({ "storage_bytes": 400, "warn_percent": 50 }),
    )
    .await;
    assert_eq!(
        (&lowered["warning"], &lowered["exceeded"]),
        (&json!(true), &json!(true))
    );
    let message = denied(post_blob(&s, "team/app", b"b").await).await;
    assert!(
        message.contains("limit 400 B, used 500 B, this blob 1 B"),
        "{message}"
    );
}

/// Manifests count in the usage (each digest once); deleting the image frees its manifest at
/// once and its blobs after a collection, after which the refused push succeeds.
#[tokio::test]
async fn deleting_and_collecting_frees_quota() {
    let s = server().await;
    let layer = random_bytes(500);
    let config = image_config("linux", "amd64", None);
    let manifest = image_manifest(&config, &[&layer]);
    let image_bytes = (layer.len() + config.len() + manifest.len()) as i64;
    set_quota(&s, "team", json!({ "storage_bytes": image_bytes + 100 })).await;
    let (digest, _) = s.push_image("team/app", "v1", &[&layer]).await;
    // The same manifest in a second repository of the namespace counts once.
    s.push_image("team/mirror", "v1", &[&layer]).await;
    assert_eq!(quota(&s, "team").await["used_bytes"], image_bytes);

    let big = random_bytes(300);
    denied(post_blob(&s, "team/app", &big).await).await;

    for repo in ["team/app", "team/mirror"] {
        let resp = s.delete(&format!("/v2/{repo}/manifests/{digest}")).await;
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
    }
    assert_eq!(
        quota(&s, "team").await["used_bytes"],
        (layer.len() + config.len()) as i64,
        "the manifest is gone at once; its blobs stay linked until collected"
    );
    let resp = s
        .req(Method::POST, "/api/v1/gc/runs")
        .json(&json!({ "wait": true, "grace_secs": 0 }))
        .send()
        .await
        .expect("POST gc run");
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(json_body(resp).await["state"], "done");
    assert_eq!(quota(&s, "team").await["used_bytes"], 0);

    assert_eq!(
        post_blob(&s, "team/app", &big).await.status(),
        StatusCode::CREATED
    );
    assert_eq!(quota(&s, "team").await["used_bytes"], 300);
}

/// A manifest is never refused for its bytes: it makes blobs that were admitted usable. It
/// can take the usage over the limit, which `exceeded` then shows.
#[tokio::test]
async fn a_manifest_is_not_refused_for_its_bytes() {
    let s = server().await;
    let layer = random_bytes(200);
    let config = image_config("linux", "amd64", None);
    let blobs = (layer.len() + config.len()) as i64;
    set_quota(&s, "team", json!({ "storage_bytes": blobs })).await;
    s.push_blob("team/app", &config).await;
    s.push_blob("team/app", &layer).await;
    let manifest = image_manifest(&config, &[&layer]);
    s.put_manifest_ok("team/app", "v1", OCI_MANIFEST, &manifest)
        .await;
    let shown = quota(&s, "team").await;
    assert_eq!(shown["used_bytes"], blobs + manifest.len() as i64);
    assert_eq!(shown["exceeded"], true);
}

/// Past the repository limit a new repository is refused whichever way it would be created
/// (an upload, a one-request push, a mount, `POST /api/v1/repositories`); existing ones go
/// on. Deleting a repository frees its place.
#[tokio::test]
async fn repository_limit_refuses_new_repositories() {
    let s = server().await;
    let set = set_quota(&s, "team", json!({ "repositories": 2 })).await;
    assert_eq!(set["used_repositories"], 0);
    s.push_blob("team/a", b"a").await;
    let resp = s
        .req(Method::POST, "/api/v1/repositories")
        .json(&json!({ "name": "team/b" }))
        .send()
        .await
        .expect("POST repository");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let full = quota(&s, "team").await;
    assert_eq!(full["used_repositories"], 2);
    assert_eq!(full["warning"], true);

    let resp = s
        .req(Method::POST, "/v2/team/c/blobs/uploads/")
        .send()
        .await
        .expect("POST upload");
    let message = denied(resp).await;
    assert_eq!(
        message,
        "requested access to the resource is denied: namespace \"team\" repository quota \
         exceeded: limit 2, used 2; team/c cannot be created"
    );
    denied(post_blob(&s, "team/c", b"c").await).await;
    denied(mount(&s, "team/c", &sha256(b"a"), "team/a").await).await;
    let resp = s
        .req(Method::POST, "/api/v1/repositories")
        .json(&json!({ "name": "team/c" }))
        .send()
        .await
        .expect("POST repository");
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let problem = json_body(resp).await;
    assert_eq!(problem["error"]["code"], "DENIED");
    assert!(
        problem["error"]["message"]
            .as_str()
            .unwrap()
            .contains("repository quota exceeded: limit 2, used 2"),
        "{problem}"
    );
    assert_eq!(
        s.get("/api/v1/repositories/team/c").await.status(),
        StatusCode::NOT_FOUND
    );
    // Existing repositories go on; other namespaces are not counted.
    s.push_blob("team/a", b"more").await;
    s.push_blob("other/c", b"c").await;

    assert_eq!(
        s.delete("/api/v1/repositories/team/b").await.status(),
        StatusCode::NO_CONTENT
    );
    s.push_blob("team/c", b"c").await;
    assert_eq!(quota(&s, "team").await["used_repositories"], 2);
}

/// Bad input is a 400 naming the field: limits that are not positive integers, a threshold
/// outside 1 to 100, unknown fields; a name that is no namespace is a 400 too.
#[tokio::test]
async fn bad_limits_are_refused_naming_the_field() {
    let s = server().await;
    for (body, field) in [
        (json!({ "storage_bytes": -1 }), "storage_bytes"),
        (json!({ "storage_bytes": 0 }), "storage_bytes"),
        (json!({ "storage_bytes": 1.5 }), "storage_bytes"),
        (json!({ "storage_bytes": "100" }), "storage_bytes"),
        (json!({ "repositories": 0 }), "repositories"),
        (json!({ "repositories": -2 }), "repositories"),
        (json!({ "warn_percent": 0 }), "warn_percent"),
        (json!({ "warn_percent": 101 }), "warn_percent"),
        (json!({ "storage_bytes": 10, "storage": 10 }), "storage"),
    ] {
        let resp = s
            .req(Method::PUT, "/api/v1/namespaces/team/quota")
            .json(&body)
            .send()
            .await
            .expect("PUT quota");
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{body}");
        let problem = json_body(resp).await;
        assert_eq!(problem["error"]["code"], "BAD_REQUEST", "{body}");
        assert_eq!(
            problem["error"]["details"]["parameter"], field,
            "{body}: {problem}"
        );
        assert!(
            problem["error"]["message"]
                .as_str()
                .unwrap()
                .contains(field),
            "{problem}"
        );
    }
    let not_json = s
        .req(Method::PUT, "/api/v1/namespaces/team/quota")
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .expect("PUT quota");
    assert_eq!(not_json.status(), StatusCode::BAD_REQUEST);
    for name in ["Team", "-team", "te..am"] {
        let resp = s.get(&format!("/api/v1/namespaces/{name}/quota")).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{name}");
        assert_eq!(
            json_body(resp).await["error"]["details"]["parameter"],
            "namespace"
        );
    }
    // Nothing was set by the refusals.
    assert_eq!(quota(&s, "team").await["storage_bytes"], json!(null));
}

/// With access control on: administrators set and remove quotas (an owner of the namespace
/// may not, 403; without credentials 401); those who may pull from the namespace read it.
#[tokio::test]
async fn administrators_set_quotas_and_readers_see_them() {
    let s = start_auth(|_| {}).await;
    s.create_user("olivia").await;
    s.create_user("mallory").await;
    s.set_role("team", "olivia", "owner").await;
    let admin = Some((ADMIN, ADMIN_PASSWORD));
    let olivia_pw = password_of("olivia");
    let olivia = Some(("olivia", olivia_pw.as_str()));
    let mallory_pw = password_of("mallory");
    let mallory = Some(("mallory", mallory_pw.as_str()));
    let path = "/namespaces/team/quota";
    let body = json!({ "storage_bytes": 1000 });

    let resp = s.api_as(None, Method::PUT, path, Some(body.clone())).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = s
        .api_as(olivia, Method::PUT, path, Some(body.clone()))
        .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(json_body(resp).await["error"]["code"], "DENIED");
    let resp = s.api_as(admin, Method::PUT, path, Some(body)).await;
    assert_eq!(resp.status(), StatusCode::OK);

    let resp = s.api_as(olivia, Method::GET, path, None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(json_body(resp).await["storage_bytes"], 1000);
    // Private by default: neither a stranger nor an anonymous caller reads it.
    let resp = s.api_as(mallory, Method::GET, path, None).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = s.api_as(None, Method::GET, path, None).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    let resp = s.api_as(olivia, Method::DELETE, path, None).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = s.api_as(None, Method::DELETE, path, None).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = s.api_as(admin, Method::DELETE, path, None).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);

    // The changes are in the audit log.
    let audit = s.admin_api(Method::GET, "/audit", None).await;
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .filter(|a| a.starts_with("namespace.quota"))
        .collect();
    assert_eq!(actions, ["namespace.quota.remove", "namespace.quota.set"]);
}

/// `/metrics` reports each namespace with a quota (usage, limit, warning), read at scrape
/// time, the usage counted at most once per `metrics.quota_count_secs`; a namespace without
/// one has no series, and removing a quota removes its series.
#[tokio::test]
async fn quota_gauges_follow_the_namespaces_with_a_quota() {
    let s = server().await;
    set_quota(
        &s,
        "team",
        json!({ "storage_bytes": 1000, "warn_percent": 50 }),
    )
    .await;
    set_quota(&s, "lab", json!({ "repositories": 5 })).await;
    post_blob(&s, "team/app", &random_bytes(600)).await;
    post_blob(&s, "free/app", &random_bytes(10)).await;
    let scrape = |s: &TestServer| {
        let url = s.url("/metrics");
        let client = s.client.clone();
        async move {
            client
                .get(url)
                .send()
                .await
                .expect("scrape")
                .text()
                .await
                .expect("text")
        }
    };
    let text = scrape(&s).await;
    for line in [
        "berth_quota_used_bytes{namespace=\"team\"} 600",
        "berth_quota_limit_bytes{namespace=\"team\"} 1000",
        "berth_quota_warning{namespace=\"team\"} 1",
        "berth_quota_used_bytes{namespace=\"lab\"} 0",
        "berth_quota_warning{namespace=\"lab\"} 0",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
    }
    assert!(!text.contains("namespace=\"free\""), "{text}");
    assert!(
        !text.contains("berth_quota_limit_bytes{namespace=\"lab\"}"),
        "{text}"
    );
    // Usage is counted again once the last count is older than `metrics.quota_count_secs`.
    post_blob(&s, "team/app", &random_bytes(100)).await;
    let used = "berth_quota_used_bytes{namespace=\"team\"}";
    let text = scrape(&s).await;
    assert!(text.lines().any(|l| l == format!("{used} 600")), "{text}");
    s.clock.advance(s.config.metrics.quota_count_secs as i64);
    let text = scrape(&s).await;
    assert!(text.lines().any(|l| l == format!("{used} 700")), "{text}");

    assert_eq!(
        s.delete("/api/v1/namespaces/team/quota").await.status(),
        StatusCode::NO_CONTENT
    );
    let text = scrape(&s).await;
    assert!(!text.contains("namespace=\"team\""), "{text}");
}

/// Copying an image from another namespace with the management API's retag mounts its blobs:
/// they count as a push would, so a copy that would cross the limit is refused and links
/// nothing; within the namespace the same copy is free.
#[tokio::test]
async fn a_retag_from_another_namespace_counts_against_the_quota() {
    let s = server().await;
    let layer = random_bytes(600);
    let (digest, _) = s.push_image("other/app", "v1", &[&layer]).await;
    s.push_image("team/app", "v1", &[b"small"]).await;
    let used = quota(&s, "team").await["used_bytes"].as_i64().unwrap();
    set_quota(&s, "team", json!({ "storage_bytes": used + 100 })).await;
    let retag = |repo: &'static str, from: &'static str| {
        let request = s
            .req(Method::POST, &format!("/api/v1/repositories/{repo}/-/tags"))
            .json(&json!({ "tag": "copied", "digest": digest, "from": from }));
        async move { request.send().await.expect("retag") }
    };

    let resp = retag("team/copy", "other/app").await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let problem = json_body(resp).await;
    assert_eq!(problem["error"]["code"], "DENIED", "{problem}");
    assert!(
        problem["error"]["message"]
            .as_str()
            .unwrap()
            .contains("storage quota exceeded"),
        "{problem}"
    );
    assert_eq!(
        blob_status(&s, "team/copy", &layer).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(quota(&s, "team").await["used_bytes"], used);

    // Once the namespace holds the image, copying it inside the namespace is free.
    set_quota(&s, "team", json!({ "storage_bytes": 1_000_000 })).await;
    let resp = retag("team/copy", "other/app").await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let full = quota(&s, "team").await["used_bytes"].as_i64().unwrap();
    set_quota(&s, "team", json!({ "storage_bytes": full })).await;
    let resp = retag("team/second", "team/copy").await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(quota(&s, "team").await["used_bytes"], full);
}
