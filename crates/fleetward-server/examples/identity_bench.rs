//! Device-identity benchmark (issue 3): enrolments/s, full mutual-TLS
//! handshakes/s and resumed handshakes/s on the real device listener, each
//! next to a plain rustls server with the same server key type (ECDSA P-256,
//! same certificate chain) measured in the same run.
//!
//! Every connection makes one small HTTP/1.1 request (`GET /healthz`,
//! `connection: close`), so a TLS 1.3 handshake is counted only once the
//! server has verified the client certificate and answered.
//!
//! Run: `bench/identity.sh` (release build), or
//! `cargo run -p fleetward-server --example identity_bench -- [connections] [concurrency]`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use fleetward_server::ServerConfig;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

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

/// The trivial baseline: handshake, read the request head, answer, close.
async fn plain_server(listener: TcpListener, config: Arc<rustls::ServerConfig>) {
    let acceptor = TlsAcceptor::from(config);
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                return;
            };
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match tls.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let _ = tls
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                .await;
            let _ = tls.shutdown().await;
        });
    }
}

/// One connection: handshake, `GET /healthz`, read to the end. Returns
/// whether the session was resumed.
async fn one(connector: &TlsConnector, addr: SocketAddr) -> bool {
    let tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let name = ServerName::IpAddress(addr.ip().into());
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let resumed = tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
    tls.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut reply = Vec::new();
    let _ = tls.read_to_end(&mut reply).await;
    assert!(
        reply.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    resumed
}

/// Connections per second over `total` connections, `concurrency` at a time.
async fn rate(
    connector: TlsConnector,
    addr: SocketAddr,
    total: usize,
    concurrency: usize,
) -> (f64, usize) {
    let start = Instant::now();
    let per_task = total / concurrency;
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let connector = connector.clone();
        tasks.push(tokio::spawn(async move {
            let mut resumed = 0;
            for _ in 0..per_task {
                resumed += usize::from(one(&connector, addr).await);
            }
            resumed
        }));
    }
    let mut resumed = 0;
    for task in tasks {
        resumed += task.await.unwrap();
    }
    let done = per_task * concurrency;
    (done as f64 / start.elapsed().as_secs_f64(), resumed)
}

fn client_config(
    ca: &CertificateDer<'static>,
    identity: Option<(&str, &str)>,
    resume: bool,
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let builder = ClientConfig::builder_with_provider(fleetward_identity::crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    if !resume {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Arc::new(config)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().unwrap())
        .collect();
    let total = args.first().copied().unwrap_or(2000);
    let concurrency = args.get(1).copied().unwrap_or(8);
    let enrolments = args.get(2).copied().unwrap_or(500);

    let dir = tempfile::tempdir().unwrap();
    let url = ServerConfig::default_database_url(dir.path());
    let init =
        fleetward_server::init::initialize(dir.path(), &url, time::OffsetDateTime::now_utc())
            .await
            .unwrap();
    let server = fleetward_server::start(ServerConfig {
        data_dir: dir.path().to_owned(),
        database_url: url,
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
    let device_addr = server.addrs.device;

    // The fleet CA, and a plain rustls server with a certificate of the same
    // key type from the same CA.
    let ca_key =
        fleetward_identity::ca::read_key_file(&dir.path().join("ca/fleet-ca.key")).unwrap();
    let store = fleetward_store::open(&ServerConfig::default_database_url(dir.path()))
        .await
        .unwrap();
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
    let plain_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plain_addr = plain_listener.local_addr().unwrap();
    tokio::spawn(plain_server(
        plain_listener,
        fleetward_identity::plain_server_config(chain.clone(), key.clone_key()).unwrap(),
    ));
    // Stock rustls mutual TLS (WebPkiClientVerifier, mandatory client
    // certificate), same trivial responder: the cost of mTLS itself.
    let mut roots = RootCertStore::empty();
    roots.add(ca.cert_der().clone()).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        fleetward_identity::crypto_provider(),
    )
    .build()
    .unwrap();
    let mut stock =
        rustls::ServerConfig::builder_with_provider(fleetward_identity::crypto_provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .unwrap();
    stock.session_storage = rustls::server::ServerSessionMemoryCache::new(16 * 1024);
    let stock_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stock_addr = stock_listener.local_addr().unwrap();
    tokio::spawn(plain_server(stock_listener, Arc::new(stock)));

    // Enrolment: token + pre-made CSRs (key generation is the device's cost).
    let operator = reqwest::Client::new();
    let token: serde_json::Value = operator
        .post(format!(
            "http://{}/api/v1/enroll-tokens",
            server.addrs.operator
        ))
        .bearer_auth(&init.admin_token)
        .json(&serde_json::json!({ "uses": 1_000_000, "expires_in_secs": 86400 }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["token"].as_str().unwrap().to_owned();
    let devices: Vec<(KeyPair, String)> = (0..enrolments.max(1))
        .map(|i| {
            let key = KeyPair::generate().unwrap();
            let csr = csr_for(&key, &format!("bench-{i}"));
            (key, csr)
        })
        .collect();
    let device_http = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let enroll_url = format!("https://{device_addr}/device/v1/enroll");
    let start = Instant::now();
    let csrs: Arc<Vec<String>> = Arc::new(devices.iter().map(|(_, csr)| csr.clone()).collect());
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let (http, url, token, csrs) = (
            device_http.clone(),
            enroll_url.clone(),
            token.clone(),
            csrs.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut first = None;
            for csr in csrs.iter().skip(worker).step_by(concurrency) {
                let answer: serde_json::Value = http
                    .post(&url)
                    .json(&serde_json::json!({ "token": token, "csr": csr }))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                let cert = answer["certificate"].as_str().expect("enrolled").to_owned();
                first.get_or_insert(cert);
            }
            first
        }));
    }
    let mut cert = None;
    for task in tasks {
        cert = cert.or(task.await.unwrap());
    }
    let enrol_rate = devices.len() as f64 / start.elapsed().as_secs_f64();
    let cert = cert.unwrap();
    // Worker 0 enrolled `bench-0` first: its certificate and key.
    let device_key = devices[0].0.serialize_pem();
    let ca_der = CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap();

    // Warm up, then measure alternately to spread noise.
    let plain_full = TlsConnector::from(client_config(&ca_der, None, false));
    let mtls_full = TlsConnector::from(client_config(&ca_der, Some((&cert, &device_key)), false));
    let plain_resumed = TlsConnector::from(client_config(&ca_der, None, true));
    let mtls_resumed = TlsConnector::from(client_config(&ca_der, Some((&cert, &device_key)), true));
    rate(plain_full.clone(), plain_addr, 100, concurrency).await;
    rate(mtls_full.clone(), device_addr, 100, concurrency).await;

    let mut plain = Vec::new();
    let mut stock = Vec::new();
    let mut mtls = Vec::new();
    let mut plain_res = Vec::new();
    let mut mtls_res = Vec::new();
    for _ in 0..3 {
        plain.push(
            rate(plain_full.clone(), plain_addr, total, concurrency)
                .await
                .0,
        );
        stock.push(
            rate(mtls_full.clone(), stock_addr, total, concurrency)
                .await
                .0,
        );
        mtls.push(
            rate(mtls_full.clone(), device_addr, total, concurrency)
                .await
                .0,
        );
        plain_res.push(rate(plain_resumed.clone(), plain_addr, total, concurrency).await);
        mtls_res.push(rate(mtls_resumed.clone(), device_addr, total, concurrency).await);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    let resumed_share = mtls_res.iter().map(|(_, r)| *r).sum::<usize>() as f64
        / (3 * (total / concurrency) * concurrency) as f64;
    let plain = median(plain);
    let stock = median(stock);
    let mtls = median(mtls);
    let plain_res = median(plain_res.into_iter().map(|(r, _)| r).collect());
    let mtls_res = median(mtls_res.into_iter().map(|(r, _)| r).collect());

    println!(
        "identity benchmark: {total} connections x3 (median), concurrency {concurrency}, server key ECDSA P-256, client key ECDSA P-256"
    );
    println!("| measure | per second | ratio to plain rustls full handshake |");
    println!("|---|---:|---:|");
    println!("| plain rustls, full handshake (baseline) | {plain:.0} | 1.00 |");
    println!(
        "| stock rustls mutual TLS (WebPkiClientVerifier), full handshake | {stock:.0} | {:.2} |",
        stock / plain
    );
    println!(
        "| device listener, full mutual-TLS handshake | {mtls:.0} | {:.2} |",
        mtls / plain
    );
    println!(
        "| plain rustls, resumed | {plain_res:.0} | {:.2} |",
        plain_res / plain
    );
    println!(
        "| device listener, resumed mutual TLS | {mtls_res:.0} | {:.2} |",
        mtls_res / plain
    );
    println!(
        "| enrolments (CSR to certificate, {} devices) | {enrol_rate:.0} | {:.2} |",
        devices.len(),
        enrol_rate / plain
    );
    println!();
    println!(
        "device listener vs plain rustls: full {:.0} %, resumed {:.0} % (goal: full >= 80 %); vs stock rustls mTLS: full {:.0} %; {:.0} % of 'resumed' connections resumed",
        100.0 * mtls / plain,
        100.0 * mtls_res / plain_res,
        100.0 * mtls / stock,
        100.0 * resumed_share
    );
    server.shutdown().await.unwrap();
}
