//! Exit codes, documented in `--help` and the README.

use std::process::ExitCode;

use crate::client::{ApiFailure, Unreachable};

/// The request was understood and refused (4xx), or a check failed (policy violation).
pub const REFUSED: u8 = 1;
/// Bad usage or local failure: invalid arguments, unreadable files.
pub const ERROR: u8 = 2;
/// The server could not be reached or failed (5xx).
pub const UNAVAILABLE: u8 = 3;

pub const EXIT_CODES_HELP: &str = "Exit codes:\n  0  success\n  1  refused by the server (4xx) or a check failed\n  2  usage or local error\n  3  server unreachable or failing (5xx)";

pub fn code_for(error: &anyhow::Error) -> ExitCode {
    if let Some(failure) = error.downcast_ref::<ApiFailure>() {
        let code = if failure.status.is_server_error() {
            UNAVAILABLE
        } else {
            REFUSED
        };
        return ExitCode::from(code);
    }
    if error.downcast_ref::<Unreachable>().is_some() {
        return ExitCode::from(UNAVAILABLE);
    }
    ExitCode::from(ERROR)
}
