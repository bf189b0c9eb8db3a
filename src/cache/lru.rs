//! LRU: the entry used least recently goes first; every hit moves its
//! entry to the front. The classic (Mattson et al., 1970, the stack
//! algorithms); a hit costs an unlink and a relink.

use super::list::{List, Slots};
use super::{IndexMap, Policy};

/// Least recently used.
#[derive(Debug, Default)]
pub struct Lru {
    map: IndexMap<u32>,
    slots: Slots,
    list: List,
    capacity: usize,
}

impl Lru {
    /// An empty cache of `capacity` entries.
    pub fn new(capacity: usize) -> Lru {
        Lru {
            slots: Slots::with_capacity(capacity),
            capacity,
            ..Lru::default()
        }
    }
}

impl Policy for Lru {
    fn get(&mut self, index: i64) -> Option<i64> {
        let &s = self.map.get(&index)?;
        self.slots.refresh(&mut self.list, s);
        Some(self.slots.get(s).value)
    }

    fn insert(&mut self, index: i64, value: i64) -> Option<(i64, i64)> {
        if let Some(&s) = self.map.get(&index) {
            self.slots.get_mut(s).value = value;
            self.slots.refresh(&mut self.list, s);
            return None;
        }
        if self.capacity == 0 {
            return None;
        }
        let evicted = if self.list.len >= self.capacity {
            let tail = self.list.tail;
            let n = self.slots.remove(&mut self.list, tail);
            self.map.remove(&n.index);
            Some((n.index, n.value))
        } else {
            None
        };
        let s = self.slots.push_head(&mut self.list, index, value, 0);
        self.map.insert(index, s);
        evicted
    }

    fn update(&mut self, index: i64, value: i64) -> bool {
        // A write-through is not a use: the order stays.
        self.slots.set_value(&self.map, index, value)
    }

    fn remove(&mut self, index: i64) {
        if let Some(s) = self.map.remove(&index) {
            self.slots.remove(&mut self.list, s);
        }
    }

    fn clear(&mut self) {
        self.map.clear();
        self.slots.clear();
        self.list = List::default();
    }

    fn entries(&self) -> Vec<(i64, i64)> {
        self.slots.oldest_first(&self.list)
    }

    fn len(&self) -> usize {
        self.list.len
    }

    fn capacity(&self) -> usize {
        self.capacity
    }

    fn name(&self) -> &'static str {
        "lru"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hit_refreshes_and_the_least_recent_goes() {
        let mut c = Lru::new(3);
        c.insert(1, 10);
        c.insert(2, 20);
        c.insert(3, 30);
        assert_eq!(c.get(1), Some(10), "1 is now the most recent");
        assert_eq!(c.insert(4, 40), Some((2, 20)));
        assert_eq!(c.entries(), vec![(3, 30), (1, 10), (4, 40)]);
        assert!(
            c.update(3, 33) && c.entries()[0] == (3, 33),
            "an update keeps its place"
        );
        c.remove(1);
        assert_eq!(c.entries(), vec![(3, 33), (4, 40)]);
        assert_eq!(c.insert(5, 50), None);
        assert_eq!(c.insert(6, 60), Some((3, 33)));
    }
}
