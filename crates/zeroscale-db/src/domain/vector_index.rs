//! The in-memory vector index: exact cosine top-k over a collection's vectors held
//! contiguously in memory, so a search reads them at memory speed instead of streaming
//! every row (content and metadata included) out of the database.
//!
//! The `documents` table stays the source of truth; the index is a cache of it, checked
//! on every search. Each collection has a row in `vector_collections` whose `version` (a
//! random token) every write to the collection changes in its own transaction, after
//! taking that row's lock, so writers to one collection take turns. A search reads the
//! version first: when the index was built at that version it answers from memory;
//! otherwise it brings itself up to date from the table (the ids, then the vectors of the
//! new ones) and records the version it read *before* scanning. A write made on this
//! server updates the index at once when the index was at the version the write replaced;
//! a write made by another server is picked up by the next search here. So a search
//! always sees every write committed before it started, whichever server made it, and the
//! results equal the exact search over the table (the same arithmetic as the streaming
//! path, tested).

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use futures::TryStreamExt;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter, QuerySelect,
    Statement,
};
use tokio::sync::RwLock;
use zeroscale_core::{Error, Result};

use super::entity::documents;
use crate::{Db, Dialect};

/// Below this many floats one thread scores faster than several.
const PARALLEL_FLOATS: usize = 1 << 20;

/// `a · b`, summed in eight lanes so the compiler vectorises it (the same order
/// everywhere, so every search path gives bit-identical scores).
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (ac, ar) = a.as_chunks::<8>();
    let (bc, br) = b.as_chunks::<8>();
    for (x, y) in ac.iter().zip(bc) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    let mut tail = 0.0;
    for (x, y) in ar.iter().zip(br) {
        tail += x * y;
    }
    ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5]))
        + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]))
        + tail
}

/// The Euclidean norm of `v`.
pub(crate) fn norm(v: &[f32]) -> f32 {
    dot(v, v).sqrt()
}

/// Cosine similarity from a dot product and the two norms (0 when either is 0).
pub(crate) fn cosine_of(dot: f32, a_norm: f32, b_norm: f32) -> f32 {
    if a_norm == 0.0 || b_norm == 0.0 {
        0.0
    } else {
        dot / (a_norm * b_norm)
    }
}

/// A scored candidate; orders so a max-heap's top is the worst (lowest score, then the
/// greater id).
#[derive(Debug, Clone)]
pub(crate) struct Scored<T> {
    pub(crate) score: f32,
    pub(crate) id: String,
    pub(crate) item: T,
}

impl<T> PartialEq for Scored<T> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl<T> Eq for Scored<T> {}
impl<T> PartialOrd for Scored<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Scored<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .score
            .total_cmp(&self.score)
            .then_with(|| self.id.cmp(&other.id))
    }
}

/// The best `k` seen so far.
pub(crate) struct TopK<T> {
    k: usize,
    heap: BinaryHeap<Scored<T>>,
}

impl<T> TopK<T> {
    pub(crate) fn new(k: usize) -> Self {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
        }
    }

    /// Whether a candidate with `score` could enter (cheap check before building it).
    pub(crate) fn wants(&self, score: f32) -> bool {
        self.heap.len() < self.k || self.heap.peek().is_some_and(|w| score >= w.score)
    }

    pub(crate) fn push(&mut self, candidate: Scored<T>) {
        if self.heap.len() < self.k {
            self.heap.push(candidate);
        } else if self
            .heap
            .peek()
            .is_some_and(|worst| candidate.cmp(worst) == Ordering::Less)
        {
            self.heap.pop();
            self.heap.push(candidate);
        }
    }

    /// Best first (ties: the smaller id first).
    pub(crate) fn into_sorted(self) -> Vec<Scored<T>> {
        self.heap.into_sorted_vec()
    }
}

/// One collection's vectors of one dimension count.
#[derive(Debug, Default)]
struct Slab {
    /// The collection version this slab reflects; `None` until first built.
    version: Option<i64>,
    dims: usize,
    ids: Vec<String>,
    /// Row-major, `dims` floats per id.
    vectors: Vec<f32>,
    norms: Vec<f32>,
    positions: HashMap<String, usize>,
}

impl Slab {
    fn add(&mut self, id: String, vector: &[f32]) {
        if vector.len() != self.dims || self.positions.contains_key(&id) {
            return;
        }
        self.positions.insert(id.clone(), self.ids.len());
        self.ids.push(id);
        self.vectors.extend_from_slice(vector);
        self.norms.push(norm(vector));
    }

    fn remove(&mut self, id: &str) {
        let Some(at) = self.positions.remove(id) else {
            return;
        };
        let last = self.ids.len() - 1;
        if at != last {
            let moved = self.ids[last].clone();
            self.positions.insert(moved, at);
            self.ids.swap(at, last);
            self.norms.swap(at, last);
            let (head, tail) = self.vectors.split_at_mut(last * self.dims);
            head[at * self.dims..(at + 1) * self.dims].copy_from_slice(&tail[..self.dims]);
        }
        self.ids.pop();
        self.norms.pop();
        self.vectors.truncate(last * self.dims);
    }

    /// The best `k` of rows `range` for `query`.
    fn top_k(
        &self,
        query: &[f32],
        query_norm: f32,
        k: usize,
        range: std::ops::Range<usize>,
    ) -> TopK<()> {
        let mut top = TopK::new(k);
        let dims = self.dims;
        for i in range {
            let v = &self.vectors[i * dims..(i + 1) * dims];
            let score = cosine_of(dot(query, v), query_norm, self.norms[i]);
            if top.wants(score) {
                top.push(Scored {
                    score,
                    id: self.ids[i].clone(),
                    item: (),
                });
            }
        }
        top
    }

    /// The best `k` for `query`, on every CPU when the slab is large.
    fn search(&self, query: &[f32], k: usize) -> Vec<(String, f32)> {
        let query_norm = norm(query);
        let n = self.ids.len();
        let threads = if n * self.dims < PARALLEL_FLOATS {
            1
        } else {
            std::thread::available_parallelism()
                .map_or(1, usize::from)
                .min(8)
        };
        let top = if threads <= 1 {
            self.top_k(query, query_norm, k, 0..n)
        } else {
            let per = n.div_ceil(threads);
            let parts: Vec<TopK<()>> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..threads)
                    .map(|t| {
                        let range = (t * per).min(n)..((t + 1) * per).min(n);
                        s.spawn(move || self.top_k(query, query_norm, k, range))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("a scoring thread panicked"))
                    .collect()
            });
            let mut merged = TopK::new(k);
            for part in parts {
                for c in part.heap {
                    merged.push(c);
                }
            }
            merged
        };
        top.into_sorted()
            .into_iter()
            .map(|c| (c.id, c.score))
            .collect()
    }
}

/// A slab shared by searches (read) and by syncs and local writes (write).
type SharedSlab = Arc<RwLock<Slab>>;

/// The index of one [`super::Domain`]: slabs by (collection, dimensions), built on first
/// search.
#[derive(Debug, Default)]
pub(crate) struct VectorIndex {
    slabs: Mutex<HashMap<(String, usize), SharedSlab>>,
}

/// What a committed write changed in one collection.
pub(crate) enum Change<'a> {
    Added(Vec<(String, &'a [f32])>),
    Removed { id: String, dims: usize },
}

fn map_err(db: &Db) -> impl Fn(sea_orm::DbErr) -> Error + '_ {
    move |e| db.map_err(e)
}

/// The collection's current version (0 when it was never written).
async fn version<C: ConnectionTrait>(db: &Db, conn: &C, collection: &str) -> Result<i64> {
    let backend = conn.get_database_backend();
    let sql = match db.sql_dialect() {
        Dialect::Sqlite => "SELECT version FROM vector_collections WHERE collection = ?",
        Dialect::Postgres => "SELECT version FROM vector_collections WHERE collection = $1",
    };
    let row = conn
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [collection.into()],
        ))
        .await
        .map_err(map_err(db))?;
    match row {
        Some(row) => row.try_get::<i64>("", "version").map_err(map_err(db)),
        None => Ok(0),
    }
}

/// A fresh version token (never 0, which means "never written").
fn new_version() -> Result<i64> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::backend("vector index", std::io::Error::other(e.to_string())))?;
    Ok((i64::from_le_bytes(bytes) & i64::MAX).max(1))
}

/// Inside a write transaction: locks the collection's version row and replaces the
/// version; returns (the version replaced, the new one).
pub(crate) async fn bump(
    db: &Db,
    txn: &DatabaseTransaction,
    collection: &str,
) -> Result<(i64, i64)> {
    let backend = sea_orm::ConnectionTrait::get_database_backend(txn);
    let (insert, lock, update) = match db.sql_dialect() {
        Dialect::Sqlite => (
            "INSERT INTO vector_collections (collection, version) VALUES (?, 0) \
             ON CONFLICT (collection) DO NOTHING",
            // SQLite's write transaction already excludes every other writer.
            "SELECT version FROM vector_collections WHERE collection = ?",
            "UPDATE vector_collections SET version = ? WHERE collection = ?",
        ),
        Dialect::Postgres => (
            "INSERT INTO vector_collections (collection, version) VALUES ($1, 0) \
             ON CONFLICT (collection) DO NOTHING",
            "SELECT version FROM vector_collections WHERE collection = $1 FOR UPDATE",
            "UPDATE vector_collections SET version = $1 WHERE collection = $2",
        ),
    };
    txn.execute_raw(Statement::from_sql_and_values(
        backend,
        insert,
        [collection.into()],
    ))
    .await
    .map_err(map_err(db))?;
    let old = txn
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            lock,
            [collection.into()],
        ))
        .await
        .map_err(map_err(db))?
        .map(|row| row.try_get::<i64>("", "version"))
        .transpose()
        .map_err(map_err(db))?
        .unwrap_or(0);
    let new = new_version()?;
    txn.execute_raw(Statement::from_sql_and_values(
        backend,
        update,
        [new.into(), collection.into()],
    ))
    .await
    .map_err(map_err(db))?;
    Ok((old, new))
}

/// After a restore: every collection with documents gets a row, and every row a fresh
/// version, so no index anywhere trusts what it held before.
pub(crate) async fn reset_versions(db: &Db) -> Result<()> {
    let backend = db.conn()?.get_database_backend();
    let version = new_version()?;
    let (insert, update) = match db.sql_dialect() {
        Dialect::Sqlite => (
            "INSERT INTO vector_collections (collection, version) SELECT DISTINCT collection, ? \
             FROM documents WHERE collection NOT IN (SELECT collection FROM vector_collections)",
            "UPDATE vector_collections SET version = ?",
        ),
        Dialect::Postgres => (
            "INSERT INTO vector_collections (collection, version) SELECT DISTINCT collection, $1 \
             FROM documents WHERE collection NOT IN (SELECT collection FROM vector_collections)",
            "UPDATE vector_collections SET version = $1",
        ),
    };
    for sql in [insert, update] {
        db.conn()?
            .execute_raw(Statement::from_sql_and_values(
                backend,
                sql,
                [version.into()],
            ))
            .await
            .map_err(map_err(db))?;
    }
    Ok(())
}

impl VectorIndex {
    fn slab(&self, collection: &str, dims: usize) -> SharedSlab {
        let mut slabs = self.slabs.lock().unwrap_or_else(|e| e.into_inner());
        slabs
            .entry((collection.to_owned(), dims))
            .or_insert_with(|| {
                Arc::new(RwLock::new(Slab {
                    dims,
                    ..Slab::default()
                }))
            })
            .clone()
    }

    fn slabs_of(&self, collection: &str) -> Vec<SharedSlab> {
        let slabs = self.slabs.lock().unwrap_or_else(|e| e.into_inner());
        slabs
            .iter()
            .filter(|((c, _), _)| c == collection)
            .map(|(_, slab)| slab.clone())
            .collect()
    }

    /// Called after a write to `collection` committed, replacing version `old` by `new`:
    /// slabs that were at `old` take the change and move to `new`; others stay behind and
    /// catch up on their next search.
    pub(crate) async fn committed(&self, collection: &str, old: i64, new: i64, change: Change<'_>) {
        for slab in self.slabs_of(collection) {
            let mut slab = slab.write().await;
            if slab.version != Some(old) {
                continue;
            }
            match &change {
                Change::Added(docs) => {
                    for (id, vector) in docs {
                        if vector.len() == slab.dims {
                            slab.add(id.clone(), vector);
                        }
                    }
                }
                Change::Removed { id, dims } if *dims == slab.dims => slab.remove(id),
                Change::Removed { .. } => {}
            }
            slab.version = Some(new);
        }
    }

    /// The ids and scores of the `k` best documents of `collection` (with `query`'s
    /// dimensions) for `query`, best first, exactly as a scan of the table would rank them.
    pub(crate) async fn search(
        &self,
        db: &Db,
        collection: &str,
        query: &[f32],
        k: usize,
    ) -> Result<Vec<(String, f32)>> {
        let current = version(db, db.conn()?, collection).await?;
        let slab = self.slab(collection, query.len());
        let guard = {
            let read = slab.clone().read_owned().await;
            if read.version == Some(current) {
                read
            } else {
                drop(read);
                let mut write = slab.clone().write_owned().await;
                if write.version != Some(current) {
                    // The version is read before the scan: a write that lands during it
                    // makes the next search look again.
                    let current = version(db, db.conn()?, collection).await?;
                    sync(db, collection, &mut write).await?;
                    write.version = Some(current);
                }
                write.downgrade()
            }
        };
        let query = query.to_vec();
        tokio::task::spawn_blocking(move || guard.search(&query, k))
            .await
            .map_err(|e| Error::backend("vector index", e))
    }
}

/// Brings `slab` up to the table: drops ids that are gone, loads the vectors of new ones.
async fn sync(db: &Db, collection: &str, slab: &mut Slab) -> Result<()> {
    let dims = i32::try_from(slab.dims).map_err(|_| Error::invalid_input("vector is too long"))?;
    let scope = || {
        documents::Entity::find()
            .filter(documents::Column::Collection.eq(collection))
            .filter(documents::Column::Dimensions.eq(dims))
    };
    let ids: HashSet<String> = scope()
        .select_only()
        .column(documents::Column::Id)
        .into_tuple::<String>()
        .stream(db.conn()?)
        .await
        .map_err(map_err(db))?
        .try_collect()
        .await
        .map_err(map_err(db))?;
    let gone: Vec<String> = slab
        .ids
        .iter()
        .filter(|id| !ids.contains(*id))
        .cloned()
        .collect();
    for id in &gone {
        slab.remove(id);
    }
    let new: Vec<String> = ids
        .into_iter()
        .filter(|id| !slab.positions.contains_key(id))
        .collect();
    if new.len() > slab.ids.len() {
        // Mostly new (a first build): one scan is cheaper than lookups by id.
        let mut rows = scope()
            .select_only()
            .column(documents::Column::Id)
            .column(documents::Column::Vector)
            .into_tuple::<(String, Vec<u8>)>()
            .stream(db.conn()?)
            .await
            .map_err(map_err(db))?;
        while let Some((id, bytes)) = rows.try_next().await.map_err(map_err(db))? {
            if let Some(vector) = super::documents::decode_vector(&bytes) {
                slab.add(id, &vector);
            }
        }
        return Ok(());
    }
    for chunk in new.chunks(500) {
        let rows: Vec<(String, Vec<u8>)> = scope()
            .filter(documents::Column::Id.is_in(chunk.iter().cloned()))
            .select_only()
            .column(documents::Column::Id)
            .column(documents::Column::Vector)
            .into_tuple()
            .all(db.conn()?)
            .await
            .map_err(map_err(db))?;
        for (id, bytes) in rows {
            if let Some(vector) = super::documents::decode_vector(&bytes) {
                slab.add(id, &vector);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slab(rows: &[(&str, [f32; 3])]) -> Slab {
        let mut s = Slab {
            dims: 3,
            ..Slab::default()
        };
        for (id, v) in rows {
            s.add((*id).to_owned(), v);
        }
        s
    }

    #[test]
    fn dot_matches_the_plain_sum_closely() {
        let a: Vec<f32> = (0..389).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..389).map(|i| (i as f32 * 0.11).cos()).collect();
        let plain: f64 = a
            .iter()
            .zip(&b)
            .map(|(x, y)| f64::from(*x) * f64::from(*y))
            .sum();
        assert!((f64::from(dot(&a, &b)) - plain).abs() < 1e-4);
    }

    #[test]
    fn removal_keeps_the_rest_in_place() {
        let mut s = slab(&[
            ("a", [1.0, 0.0, 0.0]),
            ("b", [0.0, 1.0, 0.0]),
            ("c", [0.0, 0.0, 1.0]),
        ]);
        s.remove("a");
        s.remove("missing");
        assert_eq!(s.ids.len(), 2);
        let hits = s.search(&[0.0, 0.0, 1.0], 1);
        assert_eq!(hits[0].0, "c");
        assert!((hits[0].1 - 1.0).abs() < 1e-6);
        let hits = s.search(&[0.0, 1.0, 0.0], 1);
        assert_eq!(hits[0].0, "b");
    }

    #[test]
    fn ties_rank_the_smaller_id_first_and_parallel_equals_serial() {
        let mut s = Slab {
            dims: 4,
            ..Slab::default()
        };
        for i in 0..300_000u32 {
            let x = (i % 97) as f32;
            s.add(format!("{i:08}"), &[x, 1.0, (i % 7) as f32, 0.5]);
        }
        let q = [1.0, 0.2, 0.3, 0.0];
        let serial = s.top_k(&q, norm(&q), 10, 0..s.ids.len()).into_sorted();
        let parallel = s.search(&q, 10);
        assert!(s.ids.len() * s.dims >= PARALLEL_FLOATS);
        let serial: Vec<(String, f32)> = serial.into_iter().map(|c| (c.id, c.score)).collect();
        assert_eq!(serial, parallel);
        // Equal scores come back in id order.
        for pair in parallel.windows(2) {
            assert!(pair[0].1 > pair[1].1 || pair[0].0 < pair[1].0);
        }
    }
}
