//! `cargo xtask services up|down|status`: real engines on 127.0.0.1 for the tests.
//!
//! Each engine gets a folder under `target/zeroscale-services/` with its data, log, pid and
//! port; `up` installs what is missing (Debian packages, moto in a virtualenv, Azurite
//! and the OpenAI SDKs from npm and PyPI), starts
//! it on a free port, waits until it answers and writes every address to
//! `target/zeroscale-services/services.env`, which the tests read. `down` stops only what
//! `up` started, by pid file. `up` also installs the local embedding model (`models
//! fetch`) and writes its folder as `ZEROSCALE_TEST_MODEL_DIR`.
//!
//! Every engine is smoke-tested right after it starts with the operations the tests use;
//! an engine that dies there fails `up` with a message naming the engine, the signal and
//! the likely cause (see [`crash`]), instead of leaving the tests to fail on a closed socket.

mod azurite;
mod browser;
mod crash;
mod mongodb;
mod pg_replica;
mod pgbouncer;
mod postgres;
mod prometheus;
mod redis;
mod redis_cluster;
mod s3;
mod sdk_clients;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::util::{pid_alive, port_open, read_pid, services_dir, stop_pid};
#[cfg(test)]
pub(crate) use postgres::pgvector_binaries;
use postgres::{DEBIAN_PG, PGVECTOR_PG, pg_paths, postgres_down, postgres_up};
pub(crate) use s3::pip_tool;

const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The env file the tests read.
pub(crate) fn env_file() -> PathBuf {
    services_dir().join("services.env")
}

/// Starts every engine (reusing running ones) and writes the env file; returns its pairs.
/// `stage4` adds stage 4's engines (a Redis Cluster of 3 masters and 3 replicas, PgBouncer
/// in session and in transaction mode in front of PostgreSQL and in session mode in front
/// of the pgvector server, a streaming replica of each PostgreSQL); CI always starts them.
pub(crate) fn up(stage4: bool) -> Result<Vec<(String, String)>> {
    let dir = services_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut vars = Vec::new();
    vars.extend(postgres_up(&dir, DEBIAN_PG).context("PostgreSQL did not start")?);
    vars.extend(postgres_up(&dir, PGVECTOR_PG).context("PostgreSQL with pgvector did not start")?);
    vars.extend(redis::redis_up(&dir).context("Redis did not start")?);
    if stage4 {
        vars.extend(
            redis_cluster::redis_cluster_up(&dir).context("the Redis Cluster did not start")?,
        );
        vars.extend(pgbouncer::pgbouncer_up(&dir).context("PgBouncer did not start")?);
        vars.extend(pg_replica::replica_up(&dir).context("a PostgreSQL replica did not start")?);
    }
    vars.extend(s3::s3_up(&dir).context("the S3 server did not start")?);
    vars.extend(azurite::azurite_up(&dir).context("Azurite (Azure Blob Storage) did not start")?);
    vars.extend(mongodb::mongodb_up(&dir).context("MongoDB (nx-27017) did not start")?);
    vars.extend(browser::chromium().context("Chromium (for the browser tests) is missing")?);
    vars.extend(prometheus::prometheus().context("Prometheus (for the metrics tests) is missing")?);
    vars.extend(
        sdk_clients::sdk_clients(&dir)
            .context("the OpenAI client libraries (for the compatibility tests) are missing")?,
    );
    // Not an engine, but the model tests need it the same way: installed, or a failure.
    let model = crate::models::fetch().context("the local embedding model is not installed")?;
    vars.push((
        "ZEROSCALE_TEST_MODEL_DIR".to_owned(),
        model.display().to_string(),
    ));
    let text: String = vars.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    std::fs::write(env_file(), text)?;
    eprintln!("services are up; addresses in {}:", env_file().display());
    for (k, v) in &vars {
        eprintln!("  {k}={v}");
    }
    Ok(vars)
}

/// Stops every engine `up` started.
pub(crate) fn down() -> Result<()> {
    let dir = services_dir();
    let mut errors = Vec::new();
    for svc in [DEBIAN_PG, PGVECTOR_PG] {
        if let Err(e) = postgres_down(&dir, svc) {
            errors.push(format!("{}: {e:#}", svc.label));
        }
    }
    stop_by_pid_file("Redis", &dir.join("redis").join("redis.pid"));
    redis_cluster::redis_cluster_down(&dir);
    pgbouncer::pgbouncer_down(&dir);
    pg_replica::replica_down(&dir);
    stop_by_pid_file("S3 server", &dir.join("s3").join("moto.pid"));
    stop_by_pid_file("Azurite", &dir.join("azurite").join("azurite.pid"));
    stop_by_pid_file("MongoDB", &dir.join("mongodb").join("nx-27017.pid"));
    let _ = std::fs::remove_file(env_file());
    if errors.is_empty() {
        eprintln!("services are down");
        Ok(())
    } else {
        bail!("{}", errors.join("; "))
    }
}

/// Prints what is running.
pub(crate) fn status() -> Result<()> {
    let dir = services_dir();
    let pg = pg_paths(&dir, DEBIAN_PG);
    let pgv = pg_paths(&dir, PGVECTOR_PG);
    let redis = dir.join("redis");
    let s3 = dir.join("s3");
    let azurite = dir.join("azurite");
    let mongodb = dir.join("mongodb");
    let lines = [
        (
            "PostgreSQL",
            running_port(&pg.data.join("postmaster.pid"), &pg.port),
        ),
        (
            "pgvector",
            running_port(&pgv.data.join("postmaster.pid"), &pgv.port),
        ),
        (
            "Redis",
            running_port(&redis.join("redis.pid"), &redis.join("port")),
        ),
        (
            "S3 server",
            running_port(&s3.join("moto.pid"), &s3.join("port")),
        ),
        (
            "Azurite",
            running_port(&azurite.join("azurite.pid"), &azurite.join("port")),
        ),
        (
            "MongoDB",
            running_port(&mongodb.join("nx-27017.pid"), &mongodb.join("port")),
        ),
    ];
    for (name, port) in lines {
        match port {
            Some(port) => println!("{name:<11} running on 127.0.0.1:{port}"),
            None => println!("{name:<11} stopped"),
        }
    }
    if env_file().is_file() {
        println!("env file: {}", env_file().display());
    }
    Ok(())
}

/// Starts `cmd` in the background in its own process group (it outlives xtask and is not
/// hit by the terminal's Ctrl-C), its output in `log`, its pid in `pid_file`.
fn spawn_engine(mut cmd: std::process::Command, log: &Path, pid_file: &Path) -> Result<()> {
    let log_file = std::fs::File::create(log)?;
    cmd.stdin(std::process::Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file);
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    eprintln!("$ {cmd:?}");
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start {:?}", cmd.get_program()))?;
    std::fs::write(pid_file, child.id().to_string())?;
    Ok(())
}

/// The port of a service whose pid file names a live process that listens on its port.
fn running_port(pid_file: &Path, port_file: &Path) -> Option<u16> {
    let pid = read_pid(pid_file)?;
    let port: u16 = std::fs::read_to_string(port_file)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (pid_alive(pid) && port_open(port)).then_some(port)
}

fn stop_by_pid_file(name: &str, pid_file: &Path) {
    if let Some(pid) = read_pid(pid_file)
        && pid_alive(pid)
    {
        eprintln!("stopping {name} (pid {pid})");
        stop_pid(pid, Duration::from_secs(10));
    }
    let _ = std::fs::remove_file(pid_file);
}
