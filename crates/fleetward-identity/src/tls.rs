//! rustls configuration of the device listener.
//!
//! Client certificates are *offered*, not mandatory, at the TLS layer: a
//! device without a certificate must still reach `POST /device/v1/enroll`.
//! A certificate that *is* presented must chain to the fleet CA, be within
//! its validity, name exactly one device and not be revoked, or the
//! handshake fails. Routes other than enrolment then refuse requests whose
//! connection carries no verified certificate.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ServerSessionMemoryCache, WebPkiClientVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore};
use rustls::{ServerConfig, SignatureScheme};
use time::OffsetDateTime;

use crate::{FleetCa, PeerCert, Result, RevocationSet};

/// Sessions kept for resumption. Each is a few hundred bytes.
pub const SESSION_CACHE_SIZE: usize = 16 * 1024;

/// The one crypto provider of fleetward's TLS: ring.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// WebPKI chain verification to the fleet CA, then the device-id and
/// revocation checks.
#[derive(Debug)]
pub struct DeviceClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    revocations: Arc<RevocationSet>,
}

impl DeviceClientVerifier {
    pub fn new(ca: &FleetCa, revocations: Arc<RevocationSet>) -> Result<Self> {
        let mut roots = RootCertStore::empty();
        roots.add(ca.cert_der().clone())?;
        let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), crypto_provider())
            .allow_unauthenticated()
            .build()?;
        Ok(DeviceClientVerifier { inner, revocations })
    }
}

fn unix_to_offset(now: UnixTime) -> OffsetDateTime {
    let secs = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    OffsetDateTime::from_unix_timestamp(secs).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

impl ClientCertVerifier for DeviceClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let peer = PeerCert::from_der(end_entity).map_err(|_| {
            rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure)
        })?;
        if self
            .revocations
            .is_revoked(&peer.serial, unix_to_offset(now))
        {
            return Err(rustls::Error::InvalidCertificate(CertificateError::Revoked));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// ALPN and session resumption. TLS 1.3 resumes with stateless tickets
/// (encrypted with a key that rustls rotates every 6 hours, valid for two
/// rotations), so a resumed handshake needs no per-device state on the
/// server and any number of devices can resume; the session-id cache serves
/// TLS 1.2 clients. A resumed session skips the certificate verifier, which
/// is why the device API re-checks expiry and revocation on every request.
fn finish(mut config: ServerConfig) -> Result<Arc<ServerConfig>> {
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_SIZE);
    config.ticketer = rustls::crypto::ring::Ticketer::new()?;
    Ok(Arc::new(config))
}

/// The device listener's configuration: server chain and key, optional
/// client certificates verified by [`DeviceClientVerifier`].
pub fn device_server_config(
    ca: &FleetCa,
    revocations: Arc<RevocationSet>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>> {
    let verifier = Arc::new(DeviceClientVerifier::new(ca, revocations)?);
    let config = ServerConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    finish(config)
}

/// The same server without client authentication: the baseline of the
/// handshake benchmark.
pub fn plain_server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>> {
    let config = ServerConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    finish(config)
}
