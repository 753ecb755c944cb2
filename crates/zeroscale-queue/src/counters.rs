//! The shared [`Counters`] (login throttling, rate limits) on the queue's engine: Redis
//! for the Redis queue, the application's database for the database queue, and `None`
//! for the in-memory queue, which no other process shares (the app then counts in its
//! database). [`coalescing`] sends concurrent hits together, whichever the engine;
//! [`with_fallback`] counts in the process ([`MemoryCounters`]) while the engine is down.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use tokio::sync::oneshot;
use zeroscale_core::config::QueueConfig;
use zeroscale_core::counters::{Hit, WindowCount};
use zeroscale_core::{Counters, Error, Result};

use crate::registry::BACKENDS;

pub use crate::fallback_counters::{Connect, with_fallback};
pub use crate::memory_counters::MemoryCounters;

/// The counters on the engine of the queue `config` describes, or `None` when that
/// queue is private to this process.
pub async fn connect_with(
    config: &QueueConfig,
    context: &crate::QueueContext,
) -> Result<Option<Arc<dyn Counters>>> {
    (BACKENDS.entry(config.kind())?.counters)(config, context).await
}

/// `counters` with concurrent hits sent together: while one batch is on its way to
/// the engine, the hits that arrive wait and go as the next batch, hits on the same
/// counter added into one ([`Counters::hit_many`]). Each caller gets the count it would
/// have seen had the hits run one after the other, so limits stay exact; under load the
/// engine sees one call per round trip instead of one per hit. A lone hit goes at once.
/// The batches run on their own Tokio task, so a caller that gives up (a client that
/// hangs up) never loses the others' counts. Needs a Tokio runtime; without one it
/// counts hit by hit.
pub fn coalescing(counters: Arc<dyn Counters>) -> Arc<dyn Counters> {
    Arc::new(Coalescing {
        inner: counters,
        state: Arc::default(),
    })
}

struct Coalescing {
    inner: Arc<dyn Counters>,
    state: Arc<Mutex<Waiting>>,
}

#[derive(Default)]
struct Waiting {
    hits: Vec<Waiter>,
    sending: bool,
}

struct Waiter {
    hit: Hit,
    reply: oneshot::Sender<Result<WindowCount>>,
}

impl std::fmt::Debug for Coalescing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coalescing")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

fn lock(state: &Mutex<Waiting>) -> std::sync::MutexGuard<'_, Waiting> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sends batches until no hit waits.
async fn send_batches(inner: Arc<dyn Counters>, state: Arc<Mutex<Waiting>>) {
    loop {
        let waiters = {
            let mut waiting = lock(&state);
            if waiting.hits.is_empty() {
                waiting.sending = false;
                return;
            }
            std::mem::take(&mut waiting.hits)
        };
        // One hit per (counter, window), in order of first arrival.
        let mut merged: Vec<(Hit, Vec<Waiter>)> = Vec::new();
        let mut index: HashMap<(String, Duration), usize> = HashMap::new();
        for waiter in waiters {
            let at = *index
                .entry((waiter.hit.key.clone(), waiter.hit.window))
                .or_insert_with(|| {
                    merged.push((
                        Hit {
                            n: 0,
                            ..waiter.hit.clone()
                        },
                        Vec::new(),
                    ));
                    merged.len() - 1
                });
            merged[at].0.n = merged[at].0.n.saturating_add(waiter.hit.n);
            merged[at].1.push(waiter);
        }
        let hits: Vec<Hit> = merged.iter().map(|(hit, _)| hit.clone()).collect();
        let counted = AssertUnwindSafe(inner.hit_many(&hits))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| Err(Error::unavailable("the counters' engine call panicked")));
        match counted {
            Ok(counts) if counts.len() == hits.len() => {
                for ((hit, waiters), after) in merged.into_iter().zip(counts) {
                    // The merged hit ended at `after.count`: its parts end before it in
                    // arrival order.
                    let mut count = after.count.saturating_sub(hit.n);
                    for waiter in waiters {
                        count = count.saturating_add(waiter.hit.n);
                        let _ = waiter.reply.send(Ok(WindowCount { count, ..after }));
                    }
                }
            }
            Ok(counts) => {
                let message = format!(
                    "the counters answered a batch of {} with {} counts",
                    hits.len(),
                    counts.len()
                );
                for waiter in merged.into_iter().flat_map(|(_, w)| w) {
                    let _ = waiter.reply.send(Err(Error::unavailable(message.clone())));
                }
            }
            Err(e) => {
                let message = format!("counting failed: {}", e.chain());
                for waiter in merged.into_iter().flat_map(|(_, w)| w) {
                    let _ = waiter.reply.send(Err(Error::unavailable(message.clone())));
                }
            }
        }
    }
}

#[async_trait]
impl Counters for Coalescing {
    fn backend(&self) -> &str {
        self.inner.backend()
    }

    async fn hit(&self, key: &str, n: u64, window: Duration) -> Result<WindowCount> {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return self.inner.hit(key, n, window).await;
        };
        let (reply, answer) = oneshot::channel();
        let start = {
            let mut waiting = lock(&self.state);
            waiting.hits.push(Waiter {
                hit: Hit {
                    key: key.to_owned(),
                    n,
                    window,
                },
                reply,
            });
            !std::mem::replace(&mut waiting.sending, true)
        };
        if start {
            runtime.spawn(send_batches(self.inner.clone(), self.state.clone()));
        }
        answer
            .await
            .unwrap_or_else(|_| Err(Error::unavailable("the counters' batching task ended")))
    }

    async fn hit_many(&self, hits: &[Hit]) -> Result<Vec<WindowCount>> {
        self.inner.hit_many(hits).await
    }

    async fn get(&self, key: &str) -> Result<WindowCount> {
        self.inner.get(key).await
    }

    async fn clear(&self, key: &str) -> Result<()> {
        self.inner.clear(key).await
    }

    async fn block(&self, key: &str, duration: Duration) -> Result<()> {
        self.inner.block(key, duration).await
    }

    async fn blocked(&self, keys: &[String]) -> Result<Option<Duration>> {
        self.inner.blocked(keys).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Counts in memory, one engine call at a time taking 2 ms; can be told to panic.
    #[derive(Debug, Default)]
    struct Slow {
        counts: Mutex<HashMap<String, u64>>,
        calls: AtomicUsize,
        panic_next: std::sync::atomic::AtomicBool,
    }

    #[async_trait]
    impl Counters for Slow {
        fn backend(&self) -> &str {
            "slow"
        }
        async fn hit(&self, key: &str, n: u64, window: Duration) -> Result<WindowCount> {
            let hit = Hit {
                key: key.to_owned(),
                n,
                window,
            };
            Ok(self.hit_many(&[hit]).await?[0])
        }
        async fn hit_many(&self, hits: &[Hit]) -> Result<Vec<WindowCount>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(2)).await;
            assert!(
                !self.panic_next.swap(false, Ordering::SeqCst),
                "the engine broke"
            );
            let mut counts = self.counts.lock().unwrap();
            Ok(hits
                .iter()
                .map(|h| {
                    let c = counts.entry(h.key.clone()).or_default();
                    *c += h.n;
                    WindowCount {
                        count: *c,
                        resets_at: chrono::Utc::now(),
                    }
                })
                .collect())
        }
        async fn get(&self, _: &str) -> Result<WindowCount> {
            unreachable!()
        }
        async fn clear(&self, _: &str) -> Result<()> {
            unreachable!()
        }
        async fn block(&self, _: &str, _: Duration) -> Result<()> {
            unreachable!()
        }
        async fn blocked(&self, _: &[String]) -> Result<Option<Duration>> {
            unreachable!()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_hits_are_exact_and_go_together() {
        let engine = Arc::new(Slow::default());
        let counters = coalescing(engine.clone());
        let minute = Duration::from_secs(60);
        let tasks: Vec<_> = (0..300)
            .map(|i| {
                let counters = counters.clone();
                let key = if i % 3 == 0 { "b" } else { "a" };
                let n = if i % 10 == 0 { 2 } else { 1 };
                tokio::spawn(async move { (key, n, counters.hit(key, n, minute).await) })
            })
            .collect();
        let mut seen: HashMap<&str, Vec<u64>> = HashMap::new();
        let mut added: HashMap<&str, u64> = HashMap::new();
        for task in tasks {
            let (key, n, counted) = task.await.unwrap();
            let count = counted.unwrap().count;
            // A hit of 2 owns two counts: the one it returns and the one before.
            seen.entry(key)
                .or_default()
                .extend((0..n).map(|k| count - k));
            *added.entry(key).or_default() += n;
        }
        for (key, mut counts) in seen {
            counts.sort_unstable();
            assert_eq!(
                counts,
                (1..=added[key]).collect::<Vec<_>>(),
                "counter {key}"
            );
        }
        let calls = engine.calls.load(Ordering::SeqCst);
        assert!(calls < 100, "300 hits took {calls} engine calls");
    }

    #[tokio::test]
    async fn a_failed_batch_fails_its_hits_only() {
        let engine = Arc::new(Slow::default());
        let counters = coalescing(engine.clone());
        let minute = Duration::from_secs(60);
        engine.panic_next.store(true, Ordering::SeqCst);
        let err = counters.hit("k", 1, minute).await.unwrap_err();
        assert!(err.to_string().contains("panicked"), "{err}");
        assert_eq!(counters.hit("k", 1, minute).await.unwrap().count, 1);
    }

    #[tokio::test]
    async fn a_caller_that_gives_up_leaves_the_others_counted() {
        let engine = Arc::new(Slow::default());
        let counters = coalescing(engine.clone());
        let minute = Duration::from_secs(60);
        // The first caller starts the batch and is dropped while it is out.
        let first = counters.hit("k", 1, minute);
        let dropped = tokio::time::timeout(Duration::from_micros(10), first).await;
        assert!(dropped.is_err(), "the engine answered within 10 µs");
        let rest: Vec<u64> =
            futures::future::join_all((0..5).map(|_| counters.hit("k", 1, minute)))
                .await
                .into_iter()
                .map(|r| r.unwrap().count)
                .collect();
        assert_eq!(rest, [2, 3, 4, 5, 6]);
    }
}
