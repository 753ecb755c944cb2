//! PostgreSQL read replicas (`database.replicas`): which reads may go to one, which
//! replica, and how far behind each one is.
//!
//! Services mark the reads that may be a little stale (searches, listings, histories);
//! [`crate::Db`] sends each of those to a healthy replica in turn, and everything else to
//! the primary. A checker task asks every replica, each `database.replica_check_ms`, how
//! far it has replayed the primary's WAL; a replica that does not answer, or whose lag is
//! over `database.max_replica_lag_ms`, gets no reads until a later check finds it well.
//! With none usable, stale-tolerant reads go to the primary. A read that fails on a
//! replica runs again on the primary, so a replica going away costs no request.
//!
//! **Lag** is measured in time, from WAL positions: each check records the primary's
//! current position with the time; a replica's lag is how long ago the primary first had
//! a position the replica has not replayed (0 when it has replayed everything the primary
//! had at the last check). It needs no clock shared between servers, and an idle primary
//! does not look like a lagging replica. It can under-read by up to one check interval,
//! which is why `database.read_your_writes_ms` must cover `max_replica_lag_ms` plus that.
//!
//! **Read-your-writes** is the caller's to ask for: code run inside [`primary_reads`]
//! sends every read to the primary, and code inside [`switchable_reads`] can switch to
//! the primary part-way with [`read_primary_from_now`]. The `zeroscale` server does this for a user's
//! requests for `read_your_writes_ms` after that user's last write (a mark in the shared
//! counters, so it holds across instances).

use std::collections::VecDeque;
use std::future::Future;
#[cfg(feature = "postgres")]
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, Weak};
use std::time::{Duration, Instant};

#[cfg(feature = "postgres")]
use sea_orm::Database;
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
#[cfg(feature = "postgres")]
use zeroscale_core::config::PostgresConfig;
use zeroscale_core::metrics as m;
#[cfg(feature = "postgres")]
use zeroscale_core::redacted_url;

tokio::task_local! {
    static PRIMARY_READS: std::cell::Cell<bool>;
}

/// Runs `fut` with every database read it makes going to the primary, stale-tolerant
/// ones included: for a caller that must see what it (or its user) just wrote.
/// Without replicas configured this changes nothing.
pub async fn primary_reads<F: Future>(fut: F) -> F::Output {
    PRIMARY_READS.scope(std::cell::Cell::new(true), fut).await
}

/// Runs `fut` with stale-tolerant reads going to replicas until code inside it calls
/// [`read_primary_from_now`] (e.g. once a request knows its user wrote a moment ago).
pub async fn switchable_reads<F: Future>(fut: F) -> F::Output {
    PRIMARY_READS.scope(std::cell::Cell::new(false), fut).await
}

/// Inside [`switchable_reads`] (or [`primary_reads`]): every later read of this task goes
/// to the primary. Returns `false`, changing nothing, outside both.
pub fn read_primary_from_now() -> bool {
    PRIMARY_READS.try_with(|on| on.set(true)).is_ok()
}

/// Whether the current task reads only from the primary.
fn primary_only() -> bool {
    PRIMARY_READS
        .try_with(std::cell::Cell::get)
        .unwrap_or(false)
}

/// What the last check found about one replica.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaStatus {
    /// Where it is, without credentials.
    pub location: String,
    /// It answered the last check.
    pub up: bool,
    /// How far behind the primary it was at the last check; `None` before a check has
    /// reached it (and while it is down).
    pub lag: Option<Duration>,
    /// It gets stale-tolerant reads now (up, lag within `max_replica_lag_ms`).
    pub serving: bool,
    /// Stale-tolerant reads it has served since start.
    pub reads: u64,
    /// Why the last check failed, when it did.
    pub error: Option<String>,
}

impl std::fmt::Display for ReplicaStatus {
    /// `host:port/db up, 0.12 s behind, serving reads` (or why not).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ", self.location)?;
        if !self.up {
            return write!(
                f,
                "down ({}), reads go elsewhere",
                self.error.as_deref().unwrap_or("not checked yet")
            );
        }
        match self.lag {
            Some(lag) => write!(f, "up, {:.2} s behind", lag.as_secs_f64())?,
            None => write!(f, "up, {}", self.error.as_deref().unwrap_or("lag unknown"))?,
        }
        if self.serving {
            write!(f, ", serving reads")
        } else {
            write!(f, ", too far behind: reads go elsewhere")
        }
    }
}

#[derive(Debug, Default)]
struct State {
    up: bool,
    lag: Option<Duration>,
    error: Option<String>,
}

struct Replica {
    conn: DatabaseConnection,
    location: String,
    state: Mutex<State>,
    reads: AtomicU64,
}

/// The replicas of one [`crate::Db`], shared by its clones.
#[cfg_attr(
    not(feature = "postgres"),
    allow(dead_code, reason = "only PostgreSQL connects replicas")
)]
pub(crate) struct Replicas {
    replicas: Vec<Replica>,
    max_lag: Duration,
    check_every: Duration,
    next: AtomicUsize,
    /// Stale-tolerant reads the primary served (no replica usable, or inside
    /// [`primary_reads`]).
    primary_reads: AtomicU64,
    /// The primary's WAL position at recent checks, oldest first, with when it was read.
    samples: Mutex<VecDeque<(Instant, u64)>>,
    /// The primary's position at the first check: a replica behind it is behind by an
    /// unknown time, so it gets no reads until it has replayed that far.
    first_position: Mutex<Option<u64>>,
}

/// Where a stale-tolerant read goes.
pub(crate) enum Target<'a> {
    Primary,
    Replica(usize, &'a DatabaseConnection),
}

#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
/// Samples of the primary's position kept at most (a replica further behind than the
/// oldest is reported at least that far behind).
const MAX_SAMPLES: usize = 4096;

#[cfg_attr(
    not(feature = "postgres"),
    allow(dead_code, reason = "only PostgreSQL connects replicas")
)]
impl Replicas {
    /// Opens a lazy pool per replica (a replica down at start-up does not stop the
    /// process), checks them once, and starts the checker.
    #[cfg(feature = "postgres")]
    pub(crate) async fn connect(
        config: &PostgresConfig,
        primary: &DatabaseConnection,
    ) -> zeroscale_core::Result<Option<Arc<Replicas>>> {
        if config.replicas.is_empty() {
            return Ok(None);
        }
        let mut replicas = Vec::new();
        for url in &config.replicas {
            let url = url.expose();
            // The primary's settings (pings, TLS), but none opened at start-up (a replica
            // down then does not stop the process) and a short wait: a replica that does
            // not answer is skipped, not waited for.
            let mut options = crate::postgres::pool_options(url, config);
            options
                .min_connections(0)
                .acquire_timeout(Duration::from_secs(config.acquire_timeout_secs.min(1)))
                .connect_lazy(true);
            let conn = Database::connect(options).await.map_err(|e| {
                zeroscale_core::Error::config(
                    "database.replicas",
                    format!("{}: {e}", redacted_url(url)),
                )
            })?;
            replicas.push(Replica {
                conn,
                location: redacted_url(url),
                state: Mutex::new(State::default()),
                reads: AtomicU64::new(0),
            });
        }
        let replicas = Arc::new(Replicas {
            replicas,
            max_lag: Duration::from_millis(config.max_replica_lag_ms),
            check_every: Duration::from_millis(config.replica_check_ms.max(1)),
            next: AtomicUsize::new(0),
            primary_reads: AtomicU64::new(0),
            samples: Mutex::new(VecDeque::new()),
            first_position: Mutex::new(None),
        });
        replicas.check(primary).await;
        tokio::spawn(checker(Arc::downgrade(&replicas), primary.clone()));
        Ok(Some(replicas))
    }

    /// Picks where the next stale-tolerant read goes: the usable replicas in turn, else
    /// the primary.
    pub(crate) fn pick(&self) -> Target<'_> {
        if !primary_only() {
            let n = self.replicas.len();
            let start = self.next.fetch_add(1, Ordering::Relaxed);
            for i in 0..n {
                let index = (start + i) % n;
                let replica = &self.replicas[index];
                if self.serving(&lock(&replica.state)) {
                    replica.reads.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!(m::DB_READS, "target" => "replica").increment(1);
                    return Target::Replica(index, &replica.conn);
                }
            }
        }
        self.primary_reads.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(m::DB_READS, "target" => "primary").increment(1);
        Target::Primary
    }

    fn serving(&self, state: &State) -> bool {
        state.up && state.lag.is_some_and(|lag| lag <= self.max_lag)
    }

    /// A read on replica `index` failed to reach it: no more reads until a check finds it.
    pub(crate) fn mark_down(&self, index: usize, why: String) {
        if let Some(replica) = self.replicas.get(index) {
            let mut state = lock(&replica.state);
            if state.up {
                tracing::warn!(replica = %replica.location, error = %why, "a read replica stopped answering; its reads go elsewhere");
            }
            state.up = false;
            state.error = Some(why);
        }
    }

    /// Each replica's state now.
    pub(crate) fn status(&self) -> Vec<ReplicaStatus> {
        self.replicas
            .iter()
            .map(|r| {
                let state = lock(&r.state);
                ReplicaStatus {
                    location: r.location.clone(),
                    up: state.up,
                    lag: state.lag,
                    serving: self.serving(&state),
                    reads: r.reads.load(Ordering::Relaxed),
                    error: state.error.clone(),
                }
            })
            .collect()
    }

    /// Stale-tolerant reads the primary served.
    pub(crate) fn primary_read_count(&self) -> u64 {
        self.primary_reads.load(Ordering::Relaxed)
    }

    /// One round of checks: the primary's position, then each replica's.
    async fn check(&self, primary: &DatabaseConnection) {
        let timeout = self.check_every.max(Duration::from_secs(1));
        let now = Instant::now();
        let position = tokio::time::timeout(
            timeout,
            scalar(
                primary,
                "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint",
            ),
        )
        .await;
        // Without the primary's position the lags stay as they were (the primary's own
        // trouble is the breaker's and readiness's to report).
        let Ok(Ok(Some(position))) = position else {
            return;
        };
        lock(&self.first_position).get_or_insert(position);
        {
            let mut samples = lock(&self.samples);
            if samples.back().is_none_or(|(_, last)| position > *last) {
                samples.push_back((now, position));
            }
            while samples.len() > MAX_SAMPLES {
                samples.pop_front();
            }
        }
        let checks = self.replicas.iter().map(|replica| async move {
            // Not in recovery (promoted, or a primary listed by mistake): nothing to lag.
            let sql = "SELECT CASE WHEN pg_is_in_recovery() \
                       THEN pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0')::bigint \
                       ELSE NULL END";
            let replayed = tokio::time::timeout(timeout, scalar(&replica.conn, sql)).await;
            let mut state = lock(&replica.state);
            match replayed {
                Ok(Ok(replayed)) => {
                    let lag = self.lag(replayed.unwrap_or(u64::MAX), now);
                    if !state.up {
                        tracing::info!(replica = %replica.location, lag_ms = lag.map(|l| l.as_millis() as u64), "read replica answers");
                    }
                    *state = State {
                        up: true,
                        lag,
                        error: lag.is_none().then(|| {
                            "catching up: it has not replayed what the primary had when this \
                             process started"
                                .to_owned()
                        }),
                    };
                }
                Ok(Err(e)) => {
                    state.up = false;
                    state.lag = None;
                    state.error = Some(e.to_string());
                }
                Err(_) => {
                    state.up = false;
                    state.lag = None;
                    state.error = Some(format!("no answer within {} ms", timeout.as_millis()));
                }
            }
            metrics::gauge!(m::DB_REPLICA_UP, "replica" => replica.location.clone())
                .set(if state.up { 1.0 } else { 0.0 });
            if let Some(lag) = state.lag {
                metrics::gauge!(m::DB_REPLICA_LAG, "replica" => replica.location.clone())
                    .set(lag.as_secs_f64());
            }
        });
        futures::future::join_all(checks).await;
        // Positions every replica has replayed are no longer needed, but the newest one.
        let oldest_needed = self
            .replicas
            .iter()
            .filter_map(|r| lock(&r.state).lag)
            .max()
            .unwrap_or_default();
        let mut samples = lock(&self.samples);
        while samples.len() > 1
            && samples
                .front()
                .is_some_and(|(t, _)| now.duration_since(*t) > oldest_needed + self.check_every)
        {
            samples.pop_front();
        }
    }

    /// How long ago the primary first had a position past `replayed`; `None` when the
    /// replica is behind the position of this process's first check (by an unknown time).
    fn lag(&self, replayed: u64, now: Instant) -> Option<Duration> {
        if lock(&self.first_position).is_some_and(|first| replayed < first) {
            return None;
        }
        Some(
            lock(&self.samples)
                .iter()
                .find(|(_, position)| *position > replayed)
                .map_or(Duration::ZERO, |(t, _)| now.duration_since(*t)),
        )
    }
}

/// Checks every `check_every` while the [`crate::Db`] lives.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
async fn checker(replicas: Weak<Replicas>, primary: DatabaseConnection) {
    loop {
        let Some(every) = replicas.upgrade().map(|r| r.check_every) else {
            return;
        };
        tokio::time::sleep(every).await;
        let Some(replicas) = replicas.upgrade() else {
            return;
        };
        replicas.check(&primary).await;
    }
}

#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
async fn scalar(conn: &DatabaseConnection, sql: &str) -> Result<Option<u64>, sea_orm::DbErr> {
    let row = conn
        .query_one_raw(Statement::from_string(conn.get_database_backend(), sql))
        .await?;
    let value: Option<i64> = match row {
        Some(row) => row.try_get_by_index(0)?,
        None => None,
    };
    Ok(value.and_then(|v| u64::try_from(v).ok()))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
