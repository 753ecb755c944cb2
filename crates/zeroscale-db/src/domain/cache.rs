//! The embedding cache table, implementing core's `EmbeddingCache`.

use async_trait::async_trait;
use sea_orm::sea_query::OnConflict;
use sea_orm::{EntityTrait, Set};
use zeroscale_core::domain::now;
use zeroscale_core::models::{EmbeddingCache, EmbeddingCacheKey};
use zeroscale_core::{Error, Result};

use super::documents::{decode_vector, encode_vector};
use super::entity::embedding_cache;
use crate::Db;

/// Embeddings cached in the database, keyed by a hash of model id and input.
#[derive(Debug, Clone)]
pub struct DbEmbeddingCache {
    db: Db,
}

impl DbEmbeddingCache {
    pub(crate) fn new(db: Db) -> Self {
        DbEmbeddingCache { db }
    }
}

#[async_trait]
impl EmbeddingCache for DbEmbeddingCache {
    async fn get(&self, key: &EmbeddingCacheKey) -> Result<Option<Vec<f32>>> {
        let row = embedding_cache::Entity::find_by_id(key.as_str().to_owned())
            .one(self.db.conn())
            .await
            .map_err(|e| self.db.map_err(e))?;
        match row {
            None => Ok(None),
            Some(row) => decode_vector(&row.vector).map(Some).ok_or_else(|| {
                Error::backend(
                    self.db.dialect().name(),
                    std::io::Error::other(format!(
                        "embedding cache entry {} is corrupt (length not a multiple of 4)",
                        key.as_str()
                    )),
                )
            }),
        }
    }

    async fn put(&self, key: &EmbeddingCacheKey, vector: &[f32]) -> Result<()> {
        let dimensions =
            i32::try_from(vector.len()).map_err(|_| Error::invalid_input("vector is too long"))?;
        let model = embedding_cache::ActiveModel {
            key: Set(key.as_str().to_owned()),
            dimensions: Set(dimensions),
            vector: Set(encode_vector(vector)),
            created_at: Set(now()),
        };
        embedding_cache::Entity::insert(model)
            .on_conflict(
                OnConflict::column(embedding_cache::Column::Key)
                    .update_columns([
                        embedding_cache::Column::Dimensions,
                        embedding_cache::Column::Vector,
                        embedding_cache::Column::CreatedAt,
                    ])
                    .to_owned(),
            )
            .exec(self.db.conn())
            .await
            .map_err(|e| self.db.map_err(e))?;
        Ok(())
    }
}
