//! `berth gc`: collect garbage now, list past runs (`history`), or estimate what a run
//! would reclaim (`estimate`), beside running servers on the same index and store.

use berth::{config::Config, registry::Registry};
use clap::Subcommand;

use super::{
    IndexArgs,
    output::{Table, maybe_date, size},
};

#[derive(clap::Args)]
pub(super) struct GcArgs {
    #[command(flatten)]
    pub(super) index: IndexArgs,
    /// Report what would be deleted, and why, without deleting.
    #[arg(long)]
    dry_run: bool,
    /// Print every item (what, where, bytes, why), not only the counts.
    #[arg(long)]
    verbose: bool,
    /// Grace period for this run instead of the configured `gc.grace_secs`.
    // The collector counts in signed seconds: a larger value would make everything old.
    #[arg(
        long,
        value_name = "SECONDS",
        value_parser = clap::value_parser!(u64).range(..=i64::MAX as u64)
    )]
    grace_secs: Option<u64>,
    #[command(subcommand)]
    action: Option<GcAction>,
}

#[derive(Subcommand)]
enum GcAction {
    /// List recorded runs, newest first.
    History {
        /// How many runs to list.
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
    /// Reclaimable bytes per repository and in total.
    Estimate {
        /// Count only what is older than this many seconds, as a run with this grace
        /// period would (default: `gc.grace_secs`; 0 shows what a delete just freed).
        // The collector counts in signed seconds: a larger value would make everything old.
        #[arg(
        long,
        value_name = "SECONDS",
        value_parser = clap::value_parser!(u64).range(..=i64::MAX as u64)
    )]
        grace_secs: Option<u64>,
    },
}

/// `berth gc`: a collection, its history, or an estimate, on the configured index and store.
pub(super) async fn run(config: Config, args: &GcArgs) -> anyhow::Result<()> {
    let registry = Registry::open(&config).await?;
    let outcome = command(&registry, args).await;
    registry.close().await;
    outcome
}

async fn command(registry: &Registry, args: &GcArgs) -> anyhow::Result<()> {
    match args.action {
        Some(GcAction::History { limit }) => history(registry, limit).await,
        Some(GcAction::Estimate { grace_secs }) => {
            let grace = grace_secs
                .or(args.grace_secs)
                .unwrap_or(registry.gc_config().grace_secs);
            estimate(registry, grace).await
        }
        None => collect(registry, args).await,
    }
}

/// Prints the `limit` most recent runs, newest first, as a table.
async fn history(registry: &Registry, limit: i64) -> anyhow::Result<()> {
    let mut table = Table::new(&[
        "RUN",
        "TRIGGER",
        "DRY RUN",
        "STATE",
        "STARTED",
        "SECONDS",
        "MANIFESTS",
        "LINKS",
        "BLOBS",
        "UPLOADS+ORPHANS",
        "FREED",
        "ERRORS",
    ])
    .right(&[0, 5, 6, 7, 8, 9, 10, 11]);
    for run in registry.gc_runs(None, limit).await? {
        let seconds = match (run.started_at, run.finished_at) {
            (Some(s), Some(f)) => (f - s).to_string(),
            _ => "-".into(),
        };
        let c = run.counts;
        table.row(vec![
            run.id.to_string(),
            run.trigger,
            if run.dry_run { "yes" } else { "no" }.to_owned(),
            run.state,
            maybe_date(run.started_at),
            seconds,
            c.manifests.to_string(),
            c.links.to_string(),
            c.blobs.to_string(),
            (c.uploads + c.orphans).to_string(),
            size(c.bytes),
            c.errors.to_string(),
        ]);
    }
    table.print();
    Ok(())
}

/// Prints the reclaimable links and bytes of each repository as a table, then the total,
/// as a collection with a grace period of `grace_secs` would see them.
async fn estimate(registry: &Registry, grace_secs: u64) -> anyhow::Result<()> {
    let (repositories, blobs, bytes) = registry.gc_estimate_with_grace(grace_secs).await?;
    let mut table = Table::new(&["REPOSITORY", "LINKS", "RECLAIMABLE"]).right(&[1, 2]);
    for r in repositories {
        table.row(vec![
            r.repository,
            r.unreferenced_links.to_string(),
            size(r.unreferenced_bytes),
        ]);
    }
    table.print();
    println!(
        "reclaimable now: {blobs} blobs, {} (grace period {grace_secs} s)",
        size(bytes)
    );
    Ok(())
}

/// Runs a collection with a progress spinner and prints what it deleted (or would delete).
async fn collect(registry: &Registry, args: &GcArgs) -> anyhow::Result<()> {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {elapsed} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let progress = |phase: &str, n: u64| bar.set_message(format!("{phase}: {n} checked"));
    let mut options = registry.gc_options(args.dry_run);
    if let Some(grace) = args.grace_secs {
        options.grace_secs = grace;
    }
    let run = registry.run_gc("cli", options, &progress).await?;
    bar.finish_and_clear();
    let report: Option<serde_json::Value> = run
        .report
        .as_ref()
        .map(|r| serde_json::from_str(r.get()))
        .transpose()?;
    if args.verbose
        && let Some(items) = report
            .as_ref()
            .and_then(|r| r.get("items"))
            .and_then(|i| i.as_array())
    {
        for item in items {
            println!("{item}");
        }
    }
    let c = run.counts;
    println!(
        "run {} {}: {} manifests, {} links, {} blobs, {} upload sessions, {} orphan objects, \
         {} bytes{}; {} errors",
        run.id,
        if run.dry_run {
            "(dry run) would delete"
        } else {
            "deleted"
        },
        c.manifests,
        c.links,
        c.blobs,
        c.uploads,
        c.orphans,
        c.bytes,
        if run.dry_run {
            " reclaimable"
        } else {
            " reclaimed"
        },
        c.errors
    );
    if let Some(phases) = report.as_ref().and_then(|r| r.get("phase_secs")) {
        println!("phases (wall seconds): {phases}");
    }
    if run.state == "failed" {
        anyhow::bail!("the run failed: {}", report.unwrap_or_default());
    }
    Ok(())
}
