//! What `fleetward scan --format json` does, without the rest of the CLI, so
//! a profiler (perf, callgrind) sees the scan alone and a change to the
//! index or the scan can be measured without building the server:
//!
//! `cargo run --release -p fleetward-advisories --example scan_profile -- INDEX_DIR SBOM [RUNS]`
//! (`… -- import INDEX_DIR SOURCE…` makes the index first)

use std::io::Write as _;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    if let Some(first) = std::env::args().nth(1)
        && first == "import"
    {
        // `scan_profile import OUT_DIR SOURCE...`: makes the index to profile against.
        let mut rest = args.skip(1);
        let out = PathBuf::from(rest.next().ok_or("usage: scan_profile import OUT SRC...")?);
        let sources: Vec<PathBuf> = rest.map(PathBuf::from).collect();
        let report = fleetward_advisories::import(&sources, &out, time::OffsetDateTime::now_utc())?;
        eprintln!(
            "{} advisories, {} keys",
            report.header.advisories, report.header.keys
        );
        return Ok(());
    }
    let (Some(dir), Some(sbom_path)) = (args.next(), args.next()) else {
        return Err("usage: scan_profile INDEX_DIR SBOM [RUNS]".into());
    };
    let runs: usize = args.next().map_or(Ok(1), |r| r.parse())?;
    let policy = fleetward_sca::Policy::parse("[vulnerabilities]\nfail_on = \"critical\"\n")?;
    for _ in 0..runs {
        let bytes = std::fs::read(PathBuf::from(&sbom_path))?;
        let sbom = fleetward_sca::sbom::parse(&bytes, &fleetward_sca::sbom::Limits::default())?;
        let index = fleetward_advisories::Index::open(&PathBuf::from(&dir))?;
        let imported_at = index.imported_at();
        let report = fleetward_sca::scan(
            &sbom,
            &index,
            Some(imported_at),
            &policy,
            time::OffsetDateTime::now_utc(),
        )?;
        // As the CLI writes `--format json`: the report streamed, no `Value`.
        let mut out = std::io::BufWriter::new(std::io::sink());
        serde_json::to_writer_pretty(&mut out, &report)?;
        out.flush()?;
        eprintln!("{} findings", report.findings.len());
    }
    Ok(())
}
