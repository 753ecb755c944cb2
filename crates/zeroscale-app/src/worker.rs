//! `zeroscale worker`, and the in-process workers of `zeroscale serve`: the worker
//! runtime with the app's task handlers, stopped gracefully on SIGINT/SIGTERM.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::Value;
use zeroscale_core::Queue;
use zeroscale_core::config::LoadedConfig;
use zeroscale_queue::worker::{Worker, WorkerOptions, WorkerReport};

use crate::wiring::Services;

#[derive(serde::Deserialize)]
struct SleepPayload {
    ms: u64,
}

/// A worker with every task the app handles.
pub(crate) fn build(queue: Arc<dyn Queue>, services: &Services) -> Worker {
    let mut worker = Worker::new(
        queue,
        WorkerOptions::from_config(&services.config.workers, &services.config.jobs),
    );
    // Diagnostics: check the job pipeline end to end (`zeroscale.echo` returns its payload,
    // `zeroscale.sleep` waits `ms` milliseconds). Both are idempotent.
    worker
        .register("zeroscale.echo", |_, payload: Value| async move {
            Ok(Some(payload))
        })
        .register("zeroscale.sleep", |_, p: SleepPayload| async move {
            tokio::time::sleep(Duration::from_millis(p.ms.min(60_000))).await;
            Ok(Some(serde_json::json!({"slept_ms": p.ms})))
        });
    // The background halves of `POST /v1/documents` and `POST /v1/images`.
    let documents = services.clone();
    worker.register(
        crate::tasks::EMBED_DOCUMENTS,
        move |ctx, job: crate::tasks::EmbedDocuments| {
            let services = documents.clone();
            async move {
                ctx.progress(0, format!("embedding {} documents", job.documents.len()));
                let stored = crate::tasks::embed_documents(&services, &job).await?;
                let ids: Vec<String> = stored.into_iter().map(|d| d.id).collect();
                Ok(Some(serde_json::json!({ "document_ids": ids })))
            }
        },
    );
    let images = services.clone();
    worker.register(
        crate::tasks::GENERATE_IMAGE,
        move |_, job: crate::tasks::GenerateImage| {
            let services = images.clone();
            async move {
                let generation =
                    crate::tasks::generate_image(&services, &job.generation_id).await?;
                Ok(Some(serde_json::json!({
                    "generation_id": generation.id,
                    "status": generation.status.as_str(),
                })))
            }
        },
    );
    // The app's own jobs.
    let extensions = std::sync::Arc::clone(&services.extensions);
    extensions.register_jobs(&mut worker, services);
    // The job went to dead letters: settle the generation now, so its credits do not stay
    // reserved until the sweeper's timeout.
    let settle = services.clone();
    worker.on_dead(
        crate::tasks::GENERATE_IMAGE,
        move |job: crate::tasks::GenerateImage, error| {
            let services = settle.clone();
            async move {
                let why = format!("gave up: {error}");
                match services
                    .domain
                    .credits()
                    .fail(&job.generation_id, &why)
                    .await
                {
                    // Settled meanwhile (completed, or failed by another run).
                    Ok(_) | Err(zeroscale_core::Error::Conflict { .. }) => {}
                    Err(e) => tracing::warn!(
                        generation = %job.generation_id,
                        error = %e.chain(),
                        "could not refund a dead image job; the sweeper will"
                    ),
                }
            }
        },
    );
    worker
}

/// Runs a worker until SIGINT/SIGTERM.
pub(crate) async fn run(
    loaded: &LoadedConfig,
    extensions: Arc<crate::app::Extensions>,
) -> anyhow::Result<ExitCode> {
    let config = &loaded.config;
    crate::metrics::install(config);
    crate::models_cmd::start_auto_installs(config);
    crate::serve::warn_if_the_queue_forgets(config);
    let db = crate::wiring::open_db(config).await?;
    crate::serve::auto_migrate(config, &db).await?;
    let services = Services::with_db(config, loaded.sections.clone(), db, extensions)?;
    crate::wiring::check_queue_login(&services.queue).await?;
    crate::auth_sync::start(config, &services.domain, false);
    let queue = services
        .queue
        .get()
        .await
        .map_err(anyhow::Error::from)
        .context("cannot connect to the queue")?;
    if !zeroscale_queue::registry::capabilities(config.queue.kind()).is_some_and(|c| c.shared) {
        tracing::warn!(
            "a separate worker with the in-memory queue sees only its own jobs: use \
             `queue.kind = \"database\"` or `\"redis\"` to share jobs between processes"
        );
    }
    services.extensions.started(&services).await?;
    let worker = build(queue, &services);
    tracing::info!(
        queues = ?config.workers.queues,
        concurrency = config.workers.concurrency,
        backend = config.queue.kind(),
        "worker started"
    );
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    crate::metrics::listen(&config.metrics, services.clone(), stop_rx.clone()).await?;
    let running = tokio::spawn(worker.run(stop_rx));
    let signal = crate::serve::shutdown_signal().await;
    tracing::info!(signal, "stopping: no new jobs; waiting for running ones");
    let _ = stop.send(true);
    let report: WorkerReport = running.await.context("the worker task failed")?;
    tracing::info!(
        succeeded = report.succeeded,
        failed = report.failed,
        released = report.released,
        "worker stopped"
    );
    services.extensions.stopped(&services).await;
    Ok(ExitCode::SUCCESS)
}
