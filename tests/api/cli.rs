//! The `berth` command against a running server: `repo`, `image`, `tag`, `stats` and
//! `policy` run the built binary with `--registry` (and a token when auth is on), and their
//! tables (headers, sizes in MiB, dates) and `--json` (the API's own answer) are checked
//! against what `/api/v1` says. Also: errors of the server printed with their code, a
//! missing token, a bad or unreachable `--registry`, each remote command's `--help`, and the
//! offline `berth gc estimate --grace-secs` and `gc history` tables.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{
    TestServer,
    auth::{ADMIN, ADMIN_PASSWORD, start_auth},
    backends, image_config, json_body, random_bytes,
};

const MIB: usize = 1024 * 1024;

/// What a run of the binary printed, and how it ended.
pub(crate) struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Insists on success and returns the standard output.
    pub(crate) fn ok(self) -> String {
        assert_eq!(
            self.code, 0,
            "exit {}\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        );
        self.stdout
    }

    /// Insists on failure and returns the standard error.
    pub(crate) fn failed(self) -> String {
        assert_ne!(self.code, 0, "succeeded unexpectedly:\n{}", self.stdout);
        self.stderr
    }

    /// The standard output of a success, as JSON.
    fn json(self) -> Value {
        let out = self.ok();
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"))
    }
}

/// Runs `berth ARGS` with a clean environment of its own but for `env`.
async fn berth_with_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_berth"));
    command.args(args);
    for key in [
        "BERTH_TOKEN",
        "BERTH_USER",
        "BERTH_REGISTRY",
        "BERTH_CONFIG",
        "BERTH_DATABASE_URL",
        "BERTH_STORAGE_URL",
        "BERTH_DATA_DIR",
        "BERTH_LOG_FORMAT",
    ] {
        command.env_remove(key);
    }
    command.env("BERTH_LOG", "warn");
    for (key, value) in env {
        command.env(key, value);
    }
    let out = command.output().await.expect("berth runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `berth ARGS --registry <the server>` without a token.
pub(crate) async fn berth(s: &TestServer, args: &[&str]) -> Run {
    berth_as(s, None, args).await
}

/// Runs `berth ARGS --registry <the server>` with `BERTH_TOKEN=token` when given.
async fn berth_as(s: &TestServer, token: Option<&str>, args: &[&str]) -> Run {
    let mut all = args.to_vec();
    all.extend(["--registry", &s.base]);
    let env: Vec<(&str, &str)> = token.map(|t| ("BERTH_TOKEN", t)).into_iter().collect();
    berth_with_env(&all, &env).await
}

/// The JSON of `GET /api/v1{path}` (the server's own client: anonymous or signed in).
async fn api(s: &TestServer, path: &str) -> Value {
    let resp = s.get(&format!("/api/v1{path}")).await;
    assert_eq!(resp.status(), StatusCode::OK, "GET {path}");
    json_body(resp).await
}

/// The line of `table` that starts with `first` (its first column), split on whitespace.
fn row<'a>(table: &'a str, first: &str) -> Vec<&'a str> {
    table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(first))
        .unwrap_or_else(|| panic!("no row {first:?} in:\n{table}"))
        .split_whitespace()
        .collect()
}

/// Column headers of a table (its first line).
fn headers(table: &str) -> &str {
    table.lines().next().expect("a header line")
}

/// `repo ls`, `show`, `create` and `rm`: a table with sizes in MiB, the commands lines, and
/// `--json` equal to the API's answer.
#[tokio::test]
async fn repo_commands_print_tables_and_the_apis_json() {
    let s = TestServer::start().await;
    let layer = random_bytes(2 * MIB);
    s.push_image("team/app", "v1", &[&layer]).await;

    let table = berth(&s, &["repo", "ls"]).await.ok();
    for header in [
        "NAME",
        "VISIBILITY",
        "IMAGES",
        "TAGS",
        "SIZE",
        "PULLS",
        "LAST PUSH",
    ] {
        assert!(headers(&table).contains(header), "{header} in\n{table}");
    }
    let app = row(&table, "team/app");
    let visibility = api(&s, "/repositories/team/app").await["visibility"].clone();
    assert_eq!(app[1], visibility.as_str().unwrap(), "{table}");
    assert_eq!(app[2..=3], ["1", "1"], "{table}");
    assert_eq!(app[4..=5], ["2.0", "MiB"], "{table}");
    // The last push as a UTC date and minute.
    assert!(
        app[7].len() == 10 && app[8].len() == 5 && app[8].contains(':'),
        "{table}"
    );

    let listed = berth(&s, &["repo", "ls", "--json"]).await.json();
    assert_eq!(listed, api(&s, "/repositories?limit=100").await);

    let shown = berth(&s, &["repo", "show", "team/app"]).await.ok();
    assert!(
        shown.contains("size") && shown.contains("2.0 MiB"),
        "{shown}"
    );
    let host = s.base.trim_start_matches("http://");
    assert!(
        shown.contains(&format!("docker pull {host}/team/app:latest")),
        "{shown}"
    );
    assert!(
        shown.contains(&format!(
            "podman push --tls-verify=false {host}/team/app:latest"
        )),
        "{shown}"
    );
    let shown = berth(&s, &["repo", "show", "team/app", "--json"])
        .await
        .json();
    assert_eq!(shown, api(&s, "/repositories/team/app").await);

    let created = berth(
        &s,
        &[
            "repo",
            "create",
            "team/new",
            "--description",
            "made by hand",
            "--visibility",
            "private",
        ],
    )
    .await
    .ok();
    assert_eq!(created.trim(), "created team/new (private)");
    let new = api(&s, "/repositories/team/new").await;
    assert_eq!(new["description"], "made by hand");
    assert_eq!(new["visibility"], "private");

    let again = berth(&s, &["repo", "create", "team/new"]).await.failed();
    assert!(
        again.contains("(CONFLICT)") || again.contains("exists"),
        "{again}"
    );

    assert_eq!(
        berth(&s, &["repo", "rm", "team/new"]).await.ok().trim(),
        "deleted team/new"
    );
    let gone = s.get("/api/v1/repositories/team/new").await;
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
}

/// Listings follow the server's `next` cursors up to `--limit` rows, in the server's order,
/// and say when there is more.
#[tokio::test]
async fn listings_follow_pages_up_to_the_limit() {
    let s = TestServer::start().await;
    for name in ["a1", "a2", "a3", "a4", "a5"] {
        s.push_image(name, "v1", &[b"same layer"]).await;
    }
    let all = berth(&s, &["repo", "ls", "--page-size", "2", "--json"])
        .await
        .json();
    assert_eq!(all, api(&s, "/repositories").await);
    assert_eq!(all["items"].as_array().unwrap().len(), 5);

    let three = berth(
        &s,
        &["repo", "ls", "--page-size", "2", "--limit", "3", "--json"],
    )
    .await
    .json();
    let names: Vec<&str> = three["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a1", "a2", "a3"]);
    assert_eq!(three["next"], "a3");

    let table = berth(&s, &["repo", "ls", "--page-size", "2", "--limit", "3"])
        .await
        .ok();
    assert_eq!(table.lines().count(), 1 + 3 + 1, "{table}");
    assert!(table.ends_with("(more: raise --limit)\n"), "{table}");

    let zero = berth(&s, &["repo", "ls", "--limit", "0"]).await.failed();
    assert!(zero.contains("--limit"), "{zero}");
}

/// `image ls` with its filters and `image show`; `tag ls`, `tag add` (also `--from` another
/// repository) and `tag rm`, which removes exactly the tag named.
#[tokio::test]
async fn image_and_tag_commands() {
    let s = TestServer::start().await;
    let layer = random_bytes(3 * MIB);
    let (amd64, _) = s.push_image("team/app", "v1.0", &[&layer]).await;
    let arm_config = image_config("linux", "arm64", Some("v8"));
    let (arm64, _) = s
        .push_image_with("team/app", "arm", &arm_config, &[b"small arm layer"])
        .await;

    let table = berth(&s, &["image", "ls", "team/app"]).await.ok();
    for header in [
        "DIGEST", "TAGS", "PLATFORM", "SIZE", "PUSHED", "PULLS", "STATUS",
    ] {
        assert!(headers(&table).contains(header), "{header} in\n{table}");
    }
    let short = &amd64[..7 + 12];
    let amd = row(&table, short);
    assert_eq!(amd[1..=4], ["v1.0", "linux/amd64", "3.0", "MiB"], "{table}");
    assert_eq!(amd.last(), Some(&"active"), "{table}");

    let arm_only = berth(
        &s,
        &["image", "ls", "team/app", "--arch", "arm64", "--json"],
    )
    .await
    .json();
    assert_eq!(
        arm_only,
        api(
            &s,
            "/repositories/team/app/-/images?architecture=arm64&limit=100"
        )
        .await
    );
    assert_eq!(arm_only["items"][0]["digest"], arm64.as_str());
    assert_eq!(arm_only["items"].as_array().unwrap().len(), 1);

    let by_tag = berth(
        &s,
        &["image", "ls", "team/app", "--tag", "arm", "--no-trunc"],
    )
    .await
    .ok();
    assert!(
        by_tag.contains(&arm64) && !by_tag.contains(&amd64),
        "{by_tag}"
    );

    let bad = berth(&s, &["image", "ls", "team/app", "--status", "sleepy"])
        .await
        .failed();
    assert!(
        bad.contains("status: unknown value \"sleepy\"") && bad.contains("(BAD_REQUEST)"),
        "{bad}"
    );

    let detail = berth(&s, &["image", "show", "team/app", &amd64]).await.ok();
    assert!(detail.contains("linux/amd64"), "{detail}");
    let layer_digest = crate::common::sha256(&layer);
    let layer_row = row(&detail, &layer_digest);
    assert_eq!(layer_row[layer_row.len() - 2..], ["3.0", "MiB"], "{detail}");
    let detail = berth(&s, &["image", "show", "team/app", &amd64, "--json"])
        .await
        .json();
    assert_eq!(
        detail,
        api(&s, &format!("/repositories/team/app/-/images/{amd64}")).await
    );

    let tags = berth(&s, &["tag", "ls", "team/app"]).await.ok();
    assert!(headers(&tags).starts_with("TAG"), "{tags}");
    assert_eq!(row(&tags, "v1.0")[1], short, "{tags}");

    let added = berth(&s, &["tag", "add", "team/app", "v1x0", &amd64])
        .await
        .ok();
    assert_eq!(added.trim(), format!("team/app:v1x0 -> {amd64}"));
    berth(
        &s,
        &[
            "tag",
            "add",
            "other/app",
            "copied",
            &amd64,
            "--from",
            "team/app",
        ],
    )
    .await
    .ok();
    let copied = api(&s, "/repositories/other/app/-/tags").await;
    assert_eq!(copied["items"][0]["name"], "copied");
    assert_eq!(copied["items"][0]["digest"], amd64.as_str());

    // `v1.0` is a pattern only once escaped: `v1x0` stays.
    let removed = berth(&s, &["tag", "rm", "team/app", "v1.0"]).await.ok();
    assert_eq!(removed.trim(), "removed team/app:v1.0");
    let left = berth(&s, &["tag", "ls", "team/app", "--json"]).await.json();
    assert_eq!(
        left,
        api(&s, "/repositories/team/app/-/tags?limit=100").await
    );
    let names: Vec<&str> = left["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["arm", "v1x0"]);
    let missing = berth(&s, &["tag", "rm", "team/app", "v1.0"]).await.failed();
    assert!(missing.contains("team/app has no tag v1.0"), "{missing}");

    let bad_digest = berth(&s, &["tag", "add", "team/app", "x", "sha256:nothex"])
        .await
        .failed();
    assert!(
        bad_digest.contains("digest \"sha256:nothex\""),
        "{bad_digest}"
    );
}

/// Stops the server gracefully (which flushes the counts held in memory) and serves the same
/// directory again with the same configuration and clock.
async fn restarted(s: TestServer) -> TestServer {
    let config = s.config.clone();
    let dir = s.stop().await;
    TestServer::start_in(dir, move |c| *c = config).await
}

/// `stats` (totals), `stats --popular` (also by tag) and `stats --trends` with its bar chart;
/// `--json` is the API's answer; a flag of the other view is refused.
#[tokio::test]
async fn stats_commands() {
    let s = TestServer::start().await;
    // Noon of the next day: the pulls below cannot straddle a midnight.
    let now = s.clock.now();
    s.clock.advance(86_400 - now.rem_euclid(86_400) + 43_200);
    let layer = random_bytes(MIB + MIB / 2);
    s.push_image("team/app", "v1", &[&layer]).await;
    s.push_image("team/other", "v1", &[b"other layer"]).await;
    for _ in 0..3 {
        let pulled = s.get("/v2/team/app/manifests/v1").await;
        assert_eq!(pulled.status(), StatusCode::OK);
    }
    let s = restarted(s).await;

    let totals = berth(&s, &["stats"]).await.ok();
    assert_eq!(row(&totals, "repositories")[1], "2", "{totals}");
    assert_eq!(row(&totals, "images")[1], "2", "{totals}");
    assert_eq!(row(&totals, "pulls")[1..], ["3", "3", "3"], "{totals}");
    assert_eq!(row(&totals, "pushes")[1..], ["2", "2", "2"], "{totals}");
    assert!(row(&totals, "stored")[1..] == ["1.5", "MiB"], "{totals}");
    assert_eq!(
        berth(&s, &["stats", "--json"]).await.json(),
        api(&s, "/stats").await
    );

    let popular = berth(&s, &["stats", "--popular"]).await.ok();
    assert!(
        popular.starts_with("most pulled over 7d (by repository)"),
        "{popular}"
    );
    assert_eq!(row(&popular, "1")[1..], ["team/app", "3"], "{popular}");
    let by_tag = berth(
        &s,
        &["stats", "--popular", "--by", "tag", "--window", "30d"],
    )
    .await
    .ok();
    assert!(headers(&by_tag[by_tag.find('\n').unwrap() + 1..]).contains("TAG"));
    assert_eq!(row(&by_tag, "1")[1..], ["team/app", "v1", "3"], "{by_tag}");
    assert_eq!(
        berth(&s, &["stats", "--popular", "--limit", "1", "--json"])
            .await
            .json(),
        api(&s, "/stats/popular?limit=1").await
    );
    let bad = berth(&s, &["stats", "--popular", "--window", "2y"])
        .await
        .failed();
    assert!(
        bad.contains("window") && bad.contains("(BAD_REQUEST)"),
        "{bad}"
    );

    let trend_json = berth(
        &s,
        &["stats", "--trends", "--repository", "team/app", "--json"],
    )
    .await
    .json();
    let today = trend_json["to"].as_str().unwrap().to_owned();
    let from = trend_json["from"].as_str().unwrap().to_owned();
    assert_eq!(
        trend_json,
        api(&s, "/stats/trends?repository=team/app").await
    );
    let trend = berth(&s, &["stats", "--trends", "--repository", "team/app"])
        .await
        .ok();
    let mut lines = trend.lines();
    assert_eq!(
        lines.next(),
        Some(
            format!("pulls per day, {from} to {today}, team/app: 3 in all, at most 3 a day")
                .as_str()
        )
    );
    // Thirty quiet days but the last.
    assert_eq!(lines.next(), Some(format!("{}█", "▁".repeat(29)).as_str()));
    assert_eq!(row(&trend, &today)[1..=3], ["3", "0", "1"], "{trend}");

    let mixed = berth_with_env(&["stats", "--window", "7d"], &[])
        .await
        .failed();
    assert!(mixed.contains("--popular"), "{mixed}");
}

/// `policy ls`, `show` and `apply` (with `--dry-run` first): what the policy would remove,
/// then what it removed.
#[tokio::test]
async fn policy_commands() {
    let s = TestServer::start().await;
    for tag in ["keep-me", "old-1", "old-2"] {
        s.push_image("team/app", tag, &[tag.as_bytes()]).await;
    }
    let saved = s
        .req(Method::PUT, "/api/v1/policies/olds")
        .json(&json!({ "repository": "team/app", "name_regex": "old-.*", "cadence": "weekly" }))
        .send()
        .await
        .expect("PUT policy");
    assert_eq!(saved.status(), StatusCode::OK);

    let listed = berth(&s, &["policy", "ls"]).await.ok();
    assert!(headers(&listed).starts_with("NAME"), "{listed}");
    assert_eq!(
        row(&listed, "olds")[1..=3],
        ["team/app", "no", "weekly"],
        "{listed}"
    );
    assert_eq!(
        berth(&s, &["policy", "ls", "--json"]).await.json(),
        api(&s, "/policies").await
    );

    let shown = berth(&s, &["policy", "show", "olds"]).await.ok();
    assert_eq!(row(&shown, "name_regex")[1], "old-.*", "{shown}");
    assert_eq!(row(&shown, "repositories")[1], "team/app", "{shown}");

    let preview = berth(&s, &["policy", "apply", "olds", "--dry-run"])
        .await
        .ok();
    assert!(preview.contains("(dry run): would remove 2"), "{preview}");
    assert_eq!(row(&preview, "team/app")[1], "old-1", "{preview}");
    let tags = api(&s, "/repositories/team/app/-/tags").await;
    assert_eq!(tags["items"].as_array().unwrap().len(), 3);

    let applied = berth(&s, &["policy", "apply", "olds"]).await.ok();
    assert!(applied.contains("olds: removed 2"), "{applied}");
    let tags = api(&s, "/repositories/team/app/-/tags").await;
    assert_eq!(tags["items"][0]["name"], "keep-me");
    assert_eq!(tags["items"].as_array().unwrap().len(), 1);

    let missing = berth(&s, &["policy", "show", "nope"]).await.failed();
    assert!(
        missing.contains("no policy named nope (NOT_FOUND)"),
        "{missing}"
    );
}

/// `trust put|ls|show|rm` with key files, `tag ls` and `image ls` with a SIGNED column
/// (who signed, or why a signature did not verify), and `image signatures`.
#[tokio::test]
async fn trust_commands_and_signed_status() {
    let s = TestServer::start().await;
    let repo = "team/app";
    let (signed, _) = s.push_image(repo, "v1", &[b"signed".as_slice()]).await;
    s.push_image(repo, "v2", &[b"unsigned".as_slice()]).await;
    let mut plan = crate::signatures::base_plan(s.clock.now());
    let payload = crate::signatures::simple_signing(repo, &signed);
    let at = plan.sign("p256", "ecdsa-der", "sha256", &payload, false);
    let made = plan.make();
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("p256.pub");
    std::fs::write(&key_file, &made.keys["p256"]).unwrap();
    let key_arg = key_file.to_str().unwrap();

    let put = berth(
        &s,
        &[
            "trust",
            "put",
            "team",
            "--scope",
            "team",
            "--mode",
            "audit",
            "--cosign-key",
            key_arg,
        ],
    )
    .await
    .ok();
    assert_eq!(
        put.trim(),
        "trust policy team: audit on team with 1 cosign key(s)"
    );
    crate::signatures::push_cosign_tag(&s, repo, &signed, &payload, &made.signatures[at]).await;

    let listed = berth(&s, &["trust", "ls"]).await.ok();
    assert_eq!(
        row(&listed, "team")[1..=4],
        ["team", "audit", "1", "no"],
        "{listed}"
    );
    assert_eq!(
        berth(&s, &["trust", "ls", "--json"]).await.json(),
        api(&s, "/trust/policies").await
    );
    let signatures = api(
        &s,
        &format!("/repositories/{repo}/-/images/{signed}/signatures"),
    )
    .await;
    let identity = signatures["items"][0]["identity"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = identity.strip_prefix("key ").unwrap();
    let short_key = format!("key {}", &key[..key.find(':').unwrap() + 13]);
    let shown = berth(&s, &["trust", "show", "team"]).await.ok();
    assert_eq!(row(&shown, "mode")[1], "audit", "{shown}");
    assert!(shown.contains(&short_key[4..]), "{shown}");

    let tags = berth(&s, &["tag", "ls", repo]).await.ok();
    assert!(headers(&tags).trim_end().ends_with("SIGNED"), "{tags}");
    assert!(
        line(&tags, "v1").ends_with(&format!("yes ({short_key})")),
        "{tags}"
    );
    assert_eq!(row(&tags, "v2").last(), Some(&"-"), "{tags}");
    assert!(!line(&tags, "v2").contains("yes"), "{tags}");
    let images = berth(&s, &["image", "ls", repo]).await.ok();
    let short_signed = &signed[..7 + 12];
    assert!(
        line(&images, short_signed).contains(&format!("yes ({short_key})  active")),
        "{images}"
    );
    let shown = berth(&s, &["image", "show", repo, &signed]).await.ok();
    assert!(
        line(&shown, "signed").ends_with(&format!("yes ({short_key})")),
        "{shown}"
    );
    let listed = berth(&s, &["image", "signatures", repo, &signed])
        .await
        .ok();
    assert_eq!(
        row(&listed, "cosign")[1..=2],
        ["cosign-tag", "yes"],
        "{listed}"
    );
    assert!(line(&listed, "cosign").contains(&identity), "{listed}");

    // Another key: the SIGNED column says why at once.
    let other_key = dir.path().join("p384.pub");
    std::fs::write(&other_key, &made.keys["p384"]).unwrap();
    let other_arg = other_key.to_str().unwrap();
    berth(
        &s,
        &[
            "trust",
            "put",
            "team",
            "--scope",
            "team",
            "--mode",
            "audit",
            "--cosign-key",
            other_arg,
        ],
    )
    .await
    .ok();
    let tags = berth(&s, &["tag", "ls", repo]).await.ok();
    assert!(
        line(&tags, "v1").ends_with(
            "no: none of the 1 cosign key(s) of trust policy team verifies the signature"
        ),
        "{tags}"
    );

    // Bad input: a mode the server refuses, a key file that is not there.
    let refused = berth(
        &s,
        &[
            "trust",
            "put",
            "team",
            "--scope",
            "team",
            "--mode",
            "sometimes",
            "--cosign-key",
            key_arg,
        ],
    )
    .await
    .failed();
    assert!(
        refused.contains("mode: \"sometimes\" is not one of enforce, audit, off"),
        "{refused}"
    );
    let missing = dir.path().join("missing.pub");
    let unread = berth(
        &s,
        &[
            "trust",
            "put",
            "team",
            "--scope",
            "team",
            "--mode",
            "enforce",
            "--cosign-key",
            missing.to_str().unwrap(),
        ],
    )
    .await
    .failed();
    assert!(
        unread.contains("cosign key") && unread.contains("missing.pub"),
        "{unread}"
    );
    assert_eq!(api(&s, "/trust/policies/team").await["mode"], "audit");

    let removed = berth(&s, &["trust", "rm", "team"]).await.ok();
    assert_eq!(removed.trim(), "trust policy team deleted");
    let gone = berth(&s, &["trust", "show", "team"]).await.failed();
    assert!(gone.contains("NOT_FOUND"), "{gone}");
}

/// The line of `table` whose first column is `first`, without trailing blanks.
fn line(table: &str, first: &str) -> String {
    table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(first))
        .unwrap_or_else(|| panic!("no row {first:?} in:\n{table}"))
        .trim_end()
        .to_owned()
}

/// With auth on: a personal token as `--user` and `BERTH_TOKEN`, or as `NAME:TOKEN` (also in
/// `--token-file`), and a token from `/token` as Bearer; without one a refusal says to set
/// it; the server's refusals are printed with their code.
#[tokio::test]
async fn tokens_and_the_servers_refusals() {
    let s = start_auth(|_| {}).await;
    s.create_user("alice").await;
    s.set_role("team", "alice", "owner").await;
    let (login, secret, _) = s
        .personal_token("alice", &["read_registry", "write_registry"])
        .await;

    let anonymous = berth(&s, &["repo", "create", "team/app"]).await.failed();
    assert!(
        anonymous.contains("(UNAUTHORIZED)") && anonymous.contains("BERTH_TOKEN"),
        "{anonymous}"
    );

    let created = berth_as(
        &s,
        Some(&secret),
        &["repo", "create", "team/app", "--user", &login],
    )
    .await
    .ok();
    assert_eq!(created.trim(), "created team/app (private)");

    let pair = format!("{login}:{secret}");
    let listed = berth_as(&s, Some(&pair), &["repo", "ls", "--json"])
        .await
        .json();
    assert_eq!(listed["items"][0]["name"], "team/app");
    // Anonymous callers do not see a private repository.
    let anonymous = berth(&s, &["repo", "ls", "--json"]).await.json();
    assert_eq!(anonymous["items"], json!([]));

    let file = tempfile::NamedTempFile::new().expect("token file");
    std::fs::write(file.path(), format!("{pair}\n")).expect("write token");
    let path = file.path().to_str().unwrap();
    let shown = berth(&s, &["repo", "show", "team/app", "--token-file", path])
        .await
        .ok();
    assert_eq!(row(&shown, "visibility")[1], "private", "{shown}");

    let no_user = berth_as(&s, Some(&secret), &["repo", "ls"]).await.failed();
    assert!(no_user.contains("BERTH_USER"), "{no_user}");

    let missing = berth_as(&s, Some(&pair), &["repo", "show", "team/none"])
        .await
        .failed();
    assert!(missing.ends_with("(NAME_UNKNOWN)\n"), "{missing}");

    let wrong = berth_as(&s, Some(&format!("{login}:berth_wrong")), &["repo", "ls"])
        .await
        .failed();
    assert!(wrong.contains("(UNAUTHORIZED)"), "{wrong}");

    let not_admin = berth_as(&s, Some(&pair), &["policy", "ls"]).await.failed();
    assert!(not_admin.contains("(DENIED)"), "{not_admin}");
    let admin = format!("{ADMIN}:{ADMIN_PASSWORD}");
    let policies = berth_as(&s, Some(&admin), &["policy", "ls", "--json"])
        .await
        .json();
    assert_eq!(policies["items"], json!([]));

    // A registry access token from `/token` goes as Bearer.
    let (status, issued) = s.token(Some((ADMIN, ADMIN_PASSWORD)), &[]).await;
    assert_eq!(status, StatusCode::OK);
    let bearer = issued["token"].as_str().expect("token");
    let policies = berth_as(&s, Some(bearer), &["policy", "ls", "--json"])
        .await
        .json();
    assert_eq!(policies["items"], json!([]));
}

/// A `--registry` that is not an http(s) URL, and one where nothing listens.
#[tokio::test]
async fn bad_and_unreachable_registries() {
    let not_url = berth_with_env(&["repo", "ls", "--registry", "not a url"], &[])
        .await
        .failed();
    assert!(
        not_url.contains("--registry \"not a url\" is not a URL"),
        "{not_url}"
    );
    let ftp = berth_with_env(&["repo", "ls", "--registry", "ftp://host"], &[])
        .await
        .failed();
    assert!(ftp.contains("http://HOST[:PORT]"), "{ftp}");

    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let refused = berth_with_env(&["stats"], &[("BERTH_REGISTRY", &url)])
        .await
        .failed();
    assert!(
        refused.contains(&format!("cannot connect to {url}")),
        "{refused}"
    );
}

/// Each remote command's help shows its own flags and the connection's, none of the server's;
/// the offline ones show the index's, not the listening ones.
#[tokio::test]
async fn remote_help_lists_only_their_flags() {
    for (command, own) in [
        (&["repo", "ls", "--help"][..], "--visibility"),
        (&["image", "ls", "--help"][..], "--arch"),
        (&["tag", "add", "--help"][..], "--from"),
        (&["stats", "--help"][..], "--popular"),
        (&["policy", "apply", "--help"][..], "--dry-run"),
    ] {
        let help = berth_with_env(command, &[]).await.ok();
        assert!(help.contains(own), "{command:?}: {help}");
        assert!(help.contains("--registry <URL>"), "{command:?}: {help}");
        assert!(help.contains("--json"), "{command:?}: {help}");
        for server_flag in ["--data-dir", "--config", "--listen", "--tls-cert"] {
            assert!(
                !help.contains(server_flag),
                "{command:?} lists {server_flag}"
            );
        }
    }
    // The offline commands take the index's flags, not the listening ones.
    let estimate = berth_with_env(&["gc", "estimate", "--help"], &[])
        .await
        .ok();
    assert!(estimate.contains("--grace-secs"), "{estimate}");
    for offline in [
        &["gc", "estimate", "--help"][..],
        &["token", "create", "--help"][..],
    ] {
        let help = berth_with_env(offline, &[]).await.ok();
        assert!(
            help.contains("--data-dir") && help.contains("--config"),
            "{help}"
        );
        for serve_flag in ["--listen", "--tls-cert", "--allow-open-network"] {
            assert!(!help.contains(serve_flag), "{offline:?} lists {serve_flag}");
        }
    }
}

/// The offline `berth gc estimate --grace-secs 0` counts what a delete just freed (the
/// configured grace period hides it; a negative, non-numeric or too large grace is refused),
/// and `gc history` lists the run that freed it, with sizes and dates.
#[tokio::test]
async fn offline_gc_estimate_and_history_tables() {
    let s = TestServer::start().await;
    let layer = random_bytes(2 * MIB);
    let (digest, _) = s.push_image("team/app", "v1", &[&layer]).await;
    let deleted = s
        .delete(&format!("/api/v1/repositories/team/app/-/images/{digest}"))
        .await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);

    let (database_url, storage_url) = backends(&s.data_dir).await;
    let data_dir = s.data_dir.to_str().unwrap().to_owned();
    let mut env = vec![];
    if let Some(url) = &database_url {
        env.push(("BERTH_DATABASE_URL", url.as_str()));
    }
    if let Some(url) = &storage_url {
        env.push(("BERTH_STORAGE_URL", url.as_str()));
    }
    let offline = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--data-dir", &data_dir]);
        all.iter().map(|a| a.to_string()).collect::<Vec<_>>()
    };

    let args = offline(&["gc", "estimate"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let graced = berth_with_env(&args, &env).await.ok();
    assert!(headers(&graced).starts_with("REPOSITORY"), "{graced}");
    assert!(graced.contains("reclaimable now: 0 blobs, 0 B"), "{graced}");

    for bad in ["-1", "soon", "9223372036854775808"] {
        let flag = format!("--grace-secs={bad}");
        let args = offline(&["gc", "estimate", &flag]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let refused = berth_with_env(&args, &env).await.failed();
        assert!(refused.contains("--grace-secs"), "{bad}: {refused}");
    }

    let args = offline(&["gc", "estimate", "--grace-secs", "0"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let now = berth_with_env(&args, &env).await.ok();
    assert_eq!(row(&now, "team/app")[2..], ["2.0", "MiB"], "{now}");
    assert!(
        now.contains("reclaimable now: 2 blobs, 2.0 MiB (grace period 0 s)"),
        "{now}"
    );

    let args = offline(&["gc", "--grace-secs", "0"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let collected = berth_with_env(&args, &env).await.ok();
    assert!(
        collected.contains("2 blobs") && collected.contains("2097242 bytes reclaimed"),
        "{collected}"
    );
    let args = offline(&["gc", "history"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let history = berth_with_env(&args, &env).await.ok();
    for header in ["RUN", "TRIGGER", "STARTED", "FREED"] {
        assert!(headers(&history).contains(header), "{header} in\n{history}");
    }
    let run = history
        .lines()
        .nth(1)
        .expect("a run")
        .split_whitespace()
        .collect::<Vec<_>>();
    assert_eq!(run[1..=3], ["cli", "no", "done"], "{history}");
    assert_eq!(
        run[run.len() - 3..run.len() - 1],
        ["2.0", "MiB"],
        "{history}"
    );
}

/// A server on HTTPS with a certificate of a CA the test makes: trusted with `--ca-cert`,
/// refused without it (naming the flag), accepted with `--insecure`.
#[tokio::test]
async fn https_with_a_private_ca() {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca.self_signed(&ca_key).expect("CA certificate");
    let key = rcgen::KeyPair::generate().expect("server key");
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .expect("server params")
        .signed_by(&key, &ca, &ca_key)
        .expect("server certificate");
    let pki = tempfile::tempdir().unwrap();
    let (ca_path, cert_path, key_path) = (
        pki.path().join("ca.pem"),
        pki.path().join("cert.pem"),
        pki.path().join("key.pem"),
    );
    std::fs::write(&ca_path, ca.pem()).unwrap();
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let s = TestServer::start_with(|cfg| {
        cfg.tls_cert = Some(cert_path);
        cfg.tls_key = Some(key_path);
    })
    .await;
    let https = s.base.replace("http://", "https://");
    let ca_file = ca_path.to_str().unwrap();

    let trusted = berth_with_env(
        &[
            "stats",
            "--json",
            "--registry",
            &https,
            "--ca-cert",
            ca_file,
        ],
        &[],
    )
    .await
    .json();
    assert_eq!(trusted["repositories"], 0);

    let refused = berth_with_env(&["stats", "--registry", &https], &[])
        .await
        .failed();
    assert!(
        refused.contains(&format!("cannot connect to {https}")) && refused.contains("--ca-cert"),
        "{refused}"
    );

    let insecure = berth_with_env(&["stats", "--registry", &https, "--insecure"], &[])
        .await
        .ok();
    assert_eq!(row(&insecure, "repositories")[1], "0", "{insecure}");
}

/// An index is one row listing its children's platforms; `image show` lists the children.
#[tokio::test]
async fn an_index_shows_its_platforms() {
    let s = TestServer::start().await;
    let mut descriptors = Vec::new();
    let mut children = Vec::new();
    for (architecture, variant) in [("amd64", None), ("arm64", Some("v8"))] {
        let config = image_config("linux", architecture, variant);
        let layer = format!("the {architecture} layer").into_bytes();
        let (digest, manifest) = s
            .push_image_with("team/multi", "", &config, &[layer.as_slice()])
            .await;
        let mut d = crate::common::descriptor(crate::common::OCI_MANIFEST, &manifest);
        d["platform"] = json!({ "os": "linux", "architecture": architecture });
        if let Some(v) = variant {
            d["platform"]["variant"] = json!(v);
        }
        descriptors.push(d);
        children.push(digest);
    }
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": crate::common::OCI_INDEX,
        "manifests": descriptors,
    }))
    .unwrap();
    let index_digest = s
        .put_manifest_ok("team/multi", "v1", crate::common::OCI_INDEX, &index)
        .await;

    let table = berth(&s, &["image", "ls", "team/multi"]).await.ok();
    assert_eq!(table.lines().count(), 2, "one image: the index\n{table}");
    let row_of_index = row(&table, &index_digest[..7 + 12]);
    assert_eq!(
        row_of_index[1..=2],
        ["v1", "linux/amd64,linux/arm64/v8"],
        "{table}"
    );

    let arm = berth(&s, &["image", "ls", "team/multi", "--arch", "arm64"])
        .await
        .ok();
    let child = row(&arm, &children[1][..7 + 12]);
    assert_eq!(child[2], "linux/arm64/v8", "{arm}");
    assert_eq!(
        child.last(),
        Some(&format!("{})", &index_digest[..7 + 12]).as_str()),
        "the child names its index\n{arm}"
    );

    let detail = berth(&s, &["image", "show", "team/multi", &index_digest])
        .await
        .ok();
    assert!(headers(&detail).starts_with("digest"), "{detail}");
    assert_eq!(row(&detail, &children[0])[1], "linux/amd64", "{detail}");
    assert_eq!(row(&detail, &children[1])[1], "linux/arm64/v8", "{detail}");
}

/// Every bad input is refused naming what is wrong: by the server (its message and code) or
/// before any request (names, tags, files).
#[tokio::test]
async fn bad_inputs_are_named() {
    let s = TestServer::start().await;
    for (args, expected) in [
        (
            &["repo", "ls", "--sort", "bogus"][..],
            "sort: unknown sort key \"bogus\"",
        ),
        (
            &["repo", "ls", "--visibility", "secret"][..],
            "visibility: unknown visibility \"secret\"",
        ),
        (
            &["stats", "--trends", "--from", "yesterday"][..],
            "from: \"yesterday\" is not a date",
        ),
        (
            &["stats", "--popular", "--by", "planet"][..],
            "by: unknown grouping \"planet\"",
        ),
        (&["stats", "--popular", "--limit", "0"][..], "limit: \"0\""),
        (
            &["tag", "ls", "team/app", "--sort", "size"][..],
            "sort: unknown value \"size\"",
        ),
    ] {
        let refused = berth(&s, args).await.failed();
        assert!(
            refused.contains(expected) && refused.contains("(BAD_REQUEST)"),
            "{args:?}: {refused}"
        );
    }

    let bad_name = berth(&s, &["repo", "show", "Team/App"]).await.failed();
    assert!(bad_name.contains("repository \"Team/App\""), "{bad_name}");
    let bad_tag = berth(&s, &["tag", "rm", "team/app", "bad!tag"])
        .await
        .failed();
    assert!(bad_tag.contains("tag \"bad!tag\""), "{bad_tag}");

    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let missing = missing.to_str().unwrap();
    let no_file = berth(&s, &["repo", "ls", "--token-file", missing])
        .await
        .failed();
    assert!(no_file.contains("--token-file: cannot read"), "{no_file}");
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let empty = empty.to_str().unwrap();
    let no_token = berth(&s, &["repo", "ls", "--token-file", empty])
        .await
        .failed();
    assert!(no_token.contains("holds no token"), "{no_token}");
    let not_pem = berth(&s, &["repo", "ls", "--ca-cert", empty])
        .await
        .failed();
    assert!(not_pem.contains("--ca-cert:"), "{not_pem}");
}

/// `replication put|ls|show|run|executions|rm`: a push rule with replicate_deletes, run, its
/// execution shown; a tag deleted on the source goes on the destination at the next run.
#[tokio::test]
async fn replication_commands() {
    let s = TestServer::start_with(|c| c.gc.poll_millis = 3_600_000).await;
    let other = TestServer::start_with(|c| c.gc.poll_millis = 3_600_000).await;
    s.push_image("apps/app", "v1", &[b"one".as_slice()]).await;
    s.push_image("apps/app", "v2", &[b"two".as_slice()]).await;
    let put = berth(
        &s,
        &[
            "replication",
            "put",
            "to-other",
            "--direction",
            "push",
            "--remote",
            &other.base,
            "--repositories",
            "apps/*",
            "--semver",
            ">=1",
            "--platform",
            "linux/amd64",
            "--platform",
            "linux/arm64/v8",
            "--replicate-deletes",
        ],
    )
    .await
    .ok();
    assert_eq!(
        put.trim(),
        format!("replication rule to-other: push {} (manual)", other.base)
    );
    let bad = berth(
        &s,
        &[
            "replication",
            "put",
            "bad",
            "--direction",
            "push",
            "--remote",
            "ftp://x",
        ],
    )
    .await
    .failed();
    assert!(bad.contains("remote.url"), "{bad}");
    let listed = berth(&s, &["replication", "ls"]).await.ok();
    assert_eq!(
        row(&listed, "to-other")[1..=3],
        ["push", other.base.as_str(), "manual"],
        "{listed}"
    );
    let shown = berth(&s, &["replication", "show", "to-other"]).await.ok();
    assert_eq!(row(&shown, "replicate")[2], "yes", "{shown}");
    assert_eq!(row(&shown, "semver")[1], ">=1", "{shown}");
    assert_eq!(
        row(&shown, "platforms")[1..],
        ["linux/amd64,", "linux/arm64/v8"],
        "{shown}"
    );
    assert_eq!(
        berth(&s, &["replication", "show", "to-other", "--json"])
            .await
            .json(),
        api(&s, "/replication/rules/to-other").await
    );

    let run = berth(&s, &["replication", "run", "to-other"]).await.ok();
    let id: i64 = run.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert_eq!(run.trim(), format!("execution {id} of to-other queued"));
    s.replica().await.run_due_jobs("cli").await.unwrap();
    let shown = berth(&s, &["replication", "executions", &id.to_string()])
        .await
        .ok();
    assert_eq!(row(&shown, "state")[1], "succeeded", "{shown}");
    assert_eq!(row(&shown, "manifests")[1], "2", "{shown}");
    let listed = berth(&s, &["replication", "executions", "--rule", "to-other"])
        .await
        .ok();
    assert_eq!(row(&listed, &id.to_string())[3], "succeeded", "{listed}");
    assert_eq!(
        other.get("/v2/apps/app/manifests/v2").await.status(),
        StatusCode::OK
    );

    // v2 deleted on the source: the next run deletes it on the destination.
    assert_eq!(
        s.delete("/v2/apps/app/manifests/v2").await.status(),
        StatusCode::ACCEPTED
    );
    berth(&s, &["replication", "run", "to-other"]).await.ok();
    s.replica().await.run_due_jobs("cli").await.unwrap();
    assert_eq!(
        other.get("/v2/apps/app/manifests/v2").await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        other.get("/v2/apps/app/manifests/v1").await.status(),
        StatusCode::OK
    );

    let removed = berth(&s, &["replication", "rm", "to-other"]).await.ok();
    assert_eq!(removed.trim(), "replication rule to-other deleted");
    let gone = berth(&s, &["replication", "show", "to-other"])
        .await
        .failed();
    assert!(
        gone.contains("no replication rule named to-other"),
        "{gone}"
    );
}

/// `webhook add|ls|deliveries|redeliver|rm`: a subscription made with a secret file, headers
/// and a pull sample rate, listed as a table and as the API's JSON; its delivery log with the
/// event, reference, actor and state; a redelivery reaching the receiver again with the same
/// event id; refusals of the server and of the command line named.
#[tokio::test]
async fn webhook_commands() {
    use crate::webhooks::Receiver;
    let s = TestServer::start_with(|c| {
        c.webhooks.allow_loopback = true;
        c.webhooks.poll_millis = 20;
    })
    .await;
    let r = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s3cret\n").unwrap();
    let url = r.url("/hook");
    let added = berth(
        &s,
        &[
            "webhook",
            "add",
            "--url",
            &url,
            "--scope",
            "team",
            "--event",
            "push,pull",
            "--event",
            "delete",
            "--format",
            "harbor",
            "--secret-file",
            secret.to_str().unwrap(),
            "--header",
            "X-Team=platform",
            "--pull-sample-rate",
            "0.5",
        ],
    )
    .await
    .ok();
    assert_eq!(
        added.trim(),
        format!("webhook 1: push, pull, delete of team to {url} as harbor, signed")
    );
    let shown = api(&s, "/webhooks/1").await;
    assert_eq!(shown["headers"], json!({"X-Team": "platform"}));
    assert_eq!(shown["pull_sample_rate"], 0.5);

    let listed = berth(&s, &["webhook", "ls"]).await.ok();
    assert!(headers(&listed).starts_with("ID"), "{listed}");
    assert_eq!(
        row(&listed, "1")[1..],
        [
            url.as_str(),
            "team",
            "push,pull,delete",
            "harbor",
            "1",
            "yes",
            "50%",
            "local",
            "administrator"
        ],
        "{listed}"
    );
    assert_eq!(
        berth(&s, &["webhook", "ls", "--json"]).await.json(),
        api(&s, "/webhooks").await
    );

    s.push_image("team/app", "v1", &[b"hooked".as_slice()])
        .await;
    let got = r.wait_for("/hook", 1).await;
    assert_eq!(got[0].json()["type"], "PUSH_ARTIFACT");
    assert_eq!(got[0].header("x-team"), Some("platform"));
    let log = crate::webhooks::log_until(&s, 1, |log| {
        log.first().is_some_and(|d| d["state"] == "delivered")
    })
    .await;
    let delivery = log[0]["id"].as_i64().unwrap().to_string();
    let table = berth(&s, &["webhook", "deliveries", "1"]).await.ok();
    assert!(headers(&table).starts_with("ID"), "{table}");
    let line = row(&table, &delivery);
    assert_eq!(line[1..4], ["push", "team/app", "v1"], "{table}");
    assert!(
        table.contains("local administrator") && line.contains(&"delivered"),
        "{table}"
    );
    assert_eq!(
        berth(&s, &["webhook", "deliveries", "1", "--json"])
            .await
            .json(),
        api(&s, "/webhooks/1/deliveries?limit=50").await
    );
    let dead = berth(&s, &["webhook", "deliveries", "1", "--state", "dead"])
        .await
        .ok();
    assert_eq!(dead.lines().count(), 1, "only the header: {dead}");

    let again = berth(&s, &["webhook", "redeliver", "1", &delivery])
        .await
        .ok();
    assert!(
        again.starts_with(&format!(
            "delivery {delivery} of webhook 1 queued again as delivery "
        )),
        "{again}"
    );
    let got = r.wait_for("/hook", 2).await;
    assert_eq!(
        got[1].header("berth-event-id"),
        got[0].header("berth-event-id")
    );

    let refused = berth(
        &s,
        &[
            "webhook", "add", "--url", &url, "--scope", "team", "--event", "explode",
        ],
    )
    .await
    .failed();
    assert!(
        refused.contains("unknown event \"explode\"") && refused.contains("(BAD_REQUEST)"),
        "{refused}"
    );
    let bad_header = berth(
        &s,
        &[
            "webhook", "add", "--url", &url, "--scope", "team", "--event", "push", "--header",
            "nonsense",
        ],
    )
    .await
    .failed();
    assert!(bad_header.contains("give NAME=VALUE"), "{bad_header}");
    let unbatchable = berth(
        &s,
        &[
            "webhook", "add", "--url", &url, "--scope", "team", "--event", "push", "--format",
            "harbor", "--batch", "5",
        ],
    )
    .await
    .failed();
    assert!(
        unbatchable.contains("harbor sends one event per request"),
        "{unbatchable}"
    );
    let batched = berth(
        &s,
        &[
            "webhook", "add", "--url", &url, "--scope", "team", "--event", "push", "--batch", "20",
        ],
    )
    .await
    .ok();
    assert_eq!(
        batched.trim(),
        format!("webhook 2: push of team to {url} as distribution, up to 20 events a request")
    );
    assert_eq!(api(&s, "/webhooks/2").await["batch"], 20);
    berth(&s, &["webhook", "rm", "2"]).await.ok();
    let missing = berth(&s, &["webhook", "rm", "7"]).await.failed();
    assert!(missing.contains("(NOT_FOUND)"), "{missing}");

    assert_eq!(
        berth(&s, &["webhook", "rm", "1"]).await.ok().trim(),
        "webhook 1 deleted"
    );
    let empty = berth(&s, &["webhook", "ls"]).await.ok();
    assert_eq!(empty.lines().count(), 1, "{empty}");
}

/// `berth proxy put|ls|rm`: a rule of the API from a JSON file, listed after the
/// configuration file's with its source, refused with the server's reason when it clashes,
/// and removed; a file that is no JSON is refused before anything is sent.
#[tokio::test]
async fn proxy_commands() {
    let rules = {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.toml");
        std::fs::write(
            &path,
            "[[proxy]]\nprefix = \"hub\"\nupstreams = [{ url = \"http://127.0.0.1:9\" }]\n\
             hosts = [\"docker.io\"]\n",
        )
        .unwrap();
        berth::Config::load(Some(&path), Default::default())
            .unwrap()
            .proxy
    };
    let s = TestServer::start_with(|c| c.proxy = rules).await;
    let dir = tempfile::tempdir().unwrap();
    let rule = dir.path().join("quay.json");
    std::fs::write(
        &rule,
        json!({"upstreams": [{"url": "https://quay.example"}], "hosts": ["quay.io"], "tag_ttl": "5m"})
            .to_string(),
    )
    .unwrap();
    let out = berth(&s, &["proxy", "put", "quay", rule.to_str().unwrap()])
        .await
        .ok();
    assert!(out.contains("rule quay saved: 1 upstream(s)"), "{out}");
    let table = berth(&s, &["proxy", "ls"]).await.ok();
    assert_eq!(
        row(&table, "hub")[..5],
        ["hub", "config", "http://127.0.0.1:9", "docker.io", "600s"]
    );
    assert_eq!(
        row(&table, "quay")[..5],
        ["quay", "api", "https://quay.example", "quay.io", "300s"]
    );
    let listed = berth(&s, &["proxy", "ls", "--json"]).await.json();
    assert_eq!(listed, api(&s, "/proxy/rules").await);

    let clash = dir.path().join("clash.json");
    std::fs::write(
        &clash,
        json!({"upstreams": [{"url": "https://other.example"}], "hosts": ["docker.io"]})
            .to_string(),
    )
    .unwrap();
    let err = berth(&s, &["proxy", "put", "other", clash.to_str().unwrap()])
        .await
        .failed();
    assert!(err.contains("routed by both"), "{err}");
    let err = berth(&s, &["proxy", "rm", "hub"]).await.failed();
    assert!(err.contains("configuration file"), "{err}");
    let not_json = dir.path().join("rule.toml");
    std::fs::write(&not_json, "upstreams = []").unwrap();
    let err = berth(&s, &["proxy", "put", "other", not_json.to_str().unwrap()])
        .await
        .failed();
    assert!(err.contains("is not a JSON rule"), "{err}");

    let out = berth(&s, &["proxy", "rm", "quay"]).await.ok();
    assert!(out.contains("rule quay deleted"), "{out}");
    let prefixes: Vec<String> = api(&s, "/proxy/rules")
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["prefix"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(prefixes, ["hub"]);
}
