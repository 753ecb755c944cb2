//! Prometheus for the metrics tests: Debian's `prometheus` package (with `promtool`),
//! installed where missing. The tests start their own Prometheus on loopback, pointed at
//! the server they run; its paths are `ZEROSCALE_TEST_PROMETHEUS` and
//! `ZEROSCALE_TEST_PROMTOOL`.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::util::{apt_install, which};

/// The paths of `prometheus` and `promtool`, installing the package where missing.
pub(super) fn prometheus() -> Result<Vec<(String, String)>> {
    let find = |name: &str| {
        which(name).or_else(|| Some(PathBuf::from("/usr/bin").join(name)).filter(|p| p.is_file()))
    };
    if find("prometheus").is_none() || find("promtool").is_none() {
        apt_install(&["prometheus"])?;
    }
    let mut vars = Vec::new();
    for (name, var) in [
        ("prometheus", "ZEROSCALE_TEST_PROMETHEUS"),
        ("promtool", "ZEROSCALE_TEST_PROMTOOL"),
    ] {
        let path =
            find(name).with_context(|| format!("{name} was installed but is still not found"))?;
        vars.push((var.to_owned(), path.display().to_string()));
    }
    Ok(vars)
}
