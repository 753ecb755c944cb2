//! An in-memory embedding cache (core's `EmbeddingCache`), bounded by entry count; the
//! database provides a persistent one.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use async_trait::async_trait;
use zeroscale_core::Result;
use zeroscale_core::models::{EmbeddingCache, EmbeddingCacheKey};

/// The vectors, and their keys oldest first.
type Entries = (
    HashMap<EmbeddingCacheKey, Vec<f32>>,
    VecDeque<EmbeddingCacheKey>,
);

/// Embeddings kept in memory; the oldest entry goes when `capacity` is reached.
#[derive(Debug)]
pub struct MemoryEmbeddingCache {
    capacity: usize,
    inner: Mutex<Entries>,
}

impl MemoryEmbeddingCache {
    /// A cache holding at most `capacity` vectors.
    pub fn new(capacity: usize) -> Self {
        MemoryEmbeddingCache {
            capacity: capacity.max(1),
            inner: Mutex::default(),
        }
    }
}

#[async_trait]
impl EmbeddingCache for MemoryEmbeddingCache {
    async fn get(&self, key: &EmbeddingCacheKey) -> Result<Option<Vec<f32>>> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        Ok(inner.0.get(key).cloned())
    }

    async fn put(&self, key: &EmbeddingCacheKey, vector: &[f32]) -> Result<()> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (map, order) = &mut *inner;
        if map.insert(key.clone(), vector.to_vec()).is_none() {
            order.push_back(key.clone());
            while map.len() > self.capacity {
                match order.pop_front() {
                    Some(old) => {
                        map.remove(&old);
                    }
                    None => break,
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keeps_the_newest_entries() {
        let cache = MemoryEmbeddingCache::new(2);
        let k = |s: &str| EmbeddingCacheKey::new("m", s);
        cache.put(&k("a"), &[1.0]).await.unwrap();
        cache.put(&k("b"), &[2.0]).await.unwrap();
        cache.put(&k("a"), &[1.5]).await.unwrap();
        assert_eq!(cache.get(&k("a")).await.unwrap(), Some(vec![1.5]));
        cache.put(&k("c"), &[3.0]).await.unwrap();
        assert_eq!(cache.get(&k("a")).await.unwrap(), None, "oldest evicted");
        assert_eq!(cache.get(&k("c")).await.unwrap(), Some(vec![3.0]));
    }
}
