//! Issue 8 benchmark: the security-event log at volume.
//!
//! 1. Append: events into the hash chain through the store, in durable
//!    batches (one `synchronous = FULL` transaction each), as a ratio to
//!    plain SQLite inserts of the same rows into a table with the same
//!    columns and no chain, with the same pragmas and the same 256 rows
//!    per statement, in the same run.
//! 2. Verify: `verify_store` over the whole log (median of 3 rounds) (every hash recomputed,
//!    every checkpoint signature checked), as a ratio to `openssl dgst
//!    -sha256` of a file as large as the database (median of 3), in the same run;
//!    and the same in one part on one core, to show what splitting buys.
//!
//! Run: `cargo run --release -p fleetward-server --example events_bench -- [EVENTS] [BATCH]`
//! (defaults 10,000,000 and 10,000). Prints a Markdown table.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/plain_sqlite.rs"]
mod plain_sqlite;

use std::time::Instant;

use fleetward_core::DeviceId;
use fleetward_events::{Event, EventKind};
use fleetward_store::{EventLog as _, SqliteStore, Store as _};

fn median(mut rounds: Vec<f64>) -> f64 {
    rounds.sort_by(f64::total_cmp);
    rounds[rounds.len() / 2]
}

fn event(n: u64) -> Event {
    let kinds = [
        EventKind::HandshakeRefused,
        EventKind::VerificationFailed,
        EventKind::TelemetryOutlier,
        EventKind::UnexpectedReboot,
    ];
    let kind = kinds[(n % 4) as usize];
    Event {
        kind,
        severity: kind.default_severity(),
        device: DeviceId::parse(&format!("dev-{:07}", n % 100_000)).ok(),
        source: Some(format!(
            "10.{}.{}.{}:443",
            n % 200,
            (n / 200) % 250,
            n % 250
        )),
        server_time_ms: 1_764_000_000_000 + i64::try_from(n).unwrap(),
        device_time_ms: Some(1_764_000_000_000 + i64::try_from(n).unwrap() - 40),
        message: format!(
            "event {n}: image hash mismatch on download of fw-1.4.{}",
            n % 7
        ),
        detail: format!(r#"{{"expected":"{:064x}","attempt":{}}}"#, n, n % 3),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let total: u64 = args.next().map_or(Ok(10_000_000), |a| a.parse())?;
    let batch: u64 = args.next().map_or(Ok(10_000), |a| a.parse())?;
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("events.db");
    let store = SqliteStore::open(&format!("sqlite://{}", db.display())).await?;
    let signer = fleetward_events::CheckpointSigner::from_bytes(&[7u8; 32]);

    // 1a. Into the chain, durable batch by batch, a checkpoint every 100 batches.
    let started = Instant::now();
    let mut n = 0;
    let mut batches = 0u64;
    while n < total {
        let events: Vec<Event> = (n..(n + batch).min(total)).map(event).collect();
        n += events.len() as u64;
        store.append_events(&events).await?;
        batches += 1;
        if batches.is_multiple_of(100) {
            let (seq, hash) = store.event_head().await?;
            store
                .add_checkpoint(&signer.sign(seq, hash, 1_764_000_000_000))
                .await?;
        }
    }
    let (seq, hash) = store.event_head().await?;
    store
        .add_checkpoint(&signer.sign(seq, hash, 1_764_000_000_000))
        .await?;
    let chain_secs = started.elapsed().as_secs_f64();

    // 1b. Plain inserts of the same rows, same pragmas, same batches.
    let plain = plain_sqlite::open(&dir.path().join("plain.db")).await?;
    // Many rows per statement, as the store does: the baseline is the
    // fastest plain way, not a strawman.
    let rows_per_insert = 256u64;
    let statement = |rows: u64| plain_sqlite::insert_statement(rows as usize);
    let full = statement(rows_per_insert);
    let started = Instant::now();
    let zero = [0u8; 32];
    let mut n = 0;
    while n < total {
        let end = (n + batch).min(total);
        let mut tx = plain.begin().await?;
        let mut i = n;
        while i < end {
            let rows = rows_per_insert.min(end - i);
            let partial;
            let sql = if rows == rows_per_insert {
                &full
            } else {
                partial = statement(rows);
                &partial
            };
            let events: Vec<Event> = (i..i + rows).map(event).collect();
            let mut insert = sqlx::query(sql);
            for (k, e) in events.iter().enumerate() {
                insert = insert
                    .bind(i64::try_from(i + k as u64 + 1)?)
                    .bind(e.kind.as_str())
                    .bind(e.severity.as_str())
                    .bind(e.device.as_ref().map(DeviceId::as_str))
                    .bind(e.source.as_deref())
                    .bind(e.server_time_ms)
                    .bind(e.device_time_ms)
                    .bind(e.message.as_str())
                    .bind(e.detail.as_str())
                    .bind(zero.as_slice())
                    .bind(zero.as_slice());
            }
            insert.execute(&mut *tx).await?;
            i += rows;
        }
        tx.commit().await?;
        n = end;
    }
    let plain_secs = started.elapsed().as_secs_f64();
    plain.close().await;

    // 2a. Verify the whole log: three rounds, the median.
    let mut rounds = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let verification =
            fleetward_server::events::verify_store(&store, &signer.verifying_key()).await?;
        rounds.push(started.elapsed().as_secs_f64());
        assert!(verification.ok, "{verification:?}");
        assert_eq!(verification.entries, total);
    }
    let verify_secs = median(rounds);
    // 2a'. The same in one part, on one core: what splitting buys.
    let mut rounds = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let one_part = fleetward_server::events::Parts {
            max: 1,
            min_entries: 1,
        };
        let verification = fleetward_server::events::verify_store_in_parts(
            &store,
            &signer.verifying_key(),
            one_part,
        )
        .await?;
        rounds.push(started.elapsed().as_secs_f64());
        assert!(verification.ok, "{verification:?}");
    }
    let one_part_secs = median(rounds);
    store.close().await;

    // 2b. openssl over a file as large as the database.
    let db_bytes = std::fs::metadata(&db)?.len()
        + std::fs::metadata(dir.path().join("events.db-wal")).map_or(0, |m| m.len());
    let same_size = dir.path().join("same-size.bin");
    {
        use std::io::Write as _;
        let mut file = std::io::BufWriter::new(std::fs::File::create(&same_size)?);
        let block = vec![0x5au8; 1 << 20];
        let mut left = db_bytes;
        while left > 0 {
            let n = left.min(block.len() as u64) as usize;
            file.write_all(&block[..n])?;
            left -= n as u64;
        }
    }
    // Read it once so both sides start from the page cache.
    let _ = std::fs::read(&same_size).map(|b| b.len());
    let mut rounds = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let status = std::process::Command::new("openssl")
            .args(["dgst", "-sha256"])
            .arg(&same_size)
            .stdout(std::process::Stdio::null())
            .status()?;
        anyhow::ensure!(status.success(), "openssl dgst failed");
        rounds.push(started.elapsed().as_secs_f64());
    }
    let openssl_secs = median(rounds);

    let rate = |secs: f64| total as f64 / secs;
    println!(
        "| {total} events, batches of {batch} | events/s | baseline (same run) | ratio | goal |"
    );
    println!("|---|---:|---|---:|---|");
    println!(
        "| append into the chain (durable batches, in process) | {:.0} | plain SQLite inserts {:.0}/s | {:.2} | ≥ 50,000/s over HTTPS |",
        rate(chain_secs),
        rate(plain_secs),
        plain_secs / chain_secs
    );
    println!(
        "| `verify` (chain + checkpoint signatures, from SQLite) | {:.0} ({:.1} s) | `openssl dgst -sha256` of {:.2} GB: {:.1} s | {:.2} | ≥ 0.5 |",
        rate(verify_secs),
        verify_secs,
        db_bytes as f64 / 1e9,
        openssl_secs,
        openssl_secs / verify_secs
    );
    println!(
        "| `verify` in one part (one core) | {:.0} ({:.1} s) | `openssl dgst -sha256`: {:.1} s | {:.2} | |",
        rate(one_part_secs),
        one_part_secs,
        openssl_secs,
        openssl_secs / one_part_secs
    );
    Ok(())
}
