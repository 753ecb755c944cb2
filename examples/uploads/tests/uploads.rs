//! The example as a user runs it, at two stages chosen by config alone: local files with
//! the in-memory queue, then S3 with Redis (from `cargo xtask services up`; skipped
//! outside CI without them). An upload is stored, its job counts it, the counts come back;
//! a missing upload is zeroscale's 404 JSON error.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use zeroscale_core::testing::require_service;

/// A child process killed on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the example in `dir` with `env` on a free port; returns it and its base URL.
async fn start(dir: &Path, env: &[(&str, String)], http: &reqwest::Client) -> (Running, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_uploads"));
    for (key, _) in std::env::vars() {
        if key.starts_with("UPLOADS_") {
            cmd.env_remove(key);
        }
    }
    cmd.current_dir(dir)
        .env("UPLOADS_DATA_DIR", dir.join("data"))
        .env("UPLOADS_SERVER__ADDR", format!("127.0.0.1:{port}"))
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("uploads.log")).unwrap());
    let running = Running(cmd.spawn().unwrap());
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while http
        .get(format!("{base}/uploads/x/stats"))
        .send()
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "the example did not start within 30 s:\n{}",
            std::fs::read_to_string(dir.join("uploads.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (running, base)
}

/// Uploads a file, waits for its counts, and checks the 404 of a missing one.
async fn upload_and_count(dir: &Path, env: &[(&str, String)]) {
    std::fs::create_dir_all(dir).unwrap();
    let http = reqwest::Client::new();
    let (_running, base) = start(dir, env, &http).await;
    let response = http
        .put(format!("{base}/uploads/poem.txt"))
        .body("one\ntwo\nthree\n")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let deadline = Instant::now() + Duration::from_secs(30);
    let stats = loop {
        let response = http
            .get(format!("{base}/uploads/poem.txt/stats"))
            .send()
            .await
            .unwrap();
        if response.status() == 200 {
            break response.json::<Value>().await.unwrap();
        }
        assert_eq!(response.status(), 404, "before the job ran");
        assert!(
            Instant::now() < deadline,
            "the job did not run within 30 s:\n{}",
            std::fs::read_to_string(dir.join("uploads.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(stats, json!({ "bytes": 14, "lines": 3 }));

    let response = http
        .get(format!("{base}/uploads/never.txt/stats"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found", "{body}");
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn temp_dir(label: &str) -> std::path::PathBuf {
    let dir =
        std::env::temp_dir().join(format!("zs-example-uploads-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[tokio::test]
async fn local_files_and_the_memory_queue() {
    let dir = temp_dir("local");
    upload_and_count(&dir, &[]).await;
    let files: Vec<_> = walk(&dir.join("data"));
    assert!(
        files
            .iter()
            .any(|f| f.to_string_lossy().contains("blobs/uploads/poem.txt")),
        "stored under the data dir's blobs: {files:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn s3_and_redis_by_config_alone() {
    let (Some(redis), Some(s3), Some(bucket)) = (
        require_service("ZEROSCALE_TEST_REDIS_URL", "Redis"),
        require_service("ZEROSCALE_TEST_S3_ENDPOINT", "the S3 server"),
        require_service("ZEROSCALE_TEST_S3_BUCKET", "the S3 server"),
    ) else {
        return;
    };
    let dir = temp_dir("s3");
    let prefix = format!("zs-example-uploads-{}", std::process::id());
    upload_and_count(
        &dir,
        &[
            ("UPLOADS_QUEUE__KIND", "redis".into()),
            ("UPLOADS_QUEUE__URL", redis),
            ("UPLOADS_QUEUE__KEY_PREFIX", prefix),
            ("UPLOADS_STORAGE__KIND", "s3".into()),
            ("UPLOADS_STORAGE__BUCKET", bucket),
            ("UPLOADS_STORAGE__ENDPOINT", s3),
            ("UPLOADS_STORAGE__ALLOW_HTTP", "true".into()),
            ("UPLOADS_STORAGE__ACCESS_KEY_ID", "test".into()),
            ("UPLOADS_STORAGE__SECRET_ACCESS_KEY", "test".into()),
        ],
    )
    .await;
    assert!(
        !dir.join("data/blobs").exists(),
        "nothing stored locally at the S3 stage"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
