//! The listening side shared by the server and the proxy: the listener,
//! the slab of accepted connections, and everything a network service owes
//! its peers whatever it serves — the accept loop and connection limit, the
//! read → parse → reply pump, backpressure, idle timeouts and graceful stop.
//!
//! What a message *means* is the [`Service`]'s business
//! (`server/service.rs`, `proxy/service.rs`); this file never looks inside
//! a message.
//!
//! The pump for one connection, on a READABLE event:
//!
//! ```text
//!   read_pass (read until WouldBlock / EOF / its share of the turn)
//!     -> next_message ... service.on_message   (every whole message, in order)
//!                     ... service.reject       (an oversize one: a 413 in its turn)
//!     -> pause if the peer is not reading its replies
//!   flush (one write for the whole batch of replies)
//!   close if the peer half-closed and nothing more is owed
//! ```
//!
//! Every reply goes through the service, errors included: this file never
//! writes reply bytes, so a reply always takes its place in order.

pub mod fds;
mod pump;
mod timers;

use crate::buffer::Buffer;
use crate::conn::{Conn, State, READ_CHUNK};
use crate::framing::{Framer, Framing};
use crate::proto::{encode_field, Op, Problem, DEFAULT_MAX_MESSAGE_BYTES, TOO_MANY_CONNECTIONS};
use crate::reactor::{LoopStats, Timers, LISTENER};
use crate::trace_event;
use log::{debug, info, warn};
use mio::net::TcpListener;
use mio::{Interest, Registry, Token};
use slab::Slab;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Full read passes (or resumes) one connection gets per turn before the
/// others are served (about 1 MiB of input).
const MAX_ROUNDS: usize = 16;

/// The bounds a listening node enforces (docs/architecture.md, "Limits").
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections served at once; more are accepted and closed at once.
    pub max_connections: usize,
    /// A connection with no whole message for this long is closed.
    pub idle_timeout: Duration,
    /// Bound on one message's body.
    pub max_message_bytes: usize,
    /// Stop reading from a connection whose unsent output exceeds this.
    pub max_pending_output: usize,
    /// Silence that ends a message of a bare (unterminated) peer.
    pub bare_idle: Duration,
    /// How long a graceful stop waits for owed replies before it closes
    /// what is still open.
    pub stop_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 10_000,
            idle_timeout: Duration::from_millis(300_000),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_pending_output: 256 * 1024,
            bare_idle: Duration::from_millis(15),
            stop_timeout: Duration::from_secs(5),
        }
    }
}

/// The frontend's own timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FrontTimer {
    /// A connection's idle timeout.
    Idle,
    /// The end of a bare message (the peer's pause).
    BareIdle,
    /// Retry `accept` after running out of file descriptors.
    Accept,
    /// Give up waiting for connections to drain at stop.
    StopDeadline,
}

/// What a listening node does with messages. The service owns every reply
/// to a connection: its answers and its errors.
pub trait Service {
    /// The service's own per-connection state.
    type Ext: Default;
    /// A whole message arrived: its body is `conn.input.data()[..body]`.
    /// The reply (or a place for it) goes into `conn.output`, ended by
    /// `conn.end_message()`.
    fn on_message(&mut self, conn: &mut Conn<Self::Ext>, body: usize, front: &FrontInfo, now: Instant);
    /// The messages of one connection's input are about to be handled, one
    /// after another, with nothing else between them: every one of them
    /// arrived before this call. (The proxy reads the clock for its lease
    /// once per batch, lazily, rather than once per request.)
    fn batch_begins(&mut self) {}
    /// A message the framing refused (over `--max-message-bytes`): the
    /// service answers `problem` in the message's turn, like any reply.
    fn reject(&mut self, conn: &mut Conn<Self::Ext>, op: Option<Op>, problem: &Problem);
    /// True while `conn` is owed replies not yet in its output.
    fn owes(&self, conn: &Conn<Self::Ext>) -> bool;
    /// True when `conn` should stop sending more requests for now (the
    /// proxy's pending queue is long).
    fn congested(&self, _conn: &Conn<Self::Ext>) -> bool {
        false
    }
    /// Bytes of replies owed to `conn` that are not in its output yet
    /// (decided and queued, or still to come): they count against its
    /// pending-output limit like bytes already in the output.
    fn owed_bytes(&self, _conn: &Conn<Self::Ext>) -> usize {
        0
    }
    /// What a reply not yet queued waits for, in this service's words (the
    /// trace's `PENDING` line).
    fn pending_note(&self) -> &'static str;
    /// `conn` is closing: drop whatever refers to it.
    fn on_close(&mut self, conn: &mut Conn<Self::Ext>);
    /// Whether the connection's output must wait before it is written (a
    /// durable server's replies wait for their pass's log commit); the
    /// service then remembers the connection and has it flushed later.
    fn hold(&mut self, _conn: &Conn<Self::Ext>) -> bool {
        false
    }
    /// The output of `conn` has room: the service may run what it queued
    /// for it (the server's requests behind a write it just applied), as
    /// far as the room goes. True if it added anything.
    fn catch_up(&mut self, _conn: &mut Conn<Self::Ext>, _front: &FrontInfo, _now: Instant) -> bool {
        false
    }
}

/// Counters of the listening side.
#[derive(Debug, Default, Clone)]
pub struct FrontStats {
    /// Connections accepted and served.
    pub accepted: u64,
    /// Connections refused at the `max_connections` limit.
    pub rejected: u64,
    /// Connections closed for idleness.
    pub idle_closed: u64,
    /// Times a connection's reading was paused for backpressure.
    pub paused: u64,
    /// Whole messages received.
    pub messages: u64,
    /// The event loop's own counters.
    pub reactor: LoopStats,
}

/// What a service may read about the listening side (for STS).
pub struct FrontInfo<'a> {
    /// Counters.
    pub stats: &'a FrontStats,
    /// Connections open now.
    pub connections: usize,
    /// Timers set now (idle and bare-pause timers of the connections).
    pub timers: usize,
}

impl FrontInfo<'_> {
    /// The STS fields about connections, the same for every node.
    pub fn encode_conn_fields(&self, out: &mut Buffer) {
        let s = self.stats;
        encode_field(out, "CONNS", &self.connections);
        encode_field(out, "ACCEPTED", &s.accepted);
        encode_field(out, "REJECTED", &s.rejected);
        encode_field(out, "IDLE_CLOSED", &s.idle_closed);
        encode_field(out, "PAUSED", &s.paused);
        encode_field(out, "REQS", &s.messages);
    }

    /// The STS fields about the event loop, the same for every node.
    pub fn encode_loop_fields(&self, out: &mut Buffer) {
        let r = &self.stats.reactor;
        encode_field(out, "WAKEUPS", &r.wakeups);
        encode_field(out, "EVENTS", &r.events);
        encode_field(out, "FULL_BATCHES", &r.full_batches);
        encode_field(out, "BUSY_US", &r.busy_us);
        encode_field(out, "TIMERS", &self.timers);
    }
}

/// The listener and its connections.
pub struct Frontend<X> {
    role: &'static str,
    listener: Option<TcpListener>,
    addr: SocketAddr,
    /// Accepted connections; a connection's token is its key.
    pub conns: Slab<Conn<X>>,
    /// The bounds enforced.
    pub limits: Limits,
    /// Idle and bare-framing deadlines of the connections.
    pub timers: Timers<FrontTimer>,
    registry: Registry,
    /// The read buffer a connection borrows while it reads.
    scratch: Buffer,
    next_gen: u64,
    /// Counters.
    pub stats: FrontStats,
    stopping: bool,
    /// When a graceful stop gives up waiting for owed replies.
    stop_at: Option<Instant>,
    /// Connections that yielded their turn, to serve again in `tick`.
    requeue: Vec<(usize, u64)>,
    /// A descriptor kept to refuse a connection when none is left.
    reserve: fds::Reserve,
}

impl<X: Default> Frontend<X> {
    /// Binds and listens on `addr` (port 0 picks a free port), registered
    /// under `LISTENER`.
    pub fn bind(addr: SocketAddr, role: &'static str, mut limits: Limits, registry: &Registry) -> io::Result<Self> {
        // More connections than descriptors would leave the extra ones
        // silent in the backlog: lower the limit so each gets its 503.
        let nofile = fds::open_file_limit();
        let fit = fds::fitting(limits.max_connections, nofile);
        if fit < limits.max_connections {
            info!(
                "{role}: --max-connections lowered from {} to {fit} to fit the open-file limit of {} (ulimit -n)",
                limits.max_connections,
                nofile.unwrap_or(0)
            );
            limits.max_connections = fit;
        }
        // mio's bind performs socket(2), setsockopt(SO_REUSEADDR), bind(2)
        // and listen(2) in one call; the trace shows the three steps.
        let mut listener = TcpListener::bind(addr)?;
        let local = listener.local_addr()?;
        trace_event!(role, LISTENER, "SOCKET", "socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK)");
        trace_event!(role, LISTENER, "BIND", "bound to {local}");
        trace_event!(role, LISTENER, "LISTEN", "listening");
        registry.register(&mut listener, LISTENER, Interest::READABLE)?;
        Ok(Frontend {
            role,
            listener: Some(listener),
            addr: local,
            conns: Slab::new(),
            limits,
            timers: Timers::default(),
            registry: registry.try_clone()?,
            scratch: Buffer::with_capacity(READ_CHUNK),
            next_gen: 1,
            stats: FrontStats::default(),
            stopping: false,
            stop_at: None,
            requeue: Vec::new(),
            reserve: fds::Reserve::new(),
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The registry (nodes use it for their other sockets).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// True once stop was asked and every connection is gone.
    pub fn finished(&self) -> bool {
        self.stopping && self.conns.is_empty()
    }

    /// Whether stop was asked.
    pub fn stopping(&self) -> bool {
        self.stopping
    }

    /// When a graceful stop closes the connections still open (a node
    /// with requests elsewhere, the proxy, answers them before).
    pub fn stop_deadline(&self) -> Option<Instant> {
        self.stop_at
    }

    /// Accepts until WouldBlock.
    fn accept(&mut self, now: Instant) {
        let Some(listener) = &self.listener else { return };
        loop {
            let (mut sock, peer) = match listener.accept() {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
                Err(e) if fds::out_of_fds(&e) && self.reserve.spend(|| Self::refuse_one(listener)) == Some(true) => {
                    // No descriptor was left for it: one freed for the
                    // moment let it be told 503 and closed. (The reserve
                    // is back: the next may be refused the same way.)
                    self.stats.rejected += 1;
                    trace_event!(self.role, LISTENER, "REJECT", "out of file descriptors: {e}");
                    continue;
                }
                Err(e) => {
                    // EMFILE/ENFILE and the like: the pending connection
                    // stays in the backlog, and no new edge will come for
                    // it, so retry from a timer.
                    warn!("{} accept failed: {e}; retrying in 100 ms", self.role);
                    self.timers
                        .add(now + Duration::from_millis(100), FrontTimer::Accept, LISTENER.0, 0);
                    return;
                }
            };
            if self.conns.len() >= self.limits.max_connections {
                self.stats.rejected += 1;
                // Best effort: a fresh socket's buffer is empty, so this
                // short write normally goes through whole.
                let _ = sock.write(TOO_MANY_CONNECTIONS);
                debug!("{} rejected {peer}: {} connections", self.role, self.conns.len());
                trace_event!(
                    self.role,
                    LISTENER,
                    "REJECT",
                    "max-connections {} reached",
                    self.limits.max_connections
                );
                continue;
            }
            let _ = sock.set_nodelay(true);
            let entry = self.conns.vacant_entry();
            let token = Token(entry.key());
            let gen = self.next_gen;
            self.next_gen += 1;
            let mut conn = Conn::new(sock, token, gen, self.role, State::Open, now, X::default());
            conn.peer = Some(peer);
            // Line or bare: decided by the first message (docs/protocol.md).
            conn.framer = Framer::new(Framing::Detect);
            trace_event!(
                self.role,
                token,
                "ACCEPT",
                "local {}, peer {peer}",
                conn.sock
                    .local_addr()
                    .map_or_else(|_| "?".to_string(), |a| a.to_string())
            );
            if let Err(e) = conn.register(&self.registry) {
                warn!("{} cannot register {peer}: {e}", self.role);
                continue;
            }
            if !crate::trace::enabled() {
                debug!("{} tok={} peer={peer}: accepted", self.role, token.0);
            }
            let idle_at = now + self.limits.idle_timeout;
            conn.idle_at = Some(idle_at);
            entry.insert(conn);
            self.stats.accepted += 1;
            self.timers.add(idle_at, FrontTimer::Idle, token.0, gen);
        }
    }

    /// Accepts one connection only to answer it 503 and close it (none was
    /// left silent for want of a descriptor); false if none was waiting.
    fn refuse_one(listener: &TcpListener) -> bool {
        match listener.accept() {
            Ok((mut sock, peer)) => {
                let _ = sock.write(TOO_MANY_CONNECTIONS);
                debug!("refused {peer}: out of file descriptors");
                true
            }
            Err(_) => false,
        }
    }

    /// The connections served at once at most (`--max-connections`,
    /// lowered at start to fit the open-file limit).
    pub fn max_connections(&self) -> usize {
        self.limits.max_connections
    }

    /// Closes and forgets a connection, and cancels its timers.
    pub fn close<S: Service<Ext = X>>(&mut self, svc: &mut S, key: usize, why: &str) {
        if let Some(mut conn) = self.conns.try_remove(key) {
            if let Some(at) = conn.idle_at {
                self.timers.remove(at, FrontTimer::Idle, key, conn.gen);
            }
            if let Some(at) = conn.bare_deadline() {
                self.timers.remove(at, FrontTimer::BareIdle, key, conn.gen);
            }
            svc.on_close(&mut conn);
            conn.close(&self.registry, why);
        }
    }
}
