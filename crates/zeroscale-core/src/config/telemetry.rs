//! Operating a deployment: Prometheus metrics.

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
