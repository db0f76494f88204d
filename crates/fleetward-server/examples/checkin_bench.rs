//! Device check-in benchmark (issue 6): devices polling
//! `GET /device/v1/director/targets.json` over mutual TLS, against a bare
//! axum + rustls endpoint with the same certificates, in the same run.
//!
//! Two modes:
//! - keep-alive: N connections (each its own enrolled device and client
//!   certificate), each sending the next request as soon as the answer
//!   arrived (wrk-style closed loop), for a fixed time; req/s and p99;
//! - reconnect: every check-in is a new TCP + TLS connection that resumes
//!   the device's previous TLS session (`connection: close`), C at a time.
//!
//! The bare endpoint is axum served over the same rustls configuration as
//! the device listener (fleet CA, device client verifier, same kind of
//! server certificate and session resumption), answering the route with a
//! constant body: everything but fleetward's own work on a check-in.
//!
//! The server runs on its own 2-thread runtime, as `fleetward server` does on
//! this machine; the load generator runs on a second 2-thread runtime (like
//! `wrk -t2`). Both endpoints are measured alternately, 3 rounds, median.
//!
//! Run: `bench/checkin.sh` (release build), or
//! `cargo run --release -p fleetward-server --example checkin_bench -- [secs] [connections,…] [reconnect-concurrency]`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use fleetward_server::ServerConfig;
use hyper_util::rt::TokioIo;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

const PATH: &str = "/device/v1/director/targets.json";

fn csr_for(key: &KeyPair, id: &str) -> String {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, id);
    params.distinguished_name = dn;
    params.subject_alt_names = vec![SanType::URI(
        format!("urn:fleetward:device:{id}").try_into().unwrap(),
    )];
    params.serialize_request(key).unwrap().pem().unwrap()
}

/// The bare endpoint: axum over rustls, one constant answer.
async fn bare_server(listener: TcpListener, config: Arc<rustls::ServerConfig>) {
    let router = Router::new().route(
        PATH,
        axum::routing::get(|| async {
            (
                axum::http::StatusCode::NOT_FOUND,
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                r#"{"error":{"code":"not_found","message":"no update is offered to this device"}}"#,
            )
        }),
    );
    let acceptor = TlsAcceptor::from(config);
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let router = router.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let service = hyper_util::service::TowerToHyperService::new(router);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}

/// Reads one HTTP/1.1 answer (`content-length` framed) from `stream`,
/// keeping bytes of the next answer in `buf`. Returns the status code.
async fn read_answer<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
) -> Option<u16> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end]).ok()?;
            let status: u16 = head.get(9..12)?.parse().ok()?;
            let length: usize = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0);
            let total = end + 4 + length;
            while buf.len() < total {
                let n = stream.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            buf.drain(..total);
            return Some(status);
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

struct Outcome {
    requests: usize,
    errors: usize,
    resumed: usize,
    statuses: Vec<u16>,
    latencies_us: Vec<u32>,
    elapsed: Duration,
}

impl Outcome {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    fn p99_ms(&self) -> f64 {
        let mut l = self.latencies_us.clone();
        l.sort_unstable();
        if l.is_empty() {
            return f64::NAN;
        }
        let i = ((l.len() as f64) * 0.99) as usize;
        f64::from(l[i.min(l.len() - 1)]) / 1000.0
    }
}

async fn connect(
    connector: &TlsConnector,
    addr: SocketAddr,
) -> Option<(tokio_rustls::client::TlsStream<TcpStream>, bool)> {
    let tcp = TcpStream::connect(addr).await.ok()?;
    tcp.set_nodelay(true).ok()?;
    let name = ServerName::IpAddress(addr.ip().into());
    let tls = connector.connect(name, tcp).await.ok()?;
    let resumed = tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
    Some((tls, resumed))
}

/// Keep-alive closed loop: one connection per device, for `secs`.
async fn keep_alive(
    connectors: Arc<Vec<TlsConnector>>,
    addr: SocketAddr,
    connections: usize,
    secs: f64,
) -> Outcome {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for i in 0..connections {
        let connector = connectors[i % connectors.len()].clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut statuses = Vec::new();
            let mut errors = 0;
            let Some((mut tls, _)) = connect(&connector, addr).await else {
                return (latencies, statuses, 1);
            };
            let request = format!("GET {PATH} HTTP/1.1\r\nhost: device\r\n\r\n");
            let mut buf = Vec::with_capacity(8192);
            while !stop.load(Ordering::Relaxed) {
                let start = Instant::now();
                if tls.write_all(request.as_bytes()).await.is_err() {
                    errors += 1;
                    break;
                }
                match read_answer(&mut tls, &mut buf).await {
                    Some(status) => {
                        latencies.push(start.elapsed().as_micros() as u32);
                        if !statuses.contains(&status) {
                            statuses.push(status);
                        }
                    }
                    None => {
                        errors += 1;
                        break;
                    }
                }
            }
            (latencies, statuses, errors)
        }));
    }
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = start.elapsed();
    let mut outcome = Outcome {
        requests: 0,
        errors: 0,
        resumed: 0,
        statuses: Vec::new(),
        latencies_us: Vec::new(),
        elapsed,
    };
    for task in tasks {
        let (latencies, statuses, errors) = task.await.unwrap();
        outcome.requests += latencies.len();
        outcome.latencies_us.extend(latencies);
        outcome.errors += errors;
        for s in statuses {
            if !outcome.statuses.contains(&s) {
                outcome.statuses.push(s);
            }
        }
    }
    outcome
}

/// Reconnect mode: each check-in a new connection resuming the device's
/// TLS session, `concurrency` devices at a time, for `secs`.
async fn reconnect(
    connectors: Arc<Vec<TlsConnector>>,
    addr: SocketAddr,
    concurrency: usize,
    secs: f64,
) -> Outcome {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for i in 0..concurrency {
        let connector = connectors[i % connectors.len()].clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut statuses = Vec::new();
            let (mut errors, mut resumed) = (0, 0);
            let request =
                format!("GET {PATH} HTTP/1.1\r\nhost: device\r\nconnection: close\r\n\r\n");
            let mut buf = Vec::with_capacity(8192);
            while !stop.load(Ordering::Relaxed) {
                let start = Instant::now();
                let Some((mut tls, was_resumed)) = connect(&connector, addr).await else {
                    errors += 1;
                    continue;
                };
                resumed += usize::from(was_resumed);
                buf.clear();
                if tls.write_all(request.as_bytes()).await.is_err() {
                    errors += 1;
                    continue;
                }
                match read_answer(&mut tls, &mut buf).await {
                    Some(status) => {
                        latencies.push(start.elapsed().as_micros() as u32);
                        if !statuses.contains(&status) {
                            statuses.push(status);
                        }
                    }
                    None => errors += 1,
                }
                let _ = tls.shutdown().await;
            }
            (latencies, statuses, errors, resumed)
        }));
    }
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = start.elapsed();
    let mut outcome = Outcome {
        requests: 0,
        errors: 0,
        resumed: 0,
        statuses: Vec::new(),
        latencies_us: Vec::new(),
        elapsed,
    };
    for task in tasks {
        let (latencies, statuses, errors, resumed) = task.await.unwrap();
        outcome.requests += latencies.len();
        outcome.latencies_us.extend(latencies);
        outcome.errors += errors;
        outcome.resumed += resumed;
        for s in statuses {
            if !outcome.statuses.contains(&s) {
                outcome.statuses.push(s);
            }
        }
    }
    outcome
}

fn client_config(ca: &CertificateDer<'static>, cert: &str, key: &str) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let config = ClientConfig::builder_with_provider(fleetward_identity::crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
            PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
        )
        .unwrap();
    Arc::new(config)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let secs: f64 = args.first().map_or(10.0, |a| a.parse().unwrap());
    let connection_counts: Vec<usize> = args
        .get(1)
        .map_or("64,256", String::as_str)
        .split(',')
        .map(|c| c.parse().unwrap())
        .collect();
    let reconnect_concurrency: usize = args.get(2).map_or(32, |a| a.parse().unwrap());
    let devices = connection_counts
        .iter()
        .copied()
        .chain([reconnect_concurrency])
        .max()
        .unwrap_or(1)
        .max(1);

    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let (server, bare_addr, ca_pem, admin_token) = server_rt.block_on(async {
        let url = ServerConfig::default_database_url(dir.path());
        let init =
            fleetward_server::init::initialize(dir.path(), &url, time::OffsetDateTime::now_utc())
                .await
                .unwrap();
        let server = fleetward_server::start(ServerConfig {
            data_dir: dir.path().to_owned(),
            database_url: url.clone(),
            listen: "127.0.0.1:0".parse().unwrap(),
            device_listen: "127.0.0.1:0".parse().unwrap(),
            max_body_bytes: ServerConfig::DEFAULT_MAX_BODY_BYTES,
            identity: Default::default(),
            releases: Default::default(),
            monitor: Default::default(),
            rollout_tick: fleetward_server::rollout::DEFAULT_TICK,
        })
        .await
        .unwrap();
        // The bare endpoint: same fleet CA, same verifier, a server
        // certificate of the same key type from the same CA.
        let ca_key =
            fleetward_identity::ca::read_key_file(&dir.path().join("ca/fleet-ca.key")).unwrap();
        let store = fleetward_store::open(&url).await.unwrap();
        let ca_pem = store.ca().await.unwrap().unwrap().cert_pem;
        store.close().await;
        let ca = fleetward_identity::FleetCa::from_pem(&ca_pem, &ca_key).unwrap();
        let (chain, key) = ca
            .issue_server(
                &["127.0.0.1".to_owned()],
                time::OffsetDateTime::now_utc(),
                time::Duration::days(1),
            )
            .unwrap();
        let config = fleetward_identity::device_server_config(
            &ca,
            Arc::new(fleetward_identity::RevocationSet::new()),
            chain,
            key,
        )
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let bare_addr = listener.local_addr().unwrap();
        tokio::spawn(bare_server(listener, config));
        (server, bare_addr, ca_pem, init.admin_token)
    });
    let device_addr = server.addrs.device;
    let operator_addr = server.addrs.operator;

    // Enrol one device per connection (keys and CSRs made here: the
    // device's cost, not the server's).
    let connectors: Arc<Vec<TlsConnector>> = Arc::new(client_rt.block_on(async {
        let operator = reqwest::Client::new();
        let token: serde_json::Value = operator
            .post(format!("http://{operator_addr}/api/v1/enroll-tokens"))
            .bearer_auth(&admin_token)
            .json(&serde_json::json!({ "uses": 1_000_000, "expires_in_secs": 86400 }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = token["token"].as_str().unwrap().to_owned();
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
            .build()
            .unwrap();
        let ca_der = CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap();
        let mut connectors = Vec::new();
        for i in 0..devices {
            let key = KeyPair::generate().unwrap();
            let csr = csr_for(&key, &format!("bench-{i:04}"));
            let answer: serde_json::Value = http
                .post(format!("https://{device_addr}/device/v1/enroll"))
                .json(&serde_json::json!({ "token": token, "csr": csr }))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let cert = answer["certificate"].as_str().expect("enrolled");
            connectors.push(TlsConnector::from(client_config(
                &ca_der,
                cert,
                &key.serialize_pem(),
            )));
        }
        connectors
    }));

    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "check-in benchmark: {devices} enrolled devices, {secs} s per measure, 3 rounds (median); load average before: {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!();
    println!(
        "| mode | connections | bare axum + rustls req/s | p99 | fleetward check-ins/s | p99 | ratio | statuses |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---|");
    // Warm-up: sessions, caches, allocator.
    client_rt.block_on(keep_alive(connectors.clone(), device_addr, 16, 1.0));
    client_rt.block_on(keep_alive(connectors.clone(), bare_addr, 16, 1.0));
    for &connections in &connection_counts {
        let (mut bare, mut ours) = (Vec::new(), Vec::new());
        let (mut bare_p99, mut ours_p99) = (Vec::new(), Vec::new());
        let mut statuses = Vec::new();
        let mut errors = 0;
        for _ in 0..3 {
            let b =
                client_rt.block_on(keep_alive(connectors.clone(), bare_addr, connections, secs));
            let o = client_rt.block_on(keep_alive(
                connectors.clone(),
                device_addr,
                connections,
                secs,
            ));
            bare.push(b.rate());
            bare_p99.push(b.p99_ms());
            ours.push(o.rate());
            ours_p99.push(o.p99_ms());
            errors += b.errors + o.errors;
            statuses.extend(o.statuses);
        }
        statuses.sort_unstable();
        statuses.dedup();
        let (b, o) = (median(bare), median(ours));
        println!(
            "| keep-alive | {connections} | {b:.0} | {:.1} ms | {o:.0} | {:.1} ms | {:.0} % | {statuses:?}{} |",
            median(bare_p99),
            median(ours_p99),
            100.0 * o / b,
            if errors > 0 {
                format!(", {errors} errors")
            } else {
                String::new()
            }
        );
    }
    if reconnect_concurrency > 0 {
        let connections = reconnect_concurrency;
        let (mut bare, mut ours) = (Vec::new(), Vec::new());
        let (mut bare_p99, mut ours_p99) = (Vec::new(), Vec::new());
        let mut statuses = Vec::new();
        let (mut errors, mut resumed, mut total) = (0, 0, 0);
        for _ in 0..3 {
            let b = client_rt.block_on(reconnect(connectors.clone(), bare_addr, connections, secs));
            let o = client_rt.block_on(reconnect(
                connectors.clone(),
                device_addr,
                connections,
                secs,
            ));
            bare.push(b.rate());
            bare_p99.push(b.p99_ms());
            ours.push(o.rate());
            ours_p99.push(o.p99_ms());
            errors += b.errors + o.errors;
            resumed += o.resumed;
            total += o.requests;
            statuses.extend(o.statuses);
        }
        statuses.sort_unstable();
        statuses.dedup();
        let (b, o) = (median(bare), median(ours));
        println!(
            "| new resumed connection per check-in | {connections} | {b:.0} | {:.1} ms | {o:.0} | {:.1} ms | {:.0} % | {statuses:?}, {:.1} % resumed{} |",
            median(bare_p99),
            median(ours_p99),
            100.0 * o / b,
            100.0 * resumed as f64 / total.max(1) as f64,
            if errors > 0 {
                format!(", {errors} errors")
            } else {
                String::new()
            }
        );
        println!();
        println!(
            "devices per box at a 30-minute poll: keep-alive (256 connections measured) see table x 1800; reconnecting {:.0} (= {o:.0}/s x 1800 s)",
            o * 1800.0
        );
    }
    server_rt.block_on(async { server.shutdown().await.unwrap() });
}
