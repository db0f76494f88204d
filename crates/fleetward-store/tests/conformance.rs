//! The store conformance suite: the behaviour every backend must have.
//!
//! Each check takes a fresh `Arc<dyn Store>` per backend: SQLite always,
//! PostgreSQL on a private server (`fleetward-testpg`: one server per test
//! binary, a fresh database per check). Without PostgreSQL binaries the
//! suite says loudly that it skipped them, or fails when
//! `FLEETWARD_TEST_POSTGRES=required` (as in CI).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::sync::Arc;

use fleetward_core::query::{CompareOp, Expr, Field, Value};
use fleetward_core::{DeviceId, DeviceStatus, Role, Tag, TagKey};
use fleetward_store::{
    AllowListEntry, AuditEntry, CaRecord, CertRecord, DeviceChange, Enrolment,
    EnrolmentTokenRecord, NewDevice, PostgresStore, RekeyTarget, SqliteStore, Store, StoreError,
    TokenRecord,
};
use time::OffsetDateTime;

struct Backend {
    name: &'static str,
    store: Arc<dyn Store>,
    url: String,
    _dir: Option<tempfile::TempDir>,
}

impl Backend {
    /// `n` handles on the same database as separate replicas would have
    /// them: for PostgreSQL separate stores (pools, connections); SQLite
    /// is owned by one process, so there the one store is shared.
    async fn replicas(&self, n: usize) -> Vec<Arc<dyn Store>> {
        let mut handles = Vec::new();
        for _ in 0..n {
            if self.name == "postgres" {
                handles.push(fleetward_store::open(&self.url).await.unwrap());
            } else {
                handles.push(self.store.clone());
            }
        }
        handles
    }
}

async fn sqlite() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("conformance.db").display());
    Backend {
        name: "sqlite",
        store: Arc::new(SqliteStore::open(&url).await.unwrap()),
        url,
        _dir: Some(dir),
    }
}

/// A fresh database on the shared private PostgreSQL, if there is one.
async fn postgres() -> Option<Backend> {
    let url = fleetward_testpg::fresh_database()?;
    Some(Backend {
        name: "postgres",
        store: Arc::new(PostgresStore::open(&url).await.unwrap()),
        url,
        _dir: None,
    })
}

/// Every backend available here.
async fn backends() -> Vec<Backend> {
    let mut all = vec![sqlite().await];
    all.extend(postgres().await);
    all
}

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_790_000_000).unwrap()
}

fn audit(action: &str) -> AuditEntry {
    AuditEntry {
        at: now(),
        actor: "test".into(),
        action: action.into(),
        target: "t".into(),
        source: "127.0.0.1:1".into(),
        detail: serde_json::json!({}),
    }
}

fn device(id: &str, hardware: &str, version: Option<&str>, tags: &[&str]) -> NewDevice {
    NewDevice {
        id: DeviceId::parse(id).unwrap(),
        hardware: hardware.into(),
        version: version.map(Into::into),
        status: DeviceStatus::Active,
        tags: tags.iter().map(|t| Tag::parse(t).unwrap()).collect(),
    }
}

async fn ids(store: &dyn Store, query: Option<&Expr>) -> Vec<String> {
    let listed: Vec<String> = store
        .list_devices(query, None, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id.to_string())
        .collect();
    assert_eq!(
        store.count_devices(query).await.unwrap(),
        listed.len() as u64,
        "count agrees with list"
    );
    listed
}

async fn each_backend<F, Fut>(check: F)
where
    F: Fn(Arc<dyn Store>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for backend in backends().await {
        eprintln!("conformance on {}", backend.name);
        check(backend.store.clone()).await;
        backend.store.close().await;
    }
}

#[tokio::test]
async fn tokens_round_trip_and_revoke_once() {
    each_backend(|store| async move {
        let token = TokenRecord {
            id: "0123456789abcdef".into(),
            name: "ci".into(),
            role: Role::Operator,
            secret_hash: [7; 32],
            created_at: now(),
            expires_at: Some(now() + time::Duration::days(1)),
            revoked_at: None,
            created_by: "init".into(),
        };
        store
            .insert_token(&token, &audit("token.create"))
            .await
            .unwrap();
        assert_eq!(store.token(&token.id).await.unwrap(), Some(token.clone()));
        assert!(matches!(
            store.insert_token(&token, &audit("again")).await,
            Err(StoreError::Conflict(_))
        ));
        let revoked = store
            .revoke_token(&token.id, now(), &audit("token.revoke"))
            .await
            .unwrap();
        assert_eq!(revoked.revoked_at, Some(now()));
        assert!(matches!(
            store.revoke_token(&token.id, now(), &audit("again")).await,
            Err(StoreError::Conflict(_))
        ));
        assert!(matches!(
            store.revoke_token("nope", now(), &audit("x")).await,
            Err(StoreError::NotFound(_))
        ));
        let actions: Vec<String> = store
            .list_audit(None, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.entry.action)
            .collect();
        assert_eq!(
            actions,
            ["token.create", "token.revoke"],
            "failed calls leave no audit record"
        );
    })
    .await;
}

#[tokio::test]
async fn a_batch_is_stored_whole_or_not_at_all() {
    each_backend(|store| async move {
        store
            .register_devices(&[device("a", "rev1", None, &[])], now(), &audit("one"))
            .await
            .unwrap();
        let batch = [
            device("b", "rev1", None, &["x=1"]),
            device("a", "rev1", None, &[]),
            device("c", "rev1", None, &[]),
        ];
        assert!(matches!(
            store.register_devices(&batch, now(), &audit("batch")).await,
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(ids(&*store, None).await, ["a"]);
        assert_eq!(store.list_audit(None, 100).await.unwrap().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn device_changes() {
    each_backend(|store| async move {
        store
            .register_devices(
                &[device("a", "rev1", Some("1.0.0"), &["region=eu", "beta"])],
                now(),
                &audit("r"),
            )
            .await
            .unwrap();
        let id = DeviceId::parse("a").unwrap();
        let change = DeviceChange {
            status: Some(DeviceStatus::Quarantined),
            set_tags: vec![
                Tag::parse("region=us").unwrap(),
                Tag::parse("ring=canary").unwrap(),
            ],
            remove_tags: vec![TagKey::parse("beta").unwrap()],
        };
        let changed = store
            .update_device(&id, &change, &audit("u"))
            .await
            .unwrap();
        assert_eq!(changed.status, DeviceStatus::Quarantined);
        let tags: Vec<String> = changed
            .tags
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str()))
            .collect();
        assert_eq!(tags, ["region=us", "ring=canary"]);
        assert_eq!(store.device(&id).await.unwrap(), Some(changed));
        let missing = DeviceId::parse("zzz").unwrap();
        assert!(matches!(
            store.update_device(&missing, &change, &audit("u")).await,
            Err(StoreError::NotFound(_))
        ));
    })
    .await;
}

/// A device read by id (SQLite answers it with one joined statement on the
/// calling thread) equals the same device read through a list, whatever its
/// number of tags; an unknown id is `None`.
#[tokio::test]
async fn a_device_read_by_id_equals_the_listed_device() {
    each_backend(|store| async move {
        let cases: &[(&str, &[&str])] = &[
            ("no-tags", &[]),
            ("one-tag", &["region=eu"]),
            ("three-tags", &["region=eu", "ring=canary", "beta"]),
        ];
        let new: Vec<_> = cases
            .iter()
            .map(|(id, tags)| device(id, "rev1", Some("1.0.0"), tags))
            .collect();
        store
            .register_devices(&new, now(), &audit("r"))
            .await
            .unwrap();
        let listed = store.list_devices(None, None, 100).await.unwrap();
        for (id, tags) in cases {
            let read = store
                .device(&DeviceId::parse(id).unwrap())
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("{id} not found"));
            let mut expected: Vec<String> = tags
                .iter()
                .map(|t| {
                    if t.contains('=') {
                        t.to_string()
                    } else {
                        format!("{t}=")
                    }
                })
                .collect();
            expected.sort();
            let got: Vec<String> = read
                .tags
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str()))
                .collect();
            assert_eq!(got, expected, "{id}");
            let in_list = listed.iter().find(|d| d.id.as_str() == *id).unwrap();
            assert_eq!(&read, in_list, "{id}");
        }
        let unknown = DeviceId::parse("never-registered").unwrap();
        assert_eq!(store.device(&unknown).await.unwrap(), None);
    })
    .await;
}

#[tokio::test]
async fn paging_visits_every_device_once_in_id_order() {
    each_backend(|store| async move {
        let fleet: Vec<NewDevice> = (0..95)
            .map(|n| device(&format!("d{n:03}"), "rev1", None, &[]))
            .collect();
        store
            .register_devices(&fleet, now(), &audit("r"))
            .await
            .unwrap();
        let mut after: Option<DeviceId> = None;
        let mut seen = Vec::new();
        loop {
            let page = store.list_devices(None, after.as_ref(), 10).await.unwrap();
            if page.is_empty() {
                break;
            }
            after = page.last().map(|d| d.id.clone());
            seen.extend(page.into_iter().map(|d| d.id.to_string()));
        }
        let expected: Vec<String> = (0..95).map(|n| format!("d{n:03}")).collect();
        assert_eq!(seen, expected);
    })
    .await;
}

fn tag(key: &str) -> Field {
    Field::Tag(TagKey::parse(key).unwrap())
}

fn cmp(field: Field, op: CompareOp, value: &str) -> Expr {
    let value = match field {
        Field::Status => Value::Status(DeviceStatus::parse(value).unwrap()),
        _ => Value::Text(value.into()),
    };
    Expr::Compare { field, op, value }
}

fn not(e: Expr) -> Expr {
    Expr::Not(Box::new(e))
}

fn and(a: Expr, b: Expr) -> Expr {
    Expr::And(Box::new(a), Box::new(b))
}

fn or(a: Expr, b: Expr) -> Expr {
    Expr::Or(Box::new(a), Box::new(b))
}

#[tokio::test]
async fn queries_select_exactly_the_matching_devices() {
    each_backend(|store| async move {
        let fleet = [
            device("a", "rev1", Some("1.0.0"), &["region=eu"]),
            device("b", "rev2", Some("2.0.0-rc.1"), &["region=us", "beta"]),
            device("c", "rev2", Some("2.0.0"), &["region=eu", "beta"]),
            device("d", "rev2", Some("10.0.0"), &["region=apac"]),
            device("e", "rev1", None, &[]),
        ];
        store
            .register_devices(&fleet, now(), &audit("r"))
            .await
            .unwrap();
        store
            .update_device(
                &DeviceId::parse("e").unwrap(),
                &DeviceChange {
                    status: Some(DeviceStatus::Pending),
                    ..Default::default()
                },
                &audit("u"),
            )
            .await
            .unwrap();
        use CompareOp::*;
        let table: Vec<(&str, Expr, &[&str])> = vec![
            (
                "hardware equals",
                cmp(Field::Hardware, Eq, "rev2"),
                &["b", "c", "d"],
            ),
            (
                "hardware differs",
                cmp(Field::Hardware, Ne, "rev2"),
                &["a", "e"],
            ),
            (
                "tag present",
                Expr::Has(TagKey::parse("beta").unwrap()),
                &["b", "c"],
            ),
            (
                "tag absent",
                not(Expr::Has(TagKey::parse("beta").unwrap())),
                &["a", "d", "e"],
            ),
            ("tag value", cmp(tag("region"), Eq, "eu"), &["a", "c"]),
            (
                "tag != includes untagged",
                cmp(tag("region"), Ne, "eu"),
                &["b", "d", "e"],
            ),
            (
                "tag in",
                Expr::In {
                    field: tag("region"),
                    values: vec![Value::Text("us".into()), Value::Text("apac".into())],
                },
                &["b", "d"],
            ),
            (
                "version orders as versions, not text",
                cmp(Field::Version, Lt, "2.0.0"),
                &["a", "b"],
            ),
            (
                "10.0.0 is above 2.0.0",
                cmp(Field::Version, Gt, "2.0.0"),
                &["d"],
            ),
            (
                "pre-release below release",
                cmp(Field::Version, Ge, "2.0.0-rc.1"),
                &["b", "c", "d"],
            ),
            (
                "unknown version matches no comparison",
                cmp(Field::Version, Le, "99"),
                &["a", "b", "c", "d"],
            ),
            (
                "but matches its negation",
                not(cmp(Field::Version, Le, "99")),
                &["e"],
            ),
            ("status", cmp(Field::Status, Eq, "pending"), &["e"]),
            ("id", cmp(Field::Id, Eq, "c"), &["c"]),
            (
                "the README example",
                and(
                    and(
                        cmp(Field::Hardware, Eq, "rev2"),
                        Expr::In {
                            field: tag("region"),
                            values: vec![Value::Text("eu".into()), Value::Text("us".into())],
                        },
                    ),
                    cmp(Field::Version, Lt, "3.0.0"),
                ),
                &["b", "c"],
            ),
            (
                "or",
                or(cmp(Field::Id, Eq, "a"), cmp(Field::Id, Eq, "e")),
                &["a", "e"],
            ),
            // With an indexed column beside them, tag tests take their other
            // SQL form (EXISTS); the answers must not change.
            (
                "hardware and no tag",
                and(
                    cmp(Field::Hardware, Eq, "rev2"),
                    not(Expr::Has(TagKey::parse("beta").unwrap())),
                ),
                &["d"],
            ),
            (
                "hardware and tag differs",
                and(
                    cmp(Field::Hardware, Eq, "rev2"),
                    cmp(tag("region"), Ne, "eu"),
                ),
                &["b", "d"],
            ),
            (
                "hardware or tag",
                or(
                    cmp(Field::Hardware, Eq, "rev1"),
                    Expr::Has(TagKey::parse("beta").unwrap()),
                ),
                &["a", "b", "c", "e"],
            ),
        ];
        for (what, expr, expected) in table {
            let got: BTreeSet<String> = ids(&*store, Some(&expr)).await.into_iter().collect();
            let expected: BTreeSet<String> = expected.iter().map(|s| s.to_string()).collect();
            assert_eq!(got, expected, "{what}: {expr:?}");
        }
    })
    .await;
}

#[tokio::test]
async fn settings_default_then_persist() {
    each_backend(|store| async move {
        let defaults = store.settings().await.unwrap();
        assert_eq!(defaults, fleetward_store::Settings::default());
        let changed = fleetward_store::Settings {
            poll_interval_secs: 60,
            ..defaults
        };
        store
            .put_settings(&changed, &audit("settings"))
            .await
            .unwrap();
        assert_eq!(store.settings().await.unwrap(), changed);
    })
    .await;
}

#[tokio::test]
async fn devices_seen_since() {
    each_backend(|store| async move {
        store
            .register_devices(&[device("a", "rev1", None, &[])], now(), &audit("r"))
            .await
            .unwrap();
        assert_eq!(
            store
                .count_devices_seen_since(now() - time::Duration::hours(1))
                .await
                .unwrap(),
            0
        );
    })
    .await;
}

fn security_event(
    n: i64,
    kind: fleetward_events::EventKind,
    device: Option<&str>,
) -> fleetward_events::Event {
    fleetward_events::Event {
        kind,
        severity: kind.default_severity(),
        device: device.map(|d| DeviceId::parse(d).unwrap()),
        source: Some("192.0.2.1".into()),
        server_time_ms: 1_790_000_000_000 + n,
        device_time_ms: None,
        message: format!("event {n}"),
        detail: "{}".into(),
    }
}

fn checkpoint_signer() -> fleetward_events::CheckpointSigner {
    fleetward_events::CheckpointSigner::from_bytes(&[3; 32])
}

/// Verifies the whole stored log the way `fleetward events verify` does.
async fn verify_log(
    store: &dyn Store,
) -> Result<fleetward_events::Summary, fleetward_events::Tamper> {
    let filter = fleetward_store::EventFilter::default();
    let mut entries = Vec::new();
    let mut after = None;
    loop {
        let page = store.list_events(&filter, after, 1000).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.seq);
        entries.extend(page);
    }
    let checkpoints = store.checkpoints().await.unwrap();
    let anchor = store.event_anchor().await.unwrap();
    fleetward_events::verify(
        entries,
        &checkpoints,
        &checkpoint_signer().verifying_key(),
        anchor.as_ref(),
    )
}

#[tokio::test]
async fn the_event_log_chains_filters_checkpoints_and_prunes() {
    use fleetward_events::{EventKind, Severity};
    each_backend(|store| async move {
        assert_eq!(store.event_head().await.unwrap().0, 0);
        // Audited changes land in the event log in the same transaction.
        store
            .register_devices(
                &[device("a", "rev1", None, &[])],
                now(),
                &audit("device.register"),
            )
            .await
            .unwrap();
        let events: Vec<_> = (1..=20)
            .map(|n| {
                let kind = if n % 4 == 0 {
                    EventKind::HandshakeRefused
                } else {
                    EventKind::DeviceEnrolled
                };
                security_event(n, kind, (n % 2 == 0).then_some("a"))
            })
            .collect();
        let entries = store.append_events(&events).await.unwrap();
        assert_eq!(
            entries.first().unwrap().seq,
            2,
            "after the audited registration"
        );
        assert_eq!(
            store.event_head().await.unwrap(),
            (21, entries.last().unwrap().hash)
        );
        let first = store.event(1).await.unwrap().unwrap();
        assert_eq!(first.event.kind, EventKind::OperatorAction);
        assert!(
            first.event.message.contains("device.register"),
            "{}",
            first.event.message
        );

        let check = |filter: fleetward_store::EventFilter, expected: usize| {
            let store = store.clone();
            async move {
                let found = store.list_events(&filter, None, 1000).await.unwrap();
                assert_eq!(found.len(), expected, "{filter:?}");
            }
        };
        check(Default::default(), 21).await;
        check(
            fleetward_store::EventFilter {
                kinds: vec![EventKind::HandshakeRefused],
                ..Default::default()
            },
            5,
        )
        .await;
        check(
            fleetward_store::EventFilter {
                min_severity: Some(Severity::Medium),
                ..Default::default()
            },
            5,
        )
        .await;
        check(
            fleetward_store::EventFilter {
                device: Some(DeviceId::parse("a").unwrap()),
                ..Default::default()
            },
            10,
        )
        .await;
        check(
            fleetward_store::EventFilter {
                since_ms: Some(1_790_000_000_000 + 5),
                until_ms: Some(1_790_000_000_000 + 10),
                ..Default::default()
            },
            5,
        )
        .await;
        let page = store
            .list_events(&Default::default(), Some(15), 3)
            .await
            .unwrap();
        assert_eq!(
            page.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![16, 17, 18]
        );

        // Bad input changes nothing.
        let mut oversized = security_event(99, EventKind::DeviceEnrolled, None);
        oversized.message = "x".repeat(5000);
        let error = store
            .append_events(&[
                security_event(98, EventKind::DeviceEnrolled, None),
                oversized,
            ])
            .await;
        assert!(matches!(error, Err(StoreError::Invalid(_))), "{error:?}");
        assert_eq!(
            store.event_head().await.unwrap().0,
            21,
            "nothing half-appended"
        );

        // Checkpoints must match the log.
        let signer = checkpoint_signer();
        let at_10 = store.event(10).await.unwrap().unwrap();
        let wrong = signer.sign(10, entries[0].hash, 0);
        assert!(matches!(
            store.add_checkpoint(&wrong).await,
            Err(StoreError::Conflict(_))
        ));
        store
            .add_checkpoint(&signer.sign(10, at_10.hash, 1))
            .await
            .unwrap();
        let at_20 = store.event(20).await.unwrap().unwrap();
        store
            .add_checkpoint(&signer.sign(20, at_20.hash, 2))
            .await
            .unwrap();
        let summary = verify_log(&*store).await.unwrap();
        assert_eq!(
            (summary.entries, summary.checkpoints, summary.unsigned_tail),
            (21, 2, 1)
        );

        // Retention: entries before event 13's time go, up to the checkpoint at 10.
        let cutoff = at_10.event.server_time_ms.max(1_790_000_000_000 + 12);
        let pruned = store
            .prune_events(cutoff, &audit("events.prune"))
            .await
            .unwrap();
        assert_eq!(pruned, 10);
        let anchor = store.event_anchor().await.unwrap().unwrap();
        assert_eq!(anchor.seq, 10);
        let summary = verify_log(&*store).await.unwrap();
        assert_eq!(
            summary.first_seq,
            Some(11),
            "the rest verifies from the anchor"
        );
        assert_eq!(summary.last_seq, Some(22), "the prune itself was audited");
    })
    .await;
}

/// Someone holding the database file drops the triggers and edits rows;
/// verification names the entry.
#[tokio::test]
async fn monitor_cursors_persist_and_never_move_back() {
    each_backend(|store| async move {
        assert_eq!(store.monitor_cursor("webhook:0").await.unwrap(), None);
        store.set_monitor_cursor("webhook:0", 7).await.unwrap();
        store.set_monitor_cursor("syslog", 3).await.unwrap();
        assert_eq!(store.monitor_cursor("webhook:0").await.unwrap(), Some(7));
        assert_eq!(store.monitor_cursor("syslog").await.unwrap(), Some(3));
        // A slower replica finishing late must not rewind the cursor.
        store.set_monitor_cursor("webhook:0", 5).await.unwrap();
        assert_eq!(store.monitor_cursor("webhook:0").await.unwrap(), Some(7));
        store.set_monitor_cursor("webhook:0", 9).await.unwrap();
        assert_eq!(store.monitor_cursor("webhook:0").await.unwrap(), Some(9));
    })
    .await;
}

#[tokio::test]
async fn tampering_with_the_sqlite_file_is_found() {
    use fleetward_events::{EventKind, TamperKind};
    let backend = sqlite().await;
    let store = backend.store.clone();
    let events: Vec<_> = (1..=12)
        .map(|n| security_event(n, EventKind::DeviceEnrolled, None))
        .collect();
    store.append_events(&events).await.unwrap();
    let signer = checkpoint_signer();
    let at_10 = store.event(10).await.unwrap().unwrap();
    store
        .add_checkpoint(&signer.sign(10, at_10.hash, 1))
        .await
        .unwrap();
    let path = backend._dir.as_ref().unwrap().path().join("conformance.db");

    let db = rusqlite::Connection::open(&path).unwrap();
    let refused = db.execute("UPDATE security_events SET message = 'x' WHERE seq = 4", []);
    assert!(refused.is_err(), "the trigger refuses edits");
    assert!(
        db.execute("DELETE FROM security_events WHERE seq = 4", [])
            .is_err()
    );

    db.execute_batch(
        "DROP TRIGGER security_events_no_update; DROP TRIGGER security_events_no_delete;",
    )
    .unwrap();
    db.execute(
        "UPDATE security_events SET message = 'nothing happened' WHERE seq = 4",
        [],
    )
    .unwrap();
    let tamper = verify_log(&*store).await.unwrap_err();
    assert_eq!((tamper.seq, tamper.kind), (4, TamperKind::Edited));

    db.execute(
        "UPDATE security_events SET message = 'event 4' WHERE seq = 4",
        [],
    )
    .unwrap();
    assert!(verify_log(&*store).await.is_ok(), "restored");
    db.execute("DELETE FROM security_events WHERE seq = 6", [])
        .unwrap();
    let tamper = verify_log(&*store).await.unwrap_err();
    assert_eq!(tamper.seq, 7);
    db.execute("DELETE FROM security_events WHERE seq >= 7", [])
        .unwrap();
    let tamper = verify_log(&*store).await.unwrap_err();
    assert!(
        matches!(
            tamper.kind,
            TamperKind::Truncated {
                checkpoint_seq: 10,
                ..
            }
        ),
        "{tamper}"
    );
    store.close().await;
}

// --- Device identity -------------------------------------------------------

fn enrolment_token(id: &str, uses: u32) -> EnrolmentTokenRecord {
    EnrolmentTokenRecord {
        id: id.into(),
        name: "line 1".into(),
        secret_hash: [9; 32],
        tags: vec![
            Tag::parse("hw=rev2").unwrap(),
            Tag::parse("region=eu").unwrap(),
        ],
        uses_total: uses,
        uses_left: uses,
        require_approval: false,
        allow_listed_only: false,
        created_at: now(),
        expires_at: now() + time::Duration::days(1),
        revoked_at: None,
        created_by: "test".into(),
    }
}

fn cert(serial: &str, device: &str, issued_at: OffsetDateTime) -> CertRecord {
    CertRecord {
        serial: serial.into(),
        device_id: DeviceId::parse(device).unwrap(),
        not_before: issued_at,
        not_after: issued_at + time::Duration::days(90),
        issued_at,
        key_kind: "ec-p256".into(),
        revoked_at: None,
        reason: None,
        comment: None,
    }
}

fn enrolment(token: &str, device: &str, serial: &str) -> Enrolment {
    Enrolment {
        token_id: token.into(),
        device_id: DeviceId::parse(device).unwrap(),
        hardware: "unknown".into(),
        status: DeviceStatus::Active,
        tags: vec![Tag::parse("hw=rev2").unwrap()],
        cert: cert(serial, device, now()),
    }
}

async fn audit_actions(store: &dyn Store) -> Vec<String> {
    store
        .list_audit(None, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.entry.action)
        .collect()
}

#[tokio::test]
async fn the_fleet_ca_is_recorded_once() {
    each_backend(|store| async move {
        assert_eq!(store.ca().await.unwrap(), None);
        let ca = CaRecord {
            cert_pem: "-----BEGIN CERTIFICATE-----".into(),
            key_path: "/secure/ca.key".into(),
            fingerprint: "ab".into(),
            created_at: now(),
        };
        store.put_ca(&ca, &audit("ca.create")).await.unwrap();
        assert_eq!(store.ca().await.unwrap(), Some(ca.clone()));
        assert!(matches!(
            store.put_ca(&ca, &audit("again")).await,
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(audit_actions(&*store).await, ["ca.create"]);
    })
    .await;
}

#[tokio::test]
async fn enrolment_tokens_round_trip_and_revoke_once() {
    each_backend(|store| async move {
        let token = enrolment_token("t1", 3);
        store
            .insert_enrolment_token(&token, &audit("enroll_token.create"))
            .await
            .unwrap();
        assert_eq!(
            store.enrolment_token("t1").await.unwrap(),
            Some(token.clone())
        );
        assert_eq!(store.list_enrolment_tokens().await.unwrap(), vec![token]);
        let revoked = store
            .revoke_enrolment_token("t1", now(), &audit("enroll_token.revoke"))
            .await
            .unwrap();
        assert_eq!(revoked.revoked_at, Some(now()));
        assert!(matches!(
            store.revoke_enrolment_token("t1", now(), &audit("x")).await,
            Err(StoreError::Conflict(_))
        ));
        assert!(matches!(
            store
                .revoke_enrolment_token("nope", now(), &audit("x"))
                .await,
            Err(StoreError::NotFound(_))
        ));
    })
    .await;
}

#[tokio::test]
async fn enrolment_consumes_uses_and_refusals_store_nothing() {
    each_backend(|store| async move {
        store
            .insert_enrolment_token(&enrolment_token("t2", 2), &audit("create"))
            .await
            .unwrap();
        let device = store
            .enroll(&enrolment("t2", "dev-a", "0a"), &audit("device.enroll"))
            .await
            .unwrap();
        assert_eq!(device.status, DeviceStatus::Active);
        assert_eq!(device.tags.len(), 1);
        assert_eq!(
            store
                .enrolment_token("t2")
                .await
                .unwrap()
                .unwrap()
                .uses_left,
            1
        );
        // A replay for the same device: conflict, the use is not consumed.
        assert!(matches!(
            store
                .enroll(&enrolment("t2", "dev-a", "0b"), &audit("x"))
                .await,
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(
            store
                .enrolment_token("t2")
                .await
                .unwrap()
                .unwrap()
                .uses_left,
            1
        );
        store
            .enroll(&enrolment("t2", "dev-b", "0c"), &audit("device.enroll"))
            .await
            .unwrap();
        // Used up.
        assert!(matches!(
            store
                .enroll(&enrolment("t2", "dev-c", "0d"), &audit("x"))
                .await,
            Err(StoreError::Conflict(_))
        ));
        // Expired, revoked and unknown tokens.
        let mut expired = enrolment_token("t3", 5);
        expired.expires_at = now();
        store
            .insert_enrolment_token(&expired, &audit("create"))
            .await
            .unwrap();
        assert!(matches!(
            store
                .enroll(&enrolment("t3", "dev-c", "0d"), &audit("x"))
                .await,
            Err(StoreError::Conflict(_))
        ));
        assert!(matches!(
            store
                .enroll(&enrolment("t404", "dev-c", "0d"), &audit("x"))
                .await,
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(
            store
                .device(&DeviceId::parse("dev-c").unwrap())
                .await
                .unwrap(),
            None
        );
        assert_eq!(store.certificate("0d").await.unwrap(), None);
        assert_eq!(
            audit_actions(&*store).await,
            ["create", "device.enroll", "device.enroll", "create"]
        );
    })
    .await;
}

#[tokio::test]
async fn renewal_schedules_the_old_certificate_and_revocation_is_immediate() {
    each_backend(|store| async move {
        store
            .insert_enrolment_token(&enrolment_token("t4", 5), &audit("create"))
            .await
            .unwrap();
        let dev = DeviceId::parse("dev-r").unwrap();
        store
            .enroll(&enrolment("t4", "dev-r", "01"), &audit("enroll"))
            .await
            .unwrap();
        store
            .request_rekey(
                &RekeyTarget::Devices(vec![dev.clone()]),
                now(),
                Some(now() + time::Duration::days(90)),
                &audit("rekey"),
            )
            .await
            .unwrap();
        assert_eq!(
            store.rekey_requested(&dev).await.unwrap(),
            Some(fleetward_store::RekeyRequest {
                requested_at: now(),
                deadline: Some(now() + time::Duration::days(90)),
            })
        );
        // Not overdue before the deadline; overdue from it on.
        let check_overdue = |at: OffsetDateTime, expected: Vec<DeviceId>| {
            let store = store.clone();
            async move {
                assert_eq!(
                    store.overdue_rekeys(at, 10).await.unwrap(),
                    expected,
                    "{at}"
                )
            }
        };
        check_overdue(now() + time::Duration::days(89), vec![]).await;
        check_overdue(now() + time::Duration::days(90), vec![dev.clone()]).await;
        let later = now() + time::Duration::days(60);
        let overlap_end = later + time::Duration::days(1);
        store
            .renew(
                "01",
                overlap_end,
                &cert("02", "dev-r", later),
                &audit("renew"),
            )
            .await
            .unwrap();
        assert_eq!(store.rekey_requested(&dev).await.unwrap(), None);
        check_overdue(now() + time::Duration::days(90), vec![]).await;
        let old = store.certificate("01").await.unwrap().unwrap();
        assert_eq!(old.revoked_at, Some(overlap_end));
        assert_eq!(old.reason.as_deref(), Some("superseded"));
        assert!(old.is_live(later) && !old.is_live(overlap_end));
        // Renewing from a certificate that is no longer live is refused.
        assert!(matches!(
            store
                .renew(
                    "01",
                    overlap_end,
                    &cert("03", "dev-r", overlap_end),
                    &audit("x")
                )
                .await,
            Err(StoreError::Conflict(_))
        ));
        // Revoking the device revokes both, now (the scheduled one earlier).
        let revoked = store
            .revoke_device(
                &dev,
                later,
                "key-compromise",
                "stolen",
                false,
                &audit("revoke"),
            )
            .await
            .unwrap();
        assert_eq!(revoked.len(), 2);
        assert!(
            store
                .certificates(&dev)
                .await
                .unwrap()
                .iter()
                .all(|c| c.revoked_at == Some(later))
        );
        assert_eq!(store.revoked_certificates().await.unwrap().len(), 2);
        store
            .revoke_device(
                &dev,
                later,
                "cessation-of-operation",
                "end",
                true,
                &audit("decommission"),
            )
            .await
            .unwrap();
        assert_eq!(
            store.device(&dev).await.unwrap().unwrap().status,
            DeviceStatus::Decommissioned
        );
        assert!(matches!(
            store
                .revoke_device(&dev, later, "x", "", true, &audit("x"))
                .await,
            Err(StoreError::Conflict(_))
        ));
    })
    .await;
}

#[tokio::test]
async fn rekey_by_query_and_the_allow_list() {
    each_backend(|store| async move {
        store
            .register_devices(
                &[
                    device("q1", "rev2", None, &["region=eu"]),
                    device("q2", "rev2", None, &["region=us"]),
                    device("q3", "rev3", None, &["region=eu"]),
                ],
                now(),
                &audit("register"),
            )
            .await
            .unwrap();
        let eu = cmp(tag("region"), CompareOp::Eq, "eu");
        assert_eq!(
            store
                .request_rekey(&RekeyTarget::Query(eu), now(), None, &audit("rekey"))
                .await
                .unwrap(),
            2
        );
        assert_eq!(
            store
                .request_rekey(&RekeyTarget::All, now(), None, &audit("rekey"))
                .await
                .unwrap(),
            3
        );
        // Revoking a device's certificates ends its re-key request.
        let q1 = DeviceId::parse("q1").unwrap();
        assert!(store.rekey_requested(&q1).await.unwrap().is_some());
        store
            .revoke_device(&q1, now(), "unspecified", "test", false, &audit("revoke"))
            .await
            .unwrap();
        assert_eq!(store.rekey_requested(&q1).await.unwrap(), None);
        // Without a deadline nothing is ever overdue.
        assert_eq!(
            store
                .overdue_rekeys(now() + time::Duration::days(3650), 10)
                .await
                .unwrap(),
            vec![]
        );
        assert_eq!(store.count_allow_list().await.unwrap(), 0);
        let entry = AllowListEntry {
            device_id: DeviceId::parse("line-1").unwrap(),
            public_key: Some(vec![1, 2, 3]),
            added_at: now(),
        };
        store
            .put_allow_list(std::slice::from_ref(&entry), &audit("allow"))
            .await
            .unwrap();
        assert_eq!(
            store.allow_list_entry(&entry.device_id).await.unwrap(),
            Some(entry)
        );
        assert_eq!(
            store
                .allow_list_entry(&DeviceId::parse("line-2").unwrap())
                .await
                .unwrap(),
            None
        );
        assert_eq!(store.count_allow_list().await.unwrap(), 1);
    })
    .await;
}

fn artifact(n: u8) -> fleetward_store::ArtifactRecord {
    fleetward_store::ArtifactRecord {
        sha256: format!("{n:02x}").repeat(32),
        sha512: format!("{n:02x}").repeat(64),
        length: u64::from(n) * 1000,
        created_at: now(),
    }
}

fn release(version: &str, hardware: &str, n: u8) -> fleetward_store::ReleaseRecord {
    fleetward_store::ReleaseRecord {
        version: version.into(),
        hardware: hardware.into(),
        state: fleetward_core::ReleaseState::Draft,
        target_name: format!("{hardware}/{version}/fw.img"),
        artifact_sha256: artifact(n).sha256,
        sbom_sha256: None,
        notes: String::new(),
        created_at: now(),
        created_by: "test".into(),
        updated_at: now(),
    }
}

fn metadata(role: &str, version: u64) -> fleetward_store::TufMetadataRecord {
    fleetward_store::TufMetadataRecord {
        role: role.into(),
        version,
        body: format!("{role} {version}").into_bytes(),
        expires_at: now() + time::Duration::days(1),
        created_at: now(),
    }
}

#[tokio::test]
async fn artifacts_are_deduplicated_and_releases_unique() {
    use fleetward_core::ReleaseState as S;
    each_backend(|store| async move {
        assert!(
            store
                .insert_artifact(&artifact(1), &audit("a"))
                .await
                .unwrap()
        );
        assert!(
            !store
                .insert_artifact(&artifact(1), &audit("a"))
                .await
                .unwrap()
        );
        assert_eq!(
            store.artifact(&artifact(1).sha256).await.unwrap(),
            Some(artifact(1))
        );
        assert_eq!(store.artifact(&artifact(2).sha256).await.unwrap(), None);

        store
            .insert_release(&release("1.0.0", "rev2", 1), &audit("r"))
            .await
            .unwrap();
        assert!(matches!(
            store
                .insert_release(&release("1.0.0", "rev2", 1), &audit("r"))
                .await,
            Err(StoreError::Conflict(_))
        ));
        assert!(matches!(
            store
                .insert_release(&release("2.0.0", "rev2", 9), &audit("r"))
                .await,
            Err(StoreError::NotFound(_))
        ));
        store
            .insert_release(&release("1.10.0", "rev2", 1), &audit("r"))
            .await
            .unwrap();
        assert_eq!(store.list_releases().await.unwrap().len(), 2);
        assert_eq!(store.latest_published_release("rev2").await.unwrap(), None);

        let to = |version: &str, from, to| fleetward_store::ReleaseTransition {
            version: version.into(),
            from,
            to,
            at: now(),
        };
        store
            .publish_tuf(
                &[metadata("targets", 1)],
                &[to("1.0.0", S::Draft, S::Signed)],
                &audit("s"),
            )
            .await
            .unwrap();
        // A stale `from` or a repeated version changes nothing at all.
        assert!(matches!(
            store
                .publish_tuf(
                    &[metadata("targets", 2)],
                    &[to("1.0.0", S::Draft, S::Signed)],
                    &audit("s")
                )
                .await,
            Err(StoreError::Conflict(_))
        ));
        assert!(matches!(
            store
                .publish_tuf(&[metadata("targets", 1)], &[], &audit("s"))
                .await,
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(
            store.tuf_latest("targets").await.unwrap().unwrap().version,
            1
        );
        store
            .publish_tuf(&[], &[to("1.0.0", S::Signed, S::Published)], &audit("p"))
            .await
            .unwrap();
        let latest = store
            .latest_published_release("rev2")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (latest.version.as_str(), latest.state),
            ("1.0.0", S::Published)
        );
        assert_eq!(store.latest_published_release("rev1").await.unwrap(), None);
        assert_eq!(
            store.tuf_version("targets", 1).await.unwrap().unwrap().body,
            b"targets 1"
        );
        assert_eq!(store.tuf_version("targets", 2).await.unwrap(), None);
        assert_eq!(store.tuf_latest("root").await.unwrap(), None);

        store
            .register_devices(
                &[
                    device("a-1", "rev2", Some("1.0.0"), &[]),
                    device("a-2", "rev2", Some("0.9"), &[]),
                    device("a-3", "rev1", Some("1.0.0"), &[]),
                ],
                now(),
                &audit("d"),
            )
            .await
            .unwrap();
        let running = store.devices_running("rev2", "1.0.0", 10).await.unwrap();
        assert_eq!(
            running.iter().map(|d| d.as_str()).collect::<Vec<_>>(),
            ["a-1"]
        );
    })
    .await;
}

// ----- Dashboards -----

#[tokio::test]
async fn release_vulnerabilities_are_stored_with_their_events_or_not_at_all() {
    use fleetward_events::EventKind;
    each_backend(|store| async move {
        store
            .insert_artifact(&artifact(1), &audit("a"))
            .await
            .unwrap();
        store
            .insert_release(&release("1.0.0", "rev2", 1), &audit("r"))
            .await
            .unwrap();
        assert_eq!(store.release_vulnerabilities().await.unwrap(), vec![]);
        let (head_before, _) = store.event_head().await.unwrap();

        let clean = fleetward_store::ReleaseVulnerabilities {
            version: "1.0.0".into(),
            basis: "index 1 policy a".into(),
            advisory_ids: vec![],
            vulnerable_since: None,
            checked_at: now(),
        };
        let entries = store
            .put_release_vulnerabilities(&clean, None, &[])
            .await
            .unwrap();
        assert!(entries.is_empty());
        assert_eq!(store.release_vulnerabilities().await.unwrap(), vec![clean]);

        // A change and its event land together; the row is replaced.
        let vulnerable = fleetward_store::ReleaseVulnerabilities {
            version: "1.0.0".into(),
            basis: "index 2 policy a".into(),
            advisory_ids: vec!["GHSA-aaaa-bbbb-cccc".into(), "RUSTSEC-2026-0001".into()],
            vulnerable_since: Some(now()),
            checked_at: now() + time::Duration::minutes(1),
        };
        let event = security_event(1, EventKind::ReleaseBecameVulnerable, None);
        // Written against a basis that is no longer there: a conflict,
        // nothing stored, no event (two racing rounds raise a change once).
        for stale in [None, Some("index 0 policy a")] {
            assert!(matches!(
                store
                    .put_release_vulnerabilities(&vulnerable, stale, std::slice::from_ref(&event))
                    .await,
                Err(StoreError::Conflict(_))
            ));
        }
        assert_eq!(store.event_head().await.unwrap().0, head_before);
        let entries = store
            .put_release_vulnerabilities(
                &vulnerable,
                Some("index 1 policy a"),
                std::slice::from_ref(&event),
            )
            .await
            .unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].seq, head_before + 1);
        assert_eq!(entries[0].event, event);
        assert_eq!(
            store.release_vulnerabilities().await.unwrap(),
            vec![vulnerable.clone()]
        );

        // An unknown release: not found, no row, no event.
        let unknown = fleetward_store::ReleaseVulnerabilities {
            version: "9.9.9".into(),
            ..vulnerable.clone()
        };
        assert!(matches!(
            store
                .put_release_vulnerabilities(&unknown, None, std::slice::from_ref(&event))
                .await,
            Err(StoreError::NotFound(_))
        ));
        // An invalid event: refused, and the row keeps its old value.
        let mut bad = event.clone();
        bad.message = "x".repeat(1_000_000);
        let changed = fleetward_store::ReleaseVulnerabilities {
            advisory_ids: vec![],
            vulnerable_since: None,
            ..vulnerable.clone()
        };
        assert!(
            store
                .put_release_vulnerabilities(&changed, Some("index 2 policy a"), &[bad])
                .await
                .is_err()
        );
        assert_eq!(
            store.release_vulnerabilities().await.unwrap(),
            vec![vulnerable]
        );
        assert_eq!(store.event_head().await.unwrap().0, head_before + 1);
        assert!(verify_log(&*store).await.is_ok());
    })
    .await;
}

#[tokio::test]
async fn facets_count_the_fleet_by_status_version_and_hardware() {
    each_backend(|store| async move {
        let empty = store.device_facets(10).await.unwrap();
        assert_eq!(empty, fleetward_store::DeviceFacets::default());
        let mut quarantined = device("q", "rev2", Some("1.0.0"), &[]);
        quarantined.status = DeviceStatus::Quarantined;
        let fleet = [
            device("a", "rev1", Some("1.0.0"), &[]),
            device("b", "rev1", Some("1.0.0"), &[]),
            device("c", "rev2", Some("0.9.0"), &[]),
            device("d", "rev1", None, &[]),
            quarantined,
        ];
        store
            .register_devices(&fleet, now(), &audit("fleet"))
            .await
            .unwrap();
        let facets = store.device_facets(10).await.unwrap();
        assert_eq!(
            facets.by_status,
            vec![(DeviceStatus::Active, 4), (DeviceStatus::Quarantined, 1)]
        );
        assert_eq!(facets.by_version[0], (Some("1.0.0".to_owned()), 3));
        assert_eq!(facets.by_version.len(), 3, "{:?}", facets.by_version);
        assert!(facets.by_version.contains(&(None, 1)));
        assert_eq!(
            facets.by_hardware,
            vec![("rev1".to_owned(), 3), ("rev2".to_owned(), 2)]
        );
        let cut = store.device_facets(1).await.unwrap();
        assert_eq!(cut.by_version, vec![(Some("1.0.0".to_owned()), 3)]);
        assert_eq!(cut.by_hardware.len(), 1);
    })
    .await;
}
// --- Several writers, leases ------------------------------------------------

/// Writers on several replicas at once: the chain stays one chain (no seq
/// twice, every link intact), audit records and events agree, and a
/// single-use enrolment token is used exactly once.
#[tokio::test]
async fn concurrent_writers_keep_one_chain_and_use_a_token_once() {
    use fleetward_events::EventKind;
    for backend in backends().await {
        eprintln!("conformance on {}", backend.name);
        let replicas = backend.replicas(3).await;
        backend
            .store
            .insert_enrolment_token(&enrolment_token("once", 1), &audit("token"))
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for (n, store) in replicas.iter().cycle().take(12).enumerate() {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let events: Vec<_> = (0..5)
                    .map(|i| security_event(n as i64 * 10 + i, EventKind::DeviceEnrolled, None))
                    .collect();
                store.append_events(&events).await.unwrap();
                store
                    .register_devices(
                        &[device(&format!("reg-{n:02}"), "rev1", None, &["k=v"])],
                        now(),
                        &audit("device.register"),
                    )
                    .await
                    .unwrap();
                let device = format!("enrol-{n:02}");
                store
                    .enroll(
                        &enrolment("once", &device, &format!("{n:02}")),
                        &audit("device.enrol"),
                    )
                    .await
                    .is_ok()
            }));
        }
        let mut enrolled = 0;
        for task in tasks {
            enrolled += usize::from(task.await.unwrap());
        }
        assert_eq!(enrolled, 1, "{}: a one-use token enrols once", backend.name);
        let store = &backend.store;
        assert_eq!(
            store
                .enrolment_token("once")
                .await
                .unwrap()
                .unwrap()
                .uses_left,
            0
        );
        // 1 token + 12 × (5 events + 1 registration) + 1 enrolment.
        let summary = verify_log(&**store).await.unwrap();
        assert_eq!(summary.entries, 1 + 12 * 6 + 1, "{}", backend.name);
        assert_eq!(
            store.list_audit(None, 1000).await.unwrap().len(),
            1 + 12 + 1,
            "{}",
            backend.name
        );
        assert_eq!(ids(&**store, None).await.len(), 13);
        for replica in replicas {
            replica.close().await;
        }
        store.close().await;
    }
}

#[tokio::test]
async fn leases_are_held_by_one_holder_at_a_time() {
    use std::time::Duration;
    each_backend(|store| async move {
        let ttl = Duration::from_secs(60);
        let later = |secs: i64| now() + time::Duration::seconds(secs);
        assert!(
            store
                .acquire_lease("checkpoint", "a", ttl, now())
                .await
                .unwrap()
        );
        assert!(
            !store
                .acquire_lease("checkpoint", "b", ttl, later(30))
                .await
                .unwrap(),
            "held by a"
        );
        assert!(
            store
                .acquire_lease("retention", "b", ttl, later(30))
                .await
                .unwrap(),
            "leases are independent"
        );
        assert!(
            store
                .acquire_lease("checkpoint", "a", ttl, later(30))
                .await
                .unwrap(),
            "the holder re-acquires (extends)"
        );
        assert!(
            !store
                .acquire_lease("checkpoint", "b", ttl, later(80))
                .await
                .unwrap(),
            "extended to 90 s"
        );
        assert!(
            store
                .renew_lease("checkpoint", "a", ttl, later(85))
                .await
                .unwrap()
        );
        assert!(
            !store
                .renew_lease("checkpoint", "b", ttl, later(85))
                .await
                .unwrap(),
            "only the holder renews"
        );
        assert!(
            store
                .acquire_lease("checkpoint", "b", ttl, later(145))
                .await
                .unwrap(),
            "lapsed: b takes over"
        );
        assert!(
            !store
                .renew_lease("checkpoint", "a", ttl, later(146))
                .await
                .unwrap(),
            "a lost it"
        );
        store.release_lease("checkpoint", "a").await.unwrap();
        assert!(
            !store
                .acquire_lease("checkpoint", "c", ttl, later(150))
                .await
                .unwrap(),
            "releasing what one does not hold changes nothing"
        );
        store.release_lease("checkpoint", "b").await.unwrap();
        assert!(
            store
                .acquire_lease("checkpoint", "c", ttl, later(150))
                .await
                .unwrap(),
            "released: free at once"
        );
        // Bad input: a clear error.
        for (name, holder, ttl) in [
            ("", "a", ttl),
            ("x", "", ttl),
            ("x", "a", Duration::ZERO),
            (&*"n".repeat(201), "a", ttl),
        ] {
            assert!(
                matches!(
                    store.acquire_lease(name, holder, ttl, now()).await,
                    Err(StoreError::Invalid(_))
                ),
                "{name:?} {holder:?} {ttl:?}"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn replicas_racing_for_a_lease_get_it_once() {
    use std::time::Duration;
    for backend in backends().await {
        let replicas = backend.replicas(3).await;
        for round in 0..5i64 {
            // Every round starts after the last lease lapsed.
            let at = now() + time::Duration::minutes(round * 10);
            let mut tasks = Vec::new();
            for (n, store) in replicas.iter().cycle().take(9).enumerate() {
                let store = store.clone();
                tasks.push(tokio::spawn(async move {
                    store
                        .acquire_lease(
                            "timestamp",
                            &format!("replica-{n}"),
                            Duration::from_secs(60),
                            at,
                        )
                        .await
                        .unwrap()
                }));
            }
            let mut winners = 0;
            for task in tasks {
                winners += usize::from(task.await.unwrap());
            }
            assert_eq!(winners, 1, "{} round {round}", backend.name);
        }
        for replica in replicas {
            replica.close().await;
        }
        backend.store.close().await;
    }
}

/// A superuser drops the triggers and edits rows; verification names the
/// entry (the PostgreSQL twin of the SQLite file test).
#[tokio::test]
async fn tampering_with_the_postgres_tables_is_found() {
    use fleetward_events::{EventKind, TamperKind};
    let Some(backend) = postgres().await else {
        return;
    };
    let store = backend.store.clone();
    let events: Vec<_> = (1..=12)
        .map(|n| security_event(n, EventKind::DeviceEnrolled, None))
        .collect();
    store.append_events(&events).await.unwrap();
    store.append_audit(&audit("x")).await.unwrap();
    let database = backend.url.rsplit('/').next().unwrap().to_owned();
    let server = fleetward_testpg::shared().unwrap();
    let sql = |statement: &str| server.psql(&database, statement);
    assert!(
        sql("UPDATE security_events SET message = 'x' WHERE seq = 4").is_err(),
        "the trigger refuses edits"
    );
    assert!(sql("DELETE FROM security_events WHERE seq = 4").is_err());
    assert!(sql("UPDATE audit_log SET actor = 'x'").is_err());
    sql("ALTER TABLE security_events DISABLE TRIGGER USER").unwrap();
    sql("UPDATE security_events SET message = 'nothing happened' WHERE seq = 4").unwrap();
    let tamper = verify_log(&*store).await.unwrap_err();
    assert_eq!((tamper.seq, tamper.kind), (4, TamperKind::Edited));
    sql("DELETE FROM security_events WHERE seq = 6").unwrap();
    sql("UPDATE security_events SET message = 'event 4' WHERE seq = 4").unwrap();
    let tamper = verify_log(&*store).await.unwrap_err();
    assert_eq!(tamper.seq, 7);
    store.close().await;
}
// ---------------------------------------------------------------------------
// Rollouts: rollouts, executions and their transitions.
// ---------------------------------------------------------------------------

mod rollouts {
    use super::*;
    use fleetward_rollout::{ExecutionId, ExecutionState, FailureKind, Settings};
    use fleetward_store::{ExecutionFilter, PhaseFn, RolloutChange, RolloutRecord, RolloutState};

    fn rollout(id: &str, version: &str) -> RolloutRecord {
        RolloutRecord {
            id: id.into(),
            release_version: version.into(),
            hardware: "rev2".into(),
            target: "all".into(),
            settings: Settings {
                phases: Some("50%,100%".into()),
                retries: Some(1),
                ..Settings::default()
            },
            state: RolloutState::Running,
            current_phase: 0,
            phase_started_at: now(),
            soak_started_at: None,
            pause_reason: None,
            rollback_of: None,
            created_at: now(),
            created_by: "test".into(),
            updated_at: now(),
        }
    }

    /// Devices whose id ends in an even digit join phase 0, the rest phase 1.
    fn by_parity() -> PhaseFn {
        Arc::new(|d: &DeviceId| {
            let last = d.as_str().bytes().last().unwrap_or(b'0');
            Some(u32::from(last % 2))
        })
    }

    fn everything() -> Expr {
        Expr::Compare {
            field: Field::Hardware,
            op: CompareOp::Eq,
            value: Value::Text("rev2".into()),
        }
    }

    async fn fleet(store: &dyn Store) {
        store
            .register_devices(
                &[
                    device("d0", "rev2", Some("1.0.0"), &["ring=a"]),
                    device("d1", "rev2", Some("1.0.0"), &["ring=a"]),
                    device("d2", "rev2", Some("1.0.0"), &["ring=b"]),
                    device("d3", "rev2", Some("2.0.0"), &[]),
                    device("d4", "rev3", Some("1.0.0"), &[]),
                ],
                now(),
                &audit("device.register"),
            )
            .await
            .unwrap();
        store
            .insert_artifact(&artifact(1), &audit("a"))
            .await
            .unwrap();
        store
            .insert_release(&release("2.0.0", "rev2", 1), &audit("r"))
            .await
            .unwrap();
        store
            .insert_release(&release("3.0.0", "rev2", 1), &audit("r"))
            .await
            .unwrap();
    }

    async fn states(store: &dyn Store, rollout: &str) -> Vec<(String, String)> {
        let filter = ExecutionFilter {
            rollout_id: Some(rollout.into()),
            ..Default::default()
        };
        store
            .list_executions(&filter, None, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.device_id.to_string(), e.state.name().to_owned()))
            .collect()
    }

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[tokio::test]
    async fn creation_queues_exactly_the_target_set_and_refuses_an_empty_one() {
        each_backend(|store| async move {
            fleet(&*store).await;
            store
                .update_device(
                    &DeviceId::parse("d2").unwrap(),
                    &DeviceChange {
                        status: Some(DeviceStatus::Quarantined),
                        ..Default::default()
                    },
                    &audit("device.quarantine"),
                )
                .await
                .unwrap();
            // Same hardware, active, not on 2.0.0 already: d0 and d1.
            let outcome = store
                .create_rollout(&rollout("r1", "2.0.0"), &everything(), by_parity(), true, &audit("rollout.create"))
                .await
                .unwrap();
            assert_eq!((outcome.queued, outcome.busy), (2, 0));
            assert_eq!(
                states(&*store, "r1").await,
                pairs(&[("d0", "queued"), ("d1", "queued")])
            );
            let stored = store.rollout("r1").await.unwrap().unwrap();
            assert_eq!(stored, rollout("r1", "2.0.0"), "round trip");
            let counts = store.rollout_counts("r1").await.unwrap();
            assert_eq!(counts.len(), 2);
            assert_eq!((counts[0].phase, counts[0].count), (0, 1));
            assert_eq!((counts[1].phase, counts[1].count), (1, 1));

            // A second rollout of 2.0.0 finds d0 and d1 busy and d3 current:
            // empty, refused, nothing stored.
            let audits = audit_actions(&*store).await.len();
            let refused = store
                .create_rollout(&rollout("r2", "2.0.0"), &everything(), by_parity(), true, &audit("rollout.create"))
                .await;
            assert!(matches!(&refused, Err(StoreError::Invalid(m)) if m.contains("empty") && m.contains("another")), "{refused:?}");
            assert_eq!(store.rollout("r2").await.unwrap(), None);
            assert_eq!(audit_actions(&*store).await.len(), audits);
            // Unless it may start empty (continuous).
            let outcome = store
                .create_rollout(&rollout("r2", "2.0.0"), &everything(), by_parity(), false, &audit("rollout.create"))
                .await
                .unwrap();
            assert_eq!((outcome.queued, outcome.busy), (0, 2));
            // 3.0.0: d3 (on 2.0.0) is queued, d0 and d1 are busy.
            let outcome = store
                .create_rollout(&rollout("r3", "3.0.0"), &everything(), by_parity(), true, &audit("rollout.create"))
                .await
                .unwrap();
            assert_eq!((outcome.queued, outcome.busy), (1, 2));
            // Ids are unique; unknown releases are not found.
            assert!(matches!(
                store.create_rollout(&rollout("r2", "3.0.0"), &everything(), by_parity(), false, &audit("x")).await,
                Err(StoreError::Conflict(_))
            ));
            assert!(matches!(
                store.create_rollout(&rollout("r9", "9.9.9"), &everything(), by_parity(), false, &audit("x")).await,
                Err(StoreError::NotFound(_))
            ));
            let listed: Vec<String> = store
                .list_rollouts(&[RolloutState::Running])
                .await
                .unwrap()
                .into_iter()
                .map(|r| r.id)
                .collect();
            assert_eq!(listed, ["r1", "r2", "r3"], "oldest first");
            assert!(store.list_rollouts(&[RolloutState::Paused]).await.unwrap().is_empty());
        })
        .await;
    }

    #[tokio::test]
    async fn release_serve_report_retry_and_history() {
        each_backend(|store| async move {
            fleet(&*store).await;
            store
                .create_rollout(
                    &rollout("r1", "2.0.0"),
                    &everything(),
                    by_parity(),
                    true,
                    &audit("rollout.create"),
                )
                .await
                .unwrap();
            let d0 = DeviceId::parse("d0").unwrap();
            let d1 = DeviceId::parse("d1").unwrap();
            // Nothing is served before the rollout's limits release it.
            assert_eq!(store.serve_execution(&d0, now()).await.unwrap(), None);
            // Phase 0 only, capped at 0 in all: nothing.
            assert_eq!(
                store
                    .release_executions("r1", 0, Some(0), 100, now())
                    .await
                    .unwrap(),
                0
            );
            assert_eq!(
                store
                    .release_executions("r1", 0, Some(1), 100, now())
                    .await
                    .unwrap(),
                1,
                "a cap of 1 in all"
            );
            assert_eq!(
                store
                    .release_executions("r1", 0, Some(5), 100, now())
                    .await
                    .unwrap(),
                1,
                "phase 0 is d0 and d2"
            );
            assert_eq!(
                store
                    .release_executions("r1", 0, Some(5), 100, now())
                    .await
                    .unwrap(),
                0,
                "phase 1 waits"
            );
            assert_eq!(store.serve_execution(&d1, now()).await.unwrap(), None);
            let served = store.serve_execution(&d0, now()).await.unwrap().unwrap();
            assert_eq!(served.state, ExecutionState::Offered);
            assert_eq!(served.release_version, "2.0.0");
            assert_eq!(served.offered_at, Some(now()));
            let again = store.serve_execution(&d0, now()).await.unwrap().unwrap();
            assert_eq!(again.id, served.id, "served again, unchanged");
            assert_eq!(
                store.open_execution(&d0).await.unwrap().unwrap().id,
                served.id
            );

            // A transition applies only from the state it was decided from.
            let id = served.id;
            assert!(
                !store
                    .transition_execution(
                        id,
                        &ExecutionState::Queued,
                        &ExecutionState::Downloading,
                        "device:d0",
                        None,
                        None,
                        now()
                    )
                    .await
                    .unwrap()
            );
            for (from, to) in [
                (ExecutionState::Offered, ExecutionState::Downloading),
                (ExecutionState::Downloading, ExecutionState::Installing),
                (ExecutionState::Installing, ExecutionState::Rebooting),
            ] {
                assert!(
                    store
                        .transition_execution(id, &from, &to, "device:d0", None, None, now())
                        .await
                        .unwrap()
                );
            }
            let failed = ExecutionState::Failed {
                kind: FailureKind::Install,
                reason: "disk full".into(),
            };
            assert!(
                store
                    .transition_execution(
                        id,
                        &ExecutionState::Rebooting,
                        &failed,
                        "device:d0",
                        None,
                        None,
                        now()
                    )
                    .await
                    .unwrap()
            );
            assert_eq!(store.open_execution(&d0).await.unwrap(), None);
            let retryable = store.retryable_executions("r1", 1, 100).await.unwrap();
            assert_eq!(retryable.len(), 1);
            assert_eq!(retryable[0].state, failed, "reason and kind kept");
            assert!(
                store
                    .retryable_executions("r1", 0, 100)
                    .await
                    .unwrap()
                    .is_empty()
            );
            let next = store
                .retry_execution(id, &failed, now())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                next,
                ExecutionId {
                    row: id.row,
                    attempt: 2
                }
            );
            assert_eq!(
                store.retry_execution(id, &failed, now()).await.unwrap(),
                None,
                "once"
            );
            // The retry is released already: served at once, as a new attempt.
            let served = store.serve_execution(&d0, now()).await.unwrap().unwrap();
            assert_eq!(
                (served.id, served.state.clone()),
                (next, ExecutionState::Offered)
            );
            for (from, to) in [(ExecutionState::Offered, ExecutionState::Rebooting)] {
                assert!(
                    store
                        .transition_execution(next, &from, &to, "device:d0", None, None, now())
                        .await
                        .unwrap()
                );
            }
            assert!(
                store
                    .transition_execution(
                        next,
                        &ExecutionState::Rebooting,
                        &ExecutionState::Succeeded,
                        "device:d0",
                        None,
                        Some("2.0.0"),
                        now()
                    )
                    .await
                    .unwrap()
            );
            let device = store.device(&d0).await.unwrap().unwrap();
            assert_eq!(
                device.version.as_deref(),
                Some("2.0.0"),
                "success records the version"
            );

            let history: Vec<(u32, Option<String>, String, Option<String>)> = store
                .execution_history(id.row)
                .await
                .unwrap()
                .into_iter()
                .map(|t| (t.attempt, t.from, t.to.name().to_owned(), t.note))
                .collect();
            let s = |x: &str| Some(x.to_owned());
            assert_eq!(
                history,
                vec![
                    (1, None, "queued".into(), None),
                    (1, s("queued"), "offered".into(), None),
                    (1, s("offered"), "downloading".into(), None),
                    (1, s("downloading"), "installing".into(), None),
                    (1, s("installing"), "rebooting".into(), None),
                    (1, s("rebooting"), "failed".into(), None),
                    (2, s("failed"), "queued".into(), s("retry")),
                    (2, s("queued"), "offered".into(), None),
                    (2, s("offered"), "rebooting".into(), None),
                    (2, s("rebooting"), "succeeded".into(), None),
                ]
            );
            assert_eq!(store.execution(id.row).await.unwrap().unwrap().id, next);
            assert_eq!(store.execution(999).await.unwrap(), None);
            assert!(store.execution_history(999).await.unwrap().is_empty());

            // Filters.
            let only = |filter: ExecutionFilter| {
                let store = store.clone();
                async move {
                    store
                        .list_executions(&filter, None, 100)
                        .await
                        .unwrap()
                        .into_iter()
                        .map(|e| e.device_id.to_string())
                        .collect::<Vec<_>>()
                }
            };
            assert_eq!(
                only(ExecutionFilter {
                    state: Some("queued".into()),
                    ..Default::default()
                })
                .await,
                ["d1", "d2"]
            );
            assert_eq!(
                only(ExecutionFilter {
                    phase: Some(0),
                    ..Default::default()
                })
                .await,
                ["d0", "d2"]
            );
            assert_eq!(
                only(ExecutionFilter {
                    device: Some(d1.clone()),
                    ..Default::default()
                })
                .await,
                ["d1"]
            );
            assert!(
                only(ExecutionFilter {
                    rollout_id: Some("nope".into()),
                    ..Default::default()
                })
                .await
                .is_empty()
            );
            let first = store
                .list_executions(&ExecutionFilter::default(), None, 1)
                .await
                .unwrap();
            let rest = store
                .list_executions(&ExecutionFilter::default(), Some(first[0].id.row), 100)
                .await
                .unwrap();
            assert_eq!(rest.len(), 2, "paging");
        })
        .await;
    }

    #[tokio::test]
    async fn timeouts_pauses_and_conditional_rollout_changes() {
        each_backend(|store| async move {
            fleet(&*store).await;
            store
                .create_rollout(
                    &rollout("r1", "2.0.0"),
                    &everything(),
                    by_parity(),
                    true,
                    &audit("rollout.create"),
                )
                .await
                .unwrap();
            assert_eq!(
                store
                    .release_executions("r1", 1, None, 100, now())
                    .await
                    .unwrap(),
                3
            );
            let d0 = DeviceId::parse("d0").unwrap();
            store.serve_execution(&d0, now()).await.unwrap().unwrap();
            let later = now() + time::Duration::hours(3);
            assert!(
                store
                    .overdue_executions("r1", now() - time::Duration::seconds(1), 100)
                    .await
                    .unwrap()
                    .is_empty()
            );
            let overdue = store.overdue_executions("r1", now(), 100).await.unwrap();
            assert_eq!(overdue.len(), 1, "only offered ones time out");
            assert!(
                store
                    .transition_execution(
                        overdue[0].id,
                        &ExecutionState::Offered,
                        &ExecutionState::TimedOut,
                        "server",
                        None,
                        None,
                        later
                    )
                    .await
                    .unwrap()
            );

            let pause = RolloutChange {
                id: "r1".into(),
                expect_state: RolloutState::Running,
                expect_phase: 0,
                state: RolloutState::Paused,
                current_phase: 0,
                soak_started_at: None,
                pause_reason: Some("1 of 2 devices failed".into()),
                at: later,
            };
            assert!(
                store
                    .update_rollout(&pause, Some(&audit("rollout.auto_pause")))
                    .await
                    .unwrap()
            );
            assert!(
                !store
                    .update_rollout(&pause, Some(&audit("rollout.auto_pause")))
                    .await
                    .unwrap(),
                "only once"
            );
            let paused = store.rollout("r1").await.unwrap().unwrap();
            assert_eq!(paused.state, RolloutState::Paused);
            assert_eq!(
                paused.pause_reason.as_deref(),
                Some("1 of 2 devices failed")
            );
            // Paused: nothing released, a released queued one is not served.
            assert_eq!(
                store
                    .serve_execution(&DeviceId::parse("d1").unwrap(), later)
                    .await
                    .unwrap(),
                None
            );
            assert_eq!(
                store
                    .release_executions("r1", 1, None, 100, later)
                    .await
                    .unwrap(),
                0
            );
            let events = store
                .list_events(
                    &fleetward_store::EventFilter {
                        kinds: vec![fleetward_events::EventKind::RolloutPaused],
                        ..Default::default()
                    },
                    None,
                    10,
                )
                .await
                .unwrap();
            assert_eq!(events.len(), 1, "a pause by itself is a security event");

            let advance = RolloutChange {
                id: "r1".into(),
                expect_state: RolloutState::Paused,
                expect_phase: 0,
                state: RolloutState::Running,
                current_phase: 1,
                soak_started_at: None,
                pause_reason: None,
                at: later,
            };
            assert!(store.update_rollout(&advance, None).await.unwrap());
            let advanced = store.rollout("r1").await.unwrap().unwrap();
            assert_eq!(
                (advanced.current_phase, advanced.phase_started_at),
                (1, later)
            );
        })
        .await;
    }

    #[tokio::test]
    async fn abort_cancels_what_has_not_started_installing_and_stores_a_rollback() {
        each_backend(|store| async move {
            fleet(&*store).await;
            store
                .create_rollout(
                    &rollout("r1", "2.0.0"),
                    &everything(),
                    by_parity(),
                    true,
                    &audit("rollout.create"),
                )
                .await
                .unwrap();
            store
                .release_executions("r1", 1, None, 100, now())
                .await
                .unwrap();
            let d0 = DeviceId::parse("d0").unwrap();
            let served = store.serve_execution(&d0, now()).await.unwrap().unwrap();
            store
                .transition_execution(
                    served.id,
                    &ExecutionState::Offered,
                    &ExecutionState::Installing,
                    "device:d0",
                    None,
                    None,
                    now(),
                )
                .await
                .unwrap();
            let mut back = rollout("r1-rollback", "3.0.0");
            back.rollback_of = Some("r1".into());
            let cancelled = store
                .abort_rollout("r1", now(), Some(&back), &audit("rollout.abort"))
                .await
                .unwrap();
            assert_eq!(cancelled, 2);
            assert_eq!(
                states(&*store, "r1").await,
                pairs(&[
                    ("d0", "installing"),
                    ("d1", "cancelled"),
                    ("d2", "cancelled")
                ])
            );
            assert_eq!(
                store.rollout("r1").await.unwrap().unwrap().state,
                RolloutState::Aborted
            );
            assert_eq!(
                store
                    .rollout("r1-rollback")
                    .await
                    .unwrap()
                    .unwrap()
                    .rollback_of
                    .as_deref(),
                Some("r1")
            );
            assert!(matches!(
                store
                    .abort_rollout("r1", now(), None, &audit("rollout.abort"))
                    .await,
                Err(StoreError::Conflict(_))
            ));
            assert!(matches!(
                store
                    .abort_rollout("nope", now(), None, &audit("rollout.abort"))
                    .await,
                Err(StoreError::NotFound(_))
            ));
            let history = store
                .execution_history(store.open_execution(&d0).await.unwrap().unwrap().id.row)
                .await
                .unwrap();
            assert_eq!(history.len(), 3, "the install goes on");
        })
        .await;
    }

    #[tokio::test]
    async fn continuous_queueing_and_inactive_devices() {
        each_backend(|store| async move {
            fleet(&*store).await;
            let ring_a = Expr::Compare {
                field: Field::Tag(TagKey::parse("ring").unwrap()),
                op: CompareOp::Eq,
                value: Value::Text("a".into()),
            };
            let outcome = store
                .create_rollout(
                    &rollout("r1", "2.0.0"),
                    &ring_a,
                    by_parity(),
                    true,
                    &audit("rollout.create"),
                )
                .await
                .unwrap();
            assert_eq!(outcome.queued, 2);
            assert_eq!(
                store
                    .queue_devices("r1", &ring_a, by_parity(), now())
                    .await
                    .unwrap()
                    .queued,
                0,
                "nothing new"
            );
            // d2 starts to match; d5 enrols later.
            store
                .update_device(
                    &DeviceId::parse("d2").unwrap(),
                    &DeviceChange {
                        set_tags: vec![Tag::parse("ring=a").unwrap()],
                        ..Default::default()
                    },
                    &audit("device.update"),
                )
                .await
                .unwrap();
            store
                .register_devices(
                    &[device("d5", "rev2", None, &["ring=a"])],
                    now(),
                    &audit("device.register"),
                )
                .await
                .unwrap();
            assert_eq!(
                store
                    .queue_devices("r1", &ring_a, by_parity(), now())
                    .await
                    .unwrap()
                    .queued,
                2
            );
            // A quarantined device's queued execution is cancelled.
            store
                .update_device(
                    &DeviceId::parse("d1").unwrap(),
                    &DeviceChange {
                        status: Some(DeviceStatus::Quarantined),
                        ..Default::default()
                    },
                    &audit("device.quarantine"),
                )
                .await
                .unwrap();
            assert_eq!(
                store
                    .release_executions("r1", 1, None, 100, now())
                    .await
                    .unwrap(),
                3,
                "never released to d1"
            );
            assert_eq!(store.cancel_inactive("r1", now()).await.unwrap(), 1);
            assert_eq!(
                states(&*store, "r1").await,
                pairs(&[
                    ("d0", "queued"),
                    ("d1", "cancelled"),
                    ("d2", "queued"),
                    ("d5", "queued")
                ])
            );
            let history = store
                .execution_history(
                    store
                        .list_executions(
                            &ExecutionFilter {
                                device: Some(DeviceId::parse("d1").unwrap()),
                                ..Default::default()
                            },
                            None,
                            1,
                        )
                        .await
                        .unwrap()[0]
                        .id
                        .row,
                )
                .await
                .unwrap();
            assert_eq!(
                history.last().unwrap().note.as_deref(),
                Some("device is quarantined")
            );
        })
        .await;
    }

    /// A retry that would give a device a second unfinished execution (it
    /// joined another rollout meanwhile) is `None` and changes nothing; the
    /// store goes on working, and the retry succeeds once the device is free.
    #[tokio::test]
    async fn a_retry_never_gives_a_device_two_unfinished_executions() {
        each_backend(|store| async move {
            fleet(&*store).await;
            store
                .create_rollout(
                    &rollout("r1", "2.0.0"),
                    &everything(),
                    by_parity(),
                    true,
                    &audit("rollout.create"),
                )
                .await
                .unwrap();
            let d0 = DeviceId::parse("d0").unwrap();
            let id = store.open_execution(&d0).await.unwrap().unwrap().id;
            let failed = ExecutionState::Failed {
                kind: FailureKind::Download,
                reason: "mirror down".into(),
            };
            assert!(
                store
                    .transition_execution(
                        id,
                        &ExecutionState::Queued,
                        &failed,
                        "device:d0",
                        None,
                        None,
                        now()
                    )
                    .await
                    .unwrap()
            );
            // d0 is free now, so the 3.0.0 rollout takes it.
            let outcome = store
                .create_rollout(
                    &rollout("r2", "3.0.0"),
                    &everything(),
                    by_parity(),
                    false,
                    &audit("rollout.create"),
                )
                .await
                .unwrap();
            assert_eq!(
                (outcome.queued, outcome.busy),
                (2, 2),
                "d0 and d3; d1 and d2 busy"
            );
            assert_eq!(
                store.retry_execution(id, &failed, now()).await.unwrap(),
                None
            );
            let kept = store.execution(id.row).await.unwrap().unwrap();
            assert_eq!((kept.id, kept.state), (id, failed.clone()));
            assert_eq!(store.execution_history(id.row).await.unwrap().len(), 2);
            // Once r2 lets d0 go, the retry goes through.
            store
                .abort_rollout("r2", now(), None, &audit("rollout.abort"))
                .await
                .unwrap();
            let next = store.retry_execution(id, &failed, now()).await.unwrap();
            assert_eq!(next.map(|n| n.attempt), Some(2));
            assert_eq!(
                store
                    .open_execution(&d0)
                    .await
                    .unwrap()
                    .map(|e| e.rollout_id),
                Some("r1".to_owned())
            );
        })
        .await;
    }

    /// Replicas racing on one rollout: releases never pass the cap, a
    /// device is offered once, one of two racing transitions wins, and an
    /// abort cancels every execution whatever transitions race it.
    #[tokio::test]
    async fn replicas_racing_on_a_rollout_never_break_its_rules() {
        for backend in backends().await {
            eprintln!("conformance on {}", backend.name);
            let store = backend.store.clone();
            let names: Vec<String> = (0..20).map(|n| format!("c{n:02}")).collect();
            let devices: Vec<_> = names
                .iter()
                .map(|id| device(id, "rev2", Some("1.0.0"), &[]))
                .collect();
            store
                .register_devices(&devices, now(), &audit("device.register"))
                .await
                .unwrap();
            store
                .insert_artifact(&artifact(1), &audit("a"))
                .await
                .unwrap();
            store
                .insert_release(&release("2.0.0", "rev2", 1), &audit("r"))
                .await
                .unwrap();
            store
                .create_rollout(
                    &rollout("r1", "2.0.0"),
                    &everything(),
                    by_parity(),
                    true,
                    &audit("rollout.create"),
                )
                .await
                .unwrap();
            let replicas = backend.replicas(3).await;

            // Twelve releases of up to 3 each against a cap of 7.
            let mut tasks = Vec::new();
            for replica in replicas.iter().cycle().take(12) {
                let replica = replica.clone();
                tasks.push(tokio::spawn(async move {
                    replica
                        .release_executions("r1", 1, Some(7), 3, now())
                        .await
                        .unwrap()
                }));
            }
            let mut released = 0;
            for task in tasks {
                released += task.await.unwrap();
            }
            assert_eq!(released, 7, "{}: the cap holds", backend.name);
            let counted: u64 = store
                .rollout_counts("r1")
                .await
                .unwrap()
                .iter()
                .map(|c| c.released)
                .sum();
            assert_eq!(counted, 7, "{}", backend.name);

            // Every replica serves every device at once: one offer each.
            let mut tasks = Vec::new();
            for name in &names {
                for replica in &replicas {
                    let replica = replica.clone();
                    let device = DeviceId::parse(name).unwrap();
                    tasks.push(tokio::spawn(async move {
                        replica.serve_execution(&device, now()).await.unwrap()
                    }));
                }
            }
            let mut offered = Vec::new();
            for task in tasks {
                if let Some(execution) = task.await.unwrap() {
                    assert_eq!(execution.state, ExecutionState::Offered);
                    offered.push(execution.id);
                }
            }
            offered.sort_by_key(|id| id.row);
            offered.dedup();
            assert_eq!(offered.len(), 7, "{}", backend.name);
            for id in &offered {
                let history = store.execution_history(id.row).await.unwrap();
                assert_eq!(history.len(), 2, "{}: queued, offered once", backend.name);
            }

            // Two replicas report the same step for each: one wins.
            let mut tasks = Vec::new();
            for id in &offered[..3] {
                for replica in replicas.iter().take(2) {
                    let (replica, id) = (replica.clone(), *id);
                    tasks.push(tokio::spawn(async move {
                        replica
                            .transition_execution(
                                id,
                                &ExecutionState::Offered,
                                &ExecutionState::Downloading,
                                "device",
                                None,
                                None,
                                now(),
                            )
                            .await
                            .unwrap()
                    }));
                }
            }
            let mut won = 0;
            for task in tasks {
                won += usize::from(task.await.unwrap());
            }
            assert_eq!(won, 3, "{}: one of each pair", backend.name);

            // An abort racing the rest of the devices' reports still
            // cancels every execution (none had started installing).
            let mut tasks = Vec::new();
            for (n, id) in offered.iter().enumerate() {
                let replica = replicas[n % replicas.len()].clone();
                let (id, from) = if n < 3 {
                    (*id, ExecutionState::Downloading)
                } else {
                    (*id, ExecutionState::Offered)
                };
                let to = if n < 3 {
                    ExecutionState::Downloaded
                } else {
                    ExecutionState::Downloading
                };
                tasks.push(tokio::spawn(async move {
                    replica
                        .transition_execution(id, &from, &to, "device", None, None, now())
                        .await
                        .unwrap();
                }));
            }
            let aborter = replicas[1].clone();
            let abort = tokio::spawn(async move {
                aborter
                    .abort_rollout("r1", now(), None, &audit("rollout.abort"))
                    .await
                    .unwrap()
            });
            for task in tasks {
                task.await.unwrap();
            }
            assert_eq!(abort.await.unwrap(), 20, "{}", backend.name);
            let filter = ExecutionFilter {
                rollout_id: Some("r1".into()),
                ..Default::default()
            };
            for execution in store.list_executions(&filter, None, 100).await.unwrap() {
                assert_eq!(
                    execution.state,
                    ExecutionState::Cancelled,
                    "{}: {}",
                    backend.name,
                    execution.device_id
                );
            }
            for replica in replicas {
                if backend.name == "postgres" {
                    replica.close().await;
                }
            }
            store.close().await;
        }
    }
}

fn telemetry(n: i64) -> fleetward_store::TelemetryRecord {
    fleetward_store::TelemetryRecord {
        server_time: now() + time::Duration::seconds(n),
        device_time: now() + time::Duration::seconds(n - 1),
        conditions: format!("{{\"agent_version\":\"0.1.0\",\"uptime_secs\":{n}}}"),
    }
}

#[tokio::test]
async fn device_reports_are_stored_whole_bounded_and_newest_first() {
    use fleetward_events::EventKind;
    use fleetward_store::{DeviceErrorRecord, DeviceReports};
    each_backend(|store| async move {
        let dev = DeviceId::parse("r-1").unwrap();
        let batch = DeviceReports {
            telemetry: vec![telemetry(1), telemetry(2)],
            errors: vec![DeviceErrorRecord {
                server_time: now(),
                device_time: now(),
                context: "download".into(),
                message: "connection reset".into(),
            }],
            events: vec![security_event(1, EventKind::RollbackAttempt, Some("r-1"))],
        };
        // An unknown device: nothing stored.
        assert!(matches!(
            store.insert_device_reports(&dev, now(), &batch).await,
            Err(StoreError::NotFound(_))
        ));
        assert_eq!(store.event_head().await.unwrap().0, 0);
        store
            .register_devices(&[device("r-1", "rev2", None, &[])], now(), &audit("d"))
            .await
            .unwrap();
        let head = store.event_head().await.unwrap().0;

        // A batch with an event beyond its bounds: nothing stored.
        let mut bad = batch.clone();
        bad.events[0].message = "x\n".into();
        assert!(matches!(
            store.insert_device_reports(&dev, now(), &bad).await,
            Err(StoreError::Invalid(_))
        ));
        assert!(store.device_telemetry(&dev, 10).await.unwrap().is_empty());
        assert!(store.device_errors(&dev, 10).await.unwrap().is_empty());
        assert_eq!(store.event_head().await.unwrap().0, head);

        let seen = now() + time::Duration::minutes(5);
        store
            .insert_device_reports(&dev, seen, &batch)
            .await
            .unwrap();
        let stored = store.device_telemetry(&dev, 10).await.unwrap();
        assert_eq!(stored, vec![telemetry(2), telemetry(1)], "newest first");
        assert_eq!(
            store.device_telemetry(&dev, 1).await.unwrap(),
            vec![telemetry(2)]
        );
        assert_eq!(store.device_errors(&dev, 10).await.unwrap(), batch.errors);
        assert_eq!(store.event_head().await.unwrap().0, head + 1);
        let events = store
            .list_events(
                &fleetward_store::EventFilter {
                    kinds: vec![EventKind::RollbackAttempt],
                    ..Default::default()
                },
                None,
                10,
            )
            .await
            .unwrap();
        assert_eq!(events.len(), 1);
        let device = store.device(&dev).await.unwrap().unwrap();
        assert_eq!(device.last_seen, Some(seen));
        assert_eq!(device.first_seen, Some(seen));
        assert!(verify_log(&*store).await.is_ok());

        // Each device keeps its newest rows only.
        let max = i64::from(fleetward_store::reports::MAX_REPORT_ROWS_PER_DEVICE);
        let flood = DeviceReports {
            telemetry: (10..10 + max).map(telemetry).collect(),
            ..Default::default()
        };
        store
            .insert_device_reports(&dev, seen, &flood)
            .await
            .unwrap();
        let kept = store.device_telemetry(&dev, 1000).await.unwrap();
        assert_eq!(kept.len() as i64, max);
        assert_eq!(kept[0], telemetry(9 + max));
        assert_eq!(kept.last().unwrap(), &telemetry(10));
        assert_eq!(store.device_errors(&dev, 10).await.unwrap().len(), 1);
    })
    .await;
}

/// The server and an operator command (or a test) can hold the same SQLite
/// file at once. A transaction that reads before it writes (a checkpoint
/// checks the hash it signs) must wait for the other writer, not fail with
/// "database is locked".
#[tokio::test]
async fn two_processes_on_one_sqlite_file_wait_for_each_other() {
    use fleetward_events::EventKind;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("shared.db").display());
    let first: Arc<dyn Store> = Arc::new(SqliteStore::open(&url).await.unwrap());
    let second: Arc<dyn Store> = Arc::new(SqliteStore::open(&url).await.unwrap());
    let mut tasks = Vec::new();
    for (n, store) in [first.clone(), second.clone()]
        .into_iter()
        .cycle()
        .take(8)
        .enumerate()
    {
        tasks.push(tokio::spawn(async move {
            let signer = checkpoint_signer();
            for round in 0..10i64 {
                let events: Vec<_> = (0..3)
                    .map(|i| {
                        security_event(
                            n as i64 * 100 + round * 3 + i,
                            EventKind::HandshakeRefused,
                            None,
                        )
                    })
                    .collect();
                let appended = store.append_events(&events).await?;
                let last = appended.last().ok_or_else(|| {
                    fleetward_store::StoreError::Invalid("nothing appended".into())
                })?;
                store
                    .add_checkpoint(&signer.sign(last.seq, last.hash, 1_790_000_000_000))
                    .await?;
            }
            Ok::<_, fleetward_store::StoreError>(())
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let summary = verify_log(&*first).await.unwrap();
    assert_eq!(summary.entries, 8 * 10 * 3);
    first.close().await;
    second.close().await;
}

/// Point reads keep a read transaction open between reads (see
/// `point_read`). A write through the same store is seen by the very next
/// read; a write by another process on the file within the stated age.
#[tokio::test]
async fn sqlite_reads_see_this_store_s_writes_at_once_and_another_s_in_time() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("shared.db").display());
    let server = SqliteStore::open(&url).await.unwrap();
    let other_process = SqliteStore::open(&url).await.unwrap();
    let token = |id: &str| TokenRecord {
        id: id.into(),
        name: id.into(),
        role: Role::Operator,
        secret_hash: [7; 32],
        created_at: now(),
        expires_at: None,
        revoked_at: None,
        created_by: "init".into(),
    };
    for id in ["0000000000000001", "0000000000000002"] {
        server
            .insert_token(&token(id), &audit("token.create"))
            .await
            .unwrap();
        // Taken into this store's snapshot.
        assert_eq!(server.token(id).await.unwrap().unwrap().revoked_at, None);
    }

    server
        .revoke_token("0000000000000001", now(), &audit("token.revoke"))
        .await
        .unwrap();
    let seen = server.token("0000000000000001").await.unwrap().unwrap();
    assert_eq!(seen.revoked_at, Some(now()), "own write seen at once");

    other_process
        .revoke_token("0000000000000002", now(), &audit("token.revoke"))
        .await
        .unwrap();
    tokio::time::sleep(SqliteStore::SNAPSHOT_MAX_AGE + std::time::Duration::from_millis(50)).await;
    let seen = server.token("0000000000000002").await.unwrap().unwrap();
    assert_eq!(
        seen.revoked_at,
        Some(now()),
        "another process's write seen in time"
    );
    server.close().await;
    other_process.close().await;
}

/// Snapshots held between reads must not stop the WAL from being reused:
/// with a read between every two writes, the WAL file stays near the
/// auto-checkpoint size (1,000 pages) instead of growing with every write.
#[tokio::test]
async fn sqlite_snapshots_between_writes_let_the_wal_restart() {
    use fleetward_events::EventKind;
    use fleetward_store::EventLog as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wal.db");
    let store = SqliteStore::open(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    store
        .register_devices(
            &[device("d1", "rev1", None, &["region=eu"])],
            now(),
            &audit("device.register"),
        )
        .await
        .unwrap();
    let d1 = DeviceId::parse("d1").unwrap();
    let padding = "x".repeat(1000);
    for n in 0..3000 {
        let mut event = security_event(n, EventKind::HandshakeRefused, None);
        event.message = padding.clone();
        store.append_events(&[event]).await.unwrap();
        assert!(store.device(&d1).await.unwrap().is_some());
    }
    let wal = std::fs::metadata(dir.path().join("wal.db-wal"))
        .unwrap()
        .len();
    // 3,000 writes of a page or more each: about 12 MB if never restarted.
    assert!(wal < 6 * 1024 * 1024, "WAL grew to {wal} bytes");
    store.close().await;
}
