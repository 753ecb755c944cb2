//! zeroscale's database migrations: one list of sea-orm-migration migrations, written
//! with the schema builder so SQLite and PostgreSQL get their schema from one source.
//!
//! The list is empty until the domain tables land (the database issue); `Migrator` is
//! already what `zeroscale-db` runs at start-up and what `zeroscale migrate` will drive.

pub use sea_orm_migration::prelude::*;

/// Every migration, oldest first.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        Vec::new()
    }
}
