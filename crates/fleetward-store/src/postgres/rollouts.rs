//! [`RolloutStore`] for PostgreSQL.
//!
//! SQLite makes each of these read-then-write steps atomic with its single
//! writer; here several replicas write at once, so each step says what it
//! locks:
//!
//! * Rollout-level work (create, queue, release, abort, cancel, retry, a
//!   rollout's state change) runs inside [`PostgresStore::write`], under the
//!   chain-head lock every audited write takes, and also locks the rollout's
//!   row (`FOR UPDATE`). "Count what is released, then release up to the
//!   cap" is therefore never interleaved with another replica's count.
//! * The device's hot path (being served an execution, reporting progress)
//!   stays off the chain-head lock: a transition is one conditional
//!   `UPDATE … WHERE state = <from>`, which PostgreSQL re-checks against the
//!   newest row version after waiting for a concurrent writer, so of two
//!   racing transitions from one state exactly one applies. Serving reads
//!   the rollout's state under `FOR SHARE`, so a pause or abort either
//!   waits for the offer or is seen by it.
//! * Abort and cancellation read the executions they cancel `FOR UPDATE`:
//!   a transition that commits meanwhile is seen (the row's newest state
//!   is what `on_abort` decides from), never lost.
//! * Lock order is rollout, then execution, then device, everywhere, so
//!   these never deadlock.
//! * The partial unique index on unfinished executions holds across all
//!   replicas; queueing skips a device another transaction just put in an
//!   unfinished execution (`ON CONFLICT DO NOTHING`), and a retry that
//!   would break it rolls back to a savepoint and reports `None`.

use async_trait::async_trait;
use fleetward_core::query::Expr;
use fleetward_core::{DeviceId, version};
use fleetward_rollout::{ExecutionId, ExecutionState, FailureKind};
use sqlx::{Acquire as _, Postgres, QueryBuilder, Row as _, Transaction};
use time::OffsetDateTime;

use super::{PostgresStore, insert_audit, is_unique_violation};
use crate::query_sql::{TagForm, push_predicate};
use crate::rollouts::{
    ExecutionFilter, ExecutionRecord, PhaseCount, PhaseFn, QueueOutcome, RolloutChange,
    RolloutRecord, RolloutState, RolloutStore, TransitionRecord,
};
use crate::sqlite::rollouts::{
    EXECUTION_COLUMNS, corrupt, execution_from_row, i64_of, open_states_sql, rollout_from_row,
    settings_to_json, state_from, transition_from_row, u32_of, u64_of,
};
use crate::sqlite::to_millis;
use crate::{AuditEntry, Result, StoreError};

/// Rows per insert when queueing (arrays, one round trip per chunk).
const QUEUE_CHUNK: usize = 10_000;

/// The rollout, its row locked until the transaction ends.
async fn rollout_for_update(
    tx: &mut Transaction<'static, Postgres>,
    id: &str,
) -> Result<(i64, RolloutRecord)> {
    let row = sqlx::query("SELECT * FROM rollouts WHERE id = $1 FOR UPDATE")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("rollout {id}")))?;
    Ok((row.try_get("seq")?, rollout_from_row(&row)?))
}

#[allow(clippy::too_many_arguments)]
async fn record_transition(
    tx: &mut Transaction<'static, Postgres>,
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
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
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

/// Queues the matching devices that are not in the rollout yet (the
/// caller holds the rollout's row lock).
async fn queue_in(
    tx: &mut Transaction<'static, Postgres>,
    rollout_seq: i64,
    rollout: &RolloutRecord,
    target: &Expr,
    phase: &PhaseFn,
    at: OffsetDateTime,
) -> Result<QueueOutcome> {
    let mut qb = QueryBuilder::<Postgres>::new(format!(
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
    // Registration order, the order SQLite's rowid walk gives: executions
    // (and so release order within a phase) follow it on both backends.
    qb.push(" ORDER BY d.seq");
    let rows = qb.build().fetch_all(&mut **tx).await?;
    let mut outcome = QueueOutcome::default();
    let mut ids: Vec<String> = Vec::with_capacity(rows.len());
    let mut phases: Vec<i64> = Vec::with_capacity(rows.len());
    for row in rows {
        let id: String = row.try_get("id")?;
        if row.try_get::<bool, _>("busy")? {
            outcome.busy += 1;
            continue;
        }
        let device = DeviceId::parse(&id).map_err(corrupt)?;
        if let Some(phase) = phase(&device) {
            ids.push(id);
            phases.push(i64::from(phase));
        }
    }
    // One statement per chunk inserts the executions and their first
    // transitions. ON CONFLICT DO NOTHING (any unique index): a device that
    // another replica put in an unfinished execution meanwhile is skipped,
    // as SQLite's INSERT OR IGNORE skips it.
    for (ids, phases) in ids.chunks(QUEUE_CHUNK).zip(phases.chunks(QUEUE_CHUNK)) {
        let done = sqlx::query(
            "WITH queued AS (
                INSERT INTO rollout_executions (rollout_seq, device_id, phase, attempt, state, updated_at)
                SELECT $1, n.id, n.phase, 1, 'queued', $2
                FROM UNNEST($3::text[], $4::bigint[]) WITH ORDINALITY AS n (id, phase, o)
                ORDER BY n.o
                ON CONFLICT DO NOTHING
                RETURNING seq)
             INSERT INTO execution_transitions (execution_seq, attempt, at, from_state, to_state, actor)
             SELECT seq, 1, $2, NULL, 'queued', 'server' FROM queued ORDER BY seq",
        )
        .bind(rollout_seq)
        .bind(to_millis(at))
        .bind(ids)
        .bind(phases)
        .execute(&mut **tx)
        .await?;
        outcome.queued += done.rows_affected();
    }
    Ok(outcome)
}

async fn insert_rollout(
    tx: &mut Transaction<'static, Postgres>,
    rollout: &RolloutRecord,
) -> Result<i64> {
    sqlx::query_scalar(
        "INSERT INTO rollouts (id, release_version, hardware, target, settings, state, current_phase,
            phase_started_at, soak_started_at, pause_reason, rollback_of, created_at, created_by, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING seq",
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
    tx: &mut Transaction<'static, Postgres>,
    id: ExecutionId,
    from: &ExecutionState,
    to: &ExecutionState,
    actor: &str,
    note: Option<&str>,
    at: OffsetDateTime,
) -> Result<bool> {
    let (failure, reason) = to.parts();
    let done = sqlx::query(
        "UPDATE rollout_executions SET state = $1, failure = $2, reason = $3, updated_at = $4
         WHERE seq = $5 AND attempt = $6 AND state = $7",
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

impl PostgresStore {
    /// Executions matching `clause`, whose placeholders are `$1`, `$2`, …
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
        sqlx::query_scalar("SELECT seq FROM rollouts WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("rollout {id}")))
    }
}

#[allow(clippy::too_many_arguments)]
#[async_trait]
impl RolloutStore for PostgresStore {
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
                // A new row: nobody else can see it, let alone lock it,
                // before this transaction commits.
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
        let row = sqlx::query("SELECT * FROM rollouts WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(rollout_from_row).transpose()
    }

    async fn list_rollouts(&self, states: &[RolloutState]) -> Result<Vec<RolloutRecord>> {
        let mut qb = QueryBuilder::<Postgres>::new("SELECT * FROM rollouts");
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
                let (seq, rollout) = rollout_for_update(tx, &id).await?;
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
             FROM rollout_executions WHERE rollout_seq = $1 GROUP BY phase, state ORDER BY phase, state",
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
                // Conditional on the state it was decided from; the update
                // re-checks it on the newest row version.
                let done = sqlx::query(
                    "UPDATE rollouts SET state = $1, current_phase = $2, soak_started_at = $3, pause_reason = $4,
                        phase_started_at = coalesce($5, phase_started_at), updated_at = $6
                     WHERE id = $7 AND state = $8 AND current_phase = $9",
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
                let (seq, rollout) = rollout_for_update(tx, &id).await?;
                let done = sqlx::query(
                    "UPDATE rollouts SET state = 'aborted', updated_at = $1
                     WHERE seq = $2 AND state IN ('running', 'paused')",
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
                // FOR UPDATE: a device's transition committed meanwhile is
                // what on_abort decides from (see the module documentation).
                let sql = format!(
                    "SELECT seq, attempt, state, failure, reason FROM rollout_executions
                     WHERE rollout_seq = $1 AND state IN {} ORDER BY seq FOR UPDATE",
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
                // The rollout's row lock makes count-then-release one step
                // across replicas: the cap is never exceeded.
                let (seq, rollout) = rollout_for_update(tx, &id).await?;
                if rollout.state != RolloutState::Running {
                    return Ok(0);
                }
                let mut room = u64::from(limit);
                if let Some(cap) = cap_total {
                    let released: i64 = sqlx::query_scalar(
                        "SELECT count(*) FROM rollout_executions WHERE rollout_seq = $1 AND released_at IS NOT NULL",
                    )
                    .bind(seq)
                    .fetch_one(&mut **tx)
                    .await?;
                    room = room.min(cap.saturating_sub(u64_of(released, "count")?));
                }
                if room == 0 {
                    return Ok(0);
                }
                // The outer conditions repeat the inner ones so that a row
                // changed meanwhile (cancelled) is re-checked and left alone.
                let done = sqlx::query(
                    "UPDATE rollout_executions SET released_at = $1 WHERE seq IN (
                        SELECT e.seq FROM rollout_executions e JOIN devices d ON d.id = e.device_id
                        WHERE e.rollout_seq = $2 AND e.state = 'queued' AND e.released_at IS NULL
                          AND e.phase <= $3 AND d.status = 'active'
                        ORDER BY e.phase, e.seq LIMIT $4)
                     AND state = 'queued' AND released_at IS NULL",
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
                "e.rollout_seq = $1 AND e.state IN {} AND e.state <> 'queued' AND e.offered_at <= $2 ORDER BY e.seq LIMIT $3",
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
            "e.rollout_seq = $1 AND e.state IN ('failed', 'timed-out') AND e.attempt <= $2 ORDER BY e.seq LIMIT $3",
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
        // Off the chain-head lock (nothing here is audited): the conditional
        // update is the check, its row lock the serialisation.
        let mut tx = self.pool.begin().await?;
        if !move_execution(&mut tx, id, from, to, actor, note, at).await? {
            return Ok(false);
        }
        if let Some(running) = device_version {
            sqlx::query(
                "UPDATE devices SET version = $1, version_key = $2
                 WHERE id = (SELECT device_id FROM rollout_executions WHERE seq = $3)",
            )
            .bind(running)
            .bind(version::sort_key(running))
            .bind(i64_of(id.row)?)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
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
                // A savepoint: a unique violation aborts a PostgreSQL
                // transaction, and this one must go on to commit nothing.
                let mut attempt = (&mut **tx).begin().await?;
                let done = sqlx::query(
                    "UPDATE rollout_executions SET state = 'queued', attempt = $1, failure = NULL, reason = NULL,
                        offered_at = NULL, updated_at = $2
                     WHERE seq = $3 AND attempt = $4 AND state = $5",
                )
                .bind(i64::from(next.attempt))
                .bind(to_millis(at))
                .bind(i64_of(id.row)?)
                .bind(i64::from(id.attempt))
                .bind(from.name())
                .execute(&mut *attempt)
                .await;
                match done {
                    Ok(done) if done.rows_affected() == 1 => attempt.commit().await?,
                    Ok(_) => return Ok(None),
                    // The device is in another rollout's unfinished execution now.
                    Err(e) if is_unique_violation(&e) => {
                        attempt.rollback().await?;
                        return Ok(None);
                    }
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
                let (seq, _) = rollout_for_update(tx, &id).await?;
                let sql = format!(
                    "SELECT e.seq, e.attempt, e.state, d.status FROM rollout_executions e
                     JOIN devices d ON d.id = e.device_id
                     WHERE e.rollout_seq = $1 AND e.state IN {} AND d.status <> 'active'
                     ORDER BY e.seq FOR UPDATE OF e",
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
            .executions_where("e.seq = $1", vec![row])
            .await?
            .into_iter()
            .next())
    }

    async fn open_execution(&self, device: &DeviceId) -> Result<Option<ExecutionRecord>> {
        let sql = format!(
            "SELECT {EXECUTION_COLUMNS} FROM rollout_executions e JOIN rollouts r ON r.seq = e.rollout_seq
             WHERE e.device_id = $1 AND e.state IN {}",
            open_states_sql()
        );
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
        // Off the chain-head lock: the rollout's row is read FOR SHARE (a
        // pause or abort waits for this offer, or this offer sees it), and
        // the execution moves only if still queued in this attempt.
        let mut tx = self.pool.begin().await?;
        let running: Option<String> = sqlx::query_scalar(
            "SELECT r.state FROM rollouts r JOIN rollout_executions e ON e.rollout_seq = r.seq
             WHERE e.seq = $1 FOR SHARE OF r",
        )
        .bind(i64_of(id.row)?)
        .fetch_optional(&mut *tx)
        .await?;
        let mut moved = false;
        if running.as_deref() == Some(RolloutState::Running.as_str()) {
            let done = sqlx::query(
                "UPDATE rollout_executions SET state = 'offered', offered_at = $1, updated_at = $1
                 WHERE seq = $2 AND attempt = $3 AND state = 'queued' AND released_at IS NOT NULL",
            )
            .bind(to_millis(at))
            .bind(i64_of(id.row)?)
            .bind(i64::from(id.attempt))
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 1 {
                record_transition(
                    &mut tx,
                    i64_of(id.row)?,
                    id.attempt,
                    at,
                    Some("queued"),
                    &ExecutionState::Offered,
                    &actor,
                    None,
                )
                .await?;
                moved = true;
            }
        }
        tx.commit().await?;
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
        let mut qb = QueryBuilder::<Postgres>::new(format!(
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
        let rows = sqlx::query(
            "SELECT * FROM execution_transitions WHERE execution_seq = $1 ORDER BY seq",
        )
        .bind(row)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(transition_from_row).collect()
    }
}
