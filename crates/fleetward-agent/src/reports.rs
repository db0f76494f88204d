//! Reports waiting to be sent, buffered on disk so that nothing is lost
//! while the device is offline or rebooting.
//!
//! One JSON line per report in `reports.jsonl`, oldest first. The buffer
//! is bounded: beyond the limit the oldest reports go (and one error
//! report says how many). Sending posts batches under the server's count
//! and byte limits and drops exactly what the server acknowledged.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use fleetward_wire::device::{
    DeviceReport, DeviceReportBatch, MAX_REPORT_TEXT, MAX_REPORTS_BODY, MAX_REPORTS_PER_BATCH,
    ReportsAck,
};

use crate::net::Net;
use crate::state::write_atomic;
use crate::{AgentError, Result};

pub const REPORTS_FILE: &str = "reports.jsonl";

/// Text as the server accepts it: no control characters, bounded.
pub fn clean_text(text: &str) -> String {
    let mut clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if clean.len() > MAX_REPORT_TEXT {
        let mut end = MAX_REPORT_TEXT;
        while !clean.is_char_boundary(end) {
            end -= 1;
        }
        clean.truncate(end);
    }
    clean
}

#[derive(Debug, Clone)]
pub struct ReportBuffer {
    path: PathBuf,
    max: usize,
}

impl ReportBuffer {
    pub fn new(state_dir: &Path, max: usize) -> Self {
        ReportBuffer {
            path: state_dir.join(REPORTS_FILE),
            max: max.max(1),
        }
    }

    /// The buffered reports, oldest first (unreadable lines are skipped:
    /// a torn last line after a power cut must not block the rest).
    pub fn load(&self) -> Result<Vec<DeviceReport>> {
        // Bytes, not text: a power cut in the middle of an append can leave
        // half of a multi-byte character, which must cost that line only.
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(AgentError::io(&self.path, e)),
        };
        Ok(bytes
            .split(|&b| b == b'\n')
            .filter_map(|line| serde_json::from_slice(line).ok())
            .collect())
    }

    fn store(&self, reports: &[DeviceReport]) -> Result<()> {
        let mut text = Vec::new();
        for report in reports {
            serde_json::to_writer(&mut text, report)
                .map_err(|e| AgentError::State(format!("encoding a report: {e}")))?;
            text.push(b'\n');
        }
        write_atomic(&self.path, &text, 0o600)
    }

    pub fn len(&self) -> Result<usize> {
        Ok(self.load()?.len())
    }

    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Appends a report, dropping the oldest beyond the bound.
    pub fn push(&self, report: DeviceReport) -> Result<()> {
        let mut line = serde_json::to_vec(&report)
            .map_err(|e| AgentError::State(format!("encoding a report: {e}")))?;
        line.push(b'\n');
        let count = self.len()?;
        if count < self.max {
            let mut file = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(&self.path)
                .map_err(|e| AgentError::io(&self.path, e))?;
            // A line cut short by a power loss ends here, so that it does
            // not swallow the next one.
            if file
                .metadata()
                .is_ok_and(|m| m.len() > 0 && !ends_with_newline(&self.path, m.len()))
            {
                line.insert(0, b'\n');
            }
            if let Some(keep) = crate::power::point(line.len()) {
                let _ = file.write_all(&line[..keep]);
                crate::power::cut("an append to the report buffer");
            }
            file.write_all(&line)
                .and_then(|()| {
                    if crate::state::durable() {
                        file.sync_data()
                    } else {
                        Ok(())
                    }
                })
                .map_err(|e| AgentError::io(&self.path, e))?;
            return Ok(());
        }
        let mut reports = self.load()?;
        reports.push(report);
        let excess = reports.len().saturating_sub(self.max);
        reports.drain(..excess);
        self.store(&reports)
    }

    /// Sends everything buffered, in batches. Returns how many were sent.
    pub async fn flush(&self, net: &Net) -> Result<usize> {
        let mut sent = 0;
        loop {
            let reports = self.load()?;
            if reports.is_empty() {
                return Ok(sent);
            }
            let batch = next_batch(&reports);
            let ack: ReportsAck = net
                .post_json("/device/v1/reports", &DeviceReportBatch { reports: batch })
                .await?;
            let accepted = usize::try_from(ack.accepted)
                .unwrap_or(0)
                .min(reports.len());
            if accepted == 0 {
                return Ok(sent);
            }
            // Reports pushed meanwhile are kept: reload and drop the front.
            let mut now = self.load()?;
            now.drain(..accepted.min(now.len()));
            self.store(&now)?;
            sent += accepted;
        }
    }
}

/// The longest prefix under the server's count and byte limits (at least
/// one report: a single report always fits, its texts being bounded).
pub fn next_batch(reports: &[DeviceReport]) -> Vec<DeviceReport> {
    let budget = MAX_REPORTS_BODY * 3 / 4;
    let mut size = 16;
    let mut batch = Vec::new();
    for report in reports.iter().take(MAX_REPORTS_PER_BATCH) {
        let len = serde_json::to_vec(report).map_or(MAX_REPORT_TEXT * 3, |v| v.len()) + 1;
        if !batch.is_empty() && size + len > budget {
            break;
        }
        size += len;
        batch.push(report.clone());
    }
    batch
}

/// Whether the file's last byte (of `len`) is a newline.
fn ends_with_newline(path: &Path, len: u64) -> bool {
    use std::os::unix::fs::FileExt as _;
    let mut last = [0u8; 1];
    std::fs::File::open(path)
        .and_then(|f| f.read_exact_at(&mut last, len - 1))
        .is_ok_and(|()| last[0] == b'\n')
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn error(message: &str) -> DeviceReport {
        DeviceReport::Error {
            device_time: time::OffsetDateTime::UNIX_EPOCH,
            context: "t".into(),
            message: message.into(),
        }
    }

    /// A power cut mid-append leaves a partial line, possibly half of a
    /// multi-byte character: that line is lost, the others and the next
    /// append are not.
    #[test]
    fn a_line_cut_short_costs_only_itself() {
        let dir = tempfile::tempdir().unwrap();
        let buffer = ReportBuffer::new(dir.path(), 10);
        buffer.push(error("first")).unwrap();
        let mut line = serde_json::to_vec(&error("température")).unwrap();
        let cut = line.iter().position(|&b| b >= 0x80).unwrap() + 1;
        line.truncate(cut);
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(REPORTS_FILE))
            .unwrap();
        file.write_all(&line).unwrap();
        drop(file);
        buffer.push(error("after")).unwrap();
        let kept: Vec<String> = buffer
            .load()
            .unwrap()
            .into_iter()
            .map(|r| match r {
                DeviceReport::Error { message, .. } => message,
                _ => String::new(),
            })
            .collect();
        assert_eq!(kept, ["first", "after"]);
    }
}
