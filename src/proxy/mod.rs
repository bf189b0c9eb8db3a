//! The caching proxy: clients on one side, one pipelined upstream
//! connection to the server on the other, a cache in between.
//!
//! ```text
//!  client A ──► [slots: Ready(hit) Waiting(#7) Ready(hit)] ──► replies in order
//!  client B ──► [slots: Waiting(#8)]
//!                         ▲                     ▲
//!                         │ fill on reply       │
//!   upstream: inflight = [#7 Fetch{3,4} → A.seq 12, #8 Put{1} → B.seq 3]  ◄── replies in order
//! ```
//!
//! Every client connection owns a FIFO of *slots* ([`pending::Slots`]), one
//! per request still unanswered; a reply is written only once every slot
//! before it is ready, so a client's replies leave in request order, while
//! another client's hits never wait (no head-of-line blocking across
//! clients). The upstream connection owns a FIFO of *in-flight requests*;
//! the server answers in order, so each reply belongs to the head.
//!
//! Worked example (capacity 2, cache {1:10}): client A pipelines `GET 1,3`
//! and `GET 1`. Index 1 is a hit, 3 a miss: the proxy sends `OP=GET;IND=3`
//! upstream, pushes a `Waiting` slot for A, and remembers "A wants [10, ?]".
//! `GET 1` is a hit too, decided now and queued behind as `Ready` (no write
//! to 1 is in flight, so 1 is still 10 when the fetch takes effect). The
//! server answers `DATA=30`: 3 enters the cache ({1:10, 3:30}), A's first
//! reply is built (`IND=1,3;DATA=10,30`), and both replies leave in one
//! write. Had A pipelined `PUT 1=5` before `GET 1`, the GET would have gone
//! upstream behind the PUT and read 5 (docs/architecture.md).
//!
//! The rooms, following a request:
//! - [`service`]: the handlers: parse, decide, queue;
//! - [`core`]: what they keep between events, and the session's moves;
//! - `answers`: `complete` an upstream answer into the cache and replies;
//! - [`decide`]: hit or fetch, pure;
//! - [`reads`]: the reads waiting on a fetch, and coalescing others onto
//!   it, pure;
//! - [`lease`]: the session with the server (lease, renewal, refusal,
//!   resume), one state machine, pure;
//! - [`pending`]: the client slots and the in-flight request, pure;
//! - [`upstream`]: the server connection; what happens there is recorded
//!   as events the node takes (`ProxyNode::deliver`);
//! - [`counters`]: what STS counts, pure; [`stats`]: STS and DMP;
//! - this file: the node that wires them to the reactor.

mod answers;
pub mod core;
pub mod counters;
pub mod decide;
pub mod lease;
pub mod pending;
pub mod pool;
pub mod reads;
pub mod service;
pub mod stats;
pub mod upstream;

use self::core::ProxyCore;
use crate::framing::Framing;
use crate::frontend::{Frontend, Limits};
use crate::proto::code;
use crate::reactor::{earliest, Bound, LoopStats, Node, Reactor, DRAINING, UPSTREAM};
use log::info;
use mio::event::Event;
use mio::Token;
use pending::Slots;
use service::ProxyService;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use upstream::Upstream;

/// Settings of a proxy.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Where clients connect (port 0 picks one).
    pub listen: SocketAddr,
    /// The server.
    pub upstream: SocketAddr,
    /// Cache entries at most.
    pub capacity: usize,
    /// The eviction policy, by name (`crate::cache::POLICIES`).
    pub policy: &'static str,
    /// An upstream request not answered in this time fails with 504.
    pub upstream_timeout: Duration,
    /// The fetches of one loop pass go as one GET, up to this many bytes of
    /// indices (0: each alone). Under the server's `--max-message-bytes`.
    pub upstream_batch_bytes: usize,
    /// Limits on clients (`bare_idle` also ends a bare upstream's replies).
    pub limits: Limits,
    /// How the server frames messages: `Line`, or `Bare` for a naive
    /// server (then one request at a time).
    pub upstream_framing: Framing,
    /// The node name its trace lines carry, on its client side and on its
    /// upstream (`U`) alike (`proxy`; the demo's second proxy is `proxy2`).
    pub trace_name: &'static str,
    /// The file holding the peer secret the server asks of lease holders
    /// (`--peer-secret-file`, the server's file).
    pub peer_secret_file: Option<std::path::PathBuf>,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            listen: "127.0.0.1:8081".parse().expect("literal address"),
            upstream: "127.0.0.1:8080".parse().expect("literal address"),
            capacity: 5,
            policy: "fifo",
            upstream_timeout: Duration::from_millis(5000),
            upstream_batch_bytes: 8192,
            limits: Limits::default(),
            upstream_framing: Framing::Line,
            trace_name: "proxy",
            peer_secret_file: None,
        }
    }
}

/// The proxy's node: its listening side, its core and its upstream.
pub struct ProxyNode {
    front: Frontend<Slots>,
    /// The cache, the handlers and the upstream.
    svc: ProxyService,
    /// Clients that got replies from upstream in this pass (flushed once
    /// each in `tick`).
    dirty: Vec<usize>,
    spare_dirty: Vec<usize>,
}

impl ProxyNode {
    /// Applies every event the upstream recorded, in order: each is
    /// completed into the cache and the replies it makes, which go into
    /// their clients' slots. A client that is gone (or whose key now
    /// belongs to another connection) is skipped: the reply is dropped.
    /// Called after every upstream call.
    fn deliver(&mut self, now: Instant) {
        loop {
            let ProxyService { core, up } = &mut self.svc;
            while let Some(event) = up.next_event() {
                core.complete(event, now);
                for (w, body) in core.made.iter() {
                    let Some(conn) = self.front.conns.get_mut(w.key).filter(|c| c.gen == w.gen) else {
                        continue;
                    };
                    let end = conn.framer.framing().terminator();
                    if conn.ext.fill(w.seq, body, end, &mut conn.output) {
                        crate::trace_event!(
                            conn.role,
                            conn.token,
                            "QUEUED",
                            "reply queued (the server answered), {} bytes to write",
                            conn.output.len()
                        );
                        // (A client's replies to one fetch mostly come
                        // together, its reads of a pass having joined the
                        // fetch one after another: its key once for the
                        // run, not once a reply.)
                        if self.dirty.last() != Some(&w.key) {
                            self.dirty.push(w.key);
                        }
                    }
                }
                core.made.clear();
            }
            // A read that stopped at the outbox's bound goes on now.
            if !self.svc.up.read_more(now) {
                break;
            }
        }
        self.svc.up.acknowledge(now);
    }

    /// Flushes the clients that got replies, and the requests they (or
    /// anyone) queued upstream meanwhile.
    fn flush_dirty(&mut self, now: Instant) {
        self.svc.up.flush(now);
        self.deliver(now);
        while !self.dirty.is_empty() {
            // Swapped with a spare list, not taken: both keep their room,
            // so delivering allocates nothing once warm.
            let mut keys = std::mem::take(&mut self.spare_dirty);
            std::mem::swap(&mut keys, &mut self.dirty);
            keys.sort_unstable();
            keys.dedup();
            for &key in &keys {
                self.front.after_io(&mut self.svc, key, now);
            }
            // Resumed clients may have queued more upstream.
            keys.clear();
            self.spare_dirty = keys;
            self.svc.up.flush(now);
            self.deliver(now);
        }
    }
}

impl Node for ProxyNode {
    fn ready(&mut self, token: Token, event: &Event, now: Instant) {
        if token == UPSTREAM {
            self.svc.up.on_event(event, now);
            self.deliver(now);
        } else if token == DRAINING {
            self.svc.up.on_drain_event();
            self.deliver(now);
        } else {
            self.front.ready(&mut self.svc, token, event, now);
        }
    }

    fn tick(&mut self, now: Instant) -> Option<Instant> {
        if self.front.stop_deadline().is_some_and(|d| now >= d) && self.svc.up.in_flight() > 0 {
            // Stopping, and the server has not answered in time: every
            // request still upstream gets its 503 now, in its turn, so the
            // frontend can flush it before it closes the connections.
            self.svc.up.reset(code::UNAVAILABLE, "proxy stopping", now);
            self.deliver(now);
            self.flush_dirty(now);
        }
        self.front.tick(&mut self.svc, now);
        self.svc.up.fire_timers(now);
        self.deliver(now);
        // The session's own requests: a resuming LEASE, a refused proxy's
        // retry, a quiet lease's renewal. Without room upstream now, they
        // wait for the next pass (a lost connection starts over).
        if self.svc.up.refusal().is_none() {
            let own = self.svc.core.to_send.take().or_else(|| self.svc.core.tick(now));
            if let Some(kind) = own {
                self.svc.up.send(pending::UpReq::own(kind, now), now);
            }
        }
        self.flush_dirty(now);
        if self.front.stopping() && self.front.conns.is_empty() {
            self.svc.up.close("proxy stopped");
        }
        // Asked after delivering: a client resumed by an upstream reply may
        // have yielded its turn and wait to be served again.
        let next = earliest(self.front.next_deadline(now), self.svc.up.next_deadline());
        // The session's renewal or retry waits while the upstream cannot
        // take a request (its answers, which free room, wake the loop): a
        // deadline already past would spin it.
        let session = self
            .svc
            .up
            .refusal()
            .is_none()
            .then(|| self.svc.core.lease.next_deadline());
        earliest(next, session.flatten())
    }

    fn stop(&mut self, now: Instant) {
        info!("proxy stopping: {} clients to finish", self.front.conns.len());
        self.svc.up.stop();
        self.front.stop(&mut self.svc, now);
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
        let secret = cfg
            .peer_secret_file
            .as_deref()
            .map(crate::peer::Secret::from_file)
            .transpose()?;
        let reactor = Reactor::new()?;
        let front = Frontend::bind(cfg.listen, cfg.trace_name, cfg.limits.clone(), reactor.registry())?;
        let cache = crate::cache::by_name(cfg.policy, cfg.capacity)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("no cache policy {:?}", cfg.policy)))?;
        info!(
            "proxy listening on {}, upstream {}, cache of {} entries ({})",
            front.local_addr(),
            cfg.upstream,
            cfg.capacity,
            cfg.policy
        );
        if cfg.upstream_framing == Framing::Bare {
            log::warn!(
                "proxy: a bare upstream grants no leases: this proxy must be the only writer's path (docs/coherence.md)"
            );
        }
        let mut up = Upstream::new(
            cfg.trace_name,
            cfg.upstream,
            cfg.upstream_framing,
            cfg.upstream_timeout,
            cfg.limits.bare_idle,
            reactor.registry(),
        )?;
        up.set_secret(secret);
        up.set_batch_bytes(cfg.upstream_batch_bytes);
        up.connect(Instant::now());
        let node = ProxyNode {
            front,
            svc: ProxyService {
                core: ProxyCore::new(cache, cfg.upstream_framing == Framing::Line, cfg.trace_name),
                up,
            },
            dirty: Vec::new(),
            spare_dirty: Vec::new(),
        };
        let addr = node.front.local_addr();
        Ok(Bound::new(reactor, node, addr, "proxy"))
    }
}
