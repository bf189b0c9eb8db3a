//! What the proxy does with a request: the GET/ADD and PUT/CLR handlers
//! (hit or miss from [`decide`], a slot in the client's queue, a request
//! upstream), and the glue to its lease session. What it does with an
//! upstream answer, [`ProxyCore::complete`], is in `answers.rs`.
//!
//! Every reply to a client, errors included, goes through the client's
//! [`Slots`], so it leaves in its turn.

use crate::buffer::Buffer;
use crate::cache::Policy;
use crate::conn::Conn;
use crate::frontend::{FrontInfo, Service};
use crate::proto::{code, encode_error, encode_get_reply, encode_ok, Op, Problem, Request};
use crate::proxy::decide::{decide, Plan, Writes, Zombies};
use crate::proxy::lease::{Event, Lease, Mode, Next, Refusal, State};
use crate::proxy::pending::{Slots, UpKind, UpReq, Waiter};
use crate::proxy::reads::{Read, Reads};
use crate::proxy::stats::Counters;
use crate::proxy::upstream::Upstream;
use log::{debug, error, info, warn};
use std::time::Instant;

/// A client may have this many requests unanswered before the proxy stops
/// reading from it (backpressure).
const MAX_CLIENT_SLOTS: usize = 1024;

/// The cache and everything the handlers keep between requests.
pub struct ProxyCore {
    /// The cache and its eviction policy.
    pub cache: Box<dyn Policy + Send>,
    /// Writes in flight upstream.
    pub writes: Writes,
    /// Counters for STS.
    pub counters: Counters,
    /// Reads waiting on fetches, and which fetches may be joined.
    pub reads: Reads,
    /// Reused across requests (no allocation per request).
    pub(super) req: Request,
    pub(super) vals: Vec<Option<i64>>,
    pub(super) missing: Vec<i64>,
    pub(super) to_fetch: Vec<i64>,
    pub(super) joined: Vec<u64>,
    /// The body of the reply [`ProxyCore::complete`] built last.
    pub(super) body: Buffer,
    /// The sequence number the next request sent upstream gets.
    pub(super) next_seq: u64,
    /// Writes that may still land (see [`Zombies`]).
    pub(super) zombies: Zombies,
    /// The session with the server: whether the cache may be read, and
    /// whether what is fetched may be kept (docs/coherence.md).
    pub lease: Lease,
    /// The node name of its trace lines (`proxy`).
    pub trace_name: &'static str,
    /// An own request the session asked for, for the node to send (it
    /// owns the upstream): a resuming LEASE (docs/durability.md).
    pub to_send: Option<UpKind>,
}

/// The proxy's [`Service`]: the core and the upstream it sends to, lent
/// together for one event.
pub struct ProxyService<'a> {
    /// Cache, handlers, counters.
    pub core: &'a mut ProxyCore,
    /// Where misses and writes go.
    pub up: &'a mut Upstream,
}

impl Service for ProxyService<'_> {
    type Ext = Slots;

    fn on_message(&mut self, conn: &mut Conn<Slots>, body: usize, front: &FrontInfo, now: Instant) {
        let core = &mut *self.core;
        if let Err((op, p)) = core.req.parse(&conn.input.data()[..body]) {
            return self.reject(conn, op, &p);
        }
        let end = conn.framer.framing().terminator();
        match core.req.op {
            // Node introspection, decided at arrival.
            Op::Sts => conn.ext.answer(&mut conn.output, end, |out| {
                crate::proxy::stats::encode_stats(out, core, self.up, front)
            }),
            Op::Dmp => conn.ext.answer(&mut conn.output, end, |out| {
                crate::proxy::stats::encode_dump(out, &*core.cache)
            }),
            Op::Get | Op::Add => core.handle_read(self.up, conn, body, now),
            Op::Put | Op::Clr => core.handle_write(self.up, conn, body, now),
            // A proxy grants no leases (a chain of proxies is outside the
            // contract), and INV is the server's.
            op @ (Op::Lease | Op::Ack | Op::Inv) => self.reject(conn, Some(op), &Problem::NotServed(op)),
        }
    }

    fn reject(&mut self, conn: &mut Conn<Slots>, op: Option<Op>, problem: &Problem) {
        self.core.counters.error(problem.code());
        let end = conn.framer.framing().terminator();
        conn.ext.answer(&mut conn.output, end, |out| {
            encode_error(out, op, problem.code(), problem)
        });
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

/// Indices as the protocol writes them: `1,2,3`.
pub(super) struct List<'a>(pub(super) &'a [i64]);

impl std::fmt::Display for List<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (k, i) in self.0.iter().enumerate() {
            if k > 0 {
                f.write_str(",")?;
            }
            write!(f, "{i}")?;
        }
        Ok(())
    }
}

impl ProxyCore {
    /// An empty cache; `asks_lease` when the upstream speaks line framing
    /// (a bare server cannot take part in coherence); `trace_name` on its
    /// trace lines.
    pub fn new(cache: Box<dyn Policy + Send>, asks_lease: bool, trace_name: &'static str) -> ProxyCore {
        ProxyCore {
            cache,
            writes: Writes::default(),
            counters: Counters::default(),
            reads: Reads::default(),
            req: Request::default(),
            vals: Vec::new(),
            missing: Vec::new(),
            to_fetch: Vec::new(),
            joined: Vec::new(),
            body: Buffer::new(),
            next_seq: 1,
            zombies: Zombies::default(),
            lease: Lease::new(asks_lease),
            trace_name,
            to_send: None,
        }
    }

    /// Moves the session with the server and does what it says next. An
    /// illegal move (a bug) is logged as an error and leaves the cache
    /// empty, in every build.
    pub(super) fn session(&mut self, event: Event, now: Instant) -> Option<UpKind> {
        let before = self.lease.state();
        let next = match self.lease.on(event, now) {
            Ok(next) => next,
            Err(illegal) => {
                error!("proxy lease session: {illegal}; cache cleared");
                self.cache.clear();
                return None;
            }
        };
        self.log_session(before);
        match next {
            Next::Stay => None,
            Next::Send(kind) => Some(kind),
            Next::Resume(history) => {
                let ind = self.cache.entries().iter().map(|&(i, _)| i).collect();
                self.to_send = Some(UpKind::Resume { history, ind });
                None
            }
            Next::Clear(why) => {
                if !self.cache.is_empty() {
                    info!("proxy cache cleared: {why}");
                    self.cache.clear();
                }
                None
            }
            Next::Kept => {
                info!(
                    "proxy kept {} cached entries across the reconnect (same table, no write since)",
                    self.cache.len()
                );
                None
            }
        }
    }

    /// Says what changed in the session, once per change (a server that
    /// closes idle connections would otherwise repeat it all day).
    fn log_session(&mut self, before: State) {
        let now = self.lease.state();
        match (before, now) {
            (State::Granted { .. }, State::Granted { .. }) => {}
            (_, State::Granted { length, .. }) => info!(
                "proxy upstream grants leases of {} ms: coherent with other proxies",
                length.as_millis()
            ),
            (_, State::Refused { .. }) if self.lease.refusal_logged == self.lease.refusal => {
                debug!("proxy upstream still grants no lease ({})", self.lease.refusal_msg)
            }
            (_, State::Refused { .. }) => {
                self.lease.refusal_logged = self.lease.refusal;
                let every = crate::proxy::lease::RETRY.as_millis();
                let why = &self.lease.refusal_msg;
                match self.lease.refusal {
                    Some(Refusal::NotTrusted) => error!(
                        "proxy upstream refuses this proxy a lease ({why}): give the proxy the server's own --peer-secret-file, or run it on the server's host; reading nothing from the cache, asking again every {every} ms"
                    ),
                    _ => warn!(
                        "proxy upstream grants no lease now ({why}): reading nothing from the cache, asking again every {every} ms"
                    ),
                }
            }
            (_, State::Alone) if !self.lease.warned_alone => {
                self.lease.warned_alone = true;
                warn!("proxy upstream grants no leases: other proxies and direct writers may leave this cache stale (docs/coherence.md)");
            }
            _ => {}
        }
    }

    /// Time passes for the session: an own request to send now (a refused
    /// proxy's retry, a quiet lease's renewal), if any. Call only when the
    /// upstream can take a request.
    pub fn tick(&mut self, now: Instant) -> Option<UpKind> {
        self.session(Event::Tick, now)
    }

    /// GET or ADD: decide now what comes from the cache; fetch the rest in
    /// one upstream GET.
    fn handle_read(&mut self, up: &mut Upstream, conn: &mut Conn<Slots>, body: usize, now: Instant) {
        let op = self.req.op;
        let behind = conn.ext.behind();
        // The clock now, not the loop pass's start: the lease must hold at
        // the instant this read takes effect.
        let mode = self.lease.mode_now();
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
                    .answer(&mut conn.output, end, |out| encode_values(out, op, ind, vals, sum)),
                Err(p) => {
                    self.counters.error(p.code());
                    conn.ext
                        .answer(&mut conn.output, end, |out| encode_error(out, Some(op), p.code(), &p));
                }
            }
            return;
        }
        // Join the fetches in flight that may be joined; one new fetch for
        // the rest (reads.rs says when joining is safe).
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
            &mut self.to_fetch,
            &mut self.joined,
        );
        let waiter = reserve(conn, reply_size(op, body, self.req.ind.len()));
        if !self.to_fetch.is_empty() {
            if let Some(why) = up.refusal() {
                return self.refuse(conn, waiter, op, why);
            }
            let fetch = UpReq {
                kind: UpKind::Fetch(self.reads.take_ind(&self.to_fetch)),
                seq: 0,
                waiter,
                op,
                queued: now,
            };
            let seq = self.send(up, fetch, conn, now);
            self.joined.push(seq);
        }
        // It takes effect just after the newest fetch it waits on.
        if let Some(&newest) = self.joined.iter().max() {
            conn.ext.sent(newest);
        }
        let read = Read::new(
            waiter,
            op,
            self.reads.take_ind(&self.req.ind),
            self.reads.take_vals(&self.vals),
        );
        let joined_any = self.joined.len() > usize::from(!self.to_fetch.is_empty());
        self.reads.add(read, &self.joined, joined_any);
    }

    /// PUT or CLR: forward; the cache changes only once the server said 200.
    fn handle_write(&mut self, up: &mut Upstream, conn: &mut Conn<Slots>, body: usize, now: Instant) {
        let kind = if self.req.op == Op::Put {
            UpKind::Put(self.reads.take_ind(&self.req.ind), self.reads.take_ind(&self.req.data))
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
            UpKind::Fetch(ind) => self.reads.fetch_sent(req.seq, ind),
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

/// For an ADD, the sum (overflow-checked); 0 for a GET.
pub(super) fn sum_if_add(op: Op, vals: &[Option<i64>]) -> Result<i64, Problem> {
    if op != Op::Add {
        return Ok(0);
    }
    vals.iter()
        .try_fold(0i64, |acc, v| acc.checked_add(v.unwrap_or(0)))
        .ok_or(Problem::AddOverflow)
}

/// Encodes the success reply of a GET (the values in the order asked) or
/// an ADD (`sum`).
pub(super) fn encode_values(out: &mut Buffer, op: Op, ind: &[i64], vals: &[Option<i64>], sum: i64) {
    if op == Op::Add {
        return encode_ok(out, Op::Add, ind, &[sum]);
    }
    encode_get_reply(out, ind, vals.iter().map(|v| v.unwrap_or(0)));
}

/// Logs the cache after a change at `debug`, oldest first (as the seed's
/// proxy prints its table): every entry of a small cache, only its size for
/// a big one, so the cost never depends on the cache's size.
pub(super) fn log_cache(c: &dyn Policy) {
    if !log::log_enabled!(log::Level::Debug) {
        return;
    }
    // (The entries are listed only when few: `entries` copies them.)
    let few = c.len() <= 32;
    let entries = if few { c.entries() } else { Vec::new() };
    match crate::trace::small_cells(c.len(), entries.into_iter()) {
        Some(cells) => debug!("proxy cache [{cells}] (oldest first, {}/{})", c.len(), c.capacity()),
        None => debug!("proxy cache: {}/{} entries (DMP shows them)", c.len(), c.capacity()),
    }
}
