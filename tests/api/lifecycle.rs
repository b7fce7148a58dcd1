//! Storage lifecycle through the API: deletes (spec end-9 and `/api/v1`), garbage
//! collection (runs, dry runs, estimates, reviews), tag immutability and protection, cleanup
//! policies and bulk tag deletion. Grace periods and delays are 0, so no test waits.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{
    OCI_INDEX, OCI_MANIFEST, TestServer, assert_error, descriptor, image_config, image_manifest,
    json_body, sha256,
};

/// A server that collects everything at once: no grace period, no review delay; its own
/// worker never ticks during a test (the tests drive reviews through a replica).
async fn server(untagged: bool) -> TestServer {
    TestServer::start_with(|c| {
        c.gc.grace_secs = 0;
        c.gc.review_delay_secs = 0;
        c.gc.upload_timeout_secs = 0;
        c.gc.untagged = untagged;
        c.gc.poll_millis = 3_600_000;
        c.gc.schedule_secs = 0;
    })
    .await
}

/// Runs a collection in the request and returns the finished run.
async fn gc(s: &TestServer, dry_run: bool) -> Value {
    let resp = s
        .req(Method::POST, "/api/v1/gc/runs")
        .json(&json!({ "wait": true, "dry_run": dry_run }))
        .send()
        .await
        .expect("POST gc run");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let run = json_body(resp).await;
    assert_eq!(run["state"], "done", "{run}");
    run
}

/// The bytes of blob `digest` in `repo`, or the status when it cannot be pulled.
async fn pull_blob(s: &TestServer, repo: &str, digest: &str) -> Result<Vec<u8>, u16> {
    let resp = s.get(&format!("/v2/{repo}/blobs/{digest}")).await;
    match resp.status() {
        StatusCode::OK => Ok(resp.bytes().await.expect("blob body").to_vec()),
        status => Err(status.as_u16()),
    }
}

/// Whether the object of `digest` is in the local blob directory.
fn object_exists(s: &TestServer, digest: &str) -> bool {
    let hex = digest.trim_start_matches("sha256:");
    s.data_dir
        .join("blobs/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .exists()
}

/// DELETE of a tag only untags; DELETE by digest removes the manifest and every tag on it
/// (spec end-9). Only then does a collection reclaim the blobs.
#[tokio::test]
async fn tag_delete_untags_digest_delete_removes_every_tag() {
    let s = server(false).await;
    let (digest, manifest) = s.push_image("app", "a", &[b"layer one"]).await;
    s.put_manifest_ok("app", "b", OCI_MANIFEST, &manifest).await;

    assert_eq!(
        s.delete("/v2/app/manifests/a").await.status(),
        StatusCode::ACCEPTED
    );
    assert_error(s.get("/v2/app/manifests/a").await, 404, "MANIFEST_UNKNOWN").await;
    let b = s.get("/v2/app/manifests/b").await;
    assert_eq!(b.status(), StatusCode::OK);
    assert_eq!(b.bytes().await.unwrap().as_ref(), manifest.as_slice());
    let run = gc(&s, false).await;
    assert_eq!(
        run["blobs"], 0,
        "an untag frees nothing while b holds the image: {run}"
    );
    assert_eq!(
        pull_blob(&s, "app", &sha256(b"layer one")).await,
        Ok(b"layer one".to_vec())
    );

    let by_digest = s.delete(&format!("/v2/app/manifests/{digest}")).await;
    assert_eq!(by_digest.status(), StatusCode::ACCEPTED);
    assert_error(s.get("/v2/app/manifests/b").await, 404, "MANIFEST_UNKNOWN").await;
    let tags = json_body(s.get("/v2/app/tags/list").await).await;
    assert_eq!(tags["tags"], json!([]), "{tags}");

    let run = gc(&s, false).await;
    assert_eq!(
        (run["links"].as_i64(), run["blobs"].as_i64()),
        (Some(2), Some(2)),
        "{run}"
    );
    let config = image_config("linux", "amd64", None);
    let bytes = (b"layer one".len() + config.len()) as i64;
    assert_eq!(run["bytes"], bytes);
    assert_eq!(pull_blob(&s, "app", &sha256(b"layer one")).await, Err(404));
    if s.on_embedded_backends() {
        assert!(!object_exists(&s, &sha256(b"layer one")));
        assert!(!object_exists(&s, &sha256(&config)));
    }
}

/// Deleting a repository through `/api/v1` removes it from the catalog with everything it
/// held; a collection then frees the blobs only it referenced, never one another repository
/// shares.
#[tokio::test]
async fn repository_delete_frees_only_what_it_alone_referenced() {
    let s = server(false).await;
    s.push_image_with("team/old", "v1", b"old config", &[b"shared", b"old only"])
        .await;
    let (_, kept) = s
        .push_image_with("team/new", "v1", b"new config", &[b"shared", b"new only"])
        .await;

    let resp = s.delete("/api/v1/repositories/team/old").await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let again = s.delete("/api/v1/repositories/team/old").await;
    assert_eq!(again.status(), StatusCode::NOT_FOUND);
    assert_eq!(json_body(again).await["error"]["code"], "NAME_UNKNOWN");
    let catalog = json_body(s.get("/v2/_catalog").await).await;
    assert_eq!(catalog["repositories"], json!(["team/new"]));
    assert_error(
        s.get("/v2/team/old/manifests/v1").await,
        404,
        "MANIFEST_UNKNOWN",
    )
    .await;

    let run = gc(&s, false).await;
    assert_eq!(run["blobs"], 2, "old config and old only: {run}");
    assert_eq!(
        run["bytes"],
        (b"old config".len() + b"old only".len()) as i64
    );
    for blob in [b"shared".as_slice(), b"new only", b"new config"] {
        assert_eq!(
            pull_blob(&s, "team/new", &sha256(blob)).await,
            Ok(blob.to_vec())
        );
    }
    let m = s.get("/v2/team/new/manifests/v1").await;
    assert_eq!(m.bytes().await.unwrap().as_ref(), kept.as_slice());
    if s.on_embedded_backends() {
        assert!(!object_exists(&s, &sha256(b"old only")));
        assert!(object_exists(&s, &sha256(b"shared")));
    }
}

/// A dry run lists exactly what the run then deletes, with reasons and bytes; runs are
/// recorded and listed newest first; the estimate names the repository holding the garbage.
#[tokio::test]
async fn dry_run_reports_exactly_what_a_run_deletes() {
    let s = server(false).await;
    let (gone, _) = s
        .push_image_with("web", "old", b"cfg old", &[b"l-old", b"l-both"])
        .await;
    s.push_image_with("web", "new", b"cfg new", &[b"l-new", b"l-both"])
        .await;
    // A blob pushed but never referenced by any manifest.
    s.push_blob("web", b"stray").await;
    s.delete(&format!("/v2/web/manifests/{gone}")).await;

    let estimate = json_body(s.get("/api/v1/gc/estimate").await).await;
    let expected_bytes = (b"cfg old".len() + b"l-old".len() + b"stray".len()) as i64;
    assert_eq!(estimate["reclaimable_blobs"], 3, "{estimate}");
    assert_eq!(estimate["reclaimable_bytes"], expected_bytes);
    assert_eq!(estimate["repositories"][0]["repository"], "web");
    assert_eq!(estimate["repositories"][0]["unreferenced_links"], 3);

    let dry = gc(&s, true).await;
    assert_eq!(dry["dry_run"], true);
    assert_eq!(
        (dry["blobs"].as_i64(), dry["links"].as_i64()),
        (Some(3), Some(3)),
        "{dry}"
    );
    assert_eq!(dry["bytes"], expected_bytes);
    let mut would: Vec<String> = dry["report"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["kind"] == "blob")
        .map(|i| i["name"].as_str().unwrap().to_owned())
        .collect();
    would.sort();
    let mut expected = vec![sha256(b"cfg old"), sha256(b"l-old"), sha256(b"stray")];
    expected.sort();
    assert_eq!(would, expected);
    assert!(
        dry["report"]["items"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("references")
    );
    assert_eq!(
        pull_blob(&s, "web", &sha256(b"stray")).await,
        Ok(b"stray".to_vec()),
        "dry"
    );

    let run = gc(&s, false).await;
    assert_eq!(
        (run["blobs"].clone(), run["bytes"].clone()),
        (json!(3), json!(expected_bytes))
    );
    let mut deleted: Vec<String> = run["report"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["kind"] == "blob")
        .map(|i| i["name"].as_str().unwrap().to_owned())
        .collect();
    deleted.sort();
    assert_eq!(deleted, expected);
    assert_eq!(gc(&s, true).await["bytes"], 0, "nothing left to reclaim");

    let history = json_body(s.get("/api/v1/gc/runs?limit=2").await).await;
    let ids: Vec<i64> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids[0] > ids[1], "newest first: {history}");
    assert!(history["next"].is_string());
    let one = json_body(s.get(&format!("/api/v1/gc/runs/{}", run["id"])).await).await;
    assert_eq!(one["blobs"], 3);
    assert!(one["started_at"].as_i64().unwrap() <= one["finished_at"].as_i64().unwrap());
    assert_eq!(
        s.get("/api/v1/gc/runs/999999").await.status(),
        StatusCode::NOT_FOUND
    );
}

/// A blob linked from two repositories is reclaimable only when neither needs it, while
/// each unneeded link counts in its own repository; the estimate, the dry run and the run
/// agree, and phase timings are recorded.
#[tokio::test]
async fn shared_blobs_are_reclaimed_only_when_no_repository_needs_them() {
    let s = server(false).await;
    let (gone, _) = s
        .push_image_with(
            "web",
            "old",
            b"cfg web",
            &[b"kept by api", b"needed nowhere"],
        )
        .await;
    s.push_image_with("api", "v1", b"cfg api", &[b"kept by api"])
        .await;
    s.push_blob("api", b"needed nowhere").await;
    s.delete(&format!("/v2/web/manifests/{gone}")).await;

    let reclaimable = (b"cfg web".len() + b"needed nowhere".len()) as i64;
    let estimate = json_body(s.get("/api/v1/gc/estimate").await).await;
    assert_eq!(estimate["reclaimable_blobs"], 2, "{estimate}");
    assert_eq!(estimate["reclaimable_bytes"], reclaimable);
    assert_eq!(
        estimate["repositories"],
        json!([
            {"repository": "api", "unreferenced_links": 1,
             "unreferenced_bytes": b"needed nowhere".len()},
            {"repository": "web", "unreferenced_links": 3,
             "unreferenced_bytes": b"cfg web".len() + b"kept by api".len() + b"needed nowhere".len()},
        ])
    );

    let dry = gc(&s, true).await;
    let run = gc(&s, false).await;
    for r in [&dry, &run] {
        assert_eq!(
            (&r["links"], &r["blobs"], &r["bytes"]),
            (&json!(4), &json!(2), &json!(reclaimable)),
            "{r}"
        );
    }
    assert!(
        dry["report"]["phase_secs"]["mark and orphans"].is_number(),
        "{dry}"
    );
    assert!(run["report"]["phase_secs"]["blobs"].is_number(), "{run}");
    assert_eq!(
        pull_blob(&s, "api", &sha256(b"kept by api")).await,
        Ok(b"kept by api".to_vec())
    );
    assert_eq!(
        pull_blob(&s, "api", &sha256(b"needed nowhere")).await,
        Err(404)
    );
    assert_eq!(
        pull_blob(&s, "web", &sha256(b"kept by api")).await,
        Err(404)
    );
}

/// Abandoned upload sessions go with their staged parts; objects the index does not know
/// (orphans) go too; a queued run (202) is run by a worker and recorded.
#[tokio::test]
async fn abandoned_uploads_and_orphan_objects_are_collected() {
    let s = server(false).await;
    let session = s.start_upload("up").await;
    let resp = s
        .req(Method::PATCH, session.trim_start_matches(&s.base))
        .header("content-type", "application/octet-stream")
        .body(vec![7u8; 1000])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let orphan = b"bytes the index never recorded";
    if s.on_embedded_backends() {
        let hex = sha256(orphan).trim_start_matches("sha256:").to_owned();
        let dir = s.data_dir.join("blobs/blobs/sha256").join(&hex[..2]);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(&hex), orphan).unwrap();
    }

    let queued = s
        .req(Method::POST, "/api/v1/gc/runs")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(queued.status(), StatusCode::ACCEPTED);
    let queued = json_body(queued).await;
    assert_eq!(queued["state"], "queued");
    let replica = s.replica().await;
    let ran = replica.run_due_jobs("test-replica").await.unwrap();
    assert_eq!(ran, 1);
    let run = json_body(s.get(&format!("/api/v1/gc/runs/{}", queued["id"])).await).await;
    assert_eq!(run["state"], "done", "{run}");
    assert_eq!(run["uploads"], 1, "{run}");
    let resp = s.get(session.trim_start_matches(&s.base)).await;
    assert_error(resp, 404, "BLOB_UPLOAD_UNKNOWN").await;
    if s.on_embedded_backends() {
        assert_eq!(run["orphans"], 1, "{run}");
        assert!(!object_exists(&s, &sha256(orphan)));
        assert_eq!(
            files_under(&s.data_dir.join("blobs/uploads")),
            0,
            "staged parts are gone"
        );
    }
    replica.close().await;
}

/// Files (not directories) under `dir`, recursively; 0 if it does not exist.
fn files_under(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => files_under(&e.path()),
            _ => 1,
        })
        .sum()
}

/// Pushes a multi-arch index (two platform images, pushed by digest) tagged `tag`, with a
/// referrer of the first child; returns (index, children, referrer) digests.
async fn push_multi_arch(s: &TestServer, repo: &str, tag: &str) -> (String, Vec<String>, String) {
    let mut children = Vec::new();
    let mut descriptors = Vec::new();
    for arch in ["amd64", "arm64"] {
        let config = image_config("linux", arch, None);
        let layer = format!("{repo} layer for {arch}");
        let (digest, manifest) = s
            .push_image_with(repo, "", &config, &[layer.as_bytes()])
            .await;
        let mut d = descriptor(OCI_MANIFEST, &manifest);
        d["platform"] = json!({ "os": "linux", "architecture": arch });
        descriptors.push(d);
        children.push(digest);
    }
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors,
    }))
    .unwrap();
    let index_digest = s.put_manifest_ok(repo, tag, OCI_INDEX, &index).await;
    s.push_blob(repo, b"signature").await;
    s.push_blob(repo, b"{}").await;
    let child = s
        .get(&format!("/v2/{repo}/manifests/{}", children[0]))
        .await;
    let child = child.bytes().await.unwrap();
    let referrer = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.signature",
        "config": descriptor("application/vnd.oci.empty.v1+json", b"{}"),
        "layers": [descriptor("application/octet-stream", b"signature")],
        "subject": descriptor(OCI_MANIFEST, &child),
    }))
    .unwrap();
    let referrer_digest = sha256(&referrer);
    s.put_manifest_ok(repo, &referrer_digest, OCI_MANIFEST, &referrer)
        .await;
    (index_digest, children, referrer_digest)
}

/// Untagged collection never takes an index's children, nor a referrer whose subject is
/// alive; it takes plain untagged manifests, and referrers whose subject is gone.
#[tokio::test]
async fn untagged_collection_keeps_index_children_and_live_referrers() {
    let s = server(true).await;
    let (index, children, referrer) = push_multi_arch(&s, "multi", "v1").await;
    let (lonely, _) = s
        .push_image_with("multi", "", b"lonely config", &[b"lonely layer"])
        .await;

    let dry = gc(&s, true).await;
    assert_eq!(dry["manifests"], 1, "{dry}");
    let run = gc(&s, false).await;
    assert_eq!(run["manifests"], 1, "only the lonely manifest: {run}");
    assert_error(
        s.get(&format!("/v2/multi/manifests/{lonely}")).await,
        404,
        "MANIFEST_UNKNOWN",
    )
    .await;
    assert_eq!(
        pull_blob(&s, "multi", &sha256(b"lonely layer")).await,
        Err(404)
    );
    for digest in children.iter().chain([&index, &referrer]) {
        let resp = s.get(&format!("/v2/multi/manifests/{digest}")).await;
        assert_eq!(resp.status(), StatusCode::OK, "{digest} survives");
        assert_eq!(sha256(&resp.bytes().await.unwrap()), *digest);
    }
    for arch in ["amd64", "arm64"] {
        let layer = format!("multi layer for {arch}");
        assert_eq!(
            pull_blob(&s, "multi", &sha256(layer.as_bytes())).await,
            Ok(layer.into_bytes())
        );
    }
    assert_eq!(
        pull_blob(&s, "multi", &sha256(b"signature")).await,
        Ok(b"signature".to_vec())
    );

    // Untagging the index frees it, then its children (no index holds them any more), then
    // the referrer (its subject is gone), in one run.
    s.delete("/v2/multi/manifests/v1").await;
    let run = gc(&s, false).await;
    assert_eq!(run["manifests"], 4, "index, two children, referrer: {run}");
    let catalog = json_body(s.get("/v2/_catalog").await).await;
    assert_eq!(catalog["repositories"], json!([]));
    assert_eq!(gc(&s, true).await["bytes"], 0);
}

/// Events queue a review of their repository; a replica's worker runs it and collects what
/// the event left, and nothing else.
#[tokio::test]
async fn reviews_after_events_collect_on_any_replica() {
    let s = server(false).await;
    let (old, _) = s.push_image_with("svc", "v1", b"c1", &[b"layer-1"]).await;
    s.push_image_with("svc", "v2", b"c2", &[b"layer-2"]).await;
    let replica = s.replica().await;
    // The pushes queued one review (deduplicated); it finds nothing to collect.
    assert_eq!(replica.run_due_jobs("r1").await.unwrap(), 1);
    assert_eq!(
        pull_blob(&s, "svc", &sha256(b"layer-1")).await,
        Ok(b"layer-1".to_vec())
    );

    s.delete(&format!("/v2/svc/manifests/{old}")).await;
    assert_eq!(replica.run_due_jobs("r1").await.unwrap(), 1);
    assert_eq!(pull_blob(&s, "svc", &sha256(b"layer-1")).await, Err(404));
    assert_eq!(
        pull_blob(&s, "svc", &sha256(b"layer-2")).await,
        Ok(b"layer-2".to_vec())
    );
    if s.on_embedded_backends() {
        assert!(!object_exists(&s, &sha256(b"layer-1")));
    }
    assert_eq!(
        gc(&s, true).await["bytes"],
        0,
        "the review left nothing behind"
    );
    replica.close().await;
}

/// Immutable tags refuse to move with the spec's DENIED (403); the same manifest again,
/// new tags, and excluded tags are fine. Invalid patterns are refused at save with their
/// position.
#[tokio::test]
async fn immutable_tags_refuse_overwrites_with_denied() {
    let s = server(false).await;
    let settings = "/api/v1/repositories/rel/app/-/settings";
    let resp = s
        .req(Method::PUT, settings)
        .json(&json!({ "tag_mutability": "immutable_with_exclusion", "mutable_patterns": ["latest", "dev-(.*"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let problem = json_body(resp).await;
    assert_eq!(problem["error"]["code"], "INVALID_PATTERN", "{problem}");
    assert_eq!(problem["error"]["details"]["field"], "mutable_patterns[1]");
    assert_eq!(problem["error"]["details"]["position"], 4);

    let rules = json!({ "tag_mutability": "immutable_with_exclusion", "mutable_patterns": ["latest", "dev-.*"] });
    let resp = s
        .req(Method::PUT, settings)
        .json(&rules)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        json_body(s.get(settings).await).await["tag_mutability"],
        "immutable_with_exclusion"
    );

    let (first, m1) = s
        .push_image_with("rel/app", "v1", b"cfg 1", &[b"one"])
        .await;
    let m2 = image_manifest(b"cfg 2", &[b"two"]);
    s.push_blob("rel/app", b"cfg 2").await;
    s.push_blob("rel/app", b"two").await;
    let resp = s
        .put_manifest("rel/app", "v1", Some(OCI_MANIFEST), &m2)
        .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let body = json_body(resp).await;
    assert_eq!(body["errors"][0]["code"], "DENIED");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("immutable"),
        "{body}"
    );
    let still = s.get("/v2/rel/app/manifests/v1").await;
    assert_eq!(
        still.bytes().await.unwrap().as_ref(),
        m1.as_slice(),
        "v1 unchanged"
    );
    // The manifest the tag already names: an idempotent retry succeeds.
    s.put_manifest_ok("rel/app", "v1", OCI_MANIFEST, &m1).await;
    // And the refused manifest is fine under a new tag, and moves freely under excluded ones.
    s.put_manifest_ok("rel/app", "v2", OCI_MANIFEST, &m2).await;
    s.put_manifest_ok("rel/app", "latest", OCI_MANIFEST, &m1)
        .await;
    s.put_manifest_ok("rel/app", "latest", OCI_MANIFEST, &m2)
        .await;
    s.put_manifest_ok("rel/app", "dev-7", OCI_MANIFEST, &m1)
        .await;
    s.put_manifest_ok("rel/app", "dev-7", OCI_MANIFEST, &m2)
        .await;
    // A re-push of an existing manifest under an immutable tag that points elsewhere.
    let resp = s
        .put_manifest("rel/app", "v2", Some(OCI_MANIFEST), &m1)
        .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let latest = s.get("/v2/rel/app/manifests/latest").await;
    assert_eq!(sha256(&latest.bytes().await.unwrap()), sha256(&m2));
    assert_ne!(first, sha256(&m2));
}

/// Protected tags: the domain refuses pushes and deletes from callers without the override,
/// and allows them with it (`auth_lifecycle` checks the roles that carry it over HTTP).
#[tokio::test]
async fn protected_tags_need_the_override() {
    use berth::oci::{Reference, RepoName};
    use berth::registry::Override;
    let s = server(false).await;
    let resp = s
        .req(Method::PUT, "/api/v1/repositories/prod/-/settings")
        .json(&json!({ "protected_patterns": ["v[0-9]+(\\.[0-9]+)*"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let (_, manifest) = s.push_image("prod", "v1.0", &[b"p"]).await;
    let replica = s.replica().await;
    let repo: RepoName = "prod".parse().unwrap();
    let tag: Reference = Reference::Tag("v1.0".parse().unwrap());
    let refused = replica
        .put_manifest(
            &repo,
            &Reference::Tag("v2".parse().unwrap()),
            Some(OCI_MANIFEST),
            manifest.clone().into(),
            Override::Denied,
            None,
        )
        .await
        .err()
        .expect("a protected tag is refused");
    assert_eq!((refused.code(), refused.status().as_u16()), ("DENIED", 403));
    let refused = replica
        .delete_manifest(&repo, &tag, Override::Denied, None)
        .await
        .err()
        .unwrap();
    assert_eq!(refused.code(), "DENIED");
    let digest = Reference::Digest(sha256(&manifest).parse().unwrap());
    let refused = replica
        .delete_manifest(&repo, &digest, Override::Denied, None)
        .await
        .err()
        .unwrap();
    assert_eq!(refused.code(), "DENIED", "by digest too: it carries v1.0");
    // An unprotected tag needs no override.
    replica
        .put_manifest(
            &repo,
            &Reference::Tag("nightly".parse().unwrap()),
            Some(OCI_MANIFEST),
            manifest.clone().into(),
            Override::Denied,
            None,
        )
        .await
        .unwrap();
    replica
        .delete_manifest(
            &repo,
            &Reference::Tag("nightly".parse().unwrap()),
            Override::Denied,
            None,
        )
        .await
        .unwrap();
    // Over HTTP without access control every caller maintains: the protected tag is deleted.
    assert_eq!(
        s.delete("/v2/prod/manifests/v1.0").await.status(),
        StatusCode::ACCEPTED
    );
    replica.close().await;
}

/// Pushes `tags` to `repo`, each on its own image, in order (the last is the newest).
async fn push_tags(s: &TestServer, repo: &str, tags: &[&str]) {
    for tag in tags {
        let layer = format!("{repo}:{tag}");
        s.push_image_with(
            repo,
            tag,
            format!("cfg {tag}").as_bytes(),
            &[layer.as_bytes()],
        )
        .await;
    }
}

async fn tag_list(s: &TestServer, repo: &str) -> Vec<String> {
    let body = json_body(s.get(&format!("/v2/{repo}/tags/list")).await).await;
    body["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect()
}

/// Bulk tag deletion with GitLab's filters: `name_regex_delete=.*` with `keep_n=1` keeps the
/// newest tag and every `name_regex_keep` match.
#[tokio::test]
async fn bulk_tag_deletion_with_gitlab_filters() {
    let s = server(false).await;
    push_tags(&s, "ci", &["main", "a1", "a2", "stable", "a3"]).await;
    let path =
        "/api/v1/repositories/ci/-/tags?name_regex_delete=.*&keep_n=1&name_regex_keep=main|stable";
    let preview = s.delete(&format!("{path}&dry_run=true")).await;
    assert_eq!(preview.status(), StatusCode::OK);
    let preview = json_body(preview).await;
    let names = |v: &Value| -> Vec<String> {
        v["removed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["tag"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names(&preview), ["a1", "a2"], "{preview}");
    assert_eq!(
        tag_list(&s, "ci").await.len(),
        5,
        "a dry run deletes nothing"
    );
    let done = json_body(s.delete(path).await).await;
    assert_eq!(names(&done), ["a1", "a2"]);
    assert_eq!(tag_list(&s, "ci").await, ["a3", "main", "stable"]);

    let bad = s
        .delete("/api/v1/repositories/ci/-/tags?name_regex_delete=a[")
        .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let bad = json_body(bad).await;
    assert_eq!(
        bad["error"]["details"]["field"], "name_regex_delete",
        "{bad}"
    );
    assert_eq!(bad["error"]["details"]["position"], 1);
    let unknown = s
        .delete("/api/v1/repositories/nope/-/tags?name_regex_delete=.*")
        .await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
}

/// Policies: refused at save with the regex error's position; a dry run previews; a run
/// removes what the preview said, is recorded with its reasons, and a collection reclaims the
/// bytes. A namespace-wide policy reaches every matching repository and no other.
#[tokio::test]
async fn cleanup_policies_preview_run_and_record() {
    let s = server(false).await;
    push_tags(&s, "team/api", &["v1", "v2", "v3", "keep-me"]).await;
    push_tags(&s, "team/web", &["v1", "v2"]).await;
    push_tags(&s, "other", &["v1", "v2"]).await;

    let bad = s
        .req(Method::PUT, "/api/v1/policies/team")
        .json(&json!({ "repositories": "team/.*", "name_regex": "v(", "enabled": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let bad = json_body(bad).await;
    assert_eq!(bad["error"]["code"], "INVALID_PATTERN");
    assert_eq!(bad["error"]["details"]["position"], 1, "{bad}");
    let bad = s
        .req(Method::PUT, "/api/v1/policies/team")
        .json(&json!({ "repositories": "team/.*", "name_regex": "v.*", "cadence": "2d" }))
        .send()
        .await
        .unwrap();
    assert_eq!(json_body(bad).await["error"]["code"], "INVALID_POLICY");

    let policy = json!({
        "repositories": "team/.*", "enabled": false, "cadence": "7d",
        "name_regex": ".*", "keep_n": 1, "name_regex_keep": "keep-.*",
    });
    let resp = s
        .req(Method::PUT, "/api/v1/policies/team")
        .json(&policy)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let listed = json_body(s.get("/api/v1/policies").await).await;
    assert_eq!(listed["items"][0]["name"], "team");
    assert_eq!(listed["items"][0]["keep_n"], 1);

    let preview = s
        .req(Method::POST, "/api/v1/policies/team/runs")
        .json(&json!({ "dry_run": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(preview.status(), StatusCode::OK);
    let preview = json_body(preview).await;
    let summary = |v: &Value| -> Vec<String> {
        let mut out: Vec<String> = v["removed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                format!(
                    "{}:{}",
                    r["repository"].as_str().unwrap(),
                    r["tag"].as_str().unwrap()
                )
            })
            .collect();
        out.sort();
        out
    };
    // team/api: keep-me is kept by the keep regex; of v1..v3 the newest (v3) stays.
    assert_eq!(
        summary(&preview),
        ["team/api:v1", "team/api:v2", "team/web:v1"]
    );
    assert_eq!(tag_list(&s, "team/api").await.len(), 4);

    let run = s
        .req(Method::POST, "/api/v1/policies/team/runs")
        .send()
        .await
        .unwrap();
    assert_eq!(run.status(), StatusCode::CREATED);
    let run = json_body(run).await;
    assert_eq!(summary(&run), summary(&preview));
    assert!(
        run["removed"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("name_regex")
    );
    assert_eq!(tag_list(&s, "team/api").await, ["keep-me", "v3"]);
    assert_eq!(
        tag_list(&s, "other").await,
        ["v1", "v2"],
        "outside the pattern"
    );

    let record = json_body(s.get(&format!("/api/v1/gc/runs/{}", run["run"])).await).await;
    assert_eq!(record["trigger"], "policy:team");
    assert_eq!(record["report"]["items"].as_array().unwrap().len(), 3);
    // The untagged images are garbage for the collector now (untagged option off: the
    // manifests stay, so nothing is reclaimed until they are deleted or untagged is on).
    assert_eq!(
        s.delete("/api/v1/policies/team").await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        s.delete("/api/v1/policies/team").await.status(),
        StatusCode::NOT_FOUND
    );
}

/// ECR lifecycle rules: `expire` removes whole images (manifest and tags), and rule
/// priority decides which rule owns an image.
#[tokio::test]
async fn ecr_policy_expires_whole_images() {
    let s = server(false).await;
    push_tags(&s, "ecr", &["prod-1", "prod-2", "prod-3", "dev-1", "dev-2"]).await;
    let policy = json!({
        "repository": "ecr",
        "ecr": { "rules": [
            { "rulePriority": 1, "description": "keep two prod",
              "selection": { "tagStatus": "tagged", "tagPatternList": ["prod-*"],
                             "countType": "imageCountMoreThan", "countNumber": 2 },
              "action": { "type": "expire" } },
            { "rulePriority": 2, "selection": { "tagStatus": "any",
                             "countType": "imageCountMoreThan", "countNumber": 1 },
              "action": { "type": "expire" } }
        ]}
    });
    let resp = s
        .req(Method::PUT, "/api/v1/policies/ecr")
        .json(&policy)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::OK,
        "{}",
        resp.text().await.unwrap()
    );
    let run = json_body(
        s.req(Method::POST, "/api/v1/policies/ecr/runs")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let mut removed: Vec<&str> = run["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["tag"].as_str().unwrap())
        .collect();
    removed.sort();
    // prod-1 (rule 1: beyond two prod images) and dev-1 (rule 2: beyond one other image).
    assert_eq!(removed, ["dev-1", "prod-1"]);
    assert_eq!(tag_list(&s, "ecr").await, ["dev-2", "prod-2", "prod-3"]);
    assert_error(
        s.get(&format!(
            "/v2/ecr/manifests/{}",
            sha256(&image_manifest(b"cfg dev-1", &[b"ecr:dev-1"]))
        ))
        .await,
        404,
        "MANIFEST_UNKNOWN",
    )
    .await;
    let run = gc(&s, false).await;
    assert_eq!(run["blobs"], 4, "two images of two blobs each: {run}");
}

/// Queued jobs run exactly once however many replicas lease at the same time: each queued
/// collection is run by one replica, and the replicas' counts add up to the jobs queued.
#[tokio::test]
async fn queued_jobs_run_exactly_once_across_replicas() {
    let s = server(false).await;
    s.push_image("once", "v1", &[b"kept"]).await;
    let replicas = [s.replica().await, s.replica().await, s.replica().await];
    // The push queued a review; let it run first, so that only the collections remain.
    replicas[0].run_due_jobs("warm-up").await.unwrap();
    let mut queued = std::collections::BTreeSet::new();
    for _ in 0..6 {
        let resp = s
            .req(Method::POST, "/api/v1/gc/runs")
            .json(&json!({ "dry_run": true }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        queued.insert(json_body(resp).await["id"].as_i64().expect("run id"));
    }
    let ran: Vec<usize> = futures::future::join_all(
        replicas
            .iter()
            .enumerate()
            .map(|(i, r)| async move { r.run_due_jobs(&format!("r{i}")).await }),
    )
    .await
    .into_iter()
    .map(|n| n.unwrap())
    .collect();
    assert_eq!(
        ran.iter().sum::<usize>(),
        queued.len(),
        "per replica: {ran:?}"
    );
    for id in &queued {
        let run = json_body(s.get(&format!("/api/v1/gc/runs/{id}")).await).await;
        assert_eq!(run["state"], "done", "{run}");
    }
    // Nothing is left to lease.
    for (i, r) in replicas.iter().enumerate() {
        assert_eq!(r.run_due_jobs(&format!("r{i}")).await.unwrap(), 0);
    }
    for r in replicas {
        r.close().await;
    }
}

/// The scanner's inventory of a layer goes with the layer's blob: the same layer pushed
/// again after a collection is read again (and not before).
#[tokio::test]
async fn a_collected_layer_is_read_again_when_pushed_again() {
    use crate::scans::{push_layers, scan_now, tar_of};

    let s = server(false).await;
    let layer = tar_of(&[("etc/os-release", b"ID=berth-test\n")]);
    let layers = [("application/vnd.oci.image.layer.v1.tar", layer.as_slice())];
    let (digest, _) = push_layers(&s, "inv/app", "v1", "amd64", &layers).await;
    assert_eq!(scan_now(&s, "inv/app", &digest).await["layers_read"], 1);
    assert_eq!(scan_now(&s, "inv/app", &digest).await["layers_read"], 0);

    let resp = s.delete(&format!("/v2/inv/app/manifests/{digest}")).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    gc(&s, false).await;
    assert!(
        !object_exists(&s, &sha256(&layer)),
        "the layer was collected"
    );

    let (again, _) = push_layers(&s, "inv/app", "v1", "amd64", &layers).await;
    assert_eq!(again, digest);
    assert_eq!(scan_now(&s, "inv/app", &digest).await["layers_read"], 1);
}

/// A delete the store refuses releases the collector's claim all the same: the digest can be
/// pushed again at once (not refused after waiting on a claim until the next run), and the
/// object left behind, an orphan now, goes with the next run. The store refuses here because
/// the object's path holds a directory (the tests run as root, so permissions would not).
#[tokio::test]
async fn a_delete_the_store_refuses_does_not_hold_the_digest_from_pushes() {
    let s = server(false).await;
    if !s.on_embedded_backends() {
        eprintln!("skipped: breaks a delete on the local filesystem store only");
        return;
    }
    let (pushed_again, left_behind) = (b"pushed again".as_slice(), b"left behind".as_slice());
    s.push_image_with(
        "gone/app",
        "v1",
        b"gone config",
        &[pushed_again, left_behind],
    )
    .await;
    let resp = s.delete("/api/v1/repositories/gone/app").await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let object = |bytes: &[u8]| {
        let hex = sha256(bytes).trim_start_matches("sha256:").to_owned();
        s.data_dir
            .join("blobs/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
    };
    for bytes in [pushed_again, left_behind] {
        let path = object(bytes);
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("in the way"), b"x").unwrap();
    }

    let run = gc(&s, false).await;
    assert_eq!(run["errors"], 2, "both deletes refused: {run}");
    assert_eq!(run["blobs"], 1, "the config went: {run}");
    // What a refused delete leaves: the object as it was.
    for bytes in [pushed_again, left_behind] {
        let path = object(bytes);
        std::fs::remove_dir_all(&path).unwrap();
        std::fs::write(&path, bytes).unwrap();
    }

    // Pushed again at once, and served.
    s.push_blob("back/app", pushed_again).await;
    assert_eq!(
        pull_blob(&s, "back/app", &sha256(pushed_again)).await,
        Ok(pushed_again.to_vec())
    );

    // The next run deletes what is left behind, as an orphan.
    let run = gc(&s, false).await;
    assert_eq!(run["errors"], 0, "{run}");
    assert!(run["orphans"].as_i64() >= Some(1), "{run}");
    assert!(!object_exists(&s, &sha256(left_behind)));
}
