//! `zeroscale stage move --from <profile|config> --to <profile|config>`: moves a whole app
//! to another stage: checks that the source is quiet (no server answering on its address,
//! no jobs waiting in its shared queue), copies the database (`db copy`), syncs the files
//! (`storage sync`), checks row and object counts on the target, and says what to deploy
//! next. `--dry-run` shows the plan and changes nothing.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use zeroscale_core::config::Config;
use zeroscale_db::backup::{self, RestoreOptions};
use zeroscale_storage::sync::{SyncOptions, sync};

use crate::cli::StageCommand;

/// Whether a zeroscale server answers `/healthz` at the config's address.
async fn server_answers(config: &Config) -> bool {
    let addr = config.server.addr;
    let Ok(Ok(mut stream)) =
        tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr)).await
    else {
        return false;
    };
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut head = [0u8; 512];
    matches!(
        tokio::time::timeout(Duration::from_secs(2), stream.read(&mut head)).await,
        Ok(Ok(n)) if String::from_utf8_lossy(&head[..n]).contains("\"status\"")
    )
}

/// Refuses a source that may still change or that holds jobs; says what happens to the
/// jobs of an in-memory queue.
async fn check_source_is_quiet(config: &Config, notes: &mut Vec<String>) -> anyhow::Result<()> {
    if server_answers(config).await {
        anyhow::bail!(
            "a zeroscale server answers at {} with the source config: stop every source server \
             first, so nothing is written behind the copy (jobs still queued in an in-memory \
             queue end with the server: let them finish, `zeroscale jobs stats` on a Redis queue)",
            config.server.addr
        );
    }
    if !zeroscale_queue::registry::capabilities(config.queue.kind()).is_some_and(|c| c.shared) {
        notes.push(
            "the source's in-memory queue lived inside its server process: jobs still queued \
             when it stopped are gone (nothing to move)"
                .to_owned(),
        );
        return Ok(());
    }
    let queue = crate::wiring::connect_queue(config)
        .await
        .context("cannot reach the source queue to check it is drained")?;
    for name in &config.workers.queues {
        let stats = queue.stats(name).await.map_err(anyhow::Error::from)?;
        let waiting = stats.queued + stats.scheduled + stats.running + stats.failed;
        if waiting > 0 {
            anyhow::bail!(
                "the source queue `{name}` still holds {waiting} job(s) (queued {}, scheduled \
                 {}, running {}, waiting to retry {}): run the workers until it is drained \
                 (`zeroscale jobs stats --queue {name}`), then move; copying queued jobs is \
                 not built yet",
                stats.queued,
                stats.scheduled,
                stats.running,
                stats.failed
            );
        }
    }
    notes.push(format!(
        "the source queue ({}) is drained",
        config.workers.queues.join(", ")
    ));
    Ok(())
}

/// `zeroscale stage move`.
pub(crate) async fn run(command: StageCommand) -> anyhow::Result<ExitCode> {
    let StageCommand::Move {
        from,
        to,
        dry_run,
        replace,
        json,
    } = command;
    let source = crate::wiring::load_named(&from).with_context(|| format!("--from {from}"))?;
    let target = crate::wiring::load_named(&to).with_context(|| format!("--to {to}"))?;
    let mut notes = Vec::new();
    check_source_is_quiet(&source, &mut notes).await?;

    let source_db = crate::wiring::open_db(&source).await.context("--from")?;
    let target_db = crate::wiring::open_db(&target).await.context("--to")?;
    let (source_files, source_files_name) =
        crate::storage_cmd::open_config(&source).context("--from")?;
    let (target_files, target_files_name) =
        crate::storage_cmd::open_config(&target).context("--to")?;
    let counts = backup::table_counts(&source_db)
        .await
        .map_err(anyhow::Error::from)?;
    let rows: u64 = counts.iter().map(|(_, n)| n).sum();
    eprintln!(
        "database: {} ({} rows) -> {}",
        source_db.location(),
        rows,
        target_db.location()
    );
    eprintln!("files:    {source_files_name} -> {target_files_name}");
    for note in &notes {
        eprintln!("queue:    {note}");
    }

    let sync_options = SyncOptions {
        dry_run,
        ..Default::default()
    };
    if dry_run {
        let plan = sync(
            source_files.clone(),
            target_files.clone(),
            &sync_options,
            &|_| {},
        )
        .await
        .map_err(anyhow::Error::from)?;
        if json {
            println!(
                "{}",
                serde_json::json!({
                    "action": "stage move (dry run)",
                    "tables": counts.iter().map(|(t, n)| serde_json::json!({"name": t, "rows": n})).collect::<Vec<_>>(),
                    "objects": plan.objects,
                    "objects_to_copy": plan.copied.len(),
                    "notes": notes,
                })
            );
        } else {
            println!("dry run: nothing was changed. The move would:");
            println!("  copy {rows} rows in {} tables:", counts.len());
            for (table, n) in &counts {
                println!("    {table:<20} {n:>10}");
            }
            println!(
                "  copy {} of {} file(s) ({} bytes), {} already there",
                plan.copied.len(),
                plan.objects,
                plan.copied_bytes,
                plan.skipped
            );
        }
        return Ok(ExitCode::SUCCESS);
    }

    eprintln!("copying the database ...");
    let mut reporter = crate::backup_cmd::Reporter::new();
    let report = backup::copy(
        &source_db,
        &target_db,
        RestoreOptions { replace },
        &mut |e| reporter.event(e),
    )
    .await
    .map_err(anyhow::Error::from)
    .context("the database copy failed; the target database is unchanged")?;
    eprintln!("copying the files ...");
    let files = sync(source_files, target_files, &sync_options, &|event| {
        if let zeroscale_storage::sync::SyncEvent::Planned { objects, bytes } = event {
            tracing::info!(objects, bytes, "files to consider");
        }
    })
        .await
        .map_err(anyhow::Error::from)
        .context("the files did not all copy (the database was copied): run the move's `storage sync` again, it resumes")?;
    // The target now has what the source had, table by table.
    let after = backup::table_counts(&target_db)
        .await
        .map_err(anyhow::Error::from)?;
    for (table, n) in &counts {
        let got = after
            .iter()
            .find(|(t, _)| t == table)
            .map_or(0, |(_, g)| *g);
        if got != *n {
            anyhow::bail!("table `{table}`: {n} rows at the source, {got} at the target");
        }
    }
    let next = if to.ends_with(".toml") {
        format!("zeroscale --config {to} serve")
    } else {
        format!("zeroscale --profile {to} serve")
    };
    if json {
        println!(
            "{}",
            serde_json::json!({
                "action": "stage move",
                "rows": report.rows,
                "tables": report.manifest.tables,
                "objects": files.objects,
                "objects_copied": files.copied.len(),
                "notes": notes,
                "next": next,
            })
        );
    } else {
        println!(
            "moved {} rows in {} tables and {} file(s) ({} copied, {} already there); row and \
             object counts checked on the target.",
            report.rows,
            report.manifest.tables.len(),
            files.objects,
            files.copied.len(),
            files.skipped
        );
        println!("next: deploy the target config: {next}");
    }
    Ok(ExitCode::SUCCESS)
}
