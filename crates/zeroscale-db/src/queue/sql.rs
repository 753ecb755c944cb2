//! The database queue's statements for both dialects, and decoding its rows.
//!
//! Statements are written once with `?` placeholders and the token `NOW_MS` for the
//! current time in milliseconds since the Unix epoch. On PostgreSQL `NOW_MS` is the
//! server's clock (`now()`, the statement's transaction time) and the placeholders become
//! `$1…`; on SQLite, an embedded engine every process reads on the same machine, it is the
//! process's clock, written in as a number.

use chrono::{DateTime, Utc};
use sea_orm::{DatabaseBackend, QueryResult, Statement, Value};
use zeroscale_core::queue::{JobId, JobOrigin, JobState, JobStatus, Progress};
use zeroscale_core::{Error, Result};

use crate::Dialect;

/// Every column of `queue_jobs` a status needs, in `SELECT` and `RETURNING` lists.
pub(super) const STATUS_COLUMNS: &str = "id, queue, task, payload, state, priority, attempts, \
     max_attempts, run_at, due_at, lease_token, progress, result, last_error, created_at, \
     updated_at, finished_at";

/// The PostgreSQL server's clock in milliseconds.
const PG_NOW_MS: &str = "(EXTRACT(EPOCH FROM now()) * 1000)::bigint";

/// Builds statements for one dialect.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sql {
    pub(crate) dialect: Dialect,
}

impl Sql {
    /// `sql` with its `NOW_MS` and placeholders made concrete for this dialect.
    pub(crate) fn stmt(&self, sql: &str, values: Vec<Value>) -> Statement {
        match self.dialect {
            Dialect::Sqlite => {
                let now = Utc::now().timestamp_millis().to_string();
                Statement::from_sql_and_values(
                    DatabaseBackend::Sqlite,
                    sql.replace("NOW_MS", &now),
                    values,
                )
            }
            Dialect::Postgres => {
                let sql = sql.replace("NOW_MS", PG_NOW_MS);
                let mut out = String::with_capacity(sql.len() + 16);
                let mut n = 0;
                for c in sql.chars() {
                    if c == '?' {
                        n += 1;
                        out.push('$');
                        out.push_str(&n.to_string());
                    } else {
                        out.push(c);
                    }
                }
                Statement::from_sql_and_values(DatabaseBackend::Postgres, out, values)
            }
        }
    }

    /// `?, ?, …` for `n` values.
    pub(crate) fn list(n: usize) -> String {
        vec!["?"; n].join(", ")
    }
}

/// A row the queue cannot read: written by another version, or edited by hand.
fn corrupt(message: String) -> Error {
    Error::backend("database queue", std::io::Error::other(message))
}

fn parse_state(s: &str) -> Result<JobState> {
    JobState::parse(s).ok_or_else(|| {
        corrupt(format!(
            "queue_jobs holds the unknown state `{s}`: was it written by a newer version?"
        ))
    })
}

/// Milliseconds since the epoch as a time.
pub(super) fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// A column of a row, with the column's name in the error.
pub(super) fn get<T: sea_orm::TryGetable>(row: &QueryResult, column: &str) -> Result<T> {
    row.try_get::<T>("", column)
        .map_err(|e| corrupt(format!("queue_jobs.{column}: {e}")))
}

pub(super) fn job_id(s: &str) -> Result<JobId> {
    s.parse()
        .map_err(|_| corrupt(format!("queue_jobs holds the bad job id `{s}`")))
}

fn json<T: serde::de::DeserializeOwned>(column: &str, text: Option<String>) -> Result<Option<T>> {
    text.map(|t| {
        serde_json::from_str(&t)
            .map_err(|e| corrupt(format!("queue_jobs.{column} is not valid JSON: {e}")))
    })
    .transpose()
}

/// A JSON value as the text stored in a column.
pub(super) fn to_text<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value)
        .map_err(|e| Error::invalid_input(format!("not serializable as JSON: {e}")))
}

/// The payload of a row.
pub(super) fn payload(row: &QueryResult) -> Result<serde_json::Value> {
    Ok(json("payload", Some(get::<String>(row, "payload")?))?.unwrap_or_default())
}

/// The `origin` column: NULL for an empty origin.
pub(super) fn origin_text(origin: &JobOrigin) -> Option<String> {
    (!origin.is_empty()).then(|| origin.to_json())
}

/// A row's `origin`. A value that no longer reads as an origin (written by hand) is
/// dropped with a warning rather than holding the job back.
pub(super) fn origin(row: &QueryResult) -> Result<JobOrigin> {
    let text: Option<String> = get(row, "origin")?;
    Ok(match text.as_deref().map(JobOrigin::from_json) {
        Some(Ok(origin)) => origin,
        Some(Err(e)) => {
            tracing::warn!(error = %e, "a queued job's stored origin is ignored");
            JobOrigin::new()
        }
        None => JobOrigin::new(),
    })
}

/// A row of [`STATUS_COLUMNS`] as a status.
pub(super) fn status(row: &QueryResult) -> Result<JobStatus> {
    Ok(JobStatus {
        id: job_id(&get::<String>(row, "id")?)?,
        queue: get(row, "queue")?,
        task: get(row, "task")?,
        state: parse_state(&get::<String>(row, "state")?)?,
        attempts: get::<i32>(row, "attempts")?.max(0) as u32,
        max_attempts: get::<i32>(row, "max_attempts")?.max(0) as u32,
        priority: get(row, "priority")?,
        progress: json::<Progress>("progress", get(row, "progress")?)?,
        result: json("result", get(row, "result")?)?,
        last_error: get(row, "last_error")?,
        created_at: time(get(row, "created_at")?),
        updated_at: time(get(row, "updated_at")?),
        run_at: time(get(row, "run_at")?),
        finished_at: get::<Option<i64>>(row, "finished_at")?.map(time),
    })
}
