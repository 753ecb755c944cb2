//! Credits and generations: reserve credits and create a pending generation in one
//! transaction; complete (refunding any difference) or fail (refunding everything) in one
//! transaction with the status change. The balance never goes negative: every debit is a
//! conditional update (`… WHERE credits >= cost`).

use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use serde_json::Value;
use zeroscale_core::domain::{Generation, GenerationStatus, new_id, now};
use zeroscale_core::{Error, Result};

use super::auth_cache::{AuthCache, AuthChange};
use super::by_key::{ByKey, by_id};
use super::entity::{generations, users};
use super::page_limit;
use crate::{Db, WriteTxn};

/// A generation to start.
#[derive(Debug, Clone)]
pub struct NewGeneration {
    /// Who pays.
    pub user_id: String,
    /// The model id.
    pub model: String,
    /// The prompt.
    pub prompt: String,
    /// Request parameters.
    pub params: Value,
    /// Credits to reserve (not negative).
    pub cost: i64,
}

/// Credits service; see [`super::Domain::credits`].
#[derive(Debug)]
pub struct Credits<'a> {
    db: &'a Db,
    cache: &'a std::sync::Arc<AuthCache>,
}

fn to_generation(m: generations::Model) -> Result<Generation> {
    Ok(Generation {
        status: m.status.parse()?,
        id: m.id,
        user_id: m.user_id,
        model: m.model,
        prompt: m.prompt,
        params: m.params,
        reserved_credits: m.reserved_credits,
        actual_cost: m.actual_cost,
        provider: m.provider,
        result: m.result,
        error: m.error,
        created_at: m.created_at,
        updated_at: m.updated_at,
        completed_at: m.completed_at,
    })
}

impl<'a> Credits<'a> {
    pub(crate) fn new(db: &'a Db, cache: &'a std::sync::Arc<AuthCache>) -> Self {
        Credits { db, cache }
    }

    async fn adjust_credits<C: ConnectionTrait>(
        &self,
        conn: &C,
        user_id: &str,
        delta: i64,
    ) -> Result<()> {
        users::Entity::update_many()
            .col_expr(
                users::Column::Credits,
                Expr::col(users::Column::Credits).add(delta),
            )
            .col_expr(users::Column::UpdatedAt, Expr::value(now()))
            .filter(users::Column::Id.eq(user_id))
            .exec(conn)
            .await
            .map_err(|e| self.db.map_err(e))?;
        Ok(())
    }

    /// Takes `cost` credits and creates a pending generation, atomically. Too few credits
    /// is [`Error::Conflict`]; a deactivated user [`Error::PermissionDenied`].
    pub async fn reserve(&self, new: NewGeneration) -> Result<Generation> {
        #[cfg(feature = "mongodb")]
        if let Some(m) = self.db.mongo() {
            if new.cost < 0 {
                return Err(Error::invalid_input("cost must not be negative"));
            }
            let at = self.db.now();
            let generation = generations::Model {
                id: new_id(),
                user_id: new.user_id,
                model: new.model,
                prompt: new.prompt,
                params: new.params,
                status: GenerationStatus::Pending.as_str().to_owned(),
                reserved_credits: new.cost,
                actual_cost: None,
                provider: None,
                result: None,
                error: None,
                created_at: at,
                updated_at: at,
                completed_at: None,
            };
            crate::mongodb::credits::reserve(m, &generation).await?;
            crate::metrics::count_credits("reserved", generation.reserved_credits);
            self.cache
                .changed(AuthChange::User(generation.user_id.clone()));
            return to_generation(generation);
        }
        let mut txn = self.db.begin_job_txn().await?;
        let generation = self.reserve_in(&mut txn, new).await?;
        txn.commit(self.db).await?;
        Ok(generation)
    }

    /// [`Credits::reserve`] inside the caller's transaction, so the generation can commit
    /// (or roll back) with the job that will run it.
    pub async fn reserve_in(&self, txn: &mut WriteTxn, new: NewGeneration) -> Result<Generation> {
        if new.cost < 0 {
            return Err(Error::invalid_input("cost must not be negative"));
        }
        let write = &mut *txn;
        let txn = &write.txn;
        let debited = users::Entity::update_many()
            .col_expr(
                users::Column::Credits,
                Expr::col(users::Column::Credits).sub(new.cost),
            )
            .col_expr(users::Column::UpdatedAt, Expr::value(now()))
            .filter(users::Column::Id.eq(&new.user_id))
            .filter(users::Column::Active.eq(true))
            .filter(users::Column::Credits.gte(new.cost))
            .exec(txn)
            .await
            .map_err(|e| self.db.map_err(e))?;
        if debited.rows_affected == 0 {
            let user = users::Entity::find_by_id(new.user_id.clone())
                .by_key(txn)
                .await
                .map_err(|e| self.db.map_err(e))?
                .ok_or_else(|| Error::not_found(format!("user {}", new.user_id)))?;
            return Err(if user.active {
                Error::conflict(format!(
                    "insufficient credits: balance is {}, this needs {}",
                    user.credits, new.cost
                ))
            } else {
                Error::permission_denied("the user is deactivated")
            });
        }
        let at = now();
        let model = generations::ActiveModel {
            id: Set(new_id()),
            user_id: Set(new.user_id),
            model: Set(new.model),
            prompt: Set(new.prompt),
            params: Set(new.params),
            status: Set(GenerationStatus::Pending.as_str().to_owned()),
            reserved_credits: Set(new.cost),
            actual_cost: Set(None),
            provider: Set(None),
            result: Set(None),
            error: Set(None),
            created_at: Set(at),
            updated_at: Set(at),
            completed_at: Set(None),
        }
        .insert(txn)
        .await
        .map_err(|e| self.db.map_err(e))?;
        let (cache, user) = (std::sync::Arc::clone(self.cache), model.user_id.clone());
        let reserved = model.reserved_credits;
        write.after_commit(move || {
            crate::metrics::count_credits("reserved", reserved);
            cache.changed(AuthChange::User(user));
        });
        to_generation(model)
    }

    /// Moves a pending generation to `status` with `columns` set, atomically (only a
    /// pending generation changes); returns it as stored. A finished one is
    /// [`Error::Conflict`], an unknown one [`Error::NotFound`].
    async fn finish_pending<C: ConnectionTrait>(
        &self,
        conn: &C,
        id: &str,
        status: GenerationStatus,
        columns: Vec<(generations::Column, Expr)>,
    ) -> Result<generations::Model> {
        let at = now();
        let mut update = generations::Entity::update_many()
            .col_expr(generations::Column::Status, Expr::value(status.as_str()))
            .col_expr(generations::Column::UpdatedAt, Expr::value(at))
            .col_expr(generations::Column::CompletedAt, Expr::value(Some(at)))
            .filter(generations::Column::Id.eq(id))
            .filter(generations::Column::Status.eq(GenerationStatus::Pending.as_str()));
        for (column, value) in columns {
            update = update.col_expr(column, value);
        }
        let updated = update.exec(conn).await.map_err(|e| self.db.map_err(e))?;
        if updated.rows_affected == 0 {
            return Err(self.pending_or_conflict(conn, id).await);
        }
        generations::Entity::find_by_id(id.to_owned())
            .by_key(conn)
            .await
            .map_err(|e| self.db.map_err(e))?
            .ok_or_else(|| Error::not_found(format!("generation {id}")))
    }

    async fn pending_or_conflict<C: ConnectionTrait>(&self, conn: &C, id: &str) -> Error {
        match generations::Entity::find_by_id(id.to_owned())
            .by_key(conn)
            .await
        {
            Ok(Some(g)) => Error::conflict(format!("generation {id} is already {}", g.status)),
            Ok(None) => Error::not_found(format!("generation {id}")),
            Err(e) => self.db.map_err(e),
        }
    }

    /// Marks a pending generation succeeded and settles: refunds `reserved - actual` when
    /// it cost less; when it cost more, takes the difference only as far as the balance
    /// allows (never negative). Finished generations are [`Error::Conflict`].
    pub async fn complete(
        &self,
        id: &str,
        provider: &str,
        actual_cost: i64,
        result: Value,
    ) -> Result<Generation> {
        if actual_cost < 0 {
            return Err(Error::invalid_input("actual cost must not be negative"));
        }
        #[cfg(feature = "mongodb")]
        if let Some(m) = self.db.mongo() {
            let set = mongodb::bson::doc! {
                "provider": provider,
                "actual_cost": actual_cost,
                "result": crate::mongodb::rows::json_to_bson(result),
            };
            let generation =
                crate::mongodb::credits::finish(m, id, GenerationStatus::Succeeded, set, |g| {
                    g.reserved_credits - actual_cost
                })
                .await?;
            count_settled(generation.reserved_credits, Some(actual_cost));
            self.cache
                .changed(AuthChange::User(generation.user_id.clone()));
            return to_generation(generation);
        }
        let txn = self.db.begin_write().await?;
        let generation = self
            .finish_pending(
                &txn,
                id,
                GenerationStatus::Succeeded,
                vec![
                    (generations::Column::Provider, Expr::value(provider)),
                    (generations::Column::ActualCost, Expr::value(actual_cost)),
                    (generations::Column::Result, Expr::value(result)),
                ],
            )
            .await?;
        let difference = generation.reserved_credits - actual_cost;
        if difference > 0 {
            self.adjust_credits(&txn, &generation.user_id, difference)
                .await?;
        } else if difference < 0 {
            // Take the overage, but never below zero.
            let extra = -difference;
            users::Entity::update_many()
                .col_expr(
                    users::Column::Credits,
                    Expr::case(
                        Expr::col(users::Column::Credits).gte(extra),
                        Expr::col(users::Column::Credits).sub(extra),
                    )
                    .finally(Expr::value(0i64))
                    .into(),
                )
                .filter(users::Column::Id.eq(&generation.user_id))
                .exec(&txn)
                .await
                .map_err(|e| self.db.map_err(e))?;
        }
        txn.commit().await.map_err(|e| self.db.map_err(e))?;
        count_settled(generation.reserved_credits, Some(actual_cost));
        self.cache
            .changed(AuthChange::User(generation.user_id.clone()));
        to_generation(generation)
    }

    /// Marks a pending generation failed and refunds everything it reserved, in one
    /// transaction. Finished generations are [`Error::Conflict`].
    pub async fn fail(&self, id: &str, error: &str) -> Result<Generation> {
        #[cfg(feature = "mongodb")]
        if let Some(m) = self.db.mongo() {
            let generation = crate::mongodb::credits::finish(
                m,
                id,
                GenerationStatus::Failed,
                mongodb::bson::doc! { "error": error },
                |g| g.reserved_credits,
            )
            .await?;
            count_settled(generation.reserved_credits, None);
            self.cache
                .changed(AuthChange::User(generation.user_id.clone()));
            return to_generation(generation);
        }
        let txn = self.db.begin_write().await?;
        let generation = self
            .finish_pending(
                &txn,
                id,
                GenerationStatus::Failed,
                vec![(generations::Column::Error, Expr::value(error))],
            )
            .await?;
        self.adjust_credits(&txn, &generation.user_id, generation.reserved_credits)
            .await?;
        txn.commit().await.map_err(|e| self.db.map_err(e))?;
        count_settled(generation.reserved_credits, None);
        self.cache
            .changed(AuthChange::User(generation.user_id.clone()));
        to_generation(generation)
    }

    /// Pending generations created before `before`, oldest first, at most `limit`: the
    /// ones whose job was lost, for [`Credits::fail`] to refund.
    pub async fn stale_pending(
        &self,
        before: chrono::DateTime<chrono::Utc>,
        limit: u64,
    ) -> Result<Vec<Generation>> {
        #[cfg(feature = "mongodb")]
        if let Some(m) = self.db.mongo() {
            let filter = mongodb::bson::doc! {
                "status": GenerationStatus::Pending.as_str(),
                "created_at": crate::mongodb::before(before),
            };
            return m
                .find::<generations::Entity>(filter, mongodb::bson::doc! { "_id": 1 }, limit)
                .await?
                .into_iter()
                .map(to_generation)
                .collect();
        }
        generations::Entity::find()
            .filter(generations::Column::Status.eq(GenerationStatus::Pending.as_str()))
            .filter(generations::Column::CreatedAt.lt(before))
            .order_by_asc(generations::Column::Id)
            .limit(limit)
            .all(self.db.conn()?)
            .await
            .map_err(|e| self.db.map_err(e))?
            .into_iter()
            .map(to_generation)
            .collect()
    }

    /// Settles the credits of finished generations whose settlement a crash interrupted;
    /// returns how many. Only MongoDB without transactions can leave any (elsewhere a
    /// generation and its credits change in one transaction): the sweeper runs it with
    /// [`Credits::stale_pending`].
    pub async fn settle_unsettled(&self, limit: u64) -> Result<usize> {
        #[cfg(feature = "mongodb")]
        if let Some(m) = self.db.mongo() {
            let settled = crate::mongodb::credits::settle_unsettled(m, limit).await?;
            if settled > 0 {
                self.cache.changed(AuthChange::All);
            }
            return Ok(settled);
        }
        let _ = limit;
        Ok(0)
    }

    /// A generation by id.
    pub async fn get(&self, id: &str) -> Result<Generation> {
        let model = by_id::<generations::Entity>(self.db, id)
            .await?
            .ok_or_else(|| Error::not_found(format!("generation {id}")))?;
        to_generation(model)
    }

    /// A user's generations, oldest first, after the id `after`.
    pub async fn list_for_user(
        &self,
        user_id: &str,
        after: Option<&str>,
        limit: Option<u64>,
    ) -> Result<Vec<Generation>> {
        #[cfg(feature = "mongodb")]
        if let Some(m) = self.db.mongo() {
            let mut filter = mongodb::bson::doc! { "user_id": user_id };
            if let Some(after) = after {
                filter.insert("_id", mongodb::bson::doc! { "$gt": after });
            }
            return m
                .find::<generations::Entity>(
                    filter,
                    mongodb::bson::doc! { "_id": 1 },
                    page_limit(limit, 50, 500),
                )
                .await?
                .into_iter()
                .map(to_generation)
                .collect();
        }
        let mut query = generations::Entity::find()
            .filter(generations::Column::UserId.eq(user_id))
            .order_by_asc(generations::Column::Id);
        if let Some(after) = after {
            query = query.filter(generations::Column::Id.gt(after));
        }
        query
            .limit(page_limit(limit, 50, 500))
            .all(self.db.conn()?)
            .await
            .map_err(|e| self.db.map_err(e))?
            .into_iter()
            .map(to_generation)
            .collect()
    }

    /// The newest generations of every user, newest first (for the admin panel).
    pub async fn list_recent(&self, limit: u64) -> Result<Vec<Generation>> {
        let limit = limit.clamp(1, 500);
        #[cfg(feature = "mongodb")]
        if let Some(m) = self.db.mongo() {
            return m
                .find::<generations::Entity>(
                    mongodb::bson::doc! {},
                    mongodb::bson::doc! { "_id": -1 },
                    limit,
                )
                .await?
                .into_iter()
                .map(to_generation)
                .collect();
        }
        generations::Entity::find()
            .order_by_desc(generations::Column::Id)
            .limit(limit)
            .all(self.db.conn()?)
            .await
            .map_err(|e| self.db.map_err(e))?
            .into_iter()
            .map(to_generation)
            .collect()
    }
}

/// Counts a settled generation: what it cost (`None`: it failed, nothing spent) and what
/// went back to the user.
fn count_settled(reserved: i64, spent: Option<i64>) {
    let spent = spent.unwrap_or(0);
    crate::metrics::count_credits("spent", spent);
    crate::metrics::count_credits("refunded", reserved - spent);
}
