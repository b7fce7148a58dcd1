//! A full disk on the filesystem backend (a small tmpfs mounted by the test): pushes fail
//! with 507 naming the cause, nothing half-written becomes visible, pulls keep working, the
//! SQLite index survives, and once space is freed pushes succeed without a restart.

use std::{io::Write, path::Path, process::Command};

use reqwest::{Method, StatusCode};

use crate::common::{OCI_MANIFEST, TestServer, image_config, image_manifest, random_bytes, sha256};

/// A tmpfs mounted for one test, unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().expect("mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(status.success(), "mounting a tmpfs needs root");
        SmallDisk { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Fills the disk with a ballast file until the kernel refuses more; returns its path.
fn fill(disk: &SmallDisk) -> std::path::PathBuf {
    let path = disk.path().join("ballast");
    let mut file = std::fs::File::create(&path).expect("ballast");
    let chunk = vec![0u8; 64 * 1024];
    for _ in 0..10_000 {
        if file.write_all(&chunk).is_err() {
            return path;
        }
    }
    panic!("the small disk never filled");
}

async fn push(s: &TestServer, repo: &str, bytes: &[u8]) -> (StatusCode, String) {
    let resp = s
        .req(
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/?digest={}", sha256(bytes)),
        )
        .header("content-type", "application/octet-stream")
        .body(bytes.to_vec())
        .send()
        .await
        .expect("POST blob");
    (resp.status(), resp.text().await.unwrap_or_default())
}

#[tokio::test]
#[ignore = "needs root: mounts a small tmpfs (scripts/test.sh runs it as root)"]
async fn a_full_disk_refuses_pushes_clearly_and_recovers_without_a_restart() {
    let disk = SmallDisk::mount("24m");
    let data = tempfile::tempdir_in(disk.path()).expect("data dir on the small disk");
    let s = TestServer::start_in(data, |_| {}).await;
    let layer = random_bytes(200_000);
    let (digest, manifest) = s.push_image("full/app", "v1", &[&layer]).await;

    let ballast = fill(&disk);
    let big = random_bytes(1_000_000);
    let (status, body) = push(&s, "full/app", &big).await;
    assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE, "{body}");
    assert!(body.contains("out of space"), "{body}");
    // Nothing of it is visible.
    let head = s
        .head(&format!("/v2/full/app/blobs/{}", sha256(&big)))
        .await;
    assert_eq!(head.status(), StatusCode::NOT_FOUND);
    // Pulls keep working.
    let pulled = s.get("/v2/full/app/manifests/v1").await;
    assert_eq!(pulled.status(), StatusCode::OK);
    assert_eq!(pulled.bytes().await.unwrap().as_ref(), manifest.as_slice());
    let blob = s
        .get(&format!("/v2/full/app/blobs/{}", sha256(&layer)))
        .await;
    assert_eq!(blob.bytes().await.unwrap().as_ref(), layer.as_slice());
    // A tag write either lands or is refused naming the cause: never a 500.
    let resp = s
        .put_manifest("full/app", "v2", Some(OCI_MANIFEST), &manifest)
        .await;
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    assert!(
        status == StatusCode::CREATED
            || (status == StatusCode::INSUFFICIENT_STORAGE && body.contains("out of space")),
        "{status} {body}"
    );

    std::fs::remove_file(&ballast).expect("free the space");
    let (status, body) = push(&s, "full/app", &big).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let config = image_config("linux", "amd64", None);
    s.push_blob("full/app", &config).await;
    let second = image_manifest(&config, &[&big]);
    s.put_manifest_ok("full/app", "v3", OCI_MANIFEST, &second)
        .await;

    // The index came through: after a restart every acknowledged manifest is there.
    let config_of = s.config.clone();
    let dir = s.stop().await;
    let s = TestServer::start_in(dir, move |c| *c = config_of).await;
    for (tag, expected) in [("v1", &manifest), ("v3", &second)] {
        let resp = s.get(&format!("/v2/full/app/manifests/{tag}")).await;
        assert_eq!(resp.status(), StatusCode::OK, "{tag}");
        assert_eq!(resp.bytes().await.unwrap().as_ref(), expected.as_slice());
    }
    let resp = s.get(&format!("/v2/full/app/manifests/{digest}")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    drop(s);
}
