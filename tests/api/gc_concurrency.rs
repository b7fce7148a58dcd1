//! Online garbage collection under load: pushers (multi-arch indexes with referrers, shared
//! and reused layers, monolithic and chunked uploads, tag deletes, re-pushes of content
//! collected meanwhile) run while three collectors (the API, a second replica, and the
//! server's review worker) collect in a tight loop, untagged collection on. The grace period
//! is 2 s (the index counts whole seconds): with none, every blob is garbage until its
//! manifest arrives and pushes would starve. A push may still be refused when a collector
//! races it (the client retries, as clients do); what was acknowledged and is still tagged
//! must pull byte-identical afterwards, and a final collection with no grace (pushes have
//! stopped) must leave nothing unreferenced and no orphan object.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

use crate::common::{
    OCI_INDEX, OCI_MANIFEST, TestServer, descriptor, image_config, image_manifest, sha256,
};

const PUSHERS: usize = 4;
const IMAGES_PER_PUSHER: usize = 9;
const ATTEMPTS: usize = 30;
const GC_ITERATIONS_MAX: usize = 5_000;

/// One acknowledged, tagged image: everything a pull of it returns.
#[derive(Clone)]
struct Pushed {
    repo: String,
    tag: String,
    index: Vec<u8>,
    children: Vec<Vec<u8>>,
    referrer: Vec<u8>,
    blobs: Vec<Vec<u8>>,
}

type Res<T> = Result<T, String>;

async fn push_blob(c: &Client, base: &str, repo: &str, bytes: &[u8], chunked: bool) -> Res<()> {
    let digest = sha256(bytes);
    let resp = if chunked {
        let start = c
            .post(format!("{base}/v2/{repo}/blobs/uploads/"))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if start.status() != StatusCode::ACCEPTED {
            return Err(format!("start upload: {}", start.status()));
        }
        let location = start.headers()["location"].to_str().unwrap().to_owned();
        let location = if location.starts_with('/') {
            format!("{base}{location}")
        } else {
            location
        };
        let patch = c
            .patch(&location)
            .header("content-type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if patch.status() != StatusCode::ACCEPTED {
            return Err(format!("patch: {}", patch.status()));
        }
        let location = patch.headers()["location"].to_str().unwrap().to_owned();
        let location = if location.starts_with('/') {
            format!("{base}{location}")
        } else {
            location
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        c.put(format!("{location}{sep}digest={digest}"))
            .send()
            .await
            .map_err(|e| e.to_string())?
    } else {
        c.post(format!("{base}/v2/{repo}/blobs/uploads/?digest={digest}"))
            .header("content-type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .await
            .map_err(|e| e.to_string())?
    };
    match resp.status() {
        StatusCode::CREATED => Ok(()),
        s => Err(format!(
            "blob {digest}: {s} {}",
            resp.text().await.unwrap_or_default()
        )),
    }
}

async fn put_manifest(
    c: &Client,
    base: &str,
    repo: &str,
    reference: &str,
    media_type: &str,
    body: &[u8],
) -> Res<()> {
    let resp = c
        .put(format!("{base}/v2/{repo}/manifests/{reference}"))
        .header("content-type", media_type)
        .body(body.to_vec())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    match resp.status() {
        StatusCode::CREATED => Ok(()),
        s => Err(format!(
            "manifest {repo}:{reference}: {s} {}",
            resp.text().await.unwrap_or_default()
        )),
    }
}

/// Pushes one image set: two platform images (by digest), the index (tagged), a referrer.
async fn push_image(c: &Client, base: &str, pusher: usize, n: usize) -> Res<Pushed> {
    let repo = format!("load/p{}", pusher % 2);
    let tag = format!("t{pusher}-{n}");
    let mut children = Vec::new();
    let mut blobs = Vec::new();
    let mut descriptors = Vec::new();
    for (k, arch) in ["amd64", "arm64"].iter().enumerate() {
        let config = image_config("linux", arch, Some(&tag));
        let shared = format!("shared layer {}", (n + k) % 3).into_bytes();
        // Images n and n + 3 share this layer, and every third image is deleted: content
        // collected meanwhile is pushed again.
        let unique = format!("unique layer {pusher} {} {arch}", n % 3).into_bytes();
        for (j, blob) in [&config, &shared, &unique].into_iter().enumerate() {
            push_blob(c, base, &repo, blob, (j + n) % 2 == 1).await?;
        }
        let manifest = image_manifest(&config, &[&shared, &unique]);
        put_manifest(c, base, &repo, &sha256(&manifest), OCI_MANIFEST, &manifest).await?;
        let mut d = descriptor(OCI_MANIFEST, &manifest);
        d["platform"] = json!({ "os": "linux", "architecture": arch });
        descriptors.push(d);
        children.push(manifest);
        blobs.extend([config, shared, unique]);
    }
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors,
    }))
    .unwrap();
    put_manifest(c, base, &repo, &tag, OCI_INDEX, &index).await?;
    let signature = format!("signature of {tag}").into_bytes();
    push_blob(c, base, &repo, &signature, false).await?;
    push_blob(c, base, &repo, b"{}", false).await?;
    let referrer = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.signature",
        "config": descriptor("application/vnd.oci.empty.v1+json", b"{}"),
        "layers": [descriptor("application/octet-stream", &signature)],
        "subject": descriptor(OCI_INDEX, &index),
    }))
    .unwrap();
    put_manifest(c, base, &repo, &sha256(&referrer), OCI_MANIFEST, &referrer).await?;
    blobs.push(signature);
    Ok(Pushed {
        repo,
        tag,
        index,
        children,
        referrer,
        blobs,
    })
}

async fn pusher(base: String, id: usize) -> Vec<Pushed> {
    let c = Client::new();
    let mut kept = Vec::new();
    for n in 0..IMAGES_PER_PUSHER {
        let mut last = String::new();
        let mut pushed = None;
        for _ in 0..ATTEMPTS {
            match push_image(&c, &base, id, n).await {
                Ok(p) => {
                    pushed = Some(p);
                    break;
                }
                Err(e) => last = e,
            }
        }
        let pushed =
            pushed.unwrap_or_else(|| panic!("pusher {id} image {n} never succeeded: {last}"));
        // Every third image is untagged again right away: garbage the collectors must take
        // without touching the others.
        if n % 3 == 2 {
            let resp = c
                .delete(format!(
                    "{base}/v2/{}/manifests/{}",
                    pushed.repo, pushed.tag
                ))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::ACCEPTED);
        } else {
            kept.push(pushed);
        }
    }
    kept
}

async fn get(c: &Client, url: String) -> Vec<u8> {
    let resp = c
        .get(&url)
        .header("accept", format!("{OCI_INDEX}, {OCI_MANIFEST}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "{url}");
    resp.bytes().await.unwrap().to_vec()
}

async fn gc_run(c: &Client, base: &str, dry_run: bool, grace_secs: Option<u64>) -> Value {
    let resp = c
        .post(format!("{base}/api/v1/gc/runs"))
        .json(&json!({ "wait": true, "dry_run": dry_run, "grace_secs": grace_secs }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    resp.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_images_survive_collection_in_a_tight_loop() {
    let s = TestServer::start_with(|c| {
        c.gc.grace_secs = 2;
        c.gc.review_delay_secs = 0;
        c.gc.untagged = true;
        c.gc.poll_millis = 10;
        c.gc.schedule_secs = 0;
        // Upload sessions of the pushers are live: never abandoned during the test.
        c.gc.upload_timeout_secs = 3600;
    })
    .await;
    let done = Arc::new(AtomicBool::new(false));

    let api_loop = {
        let (base, done) = (s.base.clone(), done.clone());
        tokio::spawn(async move {
            let c = Client::new();
            let mut runs = 0;
            while !done.load(Ordering::Acquire) && runs < GC_ITERATIONS_MAX {
                let run = gc_run(&c, &base, false, None).await;
                assert_eq!(run["errors"], 0, "{run}");
                runs += 1;
            }
            runs
        })
    };
    let replica = s.replica().await;
    let replica_loop = {
        let (replica, done) = (replica.clone(), done.clone());
        tokio::spawn(async move {
            let mut runs = 0;
            while !done.load(Ordering::Acquire) && runs < GC_ITERATIONS_MAX {
                let run = replica
                    .run_gc("replica", replica.gc_options(false), &|_, _| {})
                    .await
                    .unwrap();
                assert_eq!(run.counts.errors, 0, "{run:?}");
                runs += 1;
            }
            runs
        })
    };
    let pushers: Vec<_> = (0..PUSHERS)
        .map(|id| tokio::spawn(pusher(s.base.clone(), id)))
        .collect();
    let mut kept = Vec::new();
    for p in pushers {
        kept.extend(p.await.expect("pusher"));
    }
    done.store(true, Ordering::Release);
    let api_runs = api_loop.await.unwrap();
    let replica_runs = replica_loop.await.unwrap();
    assert!(
        api_runs >= 1 && replica_runs >= 1,
        "{api_runs} {replica_runs}"
    );

    let c = Client::new();
    let check = |kept: Vec<Pushed>| {
        let c = c.clone();
        let base = s.base.clone();
        async move {
            for p in &kept {
                let index = get(&c, format!("{base}/v2/{}/manifests/{}", p.repo, p.tag)).await;
                assert_eq!(index, p.index, "{}:{}", p.repo, p.tag);
                for child in p.children.iter().chain([&p.referrer]) {
                    let got = get(
                        &c,
                        format!("{base}/v2/{}/manifests/{}", p.repo, sha256(child)),
                    )
                    .await;
                    assert_eq!(&got, child);
                }
                for blob in &p.blobs {
                    let got = get(&c, format!("{base}/v2/{}/blobs/{}", p.repo, sha256(blob))).await;
                    assert_eq!(&got, blob);
                }
                let referrers: Value = serde_json::from_slice(
                    &get(
                        &c,
                        format!("{base}/v2/{}/referrers/{}", p.repo, sha256(&p.index)),
                    )
                    .await,
                )
                .unwrap();
                assert_eq!(referrers["manifests"][0]["digest"], sha256(&p.referrer));
            }
        }
    };
    assert_eq!(
        kept.len(),
        PUSHERS * (IMAGES_PER_PUSHER - IMAGES_PER_PUSHER / 3)
    );
    check(kept.clone()).await;

    // The final collection (both workers idle) takes the rest of the garbage, and then
    // nothing is left to take: no unreferenced blob, no orphan object, no untagged manifest.
    let last = gc_run(&c, &s.base, false, Some(0)).await;
    assert_eq!(last["errors"], 0);
    assert!(
        last["manifests"].as_i64().unwrap() > 0,
        "the untagged images: {last}"
    );
    let dry = gc_run(&c, &s.base, true, Some(0)).await;
    for field in ["manifests", "links", "blobs", "orphans", "bytes"] {
        assert_eq!(dry[field], 0, "{field} left after the final run: {dry}");
    }
    check(kept).await;
    replica.close().await;
}
