//! Mapping sea-orm's errors into zeroscale's error kinds.

use sea_orm::{DbErr, SqlErr};
use zeroscale_core::Error;

use crate::Dialect;

/// Maps a sea-orm error from `dialect` to the core error kind a caller can act on.
pub(crate) fn map_db_err(dialect: Dialect, err: DbErr) -> Error {
    let mapped = map_kind(dialect, err);
    crate::metrics::count_error(&mapped);
    mapped
}

fn map_kind(dialect: Dialect, err: DbErr) -> Error {
    let backend = dialect.name();
    if let Some(e) = transaction_pooler(dialect, &err) {
        return e;
    }
    if connection_lost(&err) {
        return Error::unavailable_from(
            format!(
                "the connection to the {backend} database was lost (the server restarted, \
                 failed over or ended the session); retry"
            ),
            err,
        );
    }
    if let Some(sql_err) = err.sql_err() {
        return match sql_err {
            SqlErr::UniqueConstraintViolation(detail) => {
                Error::already_exists(format!("a row with the same unique key ({detail})"))
            }
            SqlErr::ForeignKeyConstraintViolation(detail) => Error::conflict(format!(
                "a referenced row is missing or still in use ({detail})"
            )),
            _ => Error::backend(backend, err),
        };
    }
    match &err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => Error::unavailable_from(
            format!("the {backend} database is not reachable or its pool is exhausted"),
            err,
        ),
        DbErr::RecordNotFound(what) => Error::not_found(what.clone()),
        DbErr::Query(_) | DbErr::Exec(_)
            if database_code(&err).is_some_and(|code| is_busy_code(dialect, &code)) =>
        {
            Error::unavailable_from(format!("the {backend} database is busy; retry"), err)
        }
        _ => Error::backend(backend, err),
    }
}

/// The error for a connection pooler in transaction mode between zeroscale and
/// PostgreSQL (PgBouncer's `pool_mode = transaction`): the driver prepares each statement
/// (a named one per connection, `sqlx_s_1` and on) and runs it after a sync, so the pooler
/// hands the two halves, or two clients' statements of one name, to different server
/// connections. PostgreSQL then says `42P05` (prepared statement already exists) or
/// `26000` (prepared statement does not exist). Waiting cannot fix it: it is the pool mode.
pub(crate) fn transaction_pooler(dialect: Dialect, err: &DbErr) -> Option<Error> {
    let code = database_code(err)?;
    (dialect == Dialect::Postgres && matches!(code.as_str(), "42P05" | "26000")).then(|| {
        Error::config(
            "database.url",
            format!(
                "PostgreSQL answered `{err}`: a connection pooler in transaction mode \
                 (PgBouncer's `pool_mode = transaction`) is between zeroscale and the \
                 database, and the driver's prepared statements need one server connection \
                 per client connection. Use `pool_mode = session` for zeroscale's database \
                 (docs/database.md#pgbouncer-session-mode), or connect to PostgreSQL directly"
            ),
        )
    })
}

/// Whether the error says the connection went away under the statement rather than that
/// the statement was wrong: an I/O error, a closed or exhausted pool, a crashed driver
/// worker, or PostgreSQL's own words for it (SQLSTATE class 08, connection exception;
/// 57P01–57P03, the server shutting down or not yet accepting connections, which is how
/// `pg_terminate_backend` and a restart arrive).
fn connection_lost(err: &DbErr) -> bool {
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    {
        use sea_orm::sqlx::Error as SqlxError;
        match sqlx_error(err) {
            Some(
                SqlxError::Io(_)
                | SqlxError::PoolClosed
                | SqlxError::PoolTimedOut
                | SqlxError::WorkerCrashed,
            ) => true,
            Some(SqlxError::Database(db)) => {
                db.code().is_some_and(|code| is_connection_sqlstate(&code))
            }
            _ => false,
        }
    }
    #[cfg(not(any(feature = "sqlite", feature = "postgres")))]
    {
        let _ = err;
        false
    }
}

/// Whether the error says the server could not be reached or the connection failed
/// (what the circuit breaker counts), as opposed to a statement or data error.
pub(crate) fn connection_failed(err: &DbErr) -> bool {
    matches!(err, DbErr::ConnectionAcquire(_) | DbErr::Conn(_)) || connection_lost(err)
}

/// Whether the pool was closed on purpose ([`crate::Db::close`]).
pub(crate) fn pool_closed(err: &DbErr) -> bool {
    matches!(
        err,
        DbErr::ConnectionAcquire(sea_orm::ConnAcquireErr::ConnectionClosed)
    )
}

/// The driver's error under a sea-orm error, when there is one.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn sqlx_error(err: &DbErr) -> Option<&sea_orm::sqlx::Error> {
    use sea_orm::RuntimeErr;
    match err {
        DbErr::Conn(RuntimeErr::SqlxError(e))
        | DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Query(RuntimeErr::SqlxError(e)) => Some(e.as_ref()),
        _ => None,
    }
}

/// Whether PostgreSQL refused the connection for a reason waiting cannot fix: a wrong
/// password (28P01), a role it does not know or `pg_hba.conf` refusing it (28000), a
/// database that does not exist (3D000), or no right to connect (42501).
#[cfg(feature = "postgres")]
pub(crate) fn login_refused(err: &DbErr) -> bool {
    database_code(err)
        .is_some_and(|code| matches!(code.as_str(), "28P01" | "28000" | "3D000" | "42501"))
}

/// SQLSTATEs that mean the connection, not the statement, failed.
#[cfg_attr(
    not(any(feature = "sqlite", feature = "postgres")),
    allow(dead_code, reason = "no engine compiled in")
)]
fn is_connection_sqlstate(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03")
}

/// The engine's own code for a database error (a SQLSTATE on PostgreSQL, the extended
/// result code on SQLite).
fn database_code(err: &DbErr) -> Option<String> {
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    {
        match sqlx_error(err) {
            Some(sea_orm::sqlx::Error::Database(db)) => db.code().map(|c| c.into_owned()),
            _ => None,
        }
    }
    #[cfg(not(any(feature = "sqlite", feature = "postgres")))]
    {
        let _ = err;
        None
    }
}

/// Codes that mean "another writer holds what this needs; the same statement may work in
/// a moment": SQLite's `SQLITE_BUSY` (5) and `SQLITE_LOCKED` (6) with any extended code;
/// PostgreSQL's lock_not_available (55P03), serialization_failure (40001) and
/// deadlock_detected (40P01).
fn is_busy_code(dialect: Dialect, code: &str) -> bool {
    match dialect {
        Dialect::Sqlite => code.parse::<i64>().is_ok_and(|c| matches!(c & 0xff, 5 | 6)),
        Dialect::Postgres => matches!(code, "55P03" | "40001" | "40P01"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_codes() {
        for code in ["5", "6", "261", "517", "262"] {
            assert!(is_busy_code(Dialect::Sqlite, code), "{code}");
        }
        for code in ["1", "19", "2067", "nope"] {
            assert!(!is_busy_code(Dialect::Sqlite, code), "{code}");
        }
        for code in ["55P03", "40001", "40P01"] {
            assert!(is_busy_code(Dialect::Postgres, code), "{code}");
        }
        assert!(!is_busy_code(Dialect::Postgres, "23505"));
    }

    #[test]
    fn connection_sqlstates() {
        for code in ["08000", "08003", "08006", "57P01", "57P02", "57P03"] {
            assert!(is_connection_sqlstate(code), "{code}");
        }
        for code in ["23505", "42P01", "57014", "40001"] {
            assert!(!is_connection_sqlstate(code), "{code}");
        }
    }

    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    #[test]
    fn io_and_closed_pools_are_unavailable() {
        use sea_orm::RuntimeErr;
        use sea_orm::sqlx::Error as SqlxError;
        use std::sync::Arc;
        let io = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "eof");
        for (err, what) in [
            (
                DbErr::Query(RuntimeErr::SqlxError(Arc::new(SqlxError::Io(io)))),
                "io",
            ),
            (
                DbErr::Exec(RuntimeErr::SqlxError(Arc::new(SqlxError::PoolClosed))),
                "closed",
            ),
            (
                DbErr::Conn(RuntimeErr::SqlxError(Arc::new(SqlxError::PoolTimedOut))),
                "timeout",
            ),
        ] {
            let mapped = map_db_err(Dialect::Postgres, err);
            assert_eq!(
                mapped.kind(),
                zeroscale_core::ErrorKind::Unavailable,
                "{what}"
            );
            assert!(mapped.is_retriable(), "{what}");
        }
        let other = DbErr::Query(RuntimeErr::Internal("syntax".into()));
        assert_eq!(
            map_db_err(Dialect::Postgres, other).kind(),
            zeroscale_core::ErrorKind::Backend
        );
    }
}
