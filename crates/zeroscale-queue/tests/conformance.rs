//! The queue conformance suite against every backend, one test per check
//! (`cargo test --test conformance <backend>::<check>`): memory, and the Redis server from
//! `cargo xtask services up`.

use std::sync::Arc;

use zeroscale_core::Queue;
use zeroscale_core::config::JobsConfig;

/// Short backoff so retries come quickly in tests.
pub fn test_jobs() -> JobsConfig {
    JobsConfig {
        backoff_base_ms: 50,
        backoff_max_secs: 1,
        ..Default::default()
    }
}

async fn memory_queue(_check: &str) -> Option<Arc<dyn Queue>> {
    Some(Arc::new(zeroscale_queue::MemoryQueue::new(test_jobs())))
}

zeroscale_core::queue_conformance!(memory, memory_queue);

#[cfg(feature = "redis")]
async fn redis_queue(check: &str) -> Option<Arc<dyn Queue>> {
    use zeroscale_core::config::{QueueConfig, RedisQueueConfig};
    use zeroscale_core::testing::require_service;
    let url = require_service("ZEROSCALE_TEST_REDIS_URL", "Redis")?;
    let config = QueueConfig::Redis(RedisQueueConfig {
        url: url.into(),
        // A prefix per run and check: they never see each other's jobs.
        key_prefix: format!("conformance-{}-{}-{check}", std::process::id(), nanos()),
        ..Default::default()
    });
    Some(
        zeroscale_queue::connect(&config, &test_jobs())
            .await
            .expect("connect"),
    )
}

#[cfg(feature = "redis")]
fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

#[cfg(feature = "redis")]
zeroscale_core::queue_conformance!(redis, redis_queue);
