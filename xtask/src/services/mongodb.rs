//! A MongoDB wire-protocol server for the tests: nx-27017 (a Python server on SQLite,
//! from PyPI, pinned with its dependencies, in the services' virtualenv) on a free port,
//! its data in one SQLite file per database under `target/zeroscale-services/mongodb/`.
//! It is not mongod: the code is written to MongoDB's documented behaviour, and what
//! differs is listed in docs/database.md. Smoke-tested right after it starts with the
//! official Python driver (installed with it): insert, find, update with `$inc`, delete.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::{READY_TIMEOUT, running_port, spawn_engine};
use crate::util::{free_port, port_open, tail, wait_until};

/// The server and the driver it brings, pinned.
const PACKAGES: &[&str] = &["nx-27017==0.8.1", "neosqlite==1.17.2", "pymongo==4.20.0"];

/// The database the tests use (each test names its own collections or databases too).
const DATABASE: &str = "zeroscale_test";

pub(super) fn mongodb_up(services: &Path) -> Result<Vec<(String, String)>> {
    let dir = services.join("mongodb");
    let pid_file = dir.join("nx-27017.pid");
    let port_file = dir.join("port");
    let log = dir.join("nx-27017.log");
    let venv = services.join("venv");
    if let Some(port) = running_port(&pid_file, &port_file) {
        eprintln!("MongoDB (nx-27017) already running on port {port}");
        smoke_test(&venv, port, &log)?;
        return Ok(vars(port, &venv));
    }
    let bin = super::pip_tool(&venv, &PACKAGES.join(" "), "nx-27017")?;
    let data = dir.join("data");
    std::fs::create_dir_all(&data).with_context(|| format!("cannot create {}", data.display()))?;
    let port = free_port()?;
    let mut cmd = Command::new(&bin);
    cmd.args(["--host", "127.0.0.1", "-p", &port.to_string(), "--data-dir"])
        .arg(&data)
        // Its own PID and log files default to fixed paths under /tmp, where a second
        // checkout's server would find the first's and refuse to start.
        .arg("--pid-file")
        .arg(dir.join("nx-27017.server.pid"))
        .arg("--log-file")
        .arg(dir.join("nx-27017.server.log"));
    spawn_engine(cmd, &log, &pid_file)?;
    if !wait_until(READY_TIMEOUT, || port_open(port)) {
        bail!(
            "MongoDB (nx-27017) does not answer on port {port}\n{}",
            tail(&log, 30)
        );
    }
    std::fs::write(&port_file, port.to_string())?;
    eprintln!("MongoDB (nx-27017) running on port {port}");
    smoke_test(&venv, port, &log)?;
    Ok(vars(port, &venv))
}

/// What the database tests do at the least, through the official Python driver.
fn smoke_test(venv: &Path, port: u16, log: &Path) -> Result<()> {
    let log_start = std::fs::metadata(log).map_or(0, |m| m.len());
    let script = format!(
        r#"
import pymongo
client = pymongo.MongoClient("mongodb://127.0.0.1:{port}/", serverSelectionTimeoutMS=10000)
client.admin.command("ping")
docs = client["{DATABASE}"]["zeroscale_smoke_test"]
docs.delete_many({{}})
docs.insert_one({{"_id": "a", "credits": 5}})
docs.update_one({{"_id": "a", "credits": {{"$gte": 2}}}}, {{"$inc": {{"credits": -2}}}})
got = docs.find_one({{"_id": "a"}})
assert got["credits"] == 3, got
docs.delete_one({{"_id": "a"}})
assert docs.count_documents({{}}) == 0
"#
    );
    let out = Command::new(venv.join("bin").join("python"))
        .args(["-c", &script])
        .output()
        .context("cannot run the virtualenv's python")?;
    if out.status.success() {
        eprintln!("MongoDB (nx-27017): smoke test passed");
        return Ok(());
    }
    let server_log = super::crash::read_from(log, log_start);
    bail!(
        "MongoDB (nx-27017) failed its smoke test: {}\n{}",
        String::from_utf8_lossy(&out.stderr).trim(),
        super::crash::explain("MongoDB (nx-27017)", &server_log)
    )
}

/// The shared server's URL, and the server program for tests that run a private one
/// (to stop and restart it).
fn vars(port: u16, venv: &Path) -> Vec<(String, String)> {
    vec![
        (
            "ZEROSCALE_TEST_MONGODB_URL".to_owned(),
            format!("mongodb://127.0.0.1:{port}/{DATABASE}"),
        ),
        (
            "ZEROSCALE_TEST_MONGODB_BIN".to_owned(),
            venv.join("bin").join("nx-27017").display().to_string(),
        ),
    ]
}
