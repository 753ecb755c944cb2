//! Running the migrations of the `migration` crate: up, down, status, fresh.

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, DatabaseBackend, Statement, TransactionTrait};
use sea_orm_migration::MigrationStatus;
use zeroscale_core::Result;

use crate::{Db, Dialect};

/// The PostgreSQL advisory lock key migrations hold ("zsmig" in ASCII).
pub(crate) const MIGRATION_LOCK_KEY: i64 = 0x7a_73_6d_69_67;

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
    ///
    /// Safe to run from several processes at once (e.g. replicas starting with
    /// `auto_migrate`): on PostgreSQL the migrations run in one transaction holding an
    /// advisory lock, so one process migrates and the others then find nothing pending; on
    /// SQLite the write lock does the same.
    pub async fn migrate_up(&self) -> Result<usize> {
        self.apply_migrations(None).await
    }

    /// Applies the pending migrations up to and including `name` (none when it is applied
    /// already); returns how many were applied. A restore uses it to load an archive at the
    /// schema it was written with before the newer migrations run.
    pub async fn migrate_up_to(&self, name: &str) -> Result<usize> {
        self.apply_migrations(Some(name)).await
    }

    async fn apply_migrations(&self, until: Option<&str>) -> Result<usize> {
        // How many of the pending migrations to apply.
        let steps = |pending: Vec<sea_orm_migration::Migration>| -> usize {
            match until {
                None => pending.len(),
                Some(name) => pending
                    .iter()
                    .position(|m| m.name() == name)
                    .map_or(0, |at| at + 1),
            }
        };
        match self.dialect() {
            Dialect::Postgres => {
                let txn = self.conn()?.begin().await.map_err(|e| self.map_err(e))?;
                txn.execute_raw(Statement::from_string(
                    DatabaseBackend::Postgres,
                    format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})"),
                ))
                .await
                .map_err(|e| self.map_err(e))?;
                let n = steps(
                    Migrator::get_pending_migrations(&txn)
                        .await
                        .map_err(|e| self.map_err(e))?,
                );
                if n > 0 {
                    Migrator::up(&txn, Some(n as u32))
                        .await
                        .map_err(|e| self.map_err(e))?;
                }
                txn.commit().await.map_err(|e| self.map_err(e))?;
                Ok(n)
            }
            Dialect::Sqlite => {
                // One write transaction on one connection: another process migrating
                // waits for it, and no statement runs on a pooled connection that has not
                // seen the schema the one before it changed.
                let txn = self.begin_write().await?;
                let n = steps(
                    Migrator::get_pending_migrations(&txn)
                        .await
                        .map_err(|e| self.map_err(e))?,
                );
                if n > 0 {
                    Migrator::up(&txn, Some(n as u32))
                        .await
                        .map_err(|e| self.map_err(e))?;
                }
                txn.commit().await.map_err(|e| self.map_err(e))?;
                Ok(n)
            }
        }
    }

    /// How many migrations are not applied yet (without changing anything).
    pub async fn pending_migrations(&self) -> Result<usize> {
        Ok(self
            .migrate_status()
            .await?
            .iter()
            .filter(|m| !m.applied)
            .count())
    }

    /// Rolls back the last `steps` applied migrations.
    pub async fn migrate_down(&self, steps: u32) -> Result<()> {
        // In one transaction, as `migrate_up`: all the steps or none.
        let txn = self.begin_write().await?;
        Migrator::down(&txn, Some(steps))
            .await
            .map_err(|e| self.map_err(e))?;
        txn.commit().await.map_err(|e| self.map_err(e))
    }

    /// Drops every table and applies every migration from scratch. Destroys all data.
    pub async fn migrate_fresh(&self) -> Result<()> {
        Migrator::fresh(self.conn()?)
            .await
            .map_err(|e| self.map_err(e))
    }

    /// Every migration, oldest first, with whether it is applied.
    pub async fn migrate_status(&self) -> Result<Vec<MigrationState>> {
        let migrations = Migrator::get_migration_with_status_read_only(self.conn()?)
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
