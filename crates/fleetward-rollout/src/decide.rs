//! Whether a rollout advances, waits, pauses by itself or is done.

use std::time::Duration;

use crate::{Percent, RolloutPolicy, TargetMode};

/// Execution counts of the devices targeted so far (every phase up to and
/// including the current one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PhaseStats {
    pub targeted: u64,
    pub succeeded: u64,
    /// Failed, timed out or rolled back, after retries ran out.
    pub failed: u64,
    pub cancelled: u64,
    /// Queued, offered, or anywhere between offered and verifying.
    pub pending: u64,
}

/// What the rollout does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Keep offering and watching.
    Continue,
    /// The success threshold was just met: record the time, soak from now.
    StartSoak,
    /// Soaked long enough: open the next phase.
    Advance { to_phase: usize },
    /// Every phase is done.
    Complete,
    /// Stop offering; an operator decides what happens next.
    Pause(PauseReason),
}

/// Why a rollout paused by itself; stored and shown to operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PauseReason {
    FailureShare {
        failed: u64,
        targeted: u64,
        limit: Percent,
    },
    FailureCount {
        failed: u64,
        limit: u64,
    },
}

impl std::fmt::Display for PauseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PauseReason::FailureShare {
                failed,
                targeted,
                limit,
            } => write!(
                f,
                "{failed} of {targeted} devices failed, more than the {limit} allowed"
            ),
            PauseReason::FailureCount { failed, limit } => {
                write!(f, "{failed} devices failed, more than the {limit} allowed")
            }
        }
    }
}

/// Decides the next step of a running rollout in `phase` (0-based).
///
/// `soaking_for` is how long ago the success threshold of this phase was met
/// (`None` if it has not been yet). Failures are judged first: a phase that
/// meets its success threshold but has too many failures still pauses.
pub fn decide(
    policy: &RolloutPolicy,
    phase: usize,
    stats: PhaseStats,
    soaking_for: Option<Duration>,
) -> Decision {
    let limit = policy.max_failures;
    if let Some(count_limit) = limit.count
        && stats.failed > count_limit
    {
        return Decision::Pause(PauseReason::FailureCount {
            failed: stats.failed,
            limit: count_limit,
        });
    }
    if limit.share.is_exceeded_by(stats.failed, stats.targeted) {
        return Decision::Pause(PauseReason::FailureShare {
            failed: stats.failed,
            targeted: stats.targeted,
            limit: limit.share,
        });
    }

    let last_phase = phase + 1 >= policy.phases.len();
    // Cancelled devices are neither successes nor failures; they leave the denominator.
    let judged = stats.targeted.saturating_sub(stats.cancelled);
    if !policy.success_threshold.is_met_by(stats.succeeded, judged) {
        return Decision::Continue;
    }
    if last_phase {
        return match policy.mode {
            TargetMode::Once if stats.pending == 0 => Decision::Complete,
            _ => Decision::Continue,
        };
    }
    match soaking_for {
        None => Decision::StartSoak,
        Some(soaked) if soaked >= policy.soak => Decision::Advance {
            to_phase: phase + 1,
        },
        Some(_) => Decision::Continue,
    }
}
