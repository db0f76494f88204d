//! TUF 1.0 metadata for fleetward's image repository and director.
//!
//! Devices trust software only through metadata in the format of The Update
//! Framework (TUF 1.0): `root` names the keys of every role, `targets` (signed
//! offline by the release managers) lists the images with their lengths and
//! hashes, `snapshot` pins the targets version and `timestamp` pins the
//! snapshot, both signed online by the server. The Uptane-style director signs
//! per-device `targets` metadata naming the one image a device must install.
//!
//! This crate builds and checks that metadata and nothing else: it does no
//! I/O, never reads the clock (every check takes `now`), and holds signing
//! keys only as values its callers pass in. The server, the CLI and the tests
//! all go through it, so there is one definition of "valid".
//!
//! Why not the `tough` crate: see ARCHITECTURE.md ("TUF").

mod cjson;
mod delegation;
mod keys;
mod meta;
mod verify;

pub use cjson::canonical;
pub use delegation::{DelegatedRole, Delegations, path_matches, valid_role_name};
pub use keys::{PublicKey, SigningKey, key_id};
pub use meta::{
    Expiry, MetaFile, ROLE_ROOT, ROLE_SNAPSHOT, ROLE_TARGETS, ROLE_TIMESTAMP, Role, RoleKeys, Root,
    SPEC_VERSION, Signature, Signed, Snapshot, TargetFile, Targets, Timestamp,
};
pub use verify::{
    DirectorImage, RawSigned, check_delegated_targets, check_initial_root, check_not_expired,
    check_root_successor, check_root_update, check_targets, director_targets, parse_signed,
    snapshot_for, snapshot_with, timestamp_for, timestamp_refresh_due, valid_target_name,
    verify_role,
};

/// Everything that can be wrong with metadata, in words a release manager
/// can act on.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum TufError {
    #[error("malformed metadata: {0}")]
    Malformed(String),
    #[error("expected {expected} metadata, got {found:?}")]
    WrongType {
        expected: &'static str,
        found: String,
    },
    #[error("{role} metadata has {valid} valid signature(s) from its keys; it needs {threshold}")]
    BelowThreshold {
        role: String,
        valid: usize,
        threshold: u64,
    },
    #[error("{role} metadata expired at {expires}")]
    Expired { role: String, expires: String },
    #[error("{role} metadata version {got} does not follow version {current}")]
    VersionNotIncreasing {
        role: String,
        current: u64,
        got: u64,
    },
    #[error("inconsistent root: {0}")]
    InconsistentRoot(String),
    #[error("key error: {0}")]
    Key(String),
    #[error("canonical JSON: {0}")]
    Canonical(String),
}

pub type Result<T, E = TufError> = std::result::Result<T, E>;
