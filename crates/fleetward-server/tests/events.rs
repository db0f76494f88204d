//! The security-event log over the operator API.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use fleetward_core::Role;
use reqwest::StatusCode;
use serde_json::json;
use support::TestServer;

#[tokio::test]
async fn operator_changes_are_security_events_and_the_log_verifies() {
    let server = TestServer::start().await;
    let answer = server
        .post(
            &server.admin,
            "/api/v1/devices",
            json!({"id": "dev-1", "hardware": "rev1"}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.body);
    let auditor = server.token_for(Role::Auditor).await;

    let page = server.get(&auditor, "/api/v1/events").await;
    assert_eq!(page.status, StatusCode::OK, "{:?}", page.body);
    let items = page.body["items"].as_array().unwrap();
    let kinds: Vec<&str> = items.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert!(kinds.iter().all(|k| *k == "operator.action"), "{kinds:?}");
    let device_event = items
        .iter()
        .find(|e| e["device"] == "dev-1")
        .expect("the registration names its device");
    assert!(
        device_event["message"]
            .as_str()
            .unwrap()
            .contains("device.register")
    );
    assert_eq!(device_event["hash"].as_str().unwrap().len(), 64);

    let filtered = server
        .get(
            &auditor,
            "/api/v1/events?device=dev-1&kind=operator.action&min_severity=info",
        )
        .await;
    assert_eq!(filtered.body["items"].as_array().unwrap().len(), 1);
    let none = server
        .get(&auditor, "/api/v1/events?min_severity=high")
        .await;
    assert_eq!(none.body["items"].as_array().unwrap().len(), 0);

    let seq = device_event["seq"].as_u64().unwrap();
    let one = server.get(&auditor, &format!("/api/v1/events/{seq}")).await;
    assert_eq!(one.body, *device_event);
    assert_eq!(
        server.get(&auditor, "/api/v1/events/999999").await.status,
        StatusCode::NOT_FOUND
    );

    let verified = server.get(&auditor, "/api/v1/events/verify").await;
    assert_eq!(verified.body["ok"], true, "{:?}", verified.body);
    assert_eq!(
        verified.body["entries"].as_u64().unwrap() as usize,
        items.len()
    );

    let checkpoints = server.get(&auditor, "/api/v1/events/checkpoints").await;
    assert_eq!(checkpoints.body["public_key"].as_str().unwrap().len(), 64);

    // A viewer reads the fleet, not the logs.
    let viewer = server.token_for(Role::Viewer).await;
    assert_eq!(
        server.get(&viewer, "/api/v1/events").await.status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn bad_event_filters_are_refused() {
    let server = TestServer::start().await;
    for (path, part) in [
        ("/api/v1/events?kind=identity.nope", "unknown event kind"),
        ("/api/v1/events?min_severity=urgent", "unknown severity"),
        ("/api/v1/events?device=bad%20id", "device id"),
        ("/api/v1/events?since=yesterday", "RFC 3339"),
        ("/api/v1/events?limit=0", "limit"),
        ("/api/v1/events?limit=1001", "limit"),
        ("/api/v1/events?colour=red", "colour"),
        ("/api/v1/events/abc", ""),
    ] {
        let answer = server.get(&server.admin, path).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{path}: {:?}",
            answer.body
        );
        assert!(
            answer.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains(part),
            "{path}: {:?}",
            answer.body
        );
    }
}

#[tokio::test]
async fn shutdown_signs_a_final_checkpoint() {
    let server = TestServer::start().await;
    let store = server.store().await;
    let (head, hash) = store.event_head().await.unwrap();
    assert!(head > 0, "init's token creation is in the log");
    let dir = server.dir.path().to_owned();
    let key = std::fs::read_to_string(dir.join(fleetward_server::events::KEY_FILE)).unwrap();
    assert_eq!(key.trim().len(), 64);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.join(fleetward_server::events::KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the checkpoint key is private");
    }
    let checkpoints_before = store.checkpoints().await.unwrap();
    store.close().await;
    // Keep the temp dir alive past the server.
    let TestServer {
        dir: temp,
        server: running,
        ..
    } = server;
    running.unwrap().shutdown().await.unwrap();
    let store = fleetward_store::SqliteStore::open(
        &fleetward_server::ServerConfig::default_database_url(temp.path()),
    )
    .await
    .unwrap();
    use fleetward_store::EventLog as _;
    let checkpoints = store.checkpoints().await.unwrap();
    let last = checkpoints.last().expect("a checkpoint at shutdown");
    assert!(
        checkpoints_before.is_empty(),
        "the first periodic checkpoint is a minute away"
    );
    assert_eq!(checkpoints.len(), 1);
    assert_eq!((last.seq, last.hash), (head, hash));
}

#[tokio::test]
async fn retention_prunes_to_a_checkpoint_and_the_rest_still_verifies() {
    use fleetward_events::{Event, EventKind, Severity};
    let server = TestServer::start().await;
    let store = server.store().await;
    let now = time::OffsetDateTime::now_utc();
    let old = fleetward_server::events::millis(now - time::Duration::days(30));
    let events: Vec<Event> = (0..5)
        .map(|n| Event {
            kind: EventKind::HandshakeRefused,
            severity: Severity::Medium,
            device: None,
            source: Some("198.51.100.1".into()),
            server_time_ms: old + n,
            device_time_ms: None,
            message: format!("old {n}"),
            detail: "{}".into(),
        })
        .collect();
    let appended = store.append_events(&events).await.unwrap();
    let signer = fleetward_server::events::load_or_create_key(server.dir.path()).unwrap();
    let last_old = appended.last().unwrap();
    store
        .add_checkpoint(&signer.sign(last_old.seq, last_old.hash, old + 10))
        .await
        .unwrap();

    // Kept for a year by default: nothing goes.
    assert_eq!(
        fleetward_server::events::prune_now(&*store, now)
            .await
            .unwrap(),
        0
    );
    let answer = server
        .call(
            Some(&server.admin),
            reqwest::Method::PUT,
            "/api/v1/settings",
            Some(json!({"poll_interval_secs": 300, "default_token_lifetime_secs": 3600, "event_retention_days": 7})),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    let pruned = fleetward_server::events::prune_now(&*store, now)
        .await
        .unwrap();
    assert_eq!(pruned, last_old.seq);
    assert_eq!(
        store.event_anchor().await.unwrap().unwrap().seq,
        last_old.seq
    );

    let verified = server.get(&server.admin, "/api/v1/events/verify").await;
    assert_eq!(verified.body["ok"], true, "{:?}", verified.body);
    let bad = server
        .call(
            Some(&server.admin),
            reqwest::Method::PUT,
            "/api/v1/settings",
            Some(json!({"poll_interval_secs": 300, "default_token_lifetime_secs": 3600, "event_retention_days": 0})),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
}

/// `verify_store` reads the log in one part or in several at once; an
/// edit, a deletion or a swap anywhere (the first entry, a page boundary,
/// the entry a part starts from, the last entry) is named by its sequence
/// number either way, and the untouched log verifies.
#[tokio::test]
async fn verify_store_names_the_first_bad_entry_in_one_part_or_several() {
    use fleetward_events::{CheckpointSigner, Event, EventKind};
    use fleetward_store::{EventLog as _, SqliteStore, Store as _};

    let total = 2 * fleetward_store::MAX_PAGE as u64 + 500;
    let signer = CheckpointSigner::from_bytes(&[9; 32]);
    let key = signer.verifying_key();
    // (what to do to the stored log, the entry verify must name)
    let cases: &[(&str, Option<u64>)] = &[
        ("", None),
        (
            "UPDATE security_events SET message = 'edited' WHERE seq = 3",
            Some(3),
        ),
        (
            "UPDATE security_events SET detail = '{}' WHERE seq = 1000",
            Some(1000),
        ),
        ("DELETE FROM security_events WHERE seq = 1001", Some(1002)),
        (
            "UPDATE security_events SET seq = -seq WHERE seq IN (2001, 2002); \
          UPDATE security_events SET seq = 2002 WHERE seq = -2001; \
          UPDATE security_events SET seq = 2001 WHERE seq = -2002",
            Some(2001),
        ),
        (
            "UPDATE security_events SET severity = 'info' WHERE seq = 2500",
            Some(2500),
        ),
        // Split in three, the parts start after entries 833 and 1666.
        (
            "UPDATE security_events SET message = 'edited' WHERE seq = 833",
            Some(833),
        ),
        (
            "UPDATE security_events SET hash = zeroblob(32) WHERE seq = 1666",
            Some(1666),
        ),
        ("DELETE FROM security_events WHERE seq = 1666", Some(1667)),
        (
            "UPDATE security_events SET prev_hash = x'00' WHERE seq = 1667",
            Some(1667),
        ),
        // A kind no release of ours writes: an edit, not a decoding error.
        (
            "UPDATE security_events SET kind = 'nothing_happened' WHERE seq = 2000",
            Some(2000),
        ),
        ("DELETE FROM security_events WHERE seq > 2400", Some(2500)),
    ];
    for (tamper, bad) in cases {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("log.db").display());
        let store = SqliteStore::open(&url).await.unwrap();
        let events: Vec<Event> = (0..total)
            .map(|n| Event {
                kind: EventKind::VerificationFailed,
                severity: EventKind::VerificationFailed.default_severity(),
                device: None,
                source: Some("192.0.2.7".into()),
                server_time_ms: 1_790_000_000_000 + n as i64,
                device_time_ms: None,
                message: format!("event {n}"),
                detail: format!("{{\"n\":{n}}}"),
            })
            .collect();
        store.append_events(&events).await.unwrap();
        let (seq, hash) = store.event_head().await.unwrap();
        let middle = store.event(1200).await.unwrap().unwrap();
        for (seq, hash) in [(1200, middle.hash), (seq, hash)] {
            store
                .add_checkpoint(&signer.sign(seq, hash, 1_790_000_000_000))
                .await
                .unwrap();
        }
        if !tamper.is_empty() {
            let raw = sqlx::SqlitePool::connect(&url).await.unwrap();
            // Whoever holds the file can drop the append-only triggers.
            sqlx::raw_sql(
                "DROP TRIGGER security_events_no_update; DROP TRIGGER security_events_no_delete;",
            )
            .execute(&raw)
            .await
            .unwrap();
            sqlx::raw_sql(tamper).execute(&raw).await.unwrap();
            raw.close().await;
        }
        let one_part = fleetward_server::events::verify_store(&store, &key)
            .await
            .unwrap();
        let three_parts = fleetward_server::events::verify_store_in_parts(
            &store,
            &key,
            fleetward_server::events::Parts {
                max: 3,
                min_entries: 1,
            },
        )
        .await
        .unwrap();
        for verified in [one_part, three_parts] {
            assert_eq!(verified.bad_seq, *bad, "{tamper}: {verified:?}");
            assert_eq!(verified.ok, bad.is_none(), "{tamper}: {verified:?}");
            if bad.is_none() {
                assert_eq!(
                    (
                        verified.entries,
                        verified.checkpoints,
                        verified.unsigned_tail
                    ),
                    (total, 2, 0)
                );
            }
        }
        store.close().await;
    }
}
