//! What a connection sent behind its parked write, held as the bytes it
//! arrived as (docs/coherence.md, "The rule, server side"): requests to
//! run after the write, in order, and replies decided already (an ACK's,
//! an error's) that must leave in their turn.
//!
//! Kept as bytes, not parsed, in chunks of 64 KiB that are never
//! reallocated (an entry may span several): what it holds is then what it
//! counts — the chunks' allocated bytes — so the budget ([`BACKLOG_MAX_BYTES`]) bounds the memory a
//! peer can make the server hold this way (a buffer that doubled when it
//! grew would hold up to twice its budget). A request is parsed again when
//! its turn comes (it parsed once already, so it parses the same).
//!
//! ```text
//!   chunks: [R len body | A len re][ply | R len body | ...]   R: a request,
//!            ^ head                                              A: an answer
//! ```

use std::collections::VecDeque;

/// Bytes one connection's queue may allocate; past it the connection is
/// not read until the write is applied (backpressure). A proxy keeps at
/// most [`crate::proxy::upstream::MAX_INFLIGHT_BYTES`] of requests in
/// flight, under half of this even for its shortest requests, so its
/// confirmations behind a parked write are always read.
pub const BACKLOG_MAX_BYTES: usize = 4 << 20;
/// Bytes the queues of every connection that holds no lease may allocate
/// together; past it, each of them with a queue stops being read too (a
/// proxy's own queue is not counted: its confirmations must be read).
pub const UNTRUSTED_BACKLOGS_MAX_BYTES: usize = 64 << 20;

/// The size of every chunk: an entry may span several, so none is wasted
/// but the last one's tail.
pub const CHUNK: usize = 64 << 10;

// The budgets' promises, checked when the crate compiles: a proxy's
// requests in flight, stored here at their worst (the shortest request,
// 13 bytes on the wire, takes 12 and a 9-byte header), fit in one
// connection's budget, so its ACKs are read; clients without a lease share
// room for many whole budgets, and no more than docs/architecture.md says.
const _: () = assert!(crate::proxy::upstream::MAX_INFLIGHT_BYTES / 13 * 21 + CHUNK < BACKLOG_MAX_BYTES);
const _: () = assert!(UNTRUSTED_BACKLOGS_MAX_BYTES >= 16 * BACKLOG_MAX_BYTES);
const _: () = assert!(UNTRUSTED_BACKLOGS_MAX_BYTES <= 64 << 20);

/// An entry's header: its kind and its length (8 bytes: no message is too
/// long for it, whatever `--max-message-bytes` allows).
const HEADER: usize = 9;

/// One entry, taken out in turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// A request body to run now.
    Request,
    /// A reply decided already: write it as it is.
    Reply,
}

/// The queue of one connection.
#[derive(Debug, Default)]
pub struct Backlog {
    chunks: VecDeque<Vec<u8>>,
    /// Where the oldest entry starts in the first chunk.
    head: usize,
    /// Bytes the chunks have allocated (what the budget counts).
    allocated: usize,
    entries: usize,
}

impl Backlog {
    /// Nothing held.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Bytes allocated for it now.
    pub fn allocated(&self) -> usize {
        self.allocated
    }

    /// Past the budget: the connection is not read until it shrinks.
    pub fn full(&self) -> bool {
        self.allocated >= BACKLOG_MAX_BYTES
    }

    /// Queues a request body or a reply.
    pub fn push(&mut self, kind: Entry, body: &[u8]) {
        let tag = match kind {
            Entry::Request => b'R',
            Entry::Reply => b'A',
        };
        self.append(&[tag]);
        self.append(&(body.len() as u64).to_le_bytes());
        self.append(body);
        self.entries += 1;
    }

    /// Appends bytes, in new chunks as the last one fills.
    fn append(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.chunks.back().is_none_or(|c| c.len() == CHUNK) {
                self.chunks.push_back(Vec::with_capacity(CHUNK));
                self.allocated += CHUNK;
            }
            let Some(last) = self.chunks.back_mut() else { return };
            let n = bytes.len().min(CHUNK - last.len());
            last.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
        }
    }

    /// Takes `n` bytes from the front into `out`, giving each chunk back
    /// once it is read through.
    fn take(&mut self, mut n: usize, out: &mut Vec<u8>) {
        while n > 0 {
            let Some(first) = self.chunks.front() else { return };
            let k = n.min(first.len() - self.head);
            out.extend_from_slice(&first[self.head..self.head + k]);
            self.head += k;
            n -= k;
            if self.head == CHUNK || (self.head == first.len() && self.chunks.len() == 1) {
                self.chunks.pop_front();
                self.allocated -= CHUNK;
                self.head = 0;
            }
        }
    }

    /// Takes the oldest entry into `out` (replacing what it held).
    pub fn pop(&mut self, out: &mut Vec<u8>) -> Option<Entry> {
        if self.entries == 0 {
            return None;
        }
        out.clear();
        self.take(HEADER, out);
        let kind = if out[0] == b'R' { Entry::Request } else { Entry::Reply };
        let mut n = [0u8; 8];
        n.copy_from_slice(&out[1..HEADER]);
        let len = u64::from_le_bytes(n) as usize;
        out.clear();
        self.take(len, out);
        self.entries -= 1;
        Some(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_come_out_in_order() {
        let mut b = Backlog::default();
        assert!(b.is_empty() && !b.full());
        b.push(Entry::Request, b"OP=GET;IND=1");
        b.push(Entry::Reply, b"OP=ACK;SEQ=3;CODE=200");
        b.push(Entry::Request, b"");
        assert!(!b.is_empty());
        assert_eq!(b.allocated(), CHUNK);
        let mut out = Vec::new();
        assert_eq!(b.pop(&mut out), Some(Entry::Request));
        assert_eq!(out, b"OP=GET;IND=1");
        assert_eq!(b.pop(&mut out), Some(Entry::Reply));
        assert_eq!(out, b"OP=ACK;SEQ=3;CODE=200");
        assert_eq!(b.pop(&mut out), Some(Entry::Request));
        assert!(out.is_empty());
        assert!(b.is_empty());
        assert_eq!((b.pop(&mut out), b.allocated()), (None, 0), "given back");
    }

    #[test]
    fn the_budget_counts_what_is_allocated_and_entries_span_chunks() {
        let mut b = Backlog::default();
        // Big messages, as a hostile writer would send: 64 KB each.
        let body: Vec<u8> = (0..65_000u32).map(|i| (i % 251) as u8).collect();
        let mut n = 0;
        while !b.full() {
            b.push(Entry::Request, &body);
            n += 1;
        }
        // What is held is what is allocated, but the last chunk's tail.
        assert!(
            b.allocated() < BACKLOG_MAX_BYTES + CHUNK + HEADER + 65_000,
            "{}",
            b.allocated()
        );
        assert!(
            b.allocated() - n * (65_000 + HEADER) < CHUNK,
            "{n} held in {}",
            b.allocated()
        );
        let mut out = Vec::new();
        for _ in 0..n {
            assert_eq!(b.pop(&mut out), Some(Entry::Request));
            assert_eq!(out, body);
        }
        assert_eq!((b.allocated(), b.is_empty()), (0, true));
        // Pushed while being taken: the order holds across chunks.
        for k in 0..10u8 {
            b.push(Entry::Reply, &vec![k; 30_000]);
            if k % 3 == 0 {
                b.pop(&mut out);
            }
        }
        let mut left = Vec::new();
        while let Some(kind) = b.pop(&mut out) {
            assert_eq!(kind, Entry::Reply);
            assert!(out.iter().all(|&x| x == out[0]) && out.len() == 30_000);
            left.push(out[0]);
        }
        assert_eq!(left, [4, 5, 6, 7, 8, 9]);
        assert_eq!(b.allocated(), 0);
    }

    #[test]
    fn small_entries_fill_the_chunks() {
        let mut b = Backlog::default();
        for _ in 0..100_000 {
            b.push(Entry::Request, b"OP=GET;IND=1");
        }
        let held = 100_000 * (12 + HEADER);
        assert!(
            b.allocated() >= held && b.allocated() < held + CHUNK,
            "{}",
            b.allocated()
        );
        let mut out = Vec::new();
        let mut k = 0;
        while b.pop(&mut out).is_some() {
            assert_eq!(out, b"OP=GET;IND=1");
            k += 1;
        }
        assert_eq!((k, b.allocated()), (100_000, 0));
    }
}
