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
    /// Run N simulated agents in this process against a real server
    /// (load generator; the configuration file is not read).
    Sim(SimArgs),
    /// Hash a file the way downloads are hashed (benchmarks).
    #[command(hide = true)]
    Hash { file: PathBuf },
}

#[derive(Debug, clap::Args)]
struct SimArgs {
    #[arg(long, default_value_t = 100)]
    devices: usize,
    /// The device listener, e.g. https://127.0.0.1:8443.
    #[arg(long)]
    server: String,
    /// An enrolment token with at least --devices uses.
    #[arg(long)]
    token: String,
    /// The fleet CA certificate (PEM).
    #[arg(long)]
    ca: PathBuf,
    /// The image repository's root.json.
    #[arg(long)]
    root: PathBuf,
    #[arg(long, default_value = "sim-")]
    prefix: String,
    #[arg(long, default_value = "sim")]
    hardware: String,
    #[arg(long, default_value = "1.0.0")]
    initial_version: String,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Share of updates whose new slot fails to boot.
    #[arg(long, default_value_t = 0.0)]
    fail_rate: f64,
    /// Share of devices that have seen a higher version (offers are rollbacks).
    #[arg(long, default_value_t = 0.0)]
    rollback_rate: f64,
    /// Share of polls skipped as if offline.
    #[arg(long, default_value_t = 0.0)]
    offline_rate: f64,
    /// Where device state goes (default: a temporary directory).
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // One device, one thread: a current-thread runtime keeps the agent's
    // memory small; the simulator runs thousands of agents and wants all cores.
    let runtime = if matches!(cli.command, Command::Sim(_)) {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    };
    match runtime {
        Ok(runtime) => runtime.block_on(async_main(cli)),
        Err(error) => {
            eprintln!("error: starting the runtime: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn async_main(cli: Cli) -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FLEETWARD_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn simulate(args: SimArgs) -> anyhow::Result<()> {
    let temp = tempfile::tempdir()?;
    let work_dir = args.work_dir.unwrap_or_else(|| temp.path().to_owned());
    let sim = fleetward_agent::sim::SimConfig {
        server: args.server,
        ca_pem: std::fs::read(&args.ca).with_context(|| args.ca.display().to_string())?,
        root_json: std::fs::read(&args.root).with_context(|| args.root.display().to_string())?,
        token: args.token,
        devices: args.devices,
        id_prefix: args.prefix,
        hardware: args.hardware,
        initial_version: args.initial_version,
        rounds: args.rounds,
        concurrency: args.concurrency,
        fail_rate: args.fail_rate,
        rollback_rate: args.rollback_rate,
        offline_rate: args.offline_rate,
        fail_devices: Vec::new(),
        rollback_devices: Vec::new(),
        work_dir,
    };
    let (stats, elapsed) = fleetward_agent::sim::run(sim).await?;
    let mut summary = stats.summary();
    summary["poll_seconds"] = serde_json::json!(elapsed.as_secs_f64());
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Sim(args) = cli.command {
        return simulate(args).await;
    }
    if let Command::Hash { file } = &cli.command {
        use std::io::Read as _;
        let mut input = std::fs::File::open(file).with_context(|| file.display().to_string())?;
        let mut hasher = fleetward_agent::agent::ImageHash::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = input.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        println!("{}  {}", hasher.finish_hex(), file.display());
        return Ok(());
    }
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
        Command::Sim(_) | Command::Hash { .. } => {}
    }
    Ok(())
}
