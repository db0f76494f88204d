//! `fleetward sim`: many simulated devices in one process, speaking the
//! real protocol (own keys and certificates, mutual TLS, full TUF and
//! director verification, in-memory A/B slots), for load and for trying a
//! rollout without hardware. The engine is `fleetward_agent::sim`, the same
//! one `fleetward demo` and the benchmarks use.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use fleetward_wire::identity::{CreateEnrollToken, CreatedEnrollToken};

use crate::client::Client;

#[derive(Debug, Args)]
pub struct SimArgs {
    /// How many devices.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub devices: u32,
    /// The device listener, e.g. https://fleet.example:8443.
    #[arg(long)]
    pub device_url: String,
    /// The fleet CA certificate (PEM) the devices trust the server with.
    #[arg(long)]
    pub ca: PathBuf,
    /// The image repository's root.json as provisioned on devices
    /// [default: version 1 from the operator API].
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// An enrolment token with at least --devices uses [default: one is
    /// made through the operator API, tagged sim=true].
    #[arg(long)]
    pub enroll_token: Option<String>,
    #[arg(long, default_value = "sim-")]
    pub prefix: String,
    #[arg(long, default_value = "sim")]
    pub hardware: String,
    #[arg(long, default_value = "1.0.0")]
    pub initial_version: String,
    /// Poll rounds (each device polls once per round).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Share of updates whose new slot fails to boot (they roll back).
    #[arg(long, default_value_t = 0.0)]
    pub fail_rate: f64,
    /// Share of devices that have seen a higher version (offers are rollbacks).
    #[arg(long, default_value_t = 0.0)]
    pub rollback_rate: f64,
    /// Share of polls skipped as if offline.
    #[arg(long, default_value_t = 0.0)]
    pub offline_rate: f64,
    /// Where the devices' state goes [default: a temporary directory].
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
}

fn rate(name: &str, value: f64) -> anyhow::Result<f64> {
    anyhow::ensure!(
        (0.0..=1.0).contains(&value),
        "--{name} is a share between 0 and 1, not {value}"
    );
    Ok(value)
}

pub async fn run(client: Option<Client>, args: &SimArgs) -> anyhow::Result<ExitCode> {
    let ca_pem =
        std::fs::read(&args.ca).with_context(|| format!("reading {}", args.ca.display()))?;
    let root_json = match &args.root {
        Some(path) => std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
        None => client
            .as_ref()
            .context("no --root and no operator token to fetch it with")?
            .get_bytes("/tuf/metadata/1.root.json")
            .await
            .context("fetching root.json (pass --root, or publish a root first)")?,
    };
    let token = match &args.enroll_token {
        Some(token) => token.clone(),
        None => {
            let client = client
                .as_ref()
                .context("no --enroll-token and no operator token to make one with")?;
            let mut tags = std::collections::BTreeMap::new();
            tags.insert("sim".to_owned(), "true".to_owned());
            let created: CreatedEnrollToken = client
                .post(
                    "/api/v1/enroll-tokens",
                    &CreateEnrollToken {
                        name: Some("fleetward sim".into()),
                        tags,
                        uses: args.devices,
                        expires_in_secs: 24 * 3600,
                        require_approval: false,
                        allow_listed_only: false,
                    },
                )
                .await?;
            created.token
        }
    };
    let temp = tempfile::tempdir()?;
    let sim = fleetward_agent::sim::SimConfig {
        server: args.device_url.clone(),
        ca_pem,
        root_json,
        token,
        devices: usize::try_from(args.devices)?,
        id_prefix: args.prefix.clone(),
        hardware: args.hardware.clone(),
        initial_version: args.initial_version.clone(),
        rounds: args.rounds,
        concurrency: args.concurrency,
        fail_rate: rate("fail-rate", args.fail_rate)?,
        rollback_rate: rate("rollback-rate", args.rollback_rate)?,
        offline_rate: rate("offline-rate", args.offline_rate)?,
        fail_devices: Vec::new(),
        rollback_devices: Vec::new(),
        work_dir: args
            .work_dir
            .clone()
            .unwrap_or_else(|| temp.path().to_owned()),
    };
    let (stats, elapsed) = fleetward_agent::sim::run(sim).await?;
    let mut summary = stats.summary();
    summary["poll_seconds"] = serde_json::json!(elapsed.as_secs_f64());
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(ExitCode::SUCCESS)
}
