//! One module per subcommand; [`run`] dispatches.

pub mod advisories;
pub mod audit;
pub mod demo;
pub mod device;
pub mod events;
pub mod identity;
pub mod keys;
pub mod migrate;
pub mod monitor_config;
pub mod release;
pub mod rollout;
pub mod scan;
pub mod server;
pub mod settings;
pub mod sim;
pub mod token;

use std::process::ExitCode;

use anyhow::Context as _;
use clap::CommandFactory as _;
use fleetward_wire::operator::WhoAmI;

use crate::client::Client;
use crate::{Cli, Command, output};

/// The commands that need no async runtime, run without one: `fleetward
/// scan` is a CI step run on every build, and starting and stopping the
/// runtime's threads was a measurable share of its time (BENCHMARKS.md).
/// `None` for every other command.
pub fn run_offline(cli: &Cli) -> Option<anyhow::Result<ExitCode>> {
    match &cli.command {
        Command::Scan(args) => Some(scan::run(cli, args)),
        Command::Advisories(command) => Some(advisories::run(cli, command)),
        _ => None,
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Init(args) => server::init(&cli, args).await,
        Command::Scan(args) => scan::run(&cli, args),
        Command::Advisories(command) => advisories::run(&cli, command),
        Command::Server(args) => server::serve(&cli, args).await,
        Command::Demo(args) => demo::run(&cli, args).await,
        Command::Sim(args) => sim::run(api_client(&cli).ok(), args).await,
        Command::Device(command) => device::run(&api_client(&cli)?, cli.json, command).await,
        Command::Keys(command) => keys::run(api_client(&cli).ok(), cli.json, command).await,
        Command::Release(command) => release::run(&api_client(&cli)?, cli.json, command).await,
        Command::Rollout(command) => rollout::run(&api_client(&cli)?, cli.json, command).await,
        Command::Token(command) => token::run(&api_client(&cli)?, cli.json, command).await,
        Command::EnrollToken(command) => {
            identity::run_enroll_token(&api_client(&cli)?, cli.json, command).await
        }
        Command::Audit(command) => audit::run(&api_client(&cli)?, cli.json, command).await,
        Command::Events(command) => events::run(&cli, command).await,
        Command::Migrate(args) => migrate::run(&cli, args).await,
        Command::Settings(command) => settings::run(&api_client(&cli)?, cli.json, command).await,
        Command::Whoami => {
            let me: WhoAmI = api_client(&cli)?.get("/api/v1/whoami", &[]).await?;
            if cli.json {
                output::json(&me)?;
            } else {
                println!(
                    "token {} ({}), role {}, expires {}",
                    me.token_id,
                    me.name,
                    me.role,
                    output::time(me.expires_at)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { shell } => {
            clap_complete::generate(
                *shell,
                &mut Cli::command(),
                "fleetward",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The operator API client: `--server`, else the local server's
/// `server.json`, else the default address.
pub fn api_client(cli: &Cli) -> anyhow::Result<Client> {
    let base = match &cli.server {
        Some(server) => server.clone(),
        None => match fleetward_server::read_server_json(&cli.data_dir()) {
            Ok(addrs) => format!("http://{}", addrs.operator),
            Err(_) => "http://127.0.0.1:8080".to_owned(),
        },
    };
    let token = cli
        .token
        .clone()
        .context("no operator token: pass --token or set FLEETWARD_TOKEN (`fleetward init` printed the first one)")?;
    Client::new(&base, Some(token))
}
