//! The operator API, specified by what it answers over a real socket.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeSet;

use fleetward_core::{Permission, Role};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::TestServer;

/// One operator route: the permission it needs (`None`: any valid token),
/// and a request that an allowed caller gets past authorisation with,
/// without changing state that other rows rely on.
struct Route {
    method: Method,
    template: &'static str,
    path: &'static str,
    body: Option<Value>,
    permission: Option<Permission>,
}

fn route_table() -> Vec<Route> {
    use Permission as P;
    let route = |method, template, path, body, permission| Route {
        method,
        template,
        path,
        body,
        permission,
    };
    vec![
        route(Method::GET, "/api/v1/whoami", "/api/v1/whoami", None, None),
        route(
            Method::GET,
            "/api/v1/tokens",
            "/api/v1/tokens",
            None,
            Some(P::TokenRead),
        ),
        route(
            Method::POST,
            "/api/v1/tokens",
            "/api/v1/tokens",
            Some(json!({"name": "", "role": "viewer"})),
            Some(P::TokenWrite),
        ),
        route(
            Method::DELETE,
            "/api/v1/tokens/{id}",
            "/api/v1/tokens/0000000000000000",
            None,
            Some(P::TokenWrite),
        ),
        route(
            Method::GET,
            "/api/v1/devices",
            "/api/v1/devices",
            None,
            Some(P::FleetRead),
        ),
        route(
            Method::POST,
            "/api/v1/devices",
            "/api/v1/devices",
            Some(json!({"id": "", "hardware": "x"})),
            Some(P::FleetWrite),
        ),
        route(
            Method::POST,
            "/api/v1/devices/batch",
            "/api/v1/devices/batch",
            Some(json!({"devices": []})),
            Some(P::FleetWrite),
        ),
        route(
            Method::GET,
            "/api/v1/devices/count",
            "/api/v1/devices/count",
            None,
            Some(P::FleetRead),
        ),
        route(
            Method::GET,
            "/api/v1/devices/{id}",
            "/api/v1/devices/dev-1",
            None,
            Some(P::FleetRead),
        ),
        route(
            Method::PATCH,
            "/api/v1/devices/{id}",
            "/api/v1/devices/no-such-device",
            Some(json!({"status": "active"})),
            Some(P::FleetWrite),
        ),
        route(
            Method::GET,
            "/api/v1/audit",
            "/api/v1/audit",
            None,
            Some(P::AuditRead),
        ),
        route(
            Method::GET,
            "/api/v1/events",
            "/api/v1/events",
            None,
            Some(P::AuditRead),
        ),
        route(
            Method::GET,
            "/api/v1/events/{seq}",
            "/api/v1/events/1",
            None,
            Some(P::AuditRead),
        ),
        route(
            Method::GET,
            "/api/v1/events/checkpoints",
            "/api/v1/events/checkpoints",
            None,
            Some(P::AuditRead),
        ),
        route(
            Method::GET,
            "/api/v1/events/verify",
            "/api/v1/events/verify",
            None,
            Some(P::AuditRead),
        ),
        route(
            Method::GET,
            "/api/v1/settings",
            "/api/v1/settings",
            None,
            Some(P::SettingsRead),
        ),
        route(
            Method::PUT,
            "/api/v1/settings",
            "/api/v1/settings",
            Some(json!({"poll_interval_secs": 1, "default_token_lifetime_secs": 3600})),
            Some(P::SettingsWrite),
        ),
        // Device identity (issue 3).
        route(
            Method::POST,
            "/api/v1/enroll-tokens",
            "/api/v1/enroll-tokens",
            Some(json!({"uses": 0, "expires_in_secs": 3600})),
            Some(P::FleetWrite),
        ),
        route(
            Method::GET,
            "/api/v1/enroll-tokens",
            "/api/v1/enroll-tokens",
            None,
            Some(P::FleetRead),
        ),
        route(
            Method::DELETE,
            "/api/v1/enroll-tokens/{id}",
            "/api/v1/enroll-tokens/0000000000000000",
            None,
            Some(P::FleetWrite),
        ),
        route(
            Method::POST,
            "/api/v1/allow-list",
            "/api/v1/allow-list",
            Some(json!({"devices": []})),
            Some(P::FleetWrite),
        ),
        route(
            Method::POST,
            "/api/v1/devices/{id}/revoke",
            "/api/v1/devices/no-such-device/revoke",
            Some(json!({"reason": "test"})),
            Some(P::FleetWrite),
        ),
        route(
            Method::POST,
            "/api/v1/devices/{id}/decommission",
            "/api/v1/devices/no-such-device/decommission",
            Some(json!({"reason": "test"})),
            Some(P::FleetWrite),
        ),
        route(
            Method::POST,
            "/api/v1/devices/rekey",
            "/api/v1/devices/rekey",
            Some(json!({})),
            Some(P::FleetWrite),
        ),
        route(
            Method::GET,
            "/api/v1/devices/{id}/certificates",
            "/api/v1/devices/dev-1/certificates",
            None,
            Some(P::FleetRead),
        ),
        // Response to suspicious devices.
        route(
            Method::POST,
            "/api/v1/devices/{id}/quarantine",
            "/api/v1/devices/no-such-device/quarantine",
            Some(json!({"reason": "test"})),
            Some(P::FleetWrite),
        ),
        route(
            Method::GET,
            "/api/v1/devices/{id}/timeline",
            "/api/v1/devices/dev-1/timeline",
            None,
            Some(P::FleetRead),
        ),
        route(
            Method::GET,
            "/api/v1/devices/{id}/telemetry",
            "/api/v1/devices/dev-1/telemetry",
            None,
            Some(P::FleetRead),
        ),
        // Signed releases.
        route(
            Method::POST,
            "/api/v1/artifacts",
            "/api/v1/artifacts",
            None,
            Some(P::ReleaseWrite),
        ),
        route(
            Method::GET,
            "/api/v1/artifacts/{sha256}",
            "/api/v1/artifacts/abababababababababababababababababababababababababababababababab",
            None,
            Some(P::ReleaseRead),
        ),
        route(
            Method::POST,
            "/api/v1/releases",
            "/api/v1/releases",
            Some(json!({"version": "", "hardware": "x", "artifact_sha256": "", "file_name": "f"})),
            Some(P::ReleaseWrite),
        ),
        route(
            Method::GET,
            "/api/v1/releases",
            "/api/v1/releases",
            None,
            Some(P::ReleaseRead),
        ),
        route(
            Method::GET,
            "/api/v1/sbom/vulnerabilities",
            "/api/v1/sbom/vulnerabilities",
            None,
            Some(P::ReleaseRead),
        ),
        route(
            Method::GET,
            "/api/v1/releases/{version}",
            "/api/v1/releases/0.0.0",
            None,
            Some(P::ReleaseRead),
        ),
        route(
            Method::GET,
            "/api/v1/releases/{version}/signing-request",
            "/api/v1/releases/0.0.0/signing-request",
            None,
            Some(P::ReleaseWrite),
        ),
        route(
            Method::POST,
            "/api/v1/releases/{version}/signature",
            "/api/v1/releases/0.0.0/signature",
            None,
            Some(P::ReleaseWrite),
        ),
        route(
            Method::POST,
            "/api/v1/releases/{version}/publish",
            "/api/v1/releases/0.0.0/publish",
            None,
            Some(P::ReleaseWrite),
        ),
        route(
            Method::POST,
            "/api/v1/releases/{version}/deprecate",
            "/api/v1/releases/0.0.0/deprecate",
            None,
            Some(P::ReleaseWrite),
        ),
        route(
            Method::POST,
            "/api/v1/releases/{version}/revoke",
            "/api/v1/releases/0.0.0/revoke",
            None,
            Some(P::ReleaseWrite),
        ),
        route(
            Method::GET,
            "/api/v1/tuf/online-keys",
            "/api/v1/tuf/online-keys",
            None,
            Some(P::ReleaseRead),
        ),
        route(
            Method::GET,
            "/api/v1/tuf/status",
            "/api/v1/tuf/status",
            None,
            Some(P::ReleaseRead),
        ),
        route(
            Method::POST,
            "/api/v1/tuf/root",
            "/api/v1/tuf/root",
            Some(json!({})),
            Some(P::ReleaseWrite),
        ),
        route(
            Method::POST,
            "/api/v1/tuf/delegations",
            "/api/v1/tuf/delegations",
            Some(json!({"targets": {}})),
            Some(P::ReleaseWrite),
        ),
        route(
            Method::POST,
            "/api/v1/rollouts",
            "/api/v1/rollouts",
            Some(json!({"release": "0.0.0", "target": "all"})),
            Some(P::RolloutWrite),
        ),
        route(
            Method::GET,
            "/api/v1/rollouts",
            "/api/v1/rollouts",
            None,
            Some(P::RolloutRead),
        ),
        route(
            Method::GET,
            "/api/v1/rollouts/{id}",
            "/api/v1/rollouts/ro-0",
            None,
            Some(P::RolloutRead),
        ),
        route(
            Method::POST,
            "/api/v1/rollouts/{id}/pause",
            "/api/v1/rollouts/ro-0/pause",
            Some(json!({})),
            Some(P::RolloutWrite),
        ),
        route(
            Method::POST,
            "/api/v1/rollouts/{id}/resume",
            "/api/v1/rollouts/ro-0/resume",
            Some(json!({})),
            Some(P::RolloutWrite),
        ),
        route(
            Method::POST,
            "/api/v1/rollouts/{id}/abort",
            "/api/v1/rollouts/ro-0/abort",
            Some(json!({"rollback": false})),
            Some(P::RolloutWrite),
        ),
        route(
            Method::GET,
            "/api/v1/rollouts/{id}/executions",
            "/api/v1/rollouts/ro-0/executions",
            None,
            Some(P::RolloutRead),
        ),
        route(
            Method::GET,
            "/api/v1/rollouts/{id}/executions/{execution_id}/history",
            "/api/v1/rollouts/ro-0/executions/ex-1-1/history",
            None,
            Some(P::RolloutRead),
        ),
    ]
}

#[tokio::test]
async fn the_route_table_covers_every_documented_operation() {
    let server = TestServer::start().await;
    let doc = server
        .call(None, Method::GET, "/api/v1/openapi.json", None)
        .await;
    assert_eq!(doc.status, StatusCode::OK);
    assert!(
        doc.body["openapi"].as_str().unwrap().starts_with("3.1"),
        "OpenAPI 3.1: {}",
        doc.body["openapi"]
    );
    let mut documented = BTreeSet::new();
    for (path, item) in doc.body["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    let tabled: BTreeSet<_> = route_table()
        .iter()
        .map(|r| (r.method.to_string(), r.template.to_owned()))
        .collect();
    assert_eq!(
        documented, tabled,
        "every route needs a row in route_table and vice versa"
    );
    server.stop().await;
}

#[tokio::test]
async fn every_route_against_every_role() {
    let server = TestServer::start().await;
    server.register("dev-1", "rev2", Some("1.0.0"), &[]).await;
    let mut tokens = Vec::new();
    for role in Role::ALL {
        tokens.push((role, server.token_for(role).await));
    }
    for Route {
        method,
        template,
        path,
        body,
        permission,
    } in route_table()
    {
        let anonymous = server.call(None, method.clone(), path, body.clone()).await;
        assert_eq!(
            anonymous.status,
            StatusCode::UNAUTHORIZED,
            "{method} {template} without a token"
        );
        for (role, token) in &tokens {
            let audit_before = server.audit_len().await;
            let answer = server
                .call(Some(token), method.clone(), path, body.clone())
                .await;
            let allowed = permission.is_none_or(|p| role.allows(p));
            if allowed {
                assert!(
                    answer.status != StatusCode::FORBIDDEN
                        && answer.status != StatusCode::UNAUTHORIZED,
                    "{role} should pass {method} {template}, got {} {:?}",
                    answer.status,
                    answer.body
                );
            } else {
                assert_eq!(
                    answer.status,
                    StatusCode::FORBIDDEN,
                    "{role} must not {method} {template}"
                );
                assert_eq!(answer.code(), "forbidden");
                assert_eq!(
                    server.audit_len().await,
                    audit_before,
                    "a refused call changes nothing"
                );
            }
        }
    }
    server.stop().await;
}

/// One bad request, and the status and code it must get.
struct Bad {
    what: &'static str,
    method: Method,
    path: String,
    body: Option<Value>,
    status: StatusCode,
    code: &'static str,
}

#[tokio::test]
async fn bad_input_is_refused_with_a_stable_code_and_changes_nothing() {
    let server = TestServer::start().await;
    server
        .register("dev-1", "rev2", Some("1.0.0"), &[("region", "eu")])
        .await;
    let bad = |what, method, path: &str, body, status, code| Bad {
        what,
        method,
        path: path.to_owned(),
        body,
        status,
        code,
    };
    let cases = vec![
        bad(
            "unknown field",
            Method::POST,
            "/api/v1/devices",
            Some(json!({"id": "d2", "hardware": "x", "colour": "red"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        bad(
            "wrong type",
            Method::POST,
            "/api/v1/devices",
            Some(json!({"id": 7, "hardware": "x"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        bad(
            "missing field",
            Method::POST,
            "/api/v1/devices",
            Some(json!({"id": "d2"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        bad(
            "bad device id",
            Method::POST,
            "/api/v1/devices",
            Some(json!({"id": "d 2", "hardware": "x"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_device_id",
        ),
        bad(
            "script in device id",
            Method::POST,
            "/api/v1/devices",
            Some(json!({"id": "<script>", "hardware": "x"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_device_id",
        ),
        bad(
            "bad hardware",
            Method::POST,
            "/api/v1/devices",
            Some(json!({"id": "d2", "hardware": "a b"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_hardware",
        ),
        bad(
            "bad tag key",
            Method::POST,
            "/api/v1/devices",
            Some(json!({"id": "d2", "hardware": "x", "tags": {"Region": "eu"}})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_tag",
        ),
        bad(
            "bad tag value",
            Method::POST,
            "/api/v1/devices",
            Some(json!({"id": "d2", "hardware": "x", "tags": {"region": "<b>"}})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_tag",
        ),
        bad(
            "reserved tag key",
            Method::PATCH,
            "/api/v1/devices/dev-1",
            Some(json!({"set_tags": {"and": "1"}})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_tag",
        ),
        bad(
            "new device quarantined",
            Method::POST,
            "/api/v1/devices",
            Some(json!({"id": "d2", "hardware": "x", "status": "quarantined"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_status",
        ),
        bad(
            "duplicate device",
            Method::POST,
            "/api/v1/devices",
            Some(json!({"id": "dev-1", "hardware": "x"})),
            StatusCode::CONFLICT,
            "conflict",
        ),
        bad(
            "batch with a duplicate",
            Method::POST,
            "/api/v1/devices/batch",
            Some(
                json!({"devices": [{"id": "new-1", "hardware": "x"}, {"id": "dev-1", "hardware": "x"}]}),
            ),
            StatusCode::CONFLICT,
            "conflict",
        ),
        bad(
            "batch with a bad entry",
            Method::POST,
            "/api/v1/devices/batch",
            Some(
                json!({"devices": [{"id": "new-1", "hardware": "x"}, {"id": "bad id", "hardware": "x"}]}),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_device_id",
        ),
        bad(
            "empty batch",
            Method::POST,
            "/api/v1/devices/batch",
            Some(json!({"devices": []})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_batch",
        ),
        bad(
            "empty change",
            Method::PATCH,
            "/api/v1/devices/dev-1",
            Some(json!({})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "empty_change",
        ),
        bad(
            "set and remove one tag",
            Method::PATCH,
            "/api/v1/devices/dev-1",
            Some(json!({"set_tags": {"region": "us"}, "remove_tags": ["region"]})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_tag",
        ),
        bad(
            "unknown device",
            Method::GET,
            "/api/v1/devices/nope",
            None,
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        bad(
            "change unknown device",
            Method::PATCH,
            "/api/v1/devices/nope",
            Some(json!({"status": "active"})),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        bad(
            "invalid id in path",
            Method::GET,
            "/api/v1/devices/a%20b",
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_device_id",
        ),
        bad(
            "bad query",
            Method::GET,
            "/api/v1/devices?query=hw%20%3D%3D%20%22x%22",
            None,
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        bad(
            "unterminated query",
            Method::GET,
            "/api/v1/devices/count?query=hw%20%3D%20%22x",
            None,
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        bad(
            "unknown parameter",
            Method::GET,
            "/api/v1/devices?colour=red",
            None,
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
        ),
        bad(
            "limit too large",
            Method::GET,
            "/api/v1/devices?limit=5000",
            None,
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
        ),
        bad(
            "limit zero",
            Method::GET,
            "/api/v1/devices?limit=0",
            None,
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
        ),
        bad(
            "forged cursor",
            Method::GET,
            "/api/v1/devices?cursor=%21%21",
            None,
            StatusCode::BAD_REQUEST,
            "invalid_cursor",
        ),
        bad(
            "token with empty name",
            Method::POST,
            "/api/v1/tokens",
            Some(json!({"name": " ", "role": "viewer"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_name",
        ),
        bad(
            "token with unknown role",
            Method::POST,
            "/api/v1/tokens",
            Some(json!({"name": "x", "role": "root"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        bad(
            "token living a second",
            Method::POST,
            "/api/v1/tokens",
            Some(json!({"name": "x", "role": "viewer", "expires_in_secs": 1})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_expiry",
        ),
        bad(
            "revoke unknown token",
            Method::DELETE,
            "/api/v1/tokens/0123456789abcdef",
            None,
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        bad(
            "poll interval too short",
            Method::PUT,
            "/api/v1/settings",
            Some(json!({"poll_interval_secs": 1, "default_token_lifetime_secs": 3600})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_setting",
        ),
        bad(
            "unknown route",
            Method::GET,
            "/api/v1/nothing-here",
            None,
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        bad(
            "wrong method",
            Method::DELETE,
            "/api/v1/devices",
            None,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
    ];
    let devices_before = server.device_count().await;
    let audit_before = server.audit_len().await;
    for case in cases {
        let answer = server
            .call(
                Some(&server.admin),
                case.method.clone(),
                &case.path,
                case.body.clone(),
            )
            .await;
        assert_eq!(
            answer.status, case.status,
            "{}: {:?}",
            case.what, answer.body
        );
        assert_eq!(answer.code(), case.code, "{}: {:?}", case.what, answer.body);
        assert!(
            !answer.body["error"]["message"]
                .as_str()
                .unwrap_or("")
                .is_empty(),
            "{}: needs a message",
            case.what
        );
    }
    assert_eq!(
        server.device_count().await,
        devices_before,
        "no device was stored"
    );
    assert_eq!(
        server.audit_len().await,
        audit_before,
        "no audit record was written"
    );
    let device = server.get(&server.admin, "/api/v1/devices/dev-1").await;
    assert_eq!(
        device.body["tags"],
        json!({"region": "eu"}),
        "dev-1 is untouched"
    );
    server.stop().await;
}

#[tokio::test]
async fn malformed_and_oversized_bodies() {
    let server = TestServer::start_with(|config| config.max_body_bytes = 16 * 1024).await;
    let admin = server.admin.clone();
    let check = |answer: support::Answer, status: StatusCode, code: &str| {
        assert_eq!(answer.status, status, "{:?}", answer.body);
        assert_eq!(answer.code(), code);
    };
    let malformed = server
        .raw(
            &admin,
            Method::POST,
            "/api/v1/devices",
            "application/json",
            b"{\"id\": ".to_vec(),
        )
        .await;
    check(malformed, StatusCode::BAD_REQUEST, "malformed_json");
    let not_json = server
        .raw(
            &admin,
            Method::POST,
            "/api/v1/devices",
            "text/plain",
            b"{}".to_vec(),
        )
        .await;
    check(
        not_json,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    let devices: Vec<Value> = (0..2000)
        .map(|n| json!({"id": format!("big-{n}"), "hardware": "x"}))
        .collect();
    let huge = serde_json::to_vec(&json!({ "devices": devices })).unwrap();
    assert!(huge.len() > 16 * 1024);
    let oversized = server
        .raw(
            &admin,
            Method::POST,
            "/api/v1/devices/batch",
            "application/json",
            huge,
        )
        .await;
    check(
        oversized,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );
    assert_eq!(server.device_count().await, 0);
    server.stop().await;
}

#[tokio::test]
async fn wrong_expired_and_revoked_tokens_are_refused() {
    let server = TestServer::start().await;
    let viewer = server.token_for(Role::Viewer).await;
    let whoami = |token: String| {
        let server = &server;
        async move { server.get(&token, "/api/v1/whoami").await }
    };

    let answer = whoami(viewer.clone()).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body["role"], "viewer");

    // Right id, wrong secret.
    let (id_part, secret) = viewer.rsplit_once('_').unwrap();
    let flipped = if secret.starts_with('A') {
        secret.replacen('A', "B", 1)
    } else {
        format!("A{}", &secret[1..])
    };
    for (token, code) in [
        (format!("{id_part}_{flipped}"), "invalid_token"),
        (
            "fwt_0000000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_owned(),
            "invalid_token",
        ),
        ("not-a-token".to_owned(), "invalid_token"),
    ] {
        let answer = whoami(token).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        assert_eq!(answer.code(), code);
    }
    let basic = server
        .http
        .get(format!("{}/api/v1/whoami", server.base))
        .header("authorization", "Basic YTpi")
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(basic.headers()["www-authenticate"], "Bearer");

    // Revoked: at once.
    let id = server.get(&viewer, "/api/v1/whoami").await.body["token_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let revoked = server
        .call(
            Some(&server.admin),
            Method::DELETE,
            &format!("/api/v1/tokens/{id}"),
            None,
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK);
    let answer = whoami(viewer).await;
    assert_eq!(
        (answer.status, answer.code()),
        (StatusCode::UNAUTHORIZED, "token_revoked")
    );
    let again = server
        .call(
            Some(&server.admin),
            Method::DELETE,
            &format!("/api/v1/tokens/{id}"),
            None,
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);

    // Expired: planted directly, because the API will not mint a token that is already dead.
    let store = server.store().await;
    let minted = fleetward_server::auth::mint_token();
    let now = time::OffsetDateTime::now_utc();
    let record = fleetward_store::TokenRecord {
        id: minted.id.clone(),
        name: "expired".into(),
        role: Role::Admin,
        secret_hash: minted.secret_hash,
        created_at: now - time::Duration::days(2),
        expires_at: Some(now - time::Duration::days(1)),
        revoked_at: None,
        created_by: "test".into(),
    };
    let audit = fleetward_store::AuditEntry {
        at: now,
        actor: "test".into(),
        action: "token.create".into(),
        target: minted.id.clone(),
        source: "test".into(),
        detail: json!({}),
    };
    store.insert_token(&record, &audit).await.unwrap();
    store.close().await;
    let answer = whoami(minted.token.clone()).await;
    assert_eq!(
        (answer.status, answer.code()),
        (StatusCode::UNAUTHORIZED, "token_expired")
    );
    let write = server
        .post(
            &minted.token,
            "/api/v1/devices",
            json!({"id": "d9", "hardware": "x"}),
        )
        .await;
    assert_eq!(write.status, StatusCode::UNAUTHORIZED);
    assert_eq!(server.device_count().await, 0);
    server.stop().await;
}

#[tokio::test]
async fn the_last_admin_token_cannot_be_revoked() {
    let server = TestServer::start().await;
    let me = server.get(&server.admin, "/api/v1/whoami").await.body["token_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let answer = server
        .call(
            Some(&server.admin),
            Method::DELETE,
            &format!("/api/v1/tokens/{me}"),
            None,
        )
        .await;
    assert_eq!(
        (answer.status, answer.code()),
        (StatusCode::CONFLICT, "conflict")
    );
    let second = server.token_for(Role::Admin).await;
    let answer = server
        .call(
            Some(&second),
            Method::DELETE,
            &format!("/api/v1/tokens/{me}"),
            None,
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn token_secrets_are_shown_once_and_never_listed() {
    let server = TestServer::start().await;
    let created = server
        .post(
            &server.admin,
            "/api/v1/tokens",
            json!({"name": "ci", "role": "operator", "expires_in_secs": 3600}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let secret = created.body["token"].as_str().unwrap().to_owned();
    let listed = server.get(&server.admin, "/api/v1/tokens").await;
    let text = listed.body.to_string();
    // The secret part follows the hex id's `_`; it may itself contain `_`
    // (URL-safe base64), so split at the first one after the prefix.
    let secret_part = secret
        .split_once('_')
        .and_then(|(_, rest)| rest.split_once('_'))
        .unwrap()
        .1;
    assert_eq!(secret_part.len(), 43, "{secret}");
    assert!(!text.contains(&secret) && !text.contains(secret_part));
    let items = listed.body["items"].as_array().unwrap();
    let ci = items.iter().find(|t| t["name"] == "ci").unwrap();
    assert_eq!(ci["role"], "operator");
    assert!(ci["expires_at"].is_string());
    server.stop().await;
}

#[tokio::test]
async fn mutations_are_audited_with_who_what_target_and_source() {
    let server = TestServer::start().await;
    let operator = server.token_for(Role::Operator).await;
    let operator_id = server.get(&operator, "/api/v1/whoami").await.body["token_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let answer = server
        .post(
            &operator,
            "/api/v1/devices",
            json!({"id": "dev-7", "hardware": "rev2"}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED);
    let answer = server
        .call(
            Some(&operator),
            Method::PATCH,
            "/api/v1/devices/dev-7",
            Some(json!({"set_tags": {"ring": "canary"}, "status": "active"})),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body["tags"], json!({"ring": "canary"}));
    assert_eq!(answer.body["status"], "active");

    let audit = server.get(&server.admin, "/api/v1/audit").await.body["items"]
        .as_array()
        .unwrap()
        .clone();
    let actions: Vec<(&str, &str)> = audit
        .iter()
        .map(|r| (r["action"].as_str().unwrap(), r["target"].as_str().unwrap()))
        .collect();
    assert!(
        actions.ends_with(&[
            ("device.register", "device:dev-7"),
            ("device.update", "device:dev-7")
        ]),
        "{actions:?}"
    );
    let last = audit.last().unwrap();
    assert!(last["actor"].as_str().unwrap().contains(&operator_id));
    assert!(last["source"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(last["detail"].as_str().unwrap().contains("canary"));

    // The log is append-only in the database itself.
    let store = server.store().await;
    let url = fleetward_server::ServerConfig::default_database_url(server.dir.path());
    drop(store);
    let pool = sqlx_pool(&url).await;
    for statement in [
        "UPDATE audit_log SET actor = 'someone else'",
        "DELETE FROM audit_log",
    ] {
        let error = sqlx::query(statement).execute(&pool).await.unwrap_err();
        assert!(
            error.to_string().contains("append-only"),
            "{statement}: {error}"
        );
    }
    server.stop().await;
}

async fn sqlx_pool(url: &str) -> sqlx::SqlitePool {
    sqlx::SqlitePool::connect(url).await.unwrap()
}

#[tokio::test]
async fn listing_pages_with_cursors_and_filters_with_queries() {
    let server = TestServer::start().await;
    let devices: Vec<Value> = (0..250)
        .map(|n| {
            let region = ["eu", "us", "apac"][n % 3];
            let mut tags = json!({ "region": region });
            if n % 10 == 0 {
                tags["beta"] = json!("");
            }
            json!({"id": format!("dev-{n:04}"), "hardware": if n % 2 == 0 { "rev2" } else { "rev1" },
                   "version": if n % 4 == 0 { "1.9.0" } else { "2.0.0-rc.1" }, "tags": tags, "status": "active"})
        })
        .collect();
    let answer = server
        .post(
            &server.admin,
            "/api/v1/devices/batch",
            json!({ "devices": devices }),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.body);
    assert_eq!(answer.body["registered"], 250);

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/devices?limit=100&cursor={c}"),
            None => "/api/v1/devices?limit=100".to_owned(),
        };
        let page = server.get(&server.admin, &path).await;
        assert_eq!(page.status, StatusCode::OK);
        seen.extend(
            page.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["id"].as_str().unwrap().to_owned()),
        );
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let expected: Vec<String> = (0..250).map(|n| format!("dev-{n:04}")).collect();
    assert_eq!(seen, expected, "every device once, in id order");

    let count = |query: &'static str| {
        let server = &server;
        async move {
            let path = format!("/api/v1/devices/count?query={}", urlencode(query));
            let answer = server.get(&server.admin, &path).await;
            assert_eq!(answer.status, StatusCode::OK, "{query}: {:?}", answer.body);
            answer.body["count"].as_u64().unwrap()
        }
    };
    let expect = |pred: &dyn Fn(usize) -> bool| (0..250).filter(|n| pred(*n)).count() as u64;
    assert_eq!(count(r#"hw = "rev2""#).await, expect(&|n| n % 2 == 0));
    assert_eq!(
        count(r#"region in ("eu", "us") and not beta"#).await,
        expect(&|n| n % 3 != 2 && n % 10 != 0)
    );
    assert_eq!(
        count(r#"version < "2.0.0""#).await,
        250,
        "1.9.0 and 2.0.0-rc.1 both precede 2.0.0"
    );
    assert_eq!(
        count(r#"version < "2.0.0-rc.1""#).await,
        expect(&|n| n % 4 == 0)
    );
    assert_eq!(
        count(r#"region != "eu" or hw = "rev1""#).await,
        expect(&|n| n % 3 != 0 || n % 2 == 1)
    );
    assert_eq!(count(r#"id = "dev-0007""#).await, 1);
}

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
async fn health_readiness_metrics_and_server_json() {
    let server = TestServer::start().await;
    let addrs = fleetward_server::read_server_json(server.dir.path()).unwrap();
    assert_eq!(format!("http://{}", addrs.operator), server.base);
    for path in ["/healthz", "/readyz"] {
        assert_eq!(
            server.call(None, Method::GET, path, None).await.status,
            StatusCode::OK,
            "{path}"
        );
    }
    // The device listener speaks TLS with a certificate from the fleet CA.
    let device_http = server.device_client(None).await;
    let device_health = device_http
        .get(format!("https://{}/healthz", addrs.device))
        .send()
        .await
        .unwrap();
    assert_eq!(device_health.status(), StatusCode::OK);
    let api_on_device_port = device_http
        .get(format!("https://{}/api/v1/whoami", addrs.device))
        .send()
        .await
        .unwrap();
    assert_eq!(
        api_on_device_port.status(),
        StatusCode::NOT_FOUND,
        "operator routes are not on the device listener"
    );

    server.get(&server.admin, "/api/v1/devices").await;
    let metrics = server
        .call(None, Method::GET, "/metrics", None)
        .await
        .body
        .as_str()
        .unwrap()
        .to_owned();
    for needle in [
        r#"fleetward_http_requests_total{listener="operator",method="GET",route="/api/v1/devices",status="200"} 1"#,
        "fleetward_http_request_duration_seconds_bucket",
        "fleetward_db_pool_connections",
        "fleetward_devices_seen_last_poll_interval 0",
    ] {
        assert!(
            metrics.contains(needle),
            "metrics lack {needle}:\n{metrics}"
        );
    }
    let dir = server.dir.path().to_owned();
    server.stop().await;
    assert!(
        !dir.join("server.json").exists(),
        "a stopped server removes server.json"
    );
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish() {
    let mut server = TestServer::start().await;
    let devices: Vec<Value> = (0..10_000)
        .map(|n| json!({"id": format!("s-{n:05}"), "hardware": "x", "tags": {"a": "1", "b": "2"}}))
        .collect();
    let request = server
        .http
        .post(format!("{}/api/v1/devices/batch", server.base))
        .bearer_auth(&server.admin)
        .json(&json!({ "devices": devices }))
        .send();
    let in_flight = tokio::spawn(request);
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    server.server.take().unwrap().shutdown().await.unwrap();
    let response = in_flight.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let store = server.store().await;
    assert_eq!(
        store.count_devices(None).await.unwrap(),
        10_000,
        "the whole batch was stored"
    );
}
