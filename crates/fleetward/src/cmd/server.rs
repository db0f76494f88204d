//! `fleetward init` and `fleetward server`, and where server settings come
//! from: flags win over `FLEETWARD_*` variables, which win over
//! `fleetward.toml`, which wins over the defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use fleetward_server::ServerConfig;
use serde::Deserialize;

use crate::Cli;

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Database URL; default: SQLite in the data dir.
    #[arg(long, env = "FLEETWARD_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Where to write the fleet CA's private key (mode 0600); may be outside
    /// the data dir. Default: DATA_DIR/ca/fleet-ca.key.
    #[arg(long, env = "FLEETWARD_CA_KEY")]
    pub ca_key: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Configuration file. Default: fleetward.toml in the current directory, if there is one.
    #[arg(long, env = "FLEETWARD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Operator listener (API and console). Port 0 picks a free port.
    #[arg(long, env = "FLEETWARD_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Device listener.
    #[arg(long, env = "FLEETWARD_DEVICE_LISTEN")]
    pub device_listen: Option<SocketAddr>,
    /// Database URL: sqlite://PATH (default: DATA_DIR/fleetward.db) or postgres://…
    #[arg(long, env = "FLEETWARD_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Largest request body the operator API accepts, in bytes.
    #[arg(long, env = "FLEETWARD_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Name (DNS or IP) devices use to reach the device listener; repeat for
    /// more. Default: localhost and 127.0.0.1 (plus the bound IP).
    #[arg(
        long = "device-name",
        env = "FLEETWARD_DEVICE_NAMES",
        value_delimiter = ','
    )]
    pub device_names: Vec<String>,
    /// `https://host:port` of the device listener as devices see it; puts a
    /// CRL distribution point into device certificates.
    #[arg(long, env = "FLEETWARD_DEVICE_URL")]
    pub device_url: Option<String>,
    /// Lifetime of device certificates, e.g. 90d.
    #[arg(long, env = "FLEETWARD_CERT_LIFETIME", value_parser = humantime::parse_duration)]
    pub cert_lifetime: Option<std::time::Duration>,
    /// How long before expiry devices should renew, e.g. 30d.
    #[arg(long, env = "FLEETWARD_RENEW_BEFORE", value_parser = humantime::parse_duration)]
    pub renew_before: Option<std::time::Duration>,
    /// How long a renewed device's previous certificate stays valid, e.g. 24h.
    #[arg(long, env = "FLEETWARD_RENEWAL_OVERLAP", value_parser = humantime::parse_duration)]
    pub renewal_overlap: Option<std::time::Duration>,
    /// How often the rollout engine moves rollouts forward, e.g. 5s.
    #[arg(long, env = "FLEETWARD_ROLLOUT_TICK", value_parser = humantime::parse_duration)]
    pub rollout_tick: Option<std::time::Duration>,
    /// How often published releases are re-scanned for new vulnerabilities
    /// (only those whose advisories or policy changed), e.g. 1m.
    #[arg(long, env = "FLEETWARD_VULNERABILITY_CHECK", value_parser = humantime::parse_duration)]
    pub vulnerability_check: Option<std::time::Duration>,
    /// Largest artifact (release image, SBOM) accepted, in bytes [default: 4 GiB].
    #[arg(long, env = "FLEETWARD_MAX_ARTIFACT_BYTES")]
    pub max_artifact_bytes: Option<u64>,
    /// Where artifacts are stored [default: DATA_DIR/artifacts].
    #[arg(long, env = "FLEETWARD_ARTIFACT_DIR")]
    pub artifact_dir: Option<PathBuf>,
    /// S3-compatible object storage for artifacts instead of a directory,
    /// `s3://bucket/prefix` (for replicas). Credentials: `AWS_ACCESS_KEY_ID`
    /// and `AWS_SECRET_ACCESS_KEY`, or `[s3]` in fleetward.toml.
    #[arg(
        long,
        env = "FLEETWARD_ARTIFACT_STORE",
        conflicts_with = "artifact_dir"
    )]
    pub artifact_store: Option<String>,
    /// S3 endpoint of an S3-compatible store, e.g. https://minio.example.com:9000.
    #[arg(long, env = "FLEETWARD_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// S3 region [default: AWS_REGION, else us-east-1].
    #[arg(long, env = "FLEETWARD_S3_REGION")]
    pub s3_region: Option<String>,
    /// Allow an http:// S3 endpoint (no TLS; a store on the same host).
    #[arg(long, env = "FLEETWARD_S3_ALLOW_HTTP")]
    pub s3_allow_http: bool,
    /// Send devices to pre-signed S3 URLs valid this long (e.g. 5m, at most
    /// 1h) instead of streaming images through the server.
    #[arg(long, env = "FLEETWARD_ARTIFACT_PRESIGN", value_parser = humantime::parse_duration)]
    pub artifact_presign: Option<std::time::Duration>,
    /// Log filter, e.g. `info` or `fleetward_server=debug`.
    #[arg(long, env = "FLEETWARD_LOG", default_value = "info")]
    pub log: String,
}

/// `fleetward.toml`. Every key is optional; unknown keys are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub device_listen: Option<SocketAddr>,
    pub database_url: Option<String>,
    pub max_body_bytes: Option<usize>,
    pub device_names: Option<Vec<String>>,
    pub device_url: Option<String>,
    #[serde(default, with = "humantime_serde_opt")]
    pub cert_lifetime: Option<std::time::Duration>,
    #[serde(default, with = "humantime_serde_opt")]
    pub renew_before: Option<std::time::Duration>,
    #[serde(default, with = "humantime_serde_opt")]
    pub renewal_overlap: Option<std::time::Duration>,
    #[serde(default, with = "humantime_serde_opt")]
    pub rollout_tick: Option<std::time::Duration>,
    pub max_artifact_bytes: Option<u64>,
    #[serde(default, with = "humantime_serde_opt")]
    pub vulnerability_check: Option<std::time::Duration>,
    pub artifact_dir: Option<PathBuf>,
    /// `s3://bucket/prefix`: artifacts on S3-compatible storage.
    pub artifact_store: Option<String>,
    /// Settings of the S3 artifact store.
    #[serde(default)]
    pub s3: S3File,
    /// Detection, alerts and automatic quarantine.
    #[serde(default)]
    pub monitor: super::monitor_config::MonitorFile,
}

/// `[s3]` in `fleetward.toml`. The secret key may be here (a file readable
/// by the server only) or in `AWS_SECRET_ACCESS_KEY`; never on the command
/// line, where other users see it.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3File {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    #[serde(default)]
    pub allow_http: bool,
    #[serde(default, with = "humantime_serde_opt")]
    pub presign: Option<std::time::Duration>,
}

impl std::fmt::Debug for S3File {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3File")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("allow_http", &self.allow_http)
            .field("presign", &self.presign)
            .finish()
    }
}

/// Durations in `fleetward.toml` are written like on the command line ("90d").
mod humantime_serde_opt {
    use serde::Deserialize as _;

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<std::time::Duration>, D::Error> {
        Option::<String>::deserialize(deserializer)?
            .map(|text| humantime::parse_duration(&text).map_err(serde::de::Error::custom))
            .transpose()
    }
}

impl FileConfig {
    fn load(explicit: Option<&Path>) -> anyhow::Result<Self> {
        let (path, required) = match explicit {
            Some(path) => (path.to_owned(), true),
            None => (PathBuf::from("fleetward.toml"), false),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                toml::from_str(&text).with_context(|| format!("reading {}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                Ok(FileConfig::default())
            }
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DEVICE_LISTEN: &str = "127.0.0.1:8443";

/// Resolves the server's configuration: flag or environment, then file, then default.
pub fn resolve(cli: &Cli, args: &ServerArgs, file: FileConfig) -> anyhow::Result<ServerConfig> {
    let data_dir = cli
        .data_dir
        .clone()
        .or(file.data_dir)
        .unwrap_or_else(|| PathBuf::from(Cli::DEFAULT_DATA_DIR));
    let parse = |s: &str| s.parse::<SocketAddr>().context("built-in address");
    let mut identity = fleetward_server::identity::IdentityConfig::default();
    let names = if args.device_names.is_empty() {
        file.device_names
    } else {
        Some(args.device_names.clone())
    };
    if let Some(names) = names {
        identity.device_names = names;
    }
    identity.device_url = args.device_url.clone().or(file.device_url);
    let duration =
        |d: std::time::Duration| time::Duration::try_from(d).context("duration out of range");
    if let Some(d) = args.cert_lifetime.or(file.cert_lifetime) {
        identity.policy.cert_lifetime = duration(d)?;
    }
    if let Some(d) = args.renew_before.or(file.renew_before) {
        identity.policy.renew_before = duration(d)?;
    }
    if let Some(d) = args.renewal_overlap.or(file.renewal_overlap) {
        identity.policy.renewal_overlap = duration(d)?;
    }
    anyhow::ensure!(
        identity.policy.cert_lifetime >= time::Duration::hours(1)
            && identity.policy.renew_before < identity.policy.cert_lifetime,
        "certificate lifetime must be at least 1h and longer than renew-before"
    );
    Ok(ServerConfig {
        identity,
        database_url: args
            .database_url
            .clone()
            .or(file.database_url)
            .unwrap_or_else(|| ServerConfig::default_database_url(&data_dir)),
        listen: args
            .listen
            .or(file.listen)
            .map_or_else(|| parse(DEFAULT_LISTEN), Ok)?,
        device_listen: args
            .device_listen
            .or(file.device_listen)
            .map_or_else(|| parse(DEFAULT_DEVICE_LISTEN), Ok)?,
        max_body_bytes: args
            .max_body_bytes
            .or(file.max_body_bytes)
            .unwrap_or(ServerConfig::DEFAULT_MAX_BODY_BYTES),
        releases: {
            let mut releases = fleetward_server::repo::ReleaseConfig::default();
            if let Some(max) = args.max_artifact_bytes.or(file.max_artifact_bytes) {
                releases.max_artifact_bytes = max;
            }
            if let Some(every) = args
                .vulnerability_check
                .or(file.vulnerability_check)
                .filter(|d| !d.is_zero())
            {
                releases.vulnerability_check = every;
            }
            releases.artifact_dir = args.artifact_dir.clone().or(file.artifact_dir);
            releases.s3 = args
                .artifact_store
                .clone()
                .or(file.artifact_store)
                .map(|url| fleetward_server::artifacts::S3Settings {
                    url,
                    endpoint: args.s3_endpoint.clone().or(file.s3.endpoint),
                    region: args.s3_region.clone().or(file.s3.region),
                    access_key_id: file.s3.access_key_id,
                    secret_access_key: file.s3.secret_access_key,
                    allow_http: args.s3_allow_http || file.s3.allow_http,
                    presign: args.artifact_presign.or(file.s3.presign),
                });
            anyhow::ensure!(
                releases.s3.is_none() || releases.artifact_dir.is_none(),
                "artifact_dir and artifact_store are alternatives: give one"
            );
            releases
        },
        monitor: file
            .monitor
            .resolve()
            .context("[monitor] in fleetward.toml")?,
        rollout_tick: args
            .rollout_tick
            .or(file.rollout_tick)
            .filter(|d| !d.is_zero())
            .unwrap_or(fleetward_server::rollout::DEFAULT_TICK),
        data_dir,
    })
}

pub async fn init(cli: &Cli, args: &InitArgs) -> anyhow::Result<ExitCode> {
    let data_dir = cli.data_dir();
    let url = args
        .database_url
        .clone()
        .unwrap_or_else(|| ServerConfig::default_database_url(&data_dir));
    let options = fleetward_server::init::InitOptions {
        ca_key_path: args.ca_key.clone(),
    };
    let done = fleetward_server::init::initialize_with(
        &data_dir,
        &url,
        time::OffsetDateTime::now_utc(),
        &options,
    )
    .await?;
    if cli.json {
        crate::output::json(&serde_json::json!({
            "admin_token": done.admin_token,
            "token_id": done.token_id,
            "ca_fingerprint": done.ca_fingerprint,
            "ca_key_path": done.ca_key_path,
        }))?;
    } else {
        println!("Initialised {}.", data_dir.display());
        println!();
        println!(
            "Fleet CA created (ECDSA P-256); key in {} (mode 0600, back it up offline).",
            done.ca_key_path.display()
        );
        println!("CA SHA-256 fingerprint: {}", done.ca_fingerprint);
        println!();
        println!("First admin token (shown once; it is stored only as a hash):");
        println!();
        println!("    {}", done.admin_token);
        println!();
        println!("Start the server with `fleetward server`, then e.g.");
        println!("    export FLEETWARD_TOKEN=<the token above>");
        println!("    fleetward device list");
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn serve(cli: &Cli, args: &ServerArgs) -> anyhow::Result<ExitCode> {
    init_logging(&args.log)?;
    let file = FileConfig::load(args.config.as_deref())?;
    let config = resolve(cli, args, file)?;
    tracing::info!(
        data_dir = %config.data_dir.display(),
        database = %fleetward_server::redact_url(&config.database_url),
        artifacts = %config
            .releases
            .s3
            .as_ref()
            .map_or("local directory", |s3| s3.url.as_str()),
        "starting"
    );
    let server = fleetward_server::start(config).await?;
    server.run_until(shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

pub fn init_logging(filter: &str) -> anyhow::Result<()> {
    let filter =
        tracing_subscriber::EnvFilter::try_new(filter).context("parsing the log filter")?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .try_init()
        .ok();
    Ok(())
}

/// SIGINT or SIGTERM: stop accepting, finish what is in flight, close the store.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::Command;

    /// Resolves `fleetward ARGS server` against a `fleetward.toml` text.
    fn check(args: &[&str], file: &str, expected_listen: &str, expected_data_dir: &str) {
        let cli = Cli::try_parse_from(args).unwrap();
        let Command::Server(server_args) = &cli.command else {
            panic!("not a server command: {args:?}");
        };
        let file: FileConfig = toml::from_str(file).unwrap();
        let config = resolve(&cli, server_args, file).unwrap();
        assert_eq!(config.listen.to_string(), expected_listen, "{args:?}");
        assert_eq!(
            config.data_dir,
            PathBuf::from(expected_data_dir),
            "{args:?}"
        );
        assert!(
            config.database_url.contains(expected_data_dir),
            "default database lives in the data dir: {}",
            config.database_url
        );
    }

    #[test]
    fn flags_win_over_the_file_which_wins_over_defaults() {
        check(
            &["fleetward", "server"],
            "",
            "127.0.0.1:8080",
            "./fleetward-data",
        );
        check(
            &["fleetward", "server"],
            "listen = \"127.0.0.1:9000\"\ndata_dir = \"/srv/fw\"",
            "127.0.0.1:9000",
            "/srv/fw",
        );
        check(
            &[
                "fleetward",
                "--data-dir",
                "/flag",
                "server",
                "--listen",
                "127.0.0.1:1",
            ],
            "listen = \"127.0.0.1:9000\"\ndata_dir = \"/srv/fw\"",
            "127.0.0.1:1",
            "/flag",
        );
    }

    #[test]
    fn unknown_keys_in_the_file_are_errors() {
        let error = toml::from_str::<FileConfig>("listn = \"127.0.0.1:1\"")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("listn"), "{error}");
    }
}
