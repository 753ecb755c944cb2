//! The worker runtime on the in-memory queue: typed handlers, failures, panics, timeouts,
//! cancellation, progress, the concurrency limit and graceful shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;
use tokio::sync::watch;
use zeroscale_core::Queue;
use zeroscale_core::queue::{JobState, NewJob, QueueExt};
use zeroscale_queue::worker::{Worker, WorkerOptions};

mod common;
use common::{Counting, options, queue, wait_for};

#[derive(Deserialize)]
struct Add {
    a: i64,
    b: i64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn handlers_failures_panics_timeouts_progress() {
    let q = queue();
    let mut worker = Worker::new(
        q.clone(),
        WorkerOptions {
            job_timeout: Duration::from_millis(300),
            ..options()
        },
    );
    worker
        .register("add", |ctx, p: Add| async move {
            ctx.progress(50, "adding");
            tokio::time::sleep(Duration::from_millis(250)).await;
            Ok(Some(json!(p.a + p.b)))
        })
        .register("fail", |_, _: serde_json::Value| async move {
            Err(zeroscale_core::Error::unavailable("nope"))
        })
        .register("panic", |_, _: serde_json::Value| async move {
            if true {
                panic!("handler exploded");
            }
            Ok(None)
        })
        .register("slow", |_, _: serde_json::Value| async move {
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok(None)
        })
        // Longer than the worker's 300 ms timeout, within its own.
        .register("patient", |_, _: serde_json::Value| async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            Ok(Some(json!("done")))
        })
        .timeout("patient", Duration::from_secs(3))
        // Unwinding a panic may capture a backtrace (RUST_BACKTRACE=1), which in a debug
        // build on a busy machine can take longer than the 300 ms above: the panic must
        // be reported as a panic, not as a timeout.
        .timeout("panic", Duration::from_secs(30));
    let (stop, stop_rx) = watch::channel(false);
    let running = tokio::spawn(worker.run(stop_rx));

    let add = q
        .enqueue_json("default", "add", &json!({"a": 2, "b": 3}))
        .await
        .unwrap();
    let bad = q
        .enqueue_json("default", "add", &json!({"a": "x"}))
        .await
        .unwrap();
    let fail = q
        .enqueue_json("default", "fail", &json!(null))
        .await
        .unwrap();
    let boom = q
        .enqueue_json("default", "panic", &json!(null))
        .await
        .unwrap();
    let slow = q
        .enqueue_json("default", "slow", &json!(null))
        .await
        .unwrap();
    let unknown = q
        .enqueue_json("default", "nobody-handles-this", &json!(null))
        .await
        .unwrap();
    let patient = q
        .enqueue_json("default", "patient", &json!(null))
        .await
        .unwrap();

    let done = wait_for(&q, add, JobState::Succeeded).await;
    assert_eq!(done.result, Some(json!(5)));
    assert_eq!(
        done.progress.map(|p| p.percent),
        Some(50),
        "progress was reported"
    );
    let s = wait_for(&q, bad, JobState::Dead).await;
    assert!(s.last_error.unwrap().contains("does not match its handler"));
    let s = wait_for(&q, fail, JobState::Dead).await;
    assert_eq!(s.last_error.as_deref(), Some("unavailable: nope"));
    assert_eq!(s.attempts, 2, "retried up to max_attempts");
    let s = wait_for(&q, boom, JobState::Dead).await;
    assert!(
        s.last_error
            .unwrap()
            .contains("handler panicked: handler exploded")
    );
    let s = wait_for(&q, slow, JobState::Dead).await;
    assert!(s.last_error.unwrap().contains("timed out"));
    let s = wait_for(&q, unknown, JobState::Dead).await;
    assert!(
        s.last_error
            .unwrap()
            .contains("no handler for task `nobody-handles-this`")
    );

    let s = wait_for(&q, patient, JobState::Succeeded).await;
    assert_eq!(
        s.result,
        Some(json!("done")),
        "the per-task timeout applies"
    );

    // The worker survived all of that.
    let again = q
        .enqueue_json("default", "add", &json!({"a": 1, "b": 1}))
        .await
        .unwrap();
    assert_eq!(
        wait_for(&q, again, JobState::Succeeded).await.result,
        Some(json!(2))
    );
    stop.send(true).unwrap();
    let report = running.await.unwrap();
    assert_eq!(report.succeeded, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrency_limit_and_cancellation() {
    let q = queue();
    let current = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let mut worker = Worker::new(q.clone(), options());
    let (c, p) = (current.clone(), peak.clone());
    worker.register("work", move |ctx, ms: u64| {
        let (c, p) = (c.clone(), p.clone());
        async move {
            // Counts running handlers; the guard also runs when the handler is aborted.
            struct Running(Arc<AtomicUsize>);
            impl Drop for Running {
                fn drop(&mut self) {
                    self.0.fetch_sub(1, Ordering::SeqCst);
                }
            }
            let now = c.fetch_add(1, Ordering::SeqCst) + 1;
            let _running = Running(c);
            p.fetch_max(now, Ordering::SeqCst);
            for _ in 0..(ms / 20) {
                if ctx.is_cancelled() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(None)
        }
    });
    let (stop, stop_rx) = watch::channel(false);
    let running = tokio::spawn(worker.run(stop_rx));
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(q.enqueue_json("default", "work", &100u64).await.unwrap());
    }
    for id in &ids {
        wait_for(&q, *id, JobState::Succeeded).await;
    }
    assert_eq!(
        peak.load(Ordering::SeqCst),
        2,
        "never more than `concurrency` at once"
    );

    let long = q.enqueue_json("default", "work", &60_000u64).await.unwrap();
    wait_for(&q, long, JobState::Running).await;
    assert_eq!(q.cancel(long).await.unwrap(), JobState::Cancelled);
    // The heartbeat (every lease/3 = 200 ms) tells the worker, which stops the handler.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        current.load(Ordering::SeqCst),
        0,
        "the cancelled handler was stopped"
    );
    assert_eq!(q.status(long).await.unwrap().state, JobState::Cancelled);
    stop.send(true).unwrap();
    running.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_hands_unfinished_jobs_back() {
    let q = queue();
    let mut worker = Worker::new(
        q.clone(),
        WorkerOptions {
            shutdown_grace: Duration::from_millis(200),
            ..options()
        },
    );
    worker.register("stuck", |_, _: serde_json::Value| async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok(None)
    });
    let (stop, stop_rx) = watch::channel(false);
    let running = tokio::spawn(worker.run(stop_rx));
    // Its only attempt: handing it back must not spend it (it would go to dead letters).
    let mut job = NewJob::new("default", "stuck", json!(null));
    job.options.max_attempts = Some(1);
    let id = q.enqueue(job).await.unwrap();
    wait_for(&q, id, JobState::Running).await;
    stop.send(true).unwrap();
    let report = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("shutdown finishes after the grace period")
        .unwrap();
    assert_eq!(report.released, 1);
    assert_eq!(report.failed, 0);
    let status = q.status(id).await.unwrap();
    assert_eq!(status.state, JobState::Queued, "{status:?}");
    assert_eq!(status.attempts, 0, "the interrupted attempt is not counted");
    // Another worker picks it up at once.
    let job = q
        .reserve(&zeroscale_core::queue::ReserveOptions {
            queues: vec!["default".into()],
            lease: Duration::from_secs(5),
        })
        .await
        .unwrap()
        .expect("handed back");
    assert_eq!(job.id, id);
    assert_eq!(job.attempt, 1);
}

/// A handler knows which attempt is its last, so it can settle before the job goes to
/// dead letters.
#[tokio::test]
async fn handlers_see_their_last_attempt() {
    let q = queue();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut worker = Worker::new(q.clone(), options());
    let record = Arc::clone(&seen);
    worker.register("fails", move |ctx, _: serde_json::Value| {
        let record = Arc::clone(&record);
        async move {
            record
                .lock()
                .unwrap()
                .push((ctx.attempt, ctx.max_attempts, ctx.is_last_attempt()));
            Err(zeroscale_core::Error::unavailable("always"))
        }
    });
    let (stop, stop_rx) = watch::channel(false);
    let running = tokio::spawn(worker.run(stop_rx));
    let id = q
        .enqueue(NewJob::new("default", "fails", json!({})))
        .await
        .unwrap();
    wait_for(&q, id, JobState::Dead).await;
    stop.send(true).unwrap();
    running.await.unwrap();
    assert_eq!(*seen.lock().unwrap(), [(1, 2, false), (2, 2, true)]);
}

/// The runtime acts on the kind of a handler's error: a permanent one (bad input) sends
/// the job to dead letters at its first attempt, and the task's dead-letter hook runs with
/// the payload and the error; a retriable one retries.
#[tokio::test]
async fn permanent_errors_dead_letter_at_once_and_run_the_hook() {
    let q = queue();
    let attempts = Arc::new(AtomicUsize::new(0));
    let hooked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut worker = Worker::new(q.clone(), options());
    let counter = Arc::clone(&attempts);
    worker.register("bad", move |_, _: serde_json::Value| {
        let counter = Arc::clone(&counter);
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            Err(zeroscale_core::Error::invalid_input(
                "this payload can never work",
            ))
        }
    });
    let record = Arc::clone(&hooked);
    worker.on_dead("bad", move |payload: serde_json::Value, error: String| {
        let record = Arc::clone(&record);
        async move {
            record.lock().unwrap().push((payload, error));
        }
    });
    let (stop, stop_rx) = watch::channel(false);
    let running = tokio::spawn(worker.run(stop_rx));
    let id = q
        .enqueue(NewJob::new("default", "bad", json!({"n": 7})))
        .await
        .unwrap();
    let status = wait_for(&q, id, JobState::Dead).await;
    // The hook runs right after the nack; give it a moment.
    for _ in 0..50 {
        if !hooked.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(true).unwrap();
    running.await.unwrap();
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        1,
        "no retry of a permanent error"
    );
    assert_eq!(status.attempts, 1);
    let hooked = hooked.lock().unwrap();
    assert_eq!(hooked.len(), 1, "{hooked:?}");
    assert_eq!(hooked[0].0, json!({"n": 7}));
    assert!(hooked[0].1.contains("can never work"), "{:?}", hooked[0].1);
}

/// A rate-limited handler's `Retry-After` decides when the job runs again.
#[tokio::test]
async fn rate_limited_handlers_retry_after_what_the_limiter_said() {
    let q = queue();
    let mut worker = Worker::new(q.clone(), options());
    worker.register("limited", |_, _: serde_json::Value| async move {
        Err(zeroscale_core::Error::rate_limited(
            "the provider is busy",
            Some(Duration::from_secs(3600)),
        ))
    });
    let (stop, stop_rx) = watch::channel(false);
    let running = tokio::spawn(worker.run(stop_rx));
    let id = q
        .enqueue(NewJob::new("default", "limited", json!({})))
        .await
        .unwrap();
    let status = wait_for(&q, id, JobState::Failed).await;
    stop.send(true).unwrap();
    running.await.unwrap();
    let wait = status.run_at - chrono::Utc::now();
    assert!(
        wait > chrono::Duration::minutes(55),
        "retry at {} is sooner than the hour asked for",
        status.run_at
    );
}

/// Free slots are filled in one reservation, and acks that pile up while one is on its
/// way go together; every job is still acked once, and counted once the ack is confirmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reservations_and_acks_go_in_batches() {
    let counting = Arc::new(Counting::on(queue()));
    let q: Arc<dyn Queue> = counting.clone();
    let mut ids = Vec::new();
    for n in 0..40 {
        ids.push(
            q.enqueue_json("default", "noop", &json!({"n": n}))
                .await
                .unwrap(),
        );
    }
    let mut worker = Worker::new(
        q.clone(),
        WorkerOptions {
            concurrency: 8,
            ..options()
        },
    );
    worker.register("noop", |_ctx, _payload: serde_json::Value| async {
        Ok(None)
    });
    let (stop, stop_rx) = watch::channel(false);
    let running = tokio::spawn(worker.run(stop_rx));
    for id in &ids {
        wait_for(&q, *id, JobState::Succeeded).await;
    }
    stop.send(true).unwrap();
    let report = running.await.unwrap();
    assert_eq!(report.succeeded, 40);
    let reserved = counting.reserved.lock().unwrap().clone();
    let acked = counting.acked.lock().unwrap().clone();
    assert_eq!(reserved.iter().sum::<usize>(), 40, "{reserved:?}");
    assert_eq!(acked.iter().sum::<usize>(), 40, "{acked:?}");
    assert!(
        reserved.iter().any(|&n| n > 1),
        "free slots were filled one at a time: {reserved:?}"
    );
    assert!(
        acked.len() < 40 && acked.iter().any(|&n| n > 1),
        "acks were sent one at a time: {acked:?}"
    );
}

/// A queue that cannot be reached for a moment (Redis restarting) fails acks and lease
/// renewals; a job that finished meanwhile is acked once the queue answers, within its
/// lease, and a running one keeps going: neither runs a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_queue_outage_does_not_run_jobs_twice() {
    let counting = Arc::new(Counting::on(queue()));
    let q: Arc<dyn Queue> = counting.clone();
    let runs = Arc::new(AtomicUsize::new(0));
    let mut worker = Worker::new(q.clone(), options());
    worker.register("slow", {
        let runs = runs.clone();
        move |_ctx, ms: u64| {
            let runs = runs.clone();
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok(None)
            }
        }
    });
    let (stop, stop_rx) = watch::channel(false);
    let running = tokio::spawn(worker.run(stop_rx));
    // A heartbeat fails while a job runs (one every 200 ms of its 600 ms lease): the
    // handler goes on, and the next heartbeat renews the lease.
    let long = q.enqueue_json("default", "slow", &500u64).await.unwrap();
    wait_for(&q, long, JobState::Running).await;
    counting.unreachable_for.store(1, Ordering::SeqCst);
    let status = wait_for(&q, long, JobState::Succeeded).await;
    assert_eq!(status.attempts, 1, "the job ran again: {status:?}");
    assert_eq!(counting.failed_calls.load(Ordering::SeqCst), 1);
    // A finished job's ack fails twice: it is sent again, within the lease.
    counting.unreachable_for.store(2, Ordering::SeqCst);
    let short = q.enqueue_json("default", "slow", &10u64).await.unwrap();
    let status = wait_for(&q, short, JobState::Succeeded).await;
    assert_eq!(status.attempts, 1, "the job ran again: {status:?}");
    stop.send(true).unwrap();
    let report = running.await.unwrap();
    assert_eq!(counting.failed_calls.load(Ordering::SeqCst), 3);
    assert_eq!(runs.load(Ordering::SeqCst), 2, "a handler ran twice");
    assert_eq!(report.succeeded, 2, "{report:?}");
}
