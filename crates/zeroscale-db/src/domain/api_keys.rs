//! API keys: a random key shown once (`zs_<prefix>_<secret>`), stored as a SHA-256 hash
//! with a non-secret lookup prefix; optional system prompt and adapter; revocation.

use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set};
use zeroscale_core::domain::{ApiKey, User, new_id};
use zeroscale_core::{Error, Result};

use super::auth_cache::{AuthCache, AuthChange, Lookup, Verified};
use super::by_key::{ByKey, by_id};
use super::entity::{api_keys, system_prompts, users};
use super::users::to_user;
use super::{constant_time_eq, random_hex, sha256_hex};
use crate::Db;

/// Compared with when no key has the presented prefix: 64 hex digits, like a real hash,
/// that SHA-256 of a key will not produce.
const NO_KEY_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// How stale a key's `last_used_at` may be: a key used all the time is written at most
/// once a minute, not on every request.
const LAST_USED_RESOLUTION_SECS: i64 = 60;

/// A key to create.
#[derive(Debug, Clone, Default)]
pub struct NewApiKey {
    /// The owner; requests with the key act as this user.
    pub user_id: String,
    /// Who uses the key (1 to 128 characters).
    pub client_name: String,
    /// Free text.
    pub notes: Option<String>,
    /// A system prompt to link (must exist).
    pub system_prompt_id: Option<String>,
    /// A model adapter name.
    pub adapter_name: Option<String>,
    /// Requests per minute for this key; `None`: the configured default.
    pub rate_limit_per_minute: Option<u32>,
}

/// A new key: the only time the plaintext is available.
#[derive(Debug, Clone)]
pub struct CreatedApiKey {
    /// The stored record.
    pub key: ApiKey,
    /// `zs_<8 hex>_<64 hex>`. Give it to the client; it is not kept.
    pub plaintext: String,
}

/// API keys service; see [`super::Domain::api_keys`].
#[derive(Debug)]
pub struct ApiKeys<'a> {
    db: &'a Db,
    cache: &'a AuthCache,
}

fn to_key(m: api_keys::Model) -> ApiKey {
    ApiKey {
        id: m.id,
        user_id: m.user_id,
        prefix: m.prefix,
        client_name: m.client_name,
        notes: m.notes,
        active: m.active,
        system_prompt_id: m.system_prompt_id,
        adapter_name: m.adapter_name,
        created_at: m.created_at,
        last_used_at: m.last_used_at,
        revoked_at: m.revoked_at,
        rate_limit_per_minute: m.rate_limit_per_minute.map(|n| n.max(0) as u32),
    }
}

fn limit_column(limit: Option<u32>) -> Result<Option<i32>> {
    limit
        .map(|n| {
            i32::try_from(n).map_err(|_| {
                Error::invalid_input(format!("rate_limit_per_minute {n} is too large"))
            })
        })
        .transpose()
}

/// The lookup prefix of a plaintext key (`zs_<8 hex>`), if it has the right shape.
fn prefix_of(plaintext: &str) -> Option<&str> {
    let rest = plaintext.strip_prefix("zs_")?;
    let (prefix, secret) = rest.split_once('_')?;
    (prefix.len() == 8 && !secret.is_empty()).then(|| &plaintext[..3 + 8])
}

impl<'a> ApiKeys<'a> {
    pub(crate) fn new(db: &'a Db, cache: &'a AuthCache) -> Self {
        ApiKeys { db, cache }
    }

    /// Creates a key. An unknown owner or system prompt is [`Error::NotFound`].
    pub async fn create(&self, new: NewApiKey) -> Result<CreatedApiKey> {
        let name = new.client_name.trim();
        if name.is_empty() || name.len() > 128 {
            return Err(Error::invalid_input(
                "client_name must be 1 to 128 characters",
            ));
        }
        by_id::<users::Entity>(self.db, &new.user_id)
            .await?
            .ok_or_else(|| Error::not_found(format!("user {}", new.user_id)))?;
        if let Some(prompt) = &new.system_prompt_id {
            by_id::<system_prompts::Entity>(self.db, prompt)
                .await?
                .ok_or_else(|| Error::not_found(format!("system prompt {prompt}")))?;
        }
        let prefix = format!("zs_{}", random_hex(4)?);
        let plaintext = format!("{prefix}_{}", random_hex(32)?);
        let model = api_keys::ActiveModel {
            id: Set(new_id()),
            user_id: Set(new.user_id),
            prefix: Set(prefix),
            key_hash: Set(sha256_hex(&plaintext)),
            client_name: Set(name.to_owned()),
            notes: Set(new.notes),
            active: Set(true),
            system_prompt_id: Set(new.system_prompt_id),
            adapter_name: Set(new.adapter_name),
            created_at: Set(self.db.now()),
            last_used_at: Set(None),
            revoked_at: Set(None),
            rate_limit_per_minute: Set(limit_column(new.rate_limit_per_minute)?),
        };
        #[cfg(feature = "mongodb")]
        if let Some(m) = self.db.mongo() {
            let model = sea_orm::TryIntoModel::try_into_model(model)
                .map_err(|e| Error::backend("mongodb", e))?;
            m.insert::<api_keys::Entity>(None, &model).await?;
            return Ok(CreatedApiKey {
                key: to_key(model),
                plaintext,
            });
        }
        let model = model
            .insert(self.db.conn()?)
            .await
            .map_err(|e| self.db.map_err(e))?;
        Ok(CreatedApiKey {
            key: to_key(model),
            plaintext,
        })
    }

    /// The key and its owner for a plaintext key; refuses malformed, unknown, revoked and
    /// inactive keys and deactivated owners with [`Error::Unauthenticated`].
    ///
    /// A verified key is trusted for `auth.cache_ttl_ms` without reading the database
    /// again (revocation through any [`super::Domain`] that shares its
    /// [`super::AuthChange`]s shows at once); `last_used_at` is kept to the minute.
    pub async fn validate(&self, plaintext: &str) -> Result<(ApiKey, User)> {
        let hash = sha256_hex(plaintext);
        let (key, user) = match self.cache.lookup(&hash) {
            Lookup::Hit(Verified::ApiKey(key, user)) => (key, user),
            lookup => {
                let generation = match lookup {
                    Lookup::Miss(generation) => generation,
                    // Another kind under this hash: read the database, cache nothing.
                    Lookup::Hit(_) => u64::MAX,
                };
                let (key, user) = self.read(plaintext, &hash).await?;
                self.cache.store(
                    hash.clone(),
                    generation,
                    Verified::ApiKey(key.clone(), user.clone()),
                );
                (key, user)
            }
        };
        let at = self.db.now();
        let stale = key
            .last_used_at
            .is_none_or(|used| (at - used).num_seconds() >= LAST_USED_RESOLUTION_SECS);
        if !stale {
            return Ok((key, user));
        }
        self.set(
            &key.id,
            false,
            vec![(api_keys::Column::LastUsedAt, Some(at).into())],
        )
        .await?;
        let mut key = key;
        key.last_used_at = Some(at);
        self.cache
            .update(&hash, Verified::ApiKey(key.clone(), user.clone()));
        Ok((key, user))
    }

    async fn read(&self, plaintext: &str, presented: &str) -> Result<(ApiKey, User)> {
        let invalid = || Error::unauthenticated("invalid API key");
        let prefix = prefix_of(plaintext).ok_or_else(invalid)?;
        let found = self.find_with_user(prefix).await?;
        // The same work whether or not the prefix exists: compare the presented hash with
        // the stored one, or with one no key can have.
        let stored = found
            .as_ref()
            .map_or(NO_KEY_HASH, |(key, _)| key.key_hash.as_str());
        let matches = constant_time_eq(stored, presented);
        let (key, user) = found.filter(|_| matches).ok_or_else(invalid)?;
        if key.revoked_at.is_some() || !key.active {
            return Err(Error::unauthenticated("API key was revoked"));
        }
        let user = user.ok_or_else(invalid)?;
        if !user.active {
            return Err(Error::unauthenticated("the API key's user is deactivated"));
        }
        Ok((to_key(key), to_user(user)?))
    }

    /// A key by id.
    pub async fn get(&self, id: &str) -> Result<ApiKey> {
        by_id::<api_keys::Entity>(self.db, id)
            .await?
            .map(to_key)
            .ok_or_else(|| Error::not_found(format!("API key {id}")))
    }

    /// Keys in creation order, all or one user's.
    pub async fn list(&self, user_id: Option<&str>) -> Result<Vec<ApiKey>> {
        #[cfg(feature = "mongodb")]
        if let Some(m) = self.db.mongo() {
            let filter = user_id.map_or_else(mongodb::bson::Document::new, |u| {
                mongodb::bson::doc! { "user_id": u }
            });
            return Ok(m
                .find::<api_keys::Entity>(filter, mongodb::bson::doc! { "_id": 1 }, 0)
                .await?
                .into_iter()
                .map(to_key)
                .collect());
        }
        let mut query = api_keys::Entity::find().order_by_asc(api_keys::Column::Id);
        if let Some(user_id) = user_id {
            query = query.filter(api_keys::Column::UserId.eq(user_id));
        }
        Ok(query
            .all(self.db.conn()?)
            .await
            .map_err(|e| self.db.map_err(e))?
            .into_iter()
            .map(to_key)
            .collect())
    }

    /// Sets (or, with `None`, clears) a key's requests-per-minute override; it applies
    /// at once on this instance and, through the credential cache's announcements, on the
    /// others.
    pub async fn set_rate_limit(&self, id: &str, limit: Option<u32>) -> Result<ApiKey> {
        let limit = limit_column(limit)?;
        let matched = self
            .set(
                id,
                false,
                vec![(api_keys::Column::RateLimitPerMinute, limit.into())],
            )
            .await?;
        if matched == 0 {
            return Err(Error::not_found(format!("API key {id}")));
        }
        self.cache.changed(AuthChange::ApiKey(id.to_owned()));
        self.get(id).await
    }

    /// Revokes a key: it stops working at once. Revoking twice is fine.
    pub async fn revoke(&self, id: &str) -> Result<ApiKey> {
        let at = self.db.now();
        self.set(
            id,
            true,
            vec![
                (api_keys::Column::Active, false.into()),
                (api_keys::Column::RevokedAt, Some(at).into()),
            ],
        )
        .await?;
        self.cache.changed(AuthChange::ApiKey(id.to_owned()));
        self.get(id).await
    }
}

impl ApiKeys<'_> {
    /// The key with `prefix` and its user.
    async fn find_with_user(
        &self,
        prefix: &str,
    ) -> Result<Option<(api_keys::Model, Option<users::Model>)>> {
        #[cfg(feature = "mongodb")]
        if let Some(m) = self.db.mongo() {
            let Some(key) = m
                .find_one::<api_keys::Entity>(None, mongodb::bson::doc! { "prefix": prefix })
                .await?
            else {
                return Ok(None);
            };
            let user = by_id::<users::Entity>(self.db, &key.user_id).await?;
            return Ok(Some((key, user)));
        }
        api_keys::Entity::find()
            .filter(api_keys::Column::Prefix.eq(prefix))
            .find_also_related(users::Entity)
            .by_key(self.db.conn()?)
            .await
            .map_err(|e| self.db.map_err(e))
    }

    /// Sets `columns` on key `id` (only while it is not revoked when `unrevoked`); returns
    /// how many keys matched.
    async fn set(
        &self,
        id: &str,
        unrevoked: bool,
        columns: Vec<(api_keys::Column, sea_orm::Value)>,
    ) -> Result<u64> {
        #[cfg(feature = "mongodb")]
        if let Some(m) = self.db.mongo() {
            let mut filter = crate::mongodb::id_is(id);
            if unrevoked {
                filter.insert("revoked_at", mongodb::bson::doc! { "$exists": false });
            }
            return m
                .update::<api_keys::Entity>(None, filter, crate::mongodb::set_columns(columns))
                .await;
        }
        let mut update = api_keys::Entity::update_many().filter(api_keys::Column::Id.eq(id));
        if unrevoked {
            update = update.filter(api_keys::Column::RevokedAt.is_null());
        }
        for (column, value) in columns {
            update = update.col_expr(column, Expr::value(value));
        }
        let result = update
            .exec(self.db.conn()?)
            .await
            .map_err(|e| self.db.map_err(e))?;
        Ok(result.rows_affected)
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_of;

    #[test]
    fn prefix_shape() {
        assert_eq!(prefix_of("zs_0123abcd_deadbeef"), Some("zs_0123abcd"));
        assert_eq!(prefix_of("zs_0123abc_deadbeef"), None);
        assert_eq!(prefix_of("zs_0123abcd_"), None);
        assert_eq!(prefix_of("sk-0123abcd_x"), None);
        assert_eq!(prefix_of("zs_0123abcd"), None);
    }
}
