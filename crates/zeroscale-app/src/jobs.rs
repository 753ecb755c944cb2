//! `zeroscale jobs stats|list|show|retry|cancel|dead|purge-dead`.

use std::process::ExitCode;

use zeroscale_core::config::LoadedConfig;
use zeroscale_core::queue::{JobId, JobState, JobStatus, PageOptions};

use crate::cli::JobsCommand;

fn state(name: &str) -> anyhow::Result<JobState> {
    serde_json::from_value(serde_json::Value::String(name.to_owned())).map_err(|_| {
        anyhow::anyhow!(
            "unknown state `{name}`: use queued, scheduled, running, failed, dead, succeeded or cancelled"
        )
    })
}

fn line(job: &JobStatus) -> String {
    format!(
        "{}  {:<9}  {:<24}  attempts {}/{}  {}",
        job.id,
        job.state.as_str(),
        job.task,
        job.attempts,
        job.max_attempts,
        job.last_error.as_deref().unwrap_or("")
    )
}

fn err(e: zeroscale_core::Error) -> anyhow::Error {
    // `main` prints errors with `{:#}`, which includes every source.
    anyhow::Error::from(e)
}

pub(crate) async fn run(
    loaded: &LoadedConfig,
    queue_name: &str,
    command: JobsCommand,
) -> anyhow::Result<ExitCode> {
    let config = &loaded.config;
    let queue = crate::wiring::connect_queue(config).await?;
    if !zeroscale_queue::registry::capabilities(config.queue.kind()).is_some_and(|c| c.shared) {
        eprintln!(
            "note: the in-memory queue lives inside each process; this command sees only its \
             own (empty) queue. Use `queue.kind = \"database\"` or `\"redis\"` to manage jobs \
             from the CLI."
        );
    }
    match command {
        JobsCommand::Stats => {
            let s = queue.stats(queue_name).await.map_err(err)?;
            println!("queue `{queue_name}` ({})", config.queue.kind());
            for (name, n) in [
                ("queued", s.queued),
                ("scheduled", s.scheduled),
                ("running", s.running),
                ("failed", s.failed),
                ("dead", s.dead),
                ("succeeded", s.succeeded),
                ("cancelled", s.cancelled),
            ] {
                println!("  {name:<10} {n}");
            }
        }
        JobsCommand::List {
            state: wanted,
            limit,
        } => {
            let wanted = wanted.as_deref().map(state).transpose()?;
            let page = PageOptions {
                limit: Some(limit),
                after: None,
            };
            for job in queue.list(queue_name, wanted, page).await.map_err(err)? {
                println!("{}", line(&job));
            }
        }
        JobsCommand::Show { id } => {
            let id: JobId = id.parse().map_err(err)?;
            let job = queue.status(id).await.map_err(err)?;
            println!("{}", serde_json::to_string_pretty(&job)?);
        }
        JobsCommand::Retry { id } => {
            let id: JobId = id.parse().map_err(err)?;
            queue.requeue_dead(id).await.map_err(err)?;
            println!("requeued {id}");
        }
        JobsCommand::Cancel { id } => {
            let id: JobId = id.parse().map_err(err)?;
            let state = queue.cancel(id).await.map_err(err)?;
            println!("{id} is {state}");
        }
        JobsCommand::Dead { limit } => {
            let page = PageOptions {
                limit: Some(limit),
                after: None,
            };
            for job in queue.list_dead(queue_name, page).await.map_err(err)? {
                println!("{}", line(&job));
            }
        }
        JobsCommand::PurgeDead => {
            let n = queue.purge_dead(queue_name).await.map_err(err)?;
            println!("deleted {n} dead job(s) from `{queue_name}`");
        }
    }
    Ok(ExitCode::SUCCESS)
}
