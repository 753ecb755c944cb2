//! The PostgreSQL engine: a pooled connection from a URL, optional TLS.

use std::time::Duration;

use sea_orm::sqlx::postgres::PgSslMode;
use sea_orm::{ConnectOptions, Database};
use zeroscale_core::config::{PostgresConfig, PostgresTls, VectorSearch};
use zeroscale_core::{Error, Result};

use crate::breaker::BreakerOptions;
use crate::{Db, Dialect, VectorBackend, map_db_err};
use zeroscale_core::redacted_url;

/// How long a pooled connection may sit idle before it is pinged at checkout.
const PING_AFTER_IDLE: Duration = Duration::from_secs(10);

/// The pool settings of `config` for `url` (the primary's, or a replica's, which then
/// changes what differs): size, timeouts, when to ping, TLS.
pub(crate) fn pool_options(url: &str, config: &PostgresConfig) -> ConnectOptions {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(config.max_connections)
        .min_connections(config.min_connections.min(config.max_connections))
        .connect_timeout(Duration::from_secs(config.connect_timeout_secs))
        .acquire_timeout(Duration::from_secs(config.acquire_timeout_secs))
        // A ping before every checkout is a round trip per query; only a connection idle
        // long enough to have been dropped (a server restart, a proxy's idle timeout) is
        // pinged. One that died sooner fails its query as unavailable, which callers retry.
        .test_before_acquire_if_idle_for(PING_AFTER_IDLE)
        .sqlx_logging(false);
    // Each checkout's wait, as sqlx's `sqlx::pool::acquire` event (`metrics::acquire_layer`).
    options.map_sqlx_postgres_pool_opts(|o| o.acquire_time_level(log::LevelFilter::Trace));
    match config.tls {
        PostgresTls::FromUrl => {}
        PostgresTls::Disable => {
            options.map_sqlx_postgres_opts(|o| o.ssl_mode(PgSslMode::Disable));
        }
        PostgresTls::Require => {
            options.map_sqlx_postgres_opts(|o| o.ssl_mode(PgSslMode::VerifyFull));
        }
    }
    options
}

pub(crate) async fn connect(config: &PostgresConfig) -> Result<Db> {
    config.pgvector.validate()?;
    let url = config.url.expose();
    if url.is_empty() {
        return Err(Error::config(
            "database.url",
            "no PostgreSQL URL: set `database.url` or `DATABASE_URL` to \
             postgres://user:password@host:port/database",
        ));
    }
    let location = redacted_url(url);
    let options = pool_options(url, config);
    let conn = Database::connect(options).await.map_err(|e| {
        if crate::error::login_refused(&e) {
            // Not retried: no amount of waiting fixes a wrong password or a missing role.
            return Error::config(
                "database.url",
                format!(
                    "PostgreSQL at {location} refused the connection: {}: check the user, \
                     password and database name in `database.url` (or DATABASE_URL) and the \
                     role's rights",
                    database_message(&e)
                ),
            );
        }
        Error::unavailable_from(
            format!(
                "cannot connect to PostgreSQL at {location}: check that it is running and the \
                 URL is right (for tests, `cargo xtask services up` starts one)"
            ),
            map_db_err(Dialect::Postgres, e),
        )
    })?;
    let acquire = Duration::from_secs(config.acquire_timeout_secs);
    let mut db = Db::from_parts(conn, location).with_breaker(BreakerOptions {
        failures: config.breaker_failures,
        window: acquire + Duration::from_secs(5),
        probe_every: Duration::from_millis(config.breaker_probe_ms.max(1)),
        // A slow server is not a down one: a probe may take as long as a call may wait.
        probe_timeout: acquire.max(Duration::from_secs(1)),
    });
    db.vectors = choose_vector_backend(&db, config.vector_search).await?;
    db.pgvector = std::sync::Arc::new(crate::PgvectorState {
        options: config.pgvector.clone(),
        ..Default::default()
    });
    db.replicas = crate::replicas::Replicas::connect(config, &db.conn).await?;
    Ok(db)
}

/// The server's own words for a refused connection (without the URL).
fn database_message(err: &sea_orm::DbErr) -> String {
    use sea_orm::{DbErr, RuntimeErr};
    match err {
        DbErr::Conn(RuntimeErr::SqlxError(e)) => match e.as_ref() {
            sea_orm::sqlx::Error::Database(db) => db.message().to_owned(),
            other => other.to_string(),
        },
        other => other.to_string(),
    }
}

/// Picks exact or pgvector search per `database.vector_search`.
async fn choose_vector_backend(db: &Db, wanted: VectorSearch) -> Result<VectorBackend> {
    match wanted {
        VectorSearch::Exact => Ok(VectorBackend::Exact),
        #[cfg(feature = "pgvector")]
        VectorSearch::Auto => Ok(if crate::pgvector::available(db).await? {
            VectorBackend::Pgvector
        } else {
            VectorBackend::Exact
        }),
        #[cfg(not(feature = "pgvector"))]
        VectorSearch::Auto => {
            let _ = db;
            Ok(VectorBackend::Exact)
        }
        #[cfg(feature = "pgvector")]
        VectorSearch::Pgvector => {
            if crate::pgvector::available(db).await? {
                Ok(VectorBackend::Pgvector)
            } else {
                Err(Error::config(
                    "database.vector_search",
                    format!(
                        "the PostgreSQL server at {} has no `vector` extension: install \
                         pgvector there, or set `database.vector_search = \"exact\"`",
                        db.location()
                    ),
                ))
            }
        }
        #[cfg(not(feature = "pgvector"))]
        VectorSearch::Pgvector => Err(Error::not_compiled_in(
            "database.vector_search",
            "pgvector",
            "zeroscale-db",
            "pgvector",
        )),
    }
}

/// The registry's connect for `database.kind = "postgres"`.
pub(crate) fn connect_config(
    config: &zeroscale_core::config::DatabaseConfig,
) -> futures::future::BoxFuture<'_, Result<Db>> {
    Box::pin(async move {
        let zeroscale_core::config::DatabaseConfig::Postgres(c) = config else {
            return Err(zeroscale_core::registry::wrong_config(
                "postgres",
                config.kind(),
            ));
        };
        connect(c).await
    })
}
