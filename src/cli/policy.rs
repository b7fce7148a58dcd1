//! `berth policy ls|show|apply` against a server's `/api/v1/policies`: cleanup policies,
//! what they would remove (`--dry-run`) and applying them now.

use clap::Subcommand;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{
    output::{Table, date, maybe_date, print_fields, short_digest},
    remote::{Remote, RemoteArgs, print_raw, segment},
};

#[derive(Subcommand)]
pub(super) enum PolicyCommand {
    /// List every cleanup policy (administrators).
    Ls,
    /// Show a policy: where it applies, when it runs, its rules.
    Show {
        /// The policy's name.
        name: String,
    },
    /// Apply a policy now and list what it removed (or, with --dry-run, would remove).
    Apply {
        /// The policy's name.
        name: String,
        /// Remove nothing: list what the policy would remove, and why.
        #[arg(long)]
        dry_run: bool,
    },
}

/// The fields of a saved policy that say where and when it applies; the rest are its rules.
const POLICY_FIELDS: [&str; 8] = [
    "name",
    "repository",
    "repositories",
    "enabled",
    "cadence",
    "next_run_at",
    "created_at",
    "updated_at",
];

/// A saved policy, as the listing prints it.
#[derive(Deserialize)]
struct Policy {
    name: String,
    repository: Option<String>,
    repositories: Option<String>,
    enabled: bool,
    cadence: String,
    next_run_at: Option<i64>,
    updated_at: i64,
}

impl Policy {
    /// The repository, or the pattern of repositories, it applies to.
    fn target(&self) -> String {
        match (&self.repository, &self.repositories) {
            (Some(one), _) => one.clone(),
            (None, Some(pattern)) => format!("/{pattern}/"),
            (None, None) => "-".to_owned(),
        }
    }
}

#[derive(Deserialize)]
struct Policies {
    items: Vec<Policy>,
}

/// What a run answers.
#[derive(Deserialize)]
struct Run {
    run: i64,
    dry_run: bool,
    removed: Vec<Removal>,
}

#[derive(Deserialize)]
struct Removal {
    repository: String,
    tag: Option<String>,
    digest: String,
    image: bool,
    reason: String,
}

/// Runs a `berth policy` command against the server `args` names.
pub(super) async fn run(args: &RemoteArgs, command: PolicyCommand) -> anyhow::Result<()> {
    let remote = Remote::new(args)?;
    match command {
        PolicyCommand::Ls => {
            let text = remote.get_text("/policies", &[]).await?;
            if args.json {
                print_raw(&text);
                return Ok(());
            }
            let policies: Policies = serde_json::from_str(&text)?;
            let mut table = Table::new(&[
                "NAME",
                "REPOSITORIES",
                "ENABLED",
                "CADENCE",
                "NEXT RUN",
                "UPDATED",
            ]);
            for p in policies.items {
                let target = p.target();
                table.row(vec![
                    p.name,
                    target,
                    if p.enabled { "yes" } else { "no" }.to_owned(),
                    p.cadence,
                    maybe_date(p.next_run_at),
                    date(p.updated_at),
                ]);
            }
            table.print();
        }
        PolicyCommand::Show { name } => {
            let text = remote
                .get_text(&format!("/policies/{}", segment(&name)), &[])
                .await?;
            if args.json {
                print_raw(&text);
                return Ok(());
            }
            let fields: Map<String, Value> = serde_json::from_str(&text)?;
            let policy: Policy = serde_json::from_value(Value::Object(fields.clone()))?;
            let mut lines = vec![
                ("name", policy.name.clone()),
                ("repositories", policy.target()),
                (
                    "enabled",
                    if policy.enabled { "yes" } else { "no" }.to_owned(),
                ),
                ("cadence", policy.cadence.clone()),
                ("next run", maybe_date(policy.next_run_at)),
                ("updated", date(policy.updated_at)),
            ];
            for (key, value) in &fields {
                if POLICY_FIELDS.contains(&key.as_str()) || value.is_null() {
                    continue;
                }
                let shown = match value {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                lines.push((key.as_str(), shown));
            }
            print_fields(&lines);
        }
        PolicyCommand::Apply { name, dry_run } => {
            let text = remote
                .call(
                    Method::POST,
                    &format!("/policies/{}/runs", segment(&name)),
                    &[],
                    Some(json!({ "dry_run": dry_run })),
                )
                .await?;
            if args.json {
                print_raw(&text);
                return Ok(());
            }
            let run: Run = serde_json::from_str(&text)?;
            let verb = if run.dry_run {
                "would remove"
            } else {
                "removed"
            };
            println!(
                "run {} of {name}{}: {verb} {}",
                run.run,
                if run.dry_run { " (dry run)" } else { "" },
                run.removed.len()
            );
            if run.removed.is_empty() {
                return Ok(());
            }
            let mut table = Table::new(&["REPOSITORY", "TAG", "DIGEST", "REMOVES", "REASON"]);
            for r in run.removed {
                table.row(vec![
                    r.repository,
                    r.tag.unwrap_or_else(|| "-".to_owned()),
                    short_digest(&r.digest, false),
                    if r.image { "image" } else { "tag" }.to_owned(),
                    r.reason,
                ]);
            }
            table.print();
        }
    }
    Ok(())
}
