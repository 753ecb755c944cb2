//! The queue backends: one line each. Adding a backend is a module, a feature in
//! Cargo.toml, its config variant in core, and a line here (see ARCHITECTURE.md).

use std::sync::Arc;

use futures::future::BoxFuture;
use zeroscale_core::backend;
use zeroscale_core::config::{JobsConfig, QueueConfig};
use zeroscale_core::registry::Registry;
use zeroscale_core::{Counters, Queue, Result};

use crate::QueueContext;
use crate::fanout::Fanout;

/// Connects a queue from its config, the jobs settings and what the app shares with it.
pub type ConnectQueue = for<'a> fn(
    &'a QueueConfig,
    &'a JobsConfig,
    &'a QueueContext,
) -> BoxFuture<'a, Result<Arc<dyn Queue>>>;

/// Connects the fan-out of a topic among the processes sharing a queue.
pub type ConnectFanout =
    for<'a> fn(&'a QueueConfig, &'a str, &'a QueueContext) -> BoxFuture<'a, Result<Option<Fanout>>>;

/// Connects the shared counters on a queue's engine.
pub type ConnectCounters = for<'a> fn(
    &'a QueueConfig,
    &'a QueueContext,
) -> BoxFuture<'a, Result<Option<Arc<dyn Counters>>>>;

/// A queue backend's entry points.
#[derive(Debug)]
pub struct QueueEntry {
    /// Connects the queue its config (of this backend's kind) describes.
    pub connect: ConnectQueue,
    /// Proves it answers; returns where it is (no secrets).
    pub probe: for<'a> fn(&'a QueueConfig) -> BoxFuture<'a, Result<String>>,
    /// The fan-out of a topic among the processes sharing this queue; `None` when no
    /// other process shares it.
    pub fanout: ConnectFanout,
    /// The counters (login throttling, rate limits) every process sharing this queue
    /// shares; `None` when no other process shares it.
    pub counters: ConnectCounters,
}

/// What a queue backend is, compiled in or not.
#[derive(Debug, Clone, Copy)]
pub struct QueueCapabilities {
    /// Whether jobs outlive the process (a restart loses none).
    pub durable: bool,
    /// Whether every process configured alike sees the same jobs (a separate worker, the
    /// `jobs` commands); the in-memory queue is private to its process.
    pub shared: bool,
}

/// What backend `kind` can do; `None` for a kind that does not exist.
pub fn capabilities(kind: &str) -> Option<QueueCapabilities> {
    BACKENDS.get(kind).map(|b| b.capabilities)
}

/// Every queue backend.
pub static BACKENDS: Registry<QueueEntry, QueueCapabilities> = Registry {
    concern: "queue",
    krate: "zeroscale-queue",
    config_key: "queue.kind",
    backends: &[
        backend! {
            kind: "memory",
            about: "in process memory (jobs are lost on restart)",
            capabilities: QueueCapabilities {
                durable: false,
                shared: false,
            },
            entry: QueueEntry {
                connect: crate::memory::connect,
                probe: crate::memory::probe,
                fanout: crate::memory::fanout,
                counters: crate::memory::counters,
            },
        },
        backend! {
            kind: "redis",
            feature: "redis",
            about: "Redis (one server; jobs survive restarts)",
            capabilities: QueueCapabilities {
                durable: true,
                shared: true,
            },
            entry: QueueEntry {
                connect: crate::redis_backend::connect_queue,
                probe: crate::redis_backend::probe_config,
                fanout: crate::redis_fanout::fanout,
                counters: crate::redis_counters::counters,
            },
        },
        backend! {
            kind: "database",
            feature: "database",
            about: "the application's database, SQLite or PostgreSQL (jobs survive restarts)",
            capabilities: QueueCapabilities {
                durable: true,
                shared: true,
            },
            entry: QueueEntry {
                connect: crate::database::connect,
                probe: crate::database::probe,
                fanout: crate::database::fanout,
                counters: crate::database::counters,
            },
        },
    ],
};
