//! `cargo xtask test` and `cargo xtask ci`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::services;
use crate::util::{root, run};

/// Features that are not backends of a registry but must build alone too.
const EXTRA_FEATURES: &[(&str, &str)] = &[
    // Vector search inside PostgreSQL: a capability of the postgres engine.
    ("zeroscale-db", "pgvector"),
];

/// Each concern crate must build with no default features and with each backend's feature
/// alone. The backends' features are read from the crates' registry tables
/// (`src/registry.rs`, the `feature: "…"` of each `backend!` line), the same tables
/// `connect`, `doctor` and `/readyz` read; the app builds with its defaults off.
pub(crate) fn feature_matrix() -> Result<Vec<(String, Vec<String>)>> {
    let mut matrix = Vec::new();
    let crates = root().join("crates");
    let mut dirs: Vec<_> = std::fs::read_dir(&crates)?
        .flatten()
        .map(|e| e.path())
        .collect();
    dirs.sort();
    for dir in dirs {
        let table = dir.join("src").join("registry.rs");
        let Ok(text) = std::fs::read_to_string(&table) else {
            continue;
        };
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut features = vec![String::new()];
        const MARK: &str = "feature: \"";
        // Code lines only: doc examples (core's own registry.rs) are not backends.
        let code = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        for (at, _) in code.match_indices(MARK) {
            let rest = &code[at + MARK.len()..];
            if let Some(end) = rest.find('"') {
                features.push(rest[..end].to_owned());
            }
        }
        for (krate, feature) in EXTRA_FEATURES {
            if *krate == name {
                features.push((*feature).to_owned());
            }
        }
        features.dedup();
        let mut seen = std::collections::BTreeSet::new();
        features.retain(|f| seen.insert(f.clone()));
        matrix.push((name, features));
    }
    if matrix.len() < 4 {
        bail!(
            "found registry tables in only {} crates under {}",
            matrix.len(),
            crates.display()
        );
    }
    matrix.push(("zeroscale-app".to_owned(), vec![String::new()]));
    Ok(matrix)
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()));
    cmd.current_dir(root());
    cmd
}

/// Services up, every test of the workspace with every backend compiled in, services down
/// (also when the tests fail). Extra arguments go to `cargo test`.
pub(crate) fn test(extra: &[&str]) -> Result<()> {
    let mut cmd = cargo();
    cmd.args(["test", "--workspace", "--all-features", "--no-fail-fast"]);
    cmd.args(extra);
    with_services(cmd, "tests failed")
}

/// Services up, `cmd` with their addresses in its environment, services down (also when
/// `cmd` fails; its failure, with `failed` as context, comes first).
fn with_services(mut cmd: Command, failed: &'static str) -> Result<()> {
    let vars = match services::up(true) {
        Ok(vars) => vars,
        Err(e) => {
            let _ = services::down();
            return Err(e);
        }
    };
    cmd.envs(vars);
    let result = run(&mut cmd);
    let stopped = services::down();
    result.context(failed)?;
    stopped
}

/// Services up, the fault suite alone (`crates/zeroscale-app/tests/faults.rs`: stage 3
/// under engine restarts, kills and a partitioned S3), services down; prints its table.
pub(crate) fn faults() -> Result<()> {
    let mut cmd = cargo();
    cmd.args([
        "test",
        "--package",
        "zeroscale-app",
        "--all-features",
        "--test",
        "faults",
        "--",
        "--nocapture",
    ]);
    // Engines must be there: without CI the suite would skip.
    cmd.env("CI", "true");
    with_services(
        cmd,
        "the fault suite failed (its table and the server's log are above)",
    )?;
    print_fault_report();
    Ok(())
}

/// The fault suite's table, written by the suite to `target/faults/report.md`.
fn print_fault_report() {
    let path = root().join("target").join("faults").join("report.md");
    if let Ok(report) = std::fs::read_to_string(&path) {
        println!("\n{report}\n(also in {})", path.display());
    }
}

/// Everything CI checks, in order of cost, then the API fuzz run.
pub(crate) fn ci() -> Result<()> {
    run(cargo().args(["fmt", "--all", "--", "--check"]))
        .context("formatting differs: run `cargo fmt --all`")?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--all-features",
        "--",
        "-D",
        "warnings",
    ]))?;
    // The API docs build without warnings (broken links, private items in public docs).
    run(cargo()
        .args([
            "doc",
            "--workspace",
            "--no-deps",
            "--all-features",
            "--exclude",
            "xtask",
            "--exclude",
            "zeroscale-bench",
        ])
        .env("RUSTDOCFLAGS", "-D warnings"))
    .context("`cargo doc` warns: fix the docs it names")?;
    let mut failed = Vec::new();
    for (krate, features) in feature_matrix()? {
        for feature in &features {
            let mut cmd = cargo();
            cmd.args([
                "check",
                "--quiet",
                "--package",
                &krate,
                "--no-default-features",
            ]);
            if !feature.is_empty() {
                cmd.args(["--features", feature]);
            }
            if run(&mut cmd).is_err() {
                failed.push(format!("{krate} --features '{feature}'"));
            }
        }
    }
    if !failed.is_empty() {
        bail!("the feature matrix fails for: {}", failed.join(", "));
    }
    // The tidy and config-example checks are tests of this crate; `test` runs them too, but
    // running them first fails fast on the cheap ones. The engine checks wait for `test`,
    // which starts the engines.
    run(cargo().args([
        "test",
        "--quiet",
        "--package",
        "xtask",
        "--",
        "--skip",
        "pgvector_binaries_have_no_avx512",
    ]))?;
    test(&[])?;
    // The workspace tests include the fault suite; its table goes into the CI log.
    print_fault_report();
    // A new app from `cargo xtask new`, built and tested against this checkout.
    crate::new_app::check_generated_app()?;
    package()?;
    // Generated requests from the server's own OpenAPI document: no 5xx.
    crate::fuzz::fuzz_api()?;
    // The benchmark harness keeps building and running (small sizes, goals not judged).
    crate::bench::bench(&["--quick"])
}

/// The crates a user depends on, packaged as they would be published, in dependency
/// order (cargo orders a multi-crate package and resolves our crates from each other).
fn package() -> Result<()> {
    forget_earlier_packages()?;
    let mut cmd = cargo();
    // Tests leave files behind (logs, generated apps under target/): they are not part of
    // any package, so the check is of what the packages hold.
    cmd.args(["package", "--workspace", "--quiet", "--allow-dirty"]);
    for krate in unpublished()? {
        cmd.args(["--exclude", &krate]);
    }
    run(&mut cmd).context("`cargo package` fails: a crate cannot be published as it is")
}

/// Removes what an earlier `cargo package` of a checkout at the same path left to reuse.
///
/// `cargo package --workspace` puts the packaged crates in a temporary registry under
/// target/package, unpacks them into `$CARGO_HOME/registry/src/-<hash of that path>/` and
/// builds them in the shared target dir. Cargo reuses an unpacked crate it finds there (same
/// name and version) without comparing it with the new package, and the packaged files all
/// carry one fixed old mtime, so a build of an earlier package looks newer than its sources
/// and is reused too. A second run at the same path then verified each crate against the
/// previous run's copies of our other crates (CI failed on methods "not found" that the
/// checkout has). Only our own crates are forgotten: their unpacked copies in registries
/// without a name (the temporary ones), and the fingerprints of builds made from a packaged
/// copy rather than from the workspace, so cargo builds those again.
fn forget_earlier_packages() -> Result<()> {
    let meta = metadata()?;
    let ours = members(&meta);
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .context("neither CARGO_HOME nor HOME is set")?;
    if let Ok(registries) = std::fs::read_dir(home.join("registry").join("src")) {
        for registry in registries.flatten() {
            if !registry.file_name().to_string_lossy().starts_with('-') {
                continue;
            }
            for unpacked in std::fs::read_dir(registry.path())?.flatten() {
                let name = unpacked.file_name().to_string_lossy().into_owned();
                if ours.iter().any(|(package, _)| is_versioned(&name, package)) {
                    remove(&unpacked.path())?;
                }
            }
        }
    }
    let target = PathBuf::from(meta["target_directory"].as_str().unwrap_or("target"));
    let profile = target.join("debug");
    let Ok(deps) = std::fs::read_dir(profile.join("deps")) else {
        return Ok(());
    };
    for dep_info in deps.flatten() {
        let file = dep_info.file_name().to_string_lossy().into_owned();
        let Some(stem) = file.strip_suffix(".d") else {
            continue;
        };
        for (package, lib) in &ours {
            let Some(hash) = stem
                .strip_prefix(lib.as_str())
                .and_then(|r| r.strip_prefix('-'))
            else {
                continue;
            };
            let text = std::fs::read_to_string(dep_info.path()).unwrap_or_default();
            if built_from_a_package(&text) {
                remove(
                    &profile
                        .join(".fingerprint")
                        .join(format!("{package}-{hash}")),
                )?;
            }
        }
    }
    Ok(())
}

fn remove(path: &Path) -> Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove the stale {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// Whether `dir` is `<package>-<version>`, as cargo names an unpacked crate.
fn is_versioned(dir: &str, package: &str) -> bool {
    dir.strip_prefix(package)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|version| version.starts_with(|c: char| c.is_ascii_digit()))
}

/// Whether a dep-info file (`deps/<lib>-<hash>.d`) is of a build from a packaged copy: its
/// first source is in an unpacked registry crate, or relative to the package's own root
/// (`src/lib.rs`, the verification build) where a workspace build names the member's folder.
fn built_from_a_package(dep_info: &str) -> bool {
    let first = dep_info
        .lines()
        .next()
        .and_then(|l| l.split_once(": "))
        .and_then(|(_, sources)| sources.split_whitespace().next())
        .unwrap_or_default();
    first.contains("/registry/src/-") || first.starts_with("src/")
}

/// `cargo metadata` of the workspace, without dependencies.
fn metadata() -> Result<serde_json::Value> {
    let out = cargo()
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .current_dir(root())
        .output()
        .context("cannot run `cargo metadata`")?;
    if !out.status.success() {
        bail!(
            "`cargo metadata` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_json::from_slice(&out.stdout).context("`cargo metadata` printed no JSON")
}

/// The workspace's packages that have a library, with the library's name.
fn members(meta: &serde_json::Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for package in meta["packages"].as_array().into_iter().flatten() {
        let lib = package["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| {
                t["kind"]
                    .as_array()
                    .is_some_and(|k| k.iter().any(|k| k == "lib"))
            });
        if let (Some(name), Some(lib)) = (
            package["name"].as_str(),
            lib.and_then(|l| l["name"].as_str()),
        ) {
            out.push((name.to_owned(), lib.to_owned()));
        }
    }
    out
}

/// The workspace members that are never published (`publish = false`).
fn unpublished() -> Result<Vec<String>> {
    let mut names = Vec::new();
    for dir in ["xtask", "bench"].iter().map(|d| root().join(d)).chain(
        std::fs::read_dir(root().join("examples"))?
            .flatten()
            .map(|e| e.path()),
    ) {
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml"))
            .with_context(|| format!("cannot read {}/Cargo.toml", dir.display()))?;
        if !manifest.lines().any(|l| l.trim() == "publish = false") {
            bail!("{} has no `publish = false`", dir.display());
        }
        let name = manifest
            .lines()
            .find_map(|l| l.trim().strip_prefix("name = "))
            .map(|n| n.trim_matches('"').to_owned())
            .with_context(|| format!("{} has no name", dir.display()))?;
        names.push(name);
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_builds_and_copies_of_our_packages_are_forgotten() {
        assert!(super::is_versioned(
            "zeroscale-core-0.1.0",
            "zeroscale-core"
        ));
        assert!(super::is_versioned(
            "zeroscale-db-12.0.0-rc.1",
            "zeroscale-db"
        ));
        assert!(!super::is_versioned(
            "zeroscale-db-extra-0.1.0",
            "zeroscale-db"
        ));
        assert!(!super::is_versioned("serde-1.0.0", "zeroscale-db"));
        assert!(!super::is_versioned("zeroscale-core", "zeroscale-core"));
        let dep_info = |first: &str| format!("/w/target/debug/deps/x-1.d: {first} src/b.rs\n");
        assert!(super::built_from_a_package(&dep_info(
            "/home/u/.cargo/registry/src/-14cd1cce6819ff87/zeroscale-core-0.1.0/src/lib.rs"
        )));
        assert!(super::built_from_a_package(&dep_info("src/lib.rs")));
        assert!(!super::built_from_a_package(&dep_info(
            "crates/zeroscale-core/src/lib.rs"
        )));
        assert!(!super::built_from_a_package(&dep_info(
            "/home/u/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/serde-1.0.0/src/lib.rs"
        )));
    }

    #[test]
    fn the_feature_matrix_comes_from_the_registries() {
        let matrix = super::feature_matrix().unwrap();
        let features = |name: &str| {
            matrix
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, f)| f.clone())
                .unwrap_or_else(|| panic!("{name} is not in the matrix: {matrix:?}"))
        };
        assert_eq!(features("zeroscale-storage"), ["", "local", "s3", "azure"]);
        assert_eq!(features("zeroscale-queue"), ["", "redis", "database"]);
        assert_eq!(
            features("zeroscale-db"),
            ["", "sqlite", "postgres", "mongodb", "pgvector"]
        );
        assert_eq!(
            features("zeroscale-models"),
            ["", "local-models", "remote-models"]
        );
        assert_eq!(features("zeroscale-app"), [""]);
        // Core defines the registry type; the backend in its doc example is not a feature.
        assert_eq!(features("zeroscale-core"), [""]);
    }
}
