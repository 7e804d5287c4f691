//! L1: an in-process LRU in front of Redis, sharded by key hash so I/O threads rarely
//! contend, bounded by entry count and by bytes, every entry carrying its own expiry.

use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::Duration;

use lru::LruCache;
use tokio::time::Instant;

use crate::cache::CachedAnswer;
use crate::cache::key::CacheKey;

/// Bytes charged per entry on top of its value: key, expiry, LRU links.
const ENTRY_OVERHEAD: usize = 64;

/// Size and lifetime bounds of the L1.
#[derive(Debug, Clone, Copy)]
pub struct L1Settings {
    /// Entries kept, across all shards.
    pub max_entries: usize,
    /// Bytes kept (values plus a fixed per-entry overhead), across all shards.
    pub max_bytes: usize,
    /// How long an entry answers.
    pub ttl: Duration,
    /// Independent locks; more shards, less contention.
    pub shards: usize,
}

struct Entry {
    value: CachedAnswer,
    expires_at: Instant,
}

impl Entry {
    fn size(&self) -> usize {
        self.value.size() + ENTRY_OVERHEAD
    }
}

struct Shard {
    lru: LruCache<u128, Entry>,
    bytes: usize,
    max_bytes: usize,
}

impl Shard {
    fn get(&mut self, hash: u128, now: Instant) -> Option<CachedAnswer> {
        let fresh = self.lru.peek(&hash).map(|e| e.expires_at > now)?;
        if !fresh {
            self.remove(hash);
            return None;
        }
        self.lru.get(&hash).map(|e| e.value.clone())
    }

    fn remove(&mut self, hash: u128) {
        if let Some(old) = self.lru.pop(&hash) {
            self.bytes -= old.size();
        }
    }

    fn insert(&mut self, hash: u128, entry: Entry) {
        let size = entry.size();
        if size > self.max_bytes {
            return; // would evict everything else and still not fit
        }
        self.remove(hash);
        if let Some((_, evicted)) = self.lru.push(hash, entry) {
            self.bytes -= evicted.size();
        }
        self.bytes += size;
        while self.bytes > self.max_bytes {
            match self.lru.pop_lru() {
                Some((_, evicted)) => self.bytes -= evicted.size(),
                None => break,
            }
        }
    }
}

/// The in-process cache tier.
pub struct L1 {
    shards: Vec<Mutex<Shard>>,
    ttl: Duration,
}

impl L1 {
    /// An empty L1 bounded by `cfg`.
    pub fn new(cfg: &L1Settings) -> Self {
        let shards = cfg.shards.clamp(1, 256);
        let entries =
            NonZeroUsize::new((cfg.max_entries / shards).max(1)).unwrap_or(NonZeroUsize::MIN);
        let max_bytes = (cfg.max_bytes / shards).max(1);
        Self {
            shards: (0..shards)
                .map(|_| {
                    Mutex::new(Shard {
                        lru: LruCache::new(entries),
                        bytes: 0,
                        max_bytes,
                    })
                })
                .collect(),
            ttl: cfg.ttl,
        }
    }

    fn shard(&self, key: &CacheKey) -> &Mutex<Shard> {
        // The low bits of a good 128-bit hash are as uniform as any.
        &self.shards[(key.hash() as usize) % self.shards.len()]
    }

    /// The live entry for `key`, if any (an expired one is dropped on the way).
    pub fn get(&self, key: &CacheKey) -> Option<CachedAnswer> {
        self.get_at(key, Instant::now())
    }

    /// Stores `value` for `key` for the configured TTL.
    pub fn insert(&self, key: &CacheKey, value: CachedAnswer) {
        self.insert_at(key, value, Instant::now());
    }

    fn get_at(&self, key: &CacheKey, now: Instant) -> Option<CachedAnswer> {
        // A poisoned lock only means another thread panicked mid-operation on plain data;
        // the cache is still consistent enough to use.
        let mut shard = self.shard(key).lock().unwrap_or_else(|p| p.into_inner());
        shard.get(key.hash(), now)
    }

    fn insert_at(&self, key: &CacheKey, value: CachedAnswer, now: Instant) {
        let entry = Entry {
            value,
            expires_at: now + self.ttl,
        };
        let mut shard = self.shard(key).lock().unwrap_or_else(|p| p.into_inner());
        shard.insert(key.hash(), entry);
    }

    /// Entries and bytes held now.
    pub fn usage(&self) -> (usize, usize) {
        self.shards.iter().fold((0, 0), |(n, b), s| {
            let s = s.lock().unwrap_or_else(|p| p.into_inner());
            (n + s.lru.len(), b + s.bytes)
        })
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::cache::key::Input;

    fn key(i: u32) -> CacheKey {
        CacheKey::new("m", "1", Input::Features(&[i as f32]))
    }

    fn answer(len: usize) -> CachedAnswer {
        CachedAnswer {
            confidence: Some(0.5),
            body: Bytes::from(vec![b'x'; len]),
            probs: std::sync::Arc::from([]),
        }
    }

    fn l1(max_entries: usize, max_bytes: usize) -> L1 {
        L1::new(&L1Settings {
            max_entries,
            max_bytes,
            ttl: Duration::from_secs(60),
            shards: 1,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn entries_expire_after_their_ttl() {
        let c = l1(10, 1 << 20);
        c.insert(&key(1), answer(10));
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(c.get(&key(1)).is_some());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(c.get(&key(1)).is_none());
        assert_eq!(c.usage(), (0, 0), "an expired entry is dropped when met");
    }

    #[test]
    fn bytes_bound_evicts_least_recently_used() {
        let per = 100 + ENTRY_OVERHEAD;
        let c = l1(1000, 3 * per);
        for i in 0..3 {
            c.insert(&key(i), answer(100));
        }
        assert!(c.get(&key(0)).is_some()); // 0 is now the most recent
        c.insert(&key(3), answer(100));
        assert!(c.get(&key(1)).is_none(), "least recently used goes first");
        assert!(c.get(&key(0)).is_some() && c.get(&key(3)).is_some());
        assert_eq!(c.usage(), (3, 3 * per));
        // A value larger than the whole bound is not cached (and evicts nothing).
        c.insert(&key(9), answer(10 * per));
        assert!(c.get(&key(9)).is_none());
        assert_eq!(c.usage().0, 3);
    }

    #[test]
    fn entry_bound_and_replacement_keep_the_byte_count_right() {
        let c = l1(2, 1 << 20);
        c.insert(&key(1), answer(10));
        c.insert(&key(1), answer(20));
        c.insert(&key(2), answer(30));
        c.insert(&key(3), answer(40));
        assert!(c.get(&key(1)).is_none());
        assert_eq!(c.usage(), (2, 70 + 2 * ENTRY_OVERHEAD));
    }
}
