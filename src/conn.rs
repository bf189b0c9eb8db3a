//! One TCP connection as a state machine: the socket, its lifecycle state,
//! its input and output buffers, its framing, and the read/write pumps that
//! follow mio's edge-triggered rules.
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
//! Every change of state goes through [`Conn::set_state`], which logs it at
//! `debug` with both state names and the peer, and as a `STATE` trace event.
//! docs/socket-states.md maps each state to its syscalls and errors.
//!
//! Interest policy: READABLE while the node wants to read; WRITABLE only
//! while output is pending (or a connect is in progress). The registration
//! is changed only when the wanted interest changes, so a steady
//! request/reply stream costs no `epoll_ctl`.

use crate::buffer::Buffer;
use crate::proto::{check_line, is_blank, peek_op, Frame, Op};
use crate::trace_event;
use log::debug;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Instant;

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
    /// The peer sent FIN (a read returned 0). Replies still owed are
    /// written, then the connection closes.
    ReadClosed,
    /// The node decided to close (shutdown, limit, desync): no more reads;
    /// close once the output is written.
    Closing,
    /// Deregistered; the socket is dropped with the connection.
    Closed,
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
}

/// How messages are delimited on this connection (docs/protocol.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Not known yet: decided by the first message (listening side only).
    Detect,
    /// Each message ends with `\n`.
    Line,
    /// Each message is a burst of bytes followed by a pause; replies carry
    /// no terminator.
    Bare,
}

/// What a read pass ended on.
#[derive(Debug)]
pub enum ReadOutcome {
    /// The socket has nothing more for now (edge consumed).
    WouldBlock,
    /// The input buffer reached its bound; more may be waiting in the
    /// socket, so the caller must come back after parsing.
    Full,
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

/// The next thing at the front of the input.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// A whole message: its body is `input.data()[..body]`; call
    /// [`Conn::consume`] with `total` once it is handled.
    Message {
        /// Body length.
        body: usize,
        /// Bytes to consume after handling.
        total: usize,
    },
    /// A message over the size bound was dropped (its OP if it could be seen).
    Oversize(Option<Op>),
    /// Nothing whole yet.
    Wait,
}

/// One connection. `X` is the node's own per-connection state (the
/// proxy's queue of pending replies, for example).
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
    /// How many bytes of `input` are known to hold no newline.
    scanned: usize,
    /// Discarding the rest of an oversize message (until a newline, or for
    /// bare framing until the peer pauses).
    skipping: bool,
    /// Bare framing: the peer paused (or closed), so the bytes buffered
    /// are one whole message.
    burst_done: bool,
    /// A bare-framing timer is set for this connection.
    pub bare_timer: bool,
    /// `input` is the node's scratch buffer, lent for this read pass.
    borrowed: bool,
    /// What is registered with the poll now (`None`: not registered).
    registered: Option<Interest>,
    /// Reading stopped because the peer is not reading its replies.
    pub paused: bool,
    /// How messages are delimited.
    pub framing: Framing,
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
            scanned: 0,
            skipping: false,
            burst_done: false,
            bare_timer: false,
            borrowed: false,
            registered: None,
            paused: false,
            framing: Framing::Line,
            last_active: now,
            last_bytes: now,
            ext,
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The one place a state changes: logs the transition at `debug` and as
    /// a trace event.
    pub fn set_state(&mut self, to: State, why: &str) {
        let from = self.state;
        if from == to {
            return;
        }
        debug_assert!(from != State::Closed, "a closed connection does not change state");
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
        self.set_state(State::Closed, why);
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
    pub fn return_scratch(&mut self, scratch: &mut Buffer) {
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

    /// One read pass: reads until WouldBlock, EOF, an error, or `input`
    /// holds `limit` bytes. Retries on `Interrupted`.
    pub fn fill(&mut self, scratch: &mut Buffer, limit: usize, now: Instant) -> (usize, ReadOutcome) {
        self.borrow_scratch(scratch);
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
            outcome_name(&outcome)
        );
        (total, outcome)
    }

    /// Finds the next whole message in `input`, by this connection's
    /// framing. Under `Detect`, a newline (or more bytes than any message
    /// may hold) makes the connection a line connection for good, and a
    /// pause before any newline ([`Conn::end_burst`]) makes it bare for good.
    pub fn next_message(&mut self, max: usize) -> Next {
        match self.framing {
            Framing::Line => self.next_line(max),
            Framing::Detect => {
                if self.input.data().contains(&b'\n') || self.input.len() > max + 1 {
                    self.set_framing(Framing::Line, "a newline ends the first message");
                    self.next_line(max)
                } else if self.burst_done {
                    self.set_framing(Framing::Bare, "the peer paused before any newline");
                    self.next_bare(max)
                } else {
                    Next::Wait
                }
            }
            Framing::Bare => self.next_bare(max),
        }
    }

    fn set_framing(&mut self, to: Framing, why: &str) {
        debug!(
            "{} tok={}: framing {:?} ({why})",
            self.role,
            crate::trace::TokenName(self.token),
            to
        );
        trace_event!(self.role, self.token, self.peer, "FRAMING", "{to:?} ({why})");
        self.framing = to;
    }

    /// The peer paused (or sent FIN): for bare framing, what is buffered is
    /// one whole message.
    pub fn end_burst(&mut self) {
        self.burst_done = true;
    }

    /// Bare framing: the whole burst is the message.
    fn next_bare(&mut self, max: usize) -> Next {
        let done = std::mem::take(&mut self.burst_done);
        if self.skipping {
            // The rest of an oversize burst: dropped until the peer pauses.
            self.input.clear();
            self.skipping = !done;
            return Next::Wait;
        }
        if self.input.len() > max {
            let op = peek_op(self.input.data());
            self.input.clear();
            self.skipping = !done;
            return Next::Oversize(op);
        }
        if !done || self.input.is_empty() {
            return Next::Wait;
        }
        let n = self.input.len();
        if is_blank(self.input.data()) {
            self.input.clear();
            return Next::Wait;
        }
        Next::Message { body: n, total: n }
    }

    /// Line framing: skips blank lines and the rest of an oversize line.
    fn next_line(&mut self, max: usize) -> Next {
        loop {
            if self.skipping {
                match self.input.data().iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        self.input.consume(i + 1);
                        self.skipping = false;
                    }
                    None => {
                        self.input.clear();
                        return Next::Wait;
                    }
                }
            }
            match check_line(self.input.data(), self.scanned, max) {
                Frame::Line { body, total } => {
                    if is_blank(&self.input.data()[..body]) {
                        self.consume(total);
                        continue;
                    }
                    return Next::Message { body, total };
                }
                Frame::Incomplete => {
                    self.scanned = self.input.len();
                    return Next::Wait;
                }
                Frame::Oversize(end) => {
                    let op = peek_op(self.input.data());
                    match end {
                        Some(total) => self.consume(total),
                        None => {
                            self.input.clear();
                            self.scanned = 0;
                            self.skipping = true;
                        }
                    }
                    return Next::Oversize(op);
                }
            }
        }
    }

    /// Drops a handled message from the front of `input`.
    pub fn consume(&mut self, total: usize) {
        self.input.consume(total);
        self.scanned = 0;
    }

    /// Ends the message just encoded into `output` with the terminator this
    /// connection's framing calls for.
    #[inline]
    pub fn end_message(&mut self) {
        if self.framing != Framing::Bare {
            self.output.push(b'\n');
        }
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
            trace_event!(
                self.role,
                self.token,
                self.peer,
                "WRITABLE",
                "wrote={total} left={}{}",
                self.output.len(),
                if matches!(outcome, WriteOutcome::WouldBlock) {
                    " (partial write, WouldBlock)"
                } else {
                    ""
                }
            );
        }
        if self.output.is_empty() {
            self.output.release(KEEP_IDLE_BYTES);
        }
        outcome
    }

    /// Finishes a nonblocking connect after a WRITABLE event, the way mio
    /// documents it: `take_error()` for a failure, then `peer_addr()`,
    /// where `NotConnected` means "still connecting".
    pub fn finish_connect(&mut self) -> io::Result<bool> {
        if let Some(e) = self.sock.take_error()? {
            return Err(e);
        }
        match self.sock.peer_addr() {
            Ok(addr) => {
                self.peer = Some(addr);
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e),
        }
    }
}

fn outcome_name(o: &ReadOutcome) -> &'static str {
    match o {
        ReadOutcome::WouldBlock => "WouldBlock",
        ReadOutcome::Full => "buffer full",
        ReadOutcome::Eof => "EOF",
        ReadOutcome::Error(_) => "error",
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
