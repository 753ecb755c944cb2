//! Two instances: A serves the local MiniLM model over `/v1/embeddings`; B is configured
//! with the remote OpenAI-compatible provider pointed at A (with an API key A issued).
//! B's vectors must match A's and the sentence-transformers fixture (cosine ≥ 0.9999).

mod common;

use common::{Server, TempDir, admin_token, zeroscale};
use reqwest::Method;
use serde_json::{Value, json};
use zeroscale_core::testing::{cosine, require_service};

#[derive(serde::Deserialize)]
struct Fixture {
    cases: Vec<Case>,
}

#[derive(serde::Deserialize)]
struct Case {
    text: String,
    vector: Vec<f32>,
}

fn vectors(body: &Value) -> Vec<Vec<f32>> {
    body["data"]
        .as_array()
        .expect("data")
        .iter()
        .enumerate()
        .map(|(i, item)| {
            assert_eq!(item["index"], i);
            assert_eq!(item["object"], "embedding");
            item["embedding"]
                .as_array()
                .expect("floats")
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect()
}

/// POSTs to `/v1/embeddings`; returns status, body and the provider header.
async fn embed(server: &Server, token: &str, body: Value) -> (u16, Value, String) {
    let response = server
        .http
        .post(format!("{}/v1/embeddings", server.base))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let provider = response
        .headers()
        .get("x-zeroscale-provider")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, response.json().await.unwrap(), provider)
}

#[tokio::test]
async fn a_remote_instance_matches_the_local_model() {
    let Some(model) = require_service(
        "ZEROSCALE_TEST_MODEL_DIR",
        "the local model (`cargo xtask models fetch`)",
    ) else {
        return;
    };
    let fixture: Fixture = serde_json::from_str(include_str!(
        "../../zeroscale-models/tests/fixtures/minilm_reference.json"
    ))
    .unwrap();
    let texts: Vec<&str> = fixture.cases.iter().map(|c| c.text.as_str()).collect();

    // A: the local model.
    let dir_a = TempDir::new("parity-a");
    let a_cmd = || {
        let mut cmd = zeroscale(&dir_a.0);
        cmd.env("ZEROSCALE_MODELS__PROVIDERS__LOCAL__PATH", &model)
            // Every call computed by the model, none answered from A's cache.
            .env("ZEROSCALE_MODELS__CACHE__EMBEDDINGS", "false");
        cmd
    };
    let a = Server::start(a_cmd()).await;
    let a_admin = admin_token(&a, a_cmd(), "admin").await;
    let (status, body) = a
        .call(
            Method::POST,
            "/v1/api-keys",
            Some(&a_admin),
            Some(json!({ "client_name": "instance B" })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let key = body["plaintext"].as_str().unwrap().to_owned();

    // B: the OpenAI-compatible provider pointed at A, nothing local.
    let dir_b = TempDir::new("parity-b");
    let config = dir_b.0.join("remote.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[models.providers.upstream]
kind = "openai"
base_url = "{}/v1"
api_key = "{key}"

[models.registry.minilm]
kind = "embedding"
provider = "upstream"
fallbacks = []

[models.registry.minilm.routes.upstream]
remote_model = "minilm"
"#,
            a.base
        ),
    )
    .unwrap();
    let b_cmd = || {
        let mut cmd = zeroscale(&dir_b.0);
        cmd.arg("--config").arg(&config);
        cmd
    };
    let b = Server::start(b_cmd()).await;
    let b_admin = admin_token(&b, b_cmd(), "admin").await;

    let request = json!({ "model": "minilm", "input": texts });
    let (status, from_a, provider_a) = embed(&a, &a_admin, request.clone()).await;
    assert_eq!(status, 200, "{from_a}");
    assert_eq!(provider_a, "local");
    let (status, from_b, provider_b) = embed(&b, &b_admin, request).await;
    assert_eq!(status, 200, "{from_b}\n{}", b.log_text());
    assert_eq!(provider_b, "upstream", "B reached A over HTTP");
    assert_eq!(from_b["model"], "minilm");
    assert!(from_b["usage"]["prompt_tokens"].as_u64().unwrap() > 0);

    let (va, vb) = (vectors(&from_a), vectors(&from_b));
    assert_eq!((va.len(), vb.len()), (texts.len(), texts.len()));
    for ((case, a_vec), b_vec) in fixture.cases.iter().zip(&va).zip(&vb) {
        assert_eq!(b_vec.len(), 384);
        let ab = cosine(a_vec, b_vec);
        let reference = cosine(b_vec, &case.vector);
        assert!(ab >= 0.9999, "A vs B cosine {ab} for {:?}", case.text);
        assert!(
            reference >= 0.9999,
            "B vs reference {reference} for {:?}",
            case.text
        );
    }

    // A single string and base64 encoding, as OpenAI's clients send by default.
    let (status, one, _) = embed(
        &a,
        &key,
        json!({ "input": "Hello, world!", "encoding_format": "base64" }),
    )
    .await;
    assert_eq!(status, 200, "{one}");
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(one["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let decoded: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let hello = &fixture
        .cases
        .iter()
        .find(|c| c.text == "Hello, world!")
        .unwrap()
        .vector;
    assert!(cosine(&decoded, hello) >= 0.9999);

    // Refusals: no credentials, a revoked key upstream, bad input.
    let (status, body, _) = embed(&a, "zs_00000000_nope", json!({ "input": "x" })).await;
    assert_eq!(status, 401, "{body}");
    let (status, body, _) = embed(&a, &a_admin, json!({ "input": [{ "text": "x" }] })).await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("input[0]"),
        "{body}"
    );
    let (status, body, _) = embed(&a, &a_admin, json!({ "input": "x", "colour": 1 })).await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("colour"),
        "{body}"
    );
    let (status, body, _) = embed(&a, &a_admin, json!({ "input": "x", "model": "nosuch" })).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("model_not_found"))
    );
    let (status, body, _) = embed(&a, &a_admin, json!({ "input": "x", "dimensions": 10 })).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "dimensions", "{body}");
    // Through B, `dimensions` reaches A: its own width is served, another is refused
    // there and B passes the refusal on as a bad request.
    let (status, body, provider) = embed(
        &b,
        &b_admin,
        json!({ "input": "dimensions via B", "dimensions": 384 }),
    )
    .await;
    assert_eq!((status, provider.as_str()), (200, "upstream"), "{body}");
    let (status, body, _) = embed(&b, &b_admin, json!({ "input": "x", "dimensions": 10 })).await;
    assert_eq!(status, 400, "{body}\n{}", b.log_text());

    a.terminate();
    b.terminate();
}
