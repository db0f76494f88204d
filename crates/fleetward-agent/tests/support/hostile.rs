//! A hostile server: real TLS in front of the real device listener. It
//! answers every request with the real server's answer (fetched with the
//! device's own identity) passed through a rewrite the test chooses: other
//! bytes, re-signed metadata, an endless body, a trickle.
//!
//! The agent is pointed at it and trusts its CA: this is the attacker who
//! controls the network or the server, which is exactly what TUF and the
//! director's separate keys are there to survive.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::{Device, Server};

/// How a body goes out.
pub enum Body {
    Bytes(Vec<u8>),
    /// These bytes, then filler for ever (no length announced).
    Endless(Vec<u8>),
    /// These bytes, `chunk` at a time with `every` between.
    Trickle {
        bytes: Vec<u8>,
        chunk: usize,
        every: Duration,
    },
}

/// One answer, as the real server gave it or as rewritten.
pub struct Answer {
    pub status: u16,
    /// Headers other than the length and connection ones.
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

impl Answer {
    pub fn bytes(&self) -> &[u8] {
        match &self.body {
            Body::Bytes(b) | Body::Endless(b) => b,
            Body::Trickle { bytes, .. } => bytes,
        }
    }
}

type Rewrite = dyn Fn(&str, Answer) -> Answer + Send + Sync;

pub struct Hostile {
    pub addr: SocketAddr,
    /// The CA whose certificate the agent is given.
    pub ca_pem: String,
    rewrite: Arc<Mutex<Arc<Rewrite>>>,
    /// Requests seen, by path.
    pub seen: Arc<Mutex<Vec<String>>>,
    /// Body bytes written by endless and trickled answers.
    pub attack_bytes: Arc<AtomicU64>,
    upstream: reqwest::Client,
    base: String,
}

impl Hostile {
    /// A hostile server for `device` (already enrolled with `server`); the
    /// device is re-pointed at it. It passes everything through until
    /// [`Hostile::attack`].
    pub async fn start(server: &Server, device: &mut Device) -> Hostile {
        let now = time::OffsetDateTime::now_utc();
        let (ca, _) = fleetward_identity::FleetCa::generate(
            "hostile",
            Default::default(),
            now,
            time::Duration::days(1),
        )
        .unwrap();
        let (chain, key) = ca
            .issue_server(&["127.0.0.1".to_owned()], now, time::Duration::days(1))
            .unwrap();
        let tls = fleetward_identity::plain_server_config(chain, key).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);

        // The real server, reached as the device.
        let state = &device.config.state_dir;
        let mut identity = std::fs::read(state.join("device.crt")).unwrap();
        identity.push(b'\n');
        identity.extend(std::fs::read(state.join("device.key")).unwrap());
        let upstream = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(
                reqwest::Certificate::from_pem(server.ca_pem().await.as_bytes()).unwrap(),
            )
            .identity(reqwest::Identity::from_pem(&identity).unwrap())
            .build()
            .unwrap();
        let base = server.device_url();

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hostile = Hostile {
            addr: listener.local_addr().unwrap(),
            ca_pem: ca.cert_pem().to_owned(),
            rewrite: Arc::new(Mutex::new(Arc::new(|_: &str, a| a))),
            seen: Arc::default(),
            attack_bytes: Arc::default(),
            upstream: upstream.clone(),
            base: base.clone(),
        };
        let ca_path = device.dir.path().join("hostile-ca.pem");
        std::fs::write(&ca_path, &hostile.ca_pem).unwrap();
        device.config.ca_cert = ca_path;
        device.config.server = format!("https://{}", hostile.addr);

        let rewrite = hostile.rewrite.clone();
        let seen = hostile.seen.clone();
        let attack_bytes = hostile.attack_bytes.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let upstream = upstream.clone();
                let base = base.clone();
                let rewrite = rewrite.lock().unwrap().clone();
                let seen = seen.clone();
                let attack_bytes = attack_bytes.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    // One request per connection (answers say `close`).
                    let Some((method, path, headers, body)) = read_request(&mut tls).await else {
                        return;
                    };
                    seen.lock().unwrap().push(path.clone());
                    let mut request = upstream.request(
                        reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                        format!("{base}{path}"),
                    );
                    for (name, value) in &headers {
                        if ["range", "content-type", "accept"].contains(&name.as_str()) {
                            request = request.header(name, value);
                        }
                    }
                    let Ok(response) = request.body(body).send().await else {
                        return;
                    };
                    let status = response.status().as_u16();
                    let headers: Vec<(String, String)> = response
                        .headers()
                        .iter()
                        .filter(|(n, _)| {
                            !["content-length", "transfer-encoding", "connection"]
                                .contains(&n.as_str())
                        })
                        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_owned()))
                        .collect();
                    let bytes = response.bytes().await.unwrap_or_default().to_vec();
                    let answer = rewrite(
                        &path,
                        Answer {
                            status,
                            headers,
                            body: Body::Bytes(bytes),
                        },
                    );
                    let _ = write_answer(&mut tls, answer, &attack_bytes).await;
                });
            }
        });
        hostile
    }

    /// From now on every answer goes through `rewrite(path, answer)`.
    pub fn attack(&self, rewrite: impl Fn(&str, Answer) -> Answer + Send + Sync + 'static) {
        *self.rewrite.lock().unwrap() = Arc::new(rewrite);
    }

    /// The real server's answer to `path` (as the device).
    pub async fn upstream(&self, path: &str) -> Vec<u8> {
        let response = self
            .upstream
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        response.bytes().await.unwrap().to_vec()
    }

    /// The path of the current `snapshot` or `targets` metadata.
    pub async fn latest_path(&self, role: &str) -> String {
        let version = |bytes: &[u8], file: &str| {
            let value: serde_json::Value = serde_json::from_slice(bytes).unwrap();
            value["signed"]["meta"][file]["version"].as_u64().unwrap()
        };
        let timestamp = self.upstream("/tuf/metadata/timestamp.json").await;
        let snapshot = format!(
            "/tuf/metadata/{}.snapshot.json",
            version(&timestamp, "snapshot.json")
        );
        if role == "snapshot" {
            return snapshot;
        }
        let bytes = self.upstream(&snapshot).await;
        format!(
            "/tuf/metadata/{}.targets.json",
            version(&bytes, "targets.json")
        )
    }

    /// The bytes of the current `snapshot` or `targets` metadata.
    pub async fn upstream_latest(&self, role: &str) -> Vec<u8> {
        let path = self.latest_path(role).await;
        self.upstream(&path).await
    }

    /// Back to passing the real server's answers through.
    pub fn stop_attack(&self) {
        self.attack(|_, a| a);
    }
}

async fn read_request<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
) -> Option<(String, String, Vec<(String, String)>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.ok()? == 0 || buf.len() > 64 * 1024 {
            return None;
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).ok()?;
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_owned();
    let path = first.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await.ok()?;
    Some((method, path, headers, body))
}

async fn write_answer<S: tokio::io::AsyncWrite + Unpin>(
    stream: &mut S,
    answer: Answer,
    attack_bytes: &AtomicU64,
) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {} X\r\nconnection: close\r\n", answer.status);
    for (name, value) in &answer.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Body::Bytes(bytes) = &answer.body {
        head.push_str(&format!("content-length: {}\r\n", bytes.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    match answer.body {
        Body::Bytes(bytes) => stream.write_all(&bytes).await?,
        Body::Endless(bytes) => {
            stream.write_all(&bytes).await?;
            let filler = vec![b' '; 16 * 1024];
            // Bounded so a broken test ends: far beyond any limit.
            for _ in 0..64 * 1024 {
                stream.write_all(&filler).await?;
                attack_bytes.fetch_add(filler.len() as u64, Ordering::SeqCst);
            }
        }
        Body::Trickle {
            bytes,
            chunk,
            every,
        } => {
            for piece in bytes.chunks(chunk.max(1)) {
                stream.write_all(piece).await?;
                stream.flush().await?;
                attack_bytes.fetch_add(piece.len() as u64, Ordering::SeqCst);
                tokio::time::sleep(every).await;
            }
        }
    }
    stream.flush().await?;
    stream.shutdown().await
}

/// Re-signs metadata after `change` edits its `signed` part, with `keys`
/// (the attacker's).
pub fn resign(
    bytes: &[u8],
    keys: &[&fleetward_tuf::SigningKey],
    change: impl FnOnce(&mut serde_json::Value),
) -> Vec<u8> {
    let mut envelope: serde_json::Value = serde_json::from_slice(bytes).unwrap();
    change(&mut envelope["signed"]);
    let message = fleetward_tuf::canonical(&envelope["signed"]).unwrap();
    envelope["signatures"] = keys
        .iter()
        .map(|k| serde_json::json!({"keyid": k.key_id().unwrap(), "sig": hex::encode(k.sign(&message))}))
        .collect();
    fleetward_tuf::canonical(&envelope).unwrap()
}

/// The server's online keys (snapshot, timestamp, director), as an
/// attacker who took the server would have them.
pub fn stolen_online_keys(server: &Server) -> fleetward_server::repo::OnlineKeys {
    fleetward_server::repo::OnlineKeys::load_or_create(server.dir.path()).unwrap()
}
