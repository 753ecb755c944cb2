//! Test databases: a fresh SQLite file, or a fresh database on the PostgreSQL server from
//! `cargo xtask services up`, migrated and ready.

#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;

use sea_orm::{ConnectionTrait, Statement};
use zeroscale_core::config::{
    AuthConfig, ChatConfig, DatabaseConfig, PostgresConfig, SqliteConfig, VectorSearch,
};
use zeroscale_core::testing::require_service;
use zeroscale_db::Db;
use zeroscale_db::domain::Domain;

/// Fast argon2 parameters: tests check behaviour, not hashing cost.
pub fn test_auth() -> AuthConfig {
    AuthConfig {
        argon2_memory_kib: 1024,
        argon2_iterations: 1,
        ..Default::default()
    }
}

/// A migrated test database and what to clean up after it.
pub struct TestDb {
    pub db: Db,
    pub name: String,
    /// The URL of a PostgreSQL test database.
    pub url: Option<String>,
    cleanup: Cleanup,
}

enum Cleanup {
    File(PathBuf),
    Postgres { admin_url: String, database: String },
    Mongodb,
}

impl TestDb {
    /// The domain services over this database.
    pub fn domain(&self, chat: ChatConfig) -> Domain {
        Domain::new(self.db.clone(), test_auth(), chat)
    }

    /// Closes the pool and removes the database.
    pub async fn cleanup(self) {
        let TestDb { db, cleanup, .. } = self;
        if !matches!(cleanup, Cleanup::Mongodb) {
            let _ = db.clone().close().await;
        }
        match cleanup {
            Cleanup::File(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            #[cfg(feature = "mongodb")]
            Cleanup::Mongodb => {
                let _ = zeroscale_db::testing::drop_mongodb_database(&db).await;
            }
            #[cfg(not(feature = "mongodb"))]
            Cleanup::Mongodb => {}
            Cleanup::Postgres {
                admin_url,
                database,
            } => {
                if let Ok(admin) = connect_postgres(&admin_url, 2).await {
                    let _ = zeroscale_db::testing::conn(&admin)
                        .execute_raw(Statement::from_string(
                            sea_orm::DatabaseBackend::Postgres,
                            format!("DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"),
                        ))
                        .await;
                }
            }
        }
    }
}

fn unique(label: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("zs_{label}_{}_{nanos}", std::process::id())
}

/// A migrated SQLite file in a fresh temp folder.
pub async fn sqlite(label: &str) -> TestDb {
    let name = unique(label);
    let dir = std::env::temp_dir().join(&name);
    let config = DatabaseConfig::Sqlite(SqliteConfig {
        path: Some(dir.join("test.db")),
        ..Default::default()
    });
    let db = Db::connect(&config).await.expect("open SQLite");
    db.migrate_up().await.expect("migrate SQLite");
    TestDb {
        db,
        name,
        url: None,
        cleanup: Cleanup::File(dir),
    }
}

async fn connect_postgres(url: &str, pool: u32) -> zeroscale_core::Result<Db> {
    connect_postgres_with(url, pool, VectorSearch::Auto).await
}

/// Connects to `url` with the given vector search mode.
pub async fn connect_postgres_with(
    url: &str,
    pool: u32,
    vector_search: VectorSearch,
) -> zeroscale_core::Result<Db> {
    Db::connect(&DatabaseConfig::Postgres(PostgresConfig {
        url: url.to_owned().into(),
        max_connections: pool,
        min_connections: 0,
        vector_search,
        ..Default::default()
    }))
    .await
}

/// A fresh, migrated database on Debian's PostgreSQL (no pgvector: exact search); `None`
/// (skip) when there is no server outside CI.
pub async fn postgres(label: &str) -> Option<TestDb> {
    postgres_on(
        "ZEROSCALE_TEST_POSTGRES_URL",
        "PostgreSQL",
        label,
        VectorSearch::Auto,
    )
    .await
}

/// A fresh, migrated database on the PostgreSQL with pgvector, searched through pgvector.
pub async fn pgvector(label: &str) -> Option<TestDb> {
    postgres_on(
        "ZEROSCALE_TEST_PGVECTOR_URL",
        "PostgreSQL with pgvector",
        label,
        VectorSearch::Pgvector,
    )
    .await
}

/// A fresh, migrated database on the server in `env`.
pub async fn postgres_on(
    env: &str,
    engine: &str,
    label: &str,
    vector_search: VectorSearch,
) -> Option<TestDb> {
    let admin_url = require_service(env, engine)?;
    let database = unique(label);
    let admin = connect_postgres(&admin_url, 2)
        .await
        .expect("connect to PostgreSQL");
    zeroscale_db::testing::conn(&admin)
        .execute_raw(Statement::from_string(
            sea_orm::DatabaseBackend::Postgres,
            format!("CREATE DATABASE \"{database}\""),
        ))
        .await
        .expect("create test database");
    let _ = admin.close().await;
    let (base, _) = admin_url.rsplit_once('/').expect("URL has a database");
    let db = connect_postgres_with(&format!("{base}/{database}"), 20, vector_search)
        .await
        .expect("connect to the test database");
    db.migrate_up().await.expect("migrate PostgreSQL");
    Some(TestDb {
        db,
        url: Some(format!("{base}/{database}")),
        name: database.clone(),
        cleanup: Cleanup::Postgres {
            admin_url,
            database,
        },
    })
}

/// A fresh, migrated database on the MongoDB test server (`nx-27017`), with
/// multi-document transactions `transactions`; `None` (skip) when there is no server
/// outside CI.
#[cfg(feature = "mongodb")]
pub async fn mongodb(
    label: &str,
    transactions: zeroscale_core::config::MongodbTransactions,
) -> Option<TestDb> {
    let base = require_service("ZEROSCALE_TEST_MONGODB_URL", "MongoDB")?;
    let name = unique(label);
    let (server, _) = base.rsplit_once('/').expect("URL has a database");
    let url = format!("{server}/{name}");
    let db = Db::connect(&DatabaseConfig::Mongodb(
        zeroscale_core::config::MongodbConfig {
            url: url.clone().into(),
            transactions,
            ..Default::default()
        },
    ))
    .await
    .expect("connect to MongoDB");
    db.migrate_up().await.expect("migrate MongoDB");
    Some(TestDb {
        db,
        name,
        url: Some(url),
        cleanup: Cleanup::Mongodb,
    })
}
