//! The queue conformance suite: what every [`Queue`] backend must do.

use std::time::Duration;

use serde_json::json;

use crate::error::Error;
use crate::queue::{JobId, JobState, NewJob, Queue, ReserveOptions};

/// Runs every check against `queue`, using queue names that start with `prefix`.
pub async fn run_all(queue: &dyn Queue, prefix: &str) {
    enqueue_reserve_ack(queue, prefix).await;
    unknown_job_is_not_found(queue).await;
}

/// A job goes queued → running → succeeded, with its payload and result intact.
pub async fn enqueue_reserve_ack(queue: &dyn Queue, prefix: &str) {
    let backend = queue.backend().to_owned();
    let name = format!("{prefix}-basic");
    let id = queue
        .enqueue(NewJob::new(&name, "echo", json!({"n": 1})))
        .await
        .unwrap_or_else(|e| panic!("{backend}: enqueue failed: {e}"));
    assert_eq!(
        queue.status(id).await.expect("status").state,
        JobState::Queued,
        "{backend}"
    );
    let opts = ReserveOptions {
        queues: vec![name.clone()],
        lease: Duration::from_secs(30),
    };
    let job = queue
        .reserve(&opts)
        .await
        .expect("reserve")
        .expect("a job is due");
    assert_eq!(job.id, id, "{backend}: reserved another job");
    assert_eq!(job.payload, json!({"n": 1}), "{backend}: payload changed");
    assert_eq!(job.attempt, 1, "{backend}: first attempt is not 1");
    assert_eq!(
        queue.status(id).await.expect("status").state,
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
    assert!(
        queue.reserve(&opts).await.expect("reserve").is_none(),
        "{backend}: acked job came back"
    );
}

/// Status of an id that was never enqueued is `NotFound`.
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
}
