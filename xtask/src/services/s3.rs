//! An S3 API for the tests: moto's server (from PyPI, in a virtualenv) on a free port with
//! one bucket, smoke-tested with a put, a get and a delete.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Result, bail};

use super::{READY_TIMEOUT, running_port, spawn_engine};
use crate::util::{apt_install, free_port, http_request, run, tail, wait_until, which};

/// The bucket the harness creates on the S3 server.
const S3_BUCKET: &str = "zeroscale-test";

fn moto_server(services: &Path) -> Result<PathBuf> {
    if let Some(bin) = which("moto_server") {
        return Ok(bin);
    }
    pip_tool(&services.join("venv"), "moto[server]", "moto_server")
}

/// The command `bin` from the PyPI package `package` (several, separated by spaces, are
/// installed together), installed (once) into the virtualenv `venv`.
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
    run(Command::new(venv.join("bin").join("pip"))
        .args(["install", "-q"])
        .args(package.split_whitespace()))?;
    if !bin.is_file() {
        bail!("{package} was installed but {} is missing", bin.display());
    }
    Ok(bin)
}

pub(super) fn s3_up(services: &Path) -> Result<Vec<(String, String)>> {
    let dir = services.join("s3");
    let pid_file = dir.join("moto.pid");
    let port_file = dir.join("port");
    let log = dir.join("moto.log");
    if let Some(port) = running_port(&pid_file, &port_file) {
        eprintln!("S3 server already running on port {port}");
        create_bucket(port)?;
        smoke_test(port, &log)?;
        return Ok(s3_vars(port));
    }
    let bin = moto_server(services)?;
    std::fs::create_dir_all(&dir)?;
    let port = free_port()?;
    let mut cmd = Command::new(&bin);
    cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
    spawn_engine(cmd, &log, &pid_file)?;
    if !wait_until(READY_TIMEOUT, || {
        http(port, "GET", "/", b"").is_ok_and(|(s, _)| s == 200)
    }) {
        bail!(
            "the S3 server does not answer on port {port}\n{}",
            tail(&log, 30)
        );
    }
    std::fs::write(&port_file, port.to_string())?;
    create_bucket(port)?;
    eprintln!("S3 server running on port {port}, bucket `{S3_BUCKET}`");
    smoke_test(port, &log)?;
    Ok(s3_vars(port))
}

/// What the storage tests do at the least: put an object, read it back, delete it.
fn smoke_test(port: u16, log: &Path) -> Result<()> {
    let log_start = std::fs::metadata(log).map_or(0, |m| m.len());
    // A new key each time: an unsigned request may create an object, not replace one.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let key = format!("/{S3_BUCKET}/zeroscale-smoke-test-{nanos}");
    let body = b"zeroscale smoke test";
    let result = (|| -> Result<()> {
        let (status, _) = http(port, "PUT", &key, body)?;
        anyhow::ensure!(status == 200, "PUT answered HTTP {status}");
        let (status, got) = http(port, "GET", &key, b"")?;
        anyhow::ensure!(
            status == 200 && got == body,
            "GET answered HTTP {status} with other bytes"
        );
        let (status, _) = http(port, "DELETE", &key, b"")?;
        anyhow::ensure!(status == 204, "DELETE answered HTTP {status}");
        Ok(())
    })();
    match result {
        Ok(()) => {
            eprintln!("S3 server: smoke test passed");
            Ok(())
        }
        Err(e) => {
            let log = super::crash::read_from(log, log_start);
            bail!(
                "the S3 server failed its smoke test: {e:#}\n{}",
                super::crash::explain("the S3 server", &log)
            )
        }
    }
}

fn create_bucket(port: u16) -> Result<()> {
    let (status, _) = http(port, "PUT", &format!("/{S3_BUCKET}"), b"")?;
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

/// An unsigned request to the S3 server (what is put is public-read, so moto lets an
/// unsigned GET read it).
fn http(port: u16, method: &str, path: &str, body: &[u8]) -> Result<(u16, Vec<u8>)> {
    http_request(port, method, path, &[("x-amz-acl", "public-read")], body)
}
