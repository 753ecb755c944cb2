//! Stage 4's PgBouncer (Debian's 1.18) in front of Debian's PostgreSQL, twice: in session
//! mode (what zeroscale supports) and in transaction mode (which the tests prove it
//! refuses with a clear error; docs/database.md says why). Each pools at most 20 server
//! connections and accepts 1,000 clients, runs as the `postgres` user (PgBouncer refuses
//! root) from its own folder, with trust authentication on loopback like the server.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::postgres::{DEBIAN_PG, as_postgres, pg_paths, postgres_home};
use super::{READY_TIMEOUT, running_port};
use crate::util::{apt_install, free_port, is_root, port_open, run, tail, wait_until, which};

/// The pool modes started, with the env var naming each one's URL.
const MODES: [(&str, &str); 2] = [
    ("session", "ZEROSCALE_TEST_PGBOUNCER_URL"),
    ("transaction", "ZEROSCALE_TEST_PGBOUNCER_TXN_URL"),
];

/// Server connections per database and user: the pool the tests squeeze 200 clients
/// through.
pub(crate) const POOL_SIZE: u32 = 20;

fn folder(services: &Path, mode: &str) -> std::path::PathBuf {
    postgres_home(services).join(format!("pgbouncer-{mode}"))
}

pub(super) fn pgbouncer_up(services: &Path) -> Result<Vec<(String, String)>> {
    let pg_port: u16 = std::fs::read_to_string(pg_paths(services, DEBIAN_PG).port)
        .context("PostgreSQL's port file (PgBouncer starts after it)")?
        .trim()
        .parse()
        .context("PostgreSQL's port file")?;
    let binary = match which("pgbouncer") {
        Some(binary) => binary,
        None => {
            apt_install(&["pgbouncer"])?;
            which("pgbouncer").context("pgbouncer was installed but is still not found")?
        }
    };
    let mut vars = Vec::new();
    for (mode, env) in MODES {
        let dir = folder(services, mode);
        let port = match running_port(&dir.join("pgbouncer.pid"), &dir.join("port")) {
            Some(port) => {
                eprintln!("PgBouncer ({mode} mode) already running on port {port}");
                port
            }
            None => start(&binary, &dir, mode, pg_port)?,
        };
        vars.push((
            env.to_owned(),
            format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        ));
    }
    Ok(vars)
}

fn start(binary: &Path, dir: &Path, mode: &str, pg_port: u16) -> Result<u16> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let port = free_port()?;
    // Every database name goes to the same server; sqlx's `extra_float_digits` and
    // `options` startup parameters are not PgBouncer's to track, so it ignores them.
    let ini = format!(
        "[databases]\n* = host=127.0.0.1 port={pg_port}\n\n[pgbouncer]\n\
         listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
         auth_type = trust\nauth_file = {dir}/userlist.txt\npool_mode = {mode}\n\
         default_pool_size = {POOL_SIZE}\nmax_client_conn = 1000\n\
         ignore_startup_parameters = extra_float_digits,options\n\
         logfile = {dir}/pgbouncer.log\npidfile = {dir}/pgbouncer.pid\n",
        dir = dir.display()
    );
    std::fs::write(dir.join("pgbouncer.ini"), ini)?;
    std::fs::write(dir.join("userlist.txt"), "\"postgres\" \"\"\n")?;
    if is_root() {
        run(Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir))?;
    }
    run(as_postgres(binary).arg("-d").arg(dir.join("pgbouncer.ini")))
        .with_context(|| format!("PgBouncer ({mode} mode) did not start"))?;
    if !wait_until(READY_TIMEOUT, || port_open(port)) {
        bail!(
            "PgBouncer ({mode} mode) does not listen on port {port}\n{}",
            tail(&dir.join("pgbouncer.log"), 30)
        );
    }
    std::fs::write(dir.join("port"), port.to_string())?;
    eprintln!("PgBouncer ({mode} mode, pool of {POOL_SIZE}) running on port {port}");
    Ok(port)
}

/// Stops both.
pub(super) fn pgbouncer_down(services: &Path) {
    for (mode, _) in MODES {
        super::stop_by_pid_file(
            &format!("PgBouncer ({mode} mode)"),
            &folder(services, mode).join("pgbouncer.pid"),
        );
    }
}
