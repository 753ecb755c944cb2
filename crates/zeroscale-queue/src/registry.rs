//! The queue backends: one line each. Adding a backend is a module, a feature in
//! Cargo.toml, its config variant in core, and a line here (see ARCHITECTURE.md).

use std::sync::Arc;

use futures::future::BoxFuture;
use zeroscale_core::backend;
use zeroscale_core::config::{JobsConfig, QueueConfig};
use zeroscale_core::registry::Registry;
use zeroscale_core::{Queue, Result};

/// Connects a queue from its config and the jobs settings.
pub type ConnectQueue =
    for<'a> fn(&'a QueueConfig, &'a JobsConfig) -> BoxFuture<'a, Result<Arc<dyn Queue>>>;

/// A queue backend's entry points.
#[derive(Debug)]
pub struct QueueEntry {
    /// Connects the queue its config (of this backend's kind) describes.
    pub connect: ConnectQueue,
    /// Proves it answers; returns where it is (no secrets).
    pub probe: for<'a> fn(&'a QueueConfig) -> BoxFuture<'a, Result<String>>,
}

/// What a queue backend is, compiled in or not.
#[derive(Debug, Clone, Copy)]
pub struct QueueCapabilities {
    /// Whether jobs outlive the process (a restart loses none).
    pub durable: bool,
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
            capabilities: QueueCapabilities { durable: false },
            entry: QueueEntry {
                connect: crate::memory::connect,
                probe: crate::memory::probe,
            },
        },
        backend! {
            kind: "redis",
            feature: "redis",
            about: "Redis (one server; jobs survive restarts)",
            capabilities: QueueCapabilities { durable: true },
            entry: QueueEntry {
                connect: crate::redis_backend::connect_queue,
                probe: crate::redis_backend::probe_config,
            },
        },
    ],
};
