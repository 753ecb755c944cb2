//! HTTP: a `zeroscale serve` release binary at stage 1 (embedded defaults) on 127.0.0.1,
//! loaded by a small generator here (a fixed number of connections for a fixed time):
//! `/healthz` against the authenticated read `GET /v1/me`, login time for unknown against
//! known usernames (#21), and cold start to the first `/healthz` 200. Beside them, the
//! same load on a bare axum server (`http_bare`) and, at stage 3, on the S3 server alone
//! (`http_s3`): the ceilings the download figures are read against.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::http_s3::{S3Target, download_against_s3};
use crate::measure::{Figure, Goal, Plan, Stats};

/// The admin every bench server starts with.
const ADMIN: &str = "bench";
const PASSWORD: &str = "correct horse battery";

/// A running server; killed on drop.
pub(crate) struct Server {
    child: Child,
    pub(crate) base: String,
    _dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The release `zeroscale` binary: `ZEROSCALE_BENCH_BIN`, else next to this one.
pub(crate) fn binary() -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os("ZEROSCALE_BENCH_BIN") {
        return Ok(bin.into());
    }
    let here = std::env::current_exe()?;
    let bin = here.with_file_name("zeroscale");
    anyhow::ensure!(
        bin.is_file(),
        "{} is missing: build it with `cargo build --release -p zeroscale-app` (or run \
         `cargo xtask bench`, which does)",
        bin.display()
    );
    Ok(bin)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Where a bench server runs: stage 1 is the embedded defaults; stage 3 is the
/// `stage3-growth` profile on the test engines (PostgreSQL, Redis, S3).
#[derive(Debug, Clone, Default)]
pub(crate) struct Stage {
    /// `--profile`, if any.
    pub(crate) profile: Option<&'static str>,
    /// Environment on top of the profile.
    pub(crate) env: Vec<(String, String)>,
}

fn command(dir: &Path, stage: &Stage) -> anyhow::Result<Command> {
    let mut cmd = Command::new(binary()?);
    configure(&mut cmd, dir, stage)?;
    Ok(cmd)
}

/// Sets up `cmd` (the `zeroscale` binary, or a wrapper around it) to run in `dir` for
/// `stage`: none of this shell's zeroscale settings, the repository's config folder, a
/// data dir of its own, the bench admin.
pub(crate) fn configure(cmd: &mut Command, dir: &Path, stage: &Stage) -> anyhow::Result<()> {
    for (key, _) in std::env::vars() {
        if key.starts_with("ZEROSCALE_") || key == "DATABASE_URL" || key == "REDIS_URL" {
            cmd.env_remove(key);
        }
    }
    if let Some(profile) = stage.profile {
        cmd.arg("--profile").arg(profile);
    }
    cmd.current_dir(dir)
        .env(
            "ZEROSCALE_CONFIG_DIR",
            std::env::current_dir()?.join("config"),
        )
        .env("ZEROSCALE_DATA_DIR", dir.join("data"))
        .env("ZEROSCALE_MODELS__PROVIDERS__LOCAL__AUTO_INSTALL", "false")
        .env(
            "ZEROSCALE_AUTH__BOOTSTRAP_ADMIN",
            format!("{ADMIN}:{PASSWORD}"),
        )
        // The login figure times argon2 on every path with dozens of wrong passwords in a
        // row; throttling would answer most of them 429 (it is tested on its own).
        .env("ZEROSCALE_AUTH__LOGIN_THROTTLE__ENABLED", "false")
        .env("RUST_LOG", "warn")
        .envs(stage.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    Ok(())
}

/// Starts `serve` for `stage` in a fresh data dir (after `migrate up` where the stage
/// does not migrate on start); returns once `/healthz` answers 200, with how long that
/// took from the spawn.
pub(crate) async fn start(
    dir: &Path,
    client: &reqwest::Client,
    stage: &Stage,
) -> anyhow::Result<(Server, Duration)> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    if stage.profile.is_some() {
        let out = command(dir, stage)?.args(["migrate", "up"]).output()?;
        anyhow::ensure!(
            out.status.success(),
            "`zeroscale migrate up` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let port = free_port()?;
    let mut cmd = command(dir, stage)?;
    cmd.arg("serve")
        .env("ZEROSCALE_SERVER__ADDR", format!("127.0.0.1:{port}"))
        .stderr(std::fs::File::create(dir.join("server.log"))?);
    let started = Instant::now();
    let child = cmd.spawn()?;
    let base = format!("http://127.0.0.1:{port}");
    let server = Server {
        child,
        base,
        _dir: dir.to_path_buf(),
    };
    let deadline = started + Duration::from_secs(30);
    loop {
        if let Ok(response) = client.get(format!("{}/healthz", server.base)).send().await
            && response.status() == 200
        {
            return Ok((server, started.elapsed()));
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the server did not answer /healthz within 30 s; see {}",
            dir.join("server.log").display()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Stage 3 on the test engines, when they run: a fresh PostgreSQL database (its URL, to
/// drop afterwards), Redis and S3 under a prefix of their own.
async fn stage3() -> anyhow::Result<Option<(Stage, String)>> {
    let vars = [
        "ZEROSCALE_TEST_POSTGRES_URL",
        "ZEROSCALE_TEST_REDIS_URL",
        "ZEROSCALE_TEST_S3_ENDPOINT",
        "ZEROSCALE_TEST_S3_BUCKET",
    ];
    let Ok(found) = vars
        .iter()
        .map(std::env::var)
        .collect::<Result<Vec<_>, _>>()
    else {
        anyhow::ensure!(
            std::env::var_os("CI").is_none(),
            "the test engines are not running: run `cargo xtask bench`, which starts them"
        );
        eprintln!("http: the test engines are not running, stage 3 skipped");
        return Ok(None);
    };
    let [pg, redis, s3, bucket] = <[String; 4]>::try_from(found).expect("four");
    let name = format!("zs_bench_http_{}", std::process::id());
    let url = crate::database::create_database(&pg, &name).await?;
    let prefix = format!("bench-http-{}", std::process::id());
    let mut env = vec![
        ("DATABASE_URL".to_owned(), url.clone()),
        ("REDIS_URL".to_owned(), redis),
        ("ZEROSCALE_QUEUE__KEY_PREFIX".to_owned(), prefix.clone()),
    ];
    for (k, v) in [
        ("BUCKET", bucket.as_str()),
        ("ENDPOINT", s3.as_str()),
        ("ALLOW_HTTP", "true"),
        ("ACCESS_KEY_ID", "test"),
        ("SECRET_ACCESS_KEY", "test"),
        ("REGION", "us-east-1"),
        ("PREFIX", prefix.as_str()),
    ] {
        env.push((format!("ZEROSCALE_STORAGE__{k}"), v.to_owned()));
    }
    Ok(Some((
        Stage {
            profile: Some("stage3-growth"),
            env,
        },
        url,
    )))
}

async fn post(client: &reqwest::Client, url: String, body: Value) -> anyhow::Result<(u16, Value)> {
    post_as(client, url, None, body).await
}

async fn post_as(
    client: &reqwest::Client,
    url: String,
    token: Option<&str>,
    body: Value,
) -> anyhow::Result<(u16, Value)> {
    let mut request = client.post(url).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}

/// Builds one request of a load.
pub(crate) type MakeRequest =
    Arc<dyn Fn(&reqwest::Client) -> reqwest::RequestBuilder + Send + Sync>;

/// Requests answered per second by `connections` loops sending `request` for `length`;
/// and every latency, in ms.
pub(crate) async fn load(
    client: &reqwest::Client,
    connections: usize,
    length: Duration,
    request: &MakeRequest,
) -> anyhow::Result<(f64, Vec<f64>)> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let client = client.clone();
        let request = Arc::clone(request);
        let stop = Arc::clone(&stop);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let start = Instant::now();
                let response = request(&client).send().await?;
                let status = response.status();
                // Read the whole body, as a client would.
                let body = response.bytes().await?;
                anyhow::ensure!(
                    status.is_success(),
                    "a request failed under load: {status} {}",
                    String::from_utf8_lossy(&body[..body.len().min(300)])
                );
                latencies.push(start.elapsed().as_secs_f64() * 1e3);
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(length).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    Ok((all.len() as f64 / started.elapsed().as_secs_f64(), all))
}

/// A setting of `stage`'s environment ("" when it has none).
fn stage_env(stage: &Stage, key: &str) -> String {
    stage
        .env
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

/// A route loaded against `/healthz`.
struct Route {
    name: &'static str,
    request: MakeRequest,
    /// Reads are held to ≥ 0.5× `/healthz`; writes are reported.
    goal: Goal,
    /// Shorter loads for routes that fill the disk.
    fraction: u32,
}

pub(crate) fn percentile(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    if samples.is_empty() {
        return f64::NAN;
    }
    let at = ((samples.len() - 1) as f64 * p).round() as usize;
    samples[at]
}

/// Logs in as the bench admin; the session token.
pub(crate) async fn login(client: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    let (status, body) = post(
        client,
        format!("{base}/v1/auth/login"),
        json!({"username": ADMIN, "password": PASSWORD}),
    )
    .await?;
    anyhow::ensure!(status == 200, "login answered {status}: {body}");
    Ok(body["token"].as_str().unwrap_or_default().to_owned())
}

/// Every HTTP figure.
pub(crate) async fn run(plan: Plan, dir: &Path) -> anyhow::Result<Vec<Figure>> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let mut figures = Vec::new();
    let connections = 16;
    let length = Duration::from_millis(plan.size(3_000, 400) as u64);

    let (server, _) = start(&dir.join("serve"), &client, &Stage::default()).await?;
    let base = server.base.clone();
    let token = login(&client, &base).await?;
    let stage1 = routes(&client, &base, &token).await?;
    figures.extend(
        against_healthz(plan, "stage 1", &client, &base, connections, length, stage1).await?,
    );
    figures.push(login_ratio(plan, &client, &base, PASSWORD).await?);
    drop(server);

    // The ceiling for a 64 KiB body on this machine with this load generator.
    let bare = crate::http_bare::start()?;
    let blob_url = format!("{}/blob", bare.base);
    let blob = Route {
        name: "GET 64 KiB from memory (no auth, database or disk)",
        request: Arc::new(move |c: &reqwest::Client| c.get(&blob_url)),
        goal: Goal::Report,
        fraction: 1,
    };
    figures.extend(
        against_healthz(
            plan,
            "bare axum",
            &client,
            &bare.base,
            connections,
            length,
            vec![blob],
        )
        .await?,
    );
    drop(bare);

    if let Some((stage, database)) = stage3().await? {
        let result = async {
            let (server, _) = start(&dir.join("stage3"), &client, &stage).await?;
            let base = server.base.clone();
            let token = login(&client, &base).await?;
            let routes = routes(&client, &base, &token).await?;
            let mut figures =
                against_healthz(plan, "stage 3", &client, &base, connections, length, routes)
                    .await?;
            let s3 = S3Target {
                endpoint: stage_env(&stage, "ZEROSCALE_STORAGE__ENDPOINT"),
                bucket: stage_env(&stage, "ZEROSCALE_STORAGE__BUCKET"),
                prefix: stage_env(&stage, "ZEROSCALE_STORAGE__PREFIX"),
            };
            figures.push(
                download_against_s3(plan, &client, &base, &token, &s3, connections, length).await?,
            );
            Ok::<_, anyhow::Error>(figures)
        }
        .await;
        crate::database::drop_database(&database).await;
        figures.extend(result?);
    }

    figures.push(cold_start(plan, &client, dir).await?);
    Ok(figures)
}

/// The routes measured against `/healthz`, with what they need set up: an API key, a
/// chat of 100 messages, a 64 KiB file.
async fn routes(client: &reqwest::Client, base: &str, token: &str) -> anyhow::Result<Vec<Route>> {
    let (status, key) = post_as(
        client,
        format!("{base}/v1/api-keys"),
        Some(token),
        json!({"client_name": "bench"}),
    )
    .await?;
    anyhow::ensure!(
        status == 201,
        "creating an API key answered {status}: {key}"
    );
    let key = key["plaintext"].as_str().unwrap_or_default().to_owned();
    // A key under a rate limit it never reaches: every request is counted on the shared
    // counters (the database at stage 1, Redis at stage 3), none refused.
    let (status, limited) = post_as(
        client,
        format!("{base}/v1/api-keys"),
        Some(token),
        json!({"client_name": "bench-limited", "rate_limit_per_minute": 1_000_000_000}),
    )
    .await?;
    anyhow::ensure!(
        status == 201,
        "creating a rate-limited API key answered {status}: {limited}"
    );
    let limited = limited["plaintext"].as_str().unwrap_or_default().to_owned();
    // Sixteen more, taken in turn: the counters see as many keys as connections.
    let mut many = Vec::new();
    for i in 0..16 {
        let (status, key) = post_as(
            client,
            format!("{base}/v1/api-keys"),
            Some(token),
            json!({"client_name": format!("bench-limited-{i}"), "rate_limit_per_minute": 1_000_000_000}),
        )
        .await?;
        anyhow::ensure!(
            status == 201,
            "creating a rate-limited API key answered {status}: {key}"
        );
        many.push(key["plaintext"].as_str().unwrap_or_default().to_owned());
    }
    let many = Arc::new(many);
    let next_key = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let me_url = format!("{base}/v1/me");
    let many_keys: MakeRequest = Arc::new(move |c: &reqwest::Client| {
        let n = next_key.fetch_add(1, Ordering::Relaxed);
        c.get(&me_url).header("x-api-key", &many[n % many.len()])
    });
    for i in 0..100 {
        let (status, body) = post_as(
            client,
            format!("{base}/v1/chat/read/messages"),
            Some(token),
            json!({"role": "user", "content": format!("message {i} of the chat the bench pages through")}),
        )
        .await?;
        anyhow::ensure!(
            status == 201,
            "appending a chat message answered {status}: {body}"
        );
    }
    let payload = bytes::Bytes::from(vec![b'z'; 64 * 1024]);
    let response = client
        .post(format!("{base}/v1/files?filename=bench.bin"))
        .bearer_auth(token)
        .body(payload.clone())
        .send()
        .await?;
    anyhow::ensure!(
        response.status() == 201,
        "upload answered {}",
        response.status()
    );
    let file: Value = response.json().await?;
    let file_id = file["id"].as_str().unwrap_or_default().to_owned();

    let get = |path: String, header: &'static str, value: String| -> MakeRequest {
        let url = format!("{base}{path}");
        Arc::new(move |c: &reqwest::Client| c.get(&url).header(header, &value))
    };
    let bearer = format!("Bearer {token}");
    let mut routes = vec![
        Route {
            name: "GET /v1/me (session)",
            request: get("/v1/me".into(), "authorization", bearer.clone()),
            goal: Goal::AtLeast { ratio: 0.5 },
            fraction: 1,
        },
        Route {
            name: "GET /v1/me (API key)",
            request: get("/v1/me".into(), "x-api-key", key),
            goal: Goal::AtLeast { ratio: 0.5 },
            fraction: 1,
        },
        Route {
            name: "GET /v1/me (API key, rate-limited)",
            request: get("/v1/me".into(), "x-api-key", limited),
            goal: Goal::AtLeast { ratio: 0.5 },
            fraction: 1,
        },
        Route {
            name: "GET /v1/me (16 API keys in turn, rate-limited)",
            request: many_keys,
            goal: Goal::AtLeast { ratio: 0.5 },
            fraction: 1,
        },
        Route {
            name: "GET a chat page (100 messages)",
            request: get(
                "/v1/chat/read/messages?limit=100".into(),
                "authorization",
                bearer.clone(),
            ),
            goal: Goal::AtLeast { ratio: 0.5 },
            fraction: 1,
        },
        Route {
            name: "GET a 64 KiB file",
            request: get(
                format!("/v1/files/{file_id}"),
                "authorization",
                bearer.clone(),
            ),
            goal: Goal::AtLeast { ratio: 0.5 },
            fraction: 1,
        },
    ];
    // Writes, reported: a chat append (a new chat every 5,000 messages, below the
    // per-chat limit) and a 64 KiB upload (shorter loads: each one stays on disk).
    let appended = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let append_base = format!("{base}/v1/chat");
    let append_auth = bearer.clone();
    routes.push(Route {
        name: "POST a chat message",
        request: Arc::new(move |c: &reqwest::Client| {
            let n = appended.fetch_add(1, Ordering::Relaxed);
            c.post(format!("{append_base}/write-{}/messages", n / 5_000))
                .header("authorization", &append_auth)
                .json(&json!({"role": "user", "content": "a message of a handful of words"}))
        }),
        goal: Goal::Report,
        fraction: 1,
    });
    let upload_url = format!("{base}/v1/files?filename=upload.bin");
    routes.push(Route {
        name: "POST a 64 KiB upload",
        request: Arc::new(move |c: &reqwest::Client| {
            c.post(&upload_url)
                .header("authorization", &bearer)
                .body(payload.clone())
        }),
        goal: Goal::Report,
        fraction: 4,
    });
    Ok(routes)
}

/// Each route's req/s against `/healthz` on the same server: per round, `/healthz` then
/// every route (the order rotating), the ratio taken within the round.
async fn against_healthz(
    plan: Plan,
    stage: &str,
    client: &reqwest::Client,
    base: &str,
    connections: usize,
    length: Duration,
    routes: Vec<Route>,
) -> anyhow::Result<Vec<Figure>> {
    let healthz: MakeRequest = {
        let url = format!("{base}/healthz");
        Arc::new(move |c: &reqwest::Client| c.get(&url))
    };
    // Warm-up: connections, the server's caches.
    load(client, connections, length / 2, &healthz).await?;
    for route in &routes {
        load(client, connections, length / 10, &route.request).await?;
    }
    let n = routes.len();
    let mut health = Vec::new();
    let mut health_lat = Vec::new();
    let mut per_route: Vec<(Vec<f64>, Vec<f64>, Vec<f64>)> = vec![Default::default(); n];
    for round in 0..plan.rounds {
        let (h, hl) = load(client, connections, length, &healthz).await?;
        health.push(h);
        health_lat.extend(hl);
        for i in 0..n {
            let route = &routes[(i + round) % n];
            let slot = &mut per_route[(i + round) % n];
            let (rps, lat) =
                load(client, connections, length / route.fraction, &route.request).await?;
            slot.0.push(rps);
            slot.1.push(rps / h.max(1e-9));
            slot.2.extend(lat);
        }
    }
    let health_stats = Stats::of(&health);
    let (h50, h99) = (
        percentile(&mut health_lat, 0.5),
        percentile(&mut health_lat, 0.99),
    );
    Ok(routes
        .iter()
        .zip(per_route)
        .map(|(route, (rps, ratios, mut lat))| {
            let ratio = Stats::of(&ratios);
            Figure {
                concern: "http",
                name: format!(
                    "{stage} {} req/s vs /healthz, {connections} connections; p50/p99 \
                     {:.2}/{:.2} ms vs {h50:.2}/{h99:.2} ms",
                    route.name,
                    percentile(&mut lat, 0.5),
                    percentile(&mut lat, 0.99),
                ),
                unit: "req/s",
                ours: Stats::of(&rps),
                theirs: Some(health_stats),
                against: Some("GET /healthz on the same server".into()),
                ratio: Some(ratio),
                goal: route.goal,
                pass: (!plan.quick)
                    .then(|| route.goal.met(ratio.median, 0.0))
                    .flatten(),
                rounds: plan.rounds,
            }
        })
        .collect())
}

/// Login time for a username that does not exist ÷ one that does (wrong passwords both):
/// equal, or the time tells whether an account exists.
async fn login_ratio(
    plan: Plan,
    client: &reqwest::Client,
    base: &str,
    password: &str,
) -> anyhow::Result<Figure> {
    let attempts = plan.size(7, 3);
    let rounds = plan.rounds.max(5);
    let time_logins = |username: &'static str| {
        let client = client.clone();
        let url = format!("{base}/v1/auth/login");
        let body = json!({"username": username, "password": format!("{password} wrong")});
        async move {
            let mut times = Vec::new();
            for _ in 0..attempts {
                let start = Instant::now();
                let (status, _) = post(&client, url.clone(), body.clone()).await?;
                anyhow::ensure!(status == 401, "a wrong login answered {status}");
                times.push(start.elapsed().as_secs_f64() * 1e3);
            }
            Ok::<f64, anyhow::Error>(Stats::of(&times).median)
        }
    };
    time_logins("bench").await?;
    let (mut unknown, mut known, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let (u, k) = if round.is_multiple_of(2) {
            let u = time_logins("nobody-by-this-name").await?;
            (u, time_logins("bench").await?)
        } else {
            let k = time_logins("bench").await?;
            (time_logins("nobody-by-this-name").await?, k)
        };
        unknown.push(u);
        known.push(k);
        ratios.push(u / k.max(1e-9));
    }
    let ratio = Stats::of(&ratios);
    let goal = Goal::Between {
        low: 0.9,
        high: 1.1,
    };
    Ok(Figure {
        concern: "http",
        name: "login with a wrong password: unknown username vs known (median ms)".into(),
        unit: "ms",
        ours: Stats::of(&unknown),
        theirs: Some(Stats::of(&known)),
        against: Some("a username that exists".into()),
        ratio: Some(ratio),
        goal,
        pass: (!plan.quick).then(|| goal.met(ratio.median, 0.0)).flatten(),
        rounds,
    })
}

/// From spawning `serve` on embedded defaults (a fresh data dir: first run, migrations
/// included) to the first `/healthz` 200; and the idle resident memory after it.
async fn cold_start(plan: Plan, client: &reqwest::Client, dir: &Path) -> anyhow::Result<Figure> {
    let mut times = Vec::new();
    let mut rss = Vec::new();
    for round in 0..plan.rounds {
        let (server, took) = start(
            &dir.join(format!("cold-{round}")),
            client,
            &Stage::default(),
        )
        .await?;
        times.push(took.as_secs_f64() * 1e3);
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Some(kib) = resident_kib(server.child.id()) {
            rss.push(kib as f64 / 1024.0);
        }
    }
    let ours = Stats::of(&times);
    let goal = Goal::Below { value: 200.0 };
    let rss = Stats::of(&rss);
    Ok(Figure {
        concern: "startup",
        name: format!(
            "cold start to /healthz 200 (fresh data dir); idle RSS {:.0} MiB [{:.0}–{:.0}]",
            rss.median, rss.min, rss.max
        ),
        unit: "ms",
        ours,
        theirs: None,
        against: None,
        ratio: None,
        goal,
        pass: (!plan.quick)
            .then(|| goal.met(f64::NAN, ours.median))
            .flatten(),
        rounds: plan.rounds,
    })
}

/// The resident set of process `pid`, from `/proc` (Linux).
fn resident_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
