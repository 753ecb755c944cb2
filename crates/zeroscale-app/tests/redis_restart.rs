//! Redis (with `appendonly yes`) killed and restarted while workers process jobs: no job
//! acknowledged before the restart runs again or changes, and no queued job disappears.

#![cfg(feature = "redis")]

mod common;

use std::collections::HashMap;
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use zeroscale_core::Queue;
use zeroscale_core::config::{JobsConfig, RedisQueueConfig};
use zeroscale_core::queue::{JobId, JobState, NewJob};
use zeroscale_core::testing::{in_ci, service_var};

const JOBS: usize = 3_000;

/// Whether Redis at `url` answers PING with PONG, on a connection of its own.
async fn pong(url: &str) -> bool {
    let Ok(client) = redis::Client::open(url) else {
        return false;
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return false;
    };
    redis::cmd("PING")
        .query_async::<String>(&mut conn)
        .await
        .is_ok_and(|p| p == "PONG")
}

async fn finished(url: &str, prefix: &str) -> Option<Vec<String>> {
    let client = redis::Client::open(url).ok()?;
    let mut conn = client.get_multiplexed_async_connection().await.ok()?;
    redis::cmd("ZRANGE")
        .arg(format!("{{{prefix}}}:finished"))
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_restart_keeps_acks_and_queued_jobs() {
    // Runs where the harness's Redis is (its binary is then installed).
    if service_var("ZEROSCALE_TEST_REDIS_URL").is_none() {
        assert!(
            !in_ci(),
            "Redis is not installed: run `cargo xtask services up`"
        );
        eprintln!("skipping: no Redis; run `cargo xtask services up`");
        return;
    }
    let server =
        common::redis_server().expect("redis-server on PATH (cargo xtask services up installs it)");
    let dir = std::env::temp_dir().join(format!("zs-redis-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{port}");
    let prefix = "restart";
    let mut redis = common::start_redis(&server, &dir, port);

    let config = RedisQueueConfig {
        url: url.clone().into(),
        key_prefix: prefix.into(),
        ..Default::default()
    };
    let queue: Arc<dyn Queue> = zeroscale_queue::connect(
        &zeroscale_core::config::QueueConfig::Redis(config.clone()),
        &JobsConfig::default(),
    )
    .await
    .unwrap();
    let mut ids: Vec<JobId> = Vec::new();
    for i in 0..JOBS {
        let mut job = NewJob::new("default", "zeroscale.sleep", json!({"ms": 1 + i % 3}));
        job.options.max_attempts = Some(50);
        ids.push(queue.enqueue(job).await.unwrap());
    }

    let mut workers: Vec<Child> = (0..2)
        .map(|_| common::worker(&dir, &url, prefix, 8))
        .collect();
    // Let some jobs finish, then kill Redis (no clean shutdown) and note what was acked.
    let start = Instant::now();
    let before = loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let done = finished(&url, prefix).await.unwrap_or_default();
        if done.len() >= JOBS / 4 {
            break done;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "workers made no progress"
        );
    };
    let mut acked: HashMap<JobId, (u32, Option<chrono::DateTime<chrono::Utc>>)> = HashMap::new();
    for id in &before {
        let id: JobId = id.parse().unwrap();
        let s = queue.status(id).await.unwrap();
        if s.state == JobState::Succeeded {
            acked.insert(id, (s.attempts, s.finished_at));
        }
    }
    // A second handle, so that each of the two enqueues below is the first call on a
    // connection that Redis's restart broke.
    let other: Arc<dyn Queue> = zeroscale_queue::connect(
        &zeroscale_core::config::QueueConfig::Redis(config.clone()),
        &JobsConfig::default(),
    )
    .await
    .unwrap();
    other.stats("restart-extra").await.unwrap();
    redis.kill().unwrap(); // SIGKILL: only the append-only file survives
    redis.wait().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    redis = common::start_redis(&server, &dir, port);
    // Redis answers again once PING does (before, it is reading its append-only file).
    let answering = Instant::now();
    while !pong(&url).await {
        assert!(
            answering.elapsed() < Duration::from_secs(60),
            "Redis did not answer PING after its restart"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The first enqueue after Redis is back succeeds, with or without an idempotency key
    // (on a queue no worker serves, so the jobs stay put).
    let plain = queue
        .enqueue(NewJob::new("restart-extra", "zeroscale.echo", json!({})))
        .await
        .expect("the first enqueue without an idempotency key after the restart");
    let mut keyed = NewJob::new("restart-extra", "zeroscale.echo", json!({}));
    keyed.options.idempotency_key = Some("after-restart".into());
    let keyed = other
        .enqueue(keyed)
        .await
        .expect("the first enqueue with an idempotency key after the restart");
    for id in [plain, keyed] {
        assert_eq!(queue.status(id).await.unwrap().state, JobState::Queued);
    }

    let start = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let done = finished(&url, prefix).await.unwrap_or_default();
        if done.len() >= JOBS {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "after the restart only {} of {JOBS} jobs finished",
            done.len()
        );
    }
    for w in &mut workers {
        let _ = w.kill();
        let _ = w.wait();
    }
    // Every job is done; none acked before the restart ran again or changed.
    for id in &ids {
        let s = queue.status(*id).await.unwrap();
        assert_eq!(s.state, JobState::Succeeded, "job {id}");
        if let Some((attempts, finished_at)) = acked.get(id) {
            assert_eq!(
                s.attempts, *attempts,
                "acked job {id} ran again after the restart"
            );
            assert_eq!(s.finished_at, *finished_at, "acked job {id} changed");
        }
    }
    eprintln!(
        "{} jobs acked before the restart stayed acked; all {JOBS} succeeded",
        acked.len()
    );
    let _ = redis.kill();
    let _ = redis.wait();
    std::fs::remove_dir_all(dir).ok();
}
