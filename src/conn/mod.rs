//! One TCP connection as a state machine: the socket, its lifecycle state,
//! its input and output buffers, its [`Framer`], and the one I/O path per
//! verb every node uses: a flush here; start and finish a connect in
//! `connect.rs`; a read pass and the bare-framing pause timer in `read.rs`.
//!
//! ```text
//!   connect()                         accept()
//!      |                                 |
//!      v   writable + take_error() ok    v
//!  Connecting ---------------------->  Open  ---- peer FIN (read 0) ----> ReadClosed
//!      |                                 |                                    |
//!      | refused / reset                 | node stops                         | replies owed written
//!      v                                 v                                    v
//!    Closed  <----- output drained --- Closing                             Closed
//!      ^           (nothing unread)      |
//!      |                                 | output drained, requests left unread:
//!      |                                 | shutdown(SHUT_WR), their bytes dropped
//!      +------- peer FIN / error ----- Lingering <---- Open: we are done
//!                                                      sending (shutdown(SHUT_WR))
//! ```
//!
//! Every change of state goes through [`Conn::transition`], and the
//! states, events and the exhaustive `match (state, event)` behind it
//! are in `state.rs`: a move the diagram does not have is a bug,
//! logged as an error and returned as one in every build (the caller
//! closes the connection), never ignored. Each change is logged at `debug`
//! and as a `STATE` trace event; docs/socket-states.md maps each state to
//! its syscalls.
//!
//! Interest policy: READABLE while the node wants to read; WRITABLE only
//! while output is pending (or a connect is in progress). The registration
//! is changed only when the wanted interest changes, so a steady
//! request/reply stream costs no `epoll_ctl`.

mod connect;
mod read;
mod state;

pub use state::{ConnEvent, State};

use crate::buffer::Buffer;
use crate::framing::{Framer, Framing};
use crate::trace_event;
use log::{debug, error};
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::Instant;

/// Size of the node-wide read buffer a connection borrows while it reads.
pub const READ_CHUNK: usize = 64 * 1024;

/// How many bytes a read pass may hold for messages of at most `max`
/// bytes: one more than the framer needs to see that a line is too long
/// (the body, a `\r`, one byte more), and at least one read chunk. A
/// smaller bound would fill the buffer before the framer could decide, and
/// the pass would spin on a full buffer.
pub fn read_limit(max: usize) -> usize {
    READ_CHUNK.max(max + 2)
}

/// An empty buffer bigger than this is freed, so idle connections stay small.
const KEEP_IDLE_BYTES: usize = 4096;

/// What a read pass ended on.
#[derive(Debug)]
pub enum ReadOutcome {
    /// The socket has nothing more for now (edge consumed).
    WouldBlock,
    /// The input buffer reached its bound (inside a read pass only; never returned by one).
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
    /// When the bare-framing pause timer set for this connection is due.
    bare_at: Option<Instant>,
    /// When the idle timer set for this connection is due (the node that
    /// sets it keeps this, so closing can cancel it).
    pub idle_at: Option<Instant>,
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
            bare_at: None,
            idle_at: None,
            borrowed: false,
            registered: None,
            paused: false,
            last_active: now,
            last_bytes: now,
            ext,
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The one place a state changes. A move the lifecycle does not have
    /// is a bug: logged as an error and returned as one, in every build;
    /// the state does not change, and the caller closes the connection.
    pub fn transition(&mut self, event: ConnEvent, why: &str) -> io::Result<()> {
        let from = self.state;
        let Some(to) = from.next(event) else {
            let msg = format!(
                "{} tok={}: no move from {} on {event:?}",
                self.role,
                self.token.0,
                from.name()
            );
            error!("{msg} (a bug: closing the connection)");
            return Err(io::Error::other(msg));
        };
        // One line per change: the trace event when tracing, else a
        // debug line (with the peer, which the trace shows at ACCEPT).
        if !crate::trace::enabled() {
            debug!(
                "{} tok={} peer={}: {} -> {} ({why})",
                self.role,
                crate::trace::TokenName(self.token),
                self.peer.map_or("-".to_string(), |p| p.to_string()),
                from.name(),
                to.name()
            );
        }
        trace_event!(
            self.role,
            self.token,
            "STATE",
            "{} -> {} ({why})",
            from.name(),
            to.name()
        );
        self.state = to;
        Ok(())
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

    /// Registers the socket under another token, reading only (a proxy's
    /// old upstream connection, kept to be drained).
    pub fn retoken(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        self.token = token;
        self.output.clear();
        registry.reregister(&mut self.sock, token, Interest::READABLE)?;
        self.registered = Some(Interest::READABLE);
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
        // Every state but Closed (returned above) may close: this cannot
        // fail, and the socket is dropped with the connection either way.
        let _ = self.transition(ConnEvent::Close, why);
        trace_event!(self.role, self.token, "CLOSE", "{why}");
    }

    /// Shuts the sending side (`shutdown(SHUT_WR)`: FIN after the bytes
    /// already written) and moves to `Lingering`; `detail` is the trace's
    /// `SHUTDOWN` line, `why` the state change's.
    pub fn linger(&mut self, detail: &str, why: &str) -> io::Result<()> {
        // The move is checked first: an illegal one shuts nothing.
        if self.state.next(ConnEvent::Linger).is_none() {
            return self.transition(ConnEvent::Linger, why);
        }
        trace_event!(self.role, self.token, "SHUTDOWN", "{detail}");
        self.sock.shutdown(std::net::Shutdown::Write)?;
        self.transition(ConnEvent::Linger, why)
    }

    /// Writes `output` until it is empty or the socket would block.
    /// Handles partial writes and `Interrupted`.
    pub fn flush(&mut self) -> WriteOutcome {
        // Stamped before the first write(2): the bytes cannot reach the
        // peer's read earlier than this (docs/socket-states.md).
        let at = crate::trace::stamp();
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
            crate::trace_event_at!(
                at,
                self.role,
                self.token,
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
        for s in [State::Open, State::ReadClosed, State::Closing] {
            assert_eq!(
                s.next(Linger),
                Some(State::Lingering),
                "{s:?} lingers once done sending"
            );
        }
        for s in [
            connecting,
            State::Open,
            State::ReadClosed,
            State::Closing,
            State::Lingering,
        ] {
            assert_eq!(s.next(Close), Some(State::Closed), "{s:?} can close");
        }
        // And nothing else.
        assert_eq!(State::Open.next(Connected), None);
        assert_eq!(State::ReadClosed.next(PeerFin), None);
        assert_eq!(State::Closing.next(Stop), None);
        assert_eq!(connecting.next(PeerFin), None);
        for s in [connecting, State::Lingering] {
            assert_eq!(s.next(Linger), None, "{s:?} does not linger");
        }
        for e in [Connected, PeerFin, Stop, Linger] {
            assert_eq!(State::Lingering.next(e), None, "Lingering only closes");
        }
        for e in [Connected, PeerFin, Stop, Linger, Close] {
            assert_eq!(State::Closed.next(e), None, "Closed is final");
        }
    }

    #[test]
    fn an_illegal_move_is_an_error_in_every_build_and_changes_nothing() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let sock = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        // Accepted: the connect has completed (a shutdown needs that).
        let (peer, _) = l.accept().unwrap();
        let mut c = Conn::new(sock, Token(3), 1, "test", State::Open, Instant::now(), ());
        let e = c.transition(ConnEvent::Connected, "again").unwrap_err();
        assert_eq!(e.to_string(), "test tok=3: no move from Open on Connected");
        assert_eq!(c.state(), State::Open);
        // Done sending: through the state machine, FIN and all.
        c.linger("FIN", "done").unwrap();
        assert_eq!(c.state(), State::Lingering);
        assert!(c.linger("FIN", "twice").is_err(), "Lingering does not linger again");
        let mut buf = [0u8; 1];
        use std::io::Read;
        assert_eq!((&peer).read(&mut buf).unwrap(), 0, "the peer reads the FIN");
    }
}
