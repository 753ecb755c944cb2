//! Recently read chat pages, kept for `chat.cache_ttl_ms` so a session read again and again
//! (a client polling its history) costs a map lookup instead of a page of rows.
//!
//! Freshness follows the credential cache's rules: an append or a delete through
//! [`super::Domain`] drops the session's pages once it has committed, so this process
//! shows it at once; it is announced as [`super::AuthChange::Chat`] for other processes to
//! drop theirs; where no announcement reaches, a page is at most the TTL old.
//!
//! A read that races a write cannot store what it read before the write: each change bumps
//! the generation of the session's shard, and a page is stored only if the generation it
//! was read under is still current. Shards keep appends to other sessions from turning
//! away every store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::chat::ChatPage;

/// Generation counters; a change to one session turns away stores to 1/SHARDS of the rest.
const SHARDS: usize = 64;

/// What a page is keyed by besides its session: the cursor and the page size.
type PageKey = (Option<String>, u64);

struct Page {
    page: Arc<ChatPage>,
    bytes: usize,
    stored: Instant,
}

#[derive(Default)]
struct State {
    sessions: HashMap<String, HashMap<PageKey, Page>>,
    generations: Vec<u64>,
    bytes: usize,
}

impl State {
    fn drop_session(&mut self, session_id: &str) {
        if let Some(pages) = self.sessions.remove(session_id) {
            self.bytes -= pages.values().map(|p| p.bytes).sum::<usize>();
        }
    }

    fn drop_expired(&mut self, ttl: Duration) {
        let mut freed = 0;
        self.sessions.retain(|_, pages| {
            pages.retain(|_, p| {
                let keep = p.stored.elapsed() < ttl;
                if !keep {
                    freed += p.bytes;
                }
                keep
            });
            !pages.is_empty()
        });
        self.bytes -= freed;
    }
}

/// The cache; one per [`super::Domain`] and its clones.
pub(crate) struct ChatCache {
    ttl: Duration,
    max_bytes: usize,
    state: Mutex<State>,
}

impl std::fmt::Debug for ChatCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatCache")
            .field("ttl", &self.ttl)
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

/// What a lookup found: a fresh page, or the generation to store a database read under.
pub(crate) enum Lookup {
    Hit(Arc<ChatPage>),
    Miss(u64),
}

fn shard(session_id: &str) -> usize {
    // FNV-1a: stable, cheap, and good enough to spread session ids.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in session_id.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % SHARDS as u64) as usize
}

/// Roughly what a page holds in memory: its text plus a fixed cost per message.
fn page_bytes(page: &ChatPage) -> usize {
    page.messages
        .iter()
        .map(|m| {
            200 + m.id.len()
                + m.session_id.len()
                + m.content.len()
                + m.user_id.as_ref().map_or(0, String::len)
                + m.api_key_id.as_ref().map_or(0, String::len)
                + m.metadata.to_string().len()
        })
        .sum::<usize>()
        + 64
}

impl ChatCache {
    /// `ttl` zero caches nothing; `max_bytes` bounds the pages kept (past it, expired pages
    /// go first, then everything).
    pub(crate) fn new(ttl: Duration, max_bytes: usize) -> Self {
        ChatCache {
            ttl,
            max_bytes,
            state: Mutex::new(State {
                generations: vec![0; SHARDS],
                ..State::default()
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Pages are plain data: a panic elsewhere cannot leave them half-written.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The page for `session_id` after `after`, `limit` long, if it is younger than the TTL.
    pub(crate) fn lookup(&self, session_id: &str, after: Option<&str>, limit: u64) -> Lookup {
        let state = self.state();
        if !self.ttl.is_zero()
            && let Some(pages) = state.sessions.get(session_id)
            && let Some(page) = pages.get(&(after.map(str::to_owned), limit))
            && page.stored.elapsed() < self.ttl
        {
            return Lookup::Hit(Arc::clone(&page.page));
        }
        Lookup::Miss(state.generations[shard(session_id)])
    }

    /// Stores what was read under `generation`, unless the session's shard changed since
    /// (or the page alone is over the budget). Returns the page either way.
    pub(crate) fn store(
        &self,
        session_id: &str,
        after: Option<&str>,
        limit: u64,
        generation: u64,
        page: ChatPage,
    ) -> Arc<ChatPage> {
        let page = Arc::new(page);
        if self.ttl.is_zero() {
            return page;
        }
        let bytes = page_bytes(&page);
        if bytes > self.max_bytes {
            return page;
        }
        let mut state = self.state();
        if state.generations[shard(session_id)] != generation {
            return page;
        }
        if state.bytes + bytes > self.max_bytes {
            state.drop_expired(self.ttl);
            if state.bytes + bytes > self.max_bytes {
                state.sessions.clear();
                state.bytes = 0;
            }
        }
        let old = state
            .sessions
            .entry(session_id.to_owned())
            .or_default()
            .insert(
                (after.map(str::to_owned), limit),
                Page {
                    page: Arc::clone(&page),
                    bytes,
                    stored: Instant::now(),
                },
            );
        state.bytes += bytes;
        if let Some(old) = old {
            state.bytes -= old.bytes;
        }
        page
    }

    /// Drops a session's pages (`None`: every session's).
    pub(crate) fn changed(&self, session_id: Option<&str>) {
        let mut state = self.state();
        match session_id {
            Some(id) => {
                state.generations[shard(id)] += 1;
                state.drop_session(id);
            }
            None => {
                for generation in &mut state.generations {
                    *generation += 1;
                }
                state.sessions.clear();
                state.bytes = 0;
            }
        }
    }

    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.state().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use zeroscale_core::domain::{ChatMessage, ChatRole};

    fn page(session_id: &str, n: usize) -> ChatPage {
        ChatPage {
            messages: (0..n)
                .map(|i| ChatMessage {
                    id: format!("m{i}"),
                    session_id: session_id.to_owned(),
                    role: ChatRole::User,
                    content: format!("message {i}"),
                    user_id: None,
                    api_key_id: None,
                    metadata: serde_json::json!({}),
                    created_at: Utc::now(),
                })
                .collect(),
            next_cursor: None,
        }
    }

    fn generation(cache: &ChatCache, session_id: &str) -> u64 {
        match cache.lookup(session_id, None, 100) {
            Lookup::Miss(g) => g,
            Lookup::Hit(_) => panic!("{session_id} is cached"),
        }
    }

    fn hit(cache: &ChatCache, session_id: &str) -> Option<Arc<ChatPage>> {
        match cache.lookup(session_id, None, 100) {
            Lookup::Hit(page) => Some(page),
            Lookup::Miss(_) => None,
        }
    }

    #[test]
    fn a_hit_is_the_stored_page_and_other_keys_miss() {
        let cache = ChatCache::new(Duration::from_secs(60), 1 << 20);
        let g = generation(&cache, "a");
        let stored = cache.store("a", None, 100, g, page("a", 3));
        let found = hit(&cache, "a").expect("cached");
        assert!(Arc::ptr_eq(&stored, &found));
        assert!(matches!(
            cache.lookup("a", Some("m2"), 100),
            Lookup::Miss(_)
        ));
        assert!(matches!(cache.lookup("a", None, 10), Lookup::Miss(_)));
        assert!(hit(&cache, "b").is_none());
    }

    #[test]
    fn a_change_drops_its_session_only() {
        let cache = ChatCache::new(Duration::from_secs(60), 1 << 20);
        for s in ["a", "b"] {
            let g = generation(&cache, s);
            cache.store(s, None, 100, g, page(s, 2));
        }
        cache.changed(Some("a"));
        assert!(hit(&cache, "a").is_none());
        assert!(hit(&cache, "b").is_some());
        cache.changed(None);
        assert!(hit(&cache, "b").is_none());
        assert_eq!(cache.bytes(), 0);
    }

    #[test]
    fn a_read_that_raced_a_change_is_not_stored() {
        let cache = ChatCache::new(Duration::from_secs(60), 1 << 20);
        let before = generation(&cache, "a");
        cache.changed(Some("a"));
        cache.store("a", None, 100, before, page("a", 1));
        assert!(hit(&cache, "a").is_none(), "a stale read was cached");
        let after = generation(&cache, "a");
        cache.store("a", None, 100, after, page("a", 2));
        assert_eq!(hit(&cache, "a").unwrap().messages.len(), 2);
    }

    #[test]
    fn pages_expire_and_a_zero_ttl_caches_nothing() {
        let cache = ChatCache::new(Duration::from_millis(30), 1 << 20);
        let g = generation(&cache, "a");
        cache.store("a", None, 100, g, page("a", 1));
        assert!(hit(&cache, "a").is_some());
        std::thread::sleep(Duration::from_millis(40));
        assert!(hit(&cache, "a").is_none());

        let off = ChatCache::new(Duration::ZERO, 1 << 20);
        let g = generation(&off, "a");
        off.store("a", None, 100, g, page("a", 1));
        assert!(hit(&off, "a").is_none());
    }

    #[test]
    fn memory_stays_within_the_budget() {
        let one = page_bytes(&page("s0", 10));
        let cache = ChatCache::new(Duration::from_secs(60), one * 5);
        for i in 0..50 {
            let s = format!("s{i}");
            let g = generation(&cache, &s);
            cache.store(&s, None, 100, g, page(&s, 10));
            assert!(cache.bytes() <= one * 5, "{} > {}", cache.bytes(), one * 5);
        }
        assert!(hit(&cache, "s49").is_some(), "the newest page is kept");
        // A page larger than the whole budget is returned, not kept.
        let g = generation(&cache, "big");
        let big = cache.store("big", None, 100, g, page("big", 100));
        assert_eq!(big.messages.len(), 100);
        assert!(hit(&cache, "big").is_none());
    }
}
