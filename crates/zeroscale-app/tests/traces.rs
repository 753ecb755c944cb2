//! Traces and request ids across processes (#24): a server and a separate `zeroscale
//! worker` export spans by OTLP/HTTP to a receiver inside this test; one request that
//! enqueues a job yields one trace holding the request, the enqueue, the job's run in the
//! worker and the database statements of both; the worker's log lines for the job name
//! the request's id.

mod common;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use common::{Server, TempDir, free_port};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message as _;
use serde_json::json;

/// One received span.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    name: String,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent_span_id: Vec<u8>,
    attributes: Vec<(String, String)>,
}

impl Received {
    fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn text(value: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(n)) => n.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        _ => String::new(),
    }
}

/// An OTLP/HTTP receiver on loopback keeping every span it is sent.
async fn receiver() -> (String, Arc<Mutex<Vec<Received>>>) {
    let spans: Arc<Mutex<Vec<Received>>> = Arc::default();
    let kept = spans.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: Bytes| {
            let kept = kept.clone();
            async move {
                let request = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                let mut kept = kept.lock().unwrap();
                for resource_spans in request.resource_spans {
                    let service = resource_spans
                        .resource
                        .iter()
                        .flat_map(|r| &r.attributes)
                        .find(|kv| kv.key == "service.name")
                        .map(|kv| text(kv.value.as_ref()))
                        .unwrap_or_default();
                    for scope in resource_spans.scope_spans {
                        for span in scope.spans {
                            kept.push(Received {
                                service: service.clone(),
                                name: span.name,
                                trace_id: span.trace_id,
                                span_id: span.span_id,
                                parent_span_id: span.parent_span_id,
                                attributes: span
                                    .attributes
                                    .iter()
                                    .map(|kv| (kv.key.clone(), text(kv.value.as_ref())))
                                    .collect(),
                            });
                        }
                    }
                }
                // An empty ExportTraceServiceResponse.
                (
                    [(axum::http::header::CONTENT_TYPE, "application/x-protobuf")],
                    Vec::<u8>::new(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), spans)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_spans_the_request_and_the_job_in_another_process() {
    let (endpoint, spans) = receiver().await;
    let dir = TempDir::new("traces");
    // Stage 1 with the database queue, so a separate worker on the same SQLite file runs
    // the jobs; both export spans quickly.
    let configure = |cmd: &mut std::process::Command| {
        cmd.env("ZEROSCALE_QUEUE__KIND", "database")
            .env("ZEROSCALE_WORKERS__MODE", "separate")
            .env("ZEROSCALE_TELEMETRY__OTLP_ENDPOINT", &endpoint)
            .env("ZEROSCALE_LOG__FORMAT", "json")
            .env("OTEL_BSP_SCHEDULE_DELAY", "200");
    };
    let mut cmd = common::zeroscale(&dir.0);
    configure(&mut cmd);
    cmd.arg("serve");
    let server = Server::start(cmd).await;

    let worker_log = dir.0.join("worker.log");
    let mut worker = common::zeroscale(&dir.0);
    configure(&mut worker);
    let mut worker = worker
        .arg("worker")
        .env("ZEROSCALE_METRICS__ENABLED", "false")
        .env("RUST_LOG", "info,zeroscale_queue=debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&worker_log).unwrap())
        .spawn()
        .expect("start zeroscale worker");

    let token = common::register(&server, "alice").await;
    let request_id = format!("trace-test-{}", free_port());
    let response = server
        .http
        .post(format!("{}/v1/jobs", server.base))
        .bearer_auth(&token)
        .header("x-request-id", &request_id)
        .json(&json!({"task": "zeroscale.echo", "payload": {"hello": "trace"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let job: serde_json::Value = response.json().await.unwrap();
    let job_id = job["id"].as_str().unwrap().to_owned();

    // The separate worker runs it.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = server
            .call(
                reqwest::Method::GET,
                &format!("/v1/jobs/{job_id}"),
                Some(&token),
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        if body["state"] == "succeeded" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the worker never ran the job: {body}\nworker log:\n{}",
            std::fs::read_to_string(&worker_log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Both processes' spans of the request's trace arrive.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (request, trace) = loop {
        let received = spans.lock().unwrap().clone();
        let request = received.iter().find(|s| {
            s.service == "zeroscale"
                && s.name == "POST /v1/jobs"
                && s.attribute("request_id") == Some(request_id.as_str())
        });
        if let Some(request) = request {
            let trace: Vec<Received> = received
                .iter()
                .filter(|s| s.trace_id == request.trace_id)
                .cloned()
                .collect();
            let job_ran = trace
                .iter()
                .any(|s| s.service == "zeroscale-worker" && s.name == "job");
            if job_ran {
                break (request.clone(), trace);
            }
        }
        assert!(
            Instant::now() < deadline,
            "no trace with the request and the job; got {} spans: {:#?}",
            received.len(),
            received
                .iter()
                .map(|s| format!("{} {}", s.service, s.name))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let names: Vec<String> = trace
        .iter()
        .map(|s| format!("{}: {}", s.service, s.name))
        .collect();
    assert_eq!(
        request.attribute("http.route"),
        Some("/v1/jobs"),
        "{request:?}"
    );
    assert_eq!(
        request.attribute("http.response.status_code"),
        Some("202"),
        "{request:?}"
    );
    assert!(
        request.parent_span_id.is_empty(),
        "the request is the root: {request:?}"
    );
    // The job's span is a child of the enqueue, which is inside the request.
    let by_id = |id: &[u8]| trace.iter().find(|s| s.span_id == id);
    let job_span = trace
        .iter()
        .find(|s| s.service == "zeroscale-worker" && s.name == "job")
        .unwrap();
    assert_eq!(job_span.attribute("request_id"), Some(request_id.as_str()));
    let enqueue = by_id(&job_span.parent_span_id)
        .unwrap_or_else(|| panic!("the job's parent is not in the trace: {names:#?}"));
    assert_eq!(enqueue.service, "zeroscale");
    assert_eq!(enqueue.name, "enqueue default", "{names:#?}");
    let mut up = enqueue;
    while up.span_id != request.span_id {
        up = by_id(&up.parent_span_id)
            .unwrap_or_else(|| panic!("the enqueue is not under the request: {names:#?}"));
    }
    // The job's insert is a database statement under the enqueue.
    assert!(
        trace.iter().any(|s| s.service == "zeroscale"
            && s.parent_span_id == enqueue.span_id
            && s.attribute("db.system") == Some("sqlite")
            && s.attribute("db.operation") == Some("INSERT")),
        "no database insert under the enqueue: {names:#?}"
    );
    // A worker's polls for jobs start no traces of their own.
    let received = spans.lock().unwrap().clone();
    assert!(
        !received
            .iter()
            .any(|s| s.name.starts_with("sea_orm.") && s.parent_span_id.is_empty()),
        "lone statements were exported"
    );

    // The worker's log lines for the job name the request.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = std::fs::read_to_string(&worker_log).unwrap_or_default();
        let line = log
            .lines()
            .find(|line| line.contains("job succeeded") && line.contains(&job_id));
        if let Some(line) = line {
            assert!(
                line.contains(&format!("\"request_id\":\"{request_id}\"")),
                "the job's log line lacks the request id: {line}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "no `job succeeded` line:\n{log}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = worker.kill();
    let _ = worker.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_endpoint_is_refused_with_the_reason() {
    let dir = TempDir::new("traces-bad");
    let out = common::zeroscale(&dir.0)
        .env("ZEROSCALE_TELEMETRY__OTLP_ENDPOINT", "127.0.0.1:4318")
        .args(["config", "show"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("telemetry.otlp_endpoint") && stderr.contains("http://"),
        "{stderr}"
    );
}
