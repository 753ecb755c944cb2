//! The verified-credential cache: a session token or API key checked against the database
//! is trusted for `auth.cache_ttl_ms` without reading it again, so an authenticated read
//! costs what an anonymous one does.
//!
//! Freshness: every write through [`super::Domain`] that changes what a cached entry holds
//! (logout, session or key revocation, a user's activation, role or credits) drops the
//! entries it touches once it has committed, and announces an [`AuthChange`] so other
//! processes can drop theirs ([`super::Domain::auth_changes`],
//! [`super::Domain::apply_auth_change`]). A change made where no announcement reaches (a
//! process without a shared channel, a lost message) shows within the TTL.
//!
//! A read that races a write cannot cache what it read before the write: every change
//! bumps a generation, and an entry is stored only if the generation it was read under is
//! still current.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::broadcast;
use zeroscale_core::domain::{ApiKey, Session, User};

/// Entries kept at most; past it, expired entries go first, then everything.
const CAPACITY: usize = 10_000;

/// Something that changed what a process's caches may hold (credentials, chat pages);
/// every process that caches them must drop the entries it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthChange {
    /// A user's activation, role, credits or login time (by user id).
    User(String),
    /// A session was revoked (by session id).
    Session(String),
    /// An API key was revoked (by key id).
    ApiKey(String),
    /// A chat session's messages (by the session id as stored).
    Chat(String),
    /// Anything may have changed (a missed announcement, a restore).
    All,
}

impl AuthChange {
    /// The change as one line of text, for a channel between processes.
    pub fn encode(&self) -> String {
        match self {
            AuthChange::User(id) => format!("user:{id}"),
            AuthChange::Session(id) => format!("session:{id}"),
            AuthChange::ApiKey(id) => format!("api_key:{id}"),
            AuthChange::Chat(id) => format!("chat:{id}"),
            AuthChange::All => "all".to_owned(),
        }
    }

    /// Reads [`AuthChange::encode`]'s text; `None` for anything else.
    pub fn decode(text: &str) -> Option<AuthChange> {
        if text == "all" {
            return Some(AuthChange::All);
        }
        let (kind, id) = text.split_once(':')?;
        if id.is_empty() {
            return None;
        }
        let id = id.to_owned();
        match kind {
            "user" => Some(AuthChange::User(id)),
            "session" => Some(AuthChange::Session(id)),
            "api_key" => Some(AuthChange::ApiKey(id)),
            "chat" => Some(AuthChange::Chat(id)),
            _ => None,
        }
    }
}

/// A verified credential and its user, as read from the database.
#[derive(Debug, Clone)]
pub(crate) enum Verified {
    Session(Session, User),
    ApiKey(ApiKey, User),
}

impl Verified {
    fn user(&self) -> &User {
        match self {
            Verified::Session(_, user) | Verified::ApiKey(_, user) => user,
        }
    }

    fn touched_by(&self, change: &AuthChange) -> bool {
        match (change, self) {
            (AuthChange::All, _) => true,
            (AuthChange::User(id), v) => v.user().id == *id,
            (AuthChange::Session(id), Verified::Session(s, _)) => s.id == *id,
            (AuthChange::ApiKey(id), Verified::ApiKey(k, _)) => k.id == *id,
            _ => false,
        }
    }
}

#[derive(Debug)]
struct Entry {
    verified: Verified,
    stored: Instant,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<String, Entry>,
    generation: u64,
}

/// The cache; one per [`super::Domain`] and its clones.
#[derive(Debug)]
pub(crate) struct AuthCache {
    ttl: Duration,
    state: Mutex<State>,
    announce: broadcast::Sender<AuthChange>,
}

/// What a lookup found: a fresh entry, or the generation to store a database read under.
#[expect(
    clippy::large_enum_variant,
    reason = "returned once per request and destructured at once; boxing would allocate"
)]
pub(crate) enum Lookup {
    Hit(Verified),
    Miss(u64),
}

impl AuthCache {
    pub(crate) fn new(ttl: Duration) -> Self {
        AuthCache {
            ttl,
            state: Mutex::new(State::default()),
            announce: broadcast::channel(1024).0,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Entries are plain data: a panic elsewhere cannot leave them half-written.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The entry for `token_hash` if it is younger than the TTL.
    pub(crate) fn lookup(&self, token_hash: &str) -> Lookup {
        let state = self.state();
        if !self.ttl.is_zero()
            && let Some(entry) = state.entries.get(token_hash)
            && entry.stored.elapsed() < self.ttl
        {
            return Lookup::Hit(entry.verified.clone());
        }
        Lookup::Miss(state.generation)
    }

    /// Stores what was read under `generation`, unless something changed since.
    pub(crate) fn store(&self, token_hash: String, generation: u64, verified: Verified) {
        if self.ttl.is_zero() {
            return;
        }
        let mut state = self.state();
        if state.generation != generation {
            return;
        }
        if state.entries.len() >= CAPACITY && !state.entries.contains_key(&token_hash) {
            let ttl = self.ttl;
            state.entries.retain(|_, e| e.stored.elapsed() < ttl);
            if state.entries.len() >= CAPACITY {
                state.entries.clear();
            }
        }
        state.entries.insert(
            token_hash,
            Entry {
                verified,
                stored: Instant::now(),
            },
        );
    }

    /// Replaces the entry for `token_hash` (same age), if it is still there.
    pub(crate) fn update(&self, token_hash: &str, verified: Verified) {
        if let Some(entry) = self.state().entries.get_mut(token_hash) {
            entry.verified = verified;
        }
    }

    /// Drops the entries `change` touches (a change made elsewhere).
    pub(crate) fn apply(&self, change: &AuthChange) {
        if let AuthChange::Chat(_) = change {
            // Not a credential: the chat cache's business.
            return;
        }
        let mut state = self.state();
        state.generation += 1;
        if *change == AuthChange::All {
            state.entries.clear();
        } else {
            state.entries.retain(|_, e| !e.verified.touched_by(change));
        }
    }

    /// Drops the entries `change` touches and announces it (a change made here, committed).
    pub(crate) fn changed(&self, change: AuthChange) {
        self.apply(&change);
        // No receiver is fine: nothing else needs to hear.
        let _ = self.announce.send(change);
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<AuthChange> {
        self.announce.subscribe()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.state().entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use zeroscale_core::domain::Role;

    fn user(id: &str) -> User {
        User {
            id: id.to_owned(),
            username: format!("name-{id}"),
            role: Role::User,
            active: true,
            credits: 5,
            created_at: Utc::now(),
            updated_at: Utc::now(),
            last_login_at: None,
        }
    }

    fn session(id: &str, user_id: &str) -> Verified {
        let at = Utc::now();
        Verified::Session(
            Session {
                id: id.to_owned(),
                user_id: user_id.to_owned(),
                created_at: at,
                expires_at: at + chrono::Duration::hours(1),
                revoked_at: None,
            },
            user(user_id),
        )
    }

    fn hit(cache: &AuthCache, hash: &str) -> bool {
        matches!(cache.lookup(hash), Lookup::Hit(_))
    }

    fn generation(cache: &AuthCache, hash: &str) -> u64 {
        match cache.lookup(hash) {
            Lookup::Miss(g) => g,
            Lookup::Hit(_) => panic!("{hash} is cached"),
        }
    }

    #[test]
    fn changes_round_trip_as_text() {
        for change in [
            AuthChange::User("u1".into()),
            AuthChange::Session("s1".into()),
            AuthChange::ApiKey("k1".into()),
            AuthChange::Chat("u1:main".into()),
            AuthChange::All,
        ] {
            assert_eq!(AuthChange::decode(&change.encode()), Some(change));
        }
        for bad in ["", "user:", "nope:1", "all:", "user"] {
            assert_eq!(AuthChange::decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_change_drops_only_what_it_touches() {
        let cache = AuthCache::new(Duration::from_secs(60));
        for (hash, sid, uid) in [("h1", "s1", "u1"), ("h2", "s2", "u1"), ("h3", "s3", "u2")] {
            let g = generation(&cache, hash);
            cache.store(hash.into(), g, session(sid, uid));
        }
        assert_eq!(cache.len(), 3);
        cache.changed(AuthChange::Session("s3".into()));
        assert!(hit(&cache, "h1") && hit(&cache, "h2") && !hit(&cache, "h3"));
        cache.changed(AuthChange::User("u1".into()));
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn a_read_that_raced_a_change_is_not_stored() {
        let cache = AuthCache::new(Duration::from_secs(60));
        let before = generation(&cache, "h1");
        cache.changed(AuthChange::User("u1".into()));
        cache.store("h1".into(), before, session("s1", "u1"));
        assert!(!hit(&cache, "h1"), "stale read was cached");
        let after = generation(&cache, "h1");
        cache.store("h1".into(), after, session("s1", "u1"));
        assert!(hit(&cache, "h1"));
    }

    #[test]
    fn entries_expire_and_a_zero_ttl_caches_nothing() {
        let cache = AuthCache::new(Duration::from_millis(30));
        let g = generation(&cache, "h1");
        cache.store("h1".into(), g, session("s1", "u1"));
        assert!(hit(&cache, "h1"));
        std::thread::sleep(Duration::from_millis(40));
        assert!(!hit(&cache, "h1"));

        let off = AuthCache::new(Duration::ZERO);
        let g = generation(&off, "h1");
        off.store("h1".into(), g, session("s1", "u1"));
        assert!(!hit(&off, "h1"));
    }

    #[test]
    fn local_changes_are_announced_and_remote_ones_are_not() {
        let cache = AuthCache::new(Duration::from_secs(60));
        let mut heard = cache.subscribe();
        cache.apply(&AuthChange::ApiKey("k1".into()));
        cache.changed(AuthChange::User("u1".into()));
        assert_eq!(heard.try_recv().unwrap(), AuthChange::User("u1".into()));
        assert!(heard.try_recv().is_err());
    }

    #[test]
    fn capacity_is_bounded() {
        let cache = AuthCache::new(Duration::from_secs(60));
        for i in 0..CAPACITY + 10 {
            let hash = format!("h{i}");
            let g = generation(&cache, &hash);
            cache.store(hash, g, session(&format!("s{i}"), "u1"));
        }
        assert!(cache.len() <= CAPACITY);
    }
}
