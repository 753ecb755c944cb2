//! Queue: enqueue→reserve→ack of no-op jobs with 1, 8 and 32 concurrent consumers,
//! through zeroscale's worker runtime on Redis against apalis 1.0 with apalis-redis on the
//! same Redis (the peer; goal ≥ 1.5× its jobs/s), and against a raw LPUSH/BRPOP loop (no
//! lease, no ack: the limit, reported as the fraction of it reached). The in-memory queue
//! is reported on its own; the database queue next to the Redis one (`queue_db.rs`).
//!
//! Each round starts the consumers, then one producer enqueues every job; the time runs
//! from the first enqueue to the last handler's return. Every round uses fresh queues.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use apalis::prelude::*;
use serde_json::json;
use tokio::sync::Notify;
use zeroscale_core::config::{JobsConfig, QueueConfig, RedisQueueConfig};
use zeroscale_core::queue::NewJob;
use zeroscale_queue::worker::{Worker, WorkerOptions};

use crate::measure::{Figure, Goal, Plan, Stats, compare};

/// Counts handler returns; wakes the waiter at the last one.
struct Done {
    count: AtomicUsize,
    of: usize,
    all: Notify,
}

impl Done {
    fn new(of: usize) -> Arc<Done> {
        Arc::new(Done {
            count: AtomicUsize::new(0),
            of,
            all: Notify::new(),
        })
    }

    fn one(&self) {
        if self.count.fetch_add(1, Ordering::AcqRel) + 1 == self.of {
            self.all.notify_one();
        }
    }

    async fn wait(&self, what: &str) {
        tokio::time::timeout(Duration::from_secs(300), self.all.notified())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{what}: only {} of {} jobs ran within 5 minutes",
                    self.count.load(Ordering::Acquire),
                    self.of
                )
            });
    }
}

/// Adds both sides' jobs/s (from the median times of `n` jobs) to `figure`'s name.
pub(crate) fn name_rates(figure: &mut Figure, n: usize) {
    let rate = |ms: f64| n as f64 / (ms / 1e3);
    figure.name = format!(
        "{}; {:.0} vs {:.0} jobs/s",
        figure.name,
        rate(figure.ours.median),
        figure.theirs.map_or(f64::NAN, |t| rate(t.median)),
    );
}

/// Jobs per call of a batched producer.
const BATCH: usize = 100;

/// Every queue figure; Redis from `ZEROSCALE_TEST_REDIS_URL`.
pub(crate) async fn run(plan: Plan) -> anyhow::Result<Vec<Figure>> {
    let mut figures = Vec::new();
    let n = plan.size(5_000, 500);
    figures.push(memory(plan, n).await);
    let Ok(url) = std::env::var("ZEROSCALE_TEST_REDIS_URL") else {
        anyhow::ensure!(
            std::env::var_os("CI").is_none(),
            "ZEROSCALE_TEST_REDIS_URL is not set: run `cargo xtask bench`, which starts Redis"
        );
        eprintln!("queue: no ZEROSCALE_TEST_REDIS_URL, Redis skipped");
        return Ok(figures);
    };
    let run_id = std::process::id();
    for consumers in [1, 8, 32] {
        // One job per enqueue call, then 100 per call (`enqueue_many`, apalis's
        // `push_bulk`): a producer with many jobs at hand.
        for batch in [1, BATCH] {
            let ours = |round: usize| {
                let url = url.clone();
                async move {
                    zeroscale_redis(
                        &url,
                        &format!("zsb-{run_id}-{consumers}-{batch}-{round}"),
                        n,
                        consumers,
                        batch,
                    )
                    .await
                }
            };
            let apalis_side = |round: usize| {
                let url = url.clone();
                async move {
                    apalis_redis_run(
                        &url,
                        &format!("apb-{run_id}-{consumers}-{batch}-{round}"),
                        n,
                        consumers,
                        batch,
                    )
                    .await
                }
            };
            let producer = if batch == 1 {
                "one job per enqueue".to_owned()
            } else {
                format!("{batch} jobs per enqueue_many / push_bulk")
            };
            let mut figure = compare(
                plan,
                "queue",
                format!("Redis {n} jobs enqueue→ack, {consumers} consumer(s), {producer} (time; goal = ≥ 1.5× apalis jobs/s)"),
                "apalis 1.0 + apalis-redis on the same Redis",
                Goal::AtMost { ratio: 0.667 },
                ours,
                apalis_side,
            )
            .await;
            name_rates(&mut figure, n);
            figures.push(figure);
        }

        let ours = |round: usize| {
            let url = url.clone();
            async move {
                zeroscale_redis(
                    &url,
                    &format!("zsr-{run_id}-{consumers}-{round}"),
                    n,
                    consumers,
                    1,
                )
                .await
            }
        };
        let raw = |round: usize| {
            let url = url.clone();
            async move {
                raw_redis(
                    &url,
                    &format!("raw-{run_id}-{consumers}-{round}"),
                    n,
                    consumers,
                )
                .await
            }
        };
        let mut figure = compare(
            plan,
            "queue",
            format!("Redis {n} jobs, {consumers} consumer(s): time against a raw LPUSH/BRPOP loop (no lease, no ack: the limit)"),
            "raw LPUSH/BRPOP",
            Goal::Report,
            ours,
            raw,
        )
        .await;
        if let Some(ratio) = figure.ratio {
            figure.name = format!("{}; {:.0}% of the limit", figure.name, 100.0 / ratio.median);
        }
        figures.push(figure);
    }
    figures.extend(cluster(plan, &url, n).await?);
    let postgres = std::env::var("ZEROSCALE_TEST_POSTGRES_URL").ok();
    anyhow::ensure!(
        postgres.is_some() || std::env::var_os("CI").is_none(),
        "ZEROSCALE_TEST_POSTGRES_URL is not set: run `cargo xtask bench`, which starts PostgreSQL"
    );
    figures.extend(crate::queue_db::run(plan, &url, postgres.as_deref()).await?);
    Ok(figures)
}

fn worker_options(queue: &str, consumers: usize) -> WorkerOptions {
    WorkerOptions {
        queues: vec![queue.to_owned()],
        concurrency: consumers,
        ..Default::default()
    }
}

/// zeroscale's worker runtime on `queue`: `n` jobs through `consumers` at once.
pub(crate) async fn run_ours(
    queue: Arc<dyn zeroscale_core::Queue>,
    name: &str,
    n: usize,
    consumers: usize,
) -> Duration {
    run_ours_batched(queue, name, n, consumers, 1).await
}

/// [`run_ours`] with the producer enqueueing `batch` jobs per call (`enqueue_many`).
pub(crate) async fn run_ours_batched(
    queue: Arc<dyn zeroscale_core::Queue>,
    name: &str,
    n: usize,
    consumers: usize,
    batch: usize,
) -> Duration {
    let done = Done::new(n);
    let mut worker = Worker::new(queue.clone(), worker_options(name, consumers));
    let counter = done.clone();
    worker.register("noop", move |_ctx, _payload: serde_json::Value| {
        let counter = counter.clone();
        async move {
            counter.one();
            Ok(None)
        }
    });
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(worker.run(stop_rx));
    let start = Instant::now();
    if batch <= 1 {
        for i in 0..n {
            queue
                .enqueue(NewJob::new(name, "noop", json!({ "n": i })))
                .await
                .expect("enqueue");
        }
    } else {
        for first in (0..n).step_by(batch) {
            let jobs = (first..(first + batch).min(n))
                .map(|i| NewJob::new(name, "noop", json!({ "n": i })))
                .collect();
            queue.enqueue_many(jobs).await.expect("enqueue_many");
        }
    }
    done.wait("zeroscale").await;
    let took = start.elapsed();
    let _ = stop.send(true);
    let _ = running.await;
    took
}

async fn zeroscale_redis(
    url: &str,
    prefix: &str,
    n: usize,
    consumers: usize,
    batch: usize,
) -> Duration {
    let config = QueueConfig::Redis(RedisQueueConfig {
        url: url.to_owned().into(),
        key_prefix: prefix.to_owned(),
        ..Default::default()
    });
    let queue = zeroscale_queue::connect(&config, &JobsConfig::default())
        .await
        .expect("connect the zeroscale Redis queue");
    let took = run_ours_batched(queue, "bench", n, consumers, batch).await;
    cleanup(url, &format!("{{{prefix}}}*")).await;
    took
}

/// Stage 4: the queue on the Redis Cluster (3 masters, 3 replicas; the queue in one
/// slot) against one Redis, 8 consumers, one job per enqueue: without and with
/// `wait_for_replicas = 1` (each enqueue waits for `WAIT`). Reported, no goal: the cluster
/// buys failover, not speed.
async fn cluster(plan: Plan, url: &str, n: usize) -> anyhow::Result<Vec<Figure>> {
    let Ok(nodes) = std::env::var("ZEROSCALE_TEST_REDIS_CLUSTER_NODES") else {
        anyhow::ensure!(
            std::env::var_os("CI").is_none(),
            "ZEROSCALE_TEST_REDIS_CLUSTER_NODES is not set: run `cargo xtask bench`, which \
             starts the Redis Cluster"
        );
        eprintln!("queue: no ZEROSCALE_TEST_REDIS_CLUSTER_NODES, the cluster skipped");
        return Ok(Vec::new());
    };
    let run_id = std::process::id();
    let mut figures = Vec::new();
    for wait in [0, 1] {
        let ours = |round: usize| {
            let nodes = nodes.clone();
            async move {
                zeroscale_cluster(&nodes, &format!("zsc-{run_id}-{wait}-{round}"), n, 8, wait).await
            }
        };
        let single = |round: usize| {
            let url = url.to_owned();
            async move { zeroscale_redis(&url, &format!("zs1-{run_id}-{wait}-{round}"), n, 8, 1).await }
        };
        let confirmed = if wait > 0 {
            ", each enqueue confirmed by a replica (WAIT 1)"
        } else {
            ""
        };
        let mut figure = compare(
            plan,
            "queue",
            format!(
                "Redis Cluster (3 masters + 3 replicas){confirmed}: {n} jobs enqueue→ack, 8 \
                 consumers, one job per enqueue (time against one Redis)"
            ),
            "one Redis, same jobs",
            Goal::Report,
            ours,
            single,
        )
        .await;
        name_rates(&mut figure, n);
        figures.push(figure);
    }
    Ok(figures)
}

async fn zeroscale_cluster(
    nodes: &str,
    prefix: &str,
    n: usize,
    consumers: usize,
    wait_for_replicas: u32,
) -> Duration {
    let config = RedisQueueConfig {
        cluster_nodes: nodes.split(',').map(|n| n.to_owned().into()).collect(),
        key_prefix: prefix.to_owned(),
        wait_for_replicas,
        ..Default::default()
    };
    let queue =
        zeroscale_queue::connect(&QueueConfig::Redis(config.clone()), &JobsConfig::default())
            .await
            .expect("connect the zeroscale queue to the Redis Cluster");
    let took = run_ours_batched(queue, "bench", n, consumers, 1).await;
    // Every key of the prefix is on the master of its slot, where this connection goes.
    if let Ok(mut conn) = zeroscale_queue::testing::redis_connection(&config).await {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{{{prefix}}}*"))
            .query_async(&mut conn)
            .await
            .unwrap_or_default();
        for chunk in keys.chunks(500) {
            let _: Result<i64, _> = redis::cmd("DEL").arg(chunk).query_async(&mut conn).await;
        }
    }
    took
}

/// apalis with apalis-redis: a worker with `consumers` in flight (its concurrency limit).
async fn apalis_redis_run(
    url: &str,
    queue: &str,
    n: usize,
    consumers: usize,
    batch: usize,
) -> Duration {
    let conn = apalis_redis::connect(url.to_owned())
        .await
        .expect("connect apalis-redis");
    let mut storage = apalis_redis::RedisStorage::<u64>::new(conn)
        // Its defaults but the heartbeat: with the default 30 s, a round now and then
        // waits out one whole heartbeat before the worker fetches. Shorter only helps apalis.
        .with_config(
            apalis_redis::Config::default()
                .queue(queue)
                .heartbeat_interval(Duration::from_secs(1)),
        );
    let done = Done::new(n);
    let counter = done.clone();
    let worker = WorkerBuilder::new(format!("bench-{queue}"))
        .backend(storage.clone())
        .concurrency(consumers)
        .build(move |_job: u64| {
            let counter = counter.clone();
            async move {
                counter.one();
                Ok::<(), BoxDynError>(())
            }
        });
    let stopper = done.clone();
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run_until(async move {
        let _ = stop_rx.await;
        Ok::<(), std::io::Error>(())
    }));
    let start = Instant::now();
    if batch <= 1 {
        for i in 0..n as u64 {
            storage.push(i).await.expect("apalis push");
        }
    } else {
        for first in (0..n as u64).step_by(batch) {
            let tasks = (first..(first + batch as u64).min(n as u64)).collect();
            storage.push_bulk(tasks).await.expect("apalis push_bulk");
        }
    }
    stopper.wait("apalis").await;
    let took = start.elapsed();
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), running).await;
    cleanup(url, &format!("{queue}*")).await;
    took
}

/// The limit: `consumers` connections each in a BRPOP loop, one producer LPUSHing.
async fn raw_redis(url: &str, list: &str, n: usize, consumers: usize) -> Duration {
    let client = redis::Client::open(url).expect("Redis URL");
    let done = Done::new(n);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..consumers {
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect");
        let (done, stop, list) = (done.clone(), stop.clone(), list.to_owned());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Acquire) {
                let got: Option<(String, String)> = redis::cmd("BRPOP")
                    .arg(&list)
                    .arg(0.1)
                    .query_async(&mut conn)
                    .await
                    .expect("BRPOP");
                if got.is_some() {
                    done.one();
                }
            }
        }));
    }
    let mut producer = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let start = Instant::now();
    for i in 0..n {
        let _: i64 = redis::cmd("LPUSH")
            .arg(list)
            .arg(json!({ "n": i }).to_string())
            .query_async(&mut producer)
            .await
            .expect("LPUSH");
    }
    done.wait("raw").await;
    let took = start.elapsed();
    stop.store(true, Ordering::Release);
    for task in tasks {
        let _ = task.await;
    }
    took
}

/// Deletes what a round left behind (the keys matching `pattern`).
pub(crate) async fn cleanup(url: &str, pattern: &str) {
    let Ok(client) = redis::Client::open(url) else {
        return;
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return;
    };
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(pattern)
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    for chunk in keys.chunks(500) {
        let _: Result<i64, _> = redis::cmd("DEL").arg(chunk).query_async(&mut conn).await;
    }
}

/// The in-memory queue through the same worker runtime (no peer: reported).
async fn memory(plan: Plan, n: usize) -> Figure {
    let mut rates = Vec::new();
    let mut times = Vec::new();
    for _ in 0..=plan.rounds {
        let queue = zeroscale_queue::connect(&QueueConfig::default(), &JobsConfig::default())
            .await
            .expect("memory queue");
        let took = run_ours(queue, "bench", n, 8).await;
        times.push(took.as_secs_f64() * 1e3);
        rates.push(n as f64 / took.as_secs_f64());
    }
    // The first round was the warm-up.
    times.remove(0);
    rates.remove(0);
    let rates = Stats::of(&rates);
    Figure {
        concern: "queue",
        name: format!(
            "memory {n} jobs enqueue→ack, 8 consumers; {:.0} jobs/s [{:.0}–{:.0}]",
            rates.median, rates.min, rates.max
        ),
        unit: "ms",
        ours: Stats::of(&times),
        theirs: None,
        against: None,
        ratio: None,
        goal: Goal::Report,
        pass: None,
        rounds: plan.rounds,
    }
}
