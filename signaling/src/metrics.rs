//! Prometheus metrics of the signaling service, in the classic text format.
//!
//! Label values come from small sets only: method, matched route, status, tier. Never an id.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::error::ErrorCause;
use crate::AppState;

pub struct Metrics {
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    classes: IntGaugeVec,
    members: IntGaugeVec,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let http_requests = IntCounterVec::new(
            Opts::new(
                "signaling_http_requests_total",
                "HTTP requests answered, by method, route and status.",
            ),
            &["method", "path", "status"],
        )
        .expect("static metric definition is valid");
        let http_duration = HistogramVec::new(
            HistogramOpts::new("signaling_http_request_duration_seconds", "Time to answer an HTTP request.")
                .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
            &["method", "path"],
        )
        .expect("static metric definition is valid");
        let classes = IntGaugeVec::new(
            Opts::new("signaling_directory_classes", "Classes in the directory, by tier."),
            &["tier"],
        )
        .expect("static metric definition is valid");
        let members = IntGaugeVec::new(
            Opts::new("signaling_directory_members", "Approved class members in the directory, by tier."),
            &["tier"],
        )
        .expect("static metric definition is valid");
        // Registering distinct names on a fresh registry cannot collide.
        registry.register(Box::new(http_requests.clone())).expect("unique metric name");
        registry.register(Box::new(http_duration.clone())).expect("unique metric name");
        registry.register(Box::new(classes.clone())).expect("unique metric name");
        registry.register(Box::new(members.clone())).expect("unique metric name");
        Metrics { registry, http_requests, http_duration, classes, members }
    }

    /// The registry other components of the process (SFU, media worker) register into.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn set_directory_counts(&self, tier: models::Tier, n_classes: i64, n_members: i64) {
        self.classes.with_label_values(&[tier.as_str()]).set(n_classes);
        self.members.with_label_values(&[tier.as_str()]).set(n_members);
    }

    pub fn encode(&self) -> String {
        // Text encoding into a String only fails on invalid metric families, which `new` rules out.
        TextEncoder::new().encode_to_string(&self.registry.gather()).expect("metrics encode as text")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Counts and times every request, and logs the cause of every 5xx.
pub async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    // Unmatched paths are one label value, so that scanners cannot grow the series without bound.
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map(|matched| matched.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(request).await;
    let status = response.status();
    if let Some(ErrorCause(cause)) = response.extensions().get::<ErrorCause>() {
        tracing::error!(cause = %format!("{cause:#}"), %method, %path, status = status.as_u16(), "request failed");
    }
    state.metrics.http_requests.with_label_values(&[&method, &path, status.as_str()]).inc();
    state.metrics.http_duration.with_label_values(&[&method, &path]).observe(started.elapsed().as_secs_f64());
    response
}
