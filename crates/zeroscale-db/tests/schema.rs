//! Schema parity between SQLite and PostgreSQL, migration commands on both engines, and
//! SQLite under concurrent writers.

// `#[async_trait]` needs the trait's exact signature, elided lifetime included.
#![allow(elided_lifetimes_in_paths)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use sea_orm_migration::prelude::*;
use serde_json::json;
use zeroscale_core::config::ChatConfig;
use zeroscale_core::domain::ChatRole;
use zeroscale_db::Db;
use zeroscale_db::domain::NewMessage;
use zeroscale_db::schema::{Schema, introspect};

#[tokio::test]
async fn migrated_schemas_agree_on_both_engines() {
    let Some(pg) = common::postgres("parity").await else {
        return;
    };
    parity_with(pg).await;
}

/// The same check against the pgvector PostgreSQL (16, with pgvector 0.6) set up (its side table is outside
/// the comparison, as documented).
#[tokio::test]
async fn migrated_schemas_agree_with_pgvector_postgres() {
    let Some(pg) = common::pgvector("parity").await else {
        return;
    };
    // Create the pgvector side table, so the check proves it is left out.
    let d = pg.domain(zeroscale_core::config::ChatConfig::default());
    d.documents()
        .insert(zeroscale_db::domain::NewDocument {
            collection: "c".into(),
            content: "x".into(),
            metadata: json!({}),
            embedding_model: "m".into(),
            vector: vec![1.0, 0.0],
        })
        .await
        .unwrap();
    parity_with(pg).await;
}

async fn parity_with(pg: common::TestDb) {
    let lite = common::sqlite("parity").await;
    let a = introspect(&lite.db).await.expect("introspect SQLite");
    let b = introspect(&pg.db).await.expect("introspect PostgreSQL");
    assert!(
        a.tables.len() >= 8,
        "expected the domain tables, got {:?}",
        a.tables.keys()
    );
    for table in a.tables.values() {
        for (name, col) in &table.columns {
            assert!(!col.ty.starts_with("unmapped"), "{name}: {}", col.ty);
        }
    }
    let diff = a.diff("sqlite", &b, "postgres");
    assert!(
        diff.is_empty(),
        "SQLite and PostgreSQL schemas differ:\n  {}",
        diff.join("\n  ")
    );
    // Spot checks that introspection saw what the migration declares.
    let users = &a.tables["users"];
    assert_eq!(users.primary_key, ["id"]);
    assert!(users.unique.contains(&vec!["username".to_owned()]));
    assert_eq!(users.columns["credits"].default.as_deref(), Some("0"));
    let keys = &b.tables["api_keys"];
    assert!(
        keys.foreign_keys
            .iter()
            .any(|fk| fk.references == "system_prompts" && fk.on_delete == "restrict")
    );
    lite.cleanup().await;
    pg.cleanup().await;
}

/// A migration that changes one engine only: the kind of drift the parity check exists
/// to catch.
#[derive(DeriveMigrationName)]
struct SqliteOnlyColumn;

#[async_trait::async_trait]
impl MigrationTrait for SqliteOnlyColumn {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == sea_orm::DatabaseBackend::Sqlite {
            manager
                .alter_table(
                    Table::alter()
                        .table("users")
                        .add_column(ColumnDef::new("nickname").text().null())
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("idx_users_credits")
                    .table("users")
                    .col("credits")
                    .to_owned(),
            )
            .await?;
        if manager.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
            manager
                .get_connection()
                .execute_unprepared("ALTER TABLE users ALTER COLUMN role TYPE text")
                .await?;
        }
        Ok(())
    }
}

async fn apply(db: &Db) {
    let manager = SchemaManager::new(zeroscale_db::testing::conn(db));
    SqliteOnlyColumn
        .up(&manager)
        .await
        .expect("diverging migration");
}

#[tokio::test]
async fn parity_check_reports_a_migration_that_changes_one_engine_only() {
    let Some(pg) = common::postgres("drift").await else {
        return;
    };
    let lite = common::sqlite("drift").await;
    apply(&lite.db).await;
    apply(&pg.db).await;
    let a = introspect(&lite.db).await.unwrap();
    let b = introspect(&pg.db).await.unwrap();
    let diff = a.diff("sqlite", &b, "postgres");
    let text = diff.join("\n");
    assert!(
        text.contains("`users.nickname` (text null) only in sqlite"),
        "{text}"
    );
    assert!(
        text.contains("`users.role`: sqlite has string(16) not null default 'user', postgres has text not null default 'user'"),
        "{text}"
    );
    assert!(
        !text.contains("idx_users_credits") && !text.contains("index on (credits)"),
        "the index was added on both engines: {text}"
    );
    assert_eq!(diff.len(), 2, "{text}");
    lite.cleanup().await;
    pg.cleanup().await;
}

#[test]
fn identical_schemas_have_no_diff() {
    assert!(
        Schema::default()
            .diff("a", &Schema::default(), "b")
            .is_empty()
    );
}

async fn migrations_round_trip(db: &Db) {
    let status = db.migrate_status().await.unwrap();
    assert!(!status.is_empty());
    assert!(status.iter().all(|m| m.applied), "{status:?}");
    assert_eq!(db.migrate_up().await.unwrap(), 0, "nothing pending");

    // One step down undoes the newest migration only.
    db.migrate_down(1).await.expect("down");
    let status = db.migrate_status().await.unwrap();
    assert!(!status.last().unwrap().applied, "{status:?}");
    assert!(status[0].applied, "{status:?}");
    let tables = introspect(db).await.unwrap();
    assert!(
        !tables.tables["queue_jobs"].columns.contains_key("origin"),
        "down dropped queue_jobs.origin"
    );
    assert!(
        tables.tables.contains_key("storage_uploads"),
        "and kept storage_uploads"
    );
    assert!(
        tables.tables["api_keys"]
            .columns
            .contains_key("rate_limit_per_minute"),
        "and kept api_keys.rate_limit_per_minute"
    );
    assert!(
        tables.tables["users"].columns.contains_key("username_key"),
        "and kept users.username_key"
    );
    for table in ["rate_counters", "queue_jobs", "vector_collections"] {
        assert!(tables.tables.contains_key(table), "and kept {table}");
    }
    assert!(tables.tables.contains_key("users"), "and left the rest");

    // All the way down drops every table.
    let count = status.len() as u32;
    db.migrate_down(count).await.expect("down all");
    let tables = introspect(db).await.unwrap();
    assert!(
        !tables.tables.contains_key("users"),
        "down dropped the tables"
    );

    assert_eq!(db.migrate_up().await.unwrap(), status.len());
    db.migrate_fresh().await.expect("fresh");
    assert!(db.migrate_status().await.unwrap().iter().all(|m| m.applied));
}

#[tokio::test]
async fn migrations_up_down_status_fresh_sqlite() {
    let db = common::sqlite("migrate").await;
    migrations_round_trip(&db.db).await;
    db.cleanup().await;
}

#[tokio::test]
async fn migrations_up_down_status_fresh_postgres() {
    let Some(db) = common::postgres("migrate").await else {
        return;
    };
    migrations_round_trip(&db.db).await;
    db.cleanup().await;
}

/// 32 tasks append chat messages to one SQLite file for a few seconds: no "database is
/// locked" error, and every acknowledged row is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_32_concurrent_writers_lose_nothing() {
    let db = common::sqlite("writers").await;
    let domain = Arc::new(db.domain(ChatConfig {
        max_messages_per_session: u64::MAX / 2,
        ..ChatConfig::default()
    }));
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut tasks = Vec::new();
    for writer in 0..32 {
        let domain = domain.clone();
        tasks.push(tokio::spawn(async move {
            let mut ok = 0u64;
            let mut errors = Vec::new();
            // Bounded in time and count.
            while Instant::now() < deadline && ok < 2_000 {
                let result = domain
                    .chat()
                    .append(NewMessage {
                        session_id: format!("writer-{}", writer % 8),
                        role: ChatRole::User,
                        content: format!("w{writer} #{ok}"),
                        user_id: None,
                        api_key_id: None,
                        metadata: json!({"writer": writer}),
                    })
                    .await;
                match result {
                    Ok(_) => ok += 1,
                    Err(e) => errors.push(e.chain()),
                }
            }
            (ok, errors)
        }));
    }
    let mut total = 0;
    let mut errors = Vec::new();
    for task in tasks {
        let (ok, errs) = task.await.unwrap();
        total += ok;
        errors.extend(errs);
    }
    assert!(
        errors.is_empty(),
        "{} errors, first: {}",
        errors.len(),
        errors[0]
    );
    assert!(total > 32, "writers made progress: {total}");
    let mut stored = 0;
    for session in 0..8 {
        let mut cursor = None;
        loop {
            let page = domain
                .chat()
                .list(&format!("writer-{session}"), cursor.as_deref(), Some(1000))
                .await
                .unwrap();
            stored += page.messages.len() as u64;
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
    }
    assert_eq!(stored, total, "every acknowledged append is stored");
    eprintln!("32 writers appended {total} messages in 3s with no errors");
    drop(domain);
    db.cleanup().await;
}

/// Several processes starting with `auto_migrate` at once: one migrates, none fails.
async fn concurrent_migrate_up(db: &Db) {
    db.migrate_fresh().await.unwrap();
    db.migrate_down(1).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let db = db.clone();
        tasks.push(tokio::spawn(async move { db.migrate_up().await }));
    }
    let mut applied = 0;
    for task in tasks {
        applied += task.await.unwrap().expect("concurrent migrate up");
    }
    assert_eq!(
        applied, 1,
        "exactly one runner applied the pending migration"
    );
    assert_eq!(db.pending_migrations().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_migrate_up_postgres() {
    let Some(db) = common::postgres("migrate_race").await else {
        return;
    };
    concurrent_migrate_up(&db.db).await;
    db.cleanup().await;
}
