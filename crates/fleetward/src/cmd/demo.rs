//! `fleetward demo`: the whole product on a fresh machine, with nothing but
//! this binary.
//!
//! It starts a real server (embedded SQLite in a temporary data dir, free
//! ports), initialises it, and drives the whole secure-update loop through
//! the same code paths as the CLI commands it prints: the device registry,
//! offline release keys (2 of 3), the SBOM gate, a signed release, real
//! agents (the fleet simulator: each with its own key, certificate and
//! mutual-TLS connection, verifying TUF and director metadata) enrolling and
//! receiving the release through a phased rollout, and the verification of
//! the tamper-evident security-event log.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use fleetward_core::DeviceStatus;
use fleetward_server::ServerConfig;
use fleetward_wire::operator::{AuditPage, Device, DeviceCount, DevicePage, RegisterDevice};

use crate::client::Client;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the server running after the demo (until Ctrl-C).
    #[arg(long)]
    pub keep: bool,
    /// How many simulated devices to register.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub devices: u32,
    /// How many simulated agents enrol and take part in the rollout.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=5_000))]
    pub agents: u32,
    /// Operator listener (default: a free port on 127.0.0.1).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
}

const HARDWARE: [&str; 2] = ["rev1", "rev2"];
const REGIONS: [&str; 3] = ["eu", "us", "apac"];

/// A deterministic, varied fleet: hardware, region, a beta ring, versions.
fn demo_fleet(count: u32) -> Vec<RegisterDevice> {
    (0..count)
        .map(|n| {
            let index = usize::try_from(n).unwrap_or(0);
            let mut tags = BTreeMap::new();
            tags.insert(
                "region".to_owned(),
                REGIONS[index % REGIONS.len()].to_owned(),
            );
            if n % 10 == 0 {
                tags.insert("beta".to_owned(), String::new());
            }
            RegisterDevice {
                id: format!("demo-{n:05}"),
                hardware: HARDWARE[index % HARDWARE.len()].to_owned(),
                version: Some(if n % 4 == 0 {
                    "0.9.2".to_owned()
                } else {
                    "1.0.0".to_owned()
                }),
                tags,
                status: Some(DeviceStatus::Active),
            }
        })
        .collect()
}

pub async fn run(cli: &crate::Cli, args: &DemoArgs) -> anyhow::Result<ExitCode> {
    let dir = tempfile::Builder::new()
        .prefix("fleetward-demo-")
        .tempdir()
        .context("creating a temporary data dir")?;
    let data_dir = dir.path().to_owned();
    let database_url = ServerConfig::default_database_url(&data_dir);
    println!("fleetward demo — data dir {}", data_dir.display());

    let init = fleetward_server::init::initialize(
        &data_dir,
        &database_url,
        time::OffsetDateTime::now_utc(),
    )
    .await?;
    let config = ServerConfig {
        data_dir: data_dir.clone(),
        database_url,
        listen: args.listen,
        device_listen: "127.0.0.1:0".parse().context("device address")?,
        max_body_bytes: ServerConfig::DEFAULT_MAX_BODY_BYTES,
        identity: Default::default(),
        releases: Default::default(),
        monitor: Default::default(),
        // Phases advance within the demo's patience.
        rollout_tick: std::time::Duration::from_millis(200),
    };
    let server = fleetward_server::start(config).await?;
    let base = format!("http://{}", server.addrs.operator);
    println!(
        "server up: operator API {base}, device API https://{} (mutual TLS)",
        server.addrs.device
    );
    let client = Client::new(&base, Some(init.admin_token.clone()))?;

    let demo = Demo {
        cli,
        client: &client,
        device_url: format!("https://{}", server.addrs.device),
        data_dir: &data_dir,
        work: dir.path().join("offline"),
        database_url: ServerConfig::default_database_url(&data_dir),
    };
    let outcome = demo.drive(args).await;
    if let Err(error) = &outcome {
        eprintln!("demo failed: {error:#}");
    }
    if outcome.is_ok() {
        println!("  operator API:    {base}/api/v1/ (OpenAPI: {base}/api/v1/openapi.json)");
        println!("  web console:     {base}/console/");
        if !args.keep {
            println!(
                "  The server stops now; `fleetward demo --keep` keeps it running to explore."
            );
        }
    }
    if args.keep && outcome.is_ok() {
        println!();
        println!("The server keeps running. Try:");
        println!(
            "    export FLEETWARD_SERVER={base} FLEETWARD_TOKEN={}",
            init.admin_token
        );
        println!("    fleetward device list --query 'region = \"eu\" and not beta'");
        println!("    fleetward rollout list");
        println!("    fleetward events list --min-severity medium");
        println!("Web console: {base}/console/ (sign in with the token above).");
        println!(
            "    curl -H \"Authorization: Bearer $FLEETWARD_TOKEN\" {base}/api/v1/devices/count"
        );
        println!("OpenAPI document: {base}/api/v1/openapi.json — Ctrl-C to stop.");
        server.run_until(super::server::shutdown_signal()).await?;
    } else {
        server.shutdown().await?;
    }
    drop(dir);
    outcome.map(|()| ExitCode::SUCCESS)
}

async fn registry(client: &Client, devices: u32) -> anyhow::Result<()> {
    let fleet = demo_fleet(devices);
    let progress = indicatif::ProgressBar::new(u64::from(devices));
    progress.set_style(
        indicatif::ProgressStyle::with_template("registering devices {bar:40} {pos}/{len}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    for device in &fleet {
        let _: Device = client.post("/api/v1/devices", device).await?;
        progress.inc(1);
    }
    progress.finish();

    println!();
    println!("Target queries run in the database:");
    for query in [
        r#"hw = "rev2""#,
        r#"region in ("eu", "us") and not beta"#,
        r#"version < "1.0.0""#,
        r#"hw = "rev1" and region = "apac" and version >= "1.0.0""#,
    ] {
        let count: DeviceCount = client
            .get("/api/v1/devices/count", &[("query", query.to_owned())])
            .await?;
        println!("  {:>5}  {query}", count.count);
    }
    let page: DevicePage = client
        .get(
            "/api/v1/devices",
            &[("query", "beta".to_owned()), ("limit", "3".to_owned())],
        )
        .await?;
    let first: Vec<&str> = page.items.iter().map(|d| d.id.as_str()).collect();
    println!("  first beta devices: {}", first.join(", "));

    let audit: AuditPage = client
        .get("/api/v1/audit", &[("limit", "1000".to_owned())])
        .await?;
    println!(
        "  {devices} devices registered, {} audit records written.",
        audit.items.len()
    );
    Ok(())
}
/// Everything the demo's steps share.
struct Demo<'a> {
    cli: &'a crate::Cli,
    client: &'a Client,
    device_url: String,
    data_dir: &'a std::path::Path,
    /// The release manager's machine: offline keys, images, SBOMs.
    work: std::path::PathBuf,
    database_url: String,
}

const ADVISORY: &str = include_str!("demo_data/RUSTSEC-2021-0003.json");
const SBOM_OLD: &str = include_str!("demo_data/sbom-fw-1.0.0.cdx.json");
const SBOM_VULNERABLE: &str = include_str!("demo_data/sbom-smallvec-1.6.0.cdx.json");
const SBOM_FIXED: &str = include_str!("demo_data/sbom-smallvec-1.6.1.cdx.json");
const OLD_RELEASE: &str = "1.0.0";
const RELEASE: &str = "1.1.0";
const BAD_RELEASE: &str = "1.2.0";

fn step(title: &str) {
    println!();
    println!("== {title}");
}

impl Demo<'_> {
    async fn drive(&self, args: &DemoArgs) -> anyhow::Result<()> {
        use super::keys::KeysCommand;

        step("1/8 Device registry and target queries");
        registry(self.client, args.devices).await?;

        step("2/8 Offline release keys: 2 of 3 root keys, 2 of 3 targets keys");
        std::fs::create_dir_all(&self.work)?;
        let keys = self.work.join("release-keys");
        println!(
            "$ fleetward keys init --dir {} --root-keys 3 --root-threshold 2 --targets-keys 3 --targets-threshold 2",
            keys.display()
        );
        super::keys::run(
            None,
            false,
            &KeysCommand::Init {
                dir: keys.clone(),
                root_keys: 3,
                root_threshold: 2,
                targets_keys: 3,
                targets_threshold: 2,
                passphrase_file: None,
                kdf_log_n: 17,
            },
        )
        .await?;
        println!("$ fleetward keys root --dir {}", keys.display());
        super::keys::run(
            Some(self.client.clone()),
            false,
            &KeysCommand::Root {
                dir: keys.clone(),
                old_dir: None,
                expires: std::time::Duration::from_secs(365 * 86_400),
                passphrase_file: None,
                old_passphrase_file: None,
            },
        )
        .await?;

        step("3/8 The SBOM gate: advisories, licences, policy");
        let advisories = self.work.join("advisories");
        std::fs::create_dir_all(&advisories)?;
        std::fs::write(advisories.join("RUSTSEC-2021-0003.json"), ADVISORY)?;
        let index = self.data_dir.join("advisories");
        println!("$ fleetward advisories import {}", advisories.display());
        super::advisories::run(
            self.cli,
            &super::advisories::AdvisoriesCommand::Import {
                sources: vec![advisories],
                into: Some(index.clone()),
            },
        )?;
        let old = self.work.join("fw-1.0.0.cdx.json");
        let vulnerable = self.work.join("fw-1.1.0-rc1.cdx.json");
        let fixed = self.work.join("fw-1.1.0.cdx.json");
        std::fs::write(&old, SBOM_OLD)?;
        std::fs::write(&vulnerable, SBOM_VULNERABLE)?;
        std::fs::write(&fixed, SBOM_FIXED)?;
        for (sbom, expected) in [(&old, 0u8), (&vulnerable, 1u8), (&fixed, 0u8)] {
            println!("$ fleetward scan {}", sbom.display());
            let code = super::scan::run(
                self.cli,
                &super::scan::ScanArgs {
                    sbom: sbom.clone(),
                    advisories: Some(index.clone()),
                    policy: None,
                    format: super::scan::Format::Table,
                    target_os: Vec::new(),
                },
            )?;
            let verdict = if expected == 1 {
                "exit 1: a CI job or the publish gate stops this build"
            } else {
                "exit 0: this build may ship"
            };
            anyhow::ensure!(
                code == ExitCode::from(expected),
                "the scan of {} did not end as expected",
                sbom.display()
            );
            println!("  -> {verdict}");
        }

        step(
            "4/8 Signed releases: upload with the SBOM, sign offline (2 of 3), publish through the gate",
        );
        self.publish(OLD_RELEASE, 0, &old, &keys).await?;
        self.publish(RELEASE, 1, &fixed, &keys).await?;

        step(
            "5/8 Agents enrol (their own keys, mutual TLS) and a phased rollout of 1.1.0 reaches them",
        );
        let rollout = self.rollout(args.agents).await?;

        step("6/8 A bad release stops itself: every canary fails to boot it, the rollout pauses");
        self.publish(BAD_RELEASE, 2, &fixed, &keys).await?;
        let canaries_rolled_back = self.canaries().await?;

        step("7/8 The security-event log");
        let verification: fleetward_wire::events::EventVerification =
            self.client.get("/api/v1/events/verify", &[]).await?;
        println!(
            "$ fleetward events verify\n  chain {}: {} entries, {} signed checkpoints, {} entries after the last checkpoint",
            if verification.ok { "intact" } else { "BROKEN" },
            verification.entries,
            verification.checkpoints,
            verification.unsigned_tail
        );
        anyhow::ensure!(verification.ok, "the event log does not verify");

        step("8/8 Summary");
        let kinds = self.event_kinds().await?;
        let count = |kind: &str| kinds.get(kind).copied().unwrap_or(0);
        println!(
            "  release {RELEASE}: rollout {} completed its phases with {} of {} devices updated",
            rollout.id, rollout.succeeded, rollout.targeted
        );
        println!("  updated:         {}", rollout.updated);
        println!(
            "  failed:          {} ({} fell back after a failed boot, {} refused the offer)",
            rollout.failed, rollout.rolled_back, rollout.refused
        );
        println!(
            "  rolled back:     {} ({} in the {RELEASE} rollout, {canaries_rolled_back} canaries of {BAD_RELEASE})",
            rollout.rolled_back + canaries_rolled_back,
            rollout.rolled_back
        );
        println!(
            "  phases paused:   {} (by the rollouts themselves, on their failure budgets)",
            count("rollout.paused")
        );
        println!("  security events:");
        for (kind, n) in &kinds {
            println!("    {n:>5}  {kind}");
        }
        anyhow::ensure!(
            rollout.updated == rollout.succeeded
                && rollout.rolled_back + rollout.refused == rollout.failed,
            "the agents and the server disagree: {rollout:?}"
        );
        Ok(())
    }

    /// Counts of the security-event log's entries by kind.
    async fn event_kinds(&self) -> anyhow::Result<BTreeMap<String, u64>> {
        let mut kinds = BTreeMap::new();
        let mut after = None;
        loop {
            let mut query = vec![("limit", "1000".to_owned())];
            if let Some(after) = after {
                query.push(("after", format!("{after}")));
            }
            let page: fleetward_wire::events::EventPage =
                self.client.get("/api/v1/events", &query).await?;
            for event in page.items {
                *kinds.entry(event.kind).or_insert(0u64) += 1;
            }
            match page.next_after {
                Some(next) => after = Some(next),
                None => return Ok(kinds),
            }
        }
    }

    /// Uploads an image for `version`, signs it offline and publishes it.
    async fn publish(
        &self,
        version: &str,
        seed: usize,
        sbom: &std::path::Path,
        keys: &std::path::Path,
    ) -> anyhow::Result<()> {
        use super::release::ReleaseCommand;
        let image = self.work.join(format!("fw-{version}.img"));
        std::fs::write(&image, demo_image(1024 * 1024, seed))?;
        println!(
            "$ fleetward release create --version {version} --hardware rev2 --artifact {} --sbom {}",
            image.display(),
            sbom.display()
        );
        super::release::run(
            self.client,
            false,
            &ReleaseCommand::Create {
                version: version.into(),
                hardware: "rev2".into(),
                artifact: image.clone(),
                sbom: Some(sbom.to_owned()),
                notes: Some("demo release".into()),
                quiet: true,
            },
        )
        .await?;
        println!(
            "$ fleetward release sign {version} --keys {}",
            keys.display()
        );
        super::release::run(
            self.client,
            false,
            &ReleaseCommand::Sign {
                version: version.into(),
                keys: keys.to_owned(),
                passphrase_file: None,
                expires: std::time::Duration::from_secs(90 * 86_400),
                max_signatures: None,
                artifact: Some(image),
            },
        )
        .await?;
        println!("$ fleetward release publish {version}");
        super::release::run(
            self.client,
            false,
            &ReleaseCommand::Publish {
                version: version.into(),
            },
        )
        .await?;
        Ok(())
    }

    /// Simulated agents enrolled with a token tagged `ring=RING`.
    async fn enrol_fleet(
        &self,
        ring: &str,
        prefix: &str,
        agents: u32,
        fail_rate: f64,
        injected: Injected,
    ) -> anyhow::Result<(
        fleetward_agent::sim::SimConfig,
        fleetward_agent::sim::SimFleet,
    )> {
        use fleetward_wire::identity::{CreateEnrollToken, CreatedEnrollToken};
        let mut tags = BTreeMap::new();
        tags.insert("ring".to_owned(), ring.to_owned());
        let token: CreatedEnrollToken = self
            .client
            .post(
                "/api/v1/enroll-tokens",
                &CreateEnrollToken {
                    name: Some(format!("demo {ring} agents")),
                    tags,
                    uses: agents,
                    expires_in_secs: 3600,
                    require_approval: false,
                    allow_listed_only: false,
                },
            )
            .await?;
        let ca_pem = {
            let store = fleetward_store::open(&self.database_url).await?;
            let ca = store
                .ca()
                .await?
                .context("the server has no fleet CA")?
                .cert_pem;
            store.close().await;
            ca
        };
        let root_json = self.client.get_bytes("/tuf/metadata/1.root.json").await?;
        let sim = fleetward_agent::sim::SimConfig {
            server: self.device_url.clone(),
            ca_pem: ca_pem.into_bytes(),
            root_json,
            token: token.token,
            devices: usize::try_from(agents)?,
            id_prefix: prefix.into(),
            hardware: "rev2".into(),
            initial_version: "1.0.0".into(),
            rounds: 0,
            concurrency: 16,
            fail_rate,
            rollback_rate: 0.0,
            offline_rate: if fail_rate > 0.0 { 0.0 } else { 0.1 },
            fail_devices: injected.fail_devices,
            rollback_devices: injected.rollback_devices,
            work_dir: self.work.join(ring),
        };
        let fleet = fleetward_agent::sim::SimFleet::enrol(&sim).await?;
        Ok((sim, fleet))
    }

    /// Canaries that cannot boot the bad release: their rollout pauses by
    /// itself on the failures, and the operator aborts it.
    async fn canaries(&self) -> anyhow::Result<u64> {
        use fleetward_wire::rollout::{CreateRollout, Rollout, RolloutCreated};
        let (sim, mut fleet) = self
            .enrol_fleet("canary", "canary-", 5, 1.0, Injected::default())
            .await?;
        println!("  5 canary agents enrolled (ring=canary); the new image will not boot on them");
        let target = r#"ring = "canary""#;
        println!(
            "$ fleetward rollout create --release {BAD_RELEASE} --target '{target}' --max-failures 20%"
        );
        let created: RolloutCreated = self
            .client
            .post(
                "/api/v1/rollouts",
                &CreateRollout {
                    release: BAD_RELEASE.into(),
                    target: target.into(),
                    phases: None,
                    soak: Some("2s".into()),
                    success_threshold: None,
                    max_failures: Some("20%".into()),
                    max_failures_count: None,
                    rate: None,
                    window: None,
                    timeout: Some("10m".into()),
                    retries: None,
                    continuous: false,
                },
            )
            .await?;
        let path = format!("/api/v1/rollouts/{}", created.rollout.id);
        let mut state = created.rollout;
        for _ in 0..100 {
            fleet.round(&sim).await;
            state = self.client.get::<Rollout>(&path, &[]).await?;
            if state.state != "running" {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
        println!("$ fleetward rollout status {}", state.id);
        super::rollout::run(
            self.client,
            false,
            &super::rollout::RolloutCommand::Status {
                id: state.id.clone(),
                watch: false,
            },
        )
        .await?;
        anyhow::ensure!(
            state.state == "paused",
            "the bad rollout did not pause by itself (it is {})",
            state.state
        );
        println!(
            "  -> paused by itself: {}",
            state.pause_reason.as_deref().unwrap_or("")
        );
        println!("$ fleetward rollout abort {}", state.id);
        super::rollout::run(
            self.client,
            false,
            &super::rollout::RolloutCommand::Abort {
                id: state.id.clone(),
                rollback: false,
            },
        )
        .await?;
        let rolled_back = fleet
            .stats()
            .rolled_back
            .load(std::sync::atomic::Ordering::Relaxed);
        println!(
            "  canaries: {rolled_back} fell back to their old slot and reported rolled-back; none runs {BAD_RELEASE}"
        );
        Ok(rolled_back)
    }

    /// The phased rollout of 1.1.0 to the demo agents, with a few injected
    /// failures that stay within its failure budget, under progress bars.
    async fn rollout(&self, agents: u32) -> anyhow::Result<RolloutOutcome> {
        use fleetward_wire::rollout::{CreateRollout, Rollout, RolloutCreated};

        let (mut sim, mut fleet) = self
            .enrol_fleet("demo", "agent-", agents, 0.0, injected(agents))
            .await?;
        let enrolled = fleet.stats().summary();
        println!(
            "  {} agents enrolled with a token tagged ring=demo (each made its own key; the server only saw a CSR), all running {OLD_RELEASE}",
            enrolled["enrolled"]
        );
        if !sim.fail_devices.is_empty() {
            println!(
                "  injected: {} agents will not boot {RELEASE} (they fall back), {} remembers having run a newer version (it refuses {RELEASE} as a rollback)",
                sim.fail_devices.len(),
                sim.rollback_devices.len()
            );
        }
        let target = r#"ring = "demo" and hw = "rev2""#;
        println!(
            "$ fleetward rollout create --release {RELEASE} --target '{target}' --phases 20%,60%,100% --soak 2s --success-threshold 70% --max-failures 30% --max-failures-count 5"
        );
        let created: RolloutCreated = self
            .client
            .post(
                "/api/v1/rollouts",
                &CreateRollout {
                    release: RELEASE.into(),
                    target: target.into(),
                    phases: Some("20%,60%,100%".into()),
                    soak: Some("2s".into()),
                    success_threshold: Some("70%".into()),
                    // The budget: the injected failures fit in it wherever
                    // the phases put them.
                    max_failures: Some("30%".into()),
                    max_failures_count: Some(5),
                    rate: None,
                    window: None,
                    timeout: Some("10m".into()),
                    retries: None,
                    continuous: false,
                },
            )
            .await?;
        let rollout = created.rollout;
        println!("  {} devices queued", created.queued);
        let path = format!("/api/v1/rollouts/{}", rollout.id);

        let bars = indicatif::MultiProgress::new();
        let style = indicatif::ProgressStyle::with_template(
            "  {prefix:<13} {bar:40.green/red} {pos:>3}/{len:3} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        let overall = bars.add(
            indicatif::ProgressBar::new(created.queued)
                .with_style(style.clone())
                .with_prefix(format!("rollout {RELEASE}")),
        );
        let phase_bars: Vec<indicatif::ProgressBar> = rollout
            .phases
            .iter()
            .map(|phase| {
                bars.add(
                    indicatif::ProgressBar::new(phase.counts.total)
                        .with_style(style.clone())
                        .with_prefix(format!("phase {} {}", phase.index + 1, phase.percent)),
                )
            })
            .collect();
        let mut state = rollout;
        let mut last_phase = u32::MAX;
        for _ in 0..400 {
            fleet.round(&sim).await;
            state = self.client.get::<Rollout>(&path, &[]).await?;
            let totals = &state.totals;
            overall.set_position(totals.succeeded + totals.failed);
            overall.set_message(format!(
                "{} updated, {} failed",
                totals.succeeded, totals.failed
            ));
            for (bar, phase) in phase_bars.iter().zip(&state.phases) {
                bar.set_length(phase.counts.total);
                bar.set_position(phase.counts.succeeded + phase.counts.failed);
                bar.set_message(phase.state.clone());
            }
            if state.current_phase != last_phase {
                last_phase = state.current_phase;
                let phases = state.phases.len();
                overall.suspend(|| {
                    println!(
                        "  phase {}/{phases} open: {} updated, {} failed so far",
                        last_phase + 1,
                        totals.succeeded,
                        totals.failed
                    );
                });
            }
            match state.state.as_str() {
                "completed" => break,
                "running" => {}
                other => {
                    bars.clear().ok();
                    anyhow::bail!(
                        "the rollout is {other}: {}",
                        state.pause_reason.clone().unwrap_or_default()
                    )
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        overall.finish();
        for bar in &phase_bars {
            bar.finish();
        }
        // The devices that fell back poll once more: they stay on the old
        // release (the rollout does not offer it again) and send their reports.
        sim.fail_devices.clear();
        fleet.round(&sim).await;
        fleet.flush().await;
        println!("$ fleetward rollout status {}", state.id);
        super::rollout::run(
            self.client,
            false,
            &super::rollout::RolloutCommand::Status {
                id: state.id.clone(),
                watch: false,
            },
        )
        .await?;
        anyhow::ensure!(
            state.state == "completed",
            "the rollout did not complete in time (it is {})",
            state.state
        );
        let stats = fleet.stats();
        let get = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        let outcome = RolloutOutcome {
            id: state.id.clone(),
            targeted: state.totals.total,
            succeeded: state.totals.succeeded,
            failed: state.totals.failed,
            updated: get(&stats.updated),
            rolled_back: get(&stats.rolled_back),
            refused: get(&stats.refused),
        };
        println!(
            "  agents: {} updated after verifying TUF + director metadata and the image hash, {} rolled back, {} refused; {} polls, {} reports sent",
            outcome.updated,
            outcome.rolled_back,
            outcome.refused,
            get(&stats.polls),
            get(&stats.reports_sent)
        );
        Ok(outcome)
    }
}

/// What the 1.1.0 rollout ended with, from the server and the agents.
#[derive(Debug)]
struct RolloutOutcome {
    id: String,
    targeted: u64,
    succeeded: u64,
    failed: u64,
    updated: u64,
    rolled_back: u64,
    refused: u64,
}

/// The injected failures of the main rollout: two agents whose new slot
/// does not boot, one that refuses the offer as a rollback (none in a
/// fleet too small to stay within the failure budget).
fn injected(agents: u32) -> Injected {
    if agents < 20 {
        return Injected::default();
    }
    Injected {
        fail_devices: vec![7, usize::try_from(agents - 3).unwrap_or(17)],
        rollback_devices: vec![12],
    }
}

#[derive(Debug, Default)]
struct Injected {
    fail_devices: Vec<usize>,
    rollback_devices: Vec<usize>,
}

/// A deterministic stand-in for a firmware image.
fn demo_image(len: usize, seed: usize) -> Vec<u8> {
    (0..len)
        .map(|i| u8::try_from((i * 31 + i / 7 + seed) % 251).unwrap_or(0))
        .collect()
}
