//! Storage of rollouts, their per-device executions and every execution
//! state change.
//!
//! A separate supertrait of [`crate::Store`], like identity storage. The
//! store never decides what a rollout does next (that is
//! `fleetward-rollout`); it makes each decision's effect atomic and
//! conditional on the state it was decided from, so that two replicas
//! ticking the same rollout cannot both act on it: an update whose
//! precondition no longer holds changes nothing and says so.

use std::sync::Arc;

use async_trait::async_trait;
use fleetward_core::DeviceId;
use fleetward_core::query::Expr;
use fleetward_rollout::{ExecutionId, ExecutionState};
use time::OffsetDateTime;

use crate::{AuditEntry, Result};

/// Where a rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RolloutState {
    /// Offering, watching, advancing.
    Running,
    /// Stopped offering (by an operator or by itself); may resume.
    Paused,
    /// Every phase done.
    Completed,
    /// Stopped for good by an operator.
    Aborted,
}

impl RolloutState {
    pub const ALL: [RolloutState; 4] = [
        RolloutState::Running,
        RolloutState::Paused,
        RolloutState::Completed,
        RolloutState::Aborted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RolloutState::Running => "running",
            RolloutState::Paused => "paused",
            RolloutState::Completed => "completed",
            RolloutState::Aborted => "aborted",
        }
    }

    pub fn parse(raw: &str) -> Option<RolloutState> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutRecord {
    pub id: String,
    pub release_version: String,
    pub hardware: String,
    /// The target query, as the operator wrote it.
    pub target: String,
    /// Normalised settings; `to_policy` gives the policy back.
    pub settings: fleetward_rollout::Settings,
    pub state: RolloutState,
    /// 0-based.
    pub current_phase: u32,
    pub phase_started_at: OffsetDateTime,
    /// When the current phase met its success threshold.
    pub soak_started_at: Option<OffsetDateTime>,
    /// Why it paused, when it paused by itself or was paused.
    pub pause_reason: Option<String>,
    /// The rollout this one rolls back.
    pub rollback_of: Option<String>,
    pub created_at: OffsetDateTime,
    pub created_by: String,
    pub updated_at: OffsetDateTime,
}

/// One device's (current attempt at an) update in one rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionRecord {
    pub id: ExecutionId,
    pub rollout_id: String,
    pub release_version: String,
    pub device_id: DeviceId,
    pub phase: u32,
    pub state: ExecutionState,
    /// The rollout's limits let it go out at this time.
    pub released_at: Option<OffsetDateTime>,
    /// The director first named it to the device at this time.
    pub offered_at: Option<OffsetDateTime>,
    pub updated_at: OffsetDateTime,
}

/// One stored state change of an execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransitionRecord {
    pub seq: u64,
    pub attempt: u32,
    pub at: OffsetDateTime,
    /// `None` when the execution was created.
    pub from: Option<String>,
    pub to: ExecutionState,
    /// `server`, `device:<id>` or the operator's audit actor.
    pub actor: String,
    /// Why, when the state itself does not say (a cancellation, a retry).
    pub note: Option<String>,
}

/// How many executions of one phase are in one state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseCount {
    pub phase: u32,
    pub state: String,
    pub count: u64,
    /// Of those, how many the rollout's limits have let go out.
    pub released: u64,
}

/// Which executions a listing wants; `None` does not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecutionFilter {
    pub rollout_id: Option<String>,
    pub device: Option<DeviceId>,
    pub state: Option<String>,
    pub phase: Option<u32>,
}

/// What queueing a target set did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueOutcome {
    pub queued: u64,
    /// Matching devices left out because they are in an unfinished
    /// execution of another rollout.
    pub busy: u64,
}

/// A rollout changing state, checked against what it was decided from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutChange {
    pub id: String,
    pub expect_state: RolloutState,
    pub expect_phase: u32,
    pub state: RolloutState,
    pub current_phase: u32,
    pub soak_started_at: Option<OffsetDateTime>,
    pub pause_reason: Option<String>,
    pub at: OffsetDateTime,
}

/// The phase a device joins in (`fleetward_rollout::phase_of`), or `None`.
pub type PhaseFn = Arc<dyn Fn(&DeviceId) -> Option<u32> + Send + Sync>;

// A transition names the execution, both states, who, why, the version
// and the time: one argument each reads better than a one-use struct.
#[allow(clippy::too_many_arguments)]
#[async_trait]
pub trait RolloutStore: Send + Sync {
    /// Stores a new rollout and queues its target set, in one transaction:
    /// the devices matching `target` that have the rollout's hardware, are
    /// active, do not run the release already, and are not in an unfinished
    /// execution of another rollout. With `require_devices`, queueing none
    /// is [`crate::StoreError::Invalid`] and nothing is stored.
    async fn create_rollout(
        &self,
        rollout: &RolloutRecord,
        target: &Expr,
        phase: PhaseFn,
        require_devices: bool,
        audit: &AuditEntry,
    ) -> Result<QueueOutcome>;
    async fn rollout(&self, id: &str) -> Result<Option<RolloutRecord>>;
    /// Rollouts in one of `states` (all when empty), oldest first.
    async fn list_rollouts(&self, states: &[RolloutState]) -> Result<Vec<RolloutRecord>>;
    /// Queues devices that match now and are not in the rollout yet (for
    /// continuous rollouts), as [`RolloutStore::create_rollout`] does.
    async fn queue_devices(
        &self,
        rollout_id: &str,
        target: &Expr,
        phase: PhaseFn,
        at: OffsetDateTime,
    ) -> Result<QueueOutcome>;
    /// Executions per phase and state.
    async fn rollout_counts(&self, rollout_id: &str) -> Result<Vec<PhaseCount>>;
    /// Applies `change` if the rollout is still in `expect_state` and
    /// `expect_phase`; `false` when it is not (someone else acted first).
    async fn update_rollout(
        &self,
        change: &RolloutChange,
        audit: Option<&AuditEntry>,
    ) -> Result<bool>;
    /// Aborts a running or paused rollout: cancels the executions
    /// `ExecutionState::on_abort` cancels, and stores `rollback` (a new
    /// rollout) if given, all at once. Returns how many were cancelled.
    async fn abort_rollout(
        &self,
        rollout_id: &str,
        at: OffsetDateTime,
        rollback: Option<&RolloutRecord>,
        audit: &AuditEntry,
    ) -> Result<u64>;
    /// Lets queued executions of phases up to `up_to_phase` go out, oldest
    /// phase first, while the rollout is running: at most `limit` now, and
    /// never more than `cap_total` released in all. Count and update happen
    /// in one transaction, so concurrent callers never exceed the cap.
    async fn release_executions(
        &self,
        rollout_id: &str,
        up_to_phase: u32,
        cap_total: Option<u64>,
        limit: u32,
        at: OffsetDateTime,
    ) -> Result<u64>;
    /// Offered or in-progress executions offered at or before `offered_before`.
    async fn overdue_executions(
        &self,
        rollout_id: &str,
        offered_before: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<ExecutionRecord>>;
    /// Failed or timed-out executions with at most `max_attempt` attempts.
    async fn retryable_executions(
        &self,
        rollout_id: &str,
        max_attempt: u32,
        limit: u32,
    ) -> Result<Vec<ExecutionRecord>>;
    /// Moves an execution from `from` to `to` if it is still in `from`
    /// (`false` otherwise), records the transition, and on success records
    /// `device_version` as the device's running version.
    async fn transition_execution(
        &self,
        id: ExecutionId,
        from: &ExecutionState,
        to: &ExecutionState,
        actor: &str,
        note: Option<&str>,
        device_version: Option<&str>,
        at: OffsetDateTime,
    ) -> Result<bool>;
    /// Queues a failed or timed-out execution again as a new attempt (a new
    /// id); `None` if it moved meanwhile or the device is now in another
    /// unfinished execution.
    async fn retry_execution(
        &self,
        id: ExecutionId,
        from: &ExecutionState,
        at: OffsetDateTime,
    ) -> Result<Option<ExecutionId>>;
    /// Cancels the executions of devices that are no longer active
    /// (quarantined, decommissioned) and have not started installing.
    async fn cancel_inactive(&self, rollout_id: &str, at: OffsetDateTime) -> Result<u64>;
    /// The execution with this row, whatever its current attempt.
    async fn execution(&self, row: u64) -> Result<Option<ExecutionRecord>>;
    /// The device's unfinished execution, if any.
    async fn open_execution(&self, device: &DeviceId) -> Result<Option<ExecutionRecord>>;
    /// What the director names to `device`: its unfinished execution if
    /// that was released or offered already. A released, queued one
    /// becomes `offered` (recorded) if its rollout is running.
    async fn serve_execution(
        &self,
        device: &DeviceId,
        at: OffsetDateTime,
    ) -> Result<Option<ExecutionRecord>>;
    /// Executions matching `filter` with rows after `after`, in row order.
    async fn list_executions(
        &self,
        filter: &ExecutionFilter,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Vec<ExecutionRecord>>;
    /// Every transition of an execution (all attempts), oldest first.
    async fn execution_history(&self, row: u64) -> Result<Vec<TransitionRecord>>;
}
