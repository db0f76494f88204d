//! The `[monitor]` section of `fleetward.toml`: detection thresholds, alert
//! sinks and automatic quarantine. Secrets are read from a file or an
//! environment variable named in the file, never written in it.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use fleetward_events::{EventKind, Severity};
use fleetward_server::monitor::alerts::{Secret, SyslogSink, SyslogTransport, WebhookSink};
use fleetward_server::monitor::{AutoQuarantine, MonitorConfig};
use fleetward_wire::identity::QuarantineCertificate;
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorFile {
    /// Two addresses for one identity within this long are a clone ("5m").
    clone_window: Option<String>,
    /// More failed authentications than this from one source …
    auth_burst_count: Option<usize>,
    /// … within this long is a burst ("1m").
    auth_burst_window: Option<String>,
    poll_early_factor: Option<f64>,
    poll_late_factor: Option<f64>,
    telemetry_z_threshold: Option<f64>,
    telemetry_min_samples: Option<usize>,
    /// Events one device may report per minute; the excess is dropped and counted.
    device_events_per_minute: Option<u32>,
    #[serde(default)]
    webhook: Vec<WebhookFile>,
    syslog: Option<SyslogFile>,
    quarantine: Option<QuarantineFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookFile {
    url: String,
    /// A file holding the HMAC secret (first line).
    secret_file: Option<PathBuf>,
    /// Or an environment variable holding it.
    secret_env: Option<String>,
    #[serde(default = "high")]
    min_severity: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SyslogFile {
    address: SocketAddr,
    #[serde(default = "udp")]
    transport: String,
    #[serde(default = "medium")]
    min_severity: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QuarantineFile {
    /// Event kinds that quarantine their device, e.g. "device.clone_suspected".
    #[serde(default)]
    automatic: Vec<String>,
    /// "keep" (default) or "revoke".
    #[serde(default)]
    certificate: Option<String>,
}

fn high() -> String {
    "high".to_owned()
}
fn medium() -> String {
    "medium".to_owned()
}
fn udp() -> String {
    "udp".to_owned()
}

fn severity(raw: &str) -> anyhow::Result<Severity> {
    Severity::parse(raw)
        .with_context(|| format!("unknown severity {raw:?} (info, low, medium, high or critical)"))
}

fn duration(raw: &str, what: &str) -> anyhow::Result<time::Duration> {
    let parsed =
        humantime::parse_duration(raw).with_context(|| format!("monitor.{what}: {raw:?}"))?;
    let parsed = time::Duration::try_from(parsed).context("duration out of range")?;
    if parsed <= time::Duration::ZERO {
        bail!("monitor.{what} must be longer than zero");
    }
    Ok(parsed)
}

impl MonitorFile {
    pub fn resolve(self) -> anyhow::Result<MonitorConfig> {
        let mut config = MonitorConfig::default();
        let detection = &mut config.detection;
        if let Some(raw) = &self.clone_window {
            detection.clone_window = duration(raw, "clone_window")?;
        }
        if let Some(raw) = &self.auth_burst_window {
            detection.auth_burst_window = duration(raw, "auth_burst_window")?;
        }
        if let Some(count) = self.auth_burst_count {
            if count == 0 {
                bail!("monitor.auth_burst_count must be at least 1");
            }
            detection.auth_burst_count = count;
        }
        for (value, target, name) in [
            (
                self.poll_early_factor,
                &mut detection.early_factor,
                "poll_early_factor",
            ),
            (
                self.poll_late_factor,
                &mut detection.late_factor,
                "poll_late_factor",
            ),
            (
                self.telemetry_z_threshold,
                &mut detection.z_threshold,
                "telemetry_z_threshold",
            ),
        ] {
            if let Some(value) = value {
                if !(value.is_finite() && value > 0.0) {
                    bail!("monitor.{name} must be a positive number");
                }
                *target = value;
            }
        }
        if detection.early_factor >= detection.late_factor {
            bail!("monitor.poll_early_factor must be below monitor.poll_late_factor");
        }
        if let Some(samples) = self.telemetry_min_samples {
            detection.min_samples = samples.max(2);
        }
        if let Some(rate) = self.device_events_per_minute {
            if rate == 0 {
                bail!("monitor.device_events_per_minute must be at least 1");
            }
            detection.device_events_per_minute = rate;
        }
        for (n, hook) in self.webhook.into_iter().enumerate() {
            config
                .webhooks
                .push(webhook(hook).with_context(|| format!("monitor.webhook[{n}]"))?);
        }
        if let Some(syslog) = self.syslog {
            let transport = match syslog.transport.as_str() {
                "udp" => SyslogTransport::Udp,
                "tcp" => SyslogTransport::Tcp,
                other => bail!("monitor.syslog.transport is udp or tcp, not {other:?}"),
            };
            config.syslog = Some(SyslogSink {
                address: syslog.address,
                transport,
                min_severity: severity(&syslog.min_severity).context("monitor.syslog")?,
            });
        }
        if let Some(quarantine) = self.quarantine {
            let kinds = quarantine
                .automatic
                .iter()
                .map(|raw| {
                    EventKind::parse(raw).with_context(|| {
                        format!("monitor.quarantine.automatic: unknown event kind {raw:?}")
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let certificate = match quarantine.certificate.as_deref() {
                None | Some("keep") => QuarantineCertificate::Keep,
                Some("revoke") => QuarantineCertificate::Revoke,
                Some(other) => {
                    bail!("monitor.quarantine.certificate is keep or revoke, not {other:?}")
                }
            };
            config.quarantine = AutoQuarantine { kinds, certificate };
        }
        Ok(config)
    }
}

fn webhook(hook: WebhookFile) -> anyhow::Result<WebhookSink> {
    let url = reqwest::Url::parse(&hook.url).context("url")?;
    let host = url.host_str().unwrap_or_default();
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match url.scheme() {
        "https" => {}
        // Plain HTTP only to a relay on this machine: alerts carry device
        // ids and addresses, and the signature does not hide them.
        "http" if loopback => {}
        other => bail!("url must be https:// (http:// only to a loopback address), not {other}://"),
    }
    let secret = match (hook.secret_file, hook.secret_env) {
        (Some(path), None) => std::fs::read_to_string(&path)
            .with_context(|| format!("reading secret_file {}", path.display()))?
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned(),
        (None, Some(name)) => {
            std::env::var(&name).with_context(|| format!("secret_env: ${name} is not set"))?
        }
        _ => bail!("give exactly one of secret_file and secret_env"),
    };
    Ok(WebhookSink {
        url,
        secret: Secret::new(secret)?,
        min_severity: severity(&hook.min_severity)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<MonitorConfig> {
        let file: MonitorFile = toml::from_str(text)?;
        file.resolve()
    }

    #[test]
    fn defaults_alert_nowhere_and_quarantine_nothing() {
        let config = parse("").unwrap();
        assert!(config.webhooks.is_empty() && config.syslog.is_none());
        assert!(config.quarantine.kinds.is_empty());
    }

    #[test]
    fn a_full_section() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("hook.secret");
        std::fs::write(&secret, "0123456789abcdef0123\n").unwrap();
        let config = parse(&format!(
            r#"
            clone_window = "10m"
            auth_burst_count = 5
            [[webhook]]
            url = "https://siem.example/hook"
            secret_file = "{}"
            min_severity = "critical"
            [syslog]
            address = "127.0.0.1:514"
            transport = "tcp"
            [quarantine]
            automatic = ["device.clone_suspected"]
            certificate = "revoke"
            "#,
            secret.display()
        ))
        .unwrap();
        assert_eq!(config.detection.clone_window, time::Duration::minutes(10));
        assert_eq!(config.detection.auth_burst_count, 5);
        assert_eq!(config.webhooks[0].min_severity, Severity::Critical);
        assert_eq!(config.syslog.unwrap().transport, SyslogTransport::Tcp);
        assert_eq!(config.quarantine.kinds, vec![EventKind::CloneSuspected]);
        assert_eq!(config.quarantine.certificate, QuarantineCertificate::Revoke);
    }

    #[test]
    fn bad_sections_are_refused_with_the_reason() {
        let check = |text: &str, expected: &str| {
            let error = format!("{:#}", parse(text).unwrap_err());
            assert!(error.contains(expected), "{text}: {error}");
        };
        check("clone_window = \"soon\"", "clone_window");
        check("clone_window = \"0s\"", "longer than zero");
        check("auth_burst_count = 0", "at least 1");
        check("poll_early_factor = -1.0", "positive");
        check("poll_early_factor = 5.0", "below");
        check("colour = 1", "unknown field");
        check(
            "[[webhook]]\nurl = \"http://siem.example/hook\"\nsecret_env = \"X\"",
            "https://",
        );
        check(
            "[[webhook]]\nurl = \"https://siem.example/hook\"",
            "exactly one of secret_file",
        );
        check(
            "[[webhook]]\nurl = \"https://siem.example/hook\"\nsecret_env = \"FLEETWARD_TEST_NO_SUCH_VAR\"",
            "is not set",
        );
        check(
            "[syslog]\naddress = \"127.0.0.1:514\"\ntransport = \"carrier-pigeon\"",
            "udp or tcp",
        );
        check(
            "[syslog]\naddress = \"127.0.0.1:514\"\nmin_severity = \"loud\"",
            "unknown severity",
        );
        check(
            "[quarantine]\nautomatic = [\"device.naughty\"]",
            "unknown event kind",
        );
        check("[quarantine]\ncertificate = \"burn\"", "keep or revoke");
    }
}
