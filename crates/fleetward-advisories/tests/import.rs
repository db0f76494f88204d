//! Import from directories and zip files, bad files reported without
//! stopping the import, the index read back by key; and, with ../shared
//! present, the whole advisory collection imported and the firmware and
//! PyPI corpora matched against their expected findings.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use fleetward_advisories::{Index, IndexError, import};
use fleetward_sca::advisory::index_key;
use fleetward_sca::policy::Policy;
use fleetward_sca::sbom::{self, Limits};
use fleetward_sca::scan;
use time::macros::datetime;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/db")
}

#[test]
fn import_directory_reports_bad_files_and_keeps_the_rest() {
    let out = tempfile::tempdir().unwrap();
    let now = datetime!(2026-12-04 12:00 UTC);
    let report = import(&[fixture()], out.path(), now).unwrap();
    assert_eq!(report.header.advisories, 2);
    assert_eq!(report.skipped, 1, "LICENSE.txt");
    let mut errors: Vec<(String, String)> = report
        .errors
        .iter()
        .map(|e| {
            (
                e.file.rsplit('/').next().unwrap().to_owned(),
                e.error.clone(),
            )
        })
        .collect();
    errors.sort();
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert_eq!(errors[0].0, "BROKEN.yaml");
    assert!(errors[0].1.contains("line"), "{errors:?}");
    assert_eq!(errors[1].0, "OSV-BROKEN.json");
    assert!(errors[1].1.contains("line 1"), "{errors:?}");
    assert_eq!(errors[2].0, "RUSTSEC-2099-0001.md");
    assert!(
        errors[2].1.contains("bad version requirement"),
        "{errors:?}"
    );

    let index = Index::open(out.path()).unwrap();
    assert_eq!(index.imported_at(), now);
    let smallvec = index.get(&index_key("crates.io", "smallvec")).unwrap();
    assert_eq!(smallvec.len(), 1);
    assert!(smallvec[0].affected[0].affects("1.6.0").unwrap());
    assert!(!smallvec[0].affected[0].affects("1.6.1").unwrap());
    // PEP 503: the index key for "PyYAML" is the one for "pyyaml".
    assert_eq!(index.get(&index_key("PyPI", "pyyaml")).unwrap().len(), 1);
    assert!(index.get(&index_key("PyPI", "nothing")).unwrap().is_empty());
}

#[test]
fn import_zip() {
    let dir = tempfile::tempdir().unwrap();
    let zip_path = dir.path().join("db.zip");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("advisory-db/crates/smallvec/RUSTSEC-2021-0003.md", options)
        .unwrap();
    zip.write_all(&std::fs::read(fixture().join("crates/smallvec/RUSTSEC-2021-0003.md")).unwrap())
        .unwrap();
    zip.start_file("osv/bad.json", options).unwrap();
    zip.write_all(b"{").unwrap();
    zip.finish().unwrap();
    let out = dir.path().join("index");
    let report = import(
        std::slice::from_ref(&zip_path),
        &out,
        datetime!(2026-12-04 12:00 UTC),
    )
    .unwrap();
    assert_eq!(report.header.advisories, 1);
    assert_eq!(report.errors.len(), 1);
    assert!(report.errors[0].file.ends_with("db.zip!/osv/bad.json"));
}

#[test]
fn missing_corrupt_and_empty() {
    let dir = tempfile::tempdir().unwrap();
    let err = Index::open(dir.path()).unwrap_err();
    assert!(matches!(err, IndexError::Missing(_)));
    assert!(
        err.to_string().contains("fleetward advisories import"),
        "{err}"
    );
    std::fs::write(dir.path().join("advisories.idx"), "garbage\n").unwrap();
    assert!(matches!(
        Index::open(dir.path()).unwrap_err(),
        IndexError::Corrupt { .. }
    ));
    let empty = tempfile::tempdir().unwrap();
    let err = import(
        &[empty.path().to_owned()],
        dir.path(),
        datetime!(2026-12-04 12:00 UTC),
    )
    .unwrap_err();
    assert!(matches!(err, IndexError::Empty(_)));
    let not_zip = dir.path().join("x.zip");
    std::fs::write(&not_zip, "not a zip").unwrap();
    let err = import(&[not_zip], dir.path(), datetime!(2026-12-04 12:00 UTC)).unwrap_err();
    assert!(matches!(err, IndexError::Zip { .. }), "{err}");
}

#[test]
fn an_index_in_the_old_json_format_is_refused_with_a_request_to_reimport() {
    let dir = tempfile::tempdir().unwrap();
    // What format 1 wrote: JSON entries behind the `FWADV1` magic.
    std::fs::write(
        dir.path().join("advisories.idx"),
        "FWADV1\n{\"imported_at\":\"2026-12-04T12:00:00Z\",\"sources\":[],\"advisories\":0,\"withdrawn\":0,\"keys\":0}\n[]\n",
    )
    .unwrap();
    let err = Index::open(dir.path()).unwrap_err();
    assert!(matches!(err, IndexError::OldFormat { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains("older format (FWADV1)"), "{message}");
    assert!(message.contains("fleetward advisories import"), "{message}");
}

#[test]
fn a_damaged_entry_is_a_corrupt_index_error_naming_the_key() {
    let out = tempfile::tempdir().unwrap();
    import(&[fixture()], out.path(), datetime!(2026-12-04 12:00 UTC)).unwrap();
    let path = out.path().join("advisories.idx");
    let mut bytes = std::fs::read(&path).unwrap();
    // Cut the last entry short: its slice now runs past the end of the file
    // or decodes to garbage, and either way the lookup says so.
    bytes.truncate(bytes.len() - 3);
    std::fs::write(&path, &bytes).unwrap();
    let index = Index::open(out.path()).unwrap();
    let keys = [
        index_key("crates.io", "smallvec"),
        index_key("PyPI", "pyyaml"),
    ];
    let errors: Vec<String> = keys
        .iter()
        .filter_map(|k| index.get(k).err().map(|e| e.to_string()))
        .collect();
    assert_eq!(
        errors.len(),
        1,
        "exactly the last entry is damaged: {errors:?}"
    );
    assert!(errors[0].contains(".idx"), "{errors:?}");
}

fn shared() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    if dir.join("advisories").is_dir() {
        Some(dir)
    } else {
        eprintln!("SKIPPED: ../shared/data is not present");
        None
    }
}

fn expected(tsv: &Path) -> BTreeSet<(String, String)> {
    std::fs::read_to_string(tsv)
        .unwrap()
        .lines()
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            (c[0].to_owned(), c[1].to_owned())
        })
        .collect()
}

#[test]
fn whole_collection_firmware_and_pypi_corpora() {
    let Some(data) = shared() else { return };
    let out = tempfile::tempdir().unwrap();
    let now = datetime!(2026-12-04 12:00 UTC);
    let dirs: Vec<PathBuf> = std::fs::read_dir(data.join("advisories"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    let report = import(&dirs, out.path(), now).unwrap();
    eprintln!(
        "imported {} advisories ({} withdrawn) under {} keys from {} files; {} skipped, {} errors",
        report.header.advisories,
        report.header.withdrawn,
        report.header.keys,
        report.files_read,
        report.skipped,
        report.errors.len()
    );
    for e in report.errors.iter().take(10) {
        eprintln!("  {}: {}", e.file, e.error);
    }
    assert!(report.header.advisories > 12_000);
    assert!(
        report.errors.len() < 20,
        "{:?}",
        &report.errors[..report.errors.len().min(20)]
    );
    let index = Index::open(out.path()).unwrap();
    let policy = Policy::parse("").unwrap();
    for (doc, tsv) in [
        (
            "firmware-synthetic/acme-router-fw-1.0.0.cdx.json",
            "firmware-synthetic/expected-vulnerabilities.tsv",
        ),
        (
            "firmware-synthetic/acme-router-fw-1.0.0.spdx.json",
            "firmware-synthetic/expected-vulnerabilities.tsv",
        ),
        (
            "pypi-synthetic/requirements.cdx.json",
            "pypi-synthetic/expected-vulnerabilities.tsv",
        ),
    ] {
        let corpus = data.join("sbom-corpus");
        let sbom = sbom::parse(
            &std::fs::read(corpus.join(doc)).unwrap(),
            &Limits::default(),
        )
        .unwrap();
        let r = scan::scan(&sbom, &index, Some(now), &policy, now).unwrap();
        let want = expected(&corpus.join(tsv));
        let want_ids: BTreeSet<String> = want.iter().map(|(_, id)| id.clone()).collect();
        // Every expected advisory is reported (as an id of its finding,
        // possibly merged with aliases from other databases).
        let got = r.advisory_ids();
        let missing: Vec<_> = want_ids.difference(&got).collect();
        assert!(missing.is_empty(), "{doc}: missing {missing:?}");
        // Nothing beyond them, other than merged aliases of the same vulnerabilities.
        let extra_findings: Vec<String> = r
            .findings
            .iter()
            .filter_map(|f| match &f.kind {
                scan::FindingKind::Vulnerability { ids, .. }
                    if !ids.iter().any(|i| want_ids.contains(i)) =>
                {
                    Some(ids.join(","))
                }
                _ => None,
            })
            .collect();
        assert!(extra_findings.is_empty(), "{doc}: extra {extra_findings:?}");
        eprintln!("{doc}: {} expected advisories all reported", want_ids.len());
    }
}
