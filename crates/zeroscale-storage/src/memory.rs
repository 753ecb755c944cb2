//! In-memory storage: object_store's `InMemory`, for tests and throwaway runs (lost on
//! exit); signed URLs are app-served.

use std::sync::Arc;

use zeroscale_core::config::{DEFAULT_MULTIPART_THRESHOLD, StorageConfig};
use zeroscale_core::registry::wrong_config;
use zeroscale_core::{Result, Storage};

use crate::StorageContext;
use crate::adapter::{AttributeStore, Layout, ObjectStoreStorage, StoreOptions};

pub(crate) fn connect(config: &StorageConfig, ctx: &StorageContext) -> Result<Arc<dyn Storage>> {
    let StorageConfig::Memory(_) = config else {
        return Err(wrong_config("memory", config.kind()));
    };
    let store = Arc::new(object_store::memory::InMemory::new());
    Ok(Arc::new(ObjectStoreStorage::new(
        store.clone(),
        StoreOptions {
            backend: "memory",
            location: "memory".to_owned(),
            layout: Layout::Keys,
            attributes: AttributeStore::Native,
            multipart_threshold: DEFAULT_MULTIPART_THRESHOLD,
            suffix_ranges: true,
            signing: crate::app_signing(config, ctx)?,
            #[cfg(feature = "local")]
            local_files: None,
            multipart: Some(store),
            uploads: Arc::clone(&ctx.uploads),
        },
    )))
}
