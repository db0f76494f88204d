//! Report renderings: a table for people, JSON for scripts, SARIF 2.1.0 for
//! code-scanning tools, CycloneDX 1.5 VEX for SBOM tooling.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::scan::{Finding, FindingKind, Level, Report, Verdict};
use crate::severity::Severity;

/// The rule names with their descriptions, for SARIF's rule table and docs.
pub const RULES: &[(&str, &str)] = &[
    (
        "vulnerability.severity",
        "A known vulnerability at or above the policy's severity threshold",
    ),
    (
        "vulnerability.unknown-severity",
        "A known vulnerability without a CVSS vector or rating",
    ),
    (
        "vulnerability.unreadable-version",
        "A version its ecosystem cannot order, so an advisory could not be checked",
    ),
    (
        "advisory.informational",
        "A RustSec informational advisory: unmaintained, unsound or notice",
    ),
    (
        "advisories.max-age",
        "The advisory data is older than the policy allows",
    ),
    ("license.denied", "A licence the policy does not allow"),
    (
        "license.unknown",
        "A licence the policy cannot judge (NOASSERTION, LicenseRef-)",
    ),
    (
        "license.invalid",
        "A licence expression that is not valid SPDX",
    ),
    (
        "component.unidentifiable",
        "A component with neither purl nor CPE",
    ),
    ("waiver.expired", "A waiver past its expiry date"),
];

pub fn json(report: &Report) -> Value {
    serde_json::to_value(report).unwrap_or(Value::Null)
}

fn ids_of(f: &Finding) -> String {
    match &f.kind {
        FindingKind::Vulnerability { ids, .. } => ids.join(","),
        _ => String::new(),
    }
}

/// A plain-text table, one finding a line, failing ones first.
pub fn table(report: &Report) -> String {
    let mut out = String::new();
    let mut findings: Vec<&Finding> = report.findings.iter().collect();
    findings.sort_by(|a, b| {
        b.fails()
            .cmp(&a.fails())
            .then(b.level.cmp(&a.level))
            .then(a.rule.cmp(b.rule))
    });
    let _ = writeln!(
        out,
        "{:<6} {:<32} {:<40} DETAIL",
        "LEVEL", "RULE", "COMPONENT"
    );
    for f in &findings {
        let level = match (f.level, &f.waived_by) {
            (_, Some(_)) => "waived",
            (Level::Fail, None) => "FAIL",
            (Level::Warn, None) => "warn",
            (Level::Info, None) => "info",
        };
        let component = f
            .component
            .as_ref()
            .map(|c| match &c.version {
                Some(v) => format!("{}@{v}", c.name),
                None => c.name.clone(),
            })
            .unwrap_or_default();
        let detail = match &f.kind {
            FindingKind::Vulnerability {
                severity, aliases, ..
            } => format!("{} {} {}", ids_of(f), severity.as_str(), aliases.join(",")),
            _ => f.message.clone(),
        };
        let _ = writeln!(out, "{level:<6} {:<32} {component:<40} {detail}", f.rule);
    }
    let failing = report.findings.iter().filter(|f| f.fails()).count();
    let _ = writeln!(
        out,
        "\n{}: {} components ({} unidentifiable, {} not from a public registry), {} findings, {} failing",
        match report.verdict {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
        },
        report.stats.components,
        report.stats.unidentifiable,
        report.stats.not_from_registry,
        report.findings.len(),
        failing
    );
    out
}

fn sarif_level(f: &Finding) -> &'static str {
    match f.level {
        Level::Fail => "error",
        Level::Warn => "warning",
        Level::Info => "note",
    }
}

/// SARIF 2.1.0. The SBOM is the artifact; each component is a logical
/// location. Waived findings carry an accepted external suppression with
/// the waiver's reason, owner and expiry.
pub fn sarif(report: &Report, sbom_uri: &str, tool_version: &str) -> Value {
    let rules: Vec<Value> = RULES
        .iter()
        .map(|(id, text)| {
            json!({
                "id": id,
                "name": id.replace(['.', '-'], "_"),
                "shortDescription": { "text": text },
                "helpUri": "https://example.invalid/fleetward/docs/scan#rules",
            })
        })
        .collect();
    let results: Vec<Value> = report
        .findings
        .iter()
        .map(|f| {
            let rule_index = RULES.iter().position(|(id, _)| *id == f.rule).unwrap_or(0);
            let mut result = json!({
                "ruleId": f.rule,
                "ruleIndex": rule_index,
                "level": sarif_level(f),
                "message": { "text": f.message },
                "locations": [{
                    "physicalLocation": { "artifactLocation": { "uri": sbom_uri } },
                    "logicalLocations": f.component.as_ref().map(|c| vec![json!({
                        "name": c.name,
                        "fullyQualifiedName": c.purl.clone().unwrap_or_else(|| c.reference.clone()),
                        "kind": "module",
                    })]).unwrap_or_default(),
                }],
            });
            let mut props = serde_json::Map::new();
            if let FindingKind::Vulnerability {
                ids,
                aliases,
                severity,
                score,
                ..
            } = &f.kind
            {
                props.insert("advisories".into(), json!(ids));
                props.insert("aliases".into(), json!(aliases));
                props.insert("severity".into(), json!(severity.as_str()));
                if let Some(s) = score {
                    // GitHub code scanning reads this property.
                    props.insert("security-severity".into(), json!(format!("{s:.1}")));
                }
                let fp = format!(
                    "{}|{}",
                    ids.join(","),
                    f.component.as_ref().map(|c| c.reference.as_str()).unwrap_or("")
                );
                result["partialFingerprints"] = json!({ "fleetwardFinding/v1": fp });
            }
            if !props.is_empty() {
                result["properties"] = Value::Object(props);
            }
            if let Some(w) = &f.waived_by {
                result["suppressions"] = json!([{
                    "kind": "external",
                    "status": "accepted",
                    "justification": format!("{} (owner {}, expires {})", w.reason, w.owner, w.expires),
                }]);
            }
            result
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "fleetward",
                "semanticVersion": tool_version,
                "informationUri": "https://example.invalid/fleetward",
                "rules": rules,
            }},
            "artifacts": [{ "location": { "uri": sbom_uri } }],
            "results": results,
        }],
    })
}

fn cdx_method(vector: &str) -> &'static str {
    if vector.starts_with("CVSS:4") {
        "CVSSv4"
    } else if vector.starts_with("CVSS:3.0") {
        "CVSSv3"
    } else {
        "CVSSv31"
    }
}

/// CycloneDX 1.5 VEX: one vulnerability per finding, `affects` pointing at
/// the component's `bom-ref`. Unwaived findings are `in_triage`; waived ones
/// are `exploitable` with the response `will_not_fix` and the waiver as
/// detail (accepted risk, not a claim that the code is unaffected).
pub fn vex(report: &Report, serial: &str, now_rfc3339: &str, tool_version: &str) -> Value {
    let vulns: Vec<Value> = report
        .findings
        .iter()
        .filter_map(|f| {
            let FindingKind::Vulnerability {
                ids,
                aliases,
                summary,
                severity,
                score,
                vector,
                fixed,
                ..
            } = &f.kind
            else {
                return None;
            };
            let c = f.component.as_ref()?;
            let id = ids.first()?.clone();
            let mut references: Vec<Value> = ids
                .iter()
                .skip(1)
                .chain(aliases)
                .map(|a| json!({ "id": a, "source": { "name": source_name(a) } }))
                .collect();
            references.dedup();
            let rating = match (score, vector) {
                (Some(s), Some(v)) => json!({
                    "score": s, "severity": cdx_severity(*severity),
                    "method": cdx_method(v), "vector": v,
                }),
                _ => json!({ "severity": cdx_severity(*severity), "method": "other" }),
            };
            let analysis = match &f.waived_by {
                Some(w) => json!({
                    "state": "exploitable",
                    "response": ["will_not_fix"],
                    "detail": format!("waived by {} until {}: {}", w.owner, w.expires, w.reason),
                }),
                None => json!({ "state": "in_triage" }),
            };
            Some(json!({
                "bom-ref": format!("{}#{}", id, c.reference),
                "id": id,
                "source": { "name": source_name(&id) },
                "references": references,
                "ratings": [rating],
                "description": summary,
                "recommendation": if fixed.is_empty() { String::new() } else { format!("upgrade to {}", fixed.join(" or ")) },
                "affects": [{ "ref": c.reference }],
                "analysis": analysis,
            }))
        })
        .collect();
    json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": serial,
        "version": 1,
        "metadata": {
            "timestamp": now_rfc3339,
            "tools": { "components": [{ "type": "application", "name": "fleetward", "version": tool_version }] },
        },
        "vulnerabilities": vulns,
    })
}

fn cdx_severity(s: Severity) -> &'static str {
    match s {
        Severity::Unknown => "unknown",
        Severity::None => "none",
        Severity::Low => "low",
        Severity::Medium => "medium",
        Severity::High => "high",
        Severity::Critical => "critical",
    }
}

fn source_name(id: &str) -> &'static str {
    match id.split('-').next().unwrap_or("") {
        "CVE" => "NVD",
        "GHSA" => "GitHub",
        "RUSTSEC" => "RustSec",
        "PYSEC" => "PyPA",
        "GO" => "Go",
        "CURL" => "curl",
        "OSV" => "OSS-Fuzz",
        _ => "OSV",
    }
}
