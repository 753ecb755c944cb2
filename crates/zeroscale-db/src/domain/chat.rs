//! Chat history: append messages to a session (with a per-session cap), list them in
//! order with cursor pagination, delete a session's history. Pages read are kept in
//! memory for `chat.cache_ttl_ms` (see `chat_cache`).

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, Set, Statement,
};
use serde_json::Value;
use zeroscale_core::config::ChatConfig;
use zeroscale_core::domain::{ChatMessage, ChatRole, new_id};
use zeroscale_core::{Error, Result};

use super::auth_cache::{AuthCache, AuthChange};
use super::chat_cache::{ChatCache, Lookup};
use super::entity::chat_messages;
use super::page_limit;
use crate::{Db, Dialect};

/// A message to append.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// The chat session, chosen by the client (1 to 128 characters).
    pub session_id: String,
    /// Who sent it.
    pub role: ChatRole,
    /// The text.
    pub content: String,
    /// The user it belongs to.
    pub user_id: Option<String>,
    /// The API key it came through.
    pub api_key_id: Option<String>,
    /// A JSON object (or null, stored as `{}`).
    pub metadata: Value,
}

/// One page of a session's messages.
#[derive(Debug, Clone)]
pub struct ChatPage {
    /// Oldest first.
    pub messages: Vec<ChatMessage>,
    /// Pass as `after` for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// Chat history service; see [`super::Domain::chat`].
#[derive(Debug)]
pub struct Chat<'a> {
    db: &'a Db,
    config: &'a ChatConfig,
    cache: &'a ChatCache,
    announce: &'a AuthCache,
}

fn to_message(m: chat_messages::Model) -> Result<ChatMessage> {
    Ok(ChatMessage {
        role: m.role.parse()?,
        id: m.id,
        session_id: m.session_id,
        content: m.content,
        user_id: m.user_id,
        api_key_id: m.api_key_id,
        metadata: m.metadata,
        created_at: m.created_at,
    })
}

impl<'a> Chat<'a> {
    pub(crate) fn new(
        db: &'a Db,
        config: &'a ChatConfig,
        cache: &'a ChatCache,
        announce: &'a AuthCache,
    ) -> Self {
        Chat {
            db,
            config,
            cache,
            announce,
        }
    }

    /// Drops the session's cached pages here and tells other processes (after a commit).
    fn changed(&self, session_id: &str) {
        self.cache.changed(Some(session_id));
        self.announce
            .changed(AuthChange::Chat(session_id.to_owned()));
    }

    /// Appends a message. Past `chat.max_messages_per_session` this is [`Error::Conflict`]:
    /// nothing is dropped silently.
    pub async fn append(&self, new: NewMessage) -> Result<ChatMessage> {
        if new.session_id.is_empty() || new.session_id.len() > 128 {
            return Err(Error::invalid_input(
                "session_id must be 1 to 128 characters",
            ));
        }
        let metadata = match new.metadata {
            Value::Null => Value::Object(Default::default()),
            Value::Object(map) => Value::Object(map),
            _ => return Err(Error::invalid_input("metadata must be a JSON object")),
        };
        let full = |session_id: &str| {
            Error::conflict(format!(
                "chat session `{session_id}` has reached its cap of {} messages; delete its \
                 history or raise `chat.max_messages_per_session`",
                self.config.max_messages_per_session
            ))
        };
        #[cfg(feature = "mongodb")]
        if let Some(m) = self.db.mongo() {
            use mongodb::bson::doc;
            let model = chat_messages::Model {
                id: new_id(),
                session_id: new.session_id,
                role: new.role.as_str().to_owned(),
                content: new.content,
                user_id: new.user_id,
                api_key_id: new.api_key_id,
                metadata,
                created_at: self.db.now(),
            };
            let session = doc! { "session_id": &model.session_id };
            let cap = self.config.max_messages_per_session;
            if m.count::<chat_messages::Entity>(session.clone()).await? >= cap {
                return Err(full(&model.session_id));
            }
            // Insert, then keep the message only if fewer than `cap` messages of the
            // session sort before it: of racing appends past the cap, exactly the later
            // ones go, without a transaction.
            m.insert::<chat_messages::Entity>(None, &model).await?;
            let mut before = session;
            before.insert("_id", doc! { "$lt": &model.id });
            if m.count::<chat_messages::Entity>(before).await? >= cap {
                m.delete::<chat_messages::Entity>(None, doc! { "_id": &model.id })
                    .await?;
                return Err(full(&model.session_id));
            }
            self.changed(&model.session_id);
            return to_message(model);
        }
        let txn = self.db.begin_write().await?;
        if self.db.sql_dialect() == Dialect::Postgres {
            // Serialise appends to one session so the cap holds under concurrency.
            txn.execute_raw(Statement::from_sql_and_values(
                sea_orm::DatabaseBackend::Postgres,
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                [new.session_id.clone().into()],
            ))
            .await
            .map_err(|e| self.db.map_err(e))?;
        }
        let count = chat_messages::Entity::find()
            .filter(chat_messages::Column::SessionId.eq(&new.session_id))
            .count(&txn)
            .await
            .map_err(|e| self.db.map_err(e))?;
        if count >= self.config.max_messages_per_session {
            return Err(full(&new.session_id));
        }
        let model = chat_messages::ActiveModel {
            id: Set(new_id()),
            session_id: Set(new.session_id),
            role: Set(new.role.as_str().to_owned()),
            content: Set(new.content),
            user_id: Set(new.user_id),
            api_key_id: Set(new.api_key_id),
            metadata: Set(metadata),
            created_at: Set(self.db.now()),
        }
        .insert(&txn)
        .await
        .map_err(|e| self.db.map_err(e))?;
        txn.commit().await.map_err(|e| self.db.map_err(e))?;
        self.changed(&model.session_id);
        to_message(model)
    }

    /// A session's messages oldest first, after the cursor `after`, at most `limit`
    /// (default 100, at most 1000).
    pub async fn list(
        &self,
        session_id: &str,
        after: Option<&str>,
        limit: Option<u64>,
    ) -> Result<ChatPage> {
        Ok(ChatPage::clone(
            &*self.list_shared(session_id, after, limit).await?,
        ))
    }

    /// [`Chat::list`] without copying a cached page: while it stays cached, every caller
    /// gets the same `Arc` (so a caller may keep what it derives from a page, such as its
    /// JSON, keyed by the `Arc`'s identity).
    pub async fn list_shared(
        &self,
        session_id: &str,
        after: Option<&str>,
        limit: Option<u64>,
    ) -> Result<std::sync::Arc<ChatPage>> {
        let limit = page_limit(limit, 100, 1000);
        let generation = match self.cache.lookup(session_id, after, limit) {
            Lookup::Hit(page) => return Ok(page),
            Lookup::Miss(generation) => generation,
        };
        let page = self.read_page(session_id, after, limit).await?;
        Ok(self.cache.store(session_id, after, limit, generation, page))
    }

    async fn read_page(
        &self,
        session_id: &str,
        after: Option<&str>,
        limit: u64,
    ) -> Result<ChatPage> {
        let mut rows = self.read_rows(session_id, after, limit + 1).await?;
        let more = rows.len() as u64 > limit;
        rows.truncate(limit as usize);
        let messages = rows
            .into_iter()
            .map(to_message)
            .collect::<Result<Vec<_>>>()?;
        let next_cursor = if more {
            messages.last().map(|m| m.id.clone())
        } else {
            None
        };
        Ok(ChatPage {
            messages,
            next_cursor,
        })
    }

    /// A session's messages in id order after `after`, at most `limit`.
    async fn read_rows(
        &self,
        session_id: &str,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<chat_messages::Model>> {
        #[cfg(feature = "mongodb")]
        if let Some(m) = self.db.mongo() {
            let mut filter = mongodb::bson::doc! { "session_id": session_id };
            if let Some(after) = after {
                filter.insert("_id", mongodb::bson::doc! { "$gt": after });
            }
            return m
                .find::<chat_messages::Entity>(filter, mongodb::bson::doc! { "_id": 1 }, limit)
                .await;
        }
        let mut query = chat_messages::Entity::find()
            .filter(chat_messages::Column::SessionId.eq(session_id))
            .order_by_asc(chat_messages::Column::Id);
        if let Some(after) = after {
            query = query.filter(chat_messages::Column::Id.gt(after));
        }
        query
            .limit(limit)
            .all(self.db.conn()?)
            .await
            .map_err(|e| self.db.map_err(e))
    }

    /// The user who owns a session (the user of its first message), if any.
    pub async fn session_owner(&self, session_id: &str) -> Result<Option<String>> {
        Ok(self
            .read_rows(session_id, None, 1)
            .await?
            .into_iter()
            .next()
            .and_then(|m| m.user_id))
    }

    /// Deletes every message of a session; returns how many.
    pub async fn delete_session(&self, session_id: &str) -> Result<u64> {
        #[cfg(feature = "mongodb")]
        if let Some(m) = self.db.mongo() {
            let deleted = m
                .delete::<chat_messages::Entity>(
                    None,
                    mongodb::bson::doc! { "session_id": session_id },
                )
                .await?;
            self.changed(session_id);
            return Ok(deleted);
        }
        let result = chat_messages::Entity::delete_many()
            .filter(chat_messages::Column::SessionId.eq(session_id))
            .exec(self.db.conn()?)
            .await
            .map_err(|e| self.db.map_err(e))?;
        self.changed(session_id);
        Ok(result.rows_affected)
    }
}
