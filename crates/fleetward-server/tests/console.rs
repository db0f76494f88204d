//! The web console against a real server: sessions from operator tokens,
//! roles exactly as in the API, CSRF on every form, escaping, headers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use fleetward_core::Role;
use reqwest::StatusCode;
use support::TestServer;
use support::console::{csrf_of, get, post_form, sign_in};

#[tokio::test]
async fn signing_in_needs_a_valid_token_and_pages_need_a_session() {
    let server = TestServer::start().await;
    let anonymous = get(&server, None, "/console/devices").await;
    assert_eq!(anonymous.status, StatusCode::SEE_OTHER);
    assert_eq!(anonymous.headers["location"], "/console/login");

    for bad in [
        "",
        "not-a-token",
        "fwt_0123456789abcdef0123456789abcdef_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    ] {
        let answer = post_form(&server, None, "/console/login", &[("token", bad)]).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{bad:?}");
        assert!(!answer.headers.contains_key("set-cookie"), "{bad:?}");
    }
    let forged = get(
        &server,
        Some("fleetward_session=fwt_0000000000000000_garbage"),
        "/console/",
    )
    .await;
    assert_eq!(forged.status, StatusCode::SEE_OTHER);

    let cookie = sign_in(&server, &server.admin).await;
    for path in [
        "/console/",
        "/console/devices",
        "/console/releases",
        "/console/events",
        "/console/events?verify=1",
        "/console/audit",
        "/console/?fragment=main",
    ] {
        let page = get(&server, Some(&cookie), path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.body);
        let csp = page.headers["content-security-policy"].to_str().unwrap();
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert_eq!(page.headers["x-content-type-options"], "nosniff");
        assert!(
            !page.body.contains("<script>") && !page.body.contains(" style="),
            "no inline script or style on {path}"
        );
    }
    let verified = get(&server, Some(&cookie), "/console/events?verify=1").await;
    assert!(verified.body.contains("Chain intact"), "{}", verified.body);
    let fragment = get(&server, Some(&cookie), "/console/?fragment=main").await;
    assert!(fragment.body.starts_with("<main"), "{}", fragment.body);
    server.stop().await;
}

#[tokio::test]
async fn a_revoked_or_expired_token_ends_the_session_at_once() {
    let server = TestServer::start().await;
    let token = server.token_for(Role::Operator).await;
    let cookie = sign_in(&server, &token).await;
    assert_eq!(
        get(&server, Some(&cookie), "/console/").await.status,
        StatusCode::OK
    );
    let id = token
        .strip_prefix("fwt_")
        .unwrap()
        .split('_')
        .next()
        .unwrap();
    let revoked = server
        .call(
            Some(&server.admin),
            reqwest::Method::DELETE,
            &format!("/api/v1/tokens/{id}"),
            None,
        )
        .await;
    assert!(revoked.status.is_success(), "{:?}", revoked.body);
    let after = get(&server, Some(&cookie), "/console/").await;
    assert_eq!(after.status, StatusCode::SEE_OTHER);
    assert_eq!(
        after.headers["location"],
        "/console/login?reason=token_revoked"
    );
    assert!(
        after.headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0"),
        "the cookie is cleared"
    );
    server.stop().await;
}

#[tokio::test]
async fn device_search_uses_the_query_language_and_escapes_everything() {
    let server = TestServer::start().await;
    server
        .register("eu-1", "rev2", Some("1.0.0"), &[("region", "eu")])
        .await;
    server
        .register("us-1", "rev2", Some("1.0.0"), &[("region", "us")])
        .await;
    // Tags cannot hold markup (the registry refuses it); free text can, so
    // an operator's quarantine reason carries the payload into the pages.
    server.register("evil-1", "rev1", Some("0.9.0"), &[]).await;
    let quarantined = server
        .post(
            &server.admin,
            "/api/v1/devices/evil-1/quarantine",
            serde_json::json!({ "reason": "<script>alert(1)</script>" }),
        )
        .await;
    assert_eq!(quarantined.status, StatusCode::OK, "{:?}", quarantined.body);
    let cookie = sign_in(&server, &server.admin).await;

    let found = get(
        &server,
        Some(&cookie),
        "/console/devices?q=region%20%3D%20eu",
    )
    .await;
    assert_eq!(found.status, StatusCode::OK);
    assert!(found.body.contains("eu-1") && !found.body.contains("us-1"));
    assert!(found.body.contains("1 devices match"), "{}", found.body);

    let bad = get(&server, Some(&cookie), "/console/devices?q=region%20%3D%3D").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("does not parse"), "{}", bad.body);

    for path in [
        "/console/devices/evil-1",
        "/console/events",
        "/console/audit",
    ] {
        let page = get(&server, Some(&cookie), path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        assert!(
            !page.body.contains("<script>alert"),
            "{path}: {}",
            page.body
        );
    }
    let events = server
        .get(&server.admin, "/api/v1/events?kind=device.quarantined")
        .await;
    let seq = events.body["items"][0]["seq"].as_u64().unwrap();
    // The filter form as a browser sends it: the fields left at "any" empty.
    let filtered = get(
        &server,
        Some(&cookie),
        "/console/events?kind=device.quarantined&min_severity=&device=",
    )
    .await;
    assert_eq!(filtered.status, StatusCode::OK, "{}", filtered.body);
    assert!(
        filtered.body.contains(&format!("/console/events/{seq}")),
        "{}",
        filtered.body
    );
    let detail = get(&server, Some(&cookie), &format!("/console/events/{seq}")).await;
    assert_eq!(detail.status, StatusCode::OK);
    assert!(!detail.body.contains("<script>alert"), "{}", detail.body);
    assert!(
        detail
            .body
            .contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{}",
        detail.body
    );
    let reflected = get(
        &server,
        Some(&cookie),
        "/console/devices?q=%22%3Cimg%20src%3Dx%3E%22",
    )
    .await;
    assert!(
        !reflected.body.contains("<img src=x>"),
        "{}",
        reflected.body
    );
    server.stop().await;
}

#[tokio::test]
async fn roles_decide_what_is_shown_and_what_is_done() {
    let server = TestServer::start().await;
    server.register("d-1", "rev2", Some("1.0.0"), &[]).await;

    let viewer = sign_in(&server, &server.token_for(Role::Viewer).await).await;
    let page = get(&server, Some(&viewer), "/console/devices/d-1").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.body.contains("Quarantine this device"));
    assert!(
        !page.body.contains("/console/audit"),
        "no audit link for viewers"
    );
    assert_eq!(
        get(&server, Some(&viewer), "/console/audit").await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        get(&server, Some(&viewer), "/console/events").await.status,
        StatusCode::FORBIDDEN
    );
    // A viewer forging the form (with its own valid CSRF token) is refused.
    let viewer_csrf = csrf_of(&page.body);
    let refused = post_form(
        &server,
        Some(&viewer),
        "/console/devices/d-1/quarantine",
        &[("csrf", &viewer_csrf), ("reason", "x")],
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);

    let operator = sign_in(&server, &server.token_for(Role::Operator).await).await;
    let page = get(&server, Some(&operator), "/console/devices/d-1").await;
    assert!(page.body.contains("Quarantine this device"));
    let csrf = csrf_of(&page.body);
    let audit_before = server.audit_len().await;
    for (form, why) in [
        (vec![("reason", "looks cloned")], "no CSRF token"),
        (
            vec![("csrf", viewer_csrf.as_str()), ("reason", "looks cloned")],
            "another session's token",
        ),
        (
            vec![
                ("csrf", "0".repeat(64).as_str()),
                ("reason", "looks cloned"),
            ],
            "a forged token",
        ),
    ] {
        let answer = post_form(
            &server,
            Some(&operator),
            "/console/devices/d-1/quarantine",
            &form,
        )
        .await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{why}");
    }
    let empty_reason = post_form(
        &server,
        Some(&operator),
        "/console/devices/d-1/quarantine",
        &[("csrf", &csrf), ("reason", "  ")],
    )
    .await;
    assert_eq!(empty_reason.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(server.audit_len().await, audit_before, "nothing changed");
    let status = server.get(&server.admin, "/api/v1/devices/d-1").await;
    assert_eq!(status.body["status"], "active");

    let done = post_form(
        &server,
        Some(&operator),
        "/console/devices/d-1/quarantine",
        &[
            ("csrf", &csrf),
            ("reason", "looks cloned"),
            ("certificate", "keep"),
        ],
    )
    .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let status = server.get(&server.admin, "/api/v1/devices/d-1").await;
    assert_eq!(status.body["status"], "quarantined");
    let timeline = get(&server, Some(&operator), "/console/devices/d-1").await;
    assert!(
        timeline.body.contains("device.quarantined"),
        "{}",
        timeline.body
    );
    server.stop().await;
}

#[tokio::test]
async fn signing_out_needs_the_form_token() {
    let server = TestServer::start().await;
    let cookie = sign_in(&server, &server.admin).await;
    let forged = post_form(&server, Some(&cookie), "/console/logout", &[]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let page = get(&server, Some(&cookie), "/console/").await;
    let out = post_form(
        &server,
        Some(&cookie),
        "/console/logout",
        &[("csrf", &csrf_of(&page.body))],
    )
    .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(
        out.headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    // The JSON API still answers with the same token: signing out ends the
    // browser session, it does not revoke the token.
    let api = server.get(&server.admin, "/api/v1/devices/count").await;
    assert_eq!(api.status, StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn rollouts_show_their_phases_and_operators_pause_and_resume_them() {
    let server = TestServer::start_with(|config| {
        config.rollout_tick = std::time::Duration::from_millis(50);
    })
    .await;
    support::plant_releases(
        &server,
        &[("1.4.0", "rev2", fleetward_core::ReleaseState::Published)],
    )
    .await;
    for n in 0..4 {
        server
            .register(
                &format!("r-{n}"),
                "rev2",
                Some("1.3.0"),
                &[("ring", "beta")],
            )
            .await;
    }
    let created = server
        .post(
            &server.admin,
            "/api/v1/rollouts",
            serde_json::json!({ "release": "1.4.0", "target": r#"ring = "beta""#, "phases": "50%,100%" }),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let id = created.body["rollout"]["id"].as_str().unwrap().to_owned();

    let viewer = sign_in(&server, &server.token_for(Role::Viewer).await).await;
    let list = get(&server, Some(&viewer), "/console/rollouts").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.body.contains(&id), "{}", list.body);
    let page = get(&server, Some(&viewer), &format!("/console/rollouts/{id}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("<progress"), "phases as progress bars");
    assert!(page.body.contains("data-refresh"), "the page stays live");
    assert!(!page.body.contains(">Pause<"), "a viewer gets no buttons");
    let refused = post_form(
        &server,
        Some(&viewer),
        &format!("/console/rollouts/{id}/pause"),
        &[("csrf", &csrf_of(&page.body))],
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);

    let operator = sign_in(&server, &server.token_for(Role::Operator).await).await;
    let page = get(&server, Some(&operator), &format!("/console/rollouts/{id}")).await;
    assert!(page.body.contains(">Pause<"), "{}", page.body);
    let csrf = csrf_of(&page.body);
    let forged = post_form(
        &server,
        Some(&operator),
        &format!("/console/rollouts/{id}/pause"),
        &[("csrf", "0")],
    )
    .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let state = server
        .get(&server.admin, &format!("/api/v1/rollouts/{id}"))
        .await;
    assert_eq!(state.body["state"], "running");

    let paused = post_form(
        &server,
        Some(&operator),
        &format!("/console/rollouts/{id}/pause"),
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(paused.status, StatusCode::SEE_OTHER, "{}", paused.body);
    let state = server
        .get(&server.admin, &format!("/api/v1/rollouts/{id}"))
        .await;
    assert_eq!(state.body["state"], "paused");
    let page = get(&server, Some(&operator), &format!("/console/rollouts/{id}")).await;
    assert!(page.body.contains(">Resume<") && page.body.contains("Paused: "));
    let resumed = post_form(
        &server,
        Some(&operator),
        &format!("/console/rollouts/{id}/resume"),
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(resumed.status, StatusCode::SEE_OTHER);
    let state = server
        .get(&server.admin, &format!("/api/v1/rollouts/{id}"))
        .await;
    assert_eq!(state.body["state"], "running");
    server.stop().await;
}

#[tokio::test]
async fn rollouts_start_from_a_form_and_bad_input_starts_nothing() {
    let server = TestServer::start().await;
    support::plant_releases(
        &server,
        &[
            ("2.0.0", "rev2", fleetward_core::ReleaseState::Published),
            ("2.1.0", "rev2", fleetward_core::ReleaseState::Signed),
        ],
    )
    .await;
    for n in 0..4 {
        server
            .register(
                &format!("s-{n}"),
                "rev2",
                Some("1.0.0"),
                &[("ring", "beta")],
            )
            .await;
    }
    server
        .register("other-hw", "rev1", Some("1.0.0"), &[("ring", "beta")])
        .await;

    // A viewer sees no way to start one, and is refused when posting anyway.
    let viewer = sign_in(&server, &server.token_for(Role::Viewer).await).await;
    let list = get(&server, Some(&viewer), "/console/rollouts").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(!list.body.contains("Start a rollout"), "{}", list.body);
    let releases = get(&server, Some(&viewer), "/console/releases").await;
    assert!(!releases.body.contains("/console/rollouts/new"));
    assert_eq!(
        get(&server, Some(&viewer), "/console/rollouts/new")
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let viewer_csrf = csrf_of(&list.body);
    let good = |csrf: &str| {
        vec![
            ("csrf".to_owned(), csrf.to_owned()),
            ("release".to_owned(), "2.0.0".to_owned()),
            (
                "target".to_owned(),
                r#"ring = "beta" and hw = "rev2""#.to_owned(),
            ),
            ("phases".to_owned(), "50%,100%".to_owned()),
            ("soak".to_owned(), "1h".to_owned()),
            ("success_threshold".to_owned(), "90%".to_owned()),
            ("max_failures".to_owned(), "25%".to_owned()),
            ("timeout".to_owned(), "2h".to_owned()),
            ("retries".to_owned(), "1".to_owned()),
        ]
    };
    let post = |cookie: String, form: Vec<(String, String)>| {
        let server = &server;
        async move {
            let pairs: Vec<(&str, &str)> =
                form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            post_form(server, Some(&cookie), "/console/rollouts", &pairs).await
        }
    };
    let refused = post(viewer.clone(), good(&viewer_csrf)).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);

    // An operator gets the form, with the published release only.
    let operator = sign_in(&server, &server.token_for(Role::Operator).await).await;
    let list = get(&server, Some(&operator), "/console/rollouts").await;
    assert!(list.body.contains("Start a rollout"), "{}", list.body);
    let releases = get(&server, Some(&operator), "/console/releases").await;
    assert!(
        releases
            .body
            .contains("/console/rollouts/new?release=2.0.0"),
        "{}",
        releases.body
    );
    let form = get(
        &server,
        Some(&operator),
        "/console/rollouts/new?release=2.0.0",
    )
    .await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.body);
    assert!(
        form.body.contains(r#"<option value="2.0.0" selected>"#),
        "{}",
        form.body
    );
    assert!(
        !form.body.contains(r#"value="2.1.0""#),
        "a signed release is not offered"
    );
    let csrf = csrf_of(&form.body);
    let audit_before = server.audit_len().await;

    // Forged, missing or another session's form tokens: refused.
    let mut missing = good(&csrf);
    missing.remove(0);
    for (form, why) in [
        (missing, "no CSRF token"),
        (good(&"0".repeat(64)), "a forged token"),
        (good(&viewer_csrf), "another session's token"),
    ] {
        let answer = post(operator.clone(), form).await;
        assert_eq!(
            answer.status,
            StatusCode::FORBIDDEN,
            "{why}: {}",
            answer.body
        );
    }

    // Bad settings: the form again, the reason shown, the values kept
    // (escaped), nothing stored.
    let with = |field: &str, value: &str| {
        let mut form = good(&csrf);
        match form.iter_mut().find(|(k, _)| k == field) {
            Some(pair) => pair.1 = value.to_owned(),
            None => form.push((field.to_owned(), value.to_owned())),
        }
        form
    };
    for (form, expected) in [
        (with("target", "ring = "), "invalid target"),
        (
            with("target", r#"ring = "<script>alert(1)</script>""#),
            "invalid target",
        ),
        (with("target", r#"ring = "nobody""#), "target set is empty"),
        (with("target", "  "), "target query is required"),
        (with("target", "ring = \"beta\""), "not rev2 hardware"),
        (with("release", "9.9.9"), "there is no release"),
        (with("release", "2.1.0"), "only a published release"),
        (with("release", ""), "choose a published release"),
        (with("phases", "50%,10%"), "must grow"),
        (with("success_threshold", "190%"), "success-threshold"),
        (with("soak", "soon"), "soak"),
        (with("retries", "many"), "retries must be a whole number"),
        (with("retries", "99"), "at most 10"),
    ] {
        let answer = post(operator.clone(), form.clone()).await;
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{form:?}: {}",
            answer.body
        );
        assert!(answer.body.contains("Not started: "), "{}", answer.body);
        assert!(
            answer
                .body
                .to_lowercase()
                .contains(&expected.to_lowercase()),
            "{expected:?} in {}",
            answer.body
        );
        assert!(!answer.body.contains("<script>alert"), "{}", answer.body);
        assert!(
            answer.body.contains(r#"name="csrf""#),
            "the form is shown again"
        );
    }
    assert_eq!(rollout_count(&server).await, 0, "nothing was started");
    assert_eq!(server.audit_len().await, audit_before, "nothing changed");

    // The good form starts it and lands on its page.
    let started = post(operator.clone(), good(&csrf)).await;
    assert_eq!(started.status, StatusCode::SEE_OTHER, "{}", started.body);
    let location = started.headers["location"].to_str().unwrap().to_owned();
    let id = location
        .strip_prefix("/console/rollouts/")
        .unwrap()
        .to_owned();
    let rollout = server
        .get(&server.admin, &format!("/api/v1/rollouts/{id}"))
        .await;
    assert_eq!(rollout.status, StatusCode::OK, "{:?}", rollout.body);
    assert_eq!(rollout.body["release"], "2.0.0");
    assert_eq!(rollout.body["settings"]["phases"], "50%,100%");
    assert_eq!(rollout.body["settings"]["retries"], 1);
    assert_eq!(rollout.body["totals"]["total"], 4);
    assert_eq!(rollout_count(&server).await, 1);
    let page = get(&server, Some(&operator), &location).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains(">Pause<"), "{}", page.body);
    server.stop().await;
}

async fn rollout_count(server: &TestServer) -> usize {
    let list = server.get(&server.admin, "/api/v1/rollouts").await;
    list.body["items"].as_array().unwrap().len()
}
