//! `fleetward advisories import` and `fleetward scan` as a CI step uses
//! them: the real binary, no server, exit codes 0 / 1 / 2, every output
//! format. Advisory fixtures are the small ones of fleetward-advisories;
//! the RustSec comparison runs when ../shared is present.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_fleetward");

fn fleetward(data_dir: &Path) -> Command {
    let mut command = Command::new(BIN);
    for (key, _) in std::env::vars() {
        if key.starts_with("FLEETWARD_") {
            command.env_remove(key);
        }
    }
    command.arg("--data-dir").arg(data_dir).stdin(Stdio::null());
    // No ./fleetward-policy.toml from wherever the tests run.
    command.current_dir(data_dir.parent().unwrap());
    command
}

fn run(command: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = command.output().expect("running fleetward");
    (
        status.code().unwrap(),
        String::from_utf8(stdout).unwrap(),
        String::from_utf8(stderr).unwrap(),
    )
}

fn manifest() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_owned()
}

fn fixture_db() -> PathBuf {
    manifest().join("../fleetward-advisories/tests/data/db")
}

fn sbom() -> PathBuf {
    manifest().join("tests/data/scan-router.cdx.json")
}

/// A data dir with the fixture advisories imported.
fn imported() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (code, out, err) = run(fleetward(&data)
        .args(["advisories", "import"])
        .arg(fixture_db()));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("imported 2 advisories"), "{out}");
    assert!(err.contains("3 files could not be imported"), "{err}");
    assert!(err.contains("OSV-BROKEN.json: line 1"), "{err}");
    (tmp, data)
}

#[test]
fn scan_exit_codes_and_formats() {
    let (tmp, data) = imported();
    // Fails: a denied licence, an invalid one, vulnerable PyYAML.
    let (code, out, _) = run(fleetward(&data).arg("scan").arg(sbom()));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("license.denied") && out.contains("bash@5.0"),
        "{out}"
    );
    assert!(out.contains("PYSEC-2020-96"), "{out}");
    assert!(out.contains("policy: built-in firmware default"), "{out}");

    let (code, out, _) = run(fleetward(&data)
        .args(["scan", "--format", "json"])
        .arg(sbom()));
    assert_eq!(code, 1);
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["verdict"], "fail");
    assert!(
        json["findings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["rule"].is_string())
    );

    let (code, out, _) = run(fleetward(&data)
        .args(["scan", "--format", "sarif"])
        .arg(sbom()));
    assert_eq!(code, 1);
    let sarif: Value = serde_json::from_str(&out).unwrap();
    check_sarif(&sarif);

    let (code, out, _) = run(fleetward(&data)
        .args(["scan", "--format", "vex"])
        .arg(sbom()));
    assert_eq!(code, 1);
    let vex: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(vex["specVersion"], "1.5");
    assert!(
        vex["serialNumber"]
            .as_str()
            .unwrap()
            .starts_with("urn:uuid:")
    );
    assert!(!vex["vulnerabilities"].as_array().unwrap().is_empty());

    // A policy that waives and allows what this image has: exit 0.
    let policy = tmp.path().join("fleetward-policy.toml");
    std::fs::write(
        &policy,
        r#"
[vulnerabilities]
fail_on = "critical"
[licenses]
deny = []
invalid = "warn"
[[waivers]]
id = "CVE-2020-1747"
reason = "full_load is not reachable"
owner = "security@example.com"
expires = 2999-01-01
"#,
    )
    .unwrap();
    let (code, out, _) = run(fleetward(&data)
        .arg("scan")
        .arg("--policy")
        .arg(&policy)
        .arg(sbom()));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("waived"), "{out}");
    // ./fleetward-policy.toml is picked up when --policy is not given.
    let (code, out, _) = run(fleetward(&data).arg("scan").arg(sbom()));
    assert_eq!(code, 0, "{out}");
}

/// The structure SARIF 2.1.0 requires (what code-scanning uploads check):
/// version, runs[].tool.driver.name, results with ruleId/message.text and
/// a valid level, rule indexes pointing at the driver's rules, artifact URIs.
fn check_sarif(sarif: &Value) {
    assert_eq!(sarif["version"], "2.1.0");
    assert!(sarif["$schema"].as_str().unwrap().contains("sarif-2.1.0"));
    let runs = sarif["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    let driver = &runs[0]["tool"]["driver"];
    assert_eq!(driver["name"], "fleetward");
    let rules = driver["rules"].as_array().unwrap();
    let mut ids: Vec<&str> = rules.iter().map(|r| r["id"].as_str().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), rules.len(), "rule ids are unique");
    for r in rules {
        assert!(r["shortDescription"]["text"].is_string());
    }
    for result in runs[0]["results"].as_array().unwrap() {
        let rule = result["ruleId"].as_str().unwrap();
        let idx = result["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[idx]["id"], rule);
        assert!(["none", "note", "warning", "error"].contains(&result["level"].as_str().unwrap()));
        assert!(!result["message"]["text"].as_str().unwrap().is_empty());
        for loc in result["locations"].as_array().unwrap() {
            assert!(loc["physicalLocation"]["artifactLocation"]["uri"].is_string());
        }
        if let Some(s) = result.get("suppressions") {
            assert_eq!(s[0]["kind"], "external");
        }
    }
}

#[test]
fn scan_errors_exit_2_with_a_clear_message() {
    let (tmp, data) = imported();
    let bad = tmp.path().join("bad.cdx.json");
    std::fs::write(
        &bad,
        "{\"bomFormat\": \"CycloneDX\", \"specVersion\": \"1.5\",\n \"components\": [ }",
    )
    .unwrap();
    let (code, _, err) = run(fleetward(&data).arg("scan").arg(&bad));
    assert_eq!(code, 2);
    assert!(
        err.contains("bad.cdx.json") && err.contains("line 2"),
        "{err}"
    );

    let future = tmp.path().join("future.cdx.json");
    std::fs::write(
        &future,
        r#"{"bomFormat": "CycloneDX", "specVersion": "1.9"}"#,
    )
    .unwrap();
    let (code, _, err) = run(fleetward(&data).arg("scan").arg(&future));
    assert_eq!(code, 2);
    assert!(
        err.contains("1.9") && err.contains("not supported"),
        "{err}"
    );

    let purl = tmp.path().join("purl.cdx.json");
    std::fs::write(&purl, r#"{"bomFormat": "CycloneDX", "specVersion": "1.5", "components": [{"name": "x", "purl": "pkg:x"}]}"#).unwrap();
    let (code, _, err) = run(fleetward(&data).arg("scan").arg(&purl));
    assert_eq!(code, 2);
    assert!(err.contains("components[0].purl"), "{err}");

    let policy = tmp.path().join("broken-policy.toml");
    std::fs::write(&policy, "[[waivers]]\nid = \"X\"\n").unwrap();
    let (code, _, err) = run(fleetward(&data)
        .arg("scan")
        .arg("--policy")
        .arg(&policy)
        .arg(sbom()));
    assert_eq!(code, 2);
    assert!(
        err.contains("broken-policy.toml") && err.contains("reason is required"),
        "{err}"
    );

    let (code, _, err) = run(fleetward(&data)
        .arg("scan")
        .arg("--policy")
        .arg(tmp.path().join("none.toml"))
        .arg(sbom()));
    assert_eq!(code, 2);
    assert!(err.contains("none.toml"), "{err}");

    let empty = tmp.path().join("empty-data");
    let (code, _, err) = run(fleetward(&empty).arg("scan").arg(sbom()));
    assert_eq!(code, 2);
    assert!(
        err.contains("no advisory index") && err.contains("fleetward advisories import"),
        "{err}"
    );

    let (code, _, err) = run(fleetward(&data)
        .args(["advisories", "import"])
        .arg(tmp.path().join("missing-dir")));
    assert_eq!(code, 2);
    assert!(err.contains("missing-dir"), "{err}");
}

#[test]
fn cargo_lock_scan_matches_cargo_audit() {
    let shared = manifest().join("../../../shared/data");
    if !shared.join("advisories/rustsec-advisory-db").is_dir() {
        eprintln!("SKIPPED: ../shared/data is not present");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (code, out, err) = run(fleetward(&data)
        .args(["advisories", "import"])
        .arg(shared.join("advisories/rustsec-advisory-db")));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("imported 1225 advisories"), "{out}");
    let dir = shared.join("sbom-corpus/cargo-synthetic/lockfile-edge-cases");
    let (code, out, _) = run(fleetward(&data)
        .args(["--json", "scan"])
        .arg(dir.join("Cargo.lock")));
    assert_eq!(code, 1);
    let report: Value = serde_json::from_str(&out).unwrap();
    let mut got: Vec<String> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|f| f["ids"].as_array().cloned().unwrap_or_default())
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    got.sort();
    got.dedup();
    let audit: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("expected-cargo-audit.json")).unwrap(),
    )
    .unwrap();
    let mut want: Vec<String> = audit["vulnerabilities"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["advisory"]["id"].as_str().unwrap().to_owned())
        .chain(
            audit["warnings"]
                .as_object()
                .unwrap()
                .values()
                .flat_map(|l| {
                    l.as_array()
                        .unwrap()
                        .iter()
                        .map(|w| w["advisory"]["id"].as_str().unwrap().to_owned())
                        .collect::<Vec<_>>()
                }),
        )
        .collect();
    want.sort();
    want.dedup();
    assert_eq!(got, want);
}
