//! The fault suite's client load: a few users, each a loop of login, upload, list, chat
//! append, enqueue and `/v1/me`, recording every answer and every write the server
//! acknowledged.

#![allow(unreachable_pub)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::watch;

/// How long a client waits for an answer before it counts the request as hung.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// Pause between two requests of one client: the load stays bounded.
const PAUSE: Duration = Duration::from_millis(30);

/// A file's bytes, from its number (so the check needs no copy).
pub fn file_bytes(n: u64) -> Vec<u8> {
    (0..4096u64)
        .map(|i| (i.wrapping_mul(31) ^ n.wrapping_mul(7919)) as u8)
        .collect()
}

/// Writes the server acknowledged, to find afterwards.
#[derive(Debug, Default)]
pub struct Acked {
    /// File id → its number.
    pub files: BTreeMap<String, (String, u64)>,
    /// (token, session, content) of each appended chat message.
    pub messages: Vec<(String, String, String)>,
    /// (token, job id) of each enqueued job.
    pub jobs: Vec<(String, String)>,
    /// Ids of the jobs the killed worker was running.
    pub held_jobs: Vec<String>,
}

/// What one phase saw.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub requests: u64,
    pub ok: u64,
    pub unavailable: u64,
    pub client_errors: u64,
    /// 5xx other than 503, with the operation and body.
    pub server_errors: Vec<String>,
    /// Requests with no answer within [`REQUEST_TIMEOUT`] or a broken connection.
    pub hung: Vec<String>,
    /// Error bodies that named an address, key, path or developer command.
    pub leaks: Vec<String>,
    pub slowest: Duration,
}

impl Tally {
    fn absorb(&mut self, other: &Tally) {
        self.requests += other.requests;
        self.ok += other.ok;
        self.unavailable += other.unavailable;
        self.client_errors += other.client_errors;
        self.server_errors
            .extend(other.server_errors.iter().cloned());
        self.hung.extend(other.hung.iter().cloned());
        self.leaks.extend(other.leaks.iter().cloned());
        self.slowest = self.slowest.max(other.slowest);
    }
}

/// Shared by the clients and the suite.
pub struct Load {
    pub acked: Mutex<Acked>,
    tally: Mutex<Tally>,
    /// Words no error body may contain (engine addresses, the bucket, key prefixes).
    secrets: Vec<String>,
}

impl Load {
    pub fn new(secrets: Vec<String>) -> Arc<Load> {
        Arc::new(Load {
            acked: Mutex::default(),
            tally: Mutex::default(),
            secrets,
        })
    }

    /// What was seen since the last call, and a fresh count.
    pub fn take_tally(&self) -> Tally {
        std::mem::take(&mut *self.tally.lock().unwrap())
    }

    /// Records one answer (or its absence) of operation `op`.
    pub fn record(&self, op: &str, answer: &Result<(u16, String), String>, took: Duration) {
        let mut one = Tally {
            requests: 1,
            slowest: took,
            ..Default::default()
        };
        match answer {
            Err(e) => one.hung.push(format!("{op}: {e}")),
            Ok((status, body)) => {
                match status {
                    200..=299 => one.ok += 1,
                    503 => one.unavailable += 1,
                    400..=499 => one.client_errors += 1,
                    _ => one.server_errors.push(format!("{op}: {status} {body}")),
                }
                if *status >= 400
                    && let Some(word) = self.leaked(body)
                {
                    one.leaks
                        .push(format!("{op}: {status} names `{word}`: {body}"));
                }
            }
        }
        self.tally.lock().unwrap().absorb(&one);
    }

    fn leaked(&self, body: &str) -> Option<String> {
        const ALWAYS: &[&str] = &[
            "127.0.0.1",
            "localhost",
            "postgres://",
            "redis://",
            "xtask",
            "services up",
            "/tmp/",
            "files/",
        ];
        ALWAYS
            .iter()
            .map(|w| (*w).to_owned())
            .chain(self.secrets.iter().cloned())
            .find(|w| body.contains(w.as_str()))
    }
}

/// One request: status and body, or why there was none.
pub async fn send(request: reqwest::RequestBuilder) -> Result<(u16, String), String> {
    let response = request
        .timeout(REQUEST_TIMEOUT)
        .send()
        .await
        .map_err(|e| format!("no answer: {e}"))?;
    let status = response.status().as_u16();
    let body = response
        .text()
        .await
        .map_err(|e| format!("body cut off: {e}"))?;
    Ok((status, body))
}

/// One client: registers `user`, then loops until `stop` turns true.
pub async fn client(
    load: Arc<Load>,
    http: reqwest::Client,
    base: watch::Receiver<String>,
    user: String,
    mut stop: watch::Receiver<bool>,
) {
    let password = "fault suite password";
    let token = loop {
        // The first phase has no fault; a failure here is retried until it passes.
        let url = base.borrow().clone();
        let _ = send(
            http.post(format!("{url}/v1/auth/register"))
                .json(&json!({"username": user, "password": password})),
        )
        .await;
        if let Ok((200, body)) = send(
            http.post(format!("{url}/v1/auth/login"))
                .json(&json!({"username": user, "password": password})),
        )
        .await
        {
            let value: serde_json::Value = serde_json::from_str(&body).unwrap();
            break value["token"].as_str().unwrap().to_owned();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let session = format!("chat-{user}");
    let mut n: u64 = 0;
    while !*stop.borrow() {
        n += 1;
        let url = base.borrow().clone();
        let seq = format!("{user}-{n}");
        let started = Instant::now();
        let (op, answer) = match n % 6 {
            0 => (
                "login",
                send(
                    http.post(format!("{url}/v1/auth/login"))
                        .json(&json!({"username": user, "password": password})),
                )
                .await,
            ),
            1 => {
                let answer = send(
                    http.post(format!("{url}/v1/files?filename={seq}.bin"))
                        .bearer_auth(&token)
                        .header("content-type", "application/octet-stream")
                        .body(file_bytes(n)),
                )
                .await;
                if let Ok((201, body)) = &answer {
                    let value: serde_json::Value = serde_json::from_str(body).unwrap();
                    let id = value["id"].as_str().unwrap().to_owned();
                    load.acked
                        .lock()
                        .unwrap()
                        .files
                        .insert(id, (token.clone(), n));
                }
                ("upload", answer)
            }
            2 => (
                "list files",
                send(
                    http.get(format!("{url}/v1/files?limit=5"))
                        .bearer_auth(&token),
                )
                .await,
            ),
            3 => {
                let answer = send(
                    http.post(format!("{url}/v1/chat/{session}/messages"))
                        .bearer_auth(&token)
                        .json(&json!({"role": "user", "content": seq})),
                )
                .await;
                if let Ok((201, _)) = &answer {
                    load.acked.lock().unwrap().messages.push((
                        token.clone(),
                        session.clone(),
                        seq.clone(),
                    ));
                }
                ("chat append", answer)
            }
            4 => {
                let answer = send(
                    http.post(format!("{url}/v1/jobs"))
                        .bearer_auth(&token)
                        .json(&json!({"task": "zeroscale.echo", "payload": {"seq": seq}})),
                )
                .await;
                if let Ok((202, body)) = &answer {
                    let value: serde_json::Value = serde_json::from_str(body).unwrap();
                    let id = value["id"].as_str().unwrap().to_owned();
                    load.acked.lock().unwrap().jobs.push((token.clone(), id));
                }
                ("enqueue", answer)
            }
            _ => (
                "me",
                send(http.get(format!("{url}/v1/me")).bearer_auth(&token)).await,
            ),
        };
        load.record(op, &answer, started.elapsed());
        tokio::select! {
            _ = tokio::time::sleep(PAUSE) => {}
            _ = stop.changed() => {}
        }
    }
}
