//! The Redis queue: every state change is one Lua script, so it is atomic however many
//! producers and workers share the server; time comes from Redis (`TIME`), so clocks of
//! the machines do not matter.
//!
//! Keys, all under `{<key_prefix>}:` (one hash slot):
//! `job:<id>` (hash), `ready:<queue>` (sorted by priority, then enqueue order),
//! `waiting` (delayed and backing-off jobs by run time), `leases` (running jobs by lease
//! expiry), `dead:<queue>`, `finished` (for retention), `idem:<queue>:<key>`, `seq`.
//! Every script first promotes due jobs and reclaims expired leases, so reclaiming is safe
//! to run from every worker. On a Redis Cluster (`queue.cluster_nodes`) the one hash tag
//! keeps every key in one slot, so the scripts run unchanged on that slot's master; the
//! cluster gives failover, and `queue.wait_for_replicas` makes an enqueue wait until a
//! replica has it.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use redis::Script;
use serde_json::Value;
use zeroscale_core::config::{JobsConfig, QueueConfig, RedisQueueConfig};
use zeroscale_core::queue::{
    JobId, JobOrigin, JobState, JobStatus, LeaseState, LeaseToken, NackOptions, NackOutcome,
    NewJob, PageOptions, PortableJob, Progress, Queue, QueueStats, ReserveOptions, ReservedJob,
};
use zeroscale_core::{Error, Result};

use crate::{Backoff, lease_token, prepare_import, take_origin, validate_batch, validate_progress};

pub(crate) use crate::redis_conn::{RedisConn, connect, login_refused, refused};

/// Connects and sends `PING`.
pub(crate) async fn probe(config: &RedisQueueConfig) -> Result<String> {
    let location = config.location();
    let mut conn = connect(config).await?;
    // On a cluster, `PING` goes to the master of the queue's slot.
    let pong: String = redis::cmd("PING")
        .query_async(&mut conn)
        .await
        .map_err(|e| {
            if login_refused(&e) {
                return refused(config, &e);
            }
            Error::unavailable_from(format!("{location} did not answer PING"), e)
        })?;
    if pong != "PONG" {
        return Err(Error::unavailable(format!(
            "{location} answered PING with {pong:?}"
        )));
    }
    match persistence(&mut conn).await {
        Some(warning) => Ok(format!("{location}; warning: {warning}")),
        None => Ok(location),
    }
}

/// What Redis keeps across a restart, as a warning when it may lose jobs: `None` when the
/// append-only file is on. Without it, RDB snapshots (`save`) lose what changed since the
/// last one, and with neither a restart loses everything; a Redis that refuses `CONFIG`
/// (many managed services) cannot be asked, and the warning says so.
pub(crate) async fn persistence(conn: &mut RedisConn) -> Option<String> {
    async fn get(conn: &mut RedisConn, key: &str) -> Option<String> {
        let pair: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg(key)
            .query_async(conn)
            .await
            .ok()?;
        pair.into_iter().nth(1)
    }
    let Some(appendonly) = get(conn, "appendonly").await else {
        return Some(
            "cannot tell whether Redis keeps queued jobs across a restart (it refused `CONFIG \
             GET`): make sure its append-only file (appendonly yes) is on"
                .to_owned(),
        );
    };
    if appendonly == "yes" {
        return None;
    }
    let save = get(conn, "save").await.unwrap_or_default();
    Some(if save.trim().is_empty() {
        "Redis has no persistence (appendonly no, save \"\"): a restart loses every queued \
         job; set `appendonly yes`"
            .to_owned()
    } else {
        format!(
            "Redis keeps only RDB snapshots (appendonly no, save \"{save}\"): a restart loses the \
             jobs changed since the last one; set `appendonly yes`"
        )
    })
}

/// [`persistence`] of the Redis `config` names (a connection of its own).
pub(crate) async fn persistence_warning(config: &RedisQueueConfig) -> Result<Option<String>> {
    let mut conn = connect(config).await?;
    Ok(persistence(&mut conn).await)
}

/// The scripts, one per state change, each with the shared prelude (`lua/prelude.lua`)
/// in front: every change is one atomic script run on the server's clock.
struct Scripts {
    enqueue: Script,
    reserve: Script,
    ack: Script,
    nack: Script,
    release: Script,
    extend: Script,
    progress: Script,
    cancel: Script,
    requeue: Script,
    purge: Script,
    tick: Script,
    stats: Script,
    list: Script,
    import: Script,
}

impl Scripts {
    fn new() -> Self {
        const PRELUDE: &str = include_str!("../lua/prelude.lua");
        let s = |body: &str| Script::new(&format!("{PRELUDE}\n{body}"));
        Scripts {
            enqueue: s(include_str!("../lua/enqueue.lua")),
            reserve: s(include_str!("../lua/reserve.lua")),
            ack: s(include_str!("../lua/ack.lua")),
            nack: s(include_str!("../lua/nack.lua")),
            release: s(include_str!("../lua/release.lua")),
            extend: s(include_str!("../lua/extend.lua")),
            progress: s(include_str!("../lua/progress.lua")),
            cancel: s(include_str!("../lua/cancel.lua")),
            requeue: s(include_str!("../lua/requeue.lua")),
            purge: s(include_str!("../lua/purge.lua")),
            tick: s(include_str!("../lua/tick.lua")),
            stats: s(include_str!("../lua/stats.lua")),
            list: s(include_str!("../lua/list.lua")),
            import: s(include_str!("../lua/import.lua")),
        }
    }
}

/// What a script did: its first word (`ok`, `missing`, `stale`, or the script's own) and
/// the values after it.
#[derive(Debug)]
struct Reply {
    word: String,
    rest: Vec<String>,
}

impl Reply {
    fn parse(mut values: Vec<String>) -> Result<Reply> {
        if values.is_empty() {
            return Err(Error::backend(
                "redis",
                std::io::Error::other("a queue script answered nothing"),
            ));
        }
        let word = values.remove(0);
        Ok(Reply { word, rest: values })
    }

    /// The error for the words every lease-holding script shares: `missing`, `stale`, and
    /// anything unexpected.
    fn lease_error(&self, id: JobId) -> Error {
        match self.word.as_str() {
            "missing" => Error::not_found(format!("job {id}")),
            "stale" => crate::lease_lost(id),
            other => unexpected(other),
        }
    }

    /// The `n`th value after the word.
    fn get(&self, n: usize) -> Result<&str> {
        self.rest
            .get(n)
            .map(String::as_str)
            .ok_or_else(|| unexpected(&self.word))
    }
}

/// Values per job in the enqueue script's arguments.
const JOB_ARGS: usize = 9;

/// A job's stored origin (`''` for none). One that no longer reads as an origin (written
/// by hand) is dropped with a warning rather than holding the job back.
fn stored_origin(id: impl std::fmt::Display, text: &str) -> JobOrigin {
    JobOrigin::from_json(text).unwrap_or_else(|e| {
        tracing::warn!(job = %id, error = %e, "a queued job's stored origin is ignored");
        JobOrigin::new()
    })
}

fn unexpected(word: &str) -> Error {
    Error::backend(
        "redis",
        std::io::Error::other(format!("unexpected reply {word:?} from a queue script")),
    )
}

/// The Redis queue.
pub(crate) struct RedisQueue {
    conn: RedisConn,
    prefix: String,
    location: String,
    config: RedisQueueConfig,
    /// Replicas that must confirm an enqueue (`queue.wait_for_replicas`), and for how long
    /// to wait.
    wait_for_replicas: u32,
    replica_wait_ms: u64,
    jobs: JobsConfig,
    backoff: Backoff,
    scripts: Scripts,
    wake: crate::redis_wake::WakeListener,
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
    JobState::parse(s).ok_or_else(|| {
        Error::backend(
            "redis",
            std::io::Error::other(format!("unknown job state {s:?}")),
        )
    })
}

impl RedisQueue {
    /// Connects to the configured Redis.
    pub(crate) async fn connect(config: &RedisQueueConfig, jobs: &JobsConfig) -> Result<Self> {
        let conn = connect(config).await?;
        let prefix = format!("{{{}}}", config.key_prefix);
        let location = config.location();
        let subscriber = crate::redis_conn::Subscriber::new(config)?;
        Ok(RedisQueue {
            conn,
            wake: crate::redis_wake::WakeListener::new(subscriber, &prefix, location.clone()),
            prefix,
            location,
            config: config.clone(),
            wait_for_replicas: config.wait_for_replicas,
            replica_wait_ms: config.replica_wait_ms.max(1),
            jobs: jobs.clone(),
            backoff: Backoff::from_config(jobs),
            scripts: Scripts::new(),
        })
    }

    fn err(&self, e: redis::RedisError) -> Error {
        if login_refused(&e) {
            refused(&self.config, &e)
        } else if e.is_io_error()
            || e.is_timeout()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.is_cluster_error()
        {
            Error::unavailable_from(format!("{} is not reachable", self.location), e)
        } else if matches!(e.retry_method(), redis::RetryMethod::WaitAndRetry) {
            // LOADING (reading its append-only file after a restart), TRYAGAIN, MASTERDOWN:
            // Redis is there and asks to be asked again.
            Error::unavailable_from(
                format!("{} is not ready yet (it says to retry)", self.location),
                e,
            )
        } else {
            Error::backend("redis", e)
        }
    }

    async fn run(&self, script: &Script, args: &[String]) -> Result<Reply> {
        let values = self.run_raw(script, args).await.map_err(|e| self.err(e))?;
        Reply::parse(values)
    }

    async fn run_raw(&self, script: &Script, args: &[String]) -> redis::RedisResult<Vec<String>> {
        let mut invocation = script.prepare_invoke();
        // The scripts read no KEYS, but name the prefix as one, as Redis Cluster asks of
        // scripts: every key they touch is in the prefix's slot.
        invocation
            .key(&self.prefix)
            .arg(&self.prefix)
            .arg(self.jobs.retention_secs.saturating_mul(1000));
        for a in args {
            invocation.arg(a);
        }
        let mut conn = self.conn.clone();
        invocation.invoke_async(&mut conn).await
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
        match self.run(&self.scripts.tick, &[]).await {
            Ok(_) => Ok(()),
            Err(Error::Unavailable { .. }) => self.run(&self.scripts.tick, &[]).await.map(|_| ()),
            Err(e) => Err(e),
        }
    }

    async fn read(&self, id: JobId) -> Result<Option<JobStatus>> {
        let fields: HashMap<String, String> = self
            .read_retrying(redis::cmd("HGETALL").arg(format!("{}:job:{id}", self.prefix)))
            .await?;
        status_from(id, &fields)
    }

    /// The jobs `ids` that still exist, in that order, read in one round trip.
    async fn read_many(&self, ids: &[JobId]) -> Result<Vec<JobStatus>> {
        Ok(self
            .read_hashes(ids)
            .await?
            .into_iter()
            .map(|(status, _)| status)
            .collect())
    }

    /// The jobs `ids` that still exist with their hashes, in that order, in one round
    /// trip.
    async fn read_hashes(
        &self,
        ids: &[JobId],
    ) -> Result<Vec<(JobStatus, HashMap<String, String>)>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.cmd("HGETALL").arg(format!("{}:job:{id}", self.prefix));
        }
        let mut conn = self.conn.clone();
        let all: Vec<HashMap<String, String>> =
            pipe.query_async(&mut conn).await.map_err(|e| self.err(e))?;
        let mut out = Vec::with_capacity(ids.len());
        for (id, fields) in ids.iter().zip(all) {
            if let Some(status) = status_from(*id, &fields)? {
                out.push((status, fields));
            }
        }
        Ok(out)
    }

    /// The ids of `queue`'s jobs (in `state`, if given) in enqueue order, paged.
    async fn list_ids(
        &self,
        queue: &str,
        state: Option<JobState>,
        page: &PageOptions,
    ) -> Result<Vec<JobId>> {
        let limit = page.limit.unwrap_or(100).clamp(1, 1000);
        self.run(
            &self.scripts.list,
            &[
                queue.to_owned(),
                state.map(|s| s.as_str().to_owned()).unwrap_or_default(),
                page.after.map(|a| a.to_string()).unwrap_or_default(),
                limit.to_string(),
            ],
        )
        .await?
        .rest
        .iter()
        .map(|id| id.parse())
        .collect()
    }
}

/// A job's status from its hash; `None` when the hash is gone.
fn status_from(id: JobId, fields: &HashMap<String, String>) -> Result<Option<JobStatus>> {
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

impl RedisQueue {
    /// Adds checked jobs (`enqueue_many` without the checks and span).
    async fn add_jobs(&self, jobs: Vec<NewJob>) -> Result<Vec<JobId>> {
        let count = jobs.len();
        let mut args = Vec::with_capacity(1 + JOB_ARGS * count);
        args.push(count.to_string());
        // A job without an idempotency key: whether it exists says whether the script ran.
        let mut probe = None;
        for mut job in jobs {
            let id = JobId::new();
            let origin = take_origin(&mut job.options);
            if job.options.idempotency_key.is_none() {
                probe.get_or_insert(id);
            }
            let payload = serde_json::to_string(&job.payload)
                .map_err(|e| Error::invalid_input(format!("payload is not JSON: {e}")))?;
            args.extend([
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
                if origin.is_empty() {
                    String::new()
                } else {
                    origin.to_json()
                },
            ]);
        }
        let values = match self.run_raw(&self.scripts.enqueue, &args).await {
            Ok(values) => values,
            // The connection was gone (Redis restarted, a network blip): the connection
            // manager reconnects on this failure. The job ids are ours and the script adds
            // all or none, so whether it ran is a lookup of a job without an idempotency
            // key away; if it did not, run it once more on the new connection (a batch
            // whose every job has a key runs again: the keys make that harmless). A
            // timeout is not retried: the script may still run.
            Err(e)
                if (e.is_connection_dropped() || e.is_io_error() || e.is_connection_refusal())
                    && !e.is_timeout() =>
            {
                let exists: bool = match probe {
                    Some(id) => {
                        self.read_retrying(
                            redis::cmd("EXISTS").arg(format!("{}:job:{id}", self.prefix)),
                        )
                        .await?
                    }
                    None => false,
                };
                if exists {
                    crate::metrics::count_enqueued(
                        args[1..].chunks(JOB_ARGS).map(|job| job[1].as_str()),
                    );
                    return args[1..]
                        .chunks(JOB_ARGS)
                        .map(|job| job[0].parse())
                        .collect();
                }
                self.run_raw(&self.scripts.enqueue, &args)
                    .await
                    .map_err(|e| self.err(e))?
            }
            Err(e) => return Err(self.err(e)),
        };
        let reply = Reply::parse(values)?;
        if reply.word != "ok" || reply.rest.len() != count {
            return Err(unexpected(&reply.word));
        }
        self.confirm_replicated(&reply.rest).await?;
        crate::metrics::count_enqueued(args[1..].chunks(JOB_ARGS).map(|job| job[1].as_str()));
        reply.rest.iter().map(|id| id.parse()).collect()
    }

    /// With `queue.wait_for_replicas`, waits until that many replicas have every write
    /// sent so far (`WAIT`, on the master of the queue's slot, where every command
    /// goes), so a failover right after cannot lose the jobs `ids`.
    async fn confirm_replicated(&self, ids: &[String]) -> Result<()> {
        if self.wait_for_replicas == 0 {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        let acked: i64 = redis::cmd("WAIT")
            .arg(self.wait_for_replicas)
            .arg(self.replica_wait_ms)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.err(e))?;
        if acked < i64::from(self.wait_for_replicas) {
            return Err(Error::unavailable(format!(
                "{} has job(s) {} on its master, but {acked} of the {} replica(s) \
                 `queue.wait_for_replicas` asks for confirmed them within {} ms: they may \
                 run, or be lost if the master fails now; enqueue again with the same \
                 idempotency key to be sure (check the replicas' link to the master)",
                self.location,
                ids.join(", "),
                self.wait_for_replicas,
                self.replica_wait_ms
            )));
        }
        Ok(())
    }
}

#[async_trait]
impl Queue for RedisQueue {
    fn backend(&self) -> &str {
        "redis"
    }

    async fn enqueue(&self, job: NewJob) -> Result<JobId> {
        self.enqueue_many(vec![job])
            .await?
            .pop()
            .ok_or_else(|| unexpected("enqueue"))
    }

    async fn enqueue_many(&self, jobs: Vec<NewJob>) -> Result<Vec<JobId>> {
        validate_batch(&jobs)?;
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let span = crate::enqueue_span(&jobs);
        tracing::Instrument::instrument(self.add_jobs(jobs), span).await
    }

    async fn reserve(&self, opts: &ReserveOptions) -> Result<Option<ReservedJob>> {
        Ok(self.reserve_many(opts, 1).await?.pop())
    }

    async fn reserve_many(&self, opts: &ReserveOptions, max: usize) -> Result<Vec<ReservedJob>> {
        if opts.queues.is_empty() || max == 0 {
            return Ok(Vec::new());
        }
        // One token for the batch: a lease is the job's id with it.
        let token = lease_token();
        let mut args = vec![ms(opts.lease).to_string(), token.clone(), max.to_string()];
        args.extend(opts.queues.iter().cloned());
        let reply = self.run(&self.scripts.reserve, &args).await?;
        if reply.word == "empty" {
            return Ok(Vec::new());
        }
        if reply.word != "ok" || reply.rest.is_empty() || !reply.rest.len().is_multiple_of(8) {
            return Err(unexpected(&reply.word));
        }
        reply
            .rest
            .chunks_exact(8)
            .map(|fields| {
                let [id, queue, task, payload, attempt, max, expires, origin] = fields else {
                    return Err(unexpected(&reply.word));
                };
                let id: JobId = id.parse()?;
                Ok(ReservedJob {
                    id,
                    queue: queue.clone(),
                    task: task.clone(),
                    payload: serde_json::from_str(payload).unwrap_or(Value::Null),
                    attempt: attempt.parse().unwrap_or(1),
                    max_attempts: max.parse().unwrap_or(1),
                    lease: LeaseToken {
                        job_id: id,
                        token: token.clone(),
                    },
                    lease_expires_at: time(expires).unwrap_or_else(Utc::now),
                    origin: stored_origin(id, origin),
                })
            })
            .collect()
    }

    async fn ack(&self, lease: &LeaseToken, result: Option<Value>) -> Result<()> {
        self.ack_many(&[(lease.clone(), result)])
            .await
            .pop()
            .unwrap_or_else(|| Err(unexpected("")))
    }

    async fn ack_many(&self, done: &[(LeaseToken, Option<Value>)]) -> Vec<Result<()>> {
        if done.is_empty() {
            return Vec::new();
        }
        let mut args = Vec::with_capacity(1 + 3 * done.len());
        args.push(done.len().to_string());
        for (lease, result) in done {
            args.push(lease.job_id.to_string());
            args.push(lease.token.clone());
            args.push(result.as_ref().map(Value::to_string).unwrap_or_default());
        }
        let words = match self.run(&self.scripts.ack, &args).await {
            Ok(reply) => std::iter::once(reply.word)
                .chain(reply.rest)
                .collect::<Vec<_>>(),
            Err(e) => {
                // Nothing was applied (a script is atomic): every ack failed the same way.
                let text = e.chain();
                return done
                    .iter()
                    .map(|_| Err(Error::unavailable(text.clone())))
                    .collect();
            }
        };
        if words.len() != done.len() {
            return done.iter().map(|_| Err(unexpected("ack"))).collect();
        }
        done.iter()
            .zip(words)
            .map(|((lease, _), word)| match word.as_str() {
                "ok" => Ok(()),
                other => Err(Reply {
                    word: other.to_owned(),
                    rest: Vec::new(),
                }
                .lease_error(lease.job_id)),
            })
            .collect()
    }

    async fn nack(&self, lease: &LeaseToken, opts: NackOptions) -> Result<NackOutcome> {
        // The attempt this lease is for, to compute its backoff here with core's formula;
        // the script checks that it is still the job's attempt.
        let attempt: Option<u32> = self
            .read_retrying(
                redis::cmd("HGET")
                    .arg(format!("{}:job:{}", self.prefix, lease.job_id))
                    .arg("attempts"),
            )
            .await?;
        let Some(attempt) = attempt else {
            return Err(Error::not_found(format!("job {}", lease.job_id)));
        };
        let delay = opts
            .retry_after
            .unwrap_or_else(|| self.backoff.delay(attempt));
        let reply = self
            .run(
                &self.scripts.nack,
                &[
                    lease.job_id.to_string(),
                    lease.token.clone(),
                    opts.error,
                    attempt.to_string(),
                    ms(delay).to_string(),
                    if opts.give_up { "1" } else { "0" }.to_owned(),
                ],
            )
            .await?;
        match reply.word.as_str() {
            "dead" => Ok(NackOutcome::Dead),
            "retry" => Ok(NackOutcome::Retrying {
                run_at: time(reply.get(0)?).unwrap_or_else(Utc::now),
            }),
            _ => Err(reply.lease_error(lease.job_id)),
        }
    }

    async fn release(&self, lease: &LeaseToken) -> Result<()> {
        let reply = self
            .run(
                &self.scripts.release,
                &[lease.job_id.to_string(), lease.token.clone()],
            )
            .await?;
        match reply.word.as_str() {
            "ok" => Ok(()),
            _ => Err(reply.lease_error(lease.job_id)),
        }
    }

    async fn extend_lease(&self, lease: &LeaseToken, by: Duration) -> Result<LeaseState> {
        let reply = self
            .run(
                &self.scripts.extend,
                &[
                    lease.job_id.to_string(),
                    lease.token.clone(),
                    ms(by).to_string(),
                ],
            )
            .await?;
        let cancelled = match reply.word.as_str() {
            "ok" => false,
            "cancelled" => true,
            _ => return Err(reply.lease_error(lease.job_id)),
        };
        Ok(LeaseState {
            expires_at: time(reply.get(0)?).unwrap_or_else(Utc::now),
            cancelled,
        })
    }

    async fn update_progress(&self, lease: &LeaseToken, progress: Progress) -> Result<()> {
        validate_progress(&progress)?;
        let json = serde_json::to_string(&progress).map_err(|e| Error::backend("redis", e))?;
        let reply = self
            .run(
                &self.scripts.progress,
                &[lease.job_id.to_string(), lease.token.clone(), json],
            )
            .await?;
        match reply.word.as_str() {
            "ok" => Ok(()),
            _ => Err(reply.lease_error(lease.job_id)),
        }
    }

    async fn status(&self, id: JobId) -> Result<JobStatus> {
        self.tick().await?;
        self.read(id)
            .await?
            .ok_or_else(|| Error::not_found(format!("job {id}")))
    }

    async fn cancel(&self, id: JobId) -> Result<JobState> {
        let reply = self.run(&self.scripts.cancel, &[id.to_string()]).await?;
        match reply.word.as_str() {
            "cancelled" => Ok(JobState::Cancelled),
            "missing" => Err(Error::not_found(format!("job {id}"))),
            "finished" => Err(Error::conflict(format!(
                "job {id} is already {}; only unfinished jobs can be cancelled",
                parse_state(reply.get(0)?)?.as_str()
            ))),
            other => Err(unexpected(other)),
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
        let mut ids = ids
            .iter()
            .map(|id| id.parse())
            .collect::<Result<Vec<JobId>>>()?;
        ids.sort_unstable();
        ids.retain(|id| page.after.is_none_or(|after| *id > after));
        ids.truncate(limit);
        self.read_many(&ids).await
    }

    async fn requeue_dead(&self, id: JobId) -> Result<()> {
        let reply = self.run(&self.scripts.requeue, &[id.to_string()]).await?;
        match reply.word.as_str() {
            "ok" => Ok(()),
            "missing" => Err(Error::not_found(format!("dead job {id}"))),
            other => Err(unexpected(other)),
        }
    }

    async fn purge_dead(&self, queue: &str) -> Result<u64> {
        let reply = self.run(&self.scripts.purge, &[queue.to_owned()]).await?;
        reply.get(0)?.parse().map_err(|_| unexpected(&reply.word))
    }

    async fn stats(&self, queue: &str) -> Result<QueueStats> {
        let reply = self.run(&self.scripts.stats, &[queue.to_owned()]).await?;
        let mut stats = QueueStats::default();
        for pair in reply.rest.chunks(2) {
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
        let ids = self.list_ids(queue, state, &page).await?;
        self.read_many(&ids).await
    }

    async fn export(&self, queue: &str, page: PageOptions) -> Result<Vec<PortableJob>> {
        let ids = self.list_ids(queue, None, &page).await?;
        let mut out = Vec::with_capacity(ids.len());
        for (status, fields) in self.read_hashes(&ids).await? {
            let payload = fields.get("payload").map(String::as_str).unwrap_or("null");
            let payload = serde_json::from_str(payload).map_err(|e| {
                Error::backend(
                    "redis",
                    std::io::Error::other(format!(
                        "job {}: the payload is not JSON: {e}",
                        status.id
                    )),
                )
            })?;
            let idempotency_key = fields.get("idem").filter(|k| !k.is_empty()).cloned();
            let origin = stored_origin(status.id, fields.get("origin").map_or("", String::as_str));
            out.push(PortableJob {
                status,
                payload,
                idempotency_key,
                origin,
            });
        }
        Ok(out)
    }

    async fn import(&self, job: PortableJob) -> Result<bool> {
        let PortableJob {
            status,
            payload,
            idempotency_key,
            origin,
        } = prepare_import(job)?;
        let ms = |t: DateTime<Utc>| t.timestamp_millis().to_string();
        let payload = serde_json::to_string(&payload)
            .map_err(|e| Error::invalid_input(format!("payload is not JSON: {e}")))?;
        let progress = match &status.progress {
            Some(p) => serde_json::to_string(p)
                .map_err(|e| Error::invalid_input(format!("progress is not JSON: {e}")))?,
            None => String::new(),
        };
        let reply = self
            .run(
                &self.scripts.import,
                &[
                    status.id.to_string(),
                    status.queue,
                    status.task,
                    payload,
                    status.state.as_str().to_owned(),
                    status.attempts.to_string(),
                    status.max_attempts.to_string(),
                    status.priority.to_string(),
                    ms(status.run_at),
                    idempotency_key.unwrap_or_default(),
                    ms(status.created_at),
                    ms(status.updated_at),
                    status.finished_at.map(ms).unwrap_or_default(),
                    status.last_error.unwrap_or_default(),
                    progress,
                    if origin.is_empty() {
                        String::new()
                    } else {
                        origin.to_json()
                    },
                ],
            )
            .await?;
        match reply.word.as_str() {
            "ok" => Ok(true),
            "exists" => Ok(false),
            other => Err(unexpected(other)),
        }
    }

    async fn health(&self) -> Result<()> {
        let _: String = self.read_retrying(&redis::cmd("PING")).await?;
        Ok(())
    }

    async fn wait_for_jobs(&self, _queues: &[String]) {
        self.wake.wait().await;
    }
}

/// The registry's connect for `queue.kind = "redis"`.
pub(crate) fn connect_queue<'a>(
    config: &'a QueueConfig,
    jobs: &'a JobsConfig,
    _: &'a crate::QueueContext,
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
