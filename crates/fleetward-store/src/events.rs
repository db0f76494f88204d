//! The storage side of the security-event log: appending to the hash chain
//! in the same transaction as the change an event describes, listing with
//! filters, checkpoints and retention. The chain itself (hashing, signing,
//! verifying) is `fleetward-events`; stores only keep it.

use async_trait::async_trait;
use fleetward_core::DeviceId;
use fleetward_events::{Checkpoint, Entry, Event, EventKind, Hash, Severity, Tamper, Verifier};

use crate::{AuditEntry, Result};

/// Which events a listing wants; empty fields do not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub kinds: Vec<EventKind>,
    pub min_severity: Option<Severity>,
    pub device: Option<DeviceId>,
    /// Server time, Unix milliseconds, inclusive.
    pub since_ms: Option<i64>,
    /// Server time, Unix milliseconds, exclusive.
    pub until_ms: Option<i64>,
}

#[async_trait]
pub trait EventLog: Send + Sync {
    /// Appends events to the chain, in order, in one transaction.
    async fn append_events(&self, events: &[Event]) -> Result<Vec<Entry>>;
    /// The last entry's sequence number and hash (0 and the genesis hash
    /// for an empty log).
    async fn event_head(&self) -> Result<(u64, Hash)>;
    /// Entries matching `filter` with `seq > after`, in sequence order.
    async fn list_events(
        &self,
        filter: &EventFilter,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Vec<Entry>>;
    async fn event(&self, seq: u64) -> Result<Option<Entry>>;
    /// Hands every entry with `after < seq <= until` (no upper bound without
    /// `until`) to `verifier`, in sequence order, and gives it back, or the
    /// first tamper it found. Stores that can read rows without decoding
    /// them into events do (SQLite); this default reads pages.
    async fn verify_event_range(
        &self,
        mut verifier: Verifier,
        after: Option<u64>,
        until: Option<u64>,
    ) -> Result<std::result::Result<Verifier, Tamper>> {
        let filter = EventFilter::default();
        let mut after = after;
        loop {
            let page = self.list_events(&filter, after, crate::MAX_PAGE).await?;
            let Some(last) = page.last().map(|e| e.seq) else {
                return Ok(Ok(verifier));
            };
            for entry in page.iter().filter(|e| until.is_none_or(|u| e.seq <= u)) {
                if let Err(tamper) = verifier.push(entry) {
                    return Ok(Err(tamper));
                }
            }
            if until.is_some_and(|u| last >= u) {
                return Ok(Ok(verifier));
            }
            after = Some(last);
        }
    }
    async fn add_checkpoint(&self, checkpoint: &Checkpoint) -> Result<()>;
    /// Every stored checkpoint after the anchor, in sequence order.
    async fn checkpoints(&self) -> Result<Vec<Checkpoint>>;
    /// The checkpoint the remaining entries chain from after pruning.
    async fn event_anchor(&self) -> Result<Option<Checkpoint>>;
    /// Deletes the entries with server time before `before_ms`, up to the
    /// newest checkpoint among them (so the rest stays verifiable from it),
    /// which becomes the anchor. Returns how many were deleted.
    async fn prune_events(&self, before_ms: i64, audit: &AuditEntry) -> Result<u64>;
    /// How far the log consumer `name` has handled events (`None`: never ran).
    async fn monitor_cursor(&self, name: &str) -> Result<Option<u64>>;
    /// Records that `name` has handled every event up to `seq`; a cursor
    /// never moves backwards.
    async fn set_monitor_cursor(&self, name: &str, seq: u64) -> Result<()>;
}

/// The security event an audited change (or refusal) also is.
pub(crate) fn operator_event(entry: &AuditEntry) -> Event {
    let device = entry
        .target
        .strip_prefix("device:")
        .and_then(|id| DeviceId::parse(id).ok());
    let mut message = format!("{} {} {}", entry.actor, entry.action, entry.target);
    message.retain(|c| !c.is_control());
    truncate(&mut message, Event::MAX_MESSAGE);
    let mut source = entry.source.clone();
    truncate(&mut source, Event::MAX_SOURCE);
    let mut detail = serde_json::json!({
        "actor": entry.actor,
        "action": entry.action,
        "target": entry.target,
        "detail": entry.detail,
    })
    .to_string();
    if detail.len() > Event::MAX_DETAIL {
        detail = serde_json::json!({ "actor": entry.actor, "action": entry.action, "target": entry.target, "detail": "(too long)" }).to_string();
    }
    let kind = EventKind::for_audit_action(&entry.action);
    Event {
        kind,
        severity: kind.default_severity(),
        device,
        source: Some(source),
        server_time_ms: crate::sqlite::to_millis(entry.at),
        device_time_ms: None,
        message,
        detail,
    }
}

fn truncate(text: &mut String, max: usize) {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
}
