//! Artifacts on S3-compatible object storage, against a real S3 server:
//! moto's S3 from PyPI, started by the test on a free port of 127.0.0.1
//! (`support/s3_server.py`), with SigV4 authentication switched on and an
//! IAM user of its own. Uploads go up as S3 multipart uploads, downloads are
//! ranged GETs, duplicates are stored once, a wrong declaration or a wrong
//! credential stores nothing, and devices follow pre-signed URLs and still
//! verify every byte.
//!
//! Without moto (or Python) the tests say SKIPPED; `FLEETWARD_REQUIRE_S3=1`
//! (set by `.ci/run`, which installs it) makes that a failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use fleetward_agent::PollOutcome;
use fleetward_server::ServerConfig;
use fleetward_server::artifacts::S3Settings;
use futures::TryStreamExt as _;
use object_store::ObjectStore as _;
use object_store::path::Path;
use reqwest::StatusCode;
use sha2::{Digest as _, Sha256};
use support::{Server, enrolled, image, offer_release};

/// The S3 server process and the credentials of its one IAM user.
struct S3 {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    endpoint: String,
    bucket: String,
    key: String,
    secret: String,
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl S3 {
    /// Starts moto; `None` (said loudly) when it is not installed, unless
    /// `FLEETWARD_REQUIRE_S3=1`.
    fn start() -> Option<S3> {
        let python = std::env::var("FLEETWARD_S3_PYTHON").unwrap_or_else(|_| "python3".into());
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/s3_server.py");
        let skip = |why: String| {
            let message = format!(
                "SKIPPED S3 artifact tests: {why} (pip install 'moto[server]', or set FLEETWARD_S3_PYTHON to a python that has it)"
            );
            assert!(
                std::env::var("FLEETWARD_REQUIRE_S3").as_deref() != Ok("1"),
                "{message}"
            );
            eprintln!("{message}");
            None
        };
        let ready = Command::new(&python)
            .args(["-c", "import moto.server, boto3, flask"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ready {
            return skip(format!("{python} cannot import moto.server"));
        }
        let mut child = Command::new(&python)
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let info: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("the S3 server did not start: {e}: {line:?}"));
        let text = |k: &str| info[k].as_str().unwrap().to_owned();
        Some(S3 {
            endpoint: text("endpoint"),
            bucket: text("bucket"),
            key: text("access_key_id"),
            secret: text("secret_access_key"),
            child,
            stdin,
            stdout,
        })
    }

    /// moto cannot authenticate pre-signed URLs (it neither checks their
    /// signature nor their expiry, and fails on them with authentication
    /// on), so tests that follow them switch it off.
    fn authentication(&mut self, on: bool) {
        let command = if on { "auth on" } else { "auth off" };
        writeln!(self.stdin, "{command}").unwrap();
        self.stdin.flush().unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ok");
    }

    fn settings(&self, prefix: &str) -> S3Settings {
        S3Settings {
            url: format!("s3://{}/{prefix}", self.bucket),
            endpoint: Some(self.endpoint.clone()),
            region: Some("us-east-1".into()),
            access_key_id: Some(self.key.clone()),
            secret_access_key: Some(self.secret.clone()),
            allow_http: true,
            presign: None,
        }
    }

    /// A client of our own to look into the bucket.
    fn client(&self) -> object_store::aws::AmazonS3 {
        object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(&self.bucket)
            .with_endpoint(&self.endpoint)
            .with_region("us-east-1")
            .with_access_key_id(&self.key)
            .with_secret_access_key(&self.secret)
            .with_allow_http(true)
            .build()
            .unwrap()
    }

    /// Every object under `prefix`, sorted.
    async fn keys(&self, prefix: &str) -> Vec<String> {
        let mut keys: Vec<String> = self
            .client()
            .list(Some(&Path::from(prefix)))
            .map_ok(|meta| meta.location.to_string())
            .try_collect()
            .await
            .unwrap();
        keys.sort();
        keys
    }
}

fn with_s3(settings: S3Settings) -> impl FnOnce(&mut ServerConfig) {
    move |config| config.releases.s3 = Some(settings)
}

async fn upload(
    server: &Server,
    bytes: &[u8],
    declared_sha256: &str,
) -> (StatusCode, serde_json::Value) {
    server
        .raw_post(
            "/api/v1/artifacts",
            bytes.to_vec(),
            &[("x-fleetward-sha256", declared_sha256.to_owned())],
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_multipart_downloads_ranged_and_duplicates_stored_once() {
    let Some(s3) = S3::start() else { return };
    let server = Server::start_with(with_s3(s3.settings("fleet-a"))).await;
    // Three parts of 8 MiB at most: a real multipart upload.
    let big = image(20 * 1024 * 1024 + 5, 7);
    let sha256 = hex::encode(Sha256::digest(&big));
    let (status, answer) = upload(&server, &big, &sha256).await;
    assert_eq!(status, StatusCode::CREATED, "{answer:?}");
    assert_eq!(answer["length"], big.len() as u64);
    let stored = format!("fleet-a/sha256/{sha256}");
    assert_eq!(
        s3.keys("fleet-a").await,
        vec![stored.clone()],
        "the content address only: no staging object is left"
    );
    let object = s3
        .client()
        .get(&Path::from(stored.as_str()))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(object == big, "the object holds exactly the uploaded bytes");

    // A ranged download through the server, across a part boundary.
    let start = 8 * 1024 * 1024 - 10;
    let response = server
        .http
        .get(format!("{}/api/v1/artifacts/{sha256}", server.base))
        .bearer_auth(&server.admin)
        .header("range", format!("bytes={start}-{}", start + 19))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        response.headers()["content-range"],
        format!("bytes {start}-{}/{}", start + 19, big.len()).as_str()
    );
    assert_eq!(response.headers()["etag"], format!("\"{sha256}\"").as_str());
    let body = response.bytes().await.unwrap();
    assert_eq!(&body[..], &big[start..start + 20]);
    // The whole artifact streams too.
    let whole = server
        .http
        .get(format!("{}/api/v1/artifacts/{sha256}", server.base))
        .bearer_auth(&server.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(whole.status(), StatusCode::OK);
    assert!(whole.bytes().await.unwrap() == big);

    // The same bytes again: stored once.
    let (status, answer) = upload(&server, &big, &sha256).await;
    assert_eq!(status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer["created"], false);
    assert_eq!(s3.keys("fleet-a").await, vec![stored.clone()]);

    // A body that is not what was declared: refused, nothing stored.
    let other = image(9 * 1024 * 1024, 8);
    let (status, answer) = upload(&server, &other, &sha256).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer:?}");
    assert_eq!(answer["error"]["code"], "hash_mismatch");
    assert_eq!(s3.keys("fleet-a").await, vec![stored]);

    // The object store goes away under the running server: an upload is a
    // clear 503 and leaves no artifact row behind.
    drop(s3);
    let lost = image(1024 * 1024, 9);
    let lost_sha = hex::encode(Sha256::digest(&lost));
    let (status, answer) = upload(&server, &lost, &lost_sha).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer:?}");
    assert_eq!(answer["error"]["code"], "artifact_storage_unavailable");
    let download = server
        .http
        .get(format!("{}/api/v1/artifacts/{lost_sha}", server.base))
        .bearer_auth(&server.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(
        download.status(),
        StatusCode::NOT_FOUND,
        "no row was stored"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_follow_short_lived_presigned_urls_and_verify_every_byte() {
    let Some(mut s3) = S3::start() else { return };
    s3.authentication(false);
    let mut settings = s3.settings("fleet-b");
    settings.presign = Some(std::time::Duration::from_secs(120));
    let server = Server::start_with(with_s3(settings)).await;
    let url = server.device_url();
    let mut device = enrolled(&server, &url, "dev-s3", "rev2", "1.0.0").await;
    device.config.downloads.allow_http_redirects = true;
    let new = image(9 * 1024 * 1024 + 3, 1);
    let sha256 = hex::encode(Sha256::digest(&new));
    offer_release(&server, "dev-s3", "1.1.0", "rev2", &new).await;

    // What the device listener answers: a redirect to a pre-signed URL that
    // expires, carries no credential of ours but its signature, and is not
    // cached; following it needs no device certificate.
    let state = &device.config.state_dir;
    let mut pem = std::fs::read(state.join("device.crt")).unwrap();
    pem.push(b'\n');
    pem.extend(std::fs::read(state.join("device.key")).unwrap());
    let ca = reqwest::Certificate::from_pem(server.ca_pem().await.as_bytes()).unwrap();
    let mtls = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .identity(reqwest::Identity::from_pem(&pem).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let answer = mtls
        .get(format!("{url}/tuf/targets/{sha256}.fw.img"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(answer.headers()["cache-control"], "no-store");
    let location = answer.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with(&format!(
            "{}/{}/fleet-b/sha256/{sha256}?",
            s3.endpoint, s3.bucket
        )),
        "{location}"
    );
    assert!(location.contains("X-Amz-Expires=120"), "{location}");
    assert!(location.contains("X-Amz-Signature="), "{location}");
    assert!(!location.contains(&s3.secret), "the secret never leaves");
    let ranged = reqwest::Client::new()
        .get(&location)
        .header("range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(&ranged.bytes().await.unwrap()[..], &new[100..200]);
    // An artifact nobody uploaded is not signed for.
    let missing = mtls
        .get(format!("{url}/tuf/targets/{}.fw.img", "0".repeat(64)))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    // The real agent follows the redirect, verifies and installs.
    let mut agent = device.agent();
    assert_eq!(
        agent.poll().await.unwrap(),
        PollOutcome::RebootRequired("1.1.0".into())
    );
    assert!(device.slot_bytes("b") == new, "slot B holds the image");

    // An agent that may not follow plain-http redirects does not.
    let other = enrolled(&server, &url, "dev-s3-strict", "rev2", "1.0.0").await;
    support::roll_out(&server, "dev-s3-strict", "1.1.0", "rev2").await;
    let refused = other.agent().poll().await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.to_string().contains("http://")),
        "{refused:?}"
    );
    assert_eq!(other.slot_bytes("b"), b"", "nothing written");

    // Bytes changed in the bucket behind the server's back: the agent
    // following the pre-signed URL still refuses them.
    let third = enrolled(&server, &url, "dev-s3-third", "rev2", "1.0.0").await;
    let mut third = third;
    third.config.downloads.allow_http_redirects = true;
    let mut evil = new.clone();
    evil[new.len() / 2] ^= 0xff;
    s3.client()
        .put(
            &Path::from(format!("fleet-b/sha256/{sha256}").as_str()),
            evil.into(),
        )
        .await
        .unwrap();
    support::roll_out(&server, "dev-s3-third", "1.1.0", "rev2").await;
    let outcome = third.agent().poll().await.unwrap();
    assert!(
        matches!(outcome, PollOutcome::Refused(_)),
        "tampered bytes are refused: {outcome:?}"
    );
    assert_eq!(third.slot_bytes("b"), b"", "never written to the slot");
    server.stop().await;
}

/// A server that must not start; its error, as the operator would read it.
async fn refused_start(settings: S3Settings) -> String {
    let dir = tempfile::tempdir().unwrap();
    let url = ServerConfig::default_database_url(dir.path());
    fleetward_server::init::initialize(dir.path(), &url, time::OffsetDateTime::now_utc())
        .await
        .unwrap();
    let mut config = ServerConfig {
        data_dir: dir.path().to_owned(),
        database_url: url,
        listen: "127.0.0.1:0".parse().unwrap(),
        device_listen: "127.0.0.1:0".parse().unwrap(),
        max_body_bytes: ServerConfig::DEFAULT_MAX_BODY_BYTES,
        identity: Default::default(),
        releases: Default::default(),
        monitor: Default::default(),
        rollout_tick: std::time::Duration::from_millis(50),
    };
    config.releases.s3 = Some(settings);
    match fleetward_server::start(config).await {
        Ok(_) => panic!("the server started"),
        Err(error) => format!("{error:#}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_or_wrong_credentials_stop_the_server_clearly() {
    let Some(s3) = S3::start() else { return };
    let mut missing = s3.settings("x");
    missing.url = "s3://no-such-bucket/x".into();
    let error = refused_start(missing).await;
    assert!(
        error.contains("artifact store s3://no-such-bucket/x does not answer"),
        "{error}"
    );
    assert!(!error.contains(&s3.secret), "{error}");

    let mut wrong = s3.settings("fleet-c");
    wrong.secret_access_key = Some("not-the-secret-0123456789".into());
    let error = refused_start(wrong).await;
    assert!(
        error.contains("s3://fleetward-artifacts/fleet-c does not answer"),
        "{error}"
    );
    assert!(!error.contains("not-the-secret"), "{error}");

    let mut unknown = s3.settings("fleet-c");
    unknown.access_key_id = Some("AKIAUNKNOWNUNKNOWN00".into());
    let error = refused_start(unknown).await;
    assert!(error.contains("does not answer"), "{error}");

    let mut bad = s3.settings("fleet-c");
    bad.url = "s3://Bad_Bucket".into();
    let error = refused_start(bad).await;
    assert!(error.contains("invalid bucket name"), "{error}");

    let mut forever = s3.settings("fleet-c");
    forever.presign = Some(std::time::Duration::from_secs(7 * 24 * 3600));
    let error = refused_start(forever).await;
    assert!(error.contains("pre-signed URLs must live"), "{error}");
    assert_eq!(
        s3.keys("fleet-c").await,
        Vec::<String>::new(),
        "nothing stored"
    );
}
