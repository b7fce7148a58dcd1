//! `berth repo ls|show|create|rm` against a server's `/api/v1/repositories`.

use berth::oci::RepoName;
use clap::Subcommand;
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use super::{
    output::{Table, date, maybe_date, print_fields, size},
    remote::{Remote, RemoteArgs, print_raw},
};

#[derive(Subcommand)]
pub(super) enum RepoCommand {
    /// List the repositories you may read, with their sizes and pulls.
    Ls {
        /// Only repositories whose name contains this.
        #[arg(long)]
        name: Option<String>,
        /// Only repositories with this visibility: public, internal or private.
        #[arg(long)]
        visibility: Option<String>,
        /// name (A to Z), pulls (most first), pushed (newest first) or size (largest first).
        #[arg(long)]
        sort: Option<String>,
        /// At most this many rows (the server's pages are followed until then).
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Show a repository: description, visibility, sizes, pulls, and its docker and podman
    /// command lines.
    Show {
        /// The repository, e.g. team/app.
        name: String,
    },
    /// Create a repository ahead of its first push.
    Create {
        /// The repository, e.g. team/app.
        name: String,
        /// What it holds.
        #[arg(long)]
        description: Option<String>,
        /// public, internal or private (default: its namespace's).
        #[arg(long)]
        visibility: Option<String>,
    },
    /// Delete a repository with its images and tags (maintainers).
    Rm {
        /// The repository, e.g. team/app.
        name: String,
    },
}

/// The fields of a repository the commands print.
#[derive(Deserialize)]
struct Repository {
    name: String,
    description: String,
    visibility: String,
    created_at: i64,
    push_count: i64,
    pull_count: i64,
    last_push_at: Option<i64>,
    last_pull_at: Option<i64>,
    manifest_count: i64,
    tag_count: i64,
    deduplicated_bytes: i64,
    exclusive_bytes: i64,
}

/// The docker and podman lines of `/-/commands`.
#[derive(Deserialize)]
struct Commands {
    login: String,
    push: String,
    pull: String,
    podman: ClientCommands,
}

#[derive(Deserialize)]
struct ClientCommands {
    login: String,
    push: String,
    pull: String,
}

/// `name` checked as a repository name before it goes into a path.
pub(super) fn repository(name: &str) -> anyhow::Result<RepoName> {
    name.parse()
        .map_err(|e| anyhow::anyhow!("repository {name:?}: {e}"))
}

/// Runs a `berth repo` command against the server `args` names.
pub(super) async fn run(args: &RemoteArgs, command: RepoCommand) -> anyhow::Result<()> {
    let remote = Remote::new(args)?;
    match command {
        RepoCommand::Ls {
            name,
            visibility,
            sort,
            limit,
        } => {
            let query: Vec<(&str, String)> =
                [("name", name), ("visibility", visibility), ("sort", sort)]
                    .into_iter()
                    .filter_map(|(k, v)| v.map(|v| (k, v)))
                    .collect();
            let listing = remote.list("/repositories", &query, limit).await?;
            if args.json {
                print_raw(&listing.to_json());
                return Ok(());
            }
            let mut table = Table::new(&[
                "NAME",
                "VISIBILITY",
                "IMAGES",
                "TAGS",
                "SIZE",
                "PULLS",
                "LAST PUSH",
            ])
            .right(&[2, 3, 4, 5]);
            for r in listing.parse::<Repository>()? {
                table.row(vec![
                    r.name,
                    r.visibility,
                    r.manifest_count.to_string(),
                    r.tag_count.to_string(),
                    size(r.deduplicated_bytes),
                    r.pull_count.to_string(),
                    maybe_date(r.last_push_at),
                ]);
            }
            table.print();
            if listing.next.is_some() {
                println!("(more: raise --limit)");
            }
        }
        RepoCommand::Show { name } => {
            let path = format!("/repositories/{}", repository(&name)?);
            let text = remote.get_text(&path, &[]).await?;
            if args.json {
                print_raw(&text);
                return Ok(());
            }
            let r: Repository = serde_json::from_str(&text)?;
            // The command lines are a convenience: the repository shows without them.
            let commands = remote
                .get_text(&format!("{path}/-/commands"), &[])
                .await
                .and_then(|text| Ok(serde_json::from_str::<Commands>(&text)?));
            let description = if r.description.is_empty() {
                "-".to_owned()
            } else {
                r.description
            };
            print_fields(&[
                ("name", r.name),
                ("description", description),
                ("visibility", r.visibility),
                ("created", date(r.created_at)),
                ("images", r.manifest_count.to_string()),
                ("tags", r.tag_count.to_string()),
                ("size", size(r.deduplicated_bytes)),
                ("exclusive", size(r.exclusive_bytes)),
                ("pushes", r.push_count.to_string()),
                ("pulls", r.pull_count.to_string()),
                ("last push", maybe_date(r.last_push_at)),
                ("last pull", maybe_date(r.last_pull_at)),
            ]);
            println!();
            match commands {
                Ok(c) => {
                    for line in [
                        c.login,
                        c.push,
                        c.pull,
                        c.podman.login,
                        c.podman.push,
                        c.podman.pull,
                    ] {
                        println!("{line}");
                    }
                }
                Err(e) => println!("(no command lines: {e:#})"),
            }
        }
        RepoCommand::Create {
            name,
            description,
            visibility,
        } => {
            let mut body = json!({ "name": name });
            if let Some(description) = description {
                body["description"] = json!(description);
            }
            if let Some(visibility) = visibility {
                body["visibility"] = json!(visibility);
            }
            let text = remote
                .call(Method::POST, "/repositories", &[], Some(body))
                .await?;
            if args.json {
                print_raw(&text);
                return Ok(());
            }
            let r: Repository = serde_json::from_str(&text)?;
            println!("created {} ({})", r.name, r.visibility);
        }
        RepoCommand::Rm { name } => {
            remote
                .call(
                    Method::DELETE,
                    &format!("/repositories/{}", repository(&name)?),
                    &[],
                    None,
                )
                .await?;
            if !args.json {
                println!("deleted {name}");
            }
        }
    }
    Ok(())
}
