//! The queue in your app's own database: an order and the job that emails its receipt
//! commit together, and a worker runs the job.
//!
//! `cargo run -p zeroscale-queue --features database --example database_queue`
//! (an SQLite file in a temporary folder; set `DATABASE_URL` to a `postgres://` URL to
//! run it on PostgreSQL instead).

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use zeroscale_core::config::{
    DatabaseConfig, DatabaseQueueConfig, JobsConfig, PostgresConfig, QueueConfig, SqliteConfig,
};
use zeroscale_core::queue::{JobState, NewJob};
use zeroscale_core::{Queue, Result};
use zeroscale_db::Db;
use zeroscale_db::queue::DbQueue;
use zeroscale_queue::worker::{Worker, WorkerOptions};

#[derive(Deserialize)]
struct Receipt {
    order: u64,
}

#[tokio::main]
async fn main() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("zs-example-{}", std::process::id()));
    let config = match std::env::var("DATABASE_URL") {
        Ok(url) => DatabaseConfig::Postgres(PostgresConfig {
            url: url.into(),
            ..Default::default()
        }),
        Err(_) => DatabaseConfig::Sqlite(SqliteConfig {
            path: Some(dir.join("app.db")),
            ..Default::default()
        }),
    };
    let db = Db::connect(&config).await?;
    db.migrate_up().await?; // the queue's tables come with the migrations

    // The same queue the server builds for `queue.kind = "database"`.
    let queue = Arc::new(DbQueue::new(
        db.clone(),
        JobsConfig::default(),
        DatabaseQueueConfig::default(),
    ));

    // Your writes and the job, in one transaction: both or neither.
    let mut txn = db.begin_job_txn().await?;
    // … insert the order with your own tables here, in `txn` …
    let id = queue
        .enqueue_in(
            &mut txn,
            NewJob::new("default", "email_receipt", serde_json::json!({"order": 42})),
        )
        .await?;
    txn.commit(&db).await?;
    println!("order committed with job {id}");

    // A worker (in your server or its own process) runs it.
    let mut worker = Worker::new(
        queue.clone() as Arc<dyn Queue>,
        WorkerOptions {
            max_poll_interval: Duration::from_millis(50),
            ..Default::default()
        },
    );
    worker.register("email_receipt", |_, receipt: Receipt| async move {
        println!("emailing the receipt of order {}", receipt.order);
        Ok(None)
    });
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(worker.run(stopped));
    while queue.status(id).await?.state != JobState::Succeeded {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("job {id}: {}", queue.status(id).await?.state);
    let _ = stop.send(true);
    let _ = running.await;

    // The same tables, as the registry's `queue.kind = "database"` sees them.
    let stats = zeroscale_queue::connect_with(
        &QueueConfig::Database(DatabaseQueueConfig::default()),
        &JobsConfig::default(),
        &zeroscale_queue::QueueContext::default().with_database(db.clone()),
    )
    .await?
    .stats("default")
    .await?;
    println!("succeeded jobs in `default`: {}", stats.succeeded);
    db.close().await?;
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}
