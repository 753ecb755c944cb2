//! The `jobs` section of the e2e suite.

use reqwest::Method;
use serde_json::json;

use crate::harness::*;

pub(crate) async fn run(d: &Deployment, alice: &str, bob: &str) {
    let (status, job) = call(
        d,
        Method::POST,
        "/v1/jobs",
        Some(alice),
        Some(json!({"task": "zeroscale.echo", "payload": {"hello": "world"}})),
    )
    .await;
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    let done = wait_job(d, alice, &id).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["result"], json!({"hello": "world"}));
    assert_eq!(done["attempts"], 1);

    let (status, _) = call(d, Method::GET, &format!("/v1/jobs/{id}"), Some(bob), None).await;
    assert_eq!(status, 404, "bob cannot see alice's job");
    let (status, _) = call(
        d,
        Method::POST,
        &format!("/v1/jobs/{id}/cancel"),
        Some(bob),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (_, list) = call(d, Method::GET, "/v1/jobs", Some(alice), None).await;
    assert!(
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["id"] == id.as_str())
    );

    let (status, body) = call(
        d,
        Method::POST,
        "/v1/jobs",
        Some(alice),
        Some(json!({"task": "internal.generate_image", "payload": {"generation_id": "x"}})),
    )
    .await;
    assert_eq!((status, error_code(&body)), (403, "permission_denied"));
    // A task no worker of the app handles is refused, not left to go dead.
    let (status, body) = call(
        d,
        Method::POST,
        "/v1/jobs",
        Some(alice),
        Some(json!({"task": "nobody.handles_this", "payload": {}})),
    )
    .await;
    assert_eq!(
        (status, error_code(&body)),
        (400, "invalid_input"),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("zeroscale.echo"),
        "the message lists the tasks: {body}"
    );
    let (status, _) = call(
        d,
        Method::POST,
        "/v1/jobs",
        Some(alice),
        Some(json!({"task": "zeroscale.echo", "queue": "nobody-listens"})),
    )
    .await;
    assert_eq!(status, 400);

    // A delayed job cancelled before it runs.
    let (_, job) = call(
        d,
        Method::POST,
        "/v1/jobs",
        Some(alice),
        Some(json!({"task": "zeroscale.echo", "delay_secs": 3600})),
    )
    .await;
    assert_eq!(job["state"], "scheduled", "{job}");
    let id = job["id"].as_str().unwrap();
    let (status, cancelled) = call(
        d,
        Method::POST,
        &format!("/v1/jobs/{id}/cancel"),
        Some(alice),
        None,
    )
    .await;
    assert_eq!(
        (status, cancelled["state"].as_str()),
        (200, Some("cancelled")),
        "{cancelled}"
    );
}
