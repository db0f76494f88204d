//! Rollout settings as operators write them (`--phases 1%,10%,100%
//! --soak 30m …`), turned into a checked [`RolloutPolicy`], and the other
//! small decisions around a rollout's life: the id of an execution, and
//! which release a fleet rollback may go back to.

use std::fmt;

use fleetward_core::{ReleaseState, version};

use crate::{
    FailureLimit, Percent, Phases, PolicyError, Rate, RolloutPolicy, TargetMode, Window,
    parse_duration,
};

/// The settings of `fleetward rollout create`, as text; `None` is the default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    pub phases: Option<String>,
    pub soak: Option<String>,
    pub success_threshold: Option<String>,
    pub max_failures: Option<String>,
    pub max_failures_count: Option<u64>,
    pub rate: Option<String>,
    pub window: Option<String>,
    pub timeout: Option<String>,
    pub retries: Option<u32>,
    pub continuous: bool,
}

impl Settings {
    /// The phases a rollout gets when none are given: everyone at once.
    pub const DEFAULT_PHASES: &'static str = "100%";

    /// Parses and checks every setting. The last phase must be 100 %: a
    /// rollout that stops short of its target set would never finish, and
    /// leaving part of a fleet out is what the target query is for.
    pub fn to_policy(&self) -> Result<RolloutPolicy, PolicyError> {
        let phases = Phases::parse(self.phases.as_deref().unwrap_or(Self::DEFAULT_PHASES))?;
        if phases.all().last() != Some(&Percent::ALL) {
            return Err(PolicyError::new(
                "--phases",
                format!("the last phase must be 100% (got {phases})"),
            ));
        }
        let mut policy = RolloutPolicy::new(phases);
        if let Some(soak) = &self.soak {
            policy.soak = parse_duration(soak, "--soak")?;
        }
        if let Some(threshold) = &self.success_threshold {
            policy.success_threshold = Percent::parse(threshold, "--success-threshold")?;
        }
        if let Some(share) = &self.max_failures {
            policy.max_failures.share = Percent::parse(share, "--max-failures")?;
        }
        policy.max_failures = FailureLimit {
            share: policy.max_failures.share,
            count: self.max_failures_count,
        };
        if let Some(rate) = &self.rate {
            policy.rate = Some(Rate::parse(rate)?);
        }
        if let Some(window) = &self.window {
            policy.window = Some(Window::parse(window)?);
        }
        if let Some(timeout) = &self.timeout {
            policy.timeout = parse_duration(timeout, "--timeout")?;
        }
        if let Some(retries) = self.retries {
            policy.retries = retries;
        }
        if self.continuous {
            policy.mode = TargetMode::Continuous;
        }
        policy.validate()?;
        Ok(policy)
    }

    /// The settings that describe `policy`, normalised (what is stored and
    /// shown): `to_policy` of the result gives `policy` back.
    pub fn from_policy(policy: &RolloutPolicy) -> Settings {
        Settings {
            phases: Some(policy.phases.to_string()),
            soak: Some(format_duration(policy.soak)),
            success_threshold: Some(policy.success_threshold.to_string()),
            max_failures: Some(policy.max_failures.share.to_string()),
            max_failures_count: policy.max_failures.count,
            rate: policy.rate.map(|r| format!("{}/{}", r.count, rate_unit(r))),
            window: policy.window.map(|w| w.to_string()),
            timeout: Some(format_duration(policy.timeout)),
            retries: Some(policy.retries),
            continuous: policy.mode == TargetMode::Continuous,
        }
    }
}

fn rate_unit(rate: Rate) -> &'static str {
    match rate.per.as_secs() {
        1 => "s",
        60 => "min",
        3600 => "h",
        _ => "d",
    }
}

/// `1h30m`, `45s`, `0`: what [`parse_duration`] reads.
pub fn format_duration(duration: std::time::Duration) -> String {
    let mut secs = duration.as_secs();
    if secs == 0 {
        return "0".to_owned();
    }
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

/// One attempt of one device in one rollout: `ex-<row>-<attempt>`.
///
/// A retry is a new attempt with a new id, so a device never confuses the
/// reports of a failed attempt with the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ExecutionId {
    pub row: u64,
    pub attempt: u32,
}

impl ExecutionId {
    /// Parses an id from a URL path; anything else is `None`.
    pub fn parse(raw: &str) -> Option<ExecutionId> {
        let rest = raw.strip_prefix("ex-")?;
        let (row, attempt) = rest.split_once('-')?;
        let digits = |s: &str| {
            !s.is_empty()
                && s.len() <= 19
                && s.bytes().all(|b| b.is_ascii_digit())
                && !(s.len() > 1 && s.starts_with('0'))
        };
        if !digits(row) || !digits(attempt) {
            return None;
        }
        Some(ExecutionId {
            row: row.parse().ok()?,
            attempt: attempt.parse().ok()?,
        })
    }
}

impl fmt::Display for ExecutionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ex-{}-{}", self.row, self.attempt)
    }
}

/// Why a fleet rollback is not allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RollbackRefused {
    #[error("no release of this hardware is older than {current}")]
    NoOlderRelease { current: String },
    /// Anti-rollback: deprecating or revoking a release is how an operator
    /// says "never go back here", and that holds for everything below it.
    #[error(
        "release {older} is {state}: anti-rollback forbids going back to it or below (only a published release can be rolled back to)"
    )]
    Forbidden { older: String, state: ReleaseState },
}

/// The release a fleet rolls back to from `current`: the newest release of
/// the same hardware below it that ever reached devices (published,
/// deprecated or revoked; drafts and merely signed ones never did). It must
/// still be published; a deprecated or revoked one is an anti-rollback
/// floor. `releases` are `(version, state)` of that hardware, in any order.
pub fn rollback_target(
    current: &str,
    releases: &[(String, ReleaseState)],
) -> Result<String, RollbackRefused> {
    let candidate = releases
        .iter()
        .filter(|(v, s)| {
            version::compare(v, current) == std::cmp::Ordering::Less
                && matches!(
                    s,
                    ReleaseState::Published | ReleaseState::Deprecated | ReleaseState::Revoked
                )
        })
        .max_by(|(a, _), (b, _)| version::compare(a, b));
    match candidate {
        None => Err(RollbackRefused::NoOlderRelease {
            current: current.to_owned(),
        }),
        Some((older, ReleaseState::Published)) => Ok(older.clone()),
        Some((older, state)) => Err(RollbackRefused::Forbidden {
            older: older.clone(),
            state: *state,
        }),
    }
}
