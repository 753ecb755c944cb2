//! `zeroscale stage move --from <profile|config> --to <profile|config>`: moves a whole app
//! to another stage: checks that the source is quiet (no server answering on its address,
//! no jobs waiting in its shared queue), copies the database (`db copy`), syncs the files
//! (`storage sync`), checks row and object counts on the target, and says what to deploy
//! next. `--dry-run` shows the plan and changes nothing.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use zeroscale_core::config::Config;
use zeroscale_db::backup::{self, BackupOptions, RestoreOptions};
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

/// What becomes of the source's jobs.
#[derive(Debug)]
enum JobsPlan {
    /// Nothing to move: the source queue is drained, or lived in the source's server.
    Nothing,
    /// Both stages use the same shared queue: the jobs stay where they are.
    Shared,
    /// Move the jobs of these queues (name, unfinished and dead jobs) to the target.
    Move(Vec<(String, u64)>),
}

/// Whether two configs name one shared queue (the same Redis keys: one server's URL, or
/// the same cluster nodes, and the same prefix).
fn same_queue(source: &Config, target: &Config) -> bool {
    use zeroscale_core::config::QueueConfig;
    match (&source.queue, &target.queue) {
        (QueueConfig::Redis(a), QueueConfig::Redis(b)) => {
            let server = |c: &zeroscale_core::config::RedisQueueConfig| {
                (
                    c.cluster_nodes.is_empty().then(|| c.url.clone()),
                    c.cluster_nodes.clone(),
                )
            };
            server(a) == server(b) && a.key_prefix == b.key_prefix
        }
        _ => false,
    }
}

/// Refuses a source that may still change, or that holds jobs when they are not to
/// move; says what becomes of the jobs.
async fn check_source_is_quiet(
    source: &Config,
    target: &Config,
    with_jobs: bool,
    notes: &mut Vec<String>,
) -> anyhow::Result<JobsPlan> {
    if server_answers(source).await {
        anyhow::bail!(
            "a zeroscale server answers at {} with the source config: stop every source server \
             and worker first, so nothing is written behind the copy (jobs still queued in an \
             in-memory queue end with the server: let them finish first)",
            source.server.addr
        );
    }
    if !zeroscale_queue::registry::capabilities(source.queue.kind()).is_some_and(|c| c.shared) {
        notes.push(
            "the source's in-memory queue lived inside its server process: jobs still queued \
             when it stopped are gone (nothing to move)"
                .to_owned(),
        );
        return Ok(JobsPlan::Nothing);
    }
    if same_queue(source, target) {
        notes.push(format!(
            "both stages share the queue `{}`: its jobs stay where they are",
            source.queue.kind()
        ));
        return Ok(JobsPlan::Shared);
    }
    let queue = crate::wiring::connect_queue(source)
        .await
        .context("cannot reach the source queue to see what it holds")?;
    let mut to_move = Vec::new();
    for name in &source.workers.queues {
        let stats = queue.stats(name).await.map_err(anyhow::Error::from)?;
        let waiting = stats.queued + stats.scheduled + stats.running + stats.failed;
        if with_jobs {
            if waiting + stats.dead > 0 {
                to_move.push((name.clone(), waiting + stats.dead));
            }
            if stats.running > 0 {
                notes.push(format!(
                    "queue `{name}`: {} job(s) were running when the source stopped; they are \
                     queued again on the target (make sure no source worker still runs them)",
                    stats.running
                ));
            }
        } else if waiting > 0 {
            anyhow::bail!(
                "the source queue `{name}` still holds {waiting} job(s) (queued {}, scheduled \
                 {}, running {}, waiting to retry {}): run the workers until it is drained \
                 (`zeroscale jobs stats --queue {name}`), or pass --with-jobs to move them",
                stats.queued,
                stats.scheduled,
                stats.running,
                stats.failed
            );
        }
    }
    if to_move.is_empty() {
        notes.push(format!(
            "the source queue ({}) is drained",
            source.workers.queues.join(", ")
        ));
        return Ok(JobsPlan::Nothing);
    }
    if !zeroscale_queue::registry::capabilities(target.queue.kind()).is_some_and(|c| c.shared) {
        anyhow::bail!(
            "--with-jobs: the target's queue is `{}`, which lives inside its server and cannot \
             be filled from outside; drain the source queue instead, or give the target a \
             shared queue (`database` or `redis`)",
            target.queue.kind()
        );
    }
    let total: u64 = to_move.iter().map(|(_, n)| n).sum();
    notes.push(format!(
        "{total} job(s) to move: {}",
        to_move
            .iter()
            .map(|(q, n)| format!("{q} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    Ok(JobsPlan::Move(to_move))
}

/// Moves the jobs of `queues` from the source's queue to the target's, page by page, and
/// checks the target holds them all. Jobs already on the target (a move run again) are
/// left as they are. Returns the jobs moved.
async fn move_jobs(
    source: &Config,
    target: &Config,
    queues: &[(String, u64)],
) -> anyhow::Result<u64> {
    use zeroscale_core::queue::{JobState, PageOptions};
    let from = crate::wiring::connect_queue(source)
        .await
        .context("--from: the queue")?;
    let to = crate::wiring::connect_queue(target)
        .await
        .context("--to: the queue")?;
    let mut total = 0;
    for (name, expected) in queues {
        let (mut moved, mut there, mut after) = (0u64, 0u64, None);
        loop {
            let page = from
                .export(
                    name,
                    PageOptions {
                        limit: Some(500),
                        after,
                    },
                )
                .await
                .map_err(anyhow::Error::from)
                .with_context(|| format!("reading the jobs of `{name}` from the source"))?;
            let Some(last) = page.last() else { break };
            after = Some(last.status.id);
            for job in page {
                if matches!(job.status.state, JobState::Succeeded | JobState::Cancelled) {
                    continue;
                }
                let id = job.status.id;
                let new = to
                    .import(job)
                    .await
                    .map_err(anyhow::Error::from)
                    .with_context(|| {
                        format!(
                            "job {id} of `{name}` did not move ({moved} did): run the move \
                             again, jobs already moved are skipped"
                        )
                    })?;
                if new {
                    moved += 1;
                } else {
                    there += 1;
                }
            }
            tracing::info!(queue = %name, moved, already_there = there, "moving jobs");
        }
        if moved + there < *expected {
            anyhow::bail!(
                "queue `{name}`: {expected} job(s) at the source, only {} read: did something \
                 take jobs from the source meanwhile? Stop it and run the move again",
                moved + there
            );
        }
        // Every job moved now is unfinished or dead there (those already there may have
        // run since).
        let stats = to.stats(name).await.map_err(anyhow::Error::from)?;
        let held = stats.queued + stats.scheduled + stats.running + stats.failed + stats.dead;
        if held < moved {
            anyhow::bail!(
                "queue `{name}`: {moved} job(s) moved but the target holds {held}: run the \
                 move again"
            );
        }
        eprintln!("jobs:     `{name}`: {moved} moved, {there} already there");
        total += moved + there;
    }
    Ok(total)
}

/// `zeroscale stage move`.
pub(crate) async fn run(
    command: StageCommand,
    base: &zeroscale_core::config::ConfigSources,
) -> anyhow::Result<ExitCode> {
    let StageCommand::Move {
        from,
        to,
        dry_run,
        replace,
        with_jobs,
        json,
    } = command;
    let source =
        crate::wiring::load_named(&from, base).with_context(|| format!("--from {from}"))?;
    let target = crate::wiring::load_named(&to, base).with_context(|| format!("--to {to}"))?;
    let mut notes = Vec::new();
    let jobs = check_source_is_quiet(&source, &target, with_jobs, &mut notes).await?;

    let source_db = crate::wiring::open_db(&source).await.context("--from")?;
    let target_db = crate::wiring::open_db(&target).await.context("--to")?;
    let (source_files, source_files_name) =
        crate::storage_cmd::open_config(&source).context("--from")?;
    let (target_files, target_files_name) =
        crate::storage_cmd::open_config(&target).context("--to")?;
    let counts = backup::table_counts(&source_db, BackupOptions::default())
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
        eprintln!("jobs:     {note}");
    }

    let sync_options = SyncOptions {
        dry_run,
        ..Default::default()
    };
    let jobs_to_move: u64 = match &jobs {
        JobsPlan::Move(queues) => queues.iter().map(|(_, n)| n).sum(),
        JobsPlan::Nothing | JobsPlan::Shared => 0,
    };
    // Stages that share the database (or the bucket) leave it where it is: stage 3 to
    // stage 4 changes the queue only. Copying a database onto itself would need
    // `--replace`, which would empty it first.
    let same_db = source_db.location() == target_db.location();
    let same_files = source_files_name == target_files_name;
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
                    "jobs_to_move": jobs_to_move,
                    "notes": notes,
                })
            );
        } else {
            println!("dry run: nothing was changed. The move would:");
            if same_db {
                println!("  leave the database where it is (both stages use it)");
            } else {
                println!("  copy {rows} rows in {} tables:", counts.len());
                for (table, n) in &counts {
                    println!("    {table:<20} {n:>10}");
                }
            }
            if same_files {
                println!("  leave the files where they are (both stages use them)");
            } else {
                println!(
                    "  copy {} of {} file(s) ({} bytes), {} already there",
                    plan.copied.len(),
                    plan.objects,
                    plan.copied_bytes,
                    plan.skipped
                );
            }
            if jobs_to_move > 0 {
                println!("  move {jobs_to_move} job(s) to the target queue");
            }
        }
        return Ok(ExitCode::SUCCESS);
    }

    let (rows_copied, tables_copied) = if same_db {
        eprintln!(
            "database: both stages use {}: it stays",
            source_db.location()
        );
        (0, 0)
    } else {
        eprintln!("copying the database ...");
        let mut reporter = crate::backup_cmd::Reporter::new();
        let report = backup::copy(
            &source_db,
            &target_db,
            BackupOptions::default(),
            RestoreOptions { replace },
            &mut |e| reporter.event(e),
        )
        .await
        .map_err(anyhow::Error::from)
        .context("the database copy failed; the target database is unchanged")?;
        // The target now has what the source had, table by table.
        let after = backup::table_counts(&target_db, BackupOptions::default())
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
        (report.rows, report.manifest.tables.len())
    };
    let files = if same_files {
        eprintln!("files: both stages use the {source_files_name}: they stay");
        zeroscale_storage::sync::SyncReport::default()
    } else {
        eprintln!("copying the files ...");
        sync(source_files, target_files, &sync_options, &|event| {
            if let zeroscale_storage::sync::SyncEvent::Planned { objects, bytes } = event {
                tracing::info!(objects, bytes, "files to consider");
            }
        })
        .await
        .map_err(anyhow::Error::from)
        .context(
            "the files did not all copy (the database was copied): run the move's \
             `storage sync` again, it resumes",
        )?
    };
    let jobs_moved = match &jobs {
        JobsPlan::Move(queues) => {
            eprintln!("moving the jobs ...");
            move_jobs(&source, &target, queues)
                .await
                .context("the database and files were copied, the jobs not all")?
        }
        JobsPlan::Nothing | JobsPlan::Shared => 0,
    };
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
                "rows": rows_copied,
                "tables": tables_copied,
                "objects": files.objects,
                "objects_copied": files.copied.len(),
                "jobs_moved": jobs_moved,
                "notes": notes,
                "next": next,
            })
        );
    } else {
        println!(
            "moved {} rows in {} tables and {} file(s) ({} copied, {} already there){}; row \
             and object counts checked on the target.",
            rows_copied,
            tables_copied,
            files.objects,
            files.copied.len(),
            files.skipped,
            if jobs_moved > 0 {
                format!(" and {jobs_moved} job(s)")
            } else {
                String::new()
            }
        );
        println!("next: deploy the target config: {next}");
    }
    Ok(ExitCode::SUCCESS)
}
