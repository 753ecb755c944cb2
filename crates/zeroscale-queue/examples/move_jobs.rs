//! Carrying a queue's jobs to another backend, as `zeroscale stage move --with-jobs`
//! does: export them page by page, import each under its own id.
//!
//! `cargo run -p zeroscale-queue --example move_jobs` (two in-memory queues; the same
//! calls work between Redis and the database queue).

use std::time::Duration;

use zeroscale_core::config::JobsConfig;
use zeroscale_core::queue::{JobState, NewJob, PageOptions};
use zeroscale_core::{Queue, Result};
use zeroscale_queue::MemoryQueue;

#[tokio::main]
async fn main() -> Result<()> {
    let old = MemoryQueue::new(JobsConfig::default());
    let new = MemoryQueue::new(JobsConfig::default());
    for n in 0..5 {
        let mut job = NewJob::new("default", "email", serde_json::json!({ "n": n }));
        if n == 4 {
            job.options.delay = Some(Duration::from_secs(3600));
        }
        old.enqueue(job).await?;
    }

    let (mut moved, mut after) = (0, None);
    loop {
        let page = old
            .export(
                "default",
                PageOptions {
                    limit: Some(2),
                    after,
                },
            )
            .await?;
        let Some(last) = page.last() else { break };
        after = Some(last.status.id);
        for job in page {
            // Finished jobs stay behind; `import` refuses them.
            if matches!(job.status.state, JobState::Succeeded | JobState::Cancelled) {
                continue;
            }
            if new.import(job).await? {
                moved += 1;
            }
        }
    }
    let stats = new.stats("default").await?;
    println!(
        "moved {moved} jobs: {} queued, {} scheduled",
        stats.queued, stats.scheduled
    );
    Ok(())
}
