//! Dynamic batching: requests from many callers share forward passes. One worker thread
//! per loaded model takes the queued requests, up to `max_batch` texts, runs them as one
//! batch and hands each caller its own vectors.
//!
//! The worker waits for more requests only when it has seen concurrency: if its last
//! batch held several requests, it waits up to `window` for as many to arrive again (or
//! for `max_batch` texts). A lone caller never waits. The queue is bounded (`max_queue`
//! texts); past it a request fails at once as overloaded (503 with `Retry-After`), so a
//! flood cannot grow memory or latency without bound.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use zeroscale_core::{Error, Result};

/// How the batcher runs; see the module docs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchOptions {
    /// Threads that compute a batch (0: one per CPU).
    pub(crate) threads: usize,
    pub(crate) max_batch: usize,
    pub(crate) window: Duration,
    pub(crate) max_queue: usize,
}

/// One text's vector and its token count.
pub(crate) type Embedded = (Vec<f32>, u64);

/// What runs a batch: texts in, one [`Embedded`] per text out, in order.
pub(crate) type RunBatch = dyn Fn(&[String]) -> Result<Vec<Embedded>> + Send + Sync;

struct Job {
    texts: Vec<String>,
    reply: oneshot::Sender<Result<Vec<Embedded>>>,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// Texts in `jobs`.
    texts: usize,
    closed: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The handle callers submit to; dropping it stops the worker once the queue is empty.
pub(crate) struct Batcher {
    shared: Arc<Shared>,
    options: BatchOptions,
    /// The time one text takes, for `Retry-After`: an estimate, updated by the worker.
    per_text: Arc<Mutex<Duration>>,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Batcher {
    /// Starts the worker thread, which calls `run` for each batch.
    pub(crate) fn start(options: BatchOptions, run: Arc<RunBatch>) -> Result<Batcher> {
        let shared = Arc::new(Shared {
            queue: Mutex::default(),
            ready: Condvar::new(),
        });
        let per_text = Arc::new(Mutex::new(Duration::from_millis(5)));
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(options.threads)
            .thread_name(|i| format!("zeroscale-embed-{i}"))
            .build()
            .map_err(|e| Error::unavailable_from("cannot start the embedding threads", e))?;
        let worker = Worker {
            shared: Arc::clone(&shared),
            options,
            run,
            per_text: Arc::clone(&per_text),
            pool,
        };
        std::thread::Builder::new()
            .name("zeroscale-embed".to_owned())
            .spawn(move || worker.run())
            .map_err(|e| Error::unavailable_from("cannot start the embedding worker", e))?;
        Ok(Batcher {
            shared,
            options,
            per_text,
        })
    }

    /// Embeds `texts` in a batch with whatever else is queued.
    pub(crate) async fn embed(&self, texts: Vec<String>) -> Result<Vec<Embedded>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        {
            let mut queue = self.shared.lock();
            // One request larger than the whole queue is still taken when the queue is
            // empty: it is split into batches by the worker.
            if queue.texts > 0 && queue.texts + texts.len() > self.options.max_queue {
                let per_text = *self.per_text.lock().unwrap_or_else(|p| p.into_inner());
                let wait = per_text.saturating_mul(queue.texts as u32);
                return Err(Error::overloaded(
                    format!(
                        "the local model has {} texts queued (models.providers.<name>.max_queue \
                         is {}); retry shortly or send smaller requests",
                        queue.texts, self.options.max_queue
                    ),
                    wait.max(Duration::from_secs(1)),
                ));
            }
            queue.texts += texts.len();
            queue.jobs.push_back(Job { texts, reply });
        }
        self.shared.ready.notify_one();
        answer.await.map_err(|_| {
            Error::unavailable("the embedding worker stopped before answering".to_owned())
        })?
    }
}

impl Drop for Batcher {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.ready.notify_all();
    }
}

struct Worker {
    shared: Arc<Shared>,
    options: BatchOptions,
    run: Arc<RunBatch>,
    per_text: Arc<Mutex<Duration>>,
    /// The threads a batch runs on: inside the pool (`install`), the encoder runs every
    /// layer on all of them at once, as lanes (`lanes.rs`).
    pool: rayon::ThreadPool,
}

impl Worker {
    fn run(self) {
        let mut last_jobs = 1;
        loop {
            let Some(jobs) = self.next(last_jobs) else {
                return;
            };
            last_jobs = jobs.len();
            let started = Instant::now();
            let texts: Vec<String> = jobs.iter().flat_map(|j| j.texts.iter().cloned()).collect();
            let count = texts.len();
            match self.pool.install(|| (self.run)(&texts)) {
                Ok(mut embedded) if embedded.len() == count => {
                    for job in jobs.into_iter().rev() {
                        let mine = embedded.split_off(embedded.len() - job.texts.len());
                        let _ = job.reply.send(Ok(mine));
                    }
                }
                Err(_) if jobs.len() > 1 => {
                    // Someone's text failed the batch: run each request alone so only
                    // its own caller sees the error.
                    for job in jobs {
                        let _ = job.reply.send(self.pool.install(|| (self.run)(&job.texts)));
                    }
                }
                Err(e) => {
                    // A batch of one request: its caller gets the error as it is.
                    if let Some(job) = jobs.into_iter().next() {
                        let _ = job.reply.send(Err(e));
                    }
                }
                Ok(embedded) => {
                    for job in jobs {
                        let _ = job.reply.send(Err(Error::backend(
                            super::BACKEND,
                            format!(
                                "a batch of {count} texts returned {} vectors",
                                embedded.len()
                            ),
                        )));
                    }
                }
            }
            let per_text = started.elapsed() / count.max(1) as u32;
            *self.per_text.lock().unwrap_or_else(|p| p.into_inner()) = per_text;
        }
    }

    /// The next batch: waits for a request, then (when the last batch had several) up to
    /// the window for as many requests as last time. `None` once closed and drained.
    fn next(&self, last_jobs: usize) -> Option<Vec<Job>> {
        let mut queue = self.shared.lock();
        while queue.jobs.is_empty() {
            if queue.closed {
                return None;
            }
            queue = self
                .shared
                .ready
                .wait(queue)
                .unwrap_or_else(|p| p.into_inner());
        }
        if last_jobs > 1 {
            let deadline = Instant::now() + self.options.window;
            while queue.jobs.len() < last_jobs
                && queue.texts < self.options.max_batch
                && !queue.closed
            {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                queue = self
                    .shared
                    .ready
                    .wait_timeout(queue, deadline - now)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        }
        let mut jobs = Vec::new();
        let mut texts = 0;
        while let Some(job) = queue.jobs.front() {
            if !jobs.is_empty() && texts + job.texts.len() > self.options.max_batch {
                break;
            }
            texts += job.texts.len();
            jobs.extend(queue.jobs.pop_front());
        }
        queue.texts -= texts;
        Some(jobs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batcher whose model returns each text's length, after `delay`, and records the
    /// size of every batch; a text "bad" fails its batch.
    fn batcher(options: BatchOptions, delay: Duration) -> (Batcher, Arc<Mutex<Vec<usize>>>) {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&sizes);
        let run: Arc<RunBatch> = Arc::new(move |texts: &[String]| {
            seen.lock().unwrap().push(texts.len());
            std::thread::sleep(delay);
            if texts.iter().any(|t| t == "bad") {
                return Err(Error::invalid_input("bad text"));
            }
            Ok(texts
                .iter()
                .map(|t| (vec![t.len() as f32], t.len() as u64))
                .collect())
        });
        (Batcher::start(options, run).unwrap(), sizes)
    }

    fn options() -> BatchOptions {
        BatchOptions {
            threads: 1,
            max_batch: 32,
            window: Duration::from_millis(20),
            max_queue: 1024,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_callers_share_batches_and_get_their_own_answers() {
        let (b, sizes) = batcher(options(), Duration::from_millis(5));
        let b = Arc::new(b);
        let mut tasks = Vec::new();
        for client in 0..8 {
            let b = Arc::clone(&b);
            tasks.push(tokio::spawn(async move {
                for round in 0..10 {
                    let text = "x".repeat(1 + client + round);
                    let got = b.embed(vec![text.clone()]).await.unwrap();
                    assert_eq!(got, vec![(vec![text.len() as f32], text.len() as u64)]);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let sizes = sizes.lock().unwrap().clone();
        assert_eq!(sizes.iter().sum::<usize>(), 80, "{sizes:?}");
        assert!(
            sizes.len() <= 40,
            "80 requests from 8 concurrent callers ran in {} batches: {sizes:?}",
            sizes.len()
        );
    }

    #[tokio::test]
    async fn a_lone_caller_does_not_wait_for_the_window() {
        let (b, _) = batcher(
            BatchOptions {
                window: Duration::from_secs(5),
                ..options()
            },
            Duration::ZERO,
        );
        let started = Instant::now();
        for _ in 0..3 {
            b.embed(vec!["one".into()]).await.unwrap();
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_bad_text_fails_only_its_own_request() {
        let (b, _) = batcher(options(), Duration::from_millis(30));
        let b = Arc::new(b);
        // The first request keeps the worker busy so the next two queue and batch together.
        let first = tokio::spawn({
            let b = Arc::clone(&b);
            async move { b.embed(vec!["first".into()]).await }
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        let bad = tokio::spawn({
            let b = Arc::clone(&b);
            async move { b.embed(vec!["bad".into()]).await }
        });
        let good = tokio::spawn({
            let b = Arc::clone(&b);
            async move { b.embed(vec!["good".into()]).await }
        });
        assert!(first.await.unwrap().is_ok());
        let err = bad.await.unwrap().unwrap_err();
        assert!(matches!(err, Error::InvalidInput { .. }), "{err}");
        assert_eq!(good.await.unwrap().unwrap(), vec![(vec![4.0], 4)]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_full_queue_refuses_at_once_with_a_retry_after() {
        let (b, _) = batcher(
            BatchOptions {
                max_batch: 1,
                max_queue: 2,
                ..options()
            },
            Duration::from_millis(200),
        );
        let b = Arc::new(b);
        let mut running = Vec::new();
        for _ in 0..3 {
            let b = Arc::clone(&b);
            running.push(tokio::spawn(async move { b.embed(vec!["t".into()]).await }));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // One is being computed, two wait: the queue is full.
        let started = Instant::now();
        let err = b.embed(vec!["more".into()]).await.unwrap_err();
        assert!(
            started.elapsed() < Duration::from_millis(100),
            "refused at once"
        );
        assert!(err.is_overloaded(), "{err}");
        assert!(
            err.retry_after()
                .is_some_and(|d| d >= Duration::from_secs(1))
        );
        let public = zeroscale_core::error::PublicError::from(&err);
        assert_eq!((public.status, public.retry_after.is_some()), (503, true));
        for r in running {
            assert!(
                r.await.unwrap().is_ok(),
                "the queued requests are still served"
            );
        }
    }
}
