//! The operator API client the CLI uses.
//!
//! Answers are decoded into `fleetward-wire` types, the same ones the server
//! encodes, and error bodies become [`ApiFailure`], whose status decides the
//! exit code.

use anyhow::Context as _;
use fleetward_wire::ErrorBody;
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The server answered with an error.
#[derive(Debug)]
pub struct ApiFailure {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}, HTTP {})",
            self.message,
            self.code,
            self.status.as_u16()
        )
    }
}

impl std::error::Error for ApiFailure {}

/// The server could not be reached at all.
#[derive(Debug)]
pub struct Unreachable(pub String);

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot reach the server at {}", self.0)
    }
}

impl std::error::Error for Unreachable {}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl std::fmt::Debug for Client {
    // The token is a secret: never in a debug print or a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .finish()
    }
}

impl Client {
    pub fn new(base: &str, token: Option<String>) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("fleetward-cli/", env!("CARGO_PKG_VERSION")))
            .timeout(std::time::Duration::from_secs(120))
            .build()
            .context("building the HTTP client")?;
        Ok(Client {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token,
        })
    }

    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> anyhow::Result<T> {
        self.send::<(), T>(Method::GET, path, query, None).await
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        self.send(Method::POST, path, &[], Some(body)).await
    }

    pub async fn patch<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        self.send(Method::PATCH, path, &[], Some(body)).await
    }

    pub async fn put<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        self.send(Method::PUT, path, &[], Some(body)).await
    }

    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.send::<(), T>(Method::DELETE, path, &[], None).await
    }

    async fn send<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&B>,
    ) -> anyhow::Result<T> {
        let url = format!("{}{}", self.base, path);
        let mut request = self.http.request(method.clone(), &url).query(query);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| {
            if e.is_connect() || e.is_timeout() {
                anyhow::Error::new(Unreachable(self.base.clone())).context(e.to_string())
            } else {
                anyhow::Error::new(e)
            }
        })?;
        Self::decode(response, &method, path).await
    }

    /// GETs a document as bytes, exactly as served (signed metadata must
    /// not be re-encoded).
    pub async fn get_bytes(&self, path: &str) -> anyhow::Result<Vec<u8>> {
        let url = format!("{}{}", self.base, path);
        let mut request = self.http.get(&url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|e| {
            anyhow::Error::new(Unreachable(self.base.clone())).context(e.to_string())
        })?;
        let status = response.status();
        anyhow::ensure!(status.is_success(), "GET {path}: {status}");
        Ok(response
            .bytes()
            .await
            .with_context(|| format!("reading the answer to GET {path}"))?
            .to_vec())
    }

    /// POSTs a raw body (a file stream, signed metadata) with extra headers.
    /// No overall timeout: a large upload takes as long as it takes.
    pub async fn post_raw<T: DeserializeOwned>(
        &self,
        path: &str,
        headers: &[(&str, String)],
        body: reqwest::Body,
    ) -> anyhow::Result<T> {
        let url = format!("{}{}", self.base, path);
        let mut request = self
            .http
            .post(&url)
            .timeout(std::time::Duration::from_secs(24 * 3600))
            .body(body);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = request.send().await.map_err(|e| {
            if e.is_connect() {
                anyhow::Error::new(Unreachable(self.base.clone())).context(e.to_string())
            } else {
                anyhow::Error::new(e)
            }
        })?;
        Self::decode(response, &Method::POST, path).await
    }

    async fn decode<T: DeserializeOwned>(
        response: reqwest::Response,
        method: &Method,
        path: &str,
    ) -> anyhow::Result<T> {
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .with_context(|| format!("reading the answer to {method} {path}"))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .with_context(|| format!("decoding the answer to {method} {path}"));
        }
        let failure = match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => ApiFailure {
                status,
                code: body.error.code,
                message: body.error.message,
            },
            Err(_) => ApiFailure {
                status,
                code: "http_error".to_owned(),
                message: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
            },
        };
        Err(failure.into())
    }
}
