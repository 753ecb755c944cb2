//! The domain services, the same on every engine: users, sessions, API keys, system
//! prompts, chat history, credits and generations, documents with vector search, and the
//! embedding cache, and who submitted which background job.
//!
//! Reach them through [`Domain`]: `domain.users().register(…)`. Every write that spans
//! more than one statement runs in a write transaction (`Db::begin_write`), which on
//! SQLite takes the write lock up front so concurrent writers wait instead of failing.

mod api_keys;
mod auth_cache;
mod by_key;
mod cache;
mod chat;
mod chat_cache;
mod credits;
mod documents;
pub(crate) mod entity;
mod jobs;
mod passwords;
mod prompts;
mod sessions;
mod users;
pub(crate) mod vector_index;

use sha2::{Digest, Sha256};
use zeroscale_core::config::{AuthConfig, ChatConfig};
use zeroscale_core::{Error, Result};

pub use api_keys::{ApiKeys, CreatedApiKey, NewApiKey};
pub use auth_cache::AuthChange;
pub use cache::DbEmbeddingCache;
pub use chat::{Chat, ChatPage, NewMessage};
pub use credits::{Credits, NewGeneration};
pub use documents::{Documents, MAX_TOP_K, NewDocument, decode_vector, encode_vector};
pub use jobs::{OwnedJob, UserJobs};
pub use prompts::Prompts;
pub use sessions::{NewSession, SESSION_TOKEN_PREFIX, Sessions};
pub use users::{NewUser, Users};

use crate::Db;

/// The domain services over one database.
#[derive(Debug, Clone)]
pub struct Domain {
    db: Db,
    // Behind an Arc: a domain is cloned per request (axum state).
    auth: std::sync::Arc<AuthConfig>,
    chat: ChatConfig,
    passwords: std::sync::Arc<passwords::Passwords>,
    auth_cache: std::sync::Arc<auth_cache::AuthCache>,
    chat_cache: std::sync::Arc<chat_cache::ChatCache>,
    vectors: std::sync::Arc<vector_index::VectorIndex>,
}

impl Domain {
    /// Services over `db` with the given settings. Inside a Tokio runtime this starts
    /// computing the dummy password hash that logins for unknown users are checked
    /// against.
    pub fn new(db: Db, auth: AuthConfig, chat: ChatConfig) -> Self {
        let passwords = passwords::Passwords::new(&auth);
        let auth_cache = std::sync::Arc::new(auth_cache::AuthCache::new(
            std::time::Duration::from_millis(auth.cache_ttl_ms),
        ));
        let chat_cache = std::sync::Arc::new(chat_cache::ChatCache::new(
            std::time::Duration::from_millis(chat.cache_ttl_ms),
            usize::try_from(chat.cache_max_bytes).unwrap_or(usize::MAX),
        ));
        Domain {
            db,
            auth: std::sync::Arc::new(auth),
            chat,
            chat_cache,
            passwords,
            auth_cache,
            vectors: std::sync::Arc::default(),
        }
    }

    /// Changes made through this domain (and its clones) that other processes caching
    /// credentials or chat pages must apply: forward them to every other instance, which calls
    /// [`Domain::apply_auth_change`]. A receiver that lags should forward
    /// [`AuthChange::All`].
    pub fn auth_changes(&self) -> tokio::sync::broadcast::Receiver<AuthChange> {
        self.auth_cache.subscribe()
    }

    /// Drops the cached sessions, API keys and chat pages that a change made elsewhere
    /// touched (see [`Domain::auth_changes`]); it is not announced again.
    pub fn apply_auth_change(&self, change: &AuthChange) {
        match change {
            AuthChange::Chat(session_id) => self.chat_cache.changed(Some(session_id)),
            AuthChange::All => {
                self.auth_cache.apply(change);
                self.chat_cache.changed(None);
            }
            _ => self.auth_cache.apply(change),
        }
    }

    /// How many argon2 computations (password hashes and verifications) this domain and
    /// its clones have run for callers; the dummy hash made once at start-up is not
    /// counted. A failed login costs exactly one, whether or not the user exists, so the
    /// count is how tests check that login time tells nothing about accounts.
    pub fn password_hash_runs(&self) -> u64 {
        self.passwords.runs()
    }

    /// Who submitted which background job.
    pub fn jobs(&self) -> UserJobs<'_> {
        UserJobs::new(&self.db)
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Users: register, authenticate, roles, activation, credits.
    pub fn users(&self) -> Users<'_> {
        Users::new(&self.db, &self.auth, &self.passwords, &self.auth_cache)
    }

    /// Login sessions.
    pub fn sessions(&self) -> Sessions<'_> {
        Sessions::new(&self.db, &self.auth, &self.auth_cache)
    }

    /// API keys.
    pub fn api_keys(&self) -> ApiKeys<'_> {
        ApiKeys::new(&self.db, &self.auth_cache)
    }

    /// System prompts.
    pub fn prompts(&self) -> Prompts<'_> {
        Prompts::new(&self.db)
    }

    /// Chat history.
    pub fn chat(&self) -> Chat<'_> {
        Chat::new(&self.db, &self.chat, &self.chat_cache, &self.auth_cache)
    }

    /// Credit reservations and generations.
    pub fn credits(&self) -> Credits<'_> {
        Credits::new(&self.db, &self.auth_cache)
    }

    /// Documents and vector search.
    pub fn documents(&self) -> Documents<'_> {
        Documents::new(&self.db, &self.vectors)
    }

    /// The embedding cache, as core's [`zeroscale_core::EmbeddingCache`].
    pub fn embedding_cache(&self) -> DbEmbeddingCache {
        DbEmbeddingCache::new(self.db.clone())
    }
}

/// Lower-case hex SHA-256 of `text`.
pub(crate) fn sha256_hex(text: &str) -> String {
    zeroscale_core::hex(&Sha256::digest(text.as_bytes()))
}

/// `n` random bytes from the operating system, as lower-case hex.
pub(crate) fn random_hex(n: usize) -> Result<String> {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::unavailable(format!("the OS random generator failed: {e}")))?;
    Ok(zeroscale_core::hex(&bytes))
}

/// Compares two strings in time that depends only on their lengths.
pub(crate) fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Clamps a page size: `None` → `default`, and never more than `max`.
pub(crate) fn page_limit(limit: Option<u64>, default: u64, max: u64) -> u64 {
    limit.unwrap_or(default).clamp(1, max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "abcd"));
        assert_eq!(random_hex(16).unwrap().len(), 32);
        assert_ne!(random_hex(16).unwrap(), random_hex(16).unwrap());
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(page_limit(None, 50, 500), 50);
        assert_eq!(page_limit(Some(0), 50, 500), 1);
        assert_eq!(page_limit(Some(9999), 50, 500), 500);
    }
}
