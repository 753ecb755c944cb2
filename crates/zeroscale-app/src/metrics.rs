//! Prometheus metrics: the process-wide recorder (the `metrics` facade with
//! `metrics-exporter-prometheus`), the HTTP layer that counts and times requests by route
//! template, `/metrics` on the main port for admins, and the unauthenticated listener on
//! `metrics.listen`. What each metric means is `zeroscale_core::metrics::CATALOGUE`.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use zeroscale_core::config::{Config, MetricsConfig};
use zeroscale_core::metrics::{self as m, CATALOGUE, MetricKind};

use crate::wiring::Services;

/// Histogram buckets in seconds: from a cache hit (0.5 ms) to a slow model call (60 s).
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// How long a scrape waits for the queue's figures before it answers without them.
const QUEUE_STATS_TIMEOUT: Duration = Duration::from_secs(2);

/// The process's recorder, installed once (the facade has one per process).
static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the recorder when `config.metrics.enabled` (once per process: a second call
/// returns the first one's handle) and sets `zeroscale_build_info` for `config`. `None`
/// when metrics are off (every recording is then a no-op).
pub(crate) fn install(config: &Config) -> Option<PrometheusHandle> {
    if !config.metrics.enabled {
        return None;
    }
    let handle = HANDLE.get_or_init(|| {
        let recorder = match PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), BUCKETS)
        {
            Ok(builder) => builder.build_recorder(),
            Err(e) => {
                tracing::warn!(error = %e, "metrics are off: the exporter refused its buckets");
                return None;
            }
        };
        let handle = recorder.handle();
        if let Err(e) = metrics::set_global_recorder(recorder) {
            tracing::warn!(error = %e, "metrics are off: another metrics recorder is installed");
            return None;
        }
        describe();
        // Old histogram samples are dropped from the exporter's buffers regularly, so a
        // process that is never scraped does not grow.
        let upkeep = handle.clone();
        std::thread::Builder::new()
            .name("zeroscale-metrics-upkeep".to_owned())
            .spawn(move || {
                loop {
                    std::thread::sleep(Duration::from_secs(5));
                    upkeep.run_upkeep();
                }
            })
            .ok();
        Some(handle)
    });
    let handle = handle.clone()?;
    build_info(config);
    Some(handle)
}

/// `# HELP` for every metric of the catalogue.
fn describe() {
    for def in CATALOGUE {
        match def.kind {
            MetricKind::Counter => metrics::describe_counter!(def.name, def.help),
            MetricKind::Gauge => metrics::describe_gauge!(def.name, def.help),
            MetricKind::Histogram => {
                metrics::describe_histogram!(def.name, metrics::Unit::Seconds, def.help);
            }
        }
    }
}

/// `zeroscale_build_info{…} 1`: the version and the backend of each concern.
fn build_info(config: &Config) {
    let embedded = config.database.kind() == "sqlite"
        && matches!(config.storage.kind(), "memory" | "local")
        && matches!(config.queue.kind(), "memory" | "database")
        && config.workers.mode == zeroscale_core::config::WorkersMode::InProcess;
    let workers = match config.workers.mode {
        zeroscale_core::config::WorkersMode::InProcess => "in_process",
        zeroscale_core::config::WorkersMode::Separate => "separate",
    };
    metrics::gauge!(
        m::BUILD_INFO,
        "version" => env!("CARGO_PKG_VERSION"),
        "database" => config.database.kind().to_owned(),
        "storage" => config.storage.kind().to_owned(),
        "queue" => config.queue.kind().to_owned(),
        "workers" => workers,
        "embedded" => if embedded { "true" } else { "false" }
    )
    .set(1.0);
}

/// Requests in flight, set into `zeroscale_http_requests_in_flight` when scraped (one
/// atomic add per request instead of a gauge update each way).
static IN_FLIGHT: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// One route's metric handles, resolved once per worker thread: a request then costs no
/// label allocation or registry lookup, only the updates.
#[derive(Default)]
struct RouteHandles {
    /// The duration histogram, by method.
    durations: Vec<(&'static str, metrics::Histogram)>,
    /// The request counter, by method and status.
    counts: Vec<(&'static str, u16, metrics::Counter)>,
}

thread_local! {
    static HANDLES: std::cell::RefCell<std::collections::HashMap<String, RouteHandles>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// Records one answered request.
fn record_request(method: &'static str, route: &str, status: u16, took: Duration) {
    HANDLES.with(|handles| {
        let mut handles = handles.borrow_mut();
        if !handles.contains_key(route) {
            handles.insert(route.to_owned(), RouteHandles::default());
        }
        let Some(entry) = handles.get_mut(route) else {
            return;
        };
        let histogram = match entry.durations.iter().find(|(m, _)| *m == method) {
            Some((_, h)) => h,
            None => {
                let h = metrics::histogram!(m::HTTP_DURATION, "method" => method, "route" => route.to_owned());
                entry.durations.push((method, h));
                &entry.durations[entry.durations.len() - 1].1
            }
        };
        histogram.record(took.as_secs_f64());
        let counter = match entry.counts.iter().find(|(m, s, _)| *m == method && *s == status) {
            Some((_, _, c)) => c,
            None => {
                let c = metrics::counter!(
                    m::HTTP_REQUESTS,
                    "method" => method,
                    "route" => route.to_owned(),
                    "status" => status.to_string()
                );
                entry.counts.push((method, status, c));
                &entry.counts[entry.counts.len() - 1].2
            }
        };
        counter.increment(1);
    });
}

/// One request on its way, timed and counted in flight; recorded by [`Timing::finish`]
/// from the request-id middleware, which every request passes anyway (so metrics add no
/// layer, no boxed future and no route copy of their own). Dropped unfinished (a client
/// that went away), it only leaves the in-flight count.
pub(crate) struct Timing {
    started: Instant,
    method: &'static str,
}

impl Timing {
    /// Starts timing a request with `method`.
    pub(crate) fn start(method: &axum::http::Method) -> Timing {
        IN_FLIGHT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Timing {
            started: Instant::now(),
            method: method_label(method),
        }
    }

    /// Counts the request by route template (`unmatched` when no route took it) and
    /// status, and records how long it took to its response head.
    pub(crate) fn finish(self, route: &str, status: u16) {
        let took = self.started.elapsed();
        crate::traffic::record(took);
        record_request(self.method, route, status, took);
    }
}

impl Drop for Timing {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A bounded label for a method: the standard ones by name, anything else `other`.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The exposition for the process serving `services`: levels read now (queue depths,
/// pool, circuits), then every metric. `None` when its config turns metrics off.
async fn render(services: &Services) -> Option<String> {
    if !services.config.metrics.enabled {
        return None;
    }
    let handle = HANDLE.get().cloned().flatten()?;
    read_levels(services).await;
    Some(handle.render())
}

/// Sets the gauges that are read rather than counted: the pool's size, each provider's
/// circuit and each worked queue's jobs by state.
async fn read_levels(services: &Services) {
    metrics::gauge!(m::HTTP_IN_FLIGHT)
        .set(IN_FLIGHT.load(std::sync::atomic::Ordering::Relaxed) as f64);
    if let Some(pool) = services.domain.db().pool_stats() {
        pool.record();
    }
    // The replicas' gauges are set by their checker (zeroscale_db::replicas).
    for (provider, health) in services.models.health() {
        let open = health
            .cooling_down_until
            .is_some_and(|until| until > chrono::Utc::now());
        metrics::gauge!(m::MODEL_CIRCUIT, "provider" => provider).set(if open { 1.0 } else { 0.0 });
    }
    let stats = async {
        let queue: std::sync::Arc<dyn zeroscale_core::Queue> = services.queue.get().await?;
        let mut all = Vec::new();
        for name in &services.config.workers.queues {
            all.push((name.clone(), queue.stats(name).await?));
        }
        zeroscale_core::Result::Ok(all)
    };
    match tokio::time::timeout(QUEUE_STATS_TIMEOUT, stats).await {
        Ok(Ok(all)) => {
            for (queue, s) in all {
                for (state, n) in [
                    ("ready", s.queued),
                    ("delayed", s.scheduled + s.failed),
                    ("running", s.running),
                    ("dead", s.dead),
                ] {
                    metrics::gauge!(m::QUEUE_JOBS, "queue" => queue.clone(), "state" => state)
                        .set(n as f64);
                }
            }
        }
        Ok(Err(e)) => {
            tracing::debug!(error = %zeroscale_core::Error::chain(&e), "metrics: cannot read the queue's depth");
        }
        Err(_) => tracing::debug!("metrics: the queue's depth took too long to read"),
    }
}

/// The exposition as an HTTP response.
async fn exposition(services: &Services) -> Response {
    match render(services).await {
        Some(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "metrics are off (metrics.enabled = false)\n",
        )
            .into_response(),
    }
}

/// `GET /metrics` on the main port: admins only (session or API key).
pub(crate) async fn admin_metrics(
    _admin: crate::api::auth::Admin,
    State(services): State<Services>,
) -> Response {
    exposition(&services).await
}

/// `GET /metrics` on `metrics.listen`: no authentication.
async fn open_metrics(State(services): State<Services>) -> Response {
    exposition(&services).await
}

/// Serves `/metrics` without authentication on `metrics.listen`, when set, until
/// `stop`; returns the address it listens on.
pub(crate) async fn listen(
    config: &MetricsConfig,
    services: Services,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Option<std::net::SocketAddr>> {
    use anyhow::Context as _;
    let Some(addr) = config.listen else {
        return Ok(None);
    };
    if !config.enabled {
        tracing::warn!("metrics.listen is set but metrics.enabled = false: not listening");
        return Ok(None);
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on metrics.listen = {addr}"))?;
    let local = listener.local_addr()?;
    if !local.ip().is_loopback() {
        tracing::warn!(addr = %local, "metrics.listen is not a loopback address: anyone who reaches it reads the metrics, without credentials");
    }
    tracing::info!(addr = %local, "metrics on http://{local}/metrics");
    let app = axum::Router::new()
        .route("/metrics", axum::routing::get(open_metrics))
        .with_state(services);
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|stop| *stop).await;
            })
            .await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "the metrics listener stopped");
        }
    });
    Ok(Some(local))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_are_bounded_labels() {
        assert_eq!(method_label(&axum::http::Method::GET), "GET");
        let odd = axum::http::Method::from_bytes(b"BREW").unwrap();
        assert_eq!(method_label(&odd), "other");
    }
}
