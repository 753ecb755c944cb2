//! Engine-agnostic backup, restore and copy: every table the migrations create, in one
//! portable archive that SQLite and PostgreSQL write byte for byte alike (docs/backup.md).
//!
//! The archive is one gzip stream of lines (streamed both ways; rows are never all in
//! memory):
//!
//! ```text
//! {"format":"zeroscale-backup","version":1,"zeroscale":"0.1.0","engine":"sqlite","schema":"m…","created_at":"…"}
//! {"table":"users","columns":["active",…],"types":["bool",…]}
//! [true,"2026-12-02T07:31:50.123456Z",…]          one line per row, in primary-key order
//! {"end":"users","rows":2,"sha256":"…"}            SHA-256 of that table's row lines
//! …                                                 the next tables, parents before children
//! {"manifest":{…the header…,"tables":[{"name":"users","rows":2,"sha256":"…"},…]}}
//! ```
//!
//! [`backup`] reads every table in one snapshot (PostgreSQL `REPEATABLE READ, READ ONLY`;
//! SQLite one read transaction under WAL). [`verify`] checks an archive without a
//! database. [`restore`] verifies, then in one transaction empties the target (only with
//! `replace`), migrates it up or down to the archive's schema, loads every table and runs
//! the newer migrations on the rows; then it fixes engine-side state. [`copy`] streams one database into another through the
//! same format with no file in between.

#[cfg(feature = "mongodb")]
mod mongo;
mod value;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};

use crate::migrate::Migrator;
use futures::TryStreamExt;
use sea_orm::{
    AccessMode, ConnectionTrait, DatabaseTransaction, IsolationLevel, Statement, StreamTrait,
    TransactionTrait,
};
use sea_orm_migration::MigratorTrait;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};
use zeroscale_core::{Error, Result};

use crate::schema::{self, Table};
use crate::{Db, Dialect};
use value::Kind;

/// The archive format this build writes, and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;
const FORMAT_NAME: &str = "zeroscale-backup";
/// Tables that never travel: migration bookkeeping (the manifest has the version) and
/// pgvector's side table (rebuilt from the documents).
/// `vector_collections` holds version tokens for the in-memory vector index: a restore
/// gives every collection fresh ones instead.
/// `queue_notices` holds wake-up signals of the database queue, and `rate_counters` the
/// throttling and rate-limit counters: both worth nothing later. `storage_uploads`
/// names multipart uploads in flight in the storage this database served, which a sweep
/// of that storage cleans up.
const NOT_COPIED: &[&str] = &[
    "seaql_migrations",
    "document_vectors",
    "vector_collections",
    "queue_notices",
    "rate_counters",
    "storage_uploads",
];
/// The database queue's jobs: they travel only when asked ([`BackupOptions::with_jobs`]).
pub const JOB_TABLES: &[&str] = &["queue_jobs", "queue_idempotency"];
/// Rows per INSERT statement (PostgreSQL takes at most 65,535 parameters).
const BATCH_PARAMS: usize = 30_000;
/// SQLite's page cache while a restore loads, in KiB (see [`load`]).
const LOAD_CACHE_KIB: u32 = 65_536;

/// What an archive holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always `zeroscale-backup`.
    pub format: String,
    /// The archive format's version ([`FORMAT_VERSION`] when this build wrote it).
    pub version: u32,
    /// The zeroscale version that wrote it.
    pub zeroscale: String,
    /// The engine it was taken from: `sqlite`, `postgres` or `mongodb`.
    pub engine: String,
    /// The last migration applied to the source.
    pub schema: String,
    /// When the backup started (RFC 3339 UTC).
    pub created_at: String,
    /// Per table, in load order.
    #[serde(default)]
    pub tables: Vec<TableSummary>,
}

/// One table of an archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSummary {
    /// The table.
    pub name: String,
    /// Its rows.
    pub rows: u64,
    /// SHA-256 (hex) of its row lines, each with its newline.
    pub sha256: String,
}

/// Progress of a backup, restore or copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// A table starts.
    Table {
        /// Its name.
        name: String,
        /// Its rows, when known (restores know them from the manifest).
        rows: Option<u64>,
    },
    /// Rows done in the current table so far.
    Rows(u64),
    /// The table is done.
    TableDone {
        /// Its name.
        name: String,
        /// Its rows.
        rows: u64,
    },
}

/// What a backup (or the source side of a copy) includes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackupOptions {
    /// Include the database queue's jobs ([`JOB_TABLES`]). Off by default: a backup is
    /// of the app's data, and jobs restored elsewhere would run a second time.
    pub with_jobs: bool,
}

/// A table as it travels: columns in byte order of their names, with their kinds.
struct TablePlan {
    name: String,
    columns: Vec<String>,
    types: Vec<String>,
    kinds: Vec<Kind>,
    primary_key: Vec<String>,
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

fn archive_err(message: impl Into<String>) -> Error {
    Error::invalid_input(format!("the archive is not valid: {}", message.into()))
}

fn io_err(e: std::io::Error) -> Error {
    Error::unavailable_from("reading or writing the archive failed", e)
}

/// The tables to copy, parents before children (foreign keys), then by name.
fn plan(schema: &schema::Schema, options: BackupOptions) -> Result<Vec<TablePlan>> {
    let tables: BTreeMap<&String, &Table> = schema
        .tables
        .iter()
        .filter(|(name, _)| !NOT_COPIED.contains(&name.as_str()))
        .filter(|(name, _)| options.with_jobs || !JOB_TABLES.contains(&name.as_str()))
        .collect();
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut ordered = Vec::new();
    while done.len() < tables.len() {
        let ready: Vec<&String> = tables
            .iter()
            .filter(|(name, table)| {
                !done.contains(name.as_str())
                    && table.foreign_keys.iter().all(|fk| {
                        fk.references == ***name
                            || done.contains(&fk.references)
                            || !tables.contains_key(&fk.references)
                    })
            })
            .map(|(name, _)| *name)
            .collect();
        if ready.is_empty() {
            return Err(Error::invalid_input(
                "the tables' foreign keys form a cycle: no load order exists",
            ));
        }
        for name in ready {
            done.insert(name.clone());
            let table = tables[name];
            let columns: Vec<String> = table.columns.keys().cloned().collect();
            let types: Vec<String> = table.columns.values().map(|c| c.ty.clone()).collect();
            let kinds = types.iter().map(|t| Kind::of(t)).collect::<Result<_>>()?;
            ordered.push(TablePlan {
                name: name.clone(),
                columns,
                types,
                kinds,
                primary_key: table.primary_key.clone(),
            });
        }
    }
    Ok(ordered)
}

/// The last migration applied to `db`.
async fn schema_version(db: &Db) -> Result<String> {
    db.migrate_status()
        .await?
        .into_iter()
        .filter(|m| m.applied)
        .map(|m| m.name)
        .next_back()
        .ok_or_else(|| {
            Error::invalid_input("the database has no migrations applied: nothing to back up")
        })
}

fn select_sql(dialect: Dialect, table: &TablePlan) -> String {
    let columns: Vec<String> = table
        .columns
        .iter()
        .zip(&table.kinds)
        .map(|(c, kind)| match (dialect, kind) {
            // PostgreSQL keeps 32- and 64-bit integers apart; read both as 64-bit.
            (Dialect::Postgres, Kind::Int) => format!("{}::bigint AS {}", quote(c), quote(c)),
            _ => quote(c),
        })
        .collect();
    let order: Vec<String> = table
        .primary_key
        .iter()
        .map(|c| {
            let text = table
                .columns
                .iter()
                .position(|x| x == c)
                .is_some_and(|i| table.kinds[i] == Kind::Text);
            // Byte order on both engines, whatever the database's collation.
            if dialect == Dialect::Postgres && text {
                format!("{} COLLATE \"C\"", quote(c))
            } else {
                quote(c)
            }
        })
        .collect();
    let order = if order.is_empty() {
        String::new()
    } else {
        format!(" ORDER BY {}", order.join(", "))
    };
    format!(
        "SELECT {} FROM {}{order}",
        columns.join(", "),
        quote(&table.name)
    )
}

/// One row as its archive line (without the newline).
fn row_line(row: &sea_orm::QueryResult, table: &TablePlan) -> Result<String> {
    line_of(table, |col, kind| value::read(row, col, kind))
}

/// A row's archive line from its values, read column by column in the plan's order.
fn line_of(table: &TablePlan, mut read: impl FnMut(&str, Kind) -> Result<Json>) -> Result<String> {
    let mut line = String::from("[");
    for (i, (col, kind)) in table.columns.iter().zip(&table.kinds).enumerate() {
        if i > 0 {
            line.push(',');
        }
        let v = read(col, *kind).map_err(|e| {
            Error::invalid_input(format!("table `{}`, column `{col}`: {e}", table.name))
        })?;
        value::write_canonical(&v, &mut line);
    }
    line.push(']');
    Ok(line)
}

/// One table being written: its header line, then its rows (hashed as they go), then
/// its end line.
struct TableOut {
    name: String,
    hasher: Sha256,
    rows: u64,
}

impl TableOut {
    fn start(
        out: &mut dyn Write,
        table: &TablePlan,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<TableOut> {
        progress(Progress::Table {
            name: table.name.clone(),
            rows: None,
        });
        write_line(
            out,
            &serde_json::json!({"table": table.name, "columns": table.columns, "types": table.types}),
        )?;
        Ok(TableOut {
            name: table.name.clone(),
            hasher: Sha256::new(),
            rows: 0,
        })
    }

    fn row(
        &mut self,
        out: &mut dyn Write,
        mut line: String,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<()> {
        line.push('\n');
        self.hasher.update(line.as_bytes());
        out.write_all(line.as_bytes()).map_err(io_err)?;
        self.rows += 1;
        if self.rows.is_multiple_of(10_000) {
            progress(Progress::Rows(self.rows));
        }
        Ok(())
    }

    fn end(self, out: &mut dyn Write, progress: &mut dyn FnMut(Progress)) -> Result<TableSummary> {
        let sha256 = zeroscale_core::hex(&self.hasher.finalize());
        write_line(
            out,
            &serde_json::json!({"end": self.name, "rows": self.rows, "sha256": sha256}),
        )?;
        progress(Progress::TableDone {
            name: self.name.clone(),
            rows: self.rows,
        });
        Ok(TableSummary {
            name: self.name,
            rows: self.rows,
            sha256,
        })
    }
}

fn write_line(out: &mut dyn Write, value: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string(value).map_err(|e| Error::backend("backup", e))?;
    out.write_all(text.as_bytes()).map_err(io_err)?;
    out.write_all(b"\n").map_err(io_err)
}

/// Writes a backup of every table of `db` to `out` (gzip), from one snapshot; returns its
/// manifest.
pub async fn backup(
    db: &Db,
    out: &mut dyn Write,
    options: BackupOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<Manifest> {
    let mut gz = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
    let manifest = write_archive(db, &mut gz, options, progress).await?;
    gz.finish().map_err(io_err)?.flush().map_err(io_err)?;
    Ok(manifest)
}

async fn snapshot(db: &Db) -> Result<DatabaseTransaction> {
    let txn = match db.sql_dialect() {
        Dialect::Postgres => {
            db.conn()?
                .begin_with_config(
                    Some(IsolationLevel::RepeatableRead),
                    Some(AccessMode::ReadOnly),
                )
                .await
        }
        // Under WAL one read transaction sees one state from its first read on.
        Dialect::Sqlite => db.conn()?.begin().await,
    };
    txn.map_err(|e| db.map_err(e))
}

async fn write_archive(
    db: &Db,
    out: &mut dyn Write,
    options: BackupOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<Manifest> {
    #[cfg(feature = "mongodb")]
    if let Some(m) = db.mongo() {
        return mongo::write_archive(m, out, options, progress).await;
    }
    let schema_name = schema_version(db).await?;
    let tables = plan(&schema::introspect(db).await?, options)?;
    let mut manifest = Manifest::new(db.engine(), schema_name);
    write_line(out, &manifest)?;
    let txn = snapshot(db).await?;
    for table in &tables {
        let mut lines = TableOut::start(out, table, progress)?;
        let sql = select_sql(db.sql_dialect(), table);
        let mut stream = txn
            .stream_raw(Statement::from_string(
                db.conn()?.get_database_backend(),
                sql,
            ))
            .await
            .map_err(|e| db.map_err(e))?;
        while let Some(row) = stream.try_next().await.map_err(|e| db.map_err(e))? {
            lines.row(out, row_line(&row, table)?, progress)?;
        }
        drop(stream);
        manifest.tables.push(lines.end(out, progress)?);
    }
    txn.commit().await.map_err(|e| db.map_err(e))?;
    write_line(out, &serde_json::json!({ "manifest": manifest }))?;
    Ok(manifest)
}

impl Manifest {
    /// A new archive's header (no tables yet).
    fn new(engine: &str, schema: String) -> Manifest {
        Manifest {
            format: FORMAT_NAME.to_owned(),
            version: FORMAT_VERSION,
            zeroscale: env!("CARGO_PKG_VERSION").to_owned(),
            engine: engine.to_owned(),
            schema,
            created_at: value::timestamp(chrono::Utc::now()),
            tables: Vec::new(),
        }
    }
}

/// Rows per table that a backup of `db` with `options` would hold, in load order.
pub async fn table_counts(db: &Db, options: BackupOptions) -> Result<Vec<(String, u64)>> {
    #[cfg(feature = "mongodb")]
    if let Some(m) = db.mongo() {
        return mongo::table_counts(m, options).await;
    }
    let mut counts = Vec::new();
    for table in plan(&schema::introspect(db).await?, options)? {
        let row = db
            .conn()?
            .query_one_raw(Statement::from_string(
                db.conn()?.get_database_backend(),
                format!("SELECT COUNT(*) AS n FROM {}", quote(&table.name)),
            ))
            .await
            .map_err(|e| db.map_err(e))?;
        let n: i64 = row
            .map(|r| r.try_get("", "n"))
            .transpose()
            .map_err(|e| db.map_err(e))?
            .unwrap_or(0);
        counts.push((table.name, u64::try_from(n).unwrap_or(0)));
    }
    Ok(counts)
}

// ------------------------------------------------------------------------- reading

/// One line of an archive.
enum Record {
    Header(Manifest),
    Table { name: String, columns: Vec<String> },
    Row(Vec<Json>),
    End(TableSummary),
    Manifest(Manifest),
}

/// Reads an archive line by line, checking its structure, row counts and checksums as it
/// goes; the caller sees each record once it is known to fit.
struct Reader<R: BufRead> {
    input: R,
    line: String,
    line_no: u64,
    header: Option<Manifest>,
    table: Option<(String, usize, u64, Sha256)>,
    seen: Vec<TableSummary>,
    finished: bool,
}

impl<R: BufRead> Reader<R> {
    fn new(input: R) -> Self {
        Reader {
            input,
            line: String::new(),
            line_no: 0,
            header: None,
            table: None,
            seen: Vec::new(),
            finished: false,
        }
    }

    fn next(&mut self) -> Result<Option<Record>> {
        self.line.clear();
        let n = self.input.read_line(&mut self.line).map_err(|e| {
            archive_err(format!(
                "line {}: {e} (truncated or corrupted?)",
                self.line_no + 1
            ))
        })?;
        if n == 0 {
            if !self.finished {
                return Err(archive_err(
                    "it ends before its manifest: the file is truncated",
                ));
            }
            return Ok(None);
        }
        self.line_no += 1;
        if self.finished {
            return Err(archive_err("there is data after the manifest"));
        }
        let at = self.line_no;
        let text = self.line.trim_end_matches('\n');
        if text.starts_with('[') {
            let Some((name, width, rows, hasher)) = self.table.as_mut() else {
                return Err(archive_err(format!("line {at}: a row outside a table")));
            };
            let row: Vec<Json> = serde_json::from_str(text)
                .map_err(|e| archive_err(format!("line {at} (table `{name}`): {e}")))?;
            if row.len() != *width {
                return Err(archive_err(format!(
                    "line {at} (table `{name}`): {} values for {width} columns",
                    row.len()
                )));
            }
            hasher.update(text.as_bytes());
            hasher.update(b"\n");
            *rows += 1;
            return Ok(Some(Record::Row(row)));
        }
        let record: Json =
            serde_json::from_str(text).map_err(|e| archive_err(format!("line {at}: {e}")))?;
        if self.header.is_none() {
            let header: Manifest = serde_json::from_value(record)
                .map_err(|_| archive_err("it does not start with a zeroscale backup header"))?;
            if header.format != FORMAT_NAME {
                return Err(archive_err(format!("unknown format `{}`", header.format)));
            }
            if header.version > FORMAT_VERSION {
                return Err(archive_err(format!(
                    "format version {} is newer than this zeroscale reads ({FORMAT_VERSION}): \
                     restore it with zeroscale {} or newer",
                    header.version, header.zeroscale
                )));
            }
            self.header = Some(header.clone());
            return Ok(Some(Record::Header(header)));
        }
        if let Some(name) = record.get("table").and_then(Json::as_str) {
            if let Some((open, ..)) = &self.table {
                return Err(archive_err(format!(
                    "line {at}: table `{name}` starts inside `{open}`"
                )));
            }
            let columns: Vec<String> = record
                .get("columns")
                .and_then(|c| serde_json::from_value(c.clone()).ok())
                .ok_or_else(|| archive_err(format!("line {at}: table `{name}` has no columns")))?;
            self.table = Some((name.to_owned(), columns.len(), 0, Sha256::new()));
            return Ok(Some(Record::Table {
                name: name.to_owned(),
                columns,
            }));
        }
        if let Some(name) = record.get("end").and_then(Json::as_str) {
            let Some((open, _, rows, hasher)) = self.table.take() else {
                return Err(archive_err(format!(
                    "line {at}: end of `{name}` outside a table"
                )));
            };
            let summary: TableSummary = TableSummary {
                name: name.to_owned(),
                rows: record
                    .get("rows")
                    .and_then(Json::as_u64)
                    .unwrap_or(u64::MAX),
                sha256: record
                    .get("sha256")
                    .and_then(Json::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            };
            let actual = zeroscale_core::hex(&hasher.finalize());
            if open != name || summary.rows != rows || summary.sha256 != actual {
                return Err(archive_err(format!(
                    "table `{open}` does not match its checksum or row count ({rows} rows read, \
                     {} recorded): the file was changed or damaged",
                    summary.rows
                )));
            }
            self.seen.push(summary.clone());
            return Ok(Some(Record::End(summary)));
        }
        if let Some(m) = record.get("manifest") {
            let manifest: Manifest = serde_json::from_value(m.clone())
                .map_err(|e| archive_err(format!("line {at}: the manifest: {e}")))?;
            if self.table.is_some() {
                return Err(archive_err("the manifest comes inside a table"));
            }
            let header = self.header.as_ref().expect("read first");
            let same_header = manifest.version == header.version
                && manifest.schema == header.schema
                && manifest.engine == header.engine
                && manifest.created_at == header.created_at;
            if !same_header || manifest.tables != self.seen {
                return Err(archive_err(
                    "the manifest does not match the tables in the file (a table is missing, \
                     extra or changed)",
                ));
            }
            self.finished = true;
            return Ok(Some(Record::Manifest(manifest)));
        }
        Err(archive_err(format!("line {at}: an unknown record")))
    }
}

fn gz_reader(input: impl Read) -> BufReader<flate2::read::GzDecoder<impl Read>> {
    BufReader::with_capacity(1 << 16, flate2::read::GzDecoder::new(input))
}

/// Reads a whole archive and checks it: format and version, every table's rows against
/// its checksum, the manifest against the tables; returns the manifest.
pub fn verify(input: impl Read) -> Result<Manifest> {
    let mut reader = Reader::new(gz_reader(input));
    loop {
        match reader.next()? {
            Some(Record::Manifest(m)) => {
                // Nothing may follow it.
                if reader.next()?.is_some() {
                    return Err(archive_err("there is data after the manifest"));
                }
                return Ok(m);
            }
            Some(_) => {}
            None => return Err(archive_err("no manifest")),
        }
    }
}

// ------------------------------------------------------------------------- loading

/// How to restore.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RestoreOptions {
    /// Empty a target that has rows (in the same transaction as the load) instead of
    /// refusing it.
    pub replace: bool,
}

/// Names of the known migrations, oldest first.
fn known_migrations() -> Vec<String> {
    Migrator::migrations()
        .iter()
        .map(|m| m.name().to_owned())
        .collect()
}

/// Brings the target, inside the load's transaction `txn`, to exactly the archive's schema
/// `schema_name`, so that the archive loads into the tables it was written from and every
/// newer migration then runs on its rows: a target behind it is migrated up to it; a target
/// already past it (say, a server of a newer version started on it first) is migrated down
/// to it, which only ever happens to tables that are empty or being replaced. Refuses a
/// target with rows unless `options.replace`, and then empties it. Returns the tables to
/// load.
async fn prepare_target(
    db: &Db,
    txn: &DatabaseTransaction,
    schema_name: &str,
    options: RestoreOptions,
) -> Result<Vec<TablePlan>> {
    let known = known_migrations();
    let Some(archive_at) = known.iter().position(|m| m == schema_name) else {
        return Err(Error::invalid_input(format!(
            "the archive's schema `{schema_name}` is not one this program knows: restore it \
             with the program (zeroscale, or the app built on it, with its migrations) and \
             version that wrote it, or a newer one"
        )));
    };
    let map = |e| db.map_err(e);
    if db.sql_dialect() == Dialect::Postgres {
        // The same lock `migrate up` holds: a server starting with `auto_migrate` waits.
        txn.execute_unprepared(&format!(
            "SELECT pg_advisory_xact_lock({})",
            crate::migrate::MIGRATION_LOCK_KEY
        ))
        .await
        .map_err(map)?;
    }
    let read = |txn| {
        let src = schema::Src {
            db,
            conn: sea_orm::DatabaseExecutor::Transaction(txn),
        };
        // Every table, jobs included: a target's jobs make it non-empty, and a
        // replaced target keeps none of them.
        let all = BackupOptions { with_jobs: true };
        async move { plan(&schema::introspect_in(&src).await?, all) }
    };
    let current = read(txn).await?;
    for table in current.iter().rev() {
        if !options.replace {
            let row = txn
                .query_one_raw(Statement::from_string(
                    ConnectionTrait::get_database_backend(txn),
                    format!("SELECT 1 AS one FROM {} LIMIT 1", quote(&table.name)),
                ))
                .await
                .map_err(map)?;
            if row.is_some() {
                return Err(Error::conflict(format!(
                    "the target database ({}) is not empty (table `{}` has rows): restore \
                     into an empty database, or pass --replace to replace its contents",
                    db.location(),
                    table.name
                )));
            }
        }
        // Children before parents, so foreign keys hold at every step.
        txn.execute_unprepared(&format!("DELETE FROM {}", quote(&table.name)))
            .await
            .map_err(map)?;
    }
    let applied = Migrator::get_applied_migrations(txn)
        .await
        .map_err(map)?
        .len();
    let wanted = archive_at + 1;
    if applied > wanted {
        Migrator::down(txn, Some((applied - wanted) as u32))
            .await
            .map_err(map)?;
    } else if applied < wanted {
        Migrator::up(txn, Some((wanted - applied) as u32))
            .await
            .map_err(map)?;
    }
    read(txn).await
}

/// Rows of one table being loaded, flushed in multi-row INSERTs.
struct Batch<'a> {
    table: &'a TablePlan,
    /// Where each archive column goes among the target's columns.
    positions: Vec<usize>,
    columns: Vec<String>,
    rows: Vec<Vec<sea_orm::Value>>,
    per_batch: usize,
}

/// Where a load writes: an SQL database inside the load's transaction, or MongoDB.
enum Target<'a> {
    Sql(&'a DatabaseTransaction),
    /// MongoDB, and whether the load has changed it yet (what a failure must undo).
    #[cfg(feature = "mongodb")]
    Mongo(&'a crate::mongodb::Mongo, &'a std::sync::atomic::AtomicBool),
}

impl Batch<'_> {
    async fn flush(&mut self, db: &Db, target: &Target<'_>) -> Result<()> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let txn = match target {
            Target::Sql(txn) => *txn,
            #[cfg(feature = "mongodb")]
            Target::Mongo(m, changed) => {
                let rows = std::mem::take(&mut self.rows);
                changed.store(true, std::sync::atomic::Ordering::SeqCst);
                return mongo::insert(m, self.table, &self.columns, rows).await;
            }
        };
        let width = self.columns.len();
        let mut sql = format!(
            "INSERT INTO {} ({}) VALUES ",
            quote(&self.table.name),
            self.columns
                .iter()
                .map(|c| quote(c))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut values = Vec::with_capacity(self.rows.len() * width);
        for (r, row) in self.rows.drain(..).enumerate() {
            if r > 0 {
                sql.push_str(", ");
            }
            sql.push('(');
            for (c, value) in row.into_iter().enumerate().take(width) {
                if c > 0 {
                    sql.push_str(", ");
                }
                match db.sql_dialect() {
                    Dialect::Postgres => sql.push_str(&format!("${}", values.len() + 1)),
                    Dialect::Sqlite => sql.push('?'),
                }
                values.push(value);
            }
            sql.push(')');
        }
        txn.execute_raw(Statement::from_sql_and_values(
            db.conn()?.get_database_backend(),
            sql,
            values,
        ))
        .await
        .map_err(|e| {
            let inner = db.map_err(e);
            Error::invalid_input(format!(
                "loading table `{}` failed: {inner}",
                self.table.name
            ))
        })?;
        Ok(())
    }
}

/// What a restore or copy loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreReport {
    /// The archive's manifest (for a copy, the source's).
    pub manifest: Manifest,
    /// Rows loaded, all tables.
    pub rows: u64,
}

/// Loads the archive `reader` reads into `db` in one transaction (prepared by
/// [`prepare_target`]); every check of [`Reader`] runs as it goes, so a bad archive rolls
/// back.
async fn load<R: BufRead>(
    db: &Db,
    mut reader: Reader<R>,
    options: RestoreOptions,
    progress: &mut dyn FnMut(Progress),
    expected: Option<&Manifest>,
) -> Result<RestoreReport> {
    let Some(Record::Header(header)) = reader.next()? else {
        return Err(archive_err("no header"));
    };
    #[cfg(feature = "mongodb")]
    if let Some(m) = db.mongo() {
        return mongo::load(db, m, reader, options, progress, expected, &header).await;
    }
    let txn = db.begin_write().await?;
    if db.sql_dialect() == Dialect::Sqlite {
        // One transaction of millions of rows: with SQLite's default 2 MB page cache the
        // dirty pages spill into the WAL and are read back from it for every index update
        // (most of a restore's time went to pread/pwrite). A bounded 64 MB cache for this
        // connection keeps them in memory; it is set back before the connection returns to
        // the pool.
        txn.execute_unprepared(&format!("PRAGMA cache_size = -{LOAD_CACHE_KIB}"))
            .await
            .map_err(|e| db.map_err(e))?;
    }
    let loaded = load_in(
        db,
        &Target::Sql(&txn),
        &mut reader,
        options,
        progress,
        expected,
        &header,
    )
    .await;
    if db.sql_dialect() == Dialect::Sqlite {
        let reset = txn
            .execute_unprepared("PRAGMA cache_size = -2000")
            .await
            .map_err(|e| db.map_err(e));
        if loaded.is_ok() {
            reset?;
        }
    }
    let (manifest, total) = loaded?;
    // The migrations newer than the archive run on its rows, in the same transaction: a
    // failing one leaves the target as it was.
    Migrator::up(&txn, None).await.map_err(|e| db.map_err(e))?;
    txn.commit().await.map_err(|e| db.map_err(e))?;
    let targets = plan(
        &schema::introspect(db).await?,
        BackupOptions { with_jobs: true },
    )?;
    fix_engine_state(db, &targets).await?;
    Ok(RestoreReport {
        manifest,
        rows: total,
    })
}

/// The load proper, in `txn`: the target prepared, every row inserted; the manifest and
/// the number of rows.
async fn load_in<R: BufRead>(
    db: &Db,
    target: &Target<'_>,
    reader: &mut Reader<R>,
    options: RestoreOptions,
    progress: &mut dyn FnMut(Progress),
    expected: Option<&Manifest>,
    header: &Manifest,
) -> Result<(Manifest, u64)> {
    let targets = match target {
        Target::Sql(txn) => prepare_target(db, txn, &header.schema, options).await?,
        #[cfg(feature = "mongodb")]
        Target::Mongo(m, changed) => mongo::prepare_target(m, header, options, changed).await?,
    };
    let mut batch: Option<Batch<'_>> = None;
    let mut total = 0u64;
    let mut manifest = None;
    while let Some(record) = reader.next()? {
        match record {
            Record::Header(_) => return Err(archive_err("a second header")),
            Record::Table { name, columns } => {
                #[cfg(feature = "mongodb")]
                if matches!(target, Target::Mongo(..)) && JOB_TABLES.contains(&name.as_str()) {
                    return Err(mongo::no_jobs());
                }
                let table = targets.iter().find(|t| t.name == name).ok_or_else(|| {
                    archive_err(format!("table `{name}` does not exist in this schema"))
                })?;
                let positions = columns
                    .iter()
                    .map(|c| {
                        table.columns.iter().position(|t| t == c).ok_or_else(|| {
                            archive_err(format!(
                                "column `{name}.{c}` does not exist in this schema"
                            ))
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                progress(Progress::Table {
                    name: name.clone(),
                    rows: expected
                        .and_then(|m| m.tables.iter().find(|t| t.name == name).map(|t| t.rows)),
                });
                batch = Some(Batch {
                    table,
                    per_batch: (BATCH_PARAMS / columns.len().max(1)).clamp(1, 1000),
                    positions,
                    columns,
                    rows: Vec::new(),
                });
            }
            Record::Row(row) => {
                let b = batch
                    .as_mut()
                    .expect("the reader checks rows are in a table");
                let mut values = Vec::with_capacity(row.len());
                for (i, v) in row.iter().enumerate() {
                    let kind = b.table.kinds[b.positions[i]];
                    let column = &b.columns[i];
                    if db.dialect() == Some(Dialect::Postgres)
                        && matches!(kind, Kind::Text | Kind::Json)
                        && value::has_nul(v)
                    {
                        let key = b
                            .table
                            .primary_key
                            .iter()
                            .filter_map(|pk| {
                                b.columns
                                    .iter()
                                    .position(|c| c == pk)
                                    .map(|p| format!("{pk} = {}", row[p]))
                            })
                            .collect::<Vec<_>>()
                            .join(", ");
                        return Err(Error::invalid_input(format!(
                            "table `{}`, row {key}, column `{column}` holds a NUL character, \
                             which PostgreSQL cannot store in text or jsonb: change that value \
                             at the source (SQLite) and back up again",
                            b.table.name
                        )));
                    }
                    values.push(value::bind(v, kind).map_err(|e| {
                        archive_err(format!("table `{}`, column `{column}`: {e}", b.table.name))
                    })?);
                }
                b.rows.push(values);
                if b.rows.len() >= b.per_batch {
                    b.flush(db, target).await?;
                }
                total += 1;
                if total.is_multiple_of(10_000) {
                    progress(Progress::Rows(total));
                }
            }
            Record::End(summary) => {
                if let Some(mut b) = batch.take() {
                    b.flush(db, target).await?;
                }
                progress(Progress::TableDone {
                    name: summary.name,
                    rows: summary.rows,
                });
            }
            Record::Manifest(m) => manifest = Some(m),
        }
    }
    let manifest = manifest.ok_or_else(|| archive_err("no manifest"))?;
    if let Some(expected) = expected
        && *expected != manifest
    {
        return Err(archive_err(
            "the file changed between its check and its load",
        ));
    }
    Ok((manifest, total))
}

/// After a load: sequences (PostgreSQL), statistics, pgvector's side table.
async fn fix_engine_state(db: &Db, tables: &[TablePlan]) -> Result<()> {
    let backend = db.conn()?.get_database_backend();
    if db.sql_dialect() == Dialect::Postgres {
        for table in tables {
            for (column, kind) in table.columns.iter().zip(&table.kinds) {
                if *kind != Kind::Int {
                    continue;
                }
                let sql = format!(
                    "SELECT setval(s, (SELECT COALESCE(MAX({c}), 0) + 1 FROM {t}), false) \
                     FROM pg_get_serial_sequence('{t}', '{col}') AS s WHERE s IS NOT NULL",
                    c = quote(column),
                    t = quote(&table.name),
                    col = column.replace('\'', "''"),
                );
                db.conn()?
                    .execute_raw(Statement::from_string(backend, sql))
                    .await
                    .map_err(|e| db.map_err(e))?;
            }
        }
    }
    db.conn()?
        .execute_raw(Statement::from_string(backend, "ANALYZE"))
        .await
        .map_err(|e| db.map_err(e))?;
    #[cfg(feature = "pgvector")]
    if db.vector_backend() == crate::VectorBackend::Pgvector {
        crate::pgvector::rebuild(db).await?;
    }
    crate::domain::vector_index::reset_versions(db).await
}

/// Restores the archive that `open` opens into `db`: reads it once to verify it, then
/// again to load it in one transaction. Refuses a target with rows unless
/// `options.replace`; on any failure the target is left as it was.
pub async fn restore(
    db: &Db,
    open: &dyn Fn() -> std::io::Result<Box<dyn Read + Send>>,
    options: RestoreOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<RestoreReport> {
    let manifest = verify(open().map_err(io_err)?)?;
    let reader = Reader::new(gz_reader(open().map_err(io_err)?));
    load(db, reader, options, progress, Some(&manifest)).await
}

/// Copies every table of `from` (as a backup with `what` takes them) into `to` with no
/// file in between: a backup streamed through a pipe into a load, checked as it goes and
/// committed only when the whole stream checks out.
pub async fn copy(
    from: &Db,
    to: &Db,
    what: BackupOptions,
    options: RestoreOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<RestoreReport> {
    let (reader, writer) = std::io::pipe().map_err(io_err)?;
    let source = from.clone();
    let handle = tokio::runtime::Handle::current();
    let producer = std::thread::spawn(move || {
        let mut writer = writer;
        handle.block_on(async { backup(&source, &mut writer, what, &mut |_| {}).await })
    });
    let loaded = load(to, Reader::new(gz_reader(reader)), options, progress, None).await;
    let produced = producer.join().map_err(|_| {
        Error::backend(
            "backup",
            std::io::Error::other("the backup thread panicked"),
        )
    })?;
    let report = loaded?;
    let source_manifest = produced?;
    if source_manifest != report.manifest {
        return Err(archive_err("the copy does not match the source's manifest"));
    }
    Ok(report)
}
