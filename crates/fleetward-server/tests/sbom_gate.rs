//! The SBOM release gate over a real server: a release carrying an SBOM is
//! scanned at publish against the advisory index and policy in the data
//! dir; a violation is a 422 naming the findings, nothing is published; a
//! missing index is said plainly; waivers in the policy let it through.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;

use fleetward_core::Role;
use fleetward_tuf::{
    Expiry, PublicKey, ROLE_ROOT, ROLE_SNAPSHOT, ROLE_TARGETS, ROLE_TIMESTAMP, Root, Signed,
    SigningKey, Targets,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use support::TestServer;
use support::console::{get, sign_in};
use time::{Duration, OffsetDateTime};

fn key(n: u8) -> SigningKey {
    SigningKey::from_seed(&[n; 32]).unwrap()
}

fn signed<T: fleetward_tuf::Role>(meta: T, keys: &[&SigningKey]) -> Vec<u8> {
    Signed::sign(meta, keys).unwrap().to_bytes().unwrap()
}

async fn raw_post(server: &TestServer, path: &str, body: Vec<u8>) -> support::Answer {
    server
        .raw(&server.admin, Method::POST, path, "application/json", body)
        .await
}

async fn upload(server: &TestServer, bytes: &[u8]) -> String {
    let response = server
        .http
        .post(format!("{}/api/v1/artifacts", server.base))
        .bearer_auth(&server.admin)
        .header("x-fleetward-sha256", hex::encode(Sha256::digest(bytes)))
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    let body: Value = response.json().await.unwrap();
    body["sha256"].as_str().unwrap().to_owned()
}

/// Root metadata with offline keys 1..=3 (root) and 4..=6 (targets).
async fn set_up_repository(server: &TestServer) {
    let keys = server.get(&server.admin, "/api/v1/tuf/online-keys").await;
    let online: (PublicKey, PublicKey) = (
        serde_json::from_value(keys.body["snapshot"].clone()).unwrap(),
        serde_json::from_value(keys.body["timestamp"].clone()).unwrap(),
    );
    let public = |r: std::ops::RangeInclusive<u8>| r.map(|n| key(n).public()).collect::<Vec<_>>();
    let root = Root::new(
        1,
        Expiry::at(OffsetDateTime::now_utc() + Duration::days(365)),
        &[
            (ROLE_ROOT, &public(1..=3), 2),
            (ROLE_TARGETS, &public(4..=6), 2),
            (ROLE_SNAPSHOT, std::slice::from_ref(&online.0), 1),
            (ROLE_TIMESTAMP, std::slice::from_ref(&online.1), 1),
        ],
    )
    .unwrap();
    let ok = raw_post(
        server,
        "/api/v1/tuf/root",
        signed(root, &[&key(1), &key(2)]),
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK, "{:?}", ok.body);
}

/// Creates and signs a release with an image and (optionally) an SBOM.
async fn signed_release(server: &TestServer, version: &str, sbom: Option<&[u8]>) {
    let image = upload(server, format!("firmware {version}").as_bytes()).await;
    let sbom = match sbom {
        Some(bytes) => Some(upload(server, bytes).await),
        None => None,
    };
    let created = server
        .post(
            &server.admin,
            "/api/v1/releases",
            json!({"version": version, "hardware": "rev2", "artifact_sha256": image,
                   "sbom_sha256": sbom, "file_name": "fw.img",
                   "notes": "<script>alert('notes')</script>"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let request = server
        .get(
            &server.admin,
            &format!("/api/v1/releases/{version}/signing-request"),
        )
        .await;
    let targets: Targets = serde_json::from_value(request.body["signed"].clone()).unwrap();
    let answer = raw_post(
        server,
        &format!("/api/v1/releases/{version}/signature"),
        signed(targets, &[&key(4), &key(5)]),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
}

async fn publish(server: &TestServer, version: &str) -> support::Answer {
    server
        .post(
            &server.admin,
            &format!("/api/v1/releases/{version}/publish"),
            json!({}),
        )
        .await
}

async fn state(server: &TestServer, version: &str) -> String {
    server
        .get(&server.admin, &format!("/api/v1/releases/{version}"))
        .await
        .body["state"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A console page's body, fetched as a signed-in browser would; it must be there.
async fn console_page(server: &TestServer, cookie: &str, path: &str) -> String {
    let page = get(server, Some(cookie), path).await;
    assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.body);
    page.body
}

async fn console_release(server: &TestServer, cookie: &str, version: &str) -> String {
    console_page(server, cookie, &format!("/console/releases/{version}")).await
}

fn fixture(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[tokio::test]
async fn publish_is_refused_while_the_sbom_breaks_policy() {
    let server = TestServer::start().await;
    set_up_repository(&server).await;
    let sbom = std::fs::read(fixture("tests/data/sbom-router.cdx.json")).unwrap();
    signed_release(&server, "2.0.0", Some(&sbom)).await;

    // No advisory index in the data dir: refused, and the reason says what to do.
    let refused = publish(&server, "2.0.0").await;
    assert_eq!(
        (refused.status, refused.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "gate_refused"),
        "{:?}",
        refused.body
    );
    let message = refused.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("no advisory index") && message.contains("advisories import"),
        "{message}"
    );
    assert_eq!(state(&server, "2.0.0").await, "signed");

    // With the index: refused for the findings themselves, each named with its rule.
    fleetward_advisories::import(
        &[fixture("../fleetward-advisories/tests/data/db")],
        &server.dir.path().join("advisories"),
        OffsetDateTime::now_utc(),
    )
    .unwrap();
    let refused = publish(&server, "2.0.0").await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{:?}",
        refused.body
    );
    let message = refused.body["error"]["message"].as_str().unwrap();
    for needle in [
        "gate sbom-policy refused",
        "[license.denied] bash@5.0",
        "[license.invalid] app@0.1.0",
        "[vulnerability.unknown-severity] PyYAML@5.3",
        "PYSEC-2020-96",
    ] {
        assert!(message.contains(needle), "{needle} not in {message}");
    }
    assert_eq!(state(&server, "2.0.0").await, "signed", "nothing published");

    // A broken policy file is a refusal that names the file, not a pass.
    let policy = server.dir.path().join("fleetward-policy.toml");
    std::fs::write(&policy, "[vulnerabilities]\nfail_on = \"sometimes\"\n").unwrap();
    let refused = publish(&server, "2.0.0").await;
    let message = refused.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("fleetward-policy.toml") && message.contains("fail_on"),
        "{message}"
    );

    // Waivers (owned, reasoned, dated) and an allowed licence: published.
    std::fs::write(
        &policy,
        r#"
[licenses]
deny = []
invalid = "warn"
[[waivers]]
id = "CVE-2020-1747"
reason = "full_load is not reachable from the device API"
owner = "security@example.com"
expires = 2999-12-31
"#,
    )
    .unwrap();
    let published = publish(&server, "2.0.0").await;
    assert_eq!(published.status, StatusCode::OK, "{:?}", published.body);
    assert_eq!(published.body["state"], "published");

    // Devices run it; a stricter policy later (or a new advisory import)
    // shows it as vulnerable, with the device count.
    server.register("dev-1", "rev2", Some("2.0.0"), &[]).await;
    server.register("dev-2", "rev2", Some("2.0.0"), &[]).await;

    // The console's release page shows the same scan: the waived
    // vulnerability with its waiver's owner and reason, the licence verdicts.
    let viewer = sign_in(&server, &server.token_for(Role::Viewer).await).await;
    let page = console_release(&server, &viewer, "2.0.0").await;
    for needle in [
        "Passes the policy",
        "PYSEC-2020-96",
        "CVE-2020-1747",
        "waived (CVE-2020-1747)",
        "full_load is not reachable from the device API",
        "security@example.com",
        "2999-12-31",
        "not a valid SPDX expression",
        "needs review",
        "&lt;script&gt;alert('notes')&lt;/script&gt;",
    ] {
        assert!(page.contains(needle), "{needle} not on the page: {page}");
    }
    assert!(!page.contains("<script>alert"), "notes are escaped");
    assert!(
        !page.contains("/console/rollouts/new"),
        "a viewer is offered no rollout"
    );
    let list = console_page(&server, &viewer, "/console/releases").await;
    assert!(list.contains(r#"href="/console/releases/2.0.0""#), "{list}");

    let clean = server
        .get(&server.admin, "/api/v1/sbom/vulnerabilities")
        .await;
    assert_eq!(clean.status, StatusCode::OK, "{:?}", clean.body);
    assert_eq!(
        clean.body["releases"][0]["verdict"], "pass",
        "{:?}",
        clean.body
    );
    std::fs::write(&policy, "[licenses]\ndeny = []\ninvalid = \"warn\"\n").unwrap();
    let vulns = server
        .get(&server.admin, "/api/v1/sbom/vulnerabilities")
        .await;
    let release = &vulns.body["releases"][0];
    assert_eq!(
        (
            release["version"].as_str(),
            release["verdict"].as_str(),
            release["devices"].as_u64()
        ),
        (Some("2.0.0"), Some("fail"), Some(2)),
        "{:?}",
        vulns.body
    );
    assert!(
        release["failing"][0]["ids"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i == "PYSEC-2020-96")
    );
    let operator = sign_in(&server, &server.token_for(Role::Operator).await).await;
    let page = console_release(&server, &operator, "2.0.0").await;
    for needle in [
        "Breaks the policy",
        "fails the release",
        "No finding of this release is waived.",
        "/console/rollouts/new?release=2.0.0",
    ] {
        assert!(page.contains(needle), "{needle} not on the page: {page}");
    }
    let missing = get(&server, Some(&operator), "/console/releases/9.9.9").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    // An unreadable SBOM is refused when the release is created: nothing stored.
    let image = upload(&server, b"firmware 3.0.0").await;
    let bad = upload(
        &server,
        b"{\"bomFormat\": \"CycloneDX\", \"specVersion\": \"9.9\"}",
    )
    .await;
    let refused = server
        .post(
            &server.admin,
            "/api/v1/releases",
            json!({"version": "3.0.0", "hardware": "rev2", "artifact_sha256": image,
                   "sbom_sha256": bad, "file_name": "fw.img"}),
        )
        .await;
    assert_eq!(
        (refused.status, refused.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_sbom")
    );
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("9.9")
    );
    let missing = server.get(&server.admin, "/api/v1/releases/3.0.0").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    // A release without an SBOM has nothing to scan.
    signed_release(&server, "2.1.0", None).await;
    assert_eq!(publish(&server, "2.1.0").await.status, StatusCode::OK);
    let page = console_release(&server, &operator, "2.1.0").await;
    assert!(page.contains("carries no SBOM"), "{page}");
    server.stop().await;
}

/// Polls the event log until `count` events of `kind` are there (or fails
/// after a generous deadline), and returns them, newest first.
async fn wait_for_events(server: &TestServer, kind: &str, count: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let events = server
            .get(&server.admin, &format!("/api/v1/events?kind={kind}"))
            .await;
        let items = events.body["items"].as_array().unwrap().clone();
        if items.len() >= count {
            assert_eq!(items.len(), count, "{items:?}");
            return items;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{count} {kind} events never came: {items:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Waits until the watch has recorded a scan of `version` made against
/// the data dir's current basis.
async fn wait_for_round(
    server: &TestServer,
    version: &str,
) -> fleetward_store::ReleaseVulnerabilities {
    let store = server.store().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let basis = fleetward_server::vulns::basis(server.dir.path(), OffsetDateTime::now_utc())
            .unwrap()
            .unwrap();
        let records = store.release_vulnerabilities().await.unwrap();
        if let Some(record) = records
            .iter()
            .find(|r| r.version == version && r.basis == basis)
        {
            store.close().await;
            return record.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no round against {basis}: {records:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_published_release_hit_by_new_advisories_raises_one_event() {
    let server = TestServer::start_with(|config| {
        config.releases.vulnerability_check = std::time::Duration::from_millis(100);
    })
    .await;
    set_up_repository(&server).await;
    let advisories = server.dir.path().join("advisories");
    // Advisories that do not touch the SBOM (RustSec crates only), and a
    // policy that judges only vulnerabilities.
    fleetward_advisories::import(
        &[fixture("../fleetward-advisories/tests/data/db/crates")],
        &advisories,
        OffsetDateTime::now_utc(),
    )
    .unwrap();
    let policy = server.dir.path().join("fleetward-policy.toml");
    std::fs::write(&policy, "[licenses]\ndeny = []\ninvalid = \"warn\"\n").unwrap();
    let sbom = std::fs::read(fixture("tests/data/sbom-router.cdx.json")).unwrap();
    signed_release(&server, "2.0.0", Some(&sbom)).await;
    let published = publish(&server, "2.0.0").await;
    assert_eq!(published.status, StatusCode::OK, "{:?}", published.body);
    server.register("dev-1", "rev2", Some("2.0.0"), &[]).await;
    server.register("dev-2", "rev2", Some("2.0.0"), &[]).await;
    // The same version string on other hardware is another image.
    server.register("dev-3", "rev9", Some("2.0.0"), &[]).await;

    let clean = wait_for_round(&server, "2.0.0").await;
    assert_eq!(
        (clean.advisory_ids.len(), clean.vulnerable_since),
        (0, None)
    );
    wait_for_events(&server, "release.vulnerable", 0).await;

    // New advisory data hits PyYAML 5.3: one event, naming the advisory and
    // the devices that run the release.
    fleetward_advisories::import(
        &[fixture("../fleetward-advisories/tests/data/db")],
        &advisories,
        OffsetDateTime::now_utc() + Duration::seconds(1),
    )
    .unwrap();
    let raised = wait_for_events(&server, "release.vulnerable", 1).await;
    let event = &raised[0];
    let message = event["message"].as_str().unwrap();
    for needle in ["release 2.0.0 (rev2)", "PYSEC-2020-96", "2 devices run it"] {
        assert!(message.contains(needle), "{needle} not in {message}");
    }
    let detail: Value = serde_json::from_str(event["detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["devices"], 2, "{detail}");
    assert_eq!(detail["release"], "2.0.0");
    assert!(
        detail["advisory_ids"]
            .as_array()
            .unwrap()
            .iter()
            .any(|id| id == "CVE-2020-1747"),
        "{detail}"
    );
    let recorded = wait_for_round(&server, "2.0.0").await;
    assert!(recorded.vulnerable_since.is_some());
    let vulns = server
        .get(&server.admin, "/api/v1/sbom/vulnerabilities")
        .await;
    let listed = &vulns.body["releases"][0];
    assert_eq!(
        (listed["verdict"].as_str(), listed["devices"].as_u64()),
        (Some("fail"), Some(2)),
        "{:?}",
        vulns.body
    );
    assert!(listed["vulnerable_since"].is_string(), "{listed}");
    // The console says it too: in the list, and on the release's page.
    // (to the second: the console does not show fractions)
    let since = &listed["vulnerable_since"].as_str().unwrap()[..19];
    let auditor = sign_in(&server, &server.token_for(Role::Auditor).await).await;
    let list = console_page(&server, &auditor, "/console/releases").await;
    assert!(
        list.contains("vulnerabilities</a> since <span class=\"mono\">") && list.contains(since),
        "{list}"
    );
    let page = console_release(&server, &auditor, "2.0.0").await;
    assert!(
        page.contains("vulnerable since") && page.contains(since),
        "{page}"
    );

    // Nothing new: a round with the same advisories and policy raises nothing.
    let store = server.store().await;
    let artifacts = fleetward_server::artifacts::ArtifactStore::local(
        &server.dir.path().join("artifacts"),
        u64::MAX,
    )
    .unwrap();
    let round = fleetward_server::vulns::check_releases(
        &*store,
        &artifacts,
        server.dir.path(),
        OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
    assert_eq!((round.scanned, round.raised.len()), (0, 0), "{round:?}");

    // A waiver clears it (no event); when the waiver goes, the same
    // advisory is new again and raised again.
    std::fs::write(
        &policy,
        "[licenses]\ndeny = []\ninvalid = \"warn\"\n[[waivers]]\nid = \"PYSEC-2020-96\"\n\
         reason = \"full_load is unreachable\"\nowner = \"sec@example.com\"\nexpires = 2999-12-31\n",
    )
    .unwrap();
    let waived = wait_for_round(&server, "2.0.0").await;
    assert_eq!(
        (waived.advisory_ids.len(), waived.vulnerable_since),
        (0, None)
    );
    std::fs::write(&policy, "[licenses]\ndeny = []\ninvalid = \"warn\"\n").unwrap();
    wait_for_events(&server, "release.vulnerable", 2).await;

    // The chain still verifies with the watch's events in it.
    let verified = server.get(&server.admin, "/api/v1/events/verify").await;
    assert_eq!(verified.body["ok"], true, "{:?}", verified.body);
    store.close().await;
    server.stop().await;
}
