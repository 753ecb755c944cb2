//! Local embeddings (#15): all-MiniLM-L6-v2 through `LocalEmbeddings`, in-process, against
//! the same model in sentence-transformers (PyTorch) and in ONNX Runtime, in-process in a
//! Python peer, on the same generated sentences, the same 32-sentence chunks (one `encode`
//! call per chunk) and the same number of threads.
//!
//! The peers run from the venv `cargo xtask bench --peers` creates (`ZEROSCALE_BENCH_PEERS`
//! names it); without it only our figures are reported. Also measured: one sentence at a
//! time (p50), 16 concurrent single-sentence clients against our own batch-32 rate (the
//! dynamic batching), and a cache hit against computing (the database cache the server
//! uses, and the memory cache).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use zeroscale_core::config::{ChatConfig, DatabaseConfig, ModelsConfig, SqliteConfig};
use zeroscale_core::models::{EmbeddingProvider, EmbeddingRequest};
use zeroscale_db::Db;
use zeroscale_db::domain::Domain;
use zeroscale_models::cache::MemoryEmbeddingCache;
use zeroscale_models::local::LocalEmbeddings;
use zeroscale_models::router::Router;

use crate::measure::{Figure, Goal, Plan, Stats, compare};

const MODEL: &str = "all-MiniLM-L6-v2";
const CHUNK: usize = 32;
/// Concurrent single-sentence clients.
const CLIENTS: usize = 16;
const PEER_SCRIPT: &str = include_str!("../peers/embeddings.py");

/// Words of everyday English prose, so sentences tokenise like real text.
const WORDS: &[&str] = &[
    "the",
    "a",
    "of",
    "to",
    "and",
    "in",
    "is",
    "for",
    "that",
    "with",
    "on",
    "as",
    "was",
    "by",
    "it",
    "from",
    "at",
    "this",
    "be",
    "are",
    "have",
    "an",
    "which",
    "or",
    "their",
    "has",
    "more",
    "after",
    "first",
    "new",
    "other",
    "some",
    "people",
    "time",
    "years",
    "city",
    "water",
    "system",
    "government",
    "company",
    "market",
    "energy",
    "research",
    "music",
    "history",
    "children",
    "school",
    "family",
    "house",
    "river",
    "mountain",
    "village",
    "morning",
    "evening",
    "weather",
    "garden",
    "library",
    "station",
    "hospital",
    "kitchen",
    "window",
    "question",
    "answer",
    "problem",
    "solution",
    "language",
    "computer",
    "network",
    "database",
    "storage",
    "message",
    "customer",
    "payment",
    "invoice",
    "delivery",
    "warehouse",
    "engineer",
    "teacher",
    "doctor",
    "student",
    "traveller",
    "neighbour",
    "quickly",
    "slowly",
    "carefully",
    "recently",
    "usually",
    "finally",
    "together",
    "almost",
    "important",
    "beautiful",
    "difficult",
    "available",
    "expensive",
    "comfortable",
    "reliable",
    "unexpected",
    "international",
    "environmental",
    "independent",
    "ancient",
    "modern",
    "bright",
    "quiet",
    "heavy",
    "simple",
    "strong",
    "green",
    "small",
    "large",
    "builds",
    "writes",
    "reads",
    "carries",
    "explains",
    "remembers",
    "discovers",
    "measures",
    "improves",
    "delivers",
    "protects",
    "collects",
    "replaces",
    "describes",
    "connects",
    "walked",
    "opened",
    "changed",
    "followed",
    "started",
    "finished",
    "travelled",
    "announced",
    "organised",
    "published",
    "reported",
    "suggested",
    "considered",
    "between",
    "through",
    "during",
    "without",
    "against",
    "before",
    "under",
    "around",
    "because",
    "although",
    "while",
    "whether",
    "however",
    "perhaps",
    "yesterday",
    "tomorrow",
];

/// `count` deterministic sentences of 8 to 24 words.
pub(crate) fn sentences(count: usize, seed: u64) -> Vec<String> {
    let mut state = seed;
    let mut next = move |bound: usize| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) as usize) % bound
    };
    (0..count)
        .map(|_| {
            let words = 8 + next(17);
            let mut s: Vec<String> = (0..words)
                .map(|_| WORDS[next(WORDS.len())].to_owned())
                .collect();
            let mut first = s[0].chars();
            if let Some(c) = first.next() {
                s[0] = c.to_uppercase().chain(first).collect();
            }
            format!("{}.", s.join(" "))
        })
        .collect()
}

/// The local model's folder: `ZEROSCALE_TEST_MODEL_DIR` (written by `services up`).
fn model_dir() -> anyhow::Result<Option<PathBuf>> {
    match std::env::var_os("ZEROSCALE_TEST_MODEL_DIR") {
        Some(dir) => Ok(Some(PathBuf::from(dir))),
        None => {
            anyhow::ensure!(
                std::env::var_os("CI").is_none(),
                "ZEROSCALE_TEST_MODEL_DIR is not set: run `cargo xtask bench`, which installs the model"
            );
            eprintln!("embeddings: no ZEROSCALE_TEST_MODEL_DIR, skipped");
            Ok(None)
        }
    }
}

/// A Python process running the peers; one JSON command per line, one JSON answer.
struct Peer {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
}

impl Peer {
    fn start(venv: &Path, scratch: &Path, model: &Path, threads: usize) -> anyhow::Result<Peer> {
        let script = scratch.join("embeddings_peer.py");
        std::fs::write(&script, PEER_SCRIPT)?;
        let mut child = Command::new(venv.join("bin").join("python"))
            .arg(&script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .env("OMP_NUM_THREADS", threads.to_string())
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start the peers in {}: {e}", venv.display()))?;
        let input = child.stdin.take().expect("piped");
        let output = BufReader::new(child.stdout.take().expect("piped"));
        let mut peer = Peer {
            child,
            input,
            output,
        };
        peer.call(&json!({
            "op": "load",
            "model_dir": model,
            "onnx": venv.join("minilm.onnx"),
            "threads": threads,
        }))?;
        Ok(peer)
    }

    fn call(&mut self, command: &Value) -> anyhow::Result<Value> {
        writeln!(self.input, "{command}")?;
        self.input.flush()?;
        let mut line = String::new();
        self.output.read_line(&mut line)?;
        anyhow::ensure!(!line.is_empty(), "the embeddings peer exited");
        let answer: Value = serde_json::from_str(&line)?;
        if let Some(error) = answer.get("error") {
            anyhow::bail!("the embeddings peer failed: {error}");
        }
        Ok(answer)
    }

    /// Seconds `engine` (`st` or `ort`) took to embed `chunks`, one call per chunk.
    fn batches(&mut self, engine: &str, chunks: &[Vec<String>]) -> Duration {
        let answer = self.call(&json!({"op": "batches", "engine": engine, "chunks": chunks}));
        Duration::from_secs_f64(
            answer.map_or(f64::NAN, |a| a["seconds"].as_f64().unwrap_or(f64::NAN)),
        )
    }

    /// The median latency of `engine` embedding each of `texts` alone.
    fn single(&mut self, engine: &str, texts: &[String]) -> Duration {
        let answer = self.call(&json!({"op": "singles", "engine": engine, "texts": texts}));
        let latencies: Vec<f64> = answer
            .ok()
            .and_then(|a| serde_json::from_value(a["seconds"].clone()).ok())
            .unwrap_or_default();
        Duration::from_secs_f64(Stats::of(&latencies).median)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn ours_batches(model: &LocalEmbeddings, chunks: &[Vec<String>]) -> Duration {
    let started = Instant::now();
    for chunk in chunks {
        let request = EmbeddingRequest::new(MODEL, chunk.clone());
        model.embed(request).await.expect("local embeddings");
    }
    started.elapsed()
}

async fn ours_single(model: &LocalEmbeddings, texts: &[String]) -> Duration {
    let mut latencies = Vec::with_capacity(texts.len());
    for text in texts {
        let request = EmbeddingRequest::new(MODEL, vec![text.clone()]);
        let started = Instant::now();
        model.embed(request).await.expect("local embeddings");
        latencies.push(started.elapsed().as_secs_f64());
    }
    Duration::from_secs_f64(Stats::of(&latencies).median)
}

/// `CLIENTS` tasks, each embedding its share of `texts` one sentence per request.
async fn ours_concurrent(model: &Arc<LocalEmbeddings>, texts: &[String]) -> Duration {
    let started = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let model = Arc::clone(model);
            let mine: Vec<String> = texts
                .iter()
                .skip(client)
                .step_by(CLIENTS)
                .cloned()
                .collect();
            tokio::spawn(async move {
                for text in mine {
                    let request = EmbeddingRequest::new(MODEL, vec![text]);
                    model.embed(request).await.expect("local embeddings");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("client task");
    }
    started.elapsed()
}

fn threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
}

pub(crate) async fn run(plan: Plan, dir: &Path) -> anyhow::Result<Vec<Figure>> {
    let Some(model_dir) = model_dir()? else {
        return Ok(Vec::new());
    };
    std::fs::create_dir_all(dir)?;
    let count = plan.size(1_024, 128);
    let texts = sentences(count, 7);
    let chunks: Vec<Vec<String>> = texts.chunks(CHUNK).map(<[String]>::to_vec).collect();
    let singles = &texts[..plan.size(64, 16)];
    let model = Arc::new(LocalEmbeddings::new("bench", MODEL, &model_dir, CHUNK));
    model.load().await?;
    let threads = threads();
    let peer = match std::env::var_os("ZEROSCALE_BENCH_PEERS") {
        Some(venv) => Some(Peer::start(Path::new(&venv), dir, &model_dir, threads)?),
        None => {
            eprintln!(
                "embeddings: no peers (run `cargo xtask bench --peers embeddings` to compare with \
                 sentence-transformers and ONNX Runtime)"
            );
            None
        }
    };
    let peer = peer.map(std::sync::Mutex::new);
    let mut figures = Vec::new();
    let batch_name = format!("{count} sentences in chunks of {CHUNK}, {threads} threads");
    let single_name = format!("one sentence at a time, p50 of {}", singles.len());
    match &peer {
        Some(peer) => {
            let lock = || peer.lock().unwrap_or_else(|p| p.into_inner());
            for (engine, label, goal) in [
                (
                    "st",
                    "sentence-transformers (PyTorch)",
                    Goal::AtMost { ratio: 1.0 },
                ),
                ("ort", "ONNX Runtime", Goal::Report),
            ] {
                figures.push(
                    compare(
                        plan,
                        "embeddings",
                        format!("{batch_name}: time vs {label}"),
                        label,
                        goal,
                        |_| ours_batches(&model, &chunks),
                        |_| {
                            let d = lock().batches(engine, &chunks);
                            async move { d }
                        },
                    )
                    .await,
                );
            }
            for (engine, label, goal) in [
                ("ort", "ONNX Runtime", Goal::AtMost { ratio: 1.0 }),
                ("st", "sentence-transformers (PyTorch)", Goal::Report),
            ] {
                figures.push(
                    compare(
                        plan,
                        "embeddings",
                        format!("{single_name}: latency vs {label}"),
                        label,
                        goal,
                        |_| ours_single(&model, singles),
                        |_| {
                            let d = lock().single(engine, singles);
                            async move { d }
                        },
                    )
                    .await,
                );
            }
        }
        None => {
            for (name, samples) in [
                (&batch_name, {
                    let mut s = Vec::new();
                    ours_batches(&model, &chunks).await;
                    for _ in 0..plan.rounds {
                        s.push(ours_batches(&model, &chunks).await.as_secs_f64() * 1e3);
                    }
                    s
                }),
                (&single_name, {
                    let mut s = Vec::new();
                    for _ in 0..plan.rounds {
                        s.push(ours_single(&model, singles).await.as_secs_f64() * 1e3);
                    }
                    s
                }),
            ] {
                figures.push(Figure {
                    concern: "embeddings",
                    name: name.clone(),
                    unit: "ms",
                    ours: Stats::of(&samples),
                    theirs: None,
                    against: None,
                    ratio: None,
                    goal: Goal::Report,
                    pass: None,
                    rounds: samples.len(),
                });
            }
        }
    }
    figures.push(
        compare(
            plan,
            "embeddings",
            format!(
                "{count} sentences from {CLIENTS} concurrent clients, one per request: time vs \
                 ours in chunks of {CHUNK} (dynamic batching)"
            ),
            format!("ours, chunks of {CHUNK}"),
            Goal::AtMost { ratio: 1.25 },
            |_| ours_concurrent(&model, &texts),
            |_| ours_batches(&model, &chunks),
        )
        .await,
    );
    figures.extend(cache(plan, dir, &model_dir, &chunks).await?);
    figures.push(over_http(plan, dir, &model_dir, &model, singles).await?);
    Ok(figures)
}

/// One sentence at a time through `POST /v1/embeddings` of a release server on this
/// machine (embedding cache off), against the same sentences in-process: what HTTP, JSON
/// and the router add to a single-sentence request.
async fn over_http(
    plan: Plan,
    dir: &Path,
    model_dir: &Path,
    model: &LocalEmbeddings,
    singles: &[String],
) -> anyhow::Result<Figure> {
    let client = reqwest::Client::new();
    let stage = crate::http::Stage {
        profile: None,
        env: vec![
            (
                "ZEROSCALE_MODELS__PROVIDERS__LOCAL__PATH".into(),
                model_dir.display().to_string(),
            ),
            ("ZEROSCALE_MODELS__CACHE__EMBEDDINGS".into(), "false".into()),
        ],
    };
    let (server, _) = crate::http::start(&dir.join("http"), &client, &stage).await?;
    let token = crate::http::login(&client, &server.base).await?;
    let url = format!("{}/v1/embeddings", server.base);
    let over_http = |_| {
        let (client, url, token) = (client.clone(), url.clone(), token.clone());
        async move {
            let mut latencies = Vec::with_capacity(singles.len());
            for text in singles {
                let started = Instant::now();
                let response = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({"input": text}))
                    .send()
                    .await
                    .expect("POST /v1/embeddings");
                assert!(
                    response.status().is_success(),
                    "POST /v1/embeddings answered {}",
                    response.status()
                );
                response.bytes().await.expect("the response body");
                latencies.push(started.elapsed().as_secs_f64());
            }
            Duration::from_secs_f64(Stats::of(&latencies).median)
        }
    };
    let figure = compare(
        plan,
        "embeddings",
        format!(
            "one sentence over HTTP (POST /v1/embeddings, cache off), p50 of {}: latency vs in-process",
            singles.len()
        ),
        "in-process",
        Goal::Report,
        over_http,
        |_| ours_single(model, singles),
    )
    .await;
    drop(server);
    Ok(figure)
}

/// A cache hit against computing: the same chunks through the router, once with every
/// vector cached, once with the cache off.
async fn cache(
    plan: Plan,
    dir: &Path,
    model_dir: &Path,
    chunks: &[Vec<String>],
) -> anyhow::Result<Vec<Figure>> {
    let config: ModelsConfig = serde_json::from_value(json!({
        "providers": {"local": {"kind": "local", "model": MODEL, "path": model_dir}},
        "registry": {"minilm": {"kind": "embedding", "provider": "local"}},
    }))?;
    let (computing, _) = Router::from_config(&config)?;
    let db = Db::connect(&DatabaseConfig::Sqlite(SqliteConfig {
        path: Some(dir.join("cache.db")),
        ..Default::default()
    }))
    .await?;
    db.migrate_up().await?;
    let domain = Domain::new(db, Default::default(), ChatConfig::default());
    let mut figures = Vec::new();
    for (label, cache) in [
        (
            "the database cache (SQLite)",
            Arc::new(domain.embedding_cache()) as Arc<dyn zeroscale_core::models::EmbeddingCache>,
        ),
        (
            "the memory cache",
            Arc::new(MemoryEmbeddingCache::new(100_000)),
        ),
    ] {
        let (mut cached, _) = Router::from_config(&config)?;
        cached.set_embedding_cache(cache);
        // Fill the cache.
        through(&cached, chunks).await;
        figures.push(
            compare(
                plan,
                "embeddings",
                format!("a cache hit in {label}: time vs computing the vectors"),
                "computing (cache off)",
                Goal::AtMost { ratio: 0.02 },
                |_| through(&cached, chunks),
                |_| through(&computing, chunks),
            )
            .await,
        );
    }
    domain.db().clone().close().await?;
    Ok(figures)
}

async fn through(router: &Router, chunks: &[Vec<String>]) -> Duration {
    let started = Instant::now();
    for chunk in chunks {
        router.embed("minilm", chunk.clone()).await.expect("embed");
    }
    started.elapsed()
}
