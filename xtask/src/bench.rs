//! `cargo xtask bench [--quick] [CONCERN...]`: services up, the release build of the
//! benchmarks and of the `zeroscale` binary, the benchmarks (`bench/`, each figure side by
//! side with the raw driver or peer in one run), services down. The report goes to
//! `target/bench/report.md` and `report.json`.

use std::process::Command;

use anyhow::{Context, Result};

use crate::services;
use crate::util::{apt_install, root, run, which};

/// Runs the benchmarks; `args` are `--quick` and concern names, passed on.
pub(crate) fn bench(args: &[&str]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    run(Command::new(&cargo).current_dir(root()).args([
        "build",
        "--release",
        "--quiet",
        "--package",
        "zeroscale-bench",
        "--package",
        "zeroscale-app",
    ]))
    .context("the release build of the benchmarks failed")?;
    // The backup figures run SQLite's own `.backup` next to ours.
    if which("sqlite3").is_none() {
        apt_install(&["sqlite3"])?;
    }
    let vars = match services::up() {
        Ok(vars) => vars,
        Err(e) => {
            let _ = services::down();
            return Err(e);
        }
    };
    let release = root().join("target").join("release");
    let out = root().join("target").join("bench");
    let mut cmd = Command::new(release.join("zeroscale-bench"));
    cmd.current_dir(root())
        .arg("--out")
        .arg(&out)
        .args(args)
        .envs(vars)
        .env("ZEROSCALE_BENCH_BIN", release.join("zeroscale"));
    let result = run(&mut cmd);
    let stopped = services::down();
    result.context("the benchmarks failed")?;
    stopped
}
