//! CLOCK: FIFO with a second chance. Entries sit in a ring; a hit sets
//! the entry's reference bit; to make room, the hand sweeps the ring,
//! clearing set bits, and evicts the first entry whose bit was clear.
//! Corbató, 1968 ("A paging experiment with the Multics system"); LRU's
//! hit ratio, nearly, at FIFO's cost per hit (one bit set).

use super::{IndexMap, Policy};

/// One place of the ring.
#[derive(Debug, Clone, Copy)]
struct Place {
    index: i64,
    value: i64,
    referenced: bool,
    /// False for a place emptied by a removal.
    occupied: bool,
}

/// FIFO with a reference bit (second chance).
#[derive(Debug, Default)]
pub struct Clock {
    map: IndexMap<u32>,
    ring: Vec<Place>,
    /// The next place the hand looks at.
    hand: usize,
    capacity: usize,
}

impl Clock {
    /// An empty cache of `capacity` entries.
    pub fn new(capacity: usize) -> Clock {
        Clock {
            ring: Vec::with_capacity(capacity.min(1 << 16)),
            capacity,
            ..Clock::default()
        }
    }

    /// Sweeps to the first entry without a second chance; returns its place.
    fn victim(&mut self) -> usize {
        let n = self.ring.len();
        loop {
            let at = self.hand;
            self.hand = (self.hand + 1) % n;
            let p = &mut self.ring[at];
            if !p.occupied {
                continue;
            }
            if p.referenced {
                p.referenced = false;
            } else {
                return at;
            }
        }
    }
}

impl Policy for Clock {
    fn get(&mut self, index: i64) -> Option<i64> {
        let &at = self.map.get(&index)?;
        let p = &mut self.ring[at as usize];
        p.referenced = true;
        Some(p.value)
    }

    fn insert(&mut self, index: i64, value: i64) -> Option<(i64, i64)> {
        if let Some(&at) = self.map.get(&index) {
            self.ring[at as usize].value = value;
            return None;
        }
        if self.capacity == 0 {
            return None;
        }
        let new = Place {
            index,
            value,
            referenced: false,
            occupied: true,
        };
        if self.ring.len() < self.capacity {
            self.ring.push(new);
            self.map.insert(index, (self.ring.len() - 1) as u32);
            return None;
        }
        if self.map.len() < self.capacity {
            // Not full, yet the ring is: a removal left a place empty. The
            // first one the hand would meet takes the new entry, as if it
            // had been evicted there (rare: a linear look, after removals).
            let n = self.ring.len();
            if let Some(at) = (0..n).map(|k| (self.hand + k) % n).find(|&at| !self.ring[at].occupied) {
                self.ring[at] = new;
                self.hand = (at + 1) % n;
                self.map.insert(index, at as u32);
                return None;
            }
        }
        let at = self.victim();
        let old = std::mem::replace(&mut self.ring[at], new);
        self.map.remove(&old.index);
        self.map.insert(index, at as u32);
        Some((old.index, old.value))
    }

    fn update(&mut self, index: i64, value: i64) -> bool {
        match self.map.get(&index) {
            Some(&at) => {
                self.ring[at as usize].value = value;
                true
            }
            None => false,
        }
    }

    fn remove(&mut self, index: i64) {
        if let Some(at) = self.map.remove(&index) {
            self.ring[at as usize].occupied = false;
        }
    }

    fn clear(&mut self) {
        self.map.clear();
        self.ring.clear();
        self.hand = 0;
    }

    /// From the hand on: the order in which the hand will meet them (an
    /// entry with its bit set is passed once before it can go).
    fn entries(&self) -> Vec<(i64, i64)> {
        let n = self.ring.len();
        let live = |p: &&Place| p.occupied;
        let sweep = (0..n).map(|k| &self.ring[(self.hand + k) % n]);
        let first: Vec<(i64, i64)> = sweep
            .clone()
            .filter(live)
            .filter(|p| !p.referenced)
            .map(|p| (p.index, p.value))
            .collect();
        let second = sweep.filter(live).filter(|p| p.referenced).map(|p| (p.index, p.value));
        first.into_iter().chain(second).collect()
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    fn capacity(&self) -> usize {
        self.capacity
    }

    fn name(&self) -> &'static str {
        "clock"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_removals_the_first_empty_place_from_the_hand_is_filled() {
        let mut c = Clock::new(4);
        for i in 1..=4 {
            c.insert(i, i * 10);
        }
        assert_eq!(c.insert(5, 50), Some((1, 10)));
        assert_eq!(c.insert(6, 60), Some((2, 20)));
        // The ring is [5, 6, 3, 4] with the hand at 3. Two places empty,
        // behind the hand (6) and ahead of it (4).
        c.remove(4);
        c.remove(6);
        // Not full: nothing is evicted, and the new entry takes the place
        // the hand meets first (4's), as if evicted there.
        assert_eq!(c.insert(7, 70), None);
        assert_eq!(c.entries(), vec![(5, 50), (3, 30), (7, 70)]);
        // The other empty place goes next, then the hand evicts again.
        assert_eq!(c.insert(8, 80), None);
        assert_eq!(c.entries(), vec![(3, 30), (7, 70), (5, 50), (8, 80)]);
        assert_eq!(c.insert(9, 90), Some((3, 30)));
    }

    #[test]
    fn a_referenced_entry_gets_a_second_chance() {
        let mut c = Clock::new(3);
        c.insert(1, 10);
        c.insert(2, 20);
        c.insert(3, 30);
        assert_eq!(c.get(1), Some(10), "1's bit is set");
        // The hand passes 1 (clearing its bit) and takes 2.
        assert_eq!(c.insert(4, 40), Some((2, 20)));
        // Next: 3 (never referenced) before 1 (its chance used).
        assert_eq!(c.insert(5, 50), Some((3, 30)));
        assert_eq!(c.insert(6, 60), Some((1, 10)));
        c.remove(4);
        assert_eq!(c.insert(7, 70), None, "a removed entry's place is reused");
        assert_eq!(c.len(), 3);
    }

    #[test]
    fn an_entry_in_a_freed_place_is_not_the_next_victim_and_any_index_works() {
        let mut c = Clock::new(3);
        for k in [1, 2, 3] {
            c.insert(k, k);
        }
        assert_eq!(c.insert(4, 4), Some((1, 1)));
        c.remove(2);
        assert_eq!(c.insert(5, 5), None);
        assert_eq!(
            c.insert(6, 6),
            Some((3, 3)),
            "the oldest unreferenced, not the newcomer"
        );
        let mut one = Clock::new(1);
        one.insert(i64::MIN, 1);
        assert_eq!(one.insert(0, 2), Some((i64::MIN, 1)));
        assert_eq!(one.entries(), vec![(0, 2)]);
    }
}
