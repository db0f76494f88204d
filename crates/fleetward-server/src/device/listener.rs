//! The device listener: TCP → rustls (mutual TLS) → HTTP/1.1 → the device
//! router, with a hand-written accept loop so that each request carries
//! what the handshake established ([`DeviceConnection`]).
//!
//! A failed handshake (garbage, no TLS, an unknown CA, an expired or revoked
//! certificate) never reaches HTTP; its reason is recorded in the audit log
//! (rate-limited). Handshakes have a deadline so that idle sockets cannot
//! hold tasks forever.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use fleetward_identity::PeerCert;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use super::DeviceConnection;
use crate::AppState;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a handshake failed, as a short stable word for the audit log.
pub fn refusal_reason(error: &std::io::Error) -> String {
    use rustls::{CertificateError, Error};
    let Some(tls) = error.get_ref().and_then(|e| e.downcast_ref::<Error>()) else {
        return match error.kind() {
            std::io::ErrorKind::UnexpectedEof => "closed_during_handshake".to_owned(),
            _ => format!("io: {error}"),
        };
    };
    match tls {
        Error::InvalidCertificate(CertificateError::Revoked) => "certificate_revoked".to_owned(),
        Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => "certificate_expired".to_owned(),
        Error::InvalidCertificate(
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
        ) => "certificate_not_yet_valid".to_owned(),
        Error::InvalidCertificate(CertificateError::UnknownIssuer) => "unknown_ca".to_owned(),
        Error::InvalidCertificate(CertificateError::BadSignature) => "bad_signature".to_owned(),
        Error::InvalidCertificate(other) => format!("invalid_certificate: {other:?}"),
        Error::InvalidMessage(_) | Error::InappropriateMessage { .. } => "not_tls".to_owned(),
        Error::NoCertificatesPresented => "no_client_certificate".to_owned(),
        Error::AlertReceived(alert) => format!("client_alert: {alert:?}"),
        other => format!("tls: {other}"),
    }
}

/// Refusals that count towards the auth-failure burst rule: a bad or
/// missing credential. Dropped connections and timeouts (load-balancer
/// probes, flaky links) do not.
fn is_credential_failure(reason: &str) -> bool {
    reason.starts_with("certificate_")
        || reason.starts_with("invalid_certificate")
        || matches!(
            reason,
            "unknown_ca" | "bad_signature" | "no_client_certificate"
        )
}

async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Serves the device router over TLS until `shutdown` turns true, then
/// lets open connections finish their current request.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    state: AppState,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let acceptor = TlsAcceptor::from(state.identity.tls.clone());
    let graceful = GracefulShutdown::new();
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(%error, "device listener accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(&mut shutdown) => break,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let router = router.clone();
        let state = state.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    let reason = refusal_reason(&error);
                    tracing::debug!(%peer, %reason, "device handshake refused");
                    if is_credential_failure(&reason) {
                        crate::monitor::record_auth_failure(
                            &state,
                            peer,
                            "device-listener",
                            "device.tls_refused",
                            &reason,
                        )
                        .await;
                    } else {
                        state
                            .identity
                            .record_refused_handshake(&*state.store, peer, &reason, state.now())
                            .await;
                    }
                    return;
                }
                Err(_) => {
                    state
                        .identity
                        .record_refused_handshake(
                            &*state.store,
                            peer,
                            "handshake_timeout",
                            state.now(),
                        )
                        .await;
                    return;
                }
            };
            let cert = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .and_then(|der| PeerCert::from_der(der).ok());
            let connection = Arc::new(DeviceConnection { peer, cert });
            let service = router.map_request(move |mut request: http::Request<Incoming>| {
                request.extensions_mut().insert((*connection).clone());
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            });
            let http = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .serve_connection(TokioIo::new(tls), TowerToHyperService::new(service));
            if let Err(error) = watcher.watch(http).await {
                tracing::debug!(%peer, %error, "device connection ended");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
