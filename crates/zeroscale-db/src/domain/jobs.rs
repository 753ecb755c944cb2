//! Job ownership: which user submitted which background job through the API. The queue
//! holds the job itself; this table only says whose it is, so a user sees only theirs.

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set};
use zeroscale_core::domain::now;
use zeroscale_core::{Error, Result};

use super::by_key::{ByKey, by_id};
use super::entity::user_jobs;
use super::page_limit;
use crate::{Db, WriteTxn};

/// A job and its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedJob {
    /// The queue's job id.
    pub job_id: String,
    /// Who submitted it.
    pub user_id: String,
    /// Its queue.
    pub queue: String,
    /// Its task name.
    pub task: String,
    /// When it was submitted.
    pub created_at: chrono::DateTime<chrono::Utc>,
}

fn to_owned_job(m: user_jobs::Model) -> OwnedJob {
    OwnedJob {
        job_id: m.job_id,
        user_id: m.user_id,
        queue: m.queue,
        task: m.task,
        created_at: m.created_at,
    }
}

/// Job ownership service; see [`super::Domain::jobs`].
#[derive(Debug)]
pub struct UserJobs<'a> {
    db: &'a Db,
}

impl<'a> UserJobs<'a> {
    pub(crate) fn new(db: &'a Db) -> Self {
        UserJobs { db }
    }

    /// Records that `user_id` submitted job `job_id`. Recording the same job twice (an
    /// idempotent enqueue) keeps the first record.
    pub async fn record(
        &self,
        job_id: &str,
        user_id: &str,
        queue: &str,
        task: &str,
    ) -> Result<OwnedJob> {
        if let Some(existing) = self.find(job_id).await? {
            return Ok(existing);
        }
        let model = user_jobs::ActiveModel {
            job_id: Set(job_id.to_owned()),
            user_id: Set(user_id.to_owned()),
            queue: Set(queue.to_owned()),
            task: Set(task.to_owned()),
            created_at: Set(self.db.now()),
        };
        #[cfg(feature = "mongodb")]
        if let Some(m) = self.db.mongo() {
            let model = sea_orm::TryIntoModel::try_into_model(model)
                .map_err(|e| Error::backend("mongodb", e))?;
            match m.insert::<user_jobs::Entity>(None, &model).await {
                // Recorded by a racing call: the first one stands.
                Ok(()) | Err(Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(e),
            }
            return self
                .find(job_id)
                .await?
                .ok_or_else(|| Error::not_found(format!("job {job_id}")));
        }
        user_jobs::Entity::insert(model)
            .exec(self.db.conn()?)
            .await
            .map_err(|e| self.db.map_err(e))?;
        self.find(job_id)
            .await?
            .ok_or_else(|| Error::not_found(format!("job {job_id}")))
    }

    /// [`UserJobs::record`] inside the caller's transaction (with the job's own
    /// [`enqueue_in`](crate::queue::DbQueue::enqueue_in)).
    pub async fn record_in(
        &self,
        txn: &WriteTxn,
        job_id: &str,
        user_id: &str,
        queue: &str,
        task: &str,
    ) -> Result<()> {
        let existing = user_jobs::Entity::find_by_id(job_id.to_owned())
            .by_key(&txn.txn)
            .await
            .map_err(|e| self.db.map_err(e))?;
        if existing.is_some() {
            return Ok(());
        }
        let model = user_jobs::ActiveModel {
            job_id: Set(job_id.to_owned()),
            user_id: Set(user_id.to_owned()),
            queue: Set(queue.to_owned()),
            task: Set(task.to_owned()),
            created_at: Set(now()),
        };
        user_jobs::Entity::insert(model)
            .exec(&txn.txn)
            .await
            .map_err(|e| self.db.map_err(e))?;
        Ok(())
    }

    /// The record of `job_id`, if any user submitted it.
    pub async fn find(&self, job_id: &str) -> Result<Option<OwnedJob>> {
        Ok(by_id::<user_jobs::Entity>(self.db, job_id)
            .await?
            .map(to_owned_job))
    }

    /// `user_id`'s jobs, newest first, `limit` at most (capped), before job `before`.
    pub async fn list(
        &self,
        user_id: &str,
        before: Option<&str>,
        limit: Option<u64>,
    ) -> Result<Vec<OwnedJob>> {
        #[cfg(feature = "mongodb")]
        if let Some(m) = self.db.mongo() {
            let mut filter = mongodb::bson::doc! { "user_id": user_id };
            if let Some(before) = before {
                filter.insert("_id", mongodb::bson::doc! { "$lt": before });
            }
            return Ok(m
                .find::<user_jobs::Entity>(
                    filter,
                    mongodb::bson::doc! { "_id": -1 },
                    page_limit(limit, 50, 200),
                )
                .await?
                .into_iter()
                .map(to_owned_job)
                .collect());
        }
        let mut query = user_jobs::Entity::find().filter(user_jobs::Column::UserId.eq(user_id));
        if let Some(before) = before {
            query = query.filter(user_jobs::Column::JobId.lt(before));
        }
        let query = query
            .order_by_desc(user_jobs::Column::JobId)
            .limit(page_limit(limit, 50, 200));
        // A history: stale-tolerant (see `crate::replicas`).
        Ok(self
            .db
            .stale_read(|conn| {
                let query = query.clone();
                async move { query.all(&conn).await }
            })
            .await?
            .into_iter()
            .map(to_owned_job)
            .collect())
    }
}
