//! zeroscale-queue: job queues, in-memory and Redis, chosen by `queue.kind`.
//!
//! # Semantics (the same on every backend)
//!
//! - At-least-once delivery with leases: [`reserve`](zeroscale_core::Queue::reserve) hands
//!   a job to one worker for a lease period; `ack` completes it, `nack` fails the attempt;
//!   a lease that runs out (worker crashed or hung) makes the job available again and
//!   counts as an attempt. `extend_lease` keeps a long job's lease.
//! - Retries with exponential backoff (base `jobs.backoff_base_ms`, doubling, at most
//!   `jobs.backoff_max_secs`, ±25% jitter) up to `max_attempts`; then the job is dead,
//!   with its last error, until requeued (fresh attempts) or purged.
//! - Delayed jobs, priorities from -1000 to 1000 (higher first; FIFO within a priority),
//!   named queues.
//! - An idempotency key returns the first job's id while that job is unfinished.
//! - Cancel: a queued or scheduled job never runs; a running job is marked cancelled and
//!   its handler learns at its next lease extension (`LeaseState::cancelled`); its ack
//!   is then refused.
//! - Acks, nacks and extensions with a lease that is no longer held are `Conflict`.
//! - Succeeded and cancelled jobs are kept for `jobs.retention_secs`, then dropped; dead
//!   jobs stay until purged.
//!
//! Handlers must be idempotent: a job can run more than once (a worker that crashes after
//! doing the work but before acking).
//!
//! # Feature flags
//!
//! | feature | what it enables | default |
//! |---|---|---|
//! | `redis` | the Redis queue (`queue.kind = "redis"`) | no |
//!
//! The in-memory queue is always compiled.

pub mod fanout;
pub mod memory;
#[cfg(feature = "redis")]
mod redis_backend;
#[cfg(feature = "redis")]
mod redis_fanout;
pub mod registry;
pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use zeroscale_core::config::{JobsConfig, QueueConfig};
use zeroscale_core::queue::{NewJob, Progress, backoff_delay};
use zeroscale_core::{Error, Queue, Result};

pub use memory::MemoryQueue;
pub use registry::BACKENDS;

/// Priorities a job may have.
pub const PRIORITY_RANGE: std::ops::RangeInclusive<i32> = -1000..=1000;

/// Whether this build contains the queue backend `kind`.
pub fn is_compiled_in(kind: &str) -> bool {
    BACKENDS.is_compiled_in(kind)
}

/// The configured queue.
pub async fn connect(config: &QueueConfig, jobs: &JobsConfig) -> Result<Arc<dyn Queue>> {
    (BACKENDS.entry(config.kind())?.connect)(config, jobs).await
}

/// Proves the configured backend answers; returns where it is (no secrets).
pub async fn probe(config: &QueueConfig) -> Result<String> {
    (BACKENDS.entry(config.kind())?.probe)(config).await
}

/// Checks a job before it is stored, the same way for every backend.
pub(crate) fn validate_new_job(job: &NewJob) -> Result<()> {
    if job.queue.is_empty() || job.queue.len() > 128 || job.queue.contains(['{', '}', ':']) {
        return Err(Error::invalid_input(
            "queue name must be 1 to 128 characters, without `{`, `}` or `:`",
        ));
    }
    if job.task.is_empty() || job.task.len() > 128 {
        return Err(Error::invalid_input(
            "task name must be 1 to 128 characters",
        ));
    }
    if !PRIORITY_RANGE.contains(&job.options.priority) {
        return Err(Error::invalid_input(format!(
            "priority {} is outside {}..={}",
            job.options.priority,
            PRIORITY_RANGE.start(),
            PRIORITY_RANGE.end()
        )));
    }
    if job.options.max_attempts == Some(0) {
        return Err(Error::invalid_input("max_attempts must be at least 1"));
    }
    if job
        .options
        .idempotency_key
        .as_ref()
        .is_some_and(|k| k.is_empty() || k.len() > 256)
    {
        return Err(Error::invalid_input(
            "idempotency key must be 1 to 256 characters",
        ));
    }
    Ok(())
}

/// The error for an ack, nack, extension or progress report with a lease that is no
/// longer held.
pub(crate) fn lease_lost(id: zeroscale_core::queue::JobId) -> Error {
    Error::conflict(format!(
        "job {id}: this lease is no longer held (it expired and the job went to another worker, \
         or the job finished or was cancelled)"
    ))
}

/// Progress is 0 to 100.
pub(crate) fn validate_progress(progress: &Progress) -> Result<()> {
    if progress.percent > 100 {
        return Err(Error::invalid_input("progress percent must be 0 to 100"));
    }
    Ok(())
}

/// A fresh lease token.
pub(crate) fn lease_token() -> String {
    let mut bytes = [0u8; 16];
    // The OS generator failing leaves zeros; uniqueness then comes from the uuid below.
    let _ = getrandom::fill(&mut bytes);
    format!(
        "{}{}",
        zeroscale_core::hex(&bytes),
        uuid::Uuid::now_v7().simple()
    )
}

/// The retry backoff of the config, with random jitter.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Backoff {
    base: Duration,
    max: Duration,
}

impl Backoff {
    pub(crate) fn from_config(config: &JobsConfig) -> Self {
        Backoff {
            base: Duration::from_millis(config.backoff_base_ms),
            max: Duration::from_secs(config.backoff_max_secs),
        }
    }

    /// The delay before retry number `attempt`.
    pub(crate) fn delay(self, attempt: u32) -> Duration {
        let mut bytes = [0u8; 8];
        let _ = getrandom::fill(&mut bytes);
        let jitter = (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64;
        backoff_delay(attempt, self.base, self.max, jitter)
    }
}

/// For this workspace's tests only: a raw connection to the Redis a config names. Not part
/// of the API (engine types never are); it may change in any release.
#[cfg(feature = "redis")]
#[doc(hidden)]
pub mod testing {
    pub use redis;

    /// A reconnecting connection to the configured Redis.
    pub async fn redis_connection(
        config: &zeroscale_core::config::RedisQueueConfig,
    ) -> zeroscale_core::Result<redis::aio::ConnectionManager> {
        crate::redis_backend::connect(config).await
    }
}
