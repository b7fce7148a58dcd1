//! Webhook events beyond push, delete and tag_moved, each through the receiver of
//! [`crate::webhooks`]: pulls (with their actor, sampled per subscription, never for a HEAD),
//! pulls refused by quarantine and by a trust policy (with the gate and the reason), scans and
//! new findings (after a scan and after an advisory import), signatures verified and failed,
//! collections and cleanup runs with their counts, quota refusals, replication; each in the
//! three payload formats; finished deliveries pruned after `webhooks.retention` on the moved
//! clock; and subscriptions to unknown events or with a sample rate out of range refused.

use std::collections::HashSet;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{
    common::{
        OCI_MANIFEST, TestServer,
        auth::{ADMIN, ADMIN_PASSWORD, password_of, start_auth},
        json_body, sha256,
    },
    scans::{GZIP_LAYER, debian_layers, import_openssl_and_zlib_advisories, push_layers, scan_now},
    signatures::{base_plan, push_cosign_tag, simple_signing},
    webhooks::{
        Answer, Got, Receiver, api, deliveries, log_until, manifest, push_blobs, server, subscribe,
    },
};

/// The Distribution event of a delivery.
fn event(got: &Got) -> Value {
    got.json()["events"][0].clone()
}

/// Subscribes `/d`, `/h` and `/c` of `r` (Distribution, Harbor, CloudEvents) to `events` of
/// `scope`.
async fn subscribe_all_formats(s: &TestServer, r: &Receiver, events: &[&str], scope: &str) {
    for (path, format) in [
        ("/d", "distribution"),
        ("/h", "harbor"),
        ("/c", "cloudevents"),
    ] {
        subscribe(
            s,
            json!({"url": r.url(path), "events": events, "format": format, "scope": scope}),
        )
        .await;
    }
}

/// A push, a pull and a delete by a signed-in user name that user as their actor:
/// Distribution's `actor.name`, Harbor's `operator`, CloudEvents' `data.actor`; the pull is
/// Distribution's `pull` action, Harbor's `PULL_ARTIFACT`, `io.berth.artifact.pulled`, with
/// the tag and digest it served.
#[tokio::test]
async fn pushes_pulls_and_deletes_name_who_did_them() {
    let mut s = start_auth(|c| {
        c.webhooks.allow_loopback = true;
        c.webhooks.poll_millis = 20;
    })
    .await;
    s.create_user("mia").await;
    s.set_role("acme", "mia", "maintainer").await;
    let r = Receiver::start().await;
    for (path, format) in [
        ("/d", "distribution"),
        ("/h", "harbor"),
        ("/c", "cloudevents"),
    ] {
        let resp = s
            .api_as(
                Some((ADMIN, ADMIN_PASSWORD)),
                Method::POST,
                "/webhooks",
                Some(
                    json!({"url": r.url(path), "events": ["push", "pull", "delete"],
                            "format": format, "scope": "acme"}),
                ),
            )
            .await;
        assert_eq!(resp.status(), StatusCode::CREATED);
    }
    s.sign_in("mia", &password_of("mia"));
    let (config, layer) = push_blobs(&s, "acme/app").await;
    let m = manifest(&config, &layer, 1);
    s.put_manifest_ok("acme/app", "v1", OCI_MANIFEST, &m).await;
    // A HEAD is no pull.
    assert_eq!(
        s.head("/v2/acme/app/manifests/v1").await.status(),
        StatusCode::OK
    );
    let resp = s.get("/v2/acme/app/manifests/v1").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = s.delete("/v2/acme/app/manifests/v1").await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);

    let d = r.wait_for("/d", 3).await;
    let seen: Vec<(String, String, String)> = d
        .iter()
        .map(|g| {
            let e = event(g);
            (
                e["action"].as_str().unwrap().to_owned(),
                e["actor"]["name"].as_str().unwrap_or("-").to_owned(),
                e["target"]["tag"].as_str().unwrap_or("-").to_owned(),
            )
        })
        .collect();
    let expected = |a: &str| (a.to_owned(), "mia".to_owned(), "v1".to_owned());
    assert_eq!(
        seen,
        [expected("push"), expected("pull"), expected("delete")]
    );
    assert_eq!(event(&d[1])["target"]["digest"], sha256(&m));
    assert_eq!(event(&d[1])["target"]["repository"], "acme/app");

    let h = r.wait_for("/h", 3).await;
    let types: Vec<Value> = h.iter().map(|g| g.json()["type"].clone()).collect();
    assert_eq!(
        types,
        [
            json!("PUSH_ARTIFACT"),
            json!("PULL_ARTIFACT"),
            json!("DELETE_ARTIFACT")
        ]
    );
    assert!(h.iter().all(|g| g.json()["operator"] == "mia"));
    let c = r.wait_for("/c", 3).await;
    let pulled = c[1].json();
    assert_eq!(pulled["type"], "io.berth.artifact.pulled");
    assert_eq!(pulled["data"]["actor"], "mia");
    assert_eq!(pulled["data"]["tag"], "v1");
    assert_eq!(pulled["subject"], "v1");
}

/// Each subscription gets its share of pulls: every one at the default rate, about a
/// quarter at 0.25 (200 pulls, 50 expected: the bounds are more than five standard
/// deviations out), none for a subscription without `pull`; HEADs are never
/// pulls.
#[tokio::test]
async fn pulls_are_sampled_per_subscription() {
    let s = server().await;
    let r = Receiver::start().await;
    let all = subscribe(
        &s,
        json!({"url": r.url("/all"), "events": ["pull"], "format": "distribution", "scope": "*"}),
    )
    .await;
    let quarter = subscribe(&s, json!({"url": r.url("/quarter"), "events": ["pull"], "format": "cloudevents", "scope": "acme", "pull_sample_rate": 0.25})).await;
    let pushes = subscribe(
        &s,
        json!({"url": r.url("/push"), "events": ["push"], "format": "distribution", "scope": "*"}),
    )
    .await;
    let shown = json_body(api(&s, Method::GET, &format!("/webhooks/{quarter}"), None).await).await;
    assert_eq!(shown["pull_sample_rate"], 0.25);

    let (config, layer) = push_blobs(&s, "acme/app").await;
    let m = manifest(&config, &layer, 1);
    s.put_manifest_ok("acme/app", "v1", OCI_MANIFEST, &m).await;
    let pulls = 200;
    for _ in 0..5 {
        assert_eq!(
            s.head("/v2/acme/app/manifests/v1").await.status(),
            StatusCode::OK
        );
    }
    for n in 0..pulls {
        let path = if n % 2 == 0 {
            "/v2/acme/app/manifests/v1".to_owned()
        } else {
            format!("/v2/acme/app/manifests/{}", sha256(&m))
        };
        assert_eq!(s.get(&path).await.status(), StatusCode::OK);
    }
    let got = r.wait_for_distinct("/all", pulls).await;
    let ids: HashSet<&str> = got
        .iter()
        .filter_map(|g| g.header("berth-event-id"))
        .collect();
    assert_eq!(ids.len(), pulls);
    assert!(got.iter().all(|g| event(g)["action"] == "pull"));
    let by_tag = got
        .iter()
        .filter(|g| event(g)["target"]["tag"] == "v1")
        .count();
    assert_eq!(by_tag, pulls / 2, "pulls by tag name it; by digest not");
    let log = log_until(&s, all, |log| {
        log.len() == pulls && log.iter().all(|d| d["state"] == "delivered")
    })
    .await;
    assert!(log.iter().all(|d| d["event"] == "pull"));
    let sampled = log_until(&s, quarter, |log| {
        log.iter().all(|d| d["state"] == "delivered")
    })
    .await
    .len();
    assert!(
        (15..=110).contains(&sampled),
        "{sampled} of {pulls} at 0.25"
    );
    let received = r.at("/quarter");
    assert!(
        received
            .iter()
            .all(|g| g.json()["type"] == "io.berth.artifact.pulled")
    );
    let push_log = log_until(&s, pushes, |log| {
        log.len() == 1 && log[0]["state"] == "delivered"
    })
    .await;
    assert_eq!(push_log[0]["event"], "push");
}

/// Subscriptions naming an event Berth does not have, or a sample rate outside (0, 1], are
/// refused with the field and the value; nothing is stored.
#[tokio::test]
async fn unknown_events_and_bad_sample_rates_are_refused() {
    let s = server().await;
    let r = Receiver::start().await;
    let good =
        json!({"url": r.url("/hook"), "events": ["pull"], "format": "distribution", "scope": "*"});
    let with = |key: &str, value: Value| {
        let mut body = good.clone();
        body[key] = value;
        body
    };
    for (body, field, says) in [
        (
            with("events", json!(["pull", "scan_complete"])),
            "events",
            "scan_complete",
        ),
        (with("events", json!(["Pull"])), "events", "\"Pull\""),
        (with("pull_sample_rate", json!(0)), "pull_sample_rate", "0"),
        (
            with("pull_sample_rate", json!(1.5)),
            "pull_sample_rate",
            "1.5",
        ),
        (
            with("pull_sample_rate", json!(-0.1)),
            "pull_sample_rate",
            "-0.1",
        ),
    ] {
        let resp = api(&s, Method::POST, "/webhooks", Some(body.clone())).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{body}");
        let problem = json_body(resp).await;
        assert_eq!(problem["error"]["details"]["parameter"], field, "{problem}");
        let message = problem["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{body}: {message}");
    }
    let resp = api(
        &s,
        Method::POST,
        "/webhooks",
        Some(with("pull_sample_rate", json!("half"))),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let listed = json_body(api(&s, Method::GET, "/webhooks", None).await).await;
    assert_eq!(listed["items"], json!([]));
    // Every kind the refusal lists is accepted.
    let resp = api(
        &s,
        Method::POST,
        "/webhooks",
        Some(with("events", json!(["explode"]))),
    )
    .await;
    let message = json_body(resp).await["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    let known = message
        .split("known: ")
        .nth(1)
        .unwrap()
        .trim_end_matches(')');
    let all: Vec<&str> = known.split(", ").collect();
    assert_eq!(all.len(), 13, "{message}");
    subscribe(&s, with("events", json!(all))).await;
}

/// A GET refused because the image is quarantined is a `pull_denied` event with the gate
/// and the reason (the quarantine's own words), in each format; the refused pull is no
/// `pull` event.
#[tokio::test]
async fn a_quarantined_pull_is_denied_with_its_reason() {
    let s = server().await;
    let r = Receiver::start().await;
    subscribe_all_formats(&s, &r, &["pull", "pull_denied"], "acme").await;
    let (config, layer) = push_blobs(&s, "acme/app").await;
    let m = manifest(&config, &layer, 1);
    let digest = s.put_manifest_ok("acme/app", "v1", OCI_MANIFEST, &m).await;
    let resp = api(
        &s,
        Method::POST,
        &format!("/repositories/acme/app/-/images/{digest}/quarantine"),
        Some(json!({"reason": "CVE triage pending"})),
    )
    .await;
    assert!(resp.status().is_success(), "{}", resp.status());
    let resp = s.get("/v2/acme/app/manifests/v1").await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);

    let d = r.wait_for("/d", 1).await;
    let e = event(&d[0]);
    assert_eq!(e["action"], "pull_denied");
    assert_eq!(e["target"]["digest"], digest);
    assert_eq!(e["target"]["tag"], "v1");
    assert_eq!(e["detail"]["gate"], "quarantine");
    let reason = e["detail"]["reason"].as_str().unwrap();
    assert!(reason.contains("CVE triage pending"), "{reason}");
    let h = r.wait_for("/h", 1).await[0].json();
    assert_eq!(h["type"], "PULL_DENIED");
    assert_eq!(h["event_data"]["custom_attributes"]["gate"], "quarantine");
    let c = r.wait_for("/c", 1).await[0].json();
    assert_eq!(c["type"], "io.berth.pull.denied");
    assert_eq!(c["data"]["detail"]["reason"], reason);
    // Nothing else: the refused pull was not a pull.
    let resp = s.get("/v2/acme/app/manifests/v1").await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let d = r.wait_for("/d", 2).await;
    assert!(d.iter().all(|g| event(g)["action"] == "pull_denied"));
}

/// A cosign signature by the trusted key is `signature_verified` (about the signed image,
/// naming the tool and the key), one by another key `signature_failed` with the reason; a
/// pull of the image whose signature failed, under `enforce`, is `pull_denied` by the trust
/// policy.
#[tokio::test]
async fn signatures_verified_and_failed_and_trust_denials() {
    let s = server().await;
    let r = Receiver::start().await;
    subscribe_all_formats(
        &s,
        &r,
        &["signature_verified", "signature_failed", "pull_denied"],
        "sig",
    )
    .await;
    let repo = "sig/app";
    let (good, _) = s.push_image(repo, "good", &[b"good".as_slice()]).await;
    let (bad, _) = s.push_image(repo, "bad", &[b"bad".as_slice()]).await;
    let mut plan = base_plan(s.clock.now());
    let good_payload = simple_signing(repo, &good);
    let bad_payload = simple_signing(repo, &bad);
    let good_at = plan.sign("p256", "ecdsa-der", "sha256", &good_payload, false);
    let bad_at = plan.sign("other", "ecdsa-der", "sha256", &bad_payload, false);
    let made = plan.make();
    let resp = api(
        &s,
        Method::PUT,
        "/trust/policies/sig",
        Some(json!({"scope": "sig", "mode": "enforce", "cosign_keys": [made.keys["p256"]]})),
    )
    .await;
    assert!(resp.status().is_success(), "{}", resp.status());
    push_cosign_tag(&s, repo, &good, &good_payload, &made.signatures[good_at]).await;
    push_cosign_tag(&s, repo, &bad, &bad_payload, &made.signatures[bad_at]).await;
    let resp = s.get(&format!("/v2/{repo}/manifests/bad")).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);

    let d = r.wait_for("/d", 3).await;
    let verified = event(&d[0]);
    assert_eq!(verified["action"], "signature_verified");
    assert_eq!(verified["target"]["digest"], good);
    assert_eq!(verified["detail"]["tool"], "cosign");
    assert!(verified["detail"]["identity"].is_string(), "{verified}");
    let failed = event(&d[1]);
    assert_eq!(failed["action"], "signature_failed");
    assert_eq!(failed["target"]["digest"], bad);
    assert!(
        failed["detail"]["reason"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "{failed}"
    );
    let denied = event(&d[2]);
    assert_eq!(denied["action"], "pull_denied");
    assert_eq!(denied["detail"]["gate"], "trust_policy");
    assert_eq!(denied["target"]["digest"], bad);
    let h: Vec<Value> = r
        .wait_for("/h", 3)
        .await
        .iter()
        .map(|g| g.json()["type"].clone())
        .collect();
    assert_eq!(
        h,
        [
            json!("SIGNATURE_VERIFIED"),
            json!("SIGNATURE_FAILED"),
            json!("PULL_DENIED")
        ]
    );
    let c: Vec<Value> = r
        .wait_for("/c", 3)
        .await
        .iter()
        .map(|g| g.json()["type"].clone())
        .collect();
    assert_eq!(
        c,
        [
            json!("io.berth.signature.verified"),
            json!("io.berth.signature.failed"),
            json!("io.berth.pull.denied")
        ]
    );
}

/// A scan is `scan_completed` with its outcome and package count; findings an image gains
/// are `vulnerability_found` listing them: after an advisory import re-matched the stored
/// inventory, and after a scan of an image the advisories already cover.
#[tokio::test]
async fn scans_and_new_findings() {
    let s = server().await;
    let r = Receiver::start().await;
    subscribe_all_formats(&s, &r, &["scan_completed", "vulnerability_found"], "debian").await;
    let (base, _, _) = debian_layers();
    let (first, _) = push_layers(&s, "debian/app", "v1", "amd64", &[(GZIP_LAYER, &base)]).await;
    scan_now(&s, "debian/app", &first).await;
    let d = r.wait_for("/d", 1).await;
    let scanned = event(&d[0]);
    assert_eq!(scanned["action"], "scan_completed");
    assert_eq!(scanned["target"]["digest"], first);
    assert_eq!(scanned["detail"]["status"], "ok");
    assert!(scanned["detail"]["packages"].as_u64().unwrap() > 0);

    import_openssl_and_zlib_advisories(&s).await;
    let d = r.wait_for("/d", 2).await;
    let found = event(&d[1]);
    assert_eq!(found["action"], "vulnerability_found");
    assert_eq!(found["target"]["digest"], first);
    let advisories: HashSet<&str> = found["detail"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["advisory"].as_str().unwrap())
        .collect();
    assert!(advisories.contains("DSA-0001-1"), "{found}");
    assert_eq!(
        found["detail"]["count"].as_u64().unwrap() as usize,
        found["detail"]["findings"].as_array().unwrap().len()
    );

    // A second image, scanned with the advisories in: both events, scan first.
    let (second, _) = push_layers(&s, "debian/other", "v1", "arm64", &[(GZIP_LAYER, &base)]).await;
    scan_now(&s, "debian/other", &second).await;
    let d = r.wait_for("/d", 4).await;
    assert_eq!(event(&d[2])["action"], "scan_completed");
    assert_eq!(event(&d[3])["action"], "vulnerability_found");
    assert_eq!(event(&d[3])["target"]["digest"], second);
    // Scanning again finds nothing new: only the scan.
    scan_now(&s, "debian/other", &second).await;
    let d = r.wait_for("/d", 5).await;
    assert_eq!(event(&d[4])["action"], "scan_completed");

    // Each repository's events in order (the two repositories' queues may interleave).
    let h: Vec<Value> = r
        .wait_for("/h", 5)
        .await
        .iter()
        .map(Got::json)
        .filter(|p| p["event_data"]["repository"]["repo_full_name"] == "debian/app")
        .map(|p| p["type"].clone())
        .collect();
    assert_eq!(
        h,
        [json!("SCANNING_COMPLETED"), json!("VULNERABILITY_FOUND")]
    );
    let c: Vec<Value> = r
        .wait_for("/c", 5)
        .await
        .iter()
        .map(Got::json)
        .filter(|p| p["data"]["repository"] == "debian/other")
        .map(|p| p["type"].clone())
        .collect();
    assert_eq!(
        c,
        [
            json!("io.berth.scan.completed"),
            json!("io.berth.vulnerability.found"),
            json!("io.berth.scan.completed")
        ]
    );
}

/// A collection and a cleanup policy's run are registry-wide events with their counts, sent
/// to `*` subscriptions only; dry runs (previews) send nothing.
#[tokio::test]
async fn collections_and_cleanup_runs_report_their_counts() {
    let s = server().await;
    let r = Receiver::start().await;
    subscribe_all_formats(&s, &r, &["gc_completed", "cleanup_completed"], "*").await;
    let scoped = subscribe(&s, json!({"url": r.url("/scoped"), "events": ["gc_completed", "cleanup_completed"], "format": "distribution", "scope": "team"})).await;
    for tag in ["keep-me", "old-1", "old-2"] {
        s.push_image("team/app", tag, &[tag.as_bytes()]).await;
    }
    let resp = s
        .req(Method::PUT, "/api/v1/policies/olds")
        .json(&json!({ "repository": "team/app", "name_regex": "old-.*", "cadence": "weekly" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let preview = api(
        &s,
        Method::POST,
        "/policies/olds/runs",
        Some(json!({"dry_run": true})),
    )
    .await;
    assert_eq!(preview.status(), StatusCode::OK);
    let resp = api(
        &s,
        Method::POST,
        "/policies/olds/runs",
        Some(json!({"dry_run": false})),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let cleanup_run = json_body(resp).await["run"].as_i64().unwrap();
    let replica = s.replica().await;
    let mut options = replica.gc_options(false);
    options.grace_secs = 0;
    options.untagged = true;
    let gc = replica.run_gc("cli", options, &|_, _| {}).await.unwrap();

    let d = r.wait_for("/d", 2).await;
    let cleanup = event(&d[0]);
    assert_eq!(cleanup["action"], "cleanup_completed");
    assert_eq!(cleanup["target"]["repository"], "");
    assert_eq!(cleanup["detail"]["run"], cleanup_run);
    assert_eq!(cleanup["detail"]["policy"], "olds");
    assert_eq!(cleanup["detail"]["state"], "done");
    let collected = event(&d[1]);
    assert_eq!(collected["action"], "gc_completed");
    assert_eq!(collected["detail"]["run"], gc.id);
    assert_eq!(collected["detail"]["trigger"], "cli");
    // The two images the policy removed (untagged, then collected) and their own layers.
    let manifests = |e: &Value| e["detail"]["manifests_deleted"].as_i64().unwrap();
    assert_eq!(
        manifests(&cleanup) + manifests(&collected),
        2,
        "{collected}"
    );
    assert!(collected["detail"]["blobs_deleted"].as_i64().unwrap() >= 2);
    assert!(collected["detail"]["bytes_deleted"].as_i64().unwrap() > 0);
    let h = r.wait_for("/h", 2).await;
    assert_eq!(h[0].json()["type"], "TAG_RETENTION");
    assert_eq!(h[1].json()["type"], "GC_COMPLETED");
    assert_eq!(
        h[1].json()["event_data"]["custom_attributes"],
        collected["detail"]
    );
    let c = r.wait_for("/c", 2).await;
    assert_eq!(c[0].json()["type"], "io.berth.cleanup.completed");
    assert_eq!(c[1].json()["type"], "io.berth.gc.completed");
    assert_eq!(deliveries(&s, scoped).await, Vec::<Value>::new());
}

/// What Berth removes or copies on someone's behalf names who: a cleanup policy's tag
/// removals `policy:<name>`, the API's bulk tag delete and image copy their caller, the
/// collector's removal of an untagged image `gc`.
#[tokio::test]
async fn cleanup_collection_and_copies_name_who_did_them() {
    let mut s = start_auth(|c| {
        c.webhooks.allow_loopback = true;
        c.webhooks.poll_millis = 20;
    })
    .await;
    let admin = Some((ADMIN, ADMIN_PASSWORD));
    s.create_user("mia").await;
    s.set_role("acme", "mia", "maintainer").await;
    let mia_password = password_of("mia");
    let mia = Some(("mia", mia_password.as_str()));
    let r = Receiver::start().await;
    let body = json!({"url": r.url("/d"), "events": ["push", "delete"], "format": "distribution",
                      "scope": "acme"});
    let resp = s.api_as(admin, Method::POST, "/webhooks", Some(body)).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    s.sign_in("mia", &mia_password);
    let mut digests = Vec::new();
    for tag in ["keep", "old-1", "old-2"] {
        let (digest, _) = s.push_image("acme/app", tag, &[tag.as_bytes()]).await;
        digests.push(digest);
    }
    let policy = json!({ "repository": "acme/app", "name_regex": "old-1", "cadence": "weekly" });
    let resp = s
        .api_as(admin, Method::PUT, "/policies/olds", Some(policy))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let run = json!({"dry_run": false});
    let resp = s
        .api_as(admin, Method::POST, "/policies/olds/runs", Some(run))
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let bulk = "/repositories/acme/app/-/tags?name_regex_delete=old-2";
    let resp = s.api_as(mia, Method::DELETE, bulk, None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let copy = json!({"tag": "copied", "digest": digests[0], "from": "acme/app"});
    let resp = s
        .api_as(
            mia,
            Method::POST,
            "/repositories/acme/copy/-/tags",
            Some(copy),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    s.clock.advance(1);
    let replica = s.replica().await;
    let mut options = replica.gc_options(false);
    options.grace_secs = 0;
    options.untagged = true;
    let gc = replica.run_gc("cli", options, &|_, _| {}).await.unwrap();
    assert_eq!(gc.counts.manifests, 2);

    // Three pushes, two tag deletes, a copy, two collected images.
    let got = r.wait_for("/d", 8).await;
    let mut seen: Vec<[String; 4]> = got
        .iter()
        .map(|g| {
            let e = event(g);
            let text = |v: &Value| v.as_str().unwrap_or("-").to_owned();
            // A tag, or the digest of an image removed whole.
            let what = e["target"]["tag"].as_str().map(str::to_owned);
            [
                text(&e["action"]),
                text(&e["target"]["repository"]),
                what.unwrap_or_else(|| text(&e["target"]["digest"])),
                text(&e["actor"]["name"]),
            ]
        })
        .collect();
    seen.sort();
    let row = |a: &str, repo: &str, what: &str, by: &str| [a, repo, what, by].map(str::to_owned);
    let mut expected = vec![
        row("push", "acme/app", "keep", "mia"),
        row("push", "acme/app", "old-1", "mia"),
        row("push", "acme/app", "old-2", "mia"),
        row("delete", "acme/app", "old-1", "policy:olds"),
        row("delete", "acme/app", "old-2", "mia"),
        row("push", "acme/copy", "copied", "mia"),
        row("delete", "acme/app", &digests[1], "gc"),
        row("delete", "acme/app", &digests[2], "gc"),
    ];
    expected.sort();
    assert_eq!(seen, expected);
}

/// A blob refused by its namespace's storage quota, and a repository refused by the
/// repository quota, are `quota_exceeded` with the namespace, the limit and the reason.
#[tokio::test]
async fn quota_refusals_are_events() {
    let s = server().await;
    let r = Receiver::start().await;
    subscribe_all_formats(&s, &r, &["quota_exceeded"], "team").await;
    let resp = s
        .req(Method::PUT, "/api/v1/namespaces/team/quota")
        .json(&json!({ "storage_bytes": 1500, "repositories": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let big = vec![7u8; 2000];
    let resp = s
        .req(
            Method::POST,
            &format!("/v2/team/app/blobs/uploads/?digest={}", sha256(&big)),
        )
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    s.push_image("team/app", "v1", &[b"small".as_slice()]).await;
    let (config, layer) = (b"{}".to_vec(), b"x".to_vec());
    let second = s
        .put_manifest(
            "team/other",
            "v1",
            Some(OCI_MANIFEST),
            &manifest(&config, &layer, 1),
        )
        .await;
    assert_eq!(second.status(), StatusCode::FORBIDDEN);

    // Two repositories, two queues: found by repository, not by arrival.
    let d = r.wait_for("/d", 2).await;
    let of = |repo: &str| {
        d.iter()
            .map(event)
            .find(|e| e["target"]["repository"] == repo)
            .unwrap_or_else(|| panic!("no event of {repo}"))
    };
    let storage = of("team/app");
    assert_eq!(storage["action"], "quota_exceeded");
    assert_eq!(storage["target"]["repository"], "team/app");
    assert_eq!(storage["target"]["digest"], sha256(&big));
    assert_eq!(storage["detail"]["quota"], "storage_bytes");
    assert_eq!(storage["detail"]["namespace"], "team");
    assert_eq!(storage["detail"]["limit"], 1500);
    assert!(
        storage["detail"]["reason"]
            .as_str()
            .unwrap()
            .contains("storage quota exceeded")
    );
    let repos = of("team/other");
    assert_eq!(repos["action"], "quota_exceeded");
    assert_eq!(repos["detail"]["quota"], "repositories");
    assert_eq!(repos["detail"]["limit"], 1);
    let h = r.wait_for("/h", 2).await;
    assert!(h.iter().all(|g| g.json()["type"] == "QUOTA_EXCEED"));
    let c = r.wait_for("/c", 2).await;
    assert!(
        c.iter()
            .all(|g| g.json()["type"] == "io.berth.quota.exceeded")
    );
}

/// What the replication worker will call: `replication_completed` with its detail.
#[tokio::test]
async fn replication_completed_is_sent_when_told() {
    let s = server().await;
    let r = Receiver::start().await;
    subscribe_all_formats(&s, &r, &["replication_completed"], "acme").await;
    let replica = s.replica().await;
    let detail = json!({"target": "https://mirror.example.com", "manifests": 3, "blobs": 7});
    replica
        .replication_completed(
            Some(&"acme/app".parse().unwrap()),
            Some("replicator"),
            &detail,
        )
        .await;
    let e = event(&r.wait_for("/d", 1).await[0]);
    assert_eq!(e["action"], "replication_completed");
    assert_eq!(e["actor"]["name"], "replicator");
    assert_eq!(e["detail"], detail);
    assert_eq!(r.wait_for("/h", 1).await[0].json()["type"], "REPLICATION");
    assert_eq!(
        r.wait_for("/c", 1).await[0].json()["type"],
        "io.berth.replication.completed"
    );
}

/// A replication rule run for real (Berth to another Berth) ends with one registry-wide
/// `replication_completed` naming the rule, the execution, its state and counts.
#[tokio::test]
async fn a_replication_run_sends_replication_completed() {
    let s = server().await;
    let other = TestServer::start().await;
    let r = Receiver::start().await;
    subscribe(
        &s,
        json!({"url": r.url("/d"), "events": ["replication_completed"],
               "format": "distribution", "scope": "*"}),
    )
    .await;
    s.push_image("apps/app", "v1", &[b"replicated".as_slice()])
        .await;
    let resp = s
        .req(Method::PUT, "/api/v1/replication/rules/to-other")
        .json(&json!({"direction": "push", "remote": {"url": other.base},
                      "filter": {"repositories": "apps/*"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let resp = s
        .req(Method::POST, "/api/v1/replication/rules/to-other/run")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let execution = json_body(resp).await["id"].as_i64().unwrap();
    s.replica().await.run_due_jobs("test").await.unwrap();

    let e = event(&r.wait_for("/d", 1).await[0]);
    assert_eq!(e["action"], "replication_completed", "{e}");
    assert_eq!(e["detail"]["rule"], "to-other", "{e}");
    assert_eq!(e["detail"]["execution"], execution, "{e}");
    assert_eq!(e["detail"]["state"], "succeeded", "{e}");
    assert_eq!(e["detail"]["counters"]["manifests_copied"], 1, "{e}");
    assert_eq!(e["actor"]["name"], Value::Null, "{e}");
}

/// Delivered and dead deliveries are deleted once `webhooks.retention` has passed since
/// they finished (on the moved clock); pending ones stay whatever their age.
#[tokio::test]
async fn finished_deliveries_are_pruned_after_the_retention() {
    let s = TestServer::start_with(|c| {
        c.webhooks.allow_loopback = true;
        c.webhooks.poll_millis = 20;
        c.webhooks.max_attempts = 1;
        c.webhooks.retention = "1h".into();
        c.webhooks.prune_secs = 1;
        // The hung receiver's attempt outlasts the test: its delivery stays pending.
        c.webhooks.timeout_secs = 120;
    })
    .await;
    let r = Receiver::start().await;
    r.answer("/down", Answer::Status(503));
    r.answer("/hang", Answer::Hang);
    let ok = subscribe(
        &s,
        json!({"url": r.url("/ok"), "events": ["push"], "format": "distribution", "scope": "*"}),
    )
    .await;
    let down = subscribe(
        &s,
        json!({"url": r.url("/down"), "events": ["push"], "format": "distribution", "scope": "*"}),
    )
    .await;
    let (config, layer) = push_blobs(&s, "prune/app").await;
    for n in 0..3 {
        s.put_manifest_ok(
            "prune/app",
            &format!("t{n}"),
            OCI_MANIFEST,
            &manifest(&config, &layer, n),
        )
        .await;
    }
    log_until(&s, ok, |log| {
        log.len() == 3 && log.iter().all(|d| d["state"] == "delivered")
    })
    .await;
    log_until(&s, down, |log| {
        log.len() == 3 && log.iter().all(|d| d["state"] == "dead")
    })
    .await;
    // A subscription whose receiver never answers keeps its deliveries pending.
    let hang = subscribe(
        &s,
        json!({"url": r.url("/hang"), "events": ["push"], "format": "distribution", "scope": "*"}),
    )
    .await;
    s.put_manifest_ok(
        "prune/app",
        "t3",
        OCI_MANIFEST,
        &manifest(&config, &layer, 3),
    )
    .await;
    log_until(&s, ok, |log| {
        log.len() == 4 && log[0]["state"] == "delivered"
    })
    .await;
    log_until(&s, down, |log| log.len() == 4 && log[0]["state"] == "dead").await;

    // Not yet: younger than the retention.
    s.clock.advance(1800);
    r.wait_for("/hang", 1).await;
    assert_eq!(deliveries(&s, ok).await.len(), 4);
    s.clock.advance(1900);
    log_until(&s, ok, |log| log.is_empty()).await;
    log_until(&s, down, |log| log.is_empty()).await;
    let pending = deliveries(&s, hang).await;
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0]["state"], "pending");
}
