//! [`Counters`] on Redis: a counter is a string key with the window as its expiry
//! (`<prefix>:rate:<key>`), a block a key that expires when it ends
//! (`<prefix>:block:<key>`). A hit is one script (`INCRBY`, and `PEXPIRE` when it made
//! the key), so concurrent hits from any number of instances count exactly; a batch is
//! one script over its keys (all in the prefix's hash slot).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;
use redis::Script;
use zeroscale_core::config::QueueConfig;
use zeroscale_core::counters::{Counters, Hit, WindowCount, bounded_key};
use zeroscale_core::{Error, Result};

const HIT: &str = r"
local c = redis.call('INCRBY', KEYS[1], ARGV[1])
local ttl = redis.call('PTTL', KEYS[1])
if c == tonumber(ARGV[1]) or ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  ttl = tonumber(ARGV[2])
end
return {c, ttl}
";

/// [`HIT`] for each key in turn: `ARGV` holds each one's amount and window; returns
/// count and time left for each, flat.
const HIT_MANY: &str = r"
local out = {}
for i, key in ipairs(KEYS) do
  local n = tonumber(ARGV[2 * i - 1])
  local c = redis.call('INCRBY', key, n)
  local ttl = redis.call('PTTL', key)
  if c == n or ttl < 0 then
    redis.call('PEXPIRE', key, ARGV[2 * i])
    ttl = tonumber(ARGV[2 * i])
  end
  out[2 * i - 1] = c
  out[2 * i] = ttl
end
return out
";

/// The most hits one script call carries.
const MAX_BATCH: usize = 100;

const BLOCK: &str = r"
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
return 1
";

struct RedisCounters {
    conn: crate::redis_conn::RedisConn,
    prefix: String,
    location: String,
    hit: Script,
    hit_many: Script,
    block: Script,
}

impl std::fmt::Debug for RedisCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCounters")
            .field("location", &self.location)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 4).max(1)
}

impl RedisCounters {
    fn err(&self, e: redis::RedisError) -> Error {
        Error::unavailable_from(format!("{} (counters)", self.location), e)
    }

    fn rate_key(&self, key: &str) -> String {
        format!("{}:rate:{}", self.prefix, bounded_key(key))
    }

    fn block_key(&self, key: &str) -> String {
        format!("{}:block:{}", self.prefix, bounded_key(key))
    }
}

fn window(count: i64, ttl_ms: i64) -> WindowCount {
    WindowCount {
        count: count.max(0) as u64,
        resets_at: chrono::Utc::now() + chrono::Duration::milliseconds(ttl_ms.max(0)),
    }
}

#[async_trait]
impl Counters for RedisCounters {
    fn backend(&self) -> &str {
        "redis"
    }

    async fn hit(&self, key: &str, n: u64, window_len: Duration) -> Result<WindowCount> {
        let mut conn = self.conn.clone();
        let (count, ttl): (i64, i64) = self
            .hit
            .key(self.rate_key(key))
            .arg(n)
            .arg(millis(window_len))
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.err(e))?;
        Ok(window(count, ttl))
    }

    async fn hit_many(&self, hits: &[Hit]) -> Result<Vec<WindowCount>> {
        let mut counts = Vec::with_capacity(hits.len());
        for chunk in hits.chunks(MAX_BATCH) {
            let mut call = self.hit_many.prepare_invoke();
            for hit in chunk {
                call.key(self.rate_key(&hit.key))
                    .arg(hit.n)
                    .arg(millis(hit.window));
            }
            let mut conn = self.conn.clone();
            let flat: Vec<i64> = call
                .invoke_async(&mut conn)
                .await
                .map_err(|e| self.err(e))?;
            if flat.len() != chunk.len() * 2 {
                return Err(Error::backend(
                    "Redis counters",
                    std::io::Error::other(format!(
                        "{} hits answered with {} values",
                        chunk.len(),
                        flat.len()
                    )),
                ));
            }
            counts.extend(flat.chunks(2).map(|p| window(p[0], p[1])));
        }
        Ok(counts)
    }

    async fn get(&self, key: &str) -> Result<WindowCount> {
        let mut conn = self.conn.clone();
        let k = self.rate_key(key);
        let (count, ttl): (Option<i64>, i64) = redis::pipe()
            .cmd("GET")
            .arg(&k)
            .cmd("PTTL")
            .arg(&k)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.err(e))?;
        Ok(window(count.unwrap_or(0), ttl))
    }

    async fn clear(&self, key: &str) -> Result<()> {
        let mut conn = self.conn.clone();
        let _: i64 = redis::cmd("DEL")
            .arg(self.rate_key(key))
            .arg(self.block_key(key))
            .query_async(&mut conn)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    async fn block(&self, key: &str, duration: Duration) -> Result<()> {
        let mut conn = self.conn.clone();
        let _: i64 = self
            .block
            .key(self.block_key(key))
            .arg(millis(duration))
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    async fn blocked(&self, keys: &[String]) -> Result<Option<Duration>> {
        if keys.is_empty() {
            return Ok(None);
        }
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.cmd("PTTL").arg(self.block_key(key));
        }
        let mut conn = self.conn.clone();
        let ttls: Vec<i64> = pipe.query_async(&mut conn).await.map_err(|e| self.err(e))?;
        Ok(ttls
            .into_iter()
            .filter(|ms| *ms > 0)
            .max()
            .map(|ms| Duration::from_millis(ms as u64)))
    }
}

/// The registry's counters for `queue.kind = "redis"`.
pub(crate) fn counters<'a>(
    config: &'a QueueConfig,
    _: &'a crate::QueueContext,
) -> BoxFuture<'a, Result<Option<Arc<dyn Counters>>>> {
    Box::pin(async move {
        let QueueConfig::Redis(c) = config else {
            return Err(zeroscale_core::registry::wrong_config(
                "redis",
                config.kind(),
            ));
        };
        let conn = crate::redis_conn::connect(c).await?;
        Ok(Some(Arc::new(RedisCounters {
            conn,
            prefix: format!("{{{}}}", c.key_prefix),
            location: c.location(),
            hit: Script::new(HIT),
            hit_many: Script::new(HIT_MANY),
            block: Script::new(BLOCK),
        }) as Arc<dyn Counters>))
    })
}
