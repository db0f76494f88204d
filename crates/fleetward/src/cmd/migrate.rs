//! `fleetward migrate`: moves a whole installation from SQLite to
//! PostgreSQL, the event chain intact, and verifies it on arrival.

use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Args;
use fleetward_server::{ServerConfig, redact_url};
use fleetward_store::{EventLog as _, PostgresStore, SqliteStore};

use crate::Cli;

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The SQLite database to copy (sqlite://PATH); default: the data dir's.
    #[arg(long)]
    pub from: Option<String>,
    /// The new, empty PostgreSQL database (postgres://…); its tables are created.
    #[arg(long)]
    pub to: String,
}

pub async fn run(cli: &Cli, args: &MigrateArgs) -> anyhow::Result<ExitCode> {
    let data_dir = cli.data_dir();
    let from = args
        .from
        .clone()
        .unwrap_or_else(|| ServerConfig::default_database_url(&data_dir));
    let Some(path) = from.strip_prefix("sqlite://") else {
        bail!("--from must be a sqlite:// URL, not {}", redact_url(&from));
    };
    // Opening a missing SQLite file would create an empty one and "migrate" nothing.
    if !std::path::Path::new(path).is_file() {
        bail!("{path} does not exist; pass --from sqlite://PATH or --data-dir");
    }
    if !(args.to.starts_with("postgres://") || args.to.starts_with("postgresql://")) {
        bail!(
            "--to must be a postgres:// URL, not {}",
            redact_url(&args.to)
        );
    }
    let source = SqliteStore::open(&from)
        .await
        .with_context(|| format!("opening {}", redact_url(&from)))?;
    let target = PostgresStore::open(&args.to)
        .await
        .with_context(|| format!("opening {}", redact_url(&args.to)))?;
    let result = async {
        let report = fleetward_store::copy_sqlite_to_postgres(&source, &target)
            .await
            .context("copying")?;
        let head = source.event_head().await?;
        if target.event_head().await? != head {
            bail!("the copied event chain ends elsewhere than the source's");
        }
        // The chain verifies on arrival, checkpoint signatures included when
        // the data dir's checkpoint key is at hand.
        let key_path = data_dir.join(fleetward_server::events::KEY_FILE);
        let verified = if key_path.exists() {
            let key = std::fs::read_to_string(&key_path)
                .with_context(|| format!("reading {}", key_path.display()))?;
            let mut secret = [0u8; 32];
            hex::decode_to_slice(key.trim(), &mut secret)
                .with_context(|| format!("{} is not a 32-byte hex key", key_path.display()))?;
            let signer = fleetward_events::CheckpointSigner::from_bytes(&secret);
            let verification =
                fleetward_server::events::verify_store(&target, &signer.verifying_key()).await?;
            if !verification.ok {
                bail!(
                    "the copied event log does not verify: {}",
                    verification.problem.unwrap_or_default()
                );
            }
            Some(verification.entries)
        } else {
            None
        };
        Ok((report, verified))
    }
    .await;
    source.close().await;
    use fleetward_store::Store as _;
    target.close().await;
    let (report, verified) = result?;
    if cli.json {
        let tables: serde_json::Map<String, serde_json::Value> = report
            .tables
            .iter()
            .map(|(name, rows)| (name.clone(), (*rows).into()))
            .collect();
        crate::output::json(&serde_json::json!({
            "tables": tables,
            "event_head": report.event_head_seq,
            "verified_entries": verified,
        }))?;
    } else {
        for (name, rows) in &report.tables {
            println!("{name:<20} {rows:>10} rows");
        }
        match verified {
            Some(entries) => println!(
                "event log: {entries} entries verified, chain head at {}",
                report.event_head_seq
            ),
            None => println!(
                "event log: chain head at {}, not verified (no checkpoint key in {}); run \
                 `fleetward events verify --database-url …` with the data dir",
                report.event_head_seq,
                data_dir.display()
            ),
        }
    }
    Ok(ExitCode::SUCCESS)
}
