//! `zeroscale storage sync`: copy every object between two configured backends, with a
//! progress bar.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use zeroscale_core::Storage;
use zeroscale_storage::sync::{Outcome, SyncEvent, SyncOptions, sync};

use zeroscale_core::config::ConfigSources;

use crate::cli::StorageCommand;

/// Loads the storage that a profile name or config file describes.
fn open(which: &str, base: &ConfigSources) -> anyhow::Result<(Arc<dyn Storage>, String)> {
    open_config(&crate::wiring::load_named(which, base)?)
}

/// The storage `config` describes, and a name for it.
pub(crate) fn open_config(
    config: &zeroscale_core::config::Config,
) -> anyhow::Result<(Arc<dyn Storage>, String)> {
    let storage = crate::wiring::storage(config)?;
    let name = format!("{} storage at {}", storage.backend(), storage.location());
    Ok((storage, name))
}

pub(crate) async fn run(command: StorageCommand, base: &ConfigSources) -> anyhow::Result<ExitCode> {
    let StorageCommand::Sync {
        from,
        to,
        dry_run,
        concurrency,
        prefix,
    } = command;
    let (source, source_name) = open(&from, base).with_context(|| format!("--from {from}"))?;
    let (target, target_name) = open(&to, base).with_context(|| format!("--to {to}"))?;
    eprintln!(
        "syncing {source_name} -> {target_name}{}",
        if dry_run { " (dry run)" } else { "" }
    );

    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {bytes}/{total_bytes} ({bytes_per_sec}) {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let progress = {
        let bar = bar.clone();
        move |event: SyncEvent| match event {
            SyncEvent::Planned { bytes, .. } => bar.set_length(bytes),
            SyncEvent::Done {
                key,
                bytes,
                outcome,
            } => {
                bar.inc(bytes);
                let verb = match outcome {
                    Outcome::Copied if dry_run => "would copy",
                    Outcome::Copied => "copied",
                    Outcome::Skipped => "skipped",
                };
                bar.set_message(format!("{verb} {key}"));
            }
        }
    };
    let options = SyncOptions {
        prefix,
        concurrency,
        dry_run,
    };
    let report = sync(source, target, &options, &progress)
        .await
        .map_err(anyhow::Error::from)?;
    bar.finish_and_clear();
    if dry_run {
        for key in &report.copied {
            println!("would copy {key}");
        }
        println!(
            "dry run: {} of {} object(s) would be copied ({} bytes), {} already present",
            report.copied.len(),
            report.objects,
            report.copied_bytes,
            report.skipped
        );
    } else {
        println!(
            "copied {} object(s) ({} bytes), skipped {} already present; verified {} object(s), {} bytes, at the destination",
            report.copied.len(),
            report.copied_bytes,
            report.skipped,
            report.objects,
            report.bytes
        );
    }
    Ok(ExitCode::SUCCESS)
}
