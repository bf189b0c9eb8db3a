//! Proxies gone while their last lease may still run (docs/coherence.md,
//! "Bounds"): a proxy whose connection closed may still be serving, frozen,
//! from a cache the server can no longer reach, so writes to what it held
//! wait until its last lease has run out. Pure bookkeeping.
//!
//! Kept so that a write costs the same however many proxies have left:
//! one lookup per index it names (the latest end among the departed that
//! held it), not one scan per departed proxy; and forgetting them costs
//! nothing until one is due (their ends in order).
//!
//! ```text
//!   by_index:  3 → t+1000   7 → t+1400            (the latest end per index)
//!   ends:      t+1000: 1, [3]   t+1400: 1, [3, 7]  (departures and indices to
//!                                                  forget, when)
//! ```

use crate::cache::IndexMap;
use crate::proto::{Op, Request};
use std::collections::BTreeMap;
use std::time::Instant;

/// What the departed proxies' lists take at most, in bytes; past it, a
/// proxy that leaves blocks every write until its lease runs out (one
/// instant for all of them, instead of a list).
pub const DEPARTED_BYTES_MAX: usize = 8 << 20;
/// What one index of a departed proxy's list costs, counted high: its
/// place in `ends` (8 bytes) and its entry in `by_index` (a hash-map entry
/// of 24 bytes at a load of at least 7/16).
pub const INDEX_BYTES: usize = 64;
/// What one departure costs besides its indices.
pub const ENTRY_BYTES: usize = 64;

/// The departed proxies.
#[derive(Debug, Default)]
pub struct Departed {
    /// Index → the latest instant a departed proxy that held it may still
    /// serve it.
    by_index: IndexMap<Instant>,
    /// The departures' ends, in order: how many end then, and the indices
    /// they listed. The last is the latest end of all (a CLR, which names
    /// every index, waits for it).
    ends: BTreeMap<Instant, (usize, Vec<i64>)>,
    /// Departures too many to list: every write waits until then.
    unlisted: Option<Instant>,
    /// Bytes counted for the lists ([`DEPARTED_BYTES_MAX`] at most).
    bytes: usize,
    /// Departures listed and not over.
    live: usize,
    /// Departures that were past the bound (STS `DEPARTED_UNLISTED`).
    pub unlisted_count: u64,
}

impl Departed {
    /// A proxy that may have held `held` left; its last lease ends at
    /// `until`.
    pub fn add(&mut self, held: &[i64], until: Instant) {
        let bytes = ENTRY_BYTES + INDEX_BYTES * held.len();
        if self.bytes + bytes > DEPARTED_BYTES_MAX {
            // Too many to list: the safe fallback, one instant for all.
            self.unlisted_count += 1;
            self.unlisted = Some(self.unlisted.map_or(until, |u| u.max(until)));
            return;
        }
        self.bytes += bytes;
        self.live += 1;
        for &i in held {
            let end = self.by_index.entry(i).or_insert(until);
            *end = (*end).max(until);
        }
        let end = self.ends.entry(until).or_default();
        end.0 += 1;
        end.1.extend_from_slice(held);
    }

    /// Forgets the departures whose last lease has run out by `now`.
    pub fn prune(&mut self, now: Instant) {
        while let Some(entry) = self.ends.first_entry() {
            if *entry.key() > now {
                break;
            }
            let (end, (departures, held)) = entry.remove_entry();
            for i in &held {
                // A later departure may hold it longer.
                if self.by_index.get(i).is_some_and(|&e| e <= end) {
                    self.by_index.remove(i);
                }
            }
            self.live -= departures;
            self.bytes -= departures * ENTRY_BYTES + held.len() * INDEX_BYTES;
        }
        if self.ends.is_empty() && self.by_index.capacity() > 1024 {
            // Give the room back after a crowd left.
            self.by_index = IndexMap::default();
        }
        if self.unlisted.is_some_and(|u| u <= now) {
            self.unlisted = None;
        }
    }

    /// Until when `req`, a write arriving at `now`, must wait for departed
    /// proxies, if at all.
    pub fn blocks_until(&self, req: &Request, now: Instant) -> Option<Instant> {
        let listed = if req.op == Op::Clr {
            self.ends.last_key_value().map(|(&t, _)| t)
        } else if self.by_index.is_empty() {
            None
        } else {
            req.ind.iter().filter_map(|i| self.by_index.get(i).copied()).max()
        };
        listed.into_iter().chain(self.unlisted).filter(|&t| t > now).max()
    }

    /// Bytes counted for the lists.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Departures listed and not over.
    pub fn live(&self) -> usize {
        self.live
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn put(ind: &[i64]) -> Request {
        Request::new(Op::Put, ind, &vec![7; ind.len()])
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_write_waits_for_the_latest_departed_holder_of_its_indices_only() {
        let t0 = Instant::now();
        let mut d = Departed::default();
        d.add(&[3], t0 + ms(1000));
        d.add(&[3, 7], t0 + ms(1400));
        assert_eq!(d.blocks_until(&put(&[3]), t0), Some(t0 + ms(1400)));
        assert_eq!(d.blocks_until(&put(&[7, 1]), t0), Some(t0 + ms(1400)));
        assert_eq!(d.blocks_until(&put(&[1, 2]), t0), None, "never read: no wait");
        let clr = Request::new(Op::Clr, &[], &[]);
        assert_eq!(d.blocks_until(&clr, t0), Some(t0 + ms(1400)));
        assert_eq!((d.live(), d.bytes()), (2, 2 * ENTRY_BYTES + 3 * INDEX_BYTES));
        // At the end of a lease it has run out (pruned yet or not).
        assert_eq!(d.blocks_until(&put(&[3]), t0 + ms(1400)), None);
        assert_eq!(d.blocks_until(&clr, t0 + ms(1400)), None);
        // The first ends: 3 is still held by the second.
        d.prune(t0 + ms(1000));
        assert_eq!(d.blocks_until(&put(&[3]), t0 + ms(1000)), Some(t0 + ms(1400)));
        d.prune(t0 + ms(1400));
        assert_eq!(d.blocks_until(&put(&[3, 7]), t0 + ms(1400)), None);
        assert_eq!(d.blocks_until(&clr, t0 + ms(1400)), None);
        assert_eq!((d.live(), d.bytes()), (0, 0), "everything given back");
    }

    #[test]
    fn past_the_bound_a_departure_blocks_every_write_for_its_lease() {
        let t0 = Instant::now();
        let mut d = Departed::default();
        let n = (DEPARTED_BYTES_MAX - ENTRY_BYTES) / INDEX_BYTES;
        let big: Vec<i64> = (0..n as i64).collect();
        d.add(&big, t0 + ms(1000));
        assert_eq!(d.bytes(), ENTRY_BYTES + INDEX_BYTES * n, "just fits");
        d.add(&[999_999_999], t0 + ms(500));
        assert_eq!(d.unlisted_count, 1);
        assert_eq!(d.blocks_until(&put(&[-5]), t0), Some(t0 + ms(500)), "any index");
        assert_eq!(d.blocks_until(&put(&[0]), t0), Some(t0 + ms(1000)));
        d.prune(t0 + ms(500));
        assert_eq!(d.blocks_until(&put(&[-5]), t0 + ms(500)), None);
        d.prune(t0 + ms(1000));
        assert_eq!((d.live(), d.bytes()), (0, 0));
    }

    #[test]
    fn a_departure_that_listed_nothing_still_counts_until_its_end() {
        let t0 = Instant::now();
        let mut d = Departed::default();
        d.add(&[], t0 + ms(10));
        assert_eq!((d.live(), d.bytes()), (1, ENTRY_BYTES));
        let clr = Request::new(Op::Clr, &[], &[]);
        assert_eq!(d.blocks_until(&clr, t0), Some(t0 + ms(10)));
        d.prune(t0 + ms(9));
        assert_eq!(d.live(), 1);
        d.prune(t0 + ms(10));
        assert_eq!((d.live(), d.bytes()), (0, 0));
    }
}
