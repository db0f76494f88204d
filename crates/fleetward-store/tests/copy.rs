//! `copy_sqlite_to_postgres`: a populated SQLite store arrives in
//! PostgreSQL row for row, its event chain still verifying; a target that
//! is not empty, or a source with tables this version does not know, is
//! refused with nothing written. Skipped loudly without PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use fleetward_core::{DeviceId, DeviceStatus, Tag};
use fleetward_events::{CheckpointSigner, EventKind};
use fleetward_store::{
    AuditEntry, CertRecord, Enrolment, EnrolmentTokenRecord, EventFilter, EventLog as _,
    IdentityStore as _, NewDevice, PostgresStore, SqliteStore, Store, StoreError,
};
use time::OffsetDateTime;

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_790_000_000).unwrap()
}

fn audit(action: &str) -> AuditEntry {
    AuditEntry {
        at: now(),
        actor: "test".into(),
        action: action.into(),
        target: "device:d-1".into(),
        source: "127.0.0.1:1".into(),
        detail: serde_json::json!({"n": 1}),
    }
}

async fn populate(store: &SqliteStore) -> CheckpointSigner {
    let devices: Vec<NewDevice> = (0..12)
        .map(|n| NewDevice {
            id: DeviceId::parse(&format!("d-{n}")).unwrap(),
            hardware: "rev1".into(),
            version: Some(format!("1.{n}.0")),
            status: DeviceStatus::Active,
            tags: vec![
                Tag::parse("region=eu").unwrap(),
                Tag::parse("beta").unwrap(),
            ],
        })
        .collect();
    store
        .register_devices(&devices, now(), &audit("device.register"))
        .await
        .unwrap();
    let token = EnrolmentTokenRecord {
        id: "tok".into(),
        name: "line".into(),
        secret_hash: [1; 32],
        tags: vec![Tag::parse("line=1").unwrap()],
        uses_total: 3,
        uses_left: 3,
        require_approval: true,
        allow_listed_only: false,
        created_at: now(),
        expires_at: now() + time::Duration::days(1),
        revoked_at: None,
        created_by: "test".into(),
    };
    store
        .insert_enrolment_token(&token, &audit("enroll-token.create"))
        .await
        .unwrap();
    let cert = CertRecord {
        serial: "0a".into(),
        device_id: DeviceId::parse("new-1").unwrap(),
        not_before: now(),
        not_after: now() + time::Duration::days(90),
        issued_at: now(),
        key_kind: "ec-p256".into(),
        revoked_at: None,
        reason: None,
        comment: None,
    };
    store
        .enroll(
            &Enrolment {
                token_id: "tok".into(),
                device_id: cert.device_id.clone(),
                hardware: "rev2".into(),
                status: DeviceStatus::Pending,
                tags: token.tags.clone(),
                cert,
            },
            &audit("device.enrol"),
        )
        .await
        .unwrap();
    let events: Vec<_> = (0..30)
        .map(|n| fleetward_events::Event {
            kind: EventKind::HandshakeRefused,
            severity: EventKind::HandshakeRefused.default_severity(),
            device: None,
            source: Some("192.0.2.1".into()),
            server_time_ms: 1_790_000_000_000 + n,
            device_time_ms: None,
            message: format!("refused {n}"),
            detail: "{}".into(),
        })
        .collect();
    store.append_events(&events).await.unwrap();
    let signer = CheckpointSigner::from_bytes(&[5; 32]);
    let at_20 = store.event(20).await.unwrap().unwrap();
    store
        .add_checkpoint(&signer.sign(20, at_20.hash, 1))
        .await
        .unwrap();
    store.set_monitor_cursor("webhook:0", 17).await.unwrap();
    signer
}

async fn everything(store: &dyn Store) -> String {
    let devices = store.list_devices(None, None, 1000).await.unwrap();
    let audit = store.list_audit(None, 1000).await.unwrap();
    let events = store
        .list_events(&EventFilter::default(), None, 1000)
        .await
        .unwrap();
    let tokens = store.list_enrolment_tokens().await.unwrap();
    let certs = store
        .certificates(&DeviceId::parse("new-1").unwrap())
        .await
        .unwrap();
    format!(
        "{devices:?}\n{audit:?}\n{events:?}\n{tokens:?}\n{certs:?}\n{:?}\n{:?}\n{:?}",
        store.checkpoints().await.unwrap(),
        store.event_head().await.unwrap(),
        store.monitor_cursor("webhook:0").await.unwrap(),
    )
}

#[tokio::test]
async fn an_installation_moves_whole_and_its_chain_still_verifies() {
    let Some(url) = fleetward_testpg::fresh_database() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let source = SqliteStore::open(&format!("sqlite://{}", dir.path().join("f.db").display()))
        .await
        .unwrap();
    let signer = populate(&source).await;
    let target = PostgresStore::open(&url).await.unwrap();

    let report = fleetward_store::copy_sqlite_to_postgres(&source, &target)
        .await
        .unwrap();
    assert_eq!(report.event_head_seq, 33);
    let rows = |table: &str| {
        report
            .tables
            .iter()
            .find(|(name, _)| name == table)
            .unwrap()
            .1
    };
    assert_eq!(
        (rows("devices"), rows("device_tags"), rows("certificates")),
        (13, 25, 1)
    );
    assert_eq!(everything(&source).await, everything(&target).await);

    let entries = target
        .list_events(&EventFilter::default(), None, 1000)
        .await
        .unwrap();
    let summary = fleetward_events::verify(
        entries,
        &target.checkpoints().await.unwrap(),
        &signer.verifying_key(),
        None,
    )
    .unwrap();
    assert_eq!((summary.entries, summary.checkpoints), (33, 1));

    // The copy goes on where the source stopped: new ids and chain links.
    target
        .register_devices(
            &[NewDevice {
                id: DeviceId::parse("after").unwrap(),
                hardware: "rev1".into(),
                version: None,
                status: DeviceStatus::Active,
                tags: vec![],
            }],
            now(),
            &audit("device.register"),
        )
        .await
        .unwrap();
    assert_eq!(target.event_head().await.unwrap().0, 34);
    assert_eq!(target.list_audit(Some(3), 10).await.unwrap()[0].seq, 4);

    // A second copy into the now non-empty target is refused, changing nothing.
    let before = everything(&target).await;
    assert!(matches!(
        fleetward_store::copy_sqlite_to_postgres(&source, &target).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(everything(&target).await, before);
    target.close().await;

    // A source with a table this version does not know: refused, nothing written.
    sqlx::query("CREATE TABLE rollouts_from_the_future (id INTEGER)")
        .execute(
            &sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.path().join("f.db").display()))
                .await
                .unwrap(),
        )
        .await
        .unwrap();
    let url = fleetward_testpg::fresh_database().unwrap();
    let empty = PostgresStore::open(&url).await.unwrap();
    let refused = fleetward_store::copy_sqlite_to_postgres(&source, &empty).await;
    assert!(
        matches!(&refused, Err(StoreError::Invalid(m)) if m.contains("rollouts_from_the_future")),
        "{refused:?}"
    );
    assert_eq!(empty.event_head().await.unwrap().0, 0);
    empty.close().await;
    source.close().await;
}
