//! The example as a user runs it: `server-plus serve` and a separate `server-plus worker`
//! sharing the database queue. The user's route is in `/openapi.json`, needs
//! credentials, and its job runs in the worker process and writes the user's table; that
//! table is tracked by `migrate status|down|up|fresh` and travels through `backup` and
//! `restore` with zeroscale's, and through `db copy` and `stage move` to PostgreSQL, where
//! its migration runs too. The app's name, config section and command work as
//! zeroscale's own.

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

/// The example binary in `dir`, with none of the caller's zeroscale settings. The app is
/// named `wordcount`: its env vars are `WORDCOUNT_…`, and `ZEROSCALE_…` ones are not its.
fn example(dir: &Path, port: u16) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_server-plus"));
    for (key, _) in std::env::vars() {
        if key.starts_with("WORDCOUNT_") || key == "DATABASE_URL" || key == "REDIS_URL" {
            cmd.env_remove(key);
        }
    }
    cmd.current_dir(dir)
        .env("WORDCOUNT_DATA_DIR", dir.join("data"))
        .env("WORDCOUNT_SERVER__ADDR", format!("127.0.0.1:{port}"))
        .env("WORDCOUNT_QUEUE__KIND", "database")
        .env("WORDCOUNT_WORKERS__MODE", "separate")
        .env(
            "WORDCOUNT_AUTH__BOOTSTRAP_ADMIN",
            format!("{}:{}", ADMIN.0, ADMIN.1),
        )
        .env("WORDCOUNT_MODELS__PROVIDERS__LOCAL__AUTO_INSTALL", "false")
        .env("WORDCOUNT_WORDCOUNT__MAX_WORDS", "50")
        // Not this app's prefix: ignored.
        .env("ZEROSCALE_SERVER__ADDR", "not an address")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null());
    cmd
}

/// Runs `server-plus ARGS` in `dir` to the end; returns whether it succeeded and its
/// output.
fn run(dir: &Path, args: &[&str]) -> (std::process::ExitStatus, String) {
    let out = example(dir, 0)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status, text)
}

/// Runs `server-plus ARGS` in `dir` to the end; returns its output, asserting success.
fn command(dir: &Path, args: &[&str]) -> String {
    let (status, text) = run(dir, args);
    assert!(status.success(), "server-plus {args:?} failed:\n{text}");
    text
}

/// Starts `server-plus serve ARGS` in `dir` on a free port; returns it and its base URL.
async fn serve(dir: &Path, http: &reqwest::Client, args: &[&str]) -> (Running, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = std::fs::File::create(dir.join("serve.log")).unwrap();
    let server = Running(
        example(dir, port)
            .arg("serve")
            .args(args)
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while http.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the example did not serve within 60 s:\n{}",
            std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (server, base)
}

/// The admin's session token.
async fn login(http: &reqwest::Client, base: &str) -> String {
    let login: Value = http
        .post(format!("{base}/v1/auth/login"))
        .json(&json!({"username": ADMIN.0, "password": ADMIN.1}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    login["token"].as_str().expect("a session token").to_owned()
}

const MIGRATION: &str = "m20261205_000001_example_word_counts";

#[tokio::test]
async fn a_users_route_job_and_table_run_beside_zeroscales() {
    let dir = std::env::temp_dir().join(format!("zs-example-server-plus-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let http = reqwest::Client::new();
    let (server, base) = serve(&dir, &http, &[]).await;
    // The worker starts after the server has migrated the database.
    let log = std::fs::File::create(dir.join("worker.log")).unwrap();
    let worker = Running(example(&dir, 0).arg("worker").stderr(log).spawn().unwrap());

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

    let token = login(&http, &base).await;

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
    // It kept the counts in the app's table, which the second route reads back.
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

    // The app's config section limits the route (`WORDCOUNT_WORDCOUNT__MAX_WORDS=50`).
    let response = http
        .post(format!("{base}/v1/word-counts"))
        .bearer_auth(&token)
        .json(&json!({"text": "word ".repeat(51)}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("more than 50 words"),
        "{body}"
    );

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

    drop((worker, server));

    // The app's own command runs with the backends connected.
    let top = command(&dir, &["top", "--limit", "2"]);
    let lines: Vec<&str> = top.lines().map(str::trim).collect();
    assert_eq!(lines, ["2 be", "2 to"], "{top}");

    // Its config section is shown with its source, and checked like zeroscale's keys.
    let shown = command(&dir, &["config", "show"]);
    assert!(
        shown.contains("max_words = 50  # env var `WORDCOUNT_WORDCOUNT__MAX_WORDS`"),
        "{shown}"
    );
    std::fs::create_dir_all(dir.join("config")).unwrap();
    std::fs::write(
        dir.join("config/default.toml"),
        "[wordcount]\nmax_wrods = 3\n",
    )
    .unwrap();
    let (status, text) = run(&dir, &["config", "show"]);
    assert_eq!(status.code(), Some(2), "{text}");
    assert!(
        text.contains("unknown key `wordcount.max_wrods`")
            && text.contains("config/default.toml:2")
            && text.contains("max_words"),
        "{text}"
    );
    std::fs::remove_file(dir.join("config/default.toml")).unwrap();

    // The app's migration is tracked with zeroscale's.
    let status = command(&dir, &["migrate", "status"]);
    assert!(
        status.contains(&format!("applied  {MIGRATION}")),
        "{status}"
    );
    assert!(
        status.contains("applied  m20261122_000001_domain"),
        "{status}"
    );

    // Its table travels: backed up, restored into an empty database, served from there.
    let archive = dir.join("backup.zsb");
    command(&dir, &["backup", "--output", archive.to_str().unwrap()]);
    let moved = dir.join("restored");
    std::fs::create_dir_all(&moved).unwrap();
    command(&moved, &["restore", archive.to_str().unwrap()]);
    let (restored, base) = serve(&moved, &http, &[]).await;
    let token = login(&http, &base).await;
    let response = http
        .get(format!("{base}/v1/word-counts/{id}"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "the user's rows were restored");
    assert_eq!(response.json::<Value>().await.unwrap(), job["result"]);
    drop(restored);

    // `db copy` carries it to PostgreSQL, where the app's migration is tracked too.
    if let Some(url) = empty_postgres("zs_example_server_plus").await {
        std::fs::write(dir.join("from.toml"), "").unwrap();
        std::fs::write(
            dir.join("pg.toml"),
            format!("[database]\nkind = \"postgres\"\nurl = \"{url}\"\n"),
        )
        .unwrap();
        command(
            &dir,
            &["db", "copy", "--from", "from.toml", "--to", "pg.toml"],
        );
        let (on_pg, base) = serve(&dir, &http, &["--config", "pg.toml"]).await;
        let token = login(&http, &base).await;
        let response = http
            .get(format!("{base}/v1/word-counts/{id}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "the user's rows were copied");
        assert_eq!(response.json::<Value>().await.unwrap(), job["result"]);
        drop(on_pg);
        let pg = ["--config", "pg.toml"];
        let status = command(&dir, &[&["migrate", "status"][..], &pg].concat());
        assert!(
            status.contains(&format!("applied  {MIGRATION}")),
            "{status}"
        );
        command(&dir, &[&["migrate", "down"][..], &pg].concat());
        let status = command(&dir, &[&["migrate", "status"][..], &pg].concat());
        assert_eq!(status.matches("pending").count(), 2, "{status}");
        assert!(
            status.contains(&format!("pending  {MIGRATION}")),
            "{status}"
        );
        command(&dir, &[&["migrate", "fresh", "--yes"][..], &pg].concat());
        let status = command(&dir, &[&["migrate", "status"][..], &pg].concat());
        assert!(
            status.contains(&format!("applied  {MIGRATION}")) && !status.contains("pending"),
            "{status}"
        );
    }

    // `stage move` carries it too, with the files, into another empty database; the
    // app's own command reads the user's rows there.
    if let Some(url) = empty_postgres("zs_example_server_plus_moved").await {
        std::fs::write(
            dir.join("moved.toml"),
            format!(
                "[database]\nkind = \"postgres\"\nurl = \"{url}\"\n\n[storage]\nkind = \"local\"\nroot = \"{}\"\n",
                dir.join("moved-blobs").display()
            ),
        )
        .unwrap();
        // The job the worker left queued (stopped above) moves with the rows.
        let moved = command(
            &dir,
            &[
                "stage",
                "move",
                "--from",
                "from.toml",
                "--to",
                "moved.toml",
                "--with-jobs",
            ],
        );
        assert!(moved.contains("and 1 job(s)"), "{moved}");
        let top = command(&dir, &["top", "--config", "moved.toml"]);
        let lines: Vec<&str> = top.lines().map(str::trim).collect();
        assert_eq!(lines[..2], ["2 be", "2 to"], "{top}");
    }

    // Rolled back first (it is the newest), applied again, and recreated by `fresh`.
    command(&moved, &["migrate", "down"]);
    let status = command(&moved, &["migrate", "status"]);
    assert!(
        status.contains(&format!("pending  {MIGRATION}")),
        "{status}"
    );
    assert_eq!(
        status.matches("pending").count(),
        2,
        "only the app's migration, the newest, is rolled back: {status}"
    );
    command(&moved, &["migrate", "up"]);
    let status = command(&moved, &["migrate", "status"]);
    assert!(!status.contains("pending"), "{status}");
    command(&moved, &["migrate", "fresh", "--yes"]);
    let status = command(&moved, &["migrate", "status"]);
    assert!(
        status.contains(&format!("applied  {MIGRATION}")) && !status.contains("pending"),
        "{status}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// An empty PostgreSQL database called `name` (dropped and created again), or `None`
/// when no PostgreSQL is configured (outside CI).
async fn empty_postgres(name: &str) -> Option<String> {
    let admin_url =
        zeroscale_core::testing::require_service("ZEROSCALE_TEST_POSTGRES_URL", "PostgreSQL")?;
    let url = zeroscale_db::testing::empty_postgres_database(&admin_url, name)
        .await
        .expect("create the database");
    Some(url)
}
