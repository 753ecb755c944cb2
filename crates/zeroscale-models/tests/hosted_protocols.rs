//! Hugging Face, Replicate and Fal clients against a local server that speaks their
//! protocols: feature extraction, predictions polled to completion, Fal's queue.

#![cfg(feature = "remote-models")]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use zeroscale_core::Error;
use zeroscale_core::config::{
    ModelEntry, ModelKind, ModelRoute, ModelsConfig, RemoteProviderConfig,
};
use zeroscale_core::models::{EmbeddingProvider, EmbeddingRequest, ImageData, ImageRequest};
use zeroscale_models::placeholder::encode_png;
use zeroscale_models::remote::hosted::{FalImages, HuggingFaceEmbeddings, ReplicateImages};
use zeroscale_models::router::Router;

#[derive(Clone)]
struct S {
    base: String,
    polls: Arc<AtomicUsize>,
}

async fn hf(Path(model): Path<String>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer hf-key") {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "Invalid token"})),
        )
            .into_response();
    }
    assert_eq!(model, "sentence-transformers/all-MiniLM-L6-v2");
    let inputs: Vec<String> = serde_json::from_value(body["inputs"].clone()).unwrap();
    // The second input comes back as token vectors, to be mean-pooled.
    let out: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| {
            if i == 1 {
                json!([[t.len() as f32, 0.0], [t.len() as f32, 2.0]])
            } else {
                json!([t.len() as f32, 1.0])
            }
        })
        .collect();
    Json(json!(out)).into_response()
}

async fn image(Path(_name): Path<String>) -> Response {
    let png = encode_png(8, 8, &[50u8; 8 * 8 * 3]);
    ([("content-type", "image/png")], png).into_response()
}

async fn create(State(s): State<S>, Json(body): Json<Value>) -> Response {
    assert_eq!(body["version"], "abc123");
    if body["input"]["prompt"] == "fail" {
        return Json(json!({"id": "p2", "status": "starting", "urls": {"get": format!("{}/v1/predictions/p2", s.base)}})).into_response();
    }
    Json(json!({"id": "p1", "status": "starting", "urls": {"get": format!("{}/v1/predictions/p1", s.base)}})).into_response()
}

async fn prediction(State(s): State<S>, Path(id): Path<String>) -> Response {
    let n = s.polls.fetch_add(1, Ordering::SeqCst);
    if id == "p2" {
        return Json(json!({"id": id, "status": "failed", "error": "NSFW content detected"}))
            .into_response();
    }
    if n == 0 {
        return Json(json!({"id": id, "status": "processing"})).into_response();
    }
    Json(json!({"id": id, "status": "succeeded", "output": [format!("{}/img/a.png", s.base), format!("{}/img/b.png", s.base)]}))
        .into_response()
}

async fn fal_submit(State(s): State<S>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    assert_eq!(headers.get("authorization").unwrap(), "Key fal-key");
    assert_eq!(body["image_size"]["width"], 64);
    Json(json!({
        "request_id": "r1",
        "status_url": format!("{}/fal/requests/r1/status", s.base),
        "response_url": format!("{}/fal/requests/r1", s.base),
    }))
    .into_response()
}

async fn fal_status(State(s): State<S>) -> Response {
    let n = s.polls.fetch_add(1, Ordering::SeqCst);
    Json(json!({"status": if n == 0 { "IN_QUEUE" } else { "COMPLETED" }})).into_response()
}

async fn fal_result(State(s): State<S>) -> Response {
    Json(json!({"images": [{"url": format!("{}/img/f.png", s.base), "width": 8, "height": 8}], "seed": 42})).into_response()
}

async fn server() -> S {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let s = S {
        base: format!("http://{}", listener.local_addr().unwrap()),
        polls: Arc::default(),
    };
    let app = axum::Router::new()
        .route("/models/{*model}", post(hf))
        .route("/img/{name}", get(image))
        .route("/v1/predictions", post(create))
        .route("/v1/predictions/{id}", get(prediction))
        .route("/fal/fast-sdxl", post(fal_submit))
        .route("/fal/requests/r1/status", get(fal_status))
        .route("/fal/requests/r1", get(fal_result))
        .with_state(s.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    s
}

fn cfg(base: String, key: &str) -> RemoteProviderConfig {
    RemoteProviderConfig {
        base_url: base,
        api_key: Some(key.into()),
        timeout_secs: 10,
    }
}

fn req(prompt: &str) -> ImageRequest {
    ImageRequest {
        model: String::new(),
        prompt: prompt.into(),
        negative_prompt: None,
        width: 64,
        height: 64,
        count: 2,
        seed: Some(7),
        extra: Default::default(),
    }
}

#[tokio::test]
async fn hugging_face_feature_extraction() {
    let s = server().await;
    let hf =
        HuggingFaceEmbeddings::new("hf", &cfg(format!("{}/models", s.base), "hf-key")).unwrap();
    let request = EmbeddingRequest {
        model: "sentence-transformers/all-MiniLM-L6-v2".into(),
        inputs: vec!["ab".into(), "cde".into()],
        dimensions: None,
    };
    let r = hf.embed(request.clone()).await.unwrap();
    assert_eq!(
        r.vectors,
        vec![vec![2.0, 1.0], vec![3.0, 1.0]],
        "token vectors are mean-pooled"
    );
    let bad =
        HuggingFaceEmbeddings::new("hf", &cfg(format!("{}/models", s.base), "wrong")).unwrap();
    let err = bad.embed(request).await.unwrap_err();
    assert!(
        matches!(err, Error::Unauthenticated { .. }) && err.to_string().contains("Invalid token"),
        "{err}"
    );
}

#[tokio::test]
async fn replicate_prediction_polled_to_completion_through_the_router() {
    let s = server().await;
    let mut config = ModelsConfig::default();
    config.router.max_retries = 0;
    let mut routes = BTreeMap::new();
    routes.insert(
        "replicate".to_owned(),
        ModelRoute {
            version: Some("abc123".into()),
            ..Default::default()
        },
    );
    config.registry.insert(
        "sdxl".into(),
        ModelEntry {
            kind: ModelKind::Image,
            provider: "replicate".into(),
            fallbacks: vec![],
            routes,
        },
    );
    let mut router = Router::new(&config);
    router.add_image_provider(
        "replicate",
        Arc::new(ReplicateImages::new("replicate", &cfg(format!("{}/v1", s.base), "r8")).unwrap()),
    );
    let routed = router.generate("sdxl", req("a bridge")).await.unwrap();
    assert_eq!(routed.value.images.len(), 2);
    assert_eq!(routed.value.metadata["prediction_id"], "p1");
    assert!(
        s.polls.load(Ordering::SeqCst) >= 2,
        "it polled until succeeded"
    );
    let ImageData::Bytes { mime_type, .. } = &routed.value.images[0].data else {
        panic!()
    };
    assert_eq!(mime_type, "image/png");
    let err = router.generate("sdxl", req("fail")).await.unwrap_err();
    assert!(err.to_string().contains("NSFW content detected"), "{err}");
}

#[tokio::test]
async fn fal_queue_submit_status_result() {
    let s = server().await;
    let fal = FalImages::new("fal", &cfg(format!("{}/fal", s.base), "fal-key")).unwrap();
    let mut request = req("a fox");
    request.model = "fast-sdxl".into();
    let r = zeroscale_core::models::ImageProvider::generate(&fal, request)
        .await
        .unwrap();
    assert_eq!(r.images.len(), 1);
    assert_eq!(r.images[0].seed, Some(42), "the seed Fal reports");
    assert_eq!(r.metadata["request_id"], "r1");
}
