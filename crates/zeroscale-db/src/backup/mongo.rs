//! Backup, restore and copy on MongoDB, in the same archive as the SQL engines.
//!
//! MongoDB's collections hold rows of the same entities as the SQL tables (see
//! `mongodb/rows.rs`), so an archive of MongoDB is the archive of those tables at this
//! build's newest schema: the tables, columns and types come from the schema the
//! migrations make (read from a private in-memory SQLite database), the rows from the
//! collections, each document read as its entity's row and written as the SQL engines
//! write that row. The same data therefore gives the same lines and checksums on every
//! engine, whichever it came from.
//!
//! What differs from the SQL engines (docs/backup.md says so too):
//! - a backup reads each collection in turn, not one snapshot: stop writers first for a
//!   consistent copy (as with `mongodump` without `--oplog`);
//! - a load is not one transaction: on failure the collections it wrote are emptied
//!   again (the target was empty, or `replace` emptied it);
//! - only archives at this build's newest schema load into MongoDB (restore an older one
//!   into SQLite, which migrates it, then copy);
//! - BSON dates hold milliseconds: times from SQL lose their microseconds;
//! - the database queue's jobs do not travel to or from MongoDB (it has no database queue).

use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use futures::TryStreamExt;
use mongodb::bson::{Document, doc};
use sea_orm::{EntityName, EntityTrait, IdenStatic, Iterable, ModelTrait, PrimaryKeyToColumn};
use zeroscale_core::config::{DatabaseConfig, SqliteConfig};
use zeroscale_core::domain::GenerationStatus;
use zeroscale_core::{Error, Result};

use super::value;
use super::{
    BackupOptions, Manifest, Progress, Reader, RestoreOptions, RestoreReport, TableOut, TablePlan,
    Target, archive_err, known_migrations, line_of, load_in, write_line,
};
use crate::Db;
use crate::domain::entity::{
    api_keys, chat_messages, documents, embedding_cache, generations, sessions, system_prompts,
    user_jobs, users,
};
use crate::mongodb::Mongo;
use crate::mongodb::rows::{self, Row};

/// One of the tables as a MongoDB collection.
trait Collection: Send + Sync {
    /// The table (and collection).
    fn name(&self) -> &'static str;
    /// A stored document as its archive line, columns in `table`'s order.
    fn line(&self, doc: Document, table: &TablePlan) -> Result<String>;
    /// An archive row (its `columns`) as the document to store.
    fn document(&self, columns: &[String], values: Vec<sea_orm::Value>) -> Result<Document>;
}

struct EntityCollection<E>(std::marker::PhantomData<fn() -> E>);

fn column_named<E: EntityTrait>(name: &str) -> Result<E::Column> {
    E::Column::iter()
        .find(|c| c.as_str() == name)
        .ok_or_else(|| {
            Error::invalid_input(format!(
                "column `{}.{name}` has no field in this build's MongoDB documents",
                E::default().table_name()
            ))
        })
}

impl<E: Row> Collection for EntityCollection<E> {
    fn name(&self) -> &'static str {
        E::default().table_name()
    }

    fn line(&self, doc: Document, table: &TablePlan) -> Result<String> {
        let model = E::from_doc(doc)?;
        line_of(table, |name, kind| {
            value::json_of(model.get(column_named::<E>(name)?), kind)
        })
    }

    fn document(&self, columns: &[String], values: Vec<sea_orm::Value>) -> Result<Document> {
        let key = E::PrimaryKey::iter()
            .next()
            .map(PrimaryKeyToColumn::into_column);
        let mut doc = Document::new();
        for (name, value) in columns.iter().zip(values) {
            let column = column_named::<E>(name)?;
            let field = if key.is_some_and(|k| k.as_str() == column.as_str()) {
                "_id"
            } else {
                column.as_str()
            };
            match rows::value(value) {
                mongodb::bson::Bson::Null => {}
                bson => {
                    doc.insert(field, bson);
                }
            }
        }
        // Read back as the entity's row (every column of the right type) and written as
        // the domain writes it.
        let model = E::from_doc(doc)?;
        Ok(rows::to_doc::<E>(&model))
    }
}

fn entity<E: Row>() -> Box<dyn Collection> {
    Box::new(EntityCollection::<E>(std::marker::PhantomData))
}

/// Every table MongoDB holds.
fn collections() -> Vec<Box<dyn Collection>> {
    vec![
        entity::<users::Entity>(),
        entity::<sessions::Entity>(),
        entity::<system_prompts::Entity>(),
        entity::<api_keys::Entity>(),
        entity::<chat_messages::Entity>(),
        entity::<generations::Entity>(),
        entity::<documents::Entity>(),
        entity::<embedding_cache::Entity>(),
        entity::<user_jobs::Entity>(),
    ]
}

fn collection(name: &str) -> Result<Box<dyn Collection>> {
    collections()
        .into_iter()
        .find(|c| c.name() == name)
        .ok_or_else(|| {
            Error::invalid_input(format!(
                "table `{name}` has no MongoDB collection in this build: add its entity to \
                 zeroscale-db's backup/mongo.rs"
            ))
        })
}

pub(super) fn no_jobs() -> Error {
    Error::invalid_input(
        "the database queue does not run on MongoDB, so jobs do not travel to or from it: \
         leave out --with-jobs (and back up a SQL source without it)",
    )
}

/// The tables as an archive of MongoDB holds them, in load order: the newest schema's
/// (made in a private in-memory SQLite database and read back).
pub(super) async fn plan(options: BackupOptions) -> Result<Vec<TablePlan>> {
    if options.with_jobs {
        return Err(no_jobs());
    }
    let reference = Db::connect(&DatabaseConfig::Sqlite(SqliteConfig {
        in_memory: true,
        ..Default::default()
    }))
    .await?;
    reference.migrate_up().await?;
    let schema = crate::schema::introspect(&reference).await;
    reference.close().await?;
    let tables = super::plan(&schema?, options)?;
    for table in &tables {
        collection(&table.name)?;
    }
    Ok(tables)
}

/// The newest migration's name: the schema MongoDB's documents are rows of.
fn newest_schema() -> String {
    known_migrations().pop().unwrap_or_default()
}

fn coll(m: &Mongo, name: &str) -> mongodb::Collection<Document> {
    m.database().collection(name)
}

pub(super) async fn write_archive(
    m: &Mongo,
    out: &mut dyn Write,
    options: BackupOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<Manifest> {
    m.schema_status().await?;
    let tables = plan(options).await?;
    let mut manifest = Manifest::new("mongodb", newest_schema());
    write_line(out, &manifest)?;
    for table in &tables {
        let rows = collection(&table.name)?;
        let mut lines = TableOut::start(out, table, progress)?;
        // `_id` order: byte order for the string ids every engine writes.
        let mut cursor = coll(m, &table.name)
            .find(doc! {})
            .sort(doc! { "_id": 1 })
            .await
            .map_err(|e| m.map_err(e))?;
        while let Some(doc) = cursor.try_next().await.map_err(|e| m.map_err(e))? {
            lines.row(out, rows.line(doc, table)?, progress)?;
        }
        manifest.tables.push(lines.end(out, progress)?);
    }
    write_line(out, &serde_json::json!({ "manifest": manifest }))?;
    Ok(manifest)
}

pub(super) async fn table_counts(m: &Mongo, options: BackupOptions) -> Result<Vec<(String, u64)>> {
    let mut counts = Vec::new();
    for table in plan(options).await? {
        let n = coll(m, &table.name)
            .count_documents(doc! {})
            .await
            .map_err(|e| m.map_err(e))?;
        counts.push((table.name, n));
    }
    Ok(counts)
}

/// Readies MongoDB for a load of `header`'s archive: its schema steps applied, every
/// collection empty (emptied with `replace`, else a collection with documents is
/// refused). Returns the tables to load.
pub(super) async fn prepare_target(
    m: &Mongo,
    header: &Manifest,
    options: RestoreOptions,
    changed: &AtomicBool,
) -> Result<Vec<TablePlan>> {
    let newest = newest_schema();
    if header.schema != newest {
        return Err(Error::invalid_input(format!(
            "the archive's schema is `{}`, and MongoDB loads only archives at this build's \
             newest schema `{newest}`: restore it into SQLite first (which migrates it), then \
             `zeroscale db copy` from there to MongoDB",
            header.schema
        )));
    }
    m.schema_up().await?;
    let tables = plan(BackupOptions::default()).await?;
    for table in &tables {
        let c = coll(m, &table.name);
        if options.replace {
            changed.store(true, Ordering::SeqCst);
            c.delete_many(doc! {}).await.map_err(|e| m.map_err(e))?;
        } else if c
            .find_one(doc! {})
            .await
            .map_err(|e| m.map_err(e))?
            .is_some()
        {
            return Err(Error::conflict(format!(
                "the target database ({}) is not empty (collection `{}` has documents): \
                 restore into an empty database, or pass --replace to replace its contents",
                m.location(),
                table.name
            )));
        }
    }
    Ok(tables)
}

/// Inserts one batch of archive rows into `table`'s collection.
pub(super) async fn insert(
    m: &Mongo,
    table: &TablePlan,
    columns: &[String],
    rows: Vec<Vec<sea_orm::Value>>,
) -> Result<()> {
    let target = collection(&table.name)?;
    let docs = rows
        .into_iter()
        .map(|row| target.document(columns, row))
        .collect::<Result<Vec<_>>>()
        .map_err(|e| Error::invalid_input(format!("loading table `{}` failed: {e}", table.name)))?;
    coll(m, &table.name)
        .insert_many(docs)
        .ordered(true)
        .await
        .map(|_| ())
        .map_err(|e| {
            let inner = m.map_err(e);
            Error::invalid_input(format!("loading table `{}` failed: {inner}", table.name))
        })
}

/// Loads the archive into MongoDB; on failure empties the collections again.
pub(super) async fn load<R: BufRead>(
    db: &Db,
    m: &Mongo,
    mut reader: Reader<R>,
    options: RestoreOptions,
    progress: &mut dyn FnMut(Progress),
    expected: Option<&Manifest>,
    header: &Manifest,
) -> Result<RestoreReport> {
    let changed = AtomicBool::new(false);
    let target = Target::Mongo(m, &changed);
    let loaded = load_in(
        db,
        &target,
        &mut reader,
        options,
        progress,
        expected,
        header,
    )
    .await;
    let loaded = match loaded {
        Ok(loaded) => hold_pending_credits(m).await.map(|()| loaded),
        Err(e) => Err(e),
    };
    match loaded {
        Ok((manifest, rows)) => Ok(RestoreReport { manifest, rows }),
        Err(e) if !changed.load(Ordering::SeqCst) => Err(e),
        Err(e) => {
            // Leave no half-loaded database behind: it was empty before the load (or
            // emptied by `replace`).
            for c in collections() {
                if let Err(cleanup) = coll(m, c.name()).delete_many(doc! {}).await {
                    tracing::warn!(collection = c.name(), error = %cleanup,
                        "MongoDB: emptying a collection after a failed load failed");
                }
            }
            Err(e)
        }
    }
}

/// On MongoDB a pending generation's credits are held on its user's document (see
/// `mongodb/credits.rs`); the archive has the generation only. Puts each hold back, so
/// the generation settles as it would have at the source.
async fn hold_pending_credits(m: &Mongo) -> Result<()> {
    let mut pending = coll(m, generations::Entity.table_name())
        .find(doc! { "status": GenerationStatus::Pending.as_str() })
        .await
        .map_err(|e| m.map_err(e))?;
    while let Some(doc) = pending.try_next().await.map_err(|e| m.map_err(e))? {
        let generation = generations::Entity::from_doc(doc)?;
        let held = coll(m, users::Entity.table_name())
            .update_one(
                crate::mongodb::id_is(&generation.user_id),
                doc! { "$set": {
                    format!("holds.{}", generation.id): generation.reserved_credits
                } },
            )
            .await
            .map_err(|e| m.map_err(e))?;
        if held.matched_count == 0 {
            return Err(archive_err(format!(
                "generation `{}` is pending for user `{}`, who is not in the archive",
                generation.id, generation.user_id
            )));
        }
    }
    Ok(())
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use super::*;
    use serde_json::Value as Json;

    /// Every table a backup takes has a MongoDB collection, and every column a field.
    #[tokio::test]
    async fn every_table_has_a_collection() {
        let tables = plan(BackupOptions::default()).await.unwrap();
        assert_eq!(
            tables.len(),
            collections().len(),
            "one collection per table"
        );
        for table in &tables {
            let c = collection(&table.name).unwrap();
            let nulls: Vec<sea_orm::Value> = table
                .kinds
                .iter()
                .map(|k| value::bind(&Json::Null, *k).unwrap())
                .collect();
            // All-null rows are refused for their required columns, never for a name.
            if let Err(e) = c.document(&table.columns, nulls) {
                assert!(!e.to_string().contains("has no field"), "{e}");
            }
        }
        assert!(matches!(
            plan(BackupOptions { with_jobs: true }).await,
            Err(Error::InvalidInput { .. })
        ));
    }
}
