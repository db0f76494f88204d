//! A real server on 127.0.0.1:0 with a TUF image repository whose offline
//! keys live here, real agents enrolled with it, and a TCP relay that can
//! cut connections or go offline (TLS passes through it untouched).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod hostile;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use fleetward_agent::config::{AgentConfig, BootloaderConfig, InstallerConfig, Limits};
use fleetward_server::{RunningServer, ServerConfig};
use fleetward_tuf::{
    Expiry, PublicKey, ROLE_ROOT, ROLE_SNAPSHOT, ROLE_TARGETS, ROLE_TIMESTAMP, Root, Signed,
    SigningKey, Targets,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use time::{Duration, OffsetDateTime};

pub struct Server {
    pub dir: tempfile::TempDir,
    pub server: Option<RunningServer>,
    pub base: String,
    pub admin: String,
    pub http: reqwest::Client,
    pub root_keys: Vec<SigningKey>,
    pub targets_keys: Vec<SigningKey>,
    /// The signed root v1, as provisioned on devices.
    pub root_bytes: Vec<u8>,
    /// Keys of delegated targets roles (product lines), by role.
    pub delegated_keys: std::sync::Mutex<std::collections::BTreeMap<String, Vec<SigningKey>>>,
}

fn key(n: u8) -> SigningKey {
    SigningKey::from_seed(&[n; 32]).unwrap()
}

impl Server {
    /// A server whose image repository has a root (2 of 3 root keys,
    /// 2 of 3 targets keys, the server's online snapshot/timestamp keys).
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// [`Server::start`] with settings changed first (e.g. S3 artifacts).
    pub async fn start_with(adjust: impl FnOnce(&mut ServerConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = ServerConfig::default_database_url(dir.path());
        let init = fleetward_server::init::initialize(dir.path(), &url, OffsetDateTime::now_utc())
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
            // Rollouts queue and offer within a tick; tests should not wait.
            rollout_tick: std::time::Duration::from_millis(50),
        };
        adjust(&mut config);
        let server = fleetward_server::start(config).await.unwrap();
        let base = format!("http://{}", server.addrs.operator);
        let mut this = Server {
            dir,
            server: Some(server),
            base,
            admin: init.admin_token,
            http: reqwest::Client::new(),
            root_keys: (1..=3).map(key).collect(),
            targets_keys: (4..=6).map(key).collect(),
            root_bytes: Vec::new(),
            delegated_keys: Default::default(),
        };
        let online = this.get("/api/v1/tuf/online-keys").await;
        let online: (PublicKey, PublicKey) = (
            serde_json::from_value(online["snapshot"].clone()).unwrap(),
            serde_json::from_value(online["timestamp"].clone()).unwrap(),
        );
        let public = |keys: &[SigningKey]| keys.iter().map(SigningKey::public).collect::<Vec<_>>();
        let root = Root::new(
            1,
            Expiry::at(OffsetDateTime::now_utc() + Duration::days(365)),
            &[
                (ROLE_ROOT, &public(&this.root_keys), 2),
                (ROLE_TARGETS, &public(&this.targets_keys), 2),
                (ROLE_SNAPSHOT, std::slice::from_ref(&online.0), 1),
                (ROLE_TIMESTAMP, std::slice::from_ref(&online.1), 1),
            ],
        )
        .unwrap();
        let bytes = Signed::sign(root, &[&this.root_keys[0], &this.root_keys[1]])
            .unwrap()
            .to_bytes()
            .unwrap();
        let (status, body) = this.raw_post("/api/v1/tuf/root", bytes.clone(), &[]).await;
        assert_eq!(status, StatusCode::OK, "{body:?}");
        this.root_bytes = bytes;
        this
    }

    pub async fn get(&self, path: &str) -> Value {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.admin)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "GET {path}: {}",
            response.status()
        );
        response.json().await.unwrap()
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.admin)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn raw_post(
        &self,
        path: &str,
        body: Vec<u8>,
        headers: &[(&str, String)],
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.admin)
            .header("content-type", "application/json")
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub fn device_url(&self) -> String {
        format!("https://{}", self.server.as_ref().unwrap().addrs.device)
    }

    pub fn device_addr(&self) -> std::net::SocketAddr {
        self.server.as_ref().unwrap().addrs.device
    }

    pub async fn ca_pem(&self) -> String {
        let url = ServerConfig::default_database_url(self.dir.path());
        let store = fleetward_store::SqliteStore::open(&url).await.unwrap();
        use fleetward_store::IdentityStore as _;
        let ca = store.ca().await.unwrap().unwrap().cert_pem;
        use fleetward_store::Store as _;
        store.close().await;
        ca
    }

    pub async fn register(&self, id: &str, hardware: &str, version: Option<&str>) {
        let mut body = json!({"id": id, "hardware": hardware, "status": "active"});
        if let Some(version) = version {
            body["version"] = json!(version);
        }
        let (status, answer) = self.post("/api/v1/devices", body).await;
        assert_eq!(status, StatusCode::CREATED, "{answer:?}");
    }

    pub async fn enroll_token(&self, uses: u32) -> String {
        let (status, answer) = self
            .post(
                "/api/v1/enroll-tokens",
                json!({"uses": uses, "expires_in_secs": 3600}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{answer:?}");
        answer["token"].as_str().unwrap().to_owned()
    }

    /// Uploads `image`, creates release `version` for `hardware`, signs it
    /// with 2 of 3 targets keys and publishes it.
    pub async fn publish(&self, version: &str, hardware: &str, image: &[u8]) {
        self.create_release(version, hardware, image).await;
        self.sign_and_publish(version).await;
    }

    /// Uploads `image` and creates the draft release `version` of it.
    pub async fn create_release(&self, version: &str, hardware: &str, image: &[u8]) {
        let sha256 = hex::encode(Sha256::digest(image));
        let (status, answer) = self
            .raw_post(
                "/api/v1/artifacts",
                image.to_vec(),
                &[("x-fleetward-sha256", sha256.clone())],
            )
            .await;
        assert!(status.is_success(), "{answer:?}");
        let (status, answer) = self
            .post(
                "/api/v1/releases",
                json!({"version": version, "hardware": hardware, "artifact_sha256": sha256, "file_name": "fw.img"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{answer:?}");
    }

    /// Signs release `version` with the keys of the role that signs it
    /// (2 of 3 targets keys, or its product line's) and publishes it.
    pub async fn sign_and_publish(&self, version: &str) {
        let request = self
            .get(&format!("/api/v1/releases/{version}/signing-request"))
            .await;
        let targets: Targets = serde_json::from_value(request["signed"].clone()).unwrap();
        // A product line's releases are signed by its delegated role.
        let signers = match request["role"].as_str() {
            Some(role) => self.delegated_keys.lock().unwrap()[role].clone(),
            None => vec![self.targets_keys[0].clone(), self.targets_keys[2].clone()],
        };
        let signed = Signed::sign(targets, &signers.iter().collect::<Vec<_>>())
            .unwrap()
            .to_bytes()
            .unwrap();
        let (status, answer) = self
            .raw_post(
                &format!("/api/v1/releases/{version}/signature"),
                signed,
                &[],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{answer:?}");
        let (status, answer) = self
            .post(&format!("/api/v1/releases/{version}/publish"), json!({}))
            .await;
        assert_eq!(status, StatusCode::OK, "{answer:?}");
    }

    /// The body of `POST /api/v1/tuf/delegations` that delegates `paths`
    /// to `role` with `keys` (threshold `threshold`), moving the releases
    /// it covers out of the top-level listing: new top-level targets signed
    /// by `top_signers`, the role's metadata signed by `role_signers`.
    pub async fn delegation_upload(
        &self,
        role: &str,
        paths: &[&str],
        keys: &[PublicKey],
        threshold: u64,
        top_signers: &[&SigningKey],
        role_signers: &[&SigningKey],
    ) -> Value {
        let expires = Expiry::at(OffsetDateTime::now_utc() + Duration::days(30));
        let current = self
            .http
            .get(format!("{}/tuf/metadata/targets.json", self.base))
            .bearer_auth(&self.admin)
            .send()
            .await
            .unwrap();
        let mut top = if current.status() == StatusCode::NOT_FOUND {
            Targets::new(0, expires, Default::default())
        } else {
            let current: Value = current.json().await.unwrap();
            serde_json::from_value(current["signed"].clone()).unwrap()
        };
        top.version += 1;
        top.expires = expires;
        let mut delegations = top.delegations.take().unwrap_or_default();
        let mut keyids = Vec::new();
        for key in keys {
            let id = fleetward_tuf::key_id(key).unwrap();
            delegations.keys.insert(id.clone(), key.clone());
            keyids.push(id);
        }
        delegations.roles.push(fleetward_tuf::DelegatedRole {
            name: role.to_owned(),
            keyids,
            threshold,
            terminating: true,
            paths: Some(paths.iter().map(|p| (*p).to_owned()).collect()),
            path_hash_prefixes: None,
        });
        let covered: Vec<String> = top
            .targets
            .keys()
            .filter(|t| paths.iter().any(|p| fleetward_tuf::path_matches(p, t)))
            .cloned()
            .collect();
        let mut listing = std::collections::BTreeMap::new();
        for target in covered {
            listing.insert(target.clone(), top.targets.remove(&target).unwrap());
        }
        top.delegations = Some(delegations);
        let role_meta = Targets::new(1, expires, listing);
        json!({
            "targets": serde_json::to_value(Signed::sign(top, top_signers).unwrap()).unwrap(),
            "roles": {
                role: serde_json::to_value(Signed::sign(role_meta, role_signers).unwrap()).unwrap(),
            },
        })
    }

    /// Delegates `hardware/*/*` to a role named `hardware` with `keys`
    /// (threshold 1), signed by 2 of 3 targets keys; later releases of that
    /// hardware are signed with `keys`.
    pub async fn delegate(&self, hardware: &str, keys: Vec<SigningKey>) {
        let public: Vec<PublicKey> = keys.iter().map(SigningKey::public).collect();
        let pattern = format!("{hardware}/*/*");
        let upload = self
            .delegation_upload(
                hardware,
                &[&pattern],
                &public,
                1,
                &[&self.targets_keys[0], &self.targets_keys[2]],
                &keys.iter().collect::<Vec<_>>(),
            )
            .await;
        let (status, answer) = self.post("/api/v1/tuf/delegations", upload).await;
        assert_eq!(status, StatusCode::OK, "{answer:?}");
        self.delegated_keys
            .lock()
            .unwrap()
            .insert(hardware.to_owned(), keys);
    }

    /// Overwrites the stored artifact with `image` by other bytes of the
    /// same length (a compromised mirror or disk).
    pub fn tamper_artifact(&self, image: &[u8]) {
        fn walk(dir: &Path, image: &[u8], found: &mut usize) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, image, found);
                } else if std::fs::read(&path).unwrap() == image {
                    let mut evil = image.to_vec();
                    evil[image.len() / 2] ^= 0xff;
                    std::fs::write(&path, evil).unwrap();
                    *found += 1;
                }
            }
        }
        let mut found = 0;
        walk(&self.dir.path().join("artifacts"), image, &mut found);
        assert!(found > 0, "the artifact is stored somewhere");
    }

    /// Security-event kinds logged for `device`.
    pub async fn device_events(&self, device: &str) -> Vec<String> {
        let page = self
            .get(&format!("/api/v1/events?device={device}&limit=1000"))
            .await;
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap().to_owned())
            .collect()
    }

    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await.unwrap();
        }
    }
}

/// THE way a test offers an update to a device: today the director offers
/// the highest published release for the hardware; after the rollouts
/// work it will create a rollout for the device instead.
pub async fn offer_release(
    server: &Server,
    device: &str,
    version: &str,
    hardware: &str,
    image: &[u8],
) {
    server.publish(version, hardware, image).await;
    roll_out(server, device, version, hardware).await;
}

/// Rolls published `version` out to `device` (or, with a trailing `*`,
/// to all of `hardware`), and waits until a named device's offer is out.
pub async fn roll_out(server: &Server, device: &str, version: &str, hardware: &str) {
    // Devices get updates only through rollouts: one phase, continuous so
    // that devices enrolling later are reached too.
    let target = match device.strip_suffix('*') {
        Some(_) => format!("hw = \"{hardware}\""),
        None => format!("id = \"{device}\""),
    };
    let created = server
        .http
        .post(format!("{}/api/v1/rollouts", server.base))
        .bearer_auth(&server.admin)
        .json(&json!({
            "release": version,
            "target": target,
            "phases": "100%",
            "continuous": true,
            // These tests are about the device; a failed install is retried
            // rather than pausing the rollout.
            "max_failures": "100%",
            "retries": 5,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        created.status(),
        StatusCode::CREATED,
        "creating the rollout"
    );
    let rollout: Value = created.json().await.unwrap();
    let id = rollout["rollout"]["id"].as_str().unwrap().to_owned();
    if device.ends_with('*') {
        return;
    }
    // Wait until the engine has let the device's execution out (queued,
    // then released within the phase: a tick or two).
    for _ in 0..200 {
        let rollout: Value = server
            .http
            .get(format!("{}/api/v1/rollouts/{id}", server.base))
            .bearer_auth(&server.admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let totals = &rollout["totals"];
        if totals["released"].as_u64().unwrap_or(0) + totals["in_progress"].as_u64().unwrap_or(0)
            > 0
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the rollout never let {device} out");
}

/// An image of `len` bytes that differs per `seed`.
pub fn image(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2654435761).to_le_bytes()[3] ^ seed)
        .collect()
}

/// A device's files: config, state dir, slots, bootloader environment.
pub struct Device {
    pub id: String,
    pub dir: tempfile::TempDir,
    pub config: AgentConfig,
}

impl Device {
    pub fn slot(&self, slot: &str) -> PathBuf {
        self.dir.path().join(format!("slot-{slot}"))
    }

    pub fn env_path(&self) -> PathBuf {
        self.dir.path().join("bootenv")
    }

    pub fn env(&self) -> std::collections::BTreeMap<String, String> {
        fleetward_agent::boot::parse_env(
            &std::fs::read_to_string(self.env_path()).unwrap_or_default(),
        )
    }

    pub fn slot_bytes(&self, slot: &str) -> Vec<u8> {
        std::fs::read(self.slot(slot)).unwrap_or_default()
    }

    /// The simulated bootloader runs: a reboot.
    pub fn reboot(&self) -> fleetward_agent::boot::Slot {
        fleetward_agent::boot::simulate_boot(&self.env_path()).unwrap()
    }

    pub fn agent(&self) -> fleetward_agent::Agent {
        fleetward_agent::Agent::open(self.config.clone()).unwrap()
    }
}

/// A device with A/B file slots (A holding `running`'s image) and the
/// file bootloader, configured for `server_url`, not yet enrolled.
pub async fn device(
    server: &Server,
    server_url: &str,
    id: &str,
    hardware: &str,
    running: &str,
) -> Device {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, server.ca_pem().await).unwrap();
    let root = dir.path().join("root.json");
    std::fs::write(&root, &server.root_bytes).unwrap();
    std::fs::write(dir.path().join("slot-a"), format!("image {running}")).unwrap();
    let config = AgentConfig {
        server: server_url.to_owned(),
        device_id: id.to_owned(),
        hardware: hardware.to_owned(),
        state_dir: dir.path().join("state"),
        ca_cert: ca,
        trusted_root: root,
        initial_version: Some(running.to_owned()),
        limits: Limits {
            request_timeout_secs: 10,
            ..Limits::default()
        },
        downloads: Default::default(),
        installer: InstallerConfig::AbFiles {
            slot_a: dir.path().join("slot-a"),
            slot_b: dir.path().join("slot-b"),
            bootloader: BootloaderConfig::File {
                path: dir.path().join("bootenv"),
            },
            boot_limit: 2,
        },
        health_check: None,
        reboot_command: None,
    };
    let device = Device {
        id: id.to_owned(),
        dir,
        config,
    };
    device.reboot();
    device
}

/// The device's unfinished execution, if any (as the rollout engine sees it).
pub async fn open_execution(server: &Server, device: &str) -> Option<String> {
    let url = ServerConfig::default_database_url(server.dir.path());
    let store = fleetward_store::SqliteStore::open(&url).await.unwrap();
    let id = fleetward_core::DeviceId::parse(device).unwrap();
    use fleetward_store::RolloutStore as _;
    let open = store.open_execution(&id).await.unwrap();
    use fleetward_store::Store as _;
    store.close().await;
    open.map(|e| format!("{e:?}"))
}

/// Waits until `device` has an update let out to it (continuous rollouts
/// reach a device enrolled after them on the engine's next ticks).
pub async fn wait_released(server: &Server, device: &str) {
    let url = ServerConfig::default_database_url(server.dir.path());
    let store = fleetward_store::SqliteStore::open(&url).await.unwrap();
    let id = fleetward_core::DeviceId::parse(device).unwrap();
    use fleetward_store::RolloutStore as _;
    for _ in 0..200 {
        if store
            .open_execution(&id)
            .await
            .unwrap()
            .is_some_and(|e| e.released_at.is_some())
        {
            use fleetward_store::Store as _;
            store.close().await;
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!(
        "no update was let out to {device}: {:#}",
        server.get("/api/v1/rollouts").await
    );
}

/// Registers and enrols a device through the agent's own enrolment.
pub async fn enrolled(
    server: &Server,
    server_url: &str,
    id: &str,
    hardware: &str,
    running: &str,
) -> Device {
    server.register(id, hardware, Some(running)).await;
    let device = device(server, server_url, id, hardware, running).await;
    let token = server.enroll_token(1).await;
    fleetward_agent::enroll::enroll(&device.config, &token)
        .await
        .unwrap();
    device
}

/// A TCP relay in front of the device listener. TLS passes through, so
/// the agent still talks to the real server; the relay can cut one
/// connection after some bytes (a dropped connection) or refuse all
/// (offline).
#[derive(Clone)]
pub struct Relay {
    pub addr: std::net::SocketAddr,
    pub offline: Arc<AtomicBool>,
    /// Cut the next connection that has sent this many bytes to the
    /// client (0: never); disarms itself after one cut.
    pub cut_after: Arc<AtomicU64>,
    pub cuts: Arc<AtomicU64>,
}

impl Relay {
    pub async fn start(upstream: std::net::SocketAddr) -> Self {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay = Relay {
            addr: listener.local_addr().unwrap(),
            offline: Arc::new(AtomicBool::new(false)),
            cut_after: Arc::new(AtomicU64::new(0)),
            cuts: Arc::new(AtomicU64::new(0)),
        };
        let this = relay.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if this.offline.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let this = this.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut cr, mut cw) = client.split();
                    let (mut sr, mut sw) = server.split();
                    let up = async {
                        let _ = tokio::io::copy(&mut cr, &mut sw).await;
                        let _ = sw.shutdown().await;
                    };
                    let down = async {
                        let mut buf = vec![0u8; 16 * 1024];
                        let mut sent = 0u64;
                        while let Ok(n) = sr.read(&mut buf).await {
                            if n == 0 {
                                break;
                            }
                            let limit = this.cut_after.load(Ordering::SeqCst);
                            if limit > 0 && sent + n as u64 > limit {
                                this.cut_after.store(0, Ordering::SeqCst);
                                this.cuts.fetch_add(1, Ordering::SeqCst);
                                return;
                            }
                            if cw.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                            sent += n as u64;
                        }
                        let _ = cw.shutdown().await;
                    };
                    // Either side ending ends the relayed connection (a cut
                    // must look like a dropped connection to the agent).
                    tokio::select! {
                        () = up => {}
                        () = down => {}
                    }
                });
            }
        });
        relay
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.addr.port())
    }
}

/// Refused offers: the inactive slot and the boot configuration are as
/// they were, and the server has the device's security event.
pub async fn assert_refused(
    server: &Server,
    device: &Device,
    outcome: fleetward_agent::PollOutcome,
    event: &str,
) -> fleetward_agent::Refusal {
    let fleetward_agent::PollOutcome::Refused(refusal) = outcome else {
        panic!("{}: expected a refusal, got {outcome:?}", device.id);
    };
    assert_eq!(device.slot_bytes("b"), b"", "{}: inactive slot", device.id);
    assert_eq!(
        device.slot_bytes("a"),
        b"image 1.0.0",
        "{}: running slot",
        device.id
    );
    assert_eq!(
        device.env().get(fleetward_agent::boot::VAR_TRY),
        None,
        "{}: boot slot not switched",
        device.id
    );
    assert!(
        server
            .device_events(&device.id)
            .await
            .iter()
            .any(|k| k == event),
        "{}: {event} in {:?}",
        device.id,
        server.device_events(&device.id).await
    );
    refusal
}
