//! The rollout engine, server side: the background tick that moves every
//! running rollout forward, and the device's execution reports.
//!
//! Nothing here decides: each tick reads the stored state, asks
//! `fleetward-rollout` what to do ([`decide`], `is_overdue`, `may_retry`,
//! [`Window::contains`], [`fleetward_rollout::Rate::budget`]) and applies
//! the answer through store methods that are conditional on the state the
//! answer was computed from. No rollout state lives in this process, so a
//! tick may run on several replicas at once: the loser of a race changes
//! nothing.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use fleetward_core::query::{self, Expr};
use fleetward_core::{DeviceId, DeviceStatus};
use fleetward_rollout::{
    Decision, ExecutionId, ExecutionState, FailureKind, PhaseStats, Report, RolloutPolicy,
    TargetMode, decide, phase_of,
};
use fleetward_store::{
    AuditEntry, PhaseCount, PhaseFn, RolloutChange, RolloutRecord, RolloutState, Store, StoreError,
};
use fleetward_wire::ErrorBody;
use fleetward_wire::device::{ExecutionAck, ExecutionReport, ExecutionStep, MAX_REPORT_TEXT};
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::AppState;
use crate::device::DeviceIdentity;
use crate::error::{ApiError, Json, Path};

/// How often the engine looks at running rollouts, unless configured.
pub const DEFAULT_TICK: Duration = Duration::from_secs(5);

/// Most executions one tick lets out per rollout; the next tick continues.
const RELEASE_BATCH: u32 = 10_000;

/// Why a stored rollout cannot be worked on.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("rollout {id} has settings that no longer parse: {message}")]
    Settings { id: String, message: String },
}

/// The phase function the store queues devices with.
pub fn phases_for(rollout_id: &str, policy: &RolloutPolicy) -> PhaseFn {
    let id = rollout_id.to_owned();
    let phases = policy.phases.clone();
    Arc::new(move |device: &DeviceId| {
        phase_of(&id, device, &phases).and_then(|p| u32::try_from(p).ok())
    })
}

/// The checked policy and target of a stored rollout.
pub fn parsed(rollout: &RolloutRecord) -> Result<(RolloutPolicy, Expr), EngineError> {
    let bad = |message: String| EngineError::Settings {
        id: rollout.id.clone(),
        message,
    };
    let policy = rollout
        .settings
        .to_policy()
        .map_err(|e| bad(e.to_string()))?;
    let target = query::parse(&rollout.target).map_err(|e| bad(e.to_string()))?;
    Ok((policy, target))
}

/// Execution counts of phases `0..=up_to` as the decision function wants them.
pub fn phase_stats(counts: &[PhaseCount], up_to: u32) -> PhaseStats {
    let mut stats = PhaseStats::default();
    for count in counts.iter().filter(|c| c.phase <= up_to) {
        stats.targeted += count.count;
        match ExecutionState::from_parts(&count.state, None, None) {
            Some(ExecutionState::Succeeded) => stats.succeeded += count.count,
            Some(ExecutionState::Cancelled) => stats.cancelled += count.count,
            Some(state) if state.is_failure() => stats.failed += count.count,
            _ => stats.pending += count.count,
        }
    }
    stats
}

fn elapsed(since: OffsetDateTime, now: OffsetDateTime) -> Duration {
    Duration::try_from(now - since).unwrap_or(Duration::ZERO)
}

/// One pass over every running rollout, oldest first (so when two
/// rollouts want the same device, the older one queued it first and keeps
/// it until its execution there finishes).
pub async fn tick(store: &dyn Store, now: OffsetDateTime) -> Result<(), EngineError> {
    for rollout in store.list_rollouts(&[RolloutState::Running]).await? {
        if let Err(error) = tick_rollout(store, &rollout, now).await {
            tracing::warn!(rollout = %rollout.id, %error, "rollout tick failed; will retry");
        }
    }
    Ok(())
}

/// One step of one rollout.
pub async fn tick_rollout(
    store: &dyn Store,
    rollout: &RolloutRecord,
    now: OffsetDateTime,
) -> Result<(), EngineError> {
    let (policy, target) = parsed(rollout)?;
    let id = rollout.id.as_str();
    if policy.mode == TargetMode::Continuous {
        store
            .queue_devices(id, &target, phases_for(id, &policy), now)
            .await?;
    }
    store.cancel_inactive(id, now).await?;

    let timeout = time::Duration::try_from(policy.timeout).unwrap_or(time::Duration::MAX);
    let cutoff = now
        .checked_sub(timeout)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    for execution in store
        .overdue_executions(id, cutoff, fleetward_store::MAX_PAGE)
        .await?
    {
        let Some(offered_at) = execution.offered_at else {
            continue;
        };
        if execution.state.is_overdue(
            offered_at.unix_timestamp(),
            now.unix_timestamp(),
            policy.timeout.as_secs(),
        ) {
            store
                .transition_execution(
                    execution.id,
                    &execution.state,
                    &ExecutionState::TimedOut,
                    "server",
                    Some("no final report within the timeout"),
                    None,
                    now,
                )
                .await?;
        }
    }
    if policy.retries > 0 {
        for execution in store
            .retryable_executions(id, policy.retries, fleetward_store::MAX_PAGE)
            .await?
        {
            if execution
                .state
                .may_retry(execution.id.attempt, policy.retries)
            {
                store
                    .retry_execution(execution.id, &execution.state, now)
                    .await?;
            }
        }
    }

    let counts = store.rollout_counts(id).await?;
    let stats = phase_stats(&counts, rollout.current_phase);
    let soaking_for = rollout.soak_started_at.map(|t| elapsed(t, now));
    let phase = usize::try_from(rollout.current_phase).unwrap_or(usize::MAX);
    let change = |state, current_phase, soak_started_at, pause_reason| RolloutChange {
        id: id.to_owned(),
        expect_state: RolloutState::Running,
        expect_phase: rollout.current_phase,
        state,
        current_phase,
        soak_started_at,
        pause_reason,
        at: now,
    };
    let mut offering_phase = rollout.current_phase;
    match decide(&policy, phase, stats, soaking_for) {
        Decision::Continue => {}
        Decision::StartSoak => {
            store
                .update_rollout(
                    &change(
                        RolloutState::Running,
                        rollout.current_phase,
                        Some(now),
                        None,
                    ),
                    None,
                )
                .await?;
        }
        Decision::Advance { to_phase } => {
            let to = u32::try_from(to_phase).unwrap_or(rollout.current_phase);
            let audit = server_audit(
                now,
                "rollout.advance",
                id,
                serde_json::json!({ "to_phase": to }),
            );
            if store
                .update_rollout(&change(RolloutState::Running, to, None, None), Some(&audit))
                .await?
            {
                offering_phase = to;
                tracing::info!(rollout = %id, phase = to, "rollout advanced");
            }
        }
        Decision::Complete => {
            let audit = server_audit(now, "rollout.complete", id, serde_json::json!({}));
            store
                .update_rollout(
                    &change(
                        RolloutState::Completed,
                        rollout.current_phase,
                        rollout.soak_started_at,
                        None,
                    ),
                    Some(&audit),
                )
                .await?;
            return Ok(());
        }
        Decision::Pause(reason) => {
            let why = reason.to_string();
            let audit = server_audit(
                now,
                "rollout.auto_pause",
                id,
                serde_json::json!({ "reason": why, "phase": rollout.current_phase }),
            );
            if store
                .update_rollout(
                    &change(
                        RolloutState::Paused,
                        rollout.current_phase,
                        rollout.soak_started_at,
                        Some(why.clone()),
                    ),
                    Some(&audit),
                )
                .await?
            {
                tracing::warn!(rollout = %id, reason = %why, "rollout paused by itself");
            }
            return Ok(());
        }
    }

    if policy.window.is_some_and(|w| !w.contains(now)) {
        return Ok(());
    }
    let cap = policy
        .rate
        .map(|rate| rate.budget(elapsed(rollout.created_at, now), 0));
    store
        .release_executions(id, offering_phase, cap, RELEASE_BATCH, now)
        .await?;
    Ok(())
}

fn server_audit(
    now: OffsetDateTime,
    action: &str,
    rollout: &str,
    detail: serde_json::Value,
) -> AuditEntry {
    AuditEntry {
        at: now,
        actor: "server".to_owned(),
        action: action.to_owned(),
        target: format!("rollout:{rollout}"),
        source: "server".to_owned(),
        detail,
    }
}

/// Runs [`tick`] every `interval` until `stop` flips.
pub async fn engine_task(
    store: Arc<dyn Store>,
    director: Arc<crate::cache::DirectorCache>,
    interval: Duration,
    holder: crate::lease::Holder,
    mut stop: watch::Receiver<bool>,
) {
    use crate::lease::{ROLLOUT_ENGINE, hold, release};
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.wait_for(|stopped| *stopped) => break,
        }
        // One replica advances rollouts at a time; the store's conditional
        // updates keep a late tick of a lost lease from doing harm.
        let now = OffsetDateTime::now_utc();
        if !hold(&*store, ROLLOUT_ENGINE, &holder, interval, now).await {
            continue;
        }
        let result = tick(&*store, now).await;
        // The tick may have released executions (or resumed, retried,
        // queued): the director's cached "nothing" answers are void.
        director.invalidate();
        if let Err(error) = result {
            tracing::warn!(%error, "rollout tick failed; will retry");
        }
    }
    release(&*store, ROLLOUT_ENGINE, &holder).await;
}

/// A report's fields as the state machine's input, or why they are invalid.
pub fn report_of(report: &ExecutionReport) -> Result<Report, String> {
    let text = |field: &str, value: &Option<String>| -> Result<String, String> {
        let value = value.clone().unwrap_or_default();
        if value.len() > MAX_REPORT_TEXT {
            return Err(format!("{field} is longer than {MAX_REPORT_TEXT} bytes"));
        }
        Ok(value)
    };
    let reason = text("reason", &report.reason)?;
    Ok(match report.step {
        ExecutionStep::Downloading => Report::Downloading,
        ExecutionStep::Downloaded => Report::Downloaded,
        ExecutionStep::Installing => Report::Installing,
        ExecutionStep::Rebooting => Report::Rebooting,
        ExecutionStep::Verifying => Report::Verifying,
        ExecutionStep::Succeeded => {
            let running_version = report
                .running_version
                .clone()
                .ok_or("succeeded needs running_version")?;
            if running_version.is_empty() || running_version.len() > 128 {
                return Err("running_version must be 1 to 128 bytes".into());
            }
            Report::Succeeded {
                running_version,
                health_check_passed: report
                    .health_check_passed
                    .ok_or("succeeded needs health_check_passed")?,
            }
        }
        ExecutionStep::Failed => Report::Failed {
            kind: match report.failure {
                Some(kind) => failure_kind(kind),
                None => FailureKind::Other,
            },
            reason,
        },
        ExecutionStep::RolledBack => Report::RolledBack { reason },
    })
}

fn failure_kind(kind: fleetward_wire::device::FailureKind) -> FailureKind {
    use fleetward_wire::device::FailureKind as W;
    match kind {
        W::Download => FailureKind::Download,
        W::Verification => FailureKind::Verification,
        W::Install => FailureKind::Install,
        W::HealthCheck => FailureKind::HealthCheck,
        W::Other => FailureKind::Other,
    }
}

/// Records a report the device should not have sent: an audited refusal,
/// which is also an `ImpossibleTransition` security event.
async fn refuse(state: &AppState, caller: &DeviceIdentity, execution: &str, why: &str) {
    let now = state.now();
    let mut audit = caller.audit(
        now,
        "execution.impossible_transition",
        serde_json::json!({ "execution": execution, "why": why }),
    );
    audit.target = format!("device:{}", caller.device_id);
    if let Err(error) = state.store.append_audit(&audit).await {
        tracing::warn!(%error, "recording a refused execution report failed");
    }
}

/// A step of one update, from the device it was offered to. Idempotent
/// for a repeated step; `409 impossible_transition` for a step no real
/// update makes (recorded as a security event); success only with the
/// release's version running and the health check passed.
#[utoipa::path(post, path = "/device/v1/executions/{execution_id}", tag = "rollouts",
    security(("device_certificate" = [])),
    params(("execution_id" = String, Path, description = "From the director metadata's custom.execution_id")),
    request_body = ExecutionReport,
    responses((status = 200, body = ExecutionAck), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn report_execution(
    State(state): State<AppState>,
    caller: DeviceIdentity,
    Path(raw_id): Path<String>,
    Json(body): Json<ExecutionReport>,
) -> Result<Json<ExecutionAck>, ApiError> {
    let not_found = || ApiError::not_found("no such execution for this device");
    let Some(id) = ExecutionId::parse(&raw_id) else {
        refuse(&state, &caller, &raw_id, "not an execution id").await;
        return Err(not_found());
    };
    let execution = state.store.execution(id.row).await?;
    let Some(execution) = execution.filter(|e| e.device_id == caller.device_id) else {
        refuse(&state, &caller, &raw_id, "not an execution of this device").await;
        return Err(not_found());
    };
    if execution.id.attempt != id.attempt {
        // An earlier attempt's late report: not this device's current update.
        return Err(not_found());
    }
    let report = report_of(&body).map_err(|m| ApiError::unprocessable("invalid_report", m))?;
    let rollout = state
        .store
        .rollout(&execution.rollout_id)
        .await?
        .ok_or_else(ApiError::internal)?;
    let ack = |s: &ExecutionState| {
        let proceed = !s.is_terminal()
            && (rollout.state == RolloutState::Running || s.is_install_in_progress());
        Json(ExecutionAck {
            execution_id: raw_id.clone(),
            state: s.name().to_owned(),
            proceed,
        })
    };
    if execution.state == ExecutionState::Cancelled {
        // Aborted or quarantined meanwhile: not the device's fault.
        return Ok(ack(&execution.state));
    }
    let next = match execution.state.apply(&report, &execution.release_version) {
        Ok(next) => next,
        Err(refusal) => {
            refuse(&state, &caller, &raw_id, &refusal.to_string()).await;
            return Err(ApiError::new(
                axum::http::StatusCode::CONFLICT,
                "impossible_transition",
                refusal.to_string(),
            ));
        }
    };
    if next == execution.state {
        return Ok(ack(&next));
    }
    let running = (next == ExecutionState::Succeeded).then_some(execution.release_version.as_str());
    let moved = state
        .store
        .transition_execution(
            execution.id,
            &execution.state,
            &next,
            &format!("device:{}", caller.device_id),
            None,
            running,
            state.now(),
        )
        .await?;
    if !moved {
        return Err(ApiError::conflict(
            "the execution changed meanwhile; send the report again",
        ));
    }
    Ok(ack(&next))
}

/// Whether a device may be offered anything at all.
pub fn receives_updates(status: DeviceStatus) -> bool {
    status == DeviceStatus::Active
}
