//! `berth trust ls|show|put|rm` against a server's `/api/v1/trust/policies`: which keys and
//! identities a scope trusts, and whether pulls of unsigned images are refused there.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    output::{Table, date, print_fields, short_digest},
    remote::{Remote, RemoteArgs, print_raw, segment},
};

#[derive(Subcommand)]
pub(super) enum TrustCommand {
    /// List every trust policy.
    Ls,
    /// Show a policy: its scope, mode, keys and notation statement.
    Show {
        /// The policy's name.
        name: String,
    },
    /// Create or replace a policy (administrators, or maintainers of its scope).
    Put {
        /// The policy's name.
        name: String,
        /// `*` or a repository-name prefix (`team` covers `team` and `team/...`).
        #[arg(long)]
        scope: String,
        /// enforce (refuse pulls of unsigned images), audit (serve, log, count) or off.
        #[arg(long)]
        mode: String,
        /// A cosign public key (PEM file); may be given more than once.
        #[arg(long = "cosign-key", value_name = "FILE")]
        cosign_keys: Vec<PathBuf>,
        /// notation's trust-policy statement (JSON file).
        #[arg(long, value_name = "FILE")]
        notation: Option<PathBuf>,
        /// A PEM certificate notation chains must lead to; may be given more than once.
        #[arg(long = "trust-store", value_name = "FILE")]
        trust_store: Vec<PathBuf>,
    },
    /// Delete a policy: its scope's pulls are no longer checked by it.
    Rm {
        /// The policy's name.
        name: String,
    },
}

/// A policy as the commands print it.
#[derive(Deserialize)]
struct Policy {
    name: String,
    scope: String,
    mode: String,
    cosign_key_fingerprints: Vec<String>,
    notation: Option<Value>,
    trust_store: Vec<String>,
    updated_by: String,
    updated_at: i64,
}

#[derive(Deserialize)]
struct Policies {
    items: Vec<Policy>,
}

/// The text of file `path`, named in the error when it cannot be read.
fn read(path: &PathBuf, what: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("{what} {}", path.display()))
}

/// Runs a `berth trust` command against the server `args` names.
pub(super) async fn run(args: &RemoteArgs, command: TrustCommand) -> anyhow::Result<()> {
    let remote = Remote::new(args)?;
    match command {
        TrustCommand::Ls => {
            let text = remote.get_text("/trust/policies", &[]).await?;
            if args.json {
                print_raw(&text);
                return Ok(());
            }
            let policies: Policies = serde_json::from_str(&text)?;
            let mut table = Table::new(&["NAME", "SCOPE", "MODE", "KEYS", "NOTATION", "UPDATED"]);
            for p in policies.items {
                table.row(vec![
                    p.name,
                    p.scope,
                    p.mode,
                    p.cosign_key_fingerprints.len().to_string(),
                    if p.notation.is_some() { "yes" } else { "no" }.to_owned(),
                    date(p.updated_at),
                ]);
            }
            table.print();
        }
        TrustCommand::Show { name } => {
            let text = remote
                .get_text(&format!("/trust/policies/{}", segment(&name)), &[])
                .await?;
            if args.json {
                print_raw(&text);
                return Ok(());
            }
            let p: Policy = serde_json::from_str(&text)?;
            let keys: Vec<String> = p
                .cosign_key_fingerprints
                .iter()
                .map(|k| short_digest(k, false))
                .collect();
            print_fields(&[
                ("name", p.name),
                ("scope", p.scope),
                ("mode", p.mode),
                (
                    "cosign keys",
                    if keys.is_empty() {
                        "-".to_owned()
                    } else {
                        keys.join(", ")
                    },
                ),
                (
                    "notation",
                    p.notation.map_or_else(|| "-".to_owned(), |n| n.to_string()),
                ),
                (
                    "trust store",
                    format!("{} certificate(s)", p.trust_store.len()),
                ),
                (
                    "updated",
                    format!("{} by {}", date(p.updated_at), p.updated_by),
                ),
            ]);
        }
        TrustCommand::Put {
            name,
            scope,
            mode,
            cosign_keys,
            notation,
            trust_store,
        } => {
            let cosign_keys = cosign_keys
                .iter()
                .map(|k| read(k, "cosign key"))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let trust_store = trust_store
                .iter()
                .map(|c| read(c, "trust store certificate"))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let notation: Option<Value> = match notation {
                Some(path) => Some(
                    serde_json::from_str(&read(&path, "notation statement")?)
                        .with_context(|| format!("notation statement {}", path.display()))?,
                ),
                None => None,
            };
            let body = json!({
                "scope": scope,
                "mode": mode,
                "cosign_keys": cosign_keys,
                "notation": notation,
                "trust_store": trust_store,
            });
            let text = remote
                .call(
                    Method::PUT,
                    &format!("/trust/policies/{}", segment(&name)),
                    &[],
                    Some(body),
                )
                .await?;
            if args.json {
                print_raw(&text);
                return Ok(());
            }
            let p: Policy = serde_json::from_str(&text)?;
            println!(
                "trust policy {}: {} on {} with {} cosign key(s)",
                p.name,
                p.mode,
                p.scope,
                p.cosign_key_fingerprints.len()
            );
        }
        TrustCommand::Rm { name } => {
            remote
                .call(
                    Method::DELETE,
                    &format!("/trust/policies/{}", segment(&name)),
                    &[],
                    None,
                )
                .await?;
            if !args.json {
                println!("trust policy {name} deleted");
            }
        }
    }
    Ok(())
}
