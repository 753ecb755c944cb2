//! Documents and vector search on their own, without the rest of the domain (users,
//! sessions, chat, jobs): [`DocumentStore`] over a [`Db`], with only its tables.
//!
//! ```no_run
//! # async fn run() -> zeroscale_core::Result<()> {
//! use zeroscale_core::config::DatabaseConfig;
//! use zeroscale_db::Db;
//! use zeroscale_db::documents::{DocumentStore, NewDocument};
//!
//! // SQLite in the default data dir; any `DatabaseConfig` works.
//! let db = Db::connect(&DatabaseConfig::default()).await?;
//! let store = DocumentStore::open(db).await?; // creates only the documents tables
//! store
//!     .documents()
//!     .insert(NewDocument {
//!         collection: "notes".into(),
//!         content: "the cat sat".into(),
//!         metadata: serde_json::Value::Null,
//!         embedding_model: "minilm".into(),
//!         vector: vec![0.1, 0.2, 0.3],
//!     })
//!     .await?;
//! let hits = store.documents().search("notes", &[0.1, 0.2, 0.3], 5, None).await?;
//! assert_eq!(hits.len(), 1);
//! # Ok(())
//! # }
//! ```

use std::sync::Arc;

use zeroscale_core::Result;

use crate::Db;
use crate::domain::vector_index::VectorIndex;
pub use crate::domain::{
    DbEmbeddingCache, Documents, MAX_TOP_K, NewDocument, decode_vector, encode_vector,
};

/// Documents and vector search over one database, holding the in-memory index of its
/// collections. Cheap to clone (shared handles); keep one per process so searches share
/// the index.
#[derive(Debug, Clone)]
pub struct DocumentStore {
    db: Db,
    vectors: Arc<VectorIndex>,
}

impl DocumentStore {
    /// The store over `db`, after creating its tables if missing ([`Db::migrate_documents_up`]:
    /// `documents`, `vector_collections`, `embedding_cache` and nothing else).
    pub async fn open(db: Db) -> Result<Self> {
        db.migrate_documents_up().await?;
        Ok(DocumentStore::new(db))
    }

    /// The store over `db` as it is (its tables made by [`Db::migrate_up`] or
    /// [`Db::migrate_documents_up`]).
    pub fn new(db: Db) -> Self {
        DocumentStore {
            db,
            vectors: Arc::default(),
        }
    }

    /// Insert, get, delete, count and search documents.
    pub fn documents(&self) -> Documents<'_> {
        Documents::new(&self.db, &self.vectors)
    }

    /// The embedding cache in the same database, for
    /// `zeroscale_models::router::Router::set_embedding_cache`.
    pub fn embedding_cache(&self) -> DbEmbeddingCache {
        DbEmbeddingCache::new(self.db.clone())
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.db
    }
}
