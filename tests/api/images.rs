//! The management API's images and tags (`/api/v1/repositories/{name}/-/images`, `/-/tags`):
//! one entry per manifest with platforms, sizes, tags, pull figures and status; filters,
//! sorts and cursor pages; an image in detail; deleting; tags sorted and retagged within and
//! across repositories; every bad input refused naming the parameter.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{
    OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST, TestServer,
    auth::{ADMIN, ADMIN_PASSWORD, password_of, start_auth},
    descriptor, header, image_config, json_body, next_link, sha256, unknown_digest,
};

const SBOM: &str = "application/vnd.example.sbom.v1+json";

/// What the tests push into `app`: a single image tagged `v1`, a three-platform index tagged
/// `multi` (children pushed by digest, one layer shared by all of them), and an untagged
/// image, in that order.
struct Pushed {
    single: String,
    single_size: usize,
    index: String,
    index_size: usize,
    /// (digest, architecture) of the index's children.
    children: Vec<(String, &'static str)>,
    untagged: String,
}

/// A config with a platform, an entrypoint, a command, labels and two history entries.
fn rich_config(os: &str, architecture: &str, variant: Option<&str>) -> Vec<u8> {
    let mut config: Value =
        serde_json::from_slice(&image_config(os, architecture, variant)).unwrap();
    config["created"] = json!("2026-01-02T03:04:05Z");
    config["config"] = json!({
        "Entrypoint": ["/bin/app"],
        "Cmd": ["--serve"],
        "Labels": { "org.opencontainers.image.title": format!("app for {architecture}") },
    });
    config["history"] = json!([{ "created_by": "ADD rootfs" }, { "created_by": "COPY app" }]);
    serde_json::to_vec(&config).unwrap()
}

async fn push_all(s: &TestServer, repo: &str) -> Pushed {
    let single_config = rich_config("linux", "amd64", None);
    let single_layers: [&[u8]; 2] = [b"single base layer", b"single app layer, larger"];
    let (single, _) = s
        .push_image_with(repo, "v1", &single_config, &single_layers)
        .await;
    let single_size = single_config.len() + single_layers.iter().map(|l| l.len()).sum::<usize>();

    let shared: &[u8] = b"a base layer every platform shares";
    let mut children = Vec::new();
    let mut descriptors = Vec::new();
    let mut index_size = shared.len();
    for (architecture, variant) in [("amd64", None), ("arm64", Some("v8")), ("arm", Some("v7"))] {
        let config = rich_config("linux", architecture, variant);
        let own = format!("the {architecture} layer").into_bytes();
        let (digest, manifest) = s
            .push_image_with(repo, "", &config, &[shared, own.as_slice()])
            .await;
        index_size += config.len() + own.len();
        let mut d = descriptor(OCI_MANIFEST, &manifest);
        d["platform"] = json!({ "os": "linux", "architecture": architecture });
        if let Some(v) = variant {
            d["platform"]["variant"] = json!(v);
        }
        descriptors.push(d);
        children.push((digest, architecture));
    }
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": descriptors,
    }))
    .unwrap();
    let index_digest = s.put_manifest_ok(repo, "multi", OCI_INDEX, &index).await;

    let (untagged, _) = s
        .push_image_with(
            repo,
            "",
            b"{\"os\":\"linux\"}",
            &[b"untagged layer".as_slice()],
        )
        .await;
    Pushed {
        single,
        single_size,
        index: index_digest,
        index_size,
        children,
        untagged,
    }
}

/// GET `path` (under `/api/v1`), insisting on 200; its JSON.
async fn api(s: &TestServer, path: &str) -> Value {
    let resp = s.get(&format!("/api/v1{path}")).await;
    let status = resp.status();
    let body = json_body(resp).await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    body
}

/// The digests of a listing's items, in order.
fn digests(listing: &Value) -> Vec<String> {
    listing["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["digest"].as_str().unwrap().to_owned())
        .collect()
}

/// Every item of a listing, following `Link` from `path` (under `/api/v1`).
async fn all_pages(s: &TestServer, path: &str) -> (Vec<Value>, usize) {
    let mut items = Vec::new();
    let mut pages = 0;
    let mut next = Some(format!("/api/v1{path}"));
    while let Some(path) = next.take() {
        pages += 1;
        assert!(pages < 100, "paging does not end");
        let resp = s.get(&path).await;
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        next = header(&resp, "link").map(|l| next_link(&l));
        let body = json_body(resp).await;
        assert_eq!(body.get("next").is_some(), next.is_some(), "{body}");
        items.extend(body["items"].as_array().unwrap().iter().cloned());
    }
    (items, pages)
}

/// A 400 problem whose message names `parameter`.
async fn assert_bad_parameter(
    s: &TestServer,
    method: Method,
    path: &str,
    body: Option<Value>,
    parameter: &str,
) {
    let mut req = s.req(method, &format!("/api/v1{path}"));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let problem = json_body(resp).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {problem}");
    assert_eq!(problem["error"]["code"], "BAD_REQUEST", "{path}: {problem}");
    let message = problem["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(parameter),
        "{path}: {message:?} does not name {parameter}"
    );
}

/// The status and `error.code` of an `/api/v1` problem.
async fn problem(resp: reqwest::Response) -> (StatusCode, String) {
    let status = resp.status();
    let body = json_body(resp).await;
    (
        status,
        body["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

/// One entry per manifest: the single image with its platform, the index with its children's
/// platforms and their size with the shared layer once, the untagged image; children of the
/// index only inside it; newest first.
#[tokio::test]
async fn images_list_platforms_sizes_tags_and_status() {
    let s = TestServer::start().await;
    let p = push_all(&s, "app").await;
    let listing = api(&s, "/repositories/app/-/images").await;
    assert_eq!(
        digests(&listing),
        [p.untagged.as_str(), p.index.as_str(), p.single.as_str()]
    );
    let items = listing["items"].as_array().unwrap();

    let untagged = &items[0];
    assert_eq!(untagged["status"], "untagged");
    assert_eq!(untagged["tags"], json!([]));
    assert_eq!(untagged["pull_count"], 0);
    assert_eq!(untagged["last_pulled_at"], Value::Null);

    let index = &items[1];
    assert_eq!(index["media_type"], OCI_INDEX);
    assert_eq!(index["tags"], json!(["multi"]));
    assert_eq!(index["status"], "active");
    assert_eq!(
        index["size_bytes"], p.index_size as i64,
        "shared layer counted once"
    );
    let architectures: Vec<&str> = index["platform"]
        .as_array()
        .expect("an index lists its children's platforms")
        .iter()
        .map(|p| p["architecture"].as_str().unwrap())
        .collect();
    assert_eq!(architectures, ["amd64", "arm", "arm64"]);
    assert!(index.get("index").is_none(), "{index}");

    let single = &items[2];
    assert_eq!(single["media_type"], OCI_MANIFEST);
    assert_eq!(single["tags"], json!(["v1"]));
    assert_eq!(single["status"], "active");
    assert_eq!(single["size_bytes"], p.single_size as i64);
    assert_eq!(
        single["platform"],
        json!({ "os": "linux", "architecture": "amd64", "variant": null })
    );
    assert!(single["pushed_at"].as_i64().unwrap() > 0);
}

/// An index whose children include an index: its size sums the images at the bottom with
/// every blob once (the layer all of them share, and an image listed twice, through the inner
/// index and directly), and its platforms are those images', each once; the inner index is
/// listed only inside the outer one and has its own size and platforms.
#[tokio::test]
async fn an_index_of_an_index_counts_its_images_once() {
    let s = TestServer::start().await;
    let shared: &[u8] = b"the base layer of every image below the outer index";
    let mut leaves = Vec::new();
    for architecture in ["arm64", "amd64", "s390x"] {
        let config = image_config("linux", architecture, None);
        let own = format!("the {architecture} layer of the nested images").into_bytes();
        let (digest, manifest) = s
            .push_image_with("nested", "", &config, &[shared, own.as_slice()])
            .await;
        let mut d = descriptor(OCI_MANIFEST, &manifest);
        d["platform"] = json!({ "os": "linux", "architecture": architecture });
        leaves.push((digest, d, config.len() + own.len()));
    }
    let index_of = |children: Vec<Value>| {
        serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children,
        }))
        .unwrap()
    };
    let inner = index_of(vec![leaves[0].1.clone(), leaves[1].1.clone()]);
    let inner_digest = s
        .put_manifest_ok("nested", &sha256(&inner), OCI_INDEX, &inner)
        .await;
    let outer = index_of(vec![
        descriptor(OCI_INDEX, &inner),
        leaves[2].1.clone(),
        leaves[1].1.clone(),
    ]);
    let outer_digest = s.put_manifest_ok("nested", "all", OCI_INDEX, &outer).await;

    let listing = api(&s, "/repositories/nested/-/images").await;
    assert_eq!(
        digests(&listing),
        [outer_digest.as_str()],
        "the inner index and the images are listed inside the outer index: {listing}"
    );
    let item = &listing["items"][0];
    let all_leaves = shared.len() + leaves.iter().map(|l| l.2).sum::<usize>();
    assert_eq!(item["size_bytes"], all_leaves as i64, "{item}");
    let architectures: Vec<&str> = item["platform"]
        .as_array()
        .expect("an index lists its images' platforms")
        .iter()
        .map(|p| p["architecture"].as_str().unwrap())
        .collect();
    assert_eq!(architectures, ["amd64", "arm64", "s390x"], "{item}");

    let shown = api(&s, &format!("/repositories/nested/-/images/{inner_digest}")).await;
    assert_eq!(
        shown["size_bytes"],
        (shared.len() + leaves[0].2 + leaves[1].2) as i64,
        "{shown}"
    );
    assert_eq!(shown["index"], outer_digest.as_str(), "{shown}");
    assert_eq!(
        shown["platform"].as_array().map(Vec::len),
        Some(2),
        "{shown}"
    );

    // The size order ranks the outer index by the same sum.
    let by_size = api(&s, "/repositories/nested/-/images?sort=size").await;
    assert_eq!(by_size["items"][0]["size_bytes"], all_leaves as i64);
}

/// `architecture=arm64` lists the arm64 child of the index and names the index; `os`, `tag`
/// and `status` filter as documented, alone and together.
#[tokio::test]
async fn images_filter_by_platform_tag_and_status() {
    let s = TestServer::start().await;
    let p = push_all(&s, "app").await;
    let child = |arch: &str| p.children.iter().find(|c| c.1 == arch).unwrap().0.clone();

    let arm = api(&s, "/repositories/app/-/images?architecture=arm64").await;
    assert_eq!(digests(&arm), [child("arm64")]);
    let item = &arm["items"][0];
    assert_eq!(item["index"], p.index.as_str());
    assert_eq!(
        item["status"], "active",
        "a child of a tagged index is in use"
    );
    assert_eq!(item["platform"]["variant"], "v8");

    let amd = api(&s, "/repositories/app/-/images?architecture=amd64&os=linux").await;
    assert_eq!(digests(&amd), [child("amd64"), p.single.clone()]);
    let linux = api(&s, "/repositories/app/-/images?os=linux").await;
    assert_eq!(linux["items"].as_array().unwrap().len(), 5, "{linux}");
    let windows = api(&s, "/repositories/app/-/images?os=windows").await;
    assert_eq!(windows["items"], json!([]));

    let tagged = api(&s, "/repositories/app/-/images?tag=v1").await;
    assert_eq!(digests(&tagged), [p.single.as_str()]);
    let tagged_index = api(&s, "/repositories/app/-/images?tag=multi").await;
    assert_eq!(digests(&tagged_index), [p.index.as_str()]);
    let tagged_child = api(&s, "/repositories/app/-/images?tag=multi&architecture=arm").await;
    assert_eq!(digests(&tagged_child), [child("arm")]);
    let no_tag = api(&s, "/repositories/app/-/images?tag=nope").await;
    assert_eq!(no_tag["items"], json!([]));

    let untagged = api(&s, "/repositories/app/-/images?status=untagged").await;
    assert_eq!(digests(&untagged), [p.untagged.as_str()]);
    let active = api(&s, "/repositories/app/-/images?status=active").await;
    assert_eq!(digests(&active), [p.index.as_str(), p.single.as_str()]);
    let quarantined = api(&s, "/repositories/app/-/images?status=quarantined").await;
    assert_eq!(quarantined["items"], json!([]));
    // Empty values, as a form sends them, are no filter.
    let blank = api(
        &s,
        "/repositories/app/-/images?tag=&architecture=&os=&status=&sort=",
    )
    .await;
    assert_eq!(
        digests(&blank),
        [p.untagged.as_str(), p.index.as_str(), p.single.as_str()]
    );
}

/// Pulls (GETs by tag or digest) are counted per image once the statistics are flushed (at
/// shutdown here); HEADs are not pulls. `sort=pulls` and `sort=size` order by them, and
/// every sort pages by cursor without losing or repeating an image.
#[tokio::test]
async fn images_sort_by_pulls_and_size_and_page_by_cursor() {
    let s = TestServer::start().await;
    let p = push_all(&s, "app").await;
    for _ in 0..3 {
        assert_eq!(s.get("/v2/app/manifests/v1").await.status(), StatusCode::OK);
    }
    assert_eq!(
        s.head("/v2/app/manifests/v1").await.status(),
        StatusCode::OK
    );
    let by_digest = format!("/v2/app/manifests/{}", p.untagged);
    assert_eq!(s.get(&by_digest).await.status(), StatusCode::OK);
    let s = TestServer::start_in(s.stop().await, |_| {}).await;

    let by_pulls = api(&s, "/repositories/app/-/images?sort=pulls").await;
    assert_eq!(
        digests(&by_pulls),
        [p.single.as_str(), p.untagged.as_str(), p.index.as_str()]
    );
    assert_eq!(by_pulls["items"][0]["pull_count"], 3, "HEAD is no pull");
    assert!(by_pulls["items"][0]["last_pulled_at"].as_i64().is_some());
    assert_eq!(by_pulls["items"][1]["pull_count"], 1);
    let detail = api(&s, &format!("/repositories/app/-/images/{}", p.single)).await;
    assert_eq!(detail["pull_count"], 3);

    let by_size = api(&s, "/repositories/app/-/images?sort=size").await;
    assert_eq!(
        digests(&by_size),
        [p.index.as_str(), p.single.as_str(), p.untagged.as_str()]
    );

    for query in [
        "os=linux",
        "os=linux&sort=size",
        "os=linux&sort=pulls",
        "sort=pushed",
    ] {
        let whole = api(&s, &format!("/repositories/app/-/images?{query}")).await;
        let (paged, pages) =
            all_pages(&s, &format!("/repositories/app/-/images?{query}&limit=2")).await;
        let paged: Vec<String> = paged
            .iter()
            .map(|i| i["digest"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(paged, digests(&whole), "{query}");
        assert_eq!(pages, paged.len().div_ceil(2), "{query}");
    }
}

/// The detail of an image: layers, the config's summary, referrers and tags; of an index:
/// its children with their platforms. An unknown digest is `MANIFEST_UNKNOWN`; a referrer is
/// shown only with its subject.
#[tokio::test]
async fn image_detail_shows_layers_config_children_and_referrers() {
    let s = TestServer::start().await;
    let p = push_all(&s, "app").await;
    let empty = b"{}";
    s.push_blob("app", empty).await;
    let sbom = b"an sbom";
    s.push_blob("app", sbom).await;
    let referrer = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": SBOM,
        "config": descriptor("application/vnd.oci.empty.v1+json", empty),
        "layers": [descriptor(SBOM, sbom)],
        "subject": { "mediaType": OCI_MANIFEST, "digest": p.single, "size": 1 },
    }))
    .unwrap();
    let referrer_digest = sha256(&referrer);
    s.put_manifest_ok("app", &referrer_digest, OCI_MANIFEST, &referrer)
        .await;

    let single = api(&s, &format!("/repositories/app/-/images/{}", p.single)).await;
    assert_eq!(single["digest"], p.single.as_str());
    assert_eq!(single["tags"], json!(["v1"]));
    let layers = single["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2);
    assert_eq!(layers[0]["digest"], sha256(b"single base layer"));
    assert_eq!(layers[0]["media_type"], OCI_LAYER);
    assert_eq!(layers[1]["size"], b"single app layer, larger".len());
    let config = &single["config"];
    assert_eq!(config["media_type"], OCI_CONFIG);
    assert_eq!(config["created"], "2026-01-02T03:04:05Z");
    assert_eq!(config["os"], "linux");
    assert_eq!(config["architecture"], "amd64");
    assert_eq!(config["entrypoint"], json!(["/bin/app"]));
    assert_eq!(config["cmd"], json!(["--serve"]));
    assert_eq!(
        config["labels"]["org.opencontainers.image.title"],
        "app for amd64"
    );
    assert_eq!(config["history_count"], 2);
    assert_eq!(
        single["referrers"],
        json!([{ "digest": referrer_digest, "artifact_type": SBOM, "media_type": OCI_MANIFEST }])
    );
    assert_eq!(single["children"], json!([]));

    let index = api(&s, &format!("/repositories/app/-/images/{}", p.index)).await;
    assert_eq!(index["config"], Value::Null);
    assert_eq!(index["layers"], json!([]));
    let children = index["children"].as_array().unwrap();
    let listed: Vec<(String, String)> = children
        .iter()
        .map(|c| {
            (
                c["digest"].as_str().unwrap().to_owned(),
                c["platform"]["architecture"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let pushed: Vec<(String, String)> = p
        .children
        .iter()
        .map(|(d, a)| (d.clone(), a.to_string()))
        .collect();
    assert_eq!(listed, pushed);
    assert_eq!(children[1]["platform"]["variant"], "v8");

    let listing = api(&s, "/repositories/app/-/images").await;
    assert!(
        !digests(&listing).contains(&referrer_digest),
        "referrers are not images"
    );

    let unknown = s
        .get(&format!(
            "/api/v1/repositories/app/-/images/{}",
            unknown_digest()
        ))
        .await;
    assert_eq!(
        problem(unknown).await,
        (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN".into())
    );
    let no_repo = s
        .get(&format!(
            "/api/v1/repositories/nothing/-/images/{}",
            p.single
        ))
        .await;
    assert_eq!(
        problem(no_repo).await,
        (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN".into())
    );
}

/// Deleting an image does what a `/v2/` delete by digest does: the manifest and its tags go.
/// Only callers with the delete right may.
#[tokio::test]
async fn delete_image_removes_manifest_and_tags() {
    let mut s = start_auth(|_| {}).await;
    s.create_user("dev").await;
    s.create_user("maint").await;
    s.admin_api(
        Method::POST,
        "/namespaces",
        Some(json!({ "name": "team", "visibility": "private" })),
    )
    .await;
    s.set_role("team", "dev", "developer").await;
    s.set_role("team", "maint", "maintainer").await;
    s.sign_in(ADMIN, ADMIN_PASSWORD);
    let (digest, _) = s.push_image("team/app", "v1", &[b"layer".as_slice()]).await;
    let path = format!("/repositories/team/app/-/images/{digest}");

    let dev = ("dev", password_of("dev"));
    let refused = s
        .api_as(Some((dev.0, &dev.1)), Method::DELETE, &path, None)
        .await;
    assert_eq!(
        problem(refused).await,
        (StatusCode::FORBIDDEN, "DENIED".into())
    );
    let anonymous = s.api_as(None, Method::DELETE, &path, None).await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    // A developer may read it, though.
    let shown = s
        .api_as(Some((dev.0, &dev.1)), Method::GET, &path, None)
        .await;
    assert_eq!(shown.status(), StatusCode::OK);

    let maint = ("maint", password_of("maint"));
    let deleted = s
        .api_as(Some((maint.0, &maint.1)), Method::DELETE, &path, None)
        .await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        s.get("/v2/team/app/manifests/v1").await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.get(&format!("/v2/team/app/manifests/{digest}"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let listing = s
        .admin_api(Method::GET, "/repositories/team/app/-/images", None)
        .await;
    assert_eq!(listing["items"], json!([]));
    let again = s
        .api_as(Some((maint.0, &maint.1)), Method::DELETE, &path, None)
        .await;
    assert_eq!(
        problem(again).await,
        (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN".into())
    );
}

/// Tags sorted by name, by push (newest first) and by pull (latest first, never pulled
/// last), each with its digest and times, paged by cursor.
#[tokio::test]
async fn tags_sort_by_name_push_and_pull() {
    let s = TestServer::start().await;
    let mut digests_of = std::collections::HashMap::new();
    for tag in ["b", "c", "a"] {
        let (digest, _) = s.push_image("app", tag, &[tag.as_bytes()]).await;
        digests_of.insert(tag, digest);
        s.clock.advance(10);
    }
    // The clock is the wall clock moved forward, so a pull's second is only known to lie
    // between the readings taken around it.
    let c_window = s.clock.now();
    assert_eq!(s.get("/v2/app/manifests/c").await.status(), StatusCode::OK);
    let c_window = (c_window, s.clock.now());
    s.clock.advance(10);
    let b_window = s.clock.now();
    assert_eq!(s.get("/v2/app/manifests/b").await.status(), StatusCode::OK);
    let b_window = (b_window, s.clock.now());
    let s = TestServer::start_in(s.stop().await, |_| {}).await;

    let names = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let by_name = api(&s, "/repositories/app/-/tags").await;
    assert_eq!(names(&by_name), ["a", "b", "c"]);
    assert_eq!(by_name["items"][0]["digest"], digests_of["a"].as_str());
    assert_eq!(by_name["items"][0]["last_pulled_at"], Value::Null);
    assert_eq!(
        names(&api(&s, "/repositories/app/-/tags?sort=name").await),
        ["a", "b", "c"]
    );
    let by_push = api(&s, "/repositories/app/-/tags?sort=pushed").await;
    assert_eq!(names(&by_push), ["a", "c", "b"]);
    let pushed: Vec<i64> = by_push["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["pushed_at"].as_i64().unwrap())
        .collect();
    assert!(pushed[0] > pushed[1] && pushed[1] > pushed[2], "{pushed:?}");
    let by_pull = api(&s, "/repositories/app/-/tags?sort=pulled").await;
    assert_eq!(names(&by_pull), ["b", "c", "a"]);
    let b = by_pull["items"][0]["last_pulled_at"].as_i64().unwrap();
    let c = by_pull["items"][1]["last_pulled_at"].as_i64().unwrap();
    assert!((c_window.0..=c_window.1).contains(&c), "{c} {c_window:?}");
    assert!((b_window.0..=b_window.1).contains(&b), "{b} {b_window:?}");

    for sort in ["name", "pushed", "pulled"] {
        let whole = api(&s, &format!("/repositories/app/-/tags?sort={sort}")).await;
        let (paged, pages) =
            all_pages(&s, &format!("/repositories/app/-/tags?sort={sort}&limit=1")).await;
        let paged: Vec<String> = paged
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(paged, names(&whole), "{sort}");
        assert_eq!(pages, 3, "{sort}");
    }
}

/// Retagging within a repository points the tag as a push would; from another repository it
/// first mounts what the manifest needs (an index's children and their blobs), so the copy
/// pulls completely. A digest the source does not hold is `MANIFEST_UNKNOWN`; an immutable
/// tag does not move.
#[tokio::test]
async fn retag_within_and_across_repositories() {
    let s = TestServer::start().await;
    let p = push_all(&s, "app").await;
    let retag = |repo: &str, body: Value| {
        s.req(Method::POST, &format!("/api/v1/repositories/{repo}/-/tags"))
            .json(&body)
            .send()
    };

    let resp = retag("app", json!({ "tag": "latest", "digest": p.single }))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let body = json_body(resp).await;
    assert_eq!(body, json!({ "name": "latest", "digest": p.single }));
    let pulled = s.get("/v2/app/manifests/latest").await;
    assert_eq!(
        header(&pulled, "docker-content-digest").as_deref(),
        Some(p.single.as_str())
    );
    let listing = api(&s, &format!("/repositories/app/-/images/{}", p.single)).await;
    assert_eq!(listing["tags"], json!(["latest", "v1"]));
    // The untagged image becomes active once tagged.
    let resp = retag("app", json!({ "tag": "old", "digest": p.untagged }))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let untagged = api(&s, "/repositories/app/-/images?status=untagged").await;
    assert_eq!(untagged["items"], json!([]));

    let resp = retag(
        "copy",
        json!({ "tag": "multi", "digest": p.index, "from": "app" }),
    )
    .await
    .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::CREATED,
        "{}",
        resp.text().await.unwrap()
    );
    let pulled = s.get("/v2/copy/manifests/multi").await;
    assert_eq!(
        header(&pulled, "docker-content-digest").as_deref(),
        Some(p.index.as_str())
    );
    for (child, _) in &p.children {
        let resp = s.get(&format!("/v2/copy/manifests/{child}")).await;
        assert_eq!(resp.status(), StatusCode::OK, "child {child} copied");
    }
    let shared = sha256(b"a base layer every platform shares");
    assert_eq!(
        s.get(&format!("/v2/copy/blobs/{shared}")).await.status(),
        StatusCode::OK
    );
    let copied = api(&s, "/repositories/copy/-/images?architecture=arm64").await;
    assert_eq!(copied["items"][0]["index"], p.index.as_str());

    for (repo, body) in [
        ("app", json!({ "tag": "x", "digest": unknown_digest() })),
        (
            "copy",
            json!({ "tag": "x", "digest": p.single, "from": "nothing" }),
        ),
        (
            "app",
            json!({ "tag": "x", "digest": p.single, "from": "copy" }),
        ),
    ] {
        let resp = retag(repo, body.clone()).await.unwrap();
        assert_eq!(
            problem(resp).await,
            (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN".into()),
            "{body}"
        );
    }

    let rules = json!({ "tag_mutability": "immutable" });
    let resp = s
        .req(Method::PUT, "/api/v1/repositories/app/-/settings")
        .json(&rules)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = retag("app", json!({ "tag": "v1", "digest": p.untagged }))
        .await
        .unwrap();
    assert_eq!(
        problem(resp).await,
        (StatusCode::FORBIDDEN, "DENIED".into())
    );
    let pulled = s.get("/v2/app/manifests/v1").await;
    assert_eq!(
        header(&pulled, "docker-content-digest").as_deref(),
        Some(p.single.as_str())
    );
}

/// A caller who may push to a repository but not read the source may not copy from it.
#[tokio::test]
async fn retag_from_a_repository_the_caller_cannot_read_is_refused() {
    let mut s = start_auth(|_| {}).await;
    s.create_user("dev").await;
    for ns in ["mine", "secret"] {
        s.admin_api(
            Method::POST,
            "/namespaces",
            Some(json!({ "name": ns, "visibility": "private" })),
        )
        .await;
    }
    s.set_role("mine", "dev", "developer").await;
    s.sign_in(ADMIN, ADMIN_PASSWORD);
    let (digest, _) = s
        .push_image("secret/app", "v1", &[b"secret layer".as_slice()])
        .await;
    let dev = password_of("dev");
    let resp = s
        .api_as(
            Some(("dev", &dev)),
            Method::POST,
            "/repositories/mine/app/-/tags",
            Some(json!({ "tag": "stolen", "digest": digest, "from": "secret/app" })),
        )
        .await;
    let (status, _) = problem(resp).await;
    assert!(
        status == StatusCode::FORBIDDEN || status == StatusCode::NOT_FOUND,
        "{status}"
    );
    assert_eq!(
        s.get("/v2/mine/app/manifests/stolen").await.status(),
        StatusCode::NOT_FOUND
    );
}

/// Unknown filters and sort keys, bad statuses, cursors, tags and digests: 400 naming the
/// parameter. An unknown repository is `NAME_UNKNOWN`.
#[tokio::test]
async fn bad_image_and_tag_inputs_are_refused_by_name() {
    let s = TestServer::start().await;
    let p = push_all(&s, "app").await;
    let images = "/repositories/app/-/images";
    for (query, parameter) in [
        ("arch=arm64", "arch"),
        ("sort=name", "sort"),
        ("status=deleted", "status"),
        ("cursor=nonsense", "cursor"),
        ("tag=-bad", "tag"),
        ("limit=0", "limit"),
    ] {
        assert_bad_parameter(
            &s,
            Method::GET,
            &format!("{images}?{query}"),
            None,
            parameter,
        )
        .await;
    }
    for (query, parameter) in [
        ("order=name", "order"),
        ("sort=size", "sort"),
        ("cursor=x", "cursor"),
    ] {
        assert_bad_parameter(
            &s,
            Method::GET,
            &format!("/repositories/app/-/tags?{query}"),
            None,
            parameter,
        )
        .await;
    }
    assert_bad_parameter(
        &s,
        Method::GET,
        &format!("{images}/sha256:xyz"),
        None,
        "digest",
    )
    .await;
    for (body, parameter) in [
        (
            json!({ "tag": "ok", "digest": p.single, "force": true }),
            "force",
        ),
        (json!({ "tag": "-bad", "digest": p.single }), "tag"),
        (json!({ "tag": "ok", "digest": "sha256:nope" }), "digest"),
        (
            json!({ "tag": "ok", "digest": p.single, "from": "UPPER" }),
            "from",
        ),
        (json!({ "digest": p.single }), "tag"),
    ] {
        assert_bad_parameter(
            &s,
            Method::POST,
            "/repositories/app/-/tags",
            Some(body),
            parameter,
        )
        .await;
    }
    let missing = s.get("/api/v1/repositories/nothing/-/images").await;
    assert_eq!(
        problem(missing).await,
        (StatusCode::NOT_FOUND, "NAME_UNKNOWN".into())
    );
    let missing = s.get("/api/v1/repositories/nothing/-/tags").await;
    assert_eq!(
        problem(missing).await,
        (StatusCode::NOT_FOUND, "NAME_UNKNOWN".into())
    );
    let wrong_method = s
        .req(Method::PUT, &format!("/api/v1{images}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        problem(wrong_method).await,
        (StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED".into())
    );
}

/// A protected tag is retagged only by those who may override it (maintainers), as on a
/// `/v2/` tag push.
#[tokio::test]
async fn retag_to_a_protected_tag_needs_a_maintainer() {
    let mut s = start_auth(|_| {}).await;
    s.admin_api(
        Method::POST,
        "/namespaces",
        Some(json!({ "name": "team", "visibility": "private" })),
    )
    .await;
    for (user, role) in [("dev", "developer"), ("maint", "maintainer")] {
        s.create_user(user).await;
        s.set_role("team", user, role).await;
    }
    s.sign_in(ADMIN, ADMIN_PASSWORD);
    let (digest, _) = s
        .push_image("team/app", "build-1", &[b"layer".as_slice()])
        .await;
    s.admin_api(
        Method::PUT,
        "/repositories/team/app/-/settings",
        Some(json!({ "protected_patterns": ["v.*"] })),
    )
    .await;
    let retag = |user: &'static str, tag: &str| {
        let body = json!({ "tag": tag, "digest": digest.as_str() });
        let (s, password) = (&s, password_of(user));
        async move {
            s.api_as(
                Some((user, &password)),
                Method::POST,
                "/repositories/team/app/-/tags",
                Some(body),
            )
            .await
        }
    };
    assert_eq!(retag("dev", "nightly").await.status(), StatusCode::CREATED);
    let refused = retag("dev", "v1.0").await;
    assert_eq!(
        problem(refused).await,
        (StatusCode::FORBIDDEN, "DENIED".into())
    );
    assert_eq!(
        s.get("/v2/team/app/manifests/v1.0").await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(retag("maint", "v1.0").await.status(), StatusCode::CREATED);
    let pulled = s.get("/v2/team/app/manifests/v1.0").await;
    assert_eq!(
        header(&pulled, "docker-content-digest"),
        Some(digest.clone())
    );
}

/// The OpenAPI document describes the new operations with typed bodies.
#[tokio::test]
async fn openapi_documents_images_and_tags() {
    let s = TestServer::start().await;
    let doc = api(&s, "/openapi.json").await;
    let paths = &doc["paths"];
    let images = &paths["/api/v1/repositories/{name}/-/images"]["get"];
    let parameters: Vec<&str> = images["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for name in [
        "tag",
        "architecture",
        "os",
        "status",
        "sort",
        "limit",
        "cursor",
    ] {
        assert!(parameters.contains(&name), "{name} in {parameters:?}");
    }
    let one = &paths["/api/v1/repositories/{name}/-/images/{digest}"];
    assert!(one["get"].is_object() && one["delete"].is_object(), "{one}");
    let tags = &paths["/api/v1/repositories/{name}/-/tags"];
    assert!(
        tags["get"].is_object() && tags["post"].is_object(),
        "{tags}"
    );
    let schemas = &doc["components"]["schemas"];
    for schema in ["ImageSummary", "ImageDetail", "TagSummary", "RetagBody"] {
        assert!(schemas[schema].is_object(), "{schema} missing");
    }
    assert!(schemas["RetagBody"]["properties"]["from"].is_object());
}

/// Deleting an image through the API queues the repository's review as a `/v2/` delete does:
/// the review collects the layers only that image used, and nothing else.
#[tokio::test]
async fn delete_image_queues_a_review_that_collects_its_layers() {
    let s = TestServer::start_with(|c| {
        c.gc.grace_secs = 0;
        c.gc.review_delay_secs = 0;
        c.gc.poll_millis = 3_600_000;
        c.gc.schedule_secs = 0;
    })
    .await;
    let (old, _) = s
        .push_image_with("svc", "v1", b"c1", &[b"only in v1".as_slice()])
        .await;
    s.push_image_with("svc", "v2", b"c2", &[b"only in v2".as_slice()])
        .await;
    let replica = s.replica().await;
    assert_eq!(replica.run_due_jobs("r1").await.unwrap(), 1);

    let resp = s
        .delete(&format!("/api/v1/repositories/svc/-/images/{old}"))
        .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        replica.run_due_jobs("r1").await.unwrap(),
        1,
        "a review was queued"
    );
    let blob = |bytes: &[u8]| format!("/v2/svc/blobs/{}", sha256(bytes));
    assert_eq!(
        s.get(&blob(b"only in v1")).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(s.get(&blob(b"only in v2")).await.status(), StatusCode::OK);
    let tags = api(&s, "/repositories/svc/-/tags").await;
    assert_eq!(tags["items"].as_array().unwrap().len(), 1, "{tags}");
    assert_eq!(tags["items"][0]["name"], "v2");
    replica.close().await;
}
