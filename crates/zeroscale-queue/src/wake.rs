//! Waking this process's idle workers when jobs arrive, so a job enqueued on an idle
//! worker starts at once instead of at the worker's next poll (which backs off to
//! `max_poll_interval`). The queue calls [`Wake::wake`] after every change that makes a
//! job ready; [`Queue::wait_for_jobs`](zeroscale_core::Queue::wait_for_jobs) waits on
//! [`Wake::wait`]. Polling stays as the fallback (a lost wake-up, a delayed job coming
//! due), so a missed wake-up costs latency, never a job.

use tokio::sync::Notify;

#[derive(Debug, Default)]
pub(crate) struct Wake(Notify);

impl Wake {
    /// Wakes every worker waiting now, and leaves one wake-up for the next to wait: a
    /// worker whose reservation came back empty just before this job arrived, and that
    /// was not yet waiting, reserves again at once instead of sleeping through it.
    pub(crate) fn wake(&self) {
        self.0.notify_waiters();
        self.0.notify_one();
    }

    /// Returns at the next [`Wake::wake`] (or at once for one left over).
    pub(crate) async fn wait(&self) {
        self.0.notified().await;
    }
}
