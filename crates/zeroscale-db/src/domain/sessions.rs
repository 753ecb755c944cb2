//! Login sessions: a random token shown once, only its SHA-256 stored; expiry, revocation
//! and purging.

use chrono::Duration;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, Condition, EntityTrait, QueryFilter, Set};
use zeroscale_core::config::AuthConfig;
use zeroscale_core::domain::{Session, User, new_id, now};
use zeroscale_core::{Error, Result};

use super::auth_cache::{AuthCache, AuthChange, Lookup, Verified};
use super::by_key::ByKey;
use super::entity::sessions;
use super::users::to_user;
use super::{entity::users, random_hex, sha256_hex};
use crate::Db;

/// Prefix of session tokens, so they are recognisable (and distinct from API keys).
pub const SESSION_TOKEN_PREFIX: &str = "zss_";

/// A new session and its token: the only time the token is available.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// The stored record.
    pub session: Session,
    /// `zss_` + 64 hex characters. Give it to the client; it is not kept.
    pub token: String,
}

/// Sessions service; see [`super::Domain::sessions`].
#[derive(Debug)]
pub struct Sessions<'a> {
    db: &'a Db,
    auth: &'a AuthConfig,
    cache: &'a AuthCache,
}

fn to_session(m: sessions::Model) -> Session {
    Session {
        id: m.id,
        user_id: m.user_id,
        created_at: m.created_at,
        expires_at: m.expires_at,
        revoked_at: m.revoked_at,
    }
}

impl<'a> Sessions<'a> {
    pub(crate) fn new(db: &'a Db, auth: &'a AuthConfig, cache: &'a AuthCache) -> Self {
        Sessions { db, auth, cache }
    }

    /// Starts a session for `user_id`, valid for `auth.session_ttl_secs`.
    pub async fn create(&self, user_id: &str) -> Result<NewSession> {
        let token = format!("{SESSION_TOKEN_PREFIX}{}", random_hex(32)?);
        let at = self.db.now();
        let ttl =
            Duration::seconds(i64::try_from(self.auth.session_ttl_secs).unwrap_or(i64::MAX / 2));
        let model = sessions::ActiveModel {
            id: Set(new_id()),
            user_id: Set(user_id.to_owned()),
            token_hash: Set(sha256_hex(&token)),
            created_at: Set(at),
            expires_at: Set(at + ttl),
            revoked_at: Set(None),
        };
        #[cfg(feature = "mongodb")]
        if let Some(m) = self.db.mongo() {
            // No foreign keys: the user must exist (a user is never deleted, so the check
            // cannot go stale).
            m.find_one::<users::Entity>(None, crate::mongodb::id_is(user_id))
                .await?
                .ok_or_else(|| Error::not_found(format!("user {user_id}")))?;
            let model = sea_orm::TryIntoModel::try_into_model(model)
                .map_err(|e| Error::backend("mongodb", e))?;
            m.insert::<sessions::Entity>(None, &model).await?;
            return Ok(NewSession {
                session: to_session(model),
                token,
            });
        }
        let model = model
            .insert(self.db.conn()?)
            .await
            .map_err(|e| match self.db.map_err(e) {
                Error::Conflict { .. } => Error::not_found(format!("user {user_id}")),
                other => other,
            })?;
        Ok(NewSession {
            session: to_session(model),
            token,
        })
    }

    /// The session and user for `token`; refuses unknown, expired and revoked tokens and
    /// deactivated users with [`Error::Unauthenticated`].
    ///
    /// A verified token is trusted for `auth.cache_ttl_ms` without reading the database
    /// again; changes made through any [`super::Domain`] that shares its
    /// [`super::AuthChange`]s show at once (see [`super::Domain::auth_changes`]).
    pub async fn validate(&self, token: &str) -> Result<(Session, User)> {
        let hash = sha256_hex(token);
        let generation = match self.cache.lookup(&hash) {
            Lookup::Hit(Verified::Session(session, user)) => {
                if session.expires_at <= now() {
                    return Err(Error::unauthenticated("session expired; log in again"));
                }
                return Ok((session, user));
            }
            // Another kind under this hash: read the database and cache nothing.
            Lookup::Hit(Verified::ApiKey(..)) => u64::MAX,
            Lookup::Miss(generation) => generation,
        };
        let (session, user) = self.read(&hash).await?;
        self.cache.store(
            hash,
            generation,
            Verified::Session(session.clone(), user.clone()),
        );
        Ok((session, user))
    }

    async fn find_with_user(
        &self,
        hash: &str,
    ) -> Result<Option<(sessions::Model, Option<users::Model>)>> {
        #[cfg(feature = "mongodb")]
        if let Some(m) = self.db.mongo() {
            let Some(session) = m
                .find_one::<sessions::Entity>(None, mongodb::bson::doc! { "token_hash": hash })
                .await?
            else {
                return Ok(None);
            };
            let user = m
                .find_one::<users::Entity>(None, crate::mongodb::id_is(&session.user_id))
                .await?;
            return Ok(Some((session, user)));
        }
        sessions::Entity::find()
            .filter(sessions::Column::TokenHash.eq(hash))
            .find_also_related(users::Entity)
            .by_key(self.db.conn()?)
            .await
            .map_err(|e| self.db.map_err(e))
    }

    async fn read(&self, hash: &str) -> Result<(Session, User)> {
        let found = self.find_with_user(hash).await?;
        let Some((session, user)) = found else {
            return Err(Error::unauthenticated(
                "unknown session token; log in again",
            ));
        };
        if session.revoked_at.is_some() {
            return Err(Error::unauthenticated("session was revoked; log in again"));
        }
        if session.expires_at <= now() {
            return Err(Error::unauthenticated("session expired; log in again"));
        }
        let user = user.ok_or_else(|| Error::unauthenticated("the session's user is gone"))?;
        if !user.active {
            return Err(Error::unauthenticated("user is deactivated"));
        }
        Ok((to_session(session), to_user(user)?))
    }

    /// Revokes a session by id. Revoking twice is fine; an unknown id is not found.
    pub async fn revoke(&self, id: &str) -> Result<()> {
        #[cfg(feature = "mongodb")]
        if let Some(m) = self.db.mongo() {
            use mongodb::bson::doc;
            let mut filter = crate::mongodb::id_is(id);
            filter.insert("revoked_at", doc! { "$exists": false });
            let set = doc! { "$set": { "revoked_at": crate::mongodb::date(self.db.now()) } };
            if m.update::<sessions::Entity>(None, filter, set).await? == 0 {
                m.find_one::<sessions::Entity>(None, crate::mongodb::id_is(id))
                    .await?
                    .ok_or_else(|| Error::not_found(format!("session {id}")))?;
            }
            self.cache.changed(AuthChange::Session(id.to_owned()));
            return Ok(());
        }
        let result = sessions::Entity::update_many()
            .col_expr(sessions::Column::RevokedAt, Expr::value(Some(now())))
            .filter(sessions::Column::Id.eq(id))
            .filter(sessions::Column::RevokedAt.is_null())
            .exec(self.db.conn()?)
            .await
            .map_err(|e| self.db.map_err(e))?;
        if result.rows_affected == 0 {
            sessions::Entity::find_by_id(id.to_owned())
                .by_key(self.db.conn()?)
                .await
                .map_err(|e| self.db.map_err(e))?
                .ok_or_else(|| Error::not_found(format!("session {id}")))?;
        }
        self.cache.changed(AuthChange::Session(id.to_owned()));
        Ok(())
    }

    /// Revokes the session `token` belongs to (logout).
    pub async fn revoke_token(&self, token: &str) -> Result<()> {
        let (session, _) = self.validate(token).await?;
        self.revoke(&session.id).await
    }

    /// Deletes expired and revoked sessions; returns how many.
    pub async fn purge_expired(&self) -> Result<u64> {
        #[cfg(feature = "mongodb")]
        if let Some(m) = self.db.mongo() {
            use mongodb::bson::doc;
            let filter = doc! { "$or": [
                { "expires_at": { "$lte": crate::mongodb::date(self.db.now()) } },
                { "revoked_at": { "$exists": true } },
            ] };
            return m.delete::<sessions::Entity>(None, filter).await;
        }
        let result = sessions::Entity::delete_many()
            .filter(
                Condition::any()
                    .add(sessions::Column::ExpiresAt.lte(now()))
                    .add(sessions::Column::RevokedAt.is_not_null()),
            )
            .exec(self.db.conn()?)
            .await
            .map_err(|e| self.db.map_err(e))?;
        Ok(result.rows_affected)
    }
}
