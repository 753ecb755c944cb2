//! Reading the one row a primary or unique key names, without sea-orm's `LIMIT ?`.
//!
//! `one()` binds its limit as a parameter, and the SQLite that sqlx bundles is built with
//! STAT4, which prepares a statement again on every run when a bound value may change
//! its plan, as a bound LIMIT does. On the session lookup (two tables, 16 columns) that
//! re-preparation cost more than the read itself: 80–90 µs a lookup against 40–45 µs
//! with no LIMIT (`cargo xtask bench database`, SQLite). A key that is unique needs no
//! LIMIT: these reads go without one.

use sea_orm::{ConnectionTrait, DbErr, EntityTrait, Select, SelectTwo};

/// `one()` for a query that filters on a primary or unique key (at most one row).
pub(crate) trait ByKey {
    /// What a row reads as.
    type Item;

    /// The row, if there is one. Only for queries on a unique key: every matching row
    /// is read.
    async fn by_key<C: ConnectionTrait>(self, conn: &C) -> Result<Option<Self::Item>, DbErr>;
}

impl<E: EntityTrait> ByKey for Select<E> {
    type Item = E::Model;

    async fn by_key<C: ConnectionTrait>(self, conn: &C) -> Result<Option<E::Model>, DbErr> {
        Ok(self.all(conn).await?.into_iter().next())
    }
}

impl<E: EntityTrait, F: EntityTrait> ByKey for SelectTwo<E, F> {
    type Item = (E::Model, Option<F::Model>);

    async fn by_key<C: ConnectionTrait>(
        self,
        conn: &C,
    ) -> Result<Option<(E::Model, Option<F::Model>)>, DbErr> {
        Ok(self.all(conn).await?.into_iter().next())
    }
}

/// The row of `E` whose primary key is `id`, on any engine.
pub(crate) async fn by_id<E>(db: &crate::Db, id: &str) -> zeroscale_core::Result<Option<E::Model>>
where
    E: sea_orm::EntityTrait + Default,
    E::ActiveModel: sea_orm::ActiveModelTrait<Entity = E> + sea_orm::TryIntoModel<E::Model>,
    <E::PrimaryKey as sea_orm::PrimaryKeyTrait>::ValueType: From<String>,
    E::Model: Sync,
{
    #[cfg(feature = "mongodb")]
    if let Some(m) = db.mongo() {
        return m.find_one::<E>(None, crate::mongodb::id_is(id)).await;
    }
    E::find_by_id(id.to_owned())
        .by_key(db.conn()?)
        .await
        .map_err(|e| db.map_err(e))
}
