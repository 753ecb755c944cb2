//! Helpers for tests that need a real engine: find the addresses written by
//! `cargo xtask services up`, and skip (locally) or fail (in CI) when an engine is missing;
//! cut an engine off with a [`FaultProxy`].

use std::path::{Path, PathBuf};

mod proxy;

pub use proxy::{FaultProxy, ProxyMode};

/// The env file `cargo xtask services up` writes, relative to the workspace root.
pub const SERVICES_ENV_FILE: &str = "target/zeroscale-services/services.env";

/// Whether we run in CI (the `CI` variable is set to something other than `false`/`0`).
pub fn in_ci() -> bool {
    std::env::var("CI")
        .map(|v| !v.is_empty() && v != "false" && v != "0")
        .unwrap_or(false)
}

/// The services env file: `ZEROSCALE_SERVICES_ENV`, else the first
/// `target/zeroscale-services/services.env` found walking up from the crate under test.
pub fn services_env_file() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("ZEROSCALE_SERVICES_ENV") {
        return Some(PathBuf::from(path));
    }
    let start = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::current_dir().ok())?;
    start
        .ancestors()
        .map(|dir| dir.join(SERVICES_ENV_FILE))
        .find(|file| file.is_file())
}

fn read_env_file(path: &Path, name: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .filter_map(|line| line.split_once('='))
        .find(|(key, _)| key.trim() == name)
        .map(|(_, value)| value.trim().to_owned())
        .filter(|value| !value.is_empty())
}

/// The value of `name` from the environment, else from the services env file.
pub fn service_var(name: &str) -> Option<String> {
    if let Ok(value) = std::env::var(name)
        && !value.is_empty()
    {
        return Some(value);
    }
    read_env_file(&services_env_file()?, name)
}

/// The value of `name` for a test that needs `engine`. Outside CI a missing value skips
/// the test (returns `None` and prints why); in CI it panics, failing the test.
pub fn require_service(name: &str, engine: &str) -> Option<String> {
    if let Some(value) = service_var(name) {
        return Some(value);
    }
    let reason = format!(
        "{engine} is not available: `{name}` is not set and no services env file was found; \
         run `cargo xtask services up` first (or `cargo xtask test`)"
    );
    if in_ci() {
        panic!("{reason} (CI is set, so a missing engine fails the test)");
    }
    eprintln!("skipping: {reason}");
    None
}

/// Cosine similarity of two vectors, computed in `f64` (1.0 for the same direction).
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}
