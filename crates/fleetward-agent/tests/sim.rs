//! The fleet simulator against a real server: every simulated device
//! enrols with its own key, verifies and "installs" the offered release,
//! and injected boot failures come back as rollbacks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::atomic::Ordering;

use support::{Server, image, offer_release};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_devices_update_and_roll_back() {
    let server = Server::start().await;
    offer_release(&server, "sim-*", "1.1.0", "sim", &image(64 * 1024, 9)).await;
    let work = tempfile::tempdir().unwrap();
    let devices = 24;
    let sim = fleetward_agent::sim::SimConfig {
        server: server.device_url(),
        ca_pem: server.ca_pem().await.into_bytes(),
        root_json: server.root_bytes.clone(),
        token: server.enroll_token(devices as u32).await,
        devices,
        id_prefix: "sim-".into(),
        hardware: "sim".into(),
        initial_version: "1.0.0".into(),
        rounds: 3,
        concurrency: 8,
        fail_rate: 0.0,
        rollback_rate: 0.0,
        offline_rate: 0.0,
        fail_devices: Vec::new(),
        rollback_devices: Vec::new(),
        work_dir: work.path().to_owned(),
    };
    let (stats, _) = fleetward_agent::sim::run(sim.clone()).await.unwrap();
    assert_eq!(stats.enrolled.load(Ordering::Relaxed), devices as u64);
    assert_eq!(
        stats.poll_errors.load(Ordering::Relaxed),
        0,
        "{}",
        stats.summary()
    );
    // Round 1 installs, round 2 commits after the reboot, round 3 is up to date.
    assert_eq!(
        stats.updated.load(Ordering::Relaxed),
        devices as u64,
        "{}",
        stats.summary()
    );
    let count = server.get("/api/v1/devices/count").await;
    assert_eq!(count["count"], devices);
    let telemetry = server.get("/api/v1/devices/sim-000003/telemetry").await;
    assert!(!telemetry["telemetry"].as_array().unwrap().is_empty());

    // Every new slot fails to boot: all roll back; every device is a rollback target.
    let failing = fleetward_agent::sim::SimConfig {
        token: server.enroll_token(8).await,
        devices: 8,
        id_prefix: "bad-".into(),
        fail_rate: 1.0,
        work_dir: work.path().join("bad"),
        ..sim.clone()
    };
    // Enrolled after the rollout started: reached by its next ticks, so
    // wait for those before the rounds (the rounds themselves do not wait).
    let mut fleet = fleetward_agent::sim::SimFleet::enrol(&failing)
        .await
        .unwrap();
    assert_eq!(wait_until_let_out(&server, "1.1.0", 8).await, 8);
    for _ in 0..failing.rounds {
        fleet.round(&failing).await;
    }
    fleet.flush().await;
    let stats = fleet.stats();
    assert_eq!(
        stats.rolled_back.load(Ordering::Relaxed),
        8,
        "{}",
        stats.summary()
    );
    // The anti-rollback case: a release of its own for other hardware.
    offer_release(&server, "old-*", "1.2.0", "old", &image(64 * 1024, 10)).await;
    let rollback = fleetward_agent::sim::SimConfig {
        token: server.enroll_token(4).await,
        devices: 4,
        id_prefix: "old-".into(),
        hardware: "old".into(),
        rollback_rate: 1.0,
        rounds: 1,
        work_dir: work.path().join("old"),
        ..sim
    };
    // Late enrolments are reached by the continuous rollout on its next
    // ticks (queued, then let out): wait for that before the one round.
    let mut fleet = fleetward_agent::sim::SimFleet::enrol(&rollback)
        .await
        .unwrap();
    assert_eq!(
        wait_until_let_out(&server, "1.2.0", 4).await,
        4,
        "the rollout let the late devices out"
    );
    fleet.round(&rollback).await;
    fleet.flush().await;
    let stats = fleet.stats();
    assert_eq!(
        stats.refused.load(Ordering::Relaxed),
        4,
        "{}",
        stats.summary()
    );
    assert!(
        server
            .device_events("old-000000")
            .await
            .iter()
            .any(|k| k == "device.rollback_attempt")
    );
    server.stop().await;
}

/// Waits (up to 10 s) until the rollout of `release` has `expected` devices
/// let out (released or in progress); returns how many it has.
async fn wait_until_let_out(server: &support::Server, release: &str, expected: u64) -> u64 {
    let rollouts = server.get("/api/v1/rollouts").await;
    let id = rollouts["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["release"] == release)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut ready = 0;
    for _ in 0..200 {
        let rollout = server.get(&format!("/api/v1/rollouts/{id}")).await;
        let totals = &rollout["totals"];
        ready = totals["released"].as_u64().unwrap() + totals["in_progress"].as_u64().unwrap();
        if ready == expected {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    ready
}
