//! The console's rollout pages: every rollout with its phases as progress
//! bars, failure reasons, progress over time; starting one from a form, and
//! pause, resume and abort, for roles that may (through the same functions
//! as the API routes, so a form is held to exactly the API's checks).

use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use fleetward_core::{Permission, ReleaseState};
use fleetward_store::{ExecutionFilter, RolloutState};
use fleetward_wire::rollout::{CreateRollout, PhaseProgress, Rollout};
use maud::{Markup, html};
use serde::Deserialize;

use super::chart;
use super::pages::{Fragment, fail, when};
use super::{Refresh, Section, Session, page};
use crate::AppState;
use crate::api::rollouts::{abort, create, execution_to_wire, set_running, to_wire};
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
        @if session.can(Permission::RolloutWrite) {
            p { a class="button" href="/console/rollouts/new" { "Start a rollout" } }
        }
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

/// What the start form carries: the API's `CreateRollout` as text fields
/// (empty means the API's default), and the form token.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct StartForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    release: String,
    #[serde(default)]
    target: String,
    #[serde(default)]
    phases: String,
    #[serde(default)]
    soak: String,
    #[serde(default)]
    success_threshold: String,
    #[serde(default)]
    max_failures: String,
    #[serde(default)]
    timeout: String,
    #[serde(default)]
    retries: String,
    #[serde(default)]
    continuous: Option<String>,
}

/// The form's defaults: the API's, spelled out so people see what they get.
fn start_defaults(release: Option<String>) -> StartForm {
    StartForm {
        release: release.unwrap_or_default(),
        phases: "10%,50%,100%".into(),
        soak: "30m".into(),
        success_threshold: "95%".into(),
        max_failures: "5%".into(),
        timeout: "2h".into(),
        retries: "0".into(),
        ..StartForm::default()
    }
}

fn optional(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

impl StartForm {
    /// The API request this form asks for; a field that is not even the
    /// right kind of value is refused here, the rest by the API's checks.
    fn to_request(&self) -> Result<CreateRollout, ApiError> {
        let retries = match optional(&self.retries) {
            None => None,
            Some(text) => Some(text.parse::<u32>().map_err(|_| {
                ApiError::unprocessable(
                    "invalid_setting",
                    format!("retries must be a whole number from 0 to 10, not {text:?}"),
                )
            })?),
        };
        if self.release.trim().is_empty() {
            return Err(ApiError::unprocessable(
                "invalid_setting",
                "choose a published release",
            ));
        }
        if self.target.trim().is_empty() {
            return Err(ApiError::unprocessable(
                "invalid_query",
                "a target query is required (for every device of the hardware: hw = \"rev2\")",
            ));
        }
        Ok(CreateRollout {
            release: self.release.trim().to_owned(),
            target: self.target.trim().to_owned(),
            phases: optional(&self.phases),
            soak: optional(&self.soak),
            success_threshold: optional(&self.success_threshold),
            max_failures: optional(&self.max_failures),
            max_failures_count: None,
            rate: None,
            window: None,
            timeout: optional(&self.timeout),
            retries,
            continuous: self.continuous.is_some(),
        })
    }
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct NewQuery {
    release: Option<String>,
}

/// `GET /console/rollouts/new[?release=VERSION]`: the start form.
pub async fn new(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<NewQuery>,
) -> Response {
    if let Err(refused) = session.require(Permission::RolloutWrite) {
        return fail(&session, refused);
    }
    start_page(&state, &session, &start_defaults(query.release), None).await
}

/// `POST /console/rollouts`: starts a rollout, or shows the form again
/// with the values as typed and the reason it was refused (nothing stored).
pub async fn start(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<StartForm>,
) -> Response {
    if let Err(refused) = session
        .require(Permission::RolloutWrite)
        .and_then(|()| session.check_csrf(&form.csrf))
    {
        return fail(&session, refused);
    }
    let created = match form.to_request() {
        Ok(request) => create(&state, &session.caller, &request).await,
        Err(error) => Err(error),
    };
    match created {
        Ok(created) => {
            Redirect::to(&format!("/console/rollouts/{}", created.rollout.id)).into_response()
        }
        // A refused setting is the operator's to fix: the form again, with
        // the message. Anything else (the store failing) is an error page.
        Err(error) if error.status == StatusCode::UNPROCESSABLE_ENTITY => {
            let mut page = start_page(&state, &session, &form, Some(error.message.as_str())).await;
            if page.status() == StatusCode::OK {
                *page.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            }
            page
        }
        Err(error) => fail(&session, error),
    }
}

async fn start_page(
    state: &AppState,
    session: &Session,
    form: &StartForm,
    problem: Option<&str>,
) -> Response {
    let releases = match state.store.list_releases().await {
        Ok(releases) => releases,
        Err(error) => return fail(session, error),
    };
    let published: Vec<_> = releases
        .iter()
        .filter(|r| r.state == ReleaseState::Published)
        .collect();
    let field = |id: &'static str, label: &'static str, value: &str, hint: &'static str| {
        html! {
            div class="field" {
                label for=(id) { (label) }
                input id=(id) name=(id) value=(value) aria-describedby=(format!("{id}-hint"));
                small id=(format!("{id}-hint")) class="muted" { (hint) }
            }
        }
    };
    let content = html! {
        h1 { "Start a rollout" }
        @if let Some(problem) = problem {
            p class="notice error" role="alert" id="problem" { "Not started: " (problem) }
        }
        @if published.is_empty() {
            p class="notice" { "There is no published release to roll out yet: " code { "fleetward release publish" } }
        }
        form class="stack" method="post" action="/console/rollouts" {
            input type="hidden" name="csrf" value=(session.csrf);
            div class="field" {
                label for="release" { "Release" }
                select id="release" name="release" required {
                    @for release in &published {
                        option value=(release.version) selected[release.version == form.release] {
                            (release.version) " (" (release.hardware) ")"
                        }
                    }
                }
            }
            div class="field" {
                label for="target" { "Target query" }
                input id="target" name="target" value=(form.target) required
                    placeholder="hw = \"rev2\" and region = \"eu\"" aria-describedby="target-hint";
                small id="target-hint" class="muted" {
                    "The device query language, as in the device search; it must select only the release's hardware."
                }
            }
            (field("phases", "Phases", &form.phases, "Cumulative shares of the target ending at 100%."))
            (field("soak", "Soak", &form.soak, "How long a phase is watched after meeting its threshold."))
            (field("success_threshold", "Success threshold", &form.success_threshold, "Share of a phase that must succeed."))
            (field("max_failures", "Pause above", &form.max_failures, "Failed share of a phase that pauses the rollout by itself."))
            (field("timeout", "Timeout", &form.timeout, "An offer not finished this long after it went out fails."))
            (field("retries", "Retries", &form.retries, "How often a failed device is offered the release again (0 to 10)."))
            div class="field" {
                label {
                    input type="checkbox" name="continuous" value="1" checked[form.continuous.is_some()];
                    " Continuous: also reach devices that enrol or start to match later"
                }
            }
            div { button type="submit" { "Start rollout" } " " a href="/console/rollouts" { "Cancel" } }
        }
    };
    page(
        session,
        Section::Rollouts,
        "Start a rollout",
        Refresh::Static,
        false,
        content,
    )
}
