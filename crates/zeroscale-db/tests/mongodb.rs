//! MongoDB's bad inputs: an unreachable server, a malformed URL, and a database written
//! by a newer schema each fail with a message that says what to check.

#![cfg(feature = "mongodb")]

mod common;

use zeroscale_core::Error;
use zeroscale_core::config::{DatabaseConfig, MongodbConfig, MongodbTransactions};
use zeroscale_db::Db;

fn config(url: &str) -> DatabaseConfig {
    DatabaseConfig::Mongodb(MongodbConfig {
        url: url.to_owned().into(),
        connect_timeout_secs: 1,
        ..Default::default()
    })
}

#[tokio::test]
async fn an_unreachable_server_names_the_host_and_what_to_check() {
    let err = Db::connect(&config("mongodb://127.0.0.1:1/zeroscale"))
        .await
        .expect_err("nothing listens on port 1");
    assert!(matches!(err, Error::Unavailable { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("127.0.0.1:1"), "{text}");
    assert!(text.contains("host and port"), "{text}");
}

#[tokio::test]
async fn a_malformed_url_names_the_bad_part() {
    let err = Db::connect(&config("mongodb://user:secret@127.0.0.1:notaport/db"))
        .await
        .expect_err("bad port");
    assert!(matches!(err, Error::Config { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("port"), "{text}");
    assert!(
        !text.contains("secret"),
        "the password is not shown: {text}"
    );
    let err = Db::connect(&config("")).await.expect_err("no URL");
    assert!(err.to_string().contains("DATABASE_URL"), "{err}");
}

#[tokio::test]
async fn a_database_from_a_newer_schema_is_refused() {
    let Some(db) = common::mongodb("newer", MongodbTransactions::Auto).await else {
        return;
    };
    assert!(db.db.server_details().unwrap().contains("MongoDB"));
    zeroscale_db::testing::record_mongodb_schema_step(&db.db, "mongo_29990101_000001_future")
        .await
        .unwrap();
    let err = db.db.migrate_status().await.expect_err("newer schema");
    assert!(err.to_string().contains("newer version"), "{err}");
    assert!(db.db.migrate_up().await.is_err());
    db.cleanup().await;
}
