//! `GET /v1/models` and `GET /v1/models/{id}`: the registry's model ids in OpenAI's shape,
//! so `client.models.list()` shows what this server can embed and draw with.

use std::sync::LazyLock;

use axum::extract::{Path, State};
use serde::Serialize;
use utoipa::ToSchema;
use zeroscale_core::config::ModelEntry;

use super::super::ApiState;
use super::super::auth::Caller;
use super::super::error::{ApiError, ApiResult, Json};
use super::OpenAiErrorBody;

/// When this process first listed its models, in Unix seconds: the registry has no
/// creation dates, and a time that stays put while the server runs keeps clients that
/// sort by it stable.
static LISTED_AT: LazyLock<i64> = LazyLock::new(|| chrono::Utc::now().timestamp());

/// One model id.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Model {
    /// The model id to send as `model`.
    id: String,
    /// Always `model`.
    object: &'static str,
    /// Unix seconds; when this server process loaded its registry.
    created: i64,
    /// The provider that serves it first (`models.registry.<id>.provider`).
    owned_by: String,
}

/// The model ids.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ModelList {
    /// Always `list`.
    object: &'static str,
    /// Sorted by id.
    data: Vec<Model>,
}

fn model(id: &str, entry: &ModelEntry) -> Model {
    Model {
        id: id.to_owned(),
        object: "model",
        created: *LISTED_AT,
        owned_by: entry.provider.clone(),
    }
}

/// Lists the model ids of the registry (`models.registry`), embedding and image models
/// alike.
#[utoipa::path(
    get, path = "/v1/models", tag = "openai",
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "every model id", body = ModelList),
        (status = 401, description = "no or bad credentials", body = OpenAiErrorBody),
    )
)]
pub(crate) async fn list_models(State(state): State<ApiState>, _caller: Caller) -> Json<ModelList> {
    Json(ModelList {
        object: "list",
        data: state
            .models
            .models()
            .into_iter()
            .map(|(id, entry)| model(id, entry))
            .collect(),
    })
}

/// One model id of the registry.
#[utoipa::path(
    get, path = "/v1/models/{id}", tag = "openai",
    security(("bearer" = []), ("api_key" = [])),
    params(("id" = String, Path, description = "a model id")),
    responses(
        (status = 200, description = "the model", body = Model),
        (status = 401, description = "no or bad credentials", body = OpenAiErrorBody),
        (status = 404, description = "no such model id (`model_not_found`)", body = OpenAiErrorBody),
    )
)]
pub(crate) async fn retrieve_model(
    State(state): State<ApiState>,
    _caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Model>> {
    match state.models.model(&id) {
        Some(entry) => Ok(Json(model(&id, entry))),
        None => Err(ApiError::not_found(format!(
            "the model `{id}` does not exist; GET /v1/models lists the model ids"
        ))
        .with_param("model")),
    }
}
