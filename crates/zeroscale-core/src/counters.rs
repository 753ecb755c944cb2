//! Counters every instance of a deployment shares: what login throttling and rate limits
//! count with, so that a limit holds however many servers answer.
//!
//! A counter counts hits in a fixed window that starts at its first hit and lasts the
//! window given then; the next hit after it ends starts a new one. Every change is one
//! atomic operation in the shared engine (one Redis script, one SQL statement), so the
//! counts are exact: of `2N` concurrent hits on a fresh counter exactly `N` see a count
//! of at most `N`. A block is a key that stays set until a time: a lock-out.
//!
//! Redis holds them when the queue is on Redis; otherwise the application's database
//! (`zeroscale_queue::counters::connect_with`, then `zeroscale_db::counters`).

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::Result;

/// A counter's window after a hit, or as it stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowCount {
    /// Hits in the current window (0 when none runs).
    pub count: u64,
    /// When the window ends (now, when none runs).
    pub resets_at: DateTime<Utc>,
}

/// One hit of a batch ([`Counters::hit_many`]): `n` on `key`, in windows of `window`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// The counter.
    pub key: String,
    /// How much to add.
    pub n: u64,
    /// The window a hit starts when none runs.
    pub window: Duration,
}

/// The driver interface: what a shared engine implements.
#[async_trait]
pub trait Counters: Send + Sync + fmt::Debug + 'static {
    /// The engine's name (`redis`, `sqlite`, `postgres`).
    fn backend(&self) -> &str;

    /// Adds `n` to `key` in its current window, starting a window of `window` when none
    /// runs; returns the count after the hit. Atomic across every instance.
    async fn hit(&self, key: &str, n: u64, window: Duration) -> Result<WindowCount>;

    /// Applies `hits` in order, as [`Counters::hit`] one after the other would, and
    /// returns the count after each. A key may appear more than once. Engines override
    /// it to send a batch in one round trip; each hit stays atomic on its own (a batch is
    /// not a transaction: when it fails, some of its hits may have counted).
    async fn hit_many(&self, hits: &[Hit]) -> Result<Vec<WindowCount>> {
        let mut counts = Vec::with_capacity(hits.len());
        for hit in hits {
            counts.push(self.hit(&hit.key, hit.n, hit.window).await?);
        }
        Ok(counts)
    }

    /// `key`'s current window, without counting.
    async fn get(&self, key: &str) -> Result<WindowCount>;

    /// Ends `key`'s window and any block on it.
    async fn clear(&self, key: &str) -> Result<()>;

    /// Blocks `key` for `duration` from now, unless it is already blocked for longer.
    async fn block(&self, key: &str, duration: Duration) -> Result<()>;

    /// How long the longest block on any of `keys` still lasts; `None` when none is
    /// blocked.
    async fn blocked(&self, keys: &[String]) -> Result<Option<Duration>>;
}

/// The longest key any engine stores; longer keys are hashed by [`bounded_key`].
pub const MAX_KEY_LEN: usize = 200;

/// `key` as stored: itself when short enough, else its prefix up to the last `:` and
/// the SHA-256 of the rest, so user-supplied parts (usernames, addresses) cannot make a
/// key too long.
pub fn bounded_key(key: &str) -> String {
    if key.len() <= MAX_KEY_LEN {
        return key.to_owned();
    }
    use sha2::Digest;
    let digest = crate::hex(&sha2::Sha256::digest(key.as_bytes()));
    let head: String = key.chars().take(64).collect();
    format!("{head}#{digest}")
}
