//! The table server: a [`Frontend`] whose service applies each request to
//! the [`Table`] and answers at once, so replies leave in request order by
//! construction — except a write that must wait for proxies to confirm
//! invalidations ([`leases`]): its connection then waits with it (what
//! arrives after it is read and queued, and takes effect after it, in
//! order), while every other connection carries on.
//!
//! Run it: `tablecache server --listen 127.0.0.1:8080 --size 10`.

mod backlog;
pub mod departed;
mod holder;
pub mod leases;
mod report;
mod service;
mod session;

pub use backlog::{BACKLOG_MAX_BYTES, CHUNK as BACKLOG_CHUNK_BYTES, UNTRUSTED_BACKLOGS_MAX_BYTES};

pub use service::ServerConn;

use crate::frontend::{FrontInfo, Frontend, Limits};
use crate::reactor::{earliest, Bound, LoopStats, Node, Reactor};
use crate::store::{Store, StoreConfig};
use crate::table::Table;
use crate::trace_event;
use leases::Leases;
use log::info;
use mio::event::Event;
use mio::Token;
use service::ServerCore;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Entries a DMP reply lists at most.
pub const DUMP_MAX: usize = 1024;

/// Settings of a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where to listen (port 0 picks a free one).
    pub listen: SocketAddr,
    /// Entries in the table.
    pub size: usize,
    /// Limits on peers.
    pub limits: Limits,
    /// How long a lease granted to a proxy lasts (`--lease-ms`); zero
    /// grants none (every proxy then keeps only the single-proxy
    /// guarantee).
    pub lease: Duration,
    /// How long writes wait after start for leases an earlier life of the
    /// server may have granted (`--grace-ms`; by default one lease).
    pub grace: Duration,
    /// Where the table is kept (`--data-dir`): `None` keeps it in memory
    /// only (docs/durability.md).
    pub store: Option<StoreConfig>,
    /// The file holding the peer secret (`--peer-secret-file`): only a
    /// connection that presents it may hold a lease. `None`: only loopback
    /// peers may.
    pub peer_secret_file: Option<std::path::PathBuf>,
    /// Connections holding a lease at once at most (`--max-proxies`).
    pub max_proxies: usize,
    /// Indices tracked per proxy at most (`--max-tracked`): past it, its
    /// oldest are invalidated.
    pub max_tracked: usize,
}

/// The default lease (docs/coherence.md weighs it).
pub const DEFAULT_LEASE: Duration = Duration::from_millis(1000);

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".parse().expect("literal address"),
            size: 10,
            limits: Limits::default(),
            lease: DEFAULT_LEASE,
            grace: DEFAULT_LEASE,
            store: None,
            peer_secret_file: None,
            max_proxies: leases::MAX_PROXIES,
            max_tracked: leases::MAX_TRACKED_PER_PROXY,
        }
    }
}

/// The server's node: its listening side and its table.
pub struct ServerNode {
    front: Frontend<ServerConn>,
    core: ServerCore,
    /// Reused lists of connections to flush and to expire.
    touched: Vec<usize>,
    overdue: Vec<(usize, u64)>,
    /// The log failed: the server stops with this error.
    failed: Option<io::Error>,
}

impl ServerNode {
    /// After any event: expire proxies that left an invalidation
    /// unconfirmed too long, move invalidations into the proxies'
    /// connections, and apply the writes that may go now (each may let
    /// its connection's next requests in, which may send more).
    fn settle(&mut self, now: Instant) {
        loop {
            self.overdue.clear();
            self.core.leases.prune(now);
            self.core.leases.overdue(now, &mut self.overdue);
            for &(key, gen) in &self.overdue {
                if self.front.conns.get(key).is_some_and(|c| c.gen == gen) {
                    info!("server tok={key}: proxy expired, an invalidation unconfirmed for half a lease");
                    self.front.close(&mut self.core, key, "lease expired");
                }
            }
            let conns = &mut self.front.conns;
            let touched = &mut self.touched;
            self.core.leases.drain_outboxes(|key, gen, bytes| {
                if let Some(c) = conns.get_mut(key).filter(|c| c.gen == gen) {
                    c.output.extend(bytes);
                    trace_event!(
                        c.role,
                        c.token,
                        "QUEUED",
                        "{} ({} bytes to write)",
                        String::from_utf8_lossy(bytes.strip_suffix(b"\n").unwrap_or(bytes)),
                        c.output.len()
                    );
                    touched.push(key);
                }
            });
            let released = self.core.leases.next_ready(now);
            if let Some(p) = released {
                let key = p.key;
                let (connections, timers) = (self.front.conns.len(), self.front.timers.len());
                if let Some(c) = self.front.conns.get_mut(key).filter(|c| c.gen == p.gen) {
                    let info = FrontInfo {
                        stats: &self.front.stats,
                        connections,
                        timers,
                    };
                    self.core.release(c, p, &info, now);
                    self.touched.push(key);
                }
            }
            if self.touched.is_empty() {
                return;
            }
            let mut keys = std::mem::take(&mut self.touched);
            keys.sort_unstable();
            keys.dedup();
            for &key in &keys {
                self.front.after_io(&mut self.core, key, now);
            }
            keys.clear();
            self.touched = keys;
        }
    }
}

impl ServerNode {
    /// The end of a loop pass: the pass's log records are written (and
    /// synced, as configured) in one go, then the replies held for them
    /// leave. Flushing may let paused readers go on and log more, so this
    /// goes round until nothing waits.
    fn commit(&mut self, now: Instant) {
        loop {
            if let Err(e) = self.core.commit(now) {
                log::error!("server: the log failed ({e}); stopping without acknowledging what it holds");
                self.failed = Some(e);
                return;
            }
            if self.core.held.is_empty() {
                return;
            }
            let mut held = std::mem::take(&mut self.core.held);
            held.sort_unstable();
            held.dedup();
            for &(key, gen) in &held {
                if self.front.conns.get(key).is_some_and(|c| c.gen == gen) {
                    self.front.after_io(&mut self.core, key, now);
                }
            }
            self.settle(now);
        }
    }
}

impl Node for ServerNode {
    fn ready(&mut self, token: Token, event: &Event, now: Instant) {
        self.front.ready(&mut self.core, token, event, now);
        self.settle(now);
    }
    fn tick(&mut self, now: Instant) -> Option<Instant> {
        let next = self.front.tick(&mut self.core, now);
        self.settle(now);
        self.commit(now);
        let next = earliest(next, self.core.leases.next_deadline(now));
        earliest(next, self.core.store.as_ref().and_then(|s| s.next_deadline(now)))
    }
    fn failed(&mut self) -> Option<io::Error> {
        self.failed.take()
    }
    fn stop(&mut self, now: Instant) {
        info!("server stopping: {} connections to finish", self.front.conns.len());
        self.front.stop(&mut self.core, now);
    }
    fn done(&self) -> bool {
        self.front.finished()
    }
    fn loop_stats(&mut self) -> &mut LoopStats {
        &mut self.front.stats.reactor
    }
}

/// A bound server, ready to run: `Server::bind(cfg)?.spawn()?`, or `.run()`.
pub type Server = Bound<ServerNode>;

impl Server {
    /// Binds the listener (so the address is known before running).
    pub fn bind(cfg: ServerConfig) -> io::Result<Server> {
        // The table first: a damaged data directory stops the start
        // before anything listens.
        let (table, store) = match &cfg.store {
            Some(sc) => {
                let (store, values) = Store::open(sc, cfg.size as u64)?;
                (Table::from_values(values), Some(store))
            }
            None => (
                Table::try_new(cfg.size).map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::OutOfMemory,
                        format!("cannot allocate a table of {} entries: {e}", cfg.size),
                    )
                })?,
                None,
            ),
        };
        let secret = cfg
            .peer_secret_file
            .as_deref()
            .map(crate::peer::Secret::from_file)
            .transpose()?;
        let reactor = Reactor::new()?;
        let max_output = cfg.limits.max_pending_output;
        let front = Frontend::bind(cfg.listen, "server", cfg.limits, reactor.registry())?;
        let addr = front.local_addr();
        info!(
            "server listening on {addr} with {} entries, leases of {} ms",
            cfg.size,
            cfg.lease.as_millis()
        );
        if !cfg.lease.is_zero() {
            match &cfg.peer_secret_file {
                Some(f) => info!(
                    "server: leases only for peers that present the secret in {} (at most {} at once)",
                    f.display(),
                    cfg.max_proxies
                ),
                None => info!(
                    "server: no --peer-secret-file: only loopback peers may hold leases (at most {} at once)",
                    cfg.max_proxies
                ),
            }
        }
        if !cfg.grace.is_zero() {
            info!(
                "server: writes wait {} ms for leases an earlier run may have granted",
                cfg.grace.as_millis()
            );
        }
        let now = Instant::now();
        let node = ServerNode {
            touched: Vec::new(),
            overdue: Vec::new(),
            failed: None,
            front,
            core: ServerCore::new(
                table,
                Leases::new(cfg.lease, cfg.grace, now).bounded(cfg.max_proxies, cfg.max_tracked),
                store,
                secret,
                max_output,
            ),
        };
        Ok(Bound::new(reactor, node, addr, "server"))
    }
}
