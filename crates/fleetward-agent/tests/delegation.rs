//! Delegated targets roles, one per product line, end to end: the server
//! refuses a delegation that would leave the repository inconsistent, a
//! product line's releases are signed with its own keys only, and the
//! agent finds its image through the delegation (TUF 1.0 §5.6.7) and
//! refuses a delegated role's metadata rolled back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use fleetward_agent::PollOutcome;
use fleetward_agent::verify::Refusal;
use fleetward_tuf::{PublicKey, Signed, SigningKey, Targets};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{Server, assert_refused, enrolled, image, roll_out};

fn key(n: u8) -> SigningKey {
    SigningKey::from_seed(&[n; 32]).unwrap()
}

async fn versions(server: &Server) -> (u64, u64) {
    let status = server.get("/api/v1/tuf/status").await;
    (
        status["targets_version"].as_u64().unwrap(),
        status["snapshot_version"].as_u64().unwrap(),
    )
}

#[tokio::test]
async fn a_product_line_role_signs_its_releases_and_devices_follow_the_delegation() {
    let server = Server::start().await;
    let url = server.device_url();
    let device = enrolled(&server, &url, "dev-d", "rev2", "1.0.0").await;
    // Releases signed by the top-level targets keys before the delegation.
    server.publish("1.0.1", "rev2", &image(1000, 1)).await;
    server.publish("3.0.0", "rev3", &image(1000, 2)).await;

    let rev2 = key(20);
    let rev2_public: Vec<PublicKey> = vec![rev2.public()];
    let top_keys = [&server.targets_keys[0], &server.targets_keys[2]];
    let upload = |top: Vec<&'static str>, role_signer: u8| {
        let server = &server;
        let rev2_public = rev2_public.clone();
        async move {
            let role_key = key(role_signer);
            let top_signers: Vec<&SigningKey> = top
                .iter()
                .map(|which| match *which {
                    "a" => top_keys[0],
                    "b" => top_keys[1],
                    _ => unreachable!(),
                })
                .collect();
            server
                .delegation_upload(
                    "rev2",
                    &["rev2/*/*"],
                    &rev2_public,
                    1,
                    &top_signers,
                    &[&role_key],
                )
                .await
        }
    };

    // Bad delegations: refused, and nothing is published.
    let before = versions(&server).await;
    let refuse = |body: Value, status: StatusCode, why: &'static str| {
        let server = &server;
        async move {
            let (got, answer) = server.post("/api/v1/tuf/delegations", body).await;
            assert_eq!(got, status, "{why}: {answer:?}");
            assert_eq!(versions(server).await, before, "{why}: nothing published");
        }
    };
    refuse(
        upload(vec!["a", "b"], 21).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "the role's metadata is signed by a key the delegation does not name",
    )
    .await;
    refuse(
        upload(vec!["a"], 20).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "one targets signature of a 2-of-3 threshold",
    )
    .await;
    // The rev2 release stays in the top-level listing although rev2 is delegated.
    let mut kept = upload(vec!["a", "b"], 20).await;
    {
        let mut top: Targets = serde_json::from_value(kept["targets"]["signed"].clone()).unwrap();
        let mut role: Targets =
            serde_json::from_value(kept["roles"]["rev2"]["signed"].clone()).unwrap();
        let (name, file) = role.targets.pop_first().unwrap();
        top.targets.insert(name, file);
        kept["targets"] = serde_json::to_value(Signed::sign(top, &top_keys).unwrap()).unwrap();
        kept["roles"]["rev2"] =
            serde_json::to_value(Signed::sign(role, &[&rev2]).unwrap()).unwrap();
    }
    refuse(
        kept,
        StatusCode::CONFLICT,
        "a delegated release left in the top-level listing",
    )
    .await;
    // The role lists the rev3 release, outside the paths delegated to it.
    let mut outside = upload(vec!["a", "b"], 20).await;
    {
        let mut top: Targets =
            serde_json::from_value(outside["targets"]["signed"].clone()).unwrap();
        let mut role: Targets =
            serde_json::from_value(outside["roles"]["rev2"]["signed"].clone()).unwrap();
        let (name, file) = top.targets.pop_first().unwrap();
        assert!(name.starts_with("rev3/"), "{name}");
        role.targets.insert(name, file);
        outside["targets"] = serde_json::to_value(Signed::sign(top, &top_keys).unwrap()).unwrap();
        outside["roles"]["rev2"] =
            serde_json::to_value(Signed::sign(role, &[&rev2]).unwrap()).unwrap();
    }
    refuse(
        outside,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a target outside the role's paths",
    )
    .await;
    let mut stray = upload(vec!["a", "b"], 20).await;
    stray["roles"]["rev3"] = stray["roles"]["rev2"].clone();
    refuse(
        stray,
        StatusCode::CONFLICT,
        "metadata for a role nobody delegates to",
    )
    .await;

    // The delegation: rev2's signed release moves into the role.
    server.delegate("rev2", vec![rev2.clone()]).await;
    let (targets_version, _) = versions(&server).await;
    assert_eq!(targets_version, before.0 + 1);
    let top = server.get("/tuf/metadata/targets.json").await;
    let listed: Vec<&String> = top["signed"]["targets"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(listed.len(), 1, "only rev3 stays top-level: {listed:?}");
    assert!(listed[0].starts_with("rev3/"));
    let role = server.get("/tuf/metadata/1.rev2.json").await;
    assert!(
        role["signed"]["targets"]["rev2/1.0.1/fw.img"].is_object(),
        "{role}"
    );
    let snapshot = server.get("/tuf/metadata/snapshot.json").await;
    assert_eq!(snapshot["signed"]["meta"]["rev2.json"]["version"], 1);

    // A rev2 release is signed by the rev2 role, and only by it.
    let new = image(4096, 3);
    let sha256 = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(&new))
    };
    let (status, _) = server
        .raw_post(
            "/api/v1/artifacts",
            new.clone(),
            &[("x-fleetward-sha256", sha256.clone())],
        )
        .await;
    assert!(status.is_success());
    let (status, answer) = server
        .post(
            "/api/v1/releases",
            json!({"version": "1.1.0", "hardware": "rev2", "artifact_sha256": sha256, "file_name": "fw.img"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer:?}");
    let request = server.get("/api/v1/releases/1.1.0/signing-request").await;
    assert_eq!(request["role"], "rev2");
    let proposal: Targets = serde_json::from_value(request["signed"].clone()).unwrap();
    assert_eq!(proposal.version, 2);
    assert_eq!(proposal.targets.len(), 2, "1.0.1 and 1.1.0");
    let by_top_keys = Signed::sign(proposal.clone(), &top_keys)
        .unwrap()
        .to_bytes()
        .unwrap();
    let (status, answer) = server
        .raw_post("/api/v1/releases/1.1.0/signature", by_top_keys, &[])
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "the top-level keys cannot sign a delegated product line: {answer:?}"
    );
    let by_role = Signed::sign(proposal, &[&rev2])
        .unwrap()
        .to_bytes()
        .unwrap();
    let (status, answer) = server
        .raw_post("/api/v1/releases/1.1.0/signature", by_role, &[])
        .await;
    assert_eq!(status, StatusCode::OK, "{answer:?}");
    let (status, answer) = server
        .post("/api/v1/releases/1.1.0/publish", json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer:?}");
    // rev3 is not delegated: its releases stay with the top-level role.
    let top_before = versions(&server).await.0;
    server
        .create_release("3.1.0", "rev3", &image(1000, 4))
        .await;
    let request = server.get("/api/v1/releases/3.1.0/signing-request").await;
    assert!(request.get("role").is_none(), "{request}");
    let mut proposal: Targets = serde_json::from_value(request["signed"].clone()).unwrap();
    assert!(
        proposal.delegations.is_some(),
        "re-signing the top-level role keeps the delegations"
    );
    proposal.delegations = None;
    let dropped = Signed::sign(proposal, &top_keys)
        .unwrap()
        .to_bytes()
        .unwrap();
    let (status, answer) = server
        .raw_post("/api/v1/releases/3.1.0/signature", dropped, &[])
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a release signature cannot drop the delegations: {answer:?}"
    );
    assert_eq!(versions(&server).await.0, top_before);
    server.sign_and_publish("3.1.0").await;
    assert_eq!(versions(&server).await.0, top_before + 1);

    // The device finds 1.1.0 through the delegation and installs it.
    roll_out(&server, "dev-d", "1.1.0", "rev2").await;
    let mut agent = device.agent();
    assert_eq!(
        agent.poll().await.unwrap(),
        PollOutcome::RebootRequired("1.1.0".into())
    );
    assert_eq!(device.slot_bytes("b"), new);
    assert_eq!(agent.state().unwrap().seen_delegated.get("rev2"), Some(&2));
    server.stop().await;
}

#[tokio::test]
async fn a_delegated_role_rolled_back_is_refused() {
    let server = Server::start().await;
    let url = server.device_url();
    let device = enrolled(&server, &url, "dev-r", "rev2", "1.0.0").await;
    server.delegate("rev2", vec![key(20)]).await;
    support::offer_release(&server, "dev-r", "1.1.0", "rev2", &image(1000, 5)).await;
    let mut agent = device.agent();
    // The device has seen a newer rev2 role than the repository now pins.
    let mut state = agent.state().unwrap();
    state.seen_delegated.insert("rev2".into(), 99);
    agent.dir.save(&state).unwrap();
    let outcome = agent.poll().await.unwrap();
    let refusal = assert_refused(&server, &device, outcome, "device.rollback_attempt").await;
    assert!(
        matches!(&refusal, Refusal::MetadataRollback { role, .. } if role == "rev2"),
        "{refusal}"
    );
    server.stop().await;
}
