//! What the queue crate records (names from [`zeroscale_core::metrics`]): jobs enqueued
//! by the backends here, and each attempt the worker runtime runs.

use std::time::Duration;

use zeroscale_core::metrics as m;

/// Counts the jobs of one accepted enqueue, by queue (a batch's runs of one queue are
/// counted together).
pub(crate) fn count_enqueued<'a>(queues: impl IntoIterator<Item = &'a str>) {
    let mut run: Option<(&str, u64)> = None;
    for queue in queues {
        match &mut run {
            Some((name, n)) if *name == queue => *n += 1,
            _ => {
                if let Some((name, n)) = run.replace((queue, 1)) {
                    metrics::counter!(m::QUEUE_ENQUEUED, "queue" => name.to_owned()).increment(n);
                }
            }
        }
    }
    if let Some((name, n)) = run {
        metrics::counter!(m::QUEUE_ENQUEUED, "queue" => name.to_owned()).increment(n);
    }
}

/// How an attempt the worker ran ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// The handler succeeded.
    Acked,
    /// The handler failed and the job runs again.
    Retried,
    /// The handler failed and the job is dead.
    Dead,
    /// The handler failed; what became of the job is unknown (the nack itself failed).
    Failed,
    /// The lease ran out or was lost under the handler.
    LeaseLost,
}

/// Records one attempt of `task` from `queue` that ran for `ran`.
pub(crate) fn attempt(queue: &str, task: &str, outcome: Attempt, ran: Duration) {
    let labels = [("queue", queue.to_owned()), ("task", task.to_owned())];
    let counter = |name: &'static str| metrics::counter!(name, &labels).increment(1);
    let word = match outcome {
        Attempt::Acked => {
            counter(m::QUEUE_ACKED);
            "acked"
        }
        Attempt::Retried | Attempt::Dead | Attempt::Failed => {
            counter(m::QUEUE_FAILED);
            match outcome {
                Attempt::Retried => counter(m::QUEUE_RETRIED),
                Attempt::Dead => counter(m::QUEUE_DEAD),
                _ => {}
            }
            "failed"
        }
        Attempt::LeaseLost => {
            counter(m::QUEUE_LEASE_LOST);
            return;
        }
    };
    metrics::histogram!(
        m::QUEUE_DURATION,
        "queue" => queue.to_owned(),
        "task" => task.to_owned(),
        "outcome" => word
    )
    .record(ran.as_secs_f64());
}
