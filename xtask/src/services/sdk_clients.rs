//! The OpenAI client libraries the compatibility tests drive against a zeroscale server:
//! the openai Python SDK and LangChain's `langchain-openai` in a virtualenv, and the
//! openai Node SDK from npm, each pinned. Their paths are `ZEROSCALE_TEST_OPENAI_PYTHON`
//! (the virtualenv's python) and `ZEROSCALE_TEST_OPENAI_NODE` (a folder with
//! `node_modules/openai`).
//!
//! LangChain counts tokens with `tiktoken`, which downloads its `cl100k_base` vocabulary on
//! first use. There is no network for that here, so the vocabulary that the `tiktoken-rs`
//! crate bundles (the server decodes token ids with the same file) is placed in
//! `ZEROSCALE_TEST_TIKTOKEN_CACHE` under the name tiktoken looks for; the tests pass it
//! on as `TIKTOKEN_CACHE_DIR`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use crate::util::{apt_install, root, run, which};

/// The Python packages, installed together.
const PYTHON_PACKAGES: &[&str] = &[
    "openai==3.63.0",
    "langchain-openai==1.8.1",
    "tiktoken==0.14.0",
];

/// The Node SDK: 6.x is the newest line that runs on Node 20 (7.x wants Node 22).
const NODE_PACKAGE: &str = "openai@6.49.0";

/// `cl100k_base.tiktoken` as tiktoken checks it after loading from its cache.
const CL100K_SHA256: &str = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7";

/// The cache file name tiktoken gives `cl100k_base`: the SHA-1 (hex) of the address it
/// downloads the vocabulary from (`tiktoken/load.py`, `read_file_cached`).
const CL100K_CACHE_NAME: &str = "9b5ad71b2ce5302211f9c61530b329a4922fc6a4";

/// The crate whose bundled vocabulary is copied, as in Cargo.lock.
const TIKTOKEN_RS: &str = "tiktoken-rs";

/// Installs (once) what is missing and returns the variables the tests read.
pub(super) fn sdk_clients(services: &Path) -> Result<Vec<(String, String)>> {
    let dir = services.join("openai-clients");
    let python = python_clients(&dir.join("venv"))?;
    let node = node_client(&dir.join("npm"))?;
    let cache = tiktoken_cache(&dir.join("tiktoken-cache"))?;
    Ok(vec![
        (
            "ZEROSCALE_TEST_OPENAI_PYTHON".to_owned(),
            python.display().to_string(),
        ),
        (
            "ZEROSCALE_TEST_OPENAI_NODE".to_owned(),
            node.display().to_string(),
        ),
        (
            "ZEROSCALE_TEST_TIKTOKEN_CACHE".to_owned(),
            cache.display().to_string(),
        ),
    ])
}

/// The virtualenv's python with the pinned packages; reinstalled when the pins change.
fn python_clients(venv: &Path) -> Result<PathBuf> {
    let python = venv.join("bin").join("python");
    let marker = venv.join("zeroscale-pins.txt");
    let pins = PYTHON_PACKAGES.join("\n");
    if python.is_file() && std::fs::read_to_string(&marker).is_ok_and(|m| m == pins) {
        return Ok(python);
    }
    if which("python3").is_none() {
        apt_install(&["python3", "python3-venv", "python3-pip"])?;
    }
    if !venv.join("bin").join("pip").is_file() {
        let _ = std::fs::remove_dir_all(venv);
        if run(Command::new("python3").arg("-m").arg("venv").arg(venv)).is_err() {
            apt_install(&["python3-venv"])?;
            let _ = std::fs::remove_dir_all(venv);
            run(Command::new("python3").arg("-m").arg("venv").arg(venv))?;
        }
    }
    // Wheels only: nothing is compiled for this machine's CPU.
    run(Command::new(venv.join("bin").join("pip"))
        .args(["install", "-q", "--only-binary=:all:"])
        .args(PYTHON_PACKAGES))
    .with_context(|| format!("pip could not install {}", PYTHON_PACKAGES.join(" ")))?;
    std::fs::write(&marker, pins)?;
    Ok(python)
}

/// A folder whose `node_modules` holds the pinned openai package.
fn node_client(prefix: &Path) -> Result<PathBuf> {
    let manifest = prefix
        .join("node_modules")
        .join("openai")
        .join("package.json");
    let version = NODE_PACKAGE.rsplit('@').next().unwrap_or_default();
    let installed = std::fs::read_to_string(&manifest)
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|json| json["version"].as_str().map(str::to_owned));
    if installed.as_deref() == Some(version) {
        return Ok(prefix.to_path_buf());
    }
    if which("npm").is_none() {
        apt_install(&["nodejs", "npm"])?;
    }
    std::fs::create_dir_all(prefix)?;
    run(Command::new("npm")
        .arg("install")
        .arg("--prefix")
        .arg(prefix)
        .args([NODE_PACKAGE, "--no-audit", "--no-fund", "--loglevel=error"]))
    .with_context(|| format!("npm could not install {NODE_PACKAGE}"))?;
    if !manifest.is_file() {
        bail!(
            "{NODE_PACKAGE} was installed but {} is missing",
            manifest.display()
        );
    }
    Ok(prefix.to_path_buf())
}

/// A tiktoken cache folder holding `cl100k_base`, copied from the `tiktoken-rs` crate's
/// sources (found through `cargo metadata`) and checked against tiktoken's hash.
fn tiktoken_cache(dir: &Path) -> Result<PathBuf> {
    let target = dir.join(CL100K_CACHE_NAME);
    if std::fs::read(&target).is_ok_and(|bytes| sha256_hex(&bytes) == CL100K_SHA256) {
        return Ok(dir.to_path_buf());
    }
    let source = bundled_vocabulary()?;
    let bytes =
        std::fs::read(&source).with_context(|| format!("cannot read {}", source.display()))?;
    let hash = sha256_hex(&bytes);
    if hash != CL100K_SHA256 {
        bail!(
            "{} has SHA-256 {hash}, not tiktoken's {CL100K_SHA256}: the {TIKTOKEN_RS} crate's \
             vocabulary changed; check the version in Cargo.lock",
            source.display()
        );
    }
    std::fs::create_dir_all(dir)?;
    std::fs::write(&target, bytes)?;
    Ok(dir.to_path_buf())
}

/// `assets/cl100k_base.tiktoken` in the sources of the `tiktoken-rs` the workspace uses.
fn bundled_vocabulary() -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(cargo)
        .current_dir(root())
        .args(["metadata", "--format-version", "1", "--locked"])
        .output()
        .context("cannot run cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let manifest = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == TIKTOKEN_RS)
        .and_then(|p| p["manifest_path"].as_str())
        .with_context(|| format!("{TIKTOKEN_RS} is not among the workspace's packages"))?;
    let path = Path::new(manifest)
        .parent()
        .context("a manifest path has a parent")?
        .join("assets")
        .join("cl100k_base.tiktoken");
    if !path.is_file() {
        bail!("{} is missing from the crate's sources", path.display());
    }
    Ok(path)
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
