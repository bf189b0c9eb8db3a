//! One TCP connection as a state machine: the socket, its lifecycle state,
//! its input and output buffers, its [`Framer`], and the one I/O path per
//! verb every node uses: start and finish a connect, a read pass, a flush,
//! the bare-framing pause timer.
//!
//! ```text
//!   connect()                         accept()
//!      |                                 |
//!      v   writable + take_error() ok    v
//!  Connecting ---------------------->  Open  ---- peer FIN (read 0) ----> ReadClosed
//!      |                                 |                                    |
//!      | refused / reset                 | node decides to close              | replies owed written
//!      v                                 v                                    v
//!    Closed  <----- output drained --- Closing                             Closed
//! ```
//!
//! Every change of state goes through [`Conn::transition`], an exhaustive
//! `match (state, event)`: a move the diagram does not have is a bug, caught
//! by a `debug_assert!`. Each change is logged at `debug` and as a `STATE`
//! trace event; docs/socket-states.md maps each state to its syscalls.
//!
//! Interest policy: READABLE while the node wants to read; WRITABLE only
//! while output is pending (or a connect is in progress). The registration
//! is changed only when the wanted interest changes, so a steady
//! request/reply stream costs no `epoll_ctl`.

use crate::buffer::Buffer;
use crate::framing::{Frame, Framer, Framing};
use crate::trace_event;
use log::{debug, warn};
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Size of the node-wide read buffer a connection borrows while it reads.
pub const READ_CHUNK: usize = 64 * 1024;

/// An empty buffer bigger than this is freed, so idle connections stay small.
const KEEP_IDLE_BYTES: usize = 4096;

/// The lifecycle of a connection's socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// `connect()` returned EINPROGRESS; waiting for WRITABLE, then
    /// `take_error()` and `peer_addr()` say whether it worked.
    Connecting {
        /// When the connect started (for the connect timeout).
        since: Instant,
    },
    /// Connected: reading requests and writing replies.
    Open,
    /// Half-closed: the peer sent FIN (a read returned 0) but can still
    /// read. Replies still owed are written, then the connection closes.
    ReadClosed,
    /// The node decided to close (shutdown, limit, desync): no more reads;
    /// close once the output is written.
    Closing,
    /// Deregistered; the socket is dropped with the connection.
    Closed,
}

/// What moves a connection from one [`State`] to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnEvent {
    /// A nonblocking connect completed.
    Connected,
    /// A read returned 0: the peer will send nothing more.
    PeerFin,
    /// The node will close once what is owed is written.
    Stop,
    /// Deregistered and dropped.
    Close,
}

impl State {
    /// The name used in logs, traces and docs.
    pub fn name(&self) -> &'static str {
        match self {
            State::Connecting { .. } => "Connecting",
            State::Open => "Open",
            State::ReadClosed => "ReadClosed",
            State::Closing => "Closing",
            State::Closed => "Closed",
        }
    }

    /// The state `event` leads to, or `None` for a move the lifecycle does
    /// not have. Exhaustive on purpose: a new state or event must be placed
    /// in this table before the code compiles.
    pub fn next(self, event: ConnEvent) -> Option<State> {
        use ConnEvent::*;
        use State::*;
        match (self, event) {
            (Connecting { .. }, Connected) => Some(Open),
            (Open, PeerFin) => Some(ReadClosed),
            (Open, Stop) => Some(Closing),
            (Connecting { .. } | Open | ReadClosed | Closing, Close) => Some(Closed),
            (Connecting { .. }, PeerFin | Stop)
            | (Open, Connected)
            | (ReadClosed | Closing, Connected | PeerFin | Stop)
            | (Closed, Connected | PeerFin | Stop | Close) => None,
        }
    }
}

/// What a read pass ended on.
#[derive(Debug)]
pub enum ReadOutcome {
    /// The socket has nothing more for now (edge consumed).
    WouldBlock,
    /// The input buffer reached its bound (from [`Conn::fill`] only).
    Full,
    /// The connection had its share of full reads this turn; bytes may be
    /// waiting in the socket, so the node must come back without an edge.
    Yielded,
    /// The handler (or backpressure) stopped reading; bytes may be waiting.
    Stopped,
    /// The peer closed its sending side (read returned 0).
    Eof,
    /// The read failed (reset, ...); the connection is dead.
    Error(io::Error),
}

/// What a flush ended on.
#[derive(Debug)]
pub enum WriteOutcome {
    /// Everything was written.
    Done,
    /// The socket buffer is full; the rest waits for WRITABLE.
    WouldBlock,
    /// The write failed (EPIPE, ECONNRESET, ...); the connection is dead.
    Error(io::Error),
}

/// What a WRITABLE (or error) event on a connecting socket meant.
#[derive(Debug)]
pub enum ConnectOutcome {
    /// Not settled yet (a spurious event).
    Pending,
    /// Connected; the connection is `Open`.
    Connected,
    /// Refused, unreachable, reset: the connection is dead.
    Failed(io::Error),
}

/// What a bare-framing pause timer found when it fired.
#[derive(Debug, PartialEq, Eq)]
pub enum BarePause {
    /// Nothing to end (line framing now, or nothing buffered).
    Nothing,
    /// Bytes came since: wait until this instant.
    Rearm(Instant),
    /// The peer has been quiet long enough: what is buffered is a message.
    Ended,
}

/// One connection. `X` is the node's own per-connection state (the
/// proxy's queue of reply slots, for example).
#[derive(Debug)]
pub struct Conn<X> {
    /// The socket.
    pub sock: TcpStream,
    /// Its token: the slab key, or a reserved token.
    pub token: Token,
    /// Distinguishes this connection from a later one that reuses its
    /// slab key (timers and late upstream replies carry it).
    pub gen: u64,
    /// Who owns it, for logs: "server", "proxy", "upstream", "client".
    pub role: &'static str,
    /// The peer, once known.
    pub peer: Option<SocketAddr>,
    state: State,
    /// Bytes read and not yet parsed.
    pub input: Buffer,
    /// Replies (or requests) encoded and not yet written.
    pub output: Buffer,
    /// Where messages end in `input`.
    pub framer: Framer,
    /// A bare-framing pause timer is set for this connection.
    bare_timer: bool,
    /// `input` is the node's scratch buffer, lent for this read pass.
    borrowed: bool,
    /// What is registered with the poll now (`None`: not registered).
    registered: Option<Interest>,
    /// Reading stopped because the peer is not reading its replies.
    pub paused: bool,
    /// When the last whole message arrived (the idle timer runs from it).
    pub last_active: Instant,
    /// When the last bytes arrived (bare framing measures silence from it).
    pub last_bytes: Instant,
    /// The node's per-connection state.
    pub ext: X,
}

impl<X> Conn<X> {
    /// Wraps a socket (accepted, or whose connect is in progress).
    pub fn new(
        sock: TcpStream,
        token: Token,
        gen: u64,
        role: &'static str,
        state: State,
        now: Instant,
        ext: X,
    ) -> Self {
        let peer = sock.peer_addr().ok();
        Conn {
            sock,
            token,
            gen,
            role,
            peer,
            state,
            input: Buffer::new(),
            output: Buffer::new(),
            framer: Framer::new(Framing::Line),
            bare_timer: false,
            borrowed: false,
            registered: None,
            paused: false,
            last_active: now,
            last_bytes: now,
            ext,
        }
    }

    /// Starts a nonblocking connect to `addr` and registers the socket:
    /// `connect()` returns EINPROGRESS, and [`Conn::on_connect_event`]
    /// finishes it when the socket turns WRITABLE.
    pub fn connect(
        addr: SocketAddr,
        token: Token,
        gen: u64,
        role: &'static str,
        registry: &Registry,
        now: Instant,
        ext: X,
    ) -> io::Result<Self> {
        let peer = Some(addr);
        trace_event!(
            role,
            token,
            peer,
            "CONNECT_START",
            "connect() in progress (EINPROGRESS)"
        );
        let sock = TcpStream::connect(addr)?;
        let mut conn = Conn::new(sock, token, gen, role, State::Connecting { since: now }, now, ext);
        conn.peer = peer;
        conn.register(registry)?;
        Ok(conn)
    }

    /// Finishes a nonblocking connect after an event, the way mio documents
    /// it: `take_error()` for a failure, then `peer_addr()`, where
    /// `NotConnected` means "still connecting". On success the connection
    /// is `Open`, with TCP_NODELAY (requests are small and latency matters).
    pub fn on_connect_event(&mut self, registry: &Registry) -> ConnectOutcome {
        let settled = match self.sock.take_error() {
            Ok(Some(e)) | Err(e) => Err(e),
            Ok(None) => match self.sock.peer_addr() {
                Ok(addr) => Ok(addr),
                Err(e) if matches!(e.kind(), io::ErrorKind::NotConnected | io::ErrorKind::WouldBlock) => {
                    return ConnectOutcome::Pending
                }
                Err(e) => Err(e),
            },
        };
        match settled {
            Ok(addr) => {
                self.peer = Some(addr);
                let _ = self.sock.set_nodelay(true);
                if let Ok(local) = self.sock.local_addr() {
                    trace_event!(self.role, self.token, self.peer, "CONNECTED", "local {local}");
                }
                self.transition(ConnEvent::Connected, "connect completed");
                if let Err(e) = self.update_interest(registry) {
                    return ConnectOutcome::Failed(e);
                }
                ConnectOutcome::Connected
            }
            Err(e) => {
                trace_event!(self.role, self.token, self.peer, "CONNECT_FAILED", "{e}");
                ConnectOutcome::Failed(e)
            }
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The one place a state changes. A move the lifecycle does not have
    /// is a bug: it fails a `debug_assert!` (and is ignored in release).
    pub fn transition(&mut self, event: ConnEvent, why: &str) {
        let from = self.state;
        let Some(to) = from.next(event) else {
            debug_assert!(
                false,
                "{} tok={}: no move from {} on {event:?}",
                self.role,
                self.token.0,
                from.name()
            );
            warn!(
                "{} tok={}: ignored {event:?} in {}",
                self.role,
                self.token.0,
                from.name()
            );
            return;
        };
        debug!(
            "{} tok={} peer={}: {} -> {} ({why})",
            self.role,
            crate::trace::TokenName(self.token),
            crate::trace::PeerName(&self.peer),
            from.name(),
            to.name()
        );
        trace_event!(
            self.role,
            self.token,
            self.peer,
            "STATE",
            "{} -> {} ({why})",
            from.name(),
            to.name()
        );
        self.state = to;
    }

    /// Whether the node should read from the socket now.
    pub fn reading(&self) -> bool {
        self.state == State::Open && !self.paused
    }

    /// Registers the socket with the interest its state calls for.
    pub fn register(&mut self, registry: &Registry) -> io::Result<()> {
        let want = self.wanted_interest();
        registry.register(&mut self.sock, self.token, want)?;
        self.registered = Some(want);
        Ok(())
    }

    fn wanted_interest(&self) -> Interest {
        let write = !self.output.is_empty() || matches!(self.state, State::Connecting { .. });
        match (self.reading(), write) {
            (true, true) => Interest::READABLE | Interest::WRITABLE,
            (false, true) => Interest::WRITABLE,
            // A registration needs some interest: READABLE with nothing to
            // read is harmless (events are ignored) and still reports
            // errors and hang-ups.
            _ => Interest::READABLE,
        }
    }

    /// Re-registers if the wanted interest changed (after writes were queued
    /// or drained, or reading paused or resumed).
    pub fn update_interest(&mut self, registry: &Registry) -> io::Result<()> {
        let want = self.wanted_interest();
        if self.registered != Some(want) && self.state != State::Closed {
            registry.reregister(&mut self.sock, self.token, want)?;
            self.registered = Some(want);
        }
        Ok(())
    }

    /// Deregisters and moves to `Closed`; dropping the connection closes the
    /// socket.
    pub fn close(&mut self, registry: &Registry, why: &str) {
        if self.state == State::Closed {
            return;
        }
        if self.registered.take().is_some() {
            let _ = registry.deregister(&mut self.sock);
        }
        self.transition(ConnEvent::Close, why);
        trace_event!(self.role, self.token, self.peer, "CLOSE", "{why}");
    }

    /// Lends the node's scratch buffer as `input` when `input` holds
    /// nothing, so a connection owns read memory only while a message is
    /// half received.
    fn borrow_scratch(&mut self, scratch: &mut Buffer) {
        if !self.borrowed && self.input.is_empty() && scratch.capacity() > self.input.capacity() {
            std::mem::swap(&mut self.input, scratch);
            self.borrowed = true;
        }
    }

    /// Gives the scratch buffer back, keeping a copy of any partial message.
    fn return_scratch(&mut self, scratch: &mut Buffer) {
        if !self.borrowed {
            self.input.release(KEEP_IDLE_BYTES);
            return;
        }
        self.borrowed = false;
        std::mem::swap(&mut self.input, scratch);
        if !scratch.is_empty() {
            self.input.extend(scratch.data());
            scratch.clear();
        }
    }

    /// Reads until WouldBlock, EOF, an error, or `input` holds `limit`
    /// bytes (`Full`). Retries on `Interrupted`.
    fn fill(&mut self, limit: usize, now: Instant) -> (usize, ReadOutcome) {
        let mut total = 0;
        let outcome = loop {
            let room = limit.saturating_sub(self.input.len());
            if room == 0 {
                break ReadOutcome::Full;
            }
            let space = self.input.space(room.min(READ_CHUNK));
            let want = space.len().min(room);
            match self.sock.read(&mut space[..want]) {
                Ok(0) => break ReadOutcome::Eof,
                Ok(n) => {
                    self.input.fill(n);
                    total += n;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break ReadOutcome::WouldBlock,
                Err(e) => break ReadOutcome::Error(e),
            }
        };
        if total > 0 {
            self.last_bytes = now;
        }
        trace_event!(
            self.role,
            self.token,
            self.peer,
            "READABLE",
            "read={total} then {}",
            outcome.name()
        );
        (total, outcome)
    }

    /// One read pass, the one every node uses: read until WouldBlock (the
    /// edge is consumed), handing the input to `handle` after every read so
    /// complete messages are taken as they arrive and the buffer stays
    /// bounded by `limit`. Ends early when `handle` returns false or reading
    /// pauses (`Stopped`), or after `max_rounds` full buffers (`Yielded`:
    /// fairness, come back without an edge). EOF ends a bare message (it is
    /// handed over once more) and moves the connection to `ReadClosed`.
    pub fn read_pass(
        &mut self,
        scratch: &mut Buffer,
        limit: usize,
        max_rounds: usize,
        now: Instant,
        mut handle: impl FnMut(&mut Self) -> bool,
    ) -> ReadOutcome {
        self.borrow_scratch(scratch);
        let mut rounds = 0;
        let outcome = loop {
            if !self.reading() {
                break ReadOutcome::Stopped;
            }
            let (_, outcome) = self.fill(limit, now);
            if matches!(outcome, ReadOutcome::Eof) && self.framer.waits_for_pause(&self.input) {
                // FIN ends a bare message as surely as a pause.
                self.framer.end_burst();
            }
            if !handle(self) {
                break match outcome {
                    ReadOutcome::Eof | ReadOutcome::Error(_) => outcome,
                    _ => ReadOutcome::Stopped,
                };
            }
            match outcome {
                ReadOutcome::Full => {
                    rounds += 1;
                    if rounds >= max_rounds {
                        trace_event!(self.role, self.token, self.peer, "YIELD", "{rounds} full reads: later");
                        break ReadOutcome::Yielded;
                    }
                }
                other => break other,
            }
        };
        if matches!(outcome, ReadOutcome::Eof) {
            trace_event!(
                self.role,
                self.token,
                self.peer,
                "PEER_FIN",
                "read returned 0: peer half-closed"
            );
            self.transition(ConnEvent::PeerFin, "peer sent FIN");
        }
        self.return_scratch(scratch);
        outcome
    }

    /// The next whole message in `input` (see [`Framer::next`]); a framing
    /// decision is logged and traced.
    pub fn next_message(&mut self, max: usize) -> Frame {
        let frame = self.framer.next(&mut self.input, max);
        if let Some((to, why)) = self.framer.take_decision() {
            debug!(
                "{} tok={}: framing {to:?} ({why})",
                self.role,
                crate::trace::TokenName(self.token)
            );
            trace_event!(self.role, self.token, self.peer, "FRAMING", "{to:?} ({why})");
        }
        frame
    }

    /// Drops a handled message from the front of `input`.
    pub fn consume(&mut self, total: usize) {
        self.framer.consume(&mut self.input, total);
    }

    /// Ends the message just encoded into `output` with this connection's
    /// terminator.
    #[inline]
    pub fn end_message(&mut self) {
        self.output.extend(self.framer.framing().terminator());
    }

    /// When a pause timer should fire for this connection, if one is
    /// needed now and not already set (bare or undecided framing with a
    /// message begun). Marks it set.
    pub fn bare_timer_due(&mut self, idle: Duration) -> Option<Instant> {
        if self.bare_timer || self.state != State::Open || !self.framer.waits_for_pause(&self.input) {
            return None;
        }
        self.bare_timer = true;
        Some(self.last_bytes + idle)
    }

    /// The pause timer fired: has the peer been quiet for `idle`? If so the
    /// buffered bytes are one message (the framer is told).
    pub fn bare_timer_fired(&mut self, now: Instant, idle: Duration) -> BarePause {
        self.bare_timer = false;
        if !self.framer.waits_for_pause(&self.input) {
            return BarePause::Nothing;
        }
        let due = self.last_bytes + idle;
        if now < due {
            self.bare_timer = true;
            return BarePause::Rearm(due);
        }
        self.framer.end_burst();
        BarePause::Ended
    }

    /// Writes `output` until it is empty or the socket would block.
    /// Handles partial writes and `Interrupted`.
    pub fn flush(&mut self) -> WriteOutcome {
        let mut total = 0;
        let outcome = loop {
            if self.output.is_empty() {
                break WriteOutcome::Done;
            }
            match self.sock.write(self.output.data()) {
                Ok(0) => break WriteOutcome::Error(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.output.consume(n);
                    total += n;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break WriteOutcome::WouldBlock,
                Err(e) => break WriteOutcome::Error(e),
            }
        };
        if total > 0 || !matches!(outcome, WriteOutcome::Done) {
            let partial = if matches!(outcome, WriteOutcome::WouldBlock) {
                " (partial write, WouldBlock)"
            } else {
                ""
            };
            trace_event!(
                self.role,
                self.token,
                self.peer,
                "WRITABLE",
                "wrote={total} left={}{partial}",
                self.output.len()
            );
        }
        if self.output.is_empty() {
            self.output.release(KEEP_IDLE_BYTES);
        }
        outcome
    }
}

impl ReadOutcome {
    fn name(&self) -> &'static str {
        match self {
            ReadOutcome::WouldBlock => "WouldBlock",
            ReadOutcome::Full => "buffer full",
            ReadOutcome::Yielded => "yielded",
            ReadOutcome::Stopped => "stopped",
            ReadOutcome::Eof => "EOF",
            ReadOutcome::Error(_) => "error",
        }
    }
}

/// Whether an I/O error is an ordinary way for a peer to go away (logged
/// at debug) rather than something unexpected (logged at warn).
pub fn is_peer_gone(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof | NotConnected | ConnectionRefused
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lifecycle_has_exactly_the_moves_of_the_diagram() {
        let t = Instant::now();
        let connecting = State::Connecting { since: t };
        use ConnEvent::*;
        assert_eq!(connecting.next(Connected), Some(State::Open));
        assert_eq!(State::Open.next(PeerFin), Some(State::ReadClosed));
        assert_eq!(State::Open.next(Stop), Some(State::Closing));
        for s in [connecting, State::Open, State::ReadClosed, State::Closing] {
            assert_eq!(s.next(Close), Some(State::Closed), "{s:?} can close");
        }
        // And nothing else.
        assert_eq!(State::Open.next(Connected), None);
        assert_eq!(State::ReadClosed.next(PeerFin), None);
        assert_eq!(State::Closing.next(Stop), None);
        assert_eq!(connecting.next(PeerFin), None);
        for e in [Connected, PeerFin, Stop, Close] {
            assert_eq!(State::Closed.next(e), None, "Closed is final");
        }
    }
}
