//! `fleetward-agent`: enrol, poll, install, report. See the crate docs.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use fleetward_agent::{Agent, AgentConfig, config};

#[derive(Debug, Parser)]
#[command(name = "fleetward-agent", version, about = "fleetward device agent")]
struct Cli {
    /// Agent configuration file.
    #[arg(long, global = true, env = "FLEETWARD_AGENT_CONFIG", default_value = config::DEFAULT_PATH)]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Make a key pair and CSR on this device and trade an enrolment token
    /// for a certificate.
    Enroll {
        /// Overrides `server` in the configuration.
        #[arg(long)]
        server: Option<String>,
        /// The enrolment token (`fwe_…`).
        #[arg(long, env = "FLEETWARD_ENROLL_TOKEN")]
        token: String,
    },
    /// Poll the server forever (the daemon).
    Run,
    /// Poll once: report, check for an update, install it.
    Check,
    /// Show what the agent knows.
    Status,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FLEETWARD_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut config = AgentConfig::load(&cli.config)?;
    match cli.command {
        Command::Enroll { server, token } => {
            if let Some(server) = server {
                config.server = server;
            }
            let id = fleetward_agent::enroll::enroll(&config, &token)
                .await
                .context("enrolment")?;
            println!("enrolled as {id}; the director key is pinned");
        }
        Command::Run => {
            let mut agent = Agent::open(config)?;
            let (stop_tx, stop) = tokio::sync::watch::channel(false);
            tokio::spawn(async move {
                let _ = tokio::signal::ctrl_c().await;
                let _ = stop_tx.send(true);
            });
            agent.run(stop).await?;
        }
        Command::Check => {
            let mut agent = Agent::open(config)?;
            agent.note_boot()?;
            agent.report_telemetry(None)?;
            let outcome = agent.poll().await?;
            println!("{outcome:?}");
            if matches!(outcome, fleetward_agent::PollOutcome::RebootRequired(_)) {
                agent.reboot();
            }
        }
        Command::Status => {
            let agent = Agent::open(config)?;
            let state = agent.state()?;
            let status = serde_json::json!({
                "device_id": agent.config.device_id,
                "hardware": agent.config.hardware,
                "server": agent.config.server,
                "running_version": state.running_version,
                "highest_version": state.highest_version,
                "metadata_versions": state.seen,
                "director_key_pinned": state.director_key.is_some(),
                "pending": state.pending.as_ref().map(|p| serde_json::json!({
                    "version": p.offer.release, "phase": p.phase, "written": p.written, "length": p.offer.length,
                })),
                "buffered_reports": agent.reports.len()?,
            });
            println!("{}", serde_json::to_string_pretty(&status)?);
        }
    }
    Ok(())
}
