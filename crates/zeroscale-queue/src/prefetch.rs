//! The worker's prefetch: jobs reserved beyond its free slots and held for the next slots
//! that free, so a worker with few slots and short jobs does not pay a round trip to the
//! queue per job. Held jobs are already leased to this worker; if no slot frees within
//! the hold time they go back to the queue ([`Queue::release`]: queued again in their old
//! place, the attempt not spent) for other workers, and this worker holds half as many
//! next time; a held batch used up in time lets it hold twice as many again, up to
//! [`WorkerOptions::prefetch`](crate::worker::WorkerOptions::prefetch). So long jobs
//! settle at one held job, short ones at the full prefetch.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;
use zeroscale_core::Queue;
use zeroscale_core::queue::ReservedJob;

/// The jobs a worker holds beyond its running ones.
#[derive(Debug)]
pub(crate) struct Held {
    jobs: VecDeque<ReservedJob>,
    /// When the held jobs were reserved (all in one reservation); `None` when none are.
    since: Option<Instant>,
    /// The most to hold.
    max: usize,
    /// How many the next reservation holds: halves when held jobs time out, doubles when
    /// a batch is used up in time.
    ahead: usize,
    hold: Duration,
}

impl Held {
    /// The most a worker holds, whatever it is configured with.
    pub(crate) const LIMIT: usize = 1000;

    /// Holds up to `max` (at most [`LIMIT`](Held::LIMIT)) jobs, each for at most `hold`.
    pub(crate) fn new(max: usize, hold: Duration) -> Held {
        let max = max.min(Self::LIMIT);
        Held {
            jobs: VecDeque::new(),
            since: None,
            max,
            ahead: max,
            hold,
        }
    }

    /// How many jobs to reserve beyond the free slots: none while some are held.
    pub(crate) fn ahead(&self) -> usize {
        if self.jobs.is_empty() { self.ahead } else { 0 }
    }

    /// How many are held.
    pub(crate) fn len(&self) -> usize {
        self.jobs.len()
    }

    /// When the held jobs go back to the queue if no slot frees first.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.since.map(|since| since + self.hold)
    }

    /// Up to `n` held jobs, oldest first, each with when it was reserved (its lease runs
    /// from then).
    pub(crate) fn take(&mut self, n: usize) -> Vec<(ReservedJob, Instant)> {
        let Some(since) = self.since else {
            return Vec::new();
        };
        let n = n.min(self.jobs.len());
        let jobs = self.jobs.drain(..n).map(|job| (job, since)).collect();
        if self.jobs.is_empty() {
            // Used up in time: the jobs are short enough to hold more of.
            self.since = None;
            self.ahead = (self.ahead * 2).max(1).min(self.max);
        }
        jobs
    }

    /// Holds `jobs`, reserved at `at`.
    pub(crate) fn keep(&mut self, jobs: impl IntoIterator<Item = ReservedJob>, at: Instant) {
        self.jobs.extend(jobs);
        if !self.jobs.is_empty() {
            self.since = Some(at);
        }
    }

    /// Hands every held job back to the queue, its attempt not spent. `timed_out`: no slot
    /// freed within the hold time, so the worker holds half as many next time (at least
    /// one). Returns how many went back.
    pub(crate) async fn release_all(&mut self, queue: &dyn Queue, timed_out: bool) -> usize {
        let mut released = 0;
        for job in self.jobs.drain(..) {
            match queue.release(&job.lease).await {
                Ok(()) => released += 1,
                Err(e) => tracing::warn!(
                    id = %job.id,
                    error = %e.chain(),
                    "could not hand a prefetched job back; it runs again when its lease expires"
                ),
            }
        }
        self.since = None;
        if timed_out {
            self.ahead = (self.ahead / 2).max(1).min(self.max);
        }
        released
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zeroscale_core::queue::{JobId, LeaseToken};

    fn job() -> ReservedJob {
        let id = JobId::new();
        ReservedJob {
            id,
            queue: "q".into(),
            task: "t".into(),
            payload: serde_json::Value::Null,
            attempt: 1,
            max_attempts: 1,
            lease: LeaseToken {
                job_id: id,
                token: "x".into(),
            },
            lease_expires_at: chrono::Utc::now(),
            origin: Default::default(),
        }
    }

    #[tokio::test]
    async fn holds_what_is_used_and_less_after_a_timeout() {
        let queue = crate::MemoryQueue::new(Default::default());
        let mut held = Held::new(8, Duration::from_secs(1));
        assert_eq!(held.ahead(), 8);
        assert_eq!(held.deadline(), None);
        let at = Instant::now();
        held.keep((0..3).map(|_| job()), at);
        assert_eq!(held.ahead(), 0, "nothing more while some are held");
        assert_eq!(held.deadline(), Some(at + Duration::from_secs(1)));
        let taken = held.take(2);
        assert_eq!(taken.len(), 2);
        assert!(taken.iter().all(|(_, since)| *since == at));
        assert_eq!(held.len(), 1);
        // Timed out: the rest go back (these leases are not the memory queue's, so the
        // release fails and is only logged) and the next reservation holds half.
        assert_eq!(held.release_all(&queue, true).await, 0);
        assert_eq!(held.len(), 0);
        assert_eq!(held.ahead(), 4);
        for _ in 0..5 {
            held.release_all(&queue, true).await;
        }
        assert_eq!(held.ahead(), 1, "never below one");
        // Used up in time: twice as many, up to the most.
        held.keep([job()], Instant::now());
        held.take(5);
        assert_eq!(held.ahead(), 2);
        for _ in 0..5 {
            held.keep([job()], Instant::now());
            held.take(1);
        }
        assert_eq!(held.ahead(), 8);
    }

    #[tokio::test]
    async fn off_holds_nothing() {
        let mut held = Held::new(0, Duration::from_secs(1));
        assert_eq!(held.ahead(), 0);
        held.keep([job()], Instant::now());
        held.take(1);
        assert_eq!(held.ahead(), 0);
    }
}
