//! Read replicas (`database.replicas`) on the streaming replica `cargo xtask services up
//! --stage4` starts: stale-tolerant reads go to the replica (it answers with stale data
//! while its replay is paused below the lag limit); `primary_reads` reads the primary;
//! replay paused past the limit sends those reads to the primary, resumed brings them
//! back; the replica stopped costs no read, and started again serves again.
//!
//! One test, in steps: pausing replay and stopping the replica affect the whole replica.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use zeroscale_core::config::{ChatConfig, DatabaseConfig, PostgresConfig, VectorSearch};
use zeroscale_core::testing::require_service;
use zeroscale_db::Db;
use zeroscale_db::domain::{Domain, NewDocument};
use zeroscale_db::replicas::{ReplicaStatus, primary_reads};

const MAX_LAG: Duration = Duration::from_millis(1000);
const COLLECTION: &str = "replicated";

/// `url` for the database `name`.
fn on(url: &str, name: &str) -> String {
    let (base, _) = url.rsplit_once('/').expect("the URL names a database");
    format!("{base}/{name}")
}

fn doc(i: usize) -> NewDocument {
    NewDocument {
        collection: COLLECTION.to_owned(),
        content: format!("document {i}"),
        metadata: json!({"n": i}),
        embedding_model: "test".to_owned(),
        vector: vec![1.0, i as f32, 0.5],
    }
}

fn ctl(script: &str, action: &str) {
    let status = Command::new(script)
        .arg(action)
        .status()
        .expect("run ctl.sh");
    assert!(status.success(), "{script} {action}: {status}");
}

fn status(db: &Db) -> ReplicaStatus {
    db.replica_status().pop().expect("one replica")
}

async fn wait_for(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_reads_follow_the_replica_and_its_lag() {
    let Some(replica_base) =
        require_service("ZEROSCALE_TEST_POSTGRES_REPLICA_URL", "PostgreSQL replica")
    else {
        return;
    };
    let Some(ctl_script) = require_service(
        "ZEROSCALE_TEST_POSTGRES_REPLICA_CTL",
        "PostgreSQL replica (ctl.sh)",
    ) else {
        return;
    };
    let Some(test_db) = common::postgres("replicas").await else {
        return;
    };
    // Replay control runs on the replica's own `postgres` database.
    let control = common::connect_postgres_with(&replica_base, 1, VectorSearch::Exact)
        .await
        .expect("connect to the replica");
    zeroscale_db::testing::replica_replay(&control, false)
        .await
        .expect("resume the replay");

    let db = Db::connect(&DatabaseConfig::Postgres(PostgresConfig {
        url: test_db.url.clone().expect("a PostgreSQL URL").into(),
        max_connections: 5,
        min_connections: 0,
        vector_search: VectorSearch::Exact,
        replicas: vec![on(&replica_base, &test_db.name).into()],
        max_replica_lag_ms: MAX_LAG.as_millis() as u64,
        replica_check_ms: 100,
        read_your_writes_ms: 2000,
        ..Default::default()
    }))
    .await
    .expect("connect with a replica");
    let domain = Domain::new(db.clone(), common::test_auth(), ChatConfig::default());
    let docs = domain.documents();
    docs.insert(doc(1)).await.unwrap();
    // The database was created a moment ago: the replica may not have replayed it yet.
    wait_for("the replica serving", Duration::from_secs(10), || {
        status(&db).serving
    })
    .await;
    // Serving means at most the lag limit behind, not caught up: wait for the first write.
    let deadline = Instant::now() + Duration::from_secs(10);
    while docs.count(COLLECTION).await.unwrap() != 1 {
        assert!(
            Instant::now() < deadline,
            "the replica never had the first document"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // 1. Stale-tolerant reads go to the replica, not the primary.
    let (replica_before, primary_before) = (status(&db).reads, db.stale_reads_on_primary());
    for _ in 0..10 {
        assert_eq!(docs.count(COLLECTION).await.unwrap(), 1);
    }
    assert!(status(&db).serving, "{}", status(&db));
    assert_eq!(status(&db).reads - replica_before, 10);
    assert_eq!(db.stale_reads_on_primary(), primary_before);
    // A filtered search (a scan) is served there too, with the same answer.
    let hits = docs
        .search(COLLECTION, &[1.0, 1.0, 0.5], 5, json!({"n": 1}).as_object())
        .await
        .unwrap();
    assert_eq!(hits.len(), 1);

    // 2. Replay paused, below the lag limit: the replica still answers, with what it has.
    zeroscale_db::testing::replica_replay(&control, true)
        .await
        .expect("pause the replay");
    docs.insert(doc(2)).await.unwrap();
    let written = Instant::now();
    let stale = docs.count(COLLECTION).await.unwrap();
    assert!(
        written.elapsed() < MAX_LAG / 2,
        "the machine is too slow for this step"
    );
    assert_eq!(
        stale, 1,
        "a stale-tolerant read within the lag limit is the replica's"
    );
    assert_eq!(primary_reads(docs.count(COLLECTION)).await.unwrap(), 2);

    // 3. Past the lag limit, those reads go to the primary.
    wait_for(
        "the replica's lag over the limit",
        Duration::from_secs(10),
        || !status(&db).serving,
    )
    .await;
    let lagging = status(&db);
    assert!(
        lagging.up && lagging.lag.is_some_and(|l| l > MAX_LAG),
        "{lagging}"
    );
    let (replica_before, primary_before) = (lagging.reads, db.stale_reads_on_primary());
    assert_eq!(docs.count(COLLECTION).await.unwrap(), 2);
    assert_eq!(status(&db).reads, replica_before);
    assert_eq!(db.stale_reads_on_primary(), primary_before + 1);

    // 4. Resumed: back to the replica once it has caught up.
    zeroscale_db::testing::replica_replay(&control, false)
        .await
        .expect("resume the replay");
    wait_for("the replica serving again", Duration::from_secs(10), || {
        status(&db).serving
    })
    .await;
    let before = status(&db).reads;
    assert_eq!(docs.count(COLLECTION).await.unwrap(), 2);
    assert_eq!(status(&db).reads, before + 1);

    // 5. The replica stopped: reads go on (a read that finds it gone runs on the
    //    primary), and it is reported down.
    let _ = control.close().await;
    ctl(&ctl_script, "stop");
    let stopped = Instant::now();
    for _ in 0..20 {
        assert_eq!(docs.count(COLLECTION).await.unwrap(), 2);
    }
    wait_for("the replica reported down", Duration::from_secs(5), || {
        !status(&db).up
    })
    .await;
    let down = status(&db);
    assert!(!down.serving, "{down}");
    eprintln!(
        "replica stopped: 20 reads answered, reported down {:?} after the stop: {down}",
        stopped.elapsed()
    );
    ctl(&ctl_script, "start");
    wait_for("the replica back", Duration::from_secs(30), || {
        status(&db).serving
    })
    .await;
    let before = status(&db).reads;
    assert_eq!(docs.count(COLLECTION).await.unwrap(), 2);
    assert_eq!(status(&db).reads, before + 1);
    db.close().await.unwrap();
    test_db.cleanup().await;
}
