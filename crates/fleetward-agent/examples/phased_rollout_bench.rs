//! Issue 6's fleet run, for `bench/phased-rollout.sh`: DEVICES simulated
//! devices (each enrolled with its own key, verifying the TUF and director
//! metadata on every update) under a real server in this process, and one
//! rollout over all of them with phases `1%,10%,50%,100%`, soak `0s`,
//! success threshold 95 % and at most 5 % failures, as an operator would
//! create it. A share FAIL_RATE of the installs fails to boot and rolls
//! back. The devices poll round by round until the rollout completes or
//! pauses (by itself), or MAX_ROUNDS have passed.
//!
//! Usage: phased_rollout_bench <devices> <fail-rate> [max-rounds]
//! Prints, per round, the rollout's state and phase counts on stderr, and
//! one JSON line with the outcome on stdout.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let devices: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let fail_rate: f64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(0.02);
    let max_rounds: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(20);
    let work = tempfile::tempdir().unwrap();

    let server = support::Server::start().await;
    server
        .publish("1.1.0", "sim", &support::image(64 * 1024, 2))
        .await;
    let sim = fleetward_agent::sim::SimConfig {
        server: server.device_url(),
        ca_pem: server.ca_pem().await.into_bytes(),
        root_json: server.root_bytes.clone(),
        token: server.enroll_token(devices as u32).await,
        devices,
        id_prefix: "sim-".into(),
        hardware: "sim".into(),
        initial_version: "1.0.0".into(),
        rounds: max_rounds,
        concurrency: 64,
        fail_rate,
        rollback_rate: 0.0,
        offline_rate: 0.0,
        fail_devices: Vec::new(),
        rollback_devices: Vec::new(),
        work_dir: work.path().join("sim"),
    };
    let enrol_started = Instant::now();
    let mut fleet = fleetward_agent::sim::SimFleet::enrol(&sim).await.unwrap();
    let enrol_secs = enrol_started.elapsed().as_secs_f64();
    let enrolled = fleet.stats().summary()["enrolled"].as_u64().unwrap_or(0);

    let (status, created) = server
        .post(
            "/api/v1/rollouts",
            json!({
                "release": "1.1.0",
                "target": "hw = \"sim\"",
                "phases": "1%,10%,50%,100%",
                "soak": "0s",
                "success_threshold": "95%",
                "max_failures": "5%",
            }),
        )
        .await;
    assert!(status.is_success(), "creating the rollout: {created}");
    let id = created["rollout"]["id"].as_str().unwrap().to_owned();

    let started = Instant::now();
    let mut rounds = 0;
    let mut rollout = Value::Null;
    while rounds < max_rounds {
        fleet.round(&sim).await;
        rounds += 1;
        // The engine ticks every 50 ms here: let it see the last reports.
        tokio::time::sleep(Duration::from_millis(300)).await;
        rollout = server.get(&format!("/api/v1/rollouts/{id}")).await;
        let phases: Vec<String> = rollout["phases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let c = &p["counts"];
                format!(
                    "{} {}: {}/{} ok, {} failed",
                    p["percent"].as_str().unwrap_or("?"),
                    p["state"].as_str().unwrap_or("?"),
                    c["succeeded"],
                    c["total"],
                    c["failed"]
                )
            })
            .collect();
        eprintln!(
            "round {rounds} ({:.1} s): {} phase {}; {}; devices: {}",
            started.elapsed().as_secs_f64(),
            rollout["state"].as_str().unwrap_or("?"),
            rollout["current_phase"],
            phases.join(" | "),
            fleet.stats().summary()
        );
        let state = rollout["state"].as_str().unwrap_or("");
        if matches!(state, "completed" | "paused" | "aborted") {
            break;
        }
    }
    let rollout_secs = started.elapsed().as_secs_f64();
    fleet.flush().await;
    let outcome = json!({
        "devices": devices,
        "enrolled": enrolled,
        "fail_rate": fail_rate,
        "enrol_seconds": enrol_secs,
        "rounds": rounds,
        "rollout_seconds": rollout_secs,
        "state": rollout["state"],
        "current_phase": rollout["current_phase"],
        "pause_reason": rollout["pause_reason"],
        "phases": rollout["phases"],
        "totals": rollout["totals"],
        "sim": fleet.stats().summary(),
    });
    println!("{outcome}");
    server.stop().await;
}
