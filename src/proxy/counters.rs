//! What the proxy counts for STS: hits and misses (overall and per index,
//! for a bounded number of indices), evictions, errors by code. Pure.

use std::collections::BTreeMap;

/// Indices with their own hit and miss counters in STS, at most.
const MAX_TRACKED_INDICES: usize = 4096;

/// What STS reports about the cache and the requests.
#[derive(Debug, Default)]
pub struct Counters {
    /// Indices answered from the cache.
    pub hits: u64,
    /// Indices fetched.
    pub misses: u64,
    /// Per index (the first MAX_TRACKED_INDICES seen): hits, misses.
    /// A hash map: counting costs no allocation once an index is known
    /// (a tree allocates as it grows and shrinks); STS sorts a copy.
    pub(super) by_index: crate::cache::IndexMap<(u64, u64)>,
    /// Entries overwritten by a fetch.
    pub evictions: u64,
    /// Error replies by code.
    pub(super) errors: BTreeMap<u16, u64>,
}

impl Counters {
    /// Counts an error reply.
    pub fn error(&mut self, code: u16) {
        *self.errors.entry(code).or_default() += 1;
    }

    /// Counts each index of a request as a hit (value taken from the
    /// cache) or a miss (value to fetch).
    pub fn count(&mut self, ind: &[i64], vals: &[Option<i64>]) {
        for (v, &i) in vals.iter().zip(ind) {
            let hit = v.is_some();
            if hit {
                self.hits += 1;
            } else {
                self.misses += 1;
            }
            // Clients choose indices, and must not grow this map at will.
            let room = self.by_index.len() < MAX_TRACKED_INDICES;
            let e = match self.by_index.get_mut(&i) {
                Some(e) => e,
                None if room => self.by_index.entry(i).or_default(),
                None => continue,
            };
            if hit {
                e.0 += 1;
            } else {
                e.1 += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_and_misses_are_counted_overall_and_per_index() {
        let mut c = Counters::default();
        c.count(&[1, 2, 1], &[Some(10), None, Some(10)]);
        c.count(&[2], &[None]);
        assert_eq!((c.hits, c.misses), (2, 2));
        assert_eq!(c.by_index.get(&1), Some(&(2, 0)));
        assert_eq!(c.by_index.get(&2), Some(&(0, 2)));
        c.error(503);
        c.error(503);
        c.error(400);
        assert_eq!(
            c.errors.iter().map(|(&k, &n)| (k, n)).collect::<Vec<_>>(),
            [(400, 1), (503, 2)]
        );
    }

    #[test]
    fn indices_past_the_bound_are_counted_only_overall() {
        let mut c = Counters::default();
        for i in 0..MAX_TRACKED_INDICES as i64 {
            c.count(&[i], &[None]);
        }
        assert_eq!(c.by_index.len(), MAX_TRACKED_INDICES);
        c.count(&[-1, 0], &[Some(1), Some(1)]);
        assert_eq!(c.by_index.len(), MAX_TRACKED_INDICES, "no room for a new index");
        assert_eq!(c.by_index.get(&-1), None);
        assert_eq!(c.by_index.get(&0), Some(&(1, 1)), "a known one still counts");
        assert_eq!((c.hits, c.misses), (2, MAX_TRACKED_INDICES as u64));
    }
}
