//! `fleetward scan`: an SBOM (CycloneDX JSON, SPDX JSON) or a Cargo.lock
//! against the imported advisories and the policy. Needs no server, so it
//! runs as a CI step; exit 0 pass, 1 policy violation, 2 error.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use fleetward_sca::policy::Policy;
use fleetward_sca::report;
use fleetward_sca::sbom::{self, Limits};
use fleetward_sca::scan::Verdict;

use crate::{Cli, exit};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Sarif,
    Vex,
}

#[derive(Debug, Args)]
pub struct ScanArgs {
    /// The SBOM (CycloneDX 1.2-1.6 JSON, SPDX 2.2/2.3 JSON) or Cargo.lock.
    pub sbom: PathBuf,
    /// The advisory index directory (made by `fleetward advisories import`)
    /// [default: DATA_DIR/advisories].
    #[arg(long)]
    pub advisories: Option<PathBuf>,
    /// The policy [default: ./fleetward-policy.toml if present, else the
    /// built-in firmware policy].
    #[arg(long)]
    pub policy: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Only advisories that apply to this OS (as `cargo audit --target-os`);
    /// adds to the policy's `target_os`.
    #[arg(long)]
    pub target_os: Vec<String>,
}

pub fn run(cli: &Cli, args: &ScanArgs) -> anyhow::Result<ExitCode> {
    let (policy, policy_name) = load_policy(args.policy.as_ref())?;
    let mut policy = policy;
    policy.target_os.extend(args.target_os.iter().cloned());
    let bytes =
        std::fs::read(&args.sbom).with_context(|| format!("reading {}", args.sbom.display()))?;
    let sbom = sbom::parse(&bytes, &Limits::default())
        .with_context(|| format!("{}: not a readable SBOM", args.sbom.display()))?;
    let dir = args
        .advisories
        .clone()
        .unwrap_or_else(|| super::advisories::default_dir(cli));
    let index = fleetward_advisories::Index::open(&dir)?;
    let imported_at = index.imported_at();
    let now = time::OffsetDateTime::now_utc();
    let report = fleetward_sca::scan(&sbom, &index, Some(imported_at), &policy, now)
        .map_err(anyhow::Error::msg)
        .context("reading the advisory index")?;
    let uri = args.sbom.display().to_string();
    let version = env!("CARGO_PKG_VERSION");
    let format = if cli.json { Format::Json } else { args.format };
    match format {
        Format::Table => {
            print!("{}", report::table(&report));
            println!("policy: {policy_name}");
        }
        Format::Json => {
            // Straight from the report into a buffered stdout: building a
            // `Value` tree first and dropping it was a fifth of a large
            // scan (BENCHMARKS.md, "SBOM security gate").
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            serde_json::to_writer_pretty(&mut out, &report)?;
            writeln!(out)?;
            out.flush()?;
        }
        Format::Sarif => println!(
            "{}",
            serde_json::to_string_pretty(&report::sarif(&report, &uri, version))?
        ),
        Format::Vex => {
            let mut serial = [0u8; 16];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut serial);
            serial[6] = (serial[6] & 0x0f) | 0x40;
            serial[8] = (serial[8] & 0x3f) | 0x80;
            let h = hex::encode(serial);
            let serial = format!(
                "urn:uuid:{}-{}-{}-{}-{}",
                &h[..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..]
            );
            let ts = now
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            println!(
                "{}",
                serde_json::to_string_pretty(&report::vex(&report, &serial, &ts, version))?
            );
        }
    }
    Ok(match report.verdict {
        Verdict::Pass => ExitCode::SUCCESS,
        Verdict::Fail => ExitCode::from(exit::REFUSED),
    })
}

/// The policy file given, else `./fleetward-policy.toml`, else the
/// built-in firmware policy.
pub fn load_policy(path: Option<&PathBuf>) -> anyhow::Result<(Policy, String)> {
    let default_file = PathBuf::from("fleetward-policy.toml");
    let path = match path {
        Some(p) => Some(p.clone()),
        None if default_file.is_file() => Some(default_file),
        None => None,
    };
    match path {
        Some(p) => {
            let text = std::fs::read_to_string(&p)
                .with_context(|| format!("reading the policy {}", p.display()))?;
            let policy = Policy::parse(&text).with_context(|| format!("policy {}", p.display()))?;
            Ok((policy, p.display().to_string()))
        }
        None => Ok((
            Policy::default_firmware(),
            "built-in firmware default".to_owned(),
        )),
    }
}
