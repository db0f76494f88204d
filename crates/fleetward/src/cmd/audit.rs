//! `fleetward audit list`: who changed what.

use std::process::ExitCode;

use clap::Subcommand;
use fleetward_wire::operator::AuditPage;

use crate::client::Client;
use crate::output;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List audit records, oldest first.
    List {
        /// Only records after this sequence number.
        #[arg(long)]
        after: Option<i64>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

pub async fn run(client: &Client, json: bool, command: &AuditCommand) -> anyhow::Result<ExitCode> {
    let AuditCommand::List { after, limit } = command;
    let mut params = vec![("limit", limit.to_string())];
    if let Some(after) = after {
        params.push(("after", after.to_string()));
    }
    let page: AuditPage = client.get("/api/v1/audit", &params).await?;
    if json {
        output::json(&page)?;
    } else {
        let rows: Vec<Vec<String>> = page
            .items
            .iter()
            .map(|r| {
                vec![
                    r.seq.to_string(),
                    output::time(Some(r.at)),
                    r.actor.clone(),
                    r.action.clone(),
                    r.target.clone(),
                    r.source.clone(),
                ]
            })
            .collect();
        output::table(&["SEQ", "AT", "ACTOR", "ACTION", "TARGET", "SOURCE"], &rows);
        if let Some(next) = page.next_after {
            eprintln!("(more: --after {next})");
        }
    }
    Ok(ExitCode::SUCCESS)
}
