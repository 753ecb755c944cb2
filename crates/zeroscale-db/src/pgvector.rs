//! pgvector: vector search inside PostgreSQL when the server has the `vector` extension.
//!
//! The documents table (the same on every engine) keeps each vector as a blob: that stays
//! the source of truth. pgvector adds a side table, `document_vectors`, with a `vector`
//! column per document and one HNSW index per dimension count (a partial index on
//! `embedding::vector(N)`), created on first use; documents stored before pgvector was
//! enabled are backfilled then. The side table is an engine-specific accelerator, like an
//! index: it is outside the schema-parity check.
//!
//! Every search asks the index for the most candidates it can give (`hnsw.ef_search =
//! 1000`). Filters (the collection, metadata) apply after the index scan. pgvector ≥ 0.8
//! scans on until `k` rows pass them (`hnsw.iterative_scan = strict_order`). Older
//! versions (0.6, 0.7) have no iterative scan: when fewer than `k` of the candidates pass
//! the filters, the search answers with an exact scan instead, so a filtered search never
//! comes back short.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

use futures::TryStreamExt;
use sea_orm::{
    ConnectionTrait, DatabaseBackend, EntityTrait, FromQueryResult, Statement, TransactionTrait,
};
use serde_json::{Map, Value};
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
    db.vector_setup
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

/// Dimension counts whose HNSW index this process has made sure of.
fn indexed() -> &'static Mutex<HashSet<(String, usize)>> {
    static INDEXED: OnceLock<Mutex<HashSet<(String, usize)>>> = OnceLock::new();
    INDEXED.get_or_init(Mutex::default)
}

/// The HNSW index for vectors of `dims` dimensions, created if missing.
async fn ensure_index(db: &Db, dims: usize) -> Result<()> {
    let key = (db.location().to_owned(), dims);
    if indexed()
        .lock()
        .map(|set| set.contains(&key))
        .unwrap_or(false)
    {
        return Ok(());
    }
    let txn = db.conn()?.begin().await.map_err(|e| db.map_err(e))?;
    exec(db, &txn, "SELECT pg_advisory_xact_lock(7661626)").await?;
    exec(
        db,
        &txn,
        &format!(
            "CREATE INDEX IF NOT EXISTS document_vectors_hnsw_{dims} ON document_vectors \
             USING hnsw ((embedding::vector({dims})) vector_cosine_ops) WHERE dimensions = {dims}"
        ),
    )
    .await?;
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

/// The top `k` documents of `collection` by cosine similarity, through the HNSW index.
pub(crate) async fn search(
    db: &Db,
    collection: &str,
    query: &[f32],
    k: usize,
    filter: Option<&Map<String, Value>>,
) -> Result<Vec<(documents::Model, f32)>> {
    let setup = ensure_setup(db).await?;
    let dims = query.len();
    ensure_index(db, dims).await?;
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
        .stale_read(|conn| ranked(conn, query.clone(), k, setup.iterative_scan))
        .await?;
    rows.iter()
        .map(|row| {
            let model = documents::Model::from_query_result(row, "").map_err(|e| db.map_err(e))?;
            let score: f64 = row.try_get("", "score").map_err(|e| db.map_err(e))?;
            Ok((model, score as f32))
        })
        .collect()
}

/// Runs the search `query` in a transaction of its own (for `SET LOCAL`).
async fn ranked(
    conn: sea_orm::DatabaseConnection,
    query: Statement,
    k: usize,
    iterative_scan: bool,
) -> std::result::Result<Vec<sea_orm::QueryResult>, sea_orm::DbErr> {
    let txn = conn.begin().await?;
    let set = |sql: &str| Statement::from_string(DatabaseBackend::Postgres, sql.to_owned());
    // The widest candidate list the index takes (1000; pgvector's default is 40): the
    // recall of a graph search grows with it (at 100,000 random vectors, 0.08 at 40).
    txn.execute_raw(set("SET LOCAL hnsw.ef_search = 1000"))
        .await?;
    if iterative_scan {
        // Keep scanning the index until `k` rows pass the filters, in exact distance order.
        txn.execute_raw(set("SET LOCAL hnsw.iterative_scan = strict_order"))
            .await?;
    }
    // Without an iterative scan the index gives those candidates at most...
    let mut rows = txn.query_all_raw(query.clone()).await?;
    if rows.len() < k && !iterative_scan {
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
    fn literal_format() {
        assert_eq!(super::literal(&[1.0, -2.5, 0.125]), "[1,-2.5,0.125]");
    }
}
