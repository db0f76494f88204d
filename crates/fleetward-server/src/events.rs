//! The server's side of the security-event log: its checkpoint key, the
//! task that signs checkpoints, and conversions to and from the wire form
//! (exports must verify offline exactly as the database does).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use fleetward_core::DeviceId;
use fleetward_events::{Checkpoint, CheckpointSigner, Entry, Event, EventKind, Hash, Severity};
use fleetward_store::Store;
use fleetward_wire::events::{EventCheckpoint, SecurityEvent};
use rand::RngCore as _;
use time::OffsetDateTime;
use tokio::sync::watch;

/// Where the checkpoint key lives, relative to the data dir.
pub const KEY_FILE: &str = "keys/event-checkpoint.key";

/// How often new entries get a signed checkpoint.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(60);

/// Loads the checkpoint key, creating it (mode 0600) if there is none.
pub fn load_or_create_key(data_dir: &Path) -> anyhow::Result<CheckpointSigner> {
    let path = data_dir.join(KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let mut secret = [0u8; 32];
            hex::decode_to_slice(text.trim(), &mut secret)
                .with_context(|| format!("{} is not a 32-byte hex key", path.display()))?;
            Ok(CheckpointSigner::from_bytes(&secret))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut secret = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut secret);
            write_secret(&path, &hex::encode(secret))?;
            Ok(CheckpointSigner::from_bytes(&secret))
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Writes a secret file readable by its owner only, never replacing one.
fn write_secret(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

/// Signs a checkpoint for the head of the log if it moved since the last one.
pub async fn checkpoint_now(
    store: &dyn Store,
    signer: &CheckpointSigner,
    now: OffsetDateTime,
) -> anyhow::Result<Option<Checkpoint>> {
    let (seq, hash) = store.event_head().await?;
    let last = store.checkpoints().await?.last().map(|c| c.seq);
    let anchored = store.event_anchor().await?.map(|a| a.seq);
    if seq == 0 || Some(seq) == last.or(anchored) {
        return Ok(None);
    }
    let checkpoint = signer.sign(seq, hash, millis(now));
    store.add_checkpoint(&checkpoint).await?;
    Ok(Some(checkpoint))
}

/// Signs checkpoints every [`CHECKPOINT_INTERVAL`] until shutdown, then once
/// more, on the one replica holding the [`crate::lease::EVENT_CHECKPOINT`]
/// lease.
pub async fn checkpoint_task(
    store: Arc<dyn Store>,
    signer: Arc<CheckpointSigner>,
    holder: crate::lease::Holder,
    mut shutdown: watch::Receiver<bool>,
) {
    use crate::lease::{EVENT_CHECKPOINT, hold, release};
    // The first checkpoint comes one interval after start, not at once.
    let mut ticks = tokio::time::interval_at(
        tokio::time::Instant::now() + CHECKPOINT_INTERVAL,
        CHECKPOINT_INTERVAL,
    );
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
        let now = OffsetDateTime::now_utc();
        if !hold(&*store, EVENT_CHECKPOINT, &holder, CHECKPOINT_INTERVAL, now).await {
            continue;
        }
        if let Err(error) = checkpoint_now(&*store, &signer, now).await {
            tracing::warn!(error = %format!("{error:#}"), "signing an event checkpoint failed");
        }
    }
    let now = OffsetDateTime::now_utc();
    if hold(&*store, EVENT_CHECKPOINT, &holder, CHECKPOINT_INTERVAL, now).await {
        if let Err(error) = checkpoint_now(&*store, &signer, now).await {
            tracing::warn!(error = %format!("{error:#}"), "signing the final event checkpoint failed");
        }
        release(&*store, EVENT_CHECKPOINT, &holder).await;
    }
}

/// Prunes events older than the retention setting, once an hour, on the one
/// replica holding the [`crate::lease::EVENT_RETENTION`] lease. Pruning
/// stops at the newest signed checkpoint before the cut-off, which becomes
/// the anchor the rest verifies from.
pub async fn retention_task(
    store: Arc<dyn Store>,
    holder: crate::lease::Holder,
    mut shutdown: watch::Receiver<bool>,
) {
    use crate::lease::{EVENT_RETENTION, hold, release};
    let mut ticks = tokio::time::interval_at(
        tokio::time::Instant::now() + RETENTION_INTERVAL,
        RETENTION_INTERVAL,
    );
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
        let now = OffsetDateTime::now_utc();
        if !hold(&*store, EVENT_RETENTION, &holder, RETENTION_INTERVAL, now).await {
            continue;
        }
        if let Err(error) = prune_now(&*store, now).await {
            tracing::warn!(error = %format!("{error:#}"), "pruning security events failed");
        }
    }
    release(&*store, EVENT_RETENTION, &holder).await;
}

/// How often retention runs.
pub const RETENTION_INTERVAL: Duration = Duration::from_secs(3600);

/// Applies the retention setting at `now`; returns how many events went.
pub async fn prune_now(store: &dyn Store, now: OffsetDateTime) -> anyhow::Result<u64> {
    let days = store.settings().await?.event_retention_days;
    let cutoff = now - time::Duration::days(i64::from(days));
    let audit = fleetward_store::AuditEntry {
        at: now,
        actor: "retention".to_owned(),
        action: "events.prune".to_owned(),
        target: "security-events".to_owned(),
        source: "server".to_owned(),
        detail: serde_json::json!({ "retention_days": days }),
    };
    let pruned = store.prune_events(millis(cutoff), &audit).await?;
    if pruned > 0 {
        tracing::info!(pruned, days, "pruned security events past retention");
    }
    Ok(pruned)
}

pub fn millis(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

pub fn to_wire(entry: &Entry) -> SecurityEvent {
    let e = &entry.event;
    SecurityEvent {
        seq: entry.seq,
        kind: e.kind.as_str().to_owned(),
        severity: e.severity.as_str().to_owned(),
        device: e.device.as_ref().map(ToString::to_string),
        source: e.source.clone(),
        server_time: OffsetDateTime::from_unix_timestamp_nanos(
            i128::from(e.server_time_ms) * 1_000_000,
        )
        .unwrap_or(OffsetDateTime::UNIX_EPOCH),
        server_time_ms: e.server_time_ms,
        device_time_ms: e.device_time_ms,
        message: e.message.clone(),
        detail: e.detail.clone(),
        prev_hash: entry.prev_hash.to_hex(),
        hash: entry.hash.to_hex(),
    }
}

/// Reads an exported entry back; anything that does not parse is refused
/// with the entry's number, since an export is untrusted input.
pub fn from_wire(wire: &SecurityEvent) -> anyhow::Result<Entry> {
    let seq = wire.seq;
    let kind = EventKind::parse(&wire.kind)
        .with_context(|| format!("entry {seq}: unknown kind {:?}", wire.kind))?;
    let severity = Severity::parse(&wire.severity)
        .with_context(|| format!("entry {seq}: unknown severity {:?}", wire.severity))?;
    let device = wire
        .device
        .as_deref()
        .map(DeviceId::parse)
        .transpose()
        .with_context(|| format!("entry {seq}: bad device id"))?;
    let hash = |text: &str| {
        Hash::from_hex(text).with_context(|| format!("entry {seq}: bad hash {text:?}"))
    };
    Ok(Entry {
        seq,
        prev_hash: hash(&wire.prev_hash)?,
        hash: hash(&wire.hash)?,
        event: Event {
            kind,
            severity,
            device,
            source: wire.source.clone(),
            server_time_ms: wire.server_time_ms,
            device_time_ms: wire.device_time_ms,
            message: wire.message.clone(),
            detail: wire.detail.clone(),
        },
    })
}

pub fn checkpoint_to_wire(c: &Checkpoint) -> EventCheckpoint {
    EventCheckpoint {
        seq: c.seq,
        hash: c.hash.to_hex(),
        signed_at_ms: c.signed_at_ms,
        signature: hex::encode(c.signature),
    }
}

pub fn checkpoint_from_wire(c: &EventCheckpoint) -> anyhow::Result<Checkpoint> {
    let Some(hash) = Hash::from_hex(&c.hash) else {
        bail!("checkpoint {}: bad hash", c.seq);
    };
    let mut signature = [0u8; 64];
    hex::decode_to_slice(&c.signature, &mut signature)
        .with_context(|| format!("checkpoint {}: bad signature encoding", c.seq))?;
    Ok(Checkpoint {
        seq: c.seq,
        hash,
        signed_at_ms: c.signed_at_ms,
        signature,
    })
}

/// How [`verify_store_in_parts`] may split the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parts {
    /// At most this many parts are checked at once.
    pub max: usize,
    /// No part is shorter: splitting costs a point read per part and a
    /// thread hop, worth it only for long logs.
    pub min_entries: u64,
}

impl Parts {
    /// One part per core, none shorter than 100,000 entries.
    pub fn per_core() -> Parts {
        Parts {
            max: std::thread::available_parallelism().map_or(1, usize::from),
            min_entries: 100_000,
        }
    }
}

/// Verifies the log in a store against `key`.
///
/// A long log is checked in parts, one per core, each from the stored hash
/// of the entry before it, and the parts are then joined (each must end on
/// the entry and hash the next one started from). Reading the rows is what
/// takes the time, not hashing them, and separate readers read side by
/// side. If a part or a seam fails, the log is checked again from the start,
/// in one part, so that the report names the first bad entry exactly as a
/// sequential check would.
pub async fn verify_store(
    store: &dyn Store,
    key: &ed25519_dalek::VerifyingKey,
) -> Result<fleetward_wire::events::EventVerification, fleetward_store::StoreError> {
    verify_store_in_parts(store, key, Parts::per_core()).await
}

/// [`verify_store`] with the splitting chosen by the caller.
pub async fn verify_store_in_parts(
    store: &dyn Store,
    key: &ed25519_dalek::VerifyingKey,
    parts: Parts,
) -> Result<fleetward_wire::events::EventVerification, fleetward_store::StoreError> {
    let checkpoints = store.checkpoints().await?;
    let anchor = store.event_anchor().await?;
    let verifier = match fleetward_events::Verifier::new(&checkpoints, key, anchor.as_ref()) {
        Ok(verifier) => verifier,
        Err(tamper) => return Ok(report(Err(tamper))),
    };
    let after = anchor.as_ref().map(|a| a.seq);
    if let Some(verified) = verify_in_parts(store, verifier.clone(), after, parts).await? {
        return Ok(report(verified.finish()));
    }
    let checked = store.verify_event_range(verifier, after, None).await?;
    Ok(report(checked.and_then(fleetward_events::Verifier::finish)))
}

/// The log checked in parts at once; `None` when it is short,
/// or when any part or seam fails (the caller then checks it in one part).
async fn verify_in_parts(
    store: &dyn Store,
    verifier: fleetward_events::Verifier,
    after: Option<u64>,
    parts: Parts,
) -> Result<Option<fleetward_events::Verifier>, fleetward_store::StoreError> {
    let first = after.unwrap_or(0);
    let (head, _) = store.event_head().await?;
    let entries = head.saturating_sub(first);
    let parts = (parts.max as u64).min(entries / parts.min_entries.max(1));
    if parts < 2 {
        return Ok(None);
    }
    let mut boundaries = Vec::new();
    for n in 1..parts {
        let seq = first + entries * n / parts;
        match store.event(seq).await? {
            Some(entry) if entry.seq == seq => boundaries.push((seq, entry.hash)),
            _ => return Ok(None),
        }
    }
    // Part k checks the entries after boundary k-1 (or the anchor) up to
    // and including boundary k; the last part runs to the end of the log.
    let ends = boundaries.iter().map(|&(seq, _)| Some(seq)).chain([None]);
    let mut from = after;
    let mut checks = Vec::with_capacity(boundaries.len() + 1);
    for (part, to) in verifier.split(&boundaries).into_iter().zip(ends) {
        checks.push(store.verify_event_range(part, from, to));
        from = to;
    }
    let mut checked = Vec::with_capacity(boundaries.len() + 1);
    for part in futures::future::join_all(checks).await {
        match part? {
            Ok(part) => checked.push(part),
            Err(_) => return Ok(None),
        }
    }
    let mut checked = checked.into_iter();
    let Some(first) = checked.next() else {
        return Ok(None);
    };
    Ok(checked.try_fold(first, fleetward_events::Verifier::join))
}

pub fn report(
    result: Result<fleetward_events::Summary, fleetward_events::Tamper>,
) -> fleetward_wire::events::EventVerification {
    use fleetward_wire::events::EventVerification;
    match result {
        Ok(summary) => EventVerification {
            ok: true,
            entries: summary.entries,
            checkpoints: summary.checkpoints,
            unsigned_tail: summary.unsigned_tail,
            bad_seq: None,
            problem: None,
        },
        Err(tamper) => EventVerification {
            ok: false,
            entries: 0,
            checkpoints: 0,
            unsigned_tail: 0,
            bad_seq: Some(tamper.seq),
            problem: Some(tamper.to_string()),
        },
    }
}
