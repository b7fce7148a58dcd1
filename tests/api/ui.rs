//! The web UI over HTTP, as a browser without JavaScript sees it: sign-in and sessions,
//! CSRF refusals, what each viewer is shown, escaping, and a crawl of every page that
//! checks titles, labels and links.

use std::collections::{BTreeSet, VecDeque};

use regex::Regex;
use reqwest::{Client, Method, StatusCode, header, redirect::Policy};
use serde_json::json;

use crate::common::{
    TestServer,
    auth::{ADMIN, ADMIN_PASSWORD, password_of, start_auth},
};

/// A browser-like client that does not follow redirects (so cookies can be read).
fn browser() -> Client {
    Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("client")
}

/// A visitor: its cookies, as a browser would keep them for `/ui`.
struct Visitor {
    client: Client,
    cookies: Vec<(String, String)>,
}

impl Visitor {
    fn new() -> Visitor {
        Visitor {
            client: browser(),
            cookies: Vec::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep(&mut self, resp: &reqwest::Response) {
        for value in resp.headers().get_all(header::SET_COOKIE) {
            let text = value.to_str().unwrap();
            let pair = text.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            self.cookies.retain(|(k, _)| k != name);
            if !value.is_empty() && !text.contains("Max-Age=0") {
                self.cookies.push((name.to_owned(), value.to_owned()));
            }
        }
    }

    async fn get(&mut self, s: &TestServer, path: &str) -> (StatusCode, String) {
        let resp = self
            .client
            .get(s.url(path))
            .header(header::COOKIE, self.cookie_header())
            .send()
            .await
            .expect("GET");
        self.keep(&resp);
        let status = resp.status();
        (status, resp.text().await.unwrap())
    }

    /// A request with this visitor's cookies (to read a download's headers and body).
    fn request(&self, s: &TestServer, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, s.url(path))
            .header(header::COOKIE, self.cookie_header())
    }

    /// A form POST as a same-origin browser page sends it.
    async fn post(
        &mut self,
        s: &TestServer,
        path: &str,
        form: &[(&str, &str)],
    ) -> reqwest::Response {
        let resp = self
            .client
            .post(s.url(path))
            .header(header::COOKIE, self.cookie_header())
            .header("sec-fetch-site", "same-origin")
            .form(form)
            .send()
            .await
            .expect("POST");
        self.keep(&resp);
        resp
    }

    /// The CSRF token of the forms of `path`.
    async fn csrf(&mut self, s: &TestServer, path: &str) -> String {
        let (_, html) = self.get(s, path).await;
        Regex::new(r#"name="csrf" value="([^"]+)""#)
            .unwrap()
            .captures(&html)
            .unwrap_or_else(|| panic!("no csrf field on {path}: {html}"))[1]
            .to_owned()
    }

    async fn sign_in(&mut self, s: &TestServer, user: &str, password: &str) {
        let csrf = self.csrf(s, "/ui/login").await;
        let resp = self
            .post(
                s,
                "/ui/login",
                &[("csrf", &csrf), ("username", user), ("password", password)],
            )
            .await;
        assert_eq!(resp.status(), StatusCode::SEE_OTHER, "sign-in of {user}");
        assert!(self.cookies.iter().any(|(k, _)| k == "berth_session"));
    }
}

/// `text` as the templates escape it (numeric character references).
fn escaped(text: &str) -> String {
    text.replace('&', "&#38;")
        .replace('<', "&#60;")
        .replace('>', "&#62;")
        .replace('"', "&#34;")
        .replace('\'', "&#39;")
}

/// A server with an administrator, users alice and bob, a public repository `pub/app` with
/// a description full of markup, and alice's private `alice/secret`.
async fn seeded() -> TestServer {
    let mut s = start_auth(|_| {}).await;
    s.create_user("alice").await;
    s.create_user("bob").await;
    s.set_role("alice", "alice", "owner").await;
    s.sign_in(ADMIN, ADMIN_PASSWORD);
    s.push_image("pub/app", "v1", &[b"public layer"]).await;
    s.push_image("pub/app", "v2", &[b"second"]).await;
    s.set_visibility("pub/app", "public").await;
    s.admin_api(
        Method::PATCH,
        "/repositories/pub/app",
        Some(json!({ "description": "<script>alert(1)</script> & more" })),
    )
    .await;
    s.push_image("alice/secret", "v1", &[b"private layer"])
        .await;
    s.set_visibility("alice/secret", "private").await;
    s.sign_out();
    s
}

#[tokio::test]
async fn anonymous_visitors_see_public_repositories_only() {
    let s = seeded().await;
    let mut anon = Visitor::new();
    let (status, html) = anon.get(&s, "/ui/repositories").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("pub/app"), "{html}");
    assert!(!html.contains("alice/secret"));
    let (status, html) = anon.get(&s, "/ui/r/alice/secret").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!html.contains("private layer"));
    // The same answer as for a repository that does not exist.
    let (missing, _) = anon.get(&s, "/ui/r/alice/nothing").await;
    assert_eq!(missing, StatusCode::NOT_FOUND);
    let (status, _) = anon.get(&s, "/ui/tokens").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn another_user_does_not_see_a_private_repository() {
    let s = seeded().await;
    let mut bob = Visitor::new();
    bob.sign_in(&s, "bob", &password_of("bob")).await;
    let (_, html) = bob.get(&s, "/ui/repositories").await;
    assert!(html.contains("pub/app") && !html.contains("alice/secret"));
    let (status, _) = bob.get(&s, "/ui/r/alice/secret").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let mut alice = Visitor::new();
    alice.sign_in(&s, "alice", &password_of("alice")).await;
    let (_, html) = alice.get(&s, "/ui/repositories").await;
    assert!(html.contains("alice/secret"));
    let (status, html) = alice.get(&s, "/ui/r/alice/secret").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("docker pull"), "{html}");
}

#[tokio::test]
async fn namespaces_show_what_the_viewer_may_read_and_members_to_owners_only() {
    let s = seeded().await;
    let mut anon = Visitor::new();
    let (status, html) = anon.get(&s, "/ui/namespaces").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(r#"href="/ui/ns/pub""#), "{html}");
    assert!(!html.contains("/ui/ns/alice"));
    let (status, html) = anon.get(&s, "/ui/ns/pub").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(r#"href="/ui/r/pub/app""#));
    // Members are for the namespace's maintainers, as in the API.
    assert!(!html.contains("<h2>Members</h2>"));
    // A namespace the viewer may not read is answered as one that does not exist.
    let (hidden, html) = anon.get(&s, "/ui/ns/alice").await;
    assert_eq!(hidden, StatusCode::NOT_FOUND);
    assert!(!html.contains("alice/secret"));
    let (missing, _) = anon.get(&s, "/ui/ns/nothing").await;
    assert_eq!(missing, StatusCode::NOT_FOUND);

    let mut bob = Visitor::new();
    bob.sign_in(&s, "bob", &password_of("bob")).await;
    let (status, _) = bob.get(&s, "/ui/ns/alice").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let mut alice = Visitor::new();
    alice.sign_in(&s, "alice", &password_of("alice")).await;
    let (_, html) = alice.get(&s, "/ui/namespaces?sort=size").await;
    assert!(html.contains("/ui/ns/alice") && html.contains("/ui/ns/pub"));
    let (_, html) = alice.get(&s, "/ui/namespaces?q=ali").await;
    assert!(html.contains("/ui/ns/alice") && !html.contains("/ui/ns/pub"));
    let (status, html) = alice.get(&s, "/ui/ns/alice").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(r#"href="/ui/r/alice/secret""#));
    assert!(html.contains("<h2>Members</h2>"), "{html}");
    assert!(html.contains(r#"<td>alice</td><td><span class="pill">owner</span>"#));
    // The repository page leads to its namespace.
    let (_, html) = alice.get(&s, "/ui/r/alice/secret").await;
    assert!(html.contains(r#"href="/ui/ns/alice""#));
    let (status, _) = alice.get(&s, "/ui/namespaces?sort=nonsense").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_namespace_page_shows_its_quota_and_the_cleanup_policies_reaching_it() {
    let s = seeded().await;
    s.admin_api(
        Method::PUT,
        "/namespaces/alice/quota",
        Some(json!({ "repositories": 4, "warn_percent": 50 })),
    )
    .await;
    s.admin_api(
        Method::PUT,
        "/policies/pub-keep-one",
        Some(json!({ "repositories": "pub/.*", "name_regex": ".*", "keep_n": 1 })),
    )
    .await;
    s.admin_api(
        Method::PUT,
        "/policies/secret-only",
        Some(json!({ "repository": "alice/secret", "name_regex": "v.*", "enabled": true })),
    )
    .await;

    // A reader of the namespace sees its limits beside its usage; policies are not theirs.
    let mut alice = Visitor::new();
    alice.sign_in(&s, "alice", &password_of("alice")).await;
    let (status, html) = alice.get(&s, "/ui/ns/alice").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("<h2>Quota</h2>"), "{html}");
    assert!(
        html.contains("<dt>Repositories</dt><dd>1 of 4 (25 % used)</dd>"),
        "{html}"
    );
    assert!(html.contains("<dt>Storage</dt>") && html.contains(" of no limit</dd>"));
    assert!(!html.contains("Over its quota") && !html.contains("Past 50 %"));
    assert!(!html.contains("<h2>Cleanup policies</h2>"));
    // Half of a limit reached: the warning; a limit under the usage: the refusal to come.
    s.admin_api(
        Method::PUT,
        "/namespaces/alice/quota",
        Some(json!({ "repositories": 2, "warn_percent": 50 })),
    )
    .await;
    let (_, html) = alice.get(&s, "/ui/ns/alice").await;
    assert!(html.contains("Past 50 % of a limit."), "{html}");
    s.admin_api(
        Method::PUT,
        "/namespaces/alice/quota",
        Some(json!({ "storage_bytes": 1 })),
    )
    .await;
    let (_, html) = alice.get(&s, "/ui/ns/alice").await;
    assert!(html.contains("Over its quota"), "{html}");

    // An administrator sees the policies whose pattern takes in one of its repositories.
    let mut admin = Visitor::new();
    admin.sign_in(&s, ADMIN, ADMIN_PASSWORD).await;
    let (_, html) = admin.get(&s, "/ui/ns/pub").await;
    assert!(html.contains("<h2>Cleanup policies</h2>"), "{html}");
    assert!(html.contains("<td>pub-keep-one</td><td><code>pub/.*</code></td><td>disabled"));
    assert!(!html.contains("secret-only"));
    assert!(html.contains(r#"<dt>Repositories</dt><dd>1 of no limit</dd>"#));
    let (_, html) = admin.get(&s, "/ui/ns/alice").await;
    assert!(
        html.contains("<td>secret-only</td><td><code>alice/secret</code></td><td>every 1d, next ")
    );
    assert!(!html.contains("pub-keep-one"));
    // Its preview button leads to the preview of that policy.
    let csrf = admin.csrf(&s, "/ui/ns/alice").await;
    let resp = admin
        .post(
            &s,
            "/ui/maintenance/preview",
            &[("csrf", &csrf), ("name", "secret-only")],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let html = resp.text().await.unwrap();
    assert!(html.contains("Preview of policy secret-only"), "{html}");
    assert!(html.contains("tag v1"), "{html}");
}

#[tokio::test]
async fn the_namespaces_listing_is_paged() {
    let s = seeded().await;
    // 101 namespaces besides alice and pub: three pages of 100 at most.
    for i in 0..101 {
        s.admin_api(
            Method::POST,
            "/repositories",
            Some(json!({ "name": format!("n{i:03}/app") })),
        )
        .await;
    }
    let mut admin = Visitor::new();
    admin.sign_in(&s, ADMIN, ADMIN_PASSWORD).await;
    let listed = |html: &str| html.matches(r#"<tr><td><a href="/ui/ns/"#).count();
    let (status, html) = admin.get(&s, "/ui/namespaces").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed(&html), 100);
    assert!(html.contains(r#"href="/ui/ns/alice""#) && html.contains(r#"href="/ui/ns/n098""#));
    assert!(!html.contains(r#"href="/ui/ns/n099""#) && !html.contains(r#"rel="prev""#));
    assert!(
        html.contains(r#"<a href="/ui/namespaces?page=2" rel="next">"#),
        "{html}"
    );
    let (_, html) = admin.get(&s, "/ui/namespaces?page=2").await;
    assert_eq!(listed(&html), 3);
    for ns in ["n099", "n100", "pub"] {
        assert!(html.contains(&format!(r#"href="/ui/ns/{ns}""#)), "{ns}");
    }
    assert!(html.contains(r#"<a href="/ui/namespaces?page=1" rel="prev">"#));
    assert!(!html.contains(r#"rel="next""#));
    // The search and the order are kept from page to page.
    let (_, html) = admin.get(&s, "/ui/namespaces?q=n&sort=size").await;
    assert!(
        html.contains(r#"href="/ui/namespaces?q=n&#38;sort=size&#38;page=2""#),
        "{html}"
    );
    // Past the last page: no rows; not a page number: refused, saying why.
    let (status, html) = admin.get(&s, "/ui/namespaces?page=9").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed(&html), 0);
    for bad in ["0", "-1", "two", "99999999999"] {
        let (status, html) = admin.get(&s, &format!("/ui/namespaces?page={bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(html.contains("is not a page number"), "{bad}: {html}");
    }
    let (status, html) = admin.get(&s, "/ui/namespaces?page=4294967295").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("past the last page"), "{html}");
}

#[tokio::test]
async fn markup_in_names_and_descriptions_is_escaped() {
    let s = seeded().await;
    let mut anon = Visitor::new();
    for path in ["/ui/repositories", "/ui/r/pub/app", "/ui/ns/pub"] {
        let (_, html) = anon.get(&s, path).await;
        assert!(!html.contains("<script>alert(1)</script>"), "{path}");
        assert!(
            html.contains(&escaped("<script>alert(1)</script> & more")),
            "{path}"
        );
    }
    // A search term is shown back escaped.
    let (_, html) = anon.get(&s, "/ui/repositories?q=%3Cimg%20src%3Dx%3E").await;
    assert!(html.contains(&escaped("<img src=x>")));
    assert!(!html.contains("<img src=x>"));
}

#[tokio::test]
async fn forged_and_cross_site_forms_are_refused() {
    let s = seeded().await;
    let mut alice = Visitor::new();
    alice.sign_in(&s, "alice", &password_of("alice")).await;
    let csrf = alice.csrf(&s, "/ui/tokens").await;

    // A forged token: refused, and no token made.
    let resp = alice
        .post(
            &s,
            "/ui/tokens",
            &[
                ("csrf", "forged-forged-forged-forged-forged-0"),
                ("name", "evil"),
                ("read_registry", "on"),
            ],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    // The right token from another site: refused too.
    let resp = alice
        .client
        .post(s.url("/ui/tokens"))
        .header(header::COOKIE, alice.cookie_header())
        .header("sec-fetch-site", "cross-site")
        .form(&[
            ("csrf", csrf.as_str()),
            ("name", "evil"),
            ("read_registry", "on"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = alice
        .client
        .post(s.url("/ui/tokens"))
        .header(header::COOKIE, alice.cookie_header())
        .header(header::ORIGIN, "https://evil.example")
        .form(&[
            ("csrf", csrf.as_str()),
            ("name", "evil"),
            ("read_registry", "on"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    // A sign-in without the visitor's own CSRF cookie: refused, no session.
    let mut stranger = Visitor::new();
    let resp = stranger
        .post(
            &s,
            "/ui/login",
            &[
                ("csrf", &csrf),
                ("username", "alice"),
                ("password", &password_of("alice")),
            ],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(!stranger.cookies.iter().any(|(k, _)| k == "berth_session"));

    let (_, html) = alice.get(&s, "/ui/tokens").await;
    assert!(!html.contains("evil"), "{html}");
    let tokens = s
        .api_as(
            Some(("alice", &password_of("alice"))),
            Method::GET,
            "/users/alice/tokens",
            None,
        )
        .await
        .text()
        .await
        .unwrap();
    assert!(!tokens.contains("evil"), "{tokens}");
}

#[tokio::test]
async fn tokens_are_created_and_revoked_from_the_ui() {
    let s = seeded().await;
    let mut alice = Visitor::new();
    alice.sign_in(&s, "alice", &password_of("alice")).await;
    let csrf = alice.csrf(&s, "/ui/tokens").await;
    let resp = alice
        .post(
            &s,
            "/ui/tokens",
            &[
                ("csrf", &csrf),
                ("name", "ci <pipeline>"),
                ("read_registry", "on"),
                ("expires_days", "30"),
            ],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let html = resp.text().await.unwrap();
    let secret = Regex::new(r#"id="new-token">([^<]+)<"#)
        .unwrap()
        .captures(&html)
        .unwrap()[1]
        .to_owned();
    assert!(html.contains(&escaped("ci <pipeline>")));
    // The token works as a password on the API.
    let whoami = s
        .api_as(Some(("alice", &secret)), Method::GET, "/whoami", None)
        .await;
    assert_eq!(whoami.status(), StatusCode::OK);

    // A bad expiry is refused with a message and makes nothing.
    let resp = alice
        .post(
            &s,
            "/ui/tokens",
            &[
                ("csrf", &csrf),
                ("name", "later"),
                ("read_registry", "on"),
                ("expires_days", "soon"),
            ],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(!resp.text().await.unwrap().contains(">later<"));

    let id = Regex::new(r#"name="id" value="(\d+)""#)
        .unwrap()
        .captures(&html)
        .unwrap()[1]
        .to_owned();
    let resp = alice
        .post(&s, "/ui/tokens/revoke", &[("csrf", &csrf), ("id", &id)])
        .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let whoami = s
        .api_as(Some(("alice", &secret)), Method::GET, "/whoami", None)
        .await;
    assert_eq!(whoami.status(), StatusCode::UNAUTHORIZED);
    let (_, html) = alice.get(&s, "/ui/tokens").await;
    assert!(html.contains("revoked"));
}

#[tokio::test]
async fn a_session_cookie_is_refused_after_logout_and_after_a_password_change() {
    let s = seeded().await;
    let mut alice = Visitor::new();
    alice.sign_in(&s, "alice", &password_of("alice")).await;
    let saved = alice.cookies.clone();
    let (status, _) = alice.get(&s, "/ui/tokens").await;
    assert_eq!(status, StatusCode::OK);
    let csrf = alice.csrf(&s, "/ui/tokens").await;
    let resp = alice.post(&s, "/ui/logout", &[("csrf", &csrf)]).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let cleared = resp.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cleared.starts_with("berth_session=;") && cleared.contains("Max-Age=0"));
    // Replaying the old cookie: treated as nobody.
    let mut replay = Visitor::new();
    replay.cookies = saved;
    let (status, html) = replay.get(&s, "/ui/tokens").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(!html.contains("Sign out"));
    let (_, html) = replay.get(&s, "/ui/repositories").await;
    assert!(!html.contains("alice/secret"));

    // A password change ends every session of the user.
    let mut alice = Visitor::new();
    alice.sign_in(&s, "alice", &password_of("alice")).await;
    let (status, _) = alice.get(&s, "/ui/r/alice/secret").await;
    assert_eq!(status, StatusCode::OK);
    s.admin_api(
        Method::PUT,
        "/users/alice/password",
        Some(json!({ "password": "a-new-password-for-alice" })),
    )
    .await;
    let (status, _) = alice.get(&s, "/ui/r/alice/secret").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    alice.sign_in(&s, "alice", "a-new-password-for-alice").await;
    let (status, _) = alice.get(&s, "/ui/r/alice/secret").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_wrong_password_or_a_token_does_not_sign_in() {
    let s = seeded().await;
    let mut v = Visitor::new();
    let csrf = v.csrf(&s, "/ui/login").await;
    let cookie = v.cookies.iter().find(|(k, _)| k == "berth_csrf").cloned();
    assert!(cookie.is_some(), "the sign-in form sets its CSRF cookie");
    let resp = v
        .post(
            &s,
            "/ui/login",
            &[
                ("csrf", &csrf),
                ("username", "alice"),
                ("password", "wrong"),
            ],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("invalid username or password")
    );
    let (_, secret, _) = s.personal_token("alice", &["read_registry"]).await;
    let resp = v
        .post(
            &s,
            "/ui/login",
            &[
                ("csrf", &csrf),
                ("username", "alice"),
                ("password", &secret),
            ],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(!v.cookies.iter().any(|(k, _)| k == "berth_session"));
}

#[tokio::test]
async fn session_cookies_are_http_only_and_same_site() {
    let s = seeded().await;
    let mut v = Visitor::new();
    let csrf = v.csrf(&s, "/ui/login").await;
    let resp = v
        .post(
            &s,
            "/ui/login",
            &[
                ("csrf", &csrf),
                ("username", "bob"),
                ("password", &password_of("bob")),
            ],
        )
        .await;
    let cookie = resp.headers()[header::SET_COOKIE].to_str().unwrap();
    assert!(cookie.starts_with("berth_session="));
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"));
    assert!(cookie.contains("Path=/ui"));
    // Plain HTTP here: Secure would make browsers drop it (TLS servers set it).
    assert!(!cookie.contains("Secure"));
}

/// Every `href`, `src` and `action` of a page.
fn references(html: &str) -> Vec<String> {
    Regex::new(r#"(?:href|src|action)="([^"]*)""#)
        .unwrap()
        .captures_iter(html)
        .map(|c| c[1].replace("&#38;", "&"))
        .collect()
}

#[tokio::test]
async fn every_page_has_a_title_labelled_inputs_and_no_broken_or_outside_link() {
    let mut s = seeded().await;
    s.sign_in(ADMIN, ADMIN_PASSWORD);
    let [_, signed, _, old] = rich_content(&s).await;
    s.sign_out();
    let mut admin = Visitor::new();
    admin.sign_in(&s, ADMIN, ADMIN_PASSWORD).await;
    let title = Regex::new(r"<title>[^<]+ · Berth</title>").unwrap();
    let input = Regex::new(r"<input[^>]*>").unwrap();
    let id = Regex::new(r#"id="([^"]+)""#).unwrap();
    let mut seen = BTreeSet::new();
    let mut queue = VecDeque::from(["/ui/".to_owned()]);
    while let Some(path) = queue.pop_front() {
        if !seen.insert(path.clone()) || seen.len() > 200 {
            continue;
        }
        let (status, html) = admin.get(&s, &path).await;
        assert_eq!(status, StatusCode::OK, "{path} is broken");
        // Assets and downloads (SBOM documents) are not pages.
        if path.starts_with("/ui/assets/") || path.ends_with("/artifact") || path.contains("/sbom?")
        {
            continue;
        }
        assert!(title.is_match(&html), "{path} has no title");
        for tag in input.find_iter(&html).map(|m| m.as_str()) {
            if tag.contains(r#"type="hidden""#) {
                continue;
            }
            let id = &id
                .captures(tag)
                .unwrap_or_else(|| panic!("{path}: {tag} has no id"))[1];
            assert!(
                html.contains(&format!(r#"<label for="{id}">"#)),
                "{path}: input {id} has no label"
            );
        }
        for reference in references(&html) {
            assert!(
                reference.starts_with('/'),
                "{path} refers outside the server: {reference}"
            );
            if reference.starts_with("/ui")
                && !["/ui/logout", "/ui/tokens/revoke"].contains(&reference.as_str())
            {
                queue.push_back(reference);
            }
        }
    }
    for page in [
        "/ui/",
        "/ui/repositories",
        "/ui/namespaces",
        "/ui/ns/pub",
        "/ui/ns/alice",
        "/ui/r/pub/app",
        "/ui/tokens",
        "/ui/assets/style.css",
    ] {
        assert!(seen.contains(page), "the crawl did not reach {page}");
    }
    assert!(
        seen.iter().any(|p| p.contains("/-/images/sha256:")),
        "no image page reached"
    );
    for page in [
        format!("/ui/r/shop/signed/-/images/{signed}"),
        format!("/ui/r/shop/debian/-/images/{old}"),
        format!("/ui/r/shop/debian/-/images/{old}/sbom?format=spdx"),
    ] {
        assert!(seen.contains(&page), "the crawl did not reach {page}");
    }
    assert!(
        seen.iter().any(|p| p.ends_with("/artifact")),
        "no SBOM referrer's download reached"
    );
}

/// An image whose config has a build history, labels and annotations full of markup and
/// very long strings.
async fn push_built(s: &TestServer, repo: &str, tag: &str) -> (String, [String; 2]) {
    use crate::common::{OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, sha256};

    let long = "x".repeat(5000);
    let layers: [&[u8]; 2] = [b"the base layer's bytes", b"what apt-get added"];
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "created": "2026-11-30T10:00:00Z",
        "config": { "Labels": {
            "org.example.<img src=x onerror=alert(1)>": "<script>alert('label')</script>",
            "org.example.long": long,
        }},
        "rootfs": { "type": "layers", "diff_ids": [] },
        "history": [
            { "created": "2026-11-30T09:00:00Z", "created_by": "/bin/sh -c #(nop) ADD file:rootfs.tar in /" },
            { "created": "2026-11-30T09:30:00Z", "created_by": "/bin/sh -c #(nop) ENV <b>A</b>=1", "empty_layer": true },
            { "created": "2026-11-30T10:00:00Z", "created_by": format!("/bin/sh -c apt-get install <script>alert('history')</script> {long}"),
              "comment": "buildkit" },
        ],
    }))
    .unwrap();
    s.push_blob(repo, &config).await;
    for layer in layers {
        s.push_blob(repo, layer).await;
    }
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": { "mediaType": OCI_CONFIG, "digest": sha256(&config), "size": config.len() },
        "layers": layers.iter().map(|l| json!({
            "mediaType": OCI_LAYER, "digest": sha256(l), "size": l.len(),
        })).collect::<Vec<_>>(),
        "annotations": {
            "org.opencontainers.image.title": "<script>alert('annotation')</script>",
            "org.opencontainers.image.description": long,
        },
    }))
    .unwrap();
    let digest = s.put_manifest_ok(repo, tag, OCI_MANIFEST, &manifest).await;
    (digest, layers.map(sha256))
}

/// The rows of the image page's history table: the cells of each, tags stripped.
fn history_rows(html: &str) -> Vec<Vec<String>> {
    let table = html
        .split_once(r#"<table class="history">"#)
        .map(|(_, t)| t.split_once("</table>").unwrap().0)
        .unwrap_or_default();
    let cell = Regex::new(r"(?s)<td[^>]*>(.*?)</td>").unwrap();
    let tag = Regex::new(r"<[^>]+>").unwrap();
    table
        .split("<tr>")
        .skip(2)
        .map(|row| {
            cell.captures_iter(row)
                .map(|c| tag.replace_all(&c[1], "").trim().to_owned())
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn the_image_page_shows_history_annotations_the_referrer_tree_and_fixed_tags() {
    let mut s = start_auth(|_| {}).await;
    s.sign_in(ADMIN, ADMIN_PASSWORD);
    let [_, signed, vulnerable, old] = rich_content(&s).await;
    let (built, [base, added]) = push_built(&s, "shop/built", "v1").await;
    let mut admin = Visitor::new();
    admin.sign_in(&s, ADMIN, ADMIN_PASSWORD).await;

    // History: each step that made a layer beside that layer and its size, in order.
    let (status, html) = admin
        .get(&s, &format!("/ui/r/shop/built/-/images/{built}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let rows = history_rows(&html);
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(rows[0][1], "2026-11-30T09:00:00Z");
    assert_eq!(rows[0][3], base);
    assert_eq!(rows[0][4], "22 B");
    assert_eq!(rows[1][3], "empty layer");
    assert_eq!(rows[2][3], added);
    assert_eq!(rows[2][4], "18 B");
    // Markup everywhere is text: escaped, never a tag.
    for markup in [
        "<script>alert('history')</script>",
        "<script>alert('label')</script>",
        "<script>alert('annotation')</script>",
        "org.example.<img src=x onerror=alert(1)>",
        "ENV <b>A</b>=1",
    ] {
        assert!(
            html.contains(&escaped(markup)),
            "{markup} not shown escaped"
        );
        assert!(!html.contains(markup), "{markup} in the page as markup");
    }
    assert!(
        html.contains("<h2>Annotations</h2>") && html.contains("org.opencontainers.image.title")
    );
    // The long strings are there whole, in cells that wrap.
    assert!(html.contains(&"x".repeat(5000)));
    assert!(html.contains(r#"<td class="wrap">"#));

    // The referrer tree of the signed image: its signature and its SBOM, and under the SBOM
    // the SBOM's own signature, both verified.
    let (_, html) = admin
        .get(&s, &format!("/ui/r/shop/signed/-/images/{signed}"))
        .await;
    let tree = html
        .split_once(r#"<ul class="tree">"#)
        .unwrap()
        .1
        .split_once("</ul>")
        .unwrap()
        .0;
    let item = Regex::new(r#"(?s)<li class="depth-(\d)">(.*?)</li>"#).unwrap();
    let nodes: Vec<(String, String)> = item
        .captures_iter(tree)
        .map(|c| (c[1].to_owned(), c[2].to_owned()))
        .collect();
    assert_eq!(nodes.len(), 3, "{tree}");
    let sbom = nodes
        .iter()
        .position(|(_, n)| n.contains("application/vnd.cyclonedx+json"))
        .expect("the SBOM in the tree");
    assert_eq!(nodes[sbom].0, "1");
    assert_eq!(nodes[sbom + 1].0, "2", "the SBOM's signature under it");
    assert!(nodes[sbom + 1].1.contains("signature verified"), "{tree}");
    assert!(
        nodes
            .iter()
            .filter(|(_, n)| n.contains("signature verified"))
            .count()
            == 2,
        "{tree}"
    );
    // The SBOM as pushed, to download.
    let link = Regex::new(r#"href="(/ui/r/shop/signed/-/images/sha256:[0-9a-f]+/artifact)""#)
        .unwrap()
        .captures(&nodes[sbom].1)
        .expect("a download link")[1]
        .to_owned();
    let resp = admin.request(&s, Method::GET, &link).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
    assert!(
        resp.headers()[header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    let document: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(document["bomFormat"], "CycloneDX");
    assert_eq!(document["components"][0]["name"], "zlib");
    // An artifact that is no SBOM (the image itself) is not offered.
    let (status, _) = admin
        .get(&s, &format!("/ui/r/shop/signed/-/images/{signed}/artifact"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Where each finding is fixed: DSA-0001-1 of the quarantined image, in `bookworm`.
    let (_, html) = admin
        .get(&s, &format!("/ui/r/shop/debian/-/images/{old}"))
        .await;
    let row = html
        .split("<tr>")
        .find(|r| r.contains("DSA-0001-1"))
        .expect("the DSA-0001-1 row");
    assert!(
        row.contains(r#"<td class="fixed-in"><span class="pill tag">bookworm</span>"#),
        "{row}"
    );
    let (_, html) = admin
        .get(&s, &format!("/ui/r/shop/debian/-/images/{vulnerable}"))
        .await;
    let row = html
        .split("<tr>")
        .find(|r| r.contains("DEBIAN-CVE-2024-0002"))
        .expect("the critical finding's row");
    assert!(
        row.contains(r#"<td class="fixed-in"><span class="muted">none</span>"#),
        "{row}"
    );

    // The scanned image's SBOM export, in both formats.
    for (format, key) in [("cyclonedx", "bomFormat"), ("spdx", "spdxVersion")] {
        let resp = admin
            .request(
                &s,
                Method::GET,
                &format!("/ui/r/shop/debian/-/images/{vulnerable}/sbom?format={format}"),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{format}");
        let document: serde_json::Value = resp.json().await.unwrap();
        assert!(document.get(key).is_some(), "{format}: {document}");
    }
    // Not for someone who may not read the repository.
    let mut nobody = Visitor::new();
    let (status, _) = nobody
        .get(
            &s,
            &format!("/ui/r/shop/debian/-/images/{vulnerable}/sbom?format=spdx"),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Signs manifest `subject` of `repo` with `key` the cosign way (a simple-signing payload in
/// a `sha256-….sig` tag); returns the signature manifest's digest.
async fn cosign_sign(
    s: &TestServer,
    repo: &str,
    subject: &str,
    key: &p256::ecdsa::SigningKey,
) -> String {
    use base64::{Engine as _, engine::general_purpose::STANDARD};
    use p256::ecdsa::{Signature, signature::Signer as _};

    use crate::common::{OCI_MANIFEST, sha256};

    let payload = serde_json::to_vec(&json!({
        "critical": {
            "identity": { "docker-reference": format!("registry.example/{repo}") },
            "image": { "docker-manifest-digest": subject },
            "type": "cosign container image signature",
        },
        "optional": null,
    }))
    .unwrap();
    let signature: Signature = key.sign(&payload);
    let config =
        br#"{"architecture":"","os":"","rootfs":{"type":"layers","diff_ids":[]},"config":{}}"#;
    s.push_blob(repo, config).await;
    s.push_blob(repo, &payload).await;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(config), "size": config.len() },
        "layers": [{
            "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
            "digest": sha256(&payload),
            "size": payload.len(),
            "annotations": { "dev.cosignproject.cosign/signature": STANDARD.encode(signature.to_der()) },
        }],
    }))
    .unwrap();
    let tag = format!("{}.sig", subject.replace(':', "-"));
    s.put_manifest_ok(repo, &tag, OCI_MANIFEST, &manifest).await
}

/// Content worth looking at, pushed by the administrator (whose credentials `s` presents):
/// `shop/multi:v1`, an index of five platforms; `shop/signed:v1` with a cosign signature
/// verified under an audit policy and a signed CycloneDX SBOM as its referrer;
/// `shop/debian:bookworm`, a scanned Debian image with a
/// critical and a high finding (each with its fixed version), and `shop/debian:old`,
/// quarantined with a reason. Returns the digests (index, signed, vulnerable, quarantined).
pub(crate) async fn rich_content(s: &TestServer) -> [String; 4] {
    use p256::{
        ecdsa::SigningKey,
        pkcs8::{EncodePublicKey as _, LineEnding},
    };

    use crate::common::{OCI_INDEX, OCI_MANIFEST, image_config, image_manifest, sha256};
    use crate::scans::{
        GZIP_LAYER, ZSTD_LAYER, debian_layers, import_openssl_and_zlib_advisories, push_layers,
        scan_now,
    };

    let mut children = Vec::new();
    for (arch, variant) in [
        ("amd64", None),
        ("arm64", Some("v8")),
        ("arm", Some("v7")),
        ("ppc64le", None),
        ("s390x", None),
    ] {
        let config = image_config("linux", arch, variant);
        let layer = format!("root filesystem for {arch}").into_bytes();
        s.push_blob("shop/multi", &config).await;
        s.push_blob("shop/multi", &layer).await;
        let manifest = image_manifest(&config, &[&layer]);
        let digest = s
            .put_manifest_ok("shop/multi", &sha256(&manifest), OCI_MANIFEST, &manifest)
            .await;
        let mut platform = json!({ "os": "linux", "architecture": arch });
        if let Some(variant) = variant {
            platform["variant"] = json!(variant);
        }
        children.push(json!({
            "mediaType": OCI_MANIFEST, "digest": digest, "size": manifest.len(),
            "platform": platform,
        }));
    }
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children,
    }))
    .unwrap();
    let index = s
        .put_manifest_ok("shop/multi", "v1", OCI_INDEX, &index)
        .await;

    let (signed, _) = s.push_image("shop/signed", "v1", &[b"signed layer"]).await;
    let key = SigningKey::from_slice(&[7u8; 32]).unwrap();
    let public = key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    let policy = s
        .req(Method::PUT, "/api/v1/trust/policies/shop")
        .json(&json!({ "scope": "shop/signed", "mode": "audit", "cosign_keys": [public] }))
        .send()
        .await
        .unwrap();
    assert!(
        policy.status().is_success(),
        "{}",
        policy.text().await.unwrap()
    );
    cosign_sign(s, "shop/signed", &signed, &key).await;
    // An SBOM of the signed image, itself signed: a referrer tree two levels deep.
    let sbom_document = serde_json::to_vec(&json!({
        "bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1,
        "components": [{ "type": "library", "name": "zlib", "version": "1.2.13",
                         "purl": "pkg:deb/debian/zlib@1.2.13?arch=amd64" }],
    }))
    .unwrap();
    let sbom = crate::signatures::push_referrer(
        s,
        "shop/signed",
        &signed,
        "application/vnd.cyclonedx+json",
        "application/vnd.cyclonedx+json",
        &sbom_document,
    )
    .await;
    cosign_sign(s, "shop/signed", &sbom, &key).await;

    let (base, upgrade, _) = debian_layers();
    let (old, _) = push_layers(s, "shop/debian", "old", "amd64", &[(GZIP_LAYER, &base)]).await;
    let (vulnerable, _) = push_layers(
        s,
        "shop/debian",
        "bookworm",
        "amd64",
        &[(GZIP_LAYER, &base), (ZSTD_LAYER, &upgrade)],
    )
    .await;
    import_openssl_and_zlib_advisories(s).await;
    for digest in [&old, &vulnerable] {
        assert_eq!(scan_now(s, "shop/debian", digest).await["status"], "ok");
    }
    let quarantine = s
        .req(
            Method::POST,
            &format!("/api/v1/repositories/shop/debian/-/images/{old}/quarantine"),
        )
        .json(&json!({ "reason": "openssl <3.0.13 in production" }))
        .send()
        .await
        .unwrap();
    assert!(quarantine.status().is_success());
    [index, signed, vulnerable, old]
}

#[tokio::test]
async fn the_image_pages_show_platforms_signatures_findings_and_quarantine() {
    let mut s = start_auth(|_| {}).await;
    s.sign_in(ADMIN, ADMIN_PASSWORD);
    let [index, signed, vulnerable, old] = rich_content(&s).await;
    let mut admin = Visitor::new();
    admin.sign_in(&s, ADMIN, ADMIN_PASSWORD).await;

    let (status, html) = admin
        .get(&s, &format!("/ui/r/shop/multi/-/images/{index}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    for platform in [
        "linux/amd64",
        "linux/arm64/v8",
        "linux/arm/v7",
        "linux/ppc64le",
        "linux/s390x",
    ] {
        assert!(
            html.contains(&format!("<td>{platform}</td>")),
            "{platform}: {html}"
        );
    }

    let (_, html) = admin
        .get(&s, &format!("/ui/r/shop/signed/-/images/{signed}"))
        .await;
    assert!(
        html.contains("cosign") && html.contains(">verified<"),
        "{html}"
    );

    let (_, html) = admin
        .get(&s, &format!("/ui/r/shop/debian/-/images/{vulnerable}"))
        .await;
    assert!(
        html.contains("critical 1") && html.contains("high 0"),
        "{html}"
    );
    assert!(html.contains("DEBIAN-CVE-2024-0002") && html.contains("1:1.2.13.dfsg-1+deb12u1"));
    // Fixed by the upgrade layer: not a finding of this image.
    assert!(!html.contains("DSA-0001-1"));

    let (_, html) = admin
        .get(&s, &format!("/ui/r/shop/debian/-/images/{old}"))
        .await;
    assert!(html.contains("Quarantined"));
    assert!(html.contains(&escaped("openssl <3.0.13 in production")));
    assert!(html.contains("DSA-0001-1") && html.contains("3.0.13-1~deb12u1"));

    // The overview counts them.
    let (_, html) = admin.get(&s, "/ui/").await;
    assert!(html.contains("shop/debian@"), "{html}");

    // A digest that is not one, or not in the repository: no such image.
    let (status, _) = admin
        .get(&s, "/ui/r/shop/debian/-/images/sha256:nope")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = admin
        .get(&s, &format!("/ui/r/shop/multi/-/images/{vulnerable}"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// The tag names of a repository page, in the order shown, and its next page's link.
fn tag_column(html: &str) -> (Vec<String>, Option<String>) {
    let tags = Regex::new(r#"<td class="tag">([^<]+)</td>"#)
        .unwrap()
        .captures_iter(html)
        .map(|c| c[1].to_owned())
        .collect();
    let next = Regex::new(r#"<a href="([^"]+)" rel="next">"#)
        .unwrap()
        .captures(html)
        .map(|c| c[1].replace("&#38;", "&"));
    (tags, next)
}

#[tokio::test]
async fn tags_sort_by_size_and_name_over_every_page() {
    let s = TestServer::start().await;
    // 55 tags (a page holds 50): t00 is the smallest image, t54 the largest.
    for i in 0..55 {
        let layer = vec![b'x'; 100 + i * 10];
        s.push_image("big/app", &format!("t{i:02}"), &[&layer])
            .await;
    }
    let mut v = Visitor::new();
    let (status, html) = v.get(&s, "/ui/r/big/app?sort=size").await;
    assert_eq!(status, StatusCode::OK);
    let (first, next) = tag_column(&html);
    let expected: Vec<String> = (0..55).rev().map(|i| format!("t{i:02}")).collect();
    assert_eq!(first, expected[..50]);
    let (_, html) = v.get(&s, &next.expect("a second page")).await;
    let (second, next) = tag_column(&html);
    assert_eq!(second, expected[50..]);
    assert_eq!(next, None);

    let (_, html) = v.get(&s, "/ui/r/big/app?sort=name").await;
    let (first, next) = tag_column(&html);
    assert_eq!(first[0], "t00");
    let (_, html) = v.get(&s, &next.unwrap()).await;
    assert_eq!(tag_column(&html).0, ["t50", "t51", "t52", "t53", "t54"]);

    // An unknown order or a forged cursor: a clear refusal.
    let (status, html) = v.get(&s, "/ui/r/big/app?sort=colour").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("use name, pushed, pulled or size"));
    let (status, _) = v.get(&s, "/ui/r/big/app?sort=size&after=zzz").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn administrators_preview_a_cleanup_policy_and_see_what_gc_would_reclaim() {
    let mut s = seeded().await;
    s.sign_in(ADMIN, ADMIN_PASSWORD);
    for tag in ["v3", "keep-me"] {
        s.push_image("pub/app", tag, &[tag.as_bytes()]).await;
    }
    let saved = s
        .req(Method::PUT, "/api/v1/policies/trim")
        .json(&json!({
            "repositories": "pub/.*", "enabled": false, "cadence": "7d",
            "name_regex": ".*", "keep_n": 1, "name_regex_keep": "keep-.*",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(saved.status(), StatusCode::OK);

    let mut bob = Visitor::new();
    bob.sign_in(&s, "bob", &password_of("bob")).await;
    let (status, html) = bob.get(&s, "/ui/maintenance").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(!html.contains("trim"));
    let (status, _) = Visitor::new().get(&s, "/ui/maintenance").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let mut admin = Visitor::new();
    admin.sign_in(&s, ADMIN, ADMIN_PASSWORD).await;
    let (status, html) = admin.get(&s, "/ui/maintenance").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("<td>trim</td>") && html.contains("reclaim"));
    let csrf = admin.csrf(&s, "/ui/maintenance").await;
    let resp = admin
        .post(
            &s,
            "/ui/maintenance/preview",
            &[("csrf", &csrf), ("name", "trim")],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let html = resp.text().await.unwrap();
    // keep-me is kept by its name and v3, the newest of the rest, by keep_n: v1 and v2 go.
    assert!(html.contains("Preview of policy trim"), "{html}");
    for tag in ["tag v1", "tag v2"] {
        assert!(html.contains(tag), "{tag}: {html}");
    }
    assert!(!html.contains("tag keep-me") && !html.contains("tag v3"));
    // A preview removes nothing.
    let tags = s.get("/v2/pub/app/tags/list").await.text().await.unwrap();
    assert!(tags.contains("\"v1\"") && tags.contains("\"v2\""), "{tags}");
    // The dry run is recorded among the recent runs.
    let (_, html) = admin.get(&s, "/ui/maintenance").await;
    assert!(html.contains("dry run"), "{html}");
    let (_, html) = admin.get(&s, "/ui/").await;
    assert!(html.contains("Recent collection and policy runs") && html.contains("dry run"));
    let (_, html) = bob.get(&s, "/ui/").await;
    assert!(!html.contains("Recent collection and policy runs"));

    // An unknown policy or a forged form: refused.
    let resp = admin
        .post(
            &s,
            "/ui/maintenance/preview",
            &[("csrf", &csrf), ("name", "nope")],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = admin
        .post(
            &s,
            "/ui/maintenance/preview",
            &[("csrf", "forged"), ("name", "trim")],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
}
