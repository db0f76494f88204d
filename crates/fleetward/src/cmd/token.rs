//! `fleetward token …`: operator tokens.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Subcommand;
use fleetward_core::Role;
use fleetward_wire::operator::{CreateToken, CreatedToken, TokenInfo, TokenList};

use crate::client::Client;
use crate::output;

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token; its secret is printed once.
    Create {
        /// Who or what uses it.
        #[arg(long)]
        name: String,
        /// admin, release-manager, operator, auditor or viewer.
        #[arg(long)]
        role: Role,
        /// Lifetime, e.g. 30d or 12h (default: the server's, 90 days).
        #[arg(long, value_parser = humantime::parse_duration)]
        expires: Option<Duration>,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token at once.
    Revoke { id: String },
}

pub async fn run(client: &Client, json: bool, command: &TokenCommand) -> anyhow::Result<ExitCode> {
    match command {
        TokenCommand::Create {
            name,
            role,
            expires,
        } => {
            let request = CreateToken {
                name: name.clone(),
                role: *role,
                expires_in_secs: expires.map(|d| d.as_secs()),
            };
            let created: CreatedToken = client.post("/api/v1/tokens", &request).await?;
            if json {
                output::json(&created)?;
            } else {
                println!(
                    "token {} ({}) role {}, expires {}",
                    created.info.id,
                    created.info.name,
                    created.info.role,
                    output::time(created.info.expires_at)
                );
                println!();
                println!("    {}", created.token);
                println!();
                println!("Store it now: it is not shown again.");
            }
        }
        TokenCommand::List => {
            let list: TokenList = client.get("/api/v1/tokens", &[]).await?;
            if json {
                output::json(&list)?;
            } else {
                let rows: Vec<Vec<String>> = list
                    .items
                    .iter()
                    .map(|t| {
                        vec![
                            t.id.clone(),
                            t.name.clone(),
                            t.role.to_string(),
                            output::time(Some(t.created_at)),
                            output::time(t.expires_at),
                            output::time(t.revoked_at),
                        ]
                    })
                    .collect();
                output::table(
                    &["ID", "NAME", "ROLE", "CREATED", "EXPIRES", "REVOKED"],
                    &rows,
                );
            }
        }
        TokenCommand::Revoke { id } => {
            let valid = id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit());
            anyhow::ensure!(
                valid,
                "a token id is 16 hex digits (see `fleetward token list`)"
            );
            let info: TokenInfo = client
                .delete(&format!("/api/v1/tokens/{id}"))
                .await
                .context("revoking")?;
            if json {
                output::json(&info)?;
            } else {
                println!(
                    "token {} revoked at {}",
                    info.id,
                    output::time(info.revoked_at)
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
