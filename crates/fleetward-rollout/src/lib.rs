//! Rollout decisions, as pure functions of their inputs.
//!
//! A rollout ships one published release to the devices a target query
//! selects, a few first. Everything that decides *what happens next* lives
//! here and takes the time as a parameter: which phase a device belongs to
//! ([`phase_of`]), whether a phase may advance or the rollout must pause
//! ([`decide`]), whether a maintenance window is open ([`Window`]), how many
//! offers the rate allows ([`Rate`]), and which execution-state transitions a
//! device report may make ([`ExecutionState::apply`]). The server stores
//! rollouts and executions and calls these; it never decides itself, so the
//! same rules hold on every replica and in every test.

mod decide;
mod execution;
mod plan;
mod settings;
mod window;

pub use decide::{Decision, PauseReason, PhaseStats, decide};
pub use execution::{ExecutionState, FailureKind, Report, TransitionError};
pub use plan::{
    FailureLimit, Percent, Phases, Rate, RolloutPolicy, TargetMode, bucket, parse_duration,
    phase_of,
};
pub use settings::{ExecutionId, RollbackRefused, Settings, format_duration, rollback_target};
pub use window::Window;

/// A rollout setting that does not parse or makes no sense.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: {message}")]
pub struct PolicyError {
    /// The option it came from, e.g. `--phases`.
    pub setting: &'static str,
    pub message: String,
}

impl PolicyError {
    pub(crate) fn new(setting: &'static str, message: impl Into<String>) -> Self {
        PolicyError {
            setting,
            message: message.into(),
        }
    }
}
