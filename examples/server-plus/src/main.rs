//! The full zeroscale server plus one route, one job and one table of your own.
//!
//! `POST /v1/word-counts` (any signed-in user) enqueues the `example.count_words` job on
//! behalf of the caller; the job counts the words of the text and keeps the counts in
//! the app's own table, `example_word_counts` (created by the app's migration, after
//! zeroscale's), and returns them as its result, which the caller reads at
//! `GET /v1/jobs/{id}`; `GET /v1/word-counts/{id}` reads them back from the table.
//! The app has its own name (`wordcount`: env vars `WORDCOUNT_…`, data dir
//! `~/.local/share/wordcount`), its own config section (`[wordcount] max_words`, checked
//! and shown by `wordcount config show` like zeroscale's keys) and its own command
//! (`wordcount top --limit N`: the most frequent words of every count).
//! Everything else (config, backends by stage, `serve`, `worker`, `migrate`, `doctor`,
//! `backup`, `db copy`, …) is zeroscale's, unchanged, and handles the app's table too.

mod migrations;

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa_axum::{router::OpenApiRouter, routes};
use zeroscale_app::http::{ApiError, ApiResult, Caller, Json};
use zeroscale_app::{App, HandlerResult, Job, Services, TaskContext};
use zeroscale_core::queue::NewJob;
use zeroscale_db::escape_hatch::{self, sea_orm};

use sea_orm::sea_query::{Alias, Expr, ExprTrait, OnConflict, Query};
use sea_orm::{ConnectionTrait, Value as SqlValue};

/// The app's own config section, `[wordcount]`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(default)]
struct WordcountConfig {
    /// The most words one `POST /v1/word-counts` may count.
    max_words: usize,
}

impl Default for WordcountConfig {
    fn default() -> Self {
        WordcountConfig { max_words: 10_000 }
    }
}

/// The text to count.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
struct CountWords {
    /// Any text; words are split on whitespace and compared in lower case.
    text: String,
}

/// The job's payload: the text and who asked.
#[derive(Debug, Deserialize, Serialize)]
struct CountFor {
    user_id: String,
    text: String,
}

/// Counts the words of a text in the background.
#[utoipa::path(
    post, path = "/v1/word-counts", tag = "example",
    security(("bearer" = []), ("api_key" = [])),
    request_body = CountWords,
    responses(
        (status = 202, description = "enqueued: read the job at /v1/jobs/{id}"),
        (status = 400, description = "more words than `wordcount.max_words`"),
    )
)]
async fn count_words(
    State(services): State<Services>,
    caller: Caller,
    Json(body): Json<CountWords>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let max = services.app_config::<WordcountConfig>().max_words;
    if body.text.split_whitespace().nth(max).is_some() {
        return Err(ApiError::bad_request(format!(
            "the text has more than {max} words (`wordcount.max_words`)"
        )));
    }
    let user_id = caller.user().id.clone();
    let payload = json!(CountFor {
        user_id: user_id.clone(),
        text: body.text
    });
    let job = NewJob::new("default", WordCount::NAME, payload);
    let status = services.enqueue_for(&user_id, job).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "id": status.id.to_string() })),
    ))
}

/// The counts of a finished `POST /v1/word-counts` job, from the app's table.
#[utoipa::path(
    get, path = "/v1/word-counts/{id}", tag = "example",
    security(("bearer" = []), ("api_key" = [])),
    params(("id" = String, Path, description = "the job's id")),
    responses(
        (status = 200, description = "the counts"),
        (status = 404, description = "no finished count of the caller's"),
    )
)]
async fn get_word_count(
    State(services): State<Services>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let db = services.domain().db();
    let select = Query::select()
        .column(Alias::new("counts"))
        .from(Alias::new("example_word_counts"))
        .and_where(Expr::col(Alias::new("job_id")).eq(id.as_str()))
        .and_where(Expr::col(Alias::new("user_id")).eq(caller.user().id.as_str()))
        .to_owned();
    let row = escape_hatch::connection(db)
        .query_one(&select)
        .await
        .map_err(|e| escape_hatch::map_err(db, e))?
        .ok_or_else(|| ApiError::not_found(format!("no word count {id} of yours")))?;
    let counts: String = row
        .try_get("", "counts")
        .map_err(|e| escape_hatch::map_err(db, e))?;
    Ok(Json(serde_json::from_str(&counts).unwrap_or(Value::Null)))
}

/// The job behind `POST /v1/word-counts`.
struct WordCount;

impl Job for WordCount {
    const NAME: &'static str = "example.count_words";
    type Payload = CountFor;

    async fn run(&self, cx: TaskContext, payload: CountFor) -> HandlerResult {
        let mut counts = BTreeMap::<String, u64>::new();
        for word in payload.text.split_whitespace() {
            *counts.entry(word.to_lowercase()).or_default() += 1;
        }
        let result = json!({ "words": counts.values().sum::<u64>(), "counts": counts });
        // Keyed by the job's id: a second run of the same job changes nothing.
        let insert = Query::insert()
            .into_table(Alias::new("example_word_counts"))
            .columns([
                Alias::new("job_id"),
                Alias::new("user_id"),
                Alias::new("counts"),
            ])
            .values_panic([
                SqlValue::from(cx.job.id.to_string()).into(),
                SqlValue::from(payload.user_id).into(),
                SqlValue::from(result.to_string()).into(),
            ])
            .on_conflict(
                OnConflict::column(Alias::new("job_id"))
                    .do_nothing()
                    .to_owned(),
            )
            .to_owned();
        let db = cx.services.domain().db();
        escape_hatch::connection(db)
            .execute(&insert)
            .await
            .map_err(|e| escape_hatch::map_err(db, e))?;
        Ok(Some(result))
    }
}

/// `wordcount top`: the most frequent words over every finished count.
fn top_command() -> clap::Command {
    clap::Command::new("top")
        .about("Print the most frequent words over every finished count")
        .arg(
            clap::Arg::new("limit")
                .long("limit")
                .value_parser(clap::value_parser!(usize))
                .default_value("10")
                .help("How many words"),
        )
}

async fn top(args: clap::ArgMatches, services: Services) -> anyhow::Result<()> {
    let limit = args.get_one::<usize>("limit").copied().unwrap_or(10);
    let db = services.domain().db();
    let select = Query::select()
        .column(Alias::new("counts"))
        .from(Alias::new("example_word_counts"))
        .to_owned();
    let rows = escape_hatch::connection(db)
        .query_all(&select)
        .await
        .map_err(|e| escape_hatch::map_err(db, e))?;
    let mut totals = BTreeMap::<String, u64>::new();
    for row in rows {
        let counts: String = row
            .try_get("", "counts")
            .map_err(|e| escape_hatch::map_err(db, e))?;
        let counts: Value = serde_json::from_str(&counts)?;
        for (word, n) in counts["counts"].as_object().into_iter().flatten() {
            *totals.entry(word.clone()).or_default() += n.as_u64().unwrap_or(0);
        }
    }
    let mut ranked: Vec<_> = totals.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    for (word, n) in ranked.into_iter().take(limit) {
        println!("{n:>8} {word}");
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    App::new()
        .named("wordcount")
        .config::<WordcountConfig>("wordcount")
        .command(top_command(), top)
        .migrations(migrations::all)
        .routes(|| {
            OpenApiRouter::new()
                .routes(routes!(count_words))
                .routes(routes!(get_word_count))
        })
        .job(WordCount)
        .run()
}
