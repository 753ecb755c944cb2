//! The worker's acker: acks of finished jobs, sent in batches by one task. Whatever
//! finished while the previous batch was on its way goes in the next, so a busy worker
//! acks many jobs per round trip, and a job's slot is free for the next reservation while
//! its ack travels. An ack that fails because the queue cannot be reached (Redis
//! restarting) is tried again until its job's lease would have run out: a job that
//! finished during a short outage is not run a second time.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::time::Instant;
use zeroscale_core::queue::LeaseToken;
use zeroscale_core::{ErrorKind, Queue};

use crate::worker::WorkerReport;

/// A finished job's ack on its way.
#[derive(Debug)]
pub(crate) struct Ack {
    pub(crate) lease: LeaseToken,
    pub(crate) result: Option<Value>,
    /// When the lease runs out: after that the job is the queue's to hand out again, and
    /// the ack is no longer tried.
    pub(crate) lease_until: Instant,
    /// Tries so far.
    tries: u32,
}

impl Ack {
    pub(crate) fn new(lease: LeaseToken, result: Option<Value>, lease_until: Instant) -> Ack {
        Ack {
            lease,
            result,
            lease_until,
            tries: 0,
        }
    }
}

pub(crate) type AckSender = tokio::sync::mpsc::UnboundedSender<Ack>;

/// Most acks in one batch.
const BATCH: usize = 256;
/// First wait before acks that could not be sent are tried again; it doubles up to
/// [`MAX_WAIT`].
const FIRST_WAIT: Duration = Duration::from_millis(100);
const MAX_WAIT: Duration = Duration::from_secs(2);

/// Starts the acker; it ends once every sender is dropped and every ack is settled
/// (confirmed, refused, or out of lease).
pub(crate) fn start(
    queue: Arc<dyn Queue>,
    report: Arc<std::sync::Mutex<WorkerReport>>,
) -> (AckSender, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Ack>();
    let task = tokio::spawn(async move {
        let mut open = true;
        let mut again: Vec<Ack> = Vec::new();
        let mut wait = FIRST_WAIT;
        loop {
            let mut batch = std::mem::take(&mut again);
            if batch.is_empty() {
                match rx.recv().await {
                    Some(ack) => batch.push(ack),
                    None => break,
                }
            } else {
                // Wait before trying again, taking newly finished jobs meanwhile.
                let pause = tokio::time::sleep(wait);
                tokio::pin!(pause);
                while open && batch.len() < BATCH {
                    tokio::select! {
                        more = rx.recv() => match more {
                            Some(ack) => batch.push(ack),
                            None => open = false,
                        },
                        () = &mut pause => break,
                    }
                }
                pause.await;
                wait = (wait * 2).min(MAX_WAIT);
            }
            while open && batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(ack) => batch.push(ack),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => open = false,
                }
            }
            let pairs: Vec<_> = batch
                .iter()
                .map(|ack| (ack.lease.clone(), ack.result.clone()))
                .collect();
            let results = queue.ack_many(&pairs).await;
            let mut acked = 0;
            for (mut ack, result) in batch.into_iter().zip(results) {
                ack.tries += 1;
                match result {
                    Ok(()) => acked += 1,
                    Err(e)
                        if e.kind() == ErrorKind::Unavailable
                            && Instant::now() + wait < ack.lease_until =>
                    {
                        tracing::debug!(job = %ack.lease.job_id, error = %e.chain(), "ack failed; trying again");
                        again.push(ack);
                    }
                    Err(e) if ack.tries > 1 && e.kind() != ErrorKind::Unavailable => {
                        // An earlier try may have gone through with only its answer lost.
                        tracing::info!(
                            job = %ack.lease.job_id,
                            tries = ack.tries,
                            error = %e.chain(),
                            "an ack tried again was refused; an earlier try may have gone through"
                        );
                    }
                    Err(e) => {
                        tracing::warn!(
                            job = %ack.lease.job_id,
                            tries = ack.tries,
                            error = %e.chain(),
                            "ack failed; the job runs again once its lease runs out"
                        );
                    }
                }
            }
            if again.is_empty() {
                wait = FIRST_WAIT;
            }
            report.lock().unwrap_or_else(|p| p.into_inner()).succeeded += acked;
        }
    });
    (tx, task)
}
