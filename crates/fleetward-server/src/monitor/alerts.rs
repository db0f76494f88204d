//! Where security events go besides the log: HMAC-signed webhooks and
//! syslog (RFC 5424 messages over UDP per RFC 5426, or TCP with octet
//! counting per RFC 6587).
//!
//! A webhook receiver checks `X-Fleetward-Signature` before it trusts a
//! body: `sha256=` and the hex HMAC-SHA256, under the shared secret, of
//! `X-Fleetward-Timestamp`, a dot, and the raw body (the timestamp is in the
//! signed text so that an old delivery cannot be replayed later). Deliveries
//! are at least once; `X-Fleetward-Delivery` (the event's sequence number)
//! lets a receiver drop repeats.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, bail};
use fleetward_events::Severity;
use fleetward_wire::events::SecurityEvent;
use hmac::{Hmac, Mac as _};
use sha2::Sha256;
use tokio::io::AsyncWriteExt as _;

/// A shared secret that never shows in logs or `Debug` output.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(secret: String) -> anyhow::Result<Self> {
        if secret.len() < 16 {
            bail!("a webhook secret must be at least 16 bytes long");
        }
        Ok(Secret(secret))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// An HTTPS (or, for tests and local relays, HTTP) endpoint that receives
/// each event at or above `min_severity` as a signed JSON POST.
#[derive(Debug, Clone)]
pub struct WebhookSink {
    pub url: reqwest::Url,
    pub secret: Secret,
    pub min_severity: Severity,
}

/// How syslog messages travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyslogTransport {
    /// RFC 5426: one message per datagram.
    #[default]
    Udp,
    /// RFC 6587 octet counting: `LEN SP MSG`.
    Tcp,
}

#[derive(Debug, Clone)]
pub struct SyslogSink {
    pub address: SocketAddr,
    pub transport: SyslogTransport,
    pub min_severity: Severity,
}

/// The signature header value for `body` sent at `timestamp` (Unix seconds).
pub fn signature(secret: &Secret, timestamp: i64, body: &[u8]) -> String {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.0.as_bytes()) else {
        return String::new();
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Delivers one event to a webhook: a few quick retries, then the caller
/// backs off and tries the same event again later.
pub async fn deliver_webhook(
    client: &reqwest::Client,
    sink: &WebhookSink,
    event: &SecurityEvent,
    now_unix: i64,
) -> anyhow::Result<()> {
    let body = serde_json::to_vec(event).context("encoding the event")?;
    let signature = signature(&sink.secret, now_unix, &body);
    let mut last_error = None;
    for attempt in 0..3u32 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(500 * 2u64.pow(attempt - 1))).await;
        }
        let sent = client
            .post(sink.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("x-fleetward-event", &event.kind)
            .header("x-fleetward-delivery", event.seq.to_string())
            .header("x-fleetward-timestamp", now_unix.to_string())
            .header("x-fleetward-signature", &signature)
            .body(body.clone())
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => return Ok(()),
            Ok(response) => last_error = Some(format!("answered {}", response.status())),
            // reqwest's error text carries no secret (only the URL, which is config).
            Err(error) => last_error = Some(error.to_string()),
        }
    }
    bail!(
        "webhook {} failed: {}",
        redact(&sink.url),
        last_error.unwrap_or_default()
    )
}

/// A URL as logs show it: no credentials, no query (tokens hide there).
pub fn redact(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.to_string()
}

/// A syslog connection, kept open for TCP.
#[derive(Debug, Default)]
pub struct SyslogSender {
    tcp: Option<tokio::net::TcpStream>,
}

impl SyslogSender {
    pub async fn send(&mut self, sink: &SyslogSink, event: &SecurityEvent) -> anyhow::Result<()> {
        let line = syslog_line(event);
        match sink.transport {
            SyslogTransport::Udp => {
                let bind: SocketAddr = if sink.address.is_ipv4() {
                    ([0, 0, 0, 0], 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let socket = tokio::net::UdpSocket::bind(bind).await?;
                socket.send_to(line.as_bytes(), sink.address).await?;
                Ok(())
            }
            SyslogTransport::Tcp => {
                let frame = format!("{} {line}", line.len());
                if let Some(stream) = self.tcp.as_mut()
                    && stream.write_all(frame.as_bytes()).await.is_ok()
                {
                    return Ok(());
                }
                self.tcp = None;
                let mut stream = tokio::time::timeout(
                    Duration::from_secs(10),
                    tokio::net::TcpStream::connect(sink.address),
                )
                .await
                .context("connecting to syslog timed out")??;
                stream.write_all(frame.as_bytes()).await?;
                self.tcp = Some(stream);
                Ok(())
            }
        }
    }
}

/// One RFC 5424 message: facility 13 (log audit), the event kind as MSGID,
/// the chain fields as structured data under the documentation PEN 32473.
pub fn syslog_line(event: &SecurityEvent) -> String {
    let severity = Severity::parse(&event.severity)
        .map(Severity::syslog)
        .unwrap_or(5);
    let priority = 13 * 8 + u32::from(severity);
    let timestamp = event
        .server_time
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "-".into());
    let mut data = format!(
        "[fleetward@32473 seq=\"{}\" severity=\"{}\" hash=\"{}\"",
        event.seq, event.severity, event.hash
    );
    for (name, value) in [("device", &event.device), ("source", &event.source)] {
        if let Some(value) = value {
            data.push_str(&format!(" {name}=\"{}\"", sd_escape(value)));
        }
    }
    data.push(']');
    let message: String = event.message.chars().filter(|c| !c.is_control()).collect();
    format!(
        "<{priority}>1 {timestamp} - fleetward - {} {data} \u{feff}{message}",
        event.kind
    )
}

/// RFC 5424 §6.3.3: `"`, `\` and `]` are escaped in parameter values.
fn sd_escape(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars().filter(|c| !c.is_control()) {
        if matches!(c, '"' | '\\' | ']') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_cover_timestamp_and_body() {
        let secret = Secret::new("0123456789abcdef-secret".into()).unwrap();
        let a = signature(&secret, 1_700_000_000, b"{}");
        assert!(a.starts_with("sha256=") && a.len() == 7 + 64, "{a}");
        assert_ne!(a, signature(&secret, 1_700_000_001, b"{}"));
        assert_ne!(a, signature(&secret, 1_700_000_000, b"{ }"));
        let other = Secret::new("another-secret-of-16".into()).unwrap();
        assert_ne!(a, signature(&other, 1_700_000_000, b"{}"));
    }

    #[test]
    fn short_secrets_are_refused_and_secrets_never_print() {
        assert!(Secret::new("short".into()).is_err());
        let secret = Secret::new("0123456789abcdef-secret".into()).unwrap();
        assert_eq!(format!("{secret:?}"), "Secret(***)");
    }

    #[test]
    fn urls_in_logs_lose_credentials_and_queries() {
        let url = reqwest::Url::parse("https://user:pw@siem.example/hook?token=abc").unwrap();
        assert_eq!(redact(&url), "https://siem.example/hook");
    }
}
