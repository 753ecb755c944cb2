//! [`Counters`] in the application's database (`rate_counters`), for deployments whose
//! queue is not on Redis: every change is one statement (`INSERT … ON CONFLICT DO
//! UPDATE`), atomic on SQLite and PostgreSQL alike, so counts are exact across instances.
//! A batch of hits on distinct keys is one multi-row statement.
//! Ended windows and blocks are deleted from time to time, a bounded batch at once.
//! On MongoDB each hit is one atomic single-document update (see `mongodb/counters.rs`).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sea_orm::{ConnectionTrait, QueryResult, Value};
use zeroscale_core::counters::{Counters, Hit, WindowCount, bounded_key};
use zeroscale_core::{Error, Result};

use crate::Db;
use crate::queue::sql::Sql;

/// The most hits one statement carries.
const MAX_BATCH: usize = 100;

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
            .field("engine", &self.db.engine())
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

/// `hits` cut, in order, into runs of at most [`MAX_BATCH`] with no key twice: one
/// statement cannot update one row twice.
fn distinct_chunks(hits: &[Hit]) -> Vec<Vec<(&Hit, String)>> {
    let mut chunks: Vec<Vec<(&Hit, String)>> = Vec::new();
    let mut keys = HashSet::new();
    for hit in hits {
        let key = bounded_key(&hit.key);
        let full = chunks.last().is_none_or(|c| c.len() >= MAX_BATCH);
        if full || keys.contains(&key) {
            chunks.push(Vec::new());
            keys.clear();
        }
        keys.insert(key.clone());
        if let Some(chunk) = chunks.last_mut() {
            chunk.push((hit, key));
        }
    }
    chunks
}

fn no_row(key: &str) -> Error {
    Error::backend(
        "database counters",
        std::io::Error::other(format!("the upsert of counter `{key}` returned no row")),
    )
}

impl DbCounters {
    /// Counters in `db` (migrated: the table comes with the migrations).
    pub fn new(db: Db) -> Self {
        DbCounters {
            sql: Sql {
                dialect: db.sql_dialect(),
            },
            db,
            last_prune: Mutex::new(None),
        }
    }

    async fn rows(&self, sql: &str, values: Vec<Value>) -> Result<Vec<QueryResult>> {
        self.db
            .conn()?
            .query_all_raw(self.sql.stmt(sql, values))
            .await
            .map_err(|e| self.db.map_err(e))
    }

    async fn exec(&self, sql: &str, values: Vec<Value>) -> Result<()> {
        self.db
            .conn()?
            .execute_raw(self.sql.stmt(sql, values))
            .await
            .map(|_| ())
            .map_err(|e| self.db.map_err(e))
    }

    /// Counts one chunk of distinct keys in one statement; the counts in its order.
    async fn upsert(&self, chunk: Vec<(&Hit, String)>) -> Result<Vec<WindowCount>> {
        let rows = vec!["(?, ?, NOW_MS + ?, NULL)"; chunk.len()].join(", ");
        let mut values = Vec::with_capacity(chunk.len() * 3);
        for (hit, key) in &chunk {
            values.push(key.clone().into());
            values.push(i64::try_from(hit.n).unwrap_or(i64::MAX / 4).into());
            values.push(millis(hit.window).into());
        }
        let sql = format!(
            "INSERT INTO rate_counters (\"key\", count, window_end, blocked_until) \
             VALUES {rows} ON CONFLICT (\"key\") DO UPDATE SET \
             count = CASE WHEN rate_counters.window_end <= NOW_MS THEN excluded.count \
             ELSE rate_counters.count + excluded.count END, \
             window_end = CASE WHEN rate_counters.window_end <= NOW_MS \
             THEN excluded.window_end ELSE rate_counters.window_end END \
             RETURNING \"key\", count, window_end"
        );
        let mut returned = HashMap::with_capacity(chunk.len());
        for row in self.rows(&sql, values).await? {
            let key: String = column(&row, "key")?;
            let count = WindowCount {
                count: column::<i64>(&row, "count")?.max(0) as u64,
                resets_at: time(column(&row, "window_end")?),
            };
            returned.insert(key, count);
        }
        chunk
            .iter()
            .map(|(hit, key)| returned.get(key).copied().ok_or_else(|| no_row(&hit.key)))
            .collect()
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
        #[cfg(feature = "mongodb")]
        if let Some(m) = self.db.mongo() {
            return m.counters_prune().await;
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
        self.db.engine()
    }

    async fn hit(&self, key: &str, n: u64, window: Duration) -> Result<WindowCount> {
        let hit = Hit {
            key: key.to_owned(),
            n,
            window,
        };
        let mut counts = self.hit_many(std::slice::from_ref(&hit)).await?;
        counts.pop().ok_or_else(|| no_row(key))
    }

    async fn hit_many(&self, hits: &[Hit]) -> Result<Vec<WindowCount>> {
        if hits.is_empty() {
            return Ok(Vec::new());
        }
        self.prune().await?;
        #[cfg(feature = "mongodb")]
        if let Some(m) = self.db.mongo() {
            let mut counts = Vec::with_capacity(hits.len());
            for hit in hits {
                let n = i64::try_from(hit.n).unwrap_or(i64::MAX / 4);
                counts.push(
                    m.counter_hit(&bounded_key(&hit.key), n, millis(hit.window))
                        .await?,
                );
            }
            return Ok(counts);
        }
        let mut counts = Vec::with_capacity(hits.len());
        for chunk in distinct_chunks(hits) {
            counts.extend(self.upsert(chunk).await?);
        }
        Ok(counts)
    }

    async fn get(&self, key: &str) -> Result<WindowCount> {
        #[cfg(feature = "mongodb")]
        if let Some(m) = self.db.mongo() {
            return m.counter_get(&bounded_key(key)).await;
        }
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
        #[cfg(feature = "mongodb")]
        if let Some(m) = self.db.mongo() {
            return m.counter_clear(&bounded_key(key)).await;
        }
        self.exec(
            "DELETE FROM rate_counters WHERE \"key\" = ?",
            vec![bounded_key(key).into()],
        )
        .await
    }

    async fn block(&self, key: &str, duration: Duration) -> Result<()> {
        #[cfg(feature = "mongodb")]
        if let Some(m) = self.db.mongo() {
            return m.counter_block(&bounded_key(key), millis(duration)).await;
        }
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
        #[cfg(feature = "mongodb")]
        if let Some(m) = self.db.mongo() {
            let keys: Vec<String> = keys.iter().map(|k| bounded_key(k)).collect();
            let left = m.counters_blocked(&keys).await?;
            return Ok((left > 0).then(|| Duration::from_millis(left as u64)));
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
