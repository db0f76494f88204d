//! The console's pages. Each reads through the same store and domain calls
//! as the matching API route and checks the same permission.

use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use fleetward_core::{DeviceId, DeviceStatus, Permission};
use fleetward_events::{Entry, EventKind, Severity};
use fleetward_store::EventFilter;
use fleetward_wire::events::EventListParams;
use fleetward_wire::identity::QuarantineCertificate;
use maud::{Markup, html};
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::chart::{self, Bar};
use super::{Refresh, Section, Session, error_page, page};
use crate::AppState;
use crate::error::ApiError;

const PAGE: u32 = 50;

pub(super) fn fail(session: &Session, error: impl Into<ApiError>) -> Response {
    error_page(Some(session), &error.into())
}

pub(super) fn when(at: OffsetDateTime) -> String {
    at.replace_nanosecond(0)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| at.to_string())
}

fn when_ms(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map(when)
        .unwrap_or_else(|_| ms.to_string())
}

fn severity_class(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "sev-critical",
        Severity::High => "sev-high",
        Severity::Medium => "sev-medium",
        Severity::Low | Severity::Info => "",
    }
}

/// Whether the page was asked for as a live-refresh fragment.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Fragment {
    fragment: Option<String>,
}

impl Fragment {
    pub(super) fn main(&self) -> bool {
        self.fragment.as_deref() == Some("main")
    }
}

/// The newest `limit` events matching `filter`, newest first.
async fn recent_events(
    state: &AppState,
    filter: &EventFilter,
    limit: u32,
) -> Result<Vec<Entry>, ApiError> {
    let (head, _) = state.store.event_head().await?;
    // Look back far enough that a selective filter still finds some.
    let window = u64::from(limit) * 20;
    let mut entries = state
        .store
        .list_events(
            filter,
            Some(head.saturating_sub(window)),
            fleetward_store::MAX_PAGE,
        )
        .await?;
    entries.reverse();
    entries.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    Ok(entries)
}

fn events_table(entries: &[Entry], with_device: bool) -> Markup {
    html! {
        div class="table-wrap" {
            table {
                thead { tr {
                    th scope="col" { "#" } th scope="col" { "Server time" } th scope="col" { "Kind" }
                    th scope="col" { "Severity" }
                    @if with_device { th scope="col" { "Device" } }
                    th scope="col" { "What" }
                } }
                tbody {
                    @for entry in entries {
                        @let event = &entry.event;
                        tr {
                            td { a href=(format!("/console/events/{}", entry.seq)) { (entry.seq) } }
                            td class="mono" { (when_ms(event.server_time_ms)) }
                            td { (event.kind.as_str()) }
                            td class=(severity_class(event.severity)) { (event.severity.as_str()) }
                            @if with_device {
                                td { @if let Some(device) = &event.device {
                                    a href=(format!("/console/devices/{device}")) { (device) }
                                } }
                            }
                            td { (event.message) }
                        }
                    }
                    @if entries.is_empty() {
                        tr { td colspan="6" class="muted" { "No events." } }
                    }
                }
            }
        }
    }
}

/// `GET /console/`: how the fleet is doing.
pub async fn overview(
    State(state): State<AppState>,
    session: Session,
    Query(fragment): Query<Fragment>,
) -> Response {
    if let Err(refused) = session.require(Permission::FleetRead) {
        return fail(&session, refused);
    }
    match overview_content(&state, &session).await {
        Ok(content) => page(
            &session,
            Section::Overview,
            "Overview",
            Refresh::Every(10),
            fragment.main(),
            content,
        ),
        Err(error) => fail(&session, error),
    }
}

async fn overview_content(state: &AppState, session: &Session) -> Result<Markup, ApiError> {
    let facets = state.store.device_facets(12).await?;
    let settings = state.store.settings().await?;
    let now = state.now();
    // Online: polled within two intervals (one missed poll is not an outage).
    let online_since = now - time::Duration::seconds(i64::from(settings.poll_interval_secs) * 2);
    let online = state.store.count_devices_seen_since(online_since).await?;
    let total: u64 = facets.by_status.iter().map(|(_, n)| n).sum();
    let count_of = |status: DeviceStatus| {
        facets
            .by_status
            .iter()
            .find(|(s, _)| *s == status)
            .map_or(0, |(_, n)| *n)
    };
    let problems = if session.can(Permission::AuditRead) {
        let filter = EventFilter {
            min_severity: Some(Severity::High),
            ..EventFilter::default()
        };
        Some(recent_events(state, &filter, 10).await?)
    } else {
        None
    };
    let versions: Vec<Bar> = facets
        .by_version
        .iter()
        .map(|(version, n)| Bar {
            label: version.clone().unwrap_or_else(|| "(none reported)".into()),
            value: *n,
            alarm: false,
        })
        .collect();
    let hardware: Vec<Bar> = facets
        .by_hardware
        .iter()
        .map(|(hw, n)| Bar {
            label: hw.clone(),
            value: *n,
            alarm: false,
        })
        .collect();
    let statuses: Vec<Bar> = facets
        .by_status
        .iter()
        .map(|(status, n)| Bar {
            label: status.as_str().to_owned(),
            value: *n,
            alarm: *status == DeviceStatus::Quarantined,
        })
        .collect();
    Ok(html! {
        h1 { "Fleet overview" }
        div class="cards" {
            div class="card" { div class="n" { (total) } div class="label" { "devices" } }
            div class="card" { div class="n" { (online) } div class="label" { "online (polled in the last " (settings.poll_interval_secs * 2) " s)" } }
            div class="card" { div class="n" { (count_of(DeviceStatus::Active)) } div class="label" { "active" } }
            div class="card" { div class="n" { (count_of(DeviceStatus::Pending)) } div class="label" { "pending approval" } }
            div class="card" {
                div class=(if count_of(DeviceStatus::Quarantined) > 0 { "n bad" } else { "n" }) { (count_of(DeviceStatus::Quarantined)) }
                div class="label" { a href="/console/devices?q=status%20%3D%20quarantined" { "quarantined" } }
            }
        }
        div class="grid2" {
            section { h2 { "Versions running" } (chart::bars("Devices per running version", &versions)) }
            section { h2 { "Hardware" } (chart::bars("Devices per hardware type", &hardware)) }
            section { h2 { "Status" } (chart::bars("Devices per status", &statuses)) }
        }
        @if let Some(problems) = problems {
            h2 { "Recent high-severity events" }
            (events_table(&problems, true))
        }
        p class="muted" { "Updated " (when(now)) "; this page refreshes by itself." }
    })
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct DeviceSearch {
    q: Option<String>,
    after: Option<String>,
    fragment: Option<String>,
}

/// `GET /console/devices?q=QUERY`: the device list, searched with the
/// target query language.
pub async fn devices(
    State(state): State<AppState>,
    session: Session,
    Query(search): Query<DeviceSearch>,
) -> Response {
    if let Err(refused) = session.require(Permission::FleetRead) {
        return fail(&session, refused);
    }
    let text = search.q.as_deref().map(str::trim).unwrap_or("");
    let query = if text.is_empty() {
        Ok(None)
    } else {
        fleetward_core::query::parse(text).map(Some)
    };
    let form = html! {
        form class="search" method="get" action="/console/devices" role="search" {
            label class="skip" for="q" { "Device query" }
            input id="q" type="search" name="q" value=(text)
                placeholder="e.g. hw = rev2 and region = eu and version < 1.4.0";
            button type="submit" { "Search" }
        }
    };
    let query = match query {
        Ok(query) => query,
        Err(error) => {
            let content = html! {
                h1 { "Devices" } (form)
                p class="notice error" role="alert" { "That query does not parse: " (error.to_string()) }
            };
            let mut response = page(
                &session,
                Section::Devices,
                "Devices",
                Refresh::Static,
                false,
                content,
            );
            *response.status_mut() = StatusCode::BAD_REQUEST;
            return response;
        }
    };
    let after = match search.after.as_deref().map(DeviceId::parse).transpose() {
        Ok(after) => after,
        Err(error) => {
            return fail(
                &session,
                ApiError::bad_request("invalid_cursor", error.to_string()),
            );
        }
    };
    let listed = async {
        let count = state.store.count_devices(query.as_ref()).await?;
        let items = state
            .store
            .list_devices(query.as_ref(), after.as_ref(), PAGE)
            .await?;
        Ok::<_, ApiError>((count, items))
    }
    .await;
    let (count, items) = match listed {
        Ok(listed) => listed,
        Err(error) => return fail(&session, error),
    };
    let next = (items.len() == usize::try_from(PAGE).unwrap_or(0))
        .then(|| items.last().map(|d| d.id.to_string()))
        .flatten();
    let content = html! {
        h1 { "Devices" }
        (form)
        p { (count) " devices match." }
        div class="table-wrap" { table {
            thead { tr {
                th scope="col" { "Device" } th scope="col" { "Hardware" } th scope="col" { "Version" }
                th scope="col" { "Status" } th scope="col" { "Tags" } th scope="col" { "Last seen" }
            } }
            tbody {
                @for device in &items {
                    tr {
                        td { a href=(format!("/console/devices/{}", device.id)) { (device.id) } }
                        td { (device.hardware) }
                        td { (device.version.as_deref().unwrap_or("—")) }
                        td class=(if device.status == DeviceStatus::Quarantined { "bad" } else { "" }) { (device.status.as_str()) }
                        td { @for (key, value) in &device.tags {
                            code { (key.as_str()) @if !value.as_str().is_empty() { "=" (value.as_str()) } } " "
                        } }
                        td class="mono" { (device.last_seen.map(when).unwrap_or_else(|| "never".into())) }
                    }
                }
            }
        } }
        @if let Some(next) = next {
            p { a href=(format!("/console/devices?q={}&after={}", urlencode(text), urlencode(&next))) { "Next page →" } }
        }
    };
    page(
        &session,
        Section::Devices,
        "Devices",
        Refresh::Every(15),
        search.fragment.as_deref() == Some("main"),
        content,
    )
}

pub(super) fn urlencode(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for byte in raw.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `GET /console/devices/{id}`: one device, its identity and its security
/// timeline, and what an operator may do to it.
pub async fn device(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(fragment): Query<Fragment>,
) -> Response {
    if let Err(refused) = session.require(Permission::FleetRead) {
        return fail(&session, refused);
    }
    let content = async {
        let id = DeviceId::parse(&id)
            .map_err(|e| ApiError::bad_request("invalid_device_id", e.to_string()))?;
        let device = state
            .store
            .device(&id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("device {id} not found")))?;
        let certificates = state.store.certificates(&id).await?;
        let timeline_filter = EventFilter {
            kinds: EventKind::ALL
                .iter()
                .copied()
                .filter(|k| *k != EventKind::OperatorAction)
                .collect(),
            device: Some(id.clone()),
            ..EventFilter::default()
        };
        let timeline = recent_events(&state, &timeline_filter, 30).await?;
        let updates: Vec<_> = state
            .store
            .list_executions(
                &fleetward_store::ExecutionFilter {
                    device: Some(id.clone()),
                    ..fleetward_store::ExecutionFilter::default()
                },
                None,
                50,
            )
            .await?
            .iter()
            .map(crate::api::rollouts::execution_to_wire)
            .collect();
        let telemetry = state.store.device_telemetry(&id, 200).await?;
        let mut samples: Vec<(f64, fleetward_wire::device::Conditions)> = telemetry
            .iter()
            .filter_map(|t| {
                serde_json::from_str(&t.conditions)
                    .ok()
                    .map(|c| (t.server_time.unix_timestamp() as f64, c))
            })
            .collect();
        samples.sort_by(|a, b| a.0.total_cmp(&b.0));
        let series = |value: &dyn Fn(&fleetward_wire::device::Conditions) -> Option<f64>| {
            let first = samples.first().map_or(0.0, |(at, _)| *at);
            samples
                .iter()
                .filter_map(|(at, c)| value(c).map(|v| (at - first, v)))
                .collect::<Vec<_>>()
        };
        let cpu = series(&|c| c.cpu_percent);
        let memory = series(&|c| c.memory_used_bytes.map(|m| m as f64 / 1_048_576.0));
        let temperature = series(&|c| c.temperature_celsius);
        let latest = samples.last().map(|(_, c)| c.clone());
        let can_quarantine = session.can(Permission::FleetWrite)
            && matches!(device.status, DeviceStatus::Active | DeviceStatus::Pending);
        Ok::<_, ApiError>(html! {
            h1 { "Device " (device.id) }
            div class="table-wrap" { table {
                tbody {
                    tr { th scope="row" { "Status" } td class=(if device.status == DeviceStatus::Quarantined { "bad" } else { "" }) { (device.status.as_str()) } }
                    tr { th scope="row" { "Hardware" } td { (device.hardware) } }
                    tr { th scope="row" { "Running version" } td { (device.version.as_deref().unwrap_or("not reported")) } }
                    tr { th scope="row" { "Tags" } td { @for (key, value) in &device.tags {
                        code { (key.as_str()) @if !value.as_str().is_empty() { "=" (value.as_str()) } } " "
                    } } }
                    tr { th scope="row" { "Registered" } td class="mono" { (when(device.created_at)) } }
                    tr { th scope="row" { "First seen" } td class="mono" { (device.first_seen.map(when).unwrap_or_else(|| "never".into())) } }
                    tr { th scope="row" { "Last seen" } td class="mono" { (device.last_seen.map(when).unwrap_or_else(|| "never".into())) } }
                }
            } }
            h2 { "Certificates" }
            div class="table-wrap" { table {
                thead { tr { th scope="col" { "Serial" } th scope="col" { "Key" } th scope="col" { "Valid from" } th scope="col" { "Valid until" } th scope="col" { "Revoked" } } }
                tbody {
                    @for cert in &certificates {
                        tr {
                            td class="mono" { (cert.serial) }
                            td { (cert.key_kind) }
                            td class="mono" { (when(cert.not_before)) }
                            td class="mono" { (when(cert.not_after)) }
                            td { @if let Some(at) = cert.revoked_at {
                                span class="bad" { (when(at)) } " " (cert.reason.as_deref().unwrap_or(""))
                            } @else { "—" } }
                        }
                    }
                    @if certificates.is_empty() { tr { td colspan="5" class="muted" { "No certificate issued (registered, not enrolled)." } } }
                }
            } }
            @if can_quarantine {
                h2 { "Quarantine" }
                form method="post" action=(format!("/console/devices/{}/quarantine", device.id)) {
                    input type="hidden" name="csrf" value=(session.csrf);
                    p {
                        label for="reason" { "Reason (kept in the security-event log)" } br;
                        input id="reason" name="reason" required maxlength="512" size="50";
                    }
                    p {
                        label for="certificate" { "Its certificates " }
                        select id="certificate" name="certificate" {
                            option value="keep" { "stay valid (it can still report)" }
                            option value="revoke" { "are revoked now (it is cut off)" }
                        }
                    }
                    button class="danger" type="submit" { "Quarantine this device" }
                }
            }
            h2 { "Update history" }
            div class="table-wrap" { table {
                thead { tr { th scope="col" { "Rollout" } th scope="col" { "Release" } th scope="col" { "State" } th scope="col" { "Reason" } th scope="col" { "Updated" } } }
                tbody {
                    @for e in &updates {
                        tr {
                            td { a href=(format!("/console/rollouts/{}", e.rollout_id)) { (e.rollout_id) } }
                            td { (e.release) }
                            td class=(match e.state.as_str() { "succeeded" => "good", "failed" | "timed-out" | "rolled-back" => "bad", _ => "" }) { (e.state) }
                            td { (e.reason.as_deref().unwrap_or("")) }
                            td class="mono" { (when(e.updated_at)) }
                        }
                    }
                    @if updates.is_empty() { tr { td colspan="5" class="muted" { "No update offered yet." } } }
                }
            } }
            h2 { "Operating conditions" }
            @if let Some(latest) = &latest {
                p {
                    "Agent " (latest.agent_version)
                    @if let Some(uptime) = latest.uptime_secs { " · up " (uptime / 3600) " h" }
                    @if let Some(disk) = latest.disk_used_bytes { " · disk " (disk / 1_048_576) " MiB used" }
                }
                div class="grid2" {
                    (chart::line("CPU load (%) over seconds", "%", &cpu))
                    (chart::line("Memory used (MiB) over seconds", "MiB", &memory))
                    @if !temperature.is_empty() { (chart::line("Temperature (°C) over seconds", "°C", &temperature)) }
                }
            } @else {
                p class="muted" { "The device has not reported telemetry yet." }
            }
            h2 { "Security timeline (newest first)" }
            (events_table(&timeline, false))
        })
    }
    .await;
    match content {
        Ok(content) => page(
            &session,
            Section::Devices,
            "Device",
            Refresh::Static,
            fragment.main(),
            content,
        ),
        Err(error) => fail(&session, error),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct QuarantineForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    certificate: Option<String>,
}

/// `POST /console/devices/{id}/quarantine`.
pub async fn quarantine(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<QuarantineForm>,
) -> Response {
    if let Err(refused) = session
        .require(Permission::FleetWrite)
        .and_then(|()| session.check_csrf(&form.csrf))
    {
        return fail(&session, refused);
    }
    let done = async {
        let id = DeviceId::parse(&id)
            .map_err(|e| ApiError::bad_request("invalid_device_id", e.to_string()))?;
        let reason = crate::api::security::quarantine_reason(&form.reason)?;
        let certificate = match form.certificate.as_deref() {
            None | Some("keep") => QuarantineCertificate::Keep,
            Some("revoke") => QuarantineCertificate::Revoke,
            Some(other) => {
                return Err(ApiError::unprocessable(
                    "invalid_certificate_action",
                    format!("certificate must be keep or revoke, not {other:?}"),
                ));
            }
        };
        crate::monitor::quarantine(
            &*state.store,
            &state.identity,
            &crate::monitor::QuarantineRequest {
                device: &id,
                reason,
                certificate,
                actor: format!(
                    "token:{} ({}) via console",
                    session.caller.token_id, session.caller.name
                ),
                source: session.caller.source.clone(),
                at: state.now(),
            },
        )
        .await?;
        Ok::<_, ApiError>(id)
    }
    .await;
    match done {
        // 303: the browser follows with a GET, so a reload does not re-post.
        Ok(id) => Redirect::to(&format!("/console/devices/{id}")).into_response(),
        Err(error) => fail(&session, error),
    }
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct EventsQuery {
    #[serde(flatten)]
    params: EventListParams,
    verify: Option<String>,
    fragment: Option<String>,
}

/// `GET /console/events`: the security-event log with filters, and the
/// chain's verification on request.
pub async fn events(
    State(state): State<AppState>,
    session: Session,
    Query(mut query): Query<EventsQuery>,
) -> Response {
    if let Err(refused) = session.require(Permission::AuditRead) {
        return fail(&session, refused);
    }
    // The filter form sends every field; an empty one ("any") means no
    // filter, where the API would refuse an empty value.
    for field in [
        &mut query.params.kind,
        &mut query.params.min_severity,
        &mut query.params.device,
        &mut query.params.since,
        &mut query.params.until,
    ] {
        if field.as_deref().is_some_and(|v| v.trim().is_empty()) {
            *field = None;
        }
    }
    let content = async {
        let filter = crate::api::events::filter(&query.params)?;
        let entries = match query.params.after {
            Some(after) => {
                state
                    .store
                    .list_events(&filter, Some(after), PAGE)
                    .await?
            }
            None => recent_events(&state, &filter, PAGE).await?,
        };
        let verification = if query.verify.is_some() {
            Some(
                crate::events::verify_store(&*state.store, &state.event_signer.verifying_key())
                    .await?,
            )
        } else {
            None
        };
        let params = &query.params;
        Ok::<_, ApiError>(html! {
            h1 { "Security events" }
            form class="search" method="get" action="/console/events" {
                label for="kind" { "Kind" }
                select id="kind" name="kind" {
                    option value="" { "any" }
                    @for kind in EventKind::ALL {
                        option value=(kind.as_str()) selected[params.kind.as_deref() == Some(kind.as_str())] { (kind.as_str()) }
                    }
                }
                label for="min_severity" { "At least" }
                select id="min_severity" name="min_severity" {
                    option value="" { "any severity" }
                    @for severity in Severity::ALL {
                        option value=(severity.as_str()) selected[params.min_severity.as_deref() == Some(severity.as_str())] { (severity.as_str()) }
                    }
                }
                label for="device" { "Device" }
                input id="device" name="device" value=(params.device.as_deref().unwrap_or(""));
                button type="submit" { "Filter" }
            }
            form method="get" action="/console/events" {
                input type="hidden" name="verify" value="1";
                button type="submit" { "Verify the hash chain and signed checkpoints now" }
            }
            @if let Some(report) = verification {
                @if report.ok {
                    p class="notice" role="status" { span class="good" { "Chain intact: " } (report.entries) " entries, " (report.checkpoints) " signed checkpoints, " (report.unsigned_tail) " entries after the last checkpoint." }
                } @else {
                    p class="notice error" role="alert" { span class="bad" { "Tampering detected" } " at entry " (report.bad_seq.unwrap_or(0)) ": " (report.problem.as_deref().unwrap_or("")) }
                }
            }
            (events_table(&entries, true))
        })
    }
    .await;
    match content {
        Ok(content) => page(
            &session,
            Section::Events,
            "Security events",
            Refresh::Static,
            query.fragment.as_deref() == Some("main"),
            content,
        ),
        Err(error) => fail(&session, error),
    }
}

/// `GET /console/events/{seq}`: one event with its chain hashes.
pub async fn event(
    State(state): State<AppState>,
    session: Session,
    Path(seq): Path<String>,
) -> Response {
    if let Err(refused) = session.require(Permission::AuditRead) {
        return fail(&session, refused);
    }
    let found = async {
        let seq: u64 = seq
            .parse()
            .map_err(|_| ApiError::bad_request("invalid_seq", "an event number is an integer"))?;
        state
            .store
            .event(seq)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no event {seq}")))
    }
    .await;
    let entry = match found {
        Ok(entry) => entry,
        Err(error) => return fail(&session, error),
    };
    let event = &entry.event;
    let detail = serde_json::from_str::<serde_json::Value>(&event.detail)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| event.detail.clone());
    let content = html! {
        h1 { "Event " (entry.seq) }
        div class="table-wrap" { table { tbody {
            tr { th scope="row" { "Kind" } td { (event.kind.as_str()) } }
            tr { th scope="row" { "Severity" } td class=(severity_class(event.severity)) { (event.severity.as_str()) } }
            tr { th scope="row" { "Server time" } td class="mono" { (when_ms(event.server_time_ms)) } }
            tr { th scope="row" { "Device time" } td class="mono" { (event.device_time_ms.map(when_ms).unwrap_or_else(|| "—".into())) } }
            tr { th scope="row" { "Device" } td { @if let Some(device) = &event.device { a href=(format!("/console/devices/{device}")) { (device) } } @else { "—" } } }
            tr { th scope="row" { "Source" } td class="mono" { (event.source.as_deref().unwrap_or("—")) } }
            tr { th scope="row" { "Message" } td { (event.message) } }
            tr { th scope="row" { "Previous hash" } td class="mono" { (entry.prev_hash.to_hex()) } }
            tr { th scope="row" { "Hash" } td class="mono" { (entry.hash.to_hex()) } }
        } } }
        h2 { "Detail" }
        pre class="mono" { (detail) }
    };
    page(
        &session,
        Section::Events,
        "Event",
        Refresh::Static,
        false,
        content,
    )
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct AuditQuery {
    after: Option<i64>,
}

/// `GET /console/audit`: who changed what, oldest first, in pages.
pub async fn audit(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<AuditQuery>,
) -> Response {
    if let Err(refused) = session.require(Permission::AuditRead) {
        return fail(&session, refused);
    }
    let records = match state.store.list_audit(query.after, PAGE).await {
        Ok(records) => records,
        Err(error) => return fail(&session, error),
    };
    let next = (records.len() == usize::try_from(PAGE).unwrap_or(0))
        .then(|| records.last().map(|r| r.seq))
        .flatten();
    let content = html! {
        h1 { "Audit log" }
        div class="table-wrap" { table {
            thead { tr { th scope="col" { "#" } th scope="col" { "When" } th scope="col" { "Who" } th scope="col" { "Action" } th scope="col" { "Target" } th scope="col" { "From" } } }
            tbody {
                @for record in &records {
                    tr {
                        td { (record.seq) }
                        td class="mono" { (when(record.entry.at)) }
                        td { (record.entry.actor) }
                        td { (record.entry.action) }
                        td { (record.entry.target) }
                        td class="mono" { (record.entry.source) }
                    }
                }
            }
        } }
        @if let Some(next) = next { p { a href=(format!("/console/audit?after={next}")) { "Next page →" } } }
    };
    page(
        &session,
        Section::Audit,
        "Audit log",
        Refresh::Static,
        false,
        content,
    )
}
