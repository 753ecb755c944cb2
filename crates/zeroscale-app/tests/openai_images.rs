//! `POST /v1/images/generations` against an OpenAI-compatible image provider inside the
//! test: the provider's `revised_prompt` reaches the client, and a generation slower than
//! `server.request_timeout_secs` answers OpenAI's 503 `timeout` (with `x-should-retry:
//! false` and the generation's id) while the generation goes on and is charged once done.

mod common;

use std::time::{Duration, Instant};

use axum::Json;
use axum::routing::post;
use base64::Engine as _;
use common::{Server, TempDir, register, zeroscale};
use reqwest::Method;
use serde_json::{Value, json};

/// An OpenAI-compatible image API: 32x32 PNGs, the prompt "revised", slow prompts slow.
async fn images(Json(body): Json<Value>) -> Json<Value> {
    let prompt = body["prompt"].as_str().unwrap_or_default().to_owned();
    if prompt.contains("slow") {
        tokio::time::sleep(Duration::from_secs(4)).await;
    }
    let png = zeroscale_models::placeholder::encode_png(32, 32, &[90u8; 32 * 32 * 3]);
    let n = body["n"].as_u64().unwrap_or(1);
    let data: Vec<Value> = (0..n)
        .map(|i| {
            json!({
                "b64_json": base64::engine::general_purpose::STANDARD.encode(&png),
                "revised_prompt": format!("REVISED {i}: {prompt}"),
            })
        })
        .collect();
    Json(json!({"created": 0, "data": data}))
}

async fn provider() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().route("/v1/images/generations", post(images));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

async fn generate(server: &Server, token: &str, prompt: &str) -> (u16, Option<String>, Value) {
    let response = server
        .http
        .post(format!("{}/v1/images/generations", server.base))
        .bearer_auth(token)
        .json(&json!({"model": "art", "prompt": prompt, "size": "32x32", "n": 2}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let retry = response
        .headers()
        .get("x-should-retry")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, retry, response.json().await.unwrap())
}

async fn balance(server: &Server, token: &str) -> i64 {
    let (_, me) = server.call(Method::GET, "/v1/me", Some(token), None).await;
    me["user"]["credits"].as_i64().unwrap()
}

#[tokio::test]
async fn revised_prompts_and_a_generation_slower_than_the_request_timeout() {
    let upstream = provider().await;
    let dir = TempDir::new("openai-images");
    let config = dir.0.join("images.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[server]
request_timeout_secs = 2

[models.providers.artapi]
kind = "openai"
base_url = "{upstream}/v1"
api_key = "sk-test"
timeout_secs = 30

[models.registry.art]
kind = "image"
provider = "artapi"
fallbacks = []

[models.registry.art.routes.artapi]
cost = {{ per_image = 1.0 }}
sizes = ["32x32"]
"#
        ),
    )
    .unwrap();
    let mut cmd = zeroscale(&dir.0);
    cmd.arg("--config")
        .arg(&config)
        .env("ZEROSCALE_AUTH__SIGNUP_CREDITS", "10");
    let server = Server::start(cmd).await;
    let token = register(&server, "painter").await;

    // In time: the images, with the prompts the provider drew.
    let (status, _, answer) = generate(&server, &token, "a fox").await;
    assert_eq!(status, 200, "{answer}\n{}", server.log_text());
    let data = answer["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[1]["revised_prompt"], "REVISED 1: a fox", "{answer}");
    assert!(
        data[0]["url"]
            .as_str()
            .is_some_and(|u| u.starts_with("http"))
    );
    assert_eq!(balance(&server, &token).await, 8, "two images at 1 credit");

    // Too slow: the handler answers before the server's own timeout, says which
    // generation goes on, and tells the SDKs not to submit it again.
    let started = Instant::now();
    let (status, retry, answer) = generate(&server, &token, "a slow fox").await;
    let waited = started.elapsed();
    assert_eq!(status, 503, "{answer}");
    assert_eq!(retry.as_deref(), Some("false"));
    assert_eq!(answer["error"]["type"], "server_error", "{answer}");
    assert_eq!(answer["error"]["code"], "timeout", "{answer}");
    assert!(waited < Duration::from_secs(2), "answered after {waited:?}");
    let message = answer["error"]["message"].as_str().unwrap();
    let id = message
        .split_whitespace()
        .nth(1)
        .expect("`generation <id> …`")
        .to_owned();
    assert!(
        message.contains(&format!("GET /v1/images/{id}")),
        "{message}"
    );
    assert_eq!(balance(&server, &token).await, 6, "reserved while it runs");

    // It goes on and is charged when done.
    let deadline = Instant::now() + Duration::from_secs(20);
    let generation = loop {
        let (status, generation) = server
            .call(Method::GET, &format!("/v1/images/{id}"), Some(&token), None)
            .await;
        assert_eq!(status, 200, "{generation}");
        if generation["status"] != "pending" {
            break generation;
        }
        assert!(Instant::now() < deadline, "still pending: {generation}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(generation["status"], "succeeded", "{generation}");
    assert_eq!(generation["images"].as_array().unwrap().len(), 2);
    assert_eq!(balance(&server, &token).await, 6);
    server.terminate();
}
