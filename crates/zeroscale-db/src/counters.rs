//! [`Counters`] in the application's database (`rate_counters`), for deployments whose
//! queue is not on Redis: every change is one statement (`INSERT … ON CONFLICT DO
//! UPDATE`), atomic on SQLite and PostgreSQL alike, so counts are exact across instances.
//! Ended windows and blocks are deleted from time to time, a bounded batch at once.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sea_orm::{ConnectionTrait, QueryResult, Value};
use zeroscale_core::counters::{Counters, WindowCount, bounded_key};
use zeroscale_core::{Error, Result};

use crate::Db;
use crate::queue::sql::Sql;

/// How often a process deletes ended rows.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// The counters over a database.
pub struct DbCounters {
    db: Db,
    sql: Sql,
    last_prune: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for DbCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbCounters")
            .field("engine", &self.db.dialect().name())
            .finish_non_exhaustive()
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

fn time(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC)
}

fn column<T: sea_orm::TryGetable>(row: &QueryResult, name: &str) -> Result<T> {
    row.try_get::<T>("", name).map_err(|e| {
        Error::backend(
            "database counters",
            std::io::Error::other(format!("rate_counters.{name}: {e}")),
        )
    })
}

impl DbCounters {
    /// Counters in `db` (migrated: the table comes with the migrations).
    pub fn new(db: Db) -> Self {
        DbCounters {
            sql: Sql {
                dialect: db.dialect(),
            },
            db,
            last_prune: Mutex::new(None),
        }
    }

    async fn rows(&self, sql: &str, values: Vec<Value>) -> Result<Vec<QueryResult>> {
        self.db
            .conn()
            .query_all_raw(self.sql.stmt(sql, values))
            .await
            .map_err(|e| self.db.map_err(e))
    }

    async fn exec(&self, sql: &str, values: Vec<Value>) -> Result<()> {
        self.db
            .conn()
            .execute_raw(self.sql.stmt(sql, values))
            .await
            .map(|_| ())
            .map_err(|e| self.db.map_err(e))
    }

    /// Deletes ended rows, at most once a minute per process.
    async fn prune(&self) -> Result<()> {
        {
            let mut last = self.last_prune.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|t| t.elapsed() < PRUNE_EVERY) {
                return Ok(());
            }
            *last = Some(Instant::now());
        }
        self.exec(
            "DELETE FROM rate_counters WHERE \"key\" IN (SELECT \"key\" FROM rate_counters \
             WHERE window_end < NOW_MS AND (blocked_until IS NULL OR blocked_until < NOW_MS) \
             LIMIT 1000)",
            vec![],
        )
        .await
    }
}

#[async_trait]
impl Counters for DbCounters {
    fn backend(&self) -> &str {
        self.db.dialect().name()
    }

    async fn hit(&self, key: &str, n: u64, window: Duration) -> Result<WindowCount> {
        self.prune().await?;
        let n = i64::try_from(n).unwrap_or(i64::MAX / 4);
        let rows = self
            .rows(
                "INSERT INTO rate_counters (\"key\", count, window_end, blocked_until) \
                 VALUES (?, ?, NOW_MS + ?, NULL) ON CONFLICT (\"key\") DO UPDATE SET \
                 count = CASE WHEN rate_counters.window_end <= NOW_MS THEN excluded.count \
                 ELSE rate_counters.count + excluded.count END, \
                 window_end = CASE WHEN rate_counters.window_end <= NOW_MS \
                 THEN excluded.window_end ELSE rate_counters.window_end END \
                 RETURNING count, window_end",
                vec![bounded_key(key).into(), n.into(), millis(window).into()],
            )
            .await?;
        let row = rows.first().ok_or_else(|| {
            Error::backend(
                "database counters",
                std::io::Error::other("the counter's upsert returned no row"),
            )
        })?;
        Ok(WindowCount {
            count: column::<i64>(row, "count")?.max(0) as u64,
            resets_at: time(column(row, "window_end")?),
        })
    }

    async fn get(&self, key: &str) -> Result<WindowCount> {
        let rows = self
            .rows(
                "SELECT count, window_end FROM rate_counters WHERE \"key\" = ? \
                 AND window_end > NOW_MS",
                vec![bounded_key(key).into()],
            )
            .await?;
        Ok(match rows.first() {
            Some(row) => WindowCount {
                count: column::<i64>(row, "count")?.max(0) as u64,
                resets_at: time(column(row, "window_end")?),
            },
            None => WindowCount {
                count: 0,
                resets_at: chrono::Utc::now(),
            },
        })
    }

    async fn clear(&self, key: &str) -> Result<()> {
        self.exec(
            "DELETE FROM rate_counters WHERE \"key\" = ?",
            vec![bounded_key(key).into()],
        )
        .await
    }

    async fn block(&self, key: &str, duration: Duration) -> Result<()> {
        self.exec(
            "INSERT INTO rate_counters (\"key\", count, window_end, blocked_until) \
             VALUES (?, 0, NOW_MS, NOW_MS + ?) ON CONFLICT (\"key\") DO UPDATE SET \
             blocked_until = CASE WHEN rate_counters.blocked_until IS NULL \
             OR rate_counters.blocked_until < excluded.blocked_until \
             THEN excluded.blocked_until ELSE rate_counters.blocked_until END",
            vec![bounded_key(key).into(), millis(duration).into()],
        )
        .await
    }

    async fn blocked(&self, keys: &[String]) -> Result<Option<Duration>> {
        if keys.is_empty() {
            return Ok(None);
        }
        let sql = format!(
            "SELECT MAX(blocked_until) - NOW_MS AS left_ms FROM rate_counters \
             WHERE \"key\" IN ({}) AND blocked_until > NOW_MS",
            Sql::list(keys.len())
        );
        let values = keys.iter().map(|k| bounded_key(k).into()).collect();
        let rows = self.rows(&sql, values).await?;
        let left: Option<i64> = match rows.first() {
            Some(row) => column(row, "left_ms")?,
            None => None,
        };
        Ok(left
            .filter(|ms| *ms > 0)
            .map(|ms| Duration::from_millis(ms as u64)))
    }
}
