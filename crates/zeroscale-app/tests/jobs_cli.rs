//! `zeroscale jobs …` against Redis and the database queue: stats, list, show, retry,
//! cancel, dead, purge-dead.

mod common;

use std::process::Command;
use std::time::Duration;

use serde_json::json;
use zeroscale_core::Queue;
use zeroscale_core::config::{JobsConfig, RedisQueueConfig};
use zeroscale_core::queue::{JobState, NackOptions, NewJob, ReserveOptions};
use zeroscale_core::testing::require_service;

fn jobs(env: &[(&str, String)], args: &[&str]) -> String {
    let dir = std::env::temp_dir();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_zeroscale"));
    for (key, _) in std::env::vars() {
        if key.starts_with("ZEROSCALE_") || key == "DATABASE_URL" || key == "REDIS_URL" {
            cmd.env_remove(key);
        }
    }
    let out = cmd
        .arg("jobs")
        .args(args)
        .current_dir(&dir)
        .env(
            "ZEROSCALE_DATA_DIR",
            dir.join(format!("zs-jobs-{}", std::process::id())),
        )
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "jobs {args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn jobs_commands_redis() {
    let Some(url) = require_service("ZEROSCALE_TEST_REDIS_URL", "Redis") else {
        return;
    };
    let prefix = format!("jobs-cli-{}", std::process::id());
    let config = RedisQueueConfig {
        url: url.clone().into(),
        key_prefix: prefix.clone(),
        ..Default::default()
    };
    let q = zeroscale_queue::connect(
        &zeroscale_core::config::QueueConfig::Redis(config.clone()),
        &JobsConfig::default(),
    )
    .await
    .unwrap();
    let env = [("REDIS_URL", url), ("ZEROSCALE_QUEUE__KEY_PREFIX", prefix)];
    jobs_commands(q.as_ref(), &env).await;
}

/// The database queue in an SQLite file: the CLI opens the same file.
#[cfg(feature = "database-queue")]
#[tokio::test]
async fn jobs_commands_database() {
    use zeroscale_core::config::{DatabaseConfig, DatabaseQueueConfig, QueueConfig, SqliteConfig};
    let dir = common::TempDir::new("jobs-cli-db");
    let path = dir.0.join("app.db");
    let db = zeroscale_db::Db::connect(&DatabaseConfig::Sqlite(SqliteConfig {
        path: Some(path.clone()),
        ..Default::default()
    }))
    .await
    .unwrap();
    db.migrate_up().await.unwrap();
    let q = zeroscale_queue::connect_with(
        &QueueConfig::Database(DatabaseQueueConfig::default()),
        &JobsConfig::default(),
        &zeroscale_queue::QueueContext::default().with_database(db),
    )
    .await
    .unwrap();
    let env = [
        ("ZEROSCALE_QUEUE__KIND", "database".to_owned()),
        ("ZEROSCALE_DATABASE__PATH", path.display().to_string()),
    ];
    jobs_commands(q.as_ref(), &env).await;
}

async fn jobs_commands(q: &dyn Queue, env: &[(&str, String)]) {
    let waiting = q
        .enqueue(NewJob::new("default", "zeroscale.echo", json!({"a": 1})))
        .await
        .unwrap();
    let mut doomed = NewJob::new("default", "explode", json!(null));
    doomed.options.max_attempts = Some(1);
    doomed.options.priority = 10;
    let dead = q.enqueue(doomed).await.unwrap();
    let job = q
        .reserve(&ReserveOptions {
            queues: vec!["default".into()],
            lease: Duration::from_secs(30),
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.id, dead);
    q.nack(
        &job.lease,
        NackOptions {
            error: "kaboom".into(),
            retry_after: None,
            give_up: false,
        },
    )
    .await
    .unwrap();

    let stats = jobs(env, &["stats"]);
    assert!(
        stats.contains("queued     1") && stats.contains("dead       1"),
        "{stats}"
    );
    let dead_list = jobs(env, &["dead"]);
    assert!(
        dead_list.contains(&dead.to_string()) && dead_list.contains("kaboom"),
        "{dead_list}"
    );
    let queued = jobs(env, &["list", "--state", "queued"]);
    assert!(
        queued.contains(&waiting.to_string()) && !queued.contains(&dead.to_string()),
        "{queued}"
    );
    let shown = jobs(env, &["show", &dead.to_string()]);
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["state"], "dead");
    assert_eq!(shown["last_error"], "kaboom");

    jobs(env, &["retry", &dead.to_string()]);
    assert_eq!(q.status(dead).await.unwrap().state, JobState::Queued);
    let out = jobs(env, &["cancel", &waiting.to_string()]);
    assert!(out.contains("cancelled"), "{out}");
    assert_eq!(q.status(waiting).await.unwrap().state, JobState::Cancelled);

    let job = q
        .reserve(&ReserveOptions {
            queues: vec!["default".into()],
            lease: Duration::from_secs(30),
        })
        .await
        .unwrap()
        .unwrap();
    q.nack(
        &job.lease,
        NackOptions {
            error: "again".into(),
            retry_after: None,
            give_up: false,
        },
    )
    .await
    .unwrap();
    let out = jobs(env, &["purge-dead"]);
    assert!(out.contains("deleted 1 dead job(s)"), "{out}");
    assert!(jobs(env, &["dead"]).trim().is_empty());
}

/// `zeroscale serve` runs workers itself by default (`workers.mode = "in_process"`).
#[cfg(feature = "redis")]
#[tokio::test]
async fn serve_runs_in_process_workers() {
    let Some(url) = require_service("ZEROSCALE_TEST_REDIS_URL", "Redis") else {
        return;
    };
    let prefix = format!("in-process-{}", std::process::id());
    let dir = std::env::temp_dir().join(format!("zs-in-process-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut serve = common::zeroscale(&dir)
        .arg("serve")
        .env("ZEROSCALE_SERVER__ADDR", format!("127.0.0.1:{port}"))
        .env("REDIS_URL", &url)
        .env("ZEROSCALE_QUEUE__KEY_PREFIX", &prefix)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let config = RedisQueueConfig {
        url: url.clone().into(),
        key_prefix: prefix.clone(),
        ..Default::default()
    };
    let q = zeroscale_queue::connect(
        &zeroscale_core::config::QueueConfig::Redis(config.clone()),
        &JobsConfig::default(),
    )
    .await
    .unwrap();
    let id = q
        .enqueue(NewJob::new(
            "default",
            "zeroscale.echo",
            json!({"hello": "worker"}),
        ))
        .await
        .unwrap();
    let mut status = q.status(id).await.unwrap();
    for _ in 0..300 {
        if status.state == JobState::Succeeded {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        status = q.status(id).await.unwrap();
    }
    let _ = serve.kill();
    let _ = serve.wait();
    assert_eq!(status.state, JobState::Succeeded, "{status:?}");
    assert_eq!(status.result, Some(json!({"hello": "worker"})));
    std::fs::remove_dir_all(dir).ok();
}
