//! The work behind the document and image routes, run inline by the API or as
//! background jobs by the workers (`internal.embed_documents`,
//! `internal.generate_image`): the same functions either way.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use zeroscale_core::domain::{Document, Generation, GenerationStatus};
use zeroscale_core::models::{ImageData, ImageRequest};
use zeroscale_core::storage::PutOptions;
use zeroscale_core::{Error, Result};
use zeroscale_db::domain::NewDocument;

use crate::wiring::Services;

/// Task name: embed and store documents.
pub(crate) const EMBED_DOCUMENTS: &str = "internal.embed_documents";
/// Task name: generate the images of a pending generation.
pub(crate) const GENERATE_IMAGE: &str = "internal.generate_image";

/// One text to store.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DocumentInput {
    /// The text, embedded for search.
    pub(crate) text: String,
    /// A JSON object, returned with search hits and filterable by equality.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub(crate) metadata: Value,
}

/// The payload of [`EMBED_DOCUMENTS`].
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct EmbedDocuments {
    pub(crate) user_id: String,
    /// The user's collection name (not yet scoped).
    pub(crate) collection: String,
    pub(crate) model: String,
    pub(crate) documents: Vec<DocumentInput>,
}

/// Embeds `job.documents` with the router and stores them, all or none, in one
/// transaction; returns the stored documents in input order. A failure stores nothing, so
/// a retried job never stores a document twice.
pub(crate) async fn embed_documents(
    services: &Services,
    job: &EmbedDocuments,
) -> Result<Vec<Document>> {
    let texts: Vec<String> = job.documents.iter().map(|d| d.text.clone()).collect();
    let routed = services.models.embed(&job.model, texts).await?;
    let collection = crate::owned::scoped(&job.user_id, &job.collection);
    let news = job
        .documents
        .iter()
        .zip(routed.value.vectors)
        .map(|(input, vector)| NewDocument {
            collection: collection.clone(),
            content: input.text.clone(),
            metadata: input.metadata.clone(),
            embedding_model: job.model.clone(),
            vector,
        })
        .collect();
    services.domain.documents().insert_many(news).await
}

/// The request parameters kept with a generation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ImageParams {
    pub(crate) negative_prompt: Option<String>,
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) count: u32,
    pub(crate) seed: Option<u64>,
}

/// The payload of [`GENERATE_IMAGE`].
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct GenerateImage {
    pub(crate) generation_id: String,
}

/// Runs a pending generation through the router, stores the images as the user's files
/// and settles the credits: charged what the provider cost (rounded up), or refunded in
/// full when every provider failed. A generation that is already finished (a job run
/// twice) is left alone.
pub(crate) async fn generate_image(services: &Services, generation_id: &str) -> Result<Generation> {
    let credits = services.domain.credits();
    let generation = credits.get(generation_id).await?;
    if generation.status != GenerationStatus::Pending {
        return Ok(generation);
    }
    let params: ImageParams = serde_json::from_value(generation.params.clone()).map_err(|e| {
        Error::invalid_input(format!("generation {generation_id} has bad params: {e}"))
    })?;
    let request = ImageRequest {
        model: String::new(),
        prompt: generation.prompt.clone(),
        negative_prompt: params.negative_prompt,
        width: params.width,
        height: params.height,
        count: params.count,
        seed: params.seed,
        extra: Default::default(),
    };
    // The router has already retried and failed over: an error here means no provider
    // could make the images, so the generation fails and the credits come back. Storage
    // and database errors below fail the job instead, which retries it.
    let routed = match services.models.generate(&generation.model, request).await {
        Ok(routed) => routed,
        Err(e) => {
            tracing::warn!(generation = generation_id, error = %e.chain(), "image generation failed; refunding");
            return credits.fail(generation_id, &e.to_string()).await;
        }
    };
    let mut files = Vec::with_capacity(routed.value.images.len());
    for image in &routed.value.images {
        let (data, mime_type) = match &image.data {
            ImageData::Bytes { data, mime_type } => (data.clone(), mime_type.clone()),
            ImageData::Url(url) => {
                zeroscale_models::download_image(
                    url,
                    services.config.server.max_upload_bytes,
                    download_timeout(&services.config, &routed.provider),
                )
                .await?
            }
        };
        let id = crate::owned::new_file_id();
        let key = crate::owned::file_key(&generation.user_id, &id)?;
        services
            .storage
            .put_opts(&key, data, PutOptions::with_content_type(mime_type.clone()))
            .await?;
        files.push(json!({ "file_id": id, "content_type": mime_type, "seed": image.seed }));
    }
    let actual = routed.cost.ceil().max(0.0) as i64;
    let result = json!({
        "files": files,
        "provider": routed.provider,
        "metadata": routed.value.metadata,
    });
    match credits
        .complete(generation_id, &routed.provider, actual, result)
        .await
    {
        Ok(done) => Ok(done),
        // Finished meanwhile by another run of the same job.
        Err(Error::Conflict { .. }) => credits.get(generation_id).await,
        Err(e) => Err(e),
    }
}

/// How long downloading a provider's image may take: the provider's own request timeout,
/// else the server's.
fn download_timeout(config: &zeroscale_core::config::Config, provider: &str) -> Duration {
    use zeroscale_core::config::ProviderConfig;
    let secs = match config.models.providers.get(provider) {
        Some(
            ProviderConfig::Openai(c)
            | ProviderConfig::HuggingFace(c)
            | ProviderConfig::Replicate(c)
            | ProviderConfig::Fal(c)
            | ProviderConfig::Automatic1111(c),
        ) => c.timeout_secs,
        _ => config.server.request_timeout_secs,
    };
    Duration::from_secs(secs.max(1))
}

/// Fails and refunds every generation still pending after
/// `workers.generation_timeout_secs` (its job was lost, or timed out on its last attempt);
/// returns how many. Safe to run from many servers at once: settling is conditional.
pub(crate) async fn sweep_stale_generations(services: &Services) -> Result<usize> {
    let timeout = services.config.workers.generation_timeout_secs;
    let cutoff = zeroscale_core::domain::now()
        - chrono::Duration::seconds(i64::try_from(timeout).unwrap_or(i64::MAX));
    let credits = services.domain.credits();
    // Settlements a crash interrupted (MongoDB without transactions only).
    let mut settled = credits.settle_unsettled(100).await?;
    for generation in credits.stale_pending(cutoff, 100).await? {
        let why = format!("not finished within {timeout}s (workers.generation_timeout_secs)");
        match credits.fail(&generation.id, &why).await {
            Ok(_) => settled += 1,
            // Finished meanwhile.
            Err(Error::Conflict { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    if settled > 0 {
        tracing::warn!(
            settled,
            timeout_secs = timeout,
            "refunded image generations that never finished"
        );
    }
    Ok(settled)
}

/// Runs [`sweep_stale_generations`] every quarter of the timeout (at most every minute)
/// until `stop`.
pub(crate) async fn stale_generation_sweeper(
    services: Services,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let every = std::time::Duration::from_secs(
        (services.config.workers.generation_timeout_secs / 4).clamp(1, 60),
    );
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        if let Err(e) = sweep_stale_generations(&services).await {
            tracing::warn!(error = %e.chain(), "sweeping stale generations failed; trying again later");
        }
    }
}

/// Sweeps storage of what interrupted uploads left (see `Storage::sweep`) at start-up and
/// then every quarter of `server.upload_sweep_after_secs` (at most hourly) until `stop`.
pub(crate) async fn upload_sweeper(
    services: Services,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let age = std::time::Duration::from_secs(services.config.server.upload_sweep_after_secs);
    let every = std::time::Duration::from_secs(
        (services.config.server.upload_sweep_after_secs / 4).clamp(1, 3600),
    );
    loop {
        match services.storage.sweep(age).await {
            Ok(report) if !report.is_empty() => tracing::info!(
                aborted_uploads = report.aborted_uploads,
                removed_files = report.removed_files,
                older_than_secs = age.as_secs(),
                "removed what interrupted uploads left in storage"
            ),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(
                    error = %e.chain(),
                    "sweeping interrupted uploads failed; trying again later"
                );
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
    }
}
