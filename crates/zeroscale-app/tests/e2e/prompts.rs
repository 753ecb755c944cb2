//! The `prompts` section of the e2e suite.

use reqwest::Method;
use serde_json::json;

use crate::harness::*;

pub(crate) async fn run(d: &Deployment, admin: &str, alice: &str) {
    let (status, _) = call(
        d,
        Method::POST,
        "/v1/prompts",
        Some(alice),
        Some(json!({"name": "x", "content": "y"})),
    )
    .await;
    assert_eq!(status, 403);
    let (status, prompt) = call(
        d,
        Method::POST,
        "/v1/prompts",
        Some(admin),
        Some(json!({"name": "helpful", "content": "Be helpful."})),
    )
    .await;
    assert_eq!(status, 201, "{prompt}");
    let id = prompt["id"].as_str().unwrap();
    let (status, list) = call(d, Method::GET, "/v1/prompts", Some(alice), None).await;
    assert_eq!(status, 200);
    assert!(
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "helpful")
    );
    let (status, updated) = call(
        d,
        Method::PATCH,
        &format!("/v1/prompts/{id}"),
        Some(admin),
        Some(json!({"content": "Be very helpful."})),
    )
    .await;
    assert_eq!((status, updated["version"].as_i64()), (200, Some(2)));
    let (status, got) = call(
        d,
        Method::GET,
        &format!("/v1/prompts/{id}"),
        Some(alice),
        None,
    )
    .await;
    assert_eq!(
        (status, got["content"].as_str()),
        (200, Some("Be very helpful."))
    );
    let (status, _) = call(
        d,
        Method::DELETE,
        &format!("/v1/prompts/{id}"),
        Some(alice),
        None,
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = call(
        d,
        Method::DELETE,
        &format!("/v1/prompts/{id}"),
        Some(admin),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = call(
        d,
        Method::GET,
        &format!("/v1/prompts/{id}"),
        Some(alice),
        None,
    )
    .await;
    assert_eq!(status, 404);
}
