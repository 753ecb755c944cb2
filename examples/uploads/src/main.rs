//! An axum service on the zeroscale crates alone: `PUT /uploads/{name}` stores the body in
//! object storage and enqueues a job that counts its lines and bytes; `GET
//! /uploads/{name}/stats` returns the counts once the job ran. Storage, queue and workers
//! come from config (`config/*.toml`, `UPLOADS_*` env vars): each backend swaps by config.
//! Handlers return zeroscale's `Error` (its `axum` feature): 404 for a missing upload.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::{Json, Router, body::Bytes, http::StatusCode, routing::get};
use serde_json::{Value, json};
use zeroscale_core::config::{ConfigSources, load};
use zeroscale_core::{Error, ObjectKey, Queue, Storage, StorageExt, queue::NewJob};
use zeroscale_queue::worker::{Worker, WorkerOptions};
use zeroscale_storage::StorageContext;

type Backends = (Arc<dyn Storage>, Arc<dyn Queue>);

fn key(dir: &str, name: &str) -> Result<ObjectKey, Error> {
    ObjectKey::try_from(format!("{dir}/{name}"))
}

async fn upload(
    State((storage, queue)): State<Backends>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<StatusCode, Error> {
    storage.put(&key("uploads", &name)?, body).await?;
    let job = NewJob::new("default", "uploads.stats", json!({ "name": name }));
    queue.enqueue(job).await?;
    Ok(StatusCode::ACCEPTED)
}

async fn stats(
    State((storage, _)): State<Backends>,
    Path(name): Path<String>,
) -> Result<Json<Value>, Error> {
    Ok(Json(storage.get_json(&key("stats", &name)?).await?))
}

/// The job: counts the upload's lines and bytes into `stats/{name}` (idempotent).
async fn count(storage: Arc<dyn Storage>, payload: Value) -> Result<Option<Value>, Error> {
    let name = payload["name"].as_str().unwrap_or_default();
    let body = storage.get_bytes(&key("uploads", name)?).await?;
    let lines = body.iter().filter(|b| **b == b'\n').count();
    let stats = json!({ "bytes": body.len(), "lines": lines });
    storage.put_json(&key("stats", name)?, &stats).await?;
    Ok(Some(stats))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = load(&ConfigSources::for_app("uploads"))?.config;
    let context = StorageContext::from_config(&config)?;
    let storage = zeroscale_storage::connect(&config.storage, &context)?;
    let queue = zeroscale_queue::connect(&config.queue, &config.jobs).await?;

    let options = WorkerOptions::from_config(&config.workers, &config.jobs);
    let mut worker = Worker::new(queue.clone(), options);
    let store = storage.clone();
    worker.register("uploads.stats", move |_, job| count(store.clone(), job));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(worker.run(stopped));

    let app = Router::new()
        .route("/uploads/{name}", axum::routing::put(upload))
        .route("/uploads/{name}/stats", get(stats))
        .with_state((storage, queue));
    let listener = tokio::net::TcpListener::bind(config.server.addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    let ctrl_c = async { tokio::signal::ctrl_c().await.unwrap_or_default() };
    axum::serve(listener, app)
        .with_graceful_shutdown(ctrl_c)
        .await?;
    stop.send(true)?;
    worker.await?;
    Ok(())
}
