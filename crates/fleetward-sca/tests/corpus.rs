//! The correctness bar: for every lock file in the SBOM corpus, the advisory
//! ids the scan reports with the RustSec data equal what cargo-audit
//! reported on the same file (`expected-findings.tsv`, made with
//! `cargo audit --no-fetch --no-yanked`), both for all targets and with
//! `--target-os linux`. The corpus lives in ../shared (not redistributed
//! here); the test says plainly when it is absent and skips.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use fleetward_sca::advisory::parse_rustsec;
use fleetward_sca::policy::Policy;
use fleetward_sca::sbom::{self, Limits};
use fleetward_sca::scan::{self, MemoryAdvisories};

fn shared() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    if dir.join("advisories/rustsec-advisory-db").is_dir() {
        Some(dir)
    } else {
        eprintln!("SKIPPED: ../shared/data (advisories and SBOM corpus) is not present");
        None
    }
}

fn load_rustsec(root: &Path) -> MemoryAdvisories {
    let mut mem = MemoryAdvisories::default();
    let mut count = 0;
    for collection in ["crates", "rust"] {
        let mut stack = vec![root.join(collection)];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "md") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    let adv = parse_rustsec(&text, collection)
                        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                    mem.insert(adv);
                    count += 1;
                }
            }
        }
    }
    assert_eq!(count, 1225, "advisory count cargo-audit saw");
    mem
}

fn expected(tsv: &Path) -> BTreeSet<(String, String, String)> {
    std::fs::read_to_string(tsv)
        .unwrap()
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            (cols[1].to_owned(), cols[2].to_owned(), cols[3].to_owned())
        })
        .collect()
}

#[test]
fn cargo_lock_findings_equal_cargo_audit() {
    let Some(data) = shared() else { return };
    let db = load_rustsec(&data.join("advisories/rustsec-advisory-db"));
    let now = time::macros::datetime!(2026-08-22 00:00 UTC);
    let mut checked = 0;
    let mut total = 0;
    for group in ["cargo-real", "cargo-synthetic"] {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(data.join("sbom-corpus").join(group))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.join("Cargo.lock").is_file())
            .collect();
        dirs.sort();
        for dir in dirs {
            let lock = std::fs::read(dir.join("Cargo.lock")).unwrap();
            let sbom = sbom::parse(&lock, &Limits::default())
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            for (suffix, target_os) in [("", vec![]), (".target-linux", vec!["linux".to_owned()])] {
                let mut policy = Policy::parse("").unwrap();
                policy.target_os = target_os;
                let report = scan::scan(&sbom, &db, Some(now), &policy, now).unwrap();
                let got: BTreeSet<(String, String, String)> = report
                    .findings
                    .iter()
                    .filter_map(|f| match &f.kind {
                        scan::FindingKind::Vulnerability { ids, .. } => {
                            let c = f.component.as_ref()?;
                            Some(ids.iter().map(move |id| {
                                (
                                    id.clone(),
                                    c.name.clone(),
                                    c.version.clone().unwrap_or_default(),
                                )
                            }))
                        }
                        _ => None,
                    })
                    .flatten()
                    .collect();
                let want = expected(&dir.join(format!("expected-findings{suffix}.tsv")));
                assert_eq!(
                    got,
                    want,
                    "{}{suffix}: missing {:?}, extra {:?}",
                    dir.display(),
                    want.difference(&got).collect::<Vec<_>>(),
                    got.difference(&want).collect::<Vec<_>>()
                );
                checked += 1;
                total += want.len();
            }
        }
    }
    assert_eq!(checked, 26, "13 lock files, two target settings each");
    eprintln!("{checked} lock-file scans agree with cargo-audit on {total} findings");
}

fn cdx_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            cdx_files(&path, out);
        } else if path.to_string_lossy().ends_with(".cdx.json") {
            out.push(path);
        }
    }
}

/// The cargo-cyclonedx SBOMs of the same projects give cargo-audit's rows
/// for the crates they list (`expected-findings.sbom.tsv`); path members
/// (`download_url=file://…`) are not matched against crates.io advisories.
#[test]
fn cargo_cyclonedx_sboms_equal_cargo_audit_rows() {
    let Some(data) = shared() else { return };
    let db = load_rustsec(&data.join("advisories/rustsec-advisory-db"));
    let now = time::macros::datetime!(2026-08-22 00:00 UTC);
    let policy = Policy::parse("").unwrap();
    let mut projects = 0;
    let mut total = 0;
    for group in ["cargo-real", "cargo-synthetic"] {
        for entry in std::fs::read_dir(data.join("sbom-corpus").join(group)).unwrap() {
            let dir = entry.unwrap().path();
            let tsv = dir.join("expected-findings.sbom.tsv");
            if !tsv.is_file() {
                continue;
            }
            let mut files = Vec::new();
            cdx_files(&dir, &mut files);
            assert!(!files.is_empty(), "{}", dir.display());
            let mut got = BTreeSet::new();
            for file in files {
                let sbom = sbom::parse(&std::fs::read(&file).unwrap(), &Limits::default())
                    .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
                let report = scan::scan(&sbom, &db, Some(now), &policy, now).unwrap();
                for f in &report.findings {
                    if let scan::FindingKind::Vulnerability { ids, .. } = &f.kind {
                        let c = f.component.as_ref().unwrap();
                        for id in ids {
                            got.insert((
                                id.clone(),
                                c.name.clone(),
                                c.version.clone().unwrap_or_default(),
                            ));
                        }
                    }
                }
            }
            let want = expected(&tsv);
            assert_eq!(got, want, "{}", dir.display());
            projects += 1;
            total += want.len();
        }
    }
    assert_eq!(projects, 10);
    eprintln!("{projects} projects' SBOMs agree with cargo-audit on {total} findings");
}
