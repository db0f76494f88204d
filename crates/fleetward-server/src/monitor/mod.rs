//! Rogue-device detection and the response to security events.
//!
//! The rules themselves are pure functions in `fleetward_core::detect`.
//! This module feeds them from what the listeners see as it happens (failed
//! authentications per source address, the addresses each device identity
//! comes from) and turns findings into security events. [`respond`] follows
//! the event log and acts on it: alerts to webhooks and syslog, and
//! automatic quarantine where policy asks for it. Both halves keep bounded
//! state, whatever the traffic.
//!
//! Detection state lives in the process: with several replicas each sees
//! its own share of connections (documented in the deployment notes).

pub mod alerts;
pub mod respond;
pub mod watch;

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;

use fleetward_core::detect::{self, DetectionPolicy, Sighting};
use fleetward_core::{DeviceId, DeviceStatus};
use fleetward_events::{Event, EventKind};
use fleetward_store::{AuditEntry, DeviceChange, Store};
use fleetward_wire::identity::QuarantineCertificate;
use time::OffsetDateTime;

use crate::error::ApiError;
use crate::identity::IdentityState;

/// Detection settings, alert sinks and automatic responses (`[monitor]`
/// in `fleetward.toml`).
#[derive(Debug, Clone, Default)]
pub struct MonitorConfig {
    pub detection: DetectionPolicy,
    pub webhooks: Vec<alerts::WebhookSink>,
    pub syslog: Option<alerts::SyslogSink>,
    pub quarantine: AutoQuarantine,
}

/// Which findings quarantine a device by themselves. Empty by default: a
/// false positive would take a device out of service, so automatic
/// quarantine is a decision the fleet's owner makes in policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AutoQuarantine {
    pub kinds: Vec<EventKind>,
    pub certificate: QuarantineCertificate,
}

/// Sources and devices tracked at once; beyond this, the oldest go first.
const MAX_TRACKED: usize = 1_000_000;
/// Address changes remembered per device (a clone alternates within these).
const RUNS_PER_DEVICE: usize = 4;

/// The live half of detection.
#[derive(Debug)]
pub struct Monitor {
    policy: DetectionPolicy,
    failures: Mutex<HashMap<IpAddr, SourceFailures>>,
    sightings: Mutex<HashMap<DeviceId, DeviceSightings>>,
    /// Rules fed by device reports and polls.
    pub watch: watch::DeviceWatch,
}

#[derive(Debug, Default)]
struct SourceFailures {
    times: VecDeque<OffsetDateTime>,
    /// No second burst event for this source before then.
    quiet_until: Option<OffsetDateTime>,
}

/// Consecutive requests from one address collapse into a run.
#[derive(Debug, Clone, Copy)]
struct Run {
    address: IpAddr,
    first: OffsetDateTime,
    last: OffsetDateTime,
}

#[derive(Debug, Default)]
struct DeviceSightings {
    runs: VecDeque<Run>,
    quiet_until: Option<OffsetDateTime>,
}

impl Monitor {
    pub fn new(policy: DetectionPolicy) -> Self {
        Monitor {
            policy,
            failures: Mutex::default(),
            sightings: Mutex::default(),
            watch: watch::DeviceWatch::default(),
        }
    }

    pub fn policy(&self) -> &DetectionPolicy {
        &self.policy
    }

    /// A failed authentication (TLS handshake, enrolment, operator token)
    /// from `source`. Returns the burst event to log, once per window.
    pub fn auth_failure(&self, source: IpAddr, at: OffsetDateTime) -> Option<Event> {
        let window = self.policy.auth_burst_window;
        let Ok(mut failures) = self.failures.lock() else {
            return None;
        };
        if failures.len() >= MAX_TRACKED && !failures.contains_key(&source) {
            failures.retain(|_, f| f.times.back().is_some_and(|last| at - *last <= window));
        }
        let entry = failures.entry(source).or_default();
        entry.times.push_back(at);
        while entry
            .times
            .front()
            .is_some_and(|first| at - *first > window)
        {
            entry.times.pop_front();
        }
        // More than the threshold is all a burst needs; keep no more.
        while entry.times.len() > self.policy.auth_burst_count + 1 {
            entry.times.pop_front();
        }
        if entry.quiet_until.is_some_and(|quiet| at < quiet) {
            return None;
        }
        let observed: Vec<(String, OffsetDateTime)> = entry
            .times
            .iter()
            .map(|t| (source.to_string(), *t))
            .collect();
        let (_, count) = detect::auth_failure_bursts(&observed, &self.policy)
            .into_iter()
            .next()?;
        entry.quiet_until = Some(at + window);
        Some(finding(
            EventKind::AuthFailureBurst,
            None,
            Some(source.to_string()),
            at,
            format!(
                "{count} failed authentications from {source} within {}",
                humanize(window)
            ),
            serde_json::json!({ "failures": count, "window_secs": window.whole_seconds() }),
        ))
    }

    /// `device` made a request from `address`. Returns the clone event to
    /// log when the identity alternates between addresses, once per window.
    pub fn sighting(
        &self,
        device: &DeviceId,
        address: IpAddr,
        at: OffsetDateTime,
    ) -> Option<Event> {
        let window = self.policy.clone_window;
        let Ok(mut sightings) = self.sightings.lock() else {
            return None;
        };
        if sightings.len() >= MAX_TRACKED && !sightings.contains_key(device) {
            sightings.retain(|_, s| s.runs.back().is_some_and(|run| at - run.last <= window));
        }
        let seen = sightings.entry(device.clone()).or_default();
        match seen.runs.back_mut() {
            Some(run) if run.address == address => {
                run.last = at;
                return None;
            }
            _ => seen.runs.push_back(Run {
                address,
                first: at,
                last: at,
            }),
        }
        while seen.runs.len() > RUNS_PER_DEVICE {
            seen.runs.pop_front();
        }
        if seen.quiet_until.is_some_and(|quiet| at < quiet) {
            return None;
        }
        let observed: Vec<Sighting> = seen
            .runs
            .iter()
            .flat_map(|run| [(run.address, run.first), (run.address, run.last)])
            .map(|(address, at)| Sighting {
                device: device.clone(),
                address: address.to_string(),
                at,
            })
            .collect();
        let clone = detect::clones(&observed, &self.policy).into_iter().next()?;
        seen.quiet_until = Some(at + window);
        let (a, b) = &clone.addresses;
        Some(finding(
            EventKind::CloneSuspected,
            Some(device.clone()),
            Some(address.to_string()),
            at,
            format!("device {device} is connecting from {a} and {b} alternately"),
            serde_json::json!({ "addresses": [a, b] }),
        ))
    }

    /// Logs a finding; detection must never fail the request it watched.
    pub async fn log(store: &dyn Store, event: Event) {
        tracing::warn!(kind = %event.kind, message = %event.message, "security finding");
        if let Err(error) = store.append_events(&[event]).await {
            tracing::warn!(%error, "logging a security finding failed");
        }
    }
}

/// Records a failed authentication from `peer`: a (rate-limited) audit
/// entry, which is also a typed security event, and a sample for the
/// burst rule.
pub async fn record_auth_failure(
    state: &crate::AppState,
    peer: std::net::SocketAddr,
    actor: &str,
    action: &str,
    reason: &str,
) {
    let now = state.now();
    let entry = AuditEntry {
        at: now,
        actor: actor.to_owned(),
        action: action.to_owned(),
        target: format!("peer:{peer}"),
        source: peer.to_string(),
        detail: serde_json::json!({ "reason": reason }),
    };
    state.identity.record_refusal(&*state.store, entry).await;
    if let Some(burst) = state.monitor.auth_failure(peer.ip(), now) {
        Monitor::log(&*state.store, burst).await;
    }
}

fn humanize(duration: time::Duration) -> String {
    let secs = duration.whole_seconds();
    if secs % 60 == 0 {
        format!("{} min", secs / 60)
    } else {
        format!("{secs} s")
    }
}

fn finding(
    kind: EventKind,
    device: Option<DeviceId>,
    source: Option<String>,
    at: OffsetDateTime,
    message: String,
    detail: serde_json::Value,
) -> Event {
    Event {
        kind,
        severity: kind.default_severity(),
        device,
        source,
        server_time_ms: crate::events::millis(at),
        device_time_ms: None,
        message,
        detail: detail.to_string(),
    }
}

/// Who quarantines: an operator (through the API) or a rule.
#[derive(Debug, Clone)]
pub struct QuarantineRequest<'a> {
    pub device: &'a DeviceId,
    pub reason: &'a str,
    pub certificate: QuarantineCertificate,
    /// The audit record's actor, source and time.
    pub actor: String,
    pub source: String,
    pub at: OffsetDateTime,
}

/// Quarantines a device: no rollout reaches it from now on (the director
/// offers only to `active` devices), and, if asked, its certificates are
/// revoked at once. Logged as `device.quarantined`.
pub async fn quarantine(
    store: &dyn Store,
    identity: &IdentityState,
    request: &QuarantineRequest<'_>,
) -> Result<fleetward_store::Device, ApiError> {
    let id = request.device;
    let device = store
        .device(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("device {id} not found")))?;
    match device.status {
        DeviceStatus::Decommissioned => {
            return Err(ApiError::conflict(format!(
                "device {id} is decommissioned; it cannot be quarantined"
            )));
        }
        DeviceStatus::Quarantined if request.certificate == QuarantineCertificate::Keep => {
            return Err(ApiError::conflict(format!(
                "device {id} is already quarantined"
            )));
        }
        _ => {}
    }
    let certificate = match request.certificate {
        QuarantineCertificate::Keep => "keep",
        QuarantineCertificate::Revoke => "revoke",
    };
    let audit = |action: &str| AuditEntry {
        at: request.at,
        actor: request.actor.clone(),
        action: action.to_owned(),
        target: format!("device:{id}"),
        source: request.source.clone(),
        detail: serde_json::json!({
            "reason": request.reason,
            "certificate": certificate,
            "previous_status": device.status.as_str(),
        }),
    };
    let mut updated = device.clone();
    if device.status != DeviceStatus::Quarantined {
        let change = DeviceChange {
            status: Some(DeviceStatus::Quarantined),
            ..DeviceChange::default()
        };
        updated = store
            .update_device(id, &change, &audit("device.quarantine"))
            .await?;
    }
    if request.certificate == QuarantineCertificate::Revoke {
        let revoked = store
            .revoke_device(
                id,
                request.at,
                "key-compromise",
                request.reason,
                false,
                &audit("device.revoke"),
            )
            .await?;
        for cert in &revoked {
            identity.revoke(&cert.serial, request.at);
        }
    }
    Ok(updated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use time::Duration;

    fn at(secs: i64) -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + Duration::days(20_000) + Duration::seconds(secs)
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
    }

    #[test]
    fn a_burst_is_reported_once_per_window() {
        let monitor = Monitor::new(DetectionPolicy::default());
        let limit = monitor.policy().auth_burst_count;
        let mut found = Vec::new();
        for n in 0..(limit * 5) {
            let secs = i64::try_from(n).unwrap();
            if let Some(event) = monitor.auth_failure(ip(1), at(secs)) {
                found.push(n);
                assert_eq!(event.kind, EventKind::AuthFailureBurst);
                assert_eq!(event.source.as_deref(), Some("10.0.0.1"));
            }
        }
        // The (limit+1)-th failure crosses the line; the next report waits a window.
        assert_eq!(found, vec![limit, limit + 60]);
    }

    #[test]
    fn failures_spread_out_or_from_many_sources_are_no_burst() {
        let monitor = Monitor::new(DetectionPolicy::default());
        for n in 0..200 {
            assert!(monitor.auth_failure(ip(2), at(n * 10)).is_none());
            assert!(
                monitor
                    .auth_failure(ip(3 + (n % 100) as u8), at(n))
                    .is_none()
            );
        }
    }

    #[test]
    fn an_identity_alternating_between_addresses_is_a_clone() {
        let monitor = Monitor::new(DetectionPolicy::default());
        let device = DeviceId::parse("d-1").unwrap();
        assert!(monitor.sighting(&device, ip(1), at(0)).is_none());
        assert!(monitor.sighting(&device, ip(1), at(5)).is_none());
        assert!(monitor.sighting(&device, ip(2), at(10)).is_none());
        let event = monitor.sighting(&device, ip(1), at(20)).unwrap();
        assert_eq!(event.kind, EventKind::CloneSuspected);
        assert_eq!(event.device, Some(device.clone()));
        // Once per window.
        assert!(monitor.sighting(&device, ip(2), at(30)).is_none());
    }

    #[test]
    fn a_device_that_moves_is_no_clone() {
        let monitor = Monitor::new(DetectionPolicy::default());
        let device = DeviceId::parse("d-2").unwrap();
        for n in 0..10 {
            assert!(monitor.sighting(&device, ip(1), at(n * 60)).is_none());
        }
        for n in 10..20 {
            assert!(monitor.sighting(&device, ip(2), at(n * 60)).is_none());
        }
        // Back to the first address, but hours later: a move back, not a clone.
        assert!(
            monitor
                .sighting(&device, ip(1), at(20 * 60 + 3600))
                .is_none()
        );
    }
}
