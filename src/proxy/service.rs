//! What the proxy does with a request: the GET/ADD and PUT/CLR handlers
//! (hit or miss from [`decide`], a slot in the client's queue, a request
//! upstream). What it does with an upstream answer,
//! [`ProxyCore::complete`], is in `answers.rs`; the state both work on is
//! in `core.rs`.
//!
//! Every reply to a client, errors included, goes through the client's
//! [`Slots`], so it leaves in its turn.

use crate::conn::Conn;
use crate::frontend::{FrontInfo, Service};
use crate::proto::encode_read_reply;
use crate::proto::{code, encode_error, Op, Problem};
use crate::proxy::core::ProxyCore;
use crate::proxy::decide::sum_if_add;
use crate::proxy::decide::{decide, Plan};
use crate::proxy::lease::Mode;
use crate::proxy::pending::{Slots, UpKind, UpReq, Waiter};
use crate::proxy::reads::Read;
use crate::proxy::upstream::Upstream;
use log::debug;
use std::time::Instant;

/// A client may have this many requests unanswered before the proxy stops
/// reading from it (backpressure).
const MAX_CLIENT_SLOTS: usize = 1024;

/// The proxy's [`Service`]: the core and the upstream it sends to.
pub struct ProxyService {
    /// Cache, handlers, counters.
    pub core: ProxyCore,
    /// Where misses and writes go.
    pub up: Upstream,
}

impl Service for ProxyService {
    type Ext = Slots;

    fn on_message(&mut self, conn: &mut Conn<Slots>, body: usize, front: &FrontInfo, now: Instant) {
        let ProxyService { core, up } = self;
        if let Err((op, p)) = core.req.parse(&conn.input.data()[..body]) {
            return self.reject(conn, op, &p);
        }
        let end = conn.framer.framing().terminator();
        match core.req.op {
            // Node introspection, decided at arrival.
            Op::Sts => conn.ext.answer(&mut conn.output, end, |out| {
                crate::proxy::stats::encode_stats(out, core, up, front)
            }),
            Op::Dmp => conn.ext.answer(&mut conn.output, end, |out| {
                crate::proxy::stats::encode_dump(out, &*core.cache)
            }),
            Op::Get | Op::Add => core.handle_read(up, conn, body, now),
            Op::Put | Op::Clr => core.handle_write(up, conn, body, now),
            // A proxy grants no leases (a chain of proxies is outside the
            // contract), and INV is the server's.
            op @ (Op::Lease | Op::Ack | Op::Inv) => self.reject(conn, Some(op), &Problem::NotServed(op)),
        }
    }

    fn batch_begins(&mut self) {
        self.core.batch_begins();
    }

    fn reject(&mut self, conn: &mut Conn<Slots>, op: Option<Op>, problem: &Problem) {
        self.core.counters.error(problem.code());
        let end = conn.framer.framing().terminator();
        conn.ext.answer(&mut conn.output, end, |out| {
            encode_error(out, op, problem.code(), problem)
        });
    }

    fn pending_note(&self) -> &'static str {
        "reply waits for the upstream or an earlier reply"
    }

    fn owes(&self, conn: &Conn<Slots>) -> bool {
        !conn.ext.is_empty()
    }

    fn congested(&self, conn: &Conn<Slots>) -> bool {
        conn.ext.len() >= MAX_CLIENT_SLOTS
    }

    fn owed_bytes(&self, conn: &Conn<Slots>) -> usize {
        conn.ext.owed()
    }

    fn on_close(&mut self, conn: &mut Conn<Slots>) {
        // Replies still in flight for it are applied to the cache and then
        // dropped when they arrive (the waiter's generation no longer
        // matches anything).
        if !conn.ext.is_empty() {
            debug!(
                "proxy tok={}: closed with {} replies owed",
                conn.token.0,
                conn.ext.len()
            );
        }
    }
}

impl ProxyCore {
    /// GET or ADD: decide now what comes from the cache; fetch the rest in
    /// one upstream GET.
    fn handle_read(&mut self, up: &mut Upstream, conn: &mut Conn<Slots>, body: usize, now: Instant) {
        let op = self.req.op;
        let behind = conn.ext.behind();
        // The clock read in this batch, not the loop pass's start: the
        // lease must hold at an instant after this read arrived.
        let clock = &mut self.clock;
        let mode = self.lease.mode_at(|| ProxyCore::batch_clock(clock));
        let plan = decide(
            &mut *self.cache,
            &self.writes,
            behind,
            mode,
            &self.req.ind,
            &mut self.vals,
            &mut self.missing,
        );
        self.counters.count(&self.req.ind, &self.vals);
        if plan == Plan::Hit {
            let (ind, vals) = (&self.req.ind, &self.vals);
            let end = conn.framer.framing().terminator();
            match sum_if_add(op, vals) {
                Ok(sum) => conn
                    .ext
                    .answer(&mut conn.output, end, |out| encode_read_reply(out, op, ind, vals, sum)),
                Err(p) => {
                    self.counters.error(p.code());
                    conn.ext
                        .answer(&mut conn.output, end, |out| encode_error(out, Some(op), p.code(), &p));
                }
            }
            return;
        }
        // Join the fetches in flight that may be joined; one new fetch for
        // the rest (reads/ says when joining is safe).
        self.reads.plan(
            &self.req.ind,
            &self.missing,
            behind,
            match mode {
                Mode::Alone => Some(0),
                // A write of ours in flight may hold our later requests
                // back at the server: the read's values then all come from
                // its one fetch (see decide.rs).
                Mode::Shared if self.writes.any() => None,
                // Only a fetch not on the wire yet: the server will answer
                // it after this read arrived.
                Mode::Shared => Some(up.on_wire()),
                Mode::Lapsed => None,
            },
            up.open_fetch(),
            &mut self.to_fetch,
            &mut self.joined,
        );
        let waiter = reserve(conn, reply_size(op, body, self.req.ind.len()));
        // Where the first index fetched lands (fetch, place in it).
        let mut place = None;
        if !self.to_fetch.is_empty() {
            if let Some(why) = up.refusal() {
                return self.refuse(conn, waiter, op, why);
            }
            // The pass's fetch not on the wire yet takes the indices if it
            // can (one GET, one answer for every miss of the pass); else a
            // fetch of its own, which later misses may grow.
            let seq = match up.grow_fetch(&self.to_fetch, conn.token.0) {
                Some((seq, from)) => {
                    self.reads.fetch_grew(seq, from, &self.to_fetch);
                    conn.ext.sent(seq);
                    place = Some((seq, from as u32));
                    seq
                }
                None => {
                    // All from the new fetch: a read takes its values from
                    // one fetch (reads/join.rs), and the open one it joined is
                    // full.
                    if !self.joined.is_empty() {
                        self.joined.clear();
                        self.to_fetch.clear();
                        self.to_fetch.extend_from_slice(&self.missing);
                    }
                    let fetch = UpReq {
                        kind: UpKind::Fetch(self.reads.fetch_lists.copy(&self.to_fetch)),
                        seq: 0,
                        waiter,
                        op,
                        queued: now,
                    };
                    let seq = self.send(up, fetch, conn, now);
                    place = Some((seq, 0));
                    seq
                }
            };
            self.joined.push(seq);
        }
        // It takes effect just after the newest fetch it waits on.
        if let Some(&newest) = self.joined.iter().max() {
            conn.ext.sent(newest);
        }
        let joined_any = self.joined.len() > usize::from(!self.to_fetch.is_empty());
        if let [index] = self.req.ind[..] {
            // The common miss: kept in its fetch's list, no lists of its own.
            // (Its place is known unless it joined a fetch.)
            return self.reads.add_one(waiter, op, index, place, joined_any);
        }
        let read = Read::new(
            waiter,
            op,
            self.reads.ind.copy(&self.req.ind),
            self.reads.vals.copy(&self.vals),
        );
        self.reads.add(read, joined_any);
    }

    /// PUT or CLR: forward; the cache changes only once the server said 200.
    fn handle_write(&mut self, up: &mut Upstream, conn: &mut Conn<Slots>, body: usize, now: Instant) {
        let kind = if self.req.op == Op::Put {
            UpKind::Put(self.reads.ind.copy(&self.req.ind), self.reads.ind.copy(&self.req.data))
        } else {
            UpKind::Clr
        };
        let op = self.req.op;
        let waiter = reserve(conn, reply_size(op, body, 0));
        if let Some(why) = up.refusal() {
            return self.refuse(conn, waiter, op, why);
        }
        let req = UpReq {
            kind,
            seq: 0,
            waiter,
            op,
            queued: now,
        };
        self.send(up, req, conn, now);
    }

    /// The upstream cannot take a request now: its slot gets a 503 at once.
    fn refuse(&mut self, conn: &mut Conn<Slots>, waiter: Waiter, op: Op, why: &str) {
        self.counters.error(code::UNAVAILABLE);
        self.body.clear();
        encode_error(&mut self.body, Some(op), code::UNAVAILABLE, &why);
        let end = conn.framer.framing().terminator();
        conn.ext.fill(waiter.seq, self.body.data(), end, &mut conn.output);
    }

    /// Queues a request upstream (the caller checked `refusal`); returns its
    /// upstream sequence number.
    fn send(&mut self, up: &mut Upstream, mut req: UpReq, conn: &mut Conn<Slots>, now: Instant) -> u64 {
        req.seq = self.next_seq;
        self.next_seq += 1;
        self.writes.begin(&req.kind, req.seq);
        match &req.kind {
            UpKind::Fetch(ind) => self.reads.fetch_sent(req.seq, ind, up.batchable(ind)),
            kind => self.reads.write_sent(kind),
        }
        conn.ext.sent(req.seq);
        let seq = req.seq;
        up.send(req, now);
        seq
    }
}

/// Reserves the client's next slot for a request going upstream, whose
/// reply should take about `expect` bytes.
fn reserve(conn: &mut Conn<Slots>, expect: usize) -> Waiter {
    Waiter {
        key: conn.token.0,
        gen: conn.gen,
        seq: conn.ext.reserve(expect),
    }
}

/// About how many bytes the reply to a request of `body` bytes will take,
/// from its shape alone: a reply repeats the request (or less) plus a code
/// or a short message, and a GET adds up to 21 bytes per index asked (a
/// value of i64 and its comma). An estimate above the truth only pauses a
/// client a little early.
fn reply_size(op: Op, body: usize, indices: usize) -> usize {
    let values = if op == Op::Get { 21 * indices } else { 0 };
    body + values + 64
}
