//! What a connection sent behind its parked write, held as the bytes it
//! arrived as (docs/coherence.md, "The rule, server side"): requests to
//! run after the write, in order, and replies decided already (an ACK's,
//! an error's) that must leave in their turn.
//!
//! Kept as bytes, not parsed: what it holds is then exactly what it
//! counts, so the byte budget ([`BACKLOG_MAX_BYTES`]) bounds the memory a
//! peer can make the server hold this way. A request is parsed again when
//! its turn comes (it parsed once already, so it parses the same).
//!
//! ```text
//!   [R len body][A len reply][R len body] ...   R: a request, A: an answer
//! ```

use crate::buffer::Buffer;

/// Bytes held behind one connection's parked write at most; past it the
/// connection is not read until the write is applied (backpressure). A
/// proxy keeps at most [`crate::proxy::upstream::MAX_INFLIGHT_BYTES`] of
/// requests in flight, under half of this even for its shortest requests,
/// so its confirmations behind a parked write are always read.
pub const BACKLOG_MAX_BYTES: usize = 4 << 20;

/// An entry's header: its kind and its length.
const HEADER: usize = 5;

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
    bytes: Buffer,
    entries: usize,
}

impl Backlog {
    /// Nothing held.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Bytes held (what the budget counts).
    pub fn bytes(&self) -> usize {
        self.bytes.len()
    }

    /// Past the budget: the connection is not read until it shrinks.
    pub fn full(&self) -> bool {
        self.bytes() >= BACKLOG_MAX_BYTES
    }

    /// Queues a request body or a reply.
    pub fn push(&mut self, kind: Entry, body: &[u8]) {
        let tag = match kind {
            Entry::Request => b'R',
            Entry::Reply => b'A',
        };
        self.bytes.push(tag);
        // A message is far shorter than 4 GiB (--max-message-bytes).
        self.bytes.extend(&(body.len() as u32).to_le_bytes());
        self.bytes.extend(body);
        self.entries += 1;
    }

    /// Takes the oldest entry into `out` (replacing what it held).
    pub fn pop(&mut self, out: &mut Vec<u8>) -> Option<Entry> {
        let d = self.bytes.data();
        if d.len() < HEADER {
            return None;
        }
        let kind = if d[0] == b'R' { Entry::Request } else { Entry::Reply };
        let len = u32::from_le_bytes([d[1], d[2], d[3], d[4]]) as usize;
        out.clear();
        out.extend_from_slice(&d[HEADER..HEADER + len]);
        self.bytes.consume(HEADER + len);
        self.entries -= 1;
        if self.entries == 0 {
            // Give the room back: a long queue should not stay allocated.
            self.bytes.clear();
            self.bytes.release(4096);
        }
        Some(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_come_out_in_order_and_count_their_bytes() {
        let mut b = Backlog::default();
        assert!(b.is_empty() && !b.full());
        b.push(Entry::Request, b"OP=GET;IND=1");
        b.push(Entry::Reply, b"OP=ACK;SEQ=3;CODE=200");
        b.push(Entry::Request, b"");
        assert_eq!(b.bytes(), 3 * HEADER + 12 + 21);
        let mut out = Vec::new();
        assert_eq!(b.pop(&mut out), Some(Entry::Request));
        assert_eq!(out, b"OP=GET;IND=1");
        assert_eq!(b.pop(&mut out), Some(Entry::Reply));
        assert_eq!(out, b"OP=ACK;SEQ=3;CODE=200");
        assert_eq!(b.pop(&mut out), Some(Entry::Request));
        assert!(out.is_empty());
        assert!(b.is_empty());
        assert_eq!((b.pop(&mut out), b.bytes()), (None, 0));
    }

    #[test]
    fn the_budget_is_in_bytes() {
        let mut b = Backlog::default();
        let body = vec![b'x'; 1000];
        let mut n = 0;
        while !b.full() {
            b.push(Entry::Request, &body);
            n += 1;
        }
        assert_eq!(n, BACKLOG_MAX_BYTES.div_ceil(1000 + HEADER));
    }
}
