//! MongoDB's schema steps: the collections and indexes the domain needs, made by named,
//! ordered, idempotent steps, each recorded in `zeroscale_schema` once applied (what
//! `zeroscale migrate status|up` show and run). A step only creates what is missing, so
//! running it again, or from two processes at once, changes nothing. A database that
//! records a step this build does not know was written by a newer zeroscale: starting on
//! it is refused.

use mongodb::IndexModel;
use mongodb::bson::{Document, doc};
use mongodb::options::IndexOptions;
use zeroscale_core::{Error, Result};

use super::Mongo;
use crate::migrate::MigrationState;

/// Where applied steps are recorded.
pub(crate) const SCHEMA_COLLECTION: &str = "zeroscale_schema";

/// An index: collection, name, keys, unique.
type IndexSpec = (&'static str, &'static str, Document, bool);

/// Every step, oldest first: its name and the indexes it makes (a collection is created
/// by its first index). No compound index names `_id`: the test server (nx-27017) fails
/// every insert into a collection that has one, so pages sorted by `_id` within a user or
/// session are sorted after the index finds that user's or session's rows.
fn steps() -> Vec<(&'static str, Vec<IndexSpec>)> {
    vec![
        (
            "mongo_20261205_000001_domain",
            vec![
                ("users", "users_username", doc! { "username": 1 }, true),
                // Case-insensitive uniqueness through the normalised name, not a
                // collation index (not every server honours collations).
                (
                    "users",
                    "users_username_key",
                    doc! { "username_key": 1 },
                    true,
                ),
                (
                    "sessions",
                    "sessions_token_hash",
                    doc! { "token_hash": 1 },
                    true,
                ),
                (
                    "sessions",
                    "sessions_expires_at",
                    doc! { "expires_at": 1 },
                    false,
                ),
                (
                    "system_prompts",
                    "system_prompts_name",
                    doc! { "name": 1 },
                    true,
                ),
                ("api_keys", "api_keys_prefix", doc! { "prefix": 1 }, true),
                ("api_keys", "api_keys_user", doc! { "user_id": 1 }, false),
                (
                    "api_keys",
                    "api_keys_prompt",
                    doc! { "system_prompt_id": 1 },
                    false,
                ),
                (
                    "chat_messages",
                    "chat_messages_session",
                    doc! { "session_id": 1 },
                    false,
                ),
                (
                    "generations",
                    "generations_user",
                    doc! { "user_id": 1 },
                    false,
                ),
                (
                    "generations",
                    "generations_status",
                    doc! { "status": 1, "created_at": 1 },
                    false,
                ),
                (
                    "documents",
                    "documents_collection",
                    doc! { "collection": 1 },
                    false,
                ),
                (
                    "embedding_cache",
                    "embedding_cache_created",
                    doc! { "created_at": 1 },
                    false,
                ),
                ("user_jobs", "user_jobs_user", doc! { "user_id": 1 }, false),
            ],
        ),
        (
            // What the app keeps beside the domain: multipart uploads in flight, and the
            // throttling counters when the queue is not on Redis.
            "mongo_20261206_000002_uploads_counters",
            vec![
                (
                    "storage_uploads",
                    "storage_uploads_id",
                    doc! { "store": 1, "upload_id": 1 },
                    true,
                ),
                (
                    "storage_uploads",
                    "storage_uploads_started",
                    doc! { "store": 1, "started_at": 1 },
                    false,
                ),
                (
                    "rate_counters",
                    "rate_counters_window_end",
                    doc! { "window_end": 1 },
                    false,
                ),
            ],
        ),
    ]
}

impl Mongo {
    async fn applied_steps(&self) -> Result<Vec<String>> {
        use futures::TryStreamExt;
        let docs: Vec<Document> = self
            .database()
            .collection::<Document>(SCHEMA_COLLECTION)
            .find(doc! {})
            .await
            .map_err(|e| self.map_err(e))?
            .try_collect()
            .await
            .map_err(|e| self.map_err(e))?;
        Ok(docs
            .iter()
            .filter_map(|d| d.get_str("_id").ok().map(str::to_owned))
            .collect())
    }

    /// Every step, oldest first, with whether it is applied. A recorded step this build
    /// does not know is an error: the database was written by a newer zeroscale.
    pub(crate) async fn schema_status(&self) -> Result<Vec<MigrationState>> {
        let applied = self.applied_steps().await?;
        let known: Vec<&str> = steps().iter().map(|(name, _)| *name).collect();
        if let Some(unknown) = applied.iter().find(|a| !known.contains(&a.as_str())) {
            return Err(Error::config(
                "database.url",
                format!(
                    "the MongoDB database at {} has schema step `{unknown}`, which this \
                     zeroscale does not know: it was written by a newer version. Run that \
                     version (or newer) against it, or restore a backup taken before the \
                     upgrade",
                    self.location()
                ),
            ));
        }
        Ok(known
            .into_iter()
            .map(|name| MigrationState {
                name: name.to_owned(),
                applied: applied.iter().any(|a| a == name),
            })
            .collect())
    }

    /// Applies the pending steps, oldest first; returns how many.
    pub(crate) async fn schema_up(&self) -> Result<usize> {
        let status = self.schema_status().await?;
        let mut applied = 0;
        for (name, indexes) in steps() {
            if status.iter().any(|s| s.name == name && s.applied) {
                continue;
            }
            for (collection, index, keys, unique) in indexes {
                let model = IndexModel::builder()
                    .keys(keys)
                    .options(
                        IndexOptions::builder()
                            .name(index.to_owned())
                            .unique(unique)
                            .build(),
                    )
                    .build();
                self.database()
                    .collection::<Document>(collection)
                    .create_index(model)
                    .await
                    .map_err(|e| self.map_err(e))?;
            }
            self.database()
                .collection::<Document>(SCHEMA_COLLECTION)
                .update_one(
                    doc! { "_id": name },
                    doc! { "$setOnInsert": { "applied_at": super::date(super::now_ms()) } },
                )
                .upsert(true)
                .await
                .map_err(|e| self.map_err(e))?;
            applied += 1;
        }
        Ok(applied)
    }

    /// Drops every collection the steps made, and the record of them, then applies every
    /// step. Destroys all data.
    pub(crate) async fn schema_fresh(&self) -> Result<()> {
        let mut collections: Vec<&str> = steps()
            .iter()
            .flat_map(|(_, indexes)| indexes.iter().map(|(c, ..)| *c))
            .collect();
        collections.push(SCHEMA_COLLECTION);
        collections.dedup();
        for collection in collections {
            self.database()
                .collection::<Document>(collection)
                .drop()
                .await
                .map_err(|e| self.map_err(e))?;
        }
        self.schema_up().await.map(|_| ())
    }
}
