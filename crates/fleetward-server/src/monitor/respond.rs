//! Follows the security-event log and acts on it: each alert sink and the
//! automatic-quarantine responder is a consumer with its own cursor in the
//! store, so a restart neither repeats nor skips events, and a sink that is
//! down delays its own alerts (with backoff) without losing them or holding
//! up the others.

use std::sync::Arc;
use std::time::Duration;

use fleetward_core::DeviceId;
use fleetward_events::Severity;
use fleetward_store::{EventFilter, Store};
use fleetward_wire::events::SecurityEvent;
use time::OffsetDateTime;
use tokio::sync::watch;

use super::alerts::{SyslogSender, SyslogSink, WebhookSink, deliver_webhook};
use super::{AutoQuarantine, MonitorConfig, QuarantineRequest, quarantine};
use crate::identity::IdentityState;

/// How often consumers look for new events.
pub const POLL: Duration = Duration::from_secs(1);
const PAGE: u32 = 200;
const MAX_BACKOFF: Duration = Duration::from_secs(300);

enum Action {
    Webhook(WebhookSink),
    Syslog(SyslogSink, SyslogSender),
    Quarantine(AutoQuarantine),
}

struct Consumer {
    name: String,
    filter: EventFilter,
    action: Action,
    backoff: Duration,
    retry_at: Option<tokio::time::Instant>,
}

fn consumers(config: &MonitorConfig) -> Vec<Consumer> {
    let by_severity = |min: Severity| EventFilter {
        min_severity: Some(min),
        ..EventFilter::default()
    };
    let mut consumers = Vec::new();
    for (n, sink) in config.webhooks.iter().enumerate() {
        consumers.push(Consumer {
            // The index and host name the cursor, so editing one sink's
            // URL path or secret keeps its place.
            name: format!("webhook:{n}:{}", sink.url.host_str().unwrap_or("")),
            filter: by_severity(sink.min_severity),
            action: Action::Webhook(sink.clone()),
            backoff: Duration::ZERO,
            retry_at: None,
        });
    }
    if let Some(sink) = &config.syslog {
        consumers.push(Consumer {
            name: format!("syslog:{}", sink.address),
            filter: by_severity(sink.min_severity),
            action: Action::Syslog(sink.clone(), SyslogSender::default()),
            backoff: Duration::ZERO,
            retry_at: None,
        });
    }
    if !config.quarantine.kinds.is_empty() {
        consumers.push(Consumer {
            name: "quarantine".to_owned(),
            filter: EventFilter {
                kinds: config.quarantine.kinds.clone(),
                ..EventFilter::default()
            },
            action: Action::Quarantine(config.quarantine.clone()),
            backoff: Duration::ZERO,
            retry_at: None,
        });
    }
    consumers
}

/// Gives every consumer that has never run a cursor at the log's head.
pub async fn init_cursors(store: &dyn Store, config: &MonitorConfig) -> anyhow::Result<()> {
    let (head, _) = store.event_head().await?;
    for consumer in consumers(config) {
        if store.monitor_cursor(&consumer.name).await?.is_none() {
            store.set_monitor_cursor(&consumer.name, head).await?;
        }
    }
    Ok(())
}

/// Runs every consumer until shutdown.
pub async fn respond_task(
    store: Arc<dyn Store>,
    identity: Arc<IdentityState>,
    config: MonitorConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut consumers = consumers(&config);
    if consumers.is_empty() {
        return;
    }
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "alerts are off: no HTTP client");
            return;
        }
    };
    let mut ticks = tokio::time::interval(POLL);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        for consumer in &mut consumers {
            if consumer
                .retry_at
                .is_some_and(|at| tokio::time::Instant::now() < at)
            {
                continue;
            }
            match run_once(&*store, &identity, &client, consumer).await {
                Ok(()) => {
                    consumer.backoff = Duration::ZERO;
                    consumer.retry_at = None;
                }
                Err(error) => {
                    consumer.backoff = (consumer.backoff * 2).clamp(POLL, MAX_BACKOFF);
                    consumer.retry_at = Some(tokio::time::Instant::now() + consumer.backoff);
                    tracing::warn!(
                        consumer = %consumer.name,
                        retry_in_secs = consumer.backoff.as_secs(),
                        error = %format!("{error:#}"),
                        "security-event consumer failed; will retry the same event"
                    );
                }
            }
        }
    }
}

/// Handles every new event for one consumer, advancing its cursor past each
/// one handled. Stops at the first failure, so nothing is skipped.
async fn run_once(
    store: &dyn Store,
    identity: &IdentityState,
    client: &reqwest::Client,
    consumer: &mut Consumer,
) -> anyhow::Result<()> {
    let (head, _) = store.event_head().await?;
    let Some(mut cursor) = store.monitor_cursor(&consumer.name).await? else {
        // `init_cursors` ran at start; a missing cursor means the store was
        // swapped underneath: start at the present, not with the history.
        store.set_monitor_cursor(&consumer.name, head).await?;
        return Ok(());
    };
    loop {
        let entries = store
            .list_events(&consumer.filter, Some(cursor), PAGE)
            .await?;
        for entry in &entries {
            let event = crate::events::to_wire(entry);
            handle(store, identity, client, &mut consumer.action, &event).await?;
            cursor = entry.seq;
            store.set_monitor_cursor(&consumer.name, cursor).await?;
        }
        if entries.len() < PAGE as usize {
            break;
        }
    }
    // Events the filter skipped need no second look.
    if head > cursor {
        store.set_monitor_cursor(&consumer.name, head).await?;
    }
    Ok(())
}

async fn handle(
    store: &dyn Store,
    identity: &IdentityState,
    client: &reqwest::Client,
    action: &mut Action,
    event: &SecurityEvent,
) -> anyhow::Result<()> {
    match action {
        Action::Webhook(sink) => {
            deliver_webhook(
                client,
                sink,
                event,
                OffsetDateTime::now_utc().unix_timestamp(),
            )
            .await
        }
        Action::Syslog(sink, sender) => sender.send(sink, event).await,
        Action::Quarantine(policy) => {
            let Some(device) = event
                .device
                .as_deref()
                .and_then(|d| DeviceId::parse(d).ok())
            else {
                return Ok(());
            };
            let reason = format!("automatic: {} (event {})", event.kind, event.seq);
            let request = QuarantineRequest {
                device: &device,
                reason: &reason,
                certificate: policy.certificate,
                actor: "monitor".to_owned(),
                source: "monitor".to_owned(),
                at: OffsetDateTime::now_utc(),
            };
            match quarantine(store, identity, &request).await {
                Ok(_) => {
                    tracing::warn!(%device, kind = %event.kind, "device quarantined automatically");
                    Ok(())
                }
                // Already quarantined, decommissioned or gone: nothing to do.
                Err(error) if error.status.is_client_error() => Ok(()),
                Err(error) => anyhow::bail!("quarantining {device}: {}", error.message),
            }
        }
    }
}
