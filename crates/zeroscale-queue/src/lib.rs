//! zeroscale-queue: job queues, in-memory and Redis, chosen by `queue.kind`.
//!
//! # Semantics (the same on every backend)
//!
//! - At-least-once delivery with leases: [`reserve`](zeroscale_core::Queue::reserve) hands
//!   a job to one worker for a lease period; `ack` completes it, `nack` fails the attempt;
//!   a lease that runs out (worker crashed or hung) makes the job available again and
//!   counts as an attempt. `extend_lease` keeps a long job's lease; `release` hands a
//!   held job back unfinished (queued in its old place, the attempt not counted).
//! - `enqueue_many` adds up to 1,000 jobs in one step, all or none.
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
//! | `database` | the queue in the application's database (`queue.kind = "database"`) | no |
//!
//! The in-memory queue is always compiled.

mod acker;
pub mod counters;
#[cfg(feature = "database")]
mod database;
mod fallback_counters;
pub mod fanout;
pub mod memory;
mod memory_counters;
mod metrics;
mod prefetch;
#[cfg(feature = "redis")]
mod redis_backend;
#[cfg(feature = "redis")]
mod redis_conn;
#[cfg(feature = "redis")]
mod redis_counters;
#[cfg(feature = "redis")]
mod redis_fanout;
#[cfg(feature = "redis")]
mod redis_slot;
#[cfg(feature = "redis")]
mod redis_wake;
pub mod registry;
mod wake;
pub mod worker;

use std::sync::Arc;
use zeroscale_core::config::{JobsConfig, QueueConfig};
use zeroscale_core::{Queue, Result};

pub use memory::MemoryQueue;
pub use registry::BACKENDS;

/// Whether this build contains the queue backend `kind`.
pub fn is_compiled_in(kind: &str) -> bool {
    BACKENDS.is_compiled_in(kind)
}

/// What a queue backend may use besides its config: the application's database, for
/// `queue.kind = "database"`.
#[derive(Debug, Clone, Default)]
pub struct QueueContext {
    #[cfg(feature = "database")]
    database: Option<zeroscale_db::Db>,
}

impl QueueContext {
    /// Gives the database queue the application's database (the same handle and pool).
    #[cfg(feature = "database")]
    pub fn with_database(mut self, db: zeroscale_db::Db) -> Self {
        self.database = Some(db);
        self
    }
}

/// The configured queue, for the backends that need nothing but their config (every one
/// but `database`; see [`connect_with`]).
pub async fn connect(config: &QueueConfig, jobs: &JobsConfig) -> Result<Arc<dyn Queue>> {
    connect_with(config, jobs, &QueueContext::default()).await
}

/// The configured queue, with what the app shares with it.
pub async fn connect_with(
    config: &QueueConfig,
    jobs: &JobsConfig,
    context: &QueueContext,
) -> Result<Arc<dyn Queue>> {
    (BACKENDS.entry(config.kind())?.connect)(config, jobs, context).await
}

/// Proves the configured backend answers; returns where it is (no secrets), with a
/// warning when it may lose queued jobs on a restart ([`persistence_warning`]).
pub async fn probe(config: &QueueConfig) -> Result<String> {
    (BACKENDS.entry(config.kind())?.probe)(config).await
}

/// A warning when the configured queue's engine may lose queued jobs on a restart: Redis
/// without its append-only file, or a Redis that will not say (`CONFIG GET` refused).
/// `None` for every other queue and for a Redis with `appendonly yes`. Opens a connection
/// of its own.
pub async fn persistence_warning(config: &QueueConfig) -> Result<Option<String>> {
    match config {
        #[cfg(feature = "redis")]
        QueueConfig::Redis(redis) => redis_backend::persistence_warning(redis).await,
        _ => Ok(None),
    }
}

pub use zeroscale_core::queue::driver::PRIORITY_RANGE;
pub(crate) use zeroscale_core::queue::driver::{
    Backoff, lease_lost, new_lease_token as lease_token, prepare_import, take_origin,
    validate_batch, validate_new_job, validate_progress,
};

/// For this workspace's tests only: a raw connection to the Redis a config names. Not part
/// of the API (engine types never are); it may change in any release.
#[cfg(feature = "redis")]
#[doc(hidden)]
pub mod testing {
    pub use redis;

    /// A reconnecting connection to the configured Redis or Redis Cluster.
    pub async fn redis_connection(
        config: &zeroscale_core::config::RedisQueueConfig,
    ) -> zeroscale_core::Result<impl redis::aio::ConnectionLike + Clone + Send + Sync> {
        crate::redis_conn::connect(config).await
    }
}

/// The README's examples, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// The span one enqueue call runs in: the jobs' origins are taken inside it, so in a trace
/// each job's run is a child of its enqueue.
pub(crate) fn enqueue_span(jobs: &[zeroscale_core::queue::NewJob]) -> tracing::Span {
    let queue = jobs.first().map_or("", |job| job.queue.as_str());
    tracing::info_span!(
        "enqueue",
        otel.name = %format_args!("enqueue {queue}"),
        otel.kind = "producer",
        queue,
        jobs = jobs.len(),
    )
}
