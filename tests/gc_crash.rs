//! Crash safety of garbage collection: the real `berth` binary is killed (SIGKILL) in the
//! middle of a collection, restarted on the same directory, and then
//!
//! - every image still tagged pulls byte-identical (manifest and every blob): the rows of
//!   what a collection deletes go first, the objects after, so a kill between the two never
//!   leaves a referenced blob without bytes;
//! - the killed run is recorded as failed (interrupted), the next run finishes the job (the
//!   claims the killed collector held are completed), and afterwards nothing unreferenced and
//!   no orphan object is left: the store holds exactly the blobs of the tagged images;
//! - `berth gc history` and `berth gc --dry-run`, run beside the server, agree.

mod support;

use std::{collections::BTreeSet, path::Path};

use futures::StreamExt;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use support::{random_bytes, sha256, start_server};

const IMAGES: usize = 600;
/// Every image but one in this many is deleted before the collection.
const KEEP_EVERY: usize = 3;
const LAYERS: usize = 3;
/// Checks of the store before giving up on seeing the collection start.
const WATCH_LIMIT: usize = 50_000_000;

struct Image {
    tag: String,
    manifest: Vec<u8>,
    blobs: Vec<Vec<u8>>,
}

fn image(n: usize) -> Image {
    let config = format!("{{\"architecture\":\"amd64\",\"os\":\"linux\",\"n\":{n}}}").into_bytes();
    let layers: Vec<Vec<u8>> = (0..LAYERS)
        .map(|l| random_bytes((n * LAYERS + l) as u64, 1024 + 512 * l))
        .collect();
    let descriptor = |media_type: &str, b: &[u8]| json!({ "mediaType": media_type, "digest": sha256(b), "size": b.len() });
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": descriptor("application/vnd.oci.image.config.v1+json", &config),
        "layers": layers.iter().map(|l| descriptor("application/vnd.oci.image.layer.v1.tar", l)).collect::<Vec<_>>(),
    }))
    .unwrap();
    let mut blobs = vec![config];
    blobs.extend(layers);
    Image {
        tag: format!("v{n}"),
        manifest,
        blobs,
    }
}

fn repo(n: usize) -> String {
    format!("crash/r{}", n % 7)
}

async fn push(c: &Client, base: &str, n: usize, image: &Image) {
    let repo = repo(n);
    for blob in &image.blobs {
        let resp = c
            .post(format!(
                "{base}/v2/{repo}/blobs/uploads/?digest={}",
                sha256(blob)
            ))
            .body(blob.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
    }
    let resp = c
        .put(format!("{base}/v2/{repo}/manifests/{}", image.tag))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(image.manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
}

fn object(data_dir: &Path, digest: &str) -> std::path::PathBuf {
    let hex = digest.trim_start_matches("sha256:");
    data_dir
        .join("blobs/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
}

fn objects_in(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => objects_in(&e.path()),
            _ => 1,
        })
        .sum()
}

async fn gc(c: &Client, base: &str, dry_run: bool) -> Value {
    let resp = c
        .post(format!("{base}/api/v1/gc/runs"))
        .json(&json!({ "wait": true, "dry_run": dry_run }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    resp.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill9_during_gc_loses_nothing_and_the_next_run_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let config = dir.path().join("berth.toml");
    std::fs::write(
        &config,
        "[gc]\ncontinuous = false\ngrace_secs = 0\nlease_secs = 0\nschedule_secs = 0\n",
    )
    .unwrap();
    let server = start_server(&data_dir, &config);
    let base = server.base.clone();
    let c = Client::new();
    let images: Vec<Image> = (0..IMAGES).map(image).collect();
    futures::stream::iter(images.iter().enumerate())
        .for_each_concurrent(16, |(n, img)| {
            let (c, base) = (c.clone(), base.clone());
            async move { push(&c, &base, n, img).await }
        })
        .await;
    let mut garbage = BTreeSet::new();
    for (n, img) in images
        .iter()
        .enumerate()
        .filter(|(n, _)| n % KEEP_EVERY != 0)
    {
        let resp = c
            .delete(format!(
                "{base}/v2/{}/manifests/{}",
                repo(n),
                sha256(&img.manifest)
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        garbage.extend(img.blobs.iter().map(|b| sha256(b)));
    }
    let kept: Vec<(usize, &Image)> = images
        .iter()
        .enumerate()
        .filter(|(n, _)| n % KEEP_EVERY == 0)
        .collect();

    // The collector deletes blobs in digest order, rows first: once the first garbage object
    // is gone, the run is in its blob phase with most of the work ahead. Kill it there.
    let first = object(&data_dir, garbage.first().unwrap());
    assert!(first.exists());
    let run = tokio::spawn({
        let (c, base) = (c.clone(), base.clone());
        async move {
            c.post(format!("{base}/api/v1/gc/runs"))
                .json(&json!({ "wait": true }))
                .send()
                .await
        }
    });
    let mut checks = 0;
    while first.exists() && !run.is_finished() && checks < WATCH_LIMIT {
        checks += 1;
        std::hint::spin_loop();
    }
    assert!(
        !run.is_finished(),
        "the collection ended before the kill: make more garbage"
    );
    assert!(!first.exists(), "the collection never started deleting");
    tokio::task::block_in_place(|| server.kill9());
    let _ = run.await;
    let left_by_kill = garbage
        .iter()
        .filter(|d| object(&data_dir, d).exists())
        .count();
    assert!(left_by_kill > 0, "the kill came after the last deletion");

    let server = start_server(&data_dir, &config);
    let base = server.base.clone();
    for (n, img) in &kept {
        let resp = c
            .get(format!("{base}/v2/{}/manifests/{}", repo(*n), img.tag))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            resp.bytes().await.unwrap().as_ref(),
            img.manifest.as_slice()
        );
        for blob in &img.blobs {
            let resp = c
                .get(format!("{base}/v2/{}/blobs/{}", repo(*n), sha256(blob)))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::OK, "a kept blob after the kill");
            assert_eq!(resp.bytes().await.unwrap().as_ref(), blob.as_slice());
        }
    }

    let next = gc(&c, &base, false).await;
    assert_eq!(
        (next["state"].as_str(), next["errors"].as_i64()),
        (Some("done"), Some(0)),
        "{next}"
    );
    let runs: Value = c
        .get(format!("{base}/api/v1/gc/runs"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let killed = runs["items"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(killed["state"], "failed", "{runs}");
    let dry = gc(&c, &base, true).await;
    for field in ["manifests", "links", "blobs", "uploads", "orphans", "bytes"] {
        assert_eq!(dry[field], 0, "{field} left after the next run: {dry}");
    }
    let kept_blobs: BTreeSet<String> = kept
        .iter()
        .flat_map(|(_, i)| i.blobs.iter().map(|b| sha256(b)))
        .collect();
    assert_eq!(
        objects_in(&data_dir.join("blobs/blobs")),
        kept_blobs.len(),
        "exactly the kept blobs are stored"
    );
    assert!(garbage.iter().all(|d| !object(&data_dir, d).exists()));

    // The CLI, beside the running server, on the same index: the history shows the killed
    // run as failed, and a dry run finds nothing.
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
            .arg("gc")
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--config")
            .arg(&config)
            .args(args)
            .env_remove("BERTH_DATABASE_URL")
            .env_remove("BERTH_STORAGE_URL")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let history = cli(&["history"]);
    let killed_line = history
        .lines()
        .find(|l| l.split_whitespace().next() == Some(&killed["id"].to_string()))
        .unwrap_or_else(|| panic!("no line for run {}: {history}", killed["id"]));
    assert!(killed_line.contains("failed"), "{killed_line}");
    let dry = cli(&["--dry-run"]);
    assert!(
        dry.contains("would delete: 0 manifests, 0 links, 0 blobs"),
        "{dry}"
    );
    assert!(dry.contains(" 0 bytes reclaimable"), "{dry}");
    drop(server);
}
