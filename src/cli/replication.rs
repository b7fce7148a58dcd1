//! `berth replication ls|show|put|rm|run|executions` against a server's
//! `/api/v1/replication`: rules that copy images to or from another registry, their runs,
//! and what each run did.

use clap::Subcommand;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    output::{Table, date, maybe_date, print_fields, size},
    remote::{Remote, RemoteArgs, print_raw, segment},
};

// Parsed once per process: the size of `Put` costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub(super) enum ReplicationCommand {
    /// List every replication rule.
    Ls,
    /// Show a rule.
    Show {
        /// The rule's name.
        name: String,
    },
    /// Create or replace a rule (administrators).
    Put {
        /// The rule's name.
        name: String,
        /// push (this registry to the remote) or pull (the remote to this registry).
        #[arg(long)]
        direction: String,
        /// The remote registry's base URL (http:// or https://).
        #[arg(long = "remote")]
        remote_url: String,
        /// The user name on the remote.
        #[arg(long)]
        username: Option<String>,
        /// The environment variable (of the server) holding the remote's password or token.
        #[arg(long)]
        password_env: Option<String>,
        /// A file (on the server) holding the remote's password or token.
        #[arg(long)]
        password_file: Option<String>,
        /// The environment variable (of the server) holding a static access token, sent as
        /// `Authorization: Bearer` (instead of a user name and password).
        #[arg(long)]
        token_env: Option<String>,
        /// A file (on the server) holding such a token.
        #[arg(long)]
        token_file: Option<String>,
        /// A glob over source repository names (`*` within a segment, `**` across).
        #[arg(long)]
        repositories: Option<String>,
        /// A regex source tags must match.
        #[arg(long)]
        tags: Option<String>,
        /// A semver range source tags must satisfy (`>=1.2, <2`); other tags are left out.
        #[arg(long)]
        semver: Option<String>,
        /// A platform indexes are narrowed to (`linux/amd64`, `linux/arm64/v8`); repeat it.
        #[arg(long = "platform")]
        platforms: Vec<String>,
        /// The namespace the copies go under on the destination.
        #[arg(long)]
        namespace: Option<String>,
        /// A regex whose first match in each source repository's name is replaced by
        /// --rename-to (`^library/` with an empty --rename-to drops that prefix).
        #[arg(long, requires = "rename_to")]
        rename_pattern: Option<String>,
        /// What replaces --rename-pattern's match (`$1` for its first group).
        #[arg(long, requires = "rename_pattern")]
        rename_to: Option<String>,
        /// manual, on_push or cron.
        #[arg(long, default_value = "manual")]
        trigger: String,
        /// The cron expression of a cron rule (UTC; five or six fields).
        #[arg(long)]
        schedule: Option<String>,
        /// Leave destination tags that point elsewhere as they are.
        #[arg(long)]
        no_override: bool,
        /// Delete destination tags the source no longer has.
        #[arg(long)]
        replicate_deletes: bool,
        /// Blob bytes per second at most.
        #[arg(long)]
        bandwidth_limit: Option<u64>,
    },
    /// Delete a rule (its executions stay).
    Rm {
        /// The rule's name.
        name: String,
    },
    /// Queue a run of a rule; prints the execution's id.
    Run {
        /// The rule's name.
        name: String,
    },
    /// List executions, newest first, or show one with its tasks and log.
    Executions {
        /// The execution to show.
        id: Option<i64>,
        /// Only the executions of this rule.
        #[arg(long)]
        rule: Option<String>,
        /// How many to list.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
}

#[derive(Deserialize)]
struct Rule {
    name: String,
    direction: String,
    remote: RemoteView,
    #[serde(default)]
    filter: Value,
    destination_namespace: Option<String>,
    #[serde(default)]
    rename: Option<Value>,
    trigger: String,
    schedule: Option<String>,
    override_tags: bool,
    replicate_deletes: bool,
    bandwidth_limit: Option<u64>,
    next_run_at: Option<i64>,
    updated_by: String,
    updated_at: i64,
}

#[derive(Deserialize)]
struct RemoteView {
    url: String,
    username: Option<String>,
}

#[derive(Deserialize)]
struct Rules {
    items: Vec<Rule>,
}

#[derive(Deserialize)]
struct Execution {
    id: i64,
    rule: String,
    trigger: String,
    state: String,
    created_at: i64,
    finished_at: Option<i64>,
    error: Option<String>,
    bytes_moved: i64,
    blobs_copied: i64,
    blobs_mounted: i64,
    blobs_skipped: i64,
    manifests_copied: i64,
    manifests_skipped: i64,
    failed: i64,
    #[serde(default)]
    tasks: Vec<Task>,
    #[serde(default)]
    log: Vec<String>,
}

#[derive(Deserialize)]
struct Task {
    source: String,
    destination: String,
    state: String,
    bytes: i64,
    message: String,
}

/// Runs a `berth replication` command against the server `args` names.
pub(super) async fn run(args: &RemoteArgs, command: ReplicationCommand) -> anyhow::Result<()> {
    let remote = Remote::new(args)?;
    match command {
        ReplicationCommand::Ls => {
            let text = remote.get_text("/replication/rules", &[]).await?;
            if args.json {
                print_raw(&text);
                return Ok(());
            }
            let rules: Rules = serde_json::from_str(&text)?;
            let mut table = Table::new(&["NAME", "DIRECTION", "REMOTE", "TRIGGER", "UPDATED"]);
            for r in rules.items {
                let trigger = match r.schedule {
                    Some(s) => format!("cron {s}"),
                    None => r.trigger,
                };
                table.row(vec![
                    r.name,
                    r.direction,
                    r.remote.url,
                    trigger,
                    date(r.updated_at),
                ]);
            }
            table.print();
        }
        ReplicationCommand::Show { name } => {
            let text = remote
                .get_text(&format!("/replication/rules/{}", segment(&name)), &[])
                .await?;
            if args.json {
                print_raw(&text);
                return Ok(());
            }
            let r: Rule = serde_json::from_str(&text)?;
            let filter = |key: &str, all: &str| {
                r.filter[key]
                    .as_str()
                    .map_or_else(|| all.to_owned(), str::to_owned)
            };
            print_fields(&[
                ("name", r.name.clone()),
                ("direction", r.direction.clone()),
                (
                    "remote",
                    match &r.remote.username {
                        Some(u) => format!("{} (as {u})", r.remote.url),
                        None => r.remote.url.clone(),
                    },
                ),
                ("repositories", filter("repositories", "** (all)")),
                ("tags", filter("tags", ".* (all)")),
                ("semver", filter("semver", "any (all)")),
                (
                    "platforms",
                    match r.filter["platforms"].as_array() {
                        Some(list) if !list.is_empty() => list
                            .iter()
                            .filter_map(|p| p.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                        _ => "all".to_owned(),
                    },
                ),
                ("destination", destination_of(&r)),
                (
                    "trigger",
                    match &r.schedule {
                        Some(s) => format!("cron {s} (next {})", maybe_date(r.next_run_at)),
                        None => r.trigger.clone(),
                    },
                ),
                ("override tags", yes_no(r.override_tags)),
                ("replicate deletes", yes_no(r.replicate_deletes)),
                (
                    "bandwidth",
                    r.bandwidth_limit.map_or_else(
                        || "unlimited".to_owned(),
                        |b| format!("{}/s", size(b as i64)),
                    ),
                ),
                (
                    "updated",
                    format!("{} by {}", date(r.updated_at), r.updated_by),
                ),
            ]);
        }
        ReplicationCommand::Put {
            name,
            direction,
            remote_url,
            username,
            password_env,
            password_file,
            token_env,
            token_file,
            repositories,
            tags,
            semver,
            platforms,
            namespace,
            rename_pattern,
            rename_to,
            trigger,
            schedule,
            no_override,
            replicate_deletes,
            bandwidth_limit,
        } => {
            let body = json!({
                "direction": direction,
                "remote": {
                    "url": remote_url,
                    "username": username,
                    "password_env": password_env,
                    "password_file": password_file,
                    "token_env": token_env,
                    "token_file": token_file,
                },
                "filter": {
                    "repositories": repositories, "tags": tags, "semver": semver,
                    "platforms": platforms,
                },
                "destination_namespace": namespace,
                "rename": rename_pattern.map(|pattern| json!({
                    "pattern": pattern, "replacement": rename_to.unwrap_or_default(),
                })),
                "trigger": trigger,
                "schedule": schedule,
                "override_tags": !no_override,
                "replicate_deletes": replicate_deletes,
                "bandwidth_limit": bandwidth_limit,
            });
            let text = remote
                .call(
                    Method::PUT,
                    &format!("/replication/rules/{}", segment(&name)),
                    &[],
                    Some(body),
                )
                .await?;
            if args.json {
                print_raw(&text);
                return Ok(());
            }
            let r: Rule = serde_json::from_str(&text)?;
            println!(
                "replication rule {}: {} {} ({})",
                r.name, r.direction, r.remote.url, r.trigger
            );
        }
        ReplicationCommand::Rm { name } => {
            remote
                .call(
                    Method::DELETE,
                    &format!("/replication/rules/{}", segment(&name)),
                    &[],
                    None,
                )
                .await?;
            if !args.json {
                println!("replication rule {name} deleted");
            }
        }
        ReplicationCommand::Run { name } => {
            let text = remote
                .call(
                    Method::POST,
                    &format!("/replication/rules/{}/run", segment(&name)),
                    &[],
                    None,
                )
                .await?;
            if args.json {
                print_raw(&text);
                return Ok(());
            }
            let queued: Value = serde_json::from_str(&text)?;
            println!("execution {} of {name} queued", queued["id"]);
        }
        ReplicationCommand::Executions { id: Some(id), .. } => {
            let text = remote
                .get_text(&format!("/replication/executions/{id}"), &[])
                .await?;
            if args.json {
                print_raw(&text);
                return Ok(());
            }
            let e: Execution = serde_json::from_str(&text)?;
            print_fields(&[
                ("execution", e.id.to_string()),
                ("rule", format!("{} ({})", e.rule, e.trigger)),
                ("state", e.state.clone()),
                ("error", e.error.clone().unwrap_or_else(|| "-".into())),
                ("asked", date(e.created_at)),
                ("ended", maybe_date(e.finished_at)),
                ("moved", size(e.bytes_moved)),
                (
                    "blobs",
                    format!(
                        "{} copied, {} mounted, {} present",
                        e.blobs_copied, e.blobs_mounted, e.blobs_skipped
                    ),
                ),
                (
                    "manifests",
                    format!(
                        "{} copied, {} present",
                        e.manifests_copied, e.manifests_skipped
                    ),
                ),
                ("failed", e.failed.to_string()),
            ]);
            if !e.tasks.is_empty() {
                println!();
                let mut table = Table::new(&["SOURCE", "DESTINATION", "STATE", "MOVED", "NOTE"]);
                for t in e.tasks {
                    table.row(vec![
                        t.source,
                        t.destination,
                        t.state,
                        size(t.bytes),
                        t.message,
                    ]);
                }
                table.print();
            }
            if !e.log.is_empty() {
                println!();
                for line in e.log {
                    println!("{line}");
                }
            }
        }
        ReplicationCommand::Executions {
            id: None,
            rule,
            limit,
        } => {
            let query: Vec<(&str, String)> = rule.map(|r| ("rule", r)).into_iter().collect();
            let listing = remote
                .list("/replication/executions", &query, limit)
                .await?;
            if args.json {
                print_raw(&listing.to_json());
                return Ok(());
            }
            let mut table =
                Table::new(&["ID", "RULE", "TRIGGER", "STATE", "MOVED", "FAILED", "ASKED"]);
            for e in listing.parse::<Execution>()? {
                table.row(vec![
                    e.id.to_string(),
                    e.rule,
                    e.trigger,
                    e.state,
                    size(e.bytes_moved),
                    e.failed.to_string(),
                    date(e.created_at),
                ]);
            }
            table.print();
        }
    }
    Ok(())
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_owned()
}

/// Where a rule's copies go: the names (renamed or the same), under a namespace or not.
fn destination_of(r: &Rule) -> String {
    let names = match &r.rename {
        Some(rename) => format!(
            "renamed: {} -> {}",
            rename["pattern"].as_str().unwrap_or_default(),
            rename["replacement"].as_str().unwrap_or_default()
        ),
        None => "same names".to_owned(),
    };
    match &r.destination_namespace {
        Some(ns) => format!("{names}, under {ns}/"),
        None => names,
    }
}
