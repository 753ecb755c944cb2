//! The database's circuit breaker: once the server is known to be down, calls fail at
//! once instead of each waiting out the pool's acquire timeout.
//!
//! Closed, every call goes to the pool. Each error that says the *connection* failed
//! (refused, lost, the pool timing out) is counted; `failures` of them, each within
//! `window` of the one before, open the breaker. Open, [`Breaker::check`] refuses every
//! call with [`Error::Unavailable`] without touching the pool, and one probe task runs
//! `SELECT 1` (bounded by the acquire timeout) every `probe_every` until one answers;
//! that closes the breaker. A statement that was wrong never counts; nor does a busy
//! SQLite file.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use zeroscale_core::{Error, Result};

/// When a breaker opens and how it probes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BreakerOptions {
    /// Connection failures in a row that open it; 0 never opens it.
    pub(crate) failures: u32,
    /// Longest gap between two failures that still counts them as in a row.
    pub(crate) window: Duration,
    /// Pause between two probes.
    pub(crate) probe_every: Duration,
    /// Longest a probe may take (the pool's acquire timeout: a slow server is not down).
    pub(crate) probe_timeout: Duration,
}

impl BreakerOptions {
    /// A breaker that never opens.
    pub(crate) const OFF: BreakerOptions = BreakerOptions {
        failures: 0,
        window: Duration::ZERO,
        probe_every: Duration::ZERO,
        probe_timeout: Duration::ZERO,
    };
}

/// One database's breaker, shared by every clone of its `Db`.
#[derive(Debug)]
pub(crate) struct Breaker {
    options: BreakerOptions,
    /// Read on every call: the only cost while closed.
    open: AtomicBool,
    state: Mutex<State>,
    /// What the refusal says: the engine and where it is (for the log, never clients).
    what: String,
}

#[derive(Debug, Default)]
struct State {
    /// Failures counted in a row.
    failures: u32,
    last_failure: Option<Instant>,
    /// When it opened, while it is open.
    opened_at: Option<Instant>,
    /// Times it has opened, for logs and tests.
    trips: u64,
}

impl Breaker {
    pub(crate) fn new(options: BreakerOptions, what: String) -> Breaker {
        Breaker {
            options,
            open: AtomicBool::new(false),
            state: Mutex::new(State::default()),
            what,
        }
    }

    /// `Ok` while closed; an `Unavailable` error at once while open.
    pub(crate) fn check(&self) -> Result<()> {
        if !self.open.load(Ordering::Acquire) {
            return Ok(());
        }
        let for_ms = self
            .lock()
            .opened_at
            .map_or(0, |at| at.elapsed().as_millis());
        Err(Error::unavailable(format!(
            "{} has not answered for {for_ms} ms: calls fail at once until a probe (every {} \
             ms) gets an answer; check that the server is running and reachable",
            self.what,
            self.options.probe_every.as_millis()
        )))
    }

    /// Whether it is open now.
    pub(crate) fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// Times it has opened since the pool was made.
    #[cfg(test)]
    pub(crate) fn trips(&self) -> u64 {
        self.lock().trips
    }

    /// Counts a connection failure; the one that reaches the threshold opens the breaker
    /// and starts probing through `conn`.
    pub(crate) fn record_failure(self: &Arc<Self>, conn: &DatabaseConnection) {
        if self.options.failures == 0 || self.is_open() {
            return;
        }
        let now = Instant::now();
        {
            let mut state = self.lock();
            let in_row = state
                .last_failure
                .is_some_and(|last| now.duration_since(last) <= self.options.window);
            state.failures = if in_row { state.failures + 1 } else { 1 };
            state.last_failure = Some(now);
            if state.failures < self.options.failures || state.opened_at.is_some() {
                return;
            }
            // Without a runtime there is nothing to probe with: stay closed.
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                return;
            };
            state.opened_at = Some(now);
            state.trips += 1;
            self.open.store(true, Ordering::Release);
            tracing::warn!(
                target: "zeroscale::db",
                failures = state.failures,
                "{} failed {} times in a row: failing calls at once and probing every {} ms",
                self.what,
                state.failures,
                self.options.probe_every.as_millis()
            );
            runtime.spawn(probe(Arc::downgrade(self), conn.clone()));
        }
    }

    fn close(&self) {
        let mut state = self.lock();
        let down_for = state.opened_at.take().map(|at| at.elapsed());
        state.failures = 0;
        state.last_failure = None;
        self.open.store(false, Ordering::Release);
        tracing::info!(
            target: "zeroscale::db",
            "{} answers again after {} ms: calls go through",
            self.what,
            down_for.unwrap_or_default().as_millis()
        );
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a few counters, consistent after any panic.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Probes until the server answers (then closes the breaker), the pool is closed, or
/// the last `Db` is dropped.
async fn probe(breaker: Weak<Breaker>, conn: DatabaseConnection) {
    loop {
        let Some(options) = breaker.upgrade().map(|b| b.options) else {
            return;
        };
        let backend = conn.get_database_backend();
        let answer = tokio::time::timeout(
            options.probe_timeout,
            conn.query_one_raw(Statement::from_string(backend, "SELECT 1")),
        )
        .await;
        let Some(breaker) = breaker.upgrade() else {
            return;
        };
        match answer {
            Ok(Ok(_)) => {
                breaker.close();
                return;
            }
            Ok(Err(e)) if crate::error::pool_closed(&e) => {
                // Closed on purpose: nothing will answer again.
                return;
            }
            Ok(Err(e)) => {
                tracing::debug!(target: "zeroscale::db", "probe of {}: {e}", breaker.what);
            }
            Err(_) => {
                tracing::debug!(
                    target: "zeroscale::db",
                    "probe of {}: no answer in {} ms",
                    breaker.what,
                    options.probe_timeout.as_millis()
                );
            }
        }
        drop(breaker);
        tokio::time::sleep(options.probe_every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(failures: u32) -> BreakerOptions {
        BreakerOptions {
            failures,
            window: Duration::from_secs(60),
            probe_every: Duration::from_millis(20),
            probe_timeout: Duration::from_secs(1),
        }
    }

    async fn sqlite() -> DatabaseConnection {
        sea_orm::Database::connect("sqlite::memory:").await.unwrap()
    }

    #[tokio::test]
    async fn opens_after_the_threshold_and_a_probe_closes_it() {
        let conn = sqlite().await;
        let breaker = Arc::new(Breaker::new(options(3), "the test database".into()));
        breaker.record_failure(&conn);
        breaker.record_failure(&conn);
        assert!(
            breaker.check().is_ok(),
            "two failures of three keep it closed"
        );
        breaker.record_failure(&conn);
        let err = breaker.check().unwrap_err();
        assert!(err.is_retriable(), "{err}");
        assert!(err.to_string().contains("the test database"), "{err}");
        assert_eq!(breaker.trips(), 1);
        // The database answers: the probe closes it.
        let deadline = Instant::now() + Duration::from_secs(5);
        while breaker.is_open() {
            assert!(
                Instant::now() < deadline,
                "the probe never closed the breaker"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(breaker.check().is_ok());
        // It counts from zero again.
        breaker.record_failure(&conn);
        assert!(breaker.check().is_ok());
    }

    #[tokio::test]
    async fn failures_far_apart_are_not_in_a_row() {
        let conn = sqlite().await;
        let breaker = Arc::new(Breaker::new(
            BreakerOptions {
                window: Duration::from_millis(30),
                ..options(2)
            },
            "the test database".into(),
        ));
        breaker.record_failure(&conn);
        tokio::time::sleep(Duration::from_millis(60)).await;
        breaker.record_failure(&conn);
        assert!(
            breaker.check().is_ok(),
            "a gap over the window restarts the count"
        );
        breaker.record_failure(&conn);
        assert!(breaker.check().is_err());
    }

    #[tokio::test]
    async fn off_never_opens() {
        let conn = sqlite().await;
        let breaker = Arc::new(Breaker::new(BreakerOptions::OFF, "db".into()));
        for _ in 0..100 {
            breaker.record_failure(&conn);
        }
        assert!(breaker.check().is_ok());
        assert_eq!(breaker.trips(), 0);
    }

    #[tokio::test]
    async fn a_closed_pool_ends_the_probe() {
        let conn = sqlite().await;
        let breaker = Arc::new(Breaker::new(options(1), "db".into()));
        conn.clone().close().await.unwrap();
        breaker.record_failure(&conn);
        assert!(breaker.is_open());
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Still open (nothing answered) and the probe task has ended: it held the only
        // other (weak) reference.
        assert!(breaker.is_open());
        assert_eq!(Arc::weak_count(&breaker), 0, "the probe still runs");
    }
}
