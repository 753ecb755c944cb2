//! `zeroscale migrate up|down|status|fresh`: database migrations for operators.

use std::process::ExitCode;

use anyhow::{Context as _, bail};
use zeroscale_core::config::LoadedConfig;
use zeroscale_db::Db;

use crate::cli::MigrateCommand;

pub(crate) async fn run(
    loaded: &LoadedConfig,
    command: MigrateCommand,
) -> anyhow::Result<ExitCode> {
    let config = &loaded.config.database;
    let db = Db::connect(config)
        .await
        .map_err(anyhow::Error::from)
        .context("cannot open the database")?;
    let at = format!("{} database at {}", db.engine(), db.location());
    let result = match command {
        MigrateCommand::Up => {
            let applied = db.migrate_up().await.map_err(anyhow::Error::from)?;
            println!("applied {applied} migration(s) to the {at}");
            Ok(ExitCode::SUCCESS)
        }
        MigrateCommand::Down { steps } => {
            db.migrate_down(steps).await.map_err(anyhow::Error::from)?;
            println!("rolled back {steps} migration(s) of the {at}");
            Ok(ExitCode::SUCCESS)
        }
        MigrateCommand::Status => {
            let status = db.migrate_status().await.map_err(anyhow::Error::from)?;
            println!("migrations of the {at}:");
            for m in &status {
                let state = if m.applied { "applied" } else { "pending" };
                println!("  {state:<8} {}", m.name);
            }
            let pending = status.iter().filter(|m| !m.applied).count();
            if pending > 0 {
                println!("{pending} pending: run `zeroscale migrate up`");
            }
            Ok(ExitCode::SUCCESS)
        }
        MigrateCommand::Fresh { yes } => {
            if !yes {
                bail!("`migrate fresh` drops every table of the {at}: add --yes to confirm");
            }
            db.migrate_fresh().await.map_err(anyhow::Error::from)?;
            println!("dropped every table and migrated the {at} from scratch");
            Ok(ExitCode::SUCCESS)
        }
    };
    let _ = db.close().await;
    result
}
