//! The e2e harness: a deployment of the real `zeroscale` binary per stage (engines swapped
//! in by environment, as an operator would), the test overlay, and the helpers sections
//! use to call it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use zeroscale_core::testing::require_service;

use crate::common::{self, Server, TempDir, admin_token, fresh_postgres, login, zeroscale};

/// The upload limit the overlay sets.
pub(crate) const UPLOAD_LIMIT: u64 = 256 * 1024;

pub(crate) fn workspace_config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config")
}

/// The overlay every stage gets on top of its stage file.
pub(crate) fn overlay(down_port: u16) -> String {
    format!(
        r#"
[server]
max_upload_bytes = {UPLOAD_LIMIT}

[models.providers.down]
kind = "automatic1111"
base_url = "http://127.0.0.1:{down_port}"
timeout_secs = 2

[models.registry.flaky]
kind = "image"
provider = "down"
fallbacks = ["placeholder"]

[models.registry.flaky.routes.down]
cost = {{ per_image = 2.0 }}

[models.registry.flaky.routes.placeholder]
cost = {{ per_image = 1.0 }}

[models.registry.broken]
kind = "image"
provider = "down"
fallbacks = []

[models.registry.broken.routes.down]
cost = {{ per_image = 3.0 }}

[models.registry.sized]
kind = "image"
provider = "placeholder"

[models.registry.sized.routes.placeholder]
sizes = ["64x64", "128x96"]

[models.router]
max_retries = 0
backoff_base_ms = 10
"#
    )
}

/// The "down" image provider of the overlay: a port bound by this test but not
/// listening, so every connection to it is refused for the deployment's whole life (a
/// port merely left free could be taken by another deployment's server meanwhile, which
/// would answer). The socket is kept in the [`Deployment`].
fn down_provider() -> (u16, tokio::net::TcpSocket) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = socket.local_addr().unwrap().port();
    (port, socket)
}

/// One running deployment: the API server, worker processes and helpers.
pub(crate) struct Deployment {
    pub(crate) name: String,
    /// The engine under the deployment.
    pub(crate) db: Db,
    pub(crate) server: Server,
    /// Runs `zeroscale` with this deployment's config (for `users create-admin`).
    pub(crate) command: Box<dyn Fn() -> Command>,
    pub(crate) workers: Vec<Child>,
    pub(crate) _embedder: Option<Server>,
    /// Holds the refused port of the overlay's `down` provider.
    pub(crate) _down: tokio::net::TcpSocket,
    pub(crate) _dirs: Vec<TempDir>,
    /// What must never appear in a log of the deployment: passwords, tokens and keys the
    /// test used or configured (checked when the deployment ends).
    pub(crate) secrets: std::sync::Mutex<Vec<String>>,
}

impl Deployment {
    /// Adds `secret` to what the logs must not contain.
    pub(crate) fn secret(&self, secret: impl Into<String>) {
        self.secrets.lock().unwrap().push(secret.into());
    }

    /// Fails when a log of the deployment (server, workers, helpers) contains a secret.
    fn check_logs(&self) {
        let secrets = self.secrets.lock().unwrap().clone();
        let mut logs = Vec::new();
        for dir in &self._dirs {
            collect_logs(&dir.0, &mut logs);
        }
        assert!(!logs.is_empty(), "[{}] no logs were written", self.name);
        for log in logs {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            for secret in &secrets {
                assert!(
                    !text.contains(secret.as_str()),
                    "[{}] {} contains a secret ({}…)",
                    self.name,
                    log.display(),
                    &secret[..secret.len().min(4)]
                );
            }
        }
    }
}

/// Every `*.log` under `dir`.
fn collect_logs(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_logs(&path, out);
        } else if path.extension().is_some_and(|e| e == "log") {
            out.push(path);
        }
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        for worker in &mut self.workers {
            let _ = worker.kill();
            let _ = worker.wait();
        }
        if !std::thread::panicking() {
            self.check_logs();
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Db {
    Sqlite,
    Postgres,
    /// Stage 4's database: PostgreSQL with pgvector (searching with it), reached through
    /// PgBouncer in session mode, its streaming replica serving the stale-tolerant reads.
    PgvectorPooledWithReplica,
    /// MongoDB (the test server), schema steps applied at startup.
    Mongodb,
}
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Store {
    Local,
    S3,
}
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Jobs {
    Memory,
    Redis,
    /// Stage 4's Redis Cluster (3 masters, 3 replicas), enqueues confirmed by a replica.
    RedisCluster,
    /// The queue in the deployment's own database.
    Database,
}

/// The engines a deployment needs; `None` (outside CI) skips the test.
pub(crate) struct Engines {
    model: String,
    /// The database's URL and `database.kind`; `None` for the stage's SQLite file.
    database: Option<(String, &'static str)>,
    /// The read replicas' URLs.
    replicas: Vec<String>,
    redis: Option<Redis>,
    s3: Option<(String, String)>,
}

/// Where a deployment's Redis is.
pub(crate) enum Redis {
    Url(String),
    /// The cluster's nodes, as `ZEROSCALE_TEST_REDIS_CLUSTER_NODES` lists them.
    Cluster(String),
}

async fn engines(name: &str, db: Db, store: Store, jobs: Jobs) -> Option<Engines> {
    let model = require_service(
        "ZEROSCALE_TEST_MODEL_DIR",
        "the local model (`cargo xtask models fetch`)",
    )?;
    let label = format!("e2e_{}", name.replace('-', "_"));
    let mut replicas = Vec::new();
    let database = match db {
        Db::Postgres => Some((fresh_postgres(&label).await?, "postgres")),
        Db::PgvectorPooledWithReplica => {
            let primary = common::fresh_database(
                "ZEROSCALE_TEST_PGVECTOR_URL",
                "PostgreSQL with pgvector",
                &label,
            )
            .await?;
            let bouncer = require_service(
                "ZEROSCALE_TEST_PGVECTOR_PGBOUNCER_URL",
                "PgBouncer in front of PostgreSQL with pgvector (`cargo xtask services up --stage4`)",
            )?;
            let replica = require_service(
                "ZEROSCALE_TEST_PGVECTOR_REPLICA_URL",
                "the replica of PostgreSQL with pgvector (`cargo xtask services up --stage4`)",
            )?;
            replicas.push(same_database(&replica, &primary));
            Some((same_database(&bouncer, &primary), "postgres"))
        }
        Db::Mongodb => Some((common::fresh_mongodb(&label)?, "mongodb")),
        Db::Sqlite => None,
    };
    let redis = match jobs {
        Jobs::Redis => Some(Redis::Url(require_service(
            "ZEROSCALE_TEST_REDIS_URL",
            "Redis",
        )?)),
        Jobs::RedisCluster => Some(Redis::Cluster(require_service(
            "ZEROSCALE_TEST_REDIS_CLUSTER_NODES",
            "Redis Cluster",
        )?)),
        Jobs::Memory | Jobs::Database => None,
    };
    let s3 = match store {
        Store::S3 => Some((
            require_service("ZEROSCALE_TEST_S3_ENDPOINT", "the S3 server")?,
            require_service("ZEROSCALE_TEST_S3_BUCKET", "the S3 server")?,
        )),
        Store::Local => None,
    };
    Some(Engines {
        model,
        database,
        replicas,
        redis,
        s3,
    })
}

/// `database_url`'s database on the server `server_url` names (another way to the same
/// data: a pooler, a replica).
fn same_database(server_url: &str, database_url: &str) -> String {
    let mut url = url::Url::parse(server_url).expect("a server URL");
    url.set_path(
        url::Url::parse(database_url)
            .expect("a database URL")
            .path(),
    );
    url.to_string()
}

/// Starts a deployment from `profile` (a stage file), with engines swapped in by the
/// environment as an operator would, and `serve_instances` servers (the first is used by
/// the suite).
pub(crate) async fn deploy(
    name: &str,
    profile: Option<&'static str>,
    db: Db,
    store: Store,
    jobs: Jobs,
    separate_workers: usize,
) -> Option<Deployment> {
    let engines = engines(name, db, store, jobs).await?;
    let dir = TempDir::new(&format!("e2e-{name}"));
    let (down_port, down_socket) = down_provider();
    let overlay_file = dir.0.join("overlay.toml");
    std::fs::write(&overlay_file, overlay(down_port)).unwrap();

    let mut env: Vec<(String, String)> = vec![
        (
            "ZEROSCALE_CONFIG_DIR".into(),
            workspace_config_dir().display().to_string(),
        ),
        (
            "ZEROSCALE_MODELS__PROVIDERS__LOCAL__PATH".into(),
            engines.model.clone(),
        ),
        ("RUST_LOG".into(), "info".into()),
    ];
    let prefix = format!("e2e-{name}-{}", std::process::id());
    if let Some((url, kind)) = &engines.database {
        env.push(("DATABASE_URL".into(), url.clone()));
        env.push(("ZEROSCALE_DATABASE__KIND".into(), (*kind).into()));
    }
    if db == Db::PgvectorPooledWithReplica {
        // Stage 4's vector search: fail, rather than fall back, if pgvector is missing.
        env.push((
            "ZEROSCALE_DATABASE__VECTOR_SEARCH".into(),
            "pgvector".into(),
        ));
    }
    if !engines.replicas.is_empty() {
        let list: Vec<String> = engines.replicas.iter().map(|r| format!("{r:?}")).collect();
        env.push((
            "ZEROSCALE_DATABASE__REPLICAS".into(),
            format!("[{}]", list.join(", ")),
        ));
        // Through PgBouncer in session mode every pooled connection holds one of its 20
        // server connections: the server's and the worker's pools (and `migrate up`) must
        // fit in them together (docs/database.md#pgbouncer).
        env.push(("ZEROSCALE_DATABASE__MAX_CONNECTIONS".into(), "8".into()));
    }
    if let Some(redis) = &engines.redis {
        match redis {
            Redis::Url(url) => env.push(("REDIS_URL".into(), url.clone())),
            Redis::Cluster(nodes) => {
                let list: Vec<String> = nodes.split(',').map(|n| format!("{n:?}")).collect();
                env.push((
                    "ZEROSCALE_QUEUE__CLUSTER_NODES".into(),
                    format!("[{}]", list.join(", ")),
                ));
                env.push(("ZEROSCALE_QUEUE__WAIT_FOR_REPLICAS".into(), "1".into()));
            }
        }
        env.push(("ZEROSCALE_QUEUE__KIND".into(), "redis".into()));
        env.push(("ZEROSCALE_QUEUE__KEY_PREFIX".into(), prefix.clone()));
        // Processes that share a Redis queue tell each other what changed: with a
        // ten-minute credential cache, only that makes other instances see a logout or a
        // balance a worker settled.
        env.push(("ZEROSCALE_AUTH__CACHE_TTL_MS".into(), "600000".into()));
    }
    if jobs == Jobs::Database {
        env.push(("ZEROSCALE_QUEUE__KIND".into(), "database".into()));
        // As with Redis: instances on one database tell each other what changed, here
        // through the database's notices.
        env.push(("ZEROSCALE_AUTH__CACHE_TTL_MS".into(), "600000".into()));
        if separate_workers > 0 {
            env.push(("ZEROSCALE_WORKERS__MODE".into(), "separate".into()));
        }
    }
    if let Some((endpoint, bucket)) = &engines.s3 {
        for (k, v) in [
            ("KIND", "s3"),
            ("BUCKET", bucket.as_str()),
            ("ENDPOINT", endpoint.as_str()),
            ("ALLOW_HTTP", "true"),
            ("ACCESS_KEY_ID", "test"),
            ("SECRET_ACCESS_KEY", "test"),
            ("REGION", "us-east-1"),
            ("PREFIX", prefix.as_str()),
        ] {
            env.push((format!("ZEROSCALE_STORAGE__{k}"), v.to_owned()));
        }
    }
    if profile.is_none() {
        // The mixed stages start from the built-in defaults (= stage 1) and swap engines
        // by environment only.
        if store == Store::Local {
            env.push(("ZEROSCALE_STORAGE__KIND".into(), "local".into()));
        }
        if engines.database.is_some() {
            env.push(("ZEROSCALE_DATABASE__AUTO_MIGRATE".into(), "true".into()));
        }
    }

    // Stages 3 and 4: embeddings from a second instance, images from an Automatic1111
    // server.
    let mut embedder = None;
    let mut dirs = Vec::new();
    let hosted_models = matches!(profile, Some("stage3-growth" | "stage4-scale"));
    if hosted_models {
        let helper_dir = TempDir::new(&format!("e2e-{name}-embedder"));
        let mut cmd = zeroscale(&helper_dir.0);
        cmd.env("ZEROSCALE_MODELS__PROVIDERS__LOCAL__PATH", &engines.model);
        let helper = Server::start(cmd).await;
        let mut create = zeroscale(&helper_dir.0);
        create.env("ZEROSCALE_MODELS__PROVIDERS__LOCAL__PATH", &engines.model);
        let token = admin_token(&helper, create, "admin").await;
        let (status, key) = helper
            .call(
                Method::POST,
                "/v1/api-keys",
                Some(&token),
                Some(json!({"client_name": "stage 3"})),
            )
            .await;
        assert_eq!(status, 201, "{key}");
        env.push((
            "ZEROSCALE_MODELS__PROVIDERS__EMBEDDER__BASE_URL".into(),
            format!("{}/v1", helper.base),
        ));
        env.push((
            "ZEROSCALE_MODELS__PROVIDERS__EMBEDDER__API_KEY".into(),
            key["plaintext"].as_str().unwrap().to_owned(),
        ));
        env.push((
            "ZEROSCALE_MODELS__PROVIDERS__SD__BASE_URL".into(),
            crate::fake_images::automatic1111().await,
        ));
        embedder = Some(helper);
        dirs.push(helper_dir);
    }

    let data = dir.0.clone();
    let env_for = env.clone();
    let command = move || {
        let mut cmd = zeroscale(&data);
        for (k, v) in &env_for {
            cmd.env(k, v);
        }
        if let Some(profile) = profile {
            cmd.arg("--profile").arg(profile);
        }
        cmd.arg("--config").arg(data.join("overlay.toml"));
        cmd
    };
    if hosted_models {
        // auto_migrate is off at stages 3 and 4: migrations are a deployment step.
        let out = command().args(["migrate", "up"]).output().unwrap();
        assert!(
            out.status.success(),
            "migrate up: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let server = Server::start(command()).await;
    let mut workers = Vec::new();
    for i in 0..separate_workers {
        let log = std::fs::File::create(dir.0.join(format!("worker-{i}.log"))).unwrap();
        workers.push(
            command()
                .arg("worker")
                .stdout(std::process::Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
    }
    dirs.push(dir);
    let mut secrets = vec![
        // The passwords of `admin_token` and of `Ctx::users`.
        "admin-password-1".to_owned(),
        "correct horse battery".to_owned(),
    ];
    secrets.extend(
        env.iter()
            .filter(|(k, _)| k.ends_with("API_KEY"))
            .map(|(_, v)| v.clone()),
    );
    if let Some((url, _)) = &engines.database
        && let Some(password) = url_password(url)
    {
        secrets.push(password);
    }
    Some(Deployment {
        name: name.to_owned(),
        db,
        server,
        command: Box::new(command),
        workers,
        _embedder: embedder,
        _down: down_socket,
        _dirs: dirs,
        secrets: std::sync::Mutex::new(secrets),
    })
}

/// The password in `scheme://user:password@host/…`, when there is one of 4 or more
/// characters (shorter ones match too much to search for).
fn url_password(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let userinfo = rest.split_once('@')?.0;
    let password = userinfo.split_once(':')?.1;
    (password.len() >= 4).then(|| password.to_owned())
}

pub(crate) async fn call(
    d: &Deployment,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    d.server.call(method, path, token, body).await
}

/// GETs `path` every 100 ms until `done` says the answer is final (60 s at most).
pub(crate) async fn poll(
    d: &Deployment,
    token: &str,
    path: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = call(d, Method::GET, path, Some(token), None).await;
        assert_eq!(status, 200, "{body}");
        if done(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "[{}] {path} did not finish: {body}\n{}",
            d.name,
            d.server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls a job until it finishes; returns its final status.
pub(crate) async fn wait_job(d: &Deployment, token: &str, id: &str) -> Value {
    poll(d, token, &format!("/v1/jobs/{id}"), |job| {
        ["succeeded", "dead", "cancelled"].contains(&job["state"].as_str().unwrap())
    })
    .await
}

/// Polls a generation until it is no longer pending.
pub(crate) async fn wait_image(d: &Deployment, token: &str, id: &str) -> Value {
    poll(d, token, &format!("/v1/images/{id}"), |g| {
        g["status"] != "pending"
    })
    .await
}

/// Sets the balance of the user behind `token` to `credits` (as the admin).
pub(crate) async fn grant_credits(d: &Deployment, admin: &str, token: &str, credits: i64) {
    let (_, me) = call(d, Method::GET, "/v1/me", Some(token), None).await;
    let id = me["user"]["id"].as_str().unwrap().to_owned();
    let (status, body) = call(
        d,
        Method::PATCH,
        &format!("/v1/admin/users/{id}"),
        Some(admin),
        Some(json!({ "credits": credits })),
    )
    .await;
    assert_eq!(status, 200, "[{}] {body}", d.name);
}

pub(crate) async fn credits(d: &Deployment, token: &str) -> i64 {
    let (_, me) = call(d, Method::GET, "/v1/me", Some(token), None).await;
    me["user"]["credits"].as_i64().unwrap()
}

/// The balance once it is `expected`, for a change another process made (a worker
/// settling a generation): other instances hear of it within their pub/sub delivery, so
/// this waits up to 3 s, far below the ten-minute cache the shared-queue stages run with.
pub(crate) async fn settled_credits(d: &Deployment, token: &str, expected: i64) -> i64 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        let seen = credits(d, token).await;
        if seen == expected || std::time::Instant::now() > deadline {
            return seen;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

pub(crate) fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no error code>")
}

/// One stage's deployment recipe.
#[derive(Clone, Copy)]
pub(crate) struct Stage {
    pub(crate) name: &'static str,
    pub(crate) profile: Option<&'static str>,
    pub(crate) db: Db,
    pub(crate) store: Store,
    pub(crate) jobs: Jobs,
    pub(crate) workers: usize,
}

/// What a section runs against: its own deployment of the stage, the admin's token, and
/// (made on first use) two users, alice and bob.
pub(crate) struct Ctx {
    pub(crate) d: Deployment,
    pub(crate) admin: String,
}

impl Ctx {
    /// Deploys `stage` for `section` (`None`: an engine is missing outside CI).
    pub(crate) async fn new(stage: Stage, section: &str) -> Option<Ctx> {
        let name = format!("{}-{section}", stage.name);
        let d = deploy(
            &name,
            stage.profile,
            stage.db,
            stage.store,
            stage.jobs,
            stage.workers,
        )
        .await?;
        let admin = admin_token(&d.server, (d.command)(), "admin").await;
        d.secret(admin.clone());
        Some(Ctx { d, admin })
    }

    /// Registers alice and bob and logs them in; returns their session tokens.
    pub(crate) async fn users(&self) -> (String, String) {
        let mut tokens = Vec::new();
        for name in ["alice", "bob"] {
            let (status, body) = call(
                &self.d,
                Method::POST,
                "/v1/auth/register",
                None,
                Some(json!({"username": name, "password": "correct horse battery"})),
            )
            .await;
            assert_eq!(status, 201, "{body}");
            let token = login(&self.d.server, name, "correct horse battery").await;
            self.d.secret(token.clone());
            tokens.push(token);
        }
        let bob = tokens.pop().unwrap_or_default();
        let alice = tokens.pop().unwrap_or_default();
        (alice, bob)
    }
}
