//! Prometheus metrics: requests and latency per route, the database pool,
//! and how many devices checked in within the last poll interval.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::AppState;
use crate::error::ApiError;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub listener: &'static str,
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LatencyLabels {
    pub listener: &'static str,
    pub method: String,
    pub route: String,
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RouteLabels, Counter>,
    latency: Family<LatencyLabels, Histogram>,
    pool_size: Gauge,
    pool_idle: Gauge,
    devices_seen: Gauge,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("fleetward");
        let requests = Family::<RouteLabels, Counter>::default();
        let latency = Family::<LatencyLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        let pool_size = Gauge::default();
        let pool_idle = Gauge::default();
        let devices_seen = Gauge::default();
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            latency.clone(),
        );
        registry.register(
            "db_pool_connections",
            "Open database connections",
            pool_size.clone(),
        );
        registry.register(
            "db_pool_idle_connections",
            "Idle database connections",
            pool_idle.clone(),
        );
        registry.register(
            "devices_seen_last_poll_interval",
            "Devices that checked in within the last poll interval",
            devices_seen.clone(),
        );
        Arc::new(Metrics {
            registry,
            requests,
            latency,
            pool_size,
            pool_idle,
            devices_seen,
        })
    }
}

/// Counts and times every request; `listener` tells operator from device traffic.
pub async fn track(
    listener: &'static str,
    state: AppState,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let elapsed = started.elapsed().as_secs_f64();
    let metrics = &state.metrics;
    metrics
        .requests
        .get_or_create(&RouteLabels {
            listener,
            method: method.clone(),
            route: route.clone(),
            status: response.status().as_u16(),
        })
        .inc();
    metrics
        .latency
        .get_or_create(&LatencyLabels {
            listener,
            method,
            route,
        })
        .observe(elapsed);
    response
}

pub async fn track_operator(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    track("operator", state, request, next).await
}

pub async fn track_device(State(state): State<AppState>, request: Request, next: Next) -> Response {
    track("device", state, request, next).await
}

/// `GET /metrics` in the Prometheus text format.
pub async fn render(State(state): State<AppState>) -> Result<Response, ApiError> {
    let pool = state.store.pool_stats();
    state.metrics.pool_size.set(i64::from(pool.size));
    state.metrics.pool_idle.set(i64::from(pool.idle));
    let settings = state.settings().await?;
    let since = state.now() - time::Duration::seconds(i64::from(settings.poll_interval_secs));
    let seen = state.store.count_devices_seen_since(since).await?;
    state
        .metrics
        .devices_seen
        .set(i64::try_from(seen).unwrap_or(i64::MAX));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &state.metrics.registry)
        .map_err(|_| ApiError::internal())?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}
