//! fleetward's device agent, as a library: the binary `fleetward-agent`,
//! the integration tests and the fleet simulator ([`sim`]) all drive the
//! same code.
//!
//! The agent's one promise: nothing reaches the boot path unless the image
//! repository (TUF, offline keys) and the director (per-device, online key
//! pinned at enrolment) agree on it, its bytes hashed to what both signed,
//! and it is not older than what the device ran. Checks are pure functions
//! in [`verify`]; this crate adds the I/O around them (bounded network
//! reads, resumable streaming into the inactive slot, persisted
//! anti-rollback state, on-disk report buffer) and no second verifier.

pub mod agent;
pub mod boot;
pub mod config;
pub mod enroll;
pub mod install;
pub mod net;
pub mod power;
pub mod reports;
pub mod sim;
pub mod state;
pub mod telemetry;
pub mod verify;

use std::path::Path;

pub use agent::{Agent, PollOutcome};
pub use config::AgentConfig;
pub use verify::Refusal;

/// The agent's version, reported in telemetry.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Everything that can go wrong in the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("network: {0}")]
    Network(String),
    /// The server sent more than the agent allows (endless data).
    #[error("{0}")]
    TooLarge(String),
    #[error("server answered {status} {code}: {message}")]
    Server {
        status: u16,
        code: String,
        message: String,
    },
    #[error("refused: {0}")]
    Refused(#[from] Refusal),
    #[error("install: {0}")]
    Install(String),
    #[error("state: {0}")]
    State(String),
    #[error("not enrolled; run `fleetward-agent enroll` first")]
    NotEnrolled,
}

impl AgentError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        AgentError::Io {
            context: path.display().to_string(),
            source,
        }
    }

    pub fn io_ctx(context: impl Into<String>, source: std::io::Error) -> Self {
        AgentError::Io {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T, E = AgentError> = std::result::Result<T, E>;
