//! `fleetward`: the one binary operators run.
//!
//! It is the server (`fleetward server`), the first-run set-up
//! (`fleetward init`), the operator CLI over the HTTP API (`device`, `token`,
//! `audit`, `settings`), and the demo. `main` handles errors once and maps
//! them to the documented exit codes.

mod client;
mod cmd;
mod exit;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// fleetward: secure updates, device identity and security monitoring for IoT fleets.
#[derive(Debug, Parser)]
#[command(name = "fleetward", version, about, long_about = None, after_help = exit::EXIT_CODES_HELP)]
pub struct Cli {
    /// Directory holding local state: database, artifacts, server.json [default: ./fleetward-data]
    #[arg(long, global = true, env = "FLEETWARD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Operator API base URL. Default: the local server found in DATA_DIR/server.json, else http://127.0.0.1:8080.
    #[arg(long, global = true, env = "FLEETWARD_SERVER")]
    pub server: Option<String>,

    /// Operator token (`fwt_…`).
    #[arg(long, global = true, env = "FLEETWARD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Print JSON instead of tables, for scripts.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    pub const DEFAULT_DATA_DIR: &str = "./fleetward-data";

    /// The data dir from `--data-dir` or `FLEETWARD_DATA_DIR`, else the default.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(Self::DEFAULT_DATA_DIR))
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the data dir and database, and print the first admin token (once).
    Init(cmd::server::InitArgs),
    /// Run the server: operator API and device API.
    Server(cmd::server::ServerArgs),
    /// Run a self-contained demonstration on a temporary data dir.
    Demo(cmd::demo::DemoArgs),
    /// Simulated devices speaking the real protocol (load, trying rollouts).
    Sim(cmd::sim::SimArgs),
    /// Devices in the registry.
    #[command(subcommand)]
    Device(cmd::device::DeviceCommand),
    /// Releases: upload, sign with offline keys, publish, revoke.
    #[command(subcommand)]
    Release(cmd::release::ReleaseCommand),
    /// Rollouts: ship a published release to a query, phase by phase.
    #[command(subcommand)]
    Rollout(cmd::rollout::RolloutCommand),
    /// Offline root and targets keys of the image repository.
    #[command(subcommand)]
    Keys(cmd::keys::KeysCommand),
    /// Operator tokens.
    #[command(subcommand)]
    Token(cmd::token::TokenCommand),
    /// Enrolment tokens: how devices get their certificates.
    #[command(subcommand)]
    EnrollToken(cmd::identity::EnrollTokenCommand),
    /// The audit log of operator actions.
    #[command(subcommand)]
    Audit(cmd::audit::AuditCommand),
    /// The tamper-evident security-event log: list, show, export, verify.
    #[command(subcommand)]
    Events(cmd::events::EventsCommand),
    /// Move an installation from SQLite to PostgreSQL (event chain intact, verified).
    Migrate(cmd::migrate::MigrateArgs),
    /// Server settings.
    #[command(subcommand)]
    Settings(cmd::settings::SettingsCommand),
    /// Scan an SBOM or Cargo.lock for vulnerabilities and licences against policy (no server needed).
    Scan(cmd::scan::ScanArgs),
    /// The local advisory index that `scan` and the release gate read.
    #[command(subcommand)]
    Advisories(cmd::advisories::AdvisoriesCommand),
    /// Show who the token belongs to and its role.
    Whoami,
    /// Print shell completions.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// The server answers each request with many short-lived allocations from
/// two or more threads at once; glibc's allocator was a seventh of a device
/// lookup's time, and mimalloc's thread-local free lists suit that load
/// (BENCHMARKS.md, device registry).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cmd::run_offline(&cli) {
        Some(result) => result,
        None => match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime.block_on(cmd::run(cli)),
            Err(error) => {
                eprintln!("error: starting the async runtime: {error}");
                return ExitCode::from(exit::ERROR);
            }
        },
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            exit::code_for(&error)
        }
    }
}
