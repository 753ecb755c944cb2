//! Small text notices every process on one database hears: the fan-out of the database
//! queue (how one instance tells the others to drop cached credentials) and the wake-ups
//! of idle workers.
//!
//! PostgreSQL: `pg_notify` and `LISTEN`, delivered at commit, nothing stored. SQLite:
//! rows in `queue_notices`, read in id order by each listener every 100 ms (one writer at
//! a time, so ids are committed in order and none is skipped); rows older than five
//! minutes are deleted as new ones are written.
//!
//! Best effort, like any pub/sub: a listener hears what is sent while it listens.

use std::time::Duration;

use sea_orm::{ConnectionTrait, Value};
use zeroscale_core::{Error, Result};

use super::sql::{Sql, get};
use crate::{Db, Dialect};

/// How often a SQLite listener reads new notices.
const SQLITE_POLL: Duration = Duration::from_millis(100);
/// How long SQLite keeps a notice.
const SQLITE_KEEP_MS: i64 = 5 * 60 * 1000;

/// A PostgreSQL channel name for `topic` (identifiers are at most 63 bytes).
pub(super) fn channel(topic: &str) -> String {
    let mut name = format!("zeroscale_{topic}");
    name.truncate(63);
    name
}

impl Db {
    /// Sends `message` to every [`NoticeListener`] of `topic` on this database, in this
    /// process or any other.
    pub async fn notify(&self, topic: &str, message: &str) -> Result<()> {
        let sql = Sql {
            dialect: self.sql_dialect(),
        };
        let conn = self.conn()?;
        let run = |text: &str, values: Vec<Value>| {
            let stmt = sql.stmt(text, values);
            async move { conn.execute_raw(stmt).await.map_err(|e| self.map_err(e)) }
        };
        match self.sql_dialect() {
            Dialect::Postgres => {
                let stmt = sql.stmt(
                    "SELECT pg_notify(?, ?)",
                    vec![channel(topic).into(), message.into()],
                );
                conn.query_one_raw(stmt)
                    .await
                    .map_err(|e| self.map_err(e))?;
            }
            Dialect::Sqlite => {
                run(
                    "INSERT INTO queue_notices (topic, body, created_at) VALUES (?, ?, NOW_MS)",
                    vec![topic.into(), message.into()],
                )
                .await?;
                run(
                    "DELETE FROM queue_notices WHERE created_at < NOW_MS - ?",
                    vec![SQLITE_KEEP_MS.into()],
                )
                .await?;
            }
        }
        Ok(())
    }

    /// Starts listening to `topic`: what is sent from now on can be read from the
    /// listener. Fails when the database cannot be reached.
    pub async fn listen(&self, topic: &str) -> Result<NoticeListener> {
        match self.sql_dialect() {
            #[cfg(feature = "postgres")]
            Dialect::Postgres => {
                let pool = self.conn()?.get_postgres_connection_pool();
                let mut listener = sea_orm::sqlx::postgres::PgListener::connect_with(pool)
                    .await
                    .map_err(|e| self.listen_failed(e))?;
                listener.eager_reconnect(false);
                listener
                    .listen(&channel(topic))
                    .await
                    .map_err(|e| self.listen_failed(e))?;
                Ok(NoticeListener {
                    inner: Inner::Postgres(Box::new(listener)),
                    db: self.clone(),
                })
            }
            #[cfg(not(feature = "postgres"))]
            Dialect::Postgres => Err(Error::unavailable("this build has no PostgreSQL")),
            Dialect::Sqlite => {
                let row = self
                    .conn()?
                    .query_one_raw(
                        Sql {
                            dialect: Dialect::Sqlite,
                        }
                        .stmt(
                            "SELECT COALESCE(MAX(id), 0) AS last FROM queue_notices",
                            vec![],
                        ),
                    )
                    .await
                    .map_err(|e| self.map_err(e))?
                    .ok_or_else(|| Error::unavailable("SQLite answered no row"))?;
                Ok(NoticeListener {
                    inner: Inner::Sqlite {
                        topic: topic.to_owned(),
                        last: get(&row, "last")?,
                        pending: std::collections::VecDeque::new(),
                    },
                    db: self.clone(),
                })
            }
        }
    }

    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    fn listen_failed(&self, e: impl Into<zeroscale_core::error::BoxError>) -> Error {
        Error::unavailable_from(
            format!(
                "cannot listen for notices on the database at {}",
                self.location()
            ),
            e,
        )
    }
}

/// A subscription to one topic's notices (see [`Db::listen`]).
pub struct NoticeListener {
    inner: Inner,
    db: Db,
}

enum Inner {
    #[cfg(feature = "postgres")]
    Postgres(Box<sea_orm::sqlx::postgres::PgListener>),
    Sqlite {
        topic: String,
        last: i64,
        pending: std::collections::VecDeque<String>,
    },
}

impl std::fmt::Debug for NoticeListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoticeListener")
            .field("db", &self.db)
            .finish_non_exhaustive()
    }
}

impl NoticeListener {
    /// The next notice. An error means the subscription is over (its connection was
    /// lost): notices sent since may be missed; listen again.
    pub async fn next(&mut self) -> Result<String> {
        match &mut self.inner {
            #[cfg(feature = "postgres")]
            Inner::Postgres(listener) => match listener.try_recv().await {
                Ok(Some(n)) => Ok(n.payload().to_owned()),
                Ok(None) => Err(Error::unavailable(format!(
                    "the notice connection to {} was lost",
                    self.db.location()
                ))),
                Err(e) => Err(self.db.listen_failed(e)),
            },
            Inner::Sqlite {
                topic,
                last,
                pending,
            } => loop {
                if let Some(body) = pending.pop_front() {
                    return Ok(body);
                }
                let rows = self
                    .db
                    .conn()?
                    .query_all_raw(
                        Sql {
                            dialect: Dialect::Sqlite,
                        }
                        .stmt(
                            "SELECT id, body FROM queue_notices WHERE topic = ? AND id > ? \
                         ORDER BY id LIMIT 1000",
                            vec![topic.clone().into(), (*last).into()],
                        ),
                    )
                    .await
                    .map_err(|e| self.db.map_err(e))?;
                for row in &rows {
                    *last = get(row, "id")?;
                    pending.push_back(get(row, "body")?);
                }
                if pending.is_empty() {
                    tokio::time::sleep(SQLITE_POLL).await;
                }
            },
        }
    }
}
