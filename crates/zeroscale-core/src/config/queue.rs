//! `[queue]`, `[jobs]` and `[workers]`: the job queue, job defaults and the workers.

use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// The job queue backend (`queue.kind`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum QueueConfig {
    /// Inside the process (the embedded default; jobs are lost on restart).
    Memory(MemoryQueueConfig),
    /// A Redis server, shared by many processes and machines.
    Redis(RedisQueueConfig),
    /// The application's own database (`[database]`): jobs survive restarts, every
    /// process on that database shares them, and an enqueue can commit with the
    /// application's own writes.
    Database(DatabaseQueueConfig),
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig::Memory(MemoryQueueConfig::default())
    }
}

impl QueueConfig {
    /// The kind's name, as written in config.
    pub fn kind(&self) -> &'static str {
        match self {
            QueueConfig::Memory(_) => "memory",
            QueueConfig::Redis(_) => "redis",
            QueueConfig::Database(_) => "database",
        }
    }
}

/// In-memory queue settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct MemoryQueueConfig {}

/// Redis queue settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct RedisQueueConfig {
    /// `redis://[:password@]host:port[/db]`; `REDIS_URL` sets it too.
    pub url: Secret<String>,
    /// Prefix of every key, so deployments can share a server. Default `zeroscale`.
    pub key_prefix: String,
    /// Seconds to wait for a connection. Default 5.
    pub connect_timeout_secs: u64,
    /// A Redis Cluster instead of one server: some of its nodes
    /// (`["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"]`, a password in each URL if the
    /// cluster has one); the rest are found from them. When set, `url` is not used. The
    /// queue's keys stay in one hash slot (`{key_prefix}`), so the cluster gives failover,
    /// not throughput spread: see docs/queue.md. Default empty (one server at `url`).
    pub cluster_nodes: Vec<Secret<String>>,
    /// Replicas that must have an enqueue before it is acknowledged (Redis `WAIT`), so a
    /// master that fails right after cannot lose it. 0 = do not wait (one server, or
    /// accept losing the last writes on a failover). Default 0; stage 4 uses 1.
    pub wait_for_replicas: u32,
    /// How long an enqueue waits for `wait_for_replicas` replicas, in milliseconds; when
    /// fewer confirm in time the enqueue fails as unavailable (the job is on the master
    /// and may run: retry with the same idempotency key). Default 1000.
    pub replica_wait_ms: u64,
}

impl Default for RedisQueueConfig {
    fn default() -> Self {
        RedisQueueConfig {
            url: Secret::new("redis://127.0.0.1:6379".to_owned()),
            key_prefix: "zeroscale".to_owned(),
            connect_timeout_secs: 5,
            cluster_nodes: Vec::new(),
            wait_for_replicas: 0,
            replica_wait_ms: 1000,
        }
    }
}

impl RedisQueueConfig {
    /// Where the queue's Redis is, without passwords: the URL, or the cluster's nodes.
    pub fn location(&self) -> String {
        if self.cluster_nodes.is_empty() {
            crate::redacted_url(self.url.expose())
        } else {
            let nodes: Vec<String> = self
                .cluster_nodes
                .iter()
                .map(|n| crate::redacted_url(n.expose()))
                .collect();
            format!("the Redis Cluster at {}", nodes.join(", "))
        }
    }
}

/// Database queue settings. The jobs live in `[database]`, in the tables the migrations
/// create; there is nothing to connect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct DatabaseQueueConfig {
    /// Seconds between sweeps that delete finished jobs past `jobs.retention_secs`.
    /// Default 60.
    pub prune_interval_secs: u64,
    /// Finished jobs deleted per statement while sweeping, so no sweep holds long locks.
    /// Default 1000.
    pub prune_batch: u32,
}

impl Default for DatabaseQueueConfig {
    fn default() -> Self {
        DatabaseQueueConfig {
            prune_interval_secs: 60,
            prune_batch: 1000,
        }
    }
}

/// Job semantics shared by every queue backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct JobsConfig {
    /// Attempts before a job is dead-lettered, when the job does not say. Default 5.
    pub default_max_attempts: u32,
    /// Lease length in seconds; the worker heartbeats well inside it. Default 30.
    pub lease_secs: u64,
    /// First retry delay in milliseconds; doubles each attempt. Default 1000.
    pub backoff_base_ms: u64,
    /// Longest retry delay in seconds. Default 300.
    pub backoff_max_secs: u64,
    /// Seconds finished jobs' records are kept. Default 7 days.
    pub retention_secs: u64,
}

impl Default for JobsConfig {
    fn default() -> Self {
        JobsConfig {
            default_max_attempts: 5,
            lease_secs: 30,
            backoff_base_ms: 1_000,
            backoff_max_secs: 300,
            retention_secs: 7 * 24 * 3600,
        }
    }
}

/// Where background jobs run.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum WorkersMode {
    /// Inside `zeroscale serve` (the default).
    #[default]
    InProcess,
    /// In separate `zeroscale worker` processes.
    Separate,
}

/// The worker runtime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct WorkersConfig {
    /// `in_process` or `separate`.
    pub mode: WorkersMode,
    /// Jobs run at once per process. Default 4.
    pub concurrency: usize,
    /// Queues to take jobs from. Default `["default"]`.
    pub queues: Vec<String>,
    /// Seconds a handler may run before it is failed. Default 300.
    pub job_timeout_secs: u64,
    /// Seconds to wait for in-flight jobs on shutdown. Default 30.
    pub shutdown_grace_secs: u64,
    /// Jobs a worker reserves beyond its free slots and holds for the next slot that
    /// frees: short jobs then cost no round trip each. Held jobs not started within
    /// `prefetch_hold_ms` go back to the queue, their attempt not spent. 0 turns it off
    /// (long jobs spread over many worker processes). Default 8.
    pub prefetch: usize,
    /// Milliseconds a held job may wait for a slot (at most a third of the lease).
    /// Default 500.
    pub prefetch_hold_ms: u64,
    /// Seconds after which an image generation still pending (its job lost, timed out on
    /// its last attempt, or never run) is failed and its credits refunded. Every
    /// `zeroscale serve` checks. Default 3600.
    pub generation_timeout_secs: u64,
}

impl Default for WorkersConfig {
    fn default() -> Self {
        WorkersConfig {
            mode: WorkersMode::InProcess,
            concurrency: 4,
            queues: vec!["default".to_owned()],
            job_timeout_secs: 300,
            shutdown_grace_secs: 30,
            prefetch: 8,
            prefetch_hold_ms: 500,
            generation_timeout_secs: 3600,
        }
    }
}
