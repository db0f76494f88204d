//! `fleetward advisories`: import advisory databases into the local index
//! that `scan` and the release gate read.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;

use crate::{Cli, output};

#[derive(Debug, Subcommand)]
pub enum AdvisoriesCommand {
    /// Import OSV (JSON or YAML) and RustSec (Markdown) advisories from
    /// directories or zip files, replacing the index. Bad files are reported
    /// and skipped.
    Import {
        /// Advisory directories or zip files (all of them make the new index).
        #[arg(required = true)]
        sources: Vec<PathBuf>,
        /// Where to write the index [default: DATA_DIR/advisories].
        #[arg(long)]
        into: Option<PathBuf>,
    },
    /// Show what the index holds and when it was imported.
    Status {
        /// The index directory [default: DATA_DIR/advisories].
        #[arg(long)]
        advisories: Option<PathBuf>,
    },
}

/// The default index directory.
pub fn default_dir(cli: &Cli) -> PathBuf {
    cli.data_dir().join("advisories")
}

pub fn run(cli: &Cli, command: &AdvisoriesCommand) -> anyhow::Result<ExitCode> {
    match command {
        AdvisoriesCommand::Import { sources, into } => {
            let dir = into.clone().unwrap_or_else(|| default_dir(cli));
            let report =
                fleetward_advisories::import(sources, &dir, time::OffsetDateTime::now_utc())
                    .context("importing advisories")?;
            if cli.json {
                output::json(&report)?;
            } else {
                println!(
                    "imported {} advisories ({} withdrawn, kept but never reported) for {} packages from {} files into {}",
                    report.header.advisories,
                    report.header.withdrawn,
                    report.header.keys,
                    report.files_read,
                    report.index.display()
                );
                if !report.errors.is_empty() {
                    eprintln!("{} files could not be imported:", report.errors.len());
                    for e in &report.errors {
                        eprintln!("  {}: {}", e.file, e.error);
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        AdvisoriesCommand::Status { advisories } => {
            let dir = advisories.clone().unwrap_or_else(|| default_dir(cli));
            let index = fleetward_advisories::Index::open(&dir)?;
            let header = index.header();
            if cli.json {
                output::json(header)?;
            } else {
                println!(
                    "{} advisories for {} packages, imported {} from {}",
                    header.advisories,
                    header.keys,
                    output::time(Some(header.imported_at)),
                    header.sources.join(", ")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
