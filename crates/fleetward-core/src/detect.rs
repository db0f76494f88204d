//! Rogue-device detection rules, as pure functions over what the server
//! has seen.
//!
//! Each rule takes observations and a setting from policy and returns what
//! it found; the server feeds them from its stores and turns findings into
//! security events, alerts and (if policy says so) quarantine. Nothing here
//! reads the clock: observation times come with the observations, and
//! "now" is a parameter where a rule needs it.
//!
//! The rules follow what AWS IoT Device Defender and the OWASP IoT guidance
//! look for: identities used from two places at once (cloned keys), bursts
//! of failed authentication (credential stuffing, a scanner), software the
//! maker never released or older than before (tampering, downgrade
//! attacks), devices that poll far off their schedule, and telemetry that
//! leaves a device's own baseline (a miner, a botnet member).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use time::{Duration, OffsetDateTime};

use crate::DeviceId;
use crate::version;

/// Detection settings from policy, with defaults a fleet can start from.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectionPolicy {
    /// Two addresses for one identity within this long are a clone.
    pub clone_window: Duration,
    /// More than `auth_burst_count` failures from one source within
    /// `auth_burst_window` is a burst.
    pub auth_burst_count: usize,
    pub auth_burst_window: Duration,
    /// A poll gap below `interval × early` or above `interval × late` is off schedule.
    pub early_factor: f64,
    pub late_factor: f64,
    /// |z| above this is an outlier, once a baseline has `min_samples`.
    pub z_threshold: f64,
    pub min_samples: usize,
    /// Events one device may report per minute; the excess is dropped and
    /// counted (a flooding device must not drown the log).
    pub device_events_per_minute: u32,
}

impl Default for DetectionPolicy {
    fn default() -> Self {
        DetectionPolicy {
            clone_window: Duration::minutes(5),
            auth_burst_count: 20,
            auth_burst_window: Duration::minutes(1),
            early_factor: 0.25,
            late_factor: 4.0,
            z_threshold: 4.0,
            min_samples: 30,
            device_events_per_minute: 120,
        }
    }
}

/// A device identity seen at an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sighting {
    pub device: DeviceId,
    pub address: String,
    pub at: OffsetDateTime,
}

/// A clone finding: one identity, two addresses, close in time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloneFinding {
    pub device: DeviceId,
    pub addresses: (String, String),
    pub at: OffsetDateTime,
}

/// Identities seen from two different addresses within the clone window.
/// A device that moves (new DHCP lease, roaming) shows as one address after
/// another with a gap; a clone keeps alternating. One finding per device.
pub fn clones(sightings: &[Sighting], policy: &DetectionPolicy) -> Vec<CloneFinding> {
    let mut by_device: BTreeMap<&DeviceId, Vec<&Sighting>> = BTreeMap::new();
    for sighting in sightings {
        by_device
            .entry(&sighting.device)
            .or_default()
            .push(sighting);
    }
    let mut findings = Vec::new();
    for (device, mut seen) in by_device {
        seen.sort_by_key(|s| s.at);
        // A move is one change of address; a clone changes back and forth.
        let mut changes = Vec::new();
        for pair in seen.windows(2) {
            if pair[0].address != pair[1].address && pair[1].at - pair[0].at <= policy.clone_window
            {
                changes.push(pair);
            }
        }
        let flips_back = changes
            .windows(2)
            .any(|c| c[0][0].address == c[1][1].address);
        if let Some(first) = changes.first().filter(|_| flips_back) {
            findings.push(CloneFinding {
                device: device.clone(),
                addresses: (first[0].address.clone(), first[1].address.clone()),
                at: first[1].at,
            });
        }
    }
    findings
}

/// Sources with more failed authentications than the policy allows inside
/// any window of its length, with the largest count seen.
pub fn auth_failure_bursts(
    failures: &[(String, OffsetDateTime)],
    policy: &DetectionPolicy,
) -> Vec<(String, usize)> {
    let mut by_source: BTreeMap<&str, Vec<OffsetDateTime>> = BTreeMap::new();
    for (source, at) in failures {
        by_source.entry(source).or_default().push(*at);
    }
    let mut bursts = Vec::new();
    for (source, mut times) in by_source {
        times.sort();
        let mut window = VecDeque::new();
        let mut most = 0;
        for at in times {
            window.push_back(at);
            while window
                .front()
                .is_some_and(|first| at - *first > policy.auth_burst_window)
            {
                window.pop_front();
            }
            most = most.max(window.len());
        }
        if most > policy.auth_burst_count {
            bursts.push((source.to_owned(), most));
        }
    }
    bursts
}

/// What a device's reported software version says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionVerdict {
    Expected,
    /// No release of the maker has this version.
    Unapproved,
    /// Lower than the version the device reported before.
    Downgrade {
        from: String,
    },
}

/// Judges a reported version against the released versions for the
/// device's hardware and what it ran before. An unapproved version is worse
/// than a downgrade, so it is reported first.
pub fn judge_version(
    reported: &str,
    previous: Option<&str>,
    released: &BTreeSet<String>,
) -> VersionVerdict {
    if !released.contains(reported) {
        return VersionVerdict::Unapproved;
    }
    match previous {
        Some(previous) if version::compare(reported, previous).is_lt() => {
            VersionVerdict::Downgrade {
                from: previous.to_owned(),
            }
        }
        _ => VersionVerdict::Expected,
    }
}

/// How a device keeps its poll schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    OnTime,
    /// Polls much more often than told: a modified agent, or a flood.
    TooEarly,
    /// Silent far longer than told: offline, or blocked.
    TooLate,
}

/// Judges the gap between a device's last two polls against its interval.
pub fn schedule(gap: Duration, interval: Duration, policy: &DetectionPolicy) -> Schedule {
    let gap = gap.as_seconds_f64();
    let interval = interval.as_seconds_f64();
    if gap < interval * policy.early_factor {
        Schedule::TooEarly
    } else if gap > interval * policy.late_factor {
        Schedule::TooLate
    } else {
        Schedule::OnTime
    }
}

/// A device's own running baseline of one telemetry value (Welford's
/// algorithm: constant memory, numerically stable).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Baseline {
    pub samples: u64,
    mean: f64,
    m2: f64,
}

impl Baseline {
    pub fn add(&mut self, value: f64) {
        if !value.is_finite() {
            return;
        }
        self.samples += 1;
        let delta = value - self.mean;
        self.mean += delta / self.samples as f64;
        self.m2 += delta * (value - self.mean);
    }

    pub fn mean(&self) -> f64 {
        self.mean
    }

    pub fn std_dev(&self) -> f64 {
        if self.samples < 2 {
            return 0.0;
        }
        (self.m2 / (self.samples - 1) as f64).sqrt()
    }

    /// The z-score of `value` if it is an outlier against this baseline;
    /// `None` while the baseline is too young or the value is ordinary.
    ///
    /// A perfectly flat baseline would make any change infinitely unusual,
    /// so the spread is floored at 1 % of the mean (or 1e-9).
    pub fn outlier(&self, value: f64, policy: &DetectionPolicy) -> Option<f64> {
        if (self.samples as usize) < policy.min_samples || !value.is_finite() {
            return None;
        }
        let spread = self.std_dev().max(self.mean.abs() * 0.01).max(1e-9);
        let z = (value - self.mean) / spread;
        (z.abs() > policy.z_threshold).then_some(z)
    }
}

/// Whether `now` is past a device's expected next poll by the late factor;
/// used to find devices that went silent without sending anything.
pub fn is_silent(
    last_seen: OffsetDateTime,
    interval: Duration,
    now: OffsetDateTime,
    policy: &DetectionPolicy,
) -> bool {
    schedule(now - last_seen, interval, policy) == Schedule::TooLate
}
