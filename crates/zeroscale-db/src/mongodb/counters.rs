//! The rate-limit counters ([`crate::counters::DbCounters`]) on MongoDB: one document per key in `rate_counters` (`_id` = the bounded key, `count`,
//! `window_end` and `blocked_until` as epoch milliseconds, `0` for "not blocked"). Every
//! change is a single-document atomic update, so counts stay exact across instances:
//! - a hit adds to a window still open (`window_end > now`, `$inc`); else restarts an
//!   ended one (`window_end <= now`, `$set`; two instances racing there both match the
//!   filter only once, the loser sees the open window and adds); else inserts the key (a
//!   duplicate key means another instance inserted first: try again).
//! - times are the application's clock (MongoDB has no server clock outside pipeline
//!   updates); keep instances' clocks in sync, as with any time-based limit.

use futures::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};
use mongodb::options::ReturnDocument;
use zeroscale_core::counters::WindowCount;
use zeroscale_core::{Error, Result};

use super::Mongo;
use super::rows::int_of;

const COUNTERS: &str = "rate_counters";

/// How many times a hit or block retries after losing an insert race (each retry finds
/// the document the winner inserted, so one is nearly always enough).
const RACE_RETRIES: usize = 8;

fn now() -> i64 {
    zeroscale_core::domain::now().timestamp_millis()
}

pub(super) fn time(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC)
}

fn number(doc: &Document, field: &str) -> Result<i64> {
    doc.get(field).and_then(int_of).ok_or_else(|| {
        Error::backend(
            "mongodb",
            std::io::Error::other(format!(
                "{COUNTERS}.{field} of `{}` holds {:?}, not a number",
                doc.get("_id").unwrap_or(&Bson::Null),
                doc.get(field)
            )),
        )
    })
}

fn window_count(doc: &Document) -> Result<WindowCount> {
    Ok(WindowCount {
        count: number(doc, "count")?.max(0) as u64,
        resets_at: time(number(doc, "window_end")?),
    })
}

impl Mongo {
    fn counters(&self) -> mongodb::Collection<Document> {
        self.database().collection(COUNTERS)
    }

    /// Adds `n` to `key`'s window (`window_ms` long when it starts); the count after.
    pub(crate) async fn counter_hit(
        &self,
        key: &str,
        n: i64,
        window_ms: i64,
    ) -> Result<WindowCount> {
        for _ in 0..RACE_RETRIES {
            let now = now();
            let open = self
                .counters()
                .find_one_and_update(
                    doc! { "_id": key, "window_end": { "$gt": now } },
                    doc! { "$inc": { "count": n } },
                )
                .return_document(ReturnDocument::After)
                .await
                .map_err(|e| self.map_err(e))?;
            if let Some(doc) = open {
                return window_count(&doc);
            }
            let restarted = self
                .counters()
                .find_one_and_update(
                    doc! { "_id": key, "window_end": { "$lte": now } },
                    doc! { "$set": { "count": n, "window_end": now + window_ms } },
                )
                .return_document(ReturnDocument::After)
                .await
                .map_err(|e| self.map_err(e))?;
            if let Some(doc) = restarted {
                return window_count(&doc);
            }
            let fresh = doc! {
                "_id": key, "count": n, "window_end": now + window_ms, "blocked_until": 0_i64,
            };
            match self.counters().insert_one(&fresh).await {
                Ok(_) => return window_count(&fresh),
                Err(e) => match self.map_err(e) {
                    Error::AlreadyExists { .. } => continue,
                    other => return Err(other),
                },
            }
        }
        Err(Error::conflict(format!(
            "the counter `{key}` kept changing under {RACE_RETRIES} attempts to count a hit"
        )))
    }

    /// `key`'s open window: its count, or 0 when none is open.
    pub(crate) async fn counter_get(&self, key: &str) -> Result<WindowCount> {
        let doc = self
            .counters()
            .find_one(doc! { "_id": key, "window_end": { "$gt": now() } })
            .await
            .map_err(|e| self.map_err(e))?;
        match doc {
            Some(doc) => window_count(&doc),
            None => Ok(WindowCount {
                count: 0,
                resets_at: chrono::Utc::now(),
            }),
        }
    }

    /// Forgets `key` (its count and any block).
    pub(crate) async fn counter_clear(&self, key: &str) -> Result<()> {
        self.counters()
            .delete_one(doc! { "_id": key })
            .await
            .map(|_| ())
            .map_err(|e| self.map_err(e))
    }

    /// Blocks `key` for `duration_ms` from now, unless it is blocked for longer already.
    pub(crate) async fn counter_block(&self, key: &str, duration_ms: i64) -> Result<()> {
        for _ in 0..RACE_RETRIES {
            let now = now();
            let until = now + duration_ms;
            let extended = self
                .counters()
                .update_one(
                    doc! { "_id": key, "blocked_until": { "$lt": until } },
                    doc! { "$set": { "blocked_until": until } },
                )
                .await
                .map_err(|e| self.map_err(e))?;
            if extended.matched_count == 1 {
                return Ok(());
            }
            let exists = self
                .counters()
                .count_documents(doc! { "_id": key })
                .await
                .map_err(|e| self.map_err(e))?;
            if exists > 0 {
                // Blocked until later already.
                return Ok(());
            }
            let fresh =
                doc! { "_id": key, "count": 0_i64, "window_end": now, "blocked_until": until };
            match self.counters().insert_one(fresh).await {
                Ok(_) => return Ok(()),
                Err(e) => match self.map_err(e) {
                    Error::AlreadyExists { .. } => continue,
                    other => return Err(other),
                },
            }
        }
        Err(Error::conflict(format!(
            "the counter `{key}` kept changing under {RACE_RETRIES} attempts to block it"
        )))
    }

    /// How long the longest block among `keys` has left, in milliseconds (0: none).
    pub(crate) async fn counters_blocked(&self, keys: &[String]) -> Result<i64> {
        let now = now();
        let docs: Vec<Document> = self
            .counters()
            .find(doc! { "_id": { "$in": keys }, "blocked_until": { "$gt": now } })
            .await
            .map_err(|e| self.map_err(e))?
            .try_collect()
            .await
            .map_err(|e| self.map_err(e))?;
        let mut longest = 0;
        for doc in &docs {
            longest = longest.max(number(doc, "blocked_until")? - now);
        }
        Ok(longest)
    }

    /// Deletes counters whose window and block have both ended.
    pub(crate) async fn counters_prune(&self) -> Result<()> {
        let now = now();
        self.counters()
            .delete_many(doc! { "window_end": { "$lt": now }, "blocked_until": { "$lt": now } })
            .await
            .map(|_| ())
            .map_err(|e| self.map_err(e))
    }
}
