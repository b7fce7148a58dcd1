//! `berth advisories import PATH`: OSV advisories from a file, a directory or a zip into the
//! configured index, offline (beside running servers, like `berth gc`).

use std::path::PathBuf;

use berth::registry::{REJECTED_LISTED, Registry};
use clap::Subcommand;

use super::IndexArgs;

#[derive(Subcommand)]
pub(super) enum AdvisoriesCommand {
    /// Import OSV records: a JSON file (one record or an array), a zip of them, or a
    /// directory (every *.json and *.zip under it). Prints what was imported and names each
    /// refused record.
    Import {
        /// The file, zip or directory.
        path: PathBuf,
    },
}

/// Runs an `advisories` command on the index `index` configures.
pub(super) async fn run(index: &IndexArgs, command: AdvisoriesCommand) -> anyhow::Result<()> {
    let config = index.load()?;
    let registry = Registry::open(&config).await?;
    let outcome = match command {
        AdvisoriesCommand::Import { path } => import(&registry, path).await,
    };
    registry.close().await;
    outcome
}

async fn import(registry: &Registry, path: PathBuf) -> anyhow::Result<()> {
    let report = registry.import_advisories_from(path).await?;
    println!(
        "imported {}, unchanged {}, rejected {}; images re-matched {}, changed {}",
        report.imported,
        report.unchanged,
        report.rejected_count,
        report.rematched_images,
        report.changed_images
    );
    for rejected in &report.rejected {
        match &rejected.id {
            Some(id) => println!("rejected {id} ({}): {}", rejected.entry, rejected.reason),
            None => println!("rejected {}: {}", rejected.entry, rejected.reason),
        }
    }
    if report.rejected_count > report.rejected.len() as u64 {
        println!("(only the first {REJECTED_LISTED} refusals are listed)");
    }
    Ok(())
}
