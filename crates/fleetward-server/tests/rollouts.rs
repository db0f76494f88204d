//! Rollouts end to end: a real server (the engine ticking every 50 ms),
//! devices enrolled through the identity flow and calling the director and
//! the execution endpoint over mutual TLS, as an agent does.
//!
//! Releases are planted in the store as published (with their artifact
//! records): signing is the releases tests' subject, and the director only
//! needs the records.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeSet;

use fleetward_core::{DeviceId, ReleaseState};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{EnrolledDevice, TestServer, plant_releases};

async fn standard_releases(server: &TestServer) {
    plant_releases(
        server,
        &[
            ("1.3.0", "rev2", ReleaseState::Published),
            ("1.4.0", "rev2", ReleaseState::Published),
            ("1.5.0", "rev2", ReleaseState::Signed),
            ("1.6.0", "rev2", ReleaseState::Revoked),
            ("2.0.0", "rev3", ReleaseState::Published),
        ],
    )
    .await;
}

/// Registered (running `version`, with `tags`) and enrolled.
async fn device(server: &TestServer, id: &str, tags: &[(&str, &str)]) -> EnrolledDevice {
    server.register(id, "rev2", Some("1.3.0"), tags).await;
    server.enroll_device(id, "rev2").await
}

/// What the director says to `device`: `None` for 404, else the one
/// target's name and custom fields.
async fn director(server: &TestServer, device: &EnrolledDevice) -> Option<(String, Value)> {
    let answer = device
        .client
        .get(format!(
            "{}/device/v1/director/targets.json",
            server.device_base()
        ))
        .send()
        .await
        .unwrap();
    if answer.status() == StatusCode::NOT_FOUND {
        return None;
    }
    assert_eq!(answer.status(), StatusCode::OK);
    let body: Value = answer.json().await.unwrap();
    let targets = body["signed"]["targets"].as_object().unwrap();
    assert_eq!(targets.len(), 1, "exactly one target");
    let (name, target) = targets.iter().next().unwrap();
    Some((name.clone(), target["custom"].clone()))
}

async fn report(
    server: &TestServer,
    device: &EnrolledDevice,
    execution: &str,
    body: Value,
) -> (StatusCode, Value) {
    let answer = device
        .client
        .post(format!(
            "{}/device/v1/executions/{execution}",
            server.device_base()
        ))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = answer.status();
    (status, answer.json().await.unwrap_or(Value::Null))
}

/// Installs what the director names, reporting every step; returns the
/// execution id, or `None` when nothing was offered.
async fn install(server: &TestServer, device: &EnrolledDevice, health: bool) -> Option<String> {
    let (name, custom) = director(server, device).await?;
    let version = custom["version"].as_str().unwrap().to_owned();
    assert!(name.ends_with(&format!("/{version}/fw.img")));
    let execution = custom["execution_id"].as_str().unwrap().to_owned();
    for step in [
        json!({"step": "downloading"}),
        json!({"step": "downloaded"}),
        json!({"step": "installing"}),
        json!({"step": "rebooting"}),
        json!({"step": "verifying"}),
        json!({"step": "succeeded", "running_version": version, "health_check_passed": health}),
    ] {
        let (status, ack) = report(server, device, &execution, step.clone()).await;
        assert_eq!(status, StatusCode::OK, "{step}: {ack}");
    }
    Some(execution)
}

async fn create(server: &TestServer, body: Value) -> support::Answer {
    server.post(&server.admin, "/api/v1/rollouts", body).await
}

async fn events(server: &TestServer, kind: &str) -> Vec<Value> {
    let answer = server
        .get(&server.admin, &format!("/api/v1/events?kind={kind}"))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    answer.body["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn devices_go_through_the_phases_and_the_rollout_completes() {
    let server = TestServer::start().await;
    standard_releases(&server).await;
    let mut devices = Vec::new();
    for n in 0..8 {
        devices.push(device(&server, &format!("dev-{n}"), &[("ring", "field")]).await);
    }
    let created = create(
        &server,
        json!({"release": "1.4.0", "target": "ring = field", "phases": "25%,100%", "soak": "0", "success_threshold": "100%"}),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    assert_eq!(created.body["queued"], 8);
    let id = created.body["rollout"]["id"].as_str().unwrap().to_owned();
    let phases = fleetward_rollout::Phases::parse("25%,100%").unwrap();
    let first: BTreeSet<String> = devices
        .iter()
        .filter(|d| {
            fleetward_rollout::phase_of(&id, &DeviceId::parse(&d.id).unwrap(), &phases) == Some(0)
        })
        .map(|d| d.id.clone())
        .collect();
    server
        .wait_for_rollout(&id, |r| {
            r["phases"][0]["counts"]["released"].as_u64() == Some(first.len() as u64)
        })
        .await;
    // Only the first phase is offered, and each device is told its execution.
    let mut offered = BTreeSet::new();
    for device in &devices {
        if let Some((name, custom)) = director(&server, device).await {
            assert_eq!(name, "rev2/1.4.0/fw.img");
            assert_eq!(custom["rollout_id"], id.as_str());
            assert_eq!(custom["device_id"], device.id.as_str());
            offered.insert(device.id.clone());
        }
    }
    assert_eq!(offered, first, "phase membership is phase_of's");
    let status = server
        .get(&server.admin, &format!("/api/v1/rollouts/{id}"))
        .await;
    assert_eq!(status.body["current_phase"], 0);
    assert_eq!(status.body["phases"][1]["state"], "waiting");

    // Each device installs whatever it is offered until the rollout is done.
    let mut executions = Vec::new();
    for _ in 0..200 {
        for device in &devices {
            if let Some(execution) = install(&server, device, true).await {
                executions.push((device, execution));
            }
        }
        let status = server
            .get(&server.admin, &format!("/api/v1/rollouts/{id}"))
            .await;
        if status.body["state"] == "completed" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let done = server
        .get(&server.admin, &format!("/api/v1/rollouts/{id}"))
        .await;
    assert_eq!(done.body["state"], "completed", "{:#}", done.body);
    assert_eq!(done.body["totals"]["succeeded"], 8);
    assert_eq!(done.body["phases"][0]["counts"]["total"], first.len());
    assert_eq!(executions.len(), 8, "each device installed once");
    for device in &devices {
        let stored = server
            .get(&server.admin, &format!("/api/v1/devices/{}", device.id))
            .await;
        assert_eq!(
            stored.body["version"], "1.4.0",
            "success records the version"
        );
        assert_eq!(
            director(&server, device).await,
            None,
            "nothing new afterwards"
        );
    }
    // Every transition is stored.
    let (_, execution) = &executions[0];
    let history = server
        .get(
            &server.admin,
            &format!("/api/v1/rollouts/{id}/executions/{execution}/history"),
        )
        .await;
    let steps: Vec<&str> = history.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["to"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "queued",
            "offered",
            "downloading",
            "downloaded",
            "installing",
            "rebooting",
            "verifying",
            "succeeded"
        ]
    );
    let listed = server
        .get(
            &server.admin,
            &format!("/api/v1/rollouts/{id}/executions?state=succeeded&phase=0"),
        )
        .await;
    assert_eq!(listed.body["items"].as_array().unwrap().len(), first.len());
    // A viewer reads; the rollout was audited.
    let viewer = server.token_for(fleetward_core::Role::Viewer).await;
    assert_eq!(
        server.get(&viewer, "/api/v1/rollouts").await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        server
            .post(&viewer, &format!("/api/v1/rollouts/{id}/pause"), json!({}))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    server.stop().await;
}

#[tokio::test]
async fn a_failing_phase_pauses_by_itself_and_says_why() {
    let server = TestServer::start().await;
    standard_releases(&server).await;
    let a = device(&server, "dev-a", &[]).await;
    let b = device(&server, "dev-b", &[]).await;
    let created = create(
        &server,
        json!({"release": "1.4.0", "target": "id in (dev-a, dev-b)", "max_failures": "10%", "soak": "0"}),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let id = created.body["rollout"]["id"].as_str().unwrap().to_owned();
    server
        .wait_for_rollout(&id, |r| r["totals"]["released"] == 2)
        .await;
    // dev-a's health check fails after the reboot: a failure, not a success.
    let (_, custom) = director(&server, &a).await.unwrap();
    let execution = custom["execution_id"].as_str().unwrap().to_owned();
    install(&server, &a, false).await.unwrap();
    let history = server
        .get(
            &server.admin,
            &format!("/api/v1/rollouts/{id}/executions/{execution}/history"),
        )
        .await;
    let last = history.body["items"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        (last["to"].clone(), last["failure"].clone()),
        (json!("failed"), json!("health-check"))
    );
    let paused = server
        .wait_for_rollout(&id, |r| r["state"] == "paused")
        .await;
    assert_eq!(
        paused["pause_reason"],
        "1 of 2 devices failed, more than the 10% allowed"
    );
    let found = events(&server, "rollout.paused").await;
    assert_eq!(found.len(), 1, "a security event");
    assert!(
        found[0]["detail"]
            .as_str()
            .unwrap()
            .contains("1 of 2 devices failed")
    );
    // Paused: dev-b's released execution is not offered.
    assert_eq!(director(&server, &b).await, None);
    // Operators resume (it pauses again: the failure still counts) and pause.
    let resumed = server
        .post(
            &server.admin,
            &format!("/api/v1/rollouts/{id}/resume"),
            json!({}),
        )
        .await;
    assert_eq!(resumed.body["state"], "running", "{:?}", resumed.body);
    server
        .wait_for_rollout(&id, |r| r["state"] == "paused")
        .await;
    let twice = server
        .post(
            &server.admin,
            &format!("/api/v1/rollouts/{id}/pause"),
            json!({}),
        )
        .await;
    assert_eq!(twice.status, StatusCode::CONFLICT);
    server.stop().await;
}

#[tokio::test]
async fn executions_time_out_and_are_retried_as_new_attempts() {
    let server = TestServer::start().await;
    standard_releases(&server).await;
    let a = device(&server, "dev-a", &[]).await;
    let created = create(
        &server,
        json!({"release": "1.4.0", "target": "id = dev-a", "timeout": "1s", "retries": 1, "max_failures": "100%"}),
    )
    .await;
    let id = created.body["rollout"]["id"].as_str().unwrap().to_owned();
    server
        .wait_for_rollout(&id, |r| r["totals"]["released"] == 1)
        .await;
    let (_, first) = director(&server, &a).await.unwrap();
    // No report within a second: timed out, then queued again as attempt 2.
    let mut second = None;
    for _ in 0..200 {
        if let Some((_, custom)) = director(&server, &a).await
            && custom["execution_id"] != first["execution_id"]
        {
            second = Some(custom);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let second = second.expect("a second attempt is offered");
    assert!(second["execution_id"].as_str().unwrap().ends_with("-2"));
    // The first attempt's id is no longer the device's.
    let (status, _) = report(
        &server,
        &a,
        first["execution_id"].as_str().unwrap(),
        json!({"step": "downloading"}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let execution = second["execution_id"].as_str().unwrap();
    let history = server
        .get(
            &server.admin,
            &format!("/api/v1/rollouts/{id}/executions/{execution}/history"),
        )
        .await;
    let steps: Vec<(u64, &str)> = history.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["attempt"].as_u64().unwrap(), t["to"].as_str().unwrap()))
        .collect();
    assert_eq!(
        steps,
        [
            (1, "queued"),
            (1, "offered"),
            (1, "timed-out"),
            (2, "queued"),
            (2, "offered")
        ]
    );
    server.stop().await;
}

#[tokio::test]
async fn abort_cancels_queued_devices_and_rollback_names_the_older_image() {
    let server = TestServer::start().await;
    standard_releases(&server).await;
    let done = device(&server, "dev-done", &[]).await;
    let busy = device(&server, "dev-busy", &[]).await;
    let idle = device(&server, "dev-idle", &[]).await;
    let created = create(
        &server,
        json!({"release": "1.4.0", "target": "id in (dev-done, dev-busy, dev-idle)", "soak": "0"}),
    )
    .await;
    let id = created.body["rollout"]["id"].as_str().unwrap().to_owned();
    server
        .wait_for_rollout(&id, |r| r["totals"]["released"] == 3)
        .await;
    install(&server, &done, true).await.unwrap();
    let (_, custom) = director(&server, &busy).await.unwrap();
    let busy_execution = custom["execution_id"].as_str().unwrap().to_owned();
    for step in ["downloading", "installing"] {
        assert_eq!(
            report(&server, &busy, &busy_execution, json!({"step": step}))
                .await
                .0,
            StatusCode::OK
        );
    }
    let aborted = server
        .post(
            &server.admin,
            &format!("/api/v1/rollouts/{id}/abort"),
            json!({"rollback": true}),
        )
        .await;
    assert_eq!(aborted.status, StatusCode::OK, "{:?}", aborted.body);
    assert_eq!(aborted.body["rollout"]["state"], "aborted");
    assert_eq!(
        aborted.body["cancelled"], 1,
        "dev-idle's offer; dev-busy keeps installing"
    );
    let rollback = aborted.body["rollback"].clone();
    assert_eq!(rollback["release"], "1.3.0");
    assert_eq!(rollback["rollback_of"], id.as_str());
    // The device that got 1.4.0 gets director metadata naming 1.3.0.
    let rollback_id = rollback["id"].as_str().unwrap();
    server
        .wait_for_rollout(rollback_id, |r| r["totals"]["released"] == 1)
        .await;
    let (name, custom) = director(&server, &done).await.unwrap();
    assert_eq!(name, "rev2/1.3.0/fw.img");
    assert_eq!(custom["rollout_id"], rollback_id);
    assert_eq!(
        director(&server, &idle).await,
        None,
        "cancelled, not rolled back: it never changed"
    );
    // The install in progress finishes; told to proceed, it then rolls back too.
    let (status, ack) = report(
        &server,
        &busy,
        &busy_execution,
        json!({"step": "rebooting"}),
    )
    .await;
    assert_eq!(
        (status, ack["proceed"].clone()),
        (StatusCode::OK, json!(true))
    );
    let (status, _) = report(
        &server,
        &busy,
        &busy_execution,
        json!({"step": "succeeded", "running_version": "1.4.0", "health_check_passed": true}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    server
        .wait_for_rollout(rollback_id, |r| {
            r["totals"]["total"] == 2 && r["totals"]["released"] == 1
        })
        .await;
    assert!(install(&server, &busy, true).await.is_some());
    let stored = server.get(&server.admin, "/api/v1/devices/dev-busy").await;
    assert_eq!(stored.body["version"], "1.3.0");
    // Aborting again, or rolling back where anti-rollback forbids it, is refused.
    let again = server
        .post(
            &server.admin,
            &format!("/api/v1/rollouts/{id}/abort"),
            json!({}),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    let refused = server
        .post(
            &server.admin,
            &format!("/api/v1/rollouts/{rollback_id}/abort"),
            json!({"rollback": true}),
        )
        .await;
    assert_eq!(
        (refused.status, refused.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "rollback_refused")
    );
    server.stop().await;
}

#[tokio::test]
async fn quarantined_devices_and_other_hardware_are_never_offered() {
    let server = TestServer::start().await;
    standard_releases(&server).await;
    let healthy = device(&server, "dev-ok", &[("ring", "late")]).await;
    let suspect = device(&server, "dev-q", &[("ring", "late")]).await;
    let quarantined = server
        .post(
            &server.admin,
            "/api/v1/devices/dev-q/quarantine",
            json!({"reason": "clone suspected"}),
        )
        .await;
    assert_eq!(quarantined.status, StatusCode::OK, "{:?}", quarantined.body);
    let created = create(
        &server,
        json!({"release": "1.4.0", "target": "ring = late and hw = rev2", "continuous": true}),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    assert_eq!(
        created.body["queued"], 1,
        "the quarantined device is not queued"
    );
    let id = created.body["rollout"]["id"].as_str().unwrap().to_owned();
    // Other hardware matching the query later: never queued.
    server
        .register("dev-rev3", "rev3", Some("1.0.0"), &[("ring", "late")])
        .await;
    let rev3 = server.enroll_device("dev-rev3", "rev3").await;
    server
        .wait_for_rollout(&id, |r| r["totals"]["released"] == 1)
        .await;
    assert!(director(&server, &healthy).await.is_some());
    assert_eq!(director(&server, &suspect).await, None);
    assert_eq!(director(&server, &rev3).await, None);
    let listed = server
        .get(&server.admin, &format!("/api/v1/rollouts/{id}/executions"))
        .await;
    let ids: Vec<&str> = listed.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["device_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["dev-ok"]);
    server.stop().await;
}

#[tokio::test]
async fn impossible_transitions_are_refused_and_recorded() {
    let server = TestServer::start().await;
    standard_releases(&server).await;
    let a = device(&server, "dev-a", &[]).await;
    let b = device(&server, "dev-b", &[]).await;
    let id = server.offer_release("1.4.0", "id = dev-a").await;
    let (_, custom) = director(&server, &a).await.unwrap();
    let execution = custom["execution_id"].as_str().unwrap().to_owned();
    let check = |body: Value, expected: StatusCode, code: &'static str| {
        let (server, a) = (&server, &a);
        let execution = execution.clone();
        async move {
            let (status, answer) = report(server, a, &execution, body.clone()).await;
            assert_eq!(status, expected, "{body}: {answer}");
            if !code.is_empty() {
                assert_eq!(answer["error"]["code"], code, "{body}");
            }
            answer
        }
    };
    check(
        json!({"step": "succeeded", "running_version": "1.4.0", "health_check_passed": true}),
        StatusCode::CONFLICT,
        "impossible_transition",
    )
    .await;
    check(
        json!({"step": "rolled-back", "reason": "x"}),
        StatusCode::CONFLICT,
        "impossible_transition",
    )
    .await;
    check(json!({"step": "installing"}), StatusCode::OK, "").await;
    let again = check(json!({"step": "installing"}), StatusCode::OK, "").await;
    assert_eq!(
        (again["state"].clone(), again["proceed"].clone()),
        (json!("installing"), json!(true)),
        "idempotent"
    );
    check(
        json!({"step": "downloading"}),
        StatusCode::CONFLICT,
        "impossible_transition",
    )
    .await;
    check(json!({"step": "rebooting"}), StatusCode::OK, "").await;
    check(
        json!({"step": "succeeded", "running_version": "1.3.9", "health_check_passed": true}),
        StatusCode::CONFLICT,
        "impossible_transition",
    )
    .await;
    // Bad fields: 422, nothing changes.
    check(
        json!({"step": "succeeded"}),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_report",
    )
    .await;
    check(
        json!({"step": "failed", "reason": "x".repeat(2000)}),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_report",
    )
    .await;
    check(
        json!({"step": "teleported"}),
        StatusCode::UNPROCESSABLE_ENTITY,
        "",
    )
    .await;
    // Another device cannot report on dev-a's execution; nor on made-up ones.
    let (status, _) = report(&server, &b, &execution, json!({"step": "downloading"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = report(&server, &b, "ex-999-1", json!({"step": "downloading"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = report(&server, &b, "not-an-id", json!({"step": "downloading"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let found = events(&server, "rollout.impossible_transition").await;
    assert_eq!(
        found.len(),
        7,
        "every refusal is a security event: {found:#?}"
    );
    assert_eq!(found[0]["device"], "dev-a");
    // The execution is where the accepted reports left it.
    let listed = server
        .get(
            &server.admin,
            &format!("/api/v1/rollouts/{id}/executions?device=dev-a"),
        )
        .await;
    assert_eq!(listed.body["items"][0]["state"], "rebooting");
    server.stop().await;
}

#[tokio::test]
async fn a_continuous_rollout_reaches_a_late_enrolled_device() {
    let server = TestServer::start().await;
    standard_releases(&server).await;
    let created = create(
        &server,
        json!({"release": "1.4.0", "target": "ring = late", "continuous": true, "soak": "0"}),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    assert_eq!(created.body["queued"], 0);
    let id = created.body["rollout"]["id"].as_str().unwrap().to_owned();
    let late = device(&server, "dev-late", &[("ring", "late")]).await;
    server
        .wait_for_rollout(&id, |r| r["totals"]["released"] == 1)
        .await;
    install(&server, &late, true).await.unwrap();
    let status = server
        .wait_for_rollout(&id, |r| r["totals"]["succeeded"] == 1)
        .await;
    assert_eq!(
        status["state"], "running",
        "continuous rollouts keep watching"
    );
    // A second rollout matching the same device gets it only after this one
    // is done with it (the first rollout to queue a device keeps it).
    server.stop().await;
}

#[tokio::test]
async fn bad_settings_are_refused_and_nothing_is_stored() {
    let server = TestServer::start().await;
    standard_releases(&server).await;
    device(&server, "dev-a", &[("ring", "a")]).await;
    server
        .register("dev-rev3", "rev3", Some("1.0.0"), &[("ring", "a")])
        .await;
    let audit_before = server.audit_len().await;
    let base = json!({"release": "1.4.0", "target": "id = dev-a"});
    let with = |edit: Value| {
        let mut body = base.clone();
        for (k, v) in edit.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let table = [
        (with(json!({"target": "id = "})), "invalid_query"),
        (with(json!({"target": "(((("})), "invalid_query"),
        (with(json!({"phases": "10%,5%,100%"})), "invalid_setting"),
        (with(json!({"phases": "10%,50%"})), "invalid_setting"),
        (with(json!({"phases": "abc"})), "invalid_setting"),
        (
            with(json!({"success_threshold": "101%"})),
            "invalid_setting",
        ),
        (with(json!({"success_threshold": "0%"})), "invalid_setting"),
        (with(json!({"max_failures": "-1%"})), "invalid_setting"),
        (
            with(json!({"window": "Mon-Fri 05:00-05:00 UTC"})),
            "invalid_setting",
        ),
        (
            with(json!({"window": "Someday 02:00-05:00"})),
            "invalid_setting",
        ),
        (with(json!({"rate": "0/min"})), "invalid_setting"),
        (with(json!({"soak": "forever"})), "invalid_setting"),
        (with(json!({"timeout": "0"})), "invalid_setting"),
        (with(json!({"retries": 11})), "invalid_setting"),
        (with(json!({"release": "9.9.9"})), "unknown_release"),
        (with(json!({"release": "1.5.0"})), "release_not_published"),
        (with(json!({"release": "1.6.0"})), "release_revoked"),
        (with(json!({"target": "ring = a"})), "hardware_mismatch"),
        (
            with(json!({"release": "2.0.0", "target": "id = dev-a"})),
            "hardware_mismatch",
        ),
        (with(json!({"target": "id = nobody"})), "empty_target"),
        (with(json!({"release": "1.3.0"})), "empty_target"),
        (with(json!({"surprise": true})), "invalid_body"),
    ];
    for (body, code) in table {
        let answer = create(&server, body.clone()).await;
        assert_eq!(
            (answer.status, answer.code()),
            (StatusCode::UNPROCESSABLE_ENTITY, code),
            "{body}: {:?}",
            answer.body
        );
        assert!(!answer.body["error"]["message"].as_str().unwrap().is_empty());
    }
    assert!(
        server.get(&server.admin, "/api/v1/rollouts").await.body["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(server.audit_len().await, audit_before, "nothing stored");
    // Unknown rollouts and executions.
    for path in [
        "/api/v1/rollouts/ro-nope",
        "/api/v1/rollouts/ro-nope/executions",
        "/api/v1/rollouts/ro-nope/executions/ex-1-1/history",
    ] {
        assert_eq!(
            server.get(&server.admin, path).await.status,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    let answer = server
        .call(
            Some(&server.admin),
            Method::POST,
            "/api/v1/rollouts/ro-nope/abort",
            Some(json!({})),
        )
        .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    server.stop().await;
}

#[tokio::test]
async fn a_device_matched_by_two_rollouts_belongs_to_the_first_until_it_finishes() {
    let server = TestServer::start().await;
    standard_releases(&server).await;
    plant_releases(&server, &[("1.7.0", "rev2", ReleaseState::Published)]).await;
    let x = device(&server, "dev-x", &[]).await;
    let first = create(&server, json!({"release": "1.4.0", "target": "id = dev-x"})).await;
    assert_eq!(first.body["queued"], 1, "{:?}", first.body);
    let first_id = first.body["rollout"]["id"].as_str().unwrap().to_owned();
    // A once-rollout finding only busy devices is empty: refused.
    let refused = create(&server, json!({"release": "1.7.0", "target": "id = dev-x"})).await;
    assert_eq!(refused.code(), "empty_target", "{:?}", refused.body);
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("another")
    );
    let second = create(
        &server,
        json!({"release": "1.7.0", "target": "id = dev-x", "continuous": true}),
    )
    .await;
    assert_eq!(
        (second.body["queued"].clone(), second.body["busy"].clone()),
        (json!(0), json!(1))
    );
    let second_id = second.body["rollout"]["id"].as_str().unwrap().to_owned();
    server
        .wait_for_rollout(&first_id, |r| r["totals"]["released"] == 1)
        .await;
    let (name, custom) = director(&server, &x).await.unwrap();
    assert_eq!(
        (name.as_str(), custom["rollout_id"].as_str()),
        ("rev2/1.4.0/fw.img", Some(first_id.as_str()))
    );
    install(&server, &x, true).await.unwrap();
    // Finished there: the continuous rollout takes it next.
    server
        .wait_for_rollout(&second_id, |r| r["totals"]["released"] == 1)
        .await;
    let (name, custom) = director(&server, &x).await.unwrap();
    assert_eq!(
        (name.as_str(), custom["rollout_id"].as_str()),
        ("rev2/1.7.0/fw.img", Some(second_id.as_str()))
    );
    server.stop().await;
}
