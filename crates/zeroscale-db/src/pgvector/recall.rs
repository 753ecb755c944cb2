//! The recall check of pgvector's HNSW indexes.
//!
//! A graph index answers fast but may miss true neighbours: on real embeddings pgvector's
//! default build finds the exact top 10, on random 384-d vectors about 60% of it. So each
//! pool checks each index it searches: it takes `recall_sample` stored vectors at random
//! and searches each (itself left out) through the index and by an exact scan, over every
//! vector of that size. While the index finds less than `min_recall` of the exact top 10,
//! searches of that size are exact (from the in-memory index, or a scan: `fallback`), and
//! the log says so once per check, so a search never silently returns poor neighbours.
//!
//! The first search of a size starts a check in the background and uses the index until
//! it ends; a search starts another when the last one is `recall_check_secs` old.
//! [`check`] runs one at once (`Documents::check_vector_index`).

use std::collections::HashSet;
use std::time::Instant;

use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};
use zeroscale_core::Result;
use zeroscale_core::metrics as m;

use super::{Scan, ensure_index, ensure_setup, ranked};
use crate::{Db, VectorIndexCheck};

/// Neighbours compared per sampled vector.
const TOP: usize = 10;

/// Whether searches of `dims`-dimensional vectors use the index now; starts a check in the
/// background when one is due.
pub(crate) fn index_answers(db: &Db, dims: usize) -> bool {
    let options = &db.pgvector.options;
    if options.min_recall <= 0.0 {
        return true;
    }
    let Ok(mut checks) = db.pgvector.checks.lock() else {
        return true;
    };
    let state = checks.entry(dims).or_default();
    let due = match state.started {
        None => true,
        Some(_) if options.recall_check_secs == 0 => false,
        Some(at) => at.elapsed().as_secs() >= options.recall_check_secs,
    };
    if due && !state.running {
        state.running = true;
        state.started = Some(Instant::now());
        let db = db.clone();
        tokio::spawn(async move {
            if let Err(error) = check(&db, dims).await {
                tracing::warn!(
                    dimensions = dims,
                    %error,
                    "the recall check of pgvector's index failed; searches keep their last verdict"
                );
            }
            if let Ok(mut checks) = db.pgvector.checks.lock() {
                checks.entry(dims).or_default().running = false;
            }
        });
    }
    state.last.as_ref().is_none_or(|c| c.index_answers)
}

/// Checks the index of `dims`-dimensional vectors now, and searches follow its verdict.
pub(crate) async fn check(db: &Db, dims: usize) -> Result<VectorIndexCheck> {
    let started = Instant::now();
    if let Ok(mut checks) = db.pgvector.checks.lock() {
        checks.entry(dims).or_default().started = Some(started);
    }
    let setup = ensure_setup(db).await?;
    ensure_index(db, dims).await?;
    let options = &db.pgvector.options;
    let conn = db.conn()?.clone();
    let count = conn
        .query_one_raw(Statement::from_string(
            DatabaseBackend::Postgres,
            format!("SELECT count(*) AS n FROM document_vectors WHERE dimensions = {dims}"),
        ))
        .await
        .map_err(|e| db.map_err(e))?
        .map(|row| row.try_get::<i64>("", "n"))
        .transpose()
        .map_err(|e| db.map_err(e))?
        .unwrap_or(0);
    // Ids first (a sort of every id), then each sampled vector by its key.
    let ids: Vec<String> = conn
        .query_all_raw(Statement::from_string(
            DatabaseBackend::Postgres,
            format!(
                "SELECT document_id FROM document_vectors WHERE dimensions = {dims} \
                 ORDER BY random() LIMIT {}",
                options.recall_sample
            ),
        ))
        .await
        .map_err(|e| db.map_err(e))?
        .iter()
        .map(|row| row.try_get::<String>("", "document_id"))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| db.map_err(e))?;
    // `dims` is a number we computed: a literal, so the planner matches the partial index.
    let nearest = format!(
        "SELECT document_id FROM document_vectors \
         WHERE dimensions = {dims} AND document_id <> $2 \
         ORDER BY embedding::vector({dims}) <=> $1::vector({dims}) LIMIT {TOP}"
    );
    let (mut found, mut wanted) = (0usize, 0usize);
    for id in &ids {
        let Some(row) = conn
            .query_one_raw(Statement::from_sql_and_values(
                DatabaseBackend::Postgres,
                "SELECT embedding::text AS e FROM document_vectors WHERE document_id = $1",
                [id.clone().into()],
            ))
            .await
            .map_err(|e| db.map_err(e))?
        else {
            continue; // deleted meanwhile
        };
        let vector: String = row.try_get("", "e").map_err(|e| db.map_err(e))?;
        let query = Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            nearest.clone(),
            [vector.into(), id.clone().into()],
        );
        let ids_of = |rows: Vec<sea_orm::QueryResult>| {
            rows.iter()
                .map(|r| r.try_get::<String>("", "document_id"))
                .collect::<std::result::Result<HashSet<_>, _>>()
        };
        let scan = Scan {
            ef_search: options.ef_search,
            iterative: setup.iterative_scan,
            exact: false,
        };
        let index = ranked(conn.clone(), query.clone(), TOP, scan)
            .await
            .and_then(ids_of)
            .map_err(|e| db.map_err(e))?;
        let exact = ranked(
            conn.clone(),
            query,
            TOP,
            Scan {
                exact: true,
                ..scan
            },
        )
        .await
        .and_then(ids_of)
        .map_err(|e| db.map_err(e))?;
        found += exact.intersection(&index).count();
        wanted += exact.len();
    }
    let recall = if wanted == 0 {
        1.0
    } else {
        found as f64 / wanted as f64
    };
    let result = VectorIndexCheck {
        dimensions: dims,
        vectors: u64::try_from(count).unwrap_or(0),
        sample: ids.len(),
        recall,
        min_recall: options.min_recall,
        index_answers: recall >= options.min_recall,
        took: started.elapsed(),
    };
    record(db, &result);
    Ok(result)
}

/// Makes `result` the verdict for its size; the gauge and the log say what it is.
fn record(db: &Db, result: &VectorIndexCheck) {
    let dims = result.dimensions;
    metrics::gauge!(m::PGVECTOR_RECALL, "dimensions" => dims.to_string()).set(result.recall);
    let before = db.pgvector.checks.lock().ok().and_then(|mut checks| {
        let state = checks.entry(dims).or_default();
        state.last.replace(result.clone())
    });
    if !result.index_answers {
        tracing::warn!(
            dimensions = dims,
            recall = result.recall,
            min_recall = result.min_recall,
            vectors = result.vectors,
            "pgvector's HNSW index for {dims}-dimensional vectors found {:.2} of the exact top \
             {TOP} for {} stored vectors, less than database.pgvector.min_recall ({}): \
             searches of this size scan every vector exactly until a check passes. Build a \
             denser graph (database.pgvector.m and ef_construction; docs/database.md has \
             figures) or search in zeroscale (database.vector_search = \"exact\")",
            result.recall,
            result.sample,
            result.min_recall
        );
    } else if before.is_some_and(|b| !b.index_answers) {
        tracing::info!(
            dimensions = dims,
            recall = result.recall,
            "pgvector's index passes its recall check again: searches use it"
        );
    } else {
        tracing::debug!(dimensions = dims, recall = result.recall, took = ?result.took, "pgvector recall check");
    }
}
