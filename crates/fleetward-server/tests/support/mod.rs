//! A real server on 127.0.0.1:0 with a fresh SQLite data dir, and a client.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod console;

use std::sync::Arc;

use fleetward_core::Role;
use fleetward_server::{RunningServer, ServerConfig};
use fleetward_store::Store;
use reqwest::{Method, StatusCode};
use serde_json::Value;

pub struct TestServer {
    pub dir: tempfile::TempDir,
    /// SQLite in `dir` unless started with [`TestServer::start_on`].
    pub database_url: String,
    pub server: Option<RunningServer>,
    pub base: String,
    pub admin: String,
    pub http: reqwest::Client,
}

/// A device that enrolled for real: its certificate, its key (which the
/// server never saw) and an HTTPS client presenting them.
pub struct EnrolledDevice {
    pub id: String,
    pub cert_pem: String,
    pub key_pem: String,
    pub client: reqwest::Client,
}

pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
}

impl Answer {
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut ServerConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = ServerConfig::default_database_url(dir.path());
        Self::start_in(dir, url, adjust).await
    }

    /// A server on another database (a `postgres://` URL), initialised.
    pub async fn start_on(database_url: String) -> Self {
        Self::start_in(tempfile::tempdir().unwrap(), database_url, |_| {}).await
    }

    /// Another replica: a second server on this one's database and data
    /// dir (keys, artifacts), as replicas behind a load balancer share them.
    pub async fn replica(&self) -> RunningServer {
        let config = ServerConfig {
            data_dir: self.dir.path().to_owned(),
            database_url: self.database_url.clone(),
            listen: "127.0.0.1:0".parse().unwrap(),
            device_listen: "127.0.0.1:0".parse().unwrap(),
            max_body_bytes: ServerConfig::DEFAULT_MAX_BODY_BYTES,
            identity: Default::default(),
            releases: Default::default(),
            monitor: Default::default(),
            rollout_tick: std::time::Duration::from_millis(50),
        };
        fleetward_server::start(config).await.unwrap()
    }

    async fn start_in(
        dir: tempfile::TempDir,
        url: String,
        adjust: impl FnOnce(&mut ServerConfig),
    ) -> Self {
        let init =
            fleetward_server::init::initialize(dir.path(), &url, time::OffsetDateTime::now_utc())
                .await
                .unwrap();
        let mut config = ServerConfig {
            data_dir: dir.path().to_owned(),
            database_url: url.clone(),
            listen: "127.0.0.1:0".parse().unwrap(),
            device_listen: "127.0.0.1:0".parse().unwrap(),
            max_body_bytes: ServerConfig::DEFAULT_MAX_BODY_BYTES,
            identity: Default::default(),
            releases: Default::default(),
            monitor: Default::default(),
            // Fast, so tests wait for the rollout engine briefly.
            rollout_tick: std::time::Duration::from_millis(50),
        };
        adjust(&mut config);
        let url = config.database_url.clone();
        let server = fleetward_server::start(config).await.unwrap();
        let base = format!("http://{}", server.addrs.operator);
        TestServer {
            dir,
            database_url: url,
            server: Some(server),
            base,
            admin: init.admin_token,
            http: reqwest::Client::new(),
        }
    }

    /// A second handle on the same database, for checking what was stored
    /// and for planting records the API cannot make (an expired token).
    pub async fn store(&self) -> Arc<dyn Store> {
        fleetward_store::open(&self.database_url).await.unwrap()
    }

    pub async fn call(
        &self,
        token: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Answer {
        let mut request = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer { status, body }
    }

    pub async fn raw(
        &self,
        token: &str,
        method: Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Answer {
        let response = self
            .http
            .request(method, format!("{}{}", self.base, path))
            .bearer_auth(token)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        Answer {
            status,
            body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
        }
    }

    pub async fn get(&self, token: &str, path: &str) -> Answer {
        self.call(Some(token), Method::GET, path, None).await
    }

    pub async fn post(&self, token: &str, path: &str, body: Value) -> Answer {
        self.call(Some(token), Method::POST, path, Some(body)).await
    }

    pub async fn token_for(&self, role: Role) -> String {
        let answer = self
            .post(
                &self.admin,
                "/api/v1/tokens",
                serde_json::json!({ "name": format!("test {role}"), "role": role }),
            )
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.body);
        answer.body["token"].as_str().unwrap().to_owned()
    }

    pub async fn register(
        &self,
        id: &str,
        hardware: &str,
        version: Option<&str>,
        tags: &[(&str, &str)],
    ) {
        let tags: serde_json::Map<String, Value> = tags
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned())))
            .collect();
        let mut body =
            serde_json::json!({ "id": id, "hardware": hardware, "tags": tags, "status": "active" });
        if let Some(version) = version {
            body["version"] = Value::String(version.to_owned());
        }
        let answer = self.post(&self.admin, "/api/v1/devices", body).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.body);
    }

    pub async fn audit_len(&self) -> usize {
        let answer = self.get(&self.admin, "/api/v1/audit?limit=1000").await;
        answer.body["items"].as_array().unwrap().len()
    }

    pub async fn device_count(&self) -> u64 {
        self.get(&self.admin, "/api/v1/devices/count").await.body["count"]
            .as_u64()
            .unwrap()
    }

    /// The fleet CA certificate (PEM), as `init` recorded it.
    pub async fn ca_pem(&self) -> String {
        let store = self.store().await;
        let ca = store.ca().await.unwrap().unwrap().cert_pem;
        store.close().await;
        ca
    }

    /// An HTTPS client for the device listener that trusts only the fleet
    /// CA, optionally presenting a client certificate (PEM cert + key).
    pub async fn device_client(&self, identity: Option<(&str, &str)>) -> reqwest::Client {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(
                reqwest::Certificate::from_pem(self.ca_pem().await.as_bytes()).unwrap(),
            );
        if let Some((cert, key)) = identity {
            let pem = format!("{cert}\n{key}");
            builder = builder.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
        }
        builder.build().unwrap()
    }

    /// Enrols `id` through `POST /device/v1/enroll` the way a device does
    /// (its own key, a CSR, a one-use token) and returns its mTLS client.
    pub async fn enroll_device(&self, id: &str, hardware: &str) -> EnrolledDevice {
        let token = self
            .post(
                &self.admin,
                "/api/v1/enroll-tokens",
                serde_json::json!({"uses": 1, "expires_in_secs": 3600}),
            )
            .await;
        assert_eq!(token.status, StatusCode::CREATED, "{:?}", token.body);
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CommonName, id);
        params.distinguished_name = dn;
        params.subject_alt_names = vec![rcgen::SanType::URI(
            format!("urn:fleetward:device:{id}").try_into().unwrap(),
        )];
        let csr = params.serialize_request(&key).unwrap().pem().unwrap();
        let answer = self
            .device_client(None)
            .await
            .post(format!("{}/device/v1/enroll", self.device_base()))
            .json(&serde_json::json!({
                "token": token.body["token"],
                "csr": csr,
                "hardware": hardware,
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::CREATED);
        let body: Value = answer.json().await.unwrap();
        let cert_pem = body["certificate"].as_str().unwrap().to_owned();
        let key_pem = key.serialize_pem();
        let client = self.device_client(Some((&cert_pem, &key_pem))).await;
        EnrolledDevice {
            id: id.to_owned(),
            cert_pem,
            key_pem,
            client,
        }
    }

    /// Rolls `release` out to the devices `target` selects, all at once,
    /// and waits until the engine has let every one of them go out: the
    /// director names the release to each on its next poll.
    pub async fn offer_release(&self, release: &str, target: &str) -> String {
        let created = self
            .post(
                &self.admin,
                "/api/v1/rollouts",
                serde_json::json!({ "release": release, "target": target, "soak": "0" }),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
        let id = created.body["rollout"]["id"].as_str().unwrap().to_owned();
        let queued = created.body["queued"].as_u64().unwrap();
        self.wait_for_rollout(&id, |r| {
            r["totals"]["released"].as_u64().unwrap() + r["totals"]["in_progress"].as_u64().unwrap()
                >= queued
        })
        .await;
        id
    }

    /// Polls a rollout until `done` holds (the engine ticks every 50 ms
    /// here); gives up after a generous bound so a bug fails, not hangs.
    pub async fn wait_for_rollout(&self, id: &str, done: impl Fn(&Value) -> bool) -> Value {
        let mut last = Value::Null;
        for _ in 0..400 {
            let answer = self
                .get(&self.admin, &format!("/api/v1/rollouts/{id}"))
                .await;
            assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
            if done(&answer.body) {
                return answer.body;
            }
            last = answer.body;
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("rollout {id} never got there: {last:#}");
    }

    pub fn device_base(&self) -> String {
        format!("https://{}", self.server.as_ref().unwrap().addrs.device)
    }

    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await.unwrap();
        }
    }
}

pub fn audit() -> fleetward_store::AuditEntry {
    fleetward_store::AuditEntry {
        at: time::OffsetDateTime::now_utc(),
        actor: "test".into(),
        action: "test.plant".into(),
        target: "t".into(),
        source: "test".into(),
        detail: serde_json::json!({}),
    }
}

/// Plants releases `(version, hardware, state)`, each with its own artifact.
pub async fn plant_releases(
    server: &TestServer,
    releases: &[(&str, &str, fleetward_core::ReleaseState)],
) {
    let store = server.store().await;
    let now = time::OffsetDateTime::now_utc();
    for (n, (version, hardware, state)) in releases.iter().enumerate() {
        let byte = u8::try_from(n + 1).unwrap();
        let artifact = fleetward_store::ArtifactRecord {
            sha256: format!("{byte:02x}").repeat(32),
            sha512: format!("{byte:02x}").repeat(64),
            length: 1000 + u64::from(byte),
            created_at: now,
        };
        store.insert_artifact(&artifact, &audit()).await.unwrap();
        store
            .insert_release(
                &fleetward_store::ReleaseRecord {
                    version: (*version).into(),
                    hardware: (*hardware).into(),
                    state: fleetward_core::ReleaseState::Draft,
                    target_name: format!("{hardware}/{version}/fw.img"),
                    artifact_sha256: artifact.sha256.clone(),
                    sbom_sha256: None,
                    notes: String::new(),
                    created_at: now,
                    created_by: "test".into(),
                    updated_at: now,
                },
                &audit(),
            )
            .await
            .unwrap();
        let mut from = fleetward_core::ReleaseState::Draft;
        for step in [
            fleetward_core::ReleaseState::Signed,
            fleetward_core::ReleaseState::Published,
            *state,
        ] {
            if step == from
                || (step == fleetward_core::ReleaseState::Published
                    && *state == fleetward_core::ReleaseState::Signed)
            {
                continue;
            }
            store
                .publish_tuf(
                    &[],
                    &[fleetward_store::ReleaseTransition {
                        version: (*version).into(),
                        from,
                        to: step,
                        at: now,
                    }],
                    &audit(),
                )
                .await
                .unwrap();
            from = step;
            if step == *state {
                break;
            }
        }
    }
    store.close().await;
}
