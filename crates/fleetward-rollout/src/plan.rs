//! What a rollout was asked to do, parsed and checked, and which phase each
//! device belongs to.

use std::fmt;
use std::time::Duration;

use fleetward_core::DeviceId;
use sha2::{Digest, Sha256};

use crate::{PolicyError, Window};

/// A share of a set, exact to a millionth (`0.0001%`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Percent {
    per_million: u32,
}

impl Percent {
    pub const ZERO: Percent = Percent { per_million: 0 };
    pub const ALL: Percent = Percent {
        per_million: 1_000_000,
    };

    /// Parses `10%`, `0.5%` or `100` (the `%` is optional), 0 to 100.
    pub fn parse(raw: &str, setting: &'static str) -> Result<Percent, PolicyError> {
        let text = raw.trim();
        let number = text.strip_suffix('%').unwrap_or(text).trim();
        let bad = || {
            PolicyError::new(
                setting,
                format!("{raw:?} is not a percentage like 10% or 0.5%"),
            )
        };
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() || whole.len() > 3 || fraction.len() > 4 {
            return Err(bad());
        }
        if !whole
            .bytes()
            .chain(fraction.bytes())
            .all(|b| b.is_ascii_digit())
        {
            return Err(bad());
        }
        let whole: u32 = whole.parse().map_err(|_| bad())?;
        let fraction: u32 = format!("{fraction:0<4}").parse().map_err(|_| bad())?;
        let per_million = whole * 10_000 + fraction;
        if per_million > 1_000_000 {
            return Err(PolicyError::new(
                setting,
                format!("{raw:?} is more than 100%"),
            ));
        }
        Ok(Percent { per_million })
    }

    pub fn per_million(self) -> u32 {
        self.per_million
    }

    /// Whether `part` out of `whole` is at least this share (`0 of 0` is 100%).
    pub fn is_met_by(self, part: u64, whole: u64) -> bool {
        if whole == 0 {
            return true;
        }
        u128::from(part) * 1_000_000 >= u128::from(self.per_million) * u128::from(whole)
    }

    /// Whether `part` out of `whole` is more than this share.
    pub fn is_exceeded_by(self, part: u64, whole: u64) -> bool {
        whole > 0 && u128::from(part) * 1_000_000 > u128::from(self.per_million) * u128::from(whole)
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.per_million / 10_000;
        let fraction = self.per_million % 10_000;
        if fraction == 0 {
            write!(f, "{whole}%")
        } else {
            let digits = format!("{fraction:04}");
            write!(f, "{whole}.{}%", digits.trim_end_matches('0'))
        }
    }
}

/// Cumulative phase sizes: `1%,10%,50%,100%` means the first phase is 1 % of
/// the target set, the second brings it to 10 %, and so on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phases(Vec<Percent>);

impl Phases {
    pub const MAX: usize = 20;

    pub fn parse(raw: &str) -> Result<Phases, PolicyError> {
        const SETTING: &str = "--phases";
        let phases = raw
            .split(',')
            .map(|part| Percent::parse(part, SETTING))
            .collect::<Result<Vec<_>, _>>()?;
        if phases.len() > Self::MAX {
            return Err(PolicyError::new(
                SETTING,
                format!("at most {} phases", Self::MAX),
            ));
        }
        let mut previous = Percent::ZERO;
        for phase in &phases {
            if *phase <= previous {
                return Err(PolicyError::new(
                    SETTING,
                    format!(
                        "phases are cumulative and must grow: {phase} after {previous} in {raw:?}"
                    ),
                ));
            }
            previous = *phase;
        }
        Ok(Phases(phases))
    }

    pub fn all(&self) -> &[Percent] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Phases {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, phase) in self.0.iter().enumerate() {
            if n > 0 {
                f.write_str(",")?;
            }
            write!(f, "{phase}")?;
        }
        Ok(())
    }
}

/// A device's stable place in a rollout, uniform in `0..1_000_000`.
///
/// Derived from the rollout id and the device id only, so it never changes:
/// a device never moves between phases, every replica computes the same
/// answer, and a different rollout shuffles the fleet differently (the same
/// devices are not always first).
pub fn bucket(rollout_id: &str, device: &DeviceId) -> u32 {
    let mut hasher = Sha256::new();
    hasher.update(b"fleetward-rollout-phase\0");
    hasher.update(rollout_id.as_bytes());
    hasher.update(b"\0");
    hasher.update(device.as_str().as_bytes());
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    // Multiply-shift maps 64 random bits onto 0..1_000_000 without modulo bias.
    ((u128::from(u64::from_be_bytes(first)) * 1_000_000) >> 64) as u32
}

/// The phase (0-based) a device joins in, or `None` when the last phase is
/// below 100 % and the device falls outside it.
pub fn phase_of(rollout_id: &str, device: &DeviceId, phases: &Phases) -> Option<usize> {
    let place = bucket(rollout_id, device);
    phases.0.iter().position(|p| place < p.per_million)
}

/// At most `count` offers per `per`, spread out: the allowance grows
/// continuously from the start of the rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u64,
    pub per: Duration,
}

impl Rate {
    /// Parses `100/min`, `10/s`, `5000/h`, `20000/d`.
    pub fn parse(raw: &str) -> Result<Rate, PolicyError> {
        const SETTING: &str = "--rate";
        let bad = || PolicyError::new(SETTING, format!("{raw:?} is not a rate like 100/min"));
        let (count, unit) = raw.trim().split_once('/').ok_or_else(bad)?;
        let count: u64 = count.trim().parse().map_err(|_| bad())?;
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            "d" | "day" => Duration::from_secs(86_400),
            _ => return Err(bad()),
        };
        if count == 0 {
            return Err(PolicyError::new(
                SETTING,
                "a rate of 0 never offers anything",
            ));
        }
        Ok(Rate { count, per })
    }

    /// How many more offers may go out, `elapsed` after the rollout started,
    /// when `offered` have gone out so far.
    pub fn budget(&self, elapsed: Duration, offered: u64) -> u64 {
        let allowed = u128::from(self.count) * elapsed.as_millis() / self.per.as_millis().max(1);
        // The first offers go out at once rather than after one interval.
        let allowed = u64::try_from(allowed).unwrap_or(u64::MAX).saturating_add(1);
        allowed.saturating_sub(offered)
    }
}

/// Whether a rollout also reaches devices that match later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetMode {
    /// The target set is fixed when the rollout is created.
    Once,
    /// Devices that enrol, or start to match the query, later join too.
    Continuous,
}

/// When failures stop a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureLimit {
    /// Pause when more than this share of the devices targeted so far failed.
    pub share: Percent,
    /// Pause when more than this many failed, whatever the share.
    pub count: Option<u64>,
}

/// Everything a rollout was told, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutPolicy {
    pub phases: Phases,
    /// How long a phase is watched after its success threshold is met.
    pub soak: Duration,
    /// Share of a phase's devices that must succeed before it advances.
    pub success_threshold: Percent,
    pub max_failures: FailureLimit,
    pub rate: Option<Rate>,
    pub window: Option<Window>,
    /// An execution that has not finished this long after its offer times out.
    pub timeout: Duration,
    /// How many times a failed device is offered the release again.
    pub retries: u32,
    pub mode: TargetMode,
}

impl RolloutPolicy {
    /// The defaults of `fleetward rollout create`.
    pub fn new(phases: Phases) -> RolloutPolicy {
        RolloutPolicy {
            phases,
            soak: Duration::from_secs(30 * 60),
            success_threshold: Percent {
                per_million: 950_000,
            },
            max_failures: FailureLimit {
                share: Percent {
                    per_million: 50_000,
                },
                count: None,
            },
            rate: None,
            window: None,
            timeout: Duration::from_secs(2 * 3600),
            retries: 0,
            mode: TargetMode::Once,
        }
    }

    /// Refuses combinations that could never finish.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.phases.is_empty() {
            return Err(PolicyError::new("--phases", "at least one phase"));
        }
        if self.success_threshold == Percent::ZERO {
            return Err(PolicyError::new(
                "--success-threshold",
                "0% would advance past every failure",
            ));
        }
        if self.timeout.is_zero() {
            return Err(PolicyError::new("--timeout", "must be longer than 0"));
        }
        if self.retries > 10 {
            return Err(PolicyError::new("--retries", "at most 10"));
        }
        Ok(())
    }
}

/// Parses `30m`, `2h`, `90s`, `1h30m`, `7d`, `0`.
pub fn parse_duration(raw: &str, setting: &'static str) -> Result<Duration, PolicyError> {
    let bad = || {
        PolicyError::new(
            setting,
            format!("{raw:?} is not a duration like 30m or 1h30m"),
        )
    };
    let text = raw.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        digits.clear();
        total = n
            .checked_mul(unit)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(bad)?;
    }
    if !digits.is_empty() || text.is_empty() {
        return Err(bad());
    }
    // A century is more than any rollout needs and keeps time arithmetic safe.
    if total > 100 * 365 * 86_400 {
        return Err(PolicyError::new(setting, format!("{raw:?} is too long")));
    }
    Ok(Duration::from_secs(total))
}
