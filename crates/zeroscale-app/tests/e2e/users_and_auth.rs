//! The `users_and_auth` section of the e2e suite.

use reqwest::Method;
use serde_json::json;

use crate::common::login;
use crate::harness::*;

pub(crate) async fn run(d: &Deployment, admin: &str) -> (String, String) {
    let register = |name: &str| json!({"username": name, "password": "correct horse battery"});
    for name in ["alice", "bob"] {
        let (status, body) = call(
            d,
            Method::POST,
            "/v1/auth/register",
            None,
            Some(register(name)),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["role"], "user");
    }
    let (status, body) = call(
        d,
        Method::POST,
        "/v1/auth/register",
        None,
        Some(register("alice")),
    )
    .await;
    assert_eq!(
        (status, error_code(&body)),
        (409, "already_exists"),
        "{body}"
    );
    let (status, body) = call(
        d,
        Method::POST,
        "/v1/auth/register",
        None,
        Some(json!({"username": "carol", "password": "short"})),
    )
    .await;
    assert_eq!(status, 400, "{body}");

    let (status, body) = call(
        d,
        Method::POST,
        "/v1/auth/login",
        None,
        Some(json!({"username": "alice", "password": "wrong password"})),
    )
    .await;
    assert_eq!((status, error_code(&body)), (401, "unauthenticated"));
    let alice = login(&d.server, "alice", "correct horse battery").await;
    let bob = login(&d.server, "bob", "correct horse battery").await;

    let (status, me) = call(d, Method::GET, "/v1/me", Some(&alice), None).await;
    assert_eq!(status, 200);
    assert_eq!(
        (me["user"]["username"].as_str(), me["via"].as_str()),
        (Some("alice"), Some("session"))
    );
    let (status, body) = call(d, Method::GET, "/v1/me", None, None).await;
    assert_eq!((status, error_code(&body)), (401, "unauthenticated"));
    let (status, _) = call(d, Method::GET, "/v1/me", Some("zss_not-a-real-token"), None).await;
    assert_eq!(status, 401);
    let (_, me) = call(d, Method::GET, "/v1/me", Some(admin), None).await;
    assert_eq!(me["user"]["role"], "admin");

    // Logout ends the session.
    let extra = login(&d.server, "bob", "correct horse battery").await;
    let (status, _) = call(d, Method::POST, "/v1/auth/logout", Some(&extra), None).await;
    assert_eq!(status, 204);
    let (status, _) = call(d, Method::GET, "/v1/me", Some(&extra), None).await;
    assert_eq!(status, 401, "a logged-out token is refused");
    (alice, bob)
}
