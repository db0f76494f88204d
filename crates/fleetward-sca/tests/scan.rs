//! Scans of small fixtures (tests/data): matching, alias merging,
//! withdrawn records, severity threshold, licences, unidentifiable
//! components, advisory age, waivers, and the SARIF / VEX shapes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use fleetward_sca::advisory::parse_osv_json;
use fleetward_sca::policy::Policy;
use fleetward_sca::report;
use fleetward_sca::sbom::{self, Limits, SbomError};
use fleetward_sca::scan::{self, FindingKind, Level, MemoryAdvisories, Report, Verdict};
use fleetward_sca::severity::{self, Severity};
use time::OffsetDateTime;
use time::macros::datetime;

const NOW: OffsetDateTime = datetime!(2026-12-04 12:00 UTC);

fn data(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(name),
    )
    .unwrap()
}

fn advisories() -> MemoryAdvisories {
    let mut mem = MemoryAdvisories::default();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/osv");
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        mem.insert(parse_osv_json(&text).unwrap());
    }
    mem
}

fn run(file: &str, policy: &Policy) -> Report {
    let sbom = sbom::parse(&data(file), &Limits::default()).unwrap();
    scan::scan(&sbom, &advisories(), Some(NOW), policy, NOW).unwrap()
}

fn rules(report: &Report) -> Vec<(String, &'static str, Level)> {
    let mut v: Vec<_> = report
        .findings
        .iter()
        .map(|f| {
            let name = f
                .component
                .as_ref()
                .map(|c| c.name.clone())
                .unwrap_or_default();
            (name, f.rule, f.level)
        })
        .collect();
    v.sort();
    v
}

#[test]
fn cyclonedx_firmware_scan() {
    let report = run("router.cdx.json", &Policy::default_firmware());
    assert_eq!(report.verdict, Verdict::Fail);
    assert_eq!(
        report.stats.components, 6,
        "nested components and metadata.component count"
    );
    assert_eq!(report.stats.unidentifiable, 1);
    assert_eq!(report.stats.not_from_registry, 1, "the file:// cargo crate");
    assert_eq!(
        rules(&report),
        vec![
            ("PyYAML".into(), "vulnerability.severity", Level::Info),
            ("PyYAML".into(), "vulnerability.severity", Level::Fail),
            ("app".into(), "license.invalid", Level::Fail),
            ("bash".into(), "license.denied", Level::Fail),
            ("curl".into(), "vulnerability.severity", Level::Fail),
            ("wifi-blob".into(), "component.unidentifiable", Level::Warn),
            ("wifi-blob".into(), "license.unknown", Level::Warn),
        ]
    );
    // The same CVE from PyPA and GitHub is one finding listing both ids,
    // rated by the vector's computed score; the withdrawn record is absent.
    let pyyaml = report
        .findings
        .iter()
        .find(|f| f.level == Level::Fail && f.component.as_ref().unwrap().name == "PyYAML")
        .unwrap();
    let FindingKind::Vulnerability {
        ids,
        aliases,
        severity,
        score,
        fixed,
        ..
    } = &pyyaml.kind
    else {
        panic!()
    };
    assert_eq!(ids, &["GHSA-6757-jp84-gxfx", "PYSEC-2020-96"]);
    assert_eq!(aliases, &["CVE-2020-1747"]);
    assert_eq!((*severity, *score), (Severity::Critical, Some(9.8)));
    assert_eq!(fixed, &["5.3.1"]);
    assert!(!report.advisory_ids().contains("PYSEC-9999-1"));
    // curl matched through its CPE (no purl), rated by the source's "Medium".
    let curl = report
        .findings
        .iter()
        .find(|f| f.component.as_ref().is_some_and(|c| c.name == "curl"))
        .unwrap();
    assert!(matches!(
        &curl.kind,
        FindingKind::Vulnerability {
            severity: Severity::Medium,
            ..
        }
    ));
    assert!(curl.message.contains("CURL-CVE-2020-8169"));
}

#[test]
fn spdx_gives_the_same_vulnerabilities() {
    let report = run("router.spdx.json", &Policy::default_firmware());
    let ids = report.advisory_ids();
    assert_eq!(
        ids.into_iter().collect::<Vec<_>>(),
        vec![
            "CURL-CVE-2020-8169",
            "GHSA-6757-jp84-gxfx",
            "PYSEC-2020-96",
            "PYSEC-9999-2"
        ]
    );
    assert_eq!(report.stats.unidentifiable, 1);
}

#[test]
fn threshold_waivers_and_expiry() {
    let policy = Policy::parse(
        r#"
[vulnerabilities]
fail_on = "critical"
[licenses]
deny = ["GPL-3.0-or-later"]
[[waivers]]
id = "CVE-2020-1747"
reason = "full_load is never called"
owner = "alice@example.com"
expires = 2027-01-31
[[waivers]]
id = "license:bash"
reason = "removed in 1.1"
owner = "bob@example.com"
expires = 2026-12-01
"#,
    )
    .unwrap();
    let report = run("router.cdx.json", &policy);
    let pyyaml = report
        .findings
        .iter()
        .find(|f| f.rule == "vulnerability.severity" && f.level == Level::Fail)
        .unwrap();
    assert_eq!(
        pyyaml.waived_by.as_ref().unwrap().owner,
        "alice@example.com"
    );
    assert!(!pyyaml.fails());
    // curl is medium: below "critical", reported as info.
    let curl = report
        .findings
        .iter()
        .find(|f| f.component.as_ref().is_some_and(|c| c.name == "curl"))
        .unwrap();
    assert_eq!(curl.level, Level::Info);
    // The bash waiver expired on 2026-12-01: the finding counts again and
    // the expiry itself is reported.
    let bash = report
        .findings
        .iter()
        .find(|f| f.rule == "license.denied")
        .unwrap();
    assert!(bash.fails());
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.rule == "waiver.expired" && f.message.contains("bob@example.com"))
    );
    assert_eq!(
        report.verdict,
        Verdict::Fail,
        "license.invalid and bash still fail"
    );
}

#[test]
fn advisory_age() {
    let sbom = sbom::parse(&data("router.spdx.json"), &Limits::default()).unwrap();
    let policy = Policy::parse("[advisories]\nmax_age_days = 7\n").unwrap();
    let old = NOW - time::Duration::days(8);
    let r = scan::scan(&sbom, &advisories(), Some(old), &policy, NOW).unwrap();
    assert!(
        r.findings
            .iter()
            .any(|f| f.rule == "advisories.max-age" && f.fails())
    );
    let r = scan::scan(
        &sbom,
        &advisories(),
        Some(NOW - time::Duration::days(6)),
        &policy,
        NOW,
    )
    .unwrap();
    assert!(!r.findings.iter().any(|f| f.rule == "advisories.max-age"));
    let r = scan::scan(&sbom, &advisories(), None, &policy, NOW).unwrap();
    assert!(r.findings.iter().any(|f| f.rule == "advisories.max-age"));
}

#[test]
fn bad_policies_are_refused() {
    for (text, needle) in [
        ("[vulnerabilities]\nfail_on = \"severe\"\n", "fail_on"),
        ("[vulnerabilites]\n", "unknown field"),
        (
            "[[waivers]]\nid = \"X\"\nowner = \"o\"\nexpires = 2027-01-01\n",
            "reason is required",
        ),
        (
            "[[waivers]]\nid = \"X\"\nreason = \"r\"\nowner = \"o\"\n",
            "expires is required",
        ),
        (
            "[[waivers]]\nid = \"X\"\nreason = \"r\"\nowner = \"o\"\nexpires = \"soon\"\n",
            "not a date",
        ),
        ("[licenses\n", "line 1"),
    ] {
        let err = Policy::parse(text).unwrap_err().to_string();
        assert!(err.contains(needle), "{text:?}: {err}");
    }
    Policy::parse(fleetward_sca::DEFAULT_FIRMWARE_POLICY).unwrap();
}

#[test]
fn bad_sboms_name_the_position() {
    let limits = Limits::default();
    let check = |input: &[u8], needle: &str| {
        let err = sbom::parse(input, &limits).unwrap_err().to_string();
        assert!(
            err.contains(needle),
            "{}: {err}",
            String::from_utf8_lossy(&input[..input.len().min(60)])
        );
    };
    check(
        b"{\"bomFormat\": \"CycloneDX\", \"specVersion\": \"1.5\",\n \"components\": [ }",
        "line 2",
    );
    check(
        br#"{"bomFormat": "CycloneDX", "specVersion": "2.0"}"#,
        "spec version \"2.0\" is not supported",
    );
    check(br#"{"spdxVersion": "SPDX-3.0"}"#, "not supported");
    check(br#"{"bomFormat": "CycloneDX", "specVersion": "1.6", "components": [{"name": "x", "purl": "pkg:/x"}]}"#, "components[0].purl");
    check(br#"{"bomFormat": "CycloneDX", "specVersion": "1.6", "components": [{"name": "x", "cpe": "cpe:9"}]}"#, "components[0].cpe");
    check(
        br#"{"bomFormat": "CycloneDX", "specVersion": "1.6", "components": {}}"#,
        "expected an array",
    );
    check(br#"{"hello": 1}"#, "not a CycloneDX JSON");
    check(b"<bom/>", "JSON documents only");
    check(b"[[package]]\nname = 1\n", "line 2");
    check(b"\xff\xfe", "not UTF-8");
    // Nesting: serde_json's own recursion limit, then ours for components.
    let deep = format!("{}1{}", "{\"a\":".repeat(10_000), "}".repeat(10_000));
    check(deep.as_bytes(), "recursion limit");
    let mut nested = String::from(r#"{"name":"leaf"}"#);
    for _ in 0..40 {
        nested = format!(r#"{{"name":"n","components":[{nested}]}}"#);
    }
    let doc = format!(r#"{{"bomFormat":"CycloneDX","specVersion":"1.5","components":[{nested}]}}"#);
    check(doc.as_bytes(), "nested deeper than 32");
    let small = Limits {
        max_bytes: 10,
        ..Limits::default()
    };
    assert!(matches!(
        sbom::parse(b"{\"bomFormat\": 1}", &small),
        Err(SbomError::TooLarge { .. })
    ));
    let few = Limits {
        max_components: 2,
        ..Limits::default()
    };
    assert!(matches!(
        sbom::parse(&data("router.cdx.json"), &few),
        Err(SbomError::TooManyComponents { .. })
    ));
}

#[test]
fn cvss_scores_are_computed_from_vectors() {
    for (vector, score, sev) in [
        (
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
            9.8,
            Severity::Critical,
        ),
        (
            "CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
            9.8,
            Severity::Critical,
        ),
        (
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N",
            6.1,
            Severity::Medium,
        ),
        (
            "CVSS:3.1/AV:L/AC:H/PR:H/UI:N/S:U/C:L/I:H/A:N",
            4.7,
            Severity::Medium,
        ),
        (
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H",
            10.0,
            Severity::Critical,
        ),
        (
            "CVSS:3.1/AV:P/AC:H/PR:H/UI:R/S:U/C:N/I:N/A:N",
            0.0,
            Severity::None,
        ),
        (
            "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:H/SI:H/SA:H",
            10.0,
            Severity::Critical,
        ),
        (
            "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:N/VI:N/VA:N/SC:N/SI:N/SA:N",
            0.0,
            Severity::None,
        ),
    ] {
        let s = severity::score(vector).unwrap_or_else(|| panic!("{vector}"));
        assert_eq!((s.score, s.severity), (score, sev), "{vector}");
    }
    assert!(severity::score("CVSS:3.1/AV:X").is_none());
    assert!(
        severity::score("AV:N/AC:L/Au:N/C:P/I:P/A:P").is_none(),
        "v2 is not scored"
    );
}

#[test]
fn sarif_and_vex_shapes() {
    let report = run("router.cdx.json", &Policy::default_firmware());
    let sarif = report::sarif(&report, "router.cdx.json", "0.1.0");
    assert_eq!(sarif["version"], "2.1.0");
    let run = &sarif["runs"][0];
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    for result in run["results"].as_array().unwrap() {
        let idx = result["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[idx]["id"], result["ruleId"]);
        assert!(["error", "warning", "note"].contains(&result["level"].as_str().unwrap()));
        assert!(
            result["message"]["text"]
                .as_str()
                .is_some_and(|t| !t.is_empty())
        );
    }
    let vex = report::vex(
        &report,
        "urn:uuid:00000000-0000-4000-8000-000000000000",
        "2026-12-04T12:00:00Z",
        "0.1.0",
    );
    assert_eq!(vex["bomFormat"], "CycloneDX");
    let vulns = vex["vulnerabilities"].as_array().unwrap();
    assert_eq!(vulns.len(), 3);
    for v in vulns {
        assert!(v["affects"][0]["ref"].as_str().is_some());
        assert_eq!(v["analysis"]["state"], "in_triage");
    }
    let table = report::table(&report);
    assert!(table.contains("FAIL: 6 components"), "{table}");
}

#[test]
fn explicit_version_lists_match_whole_entries_only() {
    use fleetward_sca::advisory::VersionList;
    let list = VersionList::new(vec![
        "1.10".into(),
        "1.1".into(),
        "0.9".into(),
        "1.1".into(),
    ])
    .unwrap();
    assert_eq!(list.as_block(), "0.9\n1.1\n1.10");
    for (v, expected) in [
        ("1.1", true),
        ("1.10", true),
        ("0.9", true),
        ("1", false),
        ("1.", false),
        ("10", false),
        (".9", false),
        ("1.1\n1.10", false),
        ("", false),
    ] {
        assert_eq!(list.contains(v), expected, "{v:?}");
    }
    assert!(!VersionList::default().contains("1.0"));
    assert!(VersionList::new(vec!["".into()]).is_err());
    assert!(VersionList::new(vec!["1.0\n2.0".into()]).is_err());
    assert_eq!(VersionList::from_block(list.as_block().to_owned()), list);
    // A damaged block still answers exactly: an empty line matches nothing.
    let damaged = VersionList::from_block("1.1\n\n0.9".into());
    assert!(damaged.contains("0.9") && damaged.contains("1.1") && !damaged.contains(""));
}

#[test]
fn range_events_zero_star_and_unreadable_versions() {
    use fleetward_sca::advisory::{Event, range_affects};
    use fleetward_sca::version::Scheme;
    let ev = |list: &[(&str, &str)]| -> Vec<Event> {
        list.iter()
            .map(|(k, v)| match *k {
                "i" => Event::Introduced((*v).into()),
                "f" => Event::Fixed((*v).into()),
                "l" => Event::LastAffected((*v).into()),
                _ => Event::Limit((*v).into()),
            })
            .collect()
    };
    let check = |events: &[(&str, &str)], version: &str, expected: bool| {
        assert_eq!(
            range_affects(Scheme::Semver, &ev(events), version).unwrap(),
            expected,
            "{events:?} {version}"
        );
    };
    // Events out of order are sorted; "0" is before everything.
    check(&[("f", "1.2.0"), ("i", "0")], "1.1.9", true);
    check(&[("f", "1.2.0"), ("i", "0")], "1.2.0", false);
    check(&[("i", "1.0.0"), ("l", "1.0.5")], "1.0.5", true);
    check(&[("i", "1.0.0"), ("l", "1.0.5")], "1.0.6", false);
    // A limit of "*" is no limit (it is not a semver version).
    check(&[("i", "0"), ("m", "*")], "9.9.9", true);
    check(&[("i", "1.0.0"), ("m", "*"), ("f", "2.0.0")], "1.5.0", true);
    check(&[("i", "1.0.0"), ("m", "1.2.0")], "1.3.0", false);
    // An unreadable event or version is an error, not "not affected".
    assert!(range_affects(Scheme::Semver, &ev(&[("i", "x.y")]), "1.0.0").is_err());
    assert!(range_affects(Scheme::Semver, &ev(&[("i", "0")]), "not-a-version").is_err());
}

/// A large SBOM is scanned on several threads; the report is the one a
/// scan of each component alone, in order, gives: the same findings in the
/// same order, the same counts.
#[test]
fn a_large_sbom_scanned_in_parts_reports_as_one_scan_would() {
    let router = sbom::parse(&data("router.cdx.json"), &Limits::default()).unwrap();
    let mut large = router.clone();
    large.components = (0..2000)
        .map(|n| router.components[n % router.components.len()].clone())
        .collect();
    let policy = Policy::default_firmware();
    let whole = scan::scan(&large, &advisories(), Some(NOW), &policy, NOW).unwrap();
    let mut findings = Vec::new();
    let mut checked = 0;
    for component in &large.components {
        let mut one = large.clone();
        one.components = vec![component.clone()];
        let alone = scan::scan(&one, &advisories(), Some(NOW), &policy, NOW).unwrap();
        checked += alone.stats.advisories_checked;
        findings.extend(alone.findings);
    }
    assert!(!findings.is_empty());
    assert_eq!(whole.findings, findings);
    assert_eq!(whole.stats.components, 2000);
    assert_eq!(whole.stats.advisories_checked, checked);
}
