//! The job queue interface: at-least-once delivery with leases, retries, dead letters,
//! priorities, delays, idempotency keys, progress and cancellation.
//!
//! `Queue` is the driver trait a backend implements; `QueueExt` holds conveniences.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::error::{Error, Result};

pub mod driver;
mod origin;

pub use origin::JobOrigin;

/// A job's id: a UUIDv7, so ids sort by creation time.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub Uuid);

impl JobId {
    /// A fresh, time-ordered id.
    pub fn new() -> Self {
        JobId(Uuid::now_v7())
    }
}

impl Default for JobId {
    fn default() -> Self {
        JobId::new()
    }
}

impl fmt::Debug for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JobId({})", self.0)
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl FromStr for JobId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Uuid::parse_str(s)
            .map(JobId)
            .map_err(|e| Error::invalid_input(format!("`{s}` is not a job id (a UUID): {e}")))
    }
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting to be reserved.
    Queued,
    /// Waiting for its run time (delayed, or backing off before a retry).
    Scheduled,
    /// Reserved by a worker under a lease.
    Running,
    /// Acked.
    Succeeded,
    /// The last attempt failed and another will be made.
    Failed,
    /// Every attempt failed; the job is in the dead-letter set.
    Dead,
    /// Cancelled before it finished.
    Cancelled,
}

impl JobState {
    /// Whether the job will never run again (unless requeued from dead letters).
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Dead | JobState::Cancelled
        )
    }

    /// Every state.
    pub const ALL: [JobState; 7] = [
        JobState::Queued,
        JobState::Scheduled,
        JobState::Running,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Dead,
        JobState::Cancelled,
    ];

    /// The state named `name` (as [`JobState::as_str`] writes it), if any.
    pub fn parse(name: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Scheduled => "scheduled",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Dead => "dead",
            JobState::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Options for enqueuing a job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnqueueOptions {
    /// Run no earlier than this long from now.
    pub delay: Option<Duration>,
    /// Attempts before the job goes to dead letters; the queue's default when `None`.
    pub max_attempts: Option<u32>,
    /// A second enqueue with the same key, while the first job is not finished, returns the
    /// first job's id instead of creating a job.
    pub idempotency_key: Option<String>,
    /// Higher runs first; FIFO within a priority. Default 0.
    pub priority: i32,
    /// Where the job came from (request id, trace context), handed to the worker with
    /// the job. Left empty, the backend fills it from [`JobOrigin::current`].
    pub origin: JobOrigin,
}

/// A job to enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    /// The named queue, e.g. `default`, `embeddings`.
    pub queue: String,
    /// The task name a worker handler is registered under.
    pub task: String,
    /// The handler's input.
    pub payload: Value,
    /// Delay, attempts, idempotency, priority.
    pub options: EnqueueOptions,
}

impl NewJob {
    /// A job for `task` on `queue` with default options.
    pub fn new(queue: impl Into<String>, task: impl Into<String>, payload: Value) -> Self {
        NewJob {
            queue: queue.into(),
            task: task.into(),
            payload,
            options: EnqueueOptions::default(),
        }
    }
}

/// Options for reserving a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReserveOptions {
    /// Queues to take from, in no particular order; priority decides across them.
    pub queues: Vec<String>,
    /// How long the job is ours before it is handed to another worker.
    pub lease: Duration,
}

/// Proof that a worker holds a job's lease; needed to ack, nack, extend or report progress.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LeaseToken {
    /// The job.
    pub job_id: JobId,
    /// Unique to this reservation: a stale holder's token no longer matches.
    pub token: String,
}

/// A job handed to a worker.
#[derive(Debug, Clone, PartialEq)]
pub struct ReservedJob {
    /// The job's id.
    pub id: JobId,
    /// Its queue.
    pub queue: String,
    /// Its task name.
    pub task: String,
    /// Its payload.
    pub payload: Value,
    /// Which attempt this is, from 1.
    pub attempt: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// The lease to ack, nack or extend.
    pub lease: LeaseToken,
    /// When the lease runs out unless extended.
    pub lease_expires_at: DateTime<Utc>,
    /// Where it came from: the request id and trace context it was enqueued with.
    pub origin: JobOrigin,
}

/// Why an attempt failed, and when to try again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NackOptions {
    /// The error, kept as the job's last error.
    pub error: String,
    /// Retry no earlier than this; the queue's backoff decides when `None`.
    pub retry_after: Option<Duration>,
    /// No more attempts: the job goes to dead letters now, whatever attempts it has left
    /// (the handler's error says retrying cannot succeed, see
    /// [`Error::is_permanent`](crate::Error::is_permanent)).
    pub give_up: bool,
}

/// What a nack did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NackOutcome {
    /// Another attempt is scheduled at this time.
    Retrying {
        /// When the job becomes available again.
        run_at: DateTime<Utc>,
    },
    /// That was the last attempt: the job is in dead letters.
    Dead,
}

/// A lease after it was extended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseState {
    /// The new expiry.
    pub expires_at: DateTime<Utc>,
    /// The job was cancelled while running: the handler should stop.
    pub cancelled: bool,
}

/// A job's progress as its handler reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// 0 to 100.
    pub percent: u8,
    /// What the handler is doing.
    pub message: Option<String>,
}

/// Everything known about a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobStatus {
    /// The job's id.
    pub id: JobId,
    /// Its queue.
    pub queue: String,
    /// Its task name.
    pub task: String,
    /// Where it is in its life.
    pub state: JobState,
    /// Attempts started so far.
    pub attempts: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// Its priority.
    pub priority: i32,
    /// The last progress report.
    pub progress: Option<Progress>,
    /// The ack's result.
    pub result: Option<Value>,
    /// The last nack's error.
    pub last_error: Option<String>,
    /// When it was enqueued.
    pub created_at: DateTime<Utc>,
    /// When anything about it last changed.
    pub updated_at: DateTime<Utc>,
    /// When it may next run.
    pub run_at: DateTime<Utc>,
    /// When it finished (succeeded, dead or cancelled).
    pub finished_at: Option<DateTime<Utc>>,
}

/// A job with everything needed to carry it to another queue backend: what
/// [`Queue::export`] reads and [`Queue::import`] writes (`zeroscale stage move
/// --with-jobs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PortableJob {
    /// Its id, queue, task, state, attempts, priority, progress, last error and times.
    pub status: JobStatus,
    /// Its payload.
    pub payload: Value,
    /// The idempotency key it was enqueued with.
    pub idempotency_key: Option<String>,
    /// Where it came from (request id, trace context); empty for jobs exported before
    /// jobs kept one.
    #[serde(default, skip_serializing_if = "JobOrigin::is_empty")]
    pub origin: JobOrigin,
}

/// How many jobs of a queue are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStats {
    /// Waiting to be reserved.
    pub queued: u64,
    /// Waiting for their run time.
    pub scheduled: u64,
    /// Leased by a worker.
    pub running: u64,
    /// Failed, waiting to retry.
    pub failed: u64,
    /// In dead letters.
    pub dead: u64,
    /// Succeeded (within retention).
    pub succeeded: u64,
    /// Cancelled (within retention).
    pub cancelled: u64,
}

impl QueueStats {
    /// Adds one job in `state`.
    pub fn count(&mut self, state: JobState) {
        self.add(state, 1);
    }

    /// Adds `n` jobs in `state`.
    pub fn add(&mut self, state: JobState, n: u64) {
        let slot = match state {
            JobState::Queued => &mut self.queued,
            JobState::Scheduled => &mut self.scheduled,
            JobState::Running => &mut self.running,
            JobState::Failed => &mut self.failed,
            JobState::Dead => &mut self.dead,
            JobState::Succeeded => &mut self.succeeded,
            JobState::Cancelled => &mut self.cancelled,
        };
        *slot += n;
    }
}

/// Options for paging through lists of jobs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageOptions {
    /// At most this many; the backend's default when `None`.
    pub limit: Option<usize>,
    /// Only jobs after this id (ids sort by creation time).
    pub after: Option<JobId>,
}

/// The job queue driver interface: what a backend implements.
#[async_trait]
pub trait Queue: Send + Sync + fmt::Debug + 'static {
    /// The backend's name (`memory`, `redis`).
    fn backend(&self) -> &str;

    /// Adds a job; returns its id (or, for a repeated idempotency key, the first job's id).
    async fn enqueue(&self, job: NewJob) -> Result<JobId>;

    /// Adds several jobs at once: one id per job, in order, each what
    /// [`enqueue`](Queue::enqueue) would answer (a repeated idempotency key, also one
    /// repeated within the batch, answers the first job's id). At most
    /// [`driver::MAX_BATCH`] jobs; a bad job refuses the whole batch. The built-in
    /// backends add all or none (memory: under one lock; Redis: one script, one round
    /// trip; database: one transaction, one commit); the default enqueues one at a time,
    /// so an error can leave the jobs before it enqueued.
    async fn enqueue_many(&self, jobs: Vec<NewJob>) -> Result<Vec<JobId>> {
        driver::validate_batch(&jobs)?;
        let mut ids = Vec::with_capacity(jobs.len());
        for job in jobs {
            ids.push(self.enqueue(job).await?);
        }
        Ok(ids)
    }

    /// Hands the next due job to the caller under a lease, or `None` if nothing is due.
    async fn reserve(&self, opts: &ReserveOptions) -> Result<Option<ReservedJob>>;

    /// Completes a job. Fails with [`Error::Conflict`] if the lease is no longer held.
    async fn ack(&self, lease: &LeaseToken, result: Option<Value>) -> Result<()>;

    /// Hands up to `max` due jobs to the caller at once, each under its own lease, in the
    /// order [`Queue::reserve`] would; fewer (or none) when fewer are due. A worker with
    /// free slots takes them in one step. Backends that can do it in one round trip
    /// override this; the default reserves one at a time.
    async fn reserve_many(&self, opts: &ReserveOptions, max: usize) -> Result<Vec<ReservedJob>> {
        let mut jobs = Vec::new();
        while jobs.len() < max {
            match self.reserve(opts).await? {
                Some(job) => jobs.push(job),
                None => break,
            }
        }
        Ok(jobs)
    }

    /// Completes several jobs: one result per lease, in order, each what [`Queue::ack`]
    /// would answer. Backends that can do it in one round trip override this; the
    /// default acks one at a time.
    async fn ack_many(&self, done: &[(LeaseToken, Option<Value>)]) -> Vec<Result<()>> {
        let mut results = Vec::with_capacity(done.len());
        for (lease, result) in done {
            results.push(self.ack(lease, result.clone()).await);
        }
        results
    }

    /// Fails an attempt: retry with backoff, or dead-letter after the last attempt.
    async fn nack(&self, lease: &LeaseToken, opts: NackOptions) -> Result<NackOutcome>;

    /// Hands a held job back unfinished, without counting its attempt: it is queued
    /// again at once, in its old place (priority, then enqueue order), for any worker.
    /// For a worker that stops before the job finished (shutdown) or that reserved more
    /// jobs than it ran (prefetch); a failure is [`nack`](Queue::nack)'s. Fails with
    /// [`Error::Conflict`] if the lease is no longer held.
    async fn release(&self, lease: &LeaseToken) -> Result<()>;

    /// Extends a held lease by `by` from now.
    async fn extend_lease(&self, lease: &LeaseToken, by: Duration) -> Result<LeaseState>;

    /// Records a running job's progress.
    async fn update_progress(&self, lease: &LeaseToken, progress: Progress) -> Result<()>;

    /// A job's status.
    async fn status(&self, id: JobId) -> Result<JobStatus>;

    /// Cancels a job: a queued or scheduled job never runs; a running one is marked
    /// cancelled and its handler learns at its next heartbeat. Returns the new state.
    async fn cancel(&self, id: JobId) -> Result<JobState>;

    /// Dead jobs of `queue`, oldest first.
    async fn list_dead(&self, queue: &str, page: PageOptions) -> Result<Vec<JobStatus>>;

    /// Moves a dead job back to the queue with fresh attempts.
    async fn requeue_dead(&self, id: JobId) -> Result<()>;

    /// Deletes every dead job of `queue`; returns how many.
    async fn purge_dead(&self, queue: &str) -> Result<u64>;

    /// How many jobs of `queue` are in each state.
    async fn stats(&self, queue: &str) -> Result<QueueStats>;

    /// Jobs of `queue` (only those in `state`, if given), oldest first.
    async fn list(
        &self,
        queue: &str,
        state: Option<JobState>,
        page: PageOptions,
    ) -> Result<Vec<JobStatus>>;

    /// Checks that the backend is reachable (for `/readyz` and `doctor`).
    async fn health(&self) -> Result<()>;

    /// Jobs of `queue` in any state with their payloads, oldest first and paged like
    /// [`list`](Queue::list): what [`import`](Queue::import) needs to carry them to
    /// another backend. The default says the backend cannot.
    async fn export(&self, queue: &str, page: PageOptions) -> Result<Vec<PortableJob>> {
        let _ = (queue, page);
        Err(Error::not_supported("export jobs", self.backend()))
    }

    /// Adds `job` as it was elsewhere: same id, state, attempts, priority, run time, last
    /// error and idempotency key. A job that was running there is queued again at once
    /// (its worker stopped; the attempt it had started stays counted). Only unfinished
    /// and dead jobs move: a succeeded or cancelled one is refused. Returns `false`, and
    /// changes nothing, when a job with that id is already here, so an import that
    /// stopped half way can run again. The default says the backend cannot.
    async fn import(&self, job: PortableJob) -> Result<bool> {
        let _ = job;
        Err(Error::not_supported("import jobs", self.backend()))
    }

    /// Resolves when a job may have become ready on one of `queues` (an enqueue that the
    /// backend hears of), so an idle worker need not poll. Never resolving is correct:
    /// the worker also polls, at most `max_poll_interval` apart. The default never
    /// resolves; the database queue resolves on this process's enqueues and, on
    /// PostgreSQL, on `NOTIFY` from any process.
    async fn wait_for_jobs(&self, queues: &[String]) {
        let _ = queues;
        futures::future::pending::<()>().await;
    }
}

/// The queue interface as shared in the app.
pub type DynQueue = dyn Queue;

/// Conveniences on every [`Queue`]; backends must not implement this.
#[async_trait]
pub trait QueueExt: Queue {
    /// Enqueues `task` on `queue` with a serializable payload and default options.
    async fn enqueue_json<T: Serialize + Sync>(
        &self,
        queue: &str,
        task: &str,
        payload: &T,
    ) -> Result<JobId> {
        let payload = serde_json::to_value(payload)
            .map_err(|e| Error::invalid_input(format!("job payload is not serializable: {e}")))?;
        self.enqueue(NewJob::new(queue, task, payload)).await
    }

    /// Fails an attempt with `error`, letting the queue's backoff pick the retry time.
    async fn nack_error(&self, lease: &LeaseToken, error: &str) -> Result<NackOutcome> {
        self.nack(
            lease,
            NackOptions {
                error: error.to_owned(),
                retry_after: None,
                give_up: false,
            },
        )
        .await
    }
}

impl<T: Queue + ?Sized> QueueExt for T {}

/// The delay before retry number `attempt` (1 = first retry): `base * 2^(attempt-1)`,
/// capped at `max`, with up to ±25% jitter drawn from `jitter` (a number in `0.0..1.0`).
///
/// Every backend uses this, so backoff is the same everywhere.
pub fn backoff_delay(attempt: u32, base: Duration, max: Duration, jitter: f64) -> Duration {
    let exp = attempt.saturating_sub(1).min(30);
    let raw = base.saturating_mul(1u32 << exp).min(max);
    let factor = 0.75 + 0.5 * jitter.clamp(0.0, 1.0);
    raw.mul_f64(factor).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_parse_and_sort_by_time() {
        let a = JobId::new();
        let b = JobId::new();
        assert!(a < b);
        assert_eq!(a.to_string().parse::<JobId>().unwrap(), a);
        let err = "nope".parse::<JobId>().unwrap_err();
        assert!(matches!(err, Error::InvalidInput { .. }));
    }

    #[test]
    fn backoff_grows_and_caps() {
        let base = Duration::from_secs(1);
        let max = Duration::from_secs(60);
        assert_eq!(backoff_delay(1, base, max, 0.5), Duration::from_secs(1));
        assert_eq!(backoff_delay(3, base, max, 0.5), Duration::from_secs(4));
        assert_eq!(backoff_delay(30, base, max, 0.5), max);
        assert_eq!(backoff_delay(3, base, max, 0.0), Duration::from_secs(3));
        assert_eq!(backoff_delay(3, base, max, 1.0), Duration::from_secs(5));
    }

    #[test]
    fn finished_states() {
        assert!(JobState::Succeeded.is_finished());
        assert!(JobState::Dead.is_finished());
        assert!(!JobState::Failed.is_finished());
        assert_eq!(
            serde_json::to_string(&JobState::Scheduled).unwrap(),
            "\"scheduled\""
        );
    }
}
