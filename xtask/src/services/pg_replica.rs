//! Stage 4's streaming replicas, one of Debian's PostgreSQL and one of the pgvector server
//! (the e2e suite's stage 4 reads from it): `pg_basebackup -R` from the primary into its
//! own folder, started as a hot standby on a free port, with the primary's binaries. It is made afresh each
//! time it starts (the primary's data may have been made afresh too, and a standby of
//! another cluster would not start). The tests stop and start it, and pause its replay
//! (`pg_wal_replay_pause()`), to prove what reads do when a replica is down or behind.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use super::postgres::{
    DEBIAN_PG, PGVECTOR_PG, PgService, as_postgres, debian_pg_bin, pg_paths, pgvector_install,
    postgres_home,
};
use super::{READY_TIMEOUT, running_port};
use crate::util::{free_port, is_root, port_open, run, tail, wait_until};

struct ReplicaPaths {
    dir: PathBuf,
    data: PathBuf,
    log: PathBuf,
    port: PathBuf,
}

/// A replica: of which primary, and the env vars naming its URL and its `ctl.sh`.
struct Replica {
    primary: PgService,
    url_env: &'static str,
    ctl_env: &'static str,
}

const REPLICAS: [Replica; 2] = [
    Replica {
        primary: DEBIAN_PG,
        url_env: "ZEROSCALE_TEST_POSTGRES_REPLICA_URL",
        ctl_env: "ZEROSCALE_TEST_POSTGRES_REPLICA_CTL",
    },
    Replica {
        primary: PGVECTOR_PG,
        url_env: "ZEROSCALE_TEST_PGVECTOR_REPLICA_URL",
        ctl_env: "ZEROSCALE_TEST_PGVECTOR_REPLICA_CTL",
    },
];

fn paths(services: &Path, primary: PgService) -> ReplicaPaths {
    let dir = postgres_home(services).join(format!("{}-replica", primary.name));
    ReplicaPaths {
        data: dir.join("data"),
        log: dir.join("postgres.log"),
        port: dir.join("port"),
        dir,
    }
}

/// Starts (or finds running) both replicas; their primaries run already.
pub(super) fn replica_up(services: &Path) -> Result<Vec<(String, String)>> {
    let mut vars = Vec::new();
    for replica in REPLICAS {
        let primary = replica.primary;
        let bin = if primary.name == DEBIAN_PG.name {
            debian_pg_bin().context("Debian's PostgreSQL binaries are missing")?
        } else {
            pgvector_install(services).join("bin")
        };
        let primary_port: u16 = std::fs::read_to_string(pg_paths(services, primary).port)
            .with_context(|| {
                format!(
                    "{}'s port file (the replica starts after it)",
                    primary.label
                )
            })?
            .trim()
            .parse()
            .with_context(|| format!("{}'s port file", primary.label))?;
        let r = paths(services, primary);
        let port = match running_port(&r.data.join("postmaster.pid"), &r.port) {
            Some(port) => {
                eprintln!("{} replica already running on port {port}", primary.label);
                port
            }
            None => start(&bin, &r, primary, primary_port)?,
        };
        vars.push((
            replica.url_env.to_owned(),
            format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        ));
        vars.push((
            replica.ctl_env.to_owned(),
            ctl_script(&bin, &r)?.display().to_string(),
        ));
    }
    Ok(vars)
}

fn start(bin: &Path, r: &ReplicaPaths, primary: PgService, primary_port: u16) -> Result<u16> {
    let _ = std::fs::remove_dir_all(&r.dir);
    std::fs::create_dir_all(&r.dir)?;
    if is_root() {
        run(Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&r.dir))?;
    }
    run(as_postgres(&bin.join("pg_basebackup"))
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &primary_port.to_string(),
            "-U",
            "postgres",
        ])
        .arg("-D")
        .arg(&r.data)
        .args(["-R", "-X", "stream", "--no-sync", "-c", "fast"])
        .stdout(Stdio::null()))
    .with_context(|| format!("pg_basebackup from {} failed", primary.label))?;
    let port = free_port()?;
    // In the config file rather than on pg_ctl's command line, so the tests' `ctl.sh
    // start` brings it back on the same port. A hot standby needs max_connections at
    // least the primary's (300).
    let settings = format!(
        "\n# cargo xtask services up --stage4\nlisten_addresses = '127.0.0.1'\nport = {port}\n\
         unix_socket_directories = '{}'\nfsync = off\nmax_connections = 300\n\
         hot_standby = on\nhot_standby_feedback = on\n",
        r.dir.display()
    );
    let auto_conf = r.data.join("postgresql.auto.conf");
    let mut conf = std::fs::read_to_string(&auto_conf).unwrap_or_default();
    conf.push_str(&settings);
    std::fs::write(&auto_conf, conf)?;
    let started = run(as_postgres(&bin.join("pg_ctl"))
        .arg("-D")
        .arg(&r.data)
        .arg("-l")
        .arg(&r.log)
        .args(["-w", "-t", "60", "start"])
        .stdout(Stdio::null()));
    if let Err(e) = started {
        bail!("{e:#}\n{}", tail(&r.log, 30));
    }
    if !wait_until(READY_TIMEOUT, || port_open(port)) {
        bail!(
            "the {} replica does not accept connections on port {port}\n{}",
            primary.label,
            tail(&r.log, 30)
        );
    }
    std::fs::write(&r.port, port.to_string())?;
    eprintln!(
        "{} replica (streaming from port {primary_port}) running on port {port}",
        primary.label
    );
    Ok(port)
}

/// Writes `ctl.sh start|stop` beside the replica's data, for the tests that stop it.
fn ctl_script(bin: &Path, r: &ReplicaPaths) -> Result<PathBuf> {
    let user = if is_root() {
        "runuser -u postgres -- "
    } else {
        ""
    };
    let script = r.dir.join("ctl.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n# Stops or starts the test PostgreSQL replica (written by `cargo xtask \
             services up --stage4`).\n\
             case \"$1\" in\n\
             stop) exec {user}'{pg_ctl}' -D '{data}' -m fast -w -t 60 stop >/dev/null ;;\n\
             start) exec {user}'{pg_ctl}' -D '{data}' -l '{log}' -w -t 60 start >/dev/null ;;\n\
             *) echo \"usage: $0 start|stop\" >&2; exit 2 ;;\n\
             esac\n",
            pg_ctl = bin.join("pg_ctl").display(),
            data = r.data.display(),
            log = r.log.display()
        ),
    )?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(script)
}

pub(super) fn replica_down(services: &Path) {
    for replica in REPLICAS {
        super::stop_by_pid_file(
            &format!("{} replica", replica.primary.label),
            &paths(services, replica.primary).data.join("postmaster.pid"),
        );
    }
}
