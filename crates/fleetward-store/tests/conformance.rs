//! The store conformance suite: the behaviour every backend must have.
//!
//! Each check takes a fresh `Arc<dyn Store>`; `backends()` yields one per
//! backend available here. SQLite is always available; PostgreSQL joins with
//! the scale-out work.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::sync::Arc;

use fleetward_core::query::{CompareOp, Expr, Field, Value};
use fleetward_core::{DeviceId, DeviceStatus, Role, Tag, TagKey};
use fleetward_store::{
    AuditEntry, DeviceChange, NewDevice, SqliteStore, Store, StoreError, TokenRecord,
};
use time::OffsetDateTime;

struct Backend {
    name: &'static str,
    store: Arc<dyn Store>,
    _dir: tempfile::TempDir,
}

async fn sqlite() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("conformance.db").display());
    Backend {
        name: "sqlite",
        store: Arc::new(SqliteStore::open(&url).await.unwrap()),
        _dir: dir,
    }
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
    for backend in [sqlite().await] {
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
