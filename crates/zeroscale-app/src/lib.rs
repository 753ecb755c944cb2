//! The zeroscale server as a library: the HTTP API, the worker and the command line,
//! wired from config, which your crate extends with its own routes and background jobs.
//!
//! The `zeroscale` binary is this library with nothing added:
//!
//! ```no_run
//! fn main() -> std::process::ExitCode {
//!     zeroscale_app::App::new().run()
//! }
//! ```
//!
//! Your app adds to it ([`App::routes`], [`App::job`], [`App::on_start`]) and runs the
//! same command line (`serve`, `worker`, `migrate`, `doctor`, `config show`, …): see
//! `docs/compose.md` and `examples/server-plus`.
//!
//! - [`App`]: the app definition and [`App::run`], the whole command line in one call.
//! - [`Job`] and [`TaskContext`]: a typed background job and what it runs with.
//! - [`Services`]: the connected backends (database and domain services, storage, queue,
//!   models) that handlers and jobs use.
//! - [`Backends`]: every concern opened from one config, for an app of the crates alone.
//! - [`http`]: the extractors and error type for your handlers ([`http::Caller`],
//!   [`http::Admin`], [`http::ApiError`]).
//!
//! # Feature flags
//!
//! Every backend is compiled in by default, so a config change alone swaps a backend.
//!
//! | feature | what it enables | default |
//! |---|---|---|
//! | `sqlite` | SQLite database | yes |
//! | `postgres` | PostgreSQL database | yes |
//! | `pgvector` | vector search through pgvector where the server has it | yes |
//! | `local-storage` | local-folder storage | yes |
//! | `s3` | S3 and R2 storage | yes |
//! | `azure` | Azure Blob storage | yes |
//! | `redis` | Redis job queue | yes |
//! | `database-queue` | the job queue in the app's database | yes |
//! | `local-models` | local embedding model | yes |
//! | `remote-models` | remote model APIs | yes |

mod admin_panel;
mod api;
mod app;
mod auth_sync;
mod backends;
mod backup_cmd;
mod checks;
mod cli;
mod doctor;
mod headers;
mod jobs;
mod limits;
mod logging;
mod metrics;
mod migrate;
mod models_cmd;
mod owned;
mod read_your_writes;
mod request_id;
mod serve;
mod stage_cmd;
mod storage_cmd;
mod tasks;
mod telemetry;
mod throttle;
mod traffic;
mod users;
mod wiring;
mod worker;

pub use app::{App, Job, TaskContext};
pub use backends::Backends;
pub use wiring::Services;
pub use zeroscale_queue::worker::{HandlerResult, JobContext};

/// What your HTTP handlers use: who is calling, and errors as zeroscale's JSON error body.
///
/// Handlers take [`Services`] as their state (`State<Services>`), and are registered
/// with `utoipa_axum::routes!` on a `utoipa_axum::router::OpenApiRouter<Services>` so they
/// appear in `/openapi.json` (your crate depends on `axum`, `utoipa` and `utoipa-axum` at
/// the versions this crate uses: their macros name them). Declare `security(("bearer" = []), ("api_key" = []))` on a
/// route that takes [`Caller`](crate::http::Caller) or [`Admin`](crate::http::Admin), so the document says it needs credentials.
pub mod http {
    pub use crate::api::auth::{Admin, Caller};
    pub use crate::api::error::{ApiError, ApiResult, ErrorBody, Json, Query};
}

/// The README's examples, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
