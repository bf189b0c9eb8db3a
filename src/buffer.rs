//! A growable byte buffer with a read cursor, used for every connection's
//! input (bytes read but not yet parsed) and output (replies encoded but not
//! yet written).
//!
//! The verbs follow the life of bytes in a nonblocking connection:
//! `space()` + `fill(n)` after a `read`, `data()` + `consume(n)` after parsing
//! or a `write`. Consuming only moves the cursor; the bytes are moved back to
//! the front (`shift`) lazily, when room is needed at the end, so a pipelined
//! batch costs one copy at most.
//!
//! An empty buffer may hold no allocation at all (`release`), which keeps an
//! idle connection small: a node with 10,000 idle connections holds 10,000
//! empty `Vec`s, not 10,000 read buffers.

/// Bytes in `buf[start..end]` are live; `buf[end..]` is free space.
#[derive(Debug, Default)]
pub struct Buffer {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Buffer {
    /// An empty buffer with no allocation.
    pub fn new() -> Self {
        Buffer::default()
    }

    /// An empty buffer with `cap` bytes allocated.
    pub fn with_capacity(cap: usize) -> Self {
        Buffer {
            buf: vec![0; cap],
            start: 0,
            end: 0,
        }
    }

    /// The live bytes.
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// The live bytes, writable (to patch bytes already appended).
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.end]
    }

    /// Number of live bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// True when no live bytes remain.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Bytes allocated.
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Free space at the end, at least `want` bytes long: shifts live bytes
    /// to the front, and grows the allocation when shifting is not enough.
    #[inline]
    pub fn space(&mut self, want: usize) -> &mut [u8] {
        if self.buf.len() - self.end < want {
            self.make_room(want);
        }
        &mut self.buf[self.end..]
    }

    /// The slow side of [`Buffer::space`], kept out of line so that the
    /// encoders' every append inlines only the check.
    #[cold]
    #[inline(never)]
    fn make_room(&mut self, want: usize) {
        self.shift();
        if self.buf.len() - self.end < want {
            let new_len = (self.end + want).max(self.buf.len() * 2);
            self.buf.resize(new_len, 0);
        }
    }

    /// Marks `n` bytes of `space()` as live (after a read into it).
    #[inline]
    pub fn fill(&mut self, n: usize) {
        debug_assert!(self.end + n <= self.buf.len());
        self.end += n;
    }

    /// Drops `n` live bytes from the front (after parsing or writing them).
    #[inline]
    pub fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.len());
        self.start += n;
        if self.start == self.end {
            // Empty: rewind for free instead of shifting later.
            self.start = 0;
            self.end = 0;
        }
    }

    /// Keeps only the first `len` live bytes.
    pub fn truncate(&mut self, len: usize) {
        self.end = self.start + len.min(self.len());
    }

    /// Drops every live byte.
    pub fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// Moves the live bytes to the front of the allocation.
    pub fn shift(&mut self) {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }

    /// Appends bytes, growing as needed.
    #[inline]
    pub fn extend(&mut self, bytes: &[u8]) {
        let n = bytes.len();
        self.space(n)[..n].copy_from_slice(bytes);
        self.end += n;
    }

    /// Appends one byte.
    #[inline]
    pub fn push(&mut self, b: u8) {
        self.space(1)[0] = b;
        self.end += 1;
    }

    /// Frees the allocation if the buffer is empty and holds more than
    /// `keep` bytes; returns true if it did.
    pub fn release(&mut self, keep: usize) -> bool {
        if self.is_empty() && self.buf.len() > keep {
            self.buf = Vec::new();
            self.start = 0;
            self.end = 0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_consume_and_shift() {
        let mut b = Buffer::new();
        assert_eq!(b.capacity(), 0);
        b.space(4)[..4].copy_from_slice(b"abcd");
        b.fill(4);
        assert_eq!(b.data(), b"abcd");
        b.consume(1);
        assert_eq!(b.data(), b"bcd");
        b.extend(b"efgh");
        assert_eq!(b.data(), b"bcdefgh");
        b.consume(7);
        assert!(b.is_empty());
        assert!(b.release(0));
        assert_eq!(b.capacity(), 0);
    }

    #[test]
    fn space_grows_and_keeps_bytes() {
        let mut b = Buffer::with_capacity(2);
        b.extend(b"xy");
        b.consume(1);
        let s = b.space(100);
        assert!(s.len() >= 100);
        assert_eq!(b.data(), b"y");
        b.push(b'z');
        assert_eq!(b.data(), b"yz");
        assert!(!b.release(0), "a non-empty buffer is never released");
    }

    #[test]
    fn with_capacity_allocates_that_much_and_holds_nothing() {
        let b = Buffer::with_capacity(64);
        assert_eq!(b.capacity(), 64);
        assert!(b.is_empty());
    }

    #[test]
    fn space_that_fits_moves_nothing() {
        // Consumed bytes are not shifted out while the free space at the
        // end is enough: the live bytes stay where they are.
        let mut b = Buffer::with_capacity(8);
        b.extend(b"abcd");
        b.consume(2);
        let at = b.data().as_ptr();
        assert_eq!(b.space(4).len(), 4, "exactly the free space at the end");
        assert_eq!(b.data().as_ptr(), at, "no shift when the end has room");
        assert_eq!(b.capacity(), 8);
    }

    #[test]
    fn space_reuses_consumed_room_before_growing() {
        let mut b = Buffer::with_capacity(8);
        b.extend(b"abcdefgh");
        b.consume(4);
        // 4 bytes consumed at the front, none free at the end: shifting
        // makes exactly the 4 asked for, without growing.
        assert_eq!(b.space(4).len(), 4);
        assert_eq!(b.capacity(), 8, "shifting was enough");
        assert_eq!(b.data(), b"efgh");
        b.fill(4);
        assert_eq!(b.len(), 8);
    }

    #[test]
    fn growth_at_least_doubles() {
        // Amortized: a buffer one byte short grows to twice its size, so
        // appending n bytes one at a time reallocates O(log n) times.
        let mut b = Buffer::with_capacity(100);
        b.extend(&[7; 100]);
        b.push(8);
        assert_eq!(b.capacity(), 200);
        assert_eq!(b.len(), 101);
        // A big request gets what it asks for.
        let mut c = Buffer::with_capacity(10);
        c.extend(b"0123456789");
        assert!(c.space(1000).len() >= 1000);
        assert_eq!(c.capacity(), 1010);
    }

    #[test]
    fn truncate_keeps_the_first_live_bytes() {
        let mut b = Buffer::new();
        b.extend(b"xxhello world");
        b.consume(2);
        b.truncate(5);
        assert_eq!(b.data(), b"hello");
        b.truncate(50);
        assert_eq!(b.data(), b"hello", "truncating past the end keeps all");
    }

    #[test]
    fn shift_moves_live_bytes_to_the_front() {
        let mut b = Buffer::with_capacity(8);
        b.extend(b"abcdef");
        b.consume(4);
        b.shift();
        assert_eq!(b.data(), b"ef");
        // Now the end has 6 free bytes: no shift, no growth needed.
        assert_eq!(b.space(6).len(), 6);
        assert_eq!(b.capacity(), 8);
    }

    #[test]
    fn release_keeps_an_allocation_of_exactly_keep_bytes() {
        let mut b = Buffer::with_capacity(16);
        assert!(!b.release(16), "at the limit: kept");
        assert_eq!(b.capacity(), 16);
        assert!(b.release(15), "over the limit: freed");
        assert_eq!(b.capacity(), 0);
    }
}
