//! S3-FIFO: three FIFO queues. New entries go to a small queue (a tenth
//! of the space); one that is hit while there moves to the main queue
//! when it reaches the small queue's end, the others leave, remembered in
//! a ghost queue (indices only, as many as the main queue holds). An
//! entry whose index is in the ghost queue when it comes back goes
//! straight to the main queue. The main queue is a CLOCK with a 2-bit
//! counter: an entry hit since it last passed is reinserted with its
//! count less one. One-hit wonders leave fast; the rest stay.
//! Yang et al., "FIFO queues are all you need for cache eviction",
//! SOSP 2023.

use super::list::{List, Slots};
use super::{IndexMap, Policy};
use std::collections::VecDeque;

/// The queue an entry is in (bit 2 of `bits`); bits 0-1 are its count.
const IN_MAIN: u8 = 4;
const FREQ: u8 = 3;

/// S3-FIFO.
#[derive(Debug)]
pub struct S3Fifo {
    map: IndexMap<u32>,
    slots: Slots,
    small: List,
    main: List,
    /// Indices evicted from the small queue, oldest first, with the stamp
    /// that tells a live ghost from one pushed out since (as in `Fifo`).
    ghost: VecDeque<(i64, u64)>,
    ghosts: IndexMap<u64>,
    next_stamp: u64,
    small_target: usize,
    capacity: usize,
}

impl S3Fifo {
    /// An empty cache of `capacity` entries (the small queue a tenth of
    /// it, at least one).
    pub fn new(capacity: usize) -> S3Fifo {
        S3Fifo {
            map: IndexMap::default(),
            slots: Slots::with_capacity(capacity),
            small: List::default(),
            main: List::default(),
            ghost: VecDeque::new(),
            ghosts: IndexMap::default(),
            next_stamp: 0,
            small_target: (capacity / 10).max(1),
            capacity,
        }
    }

    fn remember(&mut self, index: i64) {
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        self.ghosts.insert(index, stamp);
        self.ghost.push_back((index, stamp));
        // As many ghosts as the main queue may hold entries.
        let limit = self.capacity - self.small_target.min(self.capacity);
        while self.ghosts.len() > limit.max(1) {
            let Some((i, s)) = self.ghost.pop_front() else { break };
            if self.ghosts.get(&i) == Some(&s) {
                self.ghosts.remove(&i);
            }
        }
        if self.ghost.len() > 2 * self.ghosts.len() + 64 {
            let ghosts = &self.ghosts;
            self.ghost.retain(|(i, s)| ghosts.get(i) == Some(s));
        }
    }

    /// Makes room for one entry; returns the entry that left the cache.
    fn evict(&mut self) -> Option<(i64, i64)> {
        loop {
            if self.small.len >= self.small_target || self.main.len == 0 {
                let s = self.small.tail;
                if self.slots.get(s).bits & FREQ > 0 {
                    // Hit while in the small queue: on to the main queue.
                    self.slots.get_mut(s).bits = IN_MAIN;
                    self.slots.move_to_head(&mut self.small, &mut self.main, s);
                    continue;
                }
                let n = self.slots.remove(&mut self.small, s);
                self.map.remove(&n.index);
                self.remember(n.index);
                return Some((n.index, n.value));
            }
            let s = self.main.tail;
            let bits = self.slots.get(s).bits;
            if bits & FREQ > 0 {
                self.slots.get_mut(s).bits = IN_MAIN | ((bits & FREQ) - 1);
                self.slots.refresh(&mut self.main, s);
                continue;
            }
            let n = self.slots.remove(&mut self.main, s);
            self.map.remove(&n.index);
            return Some((n.index, n.value));
        }
    }
}

impl Policy for S3Fifo {
    fn get(&mut self, index: i64) -> Option<i64> {
        let &s = self.map.get(&index)?;
        let n = self.slots.get_mut(s);
        if n.bits & FREQ < FREQ {
            n.bits += 1;
        }
        Some(n.value)
    }

    fn insert(&mut self, index: i64, value: i64) -> Option<(i64, i64)> {
        if self.slots.set_value(&self.map, index, value) {
            return None;
        }
        if self.capacity == 0 {
            return None;
        }
        // Looked up before evicting: the eviction may push the oldest
        // ghost out, and it may be this one.
        let ghost_hit = self.ghosts.remove(&index).is_some();
        let evicted = if self.small.len + self.main.len >= self.capacity {
            self.evict()
        } else {
            None
        };
        let s = if ghost_hit {
            self.slots.push_head(&mut self.main, index, value, IN_MAIN)
        } else {
            self.slots.push_head(&mut self.small, index, value, 0)
        };
        self.map.insert(index, s);
        evicted
    }

    fn update(&mut self, index: i64, value: i64) -> bool {
        self.slots.set_value(&self.map, index, value)
    }

    fn remove(&mut self, index: i64) {
        if let Some(s) = self.map.remove(&index) {
            if self.slots.get(s).bits & IN_MAIN != 0 {
                self.slots.remove(&mut self.main, s);
            } else {
                self.slots.remove(&mut self.small, s);
            }
        }
    }

    fn clear(&mut self) {
        self.map.clear();
        self.slots.clear();
        self.small = List::default();
        self.main = List::default();
        self.ghost.clear();
        self.ghosts.clear();
    }

    /// The small queue oldest first, then the main queue oldest first: the
    /// order in which entries reach a queue's end, where an entry hit
    /// since it got there moves on (to the main queue, or round it again)
    /// instead of leaving. So this lists the next victim first only when
    /// nothing was hit (docs/caching.md says so).
    fn entries(&self) -> Vec<(i64, i64)> {
        let mut v = self.slots.oldest_first(&self.small);
        v.extend(self.slots.oldest_first(&self.main));
        v
    }

    fn len(&self) -> usize {
        self.small.len + self.main.len
    }

    fn capacity(&self) -> usize {
        self.capacity
    }

    fn name(&self) -> &'static str {
        "s3fifo"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Evicts by inserting one-hit wonders from `from` on; returns what left.
    fn wonders(c: &mut S3Fifo, from: i64, n: i64) -> Vec<i64> {
        (from..from + n).filter_map(|i| c.insert(i, i)).map(|e| e.0).collect()
    }

    #[test]
    fn the_ghost_queue_remembers_as_many_as_the_main_queue_holds() {
        // Capacity 10: a small queue of 1, so 9 ghosts.
        let mut c = S3Fifo::new(10);
        wonders(&mut c, 0, 10);
        assert_eq!(wonders(&mut c, 10, 20), (0..20).collect::<Vec<_>>());
        // 19, a ghost, comes back into the main queue (listed last).
        c.insert(19, 19);
        assert_eq!(c.entries().last(), Some(&(19, 19)));
        // 10 left ten evictions before 19: beyond the 9 remembered, so it
        // comes back into the small queue, ahead of 19 in the listing.
        c.insert(10, 10);
        assert_eq!(c.entries().last(), Some(&(19, 19)), "{:?}", c.entries());
        // That insert evicted 21, whose ghost pushed out the oldest (11):
        // 12 is the oldest of the 9 now, still a ghost, into the main queue.
        c.insert(12, 12);
        assert_eq!(c.entries().last(), Some(&(12, 12)), "{:?}", c.entries());
    }

    #[test]
    fn stale_ghost_entries_are_swept_once_they_outnumber_the_live_twice_over() {
        // Capacity 100: up to 90 ghosts. A ghost hit leaves a stale entry
        // in the queue; they are swept out once the queue holds more than
        // twice the live ghosts plus 64.
        let mut c = S3Fifo::new(100);
        for i in 0..89 {
            c.remember(i);
        }
        for i in 0..77 {
            c.ghosts.remove(&i); // what a ghost hit does
        }
        c.remember(1000); // 13 live, 90 queued: 90 = 2 * 13 + 64, kept
        assert_eq!(c.ghost.len(), 90);
        c.ghosts.remove(&77);
        c.remember(1001); // 13 live, 91 queued: swept
        let live: Vec<i64> = c.ghost.iter().map(|g| g.0).collect();
        assert_eq!(live, (78..89).chain([1000, 1001]).collect::<Vec<_>>());
    }

    #[test]
    fn a_hit_in_the_main_queue_buys_another_round() {
        // Capacity 20: a small queue of 2. Everything hit moves on to the
        // main queue; with the small queue short, the main queue evicts.
        let mut c = S3Fifo::new(20);
        wonders(&mut c, 0, 20);
        for i in 0..20 {
            c.get(i);
        }
        assert_eq!(c.insert(20, 20), Some((0, 0)), "all moved on; 0 left first");
        c.get(1);
        // 1 was hit since it reached the main queue: it goes round again
        // (its count less one) and 2 leaves instead.
        assert_eq!(c.insert(21, 21), Some((2, 2)));
        // The small queue is at its length again: its oldest goes.
        assert_eq!(c.insert(22, 22), Some((20, 20)));
    }

    #[test]
    fn a_hit_in_the_main_queue_buys_one_round_not_more() {
        // Capacity 10: a small queue of 1, 9 ghosts. Ghosts come back into
        // the main queue, so the small queue can be emptied.
        let mut c = S3Fifo::new(10);
        wonders(&mut c, 0, 10);
        assert_eq!(wonders(&mut c, 10, 9), (0..9).collect::<Vec<_>>());
        for g in 0..9 {
            c.insert(g, g); // ghost hits: into the main queue
        }
        assert_eq!(c.insert(9, 9), Some((18, 18)), "the small queue's last one goes");
        // The main queue, oldest first: 0..=9; the small queue is empty.
        c.get(0);
        assert_eq!(c.insert(10, 10), Some((1, 1)), "0 goes round once");
        for (g, out) in (11..=18).zip(2..=9) {
            assert_eq!(c.insert(g, g), Some((out, out)));
        }
        // 0 is the oldest again, not hit since its round: it leaves now.
        assert_eq!(c.insert(100, 100), Some((0, 0)));
    }

    #[test]
    fn the_hit_count_stops_at_three() {
        // Two bits of count beside the queue bit: a fourth hit must not
        // carry into it.
        let mut c = S3Fifo::new(10);
        wonders(&mut c, 0, 10);
        for _ in 0..4 {
            c.get(0);
        }
        // Hit, so 0 moves on to the main queue and 1 leaves instead.
        assert_eq!(c.insert(10, 10), Some((1, 1)));
        c.remove(0);
        assert_eq!(c.len(), 9);
        assert!(!c.entries().contains(&(0, 0)));
    }

    #[test]
    fn a_stale_ghost_entry_does_not_forget_a_newer_one() {
        let mut c = S3Fifo::new(10);
        wonders(&mut c, 0, 10);
        wonders(&mut c, 10, 20); // ghosts 11..=19
        c.insert(19, 19); // a ghost hit: into the main queue
        c.remove(19); // then gone (a write of unknown outcome)
        c.insert(19, 19); // not a ghost now: into the small queue
        for i in 21..30 {
            c.get(i); // hit in the small queue: they move on to the main one
        }
        // 19, not hit, leaves the small queue: a ghost again, behind the
        // stale entry of its first time.
        assert_eq!(wonders(&mut c, 40, 1), vec![19]);
        // Eight more evictions push the queue's front past that stale
        // entry: it must not take the newer ghost with it.
        assert_eq!(wonders(&mut c, 41, 8), (40..48).collect::<Vec<_>>());
        c.insert(19, 19);
        assert_eq!(
            c.entries().last(),
            Some(&(19, 19)),
            "19 back in the main queue: {:?}",
            c.entries()
        );
    }

    #[test]
    fn a_returning_index_finds_its_ghost_even_when_the_eviction_drops_the_oldest() {
        let mut c = S3Fifo::new(3);
        for k in [1, 2, 3] {
            c.insert(k, k);
        }
        c.get(1);
        c.insert(4, 4);
        c.insert(5, 5); // ghosts now 2 and 3 (the limit: 2)
        assert!(c.ghosts.contains_key(&2));
        c.insert(2, 2); // its eviction remembers another: 2 must not be lost
        assert_ne!(c.slots.get(c.map[&2]).bits & IN_MAIN, 0, "2 went straight to main");
    }

    #[test]
    fn one_hit_wonders_leave_by_the_small_queue_and_ghosts_come_back_to_main() {
        let mut c = S3Fifo::new(10); // small queue target: 1 entry
        for i in 0..10 {
            c.insert(i, i);
        }
        let in_main = |c: &S3Fifo, i: i64| c.slots.get(c.map[&i]).bits & IN_MAIN != 0;
        // 0 is hit while in the small queue: at its end it moves to the
        // main queue, and 1 (never hit) leaves, remembered as a ghost.
        c.get(0);
        assert_eq!(c.insert(10, 10), Some((1, 1)));
        assert!(in_main(&c, 0), "0 promoted");
        assert!(c.ghosts.contains_key(&1));
        // 1 comes back: a ghost hit, straight into the main queue; the
        // small queue's oldest (2) makes room.
        assert_eq!(c.insert(1, 1), Some((2, 2)));
        assert!(in_main(&c, 1));
        assert!(!c.ghosts.contains_key(&1));
        assert_eq!(c.len(), 10);
        // The main queue is a CLOCK: 0, hit again, survives a pass.
        c.get(0);
        for i in 20..40 {
            c.insert(i, i);
        }
        assert!(c.len() <= 10);
    }
}
