//! The database engines: one line each. Adding an engine is a module, a feature in
//! Cargo.toml, its config variant in core, and a line here (see ARCHITECTURE.md).

use futures::future::BoxFuture;
use zeroscale_core::Result;
use zeroscale_core::backend;
use zeroscale_core::config::DatabaseConfig;
use zeroscale_core::registry::Registry;

use crate::Db;

/// A database engine's entry point.
#[derive(Debug)]
pub struct DbEntry {
    /// Opens the database its config (of this engine's kind) describes.
    pub connect: for<'a> fn(&'a DatabaseConfig) -> BoxFuture<'a, Result<Db>>,
}

/// Every database engine.
pub static ENGINES: Registry<DbEntry> = Registry {
    concern: "database",
    krate: "zeroscale-db",
    config_key: "database.kind",
    backends: &[
        backend! {
            kind: "sqlite",
            feature: "sqlite",
            about: "SQLite in a file in the data dir (the embedded default)",
            entry: DbEntry { connect: crate::sqlite::connect_config },
        },
        backend! {
            kind: "postgres",
            feature: "postgres",
            about: "PostgreSQL (pgvector optional, with feature `pgvector`)",
            entry: DbEntry { connect: crate::postgres::connect_config },
        },
        backend! {
            kind: "mongodb",
            feature: "mongodb",
            about: "MongoDB 6 or newer, on the official driver",
            entry: DbEntry { connect: crate::mongodb::connect_config },
        },
    ],
};
