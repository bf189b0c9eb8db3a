//! The proxy's two queues, as plain data (no sockets, no clock):
//!
//! - [`Slots`]: per client, one slot per request still unanswered, in
//!   arrival order. Replies leave from the head only, so a client's replies
//!   keep its request order whatever order the answers come in.
//! - [`UpReq`]: one request in flight upstream. The upstream connection
//!   keeps them in a FIFO; the server answers in order, so each reply
//!   belongs to the head (`upstream/read.rs` checks that it does).
//!
//! A request names its client by [`Waiter`] `(slab key, generation, slot
//! sequence)`, never by reference: the client may be gone (or its key
//! reused) when the reply comes back, and then the reply is dropped.

use crate::buffer::Buffer;
use crate::proto::Op;
use std::collections::VecDeque;
use std::time::Instant;

/// One unanswered request of a client.
#[derive(Debug)]
enum Slot {
    /// Its reply is decided and encoded (terminator included), waiting for
    /// the replies before it.
    Ready(Vec<u8>),
    /// Waiting for the upstream; its reply is expected to take about this
    /// many bytes (counted from the request's shape).
    Waiting(usize),
}

/// A client's queue of unanswered requests (the proxy's per-connection
/// state).
#[derive(Debug, Default)]
pub struct Slots {
    slots: VecDeque<Slot>,
    /// Sequence number of `slots[0]`.
    head_seq: u64,
    /// How many slots are `Waiting`: requests of this client that still
    /// have to take effect upstream.
    waiting: usize,
    /// The upstream sequence number of this client's latest request sent.
    last_sent: u64,
    /// Bytes of replies owed and not yet in the output: held in `Ready`
    /// slots, or expected for `Waiting` ones. Backpressure counts them, so
    /// a client that does not read cannot make the proxy hold more than its
    /// limit (plus one reply) by asking for big replies.
    owed: usize,
}

impl Slots {
    /// True when every request of the client has been answered.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Unanswered requests.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Requests of this client still to take effect upstream (what the
    /// tests look at; the node asks [`Slots::behind`]).
    #[cfg(test)]
    pub fn waiting(&self) -> usize {
        self.waiting
    }

    /// The request in slot just reserved went upstream as request `seq`.
    pub fn sent(&mut self, seq: u64) {
        self.last_sent = seq;
    }

    /// The upstream sequence number of the client's latest request still in
    /// flight, if any: a request arriving now must take effect after it.
    /// (The upstream answers in order, so while any of the client's
    /// requests is in flight, its latest is.)
    pub fn behind(&self) -> Option<u64> {
        (self.waiting > 0).then_some(self.last_sent)
    }

    /// Bytes of replies owed to this client and not yet in its output.
    pub fn owed(&self) -> usize {
        self.owed
    }

    /// Reserves the next slot for a request that goes upstream, whose reply
    /// should take about `expect` bytes; returns its sequence number.
    pub fn reserve(&mut self, expect: usize) -> u64 {
        let seq = self.head_seq + self.slots.len() as u64;
        self.slots.push_back(Slot::Waiting(expect));
        self.waiting += 1;
        self.owed += expect;
        seq
    }

    /// A reply decided now: encoded by `encode` straight into `out` when no
    /// earlier reply is owed (no copy, no allocation), else kept until its
    /// turn. `end` is the connection's terminator.
    pub fn answer(&mut self, out: &mut Buffer, end: &[u8], encode: impl FnOnce(&mut Buffer)) {
        if self.slots.is_empty() {
            encode(out);
            out.extend(end);
        } else {
            let mut b = Buffer::new();
            encode(&mut b);
            b.extend(end);
            self.owed += b.len();
            self.slots.push_back(Slot::Ready(b.data().to_vec()));
        }
    }

    /// Fills waiting slot `seq` with `body` and moves every ready reply at
    /// the head into `out`. False if `seq` names no waiting slot (a reply
    /// that arrives twice is dropped, never misplaced).
    pub fn fill(&mut self, seq: u64, body: &[u8], end: &[u8], out: &mut Buffer) -> bool {
        let Some(idx) = seq.checked_sub(self.head_seq) else {
            return false;
        };
        let Some(slot) = self.slots.get_mut(idx as usize) else {
            return false;
        };
        let Slot::Waiting(expect) = *slot else {
            return false;
        };
        self.waiting -= 1;
        self.owed -= expect;
        if idx == 0 {
            // The head: straight out, then whatever was ready behind it.
            out.extend(body);
            out.extend(end);
            self.slots.pop_front();
            self.head_seq += 1;
        } else {
            let mut v = Vec::with_capacity(body.len() + end.len());
            v.extend_from_slice(body);
            v.extend_from_slice(end);
            self.owed += v.len();
            *slot = Slot::Ready(v);
        }
        while let Some(Slot::Ready(_)) = self.slots.front() {
            if let Some(Slot::Ready(b)) = self.slots.pop_front() {
                self.owed -= b.len();
                out.extend(&b);
            }
            self.head_seq += 1;
        }
        true
    }
}

/// Where an upstream reply's result goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waiter {
    /// The client's slab key.
    pub key: usize,
    /// The client connection's generation (a reused key has another).
    pub gen: u64,
    /// The slot in the client's queue.
    pub seq: u64,
}

impl Waiter {
    /// Nobody: the waiter of the proxy's own requests (keepalive, LEASE,
    /// ACK), whose answers go to no client. No slab key is `usize::MAX`,
    /// so a reply sent here by mistake would find no connection.
    pub const NOBODY: Waiter = Waiter {
        key: usize::MAX,
        gen: 0,
        seq: 0,
    };
}

/// What is sent upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpKind {
    /// A GET of the indices a client's GET or ADD needs from the server.
    Fetch(Vec<i64>),
    /// A client's PUT, forwarded (write-through).
    Put(Vec<i64>, Vec<i64>),
    /// A client's CLR, forwarded.
    Clr,
    /// The proxy's own `OP=GET;IND=0`, sent when the connection has been
    /// quiet long enough that the server might close it as idle. Its
    /// answer goes to no client and leaves the cache alone.
    Ping,
    /// The proxy's own `OP=LEASE`: asks a lease of a coherent server (the
    /// first request on each connection), and renews it when the
    /// connection is quiet (docs/coherence.md).
    Lease,
    /// The proxy's own `OP=ACK;SEQ=n`: invalidations up to `n` applied.
    Ack(u64),
    /// The proxy's own resuming `OP=LEASE;ID=..;SEQ=..;SUM=..;IND=..`:
    /// after a reconnect to the same history, it asks to keep these cached
    /// indices (docs/durability.md).
    Resume {
        /// The history it last heard.
        history: crate::proto::History,
        /// The indices it holds.
        ind: Vec<i64>,
    },
}

impl UpKind {
    /// A fetch's indices (none for anything else).
    pub fn indices(&self) -> &[i64] {
        match self {
            UpKind::Fetch(ind) => ind,
            _ => &[],
        }
    }

    /// How many bytes it takes on the wire at most (an index or a value is
    /// at most 20 characters and a comma; a LEASE may carry the secret):
    /// what [`crate::proxy::upstream::MAX_INFLIGHT_BYTES`] counts.
    pub fn wire_bytes(&self) -> usize {
        let key = 6 + crate::peer::MAX_SECRET_BYTES;
        match self {
            UpKind::Fetch(ind) => 16 + 21 * ind.len(),
            UpKind::Put(ind, data) => 24 + 21 * (ind.len() + data.len()),
            UpKind::Clr => 8,
            UpKind::Ping => 16,
            UpKind::Ack(_) => 32,
            UpKind::Lease => 16 + key,
            UpKind::Resume { ind, .. } => 88 + 21 * ind.len() + key,
        }
    }

    /// The operation on the wire.
    pub fn op(&self) -> Op {
        match self {
            UpKind::Fetch(_) | UpKind::Ping => Op::Get,
            UpKind::Put(..) => Op::Put,
            UpKind::Clr => Op::Clr,
            UpKind::Lease | UpKind::Resume { .. } => Op::Lease,
            UpKind::Ack(_) => Op::Ack,
        }
    }

    /// For logs and traces.
    pub fn name(&self) -> &'static str {
        match self {
            UpKind::Fetch(_) => "GET (fetch)",
            UpKind::Put(..) => "PUT (write-through)",
            UpKind::Clr => "CLR",
            UpKind::Ping => "GET (keepalive)",
            UpKind::Lease => "LEASE",
            UpKind::Resume { .. } => "LEASE (resume: keep the cache?)",
            UpKind::Ack(_) => "ACK (invalidations applied)",
        }
    }

    /// What the request writes at the server: the one place that says
    /// which kinds write (the write bookkeeping of decide.rs and reads/,
    /// and the cache's forgetting, all ask here).
    pub fn written(&self) -> Written<'_> {
        match self {
            UpKind::Put(ind, _) => Written::Indices(ind),
            UpKind::Clr => Written::All,
            UpKind::Fetch(_) | UpKind::Ping | UpKind::Lease | UpKind::Ack(_) | UpKind::Resume { .. } => {
                Written::Nothing
            }
        }
    }

    /// True for the proxy's own requests, whose answers go to no client.
    pub fn is_own(&self) -> bool {
        matches!(
            self,
            UpKind::Ping | UpKind::Lease | UpKind::Ack(_) | UpKind::Resume { .. }
        )
    }
}

/// What a request upstream writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written<'a> {
    /// These indices (a PUT).
    Indices(&'a [i64]),
    /// Every index (a CLR).
    All,
    /// Nothing (a read, or the proxy's own LEASE, ACK, keepalive).
    Nothing,
}

/// A request in flight upstream, with what its client's reply needs.
#[derive(Debug)]
pub struct UpReq {
    /// What was sent.
    pub kind: UpKind,
    /// Its upstream sequence number (requests are numbered as sent).
    pub seq: u64,
    /// Whose slot its reply fills.
    pub waiter: Waiter,
    /// The client's operation (GET or ADD for a fetch: the reads waiting
    /// on a fetch are kept by `reads/`).
    pub op: Op,
    /// When it was queued upstream (its timeout runs from here).
    pub queued: Instant,
}

impl UpReq {
    /// One of the proxy's own requests (keepalive, lease, ack).
    pub fn own(kind: UpKind, now: Instant) -> UpReq {
        UpReq {
            kind,
            seq: 0,
            waiter: Waiter::NOBODY,
            op: Op::Get,
            queued: now,
        }
    }
}

/// Replies made for clients' slots: their bodies back to back in one
/// buffer, each with the slot it fills. Emptied by the node after every
/// event, so it holds one event's replies at most.
#[derive(Debug, Default)]
pub struct Made {
    bodies: Buffer,
    list: Vec<(Waiter, usize, usize)>,
}

impl Made {
    /// Adds a reply for `waiter`'s slot, its body written by `encode`.
    pub fn push(&mut self, waiter: Waiter, encode: impl FnOnce(&mut Buffer)) {
        let start = self.bodies.len();
        encode(&mut self.bodies);
        self.list.push((waiter, start, self.bodies.len()));
    }

    /// The replies, in the order made.
    pub fn iter(&self) -> impl Iterator<Item = (Waiter, &[u8])> {
        let all = self.bodies.data();
        self.list.iter().map(move |&(w, a, b)| (w, &all[a..b]))
    }

    /// Empties it, keeping its room.
    pub fn clear(&mut self) {
        self.bodies.clear();
        self.list.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(b: &Buffer) -> &str {
        std::str::from_utf8(b.data()).unwrap()
    }

    #[test]
    fn a_hit_with_nothing_owed_goes_straight_out() {
        let mut s = Slots::default();
        let mut out = Buffer::new();
        s.answer(&mut out, b"\n", |b| b.extend(b"A"));
        assert_eq!(text(&out), "A\n");
        assert!(s.is_empty());
    }

    #[test]
    fn replies_leave_in_request_order_whatever_order_they_are_decided() {
        let mut s = Slots::default();
        let mut out = Buffer::new();
        let miss1 = s.reserve(10);
        s.answer(&mut out, b"\n", |b| b.extend(b"hit"));
        s.sent(7);
        let miss2 = s.reserve(10);
        s.sent(8);
        assert_eq!((s.len(), s.waiting(), s.behind()), (3, 2, Some(8)));
        assert_eq!(s.owed(), 10 + 4 + 10, "two expected replies and a ready one");
        assert!(out.is_empty(), "the hit waits behind the first miss");
        // The second miss is answered first: still nothing leaves.
        assert!(s.fill(miss2, b"m2", b"\n", &mut out));
        assert!(out.is_empty());
        assert_eq!(s.waiting(), 1);
        // The first: all three leave, in order.
        assert!(s.fill(miss1, b"m1", b"\n", &mut out));
        assert_eq!(text(&out), "m1\nhit\nm2\n");
        assert!(s.is_empty());
        assert_eq!(s.owed(), 0);
        assert_eq!((s.waiting(), s.behind()), (0, None));
    }

    #[test]
    fn a_slot_is_filled_once_and_unknown_sequences_are_ignored() {
        let mut s = Slots::default();
        let mut out = Buffer::new();
        let a = s.reserve(10);
        assert!(!s.fill(a + 1, b"x", b"\n", &mut out), "no such slot");
        assert!(s.fill(a, b"x", b"", &mut out));
        assert!(!s.fill(a, b"again", b"", &mut out), "already answered");
        assert_eq!(text(&out), "x");
        // A later request's sequence keeps counting from where it was.
        let b = s.reserve(10);
        assert_eq!(b, a + 1);
    }

    #[test]
    fn an_error_takes_its_turn_between_two_misses() {
        let mut s = Slots::default();
        let mut out = Buffer::new();
        let m7 = s.reserve(10);
        s.answer(&mut out, b"\n", |b| b.extend(b"413"));
        let m8 = s.reserve(10);
        assert!(s.fill(m8, b"8", b"\n", &mut out));
        assert!(s.fill(m7, b"7", b"\n", &mut out));
        assert_eq!(text(&out), "7\n413\n8\n");
    }
}
