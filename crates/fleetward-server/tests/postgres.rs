//! The server end to end on PostgreSQL (a private server from
//! `fleetward-testpg`): init, tokens, registration and target queries,
//! enrolment over mTLS, the security-event log and its verification, and a
//! second replica on the same database answering for the first.
//!
//! Skipped loudly without PostgreSQL binaries; CI requires them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use fleetward_core::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::TestServer;

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn the_server_runs_end_to_end_on_postgres() {
    let Some(url) = fleetward_testpg::fresh_database() else {
        return;
    };
    let server = TestServer::start_on(url.clone()).await;

    // Init ran against PostgreSQL: a second init is refused, nothing changes.
    let again = fleetward_server::init::initialize(
        server.dir.path(),
        &url,
        time::OffsetDateTime::now_utc(),
    )
    .await;
    assert!(again.is_err(), "init twice");

    // Tokens.
    let operator = server.token_for(Role::Operator).await;
    let listed = server.get(&server.admin, "/api/v1/tokens").await;
    assert_eq!(listed.status, StatusCode::OK, "{:?}", listed.body);
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 2);

    // Registration and target queries.
    for n in 0..30 {
        let hw = if n % 3 == 0 { "rev1" } else { "rev2" };
        let version = format!("1.{}.0", n % 12);
        let region = if n % 2 == 0 { "eu" } else { "us" };
        server
            .register(
                &format!("dev-{n:03}"),
                hw,
                Some(&version),
                &[("region", region)],
            )
            .await;
    }
    let count = |query: &'static str| {
        let server = &server;
        let operator = operator.clone();
        async move {
            let path = format!("/api/v1/devices/count?query={}", urlencode(query));
            let answer = server.get(&operator, &path).await;
            assert_eq!(answer.status, StatusCode::OK, "{query}: {:?}", answer.body);
            answer.body["count"].as_u64().unwrap()
        }
    };
    let expect = |pred: &dyn Fn(usize) -> bool| (0..30).filter(|n| pred(*n)).count() as u64;
    assert_eq!(count(r#"hw = "rev1""#).await, expect(&|n| n % 3 == 0));
    assert_eq!(
        count(r#"region = "eu" and hw != "rev1""#).await,
        expect(&|n| n % 2 == 0 && n % 3 != 0)
    );
    assert_eq!(
        count(r#"version >= "1.10.0""#).await,
        expect(&|n| n % 12 >= 10),
        "versions compare as versions, not text"
    );
    let page = server
        .get(
            &operator,
            &format!(
                "/api/v1/devices?limit=5&query={}",
                urlencode(r#"region = "us""#)
            ),
        )
        .await;
    let ids: Vec<&str> = page.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["dev-001", "dev-003", "dev-005", "dev-007", "dev-009"]);
    // Bad input: a clear error, nothing stored.
    let before = server.device_count().await;
    let bad = server
        .post(
            &server.admin,
            "/api/v1/devices",
            json!({"id": "", "hardware": "x"}),
        )
        .await;
    assert_eq!(
        bad.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{:?}",
        bad.body
    );
    assert_eq!(bad.code(), "invalid_device_id");
    assert_eq!(server.device_count().await, before);

    // Enrolment over mTLS, and the device is known.
    let device = server.enroll_device("field-7", "rev3").await;
    let me = device
        .client
        .get(format!("{}/device/v1/self", server.device_base()))
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    let me: Value = me.json().await.unwrap();
    assert_eq!(me["device_id"], "field-7", "{me:?}");

    // The event log has every audited change, chained; it verifies.
    let events = server.get(&server.admin, "/api/v1/events?limit=1000").await;
    assert_eq!(events.status, StatusCode::OK, "{:?}", events.body);
    let items = events.body["items"].as_array().unwrap();
    assert!(items.len() >= 33, "{}", items.len());
    let seqs: Vec<u64> = items.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    let verified = server.get(&server.admin, "/api/v1/events/verify").await;
    assert_eq!(verified.body["ok"], true, "{:?}", verified.body);
    // And offline, as `fleetward events verify` does.
    let store = server.store().await;
    let key = fleetward_server::events::load_or_create_key(server.dir.path()).unwrap();
    let offline = fleetward_server::events::verify_store(&*store, &key.verifying_key())
        .await
        .unwrap();
    assert!(offline.ok, "{offline:?}");
    assert_eq!(offline.entries, seqs.len() as u64);
    store.close().await;

    server.stop().await;
}

/// Two replicas on one database: what one stores, the other serves, and a
/// device enrolled through one is recognised by the other.
#[tokio::test]
async fn a_second_replica_answers_for_the_first() {
    let Some(url) = fleetward_testpg::fresh_database() else {
        return;
    };
    let first = TestServer::start_on(url).await;
    let second = first.replica().await;
    let second_base = format!("http://{}", second.addrs.operator);
    first.register("shared-1", "rev1", None, &[]).await;
    let seen = first
        .http
        .get(format!("{second_base}/api/v1/devices/shared-1"))
        .bearer_auth(&first.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(seen.status(), StatusCode::OK);

    let device = first.enroll_device("roamer", "rev2").await;
    let me = device
        .client
        .get(format!("https://{}/device/v1/self", second.addrs.device))
        .send()
        .await
        .unwrap();
    assert_eq!(
        me.status(),
        StatusCode::OK,
        "the other replica knows the device"
    );

    // Both replicas append to one chain.
    let token = first
        .http
        .post(format!("{second_base}/api/v1/tokens"))
        .bearer_auth(&first.admin)
        .json(&json!({"name": "via second", "role": "viewer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(token.status(), StatusCode::CREATED);
    let verified = first.get(&first.admin, "/api/v1/events/verify").await;
    assert_eq!(verified.body["ok"], true, "{:?}", verified.body);

    second.shutdown().await.unwrap();
    first.stop().await;
}

/// The database goes away under a running server: `/readyz` says so, a
/// write fails with a server error and stores nothing, and once the
/// database is back the same server recovers without a restart.
#[tokio::test]
async fn readiness_follows_the_database_and_the_server_recovers() {
    if fleetward_testpg::shared().is_none() {
        return;
    }
    // A server of our own: the shared one must stay up for other tests.
    let mut pg = fleetward_testpg::PgServer::start().unwrap();
    let server = TestServer::start_on(pg.create_database()).await;
    let ready = server
        .call(None, reqwest::Method::GET, "/readyz", None)
        .await;
    assert_eq!(ready.status, StatusCode::OK, "{:?}", ready.body);

    pg.pause();
    let down = server
        .call(None, reqwest::Method::GET, "/readyz", None)
        .await;
    assert_eq!(
        down.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{:?}",
        down.body
    );
    let refused = server
        .post(
            &server.admin,
            "/api/v1/devices",
            json!({"id": "while-down", "hardware": "rev1"}),
        )
        .await;
    assert!(
        refused.status.is_server_error(),
        "{} {:?}",
        refused.status,
        refused.body
    );

    pg.resume();
    // Recovery, not timing: poll with a generous bound.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let ready = server
            .call(None, reqwest::Method::GET, "/readyz", None)
            .await;
        if ready.status == StatusCode::OK {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never ready again");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // The token cache may have outlived the outage; the API works again.
    server.register("after-outage", "rev1", None, &[]).await;
    let missing = server
        .get(&server.admin, "/api/v1/devices/while-down")
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "nothing half-stored");
    let verified = server.get(&server.admin, "/api/v1/events/verify").await;
    assert_eq!(verified.body["ok"], true, "{:?}", verified.body);
    server.stop().await;
    drop(pg);
}
