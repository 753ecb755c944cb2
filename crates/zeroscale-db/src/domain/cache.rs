//! The embedding cache table, implementing core's `EmbeddingCache`.

use async_trait::async_trait;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, Set};
use zeroscale_core::models::{EmbeddingCache, EmbeddingCacheKey};
use zeroscale_core::{Error, Result};

use super::by_key::by_id;
use super::documents::{decode_vector, encode_vector};
use super::entity::embedding_cache;
use crate::Db;

/// Keys per `IN (…)` query and rows per insert: well under SQLite's and PostgreSQL's
/// bound-parameter limits.
const PER_QUERY: usize = 500;

/// Embeddings cached in the database, keyed by a hash of model id and input.
#[derive(Debug, Clone)]
pub struct DbEmbeddingCache {
    db: Db,
}

impl DbEmbeddingCache {
    pub(crate) fn new(db: Db) -> Self {
        DbEmbeddingCache { db }
    }

    fn decode(&self, key: &str, bytes: &[u8]) -> Result<Vec<f32>> {
        decode_vector(bytes).ok_or_else(|| {
            Error::backend(
                self.db.engine(),
                std::io::Error::other(format!(
                    "embedding cache entry {key} is corrupt (length not a multiple of 4)"
                )),
            )
        })
    }

    fn row(&self, key: &EmbeddingCacheKey, vector: &[f32]) -> Result<embedding_cache::ActiveModel> {
        let dimensions =
            i32::try_from(vector.len()).map_err(|_| Error::invalid_input("vector is too long"))?;
        Ok(embedding_cache::ActiveModel {
            key: Set(key.as_str().to_owned()),
            dimensions: Set(dimensions),
            vector: Set(encode_vector(vector)),
            created_at: Set(self.db.now()),
        })
    }

    /// Inserts `rows` in one statement, replacing rows with the same key.
    async fn find_keys(&self, keys: &[EmbeddingCacheKey]) -> Result<Vec<embedding_cache::Model>> {
        #[cfg(feature = "mongodb")]
        if let Some(m) = self.db.mongo() {
            let ids: Vec<&str> = keys.iter().map(EmbeddingCacheKey::as_str).collect();
            return m
                .find::<embedding_cache::Entity>(
                    mongodb::bson::doc! { "_id": { "$in": ids } },
                    mongodb::bson::Document::new(),
                    0,
                )
                .await;
        }
        embedding_cache::Entity::find()
            .filter(embedding_cache::Column::Key.is_in(keys.iter().map(|k| k.as_str())))
            .all(self.db.conn()?)
            .await
            .map_err(|e| self.db.map_err(e))
    }

    async fn upsert(&self, rows: Vec<embedding_cache::ActiveModel>) -> Result<()> {
        #[cfg(feature = "mongodb")]
        if let Some(m) = self.db.mongo() {
            for row in rows {
                let model = sea_orm::TryIntoModel::try_into_model(row)
                    .map_err(|e| Error::backend("mongodb", e))?;
                m.replace::<embedding_cache::Entity>(&model).await?;
            }
            return Ok(());
        }
        embedding_cache::Entity::insert_many(rows)
            .on_conflict(
                OnConflict::column(embedding_cache::Column::Key)
                    .update_columns([
                        embedding_cache::Column::Dimensions,
                        embedding_cache::Column::Vector,
                        embedding_cache::Column::CreatedAt,
                    ])
                    .to_owned(),
            )
            .exec(self.db.conn()?)
            .await
            .map_err(|e| self.db.map_err(e))?;
        Ok(())
    }
}

#[async_trait]
impl EmbeddingCache for DbEmbeddingCache {
    async fn get(&self, key: &EmbeddingCacheKey) -> Result<Option<Vec<f32>>> {
        let row = by_id::<embedding_cache::Entity>(&self.db, key.as_str()).await?;
        row.map(|row| self.decode(key.as_str(), &row.vector))
            .transpose()
    }

    async fn put(&self, key: &EmbeddingCacheKey, vector: &[f32]) -> Result<()> {
        self.upsert(vec![self.row(key, vector)?]).await
    }

    /// One `IN (…)` query per 500 keys.
    async fn get_many(&self, keys: &[EmbeddingCacheKey]) -> Result<Vec<Option<Vec<f32>>>> {
        let mut found = std::collections::HashMap::new();
        for part in keys.chunks(PER_QUERY) {
            let rows = self.find_keys(part).await?;
            for row in rows {
                let vector = self.decode(&row.key, &row.vector)?;
                found.insert(row.key, vector);
            }
        }
        Ok(keys
            .iter()
            .map(|k| found.get(k.as_str()).cloned())
            .collect())
    }

    /// One insert per 500 entries.
    async fn put_many(&self, entries: &[(&EmbeddingCacheKey, &[f32])]) -> Result<()> {
        for part in entries.chunks(PER_QUERY) {
            // The same key twice in one insert is refused by PostgreSQL's ON CONFLICT:
            // the last vector given for a key wins, as with one put after another.
            let mut last = std::collections::HashMap::new();
            for (i, (key, _)) in part.iter().enumerate() {
                last.insert(key.as_str(), i);
            }
            let rows = part
                .iter()
                .enumerate()
                .filter(|(i, (key, _))| last.get(key.as_str()) == Some(i))
                .map(|(_, (key, vector))| self.row(key, vector))
                .collect::<Result<Vec<_>>>()?;
            if !rows.is_empty() {
                self.upsert(rows).await?;
            }
        }
        Ok(())
    }
}
