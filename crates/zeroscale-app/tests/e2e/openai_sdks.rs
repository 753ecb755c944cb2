//! The `openai_sdks` section of the e2e suite: the OpenAI-compatible routes through the
//! clients people use (the openai Python SDK, LangChain's `OpenAIEmbeddings`, the openai
//! Node SDK, pinned and installed by `cargo xtask services up`), and their error shapes
//! over plain HTTP.

use std::process::Command;

use base64::Engine as _;
use reqwest::Method;
use serde_json::{Value, json};
use zeroscale_core::testing::{cosine, require_service};

use crate::harness::*;

const TEXTS: [&str; 2] = ["The cat sat on the mat.", "A feline rested on a rug."];

/// The stage's default model ids, from `/v1/models`' owners: the embedding model is the
/// one `POST /v1/embeddings` uses without `model`.
async fn default_embedding_model(d: &Deployment, token: &str) -> String {
    let (status, body) = call(
        d,
        Method::POST,
        "/v1/embeddings",
        Some(token),
        Some(json!({"input": "x"})),
    )
    .await;
    assert_eq!(status, 200, "[{}] {body}", d.name);
    body["model"].as_str().unwrap().to_owned()
}

fn vector(value: &Value) -> Vec<f32> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not a vector: {value}"))
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn assert_same(what: &str, a: &Value, b: &Value) {
    let (a, b) = (vector(a), vector(b));
    assert_eq!(a.len(), b.len(), "{what}: lengths differ");
    let similarity = cosine(&a, &b);
    assert!(similarity >= 0.9999, "{what}: cosine {similarity}");
}

/// Runs a client script with the given environment; returns its JSON output.
async fn run_client(
    d: &Deployment,
    program: &str,
    script: &str,
    envs: Vec<(&str, String)>,
) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("openai_clients")
        .join(script);
    let mut command = Command::new(program);
    command.arg(&path).envs(envs).env_remove("OPENAI_ORG_ID");
    let out = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("cannot run {program} {script}: {e}"));
    assert!(
        out.status.success(),
        "[{}] {script} failed ({}):\n{}\n{}\nserver log:\n{}",
        d.name,
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        d.server.log_text()
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "[{}] {script} printed no JSON ({e}): {}",
            d.name,
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

pub(crate) async fn run(d: &Deployment, admin: &str, alice: &str, bob: &str) {
    grant_credits(d, admin, alice, 100).await;
    let model = default_embedding_model(d, alice).await;
    let image_model = "placeholder";

    plain_http(d, alice, bob, &model).await;

    let (Some(python), Some(node), Some(tiktoken)) = (
        require_service("ZEROSCALE_TEST_OPENAI_PYTHON", "the openai Python SDK"),
        require_service("ZEROSCALE_TEST_OPENAI_NODE", "the openai Node SDK"),
        require_service(
            "ZEROSCALE_TEST_TIKTOKEN_CACHE",
            "tiktoken's cl100k_base cache",
        ),
    ) else {
        return;
    };
    let base = format!("{}/v1", d.server.base);
    let env = |key: &str| {
        vec![
            ("OPENAI_BASE_URL", base.clone()),
            ("OPENAI_API_KEY", key.to_owned()),
            ("ZS_EMBEDDING_MODEL", model.clone()),
            ("ZS_IMAGE_MODEL", image_model.to_owned()),
            ("TIKTOKEN_CACHE_DIR", tiktoken.clone()),
        ]
    };
    let (_, ours) = call(
        d,
        Method::POST,
        "/v1/embeddings",
        Some(alice),
        Some(json!({"input": TEXTS, "model": model})),
    )
    .await;
    let ours = |i: usize| ours["data"][i]["embedding"].clone();

    // The openai Python SDK.
    let mut python_env = env(alice);
    python_env.push(("ZS_BROKE_KEY", bob.to_owned()));
    python_env.push(("ZS_PRICED_IMAGE_MODEL", "flaky".to_owned()));
    let py = run_client(d, &python, "openai_sdk.py", python_env).await;
    assert_eq!(py["errors_checked"], true);
    let embedded = &py["embeddings"];
    assert_same("python string", &embedded["string"], &ours(0));
    for i in 0..2 {
        assert_same("python list", &embedded["list"][i], &ours(i));
        assert_same(
            "python token id lists",
            &embedded["token_id_lists"][i],
            &ours(i),
        );
        assert_same(
            "python SDK default (base64)",
            &embedded["sdk_default"][i],
            &ours(i),
        );
    }
    assert_same("python token ids", &embedded["token_ids"], &ours(0));
    assert_same("python base64", &embedded["base64"], &ours(0));
    assert!(py["request_id"].as_str().is_some_and(|id| !id.is_empty()));
    for url in py["image_urls"].as_array().unwrap() {
        let url = url.as_str().unwrap();
        let response = d.server.http.get(url).send().await.unwrap();
        assert_eq!(response.status(), 200, "[{}] {url}", d.name);
        let bytes = response.bytes().await.unwrap();
        assert!(
            bytes.starts_with(b"\x89PNG"),
            "[{}] {url} is not a PNG",
            d.name
        );
    }

    // LangChain with default settings sends token ids counted by tiktoken.
    let mut langchain_env = env(alice);
    langchain_env.push(("ZS_DOCUMENTS", json!(TEXTS).to_string()));
    langchain_env.push(("ZS_QUERY", TEXTS[0].to_owned()));
    let lc = run_client(d, &python, "langchain_embeddings.py", langchain_env).await;
    for i in 0..2 {
        assert_same("langchain document", &lc["documents"][i], &ours(i));
    }
    assert_same("langchain query", &lc["query"], &ours(0));

    // The Node SDK.
    let mut node_env = env(alice);
    node_env.push((
        "NODE_PATH",
        std::path::Path::new(&node)
            .join("node_modules")
            .display()
            .to_string(),
    ));
    let js = run_client(d, "node", "node_sdk.cjs", node_env).await;
    assert_eq!(js["models"], py["models"]);
    assert_eq!(js["not_found"], "model_not_found");
    for i in 0..2 {
        assert_same("node", &js["embeddings"][i], &ours(i));
    }
    assert!(js["prompt_tokens"].as_u64().is_some_and(|n| n > 0));
}

/// The routes and their error shapes over plain HTTP.
async fn plain_http(d: &Deployment, alice: &str, bob: &str, model: &str) {
    let http = &d.server.http;
    let url = |path: &str| format!("{}{path}", d.server.base);

    // No key: OpenAI's 401.
    let response = http.get(url("/v1/models")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert!(response.headers().contains_key("x-request-id"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    assert_eq!(body["error"]["code"], "invalid_api_key", "{body}");
    assert!(body["error"]["message"].is_string() && body["error"].get("param").is_some());

    let (status, models) = call(d, Method::GET, "/v1/models", Some(alice), None).await;
    assert_eq!(status, 200, "{models}");
    assert_eq!(models["object"], "list");
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            assert_eq!(m["object"], "model");
            assert!(m["created"].is_i64() && m["owned_by"].is_string(), "{m}");
            m["id"].as_str().unwrap()
        })
        .collect();
    assert!(
        ids.contains(&model) && ids.contains(&"placeholder"),
        "{ids:?}"
    );
    // What is not served says so, in OpenAI's shape; chat history's routes are unchanged.
    let (status, chat) = call(
        d,
        Method::POST,
        "/v1/chat/completions",
        Some(alice),
        Some(json!({})),
    )
    .await;
    assert_eq!(
        (status, &chat["error"]["code"]),
        (404, &json!("unsupported_endpoint")),
        "{chat}"
    );
    let (status, _) = call(
        d,
        Method::POST,
        "/v1/chat/my-session",
        Some(alice),
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 405);
    let (status, gone) = call(d, Method::DELETE, "/v1/chat/completions", Some(alice), None).await;
    assert_eq!((status, error_code(&gone)), (404, "not_found"), "{gone}");
    let (status, _) = call(
        d,
        Method::POST,
        "/v1/completions",
        Some(alice),
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 404);
    let (status, one) = call(
        d,
        Method::GET,
        &format!("/v1/models/{model}"),
        Some(alice),
        None,
    )
    .await;
    assert_eq!((status, one["id"].as_str()), (200, Some(model)));
    let (status, missing) = call(d, Method::GET, "/v1/models/nope", Some(alice), None).await;
    assert_eq!(status, 404);
    assert_eq!(missing["error"]["code"], "model_not_found", "{missing}");

    // Token ids decode to the same text: the same vector.
    let ids = tiktoken_rs::cl100k_base_singleton().encode_ordinary(TEXTS[0]);
    let embed = |input: Value, extra: Value| {
        let mut body = json!({"input": input, "model": model});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        call(d, Method::POST, "/v1/embeddings", Some(alice), Some(body))
    };
    let (status, by_text) = embed(json!(TEXTS[0]), json!({})).await;
    assert_eq!(status, 200, "{by_text}");
    let (status, by_ids) = embed(json!(ids), json!({})).await;
    assert_eq!(status, 200, "{by_ids}");
    assert_same(
        "token ids",
        &by_ids["data"][0]["embedding"],
        &by_text["data"][0]["embedding"],
    );
    let (status, by_b64) = embed(json!([TEXTS[0]]), json!({"encoding_format": "base64"})).await;
    assert_eq!(status, 200, "{by_b64}");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(by_b64["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let floats: Vec<Value> = bytes
        .chunks_exact(4)
        .map(|c| json!(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
        .collect();
    assert_same(
        "base64",
        &Value::Array(floats),
        &by_text["data"][0]["embedding"],
    );
    for (input, extra, param) in [
        (json!([[1, 2], "text"]), json!({}), "input"),
        (json!([4_000_000_000u64]), json!({}), "input"),
        (json!([[]]), json!({}), "input"),
        (json!("x"), json!({"dimensions": 7}), "dimensions"),
    ] {
        let (status, body) = embed(input.clone(), extra).await;
        assert_eq!(status, 400, "{input}: {body}");
        assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
        if !body["error"]["param"].is_null() {
            assert_eq!(body["error"]["param"], param, "{body}");
        }
    }

    // Images: the same credits as /v1/images; bob has none.
    let generate = |token: &str, body: Value| {
        let request = http
            .post(url("/v1/images/generations"))
            .bearer_auth(token)
            .json(&body);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let retry = response
                .headers()
                .get("x-should-retry")
                .map(|v| v.to_str().unwrap().to_owned());
            (status, retry, response.json::<Value>().await.unwrap())
        }
    };
    let before = credits(d, alice).await;
    let (status, _, images) = generate(
        alice,
        // `flaky` fails over to the placeholder: 2 reserved, 1 charged.
        json!({"prompt": "a lighthouse", "size": "32x24", "response_format": "b64_json", "model": "flaky"}),
    )
    .await;
    assert_eq!(status, 200, "{images}");
    assert!(images["created"].is_i64());
    let png = base64::engine::general_purpose::STANDARD
        .decode(images["data"][0]["b64_json"].as_str().unwrap())
        .unwrap();
    assert_eq!(&png[16..24], &[0, 0, 0, 32, 0, 0, 0, 24], "a 32x24 PNG");
    assert_eq!(settled_credits(d, alice, before - 1).await, before - 1);
    let (status, retry, quota) = generate(
        bob,
        json!({"prompt": "a lighthouse", "size": "32x24", "model": "flaky"}),
    )
    .await;
    assert_eq!(status, 429, "{quota}");
    assert_eq!(quota["error"]["code"], "insufficient_quota", "{quota}");
    assert_eq!(retry.as_deref(), Some("false"));
    for (body, status, param) in [
        (json!({"prompt": "x", "n": 9}), 400, "n"),
        (json!({"prompt": "x", "size": "4096x4096"}), 400, "size"),
        (json!({"prompt": " "}), 400, "prompt"),
        (json!({"prompt": "x", "model": "nope"}), 404, "model"),
    ] {
        let (got, _, error) = generate(alice, body.clone()).await;
        assert_eq!(got, status, "{body}: {error}");
        assert_eq!(error["error"]["param"], param, "{error}");
    }
    // A model made in some sizes only: others are refused naming them; `auto` (and no
    // size) gets the first it lists, as 1024x1024 is not among them.
    let (status, _, refused) = generate(
        alice,
        json!({"prompt": "x", "size": "32x24", "model": "sized"}),
    )
    .await;
    assert_eq!(
        (status, &refused["error"]["param"]),
        (400, &json!("size")),
        "{refused}"
    );
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("128x96, 64x64"),
        "{refused}"
    );
    let (status, _, auto) = generate(
        alice,
        json!({"prompt": "x", "size": "auto", "model": "sized", "response_format": "b64_json"}),
    )
    .await;
    assert_eq!(status, 200, "{auto}");
    let png = base64::engine::general_purpose::STANDARD
        .decode(auto["data"][0]["b64_json"].as_str().unwrap())
        .unwrap();
    assert_eq!(&png[16..24], &[0, 0, 0, 64, 0, 0, 0, 64], "a 64x64 PNG");
    // Our own image route refuses the size before reserving anything too.
    let (status, own) = call(
        d,
        Method::POST,
        "/v1/images",
        Some(alice),
        Some(json!({"prompt": "x", "width": 32, "height": 24, "model": "sized"})),
    )
    .await;
    assert_eq!((status, error_code(&own)), (400, "invalid_input"), "{own}");

    // Every provider down: refunded, and an OpenAI server error.
    let before = credits(d, alice).await;
    let (status, _, failed) = generate(
        alice,
        json!({"prompt": "x", "size": "32x24", "model": "broken"}),
    )
    .await;
    assert_eq!(status, 503, "{failed}");
    assert_eq!(failed["error"]["type"], "server_error", "{failed}");
    assert_eq!(settled_credits(d, alice, before).await, before, "refunded");
}
