//! `fleetward-agent enroll`: the device makes its own key pair and CSR
//! (the key never leaves it), trades an enrolment token for a certificate,
//! stores both with mode 0600, then pins the director's key over the
//! mutual-TLS connection it can now make.

use fleetward_tuf::PublicKey;
use fleetward_wire::device::DirectorKey;
use fleetward_wire::identity::{EnrollRequest, IssuedCertificate};

use crate::config::AgentConfig;
use crate::net::Net;
use crate::state::{CERT_FILE, KEY_FILE, StateDir, write_atomic};
use crate::{AgentError, Result};

/// A fresh ECDSA P-256 key and a CSR naming `device_id` the way the
/// server expects (CN and SAN URI `urn:fleetward:device:<id>`).
pub fn make_key_and_csr(device_id: &str) -> Result<(String, String)> {
    let key = rcgen::KeyPair::generate()
        .map_err(|e| AgentError::State(format!("making a key pair: {e}")))?;
    let mut params = rcgen::CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, device_id);
    params.distinguished_name = dn;
    let uri = format!("urn:fleetward:device:{device_id}")
        .try_into()
        .map_err(|e| AgentError::Config(format!("device id {device_id:?}: {e}")))?;
    params.subject_alt_names = vec![rcgen::SanType::URI(uri)];
    let csr = params
        .serialize_request(&key)
        .and_then(|c| c.pem())
        .map_err(|e| AgentError::State(format!("making the CSR: {e}")))?;
    Ok((key.serialize_pem(), csr))
}

/// Checks the provisioned root before anything is enrolled, so a broken
/// image is noticed at the factory, not at the first update.
pub fn check_provisioned_root(bytes: &[u8]) -> Result<fleetward_tuf::Root> {
    let raw = fleetward_tuf::parse_signed::<fleetward_tuf::Root>(bytes)
        .map_err(|e| AgentError::Config(format!("trusted root: {e}")))?;
    raw.signed
        .check_consistent()
        .map_err(|e| AgentError::Config(format!("trusted root: {e}")))?;
    fleetward_tuf::verify_role(
        &raw.canonical_signed,
        &raw.signatures,
        &raw.signed,
        fleetward_tuf::ROLE_ROOT,
    )
    .map_err(|e| AgentError::Config(format!("trusted root: {e}")))?;
    Ok(raw.signed)
}

/// Enrols with `token` and pins the director key. Returns the device id
/// the server issued the certificate to.
pub async fn enroll(config: &AgentConfig, token: &str) -> Result<String> {
    let provisioned =
        std::fs::read(&config.trusted_root).map_err(|e| AgentError::io(&config.trusted_root, e))?;
    check_provisioned_root(&provisioned)?;
    let ca = std::fs::read(&config.ca_cert).map_err(|e| AgentError::io(&config.ca_cert, e))?;
    let dir = StateDir::new(&config.state_dir);
    dir.create()?;
    let (key_pem, csr) = make_key_and_csr(&config.device_id)?;
    let anonymous = Net::new(&config.server, &ca, None, &config.limits)?;
    let issued: IssuedCertificate = anonymous
        .post_json(
            "/device/v1/enroll",
            &EnrollRequest {
                token: token.to_owned(),
                csr,
                hardware: Some(config.hardware.clone()),
            },
        )
        .await?;
    if issued.device_id != config.device_id {
        return Err(AgentError::State(format!(
            "the server issued a certificate for {:?}, not {:?}",
            issued.device_id, config.device_id
        )));
    }
    write_atomic(&dir.path(KEY_FILE), key_pem.as_bytes(), 0o600)?;
    write_atomic(&dir.path(CERT_FILE), issued.certificate.as_bytes(), 0o600)?;
    let net = Net::new(
        &config.server,
        &ca,
        Some((issued.certificate.as_bytes(), key_pem.as_bytes())),
        &config.limits,
    )?;
    let key = fetch_director_key(&net).await?;
    let mut state = dir.load()?;
    state.director_key = Some(key);
    if state.running_version.is_none() {
        state.running_version = config.initial_version.clone();
        state.highest_version = config.initial_version.clone();
    }
    dir.save(&state)?;
    Ok(issued.device_id)
}

/// The director key, checked to match the key id the server names.
pub async fn fetch_director_key(net: &Net) -> Result<PublicKey> {
    let answer: DirectorKey = net.get_json("/device/v1/director/key").await?;
    let key: PublicKey = serde_json::from_value(answer.public_key)
        .map_err(|e| AgentError::Network(format!("director key: {e}")))?;
    let id = fleetward_tuf::key_id(&key)
        .map_err(|e| AgentError::Network(format!("director key: {e}")))?;
    if id != answer.keyid {
        return Err(AgentError::Network(
            "the director key does not have the key id the server names".into(),
        ));
    }
    Ok(key)
}
