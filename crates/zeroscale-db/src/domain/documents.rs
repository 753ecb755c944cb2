//! Documents and vector search: store texts with their embeddings, search a collection by
//! cosine similarity (exact top-k), optionally filtered by metadata equality.
//!
//! Vectors are little-endian `f32` blobs on every engine. A search without a metadata
//! filter answers from the in-memory index ([`super::vector_index`]: the collection's
//! vectors held contiguously, checked against the table's version on every search); a
//! filtered search streams the collection's rows and keeps only the best `k` in a bounded
//! heap. Both rank with the same arithmetic, so they agree exactly.

use futures::TryStreamExt;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QuerySelect, Set,
};
use serde_json::{Map, Value};
use zeroscale_core::domain::{Document, SearchHit, new_id, now};
use zeroscale_core::{Error, Result};

use super::by_key::ByKey;
use super::entity::documents;
use super::vector_index::{self, Change, Scored, TopK, VectorIndex, cosine_of, norm};
use crate::Db;

/// The most results one search returns.
pub const MAX_TOP_K: usize = 1000;

/// A document to store.
#[derive(Debug, Clone)]
pub struct NewDocument {
    /// The collection (1 to 128 characters).
    pub collection: String,
    /// The text.
    pub content: String,
    /// A JSON object (or null, stored as `{}`).
    pub metadata: Value,
    /// The model that made `vector`.
    pub embedding_model: String,
    /// The embedding; finite values, not empty.
    pub vector: Vec<f32>,
}

/// Encodes a vector as little-endian `f32` bytes.
pub fn encode_vector(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Decodes little-endian `f32` bytes; `None` if the length is not a multiple of 4.
pub fn decode_vector(bytes: &[u8]) -> Option<Vec<f32>> {
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

fn validate_vector(vector: &[f32]) -> Result<()> {
    if vector.is_empty() {
        return Err(Error::invalid_input("vector must not be empty"));
    }
    if vector.iter().any(|x| !x.is_finite()) {
        return Err(Error::invalid_input("vector must hold only finite numbers"));
    }
    Ok(())
}

fn metadata_object(metadata: Value) -> Result<Value> {
    match metadata {
        Value::Null => Ok(Value::Object(Map::new())),
        Value::Object(map) => Ok(Value::Object(map)),
        _ => Err(Error::invalid_input("metadata must be a JSON object")),
    }
}

fn to_document(m: documents::Model) -> Document {
    Document {
        id: m.id,
        collection: m.collection,
        content: m.content,
        metadata: m.metadata,
        embedding_model: m.embedding_model,
        dimensions: usize::try_from(m.dimensions).unwrap_or(0),
        created_at: m.created_at,
    }
}

/// Documents service; see [`super::Domain::documents`].
#[derive(Debug)]
pub struct Documents<'a> {
    db: &'a Db,
    index: &'a VectorIndex,
}

impl<'a> Documents<'a> {
    pub(crate) fn new(db: &'a Db, index: &'a VectorIndex) -> Self {
        Documents { db, index }
    }

    /// Stores a document with its embedding.
    pub async fn insert(&self, new: NewDocument) -> Result<Document> {
        let mut stored = self.insert_many(vec![new]).await?;
        Ok(stored.pop().expect("one document in, one out"))
    }

    /// Stores documents with their embeddings, all or none (one write transaction), in
    /// order. Every document is checked before anything is written.
    pub async fn insert_many(&self, news: Vec<NewDocument>) -> Result<Vec<Document>> {
        let mut dimensions = Vec::with_capacity(news.len());
        for new in &news {
            if new.collection.is_empty() || new.collection.len() > 128 {
                return Err(Error::invalid_input(
                    "collection must be 1 to 128 characters",
                ));
            }
            validate_vector(&new.vector)?;
            dimensions.push(
                i32::try_from(new.vector.len())
                    .map_err(|_| Error::invalid_input("vector is too long"))?,
            );
        }
        #[cfg(feature = "mongodb")]
        if let Some(m) = self.db.mongo() {
            let at = self.db.now();
            let mut models = Vec::with_capacity(news.len());
            for (new, dimensions) in news.into_iter().zip(dimensions) {
                models.push(documents::Model {
                    id: new_id(),
                    collection: new.collection,
                    content: new.content,
                    metadata: metadata_object(new.metadata)?,
                    embedding_model: new.embedding_model,
                    dimensions,
                    vector: encode_vector(&new.vector),
                    created_at: at,
                });
            }
            crate::mongodb::documents::insert_all(m, &models).await?;
            return Ok(models.into_iter().map(to_document).collect());
        }
        // Set pgvector up before our transaction: its DDL takes locks on `documents` that an
        // open insert would hold against it.
        #[cfg(feature = "pgvector")]
        if self.db.vector_backend() == crate::VectorBackend::Pgvector {
            crate::pgvector::ensure_setup(self.db).await?;
        }
        let txn = self.db.begin_write().await?;
        // Every collection written gets a new version, taken in name order so two writers
        // never wait on each other's locks in opposite orders.
        let mut collections: Vec<String> = news.iter().map(|n| n.collection.clone()).collect();
        collections.sort();
        collections.dedup();
        let mut versions = Vec::with_capacity(collections.len());
        for collection in &collections {
            versions.push(vector_index::bump(self.db, &txn, collection).await?);
        }
        let vectors: Vec<Vec<f32>> = news.iter().map(|n| n.vector.clone()).collect();
        let mut stored = Vec::with_capacity(news.len());
        for (new, dimensions) in news.into_iter().zip(dimensions) {
            #[cfg(feature = "pgvector")]
            let vector = new.vector.clone();
            let model = documents::ActiveModel {
                id: Set(new_id()),
                collection: Set(new.collection),
                content: Set(new.content),
                metadata: Set(metadata_object(new.metadata)?),
                embedding_model: Set(new.embedding_model),
                dimensions: Set(dimensions),
                vector: Set(encode_vector(&new.vector)),
                created_at: Set(now()),
            }
            .insert(&txn)
            .await
            .map_err(|e| self.db.map_err(e))?;
            #[cfg(feature = "pgvector")]
            if self.db.vector_backend() == crate::VectorBackend::Pgvector {
                crate::pgvector::insert(self.db, &txn, &model.id, &vector).await?;
            }
            stored.push(to_document(model));
        }
        txn.commit().await.map_err(|e| self.db.map_err(e))?;
        for (collection, (old, new)) in collections.iter().zip(versions) {
            let added = stored
                .iter()
                .zip(&vectors)
                .filter(|(d, _)| &d.collection == collection)
                .map(|(d, v)| (d.id.clone(), v.as_slice()))
                .collect();
            self.index
                .committed(collection, old, new, Change::Added(added))
                .await;
        }
        Ok(stored)
    }

    /// A document by id (a stale-tolerant read: see [`crate::replicas`]).
    pub async fn get(&self, id: &str) -> Result<Document> {
        #[cfg(feature = "mongodb")]
        if self.db.is_mongodb() {
            return super::by_key::by_id::<documents::Entity>(self.db, id)
                .await?
                .map(to_document)
                .ok_or_else(|| Error::not_found(format!("document {id}")));
        }
        self.db
            .stale_read(|conn| async move {
                documents::Entity::find_by_id(id.to_owned())
                    .by_key(&conn)
                    .await
            })
            .await?
            .map(to_document)
            .ok_or_else(|| Error::not_found(format!("document {id}")))
    }

    /// Deletes a document; `true` if it existed.
    pub async fn delete(&self, id: &str) -> Result<bool> {
        #[cfg(feature = "mongodb")]
        if let Some(m) = self.db.mongo() {
            let deleted = m
                .delete::<documents::Entity>(None, crate::mongodb::id_is(id))
                .await?;
            return Ok(deleted > 0);
        }
        let map = |e| self.db.map_err(e);
        let txn = self.db.begin_write().await?;
        let Some((collection, dimensions)) = documents::Entity::find_by_id(id.to_owned())
            .select_only()
            .column(documents::Column::Collection)
            .column(documents::Column::Dimensions)
            .into_tuple::<(String, i32)>()
            .one(&txn)
            .await
            .map_err(map)?
        else {
            return Ok(false);
        };
        let (old, new) = vector_index::bump(self.db, &txn, &collection).await?;
        let result = documents::Entity::delete_by_id(id.to_owned())
            .exec(&txn)
            .await
            .map_err(map)?;
        txn.commit().await.map_err(map)?;
        let change = Change::Removed {
            id: id.to_owned(),
            dims: usize::try_from(dimensions).unwrap_or(0),
        };
        self.index.committed(&collection, old, new, change).await;
        Ok(result.rows_affected > 0)
    }

    /// Documents in a collection.
    pub async fn count(&self, collection: &str) -> Result<u64> {
        #[cfg(feature = "mongodb")]
        if let Some(m) = self.db.mongo() {
            return m
                .count::<documents::Entity>(mongodb::bson::doc! { "collection": collection })
                .await;
        }
        self.db
            .stale_read(|conn| async move {
                documents::Entity::find()
                    .filter(documents::Column::Collection.eq(collection))
                    .count(&conn)
                    .await
            })
            .await
    }

    /// Checks pgvector's index for vectors of `dimensions` now: searches each of a sample of
    /// the stored vectors through the index and exactly, and from then on searches of that
    /// size use the index only if it found at least `database.pgvector.min_recall` of the
    /// exact top 10. `None` when this database does not search through pgvector (every
    /// other search is exact). Searches start such checks by themselves (at the first
    /// search of a size, then every `recall_check_secs`): call this to have the verdict
    /// now, or to see it.
    pub async fn check_vector_index(
        &self,
        dimensions: usize,
    ) -> Result<Option<crate::VectorIndexCheck>> {
        #[cfg(feature = "pgvector")]
        if self.db.vector_backend() == crate::VectorBackend::Pgvector {
            return crate::pgvector::check(self.db, dimensions).await.map(Some);
        }
        let _ = dimensions;
        Ok(None)
    }

    /// The `k` documents of `collection` most similar to `query` (cosine), best first.
    /// Only documents with the query's dimensions, and whose metadata has every key of
    /// `filter` with an equal value, are considered.
    pub async fn search(
        &self,
        collection: &str,
        query: &[f32],
        k: usize,
        filter: Option<&Map<String, Value>>,
    ) -> Result<Vec<SearchHit>> {
        validate_vector(query)?;
        if k == 0 || k > MAX_TOP_K {
            return Err(Error::invalid_input(format!("k must be 1 to {MAX_TOP_K}")));
        }
        let dimensions = i32::try_from(query.len())
            .map_err(|_| Error::invalid_input("query vector is too long"))?;
        let unfiltered = filter.is_none_or(Map::is_empty);
        #[cfg(feature = "pgvector")]
        if self.db.vector_backend() == crate::VectorBackend::Pgvector {
            // While the index fails its recall check, searches are exact: from memory
            // (below) when configured so and there is no filter, else by a scan.
            let exact = !crate::pgvector::index_answers(self.db, query.len());
            let in_memory = exact
                && unfiltered
                && self.db.pgvector_options().fallback
                    == zeroscale_core::config::RecallFallback::Memory;
            if in_memory {
                let best = self.index.search(self.db, collection, query, k).await?;
                return self.hits(best).await;
            }
            let rows =
                crate::pgvector::search(self.db, collection, query, k, filter, exact).await?;
            return Ok(rows
                .into_iter()
                .map(|(model, score)| SearchHit {
                    score,
                    document: to_document(model),
                })
                .collect());
        }
        #[cfg(feature = "mongodb")]
        if let Some(m) = self.db.mongo() {
            let rows = crate::mongodb::documents::search(m, collection, query, k, filter).await?;
            return Ok(rows
                .into_iter()
                .map(|(model, score)| SearchHit {
                    score,
                    document: to_document(model),
                })
                .collect());
        }
        if unfiltered {
            let best = self.index.search(self.db, collection, query, k).await?;
            return self.hits(best).await;
        }
        let query_norm = norm(query);
        let top = self
            .db
            .stale_read(|conn| scan(conn, collection, dimensions, query, query_norm, k, filter))
            .await?;
        Ok(top
            .into_sorted()
            .into_iter()
            .map(|c| SearchHit {
                score: c.score,
                document: to_document(c.item),
            })
            .collect())
    }

    /// The documents of `best` (ids with scores, best first), in that order; a document
    /// deleted since the index answered is left out.
    async fn hits(&self, best: Vec<(String, f32)>) -> Result<Vec<SearchHit>> {
        let mut found: std::collections::HashMap<String, documents::Model> =
            documents::Entity::find()
                .filter(documents::Column::Id.is_in(best.iter().map(|(id, _)| id.clone())))
                .all(self.db.conn()?)
                .await
                .map_err(|e| self.db.map_err(e))?
                .into_iter()
                .map(|m| (m.id.clone(), m))
                .collect();
        Ok(best
            .into_iter()
            .filter_map(|(id, score)| {
                found.remove(&id).map(|model| SearchHit {
                    score,
                    document: to_document(model),
                })
            })
            .collect())
    }
}

/// The best `k` documents of `collection` whose metadata matches `filter`, by streaming
/// the collection's rows (memory stays flat whatever its size).
async fn scan(
    conn: sea_orm::DatabaseConnection,
    collection: &str,
    dimensions: i32,
    query: &[f32],
    query_norm: f32,
    k: usize,
    filter: Option<&Map<String, Value>>,
) -> std::result::Result<TopK<documents::Model>, sea_orm::DbErr> {
    let mut top: TopK<documents::Model> = TopK::new(k);
    let mut rows = documents::Entity::find()
        .filter(documents::Column::Collection.eq(collection))
        .filter(documents::Column::Dimensions.eq(dimensions))
        .stream(&conn)
        .await?;
    while let Some(model) = rows.try_next().await? {
        if let Some(filter) = filter {
            let matches = filter
                .iter()
                .all(|(key, want)| model.metadata.get(key) == Some(want));
            if !matches {
                continue;
            }
        }
        let Some(vector) = decode_vector(&model.vector) else {
            continue;
        };
        let score = cosine_of(vector_index::dot(query, &vector), query_norm, norm(&vector));
        if top.wants(score) {
            top.push(Scored {
                score,
                id: model.id.clone(),
                item: model,
            });
        }
    }
    Ok(top)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cosine(q: &[f32], q_norm: f32, v: &[f32]) -> f32 {
        cosine_of(vector_index::dot(q, v), q_norm, norm(v))
    }

    #[test]
    fn vectors_round_trip_as_little_endian() {
        let v = vec![1.0f32, -0.5, 3.25e-8, f32::MAX];
        let bytes = encode_vector(&v);
        assert_eq!(&bytes[..4], &1.0f32.to_le_bytes());
        assert_eq!(decode_vector(&bytes).unwrap(), v);
        assert_eq!(decode_vector(&[1, 2, 3]), None);
    }

    #[test]
    fn cosine_of_parallel_and_orthogonal() {
        let q = [1.0, 0.0];
        assert!((cosine(&q, norm(&q), &[2.0, 0.0]) - 1.0).abs() < 1e-6);
        assert!(cosine(&q, norm(&q), &[0.0, 3.0]).abs() < 1e-6);
        assert!((cosine(&q, norm(&q), &[-1.0, 0.0]) + 1.0).abs() < 1e-6);
        assert_eq!(cosine(&q, norm(&q), &[0.0, 0.0]), 0.0);
    }
}
