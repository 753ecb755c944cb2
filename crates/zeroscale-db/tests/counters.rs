//! The shared counters in the database: the conformance suite on SQLite and PostgreSQL.

mod common;

use zeroscale_db::counters::DbCounters;

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
