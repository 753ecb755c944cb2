//! Stage 4's Redis Cluster for the tests: 3 masters and 3 replicas of Debian's
//! `redis-server` (`--cluster-enabled yes`) on free loopback ports, joined with
//! `redis-cli --cluster create`. Each node runs from a `redis.conf` of its own in
//! `target/zeroscale-services/redis-cluster/node-<i>/`, so the failover test can kill a
//! master and start it again (it comes back as a replica). The node timeout is 1 s, so a
//! dead master's replica takes over within a few seconds.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::READY_TIMEOUT;
use super::redis::{redis_ping, resp};
use crate::util::{apt_install, free_port, pid_alive, read_pid, run, tail, wait_until, which};

const NODES: usize = 6;

/// The folder of the cluster's nodes.
pub(super) fn cluster_dir(services: &Path) -> PathBuf {
    services.join("redis-cluster")
}

fn node_dir(services: &Path, i: usize) -> PathBuf {
    cluster_dir(services).join(format!("node-{i}"))
}

/// The ports of a running cluster whose every node is alive and says `cluster_state:ok`.
fn running(services: &Path) -> Option<Vec<u16>> {
    let mut ports = Vec::new();
    for i in 0..NODES {
        let dir = node_dir(services, i);
        let pid = read_pid(&dir.join("redis.pid"))?;
        let port: u16 = std::fs::read_to_string(dir.join("port"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        if !pid_alive(pid) || !redis_ping(port) {
            return None;
        }
        ports.push(port);
    }
    ports.iter().all(|p| cluster_ok(*p)).then_some(ports)
}

/// One command's reply as text (enough for `CLUSTER INFO`).
fn ask(port: u16, args: &[&str]) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream.write_all(&resp(args)).ok()?;
    let mut buf = vec![0u8; 8192];
    let n = stream.read(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

fn cluster_ok(port: u16) -> bool {
    ask(port, &["CLUSTER", "INFO"]).is_some_and(|info| info.contains("cluster_state:ok"))
}

pub(super) fn redis_cluster_up(services: &Path) -> Result<Vec<(String, String)>> {
    if let Some(ports) = running(services) {
        eprintln!("Redis Cluster already running on ports {ports:?}");
        return Ok(vars(services, &ports));
    }
    // Whatever is left of an earlier cluster (a node died, a half-made cluster) goes: a
    // node keeps its cluster membership in nodes.conf and would refuse to join anew.
    redis_cluster_down(services);
    let _ = std::fs::remove_dir_all(cluster_dir(services));
    let server = match which("redis-server") {
        Some(server) => server,
        None => {
            apt_install(&["redis-server"])?;
            which("redis-server").context("redis-server was installed but is still not found")?
        }
    };
    let cli = which("redis-cli").context(
        "redis-cli is missing (Debian's redis-tools, installed with redis-server): it forms the cluster",
    )?;
    let mut ports = Vec::new();
    for i in 0..NODES {
        let dir = node_dir(services, i);
        std::fs::create_dir_all(&dir)?;
        let port = free_port()?;
        let conf = format!(
            "port {port}\nbind 127.0.0.1\ndaemonize yes\ncluster-enabled yes\n\
             cluster-config-file nodes.conf\ncluster-node-timeout 1000\n\
             appendonly yes\nappendfsync everysec\nsave \"\"\ndir {dir}\n\
             pidfile {dir}/redis.pid\nlogfile {dir}/redis.log\n",
            dir = dir.display()
        );
        std::fs::write(dir.join("redis.conf"), conf)?;
        run(Command::new(&server).arg(dir.join("redis.conf")))?;
        if !wait_until(READY_TIMEOUT, || redis_ping(port)) {
            bail!(
                "Redis Cluster node {i} does not answer PING on port {port}\n{}",
                tail(&dir.join("redis.log"), 30)
            );
        }
        std::fs::write(dir.join("port"), port.to_string())?;
        ports.push(port);
    }
    let addresses: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    run(Command::new(cli)
        .args(["--cluster", "create"])
        .args(&addresses)
        .args(["--cluster-replicas", "1", "--cluster-yes"]))
    .context("redis-cli --cluster create failed")?;
    if !wait_until(READY_TIMEOUT, || ports.iter().all(|p| cluster_ok(*p))) {
        bail!(
            "the Redis Cluster on ports {ports:?} did not reach cluster_state:ok\n{}",
            tail(&node_dir(services, 0).join("redis.log"), 30)
        );
    }
    eprintln!("Redis Cluster running on ports {ports:?} (3 masters, 3 replicas)");
    Ok(vars(services, &ports))
}

fn vars(services: &Path, ports: &[u16]) -> Vec<(String, String)> {
    let nodes: Vec<String> = ports
        .iter()
        .map(|p| format!("redis://127.0.0.1:{p}"))
        .collect();
    vec![
        (
            "ZEROSCALE_TEST_REDIS_CLUSTER_NODES".to_owned(),
            nodes.join(","),
        ),
        (
            "ZEROSCALE_TEST_REDIS_CLUSTER_DIR".to_owned(),
            cluster_dir(services).display().to_string(),
        ),
    ]
}

/// Stops every node by its pid file.
pub(super) fn redis_cluster_down(services: &Path) {
    for i in 0..NODES {
        super::stop_by_pid_file(
            &format!("Redis Cluster node {i}"),
            &node_dir(services, i).join("redis.pid"),
        );
    }
}
