//! The one way this crate reaches Redis: a [`RedisConn`] to one server (`queue.url`) or
//! to a Redis Cluster (`queue.cluster_nodes`), both reconnecting by themselves, and the
//! [`Subscriber`] that pub/sub listeners open their own connections with.
//!
//! Every key this crate writes is under the `{key_prefix}` hash tag, so on a cluster they
//! all live in one slot and every command goes to that slot's master
//! ([`SlotConnection`], which finds it again after a failover); pub/sub messages are
//! broadcast by the cluster to every node, so a listener may subscribe on any node.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, Pipeline, RedisFuture, Value};
use zeroscale_core::config::RedisQueueConfig;
use zeroscale_core::{Error, Result, redacted_url};

use crate::redis_slot::{SlotConnection, hash_slot};

/// Whether Redis refused the login, which waiting cannot fix: a wrong password or user
/// (`WRONGPASS`, or the client's own "authentication failed"), a password it needs and was
/// not given (`NOAUTH`), or a user without the right (`NOPERM`).
pub(crate) fn login_refused(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(e.code(), Some("WRONGPASS" | "NOAUTH" | "NOPERM"))
}

/// The config key the connection comes from.
fn key(config: &RedisQueueConfig) -> &'static str {
    if config.cluster_nodes.is_empty() {
        "queue.url"
    } else {
        "queue.cluster_nodes"
    }
}

/// The config error for a refused login at `location` (no password in it).
pub(crate) fn refused(config: &RedisQueueConfig, e: &redis::RedisError) -> Error {
    let key = key(config);
    Error::config(
        key,
        format!(
            "{} refused the login ({e}): check the user and password in `{key}`{} and the \
             server's `requirepass` or ACL",
            config.location(),
            if key == "queue.url" {
                " / `REDIS_URL`"
            } else {
                ""
            }
        ),
    )
}

/// A connection to the queue's Redis: one server or a cluster. Cheap to clone (clones
/// share the connection).
#[derive(Clone)]
pub(crate) enum RedisConn {
    /// One server (`queue.url`).
    Single(ConnectionManager),
    /// The master of the queue's hash slot on a Redis Cluster (`queue.cluster_nodes`).
    Cluster(SlotConnection),
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConn::Single(c) => c.req_packed_command(cmd),
            RedisConn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            RedisConn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Single(c) => c.get_db(),
            RedisConn::Cluster(c) => c.get_db(),
        }
    }
}

/// The client for each address the config names (one, or each cluster node given).
fn clients(config: &RedisQueueConfig) -> Result<Vec<redis::Client>> {
    if config.cluster_nodes.is_empty() {
        let url = config.url.expose();
        let client = redis::Client::open(url.as_str()).map_err(|e| {
            Error::config(
                "queue.url",
                format!("`{}` is not a Redis URL: {e}", redacted_url(url)),
            )
        })?;
        return Ok(vec![client]);
    }
    config
        .cluster_nodes
        .iter()
        .enumerate()
        .map(|(i, node)| {
            redis::Client::open(node.expose().as_str()).map_err(|e| {
                Error::config(
                    format!("queue.cluster_nodes[{i}]"),
                    format!("`{}` is not a Redis URL: {e}", redacted_url(node.expose())),
                )
            })
        })
        .collect()
}

/// Opens a reconnecting connection to the configured Redis or Redis Cluster.
pub(crate) async fn connect(config: &RedisQueueConfig) -> Result<RedisConn> {
    let timeout = Duration::from_secs(config.connect_timeout_secs.max(1));
    let unreachable = |e: redis::RedisError| {
        if login_refused(&e) {
            return refused(config, &e);
        }
        Error::unavailable_from(
            format!(
                "cannot connect to {}: check that it is running and `{}` is right (for \
                 tests, `cargo xtask services up` starts one)",
                config.location(),
                key(config)
            ),
            e,
        )
    };
    let mut clients = clients(config)?;
    if config.cluster_nodes.is_empty() {
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1);
        let client = clients.remove(0);
        return client
            .get_connection_manager_with_config(manager_config)
            .await
            .map(RedisConn::Single)
            .map_err(unreachable);
    }
    let urls: Vec<String> = config
        .cluster_nodes
        .iter()
        .map(|n| n.expose().clone())
        .collect();
    let seeds = crate::redis_slot::seeds(&urls)
        .map_err(|e| Error::config("queue.cluster_nodes", format!("not a Redis URL: {e}")))?;
    // Every key is under the `{key_prefix}` tag: one slot, one master at a time.
    let slot = hash_slot(&format!("{{{}}}", config.key_prefix));
    SlotConnection::connect(seeds, slot, timeout)
        .await
        .map(RedisConn::Cluster)
        .map_err(unreachable)
}

/// Opens pub/sub connections for listeners: on one server, to it; on a cluster, to the
/// nodes in turn (a message published on any node reaches every node), so a listener
/// whose node died subscribes again on the next one.
#[derive(Debug)]
pub(crate) struct Subscriber {
    clients: Vec<redis::Client>,
    next: AtomicUsize,
}

impl Subscriber {
    pub(crate) fn new(config: &RedisQueueConfig) -> Result<Self> {
        Ok(Subscriber {
            clients: clients(config)?,
            next: AtomicUsize::new(0),
        })
    }

    /// A pub/sub connection to the first node that answers, starting after the one used
    /// last.
    pub(crate) async fn pubsub(&self) -> redis::RedisResult<redis::aio::PubSub> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut last = None;
        for i in 0..self.clients.len() {
            let client = &self.clients[(start + i) % self.clients.len()];
            match client.get_async_pubsub().await {
                Ok(pubsub) => return Ok(pubsub),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            redis::RedisError::from((redis::ErrorKind::Client, "no Redis node is configured"))
        }))
    }
}
