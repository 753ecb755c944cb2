//! zeroscale-queue: job queues (in-memory and Redis) and the worker runtime, chosen by
//! `queue.kind`.
//!
//! Today this crate connects to the configured backend and probes it ([`probe`], behind
//! `/readyz` and `zeroscale doctor`); the [`Queue`] implementations, their conformance
//! run and the worker runtime arrive with the queue issue.
//!
//! [`Queue`]: zeroscale_core::Queue
//!
//! # Feature flags
//!
//! | feature | what it enables | default |
//! |---|---|---|
//! | `redis` | the Redis queue (`queue.kind = "redis"`) | no |
//!
//! The in-memory queue is always compiled.

#[cfg(feature = "redis")]
pub mod redis_backend;

#[cfg(not(feature = "redis"))]
use zeroscale_core::Error;
use zeroscale_core::Result;
use zeroscale_core::config::QueueConfig;

/// Whether this build contains the queue backend `kind`.
pub fn is_compiled_in(kind: &str) -> bool {
    kind == "memory" || (kind == "redis" && cfg!(feature = "redis"))
}

/// Proves the configured backend answers; returns where it is (no secrets).
pub async fn probe(config: &QueueConfig) -> Result<String> {
    match config {
        QueueConfig::Memory(_) => Ok("in-process memory (jobs are lost on restart)".to_owned()),
        #[cfg(feature = "redis")]
        QueueConfig::Redis(c) => redis_backend::probe(c).await,
        #[cfg(not(feature = "redis"))]
        QueueConfig::Redis(_) => Err(Error::not_compiled_in("queue.kind", "redis", "redis")),
    }
}
