//! The proxy's one connection to the server: connect and reconnect with
//! backoff, the FIFO of requests in flight, reading and pairing replies,
//! the request deadline, and the reset that fails everything in flight.
//!
//! It knows nothing of clients or of the cache: every reply (or failure)
//! leaves as an [`UpEvent`] handed to the caller's sink, in the order the
//! requests were sent, which is the order the server applied them.
//!
//! Rooms: this file (the connection, sending, resetting), `read.rs`
//! (pairing replies with requests), `timers.rs` (deadline, reconnect,
//! keepalive, a bare reply's end), `drain.rs` (an old connection the
//! server may still be reading).
//!
//! One ordered connection is what makes the cache safe (point 1 of
//! docs/architecture.md, "Why the proxy is linearizable"): a fetch's reply
//! is applied before the reply of a PUT sent after it. A pool of connections would reopen that gap.

mod drain;
mod read;
mod timers;

use crate::buffer::Buffer;
use crate::conn::{
    is_peer_gone, read_limit, BarePause, Conn, ConnectOutcome, ReadOutcome, State, WriteOutcome, READ_CHUNK,
};
use crate::framing::{Frame, Framer, Framing};
use crate::proto::{code, encode_request, Reply};
use crate::proxy::pending::{UpKind, UpReq};
use crate::reactor::{Timers, DRAINING, UPSTREAM};
use crate::trace_event;
use log::{info, warn};
use mio::event::Event;
use mio::Registry;
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Requests in flight upstream at most; beyond it, 503 at once.
const MAX_INFLIGHT: usize = 65536;
/// Bytes of requests in flight upstream at most (as [`UpKind::wire_bytes`]
/// counts them, never less than they take); beyond it, 503 at once. Under
/// half the server's byte budget for requests queued behind a parked
/// write (`crate::server::BACKLOG_MAX_BYTES`), so the server always reads
/// this proxy's confirmations.
pub const MAX_INFLIGHT_BYTES: usize = 2 << 20;
/// Longest upstream reply accepted (a big fetch of a big table).
const MAX_UPSTREAM_REPLY: usize = 64 << 20;
/// A server that closes a connection it has kept this long (or after
/// answering), with nothing in flight, closed it for being idle.
const IDLE_CLOSE_MIN: Duration = Duration::from_millis(20);
/// A close after at least this much silence teaches the proxy the
/// server's idle policy (a shorter one is more likely a crash or a restart
/// than a policy worth pinging for).
/// (Half a second: a proxy holding a lease renews it every third of the
/// lease, so a server that stops or restarts closes connections that have
/// been quiet for less; taking such a close for an idle policy would make
/// the proxy ping many times a second for good.)
const LEARN_IDLE_MIN: Duration = Duration::from_millis(500);
/// The shortest keepalive interval the proxy learns.
const KEEPALIVE_MIN: Duration = Duration::from_millis(30);
/// Reconnect backoff: first wait, and the cap it doubles up to.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// The upstream's timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum UpTimer {
    /// The connect, or the oldest request in flight, must be answered by now.
    Deadline,
    /// Reconnect after a backoff.
    Reconnect,
    /// The end of a bare server's reply (its pause).
    BareIdle,
    /// The connection may have been quiet too long for the server's idle
    /// policy: ask it something.
    KeepAlive,
}

/// What happened upstream, in order.
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

/// Upstream counters for STS.
#[derive(Debug, Default)]
pub struct UpStats {
    /// Requests sent.
    pub requests: u64,
    /// Times the connection was dropped (failure, timeout, desync).
    pub resets: u64,
}

/// The connection to the server and what is in flight on it.
pub struct Upstream {
    /// The node name its trace lines carry (`proxy`).
    role: &'static str,
    /// Requests written into the output since the last flush, described
    /// for the trace's `SEND` lines (filled only while tracing).
    announce: Vec<String>,
    /// The generation whose deadline timer is set, if one is: one timer
    /// re-arms itself for the oldest request, instead of one per request
    /// (a timer per request would churn the timer set on every miss).
    deadline_armed: Option<u64>,
    addr: SocketAddr,
    /// `None` while down (a reconnect timer is set).
    conn: Option<Conn<()>>,
    /// An old connection reset while the server may still be reading it:
    /// shut for writing and read until the server closes it.
    draining: Option<Conn<()>>,
    gen: u64,
    inflight: VecDeque<UpReq>,
    /// How many of `inflight` are written (all of them for line framing;
    /// at most one for a bare server, which cannot tell messages apart
    /// without a pause).
    sent: usize,
    framing: Framing,
    bare_idle: Duration,
    /// Replies received on the current connection (503s not counted).
    replies: u64,
    /// The server answered 503 on the current connection: it is refusing
    /// (at its connection limit, say), so its close is never an idle close.
    refused: bool,
    /// When the current connection was opened, and when it last carried a
    /// request or a reply.
    opened: Instant,
    last_io: Instant,
    /// How long the connection may stay quiet before the proxy sends a
    /// keepalive: learned from the server closing an idle connection (a
    /// third of the silence it allowed), `None` until then. (A lease is
    /// renewed by the session, `lease.rs`, not here.)
    keepalive: Option<Duration>,
    /// Bytes of the requests in flight (`MAX_INFLIGHT_BYTES` at most).
    inflight_bytes: usize,
    /// The peer secret, presented with every LEASE (`--peer-secret-file`).
    secret: Option<crate::peer::Secret>,
    /// Invalidations are applied up to this SEQ, and acknowledged up to
    /// `acked` (the ACK leaves after the read pass that applied them).
    applied: u64,
    acked: u64,
    /// The latest client request queued, and the latest that may be on the
    /// wire (everything queued before a flush).
    queued_seq: u64,
    wire_seq: u64,
    timeout: Duration,
    backoff: Duration,
    /// The wait of the reconnect last scheduled (zero once the server has
    /// answered on a new connection).
    last_wait: Duration,
    scratch: Buffer,
    reply: Reply,
    timers: Timers<UpTimer>,
    registry: Registry,
    /// Counters.
    pub stats: UpStats,
    stopping: bool,
}

impl Upstream {
    /// An upstream to `addr`, not connected yet ([`Upstream::connect`]).
    pub fn new(
        role: &'static str,
        addr: SocketAddr,
        framing: Framing,
        timeout: Duration,
        bare_idle: Duration,
        registry: &Registry,
    ) -> io::Result<Self> {
        Ok(Upstream {
            role,
            announce: Vec::new(),
            deadline_armed: None,
            addr,
            conn: None,
            draining: None,
            gen: 0,
            inflight: VecDeque::new(),
            sent: 0,
            framing,
            bare_idle,
            replies: 0,
            refused: false,
            opened: Instant::now(),
            last_io: Instant::now(),
            keepalive: None,
            inflight_bytes: 0,
            secret: None,
            applied: 0,
            acked: 0,
            queued_seq: 0,
            wire_seq: 0,
            timeout,
            backoff: BACKOFF_MIN,
            last_wait: Duration::ZERO,
            scratch: Buffer::with_capacity(READ_CHUNK),
            reply: Reply::default(),
            timers: Timers::default(),
            registry: registry.try_clone()?,
            stats: UpStats::default(),
            stopping: false,
        })
    }

    /// Presents `secret` with every LEASE from now on.
    pub fn set_secret(&mut self, secret: Option<crate::peer::Secret>) {
        self.secret = secret;
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connected (not just connecting).
    pub fn connected(&self) -> bool {
        matches!(&self.conn, Some(c) if c.state() == State::Open)
    }

    /// True while an old connection is being drained.
    pub fn draining(&self) -> bool {
        self.draining.is_some()
    }

    /// The wait of the reconnect last scheduled after a failure (zero once
    /// the server has answered since).
    pub fn last_wait(&self) -> Duration {
        self.last_wait
    }

    /// The sequence number of the latest client request that may be on the
    /// wire (written at a flush, or being written).
    pub fn on_wire(&self) -> u64 {
        self.wire_seq
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> usize {
        self.inflight.len()
    }

    /// The nearest upstream deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Why a request cannot be queued now (the answer is then a 503), or
    /// `None` when it can: connected, or a connect in progress (requests
    /// are sent once connected), and room in the queue.
    pub fn refusal(&self) -> Option<&'static str> {
        if self.conn.is_none() {
            Some("upstream unavailable")
        } else if self.inflight.len() >= MAX_INFLIGHT || self.inflight_bytes >= MAX_INFLIGHT_BYTES {
            Some("upstream queue full")
        } else {
            None
        }
    }

    /// Queues a request (written at the next flush). Call only when
    /// [`Upstream::refusal`] is `None`.
    pub fn send(&mut self, req: UpReq, now: Instant) {
        debug_assert!(self.refusal().is_none());
        let Some(conn) = self.conn.as_mut() else { return };
        if self.framing != Framing::Bare || self.sent == 0 {
            write_request(conn, &req.kind, self.secret.as_ref());
            announce(&mut self.announce, &req);
            self.sent += 1;
        }
        self.inflight_bytes += req.kind.wire_bytes();
        self.stats.requests += 1;
        self.queued_seq = self.queued_seq.max(req.seq);
        self.last_io = now;
        if self.inflight.is_empty() && self.deadline_armed != Some(self.gen) {
            self.arm_deadline(now + self.timeout);
        }
        self.inflight.push_back(req);
    }

    /// Sets the deadline timer of the current connection for `at`.
    pub(super) fn arm_deadline(&mut self, at: Instant) {
        self.timers.add(at, UpTimer::Deadline, UPSTREAM.0, self.gen);
        self.deadline_armed = Some(self.gen);
    }

    /// Starts a nonblocking connect to the server.
    pub fn connect(&mut self, now: Instant) {
        self.gen += 1;
        (self.replies, self.refused) = (0, false);
        match Conn::connect(self.addr, UPSTREAM, self.gen, self.role, &self.registry, now, ()) {
            Ok(mut conn) => {
                conn.framer = Framer::new(self.framing);
                self.conn = Some(conn);
                self.arm_deadline(now + self.timeout);
                if self.framing == Framing::Line {
                    // Is the server coherent? Its answer says (a lease, or
                    // a 400 from a server that grants none). Queued first,
                    // so that every request of this connection comes after
                    // it (requests may queue while the connect is pending).
                    self.send(UpReq::own(UpKind::Lease, now), now);
                }
            }
            Err(e) => {
                warn!("proxy upstream {}: connect: {e}", self.addr);
                self.schedule_reconnect(now);
            }
        }
    }

    /// Handles an event on the upstream socket.
    pub fn on_event(&mut self, event: &Event, now: Instant, sink: &mut impl FnMut(UpEvent)) {
        let Some(conn) = self.conn.as_mut() else { return };
        if let State::Connecting { .. } = conn.state() {
            match conn.on_connect_event(&self.registry) {
                ConnectOutcome::Pending => return,
                ConnectOutcome::Connected => {
                    // The backoff is reset only once the server answers: a
                    // server at its connection limit accepts and closes.
                    info!("proxy upstream {}: connected", self.addr);
                    (self.opened, self.last_io) = (now, now);
                    (self.applied, self.acked) = (0, 0);
                    if let Some(k) = self.quiet_limit() {
                        self.timers.add(now + k, UpTimer::KeepAlive, UPSTREAM.0, self.gen);
                    }
                    sink(UpEvent::Connected);
                }
                ConnectOutcome::Failed(e) => {
                    let why = format!("connect failed: {e}");
                    return self.reset(code::UNAVAILABLE, &why, now, sink);
                }
            }
        }
        if event.is_error() {
            let e = self.conn.as_ref().and_then(|c| c.sock.take_error().ok().flatten());
            let why = match e {
                Some(e) => format!("upstream socket error: {e}"),
                None => "upstream socket error".to_string(),
            };
            return self.reset(code::BAD_GATEWAY, &why, now, sink);
        }
        if event.is_readable() || event.is_read_closed() {
            self.read(now, sink);
        }
        self.flush(now, sink);
    }

    /// Writes queued requests (once per loop pass, so requests from many
    /// clients leave in one write).
    pub fn flush(&mut self, now: Instant, sink: &mut impl FnMut(UpEvent)) {
        self.wire_seq = self.queued_seq;
        let Some(conn) = self.conn.as_mut() else { return };
        if conn.state() != State::Open {
            return;
        }
        // What this write carries, and for whom: the step between a
        // client's PENDING and the bytes leaving for the server.
        for what in self.announce.drain(..) {
            trace_event!(self.role, UPSTREAM, "SEND", "{what}");
        }
        if let WriteOutcome::Error(e) = conn.flush() {
            return self.reset(code::BAD_GATEWAY, &format!("upstream write failed: {e}"), now, sink);
        }
        if let Err(e) = conn.update_interest(&self.registry) {
            self.reset(code::BAD_GATEWAY, &format!("reregister: {e}"), now, sink);
        }
    }

    /// Drops the connection: every request in flight fails with `code`, in
    /// order, and (unless stopping) a reconnect is scheduled.
    pub fn reset(&mut self, code: u16, why: &str, now: Instant, sink: &mut impl FnMut(UpEvent)) {
        self.stats.resets += 1;
        self.announce.clear();
        if let Some(mut c) = self.conn.take() {
            c.close(&self.registry, why);
        }
        self.gen += 1;
        self.sent = 0;
        self.inflight_bytes = 0;
        sink(UpEvent::Disconnected);
        // Clients' requests fail with `code`; the proxy's own (its LEASE,
        // a keepalive, an ACK) are said as such: no client waits on them.
        let own: Vec<&str> = self
            .inflight
            .iter()
            .filter(|r| r.kind.is_own())
            .map(|r| r.kind.name())
            .collect();
        let clients = self.inflight.len() - own.len();
        let own_text = if own.is_empty() {
            String::new()
        } else {
            format!("; its own {} unanswered", own.join(", "))
        };
        if clients > 0 {
            warn!(
                "proxy upstream {}: {why}; failing {clients} client requests in flight with {code}{own_text}",
                self.addr
            );
        } else {
            info!("proxy upstream {}: {why}{own_text}", self.addr);
        }
        while let Some(req) = self.inflight.pop_front() {
            sink(UpEvent::Failed(req, code, why));
        }
        if !self.stopping {
            self.schedule_reconnect(now);
        }
    }

    /// The longest the connection may stay quiet: the server's idle
    /// policy, once learned.
    pub(super) fn quiet_limit(&self) -> Option<Duration> {
        self.keepalive
    }

    pub(super) fn schedule_reconnect(&mut self, now: Instant) {
        let wait = self.backoff;
        self.last_wait = wait;
        info!("proxy upstream {}: reconnecting in {} ms", self.addr, wait.as_millis());
        self.timers.add(now + wait, UpTimer::Reconnect, UPSTREAM.0, self.gen);
        self.backoff = (wait * 2).clamp(BACKOFF_MIN, BACKOFF_MAX);
    }

    /// No reconnects from now on (the proxy is stopping).
    pub fn stop(&mut self) {
        self.stopping = true;
    }

    /// Closes the connection (and one being drained) for good.
    pub fn close(&mut self, why: &str) {
        for mut c in [self.conn.take(), self.draining.take()].into_iter().flatten() {
            c.close(&self.registry, why);
        }
    }
}

/// Whose a request is, for the trace: a client's, or the proxy's own.
struct Whose<'a>(&'a UpReq);

impl std::fmt::Display for Whose<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.kind.is_own() {
            f.write_str("the proxy itself")
        } else {
            write!(f, "client {}", self.0.waiter.key)
        }
    }
}

/// Notes a request written into the output, for the trace's `SEND` line
/// at the next flush.
fn announce(out: &mut Vec<String>, req: &UpReq) {
    if crate::trace::enabled() {
        out.push(format!("{} for {}", req.kind.name(), Whose(req)));
    }
}

/// Encodes an upstream request into the connection's output; a LEASE
/// carries the peer secret, if there is one.
fn write_request(up: &mut Conn<()>, kind: &UpKind, secret: Option<&crate::peer::Secret>) {
    let key = |up: &mut Conn<()>| {
        if let Some(s) = secret {
            up.output.extend(b";KEY=");
            up.output.extend(s.expose());
        }
    };
    match kind {
        UpKind::Fetch(ind) => encode_request(&mut up.output, kind.op(), ind, &[]),
        UpKind::Put(ind, data) => encode_request(&mut up.output, kind.op(), ind, data),
        UpKind::Clr => encode_request(&mut up.output, kind.op(), &[], &[]),
        UpKind::Ping => encode_request(&mut up.output, kind.op(), &[0], &[]),
        UpKind::Lease => {
            encode_request(&mut up.output, kind.op(), &[], &[]);
            key(up);
        }
        UpKind::Resume { history, ind } => {
            encode_request(&mut up.output, kind.op(), ind, &[]);
            crate::proto::encode_field(&mut up.output, "ID", &format_args!("{:016x}", history.id));
            crate::proto::encode_field(&mut up.output, "SEQ", &history.seq);
            if let Some(sum) = history.sum {
                crate::proto::encode_field(&mut up.output, "SUM", &format_args!("{sum:016x}"));
            }
            key(up);
        }
        UpKind::Ack(seq) => {
            encode_request(&mut up.output, kind.op(), &[], &[]);
            crate::proto::encode_field(&mut up.output, "SEQ", seq);
        }
    }
    up.end_message();
}
