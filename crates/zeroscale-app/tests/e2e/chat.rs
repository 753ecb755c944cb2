//! The `chat` section of the e2e suite.

use reqwest::Method;
use serde_json::json;

use crate::harness::*;

pub(crate) async fn run(d: &Deployment, alice: &str, bob: &str) {
    for (i, role) in ["system", "user", "assistant"].iter().enumerate() {
        let (status, m) = call(
            d,
            Method::POST,
            "/v1/chat/main/messages",
            Some(alice),
            Some(json!({"role": role, "content": format!("message {i}")})),
        )
        .await;
        assert_eq!(
            (status, m["session_id"].as_str()),
            (201, Some("main")),
            "{m}"
        );
    }
    // Bob's `main` is his own.
    let (status, _) = call(
        d,
        Method::POST,
        "/v1/chat/main/messages",
        Some(bob),
        Some(json!({"role": "user", "content": "bob here"})),
    )
    .await;
    assert_eq!(status, 201);
    let (_, page) = call(
        d,
        Method::GET,
        "/v1/chat/main/messages?limit=2",
        Some(alice),
        None,
    )
    .await;
    let first: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(first, ["message 0", "message 1"]);
    let cursor = page["next_cursor"].as_str().expect("a second page");
    let (_, page) = call(
        d,
        Method::GET,
        &format!("/v1/chat/main/messages?limit=2&cursor={cursor}"),
        Some(alice),
        None,
    )
    .await;
    assert_eq!(page["data"][0]["content"], "message 2");
    assert!(page["next_cursor"].is_null());
    let (_, bobs) = call(d, Method::GET, "/v1/chat/main/messages", Some(bob), None).await;
    assert_eq!(bobs["data"].as_array().unwrap().len(), 1);
    assert_eq!(bobs["data"][0]["content"], "bob here");

    let (status, _) = call(d, Method::DELETE, "/v1/chat/main", Some(alice), None).await;
    assert_eq!(status, 204);
    let (_, page) = call(d, Method::GET, "/v1/chat/main/messages", Some(alice), None).await;
    assert!(page["data"].as_array().unwrap().is_empty());
    let (_, bobs) = call(d, Method::GET, "/v1/chat/main/messages", Some(bob), None).await;
    assert_eq!(
        bobs["data"].as_array().unwrap().len(),
        1,
        "bob's session untouched"
    );
    let (status, _) = call(d, Method::DELETE, "/v1/chat/nosuch", Some(alice), None).await;
    assert_eq!(status, 404);
}
