//! The Redis backend: connection from config (a connection manager that reconnects).

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use zeroscale_core::config::RedisQueueConfig;
use zeroscale_core::{Error, Result};

/// `host:port/db` of a Redis URL, without the password.
pub fn redact_url(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.rsplit_once('@')
        .map_or(rest, |(_, host)| host)
        .to_owned()
}

/// Opens a reconnecting connection to the configured Redis.
pub async fn connect(config: &RedisQueueConfig) -> Result<ConnectionManager> {
    let url = config.url.expose();
    let location = redact_url(url);
    let client = redis::Client::open(url.as_str())
        .map_err(|e| Error::config("queue.url", format!("`{location}` is not a Redis URL: {e}")))?;
    let timeout = Duration::from_secs(config.connect_timeout_secs.max(1));
    let manager_config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(1);
    client
        .get_connection_manager_with_config(manager_config)
        .await
        .map_err(|e| {
            Error::unavailable_from(
                format!(
                    "cannot connect to Redis at {location}: check that it is running and \
                     `queue.url` / `REDIS_URL` is right (for tests, `cargo xtask services up` \
                     starts one)"
                ),
                e,
            )
        })
}

/// Connects and sends `PING`.
pub async fn probe(config: &RedisQueueConfig) -> Result<String> {
    let location = redact_url(config.url.expose());
    let mut conn = connect(config).await?;
    let pong: String = redis::cmd("PING")
        .query_async(&mut conn)
        .await
        .map_err(|e| {
            Error::unavailable_from(format!("Redis at {location} did not answer PING"), e)
        })?;
    if pong != "PONG" {
        return Err(Error::unavailable(format!(
            "Redis at {location} answered PING with {pong:?}"
        )));
    }
    Ok(location)
}
