//! The example as a user runs it: `server-plus serve` and a separate `server-plus worker`
//! sharing the database queue. The user's route is in `/openapi.json`, needs
//! credentials, and its job runs in the worker process.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const ADMIN: (&str, &str) = ("admin", "a-long-example-password");

/// A child process killed on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The example binary in `dir`, with none of the caller's zeroscale settings.
fn example(dir: &Path, port: u16) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_server-plus"));
    for (key, _) in std::env::vars() {
        if key.starts_with("ZEROSCALE_") || key == "DATABASE_URL" || key == "REDIS_URL" {
            cmd.env_remove(key);
        }
    }
    cmd.current_dir(dir)
        .env("ZEROSCALE_DATA_DIR", dir.join("data"))
        .env("ZEROSCALE_SERVER__ADDR", format!("127.0.0.1:{port}"))
        .env("ZEROSCALE_QUEUE__KIND", "database")
        .env("ZEROSCALE_WORKERS__MODE", "separate")
        .env(
            "ZEROSCALE_AUTH__BOOTSTRAP_ADMIN",
            format!("{}:{}", ADMIN.0, ADMIN.1),
        )
        .env("ZEROSCALE_MODELS__PROVIDERS__LOCAL__AUTO_INSTALL", "false")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null());
    cmd
}

#[tokio::test]
async fn a_users_route_and_job_run_beside_zeroscales() {
    let dir = std::env::temp_dir().join(format!("zs-example-server-plus-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = std::fs::File::create(dir.join("serve.log")).unwrap();
    let _server = Running(
        example(&dir, port)
            .arg("serve")
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while http.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the example did not serve within 60 s:\n{}",
            std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The worker starts after the server has migrated the database.
    let log = std::fs::File::create(dir.join("worker.log")).unwrap();
    let _worker = Running(
        example(&dir, port)
            .arg("worker")
            .stderr(log)
            .spawn()
            .unwrap(),
    );

    // In the OpenAPI document, with its security and the common error responses.
    let openapi: Value = http
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let operation = &openapi["paths"]["/v1/word-counts"]["post"];
    assert!(
        operation["security"]
            .as_array()
            .is_some_and(|s| !s.is_empty()),
        "the route declares its security: {operation}"
    );
    assert!(operation["responses"]["401"].is_object(), "{operation}");
    assert!(
        openapi["paths"]["/v1/me"].is_object(),
        "zeroscale's own routes are still served"
    );

    // It needs credentials.
    let response = http
        .post(format!("{base}/v1/word-counts"))
        .json(&json!({"text": "to be or not to be"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    let login: Value = http
        .post(format!("{base}/v1/auth/login"))
        .json(&json!({"username": ADMIN.0, "password": ADMIN.1}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["token"].as_str().expect("a session token").to_owned();

    let response = http
        .post(format!("{base}/v1/word-counts"))
        .bearer_auth(&token)
        .json(&json!({"text": "To be or not to be"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // The separate worker process runs the user's job.
    let deadline = Instant::now() + Duration::from_secs(60);
    let job = loop {
        let job: Value = http
            .get(format!("{base}/v1/jobs/{id}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if job["state"] == "succeeded" || job["state"] == "dead" {
            break job;
        }
        assert!(
            Instant::now() < deadline,
            "the job did not finish within 60 s: {job}\n{}",
            std::fs::read_to_string(dir.join("worker.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["result"]["words"], 6);
    assert_eq!(job["result"]["counts"]["to"], 2);
    assert_eq!(job["result"]["counts"]["be"], 2);
    // It kept the counts in storage, which the second route reads back to their owner.
    let response = http
        .get(format!("{base}/v1/word-counts/{id}"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap(), job["result"]);
    let response = http
        .get(format!("{base}/v1/word-counts/not-a-job"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);

    // `POST /v1/jobs` takes the user's task by name, and refuses one nobody handles.
    let response = http
        .post(format!("{base}/v1/jobs"))
        .bearer_auth(&token)
        .json(&json!({"task": "example.count_words", "payload": {"text": "a"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let response = http
        .post(format!("{base}/v1/jobs"))
        .bearer_auth(&token)
        .json(&json!({"task": "example.no_such_job", "payload": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("example.count_words"), "{message}");

    drop((_worker, _server));
    let _ = std::fs::remove_dir_all(&dir);
}
