//! Real `zeroscale worker` processes on Redis, killed with SIGKILL at random moments
//! while 10,000 jobs flow and replaced by new ones: every job still reaches `succeeded`,
//! none is lost.

#![cfg(feature = "redis")]

mod common;

use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use zeroscale_core::Queue;
use zeroscale_core::config::{JobsConfig, RedisQueueConfig};
use zeroscale_core::queue::{JobId, JobState, NewJob};
use zeroscale_core::testing::require_service;

const JOBS: usize = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkilled_workers_lose_no_job() {
    let Some(url) = require_service("ZEROSCALE_TEST_REDIS_URL", "Redis") else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("zs-crash-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let prefix = format!("crash-{}", std::process::id());
    let config = RedisQueueConfig {
        url: url.clone().into(),
        key_prefix: prefix.clone(),
        ..Default::default()
    };
    let queue: Arc<dyn Queue> = zeroscale_queue::connect(
        &zeroscale_core::config::QueueConfig::Redis(config.clone()),
        &JobsConfig::default(),
    )
    .await
    .unwrap();

    let mut ids: Vec<JobId> = Vec::with_capacity(JOBS);
    for chunk in (0..JOBS).collect::<Vec<_>>().chunks(500) {
        let batch = chunk.iter().map(|i| {
            let mut job = NewJob::new("default", "zeroscale.sleep", json!({"ms": i % 4}));
            // Kills cost attempts (a lost lease is an attempt): allow plenty.
            job.options.max_attempts = Some(50);
            queue.enqueue(job)
        });
        for id in futures::future::join_all(batch).await {
            ids.push(id.unwrap());
        }
    }

    let mut rng = common::Lcg(7);
    let mut workers: Vec<Child> = (0..3)
        .map(|_| common::worker(&dir, &url, &prefix, 16))
        .collect();
    let mut kills = 0;
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let finished_key = format!("{{{prefix}}}:finished");
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        tokio::time::sleep(Duration::from_millis(200 + rng.next(400))).await;
        let done: usize = redis::cmd("ZCARD")
            .arg(&finished_key)
            .query_async(&mut conn)
            .await
            .unwrap();
        if done >= JOBS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {done} of {JOBS} jobs finished in time"
        );
        // Kill a random worker mid-flight and start a replacement (bounded: 25 kills).
        if kills < 25 {
            let victim = rng.next(workers.len() as u64) as usize;
            let _ = workers[victim].kill(); // SIGKILL
            let _ = workers[victim].wait();
            workers[victim] = common::worker(&dir, &url, &prefix, 16);
            kills += 1;
        }
    }
    for w in &mut workers {
        let _ = w.kill();
        let _ = w.wait();
    }
    assert!(kills >= 5, "the test killed workers {kills} times");

    let mut not_done = Vec::new();
    let mut retried = 0;
    for id in &ids {
        let status = queue.status(*id).await.unwrap();
        if status.state != JobState::Succeeded {
            not_done.push((id, status.state));
        }
        if status.attempts > 1 {
            retried += 1;
        }
    }
    assert!(
        not_done.is_empty(),
        "{} jobs did not succeed: {:?}",
        not_done.len(),
        &not_done[..not_done.len().min(5)]
    );
    eprintln!("{JOBS} jobs succeeded through {kills} SIGKILLs; {retried} ran more than once");
    std::fs::remove_dir_all(dir).ok();
}
