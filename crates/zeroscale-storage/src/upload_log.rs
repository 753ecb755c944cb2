//! [`MemoryUploadLog`]: an [`UploadLog`] in this process's memory, the default of a
//! [`StorageContext`](crate::StorageContext). It cleans up after uploads this process
//! dropped (a client that went away, a cancelled task), not after a crash: for that the
//! log must outlive the process (the app keeps it in its database).

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use zeroscale_core::Result;
use zeroscale_core::uploads::{PendingUpload, UploadLog};

/// Upload ids kept in memory.
#[derive(Debug, Default)]
pub struct MemoryUploadLog {
    uploads: Mutex<HashMap<(String, String), PendingUpload>>,
}

impl MemoryUploadLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), PendingUpload>> {
        self.uploads.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl UploadLog for MemoryUploadLog {
    async fn record(&self, upload: &PendingUpload) -> Result<()> {
        self.lock().insert(
            (upload.store.clone(), upload.upload_id.clone()),
            upload.clone(),
        );
        Ok(())
    }

    async fn forget(&self, store: &str, upload_id: &str) -> Result<()> {
        self.lock()
            .remove(&(store.to_owned(), upload_id.to_owned()));
        Ok(())
    }

    async fn started_before(
        &self,
        store: &str,
        cutoff: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<PendingUpload>> {
        let mut old: Vec<PendingUpload> = self
            .lock()
            .values()
            .filter(|u| u.store == store && u.started_at < cutoff)
            .cloned()
            .collect();
        old.sort_by_key(|u| u.started_at);
        old.truncate(limit);
        Ok(old)
    }
}
