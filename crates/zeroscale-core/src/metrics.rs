//! The catalogue of every metric zeroscale records: name, kind, labels and meaning.
//!
//! The concern crates record through the `metrics` facade under these names (so a name is
//! written once), the app describes each one to the Prometheus exporter from this table,
//! and a tidy test checks that `docs/operations.md` lists every entry: the docs, the help
//! text and what is recorded cannot drift apart. Core itself records nothing and depends
//! on no metrics crate.
//!
//! Label values are always bounded: route templates (never raw paths), operation and
//! outcome words, configured model, provider and queue names.

/// How a metric's value behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up (a `_total`).
    Counter,
    /// Goes up and down (a level: in flight, pool size, queue depth).
    Gauge,
    /// A distribution of durations in seconds (buckets, `_sum`, `_count`).
    Histogram,
}

impl MetricKind {
    /// The Prometheus `# TYPE` word.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
        }
    }
}

/// One metric: what the catalogue says of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricDef {
    /// The exposed name.
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: MetricKind,
    /// The labels every sample carries.
    pub labels: &'static [&'static str],
    /// What it means (the `# HELP` line).
    pub help: &'static str,
}

macro_rules! catalogue {
    ($($(#[$doc:meta])* $const:ident = $name:literal, $kind:ident, [$($label:literal),*], $help:literal;)*) => {
        $(
            $(#[$doc])*
            #[doc = concat!("`", $name, "`: ", $help)]
            pub const $const: &str = $name;
        )*
        /// Every metric, in the order the docs list them.
        pub const CATALOGUE: &[MetricDef] = &[
            $(MetricDef { name: $name, kind: MetricKind::$kind, labels: &[$($label),*], help: $help },)*
        ];
    };
}

catalogue! {
    BUILD_INFO = "zeroscale_build_info", Gauge,
        ["version", "database", "storage", "queue", "workers", "embedded"],
        "Always 1; the labels say which version and backends this process runs (embedded = every concern in-process).";
    HTTP_REQUESTS = "zeroscale_http_requests_total", Counter, ["method", "route", "status"],
        "HTTP requests answered, by method, route template and status code.";
    HTTP_DURATION = "zeroscale_http_request_duration_seconds", Histogram, ["method", "route"],
        "Time from a request's arrival to its response head, by method and route template.";
    HTTP_IN_FLIGHT = "zeroscale_http_requests_in_flight", Gauge, [],
        "Requests being handled now.";
    DB_POOL_SIZE = "zeroscale_db_pool_connections", Gauge, ["state"],
        "Database connections in the pool: state = open (all), idle, max (the configured limit).";
    DB_ACQUIRE = "zeroscale_db_pool_acquire_seconds", Histogram, [],
        "Time a query waited for a pooled connection (SQLite and PostgreSQL).";
    DB_ERRORS = "zeroscale_db_errors_total", Counter, ["kind"],
        "Database calls that failed, by error kind (unavailable, conflict, not_found, internal, ...).";
    DB_READS = "zeroscale_db_stale_reads_total", Counter, ["target"],
        "Reads that may be a little stale (searches, listings, histories), by where they went: replica, or primary (no replica usable, or the user wrote recently). Only with database.replicas.";
    DB_REPLICA_LAG = "zeroscale_db_replica_lag_seconds", Gauge, ["replica"],
        "How far each read replica was behind the primary at its last check.";
    DB_REPLICA_UP = "zeroscale_db_replica_up", Gauge, ["replica"],
        "1 when the read replica answered its last check, else 0.";
    PGVECTOR_RECALL = "zeroscale_pgvector_recall", Gauge, ["dimensions"],
        "The share of the exact top 10 pgvector's HNSW index found at its last recall check, by vector size; below database.pgvector.min_recall, searches of that size are exact.";
    QUEUE_JOBS = "zeroscale_queue_jobs", Gauge, ["queue", "state"],
        "Jobs in a queue now, by state: ready, delayed (scheduled or waiting to retry), running, dead. Read when scraped.";
    QUEUE_ENQUEUED = "zeroscale_queue_enqueued_total", Counter, ["queue"],
        "Jobs enqueued by this process.";
    QUEUE_ACKED = "zeroscale_queue_acked_total", Counter, ["queue", "task"],
        "Job attempts that succeeded, run by this process's workers.";
    QUEUE_FAILED = "zeroscale_queue_failed_total", Counter, ["queue", "task"],
        "Job attempts that failed (errors, panics, timeouts), whether or not they run again.";
    QUEUE_RETRIED = "zeroscale_queue_retried_total", Counter, ["queue", "task"],
        "Failed attempts that were scheduled to run again.";
    QUEUE_DEAD = "zeroscale_queue_dead_total", Counter, ["queue", "task"],
        "Jobs moved to dead letters (attempts used up, or a permanent error).";
    QUEUE_DURATION = "zeroscale_queue_job_duration_seconds", Histogram, ["queue", "task", "outcome"],
        "How long a job attempt ran, by outcome: acked or failed.";
    QUEUE_LEASE_LOST = "zeroscale_queue_lease_expired_total", Counter, ["queue", "task"],
        "Attempts stopped because their lease ran out or was lost (the job runs again elsewhere).";
    STORAGE_OPS = "zeroscale_storage_operations_total", Counter, ["op", "outcome"],
        "Storage operations (put, get, head, delete, list, copy, sign) by outcome: ok or an error kind.";
    STORAGE_BYTES = "zeroscale_storage_bytes_total", Counter, ["direction"],
        "Bytes written to storage (in) and read from it (out).";
    STORAGE_DURATION = "zeroscale_storage_operation_duration_seconds", Histogram, ["op"],
        "How long a storage operation took (for a get, until its body starts).";
    MODEL_CALLS = "zeroscale_model_calls_total", Counter, ["model", "provider", "outcome"],
        "Calls to a model provider, by outcome: ok, overloaded or an error kind.";
    MODEL_DURATION = "zeroscale_model_call_duration_seconds", Histogram, ["model", "provider"],
        "How long a call to a model provider took.";
    MODEL_FAILOVERS = "zeroscale_model_failovers_total", Counter, ["model", "provider", "reason"],
        "Times the router left a provider for the next in the chain, and why (cooling_down, overloaded or an error kind).";
    MODEL_CIRCUIT = "zeroscale_model_provider_circuit_open", Gauge, ["provider"],
        "1 while a provider is cooling down after repeated failures (its circuit open), else 0.";
    MODEL_CACHE = "zeroscale_model_cache_requests_total", Counter, ["cache", "result"],
        "Embedding and image cache lookups, by result: hit or miss.";
    CREDITS = "zeroscale_credits_total", Counter, ["op"],
        "Credits reserved for model calls, spent when they succeeded, and refunded when they did not.";
}

/// The catalogue entry named `name`.
pub fn find(name: &str) -> Option<&'static MetricDef> {
    CATALOGUE.iter().find(|m| m.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_follow_prometheus_conventions() {
        let mut seen = std::collections::HashSet::new();
        for m in CATALOGUE {
            assert!(seen.insert(m.name), "{} twice", m.name);
            assert!(m.name.starts_with("zeroscale_"), "{}", m.name);
            assert!(
                m.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{}",
                m.name
            );
            match m.kind {
                MetricKind::Counter => assert!(m.name.ends_with("_total"), "{}", m.name),
                MetricKind::Histogram => assert!(m.name.ends_with("_seconds"), "{}", m.name),
                MetricKind::Gauge => assert!(!m.name.ends_with("_total"), "{}", m.name),
            }
            assert!(m.help.ends_with('.'), "{}", m.name);
        }
        assert_eq!(
            find(HTTP_REQUESTS).map(|m| m.kind),
            Some(MetricKind::Counter)
        );
    }
}
