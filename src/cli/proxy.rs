//! `berth proxy ls|put|rm` against a server's `/api/v1/proxy/rules`: the pull-through cache
//! rules in force, and those managed through the API (a configured rule is changed only in
//! the configuration file).

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;

use super::{
    output::{Table, maybe_date},
    remote::{Remote, RemoteArgs, print_raw, segment},
};

#[derive(Subcommand)]
pub(super) enum ProxyCommand {
    /// List the rules in force: the configuration file's, then the API's.
    Ls,
    /// Create or replace the rule of a prefix from a JSON file holding the keys of a
    /// `[[proxy]]` section (`upstreams`, `hosts`, `tag_ttl`, `include`, ...).
    Put {
        /// The repository prefix, e.g. hub.
        prefix: String,
        /// The rule's JSON file.
        file: PathBuf,
    },
    /// Delete a rule of the API (its cached repositories stay, as local ones).
    Rm {
        /// The repository prefix.
        prefix: String,
    },
}

/// A rule as the commands print it.
#[derive(Deserialize)]
struct Rule {
    prefix: String,
    source: String,
    upstreams: Vec<Upstream>,
    hosts: Vec<String>,
    tag_ttl_secs: i64,
    updated_at: Option<i64>,
    updated_by: Option<String>,
}

#[derive(Deserialize)]
struct Upstream {
    url: String,
}

/// `/proxy/rules/<prefix>`, each segment of the prefix encoded.
fn rule_path(prefix: &str) -> String {
    let segments: Vec<String> = prefix
        .trim_end_matches('/')
        .split('/')
        .map(segment)
        .collect();
    format!("/proxy/rules/{}", segments.join("/"))
}

/// Runs a `berth proxy` command against the server `args` names.
pub(super) async fn run(args: &RemoteArgs, command: ProxyCommand) -> anyhow::Result<()> {
    let remote = Remote::new(args)?;
    match command {
        ProxyCommand::Ls => {
            let text = remote.get_text("/proxy/rules", &[]).await?;
            if args.json {
                print_raw(&text);
                return Ok(());
            }
            let rules: Vec<Rule> = serde_json::from_str(&text)?;
            let mut table = Table::new(&[
                "PREFIX",
                "SOURCE",
                "UPSTREAMS",
                "HOSTS",
                "TAG TTL",
                "UPDATED",
            ]);
            for r in rules {
                let list = |items: Vec<String>| {
                    if items.is_empty() {
                        "-".to_owned()
                    } else {
                        items.join(",")
                    }
                };
                let updated = match r.updated_by {
                    Some(by) => format!("{} by {by}", maybe_date(r.updated_at)),
                    None => "-".to_owned(),
                };
                table.row(vec![
                    r.prefix,
                    r.source,
                    list(r.upstreams.into_iter().map(|u| u.url).collect()),
                    list(r.hosts),
                    format!("{}s", r.tag_ttl_secs),
                    updated,
                ]);
            }
            table.print();
        }
        ProxyCommand::Put { prefix, file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let body: Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a JSON rule", file.display()))?;
            let path = rule_path(&prefix);
            let answer = remote.call(Method::PUT, &path, &[], Some(body)).await?;
            if args.json {
                print_raw(&answer);
                return Ok(());
            }
            let rule: Rule = serde_json::from_str(&answer)?;
            println!(
                "rule {} saved: {} upstream(s), in force on every replica within seconds",
                rule.prefix,
                rule.upstreams.len()
            );
        }
        ProxyCommand::Rm { prefix } => {
            let path = rule_path(&prefix);
            remote.call(Method::DELETE, &path, &[], None).await?;
            println!("rule {prefix} deleted");
        }
    }
    Ok(())
}
