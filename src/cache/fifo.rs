//! FIFO, the seed's policy and the default: the entry inserted longest
//! ago goes first; a hit changes nothing (so it costs nothing beyond the
//! lookup). Source: the assignment; the classic baseline of every cache
//! paper.

use super::{IndexMap, Policy};
use std::collections::hash_map::Entry;
use std::collections::VecDeque;

/// First in, first out: evicts the oldest inserted entry.
///
/// Every operation is O(1) (amortized), whatever the capacity: a removal
/// (a write whose outcome is unknown, after an upstream failure) only
/// forgets the value and leaves a dead entry in the queue, recognised by
/// its insertion stamp and skipped when it reaches the front. Dead entries
/// are swept out once they outnumber the live ones, so the queue stays
/// within about twice the capacity.
#[derive(Debug, Default)]
pub struct Fifo {
    /// Value and insertion stamp per index held.
    values: IndexMap<(i64, u64)>,
    /// (index, stamp), oldest inserted first; an entry whose stamp is not
    /// the index's current one is dead.
    order: VecDeque<(i64, u64)>,
    next_stamp: u64,
    capacity: usize,
}

impl Fifo {
    /// An empty cache of `capacity` entries (0 caches nothing).
    pub fn new(capacity: usize) -> Fifo {
        Fifo {
            values: IndexMap::default(),
            order: VecDeque::with_capacity(capacity.min(1 << 16)),
            next_stamp: 0,
            capacity,
        }
    }

    fn live(&self, &(index, stamp): &(i64, u64)) -> bool {
        self.values.get(&index).is_some_and(|&(_, s)| s == stamp)
    }

    /// Pops the oldest live entry. (Taken out and put back when dead but
    /// held under a newer stamp: one hash lookup for the common case, a
    /// live front.)
    fn pop_oldest(&mut self) -> Option<(i64, i64)> {
        while let Some((index, stamp)) = self.order.pop_front() {
            match self.values.remove(&index) {
                Some((v, s)) if s == stamp => return Some((index, v)),
                Some(newer) => {
                    self.values.insert(index, newer);
                }
                None => {}
            }
        }
        None
    }
}

impl Policy for Fifo {
    #[inline]
    fn get(&mut self, index: i64) -> Option<i64> {
        self.values.get(&index).map(|&(v, _)| v)
    }

    fn insert(&mut self, index: i64, value: i64) -> Option<(i64, i64)> {
        if self.capacity == 0 {
            return None;
        }
        let stamp = self.next_stamp;
        match self.values.entry(index) {
            Entry::Occupied(mut held) => {
                held.get_mut().0 = value;
                return None;
            }
            Entry::Vacant(new) => {
                new.insert((value, stamp));
            }
        }
        // In, then the oldest out: the new entry is at the back of the
        // queue, behind every other live one.
        self.next_stamp += 1;
        let evicted = if self.values.len() > self.capacity {
            self.pop_oldest()
        } else {
            None
        };
        self.order.push_back((index, stamp));
        evicted
    }

    fn update(&mut self, index: i64, value: i64) -> bool {
        match self.values.get_mut(&index) {
            Some((v, _)) => {
                *v = value;
                true
            }
            None => false,
        }
    }

    fn remove(&mut self, index: i64) {
        if self.values.remove(&index).is_some() && self.order.len() > 2 * self.values.len() + 64 {
            // Sweep: paid for by the removals that left the dead entries.
            let values = &self.values;
            self.order
                .retain(|(i, stamp)| values.get(i).is_some_and(|&(_, s)| s == *stamp));
        }
    }

    fn clear(&mut self) {
        self.values.clear();
        self.order.clear();
    }

    fn entries(&self) -> Vec<(i64, i64)> {
        self.order
            .iter()
            .filter(|e| self.live(e))
            .map(|&(i, _)| (i, self.values[&i].0))
            .collect()
    }

    fn len(&self) -> usize {
        self.values.len()
    }

    fn capacity(&self) -> usize {
        self.capacity
    }

    fn name(&self) -> &'static str {
        "fifo"
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_removal_leaves_a_dead_entry_until_the_dead_outnumber_the_live() {
        // O(1) removals: the queue keeps dead entries until it holds more
        // than twice the live ones plus 64, then one sweep clears them.
        let mut c = Fifo::new(100);
        for i in 0..100 {
            c.insert(i, i);
        }
        for i in 0..82 {
            c.remove(i);
            assert_eq!(c.order.len(), 100, "after {} removals: no sweep yet", i + 1);
        }
        // 18 live, 100 queued: 100 > 2 * 17 + 64 once the next one goes.
        c.remove(82);
        assert_eq!(c.order.len(), 17, "swept");
        assert_eq!(c.entries().len(), 17);
        assert_eq!(c.entries()[0], (83, 83), "the oldest live entry leads");
        // Removing what is not held sweeps nothing.
        c.remove(500);
        assert_eq!(c.order.len(), 17);
    }

    use super::*;

    #[test]
    fn evicts_the_oldest_inserted_and_hits_do_not_refresh() {
        let mut c = Fifo::new(3);
        assert_eq!(c.insert(1, 10), None);
        assert_eq!(c.insert(2, 20), None);
        assert_eq!(c.insert(3, 30), None);
        assert_eq!(c.get(1), Some(10), "a hit...");
        assert_eq!(c.insert(4, 40), Some((1, 10)), "...does not save the oldest");
        assert_eq!(c.entries(), vec![(2, 20), (3, 30), (4, 40)]);
    }

    #[test]
    fn updates_keep_their_place_and_never_insert() {
        let mut c = Fifo::new(2);
        c.insert(1, 10);
        c.insert(2, 20);
        assert!(c.update(1, 11));
        assert!(!c.update(9, 90), "absent entries are not inserted");
        assert_eq!(c.insert(2, 21), None, "re-inserting a held index updates in place");
        assert_eq!(c.entries(), vec![(1, 11), (2, 21)]);
        assert_eq!(c.insert(3, 30), Some((1, 11)));
    }

    #[test]
    fn remove_clear_and_zero_capacity() {
        let mut c = Fifo::new(3);
        c.insert(1, 1);
        c.insert(2, 2);
        c.remove(1);
        assert_eq!(c.entries(), vec![(2, 2)]);
        c.clear();
        assert!(c.is_empty());
        let mut z = Fifo::new(0);
        assert_eq!(z.insert(1, 1), None);
        assert_eq!(z.get(1), None);
    }

    #[test]
    fn a_removed_entry_leaves_no_trace_in_the_eviction_order() {
        let mut c = Fifo::new(3);
        c.insert(1, 1);
        c.insert(2, 2);
        c.insert(3, 3);
        c.remove(1);
        // Re-inserted after its removal: now the newest, not the oldest.
        c.insert(1, 10);
        assert_eq!(c.entries(), vec![(2, 2), (3, 3), (1, 10)]);
        assert_eq!(c.len(), 3);
        assert_eq!(c.insert(4, 4), Some((2, 2)));
        assert_eq!(c.insert(5, 5), Some((3, 3)));
        assert_eq!(c.insert(6, 6), Some((1, 10)));
    }

    #[test]
    fn many_removals_keep_the_queue_bounded() {
        let mut c = Fifo::new(1000);
        for i in 0..1000 {
            c.insert(i, i);
        }
        for round in 0..50 {
            for i in 0..1000 {
                c.remove(i);
                c.insert(i, i + round);
            }
            assert!(c.order.len() <= 2 * c.len() + 65, "{}", c.order.len());
        }
        assert_eq!(c.len(), 1000);
        assert_eq!(c.entries().first(), Some(&(0, 49)));
    }
}
