//! `berth tag ls|add|rm` against a server's `/api/v1/repositories/{name}/-/tags`.

use berth::oci::{Digest, Tag};
use clap::Subcommand;
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use super::{
    output::{Signed, Table, date, maybe_date, short_digest, signed},
    remote::{Remote, RemoteArgs, print_raw},
    repo::repository,
};

#[derive(Subcommand)]
pub(super) enum TagCommand {
    /// List the tags of a repository with the image each points at.
    Ls {
        /// The repository, e.g. team/app.
        repository: String,
        /// name (A to Z), pushed (newest first) or pulled (most recent first).
        #[arg(long)]
        sort: Option<String>,
        /// At most this many rows (the server's pages are followed until then).
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Show whole digests, not their first 12 digits.
        #[arg(long)]
        no_trunc: bool,
    },
    /// Point a tag at an image (of this repository, or with --from of another one).
    Add {
        /// The repository the tag is in, e.g. team/app.
        repository: String,
        /// The tag, e.g. v1.2.
        tag: String,
        /// The image's manifest digest, e.g. sha256:3b0a….
        digest: String,
        /// Another repository holding the image (what it needs is mounted first).
        #[arg(long, value_name = "REPOSITORY")]
        from: Option<String>,
    },
    /// Remove a tag (the image stays, reachable by digest).
    Rm {
        /// The repository, e.g. team/app.
        repository: String,
        /// The tag to remove.
        tag: String,
    },
}

/// The fields of a tag the listing prints.
#[derive(Deserialize)]
struct TagRow {
    name: String,
    digest: String,
    pushed_at: i64,
    last_pulled_at: Option<i64>,
    #[serde(default)]
    signature: Option<Signed>,
}

/// What the bulk tag deletion answers.
#[derive(Deserialize)]
struct Removed {
    removed: Vec<serde_json::Value>,
}

/// Runs a `berth tag` command against the server `args` names.
pub(super) async fn run(args: &RemoteArgs, command: TagCommand) -> anyhow::Result<()> {
    let remote = Remote::new(args)?;
    match command {
        TagCommand::Ls {
            repository: name,
            sort,
            limit,
            no_trunc,
        } => {
            let path = format!("/repositories/{}/-/tags", repository(&name)?);
            let query: Vec<(&str, String)> = sort.map(|s| ("sort", s)).into_iter().collect();
            let listing = remote.list(&path, &query, limit).await?;
            if args.json {
                print_raw(&listing.to_json());
                return Ok(());
            }
            let mut table = Table::new(&["TAG", "DIGEST", "PUSHED", "LAST PULL", "SIGNED"]);
            for t in listing.parse::<TagRow>()? {
                table.row(vec![
                    t.name,
                    short_digest(&t.digest, no_trunc),
                    date(t.pushed_at),
                    maybe_date(t.last_pulled_at),
                    signed(&t.signature),
                ]);
            }
            table.print();
            if listing.next.is_some() {
                println!("(more: raise --limit)");
            }
        }
        TagCommand::Add {
            repository: name,
            tag,
            digest,
            from,
        } => {
            let repo = repository(&name)?;
            let tag: Tag = tag
                .parse()
                .map_err(|e| anyhow::anyhow!("tag {tag:?}: {e}"))?;
            let digest: Digest = digest
                .parse()
                .map_err(|e| anyhow::anyhow!("digest {digest:?}: {e}"))?;
            let mut body = json!({ "tag": tag.as_str(), "digest": digest.to_string() });
            if let Some(from) = from {
                body["from"] = json!(repository(&from)?.as_str());
            }
            let text = remote
                .call(
                    Method::POST,
                    &format!("/repositories/{repo}/-/tags"),
                    &[],
                    Some(body),
                )
                .await?;
            if args.json {
                print_raw(&text);
            } else {
                println!("{repo}:{tag} -> {digest}");
            }
        }
        TagCommand::Rm {
            repository: name,
            tag,
        } => {
            let repo = repository(&name)?;
            let tag: Tag = tag
                .parse()
                .map_err(|e| anyhow::anyhow!("tag {tag:?}: {e}"))?;
            // `/api/v1` deletes tags by pattern; this one matches the tag alone.
            let pattern = regex::escape(tag.as_str());
            let text = remote
                .call(
                    Method::DELETE,
                    &format!("/repositories/{repo}/-/tags"),
                    &[("name_regex_delete", pattern)],
                    None,
                )
                .await?;
            let removed: Removed = serde_json::from_str(&text)?;
            if removed.removed.is_empty() {
                anyhow::bail!("{repo} has no tag {tag}");
            }
            if args.json {
                print_raw(&text);
            } else {
                println!("removed {repo}:{tag}");
            }
        }
    }
    Ok(())
}
