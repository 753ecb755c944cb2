//! Tidy checks, as tests so `cargo test` runs them: every `.rs` file opens with a `//!`
//! line, and every crate root documents its feature flags.

use std::path::{Path, PathBuf};

use crate::util::root;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if name == "target" || name.to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_rust_file_starts_with_a_module_doc() {
    let mut files = Vec::new();
    rust_files(&root(), &mut files);
    assert!(
        files.len() > 10,
        "found only {} .rs files: wrong root?",
        files.len()
    );
    let missing: Vec<String> = files
        .iter()
        .filter(|path| {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            !text.trim_start().starts_with("//!")
        })
        .map(|path| {
            path.strip_prefix(root())
                .unwrap_or(path)
                .display()
                .to_string()
        })
        .collect();
    assert!(
        missing.is_empty(),
        "these files do not start with a `//!` line saying what they are for:\n  {}",
        missing.join("\n  ")
    );
}

#[test]
fn every_crate_root_has_a_feature_flags_table() {
    let crates = root().join("crates");
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(&crates).expect("crates/").flatten() {
        let src = entry.path().join("src");
        let lib = src.join("lib.rs");
        let root_file = if lib.is_file() {
            lib
        } else {
            src.join("main.rs")
        };
        let text = std::fs::read_to_string(&root_file).unwrap_or_default();
        if !text.contains("# Feature flags") {
            missing.push(root_file.display().to_string());
        }
    }
    assert!(
        missing.is_empty(),
        "crate roots without a `# Feature flags` table: {}",
        missing.join(", ")
    );
}
