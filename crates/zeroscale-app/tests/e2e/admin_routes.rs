//! The `admin_routes` section of the e2e suite.

use reqwest::Method;
use serde_json::json;

use crate::harness::*;

pub(crate) async fn run(d: &Deployment, admin: &str, alice: &str, bob: &str) {
    for path in [
        "/v1/admin/providers",
        "/v1/admin/jobs/stats",
        "/v1/admin/jobs/dead",
        "/v1/admin/users",
    ] {
        let (status, _) = call(d, Method::GET, path, Some(alice), None).await;
        assert_eq!(status, 403, "{path}");
        let (status, _) = call(d, Method::GET, path, None, None).await;
        assert_eq!(status, 401, "{path}");
    }
    let (status, providers) = call(d, Method::GET, "/v1/admin/providers", Some(admin), None).await;
    assert_eq!(status, 200);
    let down = providers["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "down")
        .expect("the down provider is listed");
    // At stage 3 the images ran in a worker process, whose router counted the failures.
    if d.workers.is_empty() {
        assert!(down["failures"].as_u64().unwrap() >= 2, "{down}");
    }
    let (status, check) = call(
        d,
        Method::POST,
        "/v1/admin/providers/placeholder/check",
        Some(admin),
        None,
    )
    .await;
    assert_eq!(
        (status, check["ok"].as_bool()),
        (200, Some(true)),
        "{check}"
    );
    let (status, check) = call(
        d,
        Method::POST,
        "/v1/admin/providers/down/check",
        Some(admin),
        None,
    )
    .await;
    assert_eq!(
        (status, check["ok"].as_bool()),
        (200, Some(false)),
        "{check}"
    );
    let (status, _) = call(
        d,
        Method::POST,
        "/v1/admin/providers/nosuch/check",
        Some(admin),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, stats) = call(d, Method::GET, "/v1/admin/jobs/stats", Some(admin), None).await;
    assert_eq!(status, 200, "{stats}");
    assert!(
        stats["stats"]["succeeded"].as_u64().unwrap() >= 3,
        "{stats}"
    );
    let (status, _) = call(d, Method::GET, "/v1/admin/jobs/dead", Some(admin), None).await;
    assert_eq!(status, 200);
    let (status, users) = call(d, Method::GET, "/v1/admin/users", Some(admin), None).await;
    assert_eq!(status, 200);
    let bob_id = users["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "bob")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, user) = call(
        d,
        Method::PATCH,
        &format!("/v1/admin/users/{bob_id}"),
        Some(admin),
        Some(json!({"active": false})),
    )
    .await;
    assert_eq!((status, user["active"].as_bool()), (200, Some(false)));
    let (status, _) = call(d, Method::GET, "/v1/me", Some(bob), None).await;
    assert_eq!(status, 401, "a deactivated user's session stops working");
}
