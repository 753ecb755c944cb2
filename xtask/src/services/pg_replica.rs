//! Stage 4's streaming replica of Debian's PostgreSQL: `pg_basebackup -R` from the primary
//! into its own folder, started as a hot standby on a free port. It is made afresh each
//! time it starts (the primary's data may have been made afresh too, and a standby of
//! another cluster would not start). The tests stop and start it, and pause its replay
//! (`pg_wal_replay_pause()`), to prove what reads do when a replica is down or behind.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use super::postgres::{DEBIAN_PG, as_postgres, debian_pg_bin, pg_paths, postgres_home};
use super::{READY_TIMEOUT, running_port};
use crate::util::{free_port, is_root, port_open, run, tail, wait_until};

struct ReplicaPaths {
    dir: PathBuf,
    data: PathBuf,
    log: PathBuf,
    port: PathBuf,
}

fn paths(services: &Path) -> ReplicaPaths {
    let dir = postgres_home(services).join("postgres-replica");
    ReplicaPaths {
        data: dir.join("data"),
        log: dir.join("postgres.log"),
        port: dir.join("port"),
        dir,
    }
}

pub(super) fn replica_up(services: &Path) -> Result<Vec<(String, String)>> {
    let bin = debian_pg_bin().context("Debian's PostgreSQL binaries are missing")?;
    let primary_port: u16 = std::fs::read_to_string(pg_paths(services, DEBIAN_PG).port)
        .context("PostgreSQL's port file (the replica starts after it)")?
        .trim()
        .parse()
        .context("PostgreSQL's port file")?;
    let r = paths(services);
    let port = match running_port(&r.data.join("postmaster.pid"), &r.port) {
        Some(port) => {
            eprintln!("PostgreSQL replica already running on port {port}");
            port
        }
        None => start(&bin, &r, primary_port)?,
    };
    Ok(vec![
        (
            "ZEROSCALE_TEST_POSTGRES_REPLICA_URL".to_owned(),
            format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        ),
        (
            "ZEROSCALE_TEST_POSTGRES_REPLICA_CTL".to_owned(),
            ctl_script(&bin, &r)?.display().to_string(),
        ),
    ])
}

fn start(bin: &Path, r: &ReplicaPaths, primary_port: u16) -> Result<u16> {
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
    .context("pg_basebackup from the primary failed")?;
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
            "the PostgreSQL replica does not accept connections on port {port}\n{}",
            tail(&r.log, 30)
        );
    }
    std::fs::write(&r.port, port.to_string())?;
    eprintln!("PostgreSQL replica (streaming from port {primary_port}) running on port {port}");
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
    super::stop_by_pid_file(
        "PostgreSQL replica",
        &paths(services).data.join("postmaster.pid"),
    );
}
