//! Running the migrations: zeroscale's (the `zeroscale-migration` crate), then the app's own
//! ([`set_app_migrations`]), as one list: up, down, status, fresh.

use std::sync::OnceLock;

use sea_orm::{ConnectionTrait, DatabaseBackend, Statement, TransactionTrait};
use sea_orm_migration::{MigrationStatus, MigrationTrait, MigratorTrait};
use zeroscale_core::{Error, Result};

use crate::{Db, Dialect};

/// Makes a fresh list of an app's migrations, oldest first.
pub type AppMigrations = fn() -> Vec<Box<dyn MigrationTrait>>;

static APP_MIGRATIONS: OnceLock<AppMigrations> = OnceLock::new();

/// Adds an app's own migrations after zeroscale's, for this process: every [`Db`] then
/// runs, reports, rolls back, backs up and restores them with zeroscale's (one table of
/// applied migrations, `seaql_migrations`). Call it once, before the first database
/// operation (`zeroscale_app::App::migrations` does). Migrations are written with
/// sea-orm-migration's schema builder ([`crate::escape_hatch::sea_orm_migration`]), so
/// one source serves SQLite and PostgreSQL.
///
/// Fails when a name is used twice (or by one of zeroscale's migrations), or when a
/// different list was set before.
pub fn set_app_migrations(migrations: AppMigrations) -> Result<()> {
    let mut seen = std::collections::BTreeSet::new();
    for m in ZeroscaleMigrator::migrations().iter().chain(&migrations()) {
        if !seen.insert(m.name().to_owned()) {
            return Err(Error::invalid_input(format!(
                "migration `{}` is listed twice (or has the name of one of zeroscale's): give \
                 each migration its own name, e.g. `m<yyyymmdd>_<nnnnnn>_<what>`",
                m.name()
            )));
        }
    }
    let set = APP_MIGRATIONS.get_or_init(|| migrations);
    if std::ptr::fn_addr_eq(*set, migrations) {
        Ok(())
    } else {
        Err(Error::invalid_input(
            "the app's migrations were already set to another list in this process",
        ))
    }
}

use zeroscale_migration::Migrator as ZeroscaleMigrator;

/// zeroscale's migrations, then the app's: the one list every operation runs.
#[derive(Debug)]
pub(crate) struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        let mut all = ZeroscaleMigrator::migrations();
        if let Some(app) = APP_MIGRATIONS.get() {
            all.extend(app());
        }
        all
    }
}

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
        #[cfg(feature = "mongodb")]
        if let Some(m) = self.mongo() {
            return m.schema_up().await;
        }
        self.apply_migrations::<Migrator>(None).await
    }

    /// Applies only the documents schema (`documents`, `vector_collections`,
    /// `embedding_cache`), for a database that holds documents and vector search alone
    /// ([`crate::documents::DocumentStore`]); returns how many migrations were applied.
    /// Tracked in a table of its own; the full schema ([`Db::migrate_up`]) can still be
    /// applied later, and this changes nothing on a database that has it.
    pub async fn migrate_documents_up(&self) -> Result<usize> {
        // MongoDB's steps only make collections and indexes: all of them, harmlessly.
        #[cfg(feature = "mongodb")]
        if let Some(m) = self.mongo() {
            return m.schema_up().await;
        }
        self.apply_migrations::<zeroscale_migration::documents::DocumentsMigrator>(None)
            .await
    }

    /// Applies the pending migrations up to and including `name` (none when it is applied
    /// already); returns how many were applied. A restore uses it to load an archive at the
    /// schema it was written with before the newer migrations run.
    pub async fn migrate_up_to(&self, name: &str) -> Result<usize> {
        self.apply_migrations::<Migrator>(Some(name)).await
    }

    async fn apply_migrations<M: MigratorTrait>(&self, until: Option<&str>) -> Result<usize> {
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
        match self.sql_dialect() {
            Dialect::Postgres => {
                let txn = self.conn()?.begin().await.map_err(|e| self.map_err(e))?;
                txn.execute_raw(Statement::from_string(
                    DatabaseBackend::Postgres,
                    format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})"),
                ))
                .await
                .map_err(|e| self.map_err(e))?;
                let n = steps(
                    M::get_pending_migrations(&txn)
                        .await
                        .map_err(|e| self.map_err(e))?,
                );
                if n > 0 {
                    M::up(&txn, Some(n as u32))
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
                    M::get_pending_migrations(&txn)
                        .await
                        .map_err(|e| self.map_err(e))?,
                );
                if n > 0 {
                    M::up(&txn, Some(n as u32))
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
        #[cfg(feature = "mongodb")]
        if let Some(m) = self.mongo() {
            return m.schema_fresh().await;
        }
        Migrator::fresh(self.conn()?)
            .await
            .map_err(|e| self.map_err(e))
    }

    /// Every migration, oldest first, with whether it is applied.
    pub async fn migrate_status(&self) -> Result<Vec<MigrationState>> {
        #[cfg(feature = "mongodb")]
        if let Some(m) = self.mongo() {
            return m.schema_status().await;
        }
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
