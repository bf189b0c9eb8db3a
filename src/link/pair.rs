//! One connection through the link: the socket accepted from the client,
//! the socket it opened to the upstream, and a [`Pipe`] each way between
//! them. Its I/O: reading into a pipe, writing what a pipe lets go,
//! passing a FIN on, resetting both sides.
//!
//! ```text
//!   client ──> [0] ──read──> pipe UP ──write──> [U] ──> upstream
//!   client <── [0] <─write── pipe DOWN <──read── [U] <── upstream
//! ```
//!
//! Socket 0 is the accepted one (traced with its slab key, `0`), socket 1
//! the upstream one (traced `U0`). Direction `d` reads socket `d` and
//! writes socket `1 - d`.

use super::pipe::{Pipe, Shape};
use crate::trace_event;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use std::io::{self, Read, Write};
use std::time::Instant;

/// The pair's lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairState {
    /// The upstream connect is in progress; the client's bytes wait in
    /// the UP pipe.
    Connecting,
    /// Both sockets connected.
    Open,
    /// Done: both sockets are closed (dropped with the pair).
    Closed,
}

/// One direction's progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// The source sends; bytes pass.
    Open,
    /// The source sent FIN; it waits in the pipe behind the bytes.
    FinHeld,
    /// The FIN was passed on (`shutdown(SHUT_WR)` on the destination).
    Shut,
}

/// Why a pass over the pair stopped it.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// It goes on.
    No,
    /// Both directions finished: close both sockets.
    Done(&'static str),
    /// A socket failed, or a limit or reset: reset both sides.
    Reset(String),
}

/// A connection through the link.
#[derive(Debug)]
pub struct Pair {
    /// Distinguishes it from a later pair under the same slab key.
    pub gen: u64,
    /// The lifecycle.
    pub state: PairState,
    /// Socket 0: from the client; socket 1: to the upstream.
    pub socks: [TcpStream; 2],
    /// Their tokens.
    pub tokens: [Token; 2],
    /// Direction 0 (up) and 1 (down).
    pub pipes: [Pipe; 2],
    /// Each direction's progress.
    pub flows: [Flow; 2],
    /// A socket stopped reading while its pipe was full: read it again
    /// when there is room (no new edge will come for bytes already there).
    pub starved: [bool; 2],
    /// A write to the socket would block: wait for WRITABLE.
    blocked: [bool; 2],
    /// Registered interest per socket.
    interest: [Option<Interest>; 2],
    /// When a timer was set for each direction's next release.
    pub armed: [Option<Instant>; 2],
}

/// A read chunk: the link reads straight into a pipe, at most this much
/// a read.
const CHUNK: usize = 16 * 1024;

impl Pair {
    /// A pair whose upstream connect has started.
    pub fn new(gen: u64, socks: [TcpStream; 2], tokens: [Token; 2], cap: usize, seed: u64) -> Pair {
        Pair {
            gen,
            state: PairState::Connecting,
            socks,
            tokens,
            pipes: [Pipe::new(cap, seed), Pipe::new(cap, seed.rotate_left(17) ^ 0x5555)],
            flows: [Flow::Open, Flow::Open],
            starved: [false; 2],
            blocked: [false; 2],
            interest: [None; 2],
            armed: [None; 2],
        }
    }

    /// Registers both sockets.
    pub fn register(&mut self, registry: &Registry) -> io::Result<()> {
        for s in 0..2 {
            let want = self.wanted(s);
            registry.register(&mut self.socks[s], self.tokens[s], want)?;
            self.interest[s] = Some(want);
        }
        Ok(())
    }

    fn wanted(&self, s: usize) -> Interest {
        let connecting = s == 1 && self.state == PairState::Connecting;
        // WRITABLE only while a write would block (bytes merely delayed
        // wait for a timer, not for the socket).
        if self.blocked[s] || connecting {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        }
    }

    /// Re-registers the sockets whose wanted interest changed.
    pub fn update_interest(&mut self, registry: &Registry) -> io::Result<()> {
        for s in 0..2 {
            let want = self.wanted(s);
            if self.interest[s] != Some(want) {
                registry.reregister(&mut self.socks[s], self.tokens[s], want)?;
                self.interest[s] = Some(want);
            }
        }
        Ok(())
    }

    /// Finishes the upstream connect after an event on socket 1: `None`
    /// while it is still in progress.
    pub fn on_connect(&mut self) -> Option<io::Result<()>> {
        let sock = &self.socks[1];
        let settled = match sock.take_error() {
            Ok(Some(e)) | Err(e) => Err(e),
            Ok(None) => match sock.peer_addr() {
                Ok(addr) => Ok(addr),
                Err(e) if matches!(e.kind(), io::ErrorKind::NotConnected | io::ErrorKind::WouldBlock) => return None,
                Err(e) => Err(e),
            },
        };
        Some(match settled {
            Ok(peer) => {
                let _ = sock.set_nodelay(true);
                if let Ok(local) = sock.local_addr() {
                    trace_event!("link", self.tokens[1], "CONNECTED", "local {local}, peer {peer}");
                }
                trace_event!(
                    "link",
                    self.tokens[1],
                    "STATE",
                    "Connecting -> Open (connect completed)"
                );
                self.state = PairState::Open;
                Ok(())
            }
            Err(e) => {
                trace_event!("link", self.tokens[1], "CONNECT_FAILED", "{e}");
                Err(e)
            }
        })
    }

    /// One pass over the pair: read both sockets, write what each pipe
    /// lets go, and read again a socket whose full pipe has room now.
    pub fn pass(&mut self, shapes: &[Shape; 2], now: Instant, scratch: &mut [u8]) -> End {
        if self.state != PairState::Open {
            return End::No;
        }
        for (s, shape) in shapes.iter().enumerate() {
            let end = self.read(s, shape, now, scratch);
            if end != End::No {
                return end;
            }
        }
        for (d, shape) in shapes.iter().enumerate() {
            let mut end = self.write(d, shape, now);
            // Room made: read again what the full pipe left unread (no new
            // edge will come for bytes already in the socket).
            if end == End::No && self.starved[d] && self.pipes[d].room(shape) > 0 {
                end = self.read(d, shape, now, scratch);
                if end == End::No {
                    end = self.write(d, shape, now);
                }
            }
            if end != End::No {
                return end;
            }
        }
        End::No
    }

    /// Reads socket `s` into its pipe until WouldBlock, EOF, or the pipe
    /// is full (then `starved`: read again when there is room).
    pub fn read(&mut self, s: usize, shape: &Shape, now: Instant, scratch: &mut [u8]) -> End {
        if self.flows[s] != Flow::Open || self.state == PairState::Closed {
            return End::No;
        }
        let mut total = 0;
        let outcome = loop {
            let room = self.pipes[s].room(shape).min(scratch.len()).min(CHUNK);
            if room == 0 {
                self.starved[s] = true;
                break "pipe full";
            }
            match self.socks[s].read(&mut scratch[..room]) {
                Ok(0) => break "EOF",
                Ok(n) => {
                    self.pipes[s].take(&scratch[..n], now, shape);
                    total += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break "WouldBlock",
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return End::Reset(format!("read failed: {e}")),
            }
        };
        if outcome != "pipe full" {
            self.starved[s] = false;
        }
        // A pass reads both sockets; one that had nothing is not an event.
        if total > 0 || outcome != "WouldBlock" {
            trace_event!(
                "link",
                self.tokens[s],
                "READABLE",
                "read={total} (to the pipe) then {outcome}"
            );
        }
        if total > 0 {
            let held = self.pipes[s].held();
            trace_event!(
                "link",
                self.tokens[1 - s],
                "QUEUED",
                "{total} bytes from the other side, delayed {} ms: {held} bytes to write",
                shape.delay.as_millis()
            );
        }
        if outcome == "EOF" {
            trace_event!(
                "link",
                self.tokens[s],
                "PEER_FIN",
                "read returned 0: passed on after the bytes held"
            );
            self.pipes[s].take_fin(now, shape);
            self.flows[s] = Flow::FinHeld;
        }
        End::No
    }

    /// Writes what direction `d`'s pipe lets go now, and passes its FIN on
    /// when due.
    pub fn write(&mut self, d: usize, shape: &Shape, now: Instant) -> End {
        let dest = 1 - d;
        if self.state != PairState::Open {
            return End::No;
        }
        let at = crate::trace::stamp();
        let mut total = 0;
        let mut blocked = false;
        loop {
            let ready = self.pipes[d].ready(now, shape);
            if ready.is_empty() {
                break;
            }
            match self.socks[dest].write(ready) {
                Ok(0) => return End::Reset("write returned 0".into()),
                Ok(n) => {
                    self.pipes[d].gave(n, now, shape);
                    total += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    blocked = true;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return End::Reset(format!("write failed: {e}")),
            }
        }
        self.blocked[dest] = blocked;
        if total > 0 || blocked {
            crate::trace_event_at!(
                at,
                "link",
                self.tokens[dest],
                "WRITABLE",
                "wrote={total} left={}{}",
                self.pipes[d].held(),
                if blocked { " (partial write, WouldBlock)" } else { "" }
            );
        }
        if self.pipes[d].limit_reached(shape) {
            return End::Reset(format!("limit of {} bytes reached", shape.limit));
        }
        if self.flows[d] == Flow::FinHeld && self.pipes[d].fin_due(now, shape) {
            trace_event!(
                "link",
                self.tokens[dest],
                "SHUTDOWN",
                "shutdown(SHUT_WR): the FIN passed on"
            );
            if let Err(e) = self.socks[dest].shutdown(std::net::Shutdown::Write) {
                return End::Reset(format!("shutdown failed: {e}"));
            }
            self.flows[d] = Flow::Shut;
        }
        if self.flows == [Flow::Shut, Flow::Shut] {
            return End::Done("both sides sent FIN and got everything");
        }
        End::No
    }

    /// Closes both sockets with RST instead of FIN (SO_LINGER 0): each
    /// peer's next read fails with "connection reset".
    pub fn reset(&mut self, registry: &Registry, why: &str) {
        for s in 0..2 {
            set_linger_zero(&self.socks[s]);
        }
        self.close(registry, why);
    }

    /// Deregisters both sockets; they close when the pair is dropped.
    pub fn close(&mut self, registry: &Registry, why: &str) {
        if self.state == PairState::Closed {
            return;
        }
        self.state = PairState::Closed;
        for s in 0..2 {
            if self.interest[s].take().is_some() {
                let _ = registry.deregister(&mut self.socks[s]);
            }
            trace_event!("link", self.tokens[s], "CLOSE", "{why}");
        }
    }
}

/// `SO_LINGER` with a zero timeout: `close(2)` then sends RST and drops
/// what is unsent, which is what a reset fault is.
#[cfg(unix)]
fn set_linger_zero(sock: &TcpStream) {
    use std::os::fd::AsRawFd;
    #[repr(C)]
    struct Linger {
        l_onoff: i32,
        l_linger: i32,
    }
    extern "C" {
        fn setsockopt(fd: i32, level: i32, name: i32, value: *const Linger, len: u32) -> i32;
    }
    #[cfg(target_os = "linux")]
    const SOL_SOCKET: i32 = 1;
    #[cfg(target_os = "linux")]
    const SO_LINGER: i32 = 13;
    #[cfg(not(target_os = "linux"))]
    const SOL_SOCKET: i32 = 0xffff;
    #[cfg(not(target_os = "linux"))]
    const SO_LINGER: i32 = 0x0080;
    let l = Linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: the descriptor is the open socket `sock` owns, and `l` is a
    // valid `struct linger` of the size passed; setsockopt only reads it.
    // mio and std do not expose SO_LINGER on stable Rust.
    let _ = unsafe {
        setsockopt(
            sock.as_raw_fd(),
            SOL_SOCKET,
            SO_LINGER,
            &l,
            std::mem::size_of::<Linger>() as u32,
        )
    };
}

#[cfg(not(unix))]
fn set_linger_zero(_sock: &TcpStream) {}
