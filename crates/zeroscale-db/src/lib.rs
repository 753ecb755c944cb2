//! zeroscale-db: the database layer, sea-orm over SQLite (the embedded default) and
//! PostgreSQL, behind one [`Db`] handle whatever the engine.
//!
//! [`Db::connect`] takes the `[database]` config; each engine lives in its own module
//! behind a feature. A config that names an engine this build lacks fails with the
//! feature to enable.
//!
//! # Feature flags
//!
//! | feature | what it enables | default |
//! |---|---|---|
//! | `sqlite` | the SQLite engine (`database.kind = "sqlite"`) | yes |
//! | `postgres` | the PostgreSQL engine (`database.kind = "postgres"`) | no |
//! | `mongodb` | the MongoDB engine (`database.kind = "mongodb"`), on the official driver | no |
//! | `pgvector` | vector search through pgvector on PostgreSQL servers that have it (implies `postgres`) | no |

pub mod backup;
mod breaker;
pub mod counters;
pub mod documents;
pub mod domain;
mod error;
pub mod metrics;
pub mod migrate;
#[cfg(feature = "mongodb")]
mod mongodb;
#[cfg(feature = "pgvector")]
mod pgvector;
#[cfg(feature = "postgres")]
mod postgres;
pub mod queue;
pub mod registry;
pub mod replicas;
pub mod schema;
#[cfg(feature = "sqlite")]
mod sqlite;
pub mod upload_log;

use std::fmt;

use sea_orm::{
    ConnectionTrait, DatabaseBackend, DatabaseConnection, DatabaseTransaction,
    SqliteTransactionMode, Statement, TransactionOptions, TransactionTrait,
};
use zeroscale_core::config::DatabaseConfig;
use zeroscale_core::{Error, Result};

pub(crate) use error::map_db_err;

/// Which SQL dialect a [`Db`] speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

impl Dialect {
    /// The engine's name, as in config.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
        }
    }
}

/// How documents are searched by vector on this database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VectorBackend {
    /// Rows streamed and scored in zeroscale (every engine).
    Exact,
    /// pgvector's `<=>` with HNSW indexes (PostgreSQL with the `vector` extension).
    Pgvector,
}

/// A connection pool to the configured database, whatever the engine.
#[derive(Clone)]
pub struct Db {
    conn: DatabaseConnection,
    dialect: Dialect,
    /// Where the database is, without credentials: a file path or `host:port/db`.
    location: String,
    vectors: VectorBackend,
    /// pgvector's options, its one-time setup (extension, side table, backfill) and the
    /// recall checks of its indexes, shared by clones.
    #[cfg_attr(not(feature = "pgvector"), allow(dead_code))]
    pgvector: std::sync::Arc<PgvectorState>,
    /// Fails calls at once while the server is known to be down; shared by clones.
    breaker: std::sync::Arc<breaker::Breaker>,
    /// The MongoDB engine, when the database is MongoDB (then `conn` is disconnected).
    #[cfg(feature = "mongodb")]
    mongo: Option<std::sync::Arc<mongodb::Mongo>>,
    /// Read replicas (`database.replicas`, PostgreSQL), shared by clones.
    replicas: Option<std::sync::Arc<replicas::Replicas>>,
}

/// What the one-time pgvector setup found out about the server's extension.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(feature = "pgvector"), allow(dead_code))]
pub(crate) struct VectorSetup {
    /// pgvector ≥ 0.8: `hnsw.iterative_scan` keeps scanning until enough rows pass the
    /// filters. Older versions return at most `hnsw.ef_search` candidates before filtering.
    pub(crate) iterative_scan: bool,
}

/// pgvector's options and what a pool learned about its server and indexes.
#[derive(Default)]
#[cfg_attr(not(feature = "pgvector"), allow(dead_code))]
pub(crate) struct PgvectorState {
    /// `database.pgvector`.
    pub(crate) options: zeroscale_core::config::PgvectorConfig,
    /// The one-time setup.
    pub(crate) setup: tokio::sync::OnceCell<VectorSetup>,
    /// The recall checks, by vector size.
    pub(crate) checks: std::sync::Mutex<std::collections::HashMap<usize, RecallState>>,
}

/// Where the recall check of one vector size stands on this pool.
#[derive(Debug, Clone, Default)]
#[cfg_attr(not(feature = "pgvector"), allow(dead_code))]
pub(crate) struct RecallState {
    /// The latest finished check.
    pub(crate) last: Option<VectorIndexCheck>,
    /// When the latest check started (`None`: never).
    pub(crate) started: Option<std::time::Instant>,
    /// A check is running now.
    pub(crate) running: bool,
}

/// What a recall check of pgvector's index found: how many of the exact top 10 the index
/// gives for a sample of the stored vectors, and so whether searches use it.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorIndexCheck {
    /// The vector size (the index covers every collection's vectors of this size).
    pub dimensions: usize,
    /// Vectors of this size stored when the check ran.
    pub vectors: u64,
    /// Stored vectors used as queries (each searched both ways, itself left out).
    pub sample: usize,
    /// The share of the exact top 10 the index found, over the whole sample (1.0 when
    /// there was nothing to find).
    pub recall: f64,
    /// `database.pgvector.min_recall` when the check ran.
    pub min_recall: f64,
    /// Whether searches of this size use the index (`recall >= min_recall`) or scan the
    /// vectors exactly.
    pub index_answers: bool,
    /// How long the check took.
    pub took: std::time::Duration,
}

impl fmt::Debug for Db {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Db")
            .field("dialect", &self.dialect)
            .field("location", &self.location)
            .field("vectors", &self.vectors)
            .finish_non_exhaustive()
    }
}

impl Db {
    /// Connects to the database `config` describes.
    pub async fn connect(config: &DatabaseConfig) -> Result<Db> {
        (registry::ENGINES.entry(config.kind())?.connect)(config).await
    }

    /// Whether this build can connect to `kind` (`sqlite`, `postgres`, `mongodb`).
    pub fn is_compiled_in(kind: &str) -> bool {
        registry::ENGINES.is_compiled_in(kind)
    }

    /// The SQL dialect; `None` on MongoDB.
    pub fn dialect(&self) -> Option<Dialect> {
        if self.is_mongodb() {
            None
        } else {
            Some(self.dialect)
        }
    }

    /// The engine's name, as in config: `sqlite`, `postgres` or `mongodb`.
    pub fn engine(&self) -> &'static str {
        if self.is_mongodb() {
            "mongodb"
        } else {
            self.dialect.name()
        }
    }

    /// What the server said about itself at connect time, for readiness and `doctor`:
    /// on MongoDB its version and whether multi-document transactions are used; `None`
    /// on the SQL engines.
    pub fn server_details(&self) -> Option<String> {
        #[cfg(feature = "mongodb")]
        if let Some(m) = self.mongo() {
            return Some(format!(
                "MongoDB {}, multi-document transactions {}",
                m.server_version(),
                if m.transactions() {
                    "on"
                } else {
                    "off (compensating writes)"
                }
            ));
        }
        None
    }

    /// Whether this database is MongoDB (no SQL: the domain services take their MongoDB
    /// path; the SQL-only parts refuse with an error that says so).
    pub fn is_mongodb(&self) -> bool {
        #[cfg(feature = "mongodb")]
        return self.mongo.is_some();
        #[cfg(not(feature = "mongodb"))]
        return false;
    }

    /// The MongoDB engine, when this database is MongoDB.
    #[cfg(feature = "mongodb")]
    pub(crate) fn mongo(&self) -> Option<&mongodb::Mongo> {
        self.mongo.as_deref()
    }

    /// The time now, as precise as this engine stores it (microseconds; milliseconds on
    /// MongoDB), so what a call returns equals what it stored.
    pub(crate) fn now(&self) -> chrono::DateTime<chrono::Utc> {
        #[cfg(feature = "mongodb")]
        if self.is_mongodb() {
            return mongodb::now_ms();
        }
        zeroscale_core::domain::now()
    }

    /// The SQL dialect for the SQL code paths. On MongoDB those paths never run a
    /// statement ([`Db::conn`] fails first), so the stored placeholder is never used.
    pub(crate) fn sql_dialect(&self) -> Dialect {
        self.dialect
    }

    /// How documents are searched by vector.
    pub fn vector_backend(&self) -> VectorBackend {
        self.vectors
    }

    /// Where the database is, without credentials.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// `database.pgvector` as this pool was opened with (defaults off PostgreSQL).
    #[cfg_attr(not(feature = "pgvector"), allow(dead_code))]
    pub(crate) fn pgvector_options(&self) -> &zeroscale_core::config::PgvectorConfig {
        &self.pgvector.options
    }

    /// The sea-orm connection, for the domain services and migrations (never public: no
    /// engine type crosses this crate's API; tests reach it through [`testing`]).
    ///
    /// Fails at once with [`Error::Unavailable`] while the circuit breaker is open (the
    /// server stopped answering and no probe has got through since), so a call does not
    /// wait out the pool's acquire timeout for a server known to be down.
    pub(crate) fn conn(&self) -> Result<&DatabaseConnection> {
        if self.is_mongodb() {
            return Err(Error::not_supported(
                "this operation (it needs SQLite or PostgreSQL)",
                format!("the MongoDB database at {}", self.location),
            ));
        }
        self.breaker.check()?;
        Ok(&self.conn)
    }

    /// Runs a read that may be a little stale (a search, a listing, a history) on a
    /// usable read replica when there is one (see [`replicas`]), else on the primary. A
    /// read that fails on a replica runs again on the primary; one that cannot reach the
    /// replica also takes it out of turn until its next check.
    pub(crate) async fn stale_read<T, F, Fut>(&self, read: F) -> Result<T>
    where
        F: Fn(DatabaseConnection) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, sea_orm::DbErr>>,
    {
        if let Some(replicas) = &self.replicas
            && let replicas::Target::Replica(index, conn) = replicas.pick()
        {
            match read(conn.clone()).await {
                Ok(value) => return Ok(value),
                Err(e) => {
                    if error::connection_failed(&e) {
                        replicas.mark_down(index, e.to_string());
                    }
                    tracing::debug!(error = %e, "a read failed on a replica; reading the primary");
                }
            }
        }
        read(self.conn()?.clone())
            .await
            .map_err(|e| self.map_err(e))
    }

    /// Each read replica's state at its last check (empty without `database.replicas`).
    pub fn replica_status(&self) -> Vec<replicas::ReplicaStatus> {
        self.replicas.as_ref().map_or_else(Vec::new, |r| r.status())
    }

    /// Stale-tolerant reads served by the primary since start because no replica was
    /// usable or the caller asked for the primary ([`replicas::primary_reads`]); 0
    /// without `database.replicas`.
    pub fn stale_reads_on_primary(&self) -> u64 {
        self.replicas.as_ref().map_or(0, |r| r.primary_read_count())
    }

    /// Whether calls fail at once because the server stopped answering (the circuit
    /// breaker is open: `database.breaker_failures` connection failures in a row) and no
    /// probe has reached it since. Always `false` when the breaker is off.
    pub fn is_known_down(&self) -> bool {
        self.breaker.is_open()
    }

    /// Runs `SELECT 1` to prove the database answers (at once `Unavailable` while it is
    /// known to be down; see [`Db::is_known_down`]).
    pub async fn ping(&self) -> Result<()> {
        #[cfg(feature = "mongodb")]
        if let Some(m) = self.mongo() {
            return m.ping().await;
        }
        self.breaker.check()?;
        let backend = self.conn.get_database_backend();
        self.conn
            .query_one_raw(Statement::from_string(backend, "SELECT 1"))
            .await
            .map_err(|e| self.unavailable(e))?;
        Ok(())
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(self) -> Result<()> {
        #[cfg(feature = "mongodb")]
        if let Some(m) = self.mongo {
            m.close().await;
            return Ok(());
        }
        let dialect = self.dialect;
        self.conn.close().await.map_err(|e| map_db_err(dialect, e))
    }

    /// The connection pool's size now; `None` on MongoDB (its driver keeps its own).
    pub fn pool_stats(&self) -> Option<metrics::PoolStats> {
        match &self.conn.inner {
            #[cfg(feature = "sqlite")]
            sea_orm::DatabaseConnectionType::SqlxSqlitePoolConnection(_) => {
                let pool = self.conn.get_sqlite_connection_pool();
                Some(metrics::PoolStats {
                    open: pool.size(),
                    idle: u32::try_from(pool.num_idle()).unwrap_or(u32::MAX),
                    max: pool.options().get_max_connections(),
                })
            }
            #[cfg(feature = "postgres")]
            sea_orm::DatabaseConnectionType::SqlxPostgresPoolConnection(_) => {
                let pool = self.conn.get_postgres_connection_pool();
                Some(metrics::PoolStats {
                    open: pool.size(),
                    idle: u32::try_from(pool.num_idle()).unwrap_or(u32::MAX),
                    max: pool.options().get_max_connections(),
                })
            }
            _ => None,
        }
    }

    /// Maps a sea-orm error from this database to core's error kinds, counting a
    /// connection failure towards the circuit breaker.
    pub(crate) fn map_err(&self, e: sea_orm::DbErr) -> Error {
        if error::connection_failed(&e) {
            self.breaker.record_failure(&self.conn);
        }
        map_db_err(self.dialect, e)
    }

    /// Starts a transaction that will write. On SQLite it is `BEGIN IMMEDIATE`: it takes
    /// the write lock up front (waiting up to the busy timeout), so two writers never
    /// deadlock upgrading read locks and a busy database means waiting, not failing.
    pub(crate) async fn begin_write(&self) -> Result<DatabaseTransaction> {
        let options = TransactionOptions {
            sqlite_transaction_mode: (self.dialect == Dialect::Sqlite)
                .then_some(SqliteTransactionMode::Immediate),
            ..Default::default()
        };
        self.conn()?
            .begin_with_options(options)
            .await
            .map_err(|e| self.map_err(e))
    }

    fn unavailable(&self, e: sea_orm::DbErr) -> Error {
        if let Some(pooler) = error::transaction_pooler(self.dialect, &e) {
            return pooler;
        }
        if error::connection_failed(&e) {
            self.breaker.record_failure(&self.conn);
        }
        Error::unavailable_from(
            format!(
                "{} database at {} does not answer",
                self.dialect.name(),
                self.location
            ),
            e,
        )
    }

    #[cfg_attr(
        not(any(feature = "sqlite", feature = "postgres")),
        allow(dead_code, reason = "only the engine modules build a Db")
    )]
    pub(crate) fn from_parts(conn: DatabaseConnection, location: String) -> Db {
        let dialect = match conn.get_database_backend() {
            DatabaseBackend::Postgres => Dialect::Postgres,
            _ => Dialect::Sqlite,
        };
        Db {
            conn,
            dialect,
            location,
            vectors: VectorBackend::Exact,
            pgvector: std::sync::Arc::default(),
            breaker: std::sync::Arc::new(breaker::Breaker::new(
                breaker::BreakerOptions::OFF,
                String::new(),
            )),
            #[cfg(feature = "mongodb")]
            mongo: None,
            replicas: None,
        }
    }

    /// A database handle over a MongoDB engine.
    #[cfg(feature = "mongodb")]
    pub(crate) fn from_mongo(mongo: mongodb::Mongo) -> Db {
        Db {
            conn: DatabaseConnection::default(),
            // Never read: every SQL path fails at `conn()` on MongoDB.
            dialect: Dialect::Sqlite,
            location: mongo.location().to_owned(),
            vectors: VectorBackend::Exact,
            pgvector: std::sync::Arc::default(),
            breaker: std::sync::Arc::new(breaker::Breaker::new(
                breaker::BreakerOptions::OFF,
                String::new(),
            )),
            mongo: Some(std::sync::Arc::new(mongo)),
            replicas: None,
        }
    }

    /// Turns the circuit breaker on with `options`.
    #[cfg_attr(
        not(feature = "postgres"),
        allow(dead_code, reason = "only PostgreSQL has a server to be down")
    )]
    pub(crate) fn with_breaker(mut self, options: breaker::BreakerOptions) -> Db {
        let what = format!("the {} database at {}", self.dialect.name(), self.location);
        self.breaker = std::sync::Arc::new(breaker::Breaker::new(options, what));
        self
    }
}

/// A write transaction on the application's database that several services can join:
/// begin it with [`Db::begin_job_txn`], write through the `…_in` methods (a generation
/// and its credits, a job with [`queue::DbQueue::enqueue_in`], a job's owner), then
/// [`commit`](WriteTxn::commit). Dropped without a commit, every write in it is rolled
/// back, the job included.
pub struct WriteTxn {
    pub(crate) txn: DatabaseTransaction,
    /// What to announce once committed (never before: a reader racing the commit would
    /// cache the old rows).
    after_commit: Vec<Box<dyn FnOnce() + Send + Sync>>,
}

impl fmt::Debug for WriteTxn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteTxn")
            .field("after_commit", &self.after_commit.len())
            .finish_non_exhaustive()
    }
}

impl WriteTxn {
    /// Commits every write in it, then announces what changed.
    pub async fn commit(self, db: &Db) -> Result<()> {
        self.txn.commit().await.map_err(|e| db.map_err(e))?;
        for announce in self.after_commit {
            announce();
        }
        Ok(())
    }

    /// Runs `f` once the transaction has committed (never if it rolls back).
    pub(crate) fn after_commit(&mut self, f: impl FnOnce() + Send + Sync + 'static) {
        self.after_commit.push(Box::new(f));
    }
}

impl Db {
    /// Starts a write transaction that services and the database queue can join (see
    /// [`WriteTxn`]). On SQLite it holds the write lock until it ends: keep it short.
    pub async fn begin_job_txn(&self) -> Result<WriteTxn> {
        Ok(WriteTxn {
            txn: self.begin_write().await?,
            after_commit: Vec::new(),
        })
    }
}

/// **Escape hatch**: the engine underneath a [`Db`], for an app's own tables. Nothing
/// else in this crate's API names sea-orm; what is here follows sea-orm's releases, not
/// zeroscale's, and code using it is tied to that engine layer.
///
/// Write your migrations with [`sea_orm_migration`]'s schema builder (one source for SQLite
/// and PostgreSQL; register them with [`migrate::set_app_migrations`]) and query your
/// tables through [`connection`](crate::escape_hatch::connection), building statements with sea-query so each engine gets
/// its own SQL:
///
/// ```no_run
/// use zeroscale_db::escape_hatch::{self, sea_orm};
/// use sea_orm::{ConnectionTrait, sea_query::{Expr, Query}};
///
/// # async fn example(db: &zeroscale_db::Db) -> zeroscale_core::Result<()> {
/// let conn = escape_hatch::connection(db);
/// let select = Query::select()
///     .expr(Expr::cust("COUNT(*)"))
///     .from(sea_orm::sea_query::Alias::new("my_table"))
///     .to_owned();
/// let row = conn
///     .query_one(&select)
///     .await
///     .map_err(|e| escape_hatch::map_err(db, e))?;
/// # let _ = row;
/// # Ok(())
/// # }
/// ```
pub mod escape_hatch {
    pub use sea_orm;
    pub use sea_orm_migration;

    /// The sea-orm connection pool of `db`.
    pub fn connection(db: &crate::Db) -> &sea_orm::DatabaseConnection {
        &db.conn
    }

    /// A sea-orm error from `db` as zeroscale's error (a lost connection is
    /// `unavailable`, a unique violation `already_exists`, …), counted by the circuit
    /// breaker as zeroscale's own statements are.
    pub fn map_err(db: &crate::Db, e: sea_orm::DbErr) -> zeroscale_core::Error {
        db.map_err(e)
    }
}

/// For this workspace's tests only: the engine underneath a [`Db`]. Not part of the API
/// (engine types never are); it may change in any release.
#[doc(hidden)]
pub mod testing {
    pub use sea_orm;

    /// The sea-orm connection of `db`.
    pub fn conn(db: &crate::Db) -> &sea_orm::DatabaseConnection {
        &db.conn
    }

    /// A fresh, migrated database named `name` on the PostgreSQL server at `admin_url`
    /// (a URL ending in `/<database>`), with a pool of `pool`; returns it and its URL.
    /// Drop it with [`drop_postgres_database`].
    #[cfg(feature = "postgres")]
    pub async fn fresh_postgres_database(
        admin_url: &str,
        name: &str,
        pool: u32,
    ) -> zeroscale_core::Result<(crate::Db, String)> {
        use sea_orm::ConnectionTrait;
        let admin = postgres(admin_url, 2).await?;
        admin
            .conn()?
            .execute_raw(sea_orm::Statement::from_string(
                sea_orm::DatabaseBackend::Postgres,
                format!("CREATE DATABASE \"{name}\""),
            ))
            .await
            .map_err(|e| admin.map_err(e))?;
        let _ = admin.close().await;
        let (base, _) = admin_url
            .rsplit_once('/')
            .ok_or_else(|| zeroscale_core::Error::invalid_input("the URL names no database"))?;
        let url = format!("{base}/{name}");
        let db = postgres(&url, pool).await?;
        db.migrate_up().await?;
        Ok((db, url))
    }

    /// An empty database `name` (dropped first if it exists) on the PostgreSQL server at
    /// `admin_url` (a URL ending in `/<database>`); returns its URL. Nothing is migrated:
    /// for tests of what creates the schema. Drop it with [`drop_postgres_database`].
    #[cfg(feature = "postgres")]
    pub async fn empty_postgres_database(
        admin_url: &str,
        name: &str,
    ) -> zeroscale_core::Result<String> {
        use sea_orm::ConnectionTrait;
        let admin = postgres(admin_url, 1).await?;
        for sql in [
            format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
            format!("CREATE DATABASE \"{name}\""),
        ] {
            admin
                .conn()?
                .execute_raw(sea_orm::Statement::from_string(
                    sea_orm::DatabaseBackend::Postgres,
                    sql,
                ))
                .await
                .map_err(|e| admin.map_err(e))?;
        }
        let _ = admin.close().await;
        let (base, _) = admin_url
            .rsplit_once('/')
            .ok_or_else(|| zeroscale_core::Error::invalid_input("the URL names no database"))?;
        Ok(format!("{base}/{name}"))
    }

    /// Pauses (`pause = true`) or resumes a streaming replica's replay, on a connection
    /// `replica` to it. A pause is only asked for by `pg_wal_replay_pause()` (WAL that
    /// arrives meanwhile may still be replayed): this waits, up to 10 s, until the replica
    /// reports it `paused`.
    #[cfg(feature = "postgres")]
    pub async fn replica_replay(replica: &crate::Db, pause: bool) -> zeroscale_core::Result<()> {
        use sea_orm::ConnectionTrait;
        let run = |sql: &str| {
            replica.conn.query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DatabaseBackend::Postgres,
                sql.to_owned(),
            ))
        };
        let what = if pause { "pause" } else { "resume" };
        run(&format!("SELECT pg_wal_replay_{what}()::text AS done"))
            .await
            .map_err(|e| replica.map_err(e))?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        if !pause {
            return Ok(());
        }
        loop {
            let state: String = run("SELECT pg_get_wal_replay_pause_state()::text AS state")
                .await
                .map_err(|e| replica.map_err(e))?
                .map(|row| row.try_get("", "state"))
                .transpose()
                .map_err(|e| replica.map_err(e))?
                .unwrap_or_default();
            if state == "paused" {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(zeroscale_core::Error::unavailable(format!(
                    "the replica's replay did not pause within 10 s (state: {state})"
                )));
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Drops the MongoDB database under `db` (every collection in it).
    #[cfg(feature = "mongodb")]
    pub async fn drop_mongodb_database(db: &crate::Db) -> zeroscale_core::Result<()> {
        let m = db
            .mongo()
            .ok_or_else(|| zeroscale_core::Error::invalid_input("not a MongoDB database"))?;
        m.database().drop().await.map_err(|e| m.map_err(e))
    }

    /// Makes MongoDB's credit writes (reserve, complete, fail) stop after their first
    /// write, as a crash between the two would, while `on`. Process-wide.
    #[cfg(feature = "mongodb")]
    pub fn crash_mongodb_credit_writes(on: bool) {
        crate::mongodb::credits::CRASH_AFTER_FIRST_WRITE
            .store(on, std::sync::atomic::Ordering::SeqCst);
    }

    /// Records schema step `name` as applied on MongoDB `db` (to test what an unknown
    /// step does).
    #[cfg(feature = "mongodb")]
    pub async fn record_mongodb_schema_step(
        db: &crate::Db,
        name: &str,
    ) -> zeroscale_core::Result<()> {
        let m = db
            .mongo()
            .ok_or_else(|| zeroscale_core::Error::invalid_input("not a MongoDB database"))?;
        m.database()
            .collection::<mongodb::bson::Document>(crate::mongodb::schema::SCHEMA_COLLECTION)
            .insert_one(mongodb::bson::doc! { "_id": name })
            .await
            .map_err(|e| m.map_err(e))?;
        Ok(())
    }

    /// Whether multi-document writes on `db` (MongoDB) run in transactions.
    #[cfg(feature = "mongodb")]
    pub fn mongodb_transactions(db: &crate::Db) -> bool {
        db.mongo().is_some_and(crate::mongodb::Mongo::transactions)
    }

    /// Drops the database `name` made by [`fresh_postgres_database`].
    #[cfg(feature = "postgres")]
    pub async fn drop_postgres_database(admin_url: &str, name: &str) -> zeroscale_core::Result<()> {
        use sea_orm::ConnectionTrait;
        let admin = postgres(admin_url, 2).await?;
        admin
            .conn()?
            .execute_raw(sea_orm::Statement::from_string(
                sea_orm::DatabaseBackend::Postgres,
                format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
            ))
            .await
            .map_err(|e| admin.map_err(e))?;
        admin.close().await
    }

    #[cfg(feature = "postgres")]
    async fn postgres(url: &str, pool: u32) -> zeroscale_core::Result<crate::Db> {
        crate::Db::connect(&zeroscale_core::config::DatabaseConfig::Postgres(
            zeroscale_core::config::PostgresConfig {
                url: url.to_owned().into(),
                max_connections: pool,
                min_connections: 0,
                ..Default::default()
            },
        ))
        .await
    }
}

/// The README's examples, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
