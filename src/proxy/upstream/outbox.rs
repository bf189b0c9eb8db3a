//! What happened upstream, kept in order for the node to take: the
//! upstream's calls record events here and return; the node then takes
//! them one by one ([`Outbox::next`]) and applies each, so the reply path
//! reads top to bottom in the node instead of bouncing through callbacks.
//!
//! Replies are parsed into a pool of [`Reply`] values reused across passes
//! (no allocation per reply once warm); an event names its reply by slot,
//! and the slots are reused once every event of a batch has been taken.
//! Pure: no sockets.

use crate::proto::Reply;
use crate::proxy::pending::UpReq;
use std::collections::VecDeque;

/// Events held at most before the upstream stops reading until the node
/// has taken them (a server that streams invalidations cannot make the
/// proxy hold an unbounded list). Replies alone never reach it in one
/// pass beyond the requests in flight.
pub const OUTBOX_MAX: usize = 1024;
/// A pooled reply whose lists hold more values than this is dropped when
/// its slot is reused, not kept: one huge fetch does not pin its memory.
const KEEP_VALUES: usize = 4096;

/// What happened upstream, in order, as the node sees it.
#[derive(Debug)]
pub enum UpEvent<'a> {
    /// A (re)connect completed: the server may be a fresh one.
    Connected,
    /// The connection is gone (its requests in flight fail next): what the
    /// server tracked for it is gone with it.
    Disconnected,
    /// The server answered this request.
    Answered(UpReq, &'a Reply),
    /// The server says entries must go (`OP=INV`): its IND, or every entry
    /// without one. The ACK is sent once the read pass is over.
    Invalidated(&'a Reply),
    /// This request got no answer: the connection failed or timed out with
    /// it in flight (a write may or may not have been applied).
    Failed(UpReq, u16, &'a str),
    /// The connection being reset may still be read by the server (a
    /// timeout, a desync): the writes about to fail may yet be applied, at
    /// any time until the server has finished with it ([`UpEvent::Settled`]).
    Draining,
    /// The server has finished with the drained connection: no write sent
    /// on it can take effect any more.
    Settled,
    /// A connection that needed draining could not be (one is already
    /// draining): its writes may take effect at any time, for good.
    DrainLost,
}

/// An event that names no reply and no request, as recorded.
#[derive(Debug, Clone, Copy)]
pub enum Plain {
    /// See [`UpEvent::Connected`].
    Connected,
    /// See [`UpEvent::Disconnected`].
    Disconnected,
    /// See [`UpEvent::Draining`].
    Draining,
    /// See [`UpEvent::Settled`].
    Settled,
    /// See [`UpEvent::DrainLost`].
    DrainLost,
}

/// An event as kept: replies and reasons by slot.
#[derive(Debug)]
enum Kept {
    Connected,
    Disconnected,
    Answered(UpReq, usize),
    Invalidated(usize),
    Failed(UpReq, u16, usize),
    Draining,
    Settled,
    DrainLost,
}

/// Events not taken yet, and the replies and reasons they name.
#[derive(Debug, Default)]
pub struct Outbox {
    events: VecDeque<Kept>,
    replies: Vec<Reply>,
    /// Reply slots in use by events not taken yet (`replies[..used]`).
    used: usize,
    reasons: Vec<String>,
}

impl Outbox {
    /// Nothing waits to be taken.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// At its bound: the upstream stops reading until the node takes.
    pub fn is_full(&self) -> bool {
        self.events.len() >= OUTBOX_MAX
    }

    /// Starts a new batch when the last one is all taken: reply slots and
    /// reasons are free again.
    fn reuse(&mut self) {
        if !self.events.is_empty() {
            return;
        }
        for r in &mut self.replies[..self.used] {
            let values = r.ind.capacity() + r.data.capacity() + r.nocache.capacity();
            if values > KEEP_VALUES || r.msg.capacity() > 8 * KEEP_VALUES {
                *r = Reply::default();
            }
        }
        self.used = 0;
        self.reasons.clear();
    }

    /// The reply slot the next reply is parsed into; it is kept only if an
    /// event then names it ([`Outbox::answered`], [`Outbox::invalidated`]).
    pub fn slot(&mut self) -> &mut Reply {
        self.reuse();
        if self.used == self.replies.len() {
            self.replies.push(Reply::default());
        }
        &mut self.replies[self.used]
    }

    /// Takes the reply in [`Outbox::slot`] as `req`'s answer.
    pub fn answered(&mut self, req: UpReq) {
        let slot = self.keep_slot();
        self.events.push_back(Kept::Answered(req, slot));
    }

    /// Takes the reply in [`Outbox::slot`] as an invalidation.
    pub fn invalidated(&mut self) {
        let slot = self.keep_slot();
        self.events.push_back(Kept::Invalidated(slot));
    }

    fn keep_slot(&mut self) -> usize {
        debug_assert!(self.used < self.replies.len(), "slot() first");
        self.used += 1;
        self.used - 1
    }

    /// Records that `req` failed with `code`, for the reason `why`. The
    /// reason is kept once per call of [`Outbox::reason`].
    pub fn failed(&mut self, req: UpReq, code: u16, why: usize) {
        self.events.push_back(Kept::Failed(req, code, why));
    }

    /// Keeps `why` for the failures that follow; returns its slot.
    pub fn reason(&mut self, why: &str) -> usize {
        self.reuse();
        self.reasons.push(why.to_string());
        self.reasons.len() - 1
    }

    /// Records an event that names no reply and no request.
    pub fn push(&mut self, event: Plain) {
        self.reuse();
        let kept = match event {
            Plain::Connected => Kept::Connected,
            Plain::Disconnected => Kept::Disconnected,
            Plain::Draining => Kept::Draining,
            Plain::Settled => Kept::Settled,
            Plain::DrainLost => Kept::DrainLost,
        };
        self.events.push_back(kept);
    }

    /// The oldest event not taken yet.
    pub fn next(&mut self) -> Option<UpEvent<'_>> {
        Some(match self.events.pop_front()? {
            Kept::Connected => UpEvent::Connected,
            Kept::Disconnected => UpEvent::Disconnected,
            Kept::Answered(req, slot) => UpEvent::Answered(req, &self.replies[slot]),
            Kept::Invalidated(slot) => UpEvent::Invalidated(&self.replies[slot]),
            Kept::Failed(req, code, why) => UpEvent::Failed(req, code, &self.reasons[why]),
            Kept::Draining => UpEvent::Draining,
            Kept::Settled => UpEvent::Settled,
            Kept::DrainLost => UpEvent::DrainLost,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Op;
    use crate::proxy::pending::{UpKind, Waiter};
    use std::time::Instant;

    fn req(seq: u64) -> UpReq {
        UpReq {
            kind: UpKind::Fetch(vec![1]),
            seq,
            waiter: Waiter { key: 0, gen: 1, seq },
            op: Op::Get,
            queued: Instant::now(),
        }
    }

    fn answer(o: &mut Outbox, text: &str, seq: u64) {
        o.slot().parse(text.as_bytes()).unwrap();
        o.answered(req(seq));
    }

    #[test]
    fn events_come_out_in_order_with_their_replies() {
        let mut o = Outbox::default();
        o.push(Plain::Connected);
        answer(&mut o, "OP=GET;IND=1;DATA=10;CODE=200", 1);
        o.slot().parse(b"OP=INV;SEQ=1;IND=1").unwrap();
        o.invalidated();
        answer(&mut o, "OP=GET;IND=1;DATA=11;CODE=200", 2);
        let why = o.reason("upstream timeout");
        o.failed(req(3), 504, why);
        o.push(Plain::Settled);
        assert!(!o.is_empty());
        assert!(matches!(o.next(), Some(UpEvent::Connected)));
        assert!(matches!(o.next(), Some(UpEvent::Answered(r, rep)) if r.seq == 1 && rep.data == [10]));
        assert!(matches!(o.next(), Some(UpEvent::Invalidated(rep)) if rep.seq == Some(1)));
        assert!(matches!(o.next(), Some(UpEvent::Answered(r, rep)) if r.seq == 2 && rep.data == [11]));
        assert!(matches!(o.next(), Some(UpEvent::Failed(r, 504, "upstream timeout")) if r.seq == 3));
        assert!(matches!(o.next(), Some(UpEvent::Settled)));
        assert!(o.next().is_none() && o.is_empty());
    }

    #[test]
    fn a_slot_not_taken_is_parsed_over() {
        let mut o = Outbox::default();
        o.slot().parse(b"OP=GET;IND=1;DATA=1;CODE=200").unwrap();
        // Not kept (the reply did not pair): the next reply reuses it.
        answer(&mut o, "OP=GET;IND=2;DATA=2;CODE=200", 7);
        assert_eq!(o.replies.len(), 1);
        assert!(matches!(o.next(), Some(UpEvent::Answered(_, rep)) if rep.data == [2]));
    }

    #[test]
    fn slots_are_reused_once_a_batch_is_taken() {
        let mut o = Outbox::default();
        for round in 0..3 {
            for k in 0..5 {
                answer(&mut o, &format!("OP=GET;IND=1;DATA={k};CODE=200"), k);
            }
            let mut seen = Vec::new();
            while let Some(e) = o.next() {
                if let UpEvent::Answered(_, rep) = e {
                    seen.push(rep.data[0]);
                }
            }
            assert_eq!(seen, [0, 1, 2, 3, 4], "round {round}");
        }
        assert_eq!(o.replies.len(), 5, "the pool holds one batch");
        // While a batch is partly taken, new events take new slots.
        answer(&mut o, "OP=GET;IND=1;DATA=8;CODE=200", 8);
        answer(&mut o, "OP=GET;IND=1;DATA=9;CODE=200", 9);
        assert!(matches!(o.next(), Some(UpEvent::Answered(_, rep)) if rep.data == [8]));
        answer(&mut o, "OP=GET;IND=1;DATA=10;CODE=200", 10);
        assert!(matches!(o.next(), Some(UpEvent::Answered(_, rep)) if rep.data == [9]));
        assert!(matches!(o.next(), Some(UpEvent::Answered(_, rep)) if rep.data == [10]));
    }

    #[test]
    fn a_huge_reply_is_not_kept_in_the_pool() {
        let mut o = Outbox::default();
        let many: Vec<String> = (0..10_000).map(|i| i.to_string()).collect();
        let text = format!("OP=GET;IND={};DATA={};CODE=200", many.join(","), many.join(","));
        answer(&mut o, &text, 1);
        assert!(matches!(o.next(), Some(UpEvent::Answered(_, rep)) if rep.data.len() == 10_000));
        answer(&mut o, "OP=GET;IND=1;DATA=1;CODE=200", 2);
        assert!(o.replies[0].data.capacity() < 10_000, "the big lists were let go");
        // One big list is enough (an error reply naming many indices).
        let text = format!("OP=GET;IND={};CODE=400;MSG=no", many.join(","));
        o.next();
        answer(&mut o, &text, 3);
        o.next();
        answer(&mut o, "OP=GET;IND=1;DATA=1;CODE=200", 4);
        assert!(o.replies[0].ind.capacity() < 10_000, "the big list was let go");
    }

    #[test]
    fn the_bound_is_reported() {
        let mut o = Outbox::default();
        for k in 0..OUTBOX_MAX {
            assert!(!o.is_full(), "at {k}");
            o.push(Plain::Settled);
        }
        assert!(o.is_full());
        o.next();
        assert!(!o.is_full());
    }
}
