//! The worker runtime: handlers registered by task name with typed payloads, run with a
//! concurrency limit, a per-job timeout and an automatic lease heartbeat; panics become
//! nacks; shutdown stops reserving, waits for in-flight jobs up to a deadline, then hands
//! their jobs back to the queue (`Queue::release`: the attempt is not spent).
//!
//! Handlers return core's [`Error`], and the runtime acts on its kind: a permanent error
//! ([`Error::is_permanent`]: bad input, something missing, a refusal) sends the job to dead
//! letters at once; a rate limit retries after the limiter's `Retry-After`; anything else
//! retries with the queue's backoff until the attempts run out. A hook registered with
//! [`Worker::on_dead`] runs when a job of its task goes to dead letters from a handler's
//! failure (not when a lease expires on the last attempt: nothing is left running to call
//! it; see the queue docs).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::{Semaphore, watch};
use tracing::Instrument;
use zeroscale_core::queue::{
    JobId, NackOptions, NackOutcome, Progress, ReserveOptions, ReservedJob,
};
use zeroscale_core::{Error, Queue};

/// What a handler returns: a JSON result, or an error (see the module docs for what the
/// runtime does with each kind).
pub type HandlerResult = Result<Option<Value>, Error>;

type BoxHandler = Arc<
    dyn Fn(JobContext, Value) -> Pin<Box<dyn Future<Output = HandlerResult> + Send>> + Send + Sync,
>;

type BoxDeadHook =
    Arc<dyn Fn(Value, String) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// What a running handler can see and do.
#[derive(Debug, Clone)]
pub struct JobContext {
    /// The job's id (make handlers idempotent by it: a job can run more than once).
    pub id: JobId,
    /// Which attempt this is, from 1.
    pub attempt: u32,
    /// Attempts allowed: when `attempt == max_attempts`, a failure sends the job to dead
    /// letters.
    pub max_attempts: u32,
    /// The job's queue.
    pub queue: String,
    cancelled: watch::Receiver<bool>,
    progress: tokio::sync::mpsc::UnboundedSender<Progress>,
}

impl JobContext {
    /// Whether this is the job's last attempt.
    pub fn is_last_attempt(&self) -> bool {
        self.attempt >= self.max_attempts
    }

    /// Whether the job was cancelled (seen at the last heartbeat).
    pub fn is_cancelled(&self) -> bool {
        *self.cancelled.borrow()
    }

    /// Reports progress (0 to 100); sent with the next heartbeat.
    pub fn progress(&self, percent: u8, message: impl Into<String>) {
        let _ = self.progress.send(Progress {
            percent: percent.min(100),
            message: Some(message.into()),
        });
    }
}

/// What a process does with each job's [`JobOrigin`](zeroscale_core::queue::JobOrigin)
/// besides naming its request id on the job's span: e.g. make the span a child of the
/// enqueuing span's trace.
pub type OriginHook = fn(&zeroscale_core::queue::JobOrigin, &tracing::Span);

static ORIGIN_HOOK: std::sync::OnceLock<OriginHook> = std::sync::OnceLock::new();

/// Installs the process's [`OriginHook`], called for every job a worker of this process
/// starts, with the job's span; once per process (the `zeroscale` binary installs one that
/// continues the job's trace when traces are on). Installing the same function again is
/// fine; a different one is refused.
pub fn set_origin_hook(hook: OriginHook) -> zeroscale_core::Result<()> {
    let installed = *ORIGIN_HOOK.get_or_init(|| hook);
    if std::ptr::fn_addr_eq(installed, hook) {
        Ok(())
    } else {
        Err(Error::invalid_input(
            "a different worker origin hook was already installed in this process",
        ))
    }
}

/// The span a job runs in: its id, task, attempt, and the request id it was enqueued with
/// (so every log line of the job names the request, and jobs it enqueues keep it).
fn job_span(job: &ReservedJob) -> tracing::Span {
    let span = tracing::info_span!(
        "job",
        id = %job.id,
        task = %job.task,
        attempt = job.attempt,
        request_id = job.origin.request_id(),
    );
    if let Some(hook) = ORIGIN_HOOK.get() {
        hook(&job.origin, &span);
    }
    span
}

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Queues to take jobs from.
    pub queues: Vec<String>,
    /// Jobs run at once.
    pub concurrency: usize,
    /// Lease per reservation; the heartbeat renews it every third of it.
    pub lease: Duration,
    /// A handler running longer fails its attempt.
    pub job_timeout: Duration,
    /// How long shutdown waits for in-flight jobs.
    pub shutdown_grace: Duration,
    /// Longest sleep between polls of an empty queue.
    pub max_poll_interval: Duration,
    /// Jobs reserved beyond the free slots and held for the next slot that frees, so
    /// short jobs do not cost a round trip each. Held jobs not started within
    /// `prefetch_hold` go back to the queue (their attempt not spent) for other workers,
    /// and the worker then holds fewer. 0 turns it off: for jobs that each take long,
    /// spread over many workers. At most 1000.
    pub prefetch: usize,
    /// How long a held job may wait for a slot; at most a third of the lease.
    pub prefetch_hold: Duration,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            queues: vec!["default".to_owned()],
            concurrency: 4,
            lease: Duration::from_secs(30),
            job_timeout: Duration::from_secs(300),
            shutdown_grace: Duration::from_secs(30),
            max_poll_interval: Duration::from_millis(500),
            prefetch: 8,
            prefetch_hold: Duration::from_millis(500),
        }
    }
}

impl WorkerOptions {
    /// The options `[workers]` and `[jobs]` describe (queues, concurrency, job timeout,
    /// shutdown grace, prefetch; the lease is `jobs.lease_secs`), as `zeroscale worker`
    /// runs with.
    ///
    /// ```
    /// use zeroscale_core::config::{JobsConfig, WorkersConfig};
    /// use zeroscale_queue::worker::WorkerOptions;
    ///
    /// let workers = WorkersConfig { concurrency: 16, ..Default::default() };
    /// let options = WorkerOptions::from_config(&workers, &JobsConfig::default());
    /// assert_eq!(options.concurrency, 16);
    /// ```
    pub fn from_config(
        workers: &zeroscale_core::config::WorkersConfig,
        jobs: &zeroscale_core::config::JobsConfig,
    ) -> Self {
        WorkerOptions {
            queues: workers.queues.clone(),
            concurrency: workers.concurrency,
            lease: Duration::from_secs(jobs.lease_secs.max(1)),
            job_timeout: Duration::from_secs(workers.job_timeout_secs),
            shutdown_grace: Duration::from_secs(workers.shutdown_grace_secs),
            prefetch: workers.prefetch,
            prefetch_hold: Duration::from_millis(workers.prefetch_hold_ms),
            ..Default::default()
        }
    }
}

/// Runs registered handlers for the jobs of a queue.
pub struct Worker {
    queue: Arc<dyn Queue>,
    options: WorkerOptions,
    handlers: HashMap<String, BoxHandler>,
    dead_hooks: HashMap<String, BoxDeadHook>,
    timeouts: HashMap<String, Duration>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("options", &self.options)
            .field("tasks", &self.handlers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// How a worker's run ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerReport {
    /// Jobs acked.
    pub succeeded: u64,
    /// Attempts nacked (including panics and timeouts).
    pub failed: u64,
    /// In-flight jobs handed back to the queue at shutdown.
    pub released: u64,
}

impl Worker {
    /// A worker for `queue` with no handlers yet.
    pub fn new(queue: Arc<dyn Queue>, options: WorkerOptions) -> Self {
        Worker {
            queue,
            options,
            handlers: HashMap::new(),
            dead_hooks: HashMap::new(),
            timeouts: HashMap::new(),
        }
    }

    /// Gives jobs of `task` their own timeout instead of the worker's `job_timeout`.
    pub fn timeout(&mut self, task: &str, timeout: Duration) -> &mut Self {
        self.timeouts.insert(task.to_owned(), timeout);
        self
    }

    /// Runs `handler` for jobs of `task`, with the payload deserialized as `P`. A payload
    /// that does not deserialize fails the attempt with the serde error.
    pub fn register<P, F, Fut>(&mut self, task: &str, handler: F) -> &mut Self
    where
        P: DeserializeOwned + Send + 'static,
        F: Fn(JobContext, P) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let task_name = task.to_owned();
        self.handlers.insert(
            task.to_owned(),
            Arc::new(move |ctx, payload| {
                let handler = handler.clone();
                let task_name = task_name.clone();
                Box::pin(async move {
                    let payload: P = serde_json::from_value(payload).map_err(|e| {
                        Error::invalid_input(format!(
                            "payload of task `{task_name}` does not match its handler: {e}"
                        ))
                    })?;
                    handler(ctx, payload).await
                })
            }),
        );
        self
    }

    /// Runs `hook` with the payload (as `P`) and the last error when a job of `task` goes
    /// to dead letters after a handler failed it: its last attempt failed, or its error was
    /// permanent. For settling what the job held (credits, reservations) without waiting
    /// for a sweeper. The hook runs once per dead-lettering, on this worker; make it
    /// idempotent, as handlers are.
    pub fn on_dead<P, F, Fut>(&mut self, task: &str, hook: F) -> &mut Self
    where
        P: DeserializeOwned + Send + 'static,
        F: Fn(P, String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let hook = Arc::new(hook);
        let task_name = task.to_owned();
        self.dead_hooks.insert(
            task.to_owned(),
            Arc::new(move |payload, error| {
                let hook = hook.clone();
                let task_name = task_name.clone();
                Box::pin(async move {
                    match serde_json::from_value::<P>(payload) {
                        Ok(payload) => hook(payload, error).await,
                        Err(e) => tracing::warn!(
                            task = %task_name,
                            error = %e,
                            "the dead-letter hook could not read the job's payload"
                        ),
                    }
                })
            }),
        );
        self
    }

    /// Reserves and runs jobs until `shutdown` turns true; then waits for in-flight jobs
    /// up to the grace period and hands the rest back to the queue.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> WorkerReport {
        let permits = Arc::new(Semaphore::new(self.options.concurrency.max(1)));
        let handlers = Arc::new(self.handlers);
        let dead_hooks = Arc::new(self.dead_hooks);
        let timeouts = Arc::new(self.timeouts);
        let report = Arc::new(std::sync::Mutex::new(WorkerReport::default()));
        let (stop_jobs_tx, stop_jobs_rx) = watch::channel(false);
        let (acks, acker) = crate::acker::start(self.queue.clone(), report.clone());
        let shared = Arc::new(Shared {
            queue: self.queue.clone(),
            handlers,
            dead_hooks,
            report: report.clone(),
            acks,
        });
        let reserve = ReserveOptions {
            queues: self.options.queues.clone(),
            lease: self.options.lease,
        };
        let mut idle = Duration::from_millis(20);
        let mut tasks = tokio::task::JoinSet::new();
        let hold = self.options.prefetch_hold.min(self.options.lease / 3);
        let mut held = crate::prefetch::Held::new(self.options.prefetch, hold);
        loop {
            if *shutdown.borrow() {
                break;
            }
            let hold_over = async {
                match held.deadline() {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => futures::future::pending().await,
                }
            };
            let first = tokio::select! {
                permit = permits.clone().acquire_owned() => permit.expect("never closed"),
                _ = shutdown.changed() => break,
                () = hold_over => {
                    // No slot freed in time: the held jobs are for other workers.
                    held.release_all(self.queue.as_ref(), true).await;
                    continue;
                }
            };
            // Every free slot, filled from the held jobs or in one reservation.
            let mut slots = vec![first];
            while let Ok(permit) = permits.clone().try_acquire_owned() {
                slots.push(permit);
            }
            let jobs = if held.len() > 0 {
                slots.truncate(held.len());
                held.take(slots.len())
            } else {
                let asked = tokio::time::Instant::now();
                match self
                    .queue
                    .reserve_many(&reserve, slots.len() + held.ahead())
                    .await
                {
                    Ok(jobs) if jobs.is_empty() => {
                        drop(slots);
                        tokio::select! {
                            _ = tokio::time::sleep(idle) => {}
                            () = self.queue.wait_for_jobs(&reserve.queues) => {}
                            _ = shutdown.changed() => break,
                        }
                        idle = (idle * 2).min(self.options.max_poll_interval);
                        continue;
                    }
                    Ok(mut jobs) => {
                        if jobs.len() > slots.len() {
                            held.keep(jobs.split_off(slots.len()), asked);
                        }
                        jobs.into_iter().map(|job| (job, asked)).collect()
                    }
                    Err(e) => {
                        drop(slots);
                        tracing::warn!(error = %e.chain(), "reserving a job failed; retrying");
                        tokio::select! {
                            _ = tokio::time::sleep(self.options.max_poll_interval) => {}
                            _ = shutdown.changed() => break,
                        }
                        continue;
                    }
                }
            };
            idle = Duration::from_millis(20);
            for ((job, reserved_at), permit) in jobs.into_iter().zip(slots) {
                let span = job_span(&job);
                let mut options = self.options.clone();
                if let Some(timeout) = timeouts.get(&job.task) {
                    options.job_timeout = *timeout;
                }
                let run = run_job(
                    shared.clone(),
                    job,
                    reserved_at,
                    options,
                    stop_jobs_rx.clone(),
                );
                tasks.spawn(
                    async move {
                        run.await;
                        drop(permit);
                    }
                    .instrument(span),
                );
            }
            // Reap finished tasks so the set does not grow.
            while tasks.try_join_next().is_some() {}
        }
        // Held jobs never started: straight back to the queue for other workers.
        held.release_all(self.queue.as_ref(), false).await;
        // Stop reserving; let in-flight jobs finish within the grace period.
        let drained = tokio::time::timeout(self.options.shutdown_grace, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            // Tell the rest to hand their jobs back, and give them a moment to do it.
            let _ = stop_jobs_tx.send(true);
            let _ = tokio::time::timeout(Duration::from_secs(5), async {
                while tasks.join_next().await.is_some() {}
            })
            .await;
            tasks.abort_all();
        }
        // Every ack handed over is sent before the run ends.
        drop(shared);
        let _ = acker.await;
        *report.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What every job of a run shares.
struct Shared {
    queue: Arc<dyn Queue>,
    handlers: Arc<HashMap<String, BoxHandler>>,
    dead_hooks: Arc<HashMap<String, BoxDeadHook>>,
    report: Arc<std::sync::Mutex<WorkerReport>>,
    acks: crate::acker::AckSender,
}

async fn run_job(
    shared: Arc<Shared>,
    job: ReservedJob,
    reserved_at: tokio::time::Instant,
    options: WorkerOptions,
    mut stop: watch::Receiver<bool>,
) {
    let Shared {
        queue,
        handlers,
        dead_hooks,
        report,
        acks,
    } = &*shared;
    let bump = |f: fn(&mut WorkerReport)| f(&mut report.lock().unwrap_or_else(|p| p.into_inner()));
    let started = tokio::time::Instant::now();
    let count = |outcome: crate::metrics::Attempt| {
        crate::metrics::attempt(&job.queue, &job.task, outcome, started.elapsed());
    };
    let nacked = |outcome: &zeroscale_core::Result<NackOutcome>| match outcome {
        Ok(NackOutcome::Retrying { .. }) => crate::metrics::Attempt::Retried,
        Ok(NackOutcome::Dead) => crate::metrics::Attempt::Dead,
        Err(_) => crate::metrics::Attempt::Failed,
    };
    let Some(handler) = handlers.get(&job.task).cloned() else {
        let error = format!("no handler for task `{}` in this worker", job.task);
        tracing::warn!("{error}");
        let outcome = queue
            .nack(
                &job.lease,
                NackOptions {
                    error,
                    retry_after: None,
                    give_up: false,
                },
            )
            .await;
        count(nacked(&outcome));
        bump(|r| r.failed += 1);
        return;
    };
    let (cancel_tx, cancel_rx) = watch::channel(false);
    let (progress_tx, mut progress_rx) = tokio::sync::mpsc::unbounded_channel();
    let ctx = JobContext {
        id: job.id,
        attempt: job.attempt,
        max_attempts: job.max_attempts,
        queue: job.queue.clone(),
        cancelled: cancel_rx,
        progress: progress_tx,
    };
    // The handler runs in its own task so a panic is caught as a JoinError.
    let mut handle = tokio::spawn(handler(ctx, job.payload.clone()));
    // The lease runs from the reservation (just before this, or a held job's, at most a
    // third of the lease ago); each heartbeat renews it.
    let mut lease_until = reserved_at + options.lease;
    let beat = (options.lease / 3).max(Duration::from_millis(50));
    let deadline = tokio::time::sleep(options.job_timeout);
    tokio::pin!(deadline);
    let outcome: Option<HandlerResult> = loop {
        tokio::select! {
            joined = &mut handle => {
                break Some(match joined {
                    Ok(result) => result,
                    Err(e) if e.is_panic() => {
                        let message = e.into_panic();
                        let text = message
                            .downcast_ref::<&str>()
                            .map(|s| (*s).to_owned())
                            .or_else(|| message.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "a non-string panic".to_owned());
                        Err(Error::backend("worker", format!("handler panicked: {text}")))
                    }
                    Err(e) => Err(Error::backend("worker", format!("handler was stopped: {e}"))),
                });
            }
            _ = tokio::time::sleep(beat) => {
                while let Ok(progress) = progress_rx.try_recv() {
                    let _ = queue.update_progress(&job.lease, progress).await;
                }
                let asked = tokio::time::Instant::now();
                match queue.extend_lease(&job.lease, options.lease).await {
                    Ok(state) if state.cancelled => {
                        tracing::info!("job cancelled while running; stopping its handler");
                        let _ = cancel_tx.send(true);
                        handle.abort();
                        break None;
                    }
                    Ok(_) => lease_until = asked + options.lease,
                    // The queue cannot be reached (Redis restarting): the lease still
                    // holds until it runs out, so the handler goes on and the next beat
                    // tries again.
                    Err(e)
                        if e.kind() == zeroscale_core::ErrorKind::Unavailable
                            && tokio::time::Instant::now() + beat < lease_until =>
                    {
                        tracing::debug!(error = %e.chain(), "could not renew the job's lease; trying again at the next beat");
                    }
                    Err(e) => {
                        // The lease is gone (it expired, or the job finished elsewhere).
                        tracing::warn!(error = %e.chain(), "lost the job's lease; stopping its handler");
                        count(crate::metrics::Attempt::LeaseLost);
                        handle.abort();
                        break None;
                    }
                }
            }
            () = &mut deadline => {
                handle.abort();
                break Some(Err(Error::unavailable(format!("handler timed out after {}s", options.job_timeout.as_secs()))));
            }
            _ = stop.changed() => {
                handle.abort();
                // Hand the job back at once for another worker, the attempt not spent:
                // the job did not fail, its worker stopped.
                if let Err(e) = queue.release(&job.lease).await {
                    tracing::warn!(error = %e.chain(), "could not hand the job back at shutdown; it runs again when its lease expires");
                }
                bump(|r| r.released += 1);
                break None;
            }
        }
    };
    while let Ok(progress) = progress_rx.try_recv() {
        let _ = queue.update_progress(&job.lease, progress).await;
    }
    match outcome {
        Some(Ok(result)) => {
            count(crate::metrics::Attempt::Acked);
            tracing::debug!(
                duration_ms = started.elapsed().as_millis() as u64,
                "job succeeded"
            );
            // The acker sends it (with others) and counts it; it outlives this task.
            let _ = acks.send(crate::acker::Ack::new(job.lease, result, lease_until));
        }
        Some(Err(error)) => {
            let text = error.chain();
            let give_up = error.is_permanent();
            tracing::warn!(error = %text, give_up, "job attempt failed");
            let outcome = queue
                .nack(
                    &job.lease,
                    NackOptions {
                        error: text.clone(),
                        retry_after: error.retry_after(),
                        give_up,
                    },
                )
                .await;
            count(nacked(&outcome));
            bump(|r| r.failed += 1);
            if let (Ok(NackOutcome::Dead), Some(hook)) = (outcome, dead_hooks.get(&job.task)) {
                hook(job.payload, text).await;
            }
        }
        None => {}
    }
}
