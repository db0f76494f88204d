//! Policy as code: `fleetward-policy.toml`.
//!
//! One file says what a build may ship: the vulnerability severity that
//! fails it, how old the advisory data may be, which licences are allowed or
//! denied, and the waivers in force. Every waiver names who owns it, why,
//! and until when; an expired waiver stops counting on its expiry date, and
//! the report says so. Unknown keys are errors, so a misspelt rule is never
//! silently ignored.
//!
//! See [`DEFAULT_FIRMWARE_POLICY`] for the documented default.

use serde::Deserialize;
use time::{Date, OffsetDateTime};

use crate::license::LicenseRules;
use crate::severity::Severity;

/// Why a policy file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("line {line}, column {column}: {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{0}")]
    Invalid(String),
}

/// What a rule does when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Not reported.
    Ignore,
    /// Reported, does not fail.
    Warn,
    /// Fails the scan (exit 1) and the release gate.
    Fail,
}

/// Which Cargo sources count as crates.io for RustSec advisories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CargoSources {
    /// Only `registry+https://github.com/rust-lang/crates.io-index`, as
    /// cargo-audit does.
    CratesIoGit,
    /// Also the sparse protocol (`sparse+https://index.crates.io/`): the same
    /// registry, which cargo-audit 0.22 does not recognise.
    CratesIo,
}

/// The loaded policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Vulnerabilities at or above this severity fail.
    pub fail_on: Severity,
    /// What a vulnerability without any severity does.
    pub unknown_severity: Action,
    /// What RustSec informational advisories (unmaintained, unsound, notice) do.
    pub informational: Action,
    /// Advisories limited to other operating systems are left out when set.
    pub target_os: Vec<String>,
    pub cargo_sources: CargoSources,
    /// Maximum age of the advisory data, in days.
    pub max_advisory_age_days: Option<u32>,
    pub licenses: LicenseRules,
    /// Licence not allowed (denied, or absent from a non-empty allow-list).
    pub license_denied: Action,
    /// NOASSERTION, NONE, missing, `LicenseRef-`.
    pub license_unknown: Action,
    /// An expression that does not parse.
    pub license_invalid: Action,
    /// A component with neither purl nor CPE.
    pub unidentifiable: Action,
    /// A version its ecosystem cannot order, so ranges cannot be checked.
    pub unreadable_version: Action,
    pub waivers: Vec<Waiver>,
}

/// An accepted risk, time-limited and owned.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Waiver {
    /// An advisory id or alias (`RUSTSEC-…`, `CVE-…`, `GHSA-…`), or
    /// `license:<component name>`, or a rule name (`advisories.max-age`).
    pub id: String,
    /// Limits the waiver to components whose name or purl contains this.
    pub component: Option<String>,
    pub reason: String,
    pub owner: String,
    pub expires: Date,
}

impl Waiver {
    pub fn expired(&self, now: OffsetDateTime) -> bool {
        now.date() > self.expires
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    vulnerabilities: VulnSection,
    #[serde(default)]
    advisories: AdvisorySection,
    #[serde(default)]
    licenses: LicenseSection,
    #[serde(default)]
    components: ComponentSection,
    #[serde(default)]
    waivers: Vec<WaiverFile>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct VulnSection {
    fail_on: Option<String>,
    unknown_severity: Option<Action>,
    informational: Option<Action>,
    #[serde(default)]
    target_os: Vec<String>,
    cargo_sources: Option<CargoSources>,
    unreadable_version: Option<Action>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AdvisorySection {
    max_age_days: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LicenseSection {
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    deny: Vec<String>,
    denied: Option<Action>,
    unknown: Option<Action>,
    invalid: Option<Action>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ComponentSection {
    unidentifiable: Option<Action>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WaiverFile {
    id: Option<String>,
    component: Option<String>,
    reason: Option<String>,
    owner: Option<String>,
    expires: Option<toml::Value>,
}

/// The default policy for device firmware, used when no policy file is
/// given. Its licence allow-list keeps permissive, weak-copyleft and GPL-2.0
/// licences, and denies GPL-3.0, LGPL-3.0 and AGPL-3.0: a locked-down device
/// image (secure boot, signed updates) cannot meet GPLv3 section 6's duty to
/// hand over "Installation Information" (the keys or method to install a
/// modified version), LGPLv3 carries that duty for the library, and AGPL
/// adds source offers for network use.
pub const DEFAULT_FIRMWARE_POLICY: &str = r#"# fleetward default policy for device firmware.
[vulnerabilities]
fail_on = "medium"          # fail on medium, high and critical
unknown_severity = "fail"   # a vulnerability without a rating is not assumed harmless
informational = "warn"      # RustSec unmaintained / unsound / notice
cargo_sources = "crates-io-git"

[advisories]
max_age_days = 7

[licenses]
allow = [
  "MIT", "MIT-0", "Apache-2.0", "BSD-2-Clause", "BSD-3-Clause", "ISC", "Zlib", "0BSD",
  "Unlicense", "CC0-1.0", "BSL-1.0", "Unicode-3.0", "Unicode-DFS-2016", "MPL-2.0",
  "LGPL-2.1-only", "LGPL-2.1-or-later", "GPL-2.0-only", "GPL-2.0-or-later", "OpenSSL",
  "curl", "X11", "BSD-2-Clause-Patent",
  "GPL-2.0-only WITH Linux-syscall-note", "GPL-2.0-or-later WITH Linux-syscall-note",
  "GPL-3.0-only WITH GCC-exception-3.1", "GPL-3.0-or-later WITH GCC-exception-3.1",
  "GPL-2.0-or-later WITH GCC-exception-2.0", "GPL-2.0-or-later WITH Classpath-exception-2.0",
  "Apache-2.0 WITH LLVM-exception",
]
# Installation-information obligations (GPLv3 sec. 6) cannot be met by a locked device.
deny = [
  "GPL-3.0-only", "GPL-3.0-or-later", "LGPL-3.0-only", "LGPL-3.0-or-later",
  "AGPL-3.0-only", "AGPL-3.0-or-later", "GPL-3.0", "LGPL-3.0", "AGPL-3.0",
]
denied = "fail"
unknown = "warn"            # NOASSERTION, LicenseRef-…: reported for review
invalid = "fail"

[components]
unidentifiable = "warn"
"#;

fn syntax(text: &str, e: &toml::de::Error) -> PolicyError {
    let (line, column) = e
        .span()
        .map(|s| {
            let before = &text[..s.start.min(text.len())];
            (
                before.matches('\n').count() + 1,
                before.rsplit('\n').next().map_or(0, str::len) + 1,
            )
        })
        .unwrap_or((0, 0));
    PolicyError::Syntax {
        line,
        column,
        message: e.message().to_owned(),
    }
}

impl Policy {
    pub fn default_firmware() -> Policy {
        // The constant is tested to parse; fall back to the permissive
        // defaults rather than panic if that ever broke.
        Policy::parse(DEFAULT_FIRMWARE_POLICY).unwrap_or_else(|_| Policy::from_file(empty()))
    }

    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        let file: File = toml::from_str(text).map_err(|e| syntax(text, &e))?;
        let mut waivers = Vec::new();
        for (k, w) in file.waivers.iter().enumerate() {
            let field = |v: &Option<String>, name: &str| -> Result<String, PolicyError> {
                v.as_deref()
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        PolicyError::Invalid(format!("waivers[{k}]: {name} is required"))
                    })
            };
            let id = field(&w.id, "id")?;
            let reason = field(&w.reason, "reason")?;
            let owner = field(&w.owner, "owner")?;
            let expires = match &w.expires {
                Some(toml::Value::Datetime(d)) => d.to_string(),
                Some(toml::Value::String(s)) => s.clone(),
                _ => {
                    return Err(PolicyError::Invalid(format!(
                        "waivers[{k}] ({id}): expires is required (a date, 2027-01-31)"
                    )));
                }
            };
            let format = time::macros::format_description!("[year]-[month]-[day]");
            let expires =
                Date::parse(expires.get(..10).unwrap_or(&expires), format).map_err(|_| {
                    PolicyError::Invalid(format!(
                        "waivers[{k}] ({id}): expires {expires:?} is not a date (2027-01-31)"
                    ))
                })?;
            waivers.push(Waiver {
                id,
                component: w.component.clone(),
                reason,
                owner,
                expires,
            });
        }
        let fail_on = match file.vulnerabilities.fail_on.as_deref() {
            None => Severity::Medium,
            Some(s) => Severity::parse(s).ok_or_else(|| {
                PolicyError::Invalid(format!(
                    "vulnerabilities.fail_on: {s:?} is not low, medium, high or critical"
                ))
            })?,
        };
        let mut policy = Policy::from_file(File {
            waivers: Vec::new(),
            ..file
        });
        policy.fail_on = fail_on;
        policy.waivers = waivers;
        Ok(policy)
    }

    fn from_file(file: File) -> Policy {
        let v = file.vulnerabilities;
        let l = file.licenses;
        Policy {
            fail_on: Severity::Medium,
            unknown_severity: v.unknown_severity.unwrap_or(Action::Fail),
            informational: v.informational.unwrap_or(Action::Warn),
            target_os: v.target_os,
            cargo_sources: v.cargo_sources.unwrap_or(CargoSources::CratesIoGit),
            max_advisory_age_days: file.advisories.max_age_days,
            licenses: LicenseRules {
                allow: l.allow,
                deny: l.deny,
            },
            license_denied: l.denied.unwrap_or(Action::Fail),
            license_unknown: l.unknown.unwrap_or(Action::Warn),
            license_invalid: l.invalid.unwrap_or(Action::Fail),
            unidentifiable: file.components.unidentifiable.unwrap_or(Action::Warn),
            unreadable_version: v.unreadable_version.unwrap_or(Action::Warn),
            waivers: Vec::new(),
        }
    }
}

fn empty() -> File {
    File {
        vulnerabilities: VulnSection::default(),
        advisories: AdvisorySection::default(),
        licenses: LicenseSection::default(),
        components: ComponentSection::default(),
        waivers: Vec::new(),
    }
}
