//! The server's side of device identity: loading the fleet CA at start-up,
//! the live revocation set, the cached CRL, enrolment-token minting and the
//! record of refused TLS handshakes.
//!
//! Identity events go to the audit log (the hash-chained security-event log
//! is a later issue; these entries are what it will take over).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fleetward_identity::ca::{CaKeyAlgorithm, read_key_file, write_key_file};
use fleetward_identity::{FleetCa, IdentityPolicy, RevocationReason, RevocationSet, RevokedCert};
use fleetward_identity::{Serial, device_server_config};
use fleetward_store::{AuditEntry, CaRecord, Store};
use rand::RngCore as _;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio::sync::Mutex;

use crate::error::ApiError;

/// Identity settings of a running server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityConfig {
    pub policy: IdentityPolicy,
    /// DNS names and IP addresses in the device listener's certificate
    /// (the bound IP is added when it is not a wildcard).
    pub device_names: Vec<String>,
    /// `https://host:port` devices reach the device listener at; when set,
    /// certificates carry `<url>/device/v1/crl` as CRL distribution point.
    pub device_url: Option<String>,
    /// How often re-key deadlines are enforced.
    pub deadline_check: std::time::Duration,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            policy: IdentityPolicy::default(),
            device_names: vec!["localhost".to_owned(), "127.0.0.1".to_owned()],
            device_url: None,
            deadline_check: std::time::Duration::from_secs(30),
        }
    }
}

/// Revokes the certificates of devices that let a re-key deadline pass.
/// Returns how many devices were cut off.
pub async fn enforce_rekey_deadlines(
    store: &dyn Store,
    identity: &IdentityState,
    now: OffsetDateTime,
) -> Result<usize, fleetward_store::StoreError> {
    let overdue = store.overdue_rekeys(now, fleetward_store::MAX_PAGE).await?;
    for device in &overdue {
        let audit = AuditEntry {
            at: now,
            actor: "identity-policy".to_owned(),
            action: "device.revoke".to_owned(),
            target: format!("device:{device}"),
            source: "server".to_owned(),
            detail: serde_json::json!({ "reason": "did not re-key by the deadline", "code": "privilege-withdrawn" }),
        };
        let revoked = store
            .revoke_device(
                device,
                now,
                "privilege-withdrawn",
                "did not re-key by the deadline",
                false,
                &audit,
            )
            .await?;
        for cert in &revoked {
            identity.revoke(&cert.serial, now);
        }
        tracing::warn!(%device, certificates = revoked.len(), "re-key deadline passed: certificates revoked");
    }
    Ok(overdue.len())
}

/// Enforces re-key deadlines every [`IdentityConfig::deadline_check`], on
/// the one replica holding the [`crate::lease::REKEY_DEADLINES`] lease.
/// Every replica still applies the revocations to its own in-memory view
/// when it reloads; the store is what they agree on.
pub async fn deadline_task(
    store: std::sync::Arc<dyn Store>,
    identity: std::sync::Arc<IdentityState>,
    holder: crate::lease::Holder,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    use crate::lease::{REKEY_DEADLINES, hold, release};
    let interval = identity.config.deadline_check;
    let mut ticks = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
        let now = OffsetDateTime::now_utc();
        if !hold(&*store, REKEY_DEADLINES, &holder, interval, now).await {
            continue;
        }
        // A decommissioned device in the batch is a conflict; the next
        // batch goes on without it because revoke_device cleared its row.
        if let Err(error) = enforce_rekey_deadlines(&*store, &identity, now).await {
            tracing::warn!(%error, "enforcing re-key deadlines");
        }
    }
    release(&*store, REKEY_DEADLINES, &holder).await;
}

/// Where `init` puts the CA unless told otherwise.
pub fn default_ca_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("ca").join("fleet-ca.key")
}

pub const CA_LIFETIME_DAYS: i64 = 20 * 365;

/// Makes the fleet CA: key file (0600, never overwritten), then its record.
pub async fn create_ca(
    store: &dyn Store,
    key_path: &Path,
    now: OffsetDateTime,
) -> anyhow::Result<FleetCa> {
    if store.ca().await?.is_some() {
        bail!("the fleet CA exists already");
    }
    let (ca, key_pem) = FleetCa::generate(
        "fleetward fleet CA",
        CaKeyAlgorithm::EcdsaP256,
        now,
        time::Duration::days(CA_LIFETIME_DAYS),
    )?;
    let key_path = std::path::absolute(key_path)
        .with_context(|| format!("resolving {}", key_path.display()))?;
    write_key_file(&key_path, &key_pem)
        .with_context(|| format!("writing the CA key to {}", key_path.display()))?;
    let record = CaRecord {
        cert_pem: ca.cert_pem().to_owned(),
        key_path: key_path.display().to_string(),
        fingerprint: ca.fingerprint(),
        created_at: now,
    };
    let audit = AuditEntry {
        at: now,
        actor: "init".to_owned(),
        action: "ca.create".to_owned(),
        target: format!("ca:{}", record.fingerprint),
        source: "local".to_owned(),
        detail: serde_json::json!({ "key_path": record.key_path, "algorithm": "ecdsa-p256" }),
    };
    store.put_ca(&record, &audit).await?;
    Ok(ca)
}

/// The CRL last built, and when it must be rebuilt.
#[derive(Debug)]
struct CachedCrl {
    der: Arc<Vec<u8>>,
    generation: u64,
    rebuild_at: OffsetDateTime,
}

/// Refused handshakes are recorded, but at most this many a minute: an
/// attacker must not turn garbage on the TLS port into unbounded log writes.
const REFUSALS_PER_MINUTE: u32 = 60;

#[derive(Debug, Default)]
struct RefusalWindow {
    start: Option<OffsetDateTime>,
    recorded: u32,
    suppressed: u64,
}

/// The fleet CA and everything derived from it, shared by both routers.
#[derive(Debug)]
pub struct IdentityState {
    pub ca: FleetCa,
    pub revocations: Arc<RevocationSet>,
    pub tls: Arc<rustls::ServerConfig>,
    pub config: IdentityConfig,
    generation: AtomicU64,
    crl: Mutex<Option<CachedCrl>>,
    refusals: Mutex<RefusalWindow>,
}

impl IdentityState {
    /// Loads the CA named in the store, the revocations, and makes the
    /// device listener's server certificate (its key never touches disk).
    pub async fn load(
        store: &dyn Store,
        config: IdentityConfig,
        device_addr: SocketAddr,
        now: OffsetDateTime,
    ) -> anyhow::Result<Self> {
        let record = store.ca().await?.context(
            "this data dir has no fleet CA; it was initialised by an older fleetward: run `fleetward init` on a new data dir",
        )?;
        let key_pem = read_key_file(Path::new(&record.key_path))
            .with_context(|| format!("reading the fleet CA key {}", record.key_path))?;
        let ca = FleetCa::from_pem(&record.cert_pem, &key_pem).context("loading the fleet CA")?;
        let revocations = Arc::new(RevocationSet::new());
        for cert in store.revoked_certificates().await? {
            if let (Ok(serial), Some(at)) = (Serial::parse_hex(&cert.serial), cert.revoked_at) {
                revocations.revoke(serial, at);
            }
        }
        let mut names = config.device_names.clone();
        if !device_addr.ip().is_unspecified() && !names.contains(&device_addr.ip().to_string()) {
            names.push(device_addr.ip().to_string());
        }
        let (chain, key) = ca
            .issue_server(&names, now, time::Duration::days(365))
            .context("issuing the device listener certificate")?;
        let tls = device_server_config(&ca, revocations.clone(), chain, key)?;
        tracing::info!(fingerprint = %ca.fingerprint(), revoked = revocations.len(), "fleet CA loaded");
        Ok(IdentityState {
            ca,
            revocations,
            tls,
            config,
            generation: AtomicU64::new(0),
            crl: Mutex::new(None),
            refusals: Mutex::new(RefusalWindow::default()),
        })
    }

    /// Revokes at once for new handshakes and the per-request check, and
    /// marks the CRL stale.
    pub fn revoke(&self, serial: &str, at: OffsetDateTime) {
        if let Ok(serial) = Serial::parse_hex(serial) {
            self.revocations.revoke(serial, at);
        }
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// The current signed CRL (DER). Rebuilt after a revocation, when a
    /// scheduled revocation comes due, and hourly (so `nextUpdate`, a day
    /// ahead, never passes while the server runs).
    pub async fn crl(
        &self,
        store: &dyn Store,
        now: OffsetDateTime,
    ) -> Result<Arc<Vec<u8>>, ApiError> {
        let generation = self.generation.load(Ordering::SeqCst);
        let mut cached = self.crl.lock().await;
        if let Some(crl) = cached.as_ref()
            && crl.generation == generation
            && now < crl.rebuild_at
        {
            return Ok(crl.der.clone());
        }
        let mut revoked = Vec::new();
        let mut rebuild_at = now + time::Duration::hours(1);
        for cert in store.revoked_certificates().await? {
            let (Ok(serial), Some(at)) = (Serial::parse_hex(&cert.serial), cert.revoked_at) else {
                continue;
            };
            if at > now {
                rebuild_at = rebuild_at.min(at);
                continue;
            }
            if cert.not_after <= now {
                // Expired certificates fail validation anyway (RFC 5280 §3.3).
                continue;
            }
            let reason = cert
                .reason
                .as_deref()
                .and_then(RevocationReason::parse)
                .unwrap_or(RevocationReason::Unspecified);
            revoked.push(RevokedCert {
                serial,
                revoked_at: at,
                reason,
            });
        }
        let number = u64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
        let der = self
            .ca
            .crl(&revoked, number, now, now + time::Duration::days(1))
            .map_err(|e| {
                tracing::error!(error = %e, "building the CRL");
                ApiError::internal()
            })?;
        let der = Arc::new(der);
        *cached = Some(CachedCrl {
            der: der.clone(),
            generation,
            rebuild_at,
        });
        Ok(der)
    }

    /// Records a refusal (a TLS handshake, an enrolment, a renewal) in the
    /// audit log, at most [`REFUSALS_PER_MINUTE`] a minute; the next entry
    /// written says how many were left out.
    pub async fn record_refusal(&self, store: &dyn Store, mut entry: AuditEntry) {
        let now = entry.at;
        let suppressed = {
            let mut window = self.refusals.lock().await;
            if window
                .start
                .is_none_or(|start| now - start >= time::Duration::minutes(1))
            {
                window.start = Some(now);
                window.recorded = 0;
            }
            if window.recorded >= REFUSALS_PER_MINUTE {
                window.suppressed += 1;
                return;
            }
            window.recorded += 1;
            std::mem::take(&mut window.suppressed)
        };
        if suppressed > 0
            && let Some(detail) = entry.detail.as_object_mut()
        {
            detail.insert("suppressed_before".to_owned(), suppressed.into());
        }
        if let Err(error) = store.append_audit(&entry).await {
            tracing::warn!(%error, action = %entry.action, "recording a refusal");
        }
    }

    /// Records a refused TLS handshake.
    pub async fn record_refused_handshake(
        &self,
        store: &dyn Store,
        peer: SocketAddr,
        reason: &str,
        now: OffsetDateTime,
    ) {
        let entry = AuditEntry {
            at: now,
            actor: "device-listener".to_owned(),
            action: "device.tls_refused".to_owned(),
            target: format!("peer:{peer}"),
            source: peer.to_string(),
            detail: serde_json::json!({ "reason": reason }),
        };
        self.record_refusal(store, entry).await;
    }

    /// When a certificate expiring at `not_after` should be renewed.
    pub fn renew_after(&self, not_after: OffsetDateTime) -> OffsetDateTime {
        not_after - self.config.policy.renew_before
    }

    /// The CRL distribution point put into device certificates.
    pub fn crl_url(&self) -> Option<String> {
        self.config
            .device_url
            .as_ref()
            .map(|base| format!("{}/device/v1/crl", base.trim_end_matches('/')))
    }
}

const ENROLMENT_PREFIX: &str = "fwe_";
const ID_BYTES: usize = 8;
const SECRET_BYTES: usize = 32;

/// A new enrolment token: `fwe_<16 hex id>_<43 base64url secret>`.
#[derive(Debug)]
pub struct MintedEnrolmentToken {
    pub id: String,
    pub token: String,
    pub secret_hash: [u8; 32],
}

pub fn mint_enrolment_token() -> MintedEnrolmentToken {
    let mut id = [0u8; ID_BYTES];
    let mut secret = [0u8; SECRET_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut id);
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let id = hex::encode(id);
    let secret = URL_SAFE_NO_PAD.encode(secret);
    MintedEnrolmentToken {
        token: format!("{ENROLMENT_PREFIX}{id}_{secret}"),
        secret_hash: hash_secret(&secret),
        id,
    }
}

pub fn hash_secret(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Splits a presented enrolment token into id and secret.
pub fn split_enrolment_token(presented: &str) -> Option<(&str, &str)> {
    let rest = presented.strip_prefix(ENROLMENT_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let id_ok = id.len() == ID_BYTES * 2 && id.bytes().all(|b| b.is_ascii_hexdigit());
    let secret_ok = secret.len() == 43
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    (id_ok && secret_ok).then_some((id, secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_split_back() {
        let minted = mint_enrolment_token();
        let (id, secret) = split_enrolment_token(&minted.token).unwrap();
        assert_eq!(id, minted.id);
        assert_eq!(hash_secret(secret), minted.secret_hash);
        for bad in ["", "fwe_", "fwt_0123456789abcdef_x", &minted.token[..20]] {
            assert!(split_enrolment_token(bad).is_none(), "{bad}");
        }
    }
}
