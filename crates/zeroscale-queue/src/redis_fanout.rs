//! [`crate::fanout`] over Redis pub/sub: `PUBLISH <key_prefix>:fanout:<topic> "<origin>
//! <message>"`, where the origin is random per [`crate::fanout::Fanout`] so a process does
//! not hear itself. On a cluster, publishing on any node reaches subscribers on every
//! node.

use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::mpsc;
use zeroscale_core::config::{QueueConfig, RedisQueueConfig};
use zeroscale_core::{Error, Result};

use crate::redis_conn::{RedisConn, Subscriber};

use crate::fanout::{Fanout, FanoutBackend, Heard, relisten_delay};

#[derive(Clone)]
struct RedisFanout {
    subscriber: std::sync::Arc<Subscriber>,
    conn: RedisConn,
    channel: String,
    origin: String,
    location: String,
}

impl std::fmt::Debug for RedisFanout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisFanout")
            .field("location", &self.location)
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

async fn connect(config: &RedisQueueConfig, topic: &str) -> Result<Fanout> {
    let conn = crate::redis_conn::connect(config).await?;
    let location = config.location();
    let subscriber = std::sync::Arc::new(Subscriber::new(config)?);
    Ok(Fanout::new(std::sync::Arc::new(RedisFanout {
        subscriber,
        conn,
        channel: format!("{}:fanout:{topic}", config.key_prefix),
        origin: crate::lease_token(),
        location,
    })))
}

impl RedisFanout {
    /// One subscription, until its connection fails or `to` closes. `Ok(true)` when it
    /// was subscribed at all.
    async fn listen_once(&self, to: &mpsc::Sender<Heard>) -> redis::RedisResult<bool> {
        let mut pubsub = self.subscriber.pubsub().await?;
        pubsub.subscribe(&self.channel).await?;
        if to.send(Heard::Resumed).await.is_err() {
            return Ok(true);
        }
        let mut messages = pubsub.on_message();
        while let Some(message) = messages.next().await {
            let Ok(payload) = message.get_payload::<String>() else {
                continue;
            };
            let Some((origin, text)) = payload.split_once(' ') else {
                continue;
            };
            if origin == self.origin {
                continue;
            }
            if to.send(Heard::Message(text.to_owned())).await.is_err() {
                break;
            }
        }
        Ok(true)
    }
}

#[async_trait]
impl FanoutBackend for RedisFanout {
    async fn publish(&self, message: &str) -> Result<()> {
        let mut conn = self.conn.clone();
        redis::cmd("PUBLISH")
            .arg(&self.channel)
            .arg(format!("{} {message}", self.origin))
            .query_async::<i64>(&mut conn)
            .await
            .map(drop)
            .map_err(|e| Error::unavailable_from(format!("cannot publish to {}", self.location), e))
    }

    fn listen(&self, to: mpsc::Sender<Heard>) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut failures = 0u32;
            while !to.is_closed() {
                match this.listen_once(&to).await {
                    Ok(_) => failures = 0,
                    Err(e) => {
                        tracing::warn!(
                            location = %this.location,
                            channel = %this.channel,
                            error = %e,
                            "Redis pub/sub listener failed; subscribing again"
                        );
                        failures += 1;
                    }
                }
                if to.is_closed() {
                    break;
                }
                tokio::time::sleep(relisten_delay(failures)).await;
            }
        });
    }
}

/// The registry's fan-out for `queue.kind = "redis"`.
pub(crate) fn fanout<'a>(
    config: &'a QueueConfig,
    topic: &'a str,
    _: &'a crate::QueueContext,
) -> futures::future::BoxFuture<'a, Result<Option<Fanout>>> {
    Box::pin(async move {
        let QueueConfig::Redis(c) = config else {
            return Err(zeroscale_core::registry::wrong_config(
                "redis",
                config.kind(),
            ));
        };
        connect(c, topic).await.map(Some)
    })
}
