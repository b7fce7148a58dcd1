//! `berth image ls|show|signatures|import-report` against a server's
//! `/api/v1/repositories/{name}/-/images`.

use berth::oci::Digest;
use clap::Subcommand;
use serde::Deserialize;

use super::{
    output::{Signed, Table, date, maybe_date, print_fields, short_digest, signed, size},
    remote::{Remote, RemoteArgs, print_raw},
    repo::repository,
};

#[derive(Subcommand)]
pub(super) enum ImageCommand {
    /// List the images of a repository, one per manifest, newest first.
    Ls {
        /// The repository, e.g. team/app.
        repository: String,
        /// Only images of this architecture (e.g. arm64; the children of indexes too).
        #[arg(long)]
        arch: Option<String>,
        /// Only images of this operating system (e.g. linux).
        #[arg(long)]
        os: Option<String>,
        /// Only the image this tag points at.
        #[arg(long)]
        tag: Option<String>,
        /// active, untagged or quarantined.
        #[arg(long)]
        status: Option<String>,
        /// pushed (newest first), size (largest first) or pulls (most first).
        #[arg(long)]
        sort: Option<String>,
        /// At most this many rows (the server's pages are followed until then).
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Show whole digests, not their first 12 digits.
        #[arg(long)]
        no_trunc: bool,
    },
    /// List an image's signatures: tool, whether each verified, by whom or why not.
    Signatures {
        /// The repository, e.g. team/app.
        repository: String,
        /// The image's manifest digest, e.g. sha256:3b0a….
        digest: String,
    },
    /// Show one image: platform, size, tags, layers, an index's children, referrers.
    Show {
        /// The repository, e.g. team/app.
        repository: String,
        /// The image's manifest digest, e.g. sha256:3b0a….
        digest: String,
    },
    /// Import a Trivy (`trivy image -f json`) or Grype (`grype -o json`) report for an
    /// image, shown beside Berth's own findings.
    ImportReport {
        /// The repository, e.g. team/app.
        repository: String,
        /// The image's manifest digest (an index's: the report names which of its images).
        digest: String,
        /// The report's JSON file.
        file: std::path::PathBuf,
    },
}

/// What an import answers.
#[derive(Deserialize)]
struct ImportedReport {
    id: i64,
    scanner: String,
    scanner_version: Option<String>,
    image: String,
    findings: u64,
    summary: Summary,
}

/// Findings by severity.
#[derive(Deserialize)]
struct Summary {
    critical: u64,
    high: u64,
    medium: u64,
    low: u64,
    unknown: u64,
}

/// A platform: `{os, architecture, variant}`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Platform {
    os: Option<String>,
    architecture: Option<String>,
    variant: Option<String>,
}

impl Platform {
    /// `linux/arm64/v8`.
    fn text(&self) -> String {
        let parts: Vec<&str> = [&self.os, &self.architecture, &self.variant]
            .into_iter()
            .filter_map(|p| p.as_deref())
            .collect();
        if parts.is_empty() {
            "-".to_owned()
        } else {
            parts.join("/")
        }
    }
}

/// An image's platform, or an index's children's.
#[derive(Deserialize)]
#[serde(untagged)]
enum Platforms {
    Image(Platform),
    Index(Vec<Platform>),
}

impl Platforms {
    fn text(&self) -> String {
        match self {
            Platforms::Image(p) => p.text(),
            Platforms::Index(children) => {
                let all: Vec<String> = children.iter().map(Platform::text).collect();
                if all.is_empty() {
                    "-".to_owned()
                } else {
                    all.join(",")
                }
            }
        }
    }
}

/// The fields of an image the commands print.
#[derive(Deserialize)]
struct Image {
    digest: String,
    media_type: String,
    tags: Vec<String>,
    platform: Platforms,
    size_bytes: i64,
    pushed_at: i64,
    last_pulled_at: Option<i64>,
    pull_count: i64,
    status: String,
    #[serde(default)]
    index: Option<String>,
    #[serde(default)]
    signature: Option<Signed>,
}

/// One signature of an image, as `…/signatures` lists it.
#[derive(Deserialize)]
struct Signature {
    tool: String,
    format: String,
    verified: bool,
    identity: Option<String>,
    reason: Option<String>,
    signature: String,
}

#[derive(Deserialize)]
struct Signatures {
    items: Vec<Signature>,
}

/// The detail of one image beyond what the listing shows.
#[derive(Deserialize)]
struct ImageDetail {
    #[serde(flatten)]
    image: Image,
    layers: Vec<Blob>,
    config: Option<Config>,
    children: Vec<Child>,
    referrers: Vec<Referrer>,
}

#[derive(Deserialize)]
struct Blob {
    digest: String,
    media_type: String,
    size: i64,
}

#[derive(Deserialize)]
struct Config {
    created: Option<String>,
}

#[derive(Deserialize)]
struct Child {
    digest: String,
    size: i64,
    platform: Platform,
}

#[derive(Deserialize)]
struct Referrer {
    digest: String,
    artifact_type: Option<String>,
    media_type: String,
}

/// `-` for an empty list, else the names joined by commas.
fn names(list: &[String]) -> String {
    if list.is_empty() {
        "-".to_owned()
    } else {
        list.join(",")
    }
}

/// Runs a `berth image` command against the server `args` names.
pub(super) async fn run(args: &RemoteArgs, command: ImageCommand) -> anyhow::Result<()> {
    let remote = Remote::new(args)?;
    match command {
        ImageCommand::Ls {
            repository: name,
            arch,
            os,
            tag,
            status,
            sort,
            limit,
            no_trunc,
        } => {
            let path = format!("/repositories/{}/-/images", repository(&name)?);
            let query: Vec<(&str, String)> = [
                ("architecture", arch),
                ("os", os),
                ("tag", tag),
                ("status", status),
                ("sort", sort),
            ]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect();
            let listing = remote.list(&path, &query, limit).await?;
            if args.json {
                print_raw(&listing.to_json());
                return Ok(());
            }
            let mut table = Table::new(&[
                "DIGEST",
                "TAGS",
                "PLATFORM",
                "SIZE",
                "PUSHED",
                "PULLS",
                "LAST PULL",
                "SIGNED",
                "STATUS",
            ])
            .right(&[3, 5]);
            for i in listing.parse::<Image>()? {
                let status = match &i.index {
                    Some(index) => format!("{} (in {})", i.status, short_digest(index, no_trunc)),
                    None => i.status,
                };
                table.row(vec![
                    short_digest(&i.digest, no_trunc),
                    names(&i.tags),
                    i.platform.text(),
                    size(i.size_bytes),
                    date(i.pushed_at),
                    i.pull_count.to_string(),
                    maybe_date(i.last_pulled_at),
                    signed(&i.signature),
                    status,
                ]);
            }
            table.print();
            if listing.next.is_some() {
                println!("(more: raise --limit)");
            }
        }
        ImageCommand::Signatures {
            repository: name,
            digest,
        } => {
            let digest: Digest = digest
                .parse()
                .map_err(|e| anyhow::anyhow!("digest {digest:?}: {e}"))?;
            let path = format!(
                "/repositories/{}/-/images/{digest}/signatures",
                repository(&name)?
            );
            let text = remote.get_text(&path, &[]).await?;
            if args.json {
                print_raw(&text);
                return Ok(());
            }
            let found: Signatures = serde_json::from_str(&text)?;
            if found.items.is_empty() {
                println!("{digest} has no signature");
                return Ok(());
            }
            let mut table = Table::new(&["TOOL", "FORMAT", "VERIFIED", "BY / WHY NOT", "IN"]);
            for s in found.items {
                let (verified, detail) = if s.verified {
                    ("yes", s.identity.unwrap_or_default())
                } else {
                    ("no", s.reason.unwrap_or_default())
                };
                table.row(vec![
                    s.tool,
                    s.format,
                    verified.to_owned(),
                    detail,
                    short_digest(&s.signature, false),
                ]);
            }
            table.print();
        }
        ImageCommand::Show {
            repository: name,
            digest,
        } => {
            let digest: Digest = digest
                .parse()
                .map_err(|e| anyhow::anyhow!("digest {digest:?}: {e}"))?;
            let path = format!("/repositories/{}/-/images/{digest}", repository(&name)?);
            let text = remote.get_text(&path, &[]).await?;
            if args.json {
                print_raw(&text);
                return Ok(());
            }
            let detail: ImageDetail = serde_json::from_str(&text)?;
            let i = detail.image;
            let mut fields = vec![
                ("digest", i.digest),
                ("media type", i.media_type),
                ("tags", names(&i.tags)),
                ("platform", i.platform.text()),
                ("size", size(i.size_bytes)),
                ("pushed", date(i.pushed_at)),
                ("pulls", i.pull_count.to_string()),
                ("last pull", maybe_date(i.last_pulled_at)),
                ("status", i.status),
                ("signed", signed(&i.signature)),
            ];
            if let Some(created) = detail.config.and_then(|c| c.created) {
                fields.push(("built", created));
            }
            print_fields(&fields);
            if !detail.layers.is_empty() {
                println!();
                let mut table = Table::new(&["LAYER", "MEDIA TYPE", "SIZE"]).right(&[2]);
                for l in detail.layers {
                    table.row(vec![l.digest, l.media_type, size(l.size)]);
                }
                table.print();
            }
            if !detail.children.is_empty() {
                println!();
                let mut table = Table::new(&["CHILD", "PLATFORM", "MANIFEST SIZE"]).right(&[2]);
                for c in detail.children {
                    table.row(vec![c.digest, c.platform.text(), size(c.size)]);
                }
                table.print();
            }
            if !detail.referrers.is_empty() {
                println!();
                let mut table = Table::new(&["REFERRER", "ARTIFACT TYPE", "MEDIA TYPE"]);
                for r in detail.referrers {
                    table.row(vec![
                        r.digest,
                        r.artifact_type.unwrap_or_else(|| "-".to_owned()),
                        r.media_type,
                    ]);
                }
                table.print();
            }
        }
        ImageCommand::ImportReport {
            repository: name,
            digest,
            file,
        } => {
            let digest: Digest = digest
                .parse()
                .map_err(|e| anyhow::anyhow!("digest {digest:?}: {e}"))?;
            let bytes = std::fs::read(&file)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
            let report: serde_json::Value = serde_json::from_slice(&bytes)
                .map_err(|e| anyhow::anyhow!("{} is not a JSON report: {e}", file.display()))?;
            let path = format!(
                "/repositories/{}/-/images/{digest}/reports",
                repository(&name)?
            );
            let text = remote
                .call(reqwest::Method::POST, &path, &[], Some(report))
                .await?;
            if args.json {
                print_raw(&text);
                return Ok(());
            }
            let r: ImportedReport = serde_json::from_str(&text)?;
            let s = r.summary;
            println!(
                "imported {} {} report {} for {}: {} findings (critical {}, high {}, medium {}, \
                 low {}, unknown {})",
                r.scanner,
                r.scanner_version
                    .as_deref()
                    .unwrap_or("(version not given)"),
                r.id,
                r.image,
                r.findings,
                s.critical,
                s.high,
                s.medium,
                s.low,
                s.unknown
            );
        }
    }
    Ok(())
}
