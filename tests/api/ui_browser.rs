//! The web UI in a real browser: headless Chromium driven over WebDriver (chromedriver on
//! loopback) against a real Berth holding a five-platform index, a signed image and a
//! scanned vulnerable one. It signs in, browses every page, sorts, searches, creates and
//! revokes a token, and saves screenshots under `target/ui-screenshots/`. The image pages
//! are checked with what real clients push: an SBOM referrer and its signature, and an
//! image skopeo copies in with a build history, labels and annotations full of markup.
//!
//! Needs Debian's `chromium` and `chromium-driver` (scripts/install-test-deps.sh installs
//! them; scripts/test.sh runs this with `--include-ignored`).

use std::{path::PathBuf, process::Stdio, time::Duration};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

use crate::{
    common::auth::{ADMIN, ADMIN_PASSWORD, start_auth},
    ui::rich_content,
};

/// chromedriver on a loopback port, ended when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    /// Starts chromedriver and waits for the line saying it listens.
    async fn start() -> Driver {
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let mut child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver: run scripts/install-test-deps.sh");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let started = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if line.contains("started successfully") {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(started, Ok(true), "chromedriver did not start");
        // Keep reading its output, so that it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Driver { child, port }
    }

    /// A headless Chromium session with a fresh profile, quiet on a closed network.
    async fn browser(&self, profile: &std::path::Path) -> Client {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium(),
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        // The WebDriver connection is plain HTTP; the builder still wants a TLS provider.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        ClientBuilder::rustls()
            .expect("TLS roots")
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a WebDriver session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

fn chromium() -> &'static str {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("chromium")
}

fn screenshots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.expect("screenshot");
    std::fs::write(screenshots().join(format!("{name}.png")), png).unwrap();
}

async fn text(browser: &Client, css: &str) -> String {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .unwrap()
}

async fn texts(browser: &Client, css: &str) -> Vec<String> {
    let mut out = Vec::new();
    for element in browser.find_all(Locator::Css(css)).await.unwrap() {
        out.push(element.text().await.unwrap());
    }
    out
}

async fn title(browser: &Client) -> String {
    browser.title().await.unwrap()
}

/// Clicks the element `locator` finds.
async fn click(browser: &Client, locator: Locator<'_>) {
    browser.find(locator).await.unwrap().click().await.unwrap();
}

/// Waits for the page that shows `xpath` (a click's navigation is not awaited by every
/// driver).
async fn shown(browser: &Client, xpath: &str) {
    browser
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::XPath(xpath))
        .await
        .unwrap_or_else(|e| panic!("{xpath} never shown: {e}"));
}

/// Waits for the page titled `title` (before " · Berth").
async fn titled(browser: &Client, title: &str) {
    shown(browser, &format!("//title[text()='{title} · Berth']")).await;
}

#[tokio::test]
#[ignore = "needs chromium, chromedriver and skopeo"]
async fn a_browser_signs_in_browses_sorts_searches_and_manages_tokens() {
    // Usage flushed often, so that the overview's charts have the pushes below.
    let mut s = start_auth(|c| c.metrics.stats_flush_millis = 20).await;
    s.sign_in(ADMIN, ADMIN_PASSWORD);
    let [index, signed, vulnerable, quarantined] = rich_content(&s).await;
    for tag in ["beta", "alpha", "gamma"] {
        s.push_image("shop/multi", tag, &[tag.as_bytes()]).await;
    }
    let saved = s
        .req(reqwest::Method::PUT, "/api/v1/policies/trim-multi")
        .json(&json!({ "repository": "shop/multi", "name_regex": "^(alpha|beta)$" }))
        .send()
        .await
        .unwrap();
    assert!(
        saved.status().is_success(),
        "{}",
        saved.text().await.unwrap()
    );
    let quota = s
        .req(reqwest::Method::PUT, "/api/v1/namespaces/shop/quota")
        .json(&json!({ "repositories": 5, "storage_bytes": 1 << 30 }))
        .send()
        .await
        .unwrap();
    assert!(
        quota.status().is_success(),
        "{}",
        quota.text().await.unwrap()
    );
    let driver = Driver::start().await;
    let profile = tempfile::tempdir().unwrap();
    let b = driver.browser(profile.path()).await;
    let url = |path: &str| s.url(path);

    // Signing in.
    b.goto(&url("/ui/login")).await.unwrap();
    assert_eq!(title(&b).await, "Sign in · Berth");
    b.find(Locator::Id("username"))
        .await
        .unwrap()
        .send_keys(ADMIN)
        .await
        .unwrap();
    b.find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys(ADMIN_PASSWORD)
        .await
        .unwrap();
    click(&b, Locator::Css("form.stack button")).await;
    titled(&b, "Overview").await;
    assert_eq!(text(&b, ".who .user").await, ADMIN);
    assert!(text(&b, "main").await.contains("Most vulnerable images"));
    shot(&b, "overview").await;

    // Searching the repositories.
    click(&b, Locator::LinkText("Repositories")).await;
    titled(&b, "Repositories").await;
    let names = texts(&b, "tbody td:first-child a").await;
    assert_eq!(names, ["shop/debian", "shop/multi", "shop/signed"]);
    b.find(Locator::Id("q"))
        .await
        .unwrap()
        .send_keys("mul")
        .await
        .unwrap();
    click(&b, Locator::Css("form.search button")).await;
    shown(&b, "//input[@id='q' and @value='mul']").await;
    assert_eq!(texts(&b, "tbody td:first-child a").await, ["shop/multi"]);
    shot(&b, "repositories").await;

    // The namespaces: one (shop) with its three repositories; its page lists them, and
    // its members to the administrator.
    click(&b, Locator::LinkText("Namespaces")).await;
    titled(&b, "Namespaces").await;
    assert_eq!(texts(&b, "tbody td:first-child a").await, ["shop"]);
    assert_eq!(texts(&b, "tbody td:nth-child(2)").await, ["3"]);
    click(&b, Locator::LinkText("shop")).await;
    titled(&b, "shop").await;
    assert_eq!(
        texts(&b, "tbody td:first-child a").await,
        ["shop/debian", "shop/multi", "shop/signed"]
    );
    let main = text(&b, "main").await;
    assert!(main.contains("Scanning policy"), "{main}");
    // Its quota beside its usage, and the cleanup policy that reaches shop/multi.
    assert!(main.contains("3 of 5 (60 % used)"), "{main}");
    assert!(main.contains("of 1.0 GiB (0 % used)"), "{main}");
    assert!(main.contains("trim-multi"), "{main}");
    shot(&b, "namespace").await;
    click(&b, Locator::LinkText("Repositories")).await;
    titled(&b, "Repositories").await;

    // The repository's tags, sorted by name.
    click(&b, Locator::LinkText("shop/multi")).await;
    titled(&b, "shop/multi").await;
    assert!(text(&b, ".command code").await.contains("docker pull"));
    click(&b, Locator::LinkText("Name")).await;
    shown(&b, "//a[@aria-current='true' and text()='Name']").await;
    assert_eq!(
        texts(&b, "td.tag").await,
        ["alpha", "beta", "gamma", "v1"],
        "sorted by name"
    );
    shot(&b, "repository").await;
    click(&b, Locator::LinkText("Size")).await;
    shown(&b, "//a[@aria-current='true' and text()='Size']").await;
    assert_eq!(
        texts(&b, "td.tag").await[0],
        "v1",
        "the index is the largest"
    );

    // The index: its five platforms, each a link to its image.
    b.goto(&url(&format!("/ui/r/shop/multi/-/images/{index}")))
        .await
        .unwrap();
    let platforms = texts(&b, "main table tbody td:first-child").await;
    assert_eq!(
        platforms,
        [
            "linux/amd64",
            "linux/arm64/v8",
            "linux/arm/v7",
            "linux/ppc64le",
            "linux/s390x"
        ]
    );
    shot(&b, "index").await;

    // The signed image: its referrer tree, the SBOM under it and the SBOM's signature
    // under that, each signature verified; the SBOM downloads as the JSON pushed.
    b.goto(&url(&format!("/ui/r/shop/signed/-/images/{signed}")))
        .await
        .unwrap();
    assert!(text(&b, "main").await.contains("verified"));
    let tree = texts(&b, "ul.tree li").await;
    assert_eq!(tree.len(), 3, "{tree:?}");
    let verified = texts(&b, "ul.tree li .badge.ok").await;
    assert_eq!(verified, ["signature verified", "signature verified"]);
    let under_sbom = text(&b, "ul.tree li.depth-2").await;
    assert!(under_sbom.contains("cosign signature"), "{under_sbom}");
    let href = b
        .find(Locator::Css("ul.tree a.sbom"))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .expect("an SBOM link");
    let format: serde_json::Value = b
        .execute(
            "return fetch(arguments[0]).then(r => r.json()).then(j => j.bomFormat)",
            vec![json!(href)],
        )
        .await
        .unwrap();
    assert_eq!(format, "CycloneDX");
    shot(&b, "image-referrers").await;

    // The vulnerable image: counts by severity, fixed versions, its SBOM export.
    b.goto(&url(&format!("/ui/r/shop/debian/-/images/{vulnerable}")))
        .await
        .unwrap();
    let page = text(&b, "main").await;
    assert!(page.contains("critical 1") && page.contains("1:1.2.13.dfsg-1+deb12u1"));
    let spdx: serde_json::Value = b
        .execute(
            "return fetch(document.querySelector('a[href$=\"format=spdx\"]').href)\
               .then(r => r.json()).then(j => j.spdxVersion)",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(spdx, "SPDX-2.3");
    shot(&b, "image").await;

    // The quarantined image: its reason, and its finding fixed in the tag `bookworm`.
    b.goto(&url(&format!("/ui/r/shop/debian/-/images/{quarantined}")))
        .await
        .unwrap();
    assert!(
        text(&b, ".notice.error")
            .await
            .contains("openssl <3.0.13 in production")
    );
    let fixed_in = texts(&b, "td.fixed-in").await;
    assert!(fixed_in.iter().any(|t| t == "bookworm"), "{fixed_in:?}");
    shot(&b, "image-quarantined").await;

    // An image copied in by skopeo: its build history beside its layers, and its labels and
    // annotations full of markup and long strings shown as text, wrapped.
    let built = skopeo_push_built(&s, "shop/built:v1").await;
    b.goto(&url(&format!("/ui/r/shop/built/-/images/{built}")))
        .await
        .unwrap();
    let history = texts(&b, "table.history tbody tr").await;
    assert_eq!(history.len(), 3, "{history:?}");
    assert!(
        history[0].contains("ADD file:rootfs.tar") && history[0].contains(" B"),
        "{history:?}"
    );
    assert!(history[1].contains("empty layer"), "{history:?}");
    assert!(history[2].contains("apt-get install"), "{history:?}");
    let page = text(&b, "main").await;
    assert!(
        page.contains("<script>alert('label')</script>"),
        "markup shown as text"
    );
    let scripts: serde_json::Value = b
        .execute("return document.scripts.length", vec![])
        .await
        .unwrap();
    assert_eq!(scripts, 1, "only the UI's own script");
    shot(&b, "image-history").await;
    b.set_window_size(390, 844).await.unwrap();
    let width: serde_json::Value = b
        .execute("return document.documentElement.scrollWidth", vec![])
        .await
        .unwrap();
    assert!(
        width.as_i64().unwrap() <= 390,
        "the page is {width} px wide"
    );
    b.set_window_size(1280, 900).await.unwrap();

    // A token: created, shown once, then revoked.
    click(&b, Locator::LinkText("Tokens")).await;
    titled(&b, "Your tokens").await;
    b.find(Locator::Id("token-name"))
        .await
        .unwrap()
        .send_keys("laptop")
        .await
        .unwrap();
    click(&b, Locator::Css("form.stack button")).await;
    shown(&b, "//code[@id='new-token']").await;
    let secret = text(&b, "#new-token").await;
    assert!(secret.starts_with("berth_"), "{secret}");
    shot(&b, "tokens").await;
    click(&b, Locator::Css("button.danger")).await;
    shown(&b, "//span[@class='pill' and text()='revoked']").await;
    let states = texts(&b, "tbody .pill").await;
    assert_eq!(states, ["revoked"]);

    // A cleanup policy's preview.
    click(&b, Locator::LinkText("Maintenance")).await;
    titled(&b, "Maintenance").await;
    click(&b, Locator::Css("button[aria-label='Preview trim-multi']")).await;
    shown(&b, "//h2[text()='Preview of policy trim-multi']").await;
    let removed = texts(&b, "section.notice tbody td:nth-child(2)").await;
    assert_eq!(removed, ["tag alpha", "tag beta"]);
    shot(&b, "maintenance").await;

    // A narrow screen: the repository page still fits (tables scroll in their box).
    b.set_window_size(390, 844).await.unwrap();
    b.goto(&url("/ui/r/shop/multi")).await.unwrap();
    let width: serde_json::Value = b
        .execute("return document.documentElement.scrollWidth", vec![])
        .await
        .unwrap();
    assert!(
        width.as_i64().unwrap() <= 390,
        "the page is {width} px wide"
    );
    shot(&b, "repository-narrow").await;
    b.set_window_size(1280, 900).await.unwrap();

    // Signing out: the overview again, as nobody.
    click(&b, Locator::Css(".who button")).await;
    shown(&b, "//div[@class='who']/a[text()='Sign in']").await;
    b.goto(&url("/ui/tokens")).await.unwrap();
    assert_eq!(title(&b).await, "Unauthorized · Berth");

    b.close().await.unwrap();
    drop(driver);
    let _ = s.stop().await;
}

/// Copies into `s` (as the administrator, with skopeo) an image made here as an OCI layout:
/// two gzipped tar layers, a config whose history has three steps (the second made no
/// layer) and labels full of markup and long strings, and annotations. Returns its digest.
async fn skopeo_push_built(s: &crate::common::TestServer, destination: &str) -> String {
    use crate::common::{OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, sha256};
    use crate::scans::{gzip, tar_of};

    let long = "y".repeat(3000);
    let layers = [
        gzip(&tar_of(&[("etc/os-release", b"ID=debian\n")])),
        gzip(&tar_of(&[("usr/bin/tool", b"a tool")])),
    ];
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux", "created": "2026-11-30T10:00:00Z",
        "config": { "Labels": {
            "org.example.note": "<script>alert('label')</script>",
            "org.example.long": long,
        }, "Cmd": ["/usr/bin/tool"] },
        "rootfs": { "type": "layers", "diff_ids": [] },
        "history": [
            { "created": "2026-11-30T09:00:00Z", "created_by": "/bin/sh -c #(nop) ADD file:rootfs.tar in /" },
            { "created": "2026-11-30T09:30:00Z", "created_by": "/bin/sh -c #(nop) ENV LANG=C.UTF-8", "empty_layer": true },
            { "created": "2026-11-30T10:00:00Z", "created_by": "/bin/sh -c apt-get install -y tool" },
        ],
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": { "mediaType": OCI_CONFIG, "digest": sha256(&config), "size": config.len() },
        "layers": layers.iter().map(|l| json!({
            "mediaType": OCI_LAYER, "digest": sha256(l), "size": l.len(),
        })).collect::<Vec<_>>(),
        "annotations": {
            "org.opencontainers.image.title": "<b>built</b> by a test",
            "org.opencontainers.image.description": long,
        },
    }))
    .unwrap();
    let layout = tempfile::tempdir().unwrap();
    let blobs = layout.path().join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    for blob in layers.iter().chain([&config, &manifest]) {
        let digest = sha256(blob);
        std::fs::write(blobs.join(&digest["sha256:".len()..]), blob).unwrap();
    }
    std::fs::write(
        layout.path().join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": OCI_MANIFEST, "digest": sha256(&manifest), "size": manifest.len(),
            "annotations": { "org.opencontainers.image.ref.name": "built" },
        }],
    });
    std::fs::write(layout.path().join("index.json"), index.to_string()).unwrap();
    let host = s
        .url("")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let out = Command::new("skopeo")
        .args(["copy", "--preserve-digests", "--dest-tls-verify=false"])
        .arg(format!("--dest-creds={ADMIN}:{ADMIN_PASSWORD}"))
        .arg(format!("oci:{}:built", layout.path().display()))
        .arg(format!("docker://{host}/{destination}"))
        .output()
        .await
        .expect("skopeo: run scripts/install-test-deps.sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    sha256(&manifest)
}
