//! The words the seed's API used, taken beside Berth's own: cleanup cadences
//! (`daily|weekly|monthly`), `older_than` as a number of days, a collection's
//! `remove_untagged` and `grace_secs`, and the estimate's `grace_secs`; typed request bodies
//! in the OpenAPI document, and a JSON problem for every 405 of `/api/v1`; anonymous pulls of
//! a private or missing repository answered as Docker Hub answers them.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{
    OCI_MANIFEST, TestServer,
    auth::{ADMIN, ADMIN_PASSWORD, basic, password_of, start_auth},
    error_code, header, json_body, sha256,
};

const DAY: i64 = 86_400;

/// A server whose configured grace period (an hour) and `gc.untagged` (off) are the
/// defaults a request overrides; its own worker never ticks during a test.
async fn server() -> TestServer {
    TestServer::start_with(|c| {
        c.gc.grace_secs = 3600;
        c.gc.untagged = false;
        c.gc.review_delay_secs = 3600;
        c.gc.poll_millis = 3_600_000;
        c.gc.schedule_secs = 0;
    })
    .await
}

async fn put_policy(s: &TestServer, name: &str, body: Value) -> (StatusCode, Value) {
    let resp = s
        .req(Method::PUT, &format!("/api/v1/policies/{name}"))
        .json(&body)
        .send()
        .await
        .expect("PUT policy");
    (resp.status(), json_body(resp).await)
}

/// Asserts a 400 whose message names `field`.
fn assert_names(status: StatusCode, body: &Value, field: &str) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(field), "{field} not named in {body}");
}

#[tokio::test]
async fn cadence_words_schedule_like_their_durations() {
    let s = server().await;
    for (word, secs) in [("daily", DAY), ("weekly", 7 * DAY), ("monthly", 30 * DAY)] {
        let before = s.clock.now();
        let (status, saved) = put_policy(
            &s,
            word,
            json!({ "repository": "app", "name_regex": ".*", "enabled": true, "cadence": word }),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{saved}");
        assert_eq!(
            saved["cadence"], word,
            "the policy keeps the word it was given"
        );
        // The save read the clock between `before` and now (a second may tick meanwhile).
        let next = saved["next_run_at"].as_i64().unwrap();
        assert!(
            (before + secs..=s.clock.now() + secs).contains(&next),
            "{word} runs every {secs} s: next at {next}, saved at {before}"
        );
    }
    for bad in ["fortnightly", "Daily", "2d", ""] {
        let (status, body) = put_policy(
            &s,
            "bad",
            json!({ "repository": "app", "name_regex": ".*", "cadence": bad }),
        )
        .await;
        assert_names(status, &body, "cadence");
        assert_eq!(body["error"]["code"], "INVALID_POLICY");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("daily, weekly, monthly"),
            "the message lists the words: {body}"
        );
    }
}

#[tokio::test]
async fn older_than_takes_days_as_a_number_or_a_string() {
    let s = server().await;
    for (given, kept) in [
        (json!(90), "90d"),
        (json!("90"), "90"),
        (json!("90d"), "90d"),
        (json!("1month"), "1month"),
    ] {
        let (status, saved) = put_policy(
            &s,
            "old",
            json!({ "repository": "app", "name_regex": ".*", "older_than": given }),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{given}: {saved}");
        assert_eq!(saved["older_than"], kept, "{given}");
    }
    let shown = json_body(s.get("/api/v1/policies/old").await).await;
    assert_eq!(shown["older_than"], "1month");

    for bad in [
        json!(-5),
        json!(1.5),
        json!(true),
        json!("ninety"),
        json!(""),
    ] {
        let (status, body) = put_policy(
            &s,
            "old",
            json!({ "repository": "app", "name_regex": ".*", "older_than": bad }),
        )
        .await;
        assert_names(status, &body, "older_than");
        assert_eq!(body["error"]["code"], "INVALID_POLICY", "{bad}");
    }
}

/// A policy with `older_than: 90` (days) keeps a tag pushed 89 days ago and deletes it
/// once it is 91 days old; so does bulk tag deletion with `older_than=90`.
#[tokio::test]
async fn older_than_in_days_decides_by_age() {
    let s = server().await;
    s.push_image("app", "v1", &[b"old layer"]).await;
    let (status, body) = put_policy(
        &s,
        "age",
        json!({ "repository": "app", "name_regex": ".*", "older_than": 90 }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let run = |s: &TestServer| {
        s.req(Method::POST, "/api/v1/policies/age/runs")
            .json(&json!({ "dry_run": true }))
            .send()
    };
    // Bulk tag deletion reads its `older_than` the same way.
    let bulk = "/api/v1/repositories/app/-/tags?name_regex_delete=.*&older_than=90&dry_run=true";
    s.clock.advance(89 * DAY);
    let preview = json_body(run(&s).await.unwrap()).await;
    assert_eq!(preview["removed"], json!([]), "89 days old is kept");
    assert_eq!(json_body(s.delete(bulk).await).await["removed"], json!([]));
    s.clock.advance(2 * DAY);
    let preview = json_body(run(&s).await.unwrap()).await;
    assert_eq!(preview["removed"][0]["tag"], "v1", "{preview}");
    let removed = json_body(s.delete(bulk).await).await;
    assert_eq!(removed["removed"][0]["tag"], "v1", "{removed}");

    let bad = s
        .delete("/api/v1/repositories/app/-/tags?name_regex_delete=.*&older_than=-5")
        .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let bad = json_body(bad).await;
    assert!(
        bad["error"]["message"]
            .as_str()
            .unwrap()
            .contains("older_than"),
        "{bad}"
    );
}

async fn estimate(s: &TestServer, query: &str) -> (StatusCode, Value) {
    let resp = s.get(&format!("/api/v1/gc/estimate{query}")).await;
    (resp.status(), json_body(resp).await)
}

async fn post_run(s: &TestServer, body: Value) -> (StatusCode, Value) {
    let resp = s
        .req(Method::POST, "/api/v1/gc/runs")
        .json(&body)
        .send()
        .await
        .expect("POST gc run");
    (resp.status(), json_body(resp).await)
}

/// Right after a delete the configured hour of grace hides the freed bytes; the estimate
/// with `grace_secs=0` reports them, and a run with `grace_secs: 0` frees exactly them.
#[tokio::test]
async fn estimate_with_no_grace_reports_what_a_delete_freed() {
    let s = server().await;
    let layer = b"bytes only this image holds".as_slice();
    let (digest, _) = s.push_image("app", "v1", &[layer]).await;
    let resp = s.delete(&format!("/v2/app/manifests/{digest}")).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);

    let (status, configured) = estimate(&s, "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(configured["grace_secs"], 3600);
    assert_eq!(configured["reclaimable_bytes"], 0, "{configured}");

    let (status, now) = estimate(&s, "?grace_secs=0").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(now["grace_secs"], 0);
    assert_eq!(
        now["reclaimable_blobs"], 2,
        "the layer and the config: {now}"
    );
    let freed = now["reclaimable_bytes"].as_i64().unwrap();
    assert!(freed > layer.len() as i64, "{now}");

    let (status, run) = post_run(&s, json!({ "wait": true, "grace_secs": 0 })).await;
    assert_eq!(status, StatusCode::CREATED, "{run}");
    assert_eq!(
        run["bytes"], freed,
        "the run frees what the estimate said: {run}"
    );
    assert_eq!(
        estimate(&s, "?grace_secs=0").await.1["reclaimable_bytes"],
        0
    );
}

/// `remove_untagged` collects an untagged image although `gc.untagged` is off; without it
/// the configuration decides and the image stays.
#[tokio::test]
async fn remove_untagged_overrides_the_configuration_for_one_run() {
    let s = server().await;
    let (digest, _) = s.push_image("app", "v1", &[b"soon untagged"]).await;
    assert_eq!(
        s.delete("/v2/app/manifests/v1").await.status(),
        StatusCode::ACCEPTED
    );

    let (_, kept) = post_run(&s, json!({ "wait": true, "grace_secs": 0 })).await;
    assert_eq!(kept["manifests"], 0, "gc.untagged is off: {kept}");
    let by_digest = format!("/v2/app/manifests/{digest}");
    assert_eq!(s.get(&by_digest).await.status(), StatusCode::OK);

    let (status, run) = post_run(
        &s,
        json!({ "wait": true, "grace_secs": 0, "remove_untagged": true }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{run}");
    assert_eq!(run["manifests"], 1, "{run}");
    assert_eq!(run["blobs"], 2, "its layer and config: {run}");
    assert_eq!(s.get(&by_digest).await.status(), StatusCode::NOT_FOUND);
}

/// Runs the due jobs on a replica until queued run `id` has finished (a bounded number of
/// passes, no waiting); the finished run.
async fn finished_run(s: &TestServer, id: i64) -> Value {
    let replica = s.replica().await;
    for _ in 0..10 {
        let resp = s.get(&format!("/api/v1/gc/runs/{id}")).await;
        let run = json_body(resp).await;
        if run["state"] == "done" || run["state"] == "failed" {
            replica.close().await;
            return run;
        }
        replica
            .run_due_jobs("test-replica")
            .await
            .expect("jobs run");
    }
    panic!("run {id} did not finish");
}

/// A queued run keeps the options it was asked for: with `grace_secs: 0` it frees what was
/// just deleted although the configured grace period is an hour, and `remove_untagged`
/// collects an untagged image although `gc.untagged` is off; the worker that runs it reads
/// them from the run.
#[tokio::test]
async fn a_queued_run_uses_its_own_options() {
    let s = server().await;
    let (digest, _) = s
        .push_image("app", "v1", &[b"bytes a queued run frees"])
        .await;
    let resp = s.delete(&format!("/v2/app/manifests/{digest}")).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let freed = estimate(&s, "?grace_secs=0").await.1["reclaimable_bytes"]
        .as_i64()
        .unwrap();
    assert!(freed > 0);

    let (status, queued) = post_run(&s, json!({ "grace_secs": 0 })).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    assert_eq!(queued["state"], "queued", "{queued}");
    let run = finished_run(&s, queued["id"].as_i64().unwrap()).await;
    assert_eq!(run["state"], "done", "{run}");
    assert_eq!(run["blobs"], 2, "the layer and the config: {run}");
    assert_eq!(run["bytes"], freed, "{run}");
    assert_eq!(
        estimate(&s, "?grace_secs=0").await.1["reclaimable_bytes"],
        0
    );

    let (untagged, _) = s.push_image("app", "v2", &[b"soon untagged, queued"]).await;
    assert_eq!(
        s.delete("/v2/app/manifests/v2").await.status(),
        StatusCode::ACCEPTED
    );
    let (_, kept) = post_run(&s, json!({ "grace_secs": 0 })).await;
    let kept = finished_run(&s, kept["id"].as_i64().unwrap()).await;
    assert_eq!(kept["manifests"], 0, "gc.untagged is off: {kept}");
    let (_, queued) = post_run(&s, json!({ "grace_secs": 0, "remove_untagged": true })).await;
    let run = finished_run(&s, queued["id"].as_i64().unwrap()).await;
    assert_eq!(run["manifests"], 1, "{run}");
    assert_eq!(run["blobs"], 2, "its layer and config: {run}");
    let by_digest = format!("/v2/app/manifests/{untagged}");
    assert_eq!(s.get(&by_digest).await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_gc_options_are_refused_naming_them() {
    let s = server().await;
    for (body, field) in [
        (json!({ "wait": true, "grace_secs": -1 }), "grace_secs"),
        (json!({ "wait": true, "grace_secs": "0" }), "grace_secs"),
        (
            json!({ "wait": true, "grace_secs": u64::MAX }),
            "grace_secs",
        ),
        (
            json!({ "wait": true, "remove_untagged": "yes" }),
            "remove_untagged",
        ),
        // Queued runs take the same options, checked the same way.
        (json!({ "remove_untagged": "yes" }), "remove_untagged"),
        (json!({ "grace_secs": u64::MAX }), "grace_secs"),
        (json!({ "wait": true, "grace": 0 }), "grace"),
    ] {
        let (status, problem) = post_run(&s, body.clone()).await;
        assert_names(status, &problem, field);
        assert_eq!(problem["error"]["code"], "BAD_REQUEST", "{body}");
    }
    for (query, field) in [
        ("?grace_secs=-1", "grace_secs"),
        ("?grace_secs=soon", "grace_secs"),
        ("?grace_secs=18446744073709551615", "grace_secs"),
        ("?grace=0", "grace"),
    ] {
        let (status, problem) = estimate(&s, query).await;
        assert_names(status, &problem, field);
    }
    let runs = json_body(s.get("/api/v1/gc/runs").await).await;
    assert_eq!(runs["items"], json!([]), "no refused request ran: {runs}");
}

/// The schema `schema` names, following `$ref`s into the document's components.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(target) => {
            let name = target
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("unexpected $ref {target}"));
            let named = &doc["components"]["schemas"][name];
            assert!(named.is_object(), "{target} is not in the document");
            resolve(doc, named)
        }
        None => schema,
    }
}

/// The property names of `schema`, through `$ref`s and `allOf` (a flattened struct), sorted.
fn properties(doc: &Value, schema: &Value) -> Vec<String> {
    let schema = resolve(doc, schema);
    let mut names: Vec<String> = schema["properties"]
        .as_object()
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    for part in schema["allOf"].as_array().into_iter().flatten() {
        names.extend(properties(doc, part));
    }
    names.sort();
    names
}

/// Every operation that takes a body documents it as a typed JSON schema with its fields,
/// so a client generated from the document gets them (no bare `object`). The actions that
/// take no body at all are named here, so that a body left undocumented still fails.
#[tokio::test]
async fn every_request_body_is_a_typed_schema() {
    const BODYLESS: [&str; 3] = [
        "post /api/v1/proxy/evict",
        "post /api/v1/replication/rules/{name}/run",
        "post /api/v1/webhooks/{id}/deliveries/{delivery}/redeliver",
    ];
    let s = TestServer::start().await;
    let doc = json_body(s.get("/api/v1/openapi.json").await).await;
    let mut checked = Vec::new();
    for (path, operations) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in operations.as_object().unwrap() {
            if !["post", "put", "patch"].contains(&method.as_str()) {
                continue;
            }
            if BODYLESS.contains(&format!("{method} {path}").as_str()) {
                assert!(
                    operation.get("requestBody").is_none(),
                    "{method} {path} is listed as bodyless but documents a body"
                );
                continue;
            }
            let schema = &operation["requestBody"]["content"]["application/json"]["schema"];
            assert!(
                schema.is_object(),
                "{method} {path} documents no JSON request body: {operation}"
            );
            let fields = properties(&doc, schema);
            assert!(!fields.is_empty(), "{method} {path}: a body without fields");
            checked.push((format!("{method} {path}"), fields));
        }
    }
    let fields_of = |operation: &str| -> Vec<String> {
        checked
            .iter()
            .find(|(o, _)| o == operation)
            .unwrap_or_else(|| panic!("{operation} not documented"))
            .1
            .clone()
    };
    let gc_run = fields_of("post /api/v1/gc/runs");
    for field in ["dry_run", "wait", "grace_secs", "remove_untagged"] {
        assert!(gc_run.contains(&field.to_owned()), "gc run lacks {field}");
    }
    let policy = fields_of("put /api/v1/policies/{name}");
    for field in [
        "repository",
        "repositories",
        "cadence",
        "older_than",
        "name_regex",
        "ecr",
    ] {
        assert!(policy.contains(&field.to_owned()), "policy lacks {field}");
    }
    assert_eq!(
        fields_of("post /api/v1/users/{name}/tokens"),
        ["expires_at", "name", "scopes"]
    );
    assert_eq!(
        fields_of("put /api/v1/namespaces/{ns}/members/{user}"),
        ["role"]
    );
    let estimate: Vec<&str> = doc["paths"]["/api/v1/gc/estimate"]["get"]["parameters"]
        .as_array()
        .expect("estimate parameters")
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(estimate, ["grace_secs"]);
}

/// A documented path asked with a method it does not serve answers 405 with the JSON
/// problem every other refusal has (axum's own 405 has an empty body).
#[tokio::test]
async fn every_wrong_method_is_a_json_problem() {
    let s = TestServer::start().await;
    let doc = json_body(s.get("/api/v1/openapi.json").await).await;
    let digest = sha256(b"no such image");
    let mut tried = 0;
    for (path, operations) in doc["paths"].as_object().expect("paths") {
        let served: Vec<String> = operations
            .as_object()
            .unwrap()
            .keys()
            .map(|m| m.to_uppercase())
            .collect();
        // Path parameters get values that parse, so the method is what is refused.
        let concrete = path
            .replace("{id}", "1")
            .replace("{digest}", &digest)
            .replace("repositories/{name}", "repositories/doc/check")
            .replace(['{', '}'], "");
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            if served.iter().any(|m| m == method) {
                continue;
            }
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            let resp = s.req(method.clone(), &concrete).send().await.unwrap();
            let status = resp.status();
            if let Some(allow) = header(&resp, "allow") {
                for documented in &served {
                    assert!(allow.contains(documented.as_str()), "{path}: Allow {allow}");
                }
            }
            let body = resp.text().await.unwrap();
            assert_eq!(
                status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}: {body}"
            );
            let problem: Value = serde_json::from_str(&body)
                .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {body:?}"));
            assert_eq!(
                problem["error"]["code"], "METHOD_NOT_ALLOWED",
                "{method} {path}"
            );
            assert!(problem["error"]["message"].is_string(), "{problem}");
            tried += 1;
        }
    }
    assert!(tried > 40, "only {tried} wrong methods tried");
}

/// One `/v2/` read with `authorization` (none: anonymous): status, challenge, spec code.
async fn read_as(
    s: &TestServer,
    authorization: Option<&str>,
    method: Method,
    path: &str,
) -> (StatusCode, Option<String>, String) {
    let mut req = reqwest::Client::new()
        .request(method.clone(), s.url(path))
        .header("accept", OCI_MANIFEST);
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    let resp = req.send().await.expect("read");
    let status = resp.status();
    let challenge = header(&resp, "www-authenticate");
    let code = if status.is_success() || method == Method::HEAD {
        String::new()
    } else {
        error_code(resp).await
    };
    (status, challenge, code)
}

/// Docker Hub's answer: an anonymous read of a private repository and of one that does not
/// exist get the same 401 with the challenge naming the pull scope (with an anonymous token
/// already, `insufficient_scope`), so `docker pull` says to log in and private stays
/// indistinguishable from missing. Signed-in callers without the right keep the 404s; a
/// public repository stays open to anonymous pulls.
#[tokio::test]
async fn anonymous_pulls_of_private_or_missing_repositories_are_challenged() {
    let mut s = start_auth(|_| {}).await;
    s.admin_api(
        Method::POST,
        "/namespaces",
        Some(json!({ "name": "team", "visibility": "private" })),
    )
    .await;
    s.admin_api(
        Method::POST,
        "/namespaces",
        Some(json!({ "name": "open", "visibility": "public" })),
    )
    .await;
    s.create_user("outsider").await;
    s.sign_in(ADMIN, ADMIN_PASSWORD);
    let (digest, _) = s.push_image("team/secret", "v1", &[b"private layer"]).await;
    let (public_digest, _) = s.push_image("open/app", "v1", &[b"public layer"]).await;

    let anonymous_token = s.bearer(None, &["repository:team/secret:pull"]).await;
    let missing_token = s.bearer(None, &["repository:team/nothing:pull"]).await;
    let public_missing_token = s.bearer(None, &["repository:open/nothing:pull"]).await;
    let realm = format!("Bearer realm=\"{}/token\",service=\"berth\"", s.base);
    for (repo, token) in [
        ("team/secret", &anonymous_token),
        ("team/nothing", &missing_token),
        ("open/nothing", &public_missing_token),
    ] {
        let scope = format!(",scope=\"repository:{repo}:pull\"");
        for path in [
            format!("/v2/{repo}/manifests/v1"),
            format!("/v2/{repo}/manifests/{digest}"),
            format!("/v2/{repo}/blobs/{digest}"),
            format!("/v2/{repo}/tags/list"),
        ] {
            for method in [Method::GET, Method::HEAD] {
                let (status, challenge, code) = read_as(&s, None, method.clone(), &path).await;
                assert_eq!(
                    status,
                    StatusCode::UNAUTHORIZED,
                    "anonymous {method} {path}"
                );
                assert_eq!(
                    challenge,
                    Some(format!("{realm}{scope}")),
                    "{method} {path}"
                );
                if method == Method::GET {
                    assert_eq!(code, "UNAUTHORIZED", "{path}");
                }
                let (status, challenge, _) = read_as(&s, Some(token), method.clone(), &path).await;
                assert_eq!(
                    status,
                    StatusCode::UNAUTHORIZED,
                    "anonymous token {method} {path}"
                );
                assert_eq!(
                    challenge,
                    Some(format!("{realm}{scope},error=\"insufficient_scope\"")),
                    "{method} {path}"
                );
            }
        }
    }

    // Signed in without a role: today's answers, exactly what a missing repository gets.
    let outsider = basic("outsider", &password_of("outsider"));
    for repo in ["team/secret", "team/nothing"] {
        let manifest = format!("/v2/{repo}/manifests/v1");
        let (status, _, code) = read_as(&s, Some(&outsider), Method::GET, &manifest).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN")
        );
        let tags = format!("/v2/{repo}/tags/list");
        let (status, _, code) = read_as(&s, Some(&outsider), Method::GET, &tags).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::NOT_FOUND, "NAME_UNKNOWN")
        );
    }
    let (status, _, code) = read_as(
        &s,
        Some(&outsider),
        Method::GET,
        "/v2/open/nothing/manifests/v1",
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN"),
        "a signed-in reader of a public namespace learns it is missing"
    );

    // A public repository: anonymous pulls work, without and with an anonymous token, and
    // a tag it lacks is the usual 404.
    let public_token = s.bearer(None, &["repository:open/app:pull"]).await;
    for authorization in [None, Some(public_token.as_str())] {
        let (status, _, _) =
            read_as(&s, authorization, Method::GET, "/v2/open/app/manifests/v1").await;
        assert_eq!(status, StatusCode::OK);
        let by_digest = format!("/v2/open/app/manifests/{public_digest}");
        assert_eq!(
            read_as(&s, authorization, Method::HEAD, &by_digest).await.0,
            StatusCode::OK
        );
        let (status, _, code) =
            read_as(&s, authorization, Method::GET, "/v2/open/app/manifests/v2").await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN")
        );
    }
}
