//! `berth webhook ls|add|rm|deliveries|redeliver` against a server's `/api/v1/webhooks`:
//! subscriptions, their delivery log, and sending a delivery again.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Subcommand;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{
    output::{Table, short_digest},
    remote::{Remote, RemoteArgs, print_raw},
};

#[derive(Subcommand)]
pub(super) enum WebhookCommand {
    /// List the subscriptions (every one for administrators).
    Ls {
        /// At most this many rows (the server's pages are followed until then).
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Subscribe a URL to events of a scope.
    Add {
        /// Where deliveries are POSTed (http or https).
        #[arg(long)]
        url: String,
        /// `*` (the whole registry), a namespace or a repository.
        #[arg(long)]
        scope: String,
        /// An event to send (push, pull, delete, tag_moved, pull_denied, scan_completed,
        /// vulnerability_found, signature_verified, signature_failed, gc_completed,
        /// cleanup_completed, quota_exceeded, replication_completed); repeat it, or join
        /// names with commas.
        #[arg(
            long = "event",
            value_name = "EVENT",
            required = true,
            value_delimiter = ','
        )]
        events: Vec<String>,
        /// distribution, harbor, cloudevents or cloudevents-binary.
        #[arg(long, default_value = "distribution")]
        format: String,
        /// A file whose first line is the secret that signs each delivery (never shown back).
        #[arg(long, value_name = "FILE")]
        secret_file: Option<PathBuf>,
        /// An extra header, NAME=VALUE; may be given more than once.
        #[arg(long = "header", value_name = "NAME=VALUE")]
        headers: Vec<String>,
        /// The share of pulls sent, above 0 and at most 1 (default 1: every pull).
        #[arg(long, value_name = "RATE")]
        pull_sample_rate: Option<f64>,
        /// Events sent in one request at most (distribution and cloudevents; default 1).
        #[arg(long, value_name = "N")]
        batch: Option<u32>,
    },
    /// Delete a subscription and its deliveries.
    Rm {
        /// The subscription's id.
        id: i64,
    },
    /// The delivery log of a subscription, newest first.
    Deliveries {
        /// The subscription's id.
        id: i64,
        /// Only deliveries in this state: pending, delivered or dead.
        #[arg(long)]
        state: Option<String>,
        /// At most this many rows.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Send a delivery again (the same event id, at the end of its queue).
    Redeliver {
        /// The subscription's id.
        id: i64,
        /// The delivery's id (from `berth webhook deliveries`).
        delivery: i64,
    },
}

/// A subscription as the commands print it.
#[derive(Deserialize)]
struct Webhook {
    id: i64,
    url: String,
    scope: String,
    events: Vec<String>,
    format: String,
    signed: bool,
    pull_sample_rate: f64,
    batch: i64,
    created_by: String,
}

/// A delivery as the log prints it.
#[derive(Deserialize)]
struct Delivery {
    id: i64,
    event: String,
    repository: String,
    digest: Option<String>,
    tag: Option<String>,
    state: String,
    attempts: i64,
    last_status: Option<i64>,
    last_error: Option<String>,
    actor: Option<String>,
    occurred_at: String,
}

/// Runs a `berth webhook` command against the server `args` names.
pub(super) async fn run(args: &RemoteArgs, command: WebhookCommand) -> anyhow::Result<()> {
    let remote = Remote::new(args)?;
    match command {
        WebhookCommand::Ls { limit } => {
            let listing = remote.list("/webhooks", &[], limit).await?;
            if args.json {
                print_raw(&listing.to_json());
                return Ok(());
            }
            let mut table = Table::new(&[
                "ID", "URL", "SCOPE", "EVENTS", "FORMAT", "BATCH", "SIGNED", "PULLS", "BY",
            ])
            .right(&[0, 5]);
            for w in listing.parse::<Webhook>()? {
                table.row(vec![
                    w.id.to_string(),
                    w.url,
                    w.scope,
                    w.events.join(","),
                    w.format,
                    w.batch.to_string(),
                    if w.signed { "yes" } else { "no" }.to_owned(),
                    format!("{}%", w.pull_sample_rate * 100.0),
                    w.created_by,
                ]);
            }
            table.print();
            if listing.next.is_some() {
                println!("(more: raise --limit)");
            }
        }
        WebhookCommand::Add {
            url,
            scope,
            events,
            format,
            secret_file,
            headers,
            pull_sample_rate,
            batch,
        } => {
            let secret = match secret_file {
                Some(path) => {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("--secret-file {}", path.display()))?;
                    let secret = text.lines().next().unwrap_or("").trim().to_owned();
                    if secret.is_empty() {
                        bail!("--secret-file: {} holds no secret", path.display());
                    }
                    Some(secret)
                }
                None => None,
            };
            let mut header_map = Map::new();
            for h in headers {
                let Some((name, value)) = h.split_once('=') else {
                    bail!("--header {h:?}: give NAME=VALUE");
                };
                header_map.insert(name.trim().to_owned(), Value::from(value));
            }
            let mut body = json!({
                "url": url, "scope": scope, "events": events, "format": format,
                "headers": header_map,
            });
            if let Some(secret) = secret {
                body["secret"] = json!(secret);
            }
            if let Some(rate) = pull_sample_rate {
                body["pull_sample_rate"] = json!(rate);
            }
            if let Some(batch) = batch {
                body["batch"] = json!(batch);
            }
            let text = remote
                .call(Method::POST, "/webhooks", &[], Some(body))
                .await?;
            if args.json {
                print_raw(&text);
                return Ok(());
            }
            let w: Webhook = serde_json::from_str(&text)?;
            println!(
                "webhook {}: {} of {} to {} as {}{}{}",
                w.id,
                w.events.join(", "),
                w.scope,
                w.url,
                w.format,
                if w.batch > 1 {
                    format!(", up to {} events a request", w.batch)
                } else {
                    String::new()
                },
                if w.signed { ", signed" } else { "" }
            );
        }
        WebhookCommand::Rm { id } => {
            remote
                .call(Method::DELETE, &format!("/webhooks/{id}"), &[], None)
                .await?;
            if !args.json {
                println!("webhook {id} deleted");
            }
        }
        WebhookCommand::Deliveries { id, state, limit } => {
            let query: Vec<(&str, String)> = state.into_iter().map(|s| ("state", s)).collect();
            let listing = remote
                .list(&format!("/webhooks/{id}/deliveries"), &query, limit)
                .await?;
            if args.json {
                print_raw(&listing.to_json());
                return Ok(());
            }
            let mut table = Table::new(&[
                "ID",
                "EVENT",
                "REPOSITORY",
                "REFERENCE",
                "ACTOR",
                "STATE",
                "ATTEMPTS",
                "STATUS",
                "OCCURRED",
                "ERROR",
            ])
            .right(&[0, 6]);
            for d in listing.parse::<Delivery>()? {
                let reference = match (&d.tag, &d.digest) {
                    (Some(tag), _) => tag.clone(),
                    (None, Some(digest)) => short_digest(digest, false),
                    (None, None) => "-".to_owned(),
                };
                table.row(vec![
                    d.id.to_string(),
                    d.event,
                    if d.repository.is_empty() {
                        "*".to_owned()
                    } else {
                        d.repository
                    },
                    reference,
                    d.actor.unwrap_or_else(|| "-".to_owned()),
                    d.state,
                    d.attempts.to_string(),
                    d.last_status
                        .map_or_else(|| "-".to_owned(), |s| s.to_string()),
                    d.occurred_at,
                    d.last_error.unwrap_or_default(),
                ]);
            }
            table.print();
            if listing.next.is_some() {
                println!("(more: raise --limit)");
            }
        }
        WebhookCommand::Redeliver { id, delivery } => {
            let text = remote
                .call(
                    Method::POST,
                    &format!("/webhooks/{id}/deliveries/{delivery}/redeliver"),
                    &[],
                    None,
                )
                .await?;
            if args.json {
                print_raw(&text);
                return Ok(());
            }
            let again: Value = serde_json::from_str(&text)?;
            println!(
                "delivery {delivery} of webhook {id} queued again as delivery {}",
                again["delivery"]
            );
        }
    }
    Ok(())
}
