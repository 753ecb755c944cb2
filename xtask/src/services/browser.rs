//! A browser for the tests that check what a page can do: Debian's Chromium, installed
//! where missing. Its path is `ZEROSCALE_TEST_CHROMIUM`.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::util::{apt_install, which};

/// Chromium's path, installing Debian's `chromium` package where it is missing.
pub(super) fn chromium() -> Result<Vec<(String, String)>> {
    let path = match which("chromium") {
        Some(path) => path,
        None => {
            apt_install(&["chromium"])?;
            which("chromium")
                .or_else(|| Some(PathBuf::from("/usr/bin/chromium")).filter(|p| p.is_file()))
                .context("chromium was installed but is still not found")?
        }
    };
    Ok(vec![(
        "ZEROSCALE_TEST_CHROMIUM".to_owned(),
        path.display().to_string(),
    )])
}
