//! `tablecache link`: a node that sits on a TCP path and shapes it, for
//! latency measurements and fault tests. Every connection to `--listen`
//! gets one to `--upstream`, and bytes flow both ways through a [`Pipe`]
//! each: delayed, jittered (never reordered), paced to a bandwidth, cut
//! into slices, held (a blackhole), dropped (a one-way cut), or reset.
//! A control connection (`--control`, docs/protocol.md) changes all of it
//! at run time and reports counters.
//!
//! ```text
//!   client ──> link :listen ──(pipe UP: delay, jitter, bandwidth, faults)──> upstream
//!          <──              <──(pipe DOWN ........................)──
//!   tests  ──> link :control   OP=SET / OP=FAULT / OP=STS
//! ```
//!
//! Memory is bounded: each pipe holds at most `--buffer-bytes` (a full
//! pipe stops reading its source: a blackholed link backs up into the
//! sender's socket, not into the link), `--max-connections` pairs, a
//! control line at most 512 bytes and 16 control connections.

pub mod control;
mod ctl;
pub mod pair;
pub mod pipe;

use crate::bench::pacer::{Pacer, PACER};
use crate::reactor::{Bound, LoopStats, Node, Reactor, Timers, LISTENER};
use crate::trace_event;
use control::{Control, Dir};
use log::{info, warn};
use mio::event::Event;
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use pair::{End, Pair, PairState};
use pipe::Shape;
use slab::Slab;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

/// Tokens of the upstream sockets: `LINK_UPSTREAM + key` (traced `U<key>`).
pub use crate::reactor::LINK_UPSTREAM;
/// Tokens of control connections: `LINK_CONTROL + key`.
pub use crate::reactor::{CONTROL_LISTENER, LINK_CONTROL};

/// What a link is told at start.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// Where clients connect.
    pub listen: SocketAddr,
    /// Where each connection is passed on.
    pub upstream: SocketAddr,
    /// Where the control connection listens (none: no control).
    pub control: Option<SocketAddr>,
    /// The shape of each direction at start (0: up, client → upstream).
    pub shapes: [Shape; 2],
    /// Bytes each pipe holds at most.
    pub buffer_bytes: usize,
    /// Connections through the link at once; more are closed at accept.
    pub max_connections: usize,
    /// Seeds the jitter.
    pub seed: u64,
}

/// The link's counters (STS).
#[derive(Debug, Default, Clone)]
pub struct LinkStats {
    /// Connections accepted, refused at the limit, and failed upstream.
    pub accepted: u64,
    /// Refused at `--max-connections`.
    pub refused: u64,
    /// Upstream connects that failed.
    pub connect_failed: u64,
    /// Connections reset (by a fault, a limit, or a socket error).
    pub resets: u64,
    /// Faults and shapes applied through the control connection.
    pub controls: u64,
}

/// The node.
pub struct LinkNode {
    registry: Registry,
    listener: Option<TcpListener>,
    ctl: ctl::Controls,
    pairs: Slab<Pair>,
    shapes: [Shape; 2],
    timers: Timers<usize>,
    cfg: LinkConfig,
    stats: LinkStats,
    next_gen: u64,
    scratch: Vec<u8>,
    stopping: bool,
    loop_stats: LoopStats,
    /// Wakes the loop at a release time to the microsecond (`None` where
    /// there is no timerfd: to the millisecond then).
    pacer: Option<Pacer>,
}

/// A bound link, ready to run.
pub type Link = Bound<LinkNode>;

impl LinkNode {
    /// Binds the listener (and the control listener).
    pub fn bind(cfg: LinkConfig) -> io::Result<(Link, Option<SocketAddr>)> {
        let reactor = Reactor::new()?;
        let registry = reactor.registry().try_clone()?;
        let mut listener = TcpListener::bind(cfg.listen)?;
        registry.register(&mut listener, LISTENER, Interest::READABLE)?;
        let addr = listener.local_addr()?;
        trace_event!(
            "link",
            LISTENER,
            "LISTEN",
            "listening on {addr}, passing on to {}",
            cfg.upstream
        );
        let ctl = ctl::Controls::bind(cfg.control, &registry)?;
        let pacer = Pacer::new(&registry).ok();
        let control_addr = ctl.addr();
        let node = LinkNode {
            registry,
            listener: Some(listener),
            ctl,
            pairs: Slab::new(),
            shapes: cfg.shapes,
            timers: Timers::default(),
            stats: LinkStats::default(),
            next_gen: 1,
            scratch: vec![0; 16 * 1024],
            stopping: false,
            loop_stats: LoopStats::default(),
            pacer,
            cfg,
        };
        Ok((Bound::new(reactor, node, addr, "link"), control_addr))
    }

    fn accept(&mut self) {
        let Some(listener) = &self.listener else { return };
        loop {
            let (sock, peer) = match listener.accept() {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if matches!(e.kind(), io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted) => continue,
                Err(e) => {
                    // Out of descriptors and the like: the connection stays
                    // in the backlog; the next accept (on the next
                    // connection's edge) takes it.
                    warn!("link accept failed: {e}");
                    return;
                }
            };
            if self.pairs.len() >= self.cfg.max_connections {
                self.stats.refused += 1;
                trace_event!(
                    "link",
                    LISTENER,
                    "REJECT",
                    "max-connections {} reached",
                    self.cfg.max_connections
                );
                continue; // dropped: the client sees the close
            }
            self.stats.accepted += 1;
            let _ = sock.set_nodelay(true);
            let entry = self.pairs.vacant_entry();
            let key = entry.key();
            let tokens = [Token(key), Token(LINK_UPSTREAM + key)];
            if let Ok(local) = sock.local_addr() {
                trace_event!("link", tokens[0], "ACCEPT", "local {local}, peer {peer}");
            }
            trace_event!(
                "link",
                tokens[1],
                "CONNECT_START",
                "connect() in progress (EINPROGRESS)"
            );
            let up = match TcpStream::connect(self.cfg.upstream) {
                Ok(s) => s,
                Err(e) => {
                    self.stats.connect_failed += 1;
                    trace_event!("link", tokens[1], "CONNECT_FAILED", "connect() failed at once: {e}");
                    continue; // the accepted socket is dropped: closed
                }
            };
            let gen = self.next_gen;
            self.next_gen += 1;
            let seed = self.cfg.seed ^ gen.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let mut pair = Pair::new(gen, [sock, up], tokens, self.cfg.buffer_bytes, seed);
            if let Err(e) = pair.register(&self.registry) {
                warn!("link: cannot register a connection from {peer}: {e}");
                continue;
            }
            entry.insert(pair);
        }
    }

    /// Everything a pair can do now: finish its connect, read, write,
    /// pass FINs on, set its timers; closes or resets it when it ends.
    fn pump(&mut self, key: usize, now: Instant) {
        let shapes = self.shapes;
        let Some(p) = self.pairs.get_mut(key) else { return };
        match p.pass(&shapes, now, &mut self.scratch) {
            End::No => {
                // One timer per direction at most: a moved deadline
                // replaces the old one.
                for (d, shape) in shapes.iter().enumerate() {
                    let due = p.pipes[d].next_due(now, shape);
                    if due != p.armed[d] {
                        if let Some(old) = p.armed[d] {
                            self.timers.remove(old, d, key, p.gen);
                        }
                        if let Some(at) = due {
                            self.timers.add(at, d, key, p.gen);
                        }
                        p.armed[d] = due;
                    }
                }
                if let Err(e) = p.update_interest(&self.registry) {
                    warn!("link: reregister failed: {e}");
                    p.reset(&self.registry, "reregister failed");
                    self.drop_pair(key);
                }
            }
            End::Done(why) => {
                p.close(&self.registry, why);
                self.drop_pair(key);
            }
            End::Reset(why) => {
                self.stats.resets += 1;
                p.reset(&self.registry, &why);
                self.drop_pair(key);
            }
        }
    }

    /// Forgets a closed pair and its timers.
    fn drop_pair(&mut self, key: usize) {
        if let Some(p) = self.pairs.try_remove(key) {
            for (d, at) in p.armed.iter().enumerate() {
                if let Some(at) = at {
                    self.timers.remove(*at, d, key, p.gen);
                }
            }
        }
    }

    /// A control request: applied, and its answer.
    fn control(&mut self, req: Result<Control, String>) -> String {
        let req = match req {
            Ok(r) => r,
            Err(why) => return format!("OP=ERR;CODE=400;MSG={why}"),
        };
        self.stats.controls += 1;
        match req {
            Control::Set(dir, change) => {
                for d in 0..2 {
                    if dir.covers(d) {
                        change.apply(&mut self.shapes[d]);
                    }
                }
                info!("link: shapes now up {:?}, down {:?}", self.shapes[0], self.shapes[1]);
                "OP=SET;CODE=200".into()
            }
            Control::Fault(dir, fault) => {
                for d in 0..2 {
                    if dir.covers(d) {
                        self.shapes[d].fault = fault;
                    }
                }
                // Healed or changed: what was held may go now.
                let keys: Vec<usize> = self.pairs.iter().map(|(k, _)| k).collect();
                let now = Instant::now();
                for k in keys {
                    self.pump(k, now);
                }
                format!("OP=FAULT;KIND={fault:?};DIR={};CODE=200", dir_name(dir)).to_uppercase()
            }
            Control::Reset => {
                let n = self.pairs.len();
                for (_, p) in self.pairs.iter_mut() {
                    p.reset(&self.registry, "reset by the control connection");
                }
                self.pairs.clear();
                self.timers = Timers::default();
                self.stats.resets += n as u64;
                format!("OP=FAULT;KIND=RESET;CONNS={n};CODE=200")
            }
            Control::Sts => self.sts(),
        }
    }

    fn sts(&self) -> String {
        let sum = |d: usize| -> (u64, u64, usize) {
            self.pairs.iter().fold((0, 0, 0), |(g, x, h), (_, p)| {
                let (given, dropped) = p.pipes[d].counts();
                (g + given, x + dropped, h + p.pipes[d].held())
            })
        };
        let (up, up_dropped, up_held) = sum(0);
        let (down, down_dropped, down_held) = sum(1);
        let s = &self.stats;
        format!(
            "OP=STS;CONNS={};ACCEPTED={};REFUSED={};CONNECT_FAILED={};RESETS={};CONTROLS={};UP_BYTES={up};DOWN_BYTES={down};UP_DROPPED={up_dropped};DOWN_DROPPED={down_dropped};UP_HELD={up_held};DOWN_HELD={down_held};UP={};DOWN={};CODE=200",
            self.pairs.len(),
            s.accepted,
            s.refused,
            s.connect_failed,
            s.resets,
            s.controls,
            shape_text(&self.shapes[0]),
            shape_text(&self.shapes[1]),
        )
    }
}

fn dir_name(d: Dir) -> &'static str {
    match d {
        Dir::Up => "UP",
        Dir::Down => "DOWN",
        Dir::Both => "BOTH",
    }
}

/// A shape in STS: `delay_ms/jitter_ms/bandwidth/fault`.
fn shape_text(s: &Shape) -> String {
    format!(
        "{}ms+{}ms/{}Bps/{:?}",
        s.delay.as_millis(),
        s.jitter.as_millis(),
        s.bandwidth,
        s.fault
    )
    .to_uppercase()
}

impl Node for LinkNode {
    fn ready(&mut self, token: Token, event: &Event, now: Instant) {
        match token {
            LISTENER => self.accept(),
            PACER => {
                if let Some(p) = self.pacer.as_mut() {
                    p.fired();
                }
            }
            CONTROL_LISTENER => self.ctl.accept(&self.registry),
            Token(t) if (LINK_CONTROL..LINK_UPSTREAM).contains(&t) => {
                let answers = self.ctl.ready(t - LINK_CONTROL, &self.registry);
                let replies: Vec<String> = answers.into_iter().map(|r| self.control(r)).collect();
                self.ctl.answer(t - LINK_CONTROL, &replies, &self.registry);
            }
            Token(t) => {
                let (key, side) = if t >= LINK_UPSTREAM {
                    (t - LINK_UPSTREAM, 1)
                } else {
                    (t, 0)
                };
                let Some(p) = self.pairs.get_mut(key) else { return };
                if side == 1 && p.state == PairState::Connecting {
                    match p.on_connect() {
                        None => return,
                        Some(Ok(())) => {}
                        Some(Err(e)) => {
                            self.stats.connect_failed += 1;
                            p.close(&self.registry, &format!("upstream connect failed: {e}"));
                            self.drop_pair(key);
                            return;
                        }
                    }
                }
                if event.is_error() {
                    self.stats.resets += 1;
                    p.reset(&self.registry, "socket error");
                    self.drop_pair(key);
                    return;
                }
                self.pump(key, now);
            }
        }
    }

    fn tick(&mut self, now: Instant) -> Option<Instant> {
        while let Some(t) = self.timers.pop_due(now) {
            if let Some(p) = self.pairs.get_mut(t.key).filter(|p| p.gen == t.gen) {
                p.armed[t.kind] = None;
                self.pump(t.key, now);
            }
        }
        let next = self.timers.next();
        // The poll's own timeout counts whole milliseconds (rounded up):
        // a 0.1 ms delay would take 1. The timerfd wakes it on time.
        if let (Some(at), Some(p)) = (next, self.pacer.as_mut()) {
            if let Err(e) = p.arm(at.saturating_duration_since(now)) {
                warn!("link: timerfd: {e}; delays round up to the millisecond");
                self.pacer = None;
            }
        }
        next
    }

    fn stop(&mut self, _now: Instant) {
        self.stopping = true;
        if let Some(mut l) = self.listener.take() {
            let _ = self.registry.deregister(&mut l);
            trace_event!("link", LISTENER, "CLOSE", "listener closed (stopping)");
        }
        self.ctl.close(&self.registry);
        for (_, p) in self.pairs.iter_mut() {
            p.close(&self.registry, "link stopping");
        }
        self.pairs.clear();
    }

    fn done(&self) -> bool {
        self.stopping
    }

    fn loop_stats(&mut self) -> &mut LoopStats {
        &mut self.loop_stats
    }
}
