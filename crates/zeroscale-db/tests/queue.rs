//! The database queue next to the application's own writes, and its retention: on
//! SQLite, consumers and an app writing to the same file see no "database is locked";
//! under a steady load with a short retention the jobs table stays bounded.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use zeroscale_core::Queue;
use zeroscale_core::config::{ChatConfig, DatabaseQueueConfig, JobsConfig};
use zeroscale_core::domain::Role;
use zeroscale_core::queue::{NewJob, ReserveOptions};
use zeroscale_db::domain::{Domain, NewUser};
use zeroscale_db::queue::DbQueue;

fn reserve(queue: &str) -> ReserveOptions {
    ReserveOptions {
        queues: vec![queue.to_owned()],
        lease: Duration::from_secs(30),
    }
}

/// 8 consumers drain 2,000 jobs while 4 tasks keep writing the app's tables (credits,
/// users) to the same SQLite file: every call succeeds and every job is acked once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_queue_beside_app_writes_is_never_locked() {
    let t = common::sqlite("queue_locks").await;
    let queue = Arc::new(DbQueue::new(
        t.db.clone(),
        JobsConfig::default(),
        DatabaseQueueConfig::default(),
    ));
    let domain = Domain::new(t.db.clone(), common::test_auth(), ChatConfig::default());
    let user = domain
        .users()
        .register(NewUser {
            username: "writer".into(),
            password: "correct horse battery".into(),
            role: Role::User,
            credits: 0,
        })
        .await
        .unwrap();
    const JOBS: usize = 2_000;
    for i in 0..JOBS {
        queue
            .enqueue(NewJob::new("locks", "t", json!({ "i": i })))
            .await
            .unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for _ in 0..4 {
        let (domain, id, stop, writes) = (
            domain.clone(),
            user.id.clone(),
            stop.clone(),
            writes.clone(),
        );
        writers.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                domain.users().add_credits(&id, 1).await.expect("app write");
                writes.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    let acked = Arc::new(AtomicUsize::new(0));
    let mut consumers = Vec::new();
    for _ in 0..8 {
        let (queue, acked) = (queue.clone(), acked.clone());
        consumers.push(tokio::spawn(async move {
            loop {
                let jobs = queue
                    .reserve_many(&reserve("locks"), 4)
                    .await
                    .expect("reserve");
                if jobs.is_empty() {
                    return;
                }
                let done: Vec<_> = jobs.iter().map(|j| (j.lease.clone(), None)).collect();
                for r in queue.ack_many(&done).await {
                    r.expect("ack");
                    acked.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    for c in consumers {
        c.await.unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.await.unwrap();
    }
    assert_eq!(acked.load(Ordering::SeqCst), JOBS);
    assert_eq!(queue.stats("locks").await.unwrap().succeeded, JOBS as u64);
    let writes = writes.load(Ordering::SeqCst);
    assert!(writes > 0);
    assert_eq!(
        domain.users().get(&user.id).await.unwrap().credits,
        writes as i64,
        "every app write landed"
    );
    eprintln!("{JOBS} jobs acked beside {writes} app writes, none locked out");
    t.cleanup().await;
}

/// With a 1 s retention and pruning at every sweep, a steady flow of jobs leaves at
/// most about a second's worth of finished rows behind.
async fn retention_bounds_the_table(t: common::TestDb) {
    let jobs = JobsConfig {
        retention_secs: 1,
        ..Default::default()
    };
    let queue = DbQueue::new(
        t.db.clone(),
        jobs,
        DatabaseQueueConfig {
            prune_interval_secs: 0,
            prune_batch: 100,
        },
    );
    let mut peak = 0;
    for round in 0..30 {
        for i in 0..50 {
            queue
                .enqueue(NewJob::new("steady", "t", json!({ "i": i })))
                .await
                .unwrap();
        }
        let got = queue.reserve_many(&reserve("steady"), 50).await.unwrap();
        assert_eq!(got.len(), 50, "round {round}");
        let done: Vec<_> = got.iter().map(|j| (j.lease.clone(), None)).collect();
        for r in queue.ack_many(&done).await {
            r.unwrap();
        }
        let stats = queue.stats("steady").await.unwrap();
        peak = peak.max(stats.succeeded);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // 1,500 jobs went through; about 10 rounds (500 rows) fit in the retention.
    assert!(peak <= 700, "{} rows were kept at the peak", peak);
    let left = queue.stats("steady").await.unwrap().succeeded;
    assert!(left <= 700, "{left} finished rows left");
    eprintln!("1500 jobs through a 1 s retention: at most {peak} finished rows kept");
    t.cleanup().await;
}

#[tokio::test]
async fn retention_bounds_the_table_sqlite() {
    retention_bounds_the_table(common::sqlite("queue_retention").await).await;
}

#[tokio::test]
async fn retention_bounds_the_table_postgres() {
    let Some(t) = common::postgres("queue_retention").await else {
        return;
    };
    retention_bounds_the_table(t).await;
}
