//! Helpers shared by the app's tests: the `zeroscale` binary with a clean environment,
//! and worker processes.

#![allow(dead_code, unreachable_pub)]

use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The binary, run in `dir` with its data dir inside it, and none of the test's own
/// `ZEROSCALE_*`, `DATABASE_URL` or `REDIS_URL` variables.
pub fn zeroscale(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_zeroscale"));
    for (key, _) in std::env::vars() {
        if key.starts_with("ZEROSCALE_") || key == "DATABASE_URL" || key == "REDIS_URL" {
            cmd.env_remove(key);
        }
    }
    cmd.current_dir(dir)
        .env("ZEROSCALE_DATA_DIR", dir.join("data"));
    cmd
}

/// A quiet `zeroscale worker` on the Redis at `url` under key prefix `prefix`, with 2 s
/// leases so the jobs of a killed worker come back quickly.
pub fn worker(dir: &Path, url: &str, prefix: &str, concurrency: usize) -> Child {
    zeroscale(dir)
        .arg("worker")
        .env("REDIS_URL", url)
        .env("ZEROSCALE_QUEUE__KEY_PREFIX", prefix)
        .env("ZEROSCALE_WORKERS__CONCURRENCY", concurrency.to_string())
        .env("ZEROSCALE_WORKERS__MODE", "separate")
        .env("ZEROSCALE_JOBS__LEASE_SECS", "2")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start zeroscale worker")
}
