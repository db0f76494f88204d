//! Load benchmark driver for `bench/fleet.sh`: a real server in this
//! process, one release for a real device (the agent binary updates it;
//! the script measures it) and one for simulated devices.
//!
//! Usage: fleet_bench <devices> <image-MiB> <out-dir>
//! Writes `<out>/agent.toml` (an enrolled A/B device), `<out>/image.bin`
//! and `<out>/sim.json` (simulator vs baseline), prints READY, and keeps
//! the server up until stdin closes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::BufRead as _;
use std::sync::atomic::Ordering;
use std::time::Instant;

use futures::StreamExt as _;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let devices: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let mib: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(256);
    let out = std::path::PathBuf::from(args.get(3).cloned().unwrap_or_else(|| "bench-out".into()));
    std::fs::create_dir_all(&out).unwrap();

    let server = support::Server::start().await;
    // The real device's image, and a small one for the simulated fleet.
    let image = support::image(mib * 1024 * 1024, 1);
    std::fs::write(out.join("image.bin"), &image).unwrap();
    support::offer_release(&server, "bench-1", "1.1.0", "bench", &image).await;
    drop(image);
    support::offer_release(
        &server,
        "sim-*",
        "1.1.0+sim",
        "sim",
        &support::image(64 * 1024, 2),
    )
    .await;
    let url = server.device_url();
    let device = support::enrolled(&server, &url, "bench-1", "bench", "1.0.0").await;
    let kept = device.dir.keep();
    let mut config = device.config.clone();
    config.state_dir = kept.join("state");
    std::fs::write(out.join("agent.toml"), toml::to_string(&config).unwrap()).unwrap();
    std::fs::write(
        out.join("slot-b.path"),
        kept.join("slot-b").display().to_string(),
    )
    .unwrap();

    // The simulator: enrol, then rounds of full polls (verify, install, commit).
    let sim = fleetward_agent::sim::SimConfig {
        server: url.clone(),
        ca_pem: server.ca_pem().await.into_bytes(),
        root_json: server.root_bytes.clone(),
        token: server.enroll_token(devices as u32).await,
        devices,
        id_prefix: "sim-".into(),
        hardware: "sim".into(),
        initial_version: "1.0.0".into(),
        rounds: 3,
        concurrency: 64,
        fail_rate: 0.02,
        rollback_rate: 0.0,
        offline_rate: 0.05,
        fail_devices: Vec::new(),
        rollback_devices: Vec::new(),
        work_dir: out.join("sim"),
    };
    let enrol_started = Instant::now();
    let (stats, elapsed) = fleetward_agent::sim::run(sim.clone()).await.unwrap();
    let enrol_and_poll = enrol_started.elapsed();
    let polls = stats.polls.load(Ordering::Relaxed);

    // Baseline in the same run: the same number of requests, same
    // concurrency, each a bare mutual-TLS GET /device/v1/self.
    let ca = std::fs::read(out.join("sim").join("ca.pem")).unwrap();
    let clients: Vec<fleetward_agent::net::Net> = (0..devices.min(64))
        .map(|n| {
            let dir = out.join("sim").join(format!("sim-{n:06}")).join("state");
            let cert = std::fs::read(dir.join("device.crt")).unwrap();
            let key = std::fs::read(dir.join("device.key")).unwrap();
            fleetward_agent::net::Net::new(
                &url,
                &ca,
                Some((&cert, &key)),
                &fleetward_agent::config::Limits::default(),
            )
            .unwrap()
        })
        .collect();
    let started = Instant::now();
    futures::stream::iter(0..polls as usize)
        .for_each_concurrent(64, |n| {
            let client = &clients[n % clients.len()];
            async move {
                let _: serde_json::Value = client.get_json("/device/v1/self").await.unwrap();
            }
        })
        .await;
    let baseline = started.elapsed();
    let result = serde_json::json!({
        "devices": devices,
        "stats": stats.summary(),
        "enrol_and_poll_seconds": enrol_and_poll.as_secs_f64(),
        "poll_seconds": elapsed.as_secs_f64(),
        "polls_per_second": polls as f64 / elapsed.as_secs_f64(),
        "baseline_requests_per_second": polls as f64 / baseline.as_secs_f64(),
    });
    std::fs::write(
        out.join("sim.json"),
        serde_json::to_vec_pretty(&result).unwrap(),
    )
    .unwrap();
    println!("READY");
    let _ = std::io::stdin().lock().lines().next();
    server.stop().await;
}
