//! `fleetward events …`: the security-event log: list, show, export for a
//! SIEM, and verify, online or offline.

use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use fleetward_events::Verifier;
use fleetward_server::events::{checkpoint_from_wire, from_wire, report};
use fleetward_wire::events::{EventCheckpoints, EventPage, EventVerification, SecurityEvent};

use crate::client::Client;
use crate::{Cli, output};

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// List events, oldest first.
    List {
        #[command(flatten)]
        filter: Filter,
        /// Only events after this sequence number.
        #[arg(long)]
        after: Option<u64>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Show one event.
    Show { seq: u64 },
    /// Write every matching event to a file (or stdout) for a SIEM.
    Export {
        #[command(flatten)]
        filter: Filter,
        #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
        format: ExportFormat,
        /// Output file; stdout if absent.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Also save the signed checkpoints and public key, for `verify --from`.
        #[arg(long)]
        checkpoints: Option<PathBuf>,
    },
    /// Check the hash chain and signed checkpoints; names the first bad entry.
    /// Without --from it reads the database in --data-dir directly, no server needed.
    Verify {
        /// A JSON Lines export (from `events export`) to verify instead.
        #[arg(long, requires = "checkpoints")]
        from: Option<PathBuf>,
        /// The checkpoints file saved with the export.
        #[arg(long)]
        checkpoints: Option<PathBuf>,
        /// The database to read, as `fleetward server --database-url`
        /// (e.g. postgres://…); default: SQLite in the data dir.
        #[arg(long, env = "FLEETWARD_DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
    },
}

#[derive(Debug, Clone, Args)]
pub struct Filter {
    /// Event kinds, comma-separated (e.g. identity.handshake_refused).
    #[arg(long)]
    kind: Option<String>,
    /// Lowest severity: info, low, medium, high, critical.
    #[arg(long)]
    min_severity: Option<String>,
    #[arg(long)]
    device: Option<String>,
    /// RFC 3339 time, inclusive.
    #[arg(long)]
    since: Option<String>,
    /// RFC 3339 time, exclusive.
    #[arg(long)]
    until: Option<String>,
}

impl Filter {
    fn params(&self) -> Vec<(&'static str, String)> {
        let mut params = Vec::new();
        for (name, value) in [
            ("kind", &self.kind),
            ("min_severity", &self.min_severity),
            ("device", &self.device),
            ("since", &self.since),
            ("until", &self.until),
        ] {
            if let Some(value) = value {
                params.push((name, value.clone()));
            }
        }
        params
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// One JSON object per line.
    Jsonl,
    /// RFC 5424 syslog lines.
    Syslog,
}

pub async fn run(cli: &Cli, command: &EventsCommand) -> anyhow::Result<ExitCode> {
    match command {
        EventsCommand::Verify {
            from,
            checkpoints,
            database_url,
        } => {
            verify(
                cli,
                from.as_deref(),
                checkpoints.as_deref(),
                database_url.as_deref(),
            )
            .await
        }
        other => {
            let client = crate::cmd::api_client(cli)?;
            online(&client, cli.json, other).await
        }
    }
}

async fn online(client: &Client, json: bool, command: &EventsCommand) -> anyhow::Result<ExitCode> {
    match command {
        EventsCommand::List {
            filter,
            after,
            limit,
        } => {
            let mut params = filter.params();
            params.push(("limit", limit.to_string()));
            if let Some(after) = after {
                params.push(("after", after.to_string()));
            }
            let page: EventPage = client.get("/api/v1/events", &params).await?;
            print_page(json, &page)?;
        }
        EventsCommand::Show { seq } => {
            let event: SecurityEvent = client.get(&format!("/api/v1/events/{seq}"), &[]).await?;
            output::json(&event)?;
        }
        EventsCommand::Export {
            filter,
            format,
            output: path,
            checkpoints,
        } => {
            let mut out: Box<dyn std::io::Write> = match path {
                Some(path) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(path)
                        .with_context(|| format!("creating {}", path.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            let mut after: Option<u64> = None;
            let mut written = 0u64;
            loop {
                let mut params = filter.params();
                params.push(("limit", "1000".into()));
                if let Some(after) = after {
                    params.push(("after", after.to_string()));
                }
                let page: EventPage = client.get("/api/v1/events", &params).await?;
                for event in &page.items {
                    match format {
                        ExportFormat::Jsonl => serde_json::to_writer(&mut out, event)?,
                        ExportFormat::Syslog => out.write_all(
                            fleetward_server::monitor::alerts::syslog_line(event).as_bytes(),
                        )?,
                    }
                    out.write_all(b"\n")?;
                    written += 1;
                }
                match page.next_after {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
            out.flush()?;
            if let Some(path) = checkpoints {
                let doc: EventCheckpoints = client.get("/api/v1/events/checkpoints", &[]).await?;
                std::fs::write(path, serde_json::to_vec_pretty(&doc)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            eprintln!("{written} events exported");
        }
        EventsCommand::Verify { .. } => {}
    }
    Ok(ExitCode::SUCCESS)
}

/// An event page as a table (or JSON), with the cursor for the next one.
pub fn print_page(json: bool, page: &EventPage) -> anyhow::Result<()> {
    if json {
        return output::json(page);
    }
    let rows: Vec<Vec<String>> = page
        .items
        .iter()
        .map(|e| {
            vec![
                e.seq.to_string(),
                output::time(Some(e.server_time)),
                e.severity.clone(),
                e.kind.clone(),
                e.device.clone().unwrap_or_default(),
                e.message.clone(),
            ]
        })
        .collect();
    output::table(
        &["SEQ", "AT", "SEVERITY", "KIND", "DEVICE", "MESSAGE"],
        &rows,
    );
    if let Some(next) = page.next_after {
        eprintln!("(more: --after {next})");
    }
    Ok(())
}

async fn verify(
    cli: &Cli,
    from: Option<&Path>,
    checkpoints: Option<&Path>,
    database_url: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let verification = match (from, checkpoints) {
        (Some(from), Some(checkpoints)) => verify_export(from, checkpoints)?,
        _ => {
            let data_dir = cli.data_dir();
            // Opening a missing database would create an empty one that "verifies".
            if !data_dir.join(fleetward_server::events::KEY_FILE).exists() {
                anyhow::bail!(
                    "{} has no fleetward installation (no checkpoint key); pass --data-dir",
                    data_dir.display()
                );
            }
            let url = database_url.map_or_else(
                || fleetward_server::ServerConfig::default_database_url(&data_dir),
                str::to_owned,
            );
            let store = fleetward_store::open(&url).await.with_context(|| {
                format!(
                    "opening the database {}",
                    fleetward_server::redact_url(&url)
                )
            })?;
            let signer = read_key(&data_dir)?;
            let result =
                fleetward_server::events::verify_store(&*store, &signer.verifying_key()).await;
            store.close().await;
            result?
        }
    };
    if cli.json {
        output::json(&verification)?;
    } else if verification.ok {
        println!(
            "ok: {} entries, {} signed checkpoints, {} entries after the last checkpoint",
            verification.entries, verification.checkpoints, verification.unsigned_tail
        );
    } else {
        println!(
            "TAMPERED: {}",
            verification
                .problem
                .as_deref()
                .unwrap_or("the log does not verify")
        );
    }
    Ok(if verification.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::exit::REFUSED)
    })
}

fn read_key(data_dir: &Path) -> anyhow::Result<fleetward_events::CheckpointSigner> {
    let path = data_dir.join(fleetward_server::events::KEY_FILE);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut secret = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut secret)
        .with_context(|| format!("{} is not a 32-byte hex key", path.display()))?;
    Ok(fleetward_events::CheckpointSigner::from_bytes(&secret))
}

/// Verifies an export line by line; memory stays constant.
fn verify_export(from: &Path, checkpoints: &Path) -> anyhow::Result<EventVerification> {
    let doc: EventCheckpoints = serde_json::from_slice(
        &std::fs::read(checkpoints)
            .with_context(|| format!("reading {}", checkpoints.display()))?,
    )
    .with_context(|| format!("{} is not a checkpoints file", checkpoints.display()))?;
    let mut key_bytes = [0u8; 32];
    hex::decode_to_slice(&doc.public_key, &mut key_bytes)
        .context("the checkpoints file's public key is not hex")?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(&key_bytes)
        .context("the checkpoints file's public key is not an ed25519 key")?;
    let anchor = doc.anchor.as_ref().map(checkpoint_from_wire).transpose()?;
    let checkpoints = doc
        .checkpoints
        .iter()
        .map(checkpoint_from_wire)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut verifier = match Verifier::new(&checkpoints, &key, anchor.as_ref()) {
        Ok(verifier) => verifier,
        Err(tamper) => return Ok(report(Err(tamper))),
    };
    let file = std::fs::File::open(from).with_context(|| format!("opening {}", from.display()))?;
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("{}:{}", from.display(), n + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let wire: SecurityEvent = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: not an exported event", from.display(), n + 1))?;
        let entry = from_wire(&wire).with_context(|| format!("{}:{}", from.display(), n + 1))?;
        if let Err(tamper) = verifier.push(&entry) {
            return Ok(report(Err(tamper)));
        }
    }
    Ok(report(verifier.finish()))
}
