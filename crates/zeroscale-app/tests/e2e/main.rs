//! The end-to-end suite: the real `zeroscale` binary, a real HTTP client, every route.
//! It is the same suite at every stage; only the config differs. Every section is its own
//! test on its own deployment of its stage (`cargo test --test e2e stage1::files` runs one
//! alone; a failure hides no other):
//!
//! - stage 1: `config/stage1-embedded.toml` (SQLite, local FS, memory queue, local
//!   model, placeholder images);
//! - stage 2: `config/stage2-mvp.toml` (SQLite, S3, the queue in the SQLite file);
//! - stage 3: `config/stage3-growth.toml` (PostgreSQL, S3, Redis, separate worker
//!   processes, embeddings from a second zeroscale instance, images from an
//!   Automatic1111-protocol server);
//! - mixed stages: PostgreSQL + local FS + memory queue; PostgreSQL + local FS +
//!   the queue in PostgreSQL, with a separate worker process; SQLite + local FS + Redis;
//! - stage 4: `config/stage4-scale.toml` (stage 3 with pgvector doing the vector
//!   search, reached through PgBouncer in session mode with its streaming replica
//!   serving the stale-tolerant reads, and a Redis Cluster of 3 masters and 3 replicas
//!   for the queue);
//! - MongoDB + local FS + memory queue.
//!
//! Every stage gets the same test overlay (`overlay.toml`): two image model ids whose
//! default provider is down (`flaky` falls back to the placeholder, `broken` has nothing
//! to fall back to; `sized` is made only in 64x64 and 128x96), prices that make credits
//! visible, and a small upload limit.

#[path = "../common/mod.rs"]
mod common;
mod fake_images;
mod harness;

mod admin_routes;
mod api_keys;
mod bad_requests;
mod chat;
mod embeddings_and_documents;
mod files;
mod health_and_openapi;
mod images;
mod jobs;
mod openai_sdks;
mod prompts;
mod scale_out;
mod users_and_auth;

use harness::{Ctx, Db, Jobs, Stage, Store};

/// One test per section for each stage, each on a fresh deployment.
macro_rules! stages {
    ($($stage:ident: $spec:expr;)*) => {
        $(
            mod $stage {
                use super::*;

                const STAGE: Stage = $spec;

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn health_and_openapi() {
                    let Some(ctx) = Ctx::new(STAGE, "health").await else { return };
                    crate::health_and_openapi::run(&ctx.d).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn users_and_auth() {
                    let Some(ctx) = Ctx::new(STAGE, "users").await else { return };
                    crate::users_and_auth::run(&ctx.d, &ctx.admin).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn api_keys() {
                    let Some(ctx) = Ctx::new(STAGE, "keys").await else { return };
                    let (alice, _) = ctx.users().await;
                    crate::api_keys::run(&ctx.d, &ctx.admin, &alice).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn prompts() {
                    let Some(ctx) = Ctx::new(STAGE, "prompts").await else { return };
                    let (alice, _) = ctx.users().await;
                    crate::prompts::run(&ctx.d, &ctx.admin, &alice).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn chat() {
                    let Some(ctx) = Ctx::new(STAGE, "chat").await else { return };
                    let (alice, bob) = ctx.users().await;
                    crate::chat::run(&ctx.d, &alice, &bob).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn files() {
                    let Some(ctx) = Ctx::new(STAGE, "files").await else { return };
                    let (alice, bob) = ctx.users().await;
                    crate::files::run(&ctx.d, &alice, &bob).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn jobs() {
                    let Some(ctx) = Ctx::new(STAGE, "jobs").await else { return };
                    let (alice, bob) = ctx.users().await;
                    crate::jobs::run(&ctx.d, &alice, &bob).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn embeddings_and_documents() {
                    let Some(ctx) = Ctx::new(STAGE, "documents").await else { return };
                    let (alice, bob) = ctx.users().await;
                    crate::embeddings_and_documents::run(&ctx.d, &alice, &bob).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn images() {
                    let Some(ctx) = Ctx::new(STAGE, "images").await else { return };
                    let (alice, bob) = ctx.users().await;
                    crate::images::run(&ctx.d, &ctx.admin, &alice, &bob).await;
                }

                /// The admin routes report what the jobs and images sections did (job
                /// counts, provider failures), so those run first on this deployment.
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn admin_routes() {
                    let Some(ctx) = Ctx::new(STAGE, "admin").await else { return };
                    let (alice, bob) = ctx.users().await;
                    crate::jobs::run(&ctx.d, &alice, &bob).await;
                    crate::images::run(&ctx.d, &ctx.admin, &alice, &bob).await;
                    crate::admin_routes::run(&ctx.d, &ctx.admin, &alice, &bob).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn openai_sdks() {
                    let Some(ctx) = Ctx::new(STAGE, "openai").await else { return };
                    let (alice, bob) = ctx.users().await;
                    crate::openai_sdks::run(&ctx.d, &ctx.admin, &alice, &bob).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn bad_requests() {
                    let Some(ctx) = Ctx::new(STAGE, "bad").await else { return };
                    let (alice, _) = ctx.users().await;
                    crate::bad_requests::run(&ctx.d, &alice).await;
                }
            }
        )*
    };
}

stages! {
    stage1: Stage {
        name: "stage1",
        profile: Some("stage1-embedded"),
        db: Db::Sqlite,
        store: Store::Local,
        jobs: Jobs::Memory,
        workers: 0,
    };
    stage2: Stage {
        name: "stage2",
        profile: Some("stage2-mvp"),
        db: Db::Sqlite,
        store: Store::S3,
        jobs: Jobs::Database,
        workers: 0,
    };
    // One separate worker process: stage 3 runs `workers.mode = "separate"`.
    stage3: Stage {
        name: "stage3",
        profile: Some("stage3-growth"),
        db: Db::Postgres,
        store: Store::S3,
        jobs: Jobs::Redis,
        workers: 1,
    };
    // Stage 4: vector search inside PostgreSQL (pgvector, HNSW) through PgBouncer (session
    // mode) with a streaming replica for the stale-tolerant reads; the queue, the fan-out
    // and the rate limits on a Redis Cluster, enqueues confirmed by a replica.
    stage4: Stage {
        name: "stage4",
        profile: Some("stage4-scale"),
        db: Db::PgvectorPooledWithReplica,
        store: Store::S3,
        jobs: Jobs::RedisCluster,
        workers: 1,
    };
    mixed_postgres_local_memory: Stage {
        name: "pg-local-mem",
        profile: None,
        db: Db::Postgres,
        store: Store::Local,
        jobs: Jobs::Memory,
        workers: 0,
    };
    // The database queue on PostgreSQL, shared by the server and a separate worker.
    mixed_postgres_local_database: Stage {
        name: "pg-local-dbq",
        profile: None,
        db: Db::Postgres,
        store: Store::Local,
        jobs: Jobs::Database,
        workers: 1,
    };
    // MongoDB with local files and the memory queue (the throttling counters and the
    // upload log in MongoDB too).
    mixed_mongodb_local_memory: Stage {
        name: "mongo-local-mem",
        profile: None,
        db: Db::Mongodb,
        store: Store::Local,
        jobs: Jobs::Memory,
        workers: 0,
    };
    mixed_sqlite_local_redis: Stage {
        name: "sqlite-local-redis",
        profile: None,
        db: Db::Sqlite,
        store: Store::Local,
        jobs: Jobs::Redis,
        workers: 0,
    };
}
