//! Listing tags: end-8a and end-8b (`n`, `last`, `Link`).
//!
//! Order: the spec asks for "lexical order (i.e. case-insensitive alphanumeric order)": Berth
//! compares the lowercased names byte-wise, and tags equal but for case by their exact bytes.

use reqwest::StatusCode;

use crate::common::{
    OCI_MANIFEST, TestServer, assert_error, header, json_body, next_link, strings,
};

const TAGS: [&str; 12] = [
    "latest", "v1.0", "V2", "1", "10", "9", "_under", "Zeta", "alpha", "Alpha", "b-2", "B_1",
];

/// A repository with every tag of [`TAGS`] on one manifest; returns them in lexical order.
async fn tagged(s: &TestServer, repo: &str) -> Vec<String> {
    let (_, manifest) = s.push_image(repo, TAGS[0], &[b"tagged layer"]).await;
    for tag in &TAGS[1..] {
        s.put_manifest_ok(repo, tag, OCI_MANIFEST, &manifest).await;
    }
    let mut sorted: Vec<String> = TAGS.iter().map(|t| t.to_string()).collect();
    sorted.sort_by_key(|t| (t.to_lowercase(), t.clone()));
    sorted
}

/// end-8a: every tag, in case-insensitive lexical order, with the repository's name; no Link.
#[tokio::test]
async fn list_is_sorted_lexically() {
    let s = TestServer::start().await;
    let expected = tagged(&s, "tags/all").await;
    assert_eq!(
        expected[..8],
        ["1", "10", "9", "_under", "Alpha", "alpha", "b-2", "B_1"].map(String::from)
    );
    let resp = s.get("/v2/tags/all/tags/list").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "link"), None);
    let body = json_body(resp).await;
    assert_eq!(body["name"], "tags/all");
    assert_eq!(strings(&body["tags"]), expected);
}

/// end-8b: `n` returns exactly n tags and a Link to the rest, `</v2/<name>/tags/list?n=<n>&
/// last=<last tag>>; rel="next"`.
#[tokio::test]
async fn n_is_exact_with_link() {
    let s = TestServer::start().await;
    let expected = tagged(&s, "tags/page").await;
    let resp = s.get("/v2/tags/page/tags/list?n=5").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        header(&resp, "link"),
        Some(format!(
            "</v2/tags/page/tags/list?n=5&last={}>; rel=\"next\"",
            expected[4]
        ))
    );
    let body = json_body(resp).await;
    assert_eq!(strings(&body["tags"]), expected[..5]);
}

/// Following Link from the first page returns every tag exactly once, in order, for several
/// page sizes; the last page has no Link (also when it is full).
#[tokio::test]
async fn following_links_returns_every_tag_once() {
    let s = TestServer::start().await;
    let expected = tagged(&s, "tags/follow").await;
    for n in [1usize, 3, 5, 6, 11, 12, 13, 100] {
        let pages = s
            .pages(&format!("/v2/tags/follow/tags/list?n={n}"), "tags")
            .await;
        let all: Vec<String> = pages.concat();
        assert_eq!(all, expected, "n={n}");
        assert_eq!(
            pages.len(),
            expected.len().div_ceil(n).max(1),
            "pages for n={n}"
        );
        for page in &pages[..pages.len() - 1] {
            assert_eq!(page.len(), n, "every page but the last is full (n={n})");
        }
    }
}

/// "When n is zero, this endpoint MUST return an empty list, and MUST NOT include a Link
/// header."
#[tokio::test]
async fn n_zero_is_empty_without_link() {
    let s = TestServer::start().await;
    tagged(&s, "tags/zero").await;
    let resp = s.get("/v2/tags/zero/tags/list?n=0").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "link"), None);
    let body = json_body(resp).await;
    assert_eq!(strings(&body["tags"]), Vec::<String>::new());
}

/// `last` alone ("When using the last query parameter, the n parameter is OPTIONAL"): the
/// tags strictly after it; `last` need not be an existing tag.
#[tokio::test]
async fn last_alone() {
    let s = TestServer::start().await;
    let expected = tagged(&s, "tags/last").await;
    let body = json_body(s.get("/v2/tags/last/tags/list?last=Zeta").await).await;
    let after: Vec<String> = expected
        .iter()
        .filter(|t| (t.to_lowercase(), t.as_str()) > ("zeta".to_owned(), "Zeta"))
        .cloned()
        .collect();
    assert_eq!(strings(&body["tags"]), after);
    assert!(after.is_empty(), "Zeta sorts last");
    let body = json_body(s.get("/v2/tags/last/tags/list?last=b").await).await;
    assert_eq!(
        strings(&body["tags"]),
        ["b-2", "B_1", "latest", "v1.0", "V2", "Zeta"]
    );
    let body = json_body(s.get("/v2/tags/last/tags/list?n=2&last=v1.0").await).await;
    assert_eq!(strings(&body["tags"]), ["V2", "Zeta"]);
    let body = json_body(s.get("/v2/tags/last/tags/list?n=2&last=zeta").await).await;
    // Equal but for case, tags order by their bytes: "Zeta" < "zeta", so nothing follows.
    assert_eq!(strings(&body["tags"]), Vec::<String>::new());
}

/// Without `n`, a page holds at most `limits.page_max_entries` tags and links to the rest;
/// a larger `n` is capped the same way (with a Link, so fewer than n is allowed).
#[tokio::test]
async fn server_page_limit() {
    let s = TestServer::start_with(|cfg| cfg.limits.page_max_entries = 5).await;
    let expected = tagged(&s, "tags/capped").await;
    for path in [
        "/v2/tags/capped/tags/list",
        "/v2/tags/capped/tags/list?n=100",
    ] {
        let resp = s.get(path).await;
        let link = header(&resp, "link").expect("a Link when more remain");
        assert!(
            next_link(&link).contains(&format!("last={}", expected[4])),
            "{link}"
        );
        let body = json_body(resp).await;
        assert_eq!(strings(&body["tags"]), expected[..5], "{path}");
        let pages = s.pages(path, "tags").await;
        assert_eq!(pages.concat(), expected, "{path}");
    }
}

/// A repository with no tags lists none; one that does not exist is 404 NAME_UNKNOWN.
#[tokio::test]
async fn empty_and_unknown_repositories() {
    let s = TestServer::start().await;
    let (digest, _) = s.push_image("tags/untagged", "gone", &[b"x"]).await;
    let resp = s.delete("/v2/tags/untagged/manifests/gone").await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let resp = s.get("/v2/tags/untagged/tags/list").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body = json_body(resp).await;
    assert_eq!(strings(&body["tags"]), Vec::<String>::new());
    // The manifest itself is still there.
    let resp = s
        .head(&format!("/v2/tags/untagged/manifests/{digest}"))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);

    assert_error(
        s.get("/v2/tags/unknown/tags/list").await,
        404,
        "NAME_UNKNOWN",
    )
    .await;
}

/// A malformed `n` (or `last`) is a 400 with a spec code, not a 5xx and not ignored.
#[tokio::test]
async fn malformed_parameters() {
    let s = TestServer::start().await;
    tagged(&s, "tags/bad").await;
    for query in [
        "n=abc",
        "n=-1",
        "n=1.5",
        "n=99999999999999999999",
        "last=-bad",
    ] {
        let resp = s.get(&format!("/v2/tags/bad/tags/list?{query}")).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{query}");
        crate::common::error_code(resp).await;
    }
}

/// A burst of tag PUTs of manifests the repository holds (committed in groups) gives each
/// its own answer: every new tag is created and listed, a tag that may not move is refused
/// with DENIED and still names its manifest, and every push that moved a tag is counted once.
#[tokio::test]
async fn burst_of_tag_puts_each_answered() {
    use reqwest::Method;
    use serde_json::json;

    let s = TestServer::start().await;
    let repo = "burst/app";
    let (first, m1) = s.push_image(repo, "fixed", &[b"burst one"]).await;
    let (_, m2) = s.push_image(repo, "other", &[b"burst two"]).await;
    let resp = s
        .req(
            Method::PUT,
            &format!("/api/v1/repositories/{repo}/-/settings"),
        )
        .json(&json!({ "tag_mutability": "immutable" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let pushes_before =
        json_body(s.get(&format!("/api/v1/repositories/{repo}")).await).await["push_count"]
            .as_i64()
            .expect("push_count");

    let new_tags: Vec<String> = (0..48).map(|i| format!("t{i:02}")).collect();
    let puts = new_tags
        .iter()
        .map(|t| s.put_manifest(repo, t, Some(OCI_MANIFEST), &m1))
        .chain((0..4).map(|_| s.put_manifest(repo, "fixed", Some(OCI_MANIFEST), &m2)));
    let answers = futures::future::join_all(puts).await;
    let (created, refused) = answers.split_at(new_tags.len());
    for resp in created {
        assert_eq!(resp.status(), StatusCode::CREATED);
    }
    for resp in refused {
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    }

    let listed = json_body(s.get(&format!("/v2/{repo}/tags/list?n=1000")).await).await;
    let mut expected: Vec<String> = new_tags.clone();
    expected.extend(["fixed".to_owned(), "other".to_owned()]);
    expected.sort();
    assert_eq!(strings(&listed["tags"]), expected);
    let fixed = s.get(&format!("/v2/{repo}/manifests/fixed")).await;
    assert_eq!(
        header(&fixed, "docker-content-digest").as_deref(),
        Some(first.as_str())
    );
    let pushes_after =
        json_body(s.get(&format!("/api/v1/repositories/{repo}")).await).await["push_count"]
            .as_i64()
            .expect("push_count");
    assert_eq!(pushes_after - pushes_before, new_tags.len() as i64);
}
