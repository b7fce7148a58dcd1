//! The web UI in a real browser: headless Chromium driven over WebDriver (chromedriver on
//! loopback) against a real Berth holding a five-platform index, a signed image and a
//! scanned vulnerable one. It signs in, browses every page, sorts, searches, creates and
//! revokes a token, and saves screenshots under `target/ui-screenshots/`.
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
#[ignore = "needs chromium and chromedriver"]
async fn a_browser_signs_in_browses_sorts_searches_and_manages_tokens() {
    // Usage flushed often, so that the overview's charts have the pushes below.
    let mut s = start_auth(|c| c.metrics.stats_flush_millis = 20).await;
    s.sign_in(ADMIN, ADMIN_PASSWORD);
    let [index, signed, vulnerable, _] = rich_content(&s).await;
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

    // The signed image and the vulnerable one.
    b.goto(&url(&format!("/ui/r/shop/signed/-/images/{signed}")))
        .await
        .unwrap();
    assert!(text(&b, "main").await.contains("verified"));
    b.goto(&url(&format!("/ui/r/shop/debian/-/images/{vulnerable}")))
        .await
        .unwrap();
    let page = text(&b, "main").await;
    assert!(page.contains("critical 1") && page.contains("1:1.2.13.dfsg-1+deb12u1"));
    shot(&b, "image").await;

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
