//! Read-your-writes across instances with a read replica (`database.replicas`): two
//! servers on one PostgreSQL and its streaming replica (`cargo xtask services up
//! --stage4`), the replica's replay paused (below the lag limit, so it still serves). A
//! user who writes on one server reads the write at once on the other (the mark in the
//! shared counters sends their reads to the primary); another user's history read is
//! served by the replica. Each server's `/metrics` counts where the reads went.

mod common;

use std::time::{Duration, Instant};

use common::{Server, TempDir, fresh_postgres};
use serde_json::json;
use zeroscale_core::testing::require_service;

const ADMIN: &str = "admin";
const ADMIN_PASSWORD: &str = "admin-password-1";

fn on(url: &str, name: &str) -> String {
    let (base, _) = url.rsplit_once('/').expect("the URL names a database");
    format!("{base}/{name}")
}

async fn replay(replica: &zeroscale_db::Db, what: &str) {
    zeroscale_db::testing::replica_replay(replica, what == "pause")
        .await
        .unwrap_or_else(|e| panic!("pg_wal_replay_{what}(): {e}"));
}

async fn metrics(server: &Server, admin: &str) -> String {
    let response = server
        .http
        .get(format!("{}/metrics", server.base))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

/// The value of the sample line starting with `series`, 0 when absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

async fn register(server: &Server, name: &str) -> String {
    let (status, body) = server
        .call(
            reqwest::Method::POST,
            "/v1/auth/register",
            None,
            Some(json!({"username": name, "password": "correct horse battery"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    common::login(server, name, "correct horse battery").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_reads_their_write_on_another_instance_while_others_read_the_replica() {
    let Some(replica_base) =
        require_service("ZEROSCALE_TEST_POSTGRES_REPLICA_URL", "PostgreSQL replica")
    else {
        return;
    };
    let Some(pg) = fresh_postgres("ryw").await else {
        return;
    };
    let name = pg.rsplit('/').next().unwrap().to_owned();
    let control = zeroscale_db::Db::connect(&zeroscale_core::config::DatabaseConfig::Postgres(
        zeroscale_core::config::PostgresConfig {
            url: replica_base.clone().into(),
            max_connections: 1,
            min_connections: 0,
            ..Default::default()
        },
    ))
    .await
    .expect("connect to the replica");
    replay(&control, "resume").await;

    let tmp = TempDir::new("ryw");
    let env = [
        ("DATABASE_URL", pg.clone()),
        // One queue for both servers: the job list shows jobs the queue knows.
        ("ZEROSCALE_QUEUE__KIND", "database".to_owned()),
        (
            "ZEROSCALE_DATABASE__REPLICAS",
            format!(r#"["{}"]"#, on(&replica_base, &name)),
        ),
        ("ZEROSCALE_DATABASE__MAX_REPLICA_LAG_MS", "60000".to_owned()),
        ("ZEROSCALE_DATABASE__REPLICA_CHECK_MS", "100".to_owned()),
        (
            "ZEROSCALE_DATABASE__READ_YOUR_WRITES_MS",
            "61000".to_owned(),
        ),
        (
            "ZEROSCALE_AUTH__BOOTSTRAP_ADMIN",
            format!("{ADMIN}:{ADMIN_PASSWORD}"),
        ),
    ];
    let cmd = || {
        let mut cmd = common::zeroscale(&tmp.0);
        cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        cmd
    };
    let out = cmd().args(["migrate", "up"]).output().unwrap();
    assert!(
        out.status.success(),
        "migrate up: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a = Server::start(cmd()).await;
    let b = Server::start(cmd()).await;
    let admin = common::login(&a, ADMIN, ADMIN_PASSWORD).await;
    let alice = register(&a, "alice").await;
    let bob = register(&a, "bob").await;

    // Both servers see the replica serving: up, and its lag known (the database is new:
    // a replica still replaying what the primary had when a server started gets no
    // reads until it has, and its lag gauge appears only then).
    let deadline = Instant::now() + Duration::from_secs(30);
    for server in [&a, &b] {
        loop {
            let text = metrics(server, &admin).await;
            let up = text
                .lines()
                .any(|l| l.starts_with("zeroscale_db_replica_up{") && l.ends_with(" 1"));
            let lag = text
                .lines()
                .find(|l| l.starts_with("zeroscale_db_replica_lag_seconds{"))
                .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
            if up && lag.is_some_and(|lag| lag < 30.0) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the replica never served:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let primary = r#"zeroscale_db_stale_reads_total{target="primary"}"#;
    let replica = r#"zeroscale_db_stale_reads_total{target="replica"}"#;
    let before = metrics(&b, &admin).await;

    replay(&control, "pause").await;
    let (status, job) = a
        .call(
            reqwest::Method::POST,
            "/v1/jobs",
            Some(&alice),
            Some(json!({"task": "zeroscale.echo", "payload": {"n": 1}})),
        )
        .await;
    assert_eq!(status, 202, "{job}");
    // Alice, at once, on the other server: her write is there.
    let (status, list) = b
        .call(reqwest::Method::GET, "/v1/jobs", Some(&alice), None)
        .await;
    assert_eq!(status, 200, "{list}");
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap_or_else(|| panic!("{list}"))
        .iter()
        .filter_map(|j| j["id"].as_str())
        .collect();
    assert!(
        ids.contains(&job["id"].as_str().unwrap()),
        "{list}\n{}",
        metrics(&b, &admin).await
    );
    // Bob wrote nothing: his history read is the replica's.
    let (status, list) = b
        .call(reqwest::Method::GET, "/v1/jobs", Some(&bob), None)
        .await;
    assert_eq!(status, 200, "{list}");
    let after = metrics(&b, &admin).await;
    replay(&control, "resume").await;
    assert_eq!(
        sample(&after, primary) - sample(&before, primary),
        1.0,
        "alice's read on the primary:\n{after}"
    );
    assert_eq!(
        sample(&after, replica) - sample(&before, replica),
        1.0,
        "bob's read on the replica:\n{after}"
    );
    a.terminate();
    b.terminate();
    let _ = control.close().await;
}
