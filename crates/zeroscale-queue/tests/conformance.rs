//! The queue conformance suite against every backend: memory, and the Redis server from
//! `cargo xtask services up`.

use std::sync::Arc;

use futures::FutureExt;
use zeroscale_core::Queue;
use zeroscale_core::config::JobsConfig;
use zeroscale_core::conformance::queue;

/// Short backoff so retries come quickly in tests.
pub fn test_jobs() -> JobsConfig {
    JobsConfig {
        backoff_base_ms: 50,
        backoff_max_secs: 1,
        ..Default::default()
    }
}

async fn suite(q: Arc<dyn Queue>, prefix: &str) {
    queue::run_all(q.as_ref(), prefix).await;
    queue::concurrent_consumers(q, prefix, 8, 2_000, |f| {
        tokio::spawn(f).map(|r| r.expect("consumer panicked"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory() {
    let q: Arc<dyn Queue> = Arc::new(zeroscale_queue::MemoryQueue::new(test_jobs()));
    suite(q, "conformance").await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis() {
    use zeroscale_core::config::RedisQueueConfig;
    use zeroscale_core::testing::require_service;
    let Some(url) = require_service("ZEROSCALE_TEST_REDIS_URL", "Redis") else {
        return;
    };
    let config = RedisQueueConfig {
        url: url.into(),
        // A prefix per run: runs never see each other's jobs.
        key_prefix: format!("conformance-{}-{}", std::process::id(), uuid_like()),
        ..Default::default()
    };
    let q: Arc<dyn Queue> = Arc::new(
        zeroscale_queue::redis_backend::RedisQueue::connect(&config, &test_jobs())
            .await
            .expect("connect"),
    );
    q.health().await.expect("health");
    suite(q, "conformance").await;
}

#[cfg(feature = "redis")]
fn uuid_like() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}
