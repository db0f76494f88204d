//! `fleetward device …`: the registry from the command line.

use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Subcommand;
use fleetward_core::{DeviceStatus, Tag, TagKey};
use fleetward_wire::identity::{QuarantineCertificate, QuarantineDevice};
use fleetward_wire::operator::{
    Device, DeviceCount, DevicePage, RegisterDevice, RegisterDevices, Registered, UpdateDevice,
};

use crate::client::Client;
use crate::output;

#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// List devices, optionally those a target query selects.
    List {
        /// Target query, e.g. 'hw = "rev2" and region in ("eu", "us") and not beta'.
        #[arg(long, short)]
        query: Option<String>,
        /// Page size (1-1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Follow the cursor through every page.
        #[arg(long)]
        all: bool,
        /// Start after this cursor (from a previous --json page).
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Count the devices a target query selects.
    Count {
        #[arg(long, short)]
        query: Option<String>,
    },
    /// Show one device.
    Show { id: String },
    /// Pre-register a device.
    Register {
        id: String,
        #[arg(long)]
        hardware: String,
        #[arg(long)]
        version: Option<String>,
        /// Tag as key=value; repeat for more.
        #[arg(long = "tag", value_parser = parse_tag)]
        tags: Vec<Tag>,
        /// Register as `active` instead of `pending`.
        #[arg(long)]
        active: bool,
    },
    /// Register devices from a JSON Lines file (one RegisterDevice object per line), in batches.
    Import {
        file: PathBuf,
        /// Devices per request (each batch is all-or-nothing).
        #[arg(long, default_value_t = 5000)]
        batch: usize,
    },
    /// Set tags (key=value) on a device.
    Tag {
        id: String,
        #[arg(required = true, value_parser = parse_tag)]
        tags: Vec<Tag>,
    },
    /// Remove tags (by key) from a device.
    Untag {
        id: String,
        #[arg(required = true, value_parser = parse_tag_key)]
        keys: Vec<TagKey>,
    },
    /// Accept a pending device (status becomes active).
    Approve { id: String },
    /// Set a device's status: pending, active, quarantined or decommissioned.
    SetStatus {
        id: String,
        #[arg(value_parser = parse_status)]
        status: DeviceStatus,
    },
    /// Quarantine a device: no rollout reaches it until it is set active again.
    Quarantine {
        id: String,
        /// Why (kept in the security-event log).
        #[arg(long)]
        reason: String,
        /// Also revoke its certificates at once (it must enrol again).
        #[arg(long)]
        revoke_certificate: bool,
    },
    /// A device's security timeline, oldest first.
    Timeline {
        id: String,
        /// Only events at or above this severity.
        #[arg(long)]
        min_severity: Option<String>,
        /// Start after this sequence number.
        #[arg(long)]
        after: Option<u64>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    #[command(flatten)]
    Identity(crate::cmd::identity::DeviceIdentityCommand),
}

fn parse_tag(raw: &str) -> Result<Tag, String> {
    Tag::parse(raw).map_err(|e| e.to_string())
}

fn parse_tag_key(raw: &str) -> Result<TagKey, String> {
    TagKey::parse(raw).map_err(|e| e.to_string())
}

fn parse_status(raw: &str) -> Result<DeviceStatus, String> {
    DeviceStatus::parse(raw)
        .ok_or_else(|| "expected pending, active, quarantined or decommissioned".to_owned())
}

fn device_path(id: &str) -> anyhow::Result<String> {
    let id = fleetward_core::DeviceId::parse(id).with_context(|| format!("device id {id:?}"))?;
    Ok(format!("/api/v1/devices/{id}"))
}

pub async fn run(client: &Client, json: bool, command: &DeviceCommand) -> anyhow::Result<ExitCode> {
    match command {
        DeviceCommand::List {
            query,
            limit,
            all,
            cursor,
        } => {
            let mut cursor = cursor.clone();
            let mut rows = Vec::new();
            loop {
                let mut params = vec![("limit", limit.to_string())];
                if let Some(query) = query {
                    params.push(("query", query.clone()));
                }
                if let Some(cursor) = &cursor {
                    params.push(("cursor", cursor.clone()));
                }
                let page: DevicePage = client.get("/api/v1/devices", &params).await?;
                if json && !all {
                    output::json(&page)?;
                    return Ok(ExitCode::SUCCESS);
                }
                rows.extend(page.items);
                match page.next_cursor {
                    Some(next) if *all => cursor = Some(next),
                    Some(next) => {
                        print_devices(&rows);
                        eprintln!("(more: --cursor {next} or --all)");
                        return Ok(ExitCode::SUCCESS);
                    }
                    None => break,
                }
            }
            if json {
                output::json(&rows)?;
            } else {
                print_devices(&rows);
            }
        }
        DeviceCommand::Count { query } => {
            let params: Vec<_> = query.iter().map(|q| ("query", q.clone())).collect();
            let count: DeviceCount = client.get("/api/v1/devices/count", &params).await?;
            if json {
                output::json(&count)?;
            } else {
                println!("{}", count.count);
            }
        }
        DeviceCommand::Show { id } => {
            let device: Device = client.get(&device_path(id)?, &[]).await?;
            show(json, &device)?;
        }
        DeviceCommand::Register {
            id,
            hardware,
            version,
            tags,
            active,
        } => {
            let request = RegisterDevice {
                id: id.clone(),
                hardware: hardware.clone(),
                version: version.clone(),
                tags: tag_map(tags),
                status: Some(if *active {
                    DeviceStatus::Active
                } else {
                    DeviceStatus::Pending
                }),
            };
            let device: Device = client.post("/api/v1/devices", &request).await?;
            show(json, &device)?;
        }
        DeviceCommand::Import { file, batch } => import(client, json, file, *batch).await?,
        DeviceCommand::Identity(command) => {
            return crate::cmd::identity::run_device(client, json, command).await;
        }
        DeviceCommand::Tag { id, tags } => {
            let change = UpdateDevice {
                set_tags: tag_map(tags),
                ..UpdateDevice::default()
            };
            let device: Device = client.patch(&device_path(id)?, &change).await?;
            show(json, &device)?;
        }
        DeviceCommand::Untag { id, keys } => {
            let change = UpdateDevice {
                remove_tags: keys.iter().map(|k| k.as_str().to_owned()).collect(),
                ..UpdateDevice::default()
            };
            let device: Device = client.patch(&device_path(id)?, &change).await?;
            show(json, &device)?;
        }
        DeviceCommand::Approve { id } => {
            let change = UpdateDevice {
                status: Some(DeviceStatus::Active),
                ..UpdateDevice::default()
            };
            let device: Device = client.patch(&device_path(id)?, &change).await?;
            show(json, &device)?;
        }
        DeviceCommand::Quarantine {
            id,
            reason,
            revoke_certificate,
        } => {
            let request = QuarantineDevice {
                reason: reason.clone(),
                certificate: if *revoke_certificate {
                    QuarantineCertificate::Revoke
                } else {
                    QuarantineCertificate::Keep
                },
            };
            let device: Device = client
                .post(&format!("{}/quarantine", device_path(id)?), &request)
                .await?;
            show(json, &device)?;
        }
        DeviceCommand::Timeline {
            id,
            min_severity,
            after,
            limit,
        } => {
            let mut params = vec![("limit", limit.to_string())];
            if let Some(min) = min_severity {
                params.push(("min_severity", min.clone()));
            }
            if let Some(after) = after {
                params.push(("after", after.to_string()));
            }
            let page: fleetward_wire::events::EventPage = client
                .get(&format!("{}/timeline", device_path(id)?), &params)
                .await?;
            crate::cmd::events::print_page(json, &page)?;
        }
        DeviceCommand::SetStatus { id, status } => {
            let change = UpdateDevice {
                status: Some(*status),
                ..UpdateDevice::default()
            };
            let device: Device = client.patch(&device_path(id)?, &change).await?;
            show(json, &device)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn tag_map(tags: &[Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .map(|t| (t.key.as_str().to_owned(), t.value.as_str().to_owned()))
        .collect()
}

fn format_tags(tags: &BTreeMap<String, String>) -> String {
    tags.iter()
        .map(|(k, v)| {
            if v.is_empty() {
                k.clone()
            } else {
                format!("{k}={v}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn print_devices(devices: &[Device]) {
    let rows: Vec<Vec<String>> = devices
        .iter()
        .map(|d| {
            vec![
                d.id.clone(),
                d.hardware.clone(),
                d.version.clone().unwrap_or_else(|| "-".to_owned()),
                d.status.to_string(),
                output::time(d.last_seen),
                format_tags(&d.tags),
            ]
        })
        .collect();
    output::table(
        &["ID", "HARDWARE", "VERSION", "STATUS", "LAST SEEN", "TAGS"],
        &rows,
    );
}

fn show(json: bool, device: &Device) -> anyhow::Result<()> {
    if json {
        return output::json(device);
    }
    println!("id:         {}", device.id);
    println!("hardware:   {}", device.hardware);
    println!("version:    {}", device.version.as_deref().unwrap_or("-"));
    println!("status:     {}", device.status);
    println!("tags:       {}", format_tags(&device.tags));
    println!("created:    {}", output::time(Some(device.created_at)));
    println!("first seen: {}", output::time(device.first_seen));
    println!("last seen:  {}", output::time(device.last_seen));
    Ok(())
}

/// Streams the file: a million-device import never sits in memory whole.
async fn import(client: &Client, json: bool, file: &PathBuf, batch: usize) -> anyhow::Result<()> {
    if batch == 0 || batch > 10_000 {
        bail!("--batch must be between 1 and 10000");
    }
    let reader = std::io::BufReader::new(
        std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?,
    );
    let progress = if json {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new_spinner()
    };
    progress.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {pos} devices registered ({per_sec})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    let mut pending = Vec::with_capacity(batch);
    let mut total = 0u64;
    for (number, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", file.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let device: RegisterDevice = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: not a device record", file.display(), number + 1))?;
        pending.push(device);
        if pending.len() == batch {
            total += send_batch(client, &mut pending, total).await?;
            progress.set_position(total);
        }
    }
    if !pending.is_empty() {
        total += send_batch(client, &mut pending, total).await?;
    }
    progress.finish_and_clear();
    if json {
        output::json(&Registered { registered: total })?;
    } else {
        println!("{total} devices registered");
    }
    Ok(())
}

async fn send_batch(
    client: &Client,
    pending: &mut Vec<RegisterDevice>,
    done: u64,
) -> anyhow::Result<u64> {
    let request = RegisterDevices {
        devices: std::mem::take(pending),
    };
    let answer: Registered = client
        .post("/api/v1/devices/batch", &request)
        .await
        .with_context(|| {
            format!(
                "registering the batch after the first {done} devices (that batch was not stored)"
            )
        })?;
    Ok(answer.registered)
}
