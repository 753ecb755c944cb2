//! What interrupted writes leave behind, and how it is cleaned up.
//!
//! A multipart upload that is never completed or aborted (the process was killed, the
//! machine lost power) keeps its parts in the bucket, billed and invisible, until someone
//! aborts it by id; object_store cannot list such uploads. So a backend that uploads in
//! parts records each upload's id in an [`UploadLog`] before its first part and forgets it
//! once the upload is completed or aborted; [`Storage::sweep`](crate::Storage::sweep)
//! aborts the recorded uploads older than an age. The app keeps the log in its database
//! (`storage_uploads`); a process on its own can keep it in memory.

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::Result;

/// A multipart upload in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUpload {
    /// The store it was started in ([`Storage::location`](crate::Storage::location)), so
    /// one log can serve several stores and a sweep touches only its own.
    pub store: String,
    /// The object's path within the store.
    pub path: String,
    /// The engine's upload id.
    pub upload_id: String,
    /// When it was started.
    pub started_at: DateTime<Utc>,
}

/// Where multipart upload ids are recorded until their upload ends.
///
/// A record must be durable once [`record`](UploadLog::record) returns: the point of the
/// log is to survive the process that started the upload.
#[async_trait]
pub trait UploadLog: Send + Sync + fmt::Debug + 'static {
    /// Records an upload before its first part is sent.
    async fn record(&self, upload: &PendingUpload) -> Result<()>;

    /// Forgets an upload that was completed or aborted (no error if it is not recorded).
    async fn forget(&self, store: &str, upload_id: &str) -> Result<()>;

    /// Up to `limit` uploads of `store` started before `cutoff`, oldest first.
    async fn started_before(
        &self,
        store: &str,
        cutoff: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<PendingUpload>>;
}

/// What a [`Storage::sweep`](crate::Storage::sweep) removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Recorded multipart uploads aborted.
    pub aborted_uploads: usize,
    /// Partly written files removed (a local folder's staging files).
    pub removed_files: usize,
}

impl SweepReport {
    /// Whether it removed anything.
    pub fn is_empty(&self) -> bool {
        self.aborted_uploads == 0 && self.removed_files == 0
    }
}
