//! Users: registration with argon2id password hashes, authentication, roles,
//! activation and credit balances.

use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use zeroscale_core::config::AuthConfig;
use zeroscale_core::domain::{Role, User, new_id, now};
use zeroscale_core::{Error, Result};

use super::auth_cache::{AuthCache, AuthChange};
use super::by_key::ByKey;
use super::entity::users;
use super::page_limit;
use super::passwords::Passwords;
use crate::Db;

/// A user to register.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// 3 to 64 characters: letters, digits, `_`, `-`, `.`.
    pub username: String,
    /// At least `auth.min_password_length` characters.
    pub password: String,
    /// Admin or user.
    pub role: Role,
    /// Starting credit balance (not negative).
    pub credits: i64,
}

/// Users service; see [`super::Domain::users`].
#[derive(Debug)]
pub struct Users<'a> {
    db: &'a Db,
    auth: &'a AuthConfig,
    passwords: &'a Passwords,
    cache: &'a AuthCache,
}

pub(crate) fn to_user(m: users::Model) -> Result<User> {
    Ok(User {
        role: m.role.parse()?,
        id: m.id,
        username: m.username,
        active: m.active,
        credits: m.credits,
        created_at: m.created_at,
        updated_at: m.updated_at,
        last_login_at: m.last_login_at,
    })
}

/// What makes two usernames the same: case does not count. Usernames are ASCII, and
/// SQL's `lower()` (which the migration used) lower-cases exactly ASCII on both engines.
pub(crate) fn username_key(username: &str) -> String {
    username.trim().to_ascii_lowercase()
}

/// The name of the migration that added `users.username_key`.
const USERNAME_KEY_MIGRATION: &str = "m20261203_000003_username_key";

fn validate_username(username: &str) -> Result<()> {
    let ok_chars = username
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !(3..=64).contains(&username.len()) || !ok_chars {
        return Err(Error::invalid_input(
            "username must be 3 to 64 characters of letters, digits, `_`, `-` and `.`",
        ));
    }
    Ok(())
}

impl<'a> Users<'a> {
    pub(crate) fn new(
        db: &'a Db,
        auth: &'a AuthConfig,
        passwords: &'a Passwords,
        cache: &'a AuthCache,
    ) -> Self {
        Users {
            db,
            auth,
            passwords,
            cache,
        }
    }

    /// Registers a user. A taken username is [`Error::AlreadyExists`].
    pub async fn register(&self, new: NewUser) -> Result<User> {
        validate_username(&new.username)?;
        if new.password.chars().count() < self.auth.min_password_length {
            return Err(Error::invalid_input(format!(
                "password must be at least {} characters",
                self.auth.min_password_length
            )));
        }
        if new.credits < 0 {
            return Err(Error::invalid_input(
                "starting credits must not be negative",
            ));
        }
        let hash = self.passwords.hash(new.password).await?;
        let at = self.db.now();
        let model = users::ActiveModel {
            id: Set(new_id()),
            username: Set(new.username.clone()),
            username_key: Set(username_key(&new.username)),
            password_hash: Set(hash),
            role: Set(new.role.as_str().to_owned()),
            active: Set(true),
            credits: Set(new.credits),
            created_at: Set(at),
            updated_at: Set(at),
            last_login_at: Set(None),
        };
        let taken = |e: Error| match e {
            Error::AlreadyExists { .. } => Error::already_exists(format!(
                "user `{}` (usernames are the same whatever their case)",
                new.username
            )),
            other => other,
        };
        #[cfg(feature = "mongodb")]
        if let Some(m) = self.db.mongo() {
            let model = sea_orm::TryIntoModel::try_into_model(model)
                .map_err(|e| Error::backend("mongodb", e))?;
            m.insert::<users::Entity>(None, &model)
                .await
                .map_err(taken)?;
            return to_user(model);
        }
        match model.insert(self.db.conn()?).await {
            Ok(m) => to_user(m),
            Err(e) => Err(taken(self.db.map_err(e))),
        }
    }

    /// Checks a username and password; records the login. Wrong username and wrong
    /// password give the same [`Error::Unauthenticated`], after the same work: exactly one
    /// argon2 verification whether or not the user exists or is active. A hash made with
    /// older `auth.argon2_*` parameters is replaced on a successful login.
    pub async fn authenticate(&self, username: &str, password: &str) -> Result<User> {
        let found = self.find_by_username(username).await?;
        let stored = found.as_ref().map(|m| m.password_hash.as_str());
        let verdict = self.passwords.verify(password, stored).await?;
        let Some(model) = found.filter(|_| verdict.ok) else {
            return Err(Error::unauthenticated("wrong username or password"));
        };
        if !model.active {
            return Err(Error::unauthenticated(format!(
                "user `{username}` is deactivated; ask an admin to reactivate it"
            )));
        }
        let at = self.db.now();
        #[cfg(feature = "mongodb")]
        if let Some(m) = self.db.mongo() {
            let mut set = mongodb::bson::doc! { "last_login_at": crate::mongodb::date(at) };
            if verdict.needs_rehash {
                set.insert(
                    "password_hash",
                    self.passwords.hash(password.to_owned()).await?,
                );
            }
            m.update::<users::Entity>(
                None,
                crate::mongodb::id_is(&model.id),
                mongodb::bson::doc! { "$set": set },
            )
            .await?;
            self.cache.changed(AuthChange::User(model.id.clone()));
            let mut user = to_user(model)?;
            user.last_login_at = Some(at);
            return Ok(user);
        }
        let mut update = users::Entity::update_many()
            .col_expr(users::Column::LastLoginAt, Expr::value(at))
            .filter(users::Column::Id.eq(&model.id));
        if verdict.needs_rehash {
            let rehashed = self.passwords.hash(password.to_owned()).await?;
            update = update.col_expr(users::Column::PasswordHash, Expr::value(rehashed));
        }
        update
            .exec(self.db.conn()?)
            .await
            .map_err(|e| self.db.map_err(e))?;
        self.cache.changed(AuthChange::User(model.id.clone()));
        let mut user = to_user(model)?;
        user.last_login_at = Some(at);
        Ok(user)
    }

    /// Renames the user named exactly `from` (case counts here, so one of two names that
    /// differ only by case can be picked) to `to`, which must be free whatever its case.
    /// Works before the migration that makes names case-insensitive, which refuses to run
    /// while such pairs exist. Returns the user's id.
    pub async fn rename(&self, from: &str, to: &str) -> Result<String> {
        use sea_orm::{ConnectionTrait, Statement};
        validate_username(to)?;
        #[cfg(feature = "mongodb")]
        if let Some(m) = self.db.mongo() {
            use mongodb::bson::doc;
            let user = m
                .find_one::<users::Entity>(None, doc! { "username": from })
                .await?
                .ok_or_else(|| Error::not_found(format!("user `{from}` (exactly as spelled)")))?;
            let set = doc! { "$set": {
                "username": to,
                "username_key": username_key(to),
                "updated_at": crate::mongodb::date(self.db.now()),
            } };
            m.update::<users::Entity>(None, crate::mongodb::id_is(&user.id), set)
                .await
                .map_err(|e| match e {
                    Error::AlreadyExists { .. } => Error::already_exists(format!(
                        "user `{to}` (usernames are the same whatever their case)"
                    )),
                    other => other,
                })?;
            self.cache.changed(AuthChange::User(user.id.clone()));
            return Ok(user.id);
        }
        let backend = self.db.conn()?.get_database_backend();
        let p = |n: usize| match self.db.sql_dialect() {
            crate::Dialect::Postgres => format!("${n}"),
            crate::Dialect::Sqlite => "?".to_owned(),
        };
        let map = |e| self.db.map_err(e);
        let txn = self.db.begin_write().await?;
        let row = txn
            .query_one_raw(Statement::from_sql_and_values(
                backend,
                format!("SELECT id FROM users WHERE username = {}", p(1)),
                [from.into()],
            ))
            .await
            .map_err(map)?
            .ok_or_else(|| Error::not_found(format!("user `{from}` (exactly as spelled)")))?;
        let id: String = row.try_get("", "id").map_err(map)?;
        let taken = txn
            .query_one_raw(Statement::from_sql_and_values(
                backend,
                format!(
                    "SELECT username FROM users WHERE lower(username) = {} AND id <> {}",
                    p(1),
                    p(2)
                ),
                [username_key(to).into(), id.clone().into()],
            ))
            .await
            .map_err(map)?;
        if let Some(row) = taken {
            let other: String = row.try_get("", "username").map_err(map)?;
            return Err(Error::already_exists(format!(
                "user `{other}`: `{to}` is the same name whatever its case; pick another"
            )));
        }
        let has_key = self
            .db
            .migrate_status()
            .await?
            .iter()
            .any(|m| m.name == USERNAME_KEY_MIGRATION && m.applied);
        let (sql, values): (String, Vec<sea_orm::Value>) = if has_key {
            (
                format!(
                    "UPDATE users SET username = {}, username_key = {}, updated_at = {} \
                     WHERE id = {}",
                    p(1),
                    p(2),
                    p(3),
                    p(4)
                ),
                vec![
                    to.into(),
                    username_key(to).into(),
                    now().into(),
                    id.clone().into(),
                ],
            )
        } else {
            (
                format!(
                    "UPDATE users SET username = {}, updated_at = {} WHERE id = {}",
                    p(1),
                    p(2),
                    p(3)
                ),
                vec![to.into(), now().into(), id.clone().into()],
            )
        };
        txn.execute_raw(Statement::from_sql_and_values(backend, sql, values))
            .await
            .map_err(map)?;
        txn.commit().await.map_err(map)?;
        self.cache.changed(AuthChange::User(id.clone()));
        Ok(id)
    }

    /// A user by id.
    pub async fn get(&self, id: &str) -> Result<User> {
        #[cfg(feature = "mongodb")]
        if let Some(m) = self.db.mongo() {
            let model = m
                .find_one::<users::Entity>(None, crate::mongodb::id_is(id))
                .await?
                .ok_or_else(|| Error::not_found(format!("user {id}")))?;
            return to_user(model);
        }
        let model = users::Entity::find_by_id(id.to_owned())
            .by_key(self.db.conn()?)
            .await
            .map_err(|e| self.db.map_err(e))?
            .ok_or_else(|| Error::not_found(format!("user {id}")))?;
        to_user(model)
    }

    /// A user by username, whatever its case.
    pub async fn by_username(&self, username: &str) -> Result<User> {
        let model = self
            .find_by_username(username)
            .await?
            .ok_or_else(|| Error::not_found(format!("user `{username}`")))?;
        to_user(model)
    }

    /// The stored password hash of `username` (for tests of rehashing).
    #[doc(hidden)]
    pub async fn stored_password_hash(&self, username: &str) -> Result<Option<String>> {
        Ok(self
            .find_by_username(username)
            .await?
            .map(|m| m.password_hash))
    }

    async fn find_by_username(&self, username: &str) -> Result<Option<users::Model>> {
        let key = username_key(username);
        #[cfg(feature = "mongodb")]
        if let Some(m) = self.db.mongo() {
            return m
                .find_one::<users::Entity>(None, mongodb::bson::doc! { "username_key": key })
                .await;
        }
        users::Entity::find()
            .filter(users::Column::UsernameKey.eq(key))
            .by_key(self.db.conn()?)
            .await
            .map_err(|e| self.db.map_err(e))
    }

    /// Users in id (creation) order, after the id `after`, at most `limit` (default 50,
    /// at most 500).
    pub async fn list(&self, after: Option<&str>, limit: Option<u64>) -> Result<Vec<User>> {
        #[cfg(feature = "mongodb")]
        if let Some(m) = self.db.mongo() {
            let filter = after.map_or_else(mongodb::bson::Document::new, |a| {
                mongodb::bson::doc! { "_id": { "$gt": a } }
            });
            return m
                .find::<users::Entity>(
                    filter,
                    mongodb::bson::doc! { "_id": 1 },
                    page_limit(limit, 50, 500),
                )
                .await?
                .into_iter()
                .map(to_user)
                .collect();
        }
        let mut query = users::Entity::find().order_by_asc(users::Column::Id);
        if let Some(after) = after {
            query = query.filter(users::Column::Id.gt(after));
        }
        query
            .limit(page_limit(limit, 50, 500))
            .all(self.db.conn()?)
            .await
            .map_err(|e| self.db.map_err(e))?
            .into_iter()
            .map(to_user)
            .collect()
    }

    /// How many users there are (to know whether the first admin must be created).
    pub async fn count(&self) -> Result<u64> {
        #[cfg(feature = "mongodb")]
        if let Some(m) = self.db.mongo() {
            return m
                .count::<users::Entity>(mongodb::bson::Document::new())
                .await;
        }
        users::Entity::find()
            .count(self.db.conn()?)
            .await
            .map_err(|e| self.db.map_err(e))
    }

    async fn update_one(
        &self,
        id: &str,
        col: users::Column,
        value: sea_orm::Value,
    ) -> Result<User> {
        #[cfg(feature = "mongodb")]
        if let Some(m) = self.db.mongo() {
            use sea_orm::IdenStatic;
            let set = mongodb::bson::doc! { "$set": {
                col.as_str(): crate::mongodb::rows::value(value),
                "updated_at": crate::mongodb::date(self.db.now()),
            } };
            let model = m
                .find_update::<users::Entity>(None, crate::mongodb::id_is(id), set)
                .await?
                .ok_or_else(|| Error::not_found(format!("user {id}")))?;
            self.cache.changed(AuthChange::User(id.to_owned()));
            return to_user(model);
        }
        let result = users::Entity::update_many()
            .col_expr(col, Expr::value(value))
            .col_expr(users::Column::UpdatedAt, Expr::value(now()))
            .filter(users::Column::Id.eq(id))
            .exec(self.db.conn()?)
            .await
            .map_err(|e| self.db.map_err(e))?;
        if result.rows_affected == 0 {
            return Err(Error::not_found(format!("user {id}")));
        }
        self.cache.changed(AuthChange::User(id.to_owned()));
        self.get(id).await
    }

    /// Activates or deactivates a user. Deactivated users cannot log in; their sessions
    /// and API keys stop working.
    pub async fn set_active(&self, id: &str, active: bool) -> Result<User> {
        self.update_one(id, users::Column::Active, active.into())
            .await
    }

    /// Changes a user's role.
    pub async fn set_role(&self, id: &str, role: Role) -> Result<User> {
        self.update_one(id, users::Column::Role, role.as_str().into())
            .await
    }

    /// Sets a user's credit balance (not negative).
    pub async fn set_credits(&self, id: &str, credits: i64) -> Result<User> {
        if credits < 0 {
            return Err(Error::invalid_input("credits must not be negative"));
        }
        self.update_one(id, users::Column::Credits, credits.into())
            .await
    }

    /// Adds `delta` credits (negative to take), refusing to go below zero.
    pub async fn add_credits(&self, id: &str, delta: i64) -> Result<User> {
        #[cfg(feature = "mongodb")]
        if let Some(m) = self.db.mongo() {
            use mongodb::bson::doc;
            let mut filter = crate::mongodb::id_is(id);
            if delta < 0 {
                filter.insert("credits", doc! { "$gte": -delta });
            }
            let update = doc! {
                "$inc": { "credits": delta },
                "$set": { "updated_at": crate::mongodb::date(self.db.now()) },
            };
            let Some(model) = m.find_update::<users::Entity>(None, filter, update).await? else {
                let user = self.get(id).await?;
                return Err(Error::conflict(format!(
                    "insufficient credits: balance is {}, cannot take {}",
                    user.credits, -delta
                )));
            };
            self.cache.changed(AuthChange::User(id.to_owned()));
            return to_user(model);
        }
        let mut update = users::Entity::update_many()
            .col_expr(
                users::Column::Credits,
                Expr::col(users::Column::Credits).add(delta),
            )
            .col_expr(users::Column::UpdatedAt, Expr::value(now()))
            .filter(users::Column::Id.eq(id));
        if delta < 0 {
            update = update.filter(users::Column::Credits.gte(-delta));
        }
        let result = update
            .exec(self.db.conn()?)
            .await
            .map_err(|e| self.db.map_err(e))?;
        if result.rows_affected == 0 {
            let user = self.get(id).await?;
            return Err(Error::conflict(format!(
                "insufficient credits: balance is {}, cannot take {}",
                user.credits, -delta
            )));
        }
        self.cache.changed(AuthChange::User(id.to_owned()));
        self.get(id).await
    }
}
