//! Small text messages every process sharing a queue engine hears: how one instance tells
//! the others to drop what they cached (a logout, a revoked key, a changed balance).
//!
//! Delivery is best effort, as with any pub/sub: a listener hears only what is published
//! while it is subscribed, and [`Heard::Resumed`] marks each (re)subscription, after which
//! anything published in between is lost. A cache fed by it must therefore also expire.
//!
//! The Redis queue fans out over Redis pub/sub on `<key_prefix>:fanout:<topic>`; the
//! database queue over its database's notices (PostgreSQL `LISTEN/NOTIFY`, a table on
//! SQLite). The in-memory queue is private to its process, so no other process needs to hear:
//! [`connect`] returns `None`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;
use zeroscale_core::config::QueueConfig;
use zeroscale_core::{Error, Result};

use crate::registry::BACKENDS;

/// What a listener hears.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// A message another process published (never this [`Fanout`]'s own).
    Message(String),
    /// The listener is subscribed (first, or again after losing its connection): messages
    /// published before this may have been missed.
    Resumed,
}

/// One backend's publish and listen.
#[async_trait]
pub trait FanoutBackend: Send + Sync + fmt::Debug {
    /// Sends `message` to every listener of the topic in other processes.
    async fn publish(&self, message: &str) -> Result<()>;

    /// Starts listening: what is heard goes to `to` until it is closed. Reconnects by
    /// itself, sending [`Heard::Resumed`] each time it is subscribed.
    fn listen(&self, to: mpsc::Sender<Heard>);
}

/// A topic shared by every process of one deployment.
#[derive(Debug, Clone)]
pub struct Fanout {
    backend: Arc<dyn FanoutBackend>,
}

impl Fanout {
    /// Wraps a backend.
    pub fn new(backend: Arc<dyn FanoutBackend>) -> Self {
        Fanout { backend }
    }

    /// Sends `message` (one line of text) to the other processes.
    pub async fn publish(&self, message: &str) -> Result<()> {
        self.backend.publish(message).await
    }

    /// Listens in the background; the receiver gets [`Heard::Resumed`] as soon as the
    /// subscription is live, then the messages. Dropping the receiver stops it.
    pub fn listen(&self) -> mpsc::Receiver<Heard> {
        let (to, from) = mpsc::channel(1024);
        self.backend.listen(to);
        from
    }
}

/// The fan-out of `topic` among every process configured with this queue, or `None` when
/// the queue is private to this process.
pub async fn connect(config: &QueueConfig, topic: &str) -> Result<Option<Fanout>> {
    connect_with(config, topic, &crate::QueueContext::default()).await
}

/// [`connect`], with what the app shares with the queue (the database queue fans out
/// over the application's database).
pub async fn connect_with(
    config: &QueueConfig,
    topic: &str,
    context: &crate::QueueContext,
) -> Result<Option<Fanout>> {
    if topic.is_empty() || topic.contains(char::is_whitespace) {
        return Err(Error::invalid_input(
            "a fan-out topic must be non-empty, without spaces",
        ));
    }
    (BACKENDS.entry(config.kind())?.fanout)(config, topic, context).await
}

/// The delay before listening again after a failure: doubling from 100 ms to 5 s.
#[cfg_attr(not(any(feature = "redis", feature = "database")), allow(dead_code))]
pub(crate) fn relisten_delay(failures: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << failures.min(6)).min(5_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relistening_backs_off_to_five_seconds() {
        assert_eq!(relisten_delay(0), Duration::from_millis(100));
        assert_eq!(relisten_delay(1), Duration::from_millis(200));
        assert_eq!(relisten_delay(10), Duration::from_secs(5));
    }

    #[tokio::test]
    async fn the_memory_queue_has_nobody_to_tell() {
        let config = QueueConfig::default();
        assert!(connect(&config, "auth").await.unwrap().is_none());
        assert!(connect(&config, "bad topic").await.is_err());
    }
}
