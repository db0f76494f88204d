//! The TUF/Uptane attack classes through a hostile server (real TLS, real
//! agent, the real server behind it): endless data, slow retrieval,
//! fast-forward, mix-and-match, keys below threshold, a malicious mirror,
//! a director that disagrees with the image repository. Each time the
//! agent refuses or gives up, the server has the device's report of it,
//! and the running slot and the boot configuration are untouched.
//! (Arbitrary software, freeze, rollback and wrong hardware are in
//! `update.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use fleetward_agent::PollOutcome;
use fleetward_agent::boot::VAR_TRY;
use sha2::{Digest as _, Sha256};
use support::hostile::{Answer, Body, Hostile, resign, stolen_online_keys};
use support::{Device, Server, assert_refused, enrolled, image, offer_release};

const REFUSED: &str = "device.verification_failed";

/// An edit of one target of the director's metadata.
type Change = dyn Fn(&mut serde_json::Value) + Send + Sync;

/// A device enrolled with the real server, behind a hostile one, with
/// release 1.1.0 offered to it.
async fn setup(server: &Server, id: &str, new: &[u8]) -> (Device, Hostile) {
    let url = server.device_url();
    let mut device = enrolled(server, &url, id, "rev2", "1.0.0").await;
    let hostile = Hostile::start(server, &mut device).await;
    offer_release(server, id, "1.1.0", "rev2", new).await;
    (device, hostile)
}

/// The honest update still goes through once the attack stops: the
/// refusal left nothing behind that blocks it.
async fn honest_update_follows(server: &Server, hostile: &Hostile, device: &Device) {
    hostile.stop_attack();
    // An image refusal failed the execution: the rollout offers it again.
    support::wait_released(server, &device.id).await;
    let outcome = device.agent().poll().await.unwrap();
    assert_eq!(
        outcome,
        PollOutcome::RebootRequired("1.1.0".into()),
        "{}",
        device.id
    );
}

fn replace(answer: Answer, bytes: Vec<u8>) -> Answer {
    Answer {
        status: 200,
        body: Body::Bytes(bytes),
        ..answer
    }
}

#[tokio::test]
async fn endless_metadata_is_cut_at_its_bound() {
    let server = Server::start().await;
    let (device, hostile) = setup(&server, "ad-meta", &image(10_000, 1)).await;
    // Each metadata file in turn answers without end.
    for file in [
        "director/targets.json",
        "timestamp.json",
        ".snapshot.json",
        ".targets.json",
    ] {
        hostile.attack(move |path, answer| {
            if path.ends_with(file) {
                let bytes = answer.bytes().to_vec();
                Answer {
                    body: Body::Endless(bytes),
                    ..answer
                }
            } else {
                answer
            }
        });
        let outcome = device.agent().poll().await.unwrap();
        let refusal = assert_refused(&server, &device, outcome, REFUSED).await;
        assert!(
            refusal.to_string().contains("larger than"),
            "{file}: {refusal}"
        );
    }
    honest_update_follows(&server, &hostile, &device).await;
    server.stop().await;
}

#[tokio::test]
async fn an_endless_image_is_cut_at_its_signed_length() {
    let server = Server::start().await;
    let (device, hostile) = setup(&server, "ad-image", &image(300_000, 2)).await;
    hostile.attack(|path, answer| {
        if path.starts_with("/tuf/targets/") {
            // The real image, then more, with no length announced.
            let bytes = answer.bytes().to_vec();
            let headers = answer
                .headers
                .iter()
                .filter(|(n, _)| n != "content-length")
                .cloned()
                .collect();
            Answer {
                headers,
                body: Body::Endless(bytes),
                ..answer
            }
        } else {
            answer
        }
    });
    let outcome = device.agent().poll().await.unwrap();
    let refusal = assert_refused(&server, &device, outcome, REFUSED).await;
    assert!(
        refusal
            .to_string()
            .contains("more than the 300000 signed bytes"),
        "{refusal}"
    );
    honest_update_follows(&server, &hostile, &device).await;
    server.stop().await;
}

#[tokio::test]
async fn slow_retrieval_is_given_up_and_reported() {
    let server = Server::start().await;
    let new = image(200_000, 3);
    let (mut device, hostile) = setup(&server, "ad-slow", &new).await;
    // A device that wants 50 kB/s after the first second, and an answer
    // within 2 s for metadata.
    device.config.limits.min_download_rate = 50_000;
    device.config.limits.slow_download_grace_secs = 1;
    device.config.limits.request_timeout_secs = 2;

    // The image trickles at about 10 kB/s.
    hostile.attack(|path, answer| {
        if path.starts_with("/tuf/targets/") {
            let bytes = answer.bytes().to_vec();
            Answer {
                body: Body::Trickle {
                    bytes,
                    chunk: 1000,
                    every: std::time::Duration::from_millis(100),
                },
                ..answer
            }
        } else {
            answer
        }
    });
    let mut agent = device.agent();
    let error = agent.poll().await.unwrap_err();
    assert!(error.to_string().contains("slower than"), "{error}");
    assert_untouched(&device);
    let partial = agent.state().unwrap().pending.unwrap().written;
    assert!(partial < new.len() as u64, "{partial}");
    assert_reported(&server, &device, "slower than 50000 bytes/s").await;

    // The timestamp trickles: the request deadline ends it.
    hostile.attack(|path, answer| {
        if path.ends_with("timestamp.json") {
            let bytes = answer.bytes().to_vec();
            Answer {
                body: Body::Trickle {
                    bytes,
                    chunk: 1,
                    every: std::time::Duration::from_millis(100),
                },
                ..answer
            }
        } else {
            answer
        }
    });
    let error = device.agent().poll().await.unwrap_err();
    assert!(error.to_string().contains("timed out"), "{error}");
    assert_untouched(&device);
    assert_reported(&server, &device, "timed out").await;

    // The download resumes where it was given up.
    honest_update_follows(&server, &hostile, &device).await;
    assert_eq!(device.slot_bytes("b"), new);
    server.stop().await;
}

#[tokio::test]
async fn fast_forwarded_versions_are_refused_and_not_remembered() {
    let server = Server::start().await;
    let (device, hostile) = setup(&server, "ad-ff", &image(10_000, 4)).await;
    let before = device.agent().state().unwrap().seen;
    // Without the keys, an attacker can only change the numbers.
    for file in ["timestamp.json", ".snapshot.json", "director/targets.json"] {
        hostile.attack(move |path, answer| {
            if path.ends_with(file) {
                let mut envelope: serde_json::Value =
                    serde_json::from_slice(answer.bytes()).unwrap();
                envelope["signed"]["version"] = serde_json::json!(1u64 << 60);
                let bytes = serde_json::to_vec(&envelope).unwrap();
                replace(answer, bytes)
            } else {
                answer
            }
        });
        let outcome = device.agent().poll().await.unwrap();
        assert_refused(&server, &device, outcome, REFUSED).await;
        let seen = device.agent().state().unwrap().seen;
        for (role, version) in [
            ("timestamp", seen.timestamp),
            ("snapshot", seen.snapshot),
            ("targets", seen.targets),
            ("director", seen.director),
        ] {
            assert!(
                version < 1 << 60,
                "{file}: the {role} version was fast-forwarded ({before:?} → {seen:?})"
            );
        }
    }
    honest_update_follows(&server, &hostile, &device).await;
    server.stop().await;
}

#[tokio::test]
async fn mixed_and_matched_metadata_is_refused() {
    let server = Server::start().await;
    let url = server.device_url();
    let mut device = enrolled(&server, &url, "ad-mix", "rev2", "1.0.0").await;
    let hostile = Hostile::start(&server, &mut device).await;
    // Two repository versions: 1.0.1, then 1.1.0 (offered).
    server.publish("1.0.1", "rev2", &image(10_000, 5)).await;
    let old_snapshot = hostile.upstream_latest("snapshot").await;
    let old_targets = hostile.upstream_latest("targets").await;
    offer_release(&server, "ad-mix", "1.1.0", "rev2", &image(10_000, 6)).await;

    // Each role in turn answers with its older, validly signed version
    // under the newer name.
    for (file, old) in [
        (".snapshot.json", old_snapshot),
        (".targets.json", old_targets),
    ] {
        hostile.attack(move |path, answer| {
            if path.ends_with(file) {
                replace(answer, old.clone())
            } else {
                answer
            }
        });
        let outcome = device.agent().poll().await.unwrap();
        let refusal = assert_refused(&server, &device, outcome, REFUSED).await;
        assert!(refusal.to_string().contains("pin"), "{file}: {refusal}");
    }
    honest_update_follows(&server, &hostile, &device).await;
    server.stop().await;
}

#[tokio::test]
async fn keys_below_the_threshold_are_not_enough() {
    let server = Server::start().await;
    let evil = image(10_000, 7);
    let (device, hostile) = setup(&server, "ad-keys", &image(10_000, 8)).await;

    // One of the three root keys (threshold 2) signs a new root that
    // hands the targets role to the attacker.
    let attacker = fleetward_tuf::SigningKey::from_seed(&[99; 32]).unwrap();
    let online: Vec<_> = {
        let keys = stolen_online_keys(&server);
        vec![keys.snapshot.public(), keys.timestamp.public()]
    };
    let root = fleetward_tuf::Root::new(
        2,
        fleetward_tuf::Expiry::at(time::OffsetDateTime::now_utc() + time::Duration::days(30)),
        &[
            (fleetward_tuf::ROLE_ROOT, &[attacker.public()], 1),
            (fleetward_tuf::ROLE_TARGETS, &[attacker.public()], 1),
            (fleetward_tuf::ROLE_SNAPSHOT, &online[..1], 1),
            (fleetward_tuf::ROLE_TIMESTAMP, &online[1..], 1),
        ],
    )
    .unwrap();
    let forged_root = fleetward_tuf::Signed::sign(root, &[&server.root_keys[0]])
        .unwrap()
        .to_bytes()
        .unwrap();
    hostile.attack(move |path, answer| {
        if path == "/tuf/metadata/2.root.json" {
            replace(answer, forged_root.clone())
        } else {
            answer
        }
    });
    let outcome = device.agent().poll().await.unwrap();
    let refusal = assert_refused(&server, &device, outcome, REFUSED).await;
    assert!(refusal.to_string().contains("it needs 2"), "{refusal}");

    // One of the three targets keys, and the server's online keys: the
    // targets metadata names another image, snapshot and timestamp are
    // re-signed to pin it. Only the threshold stands in the way.
    let stolen = stolen_online_keys(&server);
    let targets_path = hostile.latest_path("targets").await;
    let real_targets = hostile.upstream(&targets_path).await;
    let evil_sha = hex::encode(Sha256::digest(&evil));
    let forged_targets = resign(&real_targets, &[&server.targets_keys[1]], |t| {
        for (_, target) in t["targets"].as_object_mut().unwrap() {
            target["hashes"]["sha256"] = serde_json::json!(evil_sha);
        }
    });
    let snapshot_path = hostile.latest_path("snapshot").await;
    let forged_snapshot = resign(
        &hostile.upstream(&snapshot_path).await,
        &[&stolen.snapshot],
        |s| pin(&mut s["meta"]["targets.json"], &forged_targets),
    );
    let forged_timestamp = resign(
        &hostile.upstream("/tuf/metadata/timestamp.json").await,
        &[&stolen.timestamp],
        |t| pin(&mut t["meta"]["snapshot.json"], &forged_snapshot),
    );
    hostile.attack(move |path, answer| {
        if path == targets_path {
            replace(answer, forged_targets.clone())
        } else if path == snapshot_path {
            replace(answer, forged_snapshot.clone())
        } else if path == "/tuf/metadata/timestamp.json" {
            replace(answer, forged_timestamp.clone())
        } else {
            answer
        }
    });
    let outcome = device.agent().poll().await.unwrap();
    let refusal = assert_refused(&server, &device, outcome, REFUSED).await;
    assert!(refusal.to_string().contains("it needs 2"), "{refusal}");
    honest_update_follows(&server, &hostile, &device).await;
    server.stop().await;
}

/// Sets a snapshot/timestamp pin (length, hashes where present) to `bytes`.
fn pin(meta: &mut serde_json::Value, bytes: &[u8]) {
    if meta.get("length").is_some() {
        meta["length"] = serde_json::json!(bytes.len());
    }
    if meta.get("hashes").is_some() {
        meta["hashes"] = serde_json::json!({"sha256": hex::encode(Sha256::digest(bytes))});
    }
}

#[tokio::test]
async fn a_malicious_mirror_serving_another_valid_image_is_refused() {
    let server = Server::start().await;
    // Another published image of the same length: valid-looking content.
    let other = image(100_000, 9);
    server.publish("1.0.1", "rev2", &other).await;
    let (device, hostile) = setup(&server, "ad-mirror", &image(100_000, 10)).await;
    hostile.attack(move |path, answer| {
        if path.starts_with("/tuf/targets/") {
            replace(answer, other.clone())
        } else {
            answer
        }
    });
    let outcome = device.agent().poll().await.unwrap();
    let refusal = assert_refused(&server, &device, outcome, REFUSED).await;
    assert!(refusal.to_string().contains("sha256"), "{refusal}");
    honest_update_follows(&server, &hostile, &device).await;
    server.stop().await;
}

#[tokio::test]
async fn a_director_that_disagrees_with_the_image_repository_is_refused() {
    let server = Server::start().await;
    let (device, hostile) = setup(&server, "ad-dir", &image(10_000, 11)).await;
    // The director's own key (the server is taken), offering an image the
    // image repository never signed: other hash, then other length.
    let director = stolen_online_keys(&server).director;
    let evil = image(12_000, 12);
    let changes: [(&str, Box<Change>); 2] = [
        (
            "sha256",
            Box::new(move |target| {
                target["hashes"]["sha256"] = serde_json::json!(hex::encode(Sha256::digest(&evil)))
            }),
        ),
        (
            "length",
            Box::new(|target| target["length"] = serde_json::json!(12_000)),
        ),
    ];
    for (what, change) in changes {
        let change = std::sync::Arc::new(change);
        let director = fleetward_tuf::SigningKey::from_seed(&director.seed()).unwrap();
        hostile.attack(move |path, answer| {
            if path == "/device/v1/director/targets.json" {
                let bytes = resign(answer.bytes(), &[&director], |t| {
                    for (_, target) in t["targets"].as_object_mut().unwrap() {
                        change(target);
                    }
                });
                replace(answer, bytes)
            } else {
                answer
            }
        });
        let outcome = device.agent().poll().await.unwrap();
        let refusal = assert_refused(&server, &device, outcome, REFUSED).await;
        assert!(
            refusal.to_string().contains("director"),
            "{what}: {refusal}"
        );
    }
    honest_update_follows(&server, &hostile, &device).await;
    server.stop().await;
}

/// The running slot and the boot configuration are as they were.
fn assert_untouched(device: &Device) {
    assert_eq!(device.slot_bytes("a"), b"image 1.0.0", "{}", device.id);
    assert_eq!(device.env().get(VAR_TRY), None, "{}", device.id);
}

/// The server has a report from the device whose message has `text`.
async fn assert_reported(server: &Server, device: &Device, text: &str) {
    let page = server
        .get(&format!("/api/v1/events?device={}&limit=1000", device.id))
        .await;
    let items = page["items"].as_array().unwrap();
    assert!(
        items
            .iter()
            .any(|e| e["kind"] == "device.error" && e.to_string().contains(text)),
        "{}: no device.error with {text:?} in {items:#?}",
        device.id
    );
}
