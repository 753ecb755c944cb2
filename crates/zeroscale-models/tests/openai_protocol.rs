//! The OpenAI-compatible embeddings client against a local server that speaks the
//! protocol, including its failure modes.

#![cfg(feature = "remote-models")]

use std::sync::Arc;

use axum::Json;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use zeroscale_core::Error;
use zeroscale_core::config::{ModelEntry, ModelKind, ModelsConfig, RemoteProviderConfig};
use zeroscale_core::models::{EmbeddingProvider, EmbeddingRequest};
use zeroscale_models::remote::openai::OpenAiEmbeddings;
use zeroscale_models::router::Router;

/// Answers like an OpenAI-compatible server; the first input picks a failure to act out.
async fn embeddings(headers: HeaderMap, Json(body): Json<Value>) -> Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer sk-test") {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": {"message": "Incorrect API key"}})),
        )
            .into_response();
    }
    let inputs: Vec<String> = serde_json::from_value(body["input"].clone()).unwrap_or_default();
    match inputs.first().map(String::as_str) {
        Some("rate-limit") => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", "1")],
                Json(json!({"error": {"message": "slow down"}})),
            )
                .into_response();
        }
        Some("server-error") => return (StatusCode::BAD_GATEWAY, "upstream died").into_response(),
        Some("too-long") => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": {"message": "maximum context length exceeded"}})),
            )
                .into_response();
        }
        _ => {}
    }
    // Answer out of order: clients must sort by index. `dimensions` cuts the 3-wide
    // vectors short (as text-embedding-3 does), except for the input "ignores-width".
    let width = match (
        body["dimensions"].as_u64(),
        inputs.first().map(String::as_str),
    ) {
        (_, Some("ignores-width")) | (None, _) => 3,
        (Some(d), _) => d as usize,
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .rev()
        .map(|(i, text)| {
            let full = [text.len() as f32, i as f32, 0.5];
            json!({"object": "embedding", "index": i, "embedding": full[..width.min(3)]})
        })
        .collect();
    Json(json!({
        "object": "list",
        "model": body["model"],
        "data": data,
        "usage": {"prompt_tokens": inputs.len() * 3, "total_tokens": inputs.len() * 3}
    }))
    .into_response()
}

async fn server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    let app = axum::Router::new().route("/v1/embeddings", post(embeddings));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

fn client(base: &str, key: &str) -> OpenAiEmbeddings {
    OpenAiEmbeddings::new(
        "api",
        &RemoteProviderConfig {
            base_url: base.to_owned(),
            api_key: Some(key.into()),
            timeout_secs: 5,
        },
    )
    .unwrap()
}

fn request(inputs: &[&str]) -> EmbeddingRequest {
    EmbeddingRequest {
        model: "text-embedding-test".into(),
        inputs: inputs.iter().map(|s| (*s).to_owned()).collect(),
        dimensions: None,
    }
}

#[tokio::test]
async fn embeds_in_input_order_with_usage() {
    let base = server().await;
    let r = client(&base, "sk-test")
        .embed(request(&["a", "bbb"]))
        .await
        .unwrap();
    assert_eq!(r.vectors, vec![vec![1.0, 0.0, 0.5], vec![3.0, 1.0, 0.5]]);
    assert_eq!(r.dimensions, 3);
    assert_eq!(r.usage.prompt_tokens, 6);
    assert_eq!(r.model, "text-embedding-test");
    client(&base, "sk-test").health().await.expect("reachable");
}

#[tokio::test]
async fn dimensions_are_asked_for_and_checked() {
    let base = server().await;
    let mut shorter = request(&["a", "bbb"]);
    shorter.dimensions = Some(2);
    let r = client(&base, "sk-test").embed(shorter).await.unwrap();
    assert_eq!(r.vectors, vec![vec![1.0, 0.0], vec![3.0, 1.0]]);
    assert_eq!(r.dimensions, 2);
    // An upstream that ignores the width: refused as the caller's mistake, named.
    let mut ignored = request(&["ignores-width"]);
    ignored.dimensions = Some(2);
    let err = client(&base, "sk-test").embed(ignored).await.unwrap_err();
    assert!(
        matches!(err, Error::InvalidInput { .. })
            && err.to_string().contains("gave 3 dimensions, not 2"),
        "{err}"
    );
}

#[tokio::test]
async fn failures_map_to_kinds() {
    let base = server().await;
    let err = client(&base, "sk-wrong")
        .embed(request(&["a"]))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unauthenticated { .. }), "{err}");
    assert!(
        err.to_string().contains("Incorrect API key") && !err.to_string().contains("sk-wrong"),
        "{err}"
    );
    let err = client(&base, "sk-test")
        .embed(request(&["rate-limit"]))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::RateLimited { .. }), "{err}");
    assert_eq!(err.retry_after(), Some(std::time::Duration::from_secs(1)));
    let err = client(&base, "sk-test")
        .embed(request(&["server-error"]))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err}");
    let err = client(&base, "sk-test")
        .embed(request(&["too-long"]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidInput { .. }) && err.to_string().contains("maximum context"),
        "{err}"
    );
    // Nothing listening: unavailable.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = client(&format!("http://127.0.0.1:{port}/v1"), "k")
        .embed(request(&["a"]))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err}");
    let err = OpenAiEmbeddings::new(
        "api",
        &RemoteProviderConfig {
            base_url: "ftp://x".into(),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("models.providers.api.base_url"),
        "{err}"
    );
}

#[tokio::test]
async fn router_fails_over_from_an_api_that_refuses_its_key() {
    let base = server().await;
    let mut config = ModelsConfig::default();
    config.router.max_retries = 1;
    config.registry.insert(
        "emb".into(),
        ModelEntry {
            kind: ModelKind::Embedding,
            provider: "refusing".into(),
            fallbacks: vec!["ok".into()],
            routes: Default::default(),
        },
    );
    let mut router = Router::new(&config);
    router.add_embedding_provider("refusing", Arc::new(client(&base, "sk-wrong")));
    router.add_embedding_provider("ok", Arc::new(client(&base, "sk-test")));
    let routed = router.embed("emb", vec!["hello".into()]).await.unwrap();
    assert_eq!(routed.provider, "ok");
    assert_eq!(routed.value.vectors, vec![vec![5.0, 0.0, 0.5]]);
}
