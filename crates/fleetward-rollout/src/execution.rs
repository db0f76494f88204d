//! One device's way through one rollout.
//!
//! ```text
//! queued → offered → downloading → downloaded → installing → rebooting → verifying → succeeded
//!                 ╲______________________________________________________________╱
//!                   failed(reason) | timed-out | rolled-back | cancelled
//! ```
//!
//! Devices report progress; the server applies reports with
//! [`ExecutionState::apply`], which refuses anything a real update could not
//! do (a report that goes backwards, success without a reboot into the new
//! version, progress on a finished execution). Those refusals are security
//! events: a device that lies about its state is worth looking at.

use std::fmt;

/// Where an execution stands.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum ExecutionState {
    Queued,
    Offered,
    Downloading,
    Downloaded,
    Installing,
    Rebooting,
    Verifying,
    Succeeded,
    Failed { kind: FailureKind, reason: String },
    TimedOut,
    RolledBack { reason: String },
    Cancelled,
}

/// Which step failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureKind {
    Download,
    Verification,
    Install,
    HealthCheck,
    Other,
}

/// What a device says happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    Downloading,
    Downloaded,
    Installing,
    Rebooting,
    Verifying,
    /// Booted; `running_version` is what the device runs now.
    Succeeded {
        running_version: String,
        health_check_passed: bool,
    },
    Failed {
        kind: FailureKind,
        reason: String,
    },
    /// The device fell back to its previous slot.
    RolledBack {
        reason: String,
    },
}

/// A report the current state cannot take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("impossible transition from {from} on report {report}: {why}")]
pub struct TransitionError {
    pub from: String,
    pub report: String,
    pub why: &'static str,
}

impl ExecutionState {
    /// Order of the in-progress states; reports may skip steps (an external
    /// installer may not report a reboot) but never go back.
    fn progress_rank(&self) -> Option<u8> {
        Some(match self {
            ExecutionState::Queued => 0,
            ExecutionState::Offered => 1,
            ExecutionState::Downloading => 2,
            ExecutionState::Downloaded => 3,
            ExecutionState::Installing => 4,
            ExecutionState::Rebooting => 5,
            ExecutionState::Verifying => 6,
            _ => return None,
        })
    }

    /// Finished for good: nothing moves it except a retry the server decides.
    pub fn is_terminal(&self) -> bool {
        self.progress_rank().is_none()
    }

    /// The device is changing its software now: it must not be re-targeted
    /// or cancelled under its feet.
    pub fn is_install_in_progress(&self) -> bool {
        matches!(
            self,
            ExecutionState::Installing | ExecutionState::Rebooting | ExecutionState::Verifying
        )
    }

    /// Counts against the failure threshold.
    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            ExecutionState::Failed { .. }
                | ExecutionState::TimedOut
                | ExecutionState::RolledBack { .. }
        )
    }

    pub fn name(&self) -> &'static str {
        match self {
            ExecutionState::Queued => "queued",
            ExecutionState::Offered => "offered",
            ExecutionState::Downloading => "downloading",
            ExecutionState::Downloaded => "downloaded",
            ExecutionState::Installing => "installing",
            ExecutionState::Rebooting => "rebooting",
            ExecutionState::Verifying => "verifying",
            ExecutionState::Succeeded => "succeeded",
            ExecutionState::Failed { .. } => "failed",
            ExecutionState::TimedOut => "timed-out",
            ExecutionState::RolledBack { .. } => "rolled-back",
            ExecutionState::Cancelled => "cancelled",
        }
    }

    /// Applies a device report for an execution whose release is
    /// `target_version`. A report repeating the current state is accepted
    /// and changes nothing (devices resend after a lost answer).
    pub fn apply(
        &self,
        report: &Report,
        target_version: &str,
    ) -> Result<ExecutionState, TransitionError> {
        let refuse = |why: &'static str| TransitionError {
            from: self.name().to_owned(),
            report: report.name().to_owned(),
            why,
        };
        let Some(rank) = self.progress_rank() else {
            return if self.same_outcome(report) {
                Ok(self.clone())
            } else {
                Err(refuse("the execution has already finished"))
            };
        };
        if rank == 0 {
            return Err(refuse("nothing was offered to the device yet"));
        }
        let next = match report {
            Report::Downloading => ExecutionState::Downloading,
            Report::Downloaded => ExecutionState::Downloaded,
            Report::Installing => ExecutionState::Installing,
            Report::Rebooting => ExecutionState::Rebooting,
            Report::Verifying => ExecutionState::Verifying,
            Report::Succeeded {
                running_version,
                health_check_passed,
            } => {
                if rank < 5 {
                    return Err(refuse(
                        "success is only possible after a reboot into the new version",
                    ));
                }
                if running_version != target_version {
                    return Err(refuse("the device does not run the offered version"));
                }
                if !health_check_passed {
                    return Ok(ExecutionState::Failed {
                        kind: FailureKind::HealthCheck,
                        reason: "health check failed after reboot".into(),
                    });
                }
                return Ok(ExecutionState::Succeeded);
            }
            Report::Failed { kind, reason } => {
                return Ok(ExecutionState::Failed {
                    kind: *kind,
                    reason: bounded(reason),
                });
            }
            Report::RolledBack { reason } => {
                if rank < 4 {
                    return Err(refuse("nothing was installed that could be rolled back"));
                }
                return Ok(ExecutionState::RolledBack {
                    reason: bounded(reason),
                });
            }
        };
        match next.progress_rank() {
            Some(next_rank) if next_rank >= rank => Ok(next),
            _ => Err(refuse("progress reports never go backwards")),
        }
    }

    /// A resent final report is not an error.
    fn same_outcome(&self, report: &Report) -> bool {
        matches!(
            (self, report),
            (ExecutionState::Succeeded, Report::Succeeded { .. })
                | (ExecutionState::Failed { .. }, Report::Failed { .. })
                | (ExecutionState::RolledBack { .. }, Report::RolledBack { .. })
                // A failed health check is reported as a success that failed it.
                | (
                    ExecutionState::Failed {
                        kind: FailureKind::HealthCheck,
                        ..
                    },
                    Report::Succeeded {
                        health_check_passed: false,
                        ..
                    }
                )
        )
    }

    /// Whether an execution offered at `offered_at_secs` has run out of time
    /// at `now_secs` (both Unix seconds).
    pub fn is_overdue(&self, offered_at_secs: i64, now_secs: i64, timeout_secs: u64) -> bool {
        !self.is_terminal()
            && *self != ExecutionState::Queued
            && now_secs.saturating_sub(offered_at_secs)
                >= i64::try_from(timeout_secs).unwrap_or(i64::MAX)
    }

    /// What an operator's abort does to this execution: queued and offered
    /// ones are cancelled; downloads are cancelled too (nothing was written);
    /// an install in progress is left to finish.
    pub fn on_abort(&self) -> Option<ExecutionState> {
        match self {
            ExecutionState::Queued
            | ExecutionState::Offered
            | ExecutionState::Downloading
            | ExecutionState::Downloaded => Some(ExecutionState::Cancelled),
            _ => None,
        }
    }

    /// After a failure, whether the server may queue the device again.
    pub fn may_retry(&self, attempts_so_far: u32, retries: u32) -> bool {
        matches!(
            self,
            ExecutionState::Failed { .. } | ExecutionState::TimedOut
        ) && attempts_so_far <= retries
    }
}

impl FailureKind {
    pub const ALL: [FailureKind; 5] = [
        FailureKind::Download,
        FailureKind::Verification,
        FailureKind::Install,
        FailureKind::HealthCheck,
        FailureKind::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Download => "download",
            FailureKind::Verification => "verification",
            FailureKind::Install => "install",
            FailureKind::HealthCheck => "health-check",
            FailureKind::Other => "other",
        }
    }

    pub fn parse(raw: &str) -> Option<FailureKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == raw)
    }
}

impl ExecutionState {
    /// Every state name, in the order of the state machine.
    pub const NAMES: [&'static str; 12] = [
        "queued",
        "offered",
        "downloading",
        "downloaded",
        "installing",
        "rebooting",
        "verifying",
        "succeeded",
        "failed",
        "timed-out",
        "rolled-back",
        "cancelled",
    ];

    /// The names of the states that are not finished.
    pub const OPEN_NAMES: [&'static str; 7] = [
        "queued",
        "offered",
        "downloading",
        "downloaded",
        "installing",
        "rebooting",
        "verifying",
    ];

    /// The failure kind and reason a state carries, for storage.
    pub fn parts(&self) -> (Option<FailureKind>, Option<&str>) {
        match self {
            ExecutionState::Failed { kind, reason } => (Some(*kind), Some(reason)),
            ExecutionState::RolledBack { reason } => (None, Some(reason)),
            _ => (None, None),
        }
    }

    /// Rebuilds a state from [`ExecutionState::name`] and [`ExecutionState::parts`].
    pub fn from_parts(
        name: &str,
        failure: Option<FailureKind>,
        reason: Option<String>,
    ) -> Option<ExecutionState> {
        Some(match name {
            "queued" => ExecutionState::Queued,
            "offered" => ExecutionState::Offered,
            "downloading" => ExecutionState::Downloading,
            "downloaded" => ExecutionState::Downloaded,
            "installing" => ExecutionState::Installing,
            "rebooting" => ExecutionState::Rebooting,
            "verifying" => ExecutionState::Verifying,
            "succeeded" => ExecutionState::Succeeded,
            "failed" => ExecutionState::Failed {
                kind: failure.unwrap_or(FailureKind::Other),
                reason: reason.unwrap_or_default(),
            },
            "timed-out" => ExecutionState::TimedOut,
            "rolled-back" => ExecutionState::RolledBack {
                reason: reason.unwrap_or_default(),
            },
            "cancelled" => ExecutionState::Cancelled,
            _ => return None,
        })
    }
}

impl Report {
    pub fn name(&self) -> &'static str {
        match self {
            Report::Downloading => "downloading",
            Report::Downloaded => "downloaded",
            Report::Installing => "installing",
            Report::Rebooting => "rebooting",
            Report::Verifying => "verifying",
            Report::Succeeded { .. } => "succeeded",
            Report::Failed { .. } => "failed",
            Report::RolledBack { .. } => "rolled-back",
        }
    }
}

impl fmt::Display for ExecutionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExecutionState::Failed { kind, reason } => write!(f, "failed ({kind:?}: {reason})"),
            ExecutionState::RolledBack { reason } => write!(f, "rolled-back ({reason})"),
            other => f.write_str(other.name()),
        }
    }
}

/// Device-supplied reasons are stored and shown; keep them short.
fn bounded(reason: &str) -> String {
    const MAX: usize = 512;
    if reason.len() <= MAX {
        return reason.to_owned();
    }
    let mut end = MAX;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &reason[..end])
}
