//! `POST /device/v1/reports` and `GET /api/v1/devices/{id}/telemetry` over
//! real sockets: a real device certificate, real SQLite. Every bad batch
//! is refused whole with nothing stored.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::TestServer;

async fn post(
    device: &support::EnrolledDevice,
    server: &TestServer,
    body: Value,
) -> (StatusCode, Value) {
    let answer = device
        .client
        .post(format!("{}/device/v1/reports", server.device_base()))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = answer.status();
    (status, answer.json().await.unwrap_or(Value::Null))
}

fn telemetry(uptime: u64) -> Value {
    json!({"type": "telemetry", "device_time": "2026-11-25T10:00:00Z",
           "agent_version": "0.1.0", "running_version": "1.0.0", "uptime_secs": uptime,
           "cpu_percent": 12.5, "memory_used_bytes": 1000, "memory_total_bytes": 4000})
}

async fn stored(server: &TestServer, id: &str) -> Value {
    let answer = server
        .get(&server.admin, &format!("/api/v1/devices/{id}/telemetry"))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    answer.body
}

async fn device_events(server: &TestServer, id: &str) -> Vec<String> {
    let answer = server
        .get(
            &server.admin,
            &format!("/api/v1/events?device={id}&limit=1000"),
        )
        .await;
    answer.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .filter(|k| k.starts_with("device."))
        .collect()
}

#[tokio::test]
async fn reports_are_stored_and_security_reports_become_events() {
    let server = TestServer::start().await;
    server.register("dev-r", "rev2", Some("1.0.0"), &[]).await;
    let dev = server.enroll_device("dev-r", "rev2").await;
    let before = device_events(&server, "dev-r").await;

    let (status, body) = post(
        &dev,
        &server,
        json!({"reports": [
            telemetry(5),
            {"type": "error", "device_time": "2026-11-25T10:00:01Z", "context": "download", "message": "connection reset"},
            {"type": "security", "device_time": "2026-11-25T10:00:02Z", "kind": "verification-failed", "message": "sha256 mismatch"},
            {"type": "security", "device_time": "2026-11-25T10:00:03Z", "kind": "rollback-attempt", "message": "targets v3 < v4"},
            {"type": "security", "device_time": "2026-11-25T10:00:04Z", "kind": "unexpected-reboot", "message": "boot id changed"},
            telemetry(6),
        ]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    assert_eq!(body, json!({"accepted": 6}));

    let seen = stored(&server, "dev-r").await;
    assert_eq!(seen["telemetry"].as_array().unwrap().len(), 2);
    assert_eq!(
        seen["telemetry"][0]["conditions"]["uptime_secs"], 6,
        "newest first"
    );
    assert_eq!(seen["telemetry"][1]["conditions"]["cpu_percent"], 12.5);
    assert_eq!(seen["errors"][0]["context"], "download");
    let mut after = device_events(&server, "dev-r").await;
    after.drain(..before.len());
    for kind in [
        "device.error",
        "device.verification_failed",
        "device.rollback_attempt",
        "device.unexpected_reboot",
    ] {
        assert!(after.iter().any(|k| k == kind), "{kind} in {after:?}");
    }
    let device = server.get(&server.admin, "/api/v1/devices/dev-r").await;
    assert!(device.body["last_seen"].is_string(), "{:?}", device.body);
    server.stop().await;
}

#[tokio::test]
async fn bad_batches_store_nothing() {
    let server = TestServer::start().await;
    server.register("dev-b", "rev2", None, &[]).await;
    let dev = server.enroll_device("dev-b", "rev2").await;
    let events_before = server
        .get(&server.admin, "/api/v1/events?limit=1000")
        .await
        .body["items"]
        .as_array()
        .unwrap()
        .len();
    let long = "x".repeat(1025);
    let security = |message: &str| json!({"type": "security", "device_time": "2026-11-25T10:00:02Z", "kind": "verification-failed", "message": message});
    let check = |body: Value, expected: StatusCode| {
        let dev = &dev;
        let server = &server;
        async move {
            let (status, answer) = post(dev, server, body.clone()).await;
            assert_eq!(status, expected, "{body}: {answer:?}");
        }
    };
    let too_many: Vec<Value> = (0..257).map(telemetry).collect();
    check(json!({"reports": too_many}), StatusCode::PAYLOAD_TOO_LARGE).await;
    let huge: Vec<Value> = (0..200).map(|_| security(&"y".repeat(1000))).collect();
    check(json!({"reports": huge}), StatusCode::PAYLOAD_TOO_LARGE).await;
    check(
        json!({"reports": [telemetry(1), security(&long)]}),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    check(
        json!({"reports": [telemetry(1), security("two\nlines")]}),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    check(
        json!({"reports": [{"type": "error", "device_time": "2026-11-25T10:00:01Z", "context": "a\u{1b}[31m", "message": "m"}]}),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    let mut bad_cpu = telemetry(1);
    bad_cpu["cpu_percent"] = json!(250.0);
    check(
        json!({"reports": [bad_cpu]}),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    let mut unknown = telemetry(1);
    unknown["extra"] = json!(1);
    check(
        json!({"reports": [unknown]}),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    check(json!({"reports": [{"type": "security", "device_time": "2026-11-25T10:00:02Z", "kind": "made-up", "message": "m"}]}), StatusCode::UNPROCESSABLE_ENTITY).await;
    check(json!({"reports": [{"type": "telemetry", "device_time": "yesterday", "agent_version": "1"}]}), StatusCode::UNPROCESSABLE_ENTITY).await;

    let seen = stored(&server, "dev-b").await;
    assert_eq!(seen["telemetry"], json!([]));
    assert_eq!(seen["errors"], json!([]));
    let events_after = server
        .get(&server.admin, "/api/v1/events?limit=1000")
        .await
        .body["items"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(
        events_before, events_after,
        "no event logged for a refused batch"
    );

    // Without a device certificate: refused.
    let anonymous = server
        .device_client(None)
        .await
        .post(format!("{}/device/v1/reports", server.device_base()))
        .json(&json!({"reports": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    // The operator side: unknown device, bad limit, no token.
    let unknown = server
        .get(&server.admin, "/api/v1/devices/nope/telemetry")
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let bad_limit = server
        .get(&server.admin, "/api/v1/devices/dev-b/telemetry?limit=0")
        .await;
    assert_eq!(bad_limit.status, StatusCode::BAD_REQUEST);
    let no_token = server
        .call(
            None,
            reqwest::Method::GET,
            "/api/v1/devices/dev-b/telemetry",
            None,
        )
        .await;
    assert_eq!(no_token.status, StatusCode::UNAUTHORIZED);
    server.stop().await;
}

#[tokio::test]
async fn the_director_key_is_served_to_enrolled_devices_only() {
    let server = TestServer::start().await;
    server.register("dev-k", "rev2", None, &[]).await;
    let dev = server.enroll_device("dev-k", "rev2").await;
    let answer: Value = dev
        .client
        .get(format!("{}/device/v1/director/key", server.device_base()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let online = server.get(&server.admin, "/api/v1/tuf/online-keys").await;
    assert_eq!(answer["public_key"], online.body["director"]);
    let key: fleetward_tuf::PublicKey =
        serde_json::from_value(answer["public_key"].clone()).unwrap();
    assert_eq!(
        answer["keyid"],
        fleetward_tuf::key_id(&key).unwrap().as_str()
    );
    let anonymous = server
        .device_client(None)
        .await
        .get(format!("{}/device/v1/director/key", server.device_base()))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    server.stop().await;
}
