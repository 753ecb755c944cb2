//! Shared counters that fall back to this process's memory while their engine is down, so
//! a limit becomes a per-process limit during an outage, never no limit.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::future::BoxFuture;
use zeroscale_core::counters::{Hit, WindowCount};
use zeroscale_core::{Counters, Error, Result};

use crate::memory_counters::MemoryCounters;

/// Connects the shared counters; called again (at most once a second) until it succeeds.
pub type Connect = Box<dyn Fn() -> BoxFuture<'static, Result<Arc<dyn Counters>>> + Send + Sync>;

/// How often a failed connection is tried again.
const RECONNECT_EVERY: Duration = Duration::from_secs(1);
/// How often an outage is logged while it lasts.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Counters on the engine `connect` reaches, falling back to process-local counters for
/// every call the engine cannot answer (and while it cannot be connected):
/// - hits, gets and blocks go to the local counters instead, so during an outage every
///   limit is counted per process, exactly;
/// - `blocked` always asks both, so a lock-out set during an outage holds on this process
///   until it ends, even after the engine is back;
/// - `clear` clears both and fails only when neither could.
///
/// Outages are logged (a warning at most every 10 s); nothing is returned as an error
/// except what the local counters refuse.
pub fn with_fallback(connect: Connect) -> Arc<dyn Counters> {
    Arc::new(Fallback {
        connect,
        shared: Mutex::new(Shared::Untried),
        connecting: tokio::sync::Mutex::new(()),
        local: MemoryCounters::new(),
        warned: Mutex::new(None),
    })
}

enum Shared {
    Untried,
    Failed(Instant),
    Connected(Arc<dyn Counters>),
}

struct Fallback {
    connect: Connect,
    shared: Mutex<Shared>,
    connecting: tokio::sync::Mutex<()>,
    local: MemoryCounters,
    warned: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Fallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fallback").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Fallback {
    /// The shared counters, connecting them when it is time to try; `None` to count
    /// locally.
    async fn shared(&self) -> Option<Arc<dyn Counters>> {
        match &*lock(&self.shared) {
            Shared::Connected(c) => return Some(Arc::clone(c)),
            Shared::Failed(at) if at.elapsed() < RECONNECT_EVERY => return None,
            _ => {}
        }
        // One caller connects; the others count locally meanwhile.
        let _connecting = self.connecting.try_lock().ok()?;
        if let Shared::Connected(c) = &*lock(&self.shared) {
            return Some(Arc::clone(c));
        }
        match (self.connect)().await {
            Ok(c) => {
                *lock(&self.shared) = Shared::Connected(Arc::clone(&c));
                Some(c)
            }
            Err(e) => {
                *lock(&self.shared) = Shared::Failed(Instant::now());
                self.outage(&e);
                None
            }
        }
    }

    fn outage(&self, error: &Error) {
        let mut warned = lock(&self.warned);
        if warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
            *warned = Some(Instant::now());
            tracing::warn!(
                error = %error.chain(),
                "the shared counters cannot be reached: login throttling and rate limits count \
                 in this process until they answer (each instance then enforces its limits on \
                 its own)"
            );
        }
    }
}

#[async_trait]
impl Counters for Fallback {
    fn backend(&self) -> &str {
        "fallback"
    }

    async fn hit(&self, key: &str, n: u64, window: Duration) -> Result<WindowCount> {
        if let Some(shared) = self.shared().await {
            match shared.hit(key, n, window).await {
                Ok(count) => return Ok(count),
                Err(e) => self.outage(&e),
            }
        }
        self.local.hit(key, n, window).await
    }

    async fn hit_many(&self, hits: &[Hit]) -> Result<Vec<WindowCount>> {
        if let Some(shared) = self.shared().await {
            match shared.hit_many(hits).await {
                Ok(counts) => return Ok(counts),
                // Some of the batch may have counted there: counting it here too errs on
                // the side of the limit.
                Err(e) => self.outage(&e),
            }
        }
        self.local.hit_many(hits).await
    }

    async fn get(&self, key: &str) -> Result<WindowCount> {
        if let Some(shared) = self.shared().await {
            match shared.get(key).await {
                Ok(count) => return Ok(count),
                Err(e) => self.outage(&e),
            }
        }
        self.local.get(key).await
    }

    async fn clear(&self, key: &str) -> Result<()> {
        self.local.clear(key).await?;
        if let Some(shared) = self.shared().await
            && let Err(e) = shared.clear(key).await
        {
            self.outage(&e);
        }
        Ok(())
    }

    async fn block(&self, key: &str, duration: Duration) -> Result<()> {
        if let Some(shared) = self.shared().await {
            match shared.block(key, duration).await {
                Ok(()) => return Ok(()),
                Err(e) => self.outage(&e),
            }
        }
        self.local.block(key, duration).await
    }

    async fn blocked(&self, keys: &[String]) -> Result<Option<Duration>> {
        let local = self.local.blocked(keys).await?;
        let shared = match self.shared().await {
            Some(shared) => match shared.blocked(keys).await {
                Ok(left) => left,
                Err(e) => {
                    self.outage(&e);
                    None
                }
            },
            None => None,
        };
        Ok(local.max(shared))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// Memory counters that fail every call while `down` is set.
    #[derive(Debug)]
    struct Flaky {
        inner: MemoryCounters,
        down: Arc<AtomicBool>,
    }

    impl Flaky {
        fn check(&self) -> Result<()> {
            if self.down.load(Ordering::SeqCst) {
                Err(Error::unavailable("connection refused (test)"))
            } else {
                Ok(())
            }
        }
    }

    #[async_trait]
    impl Counters for Flaky {
        fn backend(&self) -> &str {
            "flaky"
        }
        async fn hit(&self, key: &str, n: u64, window: Duration) -> Result<WindowCount> {
            self.check()?;
            self.inner.hit(key, n, window).await
        }
        async fn get(&self, key: &str) -> Result<WindowCount> {
            self.check()?;
            self.inner.get(key).await
        }
        async fn clear(&self, key: &str) -> Result<()> {
            self.check()?;
            self.inner.clear(key).await
        }
        async fn block(&self, key: &str, duration: Duration) -> Result<()> {
            self.check()?;
            self.inner.block(key, duration).await
        }
        async fn blocked(&self, keys: &[String]) -> Result<Option<Duration>> {
            self.check()?;
            self.inner.blocked(keys).await
        }
    }

    fn flaky() -> (Arc<Flaky>, Arc<AtomicBool>) {
        let down = Arc::new(AtomicBool::new(false));
        let c = Arc::new(Flaky {
            inner: MemoryCounters::new(),
            down: Arc::clone(&down),
        });
        (c, down)
    }

    fn over(shared: Arc<Flaky>) -> Arc<dyn Counters> {
        with_fallback(Box::new(move || {
            let c: Arc<dyn Counters> = shared.clone();
            Box::pin(async move { Ok(c) })
        }))
    }

    #[tokio::test]
    async fn conformance_while_up_and_while_down() {
        let (shared, down) = flaky();
        let c = over(shared);
        zeroscale_core::conformance::counters::run_all(c.as_ref(), "up").await;
        down.store(true, Ordering::SeqCst);
        zeroscale_core::conformance::counters::run_all(c.as_ref(), "down").await;
    }

    #[tokio::test]
    async fn an_outage_counts_locally_and_its_blocks_outlive_it() {
        let (shared, down) = flaky();
        let c = over(Arc::clone(&shared));
        let w = Duration::from_secs(60);
        assert_eq!(c.hit("k", 1, w).await.unwrap().count, 1);
        down.store(true, Ordering::SeqCst);
        // The local count starts afresh: a per-process limit, not none.
        assert_eq!(c.hit("k", 1, w).await.unwrap().count, 1);
        assert_eq!(c.hit("k", 1, w).await.unwrap().count, 2);
        c.block("k", Duration::from_secs(30)).await.unwrap();
        assert!(c.blocked(&["k".into()]).await.unwrap().is_some());
        down.store(false, Ordering::SeqCst);
        assert_eq!(c.hit("k", 1, w).await.unwrap().count, 2, "the engine again");
        assert!(
            c.blocked(&["k".into()]).await.unwrap().is_some(),
            "the lock-out set during the outage still holds"
        );
        c.clear("k").await.unwrap();
        assert_eq!(c.blocked(&["k".into()]).await.unwrap(), None);
        assert_eq!(shared.inner.get("k").await.unwrap().count, 0);
    }

    #[tokio::test]
    async fn a_failed_connection_is_retried_at_most_once_a_second() {
        let attempts = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&attempts);
        let c = with_fallback(Box::new(move || {
            seen.fetch_add(1, Ordering::SeqCst);
            Box::pin(async { Err(Error::unavailable("refused (test)")) })
        }));
        for _ in 0..20 {
            c.hit("k", 1, Duration::from_secs(60)).await.unwrap();
        }
        assert_eq!(attempts.load(Ordering::SeqCst), 1);
        assert_eq!(c.get("k").await.unwrap().count, 20, "counted locally");
    }
}
