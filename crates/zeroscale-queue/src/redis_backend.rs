//! The Redis queue: every state change is one Lua script, so it is atomic however many
//! producers and workers share the server; time comes from Redis (`TIME`), so clocks of
//! the machines do not matter.
//!
//! Keys, all under `{<key_prefix>}:` (one hash slot):
//! `job:<id>` (hash), `ready:<queue>` (sorted by priority, then enqueue order),
//! `waiting` (delayed and backing-off jobs by run time), `leases` (running jobs by lease
//! expiry), `dead:<queue>`, `finished` (for retention), `idem:<queue>:<key>`, `seq`.
//! Every script first promotes due jobs and reclaims expired leases, so reclaiming is safe
//! to run from every worker. Redis Cluster is not supported (single node or replicated).

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Script, Value as RValue};
use serde_json::Value;
use zeroscale_core::config::{JobsConfig, QueueConfig, RedisQueueConfig};
use zeroscale_core::queue::{
    JobId, JobState, JobStatus, LeaseState, LeaseToken, NackOptions, NackOutcome, NewJob,
    PageOptions, Progress, Queue, QueueStats, ReserveOptions, ReservedJob,
};
use zeroscale_core::{Error, Result};

use crate::{lease_token, validate_new_job, validate_progress};

/// `host:port/db` of a Redis URL, without the password.
pub fn redact_url(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.rsplit_once('@')
        .map_or(rest, |(_, host)| host)
        .to_owned()
}

/// Opens a reconnecting connection to the configured Redis.
pub async fn connect(config: &RedisQueueConfig) -> Result<ConnectionManager> {
    let url = config.url.expose();
    let location = redact_url(url);
    let client = redis::Client::open(url.as_str())
        .map_err(|e| Error::config("queue.url", format!("`{location}` is not a Redis URL: {e}")))?;
    let timeout = Duration::from_secs(config.connect_timeout_secs.max(1));
    let manager_config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(1);
    client
        .get_connection_manager_with_config(manager_config)
        .await
        .map_err(|e| {
            Error::unavailable_from(
                format!(
                    "cannot connect to Redis at {location}: check that it is running and \
                     `queue.url` / `REDIS_URL` is right (for tests, `cargo xtask services up` \
                     starts one)"
                ),
                e,
            )
        })
}

/// Connects and sends `PING`.
pub async fn probe(config: &RedisQueueConfig) -> Result<String> {
    let location = redact_url(config.url.expose());
    let mut conn = connect(config).await?;
    let pong: String = redis::cmd("PING")
        .query_async(&mut conn)
        .await
        .map_err(|e| {
            Error::unavailable_from(format!("Redis at {location} did not answer PING"), e)
        })?;
    if pong != "PONG" {
        return Err(Error::unavailable(format!(
            "Redis at {location} answered PING with {pong:?}"
        )));
    }
    Ok(location)
}

/// Shared by every script: ARGV[1] is the key prefix, ARGV[2] the retention in ms.
const PRELUDE: &str = r#"
local P = ARGV[1]
local RETENTION = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local function job(id) return P .. ':job:' .. id end

local function make_ready(id)
  local q, pr, seq = unpack(redis.call('HMGET', job(id), 'queue', 'priority', 'seq'))
  if q then
    redis.call('HSET', job(id), 'state', 'queued')
    redis.call('ZADD', P .. ':ready:' .. q, (1000 - tonumber(pr)) * 1e12 + tonumber(seq), id)
  end
end

local function finish(id, state)
  local k = job(id)
  local q, idem, seq = unpack(redis.call('HMGET', k, 'queue', 'idem', 'seq'))
  if idem and idem ~= '' then
    local ik = P .. ':idem:' .. q .. ':' .. idem
    if redis.call('GET', ik) == id then redis.call('DEL', ik) end
  end
  redis.call('ZREM', P .. ':leases', id)
  redis.call('HSET', k, 'state', state, 'finished', now, 'updated', now)
  if state == 'dead' then
    redis.call('ZADD', P .. ':dead:' .. q, tonumber(seq), id)
  else
    redis.call('ZADD', P .. ':finished', now, id)
  end
end

local function tick()
  local due = redis.call('ZRANGEBYSCORE', P .. ':waiting', '-inf', now, 'LIMIT', 0, 1000)
  for _, id in ipairs(due) do
    redis.call('ZREM', P .. ':waiting', id)
    make_ready(id)
  end
  local expired = redis.call('ZRANGEBYSCORE', P .. ':leases', '-inf', now, 'LIMIT', 0, 1000)
  for _, id in ipairs(expired) do
    redis.call('ZREM', P .. ':leases', id)
    local st, att, max = unpack(redis.call('HMGET', job(id), 'state', 'attempts', 'max'))
    if st == 'running' then
      redis.call('HSET', job(id), 'token', '', 'lease_exp', '', 'updated', now,
        'error', 'lease expired: the worker stopped or hung')
      if tonumber(att) >= tonumber(max) then finish(id, 'dead') else make_ready(id) end
    end
  end
  local old = redis.call('ZRANGEBYSCORE', P .. ':finished', '-inf', now - RETENTION, 'LIMIT', 0, 1000)
  for _, id in ipairs(old) do
    redis.call('ZREM', P .. ':finished', id)
    local q = redis.call('HGET', job(id), 'queue')
    if q then redis.call('ZREM', P .. ':all:' .. q, id) end
    redis.call('DEL', job(id))
  end
end

local function held(id, token)
  local st, tok, exp = unpack(redis.call('HMGET', job(id), 'state', 'token', 'lease_exp'))
  if not st then return 'missing' end
  if st ~= 'running' or tok ~= token or tonumber(exp) == nil or tonumber(exp) <= now then
    return 'stale'
  end
  return 'ok'
end

tick()
"#;

/// ARGV: 3 id, 4 queue, 5 task, 6 payload, 7 max, 8 priority, 9 delay ms, 10 idem key.
const ENQUEUE: &str = r#"
local id, q, task, payload = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local max, pr, delay, idem = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9]), ARGV[10]
if idem ~= '' then
  local existing = redis.call('GET', P .. ':idem:' .. q .. ':' .. idem)
  if existing then return existing end
end
local seq = redis.call('INCR', P .. ':seq')
local run_at = now + delay
local state = 'queued'
if delay > 0 then state = 'scheduled' end
redis.call('HSET', job(id), 'queue', q, 'task', task, 'payload', payload, 'state', state,
  'attempts', 0, 'max', max, 'priority', pr, 'progress', '', 'result', '', 'error', '',
  'created', now, 'updated', now, 'run_at', run_at, 'finished', '', 'token', '',
  'lease_exp', '', 'idem', idem, 'seq', seq)
if idem ~= '' then redis.call('SET', P .. ':idem:' .. q .. ':' .. idem, id) end
redis.call('ZADD', P .. ':all:' .. q, seq, id)
if delay > 0 then
  redis.call('ZADD', P .. ':waiting', run_at, id)
else
  redis.call('ZADD', P .. ':ready:' .. q, (1000 - pr) * 1e12 + seq, id)
end
return id
"#;

/// ARGV: 3 lease ms, 4 token, 5.. queues.
const RESERVE: &str = r#"
local lease, token = tonumber(ARGV[3]), ARGV[4]
local best, best_score, best_q = nil, nil, nil
for i = 5, #ARGV do
  local top = redis.call('ZRANGE', P .. ':ready:' .. ARGV[i], 0, 0, 'WITHSCORES')
  if top[1] and (best_score == nil or tonumber(top[2]) < best_score) then
    best, best_score, best_q = top[1], tonumber(top[2]), ARGV[i]
  end
end
if not best then return false end
redis.call('ZREM', P .. ':ready:' .. best_q, best)
local att = redis.call('HINCRBY', job(best), 'attempts', 1)
local exp = now + lease
redis.call('HSET', job(best), 'state', 'running', 'token', token, 'lease_exp', exp, 'updated', now)
redis.call('ZADD', P .. ':leases', exp, best)
local f = redis.call('HMGET', job(best), 'queue', 'task', 'payload', 'max')
return {best, f[1], f[2], f[3], tostring(att), f[4], tostring(exp)}
"#;

/// ARGV: 3 id, 4 token, 5 result JSON.
const ACK: &str = r#"
local id, token = ARGV[3], ARGV[4]
local h = held(id, token)
if h ~= 'ok' then return h end
redis.call('HSET', job(id), 'result', ARGV[5])
finish(id, 'succeeded')
return 'ok'
"#;

/// ARGV: 3 id, 4 token, 5 error, 6 retry-after ms (-1: backoff), 7 base ms, 8 max ms,
/// 9 jitter in 0..1.
const NACK: &str = r#"
local id, token = ARGV[3], ARGV[4]
local h = held(id, token)
if h ~= 'ok' then return {h} end
redis.call('HSET', job(id), 'error', ARGV[5], 'updated', now)
local att, max = unpack(redis.call('HMGET', job(id), 'attempts', 'max'))
att, max = tonumber(att), tonumber(max)
if att >= max then
  finish(id, 'dead')
  return {'dead'}
end
local delay = tonumber(ARGV[6])
if delay < 0 then
  local base, cap, jitter = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
  local raw = math.min(base * math.pow(2, math.min(att - 1, 30)), cap)
  delay = math.floor(math.min(raw * (0.75 + 0.5 * jitter), cap))
end
local run_at = now + delay
redis.call('ZREM', P .. ':leases', id)
redis.call('HSET', job(id), 'state', 'failed', 'run_at', run_at, 'token', '', 'lease_exp', '')
redis.call('ZADD', P .. ':waiting', run_at, id)
return {'retry', tostring(run_at)}
"#;

/// ARGV: 3 id, 4 token, 5 extension ms.
const EXTEND: &str = r#"
local id, token = ARGV[3], ARGV[4]
local st, tok = unpack(redis.call('HMGET', job(id), 'state', 'token'))
if not st then return {'missing'} end
if st == 'cancelled' and tok == token then return {'cancelled', tostring(now)} end
local h = held(id, token)
if h ~= 'ok' then return {h} end
local exp = now + tonumber(ARGV[5])
redis.call('HSET', job(id), 'lease_exp', exp, 'updated', now)
redis.call('ZADD', P .. ':leases', exp, id)
return {'ok', tostring(exp)}
"#;

/// ARGV: 3 id, 4 token, 5 progress JSON.
const PROGRESS: &str = r#"
local id, token = ARGV[3], ARGV[4]
local h = held(id, token)
if h ~= 'ok' then return h end
redis.call('HSET', job(id), 'progress', ARGV[5], 'updated', now)
return 'ok'
"#;

/// ARGV: 3 id.
const CANCEL: &str = r#"
local id = ARGV[3]
local st, q = unpack(redis.call('HMGET', job(id), 'state', 'queue'))
if not st then return 'missing' end
if st == 'succeeded' or st == 'dead' or st == 'cancelled' then return 'finished:' .. st end
if st == 'queued' then redis.call('ZREM', P .. ':ready:' .. q, id)
elseif st == 'scheduled' or st == 'failed' then redis.call('ZREM', P .. ':waiting', id) end
finish(id, 'cancelled')
return 'cancelled'
"#;

/// ARGV: 3 id.
const REQUEUE: &str = r#"
local id = ARGV[3]
local st, q, idem = unpack(redis.call('HMGET', job(id), 'state', 'queue', 'idem'))
if st ~= 'dead' then return 'missing' end
redis.call('ZREM', P .. ':dead:' .. q, id)
redis.call('HSET', job(id), 'attempts', 0, 'finished', '', 'updated', now, 'run_at', now,
  'token', '', 'lease_exp', '')
if idem and idem ~= '' then redis.call('SET', P .. ':idem:' .. q .. ':' .. idem, id, 'NX') end
make_ready(id)
return 'ok'
"#;

/// ARGV: 3 queue.
const PURGE: &str = r#"
local key = P .. ':dead:' .. ARGV[3]
local ids = redis.call('ZRANGE', key, 0, -1)
for _, id in ipairs(ids) do
  redis.call('DEL', job(id))
  redis.call('ZREM', P .. ':all:' .. ARGV[3], id)
end
redis.call('DEL', key)
return #ids
"#;

/// ARGV: 3 queue. Returns state, count pairs.
const STATS: &str = r#"
local counts = {}
for _, id in ipairs(redis.call('ZRANGE', P .. ':all:' .. ARGV[3], 0, -1)) do
  local st = redis.call('HGET', job(id), 'state')
  if st then counts[st] = (counts[st] or 0) + 1 end
end
local out = {}
for st, n in pairs(counts) do table.insert(out, st); table.insert(out, tostring(n)) end
return out
"#;

/// ARGV: 3 queue, 4 state ('' for any), 5 after seq-ordered id ('' for start), 6 limit.
const LIST: &str = r#"
local want, after, limit = ARGV[4], ARGV[5], tonumber(ARGV[6])
local out = {}
local started = after == ''
for _, id in ipairs(redis.call('ZRANGE', P .. ':all:' .. ARGV[3], 0, -1)) do
  if started then
    if want == '' or redis.call('HGET', job(id), 'state') == want then
      table.insert(out, id)
      if #out >= limit then break end
    end
  elseif id == after then
    started = true
  end
end
return out
"#;

/// Only the prelude: promotes due jobs and reclaims leases before a read.
const TICK: &str = "return 'ok'";

struct Scripts {
    enqueue: Script,
    reserve: Script,
    ack: Script,
    nack: Script,
    extend: Script,
    progress: Script,
    cancel: Script,
    requeue: Script,
    purge: Script,
    tick: Script,
    stats: Script,
    list: Script,
}

impl Scripts {
    fn new() -> Self {
        let s = |body: &str| Script::new(&format!("{PRELUDE}\n{body}"));
        Scripts {
            enqueue: s(ENQUEUE),
            reserve: s(RESERVE),
            ack: s(ACK),
            nack: s(NACK),
            extend: s(EXTEND),
            progress: s(PROGRESS),
            cancel: s(CANCEL),
            requeue: s(REQUEUE),
            purge: s(PURGE),
            tick: s(TICK),
            stats: s(STATS),
            list: s(LIST),
        }
    }
}

/// The Redis queue.
pub struct RedisQueue {
    conn: ConnectionManager,
    prefix: String,
    location: String,
    jobs: JobsConfig,
    scripts: Scripts,
}

impl std::fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueue")
            .field("location", &self.location)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn time(ms: &str) -> Option<DateTime<Utc>> {
    ms.parse::<i64>()
        .ok()
        .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
}

fn parse_state(s: &str) -> Result<JobState> {
    Ok(match s {
        "queued" => JobState::Queued,
        "scheduled" => JobState::Scheduled,
        "running" => JobState::Running,
        "succeeded" => JobState::Succeeded,
        "failed" => JobState::Failed,
        "dead" => JobState::Dead,
        "cancelled" => JobState::Cancelled,
        other => {
            return Err(Error::backend(
                "redis",
                std::io::Error::other(format!("unknown job state {other:?}")),
            ));
        }
    })
}

impl RedisQueue {
    /// Connects to the configured Redis.
    pub async fn connect(config: &RedisQueueConfig, jobs: &JobsConfig) -> Result<Self> {
        let conn = connect(config).await?;
        Ok(RedisQueue {
            conn,
            prefix: format!("{{{}}}", config.key_prefix),
            location: redact_url(config.url.expose()),
            jobs: jobs.clone(),
            scripts: Scripts::new(),
        })
    }

    fn err(&self, e: redis::RedisError) -> Error {
        if e.is_io_error()
            || e.is_timeout()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
        {
            Error::unavailable_from(format!("Redis at {} is not reachable", self.location), e)
        } else {
            Error::backend("redis", e)
        }
    }

    async fn run<T: redis::FromRedisValue>(&self, script: &Script, args: &[String]) -> Result<T> {
        let mut invocation = script.prepare_invoke();
        invocation
            .arg(&self.prefix)
            .arg(self.jobs.retention_secs.saturating_mul(1000));
        for a in args {
            invocation.arg(a);
        }
        let mut conn = self.conn.clone();
        invocation
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.err(e))
    }

    /// Reads and idempotent scripts are retried once when the connection dropped (the
    /// connection manager reconnects meanwhile); writes are not, so that a request that
    /// did reach Redis is never applied twice.
    async fn read_retrying<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T> {
        let mut conn = self.conn.clone();
        match cmd.query_async(&mut conn).await {
            Ok(v) => Ok(v),
            Err(e) if e.is_connection_dropped() || e.is_io_error() => {
                let mut conn = self.conn.clone();
                cmd.query_async(&mut conn).await.map_err(|e| self.err(e))
            }
            Err(e) => Err(self.err(e)),
        }
    }

    async fn tick(&self) -> Result<()> {
        match self.run::<RValue>(&self.scripts.tick, &[]).await {
            Ok(_) => Ok(()),
            Err(Error::Unavailable { .. }) => self
                .run::<RValue>(&self.scripts.tick, &[])
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        }
    }

    async fn read(&self, id: JobId) -> Result<Option<JobStatus>> {
        let fields: HashMap<String, String> = self
            .read_retrying(redis::cmd("HGETALL").arg(format!("{}:job:{id}", self.prefix)))
            .await?;
        if fields.is_empty() {
            return Ok(None);
        }
        let get = |k: &str| fields.get(k).map(String::as_str).unwrap_or_default();
        let json = |k: &str| -> Option<Value> {
            let v = get(k);
            if v.is_empty() {
                None
            } else {
                serde_json::from_str(v).ok()
            }
        };
        let created = time(get("created")).unwrap_or_default();
        Ok(Some(JobStatus {
            id,
            queue: get("queue").to_owned(),
            task: get("task").to_owned(),
            state: parse_state(get("state"))?,
            attempts: get("attempts").parse().unwrap_or(0),
            max_attempts: get("max").parse().unwrap_or(0),
            priority: get("priority").parse().unwrap_or(0),
            progress: json("progress").and_then(|v| serde_json::from_value(v).ok()),
            result: json("result").filter(|v| !v.is_null()),
            last_error: Some(get("error").to_owned()).filter(|e| !e.is_empty()),
            created_at: created,
            updated_at: time(get("updated")).unwrap_or(created),
            run_at: time(get("run_at")).unwrap_or(created),
            finished_at: time(get("finished")),
        }))
    }
}

#[async_trait]
impl Queue for RedisQueue {
    fn backend(&self) -> &str {
        "redis"
    }

    async fn enqueue(&self, job: NewJob) -> Result<JobId> {
        validate_new_job(&job)?;
        let id = JobId::new();
        let payload = serde_json::to_string(&job.payload)
            .map_err(|e| Error::invalid_input(format!("payload is not JSON: {e}")))?;
        let returned: String = self
            .run(
                &self.scripts.enqueue,
                &[
                    id.to_string(),
                    job.queue,
                    job.task,
                    payload,
                    job.options
                        .max_attempts
                        .unwrap_or(self.jobs.default_max_attempts)
                        .to_string(),
                    job.options.priority.to_string(),
                    job.options.delay.map_or(0, ms).to_string(),
                    job.options.idempotency_key.unwrap_or_default(),
                ],
            )
            .await?;
        returned.parse()
    }

    async fn reserve(&self, opts: &ReserveOptions) -> Result<Option<ReservedJob>> {
        if opts.queues.is_empty() {
            return Ok(None);
        }
        let token = lease_token();
        let mut args = vec![ms(opts.lease).to_string(), token.clone()];
        args.extend(opts.queues.iter().cloned());
        let reply: Option<Vec<String>> = self.run(&self.scripts.reserve, &args).await?;
        let Some(f) = reply else { return Ok(None) };
        let [id, queue, task, payload, attempt, max, expires] = f.as_slice() else {
            return Err(Error::backend(
                "redis",
                std::io::Error::other("unexpected reply from the reserve script"),
            ));
        };
        let id: JobId = id.parse()?;
        Ok(Some(ReservedJob {
            id,
            queue: queue.clone(),
            task: task.clone(),
            payload: serde_json::from_str(payload).unwrap_or(Value::Null),
            attempt: attempt.parse().unwrap_or(1),
            max_attempts: max.parse().unwrap_or(1),
            lease: LeaseToken { job_id: id, token },
            lease_expires_at: time(expires).unwrap_or_else(Utc::now),
        }))
    }

    async fn ack(&self, lease: &LeaseToken, result: Option<Value>) -> Result<()> {
        let result = result.map(|v| v.to_string()).unwrap_or_default();
        let reply: String = self
            .run(
                &self.scripts.ack,
                &[lease.job_id.to_string(), lease.token.clone(), result],
            )
            .await?;
        match reply.as_str() {
            "ok" => Ok(()),
            "missing" => Err(Error::not_found(format!("job {}", lease.job_id))),
            _ => Err(crate::lease_lost(lease.job_id)),
        }
    }

    async fn nack(&self, lease: &LeaseToken, opts: NackOptions) -> Result<NackOutcome> {
        let mut bytes = [0u8; 8];
        let _ = getrandom::fill(&mut bytes);
        let jitter = (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64;
        let retry_after = opts
            .retry_after
            .map_or(-1, |d| i64::try_from(ms(d)).unwrap_or(i64::MAX));
        let reply: Vec<String> = self
            .run(
                &self.scripts.nack,
                &[
                    lease.job_id.to_string(),
                    lease.token.clone(),
                    opts.error,
                    retry_after.to_string(),
                    self.jobs.backoff_base_ms.to_string(),
                    self.jobs.backoff_max_secs.saturating_mul(1000).to_string(),
                    jitter.to_string(),
                ],
            )
            .await?;
        match reply.first().map(String::as_str) {
            Some("dead") => Ok(NackOutcome::Dead),
            Some("retry") => Ok(NackOutcome::Retrying {
                run_at: reply.get(1).and_then(|t| time(t)).unwrap_or_else(Utc::now),
            }),
            Some("missing") => Err(Error::not_found(format!("job {}", lease.job_id))),
            _ => Err(crate::lease_lost(lease.job_id)),
        }
    }

    async fn extend_lease(&self, lease: &LeaseToken, by: Duration) -> Result<LeaseState> {
        let reply: Vec<String> = self
            .run(
                &self.scripts.extend,
                &[
                    lease.job_id.to_string(),
                    lease.token.clone(),
                    ms(by).to_string(),
                ],
            )
            .await?;
        let at = reply.get(1).and_then(|t| time(t)).unwrap_or_else(Utc::now);
        match reply.first().map(String::as_str) {
            Some("ok") => Ok(LeaseState {
                expires_at: at,
                cancelled: false,
            }),
            Some("cancelled") => Ok(LeaseState {
                expires_at: at,
                cancelled: true,
            }),
            Some("missing") => Err(Error::not_found(format!("job {}", lease.job_id))),
            _ => Err(crate::lease_lost(lease.job_id)),
        }
    }

    async fn update_progress(&self, lease: &LeaseToken, progress: Progress) -> Result<()> {
        validate_progress(&progress)?;
        let json = serde_json::to_string(&progress).map_err(|e| Error::backend("redis", e))?;
        let reply: String = self
            .run(
                &self.scripts.progress,
                &[lease.job_id.to_string(), lease.token.clone(), json],
            )
            .await?;
        match reply.as_str() {
            "ok" => Ok(()),
            "missing" => Err(Error::not_found(format!("job {}", lease.job_id))),
            _ => Err(crate::lease_lost(lease.job_id)),
        }
    }

    async fn status(&self, id: JobId) -> Result<JobStatus> {
        self.tick().await?;
        self.read(id)
            .await?
            .ok_or_else(|| Error::not_found(format!("job {id}")))
    }

    async fn cancel(&self, id: JobId) -> Result<JobState> {
        let reply: String = self.run(&self.scripts.cancel, &[id.to_string()]).await?;
        match reply.as_str() {
            "cancelled" => Ok(JobState::Cancelled),
            "missing" => Err(Error::not_found(format!("job {id}"))),
            other => Err(Error::conflict(format!(
                "job {id} is already {}; only unfinished jobs can be cancelled",
                other.trim_start_matches("finished:")
            ))),
        }
    }

    async fn list_dead(&self, queue: &str, page: PageOptions) -> Result<Vec<JobStatus>> {
        self.tick().await?;
        let ids: Vec<String> = self
            .read_retrying(
                redis::cmd("ZRANGE")
                    .arg(format!("{}:dead:{queue}", self.prefix))
                    .arg(0)
                    .arg(-1),
            )
            .await?;
        let limit = page.limit.unwrap_or(100).clamp(1, 1000);
        let mut out = Vec::new();
        for id in ids {
            let id: JobId = id.parse()?;
            if page.after.is_some_and(|after| id <= after) {
                continue;
            }
            if let Some(status) = self.read(id).await? {
                out.push(status);
            }
            if out.len() >= limit {
                break;
            }
        }
        out.sort_by_key(|s| s.id);
        Ok(out)
    }

    async fn requeue_dead(&self, id: JobId) -> Result<()> {
        let reply: String = self.run(&self.scripts.requeue, &[id.to_string()]).await?;
        match reply.as_str() {
            "ok" => Ok(()),
            _ => Err(Error::not_found(format!("dead job {id}"))),
        }
    }

    async fn purge_dead(&self, queue: &str) -> Result<u64> {
        self.run(&self.scripts.purge, &[queue.to_owned()]).await
    }

    async fn stats(&self, queue: &str) -> Result<QueueStats> {
        let pairs: Vec<String> = self.run(&self.scripts.stats, &[queue.to_owned()]).await?;
        let mut stats = QueueStats::default();
        for pair in pairs.chunks(2) {
            if let [state, n] = pair {
                stats.add(parse_state(state)?, n.parse().unwrap_or(0));
            }
        }
        Ok(stats)
    }

    async fn list(
        &self,
        queue: &str,
        state: Option<JobState>,
        page: PageOptions,
    ) -> Result<Vec<JobStatus>> {
        let limit = page.limit.unwrap_or(100).clamp(1, 1000);
        let ids: Vec<String> = self
            .run(
                &self.scripts.list,
                &[
                    queue.to_owned(),
                    state.map(|s| s.as_str().to_owned()).unwrap_or_default(),
                    page.after.map(|a| a.to_string()).unwrap_or_default(),
                    limit.to_string(),
                ],
            )
            .await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(status) = self.read(id.parse()?).await? {
                out.push(status);
            }
        }
        Ok(out)
    }

    async fn health(&self) -> Result<()> {
        let _: String = self.read_retrying(&redis::cmd("PING")).await?;
        Ok(())
    }
}

/// The registry's connect for `queue.kind = "redis"`.
pub(crate) fn connect_queue<'a>(
    config: &'a QueueConfig,
    jobs: &'a JobsConfig,
) -> futures::future::BoxFuture<'a, Result<std::sync::Arc<dyn zeroscale_core::Queue>>> {
    Box::pin(async move {
        let QueueConfig::Redis(c) = config else {
            return Err(zeroscale_core::registry::wrong_config(
                "redis",
                config.kind(),
            ));
        };
        Ok(std::sync::Arc::new(RedisQueue::connect(c, jobs).await?)
            as std::sync::Arc<dyn zeroscale_core::Queue>)
    })
}

/// The registry's probe for `queue.kind = "redis"`.
pub(crate) fn probe_config(config: &QueueConfig) -> futures::future::BoxFuture<'_, Result<String>> {
    Box::pin(async move {
        let QueueConfig::Redis(c) = config else {
            return Err(zeroscale_core::registry::wrong_config(
                "redis",
                config.kind(),
            ));
        };
        probe(c).await
    })
}
