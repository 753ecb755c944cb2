//! zeroscale's database migrations: one list of sea-orm-migration migrations, written
//! with the schema builder so SQLite and PostgreSQL get their schema from one source.
//!
//! `Migrator` is what `zeroscale-db` runs at start-up (`auto_migrate`) and what
//! `zeroscale migrate up|down|status|fresh` drives. Never edit a released migration: add
//! a new one, and let the schema-parity test prove both engines still agree.
//!
//! # Feature flags
//!
//! None: the engines are `zeroscale-db`'s features (`sqlite`, `postgres`), which turn on
//! sea-orm-migration's drivers.

pub use sea_orm_migration::prelude::*;

pub mod documents;
mod m20261122_000001_domain;
mod m20261123_000001_user_jobs;
mod m20261202_000001_vector_collections;
mod m20261203_000001_queue_jobs;
mod m20261203_000002_rate_counters;
mod m20261203_000003_username_key;
mod m20261203_000004_api_key_rate_limit;
mod m20261204_000001_storage_uploads;
mod m20261206_000001_job_origin;

/// Every migration, oldest first.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_domain::Migration),
            Box::new(m20261123_000001_user_jobs::Migration),
            Box::new(m20261202_000001_vector_collections::Migration),
            Box::new(m20261203_000001_queue_jobs::Migration),
            Box::new(m20261203_000002_rate_counters::Migration),
            Box::new(m20261203_000003_username_key::Migration),
            Box::new(m20261203_000004_api_key_rate_limit::Migration),
            Box::new(m20261204_000001_storage_uploads::Migration),
            Box::new(m20261206_000001_job_origin::Migration),
        ]
    }
}

/// The README's examples, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
