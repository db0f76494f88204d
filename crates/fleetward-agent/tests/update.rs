//! The agent against a real server over real TLS: enrolment, a full
//! A/B update with a simulated reboot, refusals that leave the inactive
//! slot and the boot configuration untouched, resumed downloads, and
//! reports buffered while offline.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::atomic::Ordering;

use fleetward_agent::PollOutcome;
use fleetward_agent::boot::{Slot, VAR_SLOT, VAR_TRY};
use fleetward_agent::verify::Refusal;
use support::{Relay, Server, assert_refused, enrolled, image, offer_release};

#[tokio::test]
async fn enrol_update_reboot_and_commit() {
    let server = Server::start().await;
    let url = server.device_url();
    let device = enrolled(&server, &url, "dev-1", "rev2", "1.0.0").await;
    // The key and certificate are the device's own, mode 0600.
    for file in ["device.key", "device.crt"] {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(device.config.state_dir.join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }
    let mut agent = device.agent();
    assert!(
        agent.state().unwrap().director_key.is_some(),
        "pinned at enrolment"
    );
    assert_eq!(agent.poll().await.unwrap(), PollOutcome::NothingOffered);

    let new = image(3 * 1024 * 1024 + 17, 1);
    offer_release(&server, "dev-1", "1.1.0", "rev2", &new).await;
    let outcome = agent.poll().await.unwrap();
    assert_eq!(outcome, PollOutcome::RebootRequired("1.1.0".into()));
    assert_eq!(
        device.slot_bytes("b"),
        new,
        "the image is in the inactive slot"
    );
    assert_eq!(
        device.slot_bytes("a"),
        b"image 1.0.0",
        "the running slot is untouched"
    );
    assert_eq!(device.env().get(VAR_TRY).map(String::as_str), Some("b"));
    assert_eq!(
        device.env().get(VAR_SLOT),
        None,
        "not committed before the reboot"
    );
    // An agent restart before the reboot changes nothing.
    let mut restarted = device.agent();
    assert_eq!(
        restarted.poll().await.unwrap(),
        PollOutcome::RebootRequired("1.1.0".into())
    );

    assert_eq!(device.reboot(), Slot::B);
    let mut agent = device.agent();
    agent.note_boot().unwrap();
    assert_eq!(
        agent.poll().await.unwrap(),
        PollOutcome::Committed("1.1.0".into())
    );
    assert_eq!(device.env().get(VAR_SLOT).map(String::as_str), Some("b"));
    let state = agent.state().unwrap();
    assert_eq!(state.running_version.as_deref(), Some("1.1.0"));
    assert_eq!(state.highest_version.as_deref(), Some("1.1.0"));
    assert!(state.pending.is_none());
    // The execution is finished: the director has nothing more to say.
    assert_eq!(agent.poll().await.unwrap(), PollOutcome::NothingOffered);
    // Committed: later boots stay on B.
    assert_eq!(device.reboot(), Slot::B);
    assert_eq!(device.reboot(), Slot::B);

    // Telemetry reaches the operator API.
    agent.report_telemetry(Some(3.5)).unwrap();
    assert!(agent.flush_reports().await >= 1);
    let telemetry = server.get("/api/v1/devices/dev-1/telemetry").await;
    assert_eq!(
        telemetry["telemetry"][0]["conditions"]["running_version"],
        "1.1.0"
    );
    assert!(
        !server
            .device_events("dev-1")
            .await
            .iter()
            .any(|k| k == "device.unexpected_reboot"),
        "a reboot the update asked for is expected"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_failed_health_check_or_boot_falls_back_and_reports_rolled_back() {
    let server = Server::start().await;
    let url = server.device_url();
    let mut device = enrolled(&server, &url, "dev-h", "rev2", "1.0.0").await;
    device.config.health_check = Some("exit 3".into());
    offer_release(&server, "dev-h", "1.1.0", "rev2", &image(100_000, 2)).await;
    let mut agent = device.agent();
    assert!(matches!(
        agent.poll().await.unwrap(),
        PollOutcome::RebootRequired(_)
    ));
    assert_eq!(device.reboot(), Slot::B);
    let mut agent = device.agent();
    let outcome = agent.poll().await.unwrap();
    assert!(
        matches!(&outcome, PollOutcome::RolledBack(reason) if reason.contains("health check")),
        "{outcome:?}"
    );
    assert_eq!(device.reboot(), Slot::A, "the old slot boots next");
    assert_eq!(
        agent.state().unwrap().running_version.as_deref(),
        Some("1.0.0")
    );

    // A slot that never comes up: the bootloader gives up after the limit.
    // (The failed rollout paused itself; a new one offers the release again.)
    device.config.health_check = None;
    support::roll_out(&server, "dev-h", "1.1.0", "rev2").await;
    let mut agent = device.agent();
    assert!(matches!(
        agent.poll().await.unwrap(),
        PollOutcome::RebootRequired(_)
    ));
    assert_eq!(device.reboot(), Slot::B); // boot 1: hangs (the agent never runs)
    assert_eq!(device.reboot(), Slot::B); // boot 2: hangs
    assert_eq!(device.reboot(), Slot::A); // limit reached: fallback
    let mut agent = device.agent();
    let outcome = agent.poll().await.unwrap();
    assert!(matches!(outcome, PollOutcome::RolledBack(_)), "{outcome:?}");
    assert_eq!(
        agent.state().unwrap().running_version.as_deref(),
        Some("1.0.0")
    );
    assert!(
        server
            .device_events("dev-h")
            .await
            .iter()
            .any(|k| k == "device.error")
    );
    server.stop().await;
}

#[tokio::test]
async fn a_tampered_image_is_refused_and_never_booted() {
    let server = Server::start().await;
    let url = server.device_url();
    let device = enrolled(&server, &url, "dev-t", "rev2", "1.0.0").await;
    let new = image(500_000, 3);
    offer_release(&server, "dev-t", "1.1.0", "rev2", &new).await;
    server.tamper_artifact(&new);
    let mut agent = device.agent();
    let outcome = agent.poll().await.unwrap();
    let refusal = assert_refused(&server, &device, outcome, "device.verification_failed").await;
    assert!(refusal.to_string().contains("sha256"), "{refusal}");
    assert!(agent.state().unwrap().pending.is_none());
    server.stop().await;
}

#[tokio::test]
async fn expired_metadata_is_refused() {
    let server = Server::start().await;
    let url = server.device_url();
    let device = enrolled(&server, &url, "dev-e", "rev2", "1.0.0").await;
    offer_release(&server, "dev-e", "1.1.0", "rev2", &image(1000, 4)).await;
    let mut agent = device.agent();
    // Two days on: the timestamp (one day) has expired, a freeze attack.
    agent.clock = fleetward_agent::agent::Clock(std::sync::Arc::new(|| {
        time::OffsetDateTime::now_utc() + time::Duration::days(2)
    }));
    let outcome = agent.poll().await.unwrap();
    let refusal = assert_refused(&server, &device, outcome, "device.verification_failed").await;
    assert!(refusal.to_string().contains("expired"), "{refusal}");
    server.stop().await;
}

#[tokio::test]
async fn an_older_image_is_refused_as_a_rollback() {
    let server = Server::start().await;
    let url = server.device_url();
    let device = enrolled(&server, &url, "dev-r", "rev2", "1.0.0").await;
    let mut agent = device.agent();
    let mut state = agent.state().unwrap();
    state.running_version = Some("2.0.0".into());
    state.highest_version = Some("2.0.0".into());
    agent.dir.save(&state).unwrap();
    offer_release(&server, "dev-r", "1.1.0", "rev2", &image(1000, 5)).await;
    let outcome = agent.poll().await.unwrap();
    let refusal = assert_refused(&server, &device, outcome, "device.rollback_attempt").await;
    assert!(
        matches!(refusal, Refusal::ImageRollback { .. }),
        "{refusal}"
    );
    server.stop().await;
}

#[tokio::test]
async fn an_image_for_other_hardware_is_refused() {
    let server = Server::start().await;
    let url = server.device_url();
    // The registry says rev2; the device knows it is rev3.
    server.register("dev-w", "rev2", Some("1.0.0")).await;
    let mut device = support::device(&server, &url, "dev-w", "rev2", "1.0.0").await;
    let token = server.enroll_token(1).await;
    fleetward_agent::enroll::enroll(&device.config, &token)
        .await
        .unwrap();
    device.config.hardware = "rev3".into();
    offer_release(&server, "dev-w", "1.1.0", "rev2", &image(1000, 6)).await;
    let mut agent = device.agent();
    let outcome = agent.poll().await.unwrap();
    let refusal = assert_refused(&server, &device, outcome, "device.verification_failed").await;
    assert!(refusal.to_string().contains("hardware"), "{refusal}");
    server.stop().await;
}

#[tokio::test]
async fn metadata_rollback_is_refused() {
    let server = Server::start().await;
    let url = server.device_url();
    let device = enrolled(&server, &url, "dev-m", "rev2", "1.0.0").await;
    offer_release(&server, "dev-m", "1.1.0", "rev2", &image(1000, 7)).await;
    let mut agent = device.agent();
    // The device has seen newer targets metadata than the server now serves.
    let mut state = agent.state().unwrap();
    state.seen.targets = 99;
    agent.dir.save(&state).unwrap();
    let outcome = agent.poll().await.unwrap();
    let refusal = assert_refused(&server, &device, outcome, "device.rollback_attempt").await;
    assert!(
        matches!(refusal, Refusal::MetadataRollback { .. }),
        "{refusal}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_download_resumes_after_a_dropped_connection_and_a_restart() {
    let server = Server::start().await;
    let relay = Relay::start(server.device_addr()).await;
    let device = enrolled(&server, &relay.url(), "dev-d", "rev2", "1.0.0").await;
    let new = image(2 * 1024 * 1024, 8);
    offer_release(&server, "dev-d", "1.1.0", "rev2", &new).await;
    relay.cut_after.store(1024 * 1024, Ordering::SeqCst);
    let mut agent = device.agent();
    let error = agent.poll().await.unwrap_err();
    assert_eq!(relay.cuts.load(Ordering::SeqCst), 1, "{error}");
    let pending = agent.state().unwrap().pending.unwrap();
    assert!(
        pending.written > 0 && pending.written < new.len() as u64,
        "{}",
        pending.written
    );
    assert_eq!(
        device.env().get(VAR_TRY),
        None,
        "nothing switched mid-download"
    );
    drop(agent);

    // A restarted agent asks for the rest only.
    let mut agent = device.agent();
    assert_eq!(
        agent.poll().await.unwrap(),
        PollOutcome::RebootRequired("1.1.0".into())
    );
    assert_eq!(device.slot_bytes("b"), new);
    assert!(
        server
            .device_events("dev-d")
            .await
            .iter()
            .any(|k| k == "device.error")
    );
    server.stop().await;
}

#[tokio::test]
async fn reports_wait_on_disk_while_offline() {
    let server = Server::start().await;
    let relay = Relay::start(server.device_addr()).await;
    let device = enrolled(&server, &relay.url(), "dev-o", "rev2", "1.0.0").await;
    let agent = device.agent();
    relay.offline.store(true, Ordering::SeqCst);
    for _ in 0..5 {
        agent.report_telemetry(None).unwrap();
    }
    agent.report_error("poll", "the server is unreachable");
    assert_eq!(agent.flush_reports().await, 0);
    assert_eq!(agent.reports.len().unwrap(), 6);
    // A restart keeps them.
    drop(agent);
    let agent = device.agent();
    assert_eq!(agent.reports.len().unwrap(), 6);
    relay.offline.store(false, Ordering::SeqCst);
    assert_eq!(agent.flush_reports().await, 6);
    assert_eq!(agent.reports.len().unwrap(), 0);
    let stored = server.get("/api/v1/devices/dev-o/telemetry").await;
    assert_eq!(stored["telemetry"].as_array().unwrap().len(), 5);
    assert_eq!(stored["errors"][0]["context"], "poll");
    server.stop().await;
}

#[tokio::test]
async fn the_buffer_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let buffer = fleetward_agent::reports::ReportBuffer::new(dir.path(), 3);
    for n in 0..5 {
        buffer
            .push(fleetward_wire::device::DeviceReport::Error {
                device_time: time::OffsetDateTime::now_utc(),
                context: "t".into(),
                message: format!("{n}"),
            })
            .unwrap();
    }
    let kept: Vec<String> = buffer
        .load()
        .unwrap()
        .into_iter()
        .map(|r| match r {
            fleetward_wire::device::DeviceReport::Error { message, .. } => message,
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(kept, ["2", "3", "4"], "the oldest go first");
}

#[tokio::test]
async fn the_agent_renews_its_certificate_with_a_new_key() {
    let server = Server::start().await;
    let url = server.device_url();
    let device = enrolled(&server, &url, "dev-n", "rev2", "1.0.0").await;
    let mut agent = device.agent();
    let before = agent.whoami().await.unwrap();
    let old_key = std::fs::read(device.config.state_dir.join("device.key")).unwrap();
    agent.renew().await.unwrap();
    let after = agent.whoami().await.unwrap();
    assert_ne!(before.serial, after.serial);
    assert_ne!(
        std::fs::read(device.config.state_dir.join("device.key")).unwrap(),
        old_key
    );
    // A restarted agent uses the new identity.
    let agent = device.agent();
    assert_eq!(agent.whoami().await.unwrap().serial, after.serial);
    assert!(
        !device.agent().renew_if_due(&after).await.unwrap(),
        "not due yet"
    );
    server.stop().await;
}
