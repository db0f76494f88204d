//! [`RolloutStore`] for SQLite.
//!
//! Every change is a conditional update inside the single writer's
//! transaction: it names the state it was decided from, and a row that
//! moved on meanwhile is left alone. That, and the unique index allowing
//! one unfinished execution per device, is what keeps two rollout ticks
//! (or two replicas) from contradicting each other.

use async_trait::async_trait;
use fleetward_core::query::Expr;
use fleetward_core::{DeviceId, version};
use fleetward_rollout::{ExecutionId, ExecutionState, FailureKind, Settings};
use sqlx::{QueryBuilder, Row as _, Sqlite, Transaction};
use time::OffsetDateTime;

use crate::query_sql::{TagForm, push_predicate};
use crate::rollouts::{
    ExecutionFilter, ExecutionRecord, PhaseCount, PhaseFn, QueueOutcome, RolloutChange,
    RolloutRecord, RolloutState, RolloutStore, TransitionRecord,
};
use crate::sqlite::{Columns, from_millis, insert_audit, is_unique_violation, to_millis};
use crate::{AuditEntry, Result, SqliteStore, StoreError};

/// `('queued', …, 'verifying')`: the unfinished states, for SQL.
pub(crate) fn open_states_sql() -> String {
    let names: Vec<String> = ExecutionState::OPEN_NAMES
        .iter()
        .map(|n| format!("'{n}'"))
        .collect();
    format!("({})", names.join(", "))
}

pub(crate) const EXECUTION_COLUMNS: &str = "e.seq, e.attempt, e.device_id, e.phase, e.state, e.failure, \
     e.reason, e.released_at, e.offered_at, e.updated_at, r.id AS rollout_id, r.release_version";

pub(crate) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

pub(crate) fn u32_of(n: i64, what: &str) -> Result<u32> {
    u32::try_from(n).map_err(|_| corrupt(format!("{what} {n} out of range")))
}

pub(crate) fn u64_of(n: i64, what: &str) -> Result<u64> {
    u64::try_from(n).map_err(|_| corrupt(format!("{what} {n} out of range")))
}

pub(crate) fn i64_of(n: u64) -> Result<i64> {
    i64::try_from(n).map_err(|_| StoreError::Invalid(format!("{n} is out of range")))
}

pub(crate) fn settings_to_json(settings: &Settings) -> String {
    serde_json::json!({
        "phases": settings.phases,
        "soak": settings.soak,
        "success_threshold": settings.success_threshold,
        "max_failures": settings.max_failures,
        "max_failures_count": settings.max_failures_count,
        "rate": settings.rate,
        "window": settings.window,
        "timeout": settings.timeout,
        "retries": settings.retries,
        "continuous": settings.continuous,
    })
    .to_string()
}

pub(crate) fn settings_from_json(text: &str) -> Result<Settings> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| corrupt(format!("rollout settings: {e}")))?;
    let text_of = |key: &str| value[key].as_str().map(str::to_owned);
    Ok(Settings {
        phases: text_of("phases"),
        soak: text_of("soak"),
        success_threshold: text_of("success_threshold"),
        max_failures: text_of("max_failures"),
        max_failures_count: value["max_failures_count"].as_u64(),
        rate: text_of("rate"),
        window: text_of("window"),
        timeout: text_of("timeout"),
        retries: value["retries"]
            .as_u64()
            .map(|n| u32::try_from(n).map_err(|_| corrupt("retries out of range")))
            .transpose()?,
        continuous: value["continuous"].as_bool().unwrap_or(false),
    })
}

pub(crate) fn rollout_from_row(row: &impl Columns) -> Result<RolloutRecord> {
    let state = row.text("state")?;
    Ok(RolloutRecord {
        id: row.text("id")?,
        release_version: row.text("release_version")?,
        hardware: row.text("hardware")?,
        target: row.text("target")?,
        settings: settings_from_json(&row.text("settings")?)?,
        state: RolloutState::parse(&state)
            .ok_or_else(|| corrupt(format!("unknown rollout state {state:?}")))?,
        current_phase: u32_of(row.int("current_phase")?, "phase")?,
        phase_started_at: from_millis(row.int("phase_started_at")?)?,
        soak_started_at: row
            .opt_int("soak_started_at")?
            .map(from_millis)
            .transpose()?,
        pause_reason: row.opt_text("pause_reason")?,
        rollback_of: row.opt_text("rollback_of")?,
        created_at: from_millis(row.int("created_at")?)?,
        created_by: row.text("created_by")?,
        updated_at: from_millis(row.int("updated_at")?)?,
    })
}

pub(crate) fn state_from(
    name: &str,
    failure: Option<String>,
    reason: Option<String>,
) -> Result<ExecutionState> {
    let failure = failure
        .map(|f| FailureKind::parse(&f).ok_or_else(|| corrupt(format!("unknown failure {f:?}"))))
        .transpose()?;
    ExecutionState::from_parts(name, failure, reason)
        .ok_or_else(|| corrupt(format!("unknown execution state {name:?}")))
}

pub(crate) fn execution_from_row(row: &impl Columns) -> Result<ExecutionRecord> {
    let state = row.text("state")?;
    let device = row.text("device_id")?;
    Ok(ExecutionRecord {
        id: ExecutionId {
            row: u64_of(row.int("seq")?, "execution row")?,
            attempt: u32_of(row.int("attempt")?, "attempt")?,
        },
        rollout_id: row.text("rollout_id")?,
        release_version: row.text("release_version")?,
        device_id: DeviceId::parse(&device).map_err(corrupt)?,
        phase: u32_of(row.int("phase")?, "phase")?,
        state: state_from(&state, row.opt_text("failure")?, row.opt_text("reason")?)?,
        released_at: row.opt_int("released_at")?.map(from_millis).transpose()?,
        offered_at: row.opt_int("offered_at")?.map(from_millis).transpose()?,
        updated_at: from_millis(row.int("updated_at")?)?,
    })
}

/// One row of `execution_transitions`.
pub(crate) fn transition_from_row(row: &impl Columns) -> Result<TransitionRecord> {
    let to = row.text("to_state")?;
    let reason = row.opt_text("reason")?;
    let state = state_from(&to, row.opt_text("failure")?, reason.clone())?;
    // A reason the state does not carry is a note (why cancelled, a retry).
    let note = match state.parts().1 {
        Some(_) => None,
        None => reason,
    };
    Ok(TransitionRecord {
        seq: u64_of(row.int("seq")?, "seq")?,
        attempt: u32_of(row.int("attempt")?, "attempt")?,
        at: from_millis(row.int("at")?)?,
        from: row.opt_text("from_state")?,
        to: state,
        actor: row.text("actor")?,
        note,
    })
}

async fn rollout_seq(
    tx: &mut Transaction<'static, Sqlite>,
    id: &str,
) -> Result<(i64, RolloutRecord)> {
    let row = sqlx::query("SELECT * FROM rollouts WHERE id = ?")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("rollout {id}")))?;
    Ok((row.try_get("seq")?, rollout_from_row(&row)?))
}

#[allow(clippy::too_many_arguments)]
async fn record_transition(
    tx: &mut Transaction<'static, Sqlite>,
    execution_seq: i64,
    attempt: u32,
    at: OffsetDateTime,
    from: Option<&str>,
    to: &ExecutionState,
    actor: &str,
    note: Option<&str>,
) -> Result<()> {
    let (failure, reason) = to.parts();
    let reason = reason.or(note);
    sqlx::query(
        "INSERT INTO execution_transitions (execution_seq, attempt, at, from_state, to_state, failure, reason, actor)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(execution_seq)
    .bind(i64::from(attempt))
    .bind(to_millis(at))
    .bind(from)
    .bind(to.name())
    .bind(failure.map(FailureKind::as_str))
    .bind(reason)
    .bind(actor)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Queues the matching devices that are not in the rollout yet.
async fn queue_in(
    tx: &mut Transaction<'static, Sqlite>,
    rollout_seq: i64,
    rollout: &RolloutRecord,
    target: &Expr,
    phase: &PhaseFn,
    at: OffsetDateTime,
) -> Result<QueueOutcome> {
    let mut qb = QueryBuilder::<Sqlite>::new(format!(
        "SELECT d.id, EXISTS (SELECT 1 FROM rollout_executions o WHERE o.device_id = d.id \
         AND o.state IN {}) AS busy FROM devices d WHERE d.status = 'active' AND d.hardware = ",
        open_states_sql()
    ));
    qb.push_bind(rollout.hardware.clone());
    qb.push(" AND (d.version IS NULL OR d.version <> ");
    qb.push_bind(rollout.release_version.clone());
    qb.push(") AND NOT EXISTS (SELECT 1 FROM rollout_executions e WHERE e.rollout_seq = ");
    qb.push_bind(rollout_seq);
    qb.push(" AND e.device_id = d.id) AND ");
    push_predicate(&mut qb, target, TagForm::Exists);
    // Plain tuples, not rows: a million of them must stay small.
    let rows: Vec<(String, bool)> = qb.build_query_as().fetch_all(&mut **tx).await?;
    let mut outcome = QueueOutcome::default();
    let now = to_millis(at);
    let mut chosen: Vec<(String, u32)> = Vec::with_capacity(rows.len());
    for (id, busy) in rows {
        if busy {
            outcome.busy += 1;
            continue;
        }
        let device = DeviceId::parse(&id).map_err(corrupt)?;
        if let Some(phase) = phase(&device) {
            chosen.push((id, phase));
        }
    }
    // In device-id order, the unique indexes keyed by device id
    // (`(rollout_seq, device_id)`, the one-open-execution index) grow at
    // their right edge instead of being written all over.
    chosen.sort_unstable();
    let before: i64 = sqlx::query_scalar("SELECT coalesce(max(seq), 0) FROM rollout_executions")
        .fetch_one(&mut **tx)
        .await?;
    // A large insert with SQLite's default 2 MiB page cache spills dirty
    // pages to the WAL and reads them back, over and over. Give this
    // connection room for the whole batch (it only grows as used), and set
    // it back afterwards, whatever the outcome.
    if chosen.len() > BULK_ROWS {
        sqlx::query(&format!("PRAGMA cache_size = -{BULK_CACHE_KIB}"))
            .execute(&mut **tx)
            .await?;
    }
    let inserted = insert_executions(tx, rollout_seq, &chosen, now, before).await;
    if chosen.len() > BULK_ROWS {
        sqlx::query("PRAGMA cache_size = -2000")
            .execute(&mut **tx)
            .await?;
    }
    outcome.queued += inserted?;
    Ok(outcome)
}

/// Past this many executions, a creation gets the larger page cache.
const BULK_ROWS: usize = 10_000;
/// The page cache of a bulk creation, in KiB (a million executions and
/// their indexes take about 200 MiB of pages).
const BULK_CACHE_KIB: u32 = 256 * 1024;

async fn insert_executions(
    tx: &mut Transaction<'static, Sqlite>,
    rollout_seq: i64,
    chosen: &[(String, u32)],
    now: i64,
    before: i64,
) -> Result<u64> {
    let mut queued = 0;
    // Many rows per statement: a million devices are a thousand statements,
    // not a million round trips.
    for chunk in chosen.chunks(1000) {
        let mut insert = QueryBuilder::<Sqlite>::new(
            "INSERT OR IGNORE INTO rollout_executions (rollout_seq, device_id, phase, attempt, state, updated_at) ",
        );
        insert.push_values(chunk, |mut row, (id, phase)| {
            row.push_bind(rollout_seq)
                .push_bind(id.as_str())
                .push_bind(i64::from(*phase))
                .push_bind(1_i64)
                .push_bind("queued")
                .push_bind(now);
        });
        let done = insert.build().execute(&mut **tx).await?;
        queued += done.rows_affected();
    }
    // Their first transition, all at once.
    sqlx::query(
        "INSERT INTO execution_transitions (execution_seq, attempt, at, from_state, to_state, actor)
         SELECT seq, 1, ?, NULL, 'queued', 'server' FROM rollout_executions
         WHERE rollout_seq = ? AND seq > ?",
    )
    .bind(now)
    .bind(rollout_seq)
    .bind(before)
    .execute(&mut **tx)
    .await?;
    Ok(queued)
}

async fn insert_rollout(
    tx: &mut Transaction<'static, Sqlite>,
    rollout: &RolloutRecord,
) -> Result<i64> {
    sqlx::query_scalar(
        "INSERT INTO rollouts (id, release_version, hardware, target, settings, state, current_phase,
            phase_started_at, soak_started_at, pause_reason, rollback_of, created_at, created_by, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq",
    )
    .bind(&rollout.id)
    .bind(&rollout.release_version)
    .bind(&rollout.hardware)
    .bind(&rollout.target)
    .bind(settings_to_json(&rollout.settings))
    .bind(rollout.state.as_str())
    .bind(i64::from(rollout.current_phase))
    .bind(to_millis(rollout.phase_started_at))
    .bind(rollout.soak_started_at.map(to_millis))
    .bind(&rollout.pause_reason)
    .bind(&rollout.rollback_of)
    .bind(to_millis(rollout.created_at))
    .bind(&rollout.created_by)
    .bind(to_millis(rollout.updated_at))
    .fetch_one(&mut **tx)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            StoreError::Conflict(format!("rollout {} exists already", rollout.id))
        } else if matches!(&e, sqlx::Error::Database(db) if db.is_foreign_key_violation()) {
            StoreError::NotFound(format!("release {}", rollout.release_version))
        } else {
            e.into()
        }
    })
}

/// Moves one execution (by row and attempt) if it is still in `from`.
#[allow(clippy::too_many_arguments)]
async fn move_execution(
    tx: &mut Transaction<'static, Sqlite>,
    id: ExecutionId,
    from: &ExecutionState,
    to: &ExecutionState,
    actor: &str,
    note: Option<&str>,
    at: OffsetDateTime,
) -> Result<bool> {
    let (failure, reason) = to.parts();
    let done = sqlx::query(
        "UPDATE rollout_executions SET state = ?, failure = ?, reason = ?, updated_at = ?
         WHERE seq = ? AND attempt = ? AND state = ?",
    )
    .bind(to.name())
    .bind(failure.map(FailureKind::as_str))
    .bind(reason)
    .bind(to_millis(at))
    .bind(i64_of(id.row)?)
    .bind(i64::from(id.attempt))
    .bind(from.name())
    .execute(&mut **tx)
    .await?;
    if done.rows_affected() != 1 {
        return Ok(false);
    }
    record_transition(
        tx,
        i64_of(id.row)?,
        id.attempt,
        at,
        Some(from.name()),
        to,
        actor,
        note,
    )
    .await?;
    Ok(true)
}

impl SqliteStore {
    async fn executions_where(
        &self,
        clause: &str,
        binds: Vec<i64>,
    ) -> Result<Vec<ExecutionRecord>> {
        let sql = format!(
            "SELECT {EXECUTION_COLUMNS} FROM rollout_executions e JOIN rollouts r ON r.seq = e.rollout_seq WHERE {clause}"
        );
        let mut query = sqlx::query(&sql);
        for bind in binds {
            query = query.bind(bind);
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(execution_from_row).collect()
    }

    async fn rollout_seq_of(&self, id: &str) -> Result<i64> {
        sqlx::query_scalar("SELECT seq FROM rollouts WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("rollout {id}")))
    }
}

#[allow(clippy::too_many_arguments)]
#[async_trait]
impl RolloutStore for SqliteStore {
    async fn create_rollout(
        &self,
        rollout: &RolloutRecord,
        target: &Expr,
        phase: PhaseFn,
        require_devices: bool,
        audit: &AuditEntry,
    ) -> Result<QueueOutcome> {
        let rollout = rollout.clone();
        let target = target.clone();
        let audit = audit.clone();
        self.write(move |tx| {
            Box::pin(async move {
                let seq = insert_rollout(tx, &rollout).await?;
                let outcome = queue_in(tx, seq, &rollout, &target, &phase, rollout.created_at).await?;
                if require_devices && outcome.queued == 0 {
                    return Err(StoreError::Invalid(format!(
                        "the target set is empty: no active {} device matching the query needs release {}{}",
                        rollout.hardware,
                        rollout.release_version,
                        if outcome.busy > 0 {
                            format!(" ({} are in another unfinished rollout)", outcome.busy)
                        } else {
                            String::new()
                        }
                    )));
                }
                let mut audit = audit;
                audit.detail["queued"] = outcome.queued.into();
                audit.detail["busy"] = outcome.busy.into();
                insert_audit(tx, &audit).await?;
                Ok(outcome)
            })
        })
        .await
    }

    async fn rollout(&self, id: &str) -> Result<Option<RolloutRecord>> {
        let row = sqlx::query("SELECT * FROM rollouts WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(rollout_from_row).transpose()
    }

    async fn list_rollouts(&self, states: &[RolloutState]) -> Result<Vec<RolloutRecord>> {
        let mut qb = QueryBuilder::<Sqlite>::new("SELECT * FROM rollouts");
        if !states.is_empty() {
            qb.push(" WHERE state IN (");
            let mut list = qb.separated(", ");
            for state in states {
                list.push_bind(state.as_str());
            }
            qb.push(")");
        }
        qb.push(" ORDER BY seq");
        let rows = qb.build().fetch_all(&self.pool).await?;
        rows.iter().map(rollout_from_row).collect()
    }

    async fn queue_devices(
        &self,
        rollout_id: &str,
        target: &Expr,
        phase: PhaseFn,
        at: OffsetDateTime,
    ) -> Result<QueueOutcome> {
        let id = rollout_id.to_owned();
        let target = target.clone();
        self.write(move |tx| {
            Box::pin(async move {
                let (seq, rollout) = rollout_seq(tx, &id).await?;
                if !matches!(rollout.state, RolloutState::Running | RolloutState::Paused) {
                    return Ok(QueueOutcome::default());
                }
                queue_in(tx, seq, &rollout, &target, &phase, at).await
            })
        })
        .await
    }

    async fn rollout_counts(&self, rollout_id: &str) -> Result<Vec<PhaseCount>> {
        let seq = self.rollout_seq_of(rollout_id).await?;
        let rows = sqlx::query(
            "SELECT phase, state, count(*) AS n, count(released_at) AS released
             FROM rollout_executions WHERE rollout_seq = ? GROUP BY phase, state ORDER BY phase, state",
        )
        .bind(seq)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(PhaseCount {
                    phase: u32_of(row.try_get("phase")?, "phase")?,
                    state: row.try_get("state")?,
                    count: u64_of(row.try_get("n")?, "count")?,
                    released: u64_of(row.try_get("released")?, "count")?,
                })
            })
            .collect()
    }

    async fn update_rollout(
        &self,
        change: &RolloutChange,
        audit: Option<&AuditEntry>,
    ) -> Result<bool> {
        let change = change.clone();
        let audit = audit.cloned();
        self.write(move |tx| {
            Box::pin(async move {
                let phase_started = if change.current_phase != change.expect_phase {
                    Some(to_millis(change.at))
                } else {
                    None
                };
                let done = sqlx::query(
                    "UPDATE rollouts SET state = ?, current_phase = ?, soak_started_at = ?, pause_reason = ?,
                        phase_started_at = coalesce(?, phase_started_at), updated_at = ?
                     WHERE id = ? AND state = ? AND current_phase = ?",
                )
                .bind(change.state.as_str())
                .bind(i64::from(change.current_phase))
                .bind(change.soak_started_at.map(to_millis))
                .bind(&change.pause_reason)
                .bind(phase_started)
                .bind(to_millis(change.at))
                .bind(&change.id)
                .bind(change.expect_state.as_str())
                .bind(i64::from(change.expect_phase))
                .execute(&mut **tx)
                .await?;
                if done.rows_affected() != 1 {
                    return Ok(false);
                }
                if let Some(audit) = &audit {
                    insert_audit(tx, audit).await?;
                }
                Ok(true)
            })
        })
        .await
    }

    async fn abort_rollout(
        &self,
        rollout_id: &str,
        at: OffsetDateTime,
        rollback: Option<&RolloutRecord>,
        audit: &AuditEntry,
    ) -> Result<u64> {
        let id = rollout_id.to_owned();
        let rollback = rollback.cloned();
        let audit = audit.clone();
        self.write(move |tx| {
            Box::pin(async move {
                let (seq, rollout) = rollout_seq(tx, &id).await?;
                let done = sqlx::query(
                    "UPDATE rollouts SET state = 'aborted', updated_at = ?
                     WHERE seq = ? AND state IN ('running', 'paused')",
                )
                .bind(to_millis(at))
                .bind(seq)
                .execute(&mut **tx)
                .await?;
                if done.rows_affected() != 1 {
                    return Err(StoreError::Conflict(format!(
                        "rollout {id} is {}; only a running or paused rollout can be aborted",
                        rollout.state.as_str()
                    )));
                }
                let sql = format!(
                    "SELECT seq, attempt, state, failure, reason FROM rollout_executions
                     WHERE rollout_seq = ? AND state IN {}",
                    open_states_sql()
                );
                let rows = sqlx::query(&sql).bind(seq).fetch_all(&mut **tx).await?;
                let mut cancelled = 0;
                for row in rows {
                    let state: String = row.try_get("state")?;
                    let from = state_from(&state, row.try_get("failure")?, row.try_get("reason")?)?;
                    let Some(to) = from.on_abort() else { continue };
                    let execution = ExecutionId {
                        row: u64_of(row.try_get("seq")?, "row")?,
                        attempt: u32_of(row.try_get("attempt")?, "attempt")?,
                    };
                    if move_execution(
                        tx,
                        execution,
                        &from,
                        &to,
                        &audit.actor,
                        Some("rollout aborted"),
                        at,
                    )
                    .await?
                    {
                        cancelled += 1;
                    }
                }
                if let Some(rollback) = &rollback {
                    insert_rollout(tx, rollback).await?;
                }
                let mut audit = audit;
                audit.detail["cancelled"] = cancelled.into();
                insert_audit(tx, &audit).await?;
                Ok(cancelled)
            })
        })
        .await
    }

    async fn release_executions(
        &self,
        rollout_id: &str,
        up_to_phase: u32,
        cap_total: Option<u64>,
        limit: u32,
        at: OffsetDateTime,
    ) -> Result<u64> {
        let id = rollout_id.to_owned();
        self.write(move |tx| {
            Box::pin(async move {
                let (seq, rollout) = rollout_seq(tx, &id).await?;
                if rollout.state != RolloutState::Running {
                    return Ok(0);
                }
                let mut room = u64::from(limit);
                if let Some(cap) = cap_total {
                    let released: i64 = sqlx::query_scalar(
                        "SELECT count(*) FROM rollout_executions WHERE rollout_seq = ? AND released_at IS NOT NULL",
                    )
                    .bind(seq)
                    .fetch_one(&mut **tx)
                    .await?;
                    room = room.min(cap.saturating_sub(u64_of(released, "count")?));
                }
                if room == 0 {
                    return Ok(0);
                }
                let done = sqlx::query(
                    "UPDATE rollout_executions SET released_at = ? WHERE seq IN (
                        SELECT e.seq FROM rollout_executions e JOIN devices d ON d.id = e.device_id
                        WHERE e.rollout_seq = ? AND e.state = 'queued' AND e.released_at IS NULL
                          AND e.phase <= ? AND d.status = 'active'
                        ORDER BY e.phase, e.seq LIMIT ?)",
                )
                .bind(to_millis(at))
                .bind(seq)
                .bind(i64::from(up_to_phase))
                .bind(i64_of(room)?)
                .execute(&mut **tx)
                .await?;
                Ok(done.rows_affected())
            })
        })
        .await
    }

    async fn overdue_executions(
        &self,
        rollout_id: &str,
        offered_before: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<ExecutionRecord>> {
        let seq = self.rollout_seq_of(rollout_id).await?;
        self.executions_where(
            &format!(
                "e.rollout_seq = ? AND e.state IN {} AND e.state <> 'queued' AND e.offered_at <= ? ORDER BY e.seq LIMIT ?",
                open_states_sql()
            ),
            vec![seq, to_millis(offered_before), i64::from(limit.min(crate::MAX_PAGE))],
        )
        .await
    }

    async fn retryable_executions(
        &self,
        rollout_id: &str,
        max_attempt: u32,
        limit: u32,
    ) -> Result<Vec<ExecutionRecord>> {
        let seq = self.rollout_seq_of(rollout_id).await?;
        self.executions_where(
            "e.rollout_seq = ? AND e.state IN ('failed', 'timed-out') AND e.attempt <= ? ORDER BY e.seq LIMIT ?",
            vec![seq, i64::from(max_attempt), i64::from(limit.min(crate::MAX_PAGE))],
        )
        .await
    }

    async fn transition_execution(
        &self,
        id: ExecutionId,
        from: &ExecutionState,
        to: &ExecutionState,
        actor: &str,
        note: Option<&str>,
        device_version: Option<&str>,
        at: OffsetDateTime,
    ) -> Result<bool> {
        let from = from.clone();
        let to = to.clone();
        let actor = actor.to_owned();
        let note = note.map(str::to_owned);
        let device_version = device_version.map(str::to_owned);
        self.write(move |tx| {
            Box::pin(async move {
                if !move_execution(tx, id, &from, &to, &actor, note.as_deref(), at).await? {
                    return Ok(false);
                }
                if let Some(running) = &device_version {
                    sqlx::query(
                        "UPDATE devices SET version = ?, version_key = ?
                         WHERE id = (SELECT device_id FROM rollout_executions WHERE seq = ?)",
                    )
                    .bind(running)
                    .bind(version::sort_key(running))
                    .bind(i64_of(id.row)?)
                    .execute(&mut **tx)
                    .await?;
                }
                Ok(true)
            })
        })
        .await
    }

    async fn retry_execution(
        &self,
        id: ExecutionId,
        from: &ExecutionState,
        at: OffsetDateTime,
    ) -> Result<Option<ExecutionId>> {
        let from = from.clone();
        self.write(move |tx| {
            Box::pin(async move {
                let next = ExecutionId {
                    row: id.row,
                    attempt: id.attempt.saturating_add(1),
                };
                let done = sqlx::query(
                    "UPDATE rollout_executions SET state = 'queued', attempt = ?, failure = NULL, reason = NULL,
                        offered_at = NULL, updated_at = ?
                     WHERE seq = ? AND attempt = ? AND state = ?",
                )
                .bind(i64::from(next.attempt))
                .bind(to_millis(at))
                .bind(i64_of(id.row)?)
                .bind(i64::from(id.attempt))
                .bind(from.name())
                .execute(&mut **tx)
                .await;
                match done {
                    Ok(done) if done.rows_affected() == 1 => {}
                    Ok(_) => return Ok(None),
                    // The device is in another rollout's unfinished execution now.
                    Err(e) if is_unique_violation(&e) => return Ok(None),
                    Err(e) => return Err(e.into()),
                }
                record_transition(
                    tx,
                    i64_of(id.row)?,
                    next.attempt,
                    at,
                    Some(from.name()),
                    &ExecutionState::Queued,
                    "server",
                    Some("retry"),
                )
                .await?;
                Ok(Some(next))
            })
        })
        .await
    }

    async fn cancel_inactive(&self, rollout_id: &str, at: OffsetDateTime) -> Result<u64> {
        let id = rollout_id.to_owned();
        self.write(move |tx| {
            Box::pin(async move {
                let (seq, _) = rollout_seq(tx, &id).await?;
                let sql = format!(
                    "SELECT e.seq, e.attempt, e.state, d.status FROM rollout_executions e
                     JOIN devices d ON d.id = e.device_id
                     WHERE e.rollout_seq = ? AND e.state IN {} AND d.status <> 'active'",
                    open_states_sql()
                );
                let rows = sqlx::query(&sql).bind(seq).fetch_all(&mut **tx).await?;
                let mut cancelled = 0;
                for row in rows {
                    let state: String = row.try_get("state")?;
                    let status: String = row.try_get("status")?;
                    let from = state_from(&state, None, None)?;
                    // Same rule as an abort: an install in progress finishes.
                    let Some(to) = from.on_abort() else { continue };
                    let execution = ExecutionId {
                        row: u64_of(row.try_get("seq")?, "row")?,
                        attempt: u32_of(row.try_get("attempt")?, "attempt")?,
                    };
                    let note = format!("device is {status}");
                    if move_execution(tx, execution, &from, &to, "server", Some(&note), at).await? {
                        cancelled += 1;
                    }
                }
                Ok(cancelled)
            })
        })
        .await
    }

    async fn execution(&self, row: u64) -> Result<Option<ExecutionRecord>> {
        let Ok(row) = i64::try_from(row) else {
            return Ok(None);
        };
        Ok(self
            .executions_where("e.seq = ?", vec![row])
            .await?
            .into_iter()
            .next())
    }

    async fn open_execution(&self, device: &DeviceId) -> Result<Option<ExecutionRecord>> {
        let sql = format!(
            "SELECT {EXECUTION_COLUMNS} FROM rollout_executions e JOIN rollouts r ON r.seq = e.rollout_seq
             WHERE e.device_id = ? AND e.state IN {}",
            open_states_sql()
        );
        // Every director poll asks this: one row through the unique partial
        // index `rollout_executions_one_open`, read where it is called.
        if let Some(reader) = &self.point_reader {
            return reader.read(|conn| {
                super::point_row(conn, &sql, device.as_str(), |row| execution_from_row(row))
            })?;
        }
        let row = sqlx::query(&sql)
            .bind(device.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(execution_from_row).transpose()
    }

    async fn serve_execution(
        &self,
        device: &DeviceId,
        at: OffsetDateTime,
    ) -> Result<Option<ExecutionRecord>> {
        let Some(open) = self.open_execution(device).await? else {
            return Ok(None);
        };
        if open.state != ExecutionState::Queued {
            return Ok(Some(open));
        }
        if open.released_at.is_none() {
            return Ok(None);
        }
        let id = open.id;
        let actor = format!("device:{device}");
        let moved = self
            .write(move |tx| {
                Box::pin(async move {
                    let done = sqlx::query(
                        "UPDATE rollout_executions SET state = 'offered', offered_at = ?, updated_at = ?
                         WHERE seq = ? AND attempt = ? AND state = 'queued' AND released_at IS NOT NULL
                           AND rollout_seq IN (SELECT seq FROM rollouts WHERE state = 'running')",
                    )
                    .bind(to_millis(at))
                    .bind(to_millis(at))
                    .bind(i64_of(id.row)?)
                    .bind(i64::from(id.attempt))
                    .execute(&mut **tx)
                    .await?;
                    if done.rows_affected() != 1 {
                        return Ok(false);
                    }
                    record_transition(
                        tx,
                        i64_of(id.row)?,
                        id.attempt,
                        at,
                        Some("queued"),
                        &ExecutionState::Offered,
                        &actor,
                        None,
                    )
                    .await?;
                    Ok(true)
                })
            })
            .await?;
        if !moved {
            // Paused meanwhile, or another request moved it first.
            return Ok(self
                .open_execution(device)
                .await?
                .filter(|e| e.state != ExecutionState::Queued));
        }
        self.open_execution(device).await
    }

    async fn list_executions(
        &self,
        filter: &ExecutionFilter,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Vec<ExecutionRecord>> {
        let mut qb = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {EXECUTION_COLUMNS} FROM rollout_executions e JOIN rollouts r ON r.seq = e.rollout_seq WHERE e.seq > "
        ));
        qb.push_bind(i64::try_from(after.unwrap_or(0)).unwrap_or(i64::MAX));
        if let Some(rollout) = &filter.rollout_id {
            qb.push(" AND r.id = ");
            qb.push_bind(rollout.clone());
        }
        if let Some(device) = &filter.device {
            qb.push(" AND e.device_id = ");
            qb.push_bind(device.as_str().to_owned());
        }
        if let Some(state) = &filter.state {
            qb.push(" AND e.state = ");
            qb.push_bind(state.clone());
        }
        if let Some(phase) = filter.phase {
            qb.push(" AND e.phase = ");
            qb.push_bind(i64::from(phase));
        }
        qb.push(" ORDER BY e.seq LIMIT ");
        qb.push_bind(i64::from(limit.min(crate::MAX_PAGE)));
        let rows = qb.build().fetch_all(&self.pool).await?;
        rows.iter().map(execution_from_row).collect()
    }

    async fn execution_history(&self, row: u64) -> Result<Vec<TransitionRecord>> {
        let Ok(row) = i64::try_from(row) else {
            return Ok(Vec::new());
        };
        let rows =
            sqlx::query("SELECT * FROM execution_transitions WHERE execution_seq = ? ORDER BY seq")
                .bind(row)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(transition_from_row).collect()
    }
}
