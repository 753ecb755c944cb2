//! [`DbUploadLog`]: the [`UploadLog`] in the application's database (`storage_uploads`),
//! so a multipart upload cut off by a crash is still known to the next process, whose
//! sweep aborts it. One row per upload in flight: one insert before its first part, one
//! delete when it ends. On MongoDB, a document per upload (see `mongodb/uploads.rs`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, QueryResult, Value};
use zeroscale_core::uploads::{PendingUpload, UploadLog};
use zeroscale_core::{Error, Result};

use crate::Db;
use crate::queue::sql::Sql;

/// The upload log over a database.
pub struct DbUploadLog {
    db: Db,
    sql: Sql,
}

impl std::fmt::Debug for DbUploadLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbUploadLog")
            .field("engine", &self.db.engine())
            .finish_non_exhaustive()
    }
}

fn column<T: sea_orm::TryGetable>(row: &QueryResult, name: &str) -> Result<T> {
    row.try_get::<T>("", name).map_err(|e| {
        Error::backend(
            "upload log",
            std::io::Error::other(format!("storage_uploads.{name}: {e}")),
        )
    })
}

impl DbUploadLog {
    /// The log in `db` (migrated: the table comes with the migrations).
    pub fn new(db: Db) -> Self {
        DbUploadLog {
            sql: Sql {
                dialect: db.sql_dialect(),
            },
            db,
        }
    }

    async fn exec(&self, sql: &str, values: Vec<Value>) -> Result<()> {
        self.db
            .conn()?
            .execute_raw(self.sql.stmt(sql, values))
            .await
            .map(|_| ())
            .map_err(|e| self.db.map_err(e))
    }
}

#[async_trait]
impl UploadLog for DbUploadLog {
    async fn record(&self, upload: &PendingUpload) -> Result<()> {
        #[cfg(feature = "mongodb")]
        if let Some(m) = self.db.mongo() {
            return m.upload_record(upload).await;
        }
        self.exec(
            "INSERT INTO storage_uploads (store, upload_id, path, started_at) \
             VALUES (?, ?, ?, ?)",
            vec![
                upload.store.clone().into(),
                upload.upload_id.clone().into(),
                upload.path.clone().into(),
                upload.started_at.timestamp_millis().into(),
            ],
        )
        .await
    }

    async fn forget(&self, store: &str, upload_id: &str) -> Result<()> {
        #[cfg(feature = "mongodb")]
        if let Some(m) = self.db.mongo() {
            return m.upload_forget(store, upload_id).await;
        }
        self.exec(
            "DELETE FROM storage_uploads WHERE store = ? AND upload_id = ?",
            vec![store.into(), upload_id.into()],
        )
        .await
    }

    async fn started_before(
        &self,
        store: &str,
        cutoff: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<PendingUpload>> {
        #[cfg(feature = "mongodb")]
        if let Some(m) = self.db.mongo() {
            return m.uploads_started_before(store, cutoff, limit).await;
        }
        let rows = self
            .db
            .conn()?
            .query_all_raw(self.sql.stmt(
                "SELECT store, upload_id, path, started_at FROM storage_uploads \
                 WHERE store = ? AND started_at < ? ORDER BY started_at LIMIT ?",
                vec![
                    store.into(),
                    cutoff.timestamp_millis().into(),
                    i64::try_from(limit).unwrap_or(i64::MAX).into(),
                ],
            ))
            .await
            .map_err(|e| self.db.map_err(e))?;
        rows.iter()
            .map(|row| {
                Ok(PendingUpload {
                    store: column(row, "store")?,
                    upload_id: column(row, "upload_id")?,
                    path: column(row, "path")?,
                    started_at: DateTime::from_timestamp_millis(column(row, "started_at")?)
                        .unwrap_or(DateTime::<Utc>::MIN_UTC),
                })
            })
            .collect()
    }
}
