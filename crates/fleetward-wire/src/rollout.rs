//! Rollouts on the operator API (`/api/v1/rollouts`).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

/// `POST /api/v1/rollouts`: the flags of `fleetward rollout create`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CreateRollout {
    /// A published release's version.
    pub release: String,
    /// Target query (`hw = "rev2" and region = "eu"`).
    pub target: String,
    /// Cumulative phase sizes ending at 100%, e.g. `1%,10%,50%,100%` (default `100%`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phases: Option<String>,
    /// How long a phase is watched after meeting its threshold (`30m`, default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soak: Option<String>,
    /// Share of a phase that must succeed (`95%`, default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_threshold: Option<String>,
    /// Pause when more than this share failed (`5%`, default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_failures: Option<String>,
    /// Pause when more than this many failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_failures_count: Option<u64>,
    /// Most offers per time (`100/min`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<String>,
    /// When offers go out (`Mon-Fri 02:00-05:00 UTC`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// An execution not finished this long after its offer times out (`2h`, default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// How often a failed device is offered the release again (0 to 10, default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// Also reach devices that enrol, or start to match, later.
    #[serde(default)]
    pub continuous: bool,
}

/// The settings a rollout runs with, normalised.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct RolloutSettings {
    pub phases: String,
    pub soak: String,
    pub success_threshold: String,
    pub max_failures: String,
    pub max_failures_count: Option<u64>,
    pub rate: Option<String>,
    pub window: Option<String>,
    pub timeout: String,
    pub retries: u32,
    pub continuous: bool,
}

/// Execution counts of a phase (or a whole rollout).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct ExecutionCounts {
    pub total: u64,
    /// Queued, not yet let out by the rollout's limits.
    pub queued: u64,
    /// Let out, waiting for the device to poll.
    pub released: u64,
    /// Offered to the device and not finished.
    pub in_progress: u64,
    pub succeeded: u64,
    /// Failed, timed out or rolled back.
    pub failed: u64,
    pub cancelled: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct PhaseProgress {
    /// 0-based.
    pub index: u32,
    /// Cumulative share of the target set, e.g. `10%`.
    pub percent: String,
    /// `done`, `active` or `waiting`.
    pub state: String,
    pub counts: ExecutionCounts,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct Rollout {
    pub id: String,
    pub release: String,
    pub hardware: String,
    pub target: String,
    /// running, paused, completed or aborted.
    pub state: String,
    /// 0-based index of the phase being offered.
    pub current_phase: u32,
    /// Why it paused (by itself or by an operator).
    pub pause_reason: Option<String>,
    /// The rollout this one rolls back.
    pub rollback_of: Option<String>,
    pub settings: RolloutSettings,
    pub phases: Vec<PhaseProgress>,
    pub totals: ExecutionCounts,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub soak_started_at: Option<OffsetDateTime>,
}

/// The answer to a create: the rollout and what queueing found.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct RolloutCreated {
    pub rollout: Rollout,
    pub queued: u64,
    /// Matching devices left out: they are in another unfinished rollout.
    pub busy: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct RolloutList {
    pub items: Vec<Rollout>,
}

/// `POST /api/v1/rollouts/{id}/abort`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AbortRollout {
    /// Also roll the devices that got the release back to the previous
    /// published release (anti-rollback permitting).
    #[serde(default)]
    pub rollback: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct AbortAnswer {
    pub rollout: Rollout,
    pub cancelled: u64,
    /// The rollout that takes the devices back, if one was asked for.
    pub rollback: Option<Rollout>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct Execution {
    pub id: String,
    pub rollout_id: String,
    pub device_id: String,
    pub release: String,
    pub phase: u32,
    pub attempt: u32,
    pub state: String,
    pub failure: Option<String>,
    pub reason: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub offered_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct ExecutionList {
    pub items: Vec<Execution>,
    /// Pass as `after` for the next page; absent on the last.
    pub next: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct Transition {
    pub attempt: u32,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: OffsetDateTime,
    pub from: Option<String>,
    pub to: String,
    pub failure: Option<String>,
    pub reason: Option<String>,
    pub actor: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct TransitionList {
    pub execution_id: String,
    pub items: Vec<Transition>,
}

/// Filters of `GET /api/v1/rollouts/{id}/executions`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::IntoParams, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExecutionListParams {
    /// Only executions in this state (`queued`, `failed`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Only this phase (0-based).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<u32>,
    /// Only this device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// The `next` of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
    /// Page size, 1 to 1000 (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}
