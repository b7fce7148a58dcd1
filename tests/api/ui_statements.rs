//! Statements per UI page, counted from a real `berth serve`'s statement log (sqlx logs each
//! statement inside the request's span, so a page's own are told from the workers'): a
//! repository page runs no more statements with 200 tags than with 10, in every sort order,
//! and neither do the image, repositories and namespace pages with more rows. "No more"
//! is what guards against a listing whose statements grow with its rows; one CI run under
//! load counted a namespace page one statement short, which "the same" failed on.

use std::{
    process::Stdio,
    sync::mpsc,
    time::{Duration, Instant},
};

use reqwest::{Client, StatusCode};
use serde_json::json;

use crate::common::{OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, sha256};

/// How long a page may take to be logged as finished.
const PAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// A `berth serve` with the statement log on, its log lines arriving on `lines`.
struct Logged {
    child: std::process::Child,
    base: String,
    lines: mpsc::Receiver<String>,
    _data: tempfile::TempDir,
}

impl Logged {
    fn start() -> Logged {
        let data = tempfile::tempdir().unwrap();
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_berth"));
        command
            .arg("serve")
            .arg("--data-dir")
            .arg(data.path())
            .arg("--listen")
            .arg("127.0.0.1:0");
        for key in [
            "BERTH_CONFIG",
            "BERTH_DATABASE_URL",
            "BERTH_STORAGE_URL",
            "BERTH_DATA_DIR",
            "BERTH_LISTEN",
            "BERTH_LOG_FORMAT",
        ] {
            command.env_remove(key);
        }
        let mut child = command
            .env(
                "BERTH_LOG",
                "warn,berth=info,tower_http=debug,sqlx::query=debug",
            )
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("berth runs");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let base = loop {
            let line = lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("berth's serving line");
            if let Some(at) = line.find("berth is serving") {
                let rest = &line[at..];
                let addr = rest[rest.find("address=").unwrap() + "address=".len()..]
                    .split_whitespace()
                    .next()
                    .unwrap()
                    .to_owned();
                break format!("http://{addr}");
            }
        };
        Logged {
            child,
            base,
            lines,
            _data: data,
        }
    }

    /// The statements page `path` runs: the fewest of three GETs (a request may also refresh
    /// what the server keeps for a few seconds: settings, policies). Returns (status, the
    /// statements' summaries).
    async fn statements_of(&self, client: &Client, path: &str) -> (StatusCode, Vec<String>) {
        let mut fewest: Option<(StatusCode, Vec<String>)> = None;
        for _ in 0..3 {
            let (status, run) = self.statements_once(client, path).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            if fewest.as_ref().is_none_or(|(_, f)| run.len() < f.len()) {
                fewest = Some((status, run));
            }
        }
        fewest.unwrap()
    }

    /// GETs `path` and gathers the statements its request ran: the `sqlx::query` lines in its
    /// span up to its `finished processing request`. A connection the pool opens for the
    /// request logs its setup pragmas there too; those are the pool's, not the page's.
    async fn statements_once(&self, client: &Client, path: &str) -> (StatusCode, Vec<String>) {
        // Whatever was logged before belongs to earlier requests and the workers.
        while self.lines.try_recv().is_ok() {}
        let status = client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
            .status();
        let span = format!("uri={path} ");
        let deadline = Instant::now() + PAGE_TIMEOUT;
        let mut statements = Vec::new();
        loop {
            let line = self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| panic!("{path}: no end of request logged"));
            if !line.contains(&span) {
                continue;
            }
            if line.contains("sqlx::query") {
                let summary = line
                    .split("summary=\"")
                    .nth(1)
                    .and_then(|rest| rest.split('"').next())
                    .unwrap_or(&line)
                    .to_owned();
                if !summary.starts_with("PRAGMA ") {
                    statements.push(summary);
                }
            } else if line.contains("finished processing request") {
                return (status, statements);
            }
        }
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Pushes a one-layer image to `repo` (anonymously: authentication is off) and tags it
/// `tags`; returns the manifest's digest.
async fn push_tagged(
    client: &Client,
    base: &str,
    repo: &str,
    seed: &str,
    tags: &[String],
) -> String {
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": { "type": "layers", "diff_ids": [] }, "config": {},
    }))
    .unwrap();
    let layer = format!("layer of {seed}").into_bytes();
    for blob in [&config, &layer] {
        let resp = client
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
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": { "mediaType": OCI_CONFIG, "digest": sha256(&config), "size": config.len() },
        "layers": [{ "mediaType": OCI_LAYER, "digest": sha256(&layer), "size": layer.len() }],
    }))
    .unwrap();
    for tag in tags {
        let resp = client
            .put(format!("{base}/v2/{repo}/manifests/{tag}"))
            .header("content-type", OCI_MANIFEST)
            .body(manifest.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED, "{tag}");
    }
    sha256(&manifest)
}

#[tokio::test]
async fn a_repository_page_costs_the_same_statements_with_ten_tags_as_with_two_hundred() {
    let berth = Logged::start();
    let client = Client::new();
    let names = |from: usize, to: usize| (from..to).map(|i| format!("t{i:04}")).collect::<Vec<_>>();
    let digest = push_tagged(&client, &berth.base, "bulk/app", "a", &names(0, 10)).await;
    let sorts = [
        "",
        "?sort=name",
        "?sort=pushed",
        "?sort=pulled",
        "?sort=size",
    ];
    let mut few = Vec::new();
    for sort in sorts {
        let (status, n) = berth
            .statements_of(&client, &format!("/ui/r/bulk/app{sort}"))
            .await;
        assert_eq!(status, StatusCode::OK);
        few.push(n.len());
    }
    let (status, image_few) = berth
        .statements_of(&client, &format!("/ui/r/bulk/app/-/images/{digest}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, list_few) = berth.statements_of(&client, "/ui/repositories").await;
    let (_, namespaces_few) = berth.statements_of(&client, "/ui/namespaces").await;
    let (status, namespace_few) = berth.statements_of(&client, "/ui/ns/bulk").await;
    assert_eq!(status, StatusCode::OK);

    // Twenty times the tags, on a second image, and more repositories.
    push_tagged(&client, &berth.base, "bulk/app", "b", &names(10, 200)).await;
    for i in 0..20 {
        push_tagged(
            &client,
            &berth.base,
            &format!("bulk/other{i}"),
            "c",
            &names(0, 1),
        )
        .await;
    }
    let mut many = Vec::new();
    for sort in sorts {
        let (status, n) = berth
            .statements_of(&client, &format!("/ui/r/bulk/app{sort}"))
            .await;
        assert_eq!(status, StatusCode::OK);
        many.push(n.len());
    }
    assert!(
        many.iter().zip(&few).all(|(m, f)| m <= f),
        "statements per sort order ({sorts:?}): {few:?} then {many:?}"
    );
    assert!(few.iter().all(|&n| n <= 10), "{few:?}");
    let (_, image_many) = berth
        .statements_of(&client, &format!("/ui/r/bulk/app/-/images/{digest}"))
        .await;
    assert!(
        image_many.len() <= image_few.len(),
        "the image page: {image_few:?} then {image_many:?}"
    );
    let (_, list_many) = berth.statements_of(&client, "/ui/repositories").await;
    assert!(
        list_many.len() <= list_few.len(),
        "the repositories page: {list_few:?} then {list_many:?}"
    );
    let (_, namespaces_many) = berth.statements_of(&client, "/ui/namespaces").await;
    assert!(
        namespaces_many.len() <= namespaces_few.len(),
        "the namespaces page: {namespaces_few:?} then {namespaces_many:?}"
    );
    let (_, namespace_many) = berth.statements_of(&client, "/ui/ns/bulk").await;
    assert!(
        namespace_many.len() <= namespace_few.len(),
        "a namespace's page: {namespace_few:?} then {namespace_many:?}"
    );
}
