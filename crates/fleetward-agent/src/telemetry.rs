//! Operating conditions from `/proc` and `/sys`, for telemetry reports.
//! A sensor that is absent is left out, never reported as zero.

use std::path::Path;

use fleetward_wire::device::Conditions;

use crate::AGENT_VERSION;

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// `(total, idle)` jiffies from `/proc/stat`'s first line.
pub fn cpu_jiffies() -> Option<(u64, u64)> {
    let stat = read("/proc/stat")?;
    let line = stat.lines().next()?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let idle = values.get(3)? + values.get(4).copied().unwrap_or(0);
    Some((values.iter().sum(), idle))
}

/// Busy share between two `cpu_jiffies` samples, 0–100.
pub fn cpu_percent(before: (u64, u64), after: (u64, u64)) -> Option<f64> {
    let total = after.0.checked_sub(before.0)?;
    let idle = after.1.checked_sub(before.1)?;
    if total == 0 {
        return None;
    }
    Some(((total.saturating_sub(idle)) as f64 * 100.0 / total as f64).clamp(0.0, 100.0))
}

fn meminfo(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map(|kib| kib * 1024)
}

/// The conditions now; `cpu` is the share measured by the caller.
pub fn conditions(running_version: Option<String>, disk: &Path, cpu: Option<f64>) -> Conditions {
    let uptime_secs = read("/proc/uptime")
        .and_then(|t| t.split_whitespace().next()?.parse::<f64>().ok())
        .map(|s| s as u64);
    let mem = read("/proc/meminfo");
    let total = mem.as_deref().and_then(|m| meminfo(m, "MemTotal:"));
    let available = mem.as_deref().and_then(|m| meminfo(m, "MemAvailable:"));
    let (disk_used, disk_total) = match rustix::fs::statvfs(disk) {
        Ok(s) => {
            let total = s.f_blocks.saturating_mul(s.f_frsize);
            let free = s.f_bfree.saturating_mul(s.f_frsize);
            (Some(total.saturating_sub(free)), Some(total))
        }
        Err(_) => (None, None),
    };
    let temperature = read("/sys/class/thermal/thermal_zone0/temp")
        .and_then(|t| t.trim().parse::<f64>().ok())
        .map(|milli| milli / 1000.0);
    let (rx, tx) = network_bytes();
    Conditions {
        agent_version: AGENT_VERSION.to_owned(),
        running_version,
        uptime_secs,
        cpu_percent: cpu,
        memory_used_bytes: total.zip(available).map(|(t, a)| t.saturating_sub(a)),
        memory_total_bytes: total,
        disk_used_bytes: disk_used,
        disk_total_bytes: disk_total,
        temperature_celsius: temperature,
        network_rx_bytes: rx,
        network_tx_bytes: tx,
    }
}

/// Bytes received and sent on all interfaces but loopback.
fn network_bytes() -> (Option<u64>, Option<u64>) {
    let Some(text) = read("/proc/net/dev") else {
        return (None, None);
    };
    let mut rx = 0u64;
    let mut tx = 0u64;
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        if name.trim() == "lo" {
            continue;
        }
        let fields: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        rx = rx.saturating_add(fields.first().copied().unwrap_or(0));
        tx = tx.saturating_add(fields.get(8).copied().unwrap_or(0));
    }
    (Some(rx), Some(tx))
}

/// The kernel's id of this boot, to notice reboots.
pub fn boot_id() -> Option<String> {
    read("/proc/sys/kernel/random/boot_id").map(|s| s.trim().to_owned())
}
