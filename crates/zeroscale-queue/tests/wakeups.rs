//! Idle workers on the memory and Redis queues wake up when a job is enqueued (or handed
//! back) instead of waiting for their next poll: on Redis when another connection, as
//! another process would, enqueues. The workers here poll only every 30 s, so a job that
//! starts within a second was woken for. (The database queue's are in
//! `database_wakeups.rs`.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use zeroscale_core::Queue;
use zeroscale_core::config::JobsConfig;
use zeroscale_core::queue::{JobState, NewJob};
use zeroscale_queue::MemoryQueue;
use zeroscale_queue::worker::{Worker, WorkerOptions};

/// Starts a worker on `consumer` that polls every 30 s, lets its polls back off, then
/// enqueues `jobs` jobs on `producer` one at a time, each after the previous one ran, and
/// returns the slowest enqueue-to-success time.
async fn slowest_start(
    consumer: Arc<dyn Queue>,
    producer: Arc<dyn Queue>,
    jobs: usize,
) -> Duration {
    let mut worker = Worker::new(
        consumer,
        WorkerOptions {
            max_poll_interval: Duration::from_secs(30),
            ..Default::default()
        },
    );
    worker.register("ping", |_, _: serde_json::Value| async move { Ok(None) });
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(worker.run(stopped));
    let mut slowest = Duration::ZERO;
    for i in 0..jobs {
        // Idle polls back off from 20 ms, doubling: the poll before 1.3 s ends at 1.26 s
        // and the next is due at 2.54 s, so a job enqueued then waits over a second
        // unless woken.
        tokio::time::sleep(Duration::from_millis(1300)).await;
        let start = Instant::now();
        let id = producer
            .enqueue(NewJob::new(
                "default",
                "ping",
                serde_json::json!({ "i": i }),
            ))
            .await
            .unwrap();
        while producer.status(id).await.unwrap().state != JobState::Succeeded {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the idle worker was not woken"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        slowest = slowest.max(start.elapsed());
    }
    let _ = stop.send(true);
    let _ = running.await;
    slowest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_wakes_on_enqueue() {
    let q: Arc<dyn Queue> = Arc::new(MemoryQueue::new(JobsConfig::default()));
    let took = slowest_start(q.clone(), q, 2).await;
    assert!(took < Duration::from_millis(500), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_wakes_on_release() {
    // A job handed back (a worker shutting down) is taken by an idle worker at once.
    let q: Arc<dyn Queue> = Arc::new(MemoryQueue::new(JobsConfig::default()));
    let id = q
        .enqueue(NewJob::new("default", "ping", serde_json::json!({})))
        .await
        .unwrap();
    let opts = zeroscale_core::queue::ReserveOptions {
        queues: vec!["default".into()],
        lease: Duration::from_secs(30),
    };
    let held = q.reserve(&opts).await.unwrap().expect("the job");
    let mut worker = Worker::new(
        q.clone(),
        WorkerOptions {
            max_poll_interval: Duration::from_secs(30),
            ..Default::default()
        },
    );
    worker.register("ping", |_, _: serde_json::Value| async move { Ok(None) });
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(worker.run(stopped));
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let start = Instant::now();
    q.release(&held.lease).await.unwrap();
    while q.status(id).await.unwrap().state != JobState::Succeeded {
        assert!(start.elapsed() < Duration::from_secs(10), "not woken");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "took {:?}",
        start.elapsed()
    );
    let _ = stop.send(true);
    let _ = running.await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_wakes_on_another_connections_enqueue() {
    use zeroscale_core::config::{QueueConfig, RedisQueueConfig};
    let Some(url) = zeroscale_core::testing::require_service("ZEROSCALE_TEST_REDIS_URL", "Redis")
    else {
        return;
    };
    let config = QueueConfig::Redis(RedisQueueConfig {
        url: url.into(),
        key_prefix: format!("wakeups-{}", std::process::id()),
        ..Default::default()
    });
    let jobs = JobsConfig::default();
    let consumer = zeroscale_queue::connect(&config, &jobs).await.unwrap();
    let producer = zeroscale_queue::connect(&config, &jobs).await.unwrap();
    let took = slowest_start(consumer, producer, 3).await;
    assert!(took < Duration::from_millis(500), "took {took:?}");
}
