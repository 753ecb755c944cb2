//! Operating a deployment: Prometheus metrics and OpenTelemetry traces.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// Prometheus metrics (`/metrics`; see docs/operations.md for every metric).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct MetricsConfig {
    /// Record metrics and serve them. When off nothing is recorded (each recording is a
    /// no-op) and `/metrics` answers 404. Default on.
    pub enabled: bool,
    /// Also serve `/metrics` without authentication on this address, e.g.
    /// `127.0.0.1:9464`, for a Prometheus on the same host or network. Unset by default:
    /// then metrics are only on the main port, to admins. Keep it on loopback or a
    /// private network: anyone who reaches it reads the metrics. A separate
    /// `zeroscale worker` serves its own metrics only here.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub listen: Option<SocketAddr>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            listen: None,
        }
    }
}

/// OpenTelemetry traces (see docs/operations.md, "Traces"). Off until an endpoint is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct TelemetryConfig {
    /// Where to send traces, by OTLP over HTTP (protobuf), e.g.
    /// `http://127.0.0.1:4318` (the collector's base URL: `/v1/traces` is added) or a
    /// full `…/v1/traces` URL. Unset by default: then no spans are exported and tracing
    /// costs nothing beyond the logs. `OTEL_EXPORTER_OTLP_HEADERS` adds headers (e.g. an
    /// API key) without writing them into the config.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
    /// The `service.name` spans are reported under. Default `zeroscale`; a separate
    /// `zeroscale worker` reports as `<name>-worker`.
    pub service_name: String,
    /// The share of traces kept, 0.0 to 1.0, decided at each trace's root (a request
    /// that arrives with a sampled `traceparent` is always kept). Default 1.0.
    pub sample_ratio: f64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            otlp_endpoint: None,
            service_name: "zeroscale".to_owned(),
            sample_ratio: 1.0,
        }
    }
}

impl TelemetryConfig {
    /// Checks the endpoint is an `http://` or `https://` URL and the ratio is in 0..=1.
    pub fn validate(&self) -> crate::Result<()> {
        if let Some(endpoint) = &self.otlp_endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(crate::Error::invalid_input(format!(
                "telemetry.otlp_endpoint {endpoint:?} is not an http:// or https:// URL: \
                 give the collector's OTLP/HTTP address, e.g. http://127.0.0.1:4318"
            )));
        }
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err(crate::Error::invalid_input(format!(
                "telemetry.sample_ratio {} is outside 0.0..=1.0",
                self.sample_ratio
            )));
        }
        if self.service_name.trim().is_empty() {
            return Err(crate::Error::invalid_input(
                "telemetry.service_name is empty: name the service, e.g. \"zeroscale\"",
            ));
        }
        Ok(())
    }

    /// The URL spans are posted to: the endpoint, with `/v1/traces` added unless it
    /// already ends so.
    pub fn traces_url(&self) -> Option<String> {
        let endpoint = self.otlp_endpoint.as_deref()?.trim_end_matches('/');
        Some(if endpoint.ends_with("/v1/traces") {
            endpoint.to_owned()
        } else {
            format!("{endpoint}/v1/traces")
        })
    }
}
