//! `fleetward init` and `fleetward server`, and where server settings come
//! from: flags win over `FLEETWARD_*` variables, which win over
//! `fleetward.toml`, which wins over the defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use fleetward_server::ServerConfig;
use serde::Deserialize;

use crate::Cli;

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Database URL; default: SQLite in the data dir.
    #[arg(long, env = "FLEETWARD_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Configuration file. Default: fleetward.toml in the current directory, if there is one.
    #[arg(long, env = "FLEETWARD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Operator listener (API and console). Port 0 picks a free port.
    #[arg(long, env = "FLEETWARD_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Device listener.
    #[arg(long, env = "FLEETWARD_DEVICE_LISTEN")]
    pub device_listen: Option<SocketAddr>,
    /// Database URL: sqlite://PATH (default: DATA_DIR/fleetward.db) or postgres://…
    #[arg(long, env = "FLEETWARD_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Largest request body the operator API accepts, in bytes.
    #[arg(long, env = "FLEETWARD_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Largest artifact (release image, SBOM) accepted, in bytes [default: 4 GiB].
    #[arg(long, env = "FLEETWARD_MAX_ARTIFACT_BYTES")]
    pub max_artifact_bytes: Option<u64>,
    /// Where artifacts are stored [default: DATA_DIR/artifacts].
    #[arg(long, env = "FLEETWARD_ARTIFACT_DIR")]
    pub artifact_dir: Option<PathBuf>,
    /// Log filter, e.g. `info` or `fleetward_server=debug`.
    #[arg(long, env = "FLEETWARD_LOG", default_value = "info")]
    pub log: String,
}

/// `fleetward.toml`. Every key is optional; unknown keys are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub device_listen: Option<SocketAddr>,
    pub database_url: Option<String>,
    pub max_body_bytes: Option<usize>,
    pub max_artifact_bytes: Option<u64>,
    pub artifact_dir: Option<PathBuf>,
}

impl FileConfig {
    fn load(explicit: Option<&Path>) -> anyhow::Result<Self> {
        let (path, required) = match explicit {
            Some(path) => (path.to_owned(), true),
            None => (PathBuf::from("fleetward.toml"), false),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                toml::from_str(&text).with_context(|| format!("reading {}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                Ok(FileConfig::default())
            }
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DEVICE_LISTEN: &str = "127.0.0.1:8443";

/// Resolves the server's configuration: flag or environment, then file, then default.
pub fn resolve(cli: &Cli, args: &ServerArgs, file: FileConfig) -> anyhow::Result<ServerConfig> {
    let data_dir = cli
        .data_dir
        .clone()
        .or(file.data_dir)
        .unwrap_or_else(|| PathBuf::from(Cli::DEFAULT_DATA_DIR));
    let parse = |s: &str| s.parse::<SocketAddr>().context("built-in address");
    Ok(ServerConfig {
        database_url: args
            .database_url
            .clone()
            .or(file.database_url)
            .unwrap_or_else(|| ServerConfig::default_database_url(&data_dir)),
        listen: args
            .listen
            .or(file.listen)
            .map_or_else(|| parse(DEFAULT_LISTEN), Ok)?,
        device_listen: args
            .device_listen
            .or(file.device_listen)
            .map_or_else(|| parse(DEFAULT_DEVICE_LISTEN), Ok)?,
        max_body_bytes: args
            .max_body_bytes
            .or(file.max_body_bytes)
            .unwrap_or(ServerConfig::DEFAULT_MAX_BODY_BYTES),
        releases: {
            let mut releases = fleetward_server::repo::ReleaseConfig::default();
            if let Some(max) = args.max_artifact_bytes.or(file.max_artifact_bytes) {
                releases.max_artifact_bytes = max;
            }
            releases.artifact_dir = args.artifact_dir.clone().or(file.artifact_dir);
            releases
        },
        data_dir,
    })
}

pub async fn init(cli: &Cli, args: &InitArgs) -> anyhow::Result<ExitCode> {
    let data_dir = cli.data_dir();
    let url = args
        .database_url
        .clone()
        .unwrap_or_else(|| ServerConfig::default_database_url(&data_dir));
    let done = fleetward_server::init::initialize(&data_dir, &url, time::OffsetDateTime::now_utc())
        .await?;
    if cli.json {
        crate::output::json(
            &serde_json::json!({ "admin_token": done.admin_token, "token_id": done.token_id }),
        )?;
    } else {
        println!("Initialised {}.", data_dir.display());
        println!();
        println!("First admin token (shown once; it is stored only as a hash):");
        println!();
        println!("    {}", done.admin_token);
        println!();
        println!("Start the server with `fleetward server`, then e.g.");
        println!("    export FLEETWARD_TOKEN=<the token above>");
        println!("    fleetward device list");
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn serve(cli: &Cli, args: &ServerArgs) -> anyhow::Result<ExitCode> {
    init_logging(&args.log)?;
    let file = FileConfig::load(args.config.as_deref())?;
    let config = resolve(cli, args, file)?;
    tracing::info!(
        data_dir = %config.data_dir.display(),
        database = %fleetward_server::redact_url(&config.database_url),
        "starting"
    );
    let server = fleetward_server::start(config).await?;
    server.run_until(shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

pub fn init_logging(filter: &str) -> anyhow::Result<()> {
    let filter =
        tracing_subscriber::EnvFilter::try_new(filter).context("parsing the log filter")?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .try_init()
        .ok();
    Ok(())
}

/// SIGINT or SIGTERM: stop accepting, finish what is in flight, close the store.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
