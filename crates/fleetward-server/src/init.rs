//! `fleetward init`: a new installation, its fleet CA and its first admin token.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use fleetward_core::Role;
use fleetward_store::{AuditEntry, TokenRecord};
use time::OffsetDateTime;

use crate::auth::mint_token;

/// What `init` made. The token is shown once and stored only as a hash.
#[derive(Debug)]
pub struct Initialized {
    pub admin_token: String,
    pub token_id: String,
    /// SHA-256 of the fleet CA certificate, to check devices' copies against.
    pub ca_fingerprint: String,
    pub ca_key_path: PathBuf,
}

/// Choices `init` takes beyond the data dir and database.
#[derive(Debug, Clone, Default)]
pub struct InitOptions {
    /// Where the fleet CA's private key goes (default `<data-dir>/ca/fleet-ca.key`);
    /// it may be outside the data dir, e.g. on an encrypted or removable volume.
    pub ca_key_path: Option<PathBuf>,
}

/// [`initialize_with`] with the defaults.
pub async fn initialize(
    data_dir: &Path,
    database_url: &str,
    now: OffsetDateTime,
) -> anyhow::Result<Initialized> {
    initialize_with(data_dir, database_url, now, &InitOptions::default()).await
}

/// Creates the data dir and database, the fleet CA, and mints the first
/// admin token. Refuses to run twice: a second admin token would be a silent
/// back door, and a second CA would orphan every enrolled device.
pub async fn initialize_with(
    data_dir: &Path,
    database_url: &str,
    now: OffsetDateTime,
    options: &InitOptions,
) -> anyhow::Result<Initialized> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating data dir {}", data_dir.display()))?;
    let store = fleetward_store::open(database_url)
        .await
        .with_context(|| format!("opening the store at {}", crate::redact_url(database_url)))?;
    let result = async {
        if !store.list_tokens().await?.is_empty() {
            bail!(
                "{} is initialised already; ask an admin for a token (`fleetward token create`)",
                data_dir.display()
            );
        }
        let ca_key_path = options
            .ca_key_path
            .clone()
            .unwrap_or_else(|| crate::identity::default_ca_key_path(data_dir));
        let ca = crate::identity::create_ca(&*store, &ca_key_path, now).await?;
        let minted = mint_token();
        let record = TokenRecord {
            id: minted.id.clone(),
            name: "initial admin".to_owned(),
            role: Role::Admin,
            secret_hash: minted.secret_hash,
            created_at: now,
            expires_at: None,
            revoked_at: None,
            created_by: "init".to_owned(),
        };
        let audit = AuditEntry {
            at: now,
            actor: "init".to_owned(),
            action: "token.create".to_owned(),
            target: format!("token:{}", minted.id),
            source: "local".to_owned(),
            detail: serde_json::json!({ "role": "admin", "name": record.name }),
        };
        store.insert_token(&record, &audit).await?;
        crate::events::load_or_create_key(data_dir)?;
        Ok(Initialized {
            admin_token: minted.token,
            token_id: minted.id,
            ca_fingerprint: ca.fingerprint(),
            ca_key_path,
        })
    }
    .await;
    store.close().await;
    result
}
