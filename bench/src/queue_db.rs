//! The database queue (`queue.kind = "database"`) on SQLite and on PostgreSQL, side by
//! side with zeroscale's Redis queue on the same machine: enqueue→ack of no-op jobs with
//! 1, 8 and 32 consumers through the worker runtime, and the latency from enqueue to a
//! handler starting on an idle worker. Reported (the issue sets no goal): the figures
//! say when the database queue is enough and when Redis is worth running.
//!
//! Every round gets a fresh database (an SQLite file, or a PostgreSQL database) and fresh
//! Redis keys; set-up is outside the timed part.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use zeroscale_core::Queue;
use zeroscale_core::config::{
    DatabaseConfig, DatabaseQueueConfig, JobsConfig, QueueConfig, RedisQueueConfig, SqliteConfig,
};
use zeroscale_core::queue::NewJob;
use zeroscale_db::Db;
use zeroscale_queue::worker::{Worker, WorkerOptions};

use crate::measure::Figure;
use crate::measure::{Goal, Plan, compare};

/// Which engine holds the queue.
#[derive(Clone, Copy)]
enum Engine {
    Sqlite,
    Postgres,
}

impl Engine {
    fn name(self) -> &'static str {
        match self {
            Engine::Sqlite => "SQLite",
            Engine::Postgres => "PostgreSQL",
        }
    }
}

/// A fresh, migrated database for one round, and how to remove it.
struct RoundDb {
    db: Db,
    drop: Option<(String, String)>,
    dir: Option<std::path::PathBuf>,
}

impl RoundDb {
    async fn new(engine: Engine, label: &str, postgres: Option<&str>) -> RoundDb {
        match engine {
            Engine::Sqlite => {
                let dir = std::env::temp_dir().join(format!("zsb-dbq-{label}"));
                let _ = std::fs::remove_dir_all(&dir);
                let db = Db::connect(&DatabaseConfig::Sqlite(SqliteConfig {
                    path: Some(dir.join("queue.db")),
                    ..Default::default()
                }))
                .await
                .expect("open SQLite");
                db.migrate_up().await.expect("migrate");
                RoundDb {
                    db,
                    drop: None,
                    dir: Some(dir),
                }
            }
            Engine::Postgres => {
                let admin = postgres.expect("PostgreSQL URL");
                let name = format!("zsb_dbq_{}", label.replace('-', "_"));
                let _ = zeroscale_db::testing::drop_postgres_database(admin, &name).await;
                let (db, _) = zeroscale_db::testing::fresh_postgres_database(admin, &name, 16)
                    .await
                    .expect("create the bench database");
                RoundDb {
                    db,
                    drop: Some((admin.to_owned(), name)),
                    dir: None,
                }
            }
        }
    }

    async fn queue(&self) -> Arc<dyn Queue> {
        zeroscale_queue::connect_with(
            &QueueConfig::Database(DatabaseQueueConfig::default()),
            &JobsConfig::default(),
            &zeroscale_queue::QueueContext::default().with_database(self.db.clone()),
        )
        .await
        .expect("the database queue")
    }

    async fn remove(self) {
        let _ = self.db.close().await;
        if let Some((admin, name)) = self.drop {
            let _ = zeroscale_db::testing::drop_postgres_database(&admin, &name).await;
        }
        if let Some(dir) = self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

async fn redis_queue(url: &str, prefix: &str) -> Arc<dyn Queue> {
    zeroscale_queue::connect(
        &QueueConfig::Redis(RedisQueueConfig {
            url: url.to_owned().into(),
            key_prefix: prefix.to_owned(),
            ..Default::default()
        }),
        &JobsConfig::default(),
    )
    .await
    .expect("connect the zeroscale Redis queue")
}

/// The database queue's figures; `redis` and `postgres` are the engines' URLs.
pub(crate) async fn run(
    plan: Plan,
    redis: &str,
    postgres: Option<&str>,
) -> anyhow::Result<Vec<Figure>> {
    let mut figures = Vec::new();
    let n = plan.size(2_000, 300);
    let run_id = std::process::id();
    let mut engines = vec![Engine::Sqlite];
    if postgres.is_some() {
        engines.push(Engine::Postgres);
    }
    for engine in engines {
        for consumers in [1, 8, 32] {
            let ours = |round: usize| async move {
                let label = format!("{run_id}-{consumers}-{round}");
                let db = RoundDb::new(engine, &label, postgres).await;
                let took = crate::queue::run_ours(db.queue().await, "bench", n, consumers).await;
                db.remove().await;
                took
            };
            let theirs = |round: usize| async move {
                let prefix = format!("zsd-{run_id}-{consumers}-{round}");
                let took = crate::queue::run_ours(
                    redis_queue(redis, &prefix).await,
                    "bench",
                    n,
                    consumers,
                )
                .await;
                crate::queue::cleanup(redis, &format!("{{{prefix}}}*")).await;
                took
            };
            let mut figure = compare(
                plan,
                "queue",
                format!(
                    "database queue on {} {n} jobs enqueue→ack, {consumers} consumer(s): time against zeroscale's Redis queue",
                    engine.name()
                ),
                "zeroscale's Redis queue, same worker runtime",
                Goal::Report,
                ours,
                theirs,
            )
            .await;
            crate::queue::name_rates(&mut figure, n);
            figures.push(figure);
        }
        let samples = plan.size(20, 6);
        let ours = |round: usize| async move {
            let db = RoundDb::new(engine, &format!("{run_id}-lat-{round}"), postgres).await;
            let p50 = start_latency(db.queue().await, samples).await;
            db.remove().await;
            p50
        };
        let theirs = |round: usize| async move {
            let prefix = format!("zsl-{run_id}-{round}");
            let p50 = start_latency(redis_queue(redis, &prefix).await, samples).await;
            crate::queue::cleanup(redis, &format!("{{{prefix}}}*")).await;
            p50
        };
        let mut figure = compare(
            plan,
            "queue",
            format!(
                "database queue on {}: p50 of {samples} enqueue→handler-start latencies on an idle worker, against the Redis queue",
                engine.name()
            ),
            "zeroscale's Redis queue, same worker runtime",
            Goal::Report,
            ours,
            theirs,
        )
        .await;
        figure.name = format!(
            "{}; {:.1} vs {:.1} ms",
            figure.name,
            figure.ours.median,
            figure.theirs.map_or(f64::NAN, |t| t.median)
        );
        figures.push(figure);
    }
    Ok(figures)
}

/// The median time from an enqueue to its handler starting, on a worker left idle
/// (as it is between jobs in a quiet app) before each enqueue.
async fn start_latency(queue: Arc<dyn Queue>, samples: usize) -> Duration {
    let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let mut worker = Worker::new(
        queue.clone(),
        WorkerOptions {
            queues: vec!["latency".to_owned()],
            concurrency: 1,
            ..Default::default()
        },
    );
    worker.register("mark", move |_ctx, _payload: serde_json::Value| {
        let started_tx = started_tx.clone();
        async move {
            let _ = started_tx.send(Instant::now());
            Ok(None)
        }
    });
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(worker.run(stop_rx));
    let mut latencies = Vec::with_capacity(samples);
    for i in 0..samples {
        // Long enough for the worker's polls to back off, as in a quiet app, and spread
        // (300-800 ms) so the enqueues do not line up with the polls' schedule (a poll
        // falls due 20, 60, 140, 300, 620 ms after the last job): a queue that does not
        // wake its idle workers shows here as tens or hundreds of ms.
        tokio::time::sleep(Duration::from_millis(300 + (i as u64 * 137) % 500)).await;
        let sent = Instant::now();
        queue
            .enqueue(NewJob::new("latency", "mark", json!({ "i": i })))
            .await
            .expect("enqueue");
        let at = tokio::time::timeout(Duration::from_secs(30), started.recv())
            .await
            .expect("the job started within 30 s")
            .expect("the worker runs");
        latencies.push(at.duration_since(sent));
    }
    let _ = stop.send(true);
    let _ = running.await;
    latencies.sort();
    latencies[latencies.len() / 2]
}
