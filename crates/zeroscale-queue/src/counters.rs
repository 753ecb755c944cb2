//! The shared [`Counters`] (login throttling, rate limits) on the queue's engine: Redis
//! for the Redis queue, the application's database for the database queue, and `None`
//! for the in-memory queue, which no other process shares (the app then counts in its
//! database).

use std::sync::Arc;

use zeroscale_core::config::QueueConfig;
use zeroscale_core::{Counters, Result};

use crate::registry::BACKENDS;

/// The counters on the engine of the queue `config` describes, or `None` when that
/// queue is private to this process.
pub async fn connect_with(
    config: &QueueConfig,
    context: &crate::QueueContext,
) -> Result<Option<Arc<dyn Counters>>> {
    (BACKENDS.entry(config.kind())?.counters)(config, context).await
}
