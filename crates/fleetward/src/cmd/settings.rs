//! `fleetward settings …`: server-wide settings.

use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use fleetward_wire::operator::Settings;

use crate::client::Client;
use crate::output;

#[derive(Debug, Subcommand)]
pub enum SettingsCommand {
    /// Show the settings.
    Show,
    /// Change settings; what is not named stays.
    Set {
        /// How often devices poll, e.g. 5m.
        #[arg(long, value_parser = humantime::parse_duration)]
        poll_interval: Option<Duration>,
        /// Default lifetime of new operator tokens, e.g. 90d.
        #[arg(long, value_parser = humantime::parse_duration)]
        token_lifetime: Option<Duration>,
        /// How long security events are kept, e.g. 365d (whole days).
        #[arg(long, value_parser = humantime::parse_duration)]
        event_retention: Option<Duration>,
    },
}

pub async fn run(
    client: &Client,
    json: bool,
    command: &SettingsCommand,
) -> anyhow::Result<ExitCode> {
    let mut settings: Settings = client.get("/api/v1/settings", &[]).await?;
    if let SettingsCommand::Set {
        poll_interval,
        token_lifetime,
        event_retention,
    } = command
    {
        if let Some(poll) = poll_interval {
            settings.poll_interval_secs = u32::try_from(poll.as_secs()).unwrap_or(u32::MAX);
        }
        if let Some(lifetime) = token_lifetime {
            settings.default_token_lifetime_secs = lifetime.as_secs();
        }
        if let Some(retention) = event_retention {
            settings.event_retention_days =
                u32::try_from(retention.as_secs() / 86_400).unwrap_or(u32::MAX);
        }
        settings = client.put("/api/v1/settings", &settings).await?;
    }
    if json {
        output::json(&settings)?;
    } else {
        println!(
            "poll interval:          {}",
            humantime::format_duration(Duration::from_secs(settings.poll_interval_secs.into()))
        );
        println!(
            "default token lifetime: {}",
            humantime::format_duration(Duration::from_secs(settings.default_token_lifetime_secs))
        );
        println!(
            "security events kept:   {} days",
            settings.event_retention_days
        );
    }
    Ok(ExitCode::SUCCESS)
}
