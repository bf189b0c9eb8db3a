//! SIEVE: a FIFO queue with a visited bit and a hand. New entries go to
//! the head; a hit only sets the bit. To make room the hand moves from
//! the tail toward the head, clearing set bits, and evicts the first
//! unvisited entry; survivors stay where they are (no reinsertion), so
//! newcomers that are not hit again leave quickly.
//! Zhang et al., "SIEVE is Simpler than LRU", NSDI 2024.

use super::list::{List, Slots, NIL};
use super::{IndexMap, Policy};

/// The visited bit.
const VISITED: u8 = 1;

/// SIEVE.
#[derive(Debug)]
pub struct Sieve {
    map: IndexMap<u32>,
    slots: Slots,
    list: List,
    /// Where the next eviction looks first (`NIL`: the tail).
    hand: u32,
    capacity: usize,
}

impl Sieve {
    /// An empty cache of `capacity` entries.
    pub fn new(capacity: usize) -> Sieve {
        Sieve {
            map: IndexMap::default(),
            slots: Slots::with_capacity(capacity),
            list: List::default(),
            hand: NIL,
            capacity,
        }
    }

    /// Evicts the first unvisited entry from the hand toward the head
    /// (wrapping to the tail).
    fn evict(&mut self) -> (i64, i64) {
        let mut s = if self.hand == NIL { self.list.tail } else { self.hand };
        loop {
            let n = self.slots.get_mut(s);
            if n.bits & VISITED == 0 {
                break;
            }
            n.bits &= !VISITED;
            s = self.slots.newer(s);
            if s == NIL {
                s = self.list.tail;
            }
        }
        self.hand = self.slots.newer(s);
        let n = self.slots.remove(&mut self.list, s);
        self.map.remove(&n.index);
        (n.index, n.value)
    }
}

impl Policy for Sieve {
    fn get(&mut self, index: i64) -> Option<i64> {
        let &s = self.map.get(&index)?;
        let n = self.slots.get_mut(s);
        n.bits |= VISITED;
        Some(n.value)
    }

    fn insert(&mut self, index: i64, value: i64) -> Option<(i64, i64)> {
        if self.slots.set_value(&self.map, index, value) {
            return None;
        }
        if self.capacity == 0 {
            return None;
        }
        let evicted = (self.list.len >= self.capacity).then(|| self.evict());
        let s = self.slots.push_head(&mut self.list, index, value, 0);
        self.map.insert(index, s);
        evicted
    }

    fn update(&mut self, index: i64, value: i64) -> bool {
        self.slots.set_value(&self.map, index, value)
    }

    fn remove(&mut self, index: i64) {
        if let Some(s) = self.map.remove(&index) {
            if self.hand == s {
                self.hand = self.slots.newer(s);
            }
            self.slots.remove(&mut self.list, s);
        }
    }

    fn clear(&mut self) {
        self.map.clear();
        self.slots.clear();
        self.list = List::default();
        self.hand = NIL;
    }

    /// From the hand toward the head, then from the tail up to the hand;
    /// within that walk, unvisited entries go before visited ones.
    fn entries(&self) -> Vec<(i64, i64)> {
        let mut walk = Vec::with_capacity(self.list.len);
        let start = if self.hand == NIL { self.list.tail } else { self.hand };
        let mut s = start;
        while s != NIL {
            walk.push(s);
            s = self.slots.newer(s);
        }
        let mut s = self.list.tail;
        while s != NIL && s != start {
            walk.push(s);
            s = self.slots.newer(s);
        }
        let pick = |visited: bool| {
            walk.iter()
                .map(|&s| self.slots.get(s))
                .filter(move |n| (n.bits & VISITED != 0) == visited)
                .map(|n| (n.index, n.value))
        };
        pick(false).chain(pick(true)).collect()
    }

    fn len(&self) -> usize {
        self.list.len
    }

    fn capacity(&self) -> usize {
        self.capacity
    }

    fn name(&self) -> &'static str {
        "sieve"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_start_where_the_hand_stopped() {
        let mut c = Sieve::new(3);
        for i in 1..=3 {
            c.insert(i, i * 10);
        }
        c.get(1);
        // The hand passes 1 (visited: its bit cleared) and evicts 2; it
        // stops at 3, which the next eviction looks at first.
        assert_eq!(c.insert(4, 40), Some((2, 20)));
        assert_eq!(c.entries(), vec![(3, 30), (4, 40), (1, 10)]);
        // A visited entry is listed after the unvisited ones.
        c.get(4);
        assert_eq!(c.entries(), vec![(3, 30), (1, 10), (4, 40)]);
        assert_eq!(c.insert(5, 50), Some((3, 30)));
    }

    #[test]
    fn the_hand_skips_visited_entries_and_stays_where_it_stopped() {
        let mut c = Sieve::new(3);
        c.insert(1, 10);
        c.insert(2, 20);
        c.insert(3, 30);
        c.get(1);
        c.get(2);
        // The hand starts at the tail (1): 1 and 2 are visited (cleared,
        // kept), 3 goes.
        assert_eq!(c.insert(4, 40), Some((3, 30)));
        // The hand stays past 3, at the head end; it wraps to the tail: 1,
        // now unvisited, goes.
        assert_eq!(c.insert(5, 50), Some((1, 10)));
        c.get(5);
        assert_eq!(c.insert(6, 60), Some((2, 20)));
        assert_eq!(c.len(), 3);
    }
}
