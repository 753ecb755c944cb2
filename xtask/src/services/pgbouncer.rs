//! Stage 4's PgBouncer (Debian's 1.18) in front of Debian's PostgreSQL, twice: in session
//! mode (what zeroscale supports) and in transaction mode (which the tests prove it
//! refuses with a clear error; docs/database.md says why); and in session mode in front of
//! the pgvector server, which the e2e suite's stage 4 goes through. Each pools at most 20 server
//! connections and accepts 1,000 clients, runs as the `postgres` user (PgBouncer refuses
//! root) from its own folder, with trust authentication on loopback like the server.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::postgres::{DEBIAN_PG, PGVECTOR_PG, PgService, as_postgres, pg_paths, postgres_home};
use super::{READY_TIMEOUT, running_port};
use crate::util::{apt_install, free_port, is_root, port_open, run, tail, wait_until, which};

/// One PgBouncer: in front of which server, its pool mode, the env var naming its URL,
/// and its folder's name.
struct Bouncer {
    server: PgService,
    mode: &'static str,
    env: &'static str,
    folder: &'static str,
}

const BOUNCERS: [Bouncer; 3] = [
    Bouncer {
        server: DEBIAN_PG,
        mode: "session",
        env: "ZEROSCALE_TEST_PGBOUNCER_URL",
        folder: "pgbouncer-session",
    },
    Bouncer {
        server: DEBIAN_PG,
        mode: "transaction",
        env: "ZEROSCALE_TEST_PGBOUNCER_TXN_URL",
        folder: "pgbouncer-transaction",
    },
    Bouncer {
        server: PGVECTOR_PG,
        mode: "session",
        env: "ZEROSCALE_TEST_PGVECTOR_PGBOUNCER_URL",
        folder: "pgbouncer-pgvector-session",
    },
];

/// Server connections per database and user: the pool the tests squeeze 200 clients
/// through.
pub(crate) const POOL_SIZE: u32 = 20;

fn folder(services: &Path, bouncer: &Bouncer) -> std::path::PathBuf {
    postgres_home(services).join(bouncer.folder)
}

pub(super) fn pgbouncer_up(services: &Path) -> Result<Vec<(String, String)>> {
    let binary = match which("pgbouncer") {
        Some(binary) => binary,
        None => {
            apt_install(&["pgbouncer"])?;
            which("pgbouncer").context("pgbouncer was installed but is still not found")?
        }
    };
    let mut vars = Vec::new();
    for bouncer in &BOUNCERS {
        let label = bouncer.server.label;
        let pg_port: u16 = std::fs::read_to_string(pg_paths(services, bouncer.server).port)
            .with_context(|| format!("{label}'s port file (PgBouncer starts after it)"))?
            .trim()
            .parse()
            .with_context(|| format!("{label}'s port file"))?;
        let dir = folder(services, bouncer);
        let mode = bouncer.mode;
        let port = match running_port(&dir.join("pgbouncer.pid"), &dir.join("port")) {
            Some(port) => {
                eprintln!("PgBouncer ({mode} mode, {label}) already running on port {port}");
                port
            }
            None => {
                eprintln!("starting PgBouncer ({mode} mode) in front of {label}");
                start(&binary, &dir, mode, pg_port)?
            }
        };
        vars.push((
            bouncer.env.to_owned(),
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

/// Stops them all.
pub(super) fn pgbouncer_down(services: &Path) {
    for bouncer in &BOUNCERS {
        super::stop_by_pid_file(
            &format!(
                "PgBouncer ({} mode, {})",
                bouncer.mode, bouncer.server.label
            ),
            &folder(services, bouncer).join("pgbouncer.pid"),
        );
    }
}
