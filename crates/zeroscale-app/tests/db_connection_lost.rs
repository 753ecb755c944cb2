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
