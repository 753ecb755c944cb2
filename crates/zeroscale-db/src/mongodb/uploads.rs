//! The multipart upload log ([`crate::upload_log::DbUploadLog`]) on MongoDB: one document
//! per upload in flight in `storage_uploads`, unique by `(store, upload_id)`, its start
//! in epoch milliseconds.

use futures::TryStreamExt;
use mongodb::bson::{Document, doc};
use zeroscale_core::uploads::PendingUpload;
use zeroscale_core::{Error, Result};

use super::Mongo;
use super::counters::time;
use super::rows::int_of;

const UPLOADS: &str = "storage_uploads";

impl Mongo {
    fn uploads(&self) -> mongodb::Collection<Document> {
        self.database().collection(UPLOADS)
    }

    /// Records a multipart upload in flight.
    pub(crate) async fn upload_record(&self, upload: &PendingUpload) -> Result<()> {
        self.uploads()
            .insert_one(doc! {
                "store": &upload.store,
                "upload_id": &upload.upload_id,
                "path": &upload.path,
                "started_at": upload.started_at.timestamp_millis(),
            })
            .await
            .map(|_| ())
            .map_err(|e| self.map_err(e))
    }

    /// Forgets an upload that ended.
    pub(crate) async fn upload_forget(&self, store: &str, upload_id: &str) -> Result<()> {
        self.uploads()
            .delete_one(doc! { "store": store, "upload_id": upload_id })
            .await
            .map(|_| ())
            .map_err(|e| self.map_err(e))
    }

    /// `store`'s uploads started before `cutoff`, oldest first, at most `limit`.
    pub(crate) async fn uploads_started_before(
        &self,
        store: &str,
        cutoff: chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> Result<Vec<PendingUpload>> {
        let docs: Vec<Document> = self
            .uploads()
            .find(doc! { "store": store, "started_at": { "$lt": cutoff.timestamp_millis() } })
            .sort(doc! { "started_at": 1 })
            .limit(i64::try_from(limit).unwrap_or(i64::MAX))
            .await
            .map_err(|e| self.map_err(e))?
            .try_collect()
            .await
            .map_err(|e| self.map_err(e))?;
        docs.iter()
            .map(|doc| {
                let text = |field: &str| {
                    doc.get_str(field).map(str::to_owned).map_err(|_| {
                        Error::backend(
                            "mongodb",
                            std::io::Error::other(format!(
                                "{UPLOADS}.{field} holds {:?}, not a string",
                                doc.get(field)
                            )),
                        )
                    })
                };
                Ok(PendingUpload {
                    store: text("store")?,
                    upload_id: text("upload_id")?,
                    path: text("path")?,
                    started_at: time(doc.get("started_at").and_then(int_of).unwrap_or_default()),
                })
            })
            .collect()
    }
}
