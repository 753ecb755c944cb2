//! pgvector: vector search inside PostgreSQL when the server has the `vector` extension.
//!
//! The documents table (the same on every engine) keeps each vector as a blob: that stays
//! the source of truth. pgvector adds a side table, `document_vectors`, with a `vector`
//! column per document and one HNSW index per dimension count (a partial index on
//! `embedding::vector(N)`, built with `database.pgvector`'s `m` and `ef_construction`),
//! created on first use; documents stored before pgvector was enabled are backfilled then.
//! The side table is an engine-specific accelerator, like an index: it is outside the
//! schema-parity check.
//!
//! Every search asks the index for `ef_search` candidates (default 1000, the most it
//! gives). Filters (the collection, metadata) apply after the index scan. pgvector ≥ 0.8
//! scans on until `k` rows pass them (`hnsw.iterative_scan = strict_order`). Older
//! versions (0.6, 0.7) have no iterative scan: when fewer than `k` of the candidates pass
//! the filters, the search answers with an exact scan instead, so a filtered search never
//! comes back short.
//!
//! A graph index can miss true neighbours (on random vectors, most of them): [`recall`]
//! checks each index against exact scans of a sample, and while it finds less than
//! `min_recall` of the exact top 10, searches of that size scan exactly.

mod recall;

pub(crate) use recall::{check, index_answers};

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

use futures::TryStreamExt;
use sea_orm::{
    ConnectionTrait, DatabaseBackend, EntityTrait, FromQueryResult, Statement, TransactionTrait,
};
use serde_json::{Map, Value};
use zeroscale_core::config::PgvectorConfig;
use zeroscale_core::{Error, Result};

use crate::domain::decode_vector;
use crate::domain::entity::documents;
use crate::{Db, VectorSetup};

/// Whether the server can `CREATE EXTENSION vector`.
pub(crate) async fn available(db: &Db) -> Result<bool> {
    let row = db
        .conn()?
        .query_one_raw(Statement::from_string(
            DatabaseBackend::Postgres,
            "SELECT count(*) AS n FROM pg_available_extensions WHERE name = 'vector'",
        ))
        .await
        .map_err(|e| db.map_err(e))?;
    let n: i64 = row
        .map(|r| r.try_get("", "n"))
        .transpose()
        .map_err(|e| db.map_err(e))?
        .unwrap_or(0);
    Ok(n > 0)
}

/// A vector as a pgvector text literal, `[1,2.5,-3]`.
pub(crate) fn literal(vector: &[f32]) -> String {
    let mut out = String::with_capacity(vector.len() * 10 + 2);
    out.push('[');
    for (i, x) in vector.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&x.to_string());
    }
    out.push(']');
    out
}

async fn exec(db: &Db, conn: &impl ConnectionTrait, sql: &str) -> Result<()> {
    conn.execute_unprepared(sql)
        .await
        .map_err(|e| db.map_err(e))?;
    Ok(())
}

/// The version of the `vector` extension installed in the database, e.g. `(0, 6, 2)`.
async fn extension_version(db: &Db, conn: &impl ConnectionTrait) -> Result<(u32, u32, u32)> {
    let row = conn
        .query_one_raw(Statement::from_string(
            DatabaseBackend::Postgres,
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'",
        ))
        .await
        .map_err(|e| db.map_err(e))?
        .ok_or_else(|| Error::unavailable("the `vector` extension is not installed"))?;
    let text: String = row.try_get("", "extversion").map_err(|e| db.map_err(e))?;
    parse_version(&text)
        .ok_or_else(|| Error::unavailable(format!("cannot read the pgvector version `{text}`")))
}

/// `0.6.2` → `(0, 6, 2)`; a missing patch number is 0.
fn parse_version(text: &str) -> Option<(u32, u32, u32)> {
    let mut parts = text.trim().split('.').map(|p| p.parse::<u32>().ok());
    let major = parts.next()??;
    let minor = parts.next()??;
    let patch = parts.next().unwrap_or(Some(0))?;
    Some((major, minor, patch))
}

/// The extension, the side table and the backfill, once per pool.
pub(crate) async fn ensure_setup(db: &Db) -> Result<VectorSetup> {
    db.pgvector
        .setup
        .get_or_try_init(|| async {
            let txn = db.conn()?.begin().await.map_err(|e| db.map_err(e))?;
            // One process at a time sets up (replicas may start together).
            exec(db, &txn, "SELECT pg_advisory_xact_lock(7661626)").await?;
            exec(db, &txn, "CREATE EXTENSION IF NOT EXISTS vector").await?;
            let version = extension_version(db, &txn).await?;
            exec(
                db,
                &txn,
                "CREATE TABLE IF NOT EXISTS document_vectors (\
                   document_id varchar(36) PRIMARY KEY REFERENCES documents (id) ON DELETE CASCADE, \
                   dimensions integer NOT NULL, \
                   embedding vector NOT NULL)",
            )
            .await?;
            backfill(db, &txn).await?;
            txn.commit().await.map_err(|e| db.map_err(e))?;
            let setup = VectorSetup {
                iterative_scan: version >= (0, 8, 0),
            };
            tracing::debug!(?version, ?setup, "pgvector ready");
            Ok(setup)
        })
        .await
        .copied()
}

/// Sets pgvector up if this pool has not, then adds side-table rows for every document
/// that has none (after a restore loaded documents behind its back).
pub(crate) async fn rebuild(db: &Db) -> Result<()> {
    ensure_setup(db).await?;
    let txn = db.conn()?.begin().await.map_err(|e| db.map_err(e))?;
    exec(db, &txn, "SELECT pg_advisory_xact_lock(7661626)").await?;
    backfill(db, &txn).await?;
    txn.commit().await.map_err(|e| db.map_err(e))
}

/// Adds side-table rows for documents that have none.
async fn backfill(db: &Db, txn: &sea_orm::DatabaseTransaction) -> Result<()> {
    let missing: Vec<documents::Model> = documents::Entity::find()
        .from_raw_sql(Statement::from_string(
            DatabaseBackend::Postgres,
            "SELECT d.* FROM documents d \
             WHERE NOT EXISTS (SELECT 1 FROM document_vectors v WHERE v.document_id = d.id)",
        ))
        .stream(txn)
        .await
        .map_err(|e| db.map_err(e))?
        .try_collect()
        .await
        .map_err(|e| db.map_err(e))?;
    for doc in missing {
        if let Some(vector) = decode_vector(&doc.vector) {
            insert(db, txn, &doc.id, &vector).await?;
        }
    }
    Ok(())
}

/// HNSW indexes (database location, index name) this process has made sure of.
fn indexed() -> &'static Mutex<HashSet<(String, String)>> {
    static INDEXED: OnceLock<Mutex<HashSet<(String, String)>>> = OnceLock::new();
    INDEXED.get_or_init(Mutex::default)
}

/// The name of the index for vectors of `dims` dimensions built with `options`: pgvector's
/// default build keeps the name it always had, any other says its parameters, so a change
/// of parameters builds a new index.
fn index_name(dims: usize, options: &PgvectorConfig) -> String {
    let base = format!("document_vectors_hnsw_{dims}");
    let default = PgvectorConfig::default();
    if (options.m, options.ef_construction) == (default.m, default.ef_construction) {
        base
    } else {
        format!("{base}_m{}_ef{}", options.m, options.ef_construction)
    }
}

/// Whether `name` is an index for vectors of `dims` dimensions (any parameters).
fn is_index_for(name: &str, dims: usize) -> bool {
    let base = format!("document_vectors_hnsw_{dims}");
    name == base
        || name
            .strip_prefix(&base)
            .is_some_and(|rest| rest.starts_with("_m"))
}

/// The HNSW index for vectors of `dims` dimensions, with the configured parameters:
/// created if missing; indexes of the same size with other parameters are dropped.
async fn ensure_index(db: &Db, dims: usize) -> Result<()> {
    let options = &db.pgvector.options;
    let name = index_name(dims, options);
    let key = (db.location().to_owned(), name.clone());
    if indexed()
        .lock()
        .map(|set| set.contains(&key))
        .unwrap_or(false)
    {
        return Ok(());
    }
    let txn = db.conn()?.begin().await.map_err(|e| db.map_err(e))?;
    exec(db, &txn, "SELECT pg_advisory_xact_lock(7661626)").await?;
    let existing: Vec<String> = txn
        .query_all_raw(Statement::from_string(
            DatabaseBackend::Postgres,
            "SELECT indexname::text AS name FROM pg_indexes \
             WHERE schemaname = current_schema() AND tablename = 'document_vectors'",
        ))
        .await
        .map_err(|e| db.map_err(e))?
        .iter()
        .map(|row| row.try_get::<String>("", "name"))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| db.map_err(e))?;
    if !existing.contains(&name) {
        if options.build_memory_mb > 0 {
            exec(
                db,
                &txn,
                &format!(
                    "SET LOCAL maintenance_work_mem = '{}MB'",
                    options.build_memory_mb
                ),
            )
            .await?;
        }
        tracing::info!(
            index = %name,
            m = options.m,
            ef_construction = options.ef_construction,
            "building pgvector's HNSW index (writes to documents wait until it is built)"
        );
        let started = std::time::Instant::now();
        exec(
            db,
            &txn,
            &format!(
                "CREATE INDEX IF NOT EXISTS {name} ON document_vectors USING hnsw \
                 ((embedding::vector({dims})) vector_cosine_ops) \
                 WITH (m = {}, ef_construction = {}) WHERE dimensions = {dims}",
                options.m, options.ef_construction
            ),
        )
        .await?;
        tracing::info!(index = %name, seconds = started.elapsed().as_secs_f64(), "pgvector index built");
    }
    for old in existing
        .iter()
        .filter(|old| **old != name && is_index_for(old, dims))
    {
        tracing::info!(index = %old, "dropping a pgvector index built with other parameters");
        exec(db, &txn, &format!("DROP INDEX IF EXISTS {old}")).await?;
    }
    txn.commit().await.map_err(|e| db.map_err(e))?;
    if let Ok(mut set) = indexed().lock() {
        set.insert(key);
    }
    Ok(())
}

/// Stores a document's vector in the side table.
pub(crate) async fn insert(
    db: &Db,
    conn: &impl ConnectionTrait,
    document_id: &str,
    vector: &[f32],
) -> Result<()> {
    let dims =
        i32::try_from(vector.len()).map_err(|_| Error::invalid_input("vector is too long"))?;
    conn.execute_raw(Statement::from_sql_and_values(
        DatabaseBackend::Postgres,
        "INSERT INTO document_vectors (document_id, dimensions, embedding) \
         VALUES ($1, $2, $3::vector) ON CONFLICT (document_id) DO NOTHING",
        [document_id.into(), dims.into(), literal(vector).into()],
    ))
    .await
    .map_err(|e| db.map_err(e))?;
    Ok(())
}

/// The top `k` documents of `collection` by cosine similarity, through the HNSW index,
/// or by an exact scan when `exact` (the index failed its recall check: see
/// [`index_answers`]).
pub(crate) async fn search(
    db: &Db,
    collection: &str,
    query: &[f32],
    k: usize,
    filter: Option<&Map<String, Value>>,
    exact: bool,
) -> Result<Vec<(documents::Model, f32)>> {
    let setup = ensure_setup(db).await?;
    let dims = query.len();
    ensure_index(db, dims).await?;
    let scan = Scan {
        ef_search: db.pgvector.options.ef_search,
        iterative: setup.iterative_scan,
        exact,
    };
    let mut values: Vec<sea_orm::Value> = vec![literal(query).into(), collection.into()];
    let mut conditions = String::new();
    if let Some(filter) = filter {
        for (key, want) in filter {
            values.push(key.clone().into());
            values.push(want.to_string().into());
            let (kp, vp) = (values.len() - 1, values.len());
            conditions.push_str(&format!(" AND (d.metadata -> ${kp}) = ${vp}::jsonb"));
        }
    }
    // `dims` is a number we computed, so formatting it into the SQL is safe; it must be a
    // literal for the planner to match the partial index.
    let sql = format!(
        "SELECT d.*, (1 - (v.embedding::vector({dims}) <=> $1::vector({dims})))::float8 AS score \
         FROM document_vectors v JOIN documents d ON d.id = v.document_id \
         WHERE v.dimensions = {dims} AND d.collection = $2{conditions} \
         ORDER BY v.embedding::vector({dims}) <=> $1::vector({dims}) \
         LIMIT {k}"
    );
    let query = Statement::from_sql_and_values(DatabaseBackend::Postgres, sql, values);
    // A search is stale-tolerant: a replica may answer (see `crate::replicas`).
    let rows = db
        .stale_read(|conn| ranked(conn, query.clone(), k, scan))
        .await?;
    rows.iter()
        .map(|row| {
            let model = documents::Model::from_query_result(row, "").map_err(|e| db.map_err(e))?;
            let score: f64 = row.try_get("", "score").map_err(|e| db.map_err(e))?;
            Ok((model, score as f32))
        })
        .collect()
}

/// How a search reads the side table.
#[derive(Debug, Clone, Copy)]
struct Scan {
    /// Candidates the index gives (`hnsw.ef_search`).
    ef_search: u32,
    /// pgvector ≥ 0.8: scan on until `k` rows pass the filters.
    iterative: bool,
    /// Skip the index: rank every vector exactly.
    exact: bool,
}

/// Runs the search `query` in a transaction of its own (for `SET LOCAL`).
async fn ranked(
    conn: sea_orm::DatabaseConnection,
    query: Statement,
    k: usize,
    scan: Scan,
) -> std::result::Result<Vec<sea_orm::QueryResult>, sea_orm::DbErr> {
    let txn = conn.begin().await?;
    let set = |sql: &str| Statement::from_string(DatabaseBackend::Postgres, sql.to_owned());
    if scan.exact {
        txn.execute_raw(set("SET LOCAL enable_indexscan = off"))
            .await?;
        let rows = txn.query_all_raw(query).await?;
        txn.commit().await?;
        return Ok(rows);
    }
    // The recall of a graph search grows with its candidate list (at 100,000 random
    // vectors, 0.08 at pgvector's default of 40, 0.60 at 1000).
    txn.execute_raw(set(&format!(
        "SET LOCAL hnsw.ef_search = {}",
        scan.ef_search
    )))
    .await?;
    if scan.iterative {
        // Keep scanning the index until `k` rows pass the filters, in exact distance order.
        txn.execute_raw(set("SET LOCAL hnsw.iterative_scan = strict_order"))
            .await?;
    }
    // Without an iterative scan the index gives those candidates at most...
    let mut rows = txn.query_all_raw(query.clone()).await?;
    if rows.len() < k && !scan.iterative {
        // ...and when the filters left fewer than `k`, rank every candidate exactly.
        txn.execute_raw(set("SET LOCAL enable_indexscan = off"))
            .await?;
        rows = txn.query_all_raw(query).await?;
    }
    txn.commit().await?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    #[test]
    fn versions() {
        assert_eq!(super::parse_version("0.6.2"), Some((0, 6, 2)));
        assert_eq!(super::parse_version("0.8"), Some((0, 8, 0)));
        assert_eq!(super::parse_version("x"), None);
        assert!(super::parse_version("0.7.4").unwrap() < (0, 8, 0));
    }

    #[test]
    fn index_names_say_their_parameters() {
        use zeroscale_core::config::PgvectorConfig;
        let default = PgvectorConfig::default();
        assert_eq!(
            super::index_name(384, &default),
            "document_vectors_hnsw_384"
        );
        let heavy = PgvectorConfig {
            m: 48,
            ef_construction: 256,
            ..default
        };
        let name = super::index_name(384, &heavy);
        assert_eq!(name, "document_vectors_hnsw_384_m48_ef256");
        assert!(super::is_index_for(&name, 384));
        assert!(super::is_index_for("document_vectors_hnsw_384", 384));
        assert!(!super::is_index_for(&name, 38));
        assert!(!super::is_index_for("document_vectors_hnsw_3840", 384));
        assert!(!super::is_index_for("document_vectors_pkey", 384));
    }

    #[test]
    fn literal_format() {
        assert_eq!(super::literal(&[1.0, -2.5, 0.125]), "[1,-2.5,0.125]");
    }
}
