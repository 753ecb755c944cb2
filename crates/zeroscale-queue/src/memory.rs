//! The in-memory queue: the full queue semantics inside one process. Jobs are lost when
//! the process exits; use Redis to share a queue between processes or keep jobs across
//! restarts.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use zeroscale_core::config::JobsConfig;
use zeroscale_core::domain::now;
use zeroscale_core::queue::{
    JobId, JobOrigin, JobState, JobStatus, LeaseState, LeaseToken, NackOptions, NackOutcome,
    NewJob, PageOptions, PortableJob, Progress, Queue, QueueStats, ReserveOptions, ReservedJob,
};
use zeroscale_core::{Error, Result};

use crate::{
    Backoff, lease_token, prepare_import, take_origin, validate_batch, validate_new_job,
    validate_progress,
};

struct Record {
    status: JobStatus,
    payload: Value,
    lease: Option<(String, DateTime<Utc>)>,
    idempotency_key: Option<String>,
    origin: JobOrigin,
    seq: u64,
}

#[derive(Default)]
struct Inner {
    jobs: HashMap<JobId, Record>,
    /// Per queue: due jobs, best first (higher priority, then older).
    ready: HashMap<String, BTreeSet<(Reverse<i32>, u64, JobId)>>,
    /// Jobs waiting for a time: delayed, or backing off before a retry.
    waiting: BTreeSet<(DateTime<Utc>, u64, JobId)>,
    /// Running jobs by lease expiry.
    leases: BTreeSet<(DateTime<Utc>, JobId)>,
    /// (queue, key) → the unfinished job holding the key.
    idempotency: HashMap<(String, String), JobId>,
    /// Succeeded and cancelled jobs by finish time, for retention.
    finished: BTreeSet<(DateTime<Utc>, JobId)>,
    seq: u64,
}

/// The in-memory queue.
pub struct MemoryQueue {
    inner: Mutex<Inner>,
    config: JobsConfig,
    backoff: Backoff,
    wake: crate::wake::Wake,
}

impl std::fmt::Debug for MemoryQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryQueue")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Inner {
    fn make_ready(&mut self, id: JobId) {
        if let Some(r) = self.jobs.get_mut(&id) {
            r.status.state = JobState::Queued;
            self.ready
                .entry(r.status.queue.clone())
                .or_default()
                .insert((Reverse(r.status.priority), r.seq, id));
        }
    }

    fn release_key(&mut self, id: JobId) {
        if let Some(r) = self.jobs.get(&id)
            && let Some(key) = &r.idempotency_key
        {
            let k = (r.status.queue.clone(), key.clone());
            if self.idempotency.get(&k) == Some(&id) {
                self.idempotency.remove(&k);
            }
        }
    }

    fn finish(&mut self, id: JobId, state: JobState, at: DateTime<Utc>) {
        self.release_key(id);
        if let Some(r) = self.jobs.get_mut(&id) {
            r.status.state = state;
            r.status.finished_at = Some(at);
            r.status.updated_at = at;
            if let Some((_, expires)) = r.lease.take() {
                self.leases.remove(&(expires, id));
            }
            if state != JobState::Dead {
                self.finished.insert((at, id));
            }
        }
    }

    /// Moves due waiting jobs to ready, reclaims expired leases, drops old finished jobs.
    fn tick(&mut self, at: DateTime<Utc>, retention: Duration) {
        while let Some(&(when, seq, id)) = self.waiting.first() {
            if when > at {
                break;
            }
            self.waiting.remove(&(when, seq, id));
            self.make_ready(id);
        }
        while let Some(&(expires, id)) = self.leases.first() {
            if expires > at {
                break;
            }
            self.leases.remove(&(expires, id));
            let Some(r) = self.jobs.get_mut(&id) else {
                continue;
            };
            r.lease = None;
            r.status.last_error = Some("lease expired: the worker stopped or hung".to_owned());
            r.status.updated_at = at;
            if r.status.attempts >= r.status.max_attempts {
                self.finish(id, JobState::Dead, at);
            } else {
                self.make_ready(id);
            }
        }
        let horizon = at - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
        while let Some(&(when, id)) = self.finished.first() {
            if when > horizon {
                break;
            }
            self.finished.remove(&(when, id));
            self.jobs.remove(&id);
        }
    }

    /// Adds a checked job (or, for a repeated idempotency key, answers the first job's id).
    fn add(
        &mut self,
        job: NewJob,
        at: DateTime<Utc>,
        run_at: DateTime<Utc>,
        default_max_attempts: u32,
    ) -> JobId {
        if let Some(key) = &job.options.idempotency_key
            && let Some(&existing) = self.idempotency.get(&(job.queue.clone(), key.clone()))
        {
            return existing;
        }
        let id = JobId::new();
        self.seq += 1;
        let seq = self.seq;
        let delayed = run_at > at;
        let status = JobStatus {
            id,
            queue: job.queue.clone(),
            task: job.task,
            state: if delayed {
                JobState::Scheduled
            } else {
                JobState::Queued
            },
            attempts: 0,
            max_attempts: job.options.max_attempts.unwrap_or(default_max_attempts),
            priority: job.options.priority,
            progress: None,
            result: None,
            last_error: None,
            created_at: at,
            updated_at: at,
            run_at,
            finished_at: None,
        };
        if let Some(key) = &job.options.idempotency_key {
            self.idempotency
                .insert((job.queue.clone(), key.clone()), id);
        }
        self.jobs.insert(
            id,
            Record {
                status,
                payload: job.payload,
                lease: None,
                idempotency_key: job.options.idempotency_key,
                origin: job.options.origin,
                seq,
            },
        );
        if delayed {
            self.waiting.insert((run_at, seq, id));
        } else {
            self.make_ready(id);
        }
        id
    }

    /// The running record whose lease `lease` is, or `Conflict`.
    fn held(&mut self, lease: &LeaseToken, at: DateTime<Utc>) -> Result<&mut Record> {
        let r = self
            .jobs
            .get_mut(&lease.job_id)
            .ok_or_else(|| Error::not_found(format!("job {}", lease.job_id)))?;
        match &r.lease {
            Some((token, expires))
                if *token == lease.token
                    && r.status.state == JobState::Running
                    && *expires > at =>
            {
                Ok(r)
            }
            _ => Err(crate::lease_lost(lease.job_id)),
        }
    }
}

/// When `job` may first run: now, or after its delay.
fn run_at(at: DateTime<Utc>, job: &NewJob) -> Result<DateTime<Utc>> {
    match job.options.delay {
        Some(d) if !d.is_zero() => Ok(at
            + chrono::Duration::from_std(d).map_err(|_| Error::invalid_input("delay too long"))?),
        _ => Ok(at),
    }
}

impl MemoryQueue {
    /// An empty queue with the given job settings.
    pub fn new(config: JobsConfig) -> Self {
        MemoryQueue {
            backoff: Backoff::from_config(&config),
            inner: Mutex::default(),
            config,
            wake: crate::wake::Wake::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data: every change is applied
        // in full before anything can panic.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn retention(&self) -> Duration {
        Duration::from_secs(self.config.retention_secs)
    }
}

#[async_trait]
impl Queue for MemoryQueue {
    fn backend(&self) -> &str {
        "memory"
    }

    async fn enqueue(&self, mut job: NewJob) -> Result<JobId> {
        validate_new_job(&job)?;
        let span = crate::enqueue_span(std::slice::from_ref(&job));
        let _in_span = span.enter();
        job.options.origin = take_origin(&mut job.options);
        let at = now();
        let run_at = run_at(at, &job)?;
        let id = {
            let mut inner = self.lock();
            inner.tick(at, self.retention());
            crate::metrics::count_enqueued([job.queue.as_str()]);
            inner.add(job, at, run_at, self.config.default_max_attempts)
        };
        self.wake.wake();
        Ok(id)
    }

    async fn enqueue_many(&self, mut jobs: Vec<NewJob>) -> Result<Vec<JobId>> {
        validate_batch(&jobs)?;
        let span = crate::enqueue_span(&jobs);
        let _in_span = span.enter();
        for job in &mut jobs {
            job.options.origin = take_origin(&mut job.options);
        }
        let at = now();
        // Everything that can fail is checked before the first job is added.
        let run_ats = jobs
            .iter()
            .map(|job| run_at(at, job))
            .collect::<Result<Vec<_>>>()?;
        let ids = {
            let mut inner = self.lock();
            inner.tick(at, self.retention());
            crate::metrics::count_enqueued(jobs.iter().map(|job| job.queue.as_str()));
            jobs.into_iter()
                .zip(run_ats)
                .map(|(job, run_at)| inner.add(job, at, run_at, self.config.default_max_attempts))
                .collect()
        };
        self.wake.wake();
        Ok(ids)
    }

    async fn reserve(&self, opts: &ReserveOptions) -> Result<Option<ReservedJob>> {
        let at = now();
        let lease_for = chrono::Duration::from_std(opts.lease)
            .map_err(|_| Error::invalid_input("lease too long"))?;
        let mut inner = self.lock();
        inner.tick(at, self.retention());
        let best = opts
            .queues
            .iter()
            .filter_map(|q| {
                inner
                    .ready
                    .get(q)
                    .and_then(|set| set.first().copied())
                    .map(|e| (e, q.clone()))
            })
            .min();
        let Some((entry, queue)) = best else {
            return Ok(None);
        };
        if let Some(set) = inner.ready.get_mut(&queue) {
            set.remove(&entry);
        }
        let id = entry.2;
        let token = lease_token();
        let expires = at + lease_for;
        inner.leases.insert((expires, id));
        let r = inner.jobs.get_mut(&id).expect("ready jobs have records");
        r.status.state = JobState::Running;
        r.status.attempts += 1;
        r.status.updated_at = at;
        r.lease = Some((token.clone(), expires));
        Ok(Some(ReservedJob {
            id,
            queue: r.status.queue.clone(),
            task: r.status.task.clone(),
            payload: r.payload.clone(),
            attempt: r.status.attempts,
            max_attempts: r.status.max_attempts,
            lease: LeaseToken { job_id: id, token },
            lease_expires_at: expires,
            origin: r.origin.clone(),
        }))
    }

    async fn ack(&self, lease: &LeaseToken, result: Option<Value>) -> Result<()> {
        let at = now();
        let mut inner = self.lock();
        let r = inner.held(lease, at)?;
        r.status.result = result;
        inner.finish(lease.job_id, JobState::Succeeded, at);
        Ok(())
    }

    async fn nack(&self, lease: &LeaseToken, opts: NackOptions) -> Result<NackOutcome> {
        let at = now();
        let mut inner = self.lock();
        let r = inner.held(lease, at)?;
        r.status.last_error = Some(opts.error);
        r.status.updated_at = at;
        let attempts = r.status.attempts;
        if opts.give_up || attempts >= r.status.max_attempts {
            inner.finish(lease.job_id, JobState::Dead, at);
            return Ok(NackOutcome::Dead);
        }
        let delay = opts
            .retry_after
            .unwrap_or_else(|| self.backoff.delay(attempts));
        let run_at = at + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
        let (seq, expires) = {
            let r = inner.jobs.get_mut(&lease.job_id).expect("held");
            r.status.state = JobState::Failed;
            r.status.run_at = run_at;
            (r.seq, r.lease.take().map(|(_, e)| e))
        };
        if let Some(expires) = expires {
            inner.leases.remove(&(expires, lease.job_id));
        }
        inner.waiting.insert((run_at, seq, lease.job_id));
        Ok(NackOutcome::Retrying { run_at })
    }

    async fn release(&self, lease: &LeaseToken) -> Result<()> {
        let at = now();
        let mut inner = self.lock();
        let r = inner.held(lease, at)?;
        r.status.attempts = r.status.attempts.saturating_sub(1);
        r.status.updated_at = at;
        if let Some((_, expires)) = r.lease.take() {
            inner.leases.remove(&(expires, lease.job_id));
        }
        // Its sequence number is its enqueue order: it goes back where it was.
        inner.make_ready(lease.job_id);
        drop(inner);
        self.wake.wake();
        Ok(())
    }

    async fn extend_lease(&self, lease: &LeaseToken, by: Duration) -> Result<LeaseState> {
        let at = now();
        let mut inner = self.lock();
        // A job cancelled while running keeps its token so the handler can be told.
        if let Some(r) = inner.jobs.get(&lease.job_id)
            && r.status.state == JobState::Cancelled
            && r.lease.as_ref().is_some_and(|(t, _)| *t == lease.token)
        {
            return Ok(LeaseState {
                expires_at: at,
                cancelled: true,
            });
        }
        let expires = at
            + chrono::Duration::from_std(by).map_err(|_| Error::invalid_input("lease too long"))?;
        let old = {
            let r = inner.held(lease, at)?;
            let old = r.lease.as_ref().map(|(_, e)| *e);
            r.lease = Some((lease.token.clone(), expires));
            r.status.updated_at = at;
            old
        };
        if let Some(old) = old {
            inner.leases.remove(&(old, lease.job_id));
        }
        inner.leases.insert((expires, lease.job_id));
        Ok(LeaseState {
            expires_at: expires,
            cancelled: false,
        })
    }

    async fn update_progress(&self, lease: &LeaseToken, progress: Progress) -> Result<()> {
        validate_progress(&progress)?;
        let at = now();
        let mut inner = self.lock();
        let r = inner.held(lease, at)?;
        r.status.progress = Some(progress);
        r.status.updated_at = at;
        Ok(())
    }

    async fn status(&self, id: JobId) -> Result<JobStatus> {
        let mut inner = self.lock();
        inner.tick(now(), self.retention());
        inner
            .jobs
            .get(&id)
            .map(|r| r.status.clone())
            .ok_or_else(|| Error::not_found(format!("job {id}")))
    }

    async fn cancel(&self, id: JobId) -> Result<JobState> {
        let at = now();
        let mut inner = self.lock();
        inner.tick(at, self.retention());
        let (state, queue, priority, seq, run_at, lease) = {
            let r = inner
                .jobs
                .get(&id)
                .ok_or_else(|| Error::not_found(format!("job {id}")))?;
            (
                r.status.state,
                r.status.queue.clone(),
                r.status.priority,
                r.seq,
                r.status.run_at,
                r.lease.clone(),
            )
        };
        match state {
            JobState::Succeeded | JobState::Dead | JobState::Cancelled => Err(Error::conflict(
                format!("job {id} is already {state}; only unfinished jobs can be cancelled"),
            )),
            JobState::Queued => {
                if let Some(set) = inner.ready.get_mut(&queue) {
                    set.remove(&(Reverse(priority), seq, id));
                }
                inner.finish(id, JobState::Cancelled, at);
                Ok(JobState::Cancelled)
            }
            JobState::Scheduled | JobState::Failed => {
                inner.waiting.remove(&(run_at, seq, id));
                inner.finish(id, JobState::Cancelled, at);
                Ok(JobState::Cancelled)
            }
            JobState::Running => {
                inner.finish(id, JobState::Cancelled, at);
                // Keep the token (not the expiry) so the handler's next heartbeat is told.
                if let (Some(r), Some((token, _))) = (inner.jobs.get_mut(&id), lease) {
                    r.lease = Some((token, at));
                }
                Ok(JobState::Cancelled)
            }
        }
    }

    async fn list_dead(&self, queue: &str, page: PageOptions) -> Result<Vec<JobStatus>> {
        let inner = self.lock();
        let mut dead: Vec<JobStatus> = inner
            .jobs
            .values()
            .filter(|r| r.status.state == JobState::Dead && r.status.queue == queue)
            .filter(|r| page.after.is_none_or(|after| r.status.id > after))
            .map(|r| r.status.clone())
            .collect();
        dead.sort_by_key(|s| s.id);
        dead.truncate(page.limit.unwrap_or(100).clamp(1, 1000));
        Ok(dead)
    }

    async fn requeue_dead(&self, id: JobId) -> Result<()> {
        let at = now();
        let mut inner = self.lock();
        let r = inner
            .jobs
            .get_mut(&id)
            .filter(|r| r.status.state == JobState::Dead)
            .ok_or_else(|| Error::not_found(format!("dead job {id}")))?;
        r.status.attempts = 0;
        r.status.finished_at = None;
        r.status.updated_at = at;
        r.status.run_at = at;
        r.lease = None;
        let key = r
            .idempotency_key
            .clone()
            .map(|k| (r.status.queue.clone(), k));
        if let Some(key) = key {
            inner.idempotency.entry(key).or_insert(id);
        }
        inner.make_ready(id);
        drop(inner);
        self.wake.wake();
        Ok(())
    }

    async fn purge_dead(&self, queue: &str) -> Result<u64> {
        let mut inner = self.lock();
        let before = inner.jobs.len();
        inner
            .jobs
            .retain(|_, r| !(r.status.state == JobState::Dead && r.status.queue == queue));
        Ok((before - inner.jobs.len()) as u64)
    }

    async fn stats(&self, queue: &str) -> Result<QueueStats> {
        let mut inner = self.lock();
        inner.tick(now(), self.retention());
        let mut stats = QueueStats::default();
        for r in inner.jobs.values().filter(|r| r.status.queue == queue) {
            stats.count(r.status.state);
        }
        Ok(stats)
    }

    async fn list(
        &self,
        queue: &str,
        state: Option<JobState>,
        page: PageOptions,
    ) -> Result<Vec<JobStatus>> {
        let mut inner = self.lock();
        inner.tick(now(), self.retention());
        let mut jobs: Vec<JobStatus> = inner
            .jobs
            .values()
            .filter(|r| r.status.queue == queue)
            .filter(|r| state.is_none_or(|s| r.status.state == s))
            .filter(|r| page.after.is_none_or(|after| r.status.id > after))
            .map(|r| r.status.clone())
            .collect();
        jobs.sort_by_key(|s| s.id);
        jobs.truncate(page.limit.unwrap_or(100).clamp(1, 1000));
        Ok(jobs)
    }

    async fn export(&self, queue: &str, page: PageOptions) -> Result<Vec<PortableJob>> {
        let mut inner = self.lock();
        inner.tick(now(), self.retention());
        let mut jobs: Vec<PortableJob> = inner
            .jobs
            .values()
            .filter(|r| r.status.queue == queue)
            .filter(|r| page.after.is_none_or(|after| r.status.id > after))
            .map(|r| PortableJob {
                status: r.status.clone(),
                payload: r.payload.clone(),
                idempotency_key: r.idempotency_key.clone(),
                origin: r.origin.clone(),
            })
            .collect();
        jobs.sort_by_key(|j| j.status.id);
        jobs.truncate(page.limit.unwrap_or(100).clamp(1, 1000));
        Ok(jobs)
    }

    async fn import(&self, job: PortableJob) -> Result<bool> {
        let job = prepare_import(job)?;
        let id = job.status.id;
        let mut inner = self.lock();
        if inner.jobs.contains_key(&id) {
            return Ok(false);
        }
        inner.seq += 1;
        let seq = inner.seq;
        let state = job.status.state;
        if state != JobState::Dead
            && let Some(key) = &job.idempotency_key
        {
            inner
                .idempotency
                .entry((job.status.queue.clone(), key.clone()))
                .or_insert(id);
        }
        let run_at = job.status.run_at;
        inner.jobs.insert(
            id,
            Record {
                status: job.status,
                payload: job.payload,
                lease: None,
                idempotency_key: job.idempotency_key,
                origin: job.origin,
                seq,
            },
        );
        match state {
            JobState::Scheduled | JobState::Failed => {
                inner.waiting.insert((run_at, seq, id));
            }
            JobState::Dead => {}
            _ => {
                inner.make_ready(id);
                drop(inner);
                self.wake.wake();
            }
        }
        Ok(true)
    }

    async fn health(&self) -> Result<()> {
        Ok(())
    }

    async fn wait_for_jobs(&self, _queues: &[String]) {
        self.wake.wait().await;
    }
}

/// The registry's connect for `queue.kind = "memory"`.
pub(crate) fn connect<'a>(
    _: &'a zeroscale_core::config::QueueConfig,
    jobs: &'a JobsConfig,
    _: &'a crate::QueueContext,
) -> futures::future::BoxFuture<'a, Result<std::sync::Arc<dyn zeroscale_core::Queue>>> {
    Box::pin(async move {
        Ok(std::sync::Arc::new(MemoryQueue::new(jobs.clone()))
            as std::sync::Arc<dyn zeroscale_core::Queue>)
    })
}

/// The registry's fan-out for `queue.kind = "memory"`: no other process shares the
/// queue, so there is nobody to tell.
pub(crate) fn fanout<'a>(
    _: &'a zeroscale_core::config::QueueConfig,
    _: &'a str,
    _: &'a crate::QueueContext,
) -> futures::future::BoxFuture<'a, Result<Option<crate::fanout::Fanout>>> {
    Box::pin(async { Ok(None) })
}

/// The registry's counters for `queue.kind = "memory"`: no other process shares the
/// queue's engine (the app counts in its database instead).
pub(crate) fn counters<'a>(
    _: &'a zeroscale_core::config::QueueConfig,
    _: &'a crate::QueueContext,
) -> futures::future::BoxFuture<'a, Result<Option<std::sync::Arc<dyn zeroscale_core::Counters>>>> {
    Box::pin(async { Ok(None) })
}

/// The registry's probe for `queue.kind = "memory"`: always there.
pub(crate) fn probe(
    _: &zeroscale_core::config::QueueConfig,
) -> futures::future::BoxFuture<'_, Result<String>> {
    Box::pin(async { Ok("in-process memory (jobs are lost on restart)".to_owned()) })
}
