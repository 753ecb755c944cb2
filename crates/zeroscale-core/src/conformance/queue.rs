//! The queue conformance suite: what every [`Queue`] backend must do.
//!
//! The backend under test must use a short base backoff (the checks wait for retries):
//! at most 200 ms.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

pub use super::queue_origin::job_origin;
use super::sleep;
use crate::error::Error;
use crate::queue::{
    JobId, JobState, NackOptions, NackOutcome, NewJob, PageOptions, PortableJob, Progress, Queue,
    ReserveOptions,
};

fn reserve_opts(queue: &str, lease: Duration) -> ReserveOptions {
    ReserveOptions {
        queues: vec![queue.to_owned()],
        lease,
    }
}

/// Reserves from `queue`, polling for up to `within`.
async fn reserve_within(
    queue: &dyn Queue,
    name: &str,
    lease: Duration,
    within: Duration,
) -> Option<crate::queue::ReservedJob> {
    let start = std::time::Instant::now();
    loop {
        if let Some(job) = queue
            .reserve(&reserve_opts(name, lease))
            .await
            .expect("reserve")
        {
            return Some(job);
        }
        if start.elapsed() >= within {
            return None;
        }
        sleep(Duration::from_millis(20)).await;
    }
}

/// One `#[tokio::test]` per check for one backend, in a module named after it (as
/// [`storage_conformance!`](crate::storage_conformance) does): a failure names its check,
/// the others still run, and `cargo test <backend>::<check>` runs one alone.
///
/// `$make` is an async fn taking the check's name and returning `Option<Arc<dyn Queue>>`
/// (`None`: the engine is not running and this is not CI, so the check is skipped); queue
/// names in each check start with the check's name. The calling crate needs `tokio`.
#[macro_export]
macro_rules! queue_conformance {
    ($backend:ident, $make:path) => {
        mod $backend {
            #[allow(unused_imports)]
            use super::*;
            $crate::queue_conformance!(@checks $make;
                enqueue_reserve_ack nack_retries_with_backoff max_attempts_dead_letter_requeue
                give_up_dead_letters_at_once lease_expiry_redelivers
                extend_lease_prevents_redelivery delayed_jobs_wait priority_then_fifo
                idempotency_key cancel progress_and_status stale_lease_is_conflict
                queues_are_separate stats_and_list batches export_import
                release_keeps_the_attempt enqueue_many_all_or_none job_origin);

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn unknown_job_is_not_found() {
                let Some(queue) = $make("unknown_job_is_not_found").await else {
                    return;
                };
                $crate::conformance::queue::unknown_job_is_not_found(queue.as_ref()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_consumers() {
                let Some(queue) = $make("concurrent_consumers").await else {
                    return;
                };
                $crate::conformance::queue::concurrent_consumers(
                    queue,
                    "concurrent_consumers",
                    8,
                    2_000,
                    |f| async move { tokio::spawn(f).await.expect("consumer panicked") },
                )
                .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn health() {
                let Some(queue) = $make("health").await else {
                    return;
                };
                queue.health().await.expect("health");
            }
        }
    };
    (@checks $make:path; $($check:ident)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $check() {
                let Some(queue) = $make(stringify!($check)).await else {
                    return;
                };
                $crate::conformance::queue::$check(queue.as_ref(), stringify!($check)).await;
            }
        )*
    };
}

/// Runs every check one after the other; queue names start with `prefix` (unique per
/// run). Backends' tests use [`queue_conformance!`](crate::queue_conformance) instead.
pub async fn run_all(queue: &dyn Queue, prefix: &str) {
    enqueue_reserve_ack(queue, prefix).await;
    unknown_job_is_not_found(queue).await;
    nack_retries_with_backoff(queue, prefix).await;
    max_attempts_dead_letter_requeue(queue, prefix).await;
    give_up_dead_letters_at_once(queue, prefix).await;
    lease_expiry_redelivers(queue, prefix).await;
    extend_lease_prevents_redelivery(queue, prefix).await;
    delayed_jobs_wait(queue, prefix).await;
    priority_then_fifo(queue, prefix).await;
    idempotency_key(queue, prefix).await;
    cancel(queue, prefix).await;
    progress_and_status(queue, prefix).await;
    stale_lease_is_conflict(queue, prefix).await;
    queues_are_separate(queue, prefix).await;
    stats_and_list(queue, prefix).await;
    batches(queue, prefix).await;
    export_import(queue, prefix).await;
    release_keeps_the_attempt(queue, prefix).await;
    enqueue_many_all_or_none(queue, prefix).await;
    job_origin(queue, prefix).await;
}

/// `reserve_many` hands out jobs in `reserve`'s order (priority first, across queues),
/// each under its own working lease, never one twice; `ack_many` answers per lease.
pub async fn batches(queue: &dyn Queue, prefix: &str) {
    let backend = queue.backend().to_owned();
    let (a, b) = (format!("{prefix}-batch-a"), format!("{prefix}-batch-b"));
    for (q, task, priority) in [
        (&a, "a-low", -1),
        (&b, "b-high", 5),
        (&a, "a-mid-1", 0),
        (&a, "a-mid-2", 0),
        (&b, "b-mid", 0),
    ] {
        let mut job = NewJob::new(q, task, json!({"task": task}));
        job.options.priority = priority;
        queue.enqueue(job).await.unwrap();
    }
    let opts = ReserveOptions {
        queues: vec![a.clone(), b.clone()],
        lease: Duration::from_secs(30),
    };
    assert!(
        queue.reserve_many(&opts, 0).await.unwrap().is_empty(),
        "{backend}: max 0"
    );
    let first = queue.reserve_many(&opts, 3).await.unwrap();
    let tasks: Vec<_> = first.iter().map(|j| j.task.as_str()).collect();
    assert_eq!(tasks.len(), 3, "{backend}: {tasks:?}");
    assert_eq!(tasks[0], "b-high", "{backend}: priority first");
    assert!(
        tasks[1..].iter().all(|t| t.contains("mid")),
        "{backend}: then the middle priority: {tasks:?}"
    );
    for job in &first {
        assert_eq!(job.payload, json!({"task": job.task}), "{backend}");
        assert_eq!(job.attempt, 1, "{backend}");
        let state = queue.status(job.id).await.unwrap().state;
        assert_eq!(state, JobState::Running, "{backend}");
        queue
            .extend_lease(&job.lease, Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| panic!("{backend}: each lease works on its own: {e}"));
    }
    let rest = queue.reserve_many(&opts, 10).await.unwrap();
    assert_eq!(rest.len(), 2, "{backend}: only what is left");
    assert_eq!(rest[1].task, "a-low", "{backend}");
    assert!(
        queue.reserve_many(&opts, 10).await.unwrap().is_empty(),
        "{backend}"
    );

    // Acks in one call: each answered on its own; a stale lease does not stop the rest.
    let mut stale = first[1].lease.clone();
    stale.token = "not-the-token".into();
    let done = vec![
        (first[0].lease.clone(), Some(json!({"ok": 0}))),
        (stale, None),
        (first[2].lease.clone(), Some(json!({"ok": 2}))),
    ];
    let results = queue.ack_many(&done).await;
    assert_eq!(results.len(), 3, "{backend}");
    assert!(
        results[0].is_ok() && results[2].is_ok(),
        "{backend}: {results:?}"
    );
    assert!(
        matches!(results[1], Err(Error::Conflict { .. })),
        "{backend}: {results:?}"
    );
    assert_eq!(
        queue.status(first[2].id).await.unwrap().result,
        Some(json!({"ok": 2})),
        "{backend}"
    );
    assert_eq!(
        queue.status(first[1].id).await.unwrap().state,
        JobState::Running,
        "{backend}: the stale ack changed nothing"
    );
    assert!(queue.ack_many(&[]).await.is_empty(), "{backend}");
    let leftover: Vec<_> = std::iter::once(first[1].lease.clone())
        .chain(rest.iter().map(|j| j.lease.clone()))
        .map(|lease| (lease, None))
        .collect();
    assert!(
        queue.ack_many(&leftover).await.iter().all(Result::is_ok),
        "{backend}"
    );
}

/// Per-state counts and listing by state.
pub async fn stats_and_list(queue: &dyn Queue, prefix: &str) {
    let backend = queue.backend().to_owned();
    let name = format!("{prefix}-stats");
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(
            queue
                .enqueue(NewJob::new(&name, "t", json!({"i": i})))
                .await
                .unwrap(),
        );
    }
    let mut later = NewJob::new(&name, "t", json!(null));
    later.options.delay = Some(Duration::from_secs(60));
    let scheduled = queue.enqueue(later).await.unwrap();
    let job = reserve_within(queue, &name, Duration::from_secs(30), Duration::ZERO)
        .await
        .unwrap();
    queue.ack(&job.lease, None).await.unwrap();
    let job = reserve_within(queue, &name, Duration::from_secs(30), Duration::ZERO)
        .await
        .unwrap();
    let stats = queue.stats(&name).await.unwrap();
    assert_eq!(
        (
            stats.queued,
            stats.scheduled,
            stats.running,
            stats.succeeded
        ),
        (2, 1, 1, 1),
        "{backend}: {stats:?}"
    );
    let all = queue.list(&name, None, Default::default()).await.unwrap();
    assert_eq!(all.len(), 5, "{backend}");
    assert!(
        all.windows(2).all(|w| w[0].id < w[1].id),
        "{backend}: oldest first"
    );
    let queued = queue
        .list(&name, Some(JobState::Queued), Default::default())
        .await
        .unwrap();
    assert_eq!(queued.len(), 2, "{backend}");
    let page = queue
        .list(
            &name,
            None,
            crate::queue::PageOptions {
                limit: Some(2),
                after: Some(all[1].id),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        page.iter().map(|j| j.id).collect::<Vec<_>>(),
        [all[2].id, all[3].id],
        "{backend}"
    );
    queue.ack(&job.lease, None).await.unwrap();
    queue.cancel(scheduled).await.unwrap();
    let _ = ids;
}

/// A job goes queued → running → succeeded, with its payload and result intact.
pub async fn enqueue_reserve_ack(queue: &dyn Queue, prefix: &str) {
    let backend = queue.backend().to_owned();
    let name = format!("{prefix}-basic");
    let id = queue
        .enqueue(NewJob::new(&name, "echo", json!({"n": 1})))
        .await
        .unwrap_or_else(|e| panic!("{backend}: enqueue failed: {e}"));
    let status = queue.status(id).await.expect("status");
    assert_eq!(status.state, JobState::Queued, "{backend}");
    assert_eq!(
        (status.queue.as_str(), status.task.as_str()),
        (name.as_str(), "echo")
    );
    assert_eq!(status.attempts, 0, "{backend}");
    let job = queue
        .reserve(&reserve_opts(&name, Duration::from_secs(30)))
        .await
        .expect("reserve")
        .expect("a job is due");
    assert_eq!(job.id, id, "{backend}: reserved another job");
    assert_eq!(job.payload, json!({"n": 1}), "{backend}: payload changed");
    assert_eq!(job.task, "echo");
    assert_eq!(job.attempt, 1, "{backend}: first attempt is not 1");
    assert_eq!(
        queue.status(id).await.unwrap().state,
        JobState::Running,
        "{backend}"
    );
    queue
        .ack(&job.lease, Some(json!({"ok": true})))
        .await
        .expect("ack");
    let status = queue.status(id).await.expect("status");
    assert_eq!(status.state, JobState::Succeeded, "{backend}");
    assert_eq!(
        status.result,
        Some(json!({"ok": true})),
        "{backend}: result lost"
    );
    assert!(status.finished_at.is_some(), "{backend}: no finished_at");
    assert!(
        queue
            .reserve(&reserve_opts(&name, Duration::from_secs(30)))
            .await
            .unwrap()
            .is_none(),
        "{backend}: acked job came back"
    );
}

/// Status of an id that was never enqueued is `NotFound`; so is cancelling it.
pub async fn unknown_job_is_not_found(queue: &dyn Queue) {
    let backend = queue.backend().to_owned();
    let err = queue
        .status(JobId::new())
        .await
        .expect_err("status of an unknown job");
    assert!(
        matches!(err, Error::NotFound { .. }),
        "{backend}: gave {err}"
    );
    let err = queue
        .cancel(JobId::new())
        .await
        .expect_err("cancel of an unknown job");
    assert!(
        matches!(err, Error::NotFound { .. }),
        "{backend}: gave {err}"
    );
}

/// A nack schedules a retry after a backoff; the job comes back as attempt 2.
pub async fn nack_retries_with_backoff(queue: &dyn Queue, prefix: &str) {
    let backend = queue.backend().to_owned();
    let name = format!("{prefix}-retry");
    let id = queue
        .enqueue(NewJob::new(&name, "flaky", json!(null)))
        .await
        .unwrap();
    let lease = Duration::from_secs(30);
    let job = reserve_within(queue, &name, lease, Duration::ZERO)
        .await
        .expect("due");
    let outcome = queue
        .nack(
            &job.lease,
            NackOptions {
                error: "boom".into(),
                retry_after: None,
                give_up: false,
            },
        )
        .await
        .expect("nack");
    assert!(
        matches!(outcome, NackOutcome::Retrying { .. }),
        "{backend}: {outcome:?}"
    );
    let status = queue.status(id).await.unwrap();
    assert!(
        matches!(status.state, JobState::Failed | JobState::Scheduled),
        "{backend}: {:?}",
        status.state
    );
    assert_eq!(status.last_error.as_deref(), Some("boom"), "{backend}");
    let again = reserve_within(queue, &name, lease, Duration::from_secs(5))
        .await
        .unwrap_or_else(|| panic!("{backend}: the retry never came"));
    assert_eq!(again.id, id, "{backend}");
    assert_eq!(again.attempt, 2, "{backend}: attempts not counted");
    queue.ack(&again.lease, None).await.unwrap();

    // An explicit retry-after is honoured: not before it.
    let id = queue
        .enqueue(NewJob::new(&name, "flaky", json!(null)))
        .await
        .unwrap();
    let job = reserve_within(queue, &name, lease, Duration::ZERO)
        .await
        .unwrap();
    queue
        .nack(
            &job.lease,
            NackOptions {
                error: "later".into(),
                retry_after: Some(Duration::from_millis(800)),
                give_up: false,
            },
        )
        .await
        .unwrap();
    assert!(
        queue
            .reserve(&reserve_opts(&name, lease))
            .await
            .unwrap()
            .is_none(),
        "{backend}: retry-after ignored"
    );
    let again = reserve_within(queue, &name, lease, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(again.id, id);
    queue.ack(&again.lease, None).await.unwrap();
}

/// A nack that gives up sends the job to dead letters whatever attempts it has left.
pub async fn give_up_dead_letters_at_once(queue: &dyn Queue, prefix: &str) {
    let backend = queue.backend().to_owned();
    let name = format!("{prefix}-give-up");
    let mut job = NewJob::new(&name, "hopeless", json!({}));
    job.options.max_attempts = Some(5);
    let id = queue.enqueue(job).await.unwrap();
    let job = reserve_within(
        queue,
        &name,
        Duration::from_secs(30),
        Duration::from_secs(5),
    )
    .await
    .unwrap_or_else(|| panic!("{backend}: the job never came"));
    let outcome = queue
        .nack(
            &job.lease,
            NackOptions {
                error: "bad input".into(),
                retry_after: None,
                give_up: true,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        outcome,
        NackOutcome::Dead,
        "{backend}: give_up did not dead-letter"
    );
    let status = queue.status(id).await.unwrap();
    assert_eq!(status.state, JobState::Dead, "{backend}");
    assert_eq!(status.attempts, 1, "{backend}");
    assert_eq!(status.last_error.as_deref(), Some("bad input"), "{backend}");
    queue.purge_dead(&name).await.unwrap();
}

/// After the last attempt a job is dead, listed with its error, and can be requeued
/// with fresh attempts; purging removes dead jobs.
pub async fn max_attempts_dead_letter_requeue(queue: &dyn Queue, prefix: &str) {
    let backend = queue.backend().to_owned();
    let name = format!("{prefix}-dead");
    let lease = Duration::from_secs(30);
    let mut job = NewJob::new(&name, "doomed", json!({"x": 1}));
    job.options.max_attempts = Some(2);
    let id = queue.enqueue(job).await.unwrap();
    for attempt in 1..=2 {
        let job = reserve_within(queue, &name, lease, Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("{backend}: attempt {attempt} never came"));
        assert_eq!(job.attempt, attempt, "{backend}");
        let outcome = queue
            .nack(
                &job.lease,
                NackOptions {
                    error: format!("fail {attempt}"),
                    retry_after: None,
                    give_up: false,
                },
            )
            .await
            .unwrap();
        if attempt == 2 {
            assert_eq!(outcome, NackOutcome::Dead, "{backend}");
        }
    }
    let status = queue.status(id).await.unwrap();
    assert_eq!(status.state, JobState::Dead, "{backend}");
    assert_eq!(status.last_error.as_deref(), Some("fail 2"), "{backend}");
    let dead = queue.list_dead(&name, Default::default()).await.unwrap();
    assert_eq!(
        dead.iter().map(|j| j.id).collect::<Vec<_>>(),
        [id],
        "{backend}"
    );
    assert!(
        reserve_within(queue, &name, lease, Duration::from_millis(300))
            .await
            .is_none()
    );

    queue.requeue_dead(id).await.expect("requeue");
    assert!(
        queue
            .list_dead(&name, Default::default())
            .await
            .unwrap()
            .is_empty()
    );
    let job = reserve_within(queue, &name, lease, Duration::from_secs(5))
        .await
        .expect("requeued");
    assert_eq!(job.id, id);
    assert_eq!(job.attempt, 1, "{backend}: requeue gives fresh attempts");
    queue
        .nack(
            &job.lease,
            NackOptions {
                error: "again".into(),
                retry_after: None,
                give_up: false,
            },
        )
        .await
        .unwrap();
    let job = reserve_within(queue, &name, lease, Duration::from_secs(5))
        .await
        .unwrap();
    queue
        .nack(
            &job.lease,
            NackOptions {
                error: "again".into(),
                retry_after: None,
                give_up: false,
            },
        )
        .await
        .unwrap();
    assert_eq!(queue.purge_dead(&name).await.unwrap(), 1, "{backend}");
    assert!(
        queue
            .list_dead(&name, Default::default())
            .await
            .unwrap()
            .is_empty()
    );
    let err = queue
        .requeue_dead(JobId::new())
        .await
        .expect_err("not dead");
    assert!(matches!(err, Error::NotFound { .. }), "{backend}: {err}");
}

/// A job whose lease runs out is handed to another consumer; the first holder's lease
/// no longer works.
pub async fn lease_expiry_redelivers(queue: &dyn Queue, prefix: &str) {
    let backend = queue.backend().to_owned();
    let name = format!("{prefix}-lease");
    let id = queue
        .enqueue(NewJob::new(&name, "slow", json!(null)))
        .await
        .unwrap();
    let first = reserve_within(queue, &name, Duration::from_millis(300), Duration::ZERO)
        .await
        .unwrap();
    assert!(
        queue
            .reserve(&reserve_opts(&name, Duration::from_secs(30)))
            .await
            .unwrap()
            .is_none(),
        "{backend}: a leased job was handed out twice"
    );
    let second = reserve_within(
        queue,
        &name,
        Duration::from_secs(30),
        Duration::from_secs(5),
    )
    .await
    .unwrap_or_else(|| panic!("{backend}: expired lease not redelivered"));
    assert_eq!(second.id, id);
    assert_eq!(
        second.attempt, 2,
        "{backend}: a lost lease counts as an attempt"
    );
    let err = queue
        .ack(&first.lease, None)
        .await
        .expect_err("stale lease");
    assert!(matches!(err, Error::Conflict { .. }), "{backend}: {err}");
    queue.ack(&second.lease, None).await.expect("current lease");
}

/// Extending a lease keeps the job from being redelivered.
pub async fn extend_lease_prevents_redelivery(queue: &dyn Queue, prefix: &str) {
    let backend = queue.backend().to_owned();
    let name = format!("{prefix}-extend");
    queue
        .enqueue(NewJob::new(&name, "long", json!(null)))
        .await
        .unwrap();
    let job = reserve_within(queue, &name, Duration::from_millis(400), Duration::ZERO)
        .await
        .unwrap();
    for _ in 0..4 {
        sleep(Duration::from_millis(200)).await;
        let state = queue
            .extend_lease(&job.lease, Duration::from_millis(400))
            .await
            .expect("extend");
        assert!(!state.cancelled, "{backend}");
        assert!(
            queue
                .reserve(&reserve_opts(&name, Duration::from_secs(30)))
                .await
                .unwrap()
                .is_none(),
            "{backend}: redelivered despite extended lease"
        );
    }
    queue
        .ack(&job.lease, None)
        .await
        .expect("ack after extensions");
}

/// A delayed job is not handed out before its time.
pub async fn delayed_jobs_wait(queue: &dyn Queue, prefix: &str) {
    let backend = queue.backend().to_owned();
    let name = format!("{prefix}-delay");
    let mut job = NewJob::new(&name, "later", json!(null));
    job.options.delay = Some(Duration::from_millis(700));
    let id = queue.enqueue(job).await.unwrap();
    assert_eq!(
        queue.status(id).await.unwrap().state,
        JobState::Scheduled,
        "{backend}"
    );
    assert!(
        queue
            .reserve(&reserve_opts(&name, Duration::from_secs(30)))
            .await
            .unwrap()
            .is_none(),
        "{backend}: delayed job handed out early"
    );
    let job = reserve_within(
        queue,
        &name,
        Duration::from_secs(30),
        Duration::from_secs(5),
    )
    .await
    .unwrap_or_else(|| panic!("{backend}: delayed job never came"));
    assert_eq!(job.id, id);
    queue.ack(&job.lease, None).await.unwrap();
}

/// Higher priority first; FIFO within a priority.
pub async fn priority_then_fifo(queue: &dyn Queue, prefix: &str) {
    let backend = queue.backend().to_owned();
    let name = format!("{prefix}-priority");
    let mut ids = Vec::new();
    for (label, priority) in [
        ("low-1", -5),
        ("mid-1", 0),
        ("high-1", 10),
        ("mid-2", 0),
        ("high-2", 10),
        ("low-2", -5),
    ] {
        let mut job = NewJob::new(&name, label, json!(null));
        job.options.priority = priority;
        ids.push(queue.enqueue(job).await.unwrap());
    }
    let mut order = Vec::new();
    while let Some(job) = queue
        .reserve(&reserve_opts(&name, Duration::from_secs(30)))
        .await
        .unwrap()
    {
        order.push(job.task.clone());
        queue.ack(&job.lease, None).await.unwrap();
    }
    assert_eq!(
        order,
        ["high-1", "high-2", "mid-1", "mid-2", "low-1", "low-2"],
        "{backend}"
    );
    let mut job = NewJob::new(&name, "x", json!(null));
    job.options.priority = 1_000_000;
    let err = queue.enqueue(job).await.expect_err("priority out of range");
    assert!(
        matches!(err, Error::InvalidInput { .. }),
        "{backend}: {err}"
    );
}

/// A second enqueue with the same idempotency key, while the first job is unfinished,
/// returns the first id; once it finished, the key can be used again.
pub async fn idempotency_key(queue: &dyn Queue, prefix: &str) {
    let backend = queue.backend().to_owned();
    let name = format!("{prefix}-idem");
    let job = || {
        let mut job = NewJob::new(&name, "once", json!(null));
        job.options.idempotency_key = Some("order-42".into());
        job
    };
    let first = queue.enqueue(job()).await.unwrap();
    assert_eq!(
        queue.enqueue(job()).await.unwrap(),
        first,
        "{backend}: duplicate job"
    );
    let reserved = reserve_within(queue, &name, Duration::from_secs(30), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(
        queue.enqueue(job()).await.unwrap(),
        first,
        "{backend}: duplicate while running"
    );
    assert!(
        queue
            .reserve(&reserve_opts(&name, Duration::from_secs(30)))
            .await
            .unwrap()
            .is_none()
    );
    queue.ack(&reserved.lease, None).await.unwrap();
    let next = queue.enqueue(job()).await.unwrap();
    assert_ne!(
        next, first,
        "{backend}: key not released after the job finished"
    );
    let reserved = reserve_within(queue, &name, Duration::from_secs(30), Duration::ZERO)
        .await
        .unwrap();
    queue.ack(&reserved.lease, None).await.unwrap();
}

/// Cancelled queued jobs never run; a running job sees the cancellation at its next
/// lease extension; finished jobs cannot be cancelled.
pub async fn cancel(queue: &dyn Queue, prefix: &str) {
    let backend = queue.backend().to_owned();
    let name = format!("{prefix}-cancel");
    let queued = queue
        .enqueue(NewJob::new(&name, "never", json!(null)))
        .await
        .unwrap();
    assert_eq!(
        queue.cancel(queued).await.unwrap(),
        JobState::Cancelled,
        "{backend}"
    );
    let mut delayed = NewJob::new(&name, "never-delayed", json!(null));
    delayed.options.delay = Some(Duration::from_millis(100));
    let delayed = queue.enqueue(delayed).await.unwrap();
    assert_eq!(
        queue.cancel(delayed).await.unwrap(),
        JobState::Cancelled,
        "{backend}"
    );
    sleep(Duration::from_millis(250)).await;
    assert!(
        queue
            .reserve(&reserve_opts(&name, Duration::from_secs(30)))
            .await
            .unwrap()
            .is_none(),
        "{backend}: a cancelled job ran"
    );

    let running = queue
        .enqueue(NewJob::new(&name, "stoppable", json!(null)))
        .await
        .unwrap();
    let job = reserve_within(queue, &name, Duration::from_secs(30), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(job.id, running);
    assert_eq!(
        queue.cancel(running).await.unwrap(),
        JobState::Cancelled,
        "{backend}"
    );
    let state = queue
        .extend_lease(&job.lease, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(state.cancelled, "{backend}: the handler is not told");
    assert_eq!(
        queue.status(running).await.unwrap().state,
        JobState::Cancelled
    );
    let err = queue
        .ack(&job.lease, None)
        .await
        .expect_err("ack after cancel");
    assert!(matches!(err, Error::Conflict { .. }), "{backend}: {err}");

    let done = queue
        .enqueue(NewJob::new(&name, "done", json!(null)))
        .await
        .unwrap();
    let job = reserve_within(queue, &name, Duration::from_secs(30), Duration::ZERO)
        .await
        .unwrap();
    queue.ack(&job.lease, None).await.unwrap();
    let err = queue.cancel(done).await.expect_err("finished");
    assert!(matches!(err, Error::Conflict { .. }), "{backend}: {err}");
}

/// Progress reports are kept; timestamps move.
pub async fn progress_and_status(queue: &dyn Queue, prefix: &str) {
    let backend = queue.backend().to_owned();
    let name = format!("{prefix}-progress");
    let id = queue
        .enqueue(NewJob::new(&name, "report", json!(null)))
        .await
        .unwrap();
    let created = queue.status(id).await.unwrap();
    let job = reserve_within(queue, &name, Duration::from_secs(30), Duration::ZERO)
        .await
        .unwrap();
    let progress = Progress {
        percent: 40,
        message: Some("resizing".into()),
    };
    queue
        .update_progress(&job.lease, progress.clone())
        .await
        .expect("progress");
    let status = queue.status(id).await.unwrap();
    assert_eq!(status.progress, Some(progress), "{backend}");
    assert!(status.updated_at >= created.updated_at, "{backend}");
    let err = queue
        .update_progress(
            &job.lease,
            Progress {
                percent: 101,
                message: None,
            },
        )
        .await
        .expect_err("over 100");
    assert!(
        matches!(err, Error::InvalidInput { .. }),
        "{backend}: {err}"
    );
    queue.ack(&job.lease, None).await.unwrap();
}

/// Acking with a lease that is no longer held is `Conflict`, never a silent success.
pub async fn stale_lease_is_conflict(queue: &dyn Queue, prefix: &str) {
    let backend = queue.backend().to_owned();
    let name = format!("{prefix}-stale");
    queue
        .enqueue(NewJob::new(&name, "t", json!(null)))
        .await
        .unwrap();
    let job = reserve_within(queue, &name, Duration::from_secs(30), Duration::ZERO)
        .await
        .unwrap();
    queue.ack(&job.lease, None).await.unwrap();
    let err = queue.ack(&job.lease, None).await.expect_err("double ack");
    assert!(matches!(err, Error::Conflict { .. }), "{backend}: {err}");
    let err = queue
        .nack(
            &job.lease,
            NackOptions {
                error: "x".into(),
                retry_after: None,
                give_up: false,
            },
        )
        .await
        .expect_err("nack after ack");
    assert!(matches!(err, Error::Conflict { .. }), "{backend}: {err}");
}

/// Jobs of one queue are not handed out from another.
pub async fn queues_are_separate(queue: &dyn Queue, prefix: &str) {
    let backend = queue.backend().to_owned();
    let a = format!("{prefix}-qa");
    let b = format!("{prefix}-qb");
    queue
        .enqueue(NewJob::new(&a, "in-a", json!(null)))
        .await
        .unwrap();
    assert!(
        queue
            .reserve(&reserve_opts(&b, Duration::from_secs(30)))
            .await
            .unwrap()
            .is_none(),
        "{backend}: a job crossed queues"
    );
    let both = ReserveOptions {
        queues: vec![b.clone(), a.clone()],
        lease: Duration::from_secs(30),
    };
    let job = queue
        .reserve(&both)
        .await
        .unwrap()
        .expect("from either queue");
    assert_eq!(job.queue, a);
    queue.ack(&job.lease, None).await.unwrap();
}

/// `consumers` tasks drain `jobs` jobs concurrently: every job is acked exactly once and
/// no job is held by two consumers at once while leased. `spawn` runs a future on the
/// caller's runtime and returns a handle to await.
pub async fn concurrent_consumers<S, H>(
    queue: Arc<dyn Queue>,
    prefix: &str,
    consumers: usize,
    jobs: usize,
    spawn: S,
) where
    S: Fn(futures::future::BoxFuture<'static, ()>) -> H,
    H: std::future::Future<Output = ()>,
{
    let backend = queue.backend().to_owned();
    let name = format!("{prefix}-crowd");
    let mut ids = HashSet::new();
    for i in 0..jobs {
        ids.insert(
            queue
                .enqueue(NewJob::new(&name, "count", json!({"i": i})))
                .await
                .unwrap(),
        );
    }
    let acked: Arc<Mutex<Vec<JobId>>> = Arc::default();
    let holding: Arc<Mutex<HashSet<JobId>>> = Arc::default();
    let mut handles = Vec::new();
    for _ in 0..consumers {
        let (queue, acked, holding, name) =
            (queue.clone(), acked.clone(), holding.clone(), name.clone());
        handles.push(spawn(Box::pin(async move {
            let opts = reserve_opts(&name, Duration::from_secs(60));
            let mut idle = 0;
            loop {
                match queue.reserve(&opts).await.expect("reserve") {
                    Some(job) => {
                        idle = 0;
                        // Held from reserve to ack: a second holder meanwhile fails here.
                        assert!(
                            holding.lock().unwrap().insert(job.id),
                            "job {} held twice",
                            job.id
                        );
                        queue.ack(&job.lease, None).await.expect("ack");
                        holding.lock().unwrap().remove(&job.id);
                        acked.lock().unwrap().push(job.id);
                    }
                    None => {
                        idle += 1;
                        if idle > 3 {
                            return;
                        }
                        sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        })));
    }
    for handle in handles {
        handle.await;
    }
    let acked = acked.lock().unwrap().clone();
    assert_eq!(
        acked.len(),
        jobs,
        "{backend}: {} acks for {jobs} jobs",
        acked.len()
    );
    let unique: HashSet<JobId> = acked.iter().copied().collect();
    assert_eq!(unique, ids, "{backend}: some job was acked twice or never");
}

/// Every job of a queue exports with its payload and key, in any state and page by page;
/// imported under the same ids (here moved to another queue with fresh ids, as one
/// backend cannot hold an id twice) each keeps its state, attempts, priority, run time,
/// error and key: a running one is queued again with its attempt counted, a dead one
/// can be requeued. A second import of an id changes nothing; finished jobs are refused.
pub async fn export_import(queue: &dyn Queue, prefix: &str) {
    let backend = queue.backend().to_owned();
    let src = format!("{prefix}-export");
    let dst = format!("{prefix}-import");
    let lease = Duration::from_secs(30);
    let mut later = NewJob::new(&src, "later", json!({}));
    later.options.delay = Some(Duration::from_secs(3600));
    let later = queue.enqueue(later).await.unwrap();
    // One plain job at a time, reserved (then failed, left running, given up, succeeded).
    let take = async |task: &str| {
        let id = queue
            .enqueue(NewJob::new(&src, task, json!({"task": task})))
            .await
            .unwrap();
        let job = queue
            .reserve(&reserve_opts(&src, lease))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{backend}: `{task}` was not reserved"));
        assert_eq!(job.id, id, "{backend}");
        job
    };
    let job = take("failed").await;
    let failed = job.id;
    let retry = NackOptions {
        error: "try later".into(),
        retry_after: Some(Duration::from_secs(3600)),
        give_up: false,
    };
    queue.nack(&job.lease, retry).await.unwrap();
    let running = take("running").await.id;
    let job = take("dead").await;
    let dead = job.id;
    let give_up = NackOptions {
        error: "hopeless".into(),
        retry_after: None,
        give_up: true,
    };
    queue.nack(&job.lease, give_up).await.unwrap();
    let job = take("done").await;
    let done = job.id;
    queue.ack(&job.lease, Some(json!("ok"))).await.unwrap();
    let mut keyed = NewJob::new(&src, "keyed", json!({"text": "héllo 🌍", "n": [1, 2]}));
    keyed.options.priority = 5;
    keyed.options.idempotency_key = Some("only-once".into());
    let keyed = queue.enqueue(keyed).await.unwrap();

    // Export two at a time.
    let mut exported: Vec<PortableJob> = Vec::new();
    loop {
        let page = queue
            .export(
                &src,
                PageOptions {
                    limit: Some(2),
                    after: exported.last().map(|j| j.status.id),
                },
            )
            .await
            .unwrap();
        assert!(page.len() <= 2, "{backend}: the page's limit");
        if page.is_empty() {
            break;
        }
        exported.extend(page);
    }
    let ids: Vec<JobId> = exported.iter().map(|j| j.status.id).collect();
    let mut want = vec![keyed, later, failed, running, dead, done];
    want.sort();
    assert_eq!(ids, want, "{backend}: every job, oldest first");
    let find = |id: JobId| exported.iter().find(|j| j.status.id == id).unwrap().clone();
    let k = find(keyed);
    assert_eq!(
        k.payload,
        json!({"text": "héllo 🌍", "n": [1, 2]}),
        "{backend}"
    );
    assert_eq!(k.idempotency_key.as_deref(), Some("only-once"), "{backend}");
    assert_eq!(k.status.priority, 5, "{backend}");
    assert_eq!(find(running).status.state, JobState::Running, "{backend}");
    assert_eq!(find(failed).status.state, JobState::Failed, "{backend}");
    assert_eq!(find(later).status.state, JobState::Scheduled, "{backend}");
    assert_eq!(find(dead).status.state, JobState::Dead, "{backend}");

    // A finished job is refused; an id already here changes nothing.
    let err = queue.import(find(done)).await.unwrap_err();
    assert_eq!(
        err.kind(),
        crate::ErrorKind::InvalidInput,
        "{backend}: {err}"
    );
    assert!(
        !queue.import(find(running)).await.unwrap(),
        "{backend}: an id already here was imported again"
    );
    assert_eq!(
        queue.status(running).await.unwrap().state,
        JobState::Running,
        "{backend}: a repeated import changed the job"
    );

    // Carry the unfinished and dead ones to `dst` under fresh ids.
    let mut moved = std::collections::HashMap::new();
    for id in [keyed, later, failed, running, dead] {
        let mut job = find(id);
        job.status.queue = dst.clone();
        job.status.id = JobId::new();
        moved.insert(id, job.status.id);
        assert!(queue.import(job.clone()).await.unwrap(), "{backend}");
        assert!(
            !queue.import(job).await.unwrap(),
            "{backend}: imported twice"
        );
    }
    let stats = queue.stats(&dst).await.unwrap();
    assert_eq!(
        (
            stats.queued,
            stats.scheduled,
            stats.failed,
            stats.running,
            stats.dead
        ),
        (2, 1, 1, 0, 1),
        "{backend}: {stats:?}"
    );
    let f = queue.status(moved[&failed]).await.unwrap();
    assert_eq!(
        (f.state, f.attempts, f.last_error.as_deref()),
        (JobState::Failed, 1, Some("try later")),
        "{backend}"
    );
    let was = find(failed).status.run_at;
    assert!(
        (f.run_at - was).num_milliseconds().abs() < 1000,
        "{backend}: the retry time moved from {was} to {}",
        f.run_at
    );
    let d = queue.status(moved[&dead]).await.unwrap();
    assert_eq!(
        (d.state, d.last_error.as_deref()),
        (JobState::Dead, Some("hopeless")),
        "{backend}"
    );
    // The key came along: enqueuing with it finds the imported job.
    let mut again = NewJob::new(&dst, "keyed", json!({}));
    again.options.idempotency_key = Some("only-once".into());
    assert_eq!(
        queue.enqueue(again).await.unwrap(),
        moved[&keyed],
        "{backend}: the idempotency key did not move"
    );
    // Priority first: the keyed job, then the one that was running, on its second attempt.
    let first = queue
        .reserve(&reserve_opts(&dst, lease))
        .await
        .unwrap()
        .expect("the keyed job");
    assert_eq!(
        (first.id, first.attempt, first.payload.clone()),
        (moved[&keyed], 1, k.payload.clone()),
        "{backend}"
    );
    let second = queue
        .reserve(&reserve_opts(&dst, lease))
        .await
        .unwrap()
        .expect("the job that was running");
    assert_eq!(
        (second.id, second.attempt, second.task.as_str()),
        (moved[&running], 2, "running"),
        "{backend}"
    );
    assert!(
        queue
            .reserve(&reserve_opts(&dst, lease))
            .await
            .unwrap()
            .is_none(),
        "{backend}: a scheduled or failed job ran early"
    );
    queue.ack(&first.lease, None).await.unwrap();
    queue.ack(&second.lease, None).await.unwrap();
    queue.requeue_dead(moved[&dead]).await.unwrap();
    let back = queue
        .reserve(&reserve_opts(&dst, lease))
        .await
        .unwrap()
        .expect("the requeued dead job");
    assert_eq!(back.id, moved[&dead], "{backend}");
    queue.ack(&back.lease, None).await.unwrap();
    for id in [later, failed, running, moved[&later], moved[&failed]] {
        let _ = queue.cancel(id).await;
    }
    queue.purge_dead(&src).await.unwrap();
}

/// `release` hands a held job back unfinished: queued again at once, ahead of jobs
/// enqueued after it, its attempt not counted (a job on its last attempt does not go to
/// dead letters); the released lease no longer works.
pub async fn release_keeps_the_attempt(queue: &dyn Queue, prefix: &str) {
    let backend = queue.backend().to_owned();
    let name = format!("{prefix}-release");
    let mut first = NewJob::new(&name, "t", json!(1));
    first.options.max_attempts = Some(1);
    let first = queue.enqueue(first).await.unwrap();
    let second = queue
        .enqueue(NewJob::new(&name, "t", json!(2)))
        .await
        .unwrap();
    let held = reserve_within(queue, &name, Duration::from_secs(30), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(held.id, first);
    assert_eq!(held.attempt, 1);
    queue.release(&held.lease).await.expect("release");
    let status = queue.status(first).await.unwrap();
    assert_eq!(status.state, JobState::Queued, "{backend}: {status:?}");
    assert_eq!(
        status.attempts, 0,
        "{backend}: a released attempt is not counted"
    );
    let err = queue
        .ack(&held.lease, None)
        .await
        .expect_err("ack after release");
    assert!(matches!(err, Error::Conflict { .. }), "{backend}: {err}");
    let err = queue.release(&held.lease).await.expect_err("release twice");
    assert!(matches!(err, Error::Conflict { .. }), "{backend}: {err}");
    // Back in its old place, and its one attempt still there to spend.
    let again = reserve_within(queue, &name, Duration::from_secs(30), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(again.id, first, "{backend}: a released job keeps its place");
    assert_eq!(again.attempt, 1);
    queue.ack(&again.lease, None).await.unwrap();
    let next = reserve_within(queue, &name, Duration::from_secs(30), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(next.id, second);
    queue.ack(&next.lease, None).await.unwrap();
}

/// `enqueue_many` adds a batch in order, each job as `enqueue` would (a key repeated in the
/// batch answers the first job's id; a delayed job waits); a bad job refuses the whole
/// batch, naming its place, and adds nothing; an empty batch adds nothing.
pub async fn enqueue_many_all_or_none(queue: &dyn Queue, prefix: &str) {
    let backend = queue.backend().to_owned();
    let name = format!("{prefix}-many");
    let keyed = |n: i64| {
        let mut job = NewJob::new(&name, "t", json!(n));
        job.options.idempotency_key = Some("once".into());
        job
    };
    let mut delayed = NewJob::new(&name, "t", json!(2));
    delayed.options.delay = Some(Duration::from_secs(3600));
    let ids = queue
        .enqueue_many(vec![
            NewJob::new(&name, "t", json!(0)),
            keyed(1),
            delayed,
            keyed(3),
            NewJob::new(&name, "t", json!(4)),
        ])
        .await
        .expect("enqueue_many");
    assert_eq!(ids.len(), 5, "{backend}: one id per job");
    assert_eq!(ids[3], ids[1], "{backend}: a key repeated in the batch");
    assert_eq!(
        queue.status(ids[2]).await.unwrap().state,
        JobState::Scheduled,
        "{backend}"
    );
    let stats = queue.stats(&name).await.unwrap();
    assert_eq!(
        (stats.queued, stats.scheduled),
        (3, 1),
        "{backend}: {stats:?}"
    );
    for (expected, payload) in [(ids[0], 0), (ids[1], 1), (ids[4], 4)] {
        let job = reserve_within(queue, &name, Duration::from_secs(30), Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(job.id, expected, "{backend}: batch order");
        assert_eq!(job.payload, json!(payload));
        queue.ack(&job.lease, None).await.unwrap();
    }

    let mut bad = NewJob::new(&name, "t", json!(null));
    bad.options.priority = 5_000;
    let err = queue
        .enqueue_many(vec![NewJob::new(&name, "t", json!(null)), bad])
        .await
        .expect_err("a bad job refuses the batch");
    assert!(
        matches!(&err, Error::InvalidInput { message } if message.contains("job 1")),
        "{backend}: {err}"
    );
    let too_many = (0..=crate::queue::driver::MAX_BATCH)
        .map(|_| NewJob::new(&name, "t", json!(null)))
        .collect();
    let err = queue
        .enqueue_many(too_many)
        .await
        .expect_err("too many jobs");
    assert!(
        matches!(err, Error::InvalidInput { .. }),
        "{backend}: {err}"
    );
    assert!(queue.enqueue_many(Vec::new()).await.unwrap().is_empty());
    let stats = queue.stats(&name).await.unwrap();
    assert_eq!(
        (stats.queued, stats.scheduled),
        (0, 1),
        "{backend}: a refused batch adds nothing: {stats:?}"
    );
}
