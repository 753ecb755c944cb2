//! The queue conformance check for job origins: where a job came from travels with it.

use std::time::Duration;

use serde_json::json;

use crate::queue::{JobOrigin, JobState, NewJob, PageOptions, Queue, ReserveOptions};

/// A job's [`JobOrigin`] comes back with every reservation (also after a retry), in
/// `enqueue_many` batches, and through export and import; a job enqueued with none and no
/// origin source installed has an empty one; an origin past its limits is refused.
pub async fn job_origin(queue: &dyn Queue, prefix: &str) {
    let backend = queue.backend().to_owned();
    let name = format!("{prefix}-origin");
    let lease = ReserveOptions {
        queues: vec![name.clone()],
        lease: Duration::from_secs(30),
    };
    let mut origin = JobOrigin::with_request_id("req-abc.123").unwrap();
    origin
        .insert(
            JobOrigin::TRACEPARENT,
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .unwrap();
    let mut with = NewJob::new(&name, "with", json!(1));
    with.options.origin = origin.clone();
    let id = queue.enqueue(with).await.expect("enqueue");
    let job = queue.reserve(&lease).await.unwrap().expect("reserved");
    assert_eq!(
        (job.id, &job.origin),
        (id, &origin),
        "{backend}: the origin comes back"
    );
    let retry = crate::queue::NackOptions {
        error: "again".into(),
        retry_after: Some(Duration::ZERO),
        give_up: false,
    };
    queue.nack(&job.lease, retry).await.unwrap();
    let mut again = None;
    for _ in 0..100 {
        again = queue.reserve(&lease).await.unwrap();
        if again.is_some() {
            break;
        }
        super::sleep(Duration::from_millis(20)).await;
    }
    let again = again.unwrap_or_else(|| panic!("{backend}: the retry was not reserved"));
    assert_eq!(again.origin, origin, "{backend}: a retry keeps the origin");
    queue.ack(&again.lease, None).await.unwrap();

    // A batch: each job keeps its own.
    let mut other = JobOrigin::with_request_id("second").unwrap();
    other.insert("tenant", "t-1").unwrap();
    let mut first = NewJob::new(&name, "batch", json!(1));
    first.options.origin = origin.clone();
    let mut second = NewJob::new(&name, "batch", json!(2));
    second.options.origin = other.clone();
    let plain = NewJob::new(&name, "batch", json!(3));
    let ids = queue
        .enqueue_many(vec![first, second, plain])
        .await
        .expect("enqueue_many");
    let mut seen = Vec::new();
    let mut held = Vec::new();
    for _ in 0..3 {
        let job = queue.reserve(&lease).await.unwrap().expect("batch job");
        seen.push((job.id, job.origin.clone()));
        held.push(job.lease);
    }
    for lease in &held {
        queue.release(lease).await.unwrap();
    }
    seen.sort_by_key(|(id, _)| *id);
    // A process may have an origin source installed (an app's tests): then the plain job
    // carries what it gives; without one it is empty.
    assert_eq!(
        seen[..2],
        [(ids[0], origin.clone()), (ids[1], other.clone())],
        "{backend}: batch origins"
    );
    assert_eq!(
        seen[2].1,
        JobOrigin::current(),
        "{backend}: no origin given"
    );

    // Export and import keep it.
    let exported = queue
        .export(&name, PageOptions::default())
        .await
        .expect("export");
    let with_other = exported
        .iter()
        .find(|job| job.status.id == ids[1])
        .unwrap_or_else(|| panic!("{backend}: job {} not exported", ids[1]))
        .clone();
    assert_eq!(
        with_other.origin, other,
        "{backend}: export keeps the origin"
    );
    let mut moved = with_other.clone();
    moved.status.id = crate::queue::JobId::new();
    moved.status.queue = format!("{name}-moved");
    moved.status.state = JobState::Queued;
    assert!(queue.import(moved.clone()).await.expect("import"));
    let imported = queue
        .reserve(&ReserveOptions {
            queues: vec![moved.status.queue.clone()],
            lease: Duration::from_secs(30),
        })
        .await
        .unwrap()
        .expect("imported job");
    assert_eq!(imported.origin, other, "{backend}: import keeps the origin");

    // An origin past the limits (built around `insert`'s checks) is refused.
    let mut bad = NewJob::new(&name, "bad", json!(0));
    bad.options.origin =
        serde_json::from_value(json!({"Bad Name": "x"})).expect("a map of strings");
    let err = queue
        .enqueue(bad)
        .await
        .expect_err("a bad origin is refused");
    assert!(
        matches!(err, crate::Error::InvalidInput { .. }),
        "{backend}: {err}"
    );
}
