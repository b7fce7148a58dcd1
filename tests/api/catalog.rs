//! The catalog (`/v2/_catalog`): repositories with at least one manifest, byte-wise sorted,
//! paginated like tags (`n`, `last`, `Link`; spec.md "Listing Tags" rules).

use reqwest::StatusCode;

use crate::common::{TestServer, header, json_body, strings};

const REPOS: [&str; 7] = [
    "zeta", "alpha", "beta/two", "beta/one", "a0", "a-b/c", "alpha/x",
];

async fn populated(s: &TestServer) -> Vec<String> {
    for repo in REPOS {
        s.push_image(repo, "v1", &[repo.as_bytes()]).await;
    }
    let mut sorted: Vec<String> = REPOS.iter().map(|r| r.to_string()).collect();
    sorted.sort();
    sorted
}

/// Every repository with a manifest, in byte order; repositories holding only blobs or only
/// an upload session are not listed.
#[tokio::test]
async fn catalog_lists_repositories_in_order() {
    let s = TestServer::start().await;
    let empty = json_body(s.get("/v2/_catalog").await).await;
    assert_eq!(strings(&empty["repositories"]), Vec::<String>::new());
    let expected = populated(&s).await;
    s.push_blob("blobs/only", b"no manifest here").await;
    s.start_upload("session/only").await;
    let resp = s.get("/v2/_catalog").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "link"), None);
    let body = json_body(resp).await;
    assert_eq!(strings(&body["repositories"]), expected);
    assert_eq!(expected[0], "a-b/c");
}

/// `n` is exact with `Link: </v2/_catalog?n=<n>&last=<last>>; rel="next"`; following the
/// links lists every repository once; the last page has no Link.
#[tokio::test]
async fn catalog_pagination() {
    let s = TestServer::start().await;
    let expected = populated(&s).await;
    let resp = s.get("/v2/_catalog?n=4").await;
    assert_eq!(resp.status(), StatusCode::OK);
    // The name in `last` is query-encoded (its slash included).
    assert_eq!(expected[3], "alpha/x");
    assert_eq!(
        header(&resp, "link").as_deref(),
        Some("</v2/_catalog?n=4&last=alpha%2Fx>; rel=\"next\"")
    );
    let body = json_body(resp).await;
    assert_eq!(strings(&body["repositories"]), expected[..4]);

    for n in [1usize, 2, 3, 7, 8] {
        let pages = s
            .pages(&format!("/v2/_catalog?n={n}"), "repositories")
            .await;
        assert_eq!(pages.concat(), expected, "n={n}");
        assert_eq!(pages.len(), expected.len().div_ceil(n), "pages for n={n}");
    }
}

/// `n=0` is an empty list without Link; `last` alone continues after it; a malformed `n` is
/// a 400 with a spec code.
#[tokio::test]
async fn catalog_n_zero_last_and_bad_n() {
    let s = TestServer::start().await;
    let expected = populated(&s).await;
    let resp = s.get("/v2/_catalog?n=0").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "link"), None);
    assert_eq!(
        strings(&json_body(resp).await["repositories"]),
        Vec::<String>::new()
    );

    let body = json_body(s.get("/v2/_catalog?last=beta/one").await).await;
    let after: Vec<String> = expected
        .iter()
        .filter(|r| r.as_str() > "beta/one")
        .cloned()
        .collect();
    assert_eq!(strings(&body["repositories"]), after);
    assert_eq!(after, ["beta/two", "zeta"]);

    let resp = s.get("/v2/_catalog?n=abc").await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    crate::common::error_code(resp).await;
}

/// A repository whose last manifest is deleted leaves the catalog.
#[tokio::test]
async fn catalog_drops_repositories_without_manifests() {
    let s = TestServer::start().await;
    let (digest, _) = s.push_image("cat/gone", "v1", &[b"x"]).await;
    s.push_image("cat/kept", "v1", &[b"y"]).await;
    let resp = s.delete(&format!("/v2/cat/gone/manifests/{digest}")).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let body = json_body(s.get("/v2/_catalog").await).await;
    assert_eq!(strings(&body["repositories"]), ["cat/kept"]);
}
