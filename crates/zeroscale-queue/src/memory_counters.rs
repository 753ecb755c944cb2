//! Counters in this process's memory: exact for the process, shared with nobody, gone at
//! exit. What [`crate::counters::with_fallback`] counts with while the shared engine is
//! down, so a limit falls back to a per-process one instead of to none.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use zeroscale_core::Result;
use zeroscale_core::counters::{Counters, WindowCount, bounded_key};

/// Keys kept before expired windows and blocks are first swept out.
const SWEEP_AT: usize = 10_000;

#[derive(Debug)]
struct State {
    /// Count and end of the running window.
    windows: HashMap<String, (u64, DateTime<Utc>)>,
    /// End of the block.
    blocks: HashMap<String, DateTime<Utc>>,
    /// Keys (windows and blocks) at which the next sweep runs: twice what the last one
    /// left, so many live keys cost one sweep per doubling, not one per call.
    sweep_at: usize,
}

impl Default for State {
    fn default() -> Self {
        State {
            windows: HashMap::new(),
            blocks: HashMap::new(),
            sweep_at: SWEEP_AT,
        }
    }
}

impl State {
    fn sweep(&mut self, now: DateTime<Utc>) {
        if self.windows.len() + self.blocks.len() < self.sweep_at {
            return;
        }
        self.windows.retain(|_, (_, end)| *end > now);
        self.blocks.retain(|_, end| *end > now);
        self.sweep_at = ((self.windows.len() + self.blocks.len()) * 2).max(SWEEP_AT);
    }
}

/// Process-local [`Counters`].
#[derive(Debug, Default)]
pub struct MemoryCounters {
    state: Mutex<State>,
}

impl MemoryCounters {
    /// Empty counters.
    pub fn new() -> Self {
        MemoryCounters::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Plain numbers: a panic elsewhere cannot leave them half-written.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn span(duration: Duration) -> chrono::Duration {
    chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX)
}

#[async_trait]
impl Counters for MemoryCounters {
    fn backend(&self) -> &str {
        "memory"
    }

    async fn hit(&self, key: &str, n: u64, window: Duration) -> Result<WindowCount> {
        let now = Utc::now();
        let mut state = self.state();
        state.sweep(now);
        let entry = state.windows.entry(bounded_key(key)).or_insert((0, now));
        if entry.1 <= now {
            *entry = (
                0,
                now.checked_add_signed(span(window))
                    .unwrap_or(DateTime::<Utc>::MAX_UTC),
            );
        }
        entry.0 = entry.0.saturating_add(n);
        Ok(WindowCount {
            count: entry.0,
            resets_at: entry.1,
        })
    }

    async fn get(&self, key: &str) -> Result<WindowCount> {
        let now = Utc::now();
        Ok(match self.state().windows.get(&bounded_key(key)) {
            Some(&(count, end)) if end > now => WindowCount {
                count,
                resets_at: end,
            },
            _ => WindowCount {
                count: 0,
                resets_at: now,
            },
        })
    }

    async fn clear(&self, key: &str) -> Result<()> {
        let key = bounded_key(key);
        let mut state = self.state();
        state.windows.remove(&key);
        state.blocks.remove(&key);
        Ok(())
    }

    async fn block(&self, key: &str, duration: Duration) -> Result<()> {
        let now = Utc::now();
        let until = now
            .checked_add_signed(span(duration))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let mut state = self.state();
        state.sweep(now);
        let end = state.blocks.entry(bounded_key(key)).or_insert(until);
        if *end < until {
            *end = until;
        }
        Ok(())
    }

    async fn blocked(&self, keys: &[String]) -> Result<Option<Duration>> {
        let now = Utc::now();
        let state = self.state();
        Ok(keys
            .iter()
            .filter_map(|k| state.blocks.get(&bounded_key(k)))
            .filter(|end| **end > now)
            .max()
            .and_then(|end| (*end - now).to_std().ok()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conformance() {
        zeroscale_core::conformance::counters::run_all(&MemoryCounters::new(), "mem").await;
    }

    #[tokio::test]
    async fn expired_keys_are_swept() {
        let c = MemoryCounters::new();
        for i in 0..SWEEP_AT + 5 {
            c.hit(&format!("k{i}"), 1, Duration::from_millis(1))
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        c.hit("last", 1, Duration::from_secs(60)).await.unwrap();
        assert!(c.state().windows.len() < SWEEP_AT, "expired windows stayed");
    }
}
