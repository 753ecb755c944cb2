//! Idle workers on the database queue wake up when a job is enqueued instead of waiting
//! for their next poll: on PostgreSQL when another process enqueues (`LISTEN/NOTIFY`),
//! and everywhere when their own process does. The workers here poll only every 30 s,
//! so a job that starts within seconds was woken for.

#![cfg(feature = "database")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use zeroscale_core::Queue;
use zeroscale_core::config::{
    DatabaseConfig, DatabaseQueueConfig, JobsConfig, PostgresConfig, SqliteConfig,
};
use zeroscale_core::queue::{JobState, NewJob};
use zeroscale_core::testing::require_service;
use zeroscale_db::Db;
use zeroscale_db::queue::DbQueue;
use zeroscale_queue::worker::{Worker, WorkerOptions};

fn queue(db: &Db) -> Arc<DbQueue> {
    Arc::new(DbQueue::new(
        db.clone(),
        JobsConfig::default(),
        DatabaseQueueConfig::default(),
    ))
}

/// Starts a worker on `consumer` that polls every 30 s, lets it go idle, enqueues on
/// `producer`, and returns how long the job took to succeed.
async fn time_to_start(consumer: Arc<DbQueue>, producer: Arc<DbQueue>) -> Duration {
    let mut worker = Worker::new(
        consumer.clone() as Arc<dyn Queue>,
        WorkerOptions {
            max_poll_interval: Duration::from_secs(30),
            ..Default::default()
        },
    );
    worker.register("ping", |_, _: serde_json::Value| async move { Ok(None) });
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(worker.run(stopped));
    // Idle polls back off from 20 ms, doubling: the poll before 3 s ends at 2.54 s and
    // the next is due at 5.1 s, so a job enqueued at 3 s waits 2 s unless woken.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let start = Instant::now();
    let id = producer
        .enqueue(NewJob::new("default", "ping", serde_json::json!({})))
        .await
        .unwrap();
    while producer.status(id).await.unwrap().state != JobState::Succeeded {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the idle worker was not woken"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = start.elapsed();
    let _ = stop.send(true);
    let _ = running.await;
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_wakes_on_its_own_enqueue() {
    let dir = std::env::temp_dir().join(format!("zs-wakeups-{}", std::process::id()));
    let db = Db::connect(&DatabaseConfig::Sqlite(SqliteConfig {
        path: Some(dir.join("q.db")),
        ..Default::default()
    }))
    .await
    .unwrap();
    db.migrate_up().await.unwrap();
    let q = queue(&db);
    let took = time_to_start(q.clone(), q).await;
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_wakes_on_another_process_enqueue() {
    let Some(admin) = require_service("ZEROSCALE_TEST_POSTGRES_URL", "PostgreSQL") else {
        return;
    };
    let name = format!("zs_wakeups_{}", std::process::id());
    let _ = zeroscale_db::testing::drop_postgres_database(&admin, &name).await;
    let (db, url) = zeroscale_db::testing::fresh_postgres_database(&admin, &name, 4)
        .await
        .unwrap();
    // Another pool on the same database: what another process would have.
    let other = Db::connect(&DatabaseConfig::Postgres(PostgresConfig {
        url: url.into(),
        max_connections: 2,
        min_connections: 0,
        ..Default::default()
    }))
    .await
    .unwrap();
    let took = time_to_start(queue(&db), queue(&other)).await;
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    let _ = other.close().await;
    let _ = db.close().await;
    let _ = zeroscale_db::testing::drop_postgres_database(&admin, &name).await;
}
