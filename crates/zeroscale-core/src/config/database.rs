//! `[database]`: SQLite, PostgreSQL or MongoDB.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// The database engine (`database.kind`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DatabaseConfig {
    /// An SQLite file (the embedded default).
    Sqlite(SqliteConfig),
    /// A PostgreSQL server.
    Postgres(PostgresConfig),
    /// A MongoDB server (replica set, sharded cluster or standalone).
    Mongodb(MongodbConfig),
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig::Sqlite(SqliteConfig::default())
    }
}

impl DatabaseConfig {
    /// The kind's name, as written in config.
    pub fn kind(&self) -> &'static str {
        match self {
            DatabaseConfig::Sqlite(_) => "sqlite",
            DatabaseConfig::Postgres(_) => "postgres",
            DatabaseConfig::Mongodb(_) => "mongodb",
        }
    }

    /// Whether pending schema steps run at start-up.
    pub fn auto_migrate(&self) -> bool {
        match self {
            DatabaseConfig::Sqlite(s) => s.auto_migrate,
            DatabaseConfig::Postgres(p) => p.auto_migrate,
            DatabaseConfig::Mongodb(m) => m.auto_migrate,
        }
    }
}

/// SQLite settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct SqliteConfig {
    /// The database file. Default `<data dir>/zeroscale.db`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Use a private in-memory database instead of a file (tests only: lost on exit).
    pub in_memory: bool,
    /// How long a writer waits for the lock before failing, in milliseconds. Default 5000.
    pub busy_timeout_ms: u64,
    /// Run pending migrations at start-up. Default on.
    pub auto_migrate: bool,
}

impl Default for SqliteConfig {
    fn default() -> Self {
        SqliteConfig {
            path: None,
            in_memory: false,
            busy_timeout_ms: 5_000,
            auto_migrate: true,
        }
    }
}

/// How to use TLS to PostgreSQL.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum PostgresTls {
    /// Whatever the URL's `sslmode` says (default `prefer`).
    #[default]
    FromUrl,
    /// Never.
    Disable,
    /// TLS required, certificate verified against the system roots.
    Require,
}

/// PostgreSQL settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct PostgresConfig {
    /// `postgres://user:password@host:port/db`; `DATABASE_URL` sets it too.
    pub url: Secret<String>,
    /// Connections in the pool. Default 20.
    pub max_connections: u32,
    /// Connections kept open when idle. Default 1.
    pub min_connections: u32,
    /// Seconds to wait for a new connection. Default 10.
    pub connect_timeout_secs: u64,
    /// Seconds to wait for a pooled connection. Default 10.
    pub acquire_timeout_secs: u64,
    /// Connection failures in a row (each within the acquire timeout plus 5 s of the one
    /// before) after which calls fail at once with 503 instead of each waiting out the
    /// acquire timeout, until a probe reaches the server again. Default 3; 0 turns the
    /// breaker off.
    pub breaker_failures: u32,
    /// Milliseconds between two probes (`SELECT 1`) while the breaker is open. Default 500.
    pub breaker_probe_ms: u64,
    /// TLS mode.
    pub tls: PostgresTls,
    /// Run pending migrations at start-up. Default off: run `zeroscale migrate up`.
    pub auto_migrate: bool,
    /// How documents are searched by vector.
    pub vector_search: VectorSearch,
    /// pgvector's index and its recall check (when `vector_search` picks pgvector).
    pub pgvector: PgvectorConfig,
    /// Streaming replicas of this server (`["postgres://…@replica-1:5432/app"]`, same
    /// database): reads that may be a little stale (searches, listings, histories) go to
    /// a healthy one, everything else to `url`. Default empty (every read on `url`). See
    /// docs/database.md#read-replicas.
    pub replicas: Vec<Secret<String>>,
    /// A replica further behind the primary than this (milliseconds of writes it has not
    /// replayed) gets no reads until it catches up. Default 2000.
    pub max_replica_lag_ms: u64,
    /// Milliseconds between two health and lag checks of each replica. Default 500.
    pub replica_check_ms: u64,
    /// After a user writes, that user's reads go to the primary for this many
    /// milliseconds, on every instance (the mark is kept in the shared counters), so they
    /// read their own writes. At least `max_replica_lag_ms + replica_check_ms`.
    /// Default 5000.
    pub read_your_writes_ms: u64,
}

/// How PostgreSQL searches documents by vector.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum VectorSearch {
    /// pgvector when this build has the `pgvector` feature and the server has the `vector`
    /// extension; exact search otherwise.
    #[default]
    Auto,
    /// Always exact search in zeroscale (the same as SQLite).
    Exact,
    /// Always pgvector; start-up fails if it is not available.
    Pgvector,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        PostgresConfig {
            url: Secret::default(),
            max_connections: 20,
            min_connections: 1,
            connect_timeout_secs: 10,
            acquire_timeout_secs: 10,
            breaker_failures: 3,
            breaker_probe_ms: 500,
            tls: PostgresTls::FromUrl,
            auto_migrate: false,
            vector_search: VectorSearch::Auto,
            pgvector: PgvectorConfig::default(),
            replicas: Vec::new(),
            max_replica_lag_ms: 2000,
            replica_check_ms: 500,
            read_your_writes_ms: 5000,
        }
    }
}

/// pgvector's HNSW index (`database.pgvector`): how it is built and searched, and the
/// check that its answers are close enough to the exact ones. See
/// docs/database.md#vector-search-and-pgvector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct PgvectorConfig {
    /// Links per vector in the HNSW graph (pgvector's `m`, 2 to 100). More links find
    /// more of the true neighbours, at the price of a slower build and bigger index.
    /// Default 16 (pgvector's). A change builds a new index (the old one is dropped).
    pub m: u32,
    /// Candidates kept while building the graph (pgvector's `ef_construction`, 4 to
    /// 1000, at least `2 × m`). Default 64 (pgvector's). A change builds a new index.
    pub ef_construction: u32,
    /// Candidates a search takes from the index (`hnsw.ef_search`, 1 to 1000; pgvector's
    /// own default is 40). Default 1000: the most it gives.
    pub ef_search: u32,
    /// Megabytes of memory for building the index (`maintenance_work_mem` for that
    /// statement). A graph that does not fit is built far more slowly. Default 0: the
    /// server's setting.
    pub build_memory_mb: u32,
    /// The recall check: the share of the exact top 10 the index must find on a sample
    /// of the stored vectors. Below it, searches are exact instead (see `fallback`; with
    /// a warning in the log) until a later check passes. Default 0.95; 0 turns the check
    /// off (the index always answers).
    pub min_recall: f64,
    /// How searches without a metadata filter run while the index fails its recall check:
    /// `memory` (default) from zeroscale's in-memory exact index, as with `vector_search
    /// = "exact"` (each server holds 4 bytes per dimension per document of the collections
    /// it searches); `scan`, an exact scan inside PostgreSQL (no memory; time grows with
    /// the table). Filtered searches always scan.
    pub fallback: RecallFallback,
    /// Stored vectors searched both ways in each recall check. Default 20.
    pub recall_sample: u32,
    /// Seconds between two recall checks of a vector size, while this server searches
    /// it (the first search of each size starts one). Default 3600; 0: only that first
    /// check.
    pub recall_check_secs: u64,
}

impl Default for PgvectorConfig {
    fn default() -> Self {
        PgvectorConfig {
            m: 16,
            ef_construction: 64,
            ef_search: 1000,
            build_memory_mb: 0,
            min_recall: 0.95,
            fallback: RecallFallback::Memory,
            recall_sample: 20,
            recall_check_secs: 3600,
        }
    }
}

/// How searches run while pgvector's index fails its recall check
/// (`database.pgvector.fallback`).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum RecallFallback {
    /// zeroscale's in-memory exact index (the vectors of each searched collection in
    /// memory, kept in sync with the table).
    #[default]
    Memory,
    /// An exact scan of the vectors inside PostgreSQL.
    Scan,
}

impl PgvectorConfig {
    /// Checks the ranges pgvector accepts, so a wrong value fails at start-up and not at
    /// the first search.
    pub fn validate(&self) -> crate::Result<()> {
        let range = |key: &str, value: u32, low: u32, high: u32| {
            if (low..=high).contains(&value) {
                Ok(())
            } else {
                Err(crate::Error::config(
                    format!("database.pgvector.{key}"),
                    format!("is {value} but pgvector takes {low} to {high}"),
                ))
            }
        };
        range("m", self.m, 2, 100)?;
        range("ef_construction", self.ef_construction, 4, 1000)?;
        range("ef_search", self.ef_search, 1, 1000)?;
        if self.ef_construction < 2 * self.m {
            return Err(crate::Error::config(
                "database.pgvector.ef_construction",
                format!(
                    "is {} but pgvector wants at least twice m ({})",
                    self.ef_construction,
                    2 * self.m
                ),
            ));
        }
        if !(0.0..=1.0).contains(&self.min_recall) {
            return Err(crate::Error::config(
                "database.pgvector.min_recall",
                format!("is {} but must be between 0 and 1", self.min_recall),
            ));
        }
        if self.min_recall > 0.0 && self.recall_sample == 0 {
            return Err(crate::Error::config(
                "database.pgvector.recall_sample",
                "must be at least 1 while min_recall is above 0",
            ));
        }
        Ok(())
    }
}

impl PostgresConfig {
    /// Checks what serde cannot: a read-your-writes window that covers the lag a replica
    /// may have and still get reads; pgvector's ranges.
    pub fn validate(&self) -> crate::Result<()> {
        self.pgvector.validate()?;
        if self.replicas.is_empty() {
            return Ok(());
        }
        if self.replica_check_ms == 0 {
            return Err(crate::Error::config(
                "database.replica_check_ms",
                "must be at least 1 (milliseconds between replica checks)",
            ));
        }
        let needed = self
            .max_replica_lag_ms
            .saturating_add(self.replica_check_ms);
        if self.read_your_writes_ms < needed {
            return Err(crate::Error::config(
                "database.read_your_writes_ms",
                format!(
                    "is {} but must be at least max_replica_lag_ms + replica_check_ms ({needed}): \
                     a replica that far behind still gets reads, so a shorter window would let \
                     a user miss their own write",
                    self.read_your_writes_ms
                ),
            ));
        }
        Ok(())
    }
}

/// Whether MongoDB writes that span documents run in a multi-document transaction.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum MongodbTransactions {
    /// When the server supports them (a replica set or a sharded cluster); the
    /// compensating path on a standalone server.
    #[default]
    Auto,
    /// Always, whatever the server says about itself (start-up fails if it refuses one).
    On,
    /// Never: always the compensating path (each write atomic on its own document, a
    /// failed second write undone, the sweeper settling what a crash left).
    Off,
}

/// MongoDB settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct MongodbConfig {
    /// `mongodb://user:password@host:port/database?options` or `mongodb+srv://…`;
    /// `DATABASE_URL` sets it too. The path names the database (default `zeroscale`);
    /// TLS, auth source and replica set go in the URL's options, as the driver documents.
    pub url: Secret<String>,
    /// Connections per server in the driver's pool. Default 20.
    pub max_connections: u32,
    /// Seconds to find a server to talk to (connect, or a new primary after a failover).
    /// Default 10.
    pub connect_timeout_secs: u64,
    /// Multi-document transactions: `auto`, `on` or `off`. Default `auto`.
    pub transactions: MongodbTransactions,
    /// Run pending schema steps (collections and indexes) at start-up. Default off: run
    /// `zeroscale migrate up`.
    pub auto_migrate: bool,
}

impl Default for MongodbConfig {
    fn default() -> Self {
        MongodbConfig {
            url: Secret::default(),
            max_connections: 20,
            connect_timeout_secs: 10,
            transactions: MongodbTransactions::Auto,
            auto_migrate: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::PgvectorConfig;

    #[test]
    fn pgvector_options_are_checked_against_pgvector_ranges() {
        assert!(PgvectorConfig::default().validate().is_ok());
        let bad = [
            PgvectorConfig {
                m: 1,
                ..Default::default()
            },
            PgvectorConfig {
                m: 48,
                ef_construction: 64,
                ..Default::default()
            },
            PgvectorConfig {
                ef_search: 0,
                ..Default::default()
            },
            PgvectorConfig {
                ef_search: 1001,
                ..Default::default()
            },
            PgvectorConfig {
                min_recall: 1.5,
                ..Default::default()
            },
            PgvectorConfig {
                recall_sample: 0,
                ..Default::default()
            },
        ];
        for options in bad {
            let err = options.validate().unwrap_err();
            assert!(
                err.to_string().contains("database.pgvector."),
                "{err} names no key"
            );
        }
        let heavy = PgvectorConfig {
            m: 48,
            ef_construction: 256,
            min_recall: 0.0,
            recall_sample: 0,
            ..Default::default()
        };
        assert!(heavy.validate().is_ok());
    }
}
