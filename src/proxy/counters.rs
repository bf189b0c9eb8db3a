//! What the proxy counts for STS: hits and misses (overall and per index,
//! for a bounded number of indices), evictions, errors by code. Pure.
//!
//! Per index, an index below [`DIRECT`] is counted in an array (no
//! hashing on the request path: a table's indices start at 0), any other
//! in a map of at most [`MAX_TRACKED_INDICES`] entries.

use std::collections::BTreeMap;

/// Indices counted in the array: 0 to 4095 (64 KiB of counters, allocated
/// at the first such index).
pub(super) const DIRECT: usize = 4096;
/// Other indices with their own hit and miss counters in STS, at most.
const MAX_TRACKED_INDICES: usize = 4096;

/// What STS reports about the cache and the requests.
#[derive(Debug, Default)]
pub struct Counters {
    /// Indices answered from the cache.
    pub hits: u64,
    /// Indices fetched.
    pub misses: u64,
    /// Per index below DIRECT: hits, misses.
    pub(super) direct: Vec<(u64, u64)>,
    /// Per other index (the first MAX_TRACKED_INDICES seen): hits, misses.
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
            let e = if (0..DIRECT as i64).contains(&i) {
                if self.direct.is_empty() {
                    self.direct = vec![(0, 0); DIRECT];
                }
                &mut self.direct[i as usize]
            } else {
                // Clients choose indices, and must not grow this map at will.
                let room = self.by_index.len() < MAX_TRACKED_INDICES;
                match self.by_index.get_mut(&i) {
                    Some(e) => e,
                    None if room => self.by_index.entry(i).or_default(),
                    None => continue,
                }
            };
            if hit {
                e.0 += 1;
            } else {
                e.1 += 1;
            }
        }
    }

    /// Every index counted, with its hits and misses, in index order.
    pub fn per_index(&self) -> Vec<(i64, (u64, u64))> {
        let direct = self.direct.iter().enumerate().map(|(i, &c)| (i as i64, c));
        let mut all: Vec<(i64, (u64, u64))> = direct
            .filter(|&(_, (h, m))| h + m > 0)
            .chain(self.by_index.iter().map(|(&i, &c)| (i, c)))
            .collect();
        all.sort_unstable_by_key(|&(i, _)| i);
        all
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
        assert_eq!(c.per_index(), [(1, (2, 0)), (2, (0, 2))]);
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
        // Indices below DIRECT are always counted, in the array.
        for i in 0..DIRECT as i64 {
            c.count(&[i], &[None]);
        }
        assert!(c.by_index.is_empty());
        // Others: the first MAX_TRACKED_INDICES seen.
        let far = DIRECT as i64 + 10;
        for i in far..far + MAX_TRACKED_INDICES as i64 {
            c.count(&[i], &[None]);
        }
        assert_eq!(c.by_index.len(), MAX_TRACKED_INDICES);
        c.count(&[-1, far, 0], &[Some(1), Some(1), Some(1)]);
        assert_eq!(c.by_index.len(), MAX_TRACKED_INDICES, "no room for a new index");
        assert_eq!(c.by_index.get(&-1), None);
        assert_eq!(c.by_index.get(&far), Some(&(1, 1)), "a known one still counts");
        assert_eq!(c.direct[0], (1, 1));
        let all = c.per_index();
        assert_eq!(all.len(), DIRECT + MAX_TRACKED_INDICES);
        assert_eq!(
            (all[0].0, all[DIRECT - 1].0, all[DIRECT].0),
            (0, DIRECT as i64 - 1, far)
        );
        assert_eq!((c.hits, c.misses), (3, (DIRECT + MAX_TRACKED_INDICES) as u64));
    }
}
