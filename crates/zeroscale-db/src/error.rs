//! Mapping sea-orm's errors into zeroscale's error kinds.

use sea_orm::{DbErr, SqlErr};
use zeroscale_core::Error;

use crate::Dialect;

/// Maps a sea-orm error from `dialect` to the core error kind a caller can act on.
pub fn map_db_err(dialect: Dialect, err: DbErr) -> Error {
    let backend = dialect.name();
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
        DbErr::Query(_) | DbErr::Exec(_) if is_busy(&err.to_string()) => {
            Error::unavailable_from(format!("the {backend} database is busy; retry"), err)
        }
        _ => Error::backend(backend, err),
    }
}

fn is_busy(message: &str) -> bool {
    message.contains("database is locked") || message.contains("database is busy")
}

/// The part of a database URL that is safe to print: `host:port/db`, no credentials.
#[cfg(any(feature = "postgres", test))]
pub(crate) fn redact_url(url: &str) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let after_user = after_scheme
        .rsplit_once('@')
        .map_or(after_scheme, |(_, rest)| rest);
    after_user
        .split('?')
        .next()
        .unwrap_or(after_user)
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_credentials() {
        assert_eq!(
            redact_url("postgres://user:p@ss@127.0.0.1:5432/db?sslmode=disable"),
            "127.0.0.1:5432/db"
        );
        assert_eq!(redact_url("postgres://127.0.0.1/db"), "127.0.0.1/db");
    }
}
