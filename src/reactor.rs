//! The event loop every node runs: one thread, one `mio::Poll`, and a
//! [`Node`] that owns the sockets and reacts to their events.
//!
//! ```text
//!   loop {
//!       timeout = node.tick(now)           // fire due timers, learn the next deadline
//!       poll(events, timeout)              // sleep until a socket is ready or a deadline
//!       for event in events:
//!           WAKER   -> (nothing)           // StopHandle::stop from another thread
//!           SIGNALS -> note the stop        // SIGINT / SIGTERM
//!           token   -> node.ready(token)   // error, then read, then write
//!       if a stop was asked: node.stop()   // once
//!   }
//! ```
//!
//! Tokens: a connection's token is its slab key; a few values at the top of
//! the `usize` range are reserved (they can never be slab keys).
//! Timers live in [`Timers`], a sorted set of deadlines, so the poll timeout
//! is always the nearest deadline: no thread per timer, no spinning.

use mio::event::Event;
use mio::{Events, Poll, Registry, Token, Waker};
use std::collections::BTreeSet;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The token of the waker that `StopHandle::stop` uses.
pub const WAKER: Token = Token(usize::MAX - 1);
/// The token of a node's listening socket.
pub const LISTENER: Token = Token(usize::MAX - 2);
/// The token of the proxy's upstream connection.
pub const UPSTREAM: Token = Token(usize::MAX - 3);
/// The token of the signal source (SIGINT, SIGTERM).
pub const SIGNALS: Token = Token(usize::MAX - 4);
/// The token of the command-line client's (and the demo's) one connection.
pub const CLIENT: Token = Token(usize::MAX - 5);
/// The token of a proxy's old upstream connection, drained after a reset
/// until the server has finished with it.
pub const DRAINING: Token = Token(usize::MAX - 6);

/// Not a socket: the label of the server's log file in the trace (`F`).
pub const DISK: Token = Token(usize::MAX - 7);
/// The token of a link's control listener (traced `KL`).
pub const CONTROL_LISTENER: Token = Token(usize::MAX - 8);
/// A link's upstream sockets: `LINK_UPSTREAM + key` (traced `U<key>`),
/// where `key` is the slab key of the accepted socket it belongs to.
pub const LINK_UPSTREAM: usize = 1 << 48;
/// A link's control connections: `LINK_CONTROL + key` (traced `K<key>`).
pub const LINK_CONTROL: usize = 1 << 47;

/// How many events one `poll` may return.
const EVENTS_CAPACITY: usize = 1024;

/// A node driven by [`Reactor::run`].
pub trait Node {
    /// A socket is ready. The node looks the token up and ignores unknown
    /// ones (spurious events happen).
    fn ready(&mut self, token: Token, event: &Event, now: Instant);
    /// Called before every poll: fire due timers, flush what is pending,
    /// and return the next deadline (`None`: sleep until an event).
    fn tick(&mut self, now: Instant) -> Option<Instant>;
    /// Stop was requested (by `StopHandle` or a signal): stop accepting and
    /// wind down; `done` becomes true when it is finished.
    fn stop(&mut self, now: Instant);
    /// True when the loop should end.
    fn done(&self) -> bool;
    /// The loop's counters, kept by `run`, read by STS.
    fn loop_stats(&mut self) -> &mut LoopStats;
    /// An error the node cannot go on after (its log failed): `run` ends
    /// with it, without flushing anything more.
    fn failed(&mut self) -> Option<io::Error> {
        None
    }
}

/// What the loop measures about itself (reported by STS).
#[derive(Debug, Default, Clone)]
pub struct LoopStats {
    /// Returns from `poll`.
    pub wakeups: u64,
    /// Events handled.
    pub events: u64,
    /// Times `poll` filled the whole event array (more events were waiting).
    pub full_batches: u64,
    /// Time spent handling events and timers, microseconds.
    pub busy_us: u64,
}

/// Asks a running node to stop, from any thread.
#[derive(Clone, Debug)]
pub struct StopHandle {
    flag: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl StopHandle {
    /// Requests a graceful stop (idempotent).
    pub fn stop(&self) {
        self.flag.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
    }
}

/// A poll, its event array and the stop machinery.
pub struct Reactor {
    poll: Poll,
    events: Events,
    stop_flag: Arc<AtomicBool>,
    waker: Arc<Waker>,
    signals: Option<signals::Signals>,
}

impl Reactor {
    /// A new reactor with a waker registered.
    pub fn new() -> io::Result<Reactor> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        Ok(Reactor {
            poll,
            events: Events::with_capacity(EVENTS_CAPACITY),
            stop_flag: Arc::new(AtomicBool::new(false)),
            waker,
            signals: None,
        })
    }

    /// The registry, to register sockets (nodes keep a `try_clone`).
    pub fn registry(&self) -> &Registry {
        self.poll.registry()
    }

    /// A handle that stops this reactor's node from another thread.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle {
            flag: self.stop_flag.clone(),
            waker: self.waker.clone(),
        }
    }

    /// Makes SIGINT and SIGTERM stop the node gracefully (binaries only:
    /// signal handlers are process-wide).
    pub fn handle_signals(&mut self) -> io::Result<()> {
        self.signals = Some(signals::Signals::register(self.poll.registry())?);
        Ok(())
    }

    /// Runs `node` until it is done.
    pub fn run(&mut self, node: &mut impl Node) -> io::Result<()> {
        let mut stopping = false;
        loop {
            let now = Instant::now();
            let next = node.tick(now);
            if let Some(e) = node.failed() {
                return Err(e);
            }
            if node.done() {
                return Ok(());
            }
            let timeout = next.map(|d| d.saturating_duration_since(now));
            // Round up so a deadline 300 µs away does not become a 0 ms
            // timeout and a busy loop (epoll has millisecond resolution).
            let timeout = timeout.map(|t| {
                let ms = t.as_micros().div_ceil(1000) as u64;
                Duration::from_millis(ms)
            });
            poll(&mut self.poll, &mut self.events, timeout)?;
            let start = Instant::now();
            let stats = node.loop_stats();
            stats.wakeups += 1;
            let n = self.events.iter().count();
            stats.events += n as u64;
            if n == EVENTS_CAPACITY {
                stats.full_batches += 1;
            }
            for event in self.events.iter() {
                match event.token() {
                    WAKER => {}
                    SIGNALS => {
                        if let Some(s) = &mut self.signals {
                            if s.pending() {
                                log::info!("signal received: stopping");
                                self.stop_flag.store(true, Ordering::SeqCst);
                            }
                        }
                    }
                    token => node.ready(token, event, start),
                }
            }
            if !stopping && self.stop_flag.load(Ordering::SeqCst) {
                stopping = true;
                node.stop(start);
            }
            node.loop_stats().busy_us += start.elapsed().as_micros() as u64;
        }
    }
}

/// One `poll`, the way every loop in tablecache calls it: a signal that
/// interrupts the wait (EINTR) is an empty wakeup, not an error, so the
/// caller simply goes round again.
pub fn poll(poll: &mut Poll, events: &mut Events, timeout: Option<Duration>) -> io::Result<()> {
    match poll.poll(events, timeout) {
        Err(e) if e.kind() == io::ErrorKind::Interrupted => {
            events.clear();
            Ok(())
        }
        r => r,
    }
}

pub(crate) mod signals {
    //! SIGINT/SIGTERM as a mio source, through `signal-hook-mio`.
    use super::SIGNALS;
    use mio::{Interest, Registry};
    use signal_hook_mio::v1_0::Signals as Source;
    use std::io;

    // The POSIX numbers, fixed on every platform tablecache runs on; spelled
    // out to avoid a dependency for two constants.
    const SIGINT: i32 = 2;
    const SIGTERM: i32 = 15;

    pub struct Signals(Source);

    impl Signals {
        pub fn register(registry: &Registry) -> io::Result<Signals> {
            let mut s = Source::new([SIGINT, SIGTERM])?;
            registry.register(&mut s, SIGNALS, Interest::READABLE)?;
            Ok(Signals(s))
        }

        /// Drains the pending signals; true if one arrived.
        pub fn pending(&mut self) -> bool {
            self.0.pending().count() > 0
        }
    }
}

/// A node bound to its address together with its reactor, ready to run in
/// the calling thread (`run`) or on a thread of its own (`spawn`).
pub struct Bound<N> {
    reactor: Reactor,
    node: N,
    addr: std::net::SocketAddr,
    name: &'static str,
}

impl<N: Node + Send + 'static> Bound<N> {
    /// Pairs a node with the reactor its sockets are registered with.
    pub fn new(reactor: Reactor, node: N, addr: std::net::SocketAddr, name: &'static str) -> Self {
        Bound {
            reactor,
            node,
            addr,
            name,
        }
    }

    /// The address bound (the real port when asked for port 0).
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// A handle to stop the node from another thread.
    pub fn stop_handle(&self) -> StopHandle {
        self.reactor.stop_handle()
    }

    /// Makes SIGINT/SIGTERM stop it gracefully.
    pub fn handle_signals(&mut self) -> io::Result<()> {
        self.reactor.handle_signals()
    }

    /// Runs until stopped.
    pub fn run(mut self) -> io::Result<()> {
        self.reactor.run(&mut self.node)
    }

    /// Runs on a thread of its own.
    pub fn spawn(self) -> io::Result<NodeHandle> {
        let addr = self.addr;
        let stop = self.stop_handle();
        let thread = std::thread::Builder::new()
            .name(self.name.into())
            .spawn(move || self.run())?;
        Ok(NodeHandle::new(addr, stop, thread))
    }
}

/// A node running on a thread of its own (tests and the demo use it).
pub struct NodeHandle {
    addr: std::net::SocketAddr,
    stop: StopHandle,
    thread: Option<std::thread::JoinHandle<io::Result<()>>>,
}

impl NodeHandle {
    /// Wraps a spawned node.
    pub fn new(addr: std::net::SocketAddr, stop: StopHandle, thread: std::thread::JoinHandle<io::Result<()>>) -> Self {
        NodeHandle {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    /// The address the node listens on.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// A handle to stop the node.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Stops the node gracefully and waits for its thread.
    pub fn stop(mut self) -> io::Result<()> {
        self.stop.stop();
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(io::Error::other("node thread panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for NodeHandle {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.stop.stop();
            let _ = t.join();
        }
    }
}

/// One due timer: what it is for (`K`, each node's own kinds), and which
/// connection it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timer<K> {
    /// When it is due.
    pub at: Instant,
    /// Its purpose.
    pub kind: K,
    /// The connection's token (slab key or reserved token).
    pub key: usize,
    /// The connection's generation: a timer for a connection that has since
    /// closed (and whose key was reused) is recognised and ignored.
    pub gen: u64,
}

/// Deadlines, sorted. Activity does not move a timer: a connection that
/// is active again is recognised when its timer fires (a later deadline in
/// the connection itself), which costs nothing per message. A connection
/// that closes cancels its timers, so memory does not grow with the rate
/// of connections times the idle timeout.
#[derive(Debug)]
pub struct Timers<K> {
    set: BTreeSet<Timer<K>>,
}

impl<K> Default for Timers<K> {
    fn default() -> Self {
        Timers { set: BTreeSet::new() }
    }
}

impl<K: Ord + Copy> Timers<K> {
    /// Adds a timer.
    pub fn add(&mut self, at: Instant, kind: K, key: usize, gen: u64) {
        self.set.insert(Timer { at, kind, key, gen });
    }

    /// Cancels a timer (one that has fired, or was never set, is ignored).
    pub fn remove(&mut self, at: Instant, kind: K, key: usize, gen: u64) {
        self.set.remove(&Timer { at, kind, key, gen });
    }

    /// The nearest deadline.
    pub fn next(&self) -> Option<Instant> {
        self.set.first().map(|t| t.at)
    }

    /// Removes and returns one timer due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Timer<K>> {
        if self.set.first()?.at <= now {
            self.set.pop_first()
        } else {
            None
        }
    }

    /// Number of timers set.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// True when no timer is set.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

/// The earlier of two optional deadlines.
pub fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_pop_in_deadline_order() {
        let t0 = Instant::now();
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
        enum Kind {
            Idle,
            Deadline,
        }
        let mut t = Timers::default();
        t.add(t0 + Duration::from_millis(5), Kind::Idle, 1, 1);
        t.add(t0 + Duration::from_millis(1), Kind::Deadline, 2, 7);
        assert_eq!(t.next(), Some(t0 + Duration::from_millis(1)));
        assert!(t.pop_due(t0).is_none());
        let first = t.pop_due(t0 + Duration::from_millis(10)).unwrap();
        assert_eq!((first.kind, first.key, first.gen), (Kind::Deadline, 2, 7));
        assert_eq!(t.pop_due(t0 + Duration::from_millis(10)).unwrap().key, 1);
        assert!(t.is_empty());
    }
}
