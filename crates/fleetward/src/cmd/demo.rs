//! `fleetward demo`: the whole product on a fresh machine, with nothing but
//! this binary.
//!
//! It starts a real server (embedded SQLite in a temporary data dir, free
//! ports), initialises it, and drives it only through the public operator
//! API, exactly as a user's scripts would. It grows as features land.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use fleetward_core::DeviceStatus;
use fleetward_server::ServerConfig;
use fleetward_wire::operator::{AuditPage, Device, DeviceCount, DevicePage, RegisterDevice};

use crate::client::Client;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the server running after the demo (until Ctrl-C).
    #[arg(long)]
    pub keep: bool,
    /// How many simulated devices to register.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub devices: u32,
    /// Operator listener (default: a free port on 127.0.0.1).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
}

const HARDWARE: [&str; 2] = ["rev1", "rev2"];
const REGIONS: [&str; 3] = ["eu", "us", "apac"];

/// A deterministic, varied fleet: hardware, region, a beta ring, versions.
fn demo_fleet(count: u32) -> Vec<RegisterDevice> {
    (0..count)
        .map(|n| {
            let index = usize::try_from(n).unwrap_or(0);
            let mut tags = BTreeMap::new();
            tags.insert(
                "region".to_owned(),
                REGIONS[index % REGIONS.len()].to_owned(),
            );
            if n % 10 == 0 {
                tags.insert("beta".to_owned(), String::new());
            }
            RegisterDevice {
                id: format!("demo-{n:05}"),
                hardware: HARDWARE[index % HARDWARE.len()].to_owned(),
                version: Some(if n % 4 == 0 {
                    "0.9.2".to_owned()
                } else {
                    "1.0.0".to_owned()
                }),
                tags,
                status: Some(DeviceStatus::Active),
            }
        })
        .collect()
}

pub async fn run(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    let dir = tempfile::Builder::new()
        .prefix("fleetward-demo-")
        .tempdir()
        .context("creating a temporary data dir")?;
    let data_dir = dir.path().to_owned();
    let database_url = ServerConfig::default_database_url(&data_dir);
    println!("fleetward demo — data dir {}", data_dir.display());

    let init = fleetward_server::init::initialize(
        &data_dir,
        &database_url,
        time::OffsetDateTime::now_utc(),
    )
    .await?;
    let config = ServerConfig {
        data_dir: data_dir.clone(),
        database_url,
        listen: args.listen,
        device_listen: "127.0.0.1:0".parse().context("device address")?,
        max_body_bytes: ServerConfig::DEFAULT_MAX_BODY_BYTES,
        identity: Default::default(),
        releases: Default::default(),
        monitor: Default::default(),
        rollout_tick: fleetward_server::rollout::DEFAULT_TICK,
    };
    let server = fleetward_server::start(config).await?;
    let base = format!("http://{}", server.addrs.operator);
    println!(
        "server up: operator API {base}, device API https://{} (mutual TLS)",
        server.addrs.device
    );
    let client = Client::new(&base, Some(init.admin_token.clone()))?;

    let outcome = drive(&client, args.devices).await;
    if let Err(error) = &outcome {
        eprintln!("demo failed: {error:#}");
    }
    if args.keep && outcome.is_ok() {
        println!();
        println!("The server keeps running. Try:");
        println!(
            "    export FLEETWARD_SERVER={base} FLEETWARD_TOKEN={}",
            init.admin_token
        );
        println!("    fleetward device list --query 'region = \"eu\" and not beta'");
        println!(
            "    curl -H \"Authorization: Bearer $FLEETWARD_TOKEN\" {base}/api/v1/devices/count"
        );
        println!("OpenAPI document: {base}/api/v1/openapi.json — Ctrl-C to stop.");
        server.run_until(super::server::shutdown_signal()).await?;
    } else {
        server.shutdown().await?;
    }
    drop(dir);
    outcome.map(|()| ExitCode::SUCCESS)
}

async fn drive(client: &Client, devices: u32) -> anyhow::Result<()> {
    let fleet = demo_fleet(devices);
    let progress = indicatif::ProgressBar::new(u64::from(devices));
    progress.set_style(
        indicatif::ProgressStyle::with_template("registering devices {bar:40} {pos}/{len}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    for device in &fleet {
        let _: Device = client.post("/api/v1/devices", device).await?;
        progress.inc(1);
    }
    progress.finish();

    println!();
    println!("Target queries run in the database:");
    for query in [
        r#"hw = "rev2""#,
        r#"region in ("eu", "us") and not beta"#,
        r#"version < "1.0.0""#,
        r#"hw = "rev1" and region = "apac" and version >= "1.0.0""#,
    ] {
        let count: DeviceCount = client
            .get("/api/v1/devices/count", &[("query", query.to_owned())])
            .await?;
        println!("  {:>5}  {query}", count.count);
    }
    let page: DevicePage = client
        .get(
            "/api/v1/devices",
            &[("query", "beta".to_owned()), ("limit", "3".to_owned())],
        )
        .await?;
    let first: Vec<&str> = page.items.iter().map(|d| d.id.as_str()).collect();
    println!("  first beta devices: {}", first.join(", "));

    let audit: AuditPage = client
        .get("/api/v1/audit", &[("limit", "1000".to_owned())])
        .await?;
    println!();
    println!(
        "Summary: {devices} devices registered, {} audit records written.",
        audit.items.len()
    );
    Ok(())
}
