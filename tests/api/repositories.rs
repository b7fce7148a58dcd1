//! Repositories in the management API: created ahead of their first push, shown, described,
//! listed as each caller may read them (filtered, sorted, paged), and the docker and podman
//! commands for one.

use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{
    TestServer,
    auth::{ADMIN, ADMIN_PASSWORD, basic, password_of, start_auth},
    header, json_body, next_link,
};

/// A JSON request to `/api/v1{path}` on a server without access control.
async fn call(
    s: &TestServer,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut req = s.req(method, &format!("/api/v1{path}"));
    if let Some(body) = body {
        req = req.json(&body);
    }
    req.send().await.expect("api request")
}

/// The status and JSON body of a response.
async fn answer(resp: reqwest::Response) -> (StatusCode, Value) {
    let status = resp.status();
    let text = resp.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Asserts a 400 whose problem names `parameter` (in `details` and in the message).
async fn assert_bad(resp: reqwest::Response, parameter: &str) {
    let url = resp.url().clone();
    let (status, body) = answer(resp).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{url}: {body}");
    assert_eq!(body["error"]["code"], "BAD_REQUEST", "{url}: {body}");
    let message = body["error"]["message"].as_str().unwrap_or("");
    assert!(message.contains(parameter), "{url}: {body}");
}

/// Every repository name of the listing at `path` (under `/api/v1`), following `Link`
/// headers; each page holds at most `limit` names when `limit` is given.
async fn listed_as(
    client: &Client,
    s: &TestServer,
    path: &str,
    limit: Option<usize>,
) -> Vec<String> {
    let mut names = Vec::new();
    let mut next = Some(format!("/api/v1{path}"));
    while let Some(path) = next.take() {
        assert!(names.len() < 1000, "pagination does not end");
        let resp = client.get(s.url(&path)).send().await.expect("listing");
        assert_eq!(resp.status(), StatusCode::OK, "GET {path}");
        next = header(&resp, "link").map(|l| next_link(&l));
        let body = json_body(resp).await;
        let items = body["items"].as_array().expect("items");
        if let Some(limit) = limit {
            assert!(items.len() <= limit, "{path}: {body}");
            assert_eq!(next.is_some(), body.get("next").is_some(), "{path}: {body}");
        }
        names.extend(items.iter().map(|r| r["name"].as_str().unwrap().to_owned()));
    }
    names
}

async fn listed(s: &TestServer, path: &str) -> Vec<String> {
    listed_as(&Client::new(), s, path, None).await
}

/// Created ahead of its first push with a description and visibility; shown; described
/// again; its figures follow the push; a second creation is a conflict.
#[tokio::test]
async fn create_show_and_describe_a_repository() {
    let s = TestServer::start().await;
    let resp = call(
        &s,
        Method::POST,
        "/repositories",
        Some(json!({ "name": "team/app", "description": "The web app", "visibility": "public" })),
    )
    .await;
    assert_eq!(
        header(&resp, "location").as_deref(),
        Some("/api/v1/repositories/team/app")
    );
    let (status, created) = answer(resp).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["name"], "team/app");
    assert_eq!(created["description"], "The web app");
    assert_eq!(created["visibility"], "public");
    assert_eq!(created["manifest_count"], 0);
    assert_eq!(created["last_push_at"], Value::Null);
    assert!(created["created_at"].as_i64().unwrap() > 0, "{created}");

    let (status, shown) = answer(call(&s, Method::GET, "/repositories/team/app", None).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown, created);
    // Created, not yet pushed: the catalog lists repositories that hold a manifest.
    let catalog = json_body(s.get("/v2/_catalog").await).await;
    assert_eq!(catalog["repositories"], json!([]));

    let (status, conflict) = answer(
        call(
            &s,
            Method::POST,
            "/repositories",
            Some(json!({ "name": "team/app" })),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{conflict}");
    assert_eq!(conflict["error"]["code"], "CONFLICT");

    let resp = call(
        &s,
        Method::PATCH,
        "/repositories/team/app",
        Some(json!({ "description": "The web app, v2" })),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let resp = call(
        &s,
        Method::PATCH,
        "/repositories/team/app",
        Some(json!({ "visibility": "internal", "description": "" })),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    s.push_image_with("team/app", "v1", b"config", &[b"layer one".as_slice()])
        .await;
    let (_, shown) = answer(call(&s, Method::GET, "/repositories/team/app", None).await).await;
    assert_eq!(shown["description"], "");
    assert_eq!(shown["visibility"], "internal");
    assert_eq!(shown["created_at"], created["created_at"]);
    assert_eq!(shown["push_count"], 1);
    assert_eq!(shown["manifest_count"], 1);
    assert_eq!(shown["tag_count"], 1);
    assert_eq!(
        shown["blob_bytes"],
        ("config".len() + "layer one".len()) as i64
    );
    assert!(shown["last_push_at"].as_i64().is_some(), "{shown}");
    let catalog = json_body(s.get("/v2/_catalog").await).await;
    assert_eq!(catalog["repositories"], json!(["team/app"]));

    // Without a visibility the namespace's (here the registry's) default applies; a
    // repository made by its first push is shown the same way.
    let (status, plain) = answer(
        call(
            &s,
            Method::POST,
            "/repositories",
            Some(json!({ "name": "plain" })),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{plain}");
    assert_eq!(plain["visibility"], "private");
    assert_eq!(plain["description"], "");
    s.push_image("pushed/only", "v1", &[b"x".as_slice()]).await;
    let (status, pushed) =
        answer(call(&s, Method::GET, "/repositories/pushed/only", None).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(pushed["description"], "");
    assert_eq!(pushed["push_count"], 1);

    let (status, missing) =
        answer(call(&s, Method::GET, "/repositories/no/such", None).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(missing["error"]["code"], "NAME_UNKNOWN");
}

/// Every bad input of creating, changing, listing and the commands is a 400 naming what was
/// wrong; a description may be 2,000 characters, not one more.
#[tokio::test]
async fn bad_input_is_refused_naming_it() {
    let s = TestServer::start().await;
    let post = |body: Value| call(&s, Method::POST, "/repositories", Some(body));
    assert_bad(post(json!({ "name": "Team/App" })).await, "name").await;
    assert_bad(post(json!({ "name": "a//b" })).await, "name").await;
    assert_bad(
        post(json!({ "name": "ok", "visibility": "secret" })).await,
        "visibility",
    )
    .await;
    assert_bad(
        post(json!({ "name": "ok", "colour": "red" })).await,
        "colour",
    )
    .await;
    assert_bad(post(json!({ "description": "no name" })).await, "name").await;
    let long = "é".repeat(2001);
    assert_bad(
        post(json!({ "name": "ok", "description": long })).await,
        "description",
    )
    .await;
    let resp = post(json!({ "name": "ok", "description": "é".repeat(2000) })).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    // Nothing was created by the refused requests.
    assert_eq!(listed(&s, "/repositories").await, ["ok"]);

    let patch = |body: Value| call(&s, Method::PATCH, "/repositories/ok", Some(body));
    assert_bad(patch(json!({ "description": long })).await, "description").await;
    assert_bad(patch(json!({ "visibility": "secret" })).await, "visibility").await;
    assert_bad(
        patch(json!({ "visibility": "public", "name": "other" })).await,
        "name",
    )
    .await;
    assert_bad(patch(json!({})).await, "nothing to change").await;
    let (status, missing) = answer(
        call(
            &s,
            Method::PATCH,
            "/repositories/no/such",
            Some(json!({ "description": "x" })),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");
    assert_eq!(missing["error"]["code"], "NAME_UNKNOWN");

    for (query, parameter) in [
        ("sort=bogus", "sort"),
        ("sort=-name", "sort"),
        ("visibility=secret", "visibility"),
        ("colour=red", "colour"),
        ("filter=x", "filter"),
        ("sort=pulls&cursor=no-key", "cursor"),
        ("sort=size&cursor=big:ok", "cursor"),
        ("limit=0", "limit"),
    ] {
        let resp = call(&s, Method::GET, &format!("/repositories?{query}"), None).await;
        assert_bad(resp, parameter).await;
    }
    let resp = call(&s, Method::GET, "/repositories?sort=bogus", None).await;
    assert_eq!(
        json_body(resp).await["error"]["details"]["parameter"],
        "sort"
    );

    for (query, parameter) in [
        ("tag=-bad", "tag"),
        ("tag=a%20b", "tag"),
        ("os=linux", "os"),
    ] {
        let resp = call(
            &s,
            Method::GET,
            &format!("/repositories/ok/-/commands?{query}"),
            None,
        )
        .await;
        assert_bad(resp, parameter).await;
    }
    let resp = call(&s, Method::PUT, "/repositories/ok/-/commands", None).await;
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
}

/// `name` filters by substring (wildcards taken literally), `visibility` by visibility; each
/// sort orders as documented with ties by name, and cursor pages of every size and sort give
/// the whole listing exactly once.
#[tokio::test]
async fn listing_filters_sorts_and_pages() {
    let s = TestServer::start().await;
    // Sizes: big > mid > small, pushed in this order one minute apart; "team/empty" is
    // created but never pushed.
    s.push_image_with("team/mid", "v1", b"mid config", &[&[1u8; 300][..]])
        .await;
    s.clock.advance(60);
    s.push_image_with("other/big", "v1", b"big config", &[&[2u8; 900][..]])
        .await;
    s.clock.advance(60);
    s.push_image_with("team/small", "v1", b"small config", &[&[3u8; 10][..]])
        .await;
    s.clock.advance(60);
    s.push_image_with("solo", "v1", b"solo config", &[&[4u8; 300][..]])
        .await;
    let resp = call(
        &s,
        Method::POST,
        "/repositories",
        Some(json!({ "name": "team/empty" })),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    for (repo, visibility) in [
        ("team/mid", "public"),
        ("other/big", "public"),
        ("solo", "internal"),
    ] {
        let resp = call(
            &s,
            Method::PATCH,
            &format!("/repositories/{repo}"),
            Some(json!({ "visibility": visibility })),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    }
    // Pulls: small 3, big 3, mid 1, solo and empty none. Counts reach the index when the
    // server stops.
    for (repo, pulls) in [("team/small", 3), ("other/big", 3), ("team/mid", 1)] {
        for _ in 0..pulls {
            let resp = s.get(&format!("/v2/{repo}/manifests/v1")).await;
            assert_eq!(resp.status(), StatusCode::OK);
        }
    }
    let s = TestServer::start_in(s.stop().await, |_| {}).await;

    let all = ["other/big", "solo", "team/empty", "team/mid", "team/small"];
    assert_eq!(listed(&s, "/repositories").await, all);
    let by_pulls = ["other/big", "team/small", "team/mid", "solo", "team/empty"];
    assert_eq!(listed(&s, "/repositories?sort=pulls").await, by_pulls);
    let by_push = ["solo", "team/small", "other/big", "team/mid", "team/empty"];
    assert_eq!(listed(&s, "/repositories?sort=pushed").await, by_push);
    let by_size = ["other/big", "solo", "team/mid", "team/small", "team/empty"];
    assert_eq!(listed(&s, "/repositories?sort=size").await, by_size);
    assert_eq!(listed(&s, "/repositories?sort=name").await, all);

    let page = json_body(call(&s, Method::GET, "/repositories?sort=pulls", None).await).await;
    let figures: Vec<(i64, i64)> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["pull_count"].as_i64().unwrap(),
                r["blob_bytes"].as_i64().unwrap(),
            )
        })
        .collect();
    let size = |config: &str, layer: usize| (config.len() + layer) as i64;
    assert_eq!(
        figures,
        [
            (3, size("big config", 900)),
            (3, size("small config", 10)),
            (1, size("mid config", 300)),
            (0, size("solo config", 300)),
            (0, 0)
        ]
    );

    for (sort, expected) in [
        ("name", all),
        ("pulls", by_pulls),
        ("pushed", by_push),
        ("size", by_size),
    ] {
        for limit in 1..=5 {
            let path = format!("/repositories?sort={sort}&limit={limit}");
            let names = listed_as(&Client::new(), &s, &path, Some(limit)).await;
            assert_eq!(names, expected, "{path}");
        }
    }

    assert_eq!(
        listed(&s, "/repositories?name=team").await,
        ["team/empty", "team/mid", "team/small"]
    );
    assert_eq!(listed(&s, "/repositories?name=TEAM/M").await, ["team/mid"]);
    assert_eq!(
        listed(&s, "/repositories?name=o").await,
        ["other/big", "solo"]
    );
    // `_` and `%` are characters here, not wildcards.
    assert_eq!(
        listed(&s, "/repositories?name=t_am").await,
        Vec::<String>::new()
    );
    assert_eq!(
        listed(&s, "/repositories?name=%25").await,
        Vec::<String>::new()
    );
    assert_eq!(
        listed(&s, "/repositories?visibility=public").await,
        ["other/big", "team/mid"]
    );
    assert_eq!(
        listed(&s, "/repositories?visibility=internal").await,
        ["solo"]
    );
    assert_eq!(
        listed(&s, "/repositories?visibility=private&sort=size").await,
        ["team/small", "team/empty"]
    );
    // Filters and sort carry over to the next page.
    let names = listed_as(
        &Client::new(),
        &s,
        "/repositories?name=team&visibility=private&sort=pulls&limit=1",
        Some(1),
    )
    .await;
    assert_eq!(names, ["team/small", "team/empty"]);
    let resp = call(
        &s,
        Method::GET,
        "/repositories?name=team&sort=size&limit=1",
        None,
    )
    .await;
    let link = header(&resp, "link").expect("link");
    assert!(
        link.contains("name=team") && link.contains("sort=size"),
        "{link}"
    );
}

/// Users and roles of the access-control tests: `team` is a PRIVATE namespace with a
/// PUBLIC, an INTERNAL and a PRIVATE repository; `outsider` has no role; `reader` is a
/// reporter, `dev` a developer, `keeper` a maintainer and `boss` the owner of `team`.
async fn team_server() -> TestServer {
    let mut s = start_auth(|_| {}).await;
    s.admin_api(
        Method::POST,
        "/namespaces",
        Some(json!({ "name": "team", "visibility": "private" })),
    )
    .await;
    for (user, role) in [
        ("outsider", None),
        ("reader", Some("reporter")),
        ("dev", Some("developer")),
        ("keeper", Some("maintainer")),
        ("boss", Some("owner")),
    ] {
        s.create_user(user).await;
        if let Some(role) = role {
            s.set_role("team", user, role).await;
        }
    }
    s.sign_in(ADMIN, ADMIN_PASSWORD);
    for visibility in ["public", "internal", "private"] {
        let repo = format!("team/{visibility}");
        s.set_visibility(&repo, visibility).await;
        s.push_image(&repo, "v1", &[visibility.as_bytes()]).await;
    }
    s
}

/// A client signed in as `user` (its test password), or anonymous.
fn client_of(user: Option<&str>) -> Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(user) = user {
        let password = if user == ADMIN {
            ADMIN_PASSWORD.to_owned()
        } else {
            password_of(user)
        };
        headers.insert(
            reqwest::header::AUTHORIZATION,
            basic(user, &password).parse().unwrap(),
        );
    }
    Client::builder().default_headers(headers).build().unwrap()
}

/// The listing is open to everyone and shows exactly what each caller may read; showing a
/// repository one may not read answers what a missing one does.
#[tokio::test]
async fn each_caller_sees_what_it_may_read() {
    let s = team_server().await;
    // A user's own namespace is theirs, private by default.
    let resp = s
        .api_as(
            Some(("outsider", &password_of("outsider"))),
            Method::POST,
            "/repositories",
            Some(json!({ "name": "outsider/tool", "description": "mine" })),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);

    let all = [
        "outsider/tool",
        "team/internal",
        "team/private",
        "team/public",
    ];
    for (who, expected) in [
        (None, &["team/public"][..]),
        (
            Some("outsider"),
            &["outsider/tool", "team/internal", "team/public"][..],
        ),
        (
            Some("reader"),
            &["team/internal", "team/private", "team/public"][..],
        ),
        (Some(ADMIN), &all[..]),
    ] {
        let client = client_of(who);
        for limit in [1, 10] {
            let names = listed_as(
                &client,
                &s,
                &format!("/repositories?limit={limit}"),
                Some(limit),
            )
            .await;
            assert_eq!(names, expected, "{who:?}, limit {limit}");
        }
        for repo in all {
            let resp = client
                .get(s.url(&format!("/api/v1/repositories/{repo}")))
                .send()
                .await
                .unwrap();
            let (status, body) = answer(resp).await;
            if expected.contains(&repo) {
                assert_eq!(status, StatusCode::OK, "{who:?} {repo}: {body}");
                assert_eq!(body["name"], repo);
            } else {
                assert_eq!(status, StatusCode::NOT_FOUND, "{who:?} {repo}: {body}");
                assert_eq!(body["error"]["code"], "NAME_UNKNOWN", "{who:?} {repo}");
            }
        }
        let resp = client
            .get(s.url("/api/v1/repositories/team/nothing"))
            .send()
            .await
            .unwrap();
        let (status, body) = answer(resp).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{who:?}");
        assert_eq!(body["error"]["code"], "NAME_UNKNOWN", "{who:?}");
    }
    let visible = listed_as(
        &client_of(Some("reader")),
        &s,
        "/repositories?visibility=private",
        None,
    )
    .await;
    assert_eq!(visible, ["team/private"]);
    let visible = listed_as(
        &client_of(None),
        &s,
        "/repositories?visibility=private",
        None,
    )
    .await;
    assert_eq!(visible, Vec::<String>::new());
}

/// Creating needs the right to push there (and the owner's right to set a visibility);
/// describing needs a maintainer, changing the visibility an owner.
#[tokio::test]
async fn who_may_create_and_change() {
    let s = team_server().await;
    let as_user = |user: Option<&'static str>, method: Method, path: &'static str, body: Value| {
        let creds = user.map(|u| (u, password_of(u)));
        let s = &s;
        async move {
            let creds = creds.as_ref().map(|(u, p)| (*u, p.as_str()));
            answer(s.api_as(creds, method, path, Some(body)).await).await
        }
    };
    let new = json!({ "name": "team/new", "description": "from dev" });
    let (status, body) = as_user(None, Method::POST, "/repositories", new.clone()).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::UNAUTHORIZED, &json!("UNAUTHORIZED"))
    );
    for user in ["outsider", "reader"] {
        let (status, body) = as_user(Some(user), Method::POST, "/repositories", new.clone()).await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (StatusCode::FORBIDDEN, &json!("DENIED")),
            "{user}"
        );
    }
    let with_visibility = json!({ "name": "team/new", "visibility": "public" });
    let (status, body) = as_user(
        Some("dev"),
        Method::POST,
        "/repositories",
        with_visibility.clone(),
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::FORBIDDEN, &json!("DENIED"))
    );
    let (status, body) = as_user(Some("dev"), Method::POST, "/repositories", new.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["visibility"], "private");
    assert_eq!(body["description"], "from dev");
    let (status, body) = as_user(
        Some("boss"),
        Method::POST,
        "/repositories",
        json!({ "name": "team/open", "visibility": "public" }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["visibility"], "public");
    let names = listed_as(&client_of(None), &s, "/repositories", None).await;
    assert_eq!(names, ["team/open", "team/public"]);

    let describe = json!({ "description": "kept by keeper" });
    for user in ["reader", "dev"] {
        let (status, body) = as_user(
            Some(user),
            Method::PATCH,
            "/repositories/team/new",
            describe.clone(),
        )
        .await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (StatusCode::FORBIDDEN, &json!("DENIED")),
            "{user}"
        );
    }
    let (status, _) = as_user(
        Some("keeper"),
        Method::PATCH,
        "/repositories/team/new",
        describe.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // Both changes or neither: the maintainer may describe but not open the repository.
    let both = json!({ "description": "opened", "visibility": "public" });
    let (status, _) = as_user(
        Some("keeper"),
        Method::PATCH,
        "/repositories/team/new",
        both.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let shown = s
        .admin_api(Method::GET, "/repositories/team/new", None)
        .await;
    assert_eq!(
        (shown["description"].as_str(), shown["visibility"].as_str()),
        (Some("kept by keeper"), Some("private"))
    );
    let (status, _) = as_user(Some("boss"), Method::PATCH, "/repositories/team/new", both).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let shown = s
        .admin_api(Method::GET, "/repositories/team/new", None)
        .await;
    assert_eq!(
        (shown["description"].as_str(), shown["visibility"].as_str()),
        (Some("opened"), Some("public"))
    );

    // The commands of a repository one may not read answer as for a missing one.
    let (status, body) = as_user(
        Some("outsider"),
        Method::GET,
        "/repositories/team/private/-/commands",
        Value::Null,
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::NOT_FOUND, &json!("NAME_UNKNOWN"))
    );
}

/// The commands name the registry by the request's host, by a proxy's forwarded host and
/// scheme, or by `external_url` when it is set; podman skips TLS checks over plain HTTP.
#[tokio::test]
async fn commands_name_the_registry() {
    let s = TestServer::start().await;
    s.push_image("team/app", "v1", &[b"x".as_slice()]).await;
    let host = s.url("").trim_start_matches("http://").to_owned();
    let (status, body) =
        answer(call(&s, Method::GET, "/repositories/team/app/-/commands", None).await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({
            "registry": host,
            "image": format!("{host}/team/app:latest"),
            "login": format!("docker login {host}"),
            "push": format!("docker push {host}/team/app:latest"),
            "pull": format!("docker pull {host}/team/app:latest"),
            "podman": {
                "login": format!("podman login --tls-verify=false {host}"),
                "push": format!("podman push --tls-verify=false {host}/team/app:latest"),
                "pull": format!("podman pull --tls-verify=false {host}/team/app:latest"),
            },
        })
    );
    let resp = s
        .req(
            Method::GET,
            "/api/v1/repositories/team/app/-/commands?tag=v1",
        )
        .header("x-forwarded-host", "registry.behind.proxy")
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    let body = json_body(resp).await;
    assert_eq!(
        body["pull"],
        "docker pull registry.behind.proxy/team/app:v1"
    );
    assert_eq!(
        body["podman"]["login"],
        "podman login registry.behind.proxy"
    );
    let resp = s
        .req(Method::GET, "/api/v1/repositories/team/app/-/commands")
        .header("x-forwarded-host", "evil; rm -rf /")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let (status, body) =
        answer(call(&s, Method::GET, "/repositories/no/such/-/commands", None).await).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::NOT_FOUND, &json!("NAME_UNKNOWN"))
    );

    let s = TestServer::start_with(|cfg| {
        cfg.external_url = Some("https://registry.example.com".parse().unwrap());
    })
    .await;
    s.push_image("team/app", "v1", &[b"x".as_slice()]).await;
    let body = json_body(
        call(
            &s,
            Method::GET,
            "/repositories/team/app/-/commands?tag=v1",
            None,
        )
        .await,
    )
    .await;
    assert_eq!(body["registry"], "registry.example.com");
    assert_eq!(body["login"], "docker login registry.example.com");
    assert_eq!(body["push"], "docker push registry.example.com/team/app:v1");
    assert_eq!(body["pull"], "docker pull registry.example.com/team/app:v1");
    assert_eq!(
        body["podman"],
        json!({
            "login": "podman login registry.example.com",
            "push": "podman push registry.example.com/team/app:v1",
            "pull": "podman pull registry.example.com/team/app:v1",
        })
    );
}

/// The OpenAPI document describes the new operations with their typed bodies, so that a
/// client generated from it gets the fields.
#[tokio::test]
async fn openapi_documents_the_repository_bodies() {
    let s = TestServer::start().await;
    let doc = json_body(s.get("/api/v1/openapi.json").await).await;
    let paths = &doc["paths"];
    let create = &paths["/api/v1/repositories"]["post"];
    assert_eq!(
        create["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/NewRepository"
    );
    let change = &paths["/api/v1/repositories/{name}"]["patch"];
    assert_eq!(
        change["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/RepositoryChanges"
    );
    assert!(paths["/api/v1/repositories/{name}"]["get"].is_object());
    assert!(paths["/api/v1/repositories/{name}/-/commands"]["get"].is_object());
    let listing: Vec<&str> = paths["/api/v1/repositories"]["get"]["parameters"]
        .as_array()
        .expect("listing parameters")
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(listing, ["limit", "cursor", "name", "visibility", "sort"]);
    let schemas = &doc["components"]["schemas"];
    for field in ["name", "description", "visibility"] {
        assert!(
            schemas["NewRepository"]["properties"][field].is_object(),
            "NewRepository.{field}"
        );
    }
    for field in [
        "description",
        "visibility",
        "created_at",
        "pull_count",
        "blob_bytes",
    ] {
        assert!(
            schemas["RepositorySummary"]["properties"][field].is_object(),
            "RepositorySummary.{field}"
        );
    }
    for field in ["registry", "image", "login", "push", "pull", "podman"] {
        assert!(
            schemas["RepositoryCommands"]["properties"][field].is_object(),
            "RepositoryCommands.{field}"
        );
    }
}
