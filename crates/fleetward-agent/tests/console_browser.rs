//! The web console in a real browser (Debian's Chromium, driven by
//! playwright-core from `tools/console-browser/e2e.mjs`) against a real
//! server with a simulated fleet: real agents enrolled over mutual TLS that
//! poll, verify and install what a rollout started *in the browser* offers.
//!
//! HTTP-level console tests (crates/fleetward-server/tests/console.rs) prove
//! the rules; this one proves a person can use them: sign in with the
//! keyboard, search with a query, start a rollout from the form, watch it
//! progress without reloading, pause it, open a security event, and read
//! the pages on a phone.
//!
//! It needs Node, Chromium and `npm ci` in tools/console-browser. Without
//! them it says plainly that it skipped; with `FLEETWARD_REQUIRE_BROWSER=1`
//! (set by .ci/run) a missing piece fails it instead.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use support::{Server, image};

/// What the browser test needs outside Rust, or why it cannot run.
struct Browser {
    node: PathBuf,
    chromium: PathBuf,
    scripts: PathBuf,
}

fn find_browser() -> Result<Browser, String> {
    let scripts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tools/console-browser");
    let node = PathBuf::from(std::env::var("FLEETWARD_NODE").unwrap_or_else(|_| "node".into()));
    let node_ok = std::process::Command::new(&node)
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success());
    if !node_ok {
        return Err(format!("no Node.js ({} --version failed)", node.display()));
    }
    let chromium = match std::env::var("FLEETWARD_CHROMIUM") {
        Ok(path) => PathBuf::from(path),
        Err(_) => ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .ok_or("no Chromium at /usr/bin/chromium (apt-get install chromium)")?,
    };
    if !scripts
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        return Err(format!(
            "playwright-core is not installed (npm ci --prefix {})",
            scripts.display()
        ));
    }
    Ok(Browser {
        node,
        chromium,
        scripts,
    })
}

/// A simulated agent fleet of `count` devices enrolled with a token that
/// tags them `region=REGION`.
async fn fleet(
    server: &Server,
    region: &str,
    count: usize,
    work: &std::path::Path,
) -> (
    fleetward_agent::sim::SimConfig,
    fleetward_agent::sim::SimFleet,
) {
    let (status, token) = server
        .post(
            "/api/v1/enroll-tokens",
            json!({"uses": count, "expires_in_secs": 3600, "tags": {"region": region}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{token:?}");
    let sim = fleetward_agent::sim::SimConfig {
        server: server.device_url(),
        ca_pem: server.ca_pem().await.into_bytes(),
        root_json: server.root_bytes.clone(),
        token: token["token"].as_str().unwrap().to_owned(),
        devices: count,
        id_prefix: format!("{region}-"),
        hardware: "sim".into(),
        initial_version: "1.0.0".into(),
        rounds: 0,
        concurrency: 8,
        fail_rate: 0.0,
        rollback_rate: 0.0,
        offline_rate: 0.0,
        fail_devices: Vec::new(),
        rollback_devices: Vec::new(),
        work_dir: work.join(region),
    };
    let fleet = fleetward_agent::sim::SimFleet::enrol(&sim).await.unwrap();
    (sim, fleet)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_uses_the_console_in_a_real_browser() {
    let browser = match find_browser() {
        Ok(browser) => browser,
        Err(missing) if std::env::var("FLEETWARD_REQUIRE_BROWSER").as_deref() == Ok("1") => {
            panic!("FLEETWARD_REQUIRE_BROWSER=1 but the browser test cannot run: {missing}")
        }
        Err(missing) => {
            // Written past the test harness's capture, so a developer
            // sees it without --nocapture.
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED the console browser test: {missing}"
            );
            return;
        }
    };
    let server = Server::start().await;
    server.publish("1.1.0", "sim", &image(64 * 1024, 11)).await;
    // Devices of other hardware, registered but not simulated.
    for n in 0..3 {
        server
            .register(&format!("lab-{n}"), "rev1", Some("0.9.0"))
            .await;
    }
    let work = tempfile::tempdir().unwrap();
    let mut fleets = Vec::new();
    for (region, count) in [("eu", 12), ("us", 4)] {
        fleets.push(fleet(&server, region, count, work.path()).await);
    }
    for (sim, fleet) in &mut fleets {
        fleet.round(sim).await;
    }
    // A security event for the browser to find.
    let (status, answer) = server
        .post(
            "/api/v1/devices/us-000001/quarantine",
            json!({"reason": "certificate seen from two addresses at once"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer:?}");
    let (status, viewer) = server
        .post(
            "/api/v1/tokens",
            json!({"name": "browser viewer", "role": "viewer"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{viewer:?}");

    // The fleet keeps polling while the browser works, as devices do; once
    // a second, so an update (offer, install, reboot, commit) takes a few
    // seconds and the browser sees it move. (The fleet stays on this task:
    // its agents are not `Send`; the browser runs on a blocking thread.)
    let artifacts = work.path().join("browser-artifacts");
    let started = Instant::now();
    let mut browser_run = tokio::task::spawn_blocking({
        let base = server.base.clone();
        let admin = server.admin.clone();
        let viewer = viewer["token"].as_str().unwrap().to_owned();
        let artifacts = artifacts.clone();
        move || {
            std::process::Command::new(&browser.node)
                .arg("e2e.mjs")
                .current_dir(&browser.scripts)
                .env("FLEETWARD_CONSOLE", base)
                .env("FLEETWARD_ADMIN_TOKEN", admin)
                .env("FLEETWARD_VIEWER_TOKEN", viewer)
                .env("FLEETWARD_CHROMIUM", &browser.chromium)
                .env("FLEETWARD_E2E_ARTIFACTS", artifacts)
                .output()
                .unwrap()
        }
    });
    let output = loop {
        for (sim, fleet) in &mut fleets {
            fleet.round(sim).await;
        }
        tokio::select! {
            done = &mut browser_run => break done.unwrap(),
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    };
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!(
        "{stdout}{stderr}browser steps took {:.1} s",
        took.as_secs_f64()
    );
    assert!(
        output.status.success(),
        "the browser test failed (screenshots of the failing page were in {})",
        artifacts.display()
    );

    // What the browser did, seen from the API: one rollout to the eu
    // devices, paused with its first phase done and the second untouched.
    // (Which devices make up the first half is a hash of the rollout id; a
    // phase of none is 1 in 4096 with 12 devices, and the script refuses it.)
    let rollouts = server.get("/api/v1/rollouts").await;
    let items = rollouts["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{rollouts:#}");
    let rollout = &items[0];
    assert_eq!(rollout["state"], "paused", "{rollout:#}");
    assert_eq!(rollout["target"], r#"region = "eu""#, "{rollout:#}");
    assert_eq!(rollout["settings"]["phases"], "50%,100%");
    assert_eq!(rollout["totals"]["total"], 12);
    let first = &rollout["phases"][0]["counts"];
    assert!(first["total"].as_u64().unwrap() > 0, "{rollout:#}");
    assert_eq!(first["succeeded"], first["total"], "{rollout:#}");
    assert_eq!(
        rollout["phases"][1]["counts"]["succeeded"], 0,
        "{rollout:#}"
    );
    server.stop().await;
}
