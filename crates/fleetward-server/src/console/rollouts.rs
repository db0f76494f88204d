//! The console's rollout pages: every rollout with its phases as progress
//! bars, failure reasons, progress over time, and pause, resume and abort
//! for roles that may (through the same functions as the API routes).

use axum::extract::{Form, Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use fleetward_core::Permission;
use fleetward_store::{ExecutionFilter, RolloutState};
use fleetward_wire::rollout::{PhaseProgress, Rollout};
use maud::{Markup, html};
use serde::Deserialize;

use super::chart;
use super::pages::{Fragment, fail, when};
use super::{Refresh, Section, Session, page};
use crate::AppState;
use crate::api::rollouts::{abort, execution_to_wire, set_running, to_wire};
use crate::error::ApiError;

fn bar(phase: &PhaseProgress) -> Markup {
    let done = phase.counts.succeeded + phase.counts.failed + phase.counts.cancelled;
    let total = phase.counts.total.max(1);
    html! {
        progress max=(total) value=(done) aria-label=(format!("phase {} progress", phase.index + 1)) {
            (done) " of " (phase.counts.total)
        }
    }
}

fn state_class(state: &str) -> &'static str {
    match state {
        "paused" | "aborted" => "bad",
        "completed" => "good",
        _ => "",
    }
}

fn summary_row(rollout: &Rollout) -> Markup {
    let totals = &rollout.totals;
    html! {
        tr {
            td { a href=(format!("/console/rollouts/{}", rollout.id)) { (rollout.id) } }
            td { (rollout.release) " · " (rollout.hardware) }
            td class="mono" { (rollout.target) }
            td class=(state_class(&rollout.state)) { (rollout.state) }
            td { "phase " (rollout.current_phase + 1) " of " (rollout.phases.len()) }
            td {
                progress max=(totals.total.max(1)) value=(totals.succeeded) aria-label="devices updated" {
                    (totals.succeeded) " of " (totals.total)
                }
                " " (totals.succeeded) "/" (totals.total)
                @if totals.failed > 0 { " · " span class="bad" { (totals.failed) " failed" } }
            }
        }
    }
}

/// `GET /console/rollouts`.
pub async fn list(
    State(state): State<AppState>,
    session: Session,
    Query(fragment): Query<Fragment>,
) -> Response {
    if let Err(refused) = session.require(Permission::RolloutRead) {
        return fail(&session, refused);
    }
    let rollouts = async {
        let mut items = Vec::new();
        for record in state.store.list_rollouts(&[]).await? {
            items.push(to_wire(&state, &record).await?);
        }
        items.reverse();
        Ok::<_, ApiError>(items)
    }
    .await;
    let rollouts = match rollouts {
        Ok(rollouts) => rollouts,
        Err(error) => return fail(&session, error),
    };
    let content = html! {
        h1 { "Rollouts" }
        div class="table-wrap" { table {
            thead { tr {
                th scope="col" { "Rollout" } th scope="col" { "Release" } th scope="col" { "Target" }
                th scope="col" { "State" } th scope="col" { "Phase" } th scope="col" { "Devices" }
            } }
            tbody {
                @for rollout in &rollouts { (summary_row(rollout)) }
                @if rollouts.is_empty() { tr { td colspan="6" class="muted" { "No rollouts yet: " code { "fleetward rollout create" } } } }
            }
        } }
    };
    page(
        &session,
        Section::Rollouts,
        "Rollouts",
        Refresh::Every(5),
        fragment.main(),
        content,
    )
}

/// `GET /console/rollouts/{id}`.
pub async fn show(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(fragment): Query<Fragment>,
) -> Response {
    if let Err(refused) = session.require(Permission::RolloutRead) {
        return fail(&session, refused);
    }
    let content = async {
        let record = state
            .store
            .rollout(&id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("rollout {id} not found")))?;
        let rollout = to_wire(&state, &record).await?;
        let executions = state
            .store
            .list_executions(
                &ExecutionFilter {
                    rollout_id: Some(id.clone()),
                    ..ExecutionFilter::default()
                },
                None,
                fleetward_store::MAX_PAGE,
            )
            .await?;
        let executions: Vec<_> = executions.iter().map(execution_to_wire).collect();
        // Progress over time: devices succeeded, by when they finished.
        let mut finished: Vec<f64> = executions
            .iter()
            .filter(|e| e.state == "succeeded")
            .map(|e| e.updated_at.unix_timestamp() as f64)
            .collect();
        finished.sort_by(f64::total_cmp);
        let start = record.created_at.unix_timestamp() as f64;
        let mut points = vec![(0.0, 0.0)];
        points.extend(
            finished
                .iter()
                .enumerate()
                .map(|(n, at)| ((at - start).max(0.0), (n + 1) as f64)),
        );
        let failures: Vec<_> = executions
            .iter()
            .filter(|e| {
                matches!(
                    e.state.as_str(),
                    "failed" | "timed-out" | "rolled-back"
                )
            })
            .take(50)
            .collect();
        let can_act = session.can(Permission::RolloutWrite);
        let state_now = record.state;
        Ok::<_, ApiError>(html! {
            h1 { "Rollout " (rollout.id) }
            p {
                "Release " strong { (rollout.release) } " for " (rollout.hardware) " · target " code { (rollout.target) }
                " · " span class=(state_class(&rollout.state)) { (rollout.state) }
            }
            @if let Some(reason) = &rollout.pause_reason {
                p class="notice error" role="status" { "Paused: " (reason) }
            }
            @if can_act {
                div class="actions" {
                    @if state_now == RolloutState::Running {
                        form class="inline" method="post" action=(format!("/console/rollouts/{}/pause", rollout.id)) {
                            input type="hidden" name="csrf" value=(session.csrf);
                            button type="submit" { "Pause" }
                        }
                    }
                    @if state_now == RolloutState::Paused {
                        form class="inline" method="post" action=(format!("/console/rollouts/{}/resume", rollout.id)) {
                            input type="hidden" name="csrf" value=(session.csrf);
                            button type="submit" { "Resume" }
                        }
                    }
                    @if matches!(state_now, RolloutState::Running | RolloutState::Paused) {
                        " "
                        form class="inline" method="post" action=(format!("/console/rollouts/{}/abort", rollout.id)) {
                            input type="hidden" name="csrf" value=(session.csrf);
                            label { input type="checkbox" name="rollback" value="1"; " and roll devices back" }
                            " "
                            button class="danger" type="submit" { "Abort" }
                        }
                    }
                }
            }
            h2 { "Phases" }
            div class="table-wrap" { table {
                thead { tr {
                    th scope="col" { "Phase" } th scope="col" { "Size" } th scope="col" { "State" } th scope="col" { "Progress" }
                    th scope="col" { "Succeeded" } th scope="col" { "In progress" } th scope="col" { "Failed" } th scope="col" { "Waiting" }
                } }
                tbody {
                    @for phase in &rollout.phases {
                        tr {
                            td { (phase.index + 1) }
                            td { (phase.percent) }
                            td { (phase.state) }
                            td { (bar(phase)) }
                            td class="good" { (phase.counts.succeeded) }
                            td { (phase.counts.in_progress + phase.counts.released) }
                            td class=(if phase.counts.failed > 0 { "bad" } else { "" }) { (phase.counts.failed) }
                            td { (phase.counts.queued) }
                        }
                    }
                }
            } }
            h2 { "Progress over time" }
            (chart::line("Devices updated, by seconds since the rollout started", "devices", &points))
            h2 { "Failures" }
            div class="table-wrap" { table {
                thead { tr { th scope="col" { "Device" } th scope="col" { "State" } th scope="col" { "Failure" } th scope="col" { "Reason" } th scope="col" { "When" } } }
                tbody {
                    @for e in &failures {
                        tr {
                            td { a href=(format!("/console/devices/{}", e.device_id)) { (e.device_id) } }
                            td class="bad" { (e.state) }
                            td { (e.failure.as_deref().unwrap_or("—")) }
                            td { (e.reason.as_deref().unwrap_or("")) }
                            td class="mono" { (when(e.updated_at)) }
                        }
                    }
                    @if failures.is_empty() { tr { td colspan="5" class="muted" { "No failures." } } }
                }
            } }
        })
    }
    .await;
    match content {
        Ok(content) => page(
            &session,
            Section::Rollouts,
            "Rollout",
            Refresh::Every(5),
            fragment.main(),
            content,
        ),
        Err(error) => fail(&session, error),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct ActionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    rollback: Option<String>,
}

/// `POST /console/rollouts/{id}/{pause|resume|abort}`.
pub async fn act(
    State(state): State<AppState>,
    session: Session,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<ActionForm>,
) -> Response {
    if let Err(refused) = session
        .require(Permission::RolloutWrite)
        .and_then(|()| session.check_csrf(&form.csrf))
    {
        return fail(&session, refused);
    }
    let caller = &session.caller;
    let done = match action.as_str() {
        "pause" => set_running(
            &state,
            caller,
            &id,
            RolloutState::Running,
            RolloutState::Paused,
            "pause",
        )
        .await
        .map(|_| ()),
        "resume" => set_running(
            &state,
            caller,
            &id,
            RolloutState::Paused,
            RolloutState::Running,
            "resume",
        )
        .await
        .map(|_| ()),
        "abort" => abort(&state, caller, &id, form.rollback.is_some())
            .await
            .map(|_| ()),
        _ => Err(ApiError::not_found("no such action")),
    };
    match done {
        Ok(()) => Redirect::to(&format!("/console/rollouts/{id}")).into_response(),
        Err(error) => fail(&session, error),
    }
}
