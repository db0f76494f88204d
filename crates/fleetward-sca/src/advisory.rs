//! Advisories: the OSV schema and RustSec's Markdown + TOML format, read
//! into one model, and the question "does this advisory affect that
//! version?".
//!
//! RustSec advisories keep their own semantics (semver requirements in
//! `patched` and `unaffected`, as cargo-audit evaluates them) instead of
//! being converted into OSV ranges: the conversion loses how pre-releases
//! match, and cargo-audit's answer is the bar.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::purl::{Purl, pep503};
use crate::version::{Parsed, Scheme, VersionError};

/// Why an advisory file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdvisoryError {
    #[error("line {line}, column {column}: {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{0}")]
    Invalid(String),
}

/// One advisory in the form the index stores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Advisory {
    pub id: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub summary: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withdrawn: Option<String>,
    /// CVSS vectors (`CVSS:3.1/…`, `CVSS:4.0/…`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cvss: Vec<String>,
    /// A qualitative severity from the source when it has no vector
    /// (`database_specific.severity`: "HIGH", "Moderate", …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_severity: Option<String>,
    /// RustSec `informational`: `unmaintained`, `unsound`, `notice`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub informational: Option<String>,
    pub affected: Vec<Affected>,
}

/// What one advisory says about one package.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Affected {
    /// OSV ecosystem (`crates.io`, `PyPI`, `Debian:11`), or `generic` for
    /// records keyed by a bare product name (curl's).
    pub ecosystem: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ranges: Vec<Range>,
    #[serde(default, skip_serializing_if = "VersionList::is_empty")]
    pub versions: VersionList,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rustsec: Option<RustSecVersions>,
    /// Operating systems the advisory is limited to (empty: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub os: Vec<String>,
}

/// An explicit list of affected versions (OSV `versions`), kept as one
/// sorted, newline-separated block.
///
/// PyPA and curl records list every affected release, hundreds per package;
/// as a `Vec<String>` each one was an allocation on every index read, for a
/// question (is this exact version listed?) that one substring search over
/// the block answers. Entries are unique and never empty or multi-line, so
/// the block reads back unambiguously.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VersionList {
    block: String,
}

impl VersionList {
    /// Sorts and de-duplicates `versions`; an empty entry or one with a
    /// line break is refused.
    pub fn new(mut versions: Vec<String>) -> Result<VersionList, String> {
        if let Some(bad) = versions
            .iter()
            .find(|v| v.is_empty() || v.contains(['\n', '\r']))
        {
            return Err(format!("invalid explicit version {bad:?}"));
        }
        versions.sort_unstable();
        versions.dedup();
        Ok(VersionList {
            block: versions.join("\n"),
        })
    }

    /// The inverse of [`VersionList::as_block`]. Not re-checked: the
    /// order only matters for equality, and [`VersionList::contains`]
    /// answers correctly for any block (an empty line never matches).
    pub fn from_block(block: String) -> VersionList {
        VersionList { block }
    }

    /// The versions, sorted, one per line.
    pub fn as_block(&self) -> &str {
        &self.block
    }

    pub fn is_empty(&self) -> bool {
        self.block.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.block.split('\n').filter(|v| !v.is_empty())
    }

    /// Whether `version` is listed, exactly.
    pub fn contains(&self, version: &str) -> bool {
        if version.is_empty() || version.contains('\n') {
            return false;
        }
        let bytes = self.block.as_bytes();
        self.block.match_indices(version).any(|(at, _)| {
            let end = at + version.len();
            (at == 0 || bytes[at - 1] == b'\n') && (end == bytes.len() || bytes[end] == b'\n')
        })
    }
}

impl Serialize for VersionList {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for VersionList {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let list = Vec::<String>::deserialize(deserializer)?;
        VersionList::new(list).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RustSecVersions {
    pub patched: Vec<String>,
    pub unaffected: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RangeKind {
    Semver,
    Ecosystem,
    Git,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    pub kind: RangeKind,
    pub events: Vec<Event>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    Introduced(String),
    Fixed(String),
    LastAffected(String),
    Limit(String),
}

impl Event {
    fn version(&self) -> &str {
        match self {
            Event::Introduced(v) | Event::Fixed(v) | Event::LastAffected(v) | Event::Limit(v) => v,
        }
    }
}

/// The index key of an ecosystem and package name: the ecosystem without
/// its release suffix (`Debian:11` → `debian`), lower case; the name
/// normalised the way its ecosystem compares names.
pub fn index_key(ecosystem: &str, name: &str) -> String {
    // Built in place: a scan computes one key per component, and the
    // intermediate strings of `format!` were a measurable share of it.
    let eco = ecosystem.split(':').next().unwrap_or(ecosystem).trim();
    let is = |names: &[&str]| names.iter().any(|n| eco.eq_ignore_ascii_case(n));
    let mut key = String::with_capacity(eco.len() + 1 + name.len());
    key.extend(eco.chars().map(|c| c.to_ascii_lowercase()));
    key.push('\u{1f}');
    if is(&["pypi"]) {
        key.push_str(&pep503(name));
    } else if is(&[
        "npm",
        "go",
        "generic",
        "debian",
        "ubuntu",
        "alpine",
        "packagist",
    ]) {
        if name.is_ascii() {
            key.extend(name.chars().map(|c| c.to_ascii_lowercase()));
        } else {
            key.push_str(&name.to_lowercase());
        }
    } else {
        key.push_str(name);
    }
    key
}

impl Affected {
    pub fn key(&self) -> String {
        index_key(&self.ecosystem, &self.name)
    }

    /// Whether `version` is affected. `Err` when the version cannot be read
    /// under the ecosystem's scheme (reported, never silently "safe").
    pub fn affects(&self, version: &str) -> Result<bool, VersionError> {
        if self.versions.contains(version) {
            return Ok(true);
        }
        if let Some(rs) = &self.rustsec {
            return rustsec_affects(rs, version);
        }
        let eco_scheme = Scheme::for_ecosystem(&self.ecosystem);
        let mut last_error = None;
        for range in &self.ranges {
            let scheme = match range.kind {
                RangeKind::Git => continue,
                RangeKind::Semver if eco_scheme == Scheme::Go => Scheme::Go,
                RangeKind::Semver => Scheme::Semver,
                RangeKind::Ecosystem => eco_scheme,
            };
            match range_affects(scheme, &range.events, version) {
                Ok(true) => return Ok(true),
                Ok(false) => {}
                Err(e) => last_error = Some(e),
            }
        }
        match last_error {
            // A list of explicit versions was given and did not name it:
            // that is an answer even if the ranges could not be read.
            Some(_) if !self.versions.is_empty() => Ok(false),
            Some(e) => Err(e),
            None => Ok(false),
        }
    }

    /// The first fixed version of any range, for "upgrade to" hints.
    pub fn fixed_versions(&self) -> Vec<String> {
        if let Some(rs) = &self.rustsec {
            return rs.patched.clone();
        }
        self.ranges
            .iter()
            .flat_map(|r| r.events.iter())
            .filter_map(|e| match e {
                Event::Fixed(v) => Some(v.clone()),
                _ => None,
            })
            .collect()
    }
}

/// The OSV evaluation: walk the events in version order; `introduced`
/// switches on, `fixed` (at or after) and `last_affected` (strictly after)
/// switch off; `limit` caps the range.
pub fn range_affects<'a>(
    scheme: Scheme,
    events: &'a [Event],
    version: &'a str,
) -> Result<bool, VersionError> {
    // Each version is parsed once, then compared as `Scheme::compare`
    // orders the texts, with the same errors for unreadable versions. OSV's
    // "0" is before everything and a `limit` of "*" after everything.
    #[derive(PartialEq, Eq)]
    enum Point<'v> {
        Zero,
        At(Parsed<'v>),
        Infinity,
    }
    let parse = |v: &'a str| -> Result<Point<'a>, VersionError> {
        match v {
            "0" => Ok(Point::Zero),
            "*" => Ok(Point::Infinity),
            _ => scheme.parse(v).map(Point::At),
        }
    };
    let cmp = |a: &Point<'_>, b: &Point<'_>| match (a, b) {
        (Point::At(a), Point::At(b)) => scheme.compare_parsed(a, b),
        (a, b) => {
            let rank = |p: &Point<'_>| match p {
                Point::Zero => 0,
                Point::At(_) => 1,
                Point::Infinity => 2,
            };
            rank(a).cmp(&rank(b))
        }
    };
    let target = match version {
        "0" => {
            scheme.parse(version)?;
            Point::Zero
        }
        _ => Point::At(scheme.parse(version)?),
    };
    let mut sorted: Vec<(&Event, Point<'_>)> = Vec::with_capacity(events.len());
    for event in events {
        let at = match event {
            Event::Limit(_) => parse(event.version())?,
            // Only a limit may be "*".
            _ if event.version() == "*" => Point::At(scheme.parse("*")?),
            _ => parse(event.version())?,
        };
        sorted.push((event, at));
    }
    sorted.sort_by(|a, b| cmp(&a.1, &b.1));
    let mut affected = false;
    let mut limits = Vec::new();
    for (event, at) in &sorted {
        let order = cmp(&target, at);
        match event {
            Event::Introduced(_) => {
                if order != Ordering::Less {
                    affected = true;
                }
            }
            Event::Fixed(_) => {
                if order != Ordering::Less {
                    affected = false;
                }
            }
            Event::LastAffected(_) => {
                if order == Ordering::Greater {
                    affected = false;
                }
            }
            Event::Limit(_) => limits.push(order),
        }
    }
    if affected && !limits.is_empty() {
        affected = limits.contains(&Ordering::Less);
    }
    Ok(affected)
}

/// cargo-audit's rule: affected unless a `patched` or `unaffected`
/// requirement matches (semver requirements, so a pre-release matches only
/// comparators of its own major.minor.patch).
fn rustsec_affects(rs: &RustSecVersions, version: &str) -> Result<bool, VersionError> {
    let v = semver::Version::parse(version).map_err(|e| VersionError {
        scheme: "semver",
        version: version.chars().take(80).collect(),
        reason: e.to_string(),
    })?;
    for req in rs.patched.iter().chain(&rs.unaffected) {
        // Requirements were validated at import.
        if let Ok(req) = semver::VersionReq::parse(req)
            && req.matches(&v)
        {
            return Ok(false);
        }
    }
    Ok(true)
}

// ---------------------------------------------------------------- OSV

#[derive(Deserialize)]
struct OsvRecord {
    id: String,
    #[serde(default)]
    aliases: Option<Vec<String>>,
    #[serde(default)]
    summary: Option<String>,
    #[serde(default)]
    published: Option<String>,
    #[serde(default)]
    modified: Option<String>,
    #[serde(default)]
    withdrawn: Option<String>,
    #[serde(default)]
    severity: Option<Vec<OsvSeverity>>,
    #[serde(default)]
    affected: Option<Vec<OsvAffected>>,
    #[serde(default)]
    database_specific: Option<Value>,
}

#[derive(Deserialize)]
struct OsvSeverity {
    #[serde(rename = "type")]
    ty: String,
    score: String,
}

#[derive(Deserialize)]
struct OsvAffected {
    #[serde(default)]
    package: Option<OsvPackage>,
    #[serde(default)]
    severity: Option<Vec<OsvSeverity>>,
    #[serde(default)]
    ranges: Option<Vec<OsvRange>>,
    #[serde(default)]
    versions: Option<Vec<String>>,
    #[serde(default)]
    ecosystem_specific: Option<Value>,
    #[serde(default)]
    database_specific: Option<Value>,
}

#[derive(Deserialize)]
struct OsvPackage {
    #[serde(default)]
    ecosystem: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    purl: Option<String>,
}

#[derive(Deserialize)]
struct OsvRange {
    #[serde(rename = "type")]
    ty: String,
    #[serde(default)]
    events: Vec<Value>,
}

/// Reads one OSV record from JSON text.
pub fn parse_osv_json(text: &str) -> Result<Advisory, AdvisoryError> {
    let value: Value = serde_json::from_str(text).map_err(|e| AdvisoryError::Syntax {
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })?;
    osv_from_value(value)
}

/// Reads one OSV record from an already-parsed value (YAML sources are
/// converted by the caller).
pub fn osv_from_value(value: Value) -> Result<Advisory, AdvisoryError> {
    let rec: OsvRecord = serde_json::from_value(value)
        .map_err(|e| AdvisoryError::Invalid(format!("not an OSV record: {e}")))?;
    if rec.id.trim().is_empty() {
        return Err(AdvisoryError::Invalid("empty id".into()));
    }
    let mut cvss: Vec<String> = Vec::new();
    let mut add_severity = |sev: &Option<Vec<OsvSeverity>>| {
        for s in sev.iter().flatten() {
            if (s.ty.starts_with("CVSS_V3") || s.ty.starts_with("CVSS_V4"))
                && !cvss.contains(&s.score)
            {
                cvss.push(s.score.clone());
            }
        }
    };
    add_severity(&rec.severity);
    let db_package = rec
        .database_specific
        .as_ref()
        .and_then(|d| d.get("package"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let mut source_severity = rec
        .database_specific
        .as_ref()
        .and_then(|d| d.get("severity"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let informational = rec
        .database_specific
        .as_ref()
        .and_then(|d| d.get("informational"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let mut affected = Vec::new();
    for a in rec.affected.into_iter().flatten() {
        add_severity(&a.severity);
        if source_severity.is_none() {
            source_severity = a
                .ecosystem_specific
                .as_ref()
                .or(a.database_specific.as_ref())
                .and_then(|d| d.get("severity"))
                .and_then(Value::as_str)
                .map(str::to_owned);
        }
        let (ecosystem, name) = match &a.package {
            Some(OsvPackage {
                ecosystem: Some(e),
                name: Some(n),
                ..
            }) if !e.is_empty() && !n.is_empty() => (e.clone(), n.clone()),
            Some(OsvPackage { purl: Some(p), .. }) => match Purl::parse(p)
                .ok()
                .and_then(|p| p.osv_key().map(|(e, n)| (e.to_owned(), n)))
            {
                Some(k) => k,
                None => continue,
            },
            _ => match &db_package {
                Some(p) => ("generic".to_owned(), p.clone()),
                None => continue,
            },
        };
        let mut ranges = Vec::new();
        for r in a.ranges.into_iter().flatten() {
            let kind = match r.ty.as_str() {
                "SEMVER" => RangeKind::Semver,
                "ECOSYSTEM" => RangeKind::Ecosystem,
                "GIT" => continue,
                other => {
                    return Err(AdvisoryError::Invalid(format!(
                        "{}: unknown range type {other:?}",
                        rec.id
                    )));
                }
            };
            let mut events = Vec::new();
            for e in r.events {
                let obj = e.as_object().ok_or_else(|| {
                    AdvisoryError::Invalid(format!("{}: event is not an object", rec.id))
                })?;
                for (k, v) in obj {
                    let v = v.as_str().unwrap_or_default().to_owned();
                    events.push(match k.as_str() {
                        "introduced" => Event::Introduced(v),
                        "fixed" => Event::Fixed(v),
                        "last_affected" => Event::LastAffected(v),
                        "limit" => Event::Limit(v),
                        other => {
                            return Err(AdvisoryError::Invalid(format!(
                                "{}: unknown event {other:?}",
                                rec.id
                            )));
                        }
                    });
                }
            }
            ranges.push(Range { kind, events });
        }
        let os = a
            .ecosystem_specific
            .as_ref()
            .and_then(|e| e.get("affects"))
            .and_then(|a| a.get("os"))
            .and_then(Value::as_array)
            .map(|l| {
                l.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        affected.push(Affected {
            ecosystem,
            name,
            ranges,
            versions: VersionList::new(a.versions.unwrap_or_default())
                .map_err(|e| AdvisoryError::Invalid(format!("{}: {e}", rec.id)))?,
            rustsec: None,
            os,
        });
    }
    Ok(Advisory {
        id: rec.id,
        aliases: rec.aliases.unwrap_or_default(),
        summary: rec.summary.unwrap_or_default(),
        published: rec.published,
        modified: rec.modified,
        withdrawn: rec.withdrawn,
        cvss,
        source_severity,
        informational,
        affected,
    })
}

// ---------------------------------------------------------------- RustSec

#[derive(Deserialize)]
struct RsFile {
    advisory: RsAdvisory,
    #[serde(default)]
    versions: Option<RsVersions>,
    #[serde(default)]
    affected: Option<RsAffected>,
}

#[derive(Deserialize)]
struct RsAdvisory {
    id: String,
    package: String,
    #[serde(default)]
    aliases: Vec<String>,
    #[serde(default)]
    cvss: Option<String>,
    #[serde(default)]
    date: Option<toml::Value>,
    #[serde(default)]
    informational: Option<String>,
    #[serde(default)]
    withdrawn: Option<toml::Value>,
    #[serde(default)]
    title: Option<String>,
}

#[derive(Deserialize)]
struct RsVersions {
    #[serde(default)]
    patched: Vec<String>,
    #[serde(default)]
    unaffected: Vec<String>,
}

#[derive(Deserialize)]
struct RsAffected {
    #[serde(default)]
    os: Vec<String>,
}

/// Reads a RustSec advisory: Markdown whose first block is TOML between
/// ```` ```toml ```` fences (or a legacy `.toml` file), followed by a `# Title`.
/// `collection` is `crates` or `rust` (the directory it came from).
pub fn parse_rustsec(text: &str, collection: &str) -> Result<Advisory, AdvisoryError> {
    let (toml_text, body, offset_lines) = match text.trim_start().strip_prefix("```toml") {
        Some(rest) => {
            let end = rest.find("\n```").ok_or_else(|| {
                AdvisoryError::Invalid("unterminated ```toml front matter".into())
            })?;
            (&rest[..end], &rest[end + 4..], 1)
        }
        None => (text, "", 0),
    };
    let file: RsFile = toml::from_str(toml_text).map_err(|e| {
        let (line, column) = e
            .span()
            .map(|s| {
                let before = &toml_text[..s.start.min(toml_text.len())];
                (
                    before.matches('\n').count() + 1 + offset_lines,
                    before.rsplit('\n').next().map_or(0, str::len) + 1,
                )
            })
            .unwrap_or((0, 0));
        AdvisoryError::Syntax {
            line,
            column,
            message: e.message().to_owned(),
        }
    })?;
    let a = file.advisory;
    let versions = file.versions.unwrap_or(RsVersions {
        patched: Vec::new(),
        unaffected: Vec::new(),
    });
    for req in versions.patched.iter().chain(&versions.unaffected) {
        semver::VersionReq::parse(req).map_err(|e| {
            AdvisoryError::Invalid(format!("{}: bad version requirement {req:?}: {e}", a.id))
        })?;
    }
    let title = a.title.clone().unwrap_or_else(|| {
        body.lines()
            .find_map(|l| l.trim().strip_prefix("# "))
            .unwrap_or_default()
            .trim()
            .to_owned()
    });
    let toml_str = |v: Option<toml::Value>| {
        v.map(|v| match v {
            toml::Value::String(s) => s,
            other => other.to_string(),
        })
    };
    let ecosystem = if collection == "rust" {
        "rust-toolchain"
    } else {
        "crates.io"
    };
    Ok(Advisory {
        id: a.id,
        aliases: a.aliases,
        summary: title,
        published: toml_str(a.date),
        modified: None,
        withdrawn: toml_str(a.withdrawn),
        cvss: a.cvss.into_iter().collect(),
        source_severity: None,
        informational: a.informational,
        affected: vec![Affected {
            ecosystem: ecosystem.to_owned(),
            name: a.package,
            ranges: Vec::new(),
            versions: VersionList::default(),
            rustsec: Some(RustSecVersions {
                patched: versions.patched,
                unaffected: versions.unaffected,
            }),
            os: file.affected.map(|a| a.os).unwrap_or_default(),
        }],
    })
}
