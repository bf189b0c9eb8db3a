//! The caching proxy: clients on one side, one pipelined upstream
//! connection to the server on the other, a FIFO cache in between.
//!
//! ```text
//!  client A ──► [slots: Ready(hit) Waiting(#7) Ready(hit)] ──► replies in order
//!  client B ──► [slots: Waiting(#8)]
//!                         ▲                     ▲
//!                         │ fill on reply       │
//!   upstream: inflight = [#7 Fetch{3,4} → A.seq 12, #8 Put{1} → B.seq 3]  ◄── replies in order
//! ```
//!
//! Every client connection owns a FIFO of *slots*, one per request still
//! unanswered; a reply is written only once every slot before it is ready,
//! so a client's replies leave in request order, while another client's
//! hits never wait (no head-of-line blocking across clients). The upstream
//! connection owns a FIFO of *in-flight requests*; the server answers in
//! order, so each reply belongs to the head. A request names its client by
//! `(slab key, generation, slot sequence)`, never by reference: the client
//! may be gone (or its key reused) when the reply comes back.
//!
//! Worked example (capacity 2, cache {1:10}): client A sends `GET 1,3`.
//! Index 1 is a hit, 3 a miss: the proxy sends `OP=GET;IND=3` upstream,
//! pushes a `Waiting` slot for A, and remembers "A wants [10, ?]". A then
//! sends `GET 1`: a hit, but it queues behind the first as `Ready`. The
//! server answers `DATA=30`: 3 enters the cache ({1:10, 3:30}), A's first
//! reply is built (`IND=1,3;DATA=10,30`), and both replies leave in one
//! write.
//!
//! Consistency (docs/architecture.md, "Why the proxy is linearizable"):
//! upstream replies are applied in the order the requests were sent; a
//! request served wholly from the cache is answered at its arrival; a
//! request that needs the server re-fetches every cached index that has a
//! write (PUT, CLR) in flight, so it never mixes a value from before a
//! write with one from after it.

use crate::buffer::Buffer;
use crate::cache::{Fifo, IndexMap, Policy};
use crate::conn::{is_peer_gone, Conn, Framing, Next, ReadOutcome, State, WriteOutcome};
use crate::frontend::{reply_problem, FrontInfo, Frontend, Limits, Service};
use crate::proto::{code, encode_error, encode_field, encode_ok, encode_request, put_i64, Op, Problem, Reply, Request};
use crate::reactor::{earliest, Bound, LoopStats, Node, Reactor, TimerKind, Timers, UPSTREAM};
use crate::trace_event;
use log::{debug, info, warn};
use mio::event::Event;
use mio::net::TcpStream;
use mio::Token;
use slab::Slab;
use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A client may have this many requests unanswered before the proxy stops
/// reading from it (backpressure).
const MAX_CLIENT_SLOTS: usize = 1024;
/// Indices with their own hit and miss counters in STS, at most.
const MAX_TRACKED_INDICES: usize = 4096;
/// Requests in flight upstream at most; beyond it, 503 at once.
const MAX_INFLIGHT: usize = 65536;
/// Longest upstream reply accepted (a big fetch of a big table).
const MAX_UPSTREAM_REPLY: usize = 64 << 20;
/// Reconnect backoff: first wait, and the cap it doubles up to.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Settings of a proxy.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Where clients connect (port 0 picks one).
    pub listen: SocketAddr,
    /// The server.
    pub upstream: SocketAddr,
    /// Cache entries at most.
    pub capacity: usize,
    /// An upstream request not answered in this time fails with 504.
    pub upstream_timeout: Duration,
    /// Limits on clients (`bare_idle` also ends a bare upstream's replies).
    pub limits: Limits,
    /// How the server frames messages: `Line`, or `Bare` for a naive
    /// server (then one request at a time).
    pub upstream_framing: Framing,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            listen: "127.0.0.1:8081".parse().expect("literal address"),
            upstream: "127.0.0.1:8080".parse().expect("literal address"),
            capacity: 5,
            upstream_timeout: Duration::from_millis(5000),
            limits: Limits::default(),
            upstream_framing: Framing::Line,
        }
    }
}

/// One unanswered request of a client, in arrival order.
#[derive(Debug)]
enum Slot {
    /// Its reply is decided and encoded, waiting for earlier ones.
    Ready(Vec<u8>),
    /// Waiting for the upstream.
    Waiting,
}

/// The proxy's per-client state: the queue of unanswered requests.
#[derive(Debug, Default)]
pub struct Pending {
    slots: VecDeque<Slot>,
    /// Sequence number of `slots[0]`.
    head_seq: u64,
}

/// Where an upstream reply's result goes.
#[derive(Debug, Clone, Copy)]
struct Waiter {
    key: usize,
    gen: u64,
    seq: u64,
}

/// What was sent upstream.
#[derive(Debug)]
enum UpKind {
    /// A GET of the indices a client request missed.
    Fetch(Vec<i64>),
    /// A client's PUT, forwarded.
    Put(Vec<i64>, Vec<i64>),
    /// A client's CLR, forwarded.
    Clr,
}

/// A request in flight upstream.
#[derive(Debug)]
struct UpReq {
    kind: UpKind,
    waiter: Waiter,
    /// The client's operation (GET or ADD for a fetch).
    op: Op,
    /// For GET/ADD: the client's indices and the values decided at arrival
    /// (`None`: to be filled from the fetch).
    ind: Vec<i64>,
    vals: Vec<Option<i64>>,
    /// When it was queued upstream (its timeout runs from here).
    queued: Instant,
}

/// Counters for STS.
#[derive(Debug, Default)]
struct Counters {
    requests: u64,
    hits: u64,
    misses: u64,
    by_index: BTreeMap<i64, (u64, u64)>,
    evictions: u64,
    upstream_requests: u64,
    upstream_resets: u64,
    errors: BTreeMap<u16, u64>,
}

/// The upstream connection and what is in flight on it.
struct Upstream {
    addr: SocketAddr,
    /// `None` while down (a reconnect timer is set).
    conn: Option<Conn<()>>,
    gen: u64,
    inflight: VecDeque<UpReq>,
    /// How many of `inflight` are written (all of them for line framing;
    /// at most one for a bare server, which cannot tell messages apart
    /// without a pause).
    sent: usize,
    framing: Framing,
    bare_idle: Duration,
    /// Replies received on the current connection.
    replies: u64,
    timeout: Duration,
    backoff: Duration,
    scratch: Buffer,
    reply: Reply,
}

impl Upstream {
    fn connected(&self) -> bool {
        matches!(&self.conn, Some(c) if c.state() == State::Open)
    }

    /// Whether a request can be queued now: connected, or a connect in
    /// progress (it is sent once connected). While down, the answer is 503.
    fn accepting(&self) -> bool {
        self.conn.is_some()
    }
}

/// The proxy's service: cache, upstream, and the per-index write counts
/// that make mixed hit/miss requests safe.
struct Core {
    cache: Box<dyn Policy + Send>,
    up: Upstream,
    /// PUTs in flight per index, and CLRs in flight.
    writes_in_flight: IndexMap<u32>,
    clr_in_flight: u32,
    req: Request,
    vals: Vec<Option<i64>>,
    counters: Counters,
    timers: Timers,
    registry: mio::Registry,
    /// Clients that got replies from upstream in this pass (flushed in tick).
    dirty: Vec<usize>,
    stopping: bool,
}

impl Service for Core {
    type Ext = Pending;

    fn on_message(&mut self, conn: &mut Conn<Pending>, body: usize, front: &FrontInfo, now: Instant) {
        if let Err((op, p)) = self.req.parse(&conn.input.data()[..body]) {
            self.on_error_reply(p.code());
            reply_problem_ordered(conn, op, &p);
            return;
        }
        self.counters.requests += 1;
        match self.req.op {
            Op::Sts => {
                let mut out = Buffer::new();
                self.encode_stats(&mut out, front);
                push_reply(conn, out.data());
            }
            Op::Dmp => {
                let mut out = Buffer::new();
                self.encode_dump(&mut out);
                push_reply(conn, out.data());
            }
            Op::Get | Op::Add => self.read(conn, now),
            Op::Put | Op::Clr => self.write(conn, now),
        }
    }

    fn on_error_reply(&mut self, code: u16) {
        *self.counters.errors.entry(code).or_default() += 1;
    }

    fn owes(&self, conn: &Conn<Pending>) -> bool {
        !conn.ext.slots.is_empty()
    }

    fn congested(&self, conn: &Conn<Pending>) -> bool {
        conn.ext.slots.len() >= MAX_CLIENT_SLOTS
    }

    fn on_close(&mut self, conn: &mut Conn<Pending>) {
        // Replies still in flight for it are applied to the cache and then
        // dropped when they arrive (the waiter's generation no longer
        // matches anything).
        if !conn.ext.slots.is_empty() {
            debug!(
                "proxy tok={}: closed with {} replies pending",
                conn.token.0,
                conn.ext.slots.len()
            );
        }
    }
}

/// Appends a reply to a client: straight into its output when nothing is
/// pending before it, else as a ready slot that waits its turn.
fn push_reply(conn: &mut Conn<Pending>, body: &[u8]) {
    if conn.ext.slots.is_empty() {
        conn.output.extend(body);
        conn.end_message();
    } else {
        let mut v = body.to_vec();
        if conn.framing != Framing::Bare {
            v.push(b'\n');
        }
        conn.ext.slots.push_back(Slot::Ready(v));
    }
}

fn reply_problem_ordered(conn: &mut Conn<Pending>, op: Option<Op>, p: &Problem) {
    if conn.ext.slots.is_empty() {
        reply_problem(conn, op, p);
    } else {
        let mut b = Buffer::new();
        encode_error(&mut b, op, p.code(), p);
        push_reply(conn, b.data());
    }
}

fn error_body(op: Option<Op>, code: u16, msg: &dyn std::fmt::Display) -> Vec<u8> {
    let mut b = Buffer::new();
    encode_error(&mut b, op, code, msg);
    b.data().to_vec()
}

impl Core {
    /// GET or ADD: decide now what comes from the cache; fetch the rest in
    /// one upstream GET.
    fn read(&mut self, conn: &mut Conn<Pending>, now: Instant) {
        let op = self.req.op;
        self.vals.clear();
        let mut all_hit = true;
        for &i in &self.req.ind {
            let v = self.cache.get(i);
            all_hit &= v.is_some();
            self.vals.push(v);
        }
        if all_hit {
            // Every value from the cache at this instant: a consistent
            // snapshot, whatever is in flight.
            self.count();
            let reply = if conn.ext.slots.is_empty() {
                // The hot path: encoded straight into the output, no
                // allocation.
                let r = encode_values(&mut conn.output, op, &self.req.ind, &self.vals);
                if r.is_ok() {
                    conn.end_message();
                }
                r
            } else {
                // Behind a pending reply: kept until its turn.
                let mut out = Buffer::new();
                let r = encode_values(&mut out, op, &self.req.ind, &self.vals);
                if r.is_ok() {
                    push_reply(conn, out.data());
                }
                r
            };
            if let Err(p) = reply {
                self.on_error_reply(p.code());
                reply_problem_ordered(conn, Some(op), &p);
            }
            return;
        }
        // Some values must come from the server. A cached value whose index
        // has a write in flight could be older than what the fetch returns:
        // fetch those too, so the reply is one instant's view.
        if self.clr_in_flight > 0 || !self.writes_in_flight.is_empty() {
            for (v, i) in self.vals.iter_mut().zip(&self.req.ind) {
                if v.is_some() && (self.clr_in_flight > 0 || self.writes_in_flight.contains_key(i)) {
                    *v = None;
                }
            }
        }
        // Each missing index once, in first-asked order (a set, not a
        // scan, so a request of thousands of indices stays linear).
        let mut missing: Vec<i64> = Vec::new();
        let mut seen: IndexMap<()> = IndexMap::default();
        for (v, &i) in self.vals.iter().zip(&self.req.ind) {
            if v.is_none() && seen.insert(i, ()).is_none() {
                missing.push(i);
            }
        }
        self.count();
        let req = UpReq {
            kind: UpKind::Fetch(missing),
            waiter: self.reserve_slot(conn),
            op,
            ind: self.req.ind.clone(),
            vals: self.vals.clone(),
            queued: now,
        };
        self.send_upstream(req, conn, now);
    }

    /// PUT or CLR: forward; the cache changes only once the server said 200.
    fn write(&mut self, conn: &mut Conn<Pending>, now: Instant) {
        let kind = if self.req.op == Op::Put {
            UpKind::Put(self.req.ind.clone(), self.req.data.clone())
        } else {
            UpKind::Clr
        };
        let req = UpReq {
            kind,
            waiter: self.reserve_slot(conn),
            op: self.req.op,
            ind: Vec::new(),
            vals: Vec::new(),
            queued: now,
        };
        self.send_upstream(req, conn, now);
    }

    /// Counts each index of the request as a hit (value taken from the
    /// cache) or a miss (value fetched).
    fn count(&mut self) {
        for (v, &i) in self.vals.iter().zip(&self.req.ind) {
            let hit = v.is_some();
            if hit {
                self.counters.hits += 1;
            } else {
                self.counters.misses += 1;
            }
            // Per index only for the first MAX_TRACKED_INDICES indices seen:
            // clients choose indices, and must not grow this map at will.
            let tracked = self.counters.by_index.len() < MAX_TRACKED_INDICES;
            if let Some(e) = match self.counters.by_index.get_mut(&i) {
                Some(e) => Some(e),
                None if tracked => Some(self.counters.by_index.entry(i).or_default()),
                None => None,
            } {
                if hit {
                    e.0 += 1;
                } else {
                    e.1 += 1;
                }
            }
        }
    }

    fn reserve_slot(&mut self, conn: &mut Conn<Pending>) -> Waiter {
        let seq = conn.ext.head_seq + conn.ext.slots.len() as u64;
        conn.ext.slots.push_back(Slot::Waiting);
        Waiter {
            key: conn.token.0,
            gen: conn.gen,
            seq,
        }
    }

    /// Queues a request upstream, or answers 503 at once when the upstream
    /// is down or its queue is full.
    fn send_upstream(&mut self, req: UpReq, conn: &mut Conn<Pending>, now: Instant) {
        let refuse = if !self.up.accepting() {
            Some("upstream unavailable")
        } else if self.up.inflight.len() >= MAX_INFLIGHT {
            Some("upstream queue full")
        } else {
            None
        };
        if let Some(why) = refuse {
            self.on_error_reply(code::UNAVAILABLE);
            let body = error_body(Some(req.op), code::UNAVAILABLE, &why);
            fill_slot(conn, req.waiter.seq, body);
            return;
        }
        match &req.kind {
            UpKind::Put(ind, _) => {
                for &i in ind {
                    *self.writes_in_flight.entry(i).or_default() += 1;
                }
            }
            UpKind::Clr => self.clr_in_flight += 1,
            UpKind::Fetch(_) => {}
        }
        if self.up.framing != Framing::Bare || self.up.sent == 0 {
            if let Some(up) = self.up.conn.as_mut() {
                write_request(up, &req.kind);
                self.up.sent += 1;
            }
        }
        trace_event!(
            "upstream",
            UPSTREAM,
            Some(self.up.addr),
            "QUEUED",
            "{} for client tok={}",
            kind_name(&req.kind),
            req.waiter.key
        );
        self.counters.upstream_requests += 1;
        if self.up.inflight.is_empty() {
            self.timers
                .add(now + self.up.timeout, TimerKind::Upstream, UPSTREAM.0, self.up.gen);
        }
        self.up.inflight.push_back(req);
    }

    /// Undoes the in-flight write bookkeeping of a request leaving the queue.
    fn write_done(&mut self, kind: &UpKind) {
        match kind {
            UpKind::Put(ind, _) => {
                for i in ind {
                    if let Some(n) = self.writes_in_flight.get_mut(i) {
                        *n -= 1;
                        if *n == 0 {
                            self.writes_in_flight.remove(i);
                        }
                    }
                }
            }
            UpKind::Clr => self.clr_in_flight = self.clr_in_flight.saturating_sub(1),
            UpKind::Fetch(_) => {}
        }
    }

    /// Applies one upstream reply to the head of the in-flight queue and
    /// builds the client's reply. `Err` means the reply does not belong to
    /// the head: the connection is out of step and must be reset.
    fn apply_reply(&mut self, conns: &mut Slab<Conn<Pending>>, now: Instant) -> Result<(), String> {
        let Some(head) = self.up.inflight.front() else {
            return Err("a reply with no request in flight".into());
        };
        let r = &self.up.reply;
        let expect = match head.kind {
            UpKind::Fetch(_) => Op::Get,
            UpKind::Put(..) => Op::Put,
            UpKind::Clr => Op::Clr,
        };
        if r.op.is_some_and(|op| op != expect) {
            return Err(format!(
                "a {} reply to a {expect} request",
                r.op.map(|o| o.name()).unwrap_or("?")
            ));
        }
        if r.is_ok() {
            if let UpKind::Fetch(ind) = &head.kind {
                if r.data.len() != ind.len() || (r.has_ind && r.ind != *ind) {
                    return Err(format!("a GET reply for other indices than {ind:?}"));
                }
            }
        }
        let Some(mut req) = self.up.inflight.pop_front() else {
            return Err("a reply with no request in flight".into());
        };
        self.up.sent = self.up.sent.saturating_sub(1);
        self.up.replies += 1;
        self.write_done(&req.kind);
        if self.up.sent == 0 {
            // A bare server gets the next request only now.
            if let (Some(next), Some(up)) = (self.up.inflight.front(), self.up.conn.as_mut()) {
                write_request(up, &next.kind);
                self.up.sent = 1;
            }
        }
        let _latency = now.saturating_duration_since(req.queued);
        let body = if !self.up.reply.is_ok() {
            // The server's verdict, passed on unchanged; nothing is cached.
            let code = self.up.reply.code;
            *self.counters.errors.entry(code).or_default() += 1;
            error_body(Some(req.op), code, &self.up.reply.msg)
        } else {
            self.apply_ok(&mut req)
        };
        deliver(conns, &mut self.dirty, req.waiter, body);
        Ok(())
    }

    fn apply_ok(&mut self, req: &mut UpReq) -> Vec<u8> {
        let mut out = Buffer::new();
        match &req.kind {
            UpKind::Fetch(ind) => {
                let mut fetched: IndexMap<i64> = IndexMap::default();
                for (&i, &v) in ind.iter().zip(&self.up.reply.data) {
                    if let Some((old, oldv)) = self.cache.insert(i, v) {
                        self.counters.evictions += 1;
                        info!("proxy cache: {i} in, {old}:{oldv} evicted (oldest)");
                    }
                    fetched.insert(i, v);
                }
                for (slot, want) in req.vals.iter_mut().zip(&req.ind) {
                    if slot.is_none() {
                        *slot = fetched.get(want).copied();
                    }
                }
                log_cache(&*self.cache);
                if let Err(p) = encode_values(&mut out, req.op, &req.ind, &req.vals) {
                    self.on_error_reply(p.code());
                    encode_error(&mut out, Some(req.op), p.code(), &p);
                }
            }
            UpKind::Put(ind, data) => {
                for (&i, &v) in ind.iter().zip(data) {
                    self.cache.update(i, v);
                }
                log_cache(&*self.cache);
                encode_ok(&mut out, Op::Put, ind, data);
            }
            UpKind::Clr => {
                self.cache.clear();
                log_cache(&*self.cache);
                encode_ok(&mut out, Op::Clr, &[], &[]);
            }
        }
        out.data().to_vec()
    }

    /// Drops the upstream connection: every request in flight is answered
    /// with `code`, writes whose outcome is unknown make their cached
    /// entries unknown too, and a reconnect is scheduled.
    fn reset_upstream(&mut self, conns: &mut Slab<Conn<Pending>>, code: u16, why: &str, now: Instant) {
        self.counters.upstream_resets += 1;
        if let Some(mut c) = self.up.conn.take() {
            c.close(&self.registry, why);
        }
        self.up.gen += 1;
        self.up.sent = 0;
        let n = self.up.inflight.len();
        if n > 0 {
            warn!(
                "proxy upstream {}: {why}; failing {n} requests in flight with {code}",
                self.up.addr
            );
        } else {
            info!("proxy upstream {}: {why}", self.up.addr);
        }
        while let Some(req) = self.up.inflight.pop_front() {
            // The server may or may not have applied a write that got no
            // reply: the cache must not keep serving the old value.
            match &req.kind {
                UpKind::Put(ind, _) => ind.iter().for_each(|&i| self.cache.remove(i)),
                UpKind::Clr => self.cache.clear(),
                UpKind::Fetch(_) => {}
            }
            self.write_done(&req.kind);
            self.on_error_reply(code);
            let msg = if code == crate::proto::code::GATEWAY_TIMEOUT {
                "upstream timeout"
            } else {
                why
            };
            deliver(conns, &mut self.dirty, req.waiter, error_body(Some(req.op), code, &msg));
        }
        if !self.stopping {
            self.schedule_reconnect(now);
        }
    }

    fn schedule_reconnect(&mut self, now: Instant) {
        let wait = self.up.backoff;
        info!(
            "proxy upstream {}: reconnecting in {} ms",
            self.up.addr,
            wait.as_millis()
        );
        self.timers
            .add(now + wait, TimerKind::Reconnect, UPSTREAM.0, self.up.gen);
        self.up.backoff = (wait * 2).clamp(BACKOFF_MIN, BACKOFF_MAX);
    }

    /// Starts a nonblocking connect to the server.
    fn connect(&mut self, now: Instant) {
        let addr = self.up.addr;
        trace_event!(
            "upstream",
            UPSTREAM,
            Some(addr),
            "CONNECT_START",
            "connect() in progress (EINPROGRESS)"
        );
        let sock = match TcpStream::connect(addr) {
            Ok(s) => s,
            Err(e) => {
                warn!("proxy upstream {addr}: connect: {e}");
                self.schedule_reconnect(now);
                return;
            }
        };
        self.up.gen += 1;
        let mut conn = Conn::new(
            sock,
            UPSTREAM,
            self.up.gen,
            "upstream",
            State::Connecting { since: now },
            now,
            (),
        );
        conn.peer = Some(addr);
        conn.framing = self.up.framing;
        self.up.replies = 0;
        if let Err(e) = conn.register(&self.registry) {
            warn!("proxy upstream {addr}: register: {e}");
            self.schedule_reconnect(now);
            return;
        }
        self.up.conn = Some(conn);
        self.timers
            .add(now + self.up.timeout, TimerKind::Upstream, UPSTREAM.0, self.up.gen);
    }

    /// Handles an event on the upstream socket.
    fn upstream_ready(&mut self, conns: &mut Slab<Conn<Pending>>, event: &Event, now: Instant) {
        let Some(up) = self.up.conn.as_mut() else { return };
        if let State::Connecting { .. } = up.state() {
            if !(event.is_writable() || event.is_error() || event.is_read_closed() || event.is_write_closed()) {
                return;
            }
            match up.finish_connect() {
                Ok(false) => return,
                Ok(true) => {
                    let _ = up.sock.set_nodelay(true);
                    trace_event!(
                        "upstream",
                        UPSTREAM,
                        up.peer,
                        "CONNECTED",
                        "local {:?}",
                        up.sock.local_addr().ok()
                    );
                    up.set_state(State::Open, "connect completed");
                    info!("proxy upstream {}: connected", self.up.addr);
                    self.up.backoff = BACKOFF_MIN;
                    // The server may have restarted with a fresh table while
                    // we were apart: start from an empty cache.
                    if !self.cache.is_empty() {
                        info!("proxy cache cleared on (re)connect");
                        self.cache.clear();
                    }
                }
                Err(e) => {
                    trace_event!("upstream", UPSTREAM, up.peer, "CONNECT_FAILED", "{e}");
                    self.reset_upstream(conns, code::UNAVAILABLE, &format!("connect failed: {e}"), now);
                    return;
                }
            }
        }
        if event.is_error() {
            let e = self.up.conn.as_ref().and_then(|c| c.sock.take_error().ok().flatten());
            self.reset_upstream(conns, code::BAD_GATEWAY, &format!("upstream socket error {e:?}"), now);
            return;
        }
        if event.is_readable() || event.is_read_closed() {
            self.upstream_read(conns, now);
        }
        self.flush_upstream(conns, now);
    }

    fn upstream_read(&mut self, conns: &mut Slab<Conn<Pending>>, now: Instant) {
        loop {
            let Some(up) = self.up.conn.as_mut() else { return };
            let (_, outcome) = up.fill(&mut self.up.scratch, MAX_UPSTREAM_REPLY, now);
            if matches!(outcome, ReadOutcome::Eof) && up.framing == Framing::Bare && !up.input.is_empty() {
                up.end_burst(); // FIN ends a bare reply too
            }
            if !self.upstream_process(conns, now) {
                return;
            }
            let Some(up) = self.up.conn.as_mut() else { return };
            up.return_scratch(&mut self.up.scratch);
            if up.framing == Framing::Bare && !up.input.is_empty() && !up.bare_timer {
                up.bare_timer = true;
                self.timers.add(
                    up.last_bytes + self.up.bare_idle,
                    TimerKind::BareIdle,
                    UPSTREAM.0,
                    self.up.gen,
                );
            }
            match outcome {
                ReadOutcome::WouldBlock => return,
                ReadOutcome::Full => continue,
                ReadOutcome::Eof => {
                    trace_event!(
                        "upstream",
                        UPSTREAM,
                        up.peer,
                        "PEER_FIN",
                        "server closed the connection"
                    );
                    // A server that answers and then closes (many naive ones
                    // do) is reconnected at once; one that never answered
                    // is retried with backoff.
                    let clean = self.up.inflight.is_empty() && self.up.replies > 0;
                    self.reset_upstream(conns, code::BAD_GATEWAY, "upstream connection lost", now);
                    if clean && !self.stopping {
                        self.connect(now);
                    }
                    return;
                }
                ReadOutcome::Error(e) => {
                    let lvl = if is_peer_gone(&e) { "lost" } else { "failed" };
                    self.reset_upstream(
                        conns,
                        code::BAD_GATEWAY,
                        &format!("upstream connection {lvl}: {e}"),
                        now,
                    );
                    return;
                }
            }
        }
    }

    /// Applies every whole reply in the upstream input, in order. Returns
    /// false if the connection was reset.
    fn upstream_process(&mut self, conns: &mut Slab<Conn<Pending>>, now: Instant) -> bool {
        loop {
            let Some(up) = self.up.conn.as_mut() else { return false };
            match up.next_message(MAX_UPSTREAM_REPLY) {
                Next::Message { body, total } => {
                    let parsed = self.up.reply.parse(&up.input.data()[..body]);
                    trace_event!(
                        "upstream",
                        UPSTREAM,
                        up.peer,
                        "DECODED",
                        "{}",
                        String::from_utf8_lossy(&up.input.data()[..body])
                    );
                    up.consume(total);
                    let res = match parsed {
                        Ok(()) => self.apply_reply(conns, now),
                        Err(p) => Err(format!("unreadable reply ({p})")),
                    };
                    if let Err(why) = res {
                        self.reset_upstream(conns, code::BAD_GATEWAY, &format!("upstream out of step: {why}"), now);
                        return false;
                    }
                }
                Next::Oversize(_) => {
                    self.reset_upstream(conns, code::BAD_GATEWAY, "upstream reply too long", now);
                    return false;
                }
                Next::Wait => return true,
            }
        }
    }

    /// Writes queued requests upstream (once per loop pass, so requests
    /// from many clients leave in one write).
    fn flush_upstream(&mut self, conns: &mut Slab<Conn<Pending>>, now: Instant) {
        let Some(up) = self.up.conn.as_mut() else { return };
        if up.state() != State::Open {
            return;
        }
        if let WriteOutcome::Error(e) = up.flush() {
            self.reset_upstream(conns, code::BAD_GATEWAY, &format!("upstream write failed: {e}"), now);
            return;
        }
        if let Some(up) = self.up.conn.as_mut() {
            if let Err(e) = up.update_interest(&self.registry) {
                self.reset_upstream(conns, code::BAD_GATEWAY, &format!("reregister: {e}"), now);
            }
        }
    }

    /// Fires the proxy's own timers: the upstream deadline and reconnects.
    fn fire_timers(&mut self, conns: &mut Slab<Conn<Pending>>, now: Instant) {
        while let Some(t) = self.timers.pop_due(now) {
            if t.gen != self.up.gen {
                continue; // for an upstream connection that is gone
            }
            match t.kind {
                TimerKind::Reconnect if self.up.conn.is_none() && !self.stopping => self.connect(now),
                TimerKind::BareIdle => {
                    let Some(up) = self.up.conn.as_mut() else { continue };
                    up.bare_timer = false;
                    if up.input.is_empty() {
                        continue;
                    }
                    let due = up.last_bytes + self.up.bare_idle;
                    if now < due {
                        up.bare_timer = true;
                        self.timers.add(due, TimerKind::BareIdle, UPSTREAM.0, t.gen);
                        continue;
                    }
                    up.end_burst();
                    self.upstream_process(conns, now);
                }
                TimerKind::Upstream => {
                    if let Some(State::Connecting { since }) = self.up.conn.as_ref().map(|c| c.state()) {
                        if now >= since + self.up.timeout {
                            self.reset_upstream(conns, code::UNAVAILABLE, "connect timed out", now);
                        } else {
                            self.timers
                                .add(since + self.up.timeout, TimerKind::Upstream, UPSTREAM.0, t.gen);
                        }
                        continue;
                    }
                    let Some(head) = self.up.inflight.front() else { continue };
                    let deadline = head.queued + self.up.timeout;
                    if now >= deadline {
                        self.reset_upstream(conns, code::GATEWAY_TIMEOUT, "upstream request timed out", now);
                    } else {
                        self.timers.add(deadline, TimerKind::Upstream, UPSTREAM.0, t.gen);
                    }
                }
                _ => {}
            }
        }
    }

    fn encode_stats(&self, out: &mut Buffer, front: &FrontInfo) {
        let s = front.stats;
        let c = &self.counters;
        out.extend(b"OP=STS");
        encode_field(out, "ROLE", &"proxy");
        encode_field(out, "POLICY", &self.cache.name());
        encode_field(out, "CAPACITY", &self.cache.capacity());
        encode_field(out, "CACHED", &self.cache.len());
        encode_field(out, "CONNS", &front.connections);
        encode_field(out, "ACCEPTED", &s.accepted);
        encode_field(out, "REJECTED", &s.rejected);
        encode_field(out, "IDLE_CLOSED", &s.idle_closed);
        encode_field(out, "PAUSED", &s.paused);
        encode_field(out, "REQS", &c.requests);
        encode_field(out, "HITS", &c.hits);
        encode_field(out, "MISSES", &c.misses);
        encode_field(out, "EVICTIONS", &c.evictions);
        encode_field(out, "UPSTREAM", &if self.up.connected() { "up" } else { "down" });
        encode_field(out, "UP_REQS", &c.upstream_requests);
        encode_field(out, "UP_INFLIGHT", &self.up.inflight.len());
        encode_field(out, "UP_RESETS", &c.upstream_resets);
        for (code, n) in &c.errors {
            encode_field(out, &format!("ERR{code}"), n);
        }
        let list = |pick: fn(&(u64, u64)) -> u64| {
            c.by_index
                .iter()
                .filter(|(_, v)| pick(v) > 0)
                .take(1024)
                .map(|(i, v)| format!("{i}:{}", pick(v)))
                .collect::<Vec<_>>()
                .join(",")
        };
        encode_field(out, "HIT_IND", &list(|v| v.0));
        encode_field(out, "MISS_IND", &list(|v| v.1));
        encode_field(out, "WAKEUPS", &s.reactor.wakeups);
        encode_field(out, "EVENTS", &s.reactor.events);
        encode_field(out, "FULL_BATCHES", &s.reactor.full_batches);
        encode_field(out, "BUSY_US", &s.reactor.busy_us);
        out.extend(b";CODE=200");
    }

    /// The cache in eviction order (next to be evicted first).
    fn encode_dump(&self, out: &mut Buffer) {
        let entries = self.cache.entries();
        out.extend(b"OP=DMP");
        encode_field(out, "CAPACITY", &self.cache.capacity());
        if !entries.is_empty() {
            let (ind, data): (Vec<i64>, Vec<i64>) = entries.into_iter().unzip();
            out.extend(b";IND=");
            for (n, i) in ind.iter().enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                put_i64(out, *i);
            }
            out.extend(b";DATA=");
            for (n, v) in data.iter().enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                put_i64(out, *v);
            }
        }
        out.extend(b";CODE=200");
    }
}

/// Encodes an upstream request into the connection's output.
fn write_request(up: &mut Conn<()>, kind: &UpKind) {
    match kind {
        UpKind::Fetch(ind) => encode_request(&mut up.output, Op::Get, ind, &[]),
        UpKind::Put(ind, data) => encode_request(&mut up.output, Op::Put, ind, data),
        UpKind::Clr => encode_request(&mut up.output, Op::Clr, &[], &[]),
    }
    up.end_message();
}

fn kind_name(k: &UpKind) -> &'static str {
    match k {
        UpKind::Fetch(_) => "GET (fetch)",
        UpKind::Put(..) => "PUT (write-through)",
        UpKind::Clr => "CLR",
    }
}

/// Encodes the success reply of a GET (the values in the order asked) or
/// an ADD (their sum, overflow-checked). Appends nothing on error.
fn encode_values(out: &mut Buffer, op: Op, ind: &[i64], vals: &[Option<i64>]) -> Result<(), Problem> {
    if op == Op::Add {
        let s = sum(vals)?;
        encode_ok(out, Op::Add, ind, &[s]);
        return Ok(());
    }
    encode_request(out, Op::Get, ind, &[]);
    out.extend(b";DATA=");
    for (n, v) in vals.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        put_i64(out, v.unwrap_or(0));
    }
    out.extend(b";CODE=200");
    Ok(())
}

fn sum(vals: &[Option<i64>]) -> Result<i64, Problem> {
    vals.iter()
        .try_fold(0i64, |acc, v| acc.checked_add(v.unwrap_or(0)))
        .ok_or(Problem::AddOverflow)
}

/// Puts a reply into a client's slot and moves every ready reply at the
/// head of its queue into its output. A client that is gone (or whose key
/// now belongs to another connection) is skipped: the reply is dropped.
fn deliver(conns: &mut Slab<Conn<Pending>>, dirty: &mut Vec<usize>, w: Waiter, body: Vec<u8>) {
    let Some(conn) = conns.get_mut(w.key) else { return };
    if conn.gen != w.gen {
        return;
    }
    fill_slot(conn, w.seq, body);
    dirty.push(w.key);
}

/// Fills slot `seq` with a reply body (no terminator yet).
fn fill_slot(conn: &mut Conn<Pending>, seq: u64, mut body: Vec<u8>) {
    if conn.framing != Framing::Bare {
        body.push(b'\n');
    }
    fill_slot_raw(conn, seq, body);
}

fn fill_slot_raw(conn: &mut Conn<Pending>, seq: u64, bytes: Vec<u8>) {
    let Some(idx) = seq.checked_sub(conn.ext.head_seq) else {
        return;
    };
    let Some(slot) = conn.ext.slots.get_mut(idx as usize) else {
        return;
    };
    *slot = Slot::Ready(bytes);
    while let Some(Slot::Ready(_)) = conn.ext.slots.front() {
        if let Some(Slot::Ready(b)) = conn.ext.slots.pop_front() {
            conn.output.extend(&b);
        }
        conn.ext.head_seq += 1;
    }
}

/// Logs the cache after a change, oldest first (as the seed's proxy prints
/// its table).
fn log_cache(c: &dyn Policy) {
    if !log::log_enabled!(log::Level::Info) {
        return;
    }
    let e = c.entries();
    if e.len() <= 32 {
        let cells: Vec<String> = e.iter().map(|(i, v)| format!("{i}:{v}")).collect();
        info!(
            "proxy cache [{}] (oldest first, {}/{})",
            cells.join(" "),
            e.len(),
            c.capacity()
        );
    } else {
        info!("proxy cache: {}/{} entries", e.len(), c.capacity());
    }
}

/// The proxy's node: its listening side, cache and upstream.
pub struct ProxyNode {
    front: Frontend<Pending>,
    core: Core,
}

impl Node for ProxyNode {
    fn ready(&mut self, token: Token, event: &Event, now: Instant) {
        if token == UPSTREAM {
            self.core.upstream_ready(&mut self.front.conns, event, now);
        } else {
            self.front.ready(&mut self.core, token, event, now);
        }
    }

    fn tick(&mut self, now: Instant) -> Option<Instant> {
        let next_front = self.front.tick(&mut self.core, now);
        self.core.fire_timers(&mut self.front.conns, now);
        self.core.flush_upstream(&mut self.front.conns, now);
        // Clients that got replies from upstream: one flush each.
        while !self.core.dirty.is_empty() {
            let mut dirty = std::mem::take(&mut self.core.dirty);
            dirty.sort_unstable();
            dirty.dedup();
            for key in dirty.drain(..) {
                self.front.after_io(&mut self.core, key, now);
            }
            // Resumed clients may have queued more upstream.
            self.core.flush_upstream(&mut self.front.conns, now);
        }
        if self.front.stopping() && self.front.conns.is_empty() {
            if let Some(mut c) = self.core.up.conn.take() {
                c.close(&self.core.registry, "proxy stopped");
            }
        }
        earliest(earliest(next_front, self.core.timers.next()), self.front.timers.next())
    }

    fn stop(&mut self, now: Instant) {
        info!("proxy stopping: {} clients to finish", self.front.conns.len());
        self.core.stopping = true;
        self.front.stop(&mut self.core, now);
    }

    fn done(&self) -> bool {
        self.front.finished()
    }

    fn loop_stats(&mut self) -> &mut LoopStats {
        &mut self.front.stats.reactor
    }
}

/// A bound proxy, ready to run: `Proxy::bind(cfg)?.spawn()?`, or `.run()`.
pub type Proxy = Bound<ProxyNode>;

impl Proxy {
    /// Binds the listener and starts connecting to the upstream.
    pub fn bind(cfg: ProxyConfig) -> io::Result<Proxy> {
        let reactor = Reactor::new()?;
        let front = Frontend::bind(cfg.listen, "proxy", cfg.limits.clone(), reactor.registry())?;
        info!(
            "proxy listening on {}, upstream {}, cache of {} entries (fifo)",
            front.local_addr(),
            cfg.upstream,
            cfg.capacity
        );
        let now = Instant::now();
        let mut core = Core {
            cache: Box::new(Fifo::new(cfg.capacity)),
            up: Upstream {
                addr: cfg.upstream,
                conn: None,
                gen: 0,
                inflight: VecDeque::new(),
                sent: 0,
                framing: cfg.upstream_framing,
                bare_idle: cfg.limits.bare_idle,
                replies: 0,
                timeout: cfg.upstream_timeout,
                backoff: BACKOFF_MIN,
                scratch: Buffer::with_capacity(crate::conn::READ_CHUNK),
                reply: Reply::default(),
            },
            writes_in_flight: IndexMap::default(),
            clr_in_flight: 0,
            req: Request::default(),
            vals: Vec::new(),
            counters: Counters::default(),
            timers: Timers::default(),
            registry: reactor.registry().try_clone()?,
            dirty: Vec::new(),
            stopping: false,
        };
        core.connect(now);
        let addr = front.local_addr();
        Ok(Bound::new(reactor, ProxyNode { front, core }, addr, "proxy"))
    }
}
