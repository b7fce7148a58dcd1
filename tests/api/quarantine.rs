//! Quarantine (`/api/v1/repositories/{name}/-/images/{digest}/quarantine`): a quarantined
//! image's manifest GET on `/v2/` is refused with `DENIED` naming the reason (by tag and by
//! digest; an index with a quarantined child too), its HEAD and blobs are still answered, the images
//! API shows it, a release makes it pullable again; who may quarantine; every bad input;
//! refused pulls are not counted; quarantine and release are in the audit log.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{
    DOCKER_LIST, OCI_INDEX, OCI_MANIFEST, TestServer, assert_error,
    auth::{ADMIN, ADMIN_PASSWORD, password_of, start_auth},
    descriptor, image_config, json_body, sha256, unknown_digest,
};

const REASON: &str = "CVE-2024-0001 in openssl (critical); rebuild on bookworm 12.5";

/// An `/api/v1` call on the server's own client; returns the status and the JSON body.
async fn call(
    s: &TestServer,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = s.req(method, &format!("/api/v1{path}"));
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.expect("api request");
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// `…/images/{digest}/quarantine` of `repo`.
fn quarantine_path(repo: &str, digest: &str) -> String {
    format!("/repositories/{repo}/-/images/{digest}/quarantine")
}

/// Quarantines `digest` of `repo` for `reason`; insists on `expected`; returns the record.
async fn quarantine(
    s: &TestServer,
    repo: &str,
    digest: &str,
    reason: &str,
    expected: StatusCode,
) -> Value {
    let (status, body) = call(
        s,
        Method::POST,
        &quarantine_path(repo, digest),
        Some(json!({ "reason": reason })),
    )
    .await;
    assert_eq!(status, expected, "{body}");
    body
}

/// The `/v2/` error of `resp`: status, code and message.
async fn v2_error(resp: reqwest::Response) -> (StatusCode, String, String) {
    let status = resp.status();
    let body = json_body(resp).await;
    let error = &body["errors"][0];
    (
        status,
        error["code"].as_str().unwrap_or_default().to_owned(),
        error["message"].as_str().unwrap_or_default().to_owned(),
    )
}

/// Asserts that a GET of `path` is refused as quarantined, naming `digest` and `reason`.
async fn assert_refused(s: &TestServer, path: &str, digest: &str, reason: &str) {
    let (status, code, message) = v2_error(s.get(path).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::FORBIDDEN, "DENIED"),
        "GET {path}"
    );
    let expected = format!("image {digest} is quarantined: {reason}");
    assert!(
        message.contains(&expected),
        "GET {path}: {message:?} lacks {expected:?}"
    );
}

/// The status of `digest` in the listing of `repo` with `query`, if listed.
async fn listed_status(s: &TestServer, repo: &str, query: &str) -> Vec<(String, String)> {
    let (status, listing) = call(
        s,
        Method::GET,
        &format!("/repositories/{repo}/-/images{query}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{listing}");
    listing["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| {
            (
                i["digest"].as_str().unwrap().to_owned(),
                i["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// A quarantined image's GET is refused by tag and by digest, with the reason; its HEAD and
/// its layers are still served; the images API shows it quarantined; quarantining it again
/// replaces the reason (200) and keeps the time; a release makes it pullable again.
#[tokio::test]
async fn quarantined_image_is_refused_until_released() {
    let s = TestServer::start().await;
    let layer: &[u8] = b"a layer with a vulnerable openssl";
    let (digest, manifest) = s.push_image("app", "v1", &[layer]).await;
    let (other, _) = s
        .push_image("app", "v2", &[b"another layer".as_slice()])
        .await;
    let path = quarantine_path("app", &digest);

    let before = s.clock.now();
    let record = quarantine(&s, "app", &digest, REASON, StatusCode::CREATED).await;
    assert_eq!(record["digest"], digest);
    assert_eq!(record["reason"], REASON);
    assert_eq!(record["by"], "local administrator");
    assert_eq!(record["source"], "manual");
    let at = record["at"].as_i64().expect("at");
    assert!((before..=s.clock.now()).contains(&at), "{record}");
    let (status, shown) = call(&s, Method::GET, &path, None).await;
    assert_eq!((status, &shown), (StatusCode::OK, &record));

    for reference in ["v1", digest.as_str()] {
        let manifest_path = format!("/v2/app/manifests/{reference}");
        assert_refused(&s, &manifest_path, &digest, REASON).await;
        // A HEAD serves no content: containerd resolves with one before the GET whose
        // refusal it shows, so it is answered.
        let head = s.head(&manifest_path).await;
        assert_eq!(head.status(), StatusCode::OK, "HEAD {manifest_path}");
    }
    // The other image of the repository, and the layers of the quarantined one, are served.
    assert_eq!(s.get("/v2/app/manifests/v2").await.status(), StatusCode::OK);
    let blob = s.get(&format!("/v2/app/blobs/{}", sha256(layer))).await;
    assert_eq!(blob.status(), StatusCode::OK);
    assert_eq!(blob.bytes().await.unwrap().as_ref(), layer);

    assert_eq!(
        listed_status(&s, "app", "").await,
        [
            (other.clone(), "active".into()),
            (digest.clone(), "quarantined".into())
        ]
    );
    assert_eq!(
        listed_status(&s, "app", "?status=quarantined").await,
        [(digest.clone(), "quarantined".into())]
    );
    assert_eq!(
        listed_status(&s, "app", "?status=active").await,
        [(other.clone(), "active".into())]
    );
    let (_, detail) = call(
        &s,
        Method::GET,
        &format!("/repositories/app/-/images/{digest}"),
        None,
    )
    .await;
    assert_eq!(detail["status"], "quarantined");
    assert_eq!(
        detail["quarantine"],
        json!({ "reason": REASON, "by": "local administrator", "at": at, "source": "manual" })
    );

    s.clock.advance(60);
    let updated = quarantine(&s, "app", &digest, "superseded by v3", StatusCode::OK).await;
    assert_eq!(updated["reason"], "superseded by v3");
    assert_eq!(updated["at"], at, "held back since the first quarantine");
    assert_refused(&s, "/v2/app/manifests/v1", &digest, "superseded by v3").await;

    let (status, _) = call(&s, Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let pulled = s.get("/v2/app/manifests/v1").await;
    assert_eq!(pulled.status(), StatusCode::OK);
    assert_eq!(pulled.bytes().await.unwrap().as_ref(), manifest.as_slice());
    assert_eq!(
        s.head(&format!("/v2/app/manifests/{digest}"))
            .await
            .status(),
        StatusCode::OK
    );
    let (status, gone) = call(&s, Method::GET, &path, None).await;
    assert_eq!(
        (status, gone["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("NOT_FOUND"))
    );
    let (status, again) = call(&s, Method::DELETE, &path, None).await;
    assert_eq!(
        (status, again["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("NOT_FOUND"))
    );
    let (_, detail) = call(
        &s,
        Method::GET,
        &format!("/repositories/app/-/images/{digest}"),
        None,
    )
    .await;
    assert_eq!(detail["status"], "active");
    assert_eq!(detail["quarantine"], Value::Null);
    assert_eq!(listed_status(&s, "app", "?status=quarantined").await, []);
}

/// An index with a quarantined child is not pullable (by tag or digest), naming the child
/// and its reason; the other children are. A quarantined index is refused while its
/// children, pulled by digest, are not.
#[tokio::test]
async fn index_with_a_quarantined_child_is_refused() {
    let s = TestServer::start().await;
    let mut children = Vec::new();
    let mut descriptors = Vec::new();
    for architecture in ["amd64", "arm64"] {
        let config = image_config("linux", architecture, None);
        let layer = format!("the {architecture} layer").into_bytes();
        let (digest, manifest) = s
            .push_image_with("multi", "", &config, &[layer.as_slice()])
            .await;
        let mut d = descriptor(OCI_MANIFEST, &manifest);
        d["platform"] = json!({ "os": "linux", "architecture": architecture });
        descriptors.push(d);
        children.push(digest);
    }
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors,
    }))
    .unwrap();
    let index_digest = s
        .put_manifest_ok("multi", "latest", OCI_INDEX, &index)
        .await;
    // The same platforms as a Docker manifest list: refused alike.
    let list = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": descriptors,
    }))
    .unwrap();
    let list_digest = s
        .put_manifest_ok("multi", "docker", DOCKER_LIST, &list)
        .await;
    let (amd64, arm64) = (&children[0], &children[1]);

    quarantine(
        &s,
        "multi",
        arm64,
        "arm64 build ships a backdoored xz",
        StatusCode::CREATED,
    )
    .await;
    for (reference, index) in [
        ("latest", &index_digest),
        (index_digest.as_str(), &index_digest),
        ("docker", &list_digest),
    ] {
        let path = format!("/v2/multi/manifests/{reference}");
        assert_refused(&s, &path, arm64, "arm64 build ships a backdoored xz").await;
        let (_, _, message) = v2_error(s.get(&path).await).await;
        assert!(
            message.contains(&format!("a platform of index {index}")),
            "{message}"
        );
        assert_eq!(s.head(&path).await.status(), StatusCode::OK);
    }
    assert_refused(
        &s,
        &format!("/v2/multi/manifests/{arm64}"),
        arm64,
        "arm64 build ships a backdoored xz",
    )
    .await;
    assert_eq!(
        s.get(&format!("/v2/multi/manifests/{amd64}"))
            .await
            .status(),
        StatusCode::OK
    );
    // The index has no quarantine of its own, but is held back from pulls: its status says
    // so, in the detail and in the listing's quarantined filter.
    let (_, detail) = call(
        &s,
        Method::GET,
        &format!("/repositories/multi/-/images/{index_digest}"),
        None,
    )
    .await;
    assert_eq!(detail["quarantine"], Value::Null);
    assert_eq!(detail["status"], "quarantined");
    let held = listed_status(&s, "multi", "?status=quarantined").await;
    assert!(
        held.contains(&(index_digest.clone(), "quarantined".to_owned())),
        "{held:?}"
    );
    assert!(
        !listed_status(&s, "multi", "?status=active")
            .await
            .iter()
            .any(|(d, _)| d == &index_digest)
    );

    let (status, _) = call(&s, Method::DELETE, &quarantine_path("multi", arm64), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        s.get("/v2/multi/manifests/latest").await.status(),
        StatusCode::OK
    );
    assert!(
        listed_status(&s, "multi", "?status=active")
            .await
            .contains(&(index_digest.clone(), "active".to_owned()))
    );

    quarantine(
        &s,
        "multi",
        &index_digest,
        "whole release withdrawn",
        StatusCode::CREATED,
    )
    .await;
    assert_refused(
        &s,
        "/v2/multi/manifests/latest",
        &index_digest,
        "whole release withdrawn",
    )
    .await;
    for child in &children {
        assert_eq!(
            s.get(&format!("/v2/multi/manifests/{child}"))
                .await
                .status(),
            StatusCode::OK,
            "a child of a quarantined index is not quarantined itself"
        );
    }
}

/// Maintainers and administrators may quarantine and release (the delete right); reporters
/// and developers may read the quarantine but not set or release it; anonymous callers are
/// asked to sign in. Every client, whatever its rights, is refused the quarantined manifest.
/// Quarantine and release are in the audit log with actor, image and reason.
#[tokio::test]
async fn quarantine_needs_the_delete_right_and_is_audited() {
    let mut s = start_auth(|_| {}).await;
    for user in ["reader", "dev", "maint"] {
        s.create_user(user).await;
    }
    s.admin_api(
        Method::POST,
        "/namespaces",
        Some(json!({ "name": "team", "visibility": "private" })),
    )
    .await;
    s.set_role("team", "reader", "reporter").await;
    s.set_role("team", "dev", "developer").await;
    s.set_role("team", "maint", "maintainer").await;
    s.sign_in(ADMIN, ADMIN_PASSWORD);
    let (digest, _) = s
        .push_image("team/app", "v1", &[b"team layer".as_slice()])
        .await;
    let path = quarantine_path("team/app", &digest);
    let body = Some(json!({ "reason": REASON }));
    let reader = ("reader", password_of("reader"));
    let dev = ("dev", password_of("dev"));
    let maint = ("maint", password_of("maint"));

    for who in [&reader, &dev] {
        let refused = s
            .api_as(Some((who.0, &who.1)), Method::POST, &path, body.clone())
            .await;
        assert_eq!(
            refused.status(),
            StatusCode::FORBIDDEN,
            "{} may not quarantine",
            who.0
        );
        let code = json_body(refused).await["error"]["code"].clone();
        assert_eq!(code, "DENIED");
    }
    let anonymous = s.api_as(None, Method::POST, &path, body.clone()).await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let anonymous = s.api_as(None, Method::DELETE, &path, None).await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    let created = s
        .api_as(Some((maint.0, &maint.1)), Method::POST, &path, body.clone())
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    assert_eq!(json_body(created).await["by"], "maint");

    let shown = s
        .api_as(Some((reader.0, &reader.1)), Method::GET, &path, None)
        .await;
    assert_eq!(shown.status(), StatusCode::OK);
    assert_eq!(json_body(shown).await["reason"], REASON);
    let released_by_dev = s
        .api_as(Some((dev.0, &dev.1)), Method::DELETE, &path, None)
        .await;
    assert_eq!(released_by_dev.status(), StatusCode::FORBIDDEN);

    // The reader's pull (and the administrator's) is refused with the reason.
    s.sign_in(reader.0, &reader.1);
    assert_refused(&s, "/v2/team/app/manifests/v1", &digest, REASON).await;
    s.sign_in(ADMIN, ADMIN_PASSWORD);
    assert_refused(&s, "/v2/team/app/manifests/v1", &digest, REASON).await;

    let released = s
        .api_as(Some((ADMIN, ADMIN_PASSWORD)), Method::DELETE, &path, None)
        .await;
    assert_eq!(released.status(), StatusCode::NO_CONTENT);
    let again = s
        .api_as(
            Some((ADMIN, ADMIN_PASSWORD)),
            Method::POST,
            &path,
            Some(json!({ "reason": "held by the admin" })),
        )
        .await;
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(json_body(again).await["by"], ADMIN);

    let audit = s.admin_api(Method::GET, "/audit?limit=1000", None).await;
    let entries: Vec<(String, String, String, Value)> = audit["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|e| {
            e["action"]
                .as_str()
                .is_some_and(|a| a.starts_with("image."))
        })
        .map(|e| {
            (
                e["actor"].as_str().unwrap().to_owned(),
                e["action"].as_str().unwrap().to_owned(),
                e["target"].as_str().unwrap().to_owned(),
                serde_json::from_str(e["detail"].as_str().unwrap()).unwrap(),
            )
        })
        .collect();
    let target = format!("team/app@{digest}");
    let detail =
        |reason: &str| json!({ "repository": "team/app", "digest": digest, "reason": reason });
    assert_eq!(
        entries,
        [
            (
                ADMIN.into(),
                "image.quarantine".into(),
                target.clone(),
                detail("held by the admin")
            ),
            (
                ADMIN.into(),
                "image.release".into(),
                target.clone(),
                detail(REASON)
            ),
            (
                "maint".into(),
                "image.quarantine".into(),
                target.clone(),
                detail(REASON)
            ),
        ],
        "newest first; refused attempts are not recorded"
    );
}

/// Every bad input is refused with a JSON problem: a missing, empty, blank, too long or
/// multi-line reason, an unknown field, a body that is not JSON, a malformed or unknown
/// digest, an unknown repository, a method the resource does not serve.
#[tokio::test]
async fn bad_quarantine_requests_are_refused() {
    let s = TestServer::start().await;
    let (digest, _) = s.push_image("app", "v1", &[b"layer".as_slice()]).await;
    let path = quarantine_path("app", &digest);

    let longest = "x".repeat(1024);
    let too_long = "é".repeat(513);
    for (body, why) in [
        (json!({}), "missing reason"),
        (json!({ "reason": "" }), "empty reason"),
        (json!({ "reason": "   " }), "blank reason"),
        (json!({ "reason": too_long }), "reason over 1 KiB"),
        (json!({ "reason": "two\nlines" }), "line break"),
        (json!({ "reason": "ansi \u{1b}[31mred" }), "escape sequence"),
        (json!({ "reason": 42 }), "reason not a string"),
        (json!({ "reason": "ok", "until": 5 }), "unknown field"),
        (json!(["reason"]), "not an object"),
    ] {
        let (status, problem) = call(&s, Method::POST, &path, Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{why}: {problem}");
        assert_eq!(problem["error"]["code"], "BAD_REQUEST", "{why}");
    }
    let not_json = s
        .req(Method::POST, &format!("/api/v1{path}"))
        .header("content-type", "application/json")
        .body("reason=x")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), StatusCode::BAD_REQUEST);
    let no_body = s
        .req(Method::POST, &format!("/api/v1{path}"))
        .send()
        .await
        .unwrap();
    assert!(no_body.status().is_client_error(), "{}", no_body.status());
    assert_eq!(
        s.get("/v2/app/manifests/v1").await.status(),
        StatusCode::OK,
        "nothing was quarantined"
    );

    let (status, problem) = call(&s, Method::POST, &path, Some(json!({ "reason": "" }))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(problem["error"]["details"], json!({ "field": "reason" }));
    let record = quarantine(&s, "app", &digest, &longest, StatusCode::CREATED).await;
    assert_eq!(
        record["reason"], longest,
        "1024 bytes is the limit, included"
    );

    let unknown = unknown_digest();
    for method in [Method::POST, Method::GET, Method::DELETE] {
        let (status, problem) = call(
            &s,
            method.clone(),
            &quarantine_path("app", &unknown),
            Some(json!({ "reason": REASON })),
        )
        .await;
        assert_eq!(
            (status, problem["error"]["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("MANIFEST_UNKNOWN")),
            "{method} of an unknown digest"
        );
        let (status, problem) = call(
            &s,
            method.clone(),
            &quarantine_path("nowhere", &digest),
            Some(json!({ "reason": REASON })),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "{method} in an unknown repository: {problem}"
        );
        let (status, problem) = call(
            &s,
            method.clone(),
            &quarantine_path("app", "sha256:not-hex"),
            Some(json!({ "reason": REASON })),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{method} of a malformed digest"
        );
        assert_eq!(
            problem["error"]["details"],
            json!({ "parameter": "digest" })
        );
    }
    let (status, problem) = call(&s, Method::PUT, &path, Some(json!({ "reason": REASON }))).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{problem}");
    let bad_status = s.get("/api/v1/repositories/app/-/images?status=held").await;
    assert_eq!(bad_status.status(), StatusCode::BAD_REQUEST);
}

/// Deleting a quarantined manifest deletes its quarantine: the same manifest pushed again
/// is pullable, and its tag's repush does not bring the quarantine back.
#[tokio::test]
async fn deleting_a_quarantined_manifest_removes_its_quarantine() {
    let s = TestServer::start().await;
    let (digest, manifest) = s.push_image("app", "v1", &[b"layer".as_slice()]).await;
    quarantine(&s, "app", &digest, REASON, StatusCode::CREATED).await;
    let deleted = s.delete(&format!("/v2/app/manifests/{digest}")).await;
    assert_eq!(deleted.status(), StatusCode::ACCEPTED);
    let (status, problem) = call(&s, Method::GET, &quarantine_path("app", &digest), None).await;
    assert_eq!(
        (status, problem["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("MANIFEST_UNKNOWN"))
    );

    s.put_manifest_ok("app", "v1", OCI_MANIFEST, &manifest)
        .await;
    assert_eq!(s.get("/v2/app/manifests/v1").await.status(), StatusCode::OK);
    let (status, _) = call(&s, Method::GET, &quarantine_path("app", &digest), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        listed_status(&s, "app", "").await,
        [(digest, "active".into())]
    );

    // A deleted repository takes its quarantines with it.
    let (digest, _) = s.push_image("gone", "v1", &[b"layer".as_slice()]).await;
    quarantine(&s, "gone", &digest, REASON, StatusCode::CREATED).await;
    let (status, _) = call(&s, Method::DELETE, "/repositories/gone", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    s.push_image("gone", "v1", &[b"layer".as_slice()]).await;
    assert_eq!(
        s.get("/v2/gone/manifests/v1").await.status(),
        StatusCode::OK
    );
}

/// Refused pulls are not pulls: after three refused GETs and one served after the release,
/// the image and its repository count one pull (the statistics are flushed at shutdown).
#[tokio::test]
async fn refused_pulls_are_not_counted() {
    let s = TestServer::start().await;
    let (digest, _) = s.push_image("app", "v1", &[b"layer".as_slice()]).await;
    quarantine(&s, "app", &digest, REASON, StatusCode::CREATED).await;
    for path in [
        "/v2/app/manifests/v1",
        &format!("/v2/app/manifests/{digest}"),
    ] {
        assert_error(s.get(path).await, 403, "DENIED").await;
    }
    assert_error(s.get("/v2/app/manifests/v1").await, 403, "DENIED").await;
    let (status, _) = call(&s, Method::DELETE, &quarantine_path("app", &digest), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(s.get("/v2/app/manifests/v1").await.status(), StatusCode::OK);

    let s = TestServer::start_in(s.stop().await, |_| {}).await;
    let (_, detail) = call(
        &s,
        Method::GET,
        &format!("/repositories/app/-/images/{digest}"),
        None,
    )
    .await;
    assert_eq!(detail["pull_count"], 1, "{detail}");
    let (_, repository) = call(&s, Method::GET, "/repositories/app", None).await;
    assert_eq!(repository["pull_count"], 1, "{repository}");
}

/// The collector removes an untagged quarantined manifest (its quarantine does not keep it)
/// and the quarantine with it: the same manifest pushed again is pullable.
#[tokio::test]
async fn collected_manifest_takes_its_quarantine() {
    let s = TestServer::start().await;
    let (digest, manifest) = s
        .push_image("app", "", &[b"untagged layer".as_slice()])
        .await;
    quarantine(&s, "app", &digest, REASON, StatusCode::CREATED).await;
    let (status, run) = call(
        &s,
        Method::POST,
        "/gc/runs",
        Some(json!({ "wait": true, "remove_untagged": true, "grace_secs": 0 })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{run}");
    let (status, problem) = call(&s, Method::GET, &quarantine_path("app", &digest), None).await;
    assert_eq!(
        (status, problem["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("MANIFEST_UNKNOWN")),
        "collected: {run}"
    );
    s.push_image("app", "", &[b"untagged layer".as_slice()])
        .await;
    let pulled = s.get(&format!("/v2/app/manifests/{digest}")).await;
    assert_eq!(pulled.status(), StatusCode::OK);
    assert_eq!(pulled.bytes().await.unwrap().as_ref(), manifest.as_slice());
}

/// The scanner's own reads are not pulls: a quarantined image is scanned (its inventory is
/// what the reason may be about) while its pull stays refused.
#[tokio::test]
async fn a_quarantined_image_is_still_scanned() {
    let s = TestServer::start().await;
    let mut tar = tar::Builder::new(Vec::new());
    for (path, data) in [
        (
            "etc/os-release",
            b"ID=debian\nVERSION_ID=\"12\"\n".as_slice(),
        ),
        (
            "var/lib/dpkg/status",
            b"Package: openssl\nStatus: install ok installed\nArchitecture: amd64\n\
              Version: 3.0.11-1~deb12u1\nDescription: a package\n\n"
                .as_slice(),
        ),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o644);
        header.set_size(data.len() as u64);
        tar.append_data(&mut header, path, data).expect("tar entry");
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &tar.into_inner().expect("tar")).expect("gzip");
    let layer = gz.finish().expect("gzip");
    let (digest, _) = s.push_image("app", "v1", &[layer.as_slice()]).await;
    quarantine(&s, "app", &digest, REASON, StatusCode::CREATED).await;

    let (status, scan) = call(
        &s,
        Method::POST,
        &format!("/repositories/app/-/images/{digest}/scan?wait=true"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{scan}");
    assert_eq!(
        (scan["status"].as_str(), scan["packages"].as_i64()),
        (Some("ok"), Some(1)),
        "{scan}"
    );
    assert_refused(&s, "/v2/app/manifests/v1", &digest, REASON).await;
}
