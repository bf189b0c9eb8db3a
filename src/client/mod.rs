//! The client: one connection driven by its own small reactor, used by the
//! `tablecache client` command (one-shot or line by line from stdin), by
//! `tablecache demo`, and by tests.
//!
//! Run it: `tablecache client get 1 2`, or `tablecache client` for a prompt.
//!
//! A request is sent whole, then the poll loop runs until one whole reply
//! is in (or the timeout passes); reading stdin happens between requests,
//! so `--timing` measures the network round trip only.
//!
//! The rooms: this file (the connection), `command` (the little language
//! and the rendering of replies), `prompt` (running commands, the pipe's
//! loop and the interactive prompt).

use crate::buffer::Buffer;
use crate::conn::{read_limit, Conn, ConnectOutcome, ReadOutcome, WriteOutcome};
use crate::framing::{Frame, Framing};
use crate::proto::{encode_request, Op, Reply, Request};
use crate::reactor::CLIENT;
use mio::{Events, Poll};
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Replies can be long (DMP of a big table); this bounds them.
const MAX_REPLY_BYTES: usize = 64 << 20;

/// A connected client.
pub struct Client {
    poll: Poll,
    events: Events,
    conn: Conn<()>,
    /// The connection was found lost and not had again: the next command
    /// connects first.
    broken: bool,
    /// Where it connects (again, after [`Client::reconnect`]), and the
    /// node name of its trace lines.
    target: SocketAddr,
    name: &'static str,
    scratch: Buffer,
    timeout: Duration,
    /// The silence that ends a bare reply.
    bare_idle: Duration,
    /// Called after each reply is taken, before it is returned (the demo
    /// prints the hops the request made there).
    on_reply: Option<Box<dyn FnMut()>>,
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("{what} timed out"))
}

impl Client {
    /// Connects without blocking: `connect()` starts it (EINPROGRESS), the
    /// socket turns WRITABLE when it is settled, and `take_error()` /
    /// `peer_addr()` say how.
    pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<Client> {
        Client::connect_named(addr, timeout, "client")
    }

    /// [`Client::connect`], with `name` as the node name of its trace lines.
    pub fn connect_named(addr: SocketAddr, timeout: Duration, name: &'static str) -> io::Result<Client> {
        let poll = Poll::new()?;
        let now = Instant::now();
        let conn = Conn::connect(addr, CLIENT, 1, name, poll.registry(), now, ())?;
        let mut c = Client {
            poll,
            events: Events::with_capacity(16),
            conn,
            broken: false,
            target: addr,
            name,
            scratch: Buffer::with_capacity(crate::conn::READ_CHUNK),
            timeout,
            bare_idle: Duration::from_millis(15),
            on_reply: None,
        };
        let deadline = now + timeout;
        loop {
            c.wait(deadline, "connect")?;
            match c.conn.on_connect_event(c.poll.registry()) {
                ConnectOutcome::Pending => continue,
                ConnectOutcome::Connected => return Ok(c),
                ConnectOutcome::Failed(e) => return Err(e),
            }
        }
    }

    /// Sends messages without a terminator and takes a reply as whole
    /// after `idle` of silence (for bare servers).
    pub fn set_bare(&mut self, idle: Duration) {
        self.conn.framer.set_framing(Framing::Bare);
        self.bare_idle = idle;
    }

    /// True when the server closed the connection while it sat idle (an
    /// idle timeout, a restart): its FIN or reset is already in, seen
    /// without blocking.
    pub fn peer_left(&mut self) -> bool {
        if crate::reactor::poll(&mut self.poll, &mut self.events, Some(Duration::ZERO)).is_err() {
            return false;
        }
        self.events.iter().any(|e| e.is_read_closed() || e.is_error())
    }

    /// Opens a new connection to the same address, with the same framing,
    /// timeout and hook; the old one is closed.
    pub fn reconnect(&mut self) -> io::Result<()> {
        let mut fresh = Client::connect_named(self.target, self.timeout, self.name)?;
        fresh.conn.framer.set_framing(self.conn.framer.framing());
        fresh.bare_idle = self.bare_idle;
        fresh.on_reply = self.on_reply.take();
        *self = fresh;
        Ok(())
    }

    /// The name its trace lines carry (`client`, `client2`).
    pub fn name(&self) -> &'static str {
        self.conn.role
    }

    /// The socket's local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.conn.sock.local_addr()
    }

    /// Runs `hook` after every reply, before it is returned.
    pub fn set_on_reply(&mut self, hook: Box<dyn FnMut()>) {
        self.on_reply = Some(hook);
    }

    /// Ends the connection the polite way: `shutdown(SHUT_WR)` sends FIN
    /// (the server sees `PEER_FIN` and closes once it owes nothing), then
    /// reads until the server's FIN arrives, then closes. Replies still
    /// owed are read and dropped.
    pub fn finish(mut self) -> io::Result<()> {
        self.conn
            .linger("shutdown(SHUT_WR): FIN sent, still reading", "done sending")?;
        let deadline = Instant::now() + self.timeout;
        loop {
            // Wait first: reading before the FIN is in would show a read
            // of nothing (WouldBlock), or not, as timing has it.
            self.wait(deadline, "the server's FIN")?;
            let (_, outcome) = self.conn.discard_input(&mut self.scratch, usize::MAX);
            match outcome {
                ReadOutcome::Eof => break,
                ReadOutcome::Error(e) => return Err(e),
                _ => {}
            }
        }
        self.conn.close(self.poll.registry(), "both directions closed");
        Ok(())
    }

    /// Waits for an event, or until `wake` (an error once `deadline` is
    /// past).
    fn wait_until(&mut self, wake: Instant, deadline: Instant, what: &str) -> io::Result<()> {
        let now = Instant::now();
        if now >= deadline {
            return Err(timed_out(what));
        }
        crate::reactor::poll(&mut self.poll, &mut self.events, Some(wake.min(deadline) - now))
    }

    fn wait(&mut self, deadline: Instant, what: &str) -> io::Result<()> {
        self.wait_until(deadline, deadline, what)
    }

    /// Sends one request body and returns the body of its reply.
    pub fn request_raw(&mut self, body: &[u8]) -> io::Result<String> {
        self.conn.output.extend(body);
        self.conn.end_message();
        self.roundtrip()
    }

    /// Sends a request and parses its reply.
    pub fn request(&mut self, op: Op, ind: &[i64], data: &[i64]) -> io::Result<Reply> {
        encode_request(&mut self.conn.output, op, ind, data);
        self.conn.end_message();
        let line = self.roundtrip()?;
        let mut r = Reply::default();
        r.parse(line.as_bytes())
            .map_err(|p| io::Error::new(io::ErrorKind::InvalidData, format!("bad reply {line:?}: {p}")))?;
        Ok(r)
    }

    /// Sends a parsed request and parses its reply.
    pub fn send(&mut self, req: &Request) -> io::Result<Reply> {
        self.request(req.op, &req.ind, &req.data)
    }

    fn roundtrip(&mut self) -> io::Result<String> {
        let r = self.exchange();
        if let Some(hook) = self.on_reply.as_mut() {
            hook();
        }
        r
    }

    /// Writes the request in the output and reads one reply.
    fn exchange(&mut self) -> io::Result<String> {
        self.send_output()?;
        self.read_reply()
    }

    /// Sends several request bodies in one write (a pipeline) and reads
    /// their replies, in order.
    pub fn pipeline(&mut self, bodies: &[&[u8]]) -> io::Result<Vec<String>> {
        for b in bodies {
            self.conn.output.extend(b);
            self.conn.end_message();
        }
        self.send_output()?;
        let replies = (0..bodies.len()).map(|_| self.read_reply()).collect();
        if let Some(hook) = self.on_reply.as_mut() {
            hook();
        }
        replies
    }

    /// Writes what the output holds.
    fn send_output(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + self.timeout;
        crate::trace_event!(
            self.conn.role,
            self.conn.token,
            "QUEUED",
            "request queued, {} bytes to write",
            self.conn.output.len()
        );
        // Write the request (partial writes continue on WRITABLE).
        loop {
            match self.conn.flush() {
                WriteOutcome::Done => break,
                WriteOutcome::WouldBlock => {
                    self.conn.update_interest(self.poll.registry())?;
                    self.wait(deadline, "send")?;
                }
                WriteOutcome::Error(e) => return Err(e),
            }
        }
        self.conn.update_interest(self.poll.registry())
    }

    /// Reads one whole reply (one already buffered first).
    fn read_reply(&mut self) -> io::Result<String> {
        let deadline = Instant::now() + self.timeout;
        // A reply already buffered (the server answered ahead)?
        if let Some(r) = take_reply(&mut self.conn) {
            return r;
        }
        // Wait for the socket, then read until one whole reply is in.
        loop {
            // A bare reply ends when the server pauses.
            let quiet = self.conn.last_bytes + self.bare_idle;
            let bare = self.conn.framer.waits_for_pause(&self.conn.input);
            if bare && Instant::now() >= quiet {
                self.conn.framer.end_burst();
                if let Some(r) = take_reply(&mut self.conn) {
                    return r;
                }
            }
            let wake = if bare { quiet } else { deadline };
            self.wait_until(wake, deadline, "reply")?;
            if self.events.is_empty() {
                continue; // the pause timer, not the socket
            }
            let mut reply = None;
            let outcome = self.conn.read_pass(
                &mut self.scratch,
                read_limit(MAX_REPLY_BYTES),
                usize::MAX,
                Instant::now(),
                |c| {
                    reply = take_reply(c);
                    reply.is_none()
                },
            );
            if matches!(outcome, ReadOutcome::Eof) && reply.is_none() {
                reply = take_reply(&mut self.conn);
            }
            match (reply, outcome) {
                (Some(r), _) => return r,
                (None, ReadOutcome::Eof) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "server closed the connection",
                    ))
                }
                (None, ReadOutcome::Error(e)) => return Err(e),
                _ => {}
            }
        }
    }
}

impl Drop for Client {
    /// Closing is a socket event too: traced like any other (a no-op
    /// after [`Client::finish`]).
    fn drop(&mut self) {
        self.conn.close(self.poll.registry(), "client done");
    }
}

/// Takes one whole reply from the input, if there is one.
fn take_reply(c: &mut Conn<()>) -> Option<io::Result<String>> {
    match c.next_message(MAX_REPLY_BYTES) {
        Frame::Complete { body, total } => {
            let s = String::from_utf8_lossy(&c.input.data()[..body]).trim().to_string();
            crate::trace_event!(c.role, c.token, "DECODED", "{s} ({total} bytes)");
            c.consume(total);
            Some(Ok(s))
        }
        Frame::Oversize(_) => Some(Err(io::Error::new(io::ErrorKind::InvalidData, "reply too long"))),
        Frame::Incomplete => None,
    }
}

mod command;
mod prompt;

pub use command::{parse_command, render, Command, COMMANDS_HELP};
pub use prompt::{repl, run_command, Step};
