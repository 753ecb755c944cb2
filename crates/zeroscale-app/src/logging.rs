//! Logging with tracing: `RUST_LOG` (else `log.filter`) picks what is logged, `log.format`
//! how. The same subscriber feeds the database pool's wait to metrics
//! (`zeroscale_db::metrics::acquire_layer`), whatever the log filter lets through.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use zeroscale_core::config::{LogConfig, LogFormat};

/// Installs the global subscriber. Logs go to stderr so stdout stays for command output.
pub(crate) fn init(config: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let logs = match config.format {
        LogFormat::Pretty => fmt.with_filter(filter).boxed(),
        LogFormat::Json => fmt.json().flatten_event(true).with_filter(filter).boxed(),
    };
    let result = tracing_subscriber::registry()
        .with(logs)
        .with(zeroscale_db::metrics::acquire_layer())
        .try_init();
    if let Err(e) = result {
        eprintln!("zeroscale: logging was already set up: {e}");
    }
}
