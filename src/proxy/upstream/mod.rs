//! The proxy's one connection to the server: connect and reconnect with
//! backoff, the FIFO of requests in flight, reading and pairing replies,
//! the request deadline, and the reset that fails everything in flight.
//!
//! It knows nothing of clients or of the cache: every reply (or failure)
//! is recorded as an [`UpEvent`] in its [`Outbox`], in the order the
//! requests were sent, which is the order the server applied them; the
//! node takes them after each call ([`Upstream::next_event`]).
//!
//! Rooms: this file (the connection, resetting), `send.rs` (queueing
//! and writing requests), `read.rs`
//! (pairing replies with requests), `timers.rs` (deadline, reconnect,
//! keepalive, a bare reply's end), `drain.rs` (an old connection the
//! server may still be reading), `outbox.rs` (the events, pure),
//! `pace.rs` (backoff and the learned idle policy, pure).
//!
//! One ordered connection is what makes the cache safe
//! (docs/architecture.md, "Why the proxy is linearizable"): a fetch's
//! reply is applied before the reply of a PUT sent after it. A pool of
//! connections would reopen that gap.

mod drain;
mod outbox;
mod pace;
mod read;
mod send;
mod timers;

pub use outbox::UpEvent;

use crate::buffer::Buffer;
use crate::conn::{is_peer_gone, read_limit, BarePause, Conn, ConnectOutcome, ReadOutcome, State, WriteOutcome};
use crate::framing::{Frame, Framer, Framing};
use crate::proto::{code, encode_ack, encode_lease_request, encode_request};
use crate::proxy::pending::{UpKind, UpReq};
use crate::reactor::{Timers, DRAINING, UPSTREAM};
use crate::trace_event;
use log::{info, warn};
use mio::event::Event;
use mio::Registry;
use outbox::{Outbox, Plain};
use pace::{Backoff, Close, IdlePolicy, KeepAlive};
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

/// Upstream counters for STS.
#[derive(Debug, Default)]
pub struct UpStats {
    /// Requests sent.
    pub requests: u64,
    /// Times the connection was dropped (failure, timeout, desync).
    pub resets: u64,
    /// Clients' fetches sent.
    pub fetches: u64,
    /// The GETs on the wire that carried them (fewer when the fetches of a
    /// pass go as one).
    pub fetch_gets: u64,
}

/// What the current connection has seen: how its close is read (an idle
/// close or a refusal), and the invalidations applied on it.
#[derive(Debug)]
struct Line {
    /// Replies received (503s not counted).
    replies: u64,
    /// The server answered 503: it is refusing (at its connection limit,
    /// say), so its close is never an idle close.
    refused: bool,
    /// When it was opened, and when it last carried a request or a reply.
    opened: Instant,
    last_io: Instant,
    /// Invalidations are applied up to this SEQ, and acknowledged up to
    /// `acked` (the ACK leaves after the read pass that applied them).
    applied: u64,
    acked: u64,
}

impl Line {
    fn new(now: Instant) -> Line {
        Line {
            replies: 0,
            refused: false,
            opened: now,
            last_io: now,
            applied: 0,
            acked: 0,
        }
    }
}

/// The connection to the server and what is in flight on it.
pub struct Upstream {
    /// The node name its trace lines carry (`proxy`).
    role: &'static str,
    addr: SocketAddr,
    framing: Framing,
    bare_idle: Duration,
    timeout: Duration,
    registry: Registry,
    /// The peer secret, presented with every LEASE (`--peer-secret-file`).
    secret: Option<crate::peer::Secret>,
    /// `None` while down (a reconnect timer is set).
    conn: Option<Conn<()>>,
    /// An old connection reset while the server may still be reading it:
    /// shut for writing and read until the server closes it.
    draining: Option<Conn<()>>,
    gen: u64,
    line: Line,
    inflight: VecDeque<UpReq>,
    /// How many of `inflight` are written (all of them for line framing;
    /// at most one for a bare server, which cannot tell messages apart
    /// without a pause).
    sent: usize,
    /// Bytes of the requests in flight (`MAX_INFLIGHT_BYTES` at most).
    inflight_bytes: usize,
    /// A fetch at the tail of `inflight`, not written yet, that the reads
    /// of the pass grow (docs/coherence.md, "Batching") until the flush or
    /// a request of another kind; `batch_bytes`, its indices' bytes.
    open: bool,
    batch_bytes: usize,
    /// A batch's indices take this many bytes at most (0: no batching).
    batch_max: usize,
    /// The greatest index the server has answered a GET for on this
    /// connection (-1: none yet). Only fetches within `0..=known` are
    /// batched: one of an index the table lacks is refused (400), and a
    /// refusal must reach only the request that earned it. A server's
    /// table does not shrink while a connection lives (`--resize` takes
    /// effect only at a start).
    known: i64,
    /// Who grew the open fetch, for the trace's `SEND` (only when tracing).
    merged: Vec<usize>,
    /// The latest client request queued, and the latest that may be on the
    /// wire (everything queued before a flush).
    queued_seq: u64,
    wire_seq: u64,
    backoff: Backoff,
    /// How long the connection may stay quiet before the proxy sends a
    /// keepalive: learned from the server closing an idle connection. (A
    /// lease is renewed by the session, `lease.rs`, not here.)
    idle: IdlePolicy,
    /// What happened, for the node to take.
    out: Outbox,
    /// Reading stopped with whole replies left because the outbox was
    /// full; `Some` until the node has taken its events and the read goes
    /// on ([`Upstream::read_more`]). The outcome the pass ended on, if it
    /// was the end of the connection, is kept for then.
    paused: Option<Option<ReadOutcome>>,
    /// The generation whose deadline timer is set, if one is: one timer
    /// re-arms itself for the oldest request, instead of one per request
    /// (a timer per request would churn the timer set on every miss).
    deadline_armed: Option<u64>,
    /// Requests written into the output since the last flush, described
    /// for the trace's `SEND` lines (filled only while tracing).
    announce: Vec<String>,
    scratch: Buffer,
    timers: Timers<UpTimer>,
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
            addr,
            framing,
            bare_idle,
            timeout,
            registry: registry.try_clone()?,
            secret: None,
            conn: None,
            draining: None,
            gen: 0,
            line: Line::new(Instant::now()),
            inflight: VecDeque::new(),
            sent: 0,
            inflight_bytes: 0,
            open: false,
            batch_bytes: 0,
            batch_max: 0,
            known: -1,
            merged: Vec::new(),
            queued_seq: 0,
            wire_seq: 0,
            backoff: Backoff::default(),
            idle: IdlePolicy::default(),
            out: Outbox::default(),
            paused: None,
            deadline_armed: None,
            announce: Vec::new(),
            scratch: Buffer::with_capacity(crate::conn::READ_CHUNK),
            timers: Timers::default(),
            stats: UpStats::default(),
            stopping: false,
        })
    }

    /// Sends the fetches of a pass as one GET, up to `bytes` of indices
    /// (0: each on its own). Keep it under the server's
    /// `--max-message-bytes`.
    pub fn set_batch_bytes(&mut self, bytes: usize) {
        self.batch_max = bytes;
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
        self.backoff.last()
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

    /// The oldest event not taken yet: the node takes every one after each
    /// call that may have recorded some.
    pub fn next_event(&mut self) -> Option<UpEvent<'_>> {
        self.out.next()
    }

    /// Goes on reading when a read stopped at the outbox's bound (its
    /// events are taken now); false when there was none to go on with.
    pub fn read_more(&mut self, now: Instant) -> bool {
        if self.paused.is_none() || !self.out.is_empty() {
            return false;
        }
        self.read(now);
        true
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

    /// Starts a nonblocking connect to the server.
    pub fn connect(&mut self, now: Instant) {
        self.gen += 1;
        self.line = Line::new(now);
        self.paused = None;
        self.known = -1;
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
    pub fn on_event(&mut self, event: &Event, now: Instant) {
        let Some(conn) = self.conn.as_mut() else { return };
        if let State::Connecting { .. } = conn.state() {
            match conn.on_connect_event(&self.registry) {
                ConnectOutcome::Pending => return,
                ConnectOutcome::Connected => {
                    // The backoff is reset only once the server answers: a
                    // server at its connection limit accepts and closes.
                    info!("proxy upstream {}: connected", self.addr);
                    self.line = Line::new(now);
                    if let Some(k) = self.idle.limit() {
                        self.timers.add(now + k, UpTimer::KeepAlive, UPSTREAM.0, self.gen);
                    }
                    self.out.push(Plain::Connected);
                }
                ConnectOutcome::Failed(e) => {
                    let why = format!("connect failed: {e}");
                    return self.reset(code::UNAVAILABLE, &why, now);
                }
            }
        }
        if event.is_error() {
            let e = self.conn.as_ref().and_then(|c| c.sock.take_error().ok().flatten());
            let why = match e {
                Some(e) => format!("upstream socket error: {e}"),
                None => "upstream socket error".to_string(),
            };
            return self.reset(code::BAD_GATEWAY, &why, now);
        }
        if event.is_readable() || event.is_read_closed() {
            self.read(now);
        }
        // The pass's open fetch stays open: reads of clients later in this
        // pass may still grow it, and the pass's last flush writes it.
        self.write_out(now);
    }

    /// Drops the connection: every request in flight fails with `code`, in
    /// order, and (unless stopping) a reconnect is scheduled.
    pub fn reset(&mut self, code: u16, why: &str, now: Instant) {
        self.stats.resets += 1;
        self.announce.clear();
        self.merged.clear();
        if let Some(mut c) = self.conn.take() {
            c.close(&self.registry, why);
        }
        self.gen += 1;
        self.sent = 0;
        self.inflight_bytes = 0;
        (self.open, self.batch_bytes) = (false, 0);
        self.paused = None;
        self.out.push(Plain::Disconnected);
        self.log_reset(code, why);
        let reason = self.out.reason(why);
        while let Some(req) = self.inflight.pop_front() {
            self.out.failed(req, code, reason);
        }
        if !self.stopping {
            self.schedule_reconnect(now);
        }
    }

    /// Says what a reset fails: clients' requests fail with `code`; the
    /// proxy's own (its LEASE, a keepalive, an ACK) are said as such, as
    /// no client waits on them.
    fn log_reset(&self, code: u16, why: &str) {
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
    }

    pub(super) fn schedule_reconnect(&mut self, now: Instant) {
        let wait = self.backoff.wait();
        info!("proxy upstream {}: reconnecting in {} ms", self.addr, wait.as_millis());
        self.timers.add(now + wait, UpTimer::Reconnect, UPSTREAM.0, self.gen);
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
