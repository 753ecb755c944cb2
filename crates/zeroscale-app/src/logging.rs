//! Logging with tracing: `RUST_LOG` (else `log.filter`) picks what is logged, `log.format`
//! how. The same subscriber feeds the database pool's wait to metrics
//! (`zeroscale_db::metrics::acquire_layer`), whatever the log filter lets through, keeps
//! request ids for jobs (`crate::telemetry`), and exports spans when traces are on.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::FilterExt as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use zeroscale_core::config::{Config, LogFormat};

/// Installs the global subscriber. Logs go to stderr so stdout stays for command output.
/// `traces_as`: the service name to export spans under (`serve`, `worker`) when
/// `telemetry.otlp_endpoint` is set; `None` for one-shot commands.
pub(crate) fn init(config: &Config, traces_as: Option<&str>) {
    let log = &config.log;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // sea-orm's per-statement spans are for traces; in logs they would only repeat the
    // statement around every line.
    let filter = filter.and(tracing_subscriber::filter::filter_fn(|meta| {
        !(meta.is_span() && meta.target().starts_with("sea_orm::database"))
    }));
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let logs = match log.format {
        LogFormat::Pretty => fmt.with_filter(filter).boxed(),
        LogFormat::Json => fmt.json().flatten_event(true).with_filter(filter).boxed(),
    };
    let (traces, trace_error) = match traces_as {
        Some(service) => match crate::telemetry::exporter_layer(&config.telemetry, service) {
            Ok(layer) => (layer, None),
            Err(e) => (None, Some(e)),
        },
        None => (None, None),
    };
    let result = tracing_subscriber::registry()
        .with(logs)
        .with(zeroscale_db::metrics::acquire_layer())
        .with(crate::telemetry::RequestIdLayer::filtered())
        .with(traces)
        .try_init();
    if let Err(e) = result {
        eprintln!("zeroscale: logging was already set up: {e}");
    }
    if let Some(e) = trace_error {
        tracing::error!(error = %e, "traces are off");
    }
    crate::telemetry::install_origins();
}
