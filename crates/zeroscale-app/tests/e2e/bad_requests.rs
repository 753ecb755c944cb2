//! The `bad_requests` section of the e2e suite.

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::*;

pub(crate) async fn run(d: &Deployment, alice: &str) {
    let response = d
        .server
        .http
        .post(format!("{}/v1/chat/s/messages", d.server.base))
        .bearer_auth(alice)
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(error_code(&body), "invalid_input");
    let (status, body) = call(
        d,
        Method::POST,
        "/v1/chat/s/messages",
        Some(alice),
        Some(json!({"role": "user", "content": 5})),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("content"),
        "{body}"
    );
    let (status, body) = call(
        d,
        Method::POST,
        "/v1/chat/s/messages",
        Some(alice),
        Some(json!({"role": "user", "content": "x", "mood": "happy"})),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"].as_str().unwrap().contains("mood"),
        "{body}"
    );
    let (status, body) = call(
        d,
        Method::GET,
        "/v1/chat/s/messages?limit=abc",
        Some(alice),
        None,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    // Page sizes outside the documented cap are refused, not silently changed.
    let (status, body) = call(
        d,
        Method::GET,
        "/v1/chat/s/messages?limit=5000",
        Some(alice),
        None,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("1 to 1000"),
        "{body}"
    );
}
