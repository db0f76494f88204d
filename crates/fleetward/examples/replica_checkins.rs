//! Device check-ins per second with 1, 2 and 3 replicas on one PostgreSQL
//! (`bench/replicas.sh`). Why: replicas are how fleetward grows past one
//! machine, and this shows what the shared database and the lease-free
//! device path cost when replicas are added. A check-in is what an agent
//! polls, `GET /device/v1/director/targets.json` over mutual TLS (a device
//! row read, the poll-schedule monitor, the open-execution read); nothing is
//! offered, so it answers 404 as it does for most polls of a real fleet.
//!
//! A private PostgreSQL (`fleetward-testpg`), replicas started in this
//! process on one data dir, DEVICES enrolled devices with their own keys and
//! keep-alive connections, each device pinned to replica `n % k`. The
//! baseline is the same run's 1-replica figure. All replicas share this
//! machine's cores with the clients, so on a small machine the figure shows
//! the cost of spreading over replicas, not the gain of more machines.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fleetward_server::ServerConfig;

const DEVICES: usize = 64;
const SECONDS: u64 = 10;

#[tokio::main]
async fn main() {
    let pg = fleetward_testpg::PgServer::start().expect("PostgreSQL binaries");
    let url = pg.create_database();
    let dir = tempfile::tempdir().unwrap();
    let init =
        fleetward_server::init::initialize(dir.path(), &url, time::OffsetDateTime::now_utc())
            .await
            .unwrap();
    let mut replicas = Vec::new();
    for _ in 0..3 {
        let config = ServerConfig {
            data_dir: dir.path().to_owned(),
            database_url: url.clone(),
            listen: "127.0.0.1:0".parse().unwrap(),
            device_listen: "127.0.0.1:0".parse().unwrap(),
            max_body_bytes: ServerConfig::DEFAULT_MAX_BODY_BYTES,
            identity: Default::default(),
            releases: Default::default(),
            monitor: Default::default(),
            rollout_tick: fleetward_server::rollout::DEFAULT_TICK,
        };
        replicas.push(fleetward_server::start(config).await.unwrap());
    }
    let operator = reqwest::Client::new();
    let base = format!("http://{}", replicas[0].addrs.operator);
    let token: serde_json::Value = operator
        .post(format!("{base}/api/v1/enroll-tokens"))
        .bearer_auth(&init.admin_token)
        .json(&serde_json::json!({"uses": DEVICES, "expires_in_secs": 3600}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ca_pem = {
        let store = fleetward_store::open(&url).await.unwrap();
        let ca = store.ca().await.unwrap().unwrap().cert_pem;
        store.close().await;
        ca
    };
    let client = |identity: Option<&[u8]>| {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap());
        if let Some(pem) = identity {
            builder = builder.identity(reqwest::Identity::from_pem(pem).unwrap());
        }
        builder.build().unwrap()
    };
    let anonymous = client(None);
    let mut devices = Vec::new();
    for n in 0..DEVICES {
        let id = format!("bench-{n:04}");
        let (key, csr) = fleetward_agent::enroll::make_key_and_csr(&id).unwrap();
        let issued: serde_json::Value = anonymous
            .post(format!(
                "https://{}/device/v1/enroll",
                replicas[n % 3].addrs.device
            ))
            .json(&serde_json::json!({"token": token["token"], "csr": csr, "hardware": "rev2"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let mut pem = issued["certificate"].as_str().unwrap().as_bytes().to_vec();
        pem.push(b'\n');
        pem.extend_from_slice(key.as_bytes());
        devices.push(client(Some(&pem)));
    }

    println!("| replicas | check-ins/s | ratio to 1 replica | errors |");
    println!("|---:|---:|---:|---:|");
    let mut baseline = None;
    for k in 1..=3usize {
        let done = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        let until = Instant::now() + Duration::from_secs(SECONDS);
        let mut tasks = Vec::new();
        for (n, device) in devices.iter().enumerate() {
            let url = format!(
                "https://{}/device/v1/director/targets.json",
                replicas[n % k].addrs.device
            );
            let (device, done, errors) = (device.clone(), done.clone(), errors.clone());
            tasks.push(tokio::spawn(async move {
                while Instant::now() < until {
                    match device.get(&url).send().await {
                        Ok(r) if r.status().as_u16() == 404 || r.status().is_success() => {
                            let _ = r.bytes().await;
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let rate = done.load(Ordering::Relaxed) as f64 / SECONDS as f64;
        let base = *baseline.get_or_insert(rate);
        println!(
            "| {k} | {rate:.0} | {:.2} | {} |",
            rate / base,
            errors.load(Ordering::Relaxed)
        );
    }
    for replica in replicas {
        replica.shutdown().await.unwrap();
    }
    drop(pg);
}
