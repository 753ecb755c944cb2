//! Running the migrations of the `migration` crate: up, down, status, fresh.

use migration::{Migrator, MigratorTrait};
use sea_orm_migration::MigrationStatus;
use zeroscale_core::Result;

use crate::Db;

/// One migration and whether it is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationState {
    /// The migration's name, e.g. `m20261122_000001_domain`.
    pub name: String,
    /// Whether it has been applied to this database.
    pub applied: bool,
}

impl Db {
    /// Applies every pending migration; returns how many were applied.
    pub async fn migrate_up(&self) -> Result<usize> {
        let pending = Migrator::get_pending_migrations(self.conn())
            .await
            .map_err(|e| self.map_err(e))?
            .len();
        Migrator::up(self.conn(), None)
            .await
            .map_err(|e| self.map_err(e))?;
        Ok(pending)
    }

    /// Rolls back the last `steps` applied migrations.
    pub async fn migrate_down(&self, steps: u32) -> Result<()> {
        Migrator::down(self.conn(), Some(steps))
            .await
            .map_err(|e| self.map_err(e))
    }

    /// Drops every table and applies every migration from scratch. Destroys all data.
    pub async fn migrate_fresh(&self) -> Result<()> {
        Migrator::fresh(self.conn())
            .await
            .map_err(|e| self.map_err(e))
    }

    /// Every migration, oldest first, with whether it is applied.
    pub async fn migrate_status(&self) -> Result<Vec<MigrationState>> {
        let migrations = Migrator::get_migration_with_status_read_only(self.conn())
            .await
            .map_err(|e| self.map_err(e))?;
        Ok(migrations
            .iter()
            .map(|m| MigrationState {
                name: m.name().to_owned(),
                applied: m.status() == MigrationStatus::Applied,
            })
            .collect())
    }
}
