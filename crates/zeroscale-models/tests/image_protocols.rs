//! The OpenAI-compatible and Automatic1111 image clients against a local server that
//! speaks both protocols, including failures and failover to the placeholder.

#![cfg(feature = "remote-models")]

use std::sync::Arc;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use serde_json::{Value, json};
use zeroscale_core::Error;
use zeroscale_core::config::{ModelEntry, ModelKind, ModelsConfig, RemoteProviderConfig};
use zeroscale_core::models::{ImageData, ImageProvider, ImageRequest};
use zeroscale_models::placeholder::{PlaceholderImages, encode_png};
use zeroscale_models::remote::images::{HttpImages, ImageApi};
use zeroscale_models::router::Router;

fn png_b64(w: u32, h: u32) -> String {
    let pixels = vec![200u8; (w * h * 3) as usize];
    base64::engine::general_purpose::STANDARD.encode(encode_png(w, h, &pixels))
}

async fn openai(Json(body): Json<Value>) -> Response {
    if body["prompt"] == "busy" {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "0")],
            "busy",
        )
            .into_response();
    }
    let n = body["n"].as_u64().unwrap_or(1);
    assert_eq!(body["response_format"], "b64_json");
    let (w, h) = body["size"]
        .as_str()
        .and_then(|s| s.split_once('x'))
        .map(|(w, h)| (w.parse().unwrap(), h.parse().unwrap()))
        .unwrap();
    let data: Vec<Value> = (0..n)
        .map(|i| json!({"b64_json": png_b64(w, h), "revised_prompt": format!("{} #{i}", body["prompt"].as_str().unwrap())}))
        .collect();
    Json(json!({"created": 0, "data": data})).into_response()
}

async fn txt2img(Json(body): Json<Value>) -> Response {
    if body["prompt"] == "crash" {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"detail": "CUDA out of memory"})),
        )
            .into_response();
    }
    let n = body["batch_size"].as_u64().unwrap_or(1);
    let (w, h) = (
        body["width"].as_u64().unwrap() as u32,
        body["height"].as_u64().unwrap() as u32,
    );
    let seeds: Vec<u64> = (0..n).map(|i| 1000 + i).collect();
    Json(json!({
        "images": (0..n).map(|_| png_b64(w, h)).collect::<Vec<_>>(),
        "parameters": body,
        "info": json!({"all_seeds": seeds}).to_string(),
    }))
    .into_response()
}

async fn server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/v1/images/generations", post(openai))
        .route("/sdapi/v1/txt2img", post(txt2img));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

fn request(prompt: &str, count: u32) -> ImageRequest {
    ImageRequest {
        model: "m".into(),
        prompt: prompt.into(),
        negative_prompt: Some("blurry".into()),
        width: 32,
        height: 24,
        count,
        seed: None,
        extra: Default::default(),
    }
}

fn cfg(base: String) -> RemoteProviderConfig {
    RemoteProviderConfig {
        base_url: base,
        api_key: Some("k".into()),
        timeout_secs: 5,
    }
}

fn size_of(data: &ImageData) -> (u32, u32) {
    let ImageData::Bytes { data, mime_type } = data else {
        panic!("bytes expected")
    };
    assert_eq!(mime_type, "image/png");
    let reader = png::Decoder::new(std::io::Cursor::new(data.to_vec()))
        .read_info()
        .unwrap();
    (reader.info().width, reader.info().height)
}

#[tokio::test]
async fn openai_images() {
    let base = server().await;
    let client = HttpImages::new("oai", ImageApi::OpenAi, &cfg(format!("{base}/v1"))).unwrap();
    let r = client.generate(request("a cat", 2)).await.unwrap();
    assert_eq!(r.images.len(), 2);
    assert_eq!(size_of(&r.images[0].data), (32, 24));
    // The prompts the API drew, per image, are kept for `revised_prompt`.
    assert_eq!(
        r.metadata["revised_prompts"],
        json!(["a cat #0", "a cat #1"])
    );
    let err = client.generate(request("busy", 1)).await.unwrap_err();
    assert!(matches!(err, Error::RateLimited { .. }), "{err}");
}

#[tokio::test]
async fn automatic1111_images_with_seeds() {
    let base = server().await;
    let client = HttpImages::new("sd", ImageApi::Automatic1111, &cfg(base)).unwrap();
    let r = client.generate(request("a castle", 2)).await.unwrap();
    assert_eq!(
        r.images.iter().map(|i| i.seed).collect::<Vec<_>>(),
        [Some(1000), Some(1001)]
    );
    assert_eq!(size_of(&r.images[1].data), (32, 24));
    let err = client.generate(request("crash", 1)).await.unwrap_err();
    assert!(
        matches!(err, Error::Unavailable { .. }) && err.to_string().contains("CUDA out of memory"),
        "{err}"
    );
}

#[tokio::test]
async fn a_failing_image_provider_fails_over_to_the_placeholder() {
    let base = server().await;
    let mut config = ModelsConfig::default();
    config.router.max_retries = 0;
    config.registry.insert(
        "sd15".into(),
        ModelEntry {
            kind: ModelKind::Image,
            provider: "sd".into(),
            fallbacks: vec!["placeholder".into()],
            routes: Default::default(),
        },
    );
    let mut router = Router::new(&config);
    router.add_image_provider(
        "sd",
        Arc::new(HttpImages::new("sd", ImageApi::Automatic1111, &cfg(base)).unwrap()),
    );
    router.add_image_provider(
        "placeholder",
        Arc::new(PlaceholderImages::new("placeholder")),
    );
    let ok = router
        .generate("sd15", request("a castle", 1))
        .await
        .unwrap();
    assert_eq!(ok.provider, "sd");
    let fell_back = router.generate("sd15", request("crash", 1)).await.unwrap();
    assert_eq!(fell_back.provider, "placeholder");
    assert_eq!(fell_back.value.metadata["placeholder"], true);
}
