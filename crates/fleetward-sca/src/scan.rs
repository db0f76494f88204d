//! The scan: components × advisories × licences × policy → findings.
//!
//! Advisories come through [`AdvisorySource`], a lookup by index key, so
//! the caller decides where they live (an on-disk index, memory) and the
//! scan reads only the packages the SBOM names. Every finding names the rule
//! it broke; waivers are applied last, so a waived finding is still in the
//! report, marked with the waiver that covers it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;
use time::OffsetDateTime;

use crate::advisory::{Advisory, index_key};
use crate::license::LicenseVerdict;
use crate::policy::{Action, CargoSources, Policy, Waiver};
use crate::sbom::{Component, Sbom, SbomFormat};
use crate::severity::{Severity, advisory_severity};

/// Where advisories come from: all advisories recorded under an index key
/// (see [`index_key`]). Shared by the threads of a large scan.
pub trait AdvisorySource: Sync {
    fn lookup(&self, key: &str) -> Result<Vec<Advisory>, String>;
}

/// Advisories held in memory (tests, small data sets).
#[derive(Debug, Default, Clone)]
pub struct MemoryAdvisories {
    by_key: HashMap<String, Vec<Advisory>>,
}

impl MemoryAdvisories {
    pub fn insert(&mut self, advisory: Advisory) {
        let mut keys: Vec<String> = advisory.affected.iter().map(|a| a.key()).collect();
        keys.sort();
        keys.dedup();
        for key in keys {
            let list = self.by_key.entry(key).or_default();
            if !list.iter().any(|a| a.id == advisory.id) {
                list.push(advisory.clone());
            }
        }
    }
}

impl AdvisorySource for MemoryAdvisories {
    fn lookup(&self, key: &str) -> Result<Vec<Advisory>, String> {
        Ok(self.by_key.get(key).cloned().unwrap_or_default())
    }
}

/// How severe a finding is for the verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Info,
    Warn,
    Fail,
}

/// The component a finding is about.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComponentRef {
    pub reference: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purl: Option<String>,
}

impl From<&Component> for ComponentRef {
    fn from(c: &Component) -> Self {
        ComponentRef {
            reference: c.reference.clone(),
            name: c.name.clone(),
            version: c.match_version().map(str::to_owned),
            purl: c.purl.as_ref().map(ToString::to_string),
        }
    }
}

/// What a finding is.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum FindingKind {
    Vulnerability {
        /// The advisory ids merged into this finding (one per source).
        ids: Vec<String>,
        /// CVE, GHSA and other aliases not among `ids`.
        aliases: Vec<String>,
        summary: String,
        severity: Severity,
        #[serde(skip_serializing_if = "Option::is_none")]
        score: Option<f64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        vector: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        informational: Option<String>,
        fixed: Vec<String>,
    },
    License {
        expressions: Vec<String>,
        verdict: LicenseVerdict,
        offending: Vec<String>,
    },
    Unidentifiable,
    UnreadableVersion {
        advisory: String,
        error: String,
    },
    StaleAdvisories {
        age_days: i64,
        max_days: u32,
    },
    MissingAdvisoryDate,
    ExpiredWaiver {
        waiver: Waiver,
    },
}

/// One reported problem.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// The rule it broke: `vulnerability.severity`, `license.denied`, …
    pub rule: &'static str,
    pub level: Level,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub component: Option<ComponentRef>,
    #[serde(flatten)]
    pub kind: FindingKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waived_by: Option<Waiver>,
}

impl Finding {
    /// Whether it fails the scan.
    pub fn fails(&self) -> bool {
        self.level == Level::Fail && self.waived_by.is_none()
    }

    fn waiver_keys(&self) -> Vec<String> {
        let mut keys = vec![self.rule.to_owned()];
        match &self.kind {
            FindingKind::Vulnerability { ids, aliases, .. } => {
                keys.extend(ids.iter().cloned());
                keys.extend(aliases.iter().cloned());
            }
            FindingKind::License { .. } => {
                if let Some(c) = &self.component {
                    keys.push(format!("license:{}", c.name));
                }
            }
            FindingKind::Unidentifiable => {
                if let Some(c) = &self.component {
                    keys.push(format!("unidentifiable:{}", c.name));
                }
            }
            _ => {}
        }
        keys
    }
}

/// Counts for the summary line.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stats {
    pub components: usize,
    pub identifiable: usize,
    pub unidentifiable: usize,
    /// Components not matched because they are not from a public registry
    /// (path and git crates, alternate registries, local files).
    pub not_from_registry: usize,
    pub advisories_checked: usize,
}

impl Stats {
    /// Adds the counts of another part of the same SBOM (not `components`,
    /// which the whole scan sets once).
    fn add(&mut self, part: &Stats) {
        self.identifiable += part.identifiable;
        self.unidentifiable += part.unidentifiable;
        self.not_from_registry += part.not_from_registry;
        self.advisories_checked += part.advisories_checked;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail,
}

/// The result of a scan.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub verdict: Verdict,
    pub format: SbomFormat,
    pub spec_version: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub advisories_imported_at: Option<OffsetDateTime>,
    pub stats: Stats,
    pub findings: Vec<Finding>,
}

impl Report {
    /// Advisory ids reported for vulnerabilities (all merged ids).
    pub fn advisory_ids(&self) -> BTreeSet<String> {
        self.findings
            .iter()
            .filter_map(|f| match &f.kind {
                FindingKind::Vulnerability { ids, .. } => Some(ids.iter().cloned()),
                _ => None,
            })
            .flatten()
            .collect()
    }
}

const CRATES_IO_GIT: &str = "registry+https://github.com/rust-lang/crates.io-index";
const CRATES_IO_SPARSE: &str = "sparse+https://index.crates.io/";

/// Whether a component is something the public advisory databases speak
/// about: not a path or git crate, not from an alternate registry.
fn from_public_registry(c: &Component, sources: CargoSources) -> bool {
    let Some(purl) = &c.purl else {
        return true;
    };
    if purl.ty != "cargo" {
        return !purl
            .qualifiers
            .get("download_url")
            .is_some_and(|u| u.starts_with("file:"));
    }
    match (&c.cargo_source, sources) {
        (Some(s), _) if s == CRATES_IO_GIT => true,
        (Some(s), CargoSources::CratesIo) if s == CRATES_IO_SPARSE => true,
        (Some(_), _) => false,
        // From an SBOM: crates.io unless it says otherwise.
        (None, _) if c.path.starts_with("package[") => false,
        (None, _) => ["download_url", "vcs_url", "repository_url"]
            .iter()
            .all(|k| !purl.qualifiers.contains_key(*k)),
    }
}

fn keys_of(c: &Component) -> Vec<String> {
    let mut keys = Vec::new();
    if let Some((eco, name)) = c.purl.as_ref().and_then(|p| p.osv_key()) {
        keys.push(index_key(eco, &name));
    }
    if c.purl.as_ref().is_none_or(|p| p.ty == "generic") {
        for cpe in &c.cpes {
            keys.push(index_key("generic", &cpe.product));
        }
    }
    keys.sort();
    keys.dedup();
    keys
}

fn action_level(a: Action) -> Option<Level> {
    match a {
        Action::Ignore => None,
        Action::Warn => Some(Level::Warn),
        Action::Fail => Some(Level::Fail),
    }
}

/// Scans `sbom` against `advisories` under `policy` at time `now`.
pub fn scan(
    sbom: &Sbom,
    advisories: &dyn AdvisorySource,
    advisories_imported_at: Option<OffsetDateTime>,
    policy: &Policy,
    now: OffsetDateTime,
) -> Result<Report, String> {
    let mut findings = Vec::new();
    let mut stats = Stats {
        components: sbom.components.len(),
        ..Stats::default()
    };
    match (policy.max_advisory_age_days, advisories_imported_at) {
        (Some(max), Some(at)) => {
            let age = (now - at).whole_days();
            if age > i64::from(max) {
                findings.push(Finding {
                    rule: "advisories.max-age",
                    level: Level::Fail,
                    message: format!(
                        "the advisory data was imported {age} days ago; the policy allows {max}: run `fleetward advisories import`"
                    ),
                    component: None,
                    kind: FindingKind::StaleAdvisories {
                        age_days: age,
                        max_days: max,
                    },
                    waived_by: None,
                });
            }
        }
        (Some(_), None) => findings.push(Finding {
            rule: "advisories.max-age",
            level: Level::Fail,
            message: "the advisory data has no import date, so its age is unknown".into(),
            component: None,
            kind: FindingKind::MissingAdvisoryDate,
            waived_by: None,
        }),
        _ => {}
    }
    let (found, counts) = scan_components(sbom, advisories, policy)?;
    findings.extend(found);
    stats.add(&counts);
    apply_waivers(&mut findings, &policy.waivers, now);
    let verdict = if findings.iter().any(Finding::fails) {
        Verdict::Fail
    } else {
        Verdict::Pass
    };
    Ok(Report {
        verdict,
        format: sbom.format,
        spec_version: sbom.spec_version.clone(),
        advisories_imported_at,
        stats,
        findings,
    })
}

/// Below this many components a scan runs on one thread: starting threads
/// costs more than it saves.
const MIN_COMPONENTS_PER_THREAD: usize = 256;

/// Every component's findings, in component order, and the counts. A large
/// SBOM is split into consecutive parts scanned on their own threads (each
/// with its own lookup cache) and put back together in order, so the report
/// is the same as from one thread.
fn scan_components(
    sbom: &Sbom,
    advisories: &dyn AdvisorySource,
    policy: &Policy,
) -> Result<(Vec<Finding>, Stats), String> {
    let scan_part = |part: &[Component]| -> Result<(Vec<Finding>, Stats), String> {
        let mut cache = HashMap::new();
        let mut findings = Vec::new();
        let mut stats = Stats::default();
        for c in part {
            scan_component(
                c,
                sbom.format,
                advisories,
                policy,
                &mut cache,
                &mut findings,
                &mut stats,
            )?;
        }
        Ok((findings, stats))
    };
    // Asking for the core count reads cgroup files: only a large SBOM asks.
    let most_threads = sbom.components.len() / MIN_COMPONENTS_PER_THREAD;
    if most_threads < 2 {
        return scan_part(&sbom.components);
    }
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(most_threads);
    if threads < 2 {
        return scan_part(&sbom.components);
    }
    let per_thread = sbom.components.len().div_ceil(threads);
    let parts: Vec<Result<(Vec<Finding>, Stats), String>> = std::thread::scope(|scope| {
        let running: Vec<_> = sbom
            .components
            .chunks(per_thread)
            .map(|part| scope.spawn(move || scan_part(part)))
            .collect();
        running
            .into_iter()
            .map(|thread| {
                thread
                    .join()
                    .unwrap_or_else(|_| Err("a scan thread failed".to_owned()))
            })
            .collect()
    });
    let mut findings = Vec::new();
    let mut stats = Stats::default();
    for part in parts {
        let (found, counts) = part?;
        findings.extend(found);
        stats.add(&counts);
    }
    Ok((findings, stats))
}

/// One component's findings and counts, in the order a sequential scan
/// gives them. `cache` holds the advisories already looked up by key.
fn scan_component(
    c: &Component,
    format: SbomFormat,
    advisories: &dyn AdvisorySource,
    policy: &Policy,
    cache: &mut HashMap<String, Vec<Advisory>>,
    findings: &mut Vec<Finding>,
    stats: &mut Stats,
) -> Result<(), String> {
    if !c.is_identifiable() {
        stats.unidentifiable += 1;
        if let Some(level) = action_level(policy.unidentifiable) {
            findings.push(Finding {
                rule: "component.unidentifiable",
                level,
                message: format!(
                    "{} ({}) has neither purl nor CPE: no advisory can be matched",
                    display_name(c),
                    c.path
                ),
                component: Some(c.into()),
                kind: FindingKind::Unidentifiable,
                waived_by: None,
            });
        }
    } else {
        stats.identifiable += 1;
    }
    if format != SbomFormat::CargoLock {
        license_finding(c, policy, findings);
    }
    if !c.is_identifiable() {
        return Ok(());
    }
    if !from_public_registry(c, policy.cargo_sources) {
        stats.not_from_registry += 1;
        return Ok(());
    }
    let Some(version) = c.match_version() else {
        return Ok(());
    };
    let mut matched: Vec<&Advisory> = Vec::new();
    let keys = keys_of(c);
    for key in &keys {
        if !cache.contains_key(key) {
            let list = advisories.lookup(key)?;
            cache.insert(key.clone(), list);
        }
    }
    for key in &keys {
        for adv in cache.get(key).into_iter().flatten() {
            if adv.withdrawn.is_some() || matched.iter().any(|m| m.id == adv.id) {
                continue;
            }
            stats.advisories_checked += 1;
            // The advisory is stored under `key`, so when it names one
            // package that is this one; only several need the key
            // (computing it for every advisory was 6 % of a large scan).
            let single = adv.affected.len() == 1;
            for aff in adv.affected.iter().filter(|a| single || &a.key() == key) {
                if !policy.target_os.is_empty()
                    && !aff.os.is_empty()
                    && !aff.os.iter().any(|os| policy.target_os.contains(os))
                {
                    continue;
                }
                match aff.affects(version) {
                    Ok(true) => {
                        matched.push(adv);
                        break;
                    }
                    Ok(false) => {}
                    Err(e) => {
                        if let Some(level) = action_level(policy.unreadable_version) {
                            findings.push(Finding {
                                rule: "vulnerability.unreadable-version",
                                level,
                                message: format!(
                                    "{}: {e}; {} could not be checked",
                                    display_name(c),
                                    adv.id
                                ),
                                component: Some(c.into()),
                                kind: FindingKind::UnreadableVersion {
                                    advisory: adv.id.clone(),
                                    error: e.to_string(),
                                },
                                waived_by: None,
                            });
                        }
                        break;
                    }
                }
            }
        }
    }
    for group in merge_aliases(&matched) {
        if let Some(f) = vulnerability_finding(c, &group, policy) {
            findings.push(f);
        }
    }
    Ok(())
}

fn display_name(c: &Component) -> String {
    match c.match_version() {
        Some(v) => format!("{}@{v}", c.name),
        None => c.name.clone(),
    }
}

/// Groups advisories that name each other (by id or a shared alias): the
/// same vulnerability published by several databases is one finding.
fn merge_aliases<'a>(matched: &[&'a Advisory]) -> Vec<Vec<&'a Advisory>> {
    let mut parent: Vec<usize> = (0..matched.len()).collect();
    fn find(p: &mut [usize], mut i: usize) -> usize {
        while p[i] != i {
            p[i] = p[p[i]];
            i = p[i];
        }
        i
    }
    let mut owner: HashMap<&str, usize> = HashMap::new();
    for (i, adv) in matched.iter().enumerate() {
        for name in std::iter::once(&adv.id).chain(&adv.aliases) {
            match owner.get(name.as_str()) {
                Some(&j) => {
                    let (a, b) = (find(&mut parent, i), find(&mut parent, j));
                    parent[a] = b;
                }
                None => {
                    owner.insert(name, i);
                }
            }
        }
    }
    let mut groups: BTreeMap<usize, Vec<&Advisory>> = BTreeMap::new();
    for (i, adv) in matched.iter().enumerate() {
        let root = find(&mut parent, i);
        groups.entry(root).or_default().push(adv);
    }
    groups.into_values().collect()
}

fn vulnerability_finding(c: &Component, group: &[&Advisory], policy: &Policy) -> Option<Finding> {
    let mut ids: Vec<String> = group.iter().map(|a| a.id.clone()).collect();
    ids.sort();
    ids.dedup();
    let mut aliases: Vec<String> = group
        .iter()
        .flat_map(|a| a.aliases.iter().cloned())
        .filter(|a| !ids.contains(a))
        .collect();
    aliases.sort();
    aliases.dedup();
    let vectors: Vec<String> = group.iter().flat_map(|a| a.cvss.iter().cloned()).collect();
    let qualitative = group.iter().find_map(|a| a.source_severity.as_deref());
    let (severity, scored) = advisory_severity(&vectors, qualitative);
    // Informational only if every source says so.
    let informational = group
        .iter()
        .map(|a| a.informational.clone())
        .collect::<Option<Vec<_>>>()
        .and_then(|v| v.into_iter().next());
    let mut fixed: Vec<String> = group
        .iter()
        .flat_map(|a| a.affected.iter().flat_map(|x| x.fixed_versions()))
        .collect();
    fixed.sort();
    fixed.dedup();
    let summary = group
        .iter()
        .map(|a| a.summary.as_str())
        .find(|s| !s.is_empty())
        .unwrap_or_default()
        .to_owned();
    let (rule, level) = if let Some(kind) = &informational {
        let _ = kind;
        (
            "advisory.informational",
            action_level(policy.informational)?,
        )
    } else if severity == Severity::Unknown {
        (
            "vulnerability.unknown-severity",
            action_level(policy.unknown_severity)?,
        )
    } else if severity >= policy.fail_on {
        ("vulnerability.severity", Level::Fail)
    } else {
        ("vulnerability.severity", Level::Info)
    };
    let what = match &informational {
        Some(kind) => format!("{kind} advisory"),
        None => format!("{} vulnerability", severity.as_str()),
    };
    let message = format!(
        "{}: {what} {} ({}){}",
        display_name(c),
        ids.join(", "),
        summary,
        if rule == "vulnerability.severity" {
            format!("; policy fails at {} and above", policy.fail_on.as_str())
        } else {
            String::new()
        }
    );
    Some(Finding {
        rule,
        level,
        message,
        component: Some(c.into()),
        kind: FindingKind::Vulnerability {
            ids,
            aliases,
            summary,
            severity,
            score: scored.as_ref().map(|s| s.score),
            vector: scored.map(|s| s.vector),
            informational,
            fixed,
        },
        waived_by: None,
    })
}

fn license_finding(c: &Component, policy: &Policy, findings: &mut Vec<Finding>) {
    let judgement = policy.licenses.judge_all(&c.licenses);
    let (rule, action) = match judgement.verdict {
        LicenseVerdict::Allow => return,
        LicenseVerdict::Review => ("license.unknown", policy.license_unknown),
        LicenseVerdict::Deny => ("license.denied", policy.license_denied),
        LicenseVerdict::Invalid => ("license.invalid", policy.license_invalid),
    };
    let Some(level) = action_level(action) else {
        return;
    };
    let shown = if c.licenses.is_empty() {
        "no licence".to_owned()
    } else {
        c.licenses.join(" AND ")
    };
    findings.push(Finding {
        rule,
        level,
        message: format!(
            "{}: licence {shown:?} is {} by policy ({})",
            display_name(c),
            match judgement.verdict {
                LicenseVerdict::Review => "unknown, for review,",
                LicenseVerdict::Invalid => "not a valid SPDX expression",
                _ => "not allowed",
            },
            judgement.offending.join(", ")
        ),
        component: Some(c.into()),
        kind: FindingKind::License {
            expressions: c.licenses.clone(),
            verdict: judgement.verdict,
            offending: judgement.offending,
        },
        waived_by: None,
    });
}

fn apply_waivers(findings: &mut Vec<Finding>, waivers: &[Waiver], now: OffsetDateTime) {
    let mut expired_used = Vec::new();
    for f in findings.iter_mut() {
        let keys = f.waiver_keys();
        for w in waivers {
            if !keys.iter().any(|k| k == &w.id) {
                continue;
            }
            if let (Some(filter), Some(c)) = (&w.component, &f.component) {
                let hit =
                    c.name == *filter || c.purl.as_deref().is_some_and(|p| p.contains(filter));
                if !hit {
                    continue;
                }
            }
            if w.expired(now) {
                if !expired_used.contains(w) {
                    expired_used.push(w.clone());
                }
                continue;
            }
            f.waived_by = Some(w.clone());
            break;
        }
    }
    for w in expired_used {
        findings.push(Finding {
            rule: "waiver.expired",
            level: Level::Warn,
            message: format!(
                "waiver {} (owner {}) expired on {}; the findings it covered count again",
                w.id, w.owner, w.expires
            ),
            component: None,
            kind: FindingKind::ExpiredWaiver { waiver: w },
            waived_by: None,
        });
    }
}
