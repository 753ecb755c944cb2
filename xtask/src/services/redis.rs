//! Redis for the tests: Debian's `redis-server` on a free port, smoke-tested with a Lua
//! script (the queue is one script per state change) and `TIME`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::{READY_TIMEOUT, running_port};
use crate::util::{apt_install, free_port, run, tail, wait_until, which};

pub(super) fn redis_up(services: &Path) -> Result<Vec<(String, String)>> {
    let dir = services.join("redis");
    let pid_file = dir.join("redis.pid");
    let port_file = dir.join("port");
    let log = dir.join("redis.log");
    if let Some(port) = running_port(&pid_file, &port_file) {
        eprintln!("Redis already running on port {port}");
        smoke_test(port, &log)?;
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
        // The append-only file, as production should run it: tests see what operators get.
        .args(["--daemonize", "yes", "--save", "", "--appendonly", "yes"])
        .args(["--appendfsync", "everysec"])
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
    smoke_test(port, &log)?;
    Ok(redis_vars(port))
}

/// A command as a RESP array of bulk strings.
pub(super) fn resp(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n{arg}\r\n", arg.len()).as_bytes());
    }
    out
}

/// What the queue does: a Lua script that writes and reads a hash and reads the server's
/// clock, then cleans up. A failure names the engine and what its log says.
fn smoke_test(port: u16, log: &Path) -> Result<()> {
    let log_start = std::fs::metadata(log).map_or(0, |m| m.len());
    let script = "redis.call('HSET', KEYS[1], 'n', ARGV[1]) \
                  local t = redis.call('TIME') \
                  local n = redis.call('HGET', KEYS[1], 'n') \
                  redis.call('DEL', KEYS[1]) \
                  return {n, t[1]}";
    let result = (|| -> Result<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.write_all(&resp(&["EVAL", script, "1", "zs:smoke", "42"]))?;
        let mut buf = [0u8; 256];
        let n = stream.read(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    })();
    match result {
        // `*2`, then `$2 42`, then the seconds.
        Ok(reply) if reply.starts_with("*2\r\n$2\r\n42\r\n") => {
            eprintln!("Redis: smoke test passed");
            Ok(())
        }
        other => {
            let what = match other {
                Ok(reply) => format!("EVAL answered {reply:?}"),
                Err(e) => format!("EVAL failed: {e:#}"),
            };
            let log = super::crash::read_from(log, log_start);
            bail!(
                "Redis failed its smoke test: {what}\n{}",
                super::crash::explain("Redis", &log)
            )
        }
    }
}

fn redis_vars(port: u16) -> Vec<(String, String)> {
    vec![(
        "ZEROSCALE_TEST_REDIS_URL".to_owned(),
        format!("redis://127.0.0.1:{port}"),
    )]
}

pub(super) fn redis_ping(port: u16) -> bool {
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
