//! The proxy's cache: at most `capacity` (index, value) entries, and the
//! policy that picks which entry a new one overwrites when full.
//!
//! [`Fifo`] is the default and the one the seed asks for: the **oldest
//! inserted** entry goes first; a hit does not change the order, and an
//! update of an entry already held keeps its place. The others
//! (`--policy lru|clock|sieve|s3fifo`, docs/caching.md) implement the
//! same [`Policy`], each in its own file; nothing else in the proxy
//! changes with the policy. Pure code, no I/O.

mod clock;
mod fifo;
mod list;
mod lru;
mod s3fifo;
mod sieve;

pub use clock::Clock;
pub use fifo::Fifo;
pub use lru::Lru;
pub use s3fifo::S3Fifo;
pub use sieve::Sieve;

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// What a cache policy offers the proxy.
pub trait Policy {
    /// The value held for `index`, if any (a hit does not reorder FIFO).
    fn get(&mut self, index: i64) -> Option<i64>;
    /// Holds `value` for `index`: updates in place if held, else inserts,
    /// overwriting the entry the policy picks when full. Returns the
    /// evicted entry.
    fn insert(&mut self, index: i64, value: i64) -> Option<(i64, i64)>;
    /// Updates `index` only if it is held (write-through after a PUT).
    fn update(&mut self, index: i64, value: i64) -> bool;
    /// Forgets `index` (its value is no longer known to be right).
    fn remove(&mut self, index: i64);
    /// Forgets everything.
    fn clear(&mut self);
    /// The entries in eviction order (next to go first).
    fn entries(&self) -> Vec<(i64, i64)>;
    /// Entries held.
    fn len(&self) -> usize;
    /// True when nothing is held.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Entries it may hold.
    fn capacity(&self) -> usize;
    /// The policy's name, for STS and logs.
    fn name(&self) -> &'static str;
}

/// A small, fast hasher for integer keys (a multiply and a rotate); the
/// keys are indices chosen by clients, and a cache of `capacity` entries
/// does not need SipHash's resistance to crafted collisions: with the
/// proxy's small capacities, a colliding chain is as long as the cache.
#[derive(Default)]
pub struct IntHasher(u64);

impl Hasher for IntHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ b as u64).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn write_i64(&mut self, n: i64) {
        self.0 = (n as u64 ^ 0x9e37_79b9_7f4a_7c15)
            .wrapping_mul(0x51_7c_c1_b7_27_22_0a_95)
            .rotate_left(29);
    }
    // Sequence numbers and ids hash as indices do: one multiply, not one
    // per byte.
    fn write_u64(&mut self, n: u64) {
        self.write_i64(n as i64);
    }
}

/// A `HashMap` keyed by index with [`IntHasher`].
pub type IndexMap<V> = HashMap<i64, V, BuildHasherDefault<IntHasher>>;

/// The policies by name, as `--policy` takes them.
pub const POLICIES: [&str; 5] = ["fifo", "lru", "clock", "sieve", "s3fifo"];

/// A cache of `capacity` entries with the named policy.
pub fn by_name(name: &str, capacity: usize) -> Option<Box<dyn Policy + Send>> {
    Some(match name {
        "fifo" => Box::new(Fifo::new(capacity)),
        "lru" => Box::new(Lru::new(capacity)),
        "clock" => Box::new(Clock::new(capacity)),
        "sieve" => Box::new(Sieve::new(capacity)),
        "s3fifo" => Box::new(S3Fifo::new(capacity)),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::hash::{BuildHasher, Hash};

    fn hash_of(k: impl Hash) -> u64 {
        BuildHasherDefault::<IntHasher>::default().hash_one(k)
    }

    #[test]
    fn every_policy_is_empty_exactly_when_it_holds_nothing() {
        for name in POLICIES {
            let mut c = by_name(name, 2).unwrap();
            assert!(c.is_empty(), "{name}: new");
            c.insert(1, 10);
            assert!(!c.is_empty(), "{name}: holding one entry");
            c.remove(1);
            assert!(c.is_empty(), "{name}: after removing it");
        }
    }

    #[test]
    fn every_policy_names_itself_keeps_its_capacity_and_updates_only_what_it_holds() {
        for name in POLICIES {
            let mut c = by_name(name, 3).unwrap();
            assert_eq!(c.name(), name);
            assert_eq!(c.capacity(), 3, "{name}");
            c.insert(1, 10);
            assert!(c.update(1, 11), "{name}: held, updated");
            assert_eq!(c.get(1), Some(11), "{name}");
            assert!(!c.update(2, 20), "{name}: not held, not added");
            assert_eq!(c.get(2), None, "{name}");
            assert_eq!(c.len(), 1, "{name}");
        }
        assert!(by_name("lfu", 3).is_none());
    }

    #[test]
    fn the_hasher_tells_apart_indices_and_byte_strings() {
        // Distinct keys, distinct hashes: the cache's maps stay one probe
        // deep, whatever the key type hashed with it.
        let ints: HashSet<u64> = (-5000i64..5000).map(hash_of).collect();
        assert_eq!(ints.len(), 10_000);
        let bytes: HashSet<u64> = (0u16..=u16::MAX).map(|n| hash_of(n.to_le_bytes())).collect();
        assert_eq!(bytes.len(), 65_536);
    }
}
