//! `fleetward enroll-token …` and the identity subcommands of
//! `fleetward device …` (allow, revoke, decommission, rekey, certs).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Subcommand;
use fleetward_core::{DeviceId, Tag};
use fleetward_wire::identity::{
    AllowListItem, AllowListResult, AllowListUpload, CertificateList, CreateEnrollToken,
    CreatedEnrollToken, EnrollTokenInfo, EnrollTokenList, RekeyRequest, RekeyResult, RevokeDevice,
    RevokedDevice,
};

use crate::client::Client;
use crate::output;

#[derive(Debug, Subcommand)]
pub enum EnrollTokenCommand {
    /// Create an enrolment token; its secret is printed once.
    Create {
        /// Tags for enrolled devices, e.g. hw=rev2,region=eu.
        #[arg(long, value_delimiter = ',', value_parser = parse_tag)]
        tags: Vec<Tag>,
        /// How many devices may enrol with it.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// Lifetime, e.g. 24h or 7d.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "24h")]
        expires: Duration,
        /// A label, e.g. the production line.
        #[arg(long)]
        name: Option<String>,
        /// Devices stay `pending` until `fleetward device approve`.
        #[arg(long)]
        require_approval: bool,
        /// Only device ids on the allow-list (`fleetward device allow`) may use it.
        #[arg(long)]
        allow_listed_only: bool,
    },
    /// List enrolment tokens (never their secrets).
    List,
    /// Revoke an enrolment token at once.
    Revoke { id: String },
}

/// The identity subcommands of `fleetward device`.
#[derive(Debug, Subcommand)]
pub enum DeviceIdentityCommand {
    /// Upload manufacturing-line device ids to the allow-list. FILE has one
    /// device id per line, optionally followed by the path of its PEM public
    /// key (relative to FILE); `#` starts a comment.
    Allow { file: PathBuf },
    /// Revoke a device's certificates at once (it may enrol again with a token).
    Revoke {
        id: String,
        /// Why (kept in the audit log).
        #[arg(long)]
        reason: String,
        /// CRL reason code: unspecified, key-compromise, superseded, privilege-withdrawn.
        #[arg(long)]
        code: Option<String>,
    },
    /// Decommission a device for good: certificates revoked, never enrols again.
    Decommission {
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// Make devices create a new key and renew at their next poll.
    Rekey {
        /// Device ids.
        ids: Vec<String>,
        /// Or: a target query.
        #[arg(long, short, conflicts_with = "ids")]
        query: Option<String>,
        /// Or: the whole fleet.
        #[arg(long, conflicts_with_all = ["ids", "query"])]
        all: bool,
        /// Revoke the certificates of devices that have not re-keyed by
        /// then, e.g. 24h (they must enrol again).
        #[arg(long, value_parser = humantime::parse_duration)]
        deadline: Option<std::time::Duration>,
    },
    /// The certificates a device has held.
    Certs { id: String },
}

fn parse_tag(raw: &str) -> Result<Tag, String> {
    Tag::parse(raw).map_err(|e| e.to_string())
}

fn device_id(raw: &str) -> anyhow::Result<DeviceId> {
    DeviceId::parse(raw).with_context(|| format!("device id {raw:?}"))
}

fn print_token(info: &EnrollTokenInfo) {
    let tags: Vec<String> = info.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!(
        "enrolment token {} ({}): {} of {} uses left, tags [{}], expires {}{}{}",
        info.id,
        info.name,
        info.uses_left,
        info.uses_total,
        tags.join(","),
        output::time(Some(info.expires_at)),
        if info.require_approval {
            ", needs approval"
        } else {
            ""
        },
        if info.allow_listed_only {
            ", allow-listed devices only"
        } else {
            ""
        },
    );
}

pub async fn run_enroll_token(
    client: &Client,
    json: bool,
    command: &EnrollTokenCommand,
) -> anyhow::Result<ExitCode> {
    match command {
        EnrollTokenCommand::Create {
            tags,
            uses,
            expires,
            name,
            require_approval,
            allow_listed_only,
        } => {
            let tags: BTreeMap<String, String> = tags
                .iter()
                .map(|t| (t.key.as_str().to_owned(), t.value.as_str().to_owned()))
                .collect();
            let request = CreateEnrollToken {
                name: name.clone(),
                tags,
                uses: *uses,
                expires_in_secs: expires.as_secs(),
                require_approval: *require_approval,
                allow_listed_only: *allow_listed_only,
            };
            let created: CreatedEnrollToken =
                client.post("/api/v1/enroll-tokens", &request).await?;
            if json {
                output::json(&created)?;
            } else {
                print_token(&created.info);
                println!();
                println!("    {}", created.token);
                println!();
                println!(
                    "Give it to the devices (or the production line) now: it is not shown again."
                );
            }
        }
        EnrollTokenCommand::List => {
            let list: EnrollTokenList = client.get("/api/v1/enroll-tokens", &[]).await?;
            if json {
                output::json(&list)?;
            } else {
                let rows: Vec<Vec<String>> = list
                    .items
                    .iter()
                    .map(|t| {
                        vec![
                            t.id.clone(),
                            t.name.clone(),
                            format!("{}/{}", t.uses_left, t.uses_total),
                            t.tags
                                .iter()
                                .map(|(k, v)| format!("{k}={v}"))
                                .collect::<Vec<_>>()
                                .join(","),
                            output::time(Some(t.expires_at)),
                            output::time(t.revoked_at),
                        ]
                    })
                    .collect();
                output::table(
                    &["ID", "NAME", "USES LEFT", "TAGS", "EXPIRES", "REVOKED"],
                    &rows,
                );
            }
        }
        EnrollTokenCommand::Revoke { id } => {
            let valid = id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit());
            anyhow::ensure!(
                valid,
                "an enrolment token id is 16 hex digits (see `fleetward enroll-token list`)"
            );
            let info: EnrollTokenInfo = client
                .delete(&format!("/api/v1/enroll-tokens/{id}"))
                .await?;
            if json {
                output::json(&info)?;
            } else {
                println!(
                    "enrolment token {} revoked at {}",
                    info.id,
                    output::time(info.revoked_at)
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads an allow-list file (see [`DeviceIdentityCommand::Allow`]).
pub fn read_allow_list(file: &Path) -> anyhow::Result<Vec<AllowListItem>> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let base = file.parent().unwrap_or(Path::new("."));
    let mut items = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut fields = line.split_whitespace();
        let (Some(id), key, None) = (fields.next(), fields.next(), fields.next()) else {
            bail!(
                "{}:{}: expected `DEVICE-ID [PUBLIC-KEY.pem]`",
                file.display(),
                number + 1
            );
        };
        device_id(id).with_context(|| format!("{}:{}", file.display(), number + 1))?;
        let public_key = key
            .map(|path| {
                let path = base.join(path);
                std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))
            })
            .transpose()?;
        items.push(AllowListItem {
            id: id.to_owned(),
            public_key,
        });
    }
    anyhow::ensure!(!items.is_empty(), "{} lists no devices", file.display());
    Ok(items)
}

pub async fn run_device(
    client: &Client,
    json: bool,
    command: &DeviceIdentityCommand,
) -> anyhow::Result<ExitCode> {
    match command {
        DeviceIdentityCommand::Allow { file } => {
            let devices = read_allow_list(file)?;
            let mut added = 0;
            let mut total = 0;
            for chunk in devices.chunks(10_000) {
                let result: AllowListResult = client
                    .post(
                        "/api/v1/allow-list",
                        &AllowListUpload {
                            devices: chunk.to_vec(),
                        },
                    )
                    .await?;
                added += result.added;
                total = result.total;
            }
            let result = AllowListResult { added, total };
            if json {
                output::json(&result)?;
            } else {
                println!("{added} devices allow-listed ({total} on the list)");
            }
        }
        DeviceIdentityCommand::Revoke { id, reason, code } => {
            let id = device_id(id)?;
            let request = RevokeDevice {
                reason: reason.clone(),
                code: code.clone(),
            };
            let done: RevokedDevice = client
                .post(&format!("/api/v1/devices/{id}/revoke"), &request)
                .await?;
            print_revoked(json, &done)?;
        }
        DeviceIdentityCommand::Decommission { id, reason } => {
            let id = device_id(id)?;
            let request = RevokeDevice {
                reason: reason.clone(),
                code: None,
            };
            let done: RevokedDevice = client
                .post(&format!("/api/v1/devices/{id}/decommission"), &request)
                .await?;
            print_revoked(json, &done)?;
        }
        DeviceIdentityCommand::Rekey {
            ids,
            query,
            all,
            deadline,
        } => {
            for id in ids {
                device_id(id)?;
            }
            anyhow::ensure!(
                !ids.is_empty() || query.is_some() || *all,
                "name device ids, --query or --all"
            );
            let request = RekeyRequest {
                ids: ids.clone(),
                query: query.clone(),
                all: *all,
                deadline_secs: deadline.map(|d| d.as_secs().max(1)),
            };
            let done: RekeyResult = client.post("/api/v1/devices/rekey", &request).await?;
            if json {
                output::json(&done)?;
            } else {
                println!(
                    "{} devices will make a new key at their next poll",
                    done.devices
                );
            }
        }
        DeviceIdentityCommand::Certs { id } => {
            let id = device_id(id)?;
            let list: CertificateList = client
                .get(&format!("/api/v1/devices/{id}/certificates"), &[])
                .await?;
            if json {
                output::json(&list)?;
            } else {
                let rows: Vec<Vec<String>> = list
                    .items
                    .iter()
                    .map(|c| {
                        vec![
                            c.serial.clone(),
                            c.key_kind.clone(),
                            output::time(Some(c.issued_at)),
                            output::time(Some(c.not_after)),
                            output::time(c.revoked_at),
                            c.reason.clone().unwrap_or_else(|| "-".to_owned()),
                        ]
                    })
                    .collect();
                output::table(
                    &["SERIAL", "KEY", "ISSUED", "EXPIRES", "REVOKED", "REASON"],
                    &rows,
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_revoked(json: bool, done: &RevokedDevice) -> anyhow::Result<()> {
    if json {
        output::json(done)?;
    } else {
        println!(
            "device {} ({}): {} certificate(s) revoked: {}",
            done.device_id,
            done.status,
            done.revoked_serials.len(),
            done.revoked_serials.join(", ")
        );
    }
    Ok(())
}
