//! Rollouts on the operator API: create (every setting checked, nothing
//! stored on error), list, show with per-phase progress, pause, resume,
//! abort (optionally rolling the fleet back), executions and their history.

use axum::extract::State;
use axum::http::StatusCode;
use fleetward_core::ReleaseState;
use fleetward_core::query::{self, CompareOp, Expr, Field, Value};
use fleetward_rollout::{ExecutionId, ExecutionState, Settings, rollback_target};
use fleetward_store::{
    ExecutionFilter, ExecutionRecord, PhaseCount, RolloutChange, RolloutRecord, RolloutState,
    StoreError,
};
use fleetward_wire::ErrorBody;
use fleetward_wire::rollout::{
    AbortAnswer, AbortRollout, CreateRollout, Execution, ExecutionCounts, ExecutionList,
    ExecutionListParams, PhaseProgress, Rollout, RolloutCreated, RolloutList, RolloutSettings,
    Transition, TransitionList,
};
use rand::RngCore as _;

use crate::AppState;
use crate::auth::{Auth, Caller, perm};
use crate::error::{ApiError, Json, Path, Query};
use crate::rollout::phases_for;

fn new_rollout_id() -> String {
    let mut bytes = [0u8; 6];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("ro-{}", hex::encode(bytes))
}

fn settings_of(body: &CreateRollout) -> Settings {
    Settings {
        phases: body.phases.clone(),
        soak: body.soak.clone(),
        success_threshold: body.success_threshold.clone(),
        max_failures: body.max_failures.clone(),
        max_failures_count: body.max_failures_count,
        rate: body.rate.clone(),
        window: body.window.clone(),
        timeout: body.timeout.clone(),
        retries: body.retries,
        continuous: body.continuous,
    }
}

fn wire_settings(settings: &Settings) -> RolloutSettings {
    RolloutSettings {
        phases: settings.phases.clone().unwrap_or_default(),
        soak: settings.soak.clone().unwrap_or_default(),
        success_threshold: settings.success_threshold.clone().unwrap_or_default(),
        max_failures: settings.max_failures.clone().unwrap_or_default(),
        max_failures_count: settings.max_failures_count,
        rate: settings.rate.clone(),
        window: settings.window.clone(),
        timeout: settings.timeout.clone().unwrap_or_default(),
        retries: settings.retries.unwrap_or(0),
        continuous: settings.continuous,
    }
}

fn add(counts: &mut ExecutionCounts, count: &PhaseCount) {
    counts.total += count.count;
    match ExecutionState::from_parts(&count.state, None, None) {
        Some(ExecutionState::Queued) => {
            counts.released += count.released;
            counts.queued += count.count - count.released.min(count.count);
        }
        Some(ExecutionState::Succeeded) => counts.succeeded += count.count,
        Some(ExecutionState::Cancelled) => counts.cancelled += count.count,
        Some(state) if state.is_failure() => counts.failed += count.count,
        _ => counts.in_progress += count.count,
    }
}

/// A stored rollout with its per-phase progress.
pub async fn to_wire(state: &AppState, record: &RolloutRecord) -> Result<Rollout, ApiError> {
    let counts = state.store.rollout_counts(&record.id).await?;
    let phases: Vec<String> = record
        .settings
        .phases
        .as_deref()
        .unwrap_or(Settings::DEFAULT_PHASES)
        .split(',')
        .map(str::to_owned)
        .collect();
    let mut totals = ExecutionCounts::default();
    let mut progress = Vec::with_capacity(phases.len());
    for (index, percent) in phases.into_iter().enumerate() {
        let index = u32::try_from(index).unwrap_or(u32::MAX);
        let mut phase_counts = ExecutionCounts::default();
        for count in counts.iter().filter(|c| c.phase == index) {
            add(&mut phase_counts, count);
            add(&mut totals, count);
        }
        let phase_state = if record.state == RolloutState::Completed || index < record.current_phase
        {
            "done"
        } else if index == record.current_phase {
            "active"
        } else {
            "waiting"
        };
        progress.push(PhaseProgress {
            index,
            percent,
            state: phase_state.to_owned(),
            counts: phase_counts,
        });
    }
    Ok(Rollout {
        id: record.id.clone(),
        release: record.release_version.clone(),
        hardware: record.hardware.clone(),
        target: record.target.clone(),
        state: record.state.as_str().to_owned(),
        current_phase: record.current_phase,
        pause_reason: record.pause_reason.clone(),
        rollback_of: record.rollback_of.clone(),
        settings: wire_settings(&record.settings),
        phases: progress,
        totals,
        created_at: record.created_at,
        created_by: record.created_by.clone(),
        updated_at: record.updated_at,
        soak_started_at: record.soak_started_at,
    })
}

pub(crate) fn execution_to_wire(record: &ExecutionRecord) -> Execution {
    let (failure, reason) = record.state.parts();
    Execution {
        id: record.id.to_string(),
        rollout_id: record.rollout_id.clone(),
        device_id: record.device_id.to_string(),
        release: record.release_version.clone(),
        phase: record.phase,
        attempt: record.id.attempt,
        state: record.state.name().to_owned(),
        failure: failure.map(|f| f.as_str().to_owned()),
        reason: reason.map(str::to_owned),
        offered_at: record.offered_at,
        updated_at: record.updated_at,
    }
}

async fn load(state: &AppState, id: &str) -> Result<RolloutRecord, ApiError> {
    state
        .store
        .rollout(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("rollout {id} not found")))
}

fn hardware_is(hardware: &str) -> Expr {
    Expr::Compare {
        field: Field::Hardware,
        op: CompareOp::Eq,
        value: Value::Text(hardware.to_owned()),
    }
}

fn and(left: Expr, right: Expr) -> Expr {
    Expr::And(Box::new(left), Box::new(right))
}

/// Creates a rollout of a published release to the devices a query
/// selects. Every setting is checked first; a bad one is a 422 naming it
/// and nothing is stored. The query must select only devices of the
/// release's hardware, and (unless `continuous`) at least one device.
#[utoipa::path(post, path = "/api/v1/rollouts", tag = "rollouts", request_body = CreateRollout,
    responses((status = 201, body = RolloutCreated), (status = 422, body = ErrorBody)))]
pub async fn create_rollout(
    State(state): State<AppState>,
    Auth(caller, _): Auth<perm::RolloutWrite>,
    Json(body): Json<CreateRollout>,
) -> Result<(StatusCode, Json<RolloutCreated>), ApiError> {
    let created = create(&state, &caller, &body).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Creates a rollout for `caller` (who must hold `RolloutWrite`; the API
/// and the console check before calling). Shared by both doors so a form
/// and a JSON body are held to exactly the same checks.
pub(crate) async fn create(
    state: &AppState,
    caller: &Caller,
    body: &CreateRollout,
) -> Result<RolloutCreated, ApiError> {
    let settings = settings_of(body);
    let policy = settings
        .to_policy()
        .map_err(|e| ApiError::unprocessable("invalid_setting", e.to_string()))?;
    let target = query::parse(body.target.trim())
        .map_err(|e| ApiError::unprocessable("invalid_query", format!("invalid target: {e}")))?;
    let release = state.store.release(&body.release).await?.ok_or_else(|| {
        ApiError::unprocessable(
            "unknown_release",
            format!("there is no release {:?}", body.release),
        )
    })?;
    match release.state {
        ReleaseState::Published => {}
        ReleaseState::Revoked => {
            return Err(ApiError::unprocessable(
                "release_revoked",
                format!(
                    "release {} is revoked; it is never rolled out",
                    release.version
                ),
            ));
        }
        other => {
            return Err(ApiError::unprocessable(
                "release_not_published",
                format!(
                    "release {} is {other}; only a published release can be rolled out",
                    release.version
                ),
            ));
        }
    }
    let other_hardware = state
        .store
        .count_devices(Some(&and(
            target.clone(),
            Expr::Not(Box::new(hardware_is(&release.hardware))),
        )))
        .await?;
    if other_hardware > 0 {
        return Err(ApiError::unprocessable(
            "hardware_mismatch",
            format!(
                "the target selects {other_hardware} devices that are not {hw} hardware, which release {v} is for; add `hw = \"{hw}\"` to the target",
                hw = release.hardware,
                v = release.version
            ),
        ));
    }
    let now = state.now();
    let id = new_rollout_id();
    let record = RolloutRecord {
        id: id.clone(),
        release_version: release.version.clone(),
        hardware: release.hardware.clone(),
        target: target.to_string(),
        settings: Settings::from_policy(&policy),
        state: RolloutState::Running,
        current_phase: 0,
        phase_started_at: now,
        soak_started_at: None,
        pause_reason: None,
        rollback_of: None,
        created_at: now,
        created_by: caller.audit(now, "", "", serde_json::Value::Null).actor,
        updated_at: now,
    };
    let audit = caller.audit(
        now,
        "rollout.create",
        &format!("rollout:{id}"),
        serde_json::json!({ "release": release.version, "target": record.target, "phases": record.settings.phases }),
    );
    let require_devices = !settings.continuous;
    let outcome = state
        .store
        .create_rollout(
            &record,
            &target,
            phases_for(&id, &policy),
            require_devices,
            &audit,
        )
        .await
        .map_err(|e| match e {
            StoreError::Invalid(message) => ApiError::unprocessable("empty_target", message),
            other => other.into(),
        })?;
    tracing::info!(rollout = %id, release = %release.version, queued = outcome.queued, "rollout created");
    Ok(RolloutCreated {
        rollout: to_wire(state, &record).await?,
        queued: outcome.queued,
        busy: outcome.busy,
    })
}

/// Every rollout, oldest first, with progress.
#[utoipa::path(get, path = "/api/v1/rollouts", tag = "rollouts",
    responses((status = 200, body = RolloutList)))]
pub async fn list_rollouts(
    State(state): State<AppState>,
    _auth: Auth<perm::RolloutRead>,
) -> Result<Json<RolloutList>, ApiError> {
    let mut items = Vec::new();
    for record in state.store.list_rollouts(&[]).await? {
        items.push(to_wire(&state, &record).await?);
    }
    Ok(Json(RolloutList { items }))
}

/// One rollout with per-phase counts.
#[utoipa::path(get, path = "/api/v1/rollouts/{id}", tag = "rollouts",
    params(("id" = String, Path, description = "Rollout id")),
    responses((status = 200, body = Rollout), (status = 404, body = ErrorBody)))]
pub async fn get_rollout(
    State(state): State<AppState>,
    _auth: Auth<perm::RolloutRead>,
    Path(id): Path<String>,
) -> Result<Json<Rollout>, ApiError> {
    let record = load(&state, &id).await?;
    Ok(Json(to_wire(&state, &record).await?))
}

pub(crate) async fn set_running(
    state: &AppState,
    caller: &Caller,
    id: &str,
    from: RolloutState,
    to: RolloutState,
    verb: &str,
) -> Result<Json<Rollout>, ApiError> {
    let record = load(state, id).await?;
    if record.state != from {
        return Err(ApiError::conflict(format!(
            "rollout {id} is {}; only a {} rollout can be {verb}d",
            record.state.as_str(),
            from.as_str()
        )));
    }
    let now = state.now();
    let audit = caller.audit(
        now,
        &format!("rollout.{verb}"),
        &format!("rollout:{id}"),
        serde_json::json!({ "from": from.as_str(), "to": to.as_str() }),
    );
    let change = RolloutChange {
        id: id.to_owned(),
        expect_state: from,
        expect_phase: record.current_phase,
        state: to,
        current_phase: record.current_phase,
        soak_started_at: record.soak_started_at,
        pause_reason: (to == RolloutState::Paused).then(|| format!("paused by {}", audit.actor)),
        at: now,
    };
    let updated = state.store.update_rollout(&change, Some(&audit)).await?;
    state.director.invalidate();
    if !updated {
        return Err(ApiError::conflict(format!(
            "rollout {id} changed meanwhile; look again"
        )));
    }
    let record = load(state, id).await?;
    Ok(Json(to_wire(state, &record).await?))
}

/// Stops offering: devices not offered yet wait; those installing finish.
#[utoipa::path(post, path = "/api/v1/rollouts/{id}/pause", tag = "rollouts",
    params(("id" = String, Path, description = "Rollout id")),
    responses((status = 200, body = Rollout), (status = 409, body = ErrorBody)))]
pub async fn pause_rollout(
    State(state): State<AppState>,
    Auth(caller, _): Auth<perm::RolloutWrite>,
    Path(id): Path<String>,
) -> Result<Json<Rollout>, ApiError> {
    set_running(
        &state,
        &caller,
        &id,
        RolloutState::Running,
        RolloutState::Paused,
        "pause",
    )
    .await
}

/// Resumes a paused rollout (paused by an operator or by itself).
#[utoipa::path(post, path = "/api/v1/rollouts/{id}/resume", tag = "rollouts",
    params(("id" = String, Path, description = "Rollout id")),
    responses((status = 200, body = Rollout), (status = 409, body = ErrorBody)))]
pub async fn resume_rollout(
    State(state): State<AppState>,
    Auth(caller, _): Auth<perm::RolloutWrite>,
    Path(id): Path<String>,
) -> Result<Json<Rollout>, ApiError> {
    set_running(
        &state,
        &caller,
        &id,
        RolloutState::Paused,
        RolloutState::Running,
        "resume",
    )
    .await
}

/// Aborts for good: queued, offered and downloading devices are cancelled;
/// installs in progress finish. With `rollback`, a new rollout takes the
/// devices that run this release back to the previous published release:
/// new director metadata naming the older image, allowed only when that
/// release is still published (a deprecated or revoked one below is an
/// anti-rollback floor).
#[utoipa::path(post, path = "/api/v1/rollouts/{id}/abort", tag = "rollouts",
    params(("id" = String, Path, description = "Rollout id")), request_body = AbortRollout,
    responses((status = 200, body = AbortAnswer), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn abort_rollout(
    State(state): State<AppState>,
    Auth(caller, _): Auth<perm::RolloutWrite>,
    Path(id): Path<String>,
    Json(body): Json<AbortRollout>,
) -> Result<Json<AbortAnswer>, ApiError> {
    Ok(Json(abort(&state, &caller, &id, body.rollback).await?))
}

/// Aborts rollout `id` for `caller` (the API route and the console).
pub(crate) async fn abort(
    state: &AppState,
    caller: &Caller,
    id: &str,
    rollback: bool,
) -> Result<AbortAnswer, ApiError> {
    let id = id.to_owned();
    let record = load(state, &id).await?;
    let now = state.now();
    let rollback = if rollback {
        let releases: Vec<(String, ReleaseState)> = state
            .store
            .list_releases()
            .await?
            .into_iter()
            .filter(|r| r.hardware == record.hardware)
            .map(|r| (r.version, r.state))
            .collect();
        let older = rollback_target(&record.release_version, &releases)
            .map_err(|e| ApiError::unprocessable("rollback_refused", e.to_string()))?;
        let target = query::parse(&record.target).map_err(|_| ApiError::internal())?;
        let running_it = Expr::Compare {
            field: Field::Version,
            op: CompareOp::Eq,
            value: Value::Text(record.release_version.clone()),
        };
        let policy = Settings {
            continuous: true,
            ..Settings::default()
        };
        let settings =
            Settings::from_policy(&policy.to_policy().map_err(|_| ApiError::internal())?);
        Some(RolloutRecord {
            id: new_rollout_id(),
            release_version: older,
            hardware: record.hardware.clone(),
            target: and(target, running_it).to_string(),
            settings,
            state: RolloutState::Running,
            current_phase: 0,
            phase_started_at: now,
            soak_started_at: None,
            pause_reason: None,
            rollback_of: Some(id.clone()),
            created_at: now,
            created_by: caller.audit(now, "", "", serde_json::Value::Null).actor,
            updated_at: now,
        })
    } else {
        None
    };
    let audit = caller.audit(
        now,
        "rollout.abort",
        &format!("rollout:{id}"),
        serde_json::json!({
            "rollback": rollback.as_ref().map(|r| serde_json::json!({ "rollout": r.id, "release": r.release_version })),
        }),
    );
    let cancelled = state
        .store
        .abort_rollout(&id, now, rollback.as_ref(), &audit)
        .await?;
    let record = load(state, &id).await?;
    let rollback = match rollback {
        Some(r) => Some(to_wire(state, &r).await?),
        None => None,
    };
    Ok(AbortAnswer {
        rollout: to_wire(state, &record).await?,
        cancelled,
        rollback,
    })
}

/// The executions of a rollout, in order, with filters.
#[utoipa::path(get, path = "/api/v1/rollouts/{id}/executions", tag = "rollouts",
    params(("id" = String, Path, description = "Rollout id"), ExecutionListParams),
    responses((status = 200, body = ExecutionList), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_executions(
    State(state): State<AppState>,
    _auth: Auth<perm::RolloutRead>,
    Path(id): Path<String>,
    Query(params): Query<ExecutionListParams>,
) -> Result<Json<ExecutionList>, ApiError> {
    load(&state, &id).await?;
    let limit = params.limit.unwrap_or(100);
    if !(1..=fleetward_store::MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_parameter",
            format!("limit must be between 1 and {}", fleetward_store::MAX_PAGE),
        ));
    }
    if let Some(s) = &params.state
        && !ExecutionState::NAMES.contains(&s.as_str())
    {
        return Err(ApiError::bad_request(
            "invalid_parameter",
            format!(
                "unknown state {s:?}; one of {}",
                ExecutionState::NAMES.join(", ")
            ),
        ));
    }
    let device = params
        .device
        .as_deref()
        .map(fleetward_core::DeviceId::parse)
        .transpose()
        .map_err(|e| ApiError::bad_request("invalid_parameter", e.to_string()))?;
    let filter = ExecutionFilter {
        rollout_id: Some(id),
        device,
        state: params.state.clone(),
        phase: params.phase,
    };
    let items = state
        .store
        .list_executions(&filter, params.after, limit)
        .await?;
    let next = (items.len() == usize::try_from(limit).unwrap_or(usize::MAX))
        .then(|| items.last().map(|e| e.id.row))
        .flatten();
    Ok(Json(ExecutionList {
        items: items.iter().map(execution_to_wire).collect(),
        next,
    }))
}

/// Every state change of one execution (all its attempts).
#[utoipa::path(get, path = "/api/v1/rollouts/{id}/executions/{execution_id}/history", tag = "rollouts",
    params(("id" = String, Path, description = "Rollout id"), ("execution_id" = String, Path, description = "Execution id")),
    responses((status = 200, body = TransitionList), (status = 404, body = ErrorBody)))]
pub async fn execution_history(
    State(state): State<AppState>,
    _auth: Auth<perm::RolloutRead>,
    Path((id, execution_id)): Path<(String, String)>,
) -> Result<Json<TransitionList>, ApiError> {
    let not_found = || ApiError::not_found(format!("execution {execution_id} not found"));
    let parsed = ExecutionId::parse(&execution_id).ok_or_else(not_found)?;
    let execution = state
        .store
        .execution(parsed.row)
        .await?
        .filter(|e| e.rollout_id == id)
        .ok_or_else(not_found)?;
    let items = state
        .store
        .execution_history(execution.id.row)
        .await?
        .into_iter()
        .map(|t| {
            let (failure, reason) = t.to.parts();
            Transition {
                attempt: t.attempt,
                at: t.at,
                from: t.from,
                to: t.to.name().to_owned(),
                failure: failure.map(|f| f.as_str().to_owned()),
                reason: reason.map(str::to_owned).or(t.note),
                actor: t.actor,
            }
        })
        .collect();
    Ok(Json(TransitionList {
        execution_id: execution.id.to_string(),
        items,
    }))
}
