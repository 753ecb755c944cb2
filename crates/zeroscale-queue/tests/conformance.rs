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

/// Stage 4's Redis Cluster (`cargo xtask services up --stage4`), as stage 4 configures
/// it: enqueues wait for one replica.
#[cfg(feature = "redis")]
fn cluster_config(prefix: String) -> Option<zeroscale_core::config::QueueConfig> {
    use zeroscale_core::config::{QueueConfig, RedisQueueConfig};
    let nodes = zeroscale_core::testing::require_service(
        "ZEROSCALE_TEST_REDIS_CLUSTER_NODES",
        "Redis Cluster",
    )?;
    Some(QueueConfig::Redis(RedisQueueConfig {
        cluster_nodes: nodes.split(',').map(|n| n.to_owned().into()).collect(),
        key_prefix: prefix,
        wait_for_replicas: 1,
        ..Default::default()
    }))
}

#[cfg(feature = "redis")]
async fn redis_cluster_queue(check: &str) -> Option<Arc<dyn Queue>> {
    let config = cluster_config(format!(
        "conformance-{}-{}-{check}",
        std::process::id(),
        nanos()
    ))?;
    Some(
        zeroscale_queue::connect(&config, &test_jobs())
            .await
            .expect("connect"),
    )
}

#[cfg(feature = "redis")]
zeroscale_core::queue_conformance!(redis_cluster, redis_cluster_queue);

/// The shared counters on the Redis Cluster: the same suite.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn counters_redis_cluster() {
    let Some(config) = cluster_config(format!("counters-{}-{}", std::process::id(), nanos()))
    else {
        return;
    };
    let counters = zeroscale_queue::counters::connect_with(&config, &Default::default())
        .await
        .unwrap()
        .expect("Redis shares counters");
    zeroscale_core::conformance::counters::run_all(counters.as_ref(), "redis-cluster").await;
}

/// The registry's database queue over `db`.
#[cfg(feature = "database")]
async fn database_queue(db: zeroscale_db::Db) -> Arc<dyn Queue> {
    use zeroscale_core::config::{DatabaseQueueConfig, QueueConfig};
    zeroscale_queue::connect_with(
        &QueueConfig::Database(DatabaseQueueConfig::default()),
        &test_jobs(),
        &zeroscale_queue::QueueContext::default().with_database(db),
    )
    .await
    .expect("connect")
}

/// A fresh, migrated SQLite file named `name` in this test process's folder.
#[cfg(feature = "database")]
async fn fresh_sqlite(name: &str) -> zeroscale_db::Db {
    use zeroscale_core::config::{DatabaseConfig, SqliteConfig};
    let dir = std::env::temp_dir().join(format!("zs-queue-conformance-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.db"));
    let _ = std::fs::remove_file(&path);
    let db = zeroscale_db::Db::connect(&DatabaseConfig::Sqlite(SqliteConfig {
        path: Some(path),
        ..Default::default()
    }))
    .await
    .expect("open SQLite");
    db.migrate_up().await.expect("migrate");
    db
}

/// The database queue on a fresh SQLite file per check.
#[cfg(feature = "database")]
async fn database_sqlite_queue(check: &str) -> Option<Arc<dyn Queue>> {
    Some(database_queue(fresh_sqlite(check).await).await)
}

#[cfg(feature = "database")]
zeroscale_core::queue_conformance!(database_sqlite, database_sqlite_queue);

/// One migrated PostgreSQL database for this test process, made once (on its own
/// runtime: each check has its own); checks keep apart by queue names.
#[cfg(feature = "database")]
fn postgres_url() -> Option<String> {
    static URL: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    URL.get_or_init(|| {
        let admin =
            zeroscale_core::testing::require_service("ZEROSCALE_TEST_POSTGRES_URL", "PostgreSQL")?;
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let name = format!("zs_queue_conformance_{}", std::process::id());
                let _ = zeroscale_db::testing::drop_postgres_database(&admin, &name).await;
                let (db, url) = zeroscale_db::testing::fresh_postgres_database(&admin, &name, 2)
                    .await
                    .expect("create the test database");
                let _ = db.close().await;
                Some(url)
            })
        })
        .join()
        .unwrap()
    })
    .clone()
}

#[cfg(feature = "database")]
async fn database_postgres_queue(_check: &str) -> Option<Arc<dyn Queue>> {
    use zeroscale_core::config::{DatabaseConfig, PostgresConfig};
    let url = postgres_url()?;
    let db = zeroscale_db::Db::connect(&DatabaseConfig::Postgres(PostgresConfig {
        url: url.into(),
        max_connections: 10,
        min_connections: 0,
        ..Default::default()
    }))
    .await
    .expect("connect to PostgreSQL");
    Some(database_queue(db).await)
}

#[cfg(feature = "database")]
zeroscale_core::queue_conformance!(database_postgres, database_postgres_queue);

/// The shared counters on Redis, through the registry.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn counters_redis() {
    use zeroscale_core::config::{QueueConfig, RedisQueueConfig};
    let Some(url) = zeroscale_core::testing::require_service("ZEROSCALE_TEST_REDIS_URL", "Redis")
    else {
        return;
    };
    let config = QueueConfig::Redis(RedisQueueConfig {
        url: url.into(),
        key_prefix: format!("counters-{}-{}", std::process::id(), nanos()),
        ..Default::default()
    });
    let counters = zeroscale_queue::counters::connect_with(&config, &Default::default())
        .await
        .unwrap()
        .expect("Redis shares counters");
    zeroscale_core::conformance::counters::run_all(counters.as_ref(), "redis").await;
    let batching = zeroscale_queue::counters::coalescing(counters);
    zeroscale_core::conformance::counters::run_all(batching.as_ref(), "redis-batching").await;
}

/// The batching counters over the database's, on SQLite: the same suite.
#[cfg(feature = "database")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn counters_batching_sqlite() {
    let db = fresh_sqlite("counters-batching").await;
    let counters = zeroscale_queue::counters::coalescing(Arc::new(
        zeroscale_db::counters::DbCounters::new(db),
    ));
    zeroscale_core::conformance::counters::run_all(counters.as_ref(), "sqlite-batching").await;
}

/// The in-memory queue shares nothing; the database queue's counters are in its database.
#[tokio::test]
async fn counters_follow_the_queue() {
    use zeroscale_core::config::QueueConfig;
    let none =
        zeroscale_queue::counters::connect_with(&QueueConfig::default(), &Default::default())
            .await
            .unwrap();
    assert!(none.is_none(), "the memory queue has no shared counters");
}

/// `queue.wait_for_replicas` on the cluster: one replica per master confirms an enqueue;
/// asking for two cannot be met, and the enqueue says so (the job is on the master).
#[cfg(feature = "redis")]
#[tokio::test]
async fn cluster_enqueue_waits_for_replicas() {
    use zeroscale_core::QueueExt;
    use zeroscale_core::config::QueueConfig;
    let Some(QueueConfig::Redis(one)) =
        cluster_config(format!("wait-{}-{}", std::process::id(), nanos()))
    else {
        return;
    };
    let queue = zeroscale_queue::connect(&QueueConfig::Redis(one.clone()), &test_jobs())
        .await
        .unwrap();
    let id = queue
        .enqueue_json("default", "t", &serde_json::json!({}))
        .await
        .expect("one replica confirms");
    assert_eq!(queue.status(id).await.unwrap().id, id);
    let two = zeroscale_core::config::RedisQueueConfig {
        wait_for_replicas: 2,
        replica_wait_ms: 200,
        ..one
    };
    let queue = zeroscale_queue::connect(&QueueConfig::Redis(two), &test_jobs())
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let err = queue
        .enqueue_json("default", "t", &serde_json::json!({}))
        .await
        .expect_err("no master has two replicas");
    assert!(
        matches!(err, zeroscale_core::Error::Unavailable { .. }),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains("1 of the 2 replica(s)"), "{text}");
    assert!(text.contains("idempotency key"), "{text}");
    assert!(started.elapsed() >= std::time::Duration::from_millis(190));
}
