//! The link's control connections: a listener, and per connection its
//! bytes read and its answers to write. One request a line; each answer
//! one line. Bounded: 16 connections, a line of at most 512 bytes (a
//! longer one is answered 413 and the connection closed), 64 KiB of
//! answers waiting (a peer that does not read them is closed).

use super::control::{self, Control, MAX_LINE};
use crate::buffer::Buffer;
use crate::reactor::{CONTROL_LISTENER, LINK_CONTROL};
use crate::trace_event;
use log::warn;
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use slab::Slab;
use std::io::{self, Read, Write};
use std::net::SocketAddr;

const MAX_CONTROLS: usize = 16;
const MAX_PENDING: usize = 64 * 1024;

struct ControlConn {
    sock: TcpStream,
    input: Buffer,
    output: Buffer,
    writable: bool,
    /// Close once the output is written (a protocol error, or EOF).
    closing: bool,
}

/// The control listener and its connections.
pub struct Controls {
    listener: Option<TcpListener>,
    conns: Slab<ControlConn>,
}

impl Controls {
    /// Binds the control listener at `addr`, if one is asked for.
    pub fn bind(addr: Option<SocketAddr>, registry: &Registry) -> io::Result<Controls> {
        let listener = match addr {
            Some(a) => {
                let mut l = TcpListener::bind(a)?;
                registry.register(&mut l, CONTROL_LISTENER, Interest::READABLE)?;
                trace_event!("link", CONTROL_LISTENER, "LISTEN", "control on {}", l.local_addr()?);
                Some(l)
            }
            None => None,
        };
        Ok(Controls {
            listener,
            conns: Slab::new(),
        })
    }

    /// The control listener's address.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Accepts control connections until WouldBlock.
    pub fn accept(&mut self, registry: &Registry) {
        let Some(l) = &self.listener else { return };
        loop {
            match l.accept() {
                Ok((mut sock, _)) => {
                    if self.conns.len() >= MAX_CONTROLS {
                        continue; // dropped: closed
                    }
                    let e = self.conns.vacant_entry();
                    if registry
                        .register(&mut sock, Token(LINK_CONTROL + e.key()), Interest::READABLE)
                        .is_ok()
                    {
                        e.insert(ControlConn {
                            sock,
                            input: Buffer::new(),
                            output: Buffer::new(),
                            writable: false,
                            closing: false,
                        });
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    warn!("link control accept failed: {e}");
                    return;
                }
            }
        }
    }

    /// Reads what control connection `key` sent: its whole lines, parsed.
    pub fn ready(&mut self, key: usize, registry: &Registry) -> Vec<Result<Control, String>> {
        let mut out = Vec::new();
        let Some(c) = self.conns.get_mut(key) else { return out };
        let mut chunk = [0u8; 1024];
        loop {
            match c.sock.read(&mut chunk) {
                Ok(0) => {
                    c.closing = true;
                    break;
                }
                Ok(n) => {
                    c.input.extend(&chunk[..n]);
                    while let Some(end) = c.input.data().iter().position(|&b| b == b'\n') {
                        let line = String::from_utf8_lossy(&c.input.data()[..end]).to_string();
                        c.input.consume(end + 1);
                        if !line.trim().is_empty() {
                            out.push(control::parse(line.trim_end_matches('\r')));
                        }
                    }
                    if c.input.len() > MAX_LINE {
                        out.push(Err(format!("a control line is at most {MAX_LINE} bytes")));
                        c.input.clear();
                        c.closing = true;
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    self.remove(key, registry);
                    return Vec::new();
                }
            }
        }
        out
    }

    /// Queues the answers of control connection `key` and writes them.
    pub fn answer(&mut self, key: usize, replies: &[String], registry: &Registry) {
        let Some(c) = self.conns.get_mut(key) else { return };
        for r in replies {
            c.output.extend(r.as_bytes());
            c.output.push(b'\n');
        }
        while !c.output.is_empty() {
            match c.sock.write(c.output.data()) {
                Ok(0) => break,
                Ok(n) => c.output.consume(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        let over = c.output.len() > MAX_PENDING;
        if over || (c.closing && c.output.is_empty()) {
            self.remove(key, registry);
            return;
        }
        let want = if c.output.is_empty() {
            Interest::READABLE
        } else {
            Interest::READABLE | Interest::WRITABLE
        };
        if c.writable == c.output.is_empty() {
            c.writable = !c.output.is_empty();
            let _ = registry.reregister(&mut c.sock, Token(LINK_CONTROL + key), want);
        }
    }

    fn remove(&mut self, key: usize, registry: &Registry) {
        if let Some(mut c) = self.conns.try_remove(key) {
            let _ = registry.deregister(&mut c.sock);
        }
    }

    /// Closes the listener and every control connection.
    pub fn close(&mut self, registry: &Registry) {
        if let Some(mut l) = self.listener.take() {
            let _ = registry.deregister(&mut l);
        }
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for k in keys {
            self.remove(k, registry);
        }
    }
}
