//! The SQLite engine: a file in the data dir, WAL, busy timeout, foreign keys on.

use std::time::Duration;

use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, Database};
use zeroscale_core::config::{SqliteConfig, ensure_private_dir};
use zeroscale_core::{Error, Result};

use crate::{Db, Dialect, map_db_err};

/// Readers that can run beside the one writer; SQLite in WAL mode allows one writer at a
/// time, so more connections only add lock waits.
const POOL_SIZE: u32 = 4;

pub(crate) async fn connect(config: &SqliteConfig) -> Result<Db> {
    let busy = Duration::from_millis(config.busy_timeout_ms);
    let file = if config.in_memory {
        None
    } else {
        // Unset (a config built in code rather than loaded): the default data dir's file,
        // where a loaded config would put it.
        let path = match config.path.clone() {
            Some(path) => path,
            None => zeroscale_core::config::default_data_dir()?.join("zeroscale.db"),
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            ensure_private_dir(parent)?;
        }
        create_private(&path)?;
        Some(path)
    };
    let location = file
        .as_ref()
        .map_or_else(|| ":memory:".to_owned(), |p| p.display().to_string());

    // The URL only picks file or memory mode; the file name is set on the options below so
    // that paths with any characters work.
    let url = if file.is_some() {
        "sqlite://zeroscale.db"
    } else {
        "sqlite::memory:"
    };
    let mut options = ConnectOptions::new(url);
    // Every connection to `:memory:` is a new database: keep exactly one.
    let pool = if file.is_some() { POOL_SIZE } else { 1 };
    options
        .max_connections(pool)
        .min_connections(1)
        .acquire_timeout(busy + Duration::from_secs(5))
        // A file has no server to drop the connection: a ping at checkout (a trip to the
        // connection's thread) would only cost time.
        .test_before_acquire(false)
        .sqlx_logging(false);
    // Each checkout's wait, as sqlx's `sqlx::pool::acquire` event (`metrics::acquire_layer`).
    options.map_sqlx_sqlite_pool_opts(|o| o.acquire_time_level(log::LevelFilter::Trace));
    options.map_sqlx_sqlite_opts(move |opts| {
        let opts = match &file {
            Some(path) => opts
                .filename(path)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal),
            None => opts.journal_mode(SqliteJournalMode::Memory),
        };
        opts.synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(busy)
    });
    let conn = Database::connect(options).await.map_err(|e| {
        Error::unavailable_from(
            format!("cannot open the SQLite database {location}"),
            map_db_err(Dialect::Sqlite, e),
        )
    })?;
    Ok(Db::from_parts(conn, location))
}

/// Creates a missing database file empty (an empty file is an empty SQLite database)
/// and readable by its owner only: SQLite gives its `-wal` and `-shm` files the
/// database file's permissions, so they are private too. An existing file is left as
/// it is (`zeroscale doctor` warns when it is wider).
fn create_private(path: &std::path::Path) -> Result<()> {
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        open.mode(0o600);
    }
    match open.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::unavailable_from(
            format!("cannot create the SQLite database {}", path.display()),
            e,
        )),
    }
}

/// The registry's connect for `database.kind = "sqlite"`.
pub(crate) fn connect_config(
    config: &zeroscale_core::config::DatabaseConfig,
) -> futures::future::BoxFuture<'_, Result<Db>> {
    Box::pin(async move {
        let zeroscale_core::config::DatabaseConfig::Sqlite(c) = config else {
            return Err(zeroscale_core::registry::wrong_config(
                "sqlite",
                config.kind(),
            ));
        };
        connect(c).await
    })
}
