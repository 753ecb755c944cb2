//! What the worker tests share: a fast-retrying memory queue, worker options with short
//! leases, a wait for a job's state, and `Counting`, a queue that records its batches and
//! can play unreachable.
#![allow(dead_code)] // each test file uses its part

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use zeroscale_core::Queue;
use zeroscale_core::config::JobsConfig;
use zeroscale_core::queue::{JobId, JobState, NewJob};
use zeroscale_queue::MemoryQueue;
use zeroscale_queue::worker::WorkerOptions;

pub(crate) fn queue() -> Arc<dyn Queue> {
    Arc::new(MemoryQueue::new(JobsConfig {
        backoff_base_ms: 20,
        backoff_max_secs: 1,
        default_max_attempts: 2,
        ..Default::default()
    }))
}

pub(crate) fn options() -> WorkerOptions {
    WorkerOptions {
        queues: vec!["default".into()],
        concurrency: 2,
        lease: Duration::from_millis(600),
        job_timeout: Duration::from_secs(5),
        shutdown_grace: Duration::from_secs(2),
        max_poll_interval: Duration::from_millis(50),
        ..Default::default()
    }
}

pub(crate) async fn wait_for(
    q: &Arc<dyn Queue>,
    id: JobId,
    state: JobState,
) -> zeroscale_core::queue::JobStatus {
    for _ in 0..200 {
        let status = q.status(id).await.unwrap();
        if status.state == state {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "job {id} never reached {state}: {:?}",
        q.status(id).await.unwrap()
    );
}

/// A queue that records how many jobs each reservation and each ack batch carried, and
/// can play unreachable for its next acks and lease renewals.
#[derive(Debug, Default)]
pub(crate) struct Counting {
    inner: Option<Arc<dyn Queue>>,
    pub(crate) reserved: std::sync::Mutex<Vec<usize>>,
    pub(crate) acked: std::sync::Mutex<Vec<usize>>,
    /// Ack batches and lease renewals still to fail as `unavailable`.
    pub(crate) unreachable_for: AtomicUsize,
    pub(crate) failed_calls: AtomicUsize,
}

impl Counting {
    pub(crate) fn on(inner: Arc<dyn Queue>) -> Counting {
        Counting {
            inner: Some(inner),
            ..Default::default()
        }
    }

    fn inner(&self) -> &Arc<dyn Queue> {
        self.inner.as_ref().expect("an inner queue")
    }

    /// Whether this call plays the outage.
    fn unreachable(&self) -> bool {
        let hit = self
            .unreachable_for
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if hit {
            self.failed_calls.fetch_add(1, Ordering::SeqCst);
        }
        hit
    }
}

fn outage() -> zeroscale_core::Error {
    zeroscale_core::Error::unavailable("the queue is restarting (a test outage)")
}

#[async_trait::async_trait]
impl Queue for Counting {
    fn backend(&self) -> &str {
        "counting"
    }
    async fn enqueue(&self, job: NewJob) -> zeroscale_core::Result<JobId> {
        self.inner().enqueue(job).await
    }
    async fn reserve(
        &self,
        opts: &zeroscale_core::queue::ReserveOptions,
    ) -> zeroscale_core::Result<Option<zeroscale_core::queue::ReservedJob>> {
        Ok(self.reserve_many(opts, 1).await?.pop())
    }
    async fn reserve_many(
        &self,
        opts: &zeroscale_core::queue::ReserveOptions,
        max: usize,
    ) -> zeroscale_core::Result<Vec<zeroscale_core::queue::ReservedJob>> {
        let jobs = self.inner().reserve_many(opts, max).await?;
        if !jobs.is_empty() {
            self.reserved.lock().unwrap().push(jobs.len());
        }
        Ok(jobs)
    }
    async fn ack(
        &self,
        lease: &zeroscale_core::queue::LeaseToken,
        result: Option<serde_json::Value>,
    ) -> zeroscale_core::Result<()> {
        self.ack_many(&[(lease.clone(), result)])
            .await
            .pop()
            .unwrap()
    }
    async fn ack_many(
        &self,
        done: &[(zeroscale_core::queue::LeaseToken, Option<serde_json::Value>)],
    ) -> Vec<zeroscale_core::Result<()>> {
        // Slow acks, so that jobs finishing meanwhile pile up for the next batch.
        tokio::time::sleep(Duration::from_millis(20)).await;
        if self.unreachable() {
            return done.iter().map(|_| Err(outage())).collect();
        }
        self.acked.lock().unwrap().push(done.len());
        self.inner().ack_many(done).await
    }
    async fn nack(
        &self,
        lease: &zeroscale_core::queue::LeaseToken,
        opts: zeroscale_core::queue::NackOptions,
    ) -> zeroscale_core::Result<zeroscale_core::queue::NackOutcome> {
        self.inner().nack(lease, opts).await
    }
    async fn release(
        &self,
        lease: &zeroscale_core::queue::LeaseToken,
    ) -> zeroscale_core::Result<()> {
        self.inner().release(lease).await
    }
    async fn extend_lease(
        &self,
        lease: &zeroscale_core::queue::LeaseToken,
        by: Duration,
    ) -> zeroscale_core::Result<zeroscale_core::queue::LeaseState> {
        if self.unreachable() {
            return Err(outage());
        }
        self.inner().extend_lease(lease, by).await
    }
    async fn update_progress(
        &self,
        lease: &zeroscale_core::queue::LeaseToken,
        progress: zeroscale_core::queue::Progress,
    ) -> zeroscale_core::Result<()> {
        self.inner().update_progress(lease, progress).await
    }
    async fn status(&self, id: JobId) -> zeroscale_core::Result<zeroscale_core::queue::JobStatus> {
        self.inner().status(id).await
    }
    async fn cancel(&self, id: JobId) -> zeroscale_core::Result<JobState> {
        self.inner().cancel(id).await
    }
    async fn list_dead(
        &self,
        queue: &str,
        page: zeroscale_core::queue::PageOptions,
    ) -> zeroscale_core::Result<Vec<zeroscale_core::queue::JobStatus>> {
        self.inner().list_dead(queue, page).await
    }
    async fn requeue_dead(&self, id: JobId) -> zeroscale_core::Result<()> {
        self.inner().requeue_dead(id).await
    }
    async fn purge_dead(&self, queue: &str) -> zeroscale_core::Result<u64> {
        self.inner().purge_dead(queue).await
    }
    async fn stats(
        &self,
        queue: &str,
    ) -> zeroscale_core::Result<zeroscale_core::queue::QueueStats> {
        self.inner().stats(queue).await
    }
    async fn list(
        &self,
        queue: &str,
        state: Option<JobState>,
        page: zeroscale_core::queue::PageOptions,
    ) -> zeroscale_core::Result<Vec<zeroscale_core::queue::JobStatus>> {
        self.inner().list(queue, state, page).await
    }
    async fn health(&self) -> zeroscale_core::Result<()> {
        self.inner().health().await
    }
}
