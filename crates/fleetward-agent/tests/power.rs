//! Power loss at 100 random points of an update, mid-write included: the
//! device always boots a whole image; once the power is back the update
//! either completes or (cut between recording the switch and making it)
//! falls back and says so; and the server ends with the version the device
//! runs and no execution left open.
//!
//! The cuts are made inside this process through the agent's own power-cut
//! points (see `fleetward_agent::power`): the real agent code runs until
//! the chosen write, which leaves a random prefix of its bytes on disk,
//! and nothing of that agent runs after it. A restarted agent on the same
//! files must cope. The points are drawn from a seeded RNG; the seed is
//! printed, and `FLEETWARD_POWER_SEED` replays a run.
//!
//! It has a test binary of its own because the power switch is process-wide.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::panic::AssertUnwindSafe;

use fleetward_agent::PollOutcome;
use fleetward_agent::power::{self, PowerCut};
use futures::FutureExt as _;
use rand::{Rng as _, SeedableRng as _};
use support::{Device, Server, enrolled, image, offer_release};

const CUTS: usize = 100;

/// One poll of a fresh agent on the device's files; `Err` if the power
/// went during it.
async fn poll(device: &Device) -> Result<PollOutcome, PowerCut> {
    let mut agent = device.agent();
    match AssertUnwindSafe(agent.poll()).catch_unwind().await {
        Ok(outcome) => Ok(outcome.unwrap()),
        Err(payload) => match payload.downcast::<PowerCut>() {
            Ok(cut) => Err(*cut),
            Err(other) => std::panic::resume_unwind(other),
        },
    }
}

/// The uncut update: poll (download, switch), reboot, poll (commit). The
/// power switch counts only the agent's points, not the simulated
/// bootloader's; returns how many of those the reboot passed.
async fn update(device: &Device, keep_per_mille: u64) -> Result<u64, PowerCut> {
    let outcome = poll(device).await?;
    assert!(
        matches!(outcome, PollOutcome::RebootRequired(_)),
        "{}: {outcome:?}",
        device.id
    );
    let left = power::disarm();
    let before = power::seen();
    device.reboot();
    let bootloader = power::seen() - before;
    if let Some(left) = left {
        power::arm(left, keep_per_mille);
    }
    let outcome = poll(device).await?;
    assert_eq!(
        outcome,
        PollOutcome::Committed("1.1.0".into()),
        "{}",
        device.id
    );
    Ok(bootloader)
}

#[tokio::test]
async fn power_cuts_at_random_points_always_leave_a_bootable_device() {
    let seed = std::env::var("FLEETWARD_POWER_SEED")
        .ok()
        .map(|s| s.parse::<u64>().expect("FLEETWARD_POWER_SEED is a number"))
        .unwrap_or_else(rand::random);
    eprintln!("power cuts drawn with seed {seed} (replay: FLEETWARD_POWER_SEED={seed})");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    // A cut is not a failure: keep the test's output readable.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.payload().downcast_ref::<PowerCut>().is_none() {
            default_hook(info);
        }
    }));

    let server = Server::start().await;
    let url = server.device_url();
    // Big enough for dozens of slot writes between the state writes.
    let new = image(700_000, 11);
    offer_release(&server, "pc-*", "1.1.0", "rev2", &new).await;

    // How many points an uncut update passes.
    let device = enrolled(&server, &url, "pc-count", "rev2", "1.0.0").await;
    support::wait_released(&server, "pc-count").await;
    let before = power::seen();
    let bootloader = update(&device, 0).await.unwrap();
    // Network chunking varies from run to run, so a draw may still land
    // past the end of an update: that one runs uncut.
    let points = power::seen() - before - bootloader;
    eprintln!("an uncut update passes {points} power-cut points");
    assert!(points > 20, "{points}");

    let mut kinds = std::collections::BTreeMap::<&str, usize>::new();
    let mut outcomes = std::collections::BTreeMap::<&str, usize>::new();
    for cut in 0..CUTS {
        let at = rng.gen_range(0..points);
        let keep = rng.gen_range(0..=1000);
        let id = format!("pc-{cut:03}");
        let device = enrolled(&server, &url, &id, "rev2", "1.0.0").await;
        support::wait_released(&server, &id).await;
        power::arm(at, keep);
        let outcome = update(&device, keep).await;
        power::disarm();
        let what = outcome
            .as_ref()
            .map_or_else(|cut| cut.what, |_| "nowhere (the update finished first)");
        *kinds.entry(what).or_default() += 1;

        // Power back: whatever boots must be a whole image, and the agent
        // finishes the update (or falls back and is offered it again).
        // Power back: whatever boots must be a whole image. The agent then
        // finishes the update, or (when the cut left the switch recorded
        // but the old slot booting) falls back and reports it; the rollout
        // does not offer a rolled-back release again.
        let mut running = outcome.is_ok().then_some("1.1.0");
        for round in 0..10 {
            if running.is_some() {
                break;
            }
            let booted = device.reboot();
            let bytes = device.slot_bytes(booted.as_str());
            assert!(
                bytes == b"image 1.0.0" || bytes == new,
                "{id} (cut {at}, keep {keep}‰ in {what}) round {round}: booted slot {booted:?} is not a whole image; seed {seed}"
            );
            match poll(&device).await.unwrap() {
                PollOutcome::Committed(version) => {
                    assert_eq!(version, "1.1.0");
                    running = Some("1.1.0");
                }
                PollOutcome::RolledBack(_) => running = Some("1.0.0"),
                PollOutcome::RebootRequired(_) => {}
                // Either the update finished and was reported before the
                // cut (the cut hit the bookkeeping after it), or the cut
                // install was reported failed and the rollout offers the
                // release again as a new attempt.
                PollOutcome::NothingOffered => {
                    if support::open_execution(&server, &id).await.is_some() {
                        support::wait_released(&server, &id).await;
                    } else {
                        let state = device.agent().state().unwrap();
                        assert!(state.pending.is_none(), "{id}; seed {seed}");
                        running = Some(if state.running_version.as_deref() == Some("1.1.0") {
                            "1.1.0"
                        } else {
                            "1.0.0"
                        });
                    }
                }
                other => panic!("{id} (cut {at} in {what}) round {round}: {other:?}; seed {seed}"),
            }
        }
        let running = running.unwrap_or_else(|| {
            panic!("{id} (cut {at}, keep {keep}‰ in {what}): the update never settled; seed {seed}")
        });
        *outcomes.entry(running).or_default() += 1;
        // The device boots its running version from now on.
        let image = if running == "1.1.0" {
            new.clone()
        } else {
            b"image 1.0.0".to_vec()
        };
        for _ in 0..3 {
            let booted = device.reboot();
            assert_eq!(
                device.slot_bytes(booted.as_str()),
                image,
                "{id}; seed {seed}"
            );
        }
        let agent = device.agent();
        let state = agent.state().unwrap();
        assert_eq!(state.running_version.as_deref(), Some(running), "{id}");
        assert!(state.pending.is_none(), "{id}");
        agent.flush_reports().await;
        assert_eq!(agent.reports.len().unwrap(), 0, "{id}: reports all sent");
        // The server agrees: the same version, and nothing is open.
        let seen = server.get(&format!("/api/v1/devices/{id}")).await;
        assert_eq!(seen["version"], running, "{id}: {seen}; seed {seed}");
        assert!(
            support::open_execution(&server, &id).await.is_none(),
            "{id}: an execution is still open; seed {seed}"
        );
    }
    eprintln!("outcomes: {outcomes:?}");
    eprintln!("cuts by place: {kinds:#?}");
    for place in ["inactive slot", "temporary copy", "rename"] {
        assert!(
            kinds.keys().any(|k| k.contains(place)),
            "no cut in a {place} write: {kinds:?}; seed {seed}"
        );
    }
    server.stop().await;
}
