//! The fault suite (`cargo xtask faults`; CI runs it with every test): stage 3
//! (PostgreSQL, S3, Redis with its append-only file, a separate worker) under a bounded
//! mixed load on loopback, through five faults one after the other:
//!
//! | fault | how |
//! |---|---|
//! | PostgreSQL restart | the test server's `pg_ctl restart -m fast` (`ZEROSCALE_TEST_POSTGRES_RESTART`) |
//! | Redis restart | SIGKILL of a private `redis-server --appendonly yes`, started again on its files |
//! | S3 unreachable 10 s | a [`FaultProxy`] between the app and moto refuses every connection |
//! | worker SIGKILL | the worker killed mid-load, a new one started |
//! | server SIGKILL mid-upload | the server killed while a 12 MiB multipart upload streams, started again |
//!
//! For each: no 5xx but 503, no hung request (but the server's own death), no address,
//! key, path or developer command in an error body, and the first request of the kind
//! the fault hit succeeds within 5 s of the engine answering again, without restarting
//! the app. After all of them: every acknowledged upload, chat message and job is there
//! (jobs all `succeeded`; re-run when their worker died, or at most one reservation's
//! worth whose answer the Redis kill cut off), no stored file lacks its 201 but one
//! per upload the server kill cut off, and the interrupted multipart upload is aborted by
//! the sweeper. The table goes to stderr and to
//! `target/faults/report.md`.

#![cfg(all(feature = "postgres", feature = "s3", feature = "redis"))]

mod common;
#[path = "faults/load.rs"]
mod load;

use std::fmt::Write as _;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Server, TempDir};
use load::{Load, Tally, send};
use tokio::sync::watch;
use zeroscale_core::testing::{FaultProxy, ProxyMode, require_service};

/// Recovery must come within this of the engine answering again.
const RECOVERY: Duration = Duration::from_secs(5);
/// Load clients (users), each pausing between requests.
const CLIENTS: usize = 3;
/// The sweeper's age for interrupted uploads (`server.upload_sweep_after_secs`).
const SWEEP_AFTER_SECS: u64 = 2;
/// Jobs a worker runs at once.
const WORKER_CONCURRENCY: usize = 4;
/// The number of the S3 recovery probe's file (the clients' start at 1).
const PROBE_FILE: u64 = 0;

/// One line of the table.
struct Row {
    fault: &'static str,
    outage: Duration,
    tally: Tally,
    /// From the engine answering again to the first success of the probed request.
    recovery: Option<Duration>,
    note: String,
}

/// What the app needs of the engines, and what it is run with.
struct Stage {
    dir: TempDir,
    env: Vec<(String, String)>,
    redis_bin: std::path::PathBuf,
    redis_port: u16,
    redis: Child,
    s3: FaultProxy,
    s3_endpoint: String,
    bucket: String,
    prefix: String,
    pg_restart: String,
}

impl Stage {
    fn command(&self) -> Command {
        let mut cmd = common::zeroscale(&self.dir.0);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    async fn server(&self) -> Server {
        let mut cmd = self.command();
        cmd.arg("serve");
        Server::start(cmd).await
    }

    fn worker(&self, n: usize) -> Child {
        let log = std::fs::File::create(self.dir.0.join(format!("worker-{n}.log"))).unwrap();
        self.command()
            .arg("worker")
            .env(
                "ZEROSCALE_WORKERS__CONCURRENCY",
                WORKER_CONCURRENCY.to_string(),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start zeroscale worker")
    }

    /// The warnings and errors of every worker this stage started.
    fn worker_warnings(&self) -> String {
        let mut out = String::new();
        for n in 1..=2 {
            let log = std::fs::read_to_string(self.dir.0.join(format!("worker-{n}.log")))
                .unwrap_or_default();
            for line in log
                .lines()
                .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            {
                let _ = writeln!(out, "worker {n}: {line}");
            }
        }
        out
    }

    /// Multipart uploads in flight on moto under the stage's prefix (moto answers
    /// unsigned requests; asked directly, not through the proxy).
    async fn uploads_in_flight(&self) -> usize {
        let body = reqwest::get(format!(
            "{}/{}?uploads&prefix={}",
            self.s3_endpoint, self.bucket, self.prefix
        ))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
        body.matches("<UploadId>").count()
    }
}

impl Stage {
    /// The file ids (the last segment of each key) of the objects under the stage's
    /// prefix on moto, page by page.
    async fn stored_file_ids(&self) -> Vec<String> {
        let mut ids = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut url = format!(
                "{}/{}?list-type=2&prefix={}/files/",
                self.s3_endpoint, self.bucket, self.prefix
            );
            if let Some(t) = &token {
                url.push_str(&format!("&continuation-token={}", urlencode(t)));
            }
            let body = reqwest::get(url).await.unwrap().text().await.unwrap();
            for key in between(&body, "<Key>", "</Key>") {
                ids.push(key.rsplit('/').next().unwrap_or_default().to_owned());
            }
            match between(&body, "<NextContinuationToken>", "</NextContinuationToken>").first() {
                Some(t) => token = Some((*t).to_owned()),
                None => return ids,
            }
        }
    }
}

/// Every text between `open` and `close` in `body`, in order.
fn between<'a>(body: &'a str, open: &str, close: &str) -> Vec<&'a str> {
    body.split(open)
        .skip(1)
        .filter_map(|rest| rest.split(close).next())
        .collect()
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Kills Redis without a clean shutdown on drop of the stage, too.
impl Drop for Stage {
    fn drop(&mut self) {
        let _ = self.redis.kill();
        let _ = self.redis.wait();
    }
}

fn socket_addr(host_port: &str) -> SocketAddr {
    host_port
        .to_socket_addrs()
        .expect("resolve")
        .next()
        .expect("an address")
}

async fn stage() -> Option<Stage> {
    let database_url = common::fresh_postgres("faults").await?;
    let pg_restart = require_service("ZEROSCALE_TEST_POSTGRES_RESTART", "PostgreSQL")?;
    let s3_endpoint = require_service("ZEROSCALE_TEST_S3_ENDPOINT", "the S3 server")?;
    let bucket = require_service("ZEROSCALE_TEST_S3_BUCKET", "the S3 server")?;
    let redis_bin = common::redis_server().expect("redis-server (cargo xtask services up)");
    let dir = TempDir::new("faults");
    let redis_port = common::free_port();
    let redis = common::start_redis(&redis_bin, &dir.0, redis_port);
    let s3 = FaultProxy::start(socket_addr(
        s3_endpoint
            .trim_start_matches("http://")
            .trim_end_matches('/'),
    ))
    .await
    .expect("start the S3 proxy");
    let prefix = format!("faults-{}", std::process::id());
    let mut env: Vec<(String, String)> = vec![
        ("DATABASE_URL".into(), database_url),
        ("ZEROSCALE_DATABASE__AUTO_MIGRATE".into(), "true".into()),
        (
            "REDIS_URL".into(),
            format!("redis://127.0.0.1:{redis_port}"),
        ),
        ("ZEROSCALE_QUEUE__KIND".into(), "redis".into()),
        ("ZEROSCALE_QUEUE__KEY_PREFIX".into(), prefix.clone()),
        ("ZEROSCALE_WORKERS__MODE".into(), "separate".into()),
        ("ZEROSCALE_JOBS__LEASE_SECS".into(), "2".into()),
        (
            "ZEROSCALE_SERVER__UPLOAD_SWEEP_AFTER_SECS".into(),
            SWEEP_AFTER_SECS.to_string(),
        ),
        ("RUST_LOG".into(), "warn".into()),
    ];
    for (k, v) in [
        ("KIND", "s3".to_owned()),
        ("BUCKET", bucket.clone()),
        ("ENDPOINT", format!("http://{}", s3.addr())),
        ("ALLOW_HTTP", "true".to_owned()),
        ("ACCESS_KEY_ID", "test".to_owned()),
        ("SECRET_ACCESS_KEY", "test".to_owned()),
        ("REGION", "us-east-1".to_owned()),
        ("PREFIX", prefix.clone()),
    ] {
        env.push((format!("ZEROSCALE_STORAGE__{k}"), v));
    }
    Some(Stage {
        dir,
        env,
        redis_bin,
        redis_port,
        redis,
        s3,
        s3_endpoint,
        bucket,
        prefix,
        pg_restart,
    })
}

/// Sends `probe` every 100 ms until it answers 2xx; how long that took.
async fn recovery<F, Fut>(mut probe: F) -> (Duration, String)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(u16, String), String>>,
{
    let start = Instant::now();
    loop {
        match probe().await {
            Ok((status, body)) if (200..300).contains(&status) => {
                return (start.elapsed(), body);
            }
            answer => {
                assert!(
                    start.elapsed() < RECOVERY * 2,
                    "no recovery {:?} after the engine came back: {answer:?}",
                    start.elapsed()
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stage3_holds_under_engine_faults() {
    let Some(mut stage) = stage().await else {
        return;
    };
    let suite_started = Instant::now();
    let mut server = stage.server().await;
    let mut worker = stage.worker(1);
    let secrets = vec![
        stage.bucket.clone(),
        stage.prefix.clone(),
        stage.redis_port.to_string(),
        stage.s3.addr().port().to_string(),
    ];
    let load = Load::new(secrets);
    let http = reqwest::Client::new();
    let (base_tx, base_rx) = watch::channel(server.base.clone());
    let (stop_tx, stop_rx) = watch::channel(false);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            tokio::spawn(load::client(
                Arc::clone(&load),
                http.clone(),
                base_rx.clone(),
                format!("fault-user-{i}"),
                stop_rx.clone(),
            ))
        })
        .collect();
    // A token of our own for the probes.
    let token = common::register(&server, "fault-prober").await;
    let mut rows = Vec::new();

    // Baseline: no fault, so nothing but successes.
    tokio::time::sleep(Duration::from_secs(3)).await;
    rows.push(Row {
        fault: "none (baseline)",
        outage: Duration::ZERO,
        tally: load.take_tally(),
        recovery: None,
        note: String::new(),
    });

    // PostgreSQL restart.
    let started = Instant::now();
    let status = Command::new(&stage.pg_restart).status().expect("restart");
    assert!(status.success(), "{} failed: {status}", stage.pg_restart);
    let outage = started.elapsed();
    let base = server.base.clone();
    let took = recovery(|| {
        send(
            http.post(format!("{base}/v1/chat/probe/messages"))
                .bearer_auth(&token)
                .json(&serde_json::json!({"role": "user", "content": "probe"})),
        )
    })
    .await
    .0;
    tokio::time::sleep(Duration::from_secs(1)).await;
    rows.push(Row {
        fault: "PostgreSQL restart",
        outage,
        tally: load.take_tally(),
        recovery: Some(took),
        note: "pg_ctl restart -m fast".into(),
    });

    // Redis restart: SIGKILL, then the same port and files.
    stage.redis.kill().unwrap();
    stage.redis.wait().unwrap();
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stage.redis = common::start_redis(&stage.redis_bin, &stage.dir.0, stage.redis_port);
    let outage = started.elapsed();
    let (took, probe_job) = recovery(|| {
        send(
            http.post(format!("{base}/v1/jobs"))
                .bearer_auth(&token)
                .json(&serde_json::json!({"task": "zeroscale.echo", "payload": {}})),
        )
    })
    .await;
    // The probe's job is an acknowledged one too.
    let probe_job: serde_json::Value = serde_json::from_str(&probe_job).unwrap();
    load.acked
        .lock()
        .unwrap()
        .jobs
        .push((token.clone(), probe_job["id"].as_str().unwrap().to_owned()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    rows.push(Row {
        fault: "Redis SIGKILL + restart (AOF)",
        outage,
        tally: load.take_tally(),
        recovery: Some(took),
        note: "appendfsync always".into(),
    });

    // S3 unreachable for 10 s.
    stage.s3.set(ProxyMode::Refuse);
    tokio::time::sleep(Duration::from_secs(10)).await;
    stage.s3.set(ProxyMode::Pass);
    let (took, probe_file) = recovery(|| {
        send(
            http.post(format!("{base}/v1/files?filename=probe.bin"))
                .bearer_auth(&token)
                .header("content-type", "application/octet-stream")
                .body(load::file_bytes(PROBE_FILE)),
        )
    })
    .await;
    // The probe's file is an acknowledged one too.
    let probe_file: serde_json::Value = serde_json::from_str(&probe_file).unwrap();
    load.acked.lock().unwrap().files.insert(
        probe_file["id"].as_str().unwrap().to_owned(),
        (token.clone(), PROBE_FILE),
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    rows.push(Row {
        fault: "S3 unreachable",
        outage: Duration::from_secs(10),
        tally: load.take_tally(),
        recovery: Some(took),
        note: "proxy refuses connections".into(),
    });

    // Worker SIGKILL mid-load, holding slow jobs; a new one 1 s later.
    let mut held = Vec::new();
    for _ in 0..WORKER_CONCURRENCY {
        let (status, body) = send(
            http.post(format!("{base}/v1/jobs"))
                .bearer_auth(&token)
                .json(&serde_json::json!({"task": "zeroscale.sleep", "payload": {"ms": 1500}})),
        )
        .await
        .expect("enqueue a slow job");
        assert_eq!(status, 202, "{body}");
        let job: serde_json::Value = serde_json::from_str(&body).unwrap();
        held.push((token.clone(), job["id"].as_str().unwrap().to_owned()));
    }
    // Killed once it runs them all (as many as its concurrency): they must run again.
    let deadline = Instant::now() + Duration::from_secs(10);
    for (_, id) in &held {
        loop {
            let (_, body) = send(http.get(format!("{base}/v1/jobs/{id}")).bearer_auth(&token))
                .await
                .expect("job status");
            let job: serde_json::Value = serde_json::from_str(&body).unwrap();
            if job["state"] == "running" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the worker never ran {id}: {job}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    {
        let mut acked = load.acked.lock().unwrap();
        acked
            .held_jobs
            .extend(held.iter().map(|(_, id)| id.clone()));
        acked.jobs.extend(held);
    }
    worker.kill().unwrap();
    worker.wait().unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    worker = stage.worker(2);
    tokio::time::sleep(Duration::from_secs(3)).await;
    rows.push(Row {
        fault: "worker SIGKILL",
        outage: Duration::from_secs(1),
        tally: load.take_tally(),
        recovery: None,
        note: format!("{WORKER_CONCURRENCY} slow jobs held; they come back after the 2 s lease"),
    });

    // Server SIGKILL while a 12 MiB upload streams (multipart on S3), then a new server.
    let (body_tx, body_rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let upload = tokio::spawn({
        let http = http.clone();
        let url = format!("{base}/v1/files?filename=interrupted.bin");
        let token = token.clone();
        async move {
            send(
                http.post(url)
                    .bearer_auth(&token)
                    .header("content-type", "application/octet-stream")
                    .body(reqwest::Body::wrap_stream(futures::stream::unfold(
                        body_rx,
                        |mut rx| async move { rx.recv().await.map(|chunk| (chunk, rx)) },
                    ))),
            )
            .await
        }
    });
    for _ in 0..10 {
        body_tx.send(Ok(vec![1u8; 1024 * 1024])).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while stage.uploads_in_flight().await == 0 {
        assert!(
            Instant::now() < deadline,
            "the 12 MiB upload never started a multipart upload"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The server records the upload id right after starting it; the upload then waits
    // for more body, which never comes. (A crash between starting the upload and
    // recording its id is left to the bucket's lifecycle rule; docs/storage.md.)
    tokio::time::sleep(Duration::from_secs(1)).await;
    let killed = Instant::now();
    let first_log = server.log_text();
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    drop(body_tx);
    let cut = upload.await.unwrap();
    assert!(
        !matches!(cut, Ok((201, _))),
        "the killed upload was acknowledged: {cut:?}"
    );
    let left_in_flight = stage.uploads_in_flight().await;
    server = stage.server().await;
    let outage = killed.elapsed();
    base_tx.send_replace(server.base.clone());
    let base = server.base.clone();
    let (took, _) = recovery(|| send(http.get(format!("{base}/v1/me")).bearer_auth(&token))).await;
    // The sweeper runs at start-up and every second: once the upload is older than the
    // age, it is aborted.
    let deadline = Instant::now() + Duration::from_secs(SWEEP_AFTER_SECS + 10);
    while stage.uploads_in_flight().await > 0 {
        assert!(
            Instant::now() < deadline,
            "the interrupted multipart upload was never aborted:\n{}",
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut server_kill = load.take_tally();
    // The clients' requests to the dead server had no answer: that is the fault itself.
    let to_dead_server = std::mem::take(&mut server_kill.hung);
    let dead_server = to_dead_server.len();
    // An upload the dead server had written but not answered is the client's file (see
    // docs/storage.md): the only objects allowed without a 201.
    let unanswered_uploads = to_dead_server
        .iter()
        .filter(|r| r.starts_with("upload:"))
        .count();
    rows.push(Row {
        fault: "server SIGKILL mid-upload",
        outage,
        tally: server_kill,
        recovery: Some(took),
        note: format!(
            "{left_in_flight} multipart upload(s) left, aborted by the sweeper; \
             {dead_server} request(s) to the dead server"
        ),
    });

    stop_tx.send_replace(true);
    for client in clients {
        client.await.unwrap();
    }

    // Everything acknowledged is there.
    let acked = std::mem::take(&mut *load.acked.lock().unwrap());
    let mut checks = verify(&http, &server.base, &acked).await;
    // No object without a 201: every stored file is an acknowledged one, but at most one
    // per upload the killed server never answered.
    let orphans: Vec<String> = stage
        .stored_file_ids()
        .await
        .into_iter()
        .filter(|id| !acked.files.contains_key(id))
        .collect();
    checks.orphans = orphans.len();
    checks.cut_uploads = unanswered_uploads;
    if orphans.len() > unanswered_uploads {
        checks.problems.push(format!(
            "{} stored object(s) without a 201 (only {unanswered_uploads} upload(s) were \
             cut off by the server kill): {orphans:?}",
            orphans.len()
        ));
    }
    let _ = worker.kill();
    let _ = worker.wait();

    let report = table(&rows, &checks, suite_started.elapsed());
    eprintln!("{report}");
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/faults");
    let _ = std::fs::create_dir_all(&out);
    let _ = std::fs::write(out.join("report.md"), &report);

    let mut failures = Vec::new();
    for row in &rows {
        let t = &row.tally;
        if !t.server_errors.is_empty() {
            failures.push(format!(
                "{}: 5xx other than 503: {:?}",
                row.fault, t.server_errors
            ));
        }
        if !t.hung.is_empty() {
            failures.push(format!(
                "{}: requests without an answer: {:?}",
                row.fault, t.hung
            ));
        }
        if !t.leaks.is_empty() {
            failures.push(format!("{}: error bodies leak: {:?}", row.fault, t.leaks));
        }
        if row.recovery.is_some_and(|r| r > RECOVERY) {
            failures.push(format!("{}: recovery took {:?}", row.fault, row.recovery));
        }
    }
    if rows[0].tally.ok != rows[0].tally.requests {
        failures.push(format!("the baseline had failures: {:?}", rows[0].tally));
    }
    failures.extend(checks.problems.iter().cloned());
    assert!(
        failures.is_empty(),
        "{report}\n{}\nfirst server's log:\n{first_log}\nsecond server's log:\n{}\n\
         workers' warnings:\n{}",
        failures.join("\n"),
        server.log_text(),
        stage.worker_warnings()
    );
    assert!(
        checks.files > 0 && checks.messages > 0 && checks.jobs > 0,
        "the load acknowledged too little to prove anything: {report}"
    );
}

/// What the final checks found.
#[derive(Default)]
struct Checks {
    files: usize,
    messages: usize,
    jobs: usize,
    /// Jobs the killed worker held that ran again (all of them must).
    reruns: usize,
    /// Other jobs that ran twice: only those of a reservation whose answer the Redis
    /// kill cut off (leased to no one until the lease ran out), so at most one
    /// reservation's worth.
    other_reruns: Vec<String>,
    /// Stored objects no 201 acknowledged.
    orphans: usize,
    /// Uploads the server kill left without an answer.
    cut_uploads: usize,
    problems: Vec<String>,
}

async fn verify(http: &reqwest::Client, base: &str, acked: &load::Acked) -> Checks {
    let mut checks = Checks::default();
    for (id, (token, n)) in &acked.files {
        let got = http
            .get(format!("{base}/v1/files/{id}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = got.status().as_u16();
        let bytes = got.bytes().await.unwrap_or_default();
        if status != 200 || bytes.as_ref() != load::file_bytes(*n).as_slice() {
            checks.problems.push(format!(
                "acknowledged file {id}: {status}, {} bytes",
                bytes.len()
            ));
        }
        checks.files += 1;
    }
    let mut sessions: std::collections::BTreeMap<(String, String), Vec<String>> =
        Default::default();
    for (token, session, content) in &acked.messages {
        sessions
            .entry((token.clone(), session.clone()))
            .or_default()
            .push(content.clone());
    }
    for ((token, session), wanted) in &sessions {
        let mut seen = std::collections::BTreeSet::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut url = format!("{base}/v1/chat/{session}/messages?limit=1000");
            if let Some(c) = &cursor {
                url.push_str(&format!("&cursor={c}"));
            }
            let page: serde_json::Value = http
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            for m in page["data"].as_array().into_iter().flatten() {
                seen.insert(m["content"].as_str().unwrap_or_default().to_owned());
            }
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        for content in wanted {
            checks.messages += 1;
            if !seen.contains(content) {
                checks
                    .problems
                    .push(format!("acknowledged chat message `{content}` is missing"));
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for (token, id) in &acked.jobs {
        checks.jobs += 1;
        loop {
            let job: serde_json::Value = http
                .get(format!("{base}/v1/jobs/{id}"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap_or_default();
            match job["state"].as_str() {
                Some("succeeded") => {
                    let again = job["attempts"].as_u64().unwrap_or(0) > 1;
                    if acked.held_jobs.contains(id) {
                        if again {
                            checks.reruns += 1;
                        } else {
                            checks.problems.push(format!(
                                "job {id} ran on the killed worker and never again: {job}"
                            ));
                        }
                    } else if again {
                        checks
                            .other_reruns
                            .push(format!("{id}: {}", job["last_error"]));
                    }
                    break;
                }
                Some("queued" | "scheduled" | "running" | "retrying")
                    if Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                _ => {
                    checks
                        .problems
                        .push(format!("acknowledged job {id}: {job}"));
                    break;
                }
            }
        }
    }
    // A job runs twice only when its worker died, or when the reservation that gave it
    // out lost its answer to the Redis kill (acks and lease renewals that fail while
    // Redis restarts are tried again within the lease).
    if checks.other_reruns.len() > WORKER_CONCURRENCY {
        checks.problems.push(format!(
            "{} jobs the killed worker did not hold ran twice (at most one reservation's \
             worth, {WORKER_CONCURRENCY}, may): {:?}",
            checks.other_reruns.len(),
            checks.other_reruns
        ));
    }
    checks
}

fn secs(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64())
}

fn table(rows: &[Row], checks: &Checks, took: Duration) -> String {
    let mut out = String::from(
        "## Fault suite (stage 3: PostgreSQL, S3, Redis, a separate worker)\n\n\
         | fault | outage s | requests | 2xx | 503 | 4xx | other 5xx | no answer | leaks | slowest s | recovery s | note |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for row in rows {
        let t = &row.tally;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            row.fault,
            secs(row.outage),
            t.requests,
            t.ok,
            t.unavailable,
            t.client_errors,
            t.server_errors.len(),
            t.hung.len(),
            t.leaks.len(),
            secs(t.slowest),
            row.recovery.map_or("-".to_owned(), secs),
            row.note
        );
    }
    let _ = writeln!(
        out,
        "\nAfterwards: {} acknowledged uploads, {} chat messages and {} jobs checked; \
         {} held job(s) ran again and {} other(s) twice; {} stored object(s) without a 201 ({} upload(s) cut off by the \
         server kill); {} problem(s). \
         The suite took {} s.",
        checks.files,
        checks.messages,
        checks.jobs,
        checks.reruns,
        checks.other_reruns.len(),
        checks.orphans,
        checks.cut_uploads,
        checks.problems.len(),
        secs(took)
    );
    out
}
