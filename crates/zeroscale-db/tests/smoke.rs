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
    assert_eq!(db.dialect(), Some(Dialect::Sqlite));
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
    assert_eq!(db.dialect(), Some(Dialect::Postgres));
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

/// A PostgreSQL that stops answering: the first calls wait out the acquire timeout, then
/// the breaker opens and calls fail at once; once the server answers again a probe
/// closes it and calls go through on the same `Db`, without a restart.
#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_breaker_fails_fast_while_down_and_recovers() {
    use std::time::{Duration, Instant};
    use zeroscale_core::testing::{FaultProxy, ProxyMode};
    use zeroscale_core::uploads::UploadLog;

    let Some(url) = require_service("ZEROSCALE_TEST_POSTGRES_URL", "PostgreSQL") else {
        return;
    };
    let upstream = postgres_addr(&url);
    let proxy = FaultProxy::start(upstream).await.expect("start the proxy");
    let (before, rest) = url.split_once('@').expect("URL has credentials");
    let (_, database) = rest.split_once('/').expect("URL names a database");
    let db = Db::connect(&DatabaseConfig::Postgres(PostgresConfig {
        url: format!("{before}@{}/{database}", proxy.addr()).into(),
        max_connections: 4,
        min_connections: 0,
        connect_timeout_secs: 1,
        acquire_timeout_secs: 1,
        breaker_failures: 2,
        breaker_probe_ms: 100,
        ..Default::default()
    }))
    .await
    .expect("connect through the proxy");
    db.ping().await.expect("answers through the proxy");
    assert!(!db.is_known_down());

    // Open connections die; new ones hang.
    proxy.set(ProxyMode::Refuse);
    tokio::time::sleep(Duration::from_millis(50)).await;
    proxy.set(ProxyMode::Stall);
    let mut failures = 0;
    let started = Instant::now();
    while !db.is_known_down() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the breaker never opened after {failures} failures"
        );
        let err = db.ping().await.expect_err("the server is cut off");
        assert!(err.is_retriable(), "{}", err.chain());
        failures += 1;
    }
    assert!(failures <= 2, "opened after {failures} failures, not 2");

    // Open: calls fail at once, whether a ping or a domain call.
    let log = zeroscale_db::upload_log::DbUploadLog::new(db.clone());
    for _ in 0..20 {
        let t = Instant::now();
        let err = db.ping().await.expect_err("still cut off");
        assert!(
            matches!(err, zeroscale_core::Error::Unavailable { .. }),
            "{}",
            err.chain()
        );
        assert!(err.to_string().contains("calls fail at once"), "{err}");
        let err = log
            .started_before("test", chrono::Utc::now(), 1)
            .await
            .expect_err("a domain call fails too");
        assert!(err.is_retriable(), "{err}");
        assert!(
            t.elapsed() < Duration::from_millis(200),
            "a call waited {:?} while the breaker was open",
            t.elapsed()
        );
    }

    // The server answers again: a probe closes the breaker within seconds.
    proxy.set(ProxyMode::Pass);
    let back = Instant::now();
    loop {
        match db.ping().await {
            Ok(()) => break,
            Err(e) => {
                assert!(
                    back.elapsed() < Duration::from_secs(5),
                    "still failing {:?} after the server came back: {}",
                    back.elapsed(),
                    e.chain()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    assert!(!db.is_known_down());
    db.close().await.expect("close");
}

/// `host:port` of a `postgres://user:password@host:port/db` URL, resolved.
#[cfg(feature = "postgres")]
fn postgres_addr(url: &str) -> std::net::SocketAddr {
    use std::net::ToSocketAddrs;
    let (_, rest) = url.split_once('@').expect("URL has credentials");
    let (host_port, _) = rest.split_once('/').expect("URL names a database");
    host_port
        .to_socket_addrs()
        .expect("resolve the host")
        .next()
        .expect("an address")
}
