//! A doubly linked list of cache entries threaded through one `Vec` of
//! slots (links are slot numbers, not pointers), with a free list: the
//! queue of LRU, SIEVE and S3-FIFO. Every operation is O(1), and once the
//! cache is full nothing is allocated: a slot freed by an eviction is the
//! one the next insertion takes.

use super::IndexMap;

/// No slot.
pub const NIL: u32 = u32::MAX;

/// One entry: its index, value, a few bits for the policy, its links.
#[derive(Debug, Clone, Copy)]
pub struct Node {
    /// The table index held.
    pub index: i64,
    /// Its value.
    pub value: i64,
    /// The policy's bits (visited, frequency, which queue).
    pub bits: u8,
    /// Toward the head (newer).
    prev: u32,
    /// Toward the tail (older).
    next: u32,
}

/// Slots and several lists through them (LRU and SIEVE use one, S3-FIFO
/// two): each list is its (head, tail, len).
#[derive(Debug, Default)]
pub struct Slots {
    nodes: Vec<Node>,
    free: Vec<u32>,
}

/// One list's ends and length.
#[derive(Debug, Clone, Copy)]
pub struct List {
    /// Newest.
    pub head: u32,
    /// Oldest.
    pub tail: u32,
    /// Entries.
    pub len: usize,
}

impl Default for List {
    fn default() -> Self {
        List {
            head: NIL,
            tail: NIL,
            len: 0,
        }
    }
}

impl Slots {
    /// Room for `n` entries.
    pub fn with_capacity(n: usize) -> Slots {
        Slots {
            nodes: Vec::with_capacity(n.min(1 << 16)),
            free: Vec::new(),
        }
    }

    /// The entry in slot `s`.
    pub fn get(&self, s: u32) -> &Node {
        &self.nodes[s as usize]
    }

    /// The entry in slot `s`, to change.
    pub fn get_mut(&mut self, s: u32) -> &mut Node {
        &mut self.nodes[s as usize]
    }

    /// The next slot toward the head.
    pub fn newer(&self, s: u32) -> u32 {
        self.nodes[s as usize].prev
    }

    /// Sets the value held for `index` (found through `map`), if held:
    /// a write-through, or a re-insertion, which leaves the order alone.
    pub fn set_value(&mut self, map: &IndexMap<u32>, index: i64, value: i64) -> bool {
        match map.get(&index) {
            Some(&s) => {
                self.nodes[s as usize].value = value;
                true
            }
            None => false,
        }
    }

    /// A new entry at the head of `list`; returns its slot.
    pub fn push_head(&mut self, list: &mut List, index: i64, value: i64, bits: u8) -> u32 {
        let node = Node {
            index,
            value,
            bits,
            prev: NIL,
            next: list.head,
        };
        let s = match self.free.pop() {
            Some(s) => {
                self.nodes[s as usize] = node;
                s
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        };
        self.link_head(list, s);
        s
    }

    fn link_head(&mut self, list: &mut List, s: u32) {
        let old = list.head;
        self.nodes[s as usize].prev = NIL;
        self.nodes[s as usize].next = old;
        if old != NIL {
            self.nodes[old as usize].prev = s;
        } else {
            list.tail = s;
        }
        list.head = s;
        list.len += 1;
    }

    /// Takes slot `s` out of `list` (the slot stays allocated).
    pub fn unlink(&mut self, list: &mut List, s: u32) {
        let Node { prev, next, .. } = self.nodes[s as usize];
        if prev != NIL {
            self.nodes[prev as usize].next = next;
        } else {
            list.head = next;
        }
        if next != NIL {
            self.nodes[next as usize].prev = prev;
        } else {
            list.tail = prev;
        }
        list.len -= 1;
    }

    /// Moves slot `s` from `from` to the head of `to` (the same list: to
    /// its head).
    pub fn move_to_head(&mut self, from: &mut List, to: &mut List, s: u32) {
        self.unlink(from, s);
        self.link_head(to, s);
    }

    /// Moves slot `s` to the head of its own `list`.
    pub fn refresh(&mut self, list: &mut List, s: u32) {
        if list.head != s {
            self.unlink(list, s);
            self.link_head(list, s);
        }
    }

    /// Takes slot `s` out of `list` and frees it; returns its entry.
    pub fn remove(&mut self, list: &mut List, s: u32) -> Node {
        self.unlink(list, s);
        self.free.push(s);
        self.nodes[s as usize]
    }

    /// The entries of `list`, tail (oldest) first.
    pub fn oldest_first(&self, list: &List) -> Vec<(i64, i64)> {
        let mut out = Vec::with_capacity(list.len);
        let mut s = list.tail;
        while s != NIL {
            let n = &self.nodes[s as usize];
            out.push((n.index, n.value));
            s = n.prev;
        }
        out
    }

    /// Forgets every entry.
    pub fn clear(&mut self) {
        self.nodes.clear();
        self.free.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clear_forgets_every_slot_and_pushes_start_again_at_zero() {
        let mut slots = Slots::with_capacity(4);
        let mut list = List::default();
        for i in 0..3 {
            assert_eq!(slots.push_head(&mut list, i, i * 10, 0), i as u32);
        }
        let s = slots.remove(&mut list, 1);
        assert_eq!(s.index, 1);
        slots.clear();
        let mut list = List::default();
        // No slot survives: not the three used, not the one freed.
        assert_eq!(slots.push_head(&mut list, 7, 70, 0), 0);
        assert_eq!(slots.push_head(&mut list, 8, 80, 0), 1);
        assert_eq!(slots.oldest_first(&list), vec![(7, 70), (8, 80)]);
    }
}
