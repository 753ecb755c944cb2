//! The `zeroscale` binary: parses the command line, loads the config and runs the command.
//!
//! # Feature flags
//!
//! Every backend is compiled in by default, so a config change alone swaps a backend.
//!
//! | feature | what it enables | default |
//! |---|---|---|
//! | `sqlite` | SQLite database | yes |
//! | `postgres` | PostgreSQL database | yes |
//! | `pgvector` | vector search through pgvector where the server has it | yes |
//! | `local-storage` | local-folder storage | yes |
//! | `s3` | S3 and R2 storage | yes |
//! | `redis` | Redis job queue | yes |
//! | `local-models` | local embedding model | yes |
//! | `remote-models` | remote model APIs | yes |

mod api;
mod auth_sync;
mod backup_cmd;
mod checks;
mod cli;
mod doctor;
mod headers;
mod jobs;
mod limits;
mod logging;
mod migrate;
mod models_cmd;
mod owned;
mod request_id;
mod serve;
mod stage_cmd;
mod storage_cmd;
mod tasks;
mod throttle;
mod users;
mod wiring;
mod worker;

use std::process::ExitCode;

use clap::Parser;
use zeroscale_core::config::{self, LoadedConfig};

use crate::cli::{Cli, Command, ConfigCommand};

fn main() -> ExitCode {
    // Every file and folder zeroscale creates (the database and its WAL, keys, caches,
    // uploads, backups) is private to its user: 0600 and 0700. Set before any thread
    // starts, since the mask is the process's.
    #[cfg(unix)]
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let cli = Cli::parse();
    let loaded = match config::load(&cli.sources()).and_then(|loaded| {
        zeroscale_models::registry::validate(&loaded.config.models)?;
        Ok(loaded)
    }) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("zeroscale: {}", e.chain());
            return ExitCode::from(2);
        }
    };
    let log_format = cli.log_format();
    match cli.command.unwrap_or_default() {
        Command::Config {
            command: ConfigCommand::Show,
        } => show_config(&loaded),
        command => run_async(log_format, loaded, command),
    }
}

fn show_config(loaded: &LoadedConfig) -> ExitCode {
    match loaded.to_annotated_toml() {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("zeroscale: {}", e.chain());
            ExitCode::FAILURE
        }
    }
}

fn run_async(
    log_format: Option<config::LogFormat>,
    mut loaded: LoadedConfig,
    command: Command,
) -> ExitCode {
    if let Some(format) = log_format {
        loaded.config.log.format = format;
    }
    logging::init(&loaded.config.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("zeroscale: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match command {
            Command::Serve => serve::run(loaded).await,
            Command::Doctor => doctor::run(&loaded).await,
            Command::Worker => worker::run(&loaded).await,
            Command::Jobs { queue, command } => jobs::run(&loaded, &queue, command).await,
            Command::Migrate { command } => migrate::run(&loaded, command).await,
            Command::Storage { command } => storage_cmd::run(command).await,
            Command::Users { command } => users::run(&loaded, command).await,
            Command::Models { command } => models_cmd::run(&loaded, command).await,
            Command::Backup {
                output,
                with_jobs,
                json,
            } => backup_cmd::backup(&loaded, output, with_jobs, json).await,
            Command::Restore {
                file,
                replace,
                json,
            } => backup_cmd::restore(&loaded, file, replace, json).await,
            Command::Db { command } => backup_cmd::db(command).await,
            Command::Stage { command } => stage_cmd::run(command).await,
            Command::Config { .. } => unreachable!("handled before the runtime starts"),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            let text = describe(&e);
            tracing::error!("{text}");
            eprintln!("zeroscale: {text}");
            // A config error (exit 2) is the operator's to fix; anything else is 1.
            let config_error = e
                .chain()
                .filter_map(|c| c.downcast_ref::<zeroscale_core::Error>())
                .any(|c| c.kind() == zeroscale_core::ErrorKind::Config);
            if config_error {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// An error with its contexts, then the core error's own account of itself (its message
/// and sources without repeats, [`zeroscale_core::Error::chain`]).
fn describe(e: &anyhow::Error) -> String {
    let mut parts = Vec::new();
    for cause in e.chain() {
        if let Some(core) = cause.downcast_ref::<zeroscale_core::Error>() {
            parts.push(core.chain());
            break;
        }
        parts.push(cause.to_string());
    }
    parts.join(": ")
}
