//! Software composition analysis for firmware, as pure functions.
//!
//! A firmware image is mostly other people's code. This crate answers, for
//! the SBOM of one build: which components are known-vulnerable, which
//! licences break the maker's policy, which components cannot even be
//! identified, and whether the build may ship. It reads nothing and never
//! reads the clock: SBOM bytes, advisories (through [`scan::AdvisorySource`]),
//! the policy text and "now" are all parameters, so the CLI, the server's
//! release gate and the tests get the same answer from the same inputs.
//!
//! - [`sbom`]: CycloneDX JSON, SPDX JSON and `Cargo.lock` into components;
//! - [`purl`]: purl and CPE parsing and normalisation;
//! - [`version`]: ordering per ecosystem (semver, PEP 440, dpkg, apk, rpm);
//! - [`advisory`]: OSV and RustSec records, and whether a version is affected;
//! - [`severity`]: CVSS v3/v4 scores;
//! - [`license`]: SPDX expressions against allow/deny lists;
//! - [`policy`]: `fleetward-policy.toml` and the default firmware policy;
//! - [`scan`]: all of it into findings, each naming its rule;
//! - [`report`]: table, JSON, SARIF 2.1.0 and CycloneDX VEX;
//! - [`watch`]: which vulnerabilities of a published release are new.

pub mod advisory;
pub mod license;
pub mod policy;
pub mod purl;
pub mod report;
pub mod sbom;
pub mod scan;
pub mod severity;
pub mod version;
pub mod watch;

pub use policy::{DEFAULT_FIRMWARE_POLICY, Policy};
pub use scan::{AdvisorySource, Report, scan};
