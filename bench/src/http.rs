//! HTTP: a `zeroscale serve` release binary at stage 1 (embedded defaults) on 127.0.0.1,
//! loaded by a small generator here (a fixed number of connections for a fixed time):
//! `/healthz` against the authenticated read `GET /v1/me`, login time for unknown against
//! known usernames (#21), and cold start to the first `/healthz` 200.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::measure::{Figure, Goal, Plan, Stats};

/// A running server; killed on drop.
struct Server {
    child: Child,
    base: String,
    _dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The release `zeroscale` binary: `ZEROSCALE_BENCH_BIN`, else next to this one.
fn binary() -> anyhow::Result<PathBuf> {
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

/// Starts `serve` on the embedded defaults in a fresh data dir; returns once `/healthz`
/// answers 200, with how long that took.
async fn start(dir: &Path, client: &reqwest::Client) -> anyhow::Result<(Server, Duration)> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let port = free_port()?;
    let mut cmd = Command::new(binary()?);
    for (key, _) in std::env::vars() {
        if key.starts_with("ZEROSCALE_") || key == "DATABASE_URL" || key == "REDIS_URL" {
            cmd.env_remove(key);
        }
    }
    cmd.arg("serve")
        .current_dir(dir)
        .env("ZEROSCALE_DATA_DIR", dir.join("data"))
        .env("ZEROSCALE_SERVER__ADDR", format!("127.0.0.1:{port}"))
        .env("ZEROSCALE_MODELS__PROVIDERS__LOCAL__AUTO_INSTALL", "false")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
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

async fn post(client: &reqwest::Client, url: String, body: Value) -> anyhow::Result<(u16, Value)> {
    let response = client.post(url).json(&body).send().await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}

/// Requests answered per second by `connections` loops sending `request` for `length`;
/// and every latency, in ms.
async fn load(
    client: &reqwest::Client,
    connections: usize,
    length: Duration,
    request: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder + Send + Sync + 'static,
) -> (f64, Vec<f64>) {
    let request = Arc::new(request);
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let client = client.clone();
        let request = Arc::clone(&request);
        let stop = Arc::clone(&stop);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let start = Instant::now();
                let ok = request(&client)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                assert!(ok, "a request failed under load");
                latencies.push(start.elapsed().as_secs_f64() * 1e3);
            }
            latencies
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(length).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap_or_default());
    }
    (all.len() as f64 / started.elapsed().as_secs_f64(), all)
}

fn percentile(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    if samples.is_empty() {
        return f64::NAN;
    }
    let at = ((samples.len() - 1) as f64 * p).round() as usize;
    samples[at]
}

/// Every HTTP figure.
pub(crate) async fn run(plan: Plan, dir: &Path) -> anyhow::Result<Vec<Figure>> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let mut figures = Vec::new();
    let (server, _) = start(&dir.join("serve"), &client).await?;
    let base = server.base.clone();
    let password = "correct horse battery";
    let (status, body) = post(
        &client,
        format!("{base}/v1/auth/register"),
        json!({"username": "bench", "password": password}),
    )
    .await?;
    anyhow::ensure!(status == 201, "register answered {status}: {body}");
    let (status, body) = post(
        &client,
        format!("{base}/v1/auth/login"),
        json!({"username": "bench", "password": password}),
    )
    .await?;
    anyhow::ensure!(status == 200, "login answered {status}: {body}");
    let token = body["token"].as_str().unwrap_or_default().to_owned();

    // Authenticated reads against /healthz, alternating rounds.
    let connections = 16;
    let length = Duration::from_millis(plan.size(5_000, 500) as u64);
    let healthz = format!("{base}/healthz");
    let me = format!("{base}/v1/me");
    let (mut health_rps, mut me_rps, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let (mut health_lat, mut me_lat) = (Vec::new(), Vec::new());
    load(&client, connections, length / 2, {
        let healthz = healthz.clone();
        move |c| c.get(&healthz)
    })
    .await;
    for round in 0..plan.rounds {
        let run_health = {
            let healthz = healthz.clone();
            move |c: &reqwest::Client| c.get(&healthz)
        };
        let run_me = {
            let me = me.clone();
            let token = token.clone();
            move |c: &reqwest::Client| c.get(&me).bearer_auth(&token)
        };
        let ((h, hl), (m, ml)) = if round.is_multiple_of(2) {
            let h = load(&client, connections, length, run_health).await;
            (h, load(&client, connections, length, run_me).await)
        } else {
            let m = load(&client, connections, length, run_me).await;
            (load(&client, connections, length, run_health).await, m)
        };
        health_rps.push(h);
        me_rps.push(m);
        ratios.push(m / h.max(1e-9));
        health_lat.extend(hl);
        me_lat.extend(ml);
    }
    let ratio = Stats::of(&ratios);
    let goal = Goal::AtLeast { ratio: 0.5 };
    figures.push(Figure {
        concern: "http",
        name: format!(
            "stage 1 GET /v1/me (session) req/s vs /healthz, {connections} connections; p50/p99 \
             {:.2}/{:.2} ms vs {:.2}/{:.2} ms",
            percentile(&mut me_lat, 0.5),
            percentile(&mut me_lat, 0.99),
            percentile(&mut health_lat, 0.5),
            percentile(&mut health_lat, 0.99)
        ),
        unit: "req/s",
        ours: Stats::of(&me_rps),
        theirs: Some(Stats::of(&health_rps)),
        against: Some("GET /healthz on the same server".into()),
        ratio: Some(ratio),
        goal,
        pass: (!plan.quick).then(|| goal.met(ratio.median, 0.0)).flatten(),
        rounds: plan.rounds,
    });

    figures.push(login_ratio(plan, &client, &base, password).await?);
    drop(server);
    figures.push(cold_start(plan, &client, dir).await?);
    Ok(figures)
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
        let (server, took) = start(&dir.join(format!("cold-{round}")), client).await?;
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
