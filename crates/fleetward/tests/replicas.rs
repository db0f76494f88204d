//! Three `fleetward server` processes on one private PostgreSQL behave as
//! one server. The operator's steps go to the replicas in turn; simulated
//! devices (the real agent code, mutual TLS end to end) reach them through a
//! round-robin TCP balancer that passes TLS through untouched, as the
//! deployment guide recommends. Half-way through a phased rollout one
//! replica is killed with SIGKILL (no graceful shutdown, requests cut
//! mid-flight); the rollout completes on the others and the database shows
//! every device updated exactly once: one succeeded execution each, no
//! execution state entered twice, each phase advanced once, the rollout
//! completed once, and the security-event chain verifies.
//!
//! Skipped loudly without PostgreSQL binaries; CI requires them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_fleetward");
const DEVICES: usize = 24;

fn fleetward(data_dir: &Path) -> Command {
    let mut command = Command::new(BIN);
    for (key, _) in std::env::vars() {
        if key.starts_with("FLEETWARD_") {
            command.env_remove(key);
        }
    }
    command.arg("--data-dir").arg(data_dir);
    command.stdin(Stdio::null());
    command
}

fn run(command: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = command.output().expect("running fleetward");
    (
        status.code().expect("exited, not killed"),
        String::from_utf8(stdout).unwrap(),
        String::from_utf8(stderr).unwrap(),
    )
}

/// One `fleetward server` process.
struct Replica {
    child: Child,
    operator: SocketAddr,
    device: SocketAddr,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Replica {
    /// Starts a replica on the shared data dir (keys) and database, and
    /// learns its addresses from `server.json`, which it writes once bound.
    fn start(data_dir: &Path, url: &str) -> Replica {
        let json = data_dir.join("server.json");
        let _ = std::fs::remove_file(&json);
        let child = fleetward(data_dir)
            .args(["server", "--database-url", url])
            .args(["--listen", "127.0.0.1:0", "--device-listen", "127.0.0.1:0"])
            .args(["--rollout-tick", "200ms", "--log", "warn"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        // Start-up readiness, not a timing assertion: a generous bound.
        let deadline = Instant::now() + Duration::from_secs(120);
        let addrs: Value = loop {
            if let Ok(text) = std::fs::read_to_string(&json)
                && let Ok(value) = serde_json::from_str(&text)
            {
                break value;
            }
            assert!(Instant::now() < deadline, "replica never wrote server.json");
            std::thread::sleep(Duration::from_millis(50));
        };
        let addr = |k: &str| addrs[k].as_str().unwrap().parse().unwrap();
        Replica {
            operator: addr("operator"),
            device: addr("device"),
            child,
        }
    }

    fn base(&self) -> String {
        format!("http://{}", self.operator)
    }
}

/// A TCP balancer: each connection goes to the next replica in turn; a
/// replica that refuses the connection (killed) is skipped, as a balancer's
/// health check would. TLS passes through, so devices authenticate to the
/// replica itself with their certificates.
struct Balancer {
    addr: SocketAddr,
    served: Arc<Vec<AtomicUsize>>,
}

impl Balancer {
    async fn start(backends: Vec<SocketAddr>) -> Balancer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let served: Arc<Vec<AtomicUsize>> =
            Arc::new(backends.iter().map(|_| AtomicUsize::new(0)).collect());
        let next = Arc::new(Mutex::new(0usize));
        let counts = served.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                let backends = backends.clone();
                let next = next.clone();
                let counts = counts.clone();
                tokio::spawn(async move {
                    let first = {
                        let mut next = next.lock().unwrap();
                        let first = *next;
                        *next = (first + 1) % backends.len();
                        first
                    };
                    for i in 0..backends.len() {
                        let n = (first + i) % backends.len();
                        if let Ok(mut upstream) = tokio::net::TcpStream::connect(backends[n]).await
                        {
                            counts[n].fetch_add(1, Ordering::Relaxed);
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                            return;
                        }
                    }
                });
            }
        });
        Balancer { addr, served }
    }
}

struct Operator {
    data_dir: PathBuf,
    token: String,
}

impl Operator {
    /// The CLI against one replica.
    fn cli(&self, replica: &Replica, args: &[&str]) -> Value {
        let (code, out, err) = run(fleetward(&self.data_dir)
            .env("FLEETWARD_TOKEN", &self.token)
            .args(["--json", "--server", &replica.base()])
            .args(args));
        assert_eq!(code, 0, "{args:?}: {err}");
        serde_json::from_str(&out).unwrap_or(Value::Null)
    }

    async fn get(&self, replica: &Replica, path: &str) -> Value {
        let response = reqwest::Client::new()
            .get(format!("{}{path}", replica.base()))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        response.json().await.unwrap()
    }
}

fn psql(url: &str, sql: &str) -> String {
    let pg = fleetward_testpg::shared().unwrap();
    let database = url.rsplit('/').next().unwrap();
    pg.psql(database, sql).unwrap().trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_completes_through_three_replicas_with_one_killed_half_way() {
    let Some(url) = fleetward_testpg::fresh_database() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (code, out, err) = run(fleetward(&data).args(["--json", "init", "--database-url", &url]));
    assert_eq!(code, 0, "init: {err}");
    let operator = Operator {
        data_dir: data.clone(),
        token: serde_json::from_str::<Value>(&out).unwrap()["admin_token"]
            .as_str()
            .unwrap()
            .to_owned(),
    };
    // One after the other: the first creates the online keys in the shared
    // data dir, the others read them.
    let mut replicas: Vec<Option<Replica>> =
        (0..3).map(|_| Some(Replica::start(&data, &url))).collect();
    let live = |replicas: &Vec<Option<Replica>>, n: usize| -> usize {
        let alive: Vec<usize> = (0..replicas.len())
            .filter(|i| replicas[*i].is_some())
            .collect();
        alive[n % alive.len()]
    };

    // The release manager's steps, each through another replica.
    let keys = dir.path().join("offline-keys");
    let keys_arg = keys.to_str().unwrap();
    let (code, _, err) = run(fleetward(&data).args(["keys", "init", "--dir", keys_arg]));
    assert_eq!(code, 0, "keys init: {err}");
    let r = |replicas: &Vec<Option<Replica>>, n: usize| live(replicas, n);
    operator.cli(
        replicas[r(&replicas, 0)].as_ref().unwrap(),
        &["keys", "root", "--dir", keys_arg],
    );
    let image = dir.path().join("fw.img");
    std::fs::write(&image, fleetward_image()).unwrap();
    operator.cli(
        replicas[r(&replicas, 1)].as_ref().unwrap(),
        &[
            "release",
            "create",
            "--version",
            "1.1.0",
            "--hardware",
            "sim",
            "--artifact",
            image.to_str().unwrap(),
            "--quiet",
        ],
    );
    operator.cli(
        replicas[r(&replicas, 2)].as_ref().unwrap(),
        &["release", "sign", "1.1.0", "--keys", keys_arg],
    );
    operator.cli(
        replicas[r(&replicas, 0)].as_ref().unwrap(),
        &["release", "publish", "1.1.0"],
    );
    let token = operator.cli(
        replicas[r(&replicas, 1)].as_ref().unwrap(),
        &[
            "enroll-token",
            "create",
            "--uses",
            &DEVICES.to_string(),
            "--expires",
            "1h",
        ],
    )["token"]
        .as_str()
        .unwrap()
        .to_owned();

    // Devices reach every replica through the balancer.
    let balancer = Balancer::start(
        replicas
            .iter()
            .map(|r| r.as_ref().unwrap().device)
            .collect(),
    )
    .await;
    let ca_pem = {
        let store = fleetward_store::open(&url).await.unwrap();
        let ca = store.ca().await.unwrap().unwrap().cert_pem;
        store.close().await;
        ca
    };
    let root_json = reqwest::Client::new()
        .get(format!(
            "{}/tuf/metadata/1.root.json",
            replicas[r(&replicas, 2)].as_ref().unwrap().base()
        ))
        .bearer_auth(&operator.token)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    let sim = fleetward_agent::sim::SimConfig {
        server: format!("https://{}", balancer.addr),
        ca_pem: ca_pem.into_bytes(),
        root_json,
        token,
        devices: DEVICES,
        id_prefix: "replica-".into(),
        hardware: "sim".into(),
        initial_version: "1.0.0".into(),
        rounds: 0,
        concurrency: 6,
        fail_rate: 0.0,
        rollback_rate: 0.0,
        offline_rate: 0.0,
        fail_devices: Vec::new(),
        rollback_devices: Vec::new(),
        work_dir: dir.path().join("devices"),
    };
    let mut fleet = fleetward_agent::sim::SimFleet::enrol(&sim).await.unwrap();
    assert_eq!(fleet.stats().summary()["enrolled"], DEVICES as u64);

    let created = operator.cli(
        replicas[r(&replicas, 2)].as_ref().unwrap(),
        &[
            "rollout",
            "create",
            "--release",
            "1.1.0",
            "--target",
            r#"hw = "sim""#,
            "--phases",
            "25%,50%,100%",
            "--soak",
            "1s",
            "--success-threshold",
            "90%",
            "--max-failures",
            "20%",
            "--timeout",
            "10m",
        ],
    );
    assert_eq!(created["queued"], DEVICES as u64, "{created}");
    let id = created["rollout"]["id"].as_str().unwrap().to_owned();

    // Rounds of polls; the operator watches through the replicas in turn.
    let mut killed = None;
    let mut state = String::new();
    // A bound, not a timing assertion: the killed replica's lease on the
    // rollout engine must expire (30 s) before another replica ticks.
    let deadline = Instant::now() + Duration::from_secs(300);
    for round in 0.. {
        assert!(
            Instant::now() < deadline,
            "the rollout never completed: {state}"
        );
        fleet.round(&sim).await;
        let status = operator
            .get(
                replicas[live(&replicas, round)].as_ref().unwrap(),
                &format!("/api/v1/rollouts/{id}"),
            )
            .await;
        state = status["rollout"]["state"]
            .as_str()
            .or(status["state"].as_str())
            .unwrap_or_default()
            .to_owned();
        let succeeded = status["totals"]["succeeded"].as_u64().unwrap_or(0);
        if killed.is_none() && succeeded >= (DEVICES / 4) as u64 {
            // Half-way: the replica running the rollout engine (it holds
            // the lease, named by its process id) dies at once.
            let holder = engine_holder(&url);
            let n = (0..replicas.len())
                .find(|n| {
                    replicas[*n]
                        .as_ref()
                        .is_some_and(|r| holder.starts_with(&format!("pid{}-", r.child.id())))
                })
                .unwrap_or_else(|| panic!("no replica holds the engine lease: {holder:?}"));
            let mut victim = replicas[n].take().unwrap();
            victim.child.kill().unwrap(); // SIGKILL
            victim.child.wait().unwrap();
            killed = Some((succeeded, holder));
        }
        match state.as_str() {
            "completed" => break,
            "running" => {}
            other => panic!("the rollout is {other}: {status}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (at, dead_holder) = killed.expect("a replica was killed");
    assert!(at < DEVICES as u64, "killed half-way: {at}");
    let holder = engine_holder(&url);
    assert_ne!(
        holder, dead_holder,
        "another replica took the rollout engine over"
    );
    assert_eq!(state, "completed");
    fleet.flush().await;
    let stats = fleet.stats().summary();
    assert_eq!(stats["refused"], 0, "{stats}");

    // Every replica served devices before the kill.
    for (n, served) in balancer.served.iter().enumerate() {
        assert!(
            served.load(Ordering::Relaxed) > 0,
            "replica {n} served no device"
        );
    }

    // Nothing lost, nothing done twice.
    let seq = psql(&url, &format!("SELECT seq FROM rollouts WHERE id = '{id}'"));
    assert_eq!(
        psql(
            &url,
            &format!(
                "SELECT state || ':' || count(*) FROM rollout_executions \
                 WHERE rollout_seq = {seq} GROUP BY state"
            )
        ),
        format!("succeeded:{DEVICES}"),
        "one succeeded execution per device"
    );
    assert_eq!(
        psql(
            &url,
            &format!(
                "SELECT count(*) FROM execution_transitions t \
                 JOIN rollout_executions e ON e.seq = t.execution_seq \
                 WHERE e.rollout_seq = {seq} \
                 GROUP BY t.execution_seq, t.attempt, t.to_state HAVING count(*) > 1"
            )
        ),
        "",
        "no execution entered a state twice"
    );
    assert_eq!(
        psql(
            &url,
            &format!(
                "SELECT count(*) FROM execution_transitions t \
                 JOIN rollout_executions e ON e.seq = t.execution_seq \
                 WHERE e.rollout_seq = {seq} AND t.to_state = 'succeeded'"
            )
        ),
        DEVICES.to_string()
    );
    assert_eq!(
        psql(
            &url,
            "SELECT count(*) FROM devices WHERE hardware = 'sim' AND version = '1.1.0'"
        ),
        DEVICES.to_string(),
        "every device runs the release"
    );
    assert_eq!(
        psql(
            &url,
            &format!(
                "SELECT string_agg(detail, ' ' ORDER BY seq) FROM audit_log \
                 WHERE action = 'rollout.advance' AND target = 'rollout:{id}'"
            )
        ),
        r#"{"to_phase":1} {"to_phase":2}"#,
        "each phase advanced once"
    );
    assert_eq!(
        psql(
            &url,
            &format!(
                "SELECT count(*) FROM audit_log WHERE action = 'rollout.complete' AND target = 'rollout:{id}'"
            )
        ),
        "1",
        "completed once"
    );
    let (code, out, err) = run(fleetward(&data).args(["events", "verify", "--database-url", &url]));
    assert_eq!(code, 0, "the event chain verifies: {out}{err}");
    drop(replicas);
}

/// Who holds the rollout engine's lease (`pid<N>-<random>`).
fn engine_holder(url: &str) -> String {
    psql(
        url,
        "SELECT holder FROM leases WHERE name = 'rollout-engine'",
    )
}

/// A deterministic stand-in for a firmware image (256 KiB).
fn fleetward_image() -> Vec<u8> {
    (0..256 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}
