//! A browser for the tests that check what a page can do: Debian's Chromium and its
//! WebDriver (`chromium-driver`), installed where missing. Their paths are
//! `ZEROSCALE_TEST_CHROMIUM` and `ZEROSCALE_TEST_CHROMEDRIVER`.

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
    let driver = match which("chromedriver") {
        Some(driver) => driver,
        None => {
            apt_install(&["chromium-driver"])?;
            which("chromedriver")
                .or_else(|| Some(PathBuf::from("/usr/bin/chromedriver")).filter(|p| p.is_file()))
                .context("chromium-driver was installed but chromedriver is still not found")?
        }
    };
    Ok(vec![
        (
            "ZEROSCALE_TEST_CHROMIUM".to_owned(),
            path.display().to_string(),
        ),
        (
            "ZEROSCALE_TEST_CHROMEDRIVER".to_owned(),
            driver.display().to_string(),
        ),
    ])
}
