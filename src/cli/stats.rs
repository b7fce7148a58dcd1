//! `berth stats [--popular] [--trends]` against a server's `/api/v1/stats`: the totals, the
//! most pulled, or pulls per day with a bar chart.

use serde::Deserialize;

use super::{
    output::{Table, print_fields, size, sparkline},
    remote::{Remote, RemoteArgs, print_raw},
};

/// The flags of `berth stats`.
#[derive(clap::Args)]
pub(super) struct StatsArgs {
    /// The most pulled repositories (or tags, or users) instead of the totals.
    #[arg(long, conflicts_with = "trends")]
    popular: bool,
    /// Pulls, HEADs, pushes and bytes served per day instead of the totals.
    #[arg(long)]
    trends: bool,
    /// With --popular: the last N days, as `7d` (1d to 365d).
    #[arg(long, value_name = "DAYS", requires = "popular")]
    window: Option<String>,
    /// With --popular: repository, tag, or user (administrators).
    #[arg(long, requires = "popular")]
    by: Option<String>,
    /// With --popular: how many (1 to 100, default 10).
    #[arg(long, requires = "popular")]
    limit: Option<u32>,
    /// With --trends: the first day, YYYY-MM-DD (UTC; default 29 days before --to).
    #[arg(long, value_name = "DATE", requires = "trends")]
    from: Option<String>,
    /// With --trends: the last day, YYYY-MM-DD (UTC; default today).
    #[arg(long, value_name = "DATE", requires = "trends")]
    to: Option<String>,
    /// With --trends: only this repository.
    #[arg(long, requires = "trends")]
    repository: Option<String>,
    /// Only the repositories of this namespace (e.g. team).
    #[arg(long)]
    namespace: Option<String>,
    // Last: its flags come under their own heading in the help.
    #[command(flatten)]
    pub(super) remote: RemoteArgs,
}

/// Counts today and over 7 and 30 days.
#[derive(Deserialize)]
struct Windows {
    today: i64,
    last_7_days: i64,
    last_30_days: i64,
}

/// The totals.
#[derive(Deserialize)]
struct Totals {
    repositories: i64,
    manifests: i64,
    tags: i64,
    blobs: i64,
    bytes: i64,
    exclusive_bytes: i64,
    pulls: Windows,
    pushes: Windows,
}

/// The popular listing.
#[derive(Deserialize)]
struct Popular {
    window: String,
    by: String,
    items: Vec<PopularEntry>,
}

#[derive(Deserialize)]
struct PopularEntry {
    repository: Option<String>,
    tag: Option<String>,
    subject: Option<String>,
    user: Option<String>,
    pulls: i64,
    pushes: Option<i64>,
}

/// The daily series.
#[derive(Deserialize)]
struct Trend {
    from: String,
    to: String,
    repository: Option<String>,
    points: Vec<Point>,
}

#[derive(Deserialize)]
struct Point {
    date: String,
    pulls: i64,
    heads: i64,
    pushes: i64,
    bytes_out: i64,
}

/// Runs `berth stats` against the server its flags name.
pub(super) async fn run(args: StatsArgs) -> anyhow::Result<()> {
    let remote = Remote::new(&args.remote)?;
    let mut query: Vec<(&str, String)> = Vec::new();
    if let Some(namespace) = &args.namespace {
        query.push(("namespace", namespace.clone()));
    }
    // clap lets each view's flags through only with that view, so they can all be passed on.
    let (path, pairs) = if args.popular {
        let limit = args.limit.map(|l| l.to_string());
        let pairs = vec![("window", args.window), ("by", args.by), ("limit", limit)];
        ("/stats/popular", pairs)
    } else if args.trends {
        let pairs = vec![
            ("from", args.from),
            ("to", args.to),
            ("repository", args.repository),
        ];
        ("/stats/trends", pairs)
    } else {
        ("/stats", Vec::new())
    };
    query.extend(pairs.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))));
    let text = remote.get_text(path, &query).await?;
    if args.remote.json {
        print_raw(&text);
    } else if args.popular {
        print_popular(serde_json::from_str(&text)?);
    } else if args.trends {
        print_trend(serde_json::from_str(&text)?);
    } else {
        print_totals(serde_json::from_str(&text)?);
    }
    Ok(())
}

fn print_totals(t: Totals) {
    print_fields(&[
        ("repositories", t.repositories.to_string()),
        ("images", t.manifests.to_string()),
        ("tags", t.tags.to_string()),
        ("blobs", t.blobs.to_string()),
        ("stored", size(t.bytes)),
        ("exclusive", size(t.exclusive_bytes)),
    ]);
    println!();
    let mut table = Table::new(&["", "TODAY", "7 DAYS", "30 DAYS"]).right(&[1, 2, 3]);
    for (label, w) in [("pulls", t.pulls), ("pushes", t.pushes)] {
        table.row(vec![
            label.to_owned(),
            w.today.to_string(),
            w.last_7_days.to_string(),
            w.last_30_days.to_string(),
        ]);
    }
    table.print();
}

fn print_popular(p: Popular) {
    println!("most pulled over {} (by {})", p.window, p.by);
    let text = |t: Option<String>| t.unwrap_or_else(|| "-".to_owned());
    let mut table = match p.by.as_str() {
        "tag" => Table::new(&["#", "REPOSITORY", "TAG", "PULLS"]).right(&[0, 3]),
        "user" => Table::new(&["#", "USER", "SUBJECT", "PULLS", "PUSHES"]).right(&[0, 3, 4]),
        _ => Table::new(&["#", "REPOSITORY", "PULLS"]).right(&[0, 2]),
    };
    for (rank, e) in p.items.into_iter().enumerate() {
        let rank = (rank + 1).to_string();
        table.row(match p.by.as_str() {
            "tag" => vec![rank, text(e.repository), text(e.tag), e.pulls.to_string()],
            "user" => vec![
                rank,
                text(e.user),
                text(e.subject),
                e.pulls.to_string(),
                e.pushes.unwrap_or(0).to_string(),
            ],
            _ => vec![rank, text(e.repository), e.pulls.to_string()],
        });
    }
    table.print();
}

fn print_trend(t: Trend) {
    let pulls: Vec<i64> = t.points.iter().map(|p| p.pulls).collect();
    let total: i64 = pulls.iter().sum();
    let max = pulls.iter().copied().max().unwrap_or(0);
    let scope = t.repository.as_deref().unwrap_or("every repository");
    println!(
        "pulls per day, {} to {}, {scope}: {total} in all, at most {max} a day",
        t.from, t.to
    );
    println!("{}", sparkline(&pulls));
    println!();
    let mut table =
        Table::new(&["DATE", "PULLS", "HEADS", "PUSHES", "BYTES OUT"]).right(&[1, 2, 3, 4]);
    for p in t.points {
        table.row(vec![
            p.date,
            p.pulls.to_string(),
            p.heads.to_string(),
            p.pushes.to_string(),
            size(p.bytes_out),
        ]);
    }
    table.print();
}
