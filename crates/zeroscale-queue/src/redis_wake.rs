//! Wake-ups across processes on the Redis queue: the scripts that make a job ready
//! (enqueue, release, requeue) `PUBLISH` the job's queue name on `<prefix>:wake`, and
//! each process subscribes once, on a connection of its own, when one of its workers
//! first waits for jobs. A message wakes that process's idle workers ([`Wake`]); if the
//! subscription is lost, workers poll until it is back, and the first thing a new
//! subscription does is wake them, in case a job arrived in between. On a cluster the
//! subscription is on any node (Redis broadcasts messages to all), the next one after a
//! node is lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;

use crate::redis_conn::Subscriber;
use crate::wake::Wake;

#[derive(Debug)]
pub(crate) struct WakeListener {
    subscriber: Arc<Subscriber>,
    channel: String,
    location: String,
    wake: Arc<Wake>,
    started: AtomicBool,
}

impl WakeListener {
    /// `prefix` is the queue's key prefix with its hash tag, as the scripts see it.
    pub(crate) fn new(subscriber: Subscriber, prefix: &str, location: String) -> Self {
        WakeListener {
            subscriber: Arc::new(subscriber),
            channel: format!("{prefix}:wake"),
            location,
            wake: Arc::default(),
            started: AtomicBool::new(false),
        }
    }

    /// Returns when a job may have become ready; starts the subscription on first use.
    pub(crate) async fn wait(&self) {
        self.start();
        self.wake.wait().await;
    }

    fn start(&self) {
        if self.started.swap(true, Ordering::SeqCst) {
            return;
        }
        let subscriber = self.subscriber.clone();
        let channel = self.channel.clone();
        let location = self.location.clone();
        // The task ends once the queue is dropped (checked at each message and every
        // 30 s of quiet).
        let wake = Arc::downgrade(&self.wake);
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(100);
            while wake.strong_count() > 0 {
                match subscriber.pubsub().await {
                    Ok(mut pubsub) => match pubsub.subscribe(&channel).await {
                        Ok(()) => {
                            delay = Duration::from_millis(100);
                            // Jobs enqueued while nobody listened are found now.
                            match wake.upgrade() {
                                Some(w) => w.wake(),
                                None => return,
                            }
                            let mut messages = pubsub.on_message();
                            loop {
                                match tokio::time::timeout(Duration::from_secs(30), messages.next())
                                    .await
                                {
                                    Ok(Some(_)) => match wake.upgrade() {
                                        Some(w) => w.wake(),
                                        None => return,
                                    },
                                    Ok(None) => {
                                        tracing::warn!(%location, %channel, "the Redis job listener lost its connection; workers poll until it is back");
                                        break;
                                    }
                                    Err(_) if wake.strong_count() == 0 => return,
                                    Err(_) => {}
                                }
                            }
                        }
                        Err(e) => {
                            tracing::warn!(%location, %channel, error = %e, "cannot subscribe for new jobs on Redis; workers poll meanwhile");
                        }
                    },
                    Err(e) => {
                        tracing::warn!(%location, %channel, error = %e, "cannot connect to Redis to listen for new jobs; workers poll meanwhile");
                    }
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        });
    }
}
