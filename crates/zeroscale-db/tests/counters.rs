//! The database's tables that instances share besides the domain: the counters (the
//! conformance suite) and the storage upload log, on SQLite, PostgreSQL and MongoDB.

mod common;

use chrono::DateTime;
use zeroscale_core::uploads::{PendingUpload, UploadLog};
use zeroscale_db::counters::DbCounters;
use zeroscale_db::upload_log::DbUploadLog;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn counters_sqlite() {
    let db = common::sqlite("counters").await;
    let counters = DbCounters::new(db.db.clone());
    zeroscale_core::conformance::counters::run_all(&counters, "sqlite").await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn counters_postgres() {
    let Some(db) = common::postgres("counters").await else {
        return;
    };
    let counters = DbCounters::new(db.db.clone());
    zeroscale_core::conformance::counters::run_all(&counters, "postgres").await;
    db.cleanup().await;
}

async fn upload_log_suite(log: &DbUploadLog) {
    let at = |s: i64| DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap();
    let long_id = "x".repeat(400);
    for (store, id, t) in [
        ("s3a", "u1", 0),
        ("s3a", "u2", 10),
        ("s3b", "u1", 0),
        ("s3a", long_id.as_str(), 30),
    ] {
        log.record(&PendingUpload {
            store: store.into(),
            path: format!("files/{id}"),
            upload_id: id.into(),
            started_at: at(t),
        })
        .await
        .unwrap();
    }
    let old = log.started_before("s3a", at(5), 10).await.unwrap();
    assert_eq!(old.len(), 1, "only s3a's older upload: {old:?}");
    assert_eq!(old[0].upload_id, "u1");
    assert_eq!(old[0].path, "files/u1");
    assert_eq!(old[0].started_at, at(0));
    let ids = |v: Vec<PendingUpload>| v.into_iter().map(|u| u.upload_id).collect::<Vec<_>>();
    assert_eq!(
        ids(log.started_before("s3a", at(20), 10).await.unwrap()),
        ["u1", "u2"],
        "oldest first"
    );
    assert_eq!(
        log.started_before("s3a", at(20), 1).await.unwrap().len(),
        1,
        "at most the limit"
    );
    log.forget("s3a", "u1").await.unwrap();
    log.forget("s3a", "never recorded").await.unwrap();
    assert_eq!(
        ids(log.started_before("s3a", at(40), 10).await.unwrap()),
        ["u2".to_owned(), long_id.clone()]
    );
    assert_eq!(
        log.started_before("s3b", at(20), 10).await.unwrap().len(),
        1,
        "another store's stays"
    );
}

#[tokio::test]
async fn upload_log_sqlite() {
    let db = common::sqlite("upload_log").await;
    upload_log_suite(&DbUploadLog::new(db.db.clone())).await;
    db.cleanup().await;
}

#[tokio::test]
async fn upload_log_postgres() {
    let Some(db) = common::postgres("upload_log").await else {
        return;
    };
    upload_log_suite(&DbUploadLog::new(db.db.clone())).await;
    db.cleanup().await;
}

#[cfg(feature = "mongodb")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn counters_mongodb() {
    let Some(db) = common::mongodb("counters", Default::default()).await else {
        return;
    };
    let counters = DbCounters::new(db.db.clone());
    zeroscale_core::conformance::counters::run_all(&counters, "mongodb").await;
    db.cleanup().await;
}

#[cfg(feature = "mongodb")]
#[tokio::test]
async fn upload_log_mongodb() {
    let Some(db) = common::mongodb("upload_log", Default::default()).await else {
        return;
    };
    upload_log_suite(&DbUploadLog::new(db.db.clone())).await;
    db.cleanup().await;
}
