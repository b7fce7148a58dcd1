//! Usage statistics through HTTP: pulls (manifest GETs), HEADs, pushes and blob bytes
//! counted per repository and day, read back as totals, popular repositories and tags, and
//! daily trends (JSON and CSV); storage per repository (deduplicated and exclusive bytes);
//! what each caller may see; every bad parameter named. Counts are read after a graceful
//! restart of the server, which flushes them (so the restart also shows that none is lost);
//! days are moved with the server's clock.

use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{
    OCI_MANIFEST, TestServer,
    auth::{ADMIN, ADMIN_PASSWORD, basic, client_with, password_of, start_auth},
    image_config, json_body, sha256,
};

const DAY: i64 = 86_400;

/// Moves the server's clock to noon (UTC) of the next day, so that a test's requests of "one
/// day" cannot straddle a midnight.
fn to_next_noon(s: &TestServer) {
    let now = s.clock.now();
    s.clock.advance(DAY - now.rem_euclid(DAY) + DAY / 2);
}

/// Stops the server gracefully (which flushes the counts held in memory) and serves the same
/// directory again with the same configuration and clock.
async fn restarted(s: TestServer) -> TestServer {
    let config = s.config.clone();
    let dir = s.stop().await;
    TestServer::start_in(dir, move |c| *c = config).await
}

/// The JSON of `GET /api/v1{path}` with `client`, insisting on 200.
async fn get_json(client: &Client, s: &TestServer, path: &str) -> Value {
    let resp = client
        .get(s.url(&format!("/api/v1{path}")))
        .send()
        .await
        .expect("GET");
    let status = resp.status();
    let body = json_body(resp).await;
    assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
    body
}

/// Sends `method` to `/v2/{path}` `times` times, insisting on 200.
async fn repeat(s: &TestServer, method: Method, path: &str, times: usize) {
    for _ in 0..times {
        let resp = s.req(method.clone(), &format!("/v2/{path}")).send().await;
        assert_eq!(
            resp.expect(path).status(),
            StatusCode::OK,
            "{method} {path}"
        );
    }
}

/// The last `n` points of the default (30-day) trend at `query`.
async fn last_points(s: &TestServer, query: &str, n: usize) -> Vec<Value> {
    let trend = get_json(&s.client, s, &format!("/stats/trends{query}")).await;
    let points = trend["points"].as_array().expect("points").clone();
    assert_eq!(points.len(), 30, "{trend}");
    assert_eq!(points[29]["date"], trend["to"], "{trend}");
    points[30 - n..].to_vec()
}

/// Pulls (GETs by tag and by digest), HEADs, pushes and blob bytes land on the day they
/// happened; the totals, popular listings and trends agree; CSV carries the same figures.
#[tokio::test]
async fn usage_is_counted_per_day_and_read_back() {
    let s = TestServer::start().await;
    to_next_noon(&s);
    let layer = b"the layer of app, counted when served";
    let (digest, _) = s.push_image("app", "v1", &[layer]).await;
    s.push_image("other", "v1", &[b"the layer of other"]).await;
    repeat(&s, Method::GET, "app/manifests/v1", 2).await;
    repeat(&s, Method::GET, &format!("app/manifests/{digest}"), 1).await;
    repeat(&s, Method::HEAD, "app/manifests/v1", 1).await;
    repeat(&s, Method::GET, &format!("app/blobs/{}", sha256(layer)), 1).await;
    let part = s
        .req(Method::GET, &format!("/v2/app/blobs/{}", sha256(layer)))
        .header("range", "bytes=0-3")
        .send()
        .await
        .expect("range GET");
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    s.clock.advance(DAY);
    repeat(&s, Method::GET, "app/manifests/v1", 1).await;
    repeat(&s, Method::GET, "other/manifests/v1", 1).await;
    let s = restarted(s).await;

    let [yesterday, today] =
        <[Value; 2]>::try_from(last_points(&s, "?repository=app", 2).await).expect("two points");
    let figures =
        |p: &Value| ["pulls", "heads", "pushes", "bytes_out"].map(|k| p[k].as_i64().unwrap_or(-1));
    assert_eq!(
        figures(&yesterday),
        [3, 1, 1, layer.len() as i64 + 4],
        "{yesterday}"
    );
    assert_eq!(figures(&today), [1, 0, 0, 0], "{today}");
    let everywhere = last_points(&s, "", 2).await;
    assert_eq!(figures(&everywhere[0]), [3, 1, 2, layer.len() as i64 + 4]);
    assert_eq!(figures(&everywhere[1]), [2, 0, 0, 0]);

    let totals = get_json(&s.client, &s, "/stats").await;
    assert_eq!(totals["repositories"], 2, "{totals}");
    assert_eq!(totals["manifests"], 2, "{totals}");
    assert_eq!(totals["tags"], 2, "{totals}");
    // One config shared by both images, and one layer each.
    assert_eq!(totals["blobs"], 3, "{totals}");
    assert_eq!(
        totals["pulls"],
        json!({ "today": 2, "last_7_days": 5, "last_30_days": 5 })
    );
    assert_eq!(
        totals["pushes"],
        json!({ "today": 0, "last_7_days": 2, "last_30_days": 2 })
    );

    let popular = get_json(&s.client, &s, "/stats/popular?window=1d").await;
    assert_eq!(
        popular["items"],
        json!([{ "repository": "app", "pulls": 1 }, { "repository": "other", "pulls": 1 }])
    );
    let popular = get_json(&s.client, &s, "/stats/popular").await;
    assert_eq!(popular["window"], "7d");
    assert_eq!(
        popular["items"],
        json!([{ "repository": "app", "pulls": 4 }, { "repository": "other", "pulls": 1 }])
    );
    let limited = get_json(&s.client, &s, "/stats/popular?limit=1&by=tag").await;
    // The GET by digest names no tag.
    assert_eq!(
        limited["items"],
        json!([{ "repository": "app", "tag": "v1", "pulls": 3 }])
    );

    let csv = s
        .req(Method::GET, "/api/v1/stats/popular?by=tag")
        .header("accept", "text/csv")
        .send()
        .await
        .expect("CSV");
    assert!(
        csv.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert_eq!(
        csv.text().await.unwrap(),
        "repository,tag,pulls\napp,v1,3\nother,v1,1\n"
    );
    let from = yesterday["date"].as_str().unwrap();
    let to = today["date"].as_str().unwrap();
    let csv = s
        .get(&format!(
            "/api/v1/stats/trends?repository=app&from={from}&to={to}&format=csv"
        ))
        .await;
    assert_eq!(csv.status(), StatusCode::OK);
    // The storage column (last) depends on when the worker first flushed: see
    // `trends_carry_storage_by_day_week_and_month`.
    let text = csv.text().await.unwrap();
    let without_storage: Vec<&str> = text
        .lines()
        .map(|line| line.rsplit_once(',').map_or(line, |(rest, _)| rest))
        .collect();
    assert_eq!(
        without_storage,
        [
            "date,pulls,heads,pushes,bytes_out".to_owned(),
            format!("{from},3,1,1,{}", layer.len() + 4),
            format!("{to},1,0,0,0"),
        ],
        "{text}"
    );
    assert!(text.starts_with("date,pulls,heads,pushes,bytes_out,storage_bytes\n"));
    let csv = s
        .get("/api/v1/stats?format=csv")
        .await
        .text()
        .await
        .unwrap();
    assert!(csv.starts_with("metric,value\nrepositories,2\n"), "{csv}");
    assert!(csv.contains("\npulls_7d,5\n"), "{csv}");
}

/// Moves the server's clock forward to noon (UTC) of `date` (`YYYY-MM-DD`, in the future).
fn to_noon_of(s: &TestServer, date: &str) {
    let part = |range: std::ops::Range<usize>| date[range].parse::<u8>().expect("a date");
    let year = date[..4].parse::<i32>().expect("a year");
    let month = time::Month::try_from(part(5..7)).expect("a month");
    let day = time::Date::from_calendar_date(year, month, part(8..10)).expect("a date");
    let noon = day.midnight().assume_utc().unix_timestamp() + DAY / 2;
    let now = s.clock.now();
    assert!(noon > now, "{date} is in the past");
    s.clock.advance(noon - now);
}

/// Writes what a replica holds, as a worker's flush does: the first flush of a day also
/// records the day's storage.
async fn flush(s: &TestServer) {
    let replica = s.replica().await;
    replica.flush_pull_stats().await.expect("flush");
    replica.close().await;
}

/// `storage_bytes` of each point, `None` where nothing was recorded yet.
fn storage(trend: &Value) -> Vec<Option<i64>> {
    trend["points"]
        .as_array()
        .expect("points")
        .iter()
        .map(|p| p["storage_bytes"].as_i64())
        .collect()
}

/// The storage history: recorded at the first flush of each day (a repository's deduplicated
/// bytes, the registry's physical bytes), carried forward over days without a record, `null`
/// before the first; pulls summed per ISO week (from Monday) and per calendar month, with
/// the storage recorded last in each; CSV carries the same column.
#[tokio::test]
async fn trends_carry_storage_by_day_week_and_month() {
    let s = TestServer::start().await;
    s.push_image("app", "v1", &[b"the first layer of app"])
        .await;
    s.push_image("other", "v1", &[b"a layer of another repository"])
        .await;
    // Thursday 2031-01-30: the first flush records the storage as pushed so far.
    to_noon_of(&s, "2031-01-30");
    flush(&s).await;
    let first = get_json(&s.client, &s, "/repositories/app").await["deduplicated_bytes"]
        .as_i64()
        .unwrap();
    let registry_first = get_json(&s.client, &s, "/stats").await["bytes"]
        .as_i64()
        .unwrap();
    repeat(&s, Method::GET, "app/manifests/v1", 2).await;
    // More stored the same day is seen at the next day's record.
    s.push_image("app", "v2", &[b"a second, larger layer of app"])
        .await;
    flush(&s).await;
    to_noon_of(&s, "2031-02-03");
    flush(&s).await;
    let second = get_json(&s.client, &s, "/repositories/app").await["deduplicated_bytes"]
        .as_i64()
        .unwrap();
    let registry_second = get_json(&s.client, &s, "/stats").await["bytes"]
        .as_i64()
        .unwrap();
    assert!(second > first && registry_second > registry_first);
    repeat(&s, Method::GET, "app/manifests/v2", 3).await;
    to_noon_of(&s, "2031-02-05");
    let s = restarted(s).await;

    let range = "from=2031-01-28&to=2031-02-05";
    let days = get_json(
        &s.client,
        &s,
        &format!("/stats/trends?repository=app&{range}"),
    )
    .await;
    assert_eq!(days["interval"], "day");
    let (a, b) = (Some(first), Some(second));
    assert_eq!(
        storage(&days),
        [None, None, a, a, a, a, b, b, b],
        "28th to 5th: {days}"
    );
    let pulls: Vec<i64> = days["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pulls"].as_i64().unwrap())
        .collect();
    assert_eq!(pulls, [0, 0, 2, 0, 0, 0, 3, 0, 0]);
    let registry = get_json(&s.client, &s, &format!("/stats/trends?{range}")).await;
    assert_eq!(storage(&registry)[2], Some(registry_first), "{registry}");
    assert_eq!(storage(&registry)[6], Some(registry_second), "{registry}");

    let weeks = get_json(
        &s.client,
        &s,
        &format!("/stats/trends?repository=app&interval=week&{range}"),
    )
    .await;
    assert_eq!(
        (&weeks["interval"], &weeks["from"], &weeks["to"]),
        (&json!("week"), &json!("2031-01-27"), &json!("2031-02-09")),
        "whole ISO weeks, Monday to Sunday: {weeks}"
    );
    assert_eq!(
        weeks["points"],
        json!([
            { "date": "2031-01-27", "pulls": 2, "heads": 0, "pushes": 1, "bytes_out": 0,
              "storage_bytes": first },
            { "date": "2031-02-03", "pulls": 3, "heads": 0, "pushes": 0, "bytes_out": 0,
              "storage_bytes": second },
        ])
    );

    let months = get_json(
        &s.client,
        &s,
        &format!("/stats/trends?repository=app&interval=month&{range}"),
    )
    .await;
    assert_eq!(
        (&months["from"], &months["to"]),
        (&json!("2031-01-01"), &json!("2031-02-28")),
        "{months}"
    );
    let per_month: Vec<(Value, Value, Value)> = months["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["date"].clone(),
                p["pulls"].clone(),
                p["storage_bytes"].clone(),
            )
        })
        .collect();
    assert_eq!(
        per_month,
        [
            (json!("2031-01-01"), json!(2), json!(first)),
            (json!("2031-02-01"), json!(3), json!(second)),
        ]
    );

    let csv = s
        .get("/api/v1/stats/trends?repository=app&format=csv&from=2031-01-29&to=2031-01-30")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(
        csv,
        format!(
            "date,pulls,heads,pushes,bytes_out,storage_bytes\n\
             2031-01-29,0,0,0,0,\n2031-01-30,2,0,1,0,{first}\n"
        )
    );
}

/// Pulls counted in memory are all written by a graceful stop, however many came at once.
#[tokio::test]
async fn a_graceful_stop_loses_no_counts() {
    let s = TestServer::start().await;
    to_next_noon(&s);
    s.push_image("busy", "latest", &[b"busy layer"]).await;
    let pulls = (0..200).map(|_| {
        let request = s.req(Method::GET, "/v2/busy/manifests/latest").send();
        async move { request.await.expect("pull").status() }
    });
    for status in futures::future::join_all(pulls).await {
        assert_eq!(status, StatusCode::OK);
    }
    let s = restarted(s).await;
    let today = &last_points(&s, "?repository=busy", 1).await[0];
    assert_eq!(today["pulls"], 200, "{today}");
    let shown = get_json(&s.client, &s, "/repositories/busy").await;
    assert_eq!(shown["pull_count"], 200, "{shown}");
}

/// Pulls made at once through HTTP.
const CONCURRENT_PULLS: usize = 32;

/// 10,000 pulls made 32 at a time are counted exactly: in `berth_pulls_total` as they are
/// answered, and in the usage figures and the repository's count once flushed (by the
/// graceful stop of a restart).
#[tokio::test]
async fn ten_thousand_concurrent_pulls_are_counted_exactly() {
    use futures::StreamExt;
    const PULLS: usize = 10_000;
    let s = TestServer::start().await;
    to_next_noon(&s);
    s.push_image("hot", "latest", &[b"the layer everyone pulls"])
        .await;
    let url = s.url("/v2/hot/manifests/latest");
    let statuses: Vec<StatusCode> = futures::stream::iter(0..PULLS)
        .map(|_| {
            let request = s.client.get(&url).send();
            async move { request.await.expect("pull").status() }
        })
        .buffer_unordered(CONCURRENT_PULLS)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == StatusCode::OK));
    let metrics = s.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(&format!("\nberth_pulls_total {PULLS}\n")),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("pulls"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    let s = restarted(s).await;
    let totals = get_json(&s.client, &s, "/stats").await;
    assert_eq!(
        totals["pulls"],
        json!({ "today": PULLS, "last_7_days": PULLS, "last_30_days": PULLS })
    );
    let shown = get_json(&s.client, &s, "/repositories/hot").await;
    assert_eq!(shown["pull_count"], PULLS, "{shown}");
    let tags = get_json(&s.client, &s, "/stats/popular?by=tag").await;
    assert_eq!(tags["items"][0]["pulls"], PULLS, "{tags}");
}

/// Replicas count in their own memory and flush increments: their counts add up, and a
/// second flush onto the same (repository, day) row adds to it.
#[tokio::test]
async fn replicas_add_up() {
    let s = TestServer::start().await;
    to_next_noon(&s);
    s.push_image("shared", "v1", &[b"shared layer"]).await;
    let replica = s.replica().await;
    let repo: berth::oci::RepoName = "shared".parse().unwrap();
    let tag = berth::oci::Reference::Tag("v1".parse().unwrap());
    for _ in 0..3 {
        replica
            .get_manifest(&repo, &tag, true, None)
            .await
            .expect("pull");
    }
    replica.flush_pull_stats().await.expect("first flush");
    replica
        .get_manifest(&repo, &tag, true, None)
        .await
        .expect("pull");
    replica
        .get_manifest(&repo, &tag, false, None)
        .await
        .expect("HEAD");
    replica.flush_pull_stats().await.expect("second flush");
    replica.close().await;
    repeat(&s, Method::GET, "shared/manifests/v1", 2).await;
    let s = restarted(s).await;
    let today = &last_points(&s, "?repository=shared", 1).await[0];
    assert_eq!(today["pulls"], 6, "{today}");
    assert_eq!(today["heads"], 1, "{today}");
    let tags = get_json(&s.client, &s, "/stats/popular?by=tag").await;
    assert_eq!(
        tags["items"],
        json!([{ "repository": "shared", "tag": "v1", "pulls": 6 }])
    );
}

/// The exclusive size of a repository is exactly what deleting it and collecting frees;
/// the deduplicated size counts each blob its manifests need once.
#[tokio::test]
async fn exclusive_size_is_what_deleting_frees() {
    let s = TestServer::start_with(|c| {
        c.gc.grace_secs = 0;
        c.gc.review_delay_secs = 0;
        c.gc.upload_timeout_secs = 0;
        c.gc.poll_millis = 3_600_000;
        c.gc.schedule_secs = 0;
    })
    .await;
    let shared: &[u8] = b"a base layer both repositories use";
    let mine: &[u8] = b"a layer only solo has, somewhat longer than the rest";
    let also_mine: &[u8] = b"another of solo's own";
    s.push_image("solo", "a", &[shared, mine]).await;
    s.push_image("solo", "b", &[shared, also_mine, mine]).await;
    s.push_image("peer", "v1", &[shared]).await;

    let solo = get_json(&s.client, &s, "/repositories/solo").await;
    let exclusive = (mine.len() + also_mine.len()) as i64;
    assert_eq!(solo["exclusive_bytes"], exclusive, "{solo}");
    let config = solo["deduplicated_bytes"].as_i64().unwrap() - exclusive - shared.len() as i64;
    assert!(config > 0, "the config counts once: {solo}");
    let peer = get_json(&s.client, &s, "/repositories/peer").await;
    assert_eq!(peer["exclusive_bytes"], 0, "{peer}");
    assert_eq!(
        peer["deduplicated_bytes"],
        config + shared.len() as i64,
        "{peer}"
    );

    assert_eq!(
        s.delete("/api/v1/repositories/solo").await.status(),
        StatusCode::NO_CONTENT
    );
    let resp = s
        .req(Method::POST, "/api/v1/gc/runs")
        .json(&json!({ "wait": true }))
        .send()
        .await
        .expect("gc");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let run = json_body(resp).await;
    assert_eq!(run["state"], "done", "{run}");
    assert_eq!(run["bytes"], exclusive, "{run}");
}

/// A namespace's figures: its repositories only, its bytes each blob once, and its exclusive
/// bytes those no repository outside it links.
#[tokio::test]
async fn a_namespace_is_counted_on_its_own() {
    let s = TestServer::start().await;
    to_next_noon(&s);
    let shared: &[u8] = b"a base layer everyone uses";
    let (x, y): (&[u8], &[u8]) = (b"team/a's own layer", b"team/b's own layer, longer");
    s.push_image("team/a", "v1", &[shared, x]).await;
    s.push_image("team/b", "v1", &[shared, y]).await;
    s.push_image("other", "v1", &[shared]).await;
    repeat(&s, Method::GET, "team/a/manifests/v1", 1).await;
    repeat(&s, Method::GET, "other/manifests/v1", 2).await;
    let s = restarted(s).await;

    let other = get_json(&s.client, &s, "/repositories/other").await;
    let config_and_shared = other["deduplicated_bytes"].as_i64().unwrap();
    let team = get_json(&s.client, &s, "/stats?namespace=team").await;
    assert_eq!(team["namespace"], "team", "{team}");
    assert_eq!(team["repositories"], 2, "{team}");
    assert_eq!(
        team["blobs"], 4,
        "config, shared and one layer each: {team}"
    );
    assert_eq!(
        team["bytes"],
        config_and_shared + (x.len() + y.len()) as i64,
        "{team}"
    );
    assert_eq!(
        team["exclusive_bytes"],
        (x.len() + y.len()) as i64,
        "{team}"
    );
    assert_eq!(team["pulls"]["today"], 1, "{team}");
    assert_eq!(team["pushes"]["today"], 2, "{team}");

    let popular = get_json(&s.client, &s, "/stats/popular?namespace=team").await;
    assert_eq!(
        popular["items"],
        json!([{ "repository": "team/a", "pulls": 1 }])
    );
    let today = &last_points(&s, "?namespace=team", 1).await[0];
    assert_eq!(today["pulls"], 1, "{today}");
}

/// Asserts a 400 whose problem names `parameter` in its message.
async fn assert_bad(s: &TestServer, path: &str, parameter: &str) {
    let resp = s.get(&format!("/api/v1{path}")).await;
    let status = resp.status();
    let body = json_body(resp).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
    assert_eq!(body["error"]["code"], "BAD_REQUEST", "{path}: {body}");
    let message = body["error"]["message"].as_str().unwrap_or("");
    assert!(message.contains(parameter), "{path}: {body}");
}

/// Unknown parameters, groupings, intervals and formats, bad windows, limits, dates and
/// ranges are refused with a 400 naming the parameter.
#[tokio::test]
async fn bad_input_is_refused_naming_it() {
    let s = TestServer::start().await;
    for (path, parameter) in [
        ("/stats?bogus=1", "bogus"),
        ("/stats?format=xml", "format"),
        ("/stats/popular?user=alice", "user"),
        ("/stats/popular?by=owner", "by"),
        ("/stats/popular?window=0d", "window"),
        ("/stats/popular?window=366d", "window"),
        ("/stats/popular?window=7", "window"),
        ("/stats/popular?window=-1d", "window"),
        ("/stats/popular?window=week", "window"),
        ("/stats/popular?limit=0", "limit"),
        ("/stats/popular?limit=101", "limit"),
        ("/stats/popular?limit=ten", "limit"),
        ("/stats/popular?format=yaml", "format"),
        ("/stats/trends?interval=year", "interval"),
        ("/stats/trends?interval=Week", "interval"),
        ("/stats/trends?interval=", "interval"),
        ("/stats/trends?from=2024-13-01", "from"),
        ("/stats/trends?from=2023-02-29", "from"),
        ("/stats/trends?to=yesterday", "to"),
        ("/stats/trends?from=2024-03-02&to=2024-03-01", "from"),
        ("/stats/trends?from=2000-01-01&to=2024-01-01", "to"),
        ("/stats/trends?repository=Not..A..Name", "repository"),
        ("/stats/trends?sort=pulls", "sort"),
        ("/stats?namespace=Not..A..Name", "namespace"),
        ("/stats/popular?namespace=-team", "namespace"),
        ("/stats/trends?repository=a/b&namespace=a", "namespace"),
    ] {
        assert_bad(&s, path, parameter).await;
    }
    let missing = s.get("/api/v1/stats/trends?repository=nothing/here").await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

/// Usage figures are visible to whoever may read the repository: totals, popular listings
/// and trends count only those; a trend of a repository the caller may not read answers
/// what a missing one does.
#[tokio::test]
async fn usage_figures_follow_read_access() {
    let mut s = start_auth(|_| {}).await;
    to_next_noon(&s);
    s.admin_api(
        Method::POST,
        "/namespaces",
        Some(json!({ "name": "team", "visibility": "private" })),
    )
    .await;
    s.create_user("outsider").await;
    s.sign_in(ADMIN, ADMIN_PASSWORD);
    for (visibility, pulls) in [("public", 1), ("private", 2)] {
        let repo = format!("team/{visibility}");
        s.set_visibility(&repo, visibility).await;
        s.push_image(&repo, "v1", &[visibility.as_bytes()]).await;
        repeat(&s, Method::GET, &format!("{repo}/manifests/v1"), pulls).await;
    }
    let s = restarted(s).await;
    let admin = client_with(&basic(ADMIN, ADMIN_PASSWORD));
    let outsider = client_with(&basic("outsider", &password_of("outsider")));

    for (who, client, repositories, popular) in [
        (
            "admin",
            &admin,
            2,
            json!([
                { "repository": "team/private", "pulls": 2 },
                { "repository": "team/public", "pulls": 1 }
            ]),
        ),
        (
            "outsider",
            &outsider,
            1,
            json!([{ "repository": "team/public", "pulls": 1 }]),
        ),
        (
            "anonymous",
            &Client::new(),
            1,
            json!([{ "repository": "team/public", "pulls": 1 }]),
        ),
    ] {
        let totals = get_json(client, &s, "/stats").await;
        assert_eq!(totals["repositories"], repositories, "{who}: {totals}");
        assert_eq!(
            totals["pulls"]["today"],
            popular
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["pulls"].as_i64().unwrap())
                .sum::<i64>(),
            "{who}: {totals}"
        );
        let shown = get_json(client, &s, "/stats/popular").await;
        assert_eq!(shown["items"], popular, "{who}");
        let trend = get_json(client, &s, "/stats/trends?repository=team/public").await;
        assert_eq!(trend["points"][29]["pulls"], 1, "{who}: {trend}");
    }
    for client in [&outsider, &Client::new()] {
        let resp = client
            .get(s.url("/api/v1/stats/trends?repository=team/private"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    }
    let trend = get_json(&admin, &s, "/stats/trends?repository=team/private").await;
    assert_eq!(trend["points"][29]["pulls"], 2, "{trend}");
}

/// The OpenAPI document lists the statistics operations.
#[tokio::test]
async fn openapi_documents_the_statistics() {
    let s = TestServer::start().await;
    let doc = json_body(s.get("/api/v1/openapi.json").await).await;
    for path in [
        "/api/v1/stats",
        "/api/v1/stats/popular",
        "/api/v1/stats/trends",
    ] {
        assert!(doc["paths"][path]["get"].is_object(), "{path}");
    }
    let summary = &doc["components"]["schemas"]["RepositorySummary"]["properties"];
    for field in ["deduplicated_bytes", "exclusive_bytes"] {
        assert!(summary[field].is_object(), "RepositorySummary.{field}");
    }
}

/// Who pulled and pushed most is counted per identity (users, tokens, anonymous callers)
/// and shown to administrators only.
#[tokio::test]
async fn pulls_and_pushes_by_user_are_for_administrators() {
    let mut s = start_auth(|_| {}).await;
    to_next_noon(&s);
    s.create_user("outsider").await;
    s.sign_in(ADMIN, ADMIN_PASSWORD);
    s.set_visibility("pub/app", "public").await;
    s.push_image("pub/app", "v1", &[b"a public layer"]).await;
    repeat(&s, Method::GET, "pub/app/manifests/v1", 1).await;
    let outsider = client_with(&basic("outsider", &password_of("outsider")));
    for client in [&outsider, &outsider, &Client::new()] {
        let resp = client
            .get(s.url("/v2/pub/app/manifests/v1"))
            .send()
            .await
            .expect("pull");
        assert_eq!(resp.status(), StatusCode::OK);
    }
    let s = restarted(s).await;
    let admin = client_with(&basic(ADMIN, ADMIN_PASSWORD));

    let users = get_json(&admin, &s, "/stats/popular?by=user").await;
    let shown: Vec<_> = users["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|u| (u["user"].clone(), u["pulls"].clone(), u["pushes"].clone()))
        .collect();
    assert_eq!(
        shown,
        [
            (json!("outsider"), json!(2), json!(0)),
            (json!(ADMIN), json!(1), json!(1)),
            (json!("anonymous"), json!(1), json!(0)),
        ],
        "{users}"
    );
    assert_eq!(users["items"][2]["subject"], "anonymous", "{users}");
    let csv = admin
        .get(s.url("/api/v1/stats/popular?by=user&format=csv&limit=1"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let subject = users["items"][0]["subject"].as_str().unwrap();
    assert_eq!(
        csv,
        format!("subject,user,pulls,pushes\n{subject},outsider,2,0\n")
    );

    let refused = outsider
        .get(s.url("/api/v1/stats/popular?by=user"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
}

/// Both ways of finding the most pulled give the same answer: summing the window's days,
/// and searching by pulls ever (a bound on any window's), through pulls outside the window,
/// candidates past the first batch and ties at the bound (broken by name).
#[tokio::test]
async fn the_most_pulled_are_the_same_summed_or_searched_by_bound() {
    // 0: every window is searched by the bound; u32::MAX: every window is summed.
    for summed_rows in [0, u32::MAX] {
        most_pulled_by_window(summed_rows).await;
    }
}

async fn most_pulled_by_window(summed_rows: u32) {
    let s = TestServer::start_with(|c| c.stats.popular_summed_rows = summed_rows).await;
    to_next_noon(&s);
    let (_, manifest) = s.push_image("many", "t000", &[b"a layer of many"]).await;
    for i in 1..100 {
        s.put_manifest_ok("many", &format!("t{i:03}"), OCI_MANIFEST, &manifest)
            .await;
    }
    s.push_image("old", "v1", &[b"a layer of old"]).await;
    for i in 0..100 {
        repeat(&s, Method::GET, &format!("many/manifests/t{i:03}"), 1).await;
    }
    repeat(&s, Method::GET, "old/manifests/v1", 150).await;
    s.clock.advance(100 * DAY);
    repeat(&s, Method::GET, "many/manifests/t099", 2).await;
    repeat(&s, Method::GET, "old/manifests/v1", 1).await;
    let s = restarted(s).await;

    let items = |query: &'static str| {
        let s = &s;
        async move { get_json(&s.client, s, &format!("/stats/popular?{query}")).await["items"].clone() }
    };
    let recent = json!([
        { "repository": "many", "tag": "t099", "pulls": 2 },
        { "repository": "old", "tag": "v1", "pulls": 1 },
    ]);
    assert_eq!(
        items("by=tag&window=60d&limit=2").await,
        recent,
        "plan {summed_rows}"
    );
    assert_eq!(
        items("by=tag&window=7d&limit=2").await,
        recent,
        "plan {summed_rows}"
    );
    assert_eq!(
        items("by=tag&window=365d&limit=3").await,
        json!([
            { "repository": "old", "tag": "v1", "pulls": 151 },
            { "repository": "many", "tag": "t099", "pulls": 3 },
            { "repository": "many", "tag": "t000", "pulls": 1 },
        ]),
        "plan {summed_rows}"
    );
    assert_eq!(
        items("window=60d").await,
        json!([{ "repository": "many", "pulls": 2 }, { "repository": "old", "pulls": 1 }]),
        "plan {summed_rows}"
    );
    assert_eq!(
        items("window=365d").await,
        json!([{ "repository": "old", "pulls": 151 }, { "repository": "many", "pulls": 102 }]),
        "plan {summed_rows}"
    );
}

/// The registry's totals are counters the index keeps: they follow pushes, a manifest's
/// deletion (its tags with it), a repository's deletion and a collection; the registry's
/// pulls keep those of a deleted repository.
#[tokio::test]
async fn registry_totals_follow_deletions_and_collection() {
    let s = TestServer::start_with(|c| {
        c.gc.grace_secs = 0;
        c.gc.review_delay_secs = 0;
        c.gc.upload_timeout_secs = 0;
        c.gc.poll_millis = 3_600_000;
        c.gc.schedule_secs = 0;
    })
    .await;
    to_next_noon(&s);
    let layers: [&[u8]; 3] = [b"kept layer", b"layer of a deleted image", b"layer of gone"];
    let (_, kept) = s.push_image("app", "v1", &[layers[0]]).await;
    s.put_manifest_ok("app", "latest", OCI_MANIFEST, &kept)
        .await;
    let (deleted, _) = s.push_image("app", "v2", &[layers[1]]).await;
    s.push_image("gone", "v1", &[layers[2]]).await;
    repeat(&s, Method::GET, "gone/manifests/v1", 2).await;
    let s = restarted(s).await;
    let config = image_config("linux", "amd64", None).len() as i64;
    let size = |of: &[&[u8]]| config + of.iter().map(|l| l.len() as i64).sum::<i64>();
    let figures = |t: &Value| {
        ["repositories", "manifests", "tags", "blobs", "bytes"].map(|k| t[k].as_i64().unwrap_or(-1))
    };

    let totals = get_json(&s.client, &s, "/stats").await;
    assert_eq!(figures(&totals), [2, 3, 4, 4, size(&layers)], "{totals}");
    let resp = s.delete(&format!("/v2/app/manifests/{deleted}")).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let totals = get_json(&s.client, &s, "/stats").await;
    assert_eq!(figures(&totals), [2, 2, 3, 4, size(&layers)], "{totals}");
    let resp = s.delete("/api/v1/repositories/gone").await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let totals = get_json(&s.client, &s, "/stats").await;
    assert_eq!(figures(&totals), [1, 1, 2, 4, size(&layers)], "{totals}");
    assert_eq!(totals["pulls"]["today"], 2, "{totals}");

    let resp = s
        .req(Method::POST, "/api/v1/gc/runs")
        .json(&json!({ "wait": true }))
        .send()
        .await
        .expect("gc");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let totals = get_json(&s.client, &s, "/stats").await;
    assert_eq!(
        figures(&totals),
        [1, 1, 2, 2, size(&layers[..1])],
        "{totals}"
    );
    assert_eq!(totals["exclusive_bytes"], size(&layers[..1]), "{totals}");
}
