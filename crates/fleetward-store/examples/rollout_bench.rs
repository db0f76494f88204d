//! Issue 6 benchmark: create a rollout over a large registry and assign
//! every device its phase, in one transaction. SQLite by default; with
//! `FLEETWARD_BENCH_DATABASE_URL=postgres://…` the same on PostgreSQL (issue
//! 9; `BACKEND=postgres bench/rollouts.sh` starts a private one).
//!
//! Goal: 1,000,000 devices in under 5 s and under 1 GiB RSS. The baseline,
//! measured in the same run on the same database, is counting the same
//! target set (`count_devices`): the read every rollout creation must do at
//! least. Usage: `rollout_bench [DEVICES]` (default 1000000).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Instant;

use fleetward_core::query::parse;
use fleetward_core::{DeviceId, DeviceStatus, ReleaseState, Tag};
use fleetward_rollout::{Phases, Settings, phase_of};
use fleetward_store::{
    ArtifactRecord, AuditEntry, NewDevice, ReleaseRecord, ReleaseTransition, RolloutRecord,
    RolloutState,
};
use time::OffsetDateTime;

fn audit(action: &str) -> AuditEntry {
    AuditEntry {
        at: OffsetDateTime::now_utc(),
        actor: "bench".into(),
        action: action.into(),
        target: "bench".into(),
        source: "bench".into(),
        detail: serde_json::json!({}),
    }
}

/// Peak resident set size of this process, in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

#[tokio::main]
async fn main() {
    let devices: usize = std::env::args()
        .nth(1)
        .map_or(1_000_000, |n| n.parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let url = std::env::var("FLEETWARD_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| format!("sqlite://{}", dir.path().join("bench.db").display()));
    let backend = if url.starts_with("sqlite:") {
        "SQLite"
    } else {
        "PostgreSQL"
    };
    let store = fleetward_store::open(&url).await.unwrap();
    let now = OffsetDateTime::now_utc();

    let started = Instant::now();
    let mut batch = Vec::with_capacity(10_000);
    for n in 0..devices {
        batch.push(NewDevice {
            id: DeviceId::parse(&format!("dev-{n:07}")).unwrap(),
            hardware: "rev2".into(),
            version: Some("1.3.0".into()),
            status: DeviceStatus::Active,
            tags: vec![
                Tag::parse(if n % 10 == 0 {
                    "ring=canary"
                } else {
                    "ring=field"
                })
                .unwrap(),
            ],
        });
        if batch.len() == 10_000 || n + 1 == devices {
            store
                .register_devices(&batch, now, &audit("device.register"))
                .await
                .unwrap();
            batch.clear();
        }
    }
    eprintln!("registered {devices} devices in {:.1?}", started.elapsed());
    let artifact = ArtifactRecord {
        sha256: "ab".repeat(32),
        sha512: "ab".repeat(64),
        length: 1,
        created_at: now,
    };
    store.insert_artifact(&artifact, &audit("a")).await.unwrap();
    store
        .insert_release(
            &ReleaseRecord {
                version: "1.4.0".into(),
                hardware: "rev2".into(),
                state: ReleaseState::Draft,
                target_name: "rev2/1.4.0/fw.img".into(),
                artifact_sha256: artifact.sha256.clone(),
                sbom_sha256: None,
                notes: String::new(),
                created_at: now,
                created_by: "bench".into(),
                updated_at: now,
            },
            &audit("r"),
        )
        .await
        .unwrap();
    for (from, to) in [
        (ReleaseState::Draft, ReleaseState::Signed),
        (ReleaseState::Signed, ReleaseState::Published),
    ] {
        store
            .publish_tuf(
                &[],
                &[ReleaseTransition {
                    version: "1.4.0".into(),
                    from,
                    to,
                    at: now,
                }],
                &audit("p"),
            )
            .await
            .unwrap();
    }

    let target = parse(r#"hw = "rev2""#).unwrap();
    let rss_before = peak_rss_mib();
    let baseline_started = Instant::now();
    let matching = store.count_devices(Some(&target)).await.unwrap();
    let baseline = baseline_started.elapsed();

    let phases = Phases::parse("1%,10%,50%,100%").unwrap();
    let id = "ro-bench".to_owned();
    let phase_id = id.clone();
    let phase_phases = phases.clone();
    let rollout = RolloutRecord {
        id: id.clone(),
        release_version: "1.4.0".into(),
        hardware: "rev2".into(),
        target: target.to_string(),
        settings: Settings {
            phases: Some(phases.to_string()),
            ..Settings::default()
        },
        state: RolloutState::Running,
        current_phase: 0,
        phase_started_at: now,
        soak_started_at: None,
        pause_reason: None,
        rollback_of: None,
        created_at: now,
        created_by: "bench".into(),
        updated_at: now,
    };
    let create_started = Instant::now();
    let outcome = store
        .create_rollout(
            &rollout,
            &target,
            Arc::new(move |d: &DeviceId| {
                phase_of(&phase_id, d, &phase_phases).map(|p| u32::try_from(p).unwrap())
            }),
            true,
            &audit("rollout.create"),
        )
        .await
        .unwrap();
    let create = create_started.elapsed();
    assert_eq!(outcome.queued, matching);
    let counts = store.rollout_counts(&id).await.unwrap();
    let per_phase: Vec<u64> = counts.iter().map(|c| c.count).collect();
    println!("## Rollouts (issue 6)\n");
    println!(
        "Create a rollout over {devices} registered devices ({backend}, one transaction, phases 1%,10%,50%,100%):\n"
    );
    println!("| measure | value |\n|---|---|");
    println!(
        "| devices queued | {} (per phase {per_phase:?}) |",
        outcome.queued
    );
    println!(
        "| baseline: count the target set | {:.3} s |",
        baseline.as_secs_f64()
    );
    println!("| create + assign phases | {:.3} s |", create.as_secs_f64());
    println!(
        "| ratio create / baseline | {:.1} |",
        create.as_secs_f64() / baseline.as_secs_f64().max(1e-9)
    );
    println!(
        "| devices per second | {:.0} |",
        outcome.queued as f64 / create.as_secs_f64()
    );
    println!(
        "| peak RSS before / after | {rss_before:.0} MiB / {:.0} MiB |",
        peak_rss_mib()
    );
    println!(
        "| load average | {} |",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    store.close().await;
}
