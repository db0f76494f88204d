//! Signed releases over real sockets: artifacts, the TUF image repository,
//! release states, the director. Offline keys are made here the way
//! `fleetward keys` makes them; the server only ever sees public keys and
//! signed metadata.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use fleetward_tuf::{
    Expiry, PublicKey, ROLE_ROOT, ROLE_SNAPSHOT, ROLE_TARGETS, ROLE_TIMESTAMP, Root, Signed,
    SigningKey, Targets,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256, Sha512};
use support::TestServer;
use time::{Duration, OffsetDateTime};

fn key(n: u8) -> SigningKey {
    SigningKey::from_seed(&[n; 32]).unwrap()
}

/// Offline keys: root 1..=3 (2 of 3), targets 4..=6 (2 of 3).
struct Offline {
    root: Vec<SigningKey>,
    targets: Vec<SigningKey>,
}

impl Offline {
    fn new() -> Self {
        Offline {
            root: (1..=3).map(key).collect(),
            targets: (4..=6).map(key).collect(),
        }
    }
}

async fn online_keys(server: &TestServer) -> (PublicKey, PublicKey) {
    let keys = server.get(&server.admin, "/api/v1/tuf/online-keys").await;
    assert_eq!(keys.status, StatusCode::OK);
    (
        serde_json::from_value(keys.body["snapshot"].clone()).unwrap(),
        serde_json::from_value(keys.body["timestamp"].clone()).unwrap(),
    )
}

fn root_metadata(
    version: u64,
    root_keys: &[SigningKey],
    targets_keys: &[SigningKey],
    online: &(PublicKey, PublicKey),
) -> Root {
    let public = |keys: &[SigningKey]| keys.iter().map(SigningKey::public).collect::<Vec<_>>();
    Root::new(
        version,
        Expiry::at(OffsetDateTime::now_utc() + Duration::days(365)),
        &[
            (ROLE_ROOT, &public(root_keys), 2),
            (ROLE_TARGETS, &public(targets_keys), 2),
            (ROLE_SNAPSHOT, std::slice::from_ref(&online.0), 1),
            (ROLE_TIMESTAMP, std::slice::from_ref(&online.1), 1),
        ],
    )
    .unwrap()
}

fn signed<T: fleetward_tuf::Role>(meta: T, keys: &[&SigningKey]) -> Vec<u8> {
    Signed::sign(meta, keys).unwrap().to_bytes().unwrap()
}

async fn raw_post(server: &TestServer, path: &str, body: Vec<u8>) -> support::Answer {
    server
        .raw(&server.admin, Method::POST, path, "application/json", body)
        .await
}

async fn upload(server: &TestServer, bytes: &[u8]) -> support::Answer {
    upload_declared(server, bytes, &hex::encode(Sha256::digest(bytes)), None).await
}

async fn upload_declared(
    server: &TestServer,
    bytes: &[u8],
    sha256: &str,
    sha512: Option<&str>,
) -> support::Answer {
    let mut request = server
        .http
        .post(format!("{}/api/v1/artifacts", server.base))
        .bearer_auth(&server.admin)
        .header("x-fleetward-sha256", sha256)
        .body(bytes.to_vec());
    if let Some(sha512) = sha512 {
        request = request.header("x-fleetward-sha512", sha512);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let body = response.json().await.unwrap_or(Value::Null);
    support::Answer { status, body }
}

/// Sends an upload that declares `declared` bytes, sends `sent`, and hangs up.
async fn cut_off_upload(server: &TestServer, declared: usize, sent: &[u8]) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let addr = server.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /api/v1/artifacts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nx-fleetward-sha256: {}\r\nContent-Length: {declared}\r\n\r\n",
        server.admin,
        "00".repeat(32)
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(sent).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
}

async fn create_release(
    server: &TestServer,
    version: &str,
    hardware: &str,
    sha256: &str,
) -> support::Answer {
    server
        .post(
            &server.admin,
            "/api/v1/releases",
            json!({"version": version, "hardware": hardware, "artifact_sha256": sha256, "file_name": "fw.img"}),
        )
        .await
}

/// The signing request for `version`, signed by `keys` after `adjust`.
async fn sign_request(
    server: &TestServer,
    version: &str,
    keys: &[&SigningKey],
    adjust: impl FnOnce(&mut Targets),
) -> Vec<u8> {
    let request = server
        .get(
            &server.admin,
            &format!("/api/v1/releases/{version}/signing-request"),
        )
        .await;
    assert_eq!(request.status, StatusCode::OK, "{:?}", request.body);
    let mut targets: Targets = serde_json::from_value(request.body["signed"].clone()).unwrap();
    adjust(&mut targets);
    signed(targets, keys)
}

async fn status(server: &TestServer) -> Value {
    server.get(&server.admin, "/api/v1/tuf/status").await.body
}

async fn release_state(server: &TestServer, version: &str) -> String {
    server
        .get(&server.admin, &format!("/api/v1/releases/{version}"))
        .await
        .body["state"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn staged_uploads(server: &TestServer) -> usize {
    let store = fleetward_server::artifacts::ArtifactStore::local(
        &server.dir.path().join("artifacts"),
        u64::MAX,
    )
    .unwrap();
    store.staged_uploads().await.unwrap()
}

#[tokio::test]
async fn artifacts_upload_dedupe_and_download_with_ranges() {
    let server = TestServer::start().await;
    let bytes: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let first = upload_declared(
        &server,
        &bytes,
        &sha256,
        Some(&hex::encode(Sha512::digest(&bytes))),
    )
    .await;
    assert_eq!(first.status, StatusCode::CREATED, "{:?}", first.body);
    assert_eq!(first.body["sha256"], sha256.as_str());
    assert_eq!(first.body["length"], 300_000);
    let again = upload(&server, &bytes).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["created"], false);

    let url = format!("{}/api/v1/artifacts/{sha256}", server.base);
    let get = |range: Option<&'static str>, extra: Option<(&'static str, String)>| {
        let mut request = server.http.get(&url).bearer_auth(&server.admin);
        if let Some(range) = range {
            request = request.header("range", range);
        }
        if let Some((name, value)) = extra {
            request = request.header(name, value);
        }
        request.send()
    };
    let full = get(None, None).await.unwrap();
    assert_eq!(full.status(), StatusCode::OK);
    assert_eq!(full.headers()["content-length"], "300000");
    let etag = full.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(etag, format!("\"{sha256}\""));
    assert_eq!(full.bytes().await.unwrap().as_ref(), bytes.as_slice());

    let check_range = |range: &'static str,
                       status: StatusCode,
                       content_range: &'static str,
                       slice: std::ops::Range<usize>| {
        let get = &get;
        let bytes = &bytes;
        async move {
            let answer = get(Some(range), None).await.unwrap();
            assert_eq!(answer.status(), status, "{range}");
            assert_eq!(answer.headers()["content-range"], content_range, "{range}");
            if status == StatusCode::PARTIAL_CONTENT {
                assert_eq!(
                    answer.headers()["content-length"],
                    (slice.end - slice.start).to_string().as_str()
                );
                assert_eq!(
                    answer.bytes().await.unwrap().as_ref(),
                    &bytes[slice],
                    "{range}"
                );
            }
        }
    };
    check_range(
        "bytes=0-9",
        StatusCode::PARTIAL_CONTENT,
        "bytes 0-9/300000",
        0..10,
    )
    .await;
    check_range(
        "bytes=299990-",
        StatusCode::PARTIAL_CONTENT,
        "bytes 299990-299999/300000",
        299_990..300_000,
    )
    .await;
    check_range(
        "bytes=-5",
        StatusCode::PARTIAL_CONTENT,
        "bytes 299995-299999/300000",
        299_995..300_000,
    )
    .await;
    check_range(
        "bytes=100000-199999",
        StatusCode::PARTIAL_CONTENT,
        "bytes 100000-199999/300000",
        100_000..200_000,
    )
    .await;
    check_range(
        "bytes=300000-",
        StatusCode::RANGE_NOT_SATISFIABLE,
        "bytes */300000",
        0..0,
    )
    .await;

    let cached = get(None, Some(("if-none-match", etag.clone())))
        .await
        .unwrap();
    assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);
    let stale = get(
        Some("bytes=0-9"),
        Some(("if-range", "\"other\"".to_owned())),
    )
    .await
    .unwrap();
    assert_eq!(
        stale.status(),
        StatusCode::OK,
        "a stale If-Range gets the whole artifact"
    );

    let missing = server
        .get(
            &server.admin,
            &format!("/api/v1/artifacts/{}", "ab".repeat(32)),
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    server.stop().await;
}

#[tokio::test]
async fn bad_uploads_store_nothing() {
    let server = TestServer::start_with(|c| c.releases.max_artifact_bytes = 100_000).await;
    let bytes = vec![7u8; 50_000];
    let right256 = hex::encode(Sha256::digest(&bytes));
    let wrong = "ab".repeat(32);
    struct Case {
        what: &'static str,
        answer: support::Answer,
        status: StatusCode,
        code: &'static str,
    }
    let cases = vec![
        Case {
            what: "wrong sha256",
            answer: upload_declared(&server, &bytes, &wrong, None).await,
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "hash_mismatch",
        },
        Case {
            what: "wrong sha512",
            answer: upload_declared(&server, &bytes, &right256, Some(&"cd".repeat(64))).await,
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "hash_mismatch",
        },
        Case {
            what: "malformed hash",
            answer: upload_declared(&server, &bytes, "xyz", None).await,
            status: StatusCode::BAD_REQUEST,
            code: "invalid_hash",
        },
        Case {
            what: "over the size limit",
            answer: upload(&server, &vec![1u8; 100_001]).await,
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code: "artifact_too_large",
        },
    ];
    for case in cases {
        assert_eq!(
            case.answer.status, case.status,
            "{}: {:?}",
            case.what, case.answer.body
        );
        assert_eq!(
            case.answer.body["error"]["code"], case.code,
            "{}",
            case.what
        );
    }
    let missing = server
        .raw(
            &server.admin,
            Method::POST,
            "/api/v1/artifacts",
            "application/octet-stream",
            bytes.clone(),
        )
        .await;
    assert_eq!(
        (missing.status, missing.code()),
        (StatusCode::BAD_REQUEST, "missing_hash")
    );

    // Chunked, without a declared length, over the limit.
    let stream = futures::stream::iter((0..30).map(|_| Ok::<_, std::io::Error>(vec![0u8; 10_000])));
    let chunked = server
        .http
        .post(format!("{}/api/v1/artifacts", server.base))
        .bearer_auth(&server.admin)
        .header("x-fleetward-sha256", &wrong)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(chunked.status(), StatusCode::PAYLOAD_TOO_LARGE);

    cut_off_upload(&server, 50_000, &bytes[..20_000]).await;
    for sha in [&right256, &wrong] {
        let stored = server
            .get(&server.admin, &format!("/api/v1/artifacts/{sha}"))
            .await;
        assert_eq!(
            stored.status,
            StatusCode::NOT_FOUND,
            "nothing stored for {sha}"
        );
    }
    assert_eq!(
        staged_uploads(&server).await,
        0,
        "no staged bytes left behind"
    );
    assert!(
        !server.dir.path().join("artifacts/sha256").exists()
            || std::fs::read_dir(server.dir.path().join("artifacts/sha256"))
                .unwrap()
                .count()
                == 0
    );
    let ok = upload(&server, &bytes).await;
    assert_eq!(
        ok.status,
        StatusCode::CREATED,
        "the same content uploads fine afterwards"
    );
    server.stop().await;
}

#[tokio::test]
async fn release_lifecycle_through_the_image_repository_and_director() {
    let server = TestServer::start().await;
    let offline = Offline::new();
    let online = online_keys(&server).await;
    let image_a = b"firmware 1.4.0".to_vec();
    let image_b = b"firmware 1.5.0!".to_vec();
    let sha_a = upload(&server, &image_a).await.body["sha256"]
        .as_str()
        .unwrap()
        .to_owned();
    let sha_b = upload(&server, &image_b).await.body["sha256"]
        .as_str()
        .unwrap()
        .to_owned();

    assert_eq!(
        create_release(&server, "1.4.0", "rev2", &sha_a)
            .await
            .status,
        StatusCode::CREATED
    );
    let duplicate = create_release(&server, "1.4.0", "rev2", &sha_b).await;
    assert_eq!(
        (duplicate.status, duplicate.code()),
        (StatusCode::CONFLICT, "conflict")
    );
    let unknown = create_release(&server, "1.6.0", "rev2", &"ab".repeat(32)).await;
    assert_eq!(
        (unknown.status, unknown.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "unknown_artifact")
    );
    let traversal = create_release(&server, "..", "rev2", &sha_a).await;
    assert_eq!(traversal.code(), "invalid_field");

    // No root yet: nothing can be signed.
    let early = server
        .get(&server.admin, "/api/v1/releases/1.4.0/signing-request")
        .await;
    assert_eq!(
        (early.status, early.code()),
        (StatusCode::CONFLICT, "repository_not_ready")
    );

    // Root: self-signed below threshold, then with the wrong online keys, then right.
    let root1 = root_metadata(1, &offline.root, &offline.targets, &online);
    let below = raw_post(
        &server,
        "/api/v1/tuf/root",
        signed(root1.clone(), &[&offline.root[0]]),
    )
    .await;
    assert_eq!(
        (below.status, below.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "signature_threshold")
    );
    let foreign = root_metadata(
        1,
        &offline.root,
        &offline.targets,
        &(key(9).public(), key(9).public()),
    );
    let foreign = raw_post(
        &server,
        "/api/v1/tuf/root",
        signed(foreign, &[&offline.root[0], &offline.root[1]]),
    )
    .await;
    assert_eq!(foreign.status, StatusCode::CONFLICT, "{:?}", foreign.body);
    let ok = raw_post(
        &server,
        "/api/v1/tuf/root",
        signed(root1.clone(), &[&offline.root[0], &offline.root[1]]),
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK, "{:?}", ok.body);
    assert_eq!(ok.body["root_version"], 1);

    // Bad targets metadata: each refused with its code, nothing published.
    let t = &offline.targets;
    let expired =
        |t: &mut Targets| t.expires = Expiry::at(OffsetDateTime::now_utc() - Duration::hours(1));
    let bad = [
        (
            "below threshold",
            sign_request(&server, "1.4.0", &[&t[0]], |_| {}).await,
            "signature_threshold",
        ),
        (
            "wrong keys",
            sign_request(
                &server,
                "1.4.0",
                &[&offline.root[0], &offline.root[1]],
                |_| {},
            )
            .await,
            "signature_threshold",
        ),
        (
            "expired",
            sign_request(&server, "1.4.0", &[&t[0], &t[1]], expired).await,
            "metadata_expired",
        ),
        (
            "version 0",
            sign_request(&server, "1.4.0", &[&t[0], &t[1]], |t| t.version = 0).await,
            "metadata_version",
        ),
        (
            "wrong length",
            sign_request(&server, "1.4.0", &[&t[0], &t[1]], |t| {
                t.targets.values_mut().for_each(|f| f.length += 1);
            })
            .await,
            "conflict",
        ),
        (
            "missing the release",
            sign_request(&server, "1.4.0", &[&t[0], &t[1]], |t| t.targets.clear()).await,
            "conflict",
        ),
        ("not json", b"{".to_vec(), "invalid_metadata"),
    ];
    for (what, body, code) in bad {
        let answer = raw_post(&server, "/api/v1/releases/1.4.0/signature", body).await;
        assert_eq!(answer.code(), code, "{what}: {:?}", answer.body);
        assert_eq!(
            status(&server).await["targets_version"],
            Value::Null,
            "{what}: nothing published"
        );
        assert_eq!(release_state(&server, "1.4.0").await, "draft", "{what}");
    }
    let publish_draft = server
        .post(&server.admin, "/api/v1/releases/1.4.0/publish", json!({}))
        .await;
    assert_eq!(publish_draft.status, StatusCode::CONFLICT);

    // Signed by 2 of 3 targets keys: accepted, snapshot and timestamp follow.
    let good = sign_request(&server, "1.4.0", &[&t[1], &t[2]], |_| {}).await;
    let answer = raw_post(&server, "/api/v1/releases/1.4.0/signature", good.clone()).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    assert_eq!(answer.body["state"], "signed");
    let repo = status(&server).await;
    assert_eq!(
        (
            repo["targets_version"].clone(),
            repo["snapshot_version"].clone(),
            repo["timestamp_version"].clone()
        ),
        (json!(1), json!(1), json!(1))
    );
    // Replaying the same metadata is a version going nowhere.
    let replay = raw_post(&server, "/api/v1/releases/1.4.0/signature", good).await;
    assert_eq!(replay.code(), "metadata_version");

    // The director offers nothing until a published release is rolled out.
    // Registered (running 1.3.0) by the factory, then enrolled by itself.
    server.register("dev-1", "rev2", Some("1.3.0"), &[]).await;
    let dev1 = server.enroll_device("dev-1", "rev2").await;
    let device = server.device_base();
    let director = |client: &reqwest::Client| {
        client
            .get(format!("{device}/device/v1/director/targets.json"))
            .send()
    };
    assert_eq!(
        director(&dev1.client).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    let published = server
        .post(&server.admin, "/api/v1/releases/1.4.0/publish", json!({}))
        .await;
    assert_eq!(published.body["state"], "published", "{:?}", published.body);
    assert_eq!(
        director(&dev1.client).await.unwrap().status(),
        StatusCode::NOT_FOUND,
        "published is not offered: only rollouts ship"
    );
    let rollout_14 = server.offer_release("1.4.0", r#"id = "dev-1""#).await;

    let director_body: Value = director(&dev1.client).await.unwrap().json().await.unwrap();
    let director_key: PublicKey = serde_json::from_value(
        server
            .get(&server.admin, "/api/v1/tuf/online-keys")
            .await
            .body["director"]
            .clone(),
    )
    .unwrap();
    let raw = fleetward_tuf::parse_signed::<Targets>(&serde_json::to_vec(&director_body).unwrap())
        .unwrap();
    let sig = hex::decode(&raw.signatures[0].sig).unwrap();
    assert!(
        director_key.verifies(&raw.canonical_signed, &sig),
        "signed by the director key"
    );
    let named = &raw.signed.targets["rev2/1.4.0/fw.img"];
    assert_eq!(raw.signed.targets.len(), 1);
    assert_eq!(named.length, image_a.len() as u64);
    assert_eq!(named.hashes["sha256"], sha_a);
    assert_eq!(named.custom.as_ref().unwrap()["device_id"], "dev-1");
    assert_eq!(
        named.custom.as_ref().unwrap()["rollout_id"],
        rollout_14.as_str()
    );
    let execution = named.custom.as_ref().unwrap()["execution_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The image repository agrees with the director.
    let targets_json: Value = dev1
        .client
        .get(format!("{device}/tuf/metadata/targets.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        targets_json["signed"]["targets"]["rev2/1.4.0/fw.img"]["hashes"],
        json!(named.hashes)
    );
    // Without a device certificate there is no director answer.
    assert_eq!(
        director(&server.device_client(None).await)
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );

    // A second release: signing it keeps the first listed.
    assert_eq!(
        create_release(&server, "1.5.0", "rev2", &sha_b)
            .await
            .status,
        StatusCode::CREATED
    );
    let second = sign_request(&server, "1.5.0", &[&t[0], &t[2]], |_| {}).await;
    assert_eq!(
        raw_post(&server, "/api/v1/releases/1.5.0/signature", second)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        server
            .post(&server.admin, "/api/v1/releases/1.5.0/publish", json!({}))
            .await
            .status,
        StatusCode::OK
    );
    // Still 1.4.0 while the device's execution of it is unfinished.
    let director_body: Value = director(&dev1.client).await.unwrap().json().await.unwrap();
    assert!(director_body["signed"]["targets"]["rev2/1.4.0/fw.img"].is_object());
    for step in [
        json!({"step": "downloading"}),
        json!({"step": "installing"}),
        json!({"step": "rebooting"}),
        json!({"step": "succeeded", "running_version": "1.4.0", "health_check_passed": true}),
    ] {
        let answer = dev1
            .client
            .post(format!("{device}/device/v1/executions/{execution}"))
            .json(&step)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::OK, "{step}");
    }
    assert_eq!(
        director(&dev1.client).await.unwrap().status(),
        StatusCode::NOT_FOUND,
        "done: nothing new"
    );
    server.offer_release("1.5.0", r#"id = "dev-1""#).await;
    let director_body: Value = director(&dev1.client).await.unwrap().json().await.unwrap();
    assert!(director_body["signed"]["targets"]["rev2/1.5.0/fw.img"].is_object());

    // Revoking 1.5.0: never offered again, even to a device whose rollout
    // of it is unfinished; there is no fallback to an older release.
    let revoked = server
        .post(&server.admin, "/api/v1/releases/1.5.0/revoke", json!({}))
        .await;
    assert_eq!(revoked.body["state"], "revoked");
    assert_eq!(
        director(&dev1.client).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    for action in ["publish", "deprecate", "revoke"] {
        let again = server
            .post(
                &server.admin,
                &format!("/api/v1/releases/1.5.0/{action}"),
                json!({}),
            )
            .await;
        assert_eq!(again.status, StatusCode::CONFLICT, "{action} after revoke");
    }
    // Devices running a revoked release are flagged.
    let revoked_14 = server
        .post(&server.admin, "/api/v1/releases/1.4.0/revoke", json!({}))
        .await;
    assert_eq!(revoked_14.body["flagged_devices"], json!(["dev-1"]));
    assert_eq!(
        director(&dev1.client).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    // The next signing request drops revoked images.
    let next = server
        .get(&server.admin, "/api/v1/releases/1.5.0/signing-request")
        .await;
    assert_eq!(
        next.status,
        StatusCode::CONFLICT,
        "a revoked release cannot be signed"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_repository_is_served_to_devices_and_to_operators_with_a_token() {
    let server = TestServer::start().await;
    let offline = Offline::new();
    let online = online_keys(&server).await;
    let root1 = root_metadata(1, &offline.root, &offline.targets, &online);
    let root1_bytes = signed(root1.clone(), &[&offline.root[0], &offline.root[1]]);
    assert_eq!(
        raw_post(&server, "/api/v1/tuf/root", root1_bytes.clone())
            .await
            .status,
        StatusCode::OK
    );
    let image = b"an image".to_vec();
    let sha = upload(&server, &image).await.body["sha256"]
        .as_str()
        .unwrap()
        .to_owned();
    create_release(&server, "2.0.0", "rev3", &sha).await;
    let t = &offline.targets;
    let body = sign_request(&server, "2.0.0", &[&t[0], &t[1]], |_| {}).await;
    assert_eq!(
        raw_post(&server, "/api/v1/releases/2.0.0/signature", body)
            .await
            .status,
        StatusCode::OK
    );

    let enrolled = server.enroll_device("dev-1", "rev3").await;
    let device = server.device_base();
    for path in [
        "/tuf/metadata/1.root.json",
        "/tuf/metadata/timestamp.json",
        "/tuf/metadata/1.snapshot.json",
        "/tuf/metadata/1.targets.json",
    ] {
        let from_device = enrolled
            .client
            .get(format!("{device}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(from_device.status(), StatusCode::OK, "{path}");
        let anonymous = server.call(None, Method::GET, path, None).await;
        assert_eq!(
            anonymous.status,
            StatusCode::UNAUTHORIZED,
            "operators need a token for {path}"
        );
        let with_token = server.get(&server.admin, path).await;
        assert_eq!(with_token.status, StatusCode::OK, "{path}");
    }
    let served_root = enrolled
        .client
        .get(format!("{device}/tuf/metadata/1.root.json"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        served_root.as_ref(),
        root1_bytes.as_slice(),
        "root is served byte for byte as signed"
    );
    for missing in [
        "/tuf/metadata/2.root.json",
        "/tuf/metadata/1.timestamp.json",
        "/tuf/metadata/x.json",
    ] {
        assert_eq!(
            enrolled
                .client
                .get(format!("{device}{missing}"))
                .send()
                .await
                .unwrap()
                .status(),
            StatusCode::NOT_FOUND,
            "{missing}"
        );
    }
    let target = enrolled
        .client
        .get(format!("{device}/tuf/targets/rev3/2.0.0/{sha}.fw.img"))
        .send()
        .await
        .unwrap();
    assert_eq!(target.status(), StatusCode::OK);
    assert_eq!(target.bytes().await.unwrap().as_ref(), image.as_slice());
    let ranged = enrolled
        .client
        .get(format!("{device}/tuf/targets/rev3/2.0.0/{sha}.fw.img"))
        .header("range", "bytes=3-")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(ranged.bytes().await.unwrap().as_ref(), &image[3..]);
    for bad in [
        format!("/tuf/targets/../{sha}.fw.img"),
        "/tuf/targets/x.fw.img".to_owned(),
    ] {
        assert_eq!(
            enrolled
                .client
                .get(format!("{device}{bad}"))
                .send()
                .await
                .unwrap()
                .status(),
            StatusCode::NOT_FOUND,
            "{bad}"
        );
    }
    // The operator API is not on the device listener.
    let api = enrolled
        .client
        .get(format!("{device}/api/v1/releases"))
        .bearer_auth(&server.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), StatusCode::NOT_FOUND);
    server.stop().await;
}

#[tokio::test]
async fn root_rotation_needs_the_old_threshold_and_versions_only_go_forward() {
    let server = TestServer::start().await;
    let offline = Offline::new();
    let online = online_keys(&server).await;
    let root1 = root_metadata(1, &offline.root, &offline.targets, &online);
    assert_eq!(
        raw_post(
            &server,
            "/api/v1/tuf/root",
            signed(root1, &[&offline.root[0], &offline.root[1]])
        )
        .await
        .status,
        StatusCode::OK
    );
    let new_root_keys: Vec<SigningKey> = (10..=12).map(key).collect();
    let root2 = root_metadata(2, &new_root_keys, &offline.targets, &online);
    let check = |signers: Vec<&SigningKey>, meta: Root, status: StatusCode, code: &'static str| {
        let bytes = signed(meta, &signers);
        let server = &server;
        async move {
            let answer = raw_post(server, "/api/v1/tuf/root", bytes).await;
            assert_eq!(
                (answer.status, answer.code()),
                (status, code),
                "{:?}",
                answer.body
            );
        }
    };
    let n = &new_root_keys;
    let o = &offline.root;
    check(
        vec![&n[0], &n[1]],
        root2.clone(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "signature_threshold",
    )
    .await;
    check(
        vec![&o[0], &n[0], &n[1]],
        root2.clone(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "signature_threshold",
    )
    .await;
    check(
        vec![&o[0], &o[1], &n[0]],
        root2.clone(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "signature_threshold",
    )
    .await;
    let mut root3 = root2.clone();
    root3.version = 3;
    check(
        vec![&o[0], &o[1], &n[0], &n[1]],
        root3,
        StatusCode::UNPROCESSABLE_ENTITY,
        "metadata_version",
    )
    .await;
    let mut stale = root2.clone();
    stale.expires = Expiry::at(OffsetDateTime::now_utc() - Duration::days(1));
    check(
        vec![&o[0], &o[1], &n[0], &n[1]],
        stale,
        StatusCode::UNPROCESSABLE_ENTITY,
        "metadata_expired",
    )
    .await;
    assert_eq!(
        status(&server).await["root_version"],
        1,
        "nothing published"
    );
    check(
        vec![&o[0], &o[2], &n[1], &n[2]],
        root2.clone(),
        StatusCode::OK,
        "",
    )
    .await;
    assert_eq!(status(&server).await["root_version"], 2);
    // Going back to version 1 (or repeating 2) is refused.
    let root1_again = root_metadata(1, &offline.root, &offline.targets, &online);
    check(
        vec![&o[0], &o[1], &n[0], &n[1]],
        root1_again,
        StatusCode::UNPROCESSABLE_ENTITY,
        "metadata_version",
    )
    .await;
    check(
        vec![&n[0], &n[1]],
        root2,
        StatusCode::UNPROCESSABLE_ENTITY,
        "metadata_version",
    )
    .await;
    server.stop().await;
}

#[tokio::test]
async fn timestamp_is_re_signed_before_it_expires() {
    let server = TestServer::start().await;
    let offline = Offline::new();
    let online = online_keys(&server).await;
    let root1 = root_metadata(1, &offline.root, &offline.targets, &online);
    raw_post(
        &server,
        "/api/v1/tuf/root",
        signed(root1, &[&offline.root[0], &offline.root[1]]),
    )
    .await;
    let sha = upload(&server, b"x").await.body["sha256"]
        .as_str()
        .unwrap()
        .to_owned();
    create_release(&server, "1.0.0", "rev1", &sha).await;
    let t = &offline.targets;
    let body = sign_request(&server, "1.0.0", &[&t[0], &t[1]], |_| {}).await;
    raw_post(&server, "/api/v1/releases/1.0.0/signature", body).await;

    let store = server.store().await;
    let keys = fleetward_server::repo::OnlineKeys::load_or_create(server.dir.path()).unwrap();
    let config = fleetward_server::repo::ReleaseConfig::default();
    let now = OffsetDateTime::now_utc();
    let refresh = |at| fleetward_server::repo::refresh(store.as_ref(), &keys, &config, at);
    assert!(!refresh(now).await.unwrap(), "fresh: nothing to do");
    assert!(
        refresh(now + Duration::hours(13)).await.unwrap(),
        "past half its life: re-signed"
    );
    let repo = status(&server).await;
    assert_eq!(
        (
            repo["timestamp_version"].clone(),
            repo["snapshot_version"].clone()
        ),
        (json!(2), json!(1))
    );
    assert!(
        refresh(now + Duration::days(4)).await.unwrap(),
        "snapshot past half its life"
    );
    let repo = status(&server).await;
    assert_eq!(
        (
            repo["timestamp_version"].clone(),
            repo["snapshot_version"].clone()
        ),
        (json!(3), json!(2))
    );
    server.stop().await;
}

/// A venv with python-tuf, made once and kept (`FLEETWARD_PYTHON_TUF_VENV`,
/// default in the temp dir). `None`, said loudly, when python3 or the package
/// registry is out of reach, unless `FLEETWARD_REQUIRE_PYTHON_TUF=1` (CI).
fn python_tuf() -> Option<std::path::PathBuf> {
    let venv = std::env::var_os("FLEETWARD_PYTHON_TUF_VENV")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("fleetward-python-tuf-venv"));
    let python = venv.join("bin/python3");
    let ready = || {
        std::process::Command::new(&python)
            .args(["-c", "import tuf.ngclient"])
            .status()
            .is_ok_and(|s| s.success())
    };
    if !ready() {
        let made = std::process::Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success())
            && std::process::Command::new(venv.join("bin/pip"))
                .args(["install", "--quiet", "tuf"])
                .status()
                .is_ok_and(|s| s.success());
        if !made || !ready() {
            let message = "SKIPPED python-tuf interop: could not make a venv with `pip install tuf` (python3-venv missing or no registry)";
            assert!(
                std::env::var("FLEETWARD_REQUIRE_PYTHON_TUF").as_deref() != Ok("1"),
                "{message}"
            );
            eprintln!("{message}");
            return None;
        }
    }
    Some(python)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_tuf_ngclient_verifies_and_refuses_bad_metadata() {
    let Some(python) = python_tuf() else { return };
    let server = TestServer::start().await;
    let offline = Offline::new();
    let online = online_keys(&server).await;
    let root1 = signed(
        root_metadata(1, &offline.root, &offline.targets, &online),
        &[&offline.root[0], &offline.root[1]],
    );
    assert_eq!(
        raw_post(&server, "/api/v1/tuf/root", root1.clone())
            .await
            .status,
        StatusCode::OK
    );
    let work = tempfile::tempdir().unwrap();
    let root_path = work.path().join("1.root.json");
    std::fs::write(&root_path, &root1).unwrap();
    // python-tuf talks to the device listener as an enrolled device would:
    // mutual TLS with the fleet CA as its only trust anchor.
    let enrolled = server.enroll_device("py-1", "rev2").await;
    let device = server.device_base();
    let tls_files: Vec<String> = [
        ("ca.pem", server.ca_pem().await),
        ("device.pem", enrolled.cert_pem.clone()),
        ("device.key", enrolled.key_pem.clone()),
    ]
    .into_iter()
    .map(|(name, pem)| {
        let path = work.path().join(name);
        std::fs::write(&path, pem).unwrap();
        path.display().to_string()
    })
    .collect();
    let t = &offline.targets;

    let image_a: Vec<u8> = (0..100_000u32).map(|i| (i % 7) as u8).collect();
    let sha_a = upload(&server, &image_a).await.body["sha256"]
        .as_str()
        .unwrap()
        .to_owned();
    create_release(&server, "1.4.0", "rev2", &sha_a).await;
    let body = sign_request(&server, "1.4.0", &[&t[0], &t[1]], |_| {}).await;
    assert_eq!(
        raw_post(&server, "/api/v1/releases/1.4.0/signature", body)
            .await
            .status,
        StatusCode::OK
    );
    // Keep state 1 for the replay attacks below.
    let fetch = |path: &str| {
        let url = format!("{device}/tuf/metadata/{path}");
        let http = enrolled.client.clone();
        async move {
            http.get(url)
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
                .to_vec()
        }
    };
    let save = |name: &str, bytes: &[u8]| {
        let path = work.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path.display().to_string()
    };
    let timestamp_1 = save("timestamp-1.json", &fetch("timestamp.json").await);
    let snapshot_1 = save("snapshot-1.json", &fetch("1.snapshot.json").await);

    let client = |dir: &str, target: &str, overrides: Vec<String>| {
        let mut command = std::process::Command::new(&python);
        command
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/data/python_tuf_client.py"
            ))
            .args(["--base", &device])
            .args([
                "--ca",
                &tls_files[0],
                "--cert",
                &tls_files[1],
                "--key",
                &tls_files[2],
            ])
            .arg("--root")
            .arg(&root_path)
            .arg("--dir")
            .arg(work.path().join(dir))
            .args(["--target", target]);
        for o in overrides {
            command.args(["--override", &o]);
        }
        async move {
            let output = tokio::task::spawn_blocking(move || command.output().unwrap())
                .await
                .unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout);
            let line = stdout.lines().last().unwrap_or_else(|| {
                panic!(
                    "no output; stderr: {}",
                    String::from_utf8_lossy(&output.stderr)
                )
            });
            serde_json::from_str::<Value>(line).unwrap()
        }
    };
    let a = client("c1", "rev2/1.4.0/fw.img", vec![]).await;
    assert_eq!(a["ok"], true, "{a}");
    assert_eq!(a["sha256"], sha_a.as_str());

    // State 2: a second release, all metadata one version on.
    let image_b = b"firmware 1.5.0".to_vec();
    let sha_b = upload(&server, &image_b).await.body["sha256"]
        .as_str()
        .unwrap()
        .to_owned();
    create_release(&server, "1.5.0", "rev2", &sha_b).await;
    let body = sign_request(&server, "1.5.0", &[&t[1], &t[2]], |_| {}).await;
    assert_eq!(
        raw_post(&server, "/api/v1/releases/1.5.0/signature", body)
            .await
            .status,
        StatusCode::OK
    );
    let b = client("c1", "rev2/1.5.0/fw.img", vec![]).await;
    assert_eq!(b["ok"], true, "{b}");
    assert_eq!(b["sha256"], sha_b.as_str());

    // Attacks, each against a client that must refuse.
    let targets_2 = String::from_utf8(fetch("2.targets.json").await).unwrap();
    let tampered_targets = save(
        "targets-tampered.json",
        targets_2
            .replacen("\"length\":14", "\"length\":15", 1)
            .as_bytes(),
    );
    let tampered_image = save("image-tampered", b"firmware 1.5.1");

    let keys = fleetward_server::repo::OnlineKeys::load_or_create(server.dir.path()).unwrap();
    let snapshot_2 = fetch("2.snapshot.json").await;
    let past = Expiry::at(OffsetDateTime::now_utc() - Duration::hours(1));
    let expired_ts = fleetward_tuf::timestamp_for(3, past, 2, &snapshot_2);
    let expired_timestamp = save(
        "timestamp-expired.json",
        &signed(expired_ts, &[&keys.timestamp]),
    );
    let future = Expiry::at(OffsetDateTime::now_utc() + Duration::hours(1));
    let foreign_ts = fleetward_tuf::timestamp_for(3, future, 2, &snapshot_2);
    let foreign_timestamp = save("timestamp-foreign.json", &signed(foreign_ts, &[&key(42)]));

    let cases: Vec<(&str, &str, &str, Vec<String>, &str)> = vec![
        (
            "rolled-back timestamp",
            "c1",
            "rev2/1.5.0/fw.img",
            vec![format!("timestamp.json={timestamp_1}")],
            "BadVersionNumberError",
        ),
        (
            "mix-and-match: new timestamp, old snapshot",
            "c2",
            "rev2/1.5.0/fw.img",
            vec![format!("2.snapshot.json={snapshot_1}")],
            "RepositoryError",
        ),
        (
            "tampered targets metadata",
            "c3",
            "rev2/1.5.0/fw.img",
            vec![format!("2.targets.json={tampered_targets}")],
            "UnsignedMetadataError",
        ),
        (
            "expired timestamp",
            "c4",
            "rev2/1.5.0/fw.img",
            vec![format!("timestamp.json={expired_timestamp}")],
            "ExpiredMetadataError",
        ),
        (
            "timestamp signed by a foreign key",
            "c5",
            "rev2/1.5.0/fw.img",
            vec![format!("timestamp.json={foreign_timestamp}")],
            "UnsignedMetadataError",
        ),
        (
            "tampered image",
            "c6",
            "rev2/1.5.0/fw.img",
            vec![format!("{sha_b}.fw.img={tampered_image}")],
            "LengthOrHashMismatchError",
        ),
    ];
    for (what, dir, target, overrides, error) in cases {
        let answer = client(dir, target, overrides).await;
        assert_eq!(answer["ok"], false, "{what} must fail: {answer}");
        let got = answer["error"].as_str().unwrap();
        // python-tuf's exception classes nest (RepositoryError is the base).
        assert!(
            got == error || error == "RepositoryError",
            "{what}: expected {error}, got {answer}"
        );
        eprintln!("python-tuf refused {what}: {got}: {}", answer["message"]);
    }

    // State 3: product line rev3 delegated to its own role (one key);
    // python-tuf walks the delegation (TUF 1.0 §5.6.7) to find its image.
    let rev3_key = key(50);
    let top = server
        .get(&server.admin, "/tuf/metadata/targets.json")
        .await
        .body;
    let mut top: Targets = serde_json::from_value(top["signed"].clone()).unwrap();
    top.version += 1;
    let id = fleetward_tuf::key_id(&rev3_key.public()).unwrap();
    let mut delegations = fleetward_tuf::Delegations::default();
    delegations.keys.insert(id.clone(), rev3_key.public());
    delegations.roles.push(fleetward_tuf::DelegatedRole {
        name: "rev3".into(),
        keyids: vec![id],
        threshold: 1,
        terminating: true,
        paths: Some(vec!["rev3/*/*".into()]),
        path_hash_prefixes: None,
    });
    top.delegations = Some(delegations);
    let first_role = Targets::new(1, future_days(30), Default::default());
    let delegation = json!({
        "targets": serde_json::to_value(Signed::sign(top, &[&t[0], &t[1]]).unwrap()).unwrap(),
        "roles": {"rev3": serde_json::to_value(Signed::sign(first_role, &[&rev3_key]).unwrap()).unwrap()},
    });
    let answer = server
        .post(&server.admin, "/api/v1/tuf/delegations", delegation)
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    let image_c = b"firmware rev3 2.0.0".to_vec();
    let sha_c = upload(&server, &image_c).await.body["sha256"]
        .as_str()
        .unwrap()
        .to_owned();
    create_release(&server, "2.0.0", "rev3", &sha_c).await;
    let body = sign_request(&server, "2.0.0", &[&rev3_key], |_| {}).await;
    let answer = raw_post(&server, "/api/v1/releases/2.0.0/signature", body).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    let c = client("c1", "rev3/2.0.0/fw.img", vec![]).await;
    assert_eq!(c["ok"], true, "{c}");
    assert_eq!(c["sha256"], sha_c.as_str());
    let b = client("c1", "rev2/1.5.0/fw.img", vec![]).await;
    assert_eq!(b["ok"], true, "rev2 stays with the top-level role: {b}");
    // The delegated role's metadata re-signed by a key the delegation does
    // not name.
    let role_2 = fetch("2.rev3.json").await;
    let raw = fleetward_tuf::parse_signed::<Targets>(&role_2).unwrap();
    let foreign_role = save("rev3-foreign.json", &signed(raw.signed, &[&key(51)]));
    let answer = client(
        "c7",
        "rev3/2.0.0/fw.img",
        vec![format!("2.rev3.json={foreign_role}")],
    )
    .await;
    assert_eq!(answer["ok"], false, "{answer}");
    assert_eq!(answer["error"], "UnsignedMetadataError", "{answer}");
    eprintln!(
        "python-tuf found rev3/2.0.0 through the rev3 delegation and refused the role re-signed by a foreign key: {}",
        answer["message"]
    );
    server.stop().await;
}

fn future_days(days: i64) -> Expiry {
    Expiry::at(OffsetDateTime::now_utc() + Duration::days(days))
}
