//! HTTPS to the device listener: the fleet CA as the only trust anchor,
//! the device certificate as the client identity, and every body read
//! with a bound (an endless-data attack ends at the bound, not in memory).

use std::time::Duration;

use futures::StreamExt as _;
use reqwest::StatusCode;
use serde::de::DeserializeOwned;

use crate::config::Limits;
use crate::{AgentError, Result};

/// A client for one server, optionally presenting a device identity.
#[derive(Debug, Clone)]
pub struct Net {
    pub base: String,
    pub http: reqwest::Client,
    pub timeout: Duration,
}

fn net_error(e: reqwest::Error) -> AgentError {
    // reqwest's Display omits the cause (e.g. a TLS refusal); keep it.
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    AgentError::Network(message)
}

impl Net {
    /// `identity`: the device certificate and key, PEM; `limits` give the
    /// request timeout and how long an idle connection is kept.
    pub fn new(
        base: &str,
        ca_pem: &[u8],
        identity: Option<(&[u8], &[u8])>,
        limits: &Limits,
    ) -> Result<Self> {
        let timeout = Duration::from_secs(limits.request_timeout_secs);
        let ca = reqwest::Certificate::from_pem(ca_pem)
            .map_err(|e| AgentError::Config(format!("fleet CA certificate: {e}")))?;
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .connect_timeout(timeout)
            .read_timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(limits.idle_connection_secs))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("fleetward-agent/", env!("CARGO_PKG_VERSION")));
        if let Some((cert, key)) = identity {
            let mut pem = cert.to_vec();
            pem.push(b'\n');
            pem.extend_from_slice(key);
            let identity = reqwest::Identity::from_pem(&pem)
                .map_err(|e| AgentError::Config(format!("device identity: {e}")))?;
            builder = builder.identity(identity);
        }
        Ok(Net {
            base: base.trim_end_matches('/').to_owned(),
            http: builder.build().map_err(net_error)?,
            timeout,
        })
    }

    /// Follows one redirect of an image download, which the server sends
    /// when images are on object storage behind pre-signed URLs. The hop
    /// goes out without the device certificate (it is meant for the server
    /// only) and trusts the public web roots, since the object store is not
    /// the fleet's server; the pre-signed URL is its only credential.
    /// Plain `http://` only with `allow_http` (an object store on a trusted
    /// network). Nothing is trusted more for it: the caller checks length
    /// and hash against the signed metadata exactly as for the server's
    /// own bytes, so the worst a hostile hop can do is fail the download.
    pub async fn follow_download_redirect(
        &self,
        redirect: &reqwest::Response,
        range_from: u64,
        allow_http: bool,
    ) -> Result<reqwest::Response> {
        let location = redirect
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                AgentError::Network(format!(
                    "the server answered {} without a usable Location",
                    redirect.status()
                ))
            })?;
        let url = redirect
            .url()
            .join(location)
            .map_err(|e| AgentError::Network(format!("redirect to an invalid URL: {e}")))?;
        match url.scheme() {
            "https" => {}
            "http" if allow_http => {}
            other => {
                return Err(AgentError::Network(format!(
                    "refusing a download redirect to a {other}:// URL \
                     (allow_http_redirects is off)"
                )));
            }
        }
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(self.timeout)
            .read_timeout(self.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("fleetward-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(net_error)?;
        let mut request = client.get(url);
        if range_from > 0 {
            request = request.header(reqwest::header::RANGE, format!("bytes={range_from}-"));
        }
        request.send().await.map_err(net_error)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GET `path`; `Ok(None)` on 404; the body read up to `max` bytes.
    pub async fn get_bounded(&self, path: &str, max: u64) -> Result<Option<Vec<u8>>> {
        let response = self
            .http
            .get(self.url(path))
            .timeout(self.timeout)
            .send()
            .await
            .map_err(net_error)?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let response = check_status(response).await?;
        read_bounded(response, max).await.map(Some)
    }

    /// POST JSON, parse a JSON answer (bounded).
    pub async fn post_json<B: serde::Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T> {
        let response = self
            .http
            .post(self.url(path))
            .timeout(self.timeout)
            .json(body)
            .send()
            .await
            .map_err(net_error)?;
        let response = check_status(response).await?;
        let bytes = read_bounded(response, 256 * 1024).await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| AgentError::Network(format!("answer to {path}: {e}")))
    }

    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let bytes =
            self.get_bounded(path, 256 * 1024)
                .await?
                .ok_or_else(|| AgentError::Server {
                    status: 404,
                    code: "not_found".into(),
                    message: path.to_owned(),
                })?;
        serde_json::from_slice(&bytes)
            .map_err(|e| AgentError::Network(format!("answer to {path}: {e}")))
    }
}

/// A non-2xx answer as an error with the server's code and message.
pub async fn check_status(response: reqwest::Response) -> Result<reqwest::Response> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = read_bounded(response, 16 * 1024).await.unwrap_or_default();
    let parsed: Option<fleetward_wire::ErrorBody> = serde_json::from_slice(&body).ok();
    let (code, mut message) = parsed.map_or_else(
        || (String::new(), String::from_utf8_lossy(&body).into_owned()),
        |b| (b.error.code, b.error.message),
    );
    message.retain(|c| !c.is_control());
    message.truncate(512);
    Err(AgentError::Server {
        status: status.as_u16(),
        code,
        message,
    })
}

/// Reads a body, refusing as soon as it would exceed `max` bytes.
pub async fn read_bounded(response: reqwest::Response, max: u64) -> Result<Vec<u8>> {
    if response.content_length().is_some_and(|len| len > max) {
        return Err(AgentError::TooLarge(format!(
            "the answer is larger than {max} bytes"
        )));
    }
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(net_error)?;
        if body.len() as u64 + chunk.len() as u64 > max {
            return Err(AgentError::TooLarge(format!(
                "the answer is larger than {max} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

pub fn reqwest_error(e: reqwest::Error) -> AgentError {
    net_error(e)
}
