//! `cargo xtask test` and `cargo xtask ci`.

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::services;
use crate::util::{root, run};

/// Each concern crate must build with no default features and with each backend alone.
const FEATURE_MATRIX: &[(&str, &[&str])] = &[
    ("zeroscale-db", &["", "sqlite", "postgres", "pgvector"]),
    ("zeroscale-storage", &["", "local", "s3"]),
    ("zeroscale-queue", &["", "redis"]),
    ("zeroscale-models", &["", "local-models", "remote-models"]),
    ("zeroscale-app", &[""]),
];

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()));
    cmd.current_dir(root());
    cmd
}

/// Services up, every test of the workspace with every backend compiled in, services down
/// (also when the tests fail). Extra arguments go to `cargo test`.
pub(crate) fn test(extra: &[&str]) -> Result<()> {
    let vars = match services::up() {
        Ok(vars) => vars,
        Err(e) => {
            let _ = services::down();
            return Err(e);
        }
    };
    let mut cmd = cargo();
    cmd.args(["test", "--workspace", "--all-features", "--no-fail-fast"]);
    cmd.args(extra);
    cmd.envs(vars);
    let result = run(&mut cmd);
    let stopped = services::down();
    result.context("tests failed")?;
    stopped
}

/// Everything CI checks, in order of cost, then the API fuzz run.
pub(crate) fn ci() -> Result<()> {
    run(cargo().args(["fmt", "--all", "--", "--check"]))
        .context("formatting differs: run `cargo fmt --all`")?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--all-features",
        "--",
        "-D",
        "warnings",
    ]))?;
    let mut failed = Vec::new();
    for (krate, features) in FEATURE_MATRIX {
        for feature in *features {
            let mut cmd = cargo();
            cmd.args([
                "check",
                "--quiet",
                "--package",
                krate,
                "--no-default-features",
            ]);
            if !feature.is_empty() {
                cmd.args(["--features", feature]);
            }
            if run(&mut cmd).is_err() {
                failed.push(format!("{krate} --features '{feature}'"));
            }
        }
    }
    if !failed.is_empty() {
        bail!("the feature matrix fails for: {}", failed.join(", "));
    }
    // The tidy and config-example checks are tests of this crate; `test` runs them too, but
    // running them first fails fast on the cheap ones. The engine checks wait for `test`,
    // which starts the engines.
    run(cargo().args([
        "test",
        "--quiet",
        "--package",
        "xtask",
        "--",
        "--skip",
        "pgvector_binaries_have_no_avx512",
    ]))?;
    test(&[])?;
    // Generated requests from the server's own OpenAPI document: no 5xx.
    crate::fuzz::fuzz_api()
}
