//! Documents: add texts to one of the caller's collections (embedded inline for small
//! batches, by a background job for larger ones) and search a collection by meaning.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use zeroscale_core::domain::Document;
use zeroscale_core::queue::NewJob;
use zeroscale_db::domain::MAX_TOP_K;

use super::ApiState;
use super::auth::Caller;
use super::error::{ApiError, ApiResult, ErrorBody, Json};
use super::jobs::{JobView, submit};
use crate::tasks::{self, DocumentInput, EmbedDocuments};

/// Batches up to this size are embedded during the request.
pub(crate) const INLINE_MAX: usize = 16;
/// Most documents in one request.
pub(crate) const MAX_DOCUMENTS: usize = 1000;
fn check_collection(name: &str) -> ApiResult<()> {
    Ok(crate::owned::check_name("collection", name)?)
}

/// A stored document.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DocumentView {
    id: String,
    collection: String,
    text: String,
    #[schema(value_type = Object)]
    metadata: serde_json::Value,
    /// The model id that embedded it.
    model: String,
    created_at: DateTime<Utc>,
}

fn view(document: Document, collection: &str) -> DocumentView {
    DocumentView {
        id: document.id,
        collection: collection.to_owned(),
        text: document.content,
        metadata: document.metadata,
        model: document.embedding_model,
        created_at: document.created_at,
    }
}

/// Texts to add.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AddDocuments {
    /// One of the caller's collections (created on first use).
    #[schema(pattern = r"^[A-Za-z0-9._-]{1,90}$")]
    collection: String,
    /// 1 to 1000 texts.
    #[schema(min_items = 1, max_items = 1000)]
    documents: Vec<DocumentInput>,
    /// The embedding model id; default `models.default_embedding_model`.
    #[serde(default)]
    model: Option<String>,
    /// Embed in a background job even when the batch is small.
    #[serde(default)]
    background: bool,
}

/// Documents stored, or the job storing them.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AddedDocuments {
    /// The stored documents (inline), in input order.
    documents: Option<Vec<DocumentView>>,
    /// The job embedding them (background); its result lists their ids.
    job: Option<JobView>,
}

/// Adds texts to a collection. Up to 16 are embedded during the request (201); larger
/// batches, or `background: true`, go to a job (202) whose result lists the new ids.
#[utoipa::path(
    post, path = "/v1/documents", tag = "documents",
    security(("bearer" = []), ("api_key" = [])),
    request_body = AddDocuments,
    responses(
        (status = 201, description = "embedded and stored", body = AddedDocuments),
        (status = 202, description = "a job is embedding them", body = AddedDocuments),
        (status = 400, description = "invalid fields", body = ErrorBody),
        (status = 404, description = "unknown model id", body = ErrorBody),
        (status = 503, description = "no embedding provider could serve", body = ErrorBody),
    )
)]
pub(crate) async fn add_documents(
    State(state): State<ApiState>,
    caller: Caller,
    Json(body): Json<AddDocuments>,
) -> ApiResult<Response> {
    check_collection(&body.collection)?;
    if body.documents.is_empty() || body.documents.len() > MAX_DOCUMENTS {
        return Err(ApiError::bad_request(format!(
            "documents: 1 to {MAX_DOCUMENTS} per request"
        )));
    }
    if let Some((i, _)) = body
        .documents
        .iter()
        .enumerate()
        .find(|(_, d)| !(d.metadata.is_object() || d.metadata.is_null()))
    {
        return Err(ApiError::bad_request(format!(
            "documents[{i}].metadata must be a JSON object"
        )));
    }
    let model = body
        .model
        .unwrap_or_else(|| state.config.models.default_embedding_model.clone());
    let job = EmbedDocuments {
        user_id: caller.user.id.clone(),
        collection: body.collection.clone(),
        model,
        documents: body.documents,
    };
    if job.documents.len() <= INLINE_MAX && !body.background {
        let stored = tasks::embed_documents(&state, &job).await?;
        let documents = stored
            .into_iter()
            .map(|d| view(d, &body.collection))
            .collect();
        return Ok((
            StatusCode::CREATED,
            Json(AddedDocuments {
                documents: Some(documents),
                job: None,
            }),
        )
            .into_response());
    }
    let payload = serde_json::to_value(&job).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let status = submit(
        &state,
        &caller.user.id,
        NewJob::new("default", tasks::EMBED_DOCUMENTS, payload),
    )
    .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(AddedDocuments {
            documents: None,
            job: Some(status.into()),
        }),
    )
        .into_response())
}

/// A semantic search.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SearchRequest {
    /// One of the caller's collections.
    #[schema(pattern = r"^[A-Za-z0-9._-]{1,90}$")]
    collection: String,
    /// What to look for, in words.
    query: String,
    /// How many hits: default 5, at most 100.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 100)]
    top_k: Option<usize>,
    /// Only documents whose metadata has each of these keys with an equal value.
    #[serde(default)]
    #[schema(value_type = Object)]
    filter: Option<serde_json::Map<String, serde_json::Value>>,
    /// The embedding model id; default `models.default_embedding_model` (use the one the
    /// documents were added with).
    #[serde(default)]
    model: Option<String>,
}

/// One hit.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SearchHitView {
    /// Cosine similarity, -1 to 1.
    score: f32,
    document: DocumentView,
}

/// Hits, best first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SearchResults {
    data: Vec<SearchHitView>,
}

/// Searches a collection by meaning: the query is embedded and compared with every
/// document (cosine), best first.
#[utoipa::path(
    post, path = "/v1/documents/search", tag = "documents",
    security(("bearer" = []), ("api_key" = [])),
    request_body = SearchRequest,
    responses(
        (status = 200, description = "hits, best first", body = SearchResults),
        (status = 400, description = "invalid fields", body = ErrorBody),
        (status = 404, description = "unknown model id", body = ErrorBody),
        (status = 503, description = "no embedding provider could serve", body = ErrorBody),
    )
)]
pub(crate) async fn search_documents(
    State(state): State<ApiState>,
    caller: Caller,
    Json(body): Json<SearchRequest>,
) -> ApiResult<Json<SearchResults>> {
    check_collection(&body.collection)?;
    let top_k = body.top_k.unwrap_or(5);
    if top_k == 0 || top_k > MAX_TOP_K.min(100) {
        return Err(ApiError::bad_request("top_k must be 1 to 100"));
    }
    let model = body
        .model
        .unwrap_or_else(|| state.config.models.default_embedding_model.clone());
    let routed = state.models.embed(&model, vec![body.query]).await?;
    let vector = routed.value.vectors.into_iter().next().unwrap_or_default();
    let collection = crate::owned::scoped(&caller.user.id, &body.collection);
    let hits = state
        .domain
        .documents()
        .search(&collection, &vector, top_k, body.filter.as_ref())
        .await?;
    Ok(Json(SearchResults {
        data: hits
            .into_iter()
            .map(|hit| SearchHitView {
                score: hit.score,
                document: view(hit.document, &body.collection),
            })
            .collect(),
    }))
}
