//! Issue 8 benchmark: device events ingested over HTTPS.
//!
//! Devices enrolled with their own keys post `POST /device/v1/reports`
//! batches (256 security reports, the wire limit) over mutual TLS with
//! keep-alive, from several connections at once. Each answered batch is
//! durable: one `synchronous = FULL` transaction that extends the hash
//! chain. The baseline, in the same run and process: plain SQLite inserts
//! of the same rows (same columns, indexes and pragmas, the same batch per
//! durable transaction, many rows per statement), with no chain, no TLS,
//! no HTTP and no JSON.
//!
//! Run: `cargo run --release -p fleetward-server --example reports_bench -- [EVENTS] [CONNECTIONS] [DEVICES]`
//! (defaults 1,000,000, 32 and 32). Prints a Markdown table row.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

#[path = "common/plain_sqlite.rs"]
mod plain_sqlite;

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use fleetward_wire::device::{
    DeviceReport, DeviceReportBatch, DeviceSecurityKind, MAX_REPORTS_PER_BATCH,
};

fn batch(n: u64) -> DeviceReportBatch {
    let now = time::OffsetDateTime::now_utc();
    DeviceReportBatch {
        reports: (0..MAX_REPORTS_PER_BATCH as u64)
            .map(|i| DeviceReport::Security {
                device_time: now,
                kind: DeviceSecurityKind::VerificationFailed,
                message: format!(
                    "event {}: image hash mismatch on download of fw-1.4.{}",
                    n + i,
                    i % 7
                ),
            })
            .collect(),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let total: u64 = args.next().map_or(Ok(1_000_000), |a| a.parse())?;
    let connections: u64 = args.next().map_or(Ok(32), |a| a.parse())?;
    let devices: u64 = args.next().map_or(Ok(32), |a| a.parse())?;
    let per_batch = MAX_REPORTS_PER_BATCH as u64;
    let batches = total.div_ceil(per_batch);

    let server = support::TestServer::start_with(|config| {
        // The benchmark measures the log, not the flood limit.
        config.monitor.detection.device_events_per_minute = u32::MAX;
    })
    .await;
    let mut clients = Vec::new();
    for n in 0..devices {
        clients.push(
            server
                .enroll_device(&format!("bench-{n:04}"), "rev2")
                .await
                .client,
        );
    }
    let clients = Arc::new(clients);
    let store = server.store().await;
    let (head_before, _) = store.event_head().await?;

    // Pre-built bodies: the clients' JSON encoding is not what is measured.
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..8u64)
            .map(|k| serde_json::to_vec(&batch(k * per_batch)).unwrap())
            .collect(),
    );
    let next = Arc::new(AtomicU64::new(0));
    let url = format!("{}/device/v1/reports", server.device_base());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..connections {
        let (clients, bodies, next, url) =
            (clients.clone(), bodies.clone(), next.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let client = &clients[(c % devices) as usize];
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= batches {
                    return;
                }
                let answer = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(bodies[(n % 8) as usize].clone())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(answer.status(), 200, "{:?}", answer.text().await);
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    let https_secs = started.elapsed().as_secs_f64();
    let (head_after, _) = store.event_head().await?;
    let stored = head_after - head_before;
    anyhow::ensure!(
        stored >= batches * per_batch,
        "only {stored} of {} events stored",
        batches * per_batch
    );
    let verified = server.get(&server.admin, "/api/v1/events/verify").await;
    anyhow::ensure!(verified.body["ok"] == true, "{:?}", verified.body);
    server.stop().await;

    // Baseline: the same rows into plain SQLite, batch by durable batch.
    let dir = tempfile::tempdir()?;
    let plain = plain_sqlite::open(&dir.path().join("plain.db")).await?;
    let insert = plain_sqlite::insert_statement(per_batch as usize);
    let zero = [0u8; 32];
    let started = Instant::now();
    for b in 0..batches {
        let mut tx = plain.begin().await?;
        let mut query = sqlx::query(&insert);
        for i in 0..per_batch {
            let seq = b * per_batch + i + 1;
            query = query
                .bind(i64::try_from(seq)?)
                .bind("device.verification_failed")
                .bind("high")
                .bind(format!("bench-{:04}", b % devices))
                .bind("127.0.0.1")
                .bind(1_764_000_000_000i64 + i64::try_from(seq)?)
                .bind(1_764_000_000_000i64 + i64::try_from(seq)? - 40)
                .bind(format!(
                    "event {seq}: image hash mismatch on download of fw-1.4.{}",
                    i % 7
                ))
                .bind(r#"{"reported_by":"device","serial":"0123456789abcdef0123456789abcdef"}"#)
                .bind(zero.as_slice())
                .bind(zero.as_slice());
        }
        query.execute(&mut *tx).await?;
        tx.commit().await?;
    }
    let plain_secs = started.elapsed().as_secs_f64();

    let events = (batches * per_batch) as f64;
    println!(
        "| {events} device events, batches of {per_batch}, {connections} mTLS connections, {devices} devices | events/s | baseline (same run) | ratio | goal |"
    );
    println!("|---|---:|---|---:|---|");
    println!(
        "| ingest over HTTPS (durable batches, chain kept, log verified after) | {:.0} | plain SQLite inserts {:.0}/s | {:.2} | ≥ 50,000/s |",
        events / https_secs,
        events / plain_secs,
        plain_secs / https_secs
    );
    Ok(())
}
