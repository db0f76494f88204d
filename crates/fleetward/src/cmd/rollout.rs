//! `fleetward rollout …`: ship a published release to the devices a query
//! selects, phase by phase, and watch it.

use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use fleetward_wire::rollout::{
    AbortAnswer, AbortRollout, CreateRollout, Rollout, RolloutCreated, RolloutList,
};

use crate::client::Client;
use crate::output;

// Parsed once per run: the size of the Create variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Start a rollout of a published release.
    Create {
        /// The release's version (it must be published).
        #[arg(long)]
        release: String,
        /// Target query, e.g. 'hw = "rev2" and region = "eu"'.
        #[arg(long)]
        target: String,
        /// Cumulative phase sizes ending at 100%.
        #[arg(long, default_value = "100%")]
        phases: String,
        /// How long each phase is watched after meeting its threshold.
        #[arg(long)]
        soak: Option<String>,
        /// Share of a phase that must succeed before the next one (default 95%).
        #[arg(long)]
        success_threshold: Option<String>,
        /// Pause when more than this share failed (default 5%).
        #[arg(long)]
        max_failures: Option<String>,
        /// Pause when more than this many failed.
        #[arg(long)]
        max_failures_count: Option<u64>,
        /// At most this many offers per time, e.g. 100/min.
        #[arg(long)]
        rate: Option<String>,
        /// Offer only in this window, e.g. "Mon-Fri 02:00-05:00 UTC".
        #[arg(long)]
        window: Option<String>,
        /// An install not finished this long after its offer times out (default 2h).
        #[arg(long)]
        timeout: Option<String>,
        /// Offer the release again this many times after a failure (default 0).
        #[arg(long)]
        retries: Option<u32>,
        /// Also reach devices that enrol, or start to match, later.
        #[arg(long)]
        continuous: bool,
    },
    /// List rollouts.
    List,
    /// Per-phase progress of one rollout.
    Status {
        id: String,
        /// Redraw until the rollout completes, pauses or is aborted.
        #[arg(long)]
        watch: bool,
    },
    /// Stop offering; installs in progress finish.
    Pause { id: String },
    /// Resume a paused rollout.
    Resume { id: String },
    /// Stop for good: cancel devices not yet installing.
    Abort {
        id: String,
        /// Also take devices that got the release back to the previous
        /// published release (anti-rollback permitting).
        #[arg(long)]
        rollback: bool,
    },
}

pub async fn run(
    client: &Client,
    json: bool,
    command: &RolloutCommand,
) -> anyhow::Result<ExitCode> {
    match command {
        RolloutCommand::Create {
            release,
            target,
            phases,
            soak,
            success_threshold,
            max_failures,
            max_failures_count,
            rate,
            window,
            timeout,
            retries,
            continuous,
        } => {
            let body = CreateRollout {
                release: release.clone(),
                target: target.clone(),
                phases: Some(phases.clone()),
                soak: soak.clone(),
                success_threshold: success_threshold.clone(),
                max_failures: max_failures.clone(),
                max_failures_count: *max_failures_count,
                rate: rate.clone(),
                window: window.clone(),
                timeout: timeout.clone(),
                retries: *retries,
                continuous: *continuous,
            };
            let created: RolloutCreated = client.post("/api/v1/rollouts", &body).await?;
            if json {
                output::json(&created)?;
            } else {
                println!(
                    "rollout {} of {} to {} devices ({} left out: in another rollout)",
                    created.rollout.id, created.rollout.release, created.queued, created.busy
                );
                print_status(&created.rollout);
            }
        }
        RolloutCommand::List => {
            let list: RolloutList = client.get("/api/v1/rollouts", &[]).await?;
            if json {
                output::json(&list)?;
            } else {
                let rows: Vec<Vec<String>> = list
                    .items
                    .iter()
                    .map(|r| {
                        vec![
                            r.id.clone(),
                            r.release.clone(),
                            r.state.clone(),
                            format!("{}/{}", r.current_phase + 1, r.phases.len()),
                            format!("{}/{}", r.totals.succeeded, r.totals.total),
                            r.totals.failed.to_string(),
                            r.target.clone(),
                        ]
                    })
                    .collect();
                output::table(
                    &[
                        "ID",
                        "RELEASE",
                        "STATE",
                        "PHASE",
                        "SUCCEEDED",
                        "FAILED",
                        "TARGET",
                    ],
                    &rows,
                );
            }
        }
        RolloutCommand::Status { id, watch } => {
            let path = format!("/api/v1/rollouts/{id}");
            if !*watch || json {
                let rollout: Rollout = client.get(&path, &[]).await?;
                if json {
                    output::json(&rollout)?;
                } else {
                    print_status(&rollout);
                }
            } else {
                watch_status(client, &path).await?;
            }
        }
        RolloutCommand::Pause { id } => {
            let rollout: Rollout = client
                .post(
                    &format!("/api/v1/rollouts/{id}/pause"),
                    &serde_json::json!({}),
                )
                .await?;
            show(json, &rollout)?;
        }
        RolloutCommand::Resume { id } => {
            let rollout: Rollout = client
                .post(
                    &format!("/api/v1/rollouts/{id}/resume"),
                    &serde_json::json!({}),
                )
                .await?;
            show(json, &rollout)?;
        }
        RolloutCommand::Abort { id, rollback } => {
            let answer: AbortAnswer = client
                .post(
                    &format!("/api/v1/rollouts/{id}/abort"),
                    &AbortRollout {
                        rollback: *rollback,
                    },
                )
                .await?;
            if json {
                output::json(&answer)?;
            } else {
                println!(
                    "rollout {} aborted; {} devices cancelled",
                    answer.rollout.id, answer.cancelled
                );
                if let Some(back) = &answer.rollback {
                    println!(
                        "rolling back to {} with rollout {} (devices that run {})",
                        back.release, back.id, answer.rollout.release
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn show(json: bool, rollout: &Rollout) -> anyhow::Result<()> {
    if json {
        output::json(rollout)
    } else {
        print_status(rollout);
        Ok(())
    }
}

fn header(rollout: &Rollout) -> String {
    let mut text = format!(
        "rollout {} of {} ({}), {}: phase {}/{}, {} of {} succeeded, {} failed",
        rollout.id,
        rollout.release,
        rollout.target,
        rollout.state,
        rollout.current_phase + 1,
        rollout.phases.len(),
        rollout.totals.succeeded,
        rollout.totals.total,
        rollout.totals.failed,
    );
    if let Some(reason) = &rollout.pause_reason {
        text.push_str(&format!("\npaused: {reason}"));
    }
    if let Some(of) = &rollout.rollback_of {
        text.push_str(&format!("\nrolls back {of}"));
    }
    text
}

fn phase_line(phase: &fleetward_wire::rollout::PhaseProgress) -> String {
    let c = &phase.counts;
    format!(
        "{:>3} {:>7} {:<7} ok {} failed {} installing {} offered {} queued {} cancelled {}",
        phase.index + 1,
        phase.percent,
        phase.state,
        c.succeeded,
        c.failed,
        c.in_progress,
        c.released,
        c.queued,
        c.cancelled
    )
}

fn style() -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template("[{bar:30}] {pos:>6}/{len:<6} {msg}")
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> ")
}

fn done_of(phase: &fleetward_wire::rollout::PhaseProgress) -> u64 {
    phase.counts.succeeded + phase.counts.failed + phase.counts.cancelled
}

/// One line per phase with a bar of finished executions.
fn print_status(rollout: &Rollout) {
    println!("{}", header(rollout));
    for phase in &rollout.phases {
        // The same bar as `--watch` draws, as plain text (pipes, logs).
        println!(
            "{} {:>6}/{:<6} {}",
            text_bar(done_of(phase), phase.counts.total, 30),
            done_of(phase),
            phase.counts.total,
            phase_line(phase)
        );
    }
}

fn text_bar(done: u64, total: u64, width: u64) -> String {
    // An empty phase is complete.
    let filled = (done.min(total) * width)
        .checked_div(total)
        .unwrap_or(width);
    let filled = usize::try_from(filled).unwrap_or(0);
    let width = usize::try_from(width).unwrap_or(0);
    format!(
        "[{}{}]",
        "=".repeat(filled),
        " ".repeat(width - filled.min(width))
    )
}

/// Live progress bars (indicatif), redrawn every second until the rollout
/// stops moving by itself.
async fn watch_status(client: &Client, path: &str) -> anyhow::Result<()> {
    let mut rollout: Rollout = client.get(path, &[]).await?;
    let bars = indicatif::MultiProgress::new();
    let title = bars.add(indicatif::ProgressBar::new_spinner());
    let phase_bars: Vec<indicatif::ProgressBar> = rollout
        .phases
        .iter()
        .map(|_| bars.add(indicatif::ProgressBar::new(0).with_style(style())))
        .collect();
    loop {
        title.set_message(header(&rollout));
        for (bar, phase) in phase_bars.iter().zip(&rollout.phases) {
            bar.set_length(phase.counts.total);
            bar.set_position(done_of(phase));
            bar.set_message(phase_line(phase));
        }
        if rollout.state != "running" {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        rollout = client.get(path, &[]).await?;
    }
    for bar in &phase_bars {
        bar.abandon();
    }
    title.abandon();
    Ok(())
}
