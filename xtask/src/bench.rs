//! `cargo xtask bench [--quick] [CONCERN...]`: services up, the release build of the
//! benchmarks and of the `zeroscale` binary, the benchmarks (`bench/`, each figure side by
//! side with the raw driver or peer in one run), services down. The report goes to
//! `target/bench/report.md` and `report.json`.
//!
//! `--peers` first makes the Python venv `target/bench-peers` (PyTorch,
//! sentence-transformers, ONNX Runtime, several GB: never in CI) and exports the local
//! model to ONNX there, so the embeddings figures compare with them; once made, every run
//! uses it.

use std::process::Command;

use anyhow::{Context, Result};

use crate::services;
use crate::util::{apt_install, root, run, which};

/// The peers' packages, pinned to the versions the figures were first measured with.
const PEER_PACKAGES: &[&str] = &[
    "torch==2.15.*",
    "sentence-transformers==6.2.*",
    "onnxruntime==1.32.*",
    "onnx==1.23.*",
];

/// Runs the benchmarks; `args` are `--quick`, `--peers` and concern names.
pub(crate) fn bench(args: &[&str]) -> Result<()> {
    let peers_wanted = args.contains(&"--peers");
    let args: Vec<&str> = args.iter().copied().filter(|a| *a != "--peers").collect();
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
    let vars = match services::up(true) {
        Ok(vars) => vars,
        Err(e) => {
            let _ = services::down();
            return Err(e);
        }
    };
    let peers = match peers(peers_wanted, &vars) {
        Ok(peers) => peers,
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
        .args(&args)
        .envs(vars)
        .env("ZEROSCALE_BENCH_BIN", release.join("zeroscale"));
    if let Some(venv) = &peers {
        cmd.env("ZEROSCALE_BENCH_PEERS", venv);
    }
    let result = run(&mut cmd);
    let stopped = services::down();
    result.context("the benchmarks failed")?;
    stopped
}

/// The peers' venv: made (packages, then the ONNX export of the local model) when `wanted`
/// and not made yet; used whenever it is complete.
fn peers(wanted: bool, vars: &[(String, String)]) -> Result<Option<std::path::PathBuf>> {
    let venv = root().join("target").join("bench-peers");
    let ready = venv.join("ready");
    if ready.is_file() {
        return Ok(Some(venv));
    }
    if !wanted {
        return Ok(None);
    }
    let model = vars
        .iter()
        .find(|(k, _)| k == "ZEROSCALE_TEST_MODEL_DIR")
        .map(|(_, v)| v.clone())
        .context("services up did not install the local model")?;
    if !venv.join("bin").join("python").is_file() {
        if which("python3").is_none() {
            apt_install(&["python3", "python3-venv"])?;
        }
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv))
            .context("cannot create the peers' venv (is python3-venv installed?)")?;
    }
    let python = venv.join("bin").join("python");
    eprintln!(
        "bench: installing the peers into {} (several GB, once)",
        venv.display()
    );
    run(Command::new(&python)
        .args(["-m", "pip", "install", "--quiet"])
        .args(PEER_PACKAGES))
    .context("cannot install the peers' packages")?;
    let onnx = venv.join("minilm.onnx");
    run(Command::new(&python)
        .arg(root().join("bench").join("peers").join("export_onnx.py"))
        .arg(&model)
        .arg(&onnx))
    .context("cannot export the local model to ONNX")?;
    std::fs::write(&ready, PEER_PACKAGES.join("\n"))
        .with_context(|| format!("cannot write {}", ready.display()))?;
    Ok(Some(venv))
}
