//! Prometheus metrics (#24): a real Prometheus scrapes a running server on
//! `metrics.listen` and sees the traffic sent to it; `/metrics` on the main port is for
//! admins only; `promtool` accepts the exposition and the example alert rules; turning
//! metrics off turns `/metrics` off.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Server, TempDir, free_port};
use serde_json::{Value, json};
use zeroscale_core::testing::require_service;

/// A server on the built-in defaults (stage 1) with metrics also on `127.0.0.1:<port>`.
async fn server(dir: &Path, metrics_port: u16) -> Server {
    let mut cmd = common::zeroscale(dir);
    cmd.env(
        "ZEROSCALE_METRICS__LISTEN",
        format!("127.0.0.1:{metrics_port}"),
    )
    .arg("serve");
    Server::start(cmd).await
}

/// `promtool` with `args`, `input` on its stdin; its exit status and output.
fn promtool(promtool: &str, args: &[&str], input: &str) -> (bool, String) {
    use std::io::Write as _;
    let mut child = Command::new(promtool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `text` percent-encoded for a URL's query string.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A Prometheus on loopback scraping `target` every second; killed on drop.
struct Prometheus {
    child: Child,
    base: String,
    log: std::path::PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn start(binary: &str, dir: &Path, target: &str) -> Prometheus {
        let port = free_port();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: zeroscale\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let log = dir.join("prometheus.log");
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start prometheus");
        Prometheus {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    /// The value of the one series `query` returns, `None` when it returns none.
    async fn value(&self, query: &str) -> Option<f64> {
        let body: Value = reqwest::Client::new()
            .get(format!(
                "{}/api/v1/query?query={}",
                self.base,
                encode(query)
            ))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let result = body["data"]["result"].as_array()?;
        assert!(result.len() <= 1, "{query}: {body}");
        result.first()?["value"][1].as_str()?.parse().ok()
    }

    /// Waits up to 30 s for `query` to hold `check`; returns the last value.
    async fn wait_for(&self, query: &str, check: impl Fn(f64) -> bool) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let value = self.value(query).await;
            if let Some(v) = value
                && check(v)
            {
                return v;
            }
            if Instant::now() > deadline {
                panic!(
                    "Prometheus: `{query}` is {value:?} after 30 s; its log:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_the_server_and_counts_its_traffic() {
    let Some(binary) = require_service("ZEROSCALE_TEST_PROMETHEUS", "Prometheus") else {
        return;
    };
    let dir = TempDir::new("metrics-prometheus");
    let metrics_port = free_port();
    let server = server(&dir.0, metrics_port).await;
    let prometheus = Prometheus::start(&binary, &dir.0, &format!("127.0.0.1:{metrics_port}"));
    prometheus
        .wait_for(r#"up{job="zeroscale"}"#, |v| v == 1.0)
        .await;
    // The start-up's own /healthz polls are counted already; from here the test is the
    // only client.
    let query = r#"sum(zeroscale_http_requests_total{route="/healthz",status="200",method="GET"})"#;
    let before = prometheus.wait_for(query, |v| v >= 1.0).await;
    const SENT: u32 = 25;
    for _ in 0..SENT {
        let (status, _) = server.get("/healthz").await;
        assert_eq!(status, 200);
    }
    let expected = before + f64::from(SENT);
    let after = prometheus.wait_for(query, |v| v >= expected).await;
    assert_eq!(after, expected, "exactly the requests sent");
    // The build info says what this process runs.
    let info = prometheus
        .wait_for(
            r#"zeroscale_build_info{database="sqlite",storage="local",queue="memory",embedded="true"}"#,
            |v| v == 1.0,
        )
        .await;
    assert_eq!(info, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn main_port_metrics_are_for_admins_and_promtool_accepts_them() {
    let Some(promtool_path) = require_service("ZEROSCALE_TEST_PROMTOOL", "promtool") else {
        return;
    };
    let dir = TempDir::new("metrics-admin");
    let server = server(&dir.0, free_port()).await;
    let admin = common::admin_token(&server, common::zeroscale(&dir.0), "admin").await;
    let (status, body) = server
        .call(
            reqwest::Method::POST,
            "/v1/auth/register",
            None,
            Some(json!({"username": "alice", "password": "correct horse battery"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let alice = common::login(&server, "alice", "correct horse battery").await;
    // Traffic every concern records: a job through the queue and workers, a file through
    // storage, an embedding through the router (and its cache).
    let (status, job) = server
        .call(
            reqwest::Method::POST,
            "/v1/jobs",
            Some(&alice),
            Some(json!({"task": "zeroscale.echo", "payload": {"x": 1}})),
        )
        .await;
    assert_eq!(status, 202, "{job}");
    let scrape = |token: Option<String>| {
        let request = server.http.get(format!("{}/metrics", server.base));
        let request = match token {
            Some(t) => request.bearer_auth(t),
            None => request,
        };
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let content_type = response
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned());
            (status, content_type, response.text().await.unwrap())
        }
    };
    let (status, _, _) = scrape(None).await;
    assert_eq!(status, 401, "no credentials");
    let (status, _, body) = scrape(Some(alice.clone())).await;
    assert_eq!(status, 403, "a user who is not an admin: {body}");
    // The job is acked by the in-process workers shortly.
    let deadline = Instant::now() + Duration::from_secs(20);
    let text = loop {
        let (status, content_type, text) = scrape(Some(admin.clone())).await;
        assert_eq!(status, 200, "{text}");
        assert!(
            content_type.unwrap_or_default().starts_with("text/plain"),
            "the exposition format"
        );
        if text.contains(r#"zeroscale_queue_acked_total{queue="default",task="zeroscale.echo"} 1"#)
        {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "the job was never acked:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for needle in [
        r#"zeroscale_http_requests_total{method="POST",route="/v1/jobs",status="202"} 1"#,
        r#"zeroscale_http_requests_total{method="GET",route="/metrics",status="403"} 1"#,
        r#"zeroscale_queue_enqueued_total{queue="default"} 1"#,
        r#"zeroscale_queue_jobs{queue="default",state="dead"} 0"#,
        r#"zeroscale_db_pool_connections{state="max"}"#,
        "zeroscale_db_pool_acquire_seconds_bucket",
        "zeroscale_queue_job_duration_seconds_bucket",
        r#"zeroscale_build_info{version=""#,
        "# HELP zeroscale_http_requests_total ",
        "# TYPE zeroscale_http_request_duration_seconds histogram",
    ] {
        assert!(text.contains(needle), "missing `{needle}` in:\n{text}");
    }
    // Never a raw path: ids in paths stay out of the labels.
    assert!(!text.contains(job["id"].as_str().unwrap()), "{text}");
    let (ok, out) = promtool(&promtool_path, &["check", "metrics"], &text);
    assert!(ok, "promtool check metrics:\n{out}\n{text}");

    // The example alerts of docs/operations.md are valid rules.
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/prometheus-alerts.yml");
    let out = Command::new(&promtool_path)
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check rules {}:\n{}{}",
        rules.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_off_means_no_metrics_endpoint() {
    let dir = TempDir::new("metrics-off");
    let metrics_port = free_port();
    let mut cmd = common::zeroscale(&dir.0);
    cmd.env("ZEROSCALE_METRICS__ENABLED", "false")
        .env(
            "ZEROSCALE_METRICS__LISTEN",
            format!("127.0.0.1:{metrics_port}"),
        )
        .arg("serve");
    let server = Server::start(cmd).await;
    let admin = common::admin_token(&server, common::zeroscale(&dir.0), "admin").await;
    let response = server
        .http
        .get(format!("{}/metrics", server.base))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", metrics_port)).is_err(),
        "nothing listens on metrics.listen when metrics are off"
    );
}
