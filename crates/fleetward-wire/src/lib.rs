//! The wire format of fleetward's HTTP APIs, in one place.
//!
//! Server, CLI and agent all serialise through these types, so there is one
//! codec per protocol and the OpenAPI documents are generated from the same
//! definitions the code uses. Request types reject unknown fields: a typo in
//! a security setting must be an error, not silently ignored.

pub mod device;
pub mod events;
pub mod identity;
pub mod operator;
pub mod release;
pub mod rollout;
pub mod sca;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct ErrorDetail {
    /// Stable, machine-readable code (e.g. `invalid_query`, `forbidden`).
    pub code: String,
    /// A sentence for people.
    pub message: String,
}

/// Liveness and readiness answers.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct Health {
    pub status: String,
}
