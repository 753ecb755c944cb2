//! Stage 4's failover: 2,000 jobs through 2 `zeroscale worker` processes on a Redis
//! Cluster (3 masters, 3 replicas, `cluster-node-timeout 1000`), and the master that
//! holds the queue's hash slot SIGKILLed mid-run. The cluster promotes its replica; the
//! workers and the producer go on by themselves. Enqueues wait for one replica
//! (`queue.wait_for_replicas = 1`), so no acknowledged job is lost, and a job runs twice
//! only if it was running when the master died.

#![cfg(feature = "redis")]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use zeroscale_core::Queue;
use zeroscale_core::config::{JobsConfig, QueueConfig, RedisQueueConfig};
use zeroscale_core::queue::{JobId, JobState, NewJob};
use zeroscale_core::testing::{require_service, service_var};

const JOBS: usize = 2_000;
/// Jobs enqueued before the workers start; the rest arrive while they run, across the
/// kill.
const UPFRONT: usize = 1_000;

/// One command's reply from the node at `url`, on a connection of its own.
async fn node_command<T: redis::FromRedisValue>(url: &str, args: &[&str]) -> Option<T> {
    let client = redis::Client::open(url).ok()?;
    let mut conn = tokio::time::timeout(
        Duration::from_secs(2),
        client.get_multiplexed_async_connection(),
    )
    .await
    .ok()?
    .ok()?;
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    tokio::time::timeout(Duration::from_secs(2), cmd.query_async(&mut conn))
        .await
        .ok()?
        .ok()
}

/// The port of the master serving `key`'s hash slot, as the first node that answers
/// sees it (`CLUSTER KEYSLOT`, `CLUSTER NODES`).
async fn master_port(nodes: &[String], key: &str) -> Option<u16> {
    for url in nodes {
        let Some(slot) = node_command::<i64>(url, &["CLUSTER", "KEYSLOT", key]).await else {
            continue;
        };
        let Some(table) = node_command::<String>(url, &["CLUSTER", "NODES"]).await else {
            continue;
        };
        for line in table.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 8 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let serves = fields[8..].iter().any(|range| {
                let mut ends = range.splitn(2, '-').map(|n| n.parse::<i64>().ok());
                match (ends.next().flatten(), ends.next()) {
                    (Some(one), None) => one == slot,
                    (Some(low), Some(Some(high))) => (low..=high).contains(&slot),
                    _ => false, // a slot being migrated: `[slot->-node]`
                }
            });
            if serves {
                let address = fields[1].split('@').next()?;
                return address.rsplit_once(':')?.1.parse().ok();
            }
        }
    }
    None
}

/// Whether every node answers and says `cluster_state:ok`.
async fn cluster_ok(nodes: &[String]) -> bool {
    for url in nodes {
        match node_command::<String>(url, &["CLUSTER", "INFO"]).await {
            Some(info) if info.contains("cluster_state:ok") => {}
            _ => return false,
        }
    }
    true
}

/// The cluster node whose `port` file says `port`: its folder.
fn node_dir(cluster_dir: &Path, port: u16) -> PathBuf {
    std::fs::read_dir(cluster_dir)
        .expect("the Redis Cluster's folder")
        .filter_map(|entry| Some(entry.ok()?.path()))
        .find(|dir| {
            std::fs::read_to_string(dir.join("port")).is_ok_and(|p| p.trim() == port.to_string())
        })
        .unwrap_or_else(|| panic!("no node of {} has port {port}", cluster_dir.display()))
}

/// Starts the killed node again from its own `redis.conf` when dropped (whether the test
/// passed or not), so the next tests find 6 nodes; it rejoins as a replica.
struct RestartNode {
    conf: PathBuf,
    port: u16,
    killed: bool,
}

impl RestartNode {
    fn restart(&mut self) {
        if !self.killed {
            return;
        }
        self.killed = false;
        let server = common::redis_server().expect("redis-server on PATH");
        let status = Command::new(server)
            .arg(&self.conf)
            .stdout(Stdio::null())
            .status()
            .expect("start redis-server");
        assert!(
            status.success(),
            "redis-server {} failed",
            self.conf.display()
        );
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the restarted node does not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for RestartNode {
    fn drop(&mut self) {
        self.restart();
    }
}

/// A `zeroscale worker` with the test's config file; its log goes to `worker-<n>.log`.
fn worker(dir: &Path, config: &Path, n: usize) -> Child {
    let log = std::fs::File::create(dir.join(format!("worker-{n}.log"))).unwrap();
    common::zeroscale(dir)
        .arg("--config")
        .arg(config)
        .arg("worker")
        .env("ZEROSCALE_WORKERS__CONCURRENCY", "8")
        .env("ZEROSCALE_WORKERS__MODE", "separate")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("start zeroscale worker")
}

/// Enqueues job `i` (idempotency key `job-<i>`), trying again while the cluster fails
/// over: a try that failed after reaching the master gets the same job back.
async fn enqueue(queue: &dyn Queue, i: usize) -> JobId {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut job = NewJob::new(
            "default",
            "zeroscale.sleep",
            json!({"ms": 20 + (i * 7) % 30}),
        );
        job.options.idempotency_key = Some(format!("job-{i}"));
        match queue.enqueue(job).await {
            Ok(id) => return id,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "job {i} could not be enqueued for 60 s: {}",
                    e.chain()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn finished(conn: &mut (impl redis::aio::ConnectionLike + Send), prefix: &str) -> usize {
    redis::cmd("ZCARD")
        .arg(format!("{{{prefix}}}:finished"))
        .query_async(conn)
        .await
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn master_killed_mid_run_loses_no_job() {
    let Some(nodes) = require_service("ZEROSCALE_TEST_REDIS_CLUSTER_NODES", "Redis Cluster") else {
        return;
    };
    let nodes: Vec<String> = nodes.split(',').map(str::to_owned).collect();
    let cluster_dir = PathBuf::from(
        service_var("ZEROSCALE_TEST_REDIS_CLUSTER_DIR")
            .expect("ZEROSCALE_TEST_REDIS_CLUSTER_DIR is set with the cluster's nodes"),
    );
    let dir = common::TempDir::new("cluster-failover");
    let prefix = format!("failover-{}", std::process::id());
    let jobs = JobsConfig {
        // Longer than a failover takes: a job that finished while the master was down
        // is acked once the new master is up, not run again.
        lease_secs: 10,
        ..Default::default()
    };
    let config = RedisQueueConfig {
        cluster_nodes: nodes.iter().map(|n| n.clone().into()).collect(),
        key_prefix: prefix.clone(),
        wait_for_replicas: 1,
        ..Default::default()
    };
    let node_list: Vec<String> = nodes.iter().map(|n| format!("{n:?}")).collect();
    let config_file = dir.0.join("zeroscale.toml");
    std::fs::write(
        &config_file,
        format!(
            "[queue]\nkind = \"redis\"\nkey_prefix = \"{prefix}\"\ncluster_nodes = [{}]\n\
             wait_for_replicas = 1\n\n[jobs]\nlease_secs = {}\n",
            node_list.join(", "),
            jobs.lease_secs
        ),
    )
    .unwrap();
    let queue: Arc<dyn Queue> =
        zeroscale_queue::connect(&QueueConfig::Redis(config.clone()), &jobs)
            .await
            .unwrap();
    let mut conn = zeroscale_queue::testing::redis_connection(&config)
        .await
        .unwrap();

    let mut ids: Vec<JobId> = Vec::with_capacity(JOBS);
    for chunk in (0..UPFRONT).collect::<Vec<_>>().chunks(100) {
        let batch = chunk.iter().map(|i| enqueue(queue.as_ref(), *i));
        ids.extend(futures::future::join_all(batch).await);
    }

    let port = master_port(&nodes, &format!("{{{prefix}}}:seq"))
        .await
        .expect("the master of the queue's slot");
    let node = node_dir(&cluster_dir, port);
    let pid: i32 = std::fs::read_to_string(node.join("redis.pid"))
        .expect("the master's pid file")
        .trim()
        .parse()
        .unwrap();
    let mut restart = RestartNode {
        conf: node.join("redis.conf"),
        port,
        killed: false,
    };

    let mut workers: Vec<Child> = (0..2).map(|n| worker(&dir.0, &config_file, n)).collect();
    let mut producer = Some({
        let queue = queue.clone();
        tokio::spawn(async move {
            let mut ids = Vec::with_capacity(JOBS - UPFRONT);
            for chunk in (UPFRONT..JOBS).collect::<Vec<_>>().chunks(25) {
                let batch = chunk.iter().map(|i| enqueue(queue.as_ref(), *i));
                ids.extend(futures::future::join_all(batch).await);
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
            ids
        })
    });

    // Kill the master once the run is well under way.
    let start = Instant::now();
    while finished(&mut conn, &prefix).await < 400 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the workers finished too few jobs before the kill:\n{}",
            std::fs::read_to_string(dir.0.join("worker-0.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let in_flight: usize = redis::cmd("ZCARD")
        .arg(format!("{{{prefix}}}:leases"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let done_at_kill = finished(&mut conn, &prefix).await;
    let killed = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success(), "SIGKILL the master {pid}");
    restart.killed = true;
    let killed_at = Instant::now();
    eprintln!(
        "killed the master on port {port} with {done_at_kill} jobs done, {in_flight} in flight"
    );

    // The workers go on by themselves once the replica is promoted. The new master has
    // no replica of its own until the old one is back, and enqueues wait for one: start
    // the killed node again once the slot has moved, as an operator (or an orchestrator)
    // would, and it rejoins as the new master's replica.
    let mut resumed = None;
    let mut moved_after = None;
    loop {
        if moved_after.is_none()
            && master_port(&nodes, &format!("{{{prefix}}}:seq"))
                .await
                .is_some_and(|p| p != port)
        {
            moved_after = Some(killed_at.elapsed());
            restart.restart();
        }
        let done = finished(&mut conn, &prefix).await;
        if resumed.is_none() && done > done_at_kill + 20 {
            resumed = Some(killed_at.elapsed());
        }
        if producer.as_ref().is_some_and(|p| p.is_finished()) {
            ids.extend(producer.take().unwrap().await.unwrap());
        }
        // Done when every job is: the queue is empty and nothing is running.
        if producer.is_none()
            && let Ok(stats) = queue.stats("default").await
            && stats.queued + stats.scheduled + stats.running + stats.failed == 0
        {
            break;
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(120),
            "{done} of {JOBS} jobs finished 120 s after the kill:\n{}",
            std::fs::read_to_string(dir.0.join("worker-0.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // An enqueue that failed (no replica confirmed it in time) may still have made its
    // job, which may have run and finished before the retry: the retry then makes a
    // second job (a key only joins a job that is not finished). Those ran too.
    let made: u64 = redis::cmd("GET")
        .arg(format!("{{{prefix}}}:seq"))
        .query_async(&mut conn)
        .await
        .unwrap();
    for w in &mut workers {
        let _ = w.kill();
        let _ = w.wait();
    }

    let mut not_done = Vec::new();
    let mut reruns = 0;
    for id in &ids {
        let status = queue.status(*id).await.unwrap();
        if status.state != JobState::Succeeded {
            not_done.push((id, status.state));
        }
        if status.attempts > 1 {
            reruns += 1;
        }
    }
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), JOBS, "every idempotency key is one job");
    assert!(
        not_done.is_empty(),
        "{} acknowledged jobs did not succeed: {:?}",
        not_done.len(),
        &not_done[..not_done.len().min(5)]
    );
    assert!(
        reruns <= in_flight,
        "{reruns} jobs ran more than once, but only {in_flight} were running at the kill"
    );
    eprintln!(
        "{JOBS} jobs succeeded; master killed with {in_flight} in flight; the replica took \
         the slot {:?} after the kill, work resumed after {:?}; {reruns} jobs ran twice; \
         {} enqueues that failed had made their job anyway",
        moved_after.unwrap_or_default(),
        resumed.unwrap_or_default(),
        made - JOBS as u64
    );

    // Put the cluster back for the next tests: the old master rejoins as a replica.
    restart.restart();
    let start = Instant::now();
    while !cluster_ok(&nodes).await {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the cluster is not ok 30 s after the killed node restarted"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
