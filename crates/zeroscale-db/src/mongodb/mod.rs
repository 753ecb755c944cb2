//! MongoDB (feature `mongodb`), on the official async driver: the domain's rows as
//! documents in collections named like the SQL tables, with the row's primary key as a
//! string `_id`.
//!
//! - Ids stay the strings the API has on every engine. A document of ours whose `_id` is
//!   an ObjectId (written by another tool) is read with the ObjectId's hex as its id, and
//!   found by that hex.
//! - Times are BSON dates, which hold milliseconds: a value is cut to the millisecond
//!   when it is written, and read back as written.
//! - Collections and indexes are made by versioned schema steps ([`schema`]), recorded in
//!   `zeroscale_schema`, shown and run by `zeroscale migrate status|up`.
//! - Multi-document transactions are used where the server has them (a replica set or a
//!   sharded cluster; `database.transactions`); otherwise every write that spans two
//!   documents takes the compensating path its service documents.

pub(crate) mod counters;
pub(crate) mod credits;
pub(crate) mod documents;
pub(crate) mod rows;
pub(crate) mod schema;
pub(crate) mod uploads;

use futures::TryStreamExt;
use futures::future::BoxFuture;
use mongodb::bson::{Bson, Document, doc, oid::ObjectId};
use mongodb::options::{ClientOptions, ReturnDocument};
use mongodb::{Client, ClientSession, Collection, Database};
use zeroscale_core::config::{DatabaseConfig, MongodbConfig, MongodbTransactions};
use zeroscale_core::{Error, Result};

use crate::Db;
use rows::Row;

/// The database used when the URL names none.
pub(crate) const DEFAULT_DATABASE: &str = "zeroscale";

/// A connected MongoDB database.
pub(crate) struct Mongo {
    client: Client,
    db: Database,
    location: String,
    transactions: bool,
    server_version: String,
}

impl std::fmt::Debug for Mongo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mongo")
            .field("location", &self.location)
            .field("transactions", &self.transactions)
            .finish_non_exhaustive()
    }
}

/// The registry's entry point.
pub(crate) fn connect_config(config: &DatabaseConfig) -> BoxFuture<'_, Result<Db>> {
    Box::pin(async move {
        let DatabaseConfig::Mongodb(c) = config else {
            return Err(Error::config("database.kind", "not a MongoDB config"));
        };
        Ok(Db::from_mongo(Mongo::connect(c).await?))
    })
}

impl Mongo {
    /// Parses the URL, connects and proves the server answers.
    pub(crate) async fn connect(config: &MongodbConfig) -> Result<Mongo> {
        let url = config.url.expose();
        if url.is_empty() {
            return Err(Error::config(
                "database.url",
                "MongoDB needs a URL: set `database.url` or `DATABASE_URL` to \
                 `mongodb://host:port/database`",
            ));
        }
        let shown = zeroscale_core::redacted_url(url);
        let mut options = ClientOptions::parse(url).await.map_err(|e| {
            Error::config(
                "database.url",
                format!("`{shown}` is not a MongoDB URL the driver accepts: {e}"),
            )
        })?;
        options.app_name = Some("zeroscale".to_owned());
        options.max_pool_size = Some(config.max_connections.max(1));
        let timeout = std::time::Duration::from_secs(config.connect_timeout_secs.max(1));
        options.server_selection_timeout = Some(timeout);
        options.connect_timeout = Some(timeout);
        let name = options
            .default_database
            .clone()
            .unwrap_or_else(|| DEFAULT_DATABASE.to_owned());
        let hosts: Vec<String> = options.hosts.iter().map(ToString::to_string).collect();
        let location = format!("{}/{name}", hosts.join(","));
        let client = Client::with_options(options).map_err(|e| {
            Error::config(
                "database.url",
                format!("`{shown}`: the driver refused its options: {e}"),
            )
        })?;
        let db = client.database(&name);
        let hello = db.run_command(doc! { "hello": 1 }).await.map_err(|e| {
            Error::unavailable_from(
                format!(
                    "the MongoDB server at {} does not answer: check that it runs, that the \
                     host and port are right and reachable from here, and the URL's \
                     credentials and TLS options",
                    hosts.join(",")
                ),
                e,
            )
        })?;
        let replicated =
            hello.get_str("setName").is_ok() || hello.get_str("msg").is_ok_and(|m| m == "isdbgrid");
        let server_version = db
            .run_command(doc! { "buildInfo": 1 })
            .await
            .ok()
            .and_then(|b| b.get_str("version").ok().map(str::to_owned))
            .unwrap_or_else(|| "unknown".to_owned());
        let transactions = match config.transactions {
            MongodbTransactions::Auto => replicated,
            MongodbTransactions::On => true,
            MongodbTransactions::Off => false,
        };
        Ok(Mongo {
            client,
            db,
            location,
            transactions,
            server_version,
        })
    }

    /// `host:port/database`, without credentials.
    pub(crate) fn location(&self) -> &str {
        &self.location
    }

    /// Whether multi-document writes run in a transaction.
    pub(crate) fn transactions(&self) -> bool {
        self.transactions
    }

    /// The server's version, as `buildInfo` reports it.
    pub(crate) fn server_version(&self) -> &str {
        &self.server_version
    }

    /// `ping`: the server answers.
    pub(crate) async fn ping(&self) -> Result<()> {
        self.db
            .run_command(doc! { "ping": 1 })
            .await
            .map_err(|e| self.unavailable(e))?;
        Ok(())
    }

    /// Closes the driver's pools.
    pub(crate) async fn close(&self) {
        self.client.clone().shutdown().await;
    }

    /// The database.
    pub(crate) fn database(&self) -> &Database {
        &self.db
    }

    fn unavailable(&self, e: mongodb::error::Error) -> Error {
        Error::unavailable_from(
            format!("the MongoDB database at {} does not answer", self.location),
            e,
        )
    }

    /// A driver error as core's error: a duplicate key is `already_exists`, a server that
    /// cannot be reached or a transaction the server rolled back whole
    /// (`TransientTransactionError`) `unavailable`, anything else a backend error.
    pub(crate) fn map_err(&self, e: mongodb::error::Error) -> Error {
        let mapped = self.map_kind(e);
        crate::metrics::count_error(&mapped);
        mapped
    }

    fn map_kind(&self, e: mongodb::error::Error) -> Error {
        use mongodb::error::{ErrorKind, TRANSIENT_TRANSACTION_ERROR, WriteFailure};
        if e.contains_label(TRANSIENT_TRANSACTION_ERROR) {
            return Error::unavailable_from(
                format!(
                    "MongoDB at {} rolled a transaction back (a write conflict or an \
                     election): try again",
                    self.location
                ),
                e,
            );
        }
        match *e.kind {
            ErrorKind::Write(WriteFailure::WriteError(ref w)) if w.code == 11000 => {
                Error::already_exists(format!("a document with that key: {}", w.message))
            }
            ErrorKind::InsertMany(ref failure)
                if failure
                    .write_errors
                    .as_ref()
                    .is_some_and(|w| w.iter().any(|w| w.code == 11000)) =>
            {
                Error::already_exists("a document with that key")
            }
            ErrorKind::Command(ref c) if c.code == 11000 => {
                Error::already_exists(format!("a document with that key: {}", c.message))
            }
            ErrorKind::ServerSelection { .. }
            | ErrorKind::Io(_)
            | ErrorKind::ConnectionPoolCleared { .. } => self.unavailable(e),
            _ => Error::backend("mongodb", e),
        }
    }

    /// The collection holding `E`'s rows.
    pub(crate) fn coll<E: Row>(&self) -> Collection<Document> {
        self.db.collection(E::default().table_name())
    }

    /// Runs `attempt` (one whole transaction: [`Mongo::begin`] to [`Mongo::commit`])
    /// again, up to [`TRANSACTION_ATTEMPTS`] times in all, while it fails with a
    /// `TransientTransactionError`: the server rolled the whole transaction back, so
    /// running it again is safe. Without transactions it runs once.
    pub(crate) async fn retry_transient<T, F, Fut>(&self, attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let attempts = if self.transactions {
            TRANSACTION_ATTEMPTS
        } else {
            1
        };
        retry(attempts, is_transient, attempt).await
    }

    /// Starts a session with a transaction when this server has them; `None` otherwise.
    pub(crate) async fn begin(&self) -> Result<Option<ClientSession>> {
        if !self.transactions {
            return Ok(None);
        }
        let mut session = self
            .client
            .start_session()
            .await
            .map_err(|e| self.map_err(e))?;
        session
            .start_transaction()
            .await
            .map_err(|e| self.map_err(e))?;
        Ok(Some(session))
    }

    /// Commits what [`Mongo::begin`] started (nothing to do without a transaction).
    pub(crate) async fn commit(&self, session: Option<ClientSession>) -> Result<()> {
        if let Some(mut session) = session {
            session
                .commit_transaction()
                .await
                .map_err(|e| self.map_err(e))?;
        }
        Ok(())
    }

    /// Rolls back what [`Mongo::begin`] started, and waits for it (a dropped session
    /// aborts in the background, which can race the next transaction).
    pub(crate) async fn abort(&self, session: Option<ClientSession>) {
        if let Some(mut session) = session
            && let Err(e) = session.abort_transaction().await
        {
            tracing::warn!(error = %e, "MongoDB: aborting a transaction failed");
        }
    }

    /// Inserts one row.
    pub(crate) async fn insert<E: Row>(
        &self,
        session: Option<&mut ClientSession>,
        model: &E::Model,
    ) -> Result<()> {
        let doc = rows::to_doc::<E>(model);
        let coll = self.coll::<E>();
        let action = coll.insert_one(doc);
        match session {
            Some(s) => action.session(s).await,
            None => action.await,
        }
        .map_err(|e| self.map_err(e))?;
        Ok(())
    }

    /// Writes one row whole: inserts it, or replaces the row with its `_id`. Not atomic:
    /// a reader racing a replacement can find no row (for caches only). An insert, then
    /// delete and insert, rather than `replaceOne` with `upsert`, which the test server
    /// (nx-27017) fails on binary fields.
    pub(crate) async fn replace<E: Row>(&self, model: &E::Model) -> Result<()> {
        let doc = rows::to_doc::<E>(model);
        let id = doc.get("_id").cloned().unwrap_or(Bson::Null);
        for _ in 0..3 {
            match self.coll::<E>().insert_one(doc.clone()).await {
                Ok(_) => return Ok(()),
                Err(e) => match self.map_err(e) {
                    Error::AlreadyExists { .. } => {
                        self.coll::<E>()
                            .delete_one(doc! { "_id": id.clone() })
                            .await
                            .map_err(|e| self.map_err(e))?;
                    }
                    other => return Err(other),
                },
            }
        }
        Err(Error::conflict(format!(
            "{} row {id} kept being rewritten by others; try again",
            E::default().table_name()
        )))
    }

    /// Inserts rows in order, as one batch.
    pub(crate) async fn insert_many<E: Row>(&self, models: &[E::Model]) -> Result<()> {
        if models.is_empty() {
            return Ok(());
        }
        let docs: Vec<Document> = models.iter().map(rows::to_doc::<E>).collect();
        self.coll::<E>()
            .insert_many(docs)
            .await
            .map_err(|e| self.map_err(e))?;
        Ok(())
    }

    /// The first row matching `filter`.
    pub(crate) async fn find_one<E: Row>(
        &self,
        session: Option<&mut ClientSession>,
        filter: Document,
    ) -> Result<Option<E::Model>> {
        let coll = self.coll::<E>();
        let action = coll.find_one(filter);
        let found = match session {
            Some(s) => action.session(s).await,
            None => action.await,
        }
        .map_err(|e| self.map_err(e))?;
        found.map(E::from_doc).transpose()
    }

    /// Rows matching `filter` in `sort` order, at most `limit` (0: all).
    pub(crate) async fn find<E: Row>(
        &self,
        filter: Document,
        sort: Document,
        limit: u64,
    ) -> Result<Vec<E::Model>> {
        let coll = self.coll::<E>();
        let mut action = coll.find(filter).sort(sort);
        if limit > 0 {
            action = action.limit(i64::try_from(limit).unwrap_or(i64::MAX));
        }
        let docs: Vec<Document> = action
            .await
            .map_err(|e| self.map_err(e))?
            .try_collect()
            .await
            .map_err(|e| self.map_err(e))?;
        docs.into_iter().map(E::from_doc).collect()
    }

    /// Applies `update` to every row matching `filter`; returns how many matched.
    pub(crate) async fn update<E: Row>(
        &self,
        session: Option<&mut ClientSession>,
        filter: Document,
        update: Document,
    ) -> Result<u64> {
        let coll = self.coll::<E>();
        let action = coll.update_many(filter, update);
        let result = match session {
            Some(s) => action.session(s).await,
            None => action.await,
        }
        .map_err(|e| self.map_err(e))?;
        Ok(result.matched_count)
    }

    /// Applies `update` to the first row matching `filter`, atomically; returns the row
    /// as it is after the update, or `None` when nothing matched.
    pub(crate) async fn find_update<E: Row>(
        &self,
        session: Option<&mut ClientSession>,
        filter: Document,
        update: Document,
    ) -> Result<Option<E::Model>> {
        let coll = self.coll::<E>();
        let action = coll
            .find_one_and_update(filter, update)
            .return_document(ReturnDocument::After);
        let found = match session {
            Some(s) => action.session(s).await,
            None => action.await,
        }
        .map_err(|e| self.map_err(e))?;
        found.map(E::from_doc).transpose()
    }

    /// Deletes every row matching `filter`; returns how many.
    pub(crate) async fn delete<E: Row>(
        &self,
        session: Option<&mut ClientSession>,
        filter: Document,
    ) -> Result<u64> {
        let coll = self.coll::<E>();
        let action = coll.delete_many(filter);
        let result = match session {
            Some(s) => action.session(s).await,
            None => action.await,
        }
        .map_err(|e| self.map_err(e))?;
        Ok(result.deleted_count)
    }

    /// How many rows match `filter`.
    pub(crate) async fn count<E: Row>(&self, filter: Document) -> Result<u64> {
        self.coll::<E>()
            .count_documents(filter)
            .await
            .map_err(|e| self.map_err(e))
    }
}

/// How many times a transaction the server rolls back is tried in all.
pub(crate) const TRANSACTION_ATTEMPTS: usize = 3;

/// Runs `attempt` until it succeeds, fails with an error `again` does not accept, or has
/// run `attempts` times.
async fn retry<T, F, Fut>(attempts: usize, again: fn(&Error) -> bool, mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut tries = 1;
    loop {
        match attempt().await {
            Err(e) if tries < attempts && again(&e) => {
                tracing::info!(error = %e, tries, "MongoDB: transaction rolled back, retrying");
                tries += 1;
            }
            other => return other,
        }
    }
}

/// Whether `e` is a transaction the server rolled back whole (its driver error carries
/// the `TransientTransactionError` label).
pub(crate) fn is_transient(e: &Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(inner) = source {
        if let Some(driver) = inner.downcast_ref::<mongodb::error::Error>() {
            return driver.contains_label(mongodb::error::TRANSIENT_TRANSACTION_ERROR);
        }
        source = inner.source();
    }
    false
}

/// A filter on `_id` that also finds a document whose `_id` is the ObjectId with this
/// hex (written by another tool).
pub(crate) fn id_is(id: &str) -> Document {
    match ObjectId::parse_str(id) {
        Ok(oid) => doc! { "_id": { "$in": [id, oid] } },
        Err(_) => doc! { "_id": id },
    }
}

/// A time as a BSON date (milliseconds).
pub(crate) fn date(at: chrono::DateTime<chrono::Utc>) -> Bson {
    Bson::DateTime(mongodb::bson::DateTime::from_millis(at.timestamp_millis()))
}

/// A filter for a stored time strictly before `at`: stored times are whole
/// milliseconds, so that is `$lte` the last whole millisecond before `at`. (`$lte`, not
/// `$lt`: the test server's `$lt` matches no date.)
pub(crate) fn before(at: chrono::DateTime<chrono::Utc>) -> Document {
    let ceil =
        at.timestamp_millis() + i64::from(!at.timestamp_subsec_micros().is_multiple_of(1000));
    doc! { "$lte": Bson::DateTime(mongodb::bson::DateTime::from_millis(ceil - 1)) }
}

/// `now()` cut to what a BSON date holds, so what a call returns equals what it stored.
pub(crate) fn now_ms() -> chrono::DateTime<chrono::Utc> {
    use chrono::SubsecRound;
    zeroscale_core::domain::now().trunc_subsecs(3)
}

/// A `$set` of columns by their names (a null column unset, as rows store it).
pub(crate) fn set_columns<C: sea_orm::IdenStatic>(columns: Vec<(C, sea_orm::Value)>) -> Document {
    let (mut set, mut unset) = (Document::new(), Document::new());
    for (column, value) in columns {
        match rows::value(value) {
            Bson::Null => unset.insert(column.as_str(), ""),
            value => set.insert(column.as_str(), value),
        };
    }
    let mut update = Document::new();
    if !set.is_empty() {
        update.insert("$set", set);
    }
    if !unset.is_empty() {
        update.insert("$unset", unset);
    }
    update
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_what_may_run_again_runs_again() {
        let unavailable = |e: &Error| matches!(e, Error::Unavailable { .. });
        let runs = std::cell::Cell::new(0);
        let flaky = || {
            runs.set(runs.get() + 1);
            async { Err::<(), _>(Error::unavailable("rolled back")) }
        };
        assert!(retry(3, unavailable, flaky).await.is_err());
        assert_eq!(runs.get(), 3, "tried the allowed number of times");

        runs.set(0);
        let wrong = || {
            runs.set(runs.get() + 1);
            async { Err::<(), _>(Error::conflict("insufficient credits")) }
        };
        assert!(retry(3, unavailable, wrong).await.is_err());
        assert_eq!(runs.get(), 1, "a real answer is not retried");

        runs.set(0);
        let second = || {
            runs.set(runs.get() + 1);
            let n = runs.get();
            async move {
                if n < 2 {
                    Err(Error::unavailable("rolled back"))
                } else {
                    Ok(n)
                }
            }
        };
        assert_eq!(retry(3, unavailable, second).await.unwrap(), 2);
        // A plain unavailable server is not a rolled-back transaction.
        assert!(!is_transient(&Error::unavailable("down")));
    }
}
