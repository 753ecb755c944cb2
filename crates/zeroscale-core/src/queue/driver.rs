//! Helpers for queue backends, so every backend checks jobs, names lease failures and
//! computes backoff the same way. Callers of a queue never need these.

use std::time::Duration;

use super::{
    EnqueueOptions, JobId, JobOrigin, JobState, NewJob, PortableJob, Progress, backoff_delay,
};
use crate::error::{Error, Result};

/// Priorities a job may have.
pub const PRIORITY_RANGE: std::ops::RangeInclusive<i32> = -1000..=1000;

/// Checks a job before it is stored.
pub fn validate_new_job(job: &NewJob) -> Result<()> {
    if job.queue.is_empty() || job.queue.len() > 128 || job.queue.contains(['{', '}', ':']) {
        return Err(Error::invalid_input(
            "queue name must be 1 to 128 characters, without `{`, `}` or `:`",
        ));
    }
    if job.task.is_empty() || job.task.len() > 128 {
        return Err(Error::invalid_input(
            "task name must be 1 to 128 characters",
        ));
    }
    if !PRIORITY_RANGE.contains(&job.options.priority) {
        return Err(Error::invalid_input(format!(
            "priority {} is outside {}..={}",
            job.options.priority,
            PRIORITY_RANGE.start(),
            PRIORITY_RANGE.end()
        )));
    }
    if job.options.max_attempts == Some(0) {
        return Err(Error::invalid_input("max_attempts must be at least 1"));
    }
    if job
        .options
        .idempotency_key
        .as_ref()
        .is_some_and(|k| k.is_empty() || k.len() > 256)
    {
        return Err(Error::invalid_input(
            "idempotency key must be 1 to 256 characters",
        ));
    }
    job.options.origin.validate()
}

/// The origin a backend stores with `options`' job: its own, or when empty the code's
/// [`JobOrigin::current`].
pub fn take_origin(options: &mut EnqueueOptions) -> JobOrigin {
    let origin = std::mem::take(&mut options.origin);
    if origin.is_empty() {
        JobOrigin::current()
    } else {
        origin
    }
}

/// The most jobs one [`Queue::enqueue_many`](super::Queue::enqueue_many) call adds.
pub const MAX_BATCH: usize = 1000;

/// Checks the jobs of one [`Queue::enqueue_many`](super::Queue::enqueue_many) call, each
/// as [`validate_new_job`] does, and their number: a bad job refuses the whole batch, its
/// place in the batch named.
pub fn validate_batch(jobs: &[NewJob]) -> Result<()> {
    if jobs.len() > MAX_BATCH {
        return Err(Error::invalid_input(format!(
            "{} jobs in one enqueue_many call: at most {MAX_BATCH}; split the batch",
            jobs.len()
        )));
    }
    for (n, job) in jobs.iter().enumerate() {
        validate_new_job(job).map_err(|e| match e {
            Error::InvalidInput { message, .. } => {
                Error::invalid_input(format!("job {n} of the batch: {message}"))
            }
            other => other,
        })?;
    }
    Ok(())
}

/// Checks a job handed to [`Queue::import`](super::Queue::import) like a new one, and
/// says how to store it: a job that was running is queued again (its lease belonged to a
/// worker of the old backend), a dead one keeps its finish time, no other keeps one;
/// succeeded and cancelled jobs are refused.
pub fn prepare_import(mut job: PortableJob) -> Result<PortableJob> {
    let status = &mut job.status;
    match status.state {
        JobState::Succeeded | JobState::Cancelled => {
            return Err(Error::invalid_input(format!(
                "job {} has finished ({}): only unfinished and dead jobs are imported",
                status.id, status.state
            )));
        }
        JobState::Running => status.state = JobState::Queued,
        JobState::Dead => {
            status.finished_at.get_or_insert(status.updated_at);
        }
        JobState::Queued | JobState::Scheduled | JobState::Failed => {}
    }
    if status.state != JobState::Dead {
        status.finished_at = None;
    }
    validate_new_job(&NewJob {
        queue: status.queue.clone(),
        task: status.task.clone(),
        payload: serde_json::Value::Null,
        options: EnqueueOptions {
            delay: None,
            max_attempts: Some(status.max_attempts),
            idempotency_key: job.idempotency_key.clone(),
            priority: status.priority,
            origin: job.origin.clone(),
        },
    })?;
    Ok(job)
}

/// The error for an ack, nack, extension or progress report with a lease that is no
/// longer held.
pub fn lease_lost(id: JobId) -> Error {
    Error::conflict(format!(
        "job {id}: this lease is no longer held (it expired and the job went to another worker, \
         or the job finished or was cancelled)"
    ))
}

/// Progress is 0 to 100.
pub fn validate_progress(progress: &Progress) -> Result<()> {
    if progress.percent > 100 {
        return Err(Error::invalid_input("progress percent must be 0 to 100"));
    }
    Ok(())
}

/// A fresh lease token: 128 random bits and a time-ordered UUID, as 64 hex digits.
pub fn new_lease_token() -> String {
    let mut bytes = [0u8; 16];
    // The OS generator failing leaves zeros; uniqueness then comes from the uuid below.
    let _ = getrandom::fill(&mut bytes);
    format!("{}{}", crate::hex(&bytes), uuid::Uuid::now_v7().simple())
}

/// The retry backoff of `[jobs]`, with random jitter.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    base: Duration,
    max: Duration,
}

impl Backoff {
    /// The backoff `jobs.backoff_base_ms` and `jobs.backoff_max_secs` describe.
    pub fn from_config(config: &crate::config::JobsConfig) -> Self {
        Backoff {
            base: Duration::from_millis(config.backoff_base_ms),
            max: Duration::from_secs(config.backoff_max_secs),
        }
    }

    /// The delay before retry number `attempt` (1 = first retry).
    pub fn delay(self, attempt: u32) -> Duration {
        let mut bytes = [0u8; 8];
        let _ = getrandom::fill(&mut bytes);
        let jitter = (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64;
        backoff_delay(attempt, self.base, self.max, jitter)
    }
}
