//! Documents and vector search on their own: `DocumentStore::open` creates only the
//! documents tables, works on both engines, and the full schema can follow on the same
//! database (and the documents schema on a full one changes nothing).

use zeroscale_core::config::{DatabaseConfig, SqliteConfig};
use zeroscale_db::Db;
use zeroscale_db::documents::{DocumentStore, NewDocument};

fn doc(content: &str, vector: Vec<f32>) -> NewDocument {
    NewDocument {
        collection: "notes".into(),
        content: content.into(),
        metadata: serde_json::json!({ "len": content.len() }),
        embedding_model: "test".into(),
        vector,
    }
}

async fn tables(db: &Db) -> Vec<String> {
    let schema = zeroscale_db::schema::introspect(db)
        .await
        .expect("introspect");
    schema
        .tables
        .into_keys()
        .filter(|t| !t.starts_with("sqlite_"))
        .collect()
}

async fn documents_alone_then_the_full_schema(db: Db) {
    let store = DocumentStore::open(db.clone()).await.expect("open");
    let mut names = tables(&db).await;
    names.sort();
    assert_eq!(
        names,
        [
            "embedding_cache",
            "vector_collections",
            "zeroscale_documents_migrations",
            "documents"
        ]
        .iter()
        .map(|s| s.to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>(),
        "only the documents tables"
    );
    let docs = store.documents();
    docs.insert_many(vec![
        doc("north", vec![1.0, 0.0]),
        doc("east", vec![0.0, 1.0]),
        doc("north-east", vec![0.7, 0.7]),
    ])
    .await
    .expect("insert");
    let hits = docs
        .search("notes", &[0.9, 0.1], 2, None)
        .await
        .expect("search");
    let found: Vec<&str> = hits.iter().map(|h| h.document.content.as_str()).collect();
    assert_eq!(found, ["north", "north-east"]);
    assert_eq!(docs.count("notes").await.unwrap(), 3);
    // Opening again applies nothing.
    assert_eq!(db.migrate_documents_up().await.unwrap(), 0);

    // The full schema follows on the same database and keeps the documents.
    db.migrate_up()
        .await
        .expect("the full schema after the documents one");
    assert!(tables(&db).await.contains(&"users".to_owned()));
    let store = DocumentStore::new(db.clone());
    assert_eq!(store.documents().count("notes").await.unwrap(), 3);
}

#[tokio::test]
async fn sqlite_documents_alone() {
    let dir = std::env::temp_dir().join(format!("zs-documents-only-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let db = Db::connect(&DatabaseConfig::Sqlite(SqliteConfig {
        path: Some(dir.join("docs.db")),
        ..Default::default()
    }))
    .await
    .expect("connect");
    documents_alone_then_the_full_schema(db).await;

    // On a database with the full schema, the documents schema changes nothing.
    let full = Db::connect(&DatabaseConfig::Sqlite(SqliteConfig {
        path: Some(dir.join("full.db")),
        ..Default::default()
    }))
    .await
    .expect("connect");
    full.migrate_up().await.unwrap();
    let before = zeroscale_db::schema::introspect(&full).await.unwrap();
    DocumentStore::open(full.clone()).await.expect("open");
    let mut after = zeroscale_db::schema::introspect(&full).await.unwrap();
    after.tables.remove("zeroscale_documents_migrations");
    assert!(before.diff("before", &after, "after").is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_documents_alone() {
    let Some(admin_url) =
        zeroscale_core::testing::require_service("ZEROSCALE_TEST_POSTGRES_URL", "PostgreSQL")
    else {
        return;
    };
    let name = format!("zs_documents_only_{}", std::process::id());
    let url = zeroscale_db::testing::empty_postgres_database(&admin_url, &name)
        .await
        .expect("create the database");
    let db = Db::connect(&DatabaseConfig::Postgres(
        zeroscale_core::config::PostgresConfig {
            url: url.into(),
            max_connections: 2,
            min_connections: 0,
            ..Default::default()
        },
    ))
    .await
    .expect("connect to PostgreSQL");
    documents_alone_then_the_full_schema(db.clone()).await;
    db.close().await.ok();
    zeroscale_db::testing::drop_postgres_database(&admin_url, &name)
        .await
        .ok();
}
