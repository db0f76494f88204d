//! Security monitoring, response half: findings from live traffic (auth
//! failure bursts, cloned identities, revoked certificates presented),
//! alerts to webhooks (HMAC-signed, retried) and syslog, quarantine by an
//! operator and by policy, and a device's security timeline.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use fleetward_events::{EventKind, Severity};
use fleetward_server::monitor::alerts::{Secret, SyslogSink, SyslogTransport, WebhookSink};
use fleetward_wire::identity::QuarantineCertificate;
use serde_json::{Value, json};
use support::TestServer;

/// Polls `probe` until it yields, for at most 30 s (the responder ticks
/// every second; a slow CI machine gets slack, and no test asserts timing).
async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..300 {
        if let Some(found) = probe().await {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("gave up waiting for {what}");
}

async fn events_of(server: &TestServer, kind: EventKind) -> Vec<Value> {
    let answer = server
        .get(
            &server.admin,
            &format!("/api/v1/events?kind={}&limit=1000", kind.as_str()),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    answer.body["items"].as_array().unwrap().clone()
}

async fn status_of(server: &TestServer, id: &str) -> String {
    let answer = server
        .get(&server.admin, &format!("/api/v1/devices/{id}"))
        .await;
    answer.body["status"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// An mTLS client for an enrolled device that connects from `local`.
async fn device_client_from(
    server: &TestServer,
    device: &support::EnrolledDevice,
    local: IpAddr,
) -> reqwest::Client {
    let pem = format!("{}\n{}", device.cert_pem, device.key_pem);
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(
            reqwest::Certificate::from_pem(server.ca_pem().await.as_bytes()).unwrap(),
        )
        .identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap())
        .local_address(local)
        .build()
        .unwrap()
}

/// What a webhook receiver got: headers and raw body per request.
#[derive(Default)]
struct Received {
    requests: Vec<(HeaderMap, Vec<u8>)>,
    /// Answer 500 to this many requests first (a receiver that is down).
    fail_first: usize,
}

async fn webhook_receiver(fail_first: usize) -> (SocketAddr, Arc<Mutex<Received>>) {
    let received = Arc::new(Mutex::new(Received {
        fail_first,
        ..Received::default()
    }));
    let shared = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let shared = shared.clone();
            async move {
                let mut received = shared.lock().unwrap();
                received.requests.push((headers, body.to_vec()));
                if received.requests.len() <= received.fail_first {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::NO_CONTENT
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, received)
}

/// HMAC-SHA256 as openssl computes it: an implementation nobody here wrote.
fn openssl_hmac(key: &str, message: &[u8]) -> String {
    use std::io::Write as _;
    let mut child = std::process::Command::new("openssl")
        .args(["dgst", "-sha256", "-hmac", key])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("openssl is installed (.ci/run installs it)");
    child.stdin.take().unwrap().write_all(message).unwrap();
    let output = child.wait_with_output().unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    text.split_whitespace().last().unwrap().to_owned()
}

const SECRET: &str = "webhook-secret-for-tests-0123";

#[tokio::test]
async fn webhooks_are_signed_retried_and_filtered_by_severity() {
    let (hook, received) = webhook_receiver(2).await;
    let server = TestServer::start_with(|config| {
        config.monitor.webhooks.push(WebhookSink {
            url: format!("http://{hook}/hook").parse().unwrap(),
            secret: Secret::new(SECRET.into()).unwrap(),
            min_severity: Severity::High,
        });
    })
    .await;
    server.register("q-1", "rev2", None, &[]).await;
    // Medium and below stay out of this sink: a registration is `info`.
    let answer = server
        .post(
            &server.admin,
            "/api/v1/devices/q-1/quarantine",
            json!({"reason": "lab test"}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);

    // Two 500s, then success: the same event arrives three times.
    let requests = eventually("three webhook deliveries", || {
        let received = received.clone();
        async move {
            let received = received.lock().unwrap();
            (received.requests.len() >= 3).then(|| received.requests.clone())
        }
    })
    .await;
    let kinds: Vec<String> = requests
        .iter()
        .map(|(_, body)| {
            serde_json::from_slice::<Value>(body).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(kinds, vec!["device.quarantined"; 3], "only high and above");
    for (headers, body) in &requests {
        let header = |name: &str| headers[name].to_str().unwrap().to_owned();
        let timestamp = header("x-fleetward-timestamp");
        let mut signed = format!("{timestamp}.").into_bytes();
        signed.extend_from_slice(body);
        assert_eq!(
            header("x-fleetward-signature"),
            format!("sha256={}", openssl_hmac(SECRET, &signed))
        );
        let event: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(header("x-fleetward-delivery"), event["seq"].to_string());
        assert_eq!(event["device"], "q-1");
    }
    // Delivered once successfully: nothing more comes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(received.lock().unwrap().requests.len(), 3);
    server.stop().await;
}

/// A server sending syslog to `address`, with device `id` just quarantined.
async fn quarantined_with_syslog(
    address: SocketAddr,
    transport: SyslogTransport,
    id: &str,
) -> TestServer {
    let server = TestServer::start_with(|config| {
        config.monitor.syslog = Some(SyslogSink {
            address,
            transport,
            min_severity: Severity::Medium,
        });
    })
    .await;
    server.register(id, "rev2", None, &[]).await;
    let answer = server
        .post(
            &server.admin,
            &format!("/api/v1/devices/{id}/quarantine"),
            json!({"reason": "syslog test"}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    server
}

#[tokio::test]
async fn syslog_gets_rfc5424_messages_over_udp_and_tcp() {
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let server =
        quarantined_with_syslog(udp.local_addr().unwrap(), SyslogTransport::Udp, "s-1").await;
    let mut buf = vec![0u8; 4096];
    let (n, _) = tokio::time::timeout(Duration::from_secs(30), udp.recv_from(&mut buf))
        .await
        .expect("a syslog datagram")
        .unwrap();
    let line = String::from_utf8(buf[..n].to_vec()).unwrap();
    // Facility 13 (log audit) × 8 + severity 3 (error, for `high`).
    assert!(line.starts_with("<107>1 "), "{line}");
    assert!(
        line.contains(" fleetward - device.quarantined [fleetward@32473 "),
        "{line}"
    );
    assert!(line.contains("device=\"s-1\""), "{line}");
    server.stop().await;

    // TCP: octet-counted frames (RFC 6587): `LEN SP MSG`.
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server =
        quarantined_with_syslog(tcp.local_addr().unwrap(), SyslogTransport::Tcp, "s-2").await;
    let (mut stream, _) = tokio::time::timeout(Duration::from_secs(30), tcp.accept())
        .await
        .unwrap()
        .unwrap();
    use tokio::io::AsyncReadExt as _;
    let mut got = Vec::new();
    let frame = loop {
        let mut chunk = [0u8; 1024];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the connection closed before a whole frame");
        got.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some((length, rest)) = text.split_once(' ')
            && rest.len() >= length.parse::<usize>().unwrap()
        {
            break rest[..length.parse::<usize>().unwrap()].to_owned();
        }
    };
    assert!(frame.starts_with("<107>1 "), "{frame}");
    assert!(frame.contains("device=\"s-2\""), "{frame}");
    server.stop().await;
}

#[tokio::test]
async fn quarantine_by_an_operator_and_its_bad_inputs() {
    let server = TestServer::start().await;
    server.register("ok-1", "rev2", None, &[]).await;
    server.register("gone-1", "rev2", None, &[]).await;
    let answer = server
        .post(
            &server.admin,
            "/api/v1/devices/gone-1/decommission",
            json!({"reason": "retired"}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);

    let check = |path: &str, body: Value, status: StatusCode, code: &str| {
        let server = &server;
        let path = path.to_owned();
        let code = code.to_owned();
        async move {
            let audit_before = server.audit_len().await;
            let answer = server.post(&server.admin, &path, body).await;
            assert_eq!(answer.status, status, "{path}: {:?}", answer.body);
            assert_eq!(answer.code(), code, "{path}");
            assert_eq!(
                server.audit_len().await,
                audit_before,
                "{path}: nothing recorded"
            );
        }
    };
    let path = "/api/v1/devices/ok-1/quarantine";
    check(
        path,
        json!({"reason": ""}),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_reason",
    )
    .await;
    check(
        path,
        json!({"reason": "a\nb"}),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_reason",
    )
    .await;
    check(
        path,
        json!({"reason": "x".repeat(513)}),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_reason",
    )
    .await;
    check(
        path,
        json!({"reason": "r", "certificate": "burn"}),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_body",
    )
    .await;
    check(
        path,
        json!({"reason": "r", "extra": 1}),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_body",
    )
    .await;
    check(
        "/api/v1/devices/nobody/quarantine",
        json!({"reason": "r"}),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    check(
        "/api/v1/devices/gone-1/quarantine",
        json!({"reason": "r"}),
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    assert_eq!(status_of(&server, "ok-1").await, "active");

    let answer = server
        .post(&server.admin, path, json!({"reason": "odd traffic"}))
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body["status"], "quarantined");
    check(
        path,
        json!({"reason": "again"}),
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    let quarantined = events_of(&server, EventKind::DeviceQuarantined).await;
    assert_eq!(quarantined.len(), 1);
    assert_eq!(quarantined[0]["device"], "ok-1");
    assert_eq!(quarantined[0]["severity"], "high");
    // An operator lifts it by setting the device active again.
    let answer = server
        .call(
            Some(&server.admin),
            reqwest::Method::PATCH,
            "/api/v1/devices/ok-1",
            Some(json!({"status": "active"})),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn quarantine_can_cut_a_device_off_at_once() {
    let server = TestServer::start().await;
    let device = server.enroll_device("cut-1", "rev2").await;
    let me = device
        .client
        .get(format!("{}/device/v1/self", server.device_base()))
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    let answer = server
        .post(
            &server.admin,
            "/api/v1/devices/cut-1/quarantine",
            json!({"reason": "key leaked", "certificate": "revoke"}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    // The open connection is refused on its next request…
    let me = device
        .client
        .get(format!("{}/device/v1/self", server.device_base()))
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::UNAUTHORIZED);
    // … and a new one at the handshake, which is logged as such.
    let fresh = server
        .device_client(Some((&device.cert_pem, &device.key_pem)))
        .await;
    assert!(
        fresh
            .get(format!("{}/device/v1/self", server.device_base()))
            .send()
            .await
            .is_err()
    );
    let refused = eventually("a handshake_refused event", || async {
        let found = events_of(&server, EventKind::HandshakeRefused).await;
        (!found.is_empty()).then_some(found)
    })
    .await;
    assert!(
        refused[0]["detail"]
            .as_str()
            .unwrap()
            .contains("certificate_revoked")
    );
    assert_eq!(
        events_of(&server, EventKind::CertificateRevoked)
            .await
            .len(),
        1
    );
    server.stop().await;
}

#[tokio::test]
async fn a_burst_of_bad_operator_tokens_is_a_finding() {
    let server = TestServer::start_with(|config| {
        config.monitor.detection.auth_burst_count = 5;
    })
    .await;
    for _ in 0..5 {
        let answer = server
            .get("fwt_0000000000000000_nope", "/api/v1/devices")
            .await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    }
    assert!(
        events_of(&server, EventKind::AuthFailureBurst)
            .await
            .is_empty(),
        "5 is not more than 5"
    );
    assert_eq!(
        events_of(&server, EventKind::OperatorAuthFailed)
            .await
            .len(),
        5
    );
    for _ in 0..10 {
        server
            .get("fwt_0000000000000000_nope", "/api/v1/devices")
            .await;
    }
    let bursts = events_of(&server, EventKind::AuthFailureBurst).await;
    assert_eq!(bursts.len(), 1, "one finding per window: {bursts:?}");
    assert_eq!(bursts[0]["source"], "127.0.0.1");
    assert_eq!(bursts[0]["severity"], "high");
    // A request with no token at all is not a failed authentication.
    let before = events_of(&server, EventKind::OperatorAuthFailed)
        .await
        .len();
    let answer = server
        .call(None, reqwest::Method::GET, "/api/v1/devices", None)
        .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        events_of(&server, EventKind::OperatorAuthFailed)
            .await
            .len(),
        before
    );
    server.stop().await;
}

#[tokio::test]
async fn a_cloned_identity_is_found_and_quarantined_by_policy() {
    let server = TestServer::start_with(|config| {
        config.monitor.quarantine.kinds = vec![EventKind::CloneSuspected];
        config.monitor.quarantine.certificate = QuarantineCertificate::Keep;
    })
    .await;
    let device = server.enroll_device("twin-1", "rev2").await;
    let honest = server.enroll_device("solo-1", "rev2").await;
    let first = device_client_from(&server, &device, "127.0.0.1".parse().unwrap()).await;
    // Loopback is 127/8 on Linux: a second address on the same machine.
    let second = device_client_from(&server, &device, "127.0.0.2".parse().unwrap()).await;
    let url = format!("{}/device/v1/self", server.device_base());
    for client in [&first, &second, &first] {
        // New connections each time, so each request shows its address.
        let answer = client
            .get(&url)
            .header("connection", "close")
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
    }
    for _ in 0..3 {
        honest.client.get(&url).send().await.unwrap();
    }
    let clones = events_of(&server, EventKind::CloneSuspected).await;
    assert_eq!(clones.len(), 1, "{clones:?}");
    assert_eq!(clones[0]["device"], "twin-1");
    assert_eq!(clones[0]["severity"], "critical");
    eventually("automatic quarantine", || async {
        (status_of(&server, "twin-1").await == "quarantined").then_some(())
    })
    .await;
    assert_eq!(status_of(&server, "solo-1").await, "active");
    let quarantined = events_of(&server, EventKind::DeviceQuarantined).await;
    assert!(
        quarantined[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("monitor "),
        "{quarantined:?}"
    );
    assert!(
        quarantined[0]["detail"]
            .as_str()
            .unwrap()
            .contains("device.clone_suspected")
    );
    server.stop().await;
}

#[tokio::test]
async fn a_device_timeline_shows_its_security_history_only() {
    let server = TestServer::start().await;
    server.enroll_device("tl-1", "rev2").await;
    server.enroll_device("tl-2", "rev2").await;
    server
        .post(
            &server.admin,
            "/api/v1/devices/tl-1/quarantine",
            json!({"reason": "check"}),
        )
        .await;
    let viewer = server.token_for(fleetward_core::Role::Viewer).await;
    let answer = server.get(&viewer, "/api/v1/devices/tl-1/timeline").await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    let kinds: Vec<&str> = answer.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["identity.enrolled", "device.quarantined"]);

    let answer = server
        .get(&viewer, "/api/v1/devices/tl-1/timeline?min_severity=high")
        .await;
    assert_eq!(answer.body["items"].as_array().unwrap().len(), 1);
    let answer = server
        .get(&viewer, "/api/v1/devices/tl-1/timeline?limit=1")
        .await;
    assert_eq!(answer.body["items"].as_array().unwrap().len(), 1);
    let next = answer.body["next_after"].as_u64().unwrap();
    let answer = server
        .get(
            &viewer,
            &format!("/api/v1/devices/tl-1/timeline?limit=1&after={next}"),
        )
        .await;
    assert_eq!(answer.body["items"][0]["kind"], "device.quarantined");

    for (path, status) in [
        ("/api/v1/devices/nobody/timeline", StatusCode::NOT_FOUND),
        (
            "/api/v1/devices/tl-1/timeline?limit=0",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/v1/devices/tl-1/timeline?min_severity=loud",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/v1/devices/tl-1/timeline?colour=red",
            StatusCode::BAD_REQUEST,
        ),
    ] {
        assert_eq!(server.get(&viewer, path).await.status, status, "{path}");
    }
    server.stop().await;
}
