//! The worker's prefetch on the in-memory queue: jobs reserved beyond the free slots run
//! without a reservation each; held jobs that wait too long, or that a shutdown finds
//! unstarted, go back to the queue with their attempt unspent.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use tokio::sync::watch;
use zeroscale_core::Queue;
use zeroscale_core::queue::{JobState, QueueExt, ReserveOptions};
use zeroscale_queue::worker::{Worker, WorkerOptions};

mod common;
use common::{Counting, options, queue, wait_for};

/// One slot and a prefetch of 4: 10 short jobs take 2 reservations of 5 (and one that
/// finds the queue empty, or none), each job runs once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_slot_runs_held_jobs_without_a_round_trip_each() {
    let counting = Arc::new(Counting::on(queue()));
    let q: Arc<dyn Queue> = counting.clone();
    let mut ids = Vec::new();
    for n in 0..10 {
        ids.push(q.enqueue_json("default", "noop", &json!(n)).await.unwrap());
    }
    let runs = Arc::new(AtomicUsize::new(0));
    let mut worker = Worker::new(
        q.clone(),
        WorkerOptions {
            concurrency: 1,
            prefetch: 4,
            ..options()
        },
    );
    let counter = runs.clone();
    worker.register("noop", move |_ctx, _: serde_json::Value| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok(None)
        }
    });
    let (stop, stop_rx) = watch::channel(false);
    let running = tokio::spawn(worker.run(stop_rx));
    for id in &ids {
        let status = wait_for(&q, *id, JobState::Succeeded).await;
        assert_eq!(status.attempts, 1);
    }
    stop.send(true).unwrap();
    let report = running.await.unwrap();
    assert_eq!(report.succeeded, 10);
    assert_eq!(runs.load(Ordering::SeqCst), 10);
    let reserved = counting.reserved.lock().unwrap().clone();
    assert_eq!(reserved, vec![5, 5], "one reservation per 1 + 4 jobs");
}

/// Held jobs whose slot stays busy past the hold time go back to the queue, queued with
/// no attempt spent, where another worker takes them; the worker holds fewer next time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_jobs_go_back_when_no_slot_frees() {
    let inner = queue();
    let counting = Arc::new(Counting::on(inner.clone()));
    let q: Arc<dyn Queue> = counting.clone();
    let slow = q
        .enqueue_json("default", "sleep", &json!(1500))
        .await
        .unwrap();
    let mut short = Vec::new();
    for _ in 0..4 {
        short.push(q.enqueue_json("default", "sleep", &json!(0)).await.unwrap());
    }
    let mut worker = Worker::new(
        q.clone(),
        WorkerOptions {
            concurrency: 1,
            prefetch: 2,
            // A lease of 600 ms holds at most 200 ms, whatever is asked.
            prefetch_hold: Duration::from_secs(5),
            ..options()
        },
    );
    worker.register("sleep", |_ctx, ms: u64| async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(None)
    });
    let (stop, stop_rx) = watch::channel(false);
    let running = tokio::spawn(worker.run(stop_rx));
    wait_for(&q, slow, JobState::Running).await;
    assert_eq!(counting.reserved.lock().unwrap().clone(), vec![3]);
    // Held at first (running, from the queue's view), then handed back after 200 ms.
    for id in &short[..2] {
        let status = wait_for(&q, *id, JobState::Queued).await;
        assert_eq!(status.attempts, 0, "holding a job spends no attempt");
    }
    // Another worker can take one meanwhile (straight from the queue, not counted).
    let other = inner
        .reserve(&ReserveOptions {
            queues: vec!["default".into()],
            lease: Duration::from_secs(5),
        })
        .await
        .unwrap()
        .expect("a held job went back");
    assert_eq!(other.id, short[0], "back in its old place");
    assert_eq!(other.attempt, 1);
    inner.ack(&other.lease, None).await.unwrap();
    for id in short.iter().chain([&slow]) {
        let status = wait_for(&q, *id, JobState::Succeeded).await;
        assert_eq!(status.attempts, 1, "{status:?}");
    }
    stop.send(true).unwrap();
    let report = running.await.unwrap();
    assert_eq!(report.succeeded, 4);
    let reserved = counting.reserved.lock().unwrap().clone();
    assert_eq!(
        reserved[..2],
        [3, 2],
        "after a timeout the worker holds half as many (1 slot + 1): {reserved:?}"
    );
}

/// A shutdown hands held jobs back unstarted and unspent, without waiting the grace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_hands_held_jobs_back() {
    let q = queue();
    let mut ids = Vec::new();
    for ms in [300, 0, 0] {
        ids.push(
            q.enqueue_json("default", "sleep", &json!(ms))
                .await
                .unwrap(),
        );
    }
    let mut worker = Worker::new(
        q.clone(),
        WorkerOptions {
            concurrency: 1,
            prefetch: 2,
            ..options()
        },
    );
    worker.register("sleep", |_ctx, ms: u64| async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(None)
    });
    let (stop, stop_rx) = watch::channel(false);
    let running = tokio::spawn(worker.run(stop_rx));
    wait_for(&q, ids[0], JobState::Running).await;
    stop.send(true).unwrap();
    let report = running.await.unwrap();
    assert_eq!(
        report.succeeded, 1,
        "the running job finished within the grace"
    );
    assert_eq!(report.released, 0, "no running job was interrupted");
    for id in &ids[1..] {
        let status = q.status(*id).await.unwrap();
        assert_eq!(status.state, JobState::Queued, "{status:?}");
        assert_eq!(status.attempts, 0);
    }
}
