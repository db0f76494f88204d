//! Rules fed by what devices say about themselves: the software version
//! they report, their telemetry against their own baseline, how they keep
//! their poll schedule, and how many events they send.
//!
//! The rules are the pure functions of `fleetward_core::detect`; this
//! module keeps the per-device state they need (a running baseline per
//! metric, the last poll, a rate window, when each finding may repeat),
//! bounded in count whatever the fleet does. State lives in the process:
//! a restart starts baselines afresh (they need `min_samples` again before
//! judging), and each replica judges the devices it serves.

use std::collections::HashMap;
use std::sync::Mutex;

use fleetward_core::DeviceId;
use fleetward_core::detect::{self, Baseline, DetectionPolicy, Schedule, VersionVerdict};
use fleetward_events::{Event, EventKind};
use fleetward_wire::device::Conditions;
use time::{Duration, OffsetDateTime};

use super::finding;

/// Devices watched at once; beyond this, those not heard from longest go.
const MAX_WATCHED: usize = 1_000_000;
/// The same finding about the same device is logged at most this often.
const REPEAT_AFTER: Duration = Duration::hours(1);
/// The window of the per-device event rate limit.
const RATE_WINDOW: Duration = Duration::minutes(1);

/// The telemetry values judged against a device's own baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Cpu,
    Memory,
    Temperature,
    NetworkRx,
    NetworkTx,
}

impl Metric {
    fn name(self) -> &'static str {
        match self {
            Metric::Cpu => "cpu_percent",
            Metric::Memory => "memory_used_bytes",
            Metric::Temperature => "temperature_celsius",
            Metric::NetworkRx => "network_rx_bytes_per_sec",
            Metric::NetworkTx => "network_tx_bytes_per_sec",
        }
    }

    fn index(self) -> usize {
        match self {
            Metric::Cpu => 0,
            Metric::Memory => 1,
            Metric::Temperature => 2,
            Metric::NetworkRx => 3,
            Metric::NetworkTx => 4,
        }
    }
}

/// What the watch remembers of one device.
#[derive(Debug, Default)]
struct Watched {
    heard: Option<OffsetDateTime>,
    last_poll: Option<OffsetDateTime>,
    baselines: [Baseline; 5],
    /// The last network counters and when, to turn them into rates.
    counters: Option<(OffsetDateTime, Option<u64>, Option<u64>)>,
    rate_start: Option<OffsetDateTime>,
    rate_count: u32,
    /// Dropped in this window after its first overflow was reported.
    rate_dropped: u32,
    /// Whether this window's first overflow was reported already.
    rate_reported: bool,
    /// Finding kind (and detail) → no repeat before then.
    quiet: HashMap<String, OffsetDateTime>,
}

impl Watched {
    /// Whether a finding keyed `key` may be logged now (and starts its
    /// quiet period if so).
    fn may_report(&mut self, key: String, at: OffsetDateTime) -> bool {
        if self.quiet.get(&key).is_some_and(|until| at < *until) {
            return false;
        }
        if self.quiet.len() > 32 {
            self.quiet.retain(|_, until| at < *until);
        }
        self.quiet.insert(key, at + REPEAT_AFTER);
        true
    }
}

/// Per-device detection state.
#[derive(Debug, Default)]
pub struct DeviceWatch {
    devices: Mutex<HashMap<DeviceId, Watched>>,
}

impl DeviceWatch {
    fn with<T>(
        &self,
        device: &DeviceId,
        at: OffsetDateTime,
        act: impl FnOnce(&mut Watched) -> T,
    ) -> Option<T> {
        let mut devices = self.devices.lock().ok()?;
        if devices.len() >= MAX_WATCHED && !devices.contains_key(device) {
            // Forget the tenth heard from longest ago.
            let mut heard: Vec<OffsetDateTime> = devices.values().filter_map(|w| w.heard).collect();
            heard.sort_unstable();
            let cut = heard
                .get(heard.len() / 10)
                .copied()
                .unwrap_or(OffsetDateTime::UNIX_EPOCH);
            devices.retain(|_, w| w.heard.is_some_and(|h| h > cut));
        }
        let watched = devices.entry(device.clone()).or_default();
        watched.heard = Some(at);
        Some(act(watched))
    }

    /// A poll for updates: far off the interval the server set is a
    /// finding (a modified agent polling in a loop, or a device that was
    /// silent for many intervals).
    pub fn poll(
        &self,
        device: &DeviceId,
        interval: Duration,
        at: OffsetDateTime,
        policy: &DetectionPolicy,
    ) -> Option<Event> {
        self.with(device, at, |watched| {
            let last = watched.last_poll.replace(at)?;
            let gap = at - last;
            let verdict = detect::schedule(gap, interval, policy);
            let label = match verdict {
                Schedule::OnTime => return None,
                Schedule::TooEarly => "too early",
                Schedule::TooLate => "after a long silence",
            };
            watched
                .may_report(format!("schedule:{label}"), at)
                .then(|| {
                    finding(
                        EventKind::OffSchedule,
                        Some(device.clone()),
                        None,
                        at,
                        format!(
                            "device {device} polled {label}: {} s after its last poll, interval {} s",
                            gap.whole_seconds(),
                            interval.whole_seconds()
                        ),
                        serde_json::json!({
                            "gap_secs": gap.whole_seconds(),
                            "interval_secs": interval.whole_seconds(),
                            "verdict": label,
                        }),
                    )
                })
        })
        .flatten()
    }

    /// Telemetry from a device: each value is judged against the device's
    /// own baseline before it joins it (an outlier does not join, so a
    /// compromised device cannot drag its baseline along).
    pub fn telemetry(
        &self,
        device: &DeviceId,
        conditions: &Conditions,
        at: OffsetDateTime,
        policy: &DetectionPolicy,
    ) -> Vec<Event> {
        self.with(device, at, |watched| {
            let mut values: Vec<(Metric, f64)> = Vec::new();
            if let Some(cpu) = conditions.cpu_percent {
                values.push((Metric::Cpu, cpu));
            }
            if let Some(memory) = conditions.memory_used_bytes {
                values.push((Metric::Memory, memory as f64));
            }
            if let Some(temperature) = conditions.temperature_celsius {
                values.push((Metric::Temperature, temperature));
            }
            let (rx, tx) = (conditions.network_rx_bytes, conditions.network_tx_bytes);
            if let Some((before, rx0, tx0)) = watched.counters.replace((at, rx, tx)) {
                let secs = (at - before).as_seconds_f64();
                if secs >= 1.0 {
                    // Counters that went down were reset (a reboot): no rate.
                    let rate = |now: Option<u64>, then: Option<u64>| match (now, then) {
                        (Some(now), Some(then)) if now >= then => Some((now - then) as f64 / secs),
                        _ => None,
                    };
                    if let Some(r) = rate(rx, rx0) {
                        values.push((Metric::NetworkRx, r));
                    }
                    if let Some(t) = rate(tx, tx0) {
                        values.push((Metric::NetworkTx, t));
                    }
                }
            }
            let mut found = Vec::new();
            for (metric, value) in values {
                let baseline = &mut watched.baselines[metric.index()];
                match baseline.outlier(value, policy) {
                    Some(z) => {
                        let (mean, spread) = (baseline.mean(), baseline.std_dev());
                        if watched.may_report(format!("telemetry:{}", metric.name()), at) {
                            found.push(finding(
                                EventKind::TelemetryOutlier,
                                Some(device.clone()),
                                None,
                                at,
                                format!(
                                    "device {device}: {} = {value:.1}, z = {z:.1} against its own baseline (mean {mean:.1})",
                                    metric.name()
                                ),
                                serde_json::json!({
                                    "metric": metric.name(),
                                    "value": value,
                                    "z": z,
                                    "mean": mean,
                                    "std_dev": spread,
                                }),
                            ));
                        }
                    }
                    None => baseline.add(value),
                }
            }
            found
        })
        .unwrap_or_default()
    }

    /// A reported running version against the releases for the device's
    /// hardware and the version the registry has for it.
    pub fn version(
        &self,
        device: &DeviceId,
        reported: &str,
        previous: Option<&str>,
        released: &std::collections::BTreeSet<String>,
        at: OffsetDateTime,
    ) -> Option<Event> {
        // The registry's version is the baseline (set at registration or by
        // a successful update): reporting it again says nothing new. A device
        // the registry has no version for (enrolled with its factory image)
        // is judged once a registration or an update has given it one.
        let previous = previous?;
        if previous == reported {
            return None;
        }
        let previous = Some(previous);
        let (kind, message, detail) = match detect::judge_version(reported, previous, released) {
            VersionVerdict::Expected => return None,
            VersionVerdict::Unapproved => (
                EventKind::UnapprovedFirmware,
                format!("device {device} runs {reported}, which no release has"),
                serde_json::json!({ "reported": reported, "registered": previous }),
            ),
            VersionVerdict::Downgrade { from } => (
                EventKind::Downgrade,
                format!("device {device} runs {reported}, lower than {from}"),
                serde_json::json!({ "reported": reported, "registered": from }),
            ),
        };
        self.with(device, at, |watched| {
            watched
                .may_report(format!("version:{}:{reported}", kind.as_str()), at)
                .then(|| finding(kind, Some(device.clone()), None, at, message, detail))
        })
        .flatten()
    }

    /// How many of `offered` device-reported events may be logged now under
    /// the per-device rate; once per window, the excess is itself reported
    /// ([`EventKind::EventsDropped`]) so a flood is visible, not silent.
    pub fn admit_events(
        &self,
        device: &DeviceId,
        offered: usize,
        at: OffsetDateTime,
        per_minute: u32,
    ) -> (usize, Option<Event>) {
        self.with(device, at, |watched| {
            let fresh = watched
                .rate_start
                .is_none_or(|start| at - start >= RATE_WINDOW);
            let mut notice = None;
            if fresh {
                if watched.rate_dropped > 0 {
                    notice = Some(dropped(device, watched.rate_dropped, at));
                }
                watched.rate_start = Some(at);
                watched.rate_count = 0;
                watched.rate_dropped = 0;
                watched.rate_reported = false;
            }
            let room = per_minute.saturating_sub(watched.rate_count);
            let offered32 = u32::try_from(offered).unwrap_or(u32::MAX);
            let admitted = offered32.min(room);
            watched.rate_count += admitted;
            let excess = offered32 - admitted;
            if excess > 0 {
                // The first overflow of a window is reported at once; the
                // rest of the window's count goes out with the next window.
                if !watched.rate_reported && notice.is_none() {
                    watched.rate_reported = true;
                    notice = Some(dropped(device, excess, at));
                } else {
                    watched.rate_dropped += excess;
                }
            }
            (usize::try_from(admitted).unwrap_or(0), notice)
        })
        .unwrap_or((offered, None))
    }
}

fn dropped(device: &DeviceId, count: u32, at: OffsetDateTime) -> Event {
    finding(
        EventKind::EventsDropped,
        Some(device.clone()),
        None,
        at,
        format!("device {device} sent {count} more events than its rate allows; they were dropped"),
        serde_json::json!({ "dropped": count }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(raw: &str) -> DeviceId {
        DeviceId::parse(raw).unwrap()
    }

    fn t(secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000 + secs).unwrap()
    }

    #[test]
    fn polling_far_off_schedule_is_found_once_per_hour() {
        let watch = DeviceWatch::default();
        let policy = DetectionPolicy::default();
        let interval = Duration::seconds(60);
        let d = id("d1");
        assert!(
            watch.poll(&d, interval, t(0), &policy).is_none(),
            "first poll"
        );
        assert!(
            watch.poll(&d, interval, t(60), &policy).is_none(),
            "on time"
        );
        let early = watch.poll(&d, interval, t(61), &policy).unwrap();
        assert_eq!(early.kind, EventKind::OffSchedule);
        assert!(watch.poll(&d, interval, t(62), &policy).is_none(), "quiet");
        let late = watch.poll(&d, interval, t(62 + 3600), &policy).unwrap();
        assert!(late.message.contains("long silence"), "{}", late.message);
    }

    #[test]
    fn telemetry_outliers_are_judged_against_the_devices_own_baseline() {
        let watch = DeviceWatch::default();
        let policy = DetectionPolicy::default();
        let d = id("d1");
        let sample = |cpu: f64| Conditions {
            agent_version: "0.1.0".into(),
            cpu_percent: Some(cpu),
            ..Conditions::default()
        };
        for n in 0..40 {
            let cpu = 10.0 + f64::from(n % 5);
            assert!(
                watch
                    .telemetry(&d, &sample(cpu), t(n.into()), &policy)
                    .is_empty()
            );
        }
        let found = watch.telemetry(&d, &sample(98.0), t(100), &policy);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].kind, EventKind::TelemetryOutlier);
        // Another device with a busy baseline is not an outlier at 98 %.
        let busy = id("d2");
        for n in 0..40 {
            let cpu = 90.0 + f64::from(n % 9);
            watch.telemetry(&busy, &sample(cpu), t(n.into()), &policy);
        }
        assert!(
            watch
                .telemetry(&busy, &sample(98.0), t(100), &policy)
                .is_empty()
        );
    }

    #[test]
    fn network_counters_become_rates_and_resets_are_skipped() {
        let watch = DeviceWatch::default();
        let policy = DetectionPolicy::default();
        let d = id("d1");
        let sample = |rx: u64| Conditions {
            agent_version: "0.1.0".into(),
            network_rx_bytes: Some(rx),
            ..Conditions::default()
        };
        let mut rx = 0;
        for n in 0..40 {
            rx += 1000 + (n % 3) * 10;
            assert!(
                watch
                    .telemetry(&d, &sample(rx), t(i64::try_from(n).unwrap() * 10), &policy)
                    .is_empty()
            );
        }
        assert!(
            watch.telemetry(&d, &sample(5), t(400), &policy).is_empty(),
            "reset"
        );
        let flood = watch.telemetry(&d, &sample(5 + 10_000_000), t(410), &policy);
        assert_eq!(flood.len(), 1, "{flood:?}");
    }

    #[test]
    fn versions_no_release_has_or_lower_than_before_are_found() {
        let watch = DeviceWatch::default();
        let released: std::collections::BTreeSet<String> =
            ["1.0.0", "1.1.0"].iter().map(|v| (*v).to_owned()).collect();
        let d = id("d1");
        let check = |reported: &str, previous: Option<&str>, expected: Option<EventKind>| {
            let fresh = DeviceWatch::default();
            let got = fresh
                .version(&d, reported, previous, &released, t(0))
                .map(|e| e.kind);
            assert_eq!(got, expected, "{reported} after {previous:?}");
        };
        check("1.1.0", Some("1.0.0"), None);
        check("1.0.0", Some("1.0.0"), None);
        check(
            "0.0.1-evil",
            Some("1.0.0"),
            Some(EventKind::UnapprovedFirmware),
        );
        check("1.0.0", Some("1.1.0"), Some(EventKind::Downgrade));
        check("9.9.9", None, None);
        assert!(
            watch
                .version(&d, "6.6.6", Some("1.0.0"), &released, t(0))
                .is_some()
        );
        assert!(
            watch
                .version(&d, "6.6.6", Some("1.0.0"), &released, t(1))
                .is_none(),
            "not repeated within the hour"
        );
    }

    #[test]
    fn a_flood_of_device_events_is_cut_and_counted() {
        let watch = DeviceWatch::default();
        let d = id("d1");
        assert_eq!(watch.admit_events(&d, 5, t(0), 10), (5, None));
        let (admitted, notice) = watch.admit_events(&d, 20, t(1), 10);
        assert_eq!(admitted, 5);
        assert_eq!(notice.unwrap().kind, EventKind::EventsDropped);
        let (admitted, notice) = watch.admit_events(&d, 3, t(2), 10);
        assert_eq!((admitted, notice.is_none()), (0, true));
        let (admitted, notice) = watch.admit_events(&d, 1, t(61), 10);
        assert_eq!(admitted, 1);
        let notice = notice.expect("the rest of the last window is reported");
        assert!(notice.message.contains(" 3 "), "{}", notice.message);
    }
}
