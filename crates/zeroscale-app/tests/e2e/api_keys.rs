//! The `api_keys` section of the e2e suite.

use reqwest::Method;
use serde_json::json;

use crate::harness::*;

pub(crate) async fn run(d: &Deployment, admin: &str, alice: &str) {
    let (_, me) = call(d, Method::GET, "/v1/me", Some(alice), None).await;
    let alice_id = me["user"]["id"].as_str().unwrap().to_owned();
    let (status, body) = call(
        d,
        Method::POST,
        "/v1/api-keys",
        Some(alice),
        Some(json!({"client_name": "mine"})),
    )
    .await;
    assert_eq!((status, error_code(&body)), (403, "permission_denied"));
    let (status, body) = call(d, Method::GET, "/v1/api-keys", None, None).await;
    assert_eq!((status, error_code(&body)), (401, "unauthenticated"));

    let (status, created) = call(
        d,
        Method::POST,
        "/v1/api-keys",
        Some(admin),
        Some(json!({"client_name": "alice's script", "user_id": alice_id})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let key = created["plaintext"].as_str().unwrap().to_owned();
    let key_id = created["key"]["id"].as_str().unwrap().to_owned();
    assert!(key.starts_with("zs_"));

    // The key works as a bearer token and as X-API-Key.
    let (status, me) = call(d, Method::GET, "/v1/me", Some(&key), None).await;
    assert_eq!((status, me["via"].as_str()), (200, Some("api_key")));
    let response = d
        .server
        .http
        .get(format!("{}/v1/me", d.server.base))
        .header("X-API-Key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let (status, list) = call(
        d,
        Method::GET,
        &format!("/v1/api-keys?user_id={alice_id}"),
        Some(admin),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let listed = list["data"].as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert!(
        listed[0].get("plaintext").is_none(),
        "listings never show the secret"
    );

    let (status, revoked) = call(
        d,
        Method::DELETE,
        &format!("/v1/api-keys/{key_id}"),
        Some(admin),
        None,
    )
    .await;
    assert_eq!((status, revoked["active"].as_bool()), (200, Some(false)));
    let (status, _) = call(d, Method::GET, "/v1/me", Some(&key), None).await;
    assert_eq!(status, 401, "a revoked key stops working");
}
