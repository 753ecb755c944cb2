//! The database queue (`queue.kind = "database"`): jobs in the application's own
//! database, in `queue_jobs` and `queue_idempotency`, with the same semantics as every
//! other queue backend (the conformance suite proves it on SQLite and PostgreSQL).
//!
//! # How it works
//!
//! - Each job is one row. `state` says where it is; `due_at` is its one timer (the run
//!   time of a scheduled or failed job, the lease expiry of a running one, the finish
//!   time of a succeeded or cancelled one), so one index serves every timer.
//! - Reserving is one `UPDATE … RETURNING` over the best queued rows: on PostgreSQL the
//!   rows are picked `FOR UPDATE SKIP LOCKED`, so reservers never wait for each other;
//!   SQLite has one writer at a time, so the statement alone is atomic.
//! - A sweep (at most every few milliseconds, and before every read that reports
//!   states) moves due jobs to `queued` and reclaims expired leases (dead-lettering jobs
//!   without attempts left); from time to time it deletes finished jobs past retention,
//!   a bounded batch per statement.
//! - Time is the database server's clock on PostgreSQL (`now()`), so workers on
//!   machines with skewed clocks agree on leases; SQLite is embedded, and every process
//!   sharing the file runs on one machine, one clock.
//! - [`DbQueue::enqueue_in`] writes a job inside a transaction of the caller's (a
//!   [`WriteTxn`], from [`Db::begin_job_txn`]), so a job exists exactly when the rows
//!   that asked for it do.

mod notify;
pub(crate) mod sql;

pub use notify::NoticeListener;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sea_orm::{ConnectionTrait, DatabaseTransaction, QueryResult, Value};

pub use crate::WriteTxn;
use serde_json::Value as Json;
use zeroscale_core::config::{DatabaseQueueConfig, JobsConfig};
use zeroscale_core::queue::driver::{
    Backoff, lease_lost, new_lease_token, prepare_import, take_origin, validate_batch,
    validate_new_job, validate_progress,
};
use zeroscale_core::queue::{
    JobId, JobState, JobStatus, LeaseState, LeaseToken, NackOptions, NackOutcome, NewJob,
    PageOptions, PortableJob, Progress, Queue, QueueStats, ReserveOptions, ReservedJob,
};
use zeroscale_core::{Error, Result};

use self::sql::{STATUS_COLUMNS, Sql, get, job_id, time, to_text};
use crate::{Db, Dialect};

/// How often a busy queue still sweeps (due retries, expired leases) while reservations
/// keep finding jobs.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// How soon after a sweep an empty reservation sweeps again.
const SWEEP_IDLE: Duration = Duration::from_millis(5);
/// Jobs moved per sweep statement.
const SWEEP_BATCH: u32 = 1000;
/// The notice topic of new jobs.
const JOBS_TOPIC: &str = "jobs";
/// What a reclaimed lease leaves as the job's last error.
const LEASE_EXPIRED: &str = "lease expired: the worker stopped or hung";

/// The queue over the application's database.
pub struct DbQueue {
    db: Db,
    sql: Sql,
    jobs: JobsConfig,
    config: DatabaseQueueConfig,
    backoff: Backoff,
    timers: Mutex<Timers>,
    /// Wakes this process's idle workers: on its own enqueues, and on PostgreSQL on
    /// every process's (`NOTIFY`).
    wake: Arc<tokio::sync::Notify>,
    /// Whether the PostgreSQL job listener was started.
    listening: std::sync::atomic::AtomicBool,
}

struct Timers {
    last_sweep: Option<Instant>,
    last_prune: Option<Instant>,
}

impl std::fmt::Debug for DbQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbQueue")
            .field("db", &self.db)
            .field("jobs", &self.jobs)
            .finish_non_exhaustive()
    }
}

/// Wakes this process's idle workers, and leaves one wake-up for the next to wait: a
/// worker whose reservation came back empty just before the job arrived, and that was
/// not yet waiting, reserves again at once instead of sleeping until its next poll.
/// The span one enqueue runs in: the job's origin is taken inside it, so in a trace the
/// job's run is a child of its enqueue.
fn enqueue_span(job: &NewJob) -> tracing::Span {
    tracing::info_span!(
        "enqueue",
        otel.name = %format_args!("enqueue {}", job.queue),
        otel.kind = "producer",
        queue = %job.queue,
        task = %job.task,
    )
}

fn wake_workers(wake: &tokio::sync::Notify) {
    wake.notify_waiters();
    wake.notify_one();
}

impl DbQueue {
    /// The queue in `db` (migrated: the tables come with the migrations), with the job
    /// settings of `[jobs]` and the sweep settings of `[queue]`.
    pub fn new(db: Db, jobs: JobsConfig, config: DatabaseQueueConfig) -> Self {
        DbQueue {
            sql: Sql {
                dialect: db.sql_dialect(),
            },
            db,
            backoff: Backoff::from_config(&jobs),
            jobs,
            config,
            timers: Mutex::new(Timers {
                last_sweep: None,
                last_prune: None,
            }),
            wake: Arc::default(),
            listening: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Adds a job inside the caller's transaction: it is visible to workers once the
    /// transaction commits, and never if it rolls back. Same rules as
    /// [`Queue::enqueue`] (an idempotency key held by an unfinished job returns that
    /// job's id).
    pub async fn enqueue_in(&self, txn: &mut WriteTxn, job: NewJob) -> Result<JobId> {
        validate_new_job(&job)?;
        let queue = job.queue.clone();
        let id = self.insert(&txn.txn, job).await?;
        txn.after_commit(move || crate::metrics::count_enqueued([queue.as_str()]));
        // This process's idle workers look once the job is visible.
        let wake = Arc::clone(&self.wake);
        txn.after_commit(move || wake_workers(&wake));
        Ok(id)
    }

    /// Tells idle workers in other processes (PostgreSQL: `NOTIFY`, delivered when
    /// `conn`'s transaction commits). SQLite's other processes poll.
    async fn announce<C: ConnectionTrait>(&self, conn: &C) -> Result<()> {
        if self.sql.dialect == Dialect::Postgres {
            self.row(
                conn,
                "SELECT pg_notify(?, '')",
                vec![notify::channel(JOBS_TOPIC).into()],
            )
            .await?;
        }
        Ok(())
    }

    /// On PostgreSQL, starts (once) the listener that wakes this process's idle workers
    /// when any process enqueues; it listens again after a lost connection.
    fn listen_for_jobs(&self) {
        if self.sql.dialect != Dialect::Postgres
            || self
                .listening
                .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return;
        }
        let db = self.db.clone();
        let wake = Arc::downgrade(&self.wake);
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(100);
            while wake.strong_count() > 0 {
                match db.listen(JOBS_TOPIC).await {
                    Ok(mut listener) => {
                        delay = Duration::from_millis(100);
                        // Woken at once: jobs enqueued while not listening are found.
                        if let Some(wake) = wake.upgrade() {
                            wake_workers(&wake);
                        }
                        loop {
                            match tokio::time::timeout(Duration::from_secs(30), listener.next())
                                .await
                            {
                                Ok(Ok(_)) => match wake.upgrade() {
                                    Some(wake) => wake_workers(&wake),
                                    None => return,
                                },
                                Ok(Err(e)) => {
                                    tracing::warn!(error = %e.chain(), "the job listener lost its connection; listening again");
                                    break;
                                }
                                // Quiet: is anyone still waiting?
                                Err(_) if wake.strong_count() == 0 => return,
                                Err(_) => {}
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e.chain(), "cannot listen for new jobs; workers poll meanwhile");
                    }
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        });
    }

    fn err(&self) -> impl Fn(sea_orm::DbErr) -> Error + '_ {
        move |e| self.db.map_err(e)
    }

    async fn exec<C: ConnectionTrait>(
        &self,
        conn: &C,
        sql: &str,
        values: Vec<Value>,
    ) -> Result<u64> {
        conn.execute_raw(self.sql.stmt(sql, values))
            .await
            .map(|r| r.rows_affected())
            .map_err(self.err())
    }

    async fn rows<C: ConnectionTrait>(
        &self,
        conn: &C,
        sql: &str,
        values: Vec<Value>,
    ) -> Result<Vec<QueryResult>> {
        conn.query_all_raw(self.sql.stmt(sql, values))
            .await
            .map_err(self.err())
    }

    async fn row<C: ConnectionTrait>(
        &self,
        conn: &C,
        sql: &str,
        values: Vec<Value>,
    ) -> Result<Option<QueryResult>> {
        conn.query_one_raw(self.sql.stmt(sql, values))
            .await
            .map_err(self.err())
    }

    async fn begin(&self) -> Result<DatabaseTransaction> {
        self.db.begin_write().await
    }

    async fn commit(&self, txn: DatabaseTransaction) -> Result<()> {
        txn.commit().await.map_err(self.err())
    }

    /// Inserts a job (or finds the unfinished holder of its idempotency key) on `conn`,
    /// which is a transaction when the job has a key.
    async fn insert<C: ConnectionTrait>(&self, conn: &C, job: NewJob) -> Result<JobId> {
        let span = enqueue_span(&job);
        tracing::Instrument::instrument(self.insert_job(conn, job), span).await
    }

    async fn insert_job<C: ConnectionTrait>(&self, conn: &C, mut job: NewJob) -> Result<JobId> {
        let id = JobId::new();
        let origin = take_origin(&mut job.options);
        if let Some(key) = &job.options.idempotency_key {
            self.exec(
                conn,
                "INSERT INTO queue_idempotency (queue, idem_key, job_id) VALUES (?, ?, ?) \
                 ON CONFLICT (queue, idem_key) DO NOTHING",
                vec![
                    job.queue.clone().into(),
                    key.clone().into(),
                    id.to_string().into(),
                ],
            )
            .await?;
            let holder = self
                .row(
                    conn,
                    "SELECT job_id FROM queue_idempotency WHERE queue = ? AND idem_key = ?",
                    vec![job.queue.clone().into(), key.clone().into()],
                )
                .await?
                .ok_or_else(|| {
                    Error::conflict("the idempotency key was released meanwhile; retry")
                })?;
            let holder: String = get(&holder, "job_id")?;
            if holder != id.to_string() {
                return job_id(&holder);
            }
        }
        let delay_ms = match job.options.delay {
            Some(d) if !d.is_zero() => i64::try_from(d.as_millis().max(1))
                .map_err(|_| Error::invalid_input("delay too long"))?,
            _ => 0,
        };
        let (state, due) = if delay_ms > 0 {
            ("scheduled", "NOW_MS + ?")
        } else {
            ("queued", "NULL")
        };
        let max_attempts = job
            .options
            .max_attempts
            .unwrap_or(self.jobs.default_max_attempts);
        let sql = format!(
            "INSERT INTO queue_jobs (id, queue, task, payload, state, priority, attempts, \
             max_attempts, run_at, idempotency_key, origin, created_at, updated_at, due_at) \
             VALUES (?, ?, ?, ?, '{state}', ?, 0, ?, NOW_MS + ?, ?, ?, NOW_MS, NOW_MS, {due})"
        );
        let mut values: Vec<Value> = vec![
            id.to_string().into(),
            job.queue.into(),
            job.task.into(),
            to_text(&job.payload)?.into(),
            job.options.priority.into(),
            i32::try_from(max_attempts).unwrap_or(i32::MAX).into(),
            delay_ms.into(),
            job.options.idempotency_key.into(),
            sql::origin_text(&origin).into(),
        ];
        if delay_ms > 0 {
            values.push(delay_ms.into());
        }
        if delay_ms == 0 && self.sql.dialect == Dialect::Postgres {
            // The insert and the NOTIFY that wakes other processes' idle workers, in one
            // round trip (delivered when the transaction commits).
            let sql = format!("WITH job AS ({sql} RETURNING id) SELECT pg_notify(?, '') FROM job");
            values.push(notify::channel(JOBS_TOPIC).into());
            self.rows(conn, &sql, values).await?;
        } else {
            self.exec(conn, &sql, values).await?;
        }
        Ok(id)
    }

    /// Moves due jobs to `queued`, reclaims expired leases and, every
    /// `prune_interval_secs`, deletes finished jobs past retention. `force` sweeps even
    /// if a sweep just ran.
    async fn sweep(&self, force: bool) -> Result<()> {
        let prune = {
            let mut timers = self.timers.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let recent = timers.last_sweep.is_some_and(|t| {
                now.duration_since(t) < if force { SWEEP_IDLE } else { SWEEP_EVERY }
            });
            if recent {
                return Ok(());
            }
            timers.last_sweep = Some(now);
            let prune = timers.last_prune.is_none_or(|t| {
                now.duration_since(t) >= Duration::from_secs(self.config.prune_interval_secs)
            });
            if prune {
                timers.last_prune = Some(now);
            }
            prune
        };
        // A read first: on SQLite a write statement takes the file's one write lock even
        // when it changes nothing, and idle workers sweep on every poll.
        if self.timer_due().await? {
            self.promote_due().await?;
            self.reclaim_expired().await?;
        }
        if prune {
            self.prune().await?;
        }
        Ok(())
    }

    /// Whether any job's timer (a run time or a lease expiry) has passed.
    async fn timer_due(&self) -> Result<bool> {
        let row = self
            .row(
                self.db.conn()?,
                "SELECT id FROM queue_jobs WHERE state IN ('scheduled', 'failed', 'running') \
                 AND due_at <= NOW_MS LIMIT 1",
                vec![],
            )
            .await?;
        Ok(row.is_some())
    }

    async fn promote_due(&self) -> Result<()> {
        let pick = match self.sql.dialect {
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
            Dialect::Sqlite => "",
        };
        let sql = format!(
            "UPDATE queue_jobs SET state = 'queued', due_at = NULL WHERE id IN (\
             SELECT id FROM queue_jobs WHERE state IN ('scheduled', 'failed') \
             AND due_at <= NOW_MS ORDER BY due_at LIMIT {SWEEP_BATCH}{pick})"
        );
        self.exec(self.db.conn()?, &sql, vec![]).await?;
        Ok(())
    }

    async fn reclaim_expired(&self) -> Result<()> {
        match self.sql.dialect {
            Dialect::Postgres => {
                let sql = format!(
                    "WITH expired AS (SELECT id, queue, idempotency_key, \
                     attempts >= max_attempts AS dead FROM queue_jobs \
                     WHERE state = 'running' AND due_at <= NOW_MS \
                     LIMIT {SWEEP_BATCH} FOR UPDATE SKIP LOCKED), \
                     released AS (DELETE FROM queue_idempotency i USING expired e \
                     WHERE e.dead AND i.queue = e.queue AND i.idem_key = e.idempotency_key \
                     AND i.job_id = e.id) \
                     UPDATE queue_jobs j SET \
                     state = CASE WHEN e.dead THEN 'dead' ELSE 'queued' END, \
                     finished_at = CASE WHEN e.dead THEN NOW_MS ELSE NULL END, \
                     lease_token = NULL, due_at = NULL, last_error = ?, updated_at = NOW_MS \
                     FROM expired e WHERE j.id = e.id"
                );
                self.exec(self.db.conn()?, &sql, vec![LEASE_EXPIRED.into()])
                    .await?;
            }
            Dialect::Sqlite => {
                let expired = "state = 'running' AND due_at <= NOW_MS";
                let txn = self.begin().await?;
                self.exec(
                    &txn,
                    &format!(
                        "DELETE FROM queue_idempotency WHERE EXISTS (SELECT 1 FROM queue_jobs j \
                         WHERE j.{expired} AND j.attempts >= j.max_attempts \
                         AND j.queue = queue_idempotency.queue \
                         AND j.idempotency_key = queue_idempotency.idem_key \
                         AND j.id = queue_idempotency.job_id)"
                    ),
                    vec![],
                )
                .await?;
                self.exec(
                    &txn,
                    &format!(
                        "UPDATE queue_jobs SET \
                         state = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'queued' END, \
                         finished_at = CASE WHEN attempts >= max_attempts THEN NOW_MS ELSE NULL END, \
                         lease_token = NULL, due_at = NULL, last_error = ?, updated_at = NOW_MS \
                         WHERE {expired}"
                    ),
                    vec![LEASE_EXPIRED.into()],
                )
                .await?;
                self.commit(txn).await?;
            }
        }
        Ok(())
    }

    /// Deletes succeeded and cancelled jobs past retention, `prune_batch` rows per
    /// statement, so no statement holds locks for long.
    pub async fn prune(&self) -> Result<u64> {
        let retention =
            i64::try_from(self.jobs.retention_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        let batch = self.config.prune_batch.max(1);
        let sql = format!(
            "DELETE FROM queue_jobs WHERE id IN (SELECT id FROM queue_jobs \
             WHERE state IN ('succeeded', 'cancelled') AND due_at <= NOW_MS - ? LIMIT {batch})"
        );
        let mut total = 0;
        loop {
            let n = self
                .exec(self.db.conn()?, &sql, vec![retention.into()])
                .await?;
            total += n;
            if n < u64::from(batch) {
                return Ok(total);
            }
            tokio::task::yield_now().await;
        }
    }

    /// Takes up to `max` queued jobs of `queues` under fresh leases.
    async fn take(&self, opts: &ReserveOptions, max: usize) -> Result<Vec<ReservedJob>> {
        if opts.queues.is_empty() || max == 0 {
            return Ok(Vec::new());
        }
        let lease_ms = i64::try_from(opts.lease.as_millis())
            .map_err(|_| Error::invalid_input("lease too long"))?;
        let prefix = new_lease_token();
        let queues = Sql::list(opts.queues.len());
        let limit = max.min(1000);
        let returning = "id, queue, task, payload, attempts, max_attempts, priority, \
                         lease_token, due_at, origin";
        let set = "state = 'running', attempts = attempts + 1, lease_token = ? || queue_jobs.id, \
                   due_at = NOW_MS + ?, updated_at = NOW_MS";
        let sql = match self.sql.dialect {
            Dialect::Postgres => format!(
                "WITH picked AS (SELECT id FROM queue_jobs WHERE queue IN ({queues}) \
                 AND state = 'queued' ORDER BY priority DESC, id LIMIT {limit} \
                 FOR UPDATE SKIP LOCKED) \
                 UPDATE queue_jobs SET {set} FROM picked WHERE queue_jobs.id = picked.id \
                 RETURNING queue_jobs.id AS id, queue, task, payload, attempts, max_attempts, \
                 priority, lease_token, due_at, origin"
            ),
            Dialect::Sqlite => format!(
                "UPDATE queue_jobs SET {set} WHERE id IN (SELECT id FROM queue_jobs \
                 WHERE queue IN ({queues}) AND state = 'queued' \
                 ORDER BY priority DESC, id LIMIT {limit}) RETURNING {returning}"
            ),
        };
        let mut values: Vec<Value> = Vec::with_capacity(opts.queues.len() + 2);
        // PostgreSQL's statement lists the queues first; SQLite's the SET values first.
        match self.sql.dialect {
            Dialect::Postgres => {
                values.extend(opts.queues.iter().map(|q| Value::from(q.clone())));
                values.push(prefix.into());
                values.push(lease_ms.into());
            }
            Dialect::Sqlite => {
                values.push(prefix.into());
                values.push(lease_ms.into());
                values.extend(opts.queues.iter().map(|q| Value::from(q.clone())));
            }
        }
        let rows = self.rows(self.db.conn()?, &sql, values).await?;
        let mut jobs = Vec::with_capacity(rows.len());
        for row in &rows {
            let id = job_id(&get::<String>(row, "id")?)?;
            let priority: i32 = get(row, "priority")?;
            jobs.push((
                priority,
                ReservedJob {
                    id,
                    queue: get(row, "queue")?,
                    task: get(row, "task")?,
                    payload: sql::payload(row)?,
                    attempt: get::<i32>(row, "attempts")?.max(0) as u32,
                    max_attempts: get::<i32>(row, "max_attempts")?.max(0) as u32,
                    lease: LeaseToken {
                        job_id: id,
                        token: get(row, "lease_token")?,
                    },
                    lease_expires_at: time(get(row, "due_at")?),
                    origin: sql::origin(row)?,
                },
            ));
        }
        // RETURNING has no order: hand them out in reservation order.
        jobs.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.id.cmp(&b.1.id)));
        Ok(jobs.into_iter().map(|(_, job)| job).collect())
    }

    /// Why a statement on a held lease changed nothing: the job is gone, or the lease is.
    async fn not_held(&self, lease: &LeaseToken) -> Error {
        let conn = match self.db.conn() {
            Ok(conn) => conn,
            Err(e) => return e,
        };
        match self
            .row(
                conn,
                "SELECT id FROM queue_jobs WHERE id = ?",
                vec![lease.job_id.to_string().into()],
            )
            .await
        {
            Ok(Some(_)) => lease_lost(lease.job_id),
            Ok(None) => Error::not_found(format!("job {}", lease.job_id)),
            Err(e) => e,
        }
    }

    /// Releases the idempotency key `job` holds, if any.
    async fn release_key<C: ConnectionTrait>(&self, conn: &C, row: &QueryResult) -> Result<()> {
        let key: Option<String> = get(row, "idempotency_key")?;
        if let Some(key) = key {
            self.exec(
                conn,
                "DELETE FROM queue_idempotency WHERE queue = ? AND idem_key = ? AND job_id = ?",
                vec![
                    get::<String>(row, "queue")?.into(),
                    key.into(),
                    get::<String>(row, "id")?.into(),
                ],
            )
            .await?;
        }
        Ok(())
    }

    /// Finishes the job a held lease names as `state` (succeeded), in one transaction
    /// with releasing its idempotency key.
    async fn finish_held(&self, lease: &LeaseToken, result: Option<Json>) -> Result<()> {
        let result = result.as_ref().map(to_text).transpose()?;
        let txn = self.begin().await?;
        let row = self
            .row(
                &txn,
                "UPDATE queue_jobs SET state = 'succeeded', result = ?, finished_at = NOW_MS, \
                 due_at = NOW_MS, lease_token = NULL, updated_at = NOW_MS \
                 WHERE id = ? AND lease_token = ? AND state = 'running' AND due_at > NOW_MS \
                 RETURNING id, queue, idempotency_key",
                vec![
                    result.into(),
                    lease.job_id.to_string().into(),
                    lease.token.clone().into(),
                ],
            )
            .await?;
        let Some(row) = row else {
            drop(txn);
            return Err(self.not_held(lease).await);
        };
        self.release_key(&txn, &row).await?;
        self.commit(txn).await
    }

    /// Acks a batch in one transaction and one `UPDATE … FROM (VALUES …)` per 200
    /// leases; each lease that changed nothing gets its own answer (not found or lost).
    async fn ack_batch(&self, done: &[(LeaseToken, Option<Json>)]) -> Result<Vec<Result<()>>> {
        let mut acked = std::collections::HashSet::new();
        let txn = self.begin().await?;
        for chunk in done.chunks(200) {
            let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 3);
            for (lease, result) in chunk {
                values.push(lease.job_id.to_string().into());
                values.push(lease.token.clone().into());
                values.push(result.as_ref().map(to_text).transpose()?.into());
            }
            let rows = vec!["(?, ?, ?)"; chunk.len()].join(", ");
            let sql = format!(
                "UPDATE queue_jobs SET state = 'succeeded', result = v.column3, \
                 finished_at = NOW_MS, due_at = NOW_MS, lease_token = NULL, updated_at = NOW_MS \
                 FROM (VALUES {rows}) AS v \
                 WHERE queue_jobs.id = v.column1 AND queue_jobs.lease_token = v.column2 \
                 AND queue_jobs.state = 'running' AND queue_jobs.due_at > NOW_MS \
                 RETURNING queue_jobs.id AS id, queue_jobs.queue AS queue, \
                 queue_jobs.idempotency_key AS idempotency_key"
            );
            for row in self.rows(&txn, &sql, values).await? {
                self.release_key(&txn, &row).await?;
                acked.insert(get::<String>(&row, "id")?);
            }
        }
        self.commit(txn).await?;
        let mut results = Vec::with_capacity(done.len());
        for (lease, _) in done {
            results.push(if acked.contains(&lease.job_id.to_string()) {
                Ok(())
            } else {
                Err(self.not_held(lease).await)
            });
        }
        Ok(results)
    }

    fn held_clause() -> &'static str {
        "id = ? AND lease_token = ? AND state = 'running' AND due_at > NOW_MS"
    }

    fn lease_values(lease: &LeaseToken) -> Vec<Value> {
        vec![lease.job_id.to_string().into(), lease.token.clone().into()]
    }
}

fn page_limit(page: &PageOptions) -> usize {
    page.limit.unwrap_or(100).clamp(1, 1000)
}

#[async_trait]
impl Queue for DbQueue {
    fn backend(&self) -> &str {
        "database"
    }

    async fn enqueue(&self, job: NewJob) -> Result<JobId> {
        validate_new_job(&job)?;
        let queue = job.queue.clone();
        let id = if job.options.idempotency_key.is_some() {
            let txn = self.begin().await?;
            let id = self.insert(&txn, job).await?;
            self.commit(txn).await?;
            id
        } else {
            self.insert(self.db.conn()?, job).await?
        };
        crate::metrics::count_enqueued([queue.as_str()]);
        wake_workers(&self.wake);
        Ok(id)
    }

    async fn enqueue_many(&self, jobs: Vec<NewJob>) -> Result<Vec<JobId>> {
        validate_batch(&jobs)?;
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        // All or none: one transaction, so one commit (and one fsync) for the batch.
        let txn = self.begin().await?;
        let mut ids = Vec::with_capacity(jobs.len());
        let queues: Vec<String> = jobs.iter().map(|job| job.queue.clone()).collect();
        for job in jobs {
            ids.push(self.insert(&txn, job).await?);
        }
        self.commit(txn).await?;
        crate::metrics::count_enqueued(queues.iter().map(String::as_str));
        wake_workers(&self.wake);
        Ok(ids)
    }

    async fn reserve(&self, opts: &ReserveOptions) -> Result<Option<ReservedJob>> {
        Ok(self.reserve_many(opts, 1).await?.pop())
    }

    async fn reserve_many(&self, opts: &ReserveOptions, max: usize) -> Result<Vec<ReservedJob>> {
        self.sweep(false).await?;
        let mut jobs = self.take(opts, max).await?;
        if jobs.len() < max {
            // Fewer than asked: due retries or expired leases may be waiting for a sweep.
            self.sweep(true).await?;
            let more = self.take(opts, max - jobs.len()).await?;
            jobs.extend(more);
        }
        Ok(jobs)
    }

    async fn ack(&self, lease: &LeaseToken, result: Option<Json>) -> Result<()> {
        self.finish_held(lease, result).await
    }

    async fn ack_many(&self, done: &[(LeaseToken, Option<Json>)]) -> Vec<Result<()>> {
        match self.ack_batch(done).await {
            Ok(results) => results,
            // The batch as a whole failed (the database is unreachable): so did each ack.
            Err(e) => done
                .iter()
                .map(|_| Err(Error::unavailable(e.to_string())))
                .collect(),
        }
    }

    async fn nack(&self, lease: &LeaseToken, opts: NackOptions) -> Result<NackOutcome> {
        let txn = self.begin().await?;
        let lock = match self.sql.dialect {
            Dialect::Postgres => " FOR UPDATE",
            Dialect::Sqlite => "",
        };
        let held = self
            .row(
                &txn,
                &format!(
                    "SELECT id, queue, idempotency_key, attempts, max_attempts FROM queue_jobs \
                     WHERE {}{lock}",
                    Self::held_clause()
                ),
                Self::lease_values(lease),
            )
            .await?;
        let Some(row) = held else {
            drop(txn);
            return Err(self.not_held(lease).await);
        };
        let attempts = get::<i32>(&row, "attempts")?.max(0) as u32;
        let max_attempts = get::<i32>(&row, "max_attempts")?.max(0) as u32;
        let id = lease.job_id.to_string();
        if opts.give_up || attempts >= max_attempts {
            self.exec(
                &txn,
                "UPDATE queue_jobs SET state = 'dead', last_error = ?, finished_at = NOW_MS, \
                 due_at = NULL, lease_token = NULL, updated_at = NOW_MS WHERE id = ?",
                vec![opts.error.into(), id.into()],
            )
            .await?;
            self.release_key(&txn, &row).await?;
            self.commit(txn).await?;
            return Ok(NackOutcome::Dead);
        }
        let delay = opts
            .retry_after
            .unwrap_or_else(|| self.backoff.delay(attempts));
        let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 4);
        let row = self
            .row(
                &txn,
                "UPDATE queue_jobs SET state = 'failed', last_error = ?, run_at = NOW_MS + ?, \
                 due_at = NOW_MS + ?, lease_token = NULL, updated_at = NOW_MS WHERE id = ? \
                 RETURNING run_at",
                vec![
                    opts.error.into(),
                    delay_ms.into(),
                    delay_ms.into(),
                    id.into(),
                ],
            )
            .await?
            .ok_or_else(|| lease_lost(lease.job_id))?;
        let run_at = time(get(&row, "run_at")?);
        self.commit(txn).await?;
        Ok(NackOutcome::Retrying { run_at })
    }

    async fn release(&self, lease: &LeaseToken) -> Result<()> {
        // Its id is its enqueue order: queued again, it goes back where it was.
        let txn = self.begin().await?;
        let n = self
            .exec(
                &txn,
                &format!(
                    "UPDATE queue_jobs SET state = 'queued', attempts = attempts - 1, \
                     lease_token = NULL, due_at = NULL, updated_at = NOW_MS WHERE {}",
                    Self::held_clause()
                ),
                Self::lease_values(lease),
            )
            .await?;
        if n == 0 {
            drop(txn);
            return Err(self.not_held(lease).await);
        }
        self.announce(&txn).await?;
        self.commit(txn).await?;
        wake_workers(&self.wake);
        Ok(())
    }

    async fn extend_lease(&self, lease: &LeaseToken, by: Duration) -> Result<LeaseState> {
        let by_ms =
            i64::try_from(by.as_millis()).map_err(|_| Error::invalid_input("lease too long"))?;
        let mut values = vec![by_ms.into()];
        values.extend(Self::lease_values(lease));
        let row = self
            .row(
                self.db.conn()?,
                &format!(
                    "UPDATE queue_jobs SET due_at = NOW_MS + ?, updated_at = NOW_MS \
                     WHERE {} RETURNING due_at",
                    Self::held_clause()
                ),
                values,
            )
            .await?;
        if let Some(row) = row {
            return Ok(LeaseState {
                expires_at: time(get(&row, "due_at")?),
                cancelled: false,
            });
        }
        // A job cancelled while running keeps its token so the handler can be told.
        let cancelled = self
            .row(
                self.db.conn()?,
                "SELECT id FROM queue_jobs WHERE id = ? AND lease_token = ? AND state = 'cancelled'",
                Self::lease_values(lease),
            )
            .await?;
        if cancelled.is_some() {
            return Ok(LeaseState {
                expires_at: chrono::Utc::now(),
                cancelled: true,
            });
        }
        Err(self.not_held(lease).await)
    }

    async fn update_progress(&self, lease: &LeaseToken, progress: Progress) -> Result<()> {
        validate_progress(&progress)?;
        let mut values = vec![to_text(&progress)?.into()];
        values.extend(Self::lease_values(lease));
        let n = self
            .exec(
                self.db.conn()?,
                &format!(
                    "UPDATE queue_jobs SET progress = ?, updated_at = NOW_MS WHERE {}",
                    Self::held_clause()
                ),
                values,
            )
            .await?;
        if n == 0 {
            return Err(self.not_held(lease).await);
        }
        Ok(())
    }

    async fn status(&self, id: JobId) -> Result<JobStatus> {
        self.sweep(true).await?;
        let row = self
            .row(
                self.db.conn()?,
                &format!("SELECT {STATUS_COLUMNS} FROM queue_jobs WHERE id = ?"),
                vec![id.to_string().into()],
            )
            .await?
            .ok_or_else(|| Error::not_found(format!("job {id}")))?;
        sql::status(&row)
    }

    async fn cancel(&self, id: JobId) -> Result<JobState> {
        self.sweep(true).await?;
        let txn = self.begin().await?;
        let lock = match self.sql.dialect {
            Dialect::Postgres => " FOR UPDATE",
            Dialect::Sqlite => "",
        };
        let row = self
            .row(
                &txn,
                &format!(
                    "SELECT id, queue, idempotency_key, state FROM queue_jobs WHERE id = ?{lock}"
                ),
                vec![id.to_string().into()],
            )
            .await?
            .ok_or_else(|| Error::not_found(format!("job {id}")))?;
        let state: String = get(&row, "state")?;
        if ["succeeded", "dead", "cancelled"].contains(&state.as_str()) {
            return Err(Error::conflict(format!(
                "job {id} is already {state}; only unfinished jobs can be cancelled"
            )));
        }
        // A running job keeps its lease token, so its handler's next heartbeat is told.
        self.exec(
            &txn,
            "UPDATE queue_jobs SET state = 'cancelled', finished_at = NOW_MS, due_at = NOW_MS, \
             updated_at = NOW_MS WHERE id = ?",
            vec![id.to_string().into()],
        )
        .await?;
        self.release_key(&txn, &row).await?;
        self.commit(txn).await?;
        Ok(JobState::Cancelled)
    }

    async fn list_dead(&self, queue: &str, page: PageOptions) -> Result<Vec<JobStatus>> {
        self.list(queue, Some(JobState::Dead), page).await
    }

    async fn requeue_dead(&self, id: JobId) -> Result<()> {
        let txn = self.begin().await?;
        let row = self
            .row(
                &txn,
                "UPDATE queue_jobs SET state = 'queued', attempts = 0, finished_at = NULL, \
                 run_at = NOW_MS, due_at = NULL, lease_token = NULL, updated_at = NOW_MS \
                 WHERE id = ? AND state = 'dead' RETURNING id, queue, idempotency_key",
                vec![id.to_string().into()],
            )
            .await?
            .ok_or_else(|| Error::not_found(format!("dead job {id}")))?;
        let key: Option<String> = get(&row, "idempotency_key")?;
        if let Some(key) = key {
            // The key comes back unless another job took it meanwhile.
            self.exec(
                &txn,
                "INSERT INTO queue_idempotency (queue, idem_key, job_id) VALUES (?, ?, ?) \
                 ON CONFLICT (queue, idem_key) DO NOTHING",
                vec![
                    get::<String>(&row, "queue")?.into(),
                    key.into(),
                    id.to_string().into(),
                ],
            )
            .await?;
        }
        self.announce(&txn).await?;
        self.commit(txn).await?;
        wake_workers(&self.wake);
        Ok(())
    }

    async fn purge_dead(&self, queue: &str) -> Result<u64> {
        self.exec(
            self.db.conn()?,
            "DELETE FROM queue_jobs WHERE queue = ? AND state = 'dead'",
            vec![queue.into()],
        )
        .await
    }

    async fn stats(&self, queue: &str) -> Result<QueueStats> {
        self.sweep(true).await?;
        let rows = self
            .rows(
                self.db.conn()?,
                "SELECT state, COUNT(*) AS n FROM queue_jobs WHERE queue = ? GROUP BY state",
                vec![queue.into()],
            )
            .await?;
        let mut stats = QueueStats::default();
        for row in &rows {
            let state: String = get(row, "state")?;
            let n: i64 = get(row, "n")?;
            let state = JobState::parse(&state);
            if let Some(state) = state {
                stats.add(state, n.max(0) as u64);
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
        self.sweep(true).await?;
        let mut sql = format!("SELECT {STATUS_COLUMNS} FROM queue_jobs WHERE queue = ?");
        let mut values: Vec<Value> = vec![queue.into()];
        if let Some(state) = state {
            sql.push_str(" AND state = ?");
            values.push(state.as_str().into());
        }
        if let Some(after) = page.after {
            sql.push_str(" AND id > ?");
            values.push(after.to_string().into());
        }
        sql.push_str(&format!(" ORDER BY id LIMIT {}", page_limit(&page)));
        let rows = self.rows(self.db.conn()?, &sql, values).await?;
        rows.iter().map(sql::status).collect()
    }

    async fn export(&self, queue: &str, page: PageOptions) -> Result<Vec<PortableJob>> {
        self.sweep(true).await?;
        let mut sql = format!(
            "SELECT {STATUS_COLUMNS}, idempotency_key, origin FROM queue_jobs WHERE queue = ?"
        );
        let mut values: Vec<Value> = vec![queue.into()];
        if let Some(after) = page.after {
            sql.push_str(" AND id > ?");
            values.push(after.to_string().into());
        }
        sql.push_str(&format!(" ORDER BY id LIMIT {}", page_limit(&page)));
        let rows = self.rows(self.db.conn()?, &sql, values).await?;
        rows.iter()
            .map(|row| {
                Ok(PortableJob {
                    status: sql::status(row)?,
                    payload: sql::payload(row)?,
                    idempotency_key: get(row, "idempotency_key")?,
                    origin: sql::origin(row)?,
                })
            })
            .collect()
    }

    async fn import(&self, job: PortableJob) -> Result<bool> {
        let PortableJob {
            status,
            payload,
            idempotency_key,
            origin,
        } = prepare_import(job)?;
        let ms = |t: chrono::DateTime<chrono::Utc>| t.timestamp_millis();
        let due_at = matches!(status.state, JobState::Scheduled | JobState::Failed)
            .then(|| ms(status.run_at));
        let txn = self.begin().await?;
        let inserted = self
            .exec(
                &txn,
                "INSERT INTO queue_jobs (id, queue, task, payload, state, priority, attempts, \
                 max_attempts, run_at, due_at, idempotency_key, progress, last_error, \
                 created_at, updated_at, finished_at, origin) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (id) DO NOTHING",
                vec![
                    status.id.to_string().into(),
                    status.queue.clone().into(),
                    status.task.into(),
                    to_text(&payload)?.into(),
                    status.state.as_str().into(),
                    status.priority.into(),
                    i32::try_from(status.attempts).unwrap_or(i32::MAX).into(),
                    i32::try_from(status.max_attempts)
                        .unwrap_or(i32::MAX)
                        .into(),
                    ms(status.run_at).into(),
                    due_at.into(),
                    idempotency_key.clone().into(),
                    status.progress.as_ref().map(to_text).transpose()?.into(),
                    status.last_error.into(),
                    ms(status.created_at).into(),
                    ms(status.updated_at).into(),
                    status.finished_at.map(ms).into(),
                    sql::origin_text(&origin).into(),
                ],
            )
            .await?;
        if inserted == 0 {
            return Ok(false);
        }
        if status.state != JobState::Dead
            && let Some(key) = idempotency_key
        {
            // The key comes along unless a job here holds it already.
            self.exec(
                &txn,
                "INSERT INTO queue_idempotency (queue, idem_key, job_id) VALUES (?, ?, ?) \
                 ON CONFLICT (queue, idem_key) DO NOTHING",
                vec![
                    status.queue.into(),
                    key.into(),
                    status.id.to_string().into(),
                ],
            )
            .await?;
        }
        if status.state == JobState::Queued {
            self.announce(&txn).await?;
        }
        self.commit(txn).await?;
        wake_workers(&self.wake);
        Ok(true)
    }

    async fn wait_for_jobs(&self, _queues: &[String]) {
        self.listen_for_jobs();
        self.wake.notified().await;
    }

    async fn health(&self) -> Result<()> {
        self.row(self.db.conn()?, "SELECT id FROM queue_jobs LIMIT 1", vec![])
            .await
            .map_err(|e| {
                Error::unavailable_from(
                    format!(
                        "the database queue's table queue_jobs cannot be read on {} at {}; \
                         is the database up and migrated (`zeroscale migrate up`)?",
                        self.db.sql_dialect().name(),
                        self.db.location()
                    ),
                    e,
                )
            })?;
        Ok(())
    }
}
