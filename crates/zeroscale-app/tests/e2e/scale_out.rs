//! Stage 3 scaled out: two servers and two workers on one set of engines.

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::login;
use crate::harness::*;

use crate::common::Server;

/// Stage 3 scaled out: two API servers and two worker processes on one PostgreSQL,
/// Redis and S3. 1,000 jobs submitted through both servers are each run exactly once,
/// and what a user writes through one server is read through the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stage3_scale_out() {
    let Some(d) = deploy(
        "scale",
        Some("stage3-growth"),
        Db::Postgres,
        Store::S3,
        Jobs::Redis,
        2,
    )
    .await
    else {
        return;
    };
    let second = Server::start((d.command)()).await;
    let servers = [&d.server, &second];
    let register = json!({"username": "dana", "password": "correct horse battery"});
    let (status, _) = second
        .call(Method::POST, "/v1/auth/register", None, Some(register))
        .await;
    assert_eq!(status, 201);
    // A session made on one server works on the other.
    let token = login(&d.server, "dana", "correct horse battery").await;
    let (status, me) = second.call(Method::GET, "/v1/me", Some(&token), None).await;
    assert_eq!(
        (status, me["user"]["username"].as_str()),
        (200, Some("dana"))
    );

    // Data written through one server, read through the other.
    let upload = d
        .server
        .http
        .post(format!("{}/v1/files?filename=shared.txt", d.server.base))
        .bearer_auth(&token)
        .body("written through the first server")
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), 201);
    let file: Value = upload.json().await.unwrap();
    let read = second
        .http
        .get(format!(
            "{}/v1/files/{}",
            second.base,
            file["id"].as_str().unwrap()
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        read.text().await.unwrap(),
        "written through the first server"
    );
    let (status, _) = second
        .call(
            Method::POST,
            "/v1/chat/shared/messages",
            Some(&token),
            Some(json!({"role": "user", "content": "hello from two"})),
        )
        .await;
    assert_eq!(status, 201);
    let (_, page) = d
        .server
        .call(Method::GET, "/v1/chat/shared/messages", Some(&token), None)
        .await;
    assert_eq!(page["data"][0]["content"], "hello from two");

    // A logout through one server ends the session on the other, which had it cached
    // (ten-minute cache here): the change travels over Redis pub/sub.
    let short = login(&d.server, "dana", "correct horse battery").await;
    let (status, _) = second.call(Method::GET, "/v1/me", Some(&short), None).await;
    assert_eq!(status, 200);
    let (status, _) = d
        .server
        .call(Method::POST, "/v1/auth/logout", Some(&short), None)
        .await;
    assert_eq!(status, 204);
    let logged_out = Instant::now();
    loop {
        let (status, _) = second.call(Method::GET, "/v1/me", Some(&short), None).await;
        if status == 401 {
            break;
        }
        assert!(
            logged_out.elapsed() < Duration::from_secs(3),
            "the other server still accepts a logged-out session after 3 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!(
        "logout seen by the other server after {} ms",
        logged_out.elapsed().as_millis()
    );

    // 1,000 jobs, alternating between the servers, 16 at a time.
    const JOBS: usize = 1000;
    let started = Instant::now();
    let ids: Vec<String> = futures::stream::iter(0..JOBS)
        .map(|i| {
            let server = servers[i % 2];
            let token = token.clone();
            async move {
                let (status, job) = server
                    .call(
                        Method::POST,
                        "/v1/jobs",
                        Some(&token),
                        Some(json!({"task": "zeroscale.echo", "payload": {"n": i}})),
                    )
                    .await;
                assert_eq!(status, 202, "{job}");
                (i, job["id"].as_str().unwrap().to_owned())
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<(usize, String)>>()
        .await
        .into_iter()
        .collect::<std::collections::BTreeMap<usize, String>>()
        .into_values()
        .collect();
    let unique: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), JOBS, "every enqueue made its own job");
    let submitted = started.elapsed();

    // Wait until every job is done, through both servers.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut pending: Vec<(usize, String)> = ids.iter().cloned().enumerate().collect();
    let mut runs = 0u64;
    while !pending.is_empty() {
        assert!(
            Instant::now() < deadline,
            "{} jobs still unfinished after 120s",
            pending.len()
        );
        let checked: Vec<Option<(usize, String)>> = futures::stream::iter(pending)
            .map(|(i, id)| {
                let server = servers[(i + 1) % 2];
                let token = token.clone();
                async move {
                    let (status, job) = server
                        .call(Method::GET, &format!("/v1/jobs/{id}"), Some(&token), None)
                        .await;
                    assert_eq!(status, 200, "{job}");
                    match job["state"].as_str().unwrap() {
                        "succeeded" => {
                            assert_eq!(job["attempts"], 1, "job {id} ran more than once: {job}");
                            assert_eq!(job["result"], json!({"n": i}), "{job}");
                            None
                        }
                        "queued" | "running" | "scheduled" => Some((i, id)),
                        other => panic!("job {id} ended {other}: {job}"),
                    }
                }
            })
            .buffer_unordered(16)
            .collect()
            .await;
        runs += 1;
        pending = checked.into_iter().flatten().collect();
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    eprintln!(
        "1000 jobs: submitted through two servers in {:.1}s, all done exactly once after {} polls ({:.1}s)",
        submitted.as_secs_f64(),
        runs,
        started.elapsed().as_secs_f64()
    );
    // Both workers took part.
    let logs: Vec<String> = (0..2)
        .map(|i| {
            std::fs::read_to_string(d._dirs.last().unwrap().0.join(format!("worker-{i}.log")))
                .unwrap_or_default()
        })
        .collect();
    for (i, log) in logs.iter().enumerate() {
        assert!(log.contains("worker started"), "worker {i}:\n{log}");
    }
    second.terminate();
}
