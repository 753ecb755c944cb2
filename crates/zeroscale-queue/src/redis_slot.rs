//! A Redis Cluster connection for the keys of one hash slot: the master that serves the
//! slot, found from the configured nodes with `CLUSTER SLOTS`, and found again when it
//! changes (a failover, a resharding).
//!
//! Every key this crate writes is under the `{key_prefix}` hash tag, so it only ever
//! talks to one master, and commands without keys (`TIME`, `WAIT`, `PUBLISH`,
//! `CONFIG GET`) must go to that same master (`WAIT` counts the replicas of the node it
//! runs on). A general cluster client routes keyless commands to any node and, in the
//! redis crate's 1.8 async client, stopped answering at all after its master was
//! SIGKILLed (the failover test caught it); this one is small enough to reason about:
//!
//! - A reply that says the command did not run here (`MOVED`, `CLUSTERDOWN`,
//!   `TRYAGAIN`, `MASTERDOWN`, `READONLY`) or a refused connection: the master is looked
//!   up again and the command sent again, backing off from 50 ms to 500 ms, for up to
//!   `queue.connect_timeout_secs`; then the caller gets the error as *unavailable* and its
//!   own retry takes over (a worker's next poll, the client's retry).
//! - `ASK` (the slot is being migrated): the command goes once to the node named, after
//!   `ASKING`.
//! - A connection that broke while a command was on its way: the master is looked up
//!   again for the next command, but this one is not sent again (it may have run); the
//!   caller gets the error, as with one server.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{
    AsyncConnectionConfig, Cmd, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, Pipeline,
    RedisError, RedisFuture, ServerErrorKind, Value,
};
use tokio::time::Instant;

/// The hash slot of `key` (Redis Cluster's CRC16 of the key's hash tag, modulo 16384).
pub(crate) fn hash_slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let tagged = bytes.iter().position(|b| *b == b'{').and_then(|open| {
        let close = bytes[open + 1..].iter().position(|b| *b == b'}')?;
        (close > 0).then(|| &bytes[open + 1..open + 1 + close])
    });
    crc16(tagged.unwrap_or(bytes)) % 16384
}

/// CRC-16/XMODEM (polynomial 0x1021, initial value 0), the checksum Redis Cluster uses.
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for byte in bytes {
        crc ^= u16::from(*byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// What a reply or an error means for where the command should go.
enum Route {
    /// The answer (which may be the command's own error).
    Done,
    /// The command did not run on this node: find the master again and resend.
    Rediscover,
    /// The slot is moving: resend once to this node after `ASKING`.
    Ask(String, u16),
}

fn route_reply(value: &Value) -> Route {
    let Value::ServerError(e) = value else {
        return Route::Done;
    };
    match e.kind() {
        Some(
            ServerErrorKind::Moved
            | ServerErrorKind::ClusterDown
            | ServerErrorKind::TryAgain
            | ServerErrorKind::MasterDown
            | ServerErrorKind::ReadOnly,
        ) => Route::Rediscover,
        Some(ServerErrorKind::Ask) => {
            // "ASK <slot> <host>:<port>"
            let target = e
                .details()
                .and_then(|d| d.split_ascii_whitespace().nth(1))
                .and_then(|addr| addr.rsplit_once(':'))
                .and_then(|(host, port)| Some((host.to_owned(), port.parse().ok()?)));
            match target {
                Some((host, port)) => Route::Ask(host, port),
                None => Route::Rediscover,
            }
        }
        _ => Route::Done,
    }
}

/// A connection to the master serving one hash slot of a Redis Cluster. Cheap to clone
/// (clones share the connection).
#[derive(Clone)]
pub(crate) struct SlotConnection {
    inner: Arc<Inner>,
}

struct Inner {
    /// The configured nodes, with their credentials (used for every node).
    seeds: Vec<ConnectionInfo>,
    slot: u16,
    timeout: Duration,
    /// The master found last, while it answers.
    master: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    /// Nodes learnt from the last `CLUSTER SLOTS`, asked after the seeds.
    known: std::sync::Mutex<Vec<Node>>,
}

impl std::fmt::Debug for SlotConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlotConnection")
            .field("slot", &self.inner.slot)
            .finish_non_exhaustive()
    }
}

impl SlotConnection {
    /// Finds the master of `slot` from `seeds` (redis:// URLs); fails when no node
    /// answers within `timeout`.
    pub(crate) async fn connect(
        seeds: Vec<ConnectionInfo>,
        slot: u16,
        timeout: Duration,
    ) -> redis::RedisResult<SlotConnection> {
        let conn = SlotConnection {
            inner: Arc::new(Inner {
                seeds,
                slot,
                timeout,
                master: tokio::sync::Mutex::new(None),
                known: std::sync::Mutex::new(Vec::new()),
            }),
        };
        conn.with_retries(|mut c| async move { c.req_packed_command(&redis::cmd("PING")).await })
            .await?;
        Ok(conn)
    }

    fn config(&self) -> AsyncConnectionConfig {
        AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.inner.timeout))
            .set_response_timeout(Some(self.inner.timeout))
    }

    /// `info` at `host:port` instead of its own address (credentials and db kept).
    fn at(info: &ConnectionInfo, host: &str, port: u16) -> ConnectionInfo {
        info.clone()
            .set_addr(ConnectionAddr::Tcp(host.to_owned(), port))
    }

    async fn open(&self, info: ConnectionInfo) -> redis::RedisResult<MultiplexedConnection> {
        redis::Client::open(info)?
            .get_multiplexed_async_connection_with_config(&self.config())
            .await
    }

    /// The master's connection, looked up when there is none.
    async fn master(&self) -> redis::RedisResult<MultiplexedConnection> {
        let mut master = self.inner.master.lock().await;
        if let Some(conn) = master.as_ref() {
            return Ok(conn.clone());
        }
        let conn = self.discover().await?;
        *master = Some(conn.clone());
        Ok(conn)
    }

    async fn forget(&self) {
        *self.inner.master.lock().await = None;
    }

    /// Asks the seeds, then the nodes learnt before, for `CLUSTER SLOTS`, and connects
    /// to the master the first answer names for the slot.
    async fn discover(&self) -> redis::RedisResult<MultiplexedConnection> {
        let template = self.inner.seeds[0].clone();
        let known = self.inner.known.lock().expect("lock").clone();
        let candidates = self
            .inner
            .seeds
            .iter()
            .cloned()
            .chain(known.iter().map(|(h, p)| Self::at(&template, h, *p)));
        let mut last: Option<RedisError> = None;
        for info in candidates {
            let addr = info.addr().clone();
            let mut conn = match self.open(info.clone()).await {
                Ok(conn) => conn,
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            let slots: Value = match redis::cmd("CLUSTER")
                .arg("SLOTS")
                .query_async(&mut conn)
                .await
            {
                Ok(slots) => slots,
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            let (master, nodes) = parse_slots(&slots, self.inner.slot);
            if !nodes.is_empty() {
                *self.inner.known.lock().expect("lock") = nodes;
            }
            let Some((host, port)) = master else {
                last = Some(RedisError::from((
                    redis::ErrorKind::Server(ServerErrorKind::ClusterDown),
                    "no master serves the queue's hash slot",
                    format!("slot {} (asked {addr})", self.inner.slot),
                )));
                continue;
            };
            // An empty host means "the node you asked".
            let host = if host.is_empty() {
                match &addr {
                    ConnectionAddr::Tcp(h, _) | ConnectionAddr::TcpTls { host: h, .. } => h.clone(),
                    _ => host,
                }
            } else {
                host
            };
            match self.open(Self::at(&template, &host, port)).await {
                Ok(conn) => return Ok(conn),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            RedisError::from((
                redis::ErrorKind::Client,
                "no Redis Cluster node is configured",
            ))
        }))
    }

    /// Runs `send` on the master, looking it up again and resending while the answer
    /// says the command did not run there, up to the timeout.
    async fn with_retries<F, Fut, T>(&self, send: F) -> redis::RedisResult<T>
    where
        F: Fn(MultiplexedConnection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
        T: Replies,
    {
        let deadline = Instant::now() + self.inner.timeout;
        let mut wait = Duration::from_millis(50);
        loop {
            let outcome = match self.master().await {
                Ok(conn) => match send(conn).await {
                    Ok(reply) => match reply.route() {
                        // `ASK` is for the caller: it has the command to resend.
                        Route::Done | Route::Ask(..) => return Ok(reply),
                        Route::Rediscover => Ok(reply),
                    },
                    // Refused: it never ran. Anything else may have: no resend.
                    Err(e) if e.is_connection_refusal() => Err(e),
                    Err(e) => {
                        if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() {
                            self.forget().await;
                        }
                        return Err(e);
                    }
                },
                Err(e) => Err(e),
            };
            self.forget().await;
            if Instant::now() + wait > deadline {
                return outcome;
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_millis(500));
        }
    }
}

/// What a command's or a pipeline's replies say about routing.
trait Replies {
    fn route(&self) -> Route;
}

impl Replies for Value {
    fn route(&self) -> Route {
        route_reply(self)
    }
}

impl Replies for Vec<Value> {
    fn route(&self) -> Route {
        // A pipeline sent to a node that does not serve the slot fails on its first
        // keyed command; a slot being migrated is waited out (no `ASKING` for pipelines).
        match self
            .iter()
            .map(route_reply)
            .find(|r| !matches!(r, Route::Done))
        {
            Some(_) => Route::Rediscover,
            None => Route::Done,
        }
    }
}

/// A node's host and port.
type Node = (String, u16);

/// The master serving `slot` and every node named, from a `CLUSTER SLOTS` reply:
/// `[[start, end, [host, port, id, ...], replica...], ...]`.
fn parse_slots(reply: &Value, slot: u16) -> (Option<Node>, Vec<Node>) {
    fn node(value: &Value) -> Option<Node> {
        let Value::Array(fields) = value else {
            return None;
        };
        let host = match fields.first()? {
            Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
            Value::SimpleString(s) => s.clone(),
            _ => return None,
        };
        let Value::Int(port) = fields.get(1)? else {
            return None;
        };
        Some((host, u16::try_from(*port).ok()?))
    }
    let Value::Array(ranges) = reply else {
        return (None, Vec::new());
    };
    let mut master = None;
    let mut nodes = Vec::new();
    for range in ranges {
        let Value::Array(fields) = range else {
            continue;
        };
        let (Some(Value::Int(start)), Some(Value::Int(end))) = (fields.first(), fields.get(1))
        else {
            continue;
        };
        let members: Vec<Node> = fields[2..].iter().filter_map(node).collect();
        if (*start..=*end).contains(&i64::from(slot)) {
            master = members.first().cloned();
        }
        for member in members {
            if !member.0.is_empty() && !nodes.contains(&member) {
                nodes.push(member);
            }
        }
    }
    (master, nodes)
}

impl ConnectionLike for SlotConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let reply = self
                .with_retries(|mut c| async move { c.req_packed_command(cmd).await })
                .await?;
            if let Route::Ask(host, port) = reply.route() {
                let template = self.inner.seeds[0].clone();
                let mut target = self.open(Self::at(&template, &host, port)).await?;
                let mut pipe = redis::pipe();
                pipe.cmd("ASKING").ignore().add_command(cmd.clone());
                let mut replies = target.req_packed_commands(&pipe, 1, 1).await?;
                return Ok(replies.pop().unwrap_or(Value::Nil));
            }
            Ok(reply)
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            self.with_retries(|mut c| async move {
                c.req_packed_commands(pipeline, offset, count).await
            })
            .await
        })
    }

    fn get_db(&self) -> i64 {
        0
    }
}

/// The seeds' connection infos from redis:// URLs.
pub(crate) fn seeds(urls: &[String]) -> redis::RedisResult<Vec<ConnectionInfo>> {
    urls.iter()
        .map(|u| u.as_str().into_connection_info())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_redis_cluster_spec() {
        // The spec's CRC16 check value, and slots redis-cli's CLUSTER KEYSLOT gives.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(hash_slot("foo"), 12182);
        assert_eq!(hash_slot("{user1000}.following"), hash_slot("user1000"));
        // An empty tag is no tag: the whole key is hashed.
        assert_eq!(hash_slot("foo{}{bar}"), 8363);
        assert_eq!(hash_slot("{zeroscale}:seq"), 4249);
        assert_eq!(hash_slot("{zeroscale}:seq"), hash_slot("{zeroscale}:job:1"));
    }

    #[test]
    fn the_master_of_a_slot_is_read_from_cluster_slots() {
        let node = |host: &str, port: i64| {
            Value::Array(vec![
                Value::BulkString(host.as_bytes().to_vec()),
                Value::Int(port),
                Value::BulkString(b"id".to_vec()),
            ])
        };
        let reply = Value::Array(vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                node("10.0.0.1", 7000),
                node("10.0.0.4", 7003),
            ]),
            Value::Array(vec![
                Value::Int(5461),
                Value::Int(16383),
                node("", 7001),
                node("10.0.0.5", 7004),
            ]),
        ]);
        let (master, nodes) = parse_slots(&reply, 100);
        assert_eq!(master, Some(("10.0.0.1".to_owned(), 7000)));
        assert_eq!(nodes.len(), 3, "nodes without a host are not remembered");
        let (master, _) = parse_slots(&reply, 16383);
        assert_eq!(master, Some((String::new(), 7001)));
        assert_eq!(parse_slots(&Value::Nil, 1).0, None);
    }
}
