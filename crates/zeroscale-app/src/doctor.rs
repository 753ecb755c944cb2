//! `zeroscale doctor`: a table of every concern's backend and whether it works.

use std::process::ExitCode;

use zeroscale_core::config::{LoadedConfig, ensure_private_dir};

use crate::checks::Checker;

pub(crate) async fn run(loaded: &LoadedConfig) -> anyhow::Result<ExitCode> {
    let config = &loaded.config;
    let mut healthy = true;
    let mut warned = false;
    let mut warned_files = false;
    println!(
        "zeroscale doctor (profile: {})",
        loaded.profile.as_deref().unwrap_or("none")
    );
    let data_dir = config.data_dir()?;
    match ensure_private_dir(&data_dir) {
        Ok(()) => println!("  ok    {:<20} {}", "data dir", data_dir.display()),
        Err(e) => {
            healthy = false;
            println!("  FAIL  {:<20} {}", "data dir", e.chain());
        }
    }
    if let Some(line) = permissions_warning(&data_dir) {
        warned_files = true;
        println!("  WARN  {:<20} {line}", "data dir files");
    }
    for check in Checker::new(config.clone()).run().await {
        let status = match (check.ok, check.required) {
            (true, _) => "ok  ",
            (false, true) => "FAIL",
            // A provider that is down while every model id still has one that works.
            (false, false) => "WARN",
        };
        let compiled = if check.compiled_in {
            "compiled in"
        } else {
            "NOT compiled in"
        };
        println!(
            "  {status}  {:<20} {:<13} {compiled:<16} {}",
            check.concern, check.backend, check.detail
        );
        healthy &= check.ok || !check.required;
        warned |= !check.ok && !check.required;
    }
    if warned {
        println!(
            "WARN: a model provider is down, but every model id using it has another that works"
        );
    }
    if warned_files {
        println!(
            "WARN: files in the data dir can be read by other users (password and API key \
             hashes are in the database): tighten them as the WARN line says"
        );
    }
    if healthy {
        println!("everything is ready");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("some backends are not ready: see FAIL lines above for what to do");
        Ok(ExitCode::FAILURE)
    }
}

/// Entries of the data dir looked at, at most: enough for the database, keys and caches,
/// bounded for a dir holding millions of uploads.
const PERMISSION_SCAN_LIMIT: usize = 20_000;

/// Files and folders under `dir` that others than their owner may read or write (zeroscale
/// makes files 0600 and folders 0700; older versions left the SQLite files 0644).
#[cfg(unix)]
fn wide_entries(dir: &std::path::Path) -> (Vec<(std::path::PathBuf, u32)>, bool) {
    use std::os::unix::fs::PermissionsExt;
    let mut wide = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    let mut seen = 0usize;
    while let Some(path) = stack.pop() {
        seen += 1;
        if seen > PERMISSION_SCAN_LIMIT {
            return (wide, true);
        }
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.file_type().is_symlink() {
            continue;
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            wide.push((path.clone(), mode));
        }
        if meta.is_dir()
            && let Ok(entries) = std::fs::read_dir(&path)
        {
            stack.extend(entries.flatten().map(|e| e.path()));
        }
    }
    (wide, false)
}

/// The doctor's line about the data dir's permissions, when something is too open.
fn permissions_warning(dir: &std::path::Path) -> Option<String> {
    #[cfg(unix)]
    {
        let (wide, truncated) = wide_entries(dir);
        if wide.is_empty() {
            return None;
        }
        let examples: Vec<String> = wide
            .iter()
            .take(3)
            .map(|(p, mode)| {
                let name = p.strip_prefix(dir).unwrap_or(p).display().to_string();
                let name = if name.is_empty() {
                    ".".to_owned()
                } else {
                    name
                };
                format!("{name} ({mode:04o})")
            })
            .collect();
        Some(format!(
            "{}{} readable or writable by other users, e.g. {}: run `chmod -R go-rwx {}`",
            wide.len(),
            if truncated {
                "+ entries (scan stopped early)"
            } else {
                " entries"
            },
            examples.join(", "),
            dir.display()
        ))
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        None
    }
}
