//! What the database crate records (names from [`zeroscale_core::metrics`]): errors by
//! kind, jobs the database queue accepted, credits moved, the pool's size (read when
//! scraped, [`crate::Db::pool_stats`]) and the wait for a pooled connection
//! ([`acquire_layer`]).

use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, Filter, Layer};
use zeroscale_core::Error;
use zeroscale_core::metrics as m;

/// The target of sqlx's event for every pool checkout.
const ACQUIRE_TARGET: &str = "sqlx::pool::acquire";

/// Counts a database error by its kind.
pub(crate) fn count_error(error: &Error) {
    metrics::counter!(m::DB_ERRORS, "kind" => error.kind().code()).increment(1);
}

/// Counts jobs the database queue accepted, by queue.
pub(crate) fn count_enqueued<'a>(queues: impl IntoIterator<Item = &'a str>) {
    for queue in queues {
        metrics::counter!(m::QUEUE_ENQUEUED, "queue" => queue.to_owned()).increment(1);
    }
}

/// Counts credits `op` (`reserved`, `spent`, `refunded`).
pub(crate) fn count_credits(op: &'static str, amount: i64) {
    if let Ok(amount) = u64::try_from(amount)
        && amount > 0
    {
        metrics::counter!(m::CREDITS, "op" => op).increment(amount);
    }
}

/// A pool's connections now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Connections open (idle or in use).
    pub open: u32,
    /// Connections open and idle.
    pub idle: u32,
    /// The most the pool opens.
    pub max: u32,
}

impl PoolStats {
    /// Sets the pool gauges to these figures.
    pub fn record(&self) {
        for (state, value) in [("open", self.open), ("idle", self.idle), ("max", self.max)] {
            metrics::gauge!(m::DB_POOL_SIZE, "state" => state).set(f64::from(value));
        }
    }
}

/// A tracing layer that records `zeroscale_db_pool_acquire_seconds` from sqlx's event
/// for each checkout (the pools are opened with that event on at `TRACE`, target
/// `sqlx::pool::acquire`). Add it to the subscriber beside the log output; it sees only
/// that event, so a log filter need not let it through.
pub fn acquire_layer<S>() -> impl Layer<S>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    AcquireLayer.with_filter(AcquireOnly)
}

struct AcquireLayer;

impl<S: tracing::Subscriber> Layer<S> for AcquireLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        struct Seconds(Option<f64>);
        impl Visit for Seconds {
            fn record_f64(&mut self, field: &Field, value: f64) {
                if field.name() == "acquired_after_secs" {
                    self.0 = Some(value);
                }
            }
            fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
        }
        let mut seconds = Seconds(None);
        event.record(&mut seconds);
        if let Some(seconds) = seconds.0 {
            metrics::histogram!(m::DB_ACQUIRE).record(seconds);
        }
    }
}

/// Lets through sqlx's checkout event only.
struct AcquireOnly;

impl<S> Filter<S> for AcquireOnly {
    fn enabled(&self, meta: &tracing::Metadata<'_>, _: &Context<'_, S>) -> bool {
        meta.target() == ACQUIRE_TARGET && meta.is_event()
    }

    fn callsite_enabled(
        &self,
        meta: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if meta.target() == ACQUIRE_TARGET && meta.is_event() {
            tracing::subscriber::Interest::always()
        } else {
            tracing::subscriber::Interest::never()
        }
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::TRACE)
    }
}
