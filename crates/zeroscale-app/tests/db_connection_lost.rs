//! A database connection lost under a request (the server crashed, failed over, restarted
//! or ended the session) is `unavailable` (503, retry), not `internal` (500); the next
//! request gets a fresh connection. Run against PostgreSQL and pgvector PostgreSQL: the
//! request is held on a table lock, and its backend is ended with `pg_terminate_backend`.

mod common;

use std::time::{Duration, Instant};

use common::{Server, TempDir, fresh_database};
use zeroscale_db::testing::sea_orm::{
    ConnectionTrait, DatabaseBackend, Statement, TransactionTrait,
};

async fn connect(url: &str) -> zeroscale_db::Db {
    zeroscale_db::Db::connect(&zeroscale_core::config::DatabaseConfig::Postgres(
        zeroscale_core::config::PostgresConfig {
            url: url.to_owned().into(),
            max_connections: 1,
            min_connections: 0,
            ..Default::default()
        },
    ))
    .await
    .expect("connect to the test database")
}

async fn lost_connection_answers_503(var: &str, engine: &str, label: &str) {
    let Some(url) = fresh_database(var, engine, label).await else {
        return;
    };
    let tmp = TempDir::new(label);
    let mut cmd = common::zeroscale(&tmp.0);
    cmd.env("DATABASE_URL", &url)
        .env("ZEROSCALE_DATABASE__AUTO_MIGRATE", "true")
        .env("RUST_LOG", "info");
    let server = Server::start(cmd).await;
    let token = common::register(&server, "lost").await;

    // Hold every request that authenticates on a lock on `sessions`.
    let locker = connect(&url).await;
    let txn = zeroscale_db::testing::conn(&locker).begin().await.unwrap();
    txn.execute_unprepared("LOCK TABLE sessions IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let request = {
        let http = server.http.clone();
        let url = format!("{}/v1/me", server.base);
        let token = token.clone();
        tokio::spawn(async move { http.get(url).bearer_auth(token).send().await })
    };

    // End the backend that waits on the lock: the request's connection.
    let admin = connect(&url).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let rows = zeroscale_db::testing::conn(&admin)
            .query_all_raw(Statement::from_string(
                DatabaseBackend::Postgres,
                "SELECT pg_terminate_backend(pid) AS ended FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock' \
                 AND pid <> pg_backend_pid()",
            ))
            .await
            .unwrap();
        if !rows.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the request never waited on the lock"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let response = request.await.unwrap().expect("an answer");
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    txn.rollback().await.unwrap();

    // The pool replaces the dead connection: the same call works again.
    let (status, body) = server
        .call(reqwest::Method::GET, "/v1/me", Some(&token), None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["username"], "lost", "{body}");
    server.terminate();
}

#[tokio::test]
async fn postgres_lost_connection_is_unavailable() {
    lost_connection_answers_503("ZEROSCALE_TEST_POSTGRES_URL", "PostgreSQL", "lost_pg").await;
}

#[tokio::test]
async fn pgvector_postgres_lost_connection_is_unavailable() {
    lost_connection_answers_503(
        "ZEROSCALE_TEST_PGVECTOR_URL",
        "PostgreSQL with pgvector",
        "lost_pgvector",
    )
    .await;
}

/// A private MongoDB test server (nx-27017) on `port`, its data in `dir`.
#[cfg(feature = "mongodb")]
fn start_mongodb(bin: &str, dir: &std::path::Path, port: u16) -> std::process::Child {
    let log = std::fs::File::create(dir.join("server.out")).unwrap();
    let child = std::process::Command::new(bin)
        .args(["--host", "127.0.0.1", "-p", &port.to_string(), "--data-dir"])
        .arg(dir.join("data"))
        .arg("--pid-file")
        .arg(dir.join("server.pid"))
        .arg("--log-file")
        .arg(dir.join("server.log"))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start nx-27017");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nx-27017 did not start on {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    child
}

/// MongoDB going away under a running server: requests that need it answer 503
/// `unavailable` (within the server-selection timeout), readiness fails on the database,
/// and once MongoDB is back the same server serves again, with no restart.
#[cfg(feature = "mongodb")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongodb_going_away_is_unavailable_then_recovers() {
    let Some(bin) = zeroscale_core::testing::require_service(
        "ZEROSCALE_TEST_MONGODB_BIN",
        "MongoDB (nx-27017)",
    ) else {
        return;
    };
    let tmp = TempDir::new("mongo_away");
    let dir = tmp.0.join("mongo");
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let port = common::free_port();
    let mut mongo = start_mongodb(&bin, &dir, port);

    let mut cmd = common::zeroscale(&tmp.0);
    cmd.env(
        "DATABASE_URL",
        format!("mongodb://127.0.0.1:{port}/zs_away"),
    )
    .env("ZEROSCALE_DATABASE__AUTO_MIGRATE", "true")
    .env("ZEROSCALE_DATABASE__CONNECT_TIMEOUT_SECS", "2")
    // Every request reads the database (no credential cache to answer from).
    .env("ZEROSCALE_AUTH__CACHE_TTL_MS", "0")
    .env("RUST_LOG", "info");
    let server = Server::start(cmd).await;
    let token = common::register(&server, "away").await;
    let me = || server.call(reqwest::Method::GET, "/v1/me", Some(&token), None);
    assert_eq!(me().await.0, 200);
    let (_, body) = server.readyz_detail().await;
    assert_eq!(body["checks"]["database"]["backend"], "mongodb", "{body}");

    mongo.kill().unwrap();
    mongo.wait().unwrap();
    let started = Instant::now();
    let (status, body) = me().await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the 503 took {:?}",
        started.elapsed()
    );
    // Readiness without credentials (checking an admin's would need the database).
    let (status, body) = server.get("/readyz").await;
    assert_eq!(status, 503, "{body}");

    // Back on the same port with the same data: the same server serves again.
    let mut mongo = start_mongodb(&bin, &dir, port);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = me().await;
        if status == 200 {
            assert_eq!(body["user"]["username"], "away", "{body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never recovered: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, body) = server.readyz_detail().await;
    assert_eq!(body["checks"]["database"]["ok"], true, "{body}");
    server.terminate();
    let _ = mongo.kill();
    let _ = mongo.wait();
}
