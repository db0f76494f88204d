//! `fleetward release …`: upload, sign (offline keys), publish, retire.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use clap::Subcommand;
use fleetward_tuf::{
    Expiry, ROLE_ROOT, ROLE_SNAPSHOT, ROLE_TARGETS, ROLE_TIMESTAMP, Root, Signed, Targets,
};
use fleetward_wire::release::{
    Artifact, CreateRelease, HEADER_SHA256, HEADER_SHA512, Release, ReleaseList, SigningRequest,
};
use futures::StreamExt as _;
use sha2::{Digest as _, Sha256, Sha512};
use tokio::io::AsyncReadExt as _;

use crate::client::Client;
use crate::cmd::keys::{KeyDir, RoleKeyDir, read_passphrase};
use crate::output;

#[derive(Debug, Subcommand)]
pub enum ReleaseCommand {
    /// Upload an image (and SBOM) and create a draft release.
    Create {
        #[arg(long)]
        version: String,
        #[arg(long)]
        hardware: String,
        /// The image file.
        #[arg(long)]
        artifact: PathBuf,
        /// Its SBOM (CycloneDX or SPDX JSON).
        #[arg(long)]
        sbom: Option<PathBuf>,
        #[arg(long)]
        notes: Option<String>,
        /// Hide the progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// List releases.
    List,
    /// Releases whose SBOM fails the policy against the server's current
    /// advisories (e.g. after a new import), with the devices running each.
    Vulns {
        /// Also list releases that pass.
        #[arg(long)]
        all: bool,
    },
    /// Show one release.
    Show { version: String },
    /// Sign the targets metadata listing this release with the offline
    /// targets keys in --keys, and upload it. Run on the release manager's machine.
    Sign {
        version: String,
        /// The key directory made by `fleetward keys init`.
        #[arg(long)]
        keys: PathBuf,
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
        /// How long the targets metadata stays valid.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "90d")]
        expires: Duration,
        /// Sign with at most this many keys (to add signatures one by one).
        #[arg(long)]
        max_signatures: Option<usize>,
        /// Check the image the server lists against this local file first.
        #[arg(long)]
        artifact: Option<PathBuf>,
    },
    /// Offer a signed release to devices (policy gates permitting).
    Publish { version: String },
    /// Stop offering a published release.
    Deprecate { version: String },
    /// Withdraw a release for good; devices running it are flagged.
    Revoke { version: String },
}

fn bar(len: u64, what: &str, quiet: bool) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg:>9} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_owned());
    bar
}

/// SHA-256 and SHA-512 of a file, read in large chunks.
async fn hash_file(path: &Path, quiet: bool) -> anyhow::Result<(String, String, u64)> {
    let mut file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("opening {}", path.display()))?;
    let length = file.metadata().await?.len();
    let progress = bar(length, "hashing", quiet);
    let mut sha256 = Sha256::new();
    let mut sha512 = Sha512::new();
    let mut buffer = vec![0u8; 1024 * 1024];
    loop {
        let n = file
            .read(&mut buffer)
            .await
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        sha256.update(&buffer[..n]);
        sha512.update(&buffer[..n]);
        progress.inc(n as u64);
    }
    progress.finish_and_clear();
    Ok((
        hex::encode(sha256.finalize()),
        hex::encode(sha512.finalize()),
        length,
    ))
}

/// Streams a file to the artifact store with a progress bar.
pub async fn upload(client: &Client, path: &Path, quiet: bool) -> anyhow::Result<Artifact> {
    let (sha256, sha512, length) = hash_file(path, quiet).await?;
    let file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("opening {}", path.display()))?;
    let progress = bar(length, "uploading", quiet);
    let counter = progress.clone();
    let stream =
        tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024).inspect(move |chunk| {
            if let Ok(chunk) = chunk {
                counter.inc(chunk.len() as u64);
            }
        });
    let artifact: Artifact = client
        .post_raw(
            "/api/v1/artifacts",
            &[
                (HEADER_SHA256, sha256),
                (HEADER_SHA512, sha512),
                ("content-length", length.to_string()),
                ("content-type", "application/octet-stream".to_owned()),
            ],
            reqwest::Body::wrap_stream(stream),
        )
        .await
        .with_context(|| format!("uploading {}", path.display()))?;
    progress.finish_and_clear();
    Ok(artifact)
}

fn print_release(release: &Release) {
    println!(
        "release {} for {}: {}",
        release.version, release.hardware, release.state
    );
    println!("  target   {}", release.target_name);
    println!("  length   {}", release.length);
    println!("  sha256   {}", release.artifact_sha256);
    if let Some(sbom) = &release.sbom_sha256 {
        println!("  sbom     {sbom}");
    }
    if !release.notes.is_empty() {
        println!("  notes    {}", release.notes);
    }
    if !release.flagged_devices.is_empty() {
        println!(
            "  flagged  {} device(s) still run this revoked release: {}",
            release.flagged_devices.len(),
            release.flagged_devices.join(", ")
        );
    }
}

/// A root that trusts only `keys` for targets, to check metadata with.
/// Whose keys sign a release: the top-level targets role, or the
/// delegated role of its product line.
enum Signer {
    TopLevel(KeyDir),
    Delegated(RoleKeyDir),
}

pub(crate) fn targets_trust(keys: &KeyDir) -> anyhow::Result<Root> {
    let public = keys.targets_public();
    let threshold = keys.manifest.targets_threshold;
    Ok(Root::new(
        1,
        Expiry::at(time::OffsetDateTime::now_utc() + time::Duration::days(1)),
        &[
            (ROLE_ROOT, &public, threshold),
            (ROLE_TARGETS, &public, threshold),
            (ROLE_SNAPSHOT, &public, 1),
            (ROLE_TIMESTAMP, &public, 1),
        ],
    )?)
}

#[allow(clippy::too_many_arguments)]
async fn sign(
    client: &Client,
    json: bool,
    version: &str,
    keys: &Path,
    passphrase_file: Option<&Path>,
    expires: Duration,
    max_signatures: Option<usize>,
    artifact: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let passphrase = read_passphrase(passphrase_file)?;
    let passphrase = passphrase.as_deref().map(|p| p.as_slice());
    let keys = if RoleKeyDir::is_role_dir(keys) {
        Signer::Delegated(RoleKeyDir::load(keys, passphrase)?)
    } else {
        Signer::TopLevel(KeyDir::load(keys, passphrase)?)
    };
    let release: Release = client
        .get(&format!("/api/v1/releases/{version}"), &[])
        .await?;
    let request: SigningRequest = client
        .get(&format!("/api/v1/releases/{version}/signing-request"), &[])
        .await?;
    let mut proposal: Targets = serde_json::from_value(request.signed)
        .context("the server's signing request is not targets metadata")?;
    let role_name = request.role.as_deref().unwrap_or(ROLE_TARGETS);
    match (&keys, &request.role) {
        (Signer::TopLevel(_), None) => {}
        (Signer::Delegated(dir), Some(role)) if dir.manifest.role == *role => {}
        (Signer::TopLevel(_), Some(role)) => bail!(
            "{} is signed by the delegated role {role} (its product line); pass that role's key directory to --keys",
            release.target_name
        ),
        (Signer::Delegated(dir), _) => bail!(
            "{} is signed by the {role_name} role, and --keys holds the keys of role {}",
            release.target_name,
            dir.manifest.role
        ),
    }
    // What is signed must follow what was signed: check the current
    // metadata with our own keys, and refuse if an image listed before changed.
    let current = match request.current {
        Some(current) => {
            let bytes = serde_json::to_vec(&current)?;
            let raw = fleetward_tuf::parse_signed::<Targets>(&bytes)?;
            match &keys {
                Signer::TopLevel(keys) => fleetward_tuf::verify_role(
                    &raw.canonical_signed,
                    &raw.signatures,
                    &targets_trust(keys)?,
                    ROLE_TARGETS,
                ),
                Signer::Delegated(dir) => {
                    let delegation = dir.delegation()?;
                    let role = delegation.roles.first().context("no role")?;
                    delegation.verify(role, &raw.canonical_signed, &raw.signatures)
                }
            }
            .with_context(|| {
                format!("the server's current {role_name} metadata is not signed by these keys")
            })?;
            Some(raw.signed)
        }
        None => None,
    };
    let entry = proposal
        .targets
        .get(&release.target_name)
        .context("the signing request does not list this release")?;
    ensure!(
        entry.hashes.get("sha256") == Some(&release.artifact_sha256)
            && entry.length == release.length,
        "the signing request describes {} differently from the release",
        release.target_name
    );
    if let Some(path) = artifact {
        let (sha256, sha512, length) = hash_file(path, json).await?;
        ensure!(
            entry.hashes.get("sha256") == Some(&sha256)
                && entry.hashes.get("sha512") == Some(&sha512)
                && entry.length == length,
            "{} is not the image the server holds for {version}",
            path.display()
        );
    }
    let mut changes = Vec::new();
    for (name, file) in &proposal.targets {
        match current.as_ref().and_then(|c| c.targets.get(name)) {
            None => changes.push(format!("+ {name}")),
            Some(before) => ensure!(
                before.hashes == file.hashes && before.length == file.length,
                "the server proposes different content for {name}, which was signed before; refusing"
            ),
        }
    }
    for name in current
        .iter()
        .flat_map(|c| c.targets.keys())
        .filter(|n| !proposal.targets.contains_key(*n))
    {
        changes.push(format!("- {name} (revoked)"));
    }
    let expires = time::Duration::try_from(expires).context("expiry too far")?;
    proposal.expires = Expiry::at(time::OffsetDateTime::now_utc() + expires);
    let limit = max_signatures.unwrap_or(usize::MAX);
    let signers: Vec<_> = match &keys {
        Signer::TopLevel(keys) => keys.targets.iter().take(limit).collect(),
        Signer::Delegated(dir) => dir.keys.iter().take(limit).collect(),
    };
    let targets_version = proposal.version;
    let bytes = Signed::sign(proposal, &signers)?.to_bytes()?;
    let signed: Release = client
        .post_raw(
            &format!("/api/v1/releases/{version}/signature"),
            &[("content-type", "application/json".to_owned())],
            bytes.into(),
        )
        .await
        .context("uploading the signed targets metadata")?;
    if json {
        output::json(&signed)?;
    } else {
        for change in &changes {
            println!("{change}");
        }
        println!(
            "Signed {role_name} version {targets_version} with {} key(s); release {} is {}.",
            signers.len(),
            signed.version,
            signed.state
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn run(
    client: &Client,
    json: bool,
    command: &ReleaseCommand,
) -> anyhow::Result<ExitCode> {
    match command {
        ReleaseCommand::Create {
            version,
            hardware,
            artifact,
            sbom,
            notes,
            quiet,
        } => {
            let quiet = *quiet || json;
            let file_name = artifact
                .file_name()
                .and_then(|n| n.to_str())
                .context("the artifact path has no usable file name")?
                .to_owned();
            let image = upload(client, artifact, quiet).await?;
            let sbom = match sbom {
                Some(path) => Some(upload(client, path, quiet).await?.sha256),
                None => None,
            };
            let request = CreateRelease {
                version: version.clone(),
                hardware: hardware.clone(),
                artifact_sha256: image.sha256,
                file_name,
                sbom_sha256: sbom,
                notes: notes.clone(),
            };
            let release: Release = client.post("/api/v1/releases", &request).await?;
            if json {
                output::json(&release)?;
            } else {
                print_release(&release);
                println!(
                    "Next: `fleetward release sign {} --keys KEYDIR` on the signing machine.",
                    release.version
                );
            }
        }
        ReleaseCommand::Vulns { all } => {
            let vulns: fleetward_wire::sca::ReleaseVulns =
                client.get("/api/v1/sbom/vulnerabilities", &[]).await?;
            if json {
                output::json(&vulns)?;
            } else {
                let rows: Vec<Vec<String>> = vulns
                    .releases
                    .iter()
                    .filter(|r| *all || r.verdict != "pass")
                    .map(|r| {
                        let mut ids: Vec<String> =
                            r.failing.iter().flat_map(|f| f.ids.clone()).collect();
                        ids.sort();
                        ids.dedup();
                        let detail = match &r.error {
                            Some(e) => e.clone(),
                            None => format!("{} failing: {}", r.failing.len(), ids.join(",")),
                        };
                        let since = r.vulnerable_since.clone().unwrap_or_else(|| "-".into());
                        vec![
                            r.version.clone(),
                            r.state.clone(),
                            r.verdict.clone(),
                            r.devices.to_string(),
                            since,
                            detail,
                        ]
                    })
                    .collect();
                output::table(
                    &[
                        "VERSION",
                        "STATE",
                        "VERDICT",
                        "DEVICES",
                        "VULNERABLE SINCE",
                        "DETAIL",
                    ],
                    &rows,
                );
                println!(
                    "advisories imported: {}",
                    vulns.advisories_imported_at.as_deref().unwrap_or("never")
                );
            }
        }
        ReleaseCommand::List => {
            let list: ReleaseList = client.get("/api/v1/releases", &[]).await?;
            if json {
                output::json(&list)?;
            } else {
                let rows: Vec<Vec<String>> = list
                    .items
                    .iter()
                    .map(|r| {
                        vec![
                            r.version.clone(),
                            r.hardware.clone(),
                            r.state.clone(),
                            r.length.to_string(),
                            r.artifact_sha256[..16.min(r.artifact_sha256.len())].to_owned(),
                            output::time(Some(r.created_at)),
                        ]
                    })
                    .collect();
                output::table(
                    &["VERSION", "HARDWARE", "STATE", "BYTES", "SHA256", "CREATED"],
                    &rows,
                );
            }
        }
        ReleaseCommand::Show { version } => {
            let release: Release = client
                .get(&format!("/api/v1/releases/{version}"), &[])
                .await?;
            if json {
                output::json(&release)?
            } else {
                print_release(&release)
            }
        }
        ReleaseCommand::Sign {
            version,
            keys,
            passphrase_file,
            expires,
            max_signatures,
            artifact,
        } => {
            return sign(
                client,
                json,
                version,
                keys,
                passphrase_file.as_deref(),
                *expires,
                *max_signatures,
                artifact.as_deref(),
            )
            .await;
        }
        ReleaseCommand::Publish { version }
        | ReleaseCommand::Deprecate { version }
        | ReleaseCommand::Revoke { version } => {
            let action = match command {
                ReleaseCommand::Publish { .. } => "publish",
                ReleaseCommand::Deprecate { .. } => "deprecate",
                _ => "revoke",
            };
            let release: Release = client
                .post(
                    &format!("/api/v1/releases/{version}/{action}"),
                    &serde_json::json!({}),
                )
                .await?;
            if json {
                output::json(&release)?
            } else {
                print_release(&release)
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
