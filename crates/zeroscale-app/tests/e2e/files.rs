//! The `files` section of the e2e suite.

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::*;

pub(crate) async fn run(d: &Deployment, alice: &str, bob: &str) {
    let http = &d.server.http;
    let base = &d.server.base;
    let content: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    let response = http
        .post(format!(
            "{base}/v1/files?filename=r%C3%A9sum%C3%A9%202026.bin"
        ))
        .bearer_auth(alice)
        .header("Content-Type", "application/x-test")
        .body(content.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let file: Value = response.json().await.unwrap();
    assert_eq!(file["size"], 5000);
    assert_eq!(file["filename"], "résumé 2026.bin");
    assert_eq!(file["content_type"], "application/x-test");
    let id = file["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 32);

    // Download, whole and by range.
    let response = http
        .get(format!("{base}/v1/files/{id}"))
        .bearer_auth(alice)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-test");
    assert_eq!(response.headers()["accept-ranges"], "bytes");
    assert_eq!(response.bytes().await.unwrap().as_ref(), content.as_slice());
    let response = http
        .get(format!("{base}/v1/files/{id}"))
        .bearer_auth(alice)
        .header("Range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 206);
    assert_eq!(response.headers()["content-range"], "bytes 100-199/5000");
    assert_eq!(response.bytes().await.unwrap().as_ref(), &content[100..200]);
    let response = http
        .get(format!("{base}/v1/files/{id}"))
        .bearer_auth(alice)
        .header("Range", "bytes=-10")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 206);
    assert_eq!(response.bytes().await.unwrap().as_ref(), &content[4990..]);
    let response = http
        .get(format!("{base}/v1/files/{id}"))
        .bearer_auth(alice)
        .header("Range", "bytes=9000-")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 416);
    let response = http
        .head(format!("{base}/v1/files/{id}"))
        .bearer_auth(alice)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-length"], "5000");

    // Bob cannot reach it, whatever he tries.
    let response = http
        .get(format!("{base}/v1/files/{id}"))
        .bearer_auth(bob)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let (status, _) = call(
        d,
        Method::DELETE,
        &format!("/v1/files/{id}"),
        Some(bob),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (_, list) = call(d, Method::GET, "/v1/files", Some(bob), None).await;
    assert!(list["data"].as_array().unwrap().is_empty());
    let (_, list) = call(d, Method::GET, "/v1/files", Some(alice), None).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    let response = http
        .get(format!("{base}/v1/files/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    // A signed GET URL works without credentials.
    let (status, signed) = call(
        d,
        Method::POST,
        &format!("/v1/files/{id}/signed-url"),
        Some(alice),
        Some(json!({"method": "GET", "expires_in_secs": 300})),
    )
    .await;
    assert_eq!(status, 200, "{signed}");
    let url = signed["url"].as_str().unwrap();
    let fetched = reqwest::get(url).await.unwrap();
    assert_eq!(fetched.status(), 200, "{url}");
    assert_eq!(fetched.bytes().await.unwrap().as_ref(), content.as_slice());
    let (status, _) = call(
        d,
        Method::POST,
        &format!("/v1/files/{id}/signed-url"),
        Some(alice),
        Some(json!({"expires_in_secs": 0})),
    )
    .await;
    assert_eq!(status, 400);

    // A direct upload through a signed PUT URL.
    let (status, upload) = call(
        d,
        Method::POST,
        "/v1/files/upload-url",
        Some(alice),
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 200, "{upload}");
    let put = reqwest::Client::new()
        .put(upload["url"].as_str().unwrap())
        .header("Content-Type", "text/plain")
        .body("direct upload")
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "{}", put.status());
    let new_id = upload["id"].as_str().unwrap();
    let response = http
        .get(format!("{base}/v1/files/{new_id}"))
        .bearer_auth(alice)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "direct upload");

    // Too large: refused, nothing kept.
    let big = vec![7u8; UPLOAD_LIMIT as usize + 1];
    let response = http
        .post(format!("{base}/v1/files"))
        .bearer_auth(alice)
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let (_, list) = call(d, Method::GET, "/v1/files", Some(alice), None).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 2);

    let (status, _) = call(
        d,
        Method::DELETE,
        &format!("/v1/files/{id}"),
        Some(alice),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let response = http
        .get(format!("{base}/v1/files/{id}"))
        .bearer_auth(alice)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}
