//! Smoke tests of the real engines: connect, write, read. PostgreSQL comes from
//! `cargo xtask services up`; without it the test skips locally and fails in CI.

use sea_orm::{ConnectionTrait, Statement};
use zeroscale_core::config::{DatabaseConfig, PostgresConfig, SqliteConfig};
use zeroscale_core::testing::require_service;
use zeroscale_db::{Db, Dialect};

async fn write_and_read(db: &Db, table: &str) {
    let backend = zeroscale_db::testing::conn(db).get_database_backend();
    let run = |sql: String| {
        let conn = zeroscale_db::testing::conn(db).clone();
        async move {
            conn.execute_raw(Statement::from_string(backend, sql))
                .await
                .unwrap_or_else(|e| panic!("{e}"))
        }
    };
    run(format!("DROP TABLE IF EXISTS {table}")).await;
    run(format!(
        "CREATE TABLE {table} (id INTEGER PRIMARY KEY, note TEXT NOT NULL)"
    ))
    .await;
    run(format!(
        "INSERT INTO {table} (id, note) VALUES (1, 'hello')"
    ))
    .await;
    let row = zeroscale_db::testing::conn(db)
        .query_one_raw(Statement::from_string(
            backend,
            format!("SELECT note FROM {table} WHERE id = 1"),
        ))
        .await
        .expect("select")
        .expect("one row");
    let note: String = row.try_get("", "note").expect("note column");
    assert_eq!(note, "hello");
    run(format!("DROP TABLE {table}")).await;
}

#[tokio::test]
async fn sqlite_file_connect_write_read() {
    let dir = std::env::temp_dir().join(format!("zeroscale-db-smoke-{}", std::process::id()));
    let path = dir.join("nested").join("smoke.db");
    let config = DatabaseConfig::Sqlite(SqliteConfig {
        path: Some(path.clone()),
        ..Default::default()
    });
    let db = Db::connect(&config).await.expect("connect");
    assert_eq!(db.dialect(), Dialect::Sqlite);
    db.ping().await.expect("ping");
    write_and_read(&db, "smoke").await;
    assert!(path.is_file(), "the database file was created");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "a new database folder is private");
    }
    db.close().await.expect("close");
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn sqlite_in_memory() {
    let config = DatabaseConfig::Sqlite(SqliteConfig {
        in_memory: true,
        ..Default::default()
    });
    let db = Db::connect(&config).await.expect("connect");
    write_and_read(&db, "smoke_mem").await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_connect_write_read() {
    let Some(url) = require_service("ZEROSCALE_TEST_POSTGRES_URL", "PostgreSQL") else {
        return;
    };
    let config = DatabaseConfig::Postgres(PostgresConfig {
        url: url.into(),
        max_connections: 2,
        ..Default::default()
    });
    let db = Db::connect(&config).await.expect("connect");
    assert_eq!(db.dialect(), Dialect::Postgres);
    assert!(!db.location().contains('@'), "location hides credentials");
    db.ping().await.expect("ping");
    write_and_read(&db, "zeroscale_smoke").await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_unreachable_is_unavailable_and_says_where() {
    // A port nothing listens on: bind one, then drop it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = DatabaseConfig::Postgres(PostgresConfig {
        url: format!("postgres://u:secret@127.0.0.1:{port}/db").into(),
        connect_timeout_secs: 2,
        acquire_timeout_secs: 2,
        ..Default::default()
    });
    let err = Db::connect(&config)
        .await
        .expect_err("nothing listens there");
    let text = err.chain();
    assert!(
        matches!(err, zeroscale_core::Error::Unavailable { .. }),
        "{text}"
    );
    assert!(text.contains(&format!("127.0.0.1:{port}/db")), "{text}");
    assert!(!text.contains("secret"), "{text}");
}

#[cfg(not(feature = "postgres"))]
#[tokio::test]
async fn postgres_not_compiled_in_names_the_feature() {
    let config = DatabaseConfig::Postgres(PostgresConfig::default());
    let err = Db::connect(&config)
        .await
        .expect_err("postgres is compiled out");
    assert!(err.to_string().contains("zeroscale-db/postgres"), "{err}");
    let _ = require_service;
}
