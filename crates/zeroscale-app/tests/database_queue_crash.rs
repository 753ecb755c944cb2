//! The database queue under crashes, on real processes:
//!
//! - `zeroscale worker` processes sharing one queue (an SQLite file, or PostgreSQL) are
//!   SIGKILLed at random while 10,000 jobs flow and replaced: every job succeeds;
//! - a stage-1-like server (in-process workers, the queue in its SQLite file) is
//!   SIGKILLed mid-run and restarted: every job queued or running before the kill
//!   succeeds after the restart.

#![cfg(feature = "database-queue")]

mod common;

use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use zeroscale_core::Queue;
use zeroscale_core::config::{
    DatabaseConfig, DatabaseQueueConfig, JobsConfig, PostgresConfig, QueueConfig, SqliteConfig,
};
use zeroscale_core::queue::{JobId, JobState, NewJob};

const JOBS: usize = 10_000;

/// Where the queue is, as the test opens it and as the processes are told.
enum Engine {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

impl Engine {
    fn config(&self) -> DatabaseConfig {
        match self {
            Engine::Sqlite(path) => DatabaseConfig::Sqlite(SqliteConfig {
                path: Some(path.clone()),
                ..Default::default()
            }),
            Engine::Postgres(url) => DatabaseConfig::Postgres(PostgresConfig {
                url: url.clone().into(),
                max_connections: 4,
                min_connections: 0,
                ..Default::default()
            }),
        }
    }

    /// `cmd` pointed at this database, with the database queue and 2 s leases.
    fn apply(&self, cmd: &mut std::process::Command) {
        match self {
            Engine::Sqlite(path) => {
                cmd.env("ZEROSCALE_DATABASE__KIND", "sqlite")
                    .env("ZEROSCALE_DATABASE__PATH", path);
            }
            Engine::Postgres(url) => {
                cmd.env("ZEROSCALE_DATABASE__KIND", "postgres")
                    .env("DATABASE_URL", url)
                    .env("ZEROSCALE_DATABASE__AUTO_MIGRATE", "true");
            }
        }
        cmd.env("ZEROSCALE_QUEUE__KIND", "database")
            .env("ZEROSCALE_JOBS__LEASE_SECS", "2")
            .env("RUST_LOG", "warn");
    }

    async fn queue(&self) -> Arc<dyn Queue> {
        let db = zeroscale_db::Db::connect(&self.config()).await.unwrap();
        db.migrate_up().await.unwrap();
        zeroscale_queue::connect_with(
            &QueueConfig::Database(DatabaseQueueConfig::default()),
            &JobsConfig::default(),
            &zeroscale_queue::QueueContext::default().with_database(db),
        )
        .await
        .unwrap()
    }
}

fn worker(dir: &std::path::Path, engine: &Engine) -> Child {
    let mut cmd = common::zeroscale(dir);
    engine.apply(&mut cmd);
    cmd.arg("worker")
        .env("ZEROSCALE_WORKERS__CONCURRENCY", "16")
        .env("ZEROSCALE_WORKERS__MODE", "separate")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start zeroscale worker")
}

/// Enqueues `n` short sleep jobs with plenty of attempts (every kill costs one).
async fn enqueue(queue: &dyn Queue, n: usize) -> Vec<JobId> {
    let mut ids = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(200) {
        let batch = chunk.iter().map(|i| {
            let mut job = NewJob::new("default", "zeroscale.sleep", json!({"ms": i % 4}));
            job.options.max_attempts = Some(50);
            queue.enqueue(job)
        });
        for id in futures::future::join_all(batch).await {
            ids.push(id.unwrap());
        }
    }
    ids
}

/// Every job of `ids` succeeded; how many ran more than once.
async fn all_succeeded(queue: &dyn Queue, ids: &[JobId]) -> usize {
    let mut not_done = Vec::new();
    let mut retried = 0;
    for id in ids {
        let status = queue.status(*id).await.unwrap();
        if status.state != JobState::Succeeded {
            not_done.push((*id, status.state));
        }
        if status.attempts > 1 {
            retried += 1;
            if retried <= 3 {
                eprintln!(
                    "ran {} times; last error: {:?}",
                    status.attempts, status.last_error
                );
            }
        }
    }
    assert!(
        not_done.is_empty(),
        "{} jobs did not succeed: {:?}",
        not_done.len(),
        &not_done[..not_done.len().min(5)]
    );
    retried
}

async fn sigkilled_workers(label: &str, engine: Engine, dir: &std::path::Path) {
    let queue = engine.queue().await;
    let ids = enqueue(queue.as_ref(), JOBS).await;
    let mut rng = common::Lcg(11);
    let mut workers: Vec<Child> = (0..3).map(|_| worker(dir, &engine)).collect();
    let mut kills = 0;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        tokio::time::sleep(Duration::from_millis(100 + rng.next(200))).await;
        let done = queue.stats("default").await.unwrap().succeeded as usize;
        if done >= JOBS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{label}: only {done} of {JOBS} jobs finished in time"
        );
        if kills < 20 {
            let victim = rng.next(workers.len() as u64) as usize;
            let _ = workers[victim].kill(); // SIGKILL
            let _ = workers[victim].wait();
            workers[victim] = worker(dir, &engine);
            kills += 1;
        }
    }
    for w in &mut workers {
        let _ = w.kill();
        let _ = w.wait();
    }
    assert!(kills >= 5, "{label}: the test killed workers {kills} times");
    let retried = all_succeeded(queue.as_ref(), &ids).await;
    eprintln!(
        "{label}: {JOBS} jobs succeeded through {kills} SIGKILLs; {retried} ran more than once"
    );
}

/// Worker processes sharing one SQLite file.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_sigkilled_workers_lose_no_job() {
    let dir = common::TempDir::new("dbq-crash-sqlite");
    let engine = Engine::Sqlite(dir.0.join("queue.db"));
    sigkilled_workers("sqlite", engine, &dir.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_sigkilled_workers_lose_no_job() {
    let Some(url) = common::fresh_postgres("dbq_crash").await else {
        return;
    };
    let dir = common::TempDir::new("dbq-crash-postgres");
    sigkilled_workers("postgres", Engine::Postgres(url), &dir.0).await;
}

/// A server with its in-process workers and the queue in its SQLite file, SIGKILLed
/// while jobs run, then restarted on the same file.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sigkilled_server_finishes_its_jobs_after_a_restart() {
    let dir = common::TempDir::new("dbq-server-kill");
    let engine = Engine::Sqlite(dir.0.join("queue.db"));
    let queue = engine.queue().await;
    let start = || {
        let mut cmd = common::zeroscale(&dir.0);
        engine.apply(&mut cmd);
        cmd.env("ZEROSCALE_WORKERS__CONCURRENCY", "8");
        cmd
    };
    let mut server = common::Server::start(start()).await;
    // Jobs long enough that some are running at the kill.
    let mut ids = Vec::new();
    for i in 0..400 {
        let mut job = NewJob::new("default", "zeroscale.sleep", json!({"ms": 20 + i % 30}));
        job.options.max_attempts = Some(10);
        ids.push(queue.enqueue(job).await.unwrap());
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stats = queue.stats("default").await.unwrap();
        if stats.succeeded >= 50 && stats.running > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the server ran no job: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = server.child.kill(); // SIGKILL
    let _ = server.child.wait();
    let at_kill = queue.stats("default").await.unwrap();
    assert!(
        at_kill.queued + at_kill.running > 0,
        "nothing was left to finish: {at_kill:?}"
    );
    drop(server);

    let server = common::Server::start(start()).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let stats = queue.stats("default").await.unwrap();
        if stats.succeeded as usize == ids.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after the restart only {stats:?} (at the kill: {at_kill:?})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    all_succeeded(queue.as_ref(), &ids).await;
    eprintln!(
        "at the SIGKILL: {at_kill:?}; all {} succeeded after the restart",
        ids.len()
    );
    server.terminate();
}
