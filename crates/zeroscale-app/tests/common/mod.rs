//! Helpers shared by the app's tests: the `zeroscale` binary with a clean environment,
//! and worker processes.

#![allow(dead_code, unreachable_pub)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The binary, run in `dir` with its data dir inside it, and none of the test's own
/// `ZEROSCALE_*`, `DATABASE_URL` or `REDIS_URL` variables. It does not install the local
/// model by itself (`auto_install = false`): the tests that want that turn it back on.
pub fn zeroscale(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_zeroscale"));
    for (key, _) in std::env::vars() {
        if key.starts_with("ZEROSCALE_") || key == "DATABASE_URL" || key == "REDIS_URL" {
            cmd.env_remove(key);
        }
    }
    cmd.current_dir(dir)
        .env("ZEROSCALE_DATA_DIR", dir.join("data"))
        .env("ZEROSCALE_MODELS__PROVIDERS__LOCAL__AUTO_INSTALL", "false");
    cmd
}

/// A quiet `zeroscale worker` on the Redis at `url` under key prefix `prefix`, with 2 s
/// leases so the jobs of a killed worker come back quickly.
pub fn worker(dir: &Path, url: &str, prefix: &str, concurrency: usize) -> Child {
    zeroscale(dir)
        .arg("worker")
        .env("REDIS_URL", url)
        .env("ZEROSCALE_QUEUE__KEY_PREFIX", prefix)
        .env("ZEROSCALE_WORKERS__CONCURRENCY", concurrency.to_string())
        .env("ZEROSCALE_WORKERS__MODE", "separate")
        .env("ZEROSCALE_JOBS__LEASE_SECS", "2")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start zeroscale worker")
}

/// A private temp folder per test, removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("zs-app-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `zeroscale serve` process on a free port; killed on drop. Its log goes to
/// `server-<port>.log` in its folder, printed when a start fails.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub log: std::path::PathBuf,
    pub http: reqwest::Client,
    /// How it was started (program, arguments, environment, folder), to run CLI commands
    /// against the same configuration.
    launch: Launch,
    /// An admin's session, made on first use by [`Server::readyz_detail`].
    admin: tokio::sync::OnceCell<String>,
}

struct Launch {
    program: std::ffi::OsString,
    args: Vec<std::ffi::OsString>,
    envs: Vec<(std::ffi::OsString, Option<std::ffi::OsString>)>,
    dir: Option<std::path::PathBuf>,
}

impl Server {
    /// Starts `cmd` (from [`zeroscale`]) and waits until `/healthz` answers.
    pub async fn start(mut cmd: Command) -> Server {
        let port = free_port();
        let dir = cmd
            .get_current_dir()
            .map(Path::to_path_buf)
            .unwrap_or_else(std::env::temp_dir);
        let log = dir.join(format!("server-{port}.log"));
        let file = std::fs::File::create(&log).expect("create the server log");
        let launch = Launch {
            program: cmd.get_program().to_owned(),
            args: cmd
                .get_args()
                .filter(|a| *a != "serve")
                .map(ToOwned::to_owned)
                .collect(),
            envs: cmd
                .get_envs()
                .map(|(k, v)| (k.to_owned(), v.map(ToOwned::to_owned)))
                .collect(),
            dir: cmd.get_current_dir().map(Path::to_path_buf),
        };
        cmd.env("ZEROSCALE_SERVER__ADDR", format!("127.0.0.1:{port}"))
            .env("ZEROSCALE_SERVER__SHUTDOWN_GRACE_SECS", "5")
            .stdout(Stdio::null())
            .stderr(Stdio::from(file));
        let child = cmd.spawn().expect("start zeroscale");
        let mut server = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
            http: reqwest::Client::new(),
            launch,
            admin: tokio::sync::OnceCell::new(),
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while std::time::Instant::now() < deadline {
            if server
                .http
                .get(format!("{}/healthz", server.base))
                .send()
                .await
                .is_ok()
            {
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!(
                    "zeroscale exited with {status} before serving:\n{}",
                    server.log_text()
                );
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!(
            "zeroscale did not serve /healthz within 60s:\n{}",
            server.log_text()
        );
    }

    /// The server's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `zeroscale` with the server's configuration (its arguments but `serve`, its
    /// environment and folder), to run CLI commands against it.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.launch.program);
        cmd.args(&self.launch.args);
        for (key, value) in &self.launch.envs {
            match value {
                Some(v) => cmd.env(key, v),
                None => cmd.env_remove(key),
            };
        }
        if let Some(dir) = &self.launch.dir {
            cmd.current_dir(dir);
        }
        cmd
    }

    /// `/readyz` as an admin sees it (each check's backend and detail); the admin is
    /// made with `zeroscale users create-admin` on first use.
    pub async fn readyz_detail(&self) -> (u16, serde_json::Value) {
        let token = self.admin_session().await;
        self.call(reqwest::Method::GET, "/readyz", Some(token), None)
            .await
    }

    /// An admin's session token (the admin `readyz-admin`, made on first use).
    pub async fn admin_session(&self) -> &str {
        self.admin
            .get_or_init(|| admin_token(self, self.command(), "readyz-admin"))
            .await
    }

    /// The `/metrics` text, read with [`Server::admin_session`].
    pub async fn metrics_text(&self) -> String {
        let response = self
            .http
            .get(format!("{}/metrics", self.base))
            .bearer_auth(self.admin_session().await)
            .send()
            .await
            .expect("GET /metrics");
        assert_eq!(response.status(), 200, "GET /metrics");
        response.text().await.expect("the /metrics body")
    }

    /// GET `path` without credentials: status and JSON body.
    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        self.call(reqwest::Method::GET, path, None, None).await
    }

    /// A JSON request with an optional bearer token: status and JSON body (`null` when
    /// the body is empty).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let bytes = response.bytes().await.expect("body");
        let value = if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned())
            })
        };
        (status, value)
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn terminate(mut self) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "zeroscale exited with {status} after SIGTERM:\n{}",
                    self.log_text()
                );
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "zeroscale did not stop within 10s of SIGTERM"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Creates an admin with `zeroscale users create-admin` in the instance run by `cmd`'s
/// environment (same data dir and database), then logs in; returns the session token.
pub async fn admin_token(server: &Server, mut create: Command, username: &str) -> String {
    let password = "admin-password-1";
    let mut child = create
        .args(["users", "create-admin", "--username", username])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run users create-admin");
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, "{password}").unwrap();
    }
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "create-admin failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    login(server, username, password).await
}

/// Registers `username` (password `long enough password`) and logs in; returns the
/// session token.
pub async fn register(server: &Server, username: &str) -> String {
    let (status, body) = server
        .call(
            reqwest::Method::POST,
            "/v1/auth/register",
            None,
            Some(serde_json::json!({"username": username, "password": "long enough password"})),
        )
        .await;
    assert_eq!(status, 201, "register {username}: {body}");
    login(server, username, "long enough password").await
}

/// Logs in; returns the session token.
pub async fn login(server: &Server, username: &str, password: &str) -> String {
    let (status, body) = server
        .call(
            reqwest::Method::POST,
            "/v1/auth/login",
            None,
            Some(serde_json::json!({ "username": username, "password": password })),
        )
        .await;
    assert_eq!(status, 200, "login: {body}");
    body["token"].as_str().expect("token").to_owned()
}

/// A new, empty PostgreSQL database on the test server; its URL.
pub async fn fresh_postgres(label: &str) -> Option<String> {
    fresh_database("ZEROSCALE_TEST_POSTGRES_URL", "PostgreSQL", label).await
}

/// A new, empty database on the PostgreSQL server named by `var` (e.g. the pgvector one).
pub async fn fresh_database(var: &str, engine: &str, label: &str) -> Option<String> {
    let admin_url = zeroscale_core::testing::require_service(var, engine)?;
    let name = format!("zs_app_{label}_{}", std::process::id());
    let url = zeroscale_db::testing::empty_postgres_database(&admin_url, &name)
        .await
        .expect("create test database");
    Some(url)
}

/// A new database's URL on the MongoDB server (created by its first write).
pub fn fresh_mongodb(label: &str) -> Option<String> {
    let base = zeroscale_core::testing::require_service("ZEROSCALE_TEST_MONGODB_URL", "MongoDB")?;
    let (server, _) = base
        .rsplit_once('/')
        .expect("ZEROSCALE_TEST_MONGODB_URL names a database");
    Some(format!("{server}/zs_app_{label}_{}", std::process::id()))
}

/// A small deterministic generator, so runs of the crash tests are repeatable.
pub struct Lcg(pub u64);

impl Lcg {
    /// A number below `n`.
    pub fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// `redis-server` on PATH.
pub fn redis_server() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("redis-server"))
        .find(|p| p.is_file())
}

/// A private Redis with an append-only file synced on every write.
pub fn start_redis(server: &Path, dir: &Path, port: u16) -> Child {
    let child = Command::new(server)
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--appendonly", "yes", "--appendfsync", "always"])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start redis-server");
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "redis-server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}
