//! `queue.kind = "database"`: the queue in the application's own database
//! ([`zeroscale_db::queue::DbQueue`]), and the fan-out over that database's notices
//! (PostgreSQL `LISTEN/NOTIFY`, a notices table on SQLite).
//!
//! Both need the database handle the app already holds, given through
//! [`QueueContext::with_database`](crate::QueueContext::with_database).

use std::sync::Arc;

use async_trait::async_trait;
use futures::future::BoxFuture;
use tokio::sync::mpsc;
use zeroscale_core::config::{JobsConfig, QueueConfig};
use zeroscale_core::{Error, Queue, Result};
use zeroscale_db::Db;
use zeroscale_db::queue::DbQueue;

use crate::QueueContext;
use crate::fanout::{Fanout, FanoutBackend, Heard, relisten_delay};

fn database<'a>(config: &QueueConfig, context: &'a QueueContext) -> Result<&'a Db> {
    if !matches!(config, QueueConfig::Database(_)) {
        return Err(zeroscale_core::registry::wrong_config(
            "database",
            config.kind(),
        ));
    }
    let db = context.database.as_ref().ok_or_else(|| {
        Error::config(
            "queue.kind",
            "the database queue lives in the application's database, but none was given: \
             connect it with `QueueContext::default().with_database(db)`",
        )
    })?;
    if db.is_mongodb() {
        return Err(Error::config(
            "queue.kind",
            "the database queue (and its fan-out and counters) needs SQLite or PostgreSQL, \
             and the database is MongoDB: set `queue.kind = \"redis\"` (shared by every \
             process) or `queue.kind = \"memory\"` (one process, lost on exit)",
        ));
    }
    Ok(db)
}

/// The registry's connect for `queue.kind = "database"`.
pub(crate) fn connect<'a>(
    config: &'a QueueConfig,
    jobs: &'a JobsConfig,
    context: &'a QueueContext,
) -> BoxFuture<'a, Result<Arc<dyn Queue>>> {
    Box::pin(async move {
        let db = database(config, context)?;
        let QueueConfig::Database(options) = config else {
            unreachable!("checked by `database`");
        };
        Ok(Arc::new(DbQueue::new(db.clone(), jobs.clone(), options.clone())) as Arc<dyn Queue>)
    })
}

/// The registry's probe for `queue.kind = "database"`: the queue is wherever
/// `[database]` is, which its own check reaches.
pub(crate) fn probe(_: &QueueConfig) -> BoxFuture<'_, Result<String>> {
    Box::pin(async {
        Ok("the application's database (see the database check; jobs survive restarts)".to_owned())
    })
}

/// The registry's fan-out for `queue.kind = "database"`.
pub(crate) fn fanout<'a>(
    config: &'a QueueConfig,
    topic: &'a str,
    context: &'a QueueContext,
) -> BoxFuture<'a, Result<Option<Fanout>>> {
    Box::pin(async move {
        let db = database(config, context)?.clone();
        db.ping().await?;
        Ok(Some(Fanout::new(Arc::new(DbFanout {
            db,
            topic: format!("fanout_{topic}"),
            origin: crate::lease_token(),
        }))))
    })
}

/// The registry's counters for `queue.kind = "database"`: in the same database.
pub(crate) fn counters<'a>(
    config: &'a QueueConfig,
    context: &'a QueueContext,
) -> BoxFuture<'a, Result<Option<Arc<dyn zeroscale_core::Counters>>>> {
    Box::pin(async move {
        let db = database(config, context)?.clone();
        Ok(Some(Arc::new(zeroscale_db::counters::DbCounters::new(db))
            as Arc<dyn zeroscale_core::Counters>))
    })
}

#[derive(Debug, Clone)]
struct DbFanout {
    db: Db,
    topic: String,
    origin: String,
}

impl DbFanout {
    /// One subscription, until its connection fails or `to` closes.
    async fn listen_once(&self, to: &mpsc::Sender<Heard>) -> Result<()> {
        let mut listener = self.db.listen(&self.topic).await?;
        if to.send(Heard::Resumed).await.is_err() {
            return Ok(());
        }
        loop {
            let payload = tokio::select! {
                next = listener.next() => next?,
                () = to.closed() => return Ok(()),
            };
            let Some((origin, text)) = payload.split_once(' ') else {
                continue;
            };
            if origin != self.origin && to.send(Heard::Message(text.to_owned())).await.is_err() {
                return Ok(());
            }
        }
    }
}

#[async_trait]
impl FanoutBackend for DbFanout {
    async fn publish(&self, message: &str) -> Result<()> {
        self.db
            .notify(&self.topic, &format!("{} {message}", self.origin))
            .await
    }

    fn listen(&self, to: mpsc::Sender<Heard>) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut failures = 0u32;
            while !to.is_closed() {
                match this.listen_once(&to).await {
                    Ok(()) => failures = 0,
                    Err(e) => {
                        tracing::warn!(
                            location = %this.db.location(),
                            topic = %this.topic,
                            error = %e.chain(),
                            "database notice listener failed; listening again"
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
